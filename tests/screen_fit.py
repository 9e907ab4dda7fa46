"""Does everything a window shows fit? Font-metric checks over a window as it is on screen.

:func:`window_problems` walks every visible widget of a top-level window and returns one line per
problem (empty: nothing wrong):

* text that does not fit: a label (plain or rich, one line or word-wrapped), a button (its size
  hint against its size), a line edit's placeholder, a spin box's value, a combo box's current
  text, a tab, a table
  header section, a table cell of a column that does not stretch (a stretching column holds free
  text and may elide), a numeric tile's texts (:meth:`ui.tiles.NumericTile.clipped_texts`);
* a widget cut off by its parent (a PIN field pushed half out of its dialog, buttons under the
  bottom edge) or by its window;
* a form that needs scroll bars (a ``QScrollArea`` showing a scroll bar in a dialog);
* the window's frame (the client area plus a title bar allowance) outside the screen's available
  geometry, or over the alarm zone (the monitoring window's alarm area; other windows only);
* anything of the monitoring window drawn over its own alarm area.

:func:`menu_problems` checks an open menu's items. Used by tests/screen_probe.py at several
screen sizes and by tests/test_screen_fit.py directly.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QMargins, QPoint, QRect, Qt
from PySide6.QtGui import QFontMetrics, QTextDocument
from PySide6.QtGui import Qt as QtGuiNamespace
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QAbstractItemView,
    QComboBox,
    QDialog,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QScrollArea,
    QStyle,
    QStyleOptionComboBox,
    QTabBar,
    QTableView,
    QWidget,
)

#: The window manager's frame assumed around every window: a 30 px title bar, 4 px borders.
FRAME = QMargins(4, 30, 4, 4)
#: Rounding slack, px.
SLACK = 1
#: Table rows checked per view (the visible ones, at most this many).
MAX_ROWS = 60


def _name(widget: QWidget) -> str:
    text = ""
    for attr in ("text", "placeholderText", "currentText", "windowTitle"):
        getter = getattr(widget, attr, None)
        if callable(getter):
            try:
                text = getter()
            except TypeError:
                continue
            if text:
                break
    text = " ".join(str(text).split())
    name = widget.objectName() or type(widget).__name__
    return f"{name} {text[:60]!r}" if text else name


def _shown(widget: QWidget, window: QWidget) -> bool:
    return widget.isVisibleTo(window) and widget.width() > 0 and widget.height() > 0


def _mnemonic_free(text: str) -> str:
    """``text`` as drawn where "&" marks a keyboard mnemonic ("&&" is a literal ampersand)."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


def _plain(label: QLabel) -> bool:
    fmt = label.textFormat()
    return fmt == Qt.TextFormat.PlainText or (fmt == Qt.TextFormat.AutoText and not QtGuiNamespace.mightBeRichText(label.text()))


def _label_needs(label: QLabel) -> tuple[float, float]:
    """(width, height) the label's text needs on one line each paragraph (no wrapping)."""
    if _plain(label):
        metrics = QFontMetrics(label.font())
        text = _mnemonic_free(label.text()) if label.buddy() is not None else label.text()
        lines = text.split("\n")
        return max(metrics.horizontalAdvance(line) for line in lines), metrics.height() * len(lines)
    document = QTextDocument()
    document.setDefaultFont(label.font())
    document.setDocumentMargin(0)
    document.setHtml(label.text())
    return document.idealWidth(), document.size().height()


def label_problem(label: QLabel) -> str | None:
    """Why ``label``'s text does not fit it (None: it fits)."""
    if not label.text() or label.pixmap() is not None and not label.pixmap().isNull():
        return None
    inner = label.contentsRect().marginsRemoved(QMargins(*[label.margin()] * 4))
    if label.wordWrap():
        needed = label.heightForWidth(label.width())
        if needed > label.height() + SLACK:
            return f"wrapped text needs {needed} px high, has {label.height()}"
        if not _plain(label):
            return None
        metrics = QFontMetrics(label.font())  # one word longer than the line is cut even when wrapped
        widest = max((metrics.horizontalAdvance(word) for word in label.text().split()), default=0)
        return f"word needs {widest} px, has {inner.width()}" if widest > inner.width() + SLACK else None
    width, height = _label_needs(label)
    if width > inner.width() + SLACK:
        return f"text needs {width:.0f} px, has {inner.width()}"
    if height > inner.height() + SLACK:
        return f"text needs {height:.0f} px high, has {inner.height()}"
    return None


def button_problem(button: QAbstractButton) -> str | None:
    """Why ``button``'s text does not fit it."""
    if not button.text():
        return None
    hint = button.sizeHint()
    if hint.width() > button.width() + SLACK:
        return f"needs {hint.width()} px wide, has {button.width()}"
    if hint.height() > button.height() + SLACK and "\n" in button.text():
        return f"needs {hint.height()} px high, has {button.height()}"
    metrics = QFontMetrics(button.font())
    if metrics.height() * (button.text().count("\n") + 1) > button.height():
        return f"text needs {metrics.height()} px high, has {button.height()}"
    return None


