"""The Qt recording service: a live simulated device, alarms as they arrive, a session in the store."""

from __future__ import annotations

import pytest

from monitor.alarms.profile import Priority, default_profile
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from tests.factories import make_service, sign_in
from monitor.session import SessionError
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore

ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)


@pytest.fixture
def service(qtbot, tmp_path):
    store = SessionStore(tmp_path / "s.sqlite")
    svc = make_service("sim://?scenario=desaturation&speed=240&waves=0", store, ClinicSettings(), default_profile(), tick_s=0.05)
    svc.start()
    yield svc
    svc.shutdown()
    store.close()


@pytest.mark.slow  # real-time acquisition until an alarm
def test_alarms_run_before_a_session_and_are_logged_with_one(qtbot, service):
    events = []
    service.alarm_event.connect(events.append)
    with qtbot.waitSignal(service.batch_received, timeout=5000):
        pass
    service.start_session(Patient(display_name="Jo Doe", weight_kg=70), KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70),
                          ANN)
    recorder = service.pipeline.recorder
    service.waive_pre_dose_check(ANN, "test")
    service.start_infusion(ANN)
    qtbot.waitUntil(lambda: any(e.event == "started" and e.condition == "spo2_low" for e in events), timeout=15000)
    state = service.alarm_state()
    assert state.visual_priority in (Priority.MEDIUM, Priority.HIGH)
    service.acknowledge(ANN)
    after = service.alarm_state()
    assert after.alarms and all(a.acknowledged for a in after.alarms if a.active)
    assert after.audio_priority is None and after.visual_priority == state.visual_priority
    service.pipeline.writer.flush(10)
    rows = service.pipeline.store.alarms(recorder.session_id)
    assert rows and rows[0].condition == "spo2_low"
    assert any(action.action == "acknowledge" and action.user == "ann" for row in rows for action in row.actions)
    entries = service.pipeline.store.entries(recorder.session_id, order="recorded")
    assert [e.payload["type"] for e in entries][:4] == ["session_opened", "alarm_limits", "pre_dose_waiver",
                                                            "infusion_step"]


def test_abort_ends_the_session_read_only(qtbot, service):
    with qtbot.waitSignal(service.batch_received, timeout=5000):
        pass
    service.start_session(Patient(display_name="Jo Doe", weight_kg=70), KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70),
                          ANN)
    recorder = service.pipeline.recorder
    with pytest.raises(ValueError, match="already being recorded"):
        service.start_session(Patient(display_name="X", weight_kg=70), KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), ANN)
    service.abort_session(sign_in(service, ANN), "patient declined")
    assert service.pipeline.recorder is None
    record = service.pipeline.store.get_session(recorder.session_id)
    assert record.status == "aborted" and record.signed_name == "Ann Lee"


def test_an_hl7_link_expects_each_patient_in_turn_and_is_released_between_them(qtbot, service):
    """The second patient at a chair fed over HL7: the link must not keep refusing messages for
    the previous patient's record number (nor keep one when the next patient has none)."""
    asked: list[str | None] = []
    service.pipeline.link.set_expected_patient = lambda bed=None, patient=None: asked.append(patient)
    plan = KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70)
    service.start_session(Patient(display_name="First", weight_kg=70, mrn="MRN-1"), plan, ANN)
    service.abort_session(sign_in(service, ANN), "patient declined")
    service.start_session(Patient(display_name="Second", weight_kg=70), plan, ANN)
    service.abort_session(sign_in(service, ANN), "patient declined")
    assert asked == ["MRN-1", None, None, None]


def test_naming_the_patient_keeps_the_bed_of_the_device_url():
    from drivers.transport import open_link, parse_device_url

    link = open_link(parse_device_url("mllp://127.0.0.1:0?protocol=hl7&bed=3"))   # not opened: no socket
    link.set_expected_patient(patient="MRN-1")
    assert link.gate.expected == "bed 3; patient mrn-1"
    link.set_expected_patient(patient=None)
    assert link.gate.expected == "bed 3"


def test_a_manual_pre_dose_bp_with_one_pressure_is_refused_with_what_is_missing(qtbot, service):
    """A systolic without its diastolic (or the reverse) is refused by name and stores nothing."""
    with qtbot.waitSignal(service.batch_received, timeout=5000):
        pass
    for half in ({"nibp_sys": 128.0}, {"nibp_dia": 79.0}):
        with pytest.raises(SessionError, match="both the systolic and the diastolic"):
            service.start_session(Patient(display_name="Jo Doe", weight_kg=70),
                                  KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), ANN, manual_baseline=half)
        assert service.pipeline.recorder is None
    assert service.pipeline.store.list_sessions() == []
