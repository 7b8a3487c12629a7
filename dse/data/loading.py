"""`load_dataset`: the one way in for every dataset, a built-in one by name or the user's data."""

from __future__ import annotations

from typing import Any

from dse.data import user_data
from dse.data.datasets import DATASETS, Dataset, builtin_dataset


def load_dataset(name: str, preprocess: Any = None) -> Dataset:
    """A built-in dataset by name (cached: repeated calls cost nothing), or the user's data: a ``.npz`` file,
    an image folder (preprocessed by `preprocess`, a :class:`dse.data.images.Preprocess`) or
    ``module:function``.

    Raises :class:`dse.errors.DataError` for data that cannot be read or is not a dataset, and for a name that
    is none of these.
    """
    if name in DATASETS:
        user_data.refuse_preprocess(name, preprocess)
        return builtin_dataset(name)
    return user_data.load(name, preprocess)
