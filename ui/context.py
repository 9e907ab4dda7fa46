"""What every part of the window shares: the session service (commands and live signals), the
recorded sessions (read-only), the clinic's administration, settings and profile, and who is
signed in. Nothing here is the store: widgets reach the record only through these."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from monitor.alarms.profile import AlarmProfile
from monitor.app.clinic import Clinic
from monitor.app.records import Records
from monitor.qt.service import QtSessionService
from monitor.settings import ClinicSettings
from monitor.staff import Actor


class UiContext(QObject):
    """Shared handles. ``user`` is the signed-in staff member (None while the screen is locked);
    ``user_changed(object)`` fires on sign-in, sign-out and lock.

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

    @property
    def user(self) -> Actor | None:
        """The signed-in staff member, or None."""
        return self._user

    def set_user(self, user: Actor | None) -> None:
        """Sign in (a user) or out / lock (None)."""
        self._user = user
        self.user_changed.emit(user)
