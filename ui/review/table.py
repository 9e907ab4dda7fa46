"""The review's table of events, assessments, infusion steps, notes and alarms, in time order.

A Qt model over the :class:`~monitor.app.review.TimelineRow` list (cheap with thousands of rows: only
the visible cells are ever asked for), a filter by category, and the rows inside the plot's
visible time range highlighted.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor

from monitor.app.review import TimelineRow
from ui import theme

__all__ = ["TimelineModel", "CategoryFilter", "CATEGORY_LABELS", "ROW_ROLE"]

#: Category → the word shown in the table.
CATEGORY_LABELS = {"event": "Event", "assessment": "Assessment", "infusion": "Dosing", "alarm": "Alarm",
                   "note": "Note"}
#: The role under which every cell gives its :class:`TimelineRow`.
ROW_ROLE = Qt.ItemDataRole.UserRole + 1
_VISIBLE = QBrush(QColor("#1b2a38"))
_MARK_COLOUR = QColor("#ffb000")
_Index = QModelIndex | QPersistentModelIndex
_ROLES = frozenset({Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole,
                    Qt.ItemDataRole.ToolTipRole, ROW_ROLE})


class TimelineModel(QAbstractTableModel):
    """Columns: time (local), kind, what, by (for an alarm: who acknowledged it), mark (late,
    amendment, entered in error, correction; with the reason in the tooltip)."""

    COLUMNS = ("Time", "Kind", "What", "By / ack.", "Mark")

    def __init__(self, rows: Sequence[TimelineRow] = (), parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[TimelineRow] = []
        self._epochs: list[float] = []
        self._cells: list[tuple[str, ...] | None] = []
        self._colours: list[tuple[QBrush | None, ...] | None] = []
        self._visible = (0, 0)
        self.set_rows(rows)

    # ------------------------------------------------------------------ content
    def set_rows(self, rows: Sequence[TimelineRow]) -> None:
        """Replace the rows (already in time order)."""
        self.beginResetModel()
        self._rows = list(rows)
        self._epochs = [r.epoch for r in self._rows]
        # A table repaints on every pan (its highlight follows the plot): a row's cells are worked
        # out the first time one is shown and kept, so that painting one is a lookup (and setting
        # thousands of rows costs nothing for the rows never shown).
        self._cells = [None] * len(self._rows)
        self._colours = [None] * len(self._rows)
        self._visible = (0, 0)
        self.endResetModel()

    def row_at(self, index: int) -> TimelineRow:
        """The row with this (source) index."""
        return self._rows[index]

    def rows(self) -> list[TimelineRow]:
        """All rows."""
        return list(self._rows)

    def column_texts(self, column: int) -> set[str]:
        """The different texts of ``column`` (for sizing it; the time column: one, all times being
        as wide)."""
        if column == 0:
            return {_cells(self._rows[0])[0]} if self._rows else set()
        if column == 1:
            return {_kind(r) for r in self._rows}
        return {(r.text, r.by, r.mark)[column - 2] for r in self._rows}

    def set_visible(self, start: float, end: float) -> tuple[int, int]:
        """Highlight the rows with ``start <= t <= end`` (epoch s); return their index range."""
        new = (bisect.bisect_left(self._epochs, start), bisect.bisect_right(self._epochs, end))
        old = self._visible
        if new != old:
            self._visible = new
            lo, hi = min(old[0], new[0]), max(old[1], new[1])
            if hi > lo:
                self.dataChanged.emit(self.index(lo, 0), self.index(hi - 1, len(self.COLUMNS) - 1),
                                      [Qt.ItemDataRole.BackgroundRole])
        return new

    def is_visible(self, index: int) -> bool:
        """Whether row ``index`` lies in the visible time range."""
        return self._visible[0] <= index < self._visible[1]

    # ------------------------------------------------------------------ Qt model
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
        if role not in _ROLES or not index.isValid():
            return None
        i, column = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            cells = self._cells[i]
            if cells is None:
                cells = self._cells[i] = _cells(self._rows[i])
            return cells[column]
        if role == Qt.ItemDataRole.BackgroundRole:
            return _VISIBLE if self._visible[0] <= i < self._visible[1] else None
        if role == Qt.ItemDataRole.ForegroundRole:
            colours = self._colours[i]
            if colours is None:
                colours = self._colours[i] = _colours(self._rows[i])
            return colours[column]
        row = self._rows[i]
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [f"{row.t.astimezone().strftime('%Y-%m-%d %H:%M:%S')}  {row.text}"]
            if row.end is not None:
                lines.append(f"ended {row.end.astimezone().strftime('%H:%M:%S')}")
            if row.by:
                lines.append(row.by)
            if row.mark:
                lines.append(row.mark + (f": {row.reason}" if row.reason else ""))
            if row.recorded_at is not None:
                lines.append(f"recorded {row.recorded_at.astimezone().strftime('%Y-%m-%d %H:%M')}")
            if row.detail:
                lines.append(row.detail)
            return "\n".join(lines)
        if role == ROW_ROLE:
            return row
        return None


def _kind(row: TimelineRow) -> str:
    label = CATEGORY_LABELS.get(row.category, row.category)
    return f"{label} {row.priority}" if row.priority else label


def _cells(row: TimelineRow) -> tuple[str, ...]:
    return (row.t.astimezone().strftime("%H:%M:%S"), _kind(row), row.text, row.by, row.mark)


def _colours(row: TimelineRow) -> tuple[QBrush | None, ...]:
    kind = (QBrush(QColor(theme.PRIORITY_COLOURS.get(row.priority or "", theme.TEXT)))
            if row.category == "alarm" else None)
    return (None, kind, None, None, QBrush(_MARK_COLOUR) if row.mark else None)


class CategoryFilter(QSortFilterProxyModel):
    """Shows the rows of one category ("alarm", "event" …), the marked ones ("marked": late entries,
    amendments, corrections), or all (None)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._category: str | None = None
        # The rows never change under the filter (set_rows resets the model, set_category
        # re-filters): without this, every highlight change of the visible range re-filters the
        # changed rows, a third of the cost of a pan.
        self.setDynamicSortFilter(False)

    def set_category(self, category: str | None) -> None:
        """Filter on ``category`` (None: every row)."""
        self.beginFilterChange()
        self._category = category
        self.endFilterChange()

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:  # noqa: N802
        if self._category is None:
            return True
        model = self.sourceModel()
        assert isinstance(model, TimelineModel)
        row = model.row_at(source_row)
        if self._category == "marked":
            return bool(row.mark)
        return row.category == self._category
