"""The search space: dotted config paths checked against the composed config, command-line sweeps."""

from __future__ import annotations

import re

import pytest

from dse.config import compose_config, split_sweeps
from dse.errors import ConfigError
from dse.explore.space import build_space


def space_of(*overrides: str, **kwargs):
    cmd = split_sweeps(list(overrides))
    cfg = compose_config("sweep", cmd.overrides)
    return build_space(cfg, cmd.sweeps, cmd.pinned, **kwargs), cfg


def test_default_space_of_chip_a_sweeps_weights_io_and_crossbar():
    space, _ = space_of("hardware=chip_a")
    assert set(space.params) >= {"hardware.weights.bits", "hardware.io.input_bits", "hardware.crossbar.rows"}
    assert space.tied == {"hardware.io.output_bits": "hardware.io.input_bits",
                          "hardware.crossbar.cols": "hardware.crossbar.rows"}
    assert space.size >= 24
    point = next(space.grid())
    settings = space.settings(point)
    assert settings["hardware.io.output_bits"] == settings["hardware.io.input_bits"]
    assert settings["hardware.crossbar.cols"] == settings["hardware.crossbar.rows"]


def test_chip_b_space_sweeps_the_neuron_model_and_time_steps():
    space, _ = space_of("hardware=chip_b")
    assert {"hardware.neuron.model", "hardware.neuron.timesteps"} <= set(space.params)


def test_apply_sets_every_path_and_keeps_types():
    space, cfg = space_of("search=custom", "hardware.weights.bits=2,4", "strategy.name=split,prune")
    assert space.size == 4
    c = space.apply(cfg, {"hardware.weights.bits": 2, "strategy.name": "prune"})
    assert c.hardware.weights.bits == 2 and c.strategy.name == "prune"
    assert cfg.hardware.weights.bits == 8  # the base is untouched


def test_command_line_sweep_replaces_values_and_pin_removes_a_parameter():
    space, _ = space_of("hardware.weights.bits=3,5", "hardware.crossbar.rows=128")
    assert space.params["hardware.weights.bits"] == (3, 5)
    assert "hardware.crossbar.rows" not in space.params
    assert "hardware.crossbar.cols" not in space.tied  # its source was pinned: the tie goes


def test_sweeping_a_tied_path_unties_it():
    space, _ = space_of("hardware.io.output_bits=8,10")
    assert "hardware.io.output_bits" in space.params and "hardware.io.output_bits" not in space.tied


def test_range_sweep():
    space, _ = space_of("search=custom", "hardware.crossbar.rows=range(64,257,64)")
    assert space.params["hardware.crossbar.rows"] == (64, 128, 192, 256)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hardware.weights.bitz=2,4"], "hardware.weights.bitz is not a config path"),
        (["search=custom", "hardware.crossbar=1,2"], "is a config group or section"),
        (["model.name=mlp_mnist,lenet_mnist"], "cannot be searched"),
        (["search=custom"], "search space is empty"),
        (["hardware.weights.bits=two,four"], "hardware.weights.bits: bad value 'two'"),
        (["hardware.weights.bits=0,4"], "hardware.weights.bits must be an integer >= 1"),
        (["strategy.name=split,shrink"], "'shrink' is not a strategy"),
        (["hardware.weights.bits=4,4"], "lists a value twice"),
        # 4 and '04' ran one chip twice, then trials.parquet refused the column of int and str (a traceback)
        (["hardware.weights.bits=4,04"], r"hardware.weights.bits lists a value twice: \[4, 4\]"),
        (["hardware.device.programming_sigma=0,0.0"], r"lists a value twice: \[0.0, 0.0\]"),
    ],
)
def test_bad_search_parameters_fail_with_the_path(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("'", "'")):
        space_of(*overrides)


@pytest.mark.parametrize(
    ("line", "message"),
    [("strategy=split,prune", "config group strategy cannot be swept"),
     ("hardware.weights.bits=interval(2,8)", "continuous interval"),
     ("hardware.weights.bits=glob(*)", r"glob\(\) picks config group options"),  # was 'ConfigLoader is not set'
     # listed whole before: a MemoryError traceback (a range) or minutes of checks
     ("hardware.crossbar.rows=range(2,100000000)", "more than 10,000 values; a search parameter takes at most"),
     ("hardware.crossbar.rows=shuffle(range(2,100000000))", "more than 10,000 values")],
)
def test_unsweepable_command_line(line, message):
    with pytest.raises(ConfigError, match=message):
        split_sweeps([line])


def test_searched_values_are_held_as_the_config_types_them():
    space, _ = space_of("search=custom", "hardware.weights.bits=04,8", "hardware.mapping.mesh=[4,4],[8,8]")
    assert space.params == {"hardware.weights.bits": (4, 8), "hardware.mapping.mesh": ([4, 4], [8, 8])}


