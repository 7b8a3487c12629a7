"""What every command-line entry point shares: compose the config, turn user mistakes into one line.

A user mistake (a DseError) prints ``error: <what is wrong>`` on stderr and exits with status 2, without a
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from dse.errors import DseError

EXIT_USAGE = 2


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
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def group_options(*groups: str) -> str:
    """``group=a|b|c`` for each config group, the options read from dse/conf/ (for --help: never a stale list)."""
    from dse.config import presets

    options = {g: "|".join(presets(g)) for g in groups}
    return "\n                        ".join(f"{g}={v}" for g, v in options.items())
