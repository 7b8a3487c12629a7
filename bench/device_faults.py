"""A known fault map (hardware.device.fault_map): lenet_mnist compiled for one chip with stuck cells, the map
known to the compiler against the same map ignored (the chip only measured with it). Draws the map from the
compiled crossbars (`dse.sim.fault_map`) at `stuck` (half low, half high), then prints one JSON line per case.

    OMP_NUM_THREADS=1 .venv/bin/python bench/device_faults.py [stuck=0.01] [seed=0] [hardware=chip_a] [tuning=...]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from dse.compile import compile, load_model, prepare
from dse.config import compose_config, hardware_from, tuning_from
from dse.sim.device_noise import draw_fault_map


def main(args: list[str]) -> None:
    opts = {"stuck": 0.01, "seed": 0}
    overrides = []
    for a in args:
        key, _, value = a.partition("=")
        if key in opts:
            opts[key] = type(opts[key])(value)
        else:
            overrides.append(a)
    cfg = compose_config("compile", overrides)
    hw, tuning = hardware_from(cfg.hardware), tuning_from(cfg.tuning)
    graph, data = load_model(cfg.model.name, cfg.model.dataset, test_samples=cfg.model.test_samples)
    prepared = prepare(graph, data, name=cfg.model.name)
    plain = compile(prepared, hw, tuning=tuning)
    half = opts["stuck"] / 2
    drawn = dataclasses.replace(hw, device=dataclasses.replace(hw.device, stuck_low=half, stuck_high=half))
    path = Path(tempfile.mkdtemp()) / "faults.npz"
    np.savez_compressed(path, **draw_fault_map(plain.graph, drawn, opts["seed"]))
    print(json.dumps({"case": "ideal", "delta_pp": plain.report.metrics.accuracy_delta_pp}), flush=True)
    for known in (False, True):
        device = dataclasses.replace(hw.device, fault_map=str(path), fault_map_known=known)
        r = compile(prepared, dataclasses.replace(hw, device=device), tuning=tuning).report
        print(json.dumps({"case": "known" if known else "ignored", "stuck": opts["stuck"], "seed": opts["seed"],
                          "delta_pp": r.device.accuracy_delta_pp_mean, "nominal_delta_pp": r.metrics.accuracy_delta_pp,
                          "compile_seconds": round(r.compile_seconds, 1)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
