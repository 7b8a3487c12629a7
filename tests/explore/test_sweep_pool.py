"""runner=pool: trials in forked worker processes give the in-process runner's results bit for bit; a worker
that dies loses only its own trial, which runs again on resume; settings a runner does not read are refused."""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest
from sweep_helpers import FAST
from test_sweep_ray import METRIC_COLUMNS, by_point, sweep

from dse.config import compose_config
from dse.errors import ConfigError
from dse.explore.executors import LocalExecutor
from dse.explore.pool_executor import PoolExecutor, _pool_trial
from dse.explore.runner import executor_from
from dse.explore.trial import TrialOutcome, TrialSpec


def test_pool_matches_local_bit_for_bit(tmp_path):
    pool = sweep(tmp_path, "pool", PoolExecutor(workers=2))
    local = sweep(tmp_path, "local", LocalExecutor())
    assert len(pool.trials) == 4 and set(pool.trials.state) == {"complete"}
    pd.testing.assert_frame_equal(by_point(pool.trials)[METRIC_COLUMNS], by_point(local.trials)[METRIC_COLUMNS],
                                  check_exact=True)
    assert pool.timings["start"] < 0.5 and pool.timings["close"] < 0.5  # nothing to start or stop


def test_a_trial_whose_worker_dies_runs_again_on_resume_and_the_others_complete(tmp_path):
    parent = os.getpid()

    def dies_on_trial_1(spec, threads, timeout_s):
        assert os.getpid() != parent  # a forked worker, not the driver
        if spec.number == 1:
            os._exit(1)  # the worker dies under the trial, as when it is killed or runs out of memory
        return _pool_trial(spec, threads, timeout_s)

    class DyingWorker(PoolExecutor):
        task = staticmethod(dies_on_trial_1)

    first = sweep(tmp_path, "run", DyingWorker(workers=2))
    assert first.stats.retry == 1 and first.stats.ran == 4  # a new worker took over: the other three ran
    states = first.trials.set_index("trial").state
    assert states[1] == "fail" and (states.drop(1) == "complete").all()
    lost = first.trials.set_index("trial").loc[1]
    assert lost.error_message == "its worker process died (exit code 1) (runs again on resume)", lost.error_message

    again = sweep(tmp_path, "run", PoolExecutor(workers=2))
    assert again.stats.resumed == 1 and again.stats.ran == 1 and again.stats.kept == 3
    local = sweep(tmp_path, "local", LocalExecutor())
    pd.testing.assert_frame_equal(by_point(again.trials)[METRIC_COLUMNS], by_point(local.trials)[METRIC_COLUMNS],
                                  check_exact=True)


def test_the_sweep_runs_on_the_pool_by_default_one_worker_per_cpu():
    executor = executor_from(compose_config("sweep", FAST).runner)
    assert isinstance(executor, PoolExecutor)
    assert executor.capacity == len(os.sched_getaffinity(0))
    assert executor_from(compose_config("sweep", ["runner.max_concurrent=1"]).runner).capacity == 1


def test_the_pool_forks_no_more_workers_than_cpus():
    """runner.max_concurrent=1000 forked a worker per ready trial, each under half the machine's memory."""
    executor = executor_from(compose_config("sweep", ["runner.max_concurrent=1000"]).runner)
    assert executor.capacity == len(os.sched_getaffinity(0))


def test_the_pool_shares_the_default_memory_bound_and_fits_its_workers_in_memory(monkeypatch):
    import dse.compile.memory as memory
    import dse.explore.pool_executor as pool

    monkeypatch.setattr(pool, "machine_cpus", lambda: 8)
    monkeypatch.setattr(memory, "machine_memory_bytes", lambda: 16 * 2**30)
    executor = PoolExecutor()
    assert executor.fit_memory(None, lambda gb: True) == 1.0 and executor.capacity == 8  # half of 16 GB, by 8
    executor = PoolExecutor()
    assert executor.fit_memory(None, lambda gb: gb >= 2) == 2.0 and executor.capacity == 4  # 2 GB a trial: 4
    executor = PoolExecutor()
    assert executor.fit_memory(None, lambda gb: False) is None and executor.capacity == 1  # one: the default
    executor = PoolExecutor(workers=1000)
    assert executor.capacity == 8
    assert executor.fit_memory(6.0, lambda gb: True) == 6.0 and executor.capacity == 2  # 2 x 6 GB in 16
    executor = PoolExecutor()
    assert executor.fit_memory(100.0, lambda gb: True) == 100.0 and executor.capacity == 1
    from dse.explore.ray_executor import RayExecutor  # a local Ray instance runs its trials on this machine too

    local = RayExecutor(num_cpus=4)
    assert local.fit_memory(None, lambda gb: gb >= 4) == 4.0 and local.max_concurrent == 2
    cluster = RayExecutor(address="head:6379")  # its machines are its own
    assert cluster.fit_memory(None, lambda gb: False) is None and cluster.max_concurrent is None


@pytest.mark.parametrize("overrides, message", [
    (["runner.address=localhost:6379"], "runner.address needs runner=ray (this is runner=pool)"),
    (["runner.num_cpus=2"], "runner.num_cpus needs runner=ray (this is runner=pool)"),
    (["runner=local", "runner.max_concurrent=2"], "runner.max_concurrent needs runner=ray or runner=pool "
                                                  "(this is runner=local)"),
    (["runner.max_concurrent=0"], "runner.max_concurrent must be an integer >= 1 (got 0)"),
    (["runner=ray", "runner.num_cpus=0"], "runner.num_cpus must be an integer >= 1 (got 0)"),
    (["runner.torch_threads=0"], "runner.torch_threads must be an integer >= 1 (got 0)"),
])
def test_a_runner_setting_the_runner_does_not_read_is_refused(overrides, message):
    with pytest.raises(ConfigError) as err:
        executor_from(compose_config("sweep", overrides).runner)
    assert str(err.value) == message


def _echo(spec, threads, timeout_s):
    return TrialOutcome(spec.number, "complete", {"pid": os.getpid()})


class Echo(PoolExecutor):
    task = staticmethod(_echo)  # no compile: which worker ran what


def spec(number: int) -> TrialSpec:
    return TrialSpec(number, {}, None, "split", None)  # what the echo task reads: its number


def run_all(executor: PoolExecutor, numbers) -> dict[int, int]:
    for n in numbers:
        executor.submit(spec(n))
    out = {}
    while executor.pending:
        out.update({o.number: o.record["pid"] for o in executor.wait()})
    return out


def test_a_worker_killed_while_idle_is_replaced_at_the_next_trial():
    executor = Echo(workers=1)
    executor.share(object())
    try:
        (first,) = run_all(executor, [0]).values()
        os.kill(first, signal.SIGKILL)
        os.waitpid(first, 0)
        (second,) = run_all(executor, [1]).values()
        assert second != first
    finally:
        executor.close()


def test_a_worker_ends_when_the_driver_closes_its_pipe():
    executor = Echo(workers=2)
    executor.share(object())
    try:
        assert len(set(run_all(executor, [0, 1]).values())) == 2
        for worker in executor._idle:  # neither its own inherited copy of the driver's end nor a later worker's
            worker.conn.close()        # may keep its pipe open
        for worker in executor._idle:
            worker.process.join(timeout=10)
            assert worker.process.exitcode == 0
    finally:
        executor.close()
