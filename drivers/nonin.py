"""Nonin pulse oximeters: serial data formats #2, #7 and #8, and the ASCII real-time output.

Host side (decoders, registered as ``nonin``/``nonin2``, ``nonin7``, ``nonin8`` and
``nonin-ascii``) and device side (:class:`NoninEmulator`, used by ``vigil simulate --protocol
nonin``), written from the public Nonin OEM III / Xpod / WristOx2 OEM specifications and
operator's manuals. All formats run at 9600 baud, 8N1.

Wire facts, with the readings chosen where the public material is thin:

* **Format #2** (OEM III, Xpod): 75 frames/s of ``01 STATUS PLETH FLOAT CHK``; CHK is the sum of
  the first four bytes mod 256. STATUS: bit 7 always 1, 0x40 sensor disconnected, 0x20 artifact,
  0x10 out of track, 0x08 sensor alarm (unusable data, e.g. finger out), perfusion in 0x06
  (0x02 green, 0x06 yellow, 0x04 red), 0x01 SYNC = frame 1 of a 25-frame packet (1/3 s). The FLOAT
  byte of frame *i* of the packet carries: 0 HR bits 8-7, 1 HR bits 6-0, 2 SpO2, 3 firmware
  revision, 8 SpO2-D, 9 SpO2 fast, 10 SpO2 beat-to-beat, 13/14 E-HR, 15 E-SpO2, 16 E-SpO2-D,
  19/20 HR-D, 21/22 E-HR-D. Missing: HR 511, SpO2 127.
* **Format #7**: the same packet, with a 16-bit pleth: ``STATUS PLETH_MSB PLETH_LSB FLOAT CHK``
  (no 0x01 lead byte); frames 5/6 carry a timer and frame 7 a second status byte (0x20
  SmartPoint, 0x01 low battery).
* **Format #8**: 1 frame/s of ``STATUS HR_LSB SPO2 STATUS2``, no checksum. STATUS: bit 7 always
  1, 0x40 disconnected, 0x20 out of track, 0x10 low perfusion, 0x08 marginal perfusion, 0x04
  artifact, bits 1-0 = HR bits 8-7. STATUS2 (two public readings agree on 0x08 and 0x01): 0x08
  sensor alarm (unusable data), 0x01 low battery; one reading adds 0x02 critical battery (treated
  as low battery here), 0x04 spot-check mode and 0x20 SmartPoint (informational, ignored).
* **Format selection**: ``02 70 04 02 <fmt> 01 <chk> 03``, chk = sum of the five bytes from the
  opcode (0x70) to the option byte, mod 256 (public captures of ``02 70 04 02 02 00 78 03``
  confirm the convention: 0x70+0x04+0x02+0x02+0x00 = 0x78). The device answers ACK 0x06 or NAK
  0x15. The option byte (0x01 here, 0x00 in some captures) is not documented publicly; the
  emulator accepts either.
* **ASCII** (7500, 8500, 9600, BT4000…): one line a second, ``SPO2=XXX HR=YYY`` CR LF, ``---``
  for no data, optionally prefixed ``HH:MM:SS `` and suffixed ``F`` (the values are the
  fast-responding ones: a configuration, not a fault), ``*`` (event marker: the user pressed
  ON/STANDBY) or ``B`` (a CO2 detector saw a breath in the last interval). None of the three is
  a device fault, so none becomes a condition or a quality flag (see :class:`NoninAsciiDecoder`).

The binary decoders are vectorised with numpy: candidate frame starts are found over the whole
buffer at once and the regular frame-spaced run is taken in one step, so decoding a capture runs
far faster than the line rate; the greedy "accept a valid frame, else slide one byte" resync is
preserved exactly (same frames, same counts, whatever the read boundaries).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timedelta
from typing import ClassVar

import numpy as np

from drivers.base import MAX_STEP_PR, MAX_STEP_SPO2, SYNC_FRAMES, Decoder, SerialSettings, SyncGate, steady
from drivers.emulation import DeviceEmulator, DeviceSnapshot
from drivers.model import Item, Quality, WaveformChunk, numeric, utc_now

__all__ = [
    "ACK", "NAK", "FRAMES_PER_PACKET", "FRAME_RATE", "MISSING_HR", "MISSING_SPO2",
    "Nonin2Decoder", "Nonin7Decoder", "Nonin8Decoder", "NoninAsciiDecoder", "NoninEmulator",
    "format_select_command", "parse_format_select_command",
    "encode_format2_packet", "encode_format7_packet", "encode_format8_frame", "encode_ascii_line",
]

# ------------------------------------------------------------------------------ constants
STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15
OP_SET_FORMAT = 0x70

#: Frames per packet in formats #2 and #7 (one packet every 1/3 s).
FRAMES_PER_PACKET = 25
#: Frames per second in formats #2 and #7.
FRAME_RATE = 75.0
#: Wire codes for "no value".
MISSING_HR = 511
MISSING_SPO2 = 127

# STATUS bits of formats #2 and #7.
ST_ALWAYS = 0x80
ST_SNSD = 0x40   # sensor disconnected
ST_ARTF = 0x20   # artifact (reported per pulse)
ST_OOT = 0x10    # out of track
ST_SNSA = 0x08   # sensor alarm: unusable data (finger out)
ST_PERF = 0x06   # perfusion field: 0x02 green, 0x06 yellow, 0x04 red (reported per pulse)
ST_GREEN = 0x02
ST_YELLOW = 0x06
ST_RED = 0x04
ST_SYNC = 0x01

# STAT2 (frame 7 of format #7).
ST2_SMARTPOINT = 0x20
ST2_LOW_BATTERY = 0x01

# STATUS / STATUS2 of format #8.
F8_SNSD = 0x40
F8_OOT = 0x20
F8_LOW_PERF = 0x10
F8_MARGINAL_PERF = 0x08
F8_ARTF = 0x04
F8_HR_HIGH = 0x03
F8S2_SENSOR_ALARM = 0x08
F8S2_CRITICAL_BATTERY = 0x02
F8S2_LOW_BATTERY = 0x01

#: Firmware revision byte the emulator reports (frame 3).
EMULATED_FIRMWARE = 0x2A

#: Condition codes the Nonin status bits map to.
STATUS_CONDITIONS: frozenset[str] = frozenset(
    {"no_sensor", "sensor_off", "artifact", "out_of_track", "low_perfusion", "marginal_perfusion"}
)
_REPLY_CONDITIONS = frozenset({"command_rejected"})


# ------------------------------------------------------------------------------ commands
def format_select_command(fmt: int, option: int = 0x01) -> bytes:
    """The host command selecting serial data format ``fmt`` (e.g. 2, 7, 8, 13).

    ``02 70 04 02 <fmt> <option> <chk> 03`` with chk = (0x70 + 0x04 + 0x02 + fmt + option) mod
    256. ``ValueError`` if ``fmt`` or ``option`` is not a byte value.
    """
    if not (0 <= fmt <= 0xFF and 0 <= option <= 0xFF):
        raise ValueError("format and option must be byte values (0..255)")
    body = bytes((OP_SET_FORMAT, 0x04, 0x02, fmt, option))
    return bytes((STX,)) + body + bytes((sum(body) & 0xFF, ETX))


def parse_format_select_command(command: bytes) -> int | None:
    """The format a complete format-selection command asks for, or None if it is malformed.

    Accepts the checksummed form ``02 70 04 02 <fmt> <opt> <chk> 03`` and the short form without
    a checksum that some hosts send (``02 70 02 02 <fmt> 03``). Never raises.
    """
    c = bytes(command)
    if len(c) == 8 and c[0] == STX and c[1] == OP_SET_FORMAT and c[2] == 0x04 and c[3] == 0x02 \
            and c[7] == ETX and sum(c[1:6]) & 0xFF == c[6]:
        return c[4]
    if len(c) == 6 and c[0] == STX and c[1] == OP_SET_FORMAT and c[2] == 0x02 and c[3] == 0x02 \
            and c[5] == ETX:
        return c[4]
    return None


# ------------------------------------------------------------------------------ encoders
def _hr_code(pr: float | None) -> int:
    if pr is None or pr != pr:          # None or NaN (of any float type)
        return MISSING_HR
    return int(min(max(round(pr), 0), MISSING_HR - 1))


def _spo2_code(spo2: float | None) -> int:
    if spo2 is None or spo2 != spo2:
        return MISSING_SPO2
    return int(min(max(round(spo2), 0), MISSING_SPO2 - 1))


def _packet_status(conditions: Iterable[str]) -> int:
    """STATUS bits (without SYNC) for a packet of format #2/#7 under ``conditions``.

    Perfusion: red for low_perfusion, yellow for marginal_perfusion, green otherwise; none while
    the sensor is disconnected or off (a real device reports perfusion only during a pulse; the
    emulator reports it on every frame, which decoders must accept as well).
    """
    cond = set(conditions)
    status = ST_ALWAYS
    if "no_sensor" in cond:
        status |= ST_SNSD
    if "artifact" in cond:
        status |= ST_ARTF
    if "out_of_track" in cond:
        status |= ST_OOT
    if "sensor_off" in cond:
        status |= ST_SNSA
    if not cond & {"no_sensor", "sensor_off"}:
        if "low_perfusion" in cond:
            status |= ST_RED
        elif "marginal_perfusion" in cond:
            status |= ST_YELLOW
        else:
            status |= ST_GREEN
    return status


def _packet_floats(spo2: int, hr: int, firmware: int, timer: int = 0, stat2: int = 0) -> np.ndarray:
    """The 25 FLOAT bytes of a packet carrying ``spo2``/``hr`` codes in every averaged slot."""
    f = np.zeros(FRAMES_PER_PACKET, np.uint8)
    hi, lo = (hr >> 7) & 0x03, hr & 0x7F
    f[0], f[1], f[2], f[3] = hi, lo, spo2, firmware & 0xFF
    f[5], f[6], f[7] = (timer >> 8) & 0xFF, timer & 0xFF, stat2 & 0xFF
    f[8] = f[9] = f[10] = spo2            # SpO2-D, SpO2 fast, SpO2 beat-to-beat
    f[13], f[14], f[15], f[16] = hi, lo, spo2, spo2   # E-HR, E-SpO2, E-SpO2-D
    f[19], f[20], f[21], f[22] = hi, lo, hi, lo       # HR-D, E-HR-D
    return f


def _pleth_array(pleth: Sequence[float] | np.ndarray, count: int) -> np.ndarray:
    values = np.asarray(pleth, dtype=np.float64).ravel()
    if values.size != count:
        raise ValueError(f"need exactly {count} pleth samples, got {values.size}")
    return values


def _encode_frames_2(status: np.ndarray, pleth: np.ndarray, floats: np.ndarray) -> bytes:
    """Format #2 frames from per-frame STATUS, 8-bit PLETH and FLOAT bytes."""
    frames = np.empty((len(status), 5), np.uint8)
    frames[:, 0] = 0x01
    frames[:, 1] = status
    frames[:, 2] = pleth
    frames[:, 3] = floats
    frames[:, 4] = (frames[:, 0] + frames[:, 1] + frames[:, 2] + frames[:, 3]).astype(np.uint8)
    return frames.tobytes()


