"""The decoder contract every device protocol implements, and helpers shared by all of them.

A decoder is the *host side* of one wire protocol: it turns the bytes a monitor sends into
:mod:`drivers.model` items and, for protocols that need it, says which bytes Vigil must send
(association, confirmations, polls, release). It is incremental (bytes may arrive split at any
point), pure (no I/O, no threads, no Qt) and never raises on bad bytes: it skips them, counts them
in :class:`DecoderStats`, and resynchronises.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import ClassVar, Generic, TypeVar

from drivers.model import DeviceAttribute, DeviceCondition, Item, utc_now

#: Short human texts for every condition code a decoder or the acquisition worker reports.
CONDITION_TEXTS: dict[str, str] = {
    "no_sensor": "No sensor connected",
    "sensor_off": "Sensor off patient",
    "defective_sensor": "Defective sensor",
    "unrecognised_sensor": "Unrecognised sensor",
    "incompatible_sensor": "Incompatible sensor",
    "sensor_expired": "Sensor expired",
    "low_perfusion": "Low perfusion",
    "marginal_perfusion": "Marginal perfusion",
    "pulse_search": "Pulse search",
    "interference": "Interference detected",
    "artifact": "Motion artifact",
    "out_of_track": "Pulse out of track",
    "ambient_light": "Too much ambient light",
    "low_signal_quality": "Low signal quality",
    "no_cable": "No patient cable",
    "cable_expired": "Patient cable expired",
    "incompatible_cable": "Incompatible patient cable",
    "unrecognised_cable": "Unrecognised patient cable",
    "defective_cable": "Defective patient cable",
    "calibrating": "Calibrating",
    "emitter_temperature": "Sensor emitter temperature fault",
    "current_limit": "Sensor current limit",
    "low_battery": "Device battery low",
    "demo_data": "Device is sending demo data",
    "device_alarm": "Alarm active on the device",
    "device_alarm_silenced": "Alarm silenced on the device",
    "device_spo2_high": "Device alarm: SpO2 high",
    "device_spo2_low": "Device alarm: SpO2 low",
    "device_pulse_high": "Device alarm: pulse high",
    "device_pulse_low": "Device alarm: pulse low",
    "cuff_error": "NIBP cuff error",
    "ecg_leads_off": "ECG leads off",
    "wrong_patient": "Messages for another bed or patient refused",
    "command_rejected": "Device rejected a command",
    "association_refused": "Monitor refused the data-export association",
    "association_released": "Monitor ended the data-export association",
    "stale_data": "No valid data from the device",
    "connection_lost": "Device connection lost",
    "acquisition_stopped": "No data: reading the device stopped (Vigil is restarting it)",
    "data_unreadable": "Data unreadable: check cable and settings",
}


def condition_text(code: str) -> str:
    """The human text for ``code`` (the code itself, spaced, when unknown)."""
    return CONDITION_TEXTS.get(code) or code.replace("_", " ").capitalize()


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Line settings a protocol needs on a serial port (passed to ``serial.serial_for_url``)."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False

    def as_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``serial.serial_for_url``."""
        return asdict(self)


@dataclass(slots=True)
class DecoderStats:
    """Running counts of what a decoder did with its input. ``values_dropped_unit``: numerics whose
    value was not passed on because the device sent it in a unit Vigil cannot convert to the
    catalogue unit (the observation is still emitted, without a value and flagged invalid).
    ``decoder_errors``: reads the decoder failed on with an unexpected exception (a fault in Vigil,
    counted by the link, which restarts; see ``drivers.acquisition.SerialLink``)."""

    bytes_in: int = 0
    frames_decoded: int = 0
    frames_rejected: int = 0
    bytes_skipped: int = 0
    values_dropped_unit: int = 0
    decoder_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return asdict(self)

    def __add__(self, other: "DecoderStats") -> "DecoderStats":
        """The counts of both (e.g. over several connections), field by field."""
        return DecoderStats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


