"""GE / Datex-Ohmeda S/5 Computer Interface: S/5 monitors and GE CARESCAPE B450 / B650 / B850.

Host side (:class:`DatexDecoder`, registered as ``datex``) and device side
(:class:`DatexEmulator`, used by ``vigil simulate --protocol datex``), written from the public
Datex-Ohmeda Record (DRI) descriptions and open-source readers (VSCapture and others), read for
the wire facts only.

Wire facts, with the readings chosen where the public material is thin:

* **Line**: 19200 baud, 8 data bits, even parity, 1 stop bit, RTS/CTS handshake.
* **Frame**: ``7E | escaped(record + checksum) | 7E``. Inside a frame 0x7E is sent as ``7D 5E`` and
  0x7D as ``7D 5D`` (the byte XOR 0x20 after 0x7D). The checksum is the sum of the record's bytes
  (unescaped) modulo 256.
* **Record**: a 40-byte little-endian header — ``r_len`` i16 (whole record, header included),
  ``r_nbr`` u8, ``dri_level`` u8, ``plug_id`` u16, ``r_time`` u32 (the monitor's clock, seconds
  since 1970 as the monitor counts them), three reserved fields (u8 u8 u16), ``r_maintype`` i16 at
  offset 14 (0 physiological data, 1 waveforms, 4 alarms, 5 network), then 8 subrecord
  descriptors ``sr_offset`` i16 (from the end of the header) + ``sr_type`` u8, the list ending with
  type 0xFF — followed by the subrecords.
* **Requests** (host → monitor, nothing is sent until the host asks): physiological data =
  header (maintype 0, one subrecord of type 0) + ``phdb_rcrd_type`` u8 (1 = displayed values, 2 =
  10 s trend, 3 = 60 s trend), ``tx_interval`` i16 seconds (0 stops the transmission),
  ``phdb_class_bf`` u32 (0 = the basic class only), 2 reserved bytes: 49 bytes. Waveforms = header
  (maintype 1, one subrecord of type 0) + ``req_type`` i16 (0 start, 1 stop), a reserved i16,
  8 waveform types (u8, ended by 0xFF), 20 reserved bytes: 72 bytes.
* **Displayed values** (``displ``): maintype 0, subrecords of type 1, 278 bytes each: ``time`` u32,
  270 bytes of one data class, ``marker`` u8, a reserved byte, ``cl_drilvl_subt`` u16 whose bits
  8-11 give the class (0 basic; the other classes are ignored). The basic class is a run of groups,
  each starting with a 6-byte header (``status`` u32, ``label`` u16): ECG at 0 (HR at +6, impedance
  RR at +14), four invasive pressures, NIBP at 72 (sys, dia, mean at +6/+8/+10, 1/100 mmHg),
  four temperatures from 86 (T1 at +6, 1/100 °C), SpO2 at 118 (SpO2 1/100 % at +6, pulse rate at
  +8), CO2 at 132 (EtCO2 at +6 in 1/100 % of the ambient pressure, RR at +10, ambient pressure at
  +12 in 1/10 mmHg), then gases, flow, and others Vigil does not read. HR is the monitor's
  selected heart-rate source.
* **Values**: i16; anything at or below −32001 is a marker, not a value: −32767 no valid data,
  −32766 not updated, −32765 discontinuity (calibration), −32764 under range, −32763 over range,
  −32762 not calibrated.
* **Group status** (reading chosen): bit 0 the measurement exists, bit 1 it is active. ECG: bit 7
  noise, bit 8 artifact, bits 11-13 a lead off. NIBP: the ``label`` word's bit 5 says a measurement
  is running, bit 8 that the reading is older than 60 s.
* **Waveforms**: maintype 1; each subrecord (type = waveform: 1 ECG lead 1 at 300 Hz in µV,
  8 pleth at 100 Hz in 1/100 % modulation, 9 CO2 at 25 Hz in 1/100 %) is ``act_len`` i16 (number
  of samples), ``status`` u16 (bit 0 gap, bit 3 lead off), ``label`` u16, then the samples (i16).
  The monitor sends at most 600 samples a second in all; ECG + pleth + CO2 is 425.

No Qt, no I/O.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import ClassVar

import numpy as np

from drivers.base import Decoder, SerialSettings, WaveClock
from drivers.emulation import DeviceEmulator, DeviceSnapshot
from drivers.model import Item, NumericEntry, Quality, WaveformChunk, numerics_into, plausibility, utc_now, wave_chunk

__all__ = [
    "DatexDecoder", "DatexEmulator", "Unframer", "frame", "phdb_request", "wave_request",
    "parse_wave_option", "WAVES", "DATA_INVALID",
]

# ------------------------------------------------------------------------------ constants
FLAG = 0x7E
ESC = 0x7D
_FLAG = b"\x7e"
_ESC = b"\x7d"

DRI_MT_PHDB = 0
DRI_MT_WAVE = 1
DRI_PH_XMIT_REQ = 0
DRI_PH_DISPL = 1
DRI_PH_10S_TREND = 2
DRI_PH_60S_TREND = 3
DRI_EOL_SUBR_LIST = 0xFF
DRI_WF_CMD = 0
WF_REQ_CONT_START = 0
WF_REQ_CONT_STOP = 1
DRI_WF_ECG1 = 1
DRI_WF_PLETH = 8
DRI_WF_CO2 = 9

#: Marker values (≤ ``DATA_INVALID_LIMIT`` is never a measurement).
DATA_INVALID_LIMIT = -32001
DATA_INVALID = -32767
DATA_NOT_UPDATED = -32766
DATA_DISCONT = -32765
DATA_UNDER_RANGE = -32764
DATA_OVER_RANGE = -32763
DATA_NOT_CALIBRATED = -32762

#: Waveforms Vigil can request: channel → (DRI waveform type, samples/s, scale to Vigil's unit).
#: ECG µV → mV; pleth 1/100 % → 0..1 (100 % = 1); CO2 1/100 % (→ mmHg with the ambient pressure).
WAVES: dict[str, tuple[int, float, float]] = {
    "ecg": (DRI_WF_ECG1, 300.0, 0.001),
    "pleth": (DRI_WF_PLETH, 100.0, 0.0001),
    "co2": (DRI_WF_CO2, 25.0, 0.0001),
}
_WAVE_BY_TYPE = {code: (channel, rate, scale) for channel, (code, rate, scale) in WAVES.items()}

_HEADER = struct.Struct("<hBBHIBBHh" + "hB" * 8)
HEADER_SIZE = _HEADER.size  # 40
_PHDB_REQ = struct.Struct("<BhIh")
_WAVE_REQ = struct.Struct("<hh8B20x")
_WAVE_HDR = struct.Struct("<hHH")
SUBRECORD_SIZE = 278
_MAX_RECORD = 1490
#: Longest escaped frame accepted before the decoder gives up on it and resynchronises.
_MAX_FRAME = 2 * (_MAX_RECORD + 1)
_EPOCH = datetime(1970, 1, 1)
_DEFAULT_AMBIENT = 760.0   # mmHg, when the monitor's ambient pressure is not valid

# Offsets in a displ subrecord (time u32 first, so basic-class offsets are +4).
_B = 4
_ECG, _NIBP, _T1, _SPO2, _CO2 = _B + 0, _B + 72, _B + 86, _B + 118, _B + 132
_FIELDS = (  # (offset, struct code) of what Vigil reads, in order
    (0, "I"),
    (_ECG, "I"), (_ECG + 4, "H"), (_ECG + 6, "h"), (_ECG + 14, "h"),
    (_NIBP, "I"), (_NIBP + 4, "H"), (_NIBP + 6, "h"), (_NIBP + 8, "h"), (_NIBP + 10, "h"),
    (_T1, "I"), (_T1 + 6, "h"),
    (_SPO2, "I"), (_SPO2 + 6, "h"), (_SPO2 + 8, "h"),
    (_CO2, "I"), (_CO2 + 6, "h"), (_CO2 + 10, "h"), (_CO2 + 12, "h"),
    (276, "H"),
)


def _layout(fields: Sequence[tuple[int, str]]) -> struct.Struct:
    fmt, at = "<", 0
    for offset, code in fields:
        fmt += f"{offset - at}x" if offset > at else ""
        fmt += code
        at = offset + struct.calcsize("<" + code)
    return struct.Struct(fmt)


_DISPL = _layout(_FIELDS)

ST_EXISTS = 0x1
ST_ACTIVE = 0x2
ECG_NOISE = 1 << 7
ECG_ARTIFACT = 1 << 8
ECG_LEADS_OFF = 0x7 << 11
NIBP_MEASURING = 1 << 5
NIBP_OLD = 1 << 8
WF_GAP = 0x1
WF_LEAD_OFF = 0x8

#: Conditions this decoder reports from group status words.
DATEX_CONDITIONS = frozenset({"no_sensor", "ecg_leads_off", "artifact", "interference"})

_EMPTY: frozenset[Quality] = frozenset()
_MARKER_QUALITY = {
    DATA_INVALID: frozenset({Quality.INVALID}),
    DATA_NOT_UPDATED: frozenset({Quality.UNAVAILABLE}),
    DATA_DISCONT: frozenset({Quality.INVALID}),
    DATA_UNDER_RANGE: frozenset({Quality.QUESTIONABLE}),
    DATA_OVER_RANGE: frozenset({Quality.QUESTIONABLE}),
    DATA_NOT_CALIBRATED: frozenset({Quality.INVALID}),
}
_OTHER_MARKER = frozenset({Quality.INVALID})
_NOT_CONNECTED = frozenset({Quality.UNAVAILABLE})
_SENSOR_OFF = frozenset({Quality.SENSOR_OFF})
_QUESTIONABLE = frozenset({Quality.QUESTIONABLE})


# ------------------------------------------------------------------------------ framing
def _escape(data: bytes) -> bytes:
    return data.replace(_ESC, b"\x7d\x5d").replace(_FLAG, b"\x7d\x5e")


def frame(record: bytes) -> bytes:
    """``record`` framed for the wire: flag, escaped record and checksum (sum mod 256), flag."""
    return _FLAG + _escape(record + bytes((sum(record) & 0xFF,))) + _FLAG


def _unescape(body: bytes) -> bytes | None:
    """The unescaped bytes of a frame body; None when an escape is not followed by a byte."""
    if _ESC not in body:
        return body
    if body.count(_ESC) == body.count(b"\x7d\x5d") + body.count(b"\x7d\x5e") and b"\x7d\x7d" not in body:
        return body.replace(b"\x7d\x5e", _FLAG).replace(b"\x7d\x5d", _ESC)
    out = bytearray()
    escaped = False
    for byte in body:
        if escaped:
            out.append(byte ^ 0x20)
            escaped = False
        elif byte == ESC:
            escaped = True
        else:
            out.append(byte)
    return None if escaped else bytes(out)


class Unframer:
    """Incremental 0x7E framing: bytes in, checked records out (checksum removed).

    Bytes before the first flag and the body of an over-long frame are counted in
    ``skipped``; a non-empty body that fails unescaping or the checksum, or is shorter than a
    header, counts in ``rejected``. Never raises.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._synced = False
        self._discarding = False
        self.skipped = 0
        self.rejected = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Records completed by ``data`` (any split)."""
        if _FLAG not in data:
            self._hold(self._pending + bytes(data) if not self._discarding else b"", len(data))
            return []
        parts = (self._pending + bytes(data)).split(_FLAG) if not self._discarding else bytes(data).split(_FLAG)
        tail = parts.pop()
        records = []
        if self._discarding:
            self.skipped += len(parts[0])
            parts[0] = b""
            self._discarding = False
        if not self._synced:
            self.skipped += len(parts[0])
            parts[0] = b""
            self._synced = True
        for body in parts:
            if not body:
                continue
            record = _unescape(body)
            if record is None or len(record) < HEADER_SIZE + 1 or sum(record[:-1]) & 0xFF != record[-1]:
                self.rejected += 1
            else:
                records.append(record[:-1])
        self._pending = b""
        self._hold(tail, len(tail))
        return records

    def _hold(self, pending: bytes, arrived: int) -> None:
        if self._discarding:
            self.skipped += arrived
        elif len(pending) > _MAX_FRAME:
            self.skipped += len(pending)
            self._pending = b""
            self._discarding = True
        else:
            self._pending = pending


# ------------------------------------------------------------------------------ requests
def _header(length: int, maintype: int, subrecords: Iterable[tuple[int, int]], r_time: int = 0,
            r_nbr: int = 0) -> bytes:
    desc: list[int] = []
    for offset, kind in subrecords:
        desc += (offset, kind)
    desc += (0, DRI_EOL_SUBR_LIST)
    while len(desc) < 16:
        desc += (0, 0)
    return _HEADER.pack(length, r_nbr & 0xFF, 0, 0, r_time & 0xFFFFFFFF, 0, 0, 0, maintype, *desc[:16])


def phdb_request(interval: int, record_type: int = DRI_PH_DISPL, classes: int = 0) -> bytes:
    """The framed request for physiological data every ``interval`` s (0 stops it); ``classes``
    the ``phdb_class_bf`` bit field (0: the basic class only)."""
    body = _PHDB_REQ.pack(record_type, interval, classes, 0)
    return frame(_header(HEADER_SIZE + len(body), DRI_MT_PHDB, [(0, DRI_PH_XMIT_REQ)]) + body)


def wave_request(channels: Iterable[str], start: bool = True) -> bytes:
    """The framed request starting (or stopping) the waveforms of ``channels`` (keys of
    :data:`WAVES`; KeyError for another)."""
    types = [WAVES[channel][0] for channel in channels][:8]
    types += [DRI_EOL_SUBR_LIST] * (8 - len(types))
    body = _WAVE_REQ.pack(WF_REQ_CONT_START if start else WF_REQ_CONT_STOP, 0, *types)
    return frame(_header(HEADER_SIZE + len(body), DRI_MT_WAVE, [(0, DRI_WF_CMD)]) + body)


def parse_wave_option(text: str) -> tuple[str, ...]:
    """The ``waves=`` URL option: ``0``/``no`` none, ``1``/``all`` ECG + pleth + CO2, or a comma
    list of ``ecg``, ``pleth``, ``co2``; ValueError for anything else."""
    value = text.strip().lower()
    if value in ("0", "no", "none", "false", "off"):
        return ()
    if value in ("1", "yes", "all", "true", "on"):
        return tuple(WAVES)
    channels = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not channels or any(channel not in WAVES for channel in channels):
        raise ValueError(f"must be 0, 1 or a list of {', '.join(WAVES)}")
    return channels


def _subrecords(record: bytes, header: tuple) -> list[tuple[int, int]] | None:
    """(offset in the record, type) of each subrecord; None when an offset is outside it."""
    out = []
    for index in range(8):
        offset, kind = header[9 + 2 * index], header[10 + 2 * index]
        if kind == DRI_EOL_SUBR_LIST:
            break
        at = HEADER_SIZE + offset
        if offset < 0 or at >= len(record):
            return None
        out.append((at, kind))
    return out


# ------------------------------------------------------------------------------ decoder
class DatexDecoder(Decoder):
    """Host side of the S/5 Computer Interface: displayed values every 5 (or 10) s, waveforms.

    :meth:`start` requests the displayed values (basic class) every ``interval`` s and, unless
    ``waves`` is empty, the ECG / pleth / CO2 waveforms; :meth:`stop` stops both. When no valid
    record arrives for 3 intervals (monitor restarted, request lost) :meth:`poll` asks again.

    Items per displayed-values subrecord: ``hr`` (ECG group: the monitor's heart-rate source),
    ``pr`` and ``spo2`` (SpO2 group), ``etco2`` (mmHg, from % of the ambient pressure; 760 mmHg
    and QUESTIONABLE when the monitor's ambient pressure is not valid) and ``rr`` (CO2 group; the
    ECG impedance RR when there is no CO2 measurement), ``temp`` (T1), with ``device_time`` the
    subrecord's time (naive, the monitor's clock). A marker value gives value None flagged
    INVALID (no data, discontinuity, not calibrated), UNAVAILABLE (not updated) or QUESTIONABLE
    (under / over range); a group that does not exist or is not active gives None flagged
    UNAVAILABLE ("not connected"), SENSOR_OFF for an SpO2 probe that is not connected (which also
    raises ``no_sensor``). ECG lead off raises ``ecg_leads_off`` (HR flagged SENSOR_OFF), artifact
    and noise raise ``artifact`` / ``interference`` (HR flagged ARTIFACT). NIBP ``nibp_sys`` /
    ``nibp_dia`` / ``nibp_mean`` are reported once per reading: when the values change or a
    measurement has run since the last one (label bit 5), stamped with the time of the first
    subrecord that shows it (the measurement time, to within one interval).

    Waveform subrecords give :class:`WaveformChunk` items (``ecg`` mV at 300 Hz, ``pleth`` 0..1 at
    100 Hz, ``co2`` mmHg at 25 Hz); marker samples, a gap or lead-off status give NaN.

    Frames failing the checksum and records whose lengths or offsets do not add up count as
    ``frames_rejected``; every other record (alarm and network records, trends: read and
    ignored) as ``frames_decoded``. Never raises on any bytes.
    """

    protocol: ClassVar[str] = "datex"
    serial_defaults: ClassVar[SerialSettings] = SerialSettings(19200, parity="E", rtscts=True)
    expected_interval = 5.0

    def __init__(self, source: str = "", clock: Callable[[], datetime] = utc_now, *,
                 waves: Sequence[str] = tuple(WAVES), interval: int = 5) -> None:
        super().__init__(source, clock)
        if interval not in (5, 10):
            raise ValueError("interval must be 5 or 10 seconds")
        unknown = [w for w in waves if w not in WAVES]
        if unknown:
            raise ValueError(f"unknown waveform {unknown[0]!r}; choose from {', '.join(WAVES)}")
        self.waves = tuple(waves)
        self.interval = interval
        self.expected_interval = float(interval)
        self._unframer = Unframer()
        self._wave_clock = WaveClock()
        self._ambient = _DEFAULT_AMBIENT
        self._ambient_valid = False
        self._nibp_key: tuple[int, int, int] | None = None
        self._nibp_measured = False
        self._requested_at: float | None = None
        self._received = False
        self._started = False

    # --- what Vigil sends -------------------------------------------------------------------
    def start(self) -> bytes:
        """The displayed-values request, and the waveform request when waveforms are wanted."""
        self._started = True
        self._requested_at = None
        return self._requests()

    def _requests(self) -> bytes:
        out = phdb_request(self.interval)
        if self.waves:
            out += wave_request(self.waves)
        return out

    def poll(self, monotonic: float) -> bytes:
        """The requests again when nothing valid arrived for 3 intervals after the last ones."""
        if not self._started:
            return b""
        if self._received or self._requested_at is None:
            self._received = False
            self._requested_at = monotonic
            return b""
        if monotonic - self._requested_at >= 3 * self.interval:
            self._requested_at = monotonic
            return self._requests()
        return b""

    def stop(self) -> bytes:
        """Stop requests for what :meth:`start` asked (nothing if it was never called)."""
        if not self._started:
            return b""
        self._started = False
        out = phdb_request(0)
        if self.waves:
            out += wave_request(self.waves, start=False)
        return out

    # --- what the monitor sends -------------------------------------------------------------
    def feed(self, data: bytes) -> list[Item]:
        """Decode ``data`` (any split); return the items of the records it completed."""
        stats = self.stats
        stats.bytes_in += len(data)
        unframer = self._unframer
        skipped, rejected = unframer.skipped, unframer.rejected
        records = unframer.feed(data)
        stats.bytes_skipped += unframer.skipped - skipped
        stats.frames_rejected += unframer.rejected - rejected
        items: list = []
        if not records:
            return items
        now = self.clock()
        slots: list[_WaveSlot] = []
        for record in records:
            if self._record(record, now, items, slots):
                stats.frames_decoded += 1
                self._received = True
            else:
                stats.frames_rejected += 1
        if slots:  # each slot (a tuple) stands in ``items`` where its chunk goes
            chunks = iter(self._chunks(slots, now))
            items = [next(chunks) if type(item) is tuple else item for item in items]
        return items

    def _record(self, record: bytes, now: datetime, items: list, slots: list[_WaveSlot]) -> bool:
        """Decode one checked record into ``items``; False when its lengths or offsets do not add up."""
        header = _HEADER.unpack_from(record)
        if header[0] != len(record):
            return False
        subrecords = _subrecords(record, header)
        if subrecords is None:
            return False
        maintype = header[8]
        if maintype == DRI_MT_PHDB:
            displ = [at for at, kind in subrecords if kind == DRI_PH_DISPL]
            if any(at + SUBRECORD_SIZE > len(record) for at in displ):
                return False
            for at in displ:
                self._displ(_DISPL.unpack_from(record, at), now, items)
        elif maintype == DRI_MT_WAVE:
            return self._waves(record, subrecords, items, slots)
        return True

    def _displ(self, f: tuple, now: datetime, items: list[Item]) -> None:
        (time_, ecg_st, _ecg_label, hr, imp_rr, nibp_st, nibp_label, sys_, dia, mean,
         t1_st, t1, spo2_st, spo2, pr, co2_st, et, co2_rr, ambient, class_word) = f
        if (class_word >> 8) & 0x0F:
            return  # an extension class: not read
        device_time = _EPOCH + timedelta(seconds=time_)
        active = set()
        ecg_on = ecg_st & ST_EXISTS and ecg_st & ST_ACTIVE
        ecg_flags = _EMPTY
        if ecg_st & ST_EXISTS and (not ecg_st & ST_ACTIVE or ecg_st & ECG_LEADS_OFF):
            active.add("ecg_leads_off")
            ecg_flags = _SENSOR_OFF
        if ecg_on and ecg_st & (ECG_ARTIFACT | ECG_NOISE):
            active.add("artifact" if ecg_st & ECG_ARTIFACT else "interference")
            ecg_flags = ecg_flags | {Quality.ARTIFACT}
        spo2_flags = _EMPTY
        if spo2_st & ST_EXISTS and not spo2_st & ST_ACTIVE:
            active.add("no_sensor")
            spo2_flags = _SENSOR_OFF
        items.extend(self.conditions.update(active, now, DATEX_CONDITIONS))
        co2_on = co2_st & ST_EXISTS and co2_st & ST_ACTIVE
        if ambient > DATA_INVALID_LIMIT and ambient > 0:
            self._ambient, self._ambient_valid = ambient / 10.0, True
        elif co2_on:
            self._ambient, self._ambient_valid = _DEFAULT_AMBIENT, False
        entries: list[NumericEntry] = [
            _entry("hr", hr, 1.0, ecg_st, ecg_flags),
            _entry("pr", pr, 1.0, spo2_st, spo2_flags),
            _entry("spo2", spo2, 0.01, spo2_st, spo2_flags),
        ]
        et_entry = _entry("etco2", et, self._ambient / 1e4, co2_st, _EMPTY)
        if et_entry[1] is not None and not self._ambient_valid:
            et_entry = (et_entry[0], et_entry[1], et_entry[2] | _QUESTIONABLE)
        entries.append(et_entry)
        if co2_st & ST_EXISTS:
            entries.append(_entry("rr", co2_rr, 1.0, co2_st, _EMPTY))
        else:
            entries.append(_entry("rr", imp_rr, 1.0, ecg_st, _EMPTY))
        entries.append(_entry("temp", t1, 0.01, t1_st, _EMPTY))
        numerics_into(entries, self.source, now, device_time, _EMPTY, items)
        self._nibp(nibp_st, nibp_label, (sys_, dia, mean), device_time, now, items)

    def _nibp(self, status: int, label: int, key: tuple[int, int, int], device_time: datetime, now: datetime,
              items: list[Item]) -> None:
        if label & NIBP_MEASURING:
            self._nibp_measured = True
            return
        if not (status & ST_EXISTS) or all(v <= DATA_INVALID_LIMIT for v in key):
            return
        if key == self._nibp_key and not self._nibp_measured:
            return
        self._nibp_key, self._nibp_measured = key, False
        entries = [_entry(vital, raw, 0.01, status, _EMPTY)
                   for vital, raw in zip(("nibp_sys", "nibp_dia", "nibp_mean"), key)]
        numerics_into(entries, self.source, now, device_time, _EMPTY, items)

    def _waves(self, record: bytes, subrecords: list[tuple[int, int]], items: list, slots: list[_WaveSlot]) -> bool:
        """Check a waveform record and put a slot for each known waveform in ``items`` (its
        chunk is made by :meth:`_chunks`, for the whole read at once)."""
        found = []
        size = len(record)
        view = memoryview(record)
        unpack = _WAVE_HDR.unpack_from
        for at, kind in subrecords:
            if at + 6 > size:
                return False
            count, status, _label = unpack(record, at)
            end = at + 6 + 2 * count
            if count < 0 or end > size:
                return False
            known = _WAVE_BY_TYPE.get(kind)
            if known is not None and count:
                channel, rate, scale = known
                found.append((channel, rate, view[at + 6:end], count,
                              scale * self._ambient if channel == "co2" else scale,
                              bool(status & (WF_GAP | WF_LEAD_OFF))))
        items.extend(found)
        slots.extend(found)
        return True

    def _chunks(self, slots: list[_WaveSlot], now: datetime) -> list[WaveformChunk]:
        """Every slot's samples converted in one numpy pass, as chunks."""
        channels, rates, raws, counts, scales, bad = zip(*slots)
        count_array = np.array(counts, np.int64)
        raw = np.frombuffer(b"".join(raws), "<i2")
        samples = raw.astype(np.float32)
        samples *= np.repeat(np.array(scales, np.float32), count_array)
        invalid = raw <= DATA_INVALID_LIMIT
        if any(bad):
            invalid |= np.repeat(np.array(bad, bool), count_array)
        samples[invalid] = np.nan
        starts = self._wave_clock.starts([(c, n / r) for c, r, n in zip(channels, rates, counts)], now)
        source, units = self.source, _WAVE_UNITS
        ends = np.cumsum(count_array).tolist()
        return [wave_chunk(channel, rate, start, samples[end - count:end], source, units[channel])
                for channel, rate, count, start, end in zip(channels, rates, counts, starts, ends)]


