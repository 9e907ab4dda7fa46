"""Where the database lives, and what a file on disk is before it is opened."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:  # Windows
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]

from monitor.store.records import StoreError
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


def _chmod_owner_only(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        try:
            os.chmod(p, 0o600)
        except FileNotFoundError:
            pass


def _ro_uri(path: Path) -> str:
    return "file:" + urllib.request.pathname2url(str(path.resolve())) + "?mode=ro"


def _inspect_file(path: Path) -> str:
    """'new' (missing or empty) or 'vigil'; raises StoreError for anything else. Reads only."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "new"
    if not path.is_file():
        raise StoreError(f"{path} is not a regular file")
    if size == 0:
        wal = Path(str(path) + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(f"{path} is empty but has a write-ahead log: not a Vigil database; left unchanged")
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
