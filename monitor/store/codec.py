"""Conversions the session store applies on the way in and out: times, quality bits, canonical
JSON and the audit digest, the waveform sample codec and the in-memory waveform block.

There is one copy of each: exports, the archive and the replication read them from here."""

from __future__ import annotations

import enum
import hashlib
import json
import zlib
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from drivers.model import Quality


from monitor.store.records import PRIORITIES, StoreError, WaveformSlice

#: Waveform block encodings: 0 = zlib(float32 LE), 1 = zlib(byte-shuffled float32 LE).
ENC_F32_ZLIB = 0
ENC_F32_SHUFFLE_ZLIB = 1


#: Fixed bit of each quality flag in ``observations.quality``. Never renumber; add new flags at the end.
QUALITY_BITS: dict[Quality, int] = {
    Quality.IMPLAUSIBLE: 1 << 0,
    Quality.INVALID: 1 << 1,
    Quality.QUESTIONABLE: 1 << 2,
    Quality.UNAVAILABLE: 1 << 3,
    Quality.DEMO: 1 << 4,
    Quality.ARTIFACT: 1 << 5,
    Quality.LOW_PERFUSION: 1 << 6,
    Quality.OUT_OF_TRACK: 1 << 7,
    Quality.SENSOR_OFF: 1 << 8,
    Quality.SIMULATED: 1 << 9,
    Quality.MANUAL: 1 << 10,
}


_GENESIS = "0" * 64


def quality_to_bits(quality: Iterable[Quality]) -> int:
    """The :data:`QUALITY_BITS` bitmask of a set of quality flags (unknown flag → ``KeyError``)."""
    bits = 0
    for flag in quality:
        bits |= QUALITY_BITS[Quality(flag)]
    return bits


def bits_to_quality(bits: int) -> frozenset[Quality]:
    """The quality flags of a bitmask; unknown bits are ignored."""
    return frozenset(flag for flag, bit in QUALITY_BITS.items() if bits & bit)


def _ts(value: datetime, name: str = "time") -> float:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a timezone-aware datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value!r}")
    return value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def _at(value: float) -> datetime:
    """A stored time of a NOT NULL column (epoch seconds) as an aware UTC datetime."""
    return datetime.fromtimestamp(value, timezone.utc)


