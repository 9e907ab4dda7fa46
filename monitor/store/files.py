"""Where the database lives, and what a file on disk is before it is opened."""

from __future__ import annotations

import glob
import os
import urllib.request
from pathlib import Path


from monitor.store.records import DamagedStoreError, StoreError
from monitor.store.schema import APPLICATION_ID

_SQLITE_MAGIC = b"SQLite format 3\x00"


def default_db_path() -> Path:
    """Where the database lives: ``$VIGIL_DB`` if set, else ``<user data dir>/Vigil/vigil.sqlite``
    (platformdirs). The containing folder is created (mode 0700) if missing."""
    env = os.environ.get("VIGIL_DB")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("Vigil", appauthor=False)) / "vigil.sqlite"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def real_path(path: str | os.PathLike[str]) -> Path:
    """The file a path names, every symbolic link resolved: the lock, the journal and the messages
    are about the file itself, whatever path names it."""
    return Path(os.path.realpath(path))


def _ro_uri(path: Path, *, immutable: bool = False) -> str:
    uri = "file:" + urllib.request.pathname2url(str(real_path(path))) + "?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def companions(path: Path) -> list[Path]:
    """The files Vigil keeps beside a database (lock, write-ahead log, migration backups), that exist."""
    found = [Path(f"{path}{suffix}") for suffix in (".lock", "-wal", "-shm")]
    found = [p for p in found if p.exists()]
    return found + backups(path)


def backups(path: Path) -> list[Path]:
    """The backups Vigil made of this database before migrating it (``<file>.v<N>.bak``), newest first."""
    try:
        found = list(path.parent.glob(f"{glob.escape(path.name)}.v*.bak"))
    except OSError:
        return []
    return sorted(found, key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)


def what_to_do(path: Path) -> str:
    """The advice given with a damaged database: the backups there are, and ``vigil salvage``."""
    found = backups(path)
    restore = (f"restore the backup Vigil made before its last upgrade ({found[0]}; it lacks what was recorded "
               "since)" if found else "restore a backup of it if the clinic keeps one (Vigil has made none here)")
    return (f"keep the file as it is, then either {restore}, or run `vigil salvage {path} NEW-FILE` to copy "
            "every readable session into a new database (it reports what it could not read)")


def _inspect_file(path: Path) -> str:
    """'new' or 'vigil'; raises StoreError for anything else. Reads only.

    'new': the path does not exist, or is an empty file with none of the files Vigil keeps beside
    a database (lock, write-ahead log, backups) — a file just made for Vigil (``mktemp``). An empty
    file that has them was a database and lost its content: refused (:class:`DamagedStoreError`),
    never re-initialised."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "new"
    if not path.is_file():
        raise StoreError(f"{path} is not a regular file")
    if size == 0:
        traces = companions(path)
        if traces:
            raise DamagedStoreError(
                f"{path} is empty, but {traces[0].name} beside it shows it was a database: its content is lost. "
                f"Vigil will not start a new database over it: {what_to_do(path)}; or, if an empty database is "
                "really wanted here, delete the empty file first")
        return "new"
    with open(path, "rb") as fh:
        header = fh.read(100)
    if len(header) < 100 or header[:16] != _SQLITE_MAGIC:
        raise StoreError(f"{path} is not a Vigil database (not an SQLite file); left unchanged")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id != APPLICATION_ID:
        raise StoreError(
            f"{path} is an SQLite database of another application (application_id {app_id:#x}), "
            "not a Vigil database; left unchanged")
    return "vigil"
