"""python -m dse.studies: a study's table and figures written by one command from its sweep."""

import shutil
from pathlib import Path

import pytest

from dse.studies import BEGIN, END, STUDIES_DIR, with_table
from dse.studies.__main__ import main


@pytest.mark.parametrize(("name", "message"), [("../etc", "is not a folder name"), ("a b", "is not a folder name"),
                                               ("nope", "no study 'nope' (studies: adc_dac_bits")])
def test_a_bad_study_name_is_one_line_exit_2(name, message, capsys):
    assert main([name]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and message in err, err


def test_the_table_goes_between_the_markers_and_only_there():
    text = f"intro\n{BEGIN}\n| old |\n{END}\nafter\n"
    assert with_table(text, ["| new |"]) == f"intro\n{BEGIN}\n| new |\n{END}\nafter\n"
    assert with_table("intro\n", ["| t |"]) == f"intro\n\n{BEGIN}\n| t |\n{END}\n"


def test_a_table_that_cannot_be_made_leaves_the_study_folder_as_it_was(tmp_path, monkeypatch):
    """The figures and tables were copied over the study's first, then the table failed: new figures beside the
    old table."""
    import dse.studies.tables as tables
    from dse.studies import write_study

    run, folder = tmp_path / "run", tmp_path / "study"
    run.mkdir()
    folder.mkdir()
    (run / "trials.csv").write_text("trial,accuracy_delta_pp\n0,1.0\n")
    (run / "pareto_front.png").write_bytes(b"new figure")
    (run / "pareto_front.pdf").write_bytes(b"new figure")
    (folder / "pareto_front.png").write_bytes(b"old figure")
    (folder / "README.md").write_text(f"![front](pareto_front.png)\n{BEGIN}\n| old |\n{END}\n")

    def fails(trials):
        raise KeyError("energy_pj")

    monkeypatch.setitem(tables.TABLES, "x", fails)
    with pytest.raises(KeyError):
        write_study("x", run, folder)
    assert (folder / "pareto_front.png").read_bytes() == b"old figure"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "pareto_front.png"]
    monkeypatch.setitem(tables.TABLES, "x", lambda trials: ["| new |"])
    write_study("x", run, folder)
    assert (folder / "pareto_front.png").read_bytes() == b"new figure"
    assert "| new |" in (folder / "README.md").read_text()


@pytest.mark.slow
def test_split_vs_prune_regenerates_its_committed_table(tmp_path, monkeypatch):
    """The whole study (8 compiles of lenet_mnist, about 4 CPU minutes): the README's table is what the command
    writes today."""
    import dse.studies

    folder = tmp_path / "split_vs_prune"
    shutil.copytree(STUDIES_DIR / "split_vs_prune", folder)
    monkeypatch.setattr(dse.studies, "STUDIES_DIR", tmp_path)
    assert main(["split_vs_prune", "--run-dir", str(tmp_path / "run")]) == 0

    def table(path: Path) -> str:
        return path.read_text().split(BEGIN, 1)[1].split(END, 1)[0]

    assert table(folder / "README.md") == table(STUDIES_DIR / "split_vs_prune" / "README.md")
    assert (folder / "pareto_front.pdf").exists()


def test_the_weight_bits_table_gives_each_configuration_over_its_seeds():
    """study.repeats: one row per configuration, its seeds' mean ± s.d. and range, not one row per seed."""
    import pandas as pd

    from dse.studies.tables import weight_bits

    trials = pd.DataFrame({
        "trial": range(4), "hardware.weights.bits": [4, 4, 8, 8], "hardware.crossbar.rows": 64,
        "hardware.crossbar.cols": 64, "tuning.seed": [0, 1, 0, 1], "accuracy_delta_pp": [0.1, 0.3, 0.0, 0.0],
        "accuracy_delta_ci95_low": [-0.2, 0.0, -0.3, -0.3], "accuracy_delta_ci95_high": [0.4, 0.6, 0.3, 0.3],
        "logits_rel_error": [0.06, 0.08, 0.02, 0.02], "crossbars": [121, 121, 189, 189],
        "energy_pj": [1.04e6, 1.04e6, 1.74e6, 1.74e6], "legal": True, "state": "complete"})
    rows = [line for line in weight_bits(trials) if line.startswith("| 4 ") or line.startswith("| 8 ")]
    assert len(rows) == 2 and "over 2 seeds" in weight_bits(trials)[0]
    assert rows[0] == "| 4 | 64x64 | 0.20 ± 0.14 | 0.1 to 0.3 | [-0.1, 0.5] | 0.0700 ± 0.0141 | 121 | 1.04 | yes |"
    # 0.0 pp for more energy: on the front, but 4 bits at its interval's low end (-0.1 pp) is as good
    assert rows[1].endswith("| 189 | 1.74 | within noise |")


def test_the_device_variation_table_puts_plain_and_noise_aware_side_by_side():
    """One row per (variation, cell bits), both tunings' drawn chips in it; per variation the most bits per cell
    whose chips' mean loss stays within 1 pp."""
    import pandas as pd

    from dse.studies.tables import device_variation

    trials = pd.DataFrame({
        "hardware.device.programming_sigma": [0.01] * 4 + [0.05] * 2, "hardware.crossbar.cell_bits": [1, 1, 4, 4, 1, 1],
        "tuning.noise_aware": [False, True] * 3, "device.accuracy_delta_pp_mean": [0.3, 0.2, 1.5, 0.9, 4.0, 2.0],
        "device.accuracy_delta_pp_std": [0.1, 0.1, 1.0, 0.5, 3.0, 1.5], "device.accuracy_p5": [0.97] * 6,
        "accuracy_delta_pp": 0.1, "energy_pj": [6e6, 6e6, 5e6, 5e6, 6e6, 6e6]})
    lines = device_variation(trials)
    assert lines[2] == "| 0.01 | 1 | 0.30 ± 0.10 | 0.970 | 0.20 ± 0.10 | 0.970 | 0.1 / 0.1 | 6.00 |"
    assert lines[-2:] == [
        "- variation 0.01: mean loss within 1 pp with plain tuning: 1 bit per cell; noise-aware: 4 bits per cell",
        "- variation 0.05: mean loss within 1 pp with plain tuning: none of the swept cells; noise-aware: none of "
        "the swept cells"]
