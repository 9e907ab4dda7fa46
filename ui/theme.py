"""Colours and type for the chairside screen: a dark background, bedside-monitor parameter colours,
IEC 60601-1-8 priority colours, and font sizes that scale with the screen so that numerics read
from 3 m on a 1366x768 panel as on a 1920x1080 one."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QGuiApplication

BACKGROUND = "#000000"
PANEL = "#101418"
PANEL_EDGE = "#2a3138"
TEXT = "#e8e8e8"
TEXT_DIM = "#8a939b"

#: Conventional parameter colours of bedside monitors.
PARAMETER_COLOURS: dict[str, str] = {
    "hr": "#00e060", "ecg": "#00e060",
    "spo2": "#00d8ff", "pr": "#00d8ff", "pi": "#00d8ff", "pleth": "#00d8ff",
    "nibp_sys": "#ffffff", "nibp_dia": "#ffffff", "nibp_mean": "#ffffff", "nibp": "#ffffff",
    "rr": "#ffe000", "etco2": "#ffe000", "co2": "#ffe000",
    "temp": "#ff9ad5", "spco": "#ff9a40", "spmet": "#ff9a40", "sphb": "#ff9a40", "pvi": "#ff9a40",
}

#: IEC 60601-1-8 alarm colours by priority name; text colour to use on top of each.
PRIORITY_COLOURS: dict[str, str] = {"HIGH": "#e00000", "MEDIUM": "#ffd000", "LOW": "#00c8ff"}
PRIORITY_TEXT: dict[str, str] = {"HIGH": "#ffffff", "MEDIUM": "#000000", "LOW": "#000000"}
#: Flash rates: HIGH 2 Hz (1.4–2.8 Hz), MEDIUM 0.6 Hz (0.4–0.8 Hz) at 50 % duty; LOW steady.
FLASH_HZ: dict[str, float] = {"HIGH": 2.0, "MEDIUM": 0.6, "LOW": 0.0}


def colour(key: str) -> QColor:
    """The parameter colour of a vital or waveform key (light grey if none)."""
    return QColor(PARAMETER_COLOURS.get(key, TEXT))


def flash_on(priority: str | None, t: float) -> bool:
    """Whether a flashing indicator of ``priority`` is lit at monotonic time ``t`` (seconds)."""
    if priority is None:
        return False
    hz = FLASH_HZ.get(priority, 0.0)
    return True if hz == 0 else (t * hz) % 1.0 < 0.5


#: The screen the layout was first drawn for: everything scales from it.
BASE_SIZE = (1366, 768)


def scale() -> float:
    """Size scale for the primary screen: 1.0 on a 1366x768 screen, in proportion on others (the
    smaller of the width and height ratios of the available area, so that a 5:4 or a tall screen
    scales by what limits it), between 0.8 and 2.5."""
    screen = QGuiApplication.primaryScreen()
    if screen is None:
        return 1.0
    area = screen.availableGeometry()
    return max(0.8, min(2.5, area.width() / BASE_SIZE[0], area.height() / BASE_SIZE[1]))


def dpi_factor() -> float:
    """Pixels per point relative to 96 dpi (1.0 on most screens; 1.5 where the desktop sets 144 dpi
    without scaling the pixels): fonts grow with it by themselves, pixel sizes must follow."""
    screen = QGuiApplication.primaryScreen()
    return max(1.0, screen.logicalDotsPerInch() / 96.0) if screen is not None else 1.0


def px(pixels: float) -> int:
    """A size given in pixels of the 1366x768 layout, on this screen (scaled with the fonts)."""
    return max(1, round(pixels * scale() * dpi_factor()))


def font(points: float, bold: bool = False) -> QFont:
    """A sans-serif font of ``points`` (before screen scaling)."""
    f = QFont("DejaVu Sans")
    f.setPointSizeF(points * scale())
    f.setBold(bold)
    return f


#: Menus, item views and dialog frames: one look everywhere (hover, keyboard focus, disabled).
HIGHLIGHT = "#2f6fb0"
DISABLED = "#5f6a74"
DIALOG_BACKGROUND = "#0d1216"
DIALOG_EDGE = "#6f8aa0"


_STYLE = f"""
QWidget {{ background: {{base}}; color: {TEXT}; }}
QFrame#panel {{ background: {PANEL}; border: 1px solid {PANEL_EDGE}; border-radius: 4px; }}
QPushButton {{ background: #1f2830; color: {TEXT}; border: 1px solid #3a4650; border-radius: 4px; padding: 6px 12px; }}
QPushButton:hover {{ background: #2a3640; }}
QPushButton:pressed {{ background: #34424e; }}
QPushButton:disabled {{ color: #56606a; border-color: #2a3138; }}
QToolButton {{ background: #1f2830; color: {TEXT}; border: 1px solid #3a4650; border-radius: 4px; padding: 3px 8px; }}
QToolButton:hover {{ background: #2a3640; }}
QToolButton:disabled {{ color: #56606a; border-color: #2a3138; }}
QToolButton::menu-indicator {{ image: none; width: 0px; }}
QLineEdit, QSpinBox, QDoubleSpinBox, QComboBox, QDateEdit, QTimeEdit, QPlainTextEdit, QTextEdit {{
    background: #161c22; color: {TEXT}; border: 1px solid #3a4650; border-radius: 3px; padding: 3px; }}
QLabel#error {{ color: #ff6a6a; }}
QLabel:disabled, QCheckBox:disabled, QRadioButton:disabled {{ color: {DISABLED}; }}
QToolTip {{ background: #20282f; color: {TEXT}; border: 1px solid #3a4650; }}
QMenu {{ background: #1a2128; color: {TEXT}; border: 1px solid {DIALOG_EDGE}; padding: 4px; }}
QMenu::item {{ padding: 8px 28px 8px 16px; border: 1px solid transparent; border-radius: 3px; }}
QMenu::item:selected {{ background: {HIGHLIGHT}; color: #ffffff; border-color: #6fb0ff; }}
QMenu::item:disabled {{ color: {DISABLED}; background: transparent; border-color: transparent; }}
QMenu::separator {{ height: 1px; background: {PANEL_EDGE}; margin: 4px 8px; }}
QAbstractItemView {{ background: #12181d; alternate-background-color: #1a2229; color: {TEXT};
    selection-background-color: {HIGHLIGHT}; selection-color: #ffffff; gridline-color: #26303a; }}
QAbstractItemView:disabled {{ color: {DISABLED}; }}
QHeaderView::section {{ background: #1f2830; color: {TEXT}; padding: 4px 3px; border: 0;
    border-right: 1px solid #2a3138; }}
QDialog, QMessageBox {{ background: {DIALOG_BACKGROUND}; border: 2px solid {DIALOG_EDGE}; }}
QMessageBox QLabel {{ color: {TEXT}; background: transparent; }}
QStatusBar {{ color: {TEXT}; }}
"""


def style(base: str = BACKGROUND) -> str:
    """The style sheet of every Vigil window, on the background colour ``base``."""
    return _STYLE.replace("{base}", base)


#: The monitoring window's style sheet (black); dialogs use ``style(DIALOG_BACKGROUND)``.
STYLE = style()
