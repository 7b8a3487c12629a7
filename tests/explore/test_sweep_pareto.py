"""The data behind the figures: Pareto set against brute force, sensitivity slices, reference points."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dse.explore.pareto import non_dominated, pareto_front, reference_point, sensitivity


def brute_force_front(values: np.ndarray) -> set[int]:
    """Indices of the rows no other row dominates, straight from the definition."""
    front = set()
    for i, p in enumerate(values):
        if not any(all(q <= p) and any(q < p) for j, q in enumerate(values) if j != i):
            front.add(i)
    return front


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=25),
       st.integers(1, 3))
def test_non_dominated_matches_brute_force(rows, k):
    values = np.array(rows, dtype=float)[:, :k]
    assert set(np.flatnonzero(non_dominated(values))) == brute_force_front(values)


def trials_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for n, (bits, size) in enumerate(itertools.product([2, 4, 8], [64, 128, 256])):
        rows.append({"trial": n, "hardware.weights.bits": bits, "hardware.crossbar.rows": size,
                     "accuracy_delta_pp": float(rng.integers(0, 20)) / 10, "crossbars": 4096 // size + bits,
                     "legal": n != 3, "state": "fail" if n == 5 else "complete"})
    frame = pd.DataFrame(rows)
    frame.loc[5, ["accuracy_delta_pp", "crossbars"]] = np.nan
    return frame


def test_pareto_front_holds_exactly_the_non_dominated_legal_trials():
    frame = trials_table()
    front = pareto_front(frame, ["accuracy_delta_pp", "crossbars"])
    ok = frame[(frame.state == "complete") & frame.legal]
    expected = {int(ok.iloc[i].trial) for i in brute_force_front(ok[["accuracy_delta_pp", "crossbars"]].to_numpy())}
    assert set(front.trial) == expected
    assert 3 not in set(front.trial) and 5 not in set(front.trial)


def test_pareto_front_of_nothing_is_empty():
    frame = trials_table().assign(legal=False)
    assert pareto_front(frame, ["accuracy_delta_pp", "crossbars"]).empty


def test_reference_point_is_the_presets_value_or_the_nearest_searched_one():
    ref = reference_point({"a": (2, 4, 8), "b": (64, 128), "c": ("split", "prune")}, {"a": 4, "b": 256, "c": "x"})
    assert ref == {"a": 4, "b": 128, "c": "split"}


def test_sensitivity_holds_the_other_parameters_at_the_reference():
    frame = trials_table()
    data = sensitivity(frame, x="hardware.weights.bits", y=["accuracy_delta_pp"], by=None,
                       swept=["hardware.weights.bits", "hardware.crossbar.rows"],
                       reference={"hardware.crossbar.rows": 256, "hardware.weights.bits": 8})
    usable = frame[(frame.state == "complete") & frame.legal & (frame["hardware.crossbar.rows"] == 256)]
    assert list(data["hardware.weights.bits"]) == sorted(usable["hardware.weights.bits"])
    assert list(data["accuracy_delta_pp"]) == list(usable.sort_values("hardware.weights.bits").accuracy_delta_pp)


def test_sensitivity_by_series_and_best():
    frame = trials_table()
    data = sensitivity(frame, x="hardware.weights.bits", y=["accuracy_delta_pp"], by="hardware.crossbar.rows",
                       swept=["hardware.weights.bits", "hardware.crossbar.rows"], reference={})
    assert len(data) == 7  # 9 points, less one illegal and one failed
    best = sensitivity(frame, x="hardware.weights.bits", y=["accuracy_delta_pp"], by=None,
                       swept=["hardware.weights.bits", "hardware.crossbar.rows"], reference={}, others="best")
    ok = frame[(frame.state == "complete") & frame.legal]
    assert list(best["accuracy_delta_pp"]) == list(ok.groupby("hardware.weights.bits").accuracy_delta_pp.min())
    with pytest.raises(ValueError):
        sensitivity(frame, x="hardware.weights.bits", y=["accuracy_delta_pp"], by=None, swept=[], reference={},
                    others="mean")
