"""The data behind the figures: the Pareto set and the sensitivity curves. Pure functions on the trials
table that tests check; dse.explore.plots only draws what these return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def non_dominated(values: np.ndarray) -> np.ndarray:
    """Mask of the rows no other row dominates (all objectives minimized): row q dominates p when q <= p in
    every objective and q < p in at least one. Equal rows do not dominate each other: both stay."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError("values must be (trials, objectives)")
    keep = np.ones(len(values), dtype=bool)
    for i, p in enumerate(values):
        dominated = np.all(values <= p, axis=1) & np.any(values < p, axis=1)
        keep[i] = not dominated.any()
    return keep


def usable(trials: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """Complete, legal trials with a finite value in every objective: the ones a design can be chosen from."""
    ok = (trials["state"] == "complete") & trials["legal"].astype(bool)
    if any(k not in trials for k in objectives):  # no trial completed: the column was never written
        return trials.iloc[:0].assign(**{k: pd.Series(dtype=float) for k in objectives if k not in trials})
    for k in objectives:
        ok &= np.isfinite(pd.to_numeric(trials[k], errors="coerce"))
    return trials[ok]


def pareto_front(trials: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """The non-dominated usable trials, sorted by the objectives; column `wins_within_noise` (see `noise`)."""
    ok = usable(trials, objectives)
    if ok.empty:
        return ok.assign(wins_within_noise=pd.Series(dtype=bool))
    keep = non_dominated(ok[list(objectives)].to_numpy(dtype=float))
    front = ok[keep].assign(wins_within_noise=noise(ok, objectives)[keep])
    return front.sort_values(list(objectives)).reset_index(drop=True)


ERROR_LOW = {"accuracy_delta_pp": "accuracy_delta_ci95_low"}  # an error objective's 95 % interval's low end


def noise(points: pd.DataFrame, objectives: Sequence[str]) -> np.ndarray:
    """Per usable trial: whether another trial, at its error's 95 % interval's low end (as good as the test
    samples allow it to be), would be at least as good in every objective. True for a point of the front that
    wins only by what one test set's luck can give; all False for an error without an interval."""
    low = ERROR_LOW.get(objectives[0])
    if low is None or low not in points or points[low].isna().all():
        return np.zeros(len(points), dtype=bool)
    values = points[list(objectives)].to_numpy(dtype=float)
    lucky = values.copy()
    lucky[:, 0] = points[low].to_numpy(dtype=float)
    out = np.zeros(len(points), dtype=bool)
    for i, p in enumerate(values):
        rivals = np.all(lucky <= p, axis=1) & np.any(values != p, axis=1)
        rivals[i] = False
        out[i] = bool(rivals.any())
    return out


def near_front(trials: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """The usable trials off the front that would be on it at their error's 95 % interval's low end: as good
    as the front within the noise of the test set (empty for an error without an interval)."""
    ok = usable(trials, objectives)
    low = ERROR_LOW.get(objectives[0])
    if ok.empty or low is None or low not in ok or ok[low].isna().all():
        return ok.iloc[:0]
    values = ok[list(objectives)].to_numpy(dtype=float)
    front = non_dominated(values)
    lucky = values.copy()
    lucky[:, 0] = ok[low].to_numpy(dtype=float)
    keep = [not front[i] and not (np.all(values <= q, axis=1) & np.any(values < q, axis=1)).any()
            for i, q in enumerate(lucky)]
    return ok[np.array(keep, dtype=bool)]


def reference_point(space_params: Mapping[str, Sequence[Any]], base: Mapping[str, Any]) -> dict[str, Any]:
    """For each searched parameter, the searched value at or nearest the preset's own: where a sensitivity
    curve holds the other parameters ("around the preset")."""
    ref = {}
    for path, values in space_params.items():
        b = base.get(path)
        if b in values:
            ref[path] = b
        elif _numeric(b) and all(_numeric(v) for v in values):
            ref[path] = min(values, key=lambda v: (abs(v - b), v))
        else:
            ref[path] = values[0]
    return ref


def sensitivity(
    trials: pd.DataFrame,
    *,
    x: str,
    y: Sequence[str],
    by: str | None,
    swept: Sequence[str],
    reference: Mapping[str, Any],
    others: str = "reference",
    repeat: str | None = None,
) -> pd.DataFrame:
    """One curve per value of `by`: `y` against `x`, the other swept parameters held at `reference`
    (``others="reference"``) or the best (lowest first y) over them (``others="best"``). `repeat`: the swept
    path that only repeats a configuration (the tuning seed of ``study.repeats``): averaged over, never held.

    Returns columns [by (when given), x, *y, "trials"], sorted, and the bars to draw, ``<y>_low`` and
    ``<y>_high``: mean -/+ one standard deviation over the repeats where a point has several (``<y>_std``),
    else an error's 95 % interval (`ERROR_LOW`). Only usable trials count.
    """
    data = usable(trials, y)
    if others == "reference":
        for path in swept:
            if path in (x, by, repeat) or path not in reference:
                continue
            data = data[data[path].map(lambda v, r=reference[path]: _same(v, r))]
    elif others != "best":
        raise ValueError(f"others must be reference or best (got {others!r})")
    keys = [by, x] if by else [x]
    if data.empty:
        return pd.DataFrame(columns=[*keys, *y, "trials"])
    if others == "best":  # the best configuration, its repeats averaged
        config = [p for p in swept if p != repeat]
        means = data.groupby(config, dropna=False, sort=True)
        best = means[list(y)].mean().reset_index().sort_values(list(y)).groupby(keys, dropna=False).head(1)
        data = data.merge(best[config], on=config)
    grouped = data.groupby(keys, dropna=False, sort=True)
    out = grouped[list(y)].mean()
    out["trials"] = grouped.size()
    for col in y:
        low = ERROR_LOW.get(col)
        if repeat is not None and (out["trials"] > 1).any():
            spread = grouped[col].std(ddof=1).fillna(0.0)
            out[f"{col}_std"] = spread
            out[f"{col}_low"], out[f"{col}_high"] = out[col] - spread, out[col] + spread
        elif low is not None and low in data and data[low].notna().any():
            out[f"{col}_low"] = grouped[low].mean()
            out[f"{col}_high"] = grouped[low.replace("_low", "_high")].mean()
    return out.reset_index().sort_values(keys).reset_index(drop=True)


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None or (isinstance(a, float) and np.isnan(a)):
        return (a is None or (isinstance(a, float) and np.isnan(a))) and b is None
    return bool(a == b)
