"""The fuzz suite (issue 17): generated models and byte-level mutants of the committed ones through
`load_onnx` and `prepare`; each must be imported with finite outputs (equal to onnxruntime's where it runs
them) or refused in one line (`harness.run_case`). A few seconds by default (fixed seeds); the slow test runs
20,000 models and, with FUZZ_OUT=DIR, writes the counts (fuzz_counts.json) and every failing model there:

    OMP_NUM_THREADS=1 FUZZ_OUT=/tmp/fuzz python -m pytest tests/fuzz -m slow -s
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from generators import MODELS, mutate_bytes, onnx_models
from harness import Outcome, run_case
from hypothesis import HealthCheck, Phase, given, settings

DEFAULT_GENERATED, DEFAULT_MUTATED = 40, 8
SLOW_GENERATED, SLOW_MUTATED = 16_000, 4_000


def progress(results: list[tuple[Outcome, bytes]], out: Path | None, label: str) -> None:
    """Every 500 cases, the counts so far into OUT/progress_<label>.json (a long run can be watched)."""
    if out is not None and len(results) % 500 == 0:
        out.mkdir(parents=True, exist_ok=True)
        counts = {"cases": len(results), **Counter(o.kind for o, _ in results)}
        (out / f"progress_{label}.json").write_text(json.dumps(counts))


def fuzz_generated(n: int, out: Path | None = None) -> list[tuple[Outcome, bytes]]:
    """`n` generated models (hypothesis, derandomized: the same models every run), each with its outcome."""
    results: list[tuple[Outcome, bytes]] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(onnx_models())
    def case(model: onnx.ModelProto) -> None:
        outcome = run_case(model)
        results.append((outcome, model.SerializeToString() if outcome.failed else b""))
        progress(results, out, "generated")

    case()
    return results


def fuzz_mutated(n: int, folder: Path, seed: int = 17, out: Path | None = None) -> list[tuple[Outcome, bytes]]:
    """`n` byte-level mutants of the committed models (seeded), each with its outcome."""
    rng = np.random.default_rng(seed)
    originals = [p.read_bytes() for p in MODELS]
    results = []
    for i in range(n):
        data = mutate_bytes(originals[i % len(originals)], rng)
        path = folder / f"mutant{i}.onnx"
        path.write_bytes(data)
        outcome = run_case(path)
        results.append((outcome, data if outcome.failed else b""))
        progress(results, out, "mutated")
        path.unlink()
    return results


def report(results: list[tuple[Outcome, bytes]], out: Path | None) -> Counter:
    counts = Counter(o.kind for o, _ in results)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for i, (o, data) in enumerate(results):
            if o.failed:
                (out / f"{o.kind}{i}.onnx").write_bytes(data)
                (out / f"{o.kind}{i}.txt").write_text(o.detail)
    return counts


def failures(results: list[tuple[Outcome, bytes]]) -> list[str]:
    return [f"{o.kind}: {o.detail}" for o, _ in results if o.failed]


def test_generated_models_pass() -> None:
    results = fuzz_generated(DEFAULT_GENERATED)
    assert len(results) == DEFAULT_GENERATED
    assert not failures(results)
    kinds = Counter(o.kind for o, _ in results)
    assert kinds["ok"] and kinds["refused"]  # the generator reaches both sides


def test_mutated_models_pass(tmp_path: Path) -> None:
    results = fuzz_mutated(DEFAULT_MUTATED, tmp_path)
    assert not failures(results)


@pytest.mark.slow
def test_twenty_thousand_models(tmp_path: Path) -> None:
    out = Path(os.environ["FUZZ_OUT"]) if os.environ.get("FUZZ_OUT") else None
    generated = fuzz_generated(SLOW_GENERATED, out)
    mutated = fuzz_mutated(SLOW_MUTATED, tmp_path, out=out)
    counts = {"generated": dict(report(generated, out and out / "generated")),
              "mutated": dict(report(mutated, out and out / "mutated"))}
    print("FUZZ " + json.dumps(counts))
    if out is not None:
        (out / "fuzz_counts.json").write_text(json.dumps(counts, indent=2))
    assert not failures(generated) + failures(mutated)
