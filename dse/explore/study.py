"""The study driver: Optuna ask/tell in our code, trials on an executor, every result stored as it arrives.

The study lives in SQLite (``study.db`` in the run folder) and each trial is told the moment it ends, so a
sweep killed at any point loses no finished trial. On resume:

- finished trials (complete or failed) are kept and not run again;
- trials the killed sweep had started (still ``RUNNING`` in the database) run again under their own trial
  number, with their own parameters (for the grid, their own grid point), so each point appears once;
- trials that failed for a reason outside them (their Ray worker or raylet died: `TrialOutcome.retry`) were
  left ``RUNNING`` with the reason in their ``retry`` attribute, and run again the same way;
- only then are new trials asked for, until the grid is covered or ``study.n_trials`` is reached.

A trial that fails for a reason of its own (constraints no strategy can meet, a crash in the compile,
non-finite metrics) is told ``FAIL`` with its reason in the trial's ``record``, stays failed on resume, and the
sweep goes on. The study names its objectives (`Study.set_metric_names`), so optuna-dashboard shows them.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from dse.config.schemas import Sampler
from dse.explore.executors import Executor
from dse.explore.space import SearchSpace
from dse.explore.trial import TrialOutcome, TrialSpec

log = logging.getLogger(__name__)
# Optuna's own attribute names; ours: the trial's flat row, the constraint NSGA-II reads, and why a trial left
# RUNNING failed for a reason outside it (it runs again on resume)
RECORD, CONSTRAINT, RETRY = "record", "constraint", "retry"


@dataclass(frozen=True)
class StudyOptions:
    name: str
    sampler: Sampler = "grid"
    objectives: tuple[str, ...] = ("accuracy_delta_pp", "crossbars")
    n_trials: int | None = None
    population_size: int = 16
    seed: int = 0


@dataclass
class DriveStats:
    ran: int = 0  # trials run by this call
    failed: int = 0  # of which failed (for a reason of their own or, `retry`, of the infrastructure)
    retry: int = 0  # of which failed for an infrastructure reason: they run again on resume
    resumed: int = 0  # interrupted trials run again
    kept: int = 0  # finished trials found in the study and kept
    kept_failed: int = 0  # of which failed
    total: int = 0  # trials the study holds when complete
    seconds: float = 0.0  # from the first submission to the last result


def open_study(path: Path, options: StudyOptions, space: SearchSpace) -> optuna.Study:
    """Create or load the study; `dse.explore.rundir.check_study_file` has checked an existing file."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(
        study_name=options.name, storage=storage, sampler=make_sampler(options, space),
        directions=["minimize"] * len(options.objectives), load_if_exists=True,
    )
    if study.metric_names != list(options.objectives):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(options.objectives))
    return study


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its stopping rule: it calls `study.stop()`, which only works inside
    `study.optimize`; our driver counts the grid itself."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        pass


def make_sampler(options: StudyOptions, space: SearchSpace) -> optuna.samplers.BaseSampler:
    if options.sampler == "grid":
        return GridSampler({k: list(v) for k, v in space.params.items()}, seed=options.seed)
    if options.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=options.population_size, seed=options.seed)
    raise ValueError(f"unknown sampler {options.sampler}")


def target_trials(options: StudyOptions, space: SearchSpace) -> int:
    if options.sampler == "grid":
        return space.size if options.n_trials is None else min(options.n_trials, space.size)
    return options.n_trials if options.n_trials is not None else space.size


def missing_trials(study: optuna.Study, options: StudyOptions, space: SearchSpace) -> int:
    """Trials still to run: interrupted ones and those never asked for (none once every point is evaluated)."""
    trials = study.get_trials(deepcopy=False)
    stale = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    evaluated = {_key(t.params) for t in trials if t.state.is_finished()}
    new = 0 if len(evaluated) >= space.size else max(0, target_trials(options, space) - len(trials))
    return stale + new


def drive(
    study: optuna.Study,
    space: SearchSpace,
    options: StudyOptions,
    executor: Executor,
    build: Callable[[int, dict[str, Any]], TrialSpec | TrialOutcome],
    *,
    on_result: Callable[[DriveStats, TrialOutcome | None], None] | None = None,
) -> DriveStats:
    """Run the study's missing trials on `executor`. `build` turns a point into a TrialSpec, or into a
    failed TrialOutcome when the point cannot even be built (an illegal hardware combination)."""
    trials = study.get_trials(deepcopy=False)
    stale = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    stats = DriveStats(kept=sum(t.state.is_finished() for t in trials),
                       kept_failed=sum(t.state == TrialState.FAIL for t in trials), resumed=len(stale),
                       total=max(target_trials(options, space), len(trials)))
    budget = stats.total - len(trials)  # new trials to ask for
    if on_result:
        on_result(stats, None)
    # NSGA-II draws a trial's point from the trials complete when it is asked: it asks a generation's trials
    # together, once every earlier trial is told, so that which points it draws never depends on which trial
    # ended first (the number of workers). The grid's draws depend only on the trials asked before.
    batch = options.population_size if options.sampler == "nsga2" else 1
    queue = [_again(study, space, t) for t in stale]
    running: dict[int, Trial] = {}
    # NSGA-II proposes points it has already seen; the compile is deterministic, so their result is reused
    seen = {_key(t.params): t.user_attrs[RECORD] for t in trials if t.state.is_finished() and RECORD in t.user_attrs}
    # ... and twice in one generation: the later trials of a point in flight wait for its result
    twins: dict[tuple, list[tuple[Trial, dict[str, Any]]]] = {}
    start = time.perf_counter()
    while True:
        while len(running) < executor.capacity:
            # once every point is evaluated NSGA-II can only repeat them: study.n_trials=10**11 over a space of
            # two points asked (and stored) trials for ever
            if not queue and budget > 0 and not (batch > 1 and running) and len(seen) < space.size:
                n = min(batch, budget)
                budget -= n
                queue = [_suggest(space, study.ask()) for _ in range(n)]
            if not queue:
                break
            trial, point = queue.pop(0)
            key = _key(point)
            if key in seen:
                _reuse(study, trial, seen[key], options, stats, on_result)
                continue
            if key in twins:  # in flight: this trial takes its result rather than compile it again
                twins[key].append((trial, point))
                continue
            job = build(trial.number, point)
            if isinstance(job, TrialOutcome):
                _tell(study, trial, job, options, stats, on_result)
            else:
                running[trial.number] = trial
                twins[key] = []
                executor.submit(job)
        if not running:
            break
        for outcome in executor.wait():
            trial = running.pop(outcome.number)
            record = _tell(study, trial, outcome, options, stats, on_result)
            key = _key(trial.params)
            waiting = twins.pop(key, [])
            if outcome.retry:  # no result to share: the first of its twins runs the point
                queue[:0] = waiting
                continue
            seen[key] = record
            for twin, _ in waiting:
                _reuse(study, twin, record, options, stats, on_result)
    stats.seconds = time.perf_counter() - start
    if budget > 0:
        log.warning("all %d points of the search space are evaluated: the sweep stops after %d trials, as more could "
                    "only repeat them", space.size, len(study.get_trials(deepcopy=False)))
        stats.total -= budget
    return stats


