"""The README's Python example runs as it is written, from an empty folder (the public surface of `dse`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_example() -> str:
    section = README.read_text().split("## From Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: no python block under 'From Python'"
    return match.group(1)


def test_readme_python_example_runs(tmp_path: Path) -> None:
    code = python_example() + "\nassert result.legal and report['legal'] and report['model'] == 'mlp_digits'\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's dse, whichever one the venv installed
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    legal, accuracy, crossbars = out.stdout.split()[-3:]
    assert legal == "True" and 0.9 < float(accuracy) <= 1.0 and int(crossbars) > 0
    assert list(tmp_path.iterdir()) == []  # the library writes nothing the caller did not ask for
