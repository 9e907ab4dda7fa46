"""The locked screen's overlay: a dimmed veil over what needs a signed-in nurse (the session
panel with the patient's details, the event bar), saying "Locked — sign in" with the button to
do it. The alarm area, F1/F2, the tiles, waveforms and trends are never covered: monitoring and
alarms carry on while the screen is locked.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from ui import theme

__all__ = ["LockOverlay"]

#: The veil: black at this opacity (0–255) over the covered widget.
VEIL_ALPHA = 215


class LockOverlay(QWidget):
    """Covers ``target`` (resizing with it) while shown: a dark veil with ``text`` and, when
    ``button_text`` is given, a button that emits ``sign_in_requested``. Hidden until :meth:`show`."""

    sign_in_requested = Signal()

    def __init__(self, target: QWidget, text: str, button_text: str = "", points: float = 15) -> None:
        super().__init__(target)
        self.target = target
        self.setObjectName("lockOverlay")
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground)
        self.setAutoFillBackground(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(theme.px(8), theme.px(4), theme.px(8), theme.px(4))
        layout.addStretch(1)
        self.label = QLabel(text)
        self.label.setObjectName("lockText")
        self.label.setFont(theme.font(points, bold=True))
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        self.label.setStyleSheet("color: #ffd000; background: transparent;")
        layout.addWidget(self.label)
        self.button: QPushButton | None = None
        if button_text:
            self.button = QPushButton(button_text)
            self.button.setFont(theme.font(12, bold=True))
            self.button.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
            self.button.setMinimumHeight(theme.px(40))
            self.button.clicked.connect(self.sign_in_requested)
            layout.addWidget(self.button, alignment=Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)
        target.installEventFilter(self)
        self.hide()

    def show(self) -> None:  # noqa: D102 (QWidget)
        self.setGeometry(self.target.rect())
        super().show()
        self.raise_()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QEvent.Type.Resize and watched is getattr(self, "target", None):
            self.setGeometry(self.target.rect())
        return False

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(0, 0, 0, VEIL_ALPHA))
        painter.setPen(QColor(theme.PRIORITY_COLOURS["MEDIUM"]))
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        painter.end()
