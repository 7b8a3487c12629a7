"""The package installs: `pip wheel .`, the wheel into a fresh virtualenv, then `python -m dse.compile` and
`python -m dse.sweep` from an empty folder, with nothing of the source tree in reach.

Offline and fast: the fresh venv reaches the dependencies through a .pth line naming this environment's
site-packages (a path line adds that folder only; its own .pth files, such as an editable install of dse, are
not run), and pip installs the dse wheel alone (--no-deps --no-index). So what this proves is the wheel's
contents: the code, the presets (dse/conf/) and the embedded models.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# what a checkout holds but a build must not see: results, caches, other builds
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "results", "outputs", "multirun", "*.egg-info",
                                    "__pycache__", ".pytest_cache", ".ruff_cache")
FAST_TUNING = ["tuning.free_steps=10", "tuning.range_steps=5", "tuning.round_steps=3", "progress=false"]


def run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel . --no-deps` from a copy of the source tree (the build writes into the tree it builds)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(tmp / "dist")], cwd=tmp)
    (found,) = (tmp / "dist").glob("dse-*.whl")
    return found


def test_the_wheel_holds_every_preset_and_model(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = REPO / "dse" / "conf"
    presets = {p.relative_to(REPO).as_posix() for p in conf.rglob("*.yaml")}
    assert len(presets) > 30 and presets <= names, sorted(presets - names)
    models = {p.relative_to(REPO).as_posix() for p in (REPO / "dse" / "data" / "models").glob("*.onnx")}
    assert models and models <= names, sorted(models - names)


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the dse wheel; the dependencies are this environment's."""
    home = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(home)], cwd=home.parent)
    python = home / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=home).stdout.strip())
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "dependencies.pth").write_text("".join(f"{d}\n" for d in deps))
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
        cwd=home)
    return python


@pytest.mark.slow
def test_both_commands_run_from_an_empty_folder(venv: Path, tmp_path: Path) -> None:
    """About 1 to 3 minutes on 2 shared cores: a compile and a sweep of two trials of mlp_digits."""
    empty = tmp_path / "empty"
    empty.mkdir()
    where = run([str(venv), "-c", "import dse; print(dse.__file__)"], cwd=empty).stdout.strip()
    assert Path(where).is_relative_to(venv.parents[1]), where  # the wheel's copy, not the source tree

    run([str(venv), "-m", "dse.compile", "model=mlp_digits", *FAST_TUNING], cwd=empty)
    (report,) = (empty / "results" / "compile").glob("mlp_digits_chip_a_split/*/report.json")
    assert {p.name for p in report.parent.iterdir()} >= {"report.json", "layers.csv", "compiled.npz",
                                                          "config.yaml", "samples.json"}

    run([str(venv), "-m", "dse.sweep", "model=mlp_digits", *FAST_TUNING, "runner=local", "search=custom",
         "hardware.weights.bits=2,4"], cwd=empty)
    (trials,) = (empty / "results").glob("mlp_digits-chip_a-split-grid/*/trials.csv")
    rows = list(csv.DictReader(trials.open()))
    assert sorted(r["hardware.weights.bits"] for r in rows) == ["2", "4"]
    assert {r["state"] for r in rows} == {"complete"}
    assert (trials.parent / "pareto.csv").exists() and (trials.parent / "pareto_front.png").exists()
