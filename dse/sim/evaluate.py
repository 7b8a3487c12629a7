"""Error against the original network, on held-out data."""

from __future__ import annotations

import numpy as np


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def compare(original: np.ndarray, compiled: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy of both, their difference (percentage points), agreement of top-1, logit error."""
    acc_o, acc_c = accuracy(original, labels), accuracy(compiled, labels)
    denom = float(np.linalg.norm(original)) or 1.0
    return {
        "accuracy_original": acc_o,
        "accuracy_compiled": acc_c,
        "accuracy_delta_pp": round((acc_o - acc_c) * 100.0, 6),
        "agreement": float((original.argmax(axis=1) == compiled.argmax(axis=1)).mean()),
        "logits_rel_error": float(np.linalg.norm(compiled - original) / denom),
    }


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    """||value - reference|| / ||reference||."""
    denom = float(np.linalg.norm(reference))
    return float(np.linalg.norm(value - reference) / denom) if denom else float(np.linalg.norm(value))
