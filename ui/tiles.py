"""Numeric tiles: one vital sign each, readable from across the room.

A tile paints itself in one pass (no child labels, no style sheets to re-polish): the label and
unit top left, the trend arrow under them, the value as large as the tile allows, the alarm limits
small on the right, and an optional sub-line (NIBP's "MAP 93 · 3 min ago", "PR 72"). Geometry and
fonts are worked out on resize and when the set of things shown changes; a setter repaints only
when what it shows actually changed.

Alarm look (IEC 60601-1-8 colours from :mod:`ui.theme`): a tile in alarm takes its priority's
colour as background with :data:`theme.PRIORITY_TEXT` text; HIGH and MEDIUM flash at
:data:`theme.FLASH_HZ` on the window's shared clock (:meth:`NumericTile.set_flash_phase`), and
while unlit keep a thick border in the priority colour so the tile never looks normal. LOW is
steady. The tile decides nothing: the window tells it the value, limits, trend, staleness and
priority, all worked out in :mod:`monitor.display` and the alarm engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QFrame, QSizePolicy

from ui import theme

_ARROWS = {1: "↑", -1: "↓"}
_PRIORITIES = ("LOW", "MEDIUM", "HIGH")
#: Fraction of the value area's height the digits' cap height may take (the rest is air).
_VALUE_FILL = 0.9


def _font(pixels: float, bold: bool = False) -> QFont:
    font = QFont(theme.font(10, bold=bold))
    font.setPixelSize(max(1, int(pixels)))
    return font


@dataclass
class _Layout:
    """Rectangles and fonts of one tile size (recomputed on resize / content change)."""

    size: tuple[int, int]
    label_font: QFont
    unit_font: QFont
    small_font: QFont
    value_font: QFont
    arrow_font: QFont
    label_pos: QPointF
    unit_pos: QPointF
    arrow_rect: QRectF
    value_rect: QRectF
    value_baseline: float
    high_rect: QRectF
    low_rect: QRectF
    sub_rect: QRectF


class NumericTile(QFrame):
    """One parameter: label, unit, value (huge), alarm limits, trend arrow and a sub-line.

    ``key`` is the vital key (``hr``, ``spo2`` …); ``colour_key`` picks the parameter colour from
    :data:`theme.PARAMETER_COLOURS` (default: ``key``); ``decimals`` is how numbers passed to
    :meth:`set_value` and :meth:`set_limits` are formatted. ``value_template`` is the widest text
    the value is sized for (digits of DejaVu Sans are all one width), so that the numerals keep
    their size as the value changes; a wider text shrinks to fit rather than clip.
    """

    def __init__(self, key: str, label: str, unit: str, colour_key: str | None = None,
                 decimals: int = 0, value_template: str | None = None) -> None:
        super().__init__()
        self.setObjectName(f"tile_{key}")
        self.key = key
        self.label = label
        self.unit = unit
        self.decimals = decimals
        self.parameter_colour = theme.colour(colour_key or key)
        self.value_template = value_template or ("888" + ("." + "8" * decimals if decimals > 0 else ""))
        self.value_text = "--"
        self.limits: tuple[str, str] = ("", "")
        self.trend = 0
        self.subtext = ""
        self.dimmed = False
        self.alarm: str | None = None
        self.lit = False  # alarm colours showing now (always for LOW, flashing for MEDIUM/HIGH)
        self._layout: _Layout | None = None
        self._fitted_text = ""
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(theme.px(110), theme.px(56))
        self.setProperty("alarm", "")
        self.setAccessibleName(label)

    # ------------------------------------------------------------------ setters
    def set_label(self, label: str, colour_key: str) -> None:
        """Show another parameter's name and colour (the HR tile showing the pulse rate as "PR"
        when the device has no ECG)."""
        colour = theme.colour(colour_key)
        if label != self.label or colour != self.parameter_colour:
            self.label = label
            self.parameter_colour = colour
            self.setAccessibleName(label)
            self._layout = None
            self.update()

    def set_value(self, value: str | float | None) -> None:
        """Show ``value``: a number (formatted with ``decimals``), a ready text, or None/NaN ("--")."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            text = "--"
        elif isinstance(value, str):
            text = value
        else:
            text = f"{value:.{self.decimals}f}"
        if text != self.value_text:
            self.value_text = text
            if self._layout is not None and self._needs_refit(text):
                self._layout = None
            self.update()

    def set_limits(self, low: float | None, high: float | None) -> None:
        """Show the alarm limits as given (None hides that one)."""
        limits = (self._number(low), self._number(high))
        if limits != self.limits:
            self.limits = limits
            self._layout = None
            self.update()

    def set_trend(self, direction: int) -> None:
        """The trend arrow: > 0 rising (↑), < 0 falling (↓), 0 none."""
        direction = (direction > 0) - (direction < 0)
        if direction != self.trend:
            self.trend = direction
            self.update()

    def set_subtext(self, text: str) -> None:
        """The small line under the value ("" for none)."""
        text = text or ""
        if text != self.subtext:
            if bool(text) != bool(self.subtext):
                self._layout = None  # the value area grows or shrinks by the sub-line
            self.subtext = text
            self.update()

    def set_dimmed(self, dimmed: bool) -> None:
        """Dim the value (grey) for a stale or questionable reading."""
        if bool(dimmed) != self.dimmed:
            self.dimmed = bool(dimmed)
            self.update()

    def set_alarm(self, priority: str | None) -> None:
        """Show an alarm of ``priority`` ("LOW", "MEDIUM", "HIGH") on this tile, or none (None)."""
        if priority is not None and priority not in _PRIORITIES:
            raise ValueError(f"unknown alarm priority {priority!r}; expected one of {_PRIORITIES} or None")
        if priority == self.alarm:
            return
        self.alarm = priority
        self.lit = priority is not None
        self.setProperty("alarm", priority or "")
        self.update()

    def set_flash_phase(self, t: float) -> None:
        """Shared clock tick (monotonic seconds, from the window's frame timer): flash HIGH and
        MEDIUM at their rates; LOW stays lit."""
        lit = theme.flash_on(self.alarm, t)
        if lit != self.lit:
            self.lit = lit
            self.update()

    @property
    def arrow(self) -> str:
        """The trend arrow shown ("↑", "↓" or "")."""
        return _ARROWS.get(self.trend, "")

    def colours(self) -> tuple[QColor, QColor]:
        """(background, value colour) as painted now."""
        if self.alarm is not None and self.lit:
            return QColor(theme.PRIORITY_COLOURS[self.alarm]), QColor(theme.PRIORITY_TEXT[self.alarm])
        value = QColor(theme.TEXT_DIM) if self.dimmed else self.parameter_colour
        return QColor(theme.PANEL), value

    def _number(self, value: float | None) -> str:
        return "" if value is None else f"{value:.{self.decimals}f}"

    def _needs_refit(self, text: str) -> bool:
        """Only a text wider than the template changes the font (so that the numerals keep their
        size as the value changes), and going back to the template restores it."""
        return max(len(self.value_template), len(text)) != len(self._fitted_text)

    # ------------------------------------------------------------------ geometry
    def _compute_layout(self) -> _Layout:
        w, h = float(self.width()), float(self.height())
        margin = max(3.0, round(min(w, h) * 0.04))
        label_px = min(max(12.0, h * 0.18), 34.0)
        small_px = min(max(11.0, h * 0.13), 26.0)
        label_font = _font(label_px, bold=True)
        unit_font = _font(small_px)
        small_font = _font(small_px)
        label_metrics, unit_metrics, small_metrics = (QFontMetricsF(font)
                                                      for font in (label_font, unit_font, small_font))

        # left column: label over unit, the arrow below; right column: the limits
        label_pos = QPointF(margin, margin + label_metrics.ascent())
        unit_pos = QPointF(margin, label_pos.y() + label_metrics.descent() + unit_metrics.ascent())
        left = margin + max(label_metrics.horizontalAdvance(self.label),
                            unit_metrics.horizontalAdvance(self.unit)) + margin
        limit_width = max(small_metrics.horizontalAdvance(t) for t in (*self.limits, ""))
        right = w - margin - (limit_width + margin if limit_width else 0.0)
        sub_height = small_metrics.height() * 1.15 if self.subtext else 0.0
        bottom = h - margin - sub_height
        top = margin

        # the value: digits' cap height fills the area, its width fits the template
        probe = _font(100, bold=True)
        probe_metrics = QFontMetricsF(probe)
        cap_ratio = probe_metrics.capHeight() / 100 or 0.73
        text = self.value_text if len(self.value_text) > len(self.value_template) else self.value_template
        width_ratio = probe_metrics.horizontalAdvance(text) / 100
        value_rect = QRectF(left, top, max(1.0, right - left), max(1.0, bottom - top))
        pixels = min(value_rect.height() * _VALUE_FILL / cap_ratio, value_rect.width() / width_ratio)
        value_font = _font(pixels, bold=True)
        cap = QFontMetricsF(value_font).capHeight() or pixels * cap_ratio
        baseline = value_rect.top() + (value_rect.height() + cap) / 2
        self._fitted_text = text

        arrow_px = max(label_px, min(cap * 0.6, left - 2 * margin))
        arrow_font = _font(arrow_px, bold=True)
        arrow_top = unit_pos.y() + unit_metrics.descent()
        arrow_rect = QRectF(margin, arrow_top, max(1.0, left - margin), max(1.0, bottom - arrow_top))

        limits_left = right + margin
        high_rect = QRectF(limits_left, top, w - margin - limits_left, small_metrics.height())
        low_rect = QRectF(limits_left, bottom - small_metrics.height(), high_rect.width(), small_metrics.height())
        sub_rect = QRectF(margin, bottom, w - 2 * margin, sub_height)
        return _Layout((self.width(), self.height()), label_font, unit_font, small_font, value_font, arrow_font,
                       label_pos, unit_pos, arrow_rect, value_rect, baseline, high_rect, low_rect, sub_rect)

    # ------------------------------------------------------------------ painting
    def _current_layout(self) -> _Layout:
        if self._layout is None or self._layout.size != (self.width(), self.height()):
            self._layout = self._compute_layout()
        return self._layout

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt override)
        lay = self._current_layout()
        background, value_colour = self.colours()
        lit = self.alarm is not None and self.lit
        text_colour = value_colour if lit else QColor(theme.TEXT)
        label_colour = value_colour if lit else self.parameter_colour
        dim_colour = value_colour if lit else QColor(theme.TEXT_DIM)

        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        rect = QRectF(self.rect())
        painter.fillRect(rect, background)
        if self.alarm is not None and not lit:
            border = max(4.0, min(rect.width(), rect.height()) * 0.05)
            painter.setPen(QPen(QColor(theme.PRIORITY_COLOURS[self.alarm]), border))
            painter.drawRect(rect.adjusted(border / 2, border / 2, -border / 2, -border / 2))
        elif self.alarm is None:
            painter.setPen(QPen(QColor(theme.PANEL_EDGE), 1))
            painter.drawRect(rect.adjusted(0.5, 0.5, -0.5, -0.5))

        painter.setFont(lay.label_font)
        painter.setPen(label_colour)
        painter.drawText(lay.label_pos, self.label)
        painter.setFont(lay.unit_font)
        painter.setPen(dim_colour)
        painter.drawText(lay.unit_pos, self.unit)

        if self.trend:
            painter.setFont(lay.arrow_font)
            painter.setPen(text_colour)
            painter.drawText(lay.arrow_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             self.arrow)

        painter.setFont(lay.value_font)
        painter.setPen(value_colour)
        metrics = QFontMetricsF(lay.value_font)
        width = metrics.horizontalAdvance(self.value_text)
        baseline = lay.value_baseline
        if not any(c.isdigit() for c in self.value_text):  # "--": centre its ink, not a digit's
            ink = metrics.tightBoundingRect(self.value_text)
            baseline = lay.value_rect.center().y() - ink.center().y()
        painter.drawText(QPointF(lay.value_rect.right() - width, baseline), self.value_text)

        painter.setFont(lay.small_font)
        painter.setPen(dim_colour)
        high, low = self.limits[1], self.limits[0]
        right = Qt.AlignmentFlag.AlignRight
        if high:
            painter.drawText(lay.high_rect, right | Qt.AlignmentFlag.AlignTop, high)
        if low:
            painter.drawText(lay.low_rect, right | Qt.AlignmentFlag.AlignBottom, low)
        if self.subtext:
            painter.setPen(text_colour)
            elided = QFontMetricsF(lay.small_font).elidedText(self.subtext, Qt.TextElideMode.ElideRight,
                                                              lay.sub_rect.width())
            painter.drawText(lay.sub_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, elided)
        painter.end()

    def clipped_texts(self) -> list[str]:
        """What this tile cannot show in full at its current size ("label 'EtCO2' needs 80 px, has
        60"): empty when every text fits (the value shrinks to fit by design; the sub-line is elided
        when too long, which counts as cut)."""
        lay = self._current_layout()
        out = []
        width, height = float(self.width()), float(self.height())
        label = QFontMetricsF(lay.label_font)
        if lay.label_pos.x() + label.horizontalAdvance(self.label) > width:
            out.append(f"label {self.label!r} needs {label.horizontalAdvance(self.label):.0f} px, has {width:.0f}")
        if lay.unit_pos.y() + QFontMetricsF(lay.unit_font).descent() > height:
            out.append(f"unit {self.unit!r} below the tile ({height:.0f} px high)")
        small = QFontMetricsF(lay.small_font)
        if self.subtext and small.horizontalAdvance(self.subtext) > lay.sub_rect.width() + 1:
            out.append(f"sub-line {self.subtext!r} needs {small.horizontalAdvance(self.subtext):.0f} px, "
                       f"has {lay.sub_rect.width():.0f}")
        for text, rect in ((self.limits[1], lay.high_rect), (self.limits[0], lay.low_rect)):
            if text and small.horizontalAdvance(text) > rect.width() + 1:
                out.append(f"limit {text!r} needs {small.horizontalAdvance(text):.0f} px, has {rect.width():.0f}")
        value = QFontMetricsF(lay.value_font).horizontalAdvance(self.value_text)
        if value > lay.value_rect.width() + 1:
            out.append(f"value {self.value_text!r} needs {value:.0f} px, has {lay.value_rect.width():.0f}")
        return out

    def value_font_pixels(self) -> int:
        """Pixel size of the value's font at the current size (for tests and layout checks)."""
        return self._current_layout().value_font.pixelSize()


class NibpTile(NumericTile):
    """The NIBP tile: "sys/dia" large, the mean (and the reading's age) in the sub-line.

    The window may call :meth:`set_value` with a ready "120/80" and :meth:`set_subtext` itself,
    or use :meth:`set_reading`.
    """

    def __init__(self, key: str = "nibp_sys", label: str = "NIBP", unit: str = "mmHg",
                 colour_key: str | None = "nibp", decimals: int = 0) -> None:
        super().__init__(key, label, unit, colour_key=colour_key, decimals=decimals,
                         value_template="888/88")

    def set_reading(self, sys: float | None, dia: float | None, mean: float | None = None,
                    age: str = "") -> None:
        """Show a reading: "sys/dia" (or "--" without both) and "MAP mean · age" below."""
        if sys is None or dia is None:
            self.set_value(None)
        else:
            self.set_value(f"{sys:.{self.decimals}f}/{dia:.{self.decimals}f}")
        parts = [f"MAP {mean:.{self.decimals}f}"] if mean is not None else []
        if age:
            parts.append(age)
        self.set_subtext(" · ".join(parts))
