"""Where a session came from when it was not recorded in this record: the audit row of its import
from an archive (or its salvage from a damaged database), and the one line every screen and
export shows of it."""

from __future__ import annotations

from typing import Any

from monitor.store.seal import IMPORTED_ACTION

__all__ = ["IMPORT_ACTION", "import_marker", "import_label"]

#: The audit action recorded when a session is imported from an archive (or salvaged from a damaged file).
IMPORT_ACTION = IMPORTED_ACTION


def import_marker(store: Any, session_id: int) -> Any:
    """The audit row that recorded the import of this session from an archive, or None."""
    return next((r for r in store.audit_rows(session_id) if r.action == IMPORT_ACTION), None)


def import_label(store: Any, session_id: int) -> str | None:
    """"Imported from FILE by WHO on DATE" (or "Salvaged from FILE …") for a session that was not
    recorded in this record, else None: the one line every screen and export shows of it."""
    marker = import_marker(store, session_id)
    if marker is None:
        return None
    p = marker.payload
    when = marker.t.astimezone().strftime("%Y-%m-%d %H:%M")
    if p.get("salvaged_from"):
        return f"Salvaged from the damaged database {p['salvaged_from']} on {when}"
    who = marker.user or p.get("imported_by") or "unknown"
    return f"Imported from {p.get('file') or 'an archive'} by {who} on {when}"