class ConditionTracker:
    """Turns "which conditions are active now" into on/off change items.

    ``update(active, time, managed)`` compares ``active`` with the previous state for the codes
    in ``managed`` (all codes seen by this tracker when ``managed`` is None) and returns one
    :class:`DeviceCondition` per change. Codes outside ``managed`` keep their state, so one
    decoder can track several independent status words.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._active: set[str] = set()

    @property
    def active(self) -> frozenset[str]:
        """Codes active now."""
        return frozenset(self._active)

    def update(
        self, active: Iterable[str], time: datetime, managed: Iterable[str] | None = None
    ) -> list[DeviceCondition]:
        """Record the new state; return the changes (activations first, in sorted order)."""
        now_active = set(active)
        scope = set(managed) if managed is not None else (self._active | now_active)
        now_active &= scope
        before = self._active & scope
        changes = [
            DeviceCondition(code=code, active=True, text=condition_text(code), source=self.source, time=time)
            for code in sorted(now_active - before)
        ] + [
            DeviceCondition(code=code, active=False, text=condition_text(code), source=self.source, time=time)
            for code in sorted(before - now_active)
        ]
        self._active = (self._active - scope) | now_active
        return changes

    def clear(self, time: datetime) -> list[DeviceCondition]:
        """End every active condition (e.g. when the link goes down)."""
        return self.update((), time)


class AttributeTracker:
    """Emits a :class:`DeviceAttribute` when a named value first appears or changes."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[str, str] = {}

    def update(self, name: str, value: str, time: datetime) -> DeviceAttribute | None:
        """Return an attribute item if ``value`` is new for ``name``, else None."""
        if self.values.get(name) == value:
            return None
        self.values[name] = value
        return DeviceAttribute(name=name, value=value, source=self.source, time=time)


_F = TypeVar("_F")

#: Frames in a row, each consistent with the one before, that a :class:`SyncGate` needs before it
#: believes a stream (at the start, and again after anything was rejected or skipped).
SYNC_FRAMES = 3
#: Largest change between two consecutive once-a-second readings that a protocol without a checksum
#: believes: SpO2 in points, pulse rate in bpm (a real change larger than this is believed one
#: frame later, when the frames after it agree with it; see :class:`SyncGate`).
MAX_STEP_SPO2 = 4.0
MAX_STEP_PR = 15.0


class SyncGate(Generic[_F]):
    """Line noise never becomes vital signs: the gate a protocol without a checksum puts its frames
    through once each has passed the format's own structural checks.

    A frame is *consistent* when ``consistent(previous, frame)`` holds for the frame before it (the
    protocol says what may change between two frames: a device clock that advances by a second,
    values that move as a patient's do). :meth:`admit` returns the frames to emit now: none
    until ``needed`` frames in a row are consistent (they are then all released, in order, so
    nothing is lost, only delayed), then each consistent frame at once. A frame that is not
    consistent with the one before is rejected (the caller counts it) and, like a frame that does
    not follow the previous one on the wire (``follows`` False: bytes were skipped between them),
    starts the count again. Pure; never raises unless ``consistent`` does.
    """

    def __init__(self, consistent: Callable[[_F, _F], bool], needed: int = SYNC_FRAMES) -> None:
        self.consistent = consistent
        self.needed = max(1, needed)
        self._last: _F | None = None
        self._held: list[_F] = []
        self.synced = False

    def reset(self) -> None:
        """Forget the stream (a break on the wire, a new connection)."""
        self._last, self._held, self.synced = None, [], False

    def admit(self, frame: _F, follows: bool = True) -> tuple[list[_F], bool]:
        """(frames to emit now, whether ``frame`` was rejected as inconsistent)."""
        if not follows:
            self.reset()
        if self._last is not None and not self.consistent(self._last, frame):
            self.reset()
            return [], True
        self._last = frame
        if self.synced:
            return [frame], False
        self._held.append(frame)
        if len(self._held) < self.needed:
            return [], False
        held, self._held, self.synced = self._held, [], True
        return held, False


def steady(before: float | None, after: float | None, step: float) -> bool:
    """True when two consecutive readings differ by at most ``step`` (or either is missing)."""
    return before is None or after is None or abs(after - before) <= step


