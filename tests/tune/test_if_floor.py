"""Tuning on a chip of `if_floor` neurons: no closed form of its counts, so the spike phase falls back to the
ReLU model of the counts with the real (floored) spikes forward; the compile stays legal and as accurate as
the same chip with `if` neurons, on mlp_digits with short tuning."""

from __future__ import annotations

import dataclasses

import torch

from dse.compile import Prepared, compile
from dse.config import compose_config, hardware_from
from dse.hardware.legality import check
from dse.hardware.spec import Neuron
from dse.sim.spiking import integrate
from dse.tune.options import TuneOptions
from dse.tune.spiking import running_max_counts

SHORT = TuneOptions(free_steps=60, range_steps=20, round_steps=10, spike_steps=10, output_spike_steps=10)


def test_if_floor_compiles_legally_and_within_the_if_chips_accuracy(prepared: Prepared) -> None:
    chip_b = hardware_from(compose_config("compile", ["hardware=chip_b",
                                                      "hardware.neuron.offered=[if,lif,if_floor]"]).hardware)
    floor_b = dataclasses.replace(chip_b, neuron=dataclasses.replace(chip_b.neuron, model="if_floor"))
    plain, floor = compile(prepared, chip_b, tuning=SHORT), compile(prepared, floor_b, tuning=SHORT)
    assert floor.legal and check(floor.graph, floor_b) == []
    assert floor.report.metrics.accuracy_delta_pp <= plain.report.metrics.accuracy_delta_pp + 1.5


def test_the_running_maximum_is_ifs_count_not_if_floors() -> None:
    """Why if_floor must not train on `running_max_counts`: -1 for 4 steps then +0.5 for 12 (theta 1) peaks
    at 2 thresholds of integrated current, IF's count; the floor forgets the debt and fires 6 times."""
    current = torch.tensor([-1.0] * 4 + [0.5] * 12, dtype=torch.float64).reshape(1, 16, 1)
    theta = torch.tensor(1.0, dtype=torch.float64)
    model = int(running_max_counts(current, theta, 16).sum())
    assert model == int(integrate(current, theta, Neuron("if", 16)).sum()) == 2
    assert int(integrate(current, theta, Neuron("if_floor", 16)).sum()) == 6
