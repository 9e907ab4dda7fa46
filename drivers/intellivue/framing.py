"""IntelliVue MIB/RS232 framing: ``C0 | 11 01 LEN | user data | FCS | C1`` with byte stuffing.

Wire format (Philips Data Export Interface Programming Guide, serial transport)::

    C0 | 11 01 LEN_hi LEN_lo | user data (LEN bytes) | FCS_lo FCS_hi | C1

``11`` is the protocol id, ``01`` the message type (data), LEN the length of the user data.
FCS is CRC-16/X.25 (reflected polynomial 0x8408, initial value 0xFFFF, result complemented)
over header and user data *before* escaping, sent least significant byte first. Every byte
between the two delimiters (header and FCS included) that equals ``C0``, ``C1`` or ``7D`` is
sent as ``7D, byte ^ 0x20``. ``7D C1`` aborts the frame being sent.

Everything here works on whole ``bytes`` objects with C-level operations (``bytes.find``,
``bytes.split``, ``bytes.translate``, ``binascii.crc_hqx``) so that the per-byte work costs
next to nothing in Python.
"""

from __future__ import annotations

import binascii

BOF = 0xC0  #: start of frame
EOF = 0xC1  #: end of frame
ESC = 0x7D  #: escape (control escape) byte
_BOF = b"\xc0"
_EOF = b"\xc1"
_ESC = b"\x7d"

#: Frame header: protocol id 0x11, message type 0x01 (data); the length follows.
HEADER_PREFIX = b"\x11\x01"
#: Largest user data a frame can carry (the length field is 16 bits).
MAX_USER_DATA = 0xFFFF
#: Largest escaped frame (delimiters included): every byte escaped in the worst case.
MAX_WIRE_FRAME = 2 + 2 * (4 + MAX_USER_DATA + 2)

# Bit-reversal of every byte value: CRC-16/X.25 is the reflected form of CRC-16/CCITT, so
# running binascii.crc_hqx (non-reflected, poly 0x1021) over bit-reversed bytes and reflecting
# the 16-bit result gives the same value as the reflected algorithm, at C speed.
_REVERSE = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
# fcs16() over data followed by its own FCS (LSB first) always gives this value.
_GOOD_RESIDUE = 0x0F47


def fcs16(data: bytes) -> int:
    """CRC-16/X.25 of ``data`` (the IntelliVue frame check sequence), as an int 0..0xFFFF.

    Check value: ``fcs16(b"123456789") == 0x906E``. Any bytes-like input is accepted.
    """
    crc = binascii.crc_hqx(bytes(data).translate(_REVERSE), 0xFFFF)
    return ((_REVERSE[crc & 0xFF] << 8) | _REVERSE[crc >> 8]) ^ 0xFFFF


def escape(raw: bytes) -> bytes:
    """Byte-stuff ``raw``: ``C0``, ``C1``, ``7D`` become ``7D, byte ^ 0x20``."""
    if b"\x7d" in raw:
        raw = raw.replace(b"\x7d", b"\x7d\x5d")
    if b"\xc0" in raw:
        raw = raw.replace(b"\xc0", b"\x7d\xe0")
    if b"\xc1" in raw:
        raw = raw.replace(b"\xc1", b"\x7d\xe1")
    return raw


def unescape(body: bytes) -> bytes | None:
    """Undo byte stuffing; None if ``body`` ends in a lone ``7D`` or holds ``7D 7D``.

    Any byte after ``7D`` is accepted and XORed with 0x20 (the FCS catches corruption).
    """
    if b"\x7d" not in body:
        return body
    count = body.count(b"\x7d")
    if count == body.count(b"\x7d\xe0") + body.count(b"\x7d\xe1") + body.count(b"\x7d\x5d"):
        # Only the three escapes the protocol defines: undo them with C-level replaces.
        # "7D 5D" goes last so that a restored 7D never pairs with the byte after it.
        return body.replace(b"\x7d\xe0", b"\xc0").replace(b"\x7d\xe1", b"\xc1").replace(b"\x7d\x5d", b"\x7d")
    parts = body.split(_ESC)
    out = [parts[0]]
    append = out.append
    for part in parts[1:]:
        if not part:
            return None
        append(bytes((part[0] ^ 0x20,)))
        append(part[1:])
    return b"".join(out)


