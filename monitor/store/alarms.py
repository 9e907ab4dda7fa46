"""The alarm log: alarms, their escalations and ends, and the actions taken on them."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from monitor.store.codec import (
    _at,
    _dt,
    _priority,
    _rowid,
    _sid,
    _text,
    _ts,
)
from monitor.store.database import StoreCore
from monitor.store.records import (
    ALARM_ACTIONS,
    ALARM_KINDS,
    PRIORITIES,
    AlarmAction,
    AlarmRow,
    NotFoundError,
    StoreError,
)


class AlarmsMixin(StoreCore):
    """The alarm log: alarms, their escalations and ends, and the actions taken on them."""

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
            return _rowid(cur)

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
            return _rowid(cur)

    @staticmethod
    def _action(r: tuple[Any, ...]) -> AlarmAction:
        return AlarmAction(r[0], r[1], r[2], _at(r[3]), r[4], r[5], r[6])

    def alarms(self, session_id: int, start: datetime | None = None, end: datetime | None = None) -> list[AlarmRow]:
        """Alarms active at some time in ``[start, end)`` (started before ``end``, not ended before
        ``start``), by start time, each with its actions."""
        where: list[str] = ["session_id = ?"]
        args: list[Any] = [_sid(session_id)]
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
        return [AlarmRow(r[0], r[1], r[2], r[3], r[4], r[5], _at(r[6]), _dt(r[7]), r[8], r[9], r[10],
                         tuple(actions.get(r[0], ()))) for r in rows]

    def alarm_actions(self, session_id: int, start: datetime | None = None,
                      end: datetime | None = None) -> list[AlarmAction]:
        """All alarm actions of the session (including system-wide ones) with ``start <= t < end``."""
        where: list[str] = ["session_id = ?"]
        args: list[Any] = [_sid(session_id)]
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
