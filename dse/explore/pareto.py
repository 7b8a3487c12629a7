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
    for k in objectives:
        ok &= np.isfinite(pd.to_numeric(trials[k], errors="coerce"))
    return trials[ok]


def pareto_front(trials: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """The non-dominated usable trials, sorted by the objectives."""
    ok = usable(trials, objectives)
    if ok.empty:
        return ok.copy()
    front = ok[non_dominated(ok[list(objectives)].to_numpy(dtype=float))]
    return front.sort_values(list(objectives)).reset_index(drop=True)


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
) -> pd.DataFrame:
    """One curve per value of `by`: `y` against `x`, the other swept parameters held at `reference`
    (``others="reference"``) or the best (lowest first y) over them (``others="best"``).

    Returns columns [by (when given), x, *y, "trials"], sorted; only usable trials count.
    """
    data = usable(trials, y)
    if others == "reference":
        for path in swept:
            if path in (x, by) or path not in reference:
                continue
            data = data[data[path].map(lambda v, r=reference[path]: _same(v, r))]
    elif others != "best":
        raise ValueError(f"others must be reference or best (got {others!r})")
    keys = [by, x] if by else [x]
    if data.empty:
        return pd.DataFrame(columns=[*keys, *y, "trials"])
    if others == "best":
        best = data.sort_values(list(y)).groupby(keys, dropna=False, sort=True).head(1)
        out = best[[*keys, *y]].copy()
        out["trials"] = data.groupby(keys, dropna=False).size().reindex(
            pd.MultiIndex.from_frame(out[keys]) if by else out[x]).to_numpy()
    else:
        grouped = data.groupby(keys, dropna=False, sort=True)
        out = grouped[list(y)].mean()
        out["trials"] = grouped.size()
        out = out.reset_index()
    return out.sort_values(keys).reset_index(drop=True)


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None or (isinstance(a, float) and np.isnan(a)):
        return (a is None or (isinstance(a, float) and np.isnan(a))) and b is None
    return bool(a == b)
