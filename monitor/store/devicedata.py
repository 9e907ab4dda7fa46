"""Device data: observations, conditions and waveform blocks, written in batches and read for
review (ranges, decimation, summaries)."""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime

import numpy as np

from drivers.catalogue import CATALOGUE, VITAL_KEYS
from drivers.model import (
    WAVE_CHANNELS,
    DeviceCondition,
    NumericObservation,
    Quality,
    WaveformChunk,
)


from monitor.store.codec import (
    ENC_F32_SHUFFLE_ZLIB,
    _Block,
    _at,
    _sid,
    _ts,
    bits_to_quality,
    encode_samples,
    quality_to_bits,
    slice_blocks,
)
from monitor.store.database import StoreCore
from monitor.store.records import (
    VitalSummary,
    WaveformSlice,
)
from monitor.store.schema import (
    MAX_BLOCK_SECONDS,
)
from monitor.store.tail import TailFile, tail_path

log = logging.getLogger("monitor.store")


class DeviceDataMixin(StoreCore):
    """Device data: observations, conditions and waveform blocks, written in batches and read for
    review; the unfinished waveform blocks and the tail file (:mod:`monitor.store.tail`) that keep
    uncommitted data across a crash."""

    _tail_claim = threading.Lock()
    _tail_holder: object | None = None

    # ------------------------------------------------------------------ crash recovery and the tail
    def _recover_device_data(self) -> None:
        """On a read-write opening: unfinished blocks left by a crash become ordinary blocks, then
        the tail file's items (received, not committed) are stored."""
        self._recover_pending_waveforms()
        self._recover_tail()

    def _recover_pending_waveforms(self) -> None:
        conn = self._conn
        assert conn is not None
        rows = conn.execute(
            "SELECT p.session_id, p.channel FROM waveform_pending p JOIN sessions s ON s.id = p.session_id "
            "WHERE s.status = 'open'").fetchall()
        if not rows:
            return
        with self._tx() as c:
            c.execute("INSERT INTO waveforms (session_id, channel, t0, rate, n, enc, source_id, data) "
                      "SELECT p.session_id, p.channel, p.t0, p.rate, p.n, p.enc, p.source_id, p.data "
                      "FROM waveform_pending p JOIN sessions s ON s.id = p.session_id WHERE s.status = 'open'")
            c.execute("DELETE FROM waveform_pending WHERE session_id IN "
                      "(SELECT id FROM sessions WHERE status = 'open')")
        log.info("recovered %d unfinished waveform block(s) left by an earlier run", len(rows))

    def _tail_generation(self) -> int:
        """The last tail generation committed (0 if none)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'tail_generation'").fetchone()
        return int(row[0]) if row else 0

    def _mark_tail(self, generation: int) -> None:
        """Record, in the current transaction, that the tail of ``generation`` is committed."""
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('tail_generation', ?)", (str(generation),))

    def _mark_light(self, generation: int, number: int) -> None:
        """Record, in the current transaction, that light commit ``number`` of the tail of
        ``generation`` is committed: its observations and conditions are in the database, its
        waveform chunks are not (:mod:`monitor.store.tail`)."""
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('tail_light', ?)",
                         (f"{generation}:{number}",))

    def _tail_light(self) -> tuple[int, int] | None:
        """The last light commit recorded: (generation, number), or None."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'tail_light'").fetchone()
        if row is None:
            return None
        generation, _, number = str(row[0]).partition(":")
        return int(generation), int(number)

    def _claim_tail(self) -> TailFile | None:
        """The tail file for a writer, or None when the store is read-only or another writer has it."""
        if self.readonly:
            return None
        with self._tail_claim:
            if self._tail_holder is not None:
                return None
            tail = TailFile(self.path, self._tail_generation() + 1)
            self._tail_holder = tail
        return tail

    def _release_tail(self) -> None:
        """The writer holding the tail file has closed it."""
        with self._tail_claim:
            self._tail_holder = None

    def _recover_tail(self) -> None:
        path = tail_path(self.path)
        generation, ops = TailFile.read(path)
        if generation is None:
            return
        if generation <= self._tail_generation():  # committed just before the crash
            path.unlink(missing_ok=True)
            return
        light = self._tail_light()
        committed = 0  # ops before this index: their observations and conditions are in the database
        if light is not None and light[0] == generation:
            for i, (kind, _sid_, items) in enumerate(ops):
                if kind == "mark" and items == [light[1]]:
                    committed = i
        stored = refused = 0
        with self._tx() as conn:
            for i, (kind, session_id, items) in enumerate(ops):
                if kind == "mark" or (i < committed and kind != "wave"):
                    continue
                row = conn.execute("SELECT status FROM sessions WHERE id = ?", (session_id,)).fetchone()
                if row is None or row[0] != "open":
                    refused += len(items)
                    continue
                if kind == "obs":
                    self.add_observations(session_id, items)
                elif kind == "wave":
                    self.add_waveforms(session_id, items)
                else:
                    self.add_conditions(session_id, items)
                stored += len(items)
            self._mark_tail(generation)
        self.flush_waveforms()
        path.unlink(missing_ok=True)
        log.info("stored %d item(s) received before a crash but not yet committed (tail file)%s", stored,
                 f"; {refused} for sessions no longer open were left out" if refused else "")

    def add_observations(self, session_id: int, observations: Iterable[NumericObservation]) -> int:
        """Store numeric observations of an open session; returns how many.

        Each is stored with its ``sample_time`` (UTC epoch s), value (None kept as NULL), quality
        bitmask (:data:`QUALITY_BITS`), the device's own time as ISO text, and its source. A unit
        other than the catalogue's is kept. Anything that is not a ``NumericObservation`` raises
        ``TypeError`` (nothing of the call is stored); closed session → :class:`ReadOnlyError`.
        """
        with self._tx() as conn:
            self._require_open(conn, session_id)
            rows = []
            qcache = self._qcache
            for o in observations:
                if not isinstance(o, NumericObservation):
                    raise TypeError(f"expected NumericObservation, got {type(o).__name__}")
                bits = qcache.get(o.quality)
                if bits is None:
                    bits = qcache[o.quality] = quality_to_bits(o.quality)
                src = self._sources.get(o.source)
                if src is None:
                    src = self._source_id(conn, o.source)
                unit = None if o.unit == CATALOGUE[o.vital].unit else o.unit
                rows.append((session_id, o.sample_time.timestamp(), o.vital, o.value, bits,
                             o.device_time.isoformat() if o.device_time is not None else None, unit, src))
            if rows:
                conn.executemany("INSERT INTO observations (session_id, t, vital, value, quality, device_time, "
                                 "unit, source_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                conn.execute("UPDATE sessions SET n_observations = n_observations + ? WHERE id = ?",
                             (len(rows), session_id))
            return len(rows)

    def add_conditions(self, session_id: int, conditions: Iterable[DeviceCondition]) -> int:
        """Store device condition changes (code on/off) of an open session; returns how many.
        Non-``DeviceCondition`` items raise ``TypeError``; closed session → :class:`ReadOnlyError`."""
        with self._tx() as conn:
            self._require_open(conn, session_id)
            rows = []
            for c in conditions:
                if not isinstance(c, DeviceCondition):
                    raise TypeError(f"expected DeviceCondition, got {type(c).__name__}")
                rows.append((session_id, c.time.timestamp(), c.code, int(c.active), c.text,
                             self._source_id(conn, c.source)))
            conn.executemany("INSERT INTO conditions (session_id, t, code, active, text, source_id) "
                             "VALUES (?, ?, ?, ?, ?, ?)", rows)
            return len(rows)

    def add_waveforms(self, session_id: int, chunks: Iterable[WaveformChunk]) -> int:
        """Add waveform chunks of an open session; returns the number of samples taken.

        Chunks are appended per channel to an in-memory block; a chunk that does not start where
        the block ends (± half a sample), or has another rate or source, starts a new block. A
        block reaching ``block_seconds`` is written at once; the unfinished one is saved to
        ``waveform_pending`` at each commit (see :meth:`flush_waveforms`). Empty chunks are
        ignored. Non-``WaveformChunk`` items raise ``TypeError``; closed session →
        :class:`ReadOnlyError`.
        """
        with self._tx() as conn:
            self._require_open(conn, session_id)
            pending, dirty, sources, targets = self._pending, self._dirty, self._sources, self._targets
            finished: list[_Block] = []
            total = 0
            for c in chunks:  # the hot path: ~1-2 µs per chunk
                if not isinstance(c, WaveformChunk):
                    raise TypeError(f"expected WaveformChunk, got {type(c).__name__}")
                samples = c.samples
                n = len(samples)
                if not n:
                    continue
                rate = c.rate
                t0 = c.start_time.timestamp()
                src = sources.get(c.source) or self._source_id(conn, c.source)
                key = (session_id, c.channel)
                block = pending.get(key)
                if block is not None and (block.rate != rate or block.source_id != src
                                          or abs(t0 - block.t0 - block.n / rate) > 0.5 / rate):
                    if block.n:
                        finished.append(block)
                    block = None
                if block is None:
                    block = pending[key] = _Block(session_id, c.channel, t0, rate, src)
                block.parts.append(samples)
                block.n += n
                total += n
                dirty.add(key)
                target = targets.get(rate)
                if target is None:
                    target = targets[rate] = max(1, math.ceil(self.block_seconds * rate - 1e-9))
                while block.n >= target:
                    data = block.samples()
                    head = _Block(session_id, c.channel, block.t0, rate, src)
                    head.parts, head.n = [data[:target]], target
                    finished.append(head)
                    # The next block continues the same timeline (it may start empty), so chunk
                    # start jitter never shifts later blocks.
                    rest = _Block(session_id, c.channel, block.t0 + target / rate, rate, src)
                    if block.n > target:
                        rest.parts, rest.n = [data[target:]], block.n - target
                    block = pending[key] = rest
            if finished:
                self._write_blocks(conn, finished)
            return total

    def _write_blocks(self, conn: sqlite3.Connection, blocks: list[_Block]) -> None:
        blocks = [b for b in blocks if b.n]
        if not blocks:
            return
        conn.executemany(
            "INSERT INTO waveforms (session_id, channel, t0, rate, n, enc, source_id, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(b.session_id, b.channel, b.t0, b.rate, b.n, ENC_F32_SHUFFLE_ZLIB, b.source_id,
              encode_samples(b.samples())) for b in blocks])
        keys = {(b.session_id, b.channel) for b in blocks}
        conn.executemany("DELETE FROM waveform_pending WHERE session_id = ? AND channel = ?", keys)
        self._dirty.update(keys)

    def _persist_tails(self, conn: sqlite3.Connection) -> None:
        if not self._dirty:
            return
        for key in self._dirty:
            block = self._pending.get(key)
            if block is None or block.n == 0:
                conn.execute("DELETE FROM waveform_pending WHERE session_id = ? AND channel = ?", key)
            else:
                conn.execute("INSERT OR REPLACE INTO waveform_pending (session_id, channel, t0, rate, n, enc, "
                             "source_id, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (block.session_id, block.channel, block.t0, block.rate, block.n,
                              ENC_F32_SHUFFLE_ZLIB, block.source_id, encode_samples(block.samples())))
        self._dirty.clear()

    def _flush_blocks(self, conn: sqlite3.Connection, keys: list[tuple[int, str]]) -> None:
        blocks = [self._pending.pop(k) for k in keys]
        if blocks:
            self._write_blocks(conn, blocks)

    def flush_waveforms(self, session_id: int | None = None) -> None:
        """Write every unfinished waveform block (of one session, or all) as a final block, so
        the next chunk starts a new block. Called by :meth:`close_session`, :meth:`close` and
        ``StoreWriter.stop``. (Unfinished blocks are already durable in ``waveform_pending`` after
        each commit; this only finalises them.)"""
        with self._tx() as conn:
            keys = [k for k in self._pending if session_id is None or k[0] == session_id]
            self._flush_blocks(conn, keys)


    def numerics(self, session_id: int, vital: str, start: datetime | None = None, end: datetime | None = None,
                 *, with_quality: bool = False) -> tuple[np.ndarray, ...]:
        """One vital's values with ``start <= t < end`` in time order: ``(t, v)`` as float64 arrays
        (t = UTC epoch s, v = value with NaN where the device reported none), plus the int64
        quality bitmask array with ``with_quality=True``. Unknown vital → ``ValueError``."""
        if vital not in CATALOGUE:
            raise ValueError(f"unknown vital {vital!r}; known: {', '.join(VITAL_KEYS)}")
        where, args = ["session_id = ?", "vital = ?"], [_sid(session_id), vital]
        self._range(where, args, "t", start, end)
        with self._read() as conn:  # straight into numpy: no list of row tuples (a vital of 24 h has 86 400)
            rows = np.fromiter(conn.execute(f"SELECT t, ifnull(value, 0.0), value IS NULL, quality FROM observations "
                                            f"WHERE {' AND '.join(where)} ORDER BY t", args),
                               dtype=[("t", "<f8"), ("v", "<f8"), ("missing", "?"), ("q", "<i8")])
        t, v = rows["t"].copy(), rows["v"].copy()
        v[rows["missing"]] = np.nan
        return (t, v, rows["q"].copy()) if with_quality else (t, v)

    def observations(self, session_id: int, vital: str | None = None, start: datetime | None = None,
                     end: datetime | None = None) -> list[NumericObservation]:
        """The stored observations (all vitals, or one) with ``start <= t < end`` as model objects,
        in time order: value, quality flags, source, device time and unit round-trip."""
        where: list[str] = ["o.session_id = ?"]
        args: list[int | str | float] = [_sid(session_id)]
        if vital is not None:
            where.append("o.vital = ?")
            args.append(vital)
        self._range(where, args, "o.t", start, end)
        with self._read() as conn:
            rows = conn.execute("SELECT o.t, o.vital, o.value, o.quality, o.device_time, o.unit, s.name FROM "
                                f"observations o JOIN sources s ON s.id = o.source_id WHERE {' AND '.join(where)} "
                                "ORDER BY o.t, o.rowid", args).fetchall()
        return [NumericObservation(vital=r[1], value=r[2], unit=r[5] if r[5] is not None else CATALOGUE[r[1]].unit,
                                   source=r[6], sample_time=_at(r[0]),
                                   device_time=datetime.fromisoformat(r[4]) if r[4] else None,
                                   quality=bits_to_quality(r[3])) for r in rows]

    def conditions(self, session_id: int, start: datetime | None = None,
                   end: datetime | None = None) -> list[DeviceCondition]:
        """Device condition changes with ``start <= t < end``, in time order."""
        where, args = ["c.session_id = ?"], [_sid(session_id)]
        self._range(where, args, "c.t", start, end)
        with self._read() as conn:
            rows = conn.execute("SELECT c.t, c.code, c.active, c.text, s.name FROM conditions c "
                                f"LEFT JOIN sources s ON s.id = c.source_id WHERE {' AND '.join(where)} "
                                "ORDER BY c.t, c.id", args).fetchall()
        return [DeviceCondition(code=r[1], active=bool(r[2]), text=r[3], source=r[4] or "", time=_at(r[0]))
                for r in rows]

    def waveform_channels(self, session_id: int) -> list[str]:
        """Channels with stored samples for the session."""
        with self._read() as conn:
            found = {r[0] for r in conn.execute(
                "SELECT DISTINCT channel FROM waveforms WHERE session_id = ? UNION "
                "SELECT channel FROM waveform_pending WHERE session_id = ?", (session_id, session_id))}
        return [c for c in WAVE_CHANNELS if c in found] + sorted(found - set(WAVE_CHANNELS))

    def _blocks(self, session_id: int, channel: str, s: float, e: float) -> list[tuple[float, float, int, int, bytes]]:
        sql = ("SELECT t0, rate, n, enc, data FROM {} WHERE session_id = ? AND channel = ? AND t0 > ? AND t0 < ? "
               "AND t0 + n / rate > ?")
        args = (session_id, channel, s - MAX_BLOCK_SECONDS - 1.0, e, s)
        with self._read() as conn:
            rows = conn.execute(sql.format("waveforms") + " ORDER BY t0", args).fetchall()
            rows += conn.execute(sql.format("waveform_pending"), args).fetchall()
        rows.sort(key=lambda r: r[0])
        return rows

    def waveform(self, session_id: int, channel: str, start: datetime, end: datetime,
                 max_points: int | None = None) -> WaveformSlice:
        """Samples of ``channel`` with ``start <= t < end`` (committed data; reads only the blocks
        that overlap the range).

        Without ``max_points`` (or when the range holds no more than ``max_points`` samples):
        ``WaveformSlice(t, v, v)``, the samples themselves (float32, NaN gaps kept) and their times
        (float64 epoch s). With more samples than ``max_points``: the range is cut into
        ``max_points`` equal bins and the result holds bin centres and each bin's float32 min and
        max (NaN for bins with no valid sample), so a plot keeps every peak. ``end <= start`` or
        ``max_points < 1`` → ``ValueError``.
        """
        s, e = _ts(start, "start"), _ts(end, "end")
        if e <= s:
            raise ValueError("end must be after start")
        if max_points is not None and max_points < 1:
            raise ValueError("max_points must be at least 1")
        return slice_blocks(self._blocks(_sid(session_id), channel, s, e), s, e, max_points)

    def summary(self, session_id: int, *, exclude: Iterable[Quality] = ()) -> dict[str, VitalSummary]:
        """Per vital: count, min, max, mean of the values, and the first/last observation time.
        Values carrying any flag in ``exclude`` (e.g. ``{Quality.ARTIFACT, Quality.SENSOR_OFF}``)
        are left out of the statistics and counted in ``n_flagged``."""
        mask = quality_to_bits(exclude)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT vital, "
                "sum(value IS NOT NULL AND (quality & :m) = 0), "
                "min(CASE WHEN (quality & :m) = 0 THEN value END), "
                "max(CASE WHEN (quality & :m) = 0 THEN value END), "
                "avg(CASE WHEN (quality & :m) = 0 THEN value END), "
                "min(t), max(t), sum(value IS NULL), sum(value IS NOT NULL AND (quality & :m) != 0) "
                "FROM observations WHERE session_id = :s GROUP BY vital",
                {"m": mask, "s": _sid(session_id)}).fetchall()
        order = {k: i for i, k in enumerate(VITAL_KEYS)}
        rows.sort(key=lambda r: order.get(r[0], len(order)))
        return {r[0]: VitalSummary(int(r[1]), r[2], r[3], r[4], _at(r[5]), _at(r[6]), int(r[7]), int(r[8]))
                for r in rows}

    def last_data_time(self, session_id: int) -> datetime | None:
        """The latest time of any observation, waveform sample, condition or entry of the session
        (None if nothing was recorded): where a crash gap starts. Uses indexes only."""
        sid = _sid(session_id)
        latest: list[float] = []
        with self._read() as conn:
            for table in ("observations", "conditions", "entries"):
                row = conn.execute(f"SELECT max(t) FROM {table} WHERE session_id = ?", (sid,)).fetchone()
                if row[0] is not None:
                    latest.append(row[0])
            channels = [r[0] for r in conn.execute(
                "SELECT DISTINCT channel FROM waveform_pending WHERE session_id = ?", (sid,))]
            for channel in set(WAVE_CHANNELS) | set(channels):
                for table in ("waveforms", "waveform_pending"):
                    row = conn.execute(f"SELECT t0, n, rate FROM {table} WHERE session_id = ? AND channel = ? "
                                       "ORDER BY t0 DESC LIMIT 1", (sid, channel)).fetchone()
                    if row is not None:
                        latest.append(row[0] + (row[1] - 1) / row[2])
        return _at(max(latest)) if latest else None
