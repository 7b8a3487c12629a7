"""The user's own data as a :class:`dse.data.datasets.Dataset`: a ``.npz`` file, an image folder, or a Python
function that returns the arrays.

The arrays (the ``.npz``'s members, or the keys of what ``module:function`` returns: a dict, or an object with
those attributes):

``x``                         every sample, ``(N, *per-sample shape)``, float32 (other real types are converted
                              batch by batch); split by :func:`dse.data.datasets.split_indices`
``y``                         optional: an integer class label per sample of ``x``
``x_calib``, ``x_test``       instead of ``x``: the calibration and the test samples, not split
``y_test``                    optional, with ``x_test``: their labels (calibration needs none)
``value_range``               optional: ``[lo, hi]``, every value an input can take; without it, the smallest
                              (or 0, if above) and the largest value of the calibration samples used

An uncompressed ``.npz`` (``np.savez``) is memory-mapped; a compressed one is decompressed into memory.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from dse.data.datasets import DATASETS, Dataset, split_indices
from dse.data.images import Preprocess, image_folder
from dse.data.samples import ArraySource, NpzMember, Samples
from dse.errors import ConfigError, DataError, first_line

__all__ = ["ARRAYS", "load", "refuse_preprocess"]

ARRAYS = ("x", "y", "x_calib", "x_test", "y_test", "value_range")
CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load(spec: str, preprocess: Preprocess | None) -> Dataset:
    if not spec.strip():  # Path("") is the working folder: every image below it was read as the data
        raise DataError(f"model.dataset is empty: name a built-in ({', '.join(sorted(DATASETS))}), a .npz file, an "
                        "image folder or module:function")
    path = Path(spec)
    if path.is_dir():
        return _folder(spec, path, preprocess or Preprocess())
    refuse_preprocess(spec, preprocess)
    if path.suffix == ".npz":
        if not path.is_file():
            raise DataError(f"dataset file not found: {spec}")
        return _npz(spec, path)
    if CALLABLE.match(spec):
        return from_arrays(spec, _call(spec))
    raise DataError(f"unknown dataset {spec!r}: not a built-in ({', '.join(sorted(DATASETS))}), a .npz file, "
                    "an image folder or module:function")


def refuse_preprocess(spec: str, preprocess: Preprocess | None) -> None:
    """model.preprocess only acts on an image folder; anywhere else it would be a setting silently ignored."""
    if preprocess is not None and preprocess != Preprocess():
        raise ConfigError(f"model.preprocess applies to an image folder; dataset {spec} is not one")


def _npz(spec: str, path: Path) -> Dataset:
    import zipfile

    from dse.files import not_an_npz

    problem = not_an_npz(path)
    if problem:
        raise DataError(f"{spec} is not a readable .npz file: {problem}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # EOFError: an empty file
        raise DataError(f"{spec} is not a readable .npz file: {exc}") from None
    return from_arrays(spec, {k: NpzMember(str(path), k).array if k in ("y", "y_test", "value_range")
                              else NpzMember(str(path), k) for k in keys}, where=f"{spec} holds")


def _call(spec: str) -> dict[str, Any]:
    module, _, func = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"cannot import dataset function {spec}: {exc}") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's module failed as it ran (a SyntaxError, its
        # own errors, a script's sys.exit(main()): that ended the compile with its status, nothing written)
        raise DataError(f"cannot import dataset function {spec}: importing {module} raised "
                        f"{type(exc).__name__}: {first_line(exc)}") from None
    try:
        out = fn()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code: any failure is theirs, named in one line
        raise DataError(f"dataset function {spec} raised {type(exc).__name__}: {first_line(exc)}") from None
    if isinstance(out, dict):
        return out
    return {k: getattr(out, k) for k in ARRAYS if getattr(out, k, None) is not None}


def from_arrays(name: str, arrays: dict[str, Any], where: str = "") -> Dataset:
    """A dataset from the arrays of ``ARRAYS`` (numpy arrays, array-likes or NpzMembers)."""
    where = where or f"dataset function {name} returned"
    arrays = {k: v for k, v in arrays.items() if v is not None}
    if "x" not in arrays and ("x_calib" not in arrays or "x_test" not in arrays):
        hint = ("; rename x_train to x_calib (the calibration samples; their labels are not needed)"
                if "x_train" in arrays and "x_test" in arrays else "")
        have = ", ".join(map(str, arrays)) or "none"  # keys the user's function returned: maybe not text
        raise DataError(f"{where} no array 'x' (nor 'x_calib' and 'x_test'); it has: {have}{hint}")
    unknown = [k for k in arrays if k not in ARRAYS]
    if unknown:
        raise DataError(f"{where} unknown array {unknown[0]!r} (known: {', '.join(ARRAYS)})")
    src = {k: v if isinstance(v, ArraySource) else ArraySource(_array_like(v, f"{k} of {name}"), f"{k} of {name}")
           for k, v in arrays.items() if k.startswith("x")}
    for k, s in src.items():
        if len(s.array.shape) < 2:
            raise DataError(f"{k} of {name} has shape {tuple(s.array.shape)}; it must be (samples, *per-sample "
                            "shape)")
        if len(s.array) == 0:
            raise DataError(f"{k} of {name} holds no samples (shape {tuple(s.array.shape)})")
        dtype = _dtype(s.array, f"{k} of {name}")
        if not any(np.issubdtype(dtype, kind) for kind in (np.bool_, np.integer, np.floating)):
            raise DataError(f"{k} of {name} holds {dtype} values; the samples must be real numbers")
    value_range = _given_range(name, arrays.get("value_range"))
    if "x" in src:
        if "x_calib" in src or "x_test" in src:
            raise DataError(f"{name}: give x (split by dse) or x_calib and x_test, not both")
        if "y_test" in arrays:
            raise DataError(f"{name}: y_test goes with x_test; the labels of x are y")
        y = _labels(name, "y", arrays.get("y"), len(src["x"].array))
        return split(name, src["x"], y, value_range, None if y is None else int(y.max()) + 1)
    if "y" in arrays:
        raise DataError(f"{name}: y goes with x; the labels of x_test are y_test")
    calib, test = src["x_calib"], src["x_test"]
    if calib.sample_shape != test.sample_shape:
        raise DataError(f"{name}: x_calib samples are {calib.sample_shape}, x_test samples {test.sample_shape}")
    y_test = _labels(name, "y_test", arrays.get("y_test"), len(test.array))
    calib_idx, test_idx = np.arange(len(calib.array)), np.arange(len(test.array))
    return Dataset(name, Samples(calib, calib_idx), None, Samples(test, test_idx), y_test, calib.sample_shape,
                   value_range, None if y_test is None else int(y_test.max()) + 1, calib_idx, test_idx)


def _array_like(value: Any, what: str) -> Any:
    """`value` where it has a shape (arrays, memory maps, h5py datasets: read batch by batch), else as a numpy array
    (nested lists)."""
    if hasattr(value, "shape"):
        return value
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged lists
        raise DataError(f"{what} is not an array of samples ({str(exc).splitlines()[0]})") from None


def _dtype(array: Any, what: str) -> np.dtype:
    """The element type of an array-like: its numpy ``dtype``, else (a torch tensor's ``torch.float32``) that of
    an empty slice of it as numpy reads it, which is how its batches are read."""
    try:
        return np.dtype(getattr(array, "dtype", np.float32))
    except TypeError:
        try:
            return np.asarray(array[:0]).dtype
        except Exception as exc:  # noqa: BLE001 - the user's array-like: any failure is theirs, named in one line
            raise DataError(f"{what} holds {array.dtype} values, which numpy cannot read ({type(exc).__name__}: "
                            f"{first_line(exc)})") from None


def split(name: str, source: Any, y: np.ndarray | None, value_range: tuple[float, float] | None,
          num_classes: int | None) -> Dataset:
    """Samples 0..N-1 of `source` split by the fixed permutation."""
    n = len(source.array) if isinstance(source, ArraySource) else len(source.paths)
    if n < 2:
        raise DataError(f"{name} has {n} sample; at least 2 are needed (one to calibrate, one to test)")
    train, test = split_indices(n)
    return Dataset(name, Samples(source, train), None if y is None else y[train], Samples(source, test),
                   None if y is None else y[test], source.sample_shape, value_range, num_classes, source.ids(train),
                   source.ids(test))


def _labels(name: str, key: str, y: Any, n: int) -> np.ndarray | None:
    if y is None:
        return None
    try:
        y = np.asarray(y)
    except (ValueError, TypeError) as exc:  # ragged lists
        raise DataError(f"{key} of {name} must be one integer class label per sample ({first_line(exc)})") from None
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise DataError(f"{key} of {name} must be one integer class label per sample (got {y.dtype} of shape "
                        f"{y.shape})")
    if len(y) != n:
        raise DataError(f"{key} of {name} has {len(y)} labels for {n} samples")
    if len(y) and y.min() < 0:
        raise DataError(f"{key} of {name} holds a negative label ({int(y.min())}); classes count from 0")
    if len(y) and int(y.max()) > np.iinfo(np.int64).max:  # uint64: the cast below wrapped it to a negative class
        raise DataError(f"{key} of {name} holds a label of {int(y.max())}, past any network's outputs")
    return y.astype(np.int64)


def _given_range(name: str, value_range: Any) -> tuple[float, float] | None:
    if value_range is None:
        return None
    try:
        v = np.asarray(value_range, dtype=np.float64).ravel()
    except (TypeError, ValueError):  # text, a dict, ragged lists
        v = None
    # finite as float32, the inputs' type: a hi of 1e300 or Inf gave an input scale that overflowed (a traceback
    # in the tuner, or NaN outputs)
    if v is None or v.shape != (2,) or not v[0] < v[1] or not (np.abs(v) <= np.finfo(np.float32).max).all():
        got = v.tolist() if v is not None else np.asarray(value_range, dtype=object).ravel().tolist()
        raise DataError(f"value_range of {name} must be [lo, hi], finite numbers with lo < hi (got {got})")
    return (float(v[0]), float(v[1]))


def _folder(spec: str, root: Path, preprocess: Preprocess) -> Dataset:
    if preprocess.channels is None:
        raise ConfigError(f"model.preprocess.channels must be 1 or 3 for image folder {spec} (by default, the "
                          "network input's channels)")
    source, labels, num_classes = image_folder(root, preprocess)
    return split(spec, source, labels, preprocess.value_range(), num_classes)
