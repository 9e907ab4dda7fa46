"""Atomic output files: write to a temporary file beside the destination, then rename it into place.

A failure at any point (a writer raising, the disk filling up, the process being interrupted
before the rename) leaves the destination as it was and no half-written file under its name; the
temporary file is removed on every error the process survives.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from monitor.export.errors import ExportError

__all__ = ["atomic_output", "check_destination"]


def check_destination(out_path: str | os.PathLike[str]) -> Path:
    """The destination as a :class:`Path`, after checking that its folder exists and is writable and
    that it is not itself a folder; :class:`ExportError` otherwise."""
    try:
        out = Path(out_path)
    except TypeError:
        raise ExportError(f"the destination must be a file path, not {type(out_path).__name__}") from None
    if not out.name or out.name in (".", ".."):
        raise ExportError(f"the destination {str(out)!r} does not name a file")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"cannot write {out}: the folder {parent} does not exist")
    if out.is_dir():
        raise ExportError(f"cannot write {out}: it is a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {out}: the folder {parent} is not writable")
    return out


@contextmanager
def atomic_output(out_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the destination's folder; when the block ends without error the
    file is flushed to disk and renamed onto ``out_path`` (``os.replace``). On error it is removed
    and the exception propagates. The file is created readable by its owner only (0600): exports
    hold clinical data. Raises :class:`ExportError` when the folder cannot be written."""
    out = check_destination(out_path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
