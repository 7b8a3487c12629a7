"""`dse.config.effect`: the table of settings that act only on some neuron models or some tuning, checked against
the config schema, the neuron models and `TuneOptions` (the refusals themselves: tests/test_compile_cli.py's
bad input, tests/explore/test_sweep_space.py)."""

from __future__ import annotations

import dataclasses

import pytest
from compiler_helpers import integer_form
from omegaconf import OmegaConf

from dse.config import compose_config
from dse.config.effect import ACTS_ON, NON_SPIKING, REQUIRES, ROUNDING_READS, check_given, idle_reason
from dse.errors import ConfigError
from dse.hardware.spec import NEURON_MODELS, SPIKING_MODELS
from dse.tune.options import TuneOptions

TUNE_FIELDS = {f.name for f in dataclasses.fields(TuneOptions)}


def given(**values):
    """`idle_reason`'s values: a compile's, multiphase tuning of a ReLU chip unless `values` say otherwise (keys
    with __ for dots)."""
    base = {"hardware.neuron.model": ["relu"], "tuning.mode": ["multiphase"]}
    base.update({k.replace("__", "."): v for k, v in values.items()})
    return lambda path: base.get(path, [None])


@pytest.mark.parametrize("chip", ["chip_a", "chip_b", "ideal"])
def test_every_path_of_the_tables_is_a_field_of_the_config(chip):
    cfg = compose_config("sweep", [f"hardware={chip}"])
    for path in [*ACTS_ON, *REQUIRES, *(needed for needed, _ in REQUIRES.values())]:
        parent, key = path.rsplit(".", 1)
        assert key in OmegaConf.select(cfg, parent), path


def test_every_spike_aware_tuning_setting_is_in_the_table_and_the_baseline_reads_real_settings():
    spiking = {f"tuning.{name}" for name in TUNE_FIELDS if name.startswith("spike_") or name == "output_spike_steps"}
    assert spiking <= set(ACTS_ON)
    assert ROUNDING_READS <= TUNE_FIELDS
    assert set(NON_SPIKING) | set(SPIKING_MODELS) == set(NEURON_MODELS) and NON_SPIKING
    for users in ACTS_ON.values():
        assert users and set(users) <= set(NEURON_MODELS)


@pytest.mark.parametrize("path", sorted(ACTS_ON))
@pytest.mark.parametrize("model", NEURON_MODELS)
def test_a_setting_is_idle_exactly_where_no_model_uses_it(path, model):
    on = dict.fromkeys(n.replace(".", "__") for n, _ in REQUIRES.values())  # what REQUIRES asks for, on
    on = {k: [True] for k in on}
    reason = idle_reason(path, given(hardware__neuron__model=[model], **on), "the chip has")
    assert (reason is None) == (model in ACTS_ON[path]), reason
    # beside a model that uses it, it acts
    assert idle_reason(path, given(hardware__neuron__model=[model, ACTS_ON[path][0]], **on), "the chip has") is None


@pytest.mark.parametrize("name", sorted(TUNE_FIELDS - {"mode"}))
def test_under_the_rounding_baseline_only_what_it_reads_acts(name):
    path = f"tuning.{name}"
    on = {needed.replace(".", "__"): [True] for needed, _ in REQUIRES.values()}
    # on spiking neurons with everything REQUIRES asks for on: only the mode can make it idle
    idle = idle_reason(path, given(hardware__neuron__model=["if"], tuning__mode=["none"], **on), "the chip has")
    assert (idle is None) == (name in ROUNDING_READS), idle
    assert idle_reason(path, given(hardware__neuron__model=["if"], tuning__mode=["none", "multiphase"], **on),
                       "the chip has") is None


@pytest.mark.parametrize("path", sorted(REQUIRES))
def test_a_setting_that_needs_another_acts_only_with_it(path):
    needed, on = REQUIRES[path]
    key = needed.replace(".", "__")
    spiking = given(hardware__neuron__model=["if"], **{key: [not on]})
    assert idle_reason(path, spiking, "the chip has") == f" without {needed}={str(on).lower()}"
    assert idle_reason(path, given(hardware__neuron__model=["if"], **{key: [not on, on]}), "the chip has") is None


def test_a_null_value_sets_nothing_and_the_message_names_the_path():
    spiking = given(hardware__neuron__model=["if", "lif"])
    check_given([("hardware.io.input_bits", None)], spiking, "the chip has")
    message = (r"^search parameter hardware\.io\.output_bits changes nothing: it acts on relu neurons, and the "
               r"sweep's chips have if, lif \(hardware\.neuron\.model\)$")
    with pytest.raises(ConfigError, match=message):
        check_given([("hardware.weights.bits", 4), ("hardware.io.output_bits", 8)], spiking, "the sweep's chips have",
                    "search parameter ")


