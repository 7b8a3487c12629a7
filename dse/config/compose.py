"""Compose a config from the presets that ship in the package (dse/conf/, found by Hydra as ``pkg://dse.conf``).

A user's own presets join them with ``hydra.searchpath=[file:///path/to/conf]`` on the command line: a folder
laid out like dse/conf/ (hardware/my_chip.yaml, ...), searched after the package.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from dse.config.schemas import CompileConfig, SweepConfig, check_choices, register_schemas
from dse.errors import ConfigError

CONF_PACKAGE = "dse.conf"
SCHEMAS = {"compile": CompileConfig, "sweep": SweepConfig}  # the schema of each command's config


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
    try:
        with initialize_config_module(config_module=CONF_PACKAGE, version_base=None):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(one_line(exc)) from None
    check_choices(SCHEMAS[config_name], cfg)
    _name_user_model(cfg, overrides)
    return cfg


def _name_user_model(cfg: DictConfig, overrides: list[str]) -> None:
    """A user's model (model.onnx) is named after its file unless model.name says otherwise: the report, the
    run folder and the study carry that name, not the default model's (they interpolate ${model.name})."""
    named = any(o.split("=", 1)[0].lstrip("+~") == "model.name" for o in overrides)
    if "model" in cfg and cfg.model.onnx is not None and not named:
        cfg.model.name = Path(str(cfg.model.onnx)).stem


def one_line(exc: BaseException) -> str:
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