def _encode_frames_7(status: np.ndarray, pleth: np.ndarray, floats: np.ndarray) -> bytes:
    """Format #7 frames from per-frame STATUS, 16-bit PLETH and FLOAT bytes."""
    frames = np.empty((len(status), 5), np.uint8)
    frames[:, 0] = status
    frames[:, 1] = (pleth >> 8) & 0xFF
    frames[:, 2] = pleth & 0xFF
    frames[:, 3] = floats
    frames[:, 4] = (frames[:, 0] + frames[:, 1] + frames[:, 2] + frames[:, 3]).astype(np.uint8)
    return frames.tobytes()


def _frame_status(base: int, pleth: np.ndarray, first_is_sync: bool) -> np.ndarray:
    """Per-frame STATUS: ``base``, SYNC on frame 0, sensor alarm where the pleth is NaN."""
    status = np.full(len(pleth), base, np.uint8)
    nan = np.isnan(pleth)
    if nan.any():
        status[nan] = (status[nan] | ST_SNSA) & ~ST_PERF & 0xFF
    if first_is_sync and len(status):
        status[0] |= ST_SYNC
    return status


def _scale(pleth: np.ndarray, top: int, dtype: type) -> np.ndarray:
    clean = np.nan_to_num(np.clip(pleth, 0.0, 1.0), nan=0.0)
    return np.rint(clean * top).astype(dtype)


def encode_format2_packet(
    spo2: float | None,
    pr: float | None,
    pleth25: Sequence[float] | np.ndarray,
    conditions: Iterable[str] = (),
    *,
    firmware: int = EMULATED_FIRMWARE,
) -> bytes:
    """One format #2 packet: 25 frames, 125 bytes.

    ``spo2`` (%) and ``pr`` (bpm) are rounded and clipped to the wire range; None or NaN sends
    the missing code (SpO2 127, HR 511). ``pleth25``: 25 samples, 0..1 (clipped), scaled to
    0..255; a NaN sample is sent as 0 with the sensor-alarm bit on its frame. ``conditions``:
    codes among no_sensor, sensor_off, artifact, out_of_track, low_perfusion, marginal_perfusion
    (others ignored). ``ValueError`` if ``pleth25`` does not have 25 samples.
    """
    pleth = _pleth_array(pleth25, FRAMES_PER_PACKET)
    status = _frame_status(_packet_status(conditions), pleth, True)
    floats = _packet_floats(_spo2_code(spo2), _hr_code(pr), firmware)
    return _encode_frames_2(status, _scale(pleth, 255, np.uint8), floats)


def encode_format7_packet(
    spo2: float | None,
    pr: float | None,
    pleth25: Sequence[float] | np.ndarray,
    conditions: Iterable[str] = (),
    *,
    firmware: int = EMULATED_FIRMWARE,
    timer: int = 0,
) -> bytes:
    """One format #7 packet: 25 frames, 125 bytes, with a 16-bit pleth (0..1 scaled to 0..65535).

    As :func:`encode_format2_packet`; in addition ``low_battery`` in ``conditions`` sets the
    low-battery bit of STAT2 (frame 7) and ``timer`` (0..65535, wrapped) fills frames 5/6.
    """
    pleth = _pleth_array(pleth25, FRAMES_PER_PACKET)
    status = _frame_status(_packet_status(conditions), pleth, True)
    stat2 = ST2_LOW_BATTERY if "low_battery" in set(conditions) else 0
    floats = _packet_floats(_spo2_code(spo2), _hr_code(pr), firmware, timer & 0xFFFF, stat2)
    return _encode_frames_7(status, _scale(pleth, 65535, np.uint16).astype(np.int64), floats)


def encode_format8_frame(spo2: float | None, pr: float | None, conditions: Iterable[str] = ()) -> bytes:
    """One format #8 frame (4 bytes): STATUS, HR bits 6-0, SpO2, STATUS2.

    Values as in :func:`encode_format2_packet` (None/NaN → 511 / 127). ``conditions`` maps to
    STATUS (no_sensor 0x40, out_of_track 0x20, low_perfusion 0x10, marginal_perfusion 0x08,
    artifact 0x04) and STATUS2 (sensor_off 0x08, low_battery 0x01).
    """
    cond = set(conditions)
    hr, sp = _hr_code(pr), _spo2_code(spo2)
    status = ST_ALWAYS | ((hr >> 7) & F8_HR_HIGH)
    for code, bit in (("no_sensor", F8_SNSD), ("out_of_track", F8_OOT), ("low_perfusion", F8_LOW_PERF),
                      ("marginal_perfusion", F8_MARGINAL_PERF), ("artifact", F8_ARTF)):
        if code in cond:
            status |= bit
    status2 = (F8S2_SENSOR_ALARM if "sensor_off" in cond else 0) | (F8S2_LOW_BATTERY if "low_battery" in cond else 0)
    return bytes((status, hr & 0x7F, sp, status2))


def encode_ascii_line(
    spo2: float | None,
    pr: float | None,
    *,
    clock: dtime | datetime | None = None,
    fast: bool = False,
    event: bool = False,
    breath: bool = False,
) -> bytes:
    """One ASCII real-time line, e.g. ``b"09:15:02 SPO2=097 HR=072\\r\\n"``.

    Values are rounded, clipped to 0..999 and zero-padded to three digits; None/NaN prints
    ``---``. ``clock`` adds the ``HH:MM:SS `` prefix; ``fast`` appends `` F``, ``event`` ``*`` and
    ``breath`` ``B``.
    """
    def field_text(value: float | None) -> str:
        if value is None or value != value:
            return "---"
        return f"{int(min(max(round(value), 0), 999)):03d}"

    line = f"SPO2={field_text(spo2)} HR={field_text(pr)}"
    if clock is not None:
        line = f"{clock.hour:02d}:{clock.minute:02d}:{clock.second:02d} {line}"
    if fast:
        line += " F"
    if event:
        line += "*"
    if breath:
        line += "B"
    return (line + "\r\n").encode("ascii")


