"""The alarm engine against the clinic's default table (every row), and IEC 60601-1-8 behaviour."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.model import DeviceCondition, numeric
from monitor.alarms.audio import PATTERNS, AudioScheduler, burst_samples, minimum_sound_s
from monitor.alarms.engine import AlarmEngine
from monitor.alarms.profile import AlarmProfile, Priority, ProfileError, default_profile, load_profile

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
PROFILE = default_profile()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def feed(engine: AlarmEngine, vital: str, values, start: float = 0.0, step: float = 1.0):
    """Feed one reading per ``step`` seconds; return [(seconds, event)]."""
    out = []
    for i, value in enumerate(values):
        t = start + i * step
        out += [(t, e) for e in engine.process([numeric(vital, value, "dev", at(t))])]
    return out


def started(events, condition=None):
    return [(t, e.priority.name, e.value, e.limit) for t, e in events
            if e.event == "started" and (condition is None or e.condition == condition)]


def nibp(engine: AlarmEngine, seconds: float, sys_: float, dia: float):
    t = at(seconds)
    return engine.process([numeric("nibp_sys", sys_, "dev", t), numeric("nibp_dia", dia, "dev", t),
                           numeric("nibp_mean", round(dia + (sys_ - dia) / 3), "dev", t)])


# ------------------------------------------------------------------ the default table, row by row
@pytest.mark.parametrize("vital,condition,value,delay,priority,limit", [
    ("spo2", "spo2_low", 91, 15, "MEDIUM", 91),       # SpO2 <= 91 %, 15 s
    ("spo2", "spo2_low", 87, 0, "HIGH", 88),          # SpO2 < 88 %, no delay (rapid desaturation)
    ("hr", "hr_high", 121, 30, "MEDIUM", 120),        # HR > 120, 30 s
    ("pr", "hr_high", 121, 30, "MEDIUM", 120),        # ... from the oximeter's pulse rate too
    ("hr", "hr_high", 151, 10, "HIGH", 150),          # HR > 150, 10 s
    ("hr", "hr_low", 39, 10, "HIGH", 40),             # HR < 40, 10 s
    ("hr", "hr_low", 49, 30, "MEDIUM", 50),           # HR < 50, 30 s
    ("rr", "rr_low", 9, 30, "MEDIUM", 10),            # RR < 10, 30 s
    ("rr", "rr_high", 31, 30, "MEDIUM", 30),          # RR > 30, 30 s
    ("etco2", "etco2_high", 51, 30, "MEDIUM", 50),    # EtCO2 > 50, 30 s
])
def test_limit_rows(vital, condition, value, delay, priority, limit):
    engine = AlarmEngine(PROFILE)
    events = feed(engine, vital, [value] * (delay + 3))
    first = started(events, condition)[0]
    assert first == (float(delay), priority, float(value), float(limit))


@pytest.mark.parametrize("vital,value,expected", [
    ("spo2", 92, []), ("spo2", 88, [(15.0, "MEDIUM", 88.0, 91.0)]), ("hr", 120, []), ("hr", 150, [(30.0, "MEDIUM", 150.0, 120.0)]),
    ("hr", 50, []), ("hr", 40, [(30.0, "MEDIUM", 40.0, 50.0)]), ("rr", 10, []), ("rr", 30, []), ("etco2", 50, []),
])
def test_values_at_a_limit_do_not_trigger_that_level(vital, value, expected):
    events = feed(AlarmEngine(PROFILE), vital, [value] * 60)
    assert started(events) == expected


def test_hr_high_escalates_to_high_when_sustained_five_minutes():
    engine = AlarmEngine(PROFILE)
    events = feed(engine, "hr", [125] * 340)
    assert started(events, "hr_high") == [(30.0, "MEDIUM", 125.0, 120.0)]
    escalated = [(t, e.priority.name) for t, e in events if e.event == "escalated"]
    assert escalated == [(330.0, "HIGH")]


def test_ecg_heart_rate_is_preferred_over_pulse_rate():
    engine = AlarmEngine(PROFILE)
    events = []
    for i in range(40):
        events += engine.process([numeric("hr", 80, "dev", at(i)), numeric("pr", 130, "dev", at(i))])
    assert events == []
    events = feed(engine, "pr", [130] * 45, start=40)  # ECG leads off: the oximeter takes over after 10 s
    assert started(events) == [(80.0, "MEDIUM", 130.0, 120.0)]


def test_nibp_low_advisory_medium_confirmed_high_and_single_high():
    engine = AlarmEngine(PROFILE)
    ev = nibp(engine, 0, 162, 90)
    assert [(e.event, e.priority.name, e.value, e.limit) for e in ev] == [("started", "LOW", 162.0, 160.0)]
    assert "repeat NIBP in 5 min" in ev[0].message
    ev = nibp(engine, 200, 150, 101)  # DBP >= 100 alone is enough
    assert [(e.event, e.priority.name) for e in ev] == []
    ev = nibp(engine, 400, 184, 104)
    assert [(e.event, e.priority.name, e.limit) for e in ev] == [("escalated", "MEDIUM", 180.0)]
    ev = nibp(engine, 600, 186, 112)  # confirmed by a second reading within 5 min
    assert [(e.event, e.priority.name) for e in ev] == [("escalated", "HIGH")]
    assert "consider pausing the infusion" in ev[0].message
    ev = nibp(engine, 1000, 130, 80)
    assert [e.event for e in ev] == ["ended"]
    ev = nibp(engine, 1300, 182, 100)  # a MEDIUM reading long after the last one is not confirmed
    assert [(e.event, e.priority.name) for e in ev] == [("started", "MEDIUM")]
    ev = nibp(engine, 2000, 140, 121)  # DBP >= 120: HIGH on a single reading
    assert [(e.event, e.priority.name) for e in ev] == [("escalated", "HIGH")]


def test_nibp_single_severe_reading_and_low_systolic():
    engine = AlarmEngine(PROFILE)
    assert [(e.condition, e.priority.name) for e in nibp(engine, 0, 201, 95)] == [("nibp_high", "HIGH")]
    engine = AlarmEngine(PROFILE)
    assert [(e.condition, e.priority.name, e.limit) for e in nibp(engine, 0, 89, 50)] == [("nibp_low", "MEDIUM", 90.0)]
    assert nibp(AlarmEngine(PROFILE), 0, 90, 50) == []


def test_no_breath_for_30_seconds_is_high():
    engine = AlarmEngine(PROFILE)
    events = feed(engine, "rr", [14] * 5 + [0] * 40)
    assert [(t, p) for t, p, _, _ in started(events, "no_breath")] == [(35.0, "HIGH")]
    events = feed(engine, "rr", [12], start=45)
    assert [e.event for _, e in events if e.condition == "no_breath"] == ["ended"]


def test_no_breath_starts_on_time_even_when_readings_stop():
    engine = AlarmEngine(PROFILE)
    feed(engine, "rr", [0], start=0)
    assert engine.tick(at(29)) == []
    assert [e.condition for e in engine.tick(at(30))] == ["no_breath"]


def test_relative_rules_need_a_baseline():
    engine = AlarmEngine(PROFILE)
    assert feed(engine, "hr", [100] * 5) == []  # no baseline yet: the relative rule is silent
    engine.set_baseline({"hr": 70, "nibp_sys": 120, "etco2": 36})
    events = feed(engine, "hr", [91, 92], start=10)
    assert started(events, "hr_rise") == [(10.0, "MEDIUM", 91.0, 91.0)]   # 70 * 1.3 = 91, inclusive
    ev = nibp(engine, 100, 156, 85)                                       # 120 * 1.3 = 156
    assert [(e.condition, e.priority.name, e.limit) for e in ev] == [("sbp_rise", "MEDIUM", 156.0)]
    events = feed(engine, "etco2", [47] * 32, start=200)                  # 36 + 10 = 46 < 50
    assert started(events, "etco2_high") == [(230.0, "MEDIUM", 47.0, 46.0)]


def test_charted_moaas_two_or_less_is_high():
    engine = AlarmEngine(PROFILE)
    assert engine.chart("moaas", 3, at(0)) == []
    ev = engine.chart("moaas", 2, at(60))
    assert [(e.condition, e.priority.name, e.value) for e in ev] == [("moaas_low", "HIGH", 2.0)]
    assert [e.event for e in engine.chart("moaas", 4, at(900))] == ["ended"]


@pytest.mark.parametrize("code", ["sensor_off", "no_sensor", "cuff_error"])
def test_sensor_technical_alarms_are_medium(code):
    engine = AlarmEngine(PROFILE)
    ev = engine.process([DeviceCondition(code=code, active=True, source="dev", time=at(0))])
    assert [(e.condition, e.kind, e.priority.name) for e in ev] == [(code, "technical", "MEDIUM")]
    ev = engine.process([DeviceCondition(code=code, active=False, source="dev", time=at(5))])
    assert [e.event for e in ev] == ["ended"]


@pytest.mark.parametrize("code", ["stale_data", "connection_lost"])
def test_lost_or_stale_device_escalates_after_60_seconds(code):
    engine = AlarmEngine(PROFILE)
    ev = engine.process([DeviceCondition(code=code, active=True, source="dev", time=at(0))])
    assert [e.priority.name for e in ev] == ["MEDIUM"]
    assert engine.tick(at(59)) == []
    assert [(e.event, e.priority.name) for e in engine.tick(at(60))] == [("escalated", "HIGH")]


def test_audio_unavailable_is_medium_and_stays_visible():
    engine = AlarmEngine(PROFILE)
    ev = engine.set_technical("audio_unavailable", True, at(0), "Alarm audio unavailable: no sound output")
    assert [(e.priority.name, e.kind) for e in ev] == [("MEDIUM", "technical")]
    engine.acknowledge("nurse1", at(1))
    state = engine.state(at(3600))
    assert [a.condition for a in state.alarms] == ["audio_unavailable"] and state.visual_priority == Priority.MEDIUM
    assert state.audio_priority is None


def test_unknown_device_conditions_are_not_alarms():
    engine = AlarmEngine(PROFILE)
    assert engine.process([DeviceCondition(code="pulse_search", active=True, source="d", time=at(0))]) == []


def test_satseconds_with_safety_net():
    rule = PROFILE.rule("spo2_low")
    medium = type(rule.levels[0]).model_validate(
        {**rule.levels[0].model_dump(), "delay_s": 0, "satseconds": 25,
         "safety_net": {"violations": 3, "window_s": 60}})
    profile = AlarmProfile(name="sat", rules=(rule.model_copy(update={"levels": (medium, rule.levels[1])}),))
    engine = AlarmEngine(profile)
    # 2 points below 91 accumulates 2 per second: 25 is passed after 13 s of violation
    events = feed(engine, "spo2", [89] * 20)
    assert started(events)[0][:2] == (13.0, "MEDIUM")
    # three short dips within 60 s alarm regardless of the small area
    engine = AlarmEngine(profile)
    events = feed(engine, "spo2", [90, 95, 95, 90, 95, 95, 90, 95])
    assert started(events)[0][:2] == (6.0, "MEDIUM")


# ------------------------------------------------------------------ IEC 60601-1-8 behaviour
def test_invalid_values_end_a_physiological_alarm_after_10_seconds():
    engine = AlarmEngine(PROFILE)
    feed(engine, "spo2", [85] * 3)
    events = feed(engine, "spo2", [None] * 12, start=3)
    assert [(t, e.event) for t, e in events] == [(13.0, "ended")]


def test_non_latching_alarm_ends_with_its_condition_latching_waits_for_acknowledge():
    engine = AlarmEngine(PROFILE)
    feed(engine, "spo2", [85, 97])
    assert engine.state().alarms == []
    engine = AlarmEngine(PROFILE, latching=True)
    feed(engine, "spo2", [85, 97])
    state = engine.state()
    assert [a.condition for a in state.alarms] == ["spo2_low"] and state.alarms[0].latched
    assert state.visual_priority == Priority.HIGH
    events = engine.acknowledge("nurse1", at(5))
    assert [(e.event, e.user) for e in events] == [("reset", "nurse1")]
    assert engine.state().alarms == []


def test_acknowledge_silences_only_what_is_active_now():
    engine = AlarmEngine(PROFILE)
    feed(engine, "spo2", [85] * 3)
    [ack] = engine.acknowledge("nurse1", at(3))
    assert (ack.event, ack.condition, ack.user) == ("acknowledged", "spo2_low", "nurse1")
    state = engine.state(at(10))
    assert state.visual_priority == Priority.HIGH and state.audio_priority is None
    assert state.inactivation.text == "ACKNOWLEDGED"
    feed(engine, "hr", [155] * 11, start=4)  # a new condition sounds
    assert engine.state(at(20)).audio_priority == Priority.HIGH


def test_escalation_sounds_again_after_acknowledge():
    engine = AlarmEngine(PROFILE)
    feed(engine, "spo2", [90] * 16)
    engine.acknowledge("n", at(16))
    assert engine.state(at(17)).audio_priority is None
    feed(engine, "spo2", [86], start=17)
    assert engine.state(at(18)).audio_priority == Priority.HIGH


def test_audio_pause_is_time_limited_and_a_new_condition_sounds_through_it():
    engine = AlarmEngine(PROFILE, audio_pause_s=120, audio_pause_max_s=180)
    feed(engine, "spo2", [85] * 3)
    [paused] = engine.pause_audio("nurse1", at(3))
    assert (paused.event, paused.user, paused.detail) == ("audio_paused", "nurse1", "120 s")
    state = engine.state(at(50))
    assert state.audio_priority is None and state.visual_priority == Priority.HIGH
    assert state.inactivation.audio_paused and state.inactivation.text == "AUDIO PAUSED 1:13"
    feed(engine, "rr", [6] * 31, start=60)  # new MEDIUM condition during the pause
    assert engine.state(at(95)).audio_priority == Priority.MEDIUM
    events = engine.tick(at(123))
    assert [e.event for e in events] == ["audio_resumed"]
    assert engine.state(at(124)).audio_priority == Priority.HIGH
    with pytest.raises(ValueError, match="maximum of 180 s"):
        engine.pause_audio("nurse1", at(130), 600)


def test_cancel_pause():
    engine = AlarmEngine(PROFILE)
    feed(engine, "spo2", [85] * 3)
    engine.pause_audio("n", at(3), 60)
    assert [e.event for e in engine.cancel_audio_pause("n", at(10))] == ["audio_resumed"]
    assert engine.state(at(11)).audio_priority == Priority.HIGH


def test_short_medium_completes_a_burst_short_high_half_a_burst():
    engine = AlarmEngine(PROFILE)
    feed(engine, "hr", [155] * 11)           # HIGH starts at 10 s
    feed(engine, "hr", [80], start=10.5)      # ... and ends at once
    assert engine.state(at(10.5)).alarms == []
    assert engine.state(at(10.5)).audio_priority == Priority.HIGH
    assert engine.state(at(10 + minimum_sound_s(Priority.HIGH) + 0.01)).audio_priority is None
    assert minimum_sound_s(Priority.HIGH) == pytest.approx(PATTERNS[Priority.HIGH].half_duration_s)
    engine = AlarmEngine(PROFILE)
    nibp(engine, 0, 185, 100)
    nibp(engine, 0.2, 120, 80)
    assert engine.state(at(0.5)).audio_priority == Priority.MEDIUM
    assert engine.state(at(minimum_sound_s(Priority.MEDIUM) + 0.01)).audio_priority is None


def test_alarm_events_print_as_the_record_contract():
    engine = AlarmEngine(PROFILE)
    events = feed(engine, "spo2", [85, 97])
    records = [e.as_record() for _, e in events]
    assert records[0] == {"event": "alarm_started", "condition": "spo2_low", "priority": "HIGH",
                          "value": 85.0, "limit": 88.0, "t": at(0).isoformat()}
    assert records[1]["event"] == "alarm_ended" and records[1]["t"] == at(1).isoformat()


# ------------------------------------------------------------------ profiles
def test_default_profile_matches_the_clinic_table():
    p = PROFILE
    spo2 = p.rule("spo2_low")
    assert [(lv.priority.name, lv.threshold, lv.inclusive, lv.delay_s) for lv in spo2.levels] == \
        [("MEDIUM", 91, True, 15), ("HIGH", 88, False, 0)]
    assert [(lv.priority.name, lv.sys, lv.dia) for lv in p.rule("nibp_high").levels] == \
        [("LOW", 160, 100), ("MEDIUM", 180, 110), ("HIGH", 200, 120)]
    assert p.rule("device_link").escalate_after_s == 60


def test_session_adjustments_stay_inside_the_clinic_bounds():
    adjusted = PROFILE.adjusted({"spo2_low.MEDIUM": 90, "nibp_high.LOW.sys": 150})
    assert adjusted.rule("spo2_low").levels[0].threshold == 90
    assert adjusted.rule("nibp_high").levels[0].sys == 150
    with pytest.raises(ValueError, match="outside the clinic's bounds 85–94"):
        PROFILE.adjusted({"spo2_low.MEDIUM": 80})
    with pytest.raises(ValueError, match="fixed by the clinic"):
        PROFILE.adjusted({"hr_rise.MEDIUM": 100})
    with pytest.raises(ValueError, match="no alarm rule"):
        PROFILE.adjusted({"bp.HIGH": 100})


def test_malformed_profile_files_are_refused_clearly(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(bad)
    data = json.loads(PROFILE.to_json())
    data["rules"][0]["levels"][0]["priority"] = "URGENT"
    bad.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="rules.0"):
        load_profile(bad)
    data = json.loads(PROFILE.to_json())
    data["rules"][0]["levels"][0]["threshold"] = 99  # outside its own bounds
    bad.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="outside its bounds"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "missing.json")
    assert load_profile(_write(tmp_path, PROFILE.to_json())) == PROFILE


def _write(tmp_path, text):
    path = tmp_path / "ok.json"
    path.write_text(text)
    return path


# ------------------------------------------------------------------ audio patterns
def test_burst_patterns_follow_the_standard():
    high, medium, low = PATTERNS[Priority.HIGH], PATTERNS[Priority.MEDIUM], PATTERNS[Priority.LOW]
    assert len(high.onsets) == 10 and 0.075 <= high.pulse_s <= 0.2 and 2.5 <= high.repeat_s <= 15
    assert len(medium.onsets) == 3 and 2.5 <= medium.repeat_s <= 30
    assert len(low.onsets) in (1, 2) and low.repeat_s is None
    for pattern in PATTERNS.values():
        assert 150 <= pattern.fundamental_hz <= 1000
        assert all(300 <= pattern.fundamental_hz * k <= 4000 for k in range(2, 6))
    samples = burst_samples(Priority.HIGH)
    # the effective burst (50 % points) plus the first rise and the last fall ramps
    assert samples.dtype.name == "int16" and high.duration_s * 22050 < len(samples) < (high.duration_s + 0.05) * 22050


def test_audio_scheduler_repeats_and_restarts_on_rising_priority():
    sched = AudioScheduler()
    assert sched.update(0.0, Priority.MEDIUM) == Priority.MEDIUM
    assert sched.update(5.0, Priority.MEDIUM) is None
    assert sched.update(15.0, Priority.MEDIUM) == Priority.MEDIUM
    assert sched.update(16.0, Priority.HIGH) == Priority.HIGH
    assert sched.update(20.0, Priority.HIGH) is None and sched.update(26.0, Priority.HIGH) == Priority.HIGH
    assert sched.update(27.0, None) is None
    assert sched.update(28.0, Priority.LOW) == Priority.LOW and sched.update(100.0, Priority.LOW) is None


# ------------------------------------------------------------------ properties
@settings(max_examples=60, deadline=None)
@given(delay_run=st.integers(min_value=0, max_value=40),
       rule=st.sampled_from([("hr", 125, "hr_high", 30), ("hr", 45, "hr_low", 30), ("rr", 8, "rr_low", 30),
                             ("spo2", 90, "spo2_low", 15), ("hr", 155, "hr_high", 10)]))
def test_no_alarm_before_its_delay_and_never_missed_after(delay_run, rule):
    vital, bad, condition, delay = rule
    engine = AlarmEngine(PROFILE)
    normal = {"hr": 80, "rr": 14, "spo2": 97}[vital]
    events = feed(engine, vital, [normal] * 5 + [bad] * delay_run + [normal] * 5)
    starts = [t for t, e in events if e.event == "started" and e.condition == condition]
    if delay_run <= delay:          # the condition lasted at most its delay: no alarm
        assert starts == []
    else:                           # it lasted longer: the alarm starts exactly at the delay
        assert starts and starts[0] == 5 + delay


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["spo2", "hr", "rr"]), st.integers(0, 200)), min_size=1, max_size=60),
       st.integers(0, 59))
def test_acknowledge_silences_only_what_is_active(readings, ack_at):
    engine = AlarmEngine(PROFILE)
    ids_at_ack: set[int] = set()
    for i, (vital, value) in enumerate(readings):
        if i == ack_at:
            ids_at_ack = {a.id for a in engine.state().alarms if a.active}
            engine.acknowledge("n", at(i))
        engine.process([numeric(vital, value, "d", at(i))])
    for alarm in engine.state().alarms:
        if alarm.id not in ids_at_ack:
            assert not alarm.acknowledged


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=1, max_value=300), st.floats(min_value=0, max_value=600))
def test_an_audio_pause_always_expires(seconds, later):
    engine = AlarmEngine(PROFILE, audio_pause_max_s=300)
    feed(engine, "spo2", [80] * 2)
    engine.pause_audio("n", at(2), seconds)
    state = engine.state(at(2 + later))
    if later < seconds:
        assert state.inactivation.audio_paused and state.inactivation.pause_remaining_s <= seconds + 1e-3
    else:
        engine.tick(at(2 + later))
        assert not engine.state(at(2 + later)).inactivation.audio_paused
        assert engine.state(at(2 + later)).audio_priority == Priority.HIGH


def test_values_the_device_marks_unreliable_do_not_alarm():
    from drivers.model import Quality

    engine = AlarmEngine(PROFILE)
    events = []
    for i in range(30):
        events += engine.process([numeric("spo2", 84, "dev", at(i), quality={Quality.ARTIFACT})])
    assert events == []
    events = feed(engine, "spo2", [84], start=30)
    assert started(events) == [(30.0, "HIGH", 84.0, 88.0)]


def test_changed_limits_apply_without_losing_the_alarm_in_progress():
    engine = AlarmEngine(PROFILE)
    feed(engine, "spo2", [90] * 16)
    [alarm] = engine.state().alarms
    engine.update_profile(PROFILE.adjusted({"spo2_low.MEDIUM": 89}))
    assert [a.id for a in engine.state().alarms] == [alarm.id]
    events = feed(engine, "spo2", [90], start=16)       # 90 is now above the adjusted limit
    assert [e.event for _, e in events] == ["ended"]
    with pytest.raises(ValueError, match="same rules"):
        engine.update_profile(AlarmProfile(name="x", rules=PROFILE.rules[:2]))
