"""Reading the clinic record: :class:`PostgresReader`, the second :class:`~monitor.store.reader.StoreReader`.

It returns the record types the SQLite store returns (:mod:`monitor.store.records`), so the read
model, the review window and the exports work on it unchanged; sessions of every chair appear,
listed as :class:`~monitor.store.reader.ChairSessionSummary` (with the chair's name, whether the
copy is complete and any integrity flag). It never writes: late entries are made at the chair.

Ids: sessions by the clinic record's id; entries, alarms, actions and gaps by the chair's ids (a
session's rows come from one chair); audit rows keep the chair's session id (their hash covers it).
A closed session's waveforms are its finished blocks; an open one also shows the unfinished block of
each channel (as the chair does), unless a finished block has already replaced it.

Each thread reads through its own connection (opened on first use, read-only, repeatable read, so
the statements of one call see one snapshot). A lost server raises
:class:`~monitor.store.postgres.ClinicUnavailable` (a :class:`~monitor.store.StoreError`); the next
call connects again.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from drivers.catalogue import CATALOGUE, VITAL_KEYS
from drivers.model import WAVE_CHANNELS, DeviceCondition
from monitor.store.changes import SessionOrigin
from monitor.store.codec import _at, _dt, _sid, _ts, slice_blocks
from monitor.store.postgres.schema import ClinicRecordError, ClinicUnavailable, check_schema, connect, one, safe_url
from monitor.store.reader import ChairSessionSummary
from monitor.store.records import (
    SESSION_STATUSES,
    AlarmAction,
    AlarmRow,
    AuditRow,
    Block,
    Entry,
    Envelope,
    Gap,
    NotFoundError,
    ObservationRows,
    SessionRecord,
    StoreError,
    UserRecord,
    WaveformSlice,
)
from monitor.store.schema import MAX_BLOCK_SECONDS

__all__ = ["PostgresReader", "Location"]


class Location(str):
    """Where a clinic record is, for messages: its URL without the password; ``name`` is the
    database's name (as a file store's ``path.name`` is the file's)."""

    @property
    def name(self) -> str:
        """The database name."""
        return self.rsplit("/", 1)[-1]


def _range(where: list[str], args: list[Any], column: str, start: datetime | None, end: datetime | None) -> None:
    if start is not None:
        where.append(f"{column} >= %s")
        args.append(_ts(start, "start"))
    if end is not None:
        where.append(f"{column} < %s")
        args.append(_ts(end, "end"))


_LATEST = ("LEFT JOIN LATERAL (SELECT status, phase, ended_at, plan_json, baseline_json, closed_by, close_meaning, "
           "signed_name FROM vigil.session_states WHERE session_id = s.id ORDER BY id DESC LIMIT 1) l ON true")
_ALARM_LATEST = ("LEFT JOIN LATERAL (SELECT max_priority, ended_at FROM vigil.alarm_states x WHERE x.chair_id = "
                 "a.chair_id AND x.chair_alarm_id = a.chair_alarm_id ORDER BY x.id DESC LIMIT 1) st ON true")
_WAVE_ORDER = {c: i for i, c in enumerate(WAVE_CHANNELS)}


class PostgresReader:
    """The clinic record at ``url`` (``postgresql://login@server/database``), read-only (see the
    module docstring). Opening checks that the server answers and holds the schema this Vigil
    reads: :class:`ClinicUnavailable` / :class:`ClinicRecordError` otherwise."""

    readonly = True

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.path = Location(safe_url(url))
        self._timeout = connect_timeout
        self._local = threading.local()
        self._conns: list[tuple[weakref.ref[threading.Thread], psycopg.Connection[Any]]] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        with self._read() as cur:
            check_schema(cur.connection)

    # ------------------------------------------------------------------ connections
    def _connection(self) -> psycopg.Connection[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        conn = connect(self.url, connect_timeout=self._timeout, application_name="vigil review")
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._local.conn = conn
        with self._conns_lock:  # close the connections of threads that have ended
            alive = []
            for ref, other in self._conns:
                thread = ref()
                if thread is not None and thread.is_alive() and not other.closed:
                    alive.append((ref, other))
                else:
                    other.close()
            alive.append((weakref.ref(threading.current_thread()), conn))
            self._conns = alive
        return conn

    @contextmanager
    def _read(self) -> Iterator[psycopg.Cursor[Any]]:
        if self._closed:
            raise StoreError("the clinic record reader is closed")
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.OperationalError as exc:
            conn.close()
            raise ClinicUnavailable(f"the clinic record at {self.path} was lost: {str(exc).strip()}") from None
        except psycopg.Error as exc:
            raise ClinicRecordError(f"reading the clinic record failed: {str(exc).strip()}") from None

    def close(self) -> None:
        """Close every connection (idempotent)."""
        self._closed = True
        with self._conns_lock:
            for _ref, conn in self._conns:
                conn.close()
            self._conns = []

    def __enter__(self) -> PostgresReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sessions
    def list_sessions(self, *, patient: str | None = None, since: datetime | None = None,
                      until: datetime | None = None, protocol: str | None = None, status: str | None = None,
                      had_alarms: bool | None = None, chair: str | None = None) -> list[ChairSessionSummary]:
        """Sessions of every chair matching every given filter, newest first (the filters of
        :meth:`monitor.store.SessionStore.list_sessions`, and ``chair``: a chair's name)."""
        where: list[str] = []
        args: list[Any] = []
        if patient is not None:
            escaped = patient.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("(s.patient_ref = %s OR s.patient_name ILIKE %s ESCAPE '\\')")
            args += [patient, f"%{escaped}%"]
        if since is not None:
            where.append("s.started_at >= %s")
            args.append(_ts(since, "since"))
        if until is not None:
            where.append("s.started_at < %s")
            args.append(_ts(until, "until"))
        if protocol is not None:
            where.append("s.protocol = %s")
            args.append(protocol)
        if status is not None:
            if status not in SESSION_STATUSES:
                raise ValueError(f"status must be one of {', '.join(SESSION_STATUSES)}")
            where.append("l.status = %s")
            args.append(status)
        if had_alarms is not None:
            where.append("coalesce(p.n_alarms, 0) > 0" if had_alarms else "coalesce(p.n_alarms, 0) = 0")
        if chair is not None:
            where.append("c.name = %s")
            args.append(chair)
        sql = ("SELECT s.id, s.patient_name, s.patient_ref, s.protocol, l.status, l.phase, s.device, s.started_at, "
               "l.ended_at, coalesce(p.n_observations, 0), coalesce(p.n_alarms, 0), c.name, s.chair_session_id, "
               "z.session_id IS NOT NULL, f.problem, f.n FROM vigil.sessions s "
               f"JOIN vigil.chairs c ON c.id = s.chair_id {_LATEST} "
               "LEFT JOIN vigil.session_progress p ON p.session_id = s.id "
               "LEFT JOIN vigil.session_seals z ON z.session_id = s.id "
               "LEFT JOIN LATERAL (SELECT (array_agg(problem ORDER BY id))[1] AS problem, count(*) AS n "
               "FROM vigil.integrity_flags WHERE session_id = s.id) f ON true")
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as cur:
            cur.execute(sql + " ORDER BY s.started_at DESC, s.id DESC", args)
            rows = cur.fetchall()
        return [ChairSessionSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _at(r[7]), _dt(r[8]), int(r[9]),
                                    int(r[10]), r[11], int(r[12]), bool(r[13]),
                                    None if not r[15] else r[14] + (f" (and {r[15] - 1} more)" if r[15] > 1 else ""))
                for r in rows]

    def chairs(self) -> list[str]:
        """The names of the chairs that sent sessions, sorted."""
        with self._read() as cur:
            cur.execute("SELECT name FROM vigil.chairs ORDER BY name")
            return [r[0] for r in cur.fetchall()]

    def get_session(self, session_id: int) -> SessionRecord:
        """The session with this clinic id; :class:`NotFoundError` if there is none."""
        with self._read() as cur:
            cur.execute("SELECT s.id, s.created_at, s.started_at, l.ended_at, l.status, l.phase, s.protocol, "
                        "s.patient_json, s.patient_name, s.patient_ref, l.plan_json, l.baseline_json, s.device, "
                        "s.created_by, l.closed_by, l.close_meaning, l.signed_name, p.last_seen, "
                        "coalesce(p.n_observations, 0), coalesce(p.n_alarms, 0) FROM vigil.sessions s "
                        f"{_LATEST} LEFT JOIN vigil.session_progress p ON p.session_id = s.id WHERE s.id = %s",
                        (_sid(session_id),))
            r = cur.fetchone()
        if r is None:
            raise NotFoundError(f"no session {session_id} in the clinic record")
        return SessionRecord(
            id=r[0], created_at=_at(r[1]), started_at=_at(r[2]), ended_at=_dt(r[3]), status=r[4], phase=r[5],
            protocol=r[6], patient=json.loads(r[7]), patient_name=r[8], patient_ref=r[9], plan=json.loads(r[10]),
            baseline=json.loads(r[11]) if r[11] is not None else None, device=r[12], created_by=r[13],
            closed_by=r[14], close_meaning=r[15], signed_name=r[16], last_seen=_dt(r[17]), n_observations=int(r[18]),
            n_alarms=int(r[19]))

    def session_origin(self, session_id: int) -> SessionOrigin:
        """The chair that recorded the session (name, identity) and the session's id there."""
        with self._read() as cur:
            cur.execute("SELECT c.name, c.uid::text, s.chair_session_id FROM vigil.sessions s JOIN vigil.chairs c "
                        "ON c.id = s.chair_id WHERE s.id = %s", (_sid(session_id),))
            row = cur.fetchone()
        if row is None:
            raise NotFoundError(f"no session {session_id} in the clinic record")
        return SessionOrigin(row[0], row[1], int(row[2]))

    def gaps(self, session_id: int) -> list[Gap]:
        """The session's recording gaps in time order."""
        with self._read() as cur:
            cur.execute("SELECT chair_gap_id, start_t, end_t, reason FROM vigil.gaps WHERE session_id = %s "
                        "ORDER BY start_t, chair_gap_id", (_sid(session_id),))
            return [Gap(r[0], session_id, _at(r[1]), _at(r[2]), r[3]) for r in cur.fetchall()]

    # ------------------------------------------------------------------ entries, alarms, audit, staff
    _ENTRY_SQL = ("SELECT e.chair_entry_id, e.session_id, e.t, e.table_kind, e.kind, e.payload_json, e.user_login, "
                  "e.amends_id, e.reason, e.recorded_at, a.chair_entry_id FROM vigil.entries e LEFT JOIN "
                  "vigil.entries a ON a.chair_id = e.chair_id AND a.amends_id = e.chair_entry_id")

    def entries(self, session_id: int, table_kind: str | None = None, start: datetime | None = None,
                end: datetime | None = None, include_amended: bool = True, *, order: str = "time") -> list[Entry]:
        """The session's entries (as :meth:`monitor.store.SessionStore.entries`)."""
        if order not in ("time", "recorded"):
            raise ValueError("order must be 'time' or 'recorded'")
        where: list[str] = ["e.session_id = %s"]
        args: list[Any] = [_sid(session_id)]
        if table_kind is not None:
            where.append("e.table_kind = %s")
            args.append(table_kind)
        _range(where, args, "e.t", start, end)
        if not include_amended:
            where.append("a.chair_entry_id IS NULL")
        with self._read() as cur:
            cur.execute(f"{self._ENTRY_SQL} WHERE {' AND '.join(where)} ORDER BY "
                        f"{'e.t, e.chair_entry_id' if order == 'time' else 'e.chair_entry_id'}", args)
            rows = cur.fetchall()
        return [Entry(r[0], r[1], _at(r[2]), r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], _at(r[9]), r[10])
                for r in rows]

    def effective_entries(self, session_id: int, table_kind: str | None = None, start: datetime | None = None,
                          end: datetime | None = None) -> list[Entry]:
        """The latest version of every charted fact."""
        return self.entries(session_id, table_kind, start, end, include_amended=False)

    @staticmethod
    def _action(r: tuple[Any, ...], session_id: int) -> AlarmAction:
        return AlarmAction(r[0], session_id, r[1], _at(r[2]), r[3], r[4], r[5])

    def alarms(self, session_id: int, start: datetime | None = None, end: datetime | None = None) -> list[AlarmRow]:
        """Alarms active at some time in ``[start, end)``, by start time, each with its actions."""
        where: list[str] = ["a.session_id = %s"]
        args: list[Any] = [_sid(session_id)]
        if end is not None:
            where.append("a.started_at < %s")
            args.append(_ts(end, "end"))
        if start is not None:
            where.append("(st.ended_at IS NULL OR st.ended_at >= %s)")
            args.append(_ts(start, "start"))
        with self._read() as cur:
            cur.execute("SELECT a.chair_alarm_id, a.condition, a.kind, a.priority, coalesce(st.max_priority, "
                        "a.priority), a.started_at, st.ended_at, a.limit_value, a.trigger_value, a.message "
                        f"FROM vigil.alarms a {_ALARM_LATEST} WHERE {' AND '.join(where)} "
                        "ORDER BY a.started_at, a.chair_alarm_id", args)
            rows = cur.fetchall()
            cur.execute("SELECT chair_action_id, alarm_id, t, action, user_login, detail FROM vigil.alarm_actions "
                        "WHERE session_id = %s AND alarm_id IS NOT NULL ORDER BY t, chair_action_id", (session_id,))
            actions: dict[int, list[AlarmAction]] = {}
            for r in cur.fetchall():
                actions.setdefault(r[1], []).append(self._action(r, session_id))
        return [AlarmRow(r[0], session_id, r[1], r[2], r[3], r[4], _at(r[5]), _dt(r[6]), r[7], r[8], r[9],
                         tuple(actions.get(r[0], ()))) for r in rows]

    def alarm_actions(self, session_id: int, start: datetime | None = None,
                      end: datetime | None = None) -> list[AlarmAction]:
        """All alarm actions of the session (system-wide ones too) with ``start <= t < end``."""
        where: list[str] = ["session_id = %s"]
        args: list[Any] = [_sid(session_id)]
        _range(where, args, "t", start, end)
        with self._read() as cur:
            cur.execute("SELECT chair_action_id, alarm_id, t, action, user_login, detail FROM vigil.alarm_actions "
                        f"WHERE {' AND '.join(where)} ORDER BY t, chair_action_id", args)
            return [self._action(r, session_id) for r in cur.fetchall()]

    def audit_rows(self, session_id: int | None = None) -> list[AuditRow]:
        """The audit rows of a session (or of every chair) in chain order; ``session_id`` of each row
        is the chair's, as in its chain."""
        sql = ("SELECT seq, t, user_login, chair_session_id, action, payload_json, prev_hash, hash FROM vigil.audit")
        args: tuple[Any, ...] = ()
        if session_id is not None:
            sql += " WHERE session_id = %s"
            args = (_sid(session_id),)
        with self._read() as cur:
            cur.execute(sql + " ORDER BY chair_id, seq", args)
            rows = cur.fetchall()
        return [AuditRow(r[0], _at(r[1]), r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def list_users(self) -> list[UserRecord]:
        """The clinic's staff accounts (current versions) by login; ``created_at`` is the first
        version's time."""
        with self._read() as cur:
            cur.execute("SELECT f.id, c.login, c.display_name, c.role, c.pin_hash, f.changed_at, c.active "
                        "FROM vigil.staff_current c CROSS JOIN LATERAL (SELECT id, changed_at FROM "
                        "vigil.staff_accounts WHERE login = c.login ORDER BY changed_at, id LIMIT 1) f "
                        "ORDER BY c.login")
            return [UserRecord(int(r[0]), r[1], r[2], r[3], r[4], _at(r[5]), bool(r[6])) for r in cur.fetchall()]

    # ------------------------------------------------------------------ device data
    def conditions(self, session_id: int, start: datetime | None = None,
                   end: datetime | None = None) -> list[DeviceCondition]:
        """Device condition changes with ``start <= t < end``, in time order."""
        where: list[str] = ["c.session_id = %s"]
        args: list[Any] = [_sid(session_id)]
        _range(where, args, "c.t", start, end)
        with self._read() as cur:
            cur.execute("SELECT c.t, c.code, c.active, c.text, s.name FROM vigil.conditions c "
                        f"LEFT JOIN vigil.sources s ON s.id = c.source_id WHERE {' AND '.join(where)} "
                        "ORDER BY c.t, c.chair_condition_id", args)
            rows = cur.fetchall()
        return [DeviceCondition(code=r[1], active=bool(r[2]), text=r[3], source=r[4] or "", time=_at(r[0]))
                for r in rows]

    def numerics(self, session_id: int, vital: str, start: datetime | None = None, end: datetime | None = None,
                 *, with_quality: bool = False) -> tuple[np.ndarray, ...]:
        """One vital's ``(t, v[, quality])`` arrays in time order (as the chair's store)."""
        if vital not in CATALOGUE:
            raise ValueError(f"unknown vital {vital!r}; known: {', '.join(VITAL_KEYS)}")
        where: list[str] = ["session_id = %s", "vital = %s"]
        args: list[Any] = [_sid(session_id), vital]
        _range(where, args, "t", start, end)
        with self._read() as cur:
            cur.execute(f"SELECT t, value, quality FROM vigil.observations WHERE {' AND '.join(where)} "
                        "ORDER BY t, chair_rowid", args)
            rows = cur.fetchall()
        if not rows:
            empty = np.empty(0, dtype=np.float64)
            return (empty, empty.copy(), np.empty(0, dtype=np.int64)) if with_quality else (empty, empty.copy())
        t, v, q = zip(*rows)
        out = (np.array(t, dtype=np.float64), np.array(v, dtype=np.float64))
        return (*out, np.array(q, dtype=np.int64)) if with_quality else out

    def numerics_envelope(self, session_id: int, vital: str, start: float, end: float, bins: int) -> Envelope:
        """The min/max of ``vital`` in each of ``bins`` equal bins of ``start``–``end`` (epoch s,
        inclusive), computed by the server."""
        if vital not in CATALOGUE:
            raise ValueError(f"unknown vital {vital!r}")
        if not end > start or bins < 1:
            raise ValueError("an envelope needs end > start and at least one bin")
        width = (end - start) / bins
        with self._read() as cur:
            cur.execute("SELECT least(floor((t - %s) / %s)::bigint, %s), min(value), max(value) FROM "
                        "vigil.observations WHERE session_id = %s AND vital = %s AND t >= %s AND t <= %s GROUP BY 1",
                        (start, width, bins - 1, _sid(session_id), vital, start, end))
            rows = cur.fetchall()
        lo = np.full(bins, np.nan)
        hi = np.full(bins, np.nan)
        if rows:
            index, low, high = (np.array(c, dtype=np.float64) for c in zip(*rows))
            index = index.astype(np.int64)
            lo[index], hi[index] = low, high
        return Envelope(start + (np.arange(bins) + 0.5) * width, lo, hi)

    def observation_rows(self, session_id: int) -> ObservationRows:
        """Every observation row of the session, by time, then in the order the chair stored them."""
        with self._read() as cur:
            cur.execute("SELECT o.chair_rowid, o.t, o.vital, o.value, o.quality, o.device_time, o.unit, s.name "
                        "FROM vigil.observations o JOIN vigil.sources s ON s.id = o.source_id WHERE o.session_id = %s",
                        (_sid(session_id),))
            rows = cur.fetchall()
        if not rows:
            return ObservationRows(np.empty(0), [], [], [], [], [], [], np.empty(0))
        rowid, t, vital, value, quality, device_time, unit, source = (list(c) for c in zip(*rows))
        del rows
        times = np.asarray(t, dtype=np.float64)
        order = np.lexsort((np.asarray(rowid, dtype=np.int64), times))
        idx = order.tolist()
        vital, value, quality, device_time, unit, source = ([c[i] for i in idx] for c in
                                                           (vital, value, quality, device_time, unit, source))
        return ObservationRows(times[order], vital, value, quality, device_time, unit, source,
                               np.asarray(value, dtype=np.float64))

    def _tails(self, cur: psycopg.Cursor[Any], session_id: int, channel: str | None = None) -> list[tuple[Any, ...]]:
        """The unfinished blocks (channel, t0, rate, n, enc, source, data) of an open session that no
        finished block has replaced yet."""
        cur.execute("SELECT w.channel, w.t0, w.rate, w.n, w.enc, s.name, w.data FROM vigil.waveform_tails w "
                    "LEFT JOIN vigil.sources s ON s.id = w.source_id WHERE w.session_id = %s "
                    "AND (SELECT status FROM vigil.session_states x WHERE x.session_id = w.session_id "
                    "ORDER BY x.id DESC LIMIT 1) = 'open' "
                    + ("AND w.channel = %s " if channel else "")
                    + "AND NOT EXISTS (SELECT 1 FROM vigil.waveforms f WHERE f.session_id = w.session_id "
                    "AND f.channel = w.channel AND f.t0 + f.n / f.rate > w.t0 + 0.5 / w.rate)",
                    (session_id, channel) if channel else (session_id,))
        return cur.fetchall()

    def waveform_blocks(self, session_id: int) -> list[Block]:
        """The session's stored waveform blocks, bytes as stored, by channel (catalogue order) and start."""
        sid = _sid(session_id)
        with self._read() as cur:
            cur.execute("SELECT w.channel, w.t0, w.rate, w.n, w.enc, s.name, w.data, w.chair_block_id FROM "
                        "vigil.waveforms w LEFT JOIN vigil.sources s ON s.id = w.source_id WHERE w.session_id = "
                        "%s", (sid,))
            rows = [(*r[:7], 0, r[7]) for r in cur.fetchall()]
            rows += [(*r, 1, 0) for r in self._tails(cur, sid)]
        rows.sort(key=lambda r: (_WAVE_ORDER.get(r[0], len(_WAVE_ORDER)), r[0], r[1], r[7], r[8]))
        return [Block(r[0], float(r[1]), float(r[2]), int(r[3]), int(r[4]), r[5], bytes(r[6]), bool(r[7]))
                for r in rows]

    def waveform_channels(self, session_id: int) -> list[str]:
        """Channels with stored samples for the session."""
        sid = _sid(session_id)
        with self._read() as cur:
            cur.execute("SELECT DISTINCT channel FROM vigil.waveforms WHERE session_id = %s", (sid,))
            found = {r[0] for r in cur.fetchall()} | {r[0] for r in self._tails(cur, sid)}
        return [c for c in WAVE_CHANNELS if c in found] + sorted(found - set(WAVE_CHANNELS))

    def waveform(self, session_id: int, channel: str, start: datetime, end: datetime,
                 max_points: int | None = None) -> WaveformSlice:
        """Samples of ``channel`` with ``start <= t < end``, min/max-decimated above ``max_points``
        (the chair's rule: :func:`monitor.store.codec.slice_blocks`)."""
        s, e = _ts(start, "start"), _ts(end, "end")
        if e <= s:
            raise ValueError("end must be after start")
        if max_points is not None and max_points < 1:
            raise ValueError("max_points must be at least 1")
        sid = _sid(session_id)
        with self._read() as cur:
            cur.execute("SELECT t0, rate, n, enc, data FROM vigil.waveforms WHERE session_id = %s AND channel = %s "
                        "AND t0 > %s AND t0 < %s AND t0 + n / rate > %s ORDER BY t0",
                        (sid, channel, s - MAX_BLOCK_SECONDS - 1.0, e, s))
            rows = [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in cur.fetchall()]
            rows += [(r[1], r[2], r[3], r[4], bytes(r[6])) for r in self._tails(cur, sid, channel)
                     if s - MAX_BLOCK_SECONDS - 1.0 < r[1] < e and r[1] + r[3] / r[2] > s]
        rows.sort(key=lambda r: r[0])
        return slice_blocks(rows, s, e, max_points)

    def last_data_time(self, session_id: int) -> datetime | None:
        """The latest time of any observation, waveform sample, condition or entry of the session."""
        sid = _sid(session_id)
        with self._read() as cur:
            cur.execute(
                "SELECT greatest((SELECT max(m) FROM unnest(%s::text[]) v(vital) CROSS JOIN LATERAL "
                "(SELECT max(t) AS m FROM vigil.observations o WHERE o.session_id = %s AND o.vital = v.vital) x), "
                "(SELECT max(m) FROM unnest(%s::text[]) c(channel) CROSS JOIN LATERAL (SELECT t0 + (n - 1) / rate AS m "
                "FROM vigil.waveforms w WHERE w.session_id = %s AND w.channel = c.channel ORDER BY t0 DESC LIMIT 1) "
                "y), (SELECT max(t) FROM vigil.conditions WHERE session_id = %s), "
                "(SELECT max(t) FROM vigil.entries WHERE session_id = %s))",
                (list(VITAL_KEYS), sid, list(WAVE_CHANNELS), sid, sid, sid))
            latest = one(cur)[0]
            tails = self._tails(cur, sid)
            cur.execute("SELECT DISTINCT channel FROM vigil.waveforms WHERE session_id = %s AND NOT channel = ANY(%s)",
                        (sid, list(WAVE_CHANNELS)))
            others = [r[0] for r in cur.fetchall()]
            for channel in others:
                cur.execute("SELECT t0 + (n - 1) / rate FROM vigil.waveforms WHERE session_id = %s AND channel = %s "
                            "ORDER BY t0 DESC LIMIT 1", (sid, channel))
                value = one(cur)[0]
                latest = value if latest is None else max(latest, value)
        for _channel, t0, rate, n, *_ in tails:
            end = t0 + (n - 1) / rate
            latest = end if latest is None else max(latest, end)
        return _dt(latest)

    def raw_tables(self, session_id: int) -> dict[str, list[tuple[Any, ...]]]:
        """The session's rows exactly as the chair stored them, in the order and columns of
        :meth:`monitor.store.SessionStore.raw_tables` (ids the chair's)."""
        sid = _sid(session_id)
        with self._read() as cur:
            def q(sql: str) -> list[tuple[Any, ...]]:
                cur.execute(sql, (sid,))
                return [tuple(r) for r in cur.fetchall()]

            return {
                "session": q("SELECT s.created_at, s.started_at, l.ended_at, p.last_seen, l.status, l.phase, "
                             "s.protocol, s.patient_json, s.patient_name, s.patient_ref, l.plan_json, l.baseline_json, "
                             "s.device, s.created_by, l.closed_by, l.close_meaning, l.signed_name, "
                             f"coalesce(p.n_observations, 0), coalesce(p.n_alarms, 0) FROM vigil.sessions s {_LATEST} "
                             "LEFT JOIN vigil.session_progress p ON p.session_id = s.id WHERE s.id = %s"),
                "entries": q("SELECT chair_entry_id, t, table_kind, kind, payload_json, user_login, amends_id, reason, "
                             "recorded_at FROM vigil.entries WHERE session_id = %s ORDER BY chair_entry_id"),
                "alarms": q("SELECT a.chair_alarm_id, a.condition, a.kind, a.priority, coalesce(st.max_priority, "
                            "a.priority), a.started_at, st.ended_at, a.limit_value, a.trigger_value, a.message "
                            f"FROM vigil.alarms a {_ALARM_LATEST} WHERE a.session_id = %s ORDER BY a.chair_alarm_id"),
                "alarm_actions": q("SELECT chair_action_id, alarm_id, t, action, user_login, detail FROM "
                                   "vigil.alarm_actions WHERE session_id = %s ORDER BY chair_action_id"),
                "gaps": q("SELECT start_t, end_t, reason FROM vigil.gaps WHERE session_id = %s "
                          "ORDER BY start_t, chair_gap_id"),
                "conditions": q("SELECT c.t, c.code, c.active::int, c.text, s.name FROM vigil.conditions c "
                                "LEFT JOIN vigil.sources s ON s.id = c.source_id WHERE c.session_id = %s "
                                "ORDER BY c.t, c.chair_condition_id"),
                "audit": q("SELECT seq, t, user_login, chair_session_id, action, payload_json, prev_hash, hash "
                           "FROM vigil.audit WHERE session_id = %s ORDER BY seq"),
            }

    # ------------------------------------------------------------------ integrity
    def integrity_flags(self, session_id: int | None = None) -> list[tuple[str, int | None, int | None, str, datetime]]:
        """What verification found on arrival: ``(chair, clinic session id or None, chair audit seq or
        None, problem, when)``, of one session or all, oldest first."""
        sql = ("SELECT c.name, f.session_id, f.chair_seq, f.problem, f.detected_at FROM vigil.integrity_flags f "
               "JOIN vigil.chairs c ON c.id = f.chair_id")
        args: tuple[Any, ...] = ()
        if session_id is not None:
            sql += " WHERE f.session_id = %s"
            args = (_sid(session_id),)
        with self._read() as cur:
            cur.execute(sql + " ORDER BY f.id", args)
            return [tuple(r) for r in cur.fetchall()]
