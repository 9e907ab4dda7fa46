"""MLLP (Minimal Lower Layer Protocol) framing of HL7 v2 messages over TCP: ``0B message 1C 0D``.

:class:`Unframer` is incremental and never raises: bytes outside a frame are counted in
``skipped`` (a sender's stray CR LF between frames included); a start byte inside an unfinished
frame abandons it (``broken``); a frame longer than :data:`MAX_MESSAGE` is dropped and counted in
``skipped`` until the next start byte.
"""

from __future__ import annotations

START = 0x0B
END = b"\x1c\x0d"
_START = b"\x0b"
#: Longest message accepted, in bytes (a PCD-01 message with waveforms is a few tens of KiB).
MAX_MESSAGE = 1 << 20


def frame(message: bytes) -> bytes:
    """``message`` wrapped for the wire."""
    return _START + message + END


class Unframer:
    """Bytes in, complete MLLP payloads out (see the module docstring)."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._pending = b""      # an unfinished frame, from its start byte
        self._scanned = 1        # how far _pending has been searched for an end or a start
        self.skipped = 0
        self.broken = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Payloads completed by ``data`` (any split)."""
        out: list[bytes] = []
        buf = self._pending + bytes(data) if self._pending else bytes(data)
        pos = 0
        scan = self._scanned if self._pending else 1
        size = len(buf)
        while pos < size:
            if buf[pos] != START:
                start = buf.find(_START, pos)
                if start < 0:
                    self.skipped += size - pos
                    pos = size
                    break
                self.skipped += start - pos
                pos, scan = start, 1
            end = buf.find(END, pos + scan)
            restart = buf.find(_START, pos + scan, end if end >= 0 else size)
            if restart >= 0:  # a new frame starts before this one ended
                self.broken += 1
                self.skipped += restart - pos
                pos, scan = restart, 1
                continue
            if end < 0:
                if size - pos > self.max_message + 2:
                    self.skipped += size - pos   # over-long: drop it, resynchronise on a start byte
                    pos = size
                break
            if end - pos - 1 > self.max_message:
                self.skipped += end + 2 - pos
            else:
                out.append(buf[pos + 1:end])
            pos, scan = end + 2, 1
        self._pending = buf[pos:]
        self._scanned = max(1, len(self._pending) - 1)  # an end may straddle two reads
        return out
