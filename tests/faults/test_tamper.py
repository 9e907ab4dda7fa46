"""Issue 11, "Records that cannot be forged quietly": hand edits of the database file, with the
triggers dropped and the plain hashes recomputed, are found by ``vigil verify``; trigger and schema
changes are restored and audited; accounts edited by hand are found. Real files, sqlite3 as a
forger would use it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from monitor.cli import run_cli
from monitor.store import SessionStore, audit_digest
from monitor.store import schema as store_schema
from monitor.store import database as store_db
from monitor.store.keys import key_dir

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def verify(db: Path, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_cli(["verify", *args, "--db", str(db)], out=out, err=err)
    return status, out.getvalue() + err.getvalue()


@pytest.fixture
def recorded(tmp_path):
    from drivers.model import numeric

    db = tmp_path / "vigil.sqlite"
    with SessionStore(db) as s:
        s.add_user("chief", "Cora Chief", "charge_nurse", "pinhash-chief", by=None)
        s.add_user("ann", "Ann Nurse", "nurse", "pinhash-ann", by="chief")
        sid = s.create_session(patient={"display_name": "Pat Example", "id": "MRN1"}, protocol="ketamine-iv",
                               plan={"dose": 0.5}, device="sim://", user="ann", started_at=T0)
        s.add_observations(sid, [numeric("spo2", 97.0 - i % 3, "sim", at(i)) for i in range(600)])
        s.add_entry(sid, "assessment", at(60), "moaas", {"level": 5}, "ann")
        row = s.alarm_started(sid, condition="spo2_low", kind="physiological", priority="MEDIUM", started_at=at(100),
                              limit=91.0, value=89.0, message="SpO2 low")
        s.alarm_ended(row, at(130))
        s.close_session(sid, user="ann", signed_name="Ann Nurse", meaning="reviewed and closed", at=at(600))
    return db, sid


def forge(db: Path, sql: list[str], *, rehash: bool = True) -> None:
    """What a forger with sqlite3 does: drop the protective triggers, edit, recompute every plain
    hash from the first changed row on, and put the triggers back as they were."""
    c = sqlite3.connect(db, isolation_level=None)
    triggers = c.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    for name, _ in triggers:
        c.execute(f"DROP TRIGGER {name}")
    for statement in sql:
        c.execute(statement)
    if rehash:
        prev = "0" * 64
        for seq, t, user, session, action, payload, _p, _h in c.execute(
                "SELECT seq, t, user_login, session_id, action, payload_json, prev_hash, hash FROM audit "
                "ORDER BY seq").fetchall():
            digest = audit_digest(prev, seq, t, user, session, action, json.loads(payload))
            c.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
            prev = digest
    for _name, text in triggers:
        c.execute(text)
    c.close()


def test_an_intact_record_verifies(recorded):
    db, sid = recorded
    status, out = verify(db, "--all")
    assert status == 0, out
    assert "audit chain: intact" in out and "keyed from row 1, every MAC checked" in out
    assert f"session {sid}: Record verified" in out and "triggers: all present" in out


def test_a_value_edited_with_the_triggers_dropped_is_found(recorded):
    db, sid = recorded
    forge(db, ["UPDATE observations SET value = 99 WHERE vital = 'spo2' AND value < 96"], rehash=False)
    status, out = verify(db, str(sid))
    assert status == 1 and "its data differ from what audit row" in out and "sealed when it was closed" in out


def test_an_audit_row_edited_and_the_plain_chain_recomputed_is_found_by_its_mac(recorded):
    db, sid = recorded
    with SessionStore(db, readonly=True) as r:
        entry_row = next(x for x in r.audit_rows(sid) if x.action == "entry_added")
    payload = {**entry_row.payload, "payload": {"level": 1}}
    forge(db, [f"UPDATE entries SET payload_json = '{json.dumps({'level': 1})}'",
               f"UPDATE audit SET payload_json = '{json.dumps(payload, sort_keys=True, separators=(',', ':'))}' "
               f"WHERE seq = {entry_row.seq}"])
    with SessionStore(db, readonly=True) as r:
        check = r.verify_audit()
        assert not check.ok and check.first_bad_seq == entry_row.seq and "MAC" in check.problem
    status, out = verify(db, str(sid))
    assert status == 1 and f"BROKEN at row {entry_row.seq}" in out and "MAC does not match" in out


def test_a_chain_stripped_of_its_macs_is_found(recorded):
    db, _ = recorded
    forge(db, ["UPDATE audit SET mac = NULL", "UPDATE audit SET user_login = 'mallory' WHERE seq = 2"])
    status, out = verify(db)
    assert status == 1 and "no audit row has a MAC: the chain was rewritten" in out


def test_accounts_edited_by_hand_are_found(recorded):
    db, _ = recorded
    forge(db, ["UPDATE users SET role = 'charge_nurse' WHERE login = 'ann'",
               "UPDATE users SET pin_hash = 'attacker' WHERE login = 'chief'",
               "INSERT INTO users (login, display_name, role, pin_hash, created_at, active) "
               "VALUES ('mallory', 'M', 'charge_nurse', 'x', 0, 1)"], rehash=False)
    status, out = verify(db)
    assert status == 1
    assert "account 'ann' differs from its audit rows (role)" in out
    assert "account 'chief' differs from its audit rows (pin_sha256)" in out
    assert "account 'mallory' was not added through Vigil" in out


def test_dropped_changed_and_added_triggers_are_restored_and_audited(recorded):
    db, _ = recorded
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("DROP TRIGGER audit_no_delete")
    c.execute("DROP TRIGGER observations_no_update")
    c.execute("CREATE TRIGGER observations_no_update BEFORE UPDATE ON observations WHEN 0 BEGIN "
              "SELECT RAISE(ABORT, 'x'); END")
    c.execute("CREATE TRIGGER sneaky AFTER INSERT ON observations BEGIN UPDATE observations SET value = 99 "
              "WHERE rowid = NEW.rowid; END")
    c.close()
    status, out = verify(db)
    assert status == 1 and "missing: audit_no_delete" in out and "changed: observations_no_update" in out \
        and "unexpected: sneaky" in out
    with SessionStore(db) as s:
        last = s.audit_rows()[-1]
        assert last.action == "schema_triggers_restored"
        assert last.payload == {"triggers": ["audit_no_delete"], "changed": ["observations_no_update"],
                                "unexpected": ["sneaky"]}
    assert verify(db)[0] == 0


def test_a_schema_change_by_hand_is_audited(recorded):
    db, _ = recorded
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("CREATE INDEX sneaky_index ON users (pin_hash)")
    c.close()
    with SessionStore(db) as s:
        [row] = [r for r in s.audit_rows() if r.action == "schema_changed"]
        assert row.payload["added"] == ["index sneaky_index"]
    with SessionStore(db) as s:  # recorded once
        assert [r.action for r in s.audit_rows()].count("schema_changed") == 1


def test_an_older_database_is_keyed_from_a_recorded_row_and_its_old_rows_still_verify(tmp_path, monkeypatch):
    db = tmp_path / "old.sqlite"
    before_keying = store_schema.MIGRATIONS.index(store_schema._migrate_4_to_5)
    monkeypatch.setattr(store_db, "MIGRATIONS", store_schema.MIGRATIONS[:before_keying])
    with SessionStore(db) as s:  # a file from before the keyed chain: plain
        sid = s.create_session(patient={"display_name": "P"}, protocol="ketamine-iv", plan={}, device="x",
                               user="ann", started_at=T0)
        s.close_session(sid, user="ann", signed_name="Ann", meaning="closed", at=at(60))
        plain = len(s.audit_rows())
    monkeypatch.undo()
    with SessionStore(db) as s:  # migrated: the chain is keyed from a recorded row on
        rows = s.audit_rows()
        keyed = next(r for r in rows if r.action == "audit_chain_keyed")
        assert keyed.seq > plain and s.verify_audit().keyed_from == keyed.seq
        s.audit("ann", "export_printed", sid, {"pages": 2})
    status, out = verify(db, "--all")
    assert status == 0, out
    assert f"keyed from row {keyed.seq}" in out, out
    # on a computer without the key, the keyed rows cannot be checked: said, and not passed as verified
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(db, moved / "old.sqlite")
    monkeypatch.setenv("VIGIL_KEY_DIR", str(tmp_path / "other-keys"))
    status, out = verify(moved / "old.sqlite")
    assert status == 1 and "key that is not on this computer" in out
    with SessionStore(moved / "old.sqlite") as s:  # recording there starts a new key, recorded in the chain
        last = s.audit_rows()[-1]
        assert last.action == "audit_chain_keyed" and last.payload["previous_key_id"] == keyed.payload["key_id"]


def test_key_files_are_owner_only_and_outside_the_database(recorded):
    db, _ = recorded
    folder = key_dir()
    files = list(folder.glob("*.keys"))
    assert files and all(oct(f.stat().st_mode)[-3:] == "600" for f in files)
    assert oct(folder.stat().st_mode)[-3:] == "700"
    raw = db.read_bytes() + Path(f"{db}-wal").read_bytes() if Path(f"{db}-wal").exists() else db.read_bytes()
    for f in files:
        for key in json.loads(f.read_text()).values():
            assert bytes.fromhex(key) not in raw and key.encode() not in raw
    assert hashlib.sha256  # the MACs name the key by id only
    assert os.path.commonpath([folder, db]) != str(db.parent)