#: One waveform subrecord of the read being decoded, until its chunk is made:
#: (channel, rate, raw samples, count, scale to Vigil's unit, gap or lead off).
_WaveSlot = tuple[str, float, memoryview, int, float, bool]
_WAVE_UNITS = {"ecg": "mV", "pleth": "", "co2": "mmHg"}


def _entry(vital: str, raw: int, scale: float, status: int, flags: frozenset[Quality]) -> NumericEntry:
    """(vital, value or None, quality) for one raw value of a group with ``status``."""
    if not (status & ST_EXISTS and status & ST_ACTIVE):
        return (vital, None, flags or _NOT_CONNECTED)
    if raw <= DATA_INVALID_LIMIT:
        return (vital, None, _MARKER_QUALITY.get(raw, _OTHER_MARKER) | flags)
    value = round(raw * scale, 2)
    return (vital, value, plausibility(vital, value) | flags)


# ------------------------------------------------------------------------------ device side
def _scaled(value: float | None, scale: float) -> int:
    if value is None or not math.isfinite(value):
        return DATA_INVALID
    return max(-32000, min(32767, round(value / scale)))


def _group(status: int, label: int, values: Sequence[int], size: int) -> bytes:
    body = struct.pack(f"<IH{len(values)}h", status, label, *values)
    return body + bytes(size - len(body))


