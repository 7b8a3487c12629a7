"""The study driver: ask/tell over a grid or NSGA-II, failures recorded, interrupted studies resumed.

A fake executor stands in for compile() so that these run in milliseconds; the end-to-end tests compile.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
from optuna.trial import TrialState

from dse.explore.records import trials_frame
from dse.explore.space import SearchSpace
from dse.explore.study import RECORD, StudyOptions, drive, missing_trials, open_study
from dse.explore.trial import TrialOutcome, TrialSpec
from dse.hardware.spec import HardwareSpec
from dse.tune.options import TuneOptions

SPACE = SearchSpace({"hardware.weights.bits": (2, 4, 8), "hardware.crossbar.rows": (64, 256)},
                    {"hardware.crossbar.cols": "hardware.crossbar.rows"})


class FakeExecutor:
    """Two trials in flight; the 'compile' is a formula; optionally dies after `die_after` results."""

    def __init__(self, capacity: int = 2, die_after: int | None = None, fail_bits: int | None = None) -> None:
        self.capacity, self.die_after, self.fail_bits = capacity, die_after, fail_bits
        self.queue: list[TrialSpec] = []
        self.done = 0

    @property
    def pending(self) -> int:
        return len(self.queue)

    def submit(self, spec: TrialSpec) -> None:
        self.queue.append(spec)

    def wait(self) -> list[TrialOutcome]:
        if self.die_after is not None and self.done >= self.die_after:
            raise KeyboardInterrupt  # the sweep dies with trials in flight
        spec = self.queue.pop(0)
        self.done += 1
        bits, rows = spec.params["hardware.weights.bits"], spec.params["hardware.crossbar.rows"]
        if bits == self.fail_bits:
            return [TrialOutcome(spec.number, "fail", {"legal": False, "state": "fail", "error_message": "boom"},
                                 "boom")]
        record = {"accuracy_delta_pp": 8.0 / bits + rows / 1000, "crossbars": 4096 // rows, "legal": True,
                  "violations": 0, "state": "complete", "error_message": "", "compile_seconds": 0.1}
        return [TrialOutcome(spec.number, "complete", record)]


def build(number: int, point: dict) -> TrialSpec | TrialOutcome:
    return TrialSpec(number, SPACE.settings(point), HardwareSpec(), "split", TuneOptions())


def points(frame) -> Counter:
    return Counter(zip(frame["hardware.weights.bits"], frame["hardware.crossbar.rows"], strict=True))


GRID = StudyOptions(name="t", sampler="grid")


def test_grid_runs_every_point_once_and_records_failures(tmp_path):
    study = open_study(tmp_path / "s.db", GRID, SPACE)
    stats = drive(study, SPACE, GRID, FakeExecutor(fail_bits=4), build)
    frame = trials_frame(study, SPACE)
    assert stats.ran == 6 and stats.failed == 2
    assert points(frame) == Counter({(b, r): 1 for b in (2, 4, 8) for r in (64, 256)})
    assert (frame["hardware.crossbar.cols"] == frame["hardware.crossbar.rows"]).all()
    failed = frame[frame.state == "fail"]
    assert set(failed["hardware.weights.bits"]) == {4} and set(failed.error_message) == {"boom"}


def test_a_point_that_cannot_be_built_is_a_failed_trial(tmp_path):
    def bad_build(number: int, point: dict) -> TrialSpec | TrialOutcome:
        if point["hardware.crossbar.rows"] == 64:
            return TrialOutcome(number, "fail", {"legal": False, "state": "fail", "error_message": "too narrow"})
        return build(number, point)

    study = open_study(tmp_path / "s.db", GRID, SPACE)
    drive(study, SPACE, GRID, FakeExecutor(), bad_build)
    frame = trials_frame(study, SPACE)
    assert len(frame) == 6
    assert set(frame.loc[frame.state == "fail", "error_message"]) == {"too narrow"}


def test_resume_keeps_finished_trials_and_reruns_interrupted_ones_under_their_number(tmp_path):
    path = tmp_path / "s.db"
    study = open_study(path, GRID, SPACE)
    with pytest.raises(KeyboardInterrupt):
        drive(study, SPACE, GRID, FakeExecutor(die_after=3), build)
    before = {t.number: t for t in study.get_trials() if t.state == TrialState.COMPLETE}
    running = [t.number for t in study.get_trials() if t.state == TrialState.RUNNING]
    assert len(before) == 3 and running

    study = open_study(path, GRID, SPACE)  # a new process opens the same database
    stats = drive(study, SPACE, GRID, FakeExecutor(), build)
    assert stats.kept == 3 and stats.resumed == len(running) and stats.ran == 3
    frame = trials_frame(study, SPACE)
    assert len(frame) == 6 and set(frame.state) == {"complete"}
    assert points(frame) == Counter({(b, r): 1 for b in (2, 4, 8) for r in (64, 256)})
    after = {t.number: t for t in study.get_trials()}
    for number, t in before.items():  # not run again
        assert after[number].datetime_complete == t.datetime_complete
        assert after[number].user_attrs[RECORD] == t.user_attrs[RECORD]
    assert set(running) <= set(after)

    again = drive(open_study(path, GRID, SPACE), SPACE, GRID, FakeExecutor(), build)
    assert again.ran == 0 and again.kept == 6


def test_nsga2_runs_n_trials_and_extends_on_resume(tmp_path):
    options = StudyOptions(name="p", sampler="nsga2", n_trials=8, population_size=4)
    study = open_study(tmp_path / "p.db", options, SPACE)
    stats = drive(study, SPACE, options, FakeExecutor(), build)
    assert stats.ran == 8
    more = StudyOptions(name="p", sampler="nsga2", n_trials=11, population_size=4)
    stats = drive(open_study(tmp_path / "p.db", more, SPACE), SPACE, more, FakeExecutor(), build)
    assert stats.ran == 3 and stats.kept == 8
    assert len(trials_frame(study, SPACE)) == 11


def test_nsga2_stops_once_every_point_is_evaluated(tmp_path, caplog):
    """study.n_trials far above the space's size asked (and stored) repeats of its points: 10**11 ran for ever."""
    space = SearchSpace({"hardware.weights.bits": (2, 4), "hardware.crossbar.rows": (64,)}, {})
    options = StudyOptions(name="p", sampler="nsga2", n_trials=40, population_size=4)
    study = open_study(tmp_path / "p.db", options, space)
    stats = drive(study, space, options, FakeExecutor(), build)
    assert points(trials_frame(study, space)).keys() == {(2, 64), (4, 64)}
    assert stats.ran == len(study.get_trials()) <= 8 and stats.total == stats.ran
    assert "all 2 points of the search space are evaluated" in caplog.text
    assert missing_trials(study, options, space) == 0  # a resume prepares nothing, runs nothing
    assert drive(open_study(tmp_path / "p.db", options, space), space, options, FakeExecutor(), build).ran == 0


