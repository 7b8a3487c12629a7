"""The run folder of a study: where it is, whether it holds the same study, and who may write to it.

Resume rule. The default run folder is ``results/<study.name>/<time>/``. Running a sweep looks in
``results/<study.name>/`` for the newest run folder whose study was started with the same configuration
(the *fingerprint*: model, hardware, strategy, tuning, search space, sampler, objectives, seed, and a digest of
the network, samples and fault maps they name, `dse.explore.inputs`) and resumes
it; if there is none, or ``study.resume=false``, it starts a new time-stamped folder (claimed by the sweep
alone: ``<time>_2``, ... where a sweep started in the same second holds ``<time>``). So running the same
command again resumes, and changing the configuration under the same name never mixes two studies. An
explicit folder (``hydra.run.dir=DIR``, no time stamp) is used as it is: it resumes the study inside if the
configuration is the same, and refuses with exit status 2 if it is not (a fault map rewritten in place since the
study started: saying so). A study stored before its fingerprint held a digest resumes on the rest.

A lock file keeps a second sweep from running the same study at the same time (the lock is released by the
kernel when a sweep dies, SIGKILL included).

Before anything is written, the folder's study file is checked without changing it (`check_study_file`: a
damaged, truncated or empty ``study.db`` is an error, never a fresh start) and the folder is checked writable
with room to spare (`check_writable`), so neither is discovered after the trials have run.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from dse.errors import ConfigError, OutputError
from dse.files import atomic_write_text, check_folder

STUDY_DB = "study.db"
FINGERPRINT = "study.json"
LOCK = ".lock"
# free space a run folder needs before trials start: the tables, figures and study file of a sweep take a few MB
MIN_FREE_BYTES = 64 * 2**20
SQLITE_HEADER = b"SQLite format 3\x00"

log = logging.getLogger(__name__)


def locate(run_dir: Path, *, timestamped: bool, fingerprint: dict[str, Any], resume: bool) -> Path:
    """The folder this sweep works in. Reads only; creates nothing. A path that cannot become a folder (a file,
    a name too long for the file system) is refused first (`check_folder`), as a compile's is."""
    check_folder(run_dir)
    if not timestamped:
        if (run_dir / "report.json").exists() and not (run_dir / FINGERPRINT).exists():
            raise ConfigError(f"{run_dir} holds a compile (report.json), whose config.yaml and samples.json the sweep "
                              "would write over; choose another hydra.run.dir")
        stored = read_fingerprint(run_dir)
        held = [name for name in (STUDY_DB, "trials.csv", "config.yaml") if (run_dir / name).exists()]
        if stored is None and held:  # a study.db there was resumed, and its trials reported, whatever it held
            raise ConfigError(f"{run_dir} holds {held[0]} but no readable {FINGERPRINT} (the configuration of the "
                              "study there), so it may be another study's; choose another hydra.run.dir, or move "
                              "those files away")
        changed = changed_fault_maps(stored, fingerprint)
        if changed:
            raise ConfigError(f"fault map {changed[0]} changed since the study in {run_dir} started (its trials were "
                              "computed with the cells it held then); choose another hydra.run.dir to start a new "
                              "study, or put the map back to resume it")
        if stored is not None and not same_study(stored, fingerprint):
            raise ConfigError(
                f"{run_dir} holds a study with another configuration ({describe_difference(stored, fingerprint)}); "
                "choose another hydra.run.dir or study.name"
            )
        return run_dir
    if resume and run_dir.parent.is_dir():
        candidates = sorted(run_dir.parent.glob(f"*/{FINGERPRINT}"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in candidates:
            stored = read_fingerprint(path.parent)
            if same_study(stored, fingerprint):
                return path.parent
            changed = changed_fault_maps(stored, fingerprint)
            if changed:  # left as it is: its trials are of the old map's chip
                log.warning("fault map %s changed since the study in %s started: a new study starts", changed[0],
                            path.parent)
    return run_dir


def same_study(stored: dict[str, Any] | None, fingerprint: dict[str, Any]) -> bool:
    """A study stored before its fingerprint held the inputs' digest (`dse.explore.inputs`) resumes on the rest;
    one stored before the inputs held the fault maps' digests, on the network's and the samples'."""
    if stored is not None and "inputs" not in stored:
        fingerprint = {k: v for k, v in fingerprint.items() if k != "inputs"}
    elif stored is not None and not _has_fault_maps(stored) and _has_fault_maps(fingerprint):
        inputs = {k: v for k, v in fingerprint["inputs"].items() if k != "fault_maps"}
        fingerprint = {**fingerprint, "inputs": inputs}
    return stored == fingerprint


def changed_fault_maps(stored: dict[str, Any] | None, fingerprint: dict[str, Any]) -> list[str]:
    """The fault maps whose content alone makes `fingerprint` another study than `stored` (none where anything
    else differs too, or where `stored` holds no fault map's digest)."""
    if stored is None or not _has_fault_maps(stored) or not _has_fault_maps(fingerprint):
        return []
    old, new = stored["inputs"]["fault_maps"], fingerprint["inputs"]["fault_maps"]
    if old.keys() != new.keys() or same_study(stored, fingerprint):
        return []
    if not same_study(stored, {**fingerprint, "inputs": {**fingerprint["inputs"], "fault_maps": old}}):
        return []
    return [path for path in old if old[path] != new[path]]


def _has_fault_maps(fingerprint: dict[str, Any]) -> bool:
    inputs = fingerprint.get("inputs")
    return isinstance(inputs, dict) and isinstance(inputs.get("fault_maps"), dict)


def read_fingerprint(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / FINGERPRINT
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None


def write_fingerprint(run_dir: Path, fingerprint: dict[str, Any], study_name: str) -> None:
    path = run_dir / FINGERPRINT
    if path.exists():
        return
    atomic_write_text(path, json.dumps({"study": study_name, "fingerprint": fingerprint}, indent=2))


def normalize(data: Any) -> Any:
    """JSON round trip: tuples become lists, so a stored and a fresh fingerprint compare equal."""
    return json.loads(json.dumps(data, default=str))


def describe_difference(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    a, b = _flat(old), _flat(new)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k, "<unset>") != b.get(k, "<unset>")]
    parts = [f"{k}: {a.get(k, '<unset>')!r} there, {b.get(k, '<unset>')!r} now" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return "; ".join(parts) or "unreadable"


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def check_study_file(path: Path, study_name: str) -> None:
    """An existing study file must be an SQLite database holding the study `study_name`: ConfigError in one
    line otherwise. Opened read-only: the file is left exactly as it is."""
    if not path.exists():
        return
    fix = "restore it from a copy, or delete the run folder to start the study afresh"
    if path.stat().st_size == 0:
        raise ConfigError(f"{path} is empty (0 bytes), not a study: {fix}")
    with open(path, "rb") as f:
        if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise ConfigError(f"{path} is not an SQLite database (damaged or overwritten): {fix}")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            check = con.execute("PRAGMA quick_check").fetchone()[0]
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            found = ("studies" in tables and
                     con.execute("SELECT COUNT(*) FROM studies WHERE study_name = ?", (study_name,)).fetchone()[0])
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path} is damaged ({exc}): {fix}") from None
    if check != "ok":
        raise ConfigError(f"{path} is damaged (SQLite: {check}): {fix}")
    if not found:
        raise ConfigError(f"{path} holds no study named {study_name!r} (an empty or foreign database): {fix}")


def check_writable(run_dir: Path, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """The run folder exists (created if need be), takes a file, and its disk has `min_free_bytes` free."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=run_dir, prefix=".write-check.")
        try:
            with os.fdopen(fd, "wb") as f:  # (a raw os.write may write less and not say why)
                f.write(bytes(2**16))
                f.flush()
                os.fsync(f.fileno())
        finally:
            os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"run folder {run_dir} is not writable ({exc.strerror or exc})") from None
    free = shutil.disk_usage(run_dir).free
    if free < min_free_bytes:
        raise OutputError(f"run folder {run_dir}: its disk has {free / 2**20:.0f} MB free, a sweep needs at least "
                          f"{min_free_bytes / 2**20:.0f} MB")


class StudyLock:
    """An exclusive, non-blocking lock on a run folder, held for the whole sweep."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        self._fd: int | None = None

    def __enter__(self) -> StudyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(f"{self.path.parent} is in use by another sweep (pid {owner}); wait for it to end"
                              ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
