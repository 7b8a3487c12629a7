"""Hydra structured configs (schemas) and their conversion into the library's typed objects.

The schemas make a typo in a key, or a value of the wrong type, fail at composition with the key's name.
The hardware schema is generated from `HardwareSpec` itself, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dse.data.images import Preprocess
from dse.errors import ConfigError
from dse.hardware.spec import HardwareSpec
from dse.tune.options import TuneOptions

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _unfrozen(cls: type, cache: dict[type, type] | None = None) -> type:
    """A mutable mirror of a frozen dataclass (nested ones too): Hydra cannot override read-only nodes."""
    cache = {} if cache is None else cache
    if cls in cache:
        return cache[cls]
    specs = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            sub = _unfrozen(type(default), cache)
            specs.append((f.name, sub, field(default_factory=sub)))
        else:
            specs.append((f.name, f.type, field(default=default)))
    mirror = dataclasses.make_dataclass(f"{cls.__name__}Config", specs)
    cache[cls] = mirror
    return mirror


HardwareConfig = _unfrozen(HardwareSpec)
TuningConfig = _unfrozen(TuneOptions)


@dataclass
class PreprocessConfig:
    """How an image folder's images become the network's input (dse.data.images.Preprocess)."""

    resize: int | None = None  # the shorter side to this many pixels (aspect kept); None = as is
    crop: int | None = None  # the centre crop x crop square; None = none
    channels: int | None = None  # 1 (grayscale) or 3 (RGB); None = the network input's channels
    scale: bool = True  # pixels / 255 into [0, 1]; false = 0..255
    mean: list[float] | None = None  # per channel, (x - mean) / std after scaling; None = none
    std: list[float] | None = None


@dataclass
class ModelConfig:
    # the embedded model's name, or the report's, run folder's and study's name for a user model (by default
    # the stem of model.onnx)
    name: str = MISSING
    onnx: str | None = None  # path to a user's ONNX file; None = the embedded model `name`
    dataset: str = "mnist"  # mnist, digits, a .npz file, an image folder or module:function (docs/data.md)
    calib_samples: int | None = None  # samples of the calibration part used; None = all
    test_samples: int | None = None  # samples of the test part used; None = all
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


@dataclass
class StrategyConfig:
    name: str = "split"  # split (split-and-merge) or prune: how a fan-in too big for the crossbar is met
    reencode_k: int = 1  # neurons carrying each value (population code for few I/O bits); 1 = off
    readout_k: int = 1  # neurons carrying each output the host reads (finer logits; spiking chips too); 1 = off
    approximator_width: int = 8  # hidden units of the MLP replacing each Sigmoid/Tanh the chip lacks


@dataclass
class LimitsConfig:
    # the compile's memory bound (GB): batch sizes are chosen to stay under it, and a run whose estimate
    # exceeds it is refused before it starts (docs/scale.md); None = half the machine's memory
    max_memory_gb: float | None = None


@dataclass
class CompileConfig:
    model: ModelConfig = MISSING
    hardware: Any = MISSING
    strategy: StrategyConfig = MISSING
    tuning: Any = MISSING
    compile: LimitsConfig = field(default_factory=LimitsConfig)
    progress: bool = True


# --- the design-space-exploration sweep (python -m dse.sweep) --------------------------------------------


@dataclass
class SearchConfig:
    """The search space. Keys are dotted config paths (the command-line override and the results column)."""

    space: dict[str, list[Any]] = field(default_factory=dict)  # path -> the values it takes
    # path -> the searched path whose value it copies (a square crossbar: cols follows rows)
    tied: dict[str, str] = field(default_factory=dict)


@dataclass
class StudyConfig:
    name: str = MISSING  # names the results folder, results/<name>/<time>/; the same name resumes the study
    sampler: str = "grid"  # grid: every point of the space; nsga2: multi-objective search (NSGA-II)
    # result columns to minimize; None = the error and the preset's headline resource: energy (a *_pj column)
    # or area (*_mm2) where its cost model gives them, else crossbars
    objectives: list[str] | None = None
    n_trials: int | None = None  # nsga2: trials in all, resumed ones included; grid: None = the whole grid
    population_size: int = 16  # nsga2
    seed: int = 0
    resume: bool = True  # False: always start a new run folder


@dataclass
class RunnerConfig:
    kind: str = "ray"  # ray: trials as Ray tasks; local: one after the other in this process
    address: str | None = None  # join this Ray cluster ("host:port" or "auto"); None = start a local instance
    num_cpus: int | None = None  # CPUs of the local Ray instance; None = the machine's
    max_concurrent: int | None = None  # trials in flight at once; None = one per CPU of the cluster
    torch_threads: int = 1  # per trial: two trials on two cores must not fight over them


@dataclass
class FigureConfig:
    """A sensitivity figure: `y` (one panel each) against swept parameter `x`, one line per value of `by`."""

    x: str = MISSING
    y: list[str] = field(default_factory=lambda: ["accuracy_delta_pp"])
    by: str | None = None
    # the other swept parameters: "reference" = fixed at the preset's value (the nearest searched one),
    # "best" = the lowest y over them (for searches that are not grids)
    others: str = "reference"
    name: str | None = None  # file name without suffix; None = sensitivity_<x>


@dataclass
class SweepConfig(CompileConfig):
    """A compile's config (what every trial compiles), plus the search and how it runs."""

    search: SearchConfig = MISSING
    study: StudyConfig = MISSING
    runner: RunnerConfig = MISSING
    figures: list[FigureConfig] = field(default_factory=list)  # empty: one per swept number


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="compile_schema", node=CompileConfig)
    cs.store(name="sweep_schema", node=SweepConfig)
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="hardware", name="schema", node=HardwareConfig)
    cs.store(group="strategy", name="schema", node=StrategyConfig)
    cs.store(group="tuning", name="schema", node=TuningConfig)
    cs.store(group="search", name="schema", node=SearchConfig)
    cs.store(group="study", name="schema", node=StudyConfig)
    cs.store(group="runner", name="schema", node=RunnerConfig)


