"""The alarm area (IEC 60601-1-8): one indicator of the highest active priority, readable from
across the room; the list of active conditions with priority and time; acknowledge and audio
pause with a visible count-down; the inactivation state always on screen.

It shows an :class:`~monitor.alarms.engine.AlarmState` it is given; every decision is the engine's.
"""

from __future__ import annotations

import time
from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from monitor.alarms.engine import AlarmState
from monitor.alarms.profile import AlarmProfile
from monitor.display import alarm_texts
from ui import theme
from ui.layout import FitLabel

_STEP_SECONDS = 2.5  # several alarms of the top priority are stepped through in the indicator


class AlarmArea(QFrame):
    """Indicator + list + buttons. Signals ``acknowledge_requested`` and ``pause_requested``.

    ``compact``: one line for the alarm strip of other windows (:mod:`ui.alarm_strip`): smaller
    type, the list in the indicator's tool tip."""

    acknowledge_requested = Signal()
    pause_requested = Signal()
    cancel_pause_requested = Signal()

    def __init__(self, profile: AlarmProfile, parent: QWidget | None = None, *, compact: bool = False) -> None:
        super().__init__(parent)
        self.profile = profile
        self.compact = compact
        self.state: AlarmState | None = None
        self.audio_note = ""
        self.setObjectName("alarmArea")
        self.setFrameShape(QFrame.Shape.NoFrame)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)

        # Each alarm is written in its longest form that fits (the value and limit always whole).
        self.indicator = FitLabel(theme.font(13 if compact else 20, bold=True), min_ratio=0.7)
        self.indicator.setObjectName("alarmIndicator")
        self.indicator.set_forms("No active alarms")
        self.indicator.setAlignment(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        self.indicator.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Expanding)
        self.indicator.setContentsMargins(theme.px(10), 0, theme.px(10), 0)
        layout.addWidget(self.indicator, stretch=5)

        self.listing = FitLabel(theme.font(10), rich=True, min_ratio=0.85,
                                more=lambda n: f'<span style="color:{theme.TEXT_DIM}">… {n} more</span>')
        self.listing.setObjectName("alarmList")
        self.listing.setAlignment(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        self.listing.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Expanding)
        if compact:  # one line: the list is the indicator's tool tip
            self.listing.hide()
        else:
            layout.addWidget(self.listing, stretch=3)

        side = QHBoxLayout() if compact else QVBoxLayout()
        side.setSpacing(3)
        self.inactivation = QLabel("")
        self.inactivation.setObjectName("inactivation")
        self.inactivation.setFont(theme.font(10 if compact else 11, bold=True))
        self.inactivation.setAlignment(Qt.AlignmentFlag.AlignCenter)
        side.addWidget(self.inactivation)
        buttons = QHBoxLayout()
        self.ack_button = QPushButton("Acknowledge (F1)")
        self.ack_button.clicked.connect(self.acknowledge_requested)
        self.pause_button = QPushButton("Audio pause (F2)")
        self.pause_button.clicked.connect(self._pause_clicked)
        for button in (self.ack_button, self.pause_button):
            button.setFont(theme.font(10 if compact else 11, bold=True))
            button.setMinimumHeight(theme.px(26 if compact else 32))
            button.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Preferred)
            buttons.addWidget(button)
        side.addLayout(buttons)
        layout.addLayout(side, stretch=0)  # the buttons keep their text; the indicator and list share the rest
        self._shown: tuple = ()

    def _pause_clicked(self) -> None:
        if self.state is not None and self.state.inactivation.audio_paused:
            self.cancel_pause_requested.emit()
        else:
            self.pause_requested.emit()

    def set_state(self, state: AlarmState) -> None:
        """Take a new alarm state (repainted by :meth:`animate`)."""
        self.state = state
        self.animate(time.monotonic())

    def animate(self, t: float) -> None:
        """Repaint the indicator at monotonic time ``t`` (flashing, stepping, count-down)."""
        state = self.state
        if state is None:
            return
        alarms = state.alarms
        top = state.visual_priority.name if state.visual_priority else None
        if top is None:
            forms, background, foreground = ("No active alarms",), theme.PANEL, theme.TEXT_DIM
        else:
            highest = [a for a in alarms if a.priority == state.visual_priority]
            shown = highest[int(t / _STEP_SECONDS) % len(highest)]
            more = f"  +{len(alarms) - 1}" if len(alarms) > 1 else ""
            latched = "  [latched]" if shown.latched else ""
            texts = alarm_texts(shown, self.profile)
            forms = (*(f"{top}  {text}{latched}{more}" for text in texts),
                     f"{top} {texts[-1]}{' L' if latched else ''}{more.strip() and ' ' + more.strip()}")
            lit = theme.flash_on(top, t)
            if top == "LOW":  # constant: cyan, framed rather than filled so it does not shout
                background = theme.PANEL
                foreground = theme.PRIORITY_COLOURS["LOW"]
            else:
                background = theme.PRIORITY_COLOURS[top] if lit else "#3a0000" if top == "HIGH" else "#3a3000"
                foreground = theme.PRIORITY_TEXT[top] if lit else theme.PRIORITY_COLOURS[top]
        inactivation = state.inactivation.text
        note = self.audio_note or ("NO ALARM SOUND" if any(a.condition == "audio_unavailable" and a.active
                                                           for a in alarms) else "")   # (every window says so)
        if note:
            inactivation = (inactivation + "  " if inactivation else "") + note
        rows = []
        for alarm in alarms:
            name = alarm.priority.name
            head = f'<span style="color:{theme.PRIORITY_COLOURS[name]}; font-weight:bold">{name}</span> '
            marks = f'{" (ack)" if alarm.acknowledged else ""}{" (latched)" if alarm.latched else ""}'
            texts = [_escape(text) for text in alarm_texts(alarm, self.profile)]
            rows.append((*(f"{head}{_clock(alarm.started_at)}  {text}{marks}" for text in texts),
                         f"{head}{texts[-1]}{marks}"))
        key = (forms, background, foreground, inactivation, tuple(rows))
        if key == self._shown:
            return
        self._shown = key
        self.indicator.set_forms(*forms)
        border = theme.PRIORITY_COLOURS[top] if top else theme.PANEL_EDGE
        self.indicator.setStyleSheet(f"background: {background}; color: {foreground}; border-radius: 4px;"
                                     f" border: 3px solid {border};")
        self.listing.set_lines(rows)
        if self.compact:
            self.indicator.setToolTip("<br>".join(row[0] for row in rows))
        self.inactivation.setText(inactivation or "Alarm audio on")
        paused = state.inactivation.audio_paused
        self.inactivation.setStyleSheet(
            f"color: {'#000' if paused else theme.TEXT_DIM}; background: {'#ffd000' if paused else 'transparent'};"
            " border-radius: 3px; padding: 2px;")
        self.pause_button.setText("Resume audio (F2)" if paused else "Audio pause (F2)")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clock(t: datetime) -> str:
    return t.astimezone().strftime("%H:%M:%S")
