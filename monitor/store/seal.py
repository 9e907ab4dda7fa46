"""A session's record checked against its audit trail: the content seal and the cross-checks.

Observations, waveforms, device conditions, alarms, alarm actions and gaps are not audited row by
row (there are too many). When a session is closed, :func:`content_digest` hashes all of them and
the digest goes into the closing audit row (``payload.content``), which the hash chain and its MAC
protect; afterwards the triggers refuse any change to them, so a later digest that differs means
the rows were changed by hand. The digest is defined over the rows as the session archive carries
them (:mod:`monitor.export.archive`), so an archive is checked against the same closing row.

:func:`check_record` compares a session (its row, its entries, its sealed content) with the audit
rows that recorded it: the opening (``session_created``), every charted entry, the closing and
its seal. It works on plain values, so the store (``vigil verify``) and the archive import use
the same rules.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from drivers.model import WAVE_CHANNELS

from monitor.store.codec import audit_digest
from monitor.store.keys import check_mac

__all__ = ["SEALED_PARTS", "ContentDigest", "content_digest", "check_chain_rows", "check_record", "check_entries",
           "ENTRY_ACTIONS", "CLOSE_ACTIONS", "IMPORTED_ACTION"]

#: What the seal covers, in the order it is hashed.
SEALED_PARTS = ("observations", "waveforms", "conditions", "alarms", "alarm_actions", "gaps")
#: Audit actions that record a charted entry.
ENTRY_ACTIONS = ("entry_added", "entry_amended", "late_entry_added")
#: Audit actions that close a session.
CLOSE_ACTIONS = ("session_closed", "session_aborted")
#: The audit action of a session imported from an archive (its payload carries the archive's audit rows).
IMPORTED_ACTION = "session_imported"


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_BATCH = 5000


class ContentDigest:
    """SHA-256 over a session's sealed rows, fed part by part in :data:`SEALED_PARTS` order: each
    part is its name then its rows as JSON lists (the archive's rows, see the module docstring)
    separated by commas — the same bytes whether rows come one at a time or in batches.
    ``counts``: rows per part."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.counts: dict[str, int] = {}
        self._part: str | None = None

    def part(self, name: str) -> None:
        """Start the rows of part ``name`` (parts must come in :data:`SEALED_PARTS` order)."""
        if name not in SEALED_PARTS or (self._part is not None
                                        and SEALED_PARTS.index(name) <= SEALED_PARTS.index(self._part)):
            raise ValueError(f"sealed parts come in the order {', '.join(SEALED_PARTS)}")
        self._part = name
        self.counts[name] = 0
        self._hash.update(f"\x1e{name}\n".encode())

    def add(self, row: list[Any]) -> None:
        """Add one row of the current part."""
        self._feed(_ENCODER.encode(row), 1)

    def add_all(self, rows: Iterable[Any]) -> None:
        """Add many rows (lists or tuples) of the current part, encoded in batches."""
        batch: list[Any] = []
        for row in rows:
            batch.append(row)
            if len(batch) == _BATCH:
                self._feed(_ENCODER.encode(batch)[1:-1], len(batch))
                batch = []
        if batch:
            self._feed(_ENCODER.encode(batch)[1:-1], len(batch))

    def _feed(self, text: str, n: int) -> None:
        part = self._part or ""
        if self.counts[part]:
            self._hash.update(b",")
        self._hash.update(text.encode())
        self.counts[part] += n

    def result(self) -> dict[str, Any]:
        """``{"sha256": hex, "counts": {part: rows}}`` (parts never started count 0)."""
        return {"sha256": self._hash.hexdigest(), "counts": {p: self.counts.get(p, 0) for p in SEALED_PARTS}}


def waveform_row(channel: str, t0: float, rate: float, n: int, enc: int, source: str | None,
                 data: bytes) -> list[Any]:
    """A waveform block as sealed: its fields and the SHA-256 of its compressed bytes."""
    return [channel, t0, rate, n, enc, source, hashlib.sha256(data).hexdigest()]


_CHANNEL_ORDER = {c: i for i, c in enumerate(WAVE_CHANNELS)}


def waveform_order(channel: str, t0: float) -> tuple[int, str, float]:
    """The sort key of sealed (and archived) waveform blocks: catalogue channel order, then start."""
    return _CHANNEL_ORDER.get(channel, len(_CHANNEL_ORDER)), channel, t0


def content_digest(conn: sqlite3.Connection, session_id: int) -> dict[str, Any]:
    """The seal of session ``session_id`` from the store's rows on ``conn`` (see the module docstring)."""
    d = ContentDigest()
    d.part("observations")
    # by time, then arrival: streamed from the (session_id, t, vital) index, SQLite sorting only the
    # rows of one time by rowid (reading them all to sort here held 143 MB for a 24-hour session)
    names = dict(conn.execute("SELECT id, name FROM sources").fetchall())
    d.add_all((*r[:6], names.get(r[6])) for r in conn.execute(
        "SELECT t, vital, value, quality, device_time, unit, source_id FROM observations WHERE session_id = ? "
        "ORDER BY t, rowid", (session_id,)))
    d.part("waveforms")
    blocks = [(waveform_order(r[0], r[1]), r[7], waveform_row(*r[:7])) for r in conn.execute(
        "SELECT w.channel, w.t0, w.rate, w.n, w.enc, s.name, w.data, w.id FROM waveforms w "
        "LEFT JOIN sources s ON s.id = w.source_id WHERE w.session_id = ?", (session_id,))]
    d.add_all(row for _key, _id, row in sorted(blocks, key=lambda b: (b[0], b[1])))
    d.part("conditions")
    d.add_all([r[0], r[1], bool(r[2]), r[3], r[4] or ""] for r in conn.execute(
        "SELECT c.t, c.code, c.active, c.text, s.name FROM conditions c LEFT JOIN sources s ON s.id = c.source_id "
        "WHERE c.session_id = ? ORDER BY c.t, c.id", (session_id,)))
    d.part("alarms")
    alarm_ids: dict[int, int] = {}
    for r in conn.execute("SELECT id, condition, kind, priority, max_priority, started_at, ended_at, limit_value, "
                          "trigger_value, message FROM alarms WHERE session_id = ? ORDER BY id", (session_id,)):
        alarm_ids[r[0]] = len(alarm_ids) + 1
        d.add(list(r[1:]))
    d.part("alarm_actions")
    d.add_all([alarm_ids.get(r[0]) if r[0] is not None else None, r[1], r[2], r[3], r[4]] for r in conn.execute(
        "SELECT alarm_id, t, action, user_login, detail FROM alarm_actions WHERE session_id = ? ORDER BY id",
        (session_id,)))
    d.part("gaps")
    d.add_all([list(r) for r in conn.execute(
        "SELECT start_t, end_t, reason FROM gaps WHERE session_id = ? ORDER BY start_t, id", (session_id,))])
    return d.result()


# ------------------------------------------------------------------------------------ checks
def check_chain_rows(rows: Iterable[Mapping[str, Any]], key_for: Callable[[str], bytes | None],
                     stored_hash: Callable[[int], str | None] | None = None) -> tuple[list[str], int]:
    """Check audit rows (dicts with seq, t, user, session, action, payload, prev_hash, hash and
    optionally mac) that are a part of a chain, in seq order: each row's hash against its content,
    its link to the row before when that row is given too (or ``stored_hash(seq - 1)`` finds it), and
    its MAC when ``key_for(key_id)`` has the key. Returns the problems found and the number of MACs
    that could not be checked (their key is not here)."""
    problems: list[str] = []
    unverified = 0
    prev: Mapping[str, Any] | None = None
    for r in rows:
        seq = r["seq"]
        if audit_digest(r["prev_hash"], seq, r["t"], r["user"], r["session"], r["action"], r["payload"]) != r["hash"]:
            problems.append(f"audit row {seq} ({r['action']}) does not match its hash: it was changed")
        before = prev["hash"] if prev is not None and prev["seq"] == seq - 1 else (
            stored_hash(seq - 1) if stored_hash is not None and seq > 1 else None)
        if before is not None and before != r["prev_hash"]:
            problems.append(f"audit row {seq} does not link to row {seq - 1}: the chain was rewritten")
        if prev is not None and seq <= prev["seq"]:
            problems.append(f"audit row {seq} comes after row {prev['seq']}: the rows are out of order")
        value = r.get("mac")
        if value:
            key = key_for(str(value).split(":")[0])
            if key is None:
                unverified += 1
            elif not check_mac(key, r["hash"], value):
                problems.append(f"audit row {seq} ({r['action']}) does not match its MAC: it was changed and its "
                                "hash recomputed")
        prev = r
    return problems, unverified


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (a is not None and b is not None and not isinstance(a, (str, dict, list))
                and not isinstance(b, (str, dict, list)) and math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-6))
    return bool(a == b)


