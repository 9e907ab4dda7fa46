"""Staff accounts and clinic settings kept in the clinic record, cached at every chair.

The clinic record holds every version of every staff account and of the clinic settings
(``vigil.staff_accounts``, ``vigil.clinic_settings``; append-only); the current one is the latest
change. Each chair keeps its own copy in its SQLite store (its ``users`` table and settings history,
plus the settings file), which is what sign-in reads — so a chair signs staff in with no network,
with the accounts as they were at its last contact. :meth:`AccountSync.sync`, run on the
replication worker's thread:

1. **Push**: every account or settings change made at this chair (its audit rows ``user_added``,
   ``user_pin_changed``, ``user_activated``, ``user_deactivated``, ``settings_saved``) that the clinic
   record does not hold yet becomes a new version there, stamped with the chair's time of the change
   and keyed by (chair, audit row) so it is sent once.
2. **Pull**: wherever the clinic record's current account differs from the chair's copy (a PIN, being
   active, an account the chair does not have), the chair's copy is updated through the store's API,
   audited as done by ``clinic-record`` (:data:`CLINIC_LOGIN`) — those changes are never pushed back.
   Clinic settings newer than the chair's are applied likewise (and written to the settings file by
   ``apply_settings``); the chair's own sections (:data:`LOCAL_SECTIONS`: where its clinic record
   is, its name) are kept.

The latest change wins, by the time of the change at the chair that made it: chairs' clocks must
agree (NTP), as they must for the record anyway. A change made at a chair while it is offline is
pushed when it is back, and wins if it is the latest. An account's printed name and role are fixed
when it is made (the store cannot change them); a different name or role in the clinic record for an
existing login is reported in the log, not applied.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitor.settings import ClinicSettings
from monitor.store import SessionStore
from monitor.store.postgres.writer import AccountVersion, ClinicWriter, SettingsVersion

__all__ = ["CLINIC_LOGIN", "ACCOUNT_ACTIONS", "SETTINGS_ACTION", "LOCAL_SECTIONS", "SyncResult", "AccountSync",
           "without_local_sections"]

log = logging.getLogger("monitor.clinic")

#: Who the chair's audit trail names for changes copied from the clinic record.
CLINIC_LOGIN = "clinic-record"
#: Audit actions of account changes.
ACCOUNT_ACTIONS = ("user_added", "user_pin_changed", "user_activated", "user_deactivated")
#: Audit action of a settings change (its payload names the version in the store's settings history).
SETTINGS_ACTION = "settings_saved"
#: Settings sections that belong to one chair: never taken from the clinic record.
LOCAL_SECTIONS = ("clinic_record", "board")


@dataclass(frozen=True)
class SyncResult:
    """What one :meth:`AccountSync.sync` did: versions pushed, accounts changed at the chair, and
    whether clinic settings were applied."""

    pushed: int = 0
    pulled: int = 0
    settings_applied: bool = False


def without_local_sections(settings_json: str) -> dict[str, Any]:
    """The settings document without the chair's own sections (what chairs share)."""
    doc = json.loads(settings_json)
    return {k: v for k, v in doc.items() if k not in LOCAL_SECTIONS} if isinstance(doc, dict) else {}


