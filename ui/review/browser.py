"""The session browser: find a recorded session and open it for review.

Filters (patient name or record number, date range, protocol, status, had alarms, and the chair when
the store is the clinic record, which holds every chair's sessions) go straight to
:meth:`SessionStore.list_sessions`, which answers from the sessions table and its counters (no scan
of the data), and the list is a Qt model, so thousands of sessions stay quick. Typing in the patient
field searches after a short pause. Opening a session (double-click, Enter or "Open") shows a
:class:`~ui.review.window.ReviewWindow`; the session being recorded opens read-only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, time, timedelta, timezone
from functools import partial
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QDate, QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from monitor.export import ExportError
from monitor.protocols import ProtocolKind
from monitor.app.review import duration_text
from monitor.app.records import SESSION_STATUSES, SessionSummary
from monitor.errors import StoreError
from ui import theme
from ui.alarm_strip import AlarmStrip
from ui.context import UiContext
from ui.dialogs.base import describe_error, dialog_style
from ui.review.window import ReviewWindow, close_on_keys, live_session_id

log = logging.getLogger(__name__)

__all__ = ["SessionBrowser", "SessionListModel"]

#: Quiet time after typing before the list is searched again (ms).
SEARCH_DELAY_MS = 250
_Index = QModelIndex | QPersistentModelIndex


class SessionListModel(QAbstractTableModel):
    """Sessions as rows: id, started (local), patient, protocol, status, duration, observations, alarms,
    and, for the clinic record (``chairs=True``), the chair that recorded it. A session whose record
    failed verification in the clinic record says "flagged" in its status (the reason as tooltip)."""

    COLUMNS = ("ID", "Started", "Patient", "Protocol", "Status", "Duration", "Observations", "Alarms")

    def __init__(self, parent: Any = None, *, chairs: bool = False) -> None:
        super().__init__(parent)
        if chairs:
            self.COLUMNS = (*SessionListModel.COLUMNS, "Chair")
        self._rows: list[SessionSummary] = []
        self.live_id: int | None = None
        self.now = datetime.now(timezone.utc)

    def set_rows(self, rows: Sequence[SessionSummary], live_id: int | None) -> None:
        """Replace the list (newest first)."""
        self.beginResetModel()
        self._rows = list(rows)
        self.live_id = live_id
        self.now = datetime.now(timezone.utc)
        self.endResetModel()

    def session(self, row: int) -> SessionSummary:
        """The session on row ``row``."""
        return self._rows[row]

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.COLUMNS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        s = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return str(s.id)
            if column == 1:
                return s.started_at.astimezone().strftime("%Y-%m-%d %H:%M")
            if column == 2:
                return s.patient + (f" ({s.patient_ref})" if s.patient_ref else "")
            if column == 3:
                try:
                    return ProtocolKind(s.protocol).label
                except ValueError:
                    return s.protocol
            if column == 4:
                return ("recording" if s.id == self.live_id else s.status) + (" — flagged" if _flag(s) else "")
            if column == 5:
                end = s.ended_at or self.now
                return duration_text((end - s.started_at).total_seconds()) + ("" if s.ended_at else " so far")
            if column == 6:
                return f"{s.n_observations:,}"
            if column == 8:
                return getattr(s, "chair", "")
            return str(s.n_alarms)
        if role == Qt.ItemDataRole.ToolTipRole and column == 4 and _flag(s):
            return _flag(s)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (0, 5, 6, 7):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == 4 and (s.status == "open" or _flag(s)):
                return QBrush(QColor("#ffb000"))
            if column == 7 and s.n_alarms:
                return QBrush(QColor(theme.PRIORITY_COLOURS["MEDIUM"]))
        return None


def _flag(s: SessionSummary) -> str | None:
    """Why the clinic record does not trust this session's record as it is (None: nothing found)."""
    return getattr(s, "flag", None)


