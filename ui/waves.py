"""Bedside sweep waveform strips.

A :class:`SweepWave` shows a fixed window of one waveform channel the way a bedside monitor does
in sweep (scan) mode: the trace is written left to right over the old one, with a short erased
gap running ahead of the write position (pyacq's oscilloscope mode). Nothing scrolls, so the eye
can rest on one beat. Samples that arrive as NaN (probe off) are drawn as gaps.

Feeding and drawing are apart: :meth:`SweepWave.append` only writes into a preallocated array and
notes which samples changed; the window's frame timer (~40 ms) calls :meth:`SweepWave.refresh`,
which draws just those samples onto a kept pixmap and repaints only that narrow strip. A sweep
changes a few pixels a frame, so redrawing the whole trace each frame (as a plotting library
does) cost ~19 % of a core for three strips; drawing the strip costs a fraction of that. The
session trends and the review plots use pyqtgraph.

:class:`Badge` (text on a dark box for pyqtgraph scenes) is shared with the trends.
"""

from __future__ import annotations

import math
import time

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsRectItem,
    QGraphicsSimpleTextItem,
    QSizePolicy,
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
        self.scale_text = ""
        self._scale_bar: tuple[float, float] | None = None
        self.rate = float(rate)
        self._y_shown: tuple[float, float] | None = None
        self._next_auto_range = 0.0
        self._pen = QPen(self.colour, 2)
        self._background = QColor(theme.BACKGROUND)
        self._pixmap: QPixmap | None = None
        self._spans: list[tuple[int, int]] = []   # sample ranges changed since the last frame
        self._full = True                          # the whole pixmap needs drawing
        self.frames_drawn = 0
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(40)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
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
            self._full = True
        self._write(start, data)
        self._pos = (self._pos + count) % size
        self._write(self._pos, self._gap)

    def _write(self, start: int, data: np.ndarray) -> None:
        y = self._y
        end = start + len(data)
        if end <= len(y):
            y[start:end] = data
            self._spans.append((start, end))
        else:
            split = len(y) - start
            y[start:] = data[:split]
            y[:end - len(y)] = data[split:]
            self._spans += [(start, len(y)), (0, end - len(y))]

    def clear(self) -> None:
        """Blank the strip (a new device or a new session); the scale stays."""
        self._y.fill(np.nan)
        self._pos = 0
        self._full = True

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
        self._spans = []
        self._full = True

    # ------------------------------------------------------------------ geometry
    def _plot_rect(self) -> QRectF:
        left = self.width() * _LEFT_MARGIN
        return QRectF(left, 2.0, max(1.0, self.width() - left - 2.0), max(1.0, self.height() - 4.0))

    def _px(self, index: float) -> float:
        r = self._plot_rect()
        return r.left() + index * r.width() / (len(self._y) - 1)

    def _points(self, first: int, last: int) -> list[list[QPointF]]:
        """Polylines (runs of finite samples) for indices first..last (inclusive, clamped)."""
        first, last = max(first, 0), min(last, len(self._y) - 1)
        if last < first or self._y_shown is None:
            return []
        lo, hi = self._y_shown
        r = self._plot_rect()
        ys = self._y[first:last + 1].astype(np.float64)
        py = r.top() + (hi - ys) * (r.height() / (hi - lo))
        py = np.clip(py, r.top() - 2, r.bottom() + 2)
        px = r.left() + np.arange(first, last + 1) * (r.width() / (len(self._y) - 1))
        finite = np.isfinite(ys)
        runs: list[list[QPointF]] = []
        current: list[QPointF] = []
        for x, y, ok in zip(px.tolist(), py.tolist(), finite.tolist()):
            if ok:
                current.append(QPointF(x, y))
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        return runs

    # ------------------------------------------------------------------ drawing
    def refresh(self) -> None:
        """Frame timer: draw what changed since the last frame and repaint just that strip."""
        if self.fixed_range is None:
            now = time.monotonic()
            if now >= self._next_auto_range and (self._spans or self._full):
                self._next_auto_range = now + AUTO_RANGE_EVERY_S
                self._auto_range()
        if self._pixmap is None or self._pixmap.size() != self.size() * self.devicePixelRatioF():
            self._full = True
        if self._full:
            self._full = False
            self._spans = []
            self._redraw_all()
            self.update()
            return
        if not self._spans:
            return
        spans, self._spans = self._spans, []
        painter = QPainter(self._pixmap)
        painter.setPen(self._pen)
        for start, end in spans:
            x0 = math.floor(self._px(start - 1)) - 1
            x1 = math.ceil(self._px(end)) + 2
            strip = QRect(x0, 0, x1 - x0, self.height())
            painter.setClipRect(strip)
            painter.fillRect(strip, self._background)
            for run in self._points(start - 2, end + 1):
                painter.drawPolyline(run) if len(run) > 1 else painter.drawPoint(run[0])
            self.update(strip)
        painter.end()
        self.frames_drawn += 1

    def _redraw_all(self) -> None:
        ratio = self.devicePixelRatioF()
        size = self.size() * ratio
        # A new pixmap only for a new size or pixel ratio. Besides saving the allocation, PySide6
        # (6.11 on Python 3.11) keeps for good a reference to None for each Qt virtual its shiboken
        # wrapper is first asked about, six when a QPainter first paints a pixmap: a pixmap a frame
        # was the soak's sys.getrefcount(None) climb (docs/reliability.md, "Soak").
        if self._pixmap is None or self._pixmap.size() != size or self._pixmap.devicePixelRatio() != ratio:
            self._pixmap = QPixmap(size)
            self._pixmap.setDevicePixelRatio(ratio)
        self._pixmap.fill(self._background)
        painter = QPainter(self._pixmap)
        painter.setPen(self._pen)
        for run in self._points(0, len(self._y) - 1):
            painter.drawPolyline(run) if len(run) > 1 else painter.drawPoint(run[0])
        painter.end()
        self.frames_drawn += 1

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        """The kept trace, then the name, scale and message on top (clipped to the dirty area)."""
        painter = QPainter(self)
        if self._pixmap is None:
            painter.fillRect(self.rect(), self._background)
        else:
            painter.drawPixmap(event.rect(), self._pixmap, QRectF(
                event.rect().x() * self._pixmap.devicePixelRatio(), event.rect().y() * self._pixmap.devicePixelRatio(),
                event.rect().width() * self._pixmap.devicePixelRatio(),
                event.rect().height() * self._pixmap.devicePixelRatio()).toRect())
        self._paint_overlays(painter)
        painter.end()

    def _paint_overlays(self, painter: QPainter) -> None:
        height = max(self.height(), 1)
        small = int(min(max(12, height * 0.16), 26))
        font = theme.font(10, bold=True)
        font.setPixelSize(small)
        painter.setFont(font)
        r = self._plot_rect()
        self._badge(painter, QPointF(r.left() + 4, 2), self.label, self.colour)
        font.setBold(False)
        painter.setFont(font)
        if self.scale_text:
            width = painter.fontMetrics().horizontalAdvance(self.scale_text)
            self._badge(painter, QPointF(self.width() - width - 10, 2), self.scale_text, QColor(theme.TEXT_DIM))
            bar = self._scale_bar
            if bar is not None and self._y_shown is not None:
                lo, hi = self._y_shown
                x = self.width() * _LEFT_MARGIN * 0.5
                y0 = r.top() + (hi - bar[0]) * r.height() / (hi - lo)
                y1 = r.top() + (hi - bar[1]) * r.height() / (hi - lo)
                painter.setPen(QPen(QColor(theme.TEXT_DIM), 2))
                painter.drawLine(QPointF(x, y0), QPointF(x, y1))
        if self.message:
            big = int(min(max(14, height * 0.32), 48))
            font.setBold(True)
            font.setPixelSize(big)
            painter.setFont(font)
            metrics = painter.fontMetrics()
            width = metrics.horizontalAdvance(self.message)
            self._badge(painter, QPointF((self.width() - width) / 2, (height - metrics.height()) / 2),
                        self.message, QColor(theme.TEXT))

    @staticmethod
    def _badge(painter: QPainter, at: QPointF, text: str, colour: QColor) -> None:
        metrics = painter.fontMetrics()
        box = QRectF(at.x() - 2, at.y(), metrics.horizontalAdvance(text) + 4, metrics.height())
        painter.fillRect(box, QColor(0, 0, 0, 170))
        painter.setPen(colour)
        painter.drawText(box.adjusted(2, 0, 0, 0), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        """A new size: the next refresh redraws the whole trace."""
        self._full = True
        super().resizeEvent(event)

    # ------------------------------------------------------------------ scale
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
        step = nice_step(hi - lo) if self.unit else 0.0
        if step:
            base = math.ceil(lo / step) * step
            self._scale_bar = (base, base + step)
            self.scale_text = f"{step:g} {self.unit}"
        else:
            self._scale_bar = None
            self.scale_text = ""
        self._full = True

    @property
    def y_range(self) -> tuple[float, float] | None:
        """The vertical range shown (the channel's unit)."""
        return self._y_shown

    def set_message(self, text: str | None) -> None:
        """Show ``text`` ("SENSOR OFF", "NO SIGNAL" …) across the strip, or hide it (None)."""
        if text == self.message:
            return
        self.message = text
        self.update()

    def sweep_data(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x seconds, y)``: the sweep buffer as drawn (views: for tests and review)."""
        return self._x, self._y

    @property
    def write_position(self) -> int:
        """Index of the next sample to be written."""
        return self._pos
