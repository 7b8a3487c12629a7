"""Where trials run. The study driver keeps up to `capacity` trials in flight and collects them as they end.

`LocalExecutor` runs them one after the other in this process; `PoolExecutor` (dse.explore.pool_executor, the
default) in worker processes forked from this one; `RayExecutor` (dse.explore.ray_executor, the only module
that imports Ray) as Ray tasks.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from dse.compile import Prepared
from dse.errors import ConfigError
from dse.explore.trial import TrialOutcome, TrialSpec, run_trial_threads
from dse.timelimit import on_main_thread


class Executor(Protocol):
    @property
    def capacity(self) -> int:
        """Trials worth keeping in flight."""
        ...

    def check(self) -> None:
        """Cheap checks of the settings (is a cluster address answering?); ConfigError if not."""

    def start(self) -> None:
        """Connect or start (only when there are trials to run)."""

    def share(self, prepared: Prepared) -> None:
        """Make the prepared network available to every trial, once."""

    def submit(self, spec: TrialSpec) -> None: ...

    def wait(self) -> list[TrialOutcome]:
        """Block until at least one submitted trial ends; return those that ended."""
        ...

    @property
    def pending(self) -> int: ...

    def close(self) -> None: ...


class LocalExecutor:
    """In-process, one trial at a time: no parallelism, nothing to start, exact tracebacks."""

    def __init__(self, torch_threads: int | None = 1, trial_timeout_s: float | None = None) -> None:
        self.torch_threads, self.trial_timeout_s = torch_threads, trial_timeout_s
        self._prepared: Prepared | None = None
        self._queue: deque[TrialSpec] = deque()

    @property
    def capacity(self) -> int:
        return 1

    @property
    def pending(self) -> int:
        return len(self._queue)

    def check(self) -> None:
        if self.trial_timeout_s is not None and not on_main_thread():
            raise ConfigError("runner.trial_timeout_s needs runner=local's sweep on the main thread (its timer is a "
                              "signal); use runner=pool or no timeout")

    def start(self) -> None:
        pass

    def share(self, prepared: Prepared) -> None:
        self._prepared = prepared

    def submit(self, spec: TrialSpec) -> None:
        self._queue.append(spec)

    def wait(self) -> list[TrialOutcome]:
        assert self._prepared is not None, "share() the prepared network first"
        return [run_trial_threads(self._prepared, self._queue.popleft(), self.torch_threads, self.trial_timeout_s)]

    def close(self) -> None:
        self._queue.clear()
