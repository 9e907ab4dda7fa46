"""Session entries (the typed record's payloads), amendments and late entries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from monitor.store.codec import (
    _at,
    _dict_arg,
    _rowid,
    _sid,
    _text,
    _to_json,
    _ts,
)
from monitor.store.database import StoreCore
from monitor.store.records import (
    TABLE_KINDS,
    Entry,
    NotFoundError,
    StoreError,
)


class EntriesMixin(StoreCore):
    """Session entries (the typed record's payloads), amendments and late entries."""


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
            entry_id = _rowid(cur)
            action = "entry_amended" if amends is not None else "late_entry_added" if late else "entry_added"
            self._audit(conn, user, action, session_id,
                        {"entry_id": entry_id, "table_kind": table_kind, "kind": kind, "t": tt,
                         "payload": payload, "amends": amends, "reason": reason})
            return entry_id

    _ENTRY_SQL = ("SELECT e.id, e.session_id, e.t, e.table_kind, e.kind, e.payload_json, e.user_login, e.amends_id, "
                  "e.reason, e.recorded_at, a.id FROM entries e LEFT JOIN entries a ON a.amends_id = e.id")

    @staticmethod
    def _entry(r: tuple[Any, ...]) -> Entry:
        return Entry(r[0], r[1], _at(r[2]), r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], _at(r[9]), r[10])

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
        where: list[str] = ["e.session_id = ?"]
        args: list[Any] = [_sid(session_id)]
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
