"""Spiking chip (chip_b) on lenet_mnist: error, activity and compile time against the time window, IF vs LIF,
and the max-norm baseline (`tuning=none`). Prints one JSON line per setting.

    .venv/bin/python bench/spiking_vs_timesteps.py
"""

from __future__ import annotations

import json

from dse.compile import compile, load_model, prepare
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Mapping, Neuron, Weights
from dse.tune.options import TuneOptions

OFFERED = ("if", "lif")
SETTINGS = [
    ("if T=4", Neuron("if", 4, offered=OFFERED), "multiphase"),
    ("if T=8", Neuron("if", 8, offered=OFFERED), "multiphase"),
    ("if T=16", Neuron("if", 16, offered=OFFERED), "multiphase"),
    ("if T=32", Neuron("if", 32, offered=OFFERED), "multiphase"),
    ("lif 0.9 T=16", Neuron("lif", 16, leak=0.9, offered=OFFERED), "multiphase"),
    ("if T=16 none", Neuron("if", 16, offered=OFFERED), "none"),
]


def main() -> None:
    graph, data = load_model("lenet_mnist", "mnist")
    prepared = prepare(graph, data, name="lenet_mnist")
    chip = dict(name="chip_b", crossbar=Crossbar(256, 256, 4, False), weights=Weights(4), io=IO(None, None),
                mapping=Mapping("expanded"))
    for label, neuron, mode in SETTINGS:
        r = compile(prepared, HardwareSpec(neuron=neuron, **chip), tuning=TuneOptions(mode=mode)).report.to_dict()
        print(json.dumps({"setting": label, "delta_pp": r["accuracy_delta_pp"], "agreement": r["agreement"],
                          "legal": r["legal"], "compile_seconds": round(r["compile_seconds"], 1),
                          "crossbars": r["resources"]["crossbars"], **r["spiking"]}), flush=True)


if __name__ == "__main__":
    main()
