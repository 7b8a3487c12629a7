"""Trials as Ray tasks, on a local Ray instance sized to the machine or on a cluster. The only module that
imports Ray.

The prepared network (the imported graph, the teachers' activations: hundreds of MB) goes into the object
store once with `ray.put`; each worker process fetches and unpickles it once and keeps it for the trials it
runs after, so no trial pays for it again. Each worker's one-off imports (torch, the compiler) run as soon as
Ray is up (`_warm_up`), while the driver prepares the network, not on the first
trial's clock.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from dse.compile import Prepared
from dse.compile.memory import share_memory
from dse.errors import ConfigError
from dse.explore.trial import TrialOutcome, TrialSpec, failed_without_result, run_trial_threads

log = logging.getLogger(__name__)

# seconds the driver blocks in one ray.wait: how soon it answers Ctrl-C
WAIT_SLICE_S = 0.5
# per worker process: the prepared network of the sweep it serves, by object id
_PREPARED: dict[str, Prepared] = {}


def _warm_up() -> None:
    """What the first trial of a worker process would otherwise import (seconds of CPU: torch, the compiler)."""
    import dse.explore.trial  # noqa: F401


def _ray_trial(boxed_ref: list[Any], spec: TrialSpec, threads: int | None, timeout_s: float | None) -> TrialOutcome:
    # the reference travels inside a list so that Ray does not resolve (unpickle) it for every task
    import ray

    ref = boxed_ref[0]
    key = ref.hex()
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = ray.get(ref)
    return run_trial_threads(_PREPARED[key], spec, threads, timeout_s)  # a Ray task runs on its main thread


class RayExecutor:
    task = staticmethod(_ray_trial)  # what a worker runs for one trial

    def __init__(self, *, address: str | None = None, num_cpus: int | None = None,
                 max_concurrent: int | None = None, torch_threads: int | None = 1,
                 trial_timeout_s: float | None = None) -> None:
        self.address, self.num_cpus, self.max_concurrent = address, num_cpus, max_concurrent
        self.torch_threads, self.trial_timeout_s = torch_threads, trial_timeout_s
        self._owns = False
        self._ref: Any = None
        self._futures: dict[Any, TrialSpec] = {}
        self._task: Any = None
        self._warm: list[Any] = []
        self._capacity = 1

    @property
    def capacity(self) -> int:
        return self._capacity

    def fit_memory(self, max_memory_gb: float | None, fits: Callable[[float], bool]) -> float | None:
        """A local instance runs its trials side by side on this machine (one per CPU it has): the memory bound
        of one trial, those trials lowered to what the machine's memory holds (`share_memory`). A cluster's
        machines are its own: the bound is each trial's, as set."""
        if self.address is not None:
            return max_memory_gb
        from dse.explore.pool_executor import machine_cpus

        cpus = self.num_cpus or machine_cpus()
        running = min(self.max_concurrent or cpus, cpus)
        n, bound = share_memory("runner=ray", running, max_memory_gb, fits)
        if n < running:
            self.max_concurrent = n
        return bound

    @property
    def pending(self) -> int:
        return len(self._futures)

    def check(self) -> None:
        if self.address not in (None, "auto"):
            check_reachable(self.address)

    def start(self) -> None:
        import ray

        self.check()
        if ray.is_initialized():  # a caller's instance (a test session's): use it, leave it running
            log.info("using the Ray instance already connected")
        else:
            try:
                # "local" always starts a new instance: plain ray.init() would join a `ray start` cluster
                # found on this machine, which is not what runner.address=null promises
                ray.init(
                    address=self.address or "local",
                    num_cpus=self.num_cpus if self.address is None else None,
                    include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                )
            except Exception as exc:  # noqa: BLE001 - Ray raises bare Exception too (a node that timed out starting)
                where = f"runner.address={self.address}" if self.address else "a local Ray instance"
                raise ConfigError(f"{where}: cannot start or join Ray: {str(exc).strip().splitlines()[0]}") from None
            self._owns = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self._capacity = max(1, self.max_concurrent or cpus)
        self._task = ray.remote(num_cpus=1, max_retries=0)(self.task)
        warm_up = ray.remote(num_cpus=1, max_retries=0)(_warm_up)
        self._warm = [warm_up.remote() for _ in range(min(self._capacity, cpus))]  # one per worker, not awaited
        log.info("Ray: %d CPUs, up to %d trials at once", cpus, self._capacity)

    def share(self, prepared: Prepared) -> None:
        import ray

        self._ref = ray.put(prepared)

    def submit(self, spec: TrialSpec) -> None:
        future = self._task.remote([self._ref], spec, self.torch_threads, self.trial_timeout_s)
        self._futures[future] = spec

    def wait(self) -> list[TrialOutcome]:
        import ray

        ready: list[Any] = []
        while not ready:  # in short waits: a blocked ray.wait would not let Ctrl-C (KeyboardInterrupt) through
            ready, _ = ray.wait(list(self._futures), num_returns=1, timeout=WAIT_SLICE_S)
        more, _ = ray.wait([f for f in self._futures if f not in ready], num_returns=len(self._futures) - 1,
                           timeout=0) if len(self._futures) > 1 else ([], [])
        outcomes = []
        for future in [*ready, *more]:
            spec = self._futures.pop(future)
            try:
                outcomes.append(ray.get(future))
            except ray.exceptions.RayError as exc:
                outcomes.append(failed_outcome(spec, exc))
        return outcomes

    def close(self) -> None:
        if self._task is None:  # never started
            return
        import ray

        for future in [*self._futures, *self._warm]:
            ray.cancel(future, force=True)
        self._futures.clear()
        self._warm = []
        self._ref = None
        self._task = None
        if self._owns:
            ray.shutdown()
            self._owns = False


def failed_outcome(spec: TrialSpec, exc: Exception) -> TrialOutcome:
    """The outcome of a task that returned no result. `run_trial` turns every error of the compile into a
    failed outcome, so an exception here came from outside the trial: its worker or raylet died (killed, out of
    memory, a node lost), an object was lost. Such a trial runs again on resume (`TrialOutcome.retry`); only an
    error raised by our task's own code (RayTaskError: a bug) is the trial's own failure."""
    import ray

    first = (str(exc).strip().splitlines() or [""])[0]
    message = f"{type(exc).__name__}: {first}"
    return failed_without_result(spec, message, retry=not isinstance(exc, ray.exceptions.RayTaskError))


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once, in one line, when nothing listens at host:port (ray.init would wait a long time)."""
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"runner.address={address}: expected host:port (or auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        raise ConfigError(f"runner.address={address}: cannot reach a Ray cluster there ({reason})") from None
