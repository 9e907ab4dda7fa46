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
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import serial

from drivers.base import Decoder, DecoderStats, condition_text
from drivers.errors import DeviceError
from drivers.model import DeviceCondition, Item, NumericObservation, WaveformChunk
from drivers.serialport import PORT_ERRORS, open_serial, port_error_text
from drivers.timebase import Timeline, default_timeline

log = logging.getLogger(__name__)

#: Seconds to wait before reconnect attempt 1, 2, 3…; the last value repeats.
BACKOFF: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)


class LinkState(str, enum.Enum):
    """Where a device link is."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    LOST = "lost"          # was connected (or never could be), retrying with back-off
    STOPPED = "stopped"


#: A worker promises to report back (a read returned, a reconnect attempt began) within this many
#: seconds while it reads; the pipeline's watchdog raises ``acquisition_stopped`` when it does not.
REPORT_EVERY_S = 2.0
#: The data-unreadable watch (see :class:`UnreadableWatch`): its window (seconds) and the rejected
#: frames within it that make a burst.
UNREADABLE_WINDOW_S = 10.0
UNREADABLE_BURST = 5
#: A serial port that has received no byte at all for this long (seconds; at least 5 update
#: intervals) is closed and opened again: a USB adapter re-enumerated at the same path, or a
#: /dev/serial/by-id/… link now pointing at another node, is then followed.
SILENT_REOPEN_S = 10.0
#: Faults further apart than this (seconds of a working link) do not slow reconnection down.
FAULTS_FORGOTTEN_S = 60.0
#: What opening a port may raise (a bad setting: ValueError), and reading it (a port closed under a
#: blocked read by cancel() can surface as TypeError/AttributeError).
_OPEN_ERRORS: tuple[type[Exception], ...] = PORT_ERRORS + (ValueError,)
_READ_ERRORS: tuple[type[Exception], ...] = PORT_ERRORS + (TypeError, AttributeError)
#: Bytes of a read shown (as hex) in the log when the decoder fails on it.
FAULT_BYTES_LOGGED = 256


class LinkError(DeviceError, OSError):
    """The device could not be reached or went away (unplugged, port vanished, cable pulled).
    ``at``: when it went away, if the link knows better than "now" (aware UTC)."""

    def __init__(self, *args: object, at: datetime | None = None) -> None:
        super().__init__(*args)
        self.at = at


class DecoderFault(LinkError):
    """The decoder raised an unexpected exception on ``data`` (a fault in Vigil, never the device's):
    the link is restarted with a fresh decoder, like a device that went away."""

    def __init__(self, *args: object, data: bytes = b"") -> None:
        super().__init__(*args)
        self.data = data


def hex_excerpt(data: bytes, limit: int = FAULT_BYTES_LOGGED) -> str:
    """``data`` as spaced hex, at most ``limit`` bytes of it (then how many there were)."""
    text = data[:limit].hex(" ")
    return text if len(data) <= limit else f"{text} … ({len(data)} bytes)"


class Link(ABC):
    """One device connection, used only from the worker thread (except :meth:`cancel`)."""

    #: Names the device in items and messages, e.g. "masimo:/dev/ttyUSB0".
    source: str
    #: Seconds between fresh data when all is well.
    expected_interval: float = 1.0
    #: Device seconds per real second (the simulated monitor runs faster): reconnect attempts
    #: are paced in device time.
    time_scale: float = 1.0
    #: Seconds :meth:`open` may take (the watchdog allows this long before the first read).
    open_timeout_s: float = 10.0
    #: Longest a valid reading may be held back by the decoder (``Decoder.hold_s``), seconds.
    hold_s: float = 0.0
    #: Longest wait between reconnect attempts (seconds; None: the worker's back-off as it is). A
    #: serial port costs nothing to try again: once a second, so that a monitor plugged back in is
    #: read within a second, not after the back-off's 8 s.
    max_backoff_s: float | None = None
    #: Seconds without a single byte after which the worker closes and reopens the link (None:
    #: never; a serial port: :data:`SILENT_REOPEN_S`). Needs :attr:`stats` (its ``bytes_in``).
    reopen_silent_s: float | None = None
    _timeline: Timeline | None = None

    @property
    def timeline(self) -> Timeline:
        """The timeline this link's items are stamped on: the process's (:mod:`drivers.timebase`),
        unless a test sets its own."""
        return self._timeline or default_timeline()

    @timeline.setter
    def timeline(self, value: Timeline) -> None:
        self._timeline = value

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
        """Now in the time base of this device's items (aware UTC): :attr:`timeline` (monotonic,
        labelled with the wall clock); the simulator's runs faster."""
        return self.timeline.now()

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
        self.hold_s = probe.hold_s
        self.reopen_silent_s = max(SILENT_REOPEN_S, 5 * probe.expected_interval + probe.hold_s)
        self.max_backoff_s = 1.0
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
        except _OPEN_ERRORS as exc:
            raise LinkError(port_error_text(self.serial_url, exc)) from exc
        self._port = port
        self._decoder = self.decoder_factory()
        self._decoder.clock = self.clock   # items on the link's timeline, never the raw wall clock
        self._write(self._decoder.start())

    def _write(self, data: bytes) -> None:
        if data and self._port is not None:
            try:
                self._port.write(data)
            except PORT_ERRORS as exc:
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
        except _READ_ERRORS as exc:
            # pyserial reports an unplugged device as SerialException/OSError, a setting the
            # system refuses (a new read timeout) as termios.error; a port closed under a blocked
            # read by cancel() can surface as TypeError/AttributeError.
            raise LinkError(f"{self.serial_url}: {exc}") from exc
        if not data:
            return []
        try:
            items = decoder.feed(data)
        except Exception as exc:  # a decoder must never raise; if it does, Vigil restarts the link
            decoder.stats.decoder_errors += 1
            log.error("%s: the %s decoder failed on a read of %d bytes (restarting the link): %s",
                      self.serial_url, getattr(decoder, "protocol", "?"), len(data), hex_excerpt(data), exc_info=True)
            raise DecoderFault(f"data from the device could not be decoded ({type(exc).__name__}, a fault in Vigil); "
                               "restarting the link", data=data) from exc
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
        except PORT_ERRORS:
            pass
        try:
            port.close()
        except PORT_ERRORS:
            pass

    def cancel(self) -> None:
        port = self._port
        if port is not None and hasattr(port, "cancel_read"):
            try:
                port.cancel_read()
            except PORT_ERRORS:
                pass


