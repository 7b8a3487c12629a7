"""`python -m dse.studies NAME [--run-dir DIR]`: run or resume study NAME's sweep, then write its figures and
its README's measured table into studies/NAME/ (dse.studies). Exit status 2: a bad name (one line)."""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = "usage: python -m dse.studies NAME [--run-dir DIR]   (NAME: a folder of studies/; see studies/README.md)"


def main(argv: list[str]) -> int:
    from dse.errors import DseError
    from dse.studies import STUDIES_DIR, check_name, sweep_args, write_study

    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    try:
        name = check_name(argv[0])
        rest = argv[1:]
        if rest and (rest[0] != "--run-dir" or len(rest) != 2):
            raise DseError(f"unknown arguments {' '.join(rest)}; {USAGE}")
        run_dir = Path(rest[1] if rest else f"results/studies/{name}").resolve()
    except DseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from dse.sweep import cli

    code = cli(sweep_args(name, run_dir))
    if code != 0:
        return code
    for path in write_study(name, run_dir, STUDIES_DIR / name):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
