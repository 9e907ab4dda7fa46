"""Until the recording pipeline lands: the window's recording service feeds the chair publisher.

The service's Qt signals are connected to the publisher's listener methods (each returns at once);
the session is sent on every change and every 10 s. The publisher's callbacks come from its own
thread and are forwarded here as queued signals: the broker's reachability raises or clears the
chair's LOW technical alarm ``board_unreachable``, an acknowledge from the board (when the clinic
allows it) acknowledges at the chair with the board user's name.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal

from monitor.board.publisher import ChairPublisher
from monitor.board.setup import UNREACHABLE_CODE, UNREACHABLE_TEXT, BoardSetupError, board_actor, chair_publisher
from monitor.board.snapshot import snapshot_from_state
from monitor.recording_service import RecordingService

log = logging.getLogger(__name__)


class ChairLink(QObject):
    """Connects ``service`` to ``publisher`` (see the module docstring); :meth:`close` ends it."""

    broker_state_changed = Signal(bool, str)
    acknowledge_received = Signal(object)

    def __init__(self, service: RecordingService, publisher: ChairPublisher, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self.publisher = publisher
        publisher.on_broker_state = self.broker_state_changed.emit
        publisher.on_acknowledge = self.acknowledge_received.emit
        self.broker_state_changed.connect(self._broker_state)
        self.acknowledge_received.connect(self._acknowledge)
        service.batch_received.connect(publisher.on_batch)
        service.alarm_event.connect(publisher.on_alarm_event)
        service.alarm_state_changed.connect(publisher.on_alarm_state)
        service.session_changed.connect(self.send_session)
        service.entries_recorded.connect(lambda _entries: self.send_session())
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.send_session)
        self._timer.start(10_000)
        self.send_session()
        publisher.start()

    def send_session(self) -> None:
        """Send the session being recorded (or none)."""
        recorder = self.service.recorder
        if recorder is None:
            self.publisher.on_session(None)
            return
        now = max(self.service.now(), recorder.now or self.service.now())
        try:
            self.publisher.on_session(snapshot_from_state(recorder.state, now, self.service.settings))
        except Exception:  # publishing must never disturb the chair
            log.exception("clinic board: the session could not be published")

    def _broker_state(self, reachable: bool, detail: str) -> None:
        log.info("clinic board %s: %s", "reachable" if reachable else "unreachable", detail)
        self.service.set_technical(UNREACHABLE_CODE, not reachable, UNREACHABLE_TEXT)

    def _acknowledge(self, command) -> None:
        actor = board_actor(command)
        if actor is None:
            return
        log.info("alarms acknowledged from the clinic board %r by %s", command.board, actor.username)
        self.service.acknowledge(actor)
        recorder = self.service.recorder
        if recorder is not None:
            self.service.writer.put_call(self.service.store.audit, actor.username, "alarms_acknowledged_from_board",
                                         recorder.session_id, {"board": command.board, "name": actor.display_name})

    def close(self) -> None:
        """Stop sending; the publisher says ``offline``/``closed`` and disconnects."""
        self._timer.stop()
        self.publisher.close()


def start_chair_link(args, service: RecordingService) -> ChairLink | None:
    """The window's link to the clinic board when ``--publish`` or the clinic settings ask for one
    (None otherwise). A set-up problem (a missing password file, a bad CA path) is logged and
    raises the LOW technical alarm ``board_unreachable``: monitoring goes on regardless."""
    try:
        publisher = chair_publisher(args, service.settings, service.profile)
    except BoardSetupError as exc:
        log.error("clinic board: not publishing: %s", exc)
        service.set_technical(UNREACHABLE_CODE, True, UNREACHABLE_TEXT)
        return None
    return ChairLink(service, publisher) if publisher is not None else None