def build_frame(user_data: bytes) -> bytes:
    """Wrap ``user_data`` (one session/presentation PDU) in a complete escaped frame.

    Raises ``ValueError`` if ``user_data`` is longer than 65535 bytes.
    """
    size = len(user_data)
    if size > MAX_USER_DATA:
        raise ValueError(f"user data of {size} bytes does not fit one frame (max {MAX_USER_DATA})")
    raw = HEADER_PREFIX + size.to_bytes(2, "big") + bytes(user_data)
    fcs = fcs16(raw)
    return _BOF + escape(raw + bytes((fcs & 0xFF, fcs >> 8))) + _EOF


class Unframer:
    """Incremental frame extractor: bytes in any split, complete user data out.

    :meth:`feed` returns the user data of every complete frame with a good header and FCS.
    Bad FCS, bad header or length, bad escapes, aborted frames (``7D C1``) and frames cut
    short by a new ``C0`` count in :attr:`frames_rejected` (a run of several cut-short
    frames counts once); bytes outside any frame count in :attr:`bytes_skipped`. The
    buffer never holds more than one maximal frame: an unterminated frame that grows past
    :data:`MAX_WIRE_FRAME` is dropped as rejected. A stray ``C1`` counts as a skipped byte.
    Never raises on any input.
    """

    __slots__ = ("_buf", "frames_rejected", "bytes_skipped", "frames_ok")

    def __init__(self) -> None:
        self._buf = b""
        self.frames_rejected = 0
        self.bytes_skipped = 0
        self.frames_ok = 0

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the end of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the user data of the frames it completed, in order."""
        buf = self._buf + bytes(data) if self._buf else bytes(data)
        pieces = buf.split(_EOF)
        tail = pieces.pop()
        frames: list[bytes] = []
        append = frames.append
        rejected = skipped = 0
        for piece in pieces:
            # piece = [bytes outside frames][C0 ... cut-short frames ...] C0 body, its C1 removed.
            start = piece.rfind(_BOF)
            if start < 0:
                skipped += len(piece) + 1  # a stray C1 and whatever preceded it
                continue
            if start:
                first = piece.find(_BOF)
                skipped += first
                if first < start:
                    if piece.count(_BOF, first, start) == start - first:
                        skipped += start - first  # repeated C0s carry no frame
                    else:
                        rejected += 1  # frame(s) cut short by a new C0
            body = piece[start + 1:]
            if not body:
                skipped += 2  # "C0 C1": an empty frame, nothing lost
                continue
            if body[-1] == ESC:
                rejected += 1  # "7D C1": frame aborted by the sender
                continue
            raw = unescape(body) if b"\x7d" in body else body
            # Header 11 01 LEN, LEN bytes of user data, 2 bytes of FCS; the FCS over
            # everything including the FCS leaves the CRC-16/X.25 residue.
            if (
                raw is None
                or len(raw) < 6
                or raw[0] != 0x11
                or raw[1] != 0x01
                or len(raw) != ((raw[2] << 8) | raw[3]) + 6
                or fcs16(raw) != _GOOD_RESIDUE
            ):
                rejected += 1
                continue
            append(raw[4:-2])
        # Keep the unterminated frame (from its first C0) for the next read.
        start = tail.find(_BOF)
        if start < 0:
            skipped += len(tail)
            tail = b""
        else:
            skipped += start
            if len(tail) - start > MAX_WIRE_FRAME:
                rejected += 1
                tail = b""
            elif start:
                tail = tail[start:]
        self._buf = tail
        self.frames_rejected += rejected
        self.bytes_skipped += skipped
        self.frames_ok += len(frames)
        return frames
