"""Acquisition: one worker thread per device, turning a link into batches of items.

A :class:`Link` is one way to reach a device — a serial/USB port, pseudo-terminal or socket
opened with ``serial.serial_for_url`` and decoded by a protocol decoder (:class:`SerialLink`),
or the in-process simulated monitor (``drivers.simulator.device``). The
:class:`AcquisitionWorker` owns the link in its own thread: it opens it, reads and decodes,
keeps host-side protocol traffic going (keep-alive polls), watches for stale data, and when the
device vanishes reports ``connection_lost``, retries with back-off and reports
``connection_restored``. Listeners are called from the worker thread; a Qt bridge in
``monitor/`` turns them into queued signals. Nothing here imports Qt.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import serial

from drivers.base import Decoder, DecoderStats, condition_text
from drivers.errors import DeviceError
from drivers.model import DeviceCondition, Item, NumericObservation, WaveformChunk, utc_now
from drivers.serialport import open_serial

log = logging.getLogger(__name__)

#: Seconds to wait before reconnect attempt 1, 2, 3…; the last value repeats.
BACKOFF: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)


class LinkState(str, enum.Enum):
    """Where a device link is."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    LOST = "lost"          # was connected (or never could be), retrying with back-off
    STOPPED = "stopped"


class LinkError(DeviceError, OSError):
    """The device could not be reached or went away (unplugged, port vanished, cable pulled).
    ``at``: when it went away, if the link knows better than "now" (aware UTC)."""

    def __init__(self, *args: object, at: datetime | None = None) -> None:
        super().__init__(*args)
        self.at = at


class Link(ABC):
    """One device connection, used only from the worker thread (except :meth:`cancel`)."""

    #: Names the device in items and messages, e.g. "masimo:/dev/ttyUSB0".
    source: str
    #: Seconds between fresh data when all is well.
    expected_interval: float = 1.0
    #: Device seconds per real second (the simulated monitor runs faster): reconnect attempts
    #: are paced in device time.
    time_scale: float = 1.0

    @abstractmethod
    def open(self) -> None:
        """Connect; raise :class:`LinkError` (or OSError) if the device cannot be reached."""

    @abstractmethod
    def read(self, timeout: float) -> list[Item]:
        """Block up to ``timeout`` s for data; return the items decoded (maybe none).
        Raise :class:`LinkError` when the device goes away."""

    def service(self, monotonic: float) -> None:
        """Periodic host-side work (keep-alive polls); called between reads."""

    @abstractmethod
    def close(self) -> None:
        """Disconnect (politely if the protocol has a release); never raises."""

    def cancel(self) -> None:
        """Wake a blocked :meth:`read` from another thread."""

    def clock(self) -> datetime:
        """The time base of this device's items (aware UTC); the simulator's runs faster."""
        return utc_now()

    @property
    def stats(self) -> DecoderStats | None:
        """Decoder counts, where the link has a decoder."""
        return None


