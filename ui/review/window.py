"""The review window: one recorded session, after the fact (or the live one, read-only).

Left, the plots (:class:`~ui.review.plots.ReviewPlots`): the whole session's trends, waveforms read
for the visible range, markers, phases, a cursor and an overview. Right, the cursor read-out, then
the record (a table of events, assessments, dosing, notes and alarms in step with the plot) and the
summary. The toolbar zooms, adds a late entry to a closed session, exports, and refreshes an open
one.

Opening never holds the window's thread (the monitoring window this one opens from keeps its frames
and alarms): a thread (:class:`~monitor.app.review.ReviewLoader`) reads the record once
(:func:`monitor.app.readmodel.load_session`: markers, table, summary), then the NIBP readings and a
min/max envelope of each trend (the first frame), then every vital in full (the cursor, the summary,
zooming in), while the window makes its strips, fills its table and draws a piece per event-loop
turn (:attr:`ReviewWindow.ready` when done; :meth:`ReviewWindow.finish_opening` does the rest at
once). Waveforms are read only ever for the visible range.
"""

from __future__ import annotations

import ctypes
import gc
import html
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMenu,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStyle,
    QTableView,
    QTabWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from monitor.export import FORMATS, ExportError
from monitor.app.stats import NIBP_KEYS
from monitor.app.readmodel import SessionView
from monitor.protocols import ProtocolKind
from monitor.app.review import (
    REVIEW_VITALS,
    TREND_VITALS,
    ReviewLoader,
    Series,
    TimelineRow,
    duration_text,
    load_numerics,
    reading_before,
    summarize,
    timeline_rows,
    value_at,
)
from monitor.errors import StoreError
from ui import theme
from ui.alarm_strip import AlarmStrip
from ui.context import UiContext
from ui.dialogs.base import describe_error, dialog_style, run_modal
from ui.dialogs.files import ExportFileDialog
from ui.review.dialogs import LateEntryDialog
from ui.review.exporting import ExportJob
from ui.review.panels import CursorPanel, SummaryPanel
from ui.review.plots import ReviewPlots
from ui.review.table import ROW_ROLE, CategoryFilter, TimelineModel

log = logging.getLogger(__name__)

__all__ = ["ReviewWindow", "close_on_keys", "live_session_id"]

#: Bins of the min/max envelopes the first frame draws the trends from (about two per pixel).
ENVELOPE_BINS = 2000
#: How often an open session refreshes itself when auto-refresh is on (ms).
AUTO_REFRESH_MS = 10_000
#: The longest the vitals in full wait for the first view's waveforms to be drawn (s).
WAVES_FIRST_S = 3.0
_FILTERS = (("All", None), ("Alarms", "alarm"), ("Events", "event"), ("Assessments", "assessment"),
            ("Dosing", "infusion"), ("Notes", "note"), ("Late / amended", "marked"))
_STYLE = f"""
QToolBar {{ background: {theme.PANEL}; border-bottom: 1px solid {theme.PANEL_EDGE}; spacing: 4px; padding: 2px; }}
QToolButton {{ background: #1f2830; color: {theme.TEXT}; border: 1px solid #3a4650; border-radius: 4px;
    padding: 4px 10px; }}
QToolButton:hover {{ background: #2a3640; }}
QToolButton:disabled {{ color: #56606a; border-color: #2a3138; }}
QTableView {{ background: #11161b; alternate-background-color: #151b21; gridline-color: #222a31;
    selection-background-color: #2f6fb0; }}
QHeaderView::section {{ background: #1f2830; color: {theme.TEXT}; padding: 3px 6px; border: 0; }}
QTabWidget::pane {{ border: 1px solid {theme.PANEL_EDGE}; }}
QTabBar::tab {{ background: #1f2830; color: {theme.TEXT}; padding: 5px 14px; }}
QTabBar::tab:selected {{ background: #34424e; }}
QTextBrowser {{ background: #11161b; border: 0; }}
QStatusBar {{ color: {theme.TEXT_DIM}; }}
QLabel#error {{ color: #ff6a6a; font-weight: bold; }}
QFrame#panel QLabel {{ background: transparent; }}
QLabel#banner {{ color: #000000; background: #ffb000; border-radius: 3px; padding: 2px 8px; font-weight: bold; }}
"""


