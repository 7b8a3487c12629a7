"""The sweep in physical units: objectives among every numeric result column (cost and spiking activity
included), error and energy by default, figures in physical units with the Pareto points named."""

from __future__ import annotations

import pandas as pd
import pytest
from sweep_helpers import FAST, FAST_SPIKING

from dse.config import compose_config
from dse.explore.labels import configuration, label, merge_names, naming_key, scaled
from dse.explore.runner import known_columns, study_options
from dse.sweep import cli


@pytest.mark.parametrize(("chip", "study", "resource"), [("chip_a", "grid", "energy_pj"),
                                                         ("chip_b", "pareto", "energy_pj"),
                                                         ("ideal", "grid", "crossbars")])
def test_the_default_objectives_are_the_error_and_the_energy(chip: str, study: str, resource: str) -> None:
    cfg = compose_config("sweep", [f"hardware={chip}", f"study={study}"])
    assert study_options(cfg).objectives == ("accuracy_delta_pp", resource)


def test_the_spiking_and_cost_columns_are_known_before_any_trial() -> None:
    known = known_columns(compose_config("sweep", ["hardware=chip_b"]))
    assert {"spiking.spikes_per_inference", "spiking.synaptic_events_per_inference", "energy_pj",
            "energy_static_pj", "area_mm2", "latency_ns", "noc_hops_partitioned"} <= set(known)
    assert "tops_per_w" not in known and "energy_adc_pj" not in known  # a PIM chip's
    assert "energy_adc_pj" in known_columns(compose_config("sweep", ["hardware=chip_a"]))


def test_an_objective_that_is_not_a_numeric_column_lists_them(tmp_path, capsys) -> None:
    code = cli([*FAST_SPIKING, "hardware=chip_b", "runner=local", "study.objectives=[accuracy_delta_pp,energy]",
                f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "study.objectives: 'energy' is not a numeric result column" in err
    assert "energy_pj" in err and "spiking.spikes_per_inference" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["", " ", ".", "..", "a/b", "/tmp/x"])
def test_a_study_name_that_is_not_a_folder_name_is_refused(tmp_path, monkeypatch, capsys, name: str) -> None:
    """study.name=.. wrote the run folder into the working folder (results/../<time>), '' among the studies'
    folders of results/, 'a/b' and '/tmp/x' below results/a/ and results/tmp/; each exit 0."""
    monkeypatch.chdir(tmp_path)
    code = cli([*FAST, "runner=local", "search=custom", "hardware.weights.bits=2,4", f"study.name='{name}'"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: study.name={name!r} is not a folder name") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_an_objective_named_twice_is_refused(tmp_path, capsys) -> None:
    """It ran: NSGA-II minimized the one column twice, and the Pareto figure plotted it against itself."""
    code = cli([*FAST, "runner=local", "search=custom", "hardware.weights.bits=2,4", "study=pareto",
                "study.objectives=[accuracy_delta_pp,accuracy_delta_pp]", f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "error: study.objectives names accuracy_delta_pp twice: list each result column once\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["hardware.cost.read_ns=-1"], "hardware.cost.read_ns must be a positive number (got -1.0)"),
    (["hardware.cost.spike_pj=1.7"], "hardware.cost.spike_pj is a cost of spiking chips; chip chip_a is a pim chip"),
])
def test_a_bad_cost_coefficient_is_refused_before_any_trial(tmp_path, capsys, extra, message) -> None:
    code = cli([*FAST, "runner=local", "search=custom", "hardware.weights.bits=2,4", *extra,
                f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"error: {message}"), err
    assert not (tmp_path / "run").exists()


def test_a_spiking_column_can_be_an_objective(tmp_path) -> None:
    run_dir = tmp_path / "run"
    objectives = "study.objectives=[accuracy_delta_pp,spiking.spikes_per_inference]"
    assert cli([*FAST_SPIKING, "hardware=chip_b", "runner=local", "search=custom", "hardware.neuron.timesteps=4,8",
                objectives, f"hydra.run.dir={run_dir}"]) == 0
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 2 and trials.legal.all()
    assert (trials["spiking.spikes_per_inference"] > 0).all() and (trials["energy_pj"] > 0).all()
    front = pd.read_csv(run_dir / "pareto.csv")
    assert set(front.trial) <= set(trials.trial) and len(front) >= 1
    sensitivity = pd.read_csv(run_dir / "sensitivity_neuron_timesteps.csv")
    assert "energy_pj" in sensitivity.columns  # the cost panel beside the error's
    assert (run_dir / "pareto_front.png").stat().st_size > 0


def test_physical_columns_read_in_their_best_unit_and_points_by_their_configuration() -> None:
    assert scaled("energy_pj", [2.79e6, 1.2e6]) == (1e6, "energy per inference (µJ)")
    assert scaled("energy_adc_pj", [675.0]) == (1.0, "ADC energy per inference (pJ)")
    assert label("energy_shift_add_pj") == "shift-and-add energy per inference (pJ)"
    assert label("area_router_mm2") == "router area (mm²)"
    assert scaled("latency_ns", [9.3e5]) == (1e3, "latency per inference (µs)")
    assert scaled("crossbars", [4096]) == (1.0, "crossbars (count)")
    point = {"hardware.weights.bits": 8, "hardware.io.input_bits": 6.0, "hardware.crossbar.rows": 256}
    tied = {"hardware.crossbar.cols": "hardware.crossbar.rows"}
    assert configuration(point, list(point), tied) == "W8 IO6 256x256"
    assert naming_key(list(point), tied) == "W: weight bits, IO: input bits, crossbar rows x columns"
    assert configuration(point, list(point)) == "W8 IO6 256r"
    assert naming_key(list(point), tied, width=30) == "W: weight bits, IO: input bits,\ncrossbar rows x columns"
    assert merge_names(["if T8 W4 128x128", "if T8 W4 256x256", "if T8 W4 128x128"]) == "if T8 W4 128x128/256x256"
    assert merge_names(["W4 split", "W4 64r split"]) == "W4 split\nW4 64r split"


@pytest.mark.parametrize(("overrides", "panels"), [
    (["hardware=chip_a"], ("accuracy_delta_pp", "logits_rel_error", "energy_pj")),
    (["experiment=split_vs_prune"], ("accuracy_delta_pp", "crossbars", "energy_pj")),
    (["hardware=chip_a", "search=custom", "hardware.weights.bits=2,4", "figures=[{x: hardware.weights.bits, "
      "y: [accuracy_delta_pp, energy_adc_pj]}]"], ("accuracy_delta_pp", "energy_adc_pj")),
    (["hardware=ideal"], ("accuracy_delta_pp", "logits_rel_error")),
])
def test_every_sensitivity_figure_has_an_energy_panel_where_the_chip_has_a_cost_model(overrides, panels) -> None:
    from dse.config import split_sweeps
    from dse.explore.runner import figures_from
    from dse.explore.space import build_space

    line = split_sweeps(overrides)
    cfg = compose_config("sweep", line.overrides)
    figures = figures_from(cfg, build_space(cfg, line.sweeps, line.pinned), study_options(cfg))
    assert figures and all(f.y == panels for f in figures)
