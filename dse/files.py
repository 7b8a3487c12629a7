"""Result files, written the one way every command writes them: atomically and readable by others.

`atomic_write` writes into a temporary file beside the target and renames it over the target, so a reader (or a
sweep interrupted halfway) sees the old file or the new one, never half of one. The temporary file is created
private (mode 0600, `tempfile.mkstemp`); before the rename it gets the mode an ordinary new file gets, 0666 less
the process's umask (0644 under the usual umask 022), so a colleague can read a run folder.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dse.errors import OutputError


def file_mode() -> int:
    """0666 less the umask: what `open(path, "w")` would create."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> Path:
    """Call `write(tmp)` to fill a temporary file named like `path` (same suffix: writers such as numpy's and
    matplotlib's read the format from it), give it the ordinary file mode, rename it to `path`. A folder that
    takes no file (read-only, a full disk) is an OutputError naming the file."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: Path(p).write_text(text))


def names_one_folder(name: str) -> bool:
    """Whether `name` is one path component a folder's name may begin with: not blank, no '/', no NUL (a name
    that is a whole folder name must not be '.' or '..' either; its caller checks that)."""
    return bool(name.strip()) and "/" not in name and "\0" not in name


def check_folder(path: str | Path, what: str = "run folder") -> None:
    """Fail now (OutputError), not after the work, where `path` cannot become a folder of results: it, or the
    nearest of its ancestors that exists, is a file or takes no new entries. Creates nothing (a run refused
    later for bad input leaves no folder behind). `what` names the folder in the message."""
    path = Path(path).absolute()
    existing = path
    try:
        while not existing.exists():
            existing = existing.parent
    except OSError as exc:  # a name longer than the file system takes (exists() raises for it): a traceback once
        raise OutputError(f"{what} {path} cannot be made ({exc.strerror or exc})") from None
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is under {existing}, a file"
        raise OutputError(f"{what} {path} {where}, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path} cannot be written ({existing} takes no new files)")


def claim_folder(path: str | Path) -> Path:
    """A new folder made by this process alone: `path`, else ``path_2``, ``path_3``, ... (the first that did not
    exist). Two runs started in the same second, whose time-stamped default folders are the same, each get their
    own instead of writing into one."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for i in itertools.count(1):
            candidate = path if i == 1 else path.with_name(f"{path.name}_{i}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as exc:
        raise OutputError(f"run folder {path} cannot be made ({exc.strerror or exc})") from None


ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive; an empty one begins with the end record
EMPTY_ZIP = b"PK\x05\x06"


def _json_head(head: bytes) -> bool:
    """Whether a file's first bytes begin JSON text: an object or an array (a run's report.json)."""
    return head.lstrip()[:1] in (b"{", b"[")


def begins_as_json(path: str | Path) -> bool:
    """Whether the file at `path` begins as JSON text (`_json_head`)."""
    try:
        with open(path, "rb") as f:
            return _json_head(f.read(64))
    except OSError:
        return False


def not_an_npz(path: str | Path) -> str | None:
    """Why the file at `path` cannot be an .npz archive (it is empty, or begins as something else: numpy's own
    word for such a file is that it "contains pickled (object) data"), or None: it begins as one, or cannot be
    opened (the reader names that)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if not head:
        return "the file is empty"
    if head[:4] in (ZIP_MAGIC, EMPTY_ZIP):
        return None
    what = ("JSON text" if _json_head(head) else "an .npy array" if head.startswith(b"\x93NUMPY")
            else "text" if all(c >= 32 or c in b"\t\r\n" for c in head) else "other bytes")
    return f"not an .npz archive (it begins with {what})"


def npz_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """The shape of every array in the .npz at `path`, from the arrays' headers alone (a dataset of gigabytes
    is not read to learn what it holds). Raises OSError, ValueError or zipfile.BadZipFile where the archive or
    a header cannot be read."""
    import zipfile

    from numpy.lib import format as npy

    shapes = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            with archive.open(member) as f:
                version = npy.read_magic(f)
                header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                shapes[member[: -len(".npy")]] = tuple(header(f)[0])
    return shapes
