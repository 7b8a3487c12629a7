"""What every command-line entry point shares: compose the config, turn user mistakes into one line.

A user mistake (a DseError) prints ``error: <what is wrong>`` on stderr and exits with its status (2, or 4 for
non-finite outputs: `dse.errors`), without a traceback; anything else is a bug and keeps its traceback (1).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from dse.errors import DseError


def run_app(config_name: str, main: Callable[[DictConfig, Path], int | None], argv: list[str] | None = None,
            help_text: str = "", preprocess: Callable[[list[str]], list[str]] | None = None) -> int:
    """Compose `dse/conf/<config_name>.yaml` with the command line's overrides and call `main(cfg, run_dir)`.

    `preprocess` may take overrides out before composition (the sweep's ``path=a,b,c``), raising DseError for
    a bad one like any other user mistake.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(help_text)
        return 0
    logging.basicConfig(level=os.environ.get("DSE_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        from dse.config import compose_config

        bad = [a for a in argv if a.startswith("-")]
        if bad:
            raise DseError(f"unknown option {bad[0]} (arguments are Hydra overrides such as hardware=chip_a)")
        if preprocess is not None:
            argv = preprocess(argv)
        cfg = compose_config(config_name, argv)
        run_dir = Path(str(cfg.hydra.run.dir))
        return int(main(cfg, run_dir) or 0)
    except DseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


INDENT = "\n" + " " * 24  # the column the help texts' second and later lines start in


def group_options(*groups: str) -> str:
    """``group=a|b|c`` for each config group, the options read from dse/conf/ (for --help: never a stale list)."""
    from dse.config import presets

    return INDENT.join(f"{g}={'|'.join(presets(g))}" for g in groups)


def schema_fields(prefix: str, schema: type) -> str:
    """``prefix.field`` for every field of a schema dataclass, ``=a|b`` for a Literal one (for --help)."""
    import dataclasses
    import textwrap
    from typing import Literal, get_args, get_origin, get_type_hints

    hints = get_type_hints(schema)
    words = [f"{prefix}.{f.name}" + ("=" + "|".join(get_args(hints[f.name]))
                                     if get_origin(hints[f.name]) is Literal else "")
             for f in dataclasses.fields(schema)]
    return INDENT.join(textwrap.wrap(" ".join(words), 88))


def dataset_names() -> str:
    """The built-in datasets' names, ``a|b|c``."""
    from dse.data.datasets import DATASETS

    return "|".join(DATASETS)
