"""Session trends: the whole session, from baseline to now, in stacked strips sharing one time axis.

Rows, top to bottom: a marker lane (phase names; events, assessments, infusion steps and alarms
as symbols with a tooltip), HR and PR, SpO2, NIBP (a bar from diastolic to systolic with the mean
as a dot, at each reading's time), RR and EtCO2. The bottom axis counts minutes from the start
of the infusion (negative during baseline) and the top axis gives the local clock time. Phases
are shaded behind every strip; each marker also draws a faint vertical line through the strips
so that an alarm or an assessment can be read against the vitals around it.

Data are buffered as they arrive (:meth:`SessionTrends.add_numeric`, :meth:`add_nibp`) and drawn
by :meth:`SessionTrends.refresh`, about once a second: one ``setData`` per curve that changed,
with pyqtgraph's clip-to-view and peak downsampling (about one min/max pair per pixel), so that
a four-hour session still costs a few milliseconds a refresh. The time axis moves on in steps
(:data:`HEADROOM`), not every second, because every new range re-decimates every curve. Phase
shading and marker lines are plain Qt items, painted without Python. Times come in as aware UTC
datetimes and are shown in local time.

Nothing here is clinical: the vertical scales below are display spans (each strip shows at
least this span and widens to take in every value), not limits.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen, QPicture
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsRectItem,
    QVBoxLayout,
    QWidget,
)

from ui import theme
from ui.layout import FitLabel
from ui.ringbuffer import TimedRing
from ui.waves import Badge

#: Strips: (name, vitals with their line width, display span (lo, hi) shown at least). The second
#: vital of a strip is drawn thin rather than dashed: a dashed pen over hours of samples costs
#: tens of milliseconds a frame, a thin solid one almost nothing.
TREND_ROWS: tuple[tuple[str, tuple[tuple[str, str, float], ...], tuple[float, float]], ...] = (
    ("cardiac", (("hr", "HR", 2.0), ("pr", "PR", 1.0)), (40.0, 140.0)),
    ("spo2", (("spo2", "SpO2", 2.0),), (80.0, 100.0)),
    ("nibp", (("nibp", "NIBP", 2.0),), (40.0, 180.0)),
    ("resp", (("etco2", "EtCO2", 2.0), ("rr", "RR", 1.0)), (0.0, 50.0)),
)
#: Newest samples per vital drawn apart from the cached rest of the session (10 min at 1 Hz).
TAIL_SAMPLES = 600
#: A silence longer than this (seconds) between two samples of a vital is drawn as a gap.
GAP_S = 30.0
#: The time axis always spans at least this many minutes.
MIN_SPAN_MIN = 10.0
#: Room left after "now", as a part of the span shown: the axis moves on in steps, not every second.
HEADROOM = 0.08
#: Room before the session's start, as a part of the span shown.
LEFT_PAD = 0.03
#: Marker kinds: (colour, lane symbol, line style). Alarms take their priority's colour.
MARKER_STYLE: dict[str, tuple[str, str, Qt.PenStyle]] = {
    "event": (theme.TEXT, "t", Qt.PenStyle.DotLine),
    "assessment": ("#c58cff", "d", Qt.PenStyle.DotLine),
    "infusion": ("#ffffff", "s", Qt.PenStyle.DashLine),
    "alarm": (theme.TEXT, "t1", Qt.PenStyle.SolidLine),  # colour unused: the priority's instead
}
#: Phase shading (colour with alpha) by phase name; other names get the default.
PHASE_COLOURS: dict[str, tuple[int, int, int, int]] = {
    "baseline": (90, 110, 140, 46), "infusion": (150, 90, 210, 52), "recovery": (60, 160, 140, 46),
}
_PHASE_DEFAULT = (120, 120, 120, 40)
_AXIS_WIDTH = 38
_VALUE_TICK_PX = 22.0
#: Minute steps the time axes may use.
_STEPS_MIN = (1, 2, 5, 10, 15, 30, 60, 120, 240, 480)


#: The lane symbols as text, for the legend (pyqtgraph's "t" points down, "t1" up).
_GLYPHS = {"t": "▼", "d": "◆", "s": "■", "t1": "▲"}
_KIND_NAMES = {"event": "event", "assessment": "assessment", "infusion": "dosing step", "alarm": "alarm"}


def _phase_swatch(name: str) -> str:
    """The shading colour of a phase over the black background, as #rrggbb."""
    r, g, b, a = PHASE_COLOURS.get(name, _PHASE_DEFAULT)
    return "#%02x%02x%02x" % tuple(round(c * a / 255) for c in (r, g, b))


