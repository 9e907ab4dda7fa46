"""Issue 9 §4: dosing and discharge rules, each tested against what the audit found."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from monitor.assessments import ModifiedAldrete, MOAAS, PainNRS
from monitor.patient import Patient, Sex
from monitor.protocols import EsketaminePlan, InfusionError, KetamineIVPlan, RateNeedsConfirmation
from monitor.schedule import DueStatus, due_items, esketamine_forty_minute_bp
from monitor.session import SessionError, SessionState
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
CARA = Actor(username="cara", display_name="Cara Diaz", role=Role.CHARGE_NURSE)
SETTINGS = ClinicSettings()
ALDRETE_10 = ModifiedAldrete(activity=2, respiration=2, circulation=2, consciousness=2, oxygen_saturation=2)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def patient() -> Patient:
    return Patient(display_name="Jo Doe", mrn="MRN-001", date_of_birth=date(1980, 5, 17), sex=Sex.FEMALE,
                   weight_kg=70, prior_sessions=5)


def open_iv(settings: ClinicSettings = SETTINGS) -> SessionState:
    plan = KetamineIVPlan.for_clinic(settings, weight_kg=70, dose_mg_per_kg=0.5)   # 35 mg, 52.5 mg/h
    return SessionState.open(session_id="S-1", patient=patient(), plan=plan, t=T0, by=ANN, settings=settings)


def ready(state: SessionState) -> None:
    state.record_nibp(at(4), 124, 78, by=ANN)
    state.chart(MOAAS(level=5), at(4), ANN)
    state.chart(PainNRS(rating=3), at(4), ANN)


# ------------------------------------------------------------------ rate slips
def test_a_rate_far_above_the_plan_needs_a_confirmation_with_a_reason_which_is_recorded():
    state = open_iv(ClinicSettings(ketamine_max_rate_mg_per_kg_per_h=9.0))
    ready(state)
    with pytest.raises(RateNeedsConfirmation, match="525 mg/h is 10.0 × the planned 52.5 mg/h") as refused:
        state.start_infusion(at(5), ANN, 525)             # a slip: 525 for 52.5
    assert refused.value.plan_rate == pytest.approx(52.5) and state.infusion.started_at is None
    state.start_infusion(at(5), ANN, 78)                  # up to 1.5 × needs nothing more
    with pytest.raises(RateNeedsConfirmation):
        state.change_rate(at(10), ANN, 80, "slow response")
    entries = state.change_rate(at(10), ANN, 80, "slow response", high_rate_reason="prescriber's order, Dr Ng")
    assert entries[-1]["high_rate_reason"] == "prescriber's order, Dr Ng"
    again = SessionState.from_entries(json.loads(json.dumps(state.entries)))
    assert again.infusion.steps[-1].high_rate_reason == "prescriber's order, Dr Ng"


def test_a_rate_above_the_clinics_hard_maximum_is_refused_even_with_a_reason():
    state = open_iv()                                     # 2.25 mg/kg/h × 70 kg = 157.5 mg/h
    ready(state)
    with pytest.raises(InfusionError, match="above this clinic's maximum \\(158 mg/h for 70 kg\\)"):
        state.start_infusion(at(5), ANN, 525, high_rate_reason="sure")


def test_plans_recorded_before_the_rule_replay_unchanged():
    plan = KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70)  # no clinic maximum: the old record
    assert "max_rate_mg_per_kg_per_h" not in plan.to_payload() and plan.confirm_rate_above_mg_per_h is None
    state = SessionState.open(session_id="S-2", patient=patient(), plan=plan, t=T0, by=ANN, settings=SETTINGS)
    ready(state)
    state.start_infusion(at(5), ANN, 300)                 # what the old rules allowed replays
    assert SessionState.from_entries(state.entries).infusion.rate_at(at(6)) == 300


# ------------------------------------------------------------------ discharge
def to_recovery(state: SessionState) -> None:
    ready(state)
    state.start_infusion(at(5), ANN)
    state.stop_infusion(at(45), ANN)
    state.chart(ALDRETE_10, at(100), ANN)
    state.confirm_escort(at(100), ANN)


def test_the_discharge_bp_is_one_taken_after_dosing_never_the_pre_dose_one():
    state = open_iv()
    to_recovery(state)
    check = state.discharge_check(at(106), latest_vitals={})
    assert not check.criterion("bp").met and "no BP taken since dosing ended" in check.criterion("bp").detail
    state.record_nibp(at(104), 126, 80, by=ANN)
    assert state.discharge_check(at(106), latest_vitals={}).ok
    assert state.post_dose_bp(at(106))[:2] == (126, 80)


def test_a_discharge_bp_at_or_above_the_ceiling_fails_whatever_the_baseline():
    state = open_iv()
    state.record_nibp(at(4), 160, 100, by=ANN)
    state.decide_bp("proceed", at(4), CARA, "chronic hypertension, prescriber aware")
    state.chart(MOAAS(level=5), at(4), ANN)
    state.start_infusion(at(5), ANN)
    state.stop_infusion(at(45), ANN)
    state.chart(ALDRETE_10, at(100), ANN)
    state.confirm_escort(at(100), ANN)
    state.record_nibp(at(104), 185, 112, by=ANN)            # within 20 % of 160/100
    bp = state.discharge_check(at(106), latest_vitals={}).criterion("bp")
    assert not bp.met and "at or above 180/110" in bp.detail


def test_an_active_high_or_medium_physiological_alarm_blocks_discharge_unless_overridden():
    state = open_iv()
    to_recovery(state)
    state.record_nibp(at(104), 126, 80, by=ANN)
    alarms = [("spo2_low", "MEDIUM", "physiological"), ("audio_unavailable", "MEDIUM", "technical")]
    check = state.discharge_check(at(106), latest_vitals={}, active_alarms=alarms)
    assert [c.key for c in check.unmet] == ["alarms"] and "spo2_low (MEDIUM)" in check.criterion("alarms").detail
    with pytest.raises(SessionError, match="No active HIGH or MEDIUM physiological alarm"):
        state.close(at(106), ANN, latest_vitals={}, active_alarms=alarms)
    state.close(at(106), CARA, latest_vitals={}, active_alarms=alarms, override_reason="SpO2 probe on a cold finger")
    assert SessionState.from_entries(state.entries).override_reason == "SpO2 probe on a cold finger"
    technical_only = state.discharge_check(at(106), active_alarms=[("audio_unavailable", "MEDIUM", "technical")])
    assert technical_only.criterion("alarms").met


# ------------------------------------------------------------------ schedules
def test_skipped_pre_infusion_assessments_are_overdue_once_the_infusion_has_started():
    state = open_iv()
    state.record_nibp(at(4), 124, 78, by=ANN)
    state.start_infusion(at(5), ANN)                      # MOAA/S and pain score were skipped
    due = {i.key: i for i in due_items(state, at(6))}
    assert due["moaas:pre-dose"].status is DueStatus.OVERDUE and "missed" in due["moaas:pre-dose"].label
    assert due["pain_nrs:pre-dose"].status is DueStatus.OVERDUE
    state.chart(MOAAS(level=5), at(7), ANN)
    assert "moaas:pre-dose" not in {i.key for i in due_items(state, at(8))}


def test_esketamine_schedules_moaas_and_cadss6_at_40_minutes_and_before_discharge():
    state = SessionState.open(session_id="S-3", patient=patient(), t=T0, by=ANN, settings=SETTINGS,
                              plan=EsketaminePlan.for_clinic(SETTINGS, dose_mg=56, lot_number="AB123"))
    state.record_nibp(at(2), 120, 80, by=ANN)
    state.log_nasal_device(at(5), ANN)
    due = {i.key: i for i in due_items(state, at(46))}
    assert due["moaas@40"].due_at == at(45) and due["cadss6@40"].due_at == at(45)
    assert due["moaas:before-discharge"].due_at == at(115)


@pytest.mark.parametrize("minutes,counts", [(34, False), (35, True), (50, True), (51, False), (90, False)])
def test_the_about_40_minutes_esketamine_bp_is_a_reading_35_to_50_minutes_after_the_first_device(minutes, counts):
    state = SessionState.open(session_id="S-4", patient=patient(), t=T0, by=ANN, settings=SETTINGS,
                              plan=EsketaminePlan.for_clinic(SETTINGS, dose_mg=56, lot_number="AB123"))
    state.record_nibp(at(2), 120, 80, by=ANN)
    state.log_nasal_device(at(5), ANN)
    state.record_nibp(at(5 + minutes), 130, 84, by=ANN)
    assert (esketamine_forty_minute_bp(state) is not None) is counts
