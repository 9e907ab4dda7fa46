"""Masimo ASCII 1 ("Serial output: AS1"): Rad-8, Radical-5, Radical-7 and Root pulse CO-oximeters.

The device sends one text line per second at 9600 baud, 8N1, no handshake::

    11/28/26 09:15:02 SN=0000012345 SPO2=095% BPM=088 PI=02.10% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800

that is the device's own date and time (``MM/DD/YY HH:MM:SS``), then space-separated ``KEY=VALUE``
tokens, then CR LF. Field set and widths differ by model and firmware, so tokens are read by key,
never by column or position. Dashes mean "no value".

Two sides live here:

* :class:`MasimoDecoder`, the host side: bytes in, :mod:`drivers.model` items out.
* :func:`encode_line` and :class:`MasimoEmulator`, the device side used by the simulated monitor.

No Qt, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from drivers.base import MAX_STEP_PR, MAX_STEP_SPO2, SYNC_FRAMES, Decoder, SerialSettings, SyncGate, steady
from drivers.catalogue import CATALOGUE
from drivers.emulation import DeviceEmulator, DeviceSnapshot
from drivers.model import Item, NumericEntry, Quality, numerics_into, utc_now

# --------------------------------------------------------------------------------------------
# Protocol facts
# --------------------------------------------------------------------------------------------

#: EXC (exception word, hex) bit -> condition code. 0x800 ("Masimo SET") is informational and
#: normal, so it is deliberately absent; see :data:`EXC_INFORMATIONAL`.
EXC_BITS: Mapping[int, str] = {
    0x1: "no_sensor",
    0x2: "defective_sensor",
    0x4: "low_perfusion",
    0x8: "pulse_search",
    0x10: "interference",
    0x20: "sensor_off",
    0x40: "ambient_light",
    0x80: "unrecognised_sensor",
    0x100: "incompatible_sensor",
    0x400: "low_signal_quality",
    0x1000: "no_cable",
    0x2000: "cable_expired",
    0x4000: "incompatible_cable",
    0x8000: "unrecognised_cable",
    0x10000: "defective_cable",
    0x20000: "calibrating",
    0x40000: "sensor_expired",
    0x80000: "emitter_temperature",
    0x100000: "current_limit",
}

#: EXC bit 0x800, "Masimo SET": set in normal operation; not a condition.
EXC_INFORMATIONAL = 0x800

#: ALARM (hex) bit -> condition code. Not officially published; bits 0-5 confirmed on a bench.
ALARM_BITS: Mapping[int, str] = {
    0x1: "device_spo2_high",
    0x2: "device_spo2_low",
    0x4: "device_pulse_high",
    0x8: "device_pulse_low",
    0x10: "device_alarm",
    0x20: "device_alarm_silenced",
    0x40: "low_battery",
}

#: Line keys that carry a vital sign -> catalogue key. BPM is the oximeter's pulse rate (pr).
VITAL_FIELDS: Mapping[str, str] = {
    "SPO2": "spo2",
    "BPM": "pr",
    "PI": "pi",
    "SPCO": "spco",
    "SPMET": "spmet",
    "SPHB": "sphb",
    "PVI": "pvi",
}

#: Active exception -> quality flag stamped on every numeric of the line read under it.
#: The brief's three (sensor off / no sensor, low perfusion, interference) plus no cable (no
#: sensor reachable), pulse search (oximeter has lost the pulse) and low signal IQ.
EXC_QUALITY: Mapping[str, Quality] = {
    "no_sensor": Quality.SENSOR_OFF,
    "sensor_off": Quality.SENSOR_OFF,
    "no_cable": Quality.SENSOR_OFF,
    "low_perfusion": Quality.LOW_PERFUSION,
    "interference": Quality.ARTIFACT,
    "pulse_search": Quality.OUT_OF_TRACK,
    "low_signal_quality": Quality.QUESTIONABLE,
}

#: The model variants :func:`encode_line` and :class:`MasimoEmulator` can imitate.
MASIMO_VARIANTS: tuple[str, ...] = ("radical5", "rad8", "radical7", "root")

_EXC_SCOPE = frozenset(EXC_BITS.values())
_ALARM_SCOPE = frozenset(ALARM_BITS.values())
_EXC_KNOWN_MASK = sum(EXC_BITS) | EXC_INFORMATIONAL
_ALARM_KNOWN_MASK = sum(ALARM_BITS)
_EMPTY: frozenset[Quality] = frozenset()
_INVALID = frozenset({Quality.INVALID})
_IMPLAUSIBLE = frozenset({Quality.IMPLAUSIBLE})

# A parsed vital token: (vital key, value or None, quality flags of the value itself: INVALID
# for an unreadable value, IMPLAUSIBLE outside the catalogue range) — the entries that
# drivers.model.numerics_into turns into observations without re-validating them.
_VitalEntry = NumericEntry

# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------

_HEAD = re.compile(r"[0-9]{2}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?= |$)")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_HEX_DIGITS = "0123456789abcdefABCDEF"
_SECONDS = {f"{second:02d}": timedelta(seconds=second) for second in range(60)}
_SPO2_BPM = re.compile(r" (SPO2|BPM)=([^ ]*)")

# What a token is, the first element of what _parse_token returns:
# _VITAL (kind, (vital, value, quality)), _EXC / _ALARM (kind, word), _ATTRIBUTE (kind,
# name, value), _SILENT: a KEY=VALUE token with nothing to report (all-dash SN, unreadable
# EXC/ALARM), _STRAY: not a KEY=VALUE token (ignored), _GARBAGE: a byte outside printable ASCII.
_VITAL, _ATTRIBUTE, _EXC, _ALARM, _SILENT, _STRAY, _GARBAGE = range(7)
#: Distinct tokens remembered before the decoder forgets them all and starts again.
_TOKEN_MEMORY = 8192
# Keys of MasimoDecoder._steady for the two status words (attribute names cannot contain "=").
_EXC_KEY, _ALARM_KEY = "=EXC", "=ALARM"


def _parse_token(token: str) -> tuple:
    """Classify one space-delimited token of a line (see the kinds above)."""
    if not (token.isascii() and token.isprintable()):
        return (_GARBAGE,)
    key, sep, value = token.partition("=")
    if not sep or not _KEY.fullmatch(key):
        return (_STRAY,)
    vital = VITAL_FIELDS.get(key)
    if vital is not None:
        text = value[:-1] if value.endswith("%") else value
        if "-" in text and not text.strip("-."):
            return (_VITAL, (vital, None, _EMPTY))
        if not _NUMBER.fullmatch(text):
            return (_VITAL, (vital, None, _INVALID))
        number = float(text)
        if not math.isfinite(number):  # hundreds of digits
            return (_VITAL, (vital, None, _INVALID))
        plausible = CATALOGUE[vital].is_plausible(number)
        return (_VITAL, (vital, number, _EMPTY if plausible else _IMPLAUSIBLE))
    if key == "EXC" or key == "ALARM":
        if not value or value.strip(_HEX_DIGITS):
            return (_SILENT,)
        return (_EXC if key == "EXC" else _ALARM, int(value, 16))
    if key == "SN":
        if any(ch.isdigit() for ch in value):
            return (_ATTRIBUTE, "serial_number", value)
        return (_SILENT,)
    return (_ATTRIBUTE, key, value)


class MasimoDecoder(Decoder):
    """Host side of Masimo ASCII 1 (AS1): one ``MM/DD/YY HH:MM:SS KEY=VALUE …`` line per second.

    Items per decoded line, in this order:

    * :class:`DeviceCondition` changes from ``EXC`` (sensor and cable exceptions,
      :data:`EXC_BITS`) and ``ALARM`` (the device's own alarm state, :data:`ALARM_BITS`),
      tracked as two separate scopes: a line without ``ALARM`` (or with an unreadable one)
      leaves the ALARM conditions as they were, and the same for ``EXC``. EXC 0x800 ("Masimo
      SET") is informational and ignored. Set bits with no known meaning become the attribute
      ``exc_unknown_bits`` / ``alarm_unknown_bits`` (hex, e.g. ``"0x200"``) when they first
      appear or change (back to ``"0x0"`` when they clear).
    * :class:`DeviceAttribute` for every other key when its value first appears or changes:
      ``SN`` as ``serial_number`` (only when it holds digits; an all-dash SN is no serial
      number), anything else (``DESAT``, ``PIDELTA``, ``SPOC``, ``RESVD``, ``EXC1``, keys Vigil
      does not know) under its key as printed.
    * :class:`NumericObservation` for each vital key present (``SPO2`` spo2 %, ``BPM`` pr bpm —
      the oximeter's pulse rate, not ECG heart rate —, ``PI`` pi %, ``SPCO`` spco %, ``SPMET``
      spmet %, ``SPHB`` sphb g/dL, ``PVI`` pvi %), in line order (a key given twice, which only
      a corrupted line does, gives one observation per occurrence), with ``device_time`` the
      line's date-time (naive, year 20YY) and ``sample_time`` the decoder clock, read once per
      :meth:`feed`. A trailing ``%`` is
      optional. Dashes (``---%``, ``--.--%``) give value None. A value that is neither a plain
      decimal number nor dashes (``9X%``, ``-5``, ``1e3``, empty) gives value None flagged
      ``Quality.INVALID``: the device sent the field but what arrived is unreadable, and the
      record says so rather than dropping it. Every numeric also carries the quality flags of
      the exceptions active at that line (:data:`EXC_QUALITY`).

    Framing: lines end in CR LF; a lone CR or LF also ends a line, and empty lines are ignored.
    A line with a valid date-time and at least one ``KEY=VALUE`` token counts as
    ``frames_decoded``; space-separated words without ``=`` inside it are ignored. Any other
    line (no valid date-time, no token, a byte outside printable ASCII) counts as
    ``frames_rejected`` and yields nothing, except the very first line fragment after start,
    which is counted in ``bytes_skipped`` when it does not decode (Vigil usually starts
    listening mid-line). A line longer than :attr:`max_line` bytes is discarded and counted in
    ``bytes_skipped``, and the decoder resynchronises at the next line end. Never raises on any
    input bytes.

    Line noise never becomes vital signs: AS1 has no checksum, so a line that passes those checks
    goes through a :class:`~drivers.base.SyncGate` as well. Consecutive lines must agree: the device
    time 0–2 s later than the line before, SpO2 and BPM moving by at most
    :data:`~drivers.base.MAX_STEP_SPO2` points and :data:`~drivers.base.MAX_STEP_PR` bpm (fields may
    come and go between lines, so the set of keys is not compared). Nothing is emitted until
    :data:`~drivers.base.SYNC_FRAMES` such lines follow each other (at the start and after a line
    that was not one); they are then decoded, each with its own read time, and every later line at
    once. A line inconsistent with the one before counts as ``frames_rejected``, yields nothing and
    starts the count again. Held lines count as ``frames_decoded`` when they arrive.
    ``sync_frames`` (default :data:`~drivers.base.SYNC_FRAMES`; tests of the parsing alone use 1).

    If something else changes :attr:`conditions` (``conditions.clear(t)`` when the link
    drops), the next line re-raises whatever its EXC and ALARM words say.
    """

    protocol: ClassVar[str] = "masimo"
    serial_defaults: ClassVar[SerialSettings] = SerialSettings(9600)
    expected_interval = 1.0
    #: Longest line accepted, in bytes without the terminator (real lines are 100-250).
    max_line: ClassVar[int] = 1024

    def __init__(self, source: str = "", clock: Callable[[], datetime] = utc_now, *,
                 sync_frames: int = SYNC_FRAMES) -> None:
        super().__init__(source, clock)
        self._pending = ""          # start of an unterminated line
        self._discarding = False    # inside an over-long line: skip to the next line end
        self._synced = False        # a line end has been seen since start
        self._minute_key = ""       # "MM/DD/YY HH:MM" of the last line, and its datetime
        self._minute: datetime | None = None
        self._exc: int | None = None    # EXC / ALARM words last applied to the tracker
        self._alarm: int | None = None
        self._applied: frozenset[str] = frozenset()  # the tracker's state right after that
        self._flags: frozenset[Quality] = _EMPTY     # quality flags of the active exceptions
        # Most of a line repeats the line before. Tokens that need no work in the present state
        # are in _settled: every vital token seen (its parse is in _vitals), tokens with nothing
        # to report (_strays are those that are not KEY=VALUE), and, per attribute name or
        # status word, the one token (_steady) that says what Vigil already knows. A line made
        # only of settled tokens takes the fast path; the others go through _absorb.
        self._settled: set[str] = set()
        self._vitals: dict[str, _VitalEntry] = {}
        self._strays: set[str] = set()
        self._steady: dict[str, str] = {}
        self._gate: SyncGate[tuple[_Shape, str, datetime]] = SyncGate(lambda a, b: _steady_lines(a[0], b[0]),
                                                                       sync_frames)
        self._shape_minute: tuple[str, datetime | None] = ("", None)   # (MM/DD/YY HH:MM, its datetime)

    @property
    def hold_s(self) -> float:
        """Lines are held until :data:`~drivers.base.SYNC_FRAMES` consistent ones follow each other."""
        return self._gate.needed * self.expected_interval

    def feed(self, data: bytes) -> list[Item]:
        """Consume ``data`` (any length, split anywhere) and return the items of the lines it
        completed. Never raises on bad bytes (see the class docstring for what is counted)."""
        if not data:
            return []
        stats = self.stats
        stats.bytes_in += len(data)
        limit = self.max_line
        text = bytes(data).decode("latin-1")  # one char per byte, never fails
        if "\r" in text:
            text = text.replace("\r\n", "\n")
            if "\r" in text:
                text = text.replace("\r", "\n")
        parts = text.split("\n")
        tail = parts.pop()
        out: list[Item] = []
        if parts:
            if self._discarding:
                stats.bytes_skipped += len(parts[0])
                parts[0] = ""
                self._discarding = False
            elif self._pending:
                parts[0] = self._pending + parts[0]
            self._pending = ""
            now = self.clock()
            build = numerics_into
            if self.conditions.active != self._applied:
                self._forget_status()
            take = self._take
            first = 0
            if not self._synced:
                self._synced = True
                first = 1
                head = parts[0]
                if len(head) > limit or (head and take(head, now, build, out) is None):
                    stats.bytes_skipped += len(head)
                    self._gate.reset()
                elif head:
                    stats.frames_decoded += 1
            decoded = rejected = 0
            for index in range(first, len(parts)):
                line = parts[index]
                if not line:
                    continue
                if len(line) > limit:
                    stats.bytes_skipped += len(line)
                    self._gate.reset()
                elif take(line, now, build, out):
                    decoded += 1
                else:
                    rejected += 1
            stats.frames_decoded += decoded
            stats.frames_rejected += rejected
        if self._discarding:
            stats.bytes_skipped += len(tail)
        else:
            tail = self._pending + tail if self._pending else tail
            if len(tail) > limit:
                stats.bytes_skipped += len(tail)
                self._pending = ""
                self._discarding = True
            else:
                self._pending = tail
        return out

    def _take(self, line: str, now: datetime, build: Callable[..., None], out: list[Item]) -> bool | None:
        """One complete line through the checks: True when it is believed or held (the lines the
        gate releases are decoded into ``out``), False when it is inconsistent with the line before,
        None when it is not a line at all (both break the chain of consistent lines)."""
        shape = self._shape(line)
        if shape is None:
            self._gate.reset()
            return None
        admitted, rejected = self._gate.admit((shape, line, now))
        for _, held, at in admitted:
            self._decode_line(held, at, build, out)
        return not rejected

    def _shape(self, line: str) -> _Shape | None:
        """What consecutive lines must agree on, or None when ``line`` is not a line (no valid
        date-time, a byte outside printable ASCII, not one KEY=VALUE token). Changes nothing."""
        if _HEAD.match(line) is None or _SECONDS.get(line[15:17]) is None:
            return None
        key, minute = self._shape_minute
        if line[:14] != key:
            try:
                minute = datetime(2000 + int(line[6:8]), int(line[0:2]), int(line[3:5]), int(line[9:11]),
                                  int(line[12:14]))
            except ValueError:
                minute = None
            self._shape_minute = (line[:14], minute)
        if minute is None:
            return None
        tokens = line[18:].split(" ")
        settled = self._settled
        if settled.issuperset(tokens):          # the usual line: every token seen before
            if self._strays.issuperset(tokens):
                return None
        else:
            pairs = False
            for token in tokens:
                if token not in settled and not (token.isascii() and token.isprintable()):
                    return None
                key, sep, _ = token.partition("=")
                pairs = pairs or bool(sep and _KEY.fullmatch(key))
            if not pairs:   # only words without "=": not a line
                return None
        values: dict[str, float | None] = {}
        for key, text in _SPO2_BPM.findall(line):
            token = f"{key}={text}"
            _, value, flags = self._vitals.get(token) or _parse_token(token)[1]
            values[key] = None if flags else value   # an unreadable or implausible value is flagged
        return _Shape(minute + _SECONDS[line[15:17]], values.get("SPO2"), values.get("BPM"))

    def _decode_line(self, line: str, now: datetime, build: Callable[..., None],
                     out: list[Item]) -> bool:
        """Append the items of one line to ``out``; False (nothing appended) if not a line."""
        if _HEAD.match(line) is None:
            return False
        minute = line[:14]
        if minute != self._minute_key:
            self._minute_key = minute
            try:
                self._minute = datetime(2000 + int(line[6:8]), int(line[0:2]), int(line[3:5]),
                                        int(line[9:11]), int(line[12:14]))
            except ValueError:
                self._minute = None
        second = _SECONDS.get(line[15:17])
        if self._minute is None or second is None:
            return False
        tokens = line[18:].split(" ")
        if not self._settled.issuperset(tokens) and not self._absorb(tokens, now, out):
            return False
        vitals = list(filter(None, map(self._vitals.get, tokens)))
        if vitals:
            build(vitals, self.source, now, self._minute + second, self._flags, out)
        elif self._strays.issuperset(tokens):
            return False  # not one KEY=VALUE token
        return True

    def _absorb(self, tokens: list[str], now: datetime, out: list[Item]) -> bool:
        """Parse the tokens of a line that are not settled and act on them: status words,
        attributes. False, with nothing done, when one of them is garbage."""
        if len(self._settled) > _TOKEN_MEMORY:
            self._settled.clear()
            self._vitals.clear()
            self._strays.clear()
            self._steady.clear()
        settled = self._settled
        fresh = []
        for token in tokens:
            if token not in settled:
                parsed = _parse_token(token)
                if parsed[0] == _GARBAGE:
                    return False
                fresh.append((token, parsed))
        exc = alarm = None
        attributes = []
        for token, parsed in fresh:
            kind = parsed[0]
            if kind == _VITAL:
                self._vitals[token] = parsed[1]
                settled.add(token)
            elif kind == _EXC:
                exc = (token, parsed[1])
            elif kind == _ALARM:
                alarm = (token, parsed[1])
            elif kind == _ATTRIBUTE:
                attributes.append((token, parsed[1], parsed[2]))
            else:
                settled.add(token)
                if kind == _STRAY:
                    self._strays.add(token)
        if exc is not None:
            if exc[1] != self._exc:
                self._apply(exc[1], now, out, EXC_BITS, _EXC_SCOPE, _EXC_KNOWN_MASK,
                            "exc_unknown_bits")
                self._exc = exc[1]
                self._flags = _flags_of(self._applied)
            self._make_steady(_EXC_KEY, exc[0])
        if alarm is not None:
            if alarm[1] != self._alarm:
                self._apply(alarm[1], now, out, ALARM_BITS, _ALARM_SCOPE, _ALARM_KNOWN_MASK,
                            "alarm_unknown_bits")
                self._alarm = alarm[1]
            self._make_steady(_ALARM_KEY, alarm[0])
        for token, name, value in attributes:
            item = self.attributes.update(name, value, now)
            if item is not None:
                out.append(item)
            self._make_steady(name, token)
        return True

    def _make_steady(self, key: str, token: str) -> None:
        """Make ``token`` the settled one for ``key`` (a status word or an attribute name)."""
        before = self._steady.get(key)
        if before != token:
            if before is not None:
                self._settled.discard(before)
            self._steady[key] = token
            self._settled.add(token)

    def _forget_status(self) -> None:
        """The tracker changed from outside: take its state, re-apply the next status words."""
        self._exc = self._alarm = None
        for key in (_EXC_KEY, _ALARM_KEY):
            token = self._steady.pop(key, None)
            if token is not None:
                self._settled.discard(token)
        self._applied = self.conditions.active
        self._flags = _flags_of(self._applied)

    def _apply(self, word: int, now: datetime, out: list[Item], bits: Mapping[int, str],
               scope: frozenset[str], known: int, unknown_name: str) -> None:
        """Bring the tracker's conditions in ``scope`` in line with status ``word``."""
        active = [code for bit, code in bits.items() if word & bit]
        out.extend(self.conditions.update(active, now, scope))
        self._applied = self.conditions.active
        unknown = word & ~known
        if unknown or unknown_name in self.attributes.values:
            item = self.attributes.update(unknown_name, hex(unknown), now)
            if item is not None:
                out.append(item)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What two consecutive lines must agree on: the device time (0–2 s later) and SpO2 / BPM
    moving as a patient's do (values flagged unreadable or implausible aside)."""

    time: datetime
    spo2: float | None
    pr: float | None


def _steady_lines(before: _Shape, after: _Shape) -> bool:
    return (0 <= (after.time - before.time).total_seconds() <= 2
            and steady(before.spo2, after.spo2, MAX_STEP_SPO2) and steady(before.pr, after.pr, MAX_STEP_PR))


def _flags_of(active: Iterable[str]) -> frozenset[Quality]:
    """The quality flags implied by the active condition codes (:data:`EXC_QUALITY`)."""
    return frozenset(EXC_QUALITY[code] for code in active if code in EXC_QUALITY)


# --------------------------------------------------------------------------------------------
# Device side
# --------------------------------------------------------------------------------------------

# Per variant: the keys in line order and the ALARM / EXC hex widths. Radical-5 and Rad-8 widths
# and the Radical-7 additions are from protocols.md; the exact Radical-7 / Root widths, their
# key order and Root's extra keys (RRA, ORI) are Vigil's choice, made to exercise the decoder.
_LAYOUTS: dict[str, tuple[tuple[str, ...], int, int]] = {
    "radical5": (("SN", "SPO2", "BPM", "PI", "SPCO", "SPMET", "DESAT", "PIDELTA", "ALARM", "EXC"),
                 2, 3),
    "rad8": (("SN", "SPO2", "BPM", "PI", "SPCO", "SPMET", "DESAT", "PIDELTA", "ALARM", "EXC"),
             4, 6),
    "radical7": (("SN", "SPO2", "BPM", "PI", "SPCO", "SPMET", "SPHB", "SPOC", "RESVD", "DESAT",
                  "PIDELTA", "PVI", "ALARM", "EXC", "EXC1"), 6, 8),
    "root": (("SN", "SPO2", "BPM", "PI", "SPCO", "SPMET", "SPHB", "SPOC", "RESVD", "DESAT",
              "PIDELTA", "PVI", "RRA", "ORI", "ALARM", "EXC", "EXC1"), 8, 8),
}

# Vital key -> (catalogue key, format for a value, text for no value).
_VALUE_FORMATS: dict[str, tuple[str, str, str]] = {
    "SPO2": ("spo2", "{:03.0f}%", "---%"),
    "BPM": ("pr", "{:03.0f}", "---"),
    "PI": ("pi", "{:05.2f}%", "--.--%"),
    "SPCO": ("spco", "{:04.1f}%", "--.-%"),
    "SPMET": ("spmet", "{:04.1f}%", "--.-%"),
    "SPHB": ("sphb", "{:04.1f}", "--.-"),
    "PVI": ("pvi", "{:03.0f}", "---"),
}

# Fields the emulator never has a value for, printed as the device prints "nothing".
_FIXED_FIELDS: dict[str, str] = {
    "DESAT": "--", "PIDELTA": "+--", "SPOC": "--.-", "RESVD": "---", "EXC1": "00000000",
    "RRA": "---", "ORI": "-.--",
}

_CODE_BITS: dict[str, tuple[str, int]] = {
    **{code: ("EXC", bit) for bit, code in EXC_BITS.items()},
    **{code: ("ALARM", bit) for bit, code in ALARM_BITS.items()},
    # Simulator codes with a Masimo equivalent.
    "artifact": ("EXC", 0x10),
    "out_of_track": ("EXC", 0x8),
}


def _check_variant(variant: str) -> str:
    if variant not in _LAYOUTS:
        raise ValueError(f"unknown Masimo variant {variant!r}; choose one of: {', '.join(MASIMO_VARIANTS)}")
    return variant


def encode_line(
    values: Mapping[str, float | None],
    *,
    device_time: datetime,
    conditions: Iterable[str] = (),
    variant: str = "rad8",
    serial_number: str | None = "0000012345",
) -> bytes:
    """One AS1 line, CR LF included, as the ``variant`` model would send it.

    ``values`` by catalogue key (``spo2`` %, ``pr`` bpm, ``pi`` %, ``spco`` %, ``spmet`` %,
    ``sphb`` g/dL, ``pvi`` %); a key that is missing, None or NaN prints as dashes, and keys the
    variant has no field for are left out. Values are rounded to the field's precision
    (``SPO2=095%``, ``BPM=088``, ``PI=02.10%``, ``SPCO=01.5%``, ``SPHB=13.5``); negative values
    print as 0. ``device_time`` is printed to the second as ``MM/DD/YY HH:MM:SS``.
    ``conditions`` are condition codes (``sensor_off``, ``device_spo2_low`` …, plus the
    simulator's ``artifact`` as interference and ``out_of_track`` as pulse search) set as EXC /
    ALARM bits; codes with no Masimo bit are ignored. EXC always has 0x800 ("Masimo SET") set,
    as a working device does. ``serial_number`` None prints ``SN=----------``.
    Raises ValueError for an unknown ``variant``.
    """
    keys, alarm_width, exc_width = _LAYOUTS[_check_variant(variant)]
    words = {"EXC": EXC_INFORMATIONAL, "ALARM": 0}
    for code in conditions:
        target = _CODE_BITS.get(code)
        if target is not None:
            words[target[0]] |= target[1]
    fields = [device_time.strftime("%m/%d/%y %H:%M:%S")]
    for key in keys:
        if key in _VALUE_FORMATS:
            vital, pattern, dashes = _VALUE_FORMATS[key]
            value = values.get(vital)
            if value is None or math.isnan(value) or math.isinf(value):
                text = dashes
            else:
                text = pattern.format(max(float(value), 0.0))
        elif key == "SN":
            text = serial_number if serial_number else "-" * 10
        elif key == "ALARM":
            text = format(words["ALARM"], f"0{alarm_width}X")
        elif key == "EXC":
            text = format(words["EXC"], f"0{exc_width}X")
        else:
            text = _FIXED_FIELDS[key]
        fields.append(f"{key}={text}")
    return (" ".join(fields) + "\r\n").encode("ascii")


class MasimoEmulator(DeviceEmulator):
    """Device side of Masimo AS1 for the simulated monitor: one line per simulated second.

    ``variant`` is one of :data:`MASIMO_VARIANTS` (ValueError otherwise); ``serial_number`` None
    sends an all-dash SN. The emulator keeps its own one-second cadence across
    :meth:`produce` calls of any length (0.3 s steps give a line every 3 or 4 calls; a 60 s step
    gives 60 lines). The device sends only; :meth:`receive` ignores what the host sends.
    """

    protocol: ClassVar[str] = "masimo"

    def __init__(self, variant: str = "rad8", serial_number: str | None = "0000012345") -> None:
        self.variant = _check_variant(variant)
        self.serial_number = serial_number
        self._since_line = 0.0  # simulated seconds since the last line

    def produce(self, snapshot: DeviceSnapshot) -> bytes:
        """The lines due during ``snapshot.elapsed`` seconds, each from the snapshot's values and
        conditions, stamped with the device clock at the moment the line was sent (lines of one
        step are one second apart, the last one ``leftover`` seconds before the step's end)."""
        self._since_line += max(snapshot.elapsed, 0.0)
        count = int(self._since_line + 1e-9)
        if count == 0:
            return b""
        self._since_line = max(self._since_line - count, 0.0)
        lines = []
        for index in range(count):
            back = self._since_line + (count - 1 - index)
            lines.append(encode_line(
                snapshot.values,
                device_time=snapshot.device_time - timedelta(seconds=back),
                conditions=snapshot.conditions,
                variant=self.variant,
                serial_number=self.serial_number,
            ))
        return b"".join(lines)