def test_split_sweeps_keeps_plain_overrides():
    cmd = split_sweeps(["hardware=chip_a", "hardware.weights.bits=2,4", "tuning.free_steps=10"])
    assert cmd.overrides == ["hardware=chip_a", "tuning.free_steps=10"]
    assert cmd.sweeps == {"hardware.weights.bits": [2, 4]}
    assert cmd.pinned == ["hardware", "tuning.free_steps"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["study.n_trails=3"], "n_trails"), (["runner=cloud"], "runner/cloud"), (["study.n_trials=many"], "n_trials"),
     (["experiment=nope"], "experiment/nope")],
)
def test_schema_rejects_typos_and_wrong_types(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose_config("sweep", overrides)


def test_every_experiment_composes_with_a_valid_space():
    from dse.config import presets
    from dse.explore.runner import figures_from, study_options

    names = presets("experiment")
    assert {"split_vs_prune", "adc_energy_range", "crossbar_size_cost", "spiking_timesteps_energy"} <= set(names)
    for name in names:
        space, cfg = space_of(f"experiment={name}")
        assert space.size >= 2, name
        assert cfg.study.name == name
        # its figures name searched parameters and result columns (a typo would fail only after every trial)
        assert figures_from(cfg, space, study_options(cfg)), name


def test_repeats_search_the_tuning_seed_from_the_configured_one():
    space, _ = space_of("search=custom", "hardware.weights.bits=4,8", "study.repeats=3", "tuning.seed=5")
    assert space.params["tuning.seed"] == (5, 6, 7) and space.size == 6


@pytest.mark.parametrize(("overrides", "message"), [
    (["study.repeats=0"], "study.repeats must be an integer >= 1 (got 0)"),
    (["study.repeats=2", "tuning.seed=0,1"], "study.repeats=2 sets tuning.seed; it cannot also be searched"),
    (["study.repeats=1000000"], "study.repeats=1,000,000 is more than 10,000 tuning seeds"),  # ran for ever
])
def test_bad_repeats(overrides, message):
    with pytest.raises(ConfigError) as err:
        space_of("search=custom", "hardware.weights.bits=4,8", *overrides)
    assert message in str(err.value)


@pytest.mark.parametrize(("held", "message"), [
    ("{tuning.noise_aware: maybe}", "figures[0].held.tuning.noise_aware='maybe' is not one of its searched values"),
    ("{tuning.seed: 1}", "figures[0].held.tuning.seed: not a searched parameter other than x and by"),
    ("{hardware.device.programming_sigma: 0.05}", "not a searched parameter other than x and by (tuning.noise_aware)"),
])
def test_a_figures_held_value_is_one_of_a_searched_parameters_values(held, message):
    from dse.explore.runner import figures_from, study_options

    figure = (f"figures=[{{x: hardware.device.programming_sigma, y: [device.accuracy_delta_pp_mean], "
              f"held: {held}}}]")
    space, cfg = space_of("experiment=device_variation", "hardware.crossbar.cell_bits=4", figure)
    with pytest.raises(ConfigError, match=re.escape(message)):
        figures_from(cfg, space, study_options(cfg))


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_study_seed_numpy_cannot_start_from_is_refused(seed):
    """It was a ValueError from the sampler: a traceback, exit 1."""
    from dse.explore.runner import study_options

    with pytest.raises(ConfigError, match=re.escape(f"study.seed must be in [0, 2**32) (got {seed})")):
        study_options(compose_config("sweep", [f"study.seed={seed}"]))


@pytest.mark.parametrize(("overrides", "message"), [
    # every trial was the same chip: ReLU neurons have no time steps, IF neurons no leak
    (["hardware.neuron.timesteps=4,8"], "search parameter hardware.neuron.timesteps changes nothing: it acts on "
                                        "if, lif, if_floor neurons, and the sweep's chips have relu"),
    (["hardware=chip_b", "hardware.neuron.leak=0.5,0.9"],
     "search parameter hardware.neuron.leak changes nothing: it acts on lif neurons, and the sweep's chips have if"),
    # the network is prepared once, with the base width: every trial had it
    (["strategy.approximator_width=4,8"], "search parameter strategy.approximator_width cannot be searched: the "
                                          "network is prepared once per sweep"),
    # tuning that does not run: spike-aware steps on ReLU neurons, noise-aware steps with no noise, the baseline's
    (["tuning.spike_steps=0,60"], "search parameter tuning.spike_steps changes nothing: it acts on if, lif, if_floor"),
    (["tuning.noise_aware=false,true"], "search parameter tuning.noise_aware changes nothing: hardware.device is "
                                        "ideal"),
    # one value on an ideal device: no drawn chip to be aware of, or to seed
    (["tuning.noise_aware=true", "hardware.weights.bits=2,4"], "tuning.noise_aware changes nothing: hardware.device "
                                                               "is ideal"),
    (["evaluate.seed=4", "hardware.weights.bits=2,4"], "evaluate.seed changes nothing: hardware.device is ideal"),
    # a searched neuron model changes what the seed draws (Poisson trains), not whether the device is ideal
    (["hardware=chip_b", "tuning.noise_aware=true", "hardware.neuron.model=if,lif"],
     "tuning.noise_aware changes nothing: hardware.device is ideal"),
    # chips that drift alike (one exponent for every cell) are all the same chip, and rate-coded inputs are fixed
    (["evaluate.seed=4", "hardware.device.drift_model=pcm", "hardware.device.drift_seconds=100",
      "hardware.weights.bits=2,4"], "evaluate.seed changes nothing: every chip drawn from hardware.device is the same"),
    (["tuning=none", "tuning.lr=0.001,0.01"], "search parameter tuning.lr changes nothing with tuning.mode=none"),
    # a spiking chip's values are counts of 0..T spikes: no DAC or ADC bits (the chip_a space on chip_b)
    (["hardware=chip_b", "search=chip_a"], "search parameter hardware.io.input_bits changes nothing: it acts on relu"),
    # one value, where it changes nothing, is as idle in every trial
    (["hardware=chip_b", "hardware.io.input_bits=4", "hardware.weights.bits=2,4"],
     "hardware.io.input_bits changes nothing: it acts on relu neurons, and the sweep's chips have if"),
    (["hardware.neuron.leak=0.5", "hardware.weights.bits=2,4"], "hardware.neuron.leak changes nothing: it acts on lif"),
    (["tuning=none", "tuning.free_steps=10", "hardware.weights.bits=2,4"],
     "tuning.free_steps changes nothing with tuning.mode=none"),
    (["tuning.bias_correction_images=16,32"],
     "search parameter tuning.bias_correction_images changes nothing without tuning.bias_correction=true"),
    (["study.population_size=8", "hardware.weights.bits=2,4"],
     "study.population_size changes nothing without study.sampler=nsga2"),
])
def test_a_parameter_that_would_change_nothing_is_refused(overrides, message):
    with pytest.raises(ConfigError) as err:
        space_of("search=custom", *overrides)
    assert message in str(err.value)


def test_a_neuron_setting_is_searched_beside_a_model_that_uses_it():
    space, _ = space_of("search=custom", "hardware=chip_b", "hardware.neuron.leak=0.5,0.9",
                        "hardware.neuron.model=if,lif")
    assert space.size == 4
    space, _ = space_of("search=custom", "hardware=chip_b", "hardware.neuron.leak=0.5", "hardware.neuron.model=if,lif")
    assert space.size == 2


def test_a_setting_is_searched_beside_the_setting_it_needs():
    assert space_of("search=custom", "tuning.bias_correction_images=16,32", "tuning.bias_correction=false,true",
                    )[0].size == 4
    assert space_of("search=custom", "tuning.noise_checks=2", "tuning.noise_aware=true",
                    "hardware.device.read_sigma=0,0.02")[0].size == 2


def test_the_population_size_goes_with_nsga2():
    space, _ = space_of("study=pareto", "study.population_size=4", "search=custom", "hardware.weights.bits=2,4")
    assert space.size == 2


def test_a_null_sets_nothing_and_is_not_refused():
    assert space_of("search=custom", "hardware=chip_b", "hardware.io.input_bits=null",
                    "hardware.weights.bits=2,4")[0].size == 2


def test_the_seed_of_drawn_chips_is_set_where_they_differ():
    assert space_of("search=custom", "evaluate.seed=4", "hardware.device.read_sigma=0.02",
                    "hardware.weights.bits=2,4")[0].size == 2
    # where some trial's device is not ideal, the sweep cannot call the seed idle
    assert space_of("search=custom", "evaluate.seed=4", "hardware.device.read_sigma=0,0.02")[0].size == 2


def test_noise_aware_tuning_is_searched_on_a_device_that_is_not_ideal():
    assert space_of("search=custom", "tuning.noise_aware=false,true", "hardware.device.read_sigma=0.02")[0].size == 2
    assert space_of("search=custom", "tuning.noise_aware=false,true", "hardware.device.read_sigma=0,0.02")[0].size == 4


def test_what_the_rounding_baseline_reads_is_searched_with_it():
    assert space_of("search=custom", "tuning=none", "tuning.bias_correction=false,true")[0].size == 2
    # the equalization pass runs before tuning of either mode (docs/quantization.md: lenet_mnist 1.6 -> 0.2 pp)
    assert space_of("search=custom", "tuning=none", "tuning.equalize=false,true")[0].size == 2
    assert space_of("search=custom", "tuning.mode=none,multiphase", "tuning.lr=0.001,0.01")[0].size == 4


def test_a_grid_too_large_to_list_is_refused_and_searched_by_nsga2():
    """Optuna's grid sampler lists every point at once: 999 x 999 x 2 points are refused before any trial;
    study=pareto draws its trials from the same space."""
    sweeps = ("search=custom", "hardware.crossbar.rows=range(2,1001,1)", "hardware.crossbar.cols=range(2,1001,1)",
              "hardware.weights.bits=2,3")
    with pytest.raises(ConfigError, match=r"^the grid has 1,996,002 points, more than 1,000,000"):
        space_of(*sweeps)
    space, _ = space_of(*sweeps, "study=pareto", "hardware.crossbar.cell_bits=8")
    assert space.size == 1_996_002
