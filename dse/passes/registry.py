"""Pass registry and `run_pipeline`.

A pass is a pure function ``(graph, hw, **options) -> graph``. `run_pipeline` runs passes in order, checks
the graph after each one (shape inference must succeed), and keeps a trace: name, seconds, node counts.
A failure names the pass that failed and the passes that ran before it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dse.errors import DseError
from dse.hardware.spec import HardwareSpec
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes

log = logging.getLogger(__name__)

PassFn = Callable[..., Graph]
PASSES: dict[str, PassFn] = {}


def register(name: str) -> Callable[[PassFn], PassFn]:
    def deco(fn: PassFn) -> PassFn:
        if name in PASSES:
            raise ValueError(f"pass {name!r} registered twice")
        PASSES[name] = fn
        return fn

    return deco


@dataclass(frozen=True)
class PassRecord:
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int


class PassError(RuntimeError):
    """A pass produced a broken graph or crashed on a bug (not a user mistake)."""


def run_pipeline(
    graph: Graph,
    hw: HardwareSpec,
    steps: Sequence[str | tuple[str, dict[str, Any]]],
    trace: list[PassRecord] | None = None,
) -> Graph:
    """Run the named passes in order; append one PassRecord per pass to `trace` if given."""
    done: list[str] = []
    for step in steps:
        name, options = (step, {}) if isinstance(step, str) else step
        fn = PASSES[name]
        start = time.perf_counter()
        before = len(graph)
        try:
            out = fn(graph, hw, **options)
            infer_shapes(out)
        except DseError:
            raise  # a user-facing error already names what is wrong
        except Exception as exc:
            ran = ", ".join(done) or "nothing"
            raise PassError(f"pass {name!r} failed (after: {ran}): {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - start
        log.debug("pass %s: %.3fs, %d -> %d nodes", name, seconds, before, len(out))
        if trace is not None:
            trace.append(PassRecord(name, seconds, before, len(out)))
        done.append(name)
        graph = out
    return graph
