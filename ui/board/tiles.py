"""A chair tile of the clinic board: draws a :class:`~monitor.board.model.TileView` (every decision
is the board model's), flashing in the IEC colours of its priority."""

from __future__ import annotations

import math
import time

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QMouseEvent, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from monitor.board.model import TREND_S, TileView
from ui import theme

_STATE_TEXT = {"offline": "OFFLINE", "stale": "NO DATA", "closed": "VIGIL CLOSED", "waiting": "WAITING"}
_NUMERIC_COLOUR = {"SpO2": "spo2", "PR": "pr", "NIBP": "nibp", "RR": "rr", "EtCO2": "etco2"}


def grid_shape(count: int, width: int, height: int, aspect: float = 1.5) -> tuple[int, int]:
    """``(columns, rows)`` that fit ``count`` tiles in ``width`` × ``height`` with tiles as close
    to ``aspect`` (width/height) as possible while using the screen best."""
    count = max(1, count)
    best, best_score = (1, count), -1.0
    for cols in range(1, count + 1):
        rows = math.ceil(count / cols)
        w, h = width / cols, height / rows
        tile_w = min(w, h * aspect)
        score = tile_w * (tile_w / aspect) * count / max(1.0, width * height)
        if score > best_score + 1e-9:
            best, best_score = (cols, rows), score
    return best


class ChairTile(QWidget):
    """One chair. ``clicked(name)`` opens its detail; :attr:`painted` is ``(alarm sequence,
    wall time)`` of the last paint (the bench measures chair → board painted with it)."""

    clicked = Signal(str)

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.view: TileView | None = None
        self.lit = True
        self.painted: tuple[int, float] = (0, 0.0)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 80)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def show_view(self, view: TileView, lit: bool) -> None:
        """Repaint when what is shown changed (or the flash phase did)."""
        if view != self.view or lit != self.lit:
            self.view, self.lit = view, lit
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt)
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.name)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt)
        view = self.view
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        unit = min(h / 9.0, w / 14.0)
        p.fillRect(self.rect(), QColor(theme.BACKGROUND))
        box = QRectF(2, 2, w - 4, h - 4)
        priority = view.priority if view else None
        colour = QColor(theme.PRIORITY_COLOURS[priority]) if priority else QColor(theme.PANEL_EDGE)
        p.setBrush(QColor(theme.PANEL))
        p.setPen(QPen(colour, max(2.0, unit * (0.35 if priority else 0.1))))
        p.drawRoundedRect(box, 6, 6)
        if view is None:
            p.end()
            return
        pad = unit * 0.5
        # header: chair, patient, phase and time
        header = QRectF(box.left() + pad, box.top() + pad * 0.6, box.width() - 2 * pad, unit * 1.5)
        p.setPen(QColor(theme.TEXT))
        p.setFont(_font(unit * 1.05, bold=True))
        p.drawText(header, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, view.chair)
        name_w = p.fontMetrics().horizontalAdvance(view.chair) + unit * 0.6
        p.setFont(_font(unit * 0.75))
        p.setPen(QColor(theme.TEXT_DIM))
        room = header.width() - name_w
        for parts in ((view.patient, view.phase, view.clock), (view.patient, view.clock), (view.clock,)):
            right = " ".join(x for x in parts if x)   # drop the phase first, then the patient
            if p.fontMetrics().horizontalAdvance(right) <= room:
                p.drawText(header, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, right)
                break
        # numerics
        top = header.bottom() + unit * 0.3
        cell_w = (box.width() - 2 * pad) / len(view.numerics)
        dim = view.state != "online"
        for i, (label, text, old) in enumerate(view.numerics):
            cell = QRectF(box.left() + pad + i * cell_w, top, cell_w, unit * 3.2)
            c = QColor(theme.PARAMETER_COLOURS.get(_NUMERIC_COLOUR[label], theme.TEXT))
            if old or dim:
                c = QColor(theme.TEXT_DIM)
            p.setPen(c)
            p.setFont(_font(unit * 0.7))
            p.drawText(cell, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, label)
            p.setFont(_font(min(unit * 1.8, cell_w * 0.92 / (0.64 * max(3, len(text)))), bold=True))
            p.drawText(cell.adjusted(0, unit * 0.7, 0, 0), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)
        # SpO2 trend
        banner = QRectF(box.left() + pad * 0.5, box.bottom() - unit * 2.2, box.width() - pad, unit * 1.8)
        trend_box = QRectF(box.left() + pad, top + unit * 3.4, box.width() - 2 * pad,
                           max(unit, banner.top() - unit * 0.3 - (top + unit * 3.4)))
        p.setPen(QPen(QColor(theme.PANEL_EDGE), 1))
        p.drawLine(trend_box.bottomLeft(), trend_box.bottomRight())
        if len(view.trend) >= 2:
            points = QPolygonF([QPointF(trend_box.right() - trend_box.width() * ago / TREND_S,
                                        trend_box.bottom() - trend_box.height() * (min(100.0, max(80.0, v)) - 80) / 20)
                                for ago, v in view.trend])
            p.setPen(QPen(QColor(theme.PARAMETER_COLOURS["spo2"]), max(1.0, unit * 0.12)))
            p.drawPolyline(points)
        # alarm banner (or the link state)
        text = view.banner or _STATE_TEXT.get(view.state, "")
        if priority:
            lit = self.lit or priority == "LOW"
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(theme.PRIORITY_COLOURS[priority]) if lit else QColor("#3a0000" if priority == "HIGH" else "#3a3000" if priority == "MEDIUM" else theme.PANEL))
            p.drawRoundedRect(banner, 4, 4)
            p.setPen(QColor(theme.PRIORITY_TEXT[priority] if lit else theme.PRIORITY_COLOURS[priority]))
        else:
            p.setPen(QColor(theme.TEXT_DIM))
        if text:
            p.setFont(_font(unit * 0.8, bold=True))
            metrics = p.fontMetrics()
            p.drawText(banner.adjusted(unit * 0.4, 0, -unit * 0.4, 0), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                       metrics.elidedText(text, Qt.TextElideMode.ElideRight, int(banner.width() - unit)))
        p.end()
        self.painted = (view.sequence, time.time())


def _font(pixels: float, bold: bool = False) -> QFont:
    f = QFont("DejaVu Sans")
    f.setPixelSize(max(7, int(pixels)))
    f.setBold(bold)
    return f
