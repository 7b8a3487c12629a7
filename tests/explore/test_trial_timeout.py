"""`runner.trial_timeout_s`: a trial past it is stopped, recorded as failed with reason "timeout" and, as an
infrastructure failure, run again when the sweep is resumed; on every runner, with real compiles."""

from __future__ import annotations

import pytest
from sweep_helpers import FAST

from dse.config import compose_config, split_sweeps
from dse.errors import ConfigError
from dse.explore.executors import LocalExecutor
from dse.explore.runner import executor_from, run_study

GRID = ["search=custom", "hardware.weights.bits=2,4", "strategy.name=split", "hardware.crossbar.rows=32"]
TOO_SHORT_S = 1e-3  # no compile ends this soon: every trial is stopped
ENOUGH_S = 600.0


def sweep(tmp_path, executor):
    cmd = split_sweeps([*FAST, *GRID])
    cfg = compose_config("sweep", cmd.overrides)
    return run_study(cfg, tmp_path / "run", cli_sweeps=cmd.sweeps, pinned=cmd.pinned, executor=executor)


def check_timed_out_then_resumed(first, again) -> None:
    assert first.stats.ran == 2 and first.stats.retry == 2 and first.stats.failed == 2
    assert list(first.trials.state) == ["fail", "fail"]
    for message in first.trials.error_message:
        assert message.startswith("timeout: the trial ran past runner.trial_timeout_s=0.001 s"), message
        assert message.endswith("(runs again on resume)"), message
    assert not first.trials.legal.any()
    # resumed under a limit it meets: both run again, under their own numbers, and complete
    assert again.stats.resumed == 2 and again.stats.ran == 2 and again.stats.retry == 0 and again.stats.kept == 0
    assert list(again.trials.trial) == list(first.trials.trial)
    assert list(again.trials.state) == ["complete", "complete"]
    assert again.trials.legal.all() and (again.trials.error_message == "").all()


def test_a_trial_past_the_timeout_is_stopped_and_runs_again_on_resume_local(tmp_path):
    first = sweep(tmp_path, LocalExecutor(trial_timeout_s=TOO_SHORT_S))
    again = sweep(tmp_path, LocalExecutor(trial_timeout_s=ENOUGH_S))
    check_timed_out_then_resumed(first, again)


def test_a_trial_past_the_timeout_is_stopped_and_runs_again_on_resume_ray(ray_session, tmp_path):
    from dse.explore.ray_executor import RayExecutor

    first = sweep(tmp_path, RayExecutor(max_concurrent=2, trial_timeout_s=TOO_SHORT_S))
    again = sweep(tmp_path, RayExecutor(max_concurrent=2, trial_timeout_s=ENOUGH_S))
    check_timed_out_then_resumed(first, again)


def test_a_trial_past_the_timeout_is_stopped_and_runs_again_on_resume_pool(tmp_path):
    from dse.explore.pool_executor import PoolExecutor

    first = sweep(tmp_path, PoolExecutor(workers=2, trial_timeout_s=TOO_SHORT_S))
    again = sweep(tmp_path, PoolExecutor(workers=2, trial_timeout_s=ENOUGH_S))
    check_timed_out_then_resumed(first, again)


# 1e300 passed, then every trial's timer failed (OverflowError: a traceback on runner=local, a dead worker on pool)
@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), 1e300, 1e10])
def test_a_timeout_that_is_not_a_positive_number_is_refused(value):
    cfg = compose_config("sweep", ["runner=local", f"runner.trial_timeout_s={value}"])
    with pytest.raises(ConfigError, match=r"^runner.trial_timeout_s must be a positive number of seconds"):
        executor_from(cfg.runner)