def changed_value(name: str, value: object) -> object:
    """Another valid value of tuning setting `name` (its type and range kept)."""
    from dse.tune.losses import OUTPUT_LOSSES

    if name == "output_loss":
        return next(v for v in OUTPUT_LOSSES if v != value)
    if name == "round_fractions":
        return (0.6, 1.0)
    if isinstance(value, bool):
        return not value
    if name in ("holdout_fraction", "min_improvement"):
        return value / 2
    return value * 2 if value else 1


@pytest.fixture(scope="module")
def prepared():
    """mlp_digits on 200 calibration images, prepared once for the compiles below (compiling never changes it)."""
    from dse.compile import load_model, prepare

    graph, data = load_model("mlp_digits", "digits")
    return prepare(graph, data, name="mlp_digits", calib_samples=200)


@pytest.mark.parametrize("chip", ["chip_a", "chip_b"])
def test_the_rounding_baseline_reads_nothing_outside_its_list(prepared, chip):
    """Every tuning setting outside `ROUNDING_READS` changed at once (noise-aware tuning aside: tuning.mode=none
    refuses it) leaves the baseline's compiled network as it was, bit for bit: the table's claim, measured."""
    from dse.compile import compile
    from dse.config import hardware_from

    hw = hardware_from(compose_config("compile", [f"hardware={chip}"]).hardware)
    base = TuneOptions(mode="none")
    idle = {name: changed_value(name, getattr(base, name)) for name in TUNE_FIELDS - ROUNDING_READS
            if name not in ("mode", "noise_aware")}
    # ... and one it reads does change it (the comparison can see a difference)
    read = dataclasses.replace(base, bias_correction=True)
    results = [compile(prepared, hw, tuning=t) for t in (base, dataclasses.replace(base, **idle), read)]
    cores = [integer_form(r.graph) for r in results]
    assert cores[0] and cores[0] == cores[1] and cores[0] != cores[2]
    assert results[0].report.metrics.accuracy_compiled == results[1].report.metrics.accuracy_compiled


HARDWARE_CHANGE = {"hardware.neuron.timesteps": 8, "hardware.neuron.reset": "zero",
                   "hardware.neuron.encoding": "poisson", "hardware.neuron.leak": 0.5, "hardware.io.input_bits": 4,
                   "hardware.io.output_bits": 4}


def test_every_hardware_setting_of_the_table_has_a_change_to_try():
    assert {p for p in ACTS_ON if p.startswith("hardware.")} == set(HARDWARE_CHANGE)


@pytest.mark.parametrize("chip", ["chip_a", "chip_b"])
def test_what_the_chip_has_no_use_for_changes_nothing(prepared, chip):
    """Every setting `idle_reason` calls idle for the chip (its neuron model, and noise-aware tuning and bias
    correction off), changed at once, leaves the tuned network as it was, bit for bit: the tables' claims,
    measured (multiphase tuning, few steps)."""
    from dse.compile import compile
    from dse.config import hardware_from

    base_cfg = compose_config("compile", [f"hardware={chip}"])
    base = TuneOptions(free_steps=6, range_steps=4, round_fractions=(0.5, 1.0), round_steps=3, spike_steps=4,
                       output_spike_steps=4, spike_calib_samples=100)

    def values(path):
        return [OmegaConf.select(base_cfg, path) if path.startswith("hardware.") else getattr(base, path[7:])]

    idle = [p for p in [*ACTS_ON, *REQUIRES] if not p.startswith("study.") and idle_reason(p, values, "the chip has")]
    assert idle  # each chip has some: the leak on chip_b's IF neurons, time steps on chip_a, ...
    # a spiking chip's own check refuses I/O bits (tests/hardware/test_hardware_spec.py): nothing to compile
    spiking = hardware_from(base_cfg.hardware).spiking
    hw_idle = [f"{p}={HARDWARE_CHANGE[p]}" for p in idle
               if p.startswith("hardware.") and not (spiking and p.startswith("hardware.io."))]
    tune_idle = {p[7:]: changed_value(p[7:], getattr(base, p[7:])) for p in idle if p.startswith("tuning.")}
    runs = [(base_cfg, base), (compose_config("compile", [f"hardware={chip}", *hw_idle]),
                               dataclasses.replace(base, **tune_idle))]
    results = [compile(prepared, hardware_from(cfg.hardware), tuning=t) for cfg, t in runs]
    cores = [integer_form(r.graph) for r in results]
    assert cores[0] and cores[0] == cores[1], (hw_idle, tune_idle)
    # ... and the same measured accuracy, resources, energy, latency and area (the chip's echo and timings aside)
    reports = [measured(r.report.to_dict()) for r in results]
    assert reports[0] == reports[1]


def measured(report: object) -> object:
    """A report without what echoes the settings or times the run."""
    if isinstance(report, dict):
        return {k: measured(v) for k, v in report.items() if k not in ("hardware", "tuning", "passes", "steps")
                and not any(t in k for t in ("seconds", "wall", "cpu", "rss"))}
    if isinstance(report, list):
        return [measured(v) for v in report]
    return report
