"""Every crash the fuzz suite found, kept as the model it found (tests/fuzz/regressions/*.onnx, named after
what it broke): each is now imported, prepared and compiled, or refused in one line (`harness.run_case`).

- signal_output_sum: a 1-D grouped Conv whose (C, L) output the chip's readout had to sum through a core on a
  2-D value (`reform` crashed in shape inference); now refused, naming the output.
- constant_broadcasts_data: ``Add(c, x)`` with a (7, 5) constant and x of per-sample shape (2, 1, 1): the
  constant broadcast the data to (2, 7, 5), which the importer's ScaleShift (it keeps its input's shape) hid
  until `reform` crashed; now refused by the importer, naming the shapes.
- function_input_nan_calibration: a mutant of mobilenet_mnist whose damaged weights make the values reaching a
  HardSwish NaN on the calibration data; the approximator's knot fill looped forever (a hang); now refused
  (NonFiniteError) naming the node, and the fill always ends.
- nonneg_sum_output_readout: ``Sum(x / c, x)`` as the output: a sum that is provably >= 0 went out through a
  differential Readout (``y[:C] - y[C:]``), half its size and wrong (the ideal chip's logits differed; a crash
  in `evaluate` where the sizes no longer fit); now a core's own output.
- identity_network_no_cores: ``Identity(x)`` as the network: no core-op, the cost model divided by its 0
  cores; now refused by `prepare`.
- huge_logits_error_norm: a 3e38 weight gives finite float32 logits whose float32 norm overflowed: the compile
  reported ``logits_rel_error`` NaN with ``legal: true``; the error is now computed in float64.
- output_softmax_behind_identity: ``Identity(Softmax(Linear(x)))`` as the output: the compile drops both, and
  its logits were compared with the original's probabilities (logit error 2.72 on the ideal chip); the
  original is now compared by the logits under the Softmax, through the Identity.
- output_softmax_of_softmax, output_softmax_behind_zero_pad_and_softmax: ``Softmax(Softmax(Add(x, x)))`` and
  ``Softmax(Pad0(Softmax(HardSigmoid(x))))`` (a zero Pad imports as an Identity): the compile drops the whole
  chain, the comparison only its last Softmax (logit error 0.82 and 0.38 on the ideal chip); the original is
  now compared under the whole chain (found by the 20,000-model run, stop 26).
- softmax_under_an_add_of_zero: ``Add(0, Transpose[0, 1](Pad0(Softmax(Gemm(x)))))``: canonicalization drops the
  Add of 0 (a ScaleShift by 1), then the Softmax, and the comparison stopped at the Add (logit error 0.55 on
  the ideal chip, with agreement 1.0); it now walks through a ScaleShift by 1 too (the 20,000-model run, stop 33).

Each runs through the chip_a compile as well (`run_case(chip=True)`).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from harness import run_case

REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.onnx"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_found_crash_is_fixed(path: Path) -> None:
    outcome = run_case(onnx.load(path), chip=True)
    assert not outcome.failed, outcome


def test_a_case_past_the_limit_inside_a_pass_is_a_hang_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit strikes wherever the case is; a pass wraps what it raises (`PassError` from the limit's
    error), which the harness counted as a crash. A hang is tried twice (a loaded machine once made a case of a
    second pass the wall-clock limit)."""
    import harness

    from dse.passes.registry import PassError

    runs = []

    def struck_in_a_pass(*args: object) -> None:
        runs.append(args)
        try:
            raise harness._Hang
        except harness._Hang as e:
            raise PassError("pass 'tune' failed (after: nothing): _Hang:") from e

    monkeypatch.setattr(harness, "_run", struck_in_a_pass)
    outcome = run_case(onnx.load(REGRESSIONS[0]), chip=True)
    assert outcome.kind == "hang" and len(runs) == 2, outcome
