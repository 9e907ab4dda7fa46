"""Issue 9 §1: alarms belong to one patient (the window's recording service, several patients in a row).

The device is fed by hand (the simulated channel is never started), so every time is exact.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from drivers.model import numeric
from monitor.alarms.profile import default_profile
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.app.recorder import BEFORE_SESSION
from tests.factories import make_service, sign_in
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore

ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)


@pytest.fixture
def service(qtbot, tmp_path):
    store = SessionStore(tmp_path / "s.sqlite")
    svc = make_service("sim://?scenario=normal", store, ClinicSettings(), default_profile(),
                           tick_s=3_600_000/1000)
    yield svc
    svc.shutdown()
    store.close()


def feed(service, t, **values):
    base = {"hr": 80, "pr": 80, "spo2": 97, "rr": 14, "etco2": 36}
    base.update(values)
    service.pipeline.feed([numeric(k, v, "sim", t) for k, v in base.items()])


def cuff(service, t, sys_, dia):
    service.pipeline.feed([numeric("nibp_sys", sys_, "sim", t), numeric("nibp_dia", dia, "sim", t),
                       numeric("nibp_mean", round(dia + (sys_ - dia) / 3), "sim", t)])


def open_session(service, name, t):
    """Start a session; return its recorder (for its id and state)."""
    service.start_session(Patient(display_name=name, weight_kg=70), KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70),
                                 ANN, t=t)
    return service.pipeline.recorder


def cuffed_session(service, cuff_at: int):
    """Patient A's session fed normal vitals each second up to ``cuff_at``, where the monitor's cuff
    reads 124/78; returns ``sec(s)``, the time ``s`` seconds after the session opened."""
    t0 = service.now()
    sec = lambda s: t0 + timedelta(seconds=s)  # noqa: E731
    open_session(service, "Patient A", sec(0))
    for s in range(1, cuff_at):
        feed(service, sec(s))
    cuff(service, sec(cuff_at), 124, 78)
    return sec


def test_the_next_patient_inherits_no_alarm_baseline_or_confirmation(service, caplog):
    caplog.set_level(logging.WARNING, logger="monitor.app.recorder")
    t0 = service.now()
    sec = lambda s: t0 + timedelta(seconds=s)  # noqa: E731
    a = open_session(service, "Patient A", sec(0))
    for s in range(1, 120):
        feed(service, sec(s))
    cuff(service, sec(100), 120, 80)                        # A's pre-dose BP
    service.start_infusion(ANN, t=sec(120))            # A's baseline: 120/80, HR 80
    for s in range(121, 400):
        feed(service, sec(s))
    cuff(service, sec(400), 186, 112)                       # BP high, 55 % above A's baseline
    shown = {al.condition for al in service.alarm_state().alarms}
    assert {"nibp_high", "sbp_rise"} <= shown
    service.stop_infusion(ANN, "hypertension", t=sec(410))
    service.abort_session(sign_in(service, ANN), "hypertension: treatment deferred")

    # patient B sits down; her SpO2 is low before her session is started
    for s in range(420, 440):
        feed(service, sec(s), spo2=85)
    b = open_session(service, "Patient B", sec(440))
    for s in range(441, 470):
        feed(service, sec(s), spo2=85)
    state = service.alarm_state()
    shown = {al.condition for al in state.alarms}
    assert "nibp_high" not in shown and "sbp_rise" not in shown
    assert service.pipeline.engine.baseline == {}
    assert shown == {"spo2_low"}
    # B's first high reading is a first reading: MEDIUM, not confirmed by A's
    cuff(service, sec(500), 186, 112)
    [bp] = [al for al in service.alarm_state().alarms if al.condition == "nibp_high"]
    assert bp.priority.name == "MEDIUM"

    service.pipeline.writer.flush(10)
    rows_b = service.pipeline.store.alarms(b.session_id)
    active_b = {r.condition for r in rows_b if r.ended_at is None}
    assert active_b == {al.condition for al in service.alarm_state().alarms if al.active}
    [spo2] = [r for r in rows_b if r.condition == "spo2_low"]
    assert spo2.started_at == sec(420) and BEFORE_SESSION in spo2.message
    rows_a = service.pipeline.store.alarms(a.session_id)
    assert {"nibp_high", "sbp_rise"} <= {r.condition for r in rows_a}
    assert all(r.ended_at is not None and r.ended_at <= sec(410) + timedelta(seconds=1) for r in rows_a)
    assert not [r for r in caplog.records if "not in the log" in r.getMessage()]


def test_a_bp_entered_by_hand_is_a_reading_stored_judged_and_shown(service, qtbot):
    t0 = service.now()
    recorder = open_session(service, "Patient C", t0)
    seen = []
    service.batch_received.connect(seen.extend)   # delivered queued, as to the window
    feed(service, t0 + timedelta(seconds=5))
    service.record_nibp(188, 114, ANN, t=t0 + timedelta(seconds=10))
    qtbot.waitUntil(lambda: any(o.vital.startswith("nibp_") for o in seen), timeout=5000)
    manual = [o for o in seen if o.vital.startswith("nibp_")]
    assert {(o.vital, o.value) for o in manual} == {("nibp_sys", 188.0), ("nibp_dia", 114.0)}
    assert all("manual" in {q.value for q in o.quality} for o in manual)
    assert [al.condition for al in service.alarm_state().alarms] == ["nibp_high"]
    service.pipeline.writer.flush(10)
    stored = service.pipeline.store.observations(recorder.session_id, "nibp_sys")
    assert [(o.value, o.source.startswith("manual")) for o in stored] == [(188.0, True)]


def test_a_bp_entered_by_hand_is_in_review_and_every_export(service, tmp_path):
    """Issue 9 §5: the manual reading is in the numerics the review strip and cursor read, and in
    the exports' numerics, not only in the record of entries."""
    import csv
    import io
    import zipfile

    from monitor.export import export_session
    from monitor.app.review import load_numerics, reading_before

    t0 = service.now()
    recorder = open_session(service, "Patient D", t0)
    t = t0 + timedelta(seconds=20)
    service.record_nibp(144, 92, ANN, t=t)
    service.abort_session(sign_in(service, ANN), "test")
    service.pipeline.writer.flush(10)
    series = load_numerics(service.pipeline.store, recorder.session_id, "nibp_sys")
    reading = reading_before(series, (t + timedelta(seconds=5)).timestamp())
    assert reading is not None and reading.value == 144
    path = export_session(service.pipeline.store, recorder.session_id, "csv", tmp_path / "x.zip")
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("numerics_long.csv"))
        rows = list(csv.DictReader(io.StringIO(z.read(name).decode("utf-8-sig"))))
    manual = [r for r in rows if r["vital"] == "nibp_sys"]
    assert [float(r["value"]) for r in manual] == [144.0]


