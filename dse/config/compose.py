"""Compose a config from the presets that ship in the package (dse/conf/, found by Hydra as ``pkg://dse.conf``).

A user's own presets join them with ``hydra.searchpath=[file:///path/to/conf]`` on the command line: a folder
laid out like dse/conf/ (hardware/my_chip.yaml, ...), searched after the package.
"""

from __future__ import annotations

import difflib
import re
import warnings
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dse.config.keys import check_keys, override_key, schema_at, suggest
from dse.config.schemas import GROUP_SCHEMAS, CompileConfig, SweepConfig, check_choices, register_schemas
from dse.errors import ConfigError, first_line
from dse.files import names_one_folder

CONF_PACKAGE = "dse.conf"
# Hydra's own keys that dse reads; Hydra accepts every other key of its section (hydra.sweep.dir, hydra.job.*,
# hydra.verbose, ...), but dse composes its config without Hydra's runtime, so such a setting would be ignored
HYDRA_KEYS_READ = {"hydra.run.dir": "the run folder, of a compile and of a sweep alike",
                   "hydra.searchpath": "folders of your own presets"}
SCHEMAS = {"compile": CompileConfig, "sweep": SweepConfig}  # the schema of each command's config
# values one preset file of the user's may expand to (a shipped one holds fewer than 100): composing a preset copies
# every YAML alias, and nine nested aliases of nine values each (the "billion laughs") ran on for minutes
MAX_PRESET_VALUES = 100_000


def conf_dir() -> Traversable:
    """The folder of the shipped presets: compile.yaml, sweep.yaml and one sub-folder per config group."""
    return files(CONF_PACKAGE)


def is_group(name: str) -> bool:
    """Whether `name` is a config group of the shipped presets (hardware, strategy, ...)."""
    return (conf_dir() / name).is_dir()


def presets(group: str) -> list[str]:
    """The shipped presets of one config group, by name (the stems of dse/conf/<group>/*.yaml)."""
    return sorted(p.name.removesuffix(".yaml") for p in (conf_dir() / group).iterdir() if p.name.endswith(".yaml"))


def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose `dse/conf/<config_name>.yaml` with command-line overrides; any mistake is one ConfigError line."""
    register_schemas()
    _check_hydra_keys(overrides)
    _check_user_presets(overrides)
    try:
        with initialize_config_module(config_module=CONF_PACKAGE, version_base=None), warnings.catch_warnings():
            # Hydra only warns of a search path that is not there, and composes without the user's presets
            warnings.filterwarnings("error", message=r".*hydra\.searchpath.* is not available", category=UserWarning)
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except UserWarning as exc:
        missing = re.search(r"path=(.*) is not available", str(exc))
        raise ConfigError(f"hydra.searchpath: {missing.group(1) if missing else exc} is not a folder of presets "
                          "(file:///ABSOLUTE/PATH to a folder laid out like dse/conf/)") from None
    except yaml.MarkedYAMLError as exc:  # a user's preset that is not YAML
        mark = exc.problem_mark or exc.context_mark
        where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else "a preset"
        raise ConfigError(f"{where}: not valid YAML ({exc.problem or exc.context})") from None
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(_unknown_override(config_name, overrides) or one_line(exc)) from None
    _resolve(cfg)
    check_keys(SCHEMAS[config_name], cfg, GROUP_SCHEMAS)  # a `+` addition gets past Hydra's own check
    check_choices(SCHEMAS[config_name], cfg)
    _name_user_model(cfg, overrides)
    return cfg


def _check_hydra_keys(overrides: list[str]) -> None:
    """Refuse an override of a key of Hydra's section that dse does not read (`HYDRA_KEYS_READ`)."""
    for o in overrides:
        key = override_key(o)
        if (key == "hydra" or key.startswith("hydra.")) and key not in HYDRA_KEYS_READ:
            read = "; ".join(f"{k} ({what})" for k, what in HYDRA_KEYS_READ.items())
            raise ConfigError(f"{o}: dse does not read {key}; of Hydra's keys it reads {read}")


