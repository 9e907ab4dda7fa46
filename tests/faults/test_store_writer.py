"""Issue 11, "The store": a write failure that lasts to the end of a recording ends with a clear
message, how much was not written and where it was saved; the recovery file is written back with
``vigil recover``. Real files, a real process."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from drivers.model import DeviceCondition, WaveformChunk, numeric
from monitor.cli import run_cli
from monitor.store import SessionStore, StoreError, StoreWriter
from tests.faults.test_store_files import _wait_for_session

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_writes_failing_to_the_end_are_saved_and_recovered(tmp_path):
    db = tmp_path / "vigil.sqlite"
    store = SessionStore(db, busy_timeout=0.05)
    sid = store.create_session(patient={"display_name": "Ann"}, protocol="iv_ketamine", plan={}, device="sim://",
                               user="ann", started_at=T0)
    errors = []
    writer = StoreWriter(store, retry_initial=0.05, retry_max=0.2, on_error=errors.append)
    writer.start()
    writer.put_observations(sid, [numeric("hr", 70, "sim", at(0))])
    assert writer.flush(10)
    blocker = sqlite3.connect(db, isolation_level=None)   # another program holds the file: every write fails
    blocker.execute("BEGIN EXCLUSIVE")
    writer.put_observations(sid, [numeric("hr", 71 + i, "sim", at(1 + i)) for i in range(30)])
    writer.put_waveforms(sid, [WaveformChunk(channel="ecg", rate=250.0, start_time=at(1),
                                             samples=np.arange(250, dtype=np.float32), source="sim")])
    writer.put_conditions(sid, [DeviceCondition(code="sensor_off", active=True, source="sim", time=at(5))])
    entry = writer.put_call(store.add_entry, sid, "note", at(6), "note", {"text": "patient comfortable"}, "ann")
    closing = writer.put_call(store.close_session, sid, user="ann", signed_name="Ann Nurse", meaning="ended",
                              at=at(40))
    try:
        assert not writer.stop(0.3)   # (it retries every 0.05–0.2 s until then)
        report = writer.unsaved
        assert report is not None and errors
        assert report.counts == {"observations": 30, "waveform chunks": 1, "device conditions": 1,
                                 "recorded actions": 2}
        assert report.path is not None and report.path.parent == tmp_path and oct(report.path.stat().st_mode)[-3:] == "600"
        assert "not written: 30 observations, 1 waveform chunks, 1 device conditions, 2 recorded actions" in \
            report.message() and f"vigil recover {report.path}" in report.message()
        with pytest.raises(StoreError, match="saved in"):
            entry.result(0)
        assert closing.exception(0) is not None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        store.close()
    out, err = io.StringIO(), io.StringIO()
    assert run_cli(["recover", str(report.path), "--db", str(db)], out=out, err=err) == 0, err.getvalue()
    assert "written: 30 observations, 1 waveform chunks, 1 device conditions, 2 recorded actions" in out.getvalue()
    assert not report.path.exists() and report.path.with_name(report.path.name + ".replayed").exists()
    with SessionStore(db, readonly=True) as r:
        t, v = r.numerics(sid, "hr")
        assert list(v) == [70] + [71 + i for i in range(30)]
        assert r.get_session(sid).status == "closed" and [e.payload for e in r.entries(sid)] == [
            {"text": "patient comfortable"}]
        assert [c.code for c in r.conditions(sid)] == ["sensor_off"]
        assert r.waveform(sid, "ecg", at(0), at(10)).values.size == 250
        assert r.verify_session(sid).ok


@pytest.mark.slow
def test_vigil_record_whose_disk_fails_says_what_was_not_written_and_where(tmp_path):
    chattr = shutil.which("chattr")
    if os.geteuid() != 0 or chattr is None:
        pytest.skip("making the database's journal unwritable under a running recorder needs root and chattr")
    db = tmp_path / "vigil.sqlite"
    wal = Path(f"{db}-wal")
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "record", "--device",
                             "sim://?scenario=normal&speed=1", "--duration", "600", "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frozen = False
    try:
        _wait_for_session(db)
        # the disk fails under the recorder: its journal can no longer be written (EPERM)
        subprocess.run([chattr, "+i", str(wal)], check=True)
        frozen = True
        time.sleep(4)
        proc.terminate()
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        if frozen:
            subprocess.run([chattr, "-i", str(wal)], check=True)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "recording failed, retrying" in err
    final = err.strip().splitlines()[-1]
    assert final.startswith("vigil record: writing to the database failed to the end") and "not written:" in final
    saved = Path(final.split("Saved in ")[1].split(": once")[0])
    assert saved.parent == tmp_path
    head = json.loads(saved.read_text().splitlines()[0])
    assert head["format"] == "vigil-recovery" and head["counts"]["observations"] > 0
    out_, err_ = io.StringIO(), io.StringIO()
    assert run_cli(["recover", str(saved), "--db", str(db)], out=out_, err=err_) == 0, out_.getvalue() + err_.getvalue()
    with SessionStore(db, readonly=True) as r:
        [session] = r.list_sessions()
        assert session.status == "closed"  # the closing waited in the recovery file too
        assert r.verify_session(session.id).ok


_KILLED_WRITER = r"""
import sys, time
from datetime import datetime, timedelta, timezone
import numpy as np
from drivers.model import WaveformChunk, numeric
from monitor.store import SessionStore, StoreWriter

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
store = SessionStore(sys.argv[1])               # a read-write opening stores what the last kill left in the tail
[session] = store.list_sessions()
last = store.last_data_time(session.id)       # a numeric, or a waveform chunk put just before it
step = int((last - T0).total_seconds()) + 1 if last is not None else 0
# the cadence of a chair of the clinic record, 20x faster: light commits every 0.15 s, full ones every 1.5 s
writer = StoreWriter(store, commit_interval=0.05, idle_commit=0.025, data_commit_interval=1.5,
                     light_commit_interval=0.15)