def test_a_cuff_reading_from_the_monitor_counts_in_the_live_session(service):
    """The session the screens see (the pipeline's replica) learns a device NIBP reading when it arrives:
    the pre-dose BP, the NIBP schedule and discharge read it (they saw none: "NIBP due" beside a
    reading taken just now, and a nurse re-typing the monitor's BP by hand)."""
    sec = cuffed_session(service, 60)
    feed(service, sec(61))
    view = service.pipeline.session_view()
    assert [(r.sys, r.dia, r.source) for r in view.nibp_readings] == [(124, 78, "device")]
    assert view.pre_dose_bp()[:2] == (124, 78)
    service.start_infusion(ANN, t=sec(90))      # no manual BP needed: the monitor's reading is the pre-dose BP
    assert service.pipeline.session_view().infusion is not None


def test_dosing_cannot_start_during_a_high_alarm_without_a_recorded_reason(service):
    """Found on a fresh clone: the infusion started at SpO2 85 % during a HIGH alarm with no word.
    The safer reading of the pre-dose rules: like the BP advisory, it needs a decision, recorded."""
    from monitor.session import DosingDuringAlarm

    sec = cuffed_session(service, 30)
    for s in range(31, 40):
        feed(service, sec(s), spo2=84)                  # HIGH: SpO2 < 88 %, no delay
    assert any(a.condition == "spo2_low" and a.priority.name == "HIGH" for a in service.alarm_state().alarms)
    with pytest.raises(DosingDuringAlarm, match="SpO2 low 84"):
        service.start_infusion(ANN, t=sec(40))
    view = service.pipeline.session_view()
    assert view.dosing_started_at is None and not view.events()          # nothing recorded
    service.start_infusion(ANN, alarm_reason="probe off the finger, SpO2 98 % on the spot check", t=sec(41))
    view = service.pipeline.session_view()
    assert view.dosing_started_at == sec(41)
    [note] = view.events()
    assert note.event.text.startswith("Dosing started during a HIGH alarm (SpO2 low 84")
    assert note.event.text.endswith("probe off the finger, SpO2 98 % on the spot check")
    for s in range(42, 50):
        feed(service, sec(s), spo2=84)
    service.pause_infusion(ANN, "desaturation", t=sec(50))
    service.resume_infusion(ANN, t=sec(60))             # not the start of dosing: no reason asked
