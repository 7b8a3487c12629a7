"""A known fault map (hardware.device.fault_map): lenet_mnist compiled for one chip with stuck cells, the map
known to the compiler against the same map ignored (the chip only measured with it), and known on the same chip
with `spare_columns=K` spare columns per crossbar (hardware.crossbar.spare_columns) for each K given. Draws the
map from the compiled crossbars (`dse.sim.fault_map`) at `stuck` (half low, half high) for the largest K: every
case has the same cells, a chip with K spares the first K of them. Prints one JSON line per
case, the chip's area (by part) beside.

    OMP_NUM_THREADS=1 .venv/bin/python bench/device_faults.py [stuck=0.01] [seed=0] [spares=2,4] [hardware=chip_a]
        [tuning=...]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from dse.compile import compile, load_model_config, prepare
from dse.config import compose_config, hardware_from, tuning_from
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.sim.device_noise import draw_fault_map


def with_spares(hw: HardwareSpec, count: int) -> HardwareSpec:
    return dataclasses.replace(hw, crossbar=dataclasses.replace(hw.crossbar, spare_columns=count))


def main(args: list[str]) -> None:
    opts = {"stuck": 0.01, "seed": 0, "spares": "2,4"}
    overrides = []
    for a in args:
        key, _, value = a.partition("=")
        if key in opts:
            opts[key] = type(opts[key])(value)
        else:
            overrides.append(a)
    spares = [int(k) for k in opts["spares"].split(",") if k]
    cfg = compose_config("compile", overrides)
    hw, tuning = hardware_from(cfg.hardware), tuning_from(cfg.tuning)
    graph, data = load_model_config(cfg.model)
    prepared = prepare(graph, data, name=cfg.model.name)
    plain = compile(prepared, hw, tuning=tuning)
    half = opts["stuck"] / 2
    drawn = dataclasses.replace(hw, device=dataclasses.replace(hw.device, stuck_low=half, stuck_high=half))
    path = Path(tempfile.mkdtemp()) / "faults.npz"  # for the most spares: a chip with fewer uses the first ones
    np.savez_compressed(path, **draw_fault_map(plain.graph, with_spares(drawn, max(spares, default=0)), opts["seed"]))
    print(json.dumps({"case": "ideal", "delta_pp": plain.report.metrics.accuracy_delta_pp}), flush=True)
    cases = [("ignored", False, 0), ("known", True, 0)] + [(f"known_spares_{k}", True, k) for k in spares]
    for case, known, count in cases:
        device = dataclasses.replace(hw.device, fault_map=str(path), fault_map_known=known)
        result = compile(prepared, dataclasses.replace(with_spares(hw, count), device=device), tuning=tuning)
        r = result.report
        repaired = sum(int((n.op.quant.spare_of >= 0).sum()) for n in result.graph.of_type(o.CoreOp)
                       if n.op.quant.spare_of is not None)
        print(json.dumps({"case": case, "stuck": opts["stuck"], "seed": opts["seed"], "spare_columns": count,
                          "delta_pp": r.device.accuracy_delta_pp_mean, "nominal_delta_pp": r.metrics.accuracy_delta_pp,
                          "columns_repaired": repaired, "crossbars": r.resources.crossbars,
                          "area_mm2": r.cost and {k: round(v, 6) for k, v in r.cost.area_mm2.items()},
                          "compile_seconds": round(r.compile_seconds, 1),
                          "fault_correct_seconds": round(sum(p.seconds for p in r.passes if p.name == "fault_correct"),
                                                         2)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
