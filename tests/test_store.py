"""Tests of the session store (monitor/store.py): behaviour only, no wall-clock assertions."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from drivers.model import DeviceCondition, Quality, WaveformChunk, numeric
from monitor import store as store_mod
from monitor.store import database as store_db
from monitor.store import codec as store_codec
from monitor.store import schema as store_schema
from monitor.store import writer as store_writer
from monitor.store import (
    QUALITY_BITS, NotFoundError, ReadOnlyError, SessionStore, StoreError, StoreWriter, bits_to_quality,
    default_db_path, quality_to_bits,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "vigil.sqlite"


@pytest.fixture
def store(db: Path):
    with SessionStore(db, clock=FakeClock(), block_seconds=8) as s:
        yield s


def new_session(s: SessionStore, **kw) -> int:
    args = dict(patient={"name": "Ann Example", "mrn": "MRN-1"}, protocol="iv_ketamine",
                plan={"dose_mg_per_kg": 0.5, "minutes": 40}, device="sim://?scenario=normal",
                user="nurse1", started_at=T0)
    args.update(kw)
    return s.create_session(**args)


def ecg_chunks(seconds: float, start: float = 0.0, n: int = 10, rate: float = 250.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    chunks, k = [], 0
    while k < seconds * rate:
        samples = rng.normal(size=n).astype(np.float32)
        chunks.append(WaveformChunk(channel="ecg", rate=rate, start_time=at(start + k / rate),
                                    samples=samples, source="sim"))
        k += n
    return chunks


def raw(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db, isolation_level=None)


def close(s: SessionStore, sid: int, when: float = 3600) -> None:
    s.close_session(sid, user="nurse1", signed_name="Nora Nurse RN", meaning="reviewed and closed", at=at(when))


# ------------------------------------------------------------------------------------ file level
def test_quality_bits_cover_every_flag_once():
    assert set(QUALITY_BITS) == set(Quality)
    bits = list(QUALITY_BITS.values())
    assert len(set(bits)) == len(bits) and all(b & (b - 1) == 0 for b in bits)
    assert QUALITY_BITS[Quality.IMPLAUSIBLE] == 1 and QUALITY_BITS[Quality.MANUAL] == 1 << 10
    flags = {Quality.ARTIFACT, Quality.SIMULATED}
    assert bits_to_quality(quality_to_bits(flags)) == flags


def test_default_db_path(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_DB", str(tmp_path / "env" / "x.sqlite"))
    assert default_db_path() == tmp_path / "env" / "x.sqlite"
    assert (tmp_path / "env").is_dir()
    monkeypatch.delenv("VIGIL_DB")
    import platformdirs
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda name, appauthor=None: str(tmp_path / "data" / name))
    assert default_db_path() == tmp_path / "data" / "Vigil" / "vigil.sqlite"
    assert (tmp_path / "data" / "Vigil").is_dir()


def test_files_owner_only_wal_and_pragmas(db):
    old = os.umask(0o022)
    try:
        with SessionStore(db) as s:
            new_session(s)
            for suffix in ("", "-wal", "-shm"):
                f = Path(str(db) + suffix)
                assert f.exists(), suffix
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, suffix
            assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert s._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert s._conn.execute("PRAGMA page_size").fetchone()[0] == store_db.PAGE_SIZE == 1024
            assert s._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 4096  # 4 MiB of pages
            with raw(db) as c:
                assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert c.execute("PRAGMA application_id").fetchone()[0] == store_mod.APPLICATION_ID
                assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == \
                    str(len(store_mod.MIGRATIONS))
    finally:
        os.umask(old)


@pytest.mark.parametrize("content", [b"\x00garbage" * 100, b"hello", "sqlite"])
def test_non_vigil_file_refused_and_left_unchanged(db, content):
    if content == "sqlite":
        with raw(db) as c:
            c.execute("CREATE TABLE notes (x)")
            c.execute("INSERT INTO notes VALUES ('theirs')")
        c.close()
    else:
        db.write_bytes(content)
    before = db.read_bytes()
    with pytest.raises(StoreError, match="not a Vigil database"):
        SessionStore(db)
    with pytest.raises(StoreError, match="not a Vigil database"):
        SessionStore(db, readonly=True)
    assert db.read_bytes() == before
    assert not Path(str(db) + "-wal").exists()


def test_second_writer_refused_readonly_allowed(db):
    with SessionStore(db) as s:
        sid = new_session(s)
        with pytest.raises(StoreError, match="already open for writing"):
            SessionStore(db)
        with SessionStore(db, readonly=True) as r:
            assert r.get_session(sid).patient_name == "Ann Example"
            with pytest.raises(ReadOnlyError):
                new_session(r)
    SessionStore(db).close()  # the lock is released on close


def test_migrates_older_version_forward(db, monkeypatch):
    with SessionStore(db) as s:
        sid = new_session(s)

    def to_next(conn):
        conn.execute("ALTER TABLE sessions ADD COLUMN room TEXT")
        conn.execute("UPDATE meta SET value = 'ok' WHERE key = 'application'")

    current = len(store_mod.MIGRATIONS)
    monkeypatch.setattr(store_db, "MIGRATIONS", [*store_mod.MIGRATIONS, to_next])
    with pytest.raises(StoreError, match="needs upgrading"):
        SessionStore(db, readonly=True)
    with SessionStore(db) as s:
        assert s.get_session(sid).protocol == "iv_ketamine"
        assert s.verify_audit().ok
    with raw(db) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(current + 1)
        assert "room" in [r[1] for r in c.execute("PRAGMA table_info(sessions)")]
    backup = Path(f"{db}.v{current}.bak")
    assert backup.exists() and stat.S_IMODE(backup.stat().st_mode) == 0o600
    with raw(backup) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(current)


def test_a_schema_5_file_gets_the_arrival_order_index_and_keeps_its_pages(db, monkeypatch):
    """Schema 6 indexes observations by (session, time, vital); a file of schema 5 (4 KiB pages,
    the per-vital index) is backed up, migrated on opening, reads the same and keeps its page size."""
    monkeypatch.setattr(store_db, "MIGRATIONS", store_mod.MIGRATIONS[:5])
    monkeypatch.setattr(store_db, "PAGE_SIZE", 4096)
    with SessionStore(db) as s:
        sid = new_session(s)
        s.add_observations(sid, [numeric(v, 60.0 + i, "sim", at(i)) for i in range(20) for v in ("hr", "spo2")])
        s.add_observations(sid, [numeric("nibp_sys", 120.0, "sim", at(5))])
        before = {v: s.numerics(sid, v) for v in ("hr", "spo2", "nibp_sys")}
        last = s.last_data_time(sid)
    monkeypatch.undo()
    with SessionStore(db) as s:
        for vital, (t, v) in before.items():
            np.testing.assert_array_equal(s.numerics(sid, vital)[0], t)
            np.testing.assert_array_equal(s.numerics(sid, vital)[1], v)
        np.testing.assert_array_equal(s.numerics(sid, "hr", at(3), at(6))[1], [63, 64, 65])
        assert s.last_data_time(sid) == last == at(19)
        assert s.verify_audit().ok
    with raw(db) as c:
        indexes = {r[0]: r[1] for r in c.execute("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'observations' "
                                                 "AND type = 'index'")}
        assert list(indexes) == ["observations_stv"] and "(session_id, t, vital)" in indexes["observations_stv"]
        assert c.execute("PRAGMA page_size").fetchone()[0] == 4096
        plan = " ".join(r[3] for r in c.execute("EXPLAIN QUERY PLAN SELECT t FROM observations WHERE session_id = 1 "
                                                "AND vital = 'hr' AND t >= 0 ORDER BY t"))
        assert "observations_stv" in plan and "TEMP B-TREE" not in plan
    c.close()
    with raw(Path(f"{db}.v5.bak")) as c:
        assert c.execute("SELECT count(*) FROM observations").fetchone()[0] == 41
    c.close()


def test_newer_version_refused_unchanged(db):
    with SessionStore(db) as s:
        new_session(s)
    with raw(db) as c:
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    c.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for readonly in (False, True):
        with pytest.raises(StoreError, match="schema version 99.*newer Vigil"):
            SessionStore(db, readonly=readonly)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


# ------------------------------------------------------------------------------ users, settings
def test_users_and_settings_round_trip(store):
    uid = store.add_user("admin", "Ada Admin", "admin", "hash1", by=None)
    store.add_user("nurse1", "Nora Nurse", "nurse", None, by="admin")
    with pytest.raises(StoreError, match="already exists"):
        store.add_user("nurse1", "Other", "nurse", None, by="admin")
    u = store.get_user("admin")
    assert (u.id, u.login, u.display_name, u.role, u.pin_hash, u.active) == (uid, "admin", "Ada Admin", "admin",
                                                                            "hash1", True)
    store.set_user_active("nurse1", False, by="admin")
    store.set_pin_hash("admin", "hash2", by="admin")
    assert [(x.login, x.active) for x in store.list_users()] == [("admin", True), ("nurse1", False)]
    assert store.get_user("admin").pin_hash == "hash2" and store.get_user("nobody") is None
    with pytest.raises(NotFoundError):
        store.set_user_active("nobody", True, by="admin")

    assert store.current_settings() is None
    assert store.save_settings('{"nibp_interval": 600}', by="admin") == 1
    assert store.save_settings('{"nibp_interval": 300}', by="admin") == 2
    assert store.current_settings() == (2, '{"nibp_interval": 300}')
    assert [v for v, *_ in store.settings_history()] == [1, 2]
    with pytest.raises(ValueError):
        store.save_settings("{not json", by="admin")
    actions = [r.action for r in store.audit_rows()]
    assert actions == ["user_added", "user_added", "user_deactivated", "user_pin_changed", "settings_saved",
                       "settings_saved"]
    assert all("hash2" not in str(r.payload) for r in store.audit_rows())


# ------------------------------------------------------------------------------------ sessions
def test_session_lifecycle_round_trip(store):
    sid = new_session(store)
    rec = store.get_session(sid)
    assert (rec.status, rec.phase, rec.patient, rec.patient_name, rec.patient_ref) == (
        "open", "baseline", {"name": "Ann Example", "mrn": "MRN-1"}, "Ann Example", "MRN-1")
    assert rec.started_at == T0 and rec.ended_at is None and rec.plan["minutes"] == 40
    store.set_baseline(sid, {"hr": 72, "nibp_sys": 128}, "nurse1", at(60))
    store.set_phase(sid, "infusion", "nurse1", at(120))
    store.set_plan(sid, {"dose_mg_per_kg": 0.6, "minutes": 40}, "nurse1", at(130))
    store.heartbeat(sid, at(140.5))
    rec = store.get_session(sid)
    assert rec.baseline == {"hr": 72, "nibp_sys": 128} and rec.phase == "infusion"
    assert rec.plan["dose_mg_per_kg"] == 0.6 and rec.last_seen == at(140.5)
    assert [r.id for r in store.open_sessions()] == [sid]
    with pytest.raises(ValueError, match="timezone-aware"):
        store.set_phase(sid, "recovery", "nurse1", datetime(2026, 3, 2, 10, 0))
    with pytest.raises(NotFoundError):
        store.get_session(999)
    close(store, sid)
    rec = store.get_session(sid)
    assert (rec.status, rec.closed_by, rec.signed_name, rec.close_meaning, rec.ended_at) == (
        "closed", "nurse1", "Nora Nurse RN", "reviewed and closed", at(3600))
    assert store.open_sessions() == []
    audit = store.audit_rows(sid)
    assert [r.action for r in audit] == ["session_created", "baseline_set", "phase_changed", "plan_changed",
                                         "session_closed"]
    assert audit[2].payload == {"phase": "infusion", "previous": "baseline", "at": at(120).timestamp()}
    assert audit[3].payload["previous"]["dose_mg_per_kg"] == 0.5


def test_closed_session_is_read_only(store, db):
    sid = new_session(store)
    aid = store.alarm_started(sid, condition="spo2_low", kind="physiological", priority="medium",
                              started_at=at(10), limit=91, value=89, message="SpO2 89")
    close(store, sid)
    assert store.alarms(sid)[0].ended_at == at(3600)  # closing ends active alarms
    obs = [numeric("hr", 70, "sim", at(4000))]
    attempts = [
        lambda: store.add_observations(sid, obs),
        lambda: store.add_waveforms(sid, ecg_chunks(1)),
        lambda: store.add_conditions(sid, [DeviceCondition(code="sensor_off", active=True, source="s", time=at(1))]),
        lambda: store.add_entry(sid, "event", at(5), "nausea", {}, "nurse1"),
        lambda: store.alarm_started(sid, condition="x", kind="technical", priority="LOW", started_at=at(1),
                                    limit=None, value=None, message=""),
        lambda: store.alarm_action(sid, alarm_id=aid, at=at(20), action="acknowledge", user="nurse1"),
        lambda: store.alarm_escalated(aid, "HIGH", at(30)),
        lambda: store.heartbeat(sid, at(4000)),
        lambda: store.set_phase(sid, "recovery", "nurse1", at(4000)),
        lambda: store.add_gap(sid, at(1), at(2), "crash"),
        lambda: close(store, sid),
    ]
    for attempt in attempts:
        with pytest.raises(ReadOnlyError, match="closed"):
            attempt()
    store.close()
    c = raw(db)
    for sql in ("UPDATE sessions SET phase = 'x' WHERE id = 1",
                "UPDATE sessions SET status = 'open', ended_at = NULL WHERE id = 1",
                "INSERT INTO observations (session_id, t, vital, value, source_id) VALUES (1, 1, 'hr', 1, 1)",
                "INSERT INTO entries (session_id, t, table_kind, kind, payload_json, user_login, recorded_at) "
                "VALUES (1, 1, 'event', 'x', '{}', 'u', 1)"):
        with pytest.raises(sqlite3.IntegrityError, match="not open"):
            c.execute(sql)


def test_list_sessions_filters_and_counts(store):
    a = new_session(store, patient={"display_name": "Ann Example", "id": "P1"}, started_at=at(0))
    b = new_session(store, patient={"given_name": "Bob", "family_name": "Smith", "mrn": "P2"},
                    protocol="esketamine", started_at=at(86400))
    c = new_session(store, patient={"name": "Ann Other", "id": "P3"}, started_at=at(2 * 86400))
    store.add_observations(a, [numeric("hr", 70 + i, "sim", at(i)) for i in range(25)])
    store.add_observations(a, [numeric("spo2", 97, "sim", at(i)) for i in range(5)])
    store.add_observations(b, [numeric("hr", 80, "sim", at(86400 + i)) for i in range(3)])
    for i in range(2):
        store.alarm_started(a, condition="hr_high", kind="physiological", priority="MEDIUM", started_at=at(i),
                            limit=120, value=130, message="HR 130")
    close(store, b, 90000)
    everything = store.list_sessions()
    assert [x.id for x in everything] == [c, b, a]  # newest first
    summary = {x.id: x for x in everything}
    assert (summary[a].n_observations, summary[a].n_alarms) == (30, 2)
    assert (summary[b].patient, summary[b].status, summary[b].n_observations) == ("Bob Smith", "closed", 3)
    with raw(store.path) as conn:
        counted = dict(conn.execute("SELECT session_id, count(*) FROM observations GROUP BY session_id").fetchall())
    assert {x.id: x.n_observations for x in everything if x.n_observations} == counted
    ids = lambda **kw: sorted(x.id for x in store.list_sessions(**kw))  # noqa: E731
    assert ids(patient="ann") == [a, c]
    assert ids(patient="P2") == [b]
    assert ids(patient="%") == []
    assert ids(since=at(3600), until=at(2 * 86400)) == [b]
    assert ids(protocol="esketamine") == [b]
    assert ids(status="open") == [a, c]
    assert ids(had_alarms=True) == [a]
    assert ids(had_alarms=False) == [b, c]
    assert ids(patient="ann", had_alarms=False) == [c]


# ------------------------------------------------------------------------------- device data
def test_observations_round_trip_and_numerics_range(store):
    sid = new_session(store)
    obs = [numeric("hr", 60.0 + i, "masimo:1", at(i), device_time=datetime(2026, 3, 2, 10, 0, i),
                   quality={Quality.SIMULATED} if i % 2 else set()) for i in range(10)]
    obs[3] = numeric("hr", None, "masimo:1", at(3), quality={Quality.SENSOR_OFF})
    obs.append(numeric("spo2", 250.0, "nonin", at(4.5)))  # implausible: kept and flagged
    store.add_observations(sid, obs)
    assert store.observations(sid) == sorted(obs, key=lambda o: o.sample_time)
    assert Quality.IMPLAUSIBLE in store.observations(sid, "spo2")[0].quality
    t, v = store.numerics(sid, "hr", at(2), at(6))  # half-open range
    np.testing.assert_array_equal(t, [at(i).timestamp() for i in (2, 3, 4, 5)])
    np.testing.assert_array_equal(v, [62, np.nan, 64, 65])
    assert t.dtype == v.dtype == np.float64
    t, v, q = store.numerics(sid, "hr", with_quality=True)
    assert len(t) == 10 and q[3] == QUALITY_BITS[Quality.SENSOR_OFF] and q[1] == QUALITY_BITS[Quality.SIMULATED]
    assert len(store.numerics(sid, "rr")[0]) == 0
    with pytest.raises(ValueError, match="unknown vital"):
        store.numerics(sid, "heart")
    with pytest.raises(TypeError):
        store.add_observations(sid, [obs[0], "not an observation"])
    assert store.get_session(sid).n_observations == 11  # the failed call stored nothing


def test_summary_stats(store):
    sid = new_session(store)
    values = [70.0, 80.0, None, 90.0, 200.0]
    store.add_observations(sid, [numeric("hr", v, "sim", at(i), quality={Quality.ARTIFACT} if v == 200 else set())
                                 for i, v in enumerate(values)])
    store.add_observations(sid, [numeric("spo2", 95 + i, "sim", at(10 + i)) for i in range(3)])
    s = store.summary(sid)
    assert list(s) == ["hr", "spo2"]
    hr = s["hr"]
    assert (hr.n, hr.min, hr.max, hr.n_missing) == (4, 70.0, 200.0, 1)
    assert hr.mean == pytest.approx(110.0)
    assert (hr.first_t, hr.last_t) == (at(0), at(4))
    clean = store.summary(sid, exclude={Quality.ARTIFACT})["hr"]
    assert (clean.n, clean.max, clean.n_flagged) == (3, 90.0, 1)
    assert clean.mean == pytest.approx(80.0)
    assert s["spo2"].mean == pytest.approx(96.0)


def test_conditions_gaps_and_last_data_time(store):
    sid = new_session(store)
    assert store.last_data_time(sid) is None
    conds = [DeviceCondition(code="sensor_off", active=True, text="Sensor off", source="nonin", time=at(5)),
             DeviceCondition(code="sensor_off", active=False, source="nonin", time=at(9))]
    store.add_conditions(sid, conds)
    assert store.conditions(sid) == conds
    assert store.conditions(sid, start=at(6)) == conds[1:]
    store.add_observations(sid, [numeric("hr", 70, "sim", at(20))])
    assert store.last_data_time(sid) == at(20)
    store.add_waveforms(sid, ecg_chunks(2, start=30))  # pending block, committed as a tail
    assert store.last_data_time(sid) == at(30 + 499 / 250)
    store.add_entry(sid, "note", at(40), "note", {"text": "ok"}, "nurse1")
    assert store.last_data_time(sid) == at(40)
    gid = store.add_gap(sid, at(40), at(100), "Vigil was not running (crash)")
    with pytest.raises(ValueError):
        store.add_gap(sid, at(100), at(40), "backwards")
    [gap] = store.gaps(sid)
    assert (gap.id, gap.start, gap.end, gap.reason) == (gid, at(40), at(100), "Vigil was not running (crash)")
    assert store.audit_rows(sid)[-1].action == "gap_recorded"


# ---------------------------------------------------------------------------------- waveforms
def waveform_rows(db: Path, table: str = "waveforms") -> list[tuple]:
    with raw(db) as c:
        return c.execute(f"SELECT channel, t0, rate, n FROM {table} ORDER BY channel, t0").fetchall()


def test_waveform_coalescing_round_trip_and_gaps(store, db):
    sid = new_session(store)
    chunks = ecg_chunks(20)  # 500 chunks of 10 samples
    chunks[100] = chunks[100].model_copy(update={"samples": np.full(10, np.nan, dtype=np.float32)})
    jitter = chunks[200].start_time + timedelta(microseconds=1500)  # < half a sample (2 ms): same block
    chunks[200] = chunks[200].model_copy(update={"start_time": jitter})
    with store.transaction():  # one commit (fsync) instead of 167
        for i in range(0, len(chunks), 3):
            store.add_waveforms(sid, chunks[i:i + 3])
    blocks = waveform_rows(db)
    assert [n for *_, n in blocks] == [2000, 2000]  # 8 s blocks
    assert len(waveform_rows(db, "waveform_pending")) == 1  # the unfinished block, durable
    w = store.waveform(sid, "ecg", at(0), at(30))
    expected = np.concatenate([c.samples for c in chunks])
    np.testing.assert_array_equal(w.values, expected)  # NaN gap kept, nothing lost or doubled
    assert not w.decimated and w.values.dtype == np.float32
    np.testing.assert_allclose(w.t, at(0).timestamp() + np.arange(5000) / 250, rtol=0, atol=1e-6)
    # a gap in time, a rate change: new blocks
    later = ecg_chunks(1, start=25)
    slow = [WaveformChunk(channel="ecg", rate=125, start_time=at(26), samples=np.ones(125), source="sim")]
    store.add_waveforms(sid, later + slow)
    store.flush_waveforms()
    blocks = waveform_rows(db)
    assert [(round(t0 - T0.timestamp(), 3), rate, n) for _, t0, rate, n in blocks] == [
        (0.0, 250, 2000), (8.0, 250, 2000), (16.0, 250, 1000), (25.0, 250, 250), (26.0, 125, 125)]
    assert waveform_rows(db, "waveform_pending") == []
    part = store.waveform(sid, "ecg", at(24.5), at(26.5))
    np.testing.assert_array_equal(part.values[:250], np.concatenate([c.samples for c in later]))
    assert len(part.t) == 250 + 63 and np.all(np.diff(part.t) > 0)
    assert store.waveform_channels(sid) == ["ecg"]
    assert len(store.waveform(sid, "pleth", at(0), at(30)).t) == 0


def test_waveform_minmax_decimation_matches_numpy(store):
    sid = new_session(store)
    chunks = ecg_chunks(30, seed=3)
    for i in range(300, 310):  # a 0.4 s probe-off gap
        chunks[i] = chunks[i].model_copy(update={"samples": np.full(10, np.nan, dtype=np.float32)})
    store.add_waveforms(sid, chunks)
    all_t = T0.timestamp() + np.arange(7500) / 250
    all_v = np.concatenate([c.samples for c in chunks])
    start, end, points = at(3.0013), at(21.7), 300
    w = store.waveform(sid, "ecg", start, end, max_points=points)
    assert w.decimated and len(w.t) == len(w.min) == len(w.max) == points
    s, e = start.timestamp(), end.timestamp()
    inside = (all_t >= s) & (all_t < e)
    bins = ((all_t[inside] - s) / ((e - s) / points)).astype(int)
    vals = all_v[inside]
    for b in range(points):
        sel = vals[bins == b]
        if np.all(np.isnan(sel)):
            assert np.isnan(w.min[b]) and np.isnan(w.max[b])
        else:
            assert w.min[b] == np.nanmin(sel) and w.max[b] == np.nanmax(sel)
    assert np.isnan(w.min).sum() >= 1  # the 0.4 s gap fills whole 62 ms bins
    np.testing.assert_allclose(w.t, s + (np.arange(points) + 0.5) * (e - s) / points)
    few = store.waveform(sid, "ecg", at(1), at(2), max_points=1000)  # fewer samples than points: raw
    assert not few.decimated and len(few.t) == 250


def test_waveform_range_reads_only_overlapping_blocks(store, monkeypatch):
    sid = new_session(store)
    store.add_waveforms(sid, ecg_chunks(60))
    decoded = []
    real = store_codec.decode_samples
    monkeypatch.setattr(store_codec, "decode_samples", lambda *a: decoded.append(a[1]) or real(*a))
    w = store.waveform(sid, "ecg", at(17), at(18), max_points=10)
    assert len(decoded) == 1 and w.decimated  # one 8 s block covers 16..24 s


def test_pending_waveform_block_survives_a_crash(store, db, tmp_path):
    sid = new_session(store)
    chunks = ecg_chunks(5)  # less than a block: only in waveform_pending
    store.add_waveforms(sid, chunks)
    crashed = tmp_path / "crashed.sqlite"
    dst = sqlite3.connect(crashed)
    store._conn.backup(dst)  # the committed state, as a crash would leave it
    dst.close()
    with SessionStore(crashed) as s:
        assert waveform_rows(crashed, "waveform_pending") == []
        assert [n for *_, n in waveform_rows(crashed)] == [1250]
        np.testing.assert_array_equal(s.waveform(sid, "ecg", at(0), at(10)).values,
                                      np.concatenate([c.samples for c in chunks]))


# ------------------------------------------------------------------------ entries, amendments
def test_entries_amendments_and_effective_view(store):
    sid = new_session(store)
    e1 = store.add_entry(sid, "assessment", at(600), "moaas", {"score": 3}, "nurse1")
    e2 = store.add_entry(sid, "event", at(700), "nausea", {"severity": "mild"}, "nurse1")
    with pytest.raises(ValueError, match="reason"):
        store.add_entry(sid, "assessment", at(600), "moaas", {"score": 4}, "nurse1", amends=e1)
    with pytest.raises(ValueError, match="reason"):
        store.add_entry(sid, "assessment", at(600), "moaas", {"score": 4}, "nurse1", amends=e1, reason="  ")
    with pytest.raises(ValueError, match="table_kind"):
        store.add_entry(sid, "event", at(600), "moaas", {"score": 4}, "nurse1", amends=e1, reason="typo")
    with pytest.raises(NotFoundError):
        store.add_entry(sid, "assessment", at(600), "moaas", {}, "nurse1", amends=999, reason="typo")
    a1 = store.add_entry(sid, "assessment", at(600), "moaas", {"score": 4}, "nurse2", amends=e1,
                         reason="scored the wrong patient row")
    with pytest.raises(StoreError, match=f"already amended by entry {a1}"):
        store.add_entry(sid, "assessment", at(600), "moaas", {"score": 5}, "nurse1", amends=e1, reason="again")
    everything = store.entries(sid)
    assert [e.id for e in everything] == [e1, a1, e2]
    original, amendment = everything[0], everything[1]
    assert (original.amended_by, original.is_current, original.payload) == (a1, False, {"score": 3})
    assert (amendment.amends, amendment.reason, amendment.user, amendment.is_amendment) == (
        e1, "scored the wrong patient row", "nurse2", True)
    assert amendment.recorded_at > original.recorded_at
    assert [e.id for e in store.effective_entries(sid)] == [a1, e2]
    assert [e.id for e in store.entries(sid, "event")] == [e2]
    assert [e.id for e in store.entries(sid, start=at(650), end=at(701))] == [e2]
    close(store, sid)
    with pytest.raises(ReadOnlyError):
        store.add_entry(sid, "note", at(800), "note", {"text": "late"}, "nurse1")
    with pytest.raises(ValueError, match="reason"):
        store.add_entry(sid, "event", at(700), "nausea", {"severity": "moderate"}, "nurse1", amends=e2)
    a2 = store.add_entry(sid, "event", at(700), "nausea", {"severity": "moderate"}, "nurse1", amends=e2,
                         reason="charted at review")
    assert [e.id for e in store.effective_entries(sid)] == [a1, a2]
    assert [e.id for e in store.entry_history(e2)] == [e2, a2]
    late = store.add_entry(sid, "assessment", at(1), "pain_nrs", {"score": 2}, "nurse1", amends=a1, reason="r")
    assert [e.id for e in store.entries(sid)][0] == late
    assert [e.id for e in store.entries(sid, order="recorded")] == [e1, e2, a1, a2, late]
    assert [r.action for r in store.audit_rows(sid)][-1] == "entry_amended"
    with pytest.raises(ValueError, match="JSON"):
        store.add_entry(sid, "event", at(1), "x", {"bad": object()}, "nurse1", amends=a2, reason="r")


# ------------------------------------------------------------------------------------ alarms
def test_alarms_round_trip(store, db):
    sid = new_session(store)
    a = store.alarm_started(sid, condition="hr_high", kind="physiological", priority="medium", started_at=at(100),
                            limit=120, value=131, message="HR 131 > 120")
    b = store.alarm_started(sid, condition="sensor_off", kind="technical", priority="MEDIUM", started_at=at(500),
                            limit=None, value=None, message="SpO2 sensor off")
    store.alarm_action(sid, alarm_id=a, at=at(110), action="acknowledge", user="nurse1")
    store.alarm_escalated(a, "HIGH", at(400))
    store.alarm_escalated(a, "LOW", at(410))  # never lowers max_priority
    store.alarm_action(sid, alarm_id=None, at=at(420), action="audio_pause", user="nurse1", detail="120 s")
    store.alarm_ended(a, at(450))
    with pytest.raises(StoreError, match="already ended"):
        store.alarm_ended(a, at(460))
    with pytest.raises(ValueError):
        store.alarm_started(sid, condition="x", kind="physio", priority="HIGH", started_at=at(1), limit=None,
                            value=None, message="")
    with pytest.raises(ValueError):
        store.alarm_action(sid, alarm_id=a, at=at(1), action="silence", user="nurse1")
    rows = store.alarms(sid)
    assert [r.id for r in rows] == [a, b]
    first = rows[0]
    assert (first.condition, first.kind, first.priority, first.max_priority, first.started_at, first.ended_at,
            first.limit, first.value, first.message) == ("hr_high", "physiological", "MEDIUM", "HIGH", at(100),
                                                         at(450), 120, 131, "HR 131 > 120")
    assert [(x.action, x.user, x.detail) for x in first.actions] == [
        ("acknowledge", "nurse1", ""), ("escalate", None, "HIGH"), ("escalate", None, "LOW")]
    assert [r.id for r in store.alarms(sid, start=at(460))] == [b]  # a ended before 460
    assert [r.id for r in store.alarms(sid, end=at(500))] == [a]
    assert [x.action for x in store.alarm_actions(sid)][-1] == "audio_pause"
    assert [r.action for r in store.audit_rows(sid)][-2:] == ["alarm_acknowledge", "alarm_audio_pause"]
    assert store.get_session(sid).n_alarms == 2
    store.close()
    c = raw(db)
    for sql, message in (("UPDATE alarms SET condition = 'x' WHERE id = 1", "append-only"),
                         ("UPDATE alarms SET ended_at = 999999 WHERE id = 1", "set once"),
                         ("UPDATE alarms SET max_priority = 'LOW' WHERE id = 1", "only rise"),
                         ("DELETE FROM alarms WHERE id = 2", "cannot be deleted")):
        with pytest.raises(sqlite3.IntegrityError, match=message):
            c.execute(sql)
    c.execute("UPDATE alarms SET max_priority = 'HIGH' WHERE id = 2")  # the allowed updates
    c.execute("UPDATE alarms SET ended_at = 600 + started_at WHERE id = 2")


# ---------------------------------------------------------------------- append-only, audit
def populate(s: SessionStore) -> int:
    s.add_user("nurse1", "Nora Nurse", "nurse", None, by=None)
    sid = new_session(s)
    s.add_observations(sid, [numeric("hr", 70, "sim", at(1))])
    s.add_waveforms(sid, ecg_chunks(9))
    s.add_conditions(sid, [DeviceCondition(code="artifact", active=True, source="sim", time=at(2))])
    s.add_entry(sid, "event", at(3), "nausea", {}, "nurse1")
    aid = s.alarm_started(sid, condition="hr_high", kind="physiological", priority="HIGH", started_at=at(4),
                          limit=150, value=160, message="")
    s.alarm_action(sid, alarm_id=aid, at=at(5), action="acknowledge", user="nurse1")
    s.add_gap(sid, at(6), at(7), "test")
    s.save_settings("{}", by="admin")
    return sid


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("populated") / "vigil.sqlite"
    with SessionStore(path) as s:
        populate(s)
    return path


@pytest.mark.parametrize("table", ["observations", "waveforms", "conditions", "entries", "audit", "alarm_actions",
                                   "gaps", "settings"])
def test_append_only_tables_refuse_update_and_delete(populated, db, table):
    shutil.copy(populated, db)
    c = raw(db)
    assert c.execute(f"SELECT count(*) FROM {table}").fetchone()[0] >= 1
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        c.execute(f"UPDATE {table} SET rowid = rowid")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        c.execute(f"DELETE FROM {table}")
    for other in ("sessions", "users"):
        with pytest.raises(sqlite3.IntegrityError, match="cannot be deleted"):
            c.execute(f"DELETE FROM {other}")


def test_audit_chain_verifies_and_detects_tampering(db, tmp_path):
    with SessionStore(db) as s:
        s.add_user("admin", "Ada", "admin", None, by=None)
        populate(s)
        check = s.verify_audit()
        n = check.rows
        assert check.ok and n >= 6 and check.first_bad_seq is None
        assert s.audit("admin", "export_printed", None, {"pages": 3}) == n + 1
    c = raw(db)
    with pytest.raises(sqlite3.IntegrityError, match="hash chain"):  # raw appends must extend the chain
        c.execute("INSERT INTO audit (seq, t, action, payload_json, prev_hash, hash) VALUES (99, 0, 'x', '{}', '', '')")
    c.close()
    tampered = tmp_path / "tampered.sqlite"
    shutil.copy(db, tampered)
    c = raw(tampered)
    c.execute("DROP TRIGGER audit_no_update")
    c.execute("""UPDATE audit SET payload_json = '{"pages":1}' WHERE seq = ?""", (n + 1,))
    c.execute("UPDATE audit SET user_login = 'mallory' WHERE seq = 3")
    c.close()
    with SessionStore(tampered, readonly=True) as r:
        check = r.verify_audit()
        assert (check.ok, check.first_bad_seq) == (False, 3) and "hash" in check.problem
    with SessionStore(tampered) as s:  # reopening restores the dropped trigger and says so
        rows = s.audit_rows()
        assert rows[-1].action == "schema_triggers_restored" and rows[-1].payload == {"triggers": ["audit_no_update"]}
        assert s.verify_audit().first_bad_seq == 3
    with pytest.raises(sqlite3.IntegrityError):
        raw(tampered).execute("UPDATE audit SET user_login = 'x'")


# ------------------------------------------------------------------------- transactions, threads
def test_transaction_is_atomic_and_visible_to_its_thread(store):
    sid = new_session(store)
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add_observations(sid, [numeric("hr", 70, "sim", at(1))])
            store.add_waveforms(sid, ecg_chunks(3))
            store.set_phase(sid, "infusion", "nurse1", at(2))
            assert store.get_session(sid).phase == "infusion"  # own uncommitted write
            seen = []
            t = threading.Thread(target=lambda: seen.append(store.get_session(sid).phase))
            t.start()
            t.join()
            assert seen == ["baseline"]  # other threads see the last commit
            raise RuntimeError("abandon")
    rec = store.get_session(sid)
    assert (rec.phase, rec.n_observations) == ("baseline", 0)
    assert store._pending == {}  # in-memory waveform state rolled back too
    store.add_waveforms(sid, ecg_chunks(3))
    assert len(store.waveform(sid, "ecg", at(0), at(10)).t) == 750


# ---------------------------------------------------------------------------------- StoreWriter
def test_commit_policy():
    due = store_writer._commit_due
    assert not due(10.0, None, True, False, 1.0, 0.5)
    assert due(10.0, None, True, True, 1.0, 0.5)  # a flush with nothing queued
    assert not due(10.4, 10.0, True, False, 1.0, 0.5)
    assert due(10.5, 10.0, True, False, 1.0, 0.5)  # drained after 0.5 s
    assert not due(10.9, 10.0, False, False, 1.0, 0.5)  # still busy
    assert due(11.0, 10.0, False, False, 1.0, 0.5)  # at least once a second
    assert due(10.1, 10.0, True, True, 1.0, 0.5)  # a staff action commits when drained


@pytest.mark.parametrize("options", [{"tail": False, "commit_interval": 0.2, "idle_commit": 0.1},
                                     {"data_commit_interval": 0.4, "commit_interval": 0.2, "idle_commit": 0.1}])
def test_writer_commits_without_being_asked(db, options):
    committed = threading.Event()
    with SessionStore(db) as s:
        sid = new_session(s)
        w = StoreWriter(s, on_commit=lambda n: committed.set(), **options)
        w.start()
        w.put_observations(sid, [numeric("hr", 70 + i, "sim", at(i)) for i in range(5)])
        w.put_waveforms(sid, ecg_chunks(1))
        assert committed.wait(10)
        with raw(db) as c:  # another connection sees it: it is committed
            assert c.execute("SELECT count(*) FROM observations").fetchone()[0] == 5
            assert c.execute("SELECT n FROM waveform_pending").fetchone()[0] == 250
        assert w.stop(10)
        assert waveform_rows(db, "waveform_pending") == [] and [r[3] for r in waveform_rows(db)] == [250]


def test_writer_keeps_data_through_failures(db):
    class Flaky(SessionStore):
        failures = 3

        def add_observations(self, session_id, observations):
            if Flaky.failures:
                Flaky.failures -= 1
                raise sqlite3.OperationalError("database or disk is full")
            return super().add_observations(session_id, observations)

    errors, recovered = [], []
    with Flaky(db) as s:
        sid = new_session(s)
        w = StoreWriter(s, retry_initial=0.001, retry_max=0.01, on_error=errors.append,
                        on_recovered=lambda: recovered.append(True))
        w.start()
        for i in range(20):  # waveforms first: a failed attempt must also undo the in-memory blocks
            w.put_waveforms(sid, ecg_chunks(0.4, start=i * 0.4))
            w.put_observations(sid, [numeric("hr", 60 + i, "sim", at(i))])
        entry = w.put_call(s.add_entry, sid, "event", at(1), "nausea", {}, "nurse1")
        assert w.flush(10)
        assert len(errors) == 3 and all("disk is full" in str(e) for e in errors) and recovered == [True]
        assert not w.failing and entry.result(0) >= 1
        t, v = s.numerics(sid, "hr")
        np.testing.assert_array_equal(v, 60 + np.arange(20))  # all there, none doubled
        assert s.get_session(sid).n_observations == 20
        assert len(s.waveform(sid, "ecg", at(0), at(10)).t) == 2000
        assert w.stop(10)


def test_writer_stop_flushes_everything_and_reports_refusals(db):
    rejected = []
    with SessionStore(db) as s:
        sid = new_session(s)
        done = new_session(s)
        close(s, done)
        w = StoreWriter(s, commit_interval=60, idle_commit=60, on_rejected=lambda kind, exc: rejected.append(kind))
        w.start()
        for i in range(300):
            w.put_observations(sid, [numeric("spo2", 97, "sim", at(i))])
        w.put_waveforms(sid, ecg_chunks(10))
        w.put_conditions(sid, [DeviceCondition(code="artifact", active=True, source="sim", time=at(3))])
        w.put_observations(done, [numeric("hr", 70, "sim", at(1))])  # closed: refused, not retried
        w.put_observations(sid, [numeric("spo2", 96, "sim", at(300))])
        w.put_observations(sid, ["garbage"])  # refused alone, not with its neighbours
        w.put_observations(sid, [numeric("spo2", 95, "sim", at(301))])
        bad = w.put_call(s.add_entry, sid, "nonsense", at(1), "x", {}, "nurse1")
        assert w.stop(10)
        with pytest.raises(ValueError):
            bad.result(0)
        with pytest.raises(StoreError, match="stopped"):
            w.put_observations(sid, [])
        assert rejected == ["obs", "obs"]
    with SessionStore(db, readonly=True) as r:
        assert r.get_session(sid).n_observations == 302
        assert len(r.conditions(sid)) == 1
        assert len(r.waveform(sid, "ecg", at(0), at(20)).t) == 2500
    assert waveform_rows(db, "waveform_pending") == []


def test_writer_waits_out_a_locked_database(db):
    failed, recovered = threading.Event(), threading.Event()
    with SessionStore(db, busy_timeout=0.01) as s:
        sid = new_session(s)
        blocker = raw(db)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        w = StoreWriter(s, retry_initial=0.01, retry_max=0.05, on_error=lambda exc: failed.set(),
                        on_recovered=recovered.set)
        w.start()
        w.put_observations(sid, [numeric("hr", 70, "sim", at(1))])
        future = w.put_call(s.set_phase, sid, "infusion", "nurse1", at(2))
        assert failed.wait(10) and w.failing and "locked" in str(w.last_error)
        w.put_observations(sid, [numeric("hr", 71, "sim", at(2))])  # still accepted meanwhile
        assert not future.done()
        blocker.execute("ROLLBACK")
        assert w.flush(10) and recovered.is_set() and not w.failing
        future.result(0)
        assert s.get_session(sid).phase == "infusion"
        np.testing.assert_array_equal(s.numerics(sid, "hr")[1], [70, 71])
        assert w.stop(10)
        blocker.close()


def test_version_1_file_migrates_and_takes_late_entries_on_closed_sessions(db, monkeypatch):
    monkeypatch.setattr(store_db, "MIGRATIONS", store_mod.MIGRATIONS[:1])
    monkeypatch.setattr(store_db, "_CURRENT_TRIGGERS", store_schema._v1_triggers)
    with SessionStore(db) as s:
        sid = new_session(s)
        s.close_session(sid, user="ann", signed_name="Ann Example", meaning="reviewed and closed", at=T0 + timedelta(hours=2))
    with raw(db) as c:  # version 1's trigger refuses any non-amendment on a closed session
        assert "only amendments (with a reason)" in c.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'entries_closed_session'").fetchone()[0]
    monkeypatch.undo()
    with SessionStore(db) as s:   # migrated to the current version on opening
        entry_id = s.add_entry(sid, "note", T0 + timedelta(minutes=30), "note", {"text": "phoned the escort"},
                               "ann", reason="charted at review")
        [entry] = s.entries(sid)
        assert entry.id == entry_id and entry.is_late and not entry.is_amendment
        with pytest.raises(ReadOnlyError):
            s.add_entry(sid, "note", T0, "note", {"text": "no reason"}, "ann")
        with pytest.raises(ValueError, match="late entry needs a non-empty reason"):
            s.add_entry(sid, "note", T0, "note", {"text": "x"}, "ann", reason="  ")
        assert any(r.action == "late_entry_added" for r in s.audit_rows(sid)) and s.verify_audit().ok
    with raw(db) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == \
            str(len(store_mod.MIGRATIONS))


def test_closing_the_store_while_another_thread_reads_never_crashes(tmp_path):
    """A review window closed while its reader thread was in a query, then the store closed (the
    program ending): SQLite freed the connection under the query and the process died (SIGSEGV).
    Now closing interrupts a read in progress, waits for it to leave, and later reads are refused."""
    from monitor.export.synthetic import build_long_session

    path = tmp_path / "long.sqlite"
    with SessionStore(path) as writer:
        sid = build_long_session(writer, hours=2, waves=False, events=10)
    for attempt in range(12):
        store = SessionStore(path, readonly=True)
        reading, outcome = threading.Event(), []

        def read() -> None:
            try:
                while True:
                    reading.set()
                    store.numerics(sid, "hr", with_quality=True)
            except (StoreError, sqlite3.Error) as exc:
                outcome.append(exc)

        thread = threading.Thread(target=read)
        thread.start()
        assert reading.wait(10)
        time.sleep(attempt % 8 / 1000)   # the close lands at a different point of the read each time
        store.close()
        thread.join(10)
        assert not thread.is_alive() and len(outcome) == 1
        with pytest.raises(StoreError, match="closed"):
            store.numerics(sid, "hr")


def test_the_seal_reads_a_long_session_in_time_order_without_holding_its_rows(db, monkeypatch):
    """The seal's observations are in time order, rows of the same time in arrival order (also when
    they arrived out of order). It streams them: reading them all to sort held 143 MB at 24 h."""
    import tracemalloc

    from monitor.store import seal

    with SessionStore(db) as s:
        sid = new_session(s)
        times = [i // 2 for i in range(40_000)]   # two vitals a second …
        times[100:110] = [3] * 10                 # … and ten late arrivals of second 3, after later ones
        s.add_observations(sid, [numeric("hr" if i % 2 else "spo2", 50 + i % 50, "sim", at(t))
                                 for i, t in enumerate(times)])
    conn = sqlite3.connect(db)
    arrived = conn.execute("SELECT t, vital, value, quality, device_time, unit, 'sim' FROM observations "
                           "WHERE session_id = ? ORDER BY rowid", (sid,)).fetchall()
    tracemalloc.start()
    first = seal.content_digest(conn, sid)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    fed: list = []
    add_all = seal.ContentDigest.add_all

    def keep(self, rows):
        rows = list(rows)
        if self._part == "observations":
            fed.extend(tuple(r) for r in rows)
        add_all(self, rows)
    monkeypatch.setattr(seal.ContentDigest, "add_all", keep)
    assert seal.content_digest(conn, sid) == first
    conn.close()
    assert fed == sorted(arrived, key=lambda r: r[0])  # a stable sort: arrival order within a time
    # a batch of 5 000 rows at a time (all 40 000 held to sort them: 11.0 MB)
    assert peak < 5_000_000, f"{peak} bytes held"
