"""Role checks live in monitor/ and take an authenticated token (issue 11, "Settings and access").

The issue saw a nurse add a charge nurse, reset the chief's PIN and deactivate the chief through the
API, which took a self-asserted ``Actor``. Now every privileged action of the application layer takes
the session token of a sign-in and finds the user itself: a made-up ``Actor`` is refused, so is a
token that ended (screen locked, account deactivated, expired); nothing outside monitor/app writes
staff accounts (the clinic record's copy aside, audited as such)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from monitor.alarms.profile import default_profile
from monitor.app.clinic import Clinic
from monitor.app.pipeline import open_pipeline
from monitor.app.records import Records
from monitor.app.service import SessionService
from monitor.patient import Patient
from monitor.protocols import EsketaminePlan, KetamineIVPlan
from monitor.settings import ClinicSettings
from monitor.staff import AccountLocked, Actor, AuthenticationFailed, NotSignedIn, PermissionDenied, Role, SignIns
from monitor.store import SessionStore
from tests.factories import TEST_PIN, ensure_account, sign_in

ROOT = Path(__file__).resolve().parents[2]
DEVICE = "sim://?scenario=normal&speed=60&waves=0&nibp=3600"
NURSE = Actor(username="nina", display_name="Nina Park", role=Role.NURSE)
CHIEF = Actor(username="chief", display_name="Chris Chief", role=Role.CHARGE_NURSE)


@pytest.fixture
def clinic(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_CONFIG_DIR", str(tmp_path / "config"))
    store = SessionStore(tmp_path / "s.sqlite")
    for actor in (NURSE, CHIEF):
        ensure_account(store, actor)
    yield Clinic(store)
    store.close()


def audit_actions(store: SessionStore) -> list[str]:
    return [r.action for r in store.audit_rows()]


def test_a_nurse_cannot_add_a_charge_nurse_reset_the_chiefs_pin_or_deactivate_the_chief(clinic):
    nurse = clinic.authenticate(NURSE.username, TEST_PIN)
    before = audit_actions(clinic.store)
    with pytest.raises(PermissionDenied, match="Only a charge nurse may add staff accounts"):
        clinic.add_user(nurse, "mallory", "Mallory M", Role.CHARGE_NURSE, "975310", "975310")
    with pytest.raises(PermissionDenied, match="reset another user's PIN"):
        clinic.reset_pin(nurse, CHIEF.username, "975310", "975310")
    with pytest.raises(PermissionDenied, match="deactivate"):
        clinic.set_active(nurse, CHIEF.username, False)
    assert clinic.store.get_user("mallory") is None and clinic.store.get_user(CHIEF.username).active
    assert audit_actions(clinic.store) == before      # nothing written


def test_a_made_up_actor_is_refused_wherever_a_token_is_asked(clinic):
    """What the issue did: claim to be a charge nurse by passing an Actor."""
    for action in (lambda: clinic.add_user(CHIEF, "mallory", "Mallory M", Role.CHARGE_NURSE, "975310", "975310"),
                   lambda: clinic.reset_pin(CHIEF, CHIEF.username, "975310", "975310"),
                   lambda: clinic.set_active(CHIEF, NURSE.username, False),
                   lambda: clinic.save_settings(CHIEF, ClinicSettings(), {"clinic_name": "X"}, default_profile(), {}),
                   lambda: clinic.add_user("forged-token", "mallory", "Mallory M", Role.NURSE, "975310", "975310"),
                   lambda: clinic.add_user(None, "mallory", "Mallory M", Role.NURSE, "975310", "975310")):
        with pytest.raises(NotSignedIn):
            action()
    assert clinic.store.get_user("mallory") is None


def test_the_charge_nurse_signed_in_does_it_and_the_store_audits_it(clinic):
    chief = clinic.authenticate(CHIEF.username, TEST_PIN)
    clinic.add_user(chief, "ann", "Ann Lee", Role.NURSE, "975310", "975310")
    nurse = clinic.authenticate(NURSE.username, TEST_PIN)
    clinic.set_active(chief, NURSE.username, False)
    with pytest.raises(NotSignedIn):                   # the deactivated nurse's sign-in ended at once
        clinic.actor(nurse)
    rows = [(r.user, r.action, r.payload.get("login")) for r in clinic.store.audit_rows()]
    assert ("chief", "user_added", "ann") in rows and ("chief", "user_deactivated", "nina") in rows
    assert ("chief", "signed_in", "chief") in rows


def test_a_sign_in_ends_with_the_screen_lock_and_expires():
    now = [0.0]
    signins = SignIns(lifetime_s=60, clock=lambda: now[0])
    token = signins.issue(CHIEF)
    assert signins.actor(token) == CHIEF
    now[0] = 59.9
    assert signins.actor(token) == CHIEF
    now[0] = 60.0
    with pytest.raises(NotSignedIn, match="expired"):
        signins.actor(token)
    again = signins.issue(CHIEF)
    signins.end(again)                                 # the screen was locked
    with pytest.raises(NotSignedIn, match="sign in again"):
        signins.actor(again)
    assert len({signins.issue(CHIEF) for _ in range(100)}) == 100   # random, never reused


@pytest.fixture
def chair(tmp_path):
    store = SessionStore(tmp_path / "chair.sqlite")
    service = SessionService(open_pipeline(DEVICE, store, ClinicSettings(), default_profile(), tick_s=0.05))
    service.pipeline.start()
    yield service
    service.pipeline.stop()
    store.close()


def test_the_session_services_privileged_commands_refuse_a_made_up_actor(chair):
    chair.start_session(Patient(display_name="Jo Doe", weight_kg=70), KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70),
                        NURSE)
    for action in (lambda: chair.set_alarm_limits({"spo2_low.MEDIUM": 90}, CHIEF),
                   lambda: chair.close_session(CHIEF, override_reason="forged"),
                   lambda: chair.abort_session(CHIEF, "forged"),
                   lambda: chair.apply_settings(CHIEF, ClinicSettings(), default_profile())):
        with pytest.raises(NotSignedIn):
            action()
    assert chair.recording and chair.session_profile.rule("spo2_low").levels[0].threshold == 91
    nurse = sign_in(chair, NURSE)
    with pytest.raises(PermissionDenied, match="Only a charge nurse may change clinic settings"):
        chair.apply_settings(nurse, ClinicSettings(alarm_latching=True), default_profile())
    assert not chair.pipeline.engine.latching
    chair.set_alarm_limits({"spo2_low.MEDIUM": 90}, nurse)
    chair.abort_session(nurse, "treatment deferred")
    record = chair.pipeline.store.get_session(chair.pipeline.store.list_sessions()[0].id)
    assert record.status == "aborted" and record.signed_name == "Nina Park"


def test_the_clinically_stable_sign_off_takes_a_token(chair):
    chair.start_session(Patient(display_name="Jo Doe", weight_kg=70),
                        EsketaminePlan(dose_mg=56, lot_number="LOT-1"), NURSE)
    with pytest.raises(NotSignedIn):
        chair.sign_clinically_stable(NURSE)
    assert chair.session().devices.signoff is None


def test_a_late_entry_takes_a_token(chair):
    sid = chair.start_session(Patient(display_name="Jo Doe", weight_kg=70),
                              KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), NURSE)
    nurse = sign_in(chair, NURSE)
    chair.abort_session(nurse, "treatment deferred")
    store = chair.pipeline.store
    records = Records(store, chair.signins)
    record = store.get_session(sid)
    at = record.started_at + (record.ended_at - record.started_at) / 2  # within the session however short it was
    with pytest.raises(NotSignedIn):
        records.add_late_entry(sid, {"kind": "note", "text": "x"}, at, NURSE, "charted later")
    records.add_late_entry(sid, {"kind": "note", "text": "x"}, at, nurse, "charted later")
    assert [e.user for e in store.entries(sid) if e.is_late] == ["nina"]


def test_nothing_outside_the_application_layer_writes_staff_accounts():
    """The store's account writers are called only by monitor/app/clinic.py (after its role checks),
    monitor/clinic/accounts.py (the clinic record's copy, audited as clinic-record) and
    monitor/store/salvage.py (the accounts of a damaged file copied into a new one, audited as
    vigil-salvage); no SQL writes the users table anywhere else."""
    writers = {"add_user", "set_pin_hash", "set_user_active", "record_sign_in_failure", "clear_sign_in_failures"}
    allowed = {"monitor/app/clinic.py", "monitor/clinic/accounts.py", "monitor/store/users.py",
               "monitor/store/salvage.py"}
    found = []
    for folder in ("drivers", "monitor", "ui"):
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text("utf-8")
            # a call of a writer names it: only the files naming one are parsed (parsing them all took a second)
            nodes = ast.walk(ast.parse(text)) if any(name in text for name in writers) else ()
            for node in nodes:
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in writers:
                    receiver = ast.unparse(node.func.value)
                    if rel not in allowed and "clinic" not in receiver:   # Clinic's own methods are fine
                        found.append(f"{rel}:{node.lineno} {receiver}.{node.func.attr}")
            upper = text.upper()
            if rel not in ("monitor/store/users.py", "monitor/store/schema.py") and (
                    "INSERT INTO USERS" in upper or "UPDATE USERS" in upper or "INTO SIGN_IN_FAILURES" in upper):
                found.append(f"{rel}: SQL writes users")
    assert found == []


def test_a_desk_on_a_read_only_record_refuses_account_changes(tmp_path):
    path = tmp_path / "s.sqlite"
    with SessionStore(path) as store:
        ensure_account(store, CHIEF)
    with SessionStore(path, readonly=True) as store:
        clinic = Clinic(store)
        chief = clinic.authenticate(CHIEF.username, TEST_PIN)   # sign-in works, counts kept in memory
        with pytest.raises(ValueError, match="read-only"):
            clinic.add_user(chief, "ann", "Ann Lee", Role.NURSE, "975310", "975310")
        for _ in range(4):
            with pytest.raises(AuthenticationFailed):
                clinic.authenticate(CHIEF.username, "975310")
        with pytest.raises(AccountLocked):           # a lock still holds at this desk
            clinic.authenticate(CHIEF.username, "975310")
