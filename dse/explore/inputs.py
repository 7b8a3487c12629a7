"""What a study's trials were computed from, beyond its configuration: the network's weights and the samples.

The configuration names the model file and the data by path; a user who retrains `my_net.onnx` or rewrites
`my_data.npz` in place and runs the same command would resume the old study, reporting its trials beside new
ones of another network. The digest enters the study's fingerprint, so such a run starts a new study. So does
that of each fault map the trials read (`hardware.device.fault_map`, set or searched), rewritten in place by
``python -m dse.sim.fault_map`` drawing another chip.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from dse.data.datasets import SCAN_BATCH, Dataset
from dse.data.images import ImageSource
from dse.data.samples import Samples
from dse.ir.graph import Graph
from dse.ir.serialize import graph_document


def inputs_digest(graph: Graph, data: Dataset) -> dict[str, str]:
    """sha256 of the imported network (ops, wiring, every weight) and of the samples used (calibration, test,
    labels)."""
    return {"network": _graph_digest(graph), "data": _data_digest(data)}


def fault_map_digest(faults: dict[str, np.ndarray]) -> str:
    """sha256 of a fault map's arrays (names, types, shapes, cells): its content, however the file stores it."""
    h = hashlib.sha256()
    for key in sorted(faults):
        h.update(f"{key}\0".encode())
        _update(h, faults[key])
    return h.hexdigest()


def _graph_digest(graph: Graph) -> str:
    h = hashlib.sha256()
    doc, arrays = graph_document(graph)
    h.update(json.dumps(doc, default=str).encode())
    for key in sorted(arrays):
        _update(h, arrays[key])
    return h.hexdigest()


def _data_digest(data: Dataset) -> str:
    h = hashlib.sha256()
    for x in (data.x_train, data.x_test, data.y_train, data.y_test):
        h.update(b"none" if x is None else str(len(x)).encode())
        if x is not None:
            _update_samples(h, x)
    return h.hexdigest()


def _update_samples(h: Any, x: Any) -> None:
    if isinstance(x, Samples) and isinstance(x.source, ImageSource):
        # images decode only as batches are read: their files' names, sizes and modification times stand in
        for path in x.ids():
            stat = (x.source.root / path).stat()
            h.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        return
    for s in range(0, len(x), SCAN_BATCH):  # a memory-mapped array or a user's array-like: a batch at a time
        _update(h, np.asarray(x[s : s + SCAN_BATCH]))


def _update(h: Any, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
