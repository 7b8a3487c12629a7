"""The data behind the figures: Pareto set against brute force, sensitivity slices, reference points."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dse.explore.pareto import near_front, non_dominated, pareto_front, reference_point, sensitivity
from dse.explore.repeats import per_configuration


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


def noisy_trials() -> pd.DataFrame:
    """Three designs: a (cheap, 2.0 pp, interval [0.5, 3.5]), b (dearer, 1.8 pp, [1.5, 2.1]: better than a only
    within a's noise), c (dearest, 0.0 pp, [-0.1, 0.1]: a clear win); d (dearer than c, 0.1 pp, [-0.3, 0.5]):
    dominated by c, but as good within noise."""
    return pd.DataFrame({
        "trial": [0, 1, 2, 3], "accuracy_delta_pp": [2.0, 1.8, 0.0, 0.1],
        "accuracy_delta_ci95_low": [0.5, 1.5, -0.1, -0.3], "accuracy_delta_ci95_high": [3.5, 2.1, 0.1, 0.5],
        "crossbars": [10, 20, 30, 40], "legal": True, "state": "complete"})


def test_a_point_of_the_front_that_wins_only_within_noise_is_marked():
    front = pareto_front(noisy_trials(), ["accuracy_delta_pp", "crossbars"])
    assert list(front.trial) == [2, 1, 0]
    # b beats a by 0.2 pp, but a at its interval's low end (0.5 pp) is better than b with fewer crossbars
    assert dict(zip(front.trial, front.wins_within_noise, strict=True)) == {0: False, 1: True, 2: False}
    assert list(near_front(noisy_trials(), ["accuracy_delta_pp", "crossbars"]).trial) == [3]
    # an error without an interval marks nothing
    assert not pareto_front(noisy_trials(), ["crossbars", "accuracy_delta_pp"]).wins_within_noise.any()


def test_sensitivity_carries_the_interval_or_the_spread_over_repeats():
    frame = noisy_trials().assign(**{"hardware.weights.bits": [2, 4, 8, 8], "tuning.seed": [0, 0, 0, 1]})
    one = sensitivity(frame[frame["tuning.seed"] == 0], x="hardware.weights.bits", y=["accuracy_delta_pp"],
                      by=None, swept=["hardware.weights.bits"], reference={})
    assert list(one.accuracy_delta_pp_low) == [0.5, 1.5, -0.1]
    assert list(one.accuracy_delta_pp_high) == [3.5, 2.1, 0.1]
    rep = sensitivity(frame, x="hardware.weights.bits", y=["accuracy_delta_pp"], by=None,
                      swept=["hardware.weights.bits", "tuning.seed"], reference={"tuning.seed": 0},
                      repeat="tuning.seed")
    eight = rep[rep["hardware.weights.bits"] == 8].iloc[0]
    assert eight.trials == 2 and eight.accuracy_delta_pp == pytest.approx(0.05)
    assert eight.accuracy_delta_pp_std == pytest.approx(np.std([0.0, 0.1], ddof=1))
    assert eight.accuracy_delta_pp_high - eight.accuracy_delta_pp == pytest.approx(eight.accuracy_delta_pp_std)


def repeated_trials() -> pd.DataFrame:
    """Two configurations (4 and 8 weight bits) with three tuning seeds each, one of 8-bit's seeds illegal;
    crossbars (the mapping) the same for every seed, the loss and its interval not."""
    return pd.DataFrame({
        "trial": range(6), "hardware.weights.bits": [4, 4, 4, 8, 8, 8], "tuning.seed": [0, 1, 2, 0, 1, 2],
        "accuracy_delta_pp": [1.0, 2.0, 3.0, 0.2, 0.4, 9.0], "accuracy_delta_ci95_low": [0.5, 1.5, 2.5, 0.0, 0.1, 8.0],
        "accuracy_delta_ci95_high": [1.5, 2.5, 3.5, 0.4, 0.7, 10.0], "crossbars": [10, 10, 10, 20, 20, 20],
        "legal": [True, True, True, True, True, False], "state": "complete"})


def test_per_configuration_summarizes_the_usable_seeds_of_each_configuration():
    summary = per_configuration(repeated_trials(), ["hardware.weights.bits"]).set_index("hardware.weights.bits")
    assert list(summary.repeats) == [3, 2] and list(summary.trial_numbers) == ["0 1 2", "3 4"]
    assert summary.accuracy_delta_pp.tolist() == pytest.approx([2.0, 0.3])
    assert summary.accuracy_delta_pp_std.tolist() == pytest.approx([1.0, np.std([0.2, 0.4], ddof=1)])
    assert summary.accuracy_delta_pp_min.tolist() == [1.0, 0.2] and summary.accuracy_delta_pp_max.tolist() == [3.0, 0.4]
    assert summary.accuracy_delta_ci95_low.tolist() == pytest.approx([1.5, 0.05])  # averaged, no spread of its own
    assert "accuracy_delta_ci95_low_std" not in summary and "tuning.seed" not in summary
    assert summary.crossbars.tolist() == [10, 20] and "crossbars_std" not in summary  # the same for every seed


def test_a_configuration_wins_only_within_the_spread_of_its_seeds():
    """4 bits: 2.0 pp on 10 crossbars; 8 bits: 1.9 pp on 20, s.d. 0.05 over its seeds, interval low end 1.8:
    only 4 bits' seeds' spread (s.d. 1.0) makes 8 bits a win within noise."""
    summary = pd.DataFrame({"hardware.weights.bits": [4, 8], "accuracy_delta_pp": [2.0, 1.9],
                            "accuracy_delta_pp_std": [1.0, 0.05], "accuracy_delta_ci95_low": [1.95, 1.8],
                            "crossbars": [10, 20], "legal": True, "state": "complete"})
    front = pareto_front(summary, ["accuracy_delta_pp", "crossbars"])
    assert dict(zip(front["hardware.weights.bits"], front.wins_within_noise, strict=True)) == {4: False, 8: True}
    assert not pareto_front(summary.drop(columns="accuracy_delta_pp_std"),
                            ["accuracy_delta_pp", "crossbars"]).wins_within_noise.any()


def test_sensitivity_bars_a_drawn_chips_mean_by_their_spread_and_holds_a_figures_values():
    """A mean over drawn chips (evaluate.instances) gets ±1 s.d. bars; the 5th-percentile chip none; a figure's
    `held` values replace the reference (the noise-aware slice)."""
    frame = pd.DataFrame({
        "trial": range(4), "hardware.device.programming_sigma": [0.01, 0.05, 0.01, 0.05],
        "tuning.noise_aware": [False, False, True, True], "device.accuracy_delta_pp_mean": [1.0, 10.0, 0.5, 4.0],
        "device.accuracy_delta_pp_std": [0.5, 8.0, 0.25, 4.5], "device.accuracy_delta_pp_p95": [2.0, 26.0, 1.0, 15.0],
        "accuracy_delta_pp": 0.1, "legal": True, "state": "complete"})
    y = ["device.accuracy_delta_pp_mean", "device.accuracy_delta_pp_p95"]
    swept = ["hardware.device.programming_sigma", "tuning.noise_aware"]
    aware = sensitivity(frame, x=swept[0], y=y, by=None, swept=swept, reference={"tuning.noise_aware": True})
    assert list(aware["device.accuracy_delta_pp_mean"]) == [0.5, 4.0]
    assert list(aware["device.accuracy_delta_pp_mean_low"]) == [0.25, -0.5]
    assert list(aware["device.accuracy_delta_pp_mean_high"]) == [0.75, 8.5]
    assert "device.accuracy_delta_pp_p95_low" not in aware


def test_the_pareto_set_holds_a_configuration_once(tmp_path, monkeypatch):
    """NSGA-II's repeats of an evaluated point are trials of their own: pareto.csv held each of them."""
    from dse.explore import outputs
    from dse.explore.space import SearchSpace

    monkeypatch.setattr(outputs, "_pareto_figure", lambda *args: [])  # the tables only: fast

    space = SearchSpace({"hardware.weights.bits": (2, 4, 8), "hardware.crossbar.rows": (64, 128, 256)}, {})
    frame = trials_table()
    best = frame.loc[frame.accuracy_delta_pp[frame.legal & (frame.state == "complete")].idxmin()]
    retried = best.copy()
    retried[["state", "legal", "accuracy_delta_pp"]] = ["fail", False, np.nan]  # a worker died under it
    repeats = pd.DataFrame([retried, best, best]).assign(trial=[9, 10, 11])
    frame = pd.concat([frame, repeats], ignore_index=True).assign(error_message="", accuracy_compiled=0.9)
    outputs.write_outputs(tmp_path, frame, space, ["accuracy_delta_pp", "crossbars"], [], {})
    front = pd.read_csv(tmp_path / "pareto.csv")
    assert not front.duplicated(list(space.params)).any()
    assert best.trial in set(front.trial) and not {9, 10, 11} & set(front.trial)
    assert len(pd.read_csv(tmp_path / "trials.csv")) == len(frame)  # every trial keeps its row there
