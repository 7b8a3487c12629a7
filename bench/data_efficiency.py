"""Data efficiency: test accuracy against the number of calibration samples, the compile (no labels) and
quantization-aware retraining (QAT, the same samples with labels), lenet_mnist on chip_a.

    OMP_NUM_THREADS=1 .venv/bin/python bench/data_efficiency.py                 # ~25 min CPU, 3 seeds
    .venv/bin/python bench/data_efficiency.py --plot-only                       # redraw from the JSON

Each point is `bench.compile_vs_retrain.race_one`: the compile with `model.calib_samples=N` (public API) and
QAT from the float weights on the same first N train samples (80 % trained, 20 % validation for its early
stopping), both scored on the 1,000 test images; the same constraints and one-off costs as that bench. The
JSON (``--out``, rewritten after every point, so a cut-short run keeps what it measured) holds every run; the
figure (PNG + PDF next to it) draws the median over the seeds with bars from the smallest to the largest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compile_vs_retrain import DEFAULT_SET, MODEL, qat_data, race_one, warm_up  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "studies" / "data_efficiency" / "data_efficiency.json"
SIZES = (64, 128, 256, 512, 1024, 2048, 4000)


def measure(sizes: Sequence[int], seeds: Sequence[int], big_seeds: Sequence[int], big_from: int,
            overrides: Sequence[str], out: Path, *, max_steps: int, patience: int) -> dict[str, Any]:
    record: dict[str, Any] = {"model": MODEL, "overrides": list(overrides), "runs": [],
                              "load_average_1min": [round(os.getloadavg()[0], 2)]}
    warm_up(overrides)
    for seed in dict.fromkeys([*seeds, *big_seeds]):  # seed by seed: a run cut short still has whole curves
        for n in sizes:
            if seed not in (big_seeds if n >= big_from else seeds):
                continue
            data = qat_data(n)
            run = race_one(overrides, n, seed, data, max_steps=max_steps, patience=patience)
            record["runs"].append({"samples": n, **run})
            record["load_average_1min"].append(round(os.getloadavg()[0], 2))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record, indent=1))
            print(f"[data_efficiency] N={n} seed={seed}: compile {run['compile']['accuracy']:.3f} "
                  f"({run['compile']['cpu_s']} CPU s), QAT {run['qat']['accuracy']:.3f} "
                  f"({run['qat']['cpu_s']} CPU s)", file=sys.stderr, flush=True)
    return record


def summary(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per sample count and side: seeds, median / min / max test accuracy and delta (pp), median CPU s."""
    rows = []
    for n in sorted({r["samples"] for r in record["runs"]}):
        runs = [r for r in record["runs"] if r["samples"] == n]
        for side in ("compile", "qat"):
            acc = [r[side]["accuracy"] for r in runs]
            rows.append({"samples": n, "side": side, "seeds": len(runs), "accuracy": statistics.median(acc),
                         "accuracy_min": min(acc), "accuracy_max": max(acc),
                         "delta_pp": statistics.median(r[side]["delta_pp"] for r in runs),
                         "cpu_s": statistics.median(r[side]["cpu_s"] for r in runs),
                         "wall_s": statistics.median(r[side]["wall_s"] for r in runs)})
    return rows


def plot(record: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    from dse.explore.plots import COLUMN_WIDTH_IN, MARKERS, PALETTE, PANEL_HEIGHT_IN, STYLE

    float_acc = record["runs"][0]["compile"]["accuracy_float"]
    sides = {"compile": ("compile (unlabelled samples)", 0), "qat": ("retraining, QAT (labelled samples)", 1)}
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, PANEL_HEIGHT_IN + 0.3))
        ax.axhline(100 * float_acc, color="0.4", linestyle="--", linewidth=0.8, label="float model")
        for side, (name, i) in sides.items():
            pts = [r for r in rows if r["side"] == side]
            x = [r["samples"] for r in pts]
            y = [100 * r["accuracy"] for r in pts]
            err = [[100 * (r["accuracy"] - r["accuracy_min"]) for r in pts],
                   [100 * (r["accuracy_max"] - r["accuracy"]) for r in pts]]
            ax.errorbar(x, y, yerr=err, color=PALETTE[i], marker=MARKERS[i], capsize=2, label=name)
        ax.set_xscale("log", base=2)
        sizes = sorted({r["samples"] for r in rows})
        ax.xaxis.set_major_locator(FixedLocator(sizes))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("calibration / training samples (images)")
        ax.set_ylabel("test accuracy (%, 1,000 images)")
        seeds = sorted({r["seeds"] for r in rows}, reverse=True)
        short = {"hardware": "{}:", "hardware.weights.bits": "{}-bit weights,", "hardware.io.input_bits":
                 "{}-bit input,", "hardware.io.output_bits": "{}-bit output,"}
        fixed = " ".join(short.get(k, k + "={},").format(v) for k, v in
                         (o.split("=", 1) for o in record["overrides"])).rstrip(",")
        n_seeds = f"{seeds[0]} seeds" + (f" ({seeds[-1]} at some sizes)" if len(seeds) > 1 else "")
        ax.set_title(f"{record['model']}, {fixed}\nmedian of {n_seeds}, bars min to max",
                     fontsize=7)
        ax.legend(loc="lower right")
        paths = [out.with_suffix(s) for s in (".png", ".pdf")]
        for p in paths:
            fig.savefig(p)
        plt.close(fig)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--big-seeds", type=int, nargs="+", default=None,
                        help="seeds for sample counts >= --big-from (default: --seeds)")
    parser.add_argument("--big-from", type=int, default=2048)
    parser.add_argument("--max-steps", type=int, default=2000, help="QAT's step cap")
    parser.add_argument("--patience", type=int, default=10, help="QAT validation checks without improvement")
    parser.add_argument("--set", action="append", default=None, metavar="OVERRIDE",
                        help=f"a compile override (repeatable; default {' '.join(DEFAULT_SET)})")
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON; the figure goes next to it")
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from --out")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                        help="join the runs of these files (runs with seeds split over processes) into --out, "
                             "the first of a (samples, seed) pair kept, and draw it")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        seen: dict[tuple[int, int], dict[str, Any]] = {}
        for part in parts:
            for r in part["runs"]:
                seen.setdefault((r["samples"], r["seed"]), r)
        record = {**parts[0], "runs": sorted(seen.values(), key=lambda r: (r["seed"], r["samples"])),
                  "load_average_1min": [x for part in parts for x in part["load_average_1min"]]}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))
    elif args.plot_only:
        record = json.loads(args.out.read_text())
    else:
        record = measure(args.sizes, args.seeds, args.big_seeds or args.seeds, args.big_from,
                         args.set or DEFAULT_SET, args.out, max_steps=args.max_steps, patience=args.patience)
    rows = summary(record)
    paths = plot(record, rows, args.out)
    at = {r["side"]: r for r in rows if r["samples"] == 256}
    print(json.dumps({"summary": rows, "figure": [str(p) for p in paths],
                      "delta_pp_at_256": {k: v["delta_pp"] for k, v in at.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