def _combo_problem(combo: QComboBox) -> str | None:
    text = combo.currentText()
    if not text:
        return None
    option = QStyleOptionComboBox()
    combo.initStyleOption(option)
    field = combo.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                         QStyle.SubControl.SC_ComboBoxEditField, combo)
    needed = QFontMetrics(combo.font()).horizontalAdvance(text)
    return f"current text needs {needed} px, has {field.width()}" if needed > field.width() + SLACK else None


def _placeholder_problem(edit: QLineEdit) -> str | None:
    text = edit.placeholderText()
    if not text or edit.text():
        return None
    needed = QFontMetrics(edit.font()).horizontalAdvance(text)
    room = edit.contentsRect().width() - 2 * 4 - edit.textMargins().left() - edit.textMargins().right()
    # the clear button takes room when shown
    return f"placeholder needs {needed} px, has {room}" if needed > room + SLACK else None


def _spin_problem(spin: QAbstractSpinBox) -> str | None:
    text = spin.text()
    edit = spin.lineEdit()
    if not text or edit is None:
        return None
    needed = QFontMetrics(edit.font()).horizontalAdvance(text)
    room = edit.width() - 4  # QLineEdit's own horizontal margin, 2 px a side
    return f"value {text!r} needs {needed} px, has {room}" if needed > room + SLACK else None


def _tab_problems(bar: QTabBar) -> list[str]:
    out = []
    for i in range(bar.count()):
        if bar.isTabVisible(i) and bar.tabRect(i).width() + SLACK < bar.tabSizeHint(i).width():
            out.append(f"tab {bar.tabText(i)!r} needs {bar.tabSizeHint(i).width()} px, has {bar.tabRect(i).width()}")
    return out


def header_problems(header: QHeaderView) -> list[str]:
    """Sections of ``header`` whose title is cut."""
    out = []
    if header.orientation() != Qt.Orientation.Horizontal:
        return out
    model = header.model()
    for logical in range(header.count()):
        if header.isSectionHidden(logical) or header.sectionSize(logical) == 0:
            continue
        text = str(model.headerData(logical, Qt.Orientation.Horizontal) or "")
        needed = header.sectionSizeFromContents(logical).width()
        if text and needed > header.sectionSize(logical) + SLACK:
            out.append(f"header {text!r} needs {needed} px, has {header.sectionSize(logical)}")
    return out


def cell_problems(view: QTableView) -> list[str]:
    """Cells of the visible rows whose text is cut, in columns that do not stretch."""
    out = []
    model = view.model()
    if model is None:
        return out
    header = view.horizontalHeader()
    top = max(0, view.rowAt(0))
    bottom = view.rowAt(view.viewport().height() - 1)
    bottom = model.rowCount() - 1 if bottom < 0 else bottom
    for column in range(model.columnCount()):
        if view.isColumnHidden(column) or header.sectionResizeMode(column) == QHeaderView.ResizeMode.Stretch:
            continue
        if column == model.columnCount() - 1 and header.stretchLastSection():
            continue
        width = view.columnWidth(column)
        for row in range(top, min(bottom, top + MAX_ROWS) + 1):
            index = model.index(row, column)
            text = str(model.data(index) or "")
            if not text:
                continue
            needed = view.sizeHintForIndex(index).width()
            if needed > width + SLACK:
                out.append(f"cell {text!r} (column {column}) needs {needed} px, has {width}")
                break
    return out


def _scroll_problems(area: QScrollArea) -> list[str]:
    out = []
    for bar, name in ((area.verticalScrollBar(), "vertical"), (area.horizontalScrollBar(), "horizontal")):
        if bar.isVisible() and bar.maximum() > 0:
            out.append(f"needs a {name} scroll bar ({bar.maximum()} px more)")
    return out


def _clipped(widget: QWidget, window: QWidget) -> str | None:
    """The first ancestor (or the window) that cuts ``widget`` off, as text."""
    rect = QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())
    parent = widget.parentWidget()
    while parent is not None and parent is not window:
        if isinstance(parent.parentWidget(), QScrollArea) or isinstance(parent, QAbstractItemView) \
                or isinstance(parent.parentWidget(), QAbstractItemView):
            return None  # inside a scrolled viewport: scrolling is checked on its own
        outer = QRect(parent.mapTo(window, QPoint(0, 0)), parent.size())
        if not outer.adjusted(-SLACK, -SLACK, SLACK, SLACK).contains(rect):
            return f"cut off by its parent {_name(parent)} ({_rect(rect)} outside {_rect(outer)})"
        parent = parent.parentWidget()
    if not window.rect().adjusted(-SLACK, -SLACK, SLACK, SLACK).contains(rect):
        return f"outside its window ({_rect(rect)} outside {_rect(window.rect())})"
    return None


