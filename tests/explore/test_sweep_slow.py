"""Long checks (pytest -m slow): a sweep killed with SIGKILL resumes without losing a trial, and a sweep on a
two-node Ray cluster started with `ray start` gives the in-process runner's results."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from sweep_helpers import FAST

from bench.sweep_scaling import local_cluster

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
GRID = ["search=custom", "hardware.weights.bits=2,3,4,5,6,8", "hardware.crossbar.rows=32,64"]  # 12 trials
METRICS = ["accuracy_original", "accuracy_compiled", "accuracy_delta_pp", "agreement", "logits_rel_error",
           "crossbars", "cells_used", "neurons", "synapses", "legal"]


def sweep_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "dse.sweep", *overrides]


def finished(db: Path) -> dict[int, tuple[str, str]]:
    """Trial number -> (state, completion time) of the finished trials in a study database."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=5) as con:
            rows = con.execute("SELECT number, state, datetime_complete FROM trials "
                               "WHERE state IN ('COMPLETE', 'FAIL')").fetchall()
    except sqlite3.OperationalError:  # the tables are not there yet
        return {}
    return {n: (s, t) for n, s, t in rows}


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc/*/stat: its fourth field is the parent's pid)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended


@pytest.mark.parametrize("runner", [["runner=pool"], ["runner=ray", "runner.num_cpus=2"]])
def test_sigkill_halfway_then_the_same_command_finishes_the_set(tmp_path, runner):
    run_dir = tmp_path / "run"
    # full tuning steps: trials long enough (a second or more) to kill the sweep between them
    cmd = sweep_command("model=mlp_digits", "progress=false", *GRID, *runner, f"hydra.run.dir={run_dir}")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while len(finished(run_dir / "study.db")) < 4:
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "the sweep made no progress"
        time.sleep(0.2)
    pool = runner == ["runner=pool"]
    workers = children_of(proc.pid) if pool else []
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert workers or not pool, "the pool's workers were not found"
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers):  # the pool's workers die with their driver: no orphan goes on
        assert time.monotonic() < deadline, f"workers {workers} outlived the killed sweep"
        time.sleep(0.1)
    before = finished(run_dir / "study.db")
    assert 4 <= len(before) < 12, "killed too late to test anything"

    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    after = finished(run_dir / "study.db")
    assert len(after) == 12
    for number, state_time in before.items():  # kept as they were, not run again
        assert after[number] == state_time
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 12 and trials.trial.is_unique
    assert len(trials.drop_duplicates(["hardware.weights.bits", "hardware.crossbar.rows"])) == 12
    with sqlite3.connect(run_dir / "study.db") as con:
        assert con.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 12  # each point once
    assert f"{12 - len(before)} run now, {len(before)} kept from before" in " ".join(done.stdout.split())


def test_two_node_ray_cluster_gives_the_local_results(tmp_path):
    common = [*FAST, *GRID[:2], "hardware.crossbar.rows=32", "strategy.name=split,prune"]  # 12 trials
    with local_cluster() as address:  # a head and a worker node, 1 CPU each
        on_cluster = subprocess.run(sweep_command(*common, "runner=ray", f"runner.address={address}",
                                                  f"hydra.run.dir={tmp_path / 'cluster'}"),
                                    cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert on_cluster.returncode == 0, on_cluster.stdout + on_cluster.stderr
    local = subprocess.run(sweep_command(*common, "runner=local", f"hydra.run.dir={tmp_path / 'local'}"),
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stdout + local.stderr
    keys = ["hardware.weights.bits", "strategy.name"]
    a = pd.read_csv(tmp_path / "cluster" / "trials.csv").sort_values(keys).reset_index(drop=True)
    b = pd.read_csv(tmp_path / "local" / "trials.csv").sort_values(keys).reset_index(drop=True)
    assert len(a) == 12
    pd.testing.assert_frame_equal(a[keys + METRICS], b[keys + METRICS])
