"""Samples read on demand: the array interface every consumer of a dataset's inputs relies on.

A dataset's ``x_train`` (the calibration part) and ``x_test`` are either plain float32 numpy arrays (the
built-in datasets) or :class:`Samples` (the user's data). Both offer the same small interface, and nothing
else is relied on:

- ``len(x)`` and ``x.shape`` (``(N, *per-sample shape)``);
- ``x[a:b]`` (a slice, or an integer index array): a float32 numpy array of those samples, read only then.

So a consumer that walks ``x`` in slices (``for s in range(0, len(x), B): x[s:s + B]``) holds one batch at a
time, whatever the size of the data on disk. A :class:`Samples` is a view (a source and the indices into it it
shows); ``head(n)`` is the view of its first `n` samples, read nothing.

A source reads given indices into a float32 array (``read``), names each sample (``ids``: an index into the
user's array or an image's file path) and may check, cheaply, that the indices it will be asked for are
readable (``check``: the image headers).
"""

from __future__ import annotations

import zipfile
from typing import Any, Protocol

import numpy as np

from dse.errors import DataError, first_line

__all__ = ["ArraySource", "NpzMember", "Samples", "Source", "head"]


class Source(Protocol):
    sample_shape: tuple[int, ...]

    def read(self, index: np.ndarray) -> np.ndarray: ...  # float32, (len(index), *sample_shape)

    def ids(self, index: np.ndarray) -> list[Any]: ...

    def check(self, index: np.ndarray) -> None: ...


class Samples:
    """The samples `index` of `source`, read in the slices a consumer asks for."""

    dtype = np.dtype(np.float32)

    def __init__(self, source: Source, index: np.ndarray) -> None:
        self.source = source
        self.index = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.source.sample_shape)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            raise TypeError("index Samples with a slice or an index array (x[i:i + 1]), as a batch")
        return self.source.read(self.index[key])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # np.asarray(samples): all of them, at once
        return self[:] if dtype is None else self[:].astype(dtype)

    def head(self, n: int | None) -> Samples:
        return self if n is None else Samples(self.source, self.index[:n])

    def ids(self) -> list[Any]:
        return self.source.ids(self.index)

    def check(self) -> None:
        self.source.check(self.index)


def head(x: Any, n: int | None) -> Any:
    """The first `n` samples of `x` (all for None), without reading a Samples."""
    if isinstance(x, Samples):
        return x.head(n)
    return x if n is None else x[:n]


class ArraySource:
    """An array-like the user gave (numpy array, memory map, h5py dataset: anything with ``shape`` and
    indexing by a sorted index array); samples are cast to float32 batch by batch."""

    def __init__(self, array: Any, what: str) -> None:
        self.array = array
        self.what = what  # names the array in messages: "x of data.npz"
        self.sample_shape = tuple(int(d) for d in array.shape[1:])

    def read(self, index: np.ndarray) -> np.ndarray:
        # over: a value beyond float32's range becomes Inf without a RuntimeWarning on stderr; the sample is refused
        # in one line naming it (Dataset.require_finite)
        try:
            with np.errstate(over="ignore"):
                if len(index) and np.all(np.diff(index) == 1):  # a run: one slice (a memory map reads it at once)
                    out = np.asarray(self.array[int(index[0]) : int(index[-1]) + 1], dtype=np.float32)
                else:
                    order = np.argsort(index, kind="stable")  # array-likes on disk (h5py): increasing positions
                    out = np.empty((len(index), *self.sample_shape), dtype=np.float32)
                    out[order] = np.asarray(self.array[index[order]], dtype=np.float32)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's array-like (an h5py file gone, values not numbers)
            raise DataError(f"{self.what}: reading {len(index)} samples failed ({type(exc).__name__}: "
                            f"{first_line(exc)})") from None
        if out.shape != (len(index), *self.sample_shape):  # an array-like whose shape promised other samples
            raise DataError(f"{self.what}: {len(index)} samples read as shape {out.shape}, not "
                            f"{(len(index), *self.sample_shape)} as its shape {tuple(self.array.shape)} promised")
        return out

    def ids(self, index: np.ndarray) -> list[int]:
        return [int(i) for i in index]

    def check(self, index: np.ndarray) -> None:
        pass  # an array's samples are all readable


class NpzMember(ArraySource):
    """One array of an ``.npz`` file. An uncompressed member (``np.savez``) is memory-mapped straight from the
    zip file, so its samples are read from disk as they are sliced; a compressed one (``np.savez_compressed``)
    cannot be, and is decompressed into memory whole. Pickles as its path (a sweep's workers map it again)."""

    def __init__(self, path: str, key: str) -> None:
        self.path, self.key = path, key
        super().__init__(_open_member(path, key), f"{key} of {path}")

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "array"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.array = _open_member(self.path, self.key)


def _open_member(path: str, key: str) -> np.ndarray:
    """The member memory-mapped where it is stored uncompressed, else read; one that is not an array is a
    DataError naming it."""
    try:
        return _read_member(path, key)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{key} of {path} is not a readable array ({str(exc).splitlines()[0]})") from None


def _read_member(path: str, key: str) -> np.ndarray:
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(f"{key}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as f:
                f.seek(info.header_offset)
                local = f.read(30)  # the zip local header: name and extra field lengths at bytes 26..29
                start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + \
                    int.from_bytes(local[28:30], "little")
                f.seek(start)
                version = np.lib.format.read_magic(f)
                if version in ((1, 0), (2, 0)):
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read_header(f)
                    if not dtype.hasobject:
                        return np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape,
                                         order="F" if fortran else "C")
    with np.load(path, allow_pickle=False) as npz:
        try:
            return npz[key]
        except ValueError as exc:  # an object array
            raise DataError(f"{key} of {path} cannot be read without pickle: {exc}") from None
