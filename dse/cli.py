"""What every command-line entry point shares: compose the config, turn user mistakes into one line.

A user mistake (a DseError) prints ``error: <what is wrong>`` on stderr and exits with its status (2, or 4 for
non-finite outputs: `dse.errors`), without a traceback; anything else is a bug and keeps its traceback (1).
"""

from __future__ import annotations

import difflib
import errno
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dse.errors import EXIT_INTERRUPTED, EXIT_USAGE, ConfigError, DseError


def run_app(config_name: str, main: Callable[[DictConfig, Path], int | None], argv: list[str] | None = None,
            help_text: Callable[[], str] = lambda: "", preprocess: Callable[[list[str]], list[str]] | None = None,
            job_config: Callable[[DictConfig], str] | None = None) -> int:
    """Compose `dse/conf/<config_name>.yaml` with the command line's overrides and call `main(cfg, run_dir)`.

    `preprocess` may take overrides out before composition (the sweep's ``path=a,b,c``), raising DseError for
    a bad one like any other user mistake. `help_text` makes the text of --help (called only then: it reads the
    presets and the importer's op table, which a run does not need). `job_config`: what ``--cfg job`` prints
    (default the composed config as YAML, hydra's section left out).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(help_text())
        return 0
    try:
        options, argv = _options(argv, config_name)
        logging.basicConfig(level=options.log_level, format="%(levelname)s %(name)s: %(message)s")
        from dse.config import compose_config

        if preprocess is not None:
            argv = preprocess(argv)
        cfg = compose_config(config_name, argv)
        if options.show_config:
            shown = job_config(cfg) if job_config else OmegaConf.to_yaml(
                OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
            print(shown, end="")
            return 0
        if not str(cfg.hydra.run.dir).strip():  # `hydra.run.dir=$OUT`, OUT unset: Path("") was the working folder
            raise ConfigError("hydra.run.dir is empty; name a folder (hydra.run.dir=. for the working folder)")
        run_dir = Path(str(cfg.hydra.run.dir))
        return int(main(cfg, run_dir) or 0)
    except DseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        # only a path of the user's is that long (a model, a dataset, a run folder, ...), and the file system says
        # so wherever it is first looked at (Path.exists() raises it): one line naming it, not a traceback
        print(f"error: {exc.filename}: {exc.strerror} for the file system", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def exit_now(status: int) -> None:
    """End the process with `status` once its output is flushed, without tearing the interpreter down: torch's
    teardown alone costs about 0.35 CPU s (`import torch` then a normal exit: 1.25 s; then `os._exit`: 0.89),
    some 7 % of a LeNet compile. For a command whose every file is written (atomically) and closed by then; no
    atexit handler of ours is skipped. Under a profiler or a tracer (cProfile, coverage), which write their
    results at exit, the process exits normally."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(status)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say to it
            pass
    os._exit(status)


@dataclass
class Options:
    """What the command line's options (the words starting with "-") asked for."""

    log_level: str  # -v: INFO, -vv: DEBUG; else $DSE_LOG (default WARNING)
    show_config: bool  # --cfg job: print the composed config and stop


OPTIONS = ("-h", "--help", "-v", "-vv", "--verbose", "--cfg")
# Hydra's habits that do not apply here, and what to use instead
HYDRA_HABITS = {
    "--info": "--info is Hydra's; use --help (presets and fields) or --cfg job (the composed config)",
    "--cfg": "--cfg takes job (the composed config); use --cfg job",
    "-c": "-c is Hydra's; use --cfg job (the composed config)",
    "--resolve": "the config is printed resolved; use --cfg job",
    "--package": "use --cfg job (the whole composed config)",
    "-p": "use --cfg job (the whole composed config)",
}
MULTIRUN = {
    "compile": "-m/--multirun: dse.compile compiles one configuration; sweep several with python -m dse.sweep "
               "(path=a,b,c)",
    "sweep": "-m/--multirun is not needed: python -m dse.sweep sweeps path=a,b,c by itself; drop -m",
}


def _options(argv: list[str], config_name: str) -> tuple[Options, list[str]]:
    """Take the options out of `argv`; a Hydra habit or an unknown option is a DseError naming what to use."""
    level = os.environ.get("DSE_LOG", "WARNING").upper()
    show, rest = False, []
    words = iter(argv)
    for a in words:
        if a in ("-v", "--verbose"):
            level = "DEBUG" if level == "INFO" else "INFO"  # -v -v: DEBUG
        elif a == "-vv":
            level = "DEBUG"
        elif a == "--cfg" or a.startswith("--cfg="):
            value = a.partition("=")[2] or next(words, "")
            if value != "job":
                raise DseError(HYDRA_HABITS["--cfg"])
            show = True
        elif a in ("-m", "--multirun"):
            raise DseError(MULTIRUN[config_name])
        elif a.split("=", 1)[0] in HYDRA_HABITS:
            raise DseError(HYDRA_HABITS[a.split("=", 1)[0]])
        elif a.startswith("-"):
            near = difflib.get_close_matches(a, OPTIONS, n=1)
            hint = f"; did you mean {near[0]}?" if near else " (options: -h, -v, --cfg job)"
            raise DseError(f"unknown option {a}{hint}; the other arguments are overrides such as hardware=chip_a")
        else:
            rest.append(a)
    if level not in logging.getLevelNamesMapping():
        raise DseError(f"DSE_LOG={level} is not a log level (DEBUG, INFO, WARNING, ERROR)")
    return Options(level, show), rest


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


OPTIONS_HELP = """Options:                -v, --verbose: log what each step does (-v -v: debug); or DSE_LOG=INFO|DEBUG
                        --cfg job: print the composed config (a sweep's with its search space) and stop;
                        -h, --help: this text"""


def neuron_models() -> str:
    """The neuron models a chip may name (hardware.neuron.model), ``a|b|c``."""
    from dse.hardware.spec import NEURON_MODELS

    return "|".join(NEURON_MODELS)


def dataset_names() -> str:
    """The built-in datasets' names, ``a|b|c``."""
    from dse.data.datasets import DATASETS

    return "|".join(DATASETS)
