"""The stopping rule of the tuning phases (dse/tune/stopping.py) on a scripted sequence of held-out losses."""

from __future__ import annotations

import dataclasses

import pytest

from dse.compile import compile
from dse.config import compose_config, hardware_from
from dse.errors import ConfigError
from dse.tune.options import TuneOptions
from dse.tune.stopping import Patience, train_until_done


def run(losses: list[float], max_steps: int, check_steps: int, patience: int, min_improvement: float):
    """The loss after step i is losses[i - 1]; the 'parameters' are the step count."""
    state = {"step": 0}
    rule = Patience(patience, min_improvement, reference=1.0, lowest=1.0)

    def step() -> None:
        state["step"] += 1

    steps = train_until_done(rule, max_steps, check_steps, step, lambda: losses[state["step"] - 1],
                             lambda: state["step"], lambda saved: state.update(step=saved))
    return steps, state["step"], rule.lowest


def test_a_phase_ends_after_patience_checks_without_a_relative_improvement() -> None:
    # checks after steps 2, 4, 6, 8: 0.5 improves; 0.499 and 0.498 improve by less than 1 %: two misses end it
    losses = [0.9, 0.5, 0.5, 0.499, 0.5, 0.498, 0.1, 0.1, 0.1, 0.1]
    steps, kept, lowest = run(losses, max_steps=10, check_steps=2, patience=2, min_improvement=0.01)
    assert steps == 6
    assert (kept, lowest) == (6, 0.498)  # the lowest measured, though too small a gain to go on for


def test_the_start_is_kept_when_no_check_beats_it_and_the_cap_ends_a_phase() -> None:
    steps, kept, lowest = run([2.0] * 8, max_steps=8, check_steps=3, patience=5, min_improvement=0.0)
    assert (steps, kept, lowest) == (8, 0, 1.0)  # checks after 3, 6 and the last step (8); the start is kept
    steps, kept, lowest = run([float("nan")] * 4, max_steps=4, check_steps=1, patience=2, min_improvement=0.0)
    assert (steps, kept, lowest) == (2, 0, 1.0)  # NaN never improves


def test_every_bound_of_the_rule_is_checked() -> None:
    for field, value in (("patience", 0), ("check_steps", 0), ("spike_check_steps", 0), ("spike_patience", 0),
                         ("holdout_fraction", 1.0), ("min_improvement", -0.1)):
        with pytest.raises(ConfigError, match=f"tuning.{field}"):
            TuneOptions(**{field: value})


def test_the_spike_aware_phase_ends_after_its_own_patience(prepared) -> None:
    """On a spiking chip the spike-aware phase counts `spike_patience` checks without improving, the other phases
    `patience`. No check improves here (`min_improvement` 0.99), so each phase runs its patience's checks: the
    output block's spike-aware phase (cap 40) `spike_patience` x 5 steps, a hidden block's as many up to its cap
    of 10."""
    chip_b = hardware_from(compose_config("compile", ["hardware=chip_b"]).hardware)
    base = TuneOptions(free_steps=20, range_steps=20, round_fractions=(1.0,), round_steps=10, check_steps=2,
                       patience=2, min_improvement=0.99, floor_factor=0.0, spike_steps=10, output_spike_steps=40,
                       spike_check_steps=5, spike_calib_samples=100)
    for spike_patience in (1, 3):
        options = dataclasses.replace(base, spike_patience=spike_patience)
        blocks = compile(prepared, chip_b, tuning=options).report.to_dict()["blocks"]
        *hidden, output = [b["steps"] for b in blocks if "spike" in b.get("steps", {})]
        assert output["spike"] == 5 * spike_patience
        assert all(b["spike"] == min(10, 5 * spike_patience) for b in hidden) and hidden
        assert all(b["free"] == 4 for b in (*hidden, output))  # `patience` 2 checks of 2 steps


def test_a_hidden_block_whose_spikes_cost_little_is_not_trained_on_them(prepared) -> None:
    """A hidden block whose loss on the real dynamics is within `floor_factor` of the loss the ReLU-model phases
    left it at skips the spike-aware steps; the output block never does; `floor_factor=0` trains every one."""
    chip_b = hardware_from(compose_config("compile", ["hardware=chip_b"]).hardware)
    base = TuneOptions(free_steps=10, range_steps=10, round_fractions=(1.0,), round_steps=10, spike_steps=10,
                       output_spike_steps=10, spike_check_steps=5, spike_calib_samples=200)
    for floor_factor in (1.1, 0.0, 100.0):
        options = dataclasses.replace(base, floor_factor=floor_factor)
        blocks = compile(prepared, chip_b, tuning=options).report.to_dict()["blocks"]
        *hidden, output = [b for b in blocks if "spike_init" in b["losses"]]
        assert hidden and output["steps"]["spike"] > 0
        for b in hidden:
            losses = b["losses"]
            cheap = losses["spike_init"] <= floor_factor * losses["rate_model"]
            assert (b["steps"]["spike"] == 0) == cheap, (floor_factor, b)
            assert cheap if floor_factor == 100.0 else not cheap if floor_factor == 0.0 else True
            if cheap:
                assert losses["spike"] == losses["spike_init"]