writer.start()
print(step, flush=True)
while True:                                     # one second of session every 10 ms, until killed
    when = T0 + timedelta(seconds=step)
    writer.put_waveforms(session.id, [WaveformChunk(channel="ecg", rate=50, start_time=when, source="sim",
                                                    samples=np.arange(step * 50, step * 50 + 50, dtype=np.float32))])
    writer.put_observations(session.id, [numeric("hr", float(step), "sim", when)])
    step += 1
    time.sleep(0.01)
"""


@pytest.mark.slow  # eight real processes, killed
def test_a_chair_with_light_commits_killed_again_and_again_stores_everything_once(tmp_path):
    """SIGKILL at random moments while numerics are committed every few (scaled) seconds and the
    waveforms wait in the tail for the full commits: after each restart nothing is stored twice,
    the waveform samples continue their timeline, and only about the last moment before each kill
    is missing."""
    db = tmp_path / "vigil.sqlite"
    with SessionStore(db) as s:
        s.create_session(patient={"display_name": "Ann"}, protocol="iv_ketamine", plan={}, device="sim://",
                         user="ann", started_at=T0)
    rng = np.random.default_rng(7)
    starts = []
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(db)], stdout=subprocess.PIPE, text=True,
                                cwd=ROOT)
        starts.append(int(proc.stdout.readline()))
        time.sleep(float(rng.uniform(0.5, 3.0)))     # across light and full commits
        proc.kill()
        proc.wait(10)
    with SessionStore(db) as r:                      # the last kill's tail is stored here
        [session] = r.list_sessions()
        _, hr = r.numerics(session.id, "hr")
        wave = r.waveform(session.id, "ecg", T0, T0 + timedelta(seconds=float(hr[-1]) + 2))
    assert np.all(np.diff(hr) > 0), "a numeric stored twice"
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    kept = wave.values[~np.isnan(wave.values)]
    assert np.all(np.diff(kept) > 0), "a waveform sample stored twice or out of order"
    # every sample is at its own time (value = 50 × seconds): the timeline was continued, not shifted
    np.testing.assert_allclose(wave.t[~np.isnan(wave.values)] - T0.timestamp(), kept / 50, atol=1e-6)
    # what a kill loses is the last few session-seconds it had not yet made safe (about 10 ms each)
    lost = set(range(int(hr[-1]) + 1)) - set(hr.astype(int).tolist())
    assert len(lost) <= 8 * 15, sorted(lost)
    assert set(range(int(hr[-1]) + 1)) - set((kept // 50).astype(int).tolist()) <= lost
