"""The review window's plots: a whole session's trends and waveforms on one zoomable time axis.

Strips, top to bottom, all x-linked: a marker lane (phase names; events, assessments, infusion
steps, notes and alarms as symbols with a tooltip; each alarm's duration as a bar in its
priority's colour), HR/PR, SpO2, NIBP (a bar from diastolic to systolic with the mean as a dot),
EtCO2/RR, then one strip per stored waveform channel. Below them, an overview of the whole
session with a region (:class:`pyqtgraph.LinearRegionItem`) that follows the main view and moves
it. Positions are seconds from the session's start; the axes show local clock time.

Wheel zooms and drag pans the time axis only; clicking places the cursor (a vertical line in every
strip, which can also be dragged). Trend curves hold the whole session (numpy arrays read once)
and are clipped and peak-decimated by pyqtgraph per frame. Waveforms are never held whole: after
every change of the visible range (debounced by :data:`DEBOUNCE_MS`), each channel is read from
the store for that range only, min/max-decimated there to about one bin per pixel of the strip
(:meth:`SessionStore.waveform` with ``max_points`` = the strip's width), and drawn as a connected
min/max polyline, or as the real samples once the range holds fewer samples than pixels. Ranges up
to :data:`SYNC_WAVE_SPAN_S` are read on the spot (a few milliseconds); wider ones by a background
thread, newest request first, so that panning a zoomed-out view never waits for the disk.

Phase shading, marker lines and alarm bars are plain Qt items clipped to the visible range on
each redraw (no Python paint per frame, no huge coordinates at high zoom).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsRectItem, QVBoxLayout, QWidget

from drivers.model import WAVE_CHANNELS
from monitor.app.readmodel import PhaseSpan
from monitor.app.review import Envelope, Series, TimelineRow, with_gaps
from monitor.app.records import Records, WaveformSlice
from monitor.errors import StoreError
from ui import theme
from ui.review.axes import ClockAxis
from ui.trends import MARKER_STYLE, PHASE_COLOURS, TREND_ROWS, ValueAxis, phase_regions
from ui.waves import Badge

log = logging.getLogger(__name__)

__all__ = ["ReviewPlots", "WaveRequest", "SYNC_WAVE_SPAN_S", "DEBOUNCE_MS", "MIN_SPAN_S"]

#: Visible spans up to this many seconds read their waveforms on the UI thread; wider ones in the background.
SYNC_WAVE_SPAN_S = 5 * 60.0
#: Quiet time after the last range change before the waveforms are read again (ms).
DEBOUNCE_MS = 50
#: The narrowest span the time axis zooms to (seconds).
MIN_SPAN_S = 1.0
#: Room left and right of the session when the whole of it is shown, as a part of its duration.
FIT_PAD = 0.01
#: Marker styles by timeline category (alarms take their priority's colour).
_MARKERS: dict[str, tuple[str, str, Qt.PenStyle]] = {**MARKER_STYLE, "note": (theme.TEXT_DIM, "o", Qt.PenStyle.DotLine)}
#: Phase keys of the record → the live trends' phase colours.
_PHASE_KEYS = {"dosing": "infusion"}
_AXIS_WIDTH = 44
_LANE_Y = 0.32
_CURSOR_COLOUR = "#ff9a40"


@dataclass(frozen=True)
class WaveRequest:
    """One waveform read: channel, range (epoch s), ``max_points`` asked, samples or bins returned,
    first/last time returned, whether decimated, milliseconds, and whether it ran in the background."""

    channel: str
    start: float
    end: float
    max_points: int
    n: int
    first: float | None
    last: float | None
    decimated: bool
    ms: float
    background: bool
    generation: int = 0


# A ScatterPlotItem tooltip must be a plain function: a bound method of the widget makes a reference
# cycle whose collection crashes PySide6 (see ui/trends.py).
def _marker_tip(x: float, y: float, data: object) -> str:
    if not isinstance(data, TimelineRow):
        return ""
    text = f"{data.t.astimezone().strftime('%H:%M:%S')}  {data.text}"
    if data.by:
        text += f"  ({data.by})"
    if data.mark:
        text += f"  [{data.mark}]"
    return text


def _nibp_tip(x: float, y: float, data: object) -> str:
    return str(data)


def _colour(row: TimelineRow) -> str:
    if row.category == "alarm":
        return theme.PRIORITY_COLOURS.get(row.priority or "", theme.TEXT)
    return _MARKERS.get(row.category, _MARKERS["note"])[0]


def _group(row: TimelineRow) -> str:
    return f"alarm:{row.priority}" if row.category == "alarm" else row.category


def _group_pen(group: str) -> QPen:
    kind, _, priority = group.partition(":")
    colour = theme.PRIORITY_COLOURS.get(priority, theme.TEXT) if kind == "alarm" else _MARKERS[kind][0]
    pen = QPen(QColor(colour), 1, _MARKERS[kind][2])
    pen.setCosmetic(True)
    return pen


@dataclass
class _Strip:
    """One plot row: its plot, its display span, what is drawn on it."""

    key: str
    plot: pg.PlotItem
    span: tuple[float, float]
    shown: tuple[float, float] = (0.0, 1.0)
    regions: list[QGraphicsRectItem] = field(default_factory=list)
    marker_lines: dict[str, QGraphicsPathItem] = field(default_factory=dict)
    cursor: pg.InfiniteLine | None = None
    curve: pg.PlotDataItem | None = None
    message: Badge | None = None

    @property
    def box(self) -> pg.ViewBox:
        """The strip's view box."""
        return self.plot.getViewBox()


