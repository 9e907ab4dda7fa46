"""Incremental reads for the clinic record's replication, and the chair's identity.

The replication worker (:mod:`monitor.clinic.replication`) copies this store into the clinic record
(PostgreSQL) without ever writing here. It asks :meth:`ChangesMixin.changes` for everything after
its watermarks — the highest chair-local id of each table the clinic record already holds — and
gets one consistent snapshot back (one read transaction): new sessions and the current state of the
sessions it still watches, their alarms, and the rows of each append-only table in id order.

Natural keys: every row is identified by the chair's id for it (``observations`` by its rowid:
the store never vacuums, so rowids never move), and a chair by :meth:`ChangesMixin.chair_uid`, a
random UUID kept in ``meta`` for the life of the file. Ids only grow (one writer, rows never
deleted), so "every row with an id above the watermark" is exactly what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from monitor.store.codec import _at, _sid
from monitor.store.database import StoreCore
from monitor.store.records import AuditRow, NotFoundError, StoreError

__all__ = ["CHANGE_TABLES", "SEALED_TABLES", "SESSION_COLUMNS", "ALARM_COLUMNS", "TABLE_COLUMNS", "ChangeSet",
           "SessionOrigin", "ChangesMixin"]

#: Append-only tables copied by id, in the order they are applied (a row may refer to an earlier
#: table's row: an alarm action to its alarm, an audit row to its session).
CHANGE_TABLES = ("entries", "alarm_actions", "observations", "waveforms", "conditions", "gaps", "audit")

#: Columns of a session row in a :class:`ChangeSet`.
SESSION_COLUMNS = ("id", "created_at", "started_at", "ended_at", "status", "phase", "protocol", "patient_name",
                   "patient_ref", "patient_json", "plan_json", "baseline_json", "device", "created_by", "closed_by",
                   "close_meaning", "signed_name", "last_seen", "n_observations", "n_alarms")
#: Columns of an alarm row in a :class:`ChangeSet`.
ALARM_COLUMNS = ("id", "session_id", "condition", "kind", "priority", "max_priority", "started_at", "ended_at",
                 "limit_value", "trigger_value", "message")
#: Columns of each append-only table's rows in a :class:`ChangeSet`: the chair-local id, then the
#: session id, then the row (sources as names, times as the stored floats).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "entries": ("id", "session_id", "t", "table_kind", "kind", "payload_json", "user_login", "amends_id", "reason",
                "recorded_at"),
    "alarm_actions": ("id", "session_id", "alarm_id", "t", "action", "user_login", "detail"),
    "observations": ("rowid", "session_id", "t", "vital", "value", "quality", "device_time", "unit", "source"),
    "waveforms": ("id", "session_id", "channel", "t0", "rate", "n", "enc", "source", "data"),
    "conditions": ("id", "session_id", "t", "code", "active", "text", "source"),
    "gaps": ("id", "session_id", "start_t", "end_t", "reason"),
    "audit": ("seq", "session_id", "t", "user_login", "action", "payload_json", "prev_hash", "hash"),
}
_SQL = {
    "entries": "SELECT id, session_id, t, table_kind, kind, payload_json, user_login, amends_id, reason, recorded_at "
               "FROM entries WHERE id > ? ORDER BY id LIMIT ?",
    "alarm_actions": "SELECT id, session_id, alarm_id, t, action, user_login, detail FROM alarm_actions "
                     "WHERE id > ? ORDER BY id LIMIT ?",
    "observations": "SELECT o.rowid, o.session_id, o.t, o.vital, o.value, o.quality, o.device_time, o.unit, s.name "
                    "FROM observations o JOIN sources s ON s.id = o.source_id "
                    "WHERE o.rowid > ? ORDER BY o.rowid LIMIT ?",
    "waveforms": "SELECT w.id, w.session_id, w.channel, w.t0, w.rate, w.n, w.enc, s.name, w.data FROM waveforms w "
                 "LEFT JOIN sources s ON s.id = w.source_id WHERE w.id > ? ORDER BY w.id LIMIT ?",
    "conditions": "SELECT c.id, c.session_id, c.t, c.code, c.active, c.text, s.name FROM conditions c "
                  "LEFT JOIN sources s ON s.id = c.source_id WHERE c.id > ? ORDER BY c.id LIMIT ?",
    "gaps": "SELECT id, session_id, start_t, end_t, reason FROM gaps WHERE id > ? ORDER BY id LIMIT ?",
    "audit": "SELECT seq, session_id, t, user_login, action, payload_json, prev_hash, hash FROM audit "
             "WHERE seq > ? ORDER BY seq LIMIT ?",
}
_MAX_ID = {"entries": "SELECT max(id) FROM entries", "alarm_actions": "SELECT max(id) FROM alarm_actions",
           "observations": "SELECT max(rowid) FROM observations", "waveforms": "SELECT max(id) FROM waveforms",
           "conditions": "SELECT max(id) FROM conditions", "gaps": "SELECT max(id) FROM gaps",
           "audit": "SELECT max(seq) FROM audit", "sessions": "SELECT max(id) FROM sessions",
           "alarms": "SELECT max(id) FROM alarms"}
#: Tables whose rows of a session are final once it is closed (entries still take late entries).
SEALED_TABLES = ("observations", "waveforms", "conditions", "alarms", "alarm_actions", "gaps")
_COUNT_SQL = {t: f"SELECT count(*) FROM {t} WHERE session_id = ?" for t in SEALED_TABLES}
_SESSION_SQL = "SELECT " + ", ".join(SESSION_COLUMNS) + " FROM sessions"
_ALARM_SQL = "SELECT " + ", ".join(ALARM_COLUMNS) + " FROM alarms"


class ChangeSet(NamedTuple):
    """What the store holds beyond given watermarks, read in one snapshot.

    ``sessions``: rows (:data:`SESSION_COLUMNS`) of the sessions above the sessions watermark and
    of the watched ones, by id. ``alarms``: rows (:data:`ALARM_COLUMNS`) of the alarms above the
    alarms watermark and of the watched sessions, by id. ``rows``: table → rows
    (:data:`TABLE_COLUMNS`) above that table's watermark, in id order, at most the limit.
    ``tails``: the unfinished waveform block of each channel of every open session
    (session_id, channel, t0, rate, n, enc, source, data). ``counts``: for each session of
    ``sessions`` that is closed, when the set is complete, table → its number of rows in
    :data:`SEALED_TABLES`. ``complete``: no table was cut by the limit (everything up to this
    snapshot is here)."""

    sessions: list[tuple[Any, ...]]
    alarms: list[tuple[Any, ...]]
    rows: dict[str, list[tuple[Any, ...]]]
    tails: list[tuple[Any, ...]]
    counts: dict[int, dict[str, int]]
    complete: bool


class SessionOrigin(NamedTuple):
    """Where a session was recorded: the chair's name and identity (None for a chair's own
    database, which does not name itself) and the session's id in that chair's store."""

    chair: str | None
    chair_uid: str | None
    session_id: int


def _limit(table: str, limit: int) -> int:
    # A waveform block is ~10-60 kB: a batch of them is bounded by bytes, not rows.
    return max(1, limit // 100) if table == "waveforms" else limit


class ChangesMixin(StoreCore):
    """Incremental reads for replication, the chair's identity and a session's origin."""

    def changes(self, after: Mapping[str, int], *, watch: Iterable[int] = (), limit: int = 20_000) -> ChangeSet:
        """Everything beyond the watermarks ``after`` (table → highest chair-local id already copied;
        keys ``sessions``, ``alarms`` and each of :data:`CHANGE_TABLES`, a missing key = 0), in one
        snapshot. ``watch``: ids of sessions whose state and alarms to return again (the ones the
        clinic record does not hold as complete). ``limit``: rows per table (waveform blocks: a
        hundredth of it), ≥ 1. Reads only; a closed store raises :class:`StoreError`."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        watched = sorted({_sid(s) for s in watch})
        marks = {k: int(after.get(k, 0)) for k in ("sessions", "alarms", *CHANGE_TABLES)}
        marks_in = ", ".join("?" * len(watched))
        with self._read() as conn:
            sessions = conn.execute(
                f"{_SESSION_SQL} WHERE id > ?{f' OR id IN ({marks_in})' if watched else ''} ORDER BY id",
                (marks["sessions"], *watched)).fetchall()
            alarms = conn.execute(
                f"{_ALARM_SQL} WHERE id > ?{f' OR session_id IN ({marks_in})' if watched else ''} ORDER BY id",
                (marks["alarms"], *watched)).fetchall()
            rows: dict[str, list[tuple[Any, ...]]] = {}
            complete = True
            for table in CHANGE_TABLES:
                n = _limit(table, limit)
                rows[table] = conn.execute(_SQL[table], (marks[table], n)).fetchall()
                complete = complete and len(rows[table]) < n
            tails = conn.execute(
                "SELECT p.session_id, p.channel, p.t0, p.rate, p.n, p.enc, s.name, p.data FROM waveform_pending p "
                "JOIN sessions x ON x.id = p.session_id LEFT JOIN sources s ON s.id = p.source_id "
                "WHERE x.status = 'open' ORDER BY p.session_id, p.channel").fetchall()
            closed = [r[0] for r in sessions if r[4] != "open"] if complete else []
            counts = {sid: {t: conn.execute(_COUNT_SQL[t], (sid,)).fetchone()[0] for t in SEALED_TABLES}
                      for sid in closed}
        return ChangeSet(sessions, alarms, rows, [(*r[:7], bytes(r[7])) for r in tails], counts, complete)

    def table_marks(self) -> dict[str, int]:
        """The highest id of each replicated table (``sessions``, ``alarms`` and
        :data:`CHANGE_TABLES`; 0 for an empty table): a clinic record holding more than this was
        fed by another copy of this file (a backup restored over newer data)."""
        with self._read() as conn:
            return {table: int(conn.execute(sql).fetchone()[0] or 0) for table, sql in _MAX_ID.items()}

    def audit_rows_after(self, seq: int, *, actions: Iterable[str] | None = None,
                         limit: int = 10_000) -> list[AuditRow]:
        """Up to ``limit`` audit rows with a sequence number above ``seq``, in order; only rows whose
        action is one of ``actions`` when given (filtered by SQLite: a long trail is scanned quickly)."""
        sql = "SELECT seq, t, user_login, session_id, action, payload_json, prev_hash, hash FROM audit WHERE seq > ?"
        args: list[Any] = [int(seq)]
        if actions is not None:
            wanted = sorted(set(actions))
            sql += f" AND action IN ({', '.join('?' * len(wanted))})"
            args += wanted
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY seq LIMIT ?", (*args, int(limit))).fetchall()
        return [AuditRow(r[0], _at(r[1]), r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def audit_hash(self, seq: int) -> str | None:
        """The stored hash of audit row ``seq``, or None if there is no such row."""
        with self._read() as conn:
            row = conn.execute("SELECT hash FROM audit WHERE seq = ?", (int(seq),)).fetchone()
        return None if row is None else str(row[0])

    def chair_uid(self) -> str:
        """This database's chair identity: a random UUID made (and audited, action
        ``chair_identity_created``) the first time it is asked for, kept for the life of the file.
        A read-only store whose file has none raises :class:`StoreError`."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'chair_uid'").fetchone()
        if row is not None:
            return str(row[0])
        if self.readonly:
            raise StoreError(f"{self.path} has no chair identity yet: open it read-write once to make one")
        return self._ensure_uid()

    def session_origin(self, session_id: int) -> SessionOrigin:
        """Where session ``session_id`` was recorded: here (its own id; the chair identity if this
        file has one). Unknown session → :class:`NotFoundError`."""
        with self._read() as conn:
            if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (_sid(session_id),)).fetchone() is None:
                raise NotFoundError(f"no session {session_id}")
            row = conn.execute("SELECT value FROM meta WHERE key = 'chair_uid'").fetchone()
        return SessionOrigin(None, None if row is None else str(row[0]), session_id)

    def chairs(self) -> list[str]:
        """Names of the chairs whose sessions this record holds: none for a chair's own database
        (its sessions are all its own); the clinic record lists every chair."""
        return []
