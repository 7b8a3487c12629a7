"""The fuzz suite (issue 17): generated models and byte-level mutants of the committed ones through
`load_onnx`, `prepare` and `compile`; each must be imported with finite outputs (equal to onnxruntime's where
it runs them) and compiled with finite metrics, or refused in one line (`harness.run_case`). A few seconds by
default (fixed seeds); the slow test runs 20,000 models (about 3 to 7 CPU minutes on one core) and keeps, as it
goes (`Recorder`), each failing model and the counts in FUZZ_OUT=DIR, or else in its pytest temporary folder,
which its failure message names. The generated models depend on PYTHONHASHSEED (Hypothesis's generation order
follows it), so a failing model is kept as it is found; `PYTHONHASHSEED=N` repeats one run's models:

    OMP_NUM_THREADS=1 FUZZ_OUT=/tmp/fuzz python -m pytest tests/fuzz -m slow -s

Every case goes through `load_onnx`, `prepare` (checked against onnxruntime) and a compile for the ideal chip
(checked against the original). The compile for chip_a (quantized: the tuner and the integer simulator) takes
tens of ms for a generated model but up to seconds for a mutant of a committed network, so it runs for every
`CHIP_EVERY`-th case that reaches it: a sample spread evenly over the run, bounded by the budget.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from generators import MODELS, mutate_bytes, onnx_models
from harness import Outcome, run_case
from hypothesis import HealthCheck, Phase, given, settings

DEFAULT_GENERATED, DEFAULT_MUTATED = 60, 8  # 60: none of the first 40 models compiles since the upsampling ops
SLOW_GENERATED, SLOW_MUTATED = 16_000, 4_000
# the chip_a compile: every 4th generated case (~1,000 of the ~4,000 that compile, at ~0.1 s each) and every
# 4th mutated case (~100 of the ~450 mutants that still load: the committed networks tune for up to seconds)
CHIP_EVERY = {"generated": 4, "mutated": 4}


class Recorder:
    """The outcomes of one half of a run. With `out`, each case's model is written to OUT/LABEL/current.onnx
    before it runs (so a case that kills the process is not lost either), each failure is kept as
    OUT/LABEL/<kind><i>.onnx and .txt the moment it is judged, and the counts (with the CPU seconds so far) go
    to OUT/progress_LABEL.json every 500 cases."""

    def __init__(self, label: str, out: Path | None) -> None:
        self.label, self.counts, self.failures = label, Counter(), []
        self.folder = None if out is None else out / label
        self.out, self.cpu = out, time.process_time()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def cases(self) -> int:
        return sum(self.counts.values())

    def before(self, data: bytes) -> None:
        if self.folder is not None:
            (self.folder / "current.onnx").write_bytes(data)

    def add(self, outcome: Outcome, data: bytes) -> None:
        i = self.cases
        self.counts[outcome.kind] += 1
        if outcome.failed:
            self.failures.append(f"{self.label} case {i} {outcome.kind}: {outcome.detail}")
            if self.folder is not None:
                (self.folder / f"{outcome.kind}{i}.onnx").write_bytes(data)
                (self.folder / f"{outcome.kind}{i}.txt").write_text(outcome.detail + "\n")
        if self.out is not None and self.cases % 500 == 0:
            (self.out / f"progress_{self.label}.json").write_text(json.dumps(self.summary()))

    def summary(self) -> dict:
        return {"cases": self.cases, **self.counts, "cpu_seconds": round(time.process_time() - self.cpu, 1)}


def fuzz_generated(n: int, out: Path | None = None) -> Recorder:
    """`n` generated models (hypothesis, derandomized: the same models in every run of the same
    PYTHONHASHSEED; two seeds' runs part after a few hundred models)."""
    record = Recorder("generated", out)

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(onnx_models())
    def case(model: onnx.ModelProto) -> None:
        data = model.SerializeToString()
        record.before(data)
        record.add(run_case(model, chip=record.cases % CHIP_EVERY["generated"] == 0), data)

    case()
    if record.folder is not None:
        (record.folder / "current.onnx").unlink(missing_ok=True)  # every case ended: none to keep
    return record


def fuzz_mutated(n: int, folder: Path, seed: int = 17, out: Path | None = None) -> Recorder:
    """`n` byte-level mutants of the committed models (seeded)."""
    rng = np.random.default_rng(seed)
    originals = [p.read_bytes() for p in MODELS]
    record = Recorder("mutated", out)
    path = (record.folder or folder) / "current.onnx"  # the case's file is the one `before` keeps
    for i in range(n):
        data = mutate_bytes(originals[i % len(originals)], rng)
        path.write_bytes(data)
        record.add(run_case(path, chip=i % CHIP_EVERY["mutated"] == 0), data)
    path.unlink()
    return record


def test_generated_models_pass() -> None:
    record = fuzz_generated(DEFAULT_GENERATED)
    assert record.cases == DEFAULT_GENERATED
    assert not record.failures
    assert record.counts["ok"] and record.counts["refused"]  # the generator reaches both sides


def test_mutated_models_pass(tmp_path: Path) -> None:
    record = fuzz_mutated(DEFAULT_MUTATED, tmp_path)
    assert record.cases == DEFAULT_MUTATED
    assert not record.failures


@pytest.mark.slow
def test_twenty_thousand_models(tmp_path: Path) -> None:
    # the generated models are the same only for the same PYTHONHASHSEED (Hypothesis's generation order follows
    # it), so a failing case is kept as it is found, in FUZZ_OUT or else in pytest's own temporary folder
    out = Path(os.environ["FUZZ_OUT"]) if os.environ.get("FUZZ_OUT") else tmp_path / "fuzz"
    generated = fuzz_generated(SLOW_GENERATED, out)
    counts = {"generated": generated.summary()}  # each half's own CPU seconds
    mutated = fuzz_mutated(SLOW_MUTATED, tmp_path, out=out)
    counts["mutated"] = mutated.summary()
    print("FUZZ " + json.dumps(counts))
    (out / "fuzz_counts.json").write_text(json.dumps(counts, indent=2))
    assert generated.cases + mutated.cases == SLOW_GENERATED + SLOW_MUTATED
    assert not generated.failures + mutated.failures, f"the failing models are kept in {out}"
