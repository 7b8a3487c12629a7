"""The sweep's command line: Hydra sweep overrides (``path=a,b,c``) name the search space, the rest is composed."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

from hydra.errors import HydraException

from dse.config.compose import is_group, one_line
from dse.errors import ConfigError

# the values one search parameter may take: each is checked alone before any trial (about 1.5 ms each: 10,000
# take some 15 s), and range(2,100000000) listed its values into a MemoryError traceback
MAX_VALUES = 10_000


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
        raise ConfigError(one_line(exc)) from None
    cmd = CommandLine([], {}, [])
    for line, o in zip(argv, parsed, strict=True):
        key = o.key_or_group
        if not o.is_sweep_override():
            cmd.overrides.append(line)
            if o.type != OverrideType.DEL:
                cmd.pinned.append(key)
                cmd.sweeps.pop(key, None)  # the last word on a path wins, as in Hydra
            continue
        if key.startswith("hydra") or is_group(key):
            raise ConfigError(f"{line}: config group {key} cannot be swept; sweep one of its fields "
                              f"(strategy.name=split,prune, hardware.weights.bits=2,4,8)")
        if o.value_type == ValueType.INTERVAL_SWEEP:
            raise ConfigError(f"{line}: a continuous interval cannot be searched; list the values (a,b,c) or "
                              "use range(start,stop,step)")
        if o.value_type == ValueType.GLOB_CHOICE_SWEEP:  # it matches a group's options: a HydraException traceback
            raise ConfigError(f"{line}: glob() picks config group options, and a group cannot be swept; list the "
                              "values (a,b,c) or use range(start,stop,step)")
        try:
            _check_count(line, o)
            values = list(o.sweep_iterator())
        except ValueError as exc:  # range(2,9,0)
            raise ConfigError(f"{line}: {str(exc).replace('range() arg 3', 'the step of range()')}") from None
        if not values:
            raise ConfigError(f"{line}: the sweep has no values (range(start,stop,step) stops before it starts)")
        cmd.sweeps[key] = values
        if key in cmd.pinned:
            cmd.pinned.remove(key)
    return cmd


def _check_count(line: str, override: Any) -> None:  # noqa: ANN401 - hydra's Override
    """Refuse a sweep of more than `MAX_VALUES` values before listing them (a range, even shuffled, is counted
    a value at a time up to the limit)."""
    from hydra.core.override_parser.types import RangeSweep

    sweep = override.value()
    values = sweep.range() if isinstance(sweep, RangeSweep) else override.sweep_iterator()
    if sum(1 for _ in islice(values, MAX_VALUES + 1)) > MAX_VALUES:
        raise ConfigError(f"{line}: more than {MAX_VALUES:,} values; a search parameter takes at most that many "
                          "(each is checked before any trial)")