class NonFiniteExecutor(FakeExecutor):
    """Trials at 2-bit weights compile to a network whose outputs are NaN: accuracy at chance, logit error NaN."""

    def wait(self) -> list[TrialOutcome]:
        [outcome] = super().wait()
        if outcome.record["accuracy_delta_pp"] > 3.0:  # the 2-bit points
            outcome.record.update(logits_rel_error=float("nan"), energy_pj=float("inf"))
        return [outcome]


def test_a_trial_with_non_finite_metrics_is_failed_with_its_reason_never_legal(tmp_path):
    study = open_study(tmp_path / "s.db", GRID, SPACE)
    stats = drive(study, SPACE, GRID, NonFiniteExecutor(), build)
    frame = trials_frame(study, SPACE)
    bad = frame[frame["hardware.weights.bits"] == 2]
    assert stats.failed == 2 and len(bad) == 2
    assert set(bad.state) == {"fail"} and not bad.legal.any()
    assert all(m.startswith("non-finite result (logits_rel_error=nan, energy_pj=inf)") for m in bad.error_message)
    assert set(frame[frame["hardware.weights.bits"] != 2].state) == {"complete"}


class FlakyExecutor(FakeExecutor):
    """The first trial at 8-bit weights loses its worker (a Ray worker or raylet died); 4-bit ones fail for their
    own reason; the rest compile."""

    def __init__(self) -> None:
        super().__init__(fail_bits=4)
        self.lost = 0

    def wait(self) -> list[TrialOutcome]:
        spec = self.queue[0]
        if spec.params["hardware.weights.bits"] == 8 and not self.lost:
            self.queue.pop(0)
            self.lost += 1
            message = "WorkerCrashedError: the worker died unexpectedly"
            return [TrialOutcome(spec.number, "fail", {"legal": False, "state": "fail", "error_message": message},
                                 message, retry=True)]
        return super().wait()


