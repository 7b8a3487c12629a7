"""`CompileState`: what the steps of a compile share, threaded through `run_steps`.

Graph passes replace `graph` (and, when they keep the network exact, `exact`); the other steps read the
graphs and the data and write what they produce into the fields below them. A field is None until the step
that fills it has run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dse.cost.energy import NetworkCost
from dse.cost.resources import LayerResources
from dse.hardware.spec import HardwareSpec
from dse.ir.graph import Graph
from dse.sim.evaluate import ChipEvaluation
from dse.sim.montecarlo import DeviceReport, MonteCarlo
from dse.sim.teachers import Teachers
from dse.tune import BlockReport, TuneOptions
from dse.tune.walk import CHUNK_FLOATS


@dataclass
class CompileData:
    """The samples a compile tunes on and is evaluated on, and the original network's answers."""

    calib_x: torch.Tensor  # calibration samples (N, *input shape), float32
    value_range: tuple[float, float] | None  # (lo, hi) of every input value
    test_x: Any  # test samples (M, *input shape), float32: an array or Samples, read in slices
    test_y: np.ndarray | None  # test labels; None: no labels (agreement and logit error only)
    original_logits: np.ndarray  # the original network's logits on test_x (M, classes)
    teachers: Teachers  # the exact network's values, kept between compiles (`dse.sim.teachers`)


@dataclass
class CompileState:
    hw: HardwareSpec
    graph: Graph  # the graph being compiled: exact, then fitted, then compiled (integer)
    exact: Graph  # the teacher: the exact float core-op network (equalized, when asked)
    data: CompileData | None = None  # None: graph passes only
    tuning: TuneOptions = field(default_factory=TuneOptions)
    chunk_floats: int = CHUNK_FLOATS  # values a block holds per chunk of calibration images (memory plan)
    eval_batch: int | None = None  # test samples per batch of the evaluation (memory plan)
    progress: Callable[[str], None] | None = None  # called with each block's name as tuning finishes it
    montecarlo: MonteCarlo = field(default_factory=MonteCarlo)  # chip instances drawn from hw.device
    # the stuck cells of hw.device.fault_map, read once (`dse.passes.verify.fault_map`; None: not read yet)
    faults: dict[str, np.ndarray] | None = None
    # --- results -------------------------------------------------------------------------------------------
    blocks: list[BlockReport] = field(default_factory=list)  # "tune": what tuning did to each block
    violations: list[str] | None = None  # "check": the chip's constraints the compiled graph breaks
    evaluation: ChipEvaluation | None = None  # "evaluate": the chip simulated exactly on the test data
    metrics: dict[str, Any] | None = None  # "evaluate": the chip's answers against the original's (`compare`)
    device: DeviceReport | None = None  # "evaluate": the drawn chips' answers (None: an ideal device)
    layers: list[LayerResources] | None = None  # "resources": each core-op's resources
    totals: dict[str, Any] | None = None  # "resources": the chip's resources in total (`total_resources`)
    depth: int | None = None  # "resources": core-ops on the longest path, input to output
    cost: NetworkCost | None = None  # "cost": energy, latency, area, placement (None: the chip has no cost model)

    def need_data(self, step: str) -> CompileData:
        if self.data is None:
            raise ValueError(f"step {step!r} needs the compile's data (CompileState.data)")
        return self.data
