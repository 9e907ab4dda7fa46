"""Atomic output files: write to a temporary file beside the destination, then rename it into place.

A failure at any point (a writer raising, the disk filling up, the process being interrupted
before the rename) leaves the destination as it was and no half-written file under its name; the
temporary file is removed on every error the process survives.

What a destination may be (:func:`check_destination`): a new file, or — only when the caller says
so (``overwrite``: ``vigil export --force``, or the save dialog's own confirmation) — an existing
regular file. Never a device node, a fifo, a socket, a folder or a symbolic link (running as root,
``--out /dev/null`` once replaced the system's ``/dev/null`` with a regular file), and never a
*protected* file: the database Vigil has open, whatever path names it (compared by device and inode),
or a file it keeps beside it (its ``-wal``, ``-shm`` and ``-journal`` files, its backups and keys:
``<database>.*``). The check is made again just before the rename.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from monitor.export.errors import ExportError

__all__ = ["atomic_output", "check_destination", "DestinationExists"]


class DestinationExists(ExportError):
    """The destination is an existing file and replacing it was not asked for (``--force``)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device (character special file)"),
                       (stat.S_ISBLK, "a device (block special file)"), (stat.S_ISFIFO, "a fifo (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _check_database(out: Path, st: os.stat_result | None, database: str | os.PathLike[str]) -> None:
    """Refuse ``out`` when it is the database (any name of it), one of SQLite's files beside it, or
    a file named after it in its folder (``<database>-…``, ``<database>.…``: backups, keys)."""
    real = Path(os.path.realpath(database))
    if st is not None:
        for name in (real.name, *(real.name + s for s in ("-wal", "-shm", "-journal"))):
            try:
                same = _same_file(st, os.stat(real.with_name(name)))
            except OSError:
                continue
            if same:
                what = "the database Vigil has open" if name == real.name else f"the {name} file of the database"
                raise ExportError(f"cannot write {out}: it is {what} ({database}); choose another file name")
    here = Path(os.path.realpath(out.parent if str(out.parent) else "."))
    if here == real.parent and (out.name == real.name or out.name.startswith((real.name + "-", real.name + "."))):
        raise ExportError(f"cannot write {out}: Vigil keeps that file with its database {database}; "
                          "choose another file name")


def check_destination(out_path: str | os.PathLike[str], *, overwrite: bool = False,
                      database: str | os.PathLike[str] | None = None) -> Path:
    """The destination as a :class:`Path` after checking it (see the module docstring): its folder
    exists and is writable; it is not a folder, a device, a fifo, a socket or a symbolic link; it is
    not the SQLite ``database`` Vigil has open nor a file kept with it; and, unless ``overwrite``, it
    does not exist yet (:class:`DestinationExists`). :class:`ExportError` otherwise."""
    try:
        out = Path(out_path)
    except TypeError:
        raise ExportError(f"the destination must be a file path, not {type(out_path).__name__}") from None
    if not out.name or out.name in (".", ".."):
        raise ExportError(f"the destination {str(out)!r} does not name a file")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"cannot write {out}: the folder {parent} does not exist")
    try:
        st: os.stat_result | None = os.lstat(out)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        what = _kind(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(out)
            what += f" (to {target}): give the path of the file itself"
        raise ExportError(f"cannot write {out}: it is {what}; an export is only written to a new or regular file")
    if database is not None:
        _check_database(out, st, database)
    if st is not None and not overwrite:
        raise DestinationExists(f"{out} already exists: choose another file, or replace it "
                                "(vigil export --force)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {out}: the folder {parent} is not writable")
    return out


@contextmanager
def atomic_output(out_path: str | os.PathLike[str], *, overwrite: bool = True,
                  database: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Yield a temporary path in the destination's folder; when the block ends without error the
    file is flushed to disk and renamed onto ``out_path`` (``os.replace``), after
    :func:`check_destination` (with ``overwrite`` and ``database``) is passed again. On error it is
    removed and the exception propagates. The file is created readable by its owner only (0600):
    exports hold clinical data. Raises :class:`ExportError` when the destination cannot be used."""
    out = check_destination(out_path, overwrite=overwrite, database=database)
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
        check_destination(out, overwrite=overwrite, database=database)   # what it is now, not before writing
        os.replace(tmp, out)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
