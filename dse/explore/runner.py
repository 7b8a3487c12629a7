"""`run_study`: one sweep from a composed config to a run folder full of results.

Every check of the user's input (the search space, the study and runner settings, the model, the run folder,
the Ray address) happens before anything is written, so a mistake ends in one ConfigError line and never
touches an existing study. Then: the network is imported and prepared once (the teachers' activations on the
calibration and test data), shared with every trial, the study is driven to completion, and the outputs are
written from the whole study (resumed trials included).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from dse.bounds import check_int
from dse.choices import check_choice
from dse.compile.memory import ChipWork
from dse.config import hardware_from, montecarlo_from, to_container, tuning_from
from dse.config.schemas import FigureOthers, RunnerKind, Sampler
from dse.errors import ConfigError, DseError, ResourceError
from dse.explore.executors import Executor, LocalExecutor
from dse.explore.inputs import fault_map_digest, inputs_digest
from dse.explore.outputs import Figure, default_figures, figure_name, write_outputs
from dse.explore.pareto import reference_point
from dse.explore.progress import progress_bar
from dse.explore.records import trials_frame
from dse.explore.rundir import (
    STUDY_DB,
    StudyLock,
    check_study_file,
    check_writable,
    locate,
    normalize,
    read_fingerprint,
    same_study,
    write_fingerprint,
)
from dse.explore.space import SearchSpace, build_space
from dse.explore.study import DriveStats, StudyOptions, drive, missing_trials, open_study
from dse.explore.trial import ACCURACY, METRICS, TrialOutcome, TrialSpec
from dse.files import atomic_write_text, claim_folder, names_one_folder
from dse.hardware.device import Device
from dse.sim.montecarlo import DEVICE_COLUMNS, MonteCarlo
from dse.timelimit import MAX_SECONDS

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    run_dir: Path
    trials: pd.DataFrame
    pareto: pd.DataFrame
    stats: DriveStats
    objectives: tuple[str, ...]
    params: list[str] = field(default_factory=list)  # the searched parameters (tied ones left out)
    files: list[Path] = field(default_factory=list)
    prepare_seconds: float = 0.0
    seconds: float = 0.0
    # wall seconds of each part: setup (imports excepted: checks, data, study), start (Ray), prepare, trials,
    # close, outputs (tables and figures)
    timings: dict[str, float] = field(default_factory=dict)


def run_study(
    cfg: DictConfig,
    run_dir: Path,
    *,
    timestamped: bool = False,
    cli_sweeps: Mapping[str, Sequence[Any]] | None = None,
    pinned: Sequence[str] = (),
    progress: bool = False,
    executor: Executor | None = None,
) -> SweepResult:
    """Run (or resume) the sweep `cfg` describes in `run_dir` (see dse.explore.rundir for the resume rule).

    `cli_sweeps` and `pinned` are the command line's sweeps (``path=a,b,c``) and single-value overrides of
    searched paths; `executor` replaces the one `cfg.runner` names (tests, benchmarks).
    """
    start = time.perf_counter()
    # --- every check first: nothing is started or written before these pass --------------------------------
    space = build_space(cfg, cli_sweeps, pinned)
    check_base_chip(cfg, space)
    graph, data = _load(cfg)
    labelled = data.y_test is not None
    options = study_options(cfg, labelled)
    figures = figures_from(cfg, space, options, labelled)
    fingerprint = study_fingerprint(cfg, space, options, graph, data)
    run_dir = locate(run_dir, timestamped=timestamped, fingerprint=fingerprint, resume=bool(cfg.study.resume))
    if executor is None:
        executor = executor_from(cfg.runner)
    bound = cfg.compile.max_memory_gb  # prepare's (in this process, alone); a trial's: `trial_bound`
    from dse.compile import check_memory

    check_memory(graph, data, tuning=tuning_from(cfg.tuning), max_memory_gb=bound, work=base_work(cfg))
    montecarlo_from(cfg.evaluate)
    base = OmegaConf.masked_copy(cfg, ["hardware", "strategy", "tuning", "compile", "evaluate"])
    base.compile.max_memory_gb = trial_bound(executor, cfg, graph, data)

    # a time-stamped folder that is not this study's to resume is new: another sweep started in the same second
    # may hold it (it is claimed below, with a suffix if need be)
    fresh = timestamped and not same_study(read_fingerprint(run_dir), fingerprint)
    if not fresh:
        check_study_file(run_dir / STUDY_DB, options.name)  # read-only: a damaged study is left as it is
    executor.check()  # a cluster address nobody answers at fails here, before any write
    if fresh:
        run_dir = claim_folder(run_dir)
    check_writable(run_dir)  # a read-only or full disk fails here, not after the trials

    with StudyLock(run_dir):
        log.info("run folder %s", run_dir)
        atomic_write_text(run_dir / "config.yaml", job_config(cfg, space))
        write_fingerprint(run_dir, fingerprint, options.name)
        atomic_write_text(run_dir / "samples.json", json.dumps(data.samples_record()))
        study = open_study(run_dir / STUDY_DB, options, space)
        timings = {"setup": time.perf_counter() - start}
        interrupted = False
        try:
            stats = _run_trials(study, space, options, executor, (cfg, graph, data, bound, base), timings, progress)
        except KeyboardInterrupt:  # Ctrl-C: the finished trials' tables and figures are still written
            interrupted, stats = True, DriveStats()
        outputs_start = time.perf_counter()
        trials = trials_frame(study, space)
        out = _write_results(cfg, run_dir, trials, space, options, figures)
        timings["outputs"] = time.perf_counter() - outputs_start
    if interrupted:
        log.warning("interrupted: the tables and figures of the %d finished trials are in %s; run the same "
                    "command again to resume", len(trials), run_dir)
        raise KeyboardInterrupt
    log.info("sweep seconds: %s", {k: round(v, 2) for k, v in timings.items()})
    return SweepResult(run_dir, trials, out["pareto"], stats, options.objectives, list(space.params), out["files"],
                       timings.get("prepare", 0.0), time.perf_counter() - start, timings)


def _run_trials(study, space: SearchSpace, options: StudyOptions, executor: Executor, job: tuple,
                timings: dict[str, float], progress: bool) -> DriveStats:
    """Start the executor, prepare and share the network, drive the study; a finished study is only drawn
    again (no Ray, no prepare). `timings` gets the seconds of each part (the sweep's fixed costs beside its
    trials')."""
    cfg, graph, data, bound, base = job
    if missing_trials(study, options, space) == 0:
        return drive(study, space, options, executor, lambda n, p: _trial_spec(base, space, n, p))
    try:
        start = time.perf_counter()
        executor.start()
        timings["start"] = time.perf_counter() - start
        from dse.compile import prepare

        prepared = prepare(graph, data, name=cfg.model.name, approximator_width=cfg.strategy.approximator_width,
                           approximator_output=cfg.strategy.approximator_output, max_memory_gb=bound)
        timings["prepare"] = prepared.seconds
        executor.share(prepared)
        on_result, close_bar = progress_bar(progress, desc=options.name)
        try:
            stats = drive(study, space, options, executor, lambda n, p: _trial_spec(base, space, n, p),
                          on_result=on_result)
        finally:
            close_bar()
        timings["trials"] = stats.seconds
        return stats
    finally:
        start = time.perf_counter()
        executor.close()
        timings["close"] = time.perf_counter() - start


def _write_results(cfg: DictConfig, run_dir: Path, trials: pd.DataFrame, space, options, figures) -> dict[str, Any]:
    """The tables and figures of the run folder, the table's caption naming the model (also where an experiment
    names the study)."""
    reference = reference_point(space.params, _base_values(cfg, space))
    title = options.name if cfg.model.name in options.name else f"{options.name} ({cfg.model.name})"
    from dse.explore.labels import SHORT, fixed_settings

    fixed = fixed_settings({p: OmegaConf.select(cfg, p) for p in SHORT}, [*space.params, *space.tied])
    context = f"{cfg.model.name} on {cfg.hardware.name}" + (f"; fixed: {fixed}" if fixed else "")
    device = _fixed_device(cfg, [*space.params, *space.tied])
    context += f"; device: {device}" if device else ""
    if cfg.evaluate.instances > 1:
        context += f"; {cfg.evaluate.instances} chips drawn per design (evaluate.seed {cfg.evaluate.seed})"
    return write_outputs(run_dir, trials, space, options.objectives, figures, reference, title=title,
                         context=context)


def _fixed_device(cfg: DictConfig, swept: Sequence[str]) -> str:
    """The non-ideal device fields a sweep holds fixed ("programming_sigma=0.01"), as a caption names them."""
    ideal = dataclasses.asdict(Device())
    held = {k: v for k, v in to_container(cfg.hardware.device).items()
            if v != ideal.get(k) and f"hardware.device.{k}" not in swept}
    return " ".join(f"{k}={v}" for k, v in held.items())


# --- config to typed settings, with the checks -----------------------------------------------------------


def study_options(cfg: DictConfig, labelled: bool = True) -> StudyOptions:
    """`labelled`: the test data has labels (else the accuracy columns are null, and the default error is the
    logit error)."""
    s = cfg.study
    _check_study_name(str(s.name))
    check_choice("study.sampler", s.sampler, Sampler)
    known = known_columns(cfg, labelled)
    objectives = tuple(s.objectives) if s.objectives is not None else default_objectives(known)
    if not objectives:
        raise ConfigError("study.objectives is empty: name at least one result column to minimize")
    for k in objectives:
        _check_column("study.objectives", k, known, cfg)
    twice = sorted({k for k in objectives if objectives.count(k) > 1})
    if twice:  # minimizing one column twice is minimizing it once; the Pareto figure plotted it against itself
        raise ConfigError(f"study.objectives names {', '.join(twice)} twice: list each result column once")
    check_int("study.n_trials", s.n_trials, 1, optional=True)
    if s.sampler == "nsga2":
        check_int("study.population_size", s.population_size, 2)
    if not 0 <= s.seed < 2**32:  # the sampler's numpy stream
        raise ConfigError(f"study.seed must be in [0, 2**32) (got {s.seed})")
    return StudyOptions(name=str(s.name), sampler=s.sampler, objectives=objectives, n_trials=s.n_trials,
                        population_size=s.population_size, seed=s.seed)


def _check_study_name(name: str) -> None:
    """The study's folder is results/<study.name>/<time>: an empty name put its run folder among the studies'
    folders, '..' put it in the working folder, 'a/b' nested it (a model.name of those makes such a default)."""
    if not names_one_folder(name) or name in (".", ".."):
        raise ConfigError(f"study.name={name!r} is not a folder name (results/<study.name>/ holds its runs): "
                          "name it without '/', not empty, '.' or '..'")


def check_base_chip(cfg: DictConfig, space: SearchSpace) -> None:
    """A chip setting that no searched value changes (a cost coefficient that is not positive) would fail every
    trial: refuse it now, naming it. An error that names a searched or tied path is left to the trials."""
    try:
        hardware_from(cfg.hardware)
    except ConfigError as exc:
        if not any(path in str(exc) for path in (*space.params, *space.tied)):
            raise


def base_work(cfg: DictConfig) -> ChipWork | None:
    """What the base chip and strategy multiply a trial's memory by (`dse.compile.memory.ChipWork`), for the
    estimate before any trial; None where the base chip is valid only with searched values (each trial's own
    compile then checks its estimate)."""
    try:
        return ChipWork.of(hardware_from(cfg.hardware), cfg.strategy.reencode_k, cfg.strategy.readout_k,
                           cfg.evaluate.instances)
    except ConfigError:
        return None


def default_objectives(known: Sequence[str]) -> tuple[str, ...]:
    """The error (the accuracy loss; the logit error where the test data has no labels), and energy where
    the preset's cost model gives it, else area, else crossbars."""
    error = "accuracy_delta_pp" if "accuracy_delta_pp" in known else "logits_rel_error"
    for suffix in ("_pj", "_mm2"):
        for k in known:
            if k.endswith(suffix):
                return (error, k)
    return (error, "crossbars")


def known_columns(cfg: DictConfig, labelled: bool = True) -> list[str]:
    """The numeric columns a trial produces, known before any runs: the metrics, the resources (their names
    from the resource model itself), on a spiking chip its activity (`spiking.*`), and with a cost model its
    energy, area and latency (`cost_columns`). Without test labels the accuracy columns are null, so no figure
    or objective can use them."""
    from dataclasses import fields

    from dse.compile.report import SpikingReport, cost_columns
    from dse.cost.model import chip_kind
    from dse.cost.resources import total_resources

    names = [k for k in (*METRICS, "compile_seconds", "evaluate_seconds", "cpu_seconds")
             if labelled or k not in ACCURACY]
    try:
        hw = hardware_from(cfg.hardware)
    except DseError:
        return [*names, "crossbars", "cells_used", "utilization", "neurons", "synapses", "core_ops", "depth"]
    names += [k for k in total_resources([], hw) if k not in names]
    if hw.spiking:
        names += [f"spiking.{f.name}" for f in fields(SpikingReport)]
    if hw.cost.given():
        names += cost_columns(chip_kind(hw))
    searched = cfg.search.space.keys() if "search" in cfg else ()
    if not hw.device.is_ideal or any(str(p).startswith("hardware.device.") for p in searched):
        names += [f"device.{k}" for k in DEVICE_COLUMNS]
    return names


def _check_column(where: str, k: str, known: Sequence[str], cfg: DictConfig) -> None:
    if k in ACCURACY and k not in known:
        raise ConfigError(f"{where}: {k} needs test labels and dataset {cfg.model.dataset} has none; use "
                          "logits_rel_error or agreement")
    if k not in known:
        raise ConfigError(f"{where}: {k!r} is not a numeric result column (the numeric columns: {', '.join(known)})")


def figures_from(cfg: DictConfig, space: SearchSpace, options: StudyOptions, labelled: bool = True) -> list[Figure]:
    known = known_columns(cfg, labelled)
    if not cfg.figures:
        return [dataclasses.replace(f, y=with_cost_panel(f.y, known))
                for f in default_figures(space, options.objectives[0], grid=options.sampler == "grid")]
    out = []
    for i, f in enumerate(cfg.figures):
        where = f"figures[{i}]"
        if f.x not in space.params:
            raise ConfigError(f"{where}.x={f.x} is not a searched parameter ({', '.join(space.params)})")
        if f.by is not None and f.by not in space.params:
            raise ConfigError(f"{where}.by={f.by} is not a searched parameter ({', '.join(space.params)})")
        for y in f.y:
            _check_column(f"{where}.y", y, known, cfg)
        check_choice(f"{where}.others", f.others, FigureOthers)
        held = tuple((k, _held_value(f"{where}.held.{k}", k, v, f, space)) for k, v in f.held.items())
        out.append(Figure(f.x, with_cost_panel(tuple(f.y), known), f.by, f.others, f.name or figure_name(f.x),
                          held))
    return out


def _held_value(where: str, path: str, value: Any, f: DictConfig, space: SearchSpace) -> Any:
    """A figure's `held` value: of a searched parameter other than its x and by, one of its searched values."""
    if f.others != "reference":
        raise ConfigError(f"{where}: held values need others=reference (got {f.others})")
    if path not in space.params or path in (f.x, f.by):
        raise ConfigError(f"{where}: not a searched parameter other than x and by "
                          f"({', '.join(p for p in space.params if p not in (f.x, f.by))})")
    if value not in space.params[path]:
        raise ConfigError(f"{where}={value!r} is not one of its searched values {list(space.params[path])}")
    return value


def with_cost_panel(y: tuple[str, ...], known: Sequence[str]) -> tuple[str, ...]:
    """A sensitivity figure's panels with the energy per inference beside the error's, where the chip has a
    cost model and no panel shows an energy yet."""
    if "energy_pj" not in known or any(k.endswith("_pj") for k in y):
        return y
    return (*y, "energy_pj")


# the runner settings only some runners read: any other refuses them rather than ignore them
RUNNER_SETTINGS: dict[str, tuple[str, ...]] = {
    "address": ("ray",), "num_cpus": ("ray",), "max_concurrent": ("ray", "pool"),
}


def executor_from(runner: DictConfig) -> Executor:
    check_choice("runner.kind", runner.kind, RunnerKind)
    for name, kinds in RUNNER_SETTINGS.items():
        if runner[name] is not None and runner.kind not in kinds:
            raise ConfigError(f"runner.{name} needs runner={' or runner='.join(kinds)} (this is runner={runner.kind})")
    for name in ("torch_threads", "num_cpus", "max_concurrent"):
        check_int(f"runner.{name}", runner[name], 1, optional=True)
    timeout = runner.trial_timeout_s
    if timeout is not None and not (0 < timeout <= MAX_SECONDS):  # 1e300 was a traceback in every trial's timer
        raise ConfigError(f"runner.trial_timeout_s must be a positive number of seconds up to {MAX_SECONDS:g}, or "
                          f"null for none (got {timeout})")
    if runner.kind == "local":
        return LocalExecutor(torch_threads=runner.torch_threads, trial_timeout_s=timeout)
    if runner.kind == "pool":
        from dse.explore.pool_executor import PoolExecutor

        return PoolExecutor(workers=runner.max_concurrent, torch_threads=runner.torch_threads,
                            trial_timeout_s=timeout)
    from dse.explore.ray_executor import RayExecutor  # only this path needs Ray

    return RayExecutor(address=runner.address, num_cpus=runner.num_cpus, max_concurrent=runner.max_concurrent,
                       torch_threads=runner.torch_threads, trial_timeout_s=timeout)


def check_fault_maps(cfg: DictConfig, space: SearchSpace) -> dict[str, str]:
    """Read each fault map the trials read (`hardware.device.fault_map`, set or searched) before any work: one that
    cannot be read failed every trial after the preparation, as a failure of the trial's own that stays on resume.
    Returns each one's content digest by its path (`fault_map_digest`)."""
    from dse.sim.device_noise import load_fault_map

    path = "hardware.device.fault_map"
    return {str(p): fault_map_digest(load_fault_map(str(p)))
            for p in space.params.get(path, (OmegaConf.select(cfg, path),)) if p is not None}


def study_fingerprint(cfg: DictConfig, space: SearchSpace, options: StudyOptions, graph, data) -> dict[str, Any]:
    """`make_fingerprint` and what the trials are computed from (`dse.explore.inputs`): the network, the samples,
    and the content of each fault map (only where one is set: a study without one has the fingerprint it had)."""
    maps = check_fault_maps(cfg, space)
    inputs = {**inputs_digest(graph, data), **({"fault_maps": maps} if maps else {})}
    return {**make_fingerprint(cfg, space, options), "inputs": inputs}


def trial_bound(executor: Executor, cfg: DictConfig, graph, data) -> float | None:
    """The memory bound of one trial: compile.max_memory_gb, except where the runner runs trials side by side on
    this machine (runner=pool, a local runner=ray): there the default (null: half the machine's memory) is shared
    by them, and they are as many as their bounds fit (`dse.compile.memory.share_memory`)."""
    bound = cfg.compile.max_memory_gb
    fit_memory = getattr(executor, "fit_memory", None)
    if fit_memory is None:  # one trial at a time (runner=local), or an executor a test gives
        return bound
    from dse.compile import check_memory

    def fits(gb: float) -> bool:
        try:
            check_memory(graph, data, tuning=tuning_from(cfg.tuning), max_memory_gb=gb, work=base_work(cfg))
        except ResourceError:
            return False
        return True

    return fit_memory(bound, fits)


def make_fingerprint(cfg: DictConfig, space: SearchSpace, options: StudyOptions) -> dict[str, Any]:
    """What makes two runs the same study. Left out: how it runs (runner, progress), n_trials (asking for
    more trials extends a study) and the figures (drawn again from the study every time). The device and the
    chips drawn enter only when set (a study run before they existed resumes)."""
    hardware, evaluate = to_container(cfg.hardware), to_container(cfg.evaluate)
    if hardware.get("device") == dataclasses.asdict(Device()):
        del hardware["device"]
    return normalize({
        "model": to_container(cfg.model), "hardware": hardware,
        **({"evaluate": evaluate} if evaluate != dataclasses.asdict(MonteCarlo()) else {}),
        "strategy": to_container(cfg.strategy), "tuning": to_container(cfg.tuning),
        "search": {"space": {k: list(v) for k, v in space.params.items()}, "tied": space.tied},
        "study": {"name": options.name, "sampler": options.sampler, "objectives": list(options.objectives),
                  "population_size": options.population_size, "seed": options.seed},
    })


# --- helpers ---------------------------------------------------------------------------------------------


def _load(cfg: DictConfig):
    from dse.compile import load_model_config

    return load_model_config(cfg.model)


def _trial_spec(base: DictConfig, space: SearchSpace, number: int, point: dict[str, Any]) -> TrialSpec | TrialOutcome:
    try:
        c = space.apply(base, point)
        hw, tuning, evaluate = hardware_from(c.hardware), tuning_from(c.tuning), montecarlo_from(c.evaluate)
    except DseError as exc:  # this combination is not a chip (8-bit weights on too few columns): a failed trial
        message = f"{type(exc).__name__}: {exc}"
        return TrialOutcome(number, "fail", {"legal": False, "state": "fail", "error_message": message}, message)
    return TrialSpec(number, space.settings(point), hw, str(c.strategy.name), tuning, int(c.strategy.reencode_k),
                     int(c.strategy.readout_k), c.compile.max_memory_gb, evaluate)


def _base_values(cfg: DictConfig, space: SearchSpace) -> dict[str, Any]:
    return {p: OmegaConf.select(cfg, p) for p in space.params}


def job_config(cfg: DictConfig, space: SearchSpace) -> str:
    """The resolved config as YAML, with the search space this run really uses (command-line sweeps and
    study.repeats' tuning seeds included): the run folder's config.yaml, and what ``--cfg job`` prints."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    with open_dict(job):
        job.search.space = {k: list(v) for k, v in space.params.items()}
        job.search.tied = dict(space.tied)
    return OmegaConf.to_yaml(job, resolve=True)
