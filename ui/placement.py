"""Keep the alarm area in view: every dialog and secondary window of Vigil opens below the
monitoring window's alarm area and inside the screen's available geometry.

The rule is a pure function of rectangles (:func:`place_below`). :class:`WindowPlacer` applies it
to every top-level window of the application as it is shown (an application event filter, so
message boxes, file dialogs and the review windows are placed as well as Vigil's own dialogs),
after the window's own show handling (some windows size themselves then) and before the window
system maps it, so nothing jumps on screen.
"""

from __future__ import annotations

import weakref

from PySide6.QtCore import QCoreApplication, QEvent, QMargins, QObject, QPoint, QRect, Qt
from PySide6.QtWidgets import QWidget

__all__ = ["FRAME_ALLOWANCE", "GAP", "WindowPlacer", "frame_margins", "place_again", "place_below"]

#: The window manager's frame assumed around a window that has none yet: a 30 px title bar and
#: 4 px borders. A window whose real frame is known uses the larger of the two, side by side.
FRAME_ALLOWANCE = QMargins(4, 30, 4, 4)
#: Space kept between the alarm area and a window's frame (px).
GAP = 4

_PLACED_TYPES = (Qt.WindowType.Window, Qt.WindowType.Dialog)


def place_below(wanted: QRect, keep_clear: QRect | None, available: QRect,
                frame: QMargins = FRAME_ALLOWANCE, gap: int = GAP) -> QRect:
    """The client rectangle nearest to ``wanted`` whose frame (the rectangle grown by ``frame``)
    lies inside ``available`` and does not meet ``keep_clear`` (global coordinates, pixels).

    The window goes below ``keep_clear`` (``gap`` pixels under it), or above it when there is
    more room above and the window does not fit below; ``keep_clear`` None, or outside
    ``available`` (another screen), leaves only the screen's bounds. The size shrinks to fit and
    the position moves as little as possible. A screen too small for any client area returns
    ``wanted`` unchanged.
    """
    area = QRect(available)
    if keep_clear is not None and keep_clear.intersects(available):
        below = available.bottom() - keep_clear.bottom() - gap
        above = keep_clear.top() - available.top() - gap
        if below >= wanted.height() + frame.top() + frame.bottom() or below >= above:
            area.setTop(keep_clear.bottom() + 1 + gap)
        else:
            area.setBottom(keep_clear.top() - 1 - gap)
    inner = area.marginsRemoved(frame)
    if inner.width() <= 0 or inner.height() <= 0:
        return QRect(wanted)
    width = min(wanted.width(), inner.width())
    height = min(wanted.height(), inner.height())
    x = min(max(wanted.x(), inner.left()), inner.right() + 1 - width)
    y = min(max(wanted.y(), inner.top()), inner.bottom() + 1 - height)
    return QRect(x, y, width, height)


def frame_margins(window: QWidget) -> QMargins:
    """The frame of a top-level ``window``: its real one where the window system has given it
    one, each side at least :data:`FRAME_ALLOWANCE`."""
    client, frame = window.geometry(), window.frameGeometry()
    real = QMargins(client.left() - frame.left(), client.top() - frame.top(),
                    frame.right() - client.right(), frame.bottom() - client.bottom())
    return QMargins(max(real.left(), FRAME_ALLOWANCE.left()), max(real.top(), FRAME_ALLOWANCE.top()),
                    max(real.right(), FRAME_ALLOWANCE.right()), max(real.bottom(), FRAME_ALLOWANCE.bottom()))


_PLACERS: "weakref.WeakSet[WindowPlacer]" = weakref.WeakSet()


def place_again(window: QWidget) -> None:
    """Place ``window`` again (it grew, e.g. to show an error message) with every placer at work;
    with none, only keep it inside its screen's available area."""
    placers = [placer for placer in _PLACERS if placer.zone() is not None]
    for placer in placers:
        placer.place(window)
    if not placers and window.screen() is not None:
        target = place_below(window.geometry(), None, window.screen().availableGeometry(), frame_margins(window))
        if target != window.geometry():
            window.setGeometry(target)


class WindowPlacer(QObject):
    """Places every dialog and top-level window the application shows (menus, pop-ups and tool
    tips excepted) below ``keep_clear`` (the alarm area) while that widget is on screen.

    Installed on the application when made; it stops when ``keep_clear``'s window is closed or
    hidden and is removed when the placer is deleted (give it the monitoring window as parent).
    """

    def __init__(self, keep_clear: QWidget, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.keep_clear = keep_clear
        self._showing: set[int] = set()
        QCoreApplication.instance().installEventFilter(self)
        _PLACERS.add(self)

    def zone(self) -> QRect | None:
        """The alarm area's global rectangle, or None while its window is hidden or minimised."""
        widget = self.keep_clear
        window = widget.window()
        if not widget.isVisible() or window.isMinimized():
            return None
        return QRect(widget.mapToGlobal(QPoint(0, 0)), widget.size())

    def place(self, window: QWidget) -> None:
        """Move and, if it must, shrink ``window`` so that it leaves the alarm area in view."""
        screen = window.screen()
        zone = self.zone()
        if screen is None or zone is None:
            return
        target = place_below(window.geometry(), zone, screen.availableGeometry(), frame_margins(window))
        if target != window.geometry():
            window.setGeometry(target)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if event.type() != QEvent.Type.Show or event.spontaneous() or id(watched) in self._showing:
            return False
        if (not isinstance(watched, QWidget) or not watched.isWindow() or watched.windowType() not in _PLACED_TYPES
                or watched is self.keep_clear.window() or self.zone() is None):
            return False
        # Deliver the show event first (the window may size itself in showEvent), then place it:
        # this still happens before the window system maps the window.
        self._showing.add(id(watched))
        try:
            QCoreApplication.sendEvent(watched, event)
        finally:
            self._showing.discard(id(watched))
        self.place(watched)
        return True
