"""PINs (issue 11, "Settings and access"): a lockout survives a restart, failed sign-ins are audited,
PINs have at least 6 digits (a clinic may ask for more), and a shorter PIN already in use must be
changed at the next sign-in — said to the user, never a lockout."""

from __future__ import annotations

import functools
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog

from monitor.alarms.profile import default_profile
from monitor.app.clinic import Clinic
from monitor.settings import ClinicSettings, SettingsError, update_settings
from monitor.staff import (
    AccountLocked, Actor, AuthenticationFailed, PinChangeRequired, PinPolicyError, Role, _b64, _scrypt,
)
from monitor.store import SessionStore
from tests.factories import TEST_PIN, TEST_PIN_LOG2_N, ensure_account, make_context, sign_in
from ui.dialogs import SignInDialog

ROOT = Path(__file__).resolve().parents[2]
NURSE = Actor(username="nina", display_name="Nina Park", role=Role.NURSE)
CHIEF = Actor(username="chief", display_name="Chris Chief", role=Role.CHARGE_NURSE)
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)


@functools.cache
def legacy_hash(pin: str) -> str:
    """A PIN hash as Vigil wrote it before PINs had 6 digits (hash_pin now refuses such a PIN), at the
    tests' scrypt cost (tests/factories.py: the stored string carries its cost; sign-in verifies it by the
    same code as at the production cost)."""
    salt = b"legacy-salt-0001"
    ln = TEST_PIN_LOG2_N
    return f"$scrypt$ln={ln},r=8,p=1${_b64(salt)}${_b64(_scrypt(pin, salt, ln, 8, 1, 32))}"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "s.sqlite"
    with SessionStore(path) as store:
        ensure_account(store, NURSE)
        ensure_account(store, CHIEF)
        store.add_user("old", "Olga Old", "nurse", legacy_hash("2580"), by=None)
    return path


def test_a_lockout_survives_reopening_the_store_and_every_failure_is_audited(db):
    with SessionStore(db) as store:
        clinic = Clinic(store)
        for i in range(4):
            with pytest.raises(AuthenticationFailed, match=f"{4 - i} attempt"):
                clinic.authenticate("nina", "975310", now=T0 + timedelta(seconds=i))
        with pytest.raises(AccountLocked):
            clinic.authenticate("nina", "975310", now=T0 + timedelta(seconds=4))
        with pytest.raises(AuthenticationFailed):
            clinic.authenticate("nobody", "975310", now=T0)   # unknown names are counted (and audited) too
    with SessionStore(db) as store:                   # "restart": a new store and a new Clinic
        clinic = Clinic(store)
        until = T0 + timedelta(seconds=4, minutes=5)
        with pytest.raises(AccountLocked) as locked:
            clinic.authenticate("nina", TEST_PIN, now=until - timedelta(seconds=1))
        assert locked.value.until == until
        token = clinic.authenticate("nina", TEST_PIN, now=until)
        assert clinic.actor(token) == NURSE
        rows = [(r.user, r.action, r.payload) for r in store.audit_rows()
                if r.action in ("sign_in_failed", "signed_in")]
    failed = [p for _, action, p in rows if action == "sign_in_failed"]
    assert [(p["login"], p["failures"]) for p in failed] == [("nina", n) for n in range(1, 6)] + [("nobody", 1)]
    assert failed[4]["locked_until"] == until.isoformat() and failed[3]["locked_until"] is None
    assert all(user is None for user, action, _ in rows if action == "sign_in_failed")
    assert rows[-1][:2] == ("nina", "signed_in")
    with SessionStore(db) as store:
        assert store.sign_in_failures("nina") == (0, None)   # a sign-in starts the count again


@pytest.mark.slow  # two real processes
def test_a_lockout_survives_a_restart_of_the_process(db):
    script = ("import sys\n"
              "from monitor.app.clinic import Clinic\n"
              "from monitor.store import SessionStore\n"
              "store = SessionStore(sys.argv[1])\n"
              "clinic = Clinic(store)\n"
              "try:\n"
              "    clinic.authenticate('nina', sys.argv[2])\n"
              "    print('signed in')\n"
              "except Exception as exc:\n"
              "    print(type(exc).__name__)\n"
              "store.close()\n")

    def attempt(pin: str) -> str:
        run = subprocess.run([sys.executable, "-c", script, str(db), pin], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, check=True)
        return run.stdout.strip()

    assert [attempt("975310") for _ in range(5)] == ["AuthenticationFailed"] * 4 + ["AccountLocked"]
    assert attempt(TEST_PIN) == "AccountLocked"       # a new process: still locked


