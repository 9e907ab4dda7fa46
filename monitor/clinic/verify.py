"""Checks made on arrival, before a chair's rows enter the clinic record.

* :func:`check_chain` recomputes the chair's audit hash chain (:func:`monitor.store.audit_digest`,
  the one digest of the code base) from the last row the clinic record holds: a missing row, a
  broken link or a row whose content no longer matches its hash is flagged on its session (or on
  the chair, for rows of no session). The rows are kept: flagged, never merged silently.
* :func:`check_entries` compares each charted entry with what its audit row recorded when it was
  charted (the entry's id, time, table, kind, payload, amendment, reason and author), so an entry
  edited at the chair afterwards is flagged even though the chain itself is intact; and an entry
  with no audit row at all (written past the store's API) is flagged once the audit trail has caught
  up with it.
* :func:`check_sessions` compares a new session's identity with its ``session_created`` audit row.

What is not covered: observations, waveform samples, conditions and alarms are not audited at the
chair, so no chain protects them; they are checked by count when a closed session is sealed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from monitor.store import audit_digest
from monitor.store.postgres.writer import Flag

__all__ = ["GENESIS", "ENTRY_ACTIONS", "check_chain", "entries_named", "check_entries", "check_sessions"]

#: ``prev_hash`` of a chain's first row (as the store writes it).
GENESIS = "0" * 64
#: Audit actions that record a charted entry.
ENTRY_ACTIONS = ("entry_added", "entry_amended", "late_entry_added")


def check_chain(rows: Iterable[tuple[Any, ...]], tip: tuple[int, str] | None
                ) -> tuple[list[Flag], tuple[int, str] | None]:
    """Flags for the audit ``rows`` (seq, session_id, t, user, action, payload_json, prev_hash, hash;
    in seq order) following ``tip`` (the seq and hash of the last row already held, None before the
    first), and the new tip. Each row is checked against the stored hash of the row before it, so a
    changed row is flagged once, not every row after it."""
    flags: list[Flag] = []
    for seq, session_id, t, user, action, payload_json, prev_hash, digest in rows:
        expected_seq, expected_prev = (tip[0] + 1, tip[1]) if tip else (1, GENESIS)
        if seq != expected_seq:
            first = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}–{seq - 1}"
            flags.append(Flag(None, seq, f"audit row(s) {first} of the chair are missing (deleted at the chair?)"))
        elif prev_hash != expected_prev:
            flags.append(Flag(session_id, seq, f"audit row {seq} does not link to row {seq - 1} "
                                               "(the earlier row was changed at the chair)"))
        try:
            payload = json.loads(payload_json)
        except (TypeError, ValueError):
            flags.append(Flag(session_id, seq, f"audit row {seq} holds a payload that is not JSON"))
        else:
            if audit_digest(prev_hash, seq, t, user, session_id, action, payload) != digest:
                flags.append(Flag(session_id, seq, f"audit row {seq} ({action}) was changed after it was written: "
                                                   "its hash does not match its content"))
        tip = (seq, digest)
    return flags, tip


def _entry_record(action: str, payload_json: str) -> tuple[int, dict[str, Any]] | None:
    if action not in ENTRY_ACTIONS:
        return None
    try:
        record = json.loads(payload_json)
        return int(record["entry_id"]), record
    except (TypeError, ValueError, KeyError):
        return None  # the chain check flags a row whose payload cannot be read


def entries_named(audit: Iterable[tuple[Any, ...]]) -> set[int]:
    """Ids of the entries that audit rows (as in :func:`check_chain`) record as charted."""
    found = (_entry_record(r[4], r[5]) for r in audit)
    return {f[0] for f in found if f is not None}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
    return a == b


def check_entries(audit: Iterable[tuple[Any, ...]],
                  entries: Mapping[int, tuple[Any, ...]]) -> tuple[list[Flag], set[int]]:
    """Flags for entries that differ from their audit rows, and the ids of the entries the audit rows
    vouch for. ``audit``: audit rows as in :func:`check_chain`; ``entries``: chair entry id → entry
    row (id, session_id, t, table_kind, kind, payload_json, user_login, amends_id, reason,
    recorded_at), from the batch or already held. An audit row naming an entry not given is flagged
    as a missing entry."""
    flags: list[Flag] = []
    vouched: set[int] = set()
    for seq, session_id, _t, user, action, payload_json, _prev, _hash in audit:
        found = _entry_record(action, payload_json)
        if found is None:
            continue
        entry_id, record = found
        vouched.add(entry_id)
        row = entries.get(entry_id)
        if row is None:
            flags.append(Flag(session_id, seq, f"entry {entry_id}, recorded by audit row {seq}, is missing"))
            continue
        try:
            payload = json.loads(row[5])
        except (TypeError, ValueError):
            payload = None
        expected = {"session": (session_id, row[1]), "time": (record.get("t"), row[2]),
                    "table": (record.get("table_kind"), row[3]), "kind": (record.get("kind"), row[4]),
                    "payload": (record.get("payload"), payload), "author": (user, row[6]),
                    "amends": (record.get("amends"), row[7]), "reason": (record.get("reason"), row[8])}
        wrong = [name for name, (audited, stored) in expected.items() if not _same(audited, stored)]
        if wrong:
            flags.append(Flag(row[1], seq, f"entry {entry_id} differs from what audit row {seq} recorded when it "
                                           f"was charted ({', '.join(wrong)})"))
    return flags, vouched


def check_sessions(audit: Iterable[tuple[Any, ...]], sessions: Mapping[int, tuple[Any, ...]]) -> list[Flag]:
    """Flags for sessions whose identity (start, protocol, device, patient) differs from their
    ``session_created`` audit row. ``sessions``: chair session id → session row
    (:data:`monitor.store.changes.SESSION_COLUMNS`); rows of sessions not given are not checked."""
    flags: list[Flag] = []
    for seq, session_id, _t, user, action, payload_json, _prev, _hash in audit:
        if action != "session_created" or session_id not in sessions:
            continue
        row = sessions[session_id]
        try:
            record = json.loads(payload_json)
            patient = json.loads(row[9])
        except (TypeError, ValueError):
            continue
        expected = {"start": (record.get("started_at"), row[2]), "protocol": (record.get("protocol"), row[6]),
                    "device": (record.get("device"), row[12]), "patient": (record.get("patient"), patient),
                    "author": (user, row[13])}
        wrong = [name for name, (audited, stored) in expected.items() if not _same(audited, stored)]
        if wrong:
            flags.append(Flag(session_id, seq, f"the session differs from what audit row {seq} recorded when it was "
                                               f"opened ({', '.join(wrong)})"))
    return flags
