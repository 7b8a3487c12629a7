"""The data behind the figures: the Pareto set and the sensitivity curves. Pure functions on the trials
table that tests check; dse.explore.plots only draws what these return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dse.explore.repeats import per_configuration


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


def distinct(trials: pd.DataFrame, configuration: Sequence[str]) -> pd.DataFrame:
    """One row per configuration (its values of the `configuration` columns): its first complete legal trial,
    else its first. NSGA-II asks again for points it has evaluated, and is told their result again: a design
    is one row of the Pareto set, not one per time it was asked for."""
    keys = [c for c in configuration if c in trials]
    if not keys or trials.empty:
        return trials
    chosen = ~((trials["state"] == "complete") & trials["legal"].astype(bool))
    order = trials.assign(_unchosen=chosen.to_numpy()).sort_values(["_unchosen", "trial"], kind="stable")
    return order.drop_duplicates(keys).drop(columns="_unchosen").sort_values("trial", kind="stable")


def pareto_front(trials: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """The non-dominated usable trials, sorted by the objectives; column `wins_within_noise` (see `noise`)."""
    ok = usable(trials, objectives)
    if ok.empty:
        return ok.assign(wins_within_noise=pd.Series(dtype=bool))
    keep = non_dominated(ok[list(objectives)].to_numpy(dtype=float))
    front = ok[keep].assign(wins_within_noise=noise(ok, objectives)[keep])
    return front.sort_values(list(objectives)).reset_index(drop=True)


ERROR_LOW = {"accuracy_delta_pp": "accuracy_delta_ci95_low"}  # an error objective's 95 % interval's low end
# a mean over drawn chips (evaluate.instances) and the column of its standard deviation over them: its bars
SPREAD = {"device.accuracy_delta_pp_mean": "device.accuracy_delta_pp_std"}


def error_low(points: pd.DataFrame, error: str) -> np.ndarray | None:
    """Each point's error at the low end of its noise: its 95 % interval's low end (`ERROR_LOW`: the test
    set's luck) and, for a configuration averaged over tuning seeds (`repeats.per_configuration`: a column
    ``<error>_std``), its mean less one standard deviation over the seeds, whichever is lower; None for an
    error with neither."""
    lows = []
    low = ERROR_LOW.get(error)
    if low is not None and low in points and points[low].notna().any():
        lows.append(points[low].to_numpy(dtype=float))
    if f"{error}_std" in points:
        lows.append((points[error] - points[f"{error}_std"]).to_numpy(dtype=float))
    return np.fmin.reduce(lows) if lows else None


def noise(points: pd.DataFrame, objectives: Sequence[str]) -> np.ndarray:
    """Per usable point: whether another one, at its error's low end (`error_low`: as good as the noise allows
    it to be), would be at least as good in every objective. True for a point of the front that wins only by
    what one test set's (or one tuning seed's) luck can give; all False for an error without a noise."""
    low = error_low(points, objectives[0])
    if low is None:
        return np.zeros(len(points), dtype=bool)
    values = points[list(objectives)].to_numpy(dtype=float)
    lucky = values.copy()
    lucky[:, 0] = low
    out = np.zeros(len(points), dtype=bool)
    for i, p in enumerate(values):
        rivals = np.all(lucky <= p, axis=1) & np.any(values != p, axis=1)
        rivals[i] = False
        out[i] = bool(rivals.any())
    return out


def near_front(trials: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """The usable points off the front that would be on it at their error's low end (`error_low`): as good as
    the front within the noise (empty for an error without one)."""
    ok = usable(trials, objectives)
    low = error_low(ok, objectives[0]) if not ok.empty else None
    if low is None:
        return ok.iloc[:0]
    values = ok[list(objectives)].to_numpy(dtype=float)
    front = non_dominated(values)
    lucky = values.copy()
    lucky[:, 0] = low
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
    ``<y>_high``: with `repeat`, the configuration's mean -/+ one standard deviation over its seeds
    (``<y>_std``, `repeats.per_configuration`), else a mean over drawn chips -/+ their standard deviation
    (`SPREAD`), else an error's 95 % interval (`ERROR_LOW`). Only usable
    trials count.
    """
    data = usable(trials, y)
    if repeat is not None:  # one row per configuration: its seeds' mean, <y>_std their spread
        data = per_configuration(data, [p for p in swept if p != repeat])
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
    if others == "best":  # the best configuration (by its seeds' mean where repeated) per point of the curve
        data = data.sort_values(list(y), kind="stable").groupby(keys, dropna=False).head(1)
    grouped = data.groupby(keys, dropna=False, sort=True)
    out = grouped[list(y)].mean()
    out["trials"] = grouped["repeats"].sum() if repeat is not None else grouped.size()
    for col in y:
        low = ERROR_LOW.get(col)
        if repeat is not None:  # a result the seed does not change (the energy of a mapping) has no bars
            if f"{col}_std" not in data:
                continue
            out[f"{col}_std"] = grouped[f"{col}_std"].mean()
            out[f"{col}_low"], out[f"{col}_high"] = out[col] - out[f"{col}_std"], out[col] + out[f"{col}_std"]
        elif col in SPREAD and SPREAD[col] in data and data[SPREAD[col]].notna().any():
            spread = grouped[SPREAD[col]].mean()
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
