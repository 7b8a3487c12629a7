"""The search space: dotted config paths and the values each takes, checked against the composed config.

A search parameter is a dotted config path such as ``hardware.weights.bits``: the same string is the
command-line override and the results column. A *tied* path copies a searched path's value (the ADC bits
follow the DAC bits, a square crossbar's cols follow its rows), so one knob moves both.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dse.bounds import check_int
from dse.config.effect import NEURON_MODEL, check_given, device_reason
from dse.config.keys import suggest
from dse.config.sweeps import MAX_VALUES
from dse.errors import ConfigError
from dse.hardware.spec import HardwareSpec

# The network is imported and its activations computed once per sweep, so only what compile() takes may vary.
SEARCHABLE_ROOTS = ("hardware", "strategy", "tuning")
# ... and prepare() takes these: the sweep's one value is every trial's
PREPARED = {"strategy.approximator_width", "strategy.approximator_output"}
REPEAT = "tuning.seed"  # study.repeats=N runs each configuration with N tuning seeds: this searched path
MAX_GRID = 1_000_000  # points of a grid study: Optuna's grid sampler lists them all at once, each one a trial


@dataclass(frozen=True)
class SearchSpace:
    params: dict[str, tuple[Any, ...]]  # searched path -> its values, in the order given
    tied: dict[str, str]  # path -> the searched path it copies

    @property
    def columns(self) -> list[str]:
        """Every path a trial sets: the results columns of the parameters."""
        return [*self.params, *self.tied]

    @property
    def size(self) -> int:
        n = 1
        for values in self.params.values():
            n *= len(values)
        return n

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every point, the last parameter varying fastest."""
        keys = list(self.params)
        for combo in itertools.product(*self.params.values()):
            yield dict(zip(keys, combo, strict=True))

    def settings(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """Every path a point sets, the tied ones included."""
        values = {k: point[k] for k in self.params}
        values.update({path: point[source] for path, source in self.tied.items()})
        return values

    def apply(self, cfg: DictConfig, point: Mapping[str, Any]) -> DictConfig:
        """A copy of `cfg` with the point's values set; a value of the wrong type raises ConfigError."""
        out = copy.deepcopy(cfg)
        for path, value in self.settings(point).items():
            _set(out, path, value)
        return out


def build_space(cfg: DictConfig, cli_sweeps: Mapping[str, Sequence[Any]] | None = None,
                pinned: Sequence[str] = ()) -> SearchSpace:
    """The space of `cfg.search`, with command-line sweeps added and pinned paths taken out; checked.

    `cli_sweeps` (``hardware.weights.bits=2,4,8`` on the command line) add a parameter or replace its values;
    `pinned` paths (``hardware.weights.bits=4``) were set to one value by the user, so they leave the space.
    """
    params: dict[str, list[Any]] = {k: list(v) for k, v in OmegaConf.to_container(cfg.search.space).items()}
    tied: dict[str, str] = dict(OmegaConf.to_container(cfg.search.tied))
    for path in pinned:
        params.pop(path, None)
        tied.pop(path, None)
    for path, values in (cli_sweeps or {}).items():
        params[path] = list(values)
        tied.pop(path, None)  # sweeping a tied path on its own unties it
    tied = {p: s for p, s in tied.items() if s in params}  # the source was pinned: the tie goes with it
    _add_repeats(cfg, params)
    _check_effect(cfg, params, tied, pinned)
    if not params:
        raise ConfigError(
            "the search space is empty: choose one (search=chip_a) or sweep a field, "
            "e.g. search=custom hardware.weights.bits=2,4,8"
        )
    for path in [*params, *tied]:
        check_path(cfg, path)
    _check_size(cfg, params)
    for path, values in params.items():
        if not values:
            raise ConfigError(f"search parameter {path} has no values")
        params[path] = values = _as_typed(cfg, path, values)
        if len({repr(v) for v in values}) != len(values):
            raise ConfigError(f"search parameter {path} lists a value twice: {values}")
        probe = copy.deepcopy(cfg)
        for value in values:
            _set(probe, path, value)
            for follower in (p for p, s in tied.items() if s == path):
                _set(probe, follower, value)
            _check_alone(probe, path, value)
    return SearchSpace({k: tuple(v) for k, v in params.items()}, tied)


def _check_size(cfg: DictConfig, params: Mapping[str, Sequence[Any]]) -> None:
    """Refuse a parameter of more than `MAX_VALUES` values (a preset's list too), and a grid study of more than
    `MAX_GRID` points (10 parameters of 10 values each would be listed at once and never end)."""
    for path, values in params.items():
        if len(values) > MAX_VALUES:
            raise ConfigError(f"search parameter {path} has {len(values):,} values, more than {MAX_VALUES:,} (each "
                              "is checked before any trial)")
    points = math.prod(len(v) for v in params.values())
    if cfg.study.sampler == "grid" and points > MAX_GRID:
        raise ConfigError(f"the grid has {points:,} points, more than {MAX_GRID:,} (study=grid runs every one): "
                          "narrow the search space, or search it with study=pareto study.n_trials=N")


def _add_repeats(cfg: DictConfig, params: dict[str, list[Any]]) -> None:
    """study.repeats=N > 1: every configuration N times, with tuning seeds tuning.seed, +1, ..., +N-1."""
    repeats = cfg.study.repeats
    check_int("study.repeats", repeats, 1)
    if repeats == 1:
        return
    if REPEAT in params:
        raise ConfigError(f"study.repeats={repeats} sets {REPEAT}; it cannot also be searched")
    if repeats > MAX_VALUES:  # its seeds are the values of a search parameter
        raise ConfigError(f"study.repeats={repeats:,} is more than {MAX_VALUES:,} tuning seeds per configuration")
    first = int(cfg.tuning.seed)
    params[REPEAT] = list(range(first, first + repeats))


def _check_alone(cfg: DictConfig, path: str, value: Any) -> None:
    """A value that is wrong whatever the other parameters are fails now, not in every trial.

    Only errors that name `path` count: a value that is wrong only together with another one (8-bit weights
    on a crossbar too narrow for them) is a failed trial, recorded with its reason.
    """
    from dse.config import hardware_from, tuning_from
    from dse.passes.fit_crossbar import STRATEGIES

    if path == "strategy.name" and value not in STRATEGIES:
        raise ConfigError(f"search parameter strategy.name: {value!r} is not a strategy ({', '.join(STRATEGIES)})")
    build = {"hardware": hardware_from, "tuning": tuning_from}.get(path.split(".", 1)[0])
    if build is None:
        return
    try:
        build(cfg[path.split(".", 1)[0]])
    except ConfigError as exc:
        if path in str(exc):
            raise ConfigError(f"search parameter {path}: {exc}") from None


ENCODING = "hardware.neuron.encoding"


def _base_chip(cfg: DictConfig) -> HardwareSpec | None:
    """The base chip; None where it is not valid on its own, only with the searched values (not judged here)."""
    from dse.config import hardware_from

    try:
        return hardware_from(cfg.hardware)
    except ConfigError:
        return None


def check_path(cfg: DictConfig, path: str) -> None:
    """Raise ConfigError unless `path` names a searchable leaf of the config."""
    root = path.split(".", 1)[0]
    if root not in SEARCHABLE_ROOTS:
        raise ConfigError(
            f"search parameter {path} cannot be searched: only {', '.join(r + '.*' for r in SEARCHABLE_ROOTS)} "
            "can vary within a sweep (the network is prepared once)"
        )
    node: Any = cfg
    walked = []
    for part in path.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            where = ".".join(walked) or "the config"
            if not isinstance(node, DictConfig):
                raise ConfigError(f"search parameter {path} is not a config path: {where} is a value")
            hint = suggest(part, [str(k) for k in node], f"{where}.")
            raise ConfigError(f"search parameter {path} is not a config path: no key {part!r} in {where}{hint}")
        walked.append(part)
        node = node._get_node(part)
    if isinstance(node, DictConfig):
        raise ConfigError(f"search parameter {path} is a config group or section, not a field: "
                          f"sweep one of its fields ({', '.join(f'{path}.{k}' for k in node)})")
    if path in PREPARED:
        raise ConfigError(f"search parameter {path} cannot be searched: the network is prepared once per sweep "
                          f"with one value of it; run one sweep per value ({path}=VALUE)")


def _check_effect(cfg: DictConfig, params: Mapping[str, Sequence[Any]], tied: Mapping[str, str],
                  pinned: Sequence[str]) -> None:
    """A setting searched or pinned where it changes nothing (`dse.config.effect`: one that no neuron model of the
    sweep uses, a tuning setting the rounding baseline does not read under tuning.mode=none; `device_reason`:
    noise-aware tuning, or the seed of drawn chips, where the base chip's device draws nothing that needs them and
    no trial changes that)."""
    searched = [*params, *tied]

    def values(path: str) -> Sequence[Any]:  # every value a trial gives `path`
        source = tied.get(path, path)
        return params[source] if source in params else [OmegaConf.select(cfg, path)]

    # a searched path is set in every trial (its values are checked one by one later, `_check_alone`)
    check_given(((p, True) for p in searched), values, "the sweep's chips have", "search parameter ")
    check_given(((p, OmegaConf.select(cfg, p)) for p in pinned), values, "the sweep's chips have")
    # the device-dependent ones (`device_reason`), judged on the base chip where no trial changes what they
    # depend on: noise-aware tuning on the device, the seed of drawn chips also on the neuron model and encoding
    hw = _base_chip(cfg)
    device_varies = any(p.startswith("hardware.device.") for p in searched)
    # per rule, whether some trial changes what it depends on (then the base chip cannot judge it)
    varies = {"tuning.noise_aware": device_varies,
              "evaluate.seed": device_varies or any(p in (NEURON_MODEL, ENCODING) for p in searched)}
    # searched, noise-aware tuning is on in some trial (evaluate.* cannot be searched: `check_path`)
    given = [("search parameter ", p, True) for p in searched if p == "tuning.noise_aware"]
    given += [("", p, OmegaConf.select(cfg, p)) for p in pinned if p in varies]
    for what, path, value in given:
        reason = None if hw is None or varies[path] else device_reason(path, value, hw)
        if reason:
            raise ConfigError(f"{what}{path} changes nothing{reason}")


def _as_typed(cfg: DictConfig, path: str, values: Sequence[Any]) -> list[Any]:
    """Each value as the config holds it once set: `hardware.weights.bits=4,04` gave the values 4 and '04', one
    chip compiled twice, and a column of int and str that trials.parquet could not hold (a traceback after every
    trial had run)."""
    probe, out = copy.deepcopy(cfg), []
    for value in values:
        _set(probe, path, value)
        held = OmegaConf.select(probe, path)
        out.append(OmegaConf.to_container(held) if OmegaConf.is_config(held) else held)
    return out


def _set(cfg: DictConfig, path: str, value: Any) -> None:
    try:
        OmegaConf.update(cfg, path, value, merge=False)
    except OmegaConfBaseException as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"search parameter {path}: bad value {value!r}: {first}") from None
