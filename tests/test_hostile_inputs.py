"""Issue 17's acceptance: each bad model it names, through `python -m dse.compile model.onnx=BAD.onnx`, ends in
one line on stderr and its documented exit status (2 bad input, 4 outputs not finite), no traceback, nothing
written, within 60 s. The default run calls the command's entry point in-process (`run_app`, what ``python -m``
runs); the slow run starts the command itself for every case."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hostile_models import CASES

from dse.cli import run_app
from dse.compile.__main__ import main

LIMIT_S = 60


def check(name: str, status: int, stderr: str, seconds: float, run_dir: Path) -> None:
    _, _, expected, words = CASES[name]
    assert status == expected, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("error: ") and all(w in stderr for w in words), stderr
    assert not run_dir.exists()
    assert seconds < LIMIT_S


@pytest.mark.parametrize("name", list(CASES))
def test_bad_model_in_process(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Also no RuntimeWarning (numpy's overflow warnings, which the command prints on stderr beside its line)."""
    build, overrides, _, _ = CASES[name]
    model, run_dir = build(tmp_path), tmp_path / "run"
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        status = run_app("compile", main, [f"model.onnx={model}", *overrides, "progress=false",
                                           f"hydra.run.dir={run_dir}"])
    check(name, status, capsys.readouterr().err, time.perf_counter() - start, run_dir)
    assert not [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_model_through_the_command(name: str, tmp_path: Path) -> None:
    build, overrides, _, _ = CASES[name]
    model, run_dir = build(tmp_path), tmp_path / "run"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dse.compile", f"model.onnx={model}", *overrides,
                           f"hydra.run.dir={run_dir}"], capture_output=True, text=True, timeout=LIMIT_S,
                          cwd=tmp_path, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    check(name, proc.returncode, proc.stderr, time.perf_counter() - start, run_dir)


# a file that is not what a command reads, as a user gives it (the wrong file of a run folder)
NOT_AN_NPZ = {
    "report.json": (b'{"model": "lenet_mnist"}\n', "not an .npz archive (it begins with JSON text)"),
    "empty.npz": (b"", "the file is empty"),
    "model.onnx": (b"\x08\x07", "not an .npz archive (it begins with other bytes)"),
}


@pytest.mark.parametrize("name", list(NOT_AN_NPZ))
def test_fault_map_of_a_file_that_is_not_a_compiled_network(name: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """numpy called each one "pickled (object) data", and an empty file was an EOFError traceback."""
    from dse.sim.fault_map import main as fault_map

    content, words = NOT_AN_NPZ[name]
    (tmp_path / name).write_bytes(content)
    assert fault_map([str(tmp_path / name), str(tmp_path / "faults.npz")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / name}: not a dse graph file (a compile's compiled.npz): {words}\n", err
    assert not (tmp_path / "faults.npz").exists()


def test_a_fault_map_or_dataset_that_is_not_an_npz_says_so(tmp_path: Path) -> None:
    from dse.data.user_data import load
    from dse.errors import ConfigError, DataError
    from dse.sim.device_noise import load_fault_map

    report = tmp_path / "report.json"
    report.write_bytes(NOT_AN_NPZ["report.json"][0])
    with pytest.raises(ConfigError, match=r"fault_map: cannot read .*report.json \(not an .npz archive \(it begins"):
        load_fault_map(str(report))
    data = tmp_path / "data.npz"
    data.write_bytes(b"")
    with pytest.raises(DataError, match=r"data.npz is not a readable .npz file: the file is empty"):
        load(str(data), None)


def test_a_fault_map_that_cannot_be_read_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The compile read it after the tuning; a sweep failed every trial with it (a failure of the trial's own,
    which stays failed on resume) and exited 3."""
    import dse.compile
    from dse.sweep import cli as sweep

    missing = tmp_path / "faults.npz"
    line = f"error: hardware.device.fault_map: cannot read {missing} ([Errno 2] No such file or directory: "
    monkeypatch.setattr(dse.compile, "prepare", lambda *a, **k: pytest.fail("prepared before reading the map"))
    status = run_app("compile", main, ["model=mlp_digits", f"hardware.device.fault_map={missing}", "progress=false",
                                       f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith(line) and len(err.splitlines()) == 1, err
    assert sweep(["model=mlp_digits", "tuning=none", "search=custom", "hardware.weights.bits=4,8", "progress=false",
                  f"hardware.device.fault_map={missing}", f"hydra.run.dir={tmp_path / 'sweep'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(line) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()
    compiled = tmp_path / "compiled.npz"  # a run's compiled network named as the map: every trial failed with it
    np.savez(compiled, __graph__=np.frombuffer(b'{"format": "dse-graph/2"}', np.uint8))
    assert sweep(["model=mlp_digits", "tuning=none", "search=custom", "hardware.weights.bits=4,8", "progress=false",
                  f"hardware.device.fault_map={compiled}", f"hydra.run.dir={tmp_path / 'sweep'}"]) == 2
    assert capsys.readouterr().err == (f"error: hardware.device.fault_map: {compiled} is not a fault map: it holds a "
                                       f"compiled network ('__graph__'), {NOT_CELLS}\n")
    assert not (tmp_path / "sweep").exists()


NOT_CELLS = ("not each crossbar's cells (one array per core-op, (slices, columns, *weight shape), as python -m "
             "dse.sim.fault_map writes)")


@pytest.mark.parametrize("arrays", ["dataset", "none"])
def test_an_npz_that_is_not_a_fault_map_is_refused_before_any_work(arrays: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A dataset's .npz named as the map (binary images: every value 0 or 1, so its cells' states passed) was
    refused only after the whole compile, as "crossbar 'x' is not a core-op"; a sweep failed every trial with it.
    An .npz of no arrays likewise, as a crossbar missing."""
    import dse.compile
    from dse.sweep import cli as sweep

    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, **({"x": (rng.random((20, 64)) > 0.5).astype(np.float32), "y": np.zeros(20, np.int64)}
                      if arrays == "dataset" else {}))
    held = "a dataset's arrays ('x', 'y')" if arrays == "dataset" else "no arrays"
    line = f"error: hardware.device.fault_map: {path} is not a fault map: it holds {held}, {NOT_CELLS}\n"
    monkeypatch.setattr(dse.compile, "prepare", lambda *a, **k: pytest.fail("prepared before reading the map"))
    assert run_app("compile", main, ["model=mlp_digits", "hardware=chip_a", f"hardware.device.fault_map={path}",
                                     "progress=false", f"hydra.run.dir={tmp_path / 'run'}"]) == 2
    assert capsys.readouterr().err == line
    assert sweep(["model=mlp_digits", "tuning=none", "search=custom", "hardware.weights.bits=4,8", "progress=false",
                  f"hardware.device.fault_map={path}", f"hydra.run.dir={tmp_path / 'sweep'}"]) == 2
    assert capsys.readouterr().err == line
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()
