"""Trials in worker processes forked from the driver (runner=pool): the sweep on one machine without Ray.

The workers are forked after the network is prepared, so each starts with everything the driver holds: the
imported modules (torch, the compiler), the prepared network and whatever of it the driver has computed. No
instance to start or stop, no object store, nothing pickled but each trial's small spec and outcome. On two
cores this saves the default sweep about 8 of its 95 s: Ray's start (3 s) and shutdown (1 s), its workers'
imports (2 s before the first trial) and its daemons' CPU beside the trials (bench/sweep_scaling.py).

Each worker runs one trial at a time on `torch_threads` threads and its main thread (the trial timer is a
signal). There are at most as many workers as CPUs this process may use (`runner.max_concurrent` above that
is lowered to it: a trial keeps a CPU busy, so more would only share them and multiply the memory held), and
at most as many as the trials' memory bounds fit in this machine (`fit_memory`). A worker that dies (killed,
out of memory) fails only the trial it ran, as an infrastructure failure that runs again on resume; a new
worker takes its place. Ctrl-C is the driver's: the workers ignore it and are stopped by `close`. Linux only:
fork is what makes the workers cheap (`check` refuses elsewhere).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_ready

from dse.compile import Prepared
from dse.compile.memory import share_memory
from dse.errors import ConfigError
from dse.explore.trial import TrialOutcome, TrialSpec, failed_without_result, run_trial_threads

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2)
# seconds the driver blocks in one wait: how soon it answers Ctrl-C
WAIT_SLICE_S = 0.5
Task = Callable[[TrialSpec, int | None, float | None], TrialOutcome]
# the prepared network the next forked workers inherit (set by `share`, read only in the workers)
_PREPARED: Prepared | None = None


def _pool_trial(spec: TrialSpec, threads: int | None, timeout_s: float | None) -> TrialOutcome:
    assert _PREPARED is not None, "share() the prepared network first"
    return run_trial_threads(_PREPARED, spec, threads, timeout_s)  # on the worker's main thread


def _die_with(driver: int) -> None:
    """Be killed when the driver dies (SIGKILL of the sweep) rather than finish a trial for nobody: Linux's
    parent-death signal, then a check that the driver did not die before it was set."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the worker ends at its next read of the closed pipe
        pass
    if os.getppid() != driver:
        os._exit(0)


def _serve(conn: Connection, others: list[Connection], driver: int, task: Task, threads: int | None,
           timeout_s: float | None) -> None:
    """A worker's loop: a spec in, its outcome out, until the driver closes the pipe. `others`: the driver's ends
    of this worker's pipe and of the other workers', inherited by the fork: closed, so that a pipe ends when the
    driver closes its end."""
    _die_with(driver)
    for other in others:
        other.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: it is the driver's
    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        conn.send(task(spec, threads, timeout_s))


class _Worker:
    def __init__(self, task: Task, threads: int | None, timeout_s: float | None, others: list[Connection]) -> None:
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        # forked, so `task` and the prepared network are the driver's own objects: nothing is pickled
        args = (child, [self.conn, *others], os.getpid(), task, threads, timeout_s)
        self.process = ctx.Process(target=_serve, args=args, daemon=True)
        self.process.start()
        child.close()
        self.spec: TrialSpec | None = None  # the trial it runs

    def stop(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join()


def machine_cpus() -> int:
    """The CPUs this process may run on (a container's or taskset's share, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class PoolExecutor:
    task = staticmethod(_pool_trial)  # what a worker runs for one trial

    def __init__(self, *, workers: int | None = None, torch_threads: int | None = 1,
                 trial_timeout_s: float | None = None) -> None:
        cpus = machine_cpus()
        if workers is not None and workers > cpus:
            log.warning("runner=pool: %d workers, not runner.max_concurrent=%d: one per CPU this process may use",
                        cpus, workers)
        self.workers = min(workers or cpus, cpus)
        self.torch_threads, self.trial_timeout_s = torch_threads, trial_timeout_s
        self._idle: list[_Worker] = []
        self._busy: list[_Worker] = []

    @property
    def capacity(self) -> int:
        """Workers: `workers` (runner.max_concurrent) or one per CPU, never more than the CPUs."""
        return self.workers

    def fit_memory(self, max_memory_gb: float | None, fits: Callable[[float], bool]) -> float | None:
        """The memory bound of one trial, the workers lowered to what the machine's memory holds
        (`share_memory`)."""
        self.workers, bound = share_memory("runner=pool", self.workers, max_memory_gb, fits)
        return bound

    @property
    def pending(self) -> int:
        return len(self._busy)

    def check(self) -> None:
        if "fork" not in mp.get_all_start_methods():
            raise ConfigError("runner=pool forks its workers, which this platform cannot: use runner=ray")

    def start(self) -> None:
        pass

    def share(self, prepared: Prepared) -> None:
        global _PREPARED
        self.close()  # workers forked before hold the network they were forked with
        _PREPARED = prepared  # forked workers inherit it; the first are forked by the first submit

    def submit(self, spec: TrialSpec) -> None:
        while True:
            worker = self._idle.pop() if self._idle else self._fork()
            try:
                worker.conn.send(spec)
                break
            except OSError:  # it died while idle (killed): another takes the trial
                worker.stop()
        worker.spec = spec
        self._busy.append(worker)

    def _fork(self) -> _Worker:
        others = [w.conn for w in (*self._idle, *self._busy)]
        return _Worker(self.task, self.torch_threads, self.trial_timeout_s, others)

    def wait(self) -> list[TrialOutcome]:
        ready: list = []
        while not ready:  # in short waits, so that Ctrl-C (KeyboardInterrupt) gets through
            ready = wait_ready([w.conn for w in self._busy], timeout=WAIT_SLICE_S)
        outcomes = []
        for worker in [w for w in self._busy if w.conn in ready]:
            self._busy.remove(worker)
            try:
                outcomes.append(worker.conn.recv())
            except (EOFError, OSError):  # the worker died mid-trial: only its own trial is lost
                worker.process.join()
                message = f"its worker process died (exit code {worker.process.exitcode})"
                outcomes.append(failed_without_result(worker.spec, message))
                worker.stop()
                continue
            self._idle.append(worker)
        return outcomes

    def close(self) -> None:
        for worker in [*self._idle, *self._busy]:
            worker.stop()
        self._idle, self._busy = [], []
