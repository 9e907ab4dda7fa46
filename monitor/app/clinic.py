"""The clinic's administration at a chair or a desk: staff accounts, sign-in and clinic settings.

Every write goes through here with its role check and its audit row (the store audits account
changes itself): a nurse cannot add a charge nurse, reset someone's PIN or deactivate anyone —
refused with :class:`~monitor.staff.PermissionDenied` whatever the screen shows. When a recording
pipeline runs, the writes are queued on its store writer (``submit``), in order with the
recording; at a desk they run at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from monitor.alarms.profile import AlarmProfile
from monitor.config import config_dir, save_clinic_settings
from monitor.settings import ClinicSettings, settings_changes, update_settings
from monitor.staff import (
    Actor, Authenticator, PermissionDenied, RefusedAction, Role, User, check_pin_policy, hash_pin, require_role,
)
from monitor.store import SessionStore, UserRecord

log = logging.getLogger(__name__)

__all__ = ["Clinic"]


class Clinic:
    """Accounts, sign-in and settings over ``store``. ``submit(fn, *args)`` runs a store write
    (default: at once; the pipeline passes its writer's queue so writes stay in order)."""

    def __init__(self, store: SessionStore, submit: Callable[..., Any] | None = None) -> None:
        self.store = store
        self._submit = submit
        self._auth = Authenticator()

    def _write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._submit is None:
            return fn(*args, **kwargs)
        return self._submit(fn, *args, **kwargs)

    # ------------------------------------------------------------------ accounts
    def users(self) -> list[UserRecord]:
        """Every staff account (active or not)."""
        return self.store.list_users()

    def has_users(self) -> bool:
        """False on the first start (the first account is a charge nurse's)."""
        return bool(self.store.list_users())

    def get_user(self, login: str) -> UserRecord | None:
        """The account ``login``, or None."""
        if not hasattr(self.store, "get_user"):  # the clinic record: its list of accounts
            return next((u for u in self.store.list_users() if u.login == login), None)
        return self.store.get_user(login)

    def create_first_account(self, username: str, display_name: str, pin: str, pin_again: str) -> Actor:
        """The first account of a new installation: a charge nurse. Refused once any account exists."""
        if self.has_users():
            raise PermissionDenied("The first account was already created: sign in")
        actor = Actor(username=username, display_name=display_name, role=Role.CHARGE_NURSE)
        self._write(self.store.add_user, actor.username, actor.display_name, actor.role.value,
                    self._pin_hash(pin, pin_again), None)
        return actor

    def add_user(self, by: Actor, username: str, display_name: str, role: Role, pin: str, pin_again: str) -> Actor:
        """Add a staff account (charge nurse only)."""
        require_role(by, Role.CHARGE_NURSE, "add staff accounts")
        actor = Actor(username=username, display_name=display_name, role=role)
        if self.store.get_user(actor.username) is not None:
            raise RefusedAction(f"There is already an account {actor.username!r}")
        self._write(self.store.add_user, actor.username, actor.display_name, actor.role.value,
                    self._pin_hash(pin, pin_again), by.username)
        return actor

    def set_active(self, by: Actor, login: str, active: bool) -> UserRecord:
        """Deactivate or reactivate an account (charge nurse only; never one's own)."""
        require_role(by, Role.CHARGE_NURSE, "deactivate or reactivate staff accounts")
        record = self.store.get_user(login)
        if record is None:
            raise RefusedAction(f"No staff account {login!r}")
        if not active and login == by.username:
            raise RefusedAction("You cannot deactivate your own account while you are signed in with it")
        self._write(self.store.set_user_active, login, active, by.username)
        return record

    def reset_pin(self, by: Actor, login: str, pin: str, pin_again: str) -> None:
        """Give an account a new PIN (charge nurse only, or one's own)."""
        if login != by.username:
            require_role(by, Role.CHARGE_NURSE, "reset another user's PIN")
        if self.store.get_user(login) is None:
            raise RefusedAction(f"No staff account {login!r}")
        self._write(self.store.set_pin_hash, login, self._pin_hash(pin, pin_again), by.username)

    @staticmethod
    def _pin_hash(pin: str, pin_again: str) -> str:
        check_pin_policy(pin)
        if pin != pin_again:
            raise RefusedAction("The two PINs differ: type the same PIN twice")
        return hash_pin(pin)

    # ------------------------------------------------------------------ sign-in
    def authenticate(self, username: str, pin: str, now: datetime | None = None) -> Actor:
        """Sign in with user name and PIN (lockout after repeated wrong PINs: real time)."""
        for record in self.store.list_users():
            if record.pin_hash is None:
                continue
            try:
                self._auth.add(User(username=record.login, display_name=record.display_name, role=Role(record.role),
                                    pin_hash=record.pin_hash, active=record.active))
            except ValueError:
                log.warning("account %r in the store is damaged and cannot sign in", record.login)
        return self._auth.authenticate(username, pin, now or datetime.now(timezone.utc))

    # ------------------------------------------------------------------ settings
    def save_settings(self, by: Actor, current: ClinicSettings, changes: dict[str, Any], profile: AlarmProfile,
                      limit_changes: dict[str, float]) -> tuple[ClinicSettings, AlarmProfile]:
        """Apply a charge nurse's changes to the clinic settings and default alarm limits: the files
        in the config folder, the settings history and the audit trail. Returns what is now in
        force (unchanged parts as they were)."""
        new = update_settings(current, changes, by)   # checks the role too
        new_profile = profile
        if limit_changes:
            require_role(by, Role.CHARGE_NURSE, "change the clinic's default alarm limits")
            new_profile = profile.adjusted(limit_changes).model_copy(update={"name": profile.name})
        if changes:
            save_clinic_settings(new)
            self._write(self.store.save_settings, new.model_dump_json(), by.username)
            self._write(self.store.audit, by.username, "clinic_settings_changed", None,
                        {"changes": [list(c) for c in settings_changes(current, new)]})
        if limit_changes:
            _write_profile(new_profile)
            self._write(self.store.audit, by.username, "default_alarm_limits_changed", None,
                        {"changes": {k: float(v) for k, v in limit_changes.items()}})
        return new, new_profile


def _write_profile(profile: AlarmProfile) -> None:
    path = config_dir() / "alarm_profile.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(profile.to_json() + "\n", encoding="utf-8")
    os.replace(tmp, path)
