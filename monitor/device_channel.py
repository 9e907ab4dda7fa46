"""Qt edge of acquisition: a device worker's callbacks as queued Qt signals.

The worker (``drivers.acquisition.AcquisitionWorker``) runs in its own thread; this QObject
lives in the thread that created it (normally the UI thread). Signals emitted from the worker
thread reach slots in the receiver's thread through Qt's queued connections, so the UI thread
is never blocked by a device.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from drivers.acquisition import AcquisitionWorker, Link, LinkState
from drivers.model import Item
from drivers.transport import DeviceSpec, open_link, parse_device_url


class _Listener:
    """The AcquisitionListener a DeviceChannel hands its worker (the protocol's
    ``link_changed`` method name is taken by the channel's Qt signal)."""

    def __init__(self, channel: DeviceChannel) -> None:
        self.channel = channel

    def items_received(self, items: list[Item]) -> None:
        try:
            self.channel.batch_received.emit(items)
        except RuntimeError:  # the channel was deleted while its worker was finishing
            pass

    def link_changed(self, state: LinkState, detail: str, attempt: int) -> None:
        try:
            self.channel._on_link_changed(state, detail, attempt)
        except RuntimeError:
            pass


class DeviceChannel(QObject):
    """One device, as signals: ``batch_received(list[Item])``, ``link_changed(state, detail,
    attempt)``, ``connection_lost(reason)``, ``connection_restored()``."""

    batch_received = Signal(list)
    link_changed = Signal(str, str, int)
    connection_lost = Signal(str)
    connection_restored = Signal()

    def __init__(self, device: str | DeviceSpec | Link, parent: QObject | None = None) -> None:
        super().__init__(parent)
        if isinstance(device, Link):
            self.spec = None
            self.link = device
        else:
            self.spec = device if isinstance(device, DeviceSpec) else parse_device_url(device)
            self.link = open_link(self.spec)
        self.state = LinkState.CONNECTING
        self.reconnect_attempts = 0
        self._worker: AcquisitionWorker | None = None

    @property
    def label(self) -> str:
        """Human name of the device."""
        return self.spec.label if self.spec else self.link.source

    @property
    def running(self) -> bool:
        """True while the worker thread runs."""
        return self._worker is not None and self._worker.is_alive()

    def start(self) -> None:
        """Start acquisition in a new thread (no-op if running)."""
        if self.running:
            return
        self._worker = AcquisitionWorker(self.link, [_Listener(self)])
        self._worker.start()

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop acquisition; True when the thread finished within ``timeout`` s."""
        worker, self._worker = self._worker, None
        return worker.stop(timeout) if worker is not None else True

    def _on_link_changed(self, state: LinkState, detail: str, attempt: int) -> None:
        # Worker thread: record the state and forward it as signals.
        previous = self.state
        self.state = state
        self.reconnect_attempts = attempt
        self.link_changed.emit(state.value, detail, attempt)
        if state is LinkState.LOST and previous is not LinkState.LOST:
            self.connection_lost.emit(detail)
        elif state is LinkState.CONNECTED and detail == "restored":
            self.connection_restored.emit()