def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose `conf/<config_name>.yaml` with command-line overrides; any mistake is one ConfigError line."""
    register_schemas()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(_one_line(exc)) from None
    _name_user_model(cfg, overrides)
    return cfg


def _name_user_model(cfg: DictConfig, overrides: list[str]) -> None:
    """A user's model (model.onnx) is named after its file unless model.name says otherwise: the report, the
    run folder and the study carry that name, not the default model's (they interpolate ${model.name})."""
    named = any(o.split("=", 1)[0].lstrip("+~") == "model.name" for o in overrides)
    if "model" in cfg and cfg.model.onnx is not None and not named:
        cfg.model.name = Path(str(cfg.model.onnx)).stem


def _one_line(exc: BaseException) -> str:
    """Hydra's message, with the cause that names the bad value, on one line."""
    parts = [str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__]
    available = [ln.strip() for ln in str(exc).splitlines() if ln.startswith("\t") and "provider=" not in ln]
    if "Available options" in str(exc) and available:
        parts.append("available: " + ", ".join(a for a in available if a != "schema"))
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip():
        first = str(cause).strip().splitlines()[0]
        if first not in parts[0]:
            parts.append(first)
    return "; ".join(parts).replace("To append to your config use", "unknown key; to add it use")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def preprocess_from(cfg: DictConfig) -> Preprocess:
    data = to_container(cfg)
    for key in ("mean", "std"):
        data[key] = None if data[key] is None else tuple(float(v) for v in data[key])
    return Preprocess(**data)


def hardware_from(cfg: DictConfig) -> HardwareSpec:
    return HardwareSpec.from_dict(to_container(cfg))


def tuning_from(cfg: DictConfig) -> TuneOptions:
    data = to_container(cfg)
    data["round_fractions"] = tuple(data["round_fractions"])
    return TuneOptions(**data)


# --- the sweep's command line -----------------------------------------------------------------------------


@dataclass
class CommandLine:
    """A sweep's command line split in three: what Hydra composes, the sweeps, the single-value overrides."""

    overrides: list[str]
    sweeps: dict[str, list[Any]]  # path=a,b,c (Hydra's sweep syntax): search parameters
    pinned: list[str]  # every path set to one value: it leaves the search space


def split_sweeps(argv: list[str]) -> CommandLine:
    """Take Hydra sweep overrides (``hardware.weights.bits=2,4,8``, ``range(64,257,64)``, ``choice(...)``) out
    of the command line: compose() refuses them, and in a sweep they name the search space."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType, ValueType

    try:
        parsed = OverridesParser.create().parse_overrides(argv)
    except HydraException as exc:
        raise ConfigError(_one_line(exc)) from None
    cmd = CommandLine([], {}, [])
    for line, o in zip(argv, parsed, strict=True):
        key = o.key_or_group
        if not o.is_sweep_override():
            cmd.overrides.append(line)
            if o.type != OverrideType.DEL:
                cmd.pinned.append(key)
                cmd.sweeps.pop(key, None)  # the last word on a path wins, as in Hydra
            continue
        if key.startswith("hydra") or (CONF_DIR / key).is_dir():
            raise ConfigError(f"{line}: config group {key} cannot be swept; sweep one of its fields "
                              f"(strategy.name=split,prune, hardware.weights.bits=2,4,8)")
        if o.value_type == ValueType.INTERVAL_SWEEP:
            raise ConfigError(f"{line}: a continuous interval cannot be searched; list the values (a,b,c) or "
                              "use range(start,stop,step)")
        cmd.sweeps[key] = list(o.sweep_iterator())
        if key in cmd.pinned:
            cmd.pinned.remove(key)
    return cmd