class SerialLink(Link):
    """A port opened with ``serial.serial_for_url`` and decoded by ``decoder_factory()``.

    ``serial_url`` is anything pyserial accepts (``/dev/ttyUSB0``, ``COM3``, ``/dev/pts/7``,
    ``socket://host:port``, ``loop://``, ``spy://…``); ``settings`` are the line settings
    (baud rate etc.; relaxed on a pseudo-terminal that refuses them, see
    :mod:`drivers.serialport`). A fresh decoder is made for every connection; its counts
    accumulate in :attr:`stats`.
    """

    def __init__(self, serial_url: str, decoder_factory: Callable[[], Decoder],
                 settings: dict[str, object], source: str) -> None:
        self.serial_url = serial_url
        self.decoder_factory = decoder_factory
        self.settings = settings
        self.source = source
        probe = decoder_factory()
        self.expected_interval = probe.expected_interval
        self._totals = DecoderStats()
        self._port: serial.SerialBase | None = None
        self._decoder: Decoder | None = None

    @property
    def stats(self) -> DecoderStats:
        """Counts over every connection so far."""
        live = self._decoder.stats if self._decoder else DecoderStats()
        return self._totals + live

    def open(self) -> None:
        try:
            port = open_serial(self.serial_url, self.settings, timeout=0.1, write_timeout=0.5)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.serial_url}: {exc}") from exc
        self._port = port
        self._decoder = self.decoder_factory()
        self._write(self._decoder.start())

    def _write(self, data: bytes) -> None:
        if data and self._port is not None:
            try:
                self._port.write(data)
            except (serial.SerialException, OSError) as exc:
                raise LinkError(f"write to {self.serial_url} failed: {exc}") from exc

    def read(self, timeout: float) -> list[Item]:
        port, decoder = self._port, self._decoder
        if port is None or decoder is None:
            raise LinkError("link is not open")
        wanted, expected_s = decoder.read_hint()
        if wanted > 1:  # read a whole update at once; the read returns as soon as it is complete
            timeout = min(0.5, max(timeout, expected_s * 1.5 + 0.02))
        try:
            if port.timeout != timeout:  # pyserial reconfigures the port on every assignment
                port.timeout = timeout
            data = port.read(max(wanted, port.in_waiting, 1))
            if data and port.in_waiting:
                data += port.read(port.in_waiting)
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # pyserial reports an unplugged device as SerialException/OSError; a port closed
            # under a blocked read by cancel() can surface as TypeError/AttributeError.
            raise LinkError(f"{self.serial_url}: {exc}") from exc
        if not data:
            return []
        items = decoder.feed(data)
        self._write(decoder.take_output())
        return items

    def service(self, monotonic: float) -> None:
        if self._decoder is not None:
            self._write(self._decoder.poll(monotonic))

    def close(self) -> None:
        port, decoder = self._port, self._decoder
        self._port = None
        if decoder is not None:
            self._totals = self._totals + decoder.stats
            self._decoder = None
        if port is None:
            return
        try:
            if decoder is not None:
                goodbye = decoder.stop()
                if goodbye:
                    port.write(goodbye)
                    port.flush()
        except (serial.SerialException, OSError):
            pass
        try:
            port.close()
        except (serial.SerialException, OSError):
            pass

    def cancel(self) -> None:
        port = self._port
        if port is not None and hasattr(port, "cancel_read"):
            try:
                port.cancel_read()
            except (serial.SerialException, OSError):
                pass


class AcquisitionListener(Protocol):
    """What a worker tells the rest of Vigil (called from the worker thread)."""

    def items_received(self, items: list[Item]) -> None:
        """A batch of items, in arrival order, including condition changes."""

    def link_changed(self, state: LinkState, detail: str, attempt: int) -> None:
        """The link moved to ``state``; ``attempt`` counts reconnect attempts since the loss."""