def _reuse(study: optuna.Study, trial: Trial, record: dict[str, Any], options: StudyOptions, stats: DriveStats,
           on_result: Callable[[DriveStats, TrialOutcome | None], None] | None) -> None:
    """Tell `trial`, asked for a point already evaluated, that point's result (NSGA-II needs every trial told)."""
    record = dict(record)
    log.info("trial %d repeats an evaluated point: its result is reused", trial.number)
    _tell(study, trial, TrialOutcome(trial.number, str(record.get("state", "complete")), record), options, stats,
          on_result)


def _suggest(space: SearchSpace, trial: Trial) -> tuple[Trial, dict[str, Any]]:
    return trial, {k: trial.suggest_categorical(k, list(v)) for k, v in space.params.items()}


def _again(study: optuna.Study, space: SearchSpace, frozen: FrozenTrial) -> tuple[Trial, dict[str, Any]]:
    """An interrupted trial (or one whose worker died) under its own number, with its own point."""
    why = frozen.user_attrs.get(RETRY)
    log.info("trial %d %s: running it again", frozen.number, f"failed ({why})" if why else "was interrupted")
    return _suggest(space, Trial(study, frozen._trial_id))


def _tell(study: optuna.Study, trial: Trial, outcome: TrialOutcome, options: StudyOptions, stats: DriveStats,
          on_result: Callable[[DriveStats, TrialOutcome | None], None] | None) -> dict[str, Any]:
    """Store the trial's record and tell Optuna; returns the record as stored. A trial that failed for an
    infrastructure reason is not told: it stays RUNNING, with the reason, and runs again on resume."""
    record = _plain(outcome.record)
    if outcome.retry:
        trial.set_user_attr(RETRY, outcome.error_message)
        log.warning("trial %d failed (%s): it runs again when the sweep is resumed", trial.number,
                    outcome.error_message)
        stats.ran, stats.failed, stats.retry = stats.ran + 1, stats.failed + 1, stats.retry + 1
        if on_result:
            on_result(stats, outcome)
        return record
    values = None
    if outcome.state == "complete":
        values, reason = _values(outcome.record, options.objectives)
        if values is None:
            record.update(state="fail", error_message=reason)
    if values is None:
        outcome.state = "fail"
        record["legal"] = False
    trial.set_user_attr(RECORD, record)
    # NSGA-II prefers legal trials: a value > 0 is infeasible (the number of violations)
    trial.set_constraint(CONSTRAINT, 0.0 if record.get("legal") else float(max(1, int(record.get("violations") or 1))))
    if values is None:
        log.warning("trial %d failed: %s", trial.number, record.get("error_message", ""))
        study.tell(trial, state=TrialState.FAIL)
        stats.failed += 1
    else:
        study.tell(trial, values)
    stats.ran += 1
    if on_result:
        on_result(stats, outcome)
    return record


def _key(point: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in point.items()))


def _values(record: dict[str, Any], objectives: Sequence[str]) -> tuple[list[float] | None, str]:
    """The objective values of a compiled trial, or None and why it is not a usable result: a NaN or Inf
    anywhere in its numbers (a network whose outputs are not finite is never a free design), or an objective
    it does not have."""
    numbers = {k: _scalar(v) for k, v in record.items() if _is_number(_scalar(v))}
    bad = [k for k, v in numbers.items() if not math.isfinite(v)]
    if bad:
        return None, f"non-finite result ({', '.join(f'{k}={numbers[k]}' for k in bad[:4])}): not a usable trial"
    missing = [k for k in objectives if not _finite(record.get(k))]
    if missing:
        return None, f"objective {', '.join(missing)} is not a finite result column (have: {', '.join(record)})"
    return [float(record[k]) for k in objectives], ""


def _scalar(value: Any) -> Any:
    """A numpy scalar as the Python value."""
    return value.item() if hasattr(value, "item") and callable(value.item) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe values (numpy scalars to Python) for Optuna's storage."""
    out = {}
    for k, v in record.items():
        v = _scalar(v)
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out
