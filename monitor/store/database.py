"""The store's connection core: opening (lock, integrity, migration), transactions and reads.

:class:`StoreCore` owns the file and its connections; the parts of the store (sessions, device
data, entries, alarms, audit, users, bulk reads) are mixins over it, combined into
:class:`monitor.store.SessionStore`."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sqlite3
import stat
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

log = logging.getLogger("monitor.store")


from drivers.model import Quality

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]  # no POSIX locks here: msvcrt is used
try:  # Windows
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]  # not Windows: fcntl is used

from monitor.store.codec import (
    _GENESIS,
    _Block,
    _rowid,
    _sid,
    _to_json,
    _ts,
    audit_digest,
)
from monitor.store.files import _inspect_file, _ro_uri, real_path, what_to_do
from monitor.store.keys import key_id, load_keys, mac, new_key
from monitor.store.records import (
    DamagedStoreError,
    NotFoundError,
    ReadOnlyError,
    StoreError,
    StoreLockedError,
)
from monitor.store.schema import (
    _CURRENT_TRIGGERS,
    APPLICATION_ID,
    MAX_BLOCK_SECONDS,
    MIGRATIONS,
    _read_version,
    schema_objects,
    trigger_differences,
)

#: The audit action of the row from which the chain is keyed with a (new) key.
KEYED_ACTION = "audit_chain_keyed"

#: Page size of a new database file, bytes (an existing file keeps its own; SQLite's default is
#: 4096). Every commit rewrites whole pages — the last leaf of each table and index it appends to,
#: the session row, the file header, the unfinished waveform blocks — into the write-ahead log, so
#: smaller pages cost less per commit: a recording writes ~22 MB per session-hour with 1 KiB pages
#: against ~29 MB with 4 KiB ones. Blobs (waveform blocks) simply span more overflow pages.
PAGE_SIZE = 1024
#: The write-ahead log is copied back into the database (a passive checkpoint) once it holds this
#: many bytes of pages (SQLite's default is 1000 pages): a page rewritten by several commits in
#: between is copied once.
CHECKPOINT_BYTES = 4 * 1024 * 1024


class StoreCore:
    """One SQLite file and its connections: see :class:`monitor.store.SessionStore` for the
    arguments. Every other part of the store builds on :meth:`_tx` (the write transaction) and
    :meth:`_read` (this thread's read connection)."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False,
                 clock: Callable[[], datetime] | None = None, block_seconds: float = 30.0,
                 busy_timeout: float = 5.0, check_integrity: bool | None = None) -> None:
        if not 0 < block_seconds <= MAX_BLOCK_SECONDS:
            raise ValueError(f"block_seconds must be in (0, {MAX_BLOCK_SECONDS}], got {block_seconds}")
        self.path = Path(path)
        #: The file itself (symbolic links resolved): the lock and the journal belong to it.
        self.real_path = real_path(self.path)
        self.readonly = readonly
        #: True when the file is read through SQLite's ``immutable`` mode (read-only storage).
        self.immutable = False
        self.block_seconds = float(block_seconds)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._depth = 0
        self._tx_thread: int | None = None
        #: The write connection's ``PRAGMA synchronous`` (FULL; NORMAL during a light commit).
        self._synchronous = "FULL"
        self._local = threading.local()
        #: Each reading thread's connection and the lock it holds while reading (so that
        #: :meth:`close` never closes a connection under a read: SQLite would crash the process).
        self._readers: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection, threading.RLock]] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._pending: dict[tuple[int, str], _Block] = {}
        self._dirty: set[tuple[int, str]] = set()
        self._sources: dict[str, int] = {}
        self._qcache: dict[frozenset[Quality], int] = {}
        self._targets: dict[float, int] = {}
        self._has_mac = False
        #: Keys of this database's audit chain found on this computer (key id → key).
        self._audit_keys: dict[str, bytes] = {}
        self._audit_key: bytes | None = None  # the key new audit rows are MACed with

        kind = _inspect_file(self.real_path)
        if readonly:
            if kind == "new":
                raise StoreError(f"{self.path} does not exist; a read-only store cannot create it")
            self._open_readonly(bool(check_integrity))
            return
        if check_integrity is None:
            check_integrity = True
        self._check_can_write(kind)
        self._lock_fd = self._acquire_file_lock()
        try:
            self._open_writer(kind, check_integrity)
        except BaseException:
            self._release_file_lock()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            raise

    # ------------------------------------------------------------------ opening
    def _check_can_write(self, kind: str) -> None:
        """Refuse, before anything is created or locked, a file Vigil must not write to: one with
        several names (hard links: SQLite would keep a journal per name), a read-only file or folder."""
        folder = self.real_path.parent
        if not folder.is_dir():
            raise StoreError(f"folder {self.path.parent} does not exist")
        try:
            media_ro = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):  # pragma: no cover - no statvfs (Windows)
            media_ro = False
        if media_ro or not folder.stat().st_mode & 0o222 or not os.access(folder, os.W_OK):
            raise ReadOnlyError(
                f"{self.path} is on read-only storage ({folder} cannot be written): it can be reviewed "
                "(opened read-only) but not recorded into")
        if kind == "vigil":
            info = self.real_path.stat()
            if info.st_nlink > 1:
                raise StoreError(
                    f"{self.path} has {info.st_nlink} names (hard links): SQLite keeps a journal per name, so two "
                    "Vigils writing through two names could damage it. Keep one name (remove the other links); "
                    "it can still be reviewed read-only")
            if not info.st_mode & stat.S_IWUSR or not os.access(self.real_path, os.W_OK):
                raise ReadOnlyError(
                    f"{self.path} is read-only (mode {stat.S_IMODE(info.st_mode):04o}): it can be reviewed "
                    "(opened read-only) but not recorded into. Vigil does not change a file's permissions; make "
                    "it writable yourself if it should take new sessions")

    def _acquire_file_lock(self) -> int:
        lock_path = Path(f"{self.real_path}.lock")
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
            holder = _lock_holder(fd)
            os.close(fd)
            raise StoreLockedError(
                f"{self.path} is already open for writing by {holder}; a database takes one writer at a time, "
                "whatever path names it. Open it read-only to review it") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode(), 0)
        except OSError:  # the lock holds; only the note of who holds it is missing
            log.warning("could not note the writer in %s", lock_path)
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
        return sqlite3.connect(self.real_path, isolation_level=None, check_same_thread=False,
                               timeout=self._busy_timeout)

    def _connect_ro(self) -> sqlite3.Connection:
        """A read-only connection; on read-only storage (SQLite cannot make its shared-memory file
        beside the database) the file is opened ``immutable`` instead, once, for the store's life."""
        if not self.immutable:
            conn = sqlite3.connect(_ro_uri(self.real_path), uri=True, isolation_level=None, check_same_thread=False,
                                   timeout=self._busy_timeout)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                wal = Path(f"{self.real_path}-wal")
                if wal.exists() and wal.stat().st_size > 0:
                    raise StoreError(
                        f"{self.path} cannot be read here ({exc}): it has an unfinished write-ahead log and its "
                        "folder cannot be written. Copy the folder to writable storage to review it") from None
                self.immutable = True
                log.info("%s is on read-only storage: reading it as immutable", self.path)
        return sqlite3.connect(_ro_uri(self.real_path, immutable=True), uri=True, isolation_level=None,
                               check_same_thread=False, timeout=self._busy_timeout)

    def _quick_check(self, conn: sqlite3.Connection) -> None:
        """SQLite's ``quick_check`` (every page and record readable, no index check): a damaged file
        raises :class:`DamagedStoreError` saying what to do, before anything is written to it."""
        try:
            problems = [r[0] for r in conn.execute("PRAGMA quick_check(20)").fetchall() if r[0] != "ok"]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise DamagedStoreError(f"{self.path} is damaged (SQLite's integrity check: {problems[0]}{more}). Vigil "
                                    f"will not write to it: {what_to_do(self.path)}")

    def _read_version_checked(self, conn: sqlite3.Connection) -> int:
        try:
            return _read_version(conn)
        except sqlite3.DatabaseError as exc:
            raise DamagedStoreError(f"{self.path} cannot be read as a Vigil database ({exc}): "
                                    f"{what_to_do(self.path)}") from None

    def _open_readonly(self, check_integrity: bool) -> None:
        conn = self._connect_ro()
        try:
            version = self._read_version_checked(conn)
            target = len(MIGRATIONS)
            if version > target:
                raise StoreError(f"{self.path} has schema version {version}, written by a newer Vigil; "
                                 f"this version reads up to {target}")
            if version < target:
                raise StoreError(f"{self.path} has schema version {version} and needs upgrading to {target}; "
                                 "open it read-write once to migrate it")
            if check_integrity:
                self._quick_check(conn)
            self._has_mac = _has_mac(conn)
            self._audit_keys = _keys_of(conn)
        finally:
            conn.close()

    def _open_writer(self, kind: str, check_integrity: bool) -> None:
        old_umask = os.umask(0o077)   # a new file and its -wal/-shm are made owner-only
        try:
            conn = self._conn = self._connect_rw()
            if kind != "new" and check_integrity:
                self._quick_check(conn)   # before anything is written
            if kind == "new":
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before the first write fixes it
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            version = self._read_version_checked(conn)
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
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(1, CHECKPOINT_BYTES // page_size)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA temp_store = MEMORY")  # savepoint journals never touch the disk
            conn.execute("BEGIN IMMEDIATE")  # creates -wal/-shm inside the umask window
            conn.execute("COMMIT")
        finally:
            os.umask(old_umask)
        if kind != "new" and stat.S_IMODE(self.real_path.stat().st_mode) & 0o077:
            log.warning("%s can be read by other accounts (mode %04o); Vigil leaves permissions as they are",
                        self.path, stat.S_IMODE(self.real_path.stat().st_mode))
        if version < target:
            self._migrate(version, target)
        self._has_mac = _has_mac(conn)
        self._audit_keys = _keys_of(conn)
        current = _current_key_id(conn) if self._has_mac else None
        if current is not None and current in self._audit_keys:
            self._audit_key = self._audit_keys[current]
        self._restore_triggers()
        if self._has_mac and self._audit_key is None:
            self._key_chain(current)
        self._record_schema(migrated=version < target)
        self._recover_device_data()  # unfinished blocks, then the tail file

    def _migrate(self, version: int, target: int) -> None:
        conn = self._conn
        assert conn is not None
        if version >= 1:
            backup = Path(f"{self.real_path}.v{version}.bak")
            old_umask = os.umask(0o077)  # the backup is made owner-only
            try:
                dst = sqlite3.connect(backup)
                try:
                    conn.backup(dst)
                finally:
                    dst.close()
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
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('chair_uid', ?)", (str(uuid.uuid4()),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if version:
            log.info("migrated %s from schema %d to %d", self.path, version, target)

    def _restore_triggers(self) -> None:
        """Put back the protective triggers as the current schema has them: missing ones, ones whose
        SQL was changed, and drop triggers the schema does not have; each such repair is audited."""
        conn = self._conn
        assert conn is not None
        expected = _CURRENT_TRIGGERS()
        diff = trigger_differences(conn, expected)
        if not any(diff.values()):
            return
        log.warning("store %s: protective triggers tampered with, restored: %s", self.path,
                    "; ".join(f"{k} {', '.join(v)}" for k, v in diff.items() if v))
        with self._tx() as c:
            for name in diff["changed"] + diff["unexpected"]:
                c.execute(f'DROP TRIGGER "{name}"')
            for name in diff["missing"] + diff["changed"]:
                c.execute(expected[name])
            payload: dict[str, Any] = {"triggers": diff["missing"]}
            if diff["changed"] or diff["unexpected"]:
                payload.update(changed=diff["changed"], unexpected=diff["unexpected"])
            self._audit(c, None, "schema_triggers_restored", None, payload)

    def _ensure_uid(self) -> str:
        """This database's identity (``meta.chair_uid``), made and audited the first time."""
        with self._tx() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'chair_uid'").fetchone()
            if row is not None:
                return str(row[0])
            uid = str(uuid.uuid4())
            conn.execute("INSERT INTO meta (key, value) VALUES ('chair_uid', ?)", (uid,))
            self._audit(conn, None, "chair_identity_created", None, {"chair_uid": uid})
            return uid

    def _key_chain(self, previous: str | None) -> None:
        """Key the audit chain from here on with a new key: a new database from its first row; an
        older one (or one opened on a computer that does not have its key) from an
        :data:`KEYED_ACTION` row that records the switch."""
        uid = self._ensure_uid()
        try:
            key = new_key(uid)
        except StoreError as exc:  # recording goes on; verify reports the rows without a MAC
            log.error("%s: the audit chain cannot be keyed: %s", self.path, exc)
            return
        self._audit_keys[key_id(key)] = key
        assert self._conn is not None
        if self._conn.execute("SELECT 1 FROM audit LIMIT 1").fetchone() is None:
            self._audit_key = key  # nothing written yet: every row is keyed
            return
        payload: dict[str, Any] = {"key_id": key_id(key), "previous_key_id": previous}
        if previous is not None:
            payload["reason"] = "the key of the rows before is not on this computer"
        with self._tx() as c:
            self._audit_key = key
            self._audit(c, None, KEYED_ACTION, None, payload)
        log.info("%s: audit chain keyed with key %s", self.path, key_id(key))

    def _record_schema(self, migrated: bool) -> None:
        """Keep a fingerprint of the tables, indexes and views in ``meta`` (MACed when keyed); a
        difference found at opening that no migration explains is audited (``schema_changed``)."""
        conn = self._conn
        assert conn is not None
        now = schema_objects(conn)
        text = json.dumps(now, sort_keys=True, separators=(",", ":"))
        stored = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('schema_objects', 'schema_mac')"))
        signed = mac(self._audit_key, _sha(text)) if self._audit_key is not None else None
        if stored.get("schema_objects") == text and stored.get("schema_mac") == signed:
            return
        with self._tx() as c:
            if "schema_objects" in stored and not migrated:
                try:
                    before: dict[str, str] = json.loads(stored["schema_objects"])
                except ValueError:
                    before = {}
                change = {"added": sorted(set(now) - set(before)), "removed": sorted(set(before) - set(now)),
                          "changed": sorted(k for k in now if k in before and now[k] != before[k])}
                old_mac = stored.get("schema_mac") or ""
                if signed and old_mac.split(":")[0] == signed.split(":")[0] and old_mac != signed:
                    change["record_altered"] = ["the schema record in meta was changed by hand"]
                if any(change.values()):
                    log.warning("store %s: schema changed outside Vigil: %s", self.path, change)
                    self._audit(c, None, "schema_changed", None, change)
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_objects', ?)", (text,))
            if signed is not None:
                c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_mac', ?)", (signed,))

    def _recover_device_data(self) -> None:
        """Store what a crash left unfinished (the device-data part of the store does it)."""

    def _now_iso(self) -> str:
        return self._clock().astimezone(timezone.utc).isoformat()

    def _now(self) -> float:
        return _ts(self._clock(), "clock()")

    if TYPE_CHECKING:  # waveform blocks: written by DeviceDataMixin, which every SessionStore has
        def flush_waveforms(self, session_id: int | None = None) -> None:
            """Write every unfinished waveform block (see DeviceDataMixin.flush_waveforms)."""

        def _persist_tails(self, conn: sqlite3.Connection) -> None: ...

        def _flush_blocks(self, conn: sqlite3.Connection, keys: list[tuple[int, str]]) -> None: ...

    def close(self) -> None:
        """Write pending waveform blocks, close every connection and release the write lock.
        Idempotent. Do not call while another thread is writing (stop the StoreWriter first)."""
        if self._closed:
            return
        try:
            if self._conn is not None and self._pending:
                try:
                    self.flush_waveforms()
                except Exception as exc:  # keep closing; the pending rows survive in waveform_pending
                    log.error("could not write pending waveform blocks while closing %s: %s", self.path, exc)
        finally:
            self._closed = True
            with self._readers_lock:
                for _thread, reader, in_use in self._readers:
                    reader.interrupt()   # a read in progress on another thread stops at its next step …
                    with in_use:         # … and is over before its connection closes
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
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        self._check_writable()
        with self._lock:
            conn = self._conn
            assert conn is not None
            if self._depth == 0:
                snap = self._snapshot()
                if self._synchronous != ("FULL" if durable else "NORMAL"):
                    self._synchronous = "FULL" if durable else "NORMAL"
                    conn.execute(f"PRAGMA synchronous = {self._synchronous}")
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
                    if not durable:
                        try:
                            conn.execute("PRAGMA synchronous = FULL")
                            self._synchronous = "FULL"
                        except sqlite3.Error:  # the next durable transaction sets it again
                            log.warning("could not set synchronous = FULL again on %s", self.path)
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
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        """Group several write calls into one atomic transaction (all or nothing).

        Nesting is allowed (inner levels are savepoints, and every write method is itself atomic,
        also inside a group). The store's write lock is held for the whole block, so other
        threads' writes wait; keep it short. Reads on this thread inside the block see its
        uncommitted writes. Raises :class:`ReadOnlyError` on a read-only store.

        ``durable=False`` (an outermost block only; ignored when nested) commits without waiting
        for the disk (``synchronous=NORMAL``): a crash of the process loses nothing, but a power
        cut may lose this commit until the next durable commit or checkpoint has reached the disk.
        The writer uses it for device data that its tail file also holds (light commits).
        """
        with self._tx(durable):
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
            in_use = threading.RLock()
            with self._readers_lock:  # close the read connections of threads that have ended
                if self._closed:
                    raise StoreError("the store is closed")
                conn = self._connect_ro()
                alive = []
                for ref, reader, lock in self._readers:
                    thread = ref()
                    if thread is not None and thread.is_alive():
                        alive.append((ref, reader, lock))
                    else:
                        reader.close()
                alive.append((weakref.ref(threading.current_thread()), conn, in_use))
                self._readers = alive
            self._local.conn, self._local.in_use = conn, in_use
        with self._local.in_use:
            if self._closed:   # closed while this thread waited for its own connection's lock
                raise StoreError("the store is closed")
            if conn.in_transaction:  # a read inside a read on this thread: same snapshot
                yield conn
                return
            conn.execute("BEGIN")  # one snapshot for all the statements of the read
            try:
                yield conn
            finally:
                if not self._closed:
                    conn.execute("COMMIT")

    def _audit(self, conn: sqlite3.Connection, user: str | None, action: str, session_id: int | None,
               payload: dict[str, Any]) -> int:
        payload_json = _to_json(payload, "audit payload")
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, _GENESIS)
        t = self._now()
        digest = audit_digest(prev, seq, t, user, session_id, action, json.loads(payload_json))
        if self._has_mac:
            signed = mac(self._audit_key, digest) if self._audit_key is not None else None
            conn.execute("INSERT INTO audit (seq, t, user_login, session_id, action, payload_json, prev_hash, hash, "
                         "mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (seq, t, user, session_id, action, payload_json, prev, digest, signed))
        else:  # a file of schema 4 or older being written by a test's patched schema
            conn.execute("INSERT INTO audit (seq, t, user_login, session_id, action, payload_json, prev_hash, hash) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (seq, t, user, session_id, action, payload_json, prev,
                                                             digest))
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
            sid = int(row[0]) if row else _rowid(conn.execute("INSERT INTO sources (name) VALUES (?)", (name,)))
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


def _lock_holder(fd: int) -> str:
    """Who holds a lock file, from the note its holder wrote in it."""
    try:
        note = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        pid, host, since = int(note["pid"]), str(note["host"]), str(note["since"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "another Vigil (not identified)"
    if pid == os.getpid() and host == socket.gethostname():
        return f"another store in this process (pid {pid}, since {since})"
    return f"another Vigil (process {pid} on {host}, since {since})"


def _has_mac(conn: sqlite3.Connection) -> bool:
    return any(r[1] == "mac" for r in conn.execute("PRAGMA table_info(audit)"))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _keys_of(conn: sqlite3.Connection) -> dict[str, bytes]:
    """The audit keys of the database on ``conn`` found on this computer (none without an identity)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'chair_uid'").fetchone() if conn.execute(
        "SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() else None
    return load_keys(str(row[0])) if row is not None else {}


def _current_key_id(conn: sqlite3.Connection) -> str | None:
    """The key id of the chain's last MACed row (None: no row is keyed)."""
    row = conn.execute("SELECT mac FROM audit WHERE mac IS NOT NULL ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else str(row[0]).split(":")[0]
