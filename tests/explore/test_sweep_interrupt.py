"""A sweep as a user stops it (Ctrl-C halfway) or starves it (a disk that takes no more bytes), as a subprocess."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
# full tuning steps on mlp_digits: a trial takes about a second, long enough to interrupt the sweep between two;
# 12 trials, so that two workers cannot finish them all between the first result and the signal
SWEEP = [sys.executable, "-m", "dse.sweep", "model=mlp_digits", "progress=false", "search=custom",
         "hardware.weights.bits=2,3,4,5,6,8", "hardware.crossbar.rows=32,64"]
TRIALS = 12


def complete(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not there yet
        return 0


def start(cmd: list[str]) -> subprocess.Popen:
    """The sweep, with Ctrl-C's default whatever this process inherited. A shell ignores SIGINT for a command it
    runs in the background (`make test &`), a child inherits an ignored signal, and a Python started with SIGINT
    ignored keeps ignoring it: the sweep ran to its end (stops 26 and 27 saw that in background runs). A handler
    (unlike "ignored") is not inherited: the child starts with the default, and Python's own Ctrl-C handling."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("runner", ["runner=local", "runner=pool",
                                    pytest.param("runner=ray", marks=pytest.mark.slow)])
def test_ctrl_c_halfway_writes_the_finished_trials_tables_and_figures(tmp_path, runner):
    run_dir = tmp_path / "run"
    cmd = [*SWEEP, runner, f"hydra.run.dir={run_dir}"]
    proc = start(cmd)
    deadline = time.monotonic() + 300
    while complete(run_dir / "study.db") < 1:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sweep made no progress"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "run the same command again to resume" in err, err
    done = complete(run_dir / "study.db")
    trials = pd.read_csv(run_dir / "trials.csv")
    assert 1 <= len(trials) == done < TRIALS, "interrupted too late to test anything"
    assert set(trials.state) == {"complete"}
    pareto = pd.read_csv(run_dir / "pareto.csv")
    assert len(pareto) and set(pareto.trial) <= set(trials.trial)
    for name in ["trials.csv", "trials.parquet", "pareto.csv", "pareto.tex", "config.yaml", "samples.json",
                 "pareto_front.png", "pareto_front.pdf", "sensitivity_weights_bits.png"]:
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o644, name  # readable by others


def almost_full() -> None:
    """No file of the child grows past 4 KB, as on a disk about full (a write past it fails with EFBIG, not a
    signal): small probes such as Python's temporary-folder check still pass."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_full_disk_is_one_line_exit_2_before_any_trial(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([*SWEEP, "runner=local", f"hydra.run.dir={run_dir}"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300, preexec_fn=almost_full)
    assert done.returncode == 2, done.stdout + done.stderr
    err = done.stderr.strip()
    assert err == f"error: run folder {run_dir} is not writable (File too large)", err
    assert [p.name for p in run_dir.iterdir()] == []  # nothing written, no trial run
