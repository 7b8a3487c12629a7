"""Settings that take one of a few values are Literal types; composition refuses any other value, naming its
key, and the allowed values are the Literal's (dse.choices), for every such field of every schema."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest

from dse.config import compose_config
from dse.config.schemas import GROUP_SCHEMAS, SweepConfig
from dse.errors import ConfigError


def literal_paths(schema: type, prefix: str = "") -> dict[str, tuple[str, ...]]:
    """Dotted path -> allowed values, for every Literal (or tuple-of-Literal) field reachable by an override."""
    out: dict[str, tuple[str, ...]] = {}
    hints = get_type_hints(schema)
    for f in dataclasses.fields(schema):
        kind, path = hints[f.name], f"{prefix}{f.name}"
        kind = GROUP_SCHEMAS.get(f.name, kind) if kind is Any else kind
        if get_origin(kind) is tuple and get_origin(get_args(kind)[0]) is Literal:
            kind = get_args(kind)[0]
        if get_origin(kind) is Literal:
            out[path] = get_args(kind)
        elif dataclasses.is_dataclass(kind):
            out.update(literal_paths(kind, f"{path}."))
    return out


PATHS = literal_paths(SweepConfig)


def test_the_choices_are_literal_types() -> None:
    assert {"hardware.neuron.model", "hardware.neuron.offered", "hardware.neuron.reset", "hardware.neuron.encoding",
            "hardware.weights.scale", "hardware.mapping.reuse", "strategy.name", "study.sampler",
            "runner.kind"} <= set(PATHS)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_value_outside_the_literal_is_refused_at_composition(path: str) -> None:
    value = f"[{PATHS[path][0]},nope]" if path.endswith("offered") else "nope"
    with pytest.raises(ConfigError, match=rf"^{re.escape(path)} must be one of "
                                          rf"{re.escape(', '.join(PATHS[path]))} \(got 'nope'\)$"):
        compose_config("sweep", ["runner=local", f"{path}={value}"])


def test_every_allowed_value_composes() -> None:
    """The i-th value of every Literal at once, for each i (a few compositions instead of one per value)."""
    from omegaconf import OmegaConf

    for i in range(max(len(v) for v in PATHS.values())):
        chosen = {p: v[i] for p, v in PATHS.items() if i < len(v)}
        cfg = compose_config("sweep", ["runner=local", *(f"{p}=[{v}]" if p.endswith("offered") else f"{p}={v}"
                                                        for p, v in chosen.items())])
        for path, value in chosen.items():
            got = OmegaConf.select(cfg, path)
            assert (list(got) if path.endswith("offered") else got) == ([value] if path.endswith("offered") else value)


def test_a_figure_list_is_checked_item_by_item() -> None:
    with pytest.raises(ConfigError, match=r"^figures\[1\]\.others must be one of reference, best \(got 'worst'\)$"):
        compose_config("sweep", ["runner=local", "+figures=[{x: a}, {x: b, others: worst}]"])
