"""The window's session service: :class:`~monitor.app.service.SessionService` with Qt signals.

The pipeline calls its listeners on its own thread; :class:`QtSessionService` is one of them and
turns each callback into a Qt signal. The object lives in the UI thread, so Qt delivers every signal
there (queued): widgets never run on the pipeline's thread and the pipeline never waits for them.

Signals: ``batch_received(list)`` (device items, for numerics and curves), ``alarm_event(object)``,
``alarm_state_changed(object)`` (:class:`AlarmState`, after any change and at every tick),
``entries_recorded(list)`` (entry models just recorded), ``session_changed()`` (a session started,
changed or ended), ``session_snapshot(object)`` (:class:`SessionSnapshot` or None),
``link_changed(str, str)`` (state, detail), ``device_changed()``.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from monitor.app.listeners import PipelineListener
from monitor.app.pipeline import Pipeline
from monitor.app.service import SessionService
from monitor.staff import SignIns

__all__ = ["QtSessionService"]


class _Bridge(PipelineListener):
    """Pipeline callbacks → the service's signals (emitted from the pipeline thread, delivered queued)."""

    def __init__(self, owner: QtSessionService) -> None:
        self.owner = owner

    def _emit(self, signal: Any, *args: Any) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the Qt object is gone (the window closed while the pipeline stops)
            pass

    def on_batch(self, items: list[Any]) -> None:
        self._emit(self.owner.batch_received, items)

    def on_alarm_event(self, event: Any) -> None:
        self._emit(self.owner.alarm_event, event)

    def on_alarm_state(self, state: Any) -> None:
        self._emit(self.owner.alarm_state_changed, state)

    def on_entries(self, entries: list[Any]) -> None:
        self._emit(self.owner.entries_recorded, entries)

    def on_session(self, snapshot: Any) -> None:
        self._emit(self.owner.session_snapshot, snapshot)
        self._emit(self.owner.session_changed)

    def on_link(self, state: str, detail: str) -> None:
        self._emit(self.owner.link_changed, state, detail)


class QtSessionService(SessionService, QObject):
    """A :class:`SessionService` whose pipeline events are Qt signals (see the module docstring)."""

    batch_received = Signal(list)
    alarm_event = Signal(object)
    alarm_state_changed = Signal(object)
    entries_recorded = Signal(list)
    session_changed = Signal()
    session_snapshot = Signal(object)
    link_changed = Signal(str, str)
    device_changed = Signal()

    def __init__(self, pipeline: Pipeline, parent: QObject | None = None, *, signins: SignIns | None = None) -> None:
        SessionService.__init__(self, pipeline, signins)
        QObject.__init__(self, parent)   # after: Qt's cooperative __init__ would call SessionService's again
        pipeline.add_listener(_Bridge(self))

    def switch_device(self, device: Any) -> None:
        """See :meth:`SessionService.switch_device`; ``device_changed`` follows."""
        SessionService.switch_device(self, device)
        self.device_changed.emit()

    def start(self) -> None:
        """Start recording alarms and data from the device."""
        self.pipeline.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the device and flush the store (an open session stays open for a resume)."""
        self.pipeline.stop(timeout)
