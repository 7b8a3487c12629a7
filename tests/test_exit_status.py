"""The command lines' exit statuses (README, "Exit status"; `dse/errors.py`): 0 success, 1 a bug (uncaught,
with its traceback), 2 bad input, 3 compiled but not legal, 4 outputs not finite (the last two through the
compile; 2 and 4 by the bad models of tests/test_hostile_inputs.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import dse.passes.verify as verify
from dse.cli import run_app
from dse.compile.__main__ import main
from dse.errors import EXIT_BUG, EXIT_INTERRUPTED, EXIT_NOT_LEGAL


def compile_mlp(run_dir: Path) -> int:
    return run_app("compile", main, ["model=mlp_digits", "tuning=none", "progress=false",
                                     f"hydra.run.dir={run_dir}"])


def test_compiled_but_not_legal_is_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(0 for a legal compile: tests/test_compile_cli.py.)"""
    real = verify.legality_check
    monkeypatch.setattr(verify, "legality_check", lambda graph, hw: [*real(graph, hw), "core x: a violation"])
    assert compile_mlp(tmp_path / "illegal") == EXIT_NOT_LEGAL
    report = json.loads((tmp_path / "illegal" / "report.json").read_text())
    assert report["legal"] is False and report["violations"] == ["core x: a violation"]


def test_a_bug_is_1_with_its_traceback(tmp_path: Path) -> None:
    code = ("import sys; from dse.cli import run_app\n"
            "def main(cfg, run_dir): raise RuntimeError('a bug')\n"
            "sys.exit(run_app('compile', main, []))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == EXIT_BUG and "Traceback" in proc.stderr and "RuntimeError: a bug" in proc.stderr


# Ctrl-C at a chosen import: a `sitecustomize` (run at start-up, before dse) sends this process SIGINT when the
# named module starts importing, exactly as a Ctrl-C in the first seconds lands (torch takes most of them)
INTERRUPT_AT_IMPORT = """
import os, signal, sys

signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job inherits SIGINT ignored


class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["DSE_TEST_INTERRUPT_AT"]:
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, Interrupt())
"""


@pytest.mark.parametrize(("command", "module"), [("dse.compile", "torch"), ("dse.sweep", "omegaconf"),
                                                  ("dse.sweep", "torch")])
def test_ctrl_c_while_the_command_imports_is_one_line_and_130(command: str, module: str, tmp_path: Path) -> None:
    """`python -m dse.compile` imports its package (torch) before its main runs: Ctrl-C there was a
    KeyboardInterrupt traceback, and the process ended by the signal."""
    (tmp_path / "sitecustomize.py").write_text(INTERRUPT_AT_IMPORT)
    proc = subprocess.run([sys.executable, "-m", command, "model=mlp_digits", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "DSE_TEST_INTERRUPT_AT": module,
                               "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == EXIT_INTERRUPTED and proc.stderr == "interrupted\n", (proc.returncode, proc.stderr)
    assert not (tmp_path / "run").exists()
