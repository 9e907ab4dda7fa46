"""Host side of the Philips IntelliVue MIB/RS232 data export: associate, confirm, poll, decode.

Session (what Vigil sends is returned by :meth:`IntelliVueDecoder.start`, ``poll``, ``stop``
and queued by ``feed`` for ``take_output``):

1. ``start()`` → association request. No answer within :attr:`~IntelliVueDecoder.association_timeout`
   seconds → ``poll()`` sends it again.
2. Accept (0x0E) → wait for the monitor's MDS Create event report → queue its confirmation.
   Refuse (0x0C) → condition ``association_refused``; a new request every
   :attr:`~IntelliVueDecoder.refused_retry` seconds.
3. Associated: ``poll()`` returns an extended poll request for numerics every poll interval
   (1 s), which also keeps the association alive. Nothing at all from the monitor for
   :attr:`~IntelliVueDecoder.link_timeout` seconds → associate again.
4. Release request (0x09) or abort (0x19) from the monitor → condition ``association_released``
   (a release request is answered with a release result), then associate again.
5. ``stop()`` → release request.

Decoding never depends on that state: poll replies are decoded whenever they arrive, so a
capture that begins mid-session decodes (``vigil decode --protocol intellivue capture.bin``).

Numerics (:data:`PHYSIO_VITALS`): attribute 0x0950 (NuObsValue) and 0x094B (compound, NIBP).
Measurement state → quality: invalid (0x8000) → value None + ``INVALID`` (a value the monitor
itself calls invalid is never passed on); unavailable (0x2000) → None + ``UNAVAILABLE``;
questionable (0x4000) or calibration ongoing (0x1000) → value kept + ``QUESTIONABLE``; demo
(0x0400) or test data (0x0800) → ``DEMO`` and condition ``demo_data``. FLOAT specials: NaN →
None; NRes, ±INF (and the reserved 0x800001) → None + ``INVALID``. Units are converted to the
catalogue unit (:data:`UNITS`: pressures from kPa, hPa, mbar or Pa to mmHg; °F or K to °C; the
perfusion indicator "Perf", sent dimensionless, as it is); a unit Vigil cannot convert gives None +
``INVALID``, an attribute ``unit_unsupported.<vital>`` and one more ``stats.values_dropped_unit``.

Where several physiological ids feed one vital, one wins per poll: RR from the airway (CO2,
0x5012) over impedance RR (0x500A); temperature core > oesophageal > body > unspecified. A
source with a value beats a higher-priority one without.

NIBP: the monitor repeats its last measurement in every reply, so the three NIBP observations
are emitted only for a *new* measurement: one whose measurement time stamp (attribute 0x0990,
else 0x0991) differs from the last one seen, or, without time stamps, whose values/states
differ. The first one seen is emitted. Their ``device_time`` is the measurement time when the
monitor sends it, else the reply's time.

All observations of one poll reply (a single RORS, or a linked ROLRS series up to its LAST
message) share the sample time of the read that completed it; ``device_time`` is the reply's
absolute time stamp (BCD) when valid, else None.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import cast

from drivers.base import Decoder, SerialSettings
from drivers.intellivue import messages as m
from drivers.intellivue.framing import Unframer, build_frame
from drivers.model import Item, Quality, numeric, utc_now

#: physio_id → (vital, priority among sources of the same vital).
PHYSIO_VITALS: dict[int, tuple[str, int]] = {
    m.NOM_ECG_CARD_BEAT_RATE: ("hr", 1),
    m.NOM_PULS_OXIM_SAT_O2: ("spo2", 1),
    m.NOM_PULS_OXIM_PULS_RATE: ("pr", 1),
    m.NOM_PULS_OXIM_PERF_REL: ("pi", 1),
    m.NOM_RESP_RATE: ("rr", 1),
    m.NOM_AWAY_RESP_RATE: ("rr", 2),
    m.NOM_AWAY_CO2_ET: ("etco2", 1),
    m.NOM_TEMP: ("temp", 1),
    m.NOM_TEMP_BODY: ("temp", 2),
    m.NOM_TEMP_ESOPH: ("temp", 3),
    m.NOM_TEMP_CORE: ("temp", 4),
}
#: NIBP components (inside the 0x4A04 compound, or as separate numerics).
NIBP_VITALS: dict[int, str] = {
    m.NOM_PRESS_BLD_NONINV_SYS: "nibp_sys",
    m.NOM_PRESS_BLD_NONINV_DIA: "nibp_dia",
    m.NOM_PRESS_BLD_NONINV_MEAN: "nibp_mean",
}

_MMHG_PER_KPA = 7.500617


def _pressure(kpa_per_unit: float) -> Callable[[float], float]:
    """A converter from a pressure unit (``kpa_per_unit`` kPa each) to mmHg, to 0.01 mmHg."""
    factor = kpa_per_unit * _MMHG_PER_KPA
    return lambda value: round(value * factor, 2)


def _fahrenheit_to_celsius(value: float) -> float:
    return round((value - 32.0) * 5.0 / 9.0, 2)


def _kelvin_to_celsius(value: float) -> float:
    return round(value - 273.15, 2)


_RATE: dict[int, Callable[[float], float] | None] = {m.NOM_DIM_BEAT_PER_MIN: None, m.NOM_DIM_PULS_PER_MIN: None, m.NOM_DIM_PER_MIN: None}
#: Pressures (blood pressure, CO2) in mmHg, or in Pa, hPa, mbar (= hPa) or kPa, converted.
_PRESSURE = {m.NOM_DIM_MMHG: None, m.NOM_DIM_KILO_PA: _pressure(1.0), m.NOM_DIM_HECTO_PASCAL: _pressure(0.1),
             m.NOM_DIM_MILLI_BAR: _pressure(0.1), m.NOM_DIM_X_PASCAL: _pressure(0.001)}
#: vital → {unit code: converter to the catalogue unit (None = already in it)}. The perfusion
#: indicator "Perf" (``pi``) is a relative index the monitor sends dimensionless (0x0200), on the
#: scale of a perfusion index in % (Philips: above 1 optimal, below 0.3 marginal): taken as it is.
UNITS: dict[str, dict[int, Callable[[float], float] | None]] = {
    "hr": _RATE,
    "pr": _RATE,
    "spo2": {m.NOM_DIM_PERCENT: None},
    "pi": {m.NOM_DIM_PERCENT: None, m.NOM_DIM_DIMLESS: None},
    "rr": {m.NOM_DIM_RESP_PER_MIN: None, m.NOM_DIM_PER_MIN: None},
    "etco2": _PRESSURE,
    "nibp_sys": _PRESSURE,
    "nibp_dia": _PRESSURE,
    "nibp_mean": _PRESSURE,
    "temp": {m.NOM_DIM_DEGC: None, m.NOM_DIM_FAHR: _fahrenheit_to_celsius, m.NOM_DIM_KELVIN: _kelvin_to_celsius},
}

_WANTED = frozenset({m.NOM_ATTR_NU_VAL_OBS, m.NOM_ATTR_NU_CMPD_VAL_OBS,
                     m.NOM_ATTR_TIME_STAMP_ABS, m.NOM_ATTR_TIME_STAMP_REL})
_DEMO_BITS = m.STATE_DEMO_DATA | m.STATE_TEST_DATA
_NO_VALUE_BITS = m.STATE_INVALID | m.STATE_UNAVAILABLE
_INVALID = frozenset({Quality.INVALID})
_NO_ABS_TIME = b"\xff" * 8


def state_quality(state: int) -> frozenset[Quality]:
    """Quality flags for a measurement-state word (see the module docstring)."""
    flags: set[Quality] = set()
    if state & m.STATE_INVALID:
        flags.add(Quality.INVALID)
    if state & m.STATE_UNAVAILABLE:
        flags.add(Quality.UNAVAILABLE)
    if state & (m.STATE_QUESTIONABLE | m.STATE_CALIBRATION_ONGOING):
        flags.add(Quality.QUESTIONABLE)
    if state & _DEMO_BITS:
        flags.add(Quality.DEMO)
    return frozenset(flags)


# Session states.
IDLE = "idle"
ASSOCIATING = "associating"      # association request sent, no answer yet
CONFIGURING = "configuring"      # accepted, waiting for the MDS Create event report
ASSOCIATED = "associated"        # polling
REFUSED = "refused"              # refused; retrying slowly
RELEASING = "releasing"          # release request sent by stop()

# What one polled object carries: (NuObsValue, compound value, abs time stamp, rel time stamp).
_ObjectValues = tuple[bytes | None, bytes | None, bytes | None, bytes | None]
_IGNORED, _NUMERIC, _NIBP = 0, 1, 2
_ATTR_SLOTS = (m.NOM_ATTR_NU_VAL_OBS, m.NOM_ATTR_NU_CMPD_VAL_OBS,
               m.NOM_ATTR_TIME_STAMP_ABS, m.NOM_ATTR_TIME_STAMP_REL)


class _Template:
    """The structure of a poll reply that parsed, to recognise the next ones cheaply.

    ``mask`` covers every byte of the message except the fields that change from poll to
    poll (invoke id, poll number, sequence number, time stamps, and the values of the
    numeric and time-stamp attributes). A message of the same length whose masked bytes are
    identical has, byte for byte, the same headers, counts, lengths, attribute ids and
    static attributes, hence the same parse; its values are read at the recorded offsets.
    """

    __slots__ = ("mask", "masked", "invoke_at", "abs_at", "linked_state", "slots")

    def __init__(self, mask: int, masked: int, invoke_at: int, abs_at: int, linked_state: int,
                 slots: list[tuple[int, ...]]) -> None:
        self.mask = mask
        self.masked = masked
        self.invoke_at = invoke_at
        self.abs_at = abs_at
        self.linked_state = linked_state
        self.slots = slots

    @classmethod
    def build(cls, frame: bytes, op: m.RemoteOperation, reply: m.PollReply) -> _Template:
        invoke_at = op.body - 6
        header_at = op.body + 10  # PollMdibDataReply(Ext) after the ActionResult header
        header_len = 16 if reply.sequence_no is not None else 14  # poll_number … abs_time_stamp
        variable = [(invoke_at, invoke_at + 2), (header_at, header_at + header_len)]
        slots: list[tuple[int, ...]] = []
        for _context, _handle, attrs in reply.objects:
            if m.NOM_ATTR_NU_VAL_OBS not in attrs and m.NOM_ATTR_NU_CMPD_VAL_OBS not in attrs:
                continue
            spans = cast("dict[int, tuple[int, int]]", attrs)  # the reply was parsed with offsets=True
            slot: list[int] = []
            for aid in _ATTR_SLOTS:
                span = spans.get(aid)
                if span is None:
                    slot += (-1, -1)
                else:
                    slot += span
                    variable.append(span)
            slots.append(tuple(slot))
        mask = bytearray(b"\xff" * len(frame))
        for start, end in variable:
            mask[start:end] = bytes(end - start)
        mask_int = int.from_bytes(mask, "big")
        return cls(mask_int, int.from_bytes(frame, "big") & mask_int, invoke_at, header_at + header_len - 8,
                   op.linked_state, slots)

    def extract(self, frame: bytes) -> list[_ObjectValues]:
        """The per-object values of ``frame`` (which matches this template)."""
        return [
            (frame[a:b] if a >= 0 else None, frame[c:d] if c >= 0 else None,
             frame[e:f] if e >= 0 else None, frame[g:h] if g >= 0 else None)
            for a, b, c, d, e, f, g, h in self.slots
        ]


class IntelliVueDecoder(Decoder):
    """Host side of the IntelliVue MIB/RS232 data export protocol (MP and MX monitors).

    ``poll_interval`` is the seconds between extended polls for numerics (default 1 s, also
    :attr:`expected_interval`). ``feed`` accepts any bytes in any split and never raises;
    frames with a bad FCS/header and well-framed messages with inconsistent lengths count as
    ``frames_rejected``, bytes outside frames as ``bytes_skipped``. Timers run on the
    ``monotonic`` seconds given to :meth:`poll`.
    """

    protocol = "intellivue"
    serial_defaults = SerialSettings(115200)
    expected_interval = 1.0

    #: Seconds without an answer to the association request before it is sent again.
    association_timeout = 5.0
    #: Seconds between association requests after a refusal.
    refused_retry = 10.0
    #: Seconds without any message while associated before associating again.
    link_timeout = 10.0

    def __init__(
        self, source: str = "", clock: Callable[[], datetime] = utc_now, *, poll_interval: float | None = None
    ) -> None:
        super().__init__(source, clock)
        self.poll_interval = float(poll_interval or self.expected_interval)
        self._unframer = Unframer()
        self._pdu_rejected = 0
        self.state = IDLE
        self._started = False
        self._timer: float | None = None      # monotonic start of the current wait
        self._timer_reset = False              # feed() asks poll() to restart the wait
        self._send_association = False         # feed() asks poll() to associate now
        self._next_poll: float | None = None
        self._last_rx: float | None = None
        self._rx_since_poll = False
        self._invoke_id = 0
        self._poll_number = 0
        # One poll reply (or linked series) being collected.
        self._pending: dict[str, tuple] = {}  # vital → the winning _classify() tuple
        self._pending_invoke: int | None = None
        self._pending_nibp: list[tuple[int, int, int, int]] = []
        self._pending_nibp_key: list[object] = []
        self._pending_nibp_stamp: bytes | None = None
        self._pending_demo = False
        self._pending_numerics = False
        self._nibp_key: object = None
        self._demo_active = False
        self._rejected_active = False
        self._abs_raw = _NO_ABS_TIME
        self._abs_time: datetime | None = None
        self._templates: dict[int, _Template] = {}
        self._nu_cache: dict[bytes, tuple] = {}        # NuObsValue bytes → _classify()
        self._compound_cache: dict[bytes, tuple[bytes, ...]] = {}

    # --- what Vigil sends -------------------------------------------------------------------

    def start(self) -> bytes:
        """The association request (framed). Resets the session state."""
        self._started = True
        self._enter(ASSOCIATING)
        return build_frame(m.build_association_request())

    def poll(self, monotonic: float) -> bytes:
        """Bytes due now: re-sent association requests, or an extended poll once associated."""
        if self._rx_since_poll:
            self._rx_since_poll = False
            self._last_rx = monotonic
        if self._timer_reset or self._timer is None:
            self._timer_reset = False
            self._timer = monotonic
        if not self._started:
            return b""
        state = self.state
        if self._send_association:
            self._send_association = False
            return self._associate(monotonic)
        if state == ASSOCIATED:
            if self._last_rx is not None and monotonic - self._last_rx > self.link_timeout:
                return self._associate(monotonic)
            if self._next_poll is None or monotonic >= self._next_poll:
                self._next_poll = monotonic + self.poll_interval
                return self.poll_request()
            return b""
        if state in (ASSOCIATING, CONFIGURING):
            if monotonic - self._timer >= self.association_timeout:
                return self._associate(monotonic)
        elif state == REFUSED and monotonic - self._timer >= self.refused_retry:
            return self._associate(monotonic)
        return b""

    def _associate(self, monotonic: float) -> bytes:
        self._enter(ASSOCIATING)
        self._timer_reset = False
        self._timer = monotonic
        return build_frame(m.build_association_request())

    def stop(self) -> bytes:
        """The release request (framed), or nothing if :meth:`start` was never called."""
        if not self._started:
            return b""
        self._started = False
        self._enter(RELEASING)
        return build_frame(m.RELEASE_REQUEST)

    def poll_request(self) -> bytes:
        """A framed extended poll request for all numerics (next invoke id and poll number)."""
        self._invoke_id = (self._invoke_id + 1) & 0xFFFF
        self._poll_number = (self._poll_number + 1) & 0xFFFF
        return build_frame(m.build_poll_request(self._invoke_id, self._poll_number))

    def _enter(self, state: str) -> None:
        self.state = state
        self._timer_reset = True
        self._next_poll = None
        self._last_rx = None

    # --- what the monitor sends -------------------------------------------------------------

    def feed(self, data: bytes) -> list[Item]:
        """Decode ``data``; return observations, conditions and attributes it completed."""
        stats = self.stats
        stats.bytes_in += len(data)
        unframer = self._unframer
        frames = unframer.feed(data)
        items: list[Item] = []
        if frames:
            self._rx_since_poll = True
            now = self.clock()
            for frame in frames:
                try:
                    first = frame[0]
                    if first == m.DATA_EXPORT_FIRST_BYTE:
                        self._data_export(frame, now, items)
                    elif first in m.SESSION_TYPES:
                        self._session(first, frame, now, items)
                    else:
                        raise m.PduError("unknown message type")
                except (ValueError, struct.error, IndexError):  # PduError is a ValueError
                    self._pdu_rejected += 1
                    continue
                stats.frames_decoded += 1
        stats.frames_rejected = unframer.frames_rejected + self._pdu_rejected
        stats.bytes_skipped = unframer.bytes_skipped
        return items

    def _session(self, kind: int, frame: bytes, now: datetime, items: list[Item]) -> None:
        m.parse_session(frame)  # the LI length must be consistent
        if kind == m.AC_SPDU_SI:
            items.extend(self.conditions.update(
                (), now, ("association_refused", "association_released")))
            if self.state != ASSOCIATED:
                self._enter(CONFIGURING)
        elif kind == m.RF_SPDU_SI:
            items.extend(self.conditions.update(
                ("association_refused",), now, ("association_refused",)))
            self._enter(REFUSED)
        elif kind in (m.FN_SPDU_SI, m.AB_SPDU_SI) or (kind == m.DN_SPDU_SI and self.state != RELEASING):
            if kind == m.FN_SPDU_SI:
                self.queue_output(build_frame(m.RELEASE_RESULT))
            if self._started:
                items.extend(self.conditions.update(
                    ("association_released",), now, ("association_released",)))
                self._enter(ASSOCIATING)
                self._send_association = True
            else:
                self._enter(IDLE)
        elif kind == m.DN_SPDU_SI:
            self._enter(IDLE)
        # CN_SPDU_SI: our own association request, seen in a two-way capture: nothing to do.

    def _data_export(self, frame: bytes, now: datetime, items: list[Item]) -> None:
        # Fast path: a reply with exactly the structure of one parsed before (see _Template).
        template = self._templates.get(len(frame))
        if template is not None and int.from_bytes(frame, "big") & template.mask == template.masked:
            at = template.invoke_at
            self._poll_reply((frame[at] << 8) | frame[at + 1], template.linked_state,
                             frame[template.abs_at:template.abs_at + 8], template.extract(frame), now, items)
            return
        op = m.parse_remote_operation(frame)
        ro_type = op.ro_type
        if ro_type == m.RORS_APDU or ro_type == m.ROLRS_APDU:
            if op.command == m.CMD_CONFIRMED_ACTION:
                reply = m.parse_poll_reply(frame, op, _WANTED, offsets=True)
                if reply is not None:
                    template = _Template.build(frame, op, reply)
                    values = template.extract(frame)
                    self._poll_reply(op.invoke_id, op.linked_state, reply.abs_time, values, now, items)
                    if len(self._templates) >= 8:
                        self._templates.clear()
                    self._templates[len(frame)] = template
        elif ro_type == m.ROIV_APDU:
            if op.command in (m.CMD_CONFIRMED_EVENT_REPORT, m.CMD_EVENT_REPORT):
                report = m.parse_event_report(frame, op)
                if report.event_type == m.NOM_NOTI_MDS_CREAT:
                    self._mds_create(report, now, items)
            # ROIV actions are our own poll requests in a two-way capture: ignored.
        elif ro_type == m.ROER_APDU:
            self._rejected_active = True
            items.extend(self.conditions.update(("command_rejected",), now, ("command_rejected",)))
        else:
            raise m.PduError("unknown remote operation type")

    def _mds_create(self, report: m.EventReport, now: datetime, items: list[Item]) -> None:
        if report.confirmed:
            self.queue_output(build_frame(m.build_mds_create_result(report.invoke_id, report.event_time)))
        attrs = report.attributes
        model = attrs.get(m.NOM_ATTR_ID_MODEL)
        if model is not None:
            manufacturer = m.decode_variable_label(model)
            number = None
            if manufacturer is not None:
                number = m.decode_variable_label(model[2 + len(manufacturer):])
            text = " ".join(
                part.rstrip(b"\x00").decode("latin-1").strip() for part in (manufacturer, number) if part
            ).strip()
            if text:
                self._attribute("model", text, now, items)
        system_id = attrs.get(m.NOM_ATTR_SYS_ID)
        if system_id is not None:
            label = m.decode_variable_label(system_id)
            if label:
                self._attribute("system_id", label.hex(":"), now, items)
        if self._started and self.state != RELEASING:
            self._enter(ASSOCIATED)
            self._rx_since_poll = True

    def _attribute(self, name: str, value: str, now: datetime, items: list[Item]) -> None:
        item = self.attributes.update(name, value, now)
        if item is not None:
            items.append(item)

    # --- poll replies -----------------------------------------------------------------------

    def _poll_reply(
        self, invoke_id: int, linked_state: int, abs_raw: bytes, values: list[_ObjectValues],
        now: datetime, items: list[Item],
    ) -> None:
        if self._pending_invoke is not None and self._pending_invoke != invoke_id:
            self._flush(now, items)  # a linked series that never got its LAST message
        self._collect(values)
        if abs_raw != self._abs_raw:
            self._abs_raw = abs_raw
            self._abs_time = m.decode_abs_time(abs_raw)
        self._pending_invoke = invoke_id
        if linked_state == 0 or linked_state == m.RORLS_LAST:
            self._flush(now, items)

    def _collect(self, values: list[_ObjectValues]) -> None:
        """Add one message's numerics to the reply being collected (all or nothing)."""
        pending = self._pending
        nibp = self._pending_nibp
        nibp_key = self._pending_nibp_key
        saved = (dict(pending), len(nibp), len(nibp_key)) if pending or nibp else None
        cache = self._nu_cache
        if len(cache) > 4096:
            cache.clear()
        demo = False
        cache_get = cache.get
        try:
            for nu, compound, stamp_abs, stamp_rel in values:
                if compound is None:
                    if nu is None:  # a template slot with neither value (not kept by the template)
                        continue
                    # The common case, one NuObsValue: inlined.
                    hit = cache_get(nu)
                    if hit is None:
                        hit = cache[nu] = self._classify(nu)
                    if hit[0] == _NUMERIC:
                        best = pending.get(hit[1])
                        if best is None or hit[2] > best[2]:
                            pending[hit[1]] = hit
                        if hit[-1]:
                            demo = True
                        continue
                    raws: Sequence[bytes] = (nu,)
                else:
                    cached = self._compound_cache.get(compound)
                    if cached is None:
                        if len(self._compound_cache) > 256:
                            self._compound_cache.clear()
                        cached = self._compound_cache[compound] = _compound_raws(compound)
                    raws = cached if nu is None else (nu, *cached)
                object_nibp = False
                for raw in raws:
                    hit = cache_get(raw)
                    if hit is None:
                        hit = cache[raw] = self._classify(raw)
                    kind = hit[0]
                    if kind == _NUMERIC:
                        best = pending.get(hit[1])
                        if best is None or hit[2] > best[2]:
                            pending[hit[1]] = hit
                    elif kind == _NIBP:
                        nibp.append(hit[1])
                        object_nibp = True
                    if hit[-1]:
                        demo = True
                if object_nibp:
                    if stamp_abs is not None and stamp_abs != _NO_ABS_TIME:
                        nibp_key.append(stamp_abs)
                        if self._pending_nibp_stamp is None:
                            self._pending_nibp_stamp = stamp_abs
                    elif stamp_rel is not None:
                        nibp_key.append(stamp_rel)
        except (m.PduError, struct.error):
            if saved is None:
                pending.clear()
                nibp.clear()
                nibp_key.clear()
            else:
                self._pending = saved[0]
                del nibp[saved[1]:]
                del nibp_key[saved[2]:]
            raise
        if pending or nibp:
            self._pending_numerics = True
        if demo:
            self._pending_demo = True

    def _classify(self, raw: bytes) -> tuple:
        """What one NuObsValue means: (_NUMERIC, vital, rank, value, quality, unit dropped, demo),
        (_NIBP, entry, demo) or (_IGNORED, demo); rank = (has a value, source priority); unit
        dropped: the unit code when the value was not passed on for its unit, else None."""
        entry = m.parse_nu_obs(raw)
        physio, state = entry[0], entry[1]
        demo = bool(state & _DEMO_BITS)
        if physio in NIBP_VITALS:
            return (_NIBP, entry, demo)
        target = PHYSIO_VITALS.get(physio)
        if target is None:
            return (_IGNORED, demo)
        vital, priority = target
        value, quality, dropped = self._value(vital, entry)
        return (_NUMERIC, vital, (value is not None, priority), value, quality, dropped, demo)

    @staticmethod
    def _value(vital: str, entry: tuple[int, int, int, int]) -> tuple[float | None, frozenset[Quality], int | None]:
        """(value in the catalogue unit, quality, the unit code when the value is dropped because
        Vigil cannot convert its unit, else None)."""
        _physio, state, unit, raw = entry
        quality = _STATE_QUALITY.get(state)
        if quality is None:
            quality = _STATE_QUALITY.setdefault(state, state_quality(state))
        mantissa = raw & 0xFFFFFF
        if mantissa in m.FLOAT_SPECIALS:
            if mantissa != m.FLOAT_NAN:
                quality = quality | _INVALID
            return None, quality, None
        if state & _NO_VALUE_BITS:
            return None, quality, None
        units = UNITS[vital]
        if unit in units:
            convert = units[unit]
            value = m.decode_float(raw)
            if convert is not None and value is not None:
                value = convert(value)
            return value, quality, None
        return None, quality | _INVALID, unit

    def _dropped_unit(self, vital: str, unit: int, now: datetime, items: list[Item]) -> None:
        """A value not passed on for its unit: counted, and named in an attribute."""
        self.stats.values_dropped_unit += 1
        self._attribute(f"unit_unsupported.{vital}", f"0x{unit:04X}", now, items)

    def _flush(self, now: datetime, items: list[Item]) -> None:
        source = self.source
        device_time = self._abs_time
        append = items.append
        for _kind, vital, _rank, value, quality, dropped, _demo in self._pending.values():
            append(numeric(vital, value, source, now, device_time, quality))
            if dropped is not None:
                self._dropped_unit(vital, dropped, now, items)
        if self._pending_nibp:
            key: object = tuple(self._pending_nibp_key) or tuple(self._pending_nibp)
            if key != self._nibp_key:
                self._nibp_key = key
                self._emit_nibp(now, items)
        if self._pending_numerics and self._pending_demo != self._demo_active:
            self._demo_active = self._pending_demo
            items.extend(self.conditions.update(
                ("demo_data",) if self._demo_active else (), now, ("demo_data",)))
        if self._rejected_active:
            self._rejected_active = False
            items.extend(self.conditions.update((), now, ("command_rejected",)))
        self._pending.clear()
        self._pending_invoke = None
        self._pending_nibp.clear()
        self._pending_nibp_key.clear()
        self._pending_nibp_stamp = None
        self._pending_demo = False
        self._pending_numerics = False

    def _emit_nibp(self, now: datetime, items: list[Item]) -> None:
        values: dict[str, tuple[float | None, frozenset[Quality], int | None]] = {}
        for entry in self._pending_nibp:
            vital = NIBP_VITALS[entry[0]]
            if vital not in values:
                values[vital] = self._value(vital, entry)
        if not self._pending_nibp_key and all(v is None and d is None for v, _q, d in values.values()):
            return  # no measurement yet: nothing new to report (a value dropped for its unit is one)
        stamp = self._pending_nibp_stamp
        when = m.decode_abs_time(stamp) if stamp is not None else None
        if when is None:
            when = self._abs_time
        source = self.source
        for vital in ("nibp_sys", "nibp_dia", "nibp_mean"):
            if vital in values:
                value, quality, dropped = values[vital]
                items.append(numeric(vital, value, source, now, when, quality))
                if dropped is not None:
                    self._dropped_unit(vital, dropped, now, items)


def _compound_raws(compound: bytes) -> tuple[bytes, ...]:
    """The NuObsValue entries (10 bytes each) of a compound value, validated."""
    count = len(m.parse_nu_obs_compound(compound))  # checks count against length
    return tuple(compound[4 + 10 * i:14 + 10 * i] for i in range(count))


_STATE_QUALITY: dict[int, frozenset[Quality]] = {}
