"""Layout pieces that adapt to the room they get, measured with font metrics (never fixed pixels):

* :class:`FlowGrid` — buttons in a grid of equal cells that takes as many columns as the widest
  button's text allows and wraps onto more rows when the room is short (a button never shows
  "art infusi" for "Start infusion").
* :class:`FitLabel` — a label given several forms of each line, longest first, that shows the
  longest form that fits its width (an alarm's "Blood pressure high 186 mmHg (limit 180)" or
  "NBP Sys 186 ≥ 180", never a cut-off number), as many lines as its height holds (then "… 2
  more"), and a smaller font only when even the shortest form does not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QPoint, QRect, QSize, Qt, QTimer
from PySide6.QtGui import QFont, QFontMetricsF, QTextDocument
from PySide6.QtWidgets import QLabel, QLayout, QLayoutItem, QSizePolicy, QWidget

__all__ = ["FitLabel", "FlowGrid", "text_width"]


def text_width(text: str, font: QFont, rich: bool = False) -> float:
    """Pixels ``text`` needs on one line in ``font`` (``rich``: as HTML, as a QLabel draws it)."""
    if not rich:
        metrics = QFontMetricsF(font)
        return max((metrics.horizontalAdvance(line) for line in text.split("\n")), default=0.0)
    document = QTextDocument()
    document.setDefaultFont(font)
    document.setDocumentMargin(0)
    document.setHtml(text)
    return document.idealWidth()


class FlowGrid(QLayout):
    """Items in rows that wrap when the room is short, never narrower than their size hints.

    ``uniform`` (default): equal cells, as many columns as fit (each as wide as the widest item's
    size hint), at most ``max_columns``. Otherwise each item takes its own size hint's width and a
    row takes as many items as fit, its spare width shared out. Hidden items take no room. Heights
    follow the width (``heightForWidth``), and the minimum height is that of the width last given,
    so the layout around it makes room for another row instead of cutting the buttons.
    """

    def __init__(self, parent: QWidget | None = None, spacing: int = 6, max_columns: int = 0,
                 uniform: bool = True) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self.max_columns = max_columns
        self.uniform = uniform
        self._width = 0       # the width last laid out in
        self._rows = 0
        self.setSpacing(spacing)
        self.setContentsMargins(0, 0, 0, 0)

    # ------------------------------------------------------------------ QLayout
    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 (Qt override)
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 (Qt override)
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 (Qt override)
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802 (Qt override)
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt override)
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt override)
        return self._arrange(QRect(0, 0, width, 0), apply=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 (Qt override)
        super().setGeometry(rect)
        self._arrange(rect, apply=True)
        rows = self.rows_for(rect.width())
        if rect.width() != self._width:
            self._width = rect.width()
            if rows != self._rows:  # the minimum height changed: the layouts around must know
                self._rows = rows
                QTimer.singleShot(0, self, self._changed)  # not after the layout is gone

    def _changed(self) -> None:
        self.invalidate()
        widget = self.parentWidget()
        if widget is not None:
            widget.updateGeometry()

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        shown = self._shown()
        if not shown:
            return QSize(0, 0)
        margins = self.contentsMargins()
        if self.uniform:
            cell = self._cell()
            columns = len(shown) if not self.max_columns else min(len(shown), self.max_columns)
            width = columns * cell.width() + (columns - 1) * self.spacing()
        else:
            width = sum(self._hint(item).width() for item in shown) + (len(shown) - 1) * self.spacing()
        width += margins.left() + margins.right()
        return QSize(width, self._arrange(QRect(0, 0, width, 0), apply=False))

    def minimumSize(self) -> QSize:  # noqa: N802 (Qt override)
        shown = self._shown()
        if not shown:
            return QSize(0, 0)
        margins = self.contentsMargins()
        width = max(self._hint(item).width() for item in shown) + margins.left() + margins.right()
        height = self._arrange(QRect(0, 0, max(self._width, width), 0), apply=False) if self._width else \
            self._cell().height() + margins.top() + margins.bottom()
        return QSize(width, height)

    # ------------------------------------------------------------------ arranging
    def _shown(self) -> list[QLayoutItem]:
        return [item for item in self._items if not item.isEmpty()]

    @staticmethod
    def _hint(item: QLayoutItem) -> QSize:
        return item.sizeHint().expandedTo(item.minimumSize())

    def _cell(self) -> QSize:
        """The size every cell needs: the largest size hint (and minimum size) of the items."""
        width = height = 0
        for item in self._shown():
            hint = self._hint(item)
            width, height = max(width, hint.width()), max(height, hint.height())
        return QSize(width, height)

    def _rows_of(self, width: int) -> list[list[QLayoutItem]]:
        """The shown items, row by row, for a layout ``width`` pixels wide."""
        shown = self._shown()
        if not shown:
            return []
        margins = self.contentsMargins()
        room = width - margins.left() - margins.right()
        spacing = self.spacing()
        if self.uniform:
            cell = max(1, self._cell().width())
            columns = max(1, (room + spacing) // (cell + spacing))
            if self.max_columns:
                columns = min(columns, self.max_columns)
            return [shown[i:i + columns] for i in range(0, len(shown), columns)]
        rows: list[list[QLayoutItem]] = [[]]
        used = 0
        for item in shown:
            need = self._hint(item).width()
            if rows[-1] and used + spacing + need > room:
                rows.append([])
                used = 0
            used += (spacing if rows[-1] else 0) + need
            rows[-1].append(item)
        return rows

    def columns_for(self, width: int) -> int:
        """How many items the first row takes in ``width`` pixels (at least 1)."""
        rows = self._rows_of(width)
        return len(rows[0]) if rows else 1

    def rows_for(self, width: int) -> int:
        """How many rows the items take in ``width`` pixels."""
        return len(self._rows_of(width))

    def _arrange(self, rect: QRect, apply: bool) -> int:
        margins = self.contentsMargins()
        rows = self._rows_of(rect.width())
        if not rows:
            return margins.top() + margins.bottom()
        inner = rect.adjusted(margins.left(), margins.top(), -margins.right(), -margins.bottom())
        spacing = self.spacing()
        height = self._cell().height()
        if apply:
            columns = len(rows[0])
            for r, row in enumerate(rows):
                y = inner.y() + r * (height + spacing)
                if self.uniform:
                    width = max(1, (inner.width() - (columns - 1) * spacing) // columns)
                    widths = [width] * len(row)
                else:
                    hints = [self._hint(item).width() for item in row]
                    spare = max(0, inner.width() - sum(hints) - (len(row) - 1) * spacing)
                    widths = [hint + spare * hint // max(1, sum(hints)) for hint in hints]
                x = inner.x()
                for item, width in zip(row, widths):
                    item.setGeometry(QRect(QPoint(x, y), QSize(width, height)))
                    x += width + spacing
        return len(rows) * height + (len(rows) - 1) * spacing + margins.top() + margins.bottom()


class FitLabel(QLabel):
    """A label of one or more lines, each given in several forms from the longest to the shortest
    (:meth:`set_lines`): each line shows its longest form that fits the label's width; when even
    the shortest does not fit, the font shrinks (down to ``min_ratio`` of ``font``) rather than cut
    the text. Lines beyond what the height holds are replaced by ``more(n)`` ("… 2 more").
    ``rich``: the forms are HTML (measured as the label draws them)."""

    def __init__(self, font: QFont, *, rich: bool = False, min_ratio: float = 0.6,
                 more: Callable[[int], str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.base_font = QFont(font)
        self.rich = rich
        self.min_ratio = min_ratio
        self.more = more or (lambda n: f"… {n} more")
        self._lines: list[tuple[str, ...]] = []
        self.setFont(font)
        self.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.shown_forms: list[str] = []
        self._owns_tooltip = True  # the tool tip is the full text while a shorter form shows, until
        # the caller sets a tool tip of its own (:meth:`setToolTip`), which then stays

    def set_lines(self, lines: Sequence[Sequence[str]]) -> None:
        """Show these lines (each: its forms, longest first; an empty form list is skipped)."""
        lines = [tuple(forms) for forms in lines if forms]
        if lines != self._lines:
            widest = [forms[0] for forms in lines] != [forms[0] for forms in self._lines]
            self._lines = lines
            self._fit()
            if widest:
                self.updateGeometry()

    @property
    def full_text(self) -> str:
        """Every line in its longest form (what a shorter form on screen stands for)."""
        return ("<br>" if self.rich else "\n").join(forms[0] for forms in self._lines)

    def set_forms(self, *forms: str) -> None:
        """One line in these forms (longest first)."""
        self.set_lines([forms] if forms else [])

    def _frame(self) -> QSize:
        """What the label's frame, margins and style-sheet box take around the text."""
        inner = self.contentsRect()
        return QSize(self.width() - inner.width() + 2 * self.margin(), self.height() - inner.height() + 2 * self.margin())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        """Any width (a shorter form or a smaller font fits it); one line of the full font high."""
        return QSize(0, int(QFontMetricsF(self.base_font).lineSpacing() + self._frame().height() + 1))

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        """Room for every line in its longest form, in the full-size font."""
        frame = self._frame()
        width = max((text_width(forms[0], self.base_font, self.rich) for forms in self._lines), default=0.0)
        lines = max(1, len(self._lines))
        height = QFontMetricsF(self.base_font).lineSpacing() * lines + frame.height()
        return QSize(int(width + frame.width() + 1), int(height + 1))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._fit()

    def _room(self) -> tuple[float, float]:
        rect = self.contentsRect()
        return rect.width() - 2 * self.margin(), rect.height() - 2 * self.margin()

    def _fit(self) -> None:
        width, height = self._room()
        if not self._lines:
            self.shown_forms = []
            self.setText("")
            return
        font = QFont(self.base_font)
        base = self.base_font.pointSizeF() if self.base_font.pointSizeF() > 0 else float(self.base_font.pixelSize())
        size = base
        while True:
            lines = self._visible_lines(font, height)
            chosen = [self._choose(forms, font, width) for forms in lines]
            fits = all(text_width(text, font, self.rich) <= width for text in chosen)
            if fits or size <= base * self.min_ratio:
                break
            size = max(base * self.min_ratio, size * 0.92)
            if self.base_font.pointSizeF() > 0:
                font.setPointSizeF(size)
            else:
                font.setPixelSize(max(1, int(size)))
        if not fits and not self.rich:   # even the shortest form, at the smallest type, is too long: its
            metrics = QFontMetricsF(font)  # middle gives way ("Charted MOAA/S 5 (… tone) at 19:17:42"),
            chosen = [metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, width)   # never its end
                      if text_width(text, font, False) > width else text for text in chosen]
        self.setFont(font)
        self.shown_forms = chosen
        self.setText(("<br>" if self.rich else "\n").join(chosen))
        if self._owns_tooltip:
            shortened = chosen != [forms[0] for forms in lines]
            super().setToolTip(self.full_text if shortened else "")

    def setToolTip(self, text: str) -> None:  # noqa: N802 (Qt override)
        """A tool tip of the caller's: kept from now on (no longer the full text of a shorter form)."""
        self._owns_tooltip = False
        super().setToolTip(text)

    def _visible_lines(self, font: QFont, height: float) -> list[tuple[str, ...]]:
        spacing = QFontMetricsF(font).lineSpacing()
        room = max(1, int((height + 1) // spacing)) if height > 0 else len(self._lines)
        if len(self._lines) <= room:
            return list(self._lines)
        if room == 1:  # no room to say how many more: the first line (the most important) alone
            return [self._lines[0]]
        kept = self._lines[:max(room - 1, 0)]
        return [*kept, (self.more(len(self._lines) - len(kept)),)]

    def _choose(self, forms: Sequence[str], font: QFont, width: float) -> str:
        for form in forms:
            if text_width(form, font, self.rich) <= width:
                return form
        return forms[-1]
