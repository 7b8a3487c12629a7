"""Ctrl-C where a command's own handling (`dse.cli.run_app`) does not reach: above all while ``python -m dse.<command>``
imports its package (torch: the first seconds). It ends the process the way `run_app` does, with the line
``interrupted`` and exit status 130, not a KeyboardInterrupt traceback. Installed by `dse/__init__.py` only when
dse is imported by ``python -m``; a library use of dse is untouched."""

from __future__ import annotations

import atexit
import os
import sys
from types import TracebackType
from typing import Any

from dse.errors import EXIT_INTERRUPTED

_INTERRUPTED: list[bool] = []  # set by `_interrupted`: the process is to end with EXIT_INTERRUPTED


def _interrupted(kind: type[BaseException], exc: BaseException, tb: TracebackType | None,
                 report: Any = sys.excepthook) -> None:
    """`sys.excepthook` of a command run as ``python -m dse.<command>``: Ctrl-C where the command's own handling
    (`dse.cli.run_app`) does not reach, above all while ``python -m`` imports its package (torch: the first
    seconds), is the line ``interrupted`` and exit status 130 (`_exit_interrupted`), as within it, not a
    traceback; anything else is reported as before."""
    if not issubclass(kind, KeyboardInterrupt):
        report(kind, exc, tb)
        return
    print("interrupted", file=sys.stderr, flush=True)
    _INTERRUPTED.append(True)


def _exit_interrupted() -> None:
    """At exit, after every exit handler registered later (Ray's shutdown, ...): status 130 where `_interrupted`
    said so. Python would otherwise end a process it saw interrupted by the signal itself (-2, not 130)."""
    if _INTERRUPTED:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe
                pass
        os._exit(EXIT_INTERRUPTED)



def install() -> None:
    """The excepthook, and the exit handler registered first so that it runs last."""
    sys.excepthook = _interrupted
    atexit.register(_exit_interrupted)