class SessionBrowser(QWidget):
    """List, search and open sessions (see the module docstring). ``opened(window)`` fires with
    each :class:`ReviewWindow` shown; :attr:`windows` keeps the open ones."""

    opened = Signal(object)

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.windows: dict[int, ReviewWindow] = {}
        self.setWindowTitle("Vigil — sessions")
        self.setFont(theme.font(10))
        self.setStyleSheet(theme.STYLE + dialog_style())

        self.patient = QLineEdit()
        self.patient.setPlaceholderText("Patient name or record number")
        self.patient.setClearButtonEnabled(True)
        self.use_dates = QCheckBox("From")
        today = QDate.currentDate()
        self.date_from = QDateEdit(today.addMonths(-1))
        self.date_to = QDateEdit(today)
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setEnabled(False)
        self.protocol = QComboBox()
        self.protocol.addItem("Any protocol", None)
        for kind in ProtocolKind:
            self.protocol.addItem(kind.label, kind.value)
        self.status = QComboBox()
        self.status.addItem("Any status", None)
        for status in SESSION_STATUSES:
            self.status.addItem(status, status)
        self.alarms = QComboBox()
        self.alarms.addItem("With or without alarms", None)
        self.alarms.addItem("Had alarms", True)
        self.alarms.addItem("No alarms", False)
        chairs = context.records.chairs()
        self.chair = QComboBox()  # the clinic record's chairs (a chair's own database has none)
        self.chair.addItem("Any chair", None)
        for name in chairs:
            self.chair.addItem(name, name)
        self.chair.setVisible(bool(chairs))
        self.open_button = QPushButton("Open")
        self.open_button.setObjectName("primary")
        self.open_button.setEnabled(False)
        self.refresh_button = QPushButton("Refresh")
        self.count = QLabel("")
        self.count.setObjectName("hint")
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.hide()

        self.model = SessionListModel(self, chairs=bool(chairs))
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + theme.px(10))
        header = self.table.horizontalHeader()
        header.setResizeContentsPrecision(200)   # the first rows are enough to size a column
        for column in range(self.model.columnCount()):   # every column as wide as its texts …
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)  # … but the patient's, which takes the rest

        filters = QHBoxLayout()
        filters.addWidget(self.patient, 2)
        filters.addWidget(self.use_dates)
        filters.addWidget(self.date_from)
        filters.addWidget(QLabel("to"))
        filters.addWidget(self.date_to)
        filters.addWidget(self.protocol)
        filters.addWidget(self.status)
        filters.addWidget(self.alarms)
        filters.addWidget(self.chair)
        buttons = QHBoxLayout()
        buttons.addWidget(self.count, 1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.setSpacing(8)
        #: The monitoring window's alarms, when this Vigil monitors (None for ``vigil review``).
        self.alarm_strip = AlarmStrip.for_context(context)
        if self.alarm_strip is not None:
            layout.addWidget(self.alarm_strip)
        layout.addLayout(filters)
        layout.addWidget(self.error)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.search)
        self.patient.textChanged.connect(lambda _="": self._search_timer.start())
        self.use_dates.toggled.connect(self._dates_toggled)
        for edit in (self.date_from, self.date_to):
            edit.dateChanged.connect(lambda _=None: self.search())
        for box in (self.protocol, self.status, self.alarms, self.chair):
            box.currentIndexChanged.connect(lambda _=0: self.search())
        self.refresh_button.clicked.connect(self.search)
        self.open_button.clicked.connect(self.open_selected)
        self.table.doubleClicked.connect(lambda index: self.open_row(index.row()))
        self.table.activated.connect(lambda index: self.open_row(index.row()))
        self.table.selectionModel().selectionChanged.connect(
            lambda *_: self.open_button.setEnabled(self.table.selectionModel().hasSelection()))
        self.resize(theme.px(1200), theme.px(640))
        close_on_keys(self)   # Esc, Ctrl+W: back to the monitoring window
        self.search()

    # ------------------------------------------------------------------ searching
    def _dates_toggled(self, on: bool) -> None:
        self.date_from.setEnabled(on)
        self.date_to.setEnabled(on)
        self.search()

    def filters(self) -> dict[str, Any]:
        """The filters as :meth:`SessionStore.list_sessions` takes them (dates: local days, the
        "to" day included)."""
        out: dict[str, Any] = {}
        text = self.patient.text().strip()
        if text:
            out["patient"] = text
        if self.use_dates.isChecked():
            since = datetime.combine(self.date_from.date().toPython(), time.min).astimezone()
            until = datetime.combine(self.date_to.date().toPython() + timedelta(days=1), time.min).astimezone()
            out["since"], out["until"] = since, until
        for key, box in (("protocol", self.protocol), ("status", self.status), ("had_alarms", self.alarms),
                         ("chair", self.chair)):
            if box.currentData() is not None:
                out[key] = box.currentData()
        return out

    def search(self) -> list[SessionSummary]:
        """Run the filters now and show the result."""
        self._search_timer.stop()
        try:
            rows = self.context.records.list_sessions(**self.filters())
        except (StoreError, ValueError) as exc:
            self.error.setText(describe_error(exc))
            self.error.show()
            return []
        self.error.hide()
        self.model.set_rows(rows, live_session_id(self.context))
        self.count.setText(f"{len(rows)} session{'s' if len(rows) != 1 else ''}")
        self.open_button.setEnabled(False)
        return rows

    def session_ids(self) -> list[int]:
        """Ids of the sessions listed, in order."""
        return [self.model.session(i).id for i in range(self.model.rowCount())]

    # ------------------------------------------------------------------ opening
    def open_selected(self) -> ReviewWindow | None:
        """Open the selected session."""
        rows = self.table.selectionModel().selectedRows()
        return self.open_row(rows[0].row()) if rows else None

    def open_row(self, row: int) -> ReviewWindow | None:
        """Open the session on row ``row`` of the list."""
        return self.open_session(self.model.session(row).id)

    def open_session(self, session_id: int) -> ReviewWindow | None:
        """Show session ``session_id`` in a review window (an already open one is raised)."""
        window = self.windows.get(session_id)
        if window is not None:
            window.raise_()
            window.activateWindow()
            return window
        try:
            window = ReviewWindow(self.context, session_id)
        except (StoreError, ExportError, ValueError, LookupError) as exc:
            self.error.setText(f"Session {session_id} cannot be opened: {describe_error(exc)}")
            self.error.show()
            return None
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        window.closed_window.connect(self._window_closed)
        window.failed.connect(partial(self._open_failed, session_id))
        self.windows[session_id] = window
        window.show()
        self.opened.emit(window)
        return window

    def _window_closed(self, session_id: int) -> None:
        self.windows.pop(session_id, None)

    def _open_failed(self, session_id: int, text: str) -> None:
        """Review window ``session_id`` could not read its session (it reads once shown): say so
        here and close it."""
        log.warning("%s", text)
        self.error.setText(text)
        self.error.show()
        window = self.windows.get(session_id)
        if window is not None:
            window.close()

    def closeEvent(self, event) -> None:  # noqa: N802
        for window in list(self.windows.values()):
            window.close()
        super().closeEvent(event)
