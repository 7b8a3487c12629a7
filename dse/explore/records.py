"""The trials table: one row per finished trial, read back from the study, written as Parquet and CSV.

Columns, in order: ``trial``; every swept parameter under its dotted name (tied ones too); the metrics
(``accuracy_original``, ``accuracy_compiled``, ``accuracy_delta_pp``, ``agreement``, ``logits_rel_error``);
every field of the compile report's ``resources`` (nested ones as dotted names); then ``legal``,
``violations``, ``state`` (complete or fail), ``error_message`` (why it failed, or the violations) and
``compile_seconds``, ``evaluate_seconds``. A trial that failed for an infrastructure reason (left RUNNING in the
study, to run again on resume) is a ``fail`` row whose message says so; one still running or interrupted has no
row.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from dse.explore.space import SearchSpace
from dse.explore.study import RECORD, RETRY
from dse.explore.trial import METRICS, STATUS
from dse.files import atomic_write


def trials_frame(study: optuna.Study, space: SearchSpace) -> pd.DataFrame:
    rows = []
    resource_cols: list[str] = []
    for t in study.get_trials(deepcopy=False):
        retry = t.state == TrialState.RUNNING and RETRY in t.user_attrs
        if not (t.state in (TrialState.COMPLETE, TrialState.FAIL) or retry):
            continue  # still running, or interrupted: it runs (again) on resume
        record = dict(t.user_attrs.get(RECORD, {}))
        if retry:  # failed for an infrastructure reason
            record.update(state="fail", legal=False, error_message=f"{t.user_attrs[RETRY]} (runs again on resume)")
        row = {"trial": t.number}
        if all(k in t.params for k in space.params):
            row.update(space.settings(t.params))
        else:  # a point that failed before its parameters were all drawn: keep what is known
            row.update({k: t.params.get(k) for k in space.columns})
        row.update(record)
        row["state"] = "complete" if t.state == TrialState.COMPLETE else "fail"  # RUNNING: failed, retried
        row.setdefault("legal", False)
        row.setdefault("error_message", "" if t.state == TrialState.COMPLETE else "no result was recorded")
        for k in record:
            if k not in METRICS and k not in STATUS and k not in resource_cols:
                resource_cols.append(k)
        rows.append(row)
    columns = ["trial", *space.columns, *METRICS, *resource_cols, *STATUS]
    frame = pd.DataFrame(rows, columns=columns)
    frame["legal"] = frame["legal"].fillna(False).astype(bool)
    frame["error_message"] = frame["error_message"].fillna("").astype(str)
    return frame.sort_values("trial").reset_index(drop=True)


def write_table(frame: pd.DataFrame, path_without_suffix: Path) -> list[Path]:
    """`<path>.parquet` and `<path>.csv`, each written atomically."""
    csv = path_without_suffix.with_suffix(".csv")
    parquet = path_without_suffix.with_suffix(".parquet")
    atomic_write(csv, lambda p: frame.to_csv(p, index=False))
    atomic_write(parquet, lambda p: frame.to_parquet(p, index=False))
    return [parquet, csv]