class _WaveFetcher(QObject):
    """Reads waveform ranges on a background thread, the newest request first: a request made while
    another is being read replaces any request still waiting, and the one being read stops after
    its current channel."""

    fetched = Signal(object)  # (generation, WaveRequest, WaveformSlice)

    def __init__(self, store: Records, session_id: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._store, self._sid = store, session_id
        self._cond = threading.Condition()
        self._job: tuple[int, list[tuple[str, float, float, int]]] | None = None
        self._latest = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="review-waveforms", daemon=True)
        self._thread.start()

    def request(self, generation: int, jobs: list[tuple[str, float, float, int]]) -> None:
        """Read ``jobs`` (channel, start, end epoch s, max_points) for ``generation``."""
        with self._cond:
            self._job = (generation, jobs)
            self._latest = generation
            self._cond.notify()

    def cancel(self, generation: int) -> None:
        """Forget requests older than ``generation`` (the UI thread read that range itself)."""
        with self._cond:
            self._latest = generation
            self._job = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                generation, jobs = self._job
                self._job = None
            for channel, start, end, points in jobs:
                if self._latest != generation or self._stopping:
                    break
                try:
                    began = time.perf_counter()
                    piece = self._store.waveform(self._sid, channel, _dt(start), _dt(end), max_points=points)
                    ms = (time.perf_counter() - began) * 1000
                except (StoreError, sqlite3.Error, ValueError) as exc:
                    log.warning("reading %s of session %s failed: %s", channel, self._sid, exc)
                    continue
                with self._cond:
                    if self._stopping:   # the window is gone (or going): nobody to draw it
                        return
                    try:
                        self.fetched.emit((generation, _request(channel, start, end, points, piece, ms, True,
                                                                generation), piece))
                    except RuntimeError:   # deleted without a close (the application ending)
                        return

    def stop(self) -> None:
        """End the thread: it reads nothing more, and what it is reading now (a channel of a
        zoomed-out 12-hour session can take half a second) is dropped, without waiting for it."""
        with self._cond:
            self._stopping = True
            self._cond.notify()


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _request(channel: str, start: float, end: float, points: int, piece: WaveformSlice, ms: float,
             background: bool, generation: int) -> WaveRequest:
    n = len(piece.t)
    return WaveRequest(channel, start, end, points, n, float(piece.t[0]) if n else None,
                       float(piece.t[-1]) if n else None, piece.decimated, ms, background, generation)


