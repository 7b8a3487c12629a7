"""Trials as Ray tasks give the results of the in-process runner (seeded, deterministic compile)."""

from __future__ import annotations

import pandas as pd
from sweep_helpers import FAST

from dse.config import compose_config, split_sweeps
from dse.explore.executors import LocalExecutor
from dse.explore.runner import run_study

GRID = ["search=custom", "hardware.weights.bits=2,4", "strategy.name=split,prune", "hardware.crossbar.rows=32"]
METRIC_COLUMNS = ["accuracy_original", "accuracy_compiled", "accuracy_delta_pp", "agreement", "logits_rel_error",
                  "crossbars", "cells_used", "neurons", "synapses", "legal"]


def sweep(tmp_path, name, executor):
    cmd = split_sweeps([*FAST, *GRID])
    cfg = compose_config("sweep", cmd.overrides)
    return run_study(cfg, tmp_path / name, cli_sweeps=cmd.sweeps, pinned=cmd.pinned, executor=executor)


def by_point(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["hardware.weights.bits", "strategy.name"]).reset_index(drop=True)


def test_ray_executor_matches_local(ray_session, tmp_path):
    from dse.explore.ray_executor import RayExecutor

    ray_result = sweep(tmp_path, "ray", RayExecutor(max_concurrent=2))
    local_result = sweep(tmp_path, "local", LocalExecutor())
    assert len(ray_result.trials) == 4 and set(ray_result.trials.state) == {"complete"}
    pd.testing.assert_frame_equal(by_point(ray_result.trials)[METRIC_COLUMNS],
                                  by_point(local_result.trials)[METRIC_COLUMNS], check_exact=True)  # bit for bit
    import ray

    assert ray.is_initialized()  # the session's instance is left running for the next test


def test_a_trial_whose_worker_dies_runs_again_on_resume_and_completes(ray_session, tmp_path):
    from dse.explore.ray_executor import RayExecutor, _ray_trial

    def dies_on_trial_1(boxed_ref, spec, threads, timeout_s):
        import os

        if spec.number == 1:
            os._exit(1)  # the worker process dies under the trial, as when it is killed or runs out of memory
        return _ray_trial(boxed_ref, spec, threads, timeout_s)

    class DyingWorker(RayExecutor):
        task = staticmethod(dies_on_trial_1)

    first = sweep(tmp_path, "run", DyingWorker(max_concurrent=2))
    assert first.stats.retry == 1
    lost = first.trials.set_index("trial").loc[1]
    assert lost.state == "fail" and lost.error_message.endswith("(runs again on resume)"), lost.error_message
    assert "died" in lost.error_message or "Crashed" in lost.error_message, lost.error_message

    again = sweep(tmp_path, "run", RayExecutor(max_concurrent=2))
    assert again.stats.resumed == 1 and again.stats.ran == 1 and again.stats.kept == 3
    assert len(again.trials) == 4 and set(again.trials.state) == {"complete"}
    local = sweep(tmp_path, "local", LocalExecutor())
    pd.testing.assert_frame_equal(by_point(again.trials)[METRIC_COLUMNS], by_point(local.trials)[METRIC_COLUMNS],
                                  check_exact=True)
