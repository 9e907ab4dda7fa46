"""The hash-chained audit trail: append, read, verify."""

from __future__ import annotations

import json
from typing import Any

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
    _dict_arg,
    _dt,
    _text,
    audit_digest,
)
from monitor.store.database import StoreCore
from monitor.store.records import (
    AuditCheck,
    AuditRow,
)


class AuditMixin(StoreCore):
    """The hash-chained audit trail: append, read, verify."""

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
                if audit_digest(prev, seq, t, user, session_id, action, payload) != digest:
                    return AuditCheck(False, rows, seq, "hash does not match the row's content")
                prev = digest
                expected += 1
        return AuditCheck(True, rows, None, None)
