"""Hydra structured configs (schemas) and their conversion into the library's typed objects.

The schemas make a typo in a key, or a value of the wrong type, fail at composition with the key's name.
The hardware and tuning schemas are generated from `HardwareSpec` and `TuneOptions` themselves, so the two
cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from dse.choices import check_choice
from dse.cost.model import cost_model
from dse.data.images import Preprocess
from dse.hardware.spec import HardwareSpec
from dse.passes.fit_crossbar import Strategy
from dse.passes.reform import ApproximatorOutput
from dse.sim.montecarlo import MonteCarlo
from dse.tune.options import TuneOptions

Sampler = Literal["grid", "nsga2"]  # grid: every point of the space; nsga2: multi-objective search (NSGA-II)
# pool: worker processes forked on this machine; ray: Ray tasks (a local instance or a cluster); local: one
# trial after the other in this process
RunnerKind = Literal["pool", "ray", "local"]
# a figure's other swept parameters: held at the preset's value, or the best y over them
FigureOthers = Literal["reference", "best"]

_MIRRORS: dict[type, type] = {}  # one mirror per class: Hydra merges a group's node only into its own type


def omegaconf_schema(cls: type) -> type:
    """The class Hydra stores for dataclass `cls`: mutable (Hydra cannot override read-only nodes), nested
    dataclasses mirrored alike, and every `Literal` field typed as its values' type, which OmegaConf 2.3 knows
    (it refuses Literal; the owner of the setting checks the value with `dse.choices.check_choice`)."""
    if cls in _MIRRORS:
        return _MIRRORS[cls]
    hints = get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kind = _plain(hints[f.name])
        if dataclasses.is_dataclass(default):
            specs.append((f.name, kind, field(default_factory=omegaconf_schema(type(default)))))
        elif isinstance(default, (list, dict)):
            specs.append((f.name, kind, field(default_factory=f.default_factory)))
        else:
            specs.append((f.name, kind, field(default=default)))
    mirror = dataclasses.make_dataclass(cls.__name__ if cls.__name__.endswith("Config") else f"{cls.__name__}Config",
                                        specs)
    _MIRRORS[cls] = mirror
    return mirror


def _plain(kind: Any) -> Any:
    """`kind` with Literal[...] replaced by the type of its values and dataclasses by their mirrors."""
    if get_origin(kind) is Literal:
        return type(get_args(kind)[0])
    if dataclasses.is_dataclass(kind):
        return omegaconf_schema(kind)
    args = get_args(kind)
    if not args:
        return kind
    plain = tuple(a if a is Ellipsis else _plain(a) for a in args)
    origin = get_origin(kind)
    if origin in (list, tuple, dict):
        return origin[plain]
    return kind if plain == args else _union(plain)


def _union(members: tuple[Any, ...]) -> Any:
    out = members[0]
    for m in members[1:]:
        out = out | m
    return out


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
    name: Strategy = "split"  # split (split-and-merge) or prune: how a fan-in too big for the crossbar is met
    reencode_k: int = 1  # neurons carrying each value (population code for few I/O bits); 1 = off
    readout_k: int = 1  # neurons carrying each output the host reads (finer logits; spiking chips too); 1 = off
    approximator_width: int = 8  # hidden units of the MLP replacing each Sigmoid/Tanh the chip lacks
    # its output layer: merged into the weights of what reads it (k + 1 channels per value), or a core of its own
    # (2 per value: fewer crossbars downstream, one more layer)
    approximator_output: ApproximatorOutput = "merged"


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
    # chip instances drawn from hardware.device the compiled network is measured on (dse.sim.montecarlo)
    evaluate: omegaconf_schema(MonteCarlo) = field(default_factory=omegaconf_schema(MonteCarlo))  # type: ignore[valid-type]
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
    sampler: Sampler = "grid"
    # result columns to minimize; None = the error and the preset's headline resource: energy (a *_pj column)
    # or area (*_mm2) where its cost model gives them, else crossbars
    objectives: list[str] | None = None
    n_trials: int | None = None  # nsga2: trials in all, resumed ones included; grid: None = the whole grid
    population_size: int = 16  # nsga2
    seed: int = 0
    # runs of each configuration, with tuning seeds tuning.seed, +1, ...: a searched parameter of its own
    # (tuning.seed); the figures draw the mean and one standard deviation over them
    repeats: int = 1
    resume: bool = True  # False: always start a new run folder


@dataclass
class RunnerConfig:
    kind: RunnerKind = "pool"
    address: str | None = None  # runner=ray: join this Ray cluster ("host:port" or "auto"); None = a local instance
    num_cpus: int | None = None  # runner=ray: CPUs of the local Ray instance; None = the machine's
    # runner=pool or ray: trials in flight at once; None = one per CPU (this process's for pool, the cluster's for
    # ray)
    max_concurrent: int | None = None
    torch_threads: int = 1  # per trial: two trials on two cores must not fight over them
    # wall seconds one trial may compile; a trial past it is stopped and recorded as failed with reason
    # "timeout", an infrastructure failure: it runs again when the sweep is resumed (raise the limit first).
    # None = no limit. A SIGALRM timer in the process that runs the trial: a long C call (one big product)
    # ends before the trial stops
    trial_timeout_s: float | None = None


@dataclass
class FigureConfig:
    """A sensitivity figure: `y` (one panel each, side by side; the energy per inference added where the chip has
    a cost model and no panel shows an energy) against swept parameter `x`, one line per value of `by`."""

    x: str = MISSING
    y: list[str] = field(default_factory=lambda: ["accuracy_delta_pp"])
    by: str | None = None
    # the other swept parameters: "reference" = fixed at the preset's value (the nearest searched one),
    # "best" = the lowest y over them (for searches that are not grids)
    others: FigureOthers = "reference"
    # others=reference: swept parameters held at these values instead of the preset's (one figure per tuning
    # mode: {tuning.noise_aware: true}); each a searched parameter other than x and by, its value a searched one
    held: dict[str, Any] = field(default_factory=dict)
    name: str | None = None  # file name without suffix; None = sensitivity_<x>


@dataclass
class SweepConfig(CompileConfig):
    """A compile's config (what every trial compiles), plus the search and how it runs."""

    search: SearchConfig = MISSING
    study: StudyConfig = MISSING
    runner: RunnerConfig = MISSING
    figures: list[FigureConfig] = field(default_factory=list)  # empty: one per swept number


