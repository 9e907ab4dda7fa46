"""Whole-session reads and writes: what exports, archives, review and the clinic record need in bulk,
as public methods (no other package reads the store's tables)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from drivers.catalogue import CATALOGUE
from drivers.model import WAVE_CHANNELS


from monitor.store.codec import _rowid, _sid, canonical_json
from monitor.store.database import StoreCore
from monitor.store.records import Block, Envelope, ObservationRows


class BulkMixin(StoreCore):
    """Whole-session reads and writes, for exports, archives, review and replication."""

    def observation_rows(self, session_id: int) -> ObservationRows:
        """Every observation row of the session, ordered by time then insertion.

        Reads the session's row-id range sequentially (the rows of one session are stored together,
        in the order they arrived; the time index would make SQLite visit the table in random order
        and sort), then orders by time in numpy (stable, so insertion order breaks ties). Building a
        model object per row would cost seconds for a long session: this returns columns."""
        sid = _sid(session_id)
        with self._read() as conn:
            lo, hi = conn.execute("SELECT min(rowid), max(rowid) FROM observations WHERE session_id = ?",
                                  (sid,)).fetchone()
            if lo is None:
                return ObservationRows(np.empty(0), [], [], [], [], [], [], np.empty(0))
            rows = conn.execute("SELECT t, vital, value, quality, device_time, unit, source_id FROM observations "
                                "NOT INDEXED WHERE rowid BETWEEN ? AND ? AND session_id = ?", (lo, hi, sid)).fetchall()
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

    def iter_observation_rows(self, session_id: int, chunk: int = 50_000) -> Iterator[ObservationRows]:
        """The rows of :meth:`observation_rows`, in the same order, ``chunk`` rows at a time (one read
        snapshot), so a long session is never held whole: only its times and row ids are (16 bytes a
        row), to find the order."""
        sid = _sid(session_id)
        with self._read() as conn:
            lo, hi = conn.execute("SELECT min(rowid), max(rowid) FROM observations WHERE session_id = ?",
                                  (sid,)).fetchone()
            if lo is None:
                return
            keys = np.fromiter(conn.execute("SELECT rowid, t FROM observations NOT INDEXED WHERE rowid BETWEEN ? AND ? "
                                            "AND session_id = ?", (lo, hi, sid)), dtype=[("id", "<i8"), ("t", "<f8")])
            rowids, times = keys["id"], keys["t"]
            in_order = len(times) < 2 or bool(np.all(times[1:] >= times[:-1]))
            if not in_order:
                rowids = rowids[np.argsort(times, kind="stable")]
            del keys, times
            names = dict(conn.execute("SELECT id, name FROM sources").fetchall())
            columns = "t, vital, value, quality, device_time, unit, source_id"
            for first in range(0, len(rowids), chunk):
                ids = rowids[first:first + chunk]
                if in_order:
                    rows = conn.execute(f"SELECT {columns} FROM observations NOT INDEXED WHERE rowid BETWEEN ? AND ? "
                                        "AND session_id = ?", (int(ids[0]), int(ids[-1]), sid)).fetchall()
                else:
                    by_id: dict[int, tuple[Any, ...]] = {}
                    for part in range(0, len(ids), 30_000):
                        wanted = ids[part:part + 30_000].tolist()
                        by_id.update((r[0], r[1:]) for r in conn.execute(
                            f"SELECT rowid, {columns} FROM observations WHERE rowid IN "
                            f"({','.join('?' * len(wanted))})", wanted))
                    rows = [by_id[i] for i in ids.tolist()]
                t, vital, value, quality, device_time, unit, source_id = (list(c) for c in zip(*rows))
                del rows
                yield ObservationRows(np.asarray(t, dtype=np.float64), vital, value, quality, device_time, unit,
                                      [names[i] for i in source_id], np.asarray(value, dtype=np.float64))

    def iter_waveform_blocks(self, session_id: int, channel: str | None = None) -> Iterator[Block]:
        """The blocks of :meth:`waveform_blocks` (of one channel, or all), in the same order, read one
        at a time (one read snapshot), so a long session's waveforms are never held whole."""
        sid = _sid(session_id)
        with self._read() as conn:
            if channel is not None:
                channels = [channel]
            else:
                found = {r[0] for r in conn.execute("SELECT DISTINCT channel FROM waveforms WHERE session_id = ? UNION "
                                                    "SELECT channel FROM waveform_pending WHERE session_id = ?",
                                                    (sid, sid))}
                channels = [c for c in WAVE_CHANNELS if c in found] + sorted(found - set(WAVE_CHANNELS))
            for ch in channels:
                tails = [Block(r[0], float(r[1]), float(r[2]), int(r[3]), int(r[4]), r[5], bytes(r[6]), True)
                         for r in conn.execute(
                             "SELECT p.channel, p.t0, p.rate, p.n, p.enc, s.name, p.data FROM waveform_pending p "
                             "LEFT JOIN sources s ON s.id = p.source_id WHERE p.session_id = ? AND p.channel = ?",
                             (sid, ch))]
                tails.sort(key=lambda b: b.t0)
                for r in conn.execute(
                        "SELECT w.channel, w.t0, w.rate, w.n, w.enc, s.name, w.data FROM waveforms w "
                        "LEFT JOIN sources s ON s.id = w.source_id WHERE w.session_id = ? AND w.channel = ? "
                        "ORDER BY w.t0, w.id", (sid, ch)):
                    while tails and tails[0].t0 < r[1]:  # an unfinished block sorts after finished ones at its t0
                        yield tails.pop(0)
                    yield Block(r[0], float(r[1]), float(r[2]), int(r[3]), int(r[4]), r[5], bytes(r[6]), False)
                yield from tails

    def waveform_blocks(self, session_id: int) -> list[Block]:
        """The session's stored waveform blocks as they are (compressed bytes, for a bit-exact archive):
        finished ones, then the unfinished one of each channel of an open session, by channel
        (catalogue order) and start time."""
        sid = _sid(session_id)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT w.channel, w.t0, w.rate, w.n, w.enc, s.name, w.data, 0, w.id FROM waveforms w "
                "LEFT JOIN sources s ON s.id = w.source_id WHERE w.session_id = ? ORDER BY w.id", (sid,)).fetchall()
            rows += conn.execute(
                "SELECT p.channel, p.t0, p.rate, p.n, p.enc, s.name, p.data, 1, 0 FROM waveform_pending p "
                "LEFT JOIN sources s ON s.id = p.source_id WHERE p.session_id = ? ORDER BY p.channel", (sid,)).fetchall()
        order = {c: i for i, c in enumerate(WAVE_CHANNELS)}
        rows.sort(key=lambda r: (order.get(r[0], len(order)), r[0], r[1], r[7], r[8]))
        return [Block(r[0], float(r[1]), float(r[2]), int(r[3]), int(r[4]), r[5], bytes(r[6]), bool(r[7]))
                for r in rows]

    def raw_tables(self, session_id: int) -> dict[str, list[tuple]]:
        """The session's rows exactly as stored (times as the stored REAL floats, not rounded to the
        microsecond as the store's datetimes are), in a fixed order:

        * ``session``: one row (created_at, started_at, ended_at, last_seen, status, phase, protocol,
          patient_json, patient_name, patient_ref, plan_json, baseline_json, device, created_by,
          closed_by, close_meaning, signed_name, n_observations, n_alarms);
        * ``entries`` (id, t, table_kind, kind, payload_json, user_login, amends_id, reason, recorded_at) by id;
        * ``alarms`` (id, condition, kind, priority, max_priority, started_at, ended_at, limit_value,
          trigger_value, message) by id;
        * ``alarm_actions`` (id, alarm_id, t, action, user_login, detail) by id;
        * ``gaps`` (start_t, end_t, reason) by start, id;
        * ``conditions`` (t, code, active, text, source name or None) by time, id;
        * ``audit`` (seq, t, user_login, session_id, action, payload_json, prev_hash, hash) by seq.
        """
        sid = _sid(session_id)
        with self._read() as conn:
            q = conn.execute
            return {
                "session": q("SELECT created_at, started_at, ended_at, last_seen, status, phase, protocol, "
                             "patient_json, patient_name, patient_ref, plan_json, baseline_json, device, created_by, "
                             "closed_by, close_meaning, signed_name, n_observations, n_alarms FROM sessions "
                             "WHERE id = ?", (sid,)).fetchall(),
                "entries": q("SELECT id, t, table_kind, kind, payload_json, user_login, amends_id, reason, "
                             "recorded_at FROM entries WHERE session_id = ? ORDER BY id", (sid,)).fetchall(),
                "alarms": q("SELECT id, condition, kind, priority, max_priority, started_at, ended_at, limit_value, "
                            "trigger_value, message FROM alarms WHERE session_id = ? ORDER BY id", (sid,)).fetchall(),
                "alarm_actions": q("SELECT id, alarm_id, t, action, user_login, detail FROM alarm_actions "
                                   "WHERE session_id = ? ORDER BY id", (sid,)).fetchall(),
                "gaps": q("SELECT start_t, end_t, reason FROM gaps WHERE session_id = ? ORDER BY start_t, id",
                          (sid,)).fetchall(),
                "conditions": q("SELECT c.t, c.code, c.active, c.text, s.name FROM conditions c LEFT JOIN sources s "
                                "ON s.id = c.source_id WHERE c.session_id = ? ORDER BY c.t, c.id", (sid,)).fetchall(),
                "audit": q("SELECT seq, t, user_login, session_id, action, payload_json, prev_hash, hash FROM audit "
                           "WHERE session_id = ? ORDER BY seq", (sid,)).fetchall(),
            }

    def numerics_envelope(self, session_id: int, vital: str, start: float, end: float, bins: int) -> Envelope:
        """The min/max of ``vital`` in each of ``bins`` equal bins of epoch seconds ``start``–``end``
        (inclusive), computed by SQLite on the (session, vital, t) index: only ``bins`` rows reach
        Python, so a 12-hour trend is ready to draw long before its 43 200 values per vital are (the
        min/max decimation :meth:`waveform` does for waveforms, for numerics)."""
        if vital not in CATALOGUE:
            raise ValueError(f"unknown vital {vital!r}")
        if not end > start or bins < 1:
            raise ValueError("an envelope needs end > start and at least one bin")
        width = (end - start) / bins
        with self._read() as conn:
            rows = conn.execute("SELECT min(CAST((t - ?) / ? AS INTEGER), ?), min(value), max(value) FROM "
                                "observations WHERE session_id = ? AND vital = ? AND t >= ? AND t <= ? GROUP BY 1",
                                (start, width, bins - 1, _sid(session_id), vital, start, end)).fetchall()
        lo = np.full(bins, np.nan)
        hi = np.full(bins, np.nan)
        if rows:
            index, low, high = (np.array(c, dtype=np.float64) for c in zip(*rows))
            index = index.astype(np.int64)
            lo[index], hi[index] = low, high
        return Envelope(start + (np.arange(bins) + 0.5) * width, lo, hi)

    def find_session(self, *, created_at: float, started_at: float, patient_name: str, created_by: str,
                     device: str, protocol: str) -> int | None:
        """The id of a session with exactly these stored values (an archive already imported), or None."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT id FROM sessions WHERE created_at = ? AND started_at = ? AND patient_name = ? "
                "AND created_by = ? AND device = ? AND protocol = ?",
                (created_at, started_at, patient_name, created_by, device, protocol)).fetchone()
        return None if row is None else int(row[0])

    def insert_session(self, session: dict[str, Any], *, observations: Iterable[tuple], waveforms: Iterable[tuple],
                       conditions: Iterable[tuple], entries: Iterable[dict[str, Any]],
                       alarms: Iterable[dict[str, Any]], alarm_actions: Iterable[dict[str, Any]],
                       gaps: Iterable[tuple], audit_action: str, audit_payload: dict[str, Any],
                       user: str | None) -> int:
        """Insert a whole session exactly as recorded elsewhere (an archive being imported), in one
        transaction that either adds everything or nothing; returns the new session id.

        ``session``: the stored session columns (``created_at``, ``started_at``, ``ended_at``, ``status``,
        ``phase``, ``protocol``, ``patient_name``, ``patient_ref``, ``patient``/``plan``/``baseline``
        (objects, stored as canonical JSON), ``device``, ``created_by``, ``closed_by``, ``signed_name``,
        ``close_meaning``, ``last_seen``, ``n_observations``, ``n_alarms``). ``observations``:
        (t, vital, value, quality bits, device_time, unit, source name); ``waveforms``: (channel, t0,
        rate, n, enc, source name, compressed bytes); ``conditions``: (t, code, active, text, source
        name or None); ``entries``: dicts with ``id`` (the id it had), ``t``, ``table_kind``, ``kind``,
        ``payload``, ``user``, ``amends`` (an earlier ``id`` or None), ``reason``, ``recorded_at``;
        ``alarms``: dicts with ``id``, ``condition``, ``kind``, ``priority``, ``max_priority``,
        ``started_at``, ``ended_at``, ``limit``, ``value``, ``message``; ``alarm_actions``: dicts with
        ``alarm`` (an alarm ``id`` or None), ``t``, ``action``, ``user``, ``detail``; ``gaps``: (start,
        end, reason). The import itself is audited (``audit_action``, ``audit_payload``, ``user``).
        The store's triggers and checks apply to every row."""
        s = session
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO sessions (created_at, started_at, status, phase, protocol, patient_name, patient_ref, "
                "patient_json, plan_json, baseline_json, device, created_by, last_seen, n_observations, n_alarms) "
                "VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (s["created_at"], s["started_at"], s["phase"], s["protocol"], s["patient_name"], s["patient_ref"],
                 canonical_json(s["patient"]), canonical_json(s["plan"]),
                 None if s["baseline"] is None else canonical_json(s["baseline"]), s["device"], s["created_by"],
                 s["last_seen"], s["n_observations"], s["n_alarms"]))
            sid = _rowid(cur)
            sources: dict[str, int] = {}

            def source(name: str | None) -> int | None:
                if name is None:
                    return None
                if name not in sources:
                    sources[name] = self._source_id(conn, name)
                return sources[name]

            conn.executemany(
                "INSERT INTO observations (session_id, t, vital, value, quality, device_time, unit, source_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ((sid, t, vital, value, quality, device_time, unit, source(src))
                 for t, vital, value, quality, device_time, unit, src in observations))
            conn.executemany(
                "INSERT INTO waveforms (session_id, channel, t0, rate, n, enc, source_id, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ((sid, channel, t0, rate, n, enc, source(src), data) for channel, t0, rate, n, enc, src, data in waveforms))
            conn.executemany(
                "INSERT INTO conditions (session_id, t, code, active, text, source_id) VALUES (?, ?, ?, ?, ?, ?)",
                ((sid, t, code, int(active), text, source(src) if src else None)
                 for t, code, active, text, src in conditions))
            entry_ids: dict[int, int] = {}
            for e in entries:
                cur = conn.execute(
                    "INSERT INTO entries (session_id, t, table_kind, kind, payload_json, user_login, amends_id, reason, "
                    "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (sid, e["t"], e["table_kind"], e["kind"], canonical_json(e["payload"]), e["user"],
                     entry_ids.get(e["amends"]) if e["amends"] is not None else None, e["reason"], e["recorded_at"]))
                entry_ids[e["id"]] = _rowid(cur)
            alarm_ids: dict[int, int] = {}
            for a in alarms:
                cur = conn.execute(
                    "INSERT INTO alarms (session_id, condition, kind, priority, max_priority, started_at, ended_at, "
                    "limit_value, trigger_value, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (sid, a["condition"], a["kind"], a["priority"], a["max_priority"], a["started_at"], a["ended_at"],
                     a["limit"], a["value"], a["message"]))
                alarm_ids[a["id"]] = _rowid(cur)
            conn.executemany(
                "INSERT INTO alarm_actions (session_id, alarm_id, t, action, user_login, detail) VALUES (?, ?, ?, ?, ?, ?)",
                ((sid, alarm_ids.get(x["alarm"]) if x["alarm"] is not None else None, x["t"], x["action"], x["user"],
                  x["detail"]) for x in alarm_actions))
            conn.executemany("INSERT INTO gaps (session_id, start_t, end_t, reason) VALUES (?, ?, ?, ?)",
                             ((sid, start, end, reason) for start, end, reason in gaps))
            conn.execute("UPDATE sessions SET status = ?, ended_at = ?, closed_by = ?, signed_name = ?, "
                         "close_meaning = ? WHERE id = ?", (s["status"], s["ended_at"], s["closed_by"],
                                                           s["signed_name"], s["close_meaning"], sid))
            self._audit(conn, user, audit_action, sid, audit_payload)
        return sid