# ------------------------------------------------------------------------------ frame validity
def _valid_format2(arr: np.ndarray) -> np.ndarray:
    """Bool per position p (0..n-5): a checksum-valid format #2 frame starts at p."""
    k = len(arr) - 4
    if k <= 0:
        return np.zeros(0, bool)
    b0, b1, b2, b3, b4 = arr[:k], arr[1:k + 1], arr[2:k + 2], arr[3:k + 3], arr[4:k + 4]
    return (b0 == 0x01) & (b1 >= 0x80) & ((b0 + b1 + b2 + b3) == b4)  # uint8 sums wrap mod 256


def _rows_format2(rows: np.ndarray) -> np.ndarray:
    """Bool per row of an (n, 5) frame matrix: the row is a valid format #2 frame."""
    b0, b1, b2, b3, b4 = rows.T
    return (b0 == 0x01) & (b1 >= 0x80) & ((b0 + b1 + b2 + b3) == b4)


def _header_format2(arr: np.ndarray, k: int) -> np.ndarray:
    return (arr[:k] == 0x01) & (arr[1:k + 1] >= 0x80)


def _valid_format7(arr: np.ndarray) -> np.ndarray:
    """Bool per position p (0..n-5): a checksum-valid format #7 frame starts at p."""
    k = len(arr) - 4
    if k <= 0:
        return np.zeros(0, bool)
    b0, b1, b2, b3, b4 = arr[:k], arr[1:k + 1], arr[2:k + 2], arr[3:k + 3], arr[4:k + 4]
    return (b0 >= 0x80) & ((b0 + b1 + b2 + b3) == b4)


def _rows_format7(rows: np.ndarray) -> np.ndarray:
    """Bool per row of an (n, 5) frame matrix: the row is a valid format #7 frame."""
    b0, b1, b2, b3, b4 = rows.T
    return (b0 >= 0x80) & ((b0 + b1 + b2 + b3) == b4)


def _header_high_bit(arr: np.ndarray, k: int) -> np.ndarray:
    return arr[:k] >= 0x80


#: Highest HR a format #8 frame may carry to count as plausible (Nonin's range ends at 321).
F8_MAX_PLAUSIBLE_HR = 350
#: STATUS2 bits of format #8 with no published meaning: a frame with one set is not believed.
F8S2_RESERVED = 0x50


def _valid_format8(arr: np.ndarray) -> np.ndarray:
    """Bool per position p (0..n-4): a plausible format #8 frame starts at p.

    Plausible: STATUS has bit 7 set, the three other bytes have it clear, SpO2 is 0..100 or the
    missing code 127, HR is at most :data:`F8_MAX_PLAUSIBLE_HR` or the missing code 511, and no
    reserved STATUS2 bit (:data:`F8S2_RESERVED`) is set.
    """
    k = len(arr) - 3
    if k <= 0:
        return np.zeros(0, bool)
    return _plausible8(arr[:k], arr[1:k + 1], arr[2:k + 2], arr[3:k + 3])


def _rows_format8(rows: np.ndarray) -> np.ndarray:
    """Bool per row of an (n, 4) frame matrix: the row is a plausible format #8 frame."""
    b0, b1, b2, b3 = rows.T
    return _plausible8(b0, b1, b2, b3)


def _plausible8(b0: np.ndarray, b1: np.ndarray, b2: np.ndarray, b3: np.ndarray) -> np.ndarray:
    hr = ((b0 & 0x03).astype(np.int16) << 7) | b1
    return ((b0 >= 0x80) & (b1 < 0x80) & (b2 < 0x80) & (b3 < 0x80) & ((b3 & F8S2_RESERVED) == 0)
            & ((b2 <= 100) | (b2 == MISSING_SPO2))
            & ((hr <= F8_MAX_PLAUSIBLE_HR) | (hr == MISSING_HR)))


def _steady_readings(before: tuple[int, int], after: tuple[int, int]) -> bool:
    """Two consecutive (SpO2, HR) wire codes move as a patient's readings do (missing codes aside)."""
    def value(code: int, missing: int) -> float | None:
        return None if code == missing else float(code)

    return (steady(value(before[0], MISSING_SPO2), value(after[0], MISSING_SPO2), MAX_STEP_SPO2)
            and steady(value(before[1], MISSING_HR), value(after[1], MISSING_HR), MAX_STEP_PR))


