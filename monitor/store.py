"""The session store: one SQLite file holding everything Vigil records.

Plain Python + :mod:`sqlite3` + numpy + zlib; no Qt. The store keeps rows; clinical rules (who may
do what, alarm logic, PIN hashing) live elsewhere.

File
----
* SQLite in WAL mode, ``synchronous=FULL``, foreign keys on. The file (and its ``-wal``/``-shm``)
  is readable and writable by its owner only (0600). ``PRAGMA application_id`` marks the file as
  Vigil's (:data:`APPLICATION_ID`); an existing file without that mark (garbage bytes, another
  application's SQLite database) is refused with :class:`StoreError` and never modified.
* ``meta.schema_version`` is the schema version. :data:`MIGRATIONS` holds one function per version
  step (``MIGRATIONS[i]`` upgrades version ``i`` to ``i + 1``); an older file is migrated forward on
  opening (after a backup copy ``<file>.v<old>.bak``), a newer one is refused.
* One read-write :class:`SessionStore` per file at a time: it holds an advisory lock on
  ``<file>.lock`` (a second read-write opening raises :class:`StoreError`; read-only openings are
  always allowed).

Times
-----
Stored as REAL UTC epoch seconds. The API takes and returns timezone-aware UTC
:class:`~datetime.datetime` objects (a naive datetime raises ``ValueError``); bulk queries return
numpy float64 epoch seconds. Time ranges are half-open: ``start <= t < end``; ``None`` = unbounded.

Append-only
-----------
SQLite triggers (``RAISE(ABORT, ...)``) refuse UPDATE and DELETE on observations, waveforms,
conditions, entries, audit, alarm_actions, gaps and settings; sessions can change only while
``status = 'open'`` (plus the single close transition); alarm rows may only get their end (once)
and a raised ``max_priority``. Data and entries for a closed session are refused, except
amendment entries. The Python API checks first and raises :class:`ReadOnlyError` with a clear
message; the triggers are the backstop for anything that bypasses the API.

Audit trail
-----------
Every call that records a staff action appends a row to ``audit`` in the same transaction. The
rows are hash-chained: ``hash = sha256(prev_hash + canonical_json({seq, t, user, session, action,
payload}))`` with canonical JSON = sorted keys, no spaces, UTF-8; the first row's ``prev_hash`` is
64 zeros. :meth:`SessionStore.verify_audit` recomputes the chain.

Observation quality
-------------------
``observations.quality`` is a bitmask of :class:`drivers.model.Quality` in the fixed order of
:data:`QUALITY_BITS` (bit 0 = implausible … bit 10 = manual). New flags get new, higher bits;
existing bits never move.

Waveforms
---------
Incoming chunks are coalesced per (session, channel) into blocks of ``block_seconds`` (default
30 s: a compressed block then spans several 4 KiB pages, so the partly filled last page costs
little; 8 s blocks cost ~20 % more space). A chunk whose start is not the running block's end
(within half a sample), or whose rate or source differs, starts a new block; a chunk that
continues the timeline is placed on it (start jitter within half a sample never shifts samples).
A block is stored as ``zlib(byte-shuffled little-endian float32)`` (``enc = 1``; NaN gaps are kept
bit for bit). The unfinished block of each channel is
written to ``waveform_pending`` at every commit (replacing the previous copy), so a crash loses
no more than the data since the last commit; pending blocks left by a crash are turned into
ordinary blocks when the file is next opened read-write. ``waveform_pending`` is the only
scratch table (rows are replaced and removed).

Threads
-------
All writes go through one connection guarded by a re-entrant lock (:meth:`SessionStore.transaction`
holds it for its whole duration). Reads from any other thread use that thread's own read-only
connection (WAL lets them run while a write is in progress; they see the last commit). A thread
inside :meth:`SessionStore.transaction` reads through the write connection and so sees its own
uncommitted writes. :class:`StoreWriter` is the off-UI-thread writer.
"""

from __future__ import annotations

import concurrent.futures
import enum
import hashlib
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
import urllib.request
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from drivers.catalogue import CATALOGUE, VITAL_KEYS
from drivers.model import WAVE_CHANNELS, DeviceCondition, NumericObservation, Quality, WaveformChunk

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:  # Windows
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = [
    "APPLICATION_ID", "MIGRATIONS", "QUALITY_BITS", "TABLE_KINDS", "ALARM_KINDS", "ALARM_ACTIONS", "PRIORITIES",
    "SESSION_STATUSES", "MAX_BLOCK_SECONDS",
    "StoreError", "ReadOnlyError", "NotFoundError",
    "UserRecord", "SessionRecord", "SessionSummary", "Entry", "AlarmAction", "AlarmRow", "Gap",
    "VitalSummary", "AuditRow", "AuditCheck", "WaveformSlice",
    "SessionStore", "StoreWriter", "default_db_path", "quality_to_bits", "bits_to_quality",
]

#: ``PRAGMA application_id`` of a Vigil database: ASCII "VIGL".
APPLICATION_ID = 0x5649474C
#: Hard upper bound on the duration of one stored waveform block, seconds (range queries rely on it).
MAX_BLOCK_SECONDS = 60.0
#: Waveform block encodings: 0 = zlib(float32 LE), 1 = zlib(byte-shuffled float32 LE).
ENC_F32_ZLIB = 0
ENC_F32_SHUFFLE_ZLIB = 1

#: Fixed bit of each quality flag in ``observations.quality``. Never renumber; add new flags at the end.
QUALITY_BITS: dict[Quality, int] = {
    Quality.IMPLAUSIBLE: 1 << 0,
    Quality.INVALID: 1 << 1,
    Quality.QUESTIONABLE: 1 << 2,
    Quality.UNAVAILABLE: 1 << 3,
    Quality.DEMO: 1 << 4,
    Quality.ARTIFACT: 1 << 5,
    Quality.LOW_PERFUSION: 1 << 6,
    Quality.OUT_OF_TRACK: 1 << 7,
    Quality.SENSOR_OFF: 1 << 8,
    Quality.SIMULATED: 1 << 9,
    Quality.MANUAL: 1 << 10,
}

TABLE_KINDS = ("event", "assessment", "infusion_step", "device_log", "note", "signoff")
ALARM_KINDS = ("physiological", "technical")
#: Actions on alarms and on alarm audio. ``audio_pause_cancel``: a user ended an audio pause early;
#: ``audio_pause_end``: a pause ran its time (recorded at its end; schema 3).
ALARM_ACTIONS = ("acknowledge", "audio_pause", "audio_pause_cancel", "audio_pause_end", "reset", "escalate",
                 "deescalate")
#: Alarm priorities, lowest first (IEC 60601-1-8 names).
PRIORITIES = ("LOW", "MEDIUM", "HIGH")
SESSION_STATUSES = ("open", "closed", "aborted")

_GENESIS = "0" * 64
_SQLITE_MAGIC = b"SQLite format 3\x00"


# ---------------------------------------------------------------------------------------- errors
class StoreError(Exception):
    """Something about the store or a request to it is wrong (the message says what)."""


class ReadOnlyError(StoreError):
    """A write to something that is read-only: a closed session, or a store opened read-only."""


class NotFoundError(StoreError, LookupError):
    """The session, entry, alarm or user named does not exist."""


# --------------------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class UserRecord:
    """One staff account as stored (``pin_hash`` is opaque to the store)."""

    id: int
    login: str
    display_name: str
    role: str
    pin_hash: str | None
    created_at: datetime
    active: bool


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session row, decoded. ``last_seen`` is the writer's last heartbeat (crash detection)."""

    id: int
    created_at: datetime
    started_at: datetime
    ended_at: datetime | None
    status: str
    phase: str
    protocol: str
    patient: dict[str, Any]
    patient_name: str
    patient_ref: str | None
    plan: dict[str, Any]
    baseline: dict[str, Any] | None
    device: str
    created_by: str
    closed_by: str | None
    close_meaning: str | None
    signed_name: str | None
    last_seen: datetime | None
    n_observations: int
    n_alarms: int

    @property
    def is_open(self) -> bool:
        """True while data may still be recorded."""
        return self.status == "open"


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One line of :meth:`SessionStore.list_sessions`; counts come from maintained counters."""

    id: int
    patient: str
    patient_ref: str | None
    protocol: str
    status: str
    phase: str
    device: str
    started_at: datetime
    ended_at: datetime | None
    n_observations: int
    n_alarms: int


@dataclass(frozen=True, slots=True)
class Entry:
    """Something staff charted. ``amends`` is the id of the entry this one corrects (with
    ``reason``); ``amended_by`` is the id of the entry that corrects this one, if any."""

    id: int
    session_id: int
    t: datetime
    table_kind: str
    kind: str
    payload: dict[str, Any]
    user: str
    amends: int | None
    reason: str | None
    recorded_at: datetime
    amended_by: int | None

    @property
    def is_amendment(self) -> bool:
        """True when this entry corrects an earlier one."""
        return self.amends is not None

    @property
    def is_late(self) -> bool:
        """True for a late entry: charted after the fact, with a reason, correcting nothing."""
        return self.amends is None and self.reason is not None

    @property
    def is_current(self) -> bool:
        """True when no later entry amends this one (it is part of the effective record)."""
        return self.amended_by is None


@dataclass(frozen=True, slots=True)
class AlarmAction:
    """An action on an alarm (or on the alarm system when ``alarm_id`` is None)."""

    id: int
    session_id: int
    alarm_id: int | None
    t: datetime
    action: str
    user: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class AlarmRow:
    """One alarm condition occurrence with the actions taken on it, in time order."""

    id: int
    session_id: int
    condition: str
    kind: str
    priority: str
    max_priority: str
    started_at: datetime
    ended_at: datetime | None
    limit: float | None
    value: float | None
    message: str
    actions: tuple[AlarmAction, ...] = ()


@dataclass(frozen=True, slots=True)
class Gap:
    """A span during which Vigil was not recording the session (e.g. after a crash)."""

    id: int
    session_id: int
    start: datetime
    end: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class VitalSummary:
    """Statistics of one vital over a session. ``n`` counts values (rows with a value and none of
    the excluded quality flags); ``min``/``max``/``mean`` are over those (None when ``n == 0``);
    ``first_t``/``last_t`` span all rows; ``n_missing`` rows had no value; ``n_flagged`` rows had
    an excluded flag."""

    n: int
    min: float | None
    max: float | None
    mean: float | None
    first_t: datetime
    last_t: datetime
    n_missing: int = 0
    n_flagged: int = 0


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One row of the audit trail."""

    seq: int
    t: datetime
    user: str | None
    session_id: int | None
    action: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """Result of :meth:`SessionStore.verify_audit`: ``ok``, the number of rows checked and the
    first row whose sequence, link or hash is wrong (with ``problem`` saying which)."""

    ok: bool
    rows: int
    first_bad_seq: int | None
    problem: str | None = None


