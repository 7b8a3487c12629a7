"""A wall-clock limit on a block of code: `time_limit(seconds, Error)` raises `Error` in it when time is up.

A SIGALRM timer, so it interrupts Python code (a long C call ends first) and works only on the main thread,
where signals are delivered. Limits nest: a timer already set (an outer limit, a test's own) keeps running;
when it is due first its handler runs then (and this limit is set again), otherwise it is set again on the way
out, less the time spent inside. Users: the importer's constant folding (`dse.frontends.onnx_fold`), a sweep's
trials (`runner.trial_timeout_s`, `dse.explore.trial`), the fuzz harness.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# the longest limit the timer takes: setitimer takes 2**31 s but refuses 1e10 ("timestamp out of range")
MAX_SECONDS = 1e9


def on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float, error: type[BaseException]) -> Iterator[None]:
    """Raise `error` in the enclosed code after `seconds`; off the main thread, no limit (the callers say what
    holds there)."""
    if not on_main_thread():
        yield
        return
    outer_handler = signal.getsignal(signal.SIGALRM)
    outer_delay, _ = signal.getitimer(signal.ITIMER_REAL)
    outer_pending = [0 < outer_delay < seconds]
    start = time.monotonic()

    def expire(signum: int, frame: object) -> None:
        if not outer_pending[0]:
            raise error
        outer_pending[0] = False
        signal.setitimer(signal.ITIMER_REAL, max(seconds - (time.monotonic() - start), 1e-3))
        if callable(outer_handler):
            outer_handler(signum, frame)

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, outer_delay if outer_pending[0] else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_delay > 0 and (outer_pending[0] or outer_delay >= seconds):
            signal.setitimer(signal.ITIMER_REAL, max(outer_delay - (time.monotonic() - start), 1e-3))