class AccountSync:
    """Keeps the chair's ``store`` accounts and settings in step with the clinic record (see the
    module docstring). ``apply_settings(json_text)``: writes clinic settings taken from the clinic
    record where the running Vigil reads them (the settings file; its local sections are already
    the chair's) — None to leave settings alone. ``interval_s``: :meth:`sync` does nothing when
    called again sooner (unless forced)."""

    def __init__(self, store: SessionStore, *, apply_settings: Callable[[str], None] | None = None,
                 interval_s: float = 30.0) -> None:
        self.store = store
        self.apply_settings = apply_settings
        self.interval_s = interval_s
        self._last: float | None = None
        self._reported: set[tuple[str, str, str]] = set()

    def sync(self, writer: ClinicWriter, chair_id: int, *, force: bool = False) -> SyncResult:
        """Push this chair's changes, then pull the clinic record's (see the module docstring).
        :class:`~monitor.store.postgres.ClinicUnavailable` when the server is lost (retry later)."""
        now = time.monotonic()
        if not force and self._last is not None and now - self._last < self.interval_s:
            return SyncResult()
        seen = self.store.table_marks()["audit"]  # local changes after this one were not pushed by this sync
        pushed = self._push(writer, chair_id)
        pulled = self._pull_accounts(writer, seen)
        applied = self._pull_settings(writer, seen) if self.apply_settings is not None else False
        self._last = now
        return SyncResult(pushed, pulled, applied)

    # ------------------------------------------------------------------ push
    def _local_changes(self, after: int) -> list[Any]:
        rows: list[Any] = []
        while True:
            batch = self.store.audit_rows_after(after, actions=(*ACCOUNT_ACTIONS, SETTINGS_ACTION))
            rows += [r for r in batch if r.user != CLINIC_LOGIN]
            if len(batch) < 10_000:
                return rows
            after = batch[-1].seq

    def _push(self, writer: ClinicWriter, chair_id: int) -> int:
        mark = writer.pushed_mark(chair_id)
        changes = self._local_changes(mark)
        if not changes:
            return 0
        history = {version: text for version, _at, _by, text in self.store.settings_history()} \
            if any(r.action == SETTINGS_ACTION for r in changes) else {}
        accounts, settings = [], []
        for row in changes:
            if row.action == SETTINGS_ACTION:
                text = history.get(row.payload.get("version"))
                if text is not None:
                    settings.append(SettingsVersion(text, row.t.timestamp(), row.user, chair_id, row.seq))
                continue
            user = self.store.get_user(str(row.payload.get("login")))
            if user is None:
                continue
            accounts.append(AccountVersion(user.login, user.display_name, user.role, user.pin_hash, user.active,
                                           row.t.timestamp(), row.user, chair_id, row.seq))
        writer.push(accounts, settings)
        return len(accounts) + len(settings)

    # ------------------------------------------------------------------ pull
    def _changed_here_since(self, login: str | None, seq: int) -> bool:
        """True when this chair changed ``login`` (None: the settings) after audit row ``seq``, the
        last row before this sync's push: a change made meanwhile, pushed next time, which the pull
        must not overwrite."""
        rows = self._local_changes(seq)
        if login is None:
            return any(r.action == SETTINGS_ACTION for r in rows)
        return any(r.action in ACCOUNT_ACTIONS and r.payload.get("login") == login for r in rows)

    def _pull_accounts(self, writer: ClinicWriter, seq: int) -> int:
        changed = 0
        for account in writer.current_accounts():
            local = self.store.get_user(account.login)
            if local is not None and (local.display_name, local.role) != (account.display_name, account.role):
                key = (account.login, account.display_name, account.role)
                if key not in self._reported:
                    self._reported.add(key)
                    log.warning("clinic record: account %r is %r (%s) there and %r (%s) at this chair; the printed "
                                "name and role of an account cannot change", account.login, account.display_name,
                                account.role, local.display_name, local.role)
            if local is not None and (local.pin_hash, local.active) == (account.pin_hash, account.active):
                continue
            if self._changed_here_since(account.login, seq):
                continue
            with self.store.transaction():
                if local is None:
                    self.store.add_user(account.login, account.display_name, account.role, account.pin_hash,
                                        by=CLINIC_LOGIN)
                    if not account.active:
                        self.store.set_user_active(account.login, False, CLINIC_LOGIN)
                else:
                    if local.pin_hash != account.pin_hash:
                        self.store.set_pin_hash(account.login, account.pin_hash, CLINIC_LOGIN)
                    if local.active != account.active:
                        self.store.set_user_active(account.login, account.active, CLINIC_LOGIN)
            changed += 1
            log.info("clinic record: account %r updated at this chair", account.login)
        return changed

    def _pull_settings(self, writer: ClinicWriter, seq: int) -> bool:
        clinic = writer.current_settings()
        if clinic is None:
            return False
        local = self.store.current_settings()
        try:
            shared = without_local_sections(clinic.json)
        except ValueError:
            log.warning("clinic record: its current clinic settings are not JSON; not applied")
            return False
        if local is not None and without_local_sections(local[1]) == shared:
            return False
        if self._changed_here_since(None, seq):
            return False
        mine = json.loads(local[1]) if local is not None else {}
        doc = {**shared, **{k: mine[k] for k in LOCAL_SECTIONS if isinstance(mine, dict) and k in mine}}
        try:
            text = ClinicSettings.model_validate(doc).model_dump_json()
            assert self.apply_settings is not None
            self.apply_settings(text)
        except ValueError as exc:  # settings this Vigil refuses (e.g. written by a newer one)
            log.warning("clinic record: its clinic settings were not applied at this chair: %s", exc)
            return False
        self.store.save_settings(text, CLINIC_LOGIN)
        log.info("clinic record: clinic settings updated at this chair")
        return True
