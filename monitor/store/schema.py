"""The store's physical schema: tables, append-only triggers and the forward migrations
(``MIGRATIONS[i]`` upgrades schema version ``i`` to ``i + 1``)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable


from monitor.store.codec import _GENESIS
from monitor.store.records import StoreError

#: ``PRAGMA application_id`` of a Vigil database: ASCII "VIGL".
APPLICATION_ID = 0x5649474C

#: Hard upper bound on the duration of one stored waveform block, seconds (range queries rely on it).
MAX_BLOCK_SECONDS = 60.0

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


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """Version 4: wrong-PIN counts and lockouts kept across a restart (one row per user name as
    typed, known or not; ``locked_until`` in epoch seconds, UTC). Not a record: rows change."""
    conn.execute("CREATE TABLE sign_in_failures (login TEXT PRIMARY KEY, failures INTEGER NOT NULL "
                 "CHECK (failures >= 0), locked_until REAL) WITHOUT ROWID")


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    """Version 5: the keyed audit chain. Each audit row gets a ``mac`` (``"<key id>:<HMAC>"`` of its
    hash under the database's key, :mod:`monitor.store.keys`); rows written before the chain was
    keyed keep ``mac`` NULL and are checked by their plain hashes (the switch is itself an audit
    row, ``audit_chain_keyed``, written when the file is next opened for writing)."""
    conn.execute("ALTER TABLE audit ADD COLUMN mac TEXT")


def _migrate_5_to_6(conn: sqlite3.Connection) -> None:
    """Version 6: observations are indexed in the order they arrive, ``(session_id, t, vital)``,
    instead of ``(session_id, vital, t)``. Rows arrive a second at a time for every vital, so the
    old index took each commit's rows at one end per vital, in the middle of the tree: a commit
    rewrote ~25 of its pages (~12 MB per session-hour into the write-ahead log alone); the new one
    takes them at its right-most leaf. A read of one vital scans the index in time order and skips
    the other vitals inside the index (no row is read for them)."""
    conn.execute("DROP INDEX observations_svt")
    conn.execute("CREATE INDEX observations_stv ON observations (session_id, t, vital)")


#: Forward migrations: ``MIGRATIONS[i](conn)`` upgrades schema version ``i`` to ``i + 1`` inside
#: one transaction. The current version is ``len(MIGRATIONS)``.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3,
                                                          _migrate_3_to_4, _migrate_4_to_5, _migrate_5_to_6]
#: Trigger definitions of the current schema (used to restore triggers found missing or changed;
#: versions 3 to 6 keep version 2's).
_CURRENT_TRIGGERS = _v2_triggers


def _normal_sql(sql: str | None) -> str:
    """A schema statement as compared: ``IF NOT EXISTS`` dropped, white space collapsed."""
    return " ".join((sql or "").replace("IF NOT EXISTS ", "").split())


def schema_objects(conn: sqlite3.Connection) -> dict[str, str]:
    """``"type name"`` → SHA-256 of the normalised SQL of every table, index and view of the file
    (SQLite's own objects excluded): what :class:`monitor.store.SessionStore` records, to notice a
    schema changed by hand."""
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE type IN ('table', 'index', 'view') "
                        "AND name NOT LIKE 'sqlite_%' ORDER BY type, name").fetchall()
    return {f"{t} {n}": hashlib.sha256(_normal_sql(sql).encode()).hexdigest() for t, n, sql in rows}


def trigger_differences(conn: sqlite3.Connection, expected: dict[str, str]) -> dict[str, list[str]]:
    """How the file's triggers differ from ``expected`` (name → SQL, normally the current schema's
    :data:`_CURRENT_TRIGGERS`): ``missing`` (names), ``changed`` (present with other SQL) and
    ``unexpected`` (triggers the schema does not have)."""
    present = {n: sql for n, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")}
    return {
        "missing": sorted(n for n in expected if n not in present),
        "changed": sorted(n for n in expected if n in present and _normal_sql(present[n]) != _normal_sql(expected[n])),
        "unexpected": sorted(n for n in present if n not in expected),
    }


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