class _Silent(DeviceError):
    """Raised inside the worker's loop: the link has received nothing for too long."""


class UnreadableWatch:
    """Whether what a device sends is unreadable, judged from its decoder's counts.

    :meth:`update` takes the counts (cumulative, sampled about once a second) and returns True when
    input becomes unreadable, False when it is readable again, None when nothing changed.
    Unreadable: within the last ``window_s`` seconds, at least ``burst`` frames were rejected and
    at least a quarter as many as were decoded (a burst of line noise, a loose connector), or, over
    a whole window, bytes arrived and not one frame was decoded (a wrong baud rate or data
    format). Readable again: over a whole window, frames were decoded and fewer than one in twenty
    was rejected.
    """

    def __init__(self, window_s: float = UNREADABLE_WINDOW_S, burst: int = UNREADABLE_BURST) -> None:
        self.window_s = window_s
        self.burst = burst
        self.active = False
        self._samples: deque[tuple[float, int, int, int, int]] = deque()

    def update(self, now: float, stats: DecoderStats) -> bool | None:
        """Judge the counts ``stats`` at monotonic time ``now`` (seconds)."""
        sample = (now, stats.bytes_in, stats.frames_decoded, stats.frames_rejected, stats.bytes_skipped)
        samples = self._samples
        samples.append(sample)
        while len(samples) > 1 and samples[1][0] <= now - self.window_s:
            samples.popleft()
        first = samples[0]
        span = now - first[0]
        bytes_in, decoded, rejected, skipped = (sample[i] - first[i] for i in range(1, 5))
        full = span >= self.window_s
        bad = (rejected >= self.burst and 4 * rejected >= decoded) or \
            (full and bytes_in >= 64 and decoded <= 0 and (rejected > 0 or skipped > 0))
        good = full and decoded > 0 and 20 * rejected < decoded
        if bad and not self.active:
            self.active = True
            return True
        if good and self.active:
            self.active = False
            return False
        return None


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
    is unreachable), ``stale_data`` (no valid numerics or waveform for 2x the expected
    interval while connected) and ``data_unreadable`` (the decoder keeps rejecting what arrives:
    :class:`UnreadableWatch`). When the link drops, every device condition it had reported is
    ended, since nothing is known about the device any more. A link that receives no byte at all
    for :attr:`Link.reopen_silent_s` (a serial port left connected but silent) is closed and
    opened again at once (counted in :attr:`reopens`; the state detail says "reopened"), so a USB
    adapter re-enumerated at the same path or a ``/dev/serial/by-id`` link that now points at
    another node is followed; if it cannot be opened, that is a lost connection.

    Nothing stops it but :meth:`stop`: an unexpected exception from the link or its decoder (a
    fault in Vigil) is logged with its traceback (a decoder's with the bytes it failed on),
    counted in :attr:`faults`, reported as a lost connection, and the link is restarted, with
    back-off growing while faults repeat. :attr:`due` says by when it will report back, for a
    watchdog outside it (``monitor.app.pipeline``), which also sees the thread die.
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
        self._last_valid = self._connected_at = self._monotonic()
        self._ever_connected = False
        #: Unexpected exceptions met so far (each logged and followed by a restart of the link).
        self.faults = 0
        self._faults_in_row = 0
        #: Monotonic time by which the worker will report back (see :data:`REPORT_EVERY_S`).
        self.due = self._last_valid + link.open_timeout_s
        self._unreadable = UnreadableWatch()
        self._next_watch = 0.0
        self._bytes_seen = -1          # bytes_in at the last check, and when it last grew
        self._heard_at = self._last_valid
        #: Times the link was reopened because it had gone silent.
        self.reopens = 0
        self._reopened = ""

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
    def _monotonic(self) -> float:
        return self.link.timeline.monotonic()

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
            self._last_valid = self._monotonic()
            if "stale_data" in self._active:
                out.insert(0, self._condition("stale_data", False))
        return out

    def _check_stale(self) -> None:
        # twice the update interval, plus what a protocol without a checksum holds back while it
        # (re)gains confidence in the stream (drivers.base.SyncGate)
        limit = 2.0 * max(self.link.expected_interval, 0.25) + self.link.hold_s
        if "stale_data" not in self._active and self._monotonic() - self._last_valid > limit:
            self._emit([self._condition(
                "stale_data", True, f"No valid data from the device for {limit:g} s")])

    def _check_silence(self) -> None:
        """A port that sends nothing at all for :attr:`Link.reopen_silent_s` is reopened."""
        limit, stats = self.link.reopen_silent_s, self.link.stats
        if limit is None or stats is None:
            return
        now = self._monotonic()
        if stats.bytes_in != self._bytes_seen:
            self._bytes_seen, self._heard_at = stats.bytes_in, now
        elif now - self._heard_at > limit:
            raise _Silent(f"no byte from the device for {limit:g} s")

    def _reopen(self, reason: str) -> None:
        """Close a silent link (what it reported about the device ends; stale data goes on) so the
        next turn of the loop opens it again."""
        self.reopens += 1
        log.warning("%s: %s; closing and reopening the port", self.link.source, reason)
        self._close_link()
        ended: list[Item] = [self._condition(code, False)
                             for code in sorted(self._active - {"connection_lost", "stale_data"})]
        self._emit(ended)
        self._reopened = reason

    def _check_unreadable(self) -> None:
        """Once a second: ``data_unreadable`` on or off from the decoder's counts."""
        now = self._monotonic()
        stats = self.link.stats
        if stats is None or now < self._next_watch:
            return
        self._next_watch = now + 1.0
        change = self._unreadable.update(now, stats)
        if change is not None:
            self._emit([self._condition("data_unreadable", change)])

    def _drop_link(self, reason: str, at: datetime | None = None) -> None:
        self._close_link()
        ended: list[Item] = [self._condition(code, False, at=at) for code in sorted(self._active - {"connection_lost"})]
        ended.append(self._condition("connection_lost", True, f"Device connection lost: {reason}", at=at))
        self._emit(ended)
        self._set_state(LinkState.LOST, reason)

    def _close_link(self) -> None:
        try:
            self.link.close()
        except Exception:  # close() must not raise; if it does, the next open() is what matters
            log.exception("closing %s failed", self.link.source)

    def _reason(self, exc: Exception) -> str:
        """What to tell the user about ``exc``; an unexpected one (a fault in Vigil, not the device's)
        is logged with its traceback and counted, and slows the reconnect attempts down."""
        if isinstance(exc, OSError) and not isinstance(exc, DecoderFault):
            return str(exc)
        self._faults_in_row += 1
        self.faults += 1
        if isinstance(exc, DecoderFault):   # the link logged it with the bytes
            return str(exc)
        log.error("reading %s failed with an unexpected %s (a fault in Vigil): restarting the link",
                  self.link.source, type(exc).__name__, exc_info=exc)
        return f"a fault in Vigil ({type(exc).__name__}: {exc}); restarting the link"

    def _beat(self, allowance: float) -> None:
        """Promise the watchdog to report back within ``allowance`` seconds."""
        self.due = self._monotonic() + allowance

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:   # not an Exception (caught below): the thread ends; the watchdog sees it
            log.critical("the acquisition thread of %s ended: %r", self.link.source, exc)
            raise

    def _run(self) -> None:
        self._set_state(LinkState.CONNECTING, self.link.source)
        while not self._halt.is_set():
            self._beat(self.link.open_timeout_s)
            try:
                self.link.open()
            except Exception as exc:  # OSError: the device is not there; anything else: a fault in Vigil
                reason = self._reason(exc)
                if self.state is not LinkState.LOST:
                    self._drop_link(reason)
                self._wait_backoff(reason)
                continue
            restored = self._ever_connected or self.reconnect_attempts > 0
            self._ever_connected = True
            self.reconnect_attempts = 0
            self._connected_at = self._last_valid = self._heard_at = self._monotonic()
            self._bytes_seen = -1
            self._unreadable = UnreadableWatch()
            if "connection_lost" in self._active:
                self._emit([self._condition("connection_lost", False, "Device connection restored")])
            reopened, self._reopened = self._reopened, ""
            self._set_state(LinkState.CONNECTED, f"reopened ({reopened})" if reopened else
                            "restored" if restored else "")
            try:
                self._pump()
            except _Silent as silent:
                if not self._halt.is_set():
                    self._reopen(str(silent))
            except Exception as exc:  # the device went away (OSError), or a fault in Vigil
                if not self._halt.is_set():
                    reason = self._reason(exc)
                    self._drop_link(reason, getattr(exc, "at", None))
                    self._wait_backoff(reason)
        self._close_link()
        self._set_state(LinkState.STOPPED)

    def _pump(self) -> None:
        while not self._halt.is_set():
            self._beat(REPORT_EVERY_S)
            items = self.link.read(self.read_timeout)
            if self._halt.is_set():
                return
            self._emit(self._track(items))
            now = self._monotonic()
            self.link.service(now)
            if self._faults_in_row and now - self._connected_at > FAULTS_FORGOTTEN_S:
                self._faults_in_row = 0   # the link has worked long enough: back to a quick reconnect
            self._check_stale()
            self._check_unreadable()
            self._check_silence()

    def _wait_backoff(self, reason: str) -> None:
        step = max(self.reconnect_attempts, self._faults_in_row - 1)
        delay = self.backoff[min(step, len(self.backoff) - 1)]
        if self.link.max_backoff_s is not None and not self._faults_in_row:
            delay = min(delay, self.link.max_backoff_s)
        self.reconnect_attempts += 1
        self._set_state(LinkState.LOST, f"{reason}; retry {self.reconnect_attempts} in {delay:g} s")
        pause = delay / max(self.link.time_scale, 1e-3)
        self._beat(pause + REPORT_EVERY_S)
        self._halt.wait(pause)
