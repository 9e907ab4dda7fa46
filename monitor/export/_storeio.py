"""Raw reads from the session store that its public API does not offer in bulk.

The export needs every observation row with its quality bits, device time, unit and source
(hundreds of thousands of rows for a long session: building a model object per row would cost
seconds) and the stored waveform blocks as they are (the compressed bytes, for a bit-exact
archive). Both read through the store's own read connection (:meth:`SessionStore._read`), so
they see the same snapshot rules as every other query. This module is the only place in the
export package that reads the store's tables directly; :mod:`monitor.export.archive` is the only
one that writes them (the import).
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import numpy as np

from drivers.model import WAVE_CHANNELS
from monitor.store import ENC_F32_SHUFFLE_ZLIB, ENC_F32_ZLIB, SessionStore

__all__ = ["ObservationRows", "Block", "observation_rows", "vitals_present", "waveform_blocks", "decode_block",
           "raw_tables"]


class ObservationRows(NamedTuple):
    """A session's observations in stored order (time, then insertion): ``t`` float64 epoch s and
    ``values`` float64 (NaN where the stored value is NULL) as arrays, ``vital``/``value`` (None kept)
    /``quality``/``device_time``/``unit`` (None = the catalogue unit)/``source`` as lists."""

    t: np.ndarray
    vital: list[str]
    value: list[float | None]
    quality: list[int]
    device_time: list[str | None]
    unit: list[str | None]
    source: list[str]
    values: np.ndarray


class Block(NamedTuple):
    """One stored waveform block: ``n`` samples from ``t0`` at ``rate`` Hz, ``data`` compressed with
    encoding ``enc`` (see :mod:`monitor.store`). ``pending`` marks an unfinished block of an open
    session."""

    channel: str
    t0: float
    rate: float
    n: int
    enc: int
    source: str | None
    data: bytes
    pending: bool = False


def observation_rows(store: SessionStore, session_id: int) -> ObservationRows:
    """Every observation row of the session, ordered by time then insertion.

    Reads the session's row-id range sequentially (the rows of one session are stored together, in
    the order they arrived; the time index would make SQLite visit the table in random order and
    sort), then orders by time in numpy (stable, so insertion order breaks ties).
    """
    with store._read() as conn:
        lo, hi = conn.execute("SELECT min(rowid), max(rowid) FROM observations WHERE session_id = ?",
                              (session_id,)).fetchone()
        if lo is None:
            return ObservationRows(np.empty(0), [], [], [], [], [], [], np.empty(0))
        rows = conn.execute("SELECT t, vital, value, quality, device_time, unit, source_id FROM observations NOT INDEXED "
                            "WHERE rowid BETWEEN ? AND ? AND session_id = ?", (lo, hi, session_id)).fetchall()
        names = dict(conn.execute("SELECT id, name FROM sources").fetchall())
    t, vital, value, quality, device_time, unit, source_id = (list(c) for c in zip(*rows))
    del rows
    times = np.asarray(t, dtype=np.float64)
    if len(times) > 1 and not bool(np.all(times[1:] >= times[:-1])):
        order = np.argsort(times, kind="stable")
        times = times[order]
        idx = order.tolist()
        vital, value, quality, device_time, unit, source_id = (
            [c[i] for i in idx] for c in (vital, value, quality, device_time, unit, source_id))
    if len(set(source_id)) == 1:
        source = [names[source_id[0]]] * len(source_id)
    else:
        source = [names[i] for i in source_id]
    return ObservationRows(times, vital, value, quality, device_time, unit, source,
                           np.asarray(value, dtype=np.float64))


def vitals_present(store: SessionStore, session_id: int, keys: tuple[str, ...]) -> list[str]:
    """Which of ``keys`` have at least one observation in the session (index look-ups only)."""
    with store._read() as conn:
        return [k for k in keys if conn.execute("SELECT 1 FROM observations WHERE session_id = ? AND vital = ? LIMIT 1",
                                                (session_id, k)).fetchone()]


def waveform_blocks(store: SessionStore, session_id: int) -> list[Block]:
    """The session's waveform blocks (finished, then any unfinished ones of an open session),
    by channel (catalogue order) and start time."""
    with store._read() as conn:
        rows = conn.execute(
            "SELECT w.channel, w.t0, w.rate, w.n, w.enc, s.name, w.data, 0, w.id FROM waveforms w "
            "LEFT JOIN sources s ON s.id = w.source_id WHERE w.session_id = ? ORDER BY w.id",
            (session_id,)).fetchall()
        rows += conn.execute(
            "SELECT p.channel, p.t0, p.rate, p.n, p.enc, s.name, p.data, 1, 0 FROM waveform_pending p "
            "LEFT JOIN sources s ON s.id = p.source_id WHERE p.session_id = ? ORDER BY p.channel",
            (session_id,)).fetchall()
    order = {c: i for i, c in enumerate(WAVE_CHANNELS)}
    rows.sort(key=lambda r: (order.get(r[0], len(order)), r[0], r[1], r[7], r[8]))
    return [Block(r[0], float(r[1]), float(r[2]), int(r[3]), int(r[4]), r[5], bytes(r[6]), bool(r[7]))
            for r in rows]


def decode_block(data: bytes, n: int, enc: int, *, max_bytes: int | None = None) -> np.ndarray:
    """The float32 samples of a block. ``max_bytes`` bounds the decompressed size (hostile input:
    a block that inflates beyond it, or to anything but ``n`` samples, raises ``ValueError``)."""
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


def raw_tables(store: SessionStore, session_id: int) -> dict[str, list[tuple]]:
    """The session's rows exactly as stored (times as the stored REAL floats, not rounded to the
    microsecond as the store's datetimes are), in a fixed order:

    * ``session``: one row (created_at, started_at, ended_at, last_seen, status, phase, protocol,
      patient_json, patient_name, patient_ref, plan_json, baseline_json, device, created_by, closed_by,
      close_meaning, signed_name, n_observations, n_alarms);
    * ``entries`` (id, t, table_kind, kind, payload_json, user_login, amends_id, reason, recorded_at) by id;
    * ``alarms`` (id, condition, kind, priority, max_priority, started_at, ended_at, limit_value,
      trigger_value, message) by id;
    * ``alarm_actions`` (id, alarm_id, t, action, user_login, detail) by id;
    * ``gaps`` (start_t, end_t, reason) by start, id;
    * ``conditions`` (t, code, active, text, source name or None) by time, id;
    * ``audit`` (seq, t, user_login, session_id, action, payload_json, prev_hash, hash) by seq.
    """
    with store._read() as conn:
        q = conn.execute
        return {
            "session": q("SELECT created_at, started_at, ended_at, last_seen, status, phase, protocol, patient_json, "
                         "patient_name, patient_ref, plan_json, baseline_json, device, created_by, closed_by, "
                         "close_meaning, signed_name, n_observations, n_alarms FROM sessions WHERE id = ?",
                         (session_id,)).fetchall(),
            "entries": q("SELECT id, t, table_kind, kind, payload_json, user_login, amends_id, reason, recorded_at "
                         "FROM entries WHERE session_id = ? ORDER BY id", (session_id,)).fetchall(),
            "alarms": q("SELECT id, condition, kind, priority, max_priority, started_at, ended_at, limit_value, "
                        "trigger_value, message FROM alarms WHERE session_id = ? ORDER BY id", (session_id,)).fetchall(),
            "alarm_actions": q("SELECT id, alarm_id, t, action, user_login, detail FROM alarm_actions "
                               "WHERE session_id = ? ORDER BY id", (session_id,)).fetchall(),
            "gaps": q("SELECT start_t, end_t, reason FROM gaps WHERE session_id = ? ORDER BY start_t, id",
                      (session_id,)).fetchall(),
            "conditions": q("SELECT c.t, c.code, c.active, c.text, s.name FROM conditions c LEFT JOIN sources s "
                            "ON s.id = c.source_id WHERE c.session_id = ? ORDER BY c.t, c.id", (session_id,)).fetchall(),
            "audit": q("SELECT seq, t, user_login, session_id, action, payload_json, prev_hash, hash FROM audit "
                       "WHERE session_id = ? ORDER BY seq", (session_id,)).fetchall(),
        }
