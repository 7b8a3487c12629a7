"""`Teachers`: the exact network's values on the calibration and the test data, kept for the next compile.

Every compile of one prepared network (a sweep's trials) needs the same teacher values: the exact graph's core
outputs on the calibration images (what tuning matches, block by block) and on the test images (what each
layer's error is measured against). They depend on the network and the data, never on the chip, so a sweep's
worker computes them once and its later trials read them: on LeNet they were about a tenth of a trial's CPU time
(a float pass over 4,000 calibration and 1,000 test images). The values are the very tensors the first compile
computed, so every result is bit for bit what a fresh computation gives.

Only values that fit `KEPT_FLOATS` are kept (LeNet's: 23 M floats on the calibration data); past it, each compile
computes its own (`LazyForward`: an ImageNet-size network's values do not fit at once). The memory plan
(`dse.compile.memory`) does not count them: at most 256 MB, kept only by networks that small. The kept values
are never pickled: a Ray worker keeps its own (`dse.explore.ray_executor`), the driver ships none; a
forked worker (`dse.explore.pool_executor`) computes its own too, the driver having computed none.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes
from dse.sim.float_exec import LazyForward, run_float

Tensor = torch.Tensor
KEPT_FLOATS = 2**25  # values kept per data set at most (128 MB of float32)


class Teachers:
    """The exact graph `exact`'s core values on the calibration data `calib_x`, and on the test data batch by
    batch, computed once each and kept when they fit `max_floats`. A graph other than `exact` (an equalized
    teacher) is computed afresh each time."""

    def __init__(self, exact: Graph, calib_x: Tensor, max_floats: int = KEPT_FLOATS) -> None:
        self.exact = exact
        self.calib_x = calib_x
        self.max_floats = max_floats
        self._reset()

    def _reset(self) -> None:
        self._calib: dict[str, Tensor] = {}
        self._forward: LazyForward | None = None
        self._test: dict[tuple[int, int], dict[str, Tensor]] = {}
        self._per_sample: int | None = None  # the exact graph's core values per sample

    def __getstate__(self) -> dict:
        return {"exact": self.exact, "calib_x": self.calib_x, "max_floats": self.max_floats}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def _kept(self, graph: Graph, samples: int) -> bool:
        """Whether `graph`'s core values on `samples` samples are kept: it is the exact graph, and they fit."""
        if graph is not self.exact:
            return False
        if self._per_sample is None:
            shapes = infer_shapes(graph)
            self._per_sample = sum(int(np.prod(shapes[n.name])) for n in graph.of_type(o.CoreOp))
        return samples * self._per_sample <= self.max_floats

    def calibration(self, graph: Graph) -> Callable[[str], Tensor]:
        """`teacher(name)`: core `name`'s value on the calibration data (`dse.tune.tune_graph`'s teacher)."""
        if not self._kept(graph, len(self.calib_x)):
            return LazyForward(graph, self.calib_x)
        if self._forward is None:
            self._forward = LazyForward(graph, self.calib_x)

        def teacher(name: str) -> Tensor:
            if name not in self._calib:
                self._calib[name] = self._forward(name)
            return self._calib[name]

        return teacher

    def test(self, graph: Graph, n_samples: int) -> Callable[[np.ndarray, int, list[str]], dict[str, Tensor]] | None:
        """`values(xb, start, names)`: the cores `names`' values on the test batch `xb` that starts at sample
        `start` (`dse.sim.evaluate.evaluate_chip`'s teacher); None where they are not kept (it computes them)."""
        if not self._kept(graph, n_samples):
            return None

        def values(xb: np.ndarray, start: int, names: list[str]) -> dict[str, Tensor]:
            key = (start, len(xb))
            if key not in self._test:
                self._test[key] = run_float(graph, xb, keep=[n.name for n in graph.of_type(o.CoreOp)])
            return self._test[key]

        return values
