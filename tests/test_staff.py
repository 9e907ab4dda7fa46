"""Staff (roles, PINs, sign-in lockout, signatures) and clinic settings (loading, precedence, changes)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from pydantic import ValidationError

from monitor.settings import (
    ClinicSettings, SettingsError, default_settings_path, load_settings, override_payload,
    parse_cli_overrides, settings_changes, update_settings,
)
from monitor.staff import (
    AccountLocked, Actor, AuthenticationFailed, Authenticator, PermissionDenied, PinPolicyError,
    RefusedAction, Role, Signature, User, check_pin_policy, clock, ensure_utc, hash_pin, new_user,
    nurse_message, require_role, verify_pin,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
FAST = 10  # scrypt log2(N) for tests that are not about the hash cost

NURSE = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
CHARGE = Actor(username="cara", display_name="Cara Diaz", role=Role.CHARGE_NURSE)


# --------------------------------------------------------------------------- PIN policy and hashing

@pytest.mark.parametrize("pin, message", [
    ("12a4", "digits only"),
    ("", "digits only"),
    ("2580", "6–12 digits"),      # 4 digits: a stolen database's PINs fall to an offline search
    ("25801", "6–12 digits"),
    ("1234567890123", "6–12 digits"),
    ("000000", "repeat one digit"),
    ("777777777777", "repeat one digit"),
    ("123456", "consecutive"),
    ("654321", "consecutive"),
    ("789012", "consecutive"),
    ("3210987", "consecutive"),
    ("١٢٣٤٥٦", "digits only"),  # non-ASCII digits
])
def test_weak_or_malformed_pins_are_refused(pin, message):
    with pytest.raises(PinPolicyError, match=message):
        check_pin_policy(pin)
    assert issubclass(PinPolicyError, ValueError)


@pytest.mark.parametrize("pin", ["135791", "258025", "121212", "902100", "135724681357", "123457"])
def test_acceptable_pins_pass(pin):
    check_pin_policy(pin)


def test_a_clinic_may_require_longer_pins_never_shorter():
    check_pin_policy("13579135", min_length=8)
    with pytest.raises(PinPolicyError, match="8–12 digits"):
        check_pin_policy("135791", min_length=8)
    with pytest.raises(PinPolicyError, match="6–12 digits"):
        check_pin_policy("2580", min_length=4)   # below the floor: the floor applies


def test_hash_is_self_describing_salted_and_verifies_in_constant_time():
    stored = hash_pin("258025")  # the production cost, once
    assert stored.startswith("$scrypt$ln=14,r=8,p=1$")
    assert verify_pin("258025", stored)
    assert not verify_pin("258026", stored)
    assert hash_pin("258025", log2_n=FAST) != hash_pin("258025", log2_n=FAST)  # random salt
    assert not verify_pin(None, stored)  # type: ignore[arg-type]


def test_hash_refuses_weak_pin_and_damaged_records():
    with pytest.raises(PinPolicyError):
        hash_pin("111111")
    for damaged in ("", "plain", "$scrypt$ln=30,r=8,p=1$AAAA$AAAA", "$bcrypt$ln=14,r=8,p=1$AAAA$AAAA"):
        with pytest.raises(RefusedAction):
            verify_pin("258025", damaged)


@hsettings(max_examples=25, deadline=None)
@given(st.text(alphabet="0123456789", min_size=6, max_size=12))
def test_policy_accepts_exactly_the_non_trivial_digit_strings(pin):
    trivial = len(set(pin)) == 1 or {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:])} in ({1}, {9})
    if trivial:
        with pytest.raises(PinPolicyError):
            check_pin_policy(pin)
    else:
        check_pin_policy(pin)


# --------------------------------------------------------------------------- users and roles

def test_users_and_actors_validate_names():
    user = new_user("Ann", "  Ann   Lee ", Role.NURSE, "258025", log2_n=FAST)
    assert user.username == "ann" and user.display_name == "Ann Lee"
    assert user.actor == Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
    with pytest.raises(ValidationError, match="User name"):
        Actor(username="1x", display_name="X", role=Role.NURSE)
    with pytest.raises(ValidationError, match="printed name"):
        Actor(username="xx", display_name="   ", role=Role.NURSE)
    with pytest.raises(ValidationError):
        User(username="ann", display_name="Ann", role=Role.NURSE, pin_hash="2580")  # not a hash


def test_require_role_orders_roles_and_names_the_user():
    require_role(CHARGE, Role.NURSE)
    require_role(CHARGE, Role.CHARGE_NURSE)
    require_role(NURSE, Role.NURSE)
    with pytest.raises(PermissionDenied, match=r"Only a charge nurse may change clinic settings \(signed in: Ann Lee, nurse\)"):
        require_role(NURSE, Role.CHARGE_NURSE, "change clinic settings")
    assert issubclass(PermissionDenied, ValueError)


# --------------------------------------------------------------------------- sign-in

@pytest.fixture(scope="module")
def users():
    return [new_user("ann", "Ann Lee", Role.NURSE, "258025", log2_n=FAST),
            new_user("cara", "Cara Diaz", Role.CHARGE_NURSE, "135791", log2_n=FAST)]


def test_sign_in_returns_the_actor_and_success_resets_failures(users):
    auth = Authenticator(users)
    assert auth.authenticate("ANN ", "258025", T0) == users[0].actor
    with pytest.raises(AuthenticationFailed, match="4 attempts left"):
        auth.authenticate("ann", "000000", T0)
    assert auth.failures("ann") == 1
    auth.authenticate("ann", "258025", T0)
    assert auth.failures("ann") == 0


def test_five_wrong_pins_lock_for_five_minutes(users):
    auth = Authenticator(users)
    for i in range(4):
        with pytest.raises(AuthenticationFailed, match=f"{4 - i} attempt"):
            auth.authenticate("ann", "999999", T0 + timedelta(seconds=i))
    with pytest.raises(AccountLocked, match="locked until") as locked:
        auth.authenticate("ann", "999999", T0 + timedelta(seconds=4))
    until = T0 + timedelta(seconds=4, minutes=5)
    assert locked.value.until == until
    # even the right PIN is refused while locked, and the lock is not extended
    with pytest.raises(AccountLocked, match=f"try again at {clock(until)}"):
        auth.authenticate("ann", "258025", until - timedelta(seconds=1))
    assert auth.locked_until("ann", until - timedelta(seconds=1)) == until
    assert auth.locked_until("ann", until) is None
    assert auth.authenticate("ann", "258025", until) == users[0].actor
    # other users are unaffected
    assert auth.authenticate("cara", "135791", T0).role is Role.CHARGE_NURSE


def test_unknown_and_inactive_users_get_the_same_answer(users):
    inactive = users[0].model_copy(update={"active": False})
    auth = Authenticator([inactive])
    for name, pin in (("ann", "258025"), ("nobody", "258025")):
        with pytest.raises(AuthenticationFailed, match="Wrong user name or PIN"):
            auth.authenticate(name, pin, T0)
    with pytest.raises(RefusedAction, match="no time zone"):
        auth.authenticate("ann", "258025", datetime(2026, 3, 2, 9, 0))


# --------------------------------------------------------------------------- signatures and helpers

def test_signature_records_printed_name_time_and_meaning():
    sig = Signature(by=NURSE, t=T0, meaning="reviewed and closed")
    assert sig.printed_name == "Ann Lee"
    assert "Ann Lee (nurse)" in sig.text() and "reviewed and closed" in sig.text()
    assert Signature.model_validate(sig.to_payload()) == sig
    with pytest.raises(ValidationError, match="meaning"):
        Signature(by=NURSE, t=T0, meaning="")
    with pytest.raises(ValidationError):
        Signature(by=NURSE, t=datetime(2026, 1, 1), meaning="reviewed and closed")


def test_time_helpers():
    local = T0.astimezone(timezone(timedelta(hours=-5)))
    assert ensure_utc(local) == T0 and ensure_utc(local).utcoffset() == timedelta(0)
    with pytest.raises(RefusedAction, match="no time zone"):
        ensure_utc(datetime(2026, 1, 1))
    assert ":" in clock(T0) and len(clock(T0)) == 5
    assert len(clock(T0 + timedelta(seconds=30))) == 8


def test_nurse_message_strips_pydantic_noise():
    with pytest.raises(ValidationError) as exc:
        Actor(username="1x", display_name="Ann", role="boss")
    text = nurse_message(exc.value)
    assert "User name '1x'" in text and "role:" in text and "[type=" not in text
    assert nurse_message(RefusedAction("plain")) == "plain"


# --------------------------------------------------------------------------- clinic settings

def test_shipped_defaults_file_matches_the_model_defaults():
    data = json.loads(default_settings_path().read_text(encoding="utf-8"))
    assert ClinicSettings.model_validate(data) == ClinicSettings()
    s = load_settings(default_settings_path(), environ={})
    assert s.alarm_latching is False and s.audio_pause_s == 120 and s.audio_pause_max_s == 120
    assert s.schedules.iv.nibp_interval_min == 10 and s.schedules.iv.nibp_interval_high_risk_min == 5
    assert s.discharge_min_after_infusion_min == 60 and s.esketamine_monitoring_min == 120
    assert s.ketamine_dose_bounds_mg_per_kg == (0.1, 1.5) and s.min_patient_age_years == 18


@pytest.mark.parametrize("changes, message", [
    ({"audio_pause_max_s": 600}, "Maximum audio pause 600 s is outside 60–300 s"),
    ({"audio_pause_s": 200}, "Audio pause 200 s must be 30 s – the clinic maximum 120 s"),
    ({"esketamine_monitoring_min": 90}, "Esketamine monitoring 90 min is below the required 120 min"),
    ({"discharge_min_after_infusion_min": 10}, "outside 30–240 min"),
    ({"ketamine_dose_bounds_mg_per_kg": [0.5, 3.0]}, "must lie within 0.05–2 mg/kg"),
    ({"ketamine_typical_dose_mg_per_kg": 1.8}, "Typical ketamine dose 1.8 mg/kg is outside"),
    ({"schedules": {"iv": {"nibp_interval_min": 20}}}, "NIBP interval during the infusion 20 min is outside 5–15 min"),
    ({"schedules": {"grace_min": 0}}, "Grace period"),
    ({"min_patient_age_years": 5}, "Minimum patient age 5 years"),
    ({"clinic_name": ""}, "clinic name"),
    ({"schema_version": 2}, "schema_version 2 is not supported"),
    ({"bogus": 1}, "bogus"),
])
def test_settings_out_of_bounds_are_refused(changes, message):
    with pytest.raises(ValidationError, match=message):
        ClinicSettings.model_validate(changes)


def test_precedence_command_line_over_environment_over_file(tmp_path):
    override = tmp_path / "clinic.json"
    override.write_text(json.dumps({"schema_version": 1, "clinic_name": "Harbor Clinic",
                                    "schedules": {"iv": {"nibp_interval_min": 12}}, "audio_pause_max_s": 300}))
    env = {"VIGIL_SETTING_SCHEDULES__IV__NIBP_INTERVAL_MIN": "8", "VIGIL_SETTING_ALARM_LATCHING": "true",
           "VIGIL_DB": "/ignored"}
    s = load_settings(default_settings_path(), override, environ=env, cli=["schedules.iv.nibp_interval_min=6"])
    assert s.clinic_name == "Harbor Clinic" and s.audio_pause_max_s == 300
    assert s.alarm_latching is True
    assert s.schedules.iv.nibp_interval_min == 6
    assert s.schedules.iv.recovery_nibp_interval_min == 15  # untouched nested defaults survive
    assert load_settings(default_settings_path(), override, environ=env).schedules.iv.nibp_interval_min == 8
    assert load_settings(default_settings_path(), override, environ={}).schedules.iv.nibp_interval_min == 12
    assert load_settings(default_settings_path(), tmp_path / "missing.json", environ={}) == ClinicSettings()


def test_malformed_files_name_the_file_and_field(tmp_path):
    bad_json = tmp_path / "broken.json"
    bad_json.write_text('{"clinic_name": "x",\n "audio_pause_s": }')
    with pytest.raises(SettingsError, match=r"broken\.json: not valid JSON \(line 2"):
        load_settings(default_settings_path(), bad_json, environ={})
    bad_value = tmp_path / "clinic.json"
    bad_value.write_text(json.dumps({"schedules": {"iv": {"nibp_interval_min": 30}}}))
    with pytest.raises(SettingsError, match=r"clinic\.json: schedules\.iv\.nibp_interval_min: NIBP interval"):
        load_settings(default_settings_path(), bad_value, environ={})
    unknown = tmp_path / "typo.json"
    unknown.write_text(json.dumps({"alarm_latchin": True}))
    with pytest.raises(SettingsError, match=r"typo\.json: alarm_latchin: unknown setting"):
        load_settings(default_settings_path(), unknown, environ={})
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema_version": 7}))
    with pytest.raises(SettingsError, match="schema_version 7 is newer"):
        load_settings(default_settings_path(), newer, environ={})
    array = tmp_path / "array.json"
    array.write_text("[]")
    with pytest.raises(SettingsError, match="top level must be a JSON object"):
        load_settings(default_settings_path(), array, environ={})
    with pytest.raises(SettingsError, match="missing-default.json: settings file not found"):
        load_settings(tmp_path / "missing-default.json", environ={})
    with pytest.raises(SettingsError, match="environment variable VIGIL_SETTING_AUDIO_PAUSE_MAX_S"):
        load_settings(default_settings_path(), environ={"VIGIL_SETTING_AUDIO_PAUSE_MAX_S": "9000"})
    with pytest.raises(SettingsError, match="command line: discharge_aldrete_min"):
        load_settings(default_settings_path(), environ={}, cli=["discharge_aldrete_min=12"])
    with pytest.raises(SettingsError, match="field=value"):
        parse_cli_overrides(["nonsense"])


def test_only_a_charge_nurse_updates_settings_and_changes_are_listed():
    current = ClinicSettings()
    with pytest.raises(PermissionDenied, match="Only a charge nurse may change clinic settings"):
        update_settings(current, {"alarm_latching": True}, NURSE)
    new = update_settings(current, {"alarm_latching": True, "schedules.iv.nibp_interval_min": 15}, CHARGE)
    assert new.alarm_latching and new.schedules.iv.nibp_interval_min == 15
    assert current.alarm_latching is False  # unchanged
    assert settings_changes(current, new) == [("alarm_latching", False, True),
                                              ("schedules.iv.nibp_interval_min", 10, 15)]
    assert override_payload(new, current) == {"schema_version": 1, "alarm_latching": True,
                                              "schedules": {"iv": {"nibp_interval_min": 15}}}
    with pytest.raises(SettingsError, match="change: esketamine_monitoring_min: Esketamine monitoring 60 min"):
        update_settings(current, {"esketamine_monitoring_min": 60}, CHARGE)
    with pytest.raises(SettingsError, match="schema_version cannot be changed"):
        update_settings(current, {"schema_version": 2}, CHARGE)
