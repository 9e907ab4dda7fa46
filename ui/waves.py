"""Bedside sweep waveform strips (pyqtgraph).

A :class:`SweepWave` shows a fixed window of one waveform channel the way a bedside monitor does
in sweep (scan) mode: the trace is written left to right over the old one, with a short erased
gap running ahead of the write position (pyacq's oscilloscope mode). Nothing scrolls, so the eye
can rest on one beat. Samples that arrive as NaN (probe off) are drawn as gaps.

Feeding and drawing are apart: :meth:`SweepWave.append` only writes into a preallocated array;
the window's frame timer (~40 ms) calls :meth:`SweepWave.refresh`, which hands that same array to
the curve once, and does nothing when no sample arrived since the last frame.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPen
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsRectItem,
    QGraphicsSimpleTextItem,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from drivers.model import WAVE_CHANNELS
from ui import theme

#: Seconds of erased trace kept ahead of the write position.
ERASE_GAP_S = 0.15
#: How often an auto-ranging strip reconsiders its vertical scale (seconds).
AUTO_RANGE_EVERY_S = 2.0
#: Part of the strip's width kept free on the left for the scale bar.
_LEFT_MARGIN = 0.035


def nice_step(span: float) -> float:
    """The largest 1, 2 or 5 × 10^k not above half of ``span`` (for a scale bar); 0 for no span."""
    if not span > 0 or not math.isfinite(span):
        return 0.0
    target = span / 2
    power = 10.0 ** math.floor(math.log10(target))
    for factor in (5, 2, 1):
        if factor * power <= target:
            return factor * power
    return power


class Badge(QGraphicsRectItem):
    """A line of text on a dark, slightly see-through box, placed in its parent's pixel
    coordinates (parent it to a ViewBox, not to its data group, so ranges do not move it)."""

    def __init__(self, parent: QGraphicsItem, text: str, colour: QColor, font: QFont) -> None:
        super().__init__(parent)
        self.setPen(QPen(Qt.PenStyle.NoPen))
        self.setBrush(QBrush(QColor(0, 0, 0, 170)))
        self.setZValue(10)
        self.text_item = QGraphicsSimpleTextItem(self)
        self.text_item.setBrush(colour)
        self.text_item.setPen(QPen(Qt.PenStyle.NoPen))
        self.text_item.setFont(font)
        self.text_item.setPos(2, 0)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (mirrors QGraphicsSimpleTextItem)
        """Change the text; the box follows."""
        self.text_item.setText(text)
        self._fit()

    def text(self) -> str:
        """The text shown."""
        return self.text_item.text()

    def font(self) -> QFont:
        """The text's font."""
        return self.text_item.font()

    def setFont(self, font: QFont) -> None:  # noqa: N802 (mirrors QGraphicsSimpleTextItem)
        """Change the font; the box follows."""
        self.text_item.setFont(font)
        self._fit()

    def _fit(self) -> None:
        box = self.text_item.boundingRect()
        self.setRect(0, 0, box.width() + 4, box.height() if self.text() else 0)


