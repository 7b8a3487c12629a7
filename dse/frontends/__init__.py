"""Frontends: model formats in (ONNX -> IR) and, later, exporters out."""

from dse.frontends.onnx import SUPPORTED_OPS, load_onnx

__all__ = ["SUPPORTED_OPS", "load_onnx"]
