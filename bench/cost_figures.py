"""Energy, latency, area and placement of one network compiled for a preset (docs/cost.md's measured figures).
Prints one JSON object: the accuracy, the cost totals, and both placements' hops and NoC energy.

    .venv/bin/python bench/cost_figures.py lenet_mnist chip_a
    .venv/bin/python bench/cost_figures.py lenet_mnist chip_b --cores-per-chip 16
    .venv/bin/python bench/cost_figures.py resnet_mnist chip_b --cores-per-chip 16 --tuning none
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import yaml

from dse.compile import compile, load_model, prepare
from dse.config import conf_dir
from dse.cost.energy import network_cost
from dse.cost.model import cost_from_dict
from dse.cost.resources import layer_resources
from dse.hardware.spec import HardwareSpec
from dse.sim.evaluate import evaluate_chip
from dse.tune import TuneOptions

PRESETS = conf_dir() / "hardware"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("chip")
    parser.add_argument("--cores-per-chip", type=int, default=None)
    parser.add_argument("--tuning", default="multiphase")
    parser.add_argument("--test-samples", type=int, default=None)
    args = parser.parse_args()
    preset = yaml.safe_load((PRESETS / f"{args.chip}.yaml").read_text())
    preset.pop("defaults", None)
    cost_block = preset.pop("cost", None)
    hw = HardwareSpec.from_dict(preset)
    hw = dataclasses.replace(hw, mapping=dataclasses.replace(hw.mapping, cores_per_chip=args.cores_per_chip))
    graph, data = load_model(args.model, "mnist", test_samples=args.test_samples)
    prepared = prepare(graph, data, name=args.model)
    tuning = TuneOptions(mode=args.tuning)
    result = compile(prepared, hw, tuning=tuning)
    stats = evaluate_chip(prepared.exact, result.graph, hw, prepared.test_x, seed=tuning.seed).stats
    cost = network_cost(result.graph, hw, cost_from_dict(hw, cost_block), layer_resources(result.graph, hw),
                        stats if hw.spiking else None)
    noc = cost.noc
    print(json.dumps({"model": args.model, "chip": args.chip, "tuning": args.tuning,
                      "cores_per_chip": args.cores_per_chip, "accuracy": result.report.metrics.accuracy_compiled,
                      "crossbars": result.report.resources.crossbars, **cost.to_dict(),
                      "partitioned_over_in_order_hops": noc["partitioned"]["hops"] / noc["in_order"]["hops"]},
                     indent=1))


if __name__ == "__main__":
    main()
