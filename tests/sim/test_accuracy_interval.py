"""The accuracy loss's 95 % interval (paired bootstrap): against the normal approximation of the paired
difference's distribution, and the cases where the two networks answer alike."""

import numpy as np

from dse.sim.evaluate import compare, paired_delta_ci95


def _outcomes(n: int, lost: int, won: int, both_right: int) -> tuple[np.ndarray, np.ndarray]:
    original = np.zeros(n, bool)
    compiled = np.zeros(n, bool)
    original[:lost] = True  # only the original right
    compiled[lost:lost + won] = True  # only the compiled right
    original[lost + won:lost + won + both_right] = compiled[lost + won:lost + won + both_right] = True
    return original, compiled


def test_interval_matches_the_normal_approximation_of_the_paired_difference():
    n, lost, won = 1000, 40, 10
    low, high = paired_delta_ci95(*_outcomes(n, lost, won, 900))
    p, q = lost / n, won / n
    delta, sd = (p - q) * 100, np.sqrt((p + q - (p - q) ** 2) / n) * 100
    assert low < delta < high
    assert abs(low - (delta - 1.96 * sd)) < 0.15 and abs(high - (delta + 1.96 * sd)) < 0.15


def test_interval_is_seeded_and_needs_discordant_samples():
    a = _outcomes(500, 3, 2, 480)
    assert paired_delta_ci95(*a) == paired_delta_ci95(*a)
    # the same accuracies on both sides, answered alike sample by sample: nothing to resample
    assert paired_delta_ci95(*_outcomes(500, 0, 0, 480)) == [0.0, 0.0]


def test_compare_reports_the_interval_only_with_labels():
    rng = np.random.default_rng(1)
    original = rng.normal(size=(200, 10))
    compiled = original + rng.normal(scale=0.5, size=original.shape)
    labels = original.argmax(axis=1)
    out = compare(original, compiled, labels)
    low, high = out["accuracy_delta_ci95"]
    assert low <= out["accuracy_delta_pp"] <= high and low < high
    assert compare(original, compiled, None)["accuracy_delta_ci95"] is None
