"""`study.repeats=N`: every configuration compiled with N tuning seeds (the searched `tuning.seed`,
`space.REPEAT`). A reader compares configurations, not seeds: the Pareto set, the Pareto figure and
``configurations.csv`` hold one row per configuration, its seeds' mean with their spread; ``trials.csv``
keeps every seed's row."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dse.explore.space import REPEAT
from dse.explore.trial import METRICS, STATUS

SPREAD = ("std", "min", "max")  # the summary's columns beside each mean: <column>_std, _min, _max


def spread_columns(trials: pd.DataFrame, configuration: Sequence[str]) -> list[str]:
    """The numeric result columns whose spread over the seeds the summary gives: the metrics (their 95 %
    intervals excepted: those are averaged) and any other result that differs between the seeds of one
    configuration (a spiking chip's activity). A mapping's resources, the same for every seed, appear once."""
    usable = _usable(trials)
    out = []
    for c in _numeric(trials, configuration):
        if "_ci95_" in c or c.endswith("_seconds"):
            continue
        varies = usable.groupby(list(configuration), dropna=False)[c].nunique(dropna=False).gt(1).any()
        if c in METRICS or varies:
            out.append(c)
    return out


def per_configuration(trials: pd.DataFrame, configuration: Sequence[str]) -> pd.DataFrame:
    """One row per configuration (its values of the `configuration` paths, the seed left out) over its complete
    legal trials: every numeric result column's mean under its own name; for `spread_columns`, ``<col>_std``
    (the sample standard deviation over the seeds, 0 for one seed), ``<col>_min`` and ``<col>_max``;
    ``repeats`` (the seeds averaged) and ``trial_numbers`` ("3 21 39"). Rows are ``complete`` and ``legal``,
    so the Pareto functions take them as they take trials. A configuration none of whose seeds compiled to a
    legal network has no row."""
    keys = list(configuration)
    usable = _usable(trials)
    numeric = _numeric(trials, keys)
    spread = spread_columns(trials, keys)
    if usable.empty:
        return pd.DataFrame(columns=[*keys, *numeric, *(f"{c}_{s}" for c in spread for s in SPREAD), "repeats",
                                     "trial_numbers", "state", "legal"])
    grouped = usable.groupby(keys, dropna=False, sort=True)
    out = grouped[numeric].mean()
    for c in spread:
        out[f"{c}_std"] = grouped[c].std(ddof=1).fillna(0.0)
        out[f"{c}_min"], out[f"{c}_max"] = grouped[c].min(), grouped[c].max()
    out["repeats"] = grouped.size()
    out["trial_numbers"] = grouped["trial"].agg(lambda t: " ".join(str(int(n)) for n in sorted(t)))
    return out.reset_index().assign(state="complete", legal=True)


def _usable(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[(trials["state"] == "complete") & trials["legal"].astype(bool)]


def _numeric(trials: pd.DataFrame, configuration: Sequence[str]) -> list[str]:
    """The numeric result columns: neither the trial number, a parameter (the seed included), nor a status
    field (the timings excepted: they are results too)."""
    skip = {"trial", REPEAT, *configuration, *(s for s in STATUS if not s.endswith("_seconds"))}
    return [c for c in trials.columns if c not in skip and pd.api.types.is_numeric_dtype(trials[c])
            and not pd.api.types.is_bool_dtype(trials[c])]
