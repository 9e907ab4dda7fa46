"""Unsafe alarm profiles are refused (issue 11, "Settings and access"): hard floors and ceilings and the
required alarms, at load (the clinic's file), at save (the charge nurse) and at the chair (a session's
limits); a profile that passes them alarms on a desaturation to 84 %."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from drivers.model import DeviceCondition, numeric
from monitor.alarms.engine import AlarmEngine
from monitor.alarms.profile import (
    AlarmProfile, Priority, ProfileError, UnsafeProfileError, default_profile, load_profile,
)
from monitor.alarms.safety import LIMIT_FLOORS, TECHNICAL_REQUIRED, profile_problems
from monitor.app.chair import Chair, ChairSetupError
from monitor.app.clinic import Clinic
from monitor.app.pipeline import open_pipeline
from monitor.app.service import SessionService
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore
from tests.factories import TEST_PIN, ensure_account, sign_in

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
PROFILE = default_profile()
CHIEF = Actor(username="chief", display_name="Chris Chief", role=Role.CHARGE_NURSE)


def data() -> dict:
    return json.loads(PROFILE.to_json())


def rule(d: dict, rule_id: str) -> dict:
    return next(r for r in d["rules"] if r["id"] == rule_id)


def write(tmp_path, d: dict):
    path = tmp_path / "alarm_profile.json"
    path.write_text(json.dumps(d))
    return path


def desaturate(profile: AlarmProfile, value: float = 84, seconds: int = 40) -> list:
    engine = AlarmEngine(profile)
    events = []
    for i in range(seconds):
        events += engine.process([numeric("spo2", value, "dev", T0 + timedelta(seconds=i))])
    return [e for e in events if e.event in ("started", "escalated") and e.condition == "spo2_low"]


def test_the_shipped_default_passes():
    assert profile_problems(PROFILE) == []


def test_spo2_limits_of_50_and_40_are_refused_at_load_naming_each(tmp_path):
    d = data()
    spo2 = rule(d, "spo2_low")
    spo2["levels"][0].update(threshold=50, bounds=[40, 94])
    spo2["levels"][1].update(threshold=40, bounds=[30, 90])
    unsafe = AlarmProfile.model_validate(d)
    assert desaturate(unsafe) == []        # what the issue saw: 84 % raised nothing
    with pytest.raises(UnsafeProfileError) as caught:
        load_profile(write(tmp_path, d))
    message = str(caught.value)
    assert "alarm_profile.json" in message
    assert "SpO2 low MEDIUM: limit 50 % is below the hard floor 85 %" in message
    assert "SpO2 low HIGH: limit 40 % is below the hard floor 80 %" in message
    assert "bounds 40–94 % let a chair go below the hard floor 85 %" in message
    assert isinstance(caught.value, ProfileError) and len(caught.value.problems) == 4


@pytest.mark.parametrize("removed,expected", [
    (("spo2_low",), ["SpO2 low: the rule is missing"]),
    (("device_link",), ["'connection_lost': no rule raises it", "'stale_data': no rule raises it"]),
    (("recording",), ["'recording_failed': no rule raises it"]),
    (("audio",), ["'audio_unavailable': no rule raises it"]),
    (("sensor_problem",), ["'sensor_off': no rule raises it", "'cuff_error': no rule raises it"]),
    (("parameter_lost",), ["Parameter lost: the rule is missing"]),
    (("no_breath", "moaas_low", "nibp_low"), ["No breath: the rule is missing", "MOAA/S 2 or less: the rule is missing",
                                              "Blood pressure low: no MEDIUM level"]),
])
def test_a_profile_without_a_required_rule_is_refused(tmp_path, removed, expected):
    d = data()
    d["rules"] = [r for r in d["rules"] if r["id"] not in removed]
    with pytest.raises(UnsafeProfileError) as caught:
        load_profile(write(tmp_path, d))
    for text in expected:
        assert text in str(caught.value)


def test_loosened_delays_priorities_and_escalations_are_refused():
    d = data()
    rule(d, "spo2_low")["levels"][0]["delay_s"] = 120
    rule(d, "spo2_low")["levels"][1]["delay_s"] = 30
    rule(d, "hr_high")["levels"][0].pop("escalate_after_s")
    rule(d, "hr_high")["levels"][0].pop("escalate_to")
    rule(d, "device_link").update(escalate_after_s=600)
    rule(d, "recording")["priority"] = "LOW"
    rule(d, "no_breath")["seconds"] = 60
    rule(d, "nibp_high")["levels"][2]["dia"] = None
    rule(d, "sbp_rise")["levels"][0]["relative"] = {"percent": 60}
    pl = rule(d, "parameter_lost")
    pl["parameters"] = [p for p in pl["parameters"] if p["id"] != "etco2_lost"]
    problems = "\n".join(profile_problems(AlarmProfile.model_validate(d)))
    for text in ("SpO2 low MEDIUM: delay 120 s is longer than the most allowed 15 s",
                 "SpO2 low HIGH: delay 30 s is longer than the most allowed 0 s",
                 "Heart rate high MEDIUM: it must escalate to HIGH when sustained 300 s",
                 "'connection_lost': it must become HIGH within 60 s",
                 "'recording_failed': LOW is too low",
                 "No breath: a HIGH alarm after at most 30 s is required (the profile has HIGH after 60 s)",
                 "Blood pressure high (severe) HIGH: it has no diastolic threshold",
                 "Systolic BP rise from baseline MEDIUM: 60 % above baseline is more than the most allowed 30 %",
                 "Parameter lost: EtCO2 is not watched"):
        assert text in problems


def test_rules_are_found_by_what_they_watch_not_by_their_ids():
    d = data()
    rule(d, "spo2_low")["id"] = "saturation"
    rule(d, "recording")["id"] = "disk"
    assert profile_problems(AlarmProfile.model_validate(d)) == []


def loosest() -> AlarmProfile:
    """The shipped default with every SpO2 limit at its hard floor and the longest delay allowed."""
    d = data()
    levels = rule(d, "spo2_low")["levels"]
    levels[0].update(threshold=85, inclusive=False, delay_s=15)
    levels[1].update(threshold=80, inclusive=False, delay_s=0)
    profile = AlarmProfile.model_validate(d)
    assert profile_problems(profile) == []
    return profile


def test_any_accepted_profile_alarms_on_a_desaturation_to_84():
    events = desaturate(loosest(), 84)
    assert events and events[0].priority >= Priority.MEDIUM
    assert (events[0].t - T0).total_seconds() <= 15
    d = json.loads(loosest().to_json())
    rule(d, "spo2_low")["levels"][0].update(satseconds=25, safety_net={"violations": 3, "window_s": 60})
    with_satseconds = AlarmProfile.model_validate(d)
    assert profile_problems(with_satseconds) == []
    events = desaturate(with_satseconds, 84)
    assert events and (events[0].t - T0).total_seconds() <= 25
    rule(d, "spo2_low")["levels"][0]["satseconds"] = 50
    assert any("SatSeconds 50 is more than the most allowed 25" in p
               for p in profile_problems(AlarmProfile.model_validate(d)))


def test_every_floor_and_required_code_is_checked():
    """Dropping each required technical code, or pushing each limit past its hard limit, is refused."""
    for code in TECHNICAL_REQUIRED:
        d = data()
        for r in d["rules"]:
            if r.get("kind") == "technical" and code in r["codes"]:
                r["codes"] = [c for c in r["codes"] if c != code] or ["unused_code"]
        assert any(code in p for p in profile_problems(AlarmProfile.model_validate(d))), code
    for floor in LIMIT_FLOORS:
        if floor.limit is None:
            continue
        d = data()
        for r in d["rules"]:
            if r.get("kind") == "limit" and r["direction"] == floor.direction and set(floor.vitals) <= set(r["vitals"]):
                for level in r["levels"]:
                    if level.get("threshold") is not None:
                        level.pop("bounds", None)
                        level["threshold"] = floor.limit + (-5 if floor.direction == "low" else 5)
        problems = profile_problems(AlarmProfile.model_validate(d))
        assert any(p.startswith(floor.what) for p in problems), floor


def test_a_profile_whose_bounds_go_past_a_floor_refuses_every_change_at_the_chair():
    """A profile held in memory (never loaded from a file) with bounds past a floor: the chair's change
    is still refused, naming the floor."""
    d = data()
    rule(d, "spo2_low")["levels"][0]["bounds"] = [50, 94]
    wide = AlarmProfile.model_validate(d)
    for value in (60, 88):
        with pytest.raises(UnsafeProfileError, match="bounds 50–94 % let a chair go below the hard floor 85 %"):
            wide.adjusted({"spo2_low.MEDIUM": value})
    assert PROFILE.adjusted({"spo2_low.MEDIUM": 88}).rule("spo2_low").levels[0].threshold == 88


def test_a_technical_rule_escalating_in_time_or_high_from_the_start_passes():
    d = data()
    link = rule(d, "device_link")
    link.update(priority="HIGH")
    link.pop("escalate_after_s")
    link.pop("escalate_to")
    assert profile_problems(AlarmProfile.model_validate(d)) == []
    engine = AlarmEngine(AlarmProfile.model_validate(d))
    [event] = engine.process([DeviceCondition(code="connection_lost", active=True, source="dev", time=T0)])
    assert event.priority is Priority.HIGH


# ------------------------------------------------------------------ at save, at the chair, at start-up
def unsafe_in_memory() -> AlarmProfile:
    """A profile that never came from a file: its device-link rule removed."""
    d = data()
    d["rules"] = [r for r in d["rules"] if r["id"] != "device_link"]
    return AlarmProfile.model_validate(d)


def test_the_charge_nurses_save_refuses_an_unsafe_profile_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_CONFIG_DIR", str(tmp_path / "config"))
    with SessionStore(tmp_path / "s.sqlite") as store:
        ensure_account(store, CHIEF)
        clinic = Clinic(store)
        chief = clinic.authenticate(CHIEF.username, TEST_PIN)
        before = len(store.audit_rows())
        with pytest.raises(UnsafeProfileError, match="'connection_lost': no rule raises it"):
            clinic.save_settings(chief, ClinicSettings(), {}, unsafe_in_memory(), {"spo2_low.MEDIUM": 90})
        assert not (tmp_path / "config" / "alarm_profile.json").exists()
        assert [r.action for r in store.audit_rows()[before:]] == []


def test_the_chair_refuses_an_unsafe_profile_to_apply_or_to_start_with(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_CONFIG_DIR", str(tmp_path / "config"))
    d = data()
    rule(d, "spo2_low")["levels"][0].update(threshold=50, bounds=[40, 94])
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", d)
    with pytest.raises(ChairSetupError, match="alarm_profile.json: refused.*bounds 40–94 % let a chair go below"):
        Chair("sim://?scenario=normal&waves=0", str(tmp_path / "chair.sqlite"))
    with SessionStore(tmp_path / "s.sqlite") as store:
        service = SessionService(open_pipeline("sim://?scenario=normal&waves=0", store, ClinicSettings(), PROFILE))
        chief = sign_in(service, CHIEF)
        with pytest.raises(UnsafeProfileError):
            service.apply_settings(chief, ClinicSettings(), unsafe_in_memory())
        assert service.profile is PROFILE
