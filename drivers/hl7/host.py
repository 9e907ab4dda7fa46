"""Vigil's side of HL7 v2 / MLLP: ORU^R01 messages in, observations and acknowledgements out.

:class:`Hl7Decoder` is a pure incremental decoder (no I/O, no threads): the bytes of one TCP
connection in, :mod:`drivers.model` items out, and for every message an acknowledgement queued for
:meth:`~drivers.base.Decoder.take_output`. :class:`PatientGate` decides whether a message belongs
to the patient of this session (the chair's bed, and the patient's identifier when known); one
gate is shared by every connection of a link.

What is accepted, refused and how (see also docs/devices.md):

* **Message**: ORU^R01 in HL7 v2.3 to v2.6 (v2.3.1, v2.5.1 included). Another message type or
  event → AR (ERR 200/201); another version → AR (203); a processing id other than P (production),
  T (training) or D (debugging) → AR (202); T and D are accepted with every value flagged DEMO and
  ``demo_data`` raised. A payload that is not an HL7 message, or an ORU without MSH-10 → AE.
* **Acknowledgement** per message: original mode (MSH-15 and MSH-16 empty) AA / AE / AR; enhanced
  mode commit acknowledgements CA / CE / CR as MSH-15 asks (AL always, ER on error only, SU on
  success only, NE never; the application acknowledgement of MSH-16 is not sent). AE/AR carry the
  reason in MSA-3 and an ERR segment.
* **Patient / bed**: PV1-3 (point of care^room^bed…) and PID-3 (identifiers) are checked by the
  gate; a message for another bed or patient is refused with AR (ERR 204), counted in
  ``stats.wrong_patient``, raises ``wrong_patient`` (until no refusal for a minute) and gives no
  observation.
* **OBX**: numerics (NM, SN) mapped by :class:`~drivers.hl7.codes.Codebook`, converted to the
  catalogue unit (a value in a unit Vigil cannot use is None flagged INVALID and counted in
  ``stats.values_dropped_unit``); OBX-11 F / C / R / A / S / U / empty accepted, P accepted flagged QUESTIONABLE,
  X → value None flagged INVALID, D and W (deleted / wrong) dropped and counted in
  ``stats.observations_dropped``, I / N / O (no result yet) skipped; any other status flagged
  QUESTIONABLE. OBX-8 H / L / HH / LL / A / AA / HU / LU raise ``device_alarm`` (cleared by a
  message without them), < and > flag the value QUESTIONABLE. An unparseable value or an unknown
  or wrong-kind unit gives None flagged INVALID. Time: OBX-14, else OBR-7, else MSH-7, as
  ``device_time`` (aware UTC when it carries an offset, naive as sent otherwise); ``sample_time``
  is when Vigil received the message. NIBP is reported once per reading: a new OBX-14 time or new
  values (a sender without OBX-14 that repeats a reading with identical values is heard once). Waveforms (NA, or MA: first channel of each sample) become :class:`WaveformChunk`;
  their rate comes from an ``MDC_ATTR_TIME_PD_SAMP`` (sample period) child OBX, else the local
  table's rate, else the channel's nominal rate.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

import numpy as np

from drivers.base import Decoder, DecoderStats, WaveClock
from drivers.catalogue import CATALOGUE
from drivers.hl7 import message as hl7
from drivers.hl7.codes import Codebook, LocalCodes
from drivers.hl7.mllp import MAX_MESSAGE, Unframer, frame
from drivers.model import WAVE_CHANNELS, Item, NumericEntry, Quality, WaveformChunk, numerics_into, plausibility, utc_now

#: Versions accepted (MSH-12, first component).
VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6"})
#: Seconds without a refused message before ``wrong_patient`` ends.
WRONG_PATIENT_HOLD = 60.0

_ACCEPTED_STATUS = frozenset({"", "F", "C", "R", "A", "S", "U"})
_DROPPED_STATUS = frozenset({"D", "W"})
_NO_RESULT_STATUS = frozenset({"I", "N", "O"})
_ALARM_FLAGS = frozenset({"H", "L", "HH", "LL", "A", "AA", "HU", "LU"})
_RANGE_FLAGS = frozenset({"<", ">"})
_MANAGED = frozenset({"device_alarm", "demo_data", "wrong_patient"})
_NIBP = ("nibp_sys", "nibp_dia", "nibp_mean")

_EMPTY: frozenset[Quality] = frozenset()
_INVALID = frozenset({Quality.INVALID})
_QUESTIONABLE = frozenset({Quality.QUESTIONABLE})
_DEMO = frozenset({Quality.DEMO})


@dataclass(slots=True)
class Hl7Stats(DecoderStats):
    """:class:`DecoderStats` plus what HL7 adds: messages refused as another bed or patient's,
    observations dropped by their OBX-11 status, acknowledgements queued. ``frames_decoded``
    counts messages accepted; ``frames_rejected`` messages answered AE/AR for being malformed or
    unsupported; ``bytes_skipped`` bytes outside MLLP frames (and dropped over-long frames)."""

    wrong_patient: int = 0
    observations_dropped: int = 0
    acks_sent: int = 0


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Identity:
    """Who a message is about: PV1-3 location components (point of care, room, bed) and the
    PID-3 identifiers (first components), normalised."""

    location: tuple[str, str, str] = ("", "", "")
    patient_ids: frozenset[str] = frozenset()

    @property
    def has_location(self) -> bool:
        """True when PV1-3 names anything."""
        return any(self.location)

    def describe(self) -> str:
        """Human text ("bed 4, room 2, ICU; patient 123")."""
        poc, room, bed = self.location
        where = ", ".join(x for x in (f"bed {bed}" if bed else "", f"room {room}" if room else "", poc) if x)
        who = f"patient {', '.join(sorted(self.patient_ids))}" if self.patient_ids else ""
        return "; ".join(x for x in (where, who) if x) or "no bed or patient given"


def parse_location(text: str) -> tuple[str, str, str]:
    """``POC^ROOM^BED`` (or a bare bed) → normalised (point of care, room, bed)."""
    parts = [_norm(p) for p in text.split("^")]
    if len(parts) == 1:
        return ("", "", parts[0])
    parts += ["", ""]
    return (parts[0], parts[1], parts[2])


class PatientGate:
    """Whether a message belongs to this session's patient. Thread-safe.

    With an expected bed (``"3"``, or ``"ICU^2^3"`` to name point of care and room too): a message
    is accepted only when PV1-3 has the same non-empty components (case and spacing ignored; a
    bare bed also matches a message whose PV1-3 gives only a point of care equal to it). With an
    expected patient identifier: only when PID-3 holds it. With neither, the gate locks on the
    first accepted message's location and identifiers and refuses later messages that name
    another location or share no identifier. :meth:`set_expected` (from any thread) changes the
    expectation and releases the lock.
    """

    def __init__(self, bed: str | None = None, patient: str | None = None) -> None:
        self._lock = threading.Lock()
        self._bed: tuple[str, str, str] | None = None
        self._patient: str | None = None
        self._locked: Identity | None = None
        self.set_expected(bed, patient)

    def set_expected(self, bed: str | None = None, patient: str | None = None) -> None:
        """Expect ``bed`` (None: any) and ``patient`` identifier (None: any)."""
        with self._lock:
            self._bed = parse_location(bed) if bed and bed.strip() else None
            self._patient = _norm(patient) if patient and patient.strip() else None
            self._locked = None

    @property
    def expected(self) -> str:
        """Human text of what is expected now."""
        with self._lock:
            parts = []
            if self._bed is not None:
                parts.append(Identity(self._bed).describe())
            if self._patient is not None:
                parts.append(f"patient {self._patient}")
            if not parts and self._locked is not None:
                parts.append(self._locked.describe())
            return "; ".join(parts) or "any bed"

    def check(self, identity: Identity) -> str | None:
        """None to accept; otherwise the reason for refusing."""
        with self._lock:
            if self._bed is not None:
                if not identity.has_location:
                    return f"no bed in PV1-3; this Vigil records {Identity(self._bed).describe()}"
                if not _location_matches(self._bed, identity.location):
                    return f"message for {Identity(identity.location).describe()}; " \
                           f"this Vigil records {Identity(self._bed).describe()}"
            if self._patient is not None and self._patient not in identity.patient_ids:
                return (f"message for {identity.describe() if identity.patient_ids else 'no patient identifier'}; "
                        f"this Vigil records patient {self._patient}")
            if self._bed is None and self._patient is None:
                locked = self._locked
                if locked is None:
                    self._locked = identity
                    return None
                if identity.has_location and locked.has_location and identity.location != locked.location:
                    return f"message for {identity.describe()}; this session's monitor is {locked.describe()}"
                if identity.patient_ids and locked.patient_ids and not identity.patient_ids & locked.patient_ids:
                    return f"message for {identity.describe()}; this session's patient is {locked.describe()}"
                if not locked.has_location and identity.has_location or not locked.patient_ids and identity.patient_ids:
                    self._locked = Identity(locked.location if locked.has_location else identity.location,
                                            locked.patient_ids or identity.patient_ids)
            return None


def _location_matches(expected: tuple[str, str, str], got: tuple[str, str, str]) -> bool:
    poc, room, bed = expected
    if not poc and not room:  # a bare bed: PV1-3's bed, or its point of care when it gives no bed
        return got[2] == bed if got[2] else got[0] == bed
    return all(want == have for want, have in zip(expected, got) if want)


@dataclass(slots=True)
class _Wave:
    channel: str
    sub_id: str
    samples: np.ndarray
    rate: float | None
    period: float | None = None


@dataclass(slots=True)
class _Outcome:
    """What one message turned into."""

    code: str = "A"                       # A accept, E error, R reject
    text: str = ""
    error: tuple[str, str] | None = None
    location: str = ""
    items: list[Item] = field(default_factory=list)


class Hl7Decoder(Decoder):
    """Host side of HL7 v2 ORU^R01 over MLLP (see the module docstring for the rules).

    ``gate`` decides which patient's messages are accepted (a new :class:`PatientGate` built from
    ``bed`` and ``patient`` when None); ``codebook`` maps codes and units (the shipped and clinic
    tables, or the file ``codes``, when None). ``interval`` is the seconds between messages when
    all is well (the monitor's HL7 send interval), used for stale-data detection. Never raises on
    any bytes; each message gets exactly one acknowledgement (none when MSH-15 says never).
    """

    protocol: ClassVar[str] = "hl7"
    expected_interval = 5.0

    def __init__(self, source: str = "", clock: Callable[[], datetime] = utc_now, *, bed: str | None = None,
                 patient: str | None = None, interval: float = 5.0, codes: str | None = None,
                 gate: PatientGate | None = None, codebook: Codebook | None = None) -> None:
        super().__init__(source, clock)
        self.stats: Hl7Stats = Hl7Stats()
        self.gate = gate if gate is not None else PatientGate(bed, patient)
        self.codebook = codebook if codebook is not None else Codebook(LocalCodes.load(codes))
        self.expected_interval = float(interval)
        self._unframer = Unframer(MAX_MESSAGE)
        self._wave_clock = WaveClock()
        self._nibp_key: object = None
        self._acks = 0
        self._last_refusal: datetime | None = None
        self._unmapped: set[str] = set()

    def set_expected_patient(self, bed: str | None = None, patient: str | None = None) -> None:
        """The session's chair (bed) and patient identifier (see :class:`PatientGate`)."""
        self.gate.set_expected(bed, patient)

    # --------------------------------------------------------------------------- feed
    def feed(self, data: bytes) -> list[Item]:
        """Decode ``data`` (any split); return the items of the messages it completed and queue
        their acknowledgements."""
        stats = self.stats
        stats.bytes_in += len(data)
        unframer = self._unframer
        skipped = unframer.skipped
        payloads = unframer.feed(data)
        stats.bytes_skipped += unframer.skipped - skipped
        items: list[Item] = []
        if not payloads:
            return items
        now = self.clock()
        for payload in payloads:
            self._message(payload, now, items)
        return items

    def _message(self, payload: bytes, now: datetime, items: list[Item]) -> None:
        stats = self.stats
        message = hl7.parse(hl7.decode_text(payload))
        if message is None:
            stats.frames_rejected += 1
            self._ack(None, "E", now, "not an HL7 message (no MSH segment)", hl7.ERR_SEGMENT_SEQUENCE, "MSH^1")
            return
        try:
            outcome = self._evaluate(message, now)
        except (ValueError, IndexError, KeyError, OverflowError, TypeError) as exc:  # a case the rules missed
            outcome = _Outcome("E", f"message could not be processed: {exc}", hl7.ERR_APPLICATION)
        if outcome.code == "A":
            stats.frames_decoded += 1
            items.extend(outcome.items)
        elif outcome.error == hl7.ERR_UNKNOWN_KEY:
            stats.wrong_patient += 1
            self._last_refusal = now
            items.extend(self.conditions.update(self._active_codes() | {"wrong_patient"}, now, _MANAGED))
            item = self.attributes.update("refused", outcome.text, now)
            if item is not None:
                items.append(item)
        else:
            stats.frames_rejected += 1
        self._ack(message, outcome.code, now, outcome.text, outcome.error, outcome.location)

    def _active_codes(self) -> set[str]:
        return set(self.conditions.active & _MANAGED)

    def _ack(self, message: hl7.Message | None, outcome: str, now: datetime, text: str = "",
             error: tuple[str, str] | None = None, location: str = "") -> None:
        mode = "original"
        if message is not None:
            accept = message.get("MSH", 15, 1).upper()
            if accept or message.get("MSH", 16, 1):
                mode = {"AL": "commit", "ER": "commit-error", "SU": "commit-success", "NE": "none"}.get(
                    accept, "commit")
        if mode == "none" or (mode == "commit-error" and outcome == "A") or \
                (mode == "commit-success" and outcome != "A"):
            return
        code = ("C" if mode.startswith("commit") else "A") + outcome
        self._acks += 1
        self.stats.acks_sent += 1
        self.queue_output(frame(hl7.build_ack(message, code, f"VIGIL{self._acks}", now, text, error, location)))

    # --------------------------------------------------------------------------- rules
    def _evaluate(self, message: hl7.Message, now: datetime) -> _Outcome:
        msh_type, msh_event = message.get("MSH", 9, 1).upper(), message.get("MSH", 9, 2).upper()
        if msh_type != "ORU":
            return _Outcome("R", f"message type {msh_type or '(none)'} is not accepted; Vigil takes ORU^R01",
                            hl7.ERR_UNSUPPORTED_TYPE, "MSH^1^9")
        if msh_event != "R01":
            return _Outcome("R", f"event {msh_event or '(none)'} is not accepted; Vigil takes ORU^R01",
                            hl7.ERR_UNSUPPORTED_EVENT, "MSH^1^9")
        version = message.get("MSH", 12, 1)
        if version not in VERSIONS:
            return _Outcome("R", f"HL7 version {version or '(none)'} is not accepted; Vigil takes 2.3 to 2.6",
                            hl7.ERR_UNSUPPORTED_VERSION, "MSH^1^12")
        processing = message.get("MSH", 11, 1).upper()
        if processing not in ("P", "T", "D"):
            return _Outcome("R", f"processing id {processing or '(none)'} is not accepted",
                            hl7.ERR_UNSUPPORTED_PROCESSING, "MSH^1^11")
        if not message.get("MSH", 10):
            return _Outcome("E", "MSH-10 (message control id) is empty", hl7.ERR_REQUIRED_FIELD, "MSH^1^10")
        identity = Identity(parse_location(message.get("PV1", 3)) if message.first("PV1") else ("", "", ""),
                            frozenset(_patient_ids(message)))
        refusal = self.gate.check(identity)
        if refusal is not None:
            return _Outcome("R", refusal, hl7.ERR_UNKNOWN_KEY, "PV1^1^3")
        outcome = _Outcome()
        self._observations(message, now, processing != "P", outcome.items)
        return outcome

    def _observations(self, message: hl7.Message, now: datetime, demo: bool, items: list[Item]) -> None:
        seps = message.separators
        msh_time = hl7.parse_time(message.get("MSH", 7))
        obr_time: datetime | None = None
        entries: dict[datetime | None, list[NumericEntry]] = {}
        nibp: list[tuple[datetime | None, datetime | None, NumericEntry]] = []
        waves: list[_Wave] = []
        periods: list[tuple[str, float]] = []
        alarm = False
        for segment in message.segments:
            name = segment[0]
            if name == "OBR":
                obr_time = hl7.parse_time(hl7.field(segment, 7, seps))
                continue
            if name != "OBX":
                continue
            value_type = hl7.field(segment, 2, seps).upper()
            ident = hl7.components(segment[3] if len(segment) > 3 else "", seps)
            target, local = self.codebook.identify(ident)
            status = hl7.field(segment, 11, seps).upper()
            if target is None:
                if value_type in ("NM", "SN", "NA", "MA") and status not in _NO_RESULT_STATUS:
                    self._note_unmapped(ident, now, items)
                continue
            if status in _NO_RESULT_STATUS:
                continue
            if status in _DROPPED_STATUS:
                self.stats.observations_dropped += 1
                continue
            raw = segment[5] if len(segment) > 5 else ""
            unit = self.codebook.unit(hl7.components(segment[6] if len(segment) > 6 else "", seps))
            kind, key = target
            measured = hl7.parse_time(hl7.field(segment, 14, seps))
            when = measured or obr_time or msh_time
            if kind == "attribute":
                number = _number(hl7.unescape(raw.split(seps.component, 1)[0], seps))
                if number is not None and unit is not None:
                    seconds = Codebook.seconds(number, unit) if key == "sample_period" else \
                        (1.0 / number if number > 0 and unit in ("", "Hz") else None)
                    if seconds and seconds > 0:
                        periods.append((hl7.field(segment, 4, seps), seconds))
                continue
            if kind == "wave":
                wave = self._wave(key, value_type, raw, unit, seps, local.rate if local else None,
                                  hl7.field(segment, 4, seps))
                if wave is not None:
                    waves.append(wave)
                continue
            flags = {f.strip().upper() for f in (segment[8] if len(segment) > 8 else "").split(seps.repetition)}
            alarm = alarm or bool(flags & _ALARM_FLAGS)
            entry = self._numeric(key, value_type, raw, unit, status, seps)
            if flags & _RANGE_FLAGS and entry[1] is not None:
                entry = (entry[0], entry[1], entry[2] | _QUESTIONABLE)
            if key in _NIBP:
                nibp.append((when, measured, entry))
            else:
                entries.setdefault(when, []).append(entry)
        active = self._active_codes() - {"device_alarm", "demo_data"}
        if "wrong_patient" in active and self._last_refusal is not None and \
                (now - self._last_refusal).total_seconds() >= WRONG_PATIENT_HOLD:
            active.discard("wrong_patient")
        if alarm:
            active.add("device_alarm")
        if demo:
            active.add("demo_data")
        items.extend(self.conditions.update(active, now, _MANAGED))
        flags_all = _DEMO if demo else _EMPTY
        for when, group in entries.items():
            numerics_into(group, self.source, now, when, flags_all, items)
        if nibp:  # one reading: its OBX-14 measurement time, else its values, says whether it is new
            reading = tuple((measured, entry[0], entry[1]) for _when, measured, entry in nibp)
            if reading != self._nibp_key:
                self._nibp_key = reading
                for when, _measured, entry in nibp:
                    numerics_into([entry], self.source, now, when, flags_all, items)
        for wave in waves:
            for sub_id, seconds in periods:
                if wave.sub_id and sub_id.startswith(wave.sub_id + "."):
                    wave.rate = 1.0 / seconds
            if wave.rate is None:
                wave.rate = WAVE_CHANNELS[wave.channel][2]
            if not 0 < wave.rate <= 10_000:
                continue
            start = self._wave_clock.start(wave.channel, now, len(wave.samples) / wave.rate)
            items.append(WaveformChunk(channel=wave.channel, rate=wave.rate, start_time=start, samples=wave.samples,
                                       unit=WAVE_CHANNELS[wave.channel][1], source=self.source))

    def _numeric(self, vital: str, value_type: str, raw: str, unit: str | None, status: str,
                 seps: hl7.Separators) -> NumericEntry:
        if status == "X":
            return (vital, None, _INVALID)
        parts = [hl7.unescape(p, seps) for p in raw.split(seps.repetition, 1)[0].split(seps.component)]
        quality = _EMPTY if status in _ACCEPTED_STATUS else _QUESTIONABLE
        if value_type == "SN":
            comparator, number_text = parts[0].strip(), (parts[1] if len(parts) > 1 else "")
            if len(parts) > 2 and any(p.strip() for p in parts[2:]):
                return (vital, None, _INVALID)  # a range or ratio is not one value
            if comparator not in ("", "=", "<", ">", "<=", ">="):
                return (vital, None, _INVALID)
            if comparator not in ("", "="):
                quality = quality | _QUESTIONABLE
        elif value_type in ("NM", ""):
            number_text = parts[0]
        else:
            return (vital, None, _INVALID)
        if not number_text.strip():
            return (vital, None, quality)
        number = _number(number_text)
        if number is None:
            return (vital, None, _INVALID)
        value = None if unit is None else Codebook.convert_vital(vital, number, unit)
        if value is None:  # a unit Vigil does not know, or of another kind
            self.stats.values_dropped_unit += 1
            return (vital, None, _INVALID)
        value = round(value, max(CATALOGUE[vital].decimals, 1) + 1)
        return (vital, value, plausibility(vital, value) | quality)

    def _wave(self, channel: str, value_type: str, raw: str, unit: str | None, seps: hl7.Separators,
              rate: float | None, sub_id: str) -> _Wave | None:
        if unit is None:
            return None
        scale = Codebook.wave_scale(channel, unit)
        if scale is None:
            return None
        if value_type == "NA":
            texts = raw.split(seps.repetition, 1)[0].split(seps.component)
        elif value_type == "MA":
            texts = [rep.split(seps.component, 1)[0] for rep in raw.split(seps.repetition)]
        else:
            return None
        values = [_number(t) for t in texts]
        samples = np.array([math.nan if v is None else v for v in values], np.float32) * np.float32(scale)
        if not len(samples):
            return None
        return _Wave(channel, sub_id, samples, rate)

    def _note_unmapped(self, ident: list[str], now: datetime, items: list[Item]) -> None:
        code = "^".join(ident[:3]).strip("^")
        if code in self._unmapped or len(self._unmapped) >= 64:
            return
        self._unmapped.add(code)
        item = self.attributes.update("unmapped_codes", ", ".join(sorted(self._unmapped)), now)
        if item is not None:
            items.append(item)


def _patient_ids(message: hl7.Message) -> list[str]:
    segment = message.first("PID")
    if segment is None:
        return []
    seps = message.separators
    out = []
    for index in (3, 2):  # PID-3 identifiers; PID-2 (external id) as older senders use it
        raw = segment[index] if len(segment) > index else ""
        for repetition in raw.split(seps.repetition):
            ident = _norm(hl7.unescape(repetition.split(seps.component, 1)[0], seps))
            if ident:
                out.append(ident)
    return out


_NM = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


def _number(text: str) -> float | None:
    """An HL7 NM value (optional sign, digits, optional decimal point); None otherwise."""
    text = text.strip()
    if len(text) > 32 or not _NM.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


__all__ = ["Hl7Decoder", "Hl7Stats", "Identity", "PatientGate", "VERSIONS", "parse_location"]
