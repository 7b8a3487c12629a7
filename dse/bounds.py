"""The one check of a numeric setting against its range, and its message.

An integer setting (a count, a size, a seed): `check_int`, ``KEY must be an integer >= N (got VALUE)``; a bool is
not an integer here (YAML's ``true`` would pass as 1). A table of settings (`dse.tune.options.BOUNDS`) holds a
`Bound` per setting: integers through `check_int`, real numbers finite and at or above (or above) their least
value, ``KEY must be > 0 (got -1.0)``. Each owner of a setting checks it where its dataclass or function is built,
raising its own kind of error (a `ConfigError` unless it passes another).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dse.errors import ConfigError, DseError


def check_int(key: str, value: object, minimum: int, *, optional: bool = False,
              error: type[DseError] = ConfigError) -> None:
    """Raise `error` naming `key` unless `value` is an integer >= `minimum` (or None, where `optional`)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise error(f"{key} must be an integer >= {minimum} (got {value!r})")


@dataclass(frozen=True)
class Bound:
    """The values a numeric setting may take: a number (an integer where `integer`) at least `low` (above it where
    `strict`), below `high` where set; never NaN or infinite."""

    low: float
    integer: bool = True
    strict: bool = False
    high: float | None = None

    def check(self, key: str, value: object) -> None:
        if self.integer:
            check_int(key, value, int(self.low) + self.strict)
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number (got {value!r})")
        if self.high is not None and not self.low <= value < self.high:
            raise ConfigError(f"{key} must be in [{self.low:g}, {self.high:g}) (got {value})")
        if self.strict and not value > self.low:
            raise ConfigError(f"{key} must be > {self.low:g} (got {value})")
        if not value >= self.low:
            raise ConfigError(f"{key} must be >= {self.low:g} (got {value})")
