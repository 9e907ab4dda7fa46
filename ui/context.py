"""What every part of the window shares: the session service (commands and live signals), the
recorded sessions (read-only), the clinic's administration, settings and profile, and who is
signed in (the user and the session token of the sign-in, which privileged commands take). Nothing
here is the store: widgets reach the record only through these."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from monitor.alarms.profile import AlarmProfile
from monitor.app.clinic import Clinic
from monitor.app.records import Records
from monitor.qt.service import QtSessionService
from monitor.settings import ClinicSettings
from monitor.staff import Actor, SessionToken


class UiContext(QObject):
    """Shared handles. ``user`` is the signed-in staff member (None while the screen is locked) and
    ``token`` the session token of that sign-in (:meth:`sign_in`); ``user_changed(object)`` fires on
    sign-in, sign-out and lock.

    ``acknowledge_requested()`` and ``audio_pause_requested()`` (pause, or resume when paused) are
    the nurse's F1 / F2 and the alarm strips' buttons from any window (:mod:`ui.alarm_strip`); the
    monitoring window acts on them."""

    user_changed = Signal(object)
    settings_changed = Signal()
    acknowledge_requested = Signal()
    audio_pause_requested = Signal()

    def __init__(self, service: QtSessionService | None, records: Records, clinic: Clinic,
                 settings: ClinicSettings, profile: AlarmProfile, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self.records = records
        self.clinic = clinic
        self.settings = settings
        self.profile = profile
        self._user: Actor | None = None
        self._token: SessionToken | None = None

    @property
    def user(self) -> Actor | None:
        """The signed-in staff member, or None."""
        return self._user

    @property
    def token(self) -> SessionToken | None:
        """The session token of the sign-in (what privileged commands take), or None."""
        return self._token

    def sign_in(self, token: SessionToken) -> Actor:
        """Sign in with the token a sign-in gave (``clinic.authenticate``); returns the user."""
        user = self.clinic.actor(token)
        if self._token is not None and self._token != token:
            self.clinic.sign_out(self._token)
        self._user, self._token = user, token
        self.user_changed.emit(user)
        return user

    def set_user(self, user: None) -> None:
        """Sign out / lock the screen (``None``): the sign-in's token ends. Signing in goes through
        :meth:`sign_in` with a token; an ``Actor`` is refused (``TypeError``)."""
        if user is not None:
            raise TypeError("sign in with context.sign_in(token), the token of a sign-in")
        if self._token is not None:
            self.clinic.sign_out(self._token)
        self._user, self._token = None, None
        self.user_changed.emit(None)
