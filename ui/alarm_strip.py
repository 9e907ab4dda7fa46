"""Alarms within reach from every window of Vigil.

* :class:`AlarmKeys`: F1 (acknowledge) and F2 (audio pause / resume) work in every window of the
  application, modal dialogs included. A ``QShortcut`` cannot do this: Qt blocks the monitoring
  window's shortcuts while a modal dialog is open. The keys go to the monitoring window through
  ``UiContext.acknowledge_requested`` / ``audio_pause_requested``.
* :class:`AlarmStrip`: a one-line view of the alarm state for the review window and the session
  browser (large windows a nurse may maximise over the monitoring window): the highest priority
  in its IEC colour, flashing as the alarm area does, its condition, how many more, the
  inactivation state and the Acknowledge / Audio pause buttons. It shows the recording service's
  :class:`~monitor.alarms.engine.AlarmState`; the monitoring window's alarm area stays the source
  of truth and every decision is the alarm engine's.

Where Vigil does not monitor (``vigil review`` at a desk) there is no strip and no keys.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QWidget

from monitor.alarms.engine import AlarmState
from monitor.qt.service import QtSessionService
from ui import theme
from ui.alarm_area import AlarmArea
from ui.context import UiContext

__all__ = ["AlarmKeys", "AlarmStrip", "FRAME_MS"]

#: How often a strip repaints (flashing at 2 Hz and 0.6 Hz, the pause count-down), ms.
FRAME_MS = 40

_KEY_SIGNALS = {Qt.Key.Key_F1: "acknowledge_requested", Qt.Key.Key_F2: "audio_pause_requested"}


class AlarmKeys(QObject):
    """F1 → ``context.acknowledge_requested``, F2 → ``context.audio_pause_requested``, whichever
    window of the application has the keyboard focus (an application event filter).

    Active while ``owner`` (the monitoring window) is visible; removed when this object is deleted
    (give it the monitoring window as parent). A held key acts once.
    """

    def __init__(self, context: UiContext, owner: QWidget) -> None:
        super().__init__(owner)   # the owner is the parent: no reference to it here (a cycle would leave
        self.context = context    # the window to the garbage collector, on whatever thread it runs)
        QCoreApplication.instance().installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        kind = event.type()
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride):
            return False
        signal = _KEY_SIGNALS.get(event.key())
        owner = self.parent()
        if signal is None or not isinstance(owner, QWidget) or not owner.isVisible():
            return False
        if kind == QEvent.Type.ShortcutOverride:
            event.accept()  # the key press comes here, whatever shortcut the focused window has
            return True
        if not event.isAutoRepeat():
            getattr(self.context, signal).emit()
        return True


class AlarmStrip(AlarmArea):
    """The alarm state on one line, for a secondary window (see the module docstring). Its
    buttons ask the monitoring window through ``context``; use :meth:`for_context` to make one."""

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        service = context.service
        super().__init__(service.session_profile, parent, compact=True)
        self.setObjectName("alarmStrip")
        self.setFixedHeight(int(36 * theme.scale()))
        self.setStyleSheet("QPushButton { min-height: 0px; min-width: 0px; padding: 2px 10px; }")  # not the forms'
        for button in (self.ack_button, self.pause_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # F1/F2 are the keys; Tab and Enter stay with the window
        self.setToolTip("The alarms of the monitoring window: F1 acknowledges, F2 pauses the alarm audio")
        self.service = service
        self.acknowledge_requested.connect(context.acknowledge_requested)
        self.pause_requested.connect(context.audio_pause_requested)
        self.cancel_pause_requested.connect(context.audio_pause_requested)
        service.alarm_state_changed.connect(self.show_state)
        self.timer = QTimer(self)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(lambda: self.animate(time.monotonic()))
        self.show_state(service.alarm_state())

    @classmethod
    def for_context(cls, context: UiContext, parent: QWidget | None = None) -> AlarmStrip | None:
        """A strip when this Vigil is monitoring (a recording service), else None."""
        return cls(context, parent) if isinstance(context.service, QtSessionService) else None

    def show_state(self, state: AlarmState) -> None:
        """A new alarm state from the recording service (with the limits in force for its text)."""
        self.profile = self.service.session_profile
        self.set_state(state)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.timer.start()
        self.animate(time.monotonic())
        super().showEvent(event)

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.timer.stop()
        super().hideEvent(event)
