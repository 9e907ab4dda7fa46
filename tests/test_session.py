"""Patient, dosing plans and logs, schedule and the session aggregate, driven with injected times."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from pydantic import ValidationError

from drivers.model import Quality, numeric
from monitor.assessments import CADSS6, MOAAS, ModifiedAldrete, Nausea, Note, PainNRS, RescueMedication
from monitor.patient import Patient, Sex, age_on
from monitor.protocols import (
    EsketaminePlan, InfusionError, InfusionLog, InfusionStatus, KetamineIVPlan, NasalDeviceError, NasalDeviceLog,
)
from monitor.schedule import (
    DueStatus, ScheduleConfig, continuous_spo2_required, due_items, next_nibp_due, nibp_interval_min,
)
from monitor.session import (
    ALLOWED_TRANSITIONS, NibpReading, Phase, PhaseError, SessionError, SessionState, check_transition,
    compute_baseline, pre_dose_bp,
)
from monitor.settings import ClinicSettings
from monitor.staff import Actor, PermissionDenied, RefusedAction, Role, clock

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
CARA = Actor(username="cara", display_name="Cara Diaz", role=Role.CHARGE_NURSE)
SETTINGS = ClinicSettings()
ALDRETE_10 = ModifiedAldrete(activity=2, respiration=2, circulation=2, consciousness=2, oxygen_saturation=2)
ALDRETE_8 = ModifiedAldrete(activity=2, respiration=2, circulation=1, consciousness=1, oxygen_saturation=2)


def at(minutes: float) -> datetime:
    """T0 + minutes."""
    return T0 + timedelta(minutes=minutes)


def patient(**changes) -> Patient:
    data = dict(display_name="Jo Doe", mrn="MRN-001", date_of_birth=date(1980, 5, 17), sex=Sex.FEMALE,
                weight_kg=70, known_hypertension=False, prior_sessions=5)
    data.update(changes)
    return Patient(**data)


def iv_plan(**changes) -> KetamineIVPlan:
    return KetamineIVPlan(**{"dose_mg_per_kg": 0.5, "weight_kg": 70, "duration_min": 40, **changes})


def due(state: SessionState, minutes: float) -> dict[str, DueStatus]:
    """key → status of everything due at T0 + minutes."""
    return {item.key: item.status for item in due_items(state, at(minutes))}


def esc(t: datetime) -> str:
    return re.escape(clock(t))


# =========================================================================== patient

def test_patient_validation_and_age():
    p = patient()
    assert p.age_on(date(2026, 5, 16)) == 45 and p.age_on(date(2026, 5, 17)) == 46
    assert age_on(date(2000, 2, 29), date(2018, 2, 28)) == 17 and age_on(date(2000, 2, 29), date(2018, 3, 1)) == 18
    assert Patient.from_payload(p.to_payload()) == p
    assert patient(mrn="  ").mrn is None


@pytest.mark.parametrize("changes, message", [
    ({"weight_kg": 700}, "Weight 700 kg is outside 30–250 kg"),
    ({"weight_kg": 12.5}, "Weight 12.5 kg is outside 30–250 kg"),
    ({"display_name": "  "}, "patient's name"),
    ({"mrn": "12 34"}, "Record number"),
    ({"date_of_birth": date(1850, 1, 1)}, "before 1900"),
    ({"prior_sessions": -1}, "Prior sessions -1"),
    ({"sex": "yes"}, "sex"),
])
def test_impossible_patients_are_refused(changes, message):
    with pytest.raises(ValidationError, match=message):
        patient(**changes)


def test_age_checks_use_the_session_date_and_the_clinic_minimum():
    minor = patient(date_of_birth=date(2008, 3, 3))
    with pytest.raises(RefusedAction, match="Patient is 17 years old; this clinic treats patients aged 18 or over"):
        minor.check_age(date(2026, 3, 2))
    assert minor.check_age(date(2026, 3, 3)) == 18
    assert minor.check_age(date(2026, 3, 2), min_age_years=16) == 17
    with pytest.raises(RefusedAction, match="in the future"):
        patient(date_of_birth=date(2030, 1, 1)).check_age(date(2026, 3, 2))


# =========================================================================== IV plan and infusion log

def test_iv_plan_derived_values():
    plan = iv_plan()
    assert plan.dose_mg == pytest.approx(35.0)
    assert plan.rate_mg_per_h == pytest.approx(52.5)
    assert plan.rate_mg_per_kg_per_h == pytest.approx(0.75)
    assert plan.describe() == "0.5 mg/kg × 70 kg = 35.0 mg over 40 min (52.5 mg/h)"
    assert KetamineIVPlan.from_payload(plan.to_payload()) == plan
    clinic = KetamineIVPlan.for_clinic(SETTINGS, weight_kg=80)
    assert (clinic.dose_mg_per_kg, clinic.duration_min, clinic.dose_bounds_mg_per_kg) == (0.5, 40, (0.1, 1.5))


@pytest.mark.parametrize("changes, message", [
    ({"dose_mg_per_kg": 2.0}, "Dose 2 mg/kg is outside this clinic's 0.1–1.5 mg/kg"),
    ({"dose_mg_per_kg": 0.05}, "Dose 0.05 mg/kg is outside"),
    ({"dose_mg_per_kg": float("nan")}, "Dose nan mg/kg is outside"),
    ({"weight_kg": 700}, "Weight 700 kg is outside 30–250 kg"),
    ({"duration_min": 5}, "Infusion duration 5 min is outside 10–240 min"),
    ({"duration_min": 300}, "Infusion duration 300 min is outside 10–240 min"),
    ({"dose_bounds_mg_per_kg": (0.1, 5.0)}, "must lie within 0.05–2 mg/kg"),
    ({"dose_bounds_mg_per_kg": (0.8, 1.2), "dose_mg_per_kg": 0.5}, "outside this clinic's 0.8–1.2"),
])
def test_impossible_plans_are_refused(changes, message):
    with pytest.raises(ValidationError, match=message):
        iv_plan(**changes)


def test_infusion_log_integrates_running_time_only():
    log = InfusionLog(iv_plan())
    assert log.status is InfusionStatus.NOT_STARTED and log.remaining_min(T0) == pytest.approx(40)
    log.start(at(0), by=ANN)
    log.pause(at(10), "nausea", by=ANN)
    assert log.delivered_mg(at(15)) == pytest.approx(52.5 / 6)  # 10 min at 52.5 mg/h
    assert not log.running(at(15)) and log.running(at(5))
    log.resume(at(20), by=ANN)
    log.rate_change(at(30), 26.25, "BP 165/100", by=ANN)
    assert log.elapsed_infusion_min(at(30)) == pytest.approx(20)
    assert log.minutes_since_start(at(30)) == pytest.approx(30) and log.paused_min(at(30)) == pytest.approx(10)
    assert log.delivered_mg(at(30)) == pytest.approx(17.5)
    # 17.5 mg left at 26.25 mg/h = 40 min
    assert log.remaining_min(at(30)) == pytest.approx(40)
    assert log.projected_completion_at(at(30)) == at(70)
    assert not log.dose_complete(at(69))
    assert log.dose_complete(at(70)) and log.dose_reached_at(at(75)) == at(70)
    assert log.running(at(75))  # reported, but stopping is the nurse's action
    log.stop(at(72), by=ANN, reason="dose complete")
    assert log.ended_at == at(72) and log.started_at == at(0)
    assert log.remaining_min(at(80)) is None and log.status is InfusionStatus.STOPPED
    assert log.delivered_mg(at(200)) == pytest.approx(35 + 26.25 * 2 / 60)
    assert log.elapsed_infusion_min(at(200)) == pytest.approx(62)
    assert log.running_time_reached_at(20) == at(30) and log.running_time_reached_at(15) == at(25)
    assert log.running_time_reached_at(70) is None  # stopped at 62 running minutes


@pytest.mark.parametrize("steps, message", [
    ([("pause", 1, "x")], "has not been started yet"),
    ([("resume", 1)], "has not been started yet"),
    ([("start", 0), ("start", 1)], "already started at"),
    ([("start", 0), ("resume", 1)], "not paused, so it cannot be resumed"),
    ([("start", 0), ("pause", 1, "")], "Give a reason for pausing"),
    ([("start", 0), ("pause", 1, "x"), ("pause", 2, "y")], "already paused"),
    ([("start", 0), ("rate", 1, 40.0, "")], "Give a reason for changing"),
    ([("start", 0), ("rate", 1, 0.0, "slow")], "must be above 0 mg/h"),
    ([("start", 0), ("rate", 1, 5250.0, "typo")], "above this clinic's maximum \\(630 mg/h"),
    ([("start", 0), ("rate", 1, 52.5, "same")], "already 52.5 mg/h"),
    ([("start", 0), ("stop", 5), ("rate", 6, 40.0, "late")], "was stopped at"),
    ([("start", 0), ("stop", 5), ("resume", 6)], "was stopped at"),
    ([("start", 0), ("stop", 5), ("stop", 6)], "was stopped at"),
    ([("start", 10), ("pause", 5, "x")], "is before the last infusion entry"),
])
def test_invalid_infusion_steps_are_refused(steps, message):
    log = InfusionLog(iv_plan())

    def run(step):
        kind, minute, *rest = step
        if kind == "start":
            log.start(at(minute), by=ANN)
        elif kind == "pause":
            log.pause(at(minute), rest[0], by=ANN)
        elif kind == "resume":
            log.resume(at(minute), by=ANN)
        elif kind == "rate":
            log.rate_change(at(minute), rest[0], rest[1], by=ANN)
        else:
            log.stop(at(minute), by=ANN)

    for step in steps[:-1]:
        run(step)
    before = log.steps
    with pytest.raises(InfusionError, match=message):
        run(steps[-1])
    assert log.steps == before  # a refused step changes nothing


def test_infusion_log_refuses_naive_times_and_non_numbers():
    log = InfusionLog(iv_plan())
    with pytest.raises(RefusedAction, match="no time zone"):
        log.start(datetime(2026, 3, 2, 9, 0), by=ANN)
    with pytest.raises(InfusionError, match="not a number"):
        log.start(at(0), by=ANN, rate_mg_per_h="fast")  # type: ignore[arg-type]


_ACTIONS = st.lists(
    st.tuples(st.sampled_from(["pause", "resume", "rate", "stop"]), st.integers(0, 900),
              st.floats(1.0, 600.0, allow_nan=False)),
    max_size=12)


@hsettings(max_examples=60, deadline=None)
@given(_ACTIONS, st.integers(0, 3600))
def test_delivered_dose_never_exceeds_rate_times_running_time_and_pauses_never_count(actions, probe_s):
    log = InfusionLog(iv_plan())
    log.start(T0, by=ANN)
    t = T0
    for kind, gap_s, rate in actions:
        t = t + timedelta(seconds=gap_s)
        try:
            if kind == "pause":
                log.pause(t, "test", by=ANN)
            elif kind == "resume":
                log.resume(t, by=ANN)
            elif kind == "rate":
                log.rate_change(t, rate, "test", by=ANN)
            else:
                log.stop(t, by=ANN)
        except InfusionError:
            pass
    # replaying the payloads gives the same log
    again = InfusionLog.from_steps(log.plan, [json.loads(json.dumps(s.to_payload())) for s in log.steps])
    assert again.steps == log.steps
    now = t + timedelta(seconds=probe_s)
    max_rate = max(s.rate_mg_per_h for s in log.steps if s.rate_mg_per_h is not None)
    running_h = log.elapsed_infusion_min(now) / 60
    assert log.delivered_mg(now) <= max_rate * running_h + 1e-9
    assert again.delivered_mg(now) == pytest.approx(log.delivered_mg(now))
    since = log.minutes_since_start(now)
    assert since is not None and log.elapsed_infusion_min(now) <= since + 1e-9
    # across every paused interval the delivered dose stays the same
    steps = log.steps
    for step, nxt in zip(steps, steps[1:] + (None,)):
        if step.action.value == "pause":
            end = nxt.t if nxt is not None else step.t + timedelta(minutes=30)
            assert log.delivered_mg(end) == pytest.approx(log.delivered_mg(step.t))
    if log.status is InfusionStatus.STOPPED:
        assert log.delivered_mg(now) == pytest.approx(log.delivered_mg(log.ended_at))


# =========================================================================== esketamine

def test_esketamine_plan():
    plan = EsketaminePlan(dose_mg=56, lot_number=" ab12-c ")
    assert plan.devices == 2 and plan.lot_number == "AB12-C" and plan.monitoring_min == 120
    assert EsketaminePlan(dose_mg=84, lot_number="X12").devices == 3
    assert EsketaminePlan.from_payload(plan.to_payload()) == plan


@pytest.mark.parametrize("changes, message", [
    ({"dose_mg": 28}, "Esketamine dose 28 mg is not available: choose 56 mg \\(2 devices\\) or 84 mg \\(3 devices\\)"),
    ({"dose_mg": 100}, "not available"),
    ({"lot_number": ""}, "Enter the lot number"),
    ({"lot_number": "a"}, "Lot number 'A' should be 3–20"),
    ({"lot_number": "lot #5!"}, "should be 3–20 letters, digits or '-'"),
    ({"monitoring_min": 90}, "must last 120–480 min"),
])
def test_bad_esketamine_plans_are_refused(changes, message):
    with pytest.raises(ValidationError, match=message):
        EsketaminePlan(**{"dose_mg": 56, "lot_number": "AB123", **changes})


def test_nasal_devices_spacing_count_and_clinically_stable_signoff():
    log = NasalDeviceLog(EsketaminePlan(dose_mg=56, lot_number="AB123"))
    with pytest.raises(NasalDeviceError, match="No nasal device has been logged yet"):
        log.sign_clinically_stable(at(0), ANN)
    log.log_device(at(0), ANN)
    assert log.first_device_at == at(0) and log.monitoring_end_earliest == at(120)
    with pytest.raises(NasalDeviceError, match=f"Wait 5 minutes between nasal devices: next allowed at {esc(at(5))}"):
        log.log_device(at(4.5), ANN)
    with pytest.raises(NasalDeviceError, match="before the previous device"):
        log.log_device(at(-1), ANN)
    log.log_device(at(5), ANN)  # exactly 5 minutes is allowed
    with pytest.raises(NasalDeviceError, match="All 2 devices for 56 mg are already logged"):
        log.log_device(at(30), ANN)
    assert log.complete and log.next_device_allowed_at is None
    assert not log.monitoring_complete(at(119)) and log.monitoring_complete(at(120))
    sig = log.sign_clinically_stable(at(90), ANN, note="alert, vitals at baseline")
    assert sig.by == ANN and sig.t == at(90) and "clinically stable" in sig.meaning
    # a sign-off never shortens the monitoring period (REMS: 2 hours, no exception)
    assert not log.monitoring_complete(at(90)) and log.monitoring_complete(at(120))
    with pytest.raises(NasalDeviceError, match="Already signed off"):
        log.sign_clinically_stable(at(95), ANN)
    payloads = [e.to_payload() for e in log.entries] + [NasalDeviceLog.signoff_payload(sig)]
    again = NasalDeviceLog.from_steps(log.plan, json.loads(json.dumps(payloads)))
    assert again.entries == log.entries and again.signoff == sig
    late = NasalDeviceLog(EsketaminePlan(dose_mg=56, lot_number="AB123"))
    late.log_device(at(0), ANN)
    assert late.sign_clinically_stable(at(121), ANN).t == at(121)  # after 2 h the sign-off is still needed


def test_tampered_device_record_is_refused_on_replay():
    plan = EsketaminePlan(dose_mg=84, lot_number="AB123")
    first = {"type": "nasal_device", "number": 1, "t": at(0).isoformat(), "by": ANN.to_payload()}
    too_soon = {**first, "number": 2, "t": at(2).isoformat()}
    with pytest.raises(NasalDeviceError, match="Wait 5 minutes"):
        NasalDeviceLog.from_steps(plan, [first, too_soon])
    with pytest.raises(NasalDeviceError, match="out of order"):
        NasalDeviceLog.from_steps(plan, [first, {**first, "number": 3, "t": at(10).isoformat()}])


# =========================================================================== schedule config

def test_nibp_interval_depends_on_history_and_hypertension():
    cfg = ScheduleConfig()
    assert nibp_interval_min(patient(prior_sessions=5), cfg) == 10
    assert nibp_interval_min(patient(prior_sessions=2), cfg) == 5
    assert nibp_interval_min(patient(prior_sessions=9, known_hypertension=True), cfg) == 5
    custom = ScheduleConfig.model_validate({"iv": {"nibp_interval_min": 15, "high_risk_first_sessions": 0}})
    assert nibp_interval_min(patient(prior_sessions=0), custom) == 15


@pytest.mark.parametrize("data, message", [
    ({"iv": {"nibp_interval_min": 4}}, "outside 5–15 min"),
    ({"iv": {"nibp_interval_high_risk_min": 16}}, "outside 5–15 min"),
    ({"iv": {"assessment_marks_min": [40, 20]}}, "increasing"),
    ({"iv": {"recovery_moaas_interval_min": 45}}, "MOAA/S interval in recovery 45 min"),
    ({"esketamine": {"bp_after_first_device_min": 10}}, "outside 30–60 min"),
    ({"grace_min": 30}, "Grace period before overdue 30 min"),
])
def test_bad_schedule_config_is_refused(data, message):
    with pytest.raises(ValidationError, match=message):
        ScheduleConfig.model_validate(data)


# =========================================================================== phases and baseline

def test_phase_transitions():
    allowed = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert allowed == {(Phase.BASELINE, Phase.INFUSION), (Phase.BASELINE, Phase.ABORTED),
                       (Phase.INFUSION, Phase.RECOVERY), (Phase.INFUSION, Phase.ABORTED),
                       (Phase.RECOVERY, Phase.DISCHARGED), (Phase.RECOVERY, Phase.ABORTED)}
    for a in Phase:
        for b in Phase:
            if (a, b) in allowed:
                check_transition(a, b)
            else:
                with pytest.raises(PhaseError):
                    check_transition(a, b)
    with pytest.raises(PhaseError, match="cannot go to discharged \\(only to dosing or ended without discharge\\)"):
        check_transition(Phase.BASELINE, Phase.DISCHARGED)
    with pytest.raises(PhaseError, match="read-only"):
        check_transition(Phase.DISCHARGED, Phase.RECOVERY)


def reading(minute: float, sys: float, dia: float) -> NibpReading:
    return NibpReading(t=at(minute), sys=sys, dia=dia)


def test_pre_dose_bp_is_last_reading_or_mean_of_two_within_ten_minutes():
    assert pre_dose_bp([]) is None
    assert pre_dose_bp([reading(0, 150, 90), reading(12, 130, 80)])[:2] == (130, 80)
    assert pre_dose_bp([reading(0, 150, 90), reading(8, 130, 80)])[:2] == (140, 85)
    assert pre_dose_bp([reading(0, 150, 90), reading(8, 130, 80)], before=at(5))[:2] == (150, 90)


def test_baseline_is_the_median_of_the_last_two_minutes():
    samples = {"hr": [(at(0), 120.0)] + [(at(8) + timedelta(seconds=s), 60.0 + s % 3) for s in range(0, 121, 5)],
               "rr": [(at(1), 14.0)]}
    base = compute_baseline(samples, [reading(5, 124, 78)], at(10))
    assert base.values["hr"] == 61.0  # the 120 at minute 0 is outside the window
    assert "rr" not in base.values and "no readings" in base.methods["rr"]
    assert (base.sys, base.dia) == (124, 78) and base.methods["nibp_sys"].startswith("reading at")


@pytest.mark.parametrize("values, message", [
    ({"nibp_sys": 400, "nibp_dia": 80}, "Systolic BP 400 mmHg is outside 30–300 mmHg"),
    ({"nibp_sys": 80, "nibp_dia": 90}, "systolic must be above diastolic"),
])
def test_impossible_bp_readings_are_refused(values, message):
    with pytest.raises(ValidationError, match=message):
        NibpReading(t=T0, sys=values["nibp_sys"], dia=values["nibp_dia"])


# =========================================================================== the session

def open_iv(**patient_changes) -> SessionState:
    p = patient(**patient_changes)
    return SessionState.open(session_id="S-IV-1", patient=p, plan=iv_plan(weight_kg=p.weight_kg), t=T0, by=ANN,
                             settings=SETTINGS)


def open_esketamine(dose_mg: int = 56) -> SessionState:
    return SessionState.open(session_id="S-ESK-1", patient=patient(), t=T0, by=ANN, settings=SETTINGS,
                             plan=EsketaminePlan.for_clinic(SETTINGS, dose_mg=dose_mg, lot_number="AB123"))


def feed_pre_dose_vitals(state: SessionState, until_min: float) -> None:
    batch = []
    for s in range(0, int(until_min * 60) + 1, 5):
        t = T0 + timedelta(seconds=s)
        batch += [numeric("hr", 72 + s % 2, "sim", t, quality={Quality.SIMULATED}), numeric("spo2", 98, "sim", t)]
    state.observe(batch)


def test_opening_checks_the_patient_and_the_plan():
    with pytest.raises(RefusedAction, match="Patient is 17 years old"):
        SessionState.open(session_id="S1", patient=patient(date_of_birth=date(2008, 6, 1)), plan=iv_plan(),
                          t=T0, by=ANN, settings=SETTINGS)
    with pytest.raises(SessionError, match="The plan's weight 80 kg differs from the patient's 70 kg"):
        SessionState.open(session_id="S1", patient=patient(), plan=iv_plan(weight_kg=80), t=T0, by=ANN,
                          settings=SETTINGS)
    narrow = SETTINGS.model_copy(update={"ketamine_dose_bounds_mg_per_kg": (0.2, 0.4),
                                         "ketamine_typical_dose_mg_per_kg": 0.3})
    with pytest.raises(SessionError, match="Dose 0.5 mg/kg is outside this clinic's 0.2–0.4 mg/kg"):
        SessionState.open(session_id="S1", patient=patient(), plan=iv_plan(), t=T0, by=ANN, settings=narrow)
    with pytest.raises(SessionError, match="Session id"):
        SessionState.open(session_id="bad id!", patient=patient(), plan=iv_plan(), t=T0, by=ANN, settings=SETTINGS)
    with pytest.raises(RefusedAction, match="no time zone"):
        SessionState.open(session_id="S1", patient=patient(), plan=iv_plan(), t=datetime(2026, 3, 2), by=ANN,
                          settings=SETTINGS)
    state = open_iv()
    assert state.phase is Phase.BASELINE and state.entries[0].type == "session_opened"
    assert state.age_years == 45 and state.entries[0].local_date == clock_date(T0)


def clock_date(t: datetime) -> str:
    return t.astimezone().date().isoformat()


def test_dosing_needs_a_pre_dose_bp_and_a_decision_when_it_is_high():
    state = open_iv()
    with pytest.raises(SessionError, match="Record a pre-dose blood pressure before dosing"):
        state.start_infusion(at(5), ANN)
    with pytest.raises(SessionError, match="within 140/90: no decision"):
        state.record_nibp(at(1), 120, 80, by=ANN)
        state.decide_bp("proceed", at(2), ANN)
    state.record_nibp(at(3), 152, 96, by=ANN)  # mean with 120/80 two minutes earlier: 136/88 → fine
    assert state.bp_advisory_pending() is None
    state.record_nibp(at(15), 152, 96, by=ANN)  # alone now (12 min later): above 140/90
    advisory = state.bp_advisory_pending()
    assert advisory is not None and advisory.text() == (
        "Pre-dose BP 152/96 is above 140/90: record a decision to proceed or defer")
    with pytest.raises(SessionError, match="Pre-dose BP 152/96 is above 140/90: record a decision"):
        state.start_infusion(at(16), ANN)
    state.decide_bp("defer", at(16), ANN, note="anxious; re-measure")
    assert state.bp_advisory_pending() is None
    with pytest.raises(SessionError, match="was to defer"):
        state.start_infusion(at(17), ANN)
    with pytest.raises(SessionError, match="before the BP it concerns"):
        state.decide_bp("proceed", at(14), ANN)
    state.record_nibp(at(25), 148, 94, by=ANN)  # a new high reading needs a new decision
    assert state.bp_advisory_pending() is not None
    state.decide_bp("proceed", at(26), ANN)
    with pytest.raises(SessionError, match="Decision 'maybe' must be 'proceed' or 'defer'"):
        state.decide_bp("maybe", at(27), ANN)  # type: ignore[arg-type]
    entries = state.start_infusion(at(28), ANN)
    assert [e.type for e in entries] == ["baseline", "infusion_step"]
    assert state.phase is Phase.INFUSION
    assert (state.baseline.sys, state.baseline.dia) == (150, 95)  # mean of 152/96 and 148/94
    with pytest.raises(SessionError, match="only be recorded before dosing"):
        state.decide_bp("proceed", at(29), ANN)


def test_manual_baseline_overrides_and_records_the_user():
    state = open_iv()
    feed_pre_dose_vitals(state, 10)
    state.record_nibp(at(5), 130, 85, by=ANN)
    state.set_baseline(at(8), CARA, {"nibp_sys": 128, "nibp_dia": 80, "hr": 70})
    with pytest.raises(SessionError, match="Unknown vital 'bp'"):
        state.set_baseline(at(9), ANN, {"bp": 120})
    with pytest.raises(SessionError, match="Baseline SpO2 140 % is outside 0–100 %"):
        state.set_baseline(at(9), ANN, {"spo2": 140})
    with pytest.raises(SessionError, match="both systolic and diastolic"):
        state.set_baseline(at(9), ANN, {"nibp_sys": 120})
    state.start_infusion(at(10), ANN)
    base = state.baseline
    assert base.values["hr"] == 70 and base.methods["hr"] == f"entered by Cara Diaz at {clock(at(8))}"
    assert base.values["spo2"] == 98 and base.methods["spo2"].startswith("median of")
    assert (base.sys, base.dia) == (128, 80)


def test_observe_pairs_device_nibp_and_ignores_flagged_values():
    state = open_iv()
    new = state.observe([numeric("nibp_sys", 131, "mon", at(2)), numeric("nibp_mean", 98, "mon", at(2)),
                         numeric("hr", 70, "mon", at(2)),
                         numeric("spo2", 99, "mon", at(2), quality={Quality.ARTIFACT})])
    assert new == [] and "spo2" not in state.latest
    new = state.observe([numeric("nibp_dia", 82, "mon", at(2))])
    assert len(new) == 1 and new[0].type == "nibp" and new[0].by is None
    assert (new[0].sys, new[0].dia, new[0].mean, new[0].source) == (131, 82, 98, "device")
    assert state.observe([numeric("nibp_sys", 20, "mon", at(3)), numeric("nibp_dia", 90, "mon", at(3))]) == []


def run_iv_to_recovery(state: SessionState) -> None:
    feed_pre_dose_vitals(state, 5)
    state.record_nibp(at(4), 124, 78, by=ANN)
    state.chart(MOAAS(level=5), at(4), ANN)
    state.chart(PainNRS(rating=3), at(4), ANN)
    state.start_infusion(at(5), ANN)


def test_infusion_actions_follow_the_phase():
    state = open_iv()
    with pytest.raises(SessionError, match="has not been started yet"):
        state.pause_infusion(at(1), ANN, "x")
    run_iv_to_recovery(state)
    with pytest.raises(PhaseError, match="The session is already in dosing"):
        state.start_infusion(at(6), ANN)
    with pytest.raises(InfusionError, match="Give a reason"):
        state.pause_infusion(at(6), ANN, "  ")
    with pytest.raises(SessionError, match="Stop the infusion before ending the session"):
        state.abort(at(7), ANN, "patient request")
    with pytest.raises(PhaseError, match="cannot go to discharged"):
        state.close(at(8), ANN)
    with pytest.raises(SessionError, match="IV ketamine session: there are no nasal devices"):
        open_iv().log_nasal_device(at(1), ANN)
    state.stop_infusion(at(20), ANN, reason="patient request")
    assert state.phase is Phase.RECOVERY
    with pytest.raises(SessionError, match="The infusion was stopped: the session is in recovery"):
        state.resume_infusion(at(21), ANN)
    state.abort(at(30), ANN, "transferred to the emergency department")
    assert state.phase is Phase.ABORTED and state.closed_at == at(30)
    with pytest.raises(SessionError, match="read-only"):
        state.chart(MOAAS(level=5), at(31), ANN)
    assert state.observe([numeric("hr", 70, "mon", at(31))]) == [] and due_items(state, at(31)) == []
    assert SessionState.from_entries(state.entries).phase is Phase.ABORTED


def test_entries_before_opening_and_corrections():
    state = open_iv()
    with pytest.raises(SessionError, match=f"before the session was opened at {esc(T0)}"):
        state.chart(MOAAS(level=5), at(-1), ANN)
    [wrong] = state.chart(MOAAS(level=2), at(3), ANN)
    [note] = state.record_event(Note(text="wrong patient chart"), at(3), ANN)
    state.correct(wrong.seq, "charted on the wrong scale line", at(6), CARA, replacement=MOAAS(level=4))
    assert [(c.t, c.assessment.score, c.by) for c in state.charted("moaas")] == [(at(3), 4, CARA)]
    state.correct(note.seq, "entered in error", at(7), ANN)
    assert state.events() == []
    with pytest.raises(SessionError, match="already corrected"):
        state.correct(wrong.seq, "again", at(8), ANN)
    with pytest.raises(SessionError, match="Reason is required"):
        state.correct(wrong.seq + 1, "", at(8), ANN)
    with pytest.raises(SessionError, match="Entry 1 is not an assessment, event or BP reading"):
        state.correct(1, "no", at(8), ANN)
    assert state.entries[wrong.seq - 1].assessment["level"] == 2  # the original stays in the record
    again = SessionState.from_entries(json.loads(json.dumps([e.to_payload() for e in state.entries])))
    assert [c.assessment for c in again.charted()] == [MOAAS(level=4)]
    assert len(again.corrections) == 2


def test_replay_refuses_damaged_records():
    state = open_iv()
    run_iv_to_recovery(state)
    entries = json.loads(json.dumps([e.to_payload() for e in state.entries]))
    with pytest.raises(SessionError, match="out of order"):
        SessionState.from_entries(entries[:2] + entries[3:])
    tampered = [dict(e) for e in entries]
    tampered[-1]["rate_mg_per_h"] = 9999.0
    with pytest.raises(SessionError, match="cannot be replayed: Rate 9999 mg/h is above"):
        SessionState.from_entries(tampered)
    with pytest.raises(SessionError, match="starts with its session_opened"):
        SessionState.from_entries([{**entries[1], "seq": 1}])
    with pytest.raises(SessionError, match="No entries"):
        SessionState.from_entries([])


# =========================================================================== a 2-hour IV session

def test_two_hour_iv_session_through_the_schedule():
    """First-time patient (NIBP every 5 min), 0.5 mg/kg over 40 min with a 5-minute pause for nausea."""
    state = open_iv(prior_sessions=0)
    stored = list(state.entries)
    keep = stored.extend

    # 09:00 baseline: the pre-dose items are due and the infusion cannot start
    assert due(state, 0) == {"nibp:pre-dose": DueStatus.DUE, "moaas:pre-dose": DueStatus.DUE,
                             "pain_nrs:pre-dose": DueStatus.DUE}
    feed_pre_dose_vitals(state, 10)
    keep(state.observe([numeric("nibp_sys", 146, "mon", at(6)), numeric("nibp_dia", 92, "mon", at(6))]))
    assert due(state, 7)["bp_decision"] is DueStatus.DUE
    keep(state.chart(MOAAS(level=5), at(7), ANN))
    keep(state.chart(PainNRS(rating=4), at(7), ANN))
    keep(state.decide_bp("proceed", at(8), CARA, note="usual for this patient"))
    assert due(state, 9) == {}
    keep(state.start_infusion(at(10), ANN))  # 52.5 mg/h, 35 mg planned

    # first NIBP 5 min after the start (first session), overdue 5 min after that
    assert next_nibp_due(state, at(12)).due_at == at(15)
    assert due(state, 12)["nibp:infusion"] is DueStatus.UPCOMING
    assert due(state, 16)["nibp:infusion"] is DueStatus.DUE
    assert due(state, 21)["nibp:infusion"] is DueStatus.OVERDUE
    keep(state.record_nibp(at(21), 165, 101, by=ANN))  # at/above 160/100: repeat within 5 min
    item = next_nibp_due(state, at(22))
    assert item.key == "nibp:repeat" and item.due_at == at(26) and "165/101" in item.label
    keep(state.record_nibp(at(25), 150, 94, by=ANN))
    assert next_nibp_due(state, at(26)).key == "nibp:infusion" and next_nibp_due(state, at(26)).due_at == at(30)

    # MOAA/S and CADSS-6 at 20 running minutes = 09:30; a pause for nausea shifts the marks
    assert due(state, 26)["moaas@20"] is DueStatus.UPCOMING
    keep(state.record_event(Nausea(severity="mild"), at(27), ANN))
    keep(state.pause_infusion(at(27), ANN, "nausea"))
    paused = {i.key: i for i in due_items(state, at(29))}
    assert paused["moaas@20"].status is DueStatus.UPCOMING and "paused" in paused["moaas@20"].label
    keep(state.record_event(RescueMedication(drug="Ondansetron", dose=4, dose_unit="mg", route="IV",
                                             given_by="Ann Lee"), at(28), ANN))
    keep(state.resume_infusion(at(32), ANN))
    marks = {i.key: i for i in due_items(state, at(33))}
    assert marks["moaas@20"].due_at == at(35) and marks["cadss6@40"].due_at == at(55)
    assert marks["infusion_stop"].due_at == at(55) and marks["infusion_stop"].status is DueStatus.UPCOMING
    keep(state.record_nibp(at(35), 140, 88, by=ANN))
    keep(state.chart(MOAAS(level=4), at(36), ANN))
    assert due(state, 38)["cadss6@20"] is DueStatus.DUE and "moaas@20" not in due(state, 38)
    assert due(state, 41)["cadss6@20"] is DueStatus.OVERDUE
    keep(state.chart(CADSS6(items={1: 1, 2: 2, 6: 1, 7: 0, 15: 1, 22: 0}), at(41), ANN))
    for minute in (40, 45, 50):
        keep(state.record_nibp(at(minute), 138, 86, by=ANN))

    # the planned dose is reached at 09:55: reported, the nurse stops it
    assert state.infusion.dose_complete(at(55)) and not state.infusion.dose_complete(at(54.9))
    now = due(state, 56)
    assert now["infusion_stop"] is DueStatus.DUE and now["moaas@40"] is DueStatus.DUE
    assert now["nibp:infusion"] is DueStatus.DUE  # 09:55
    keep(state.chart(MOAAS(level=3), at(56), ANN))
    keep(state.chart(CADSS6(items={1: 2, 2: 2, 6: 1, 7: 1, 15: 1, 22: 0}), at(56), ANN))
    keep(state.record_nibp(at(56), 142, 90, by=ANN))
    keep(state.stop_infusion(at(57), ANN))
    assert state.phase is Phase.RECOVERY
    assert state.infusion.delivered_mg(at(57)) == pytest.approx(35 + 52.5 * 2 / 60)
    assert continuous_spo2_required(state, at(60))

    # recovery: NIBP and MOAA/S every 15 min, MOAA/S until 5, Aldrete from 60 min after the stop
    rec = {i.key: i for i in due_items(state, at(60))}
    assert rec["nibp:recovery"].due_at == at(72) and rec["moaas:recovery"].due_at == at(72)
    assert rec["aldrete"].due_at == at(117) and rec["aldrete"].status is DueStatus.UPCOMING
    assert due(state, 78)["moaas:recovery"] is DueStatus.OVERDUE
    keep(state.chart(MOAAS(level=4), at(78), ANN))
    keep(state.record_nibp(at(78), 130, 82, by=ANN))
    assert next_nibp_due(state, at(80)).due_at == at(93)
    keep(state.chart(MOAAS(level=5), at(90), ANN))
    assert "moaas:recovery" not in due(state, 100)
    assert not continuous_spo2_required(state, at(100))

    # discharge check before and after the criteria are met
    early = state.discharge_check(at(100))
    assert not early.ok
    assert {c.key for c in early.unmet} == {"aldrete", "time", "escort"}
    assert early.criterion("bp").met  # 130/82 at 10:18 vs 146/92: -11 % / -11 %
    assert "older than 30 min: measure again" in state.discharge_check(at(109)).criterion("bp").detail
    keep(state.chart(ALDRETE_8, at(105), ANN))
    assert due(state, 121)["aldrete"] is DueStatus.DUE  # 8 < 9: again 15 min later (10:00)
    keep(state.record_nibp(at(110), 128, 80, by=ANN))
    keep(state.confirm_escort(at(112), ANN, "partner"))
    keep(state.chart(ALDRETE_10, at(115), ANN))
    assert "aldrete" not in due(state, 116)
    with pytest.raises(SessionError, match=r"Discharge criteria not met: ≥ 60 min after the infusion ended "
                                           rf"\(59 min since {esc(at(57))}; not before {esc(at(117))}\)"):
        state.close(at(116), ANN)
    check = state.discharge_check(at(118))
    assert check.ok, check.text()
    assert check.criterion("bp").detail.startswith("128/80") and "baseline 146/92" in check.criterion("bp").detail
    keep(state.close(at(120), ANN))
    assert state.phase is Phase.DISCHARGED and state.closed.printed_name == "Ann Lee"
    assert state.closed.meaning == "reviewed and closed" and state.closed.t == at(120)
    assert due_items(state, at(121)) == []

    # everything the store kept rebuilds the same session
    assert stored == state.entries
    again = SessionState.from_entries(json.loads(json.dumps([e.to_payload() for e in stored])))
    assert again.phase is Phase.DISCHARGED and again.entries == state.entries
    assert again.infusion.steps == state.infusion.steps and again.baseline == state.baseline
    assert [c.assessment for c in again.charted()] == [c.assessment for c in state.charted()]
    assert [e.event for e in again.events()] == [e.event for e in state.events()]


def test_closing_with_unmet_criteria_needs_a_charge_nurse_and_a_reason():
    state = open_iv()
    run_iv_to_recovery(state)
    state.stop_infusion(at(45), ANN)
    with pytest.raises(SessionError, match="Discharge criteria not met"):
        state.close(at(50), ANN)
    with pytest.raises(PermissionDenied, match="Only a charge nurse may close a session with unmet"):
        state.close(at(50), ANN, override_reason="transfer by ambulance, handed over")
    state.close(at(50), CARA, override_reason="transfer by ambulance, handed over")
    assert state.override_reason and state.closed_check["criteria"]
    again = SessionState.from_entries(state.entries)
    assert again.override_reason == state.override_reason and again.phase is Phase.DISCHARGED


# =========================================================================== a 2-hour esketamine session

def test_two_hour_esketamine_session_through_the_schedule():
    state = open_esketamine(dose_mg=84)
    assert due(state, 0) == {"nibp:pre-dose": DueStatus.DUE}
    with pytest.raises(SessionError, match="Record a pre-dose blood pressure"):
        state.log_nasal_device(at(5), ANN)
    with pytest.raises(SessionError, match="no infusion"):
        state.start_infusion(at(5), ANN)
    state.record_nibp(at(3), 132, 84, by=ANN)
    entries = state.log_nasal_device(at(10), ANN)
    assert [e.type for e in entries] == ["baseline", "nasal_device"] and state.phase is Phase.INFUSION

    # devices at least 5 minutes apart
    assert due(state, 12) == {"nasal_device:2": DueStatus.UPCOMING, "nibp:40": DueStatus.UPCOMING,
                              "moaas@40": DueStatus.UPCOMING, "cadss6@40": DueStatus.UPCOMING,
                              "moaas:before-discharge": DueStatus.UPCOMING,
                              "cadss6:before-discharge": DueStatus.UPCOMING}
    with pytest.raises(NasalDeviceError, match=f"next allowed at {esc(at(15))}"):
        state.log_nasal_device(at(13), ANN)
    assert due(state, 21)["nasal_device:2"] is DueStatus.OVERDUE
    state.log_nasal_device(at(21), ANN)
    state.log_nasal_device(at(26.5), ANN)
    assert state.phase is Phase.RECOVERY and state.dosing_ended_at == at(26.5)
    with pytest.raises(SessionError, match="no more devices"):
        state.log_nasal_device(at(40), ANN)

    # BP about 40 min after the first device, then offered every 30 min, and before the end
    assert next_nibp_due(state, at(30)).due_at == at(50)
    assert due(state, 56)["nibp:40"] is DueStatus.OVERDUE
    state.record_nibp(at(56), 150, 92, by=ANN)
    offer = next_nibp_due(state, at(57))
    assert offer.key == "nibp:offer" and offer.due_at == at(86)
    state.record_nibp(at(86), 138, 86, by=ANN)
    state.record_nibp(at(100), 134, 84, by=ANN)  # an extra reading, clinically warranted
    before_end = next_nibp_due(state, at(101))  # the next offer (10:10) comes after this one
    assert before_end.key == "nibp:before-end" and before_end.due_at == at(120)
    assert due(state, 126)["nibp:before-end"] is DueStatus.OVERDUE
    assert continuous_spo2_required(state, at(100))

    # discharge is blocked before 120 min from the first device (11:10)
    state.record_nibp(at(116), 130, 82, by=ANN)
    state.chart(ALDRETE_10, at(117), ANN)
    state.confirm_escort(at(110), ANN)
    check = state.discharge_check(at(118))
    assert [c.key for c in check.unmet] == ["time", "clinically_stable"]
    assert "not before" in check.criterion("time").detail
    assert state.discharge_earliest == at(130)
    state.sign_clinically_stable(at(125), ANN)
    assert state.discharge_check(at(130)).ok
    assert not continuous_spo2_required(state, at(130))
    state.close(at(131), ANN)
    assert SessionState.from_entries(json.loads(json.dumps([e.to_payload() for e in state.entries]))).phase is Phase.DISCHARGED


def test_esketamine_discharge_needs_two_hours_for_everyone_and_the_clinically_stable_signoff():
    state = open_esketamine(dose_mg=56)
    state.record_nibp(at(2), 120, 80, by=ANN)
    state.log_nasal_device(at(5), ANN)
    state.log_nasal_device(at(10), ANN)
    state.record_nibp(at(45), 124, 82, by=ANN)
    state.record_nibp(at(95), 122, 80, by=ANN)
    state.chart(ALDRETE_10, at(96), ANN)
    state.confirm_escort(at(96), ANN, "daughter")
    state.sign_clinically_stable(at(100), CARA, note="alert, BP at baseline")
    assert state.discharge_earliest == at(125)          # the sign-off does not bring it forward
    check = state.discharge_check(at(101))
    assert [c.key for c in check.unmet] == ["time"] and check.criterion("time").hard
    assert "applies to everyone" in check.criterion("time").detail
    with pytest.raises(SessionError, match="Discharge refused"):   # not even a charge nurse's override
        state.close(at(102), CARA, override_reason="patient insists")
    state.record_nibp(at(120), 122, 80, by=ANN)
    assert state.discharge_check(at(125)).ok             # 120 min from the first device, and signed
    state.close(at(126), CARA)
    again = SessionState.from_entries(state.entries)
    assert again.devices.signoff.by == CARA and again.phase is Phase.DISCHARGED


def test_esketamine_at_two_hours_still_needs_the_clinically_stable_signoff():
    state = open_esketamine(dose_mg=56)
    state.record_nibp(at(2), 120, 80, by=ANN)
    state.log_nasal_device(at(5), ANN)
    state.log_nasal_device(at(10), ANN)
    state.record_nibp(at(120), 122, 80, by=ANN)
    state.chart(ALDRETE_10, at(121), ANN)
    state.confirm_escort(at(121), ANN)
    check = state.discharge_check(at(130))
    assert [c.key for c in check.unmet] == ["clinically_stable"] and not check.criterion("clinically_stable").hard
    with pytest.raises(SessionError, match="Clinically stable"):
        state.close(at(130), ANN)
    state.sign_clinically_stable(at(131), CARA)
    state.close(at(132), ANN)
    assert state.phase is Phase.DISCHARGED


def test_esketamine_dosing_can_end_early_with_a_reason():
    state = open_esketamine(dose_mg=84)
    state.record_nibp(at(2), 120, 80, by=ANN)
    state.log_nasal_device(at(5), ANN)
    with pytest.raises(SessionError, match="Reason is required"):
        state.end_dosing(at(8), ANN, "")
    state.end_dosing(at(8), ANN, "patient declined further devices")
    assert state.phase is Phase.RECOVERY and state.dosing_ended_at == at(8)
    assert "nasal_device:2" not in due(state, 11)
    assert SessionState.from_entries(state.entries).phase is Phase.RECOVERY


def test_bp_artefact_correction_and_latest_vitals_in_the_discharge_check():
    state = open_iv()
    run_iv_to_recovery(state)  # baseline 124/78
    state.stop_infusion(at(45), ANN)
    [artefact] = state.observe([numeric("nibp_sys", 210, "mon", at(50)), numeric("nibp_dia", 125, "mon", at(50))])
    assert next_nibp_due(state, at(51)).key == "nibp:repeat"
    with pytest.raises(SessionError, match="needs sys and dia"):
        state.correct(artefact.seq, "patient moving", at(52), ANN, replacement={"sys": 130})
    state.correct(artefact.seq, "patient moving: cuff artefact", at(52), ANN, replacement={"sys": 128, "dia": 80})
    assert [(r.sys, r.source, r.by) for r in state.nibp_readings if r.t == at(50)] == [(128, "manual", ANN)]
    assert next_nibp_due(state, at(51)).key == "nibp:recovery"
    assert state.discharge_check(at(60), {}).criterion("bp").met
    # a newer device value in latest_vitals wins; a plain number counts as measured now
    newer = {"nibp_sys": numeric("nibp_sys", 170, "mon", at(58)), "nibp_dia": numeric("nibp_dia", 100, "mon", at(58))}
    assert "outside 20 %" in state.discharge_check(at(60), newer).criterion("bp").detail
    assert state.discharge_check(at(60), {"nibp_sys": 126.0, "nibp_dia": 79.0}).criterion("bp").met
    again = SessionState.from_entries(json.loads(json.dumps([e.to_payload() for e in state.entries])))
    assert again.nibp_readings == state.nibp_readings


def test_waived_start_takes_its_baseline_from_the_first_minute():
    state = open_iv()
    with pytest.raises(SessionError, match="pre-dose blood pressure"):
        state.start_infusion(T0, ANN)
    with pytest.raises(SessionError, match="Reason is required"):
        state.waive_pre_dose_check(T0, ANN, "  ")
    with pytest.raises(SessionError, match="only recorded after a waived"):
        state.record_baseline_from_start(at(1), ANN)
    entries = state.waive_pre_dose_check(T0, ANN, "unattended recording")
    entries += state.start_infusion(T0, ANN)
    assert [e.type for e in entries] == ["pre_dose_waiver", "infusion_step"]
    assert state.phase is Phase.INFUSION and state.baseline is None
    batch = [numeric("hr", 70 + s % 3, "sim", T0 + timedelta(seconds=s)) for s in range(0, 61)]
    batch += [numeric("nibp_sys", 128, "sim", at(0.6)), numeric("nibp_dia", 80, "sim", at(0.6))]
    state.observe(batch)
    [entry] = state.record_baseline_from_start(at(1), ANN)
    assert entry.values == {"hr": 71.0, "nibp_sys": 128.0, "nibp_dia": 80.0}
    assert "after the start of recording" in entry.methods["hr"]
    assert state.baseline.values["nibp_sys"] == 128.0
    with pytest.raises(SessionError):
        state.record_baseline_from_start(at(2), ANN)  # only once
    again = SessionState.from_entries(state.entries)
    assert again.baseline.values == state.baseline.values and again.pre_dose_waiver[2] == "unattended recording"


def test_concomitant_medications_are_recorded_and_replayed():
    state = open_iv()
    with pytest.raises(SessionError, match="must be yes or no"):
        state.record_concomitant(at(1), ANN, {"benzodiazepines": "maybe"})
    with pytest.raises(SessionError, match="Unknown concomitant"):
        state.record_concomitant(at(1), ANN, {"opioids": True})
    state.record_concomitant(at(1), ANN, {"benzodiazepines": True, "other": "sertraline 50 mg"})
    again = SessionState.from_entries(state.entries)
    assert again.concomitant == {"benzodiazepines": True, "non_benzodiazepine_hypnotics": False,
                                 "psychostimulants": False, "maois": False}
    assert again.concomitant_other == "sertraline 50 mg"
