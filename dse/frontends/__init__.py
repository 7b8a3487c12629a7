"""Frontends: model formats in (ONNX -> IR: `dse.frontends.onnx`, kept in the user's cache by
`dse.frontends.onnx_cache`) and out (NIR: `dse.frontends.nir_export`). Nothing is imported here: the `onnx`
package's import alone costs about 0.5 CPU s, which a compile reading a cached graph never pays."""