class _Resampler:
    """One waveform channel, resampled by linear interpolation to a device's fixed rate."""

    def __init__(self) -> None:
        self.samples = np.zeros(0, np.float64)
        self.first = 0           # sample number of samples[0]
        self.rate = 0.0

    def add(self, wave: np.ndarray | None, rate: float) -> None:
        """Append the samples the simulated patient produced (at ``rate`` Hz)."""
        if wave is None or not len(wave) or rate <= 0:
            return
        self.rate = rate
        self.samples = np.concatenate((self.samples, np.asarray(wave, np.float64).ravel()))

    def forget_before(self, t: float) -> None:
        """Drop what lies more than a second before ``t`` (seconds since the first sample)."""
        excess = int((t - 1.0) * self.rate) - self.first
        if excess > 0:
            self.samples = self.samples[excess:]
            self.first += excess

    def at(self, times: np.ndarray) -> np.ndarray:
        """The channel at ``times`` (seconds since its first sample); NaN before any sample."""
        if not len(self.samples):
            return np.full(len(times), np.nan)
        position = np.clip(times * self.rate - self.first, 0.0, len(self.samples) - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, len(self.samples) - 1)
        frac = position - low
        return self.samples[low] * (1 - frac) + self.samples[high] * frac


class DatexEmulator(DeviceEmulator):
    """Device side of the S/5 Computer Interface for ``vigil simulate --protocol datex``.

    Like the monitor it sends nothing until asked: a displayed-values request starts one displ
    record at once and then one every requested interval (simulated seconds; interval 0 stops
    them); a waveform request starts (or stops) ECG lead 1 at 300 Hz, pleth at 100 Hz and CO2 at
    25 Hz, resampled from the simulated patient, in one record every 0.25 s. Values come from each
    snapshot (None → −32767); ``sensor_off`` / ``no_sensor`` makes the SpO2 group inactive; a
    running cuff sets the NIBP measuring bit and the last reading stays in the group, with the
    "older than 60 s" bit once it is. The record time is the device clock. :meth:`receive` never
    raises and answers nothing (the monitor does not acknowledge requests).
    """

    protocol: ClassVar[str] = "datex"
    #: Seconds of waveform per waveform record.
    WAVE_PERIOD = 0.25

    def __init__(self, ambient_mmhg: float = 760.0) -> None:
        self.ambient = ambient_mmhg
        self.interval = 0
        self.classes = 0
        self.waves: tuple[str, ...] = ()
        self._unframer = Unframer()
        self._clock = 0.0
        self._next_displ: float | None = None
        self._wave_sent: dict[str, int] = {}
        self._wave_blocks = 0
        self._wave_epoch = 0.0
        self._resamplers = {channel: _Resampler() for channel in WAVES}
        self._r_nbr = 0

    # -- host → device
    def receive(self, data: bytes) -> bytes:
        """Apply the requests in ``data``; the monitor answers nothing. Never raises."""
        for record in self._unframer.feed(data):
            if len(record) < HEADER_SIZE:
                continue
            header = _HEADER.unpack_from(record)
            maintype, first_type = header[8], header[10]
            body = record[HEADER_SIZE:]
            if maintype == DRI_MT_PHDB and first_type == DRI_PH_XMIT_REQ and len(body) >= _PHDB_REQ.size:
                kind, interval, classes, _ = _PHDB_REQ.unpack_from(body)
                if kind == DRI_PH_DISPL:
                    self.interval = max(0, interval)
                    self.classes = classes
                    self._next_displ = self._clock if self.interval else None
            elif maintype == DRI_MT_WAVE and first_type == DRI_WF_CMD and len(body) >= _WAVE_REQ.size:
                req, _res, *types = _WAVE_REQ.unpack_from(body)
                if req == WF_REQ_CONT_STOP:
                    self.waves = ()
                elif req == WF_REQ_CONT_START:
                    listed = types[:types.index(DRI_EOL_SUBR_LIST)] if DRI_EOL_SUBR_LIST in types else types
                    self.waves = tuple(dict.fromkeys(_WAVE_BY_TYPE[t][0] for t in listed if t in _WAVE_BY_TYPE))
                    self._wave_epoch = self._clock
                    self._wave_blocks = 0
                    self._wave_sent = {channel: 0 for channel in self.waves}
        return b""

    # -- device → host
    def produce(self, snapshot: DeviceSnapshot) -> bytes:
        """The records due during ``snapshot.elapsed`` simulated seconds."""
        elapsed = float(snapshot.elapsed)
        self._clock += elapsed if elapsed > 0 and math.isfinite(elapsed) else 0.0
        for channel in WAVES:
            self._resamplers[channel].add(snapshot.waves.get(channel), snapshot.wave_rates.get(channel, 0.0))
        out = bytearray()
        while self._next_displ is not None and self._next_displ <= self._clock + 1e-9:
            out += self.displ_record(snapshot, self._next_displ - self._clock)
            self._next_displ += self.interval
        if self.waves:
            out += self._wave_records(snapshot)
        return bytes(out)

    def displ_record(self, snapshot: DeviceSnapshot, offset: float = 0.0) -> bytes:
        """One framed displ record (basic class) of ``snapshot``, stamped ``offset`` seconds from
        the snapshot's device time."""
        values = snapshot.values
        stamp = snapshot.device_time + timedelta(seconds=offset)
        seconds = int((stamp - _EPOCH).total_seconds())
        on = ST_EXISTS | ST_ACTIVE
        probe_off = bool(snapshot.conditions & {"sensor_off", "no_sensor"})
        basic = bytearray()
        basic += _group(on, 0, [_scaled(values.get("hr"), 1), 0, 0, 0, _scaled(values.get("rr"), 1)], 16)
        basic += _group(0, 0, [DATA_INVALID] * 4, 14) * 4
        nibp_label = NIBP_MEASURING if snapshot.nibp_in_progress else 0
        if snapshot.nibp_time is not None and (snapshot.time - snapshot.nibp_time).total_seconds() > 60:
            nibp_label |= NIBP_OLD
        basic += _group(on, nibp_label, [_scaled(values.get(k), 0.01) for k in ("nibp_sys", "nibp_dia", "nibp_mean")]
                        + [DATA_INVALID], 14)
        basic += _group(on, 0, [_scaled(values.get("temp"), 0.01)], 8)
        basic += _group(0, 0, [DATA_INVALID], 8) * 3
        spo2 = (ST_EXISTS, [DATA_INVALID] * 4) if probe_off else \
            (on, [_scaled(values.get("spo2"), 0.01), _scaled(values.get("pr"), 1), DATA_INVALID, DATA_INVALID])
        basic += _group(spo2[0], 0, spo2[1], 14)
        etco2 = values.get("etco2")
        et = DATA_INVALID if etco2 is None else _scaled(etco2 / self.ambient * 100.0, 0.01)
        basic += _group(on, 0, [et, 0, _scaled(values.get("rr"), 1), _scaled(self.ambient, 0.1)], 14)
        basic += bytes(270 - len(basic))
        sub = struct.pack("<I", seconds) + bytes(basic) + struct.pack("<BBH", 0, 0, (0 << 8) | DRI_PH_DISPL)
        return self._record(DRI_MT_PHDB, [(0, DRI_PH_DISPL)], sub, seconds)

    def _record(self, maintype: int, subrecords: list[tuple[int, int]], body: bytes, seconds: int) -> bytes:
        self._r_nbr = (self._r_nbr + 1) & 0xFF
        return frame(_header(HEADER_SIZE + len(body), maintype, subrecords, seconds, self._r_nbr) + body)

    def _wave_records(self, snapshot: DeviceSnapshot) -> bytes:
        out = bytearray()
        done = int((self._clock - self._wave_epoch + 1e-9) / self.WAVE_PERIOD)
        seconds = int((snapshot.device_time - _EPOCH).total_seconds())
        for block in range(self._wave_blocks, done):
            end = (block + 1) * self.WAVE_PERIOD
            subrecords, body = [], bytearray()
            for channel in self.waves:
                code, rate, _scale = WAVES[channel]
                due = int(end * rate + 1e-9)
                times = self._wave_epoch + np.arange(self._wave_sent[channel], due) / rate
                self._wave_sent[channel] = due
                values = self._resamplers[channel].at(times)
                if channel == "co2":
                    values = values / self.ambient * 100.0  # mmHg → % of the ambient pressure
                counts = np.clip(np.round(np.nan_to_num(values) / _WIRE_UNIT[channel]), -32000, 32767)
                raw = np.where(np.isnan(values), DATA_INVALID, counts).astype("<i2")
                subrecords.append((len(body), code))
                body += _WAVE_HDR.pack(len(raw), 0, 0) + raw.tobytes()
            out += self._record(DRI_MT_WAVE, subrecords, bytes(body), seconds)
        self._wave_blocks = max(self._wave_blocks, done)
        for channel in self.waves:
            self._resamplers[channel].forget_before(self._wave_epoch + self._wave_sent[channel] / WAVES[channel][1])
        return bytes(out)


#: What one wire count of a waveform is in the emulator's units (ECG mV, pleth 0..1, CO2 %).
_WIRE_UNIT = {"ecg": 0.001, "pleth": 0.0001, "co2": 0.01}
