"""An imported ONNX file kept as a dse graph in the user's cache, so that a network is imported once per machine,
not once per process.

Importing the `onnx` package costs about 0.5 CPU s before a byte of a model is read (its `ml_dtypes` extension
alone), an eighth of LeNet's whole compile on chip_a; a graph the importer made before loads from the cache in a
few milliseconds without it. An entry is named after the file's bytes, the importer's own source
(`dse/frontends`, `dse/ir`) and the installed onnx and numpy versions, so a changed model, or a changed importer,
is imported again. Only a model that holds all its tensor data (none in files beside it) and is at most
`MAX_BYTES` is kept: a larger one takes seconds to import anyway, and would double its size on disk. Entries are
written atomically; where the cache cannot be written or read, the file is imported as if there were no cache.
An error (an unsupported op, a damaged file) is never kept: the file is read and refused again, with the same
line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import stat
from functools import cache
from pathlib import Path

import numpy as np

from dse.data.cache import cache_dir
from dse.errors import DseError
from dse.ir.graph import Graph

log = logging.getLogger(__name__)
MAX_BYTES = 64 * 2**20
_SOURCES = (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "ir")


@cache
def importer_version() -> str:
    """A digest of what decides the imported graph: the importer's and the IR's source, and the versions of onnx
    (its reference evaluator folds constants) and numpy (the arrays' arithmetic)."""
    digest = hashlib.sha256(np.__version__.encode())
    for folder in _SOURCES:
        for source in sorted(folder.glob("*.py")):
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    spec = importlib.util.find_spec("onnx")  # finds the package without importing it
    version = Path(spec.origin).with_name("version.py") if spec is not None and spec.origin else None
    digest.update(version.read_bytes() if version is not None and version.is_file() else b"no onnx")
    return digest.hexdigest()


def entry_path(source: Path) -> Path | None:
    """The cache entry of `source` as its bytes are now; None for a file too large to keep, unreadable, or not a
    regular file (a FIFO would block the read, a device such as /dev/zero never end it: the importer refuses
    those, in its words)."""
    try:
        if not stat.S_ISREG(source.stat().st_mode):
            return None
        with open(source, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # at most that much, even from a file that grows meanwhile
    except OSError:  # missing or unreadable: the importer says so, in its words
        return None
    if len(data) > MAX_BYTES:
        return None
    content = hashlib.sha256(data).hexdigest()
    key = hashlib.sha256(f"{content}|{importer_version()}".encode()).hexdigest()[:24]
    return cache_dir() / "graphs" / f"{source.name}.{key}.npz"


def load_onnx_file(path: str | Path) -> Graph:
    """`dse.frontends.onnx.load_onnx(path)`, from the cache when it holds this file as it is."""
    from dse.ir.serialize import load_graph, save_graph

    entry = entry_path(Path(path))
    if entry is not None and entry.is_file():
        try:
            return load_graph(entry)[0]
        except (DseError, OSError, ValueError, TypeError) as exc:  # damaged: import again, and write it anew
            log.debug("cached graph %s not used: %s", entry, exc)
    from dse.frontends.onnx import import_onnx

    graph, self_contained = import_onnx(path)
    if entry is not None and self_contained:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            save_graph(graph, entry, meta={"source": str(path)}, compress=False)
        except (OSError, DseError, TypeError, ValueError) as exc:  # a read-only home, a full disk, a field the
            log.debug("cached graph %s not written: %s", entry, exc)  # graph file cannot hold: the graph serves
    return graph
