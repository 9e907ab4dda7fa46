"""What every Vigil dialog shares: the dark touch-friendly look, the error label that shows
monitor's refusal next to the form, number parsing that hands the value to monitor unchanged,
modal execution that tests can replace, and the sign-in prompt before any recorded action.

No clinical rule lives here: a dialog collects what the nurse typed, hands it to ``monitor``,
and shows monitor's message (``nurse_message``) when it is refused, keeping every field as typed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from monitor.session import SessionState
from monitor.staff import Actor, SessionToken, nurse_message
from monitor.errors import StoreError
from ui import theme
from ui.context import UiContext

log = logging.getLogger(__name__)

__all__ = [
    "DIALOG_STYLE",
    "ChoiceRow",
    "FormDialog",
    "FormError",
    "QuickPicks",
    "SessionDialog",
    "apply_base_font",
    "describe_error",
    "device_now",
    "dry_run",
    "heading",
    "hint",
    "minutes_text",
    "parse_number",
    "require_token",
    "require_user",
    "run_modal",
    "session_state",
    "set_dialog_runner",
]

#: Extra style for dialogs and panels: large touch targets, readable hints, visible focus.
DIALOG_STYLE = f"""
QLabel#heading {{ color: {theme.TEXT}; }}
QLabel#hint {{ color: {theme.TEXT_DIM}; }}
QLabel#advisory {{ color: #000000; background: #ffb000; border-radius: 4px; }}
QLabel#error {{ color: #ff6a6a; font-weight: bold; }}
QPushButton {{ min-height: 40px; min-width: 64px; }}
QPushButton:checked {{ background: #2f6fb0; border-color: #6fb0ff; color: #ffffff; }}
QPushButton:focus, QLineEdit:focus, QPlainTextEdit:focus, QAbstractSpinBox:focus, QComboBox:focus {{
    border: 2px solid #6fb0ff; }}
QPushButton#primary {{ background: #1f5a2e; border-color: #3c9a55; font-weight: bold; }}
QPushButton#primary:disabled {{ background: #1a2420; color: #56606a; }}
QPushButton#danger {{ background: #5a1f1f; border-color: #9a3c3c; }}
QLineEdit, QComboBox, QAbstractSpinBox {{ min-height: 36px; }}
QLineEdit:disabled, QPlainTextEdit:disabled, QAbstractSpinBox:disabled, QComboBox:disabled {{
    color: {theme.TEXT_DIM}; background: #0c1014; border-color: #2a3138; }}
QAbstractSpinBox::up-button, QAbstractSpinBox::down-button {{ width: 28px; }}
QRadioButton, QCheckBox {{ spacing: 12px; padding: 3px; }}
QRadioButton::indicator, QCheckBox::indicator {{
    width: 22px; height: 22px; border: 2px solid #8a939b; background: #161c22; }}
QCheckBox::indicator {{ border-radius: 4px; }}
QRadioButton::indicator {{ border-radius: 13px; }}
QCheckBox::indicator:checked {{ background: #6fb0ff; border-color: #cfe4ff; }}
QRadioButton::indicator:checked {{ border-color: #6fb0ff; background: qradialgradient(cx:0.5, cy:0.5, radius:0.5,
    fx:0.5, fy:0.5, stop:0 #6fb0ff, stop:0.55 #6fb0ff, stop:0.62 #161c22, stop:1 #161c22); }}
QRadioButton::indicator:disabled, QCheckBox::indicator:disabled {{ border-color: #3a4650; }}
QGroupBox {{ border: 1px solid {theme.PANEL_EDGE}; border-radius: 4px; margin-top: 14px; padding: 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; padding: 0 4px; color: {theme.TEXT_DIM}; }}
QTabWidget::pane {{ border: 1px solid {theme.PANEL_EDGE}; }}
QTabBar::tab {{ background: #1f2830; color: {theme.TEXT}; padding: 10px 18px; min-height: 28px; }}
QTabBar::tab:selected {{ background: #34424e; }}
QListWidget, QTableWidget {{ background: #161c22; border: 1px solid #3a4650; }}
QListWidget::item, QTableWidget::item {{ padding: 8px; }}
QListWidget::item:selected, QTableWidget::item:selected {{ background: #2f6fb0; }}
QHeaderView::section {{ background: #1f2830; color: {theme.TEXT}; padding: 6px; border: 0; }}
QScrollArea {{ border: 0; }}
"""


class FormError(ValueError):
    """A form that cannot be handed to monitor yet (a number that is not a number, an empty
    required field, two PINs that differ). Shown like monitor's refusals."""


def describe_error(exc: BaseException) -> str:
    """The text for the error label: monitor's message for refusals, else the exception text."""
    return nurse_message(exc)


# --------------------------------------------------------------------------- modal execution

def _exec(dialog: QDialog) -> int:
    return dialog.exec()


_runner: Callable[[QDialog], int] = _exec


def run_modal(dialog: QDialog) -> int:
    """Show ``dialog`` modally and return its result (``QDialog.DialogCode``). Tests replace the
    runner with :func:`set_dialog_runner` to fill and accept dialogs without an event loop."""
    return _runner(dialog)


def set_dialog_runner(runner: Callable[[QDialog], int] | None) -> None:
    """Replace how :func:`run_modal` shows dialogs (None restores ``dialog.exec()``)."""
    global _runner
    _runner = runner or _exec


def require_user(context: UiContext, parent: QWidget | None = None, why: str = "") -> Actor | None:
    """The signed-in user; when nobody is signed in, the sign-in dialog first (None if cancelled)."""
    if context.user is not None:
        return context.user
    from ui.dialogs.signin import SignInDialog

    run_modal(SignInDialog(context, parent, why=why))
    return context.user


def require_token(context: UiContext, parent: QWidget | None = None, why: str = "") -> SessionToken:
    """The session token of the signed-in user, for a privileged command (sign-in first when nobody
    is signed in; :class:`FormError` with ``why`` if cancelled)."""
    if require_user(context, parent, why) is None or context.token is None:
        raise FormError(why.rstrip(".") or "Sign in first")
    return context.token


# --------------------------------------------------------------------------- time and session

def device_now(context: UiContext) -> datetime:
    """Now in the device's time base (the simulated monitor may run faster than real time)."""
    return context.service.now()


def session_state(context: UiContext) -> SessionState | None:
    """A read-only replica of the session being recorded, or None (or at a desk)."""
    return context.service.session() if context.service is not None else None


def dry_run(state: SessionState, action: Callable[[SessionState], object]) -> str | None:
    """Try ``action`` on a replayed copy of ``state`` (nothing is recorded): None if monitor would
    accept it, else monitor's message. Used to say *before* the nurse presses OK what is missing."""
    try:
        copy = SessionState.from_entries(state.entries)
        action(copy)
    except (ValueError, LookupError, StoreError) as exc:
        return describe_error(exc)
    return None


# --------------------------------------------------------------------------- parsing

def parse_number(text: str, what: str, *, required: bool = True, integer: bool = False) -> float | int | None:
    """The number typed in a field, unchanged (monitor checks the range). Accepts a decimal comma.
    Empty → None, or :class:`FormError` "Enter the weight" when ``required``; text that is not a
    number → :class:`FormError` naming the field."""
    raw = (text or "").strip()
    if not raw:
        if required:
            raise FormError(f"Enter the {what}")
        return None
    cleaned = raw.replace(",", ".").replace(" ", "")
    try:
        value = float(cleaned)
    except ValueError:
        raise FormError(f"The {what} {raw!r} is not a number") from None
    if integer and not value.is_integer():
        raise FormError(f"The {what} {raw!r} must be a whole number")
    # "4" stays a whole number (so monitor's messages read "Dose 0", not "Dose 0.0")
    return int(value) if value.is_integer() and (integer or "." not in cleaned) else value


def minutes_text(minutes: float) -> str:
    """A duration for the nurse: "4:12" (m:ss) or "1:02:03" (h:mm:ss); negative shows as 0:00."""
    total = max(int(round(minutes * 60)), 0)
    hours, rest = divmod(total, 3600)
    mins, secs = divmod(rest, 60)
    return f"{hours}:{mins:02d}:{secs:02d}" if hours else f"{mins}:{secs:02d}"


def apply_base_font(root: QWidget) -> None:
    """Give every descendant of ``root`` that has no font of its own its parent's font.

    Qt does not propagate a parent's font to widgets that were built separately and added after a
    style sheet was set (they keep the application's small default), so dialogs and panels call
    this when shown. Widgets given a font with ``setFont`` (headings, hints) keep theirs."""
    for child in root.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly):
        if not child.testAttribute(Qt.WidgetAttribute.WA_SetFont):
            child.setFont(root.font())
            child.setAttribute(Qt.WidgetAttribute.WA_SetFont, False)
        apply_base_font(child)


# --------------------------------------------------------------------------- small widgets

class ErrorLabel(QLabel):
    """The refusal line of a panel (objectName ``error``): hidden while empty, so it takes no room."""

    def __init__(self, points: float = 11, parent: QWidget | None = None) -> None:
        super().__init__("", parent)
        self.setObjectName("error")
        self.setWordWrap(True)
        self.setFont(theme.font(points, bold=True))
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hide()

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setVisible(bool(text))


def heading(text: str, points: float = 15) -> QLabel:
    """A bold heading label."""
    label = QLabel(text)
    label.setObjectName("heading")
    label.setFont(theme.font(points, bold=True))
    label.setWordWrap(True)
    return label


def hint(text: str = "", points: float = 10.5) -> QLabel:
    """A dim, word-wrapped explanatory label."""
    label = QLabel(text)
    label.setObjectName("hint")
    label.setFont(theme.font(points))
    label.setWordWrap(True)
    return label


class ChoiceRow(QWidget):
    """A row (or grid) of large checkable buttons, one per option; at most one is chosen.

    ``options`` are ``(value, text)``; :meth:`value` is the chosen value or None (unanswered: the
    model then refuses it with its own message). Keyboard: Tab to a button, Space to choose.
    """

    def __init__(self, options: Iterable[tuple[Any, str]], parent: QWidget | None = None, *,
                 columns: int = 0, tooltips: dict[Any, str] | None = None, min_width: int = 48) -> None:
        super().__init__(parent)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self._values: dict[int, Any] = {}
        self._buttons: dict[Any, QPushButton] = {}
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        for i, (value, text) in enumerate(options):
            button = QPushButton(text)
            button.setCheckable(True)
            button.setAutoDefault(False)
            button.setMinimumWidth(min_width)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            if tooltips and value in tooltips:
                button.setToolTip(tooltips[value])
            self.group.addButton(button, i)
            self._values[i] = value
            self._buttons[value] = button
            row, col = divmod(i, columns) if columns else (0, i)
            layout.addWidget(button, row, col)

    def value(self) -> Any:
        """The chosen value, or None."""
        checked = self.group.checkedId()
        return self._values.get(checked) if checked != -1 else None

    def set_value(self, value: Any) -> None:
        """Choose ``value`` (None clears the choice)."""
        if value is None:
            self.group.setExclusive(False)
            for button in self._buttons.values():
                button.setChecked(False)
            self.group.setExclusive(True)
            return
        self._buttons[value].setChecked(True)

    def button(self, value: Any) -> QPushButton:
        """The button of ``value`` (for tests and focus)."""
        return self._buttons[value]


class QuickPicks(QWidget):
    """Buttons that put a common text into a line edit (the nurse may still edit it)."""

    def __init__(self, target: QLineEdit, picks: Iterable[str], parent: QWidget | None = None, columns: int = 3) -> None:
        super().__init__(parent)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        self.buttons: list[QPushButton] = []
        for i, text in enumerate(picks):
            button = QPushButton(text)
            button.setAutoDefault(False)
            button.clicked.connect(lambda _=False, t=text: (target.setText(t), target.setFocus()))
            row, col = divmod(i, columns)
            layout.addWidget(button, row, col)
            self.buttons.append(button)


# --------------------------------------------------------------------------- the dialog base

class FormDialog(QDialog):
    """A modal form with a heading, a body, a visible error label (objectName ``error``) and
    OK / Cancel buttons.

    Subclasses build the body in ``self.body`` and implement :meth:`submit`, which does the work
    (usually a ``monitor`` call) and raises to refuse. :meth:`accept` runs :meth:`submit`; a
    refusal shows its message in the error label and the dialog stays open with every field as
    typed. Enter presses OK, Escape cancels.
    """

    def __init__(self, title: str, parent: QWidget | None = None, *, ok_text: str = "OK",
                 cancel_text: str = "Cancel", scroll: bool = False, subtitle: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Vigil — {title}")
        self.setModal(True)
        self.setFont(theme.font(12))   # before the style sheet, or children keep the default font
        self.setStyleSheet(theme.STYLE + DIALOG_STYLE)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(18, 14, 18, 14)
        outer.setSpacing(10)
        self.title_label = heading(title, 16)
        outer.addWidget(self.title_label)
        if subtitle:
            outer.addWidget(hint(subtitle))
        self.body_widget = QWidget()
        self.body = QVBoxLayout(self.body_widget)
        self.body.setContentsMargins(0, 0, 0, 0)
        self.body.setSpacing(10)
        self.scroll_area: QScrollArea | None = None
        if scroll:  # long forms: they scroll where the room below the alarm area is too small
            area = self.scroll_area = QScrollArea()
            area.setWidgetResizable(True)
            area.setFrameShape(QFrame.Shape.NoFrame)
            area.setWidget(self.body_widget)
            outer.addWidget(area, stretch=1)
        else:
            outer.addWidget(self.body_widget, stretch=1)
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.setFont(theme.font(12, bold=True))
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.error)
        self.buttons = QDialogButtonBox()
        self.ok_button = self.buttons.addButton(ok_text, QDialogButtonBox.ButtonRole.AcceptRole)
        self.ok_button.setObjectName("primary")
        self.ok_button.setDefault(True)
        self.ok_button.setMinimumSize(160, 48)
        self.cancel_button = self.buttons.addButton(cancel_text, QDialogButtonBox.ButtonRole.RejectRole)
        self.cancel_button.setMinimumSize(120, 48)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        outer.addWidget(self.buttons)

    def showEvent(self, event) -> None:
        """Grow to fit wrapped text (Qt under-estimates word-wrapped labels), within the screen."""
        apply_base_font(self)
        super().showEvent(event)
        layout = self.layout()
        layout.activate()
        width = max(self.width(), self.sizeHint().width())
        height = layout.totalHeightForWidth(width) if layout.hasHeightForWidth() else self.sizeHint().height()
        if self.scroll_area is not None:  # a scroll area asks for little: ask for the whole form
            height += max(0, self.body_widget.sizeHint().height() - self.scroll_area.sizeHint().height())
        height = max(height, self.height())
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        if screen is not None:
            width, height = min(width, screen.width()), min(height, screen.height() - 40)
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)

    # ------------------------------------------------------------------ refusals
    def show_error(self, text: str) -> None:
        """Show ``text`` in the error label (empty clears it)."""
        self.error.setText(text)

    def attempt(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Run ``work``; on a refusal show its message and return False (nothing is lost)."""
        try:
            work(*args, **kwargs)
        except (ValueError, LookupError, StoreError) as exc:
            self.show_error(describe_error(exc))
            return False
        except Exception as exc:  # an unexpected fault is shown, never swallowed
            log.exception("%s failed", type(self).__name__)
            self.show_error(f"Not done: {type(exc).__name__}: {exc}")
            return False
        return True

    def submit(self) -> None:
        """Do the dialog's work; raise to refuse (subclasses)."""

    def accept(self) -> None:
        self.show_error("")
        if self.attempt(self.submit):
            super().accept()

    # ------------------------------------------------------------------ layout helpers
    @staticmethod
    def row(*widgets: QWidget | QAbstractButton | None, stretch_last: bool = False) -> QHBoxLayout:
        """A horizontal row of widgets (None adds stretch)."""
        layout = QHBoxLayout()
        layout.setSpacing(8)
        for widget in widgets:
            if widget is None:
                layout.addStretch(1)
            else:
                layout.addWidget(widget)
        if stretch_last:
            layout.addStretch(1)
        return layout


class SessionDialog(FormDialog):
    """A form that records something on the session being recorded, as the signed-in user at the
    device's time now (:meth:`act`)."""

    def __init__(self, context: UiContext, title: str, parent: QWidget | None = None, **kwargs: Any) -> None:
        super().__init__(title, parent, **kwargs)
        self.context = context

    @property
    def state(self) -> SessionState:
        """The session being recorded (a refusal if there is none any more)."""
        state = session_state(self.context)
        if state is None:
            raise FormError("No session is being recorded")
        return state

    def actor(self) -> Actor:
        """The signed-in user (asks for sign-in first; a refusal if cancelled)."""
        actor = require_user(self.context, self, "Sign in to record this.")
        if actor is None:
            raise FormError("Sign in to record this")
        return actor

    def token(self) -> SessionToken:
        """The signed-in user's session token, for a signature (asks for sign-in first)."""
        return require_token(self.context, self, "Sign in to sign this.")

    def now(self) -> datetime:
        """The device's time now."""
        return device_now(self.context)

    @property
    def service(self) -> Any:
        """The session service (typed commands; monitor refuses by raising)."""
        return self.context.service
