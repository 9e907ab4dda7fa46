"""The hash-chained, keyed audit trail: append, read, verify; and the checks of ``vigil verify``
(integrity, triggers, a session's record against its audit rows, the staff accounts)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any


from monitor.store.codec import (
    _GENESIS,
    _at,
    _dict_arg,
    _sid,
    _text,
    audit_digest,
)
from monitor.store.database import KEYED_ACTION, StoreCore
from monitor.store.keys import check_mac, find_key
from monitor.store.records import (
    AuditCheck,
    AuditRow,
    NotFoundError,
    SessionCheck,
    StoreError,
)
from monitor.store.schema import _CURRENT_TRIGGERS, trigger_differences
from monitor.store.seal import IMPORTED_ACTION, check_chain_rows, check_entries, check_record, content_digest

_AUDIT_COLS = "seq, t, user_login, session_id, action, payload_json, prev_hash, hash"


def _row_dict(r: tuple[Any, ...], mac: str | None = None) -> dict[str, Any]:
    return {"seq": r[0], "t": r[1], "user": r[2], "session": r[3], "action": r[4], "payload": json.loads(r[5]),
            "prev_hash": r[6], "hash": r[7], "mac": mac}


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
        sql = f"SELECT {_AUDIT_COLS} FROM audit"
        args: tuple[Any, ...] = ()
        if session_id is not None:
            sql += " WHERE session_id = ?"
            args = (session_id,)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [AuditRow(r[0], _at(r[1]), r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def _key(self, kid: str) -> bytes | None:
        """The audit key ``kid`` if it is on this computer (this database's, or another's key file)."""
        key = self._audit_keys.get(kid)
        if key is None:
            key = find_key(kid)
            if key is not None:
                self._audit_keys[kid] = key
        return key

    def verify_audit(self) -> AuditCheck:
        """Recompute the audit hash chain and check its MACs. ``ok`` is False at the first row whose
        sequence number is not the previous plus one (a deleted row), whose ``prev_hash`` is not the
        previous row's hash, whose hash does not match its content (an edited row), or — once the
        chain is keyed — whose MAC is missing or wrong (a row edited and its hashes recomputed), or
        that changes key without an ``audit_chain_keyed`` row. A database whose key is on this
        computer but whose chain has no MAC was rewritten without them. Rows whose key is not on
        this computer are counted in ``unverified`` and make ``ok`` False too. Deleting rows from the
        end of the chain is not detectable from the chain alone (the clinic record holds a copy)."""
        rows = 0
        prev = _GENESIS
        expected = 1
        keyed_from: int | None = None
        kid: str | None = None
        unverified = 0
        mac_sql = ", mac" if self._has_mac else ", NULL"
        with self._read() as conn:
            cursor = conn.execute(f"SELECT {_AUDIT_COLS}{mac_sql} FROM audit ORDER BY seq")
            for seq, t, user, session_id, action, payload_json, prev_hash, digest, mac in cursor:
                rows += 1

                def bad(problem: str, seq: int = seq) -> AuditCheck:
                    return AuditCheck(False, rows, seq, problem, keyed_from, unverified)
                if seq != expected:
                    return bad(f"sequence jumps from {expected - 1} to {seq}")
                if prev_hash != prev:
                    return bad("prev_hash does not match the previous row's hash")
                try:
                    payload = json.loads(payload_json)
                except (TypeError, ValueError):
                    return bad("payload is not valid JSON")
                if audit_digest(prev, seq, t, user, session_id, action, payload) != digest:
                    return bad("hash does not match the row's content")
                if mac:
                    row_kid = str(mac).split(":")[0]
                    if action == KEYED_ACTION and payload.get("key_id") != row_kid:
                        return bad("the key change does not name the key of its MAC")
                    if kid is not None and row_kid != kid and action != KEYED_ACTION:
                        return bad("the MAC changes key without a recorded key change")
                    kid = row_kid
                    keyed_from = keyed_from or seq
                    key = self._key(row_kid)
                    if key is None:
                        unverified += 1
                    elif not check_mac(key, digest, mac):
                        return bad("the MAC does not match: the row was changed and its hashes recomputed")
                elif keyed_from is not None:
                    return bad(f"the row has no MAC though the chain is keyed from row {keyed_from}: "
                               "the chain was rewritten")
                prev = digest
                expected += 1
        if rows and keyed_from is None and self._audit_keys:
            return AuditCheck(False, rows, None, "this database's key is on this computer but no audit row has a "
                              "MAC: the chain was rewritten without them", None, 0)
        if unverified:
            return AuditCheck(False, rows, None, f"{unverified} rows are keyed with a key that is not on this computer "
                              "(copy the database's key file from the computer that recorded it to check them)",
                              keyed_from, unverified)
        return AuditCheck(True, rows, None, None, keyed_from, 0)

    # ------------------------------------------------------------------ vigil verify
    def integrity_check(self) -> list[str]:
        """SQLite's full ``integrity_check`` (pages, records, indexes); empty when the file is sound.
        Uses a connection of its own (a damaged file may fail anything)."""
        try:
            conn = self._connect_ro()
        except (sqlite3.DatabaseError, StoreError) as exc:
            return [str(exc)]
        try:
            rows = conn.execute("PRAGMA integrity_check(50)").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        finally:
            conn.close()
        return [r[0] for r in rows if r[0] != "ok"]

    def trigger_report(self) -> dict[str, list[str]]:
        """How the file's protective triggers differ from the schema's: ``missing``, ``changed``,
        ``unexpected`` (names; all empty when they are as Vigil made them)."""
        with self._read() as conn:
            return trigger_differences(conn, _CURRENT_TRIGGERS())

    def verify_session(self, session_id: int) -> SessionCheck:
        """Check one session's record against its audit trail: each of its audit rows (hash, links to
        the rows around it, MAC), its opening and closing, every charted entry, and its data against
        the seal of its closing row; for an imported session, the audit rows it came with. Reads only.
        Unknown session → :class:`NotFoundError`."""
        sid = _sid(session_id)
        mac_sql = ", mac" if self._has_mac else ", NULL"
        with self._read() as conn:
            row = conn.execute("SELECT started_at, protocol, device, patient_json, created_by, status, ended_at, "
                               "closed_by, signed_name, close_meaning FROM sessions WHERE id = ?", (sid,)).fetchone()
            if row is None:
                raise NotFoundError(f"no session {session_id}")
            session = dict(zip(("started_at", "protocol", "device", "patient", "created_by", "status", "ended_at",
                                "closed_by", "signed_name", "close_meaning"), row))
            session["patient"] = json.loads(session["patient"])
            own = [_row_dict(r[:8], r[8]) for r in conn.execute(
                f"SELECT {_AUDIT_COLS}{mac_sql} FROM audit WHERE session_id = ? ORDER BY seq", (sid,))]
            entries = [{"id": r[0], "t": r[1], "table_kind": r[2], "kind": r[3], "payload": json.loads(r[4]),
                        "user": r[5], "amends": r[6], "reason": r[7]} for r in conn.execute(
                "SELECT id, t, table_kind, kind, payload_json, user_login, amends_id, reason FROM entries "
                "WHERE session_id = ? ORDER BY id", (sid,))]

            def stored_hash(seq: int) -> str | None:
                found = conn.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)).fetchone()
                return None if found is None else str(found[0])
            problems, unverified = check_chain_rows(own, self._key, stored_hash)
            for r in own:  # the row after each must link to it (an edited row's successor was not rewritten)
                after = conn.execute("SELECT prev_hash FROM audit WHERE seq = ?", (r["seq"] + 1,)).fetchone()
                if after is not None and after[0] != r["hash"]:
                    problems.append(f"audit row {r['seq'] + 1} does not link to row {r['seq']}: the chain was rewritten")
            content = content_digest(conn, sid) if session["status"] != "open" else None
        imported = next((r for r in own if r["action"] == IMPORTED_ACTION), None)
        notes: list[str] = []
        if imported is not None:
            carried = imported["payload"].get("audit") if isinstance(imported["payload"].get("audit"), list) else []
            more, unverified_more = check_chain_rows(carried, self._key)
            problems += more
            unverified += unverified_more
            n_carried = sum(1 for r in carried if r.get("action") in ("entry_added", "entry_amended",
                                                                        "late_entry_added"))
            record_problems, notes = check_record(session, entries[:n_carried], carried, content,
                                                  entry_ids_match=False)
            problems += record_problems
            later = [r for r in own if r["seq"] > imported["seq"]]
            problems += check_entries(entries[n_carried:], later, by_id=True)
            notes.insert(0, f"imported from an archive (audit row {imported['seq']})")
        else:
            record_problems, notes = check_record(session, entries, own, content)
            problems += record_problems
        if unverified:
            notes.append(f"{unverified} MACs not checked: their key is not on this computer")
        return SessionCheck(sid, tuple(problems), tuple(notes), len(own))

    def verify_users(self) -> list[str]:
        """Staff accounts that differ from what the audit trail recorded of them (added, activated or
        deactivated, PIN changed, any ``user_*`` row naming a login): an account edited by hand.
        Empty when every account matches."""
        expected: dict[str, dict[str, Any]] = {}
        with self._read() as conn:
            for action, payload_json in conn.execute("SELECT action, payload_json FROM audit WHERE action LIKE "
                                                     "'user\\_%' ESCAPE '\\' ORDER BY seq"):
                try:
                    payload = json.loads(payload_json)
                    login = str(payload["login"])
                except (ValueError, KeyError, TypeError):
                    continue
                state = expected.setdefault(login, {"added": action == "user_added"})
                for field in ("display_name", "role", "pin_sha256"):
                    if field in payload:
                        state[field] = payload[field]
                if action in ("user_added", "user_activated", "user_deactivated"):
                    state["active"] = action != "user_deactivated"
            users = conn.execute("SELECT login, display_name, role, pin_hash, active FROM users ORDER BY id").fetchall()
        problems = []
        for login, display_name, role, pin_hash, active in users:
            found = expected.pop(login) if login in expected else None
            if found is None or not found.get("added"):
                problems.append(f"account {login!r} was not added through Vigil (no audit row records it)")
                continue
            now = {"display_name": display_name, "role": role, "active": bool(active),
                   "pin_sha256": None if pin_hash is None else hashlib.sha256(pin_hash.encode()).hexdigest()}
            wrong = [f for f in ("display_name", "role", "active", "pin_sha256") if f in found and found[f] != now[f]]
            if wrong:
                problems.append(f"account {login!r} differs from its audit rows ({', '.join(wrong)}): changed by hand")
        problems += [f"account {login!r}, recorded in the audit trail, is missing" for login in expected]
        return problems