def close_on_keys(window: QWidget) -> None:
    """Esc and Ctrl+W (and the platform's own "close" key, where it is another) close ``window``."""
    keys = [QKeySequence(Qt.Key.Key_Escape), QKeySequence("Ctrl+W")]
    keys += [k for k in QKeySequence.keyBindings(QKeySequence.StandardKey.Close) if k not in keys]
    for key in keys:
        QShortcut(key, window, activated=window.close)


def _return_freed_memory() -> None:
    """After a review window is gone: collect it and hand the C heap's free memory back to the system
    (glibc keeps what a 24-hour session's arrays and their temporaries used, so RSS would otherwise
    grow by tens of MB with each window opened and closed; elsewhere nothing to do)."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def live_session_id(context: UiContext) -> int | None:
    """The id of the session being recorded now, or None."""
    return context.service.session_id if context.service is not None else None


class ReviewWindow(QMainWindow):
    """Review of session ``session_id`` of ``context.records`` (see the module docstring).

    A session that is still open (the live one, or one a crash left open) is read-only here and
    can be refreshed; a closed one can take late entries. ``closed_window(session_id)`` fires when
    the window closes.
    """

    closed_window = Signal(int)
    #: Opening is done (:attr:`ready`).
    opened = Signal()
    #: Opening failed: the message (also shown in the window).
    failed = Signal(str)

    def __init__(self, context: UiContext, session_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.records = context.records
        self.session_id = session_id
        self.record = self.records.get_session(session_id)
        start = self.record.started_at.timestamp()
        end = max((self.record.ended_at or self.records.last_data_time(session_id) or self.record.started_at).timestamp(),
                  start + 1.0)
        # Everything the window shows is read on a thread (the record and its table rows, the NIBP
        # readings and a min/max envelope of each continuous trend: what the first frame draws; then
        # every vital in full: what the cursor, the summary and zooming in use), while the widgets
        # are made a piece per event-loop turn (:meth:`_opening`): the monitoring window this one
        # opens from keeps its frames and alarms meanwhile.
        self._loader: ReviewLoader | None = ReviewLoader(
            self.records, session_id, REVIEW_VITALS, record=self._read_record,
            envelopes=[v for v in TREND_VITALS if v not in NIBP_KEYS], span=(start, end), bins=ENVELOPE_BINS,
            hold=True)
        #: The session as the read model gives it (set once opened: see :attr:`ready`).
        self.view: SessionView
        self.rows: list[TimelineRow] = []
        self.numerics: dict[str, Series] = {}
        self._from_table = False
        self._ready_at = 0.0
        self.setWindowTitle(self._title())
        self.setFont(theme.font(9))
        self.setStyleSheet(theme.STYLE + dialog_style() + _STYLE)

        self.plots = ReviewPlots(self.records, session_id, start, end, self.records.waveform_channels(session_id))
        self.cursor_panel = CursorPanel([])
        self.summary_panel = SummaryPanel()
        self.model = TimelineModel()
        self.filter = CategoryFilter(self)
        self.filter.setSourceModel(self.model)
        self.table = self._table()
        self.filter_box = QComboBox()
        for label, key in _FILTERS:
            self.filter_box.addItem(label, key)
        self.filter_box.currentIndexChanged.connect(
            lambda _=0: self.filter.set_category(self.filter_box.currentData()))
        self.header = QLabel(f"Opening session {session_id}: {html.escape(self.record.patient_name)}…")
        self.header.setFont(theme.font(9.5))
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner = QLabel()
        self.banner.setObjectName("banner")
        self.banner.hide()
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        #: The monitoring window's alarms, when this Vigil monitors (None for ``vigil review``).
        self.alarm_strip = AlarmStrip.for_context(context)
        if self.alarm_strip is not None:
            self.setMenuWidget(self.alarm_strip)  # above the tool bar, as the alarm area tops the monitoring window
        self._build_toolbar()
        self._build_layout()
        for action in (self.fit_action, self.zoom_in_action, self.zoom_out_action, self.refresh_action):
            action.setEnabled(False)
        self.export_button.setEnabled(False)

        self.auto_timer = QTimer(self)
        self.auto_timer.setInterval(AUTO_REFRESH_MS)
        self.auto_timer.timeout.connect(self.refresh)
        self._apply_state()
        self._load_timer = QTimer(self)
        self._load_timer.setInterval(50)
        self._load_timer.timeout.connect(self._collect_vitals)
        #: The steps of opening still to run (None once :attr:`ready`).
        self._steps: Iterator[int] | None = self._opening(start)
        self._step_timer = QTimer(self)
        self._step_timer.setSingleShot(True)
        self._step_timer.timeout.connect(self._step)
        self._step_timer.start(0)
        screen = QGuiApplication.primaryScreen()
        if screen is not None:
            area = screen.availableGeometry()
            self.resize(min(theme.px(1340), area.width()), min(theme.px(700), area.height()))
        close_on_keys(self)   # Esc, Ctrl+W: back to the browser

    # ------------------------------------------------------------------ opening
    @property
    def ready(self) -> bool:
        """True once the record, the markers, the table and the trends are shown (the other vitals
        may still be read: :attr:`loading`)."""
        return self._steps is None

    def _read_record(self) -> tuple[SessionView, list[TimelineRow]]:
        """The read model and the table rows (on the loader's thread when opening)."""
        view = self.records.session_view(self.session_id)
        return view, timeline_rows(view, self.records.entries(self.session_id))

    def _opening(self, start: float) -> Iterator[int]:
        """Open the window a piece at a time; each ``yield`` gives back the event loop for the
        milliseconds it says (0: the next turn; more: waiting for the loader's thread)."""
        yield 0
        self.right_column.show()
        yield 0
        for _ in self.plots.build_steps():   # a strip per turn
            yield 0
        loader = self._loader
        assert loader is not None
        while not loader.has("record"):
            yield 10
        self.view, self.rows = loader.record()
        self.plots.set_extent(self.view.end.timestamp())
        self._show_markers()
        yield 0
        self._show_table()
        yield 0
        waits = [("series", v) for v in TREND_VITALS if v in NIBP_KEYS] + [("envelope", v) for v in loader.envelopes]
        while not all(loader.has(kind, vital) for kind, vital in waits):
            yield 10
        self.numerics = {v: loader.get(v) for v in TREND_VITALS if v in NIBP_KEYS}
        envelopes = {v: loader.envelope(v) for v in loader.envelopes}
        self.plots.set_numerics(self.numerics, envelopes)
        drawn = {v for v, e in envelopes.items() if np.isfinite(e.hi).any()}
        self.cursor_panel.set_vitals([v for v in TREND_VITALS if v in drawn] + self._present_vitals())
        self.plots.set_cursor(start)
        yield 0
        self._show_summary()
        for action in (self.fit_action, self.zoom_in_action, self.zoom_out_action, self.refresh_action):
            action.setEnabled(True)
        for fmt, action in self.export_actions.items():
            action.setEnabled(not FORMATS[fmt].esketamine_only or self.view.protocol is ProtocolKind.ESKETAMINE)
        self.export_button.setEnabled(self.export_job is None)
        self._show_header()
        self.plots.cursor_moved.connect(self._cursor_moved)
        self.plots.range_changed.connect(self._range_changed)
        self.table.clicked.connect(self._row_clicked)
        self._ready_at = time.monotonic()
        self._load_timer.start()   # the vitals in full once the first waveforms are drawn (_collect_vitals)

    def _advance(self) -> int | None:
        """Run the next piece of opening; the milliseconds to wait before the next one, or None when
        opening is over (done, or failed: the error is shown)."""
        assert self._steps is not None
        try:
            return next(self._steps)
        except StopIteration:
            self._steps = None
            self.opened.emit()
        except (StoreError, ExportError, ValueError, LookupError, TimeoutError) as exc:
            self._open_failed(exc)
        return None

    def _step(self) -> None:
        if self._steps is not None:
            delay = self._advance()
            if delay is not None:
                self._step_timer.start(delay)

    def _open_failed(self, exc: Exception) -> None:
        self._steps = None
        self._step_timer.stop()
        text = f"Session {self.session_id} cannot be opened: {describe_error(exc)}"
        self.header.setText(html.escape(text))
        self.show_error(text)
        self.failed.emit(text)

    def finish_opening(self, timeout: float = 30.0) -> None:
        """Run what is left of opening now, waiting for the reads it needs (tests, benchmarks, and an
        action that needs the whole window). A session that cannot be read, or is still being read
        after ``timeout`` seconds, leaves the window not ready, with the error shown."""
        self._step_timer.stop()
        deadline = time.monotonic() + timeout
        while self._steps is not None:
            delay = self._advance()
            if delay and self._steps is not None and self._loader is not None:
                if time.monotonic() > deadline:
                    self._open_failed(TimeoutError(f"still being read after {timeout:g} s"))
                    return
                self._loader.join(delay / 1000)   # returns early once everything is read

    # ------------------------------------------------------------------ building
    def _title(self) -> str:
        state = "live, read-only" if self.is_live else self.record.status
        return f"Vigil — review of session {self.session_id}: {self.record.patient_name} ({state})"

    def _table(self) -> QTableView:
        table = QTableView()
        table.setModel(self.filter)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.verticalHeader().hide()
        table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + theme.px(6))
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header = table.horizontalHeader()
        header.setStretchLastSection(False)
        header.setResizeContentsPrecision(200)   # the first rows are enough to size a column
        # Every column as wide as its texts (measured once per set of rows, :meth:`_fit_columns`:
        # a column left to size itself to its contents is measured again at every layout, 0.3–0.5 s
        # for a 12-hour record), but "What", which takes the rest.
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        return table

    def _fit_columns(self) -> None:
        """Size the columns but "What" to their widest text (the header's or any row's), measured
        with the font (asking the view to size a column to its contents asks the style for every
        cell: 80 ms for four columns of a few hundred rows)."""
        metrics = self.table.fontMetrics()
        header = self.table.horizontalHeader()
        margin = 2 * (self.table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, self.table) + 1)
        for column in range(len(TimelineModel.COLUMNS)):
            if column == 2:
                continue
            widest = max((metrics.horizontalAdvance(text) for text in self.model.column_texts(column)), default=0)
            header.resizeSection(column, max(widest + margin + theme.px(6),
                                             header.sectionSizeFromContents(column).width()))

    def _build_toolbar(self) -> None:
        bar = QToolBar("Review")
        bar.setMovable(False)
        self.addToolBar(bar)
        self.fit_action = QAction("Whole session", self)
        self.fit_action.setShortcut(QKeySequence("Ctrl+0"))
        self.fit_action.triggered.connect(self.plots.fit_all)
        self.zoom_in_action = QAction("Zoom in", self)
        self.zoom_in_action.setShortcut(QKeySequence.StandardKey.ZoomIn)
        self.zoom_in_action.triggered.connect(lambda: self.plots.zoom(2.0))
        self.zoom_out_action = QAction("Zoom out", self)
        self.zoom_out_action.setShortcut(QKeySequence.StandardKey.ZoomOut)
        self.zoom_out_action.triggered.connect(lambda: self.plots.zoom(0.5))
        for action in (self.fit_action, self.zoom_in_action, self.zoom_out_action):
            bar.addAction(action)
        bar.addSeparator()
        self.refresh_action = QAction("Refresh", self)
        self.refresh_action.setShortcut(QKeySequence.StandardKey.Refresh)
        self.refresh_action.triggered.connect(self.refresh)
        bar.addAction(self.refresh_action)
        self.auto_refresh = QCheckBox("Auto")
        self.auto_refresh.setToolTip(f"Refresh every {AUTO_REFRESH_MS // 1000} s while the session is open")
        self.auto_refresh.toggled.connect(self._auto_toggled)
        self.auto_action = bar.addWidget(self.auto_refresh)
        bar.addSeparator()
        self.late_action = QAction("Add late entry…", self)
        self.late_action.triggered.connect(self.add_late_entry)
        bar.addAction(self.late_action)
        bar.addSeparator()
        self.export_menu = QMenu("Export", self)
        self.export_actions: dict[str, QAction] = {}
        for fmt, row in FORMATS.items():
            action = self.export_menu.addAction(row.label + "…")
            action.triggered.connect(lambda _=False, f=fmt: self.export(f))
            self.export_actions[fmt] = action
        self.export_button = QToolButton()
        self.export_button.setText("Export…")
        self.export_button.setMenu(self.export_menu)
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        bar.addWidget(self.export_button)
        self.deidentify = QCheckBox("De-identify")
        self.deidentify.setToolTip("HIPAA Safe Harbor: no names, record numbers, dates (year only), free text")
        bar.addWidget(self.deidentify)
        #: The export running on its worker thread, if any (one at a time).
        self.export_job: ExportJob | None = None
        self.export_progress = QProgressBar()
        self.export_progress.setRange(0, 100)
        self.export_progress.setMaximumWidth(220)
        self.export_cancel = QPushButton("Cancel export")
        self.export_cancel.clicked.connect(self.cancel_export)
        for widget in (self.export_progress, self.export_cancel):
            self.statusBar().addPermanentWidget(widget)
            widget.hide()

    def _build_layout(self) -> None:
        right = QWidget()
        column = QVBoxLayout(right)
        column.setContentsMargins(4, 0, 4, 0)
        column.setSpacing(4)
        column.addWidget(self.cursor_panel)
        tabs = QTabWidget()
        record = QWidget()
        record_layout = QVBoxLayout(record)
        record_layout.setContentsMargins(2, 4, 2, 2)
        record_layout.setSpacing(4)
        filter_row = QHBoxLayout()
        filter_row.addWidget(QLabel("Show"))
        filter_row.addWidget(self.filter_box, 1)
        record_layout.addLayout(filter_row)
        record_layout.addWidget(self.table, 1)
        tabs.addTab(record, "Record")
        tabs.addTab(self.summary_panel, "Summary")
        self.tabs = tabs
        column.addWidget(tabs, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.plots)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setSizes([theme.px(880), theme.px(486)])
        splitter.setChildrenCollapsible(False)
        right.setMinimumWidth(theme.px(420))
        self.splitter = splitter
        # shown on the first turn of opening: the window's first frame and this column's (a table,
        # tabs, a read-out: the slowest widgets to paint the first time) are then two frames
        self.right_column = right
        right.hide()
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(4, 4, 4, 2)
        outer.setSpacing(4)
        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.banner)
        outer.addLayout(top)
        outer.addWidget(self.error)
        outer.addWidget(splitter, 1)
        self.setCentralWidget(central)

    # ------------------------------------------------------------------ state
    @property
    def is_live(self) -> bool:
        """True when this is the session being recorded now."""
        return live_session_id(self.context) == self.session_id

    @property
    def read_only(self) -> bool:
        """True while the session is open (charting happens in the monitoring window)."""
        return self.record.is_open

    def _apply_state(self) -> None:
        self.setWindowTitle(self._title())
        open_ = self.record.is_open
        self.refresh_action.setVisible(open_)
        self.auto_action.setVisible(open_)
        self.late_action.setVisible(not open_)
        readonly = self.records.readonly
        self.late_action.setEnabled(not readonly)
        self.late_action.setToolTip("The database is open read-only here (another Vigil is recording into it): "
                                    "add late entries from that Vigil" if readonly
                                    else "Chart a note or event after the fact, with the reason")
        if open_:
            self.banner.setText("LIVE — read-only" if self.is_live else "OPEN — read-only")
            if self.is_live and not self.auto_refresh.isChecked():
                self.auto_refresh.setChecked(True)
        else:
            self.banner.setText("")
            self.auto_refresh.setChecked(False)
        self.banner.setVisible(bool(self.banner.text()))

    def _show_header(self) -> None:
        v = self.view
        start = v.start.astimezone()
        end = v.end.astimezone()
        who = v.patient.display + (f" (MRN {v.patient.mrn})" if v.patient.mrn else "")
        signed = (f" · signed by {v.signature.name} at {v.signature.t.astimezone().strftime('%H:%M')}: "
                  f"{v.signature.meaning}") if v.signature is not None else ""
        self.header.setText(f"<b>{who}</b> · {v.protocol_label} · {start.strftime('%Y-%m-%d %H:%M')}–"
                            f"{end.strftime('%H:%M')} ({duration_text((v.end - v.start).total_seconds())}) · "
                            f"{self.record.status}{signed}" + (f"<br><i>{html.escape(v.imported)}</i>" if v.imported else ""))

    def _present_vitals(self) -> list[str]:
        return [k for k, s in self.numerics.items() if len(s.t)]

    def _show_markers(self) -> None:
        """The phases of :attr:`view` and the markers of :attr:`rows` in the plots."""
        self.plots.set_phases(self.view.phases)
        self.plots.set_markers(self.rows)

    def _show_table(self) -> None:
        """The table of :attr:`rows`, its columns sized, the rows of the visible range highlighted."""
        self.model.set_rows(self.rows)
        self._fit_columns()
        self.model.set_visible(*self.plots.x_range())

    def _show_record(self) -> None:
        """Markers, phases, table and summary from :attr:`view` and :attr:`rows` (after a refresh or
        a late entry; opening shows them a piece per turn)."""
        self._show_markers()
        self._show_table()
        self._show_summary()

    def _show_summary(self) -> None:
        self.summary_panel.show_summary(summarize(self.view, self.numerics), pending=self.loading)

    @property
    def loading(self) -> bool:
        """True while vitals beyond the trends are still being read."""
        return self._loader is not None

    def _collect_vitals(self) -> None:
        """Take the vitals the loader has read (the trend vitals came first, before the first
        frame); when all are in, update the cursor read-out and the summary. The loader reads them
        once the first view's waveforms are drawn (or after :data:`WAVES_FIRST_S`): the two reads
        at once took the interpreter lock from the window's thread, 100–120 ms still frames."""
        if self._loader is None:
            return
        if self.plots.waves_drawn() or time.monotonic() - self._ready_at > WAVES_FIRST_S:
            self._loader.go()
        if not self._loader.done():
            return
        self._load_timer.stop()
        self.numerics.update(self._loader.ready())
        self._loader = None
        self.plots.set_numerics(self.numerics)
        self.cursor_panel.set_vitals(self._present_vitals())
        self._cursor_moved(self.plots.cursor_t)
        self._show_summary()

    def load_all_vitals(self, timeout: float = 30.0) -> None:
        """Finish opening, wait for every vital to be read and show them (tests and benchmarks)."""
        self.finish_opening(timeout)
        if self._loader is not None and self.ready:
            self._loader.go()
            self._loader.join(timeout)
            self._collect_vitals()

    # ------------------------------------------------------------------ cursor and table
    def _cursor_moved(self, t: float) -> None:
        readings = {k: value_at(s, t) for k, s in self.numerics.items() if not k.startswith("nibp_")}
        nibp = None
        sys_ = self.numerics.get("nibp_sys")
        if sys_ is not None:
            reading = reading_before(sys_, t)
            if reading is not None:
                dia, mean = (value_at(self.numerics[k], reading.t, within=1.0) if k in self.numerics else None
                             for k in ("nibp_dia", "nibp_mean"))
                nibp = (reading, dia, mean)
        self.cursor_readings = readings
        self.cursor_panel.show_readings(t, self.plots.origin, readings, nibp)

    def _range_changed(self, start: float, end: float) -> None:
        first, last = self.model.set_visible(start, end)
        if self._from_table:
            self._from_table = False
            return
        if last > first:
            index = self.filter.mapFromSource(self.model.index(first, 0))
            if index.isValid():
                self.table.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtTop)

    def _row_clicked(self, index: QModelIndex) -> None:
        row = index.data(ROW_ROLE)
        if row is not None:
            self.show_row(row)

    def show_row(self, row) -> None:
        """Centre the plots on a table row's time (keeping the span) and put the cursor there."""
        self._from_table = True
        self.plots.centre_on(row.epoch)
        self.plots.set_cursor(row.epoch)

    # ------------------------------------------------------------------ actions
    def refresh(self) -> None:
        """Read what the open session recorded since the last read (numerics appended, record,
        markers, table and summary re-read) and redraw."""
        self.load_all_vitals()
        if not self.ready:
            return
        try:
            self.record = self.records.get_session(self.session_id)
            self.view, self.rows = self._read_record()
            for vital, series in list(self.numerics.items()):
                last = float(series.t[-1]) if len(series.t) else None
                self.numerics[vital] = series.extended(load_numerics(self.records, self.session_id, vital, last))
        except (StoreError, ExportError) as exc:
            self.show_error(f"Refresh failed: {describe_error(exc)}")
            return
        self.plots.set_extent(self.view.end.timestamp())
        self.plots.set_numerics(self.numerics)
        self._show_record()
        self.cursor_panel.set_vitals(self._present_vitals())
        self._cursor_moved(self.plots.cursor_t)
        self._apply_state()
        self._show_header()
        self.plots.redraw()
        self.statusBar().showMessage(f"Refreshed at {datetime.now().strftime('%H:%M:%S')}", 5000)

    def _auto_toggled(self, on: bool) -> None:
        if on and self.record.is_open:
            self.auto_timer.start()
        else:
            self.auto_timer.stop()

    def add_late_entry(self) -> int | None:
        """Ask for a late entry (closed sessions) and show it; return its id, or None if cancelled."""
        self.finish_opening()
        if not self.ready:
            return None
        if self.record.is_open:
            self.show_error("This session is still open: chart it from the monitoring window")
            return None
        at = datetime.fromtimestamp(self.plots.cursor_t, timezone.utc)
        dialog = LateEntryDialog(self.context, self.session_id, self.view.start, self.view.end,
                                 min(max(at, self.view.start), self.view.end), self)
        run_modal(dialog)
        if dialog.entry_id is None:
            return None
        self.view, self.rows = self._read_record()
        self._show_record()
        self.show_error("")
        self.statusBar().showMessage("Late entry added to the record", 8000)
        return dialog.entry_id

    def export(self, fmt: str, path: str | Path | None = None, deidentify: bool | None = None, *,
               overwrite: bool = False) -> ExportJob | None:
        """Export the session as ``fmt`` to ``path`` (None: ask with a file dialog, which asks before
        replacing an existing file) on a worker thread, with its progress and a Cancel button in the
        status bar; ``deidentify`` None takes the toolbar's check box; ``overwrite``: replace an
        existing ``path``. Returns the running :class:`ExportJob` (its ``ended`` signal tells the
        outcome, which the window shows), or None when cancelled at the file dialog or while another
        export runs."""
        if self.export_job is not None:
            self.show_error("An export is running: wait for it or cancel it first")
            return None
        self.finish_opening()
        if not self.ready:
            return None
        deid = self.deidentify.isChecked() if deidentify is None else deidentify
        if path is None:
            suffix = FORMATS[fmt].suffix if fmt in FORMATS else ""
            default = Path.home() / f"vigil-session-{self.session_id}{'-deid' if deid else ''}-{fmt}{suffix}"
            # While Vigil monitors, its own file dialog: F1/F2 and the placement below the alarm
            # area cannot reach a native one.
            dialog = ExportFileDialog(self, f"Export session {self.session_id} ({fmt})", str(default),
                                      native=self.alarm_strip is None)
            run_modal(dialog)
            chosen = dialog.chosen()
            if not chosen:
                return None
            path, overwrite = chosen, True   # the file dialog asked before choosing an existing file
        job = ExportJob(self.records, self.session_id, fmt, path, deidentify=deid, overwrite=overwrite, parent=self)
        job.progressed.connect(lambda fraction: self.export_progress.setValue(round(fraction * 100)))
        job.ended.connect(lambda: self._export_ended(job))
        self.export_job = job
        self.export_button.setEnabled(False)
        self.export_progress.setValue(0)
        self.export_progress.setFormat(f"{fmt.upper()} %p%")
        self.export_progress.show()
        self.export_cancel.show()
        self.statusBar().showMessage(f"Exporting {fmt.upper()}…")
        job.start()
        return job

    def cancel_export(self) -> None:
        """Stop the running export (no file is left)."""
        if self.export_job is not None:
            self.export_job.cancel()

    def _export_ended(self, job: ExportJob) -> None:
        self.export_job = None
        self.export_button.setEnabled(True)
        self.export_progress.hide()
        self.export_cancel.hide()
        if job.result is not None:
            self.show_error("")
            self.statusBar().showMessage(f"Exported {job.fmt.upper()} to {job.result}", 10000)
        elif job.cancelled:
            self.statusBar().showMessage(f"{job.fmt.upper()} export cancelled: no file was written", 10000)
        else:
            self.statusBar().clearMessage()
            self.show_error(f"Export failed: {describe_error(job.error)}" if job.error else "Export failed")

    def show_error(self, text: str) -> None:
        """Show ``text`` in the window's error line (empty hides it)."""
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.export_job is not None:  # closing the window abandons its export
            self.export_job.cancel()
            self.export_job.wait(10.0)
        self.auto_timer.stop()
        self._load_timer.stop()
        self._step_timer.stop()
        self._steps = None
        if self._loader is not None:   # reads nothing more; the read it is doing ends on its own
            self._loader.cancel()
        self.plots.shutdown()
        self.closed_window.emit(self.session_id)
        self.destroyed.connect(lambda: QTimer.singleShot(0, _return_freed_memory))
        super().closeEvent(event)