def check_record(session: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], audit: Sequence[Mapping[str, Any]],
                 content: Mapping[str, Any] | None, *, entry_ids_match: bool = True) -> tuple[list[str], list[str]]:
    """Compare a session with the audit rows that recorded it; returns ``(problems, notes)``.

    ``session``: its fields (started_at, protocol, device, patient, created_by, status, ended_at,
    closed_by, signed_name, close_meaning; times as epoch s). ``entries``: its charted entries in
    the order they were recorded, dicts with id, t, table_kind, kind, payload, user, amends, reason.
    ``audit``: the audit rows of the session as dicts (see :func:`check_chain_rows`), in seq order.
    ``content``: :func:`content_digest`-style result of its sealed rows now (None: not computed).
    ``entry_ids_match``: the entries' ids are the ones their audit rows name (False for an
    archive or an imported session, whose entries were renumbered: matched by order then).
    Notes say what could not be checked (a session closed before Vigil sealed sessions)."""
    problems: list[str] = []
    notes: list[str] = []
    created = next((r for r in audit if r["action"] == "session_created"), None)
    if created is None:
        problems.append("no audit row records the opening of the session")
    else:
        p = created["payload"]
        expected = {"start": (p.get("started_at"), session["started_at"]), "protocol": (p.get("protocol"),
                    session["protocol"]), "device": (p.get("device"), session["device"]),
                    "patient": (p.get("patient"), session["patient"]), "author": (created["user"],
                                                                                 session["created_by"])}
        wrong = [name for name, (audited, now) in expected.items() if not _same(audited, now)]
        if wrong:
            problems.append(f"the session differs from what audit row {created['seq']} recorded when it was opened "
                            f"({', '.join(wrong)})")
    closed = next((r for r in audit if r["action"] in CLOSE_ACTIONS), None)
    if session["status"] != "open":
        if closed is None:
            problems.append("the session is closed but no audit row records its closing")
        else:
            p = closed["payload"]
            expected = {"status": (p.get("status"), session["status"]), "end": (p.get("at"), session["ended_at"]),
                        "signer": (closed["user"], session["closed_by"]),
                        "signed name": (p.get("signed_name"), session["signed_name"]),
                        "meaning": (p.get("meaning"), session["close_meaning"])}
            wrong = [name for name, (audited, now) in expected.items() if not _same(audited, now)]
            if wrong:
                problems.append(f"the session differs from what audit row {closed['seq']} recorded when it was closed "
                                f"({', '.join(wrong)})")
            sealed = p.get("content")
            if not isinstance(sealed, dict):
                notes.append("its data were not sealed when it was closed (closed by an older Vigil): observations, "
                             "waveforms and alarms are checked by the triggers only")
            elif content is not None and sealed.get("sha256") != content.get("sha256"):
                counts = content.get("counts", {})
                changed = [k for k, v in (sealed.get("counts") or {}).items() if counts.get(k) != v]
                problems.append(f"its data differ from what audit row {closed['seq']} sealed when it was closed"
                                + (f" (rows of {', '.join(changed)} added or removed)" if changed else
                                   " (rows were changed)"))
    elif closed is not None:
        problems.append(f"audit row {closed['seq']} records its closing, but the session is open")
    problems += check_entries(entries, [r for r in audit if r["action"] in ENTRY_ACTIONS], by_id=entry_ids_match)
    return problems, notes


