"""The tail file: device data received but not yet committed to the database, kept across a crash.

A real-time recording commits to SQLite every ``StoreWriter.commit_interval`` seconds (30 s by
default), not every second: each commit rewrites whole pages (the last page of every index
a row lands in, the session row, the open waveform blocks) into the WAL and later into the file,
so a commit a second wrote ~400 MB per session-hour to store ~6 MB. Between commits the writer
appends what it received to ``<database>.tail`` about once a second: one small frame of just the
new items, never a rewrite. A process that dies (SIGKILL, a crash) leaves the tail in the
operating system's cache, so nothing older than about a second is lost; the next read-write
opening of the store puts the tail's items into the database (:meth:`TailFile.recover`).

The tail is not fsynced (that would cost a page write a second): after a power cut, device data
younger than the last commit that waited for the disk (≤ ``data_commit_interval``, 30 s; light
commits do not wait) can be missing; staff actions, alarms and everything committed by a full
commit are as durable as before (``synchronous=FULL``).

Format: a header ``VIGILTAIL1`` + the generation (uint64 LE), then frames ``b"TF"`` + payload
length (uint32 LE) + CRC-32 of the payload (uint32 LE) + payload. A payload is
``zlib(uint32 LE json length + json + byte-shuffled float32 LE samples)``; the JSON lists the operations
``{"k": "obs"|"wave"|"cond", "s": session id, "i": [items]}`` (a waveform item names its samples
by offset and count in the sample section), or a light commit's mark ``{"k": "mark", "s": 0,
"i": [number]}``. A frame cut short by the crash, or damaged, ends the file: it and anything after
it are ignored.

Generations tie the tail to the database: the writer records the generation it journalled under
(``meta.tail_generation``) in the same transaction that commits those items, then starts a new,
empty tail with the next generation. A tail whose generation the database already holds was
committed (the crash fell between the commit and the reset) and is dropped, so nothing is stored
twice.

Light commits (a chair whose clinic record wants numerics within seconds commits device data every
few seconds, ``StoreWriter(light_commit_interval=…)``) commit the observations and conditions but
keep the waveform chunks for the next full commit, so the unfinished waveform blocks are not
rewritten every few seconds. The tail is not reset at a light commit: the writer appends a mark
(light commit number *k* of this generation) just before it, and records ``meta.tail_light =
"<generation>:<k>"`` in the same transaction. On recovery, observations and conditions before the
committed mark are left out (they are in the database); every waveform chunk of the generation is
stored (none of it was committed). A mark whose commit failed is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from drivers.model import DeviceCondition, NumericObservation, Quality, WaveformChunk

log = logging.getLogger("monitor.store")

__all__ = ["TailFile", "TailOp", "tail_path"]

_MAGIC = b"VIGILTAIL1"
_HEADER = struct.Struct("<10sQ")
_FRAME = struct.Struct("<2sII")
_FRAME_MAGIC = b"TF"
_LEN = struct.Struct("<I")
#: A frame larger than this is taken for damage (a second of any monitor is far smaller).
_MAX_FRAME = 64 * 1024 * 1024

#: One queued write: kind ("obs", "wave", "cond"; "mark" for a light commit's mark), session id, items.
TailOp = tuple[str, int, list[Any]]


def tail_path(database: str | os.PathLike[str]) -> Path:
    """The tail file of a database file: ``<database>.tail``."""
    return Path(f"{os.fspath(database)}.tail")


def _encode(ops: Iterable[TailOp]) -> bytes:
    """One frame's payload (see the module docstring). Unknown item types raise ``TypeError``."""
    out: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    offset = 0
    for kind, session_id, items in ops:
        rows: list[Any] = []
        for item in items:
            if kind == "wave":
                if not isinstance(item, WaveformChunk):
                    raise TypeError(f"expected WaveformChunk, got {type(item).__name__}")
                data = np.ascontiguousarray(item.samples, dtype="<f4").tobytes()
                rows.append([item.channel, item.rate, item.start_time.isoformat(), item.unit, item.source,
                             offset, len(data) // 4])
                blobs.append(data)
                offset += len(data) // 4
            elif kind == "obs":
                if not isinstance(item, NumericObservation):
                    raise TypeError(f"expected NumericObservation, got {type(item).__name__}")
                rows.append([item.vital, item.value, item.unit, item.source, item.sample_time.isoformat(),
                             None if item.device_time is None else item.device_time.isoformat(),
                             sorted(q.value for q in item.quality)])
            elif kind == "cond":
                if not isinstance(item, DeviceCondition):
                    raise TypeError(f"expected DeviceCondition, got {type(item).__name__}")
                rows.append(item.model_dump(mode="json"))
            elif kind == "mark":
                if type(item) is not int:
                    raise TypeError(f"a mark is a light commit's number, not {type(item).__name__}")
                rows.append(item)
            else:
                raise TypeError(f"the tail keeps device data only, not {kind!r}")
        out.append({"k": kind, "s": session_id, "i": rows})
    head = json.dumps(out, separators=(",", ":")).encode()
    samples = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(-1, 4).T.tobytes()  # byte-shuffled
    return zlib.compress(_LEN.pack(len(head)) + head + samples, 6)


def _decode(payload: bytes) -> list[TailOp]:
    raw = zlib.decompress(payload)
    (n,) = _LEN.unpack_from(raw)
    ops = json.loads(raw[_LEN.size:_LEN.size + n])
    shuffled = np.frombuffer(raw[_LEN.size + n:], dtype=np.uint8)
    samples = shuffled.reshape(4, -1).T.copy().view("<f4").ravel()
    out: list[TailOp] = []
    for op in ops:
        kind, items = op["k"], []  # type: str, list[Any]
        for row in op["i"]:
            if kind == "wave":
                channel, rate, start, unit, source, offset, count = row
                items.append(WaveformChunk(channel=channel, rate=rate, start_time=datetime.fromisoformat(start),
                                           unit=unit, source=source,
                                           samples=samples[offset:offset + count].astype(np.float32)))
            elif kind == "obs":
                vital, value, unit, source, sample_time, device_time, quality = row
                items.append(NumericObservation(
                    vital=vital, value=value, unit=unit, source=source, sample_time=datetime.fromisoformat(sample_time),
                    device_time=None if device_time is None else datetime.fromisoformat(device_time),
                    quality=frozenset(Quality(q) for q in quality)))
            elif kind == "cond":
                items.append(DeviceCondition.model_validate(row))
            elif kind == "mark":
                items.append(int(row))
        out.append((kind, int(op["s"]), items))
    return out


class TailFile:
    """The tail of one database (see the module docstring). Used by the store's writer thread only.

    ``generation`` is the generation new frames are written under. The file is created (0600) on
    the first :meth:`append`; :meth:`reset` empties it for the next generation. An I/O error
    (disk full …) propagates to the caller, which keeps its items in memory.
    """

    def __init__(self, database: str | os.PathLike[str], generation: int = 0) -> None:
        self.path = tail_path(database)
        self.generation = generation
        self._fd: int | None = None
        self._size = 0

    def _open(self) -> int:
        if self._fd is None:
            old = os.umask(0o077)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            finally:
                os.umask(old)
            os.write(fd, _HEADER.pack(_MAGIC, self.generation))
            self._fd, self._size = fd, _HEADER.size
        return self._fd

    def append(self, ops: Iterable[TailOp]) -> int:
        """Append one frame with ``ops``; returns the bytes written (0 when there was nothing)."""
        ops = [op for op in ops if op[2]]
        if not ops:
            return 0
        payload = _encode(ops)
        frame = _FRAME.pack(_FRAME_MAGIC, len(payload), zlib.crc32(payload)) + payload
        fd = self._open()
        written = os.pwrite(fd, frame, self._size)
        if written != len(frame):
            raise OSError(f"the tail file {self.path} took {written} of {len(frame)} bytes")
        self._size += written
        return written

    def mark(self, number: int) -> int:
        """Append the mark of light commit ``number`` of this generation (see the module docstring);
        returns the bytes written."""
        return self.append([("mark", 0, [number])])

    def reset(self, generation: int) -> None:
        """Start an empty tail for ``generation`` (after the items of the old one were committed)."""
        self.generation = generation
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, _HEADER.pack(_MAGIC, generation), 0)
        self._size = _HEADER.size

    def close(self, remove: bool = False) -> None:
        """Close the file; ``remove=True`` deletes it (everything in it was committed)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if remove:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    @staticmethod
    def read(path: Path) -> tuple[int | None, list[TailOp]]:
        """The generation and operations of a tail file (``(None, [])`` when missing or not a tail);
        a frame cut short or damaged ends the reading (logged)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, []
        if len(data) < _HEADER.size:
            return None, []
        magic, generation = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            log.warning("%s is not a Vigil tail file; ignored", path)
            return None, []
        return generation, list(_frames(path, data))


def _frames(path: Path, data: bytes) -> Iterator[TailOp]:
    pos = _HEADER.size
    while pos < len(data):
        if pos + _FRAME.size > len(data):
            log.warning("%s: a frame cut short at byte %d (the crash came while writing it); ignored", path, pos)
            return
        magic, size, crc = _FRAME.unpack_from(data, pos)
        body = data[pos + _FRAME.size:pos + _FRAME.size + size]
        if magic != _FRAME_MAGIC or size > _MAX_FRAME or len(body) != size or zlib.crc32(body) != crc:
            log.warning("%s: frame at byte %d is cut short or damaged; it and the rest are ignored", path, pos)
            return
        try:
            ops = _decode(body)
        except Exception as exc:  # a valid CRC over a payload we cannot read: stop, keep what came before
            log.warning("%s: frame at byte %d cannot be read (%s); it and the rest are ignored", path, pos, exc)
            return
        yield from ops
        pos += _FRAME.size + size