class WaveClock:
    """Start times of consecutive waveform chunks, per channel, for decoders of devices that
    send no sample clock.

    A chunk that follows the previous one of its channel starts where that one ended, as long as
    its end stays within ``tolerance`` seconds of the read time; otherwise (first chunk, lost
    data, drift of the device's clock) it is re-anchored to end at the read time. Each decision
    uses only the read time and the previous chunk, so it does not depend on read boundaries.
    """

    def __init__(self, tolerance: float = 1.0) -> None:
        self.tolerance = timedelta(seconds=tolerance)
        self._next: dict[str, datetime] = {}
        self._spans: dict[float, timedelta] = {}

    def start(self, channel: str, now: datetime, duration: float) -> datetime:
        """The start time of a chunk of ``duration`` seconds of ``channel`` read at ``now``."""
        return self.starts([(channel, duration)], now)[0]

    def starts(self, chunks: Iterable[tuple[str, float]], now: datetime) -> list[datetime]:
        """:meth:`start` for consecutive (channel, duration) chunks read at ``now``, in order."""
        spans, following, tolerance = self._spans, self._next, self.tolerance
        out = []
        for channel, duration in chunks:
            span = spans.get(duration)
            if span is None:
                if len(spans) > 256:
                    spans.clear()
                span = spans[duration] = timedelta(seconds=duration)
            begin = following.get(channel)
            if begin is None:
                begin = now - span
                end = now
            else:
                end = begin + span
                if abs(end - now) > tolerance:
                    begin, end = now - span, now
            following[channel] = end
            out.append(begin)
        return out


class Decoder(ABC):
    """Host side of one device protocol. Subclasses set the class attributes and ``feed``; the
    protocol's title, transport and options are in its row of :mod:`drivers.registry`.

    ``source`` names the device in every item (e.g. ``"masimo:/dev/ttyUSB0"``). ``clock``
    returns the aware UTC time stamped on items as their ``sample_time``; it is called once per
    :meth:`feed`, so every frame completed by one read carries that read's time.
    """

    #: Registry name, e.g. "masimo".
    protocol: ClassVar[str]
    #: Line settings the device uses by default.
    serial_defaults: ClassVar[SerialSettings] = SerialSettings()
    #: Seconds between fresh numerics when all is well; 2x this without valid data is stale
    #: (a decoder may set its own, e.g. from a URL option).
    expected_interval: float = 1.0

    def __init__(self, source: str = "", clock: Callable[[], datetime] = utc_now) -> None:
        self.source = source or self.protocol
        self.clock = clock
        self.stats = DecoderStats()
        self.conditions = ConditionTracker(self.source)
        self.attributes = AttributeTracker(self.source)
        self._outbox = bytearray()

    @abstractmethod
    def feed(self, data: bytes) -> list[Item]:
        """Consume ``data`` (any length, any split) and return the items it completed.

        Never raises on bad bytes: malformed frames count as ``frames_rejected``, bytes that
        belong to no frame as ``bytes_skipped``.
        """

    def start(self) -> bytes:
        """Bytes to send right after the port opens (association, format selection)."""
        return b""

    def poll(self, monotonic: float) -> bytes:
        """Bytes due at monotonic time ``monotonic`` seconds (keep-alive polls); called often."""
        return b""

    def stop(self) -> bytes:
        """Bytes to send before the port closes (release request)."""
        return b""

    def read_hint(self) -> tuple[int, float]:
        """How many more bytes this decoder needs before it can complete its next update, and
        about how long the device takes to send them (seconds). The link reads that many at
        once, waking once per update instead of once per byte; the update is delivered the moment
        its last byte arrives. Default ``(1, 0.0)``: read whatever is there."""
        return 1, 0.0

    def take_output(self) -> bytes:
        """Bytes ``feed`` decided must be sent (confirmations, replies); empties the queue."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def queue_output(self, data: bytes) -> None:
        """For subclasses: queue bytes for :meth:`take_output`."""
        self._outbox += data

    @property
    def hold_s(self) -> float:
        """Longest a valid reading may be held back before it is emitted (seconds): 0, except for the
        protocols without a checksum, which believe a stream only after a few consistent frames
        (:class:`SyncGate`); the acquisition worker allows it before data count as stale."""
        return 0.0

    @property
    def has_valid_data(self) -> bool:
        """True once at least one frame was decoded."""
        return self.stats.frames_decoded > 0


@dataclass(slots=True)
class DecodeResult:
    """Everything decoded from a complete capture (see :func:`decode_all`)."""

    items: list[Item] = field(default_factory=list)
    stats: DecoderStats = field(default_factory=DecoderStats)


def decode_all(decoder: Decoder, data: bytes, chunk: int = 65536) -> DecodeResult:
    """Feed ``data`` to ``decoder`` in ``chunk``-sized reads and collect every item."""
    result = DecodeResult(stats=decoder.stats)
    for offset in range(0, len(data), chunk):
        result.items.extend(decoder.feed(data[offset:offset + chunk]))
    return result
