"""``vigil salvage``: copy what can still be read from a damaged database into a new one.

The damaged file is only read (SQLite read-only; never repaired in place). Every session whose row
can be read is copied with whatever of its parts can be read — observations, waveform blocks
(finished and unfinished), conditions, entries, alarms and their actions, gaps, its audit rows —
into a new database, through :meth:`SessionStore.insert_session`, so the new file's triggers and
checks apply to every row. Staff accounts (with their PIN hashes) and the settings history are
copied through the audited API. A part that fails part-way keeps the rows read before the failure;
what could not be read is reported and recorded in the new file's audit trail (each session's
``session_imported`` row names the file it was salvaged from, carries the session's original audit
rows, and lists the parts that were not read in full).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.store.files import _ro_uri, real_path
from monitor.store.records import StoreError
from monitor.store.seal import IMPORTED_ACTION

log = logging.getLogger("monitor.store")

__all__ = ["SalvageReport", "salvage"]

#: Who the salvage's audit rows name.
SALVAGE_USER = "vigil-salvage"


@dataclass
class SalvageReport:
    """What :func:`salvage` did: ``copied`` old session id → new id; ``lost`` what could not be read
    (one sentence each); ``users``/``settings`` how many were copied."""

    source: Path
    target: Path
    copied: dict[int, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    users: int = 0
    settings: int = 0

    @property
    def complete(self) -> bool:
        """True when everything could be read."""
        return not self.lost


class _Reader:
    """Reads from the damaged file, keeping what was read before an error and noting the error."""

    def __init__(self, conn: sqlite3.Connection, report: SalvageReport) -> None:
        self.conn = conn
        self.report = report

    def rows(self, what: str, sql: str, args: tuple[Any, ...] = (), fallback: str | None = None) -> list[tuple]:
        out: list[tuple] = []
        for attempt in (sql, fallback):
            if attempt is None:
                break
            out = []
            try:
                for row in self.conn.execute(attempt, args):
                    out.append(row)
                return out
            except sqlite3.DatabaseError as exc:
                error = exc
        self.report.lost.append(f"{what}: {len(out)} rows read, then: {error}")
        return out


def _open_source(path: Path) -> sqlite3.Connection:
    for immutable in (False, True):
        conn = sqlite3.connect(_ro_uri(path, immutable=immutable), uri=True, isolation_level=None)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.DatabaseError as exc:
            conn.close()
            if immutable:
                raise StoreError(f"{path} cannot be read at all ({exc}): nothing can be salvaged") from None
    raise AssertionError("unreachable")  # pragma: no cover


def salvage(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> SalvageReport:
    """Copy every readable session of ``source`` into the new database ``target`` (which must not
    exist) and return what was copied and what was lost. An unreadable source or an existing target
    raises :class:`StoreError`."""
    from monitor.store import SessionStore  # noqa: PLC0415 (the package imports its parts first)

    src, dst = Path(source), Path(target)
    if dst.exists() or os.path.lexists(dst):
        raise StoreError(f"{dst} exists: salvage writes a new database and never replaces a file")
    if real_path(src) == real_path(dst):
        raise StoreError("the new database must be another file")
    report = SalvageReport(src, dst)
    conn = _open_source(src)
    read = _Reader(conn, report)
    store = SessionStore(dst)
    try:
        _copy_accounts(read, store, report)
        staff = {r[0]: {"display_name": r[1], "role": r[2]} for r in read.rows(
            "staff names", "SELECT login, display_name, role FROM users")}
        ids = [r[0] for r in read.rows("the list of sessions", "SELECT id FROM sessions ORDER BY id",
                                       fallback="SELECT id FROM sessions NOT INDEXED")]
        sources = dict(read.rows("the device names", "SELECT id, name FROM sources"))
        for sid in ids:
            try:
                new = _copy_session(read, store, src, sid, sources, staff)
            except Exception as exc:  # one session that cannot be copied must not stop the rest
                report.lost.append(f"session {sid}: not copied: {exc}")
                continue
            if new is not None:
                report.copied[sid] = new
        loose = read.rows("audit rows of no session", "SELECT seq, t, user_login, session_id, action, payload_json, "
                          "prev_hash, hash FROM audit WHERE session_id IS NULL ORDER BY seq")
        store.audit(None, "database_salvaged", None, {
            "from": str(src), "sessions": {str(k): v for k, v in report.copied.items()}, "lost": report.lost,
            "audit": [_audit_dict(r) for r in loose]})
    finally:
        store.close()
        conn.close()
    return report


def _audit_dict(r: tuple[Any, ...]) -> dict[str, Any]:
    try:
        payload = json.loads(r[5])
    except (TypeError, ValueError):
        payload = {"unreadable_payload": str(r[5])[:200]}
    return {"seq": r[0], "t": r[1], "user": r[2], "session": r[3], "action": r[4], "payload": payload,
            "prev_hash": r[6], "hash": r[7]}


def _copy_accounts(read: _Reader, store: Any, report: SalvageReport) -> None:
    for login, name, role, pin_hash, active in read.rows(
            "staff accounts", "SELECT login, display_name, role, pin_hash, active FROM users ORDER BY id"):
        try:
            store.add_user(login, name, role, pin_hash, by=SALVAGE_USER)
            if not active:
                store.set_user_active(login, False, by=SALVAGE_USER)
            report.users += 1
        except (StoreError, ValueError) as exc:
            report.lost.append(f"staff account {login!r}: {exc}")
    for _version, _t, user, text in read.rows("settings", "SELECT version, t, user_login, json FROM settings "
                                              "ORDER BY version"):
        try:
            store.save_settings(text, by=user)
            report.settings += 1
        except (StoreError, ValueError, TypeError) as exc:
            report.lost.append(f"a settings version: {exc}")


def _json(text: Any) -> Any:
    return None if text is None else json.loads(text)


def _copy_session(read: _Reader, store: Any, src: Path, sid: int, sources: dict[int, str],
                  staff: dict[str, dict[str, str]]) -> int | None:
    where = f"session {sid}"
    rows = read.rows(where, "SELECT created_at, started_at, ended_at, status, phase, protocol, patient_name, "
                     "patient_ref, patient_json, plan_json, baseline_json, device, created_by, closed_by, signed_name, "
                     "close_meaning, last_seen FROM sessions WHERE id = ?", (sid,))
    if not rows:
        return None
    (created_at, started_at, ended_at, status, phase, protocol, patient_name, patient_ref, patient_json, plan_json,
     baseline_json, device, created_by, closed_by, signed_name, close_meaning, last_seen) = rows[0]
    lost_before = len(read.report.lost)
    scan = "NOT INDEXED WHERE session_id = ?"

    def name(source_id: int | None) -> str | None:
        return None if source_id is None else sources.get(source_id, f"source {source_id}")
    observations = [(t, vital, value, quality, device_time, unit, name(src_id) or "unknown")
                    for t, vital, value, quality, device_time, unit, src_id in read.rows(
        f"{where} observations", "SELECT t, vital, value, quality, device_time, unit, source_id FROM observations "
        "WHERE session_id = ? ORDER BY t, rowid", (sid,),
        fallback=f"SELECT t, vital, value, quality, device_time, unit, source_id FROM observations {scan}")]
    waveforms = [(ch, t0, rate, n, enc, name(src_id), bytes(data)) for ch, t0, rate, n, enc, src_id, data in read.rows(
        f"{where} waveform blocks", "SELECT channel, t0, rate, n, enc, source_id, data FROM waveforms "
        "WHERE session_id = ? ORDER BY id", (sid,),
        fallback=f"SELECT channel, t0, rate, n, enc, source_id, data FROM waveforms {scan}")]
    waveforms += [(ch, t0, rate, n, enc, name(src_id), bytes(data)) for ch, t0, rate, n, enc, src_id, data in read.rows(
        f"{where} unfinished waveform blocks", "SELECT channel, t0, rate, n, enc, source_id, data FROM waveform_pending "
        "WHERE session_id = ?", (sid,))]
    conditions = [(t, code, bool(active), text, name(src_id)) for t, code, active, text, src_id in read.rows(
        f"{where} device conditions", "SELECT t, code, active, text, source_id FROM conditions WHERE session_id = ? "
        "ORDER BY t, id", (sid,), fallback=f"SELECT t, code, active, text, source_id FROM conditions {scan}")]
    entries = [{"id": r[0], "t": r[1], "table_kind": r[2], "kind": r[3], "payload": _json(r[4]), "user": r[5],
                "amends": r[6], "reason": r[7], "recorded_at": r[8]} for r in read.rows(
        f"{where} entries", "SELECT id, t, table_kind, kind, payload_json, user_login, amends_id, reason, recorded_at "
        "FROM entries WHERE session_id = ? ORDER BY id", (sid,))]
    known = {e["id"] for e in entries}
    entries = [e for e in entries if e["amends"] is None or e["amends"] in known]
    alarms = [{"id": r[0], "condition": r[1], "kind": r[2], "priority": r[3], "max_priority": r[4],
               "started_at": r[5], "ended_at": r[6], "limit": r[7], "value": r[8], "message": r[9]} for r in read.rows(
        f"{where} alarms", "SELECT id, condition, kind, priority, max_priority, started_at, ended_at, limit_value, "
        "trigger_value, message FROM alarms WHERE session_id = ? ORDER BY id", (sid,))]
    alarm_ids = {a["id"] for a in alarms}
    actions = [{"alarm": r[0] if r[0] in alarm_ids else None, "t": r[1], "action": r[2], "user": r[3], "detail": r[4]}
               for r in read.rows(f"{where} alarm actions", "SELECT alarm_id, t, action, user_login, detail FROM "
                                  "alarm_actions WHERE session_id = ? ORDER BY id", (sid,))]
    gaps = read.rows(f"{where} gaps", "SELECT start_t, end_t, reason FROM gaps WHERE session_id = ? ORDER BY start_t, id",
                     (sid,))
    audit = [_audit_dict(r) for r in read.rows(
        f"{where} audit rows", "SELECT seq, t, user_login, session_id, action, payload_json, prev_hash, hash "
        "FROM audit WHERE session_id = ? ORDER BY seq", (sid,))]
    session = {"created_at": created_at, "started_at": started_at, "ended_at": ended_at, "status": status,
               "phase": phase, "protocol": protocol, "patient_name": patient_name, "patient_ref": patient_ref,
               "patient": _json(patient_json) or {}, "plan": _json(plan_json) or {}, "baseline": _json(baseline_json),
               "device": device, "created_by": created_by, "closed_by": closed_by, "signed_name": signed_name,
               "close_meaning": close_meaning, "last_seen": last_seen, "n_observations": len(observations),
               "n_alarms": len(alarms)}
    lost = read.report.lost[lost_before:]
    return int(store.insert_session(
        session, observations=iter(observations), waveforms=iter(waveforms), conditions=iter(conditions),
        entries=entries, alarms=alarms, alarm_actions=actions, gaps=iter(gaps), audit_action=IMPORTED_ACTION,
        user=SALVAGE_USER, audit_payload={"salvaged_from": str(src), "origin_session_id": sid, "staff": staff,
                                          "audit": audit, "not_read_in_full": lost}))