class WaveformSlice(NamedTuple):
    """Samples of one channel over a time range.

    ``t``: float64 UTC epoch seconds. Undecimated, ``min`` and ``max`` are the same float32
    array of samples (NaN = gap). Decimated, ``t`` holds bin centres and ``min``/``max`` the
    float32 minimum/maximum of the samples in each bin (NaN where a bin holds no valid sample).
    """

    t: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @property
    def decimated(self) -> bool:
        """True when the slice holds per-bin min/max rather than samples."""
        return self.min is not self.max

    @property
    def values(self) -> np.ndarray:
        """The samples (undecimated slices; for decimated ones the bin minima)."""
        return self.min


# ------------------------------------------------------------------------------------- helpers
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


def quality_to_bits(quality: Iterable[Quality]) -> int:
    """The :data:`QUALITY_BITS` bitmask of a set of quality flags (unknown flag → ``KeyError``)."""
    bits = 0
    for flag in quality:
        bits |= QUALITY_BITS[Quality(flag)]
    return bits


def bits_to_quality(bits: int) -> frozenset[Quality]:
    """The quality flags of a bitmask; unknown bits are ignored."""
    return frozenset(flag for flag, bit in QUALITY_BITS.items() if bits & bit)


def _ts(value: datetime, name: str = "time") -> float:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a timezone-aware datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value!r}")
    return value.timestamp()


def _opt_ts(value: datetime | None, name: str) -> float | None:
    return None if value is None else _ts(value, name)


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset, tuple)):
        return sorted(obj) if isinstance(obj, (set, frozenset)) else list(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_json_default)


def _to_json(obj: Any, name: str) -> str:
    try:
        return _canonical(obj)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not JSON-serialisable: {exc}") from None


def _dict_arg(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, not {type(value).__name__}")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _sid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"session id must be an int, not {type(value).__name__}")
    return value


def _priority(value: Any) -> str:
    name = value.name if isinstance(value, enum.Enum) else str(value)
    name = name.upper()
    if name not in PRIORITIES:
        raise ValueError(f"alarm priority must be one of {', '.join(PRIORITIES)}, got {value!r}")
    return name


def _audit_digest(prev_hash: str, seq: int, t: float, user: str | None, session_id: int | None,
                  action: str, payload: Any) -> str:
    body = _canonical({"seq": seq, "t": t, "user": user, "session": session_id,
                       "action": action, "payload": payload})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def _encode_samples(samples: np.ndarray) -> bytes:
    data = np.ascontiguousarray(samples, dtype="<f4")
    return zlib.compress(data.view(np.uint8).reshape(-1, 4).T.tobytes(), 6)


def _decode_samples(blob: bytes, n: int, enc: int) -> np.ndarray:
    raw = zlib.decompress(blob)
    if enc == ENC_F32_SHUFFLE_ZLIB:
        planes = np.frombuffer(raw, dtype=np.uint8).reshape(4, n)
        return np.ascontiguousarray(planes.T).view("<f4").reshape(n).astype(np.float32, copy=False)
    if enc == ENC_F32_ZLIB:
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    raise StoreError(f"unknown waveform encoding {enc}")


def _patient_name(patient: dict[str, Any]) -> str:
    for key in ("display_name", "name", "full_name"):
        if patient.get(key):
            return str(patient[key])
    given = next((patient[k] for k in ("given_name", "first_name", "given") if patient.get(k)), "")
    family = next((patient[k] for k in ("family_name", "last_name", "family") if patient.get(k)), "")
    name = f"{given} {family}".strip()
    return name or (_patient_ref(patient) or "")


def _patient_ref(patient: dict[str, Any]) -> str | None:
    for key in ("id", "mrn", "patient_id", "record_number"):
        if patient.get(key) not in (None, ""):
            return str(patient[key])
    return None


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


# ---------------------------------------------------------------------------------- schema v1
_APPEND_ONLY = ("observations", "waveforms", "conditions", "entries", "audit", "alarm_actions",
                "gaps", "settings", "sources")
_CLOSED_GUARD = ("observations", "waveforms", "waveform_pending", "conditions", "alarms",
                 "alarm_actions", "gaps")
_RANK = "CASE {} WHEN 'LOW' THEN 1 WHEN 'MEDIUM' THEN 2 WHEN 'HIGH' THEN 3 END"

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    pin_hash TEXT,
    created_at REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
);
CREATE TABLE settings (
    version INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    user_login TEXT,
    json TEXT NOT NULL
);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'aborted')),
    phase TEXT NOT NULL,
    protocol TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    patient_ref TEXT,
    patient_json TEXT NOT NULL,
    plan_json TEXT NOT NULL,
    baseline_json TEXT,
    device TEXT NOT NULL,
    created_by TEXT NOT NULL,
    closed_by TEXT,
    close_meaning TEXT,
    signed_name TEXT,
    last_seen REAL,
    n_observations INTEGER NOT NULL DEFAULT 0,
    n_alarms INTEGER NOT NULL DEFAULT 0,
    CHECK ((status = 'open') = (ended_at IS NULL))
);
CREATE INDEX sessions_started ON sessions (started_at);
CREATE INDEX sessions_open ON sessions (status) WHERE status = 'open';
CREATE TABLE observations (
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    t REAL NOT NULL,
    vital TEXT NOT NULL,
    value REAL,
    quality INTEGER NOT NULL DEFAULT 0,
    device_time TEXT,
    unit TEXT,
    source_id INTEGER NOT NULL REFERENCES sources (id)
);
CREATE INDEX observations_svt ON observations (session_id, vital, t);
CREATE TABLE waveforms (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    channel TEXT NOT NULL,
    t0 REAL NOT NULL,
    rate REAL NOT NULL CHECK (rate > 0),
    n INTEGER NOT NULL CHECK (n > 0),
    enc INTEGER NOT NULL,
    source_id INTEGER REFERENCES sources (id),
    data BLOB NOT NULL
);
CREATE INDEX waveforms_sct ON waveforms (session_id, channel, t0);
CREATE TABLE waveform_pending (
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    channel TEXT NOT NULL,
    t0 REAL NOT NULL,
    rate REAL NOT NULL CHECK (rate > 0),
    n INTEGER NOT NULL CHECK (n > 0),
    enc INTEGER NOT NULL,
    source_id INTEGER REFERENCES sources (id),
    data BLOB NOT NULL,
    PRIMARY KEY (session_id, channel)
);
CREATE TABLE conditions (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    t REAL NOT NULL,
    code TEXT NOT NULL,
    active INTEGER NOT NULL CHECK (active IN (0, 1)),
    text TEXT NOT NULL DEFAULT '',
    source_id INTEGER REFERENCES sources (id)
);
CREATE INDEX conditions_st ON conditions (session_id, t);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    t REAL NOT NULL,
    table_kind TEXT NOT NULL CHECK (table_kind IN
        ('event', 'assessment', 'infusion_step', 'device_log', 'note', 'signoff')),
    kind TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    user_login TEXT NOT NULL,
    amends_id INTEGER REFERENCES entries (id),
    reason TEXT,
    recorded_at REAL NOT NULL,
    CHECK (amends_id IS NULL OR length(trim(coalesce(reason, ''))) > 0)
);
CREATE INDEX entries_st ON entries (session_id, t);
CREATE UNIQUE INDEX entries_amends ON entries (amends_id) WHERE amends_id IS NOT NULL;
CREATE TABLE alarms (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    condition TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('physiological', 'technical')),
    priority TEXT NOT NULL CHECK (priority IN ('LOW', 'MEDIUM', 'HIGH')),
    max_priority TEXT NOT NULL CHECK (max_priority IN ('LOW', 'MEDIUM', 'HIGH')),
    started_at REAL NOT NULL,
    ended_at REAL,
    limit_value REAL,
    trigger_value REAL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alarms_ss ON alarms (session_id, started_at);