def check_entries(entries: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]], *, by_id: bool) -> list[str]:
    """Problems of charted ``entries`` (dicts as in :func:`check_record`) against the audit ``rows``
    that recorded them (only rows of :data:`ENTRY_ACTIONS`): matched by entry id (``by_id``) or in
    order; a missing entry, an entry that differs, an entry no row vouches for."""
    rows = [r for r in rows if r["action"] in ENTRY_ACTIONS]
    problems: list[str] = []
    if by_id:
        pairs = []
        known = {e["id"]: e for e in entries}
        for r in rows:
            entry = known.pop(r["payload"].get("entry_id"), None)
            if entry is None:
                problems.append(f"entry {r['payload'].get('entry_id')}, recorded by audit row {r['seq']}, is missing")
            else:
                pairs.append((r, entry))
        unvouched = sorted(known)
    else:
        pairs = list(zip(rows, entries))
        unvouched = [e["id"] for e in entries[len(rows):]]
        if len(rows) > len(entries):
            problems.append(f"{len(rows) - len(entries)} entries recorded by the audit trail are missing")
    for r, e in pairs:
        p = r["payload"]
        expected = {"time": (p.get("t"), e["t"]), "table": (p.get("table_kind"), e["table_kind"]),
                    "kind": (p.get("kind"), e["kind"]), "payload": (p.get("payload"), e["payload"]),
                    "author": (r["user"], e["user"]), "reason": (p.get("reason"), e["reason"])}
        if by_id:
            expected["amends"] = (p.get("amends"), e["amends"])
        else:
            expected["amends"] = (p.get("amends") is None, e["amends"] is None)
        wrong = [name for name, (audited, now) in expected.items() if not _same(audited, now)]
        if wrong:
            problems.append(f"entry {e['id']} differs from what audit row {r['seq']} recorded when it was charted "
                            f"({', '.join(wrong)})")
    if unvouched:
        problems.append(f"entr{'y' if len(unvouched) == 1 else 'ies'} {', '.join(map(str, unvouched[:5]))}"
                        f"{' …' if len(unvouched) > 5 else ''} ha{'s' if len(unvouched) == 1 else 've'} no audit row "
                        "(written past Vigil)")
    return problems
