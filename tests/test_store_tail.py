"""The tail file (monitor/store/tail.py): uncommitted device data kept across a crash, without a
commit a second (issue 10 §8)."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from drivers.model import DeviceCondition, Quality, WaveformChunk, numeric
from monitor.store import SessionStore, StoreWriter
from monitor.store.tail import TailFile, tail_path
from tests.factories import wait_for

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_session(s: SessionStore) -> int:
    return s.create_session(patient={"name": "Ann Example"}, protocol="iv_ketamine", plan={}, device="sim",
                            user="nurse1", started_at=T0)


def ecg(start_s: float, seconds: float) -> WaveformChunk:
    n = int(seconds * 250)
    samples = np.sin(np.arange(n, dtype=np.float32) / 7).astype(np.float32)
    samples[3] = np.nan
    return WaveformChunk(channel="ecg", rate=250, start_time=at(start_s), samples=samples, source="sim")


def copy_as_crashed(db: Path, folder: Path) -> Path:
    """The files a killed process leaves (database, WAL, tail), copied while nothing is written."""
    folder.mkdir()
    for suffix in ("", "-wal", "-shm", ".tail"):
        src = Path(f"{db}{suffix}")
        if src.exists():
            shutil.copy(src, folder / (db.name + suffix))
    return folder / db.name


def test_items_round_trip_through_the_tail_file(tmp_path):
    obs = numeric("spo2", None, "sim", at(1)).model_copy(update={"quality": frozenset({Quality.INVALID}),
                                                                  "device_time": datetime(2026, 3, 2, 10, 0)})
    cond = DeviceCondition(code="sensor_off", active=True, text="probe off", source="sim", time=at(2))
    tail = TailFile(tmp_path / "v.sqlite", generation=7)
    tail.append([("obs", 1, [obs]), ("wave", 1, [ecg(0, 0.5), ecg(0.5, 0.2)])])
    tail.append([("cond", 2, [cond])])
    tail.close()
    generation, ops = TailFile.read(tail_path(tmp_path / "v.sqlite"))
    assert generation == 7 and [(k, s) for k, s, _ in ops] == [("obs", 1), ("wave", 1), ("cond", 2)]
    assert ops[0][2] == [obs] and ops[2][2] == [cond]
    for got, sent in zip(ops[1][2], [ecg(0, 0.5), ecg(0.5, 0.2)]):
        assert (got.channel, got.rate, got.start_time) == (sent.channel, sent.rate, sent.start_time)
        np.testing.assert_array_equal(got.samples, sent.samples)  # NaN kept


def test_a_frame_cut_short_by_the_crash_is_ignored_with_what_follows(tmp_path):
    tail = TailFile(tmp_path / "v.sqlite", generation=1)
    tail.append([("obs", 1, [numeric("hr", 70, "sim", at(1))])])
    size = tail.path.stat().st_size
    tail.append([("obs", 1, [numeric("hr", 71, "sim", at(2))])])
    tail.close()
    data = tail.path.read_bytes()
    tail.path.write_bytes(data[:-3])
    assert [o.value for _, _, items in TailFile.read(tail.path)[1] for o in items] == [70]
    tail.path.write_bytes(data[:size] + b"garbage" + data[size:])
    assert [o.value for _, _, items in TailFile.read(tail.path)[1] for o in items] == [70]


def test_wrong_items_are_refused_by_the_tail(tmp_path):
    tail = TailFile(tmp_path / "v.sqlite")
    with pytest.raises(TypeError):
        tail.append([("obs", 1, ["garbage"])])
    with pytest.raises(TypeError):
        tail.append([("call", 1, [1])])


def test_uncommitted_data_survive_a_crash_through_the_tail(tmp_path):
    db = tmp_path / "v.sqlite"
    with SessionStore(db) as s:
        sid = new_session(s)
        # nothing committed while the test runs; the tail taken within 0.1 s
        w = StoreWriter(s, commit_interval=0.1, idle_commit=0.05, data_commit_interval=600)
        w.start()
        w.put_waveforms(sid, [ecg(0, 1.0), ecg(1.0, 1.0)])
        w.put_observations(sid, [numeric("hr", 60 + i, "sim", at(i)) for i in range(3)])
        w.put_conditions(sid, [DeviceCondition(code="artifact", active=True, source="sim", time=at(1))])
        wait_for(lambda: w._tailed == 3)
        assert s.get_session(sid).n_observations == 0          # not in the database yet
        crashed = copy_as_crashed(db, tmp_path / "crash")
        w.stop(10)
    with SessionStore(crashed) as r:                         # a read-write opening recovers the tail
        assert r.numerics(sid, "hr")[1].tolist() == [60, 61, 62]
        assert [c.code for c in r.conditions(sid)] == ["artifact"]
        wave = r.waveform(sid, "ecg", at(0), at(5))
        np.testing.assert_array_equal(wave.values, np.concatenate([ecg(0, 1).samples, ecg(1, 1).samples]))
    assert not tail_path(crashed).exists()
    with SessionStore(crashed) as again:                     # recovered once, not twice
        assert again.get_session(sid).n_observations == 3


def test_a_tail_already_committed_is_not_stored_twice(tmp_path):
    db = tmp_path / "v.sqlite"
    with SessionStore(db) as s:
        sid = new_session(s)
        w = StoreWriter(s, commit_interval=0.1, idle_commit=0.05, data_commit_interval=600)
        w.start()
        w.put_observations(sid, [numeric("hr", 70, "sim", at(1))])
        wait_for(lambda: w._tailed == 1)
        stale = tail_path(db).read_bytes()
        assert w.flush(10)                                     # committed; the tail starts a new generation
        w.put_observations(sid, [numeric("hr", 71, "sim", at(2))])
        wait_for(lambda: w._tailed == 1)
        crashed = copy_as_crashed(db, tmp_path / "crash")
        w.stop(10)
    tail_path(crashed).write_bytes(stale)   # the crash fell between the commit and the reset
    with SessionStore(crashed) as r:
        assert r.numerics(sid, "hr")[1].tolist() == [70]


def test_the_tail_of_a_session_closed_since_is_left_out(tmp_path):
    db = tmp_path / "v.sqlite"
    with SessionStore(db) as s:
        sid = new_session(s)
    tail = TailFile(db, generation=1)
    tail.append([("obs", sid, [numeric("hr", 70, "sim", at(1))])])
    tail.close()
    with SessionStore(db) as s:
        s.close_session(sid, user="nurse1", signed_name="N", meaning="reviewed and closed", at=at(10))
    tail = TailFile(db, generation=2)
    tail.append([("obs", sid, [numeric("hr", 71, "sim", at(2))])])
    tail.close()
    with SessionStore(db) as s:
        assert s.numerics(sid, "hr")[1].tolist() == [70]


def test_a_writer_without_the_tail_commits_every_second(tmp_path):
    db = tmp_path / "v.sqlite"
    with SessionStore(db) as s:
        sid = new_session(s)
        first = StoreWriter(s, commit_interval=0.1, idle_commit=0.05, data_commit_interval=600)
        first.start()
        first.put_observations(sid, [numeric("hr", 70, "sim", at(1))])
        wait_for(lambda: first._tailed == 1)
        # the tail is taken: it commits instead
        second = StoreWriter(s, commit_interval=0.1, idle_commit=0.05, data_commit_interval=600)
        second.start()
        second.put_observations(sid, [numeric("hr", 71, "sim", at(2))])
        wait_for(lambda: s.get_session(sid).n_observations == 1)
        assert second._tail is None and first._tail is not None
        second.stop(10)
        first.stop(10)
    assert not tail_path(db).exists()


# ------------------------------------------------------------------------------------ light commits
def test_a_light_commit_keeps_the_waveforms_in_the_tail_and_a_crash_loses_nothing(tmp_path):
    """A chair of the clinic record commits numerics every few seconds; the waveform chunks wait for
    the full commit in the tail file. After a crash, the numerics are stored once, the waveforms whole."""
    db = tmp_path / "v.sqlite"
    with SessionStore(db) as s:
        sid = new_session(s)
        w = StoreWriter(s, commit_interval=0.1, idle_commit=0.05, data_commit_interval=600, light_commit_interval=0.01)
        w.start()
        w.put_waveforms(sid, [ecg(0, 1.0), ecg(1.0, 1.0)])
        w.put_observations(sid, [numeric("hr", 60 + i, "sim", at(i)) for i in range(3)])
        wait_for(lambda: s.get_session(sid).n_observations == 3)       # the light commit
        assert s.waveform_channels(sid) == []                           # the waveforms are not committed
        w.put_waveforms(sid, [ecg(2.0, 1.0)])
        w.put_conditions(sid, [DeviceCondition(code="artifact", active=True, source="sim", time=at(2))])
        wait_for(lambda: [c.code for c in s.conditions(sid)] == ["artifact"])  # the next light commit
        w.put_observations(sid, [numeric("hr", 70, "sim", at(3))])
        wait_for(lambda: s.get_session(sid).n_observations == 4)
        w.light_commit_interval = 600                                    # no more light commits
        w.put_observations(sid, [numeric("hr", 71, "sim", at(4))])        # in the tail only
        wait_for(lambda: any(o.value == 71 for kind, _, items in TailFile.read(tail_path(db))[1] if kind == "obs"
                             for o in items))
        assert w._light >= 3
        crashed = copy_as_crashed(db, tmp_path / "crash")
        w.stop(10)
    with SessionStore(crashed) as r:
        assert r.numerics(sid, "hr")[1].tolist() == [60, 61, 62, 70, 71]
        assert [c.code for c in r.conditions(sid)] == ["artifact"]
        wave = r.waveform(sid, "ecg", at(0), at(5))
        np.testing.assert_array_equal(wave.values, np.concatenate([ecg(t, 1).samples for t in (0, 1, 2)]))
    with SessionStore(crashed) as again:
        assert again.get_session(sid).n_observations == 5


@pytest.mark.parametrize("committed", [None, 1, 2])
def test_only_the_light_commit_the_database_holds_is_left_out_of_the_recovery(tmp_path, committed):
    """Marks 1 and 2 are in the tail; the database holds light commit ``committed`` (None: the
    crash came before the first one reached it, or the commit after the mark failed)."""
    db = tmp_path / "v.sqlite"
    with SessionStore(db) as s:
        sid = new_session(s)
        with s.transaction():
            for value in [70, 71][:committed or 0]:
                s.add_observations(sid, [numeric("hr", value, "sim", at(value - 69))])
            if committed:
                s._mark_light(1, committed)
    tail = TailFile(db, generation=1)
    tail.append([("wave", sid, [ecg(0, 1.0)]), ("obs", sid, [numeric("hr", 70, "sim", at(1))])])
    tail.mark(1)
    tail.append([("wave", sid, [ecg(1.0, 1.0)]), ("obs", sid, [numeric("hr", 71, "sim", at(2))])])
    tail.mark(2)
    tail.append([("obs", sid, [numeric("hr", 72, "sim", at(3))])])
    tail.close()
    with SessionStore(db) as r:
        assert r.numerics(sid, "hr")[1].tolist() == [70, 71, 72]
        np.testing.assert_array_equal(r.waveform(sid, "ecg", at(0), at(5)).values,
                                      np.concatenate([ecg(0, 1).samples, ecg(1, 1).samples]))


def test_a_light_commit_of_everything_the_tail_holds_starts_its_next_generation(tmp_path):
    """No waveforms (a monitor without them): a light commit takes everything, so the tail is emptied."""
    db = tmp_path / "v.sqlite"
    with SessionStore(db) as s:
        sid = new_session(s)
        w = StoreWriter(s, commit_interval=0.1, idle_commit=0.05, data_commit_interval=600, light_commit_interval=0.01)
        w.start()
        generation = None
        for i in range(3):
            w.put_observations(sid, [numeric("hr", 60 + i, "sim", at(i))])
            wait_for(lambda: s.get_session(sid).n_observations == i + 1)
            wait_for(lambda: w._tail is not None and w._tailed == 0)
            assert w._tail.generation != generation
            generation = w._tail.generation
        assert s._tail_generation() == generation - 1
        w.stop(10)


def test_a_light_commit_does_not_wait_for_the_disk_and_the_next_full_one_does(tmp_path):
    db = tmp_path / "v.sqlite"
    with SessionStore(db) as s:
        sid = new_session(s)
        seen = []
        with s.transaction(durable=False):
            seen.append(s._conn.execute("PRAGMA synchronous").fetchone()[0])
            s.add_observations(sid, [numeric("hr", 70, "sim", at(1))])
        with s.transaction():
            seen.append(s._conn.execute("PRAGMA synchronous").fetchone()[0])
        assert seen == [1, 2]  # NORMAL, FULL
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