class SweepWave(QWidget):
    """One waveform channel in sweep mode, on a black strip with its name and a scale bar.

    ``key`` is the channel key (``ecg``, ``pleth``, ``co2`` …), ``label`` the name shown, ``rate``
    the sample rate in Hz and ``seconds`` the width of the window. ``y_range=(lo, hi)`` fixes the
    vertical scale (in the channel's unit); None ranges it automatically on the 1st–99th
    percentile of the window, reconsidered every :data:`AUTO_RANGE_EVERY_S` seconds with
    hysteresis so the trace does not breathe. ``unit`` defaults to the channel's unit in
    :data:`drivers.model.WAVE_CHANNELS`; an empty unit shows no scale bar.
    """

    def __init__(self, key: str, label: str, rate: float, seconds: float = 6.0,
                 y_range: tuple[float, float] | None = None, colour_key: str | None = None,
                 unit: str | None = None) -> None:
        super().__init__()
        if not rate > 0 or not seconds > 0:
            raise ValueError(f"rate and seconds must be positive (rate={rate}, seconds={seconds})")
        self.key = key
        self.label = label
        self.seconds = float(seconds)
        self.unit = WAVE_CHANNELS.get(key, ("", "", 0.0))[1] if unit is None else unit
        self.colour = theme.colour(colour_key or key)
        self.fixed_range = tuple(y_range) if y_range is not None else None
        self.message: str | None = None
        self.rate = float(rate)
        self._y_shown: tuple[float, float] | None = None
        self._next_auto_range = 0.0
        self._dirty = True

        self.plot_widget = pg.PlotWidget(background=theme.BACKGROUND)
        self.plot_widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.plot_widget.setMinimumHeight(40)
        item = self.plot_widget.getPlotItem()
        item.hideAxis("left")
        item.hideAxis("bottom")
        item.hideButtons()
        item.setMenuEnabled(False)
        item.setMouseEnabled(x=False, y=False)
        item.layout.setContentsMargins(0, 0, 0, 0)
        self.view_box = item.getViewBox()
        self.view_box.disableAutoRange()
        self.view_box.setDefaultPadding(0.0)
        self.curve = pg.PlotDataItem(pen=pg.mkPen(self.colour, width=2), connect="finite",
                                     antialias=False, skipFiniteCheck=False)
        item.addItem(self.curve)  # first: PlotItem.addItem resets the item's clip-to-view
        self.curve.setClipToView(True)
        self.scale_bar = pg.PlotDataItem(pen=pg.mkPen(theme.TEXT_DIM, width=2), antialias=False)
        item.addItem(self.scale_bar, ignoreBounds=True)

        self._name = self._overlay_text(label, self.colour, bold=True)
        self._scale_text = self._overlay_text("", QColor(theme.TEXT_DIM), bold=False)
        self._message = self._overlay_text("", QColor(theme.TEXT), bold=True)
        self._message.setVisible(False)
        self.view_box.sigResized.connect(self._place_overlays)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget)
        self._allocate()
        if self.fixed_range is not None:
            self._show_y_range(*self.fixed_range)

    # ------------------------------------------------------------------ data in
    def append(self, samples: np.ndarray) -> None:
        """Write ``samples`` (1-D, in the channel's unit, NaN = gap) at the sweep position and
        erase the short gap ahead of it. Cheap: no drawing happens here."""
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        count = len(data)
        if count == 0:
            return
        size = len(self._y)
        start = self._pos
        if count > size:  # keep the newest window, in the slots they would have reached
            start = (start + count - size) % size
            data = data[-size:]
        self._write(start, data)
        self._pos = (self._pos + count) % size
        self._write(self._pos, self._gap)
        self._dirty = True

    def _write(self, start: int, data: np.ndarray) -> None:
        y = self._y
        end = start + len(data)
        if end <= len(y):
            y[start:end] = data
        else:
            split = len(y) - start
            y[start:] = data[:split]
            y[:end - len(y)] = data[split:]

    def clear(self) -> None:
        """Blank the strip (a new device or a new session); the scale stays."""
        self._y.fill(np.nan)
        self._pos = 0
        self._dirty = True

    def set_rate(self, rate: float) -> None:
        """Change the sample rate (a device may send 75 Hz pleth instead of 100 Hz); the strip is
        cleared, the window keeps its width in seconds."""
        if not rate > 0:
            raise ValueError(f"rate must be positive, not {rate}")
        if float(rate) == self.rate:
            return
        self.rate = float(rate)
        self._allocate()

    def _allocate(self) -> None:
        size = max(2, round(self.rate * self.seconds))
        self._x = (np.arange(size, dtype=np.float64) / self.rate).astype(np.float32)
        self._y = np.full(size, np.nan, dtype=np.float32)
        self._gap = np.full(min(size - 1, max(1, round(self.rate * ERASE_GAP_S))), np.nan, dtype=np.float32)
        self._pos = 0
        self._dirty = True
        self.view_box.setXRange(-_LEFT_MARGIN * self.seconds, float(self._x[-1]), padding=0)

    # ------------------------------------------------------------------ drawing
    def refresh(self) -> None:
        """Frame timer: hand the buffer to the curve if samples arrived since the last frame."""
        if not self._dirty:
            return
        self._dirty = False
        self.curve.setData(self._x, self._y)
        if self.fixed_range is None:
            now = time.monotonic()
            if now >= self._next_auto_range:
                self._next_auto_range = now + AUTO_RANGE_EVERY_S
                self._auto_range()

    def _auto_range(self) -> None:
        finite = self._y[np.isfinite(self._y)]
        if len(finite) < 10:
            return
        lo, hi = (float(v) for v in np.percentile(finite, (1.0, 99.0)))
        floor = max(abs(lo), abs(hi), 1e-3) * 0.05  # a flat trace is not blown up into noise
        span = max(hi - lo, floor)
        lo, hi = lo - 0.12 * span, hi + 0.12 * span
        shown = self._y_shown
        if shown is None or lo < shown[0] or hi > shown[1] or (hi - lo) < 0.6 * (shown[1] - shown[0]):
            self._show_y_range(lo, hi)

    def _show_y_range(self, lo: float, hi: float) -> None:
        if not hi > lo:
            hi = lo + 1.0
        self._y_shown = (lo, hi)
        self.view_box.setYRange(lo, hi, padding=0)
        step = nice_step(hi - lo) if self.unit else 0.0
        if step:
            x = -0.5 * _LEFT_MARGIN * self.seconds
            base = math.ceil(lo / step) * step
            self.scale_bar.setData([x, x], [base, base + step])
            self._scale_text.setText(f"{step:g} {self.unit}")
        else:
            self.scale_bar.setData([], [])
            self._scale_text.setText("")
        self._place_overlays()

    def set_message(self, text: str | None) -> None:
        """Show ``text`` ("SENSOR OFF", "NO SIGNAL" …) across the strip, or hide it (None)."""
        if text == self.message:
            return
        self.message = text
        self._message.setText(text or "")
        self._message.setVisible(bool(text))
        self._place_overlays()

    # ------------------------------------------------------------------ overlays
    def _overlay_text(self, text: str, colour: QColor, bold: bool) -> Badge:
        return Badge(self.view_box, text, colour, theme.font(10, bold=bold))  # view-box pixels

    def _place_overlays(self, *_: object) -> None:
        rect = self.view_box.boundingRect()
        height = max(rect.height(), 1.0)
        small = int(min(max(12, height * 0.16), 26))
        for item, bold in ((self._name, True), (self._scale_text, False)):
            font = item.font()
            if font.pixelSize() != small:
                font.setPixelSize(small)
                font.setBold(bold)
                item.setFont(font)
        self._name.setPos(rect.width() * _LEFT_MARGIN + 4, 2)
        scale_rect = self._scale_text.rect()
        self._scale_text.setPos(rect.width() - scale_rect.width() - 6, 2)
        if self.message:
            font = self._message.font()
            big = int(min(max(14, height * 0.32), 48))
            if font.pixelSize() != big:
                font.setPixelSize(big)
                self._message.setFont(font)
            box = self._message.rect()
            self._message.setPos((rect.width() - box.width()) / 2, (height - box.height()) / 2)

    def sweep_data(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x seconds, y)`` as handed to the curve (views: for tests and review)."""
        return self._x, self._y

    @property
    def write_position(self) -> int:
        """Index of the next sample to be written."""
        return self._pos