def legend_forms() -> tuple[str, ...]:
    """The trend legend (HTML), longest first: marker symbols, phase shading, what the axes count."""
    def marks(words: bool) -> str:
        parts = []
        for kind, (colour, symbol, _) in MARKER_STYLE.items():
            colour = theme.PRIORITY_COLOURS["HIGH"] if kind == "alarm" else colour
            parts.append(f"<span style='color:{colour}'>{_GLYPHS[symbol]}</span>" + (f"&nbsp;{_KIND_NAMES[kind]}"
                                                                                     if words else ""))
        return " ".join(parts)

    phases = " ".join(f"<span style='background:{_phase_swatch(p)}'>&nbsp;{p}&nbsp;</span>" for p in PHASE_COLOURS)
    dim = theme.TEXT_DIM
    return (f"<b>Session trends</b> &nbsp;{marks(True)} <span style='color:{dim}'>(alarm: its priority's colour)"
            f"</span> &nbsp;{phases} &nbsp;<span style='color:{dim}'>top: clock · bottom: min from infusion start"
            "</span>",
            f"<b>Trends</b> &nbsp;{marks(True)} &nbsp;{phases} &nbsp;<span style='color:{dim}'>"
            "top: clock · bottom: min</span>",
            f"<b>Trends</b> &nbsp;{marks(True)} &nbsp;{phases}",
            f"<b>Trends</b> {marks(False)} {phases}")


