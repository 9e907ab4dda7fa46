"""Issue 9 (patient safety), the alarm engine's part: each test failed on the engine before the fix.

Pulse-rate fallback when the ECG heart rate keeps arriving invalid, per-parameter loss, NIBP
confirmation whatever the cuff interval, NIBP halves in separate batches, latched alarms that
stop sounding, events logged at the instant the rules say (sparse ticks), the patient boundary,
the upgrade of old clinic profiles and the IEC 60601-1-8 burst timing measured on the samples.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from drivers.model import DeviceCondition, Quality, numeric
from monitor.alarms.audio import PATTERNS, SAMPLE_RATE, burst_samples
from monitor.alarms.engine import AlarmEngine
from monitor.alarms.profile import AlarmProfile, Priority, default_profile, load_profile, migrate_profile_data

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
PROFILE = default_profile()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(engine: AlarmEngine, seconds: range, make) -> list:
    """Feed ``make(t)`` (a list of observations) once a second; return [(t, event)]."""
    out = []
    for t in seconds:
        out += [(t, e) for e in engine.process(make(t))]
    return out


def starts(events, condition):
    return [(t, e.priority.name) for t, e in events if e.event == "started" and e.condition == condition]


# ------------------------------------------------------------------ pulse-rate fallback
@pytest.mark.parametrize("hr_kind", ["missing", "invalid", "leads_off"])
def test_pulse_rate_is_judged_when_ecg_heart_rate_keeps_arriving_unusable(hr_kind):
    def hr(t):
        if hr_kind == "missing":
            return numeric("hr", None, "dev", at(t))
        if hr_kind == "invalid":
            return numeric("hr", 72, "dev", at(t), quality={Quality.INVALID})
        return numeric("hr", 0, "dev", at(t), quality={Quality.SENSOR_OFF})

    engine = AlarmEngine(PROFILE)
    events = run(engine, range(0, 180), lambda t: [hr(t), numeric("pr", 160, "dev", at(t))])
    # HR > 150 for 10 s is HIGH; the pulse rate stands in for the unusable ECG heart rate
    assert starts(events, "hr_high") == [(10, "HIGH")]


def test_a_valid_ecg_heart_rate_is_still_preferred_and_the_delay_carries_over_the_switch():
    engine = AlarmEngine(PROFILE)
    events = run(engine, range(0, 40), lambda t: [numeric("hr", 80, "dev", at(t)), numeric("pr", 160, "dev", at(t))])
    assert events == []  # the ECG says 80: the oximeter's 160 is not judged
    # HR 160 from the ECG for 5 s, then leads off: the pulse rate continues the same condition
    events = run(engine, range(40, 45), lambda t: [numeric("hr", 160, "dev", at(t)), numeric("pr", 160, "dev", at(t))])
    events += run(engine, range(45, 60), lambda t: [numeric("hr", None, "dev", at(t)), numeric("pr", 160, "dev", at(t))])
    assert starts(events, "hr_high") == [(50, "HIGH")]


def test_no_valid_source_at_all_ends_the_alarm_after_10_seconds():
    engine = AlarmEngine(PROFILE)
    run(engine, range(0, 12), lambda t: [numeric("hr", None, "dev", at(t)), numeric("pr", 160, "dev", at(t))])
    events = run(engine, range(12, 30), lambda t: [numeric("hr", None, "dev", at(t)), numeric("pr", None, "dev", at(t))])
    assert [(t, e.event) for t, e in events if e.condition == "hr_high"] == [(22, "ended")]


# ------------------------------------------------------------------ per-parameter loss
def vitals(t, **override):
    values = {"hr": 80, "pr": 80, "spo2": 97, "rr": 14, "etco2": 36}
    values.update(override)
    return [numeric(k, v, "dev", at(t)) for k, v in values.items()]


def test_rr_and_etco2_lost_while_the_rest_arrives_raise_medium_technical_alarms_after_30_s():
    engine = AlarmEngine(PROFILE)
    run(engine, range(0, 60), vitals)
    events = run(engine, range(60, 100), lambda t: vitals(t, rr=None, etco2=None))  # sampling line off
    lost = [(t, e.condition, e.kind, e.priority.name) for t, e in events if e.event == "started"]
    assert lost == [(89, "rr_lost", "technical", "MEDIUM"), (89, "etco2_lost", "technical", "MEDIUM")]  # last valid at 59
    assert "check the sampling line" in engine.state().alarms[0].message
    events = run(engine, range(100, 102), vitals)  # line back on
    assert sorted(e.condition for _, e in events if e.event == "ended") == ["etco2_lost", "rr_lost"]


def test_apnea_reported_as_missing_rr_does_not_pass_silently():
    engine = AlarmEngine(PROFILE)
    run(engine, range(0, 30), vitals)
    events = run(engine, range(30, 70), lambda t: [numeric("rr", None, "dev", at(t)),
                                                   *[o for o in vitals(t) if o.vital not in ("rr", "etco2")]])
    assert starts(events, "rr_lost") == [(59, "MEDIUM")]
    assert engine.state().audio_priority == Priority.MEDIUM


def test_a_parameter_stopping_altogether_is_lost_too_but_never_one_that_never_arrived():
    engine = AlarmEngine(PROFILE)
    run(engine, range(0, 20), lambda t: [o for o in vitals(t) if o.vital != "etco2"])   # no capnograph
    events = run(engine, range(20, 80), lambda t: [o for o in vitals(t) if o.vital not in ("etco2", "spo2")])
    started = [e.condition for _, e in events if e.event == "started"]
    assert started == ["spo2_lost"]


def test_a_silent_device_is_the_link_alarm_not_a_parameter_loss():
    engine = AlarmEngine(PROFILE)
    run(engine, range(0, 20), vitals)
    assert engine.tick(at(300)) == []


def test_ecg_leads_off_with_a_pulse_rate_is_not_a_lost_heart_rate():
    engine = AlarmEngine(PROFILE)
    run(engine, range(0, 20), vitals)
    events = run(engine, range(20, 90), lambda t: vitals(t, hr=None))
    assert [e.condition for _, e in events if e.event == "started"] == []


# ------------------------------------------------------------------ NIBP
def nibp(engine, seconds, sys_, dia, batches=1):
    t = at(seconds)
    parts = [numeric("nibp_sys", sys_, "dev", t), numeric("nibp_dia", dia, "dev", t)]
    if batches == 1:
        return engine.process(parts)
    return engine.process(parts[:1]) + engine.process(parts[1:])


@pytest.mark.parametrize("interval", [300, 303, 600, 900, 905])
def test_severe_hypertension_is_confirmed_by_the_next_reading_whatever_the_cuff_interval(interval):
    engine = AlarmEngine(PROFILE)
    assert [(e.event, e.priority.name) for e in nibp(engine, 0, 184, 100)] == [("started", "MEDIUM")]
    ev = nibp(engine, interval, 186, 104)
    assert [(e.event, e.priority.name) for e in ev] == [("escalated", "HIGH")]
    assert "consider pausing the infusion" in ev[0].message
    # stays HIGH while consecutive readings stay at or above the limit
    for k in range(2, 6):
        assert nibp(engine, k * interval, 186, 104) == []
    assert engine.state().alarms[0].priority is Priority.HIGH
    # a reading below the level breaks the chain: the next severe reading is MEDIUM again
    ev = nibp(engine, 6 * interval, 150, 90)
    assert [(e.event, e.priority.name) for e in ev] == [("deescalated", "LOW")] or \
        [e.event for e in ev] == ["ended"]
    ev = nibp(engine, 7 * interval, 185, 100)
    assert ev[-1].priority is Priority.MEDIUM


def test_a_reading_long_after_the_previous_one_is_not_a_confirmation():
    engine = AlarmEngine(PROFILE)
    nibp(engine, 0, 184, 100)
    ev = nibp(engine, 3600, 186, 104)
    assert engine.state().alarms[0].priority is Priority.MEDIUM and not any(e.event == "escalated" for e in ev)


def test_systolic_and_diastolic_in_separate_batches_do_not_end_or_confirm_a_bp_alarm():
    engine = AlarmEngine(PROFILE)
    nibp(engine, 0, 186, 112)
    ev = nibp(engine, 300, 186, 112, batches=2)   # the second reading, in two halves
    assert [(e.event, e.priority.name) for e in ev] == [("escalated", "HIGH")]
    assert [a.priority for a in engine.state().alarms] == [Priority.HIGH]
    engine = AlarmEngine(PROFILE)
    ev = nibp(engine, 0, 120, 112, batches=2)    # only the diastolic is high: one MEDIUM, never HIGH
    assert [(e.event, e.priority.name) for e in ev] == [("started", "MEDIUM")]
    # a half reading below the limit does not end the alarm: the full reading decides
    ev = engine.process([numeric("nibp_sys", 120, "dev", at(600))])
    assert ev == [] and engine.state().alarms
    ev = engine.process([numeric("nibp_dia", 80, "dev", at(600))])
    assert [e.event for e in ev] == ["ended"]


# ------------------------------------------------------------------ latching, timing
def test_a_latched_alarm_stays_visible_but_its_sound_follows_the_condition():
    engine = AlarmEngine(PROFILE, latching=True)
    run(engine, range(0, 2), lambda t: [numeric("spo2", 85, "dev", at(t))])
    assert engine.state(at(1)).audio_priority is Priority.HIGH
    run(engine, range(2, 4), lambda t: [numeric("spo2", 97, "dev", at(t))])
    state = engine.state(at(30))  # long after the owed half burst
    assert state.alarms and state.alarms[0].latched and state.visual_priority is Priority.HIGH
    assert state.audio_priority is None


def test_events_carry_the_instant_the_rules_say_even_when_ticks_are_sparse():
    engine = AlarmEngine(PROFILE)
    engine.process([DeviceCondition(code="connection_lost", active=True, source="dev", time=at(0))])
    [escalated] = engine.tick(at(100))
    assert (escalated.event, escalated.priority.name, escalated.t) == ("escalated", "HIGH", at(60))
    engine = AlarmEngine(PROFILE)          # a link restored before any tick noticed the escalation
    engine.process([DeviceCondition(code="connection_lost", active=True, source="dev", time=at(0))])
    events = engine.process([DeviceCondition(code="connection_lost", active=False, source="dev", time=at(95))])
    assert [(e.event, e.t) for e in events] == [("escalated", at(60)), ("ended", at(95))]
    engine = AlarmEngine(PROFILE)
    engine.process([numeric("rr", 0, "dev", at(0))])
    [no_breath] = engine.tick(at(95))
    assert (no_breath.condition, no_breath.t) == ("no_breath", at(30))


# ------------------------------------------------------------------ the patient boundary
def test_reset_patient_forgets_the_previous_patients_record_but_not_the_live_signal():
    engine = AlarmEngine(PROFILE, latching=True)
    engine.set_baseline({"nibp_sys": 120, "hr": 70})
    run(engine, range(0, 20), vitals)
    nibp(engine, 20, 186, 112)                     # BP high and 55 % above A's baseline
    engine.chart("moaas", 2, at(21))
    run(engine, range(22, 24), lambda t: vitals(t, spo2=85))   # live SpO2 alarm
    run(engine, range(24, 26), lambda t: vitals(t, spo2=86))
    conditions = {a.condition for a in engine.state().alarms}
    assert {"nibp_high", "sbp_rise", "moaas_low", "spo2_low"} <= conditions
    events = engine.reset_patient(at(30), "nurse1")
    assert engine.baseline == {}
    assert {a.condition for a in engine.state().alarms} == {"spo2_low"}
    assert {e.condition for e in events if e.event == "ended"} >= {"nibp_high", "sbp_rise", "moaas_low"}
    # the next reading is a first reading: no confirmation from the previous patient's
    ev = nibp(engine, 300, 186, 112)
    assert [(e.event, e.priority.name) for e in ev] == [("started", "MEDIUM")]
    # parameters of the previous patient are not "lost" for the next one
    assert engine.tick(at(400)) == [] or all(e.kind != "technical" for e in engine.tick(at(400)))


# ------------------------------------------------------------------ profiles written before the audit
def test_a_schema_1_clinic_profile_is_upgraded_on_loading(tmp_path):
    data = json.loads(PROFILE.to_json())
    data["schema_version"] = 1
    data["rules"] = [r for r in data["rules"] if r["id"] not in ("parameter_lost", "dose_reached", "board_unreachable",
                                                                 "device_data")]
    for rule in data["rules"]:
        if rule["id"] == "audio":
            rule["priority"] = "LOW"
        if rule["id"] == "nibp_high":
            rule["levels"][1]["confirm_within_s"] = 300
    for rule in data["rules"]:
        if rule["id"] == "sensor_problem":
            rule["codes"].remove("ecg_leads_off")
    upgraded, changes = migrate_profile_data(data)
    assert len(changes) == 7 and upgraded["schema_version"] == 4
    path = tmp_path / "clinic.json"
    path.write_text(json.dumps(data))
    profile = load_profile(path)
    assert profile.rule("audio").priority is Priority.MEDIUM
    assert profile.rule("nibp_high").levels[1].confirm_within_s == 960
    assert {"parameter_lost", "dose_reached", "board_unreachable", "device_data"} <= {r.id for r in profile.rules}
    assert "ecg_leads_off" in profile.rule("sensor_problem").codes


def test_a_schema_2_clinic_profile_gets_the_board_and_device_rules():
    data = json.loads(PROFILE.to_json())
    data["schema_version"] = 2
    data["rules"] = [r for r in data["rules"] if r["id"] not in ("board_unreachable", "device_data")]
    for rule in data["rules"]:
        if rule["id"] == "sensor_problem":
            rule["codes"].remove("ecg_leads_off")
    upgraded, changes = migrate_profile_data(data)
    assert len(changes) == 3 and upgraded["schema_version"] == 4
    engine = AlarmEngine(AlarmProfile.model_validate(upgraded))
    [leads] = engine.process([DeviceCondition(code="ecg_leads_off", active=True, source="dev", time=at(0))])
    [bed] = engine.process([DeviceCondition(code="wrong_patient", active=True, source="dev", time=at(1))])
    assert (leads.priority, bed.priority) == (Priority.MEDIUM, Priority.MEDIUM)


# ------------------------------------------------------------------ IEC 60601-1-8 burst timing
def _measure(priority: Priority) -> tuple[np.ndarray, np.ndarray]:
    """Pulse durations and the gaps between pulses, measured at the 50 % points of the envelope."""
    x = np.abs(burst_samples(priority).astype(np.float64))
    window = int(np.ceil(SAMPLE_RATE / PATTERNS[priority].fundamental_hz))
    padded = np.pad(x, window)
    envelope = np.lib.stride_tricks.sliding_window_view(padded, 2 * window + 1).max(axis=1)[window:-window]
    on = (envelope >= 0.5 * envelope.max()).astype(int)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on, [0]])))
    rises, falls = edges[0::2] / SAMPLE_RATE, edges[1::2] / SAMPLE_RATE
    return falls - rises, rises[1:] - falls[:-1]


def test_high_burst_timing_measured_on_the_generated_sound():
    durations, gaps = _measure(Priority.HIGH)
    assert len(durations) == 10
    assert all(0.075 <= d <= 0.200 for d in durations)
    t_d, t_s = float(np.median(durations)), float(np.median(gaps))
    assert 0.050 <= t_s <= 0.125
    for i in (0, 1, 3, 5, 6, 8):                       # within the 3 + 2 groups
        assert gaps[i] == pytest.approx(t_s, abs=0.005)
    for i in (2, 7):                                   # between pulses 3–4 and 8–9: 2·t_s + t_d
        assert gaps[i] == pytest.approx(2 * t_s + t_d, abs=0.005)
    assert 0.35 <= gaps[4] <= 1.30                     # between pulses 5 and 6


def test_medium_burst_timing_measured_on_the_generated_sound():
    durations, gaps = _measure(Priority.MEDIUM)
    assert len(durations) == 3
    assert all(0.125 <= d <= 0.250 for d in durations)
    assert all(0.125 <= g <= 0.250 for g in gaps)
