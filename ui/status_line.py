"""The monitoring window's message line: what was just recorded (or refused), readable in full.

A confirmation stays until the next one (it never vanishes before it can be read); the line shows
it in full, or its short form when the room is short, and the *Log* button lists the last few in
full with their times. A one-tap event (Nausea, Anxiety …) can be undone for :data:`UNDO_S`
seconds: *Undo* records a correction that marks it entered in error (the record keeps both).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QMenu, QPushButton, QSizePolicy, QToolButton, QWidget

from ui import theme
from ui.layout import FitLabel

__all__ = ["Confirmation", "StatusLine", "UNDO_S", "LOG_LENGTH"]

#: Seconds during which a one-tap event can be undone.
UNDO_S = 10
#: Messages kept in the log.
LOG_LENGTH = 8
_REFUSED = "#ff6a6a"


@dataclass(frozen=True)
class Confirmation:
    """A message for the line: ``text`` in full, ``short`` when room is short ("" = none), and for
    a one-tap event ``undo``, which undoes it and returns what to say then."""

    text: str
    short: str = ""
    undo: Callable[[], str] | None = None


class StatusLine(QWidget):
    """The message, its *Undo* (while a one-tap event may be undone) and the *Log* of the last
    :data:`LOG_LENGTH` messages. ``refused(str)`` messages show in red until the next one."""

    def __init__(self, points: float = 10, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(theme.px(4))
        self.message = FitLabel(theme.font(points), min_ratio=0.85)
        self.message.setObjectName("statusMessage")
        self.message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.message, stretch=1)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setFont(theme.font(points, bold=True))
        self.undo_button.setToolTip(f"Undo the event just recorded (for {UNDO_S} s): it is marked entered in "
                                    "error; the record keeps both")
        self.undo_button.clicked.connect(self.undo)
        self.undo_button.hide()
        layout.addWidget(self.undo_button)
        self.log_button = QToolButton()
        self.log_button.setText("Log ▾")
        self.log_button.setFont(theme.font(points))
        self.log_button.setToolTip("The last messages, in full")
        self.log_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.log_menu = QMenu(self.log_button)
        self.log_menu.setFont(theme.font(points))
        self.log_button.setMenu(self.log_menu)
        self.log_menu.aboutToShow.connect(self._fill_log)
        layout.addWidget(self.log_button)
        self.log: deque[tuple[datetime, str, bool]] = deque(maxlen=LOG_LENGTH)
        self._tags: deque[object] = deque(maxlen=LOG_LENGTH)   # the session each message was said in
        self._undo: Callable[[], str] | None = None
        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.timeout.connect(self.drop_undo)
        self.log_button.setEnabled(False)
        self.locked = False

    @property
    def text(self) -> str:
        """The message in full (what the log keeps), "" before the first."""
        return self.log[-1][1] if self.log else ""

    def show_message(self, message: Confirmation | str, refused: bool = False, tag: object = None) -> None:
        """Show ``message`` until the next one (red when ``refused``); a confirmation with
        ``undo`` offers *Undo* for :data:`UNDO_S` seconds. ``tag``: the session it was said in
        (see :meth:`keep_only`)."""
        if isinstance(message, str):
            message = Confirmation(message)
        self.log.append((datetime.now(), message.text, refused))
        self._tags.append(tag)
        self.log_button.setEnabled(not self.locked)
        self.message.setStyleSheet(f"color: {_REFUSED}; font-weight: bold;" if refused else f"color: {theme.TEXT};")
        forms = (message.text, message.short) if message.short else (message.text,)
        self.message.set_forms(*forms)
        self.message.setToolTip(message.text)
        self._undo = message.undo
        self.undo_button.setVisible(message.undo is not None)
        if message.undo is not None:
            self._undo_timer.start(UNDO_S * 1000)
        else:
            self._undo_timer.stop()

    def set_locked(self, locked: bool) -> None:
        """While the screen is locked the log does not open (it lists what staff recorded)."""
        self.locked = locked
        self.log_menu.close()
        self.log_button.setEnabled(not locked and bool(self.log))

    def keep_only(self, tag: object) -> None:
        """A new patient's session (``tag``) started: the messages said under another tag (the last
        patient's, free text included, and those said between patients) leave the line and the
        log; what was said for this session stays."""
        kept = [(item, t) for item, t in zip(self.log, self._tags) if t == tag]
        if len(kept) == len(self.log):
            return
        self.log = deque((item for item, _ in kept), maxlen=LOG_LENGTH)
        self._tags = deque((t for _, t in kept), maxlen=LOG_LENGTH)
        if not kept:
            self.drop_undo()
            self.undo_button.hide()
            self.message.set_forms()
            self.message.setToolTip("")
        self.log_button.setEnabled(not self.locked and bool(self.log))

    def undo(self) -> None:
        """Undo the last one-tap event (while offered); the outcome becomes the message."""
        undo, self._undo = self._undo, None
        self.undo_button.hide()
        self._undo_timer.stop()
        if undo is None:
            return
        try:
            said = undo()
        except (ValueError, LookupError) as exc:
            from ui.dialogs.base import describe_error  # noqa: PLC0415

            self.show_message(f"Not undone: {describe_error(exc)}", refused=True)
            return
        self.show_message(said)

    def drop_undo(self) -> None:
        """No more undo for the last event (its time is up, or the screen was locked)."""
        self._undo = None
        self._undo_timer.stop()
        self.undo_button.hide()


    def _fill_log(self) -> None:
        self.log_menu.clear()
        screen = self.screen()
        room = int((screen.availableGeometry().width() if screen is not None else 1366) * 0.9) - theme.px(60)
        metrics = self.log_menu.fontMetrics()
        for at, text, refused in reversed(self.log):
            line = f"{at:%H:%M:%S}  {'NOT DONE: ' if refused else ''}{text}"
            # a long line gives way in its middle (never past the screen's edge); whole in its tool tip
            action = self.log_menu.addAction(metrics.elidedText(line, Qt.TextElideMode.ElideMiddle, room))
            action.setToolTip(text)
        self.log_menu.setToolTipsVisible(True)
