"""`python -m dse.sweep` end to end on a small grid (runner=local), and its answers to bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sweep_helpers import FAST
from test_sweep_pareto import brute_force_front

from dse.errors import EXIT_NOT_LEGAL
from dse.explore.trial import METRICS
from dse.sweep import cli

GRID = ["runner=local", "search=custom", "hardware.weights.bits=2,4", "hardware.crossbar.rows=32,64",
        "strategy.name=split,prune"]
RESOURCES = ["crossbars", "cells_used", "utilization", "neurons", "synapses", "core_ops", "depth"]
STATUS = ["legal", "state", "error_message", "compile_seconds"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sweep") / "run"
    argv = [*FAST, *GRID, f"hydra.run.dir={run_dir}"]
    assert cli(argv) == 0
    return run_dir, argv


def test_trials_table_has_one_row_per_point_and_every_column(sweep):
    run_dir, _ = sweep
    trials = pd.read_csv(run_dir / "trials.csv")
    params = ["hardware.weights.bits", "hardware.crossbar.rows", "strategy.name", "hardware.crossbar.cols"]
    for column in [*params, *METRICS, *RESOURCES, *STATUS]:
        assert column in trials.columns, column
    assert len(trials) == 8
    assert len(trials.drop_duplicates(params[:3])) == 8
    assert (trials["hardware.crossbar.cols"] == trials["hardware.crossbar.rows"]).all()
    assert set(trials.state) == {"complete"} and trials.legal.all()
    np.testing.assert_allclose(trials.accuracy_delta_pp,
                               (trials.accuracy_original - trials.accuracy_compiled) * 100, atol=1e-4)
    parquet = pd.read_parquet(run_dir / "trials.parquet")
    assert list(parquet.columns) == list(trials.columns)
    for frame in (parquet, trials):
        frame["error_message"] = frame.error_message.fillna("")
    pd.testing.assert_frame_equal(parquet, trials, check_dtype=False)


def test_pareto_csv_holds_exactly_the_non_dominated_legal_trials(sweep):
    run_dir, _ = sweep
    trials = pd.read_csv(run_dir / "trials.csv")
    legal = trials[(trials.state == "complete") & trials.legal].reset_index(drop=True)
    expected = {int(legal.trial[i]) for i in brute_force_front(legal[["accuracy_delta_pp", "energy_pj"]].to_numpy())}
    assert set(pd.read_csv(run_dir / "pareto.csv").trial) == expected
    tex = (run_dir / "pareto.tex").read_text()
    assert tex.count(r"\\") - 1 == len(expected) and r"\toprule" in tex


def test_every_output_file_is_there(sweep):
    run_dir, _ = sweep
    names = ["config.yaml", "study.db", "trials.parquet", "trials.csv", "pareto.csv", "pareto.tex"]
    figures = ["pareto_front", "sensitivity_weights_bits", "sensitivity_crossbar_rows"]
    for name in names + [f + s for f in figures for s in (".png", ".pdf")]:
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir / "pareto_front.pdf").read_bytes()[:5] == b"%PDF-"
    config = (run_dir / "config.yaml").read_text()
    assert "hardware.weights.bits:\n    - 2\n    - 4" in config  # the search space the run really used


def test_running_the_same_command_again_resumes_and_runs_nothing(sweep, capsys):
    run_dir, argv = sweep
    before = pd.read_csv(run_dir / "trials.csv")
    assert cli(argv) == 0
    assert "0 run now, 8 kept from before" in " ".join(capsys.readouterr().out.split())
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "trials.csv"), before)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["study.nmae=x"], "unknown config key study.nmae; did you mean study.name?"),  # an unknown key
        (["+search.params.hardware.weights.bits=[1,2]"], "unknown config key search.params (valid keys of search"),
        (["+foo.bar=1"], "unknown config key foo"),
        (["hardware.weights.bits=range(2,9,0)"], "range(2,9,0): the step of range() must not be zero"),
        (["hardware.weights.bits=range(9,2)"], "range(9,2): the sweep has no values"),
        (["-m"], "-m/--multirun is not needed"),
        (["runner=cloud"], "runner/cloud"),  # an unknown group option
        (["hardware.weigths.bits=2,4"], "hardware.weigths.bits is not a config path: no key 'weigths' in hardware; "
                                        "did you mean hardware.weights?"),
        (["search=custom", "~strategy.name"], None),  # (placeholder replaced below)
        (["runner=ray", "runner.address=127.0.0.1:9"], "runner.address=127.0.0.1:9: cannot reach"),
        (["runner.trial_timeout_s=0"], "runner.trial_timeout_s must be a positive number of seconds"),
        (["hardware.crossbar.cell_bits=2"], "another configuration"),  # same folder, another study
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_the_study_alone(sweep, capsys, extra, message):
    run_dir, argv = sweep
    if message is None:  # the empty search space: pin every searched parameter
        extra, message = ["hardware.weights.bits=2", "hardware.crossbar.rows=32", "strategy.name=split"], "empty"
        argv = [a for a in argv if "=" not in a or a.split("=")[0] not in {e.split("=")[0] for e in extra}]
    before = digest(run_dir)
    assert cli([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert message in err, err
    assert digest(run_dir) == before


def test_help_lists_the_groups(capsys):
    assert cli(["--help"]) == 0
    out = capsys.readouterr().out
    assert "study=grid|pareto" in out and "runner=local|pool|ray" in out
    # read from dse/conf/, so every embedded model is listed (the hand-written list had four of eight)
    assert "mobilenet_mnist" in out and "conv1d_mnist" in out and "experiment=adc_dac_bits|adc_energy_range|" in out
    assert "hardware.neuron.model=relu|if|lif|if_floor" in out and "--verbose" in out and "DSE_LOG" in out


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_study_file_is_one_line_exit_2_and_nothing_is_rewritten(sweep, tmp_path, capsys, damage):
    import shutil

    run_dir, argv = sweep
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    db = copy / "study.db"
    data = db.read_bytes()
    db.write_bytes({"truncate": data[: len(data) // 2], "garbage": bytes(range(256)) * 64, "empty": b""}[damage])
    before = digest(copy)
    assert cli([*argv, f"hydra.run.dir={copy}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {db} ") and len(err.splitlines()) == 1, err
    assert digest(copy) == before  # config.yaml, study.json and the study itself as they were


def test_result_files_are_readable_by_others(sweep):
    import stat

    run_dir, _ = sweep
    for name in ["trials.csv", "trials.parquet", "pareto.csv", "pareto.tex", "config.yaml", "samples.json",
                 "study.json", "pareto_front.png", "pareto_front.pdf", "sensitivity_weights_bits.csv"]:
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o644, name  # under umask 022


def test_cfg_job_prints_the_composed_config_and_runs_nothing(capsys, tmp_path):
    assert cli(["--cfg", "job", "hardware=chip_b", f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    out = capsys.readouterr().out
    assert "name: chip_b" in out and "hydra" not in out
    assert not (tmp_path / "run").exists()


def test_cfg_job_shows_the_search_space_the_sweep_would_run(capsys, tmp_path):
    assert cli(["--cfg", "job", "search=custom", "hardware.weights.bits=2,4", "study.repeats=2",
                f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    space = yaml.safe_load(capsys.readouterr().out)["search"]["space"]
    assert space == {"hardware.weights.bits": [2, 4], "tuning.seed": [0, 1]}
    assert not (tmp_path / "run").exists()


def test_repeats_run_every_configuration_per_seed_and_draw_the_spread(tmp_path):
    run_dir = tmp_path / "run"
    assert cli([*FAST, "runner=local", "search=custom", "hardware.weights.bits=2,4", "study.repeats=2",
                f"hydra.run.dir={run_dir}"]) == 0
    trials = pd.read_csv(run_dir / "trials.csv")
    assert sorted(zip(trials["hardware.weights.bits"], trials["tuning.seed"], strict=True)) == [
        (2, 0), (2, 1), (4, 0), (4, 1)]
    curve = pd.read_csv(run_dir / "sensitivity_weights_bits.csv")  # the seed is averaged over, never an axis
    assert list(curve.trials) == [2, 2] and "accuracy_delta_pp_std" in curve
    mean = trials.groupby("hardware.weights.bits").accuracy_delta_pp.mean()
    assert np.allclose(curve.accuracy_delta_pp, mean.to_numpy())
    assert not (run_dir / "sensitivity_seed.png").exists() and (run_dir / "sensitivity_weights_bits.pdf").exists()
    # the front and the summary compare configurations: the seeds' mean, with their spread
    summary = pd.read_csv(run_dir / "configurations.csv").set_index("hardware.weights.bits")
    by_bits = trials.groupby("hardware.weights.bits")
    assert list(summary.repeats) == [2, 2] and "tuning.seed" not in summary
    for stat in ("mean", "std", "min", "max"):
        column = "accuracy_delta_pp" if stat == "mean" else f"accuracy_delta_pp_{stat}"
        assert np.allclose(summary[column], getattr(by_bits.accuracy_delta_pp, stat)().to_numpy()), stat
    front = pd.read_csv(run_dir / "pareto.csv")
    assert "tuning.seed" not in front and set(front["hardware.weights.bits"]) <= {2, 4}
    assert set(front.repeats) == {2} and (run_dir / "pareto_front.png").exists()
    assert "mean over 2 tuning seeds" in (run_dir / "pareto.tex").read_text()


def test_a_sweep_whose_every_trial_fails_still_writes_its_tables(tmp_path):
    run_dir = tmp_path / "run"  # the ideal chip's weights cannot be quantized alone: every trial fails
    assert cli([*FAST, "runner=local", "search=custom", "hardware=ideal", "hardware.weights.bits=2,4",
                f"hydra.run.dir={run_dir}"]) == EXIT_NOT_LEGAL  # no legal trial
    assert (pd.read_csv(run_dir / "trials.csv").state == "fail").all() and (run_dir / "pareto.csv").exists()


def test_a_figure_of_no_legal_trial_says_so(tmp_path, monkeypatch):
    """Its panels were empty axes of matplotlib's default ticks (-0.05..0.05), as if measured, and the Pareto
    figure's legend named "legal trials" it did not show."""
    from dse.explore import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or [])
    plots.plot_pareto(pd.DataFrame(columns=["accuracy_delta_pp", "energy_pj"]), pd.DataFrame(),
                      error="accuracy_delta_pp", resource="energy_pj", by=None, path=tmp_path / "p")
    plots.plot_sensitivity(pd.DataFrame(columns=["hardware.weights.bits", "accuracy_delta_pp", "energy_pj"]),
                           x="hardware.weights.bits", y=["accuracy_delta_pp", "energy_pj"], by=None,
                           path=tmp_path / "s")
    for fig in drawn:
        assert not fig.legends
        for ax in fig.axes:
            assert [t.get_text() for t in ax.texts] == ["no legal trial to plot\n(trials.csv: state, error_message)"]
            assert not len(ax.get_xticks()) and not len(ax.get_yticks())
