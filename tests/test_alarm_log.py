"""The alarm log keeps audio pauses (issue 9 §5): who paused, when, for how long, and how the pause
ended — "audio pause ended" at the pause's end when it ran its time (not a "cancel" at the next
tick), "audio pause cancelled" by the user who ended it early — in the store (schema 3, with the
migration of older files), the CSV alarm log, the PDF report and the JSON archive."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from drivers.model import numeric
from monitor import store as store_mod
from monitor.store import database as store_db
from monitor.alarms.engine import AlarmEngine
from monitor.alarms.profile import default_profile
from monitor.export import export_session, import_archive
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.app.recorder import SessionRecorder
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import ReadOnlyError, SessionStore, StoreWriter
from monitor.store.schema import MIGRATIONS
from tests.test_export import _pdf_text, _zip_tables

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
NURSE = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
CHARGE = Actor(username="cn", display_name="Cara Nolan", role=Role.CHARGE_NURSE)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_an_expired_audio_pause_ends_at_its_end_time_not_at_the_next_tick():
    engine = AlarmEngine(default_profile(), audio_pause_s=120)
    for s in range(0, 30, 2):
        engine.process([numeric("spo2", 84.0, "sim", at(s))])
    [paused] = engine.pause_audio("ann", at(30))
    assert paused.t == at(30)
    assert engine.tick(at(149)) == []
    [ended] = engine.tick(at(157))  # the first tick after the end comes 27 s late
    assert (ended.event, ended.t, ended.user) == ("audio_resumed", at(150), None)


def _session(store: SessionStore) -> int:
    """SpO2 84 %: an alarm; audio paused by the nurse at 30 s for 120 s and left to run out (ticks every
    7 s), then paused again at 200 s and cancelled by the charge nurse at 230 s."""
    writer = StoreWriter(store)
    writer.start()
    rec = SessionRecorder.start(store, writer, patient=Patient(display_name="Pat Example", weight_kg=70),
                                plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), device="sim://",
                                actor=NURSE, t=T0, settings=ClinicSettings(), profile=default_profile())
    for s in range(0, 260, 7):
        rec.on_items([numeric("spo2", 84.0, "sim", at(s)), numeric("hr", 80.0, "sim", at(s))])
        rec.tick(at(s))
        if s == 28:
            rec.pause_audio(NURSE, at(30))
        if s == 196:
            rec.pause_audio(NURSE, at(200))
        if s == 224:
            rec.cancel_audio_pause(CHARGE, at(230))
    rec.finish(at(260), signed_name=NURSE.display_name, meaning="reviewed and closed", status="aborted")
    assert writer.stop(30)
    return rec.session_id


@pytest.fixture(scope="module")
def paused(tmp_path_factory):
    store = SessionStore(tmp_path_factory.mktemp("pause") / "p.sqlite")
    sid = _session(store)
    yield store, sid
    store.close()


def test_the_store_keeps_each_pause_and_how_it_ended(paused):
    store, sid = paused
    audio = [(x.t, x.action, x.user, x.detail) for x in store.alarm_actions(sid) if x.alarm_id is None]
    assert audio == [(at(30), "audio_pause", "ann", "120 s"), (at(150), "audio_pause_end", None, "audio pause expired"),
                     (at(200), "audio_pause", "ann", "120 s"),
                     (at(230), "audio_pause_cancel", "cn", "audio pause cancelled")]


def test_csv_pdf_and_archive_show_audio_pauses_and_their_ends(paused, tmp_path, qapp):
    store, sid = paused
    log = _zip_tables(export_session(store, sid, "csv", tmp_path / "s.zip"))["alarm_log.csv"]
    audio = [(r["elapsed_s"], r["action"], r["description"], r["by"], r["pause_s"], r["paused_for_s"])
             for r in log if r["action"].startswith("audio")]
    assert audio == [("30.0", "audio_pause", "audio paused for 120 s", "Ann Lee", "120.0", ""),
                     ("150.0", "audio_pause_end", "audio pause ended", "", "", "120.0"),
                     ("200.0", "audio_pause", "audio paused for 120 s", "Ann Lee", "120.0", ""),
                     ("230.0", "audio_pause_cancel", "audio pause cancelled", "cn", "", "30.0")]
    [start] = [r for r in log if r["action"] == "start"]
    assert start["condition"] == "spo2_low" and float(start["elapsed_s"]) < 30
    assert [float(r["elapsed_s"]) for r in log] == sorted(float(r["elapsed_s"]) for r in log)

    text = " ".join(_pdf_text(export_session(store, sid, "pdf", tmp_path / "s.pdf")))
    assert "audio paused for 120 s by Ann Lee" in text and "audio pause ended" in text
    assert "audio pause cancelled by cn" in text

    archive = export_session(store, sid, "json", tmp_path / "a.json")
    actions = [a["action"] for a in json.loads(archive.read_bytes())["alarm_actions"] if a["alarm"] is None]
    assert actions == ["audio_pause", "audio_pause_end", "audio_pause", "audio_pause_cancel"]
    other = SessionStore(tmp_path / "o.sqlite")
    try:
        new = import_archive(other, archive)
        assert export_session(other, new, "json", tmp_path / "b.json").read_bytes() == archive.read_bytes()
    finally:
        other.close()


def test_a_schema_2_file_migrates_with_a_backup_and_takes_pause_ends(tmp_path, monkeypatch):
    db = tmp_path / "v2.sqlite"
    monkeypatch.setattr(store_db, "MIGRATIONS", store_mod.MIGRATIONS[:2])
    with SessionStore(db) as s:
        old = s.create_session(patient={"display_name": "Old Patient"}, protocol="ketamine-iv", plan={}, device="x",
                               user="ann", started_at=T0)
        alarm = s.alarm_started(old, condition="spo2_low", kind="physiological", priority="HIGH", started_at=at(1),
                                limit=88.0, value=84.0, message="SpO2 low")
        s.alarm_action(old, alarm_id=alarm, at=at(5), action="acknowledge", user="ann")
        s.alarm_action(old, alarm_id=None, at=at(6), action="audio_pause", user="ann", detail="120 s")
        s.close_session(old, user="ann", signed_name="Ann Lee", meaning="reviewed and closed", at=at(200))
        before = [(x.id, x.alarm_id, x.t, x.action, x.user, x.detail) for x in s.alarm_actions(old)]
        new = s.create_session(patient={"display_name": "New Patient"}, protocol="ketamine-iv", plan={},
                               device="x", user="ann", started_at=at(300))
    with sqlite3.connect(db) as c:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):  # version 2's table refuses the new action
            c.execute("INSERT INTO alarm_actions (session_id, alarm_id, t, action) VALUES (?, NULL, 1.0, "
                      "'audio_pause_end')", (new,))
    monkeypatch.undo()

    with SessionStore(db) as s:  # migrated on opening
        assert [(x.id, x.alarm_id, x.t, x.action, x.user, x.detail) for x in s.alarm_actions(old)] == before
        with pytest.raises(ReadOnlyError):  # the closed session's alarm log stays read-only
            s.alarm_action(old, alarm_id=None, at=at(201), action="audio_pause_end", user=None)
        s.alarm_action(new, alarm_id=None, at=at(301), action="audio_pause", user="ann", detail="60 s")
        s.alarm_action(new, alarm_id=None, at=at(361), action="audio_pause_end", user=None)
        assert [x.action for x in s.alarm_actions(new)] == ["audio_pause", "audio_pause_end"]
        assert s.verify_audit().ok
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(len(MIGRATIONS))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            c.execute("INSERT INTO alarm_actions (session_id, alarm_id, t, action) VALUES (?, NULL, 1.0, 'snooze')",
                      (new,))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            c.execute("UPDATE alarm_actions SET user_login = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            c.execute("DELETE FROM alarm_actions")
        indexes = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                           "AND tbl_name = 'alarm_actions'")}
        assert {"alarm_actions_st", "alarm_actions_alarm"} <= indexes
    with sqlite3.connect(f"{db}.v2.bak") as c:  # the backup made before migrating
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
        assert c.execute("SELECT count(*) FROM alarm_actions").fetchone()[0] == len(before)
