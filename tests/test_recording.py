"""Recording: accelerated two-hour sessions of every scenario through the recorder, the store and
the alarm engine; crash and resume; the `vigil record` / `vigil sessions` command-line contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from drivers.base import ConditionTracker
from drivers.model import DeviceCondition
from drivers.simulator.device import step_items
from drivers.simulator.physiology import PhysiologyModel
from monitor.alarms.profile import default_profile
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.app.recorder import SessionRecorder
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore, StoreError, StoreWriter
from tests.factories import act

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
NURSE = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)


def record_scenario(tmp_path: Path, scenario: str, seconds: float = 7200, dt: float = 5.0):
    """Drive a whole session from the simulated patient, as fast as the machine goes.

    The acquisition worker's part (connection_lost while the simulated cable is out) is played by
    a few lines here, so that time stays exactly on the simulated clock.
    """
    store = SessionStore(tmp_path / f"{scenario}.sqlite")
    writer = StoreWriter(store)
    writer.start()
    model = PhysiologyModel(scenario, seed=7, start=T0, waves=False)
    patient = Patient(display_name="Sim Patient", weight_kg=70)
    recorder = SessionRecorder.start(store, writer, patient=patient, plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70),
                                     device=f"sim://?scenario={scenario}", actor=NURSE, t=T0,
                                     settings=ClinicSettings(), profile=default_profile())
    act(recorder, "waive_pre_dose_check", T0, NURSE, "accelerated test")
    act(recorder, "start_infusion", T0, NURSE)
    tracker = ConditionTracker("sim")
    lost = False
    baseline_done = False
    while model.t < seconds:
        step = model.advance(dt)
        now = model.now()
        if model.t >= 40 * 60 and recorder.state.infusion.ended_at is None:
            # the nurse stops the pump when the planned dose is in (no "dose reached" reminder)
            act(recorder, "stop_infusion", now, NURSE, "planned dose given")
        if step.disconnected != lost:
            lost = step.disconnected
            recorder.on_items([DeviceCondition(code="connection_lost", active=lost, source="sim", time=now)])
        if not lost:
            recorder.on_items(step_items(step, "sim", tracker))
        recorder.tick(now)
        if not baseline_done and model.t >= 60:
            baseline_done = True
            act(recorder, "record_baseline_from_start", now, NURSE)
    recorder.finish(model.now(), signed_name="Ann Lee", meaning="reviewed and closed")
    assert writer.stop(30)
    alarms = store.alarms(recorder.session_id)
    summary = [(a.condition, a.priority, a.max_priority, round((a.started_at - T0).total_seconds() / 60, 1),
                round((a.ended_at - T0).total_seconds() / 60, 1) if a.ended_at else None) for a in alarms]
    return store, recorder.session_id, summary


def minutes(summary, condition):
    return [row for row in summary if row[0] == condition]


def test_normal_session_has_no_alarm(tmp_path):
    store, sid, summary = record_scenario(tmp_path, "normal")
    assert summary == []
    session = store.get_session(sid)
    assert session.status == "closed" and store.verify_audit().ok
    assert store.list_sessions()[0].n_observations > 7 * 7000
    store.close()


def test_hypertensive_surge_raises_the_nibp_alarm_near_40_minutes(tmp_path):
    store, sid, summary = record_scenario(tmp_path, "hypertensive_surge")
    nibp = minutes(summary, "nibp_high")
    assert nibp, summary
    first = nibp[0]
    assert first[1] == "LOW" and 18 <= first[3] <= 30          # advisory first
    assert first[2] == "HIGH"                                     # confirmed later
    high_at = [a for a in store.alarms(sid) if a.condition == "nibp_high"][0]
    escalations = [(x.detail, round((x.t - T0).total_seconds() / 60, 1)) for x in high_at.actions if x.action == "escalate"]
    assert [d for d, _ in escalations] == ["MEDIUM", "HIGH"]
    assert 30 <= escalations[0][1] <= 40 and 33 <= escalations[1][1] <= 44   # HIGH near 40 min
    assert minutes(summary, "sbp_rise")                           # 30 % over the baseline too
    store.close()


def test_desaturation_raises_the_spo2_alarms(tmp_path):
    store, sid, summary = record_scenario(tmp_path, "desaturation")
    spo2 = minutes(summary, "spo2_low")
    assert len(spo2) == 2, summary
    first, second = spo2
    assert first[1] == "MEDIUM" and first[2] == "HIGH" and 12 <= first[3] <= 13.5 and 15 <= first[4] <= 18.5
    assert second[2] == "MEDIUM" and 45 <= second[3] <= 47
    store.close()


def test_bradycardia_and_tachycardia(tmp_path):
    _, _, summary = record_scenario(tmp_path, "bradycardia", seconds=1800)
    low = minutes(summary, "hr_low")
    assert low and low[0][1] == "MEDIUM" and low[0][2] == "HIGH" and 15 <= low[0][3] <= 16.5
    _, _, summary = record_scenario(tmp_path, "tachycardia", seconds=1800)
    high = minutes(summary, "hr_high")
    assert high and high[0][1] == "MEDIUM" and high[0][2] == "HIGH" and 10 <= high[0][3] <= 11.5


def test_apnea_raises_no_breath(tmp_path):
    _, _, summary = record_scenario(tmp_path, "apnea", seconds=1800)
    assert minutes(summary, "rr_low") and 25 <= minutes(summary, "rr_low")[0][3] <= 27.5
    no_breath = minutes(summary, "no_breath")
    assert no_breath and no_breath[0][1] == "HIGH" and 27.4 <= no_breath[0][3] <= 27.7


def test_sensor_off_and_motion_artifact(tmp_path):
    _, _, summary = record_scenario(tmp_path, "sensor_off", seconds=1800)
    assert [(c, p, s, e) for c, p, _, s, e in summary] == [("sensor_off", "MEDIUM", 15.0, 16.5)]
    _, _, summary = record_scenario(tmp_path, "motion_artifact", seconds=2400)
    assert summary == []  # erratic readings during motion are flagged, never alarmed on


def test_cable_pull_raises_the_technical_alarm(tmp_path):
    store, sid, summary = record_scenario(tmp_path, "cable_pull", seconds=1800)
    assert [(c, p, mp, s, e) for c, p, mp, s, e in summary] == [("connection_lost", "MEDIUM", "HIGH", 20.0, 21.5)]
    [alarm] = store.alarms(sid)
    assert alarm.kind == "technical"
    [escalation] = [x for x in alarm.actions if x.action == "escalate"]
    assert escalation.t == T0 + timedelta(minutes=21)  # MEDIUM → HIGH after 60 s
    store.close()


# ------------------------------------------------------------------ the command line
def vigil(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def assert_served_desaturation_recorded(result: subprocess.CompletedProcess) -> None:
    """``vigil record`` from a served monitor's desaturation: it ended well, raised SpO2 low, never lost
    the link, and closed the session."""
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    started = [x for x in lines if x["event"] == "alarm_started"]
    assert any(x["condition"] == "spo2_low" for x in started), lines
    assert not any(x["condition"] in ("connection_lost", "stale_data") for x in started)
    assert lines[-1]["event"] == "session_closed"


@pytest.mark.slow
def test_vigil_record_prints_alarms_and_closes(tmp_path):
    db = tmp_path / "v.sqlite"
    result = vigil("record", "--device", "sim://?scenario=desaturation&speed=600&waves=0", "--duration", "1200",
                   "--patient", "Jo Doe", "--weight", "72", "--db", str(db))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    started = [x for x in lines if x["event"] == "alarm_started"]
    assert started and started[0]["condition"] == "spo2_low" and started[0]["priority"] == "MEDIUM"
    assert started[0]["limit"] == 91.0 and started[0]["value"] <= 91
    assert any(x["event"] == "alarm_escalated" and x["priority"] == "HIGH" and x["limit"] == 88.0 for x in lines)
    assert any(x["event"] == "alarm_ended" and x["condition"] == "spo2_low" for x in lines)
    assert set(started[0]) == {"event", "condition", "priority", "value", "limit", "t"}
    datetime.fromisoformat(started[0]["t"])
    assert lines[-1]["event"] == "session_closed"
    session_id = lines[-1]["session"]
    listing = vigil("sessions", "--db", str(db), "--json")
    [row] = [json.loads(line) for line in listing.stdout.splitlines()]
    assert row["id"] == session_id and row["patient"] == "Jo Doe" and row["protocol"] == "ketamine-iv"
    assert row["status"] == "closed" and row["n_alarms"] >= 1 and row["n_observations"] > 1000
    assert {"id", "patient", "protocol", "status", "started_at", "ended_at", "n_observations", "n_alarms"} <= set(row)
    started_at, ended_at = datetime.fromisoformat(row["started_at"]), datetime.fromisoformat(row["ended_at"])
    assert 1195 <= (ended_at - started_at).total_seconds() <= 1300
    text = vigil("sessions", "--db", str(db))
    assert "Jo Doe" in text.stdout and "closed" in text.stdout


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [
    (["--weight", "700"], "Weight 700 kg is outside 30–250 kg"),
    (["--weight", "heavy"], "weight (kg) must be a number"),
    (["--dose", "5"], "mg/kg"),
    (["--duration", "0"], "duration (seconds) 0 is outside"),
    (["--protocol", "oral"], "protocol must be ketamine-iv or esketamine"),
    (["--device", "/dev/ttyUSB9"], "say which protocol"),
])
def test_vigil_record_refuses_bad_input(tmp_path, args, message):
    base = {"--device": "sim://?speed=100", "--duration": "10", "--db": str(tmp_path / "v.sqlite")}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    result = vigil("record", *[x for kv in base.items() for x in kv])
    assert result.returncode != 0 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_malformed_clinic_profile_is_refused_clearly(tmp_path):
    (tmp_path / "alarm_profile.json").write_text('{"name": "x", "rules": [{"kind": "limit"}]}')
    result = vigil("record", "--device", "sim://?speed=100", "--duration", "5", "--db", str(tmp_path / "v.sqlite"),
                   env={"VIGIL_CONFIG_DIR": str(tmp_path)})
    assert result.returncode == 2 and "alarm_profile.json is invalid" in result.stderr


@pytest.mark.slow
def test_sigkill_then_resume_keeps_everything_and_marks_a_gap(tmp_path):
    db = tmp_path / "crash.sqlite"
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "record", "--device", "sim://?scenario=normal&speed=1",
                             "--duration", "3600", "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if db.exists():
                try:
                    with SessionStore(db, readonly=True) as ro:
                        sessions = ro.list_sessions()
                except StoreError:  # the recorder is still creating the file's schema
                    sessions = []
                if sessions and sessions[0].n_observations > 60:
                    break
            time.sleep(0.3)
        time.sleep(2.3)
        killed_at = datetime.now(timezone.utc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert Path(f"{db}.tail").exists()  # what was not committed yet is in the tail file
    with SessionStore(db) as rw:  # the next read-write opening (a resume does it) stores the tail
        [session] = rw.open_sessions()
        last_numeric = max(rw.numerics(session.id, "hr")[0])
        ecg = rw.waveform(session.id, "ecg", session.started_at, killed_at + timedelta(seconds=5))
        last_wave = ecg.t[-1]
    # everything produced up to one second before the kill is on disk (numerics come once a second),
    # the waveform without a hole from the start of the session
    assert killed_at.timestamp() - last_wave <= 1.5
    assert ecg.t[0] - session.started_at.timestamp() < 1.0 and np.diff(ecg.t).max() < 1.5 / 250
    assert killed_at.timestamp() - last_numeric <= 2.5
    result = vigil("record", "--device", "sim://?scenario=normal&speed=20", "--duration", "20", "--db", str(db), "--resume")
    assert result.returncode == 0, result.stderr
    assert f"resuming session {session.id}" in result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"event": "session_closed", "session": session.id}
    with SessionStore(db, readonly=True) as ro:
        [gap] = ro.gaps(session.id)
        assert abs(gap.start.timestamp() - max(last_wave, last_numeric)) < 0.5 and gap.end > killed_at
        assert ro.get_session(session.id).status == "closed"
        assert len(ro.list_sessions()) == 1
        check = ro.verify_audit()
        assert check.ok, check
        assert any(row.action == "session_resumed" for row in ro.audit_rows(session.id))
        assert max(ro.numerics(session.id, "hr")[0]) > gap.end.timestamp()


def test_running_past_the_planned_dose_raises_dose_reached_until_the_pump_is_stopped(tmp_path):
    store = SessionStore(tmp_path / "dose.sqlite")
    writer = StoreWriter(store)
    writer.start()
    plan = KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70)       # 35 mg over 40 min
    recorder = SessionRecorder.start(store, writer, patient=Patient(display_name="P", weight_kg=70), plan=plan,
                                     device="test", actor=NURSE, t=T0, settings=ClinicSettings(),
                                     profile=default_profile())
    act(recorder, "waive_pre_dose_check", T0, NURSE, "test")
    act(recorder, "start_infusion", T0, NURSE)
    assert recorder.tick(T0 + timedelta(minutes=39)) == []
    events = recorder.tick(T0 + timedelta(minutes=41))              # a tick after the dose was reached
    [reached] = [e for e in events if e.condition == "dose_reached"]
    assert (reached.event, reached.priority.name, reached.t) == ("started", "MEDIUM", T0 + timedelta(minutes=40))
    assert "stop the infusion" in reached.message
    act(recorder, "pause_infusion", T0 + timedelta(minutes=42), NURSE, "dose in")
    events = recorder.tick(T0 + timedelta(minutes=42))
    assert [e.event for e in events if e.condition == "dose_reached"] == ["ended"]
    recorder.finish(T0 + timedelta(minutes=43), signed_name="Ann Lee", meaning="test")
    writer.stop(10)
    [row] = [a for a in store.alarms(recorder.session_id) if a.condition == "dose_reached"]
    assert row.priority == "MEDIUM" and row.started_at == T0 + timedelta(minutes=40)
    store.close()


def test_resuming_with_a_device_clock_behind_the_record_rebases_instead_of_interleaving(tmp_path):
    """Issue 9 §5: a session recorded from a simulator running 10x faster than real time, then resumed
    on a clock behind its last data (a restarted simulator, a monitor with a wrong clock)."""
    db = tmp_path / "ahead.sqlite"
    store = SessionStore(db)
    writer = StoreWriter(store)
    writer.start()
    model = PhysiologyModel("normal", seed=3, start=T0, waves=False)
    recorder = SessionRecorder.start(store, writer, patient=Patient(display_name="P", weight_kg=70),
                                     plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), device="sim", actor=NURSE,
                                     t=T0, settings=ClinicSettings(), profile=default_profile())
    tracker = ConditionTracker("sim")
    while model.t < 600:                                  # ten minutes of data, recorded in one
        recorder.on_items(step_items(model.advance(5.0), "sim", tracker))
    assert writer.stop(30)                                # Vigil stops without closing: a crash
    store.close()

    store = SessionStore(db)
    writer = StoreWriter(store)
    writer.start()
    device_now = T0 + timedelta(seconds=60)               # the restarted device's clock is 9 min behind
    resumed = SessionRecorder.resume(store, writer, recorder.session_id, actor=NURSE, now=device_now,
                                     settings=ClinicSettings(), profile=default_profile())
    assert resumed.time_offset == timedelta(seconds=540, milliseconds=1)
    model2 = PhysiologyModel("normal", seed=4, start=device_now, waves=False)
    while model2.t < 120:
        resumed.on_items(resumed.rebase(step_items(model2.advance(5.0), "sim", ConditionTracker("sim"))))
    resumed.finish(T0 + timedelta(seconds=730), signed_name="Ann Lee", meaning="test")
    assert writer.stop(30)
    times, _ = store.numerics(recorder.session_id, "hr")
    assert (np.diff(times) > 0).all()                     # one timeline: never two streams interleaved
    [gap] = store.gaps(recorder.session_id)
    assert gap.start == T0 + timedelta(seconds=600) and gap.end == gap.start + timedelta(milliseconds=1)  # never negative
    assert "re-based by +540.0 s" in gap.reason
    assert times[-1] > (T0 + timedelta(seconds=600)).timestamp()
    audit = [r for r in store.audit_rows(recorder.session_id) if r.action == "session_resumed"]
    assert audit and audit[0].payload["rebased_s"] == 540.001
    store.close()
