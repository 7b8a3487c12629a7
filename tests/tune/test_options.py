"""Every `tuning.*` setting is checked when the options are built: a value that no tuner can use (a NaN or
negative rate, a zero batch, a negative seed) is one ConfigError naming the setting, never a traceback from deep
in a training step nor a run that silently goes on with it."""

from __future__ import annotations

import dataclasses
import math

import pytest

from dse.errors import ConfigError
from dse.tune.options import BOUNDS, FLAGS, TuneOptions

CHOICES = {"mode", "output_loss"}  # checked by check_choice (tests/test_compile_cli.py's bad input)


def test_every_setting_has_its_rule():
    fields = {f.name for f in dataclasses.fields(TuneOptions)}
    assert fields == set(BOUNDS) | set(FLAGS) | CHOICES | {"round_fractions"}
    assert not set(BOUNDS) & set(FLAGS)


def test_the_defaults_pass_their_rules():
    TuneOptions()  # raises if a default broke its own rule


def below(name: str) -> list[object]:
    """Values just outside the rule of `name`, and the non-numbers every numeric setting refuses."""
    bound, default = BOUNDS[name], getattr(TuneOptions(), name)
    bad: list[object] = [bound.low - 1, None, "1", True]
    if bound.strict:
        bad.append(bound.low)
    if bound.high is not None:
        bad.append(bound.high)
    if not bound.integer:
        bad += [math.nan, math.inf, -math.inf, bound.low - 1e-9] if not bound.strict else [math.nan, math.inf]
    else:
        bad.append(float(default))  # a float where an integer is meant
    return bad


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_a_value_outside_a_settings_rule_is_refused_naming_it(name):
    for value in below(name):
        with pytest.raises(ConfigError, match=rf"^tuning\.{name} must be "):
            TuneOptions(**{name: value})


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_the_edge_of_a_settings_rule_is_accepted(name):
    bound = BOUNDS[name]
    edge = bound.low if not bound.strict else bound.low + 1e-6
    TuneOptions(**{name: int(edge) if bound.integer else float(edge)})


@pytest.mark.parametrize("name", FLAGS)
def test_a_flag_is_true_or_false(name):
    with pytest.raises(ConfigError, match=rf"^tuning\.{name} must be true or false"):
        TuneOptions(**{name: "yes"})


@pytest.mark.parametrize("fractions", [(0.5, 2.0), (0.0, 1.0), (0.9, 0.5, 1.0), (math.nan,), ("half",)])
def test_round_fractions_must_be_fractions_rounding_more_each_round(fractions):
    with pytest.raises(ConfigError, match=r"^tuning\.round_fractions must be fractions in \(0, 1\]"):
        TuneOptions(round_fractions=fractions)


@pytest.mark.parametrize("fractions", [(), (1.0,), (0.5, 0.5, 1.0), (0.25, 0.5)])
def test_round_fractions_that_round_more_each_round_are_accepted(fractions):
    TuneOptions(round_fractions=fractions)


def test_a_rate_past_what_float32_steps_hold_is_refused():
    """lr=1e300 reached Adam's float32 step as a RuntimeError traceback; 1e9 is the largest rate taken."""
    with pytest.raises(ConfigError, match=r"^tuning\.lr must be in \[0, 1e\+09\) \(got 1e\+300\)$"):
        TuneOptions(lr=1e300)
    assert TuneOptions(grid_lr=1e8).grid_lr == 1e8
