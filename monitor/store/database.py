"""The store's connection core: opening (lock, integrity, migration), transactions and reads.

:class:`StoreCore` owns the file and its connections; the parts of the store (sessions, device
data, entries, alarms, audit, users, bulk reads) are mixins over it, combined into
:class:`monitor.store.SessionStore`."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Self

log = logging.getLogger("monitor.store")


from drivers.model import Quality

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:  # Windows
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]

from monitor.store.codec import (
    _GENESIS,
    _Block,
    _sid,
    _to_json,
    _ts,
    audit_digest,
)
from monitor.store.files import _chmod_owner_only, _inspect_file, _ro_uri
from monitor.store.records import (
    NotFoundError,
    ReadOnlyError,
    StoreError,
)
from monitor.store.schema import (
    _CURRENT_TRIGGERS,
    APPLICATION_ID,
    MAX_BLOCK_SECONDS,
    MIGRATIONS,
    _read_version,
)


class StoreCore:
    """One SQLite file and its connections: see :class:`monitor.store.SessionStore` for the
    arguments. Every other part of the store builds on :meth:`_tx` (the write transaction) and
    :meth:`_read` (this thread's read connection)."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False,
                 clock: Callable[[], datetime] | None = None, block_seconds: float = 30.0,
                 busy_timeout: float = 5.0) -> None:
        if not 0 < block_seconds <= MAX_BLOCK_SECONDS:
            raise ValueError(f"block_seconds must be in (0, {MAX_BLOCK_SECONDS}], got {block_seconds}")
        self.path = Path(path)
        self.readonly = readonly
        self.block_seconds = float(block_seconds)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._depth = 0
        self._tx_thread: int | None = None
        self._local = threading.local()
        self._readers: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._pending: dict[tuple[int, str], _Block] = {}
        self._dirty: set[tuple[int, str]] = set()
        self._sources: dict[str, int] = {}
        self._qcache: dict[frozenset[Quality], int] = {}
        self._targets: dict[float, int] = {}

        kind = _inspect_file(self.path)
        if readonly:
            if kind == "new":
                raise StoreError(f"{self.path} does not exist; a read-only store cannot create it")
            self._check_readonly_version()
            return
        if not self.path.parent.is_dir():
            raise StoreError(f"folder {self.path.parent} does not exist")
        self._lock_fd = self._acquire_file_lock()
        try:
            self._open_writer(kind)
        except BaseException:
            self._release_file_lock()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            raise

    def _acquire_file_lock(self) -> int:
        lock_path = Path(str(self.path) + ".lock")
        old = os.umask(0o077)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        finally:
            os.umask(old)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            elif msvcrt is not None:  # pragma: no cover - Windows
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            os.close(fd)
            raise StoreError(
                f"{self.path} is already open for writing (by another Vigil or another SessionStore); "
                "open it with readonly=True to review it") from None
        return fd

    def _release_file_lock(self) -> None:
        if self._lock_fd is not None:
            try:
                if fcntl is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _connect_rw(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=self._busy_timeout)

    def _open_writer(self, kind: str) -> None:
        old_umask = os.umask(0o077)
        try:
            conn = self._conn = self._connect_rw()
            if kind == "new":
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            try:
                version = _read_version(conn)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path} cannot be read as a Vigil database: {exc}") from None
            target = len(MIGRATIONS)
            if version > target:
                raise StoreError(
                    f"{self.path} has schema version {version}, written by a newer Vigil; this version "
                    f"reads up to {target}. Update Vigil to open it (the file was left unchanged)")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                log.warning("%s: WAL mode unavailable (journal_mode=%s); readers will block the writer",
                            self.path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA temp_store = MEMORY")  # savepoint journals never touch the disk
            conn.execute("BEGIN IMMEDIATE")  # creates -wal/-shm inside the umask window
            conn.execute("COMMIT")
            _chmod_owner_only(self.path)
        finally:
            os.umask(old_umask)
        if version < target:
            self._migrate(version, target)
        self._restore_triggers()
        self._recover_device_data()

    def _migrate(self, version: int, target: int) -> None:
        conn = self._conn
        assert conn is not None
        if version >= 1:
            backup = Path(f"{self.path}.v{version}.bak")
            old_umask = os.umask(0o077)
            try:
                dst = sqlite3.connect(backup)
                try:
                    conn.backup(dst)
                finally:
                    dst.close()
                os.chmod(backup, 0o600)
            finally:
                os.umask(old_umask)
            log.info("backed up %s (schema %d) to %s before migrating", self.path, version, backup)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for step in range(version, target):
                MIGRATIONS[step](conn)
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                             (str(step + 1),))
            if version == 0:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('created_at', ?)",
                             (self._now_iso(),))
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('application', 'vigil')")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if version:
            log.info("migrated %s from schema %d to %d", self.path, version, target)

    def _restore_triggers(self) -> None:
        conn = self._conn
        assert conn is not None
        present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        missing = {name: sql for name, sql in _CURRENT_TRIGGERS().items() if name not in present}
        if not missing:
            return
        log.warning("store %s: protective triggers missing, restored: %s", self.path, ", ".join(sorted(missing)))
        with self._tx() as c:
            for sql in missing.values():
                c.execute(sql)
            self._audit(c, None, "schema_triggers_restored", None, {"triggers": sorted(missing)})

    def _recover_device_data(self) -> None:
        """Store what a crash left unfinished (the device-data part of the store does it)."""

    def _check_readonly_version(self) -> None:
        conn = sqlite3.connect(_ro_uri(self.path), uri=True, isolation_level=None)
        try:
            version = _read_version(conn)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} cannot be read as a Vigil database: {exc}") from None
        finally:
            conn.close()
        target = len(MIGRATIONS)
        if version > target:
            raise StoreError(f"{self.path} has schema version {version}, written by a newer Vigil; "
                             f"this version reads up to {target}")
        if version < target:
            raise StoreError(f"{self.path} has schema version {version} and needs upgrading to {target}; "
                             "open it read-write once to migrate it")

    def _now_iso(self) -> str:
        return self._clock().astimezone(timezone.utc).isoformat()

    def _now(self) -> float:
        return _ts(self._clock(), "clock()")

    def close(self) -> None:
        """Write pending waveform blocks, close every connection and release the write lock.
        Idempotent. Do not call while another thread is writing (stop the StoreWriter first)."""
        if self._closed:
            return
        try:
            if self._conn is not None and self._pending:
                try:
                    self.flush_waveforms()
                except Exception:  # keep closing; the pending rows survive in waveform_pending
                    log.exception("could not write pending waveform blocks while closing %s", self.path)
        finally:
            self._closed = True
            with self._readers_lock:
                for _thread, reader in self._readers:
                    try:
                        reader.close()
                    except sqlite3.Error:
                        pass
                self._readers.clear()
            if self._conn is not None:
                with self._lock:
                    self._conn.close()
                    self._conn = None
            self._release_file_lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_writable(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        if self.readonly or self._conn is None:
            raise ReadOnlyError(f"{self.path} was opened read-only")

    def _snapshot(self) -> tuple[dict[tuple[int, str], _Block], set[tuple[int, str]], dict[str, int]]:
        return ({k: b.clone() for k, b in self._pending.items()}, set(self._dirty), dict(self._sources))

    def _restore(self, snap: tuple[dict[tuple[int, str], _Block], set[tuple[int, str]], dict[str, int]]) -> None:
        self._pending, self._dirty, self._sources = snap

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._check_writable()
        with self._lock:
            conn = self._conn
            assert conn is not None
            if self._depth == 0:
                snap = self._snapshot()
                conn.execute("BEGIN IMMEDIATE")
                self._depth = 1
                self._tx_thread = threading.get_ident()
                try:
                    yield conn
                    self._persist_tails(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    self._restore(snap)
                    raise
                finally:
                    self._depth = 0
                    self._tx_thread = None
            else:
                name = f"sp{self._depth}"
                snap = self._snapshot()
                conn.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield conn
                    conn.execute(f"RELEASE {name}")
                except BaseException:
                    try:
                        conn.execute(f"ROLLBACK TO {name}")
                        conn.execute(f"RELEASE {name}")
                    except sqlite3.Error:
                        pass
                    self._restore(snap)
                    raise
                finally:
                    self._depth -= 1

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several write calls into one atomic transaction (all or nothing).

        Nesting is allowed (inner levels are savepoints, and every write method is itself atomic,
        also inside a group). The store's write lock is held for the whole block, so other
        threads' writes wait; keep it short. Reads on this thread inside the block see its
        uncommitted writes. Raises :class:`ReadOnlyError` on a read-only store.
        """
        with self._tx():
            yield

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreError("the store is closed")
        if self._tx_thread == threading.get_ident() and self._conn is not None:
            with self._lock:
                yield self._conn
            return
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(_ro_uri(self.path), uri=True, isolation_level=None,
                                   check_same_thread=False, timeout=self._busy_timeout)
            self._local.conn = conn
            with self._readers_lock:  # close the read connections of threads that have ended
                alive = []
                for ref, reader in self._readers:
                    thread = ref()
                    if thread is not None and thread.is_alive():
                        alive.append((ref, reader))
                    else:
                        reader.close()
                alive.append((weakref.ref(threading.current_thread()), conn))
                self._readers = alive
        if conn.in_transaction:  # a read inside a read on this thread: same snapshot
            yield conn
            return
        conn.execute("BEGIN")  # one snapshot for all the statements of the read
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _audit(self, conn: sqlite3.Connection, user: str | None, action: str, session_id: int | None,
               payload: dict[str, Any]) -> int:
        payload_json = _to_json(payload, "audit payload")
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, _GENESIS)
        t = self._now()
        digest = audit_digest(prev, seq, t, user, session_id, action, json.loads(payload_json))
        conn.execute("INSERT INTO audit (seq, t, user_login, session_id, action, payload_json, prev_hash, hash) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (seq, t, user, session_id, action, payload_json, prev, digest))
        return seq

    def _session_status(self, conn: sqlite3.Connection, session_id: int) -> str:
        row = conn.execute("SELECT status FROM sessions WHERE id = ?", (_sid(session_id),)).fetchone()
        if row is None:
            raise NotFoundError(f"no session {session_id}")
        return row[0]

    def _require_open(self, conn: sqlite3.Connection, session_id: int) -> None:
        status = self._session_status(conn, session_id)
        if status != "open":
            raise ReadOnlyError(f"session {session_id} is {status}: its record is read-only "
                                "(only amendments with a reason can be added)")

    def _source_id(self, conn: sqlite3.Connection, name: str) -> int:
        sid = self._sources.get(name)
        if sid is None:
            if not isinstance(name, str):
                raise TypeError("source must be a string")
            row = conn.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
            sid = row[0] if row else conn.execute("INSERT INTO sources (name) VALUES (?)", (name,)).lastrowid
            self._sources[name] = sid
        return sid

    @staticmethod
    def _range(where: list[str], args: list[Any], column: str, start: datetime | None,
               end: datetime | None) -> None:
        if start is not None:
            where.append(f"{column} >= ?")
            args.append(_ts(start, "start"))
        if end is not None:
            where.append(f"{column} < ?")
            args.append(_ts(end, "end"))