def _rowid(cursor: Any) -> int:
    """The id of the row an INSERT just made (sqlite3 gives None only when nothing was inserted)."""
    rowid = cursor.lastrowid
    if rowid is None:
        raise StoreError("the database did not return the new row's id")
    return int(rowid)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset, tuple)):
        return sorted(obj) if isinstance(obj, (set, frozenset)) else list(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def canonical_json(obj: Any) -> str:
    """Vigil's canonical JSON: sorted keys, no spaces, UTF-8 text, no NaN (payloads, audit hashes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_json_default)


def _to_json(obj: Any, name: str) -> str:
    try:
        return canonical_json(obj)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not JSON-serialisable: {exc}") from None


def _dict_arg(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, not {type(value).__name__}")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _sid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"session id must be an int, not {type(value).__name__}")
    return value


def _priority(value: Any) -> str:
    name = value.name if isinstance(value, enum.Enum) else str(value)
    name = name.upper()
    if name not in PRIORITIES:
        raise ValueError(f"alarm priority must be one of {', '.join(PRIORITIES)}, got {value!r}")
    return name


def audit_digest(prev_hash: str, seq: int, t: float, user: str | None, session_id: int | None,
                 action: str, payload: Any) -> str:
    """The audit row hash: sha256(prev_hash + canonical JSON of {seq, t, user, session, action, payload})."""
    body = canonical_json({"seq": seq, "t": t, "user": user, "session": session_id,
                       "action": action, "payload": payload})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def encode_samples(samples: np.ndarray) -> bytes:
    """float32 samples as a stored block: zlib(byte-shuffled little-endian float32), encoding 1."""
    data = np.ascontiguousarray(samples, dtype="<f4")
    return zlib.compress(data.view(np.uint8).reshape(-1, 4).T.tobytes(), 6)


def decode_samples(data: bytes, n: int, enc: int, *, max_bytes: int | None = None) -> np.ndarray:
    """The ``n`` float32 samples of a stored block (encoding ``enc``, see :data:`ENC_F32_SHUFFLE_ZLIB`).
    ``max_bytes`` bounds the decompressed size for hostile input (default ``4 n``): data that are not
    zlib, that inflate beyond the bound or to anything but ``n`` samples, or an unknown encoding,
    raise ``ValueError``."""
    limit = n * 4 if max_bytes is None else min(max_bytes, n * 4)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"waveform data is not valid zlib data: {exc}") from None
    if len(raw) != n * 4 or inflater.unconsumed_tail or not inflater.eof:
        raise ValueError(f"waveform data does not hold exactly {n} samples")
    if enc == ENC_F32_SHUFFLE_ZLIB:
        planes = np.frombuffer(raw, dtype=np.uint8).reshape(4, n)
        return np.ascontiguousarray(planes.T).view("<f4").reshape(n).astype(np.float32, copy=False)
    if enc == ENC_F32_ZLIB:
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    raise ValueError(f"unknown waveform encoding {enc}")


def _stored_samples(blob: bytes, n: int, enc: int) -> np.ndarray:
    try:
        return decode_samples(blob, n, enc)
    except ValueError as exc:
        raise StoreError(f"a stored waveform block is damaged: {exc}") from None


def slice_blocks(blocks: Iterable[tuple[float, float, int, int, bytes]], s: float, e: float,
                 max_points: int | None) -> WaveformSlice:
    """The samples with ``s <= t < e`` (epoch s) of stored waveform ``blocks`` — ``(t0, rate, n,
    enc, data)`` in time order — as a :class:`WaveformSlice`: the samples themselves, or, when there
    are more than ``max_points``, the min/max of each of ``max_points`` equal bins (the rule of
    ``SessionStore.waveform``; every backend slices with this one function). A damaged block raises
    :class:`StoreError`."""
    pieces: list[tuple[np.ndarray, int, int, bytes, int]] = []
    total = 0
    for t0, rate, n, enc, blob in blocks:
        times = t0 + np.arange(n, dtype=np.float64) / rate
        first, stop = int(np.searchsorted(times, s, "left")), int(np.searchsorted(times, e, "left"))
        if stop > first:
            pieces.append((times, first, stop, blob, enc))
            total += stop - first
    if max_points is None or total <= max_points:
        if not pieces:
            empty = np.empty(0, dtype=np.float32)
            return WaveformSlice(np.empty(0, dtype=np.float64), empty, empty)
        ts_, vs = [], []
        for times, i0, i1, blob, enc in pieces:
            samples = _stored_samples(blob, len(times), enc)
            ts_.append(times[i0:i1])
            vs.append(samples[i0:i1])
        v = np.concatenate(vs)
        return WaveformSlice(np.concatenate(ts_), v, v)
    width = (e - s) / max_points
    out_min = np.full(max_points, np.nan, dtype=np.float32)
    out_max = np.full(max_points, np.nan, dtype=np.float32)
    for times, i0, i1, blob, enc in pieces:
        v = _stored_samples(blob, len(times), enc)[i0:i1]
        bins = np.clip(((times[i0:i1] - s) / width).astype(np.int64), 0, max_points - 1)
        starts = np.flatnonzero(np.diff(bins, prepend=-1))
        lo = np.fmin.reduceat(v, starts)  # fmin/fmax skip NaN; an all-NaN bin stays NaN
        hi = np.fmax.reduceat(v, starts)
        idx = bins[starts]
        out_min[idx] = np.fmin(out_min[idx], lo)
        out_max[idx] = np.fmax(out_max[idx], hi)
    centres = s + (np.arange(max_points, dtype=np.float64) + 0.5) * width
    return WaveformSlice(centres, out_min, out_max)


def _patient_name(patient: dict[str, Any]) -> str:
    for key in ("display_name", "name", "full_name"):
        if patient.get(key):
            return str(patient[key])
    given = next((patient[k] for k in ("given_name", "first_name", "given") if patient.get(k)), "")
    family = next((patient[k] for k in ("family_name", "last_name", "family") if patient.get(k)), "")
    name = f"{given} {family}".strip()
    return name or (_patient_ref(patient) or "")


def _patient_ref(patient: dict[str, Any]) -> str | None:
    for key in ("id", "mrn", "patient_id", "record_number"):
        if patient.get(key) not in (None, ""):
            return str(patient[key])
    return None


# ------------------------------------------------------------------------------ waveform blocks
class _Block:
    """A waveform block being assembled in memory (parts are float32 arrays)."""

    __slots__ = ("session_id", "channel", "t0", "rate", "source_id", "parts", "n")

    def __init__(self, session_id: int, channel: str, t0: float, rate: float, source_id: int) -> None:
        self.session_id = session_id
        self.channel = channel
        self.t0 = t0
        self.rate = rate
        self.source_id = source_id
        self.parts: list[np.ndarray] = []
        self.n = 0

    def clone(self) -> _Block:
        b = _Block(self.session_id, self.channel, self.t0, self.rate, self.source_id)
        b.parts = list(self.parts)
        b.n = self.n
        return b

    def samples(self) -> np.ndarray:
        if len(self.parts) == 1:
            return self.parts[0]
        merged = np.concatenate(self.parts)
        self.parts = [merged]
        return merged
