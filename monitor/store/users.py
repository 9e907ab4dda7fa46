"""Staff accounts, wrong-PIN counts (kept across a restart) and the clinic settings history.

Account changes are audited here, in the transaction that makes them, and so are wrong PINs
(completed sign-ins are audited by the application layer). Only the application layer (``monitor.app.clinic``, after its role checks) and the clinic
record's account copy (``monitor.clinic.accounts``, audited as ``clinic-record``) call the writers."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any


from monitor.store.codec import (
    _at,
    _dt,
    _rowid,
    _text,
    _ts,
)
from monitor.store.database import StoreCore
from monitor.store.records import (
    NotFoundError,
    StoreError,
    UserRecord,
)


class UsersMixin(StoreCore):
    """Staff accounts, wrong-PIN counts (kept across a restart) and the clinic settings history.

Account changes are audited here, in the transaction that makes them, and so are wrong PINs
(completed sign-ins are audited by the application layer). Only the application layer (``monitor.app.clinic``, after its role checks) and the clinic
record's account copy (``monitor.clinic.accounts``, audited as ``clinic-record``) call the writers."""

    def add_user(self, login: str, display_name: str, role: str, pin_hash: str | None, by: str | None) -> int:
        """Add a staff account (active) and return its id. ``pin_hash`` is stored as given (hash it
        before). ``by``: login of the admin doing it. Empty strings raise ``ValueError``; an
        existing login raises :class:`StoreError`."""
        _text(login, "login")
        _text(display_name, "display_name")
        _text(role, "role")
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM users WHERE login = ?", (login,)).fetchone():
                raise StoreError(f"user {login!r} already exists")
            cur = conn.execute("INSERT INTO users (login, display_name, role, pin_hash, created_at, active) "
                               "VALUES (?, ?, ?, ?, ?, 1)", (login, display_name, role, pin_hash, self._now()))
            self._audit(conn, by, "user_added", None,
                        {"login": login, "display_name": display_name, "role": role, "pin_sha256": _pin_digest(pin_hash)})
            return _rowid(cur)

    def get_user(self, login: str) -> UserRecord | None:
        """The account with this login, or None."""
        with self._read() as conn:
            row = conn.execute("SELECT id, login, display_name, role, pin_hash, created_at, active FROM users "
                               "WHERE login = ?", (login,)).fetchone()
        return self._user(row) if row else None

    def list_users(self) -> list[UserRecord]:
        """All accounts (active and inactive) by login."""
        with self._read() as conn:
            rows = conn.execute("SELECT id, login, display_name, role, pin_hash, created_at, active FROM users "
                                "ORDER BY login").fetchall()
        return [self._user(r) for r in rows]

    @staticmethod
    def _user(r: tuple[Any, ...]) -> UserRecord:
        return UserRecord(r[0], r[1], r[2], r[3], r[4], _at(r[5]), bool(r[6]))

    def set_user_active(self, login: str, active: bool, by: str | None) -> None:
        """Activate or deactivate an account (accounts are never deleted). Unknown login raises
        :class:`NotFoundError`."""
        with self._tx() as conn:
            if conn.execute("UPDATE users SET active = ? WHERE login = ?", (int(bool(active)), login)).rowcount == 0:
                raise NotFoundError(f"no user {login!r}")
            self._audit(conn, by, "user_activated" if active else "user_deactivated", None, {"login": login})

    def set_pin_hash(self, login: str, pin_hash: str | None, by: str | None) -> None:
        """Replace an account's PIN hash (the audit row records that it changed and a digest of the new
        hash, never the hash: ``vigil verify`` notices a hash edited by hand).
        Unknown login raises :class:`NotFoundError`."""
        with self._tx() as conn:
            if conn.execute("UPDATE users SET pin_hash = ? WHERE login = ?", (pin_hash, login)).rowcount == 0:
                raise NotFoundError(f"no user {login!r}")
            self._audit(conn, by, "user_pin_changed", None, {"login": login, "pin_sha256": _pin_digest(pin_hash)})

    # ------------------------------------------------------------------ sign-in
    #: Longest user name kept for a failed sign-in (what was typed may be anything).
    _LOGIN_KEPT = 64

    def sign_in_failures(self, login: str) -> tuple[int, datetime | None]:
        """``(wrong PINs in a row, locked until (UTC) or None)`` for the user name ``login`` as typed
        (lower-cased by the caller); ``(0, None)`` when there are none."""
        with self._read() as conn:
            row = conn.execute("SELECT failures, locked_until FROM sign_in_failures WHERE login = ?",
                               (login[:self._LOGIN_KEPT],)).fetchone()
        return (int(row[0]), _dt(row[1])) if row else (0, None)

    def record_sign_in_failure(self, login: str, failures: int, locked_until: datetime | None) -> None:
        """A wrong PIN or unknown user name: keep the count (and the lock, when it starts) and audit
        it (``sign_in_failed``, by nobody: the user name is in the payload, with the count and the
        lock). ``failures`` below 1 raises ``ValueError``."""
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ValueError(f"failures must be a whole number from 1, not {failures!r}")
        login = str(login)[:self._LOGIN_KEPT]
        until = None if locked_until is None else _ts(locked_until, "locked_until")
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO sign_in_failures (login, failures, locked_until) VALUES (?, ?, ?)",
                         (login, failures, until))
            self._audit(conn, None, "sign_in_failed", None,
                        {"login": login, "failures": failures,
                         "locked_until": None if locked_until is None else locked_until.isoformat()})

    def clear_sign_in_failures(self, login: str) -> None:
        """A right PIN: the wrong-PIN count of ``login`` starts again (the sign-in itself is audited
        by the caller when it completes)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM sign_in_failures WHERE login = ?", (login[:self._LOGIN_KEPT],))

    def save_settings(self, json_text: str, by: str | None) -> int:
        """Append a new version of the clinic settings (a JSON document, stored verbatim) and
        return its version number (1, 2, …). Text that is not JSON raises ``ValueError``."""
        if not isinstance(json_text, str):
            raise TypeError("settings must be JSON text")
        try:
            json.loads(json_text)
        except ValueError as exc:
            raise ValueError(f"settings are not valid JSON: {exc}") from None
        with self._tx() as conn:
            version = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM settings").fetchone()[0]
            conn.execute("INSERT INTO settings (version, t, user_login, json) VALUES (?, ?, ?, ?)",
                         (version, self._now(), by, json_text))
            self._audit(conn, by, "settings_saved", None,
                        {"version": version, "sha256": hashlib.sha256(json_text.encode()).hexdigest()})
            return int(version)

    def current_settings(self) -> tuple[int, str] | None:
        """``(version, json_text)`` of the latest settings, or None if none were ever saved."""
        with self._read() as conn:
            row = conn.execute("SELECT version, json FROM settings ORDER BY version DESC LIMIT 1").fetchone()
        return (int(row[0]), row[1]) if row else None

    def settings_history(self) -> list[tuple[int, datetime, str | None, str]]:
        """Every settings version: ``(version, saved_at, by, json_text)``, oldest first."""
        with self._read() as conn:
            rows = conn.execute("SELECT version, t, user_login, json FROM settings ORDER BY version").fetchall()
        return [(r[0], _at(r[1]), r[2], r[3]) for r in rows]


def _pin_digest(pin_hash: str | None) -> str | None:
    """What the audit trail keeps of a PIN hash: its SHA-256 (None for no PIN)."""
    return None if pin_hash is None else hashlib.sha256(pin_hash.encode()).hexdigest()
