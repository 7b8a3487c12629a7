"""Every crash the fuzz suite found, kept as the model it found (tests/fuzz/regressions/*.onnx, named after
what it broke): each is now imported and prepared, or refused in one line (`harness.run_case`).

- signal_output_sum: a 1-D grouped Conv whose (C, L) output the chip's readout had to sum through a core on a
  2-D value (`reform` crashed in shape inference); now refused, naming the output.
- constant_broadcasts_data: ``Add(c, x)`` with a (7, 5) constant and x of per-sample shape (2, 1, 1): the
  constant broadcast the data to (2, 7, 5), which the importer's ScaleShift (it keeps its input's shape) hid
  until `reform` crashed; now refused by the importer, naming the shapes.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from harness import run_case

REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.onnx"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_found_crash_is_fixed(path: Path) -> None:
    outcome = run_case(onnx.load(path))
    assert not outcome.failed, outcome
