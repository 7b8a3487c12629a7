"""Every key of a composed config checked against the schema, with the nearest valid name for a typo.

Hydra refuses an unknown key that is overridden (``hardware.weight.bits=4``), but a ``+`` addition
(``+foo.bar=1``, ``+search.params.hardware.weights.bits=[1,2]``) or a key in a user's own preset gets past
it: stored and never read. So the whole composed config is walked against the schemas after composition.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from collections.abc import Iterator
from typing import Any, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, ListConfig

from dse.errors import ConfigError


def override_key(override: str) -> str:
    """The config path a command-line override sets: ``+path@package=value`` -> ``path``."""
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def check_keys(schema: type, cfg: DictConfig, groups: dict[str, type]) -> None:
    """Raise ConfigError naming the first key of `cfg` (hydra's own left out) that `schema` does not have, and
    the nearest valid name. `groups`: the schema of a config group's node typed `Any` in `schema`."""
    for path, key, known in _unknown(schema, cfg, "", groups):
        if path == "hydra":
            continue
        raise ConfigError(f"unknown config key {path}{suggest(key, known, path[: -len(key)])}")


def suggest(word: str, known: list[str], prefix: str = "") -> str:
    """"; did you mean <prefix><nearest>?" for the valid name nearest `word` (difflib), else the valid names."""
    near = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if near:
        return f"; did you mean {prefix}{near[0]}?"
    return f" (valid keys{' of ' + prefix.rstrip('.') if prefix else ''}: {', '.join(known)})" if known else ""


def schema_at(schema: type, path: str, groups: dict[str, type]) -> tuple[str, list[str]] | None:
    """For a dotted `path` that is not a key of `schema`: (the valid prefix, the valid names where it goes
    wrong); None when `path` is valid as far as the schema says (a dict's keys are free)."""
    kind: Any = schema
    walked = ""
    for part in path.split("."):
        kind = _strip(kind)
        if kind is Any and walked.rstrip(".") in groups:
            kind = groups[walked.rstrip(".")]
        if not dataclasses.is_dataclass(kind):
            return None
        hints = get_type_hints(kind)
        if part not in hints:
            return walked, [f.name for f in dataclasses.fields(kind)]
        kind, walked = hints[part], f"{walked}{part}."
    return None


def _unknown(kind: Any, node: Any, path: str, groups: dict[str, type]) -> Iterator[tuple[str, str, list[str]]]:
    kind = _strip(kind)
    if kind is Any and path.rstrip(".") in groups:
        kind = groups[path.rstrip(".")]
    if isinstance(node, DictConfig) and dataclasses.is_dataclass(kind):
        hints = get_type_hints(kind)
        names = [f.name for f in dataclasses.fields(kind)]
        for key in node:
            if key not in hints:
                yield f"{path}{key}", str(key), names
            else:
                yield from _unknown(hints[key], node._get_node(key), f"{path}{key}.", groups)
    elif isinstance(node, DictConfig) and get_origin(kind) is dict:
        for key in node:
            yield from _unknown(get_args(kind)[1], node._get_node(key), f"{path}{key}.", groups)
    elif isinstance(node, ListConfig) and get_origin(kind) in (list, tuple) and get_args(kind):
        for i in range(len(node)):
            yield from _unknown(get_args(kind)[0], node._get_node(i), f"{path.rstrip('.')}[{i}].", groups)


def _strip(kind: Any) -> Any:
    """`X | None` -> X."""
    if get_origin(kind) in (Union, types.UnionType):
        args = [a for a in get_args(kind) if a is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind
