"""Sessions: creation, listing, phase/baseline/plan updates, heartbeat, closing, gaps."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


from monitor.store.codec import (
    _at,
    _dict_arg,
    _dt,
    _patient_name,
    _patient_ref,
    _rowid,
    _sid,
    _text,
    _to_json,
    _ts,
)
from monitor.store.database import StoreCore
from monitor.store.seal import content_digest
from monitor.store.records import (
    SESSION_STATUSES,
    Gap,
    NotFoundError,
    SessionRecord,
    SessionSummary,
)


class SessionsMixin(StoreCore):
    """Sessions: creation, listing, phase/baseline/plan updates, heartbeat, closing, gaps."""

    _SESSION_COLS = ("id, created_at, started_at, ended_at, status, phase, protocol, patient_json, patient_name, "
                     "patient_ref, plan_json, baseline_json, device, created_by, closed_by, close_meaning, "
                     "signed_name, last_seen, n_observations, n_alarms")

    @staticmethod
    def _session(r: tuple[Any, ...]) -> SessionRecord:
        return SessionRecord(
            id=r[0], created_at=_at(r[1]), started_at=_at(r[2]), ended_at=_dt(r[3]), status=r[4], phase=r[5],
            protocol=r[6], patient=json.loads(r[7]), patient_name=r[8], patient_ref=r[9],
            plan=json.loads(r[10]), baseline=json.loads(r[11]) if r[11] is not None else None, device=r[12],
            created_by=r[13], closed_by=r[14], close_meaning=r[15], signed_name=r[16], last_seen=_dt(r[17]),
            n_observations=r[18], n_alarms=r[19])

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
            session_id = _rowid(cur)
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
        where: list[str] = []
        args: list[str | float] = []
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
        return [SessionSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _at(r[7]), _dt(r[8]), r[9], r[10])
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
        at ``at``. Afterwards the session is read-only except for amendments. The closing audit row
        seals the session's data (:func:`monitor.store.seal.content_digest`). Already closed →
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
                         "alarms_ended": ended, "content": content_digest(conn, session_id)})

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
            return _rowid(cur)

    def gaps(self, session_id: int) -> list[Gap]:
        """The session's recording gaps in time order."""
        with self._read() as conn:
            rows = conn.execute("SELECT id, session_id, start_t, end_t, reason FROM gaps WHERE session_id = ? "
                                "ORDER BY start_t, id", (_sid(session_id),)).fetchall()
        return [Gap(r[0], r[1], _at(r[2]), _at(r[3]), r[4]) for r in rows]