def test_pins_have_at_least_6_digits_and_a_clinic_may_ask_for_more(db, monkeypatch, tmp_path):
    monkeypatch.setenv("VIGIL_CONFIG_DIR", str(tmp_path / "config"))
    with SessionStore(db) as store:
        clinic = Clinic(store)
        chief = clinic.authenticate("chief", TEST_PIN)
        with pytest.raises(PinPolicyError, match="6–12 digits"):
            clinic.add_user(chief, "ann", "Ann Lee", Role.NURSE, "2580", "2580")
        new, _ = clinic.save_settings(chief, ClinicSettings(), {"pin_min_length": 8}, default_profile(), {})
        assert new.pin_min_length == 8 and clinic.settings.pin_min_length == 8
        with pytest.raises(PinPolicyError, match="8–12 digits"):
            clinic.add_user(chief, "ann", "Ann Lee", Role.NURSE, "975310", "975310")
        clinic.add_user(chief, "ann", "Ann Lee", Role.NURSE, "97531086", "97531086")
        with pytest.raises(PinChangeRequired, match="at least 8"):   # the chief's own 6-digit PIN now
            clinic.authenticate("chief", TEST_PIN)
    for bad in (5, 13):
        with pytest.raises(SettingsError, match="Shortest PIN"):
            update_settings(ClinicSettings(), {"pin_min_length": bad}, CHIEF)


def test_a_shorter_pin_in_use_must_be_changed_at_sign_in_without_a_lockout(db):
    with SessionStore(db) as store:
        clinic = Clinic(store)
        for _ in range(6):                            # as often as the user tries: told, never locked
            with pytest.raises(PinChangeRequired, match="Your PIN has 4 digits; this clinic now asks for at least 6"):
                clinic.authenticate("old", "2580")
        assert store.sign_in_failures("old") == (0, None)
        with pytest.raises(PinPolicyError):
            clinic.change_pin_and_sign_in("old", "2580", "1357", "1357")
        with pytest.raises(AuthenticationFailed):     # the current PIN must be right
            clinic.change_pin_and_sign_in("old", "2581", "975310", "975310")
        token = clinic.change_pin_and_sign_in("old", "2580", "975310", "975310")
        assert clinic.actor(token).username == "old"
        assert clinic.actor(clinic.authenticate("old", "975310")).username == "old"
        with pytest.raises(AuthenticationFailed):
            clinic.authenticate("old", "2580")
        assert ("old", "user_pin_changed") in [(r.user, r.action) for r in store.audit_rows()]


def test_the_sign_in_dialog_asks_for_a_new_pin_and_signs_in(qtbot, db):
    with SessionStore(db) as store:
        ctx = make_context(None, store)
        dialog = SignInDialog(ctx)
        qtbot.addWidget(dialog)
        assert not dialog.new_pin.isVisibleTo(dialog)
        dialog.staff_id.setText("old")
        dialog.pin.setText("2580")
        dialog.accept()
        assert "Your PIN has 4 digits; this clinic now asks for at least 6" in dialog.error.text()
        assert ctx.user is None and "6–12 digits" in dialog.pin_hint.text()
        assert dialog.new_pin.isVisibleTo(dialog) and dialog.ok_button.text() == "Change PIN and sign in"
        dialog.new_pin.setText("975310")
        dialog.new_pin_again.setText("975311")
        dialog.accept()
        assert "The two PINs differ" in dialog.error.text() and ctx.user is None
        dialog.new_pin_again.setText("975310")
        dialog.accept()
        assert dialog.result() == QDialog.DialogCode.Accepted and ctx.user.username == "old"
        assert ctx.clinic.actor(ctx.token).username == "old"
        ctx.set_user(None)                            # F12: the screen is locked, the token ends
        assert ctx.token is None
        with pytest.raises(TypeError):
            ctx.set_user(NURSE)                       # an Actor cannot sign in
        assert sign_in(ctx, NURSE) == ctx.token
