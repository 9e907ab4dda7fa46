"""The clinic's administration at a chair or a desk: staff accounts, sign-in and clinic settings.

Sign-in (:meth:`Clinic.authenticate`) checks the user name and PIN and gives a session token
(:data:`~monitor.staff.SessionToken`): an opaque random id that only this process's
:class:`~monitor.staff.SignIns` maps to the user. Every privileged action here — accounts, settings,
the clinic's default limits — takes that token and finds the user itself; an ``Actor`` made up by
the caller, or a token that ended (screen locked, account deactivated, expired), is refused with
:class:`~monitor.staff.NotSignedIn`. The session service and the review's late entries share the
same :class:`SignIns` (:attr:`Clinic.signins`).

Every write goes through here with its role check and its audit row (the store audits account
changes itself): a nurse cannot add a charge nurse, reset someone's PIN or deactivate anyone —
refused with :class:`~monitor.staff.PermissionDenied` whatever the screen shows. Wrong PINs are
counted in the store (so a lockout survives a restart) and audited, as are sign-ins. A PIN shorter
than the clinic's ``pin_min_length`` still signs in once its owner chooses a new one
(:class:`~monitor.staff.PinChangeRequired`, then :meth:`Clinic.change_pin_and_sign_in`). When a
recording pipeline runs, the writes are queued on its store writer (``submit``), in order with the
recording; at a desk they run at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from monitor.alarms.profile import AlarmProfile
from monitor.alarms.safety import check_profile
from monitor.config import config_dir, save_clinic_settings
from monitor.settings import ClinicSettings, settings_changes, update_settings
from monitor.staff import (
    Actor, Authenticator, FailureLog, MemoryFailureLog, PermissionDenied, PinChangeRequired, RefusedAction, Role,
    SessionToken, SignIns, User, check_pin_policy, hash_pin, require_role,
)
from monitor.store import SessionStore, UserRecord
from monitor.store.reader import StoreReader

log = logging.getLogger(__name__)

__all__ = ["Clinic"]


class _StoreFailureLog:
    """Wrong-PIN counts in the chair's store (kept across a restart; each one audited); writes go
    through ``write`` (the clinic's: in order with the recording)."""

    def __init__(self, store: SessionStore, write: Callable[..., Any]) -> None:
        self.store = store
        self.write = write

    def failures(self, username: str) -> tuple[int, datetime | None]:
        return self.store.sign_in_failures(username)

    def failed(self, username: str, count: int, locked_until: datetime | None) -> None:
        self.write(self.store.record_sign_in_failure, username, count, locked_until)

    def succeeded(self, username: str) -> None:
        self.write(self.store.clear_sign_in_failures, username)


class Clinic:
    """Accounts, sign-in and settings over ``store``. ``submit(fn, *args)`` runs a store write
    (default: at once; the pipeline passes its writer's queue so writes stay in order);
    ``signins``: the sign-ins shared with the session service and the review (a new set when
    None); ``settings``: the clinic settings in force (their ``pin_min_length``)."""

    def __init__(self, store: StoreReader, submit: Callable[..., Any] | None = None, *,
                 signins: SignIns | None = None, settings: ClinicSettings | None = None) -> None:
        self.store = store
        self._submit = submit
        self.signins = signins if signins is not None else SignIns()
        self.settings = settings if settings is not None else ClinicSettings()
        self._failures: FailureLog
        if isinstance(store, SessionStore) and not store.readonly:
            self._failures = _StoreFailureLog(store, self._write)
        else:  # the clinic record, or a chair's file another Vigil records into: counts in memory
            self._failures = MemoryFailureLog()

    def _write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._submit is None:
            return fn(*args, **kwargs)
        return self._submit(fn, *args, **kwargs)

    def _writable(self) -> SessionStore:
        if not isinstance(self.store, SessionStore) or self.store.readonly:
            raise RefusedAction(f"Staff accounts cannot be changed here: {self.store.path} is read-only")
        return self.store

    # ------------------------------------------------------------------ who is signed in
    def actor(self, token: object) -> Actor:
        """The user signed in with ``token`` (:class:`~monitor.staff.NotSignedIn` otherwise)."""
        return self.signins.actor(token)

    def sign_out(self, token: object) -> None:
        """End the sign-in ``token`` (the screen was locked, or the user signed out)."""
        self.signins.end(token)

    def _charge_nurse(self, token: object, action: str) -> Actor:
        by = self.actor(token)
        require_role(by, Role.CHARGE_NURSE, action)
        return by

    # ------------------------------------------------------------------ accounts
    def users(self) -> list[UserRecord]:
        """Every staff account (active or not)."""
        return self.store.list_users()

    def has_users(self) -> bool:
        """False on the first start (the first account is a charge nurse's)."""
        return bool(self.store.list_users())

    def get_user(self, login: str) -> UserRecord | None:
        """The account ``login``, or None."""
        if not isinstance(self.store, SessionStore):  # the clinic record: its list of accounts
            return next((u for u in self.store.list_users() if u.login == login), None)
        return self.store.get_user(login)

    def create_first_account(self, username: str, display_name: str, pin: str, pin_again: str) -> SessionToken:
        """The first account of a new installation: a charge nurse, signed in (its token). Refused
        once any account exists."""
        if self.has_users():
            raise PermissionDenied("The first account was already created: sign in")
        actor = Actor(username=username, display_name=display_name, role=Role.CHARGE_NURSE)
        store = self._writable()
        self._write(store.add_user, actor.username, actor.display_name, actor.role.value,
                    self._pin_hash(pin, pin_again), None)
        return self.signins.issue(actor)

    def add_user(self, token: object, username: str, display_name: str, role: Role, pin: str,
                 pin_again: str) -> Actor:
        """Add a staff account (charge nurse only)."""
        by = self._charge_nurse(token, "add staff accounts")
        actor = Actor(username=username, display_name=display_name, role=role)
        store = self._writable()
        if store.get_user(actor.username) is not None:
            raise RefusedAction(f"There is already an account {actor.username!r}")
        self._write(store.add_user, actor.username, actor.display_name, actor.role.value,
                    self._pin_hash(pin, pin_again), by.username)
        return actor

    def set_active(self, token: object, login: str, active: bool) -> UserRecord:
        """Deactivate or reactivate an account (charge nurse only; never one's own). A deactivated
        account's sign-ins end at once."""
        by = self._charge_nurse(token, "deactivate or reactivate staff accounts")
        store = self._writable()
        record = store.get_user(login)
        if record is None:
            raise RefusedAction(f"No staff account {login!r}")
        if not active and login == by.username:
            raise RefusedAction("You cannot deactivate your own account while you are signed in with it")
        self._write(store.set_user_active, login, active, by.username)
        if not active:
            self.signins.end_user(login)
        return record

    def reset_pin(self, token: object, login: str, pin: str, pin_again: str) -> None:
        """Give an account a new PIN (charge nurse only, or one's own). Another user's sign-ins end."""
        by = self.actor(token)
        if login != by.username:
            require_role(by, Role.CHARGE_NURSE, "reset another user's PIN")
        store = self._writable()
        if store.get_user(login) is None:
            raise RefusedAction(f"No staff account {login!r}")
        self._write(store.set_pin_hash, login, self._pin_hash(pin, pin_again), by.username)
        if login != by.username:
            self.signins.end_user(login)

    def _pin_hash(self, pin: str, pin_again: str) -> str:
        check_pin_policy(pin, self.settings.pin_min_length)
        if pin != pin_again:
            raise RefusedAction("The two PINs differ: type the same PIN twice")
        return hash_pin(pin, min_length=self.settings.pin_min_length)

    # ------------------------------------------------------------------ sign-in
    def _authenticator(self) -> Authenticator:
        auth = Authenticator(log=self._failures)
        for record in self.store.list_users():
            if record.pin_hash is None:
                continue
            try:
                auth.add(User(username=record.login, display_name=record.display_name, role=Role(record.role),
                              pin_hash=record.pin_hash, active=record.active))
            except ValueError:
                log.warning("account %r in the store is damaged and cannot sign in", record.login)
        return auth

    def _check(self, username: str, pin: str, now: datetime | None) -> User:
        """The account for a right user name and PIN (wrong PINs counted, kept and audited; a lock
        after 5 in a row, across restarts)."""
        return self._authenticator().check(username, pin, now or datetime.now(timezone.utc))

    def authenticate(self, username: str, pin: str, now: datetime | None = None) -> SessionToken:
        """Sign in with user name and PIN; returns the session token. Refused: a wrong user name or
        PIN (``AuthenticationFailed``), a lock (``AccountLocked``), or a PIN shorter than the
        clinic's ``pin_min_length`` (:class:`~monitor.staff.PinChangeRequired`: choose a new one
        with :meth:`change_pin_and_sign_in`; nothing is locked)."""
        user = self._check(username, pin, now)
        if len(pin) < self.settings.pin_min_length:
            raise PinChangeRequired(
                f"Your PIN has {len(pin)} digits; this clinic now asks for at least {self.settings.pin_min_length}. "
                "Choose a new PIN to sign in.")
        return self._signed_in(user)

    def _signed_in(self, user: User, how: str = "PIN") -> SessionToken:
        if isinstance(self.store, SessionStore) and not self.store.readonly:
            self._write(self.store.audit, user.username, "signed_in", None, {"login": user.username, "with": how})
        return self.signins.issue(user.actor)

    def change_pin_and_sign_in(self, username: str, pin: str, new_pin: str, new_pin_again: str,
                               now: datetime | None = None) -> SessionToken:
        """Sign in with the current PIN and replace it by ``new_pin`` (the PIN policy of the clinic;
        typed twice); returns the session token. A wrong current PIN counts as a failed sign-in."""
        user = self._check(username, pin, now)
        if new_pin == pin:
            raise RefusedAction("Choose a PIN different from the current one")
        store = self._writable()
        self._write(store.set_pin_hash, user.username, self._pin_hash(new_pin, new_pin_again), user.username)
        return self._signed_in(user, "PIN changed at sign-in")

    # ------------------------------------------------------------------ settings
    def save_settings(self, token: object, current: ClinicSettings, changes: dict[str, Any],
                      profile: AlarmProfile, limit_changes: dict[str, float]) -> tuple[ClinicSettings, AlarmProfile]:
        """Apply a charge nurse's changes to the clinic settings and default alarm limits: the files
        in the config folder, the settings history and the audit trail. Returns what is now in
        force (unchanged parts as they were). Limits past the hard limits are refused
        (:class:`~monitor.alarms.profile.UnsafeProfileError`) and nothing is saved."""
        by = self._charge_nurse(token, "change clinic settings")
        store = self._writable()
        new = update_settings(current, changes, by)
        new_profile = profile
        if limit_changes:
            new_profile = profile.adjusted(limit_changes).model_copy(update={"name": profile.name})
        if changes:
            save_clinic_settings(new)
            self._write(store.save_settings, new.model_dump_json(), by.username)
            self._write(store.audit, by.username, "clinic_settings_changed", None,
                        {"changes": [list(c) for c in settings_changes(current, new)]})
            self.settings = new
        if limit_changes:
            _write_profile(new_profile)
            self._write(store.audit, by.username, "default_alarm_limits_changed", None,
                        {"changes": {k: float(v) for k, v in limit_changes.items()},
                         "sha256": new_profile.fingerprint()})
        return new, new_profile


def _write_profile(profile: AlarmProfile) -> None:
    check_profile(profile, "the clinic's default alarm limits")
    path = config_dir() / "alarm_profile.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(profile.to_json() + "\n", encoding="utf-8")
    os.replace(tmp, path)
