"""The event bar: one touch to chart what happens at the chair.

One button per structured event of monitor's registry (dissociation / emergence reaction,
anxiety, nausea, vomiting, headache, hypertension treated: recorded at once, at the device's time
now, with the signed-in user); rescue medication (a dialog); a note field with Save; an assessment
menu (the assessment dialog, then ``service.chart(assessment, user)``). Disabled, with a
hint, while no session is being recorded. What was recorded, or monitor's refusal, goes out as the
``recorded`` / ``refused`` signals (the window's message line shows them; the labels ``status``
and ``error`` keep the last texts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from monitor.assessments import (
    ASSESSMENTS,
    EVENTS,
    Assessment,
    Event,
    Note,
    PresetEvent,
)
from monitor.staff import clock
from monitor.errors import StoreError
from ui import theme
from ui.context import UiContext
from ui.layout import FlowGrid
from ui.status_line import UNDO_S, Confirmation
from ui.dialogs import (
    AssessmentDialog,
    RescueMedicationDialog,
    device_now,
    require_user,
    run_modal,
    session_state,
)
from ui.dialogs.base import (
    ErrorLabel,
    apply_base_font,
    describe_error,
    dialog_style,
    hint,
)

log = logging.getLogger(__name__)

__all__ = ["EventBar"]


_ONE_LINE_CHARS = 12  # longer button texts are split over two lines


def _two_lines(text: str) -> str:
    """Split a long button text at the space nearest its middle."""
    if len(text) <= _ONE_LINE_CHARS or " " not in text:
        return text
    middle = len(text) / 2
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    cut = min(spaces, key=lambda i: abs(i - middle))
    return text[:cut] + "\n" + text[cut + 1:]


class EventBar(QFrame):
    """Event, note and assessment buttons for the session being recorded (module docstring).

    Signals: ``recorded(str)`` — something was charted (its description); ``refused(str)`` —
    monitor refused it (the message, also shown in the error label).
    """

    recorded = Signal(object)
    refused = Signal(str)

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.setObjectName("eventBar")
        self.setFont(theme.font(10.5))   # before the style sheet, or children keep the default font
        self.setStyleSheet(dialog_style() + f"QFrame#eventBar {{ background: {theme.BACKGROUND}; "
                           f"border: 1px solid {theme.PANEL_EDGE}; border-radius: 4px; }}")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 2, 4, 2)
        outer.setSpacing(2)
        self.content = QWidget()
        row = QHBoxLayout(self.content)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(theme.px(6))
        grid = FlowGrid(spacing=theme.px(6), uniform=False)   # one row when it fits, else as many as it takes
        self.event_buttons: dict[str, QPushButton] = {}
        events = [cls for cls in EVENTS.values() if issubclass(cls, PresetEvent)]
        for cls in events:
            button = QPushButton(_two_lines(cls.title))
            button.setToolTip(f"Record {cls.title.lower()} now (Undo for {UNDO_S} s after)")
            button.clicked.connect(lambda _=False, c=cls: self.record_event(c()))
            grid.addWidget(button)
            self.event_buttons[cls.kind] = button
        self.rescue_button = QPushButton("Rescue\nmedication…")
        self.rescue_button.clicked.connect(self.rescue_medication)
        grid.addWidget(self.rescue_button)
        # Assessments share one button with a menu, so that the bar stays one row high.
        self.assessment_button = QPushButton("Assessment ▾")
        self.assessment_button.setToolTip("Chart an assessment (MOAA/S, RASS, CADSS, BPRS+, pain, nausea, Aldrete)")
        menu = QMenu(self.assessment_button)
        menu.setFont(theme.font(12))
        self.assessment_actions: dict[str, QAction] = {}
        for kind, cls in ASSESSMENTS.items():
            action = menu.addAction(f"{cls.title}…")
            action.triggered.connect(lambda _=False, k=kind: self.chart(k))
            self.assessment_actions[kind] = action
        self.assessment_button.setMenu(menu)
        grid.addWidget(self.assessment_button)
        row.addLayout(grid, stretch=5)
        self.note = QLineEdit()
        self.note.setPlaceholderText("Note for the record… (F3)")
        self.note.returnPressed.connect(self.save_note)
        self.note.setMinimumWidth(theme.px(150))
        self.note.setMinimumHeight(theme.px(38))
        row.addWidget(self.note, stretch=1)
        self.save_button = QPushButton("Save\nnote")
        self.save_button.clicked.connect(self.save_note)
        row.addWidget(self.save_button)
        self._titles = {button: (text, _two_lines(text)) for button, text in
                        [*((self.event_buttons[cls.kind], cls.title) for cls in events),
                         (self.rescue_button, "Rescue medication…"), (self.save_button, "Save note")]}
        self._grid = grid
        self._two_line = None
        outer.addWidget(self.content)
        # One row of buttons only: what was recorded or refused goes out through the signals
        # (the window shows it in its message line); the labels keep the last texts.
        self.hint = hint("")
        self.status = QLabel("")
        self.status.setObjectName("status")
        self.error = ErrorLabel(10.5)
        context.service.session_changed.connect(self.refresh)
        context.user_changed.connect(self.refresh)
        self.refresh()

    def showEvent(self, event) -> None:
        """Children built apart keep Qt's default font under a style sheet: give them ours."""
        apply_base_font(self)
        super().showEvent(event)
        self._fit_titles()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._fit_titles()

    def _fit_titles(self) -> None:
        """One line per button when the whole bar fits in one row so; else long titles on two
        lines (lower buttons, and fewer rows where the bar must wrap)."""
        if not self.isVisible():
            return

        def needed(button: QPushButton, text: str) -> int:
            metrics = button.fontMetrics()
            shown = max(metrics.horizontalAdvance(line) for line in button.text().split("\n"))
            return button.sizeHint().width() - shown + metrics.horizontalAdvance(text)

        spacing = self._grid.spacing()
        row = sum(needed(button, text) + spacing for button, (text, _) in self._titles.items())
        row += self.assessment_button.sizeHint().width() + self.note.minimumWidth() + 2 * spacing
        two_line = row > self.content.width()
        if two_line != self._two_line:
            self._two_line = two_line
            for button, (text, split) in self._titles.items():
                button.setText(split if two_line else text)

    # ------------------------------------------------------------------ state
    def refresh(self, *_: object) -> None:
        """Enable the bar only while a session is being recorded."""
        state = session_state(self.context)
        active = state is not None and not state.phase.terminal
        locked = self.context.user is None
        self.content.setEnabled(active and not locked)
        self.hint.setText("Locked: sign in to chart" if locked and active else
                          "" if active else "Start a session to chart events and assessments.")
        self.content.setToolTip(self.hint.text())
        self.note.setPlaceholderText("Note for the record… (F3)" if active and not locked else
                                     "Locked" if locked and active else "No session")
        if not active:
            self.status.setText("")

    def focus_note(self) -> None:
        """Put the keyboard in the note field (the window's F3)."""
        self.note.setFocus()
        self.note.selectAll()

    # ------------------------------------------------------------------ recording
    def _run(self, work: Callable[[], Confirmation | str | None], name: str) -> bool:
        self.error.setText("")
        try:
            done = work()
        except (ValueError, LookupError, StoreError) as exc:
            message = describe_error(exc)
            self.error.setText(message)
            self.refused.emit(message)
            return False
        except Exception as exc:  # shown, never swallowed
            log.exception("event bar: %s failed", name)
            self.error.setText(f"Not done: {type(exc).__name__}: {exc}")
            self.refused.emit(self.error.text())
            return False
        if done:
            done = done if isinstance(done, Confirmation) else Confirmation(done)
            self.status.setText(done.text)
            self.recorded.emit(done)
        return True

    def _user(self):
        return require_user(self.context, self, "Sign in to chart this.")

    def _record(self, event: Event, user) -> Confirmation:
        """Record ``event`` now; a one-tap event can be undone (a correction) for a few seconds."""
        now = device_now(self.context)
        entries = self.context.service.record_event(event, user, t=now)
        what = event.describe()
        undo = None
        seq = next((e.seq for e in entries if e.seq is not None), None)
        if isinstance(event, PresetEvent) and seq is not None:
            def undo() -> str:
                self.context.service.correct(seq, f"Tapped in error: undone at the chair within {UNDO_S} s", user)
                return f"Undone: {what} at {clock(now)} (marked entered in error)"
        return Confirmation(f"Recorded {what} at {clock(now)} ({user.display_name})", f"{what} {clock(now)}", undo)

    def record_event(self, event: Event) -> bool:
        """Record ``event`` now as the signed-in user (a one-tap event: with an undo)."""
        def work() -> Confirmation | None:
            user = self._user()
            return None if user is None else self._record(event, user)
        return self._run(work, event.kind)

    def save_note(self) -> bool:
        """Record the note field (kept when refused, cleared once recorded)."""
        def work() -> Confirmation | None:
            note = Note(text=self.note.text())
            user = self._user()
            if user is None:
                return None
            done = self._record(note, user)
            self.note.clear()
            return done
        return self._run(work, "note")

    def rescue_medication(self) -> bool:
        """The rescue medication dialog."""
        def work() -> str | None:
            if self._user() is None:
                return None
            dialog = RescueMedicationDialog(self.context, self)
            if run_modal(dialog):
                return f"Recorded rescue medication: {dialog.medication().describe()}"
            return None
        return self._run(work, "rescue_medication")

    def chart(self, kind: str) -> bool:
        """The assessment dialog for ``kind``; OK charts it at the device time then."""
        def work() -> Confirmation | None:
            user = self._user()
            state = session_state(self.context)
            if user is None or state is None:
                return None
            spo2 = state.latest.get("spo2")
            post_dose = state.post_dose_bp(device_now(self.context))
            latest_sys = post_dose[0] if post_dose else None   # never the pre-dose reading
            baseline = state.baseline
            charted: list[Confirmation] = []

            def chart(assessment: Assessment) -> None:
                now = device_now(self.context)
                self.context.service.chart(assessment, user, t=now)
                charted.append(Confirmation(f"Charted {assessment.describe()} at {clock(now)} ({user.display_name})",
                                            f"{assessment.describe()} {clock(now)}"))

            dialog = AssessmentDialog(kind, self, latest_spo2=spo2.value if spo2 is not None else None,
                                      latest_sys=latest_sys, baseline_sys=baseline.sys if baseline else None,
                                      on_submit=chart)
            run_modal(dialog)
            return charted[-1] if charted else None
        return self._run(work, kind)
