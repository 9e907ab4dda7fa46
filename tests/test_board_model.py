"""Clinic board without a broker: the wire format, the board's rules (time injected), the chair
publisher's conversions and queues, the session snapshot, the settings and the profile rule."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from drivers.model import WaveformChunk, numeric
from monitor.alarms.engine import AlarmEngine
from monitor.alarms.profile import AlarmProfile, Priority, default_profile, migrate_profile_data
from monitor.board.config import BrokerOptions, BrokerUrlError, parse_broker_url
from monitor.board.messages import (
    AlarmInfo, AlarmsMessage, MessageError, SessionInfo, SessionMessage, StatusMessage, VitalsMessage, chair_topic,
    decode, encode, parse_topic,
)
from monitor.board.model import BoardModel
from monitor.board.publisher import ChairPublisher
from monitor.app.snapshot import patient_initials, snapshot_from_state
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.session import SessionState
from monitor.settings import ClinicSettings, SettingsError, update_settings
from monitor.staff import Actor, Role

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
NURSE = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def status(chair: str, state: str, reason: str = "", t: float = 0) -> bytes:
    return encode(StatusMessage(chair=chair, t=at(t), state=state, reason=reason, version="1"))


def alarms(chair: str, seq: int, *items: tuple[str, str, bool], audio: str | None = None, t: float = 0) -> bytes:
    infos = tuple(AlarmInfo(id=i, condition=c, label=c, text=f"{c} text", kind="physiological", priority=p,
                            since=at(t), active=active) for i, (c, p, active) in enumerate(items, 1))
    top = max((Priority[p] for _, p, _ in items), default=None)
    return encode(AlarmsMessage(chair=chair, t=at(t), seq=seq, alarms=infos,
                                visual_priority=top.name if top else None, audio_priority=audio))


def vitals(chair: str, t: float, spo2: float = 97) -> bytes:
    return encode(VitalsMessage(chair=chair, t=at(t), numerics={
        "spo2": {"value": spo2, "unit": "%", "t": at(t)}, "pr": {"value": 72, "unit": "/min", "t": at(t)}}))


def topic(chair: str, kind: str) -> str:
    return chair_topic("clinic", chair, kind)


def live_model(*chairs: str) -> BoardModel:
    model = BoardModel("clinic")
    model.set_connected(True, at(0))
    for chair in chairs:
        model.receive(topic(chair, "status"), status(chair, "online"), at(0))
        model.receive(topic(chair, "vitals"), vitals(chair, 0), at(0))
    return model


# ------------------------------------------------------------------ wire format
def test_messages_round_trip_and_a_newer_schema_is_refused_with_a_message():
    raw = alarms("chair-1", 3, ("spo2_low", "HIGH", True), audio="HIGH")
    message = decode("alarms", raw)
    assert message.seq == 3 and message.alarms[0].priority == "HIGH" and message.audio_priority == "HIGH"
    newer = json.loads(raw)
    newer["v"] = 2
    with pytest.raises(MessageError, match="schema version 2"):
        decode("alarms", json.dumps(newer).encode())
    extra = json.loads(raw)
    extra["future_field"] = 1          # fields added within a version are ignored
    assert decode("alarms", json.dumps(extra).encode()).seq == 3
    with pytest.raises(MessageError, match="alarms message refused"):
        decode("alarms", b"not json")


def test_topics_are_checked_names_and_parse_back():
    assert topic("chair-1", "alarms") == "vigil/clinic/chair-1/alarms"
    assert parse_topic("vigil/clinic/chair-1/alarms") == ("clinic", "chair-1", "alarms")
    for bad in ("chair/2", "chair+", "#", "", "a b"):
        with pytest.raises(MessageError):
            chair_topic("clinic", bad, "alarms")
    with pytest.raises(MessageError):
        parse_topic("vigil/clinic/chair-1/other")


def test_broker_urls():
    assert parse_broker_url("mqtts://127.0.0.1").port == 8883
    assert parse_broker_url("mqtt://localhost:1884").tls is False
    for bad in ("http://x", "mqtts://user:pw@host:8883", "mqtts://:8883", "mqtts://h:99999"):
        with pytest.raises(BrokerUrlError):
            parse_broker_url(bad)
    assert "secret" not in repr(BrokerOptions(parse_broker_url("mqtts://h"), "chair-1", "secret"))


# ------------------------------------------------------------------ board rules
def test_a_chair_alarm_shows_on_its_tile_and_sounds_at_the_chair_priority():
    model = live_model("chair-1", "chair-2")
    model.receive(topic("chair-1", "alarms"), alarms("chair-1", 1, ("spo2_low", "HIGH", True), audio="HIGH"), at(1))
    tile = model.tile("chair-1", at(1))
    assert tile.priority == "HIGH" and "spo2_low text" in tile.banner and tile.sequence == 1
    assert model.tile("chair-2", at(1)).priority is None
    assert model.audio_priority(at(1)) is Priority.HIGH
    # acknowledged at the chair: silent there, so silent here; still shown
    model.receive(topic("chair-1", "alarms"), alarms("chair-1", 2, ("spo2_low", "HIGH", True), audio=None), at(2))
    assert model.audio_priority(at(2)) is None and model.tile("chair-1", at(2)).priority == "HIGH"


def test_a_silent_chair_becomes_a_board_alarm_after_ten_seconds_high_if_it_had_an_alarm():
    model = live_model("chair-1", "chair-2")
    model.receive(topic("chair-2", "alarms"), alarms("chair-2", 1, ("hr_high", "MEDIUM", True)), at(0))
    for s in range(1, 10):
        model.receive(topic("chair-1", "vitals"), vitals("chair-1", s), at(s))
    assert model.board_alarms(at(9.5)) == []
    found = {a.chair: a for a in model.board_alarms(at(10))}
    assert set(found) == {"chair-2"} and found["chair-2"].priority is Priority.HIGH
    assert found["chair-2"].condition == "chair_stale" and "no data" in found["chair-2"].text
    assert model.tile("chair-2", at(10)).state == "stale"
    assert model.tile("chair-2", at(10)).priority == "HIGH"   # the chair's own alarm is no longer live
    found = {a.chair: a for a in model.board_alarms(at(20))}
    assert found["chair-1"].priority is Priority.MEDIUM        # no active alarm there


def test_a_last_will_is_a_board_alarm_a_clean_close_without_session_is_not():
    model = live_model("chair-1", "chair-2", "chair-3")
    model.receive(topic("chair-1", "alarms"), alarms("chair-1", 1, ("spo2_low", "MEDIUM", True)), at(0))
    model.receive(topic("chair-1", "status"), status("chair-1", "offline", "connection lost"), at(2))
    model.receive(topic("chair-2", "status"), status("chair-2", "offline", "connection lost"), at(2))
    model.receive(topic("chair-3", "status"), status("chair-3", "offline", "closed"), at(2))
    found = {a.chair: a for a in model.board_alarms(at(3))}
    assert found["chair-1"].priority is Priority.HIGH and found["chair-1"].condition == "chair_offline"
    assert found["chair-2"].priority is Priority.MEDIUM
    assert "chair-3" not in found and model.tile("chair-3", at(3)).state == "closed"
    # a Vigil closed while a session is open is not the end of the day
    session = SessionInfo(session_id=4, patient_initials="A.L.", protocol="ketamine-iv", phase="infusion",
                          opened_at=at(0), elapsed_s=0)
    model.receive(topic("chair-3", "session"), encode(SessionMessage(chair="chair-3", t=at(0), session=session)), at(3))
    assert {a.chair for a in model.board_alarms(at(3))} == {"chair-1", "chair-2", "chair-3"}


def test_acknowledging_a_board_alarm_silences_it_until_it_rises():
    model = live_model("chair-1")
    model.receive(topic("chair-1", "status"), status("chair-1", "offline", "connection lost"), at(1))
    assert model.audio_priority(at(1)) is Priority.MEDIUM
    [acked] = model.acknowledge(at(2))
    assert acked.chair == "chair-1" and model.audio_priority(at(2)) is None
    assert model.board_alarms(at(2))            # still shown
    model.receive(topic("chair-1", "alarms"), alarms("chair-1", 5, ("spo2_low", "HIGH", True)), at(3))
    assert model.audio_priority(at(3)) is Priority.HIGH    # it rose: it sounds again


def test_the_board_losing_the_broker_is_one_alarm_not_one_per_chair():
    model = live_model("chair-1", "chair-2")
    model.set_connected(False, at(1))
    assert model.board_alarms(at(5)) == []
    [alarm] = model.board_alarms(at(11))
    assert alarm.condition == "board_disconnected" and alarm.chair == ""
    model.set_connected(True, at(12))
    model.receive(topic("chair-1", "vitals"), vitals("chair-1", 12), at(12))
    model.receive(topic("chair-2", "vitals"), vitals("chair-2", 12), at(12))
    assert model.board_alarms(at(12)) == []


def test_a_board_that_cannot_sound_says_so_as_a_medium_alarm_until_sound_returns():
    model = live_model("chair-1")
    model.set_audio(False, "no sound output device was found on this computer", at(1))
    [alarm] = model.board_alarms(at(2))
    assert (alarm.condition, alarm.priority, alarm.since) == ("board_audio_unavailable", Priority.MEDIUM, at(1))
    assert "no sound output device" in alarm.text
    # the same loss reported again keeps its start; with the broker lost too, both are shown
    model.set_audio(False, "no sound output device was found on this computer", at(5))
    model.set_connected(False, at(5))
    assert [a.condition for a in model.board_alarms(at(16))] == ["board_audio_unavailable", "board_disconnected"]
    assert model.board_alarms(at(16))[0].since == at(1)
    model.set_connected(True, at(17))
    model.receive(topic("chair-1", "vitals"), vitals("chair-1", 17), at(17))
    model.set_audio(True, "", at(18))
    assert model.board_alarms(at(18)) == []


def test_messages_of_another_clinic_or_naming_another_chair_are_refused():
    model = live_model("chair-1")
    assert model.receive("vigil/other/chair-1/vitals", vitals("chair-1", 1), at(1)) is None
    assert model.receive(topic("chair-2", "vitals"), vitals("chair-1", 1), at(1)) is None
    assert model.rejected == 2 and "names chair 'chair-1'" in model.last_error
    assert set(model.chairs) == {"chair-1"}


def test_acknowledge_from_the_board_only_when_allowed_live_and_unacknowledged():
    model = live_model("chair-1")
    model.receive(topic("chair-1", "alarms"), alarms("chair-1", 1, ("spo2_low", "HIGH", True)), at(1))
    assert not model.can_acknowledge("chair-1", False, at(1))
    assert model.can_acknowledge("chair-1", True, at(1))
    assert not model.can_acknowledge("chair-1", True, at(30))      # stale: not live


def test_tile_shows_numerics_trend_and_session_clock():
    model = live_model("chair-1")
    for s in range(1, 6):
        model.receive(topic("chair-1", "vitals"), vitals("chair-1", s, spo2=97 - s), at(s))
    session = SessionInfo(session_id=4, patient_initials="A.L.", protocol="ketamine-iv", phase="infusion",
                          opened_at=at(-600), elapsed_s=600)
    model.receive(topic("chair-1", "session"), encode(SessionMessage(chair="chair-1", t=at(3), session=session)), at(3))
    tile = model.tile("chair-1", at(5))
    assert tile.patient == "A.L." and tile.phase == "dosing" and tile.clock == "10:02"
    assert dict((label, text) for label, text, _ in tile.numerics)["SpO2"] == "92"
    assert [v for _, v in tile.trend] == [97, 96, 95, 94, 93, 92]


# ------------------------------------------------------------------ chair publisher (no broker)
def publisher(**kw) -> ChairPublisher:
    return ChairPublisher(BrokerOptions(parse_broker_url("mqtt://127.0.0.1:9")), "clinic", "chair-1",
                          profile=default_profile(), **kw)


def test_identical_alarm_states_are_sent_once_and_a_change_again():
    engine = AlarmEngine(default_profile())
    pub = publisher()
    pub.on_alarm_state(engine.state(at(0)))
    pub.on_alarm_state(engine.state(at(0.2)))
    assert pub.alarm_seq == 1
    engine.process([numeric("spo2", 84, "sim", at(1))])
    state = engine.state(at(1))
    pub.on_alarm_state(state)
    pub.on_alarm_state(engine.state(at(1.2)))
    assert pub.alarm_seq == 2
    message = pub._retained["alarms"]          # latest state wins: only the newest waits to be sent
    assert message.seq == 2 and message.alarms[0].condition == "spo2_low" and message.alarms[0].priority == "HIGH"
    assert "84" in message.alarms[0].text
    [event] = engine.acknowledge("ann", at(2))
    pub.on_alarm_event(event)
    pub.on_alarm_state(engine.state(at(2)))
    assert pub._retained["alarms"].alarms[0].acknowledged_by == "ann"


def test_streams_drop_the_oldest_and_waves_are_decimated_to_125_hz():
    pub = publisher(publish_waves=True, stream_queue=4)
    for second in range(10):
        chunk = WaveformChunk(channel="pleth", rate=500, start_time=at(second),
                              samples=np.sin(np.arange(500) / 20.0), source="sim")
        pub.on_batch([chunk])
    assert len(pub._stream) == 4 and pub.stats["dropped"] == 6
    kind, message = pub._stream[-1]
    [block] = message.blocks
    assert kind == "waves" and block.rate_hz == 125 and len(block.samples) == 125 and block.start == at(9)


def test_numerics_keep_the_latest_value_of_each_vital():
    pub = publisher()
    pub.on_batch([numeric("spo2", 97, "sim", at(0)), numeric("pr", 70, "sim", at(0))])
    pub.on_batch([numeric("spo2", 95, "sim", at(1))])
    assert pub._latest["spo2"].value == 95 and pub._latest["pr"].value == 70 and pub._latest["spo2"].t == at(1)


# ------------------------------------------------------------------ session snapshot
def test_snapshot_shows_initials_unless_the_clinic_allows_names():
    settings = ClinicSettings()
    state = SessionState.open(session_id="S-12", patient=Patient(display_name="Ann-Marie van Dyke", weight_kg=70),
                              plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), t=T0, by=NURSE, settings=settings)
    state.waive_pre_dose_check(T0, NURSE, "test")
    state.start_infusion(T0, NURSE)
    snap = snapshot_from_state(state, at(20 * 60), settings)
    assert snap.session_id == 12 and snap.patient_initials == "A.M.V.D." and snap.patient_name == ""
    assert snap.phase == "infusion" and snap.dose_planned_mg == 35 and snap.dose_delivered_mg == pytest.approx(17.5)
    assert snap.next_nibp_at is not None and snap.next_assessment is not None
    named = ClinicSettings(board={"show_patient_names": True})
    assert snapshot_from_state(state, at(60), named).patient_name == "Ann-Marie van Dyke"
    assert patient_initials("123") == "?"


# ------------------------------------------------------------------ settings and profile
def test_board_settings_are_off_by_default_and_bounded():
    settings = ClinicSettings()
    assert settings.board.publish_url == "" and not settings.board.allow_acknowledge
    charge = Actor(username="cn", display_name="Charge Nurse", role=Role.CHARGE_NURSE)
    with pytest.raises(SettingsError, match="needs a chair name"):
        update_settings(settings, {"board.publish_url": "mqtts://board.local:8883"}, charge)
    with pytest.raises(SettingsError, match="keep-alive 30 s"):
        update_settings(settings, {"board.keepalive_s": 30}, charge)
    with pytest.raises(SettingsError, match="mqtt://"):
        update_settings(settings, {"board.publish_url": "http://x", "board.chair": "c1"}, charge)
    ok = update_settings(settings, {"board.publish_url": "mqtts://board.local:8883", "board.chair": "chair-1"}, charge)
    assert ok.board.chair == "chair-1"
    assert "board" not in ok.to_payload()          # a session record's copy of the settings leaves it out
    assert ClinicSettings.from_payload(ok.to_payload()).board == ClinicSettings().board


def test_board_unreachable_is_a_low_technical_rule_added_to_old_profiles():
    profile = default_profile()
    [rule] = [r for r in profile.rules if r.id == "board_unreachable"]
    assert rule.priority is Priority.LOW and rule.codes == ("board_unreachable",)
    data = json.loads(json.dumps(profile.model_dump(mode="json")))
    data["schema_version"] = 1
    data["rules"] = [r for r in data["rules"] if r["id"] != "board_unreachable"]
    migrated, changes = migrate_profile_data(data)
    assert "rule 'board_unreachable' added from the shipped default" in changes
    assert any(r["id"] == "board_unreachable" for r in AlarmProfile.model_validate(migrated).model_dump(mode="json")["rules"])
    engine = AlarmEngine(profile)
    [event] = engine.set_technical("board_unreachable", True, at(0), "Clinic board unreachable")
    assert event.priority is Priority.LOW and engine.state(at(1)).audio_priority is None


# ------------------------------------------------------------------ command line
def test_command_line_refuses_bad_broker_options_before_anything_starts(tmp_path, monkeypatch):
    import io

    from monitor.cli import run_cli

    monkeypatch.setenv("VIGIL_CONFIG_DIR", str(tmp_path))
    err = io.StringIO()
    assert run_cli(["board", "--broker", "http://x:1"], window=lambda a: 0, err=err) == 2
    assert "mqtt:// or mqtts://" in err.getvalue()
    err = io.StringIO()
    assert run_cli(["run", "--publish", "mqtts://u:secret@h:8883", "--chair", "c1"], window=lambda a: 0, err=err) == 2
    assert "never in the URL" in err.getvalue() and "secret" not in err.getvalue()
    err = io.StringIO()
    status = run_cli(["record", "--device", "sim://", "--duration", "5", "--db", str(tmp_path / "v.sqlite"),
                      "--publish", "mqtts://127.0.0.1:8883"], err=err)
    assert status == 2 and "needs a chair name" in err.getvalue()
    assert not (tmp_path / "v.sqlite").exists()          # nothing recorded with a bad option