def _ts(t: datetime) -> float:
    """POSIX seconds of an aware datetime (a naive one is taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _step(span: float, pixels: float, per_tick: float) -> float:
    """The smallest minute step giving at most one labelled tick per ``per_tick`` pixels."""
    most = max(1.0, pixels / per_tick)
    for step in _STEPS_MIN:
        if span / step <= most:
            return float(step)
    return float(_STEPS_MIN[-1] * math.ceil(span / most / _STEPS_MIN[-1]))


def phase_regions(plot: pg.PlotItem, regions: list[QGraphicsRectItem], count: int) -> None:
    """Grow or shrink ``regions`` (phase shading rectangles behind everything in ``plot``) to
    ``count`` items; the caller sets their brushes and rectangles."""
    while len(regions) > count:
        plot.removeItem(regions.pop())
    while len(regions) < count:
        region = QGraphicsRectItem()
        region.setPen(QPen(Qt.PenStyle.NoPen))
        region.setZValue(-20)
        plot.addItem(region, ignoreBounds=True)
        regions.append(region)


class PictureAxis(pg.AxisItem):
    """pyqtgraph's axis, drawing its ticks into one QPicture for its whole life.

    ``AxisItem.paint`` draws into a new QPicture whenever the range or the size moves, and PySide6
    (6.11 on Python 3.11) keeps for good a reference to None for each Qt virtual its wrapper of a
    new paint device is first asked about: six a picture, a climb of ``sys.getrefcount(None)`` with
    every new range (docs/reliability.md, "Soak"). ``QPainter.begin`` empties the picture it is
    given, so painting the same one again draws the new ticks alone.
    """

    def __init__(self, orientation: str) -> None:
        super().__init__(orientation)
        self._canvas = QPicture()

    def paint(self, p: QPainter, opt: object, widget: object) -> None:  # noqa: D102 (pg.AxisItem)
        if self.picture is None:
            painter = QPainter(self._canvas)
            try:
                if self.style["tickFont"]:
                    painter.setFont(self.style["tickFont"])
                specs = self.generateDrawSpecs(painter)
                if specs is not None:
                    self.drawPicture(painter, *specs)
            finally:
                painter.end()
            self.picture = self._canvas
        self.picture.play(p)


class ValueAxis(PictureAxis):
    """A vertical axis with 1-2-5 steps and at least :data:`_VALUE_TICK_PX` pixels between labels;
    labels that would stick out of the strip are hidden."""

    def __init__(self, orientation: str = "left") -> None:
        super().__init__(orientation)
        self.setStyle(hideOverlappingLabels=True)

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:  # noqa: N802
        span = maxVal - minVal
        if not span > 0:
            return []
        most = max(1.0, size / _VALUE_TICK_PX)
        power = 10.0 ** math.floor(math.log10(span / most))
        for factor in (1, 2, 5, 10):
            if span / (factor * power) <= most:
                return [(factor * power, 0.0)]
        return [(10 * power, 0.0)]


class MinutesAxis(PictureAxis):
    """Minutes from the origin (the start of the infusion): "−10", "0 min", "30" …"""

    def __init__(self, orientation: str = "bottom") -> None:
        super().__init__(orientation)

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:  # noqa: N802
        if not maxVal > minVal:
            return []
        return [(_step(maxVal - minVal, size, 60.0), 0.0)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        return [f"{round(v):d}".replace("-", "−") + (" min" if round(v) == 0 else "") for v in values]


class ClockAxis(PictureAxis):
    """Local clock time (HH:MM) of positions given in minutes from an origin (POSIX seconds), with
    ticks on round clock minutes."""

    def __init__(self, orientation: str = "top") -> None:
        super().__init__(orientation)
        self.origin_ts = 0.0

    def set_origin(self, origin_ts: float) -> None:
        """POSIX seconds at position 0."""
        if origin_ts != self.origin_ts:
            self.origin_ts = origin_ts
            self.picture = None
            self.update()

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:  # noqa: N802
        if not maxVal > minVal:
            return []
        step = _step(maxVal - minVal, size, 60.0)
        local = datetime.fromtimestamp(self.origin_ts).astimezone()
        offset_min = (local.utcoffset().total_seconds() if local.utcoffset() else 0.0) / 60
        origin_local_min = self.origin_ts / 60 + offset_min
        return [(step, (-origin_local_min) % step)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        return [datetime.fromtimestamp(self.origin_ts + v * 60).strftime("%H:%M") for v in values]


def _nibp_text(reading: np.ndarray) -> str:
    ts, sys, dia, mean = reading
    clock = datetime.fromtimestamp(ts).strftime("%H:%M")
    return f"{clock}  NIBP {sys:.0f}/{dia:.0f} ({mean:.0f})"


def _group_colour(group: str) -> str:
    """Colour of a marker group: "alarm:HIGH" takes its priority's colour, others their kind's."""
    kind, _, priority = group.partition(":")
    return theme.PRIORITY_COLOURS[priority] if kind == "alarm" else MARKER_STYLE[kind][0]


# Tooltip functions are plain functions, not bound methods: a ScatterPlotItem holding a method
# of its widget makes a reference cycle that the garbage collector tears down in an order that
# crashes PySide6 (seen here: a segfault in gc.collect() after the widget is closed).
def _nibp_tip(x: float, y: float, data: object) -> str:
    return str(data)


def _marker_tip(x: float, y: float, data: object) -> str:
    if not isinstance(data, _Marker):
        return ""
    clock = datetime.fromtimestamp(data.ts).strftime("%H:%M:%S")
    return f"{clock}  {data.text}"


@dataclass
class _Series:
    """One vital's samples and its two curves: ``curve`` holds the session up to ``archived``
    samples and is redrawn from Qt's pixmap cache; ``tail`` holds the rest (at most
    :data:`TAIL_SAMPLES`) and is the only one fed every second."""

    ring: TimedRing
    curve: pg.PlotDataItem
    tail: pg.PlotDataItem
    row: str
    dirty: bool = False
    archived: int = 0
    lo: float = math.inf
    hi: float = -math.inf

    def draw(self, origin: float) -> None:
        """Hand the new samples to the curves (positions in minutes from ``origin``)."""
        t, v = self.ring.view()
        count = len(t)
        if count == 0:
            self.archived = 0
            self.curve.setData([], [])
            self.tail.setData([], [])
            return
        if self.archived == 0 or count - self.archived > TAIL_SAMPLES:
            self.archived = count
            self.curve.setData((t - origin) / 60.0, v)
        start = self.archived - 1  # one sample shared, so that the two lines join
        self.tail.setData((t[start:] - origin) / 60.0, v[start:])


@dataclass
class _Marker:
    ts: float
    kind: str
    text: str
    priority: str | None


@dataclass
class _Row:
    """One strip: its plot, its display span and the items drawn on it."""

    plot: pg.PlotItem
    span: tuple[float, float]
    shown: tuple[float, float] = (0.0, 0.0)
    regions: list[QGraphicsRectItem] = field(default_factory=list)
    marker_lines: dict[str, QGraphicsPathItem] = field(default_factory=dict)
    lines: bool = True  # draw the markers' vertical lines here


class SessionTrends(QWidget):
    """The session's trends, baseline to now (see the module docstring for the layout).

    All times are aware datetimes (UTC); positions are minutes from :meth:`set_origin`'s time,
    or, without one, from the start of the first phase (else the first sample).
    """

    def __init__(self) -> None:
        super().__init__()
        self._origin_ts: float | None = None
        self._applied_origin: float | None = None
        self._first_ts: float | None = None
        self._phases: list[tuple[float, float | None, str]] = []
        self._phases_dirty = False
        self._markers: list[_Marker] = []
        self._markers_dirty = False
        self._nibp: list[tuple[float, float, float, float]] = []  # (ts, sys, dia, mean)
        self._nibp_dirty = False
        self._x_range: tuple[float, float] | None = None
        self._x_first = 0.0  # the earliest minute the range was made for
        self.dropped = 0  # samples older than the newest of their vital (out of order)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(theme.BACKGROUND)
        self.graphics.ci.layout.setContentsMargins(2, 2, 6, 2)
        self.graphics.ci.layout.setVerticalSpacing(0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        # The legend heads the trends: it also sets them apart from the waveforms above, whose
        # sweep the clock axis must not seem to measure.
        self.legend = FitLabel(theme.font(8.5), rich=True, min_ratio=0.8)
        self.legend.setObjectName("trendLegend")
        self.legend.setStyleSheet(f"background: {theme.PANEL}; border-top: 1px solid {theme.PANEL_EDGE};"
                                  " padding: 1px 4px;")
        self.legend.set_forms(*legend_forms())
        layout.addWidget(self.legend)
        layout.addWidget(self.graphics)

        tick_font = QFont(theme.font(8))
        self.clock_axis = ClockAxis("top")
        self.lane = self._add_plot(0, {"top": self.clock_axis}, tick_font)
        self.lane.setYRange(0.0, 1.0, padding=0)
        self.lane.getAxis("left").setStyle(showValues=False, tickLength=0)
        self.lane.getAxis("left").setPen(pg.mkPen(None))
        self.lane.setMaximumHeight(58)
        self.lane.setMinimumHeight(50)
        self._lane_symbols = pg.ScatterPlotItem(size=13, pxMode=True, hoverable=True, tip=_marker_tip,
                                                hoverSize=17)
        self.lane.addItem(self._lane_symbols)
        self._phase_labels: list[pg.TextItem] = []
        self._lane_row = _Row(self.lane, (0.0, 1.0), shown=(0.0, 1.0), lines=False)
        self._phase_spans: list[tuple[float, float, str]] = []  # (x0, x1, name) in minutes
        self._marker_groups: dict[str, list[float]] = {}  # "event", "alarm:HIGH" … -> minutes

        self.rows: dict[str, _Row] = {}
        self.series: dict[str, _Series] = {}
        last = len(TREND_ROWS)
        self._minutes_axes: dict[str, MinutesAxis] = {}
        for index, (name, vitals, span) in enumerate(TREND_ROWS, start=1):
            self._minutes_axes[name] = MinutesAxis("bottom")  # shown under the lowest strip shown
            plot = self._add_plot(index, {"bottom": self._minutes_axes[name]}, tick_font)
            plot.setXLink(self.lane)
            row = _Row(plot, span)
            self.rows[name] = row
            self._show_y(row, *span)
            labels = []
            for vital, label, width in vitals:
                colour = theme.colour(vital)
                labels.append((label, colour))
                if vital == "nibp":
                    continue
                curve, tail = (self._trend_curve(plot, colour, width) for _ in range(2))
                # the archive is painted from a pixmap until its data or the axes change
                curve.curve.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
                self.series[vital] = _Series(TimedRing(4096), curve, tail, name)
            self._row_label(plot, labels)
        self.graphics.ci.layout.setRowStretchFactor(0, 0)
        for index in range(1, last + 1):
            self.graphics.ci.layout.setRowStretchFactor(index, 1)
        self._rows_shown = {name: True for name in self.rows}
        self._place_minutes_axis()

        nibp = self.rows["nibp"].plot
        white = theme.colour("nibp")
        self._nibp_bars = pg.PlotDataItem(pen=pg.mkPen(white, width=2), connect="pairs", antialias=False)
        self._nibp_ends = pg.ScatterPlotItem(symbol="_", size=9, pen=pg.mkPen(white, width=2), brush=white)
        self._nibp_means = pg.ScatterPlotItem(symbol="o", size=7, pen=pg.mkPen(None), brush=white,
                                              hoverable=True, tip=_nibp_tip)
        for item in (self._nibp_bars, self._nibp_ends, self._nibp_means):
            nibp.addItem(item)

    # ------------------------------------------------------------------ construction helpers
    def _add_plot(self, row: int, axes: dict[str, pg.AxisItem], tick_font: QFont) -> pg.PlotItem:
        plot = self.graphics.addPlot(row=row, col=0, axisItems={"left": ValueAxis(), **axes})
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.showAxis("left")
        for name in ("left", "top", "bottom"):
            if name in axes or name == "left":
                axis = plot.getAxis(name)
                axis.setStyle(tickFont=tick_font, tickLength=-4, autoExpandTextSpace=False)
                axis.setTextPen(pg.mkPen(theme.TEXT_DIM))
                axis.setPen(pg.mkPen(theme.PANEL_EDGE))
        if "bottom" not in axes:
            plot.hideAxis("bottom")
        if "top" in axes:
            plot.showAxis("top")
        plot.getAxis("left").setWidth(_AXIS_WIDTH)
        box = plot.getViewBox()
        box.disableAutoRange()
        box.setDefaultPadding(0.0)
        return plot

    @staticmethod
    def _trend_curve(plot: pg.PlotItem, colour: QColor, width: float) -> pg.PlotDataItem:
        # peak downsampling to about one min/max pair per pixel: all a screen can show
        curve = pg.PlotDataItem(pen=pg.mkPen(colour, width=width), connect="finite", antialias=False,
                                autoDownsampleFactor=1.0)
        curve.setZValue(2 if width > 1 else 1)  # the strip's main vital on top
        plot.addItem(curve)  # first: PlotItem.addItem resets the item's clip and downsampling
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method="peak")
        return curve

    def _row_label(self, plot: pg.PlotItem, labels: Sequence[tuple[str, QColor]]) -> None:
        x = 2.0
        for text, colour in labels:
            badge = Badge(plot.getViewBox(), text, colour, theme.font(9, bold=True))
            badge.setZValue(20)
            badge.setPos(x, 1)
            x += badge.rect().width() + 4

    def show_rows(self, shown: dict[str, bool]) -> None:
        """Show or collapse strips by name ("resp" when the device measures no breathing); the
        minutes axis moves under the lowest strip shown. Data keep arriving either way."""
        changed = False
        for name, visible in shown.items():
            if name in self.rows and self._rows_shown[name] != bool(visible):
                self._rows_shown[name] = bool(visible)
                changed = True
        if not changed:
            return
        layout = self.graphics.ci.layout
        for index, name in enumerate(self.rows, start=1):
            plot = self.rows[name].plot
            visible = self._rows_shown[name]
            plot.setVisible(visible)
            plot.setMaximumHeight(10_000 if visible else 0)
            plot.setMinimumHeight(0)
            layout.setRowStretchFactor(index, 1 if visible else 0)
        self._place_minutes_axis()

    def row_shown(self, name: str) -> bool:
        """Whether the strip ``name`` is shown."""
        return self._rows_shown[name]

    def _place_minutes_axis(self) -> None:
        lowest = [name for name in self.rows if self._rows_shown[name]][-1:]
        for name, row in self.rows.items():
            (row.plot.showAxis if name in lowest else row.plot.hideAxis)("bottom")

    @property
    def minutes_axis(self) -> "MinutesAxis":
        """The minutes axis shown (under the lowest strip shown)."""
        lowest = [name for name in self.rows if self._rows_shown[name]][-1]
        return self._minutes_axes[lowest]

    # ------------------------------------------------------------------ data in
    def set_origin(self, infusion_start: datetime | None) -> None:
        """Count minutes from ``infusion_start`` (None: from the session's start)."""
        self._origin_ts = None if infusion_start is None else _ts(infusion_start)

    def add_numeric(self, vital: str, t: datetime, value: float | None) -> None:
        """Buffer one sample of ``vital`` (hr, pr, spo2, rr, etco2; others are not trended).
        None is a gap; a silence longer than :data:`GAP_S` is a gap too; a sample older than
        the newest one of its vital is dropped (counted in ``dropped``)."""
        series = self.series.get(vital)
        if series is None:
            return
        ts = _ts(t)
        last = series.ring.last_time()
        if last is not None:
            if ts < last:
                self.dropped += 1
                return
            if ts - last > GAP_S:
                series.ring.append(last + 1e-3, math.nan)
        number = math.nan if value is None else float(value)
        series.ring.append(ts, number)
        if not math.isnan(number):
            series.lo = min(series.lo, number)
            series.hi = max(series.hi, number)
        series.dirty = True
        if self._first_ts is None or ts < self._first_ts:
            self._first_ts = ts

    def add_nibp(self, t: datetime, sys: float, dia: float, mean: float | None = None) -> None:
        """Buffer one NIBP reading (mmHg); without a mean, none is drawn for it."""
        ts = _ts(t)
        reading = (ts, float(sys), float(dia), math.nan if mean is None else float(mean))
        bisect.insort(self._nibp, reading)
        self._nibp_dirty = True
        if self._first_ts is None or ts < self._first_ts:
            self._first_ts = ts

    def set_phases(self, phases: Iterable[tuple[datetime, datetime | None, str]]) -> None:
        """The session's phases as ``(start, end or None for ongoing, name)``, e.g. baseline,
        infusion, recovery."""
        parsed = [(_ts(start), None if end is None else _ts(end), name) for start, end, name in phases]
        if parsed != self._phases:
            self._phases = parsed
            self._phases_dirty = True

    def add_marker(self, t: datetime, kind: str, text: str, priority: str | None = None) -> None:
        """Mark an ``event``, ``assessment``, ``alarm`` (coloured by ``priority``) or ``infusion``
        step at ``t``; ``text`` shows in the marker's tooltip."""
        if kind not in MARKER_STYLE:
            raise ValueError(f"unknown marker kind {kind!r}; expected one of {', '.join(MARKER_STYLE)}")
        if kind == "alarm" and priority not in theme.PRIORITY_COLOURS:
            raise ValueError(f"an alarm marker needs a priority in {tuple(theme.PRIORITY_COLOURS)}, "
                             f"not {priority!r}")
        self._markers.append(_Marker(_ts(t), kind, text, priority if kind == "alarm" else None))
        self._markers_dirty = True

    def clear_session(self) -> None:
        """A session ended: forget its phases, markers and time origin (the live samples stay)."""
        self._markers.clear()
        self._phases = []
        self._origin_ts = None
        self._markers_dirty = self._phases_dirty = True

    def clear(self) -> None:
        """Forget all samples, readings, phases and markers (the origin stays)."""
        for series in self.series.values():
            series.ring.clear()
            series.lo, series.hi = math.inf, -math.inf
            series.dirty = True
            series.archived = 0
        self._nibp.clear()
        self._markers.clear()
        self._phases = []
        self._first_ts = None
        self._nibp_dirty = self._markers_dirty = self._phases_dirty = True
        for row in self.rows.values():
            self._show_y(row, *row.span)

    # ------------------------------------------------------------------ drawing
    def origin(self) -> float | None:
        """POSIX seconds at minute 0: the origin set, else the first phase's start, else the first
        sample; None before any of them."""
        if self._origin_ts is not None:
            return self._origin_ts
        if self._phases:
            return min(start for start, _, _ in self._phases)
        return self._first_ts

    def refresh(self, now: datetime) -> None:
        """Draw what arrived since the last call and stretch the time axis to ``now`` (call
        about once a second)."""
        now_ts = _ts(now)
        origin = self.origin()
        if origin is None:
            origin = now_ts
        if origin != self._applied_origin:
            self._applied_origin = origin
            self.clock_axis.set_origin(origin)
            for series in self.series.values():
                series.dirty = True
                series.archived = 0  # every position moves
            self._nibp_dirty = self._markers_dirty = self._phases_dirty = True

        def minutes(ts: float) -> float:
            return (ts - origin) / 60.0

        for series in self.series.values():
            if series.dirty:
                series.dirty = False
                series.draw(origin)
        for row in self.rows.values():
            self._fit_y(row)
        if self._nibp_dirty:
            self._nibp_dirty = False
            self._draw_nibp(origin)

        starts = [minutes(self._first_ts)] if self._first_ts is not None else []
        starts += [minutes(start) for start, _, _ in self._phases]
        first = min([0.0, *starts])
        now_x = minutes(now_ts)
        needed = max(now_x, first + MIN_SPAN_MIN)
        headroom = max(1.0, HEADROOM * (needed - first))
        shown = self._x_range
        if shown is None or first != self._x_first or not needed <= shown[1] <= needed + 2 * headroom:
            # a new range only now and then: re-ranging makes every curve re-clip and re-decimate
            right = needed + headroom
            left = first - LEFT_PAD * (right - first)  # room for the first tick's label and marker
            self._x_first, self._x_range = first, (left, right)
            self.lane.setXRange(left, right, padding=0)

        if self._phases_dirty or any(end is None for _, end, _ in self._phases):
            self._phases_dirty = False
            self._draw_phases(origin, now_x)
        if self._markers_dirty:
            self._markers_dirty = False
            self._draw_markers(origin)
        # Let the view boxes apply their new ranges now rather than at paint time, where the items'
        # reaction to the change would ask for a second paint of the whole widget.
        self.graphics.scene().prepareForPaint()

    def _fit_y(self, row: _Row) -> None:
        """Show at least the row's display span, widened to take in every value."""
        lo, hi = row.span
        members = [s for s in self.series.values() if self.rows[s.row] is row]
        data_lo = min((s.lo for s in members), default=math.inf)
        data_hi = max((s.hi for s in members), default=-math.inf)
        if row is self.rows["nibp"] and self._nibp:
            data_lo = min(r[2] for r in self._nibp)
            data_hi = max(r[1] for r in self._nibp)
        pad = 0.05 * (hi - lo)
        self._show_y(row, min(lo, data_lo - pad), max(hi, data_hi + pad))

    def _show_y(self, row: _Row, lo: float, hi: float) -> None:
        if (lo, hi) == row.shown:
            return
        row.shown = (lo, hi)
        row.plot.setYRange(lo, hi, padding=0)
        self._draw_decor(row)

    def _draw_nibp(self, origin: float) -> None:
        if not self._nibp:
            for item in (self._nibp_bars, self._nibp_ends, self._nibp_means):
                item.setData([], [])
            return
        readings = np.array(self._nibp, dtype=np.float64)
        x = (readings[:, 0] - origin) / 60.0
        bars_x = np.repeat(x, 2)
        bars_y = readings[:, [2, 1]].reshape(-1)
        self._nibp_bars.setData(bars_x, bars_y)
        self._nibp_ends.setData(bars_x, bars_y)
        with_mean = ~np.isnan(readings[:, 3])
        self._nibp_means.setData(x[with_mean], readings[with_mean, 3],
                                 data=[_nibp_text(r) for r in readings[with_mean]])

    def _draw_phases(self, origin: float, now_x: float) -> None:
        self._phase_spans = [((start - origin) / 60.0, now_x if end is None else (end - origin) / 60.0, name)
                             for start, end, name in self._phases]
        for row in (self._lane_row, *self.rows.values()):
            self._draw_decor(row)
        while len(self._phase_labels) > len(self._phase_spans):
            self.lane.removeItem(self._phase_labels.pop())
        while len(self._phase_labels) < len(self._phase_spans):
            label = pg.TextItem(anchor=(0, 0), color=theme.TEXT)
            label.setFont(theme.font(9))
            self.lane.addItem(label, ignoreBounds=True)
            self._phase_labels.append(label)
        box = self.lane.getViewBox()
        x_min, x_max = box.viewRange()[0]
        per_pixel = box.viewPixelSize()[0] or (x_max - x_min) / max(1.0, box.width())
        nexts = [span[0] for span in self._phase_spans[1:]] + [x_max]
        for label, (x0, _, name), next_x0 in zip(self._phase_labels, self._phase_spans, nexts):
            if label.toPlainText() != name:
                label.setText(name)
            width = (label.boundingRect().width() + 4) * per_pixel   # the label's width, in minutes
            if x0 + width <= min(next_x0, x_max):
                label.setAnchor((0, 0))
                label.setPos(x0, 1.0)
                label.setVisible(True)
            elif next_x0 >= x_max and x_max - width >= max(x0, x_min):   # the last phase, near the right
                label.setAnchor((1, 0))                                  # edge: its name ends there
                label.setPos(x_max, 1.0)
                label.setVisible(True)
            else:
                label.setVisible(False)  # a phase too short to name stays shaded only, never half-named

    def _draw_markers(self, origin: float) -> None:
        groups: dict[str, list[float]] = {}
        spots = []
        for marker in self._markers:
            x = (marker.ts - origin) / 60.0
            group = f"alarm:{marker.priority}" if marker.kind == "alarm" else marker.kind
            groups.setdefault(group, []).append(x)
            spots.append({"pos": (x, 0.32), "symbol": MARKER_STYLE[marker.kind][1],
                          "brush": pg.mkBrush(_group_colour(group)), "pen": pg.mkPen(theme.BACKGROUND, width=1),
                          "data": marker})
        self._lane_symbols.setData(spots)
        self._marker_groups = groups
        for row in self.rows.values():
            self._draw_decor(row)

    def _draw_decor(self, row: _Row) -> None:
        """Phase shading and marker lines of one strip, over its shown vertical span. Plain Qt
        items (painted by Qt, not by Python on every frame), one per phase and per marker group."""
        lo, hi = row.shown
        spans = self._phase_spans
        phase_regions(row.plot, row.regions, len(spans))
        for region, (x0, x1, name) in zip(row.regions, spans):
            region.setBrush(QBrush(QColor(*PHASE_COLOURS.get(name, _PHASE_DEFAULT))))
            region.setRect(QRectF(x0, lo, max(0.0, x1 - x0), hi - lo))
        if not row.lines:
            return
        for group in set(row.marker_lines) - set(self._marker_groups):
            row.plot.removeItem(row.marker_lines.pop(group))
        for group, xs in self._marker_groups.items():
            item = row.marker_lines.get(group)
            if item is None:
                pen = QPen(QColor(_group_colour(group)), 1, MARKER_STYLE[group.partition(":")[0]][2])
                pen.setCosmetic(True)  # one pixel wide whatever the scale
                item = QGraphicsPathItem()
                item.setPen(pen)
                item.setZValue(-5)
                row.plot.addItem(item, ignoreBounds=True)
                row.marker_lines[group] = item
            path = QPainterPath()
            for x in xs:
                path.moveTo(x, lo)
                path.lineTo(x, hi)
            item.setPath(path)

    # ------------------------------------------------------------------ for tests and review
    def curve_data(self, vital: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(x minutes, values) handed to the curves of ``vital`` (before clipping and decimation),
        joined; (None, None) when empty."""
        series = self.series[vital]
        archive, tail = series.curve.getOriginalDataset(), series.tail.getOriginalDataset()
        if archive[0] is None:
            return None, None
        return np.concatenate([archive[0], tail[0][1:]]), np.concatenate([archive[1], tail[1][1:]])

    def x_range(self) -> tuple[float, float] | None:
        """The minutes shown (left, right), or None before the first refresh."""
        return self._x_range

    def marker_count(self) -> int:
        """The number of markers drawn."""
        return len(self._lane_symbols.data)

    def phase_count(self) -> int:
        """The number of phases shaded."""
        return len(self._phase_labels)