class ReviewPlots(QWidget):
    """The plots of one session (see the module docstring).

    ``start``/``end``: the session's extent, epoch seconds (``end`` moves on with :meth:`set_extent`
    for a live session). ``channels``: the waveform channels stored for it. The strips are made by
    :meth:`build_steps`, which the owner drives (:attr:`built` once done). Signals:
    ``range_changed(start, end)`` (epoch s, after the debounce) and ``cursor_moved(t)`` (epoch s).
    """

    range_changed = Signal(float, float)
    cursor_moved = Signal(float)

    def __init__(self, store: Records, session_id: int, start: float, end: float,
                 channels: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.session_id = session_id
        self.origin = start
        self.duration = max(end - start, 60.0)
        self.channels = list(channels)
        self.wave_log: list[WaveRequest] = []  # the latest reads (tests, benchmarks)
        self.cursor_t = start
        self._generation = 0
        self._shown_generation: dict[str, int] = {}
        self._syncing = False
        self._phases: list[tuple[float, float, str, str]] = []   # x0, x1, key, label
        self._markers: list[TimelineRow] = []
        self._marker_x = np.empty(0)
        self._marker_groups: list[str] = []
        self._alarm_rects: list[tuple[float, float, str, QGraphicsRectItem]] = []
        self._overview_alarms: list[QGraphicsRectItem] = []
        self._phase_labels: list[pg.TextItem] = []
        self._nibp_points = 0

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(theme.BACKGROUND)
        self.graphics.ci.layout.setContentsMargins(2, 2, 8, 2)
        self.graphics.ci.layout.setVerticalSpacing(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self._tick_font = QFont(theme.font(8))
        self.painted = False  # no waveform is read before the first frame is on screen
        self._pending: tuple[int, list[tuple[str, float, float, int]]] | None = None
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.redraw)
        self._fetcher = _WaveFetcher(store, session_id, self)
        self._fetcher.fetched.connect(self._fetched)
        #: The strips still to be made (:meth:`build_steps`); None once all are.
        self._building: Iterator[None] | None = self._build(start)

    # ------------------------------------------------------------------ construction
    @property
    def built(self) -> bool:
        """True once every strip is made (see :meth:`build_steps`)."""
        return self._building is None

    def build_steps(self) -> Iterator[None]:
        """Make the strips one at a time, a step per ``next()`` (about 10–20 ms each), so that the
        window makes them across event-loop turns and never holds its thread for the whole
        construction. Nothing is drawn, and no waveform read, until they are all made."""
        while self._building is not None:
            try:
                next(self._building)
            except StopIteration:
                self._building = None
                return
            yield

    def _build(self, start: float) -> Iterator[None]:
        # ------------------------------------------------------------ strips
        self.lane = self._strip("lane", (0.0, 1.0), {"top": ClockAxis("top", start)}, row=0)
        lane = self.lane.plot
        lane.getAxis("left").setStyle(showValues=False, tickLength=0)
        lane.getAxis("left").setPen(pg.mkPen(None))
        lane.setFixedHeight(48)
        self._lane_symbols = pg.ScatterPlotItem(size=12, pxMode=True, hoverable=True, tip=_marker_tip, hoverSize=16)
        self._lane_symbols.setZValue(5)
        lane.addItem(self._lane_symbols)
        yield
        self.trend_strips: dict[str, _Strip] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        row = 1
        for name, vitals, span in TREND_ROWS:
            strip = self._strip(name, span, {}, row=row)
            self.trend_strips[name] = strip
            labels = []
            for vital, label, width in vitals:
                colour = theme.colour(vital)
                labels.append((label, colour))
                if vital != "nibp":
                    self.curves[vital] = self._trend_curve(strip.plot, colour, width)
            self._labels(strip.plot, labels)
            row += 1
            yield
        white = theme.colour("nibp")
        nibp = self.trend_strips["nibp"].plot
        self._nibp_bars = pg.PlotDataItem(pen=pg.mkPen(white, width=2), connect="pairs", antialias=False)
        self._nibp_means = pg.ScatterPlotItem(symbol="o", size=7, pen=pg.mkPen(None), brush=white, hoverable=True,
                                              tip=_nibp_tip)
        nibp.addItem(self._nibp_bars)
        nibp.addItem(self._nibp_means)
        self.wave_strips: dict[str, _Strip] = {}
        for channel in self.channels:
            label, unit, _rate = WAVE_CHANNELS.get(channel, (channel, "", 0.0))
            strip = self._strip(channel, (-1.0, 1.0), {}, row=row)
            strip.curve = pg.PlotDataItem(pen=pg.mkPen(theme.colour(channel), width=1), connect="finite",
                                          antialias=False)
            strip.plot.addItem(strip.curve)
            self._labels(strip.plot, [(label + (f" ({unit})" if unit else ""), theme.colour(channel))])
            strip.message = Badge(strip.box, "", QColor(theme.TEXT_DIM), theme.font(9))
            strip.message.setZValue(20)
            strip.box.sigResized.connect(self._place_messages)
            self.wave_strips[channel] = strip
            row += 1
            yield
        self.main_strips = [self.lane, *self.trend_strips.values(), *self.wave_strips.values()]
        last = self.main_strips[-1]
        bottom = ClockAxis("bottom", start)
        last.plot.setAxisItems({"bottom": bottom})
        self._style_axis(last.plot.getAxis("bottom"))
        last.plot.showAxis("bottom")
        for strip in self.main_strips[1:]:
            strip.plot.setXLink(lane)
        layout_ = self.graphics.ci.layout
        layout_.setRowStretchFactor(0, 0)
        for i in range(1, row):
            layout_.setRowStretchFactor(i, 3 if i <= len(TREND_ROWS) else 2)

        # ------------------------------------------------------------ overview
        self.overview = self._strip("overview", (40.0, 140.0), {"bottom": ClockAxis("bottom", start)}, row=row,
                                    linked=False)
        ov = self.overview.plot
        ov.setFixedHeight(64)
        ov.setMouseEnabled(x=False, y=False)
        ov.getAxis("left").setStyle(showValues=False, tickLength=0)
        self._overview_curves = {v: self._trend_curve(ov, theme.colour(v), 1.0) for v in ("hr", "spo2")}
        self.region = pg.LinearRegionItem(orientation="vertical", brush=pg.mkBrush(255, 255, 255, 40),
                                          hoverBrush=pg.mkBrush(255, 255, 255, 60),
                                          pen=pg.mkPen("#d0d0d0", width=1))
        self.region.setZValue(10)
        ov.addItem(self.region, ignoreBounds=True)
        self._labels(ov, [("Whole session", QColor(theme.TEXT_DIM))])
        layout_.setRowStretchFactor(row, 0)
        yield

        # ------------------------------------------------------------ behaviour
        self.graphics.viewport().installEventFilter(self)
        lane.getViewBox().sigXRangeChanged.connect(self._x_changed)
        self.region.sigRegionChanged.connect(self._region_moved)
        self.graphics.scene().sigMouseClicked.connect(self._clicked)
        self._apply_limits()
        self._draw_overview_extent()
        self.fit_all()
        # Laid out one strip per turn while on screen, the rows kept the height the first one
        # allowed (the marker lane's fixed 48 px: the whole session squeezed into the top of the
        # window, seen under a window manager): fill the view again, as a resize does.
        self.graphics.resizeEvent(None)
        # The strips appear one per turn: each turn paints one strip (its axes, curves and marks),
        # not the whole area at once (the first paint of all of them took 60–80 ms).
        for strip in (*self.main_strips, self.overview):
            yield
            strip.plot.setOpacity(1.0)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Paint:
            if not self.painted:
                self.painted = True
                self._debounce.start()  # the waveforms of the first view, once it is painted
            if self._pending is not None:
                # a background read starts once this frame is painted, so that it does not slow it
                QTimer.singleShot(0, self._dispatch)
        return False

    def _dispatch(self) -> None:
        if self._pending is not None:
            generation, jobs = self._pending
            self._pending = None
            self._fetcher.request(generation, jobs)

    # ------------------------------------------------------------------ construction helpers
    def _style_axis(self, axis: pg.AxisItem) -> None:
        axis.setStyle(tickFont=self._tick_font, tickLength=-4, autoExpandTextSpace=False)
        axis.setTextPen(pg.mkPen(theme.TEXT_DIM))
        axis.setPen(pg.mkPen(theme.PANEL_EDGE))

    def _strip(self, key: str, span: tuple[float, float], axes: dict[str, pg.AxisItem], row: int,
               linked: bool = True) -> _Strip:
        # no context menus (a view box builds its menu's widgets unless told not to: a third of a strip's cost)
        plot = self.graphics.addPlot(row=row, col=0, axisItems={"left": ValueAxis(), **axes},
                                     viewBox=pg.ViewBox(enableMenu=False, defaultPadding=0.0))
        plot.setOpacity(0.0)   # laid out with the others (a hidden item takes no room), painted at the end of :meth:`_build`
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.setMouseEnabled(x=linked, y=False)
        for name in ("left", *axes):
            self._style_axis(plot.getAxis(name))
        plot.showAxis("left")
        if "bottom" not in axes:
            plot.hideAxis("bottom")
        if "top" in axes:
            plot.showAxis("top")
        plot.getAxis("left").setWidth(_AXIS_WIDTH)
        box = plot.getViewBox()
        box.disableAutoRange()
        box.setDefaultPadding(0.0)
        strip = _Strip(key, plot, span)
        self._show_y(strip, *span)
        if linked:
            line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen(_CURSOR_COLOUR, width=1),
                                   hoverPen=pg.mkPen(_CURSOR_COLOUR, width=3))
            line.setZValue(30)
            plot.addItem(line, ignoreBounds=True)
            line.sigPositionChanged.connect(self._cursor_dragged)
            strip.cursor = line
        return strip

    @staticmethod
    def _trend_curve(plot: pg.PlotItem, colour: QColor, width: float) -> pg.PlotDataItem:
        curve = pg.PlotDataItem(pen=pg.mkPen(colour, width=width), connect="finite", antialias=False,
                                autoDownsampleFactor=1.0)
        curve.setZValue(2 if width > 1 else 1)
        plot.addItem(curve)  # first: PlotItem.addItem resets the item's clip and downsampling
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method="peak")
        return curve

    @staticmethod
    def _labels(plot: pg.PlotItem, labels: Iterable[tuple[str, QColor]]) -> None:
        x = 4.0
        for text, colour in labels:
            badge = Badge(plot.getViewBox(), text, colour, theme.font(8.5, bold=True))
            badge.setZValue(20)
            badge.setPos(x, 1)
            x += badge.rect().width() + 4

    def _place_messages(self, *_: object) -> None:
        for strip in self.wave_strips.values():
            if strip.message is not None:
                rect = strip.box.boundingRect()
                strip.message.setPos(max(4.0, rect.width() - strip.message.rect().width() - 6), 1)

    # ------------------------------------------------------------------ data in
    def set_extent(self, end: float) -> None:
        """The session now ends at epoch second ``end`` (a live session's refresh)."""
        self.duration = max(end - self.origin, 60.0)
        self._apply_limits()
        self._draw_overview_extent()

    def _apply_limits(self) -> None:
        pad = FIT_PAD * self.duration
        for strip in self.main_strips:
            strip.box.setLimits(xMin=-pad, xMax=self.duration + pad, minXRange=MIN_SPAN_S,
                                maxXRange=self.duration + 2 * pad)

    def _draw_overview_extent(self) -> None:
        pad = FIT_PAD * self.duration
        self.overview.box.setXRange(-pad, self.duration + pad, padding=0)
        self.region.setBounds((-pad, self.duration + pad))

    def set_numerics(self, numerics: Mapping[str, Series], envelopes: Mapping[str, Envelope] | None = None) -> None:
        """Draw the trend vitals (HR, PR, SpO2, RR, EtCO2, NIBP) found in ``numerics``; a vital found
        only in ``envelopes`` is drawn from its min/max envelope (the first frame of a long session,
        before its values are all read)."""
        envelopes = envelopes or {}
        ranges: dict[str, tuple[float, float]] = {}
        for vital, curve in self.curves.items():
            series = numerics.get(vital)
            envelope = envelopes.get(vital)
            if series is not None and len(series.t):
                t, v = with_gaps(series.t - self.origin, series.v)
                _, usable = series.usable()
                if len(usable):
                    ranges[vital] = (float(usable.min()), float(usable.max()))
            elif envelope is not None and np.isfinite(envelope.hi).any():
                t = np.repeat(envelope.t - self.origin, 2)
                v = np.column_stack((envelope.lo, envelope.hi)).reshape(-1)
                ranges[vital] = (float(np.nanmin(envelope.lo)), float(np.nanmax(envelope.hi)))
            else:
                curve.setData([], [])
                if vital in self._overview_curves:
                    self._overview_curves[vital].setData([], [])
                continue
            curve.setData(t, v)
            if vital in self._overview_curves:
                self._overview_curves[vital].setData(t, v)
        for key in ("nibp_sys", "nibp_dia"):
            series = numerics.get(key)
            if series is not None:
                _, usable = series.usable()
                if len(usable):
                    ranges[key] = (float(usable.min()), float(usable.max()))
        for strip in self.trend_strips.values():
            self._fit_y(strip, ranges)
        sys_, dia, mean = (numerics.get(k) for k in ("nibp_sys", "nibp_dia", "nibp_mean"))
        if sys_ is not None and dia is not None and len(sys_.t):
            ok = ~np.isnan(sys_.v)
            t = sys_.t[ok]
            d = np.interp(t, dia.t, dia.v) if len(dia.t) else np.full(len(t), np.nan)
            same = np.isin(t, dia.t)
            t, s, d = t[same], sys_.v[ok][same], d[same]
            x = t - self.origin
            self._nibp_bars.setData(np.repeat(x, 2), np.column_stack((d, s)).reshape(-1))
            self._nibp_points = len(x)
            if mean is not None and len(mean.t):
                m_ok = np.isin(mean.t, t) & ~np.isnan(mean.v)
                mt, mv = mean.t[m_ok], mean.v[m_ok]
                tips = []
                for when, value in zip(mt.tolist(), mv.tolist()):
                    i = int(np.searchsorted(t, when))
                    clock = datetime.fromtimestamp(when).strftime("%H:%M:%S")
                    tips.append(f"{clock}  NIBP {s[i]:.0f}/{d[i]:.0f} ({value:.0f})")
                self._nibp_means.setData(mt - self.origin, mv, data=tips)
        else:
            self._nibp_bars.setData([], [])
            self._nibp_means.setData([], [])
            self._nibp_points = 0

    def _fit_y(self, strip: _Strip, ranges: Mapping[str, tuple[float, float]]) -> None:
        """Show at least the strip's display span, widened to take in each member vital's
        ``ranges`` entry (min, max of its usable values)."""
        members = [v for name, vitals, _ in TREND_ROWS if name == strip.key for v, _, _ in vitals]
        if strip.key == "nibp":
            members = ["nibp_sys", "nibp_dia"]
        lo, hi = strip.span
        pad = 0.05 * (strip.span[1] - strip.span[0])
        for vital in members:
            if vital in ranges:
                low, high = ranges[vital]
                lo, hi = min(lo, low - pad), max(hi, high + pad)
        self._show_y(strip, lo, hi)

    def _show_y(self, strip: _Strip, lo: float, hi: float) -> None:
        if not hi > lo:
            hi = lo + 1.0
        if (lo, hi) == strip.shown:
            return
        strip.shown = (lo, hi)
        strip.plot.setYRange(lo, hi, padding=0)

    def set_phases(self, phases: Iterable[PhaseSpan]) -> None:
        """Shade the session's phases (baseline, dosing, recovery) behind every strip."""
        self._phases = [(ph.start.timestamp() - self.origin, ph.end.timestamp() - self.origin, ph.key, ph.label)
                        for ph in phases]
        lane = self.lane.plot
        while len(self._phase_labels) > len(self._phases):
            lane.removeItem(self._phase_labels.pop())
        while len(self._phase_labels) < len(self._phases):
            label = pg.TextItem(anchor=(0, 0), color=theme.TEXT)
            label.setFont(theme.font(8.5))
            lane.addItem(label, ignoreBounds=True)
            self._phase_labels.append(label)
        for label, (_, _, _, text) in zip(self._phase_labels, self._phases):
            label.setText(text)
        ov = self.overview
        self._shade(ov, (-1e12, 1e12))  # the overview never zooms: its rects are drawn once, unclipped
        self._update_decor()

    def set_markers(self, rows: Sequence[TimelineRow]) -> None:
        """Mark every row of the timeline at its time (alarms coloured by priority, with their
        duration as a bar in the lane and on the overview)."""
        self._markers = list(rows)
        self._marker_x = np.array([r.epoch - self.origin for r in rows], dtype=np.float64)
        self._marker_groups = [_group(r) for r in rows]
        brushes = {c: pg.mkBrush(c) for c in {_colour(r) for r in rows}}
        outline = pg.mkPen(theme.BACKGROUND, width=1)
        self._lane_symbols.setData(x=self._marker_x, y=np.full(len(rows), _LANE_Y),
                                   symbol=[_MARKERS.get(r.category, _MARKERS["note"])[1] for r in rows],
                                   brush=[brushes[_colour(r)] for r in rows], pen=outline, data=list(rows))
        for _, _, _, item in self._alarm_rects:
            self.lane.plot.removeItem(item)
        for item in self._overview_alarms:
            self.overview.plot.removeItem(item)
        self._alarm_rects, self._overview_alarms = [], []
        for r in rows:
            if r.category != "alarm":
                continue
            x0 = r.epoch - self.origin
            x1 = (r.end.timestamp() - self.origin) if r.end is not None else self.duration
            lane_bar = self._bar(self.lane.plot, _colour(r), QRectF(x0, 0.02, max(x1 - x0, 0.0), 0.14))
            self._alarm_rects.append((x0, x1, r.priority or "", lane_bar))
            width = max(x1 - x0, 0.004 * self.duration)  # visible on the overview however short
            self._overview_alarms.append(self._bar(self.overview.plot, _colour(r), QRectF(x0, 40.0, width, 10.0)))
        self._update_decor()

    @staticmethod
    def _bar(plot: pg.PlotItem, colour: str, rect: QRectF) -> QGraphicsRectItem:
        item = QGraphicsRectItem(rect)
        item.setPen(QPen(Qt.PenStyle.NoPen))
        item.setBrush(QBrush(QColor(colour)))
        item.setZValue(4)
        plot.addItem(item, ignoreBounds=True)
        return item

    # ------------------------------------------------------------------ the visible range
    def x_range(self) -> tuple[float, float]:
        """The visible range, epoch seconds."""
        x0, x1 = self.lane.box.viewRange()[0]
        return self.origin + x0, self.origin + x1

    def set_range(self, start: float, end: float) -> None:
        """Show epoch seconds ``start``–``end`` (kept within the session and at least
        :data:`MIN_SPAN_S` wide)."""
        self.lane.plot.setXRange(start - self.origin, end - self.origin, padding=0)

    def fit_all(self) -> None:
        """Show the whole session."""
        pad = FIT_PAD * self.duration
        self.lane.plot.setXRange(-pad, self.duration + pad, padding=0)

    def zoom(self, factor: float) -> None:
        """Zoom the time axis by ``factor`` (> 1 zooms in) about the centre of the view."""
        start, end = self.x_range()
        centre, half = (start + end) / 2, (end - start) / 2 / factor
        self.set_range(centre - half, centre + half)

    def centre_on(self, t: float, span: float | None = None) -> None:
        """Centre the view on epoch second ``t``, keeping the span shown (or ``span`` seconds)."""
        start, end = self.x_range()
        half = (span if span is not None else end - start) / 2
        self.set_range(t - half, t + half)

    def _x_changed(self, *_: object) -> None:
        x0, x1 = self.lane.box.viewRange()[0]
        if not self._syncing:
            self._syncing = True
            try:
                self.region.setRegion((x0, x1))
            finally:
                self._syncing = False
        if self.painted:
            self._debounce.start()

    def _region_moved(self, *_: object) -> None:
        if self._syncing:
            return
        x0, x1 = self.region.getRegion()
        self._syncing = True
        try:
            self.lane.plot.setXRange(x0, x1, padding=0)
        finally:
            self._syncing = False

    def redraw(self) -> None:
        """Bring everything range-dependent up to date now: decor clipped to the visible range,
        waveforms read for it; then ``range_changed``. (Called by the debounce timer.)"""
        self._debounce.stop()
        self._update_decor()
        self._fetch_waves()
        start, end = self.x_range()
        self.range_changed.emit(start, end)
        # Let the view boxes apply their new ranges now rather than at paint time, where the items'
        # reaction to the change would ask for a second paint of the whole widget (ui/trends.py).
        self.graphics.scene().prepareForPaint()

    # ------------------------------------------------------------------ decor
    def _visible(self) -> tuple[float, float]:
        x0, x1 = self.lane.box.viewRange()[0]
        margin = 0.05 * (x1 - x0)
        return x0 - margin, x1 + margin

    def _update_decor(self) -> None:
        lo, hi = self._visible()
        for strip in self.main_strips:
            self._shade(strip, (lo, hi))
            if strip is not self.lane:
                self._marker_lines(strip, lo, hi)
        for x0, x1, _, item in self._alarm_rects:
            rect = item.rect()
            a, b = max(x0, lo), min(x1, hi)
            if b < a:  # off screen: keep it out of the way
                a = b = lo
            item.setRect(QRectF(a, rect.y(), max(b - a, (hi - lo) * 0.002), rect.height()))
        span = max(hi - lo, 1e-9)
        starts = [x0 for x0, *_ in self._phases[1:]] + [math.inf]
        for label, (x0, x1, _, _), next_x0 in zip(self._phase_labels, self._phases, starts):
            left = max(x0, lo + 0.05 * span / 1.1)
            label.setPos(left, 1.0)
            label.setVisible(min(x1, next_x0, hi) - left >= 0.06 * span)

    def _shade(self, strip: _Strip, visible: tuple[float, float]) -> None:
        lo, hi = strip.shown
        phases = self._phases
        phase_regions(strip.plot, strip.regions, len(phases))
        for region, (x0, x1, key, _) in zip(strip.regions, phases):
            colour = PHASE_COLOURS.get(_PHASE_KEYS.get(key, key), (120, 120, 120, 40))
            region.setBrush(QBrush(QColor(*colour)))
            a, b = max(x0, visible[0]), min(x1, visible[1])
            region.setVisible(b > a)
            region.setRect(QRectF(a, lo, max(b - a, 0.0), hi - lo))

    def _marker_lines(self, strip: _Strip, lo: float, hi: float) -> None:
        x = self._marker_x
        inside = np.flatnonzero((x >= lo) & (x <= hi)) if len(x) else np.empty(0, dtype=np.int64)
        paths: dict[str, QPainterPath] = {}
        y0, y1 = strip.shown
        for i in inside.tolist():
            path = paths.setdefault(self._marker_groups[i], QPainterPath())
            path.moveTo(x[i], y0)
            path.lineTo(x[i], y1)
        for group in set(strip.marker_lines) - set(paths):
            strip.marker_lines[group].setPath(QPainterPath())
        for group, path in paths.items():
            item = strip.marker_lines.get(group)
            if item is None:
                item = QGraphicsPathItem()
                item.setPen(_group_pen(group))
                item.setZValue(-5)
                strip.plot.addItem(item, ignoreBounds=True)
                strip.marker_lines[group] = item
            item.setPath(path)

    # ------------------------------------------------------------------ waveforms
    def _points(self, strip: _Strip) -> int:
        return max(16, int(round(strip.box.boundingRect().width())))

    def _fetch_waves(self) -> None:
        if not self.wave_strips:
            return
        x0, x1 = self.lane.box.viewRange()[0]
        start = self.origin + max(x0, 0.0)
        end = self.origin + min(x1, self.duration)
        self._generation += 1
        generation = self._generation
        if end <= start:
            self._pending = None
            for channel, strip in self.wave_strips.items():
                self._shown_generation[channel] = generation
                self._draw_wave(strip, None, "outside the session")
            return
        jobs = [(channel, start, end, self._points(strip)) for channel, strip in self.wave_strips.items()]
        if end - start <= SYNC_WAVE_SPAN_S:
            self._pending = None
            self._fetcher.cancel(generation)
            for channel, s, e, points in jobs:
                began = time.perf_counter()
                try:
                    piece = self.store.waveform(self.session_id, channel, _dt(s), _dt(e), max_points=points)
                except (StoreError, sqlite3.Error, ValueError) as exc:
                    log.warning("reading %s of session %s failed: %s", channel, self.session_id, exc)
                    self._shown_generation[channel] = generation
                    self._draw_wave(self.wave_strips[channel], None, "could not be read")
                    continue
                ms = (time.perf_counter() - began) * 1000
                self._log(_request(channel, s, e, points, piece, ms, False, generation))
                self._shown_generation[channel] = generation
                self._draw_wave(self.wave_strips[channel], piece)
        else:
            for strip in self.wave_strips.values():
                if strip.message is not None:
                    strip.message.setText("reading…")
                    self._place_messages()
            self._pending = (generation, jobs)
            self.graphics.viewport().update()
            QTimer.singleShot(100, self._dispatch)  # in case no paint comes (a hidden window)

    def _fetched(self, result: tuple[int, WaveRequest, WaveformSlice]) -> None:
        generation, request, piece = result
        if generation != self._generation:
            return  # the view moved on while it was read
        self._log(request)
        strip = self.wave_strips.get(request.channel)
        if strip is not None:
            self._shown_generation[request.channel] = generation
            self._draw_wave(strip, piece)

    def _log(self, request: WaveRequest) -> None:
        self.wave_log.append(request)
        del self.wave_log[:-64]

    @property
    def generation(self) -> int:
        """Counts the waveform requests made (one per redraw); :class:`WaveRequest` carries it."""
        return self._generation

    def waves_drawn(self) -> bool:
        """True when every waveform strip shows the current range (its read has come back)."""
        return all(self._shown_generation.get(c) == self._generation for c in self.wave_strips)

    def _draw_wave(self, strip: _Strip, piece: WaveformSlice | None, why: str = "") -> None:
        assert strip.curve is not None and strip.message is not None
        if piece is None or not len(piece.t) or not np.isfinite(piece.max).any():
            strip.curve.setData([], [])
            strip.message.setText(why or "no samples here")
            self._place_messages()
            return
        x = piece.t - self.origin
        if piece.decimated:
            xs = np.repeat(x, 2)
            ys = np.column_stack((piece.min, piece.max)).reshape(-1)
            strip.curve.setData(xs, ys, connect="finite", symbol=None)
        else:
            sparse = len(x) * 6 < self._points(strip)  # few samples: show each one
            strip.curve.setData(x, piece.min, connect="finite", symbol="o" if sparse else None, symbolSize=4,
                                symbolPen=None, symbolBrush=theme.colour(strip.key))
        strip.message.setText("" if piece.decimated else "samples")
        self._place_messages()
        finite_lo = piece.min[np.isfinite(piece.min)]
        finite_hi = piece.max[np.isfinite(piece.max)]
        lo, hi = float(np.percentile(finite_lo, 0.5)), float(np.percentile(finite_hi, 99.5))
        span = max(hi - lo, max(abs(lo), abs(hi), 1e-3) * 0.05)
        lo, hi = lo - 0.1 * span, hi + 0.1 * span
        shown_lo, shown_hi = strip.shown
        if lo < shown_lo or hi > shown_hi or (hi - lo) < 0.6 * (shown_hi - shown_lo):
            self._show_y(strip, lo, hi)
            lo_v, hi_v = self._visible()
            self._shade(strip, (lo_v, hi_v))
            self._marker_lines(strip, lo_v, hi_v)

    def wave_data(self, channel: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(x seconds from the start, y)`` handed to a waveform strip's curve (for tests)."""
        curve = self.wave_strips[channel].curve
        assert curve is not None
        return curve.getOriginalDataset()

    def wave_message(self, channel: str) -> str:
        """The note shown on a waveform strip ("reading…", "samples", "no samples here" …)."""
        message = self.wave_strips[channel].message
        return message.text() if message is not None else ""

    # ------------------------------------------------------------------ cursor
    def set_cursor(self, t: float) -> None:
        """Put the cursor at epoch second ``t`` (in every strip) and emit ``cursor_moved``."""
        self.cursor_t = t
        self._syncing_cursor(t - self.origin)
        self.cursor_moved.emit(t)

    def _syncing_cursor(self, x: float) -> None:
        for strip in self.main_strips:
            line = strip.cursor
            if line is not None and line.value() != x:
                line.blockSignals(True)
                line.setValue(x)
                line.blockSignals(False)

    def _cursor_dragged(self, line: pg.InfiniteLine) -> None:
        self.set_cursor(self.origin + float(line.value()))

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or event.double():
            return
        pos = event.scenePos()
        if self.overview.plot.sceneBoundingRect().contains(pos):
            x = self.overview.box.mapSceneToView(pos).x()
            if not self.region.sceneBoundingRect().contains(pos):
                self.centre_on(self.origin + x)
            return
        for strip in self.main_strips:
            if strip.box.sceneBoundingRect().contains(pos):
                self.set_cursor(self.origin + strip.box.mapSceneToView(pos).x())
                return

    # ------------------------------------------------------------------ lifetime
    def shutdown(self) -> None:
        """Stop the background reader without waiting for the read it may be doing (which ends on
        its own and is dropped; a read the store's closing cuts short is logged)."""
        self._debounce.stop()
        self._pending = None
        self._fetcher.stop()

    def marker_count(self) -> int:
        """Markers drawn in the lane."""
        return len(self._markers)

    def nibp_count(self) -> int:
        """NIBP readings drawn."""
        return self._nibp_points
