"""Settings that take one of a few named values are `Literal` types in the dataclasses; this is the one check of
a value against such a type.

OmegaConf 2.3 refuses `Literal` annotations in structured configs, so the Hydra schemas (dse/config/schemas.py)
see these fields as `str` and the owner of each setting checks it with `check_choice` against its Literal: the
allowed values are written once, in the type.
"""

from __future__ import annotations

from typing import Any, get_args

from dse.errors import ConfigError


def choices(literal: Any) -> tuple[str, ...]:
    """The values a Literal type allows, in the order written."""
    return get_args(literal)


def check_choice(key: str, value: object, literal: Any) -> None:
    """Raise a ConfigError naming `key` unless `value` is one of the Literal's values."""
    options = choices(literal)
    if value not in options:
        raise ConfigError(f"{key} must be one of {', '.join(options)} (got {value!r})")