def _run_ends(valid: np.ndarray, length: int) -> np.ndarray:
    """For each position p: the first q >= p with q ≡ p (mod length) where ``valid`` is False."""
    m = len(valid)
    rows = -(-m // length) + 1
    padded = np.zeros(rows * length, bool)
    padded[:m] = valid
    grid = padded.reshape(rows, length)
    row_index = np.arange(rows)[:, None]
    first_false = np.where(grid, rows, row_index)
    first_false = np.minimum.accumulate(first_false[::-1], axis=0)[::-1]
    return (first_false * length + np.arange(length)).ravel()[:m]


@dataclass(slots=True)
class _Scan:
    """What one pass of :class:`_FrameScanner` found."""

    arr: np.ndarray
    starts: np.ndarray                 # accepted frame starts (indices into arr)
    gaps: np.ndarray                   # per accepted frame: not contiguous with the previous frame
    replies: list[tuple[int, int]] = field(default_factory=list)  # (frames before it, byte)
    skipped: int = 0
    rejected: int = 0


class _FrameScanner:
    """Fixed-length frames in a byte stream, with greedy one-byte resynchronisation, vectorised.

    Greedy rule (identical to the scalar loop "accept a valid frame here, else slide one byte"):
    the accepted frames are the first valid start, then the first valid start at or after its
    end, and so on. The regular run of back-to-back frames is checked as the rows of a matrix (in
    growing blocks); where it breaks, the greedy rule is applied, vectorised, over a window of
    :data:`WINDOW` positions, then the fast path resumes. A position is judged as soon as the
    bytes its decision needs have arrived (a frame: its own bytes; a possible reply byte: also the
    frame after it), so every decision sees the same bytes whatever the read boundaries.

    Replies: an ACK/NAK byte exactly where a frame could start (after an accepted frame, at the
    start of the stream, or after another reply) and followed by a valid frame is a command reply,
    neither skipped nor a gap. While ``awaiting_reply`` (after the host sent a format-selection
    command) an ACK/NAK between two valid *format #2* frames (the power-on format of the
    Xpod/OEM III, still running when the device refuses the new format) is a reply too.
    """

    HISTORY = 5          # look-back for a format #2 frame before a reply byte
    WINDOW = 64          # positions in the first careful-resync pass after the run breaks
    MAX_WINDOW = 4096    # passes grow ×4 up to this while the garbage goes on
    _FOREIGN_AHEAD = 6   # reply byte + a format #2 frame

    def __init__(self, length: int, valid: Callable[[np.ndarray], np.ndarray],
                 rows: Callable[[np.ndarray], np.ndarray],
                 header: Callable[[np.ndarray, int], np.ndarray]) -> None:
        self.length = length
        self._valid = valid          # per position: a valid frame starts here
        self._rows = rows            # per row of an (n, length) matrix: the row is a valid frame
        self._header = header        # per position: looks like a frame header (for frames_rejected)
        self._buf = b""
        self._hist = 0               # bytes of look-back at the start of _buf
        self._at_boundary = True     # first unjudged byte is where a frame could start
        self._contiguous = False     # ... and right after an accepted frame
        self.awaiting_reply = False

    def _fast_run(self, arr: np.ndarray, pos: int, n: int) -> int:
        """How many valid frames follow each other from ``pos`` (checked in growing blocks)."""
        L = self.length
        total = (n - pos) // L
        run, block = 0, 16
        while run < total:
            k = min(block, total - run)
            start = pos + run * L
            ok = self._rows(arr[start:start + k * L].reshape(k, L))
            if ok.all():
                run += k
                block *= 4
                continue
            return run + int(np.argmin(ok))
        return run

    def scan(self, data: bytes) -> _Scan:
        """Judge every position that has enough bytes; keep the rest for the next call."""
        buf = self._buf + data
        n, h, L = len(buf), self._hist, self.length
        m = n - L + 1                  # positions with a whole frame after them
        arr = np.frombuffer(buf, np.uint8)
        if m <= h:
            self._buf = buf
            return _Scan(arr, np.zeros(0, np.int64), np.zeros(0, bool))
        runs: list[tuple[int, int]] = []
        gap_at_run: list[bool] = []
        replies: list[tuple[int, int]] = []
        skipped = rejected = frames = 0
        pos = h
        boundary = h if self._at_boundary else -1
        contiguous_at = h if self._contiguous else -1
        deferred = False
        valid2: np.ndarray | None = None
        window = self.WINDOW
        while pos < m and not deferred:
            run = self._fast_run(arr, pos, n)
            if run:
                runs.append((pos, pos + run * L))
                gap_at_run.append(pos != contiguous_at)
                frames += run
                pos = boundary = contiguous_at = pos + run * L
                window = self.WINDOW
                if pos >= m:
                    break
            else:
                window = min(window * 4, self.MAX_WINDOW)
            # careful resync over positions [lo, hi)
            lo, hi = pos, min(m, pos + window)
            valid_w = self._valid(arr[lo:min(m, hi + 1) + L - 1])   # one more: the frame after a reply
            valid = valid_w[:hi - lo]
            vidx = np.flatnonzero(valid) + lo
            nv = len(vidx)
            ends = _run_ends(valid, L) + lo if nv else np.zeros(0, np.int64)  # indexed only below nv
            header_sums: np.ndarray | None = None
            j = 0
            while pos < hi:
                if j < nv and vidx[j] < pos:
                    j = int(np.searchsorted(vidx, pos))
                a = int(vidx[j]) if j < nv else hi
                if a > pos:
                    byte = int(arr[pos])
                    if pos == boundary and (byte == ACK or byte == NAK):
                        if pos + 1 + L > n:              # is a frame next? not known yet
                            deferred = True
                            break
                        if valid_w[pos + 1 - lo]:
                            replies.append((frames, byte))
                            self.awaiting_reply = False
                            contiguous_at = pos + 1 if pos == contiguous_at else -1
                            boundary = pos = pos + 1
                            continue
                    limit, reply_at = a, -1
                    if self.awaiting_reply:
                        if valid2 is None:
                            valid2 = _valid_format2(arr)
                        seg = arr[pos:a]
                        for p in (np.flatnonzero((seg == ACK) | (seg == NAK)) + pos).tolist():
                            if p + self._FOREIGN_AHEAD > n:
                                limit, deferred = p, True
                                break
                            if p >= 5 and valid2[p - 5] and valid2[p + 1]:
                                reply_at = p
                                break
                    if header_sums is None:
                        header_sums = np.concatenate(([0], np.cumsum(self._header(arr[lo:], hi - lo),
                                                                     dtype=np.int64)))
                    skipped += limit - pos
                    rejected += int(header_sums[limit - lo] - header_sums[pos - lo])
                    if reply_at >= 0:
                        replies.append((frames, int(arr[reply_at])))
                        self.awaiting_reply = False
                        skipped -= 1
                    contiguous_at = boundary = -1
                    pos = limit
                    if deferred:
                        break
                if j >= nv:
                    break
                e = int(ends[a - lo])
                runs.append((a, e))
                gap_at_run.append(a != contiguous_at)
                frames += (e - a) // L
                pos = boundary = contiguous_at = e
                j += 1

        tail = pos if deferred else max(pos, m)
        self._at_boundary = boundary == tail
        self._contiguous = contiguous_at == tail
        keep = max(0, tail - self.HISTORY)
        self._buf = buf[keep:]
        self._hist = tail - keep

        if runs:
            if len(runs) == 1:
                starts = np.arange(runs[0][0], runs[0][1], L)
            else:
                starts = np.concatenate([np.arange(a, e, L) for a, e in runs])
            gaps = np.zeros(len(starts), bool)
            first = 0
            for (a, e), gap in zip(runs, gap_at_run):
                gaps[first] = gap
                first += (e - a) // L
        else:
            starts, gaps = np.zeros(0, np.int64), np.zeros(0, bool)
        return _Scan(arr, starts, gaps, replies, skipped, rejected)


class _Timeline:
    """State for the start times of consecutive waveform chunks of a fixed duration.

    A chunk that follows the previous one on the wire starts where that one ended, as long as
    its end stays within ``tolerance`` seconds of the read time ``t``; otherwise (first chunk, a
    lost packet, drift of the device's clock) it is re-anchored to end at ``t``. Each decision uses
    only ``t`` and the previous chunk, so it does not depend on read boundaries. (The rule runs
    inlined in :meth:`_PacketDecoder._emit_packets`.)
    """

    def __init__(self, duration: float, tolerance: float = 1.0) -> None:
        self.duration = timedelta(seconds=duration)
        self.tolerance = timedelta(seconds=tolerance)
        self._next: datetime | None = None


class _ObservationTable:
    """Numeric observations for arrays of wire codes, one immutable object per distinct
    (vital, code, quality) within one read.

    All items of a read share its ``sample_time``, so two observations with the same vital, value
    and quality are equal values; building each once (pydantic validation costs microseconds)
    and repeating the same frozen object is what lets a capture decode far faster than real time.
    """

    SIZE = 512   # wire codes: HR 0..511, SpO2 0..255

    def __init__(self, source: str, t: datetime) -> None:
        self.source, self.t = source, t
        self._tables: dict[tuple[str, frozenset[Quality]], tuple[np.ndarray, set[int]]] = {}

    def one(self, vital: str, code: int, missing: int, quality: frozenset[Quality]) -> Item:
        """The observation for one wire code (``missing`` → value None)."""
        return self.objects(vital, np.array([code], np.intp), missing, quality)[0]

    def objects(self, vital: str, codes: np.ndarray, missing: int, quality: frozenset[Quality]) -> np.ndarray:
        """Object array: the observation for each code (``missing`` → value None)."""
        key = (vital, quality)
        entry = self._tables.get(key)
        if entry is None:
            entry = self._tables[key] = (np.full(self.SIZE, None, object), set())
        table, filled = entry
        codes = codes.astype(np.intp, copy=False)
        if len(codes) > 64:
            present = set(np.flatnonzero(np.bincount(codes, minlength=self.SIZE)).tolist())
        else:
            present = set(codes.tolist())
        for code in present - filled:
            value = None if code == missing else float(code)
            table[code] = numeric(vital, value, self.source, self.t, quality=quality)
            filled.add(code)
        return table[codes]


def _segments(codes: np.ndarray, last_code: int | None, cuts: Iterable[int]) -> tuple[list[int], set[int]]:
    """Boundaries splitting records into runs of one status code (plus extra ``cuts``).

    Returns the sorted boundaries (first 0, last ``len(codes)``) and the set of positions where
    the code differs from the previous record's (the first record compares with ``last_code``).
    """
    count = len(codes)
    if count == 0:
        return [0], set()
    previous = np.empty(count, np.int64)
    previous[0] = -1 if last_code is None else last_code
    previous[1:] = codes[:-1]
    changes = set(np.flatnonzero(codes != previous).tolist())
    bounds = sorted(changes | {c for c in cuts if 0 <= c < count} | {0, count})
    return bounds, changes


#: Largest piece of input judged in one numpy pass (bounds temporary memory).
_PIECE = 1 << 18

#: Perfusion field (STATUS & 0x06) → severity: none 0, green 1, yellow 2, red 3.
_PERF_RANK = np.array([0, 0, 1, 0, 3, 0, 2, 0], np.int64)


# ------------------------------------------------------------------------------ decoders
class _BinaryDecoder(Decoder):
    """Shared feed loop of the binary formats: input pieces → :class:`_FrameScanner` → items."""

    serial_defaults: ClassVar[SerialSettings] = SerialSettings(baudrate=9600)
    #: Condition codes this format reports from its status bits.
    _MANAGED: ClassVar[frozenset[str]] = STATUS_CONDITIONS

    def __init__(self, source: str = "", clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(source, clock)
        self._scanner = self._make_scanner()
        self._last_code: int | None = None
        self._quality: frozenset[Quality] = frozenset()

    def _make_scanner(self) -> _FrameScanner:
        raise NotImplementedError

    def feed(self, data: bytes) -> list[Item]:
        """Consume ``data`` (any length, any split); return the items it completed. Never raises."""
        data = bytes(data)
        self.stats.bytes_in += len(data)
        t = self.clock()
        items: list[Item] = []
        table = _ObservationTable(self.source, t)
        for offset in range(0, max(len(data), 1), _PIECE):
            scan = self._scanner.scan(data[offset:offset + _PIECE])
            self.stats.bytes_skipped += scan.skipped
            self.stats.frames_rejected += scan.rejected
            self.stats.frames_decoded += len(scan.starts)
            if len(scan.starts) or scan.replies:
                self._decode(scan, t, table, items)
        return items

    def _decode(self, scan: _Scan, t: datetime, table: _ObservationTable, items: list[Item]) -> None:
        raise NotImplementedError

    def _reply(self, byte: int, t: datetime) -> list[Item]:
        """A command reply: NAK raises ``command_rejected``, ACK ends it."""
        return list(self.conditions.update({"command_rejected"} if byte == NAK else (), t, _REPLY_CONDITIONS))

    def _status_changed(self, code: int, t: datetime) -> list[Item]:
        """A new status code → ``self._quality`` and the condition changes."""
        active, quality = self._interpret(code)
        self._quality = frozenset(quality)
        return list(self.conditions.update(active, t, self._MANAGED))

    def _interpret(self, code: int) -> tuple[set[str], set[Quality]]:
        raise NotImplementedError


class _PacketDecoder(_BinaryDecoder):
    """Formats #2 and #7: frames → 25-frame packets → numerics, waveform chunk, conditions."""

    expected_interval = FRAMES_PER_PACKET / FRAME_RATE
    #: Full scale of the pleth field (255 for 8-bit, 65535 for 16-bit).
    _PLETH_TOP: ClassVar[float] = 255.0

    def __init__(self, source: str = "", clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(source, clock)
        self._pend_status = np.zeros(0, np.uint8)
        self._pend_pleth = np.zeros(0, np.float32)
        self._pend_float = np.zeros(0, np.uint8)
        self._pend_gaps = np.zeros(0, bool)
        self._prev_end = -1              # 0: a packet starting at the next frame follows the last one
        self._timeline = _Timeline(FRAMES_PER_PACKET / FRAME_RATE)
        self._held_perf = 0              # 0 none, 1 green, 2 yellow, 3 red
        self._held_artifact = False
        self._last_firmware: int | None = None

    def read_hint(self) -> tuple[int, float]:
        """While in step with the packets: the bytes that complete the packet in progress (so a
        live link wakes three times a second instead of at every frame); else one byte."""
        frames = len(self._pend_status)
        if frames == 0 and self._prev_end != 0:
            return 1, 0.0
        remaining = (FRAMES_PER_PACKET - frames) * self._scanner.length - (len(self._scanner._buf) - self._scanner._hist)
        if remaining <= 0:
            return 1, 0.0
        return remaining, remaining / (self._scanner.length * FRAME_RATE)

    # -- format specifics
    def _fields(self, arr: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """STATUS, raw pleth (int) and FLOAT per accepted frame."""
        raise NotImplementedError

    def _extra_code(self, floats: np.ndarray) -> np.ndarray:
        """Per packet (rows of FLOAT bytes): extra status bits folded into the packet code."""
        return np.zeros(len(floats), np.int64)

    def _extra_conditions(self, extra: int) -> set[str]:
        return set()

    # -- frames → packets
    def _decode(self, scan: _Scan, t: datetime, table: _ObservationTable, items: list[Item]) -> None:
        status, pleth_raw, floats = self._fields(scan.arr, scan.starts)
        pleth = pleth_raw.astype(np.float32) / np.float32(self._PLETH_TOP)
        pleth[(status & (ST_SNSD | ST_SNSA)) != 0] = np.nan
        pend = len(self._pend_status)
        gaps = scan.gaps
        if pend:
            status = np.concatenate((self._pend_status, status))
            pleth = np.concatenate((self._pend_pleth, pleth))
            floats = np.concatenate((self._pend_float, floats))
            gaps = np.concatenate((self._pend_gaps, gaps))
        total = len(status)
        sync = (status & ST_SYNC) != 0
        breaks = np.concatenate(([0], np.cumsum(sync | gaps, dtype=np.int64)))
        sync_idx = np.flatnonzero(sync)
        complete = sync_idx[sync_idx + FRAMES_PER_PACKET <= total]
        if len(complete):
            complete = complete[breaks[complete + FRAMES_PER_PACKET] == breaks[complete + 1]]
        # keep the packet still in progress: a SYNC frame and an unbroken run after it
        if len(sync_idx) and sync_idx[-1] + FRAMES_PER_PACKET > total \
                and breaks[total] == breaks[sync_idx[-1] + 1]:
            keep = int(sync_idx[-1])
        else:
            keep = total
        self._pend_status, self._pend_pleth, self._pend_float = status[keep:], pleth[keep:], floats[keep:]
        self._pend_gaps = gaps[keep:]

        replies = [(index + pend, byte) for index, byte in scan.replies]
        if len(complete):
            self._emit_packets(complete, status, pleth, floats, gaps, replies, t, table, items)
        else:
            for _, byte in replies:
                items.extend(self._reply(byte, t))
        last_end = int(complete[-1]) + FRAMES_PER_PACKET if len(complete) else self._prev_end
        self._prev_end = 0 if last_end == keep else -1

    def _emit_packets(self, complete: np.ndarray, status: np.ndarray, pleth: np.ndarray, floats: np.ndarray,
                      gaps: np.ndarray, replies: list[tuple[int, int]], t: datetime,
                      table: _ObservationTable, items: list[Item]) -> None:
        count = len(complete)
        rows = complete[:, None] + np.arange(FRAMES_PER_PACKET)
        st, fl = status[rows], floats[rows]
        waves = list(pleth[rows])
        hr = ((fl[:, 0].astype(np.int64) & 0x03) << 7) | (fl[:, 1] & 0x7F)
        spo2 = fl[:, 2].astype(np.int64)
        firmware = fl[:, 3].astype(np.int64)

        def any_bit(bit: int) -> np.ndarray:
            return np.asarray((st & bit).any(axis=1), dtype=np.int64)

        codes = (any_bit(ST_SNSD) | (any_bit(ST_OOT) << 1) | (any_bit(ST_SNSA) << 2) | (any_bit(ST_ARTF) << 3)
                 | (_PERF_RANK[st & ST_PERF].max(axis=1) << 4) | (self._extra_code(fl) << 8))
        contiguous = np.empty(count, bool)
        contiguous[0] = complete[0] == self._prev_end
        contiguous[1:] = np.diff(complete) == FRAMES_PER_PACKET
        contiguous &= ~gaps[complete]
        contiguous_list = contiguous.tolist()

        # boundaries: status changes, firmware changes, replies (before the packet that ends after them)
        last_fw = -1 if self._last_firmware is None else self._last_firmware
        fw_prev = np.concatenate(([last_fw], firmware[:-1]))
        fw_changes = np.flatnonzero(firmware != fw_prev).tolist()
        reply_at = np.searchsorted(complete + FRAMES_PER_PACKET - 1, [r for r, _ in replies]).tolist()
        bounds, changes = _segments(codes, self._last_code, fw_changes + reply_at)
        fw_set = set(fw_changes)
        code_list, fw_list = codes.tolist(), firmware.tolist()
        pending_replies = list(zip(reply_at, (b for _, b in replies)))

        source, timeline = self.source, self._timeline
        duration, tolerance = timeline.duration, timeline.tolerance
        low, high, anchored = t - tolerance, t + tolerance, t - duration
        nxt = timeline._next
        append = items.append
        for a, b in zip(bounds[:-1], bounds[1:]):
            while pending_replies and pending_replies[0][0] <= a:
                items.extend(self._reply(pending_replies.pop(0)[1], t))
            if a in changes:
                items.extend(self._status_changed(code_list[a], t))
            if a in fw_set:
                attribute = self.attributes.update("firmware", str(fw_list[a]), t)
                if attribute is not None:
                    append(attribute)
            quality = self._quality
            prs = table.objects("pr", hr[a:b], MISSING_HR, quality).tolist()
            sps = table.objects("spo2", spo2[a:b], MISSING_SPO2, quality).tolist()
            for pr_obs, spo2_obs, wave, follows in zip(prs, sps, waves[a:b], contiguous_list[a:b]):
                append(pr_obs)
                append(spo2_obs)
                # the _Timeline rule, inlined: this runs once per packet
                if follows and nxt is not None:
                    start = nxt
                    nxt = start + duration
                    if not low <= nxt <= high:
                        start, nxt = anchored, t
                else:
                    start, nxt = anchored, t
                append(WaveformChunk(channel="pleth", rate=FRAME_RATE, start_time=start,
                                     samples=wave, source=source))
        timeline._next = nxt
        for _, byte in pending_replies:
            items.extend(self._reply(byte, t))
        self._last_code, self._last_firmware = code_list[-1], fw_list[-1]

    def _interpret(self, code: int) -> tuple[set[str], set[Quality]]:
        """Packet status summary → held per-pulse state, conditions and quality flags."""
        snsd, oot, snsa, artifact = bool(code & 1), bool(code & 2), bool(code & 4), bool(code & 8)
        rank = (code >> 4) & 0x0F
        if snsd or snsa:
            self._held_perf, self._held_artifact = 0, False
        elif rank or artifact:
            self._held_perf, self._held_artifact = rank, artifact
        active: set[str] = set()
        quality: set[Quality] = set()
        if snsd:
            active.add("no_sensor")
            quality.add(Quality.SENSOR_OFF)
        if snsa:
            active.add("sensor_off")
            quality.add(Quality.SENSOR_OFF)
        if oot:
            active.add("out_of_track")
            quality.add(Quality.OUT_OF_TRACK)
        if self._held_artifact:
            active.add("artifact")
            quality.add(Quality.ARTIFACT)
        if self._held_perf == 3:
            active.add("low_perfusion")
            quality.add(Quality.LOW_PERFUSION)
        elif self._held_perf == 2:
            active.add("marginal_perfusion")
        active |= self._extra_conditions(code >> 8)
        return active, quality


class Nonin2Decoder(_PacketDecoder):
    """Nonin serial data format #2 (OEM III, Xpod): 75 frames/s, 25-frame packets every 1/3 s.

    Per complete packet: ``pr`` (HR from frames 0/1, bpm) and ``spo2`` (frame 2, %) numerics,
    None for the missing codes 511/127, and a ``pleth`` :class:`WaveformChunk` (75 Hz, 25
    samples, 0..1, NaN on frames flagged sensor disconnected or sensor alarm). The firmware
    revision (frame 3) is reported as the ``firmware`` attribute when it first appears or changes.

    Conditions (emitted on change): ``no_sensor`` (0x40), ``sensor_off`` (0x08 sensor alarm),
    ``out_of_track`` (0x10) when any frame of the packet has the bit; ``artifact`` (0x20) and
    the perfusion colour (red → ``low_perfusion``, yellow → ``marginal_perfusion``) are reported by
    the device only on frames during a pulse, so they are taken from the worst frame of each packet
    that carries a pulse indication and *held* through packets without one (cleared while the
    sensor is disconnected or off). The numerics carry the matching quality flags (ARTIFACT,
    OUT_OF_TRACK, SENSOR_OFF, LOW_PERFUSION).

    Framing: a frame is ``01``, a STATUS byte with bit 7 set and a matching checksum; on anything
    else the decoder slides one byte (``bytes_skipped``; a ``01 ≥80`` header with a bad checksum is
    also a ``frames_rejected``). A packet is emitted only when its SYNC frame and 24 further frames
    arrive with no byte lost between them; frames outside such a packet (e.g. before the first
    SYNC) count as decoded but produce nothing. ACK/NAK bytes between frames are consumed as
    command replies (NAK → ``command_rejected``, ACK clears it).

    Times: numerics carry the read time; chunks are laid end to end while packets follow each
    other, re-anchored to end at the read time when that drifts by more than 1 s. Within one read
    identical numerics are the same immutable object. Never raises.
    """

    protocol: ClassVar[str] = "nonin"

    def _make_scanner(self) -> _FrameScanner:
        return _FrameScanner(5, _valid_format2, _rows_format2, _header_format2)

    def _fields(self, arr: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return arr[starts + 1], arr[starts + 2], arr[starts + 3]


class Nonin7Decoder(_PacketDecoder):
    """Nonin serial data format #7: as :class:`Nonin2Decoder` with a 16-bit pleth.

    Frame ``STATUS PLETH_MSB PLETH_LSB FLOAT CHK`` (no lead byte: STATUS bit 7 and the checksum
    mark a frame; a bit-7 byte that fails the checksum counts as a rejected frame); pleth
    0..65535 → 0..1. Frame 7 of each packet is STAT2: 0x01 low battery → ``low_battery`` (0x20
    SmartPoint is informational and ignored); frames 5/6 (timer) are ignored. :meth:`start` sends
    the format-selection command; the device's ACK/NAK is consumed without counting a rejected
    frame (NAK → ``command_rejected``), also when the device refuses and goes on sending format #2.
    """

    protocol: ClassVar[str] = "nonin7"
    _PLETH_TOP: ClassVar[float] = 65535.0
    _MANAGED: ClassVar[frozenset[str]] = STATUS_CONDITIONS | {"low_battery"}

    def _make_scanner(self) -> _FrameScanner:
        return _FrameScanner(5, _valid_format7, _rows_format7, _header_high_bit)

    def _fields(self, arr: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pleth = (arr[starts + 1].astype(np.int64) << 8) | arr[starts + 2]
        return arr[starts], pleth, arr[starts + 3]

    def _extra_code(self, floats: np.ndarray) -> np.ndarray:
        return (floats[:, 7] & ST2_LOW_BATTERY).astype(np.int64)

    def _extra_conditions(self, extra: int) -> set[str]:
        return {"low_battery"} if extra & 1 else set()

    def start(self) -> bytes:
        """The format-selection command for format #7 (``02 70 04 02 07 01 7E 03``)."""
        self._scanner.awaiting_reply = True
        return format_select_command(7)


class Nonin8Decoder(_BinaryDecoder):
    """Nonin serial data format #8: one 4-byte frame a second, no checksum.

    Per frame: ``pr`` (HR bits 8-7 from STATUS, 6-0 from byte 2; 511 → None) and ``spo2``
    (127 → None) numerics. Conditions on change: ``no_sensor`` (0x40), ``out_of_track`` (0x20),
    ``low_perfusion`` (0x10), ``marginal_perfusion`` (0x08), ``artifact`` (0x04), and from
    STATUS2 ``sensor_off`` (0x08 sensor alarm) and ``low_battery`` (0x01, or 0x02 critical).
    Quality flags ARTIFACT, OUT_OF_TRACK, SENSOR_OFF (no_sensor or sensor_off), LOW_PERFUSION.

    Framing: a STATUS byte (bit 7 set) followed by three bytes with bit 7 clear, SpO2 0..100 or
    127, HR ≤ 350 or 511 and no reserved STATUS2 bit (0x10, 0x40); otherwise slide one byte (a
    bit-7 byte that fails counts as a rejected frame). The format has no checksum, so line noise
    could pass those checks: frames go through a :class:`~drivers.base.SyncGate` — nothing is
    emitted until :data:`~drivers.base.SYNC_FRAMES` frames follow each other on the wire with SpO2
    moving by at most :data:`~drivers.base.MAX_STEP_SPO2` points and HR by
    :data:`~drivers.base.MAX_STEP_PR` bpm from one frame to the next (missing codes aside); they are
    then emitted (each with its own read time), and every later frame as soon as its 4 bytes
    arrive. A frame that breaks that consistency is rejected (``frames_rejected``) and the count
    starts again; so does a frame after skipped bytes. Conditions come only from believed frames
    (``sync_frames``: that count; tests of the parsing alone use 1). :meth:`start` sends the
    format-selection command; ACK/NAK replies are consumed as in :class:`Nonin7Decoder`. Never
    raises.
    """

    protocol: ClassVar[str] = "nonin8"
    expected_interval = 1.0
    _MANAGED: ClassVar[frozenset[str]] = STATUS_CONDITIONS | {"low_battery"}

    def __init__(self, source: str = "", clock: Callable[[], datetime] = utc_now, *,
                 sync_frames: int = SYNC_FRAMES) -> None:
        super().__init__(source, clock)
        self._gate: SyncGate[tuple[int, int, int, datetime]] = SyncGate(
            lambda a, b: _steady_readings((a[2], a[1]), (b[2], b[1])), sync_frames)

    def _make_scanner(self) -> _FrameScanner:
        return _FrameScanner(4, _valid_format8, _rows_format8, _header_high_bit)

    def start(self) -> bytes:
        """The format-selection command for format #8 (``02 70 04 02 08 01 7F 03``)."""
        self._scanner.awaiting_reply = True
        return format_select_command(8)

    @property
    def hold_s(self) -> float:
        """Frames are held until :data:`~drivers.base.SYNC_FRAMES` consistent ones follow each other."""
        return self._gate.needed * self.expected_interval

    def _decode(self, scan: _Scan, t: datetime, table: _ObservationTable, items: list[Item]) -> None:
        arr, starts = scan.arr, scan.starts
        s1 = arr[starts].astype(np.int64)
        hr = (((s1 & F8_HR_HIGH) << 7) | arr[starts + 1]).tolist()
        spo2 = arr[starts + 2].tolist()
        codes = ((s1 & 0x7C) | ((arr[starts + 3].astype(np.int64) & 0x0B) << 8)).tolist()
        gaps = scan.gaps.tolist()
        replies = list(scan.replies)
        for k, code in enumerate(codes):
            while replies and replies[0][0] <= k:
                items.extend(self._reply(replies.pop(0)[1], t))
            admitted, rejected = self._gate.admit((code, hr[k], spo2[k], t), follows=not gaps[k])
            if rejected:
                self.stats.frames_decoded -= 1
                self.stats.frames_rejected += 1
            for frame in admitted:
                self._emit_frame(*frame, table, items)
        for _, byte in replies:
            items.extend(self._reply(byte, t))

    def _emit_frame(self, code: int, hr: int, spo2: int, t: datetime, table: _ObservationTable,
                    items: list[Item]) -> None:
        """A believed frame (read at ``t``): its condition changes, then its two numerics."""
        if code != self._last_code:
            items.extend(self._status_changed(code, t))
            self._last_code = code
        if table.t != t:  # a frame held until the stream was believed
            table = _ObservationTable(self.source, t)
        items.append(table.one("pr", hr, MISSING_HR, self._quality))
        items.append(table.one("spo2", spo2, MISSING_SPO2, self._quality))

    def _interpret(self, code: int) -> tuple[set[str], set[Quality]]:
        status, status2 = code & 0xFF, code >> 8
        active: set[str] = set()
        quality: set[Quality] = set()
        for bit, name, flag in ((F8_SNSD, "no_sensor", Quality.SENSOR_OFF),
                                (F8_OOT, "out_of_track", Quality.OUT_OF_TRACK),
                                (F8_LOW_PERF, "low_perfusion", Quality.LOW_PERFUSION),
                                (F8_MARGINAL_PERF, "marginal_perfusion", None),
                                (F8_ARTF, "artifact", Quality.ARTIFACT)):
            if status & bit:
                active.add(name)
                if flag is not None:
                    quality.add(flag)
        if status2 & F8S2_SENSOR_ALARM:
            active.add("sensor_off")
            quality.add(Quality.SENSOR_OFF)
        if status2 & (F8S2_LOW_BATTERY | F8S2_CRITICAL_BATTERY):
            active.add("low_battery")
        return active, quality


_ASCII_LINE = re.compile(
    rb"^\s*(?:(?P<clock>\d{1,2}:\d{2}:\d{2})\s+)?"
    rb"SPO2\s*=\s*(?P<spo2>\d{1,3}|-{1,3})%?\s+"
    rb"(?:HR|PR|BPM)\s*=\s*(?P<pr>\d{1,3}|-{1,3})"
    rb"(?P<flags>[\sFB*]*)$",
    re.IGNORECASE,
)


def _steady_lines(before: tuple[float | None, float | None, int | None],
                  after: tuple[float | None, float | None, int | None]) -> bool:
    """Two consecutive ASCII lines (SpO2, PR, clock seconds) as a device sends them: the clock, when
    both have one, moves on by 0–2 s (midnight wraps), the values as a patient's do."""
    if before[2] is not None and after[2] is not None and (after[2] - before[2]) % 86400 > 2:
        return False
    return steady(before[0], after[0], MAX_STEP_SPO2) and steady(before[1], after[1], MAX_STEP_PR)


class NoninAsciiDecoder(Decoder):
    """Nonin ASCII real-time output: ``[HH:MM:SS ]SPO2=XXX HR=YYY[ F][*][B]`` CR LF, once a second.

    Each data line gives ``spo2`` (%) and ``pr`` (bpm; oximeter "HR" is pulse rate) numerics;
    ``---`` → None. Lines end in CR LF, LF or CR; a line longer than 200 bytes is discarded
    (``frames_rejected``, its bytes ``bytes_skipped``).

    Suffixes (Nonin operator's manuals): ``F`` = the values are the fast-responding ones (a DIP
    switch setting) → attribute ``averaging`` = ``fast`` (and ``standard`` again if it goes
    away); ``*`` = event marker (ON/STANDBY pressed) → attribute ``event_marker`` whose value
    counts the markers; ``B`` = a breath was detected (models with a CO2 detector) → accepted and
    ignored. None is a device fault, so none is a condition or a quality flag.

    ``HH:MM:SS`` gives no date: combining it with the host's date would invent data around
    midnight and for a device clock that is off, so ``device_time`` stays None and the time of
    day is not kept. Other printable lines (the power-up header) become attribute ``header``;
    lines that look like data (mention SPO2 or HR) but do not parse count as ``frames_rejected``.

    The format has no checksum, so a data line is believed only when it passes every check the
    format allows: the pattern above, SpO2 at most 100 %, HR at most 350 bpm, a valid clock; and,
    through a :class:`~drivers.base.SyncGate`, consistency with the line before (its clock 0–2 s
    later when both have one, SpO2 and HR moving by at most :data:`~drivers.base.MAX_STEP_SPO2` /
    :data:`~drivers.base.MAX_STEP_PR`). Nothing is emitted until :data:`~drivers.base.SYNC_FRAMES`
    consistent lines follow each other (then all of them, each with its own read time), again after
    a rejected line; a line inconsistent with the one before is rejected (``frames_rejected``).
    ``sync_frames``: that count (tests of the parsing alone use 1). Never raises.
    """

    protocol: ClassVar[str] = "nonin-ascii"
    serial_defaults: ClassVar[SerialSettings] = SerialSettings(baudrate=9600)
    expected_interval = 1.0
    MAX_LINE: ClassVar[int] = 200

    def __init__(self, source: str = "", clock: Callable[[], datetime] = utc_now, *,
                 sync_frames: int = SYNC_FRAMES) -> None:
        super().__init__(source, clock)
        self._line = bytearray()
        self._overflow = False
        self._after_cr = False
        self._events = 0
        self._gate: SyncGate[tuple[tuple[float | None, float | None, int | None], bytes, datetime]] = \
            SyncGate(lambda a, b: _steady_lines(a[0], b[0]), sync_frames)

    @property
    def hold_s(self) -> float:
        """Lines are held until :data:`~drivers.base.SYNC_FRAMES` consistent ones follow each other."""
        return self._gate.needed * self.expected_interval

    def feed(self, data: bytes) -> list[Item]:
        """Consume bytes; return the items of every complete line."""
        data = bytes(data)
        self.stats.bytes_in += len(data)
        t = self.clock()
        items: list[Item] = []
        start = 0
        while start < len(data):
            ends = [i for i in (data.find(b"\n", start), data.find(b"\r", start)) if i >= 0]
            if not ends:
                self._append(data[start:])
                self._after_cr = False
                break
            end = min(ends)
            terminator = data[end]
            if end == start and terminator == 0x0A and self._after_cr and not self._line:
                self._after_cr = False          # the LF of a CR LF pair
                start = end + 1
                continue
            self._append(data[start:end])
            self._finish_line(t, items)
            self._after_cr = terminator == 0x0D
            start = end + 1
        return items

    def _append(self, part: bytes) -> None:
        if self._overflow:
            self.stats.bytes_skipped += len(part)
            return
        self._line += part
        if len(self._line) > self.MAX_LINE:
            self.stats.bytes_skipped += len(self._line)
            self.stats.frames_rejected += 1
            self._line.clear()
            self._overflow = True

    def _finish_line(self, t: datetime, items: list[Item]) -> None:
        line = bytes(self._line)
        self._line.clear()
        if self._overflow:
            self.stats.bytes_skipped += 1     # the terminator of the discarded line
            self._overflow = False
            self._gate.reset()
            return
        if not line.strip():
            self.stats.bytes_skipped += len(line) + 1   # a blank line
            return
        match = _ASCII_LINE.match(line)
        if match is None:
            upper = line.upper()
            printable = all(0x20 <= b < 0x7F or b == 0x09 for b in line)
            if printable and b"SPO2" not in upper and b"HR" not in upper:
                attribute = self.attributes.update("header", line.strip().decode("ascii"), t)
                if attribute is not None:
                    items.append(attribute)
            else:
                self.stats.frames_rejected += 1
                self.stats.bytes_skipped += len(line) + 1
                self._gate.reset()
            return
        reading = self._reading(match)
        if reading is None:
            self.stats.frames_rejected += 1
            self.stats.bytes_skipped += len(line) + 1
            self._gate.reset()
            return
        admitted, rejected = self._gate.admit((reading, match["flags"].upper(), t))
        if rejected:
            self.stats.frames_rejected += 1
            return
        self.stats.frames_decoded += 1
        for (spo2, pr, _), flags, at in admitted:
            self._emit_line(spo2, pr, flags, at, items)

    def _reading(self, match: re.Match[bytes]) -> tuple[float | None, float | None, int | None] | None:
        """(SpO2, pulse rate, seconds of the day of the line's clock) of a data line, or None when a
        value or the clock is out of range."""
        spo2, pr = self._value(match["spo2"]), self._value(match["pr"])
        if (spo2 is not None and spo2 > 100) or (pr is not None and pr > F8_MAX_PLAUSIBLE_HR):
            return None
        clock = match["clock"]
        seconds = None
        if clock is not None:
            hours, minutes, secs = (int(part) for part in clock.split(b":"))
            if hours > 23 or minutes > 59 or secs > 59:
                return None
            seconds = hours * 3600 + minutes * 60 + secs
        return spo2, pr, seconds

    def _emit_line(self, spo2: float | None, pr: float | None, flags: bytes, t: datetime, items: list[Item]) -> None:
        """The items of a believed data line (read at ``t``)."""
        if b"F" in flags or "averaging" in self.attributes.values:
            attribute = self.attributes.update("averaging", "fast" if b"F" in flags else "standard", t)
            if attribute is not None:
                items.append(attribute)
        if b"*" in flags:
            self._events += 1
            attribute = self.attributes.update("event_marker", str(self._events), t)
            if attribute is not None:
                items.append(attribute)
        items.append(numeric("pr", pr, self.source, t))
        items.append(numeric("spo2", spo2, self.source, t))

    @staticmethod
    def _value(text: bytes) -> float | None:
        return None if text.startswith(b"-") else float(int(text))


# ------------------------------------------------------------------------------ device side
_EMULATED_FORMATS = (2, 7, 8)


class NoninEmulator(DeviceEmulator):
    """Device side of a Nonin oximeter for ``vigil simulate --protocol nonin``.

    ``fmt``: 2, 7, 8 or ``"ascii"`` (``ValueError`` otherwise). Output is byte-exact and keeps its
    own cadence across :meth:`produce` calls of any length: 75 frames/s for #2/#7 (a packet every
    25 frames), one frame (#8) or line (ASCII) per second, the first one second after start.

    From each snapshot: ``spo2``/``pr`` (None → missing codes; forced missing while
    ``no_sensor``/``sensor_off``), the conditions (no_sensor, sensor_off, artifact,
    out_of_track, low_perfusion, marginal_perfusion, low_battery), latched at the start of each
    packet, and the ``pleth`` wave (0..1 at ``wave_rates["pleth"]``), resampled to 75 Hz by
    linear interpolation; a NaN sample sends pleth 0 and the sensor-alarm bit on that frame.
    Without a pleth wave the pleth is flat 0. ASCII lines carry the ``HH:MM:SS`` prefix from
    ``device_time`` when ``ascii_clock`` is true.

    :meth:`receive` understands the format-selection command: it answers ACK and switches
    (output restarts with a new packet) for 2, 7 and 8, NAK for another format, a bad checksum
    or an unknown command. In ASCII mode the device has no command input and answers nothing.
    """

    protocol: ClassVar[str] = "nonin"

    def __init__(self, fmt: int | str = 2, *, firmware: int = EMULATED_FIRMWARE, ascii_clock: bool = False) -> None:
        if fmt != "ascii" and fmt not in _EMULATED_FORMATS:
            raise ValueError("Nonin format must be 2, 7, 8 or 'ascii'")
        self.fmt: int | str = fmt
        self.firmware = firmware & 0xFF
        self.ascii_clock = ascii_clock
        self._clock = 0.0               # emulator seconds since start
        self._epoch = 0.0               # when the current format started
        self._sent = 0                  # frames/lines sent in the current format
        self._frame_in_packet = 0
        self._floats = np.zeros(FRAMES_PER_PACKET, np.uint8)
        self._status = ST_ALWAYS
        self._rx = bytearray()
        self._wave = np.zeros(0, np.float64)   # recent pleth samples
        self._wave_first = 0                   # sample number of _wave[0]
        self._wave_rate = 100.0

    @property
    def registry_name(self) -> str:
        """Registry name of the decoder for the current format (``nonin``, ``nonin7``…)."""
        if self.fmt == "ascii":
            return "nonin-ascii"
        return "nonin" if self.fmt == 2 else f"nonin{self.fmt}"

    # -- host → device
    def receive(self, data: bytes) -> bytes:
        """Parse format-selection commands; return ACK/NAK per command. Never raises."""
        if self.fmt == "ascii":
            return b""
        self._rx += bytes(data)
        reply = bytearray()
        while True:
            stx = self._rx.find(STX)
            if stx < 0:
                self._rx.clear()
                break
            del self._rx[:stx]
            if len(self._rx) < 3:
                break
            total = 3 + self._rx[2] + 1
            if self._rx[2] not in (0x02, 0x04):
                reply.append(NAK)
                del self._rx[:1]
                continue
            if len(self._rx) < total:
                break
            command = bytes(self._rx[:total])
            del self._rx[:total]
            fmt = parse_format_select_command(command)
            if fmt is not None and fmt in _EMULATED_FORMATS:
                self._switch(fmt)
                reply.append(ACK)
            else:
                reply.append(NAK)
        if len(self._rx) > 64:
            del self._rx[:-64]
        return bytes(reply)

    def _switch(self, fmt: int) -> None:
        self.fmt = fmt
        self._epoch = self._clock
        self._sent = 0
        self._frame_in_packet = 0

    # -- device → host
    def produce(self, snapshot: DeviceSnapshot) -> bytes:
        """Bytes due during ``snapshot.elapsed`` seconds (see the class docstring)."""
        elapsed = float(snapshot.elapsed)
        self._clock += elapsed if elapsed > 0 and math.isfinite(elapsed) else 0.0
        self._take_wave(snapshot)
        rate = FRAME_RATE if self.fmt in (2, 7) else 1.0
        due = int(math.floor((self._clock - self._epoch) * rate + 1e-6))
        count = due - self._sent
        if count <= 0:
            return b""
        numbers = np.arange(self._sent + 1, due + 1)
        self._sent = due
        if self.fmt in (2, 7):
            return self._frames(snapshot, self._epoch + numbers / FRAME_RATE)
        out = bytearray()
        for number in numbers.tolist():
            out += self._slow(snapshot, self._epoch + number - self._clock)
        return bytes(out)

    def _values(self, snapshot: DeviceSnapshot) -> tuple[float | None, float | None]:
        if snapshot.conditions & {"no_sensor", "sensor_off"}:
            return None, None
        return snapshot.values.get("spo2"), snapshot.values.get("pr")

    def _slow(self, snapshot: DeviceSnapshot, offset: float) -> bytes:
        spo2, pr = self._values(snapshot)
        if self.fmt == 8:
            return encode_format8_frame(spo2, pr, snapshot.conditions)
        clock = None
        if self.ascii_clock:
            clock = (snapshot.device_time + timedelta(seconds=offset)).time()
        return encode_ascii_line(spo2, pr, clock=clock)

    def _take_wave(self, snapshot: DeviceSnapshot) -> None:
        wave = snapshot.waves.get("pleth") if snapshot.waves else None
        if wave is None or not len(wave):
            return
        self._wave_rate = float(snapshot.wave_rates.get("pleth", self._wave_rate)) or 100.0
        self._wave = np.concatenate((self._wave, np.asarray(wave, np.float64).ravel()))
        excess = len(self._wave) - int(2 * self._wave_rate) - 8
        if excess > 0:
            self._wave = self._wave[excess:]
            self._wave_first += excess

    def _pleth_at(self, times: np.ndarray) -> np.ndarray:
        if not len(self._wave):
            return np.zeros(len(times))
        position = times * self._wave_rate - self._wave_first
        position = np.clip(position, 0.0, len(self._wave) - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, len(self._wave) - 1)
        frac = position - low
        return self._wave[low] * (1 - frac) + self._wave[high] * frac  # NaN spreads to neighbours

    def _frames(self, snapshot: DeviceSnapshot, times: np.ndarray) -> bytes:
        count = len(times)
        index = (self._frame_in_packet + np.arange(count)) % FRAMES_PER_PACKET
        new_packet = index == 0
        packet_number = np.cumsum(new_packet)   # 0 = the packet already under way
        if new_packet.any():
            spo2, pr = self._values(snapshot)
            stat2 = ST2_LOW_BATTERY if "low_battery" in snapshot.conditions else 0
            timer = int(self._clock) & 0xFFFF
            fresh_floats = _packet_floats(_spo2_code(spo2), _hr_code(pr), self.firmware, timer, stat2)
            fresh_status = _packet_status(snapshot.conditions)
        else:
            fresh_floats, fresh_status = self._floats, self._status
        old = packet_number == 0
        floats = np.where(old, self._floats[index], fresh_floats[index]).astype(np.uint8)
        base = np.where(old, self._status, fresh_status).astype(np.uint8)
        pleth = self._pleth_at(times)
        status = base.copy()
        nan = np.isnan(pleth)
        status[nan] = (status[nan] | ST_SNSA) & (~ST_PERF & 0xFF)
        status[new_packet] |= ST_SYNC
        if new_packet.any():
            self._floats, self._status = fresh_floats, fresh_status
        self._frame_in_packet = int((self._frame_in_packet + count) % FRAMES_PER_PACKET)
        if self.fmt == 2:
            return _encode_frames_2(status, _scale(pleth, 255, np.uint8), floats)
        return _encode_frames_7(status, _scale(pleth, 65535, np.uint16).astype(np.int64), floats)