def _check_user_presets(overrides: list[str]) -> None:
    """Refuse, before composing, a preset file of the user's folders (``hydra.searchpath=[file://DIR]``: DIR's
    and its groups' .yaml files) that expands past `MAX_PRESET_VALUES` values or nests past the parser's depth.
    A file that is not YAML is left to the composition, which names it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for o in overrides:
        if override_key(o) != "hydra.searchpath":
            continue
        try:
            paths = OverridesParser.create().parse_overrides([o])[0].value()
        except HydraException:
            return  # the composition refuses it, in one line
        for entry in paths if isinstance(paths, list) else [paths]:
            if isinstance(entry, str) and entry.startswith("file://"):
                for path in _preset_files(Path(entry.removeprefix("file://"))):
                    _check_preset_size(path)


def _preset_files(folder: Path) -> list[Path]:
    """`folder`'s and its groups' .yaml files; none where it is not a readable folder (the composition says so)."""
    try:
        return sorted([*folder.glob("*.yaml"), *folder.glob("*/*.yaml")]) if folder.is_dir() else []
    except OSError:
        return []


def _check_preset_size(path: Path) -> None:
    """`path`'s YAML as a node graph (an alias is the node it names, not a copy), its values counted once per
    place they appear, each shared node's count computed once."""
    try:
        with open(path, encoding="utf-8") as f:
            root = yaml.compose(f, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read as a preset") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return
    counts: dict[int, int] = {}

    def count(node: yaml.Node) -> int:
        if id(node) not in counts:
            counts[id(node)] = 1  # an alias of a node that holds it counts once, not for ever
            children = node.value if isinstance(node.value, list) else []
            pairs = [c for pair in children for c in (pair if isinstance(pair, tuple) else (pair,))]
            counts[id(node)] = 1 + sum(count(c) for c in pairs)
        return counts[id(node)]

    try:
        total = 0 if root is None else count(root)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read as a preset") from None
    if total > MAX_PRESET_VALUES:
        raise ConfigError(f"{path}: its YAML aliases expand to {total:,} values, more than the {MAX_PRESET_VALUES:,} "
                          "a preset may hold")


def _resolve(cfg: DictConfig) -> None:
    """Every value resolved now (Hydra's own section only where it names the run folder): an interpolation that
    fails (``model.dataset=${oc.env:DATA}`` with DATA unset, ``${foo}``) or a group taken out (``~hardware``) was a
    traceback wherever the value was first read."""
    try:
        OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True,
                               throw_on_missing=True)
        str(cfg.hydra.run.dir)
    except OmegaConfBaseException as exc:
        key, first = getattr(exc, "full_key", None), str(exc).strip().splitlines()[0]  # later lines: its context
        raise ConfigError(f"{key}: {first}" if key else first) from None


def _name_user_model(cfg: DictConfig, overrides: list[str]) -> None:
    """A user's model (model.onnx) is named after its file unless model.name says otherwise: the report, the
    run folder and the study carry that name, not the default model's (they interpolate ${model.name})."""
    named = any(override_key(o) == "model.name" for o in overrides)
    if "model" in cfg and cfg.model.onnx is not None and not named:
        cfg.model.name = Path(str(cfg.model.onnx)).stem
    elif "model" in cfg and cfg.model.onnx is not None:
        _check_display_name(str(cfg.model.name))


def _check_display_name(name: str) -> None:
    """A user model's name begins its run folder's name (results/compile/<model.name>_<chip>_<strategy>/): with
    '/' in it, model.name=../../x wrote the compile outside results/ (and an empty name began it with '_')."""
    if not names_one_folder(name):
        raise ConfigError(f"model.name={name!r} names the run folder (results/compile/<model.name>_<chip>_<strategy>/"
                          "): name it without '/', not empty")


def _unknown_override(config_name: str, overrides: list[str]) -> str | None:
    """The first override whose key the schema does not have, with the nearest valid name; None if all are
    known (the mistake is elsewhere)."""
    for o in overrides:
        key = override_key(o)
        if key.startswith("hydra") or is_group(key.split(".", 1)[0]) and "." not in key:
            continue
        wrong = schema_at(SCHEMAS[config_name], key, GROUP_SCHEMAS)
        if wrong is not None:
            prefix, known = wrong
            bad = key[len(prefix):].split(".", 1)[0]
            return f"{o}: unknown config key {prefix}{bad}{suggest(bad, known, prefix)}"
    return None


def one_line(exc: BaseException) -> str:
    """Hydra's message, with the cause that names the bad value, on one line."""
    parts = [first_line(exc) or type(exc).__name__]
    available = [ln.strip() for ln in str(exc).splitlines() if ln.startswith("\t") and "provider=" not in ln]
    if "Available options" in str(exc) and available:
        options = [a for a in available if a != "schema"]
        missing = re.search(r"Could not find '[^/']+/([^']+)'", str(exc))
        near = difflib.get_close_matches(missing.group(1), options, n=1) if missing else []
        parts.append((f"did you mean {near[0]}? " if near else "") + "available: " + ", ".join(options))
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip():
        first = str(cause).strip().splitlines()[0]
        if first not in parts[0]:
            parts.append(first)
    return "; ".join(parts).replace("To append to your config use", "unknown key; to add it use")