class AcquisitionWorker(threading.Thread):
    """Runs one :class:`Link` until :meth:`stop`.

    Emits to every listener: batches of items (never one call per sample), link state changes,
    and synthetic conditions in the item stream: ``connection_lost`` (active while the device
    is unreachable) and ``stale_data`` (no valid numerics or waveform for 2x the expected
    interval while connected). When the link drops, every device condition it had reported is
    ended, since nothing is known about the device any more.
    """

    def __init__(self, link: Link, listeners: Sequence[AcquisitionListener] = (),
                 backoff: Sequence[float] = BACKOFF, read_timeout: float = 0.05) -> None:
        super().__init__(name=f"acquisition {link.source}", daemon=True)
        self.link = link
        self.listeners = list(listeners)
        self.backoff = tuple(backoff) or (1.0,)
        self.read_timeout = read_timeout
        self.state = LinkState.CONNECTING
        self.reconnect_attempts = 0
        self._halt = threading.Event()
        self._active: set[str] = set()          # device condition codes reported by the link
        self._last_valid = time.monotonic()
        self._ever_connected = False

    # ------------------------------------------------------------------ control
    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the worker to finish and wait up to ``timeout`` s; True if it has finished."""
        self._halt.set()
        self.link.cancel()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
        return not self.is_alive()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._halt.is_set()

    # ------------------------------------------------------------------ plumbing
    def _emit(self, items: list[Item]) -> None:
        if not items:
            return
        for listener in self.listeners:
            try:
                listener.items_received(items)
            except Exception:  # a faulty listener must not stop acquisition
                log.exception("listener failed on a batch from %s", self.link.source)

    def _set_state(self, state: LinkState, detail: str = "") -> None:
        self.state = state
        for listener in self.listeners:
            try:
                listener.link_changed(state, detail, self.reconnect_attempts)
            except Exception:
                log.exception("listener failed on a link change of %s", self.link.source)

    def _condition(self, code: str, active: bool, text: str = "", at: datetime | None = None) -> DeviceCondition:
        if active:
            self._active.add(code)
        else:
            self._active.discard(code)
        return DeviceCondition(code=code, active=active, text=text or condition_text(code),
                               source=self.link.source, time=at or self.link.clock())

    def _track(self, items: list[Item]) -> list[Item]:
        out: list[Item] = []
        valid = False
        for item in items:
            if isinstance(item, DeviceCondition):
                if item.active:
                    self._active.add(item.code)
                else:
                    self._active.discard(item.code)
            elif isinstance(item, WaveformChunk) or (isinstance(item, NumericObservation) and item.value is not None):
                valid = True
            out.append(item)
        if valid:
            self._last_valid = time.monotonic()
            if "stale_data" in self._active:
                out.insert(0, self._condition("stale_data", False))
        return out

    def _check_stale(self) -> None:
        limit = 2.0 * max(self.link.expected_interval, 0.25)
        if "stale_data" not in self._active and time.monotonic() - self._last_valid > limit:
            self._emit([self._condition(
                "stale_data", True, f"No valid data from the device for {limit:g} s")])

    def _drop_link(self, reason: str, at: datetime | None = None) -> None:
        self.link.close()
        ended: list[Item] = [self._condition(code, False, at=at) for code in sorted(self._active - {"connection_lost"})]
        ended.append(self._condition("connection_lost", True, f"Device connection lost: {reason}", at=at))
        self._emit(ended)
        self._set_state(LinkState.LOST, reason)

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        self._set_state(LinkState.CONNECTING, self.link.source)
        while not self._halt.is_set():
            try:
                self.link.open()
            except OSError as exc:
                if self.state is not LinkState.LOST:
                    self._drop_link(str(exc))
                self._wait_backoff(str(exc))
                continue
            restored = self._ever_connected or self.reconnect_attempts > 0
            self._ever_connected = True
            self.reconnect_attempts = 0
            self._last_valid = time.monotonic()
            if "connection_lost" in self._active:
                self._emit([self._condition("connection_lost", False, "Device connection restored")])
            self._set_state(LinkState.CONNECTED, "restored" if restored else "")
            try:
                self._pump()
            except OSError as exc:
                if not self._halt.is_set():
                    self._drop_link(str(exc), getattr(exc, "at", None))
                    self._wait_backoff(str(exc))
        self.link.close()
        self._set_state(LinkState.STOPPED)

    def _pump(self) -> None:
        while not self._halt.is_set():
            items = self.link.read(self.read_timeout)
            if self._halt.is_set():
                return
            self._emit(self._track(items))
            self.link.service(time.monotonic())
            self._check_stale()

    def _wait_backoff(self, reason: str) -> None:
        delay = self.backoff[min(self.reconnect_attempts, len(self.backoff) - 1)]
        self.reconnect_attempts += 1
        self._set_state(LinkState.LOST, f"{reason}; retry {self.reconnect_attempts} in {delay:g} s")
        self._halt.wait(delay / max(self.link.time_scale, 1e-3))
