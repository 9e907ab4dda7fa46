"""Whole-session reads a piece at a time (issue 10 §8): the same rows and blocks, in the same order,
as the reads that return everything at once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from drivers.model import WaveformChunk, numeric
from monitor.store import SessionStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_observation_rows_in_chunks_are_the_rows_in_order_also_when_stored_out_of_order(tmp_path):
    with SessionStore(tmp_path / "v.sqlite") as s:
        sid = s.create_session(patient={"name": "A"}, protocol="iv_ketamine", plan={}, device="sim", user="n",
                               started_at=T0)
        other = s.create_session(patient={"name": "B"}, protocol="iv_ketamine", plan={}, device="sim", user="n",
                                 started_at=T0)
        rng = np.random.default_rng(1)
        for batch in range(20):  # late batches, equal times: the order is by time, then arrival
            times = rng.integers(0, 60, 25)
            s.add_observations(sid, [numeric("hr", float(batch * 100 + i), "sim", at(float(t)))
                                     for i, t in enumerate(times)])
            s.add_observations(other, [numeric("spo2", 97, "sim", at(batch))])
        whole = s.observation_rows(sid)
        assert not np.all(np.diff(s.numerics(sid, "hr")[0]) > 0)  # ties exist
        for chunk in (1, 7, 500, 10_000):
            parts = list(s.iter_observation_rows(sid, chunk))
            assert all(len(p.t) <= chunk for p in parts)
            np.testing.assert_array_equal(np.concatenate([p.t for p in parts]), whole.t)
            for column in ("vital", "value", "quality", "device_time", "unit", "source"):
                assert [x for p in parts for x in getattr(p, column)] == getattr(whole, column)
        assert list(s.iter_observation_rows(s.create_session(patient={"name": "C"}, protocol="iv_ketamine",
                                                             plan={}, device="sim", user="n", started_at=T0))) == []


def test_waveform_blocks_one_at_a_time_are_the_blocks_in_order_with_the_unfinished_ones(tmp_path):
    with SessionStore(tmp_path / "v.sqlite", block_seconds=2) as s:
        sid = s.create_session(patient={"name": "A"}, protocol="iv_ketamine", plan={}, device="sim", user="n",
                               started_at=T0)
        for second in range(7):
            s.add_waveforms(sid, [
                WaveformChunk(channel="pleth", rate=100, start_time=at(second), samples=np.ones(100, np.float32),
                              source="sim"),
                WaveformChunk(channel="ecg", rate=250, start_time=at(second), samples=np.zeros(250, np.float32),
                              source="sim")])
        s.add_waveforms(sid, [WaveformChunk(channel="ecg", rate=500, start_time=at(3.5),  # another rate
                                            samples=np.zeros(100, np.float32), source="sim")])
        whole = s.waveform_blocks(sid)
        assert any(b.pending for b in whole)
        assert list(s.iter_waveform_blocks(sid)) == whole
        assert list(s.iter_waveform_blocks(sid, "ecg")) == [b for b in whole if b.channel == "ecg"]