def test_an_infrastructure_failure_runs_again_on_resume_and_an_own_failure_stays(tmp_path):
    path = tmp_path / "s.db"
    study = open_study(path, GRID, SPACE)
    stats = drive(study, SPACE, GRID, FlakyExecutor(), build)
    assert stats.retry == 1 and stats.failed == 3
    frame = trials_frame(study, SPACE)
    lost = frame[frame.error_message.str.startswith("WorkerCrashedError")]
    assert len(frame) == 6 and len(lost) == 1 and lost.state.item() == "fail"
    assert lost.error_message.item().endswith("(runs again on resume)")

    # resume: the lost trial runs again under its own number; a trial that failed for its own reason stays failed
    study = open_study(path, GRID, SPACE)
    stats = drive(study, SPACE, GRID, FakeExecutor(fail_bits=4), build)
    assert stats.resumed == 1 and stats.ran == 1 and stats.kept == 5
    after = trials_frame(study, SPACE)
    assert len(after) == 6
    assert set(after.loc[after["hardware.weights.bits"] == 4, "error_message"]) == {"boom"}
    assert set(after.loc[after["hardware.weights.bits"] != 4, "state"]) == {"complete"}
    assert after.set_index("trial").loc[int(lost.trial.item()), "legal"]


def test_the_study_names_its_objectives(tmp_path):
    study = open_study(tmp_path / "s.db", GRID, SPACE)
    assert study.metric_names == list(GRID.objectives)
    import optuna

    loaded = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert loaded.metric_names == ["accuracy_delta_pp", "crossbars"]


class LastFirstExecutor(FakeExecutor):
    """Three trials in flight, the last submitted ending first: another order of results than one worker's."""

    def wait(self) -> list[TrialOutcome]:
        self.queue.insert(0, self.queue.pop())
        return super().wait()


def test_nsga2_draws_the_same_points_whatever_the_workers_and_the_order_results_arrive(tmp_path):
    options = StudyOptions(name="p", sampler="nsga2", n_trials=14, population_size=4, seed=3)
    drawn = []
    for i, executor in enumerate([FakeExecutor(capacity=1, fail_bits=4), LastFirstExecutor(capacity=3, fail_bits=4)]):
        study = open_study(tmp_path / f"{i}.db", options, SPACE)
        drive(study, SPACE, options, executor, build)
        frame = trials_frame(study, SPACE)
        drawn.append(frame[["trial", "hardware.weights.bits", "hardware.crossbar.rows", "state"]])
    assert len(drawn[0]) == 14
    pd.testing.assert_frame_equal(drawn[0], drawn[1])


def test_nsga2_compiles_a_point_asked_twice_in_one_generation_once(tmp_path):
    """A generation asked for one point twice compiled it twice (four workers), and pareto.csv held it twice."""
    space = SearchSpace({"hardware.weights.bits": (2, 4), "hardware.crossbar.rows": (64,)}, {})
    options = StudyOptions(name="p", sampler="nsga2", n_trials=8, population_size=4)
    executor, compiled = FakeExecutor(capacity=4), []
    submit = executor.submit
    executor.submit = lambda spec: (compiled.append(spec.params["hardware.weights.bits"]), submit(spec))
    study = open_study(tmp_path / "p.db", options, space)
    stats = drive(study, space, options, executor, build)
    frame = trials_frame(study, space)
    assert len(frame) == stats.ran == 4 and set(frame.state) == {"complete"}  # every trial asked is told
    assert sorted(compiled) == sorted(set(frame["hardware.weights.bits"]))  # each point compiled once
    for _, same in frame.groupby("hardware.weights.bits"):  # the repeats hold their point's result
        assert same.drop(columns="trial").nunique(dropna=False).le(1).all()