# the schema of each config group's options (dse/conf/<group>/*.yaml name `schema` in their defaults)
GROUP_SCHEMAS: dict[str, type] = {
    "model": ModelConfig, "hardware": HardwareSpec, "strategy": StrategyConfig, "tuning": TuneOptions,
    "search": SearchConfig, "study": StudyConfig, "runner": RunnerConfig,
}


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="compile_schema", node=omegaconf_schema(CompileConfig))
    cs.store(name="sweep_schema", node=omegaconf_schema(SweepConfig))
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=group, name="schema", node=omegaconf_schema(schema))


def check_choices(schema: type, node: Any, path: str = "") -> None:
    """Check every Literal field of a composed config against its values (OmegaConf sees them as `str`), so a
    bad choice is refused at composition, naming its key; a config group's node (hardware, tuning: `Any` in the
    top schema) is checked against its own schema."""
    hints = get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key, kind = f"{path}{f.name}", hints[f.name]
        value = node[f.name] if f.name in node else None
        if kind is Any and f.name in GROUP_SCHEMAS:
            kind = GROUP_SCHEMAS[f.name]
        if value is None:
            continue
        if get_origin(kind) is Literal:
            check_choice(key, value, kind)
        elif dataclasses.is_dataclass(kind):
            check_choices(kind, value, f"{key}.")
        elif get_origin(kind) in (list, tuple) and get_args(kind):
            item = get_args(kind)[0]
            for i, v in enumerate(value):
                if get_origin(item) is Literal:
                    check_choice(key, v, item)
                elif dataclasses.is_dataclass(item):
                    check_choices(item, v, f"{key}[{i}].")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def preprocess_from(cfg: DictConfig) -> Preprocess:
    data = to_container(cfg)
    for key in ("mean", "std"):
        data[key] = None if data[key] is None else tuple(float(v) for v in data[key])
    return Preprocess(**data)


def hardware_from(cfg: DictConfig) -> HardwareSpec:
    """The chip, validated, its cost coefficients included (a bad one is refused before any work)."""
    hw = HardwareSpec.from_dict(to_container(cfg))
    cost_model(hw)
    return hw


def montecarlo_from(cfg: DictConfig) -> MonteCarlo:
    return MonteCarlo(**to_container(cfg))


def tuning_from(cfg: DictConfig) -> TuneOptions:
    data = to_container(cfg)
    data["round_fractions"] = tuple(data["round_fractions"])
    return TuneOptions(**data)


