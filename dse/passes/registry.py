"""The pass registry and the one runner, `run_steps`.

Two kinds of step, registered by name:

- a graph pass (`register`) is a pure function ``(graph, hw, **options) -> graph``; the runner applies it to
  `CompileState.graph` and checks the result (shape inference must succeed). A pass registered with
  ``exact=True`` keeps the network the exact float network (equalization): its output is also the teacher,
  `CompileState.exact`.
- a state step (`register_step`) is ``(state, **options) -> None``: it reads the graphs and data of the
  `CompileState` and writes its results there (tuning replaces the graph; verification and resource
  counting fill in what they measure).

The runner keeps a trace, one `PassRecord` per step (name, seconds, node counts). A failure names the step
that failed and the steps that ran before it.
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
from dse.passes.state import CompileState

log = logging.getLogger(__name__)

PassFn = Callable[..., Graph]  # (graph, hw, **options) -> graph
StepFn = Callable[..., None]  # (state, **options) -> None
PASSES: dict[str, PassFn] = {}
EXACT_PASSES: set[str] = set()  # graph passes whose output is still the exact network (the teacher)
STEPS: dict[str, StepFn] = {}
Step = str | tuple[str, dict[str, Any]]  # a name, or a name and its options


def _claim(name: str) -> None:
    if name in PASSES or name in STEPS:
        raise ValueError(f"pass {name!r} registered twice")


def register(name: str, *, exact: bool = False) -> Callable[[PassFn], PassFn]:
    """Register a graph pass under `name`."""

    def deco(fn: PassFn) -> PassFn:
        _claim(name)
        PASSES[name] = fn
        if exact:
            EXACT_PASSES.add(name)
        return fn

    return deco


def register_step(name: str) -> Callable[[StepFn], StepFn]:
    """Register a state step under `name`."""

    def deco(fn: StepFn) -> StepFn:
        _claim(name)
        STEPS[name] = fn
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


def _run_one(state: CompileState, name: str, options: dict[str, Any]) -> None:
    if name in PASSES:
        graph = PASSES[name](state.graph, state.hw, **options)
        infer_shapes(graph)
        if name in EXACT_PASSES:
            state.exact = graph
        state.graph = graph
    elif name in STEPS:
        STEPS[name](state, **options)
    else:
        raise KeyError(f"no pass or step named {name!r} (known: {', '.join(sorted(PASSES | STEPS))})")


def run_steps(state: CompileState, steps: Sequence[Step], trace: list[PassRecord] | None = None) -> CompileState:
    """Run the named steps in order on `state`; append one PassRecord per step to `trace` if given."""
    done: list[str] = []
    for step in steps:
        name, options = (step, {}) if isinstance(step, str) else step
        start = time.perf_counter()
        before = len(state.graph)
        try:
            _run_one(state, name, options)
        except DseError:
            raise  # a user-facing error already names what is wrong
        except Exception as exc:
            ran = ", ".join(done) or "nothing"
            raise PassError(f"pass {name!r} failed (after: {ran}): {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - start
        log.debug("pass %s: %.3fs, %d -> %d nodes", name, seconds, before, len(state.graph))
        if trace is not None:
            trace.append(PassRecord(name, seconds, before, len(state.graph)))
        done.append(name)
    return state


def run_pipeline(graph: Graph, hw: HardwareSpec, steps: Sequence[Step], trace: list[PassRecord] | None = None
                 ) -> Graph:
    """Run graph passes on `graph` alone (no data: the chip-independent passes of `prepare`, tests)."""
    return run_steps(CompileState(hw, graph, graph), steps, trace).graph