CREATE TABLE alarm_actions (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    alarm_id INTEGER REFERENCES alarms (id),
    t REAL NOT NULL,
    action TEXT NOT NULL CHECK (action IN
        ('acknowledge', 'audio_pause', 'audio_pause_cancel', 'reset', 'escalate', 'deescalate')),
    user_login TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alarm_actions_st ON alarm_actions (session_id, t);
CREATE INDEX alarm_actions_alarm ON alarm_actions (alarm_id);
CREATE TABLE gaps (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    start_t REAL NOT NULL,
    end_t REAL NOT NULL,
    reason TEXT NOT NULL,
    CHECK (end_t >= start_t)
);
CREATE INDEX gaps_s ON gaps (session_id, start_t);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    user_login TEXT,
    session_id INTEGER,
    action TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_session ON audit (session_id) WHERE session_id IS NOT NULL;
CREATE VIEW observations_v AS
    SELECT o.rowid AS rowid, o.session_id, o.t, o.vital, o.value, o.quality, o.device_time,
           o.unit, s.name AS source
    FROM observations o JOIN sources s ON s.id = o.source_id;
"""


def _v1_triggers() -> dict[str, str]:
    """Triggers of schema version 1, by name. (A migration that changes triggers must keep this
    function as it is and add its own; :data:`_CURRENT_TRIGGERS` names the current set.)"""
    trig: dict[str, str] = {}
    for table in _APPEND_ONLY:
        trig[f"{table}_no_update"] = (
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} BEGIN "
            f"SELECT RAISE(ABORT, '{table} is append-only: recorded rows cannot be changed'); END")
        trig[f"{table}_no_delete"] = (
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} BEGIN "
            f"SELECT RAISE(ABORT, '{table} is append-only: recorded rows cannot be deleted'); END")
    for table in ("sessions", "users", "alarms"):
        trig[f"{table}_no_delete"] = (
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} BEGIN "
            f"SELECT RAISE(ABORT, '{table} rows cannot be deleted'); END")
    for table in _CLOSED_GUARD:
        trig[f"{table}_closed_session"] = (
            f"CREATE TRIGGER IF NOT EXISTS {table}_closed_session BEFORE INSERT ON {table} "
            f"WHEN (SELECT status FROM sessions WHERE id = NEW.session_id) IS NOT 'open' BEGIN "
            f"SELECT RAISE(ABORT, 'session is not open: its record is read-only'); END")
    trig["entries_closed_session"] = (
        "CREATE TRIGGER IF NOT EXISTS entries_closed_session BEFORE INSERT ON entries "
        "WHEN NEW.amends_id IS NULL AND (SELECT status FROM sessions WHERE id = NEW.session_id) IS NOT 'open' "
        "BEGIN SELECT RAISE(ABORT, 'session is not open: only amendments (with a reason) may be added'); END")
    trig["entries_amend_target"] = (
        "CREATE TRIGGER IF NOT EXISTS entries_amend_target BEFORE INSERT ON entries "
        "WHEN NEW.amends_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM entries WHERE id = NEW.amends_id "
        "AND session_id = NEW.session_id AND table_kind = NEW.table_kind) BEGIN "
        "SELECT RAISE(ABORT, 'an amendment must correct an entry of the same session and table'); END")
    trig["sessions_update"] = (
        "CREATE TRIGGER IF NOT EXISTS sessions_update BEFORE UPDATE ON sessions BEGIN "
        "SELECT RAISE(ABORT, 'session is not open: its record is read-only') WHERE OLD.status IS NOT 'open'; "
        "SELECT RAISE(ABORT, 'a session''s id, creation, start, patient, protocol, device and author cannot change') "
        "WHERE NEW.id IS NOT OLD.id OR NEW.created_at IS NOT OLD.created_at OR NEW.started_at IS NOT OLD.started_at "
        "OR NEW.patient_json IS NOT OLD.patient_json OR NEW.patient_name IS NOT OLD.patient_name "
        "OR NEW.patient_ref IS NOT OLD.patient_ref OR NEW.protocol IS NOT OLD.protocol "
        "OR NEW.device IS NOT OLD.device OR NEW.created_by IS NOT OLD.created_by; "
        "SELECT RAISE(ABORT, 'closing a session needs ended_at, closed_by, signed_name and close_meaning') "
        "WHERE NEW.status IS NOT 'open' AND (NEW.ended_at IS NULL OR NEW.closed_by IS NULL "
        "OR NEW.signed_name IS NULL OR NEW.close_meaning IS NULL); END")
    trig["users_update"] = (
        "CREATE TRIGGER IF NOT EXISTS users_update BEFORE UPDATE ON users "
        "WHEN NEW.id IS NOT OLD.id OR NEW.login IS NOT OLD.login OR NEW.created_at IS NOT OLD.created_at BEGIN "
        "SELECT RAISE(ABORT, 'a user''s id, login and creation time cannot change'); END")
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in (
        "id", "session_id", "condition", "kind", "priority", "started_at", "limit_value",
        "trigger_value", "message"))
    trig["alarms_update"] = (
        "CREATE TRIGGER IF NOT EXISTS alarms_update BEFORE UPDATE ON alarms BEGIN "
        "SELECT RAISE(ABORT, 'session is not open: its alarms are read-only') "
        "WHERE (SELECT status FROM sessions WHERE id = OLD.session_id) IS NOT 'open'; "
        f"SELECT RAISE(ABORT, 'alarm rows are append-only except their end and maximum priority') WHERE {changed}; "
        "SELECT RAISE(ABORT, 'an alarm''s end can be set once, not before its start') "
        "WHERE NEW.ended_at IS NOT OLD.ended_at AND (OLD.ended_at IS NOT NULL OR NEW.ended_at IS NULL "
        "OR NEW.ended_at < OLD.started_at); "
        "SELECT RAISE(ABORT, 'an alarm''s maximum priority can only rise') "
        f"WHERE {_RANK.format('NEW.max_priority')} < {_RANK.format('OLD.max_priority')}; END")
    trig["audit_chain"] = (
        "CREATE TRIGGER IF NOT EXISTS audit_chain BEFORE INSERT ON audit "
        "WHEN NEW.seq IS NOT coalesce((SELECT max(seq) FROM audit), 0) + 1 "
        f"OR NEW.prev_hash IS NOT coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), '{_GENESIS}') "
        "BEGIN SELECT RAISE(ABORT, 'audit rows must extend the hash chain'); END")
    return trig


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    """Version 1: the initial schema."""
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    for sql in _v1_triggers().values():
        conn.execute(sql)


_LATE_ENTRY_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS entries_closed_session BEFORE INSERT ON entries "
    "WHEN NEW.amends_id IS NULL AND (NEW.reason IS NULL OR trim(NEW.reason) = '') "
    "AND (SELECT status FROM sessions WHERE id = NEW.session_id) IS NOT 'open' "
    "BEGIN SELECT RAISE(ABORT, 'session is not open: only amendments and late entries (with a reason) "
    "may be added'); END")


def _v2_triggers() -> dict[str, str]:
    """Triggers of schema version 2: as version 1, and a closed session also takes late entries
    (an entry with a reason that amends nothing: something charted after the session closed)."""
    trig = _v1_triggers()
    trig["entries_closed_session"] = _LATE_ENTRY_TRIGGER
    return trig


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Version 2: late entries on closed sessions."""
    conn.execute("DROP TRIGGER IF EXISTS entries_closed_session")
    conn.execute(_LATE_ENTRY_TRIGGER)


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Version 3: alarm_actions also takes 'audio_pause_end' (a pause that ran its time). SQLite cannot
    change a CHECK constraint, so the table is rebuilt with its rows, ids, indexes and triggers
    (dropping a table drops its triggers without firing them)."""
    actions = ", ".join(f"'{a}'" for a in ("acknowledge", "audio_pause", "audio_pause_cancel", "audio_pause_end",
                                             "reset", "escalate", "deescalate"))  # as of version 3, fixed
    conn.execute(
        "CREATE TABLE alarm_actions_v3 (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions (id), "
        "alarm_id INTEGER REFERENCES alarms (id), t REAL NOT NULL, "
        f"action TEXT NOT NULL CHECK (action IN ({actions})), user_login TEXT, detail TEXT NOT NULL DEFAULT '')")
    conn.execute("INSERT INTO alarm_actions_v3 (id, session_id, alarm_id, t, action, user_login, detail) "
                 "SELECT id, session_id, alarm_id, t, action, user_login, detail FROM alarm_actions ORDER BY id")
    conn.execute("DROP TABLE alarm_actions")
    conn.execute("ALTER TABLE alarm_actions_v3 RENAME TO alarm_actions")
    conn.execute("CREATE INDEX alarm_actions_st ON alarm_actions (session_id, t)")
    conn.execute("CREATE INDEX alarm_actions_alarm ON alarm_actions (alarm_id)")
    for name, sql in _v2_triggers().items():
        if name.startswith("alarm_actions_"):
            conn.execute(sql)


#: Forward migrations: ``MIGRATIONS[i](conn)`` upgrades schema version ``i`` to ``i + 1`` inside
#: one transaction. The current version is ``len(MIGRATIONS)``.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3]
#: Trigger definitions of the current schema (used to restore triggers found missing; version 3
#: keeps version 2's).
_CURRENT_TRIGGERS = _v2_triggers


def _read_version(conn: sqlite3.Connection) -> int:
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        other = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if other:
            raise StoreError("the file is marked as a Vigil database but has no 'meta' table; refusing to touch it")
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise StoreError("the Vigil database has no schema_version; refusing to touch it")
    return int(row[0])


# ------------------------------------------------------------------------------ waveform blocks
class _Block:
    """A waveform block being assembled in memory (parts are float32 arrays)."""

    __slots__ = ("session_id", "channel", "t0", "rate", "source_id", "parts", "n")

    def __init__(self, session_id: int, channel: str, t0: float, rate: float, source_id: int) -> None:
        self.session_id = session_id
        self.channel = channel
        self.t0 = t0
        self.rate = rate
        self.source_id = source_id
        self.parts: list[np.ndarray] = []
        self.n = 0

    def clone(self) -> _Block:
        b = _Block(self.session_id, self.channel, self.t0, self.rate, self.source_id)
        b.parts = list(self.parts)
        b.n = self.n
        return b

    def samples(self) -> np.ndarray:
        if len(self.parts) == 1:
            return self.parts[0]
        merged = np.concatenate(self.parts)
        self.parts = [merged]
        return merged


# ----------------------------------------------------------------------------------- the store
class SessionStore:
    """Vigil's record of sessions, data, charting, alarms and the audit trail in one SQLite file.

    ``path``: the database file (created if missing; its folder must exist, see
    :func:`default_db_path`). ``readonly=True`` opens for review only: every write raises
    :class:`ReadOnlyError`, no lock is taken, and an older schema is refused (open it read-write
    once to migrate). ``clock``: returns the current aware UTC time for ``recorded_at``, audit and
    creation times (default: the system clock). ``block_seconds``: target duration of a stored
    waveform block (0 < x ≤ 60). ``busy_timeout``: seconds to wait for a lock held by another
    connection.

    Raises :class:`StoreError` if the file is not a Vigil database (left unchanged), was written by
    a newer Vigil (left unchanged), or is already open read-write by another store.
    """

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

    # -------------------------------------------------------------------------- opening
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
            conn.execute("BEGIN IMMEDIATE")  # creates -wal/-shm inside the umask window
            conn.execute("COMMIT")
            _chmod_owner_only(self.path)
        finally:
            os.umask(old_umask)
        if version < target:
            self._migrate(version, target)
        self._restore_triggers()
        self._recover_pending_waveforms()

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

    def _recover_pending_waveforms(self) -> None:
        conn = self._conn
        assert conn is not None
        rows = conn.execute(
            "SELECT p.session_id, p.channel FROM waveform_pending p JOIN sessions s ON s.id = p.session_id "
            "WHERE s.status = 'open'").fetchall()
        if not rows:
            return
        with self._tx() as c:
            c.execute("INSERT INTO waveforms (session_id, channel, t0, rate, n, enc, source_id, data) "
                      "SELECT p.session_id, p.channel, p.t0, p.rate, p.n, p.enc, p.source_id, p.data "
                      "FROM waveform_pending p JOIN sessions s ON s.id = p.session_id WHERE s.status = 'open'")
            c.execute("DELETE FROM waveform_pending WHERE session_id IN "
                      "(SELECT id FROM sessions WHERE status = 'open')")
        log.info("recovered %d unfinished waveform block(s) left by an earlier run", len(rows))

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

    # -------------------------------------------------------------------------- lifecycle
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

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------- transactions
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

    # -------------------------------------------------------------------------- audit
    def _audit(self, conn: sqlite3.Connection, user: str | None, action: str, session_id: int | None,
               payload: dict[str, Any]) -> int:
        payload_json = _to_json(payload, "audit payload")
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, _GENESIS)
        t = self._now()
        digest = _audit_digest(prev, seq, t, user, session_id, action, json.loads(payload_json))
        conn.execute("INSERT INTO audit (seq, t, user_login, session_id, action, payload_json, prev_hash, hash) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (seq, t, user, session_id, action, payload_json, prev, digest))
        return seq

    def audit(self, user: str | None, action: str, session_id: int | None, payload: dict[str, Any]) -> int:
        """Append a row to the hash-chained audit trail and return its sequence number.

        ``user``: login (None for actions by Vigil itself). ``action``: a short snake_case verb
        phrase. ``session_id``: the session concerned or None. ``payload``: JSON-serialisable dict
        (datetimes become ISO strings). Bad input raises ``ValueError``/``TypeError``; an unknown
        session raises :class:`NotFoundError`. Store methods that record staff actions call this
        internally in their own transaction.
        """
        _text(action, "action")
        _dict_arg(payload, "payload")
        with self._tx() as conn:
            if session_id is not None:
                self._session_status(conn, session_id)
            return self._audit(conn, user, action, session_id, payload)

    def audit_rows(self, session_id: int | None = None) -> list[AuditRow]:
        """The audit trail in sequence order; only rows of ``session_id`` if given."""
        sql = "SELECT seq, t, user_login, session_id, action, payload_json, prev_hash, hash FROM audit"
        args: tuple[Any, ...] = ()
        if session_id is not None:
            sql += " WHERE session_id = ?"
            args = (session_id,)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [AuditRow(r[0], _dt(r[1]), r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def verify_audit(self) -> AuditCheck:
        """Recompute the audit hash chain. ``ok`` is False at the first row whose sequence number
        is not the previous plus one (a deleted row), whose ``prev_hash`` is not the previous
        row's hash, or whose hash does not match its content (an edited row). Deleting rows from
        the end of the chain is not detectable from the chain alone."""
        rows = 0
        prev = _GENESIS
        expected = 1
        with self._read() as conn:
            cursor = conn.execute("SELECT seq, t, user_login, session_id, action, payload_json, prev_hash, hash "
                                  "FROM audit ORDER BY seq")
            for seq, t, user, session_id, action, payload_json, prev_hash, digest in cursor:
                rows += 1
                if seq != expected:
                    return AuditCheck(False, rows, seq, f"sequence jumps from {expected - 1} to {seq}")
                if prev_hash != prev:
                    return AuditCheck(False, rows, seq, "prev_hash does not match the previous row's hash")
                try:
                    payload = json.loads(payload_json)
                except (TypeError, ValueError):
                    return AuditCheck(False, rows, seq, "payload is not valid JSON")
                if _audit_digest(prev, seq, t, user, session_id, action, payload) != digest:
                    return AuditCheck(False, rows, seq, "hash does not match the row's content")
                prev = digest
                expected += 1
        return AuditCheck(True, rows, None, None)

    # -------------------------------------------------------------------------- users & settings
    def add_user(self, login: str, display_name: str, role: str, pin_hash: str | None, by: str | None) -> int:
        """Add a staff account (active) and return its id. ``pin_hash`` is stored as given (hash it
        before). ``by``: login of the admin doing it. Empty strings raise ``ValueError``; an
        existing login raises :class:`StoreError`."""
        _text(login, "login")
        _text(display_name, "display_name")
        _text(role, "role")
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM users WHERE login = ?", (login,)).fetchone():
                raise StoreError(f"user {login!r} already exists")
            cur = conn.execute("INSERT INTO users (login, display_name, role, pin_hash, created_at, active) "
                               "VALUES (?, ?, ?, ?, ?, 1)", (login, display_name, role, pin_hash, self._now()))
            self._audit(conn, by, "user_added", None,
                        {"login": login, "display_name": display_name, "role": role})
            return int(cur.lastrowid)

    def get_user(self, login: str) -> UserRecord | None:
        """The account with this login, or None."""
        with self._read() as conn:
            row = conn.execute("SELECT id, login, display_name, role, pin_hash, created_at, active FROM users "
                               "WHERE login = ?", (login,)).fetchone()
        return self._user(row) if row else None

    def list_users(self) -> list[UserRecord]:
        """All accounts (active and inactive) by login."""
        with self._read() as conn:
            rows = conn.execute("SELECT id, login, display_name, role, pin_hash, created_at, active FROM users "
                                "ORDER BY login").fetchall()
        return [self._user(r) for r in rows]

    @staticmethod
    def _user(r: tuple[Any, ...]) -> UserRecord:
        return UserRecord(r[0], r[1], r[2], r[3], r[4], _dt(r[5]), bool(r[6]))

    def set_user_active(self, login: str, active: bool, by: str | None) -> None:
        """Activate or deactivate an account (accounts are never deleted). Unknown login raises
        :class:`NotFoundError`."""
        with self._tx() as conn:
            if conn.execute("UPDATE users SET active = ? WHERE login = ?", (int(bool(active)), login)).rowcount == 0:
                raise NotFoundError(f"no user {login!r}")
            self._audit(conn, by, "user_activated" if active else "user_deactivated", None, {"login": login})

    def set_pin_hash(self, login: str, pin_hash: str | None, by: str | None) -> None:
        """Replace an account's PIN hash (the audit row records that it changed, not the hash).
        Unknown login raises :class:`NotFoundError`."""
        with self._tx() as conn:
            if conn.execute("UPDATE users SET pin_hash = ? WHERE login = ?", (pin_hash, login)).rowcount == 0:
                raise NotFoundError(f"no user {login!r}")
            self._audit(conn, by, "user_pin_changed", None, {"login": login})

    def save_settings(self, json_text: str, by: str | None) -> int:
        """Append a new version of the clinic settings (a JSON document, stored verbatim) and
        return its version number (1, 2, …). Text that is not JSON raises ``ValueError``."""
        if not isinstance(json_text, str):
            raise TypeError("settings must be JSON text")
        try:
            json.loads(json_text)
        except ValueError as exc:
            raise ValueError(f"settings are not valid JSON: {exc}") from None
        with self._tx() as conn:
            version = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM settings").fetchone()[0]
            conn.execute("INSERT INTO settings (version, t, user_login, json) VALUES (?, ?, ?, ?)",
                         (version, self._now(), by, json_text))
            self._audit(conn, by, "settings_saved", None,
                        {"version": version, "sha256": hashlib.sha256(json_text.encode()).hexdigest()})
            return int(version)

    def current_settings(self) -> tuple[int, str] | None:
        """``(version, json_text)`` of the latest settings, or None if none were ever saved."""
        with self._read() as conn:
            row = conn.execute("SELECT version, json FROM settings ORDER BY version DESC LIMIT 1").fetchone()
        return (int(row[0]), row[1]) if row else None

    def settings_history(self) -> list[tuple[int, datetime, str | None, str]]:
        """Every settings version: ``(version, saved_at, by, json_text)``, oldest first."""
        with self._read() as conn:
            rows = conn.execute("SELECT version, t, user_login, json FROM settings ORDER BY version").fetchall()
        return [(r[0], _dt(r[1]), r[2], r[3]) for r in rows]

    # -------------------------------------------------------------------------- sessions
    _SESSION_COLS = ("id, created_at, started_at, ended_at, status, phase, protocol, patient_json, patient_name, "
                     "patient_ref, plan_json, baseline_json, device, created_by, closed_by, close_meaning, "
                     "signed_name, last_seen, n_observations, n_alarms")

    @staticmethod
    def _session(r: tuple[Any, ...]) -> SessionRecord:
        return SessionRecord(
            id=r[0], created_at=_dt(r[1]), started_at=_dt(r[2]), ended_at=_dt(r[3]), status=r[4], phase=r[5],
            protocol=r[6], patient=json.loads(r[7]), patient_name=r[8], patient_ref=r[9],
            plan=json.loads(r[10]), baseline=json.loads(r[11]) if r[11] is not None else None, device=r[12],
            created_by=r[13], closed_by=r[14], close_meaning=r[15], signed_name=r[16], last_seen=_dt(r[17]),
            n_observations=r[18], n_alarms=r[19])

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

    def create_session(self, *, patient: dict[str, Any], protocol: str, plan: dict[str, Any], device: str,
                       user: str, started_at: datetime, phase: str = "baseline") -> int:
        """Open a new session and return its id.

        ``patient``: JSON-serialisable dict; its display name is taken from ``display_name`` or
        ``name`` (else given + family name) and its reference from ``id``/``mrn``/``patient_id``.
        ``protocol``: protocol key. ``plan``: the session plan (dose, schedule…). ``device``: the
        device URL or label. ``user``: login of the nurse. ``started_at``: aware UTC datetime.
        Bad input raises ``ValueError``/``TypeError``.
        """
        _dict_arg(patient, "patient")
        _dict_arg(plan, "plan")
        _text(protocol, "protocol")
        _text(user, "user")
        _text(phase, "phase")
        if not isinstance(device, str):
            raise TypeError("device must be a string")
        start = _ts(started_at, "started_at")
        patient_json = _to_json(patient, "patient")
        plan_json = _to_json(plan, "plan")
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO sessions (created_at, started_at, status, phase, protocol, patient_name, patient_ref, "
                "patient_json, plan_json, device, created_by) VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?)",
                (self._now(), start, phase, protocol, _patient_name(patient), _patient_ref(patient),
                 patient_json, plan_json, device, user))
            session_id = int(cur.lastrowid)
            self._audit(conn, user, "session_created", session_id,
                        {"started_at": start, "protocol": protocol, "device": device, "phase": phase,
                         "patient": patient, "plan": plan})
            return session_id

    def get_session(self, session_id: int) -> SessionRecord:
        """The session with this id; :class:`NotFoundError` if there is none."""
        with self._read() as conn:
            row = conn.execute(f"SELECT {self._SESSION_COLS} FROM sessions WHERE id = ?",
                               (_sid(session_id),)).fetchone()
        if row is None:
            raise NotFoundError(f"no session {session_id}")
        return self._session(row)

    def open_sessions(self) -> list[SessionRecord]:
        """Sessions still open (at start-up: sessions a crash left open), oldest first."""
        with self._read() as conn:
            rows = conn.execute(f"SELECT {self._SESSION_COLS} FROM sessions WHERE status = 'open' "
                                "ORDER BY started_at, id").fetchall()
        return [self._session(r) for r in rows]

    def list_sessions(self, *, patient: str | None = None, since: datetime | None = None,
                      until: datetime | None = None, protocol: str | None = None, status: str | None = None,
                      had_alarms: bool | None = None) -> list[SessionSummary]:
        """Sessions matching every given filter, newest first.

        ``patient``: matches the patient reference exactly or the display name as a
        case-insensitive substring. ``since``/``until``: ``since <= started_at < until``.
        ``protocol``/``status``: exact. ``had_alarms``: True = at least one alarm, False = none.
        Counts come from counters kept in the sessions row (no table scans).
        """
        where, args = [], []
        if patient is not None:
            escaped = patient.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("(patient_ref = ? OR patient_name LIKE ? ESCAPE '\\')")
            args += [patient, f"%{escaped}%"]
        if since is not None:
            where.append("started_at >= ?")
            args.append(_ts(since, "since"))
        if until is not None:
            where.append("started_at < ?")
            args.append(_ts(until, "until"))
        if protocol is not None:
            where.append("protocol = ?")
            args.append(protocol)
        if status is not None:
            if status not in SESSION_STATUSES:
                raise ValueError(f"status must be one of {', '.join(SESSION_STATUSES)}")
            where.append("status = ?")
            args.append(status)
        if had_alarms is not None:
            where.append("n_alarms > 0" if had_alarms else "n_alarms = 0")
        sql = ("SELECT id, patient_name, patient_ref, protocol, status, phase, device, started_at, ended_at, "
               "n_observations, n_alarms FROM sessions")
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY started_at DESC, id DESC", args).fetchall()
        return [SessionSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _dt(r[7]), _dt(r[8]), r[9], r[10])
                for r in rows]

    def _update_session(self, session_id: int, column: str, value: Any, action: str, user: str,
                        at: datetime, payload: dict[str, Any]) -> None:
        _text(user, "user")
        t = _ts(at, "at")
        with self._tx() as conn:
            self._require_open(conn, session_id)
            previous = conn.execute(f"SELECT {column} FROM sessions WHERE id = ?", (session_id,)).fetchone()[0]
            conn.execute(f"UPDATE sessions SET {column} = ? WHERE id = ?", (value, session_id))
            if column.endswith("_json") and previous is not None:
                previous = json.loads(previous)
            self._audit(conn, user, action, session_id, {**payload, "previous": previous, "at": t})

    def set_phase(self, session_id: int, phase: str, user: str, at: datetime) -> None:
        """Move an open session to ``phase`` (e.g. baseline, infusion, recovery, discharge) at ``at``.
        Closed session → :class:`ReadOnlyError`."""
        _text(phase, "phase")
        self._update_session(session_id, "phase", phase, "phase_changed", user, at, {"phase": phase})

    def set_baseline(self, session_id: int, baseline: dict[str, Any], user: str, at: datetime) -> None:
        """Record the pre-dose baseline (dict of vital → value and anything else) of an open session."""
        _dict_arg(baseline, "baseline")
        self._update_session(session_id, "baseline_json", _to_json(baseline, "baseline"), "baseline_set",
                             user, at, {"baseline": baseline})

    def set_plan(self, session_id: int, plan: dict[str, Any], user: str, at: datetime) -> None:
        """Replace the plan of an open session (the previous plan stays in the audit trail)."""
        _dict_arg(plan, "plan")
        self._update_session(session_id, "plan_json", _to_json(plan, "plan"), "plan_changed", user, at,
                             {"plan": plan})

    def heartbeat(self, session_id: int, at: datetime) -> None:
        """Note that the session was being recorded at ``at`` (``last_seen``, for crash detection).
        Not audited. Closed session → :class:`ReadOnlyError`."""
        t = _ts(at, "at")
        with self._tx() as conn:
            self._require_open(conn, session_id)
            conn.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (t, session_id))

    def close_session(self, session_id: int, *, user: str, signed_name: str, meaning: str, at: datetime,
                      status: str = "closed") -> None:
        """Sign and close a session: ``status`` 'closed' (normal) or 'aborted'. ``signed_name`` is the
        printed name of the signer, ``meaning`` what the signature means (e.g. "reviewed and
        closed"). Pending waveform blocks of the session are written and alarms still active end
        at ``at``. Afterwards the session is read-only except for amendments. Already closed →
        :class:`ReadOnlyError`; ``at`` before the start → ``ValueError``."""
        if status not in ("closed", "aborted"):
            raise ValueError("status must be 'closed' or 'aborted'")
        _text(user, "user")
        _text(signed_name, "signed_name")
        _text(meaning, "meaning")
        t = _ts(at, "at")
        with self._tx() as conn:
            self._require_open(conn, session_id)
            started = conn.execute("SELECT started_at FROM sessions WHERE id = ?", (session_id,)).fetchone()[0]
            if t < started:
                raise ValueError("a session cannot end before it started")
            self._flush_blocks(conn, [k for k in self._pending if k[0] == session_id])
            ended = conn.execute("UPDATE alarms SET ended_at = max(?, started_at) WHERE session_id = ? "
                                 "AND ended_at IS NULL", (t, session_id)).rowcount
            conn.execute("UPDATE sessions SET status = ?, ended_at = ?, closed_by = ?, signed_name = ?, "
                         "close_meaning = ? WHERE id = ?", (status, t, user, signed_name, meaning, session_id))
            self._audit(conn, user, "session_closed" if status == "closed" else "session_aborted", session_id,
                        {"status": status, "signed_name": signed_name, "meaning": meaning, "at": t,
                         "alarms_ended": ended})

    def add_gap(self, session_id: int, start: datetime, end: datetime, reason: str) -> int:
        """Record that Vigil was not recording the open session from ``start`` to ``end`` (e.g. after
        a crash: from :meth:`last_data_time` to the restart). ``end < start`` → ``ValueError``."""
        s, e = _ts(start, "start"), _ts(end, "end")
        if e < s:
            raise ValueError("a gap cannot end before it starts")
        _text(reason, "reason")
        with self._tx() as conn:
            self._require_open(conn, session_id)
            cur = conn.execute("INSERT INTO gaps (session_id, start_t, end_t, reason) VALUES (?, ?, ?, ?)",
                               (session_id, s, e, reason))
            self._audit(conn, None, "gap_recorded", session_id, {"start": s, "end": e, "reason": reason})
            return int(cur.lastrowid)

    def gaps(self, session_id: int) -> list[Gap]:
        """The session's recording gaps in time order."""
        with self._read() as conn:
            rows = conn.execute("SELECT id, session_id, start_t, end_t, reason FROM gaps WHERE session_id = ? "
                                "ORDER BY start_t, id", (_sid(session_id),)).fetchall()
        return [Gap(r[0], r[1], _dt(r[2]), _dt(r[3]), r[4]) for r in rows]

    # -------------------------------------------------------------------------- device data
    def _source_id(self, conn: sqlite3.Connection, name: str) -> int:
        sid = self._sources.get(name)
        if sid is None:
            if not isinstance(name, str):
                raise TypeError("source must be a string")
            row = conn.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
            sid = row[0] if row else conn.execute("INSERT INTO sources (name) VALUES (?)", (name,)).lastrowid
            self._sources[name] = sid
        return sid

    def add_observations(self, session_id: int, observations: Iterable[NumericObservation]) -> int:
        """Store numeric observations of an open session; returns how many.

        Each is stored with its ``sample_time`` (UTC epoch s), value (None kept as NULL), quality
        bitmask (:data:`QUALITY_BITS`), the device's own time as ISO text, and its source. A unit
        other than the catalogue's is kept. Anything that is not a ``NumericObservation`` raises
        ``TypeError`` (nothing of the call is stored); closed session → :class:`ReadOnlyError`.
        """
        with self._tx() as conn:
            self._require_open(conn, session_id)
            rows = []
            qcache = self._qcache
            for o in observations:
                if not isinstance(o, NumericObservation):
                    raise TypeError(f"expected NumericObservation, got {type(o).__name__}")
                bits = qcache.get(o.quality)
                if bits is None:
                    bits = qcache[o.quality] = quality_to_bits(o.quality)
                src = self._sources.get(o.source)
                if src is None:
                    src = self._source_id(conn, o.source)
                unit = None if o.unit == CATALOGUE[o.vital].unit else o.unit
                rows.append((session_id, o.sample_time.timestamp(), o.vital, o.value, bits,
                             o.device_time.isoformat() if o.device_time is not None else None, unit, src))
            if rows:
                conn.executemany("INSERT INTO observations (session_id, t, vital, value, quality, device_time, "
                                 "unit, source_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                conn.execute("UPDATE sessions SET n_observations = n_observations + ? WHERE id = ?",
                             (len(rows), session_id))
            return len(rows)

    def add_conditions(self, session_id: int, conditions: Iterable[DeviceCondition]) -> int:
        """Store device condition changes (code on/off) of an open session; returns how many.
        Non-``DeviceCondition`` items raise ``TypeError``; closed session → :class:`ReadOnlyError`."""
        with self._tx() as conn:
            self._require_open(conn, session_id)
            rows = []
            for c in conditions:
                if not isinstance(c, DeviceCondition):
                    raise TypeError(f"expected DeviceCondition, got {type(c).__name__}")
                rows.append((session_id, c.time.timestamp(), c.code, int(c.active), c.text,
                             self._source_id(conn, c.source)))
            conn.executemany("INSERT INTO conditions (session_id, t, code, active, text, source_id) "
                             "VALUES (?, ?, ?, ?, ?, ?)", rows)
            return len(rows)

    def add_waveforms(self, session_id: int, chunks: Iterable[WaveformChunk]) -> int:
        """Add waveform chunks of an open session; returns the number of samples taken.

        Chunks are appended per channel to an in-memory block; a chunk that does not start where
        the block ends (± half a sample), or has another rate or source, starts a new block. A
        block reaching ``block_seconds`` is written at once; the unfinished one is saved to
        ``waveform_pending`` at each commit (see :meth:`flush_waveforms`). Empty chunks are
        ignored. Non-``WaveformChunk`` items raise ``TypeError``; closed session →
        :class:`ReadOnlyError`.
        """
        with self._tx() as conn:
            self._require_open(conn, session_id)
            pending, dirty, sources, targets = self._pending, self._dirty, self._sources, self._targets
            finished: list[_Block] = []
            total = 0
            for c in chunks:  # the hot path: ~1-2 µs per chunk
                if not isinstance(c, WaveformChunk):
                    raise TypeError(f"expected WaveformChunk, got {type(c).__name__}")
                samples = c.samples
                n = len(samples)
                if not n:
                    continue
                rate = c.rate
                t0 = c.start_time.timestamp()
                src = sources.get(c.source) or self._source_id(conn, c.source)
                key = (session_id, c.channel)
                block = pending.get(key)
                if block is not None and (block.rate != rate or block.source_id != src
                                          or abs(t0 - block.t0 - block.n / rate) > 0.5 / rate):
                    if block.n:
                        finished.append(block)
                    block = None
                if block is None:
                    block = pending[key] = _Block(session_id, c.channel, t0, rate, src)
                block.parts.append(samples)
                block.n += n
                total += n
                dirty.add(key)
                target = targets.get(rate)
                if target is None:
                    target = targets[rate] = max(1, math.ceil(self.block_seconds * rate - 1e-9))
                while block.n >= target:
                    data = block.samples()
                    head = _Block(session_id, c.channel, block.t0, rate, src)
                    head.parts, head.n = [data[:target]], target
                    finished.append(head)
                    # The next block continues the same timeline (it may start empty), so chunk
                    # start jitter never shifts later blocks.
                    rest = _Block(session_id, c.channel, block.t0 + target / rate, rate, src)
                    if block.n > target:
                        rest.parts, rest.n = [data[target:]], block.n - target
                    block = pending[key] = rest
            if finished:
                self._write_blocks(conn, finished)
            return total

    def _write_blocks(self, conn: sqlite3.Connection, blocks: list[_Block]) -> None:
        blocks = [b for b in blocks if b.n]
        if not blocks:
            return
        conn.executemany(
            "INSERT INTO waveforms (session_id, channel, t0, rate, n, enc, source_id, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(b.session_id, b.channel, b.t0, b.rate, b.n, ENC_F32_SHUFFLE_ZLIB, b.source_id,
              _encode_samples(b.samples())) for b in blocks])
        keys = {(b.session_id, b.channel) for b in blocks}
        conn.executemany("DELETE FROM waveform_pending WHERE session_id = ? AND channel = ?", keys)
        self._dirty.update(keys)

    def _persist_tails(self, conn: sqlite3.Connection) -> None:
        if not self._dirty:
            return
        for key in self._dirty:
            block = self._pending.get(key)
            if block is None or block.n == 0:
                conn.execute("DELETE FROM waveform_pending WHERE session_id = ? AND channel = ?", key)
            else:
                conn.execute("INSERT OR REPLACE INTO waveform_pending (session_id, channel, t0, rate, n, enc, "
                             "source_id, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (block.session_id, block.channel, block.t0, block.rate, block.n,
                              ENC_F32_SHUFFLE_ZLIB, block.source_id, _encode_samples(block.samples())))
        self._dirty.clear()

    def _flush_blocks(self, conn: sqlite3.Connection, keys: list[tuple[int, str]]) -> None:
        blocks = [self._pending.pop(k) for k in keys]
        if blocks:
            self._write_blocks(conn, blocks)

    def flush_waveforms(self, session_id: int | None = None) -> None:
        """Write every unfinished waveform block (of one session, or all) as a final block, so
        the next chunk starts a new block. Called by :meth:`close_session`, :meth:`close` and
        ``StoreWriter.stop``. (Unfinished blocks are already durable in ``waveform_pending`` after
        each commit; this only finalises them.)"""
        with self._tx() as conn:
            keys = [k for k in self._pending if session_id is None or k[0] == session_id]
            self._flush_blocks(conn, keys)

    # -------------------------------------------------------------------------- entries
    def add_entry(self, session_id: int, table_kind: str, t: datetime, kind: str, payload: dict[str, Any],
                  user: str, *, amends: int | None = None, reason: str | None = None) -> int:
        """Chart something and return the new entry's id.

        ``table_kind``: one of :data:`TABLE_KINDS`. ``t``: aware UTC time the charted fact refers
        to (``recorded_at`` is set from the clock). ``kind``: e.g. "moaas", "nausea", "rate_change".
        ``payload``: JSON-serialisable dict. ``user``: login.

        A correction is a new entry with ``amends`` = the id of the entry it replaces and a
        non-empty ``reason``; it must be of the same session and ``table_kind``, and must amend
        the latest version (an entry already amended raises :class:`StoreError` naming the
        amendment to amend instead). A *late entry* is an entry with a ``reason`` that amends
        nothing: something charted after the fact (e.g. a note added at review). Amendments and
        late entries are accepted on closed sessions; a plain entry on a closed session raises
        :class:`ReadOnlyError`.
        """
        if table_kind not in TABLE_KINDS:
            raise ValueError(f"table_kind must be one of {', '.join(TABLE_KINDS)}, got {table_kind!r}")
        _text(kind, "kind")
        _text(user, "user")
        _dict_arg(payload, "payload")
        tt = _ts(t, "t")
        payload_json = _to_json(payload, "payload")
        if amends is not None and (reason is None or not str(reason).strip()):
            raise ValueError("an amendment needs a non-empty reason")
        if amends is None and reason is not None and not str(reason).strip():
            raise ValueError("a late entry needs a non-empty reason")
        late = amends is None and reason is not None
        with self._tx() as conn:
            if amends is None and not late:
                self._require_open(conn, session_id)
            elif late:
                self._session_status(conn, session_id)
            else:
                self._session_status(conn, session_id)
                target = conn.execute("SELECT session_id, table_kind FROM entries WHERE id = ?",
                                      (amends,)).fetchone()
                if target is None or target[0] != session_id:
                    raise NotFoundError(f"session {session_id} has no entry {amends} to amend")
                if target[1] != table_kind:
                    raise ValueError(f"entry {amends} is a {target[1]!r} entry; an amendment keeps its table_kind")
                later = conn.execute("SELECT id FROM entries WHERE amends_id = ?", (amends,)).fetchone()
                if later is not None:
                    raise StoreError(f"entry {amends} was already amended by entry {later[0]}; amend that one")
            cur = conn.execute(
                "INSERT INTO entries (session_id, t, table_kind, kind, payload_json, user_login, amends_id, reason, "
                "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, tt, table_kind, kind, payload_json, user, amends, reason, self._now()))
            entry_id = int(cur.lastrowid)
            action = "entry_amended" if amends is not None else "late_entry_added" if late else "entry_added"
            self._audit(conn, user, action, session_id,
                        {"entry_id": entry_id, "table_kind": table_kind, "kind": kind, "t": tt,
                         "payload": payload, "amends": amends, "reason": reason})
            return entry_id

    _ENTRY_SQL = ("SELECT e.id, e.session_id, e.t, e.table_kind, e.kind, e.payload_json, e.user_login, e.amends_id, "
                  "e.reason, e.recorded_at, a.id FROM entries e LEFT JOIN entries a ON a.amends_id = e.id")

    @staticmethod
    def _entry(r: tuple[Any, ...]) -> Entry:
        return Entry(r[0], r[1], _dt(r[2]), r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], _dt(r[9]), r[10])

    def entries(self, session_id: int, table_kind: str | None = None, start: datetime | None = None,
                end: datetime | None = None, include_amended: bool = True, *,
                order: str = "time") -> list[Entry]:
        """The session's entries with ``start <= t < end``.

        ``include_amended=False`` gives the effective record: entries that a later entry amends
        are left out, so each charted fact appears once, in its latest version. ``order``:
        "time" (by ``t``, then id) or "recorded" (the order they were added, e.g. to replay a
        session after a crash). Another ``order`` → ``ValueError``.
        """
        if order not in ("time", "recorded"):
            raise ValueError("order must be 'time' or 'recorded'")
        where, args = ["e.session_id = ?"], [_sid(session_id)]
        if table_kind is not None:
            where.append("e.table_kind = ?")
            args.append(table_kind)
        if start is not None:
            where.append("e.t >= ?")
            args.append(_ts(start, "start"))
        if end is not None:
            where.append("e.t < ?")
            args.append(_ts(end, "end"))
        if not include_amended:
            where.append("a.id IS NULL")
        with self._read() as conn:
            rows = conn.execute(f"{self._ENTRY_SQL} WHERE {' AND '.join(where)} "
                                f"ORDER BY {'e.t, e.id' if order == 'time' else 'e.id'}", args).fetchall()
        return [self._entry(r) for r in rows]

    def effective_entries(self, session_id: int, table_kind: str | None = None, start: datetime | None = None,
                          end: datetime | None = None) -> list[Entry]:
        """The latest version of every charted fact (``entries(..., include_amended=False)``)."""
        return self.entries(session_id, table_kind, start, end, include_amended=False)

    def entry_history(self, entry_id: int) -> list[Entry]:
        """Every version of the fact an entry belongs to, original first, latest last."""
        with self._read() as conn:
            row = conn.execute(f"{self._ENTRY_SQL} WHERE e.id = ?", (entry_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no entry {entry_id}")
            chain = [self._entry(row)]
            while chain[0].amends is not None:
                chain.insert(0, self._entry(conn.execute(f"{self._ENTRY_SQL} WHERE e.id = ?",
                                                         (chain[0].amends,)).fetchone()))
            while chain[-1].amended_by is not None:
                chain.append(self._entry(conn.execute(f"{self._ENTRY_SQL} WHERE e.id = ?",
                                                      (chain[-1].amended_by,)).fetchone()))
        return chain

    # -------------------------------------------------------------------------- alarms
    def alarm_started(self, session_id: int, *, condition: str, kind: str, priority: Any, started_at: datetime,
                      limit: float | None, value: float | None, message: str) -> int:
        """Record an alarm condition starting and return the alarm id. ``kind``: 'physiological' or
        'technical'. ``priority``: LOW/MEDIUM/HIGH (any case, or an Enum with that name).
        ``limit``/``value``: the limit crossed and the value that crossed it (None if n/a).
        Closed session → :class:`ReadOnlyError`."""
        _text(condition, "condition")
        if kind not in ALARM_KINDS:
            raise ValueError(f"alarm kind must be one of {', '.join(ALARM_KINDS)}")
        prio = _priority(priority)
        t = _ts(started_at, "started_at")
        with self._tx() as conn:
            self._require_open(conn, session_id)
            cur = conn.execute(
                "INSERT INTO alarms (session_id, condition, kind, priority, max_priority, started_at, limit_value, "
                "trigger_value, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, condition, kind, prio, prio, t, limit, value, message or ""))
            conn.execute("UPDATE sessions SET n_alarms = n_alarms + 1 WHERE id = ?", (session_id,))
            return int(cur.lastrowid)

    def _alarm_session(self, conn: sqlite3.Connection, alarm_id: int) -> tuple[int, str, float | None, float]:
        row = conn.execute("SELECT session_id, max_priority, ended_at, started_at FROM alarms WHERE id = ?",
                           (alarm_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no alarm {alarm_id}")
        self._require_open(conn, row[0])
        return row[0], row[1], row[2], row[3]

    def alarm_escalated(self, alarm_id: int, priority: Any, at: datetime) -> None:
        """The alarm's priority rose to ``priority`` at ``at``: raises ``max_priority`` (never
        lowers it) and records an 'escalate' action."""
        prio = _priority(priority)
        t = _ts(at, "at")
        with self._tx() as conn:
            session_id, current, _, _ = self._alarm_session(conn, alarm_id)
            if PRIORITIES.index(prio) > PRIORITIES.index(current):
                conn.execute("UPDATE alarms SET max_priority = ? WHERE id = ?", (prio, alarm_id))
            conn.execute("INSERT INTO alarm_actions (session_id, alarm_id, t, action, user_login, detail) "
                         "VALUES (?, ?, ?, 'escalate', NULL, ?)", (session_id, alarm_id, t, prio))

    def alarm_ended(self, alarm_id: int, at: datetime) -> None:
        """The alarm condition ended at ``at``. An alarm ends once: a second end raises
        :class:`StoreError`; an end before its start raises ``ValueError``."""
        t = _ts(at, "at")
        with self._tx() as conn:
            _, _, ended, started = self._alarm_session(conn, alarm_id)
            if ended is not None:
                raise StoreError(f"alarm {alarm_id} already ended")
            if t < started:
                raise ValueError("an alarm cannot end before it started")
            conn.execute("UPDATE alarms SET ended_at = ? WHERE id = ?", (t, alarm_id))

    def alarm_action(self, session_id: int, *, alarm_id: int | None, at: datetime, action: str,
                     user: str | None, detail: str = "") -> int:
        """Record an action on an alarm (``alarm_id``) or on the whole alarm system (None, e.g. a
        global audio pause) and audit it; returns the action id. ``action``: one of
        :data:`ALARM_ACTIONS`. ``user``: login, or None for automatic actions."""
        if action not in ALARM_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ALARM_ACTIONS)}, got {action!r}")
        t = _ts(at, "at")
        with self._tx() as conn:
            self._require_open(conn, session_id)
            if alarm_id is not None:
                row = conn.execute("SELECT session_id FROM alarms WHERE id = ?", (alarm_id,)).fetchone()
                if row is None or row[0] != session_id:
                    raise NotFoundError(f"session {session_id} has no alarm {alarm_id}")
            cur = conn.execute("INSERT INTO alarm_actions (session_id, alarm_id, t, action, user_login, detail) "
                               "VALUES (?, ?, ?, ?, ?, ?)", (session_id, alarm_id, t, action, user, detail or ""))
            self._audit(conn, user, f"alarm_{action}", session_id,
                        {"alarm_id": alarm_id, "action": action, "t": t, "detail": detail or ""})
            return int(cur.lastrowid)

    @staticmethod
    def _action(r: tuple[Any, ...]) -> AlarmAction:
        return AlarmAction(r[0], r[1], r[2], _dt(r[3]), r[4], r[5], r[6])

    def alarms(self, session_id: int, start: datetime | None = None, end: datetime | None = None) -> list[AlarmRow]:
        """Alarms active at some time in ``[start, end)`` (started before ``end``, not ended before
        ``start``), by start time, each with its actions."""
        where, args = ["session_id = ?"], [_sid(session_id)]
        if end is not None:
            where.append("started_at < ?")
            args.append(_ts(end, "end"))
        if start is not None:
            where.append("(ended_at IS NULL OR ended_at >= ?)")
            args.append(_ts(start, "start"))
        with self._read() as conn:
            rows = conn.execute("SELECT id, session_id, condition, kind, priority, max_priority, started_at, ended_at, "
                                f"limit_value, trigger_value, message FROM alarms WHERE {' AND '.join(where)} "
                                "ORDER BY started_at, id", args).fetchall()
            actions: dict[int, list[AlarmAction]] = {}
            for r in conn.execute("SELECT id, session_id, alarm_id, t, action, user_login, detail FROM alarm_actions "
                                  "WHERE session_id = ? AND alarm_id IS NOT NULL ORDER BY t, id", (session_id,)):
                actions.setdefault(r[2], []).append(self._action(r))
        return [AlarmRow(r[0], r[1], r[2], r[3], r[4], r[5], _dt(r[6]), _dt(r[7]), r[8], r[9], r[10],
                         tuple(actions.get(r[0], ()))) for r in rows]

    def alarm_actions(self, session_id: int, start: datetime | None = None,
                      end: datetime | None = None) -> list[AlarmAction]:
        """All alarm actions of the session (including system-wide ones) with ``start <= t < end``."""
        where, args = ["session_id = ?"], [_sid(session_id)]
        if start is not None:
            where.append("t >= ?")
            args.append(_ts(start, "start"))
        if end is not None:
            where.append("t < ?")
            args.append(_ts(end, "end"))
        with self._read() as conn:
            rows = conn.execute("SELECT id, session_id, alarm_id, t, action, user_login, detail FROM alarm_actions "
                                f"WHERE {' AND '.join(where)} ORDER BY t, id", args).fetchall()
        return [self._action(r) for r in rows]

    # -------------------------------------------------------------------------- review queries
    @staticmethod
    def _range(where: list[str], args: list[Any], column: str, start: datetime | None,
               end: datetime | None) -> None:
        if start is not None:
            where.append(f"{column} >= ?")
            args.append(_ts(start, "start"))
        if end is not None:
            where.append(f"{column} < ?")
            args.append(_ts(end, "end"))

    def numerics(self, session_id: int, vital: str, start: datetime | None = None, end: datetime | None = None,
                 *, with_quality: bool = False) -> tuple[np.ndarray, ...]:
        """One vital's values with ``start <= t < end`` in time order: ``(t, v)`` as float64 arrays
        (t = UTC epoch s, v = value with NaN where the device reported none), plus the int64
        quality bitmask array with ``with_quality=True``. Unknown vital → ``ValueError``."""
        if vital not in CATALOGUE:
            raise ValueError(f"unknown vital {vital!r}; known: {', '.join(VITAL_KEYS)}")
        where, args = ["session_id = ?", "vital = ?"], [_sid(session_id), vital]
        self._range(where, args, "t", start, end)
        with self._read() as conn:
            rows = conn.execute(f"SELECT t, value, quality FROM observations WHERE {' AND '.join(where)} ORDER BY t",
                                args).fetchall()
        if not rows:
            empty = np.empty(0, dtype=np.float64)
            return (empty, empty.copy(), np.empty(0, dtype=np.int64)) if with_quality else (empty, empty.copy())
        t, v, q = zip(*rows)
        out = (np.array(t, dtype=np.float64), np.array(v, dtype=np.float64))
        return (*out, np.array(q, dtype=np.int64)) if with_quality else out

    def observations(self, session_id: int, vital: str | None = None, start: datetime | None = None,
                     end: datetime | None = None) -> list[NumericObservation]:
        """The stored observations (all vitals, or one) with ``start <= t < end`` as model objects,
        in time order: value, quality flags, source, device time and unit round-trip."""
        where, args = ["o.session_id = ?"], [_sid(session_id)]
        if vital is not None:
            where.append("o.vital = ?")
            args.append(vital)
        self._range(where, args, "o.t", start, end)
        with self._read() as conn:
            rows = conn.execute("SELECT o.t, o.vital, o.value, o.quality, o.device_time, o.unit, s.name FROM "
                                f"observations o JOIN sources s ON s.id = o.source_id WHERE {' AND '.join(where)} "
                                "ORDER BY o.t, o.rowid", args).fetchall()
        return [NumericObservation(vital=r[1], value=r[2], unit=r[5] if r[5] is not None else CATALOGUE[r[1]].unit,
                                   source=r[6], sample_time=_dt(r[0]),
                                   device_time=datetime.fromisoformat(r[4]) if r[4] else None,
                                   quality=bits_to_quality(r[3])) for r in rows]

    def conditions(self, session_id: int, start: datetime | None = None,
                   end: datetime | None = None) -> list[DeviceCondition]:
        """Device condition changes with ``start <= t < end``, in time order."""
        where, args = ["c.session_id = ?"], [_sid(session_id)]
        self._range(where, args, "c.t", start, end)
        with self._read() as conn:
            rows = conn.execute("SELECT c.t, c.code, c.active, c.text, s.name FROM conditions c "
                                f"LEFT JOIN sources s ON s.id = c.source_id WHERE {' AND '.join(where)} "
                                "ORDER BY c.t, c.id", args).fetchall()
        return [DeviceCondition(code=r[1], active=bool(r[2]), text=r[3], source=r[4] or "", time=_dt(r[0]))
                for r in rows]

    def waveform_channels(self, session_id: int) -> list[str]:
        """Channels with stored samples for the session."""
        with self._read() as conn:
            found = {r[0] for r in conn.execute(
                "SELECT DISTINCT channel FROM waveforms WHERE session_id = ? UNION "
                "SELECT channel FROM waveform_pending WHERE session_id = ?", (session_id, session_id))}
        return [c for c in WAVE_CHANNELS if c in found] + sorted(found - set(WAVE_CHANNELS))

    def _blocks(self, session_id: int, channel: str, s: float, e: float) -> list[tuple[float, float, int, int, bytes]]:
        sql = ("SELECT t0, rate, n, enc, data FROM {} WHERE session_id = ? AND channel = ? AND t0 > ? AND t0 < ? "
               "AND t0 + n / rate > ?")
        args = (session_id, channel, s - MAX_BLOCK_SECONDS - 1.0, e, s)
        with self._read() as conn:
            rows = conn.execute(sql.format("waveforms") + " ORDER BY t0", args).fetchall()
            rows += conn.execute(sql.format("waveform_pending"), args).fetchall()
        rows.sort(key=lambda r: r[0])
        return rows

    def waveform(self, session_id: int, channel: str, start: datetime, end: datetime,
                 max_points: int | None = None) -> WaveformSlice:
        """Samples of ``channel`` with ``start <= t < end`` (committed data; reads only the blocks
        that overlap the range).

        Without ``max_points`` (or when the range holds no more than ``max_points`` samples):
        ``WaveformSlice(t, v, v)``, the samples themselves (float32, NaN gaps kept) and their times
        (float64 epoch s). With more samples than ``max_points``: the range is cut into
        ``max_points`` equal bins and the result holds bin centres and each bin's float32 min and
        max (NaN for bins with no valid sample), so a plot keeps every peak. ``end <= start`` or
        ``max_points < 1`` → ``ValueError``.
        """
        s, e = _ts(start, "start"), _ts(end, "end")
        if e <= s:
            raise ValueError("end must be after start")
        if max_points is not None and max_points < 1:
            raise ValueError("max_points must be at least 1")
        pieces: list[tuple[np.ndarray, int, int, float, float, bytes, int]] = []
        total = 0
        for t0, rate, n, enc, blob in self._blocks(_sid(session_id), channel, s, e):
            times = t0 + np.arange(n, dtype=np.float64) / rate
            i0, i1 = np.searchsorted(times, s, "left"), np.searchsorted(times, e, "left")
            if i1 > i0:
                pieces.append((times, int(i0), int(i1), t0, rate, blob, enc))
                total += int(i1 - i0)
        if max_points is None or total <= max_points:
            if not pieces:
                empty = np.empty(0, dtype=np.float32)
                return WaveformSlice(np.empty(0, dtype=np.float64), empty, empty)
            ts_, vs = [], []
            for times, i0, i1, _t0, _rate, blob, enc in pieces:
                samples = _decode_samples(blob, len(times), enc)
                ts_.append(times[i0:i1])
                vs.append(samples[i0:i1])
            v = np.concatenate(vs)
            return WaveformSlice(np.concatenate(ts_), v, v)
        width = (e - s) / max_points
        out_min = np.full(max_points, np.nan, dtype=np.float32)
        out_max = np.full(max_points, np.nan, dtype=np.float32)
        for times, i0, i1, _t0, _rate, blob, enc in pieces:
            v = _decode_samples(blob, len(times), enc)[i0:i1]
            bins = np.clip(((times[i0:i1] - s) / width).astype(np.int64), 0, max_points - 1)
            starts = np.flatnonzero(np.diff(bins, prepend=-1))
            lo = np.fmin.reduceat(v, starts)  # fmin/fmax skip NaN; an all-NaN bin stays NaN
            hi = np.fmax.reduceat(v, starts)
            idx = bins[starts]
            out_min[idx] = np.fmin(out_min[idx], lo)
            out_max[idx] = np.fmax(out_max[idx], hi)
        centres = s + (np.arange(max_points, dtype=np.float64) + 0.5) * width
        return WaveformSlice(centres, out_min, out_max)

    def summary(self, session_id: int, *, exclude: Iterable[Quality] = ()) -> dict[str, VitalSummary]:
        """Per vital: count, min, max, mean of the values, and the first/last observation time.
        Values carrying any flag in ``exclude`` (e.g. ``{Quality.ARTIFACT, Quality.SENSOR_OFF}``)
        are left out of the statistics and counted in ``n_flagged``."""
        mask = quality_to_bits(exclude)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT vital, "
                "sum(value IS NOT NULL AND (quality & :m) = 0), "
                "min(CASE WHEN (quality & :m) = 0 THEN value END), "
                "max(CASE WHEN (quality & :m) = 0 THEN value END), "
                "avg(CASE WHEN (quality & :m) = 0 THEN value END), "
                "min(t), max(t), sum(value IS NULL), sum(value IS NOT NULL AND (quality & :m) != 0) "
                "FROM observations WHERE session_id = :s GROUP BY vital",
                {"m": mask, "s": _sid(session_id)}).fetchall()
        order = {k: i for i, k in enumerate(VITAL_KEYS)}
        rows.sort(key=lambda r: order.get(r[0], len(order)))
        return {r[0]: VitalSummary(int(r[1]), r[2], r[3], r[4], _dt(r[5]), _dt(r[6]), int(r[7]), int(r[8]))
                for r in rows}

    def last_data_time(self, session_id: int) -> datetime | None:
        """The latest time of any observation, waveform sample, condition or entry of the session
        (None if nothing was recorded): where a crash gap starts. Uses indexes only."""
        sid = _sid(session_id)
        latest: list[float] = []
        with self._read() as conn:
            for vital in VITAL_KEYS:
                row = conn.execute("SELECT max(t) FROM observations WHERE session_id = ? AND vital = ?",
                                   (sid, vital)).fetchone()
                if row[0] is not None:
                    latest.append(row[0])
            channels = [r[0] for r in conn.execute(
                "SELECT DISTINCT channel FROM waveform_pending WHERE session_id = ?", (sid,))]
            for channel in set(WAVE_CHANNELS) | set(channels):
                for table in ("waveforms", "waveform_pending"):
                    row = conn.execute(f"SELECT t0, n, rate FROM {table} WHERE session_id = ? AND channel = ? "
                                       "ORDER BY t0 DESC LIMIT 1", (sid, channel)).fetchone()
                    if row is not None:
                        latest.append(row[0] + (row[1] - 1) / row[2])
            for table in ("conditions", "entries"):
                row = conn.execute(f"SELECT max(t) FROM {table} WHERE session_id = ?", (sid,)).fetchone()
                if row[0] is not None:
                    latest.append(row[0])
        return _dt(max(latest)) if latest else None


# ---------------------------------------------------------------------------------- the writer
_PERMANENT_SQLITE = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
                     sqlite3.DataError, sqlite3.NotSupportedError)


def _is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying (disk full, I/O error, locked, read-only file …)."""
    if isinstance(exc, (StoreError,) + _PERMANENT_SQLITE):
        return False
    return isinstance(exc, (sqlite3.DatabaseError, OSError, MemoryError))


def _commit_due(now: float, oldest: float | None, queue_empty: bool, urgent: bool,
                interval: float, idle: float) -> bool:
    """The writer's commit policy: commit when the oldest uncommitted item is ``interval`` old,
    or when the queue has drained and the batch is ``idle`` old (or holds an urgent item)."""
    if oldest is None:
        return urgent
    age = now - oldest
    return age >= interval or (queue_empty and (urgent or age >= idle))


class _Op(NamedTuple):
    kind: str  # 'obs' | 'wave' | 'cond' | 'call'
    session_id: int | None
    items: list[Any]
    fn: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    future: concurrent.futures.Future[Any] | None = None


_FLUSH = "flush"
_STOP = "stop"


class StoreWriter(threading.Thread):
    """Writes to a :class:`SessionStore` on its own thread, in batches.

    Producers (any thread) call :meth:`put_observations`, :meth:`put_waveforms`,
    :meth:`put_conditions` and :meth:`put_call`; items are applied in the order they were put.
    The writer commits when the oldest uncommitted item is ``commit_interval`` (1 s) old, and
    whenever the queue drains and the batch is at least ``idle_commit`` (0.5 s) old; a
    :meth:`put_call` is committed as soon as the queue drains. So a crash loses at most about the
    last second.

    If a commit fails for a reason that may pass (disk full, I/O error, locked or read-only file)
    the batch is rolled back but kept in memory with everything queued since, and retried with
    exponential back-off (``retry_initial`` up to ``retry_max`` seconds): no data is dropped.
    ``on_error(exc)`` is called (on the writer thread) after every failed attempt, and
    ``on_recovered()`` once when a commit succeeds again. Items the store refuses for good
    (closed session, wrong type) are dropped, logged and passed to ``on_rejected(kind, exc)``;
    a refused :meth:`put_call` gets the exception on its future. Callbacks must not block and
    must not call the store.

    Start it with :meth:`start`; end it with :meth:`stop` (flushes and commits everything and
    finalises pending waveform blocks). ``on_commit(n_items)`` (optional) is called after each
    successful commit.
    """

    def __init__(self, store: SessionStore, *, commit_interval: float = 1.0, idle_commit: float = 0.5,
                 retry_initial: float = 0.1, retry_max: float = 5.0,
                 on_error: Callable[[BaseException], None] | None = None,
                 on_recovered: Callable[[], None] | None = None,
                 on_rejected: Callable[[str, BaseException], None] | None = None,
                 on_commit: Callable[[int], None] | None = None, name: str = "vigil-store-writer") -> None:
        super().__init__(name=name, daemon=True)
        if not 0 < idle_commit <= commit_interval:
            raise ValueError("need 0 < idle_commit <= commit_interval")
        self.store = store
        self.commit_interval = commit_interval
        self.idle_commit = idle_commit
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.on_error = on_error
        self.on_recovered = on_recovered
        self.on_rejected = on_rejected
        self.on_commit = on_commit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopping = False
        self._put_lock = threading.Lock()
        self.failing = False
        self.last_error: BaseException | None = None
        self.commits = 0
        self._batch_len = 0

    # -------------------------------------------------------------------------- producers
    def _put(self, item: Any) -> None:
        with self._put_lock:
            if self._stopping:
                raise StoreError("the store writer is stopped")
            self._queue.put(item)

    def put_observations(self, session_id: int, observations: Iterable[NumericObservation]) -> None:
        """Queue numeric observations for :meth:`SessionStore.add_observations`. Thread-safe."""
        self._put(_Op("obs", session_id, list(observations)))

    def put_waveforms(self, session_id: int, chunks: Iterable[WaveformChunk]) -> None:
        """Queue waveform chunks for :meth:`SessionStore.add_waveforms`. Thread-safe."""
        self._put(_Op("wave", session_id, list(chunks)))

    def put_conditions(self, session_id: int, conditions: Iterable[DeviceCondition]) -> None:
        """Queue device condition changes for :meth:`SessionStore.add_conditions`. Thread-safe."""
        self._put(_Op("cond", session_id, list(conditions)))

    def put_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Queue ``fn(*args, **kwargs)`` (normally a store method) to run on the writer thread in
        order with the data. The future gets its result once the transaction it ran in has
        committed, or the exception if the store refused it. Thread-safe."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(_Op("call", None, [], fn, args, kwargs, future))
        return future

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is committed. False on timeout (e.g.
        while writes fail; the data stays queued)."""
        if self.ident is None:
            raise StoreError("the store writer was never started: call start() first")
        done = threading.Event()
        self._put((_FLUSH, done))
        return done.wait(timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop accepting items, commit everything queued, finalise pending waveform blocks and end
        the thread. True if it ended within ``timeout``; otherwise (writes still failing) the
        thread keeps retrying and the data stays in memory."""
        with self._put_lock:
            if not self._stopping:
                self._stopping = True
                self._queue.put((_STOP, None))
        if self.ident is None:  # never started: drain the queue on this thread
            self.run()
            return True
        if self.is_alive():
            self.join(timeout)
        return not self.is_alive()

    @property
    def pending(self) -> int:
        """Approximate number of items queued or waiting to be committed."""
        return self._queue.qsize() + self._batch_len

    # -------------------------------------------------------------------------- the thread
    def run(self) -> None:
        batch: list[_Op] = []
        waiters: list[threading.Event] = []
        oldest: float | None = None
        urgent = False
        stopping = False
        retry_at = 0.0
        backoff = self.retry_initial
        q = self._queue
        while True:
            now = time.monotonic()
            if self.failing:
                timeout: float | None = max(0.0, retry_at - now)
            elif urgent or stopping:
                timeout = 0.0
            elif oldest is not None:
                timeout = max(0.0, oldest + self.idle_commit - now)
            else:
                timeout = None
            try:
                item = q.get(timeout=timeout) if timeout != 0.0 else q.get_nowait()
                while True:
                    if isinstance(item, _Op):
                        batch.append(item)
                        if oldest is None:
                            oldest = time.monotonic()
                        if item.kind == "call":
                            urgent = True
                    elif item[0] == _FLUSH:
                        waiters.append(item[1])
                        urgent = True
                    elif item[0] == _STOP:
                        stopping = True
                    if oldest is not None and time.monotonic() - oldest >= self.commit_interval:
                        break
                    item = q.get_nowait()
            except queue.Empty:
                pass
            self._batch_len = len(batch)
            now = time.monotonic()
            if self.failing and now < retry_at:
                continue
            drained = q.empty()
            if not (self.failing or (stopping and drained)
                    or _commit_due(now, oldest, drained, urgent, self.commit_interval, self.idle_commit)):
                continue
            finalize = stopping and drained
            if self._commit(batch, finalize):
                n = len(batch)
                batch, oldest, urgent = [], None, False
                self._batch_len = 0
                self.commits += 1
                for w in waiters:
                    w.set()
                waiters = []
                if self.failing:
                    self.failing = False
                    backoff = self.retry_initial
                    self._callback(self.on_recovered)
                if self.on_commit is not None and n:
                    self._callback(self.on_commit, n)
                if finalize:
                    return
            else:
                self.failing = True
                retry_at = time.monotonic() + backoff
                backoff = min(self.retry_max, backoff * 2)

    def _callback(self, fn: Callable[..., Any] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("store writer callback %r failed", fn)

    def _apply_data(self, ops: list[_Op], outcomes: list[tuple[_Op, Any, BaseException | None]]) -> None:
        """Apply consecutive data items of one kind and session in one store call; if the store
        refuses the group for good, apply them one by one so only the bad ones are dropped."""
        store = self.store
        method = {"obs": store.add_observations, "wave": store.add_waveforms,
                  "cond": store.add_conditions}[ops[0].kind]
        if len(ops) > 1:
            try:
                method(ops[0].session_id, [x for o in ops for x in o.items])
                return
            except Exception as exc:
                if _is_transient(exc):
                    raise
        for op in ops:
            try:
                method(op.session_id, op.items)
            except Exception as exc:
                if _is_transient(exc):
                    raise
                outcomes.append((op, None, exc))

    def _commit(self, batch: list[_Op], finalize: bool) -> bool:
        store = self.store
        outcomes: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            with store.transaction():
                i = 0
                while i < len(batch):
                    op = batch[i]
                    j = i + 1
                    if op.kind != "call":  # merge consecutive data items of the same kind and session
                        while j < len(batch) and batch[j].kind == op.kind and batch[j].session_id == op.session_id:
                            j += 1
                    try:
                        if op.kind == "call":
                            assert op.fn is not None
                            outcomes.append((op, op.fn(*op.args, **(op.kwargs or {})), None))
                        else:
                            self._apply_data(batch[i:j], outcomes)
                    except Exception as exc:
                        if _is_transient(exc):
                            raise
                        outcomes.append((op, None, exc))
                    i = j
                if finalize:
                    store.flush_waveforms()
        except Exception as exc:
            self.last_error = exc
            log.warning("store write failed (%s); %d item(s) kept for retry", exc, len(batch))
            self._callback(self.on_error, exc)
            return False
        for op, result, exc in outcomes:
            if op.future is not None:
                if op.future.done():  # cancelled by the caller meanwhile
                    continue
                if exc is None:
                    op.future.set_result(result)
                else:
                    op.future.set_exception(exc)
            elif exc is not None:
                log.error("store refused %s for session %s: %s", op.kind, op.session_id, exc)
                self._callback(self.on_rejected, op.kind, exc)
        return True
