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