def _rect(r: QRect) -> str:
    return f"{r.x()},{r.y()} {r.width()}x{r.height()}"


_CLIP_CHECKED = (QLabel, QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox)


def widget_problems(window: QWidget) -> list[str]:
    """Every text that does not fit and every widget cut off, in ``window`` (see the module docstring)."""
    from ui.tiles import NumericTile  # noqa: PLC0415

    out: list[str] = []
    is_dialog = isinstance(window, QDialog)
    for widget in [window, *window.findChildren(QWidget)]:
        if not _shown(widget, window):
            continue
        problem: str | None = None
        found: list[str] = []
        if isinstance(widget, QLabel):
            problem = label_problem(widget)
        elif isinstance(widget, QAbstractButton) and not isinstance(widget.parentWidget(), QTabBar):
            problem = button_problem(widget)
        elif isinstance(widget, QLineEdit) and not isinstance(widget.parentWidget(), (QComboBox, QAbstractSpinBox)):
            problem = _placeholder_problem(widget)
        elif isinstance(widget, QComboBox):
            problem = _combo_problem(widget)
        elif isinstance(widget, QAbstractSpinBox):
            problem = _spin_problem(widget)
        elif isinstance(widget, QTabBar):
            found = _tab_problems(widget)
        elif isinstance(widget, QHeaderView):
            found = header_problems(widget)
        elif isinstance(widget, QTableView):
            found = cell_problems(widget)
        elif isinstance(widget, QScrollArea) and is_dialog:
            found = _scroll_problems(widget)
        elif isinstance(widget, NumericTile):
            found = widget.clipped_texts()
        if problem:
            found.append(problem)
        if isinstance(widget, _CLIP_CHECKED) and widget is not window:
            clipped = _clipped(widget, window)
            if clipped:
                found.append(clipped)
        out.extend(f"{_name(widget)}: {text}" for text in found)
    return out


def menu_problems(menu: QMenu) -> list[str]:
    """Items of an open ``menu`` whose text is cut, and a menu wider than its screen."""
    out = []
    metrics = QFontMetrics(menu.font())
    for action in menu.actions():
        if action.isSeparator() or not action.isVisible():
            continue
        text = action.text().replace("&", "")
        room = menu.actionGeometry(action).width()
        if metrics.horizontalAdvance(text) > room:
            out.append(f"menu item {text!r} needs {metrics.horizontalAdvance(text)} px, has {room}")
    screen = menu.screen()
    if screen is not None and not screen.availableGeometry().contains(menu.geometry()):
        out.append(f"menu {menu.title()!r} outside the screen ({_rect(menu.geometry())})")
    return out


def frame_problems(window: QWidget, available: QRect, zone: QRect | None, frame_margins: QMargins = FRAME,
                   client: QRect | None = None) -> list[str]:
    """The window's frame (its client area, or ``client``, plus ``frame_margins``) outside
    ``available`` or over ``zone``."""
    out = []
    frame = (client or window.geometry()).marginsAdded(frame_margins)
    if not available.contains(frame):
        out.append(f"frame {_rect(frame)} extends past the available screen {_rect(available)}")
    if zone is not None and frame.intersects(zone):
        out.append(f"frame {_rect(frame)} covers the alarm zone {_rect(zone)}")
    hint = window.minimumSizeHint().expandedTo(window.minimumSize())
    if hint.width() > window.width() + SLACK or hint.height() > window.height() + SLACK:
        out.append(f"its content needs at least {hint.width()}x{hint.height()}, has {window.width()}x{window.height()}")
    return out


def zone_cover_problems(window: QWidget, area: QWidget) -> list[str]:
    """Widgets of the monitoring ``window`` drawn over its alarm ``area``."""
    zone = QRect(area.mapTo(window, QPoint(0, 0)), area.size())
    out = []
    related = set(_ancestors(area))
    for widget in window.findChildren(QWidget):
        if widget in related or area.isAncestorOf(widget) or not _shown(widget, window) or not widget.isVisible():
            continue
        rect = QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())
        if rect.intersects(zone):
            out.append(f"{_name(widget)} ({_rect(rect)}) covers the alarm area ({_rect(zone)})")
    return out


def _ancestors(widget: QWidget) -> Iterable[QWidget]:
    parent = widget.parentWidget()
    while parent is not None:
        yield parent
        parent = parent.parentWidget()


#: A maximised window's frame: the title bar only.
MAXIMISED = QMargins(0, 30, 0, 0)


def window_problems(window: QWidget, available: QRect, zone: QRect | None = None,
                    frame_margins: QMargins = FRAME, client: QRect | None = None) -> list[str]:
    """Every problem of one top-level ``window`` (see the module docstring)."""
    return frame_problems(window, available, zone, frame_margins, client) + widget_problems(window)
