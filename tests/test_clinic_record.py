"""The clinic record (issue 15): every chair's sessions replicated into a real PostgreSQL on loopback.

Proven here: three chairs replicate concurrently with nothing lost or duplicated; the server stopped
mid-session and restarted, every observation arrives, in order; re-sending is harmless and a new
worker resumes from the server's watermarks; tampered rows are flagged (kept, never merged
silently); the replication role cannot update or delete, the review role cannot write; a session
exported from the clinic record is byte for byte the archive exported from its chair; a chair whose
database was replaced by an older copy stops replicating; the reader satisfies the store's read
protocol. The server is a temporary cluster (tests/postgres_server.py).
"""

from __future__ import annotations

import inspect
import io
import json
import shutil
import sqlite3
import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import psycopg
import pytest

from monitor.cli import run_cli
from monitor.clinic.replication import ReplicationWorker, Replicator
from monitor.export import export_session
from monitor.store import SessionStore
from monitor.store.postgres import (
    REPLICATION_ROLE,
    REVIEW_ROLE,
    ClinicRecordError,
    ClinicWriter,
    PostgresReader,
    check_schema,
    connect,
    migrations,
    setup,
)
from monitor.store.reader import ChairSessionSummary, StoreReader
from tests.clinic_chairs import T0, Chair
from tests.postgres_server import require_server

#: Starts a real server on loopback (make test-fast leaves it out).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg():
    server = require_server()
    yield server
    server.destroy()


@pytest.fixture
def clinic(pg):
    """A fresh clinic record: URLs as the administrator, a chair's replication login and a review login."""
    db = pg.new_database()
    setup(pg.url(db))
    pg.add_login("chair_login", REPLICATION_ROLE)
    pg.add_login("review_login", REVIEW_ROLE)
    return SimpleNamespace(admin=pg.url(db), replication=pg.url(db, "chair_login"), review=pg.url(db, "review_login"))


def replicate_once(store: SessionStore, url: str, name: str, *, batch_rows: int = 20_000) -> Replicator:
    """Copy everything the chair holds now, step by step, without a thread."""
    ro = SessionStore(store.path, readonly=True)
    replicator = Replicator(ro, ClinicWriter(url), chair_uid=store.chair_uid(), chair_name=name, batch_rows=batch_rows)
    replicator.connect()
    while not replicator.step()[0]:
        pass
    replicator.writer.close()
    ro.close()
    return replicator


def clinic_id(reader: PostgresReader, chair: str, chair_sid: int) -> int:
    return next(s.id for s in reader.list_sessions(chair=chair) if s.chair_session_id == chair_sid)


def assert_same_session(store: SessionStore, sid: int, reader: PostgresReader, clinic_sid: int) -> None:
    """The clinic record holds the chair's session row for row (through both readers)."""
    assert reader.raw_tables(clinic_sid) == store.raw_tables(sid)
    mine, theirs = store.observation_rows(sid), reader.observation_rows(clinic_sid)
    assert theirs.t.tobytes() == mine.t.tobytes()
    for field in ("vital", "value", "quality", "device_time", "unit", "source"):
        assert getattr(theirs, field) == getattr(mine, field), field
    assert reader.waveform_blocks(clinic_sid) == store.waveform_blocks(sid)
    origin = reader.session_origin(clinic_sid)
    assert (origin.chair_uid, origin.session_id) == (store.chair_uid(), sid)


def chair_counts(admin_url: str, chair_uid: str) -> dict[str, int]:
    with connect(admin_url) as conn:
        chair_id = conn.execute("SELECT id FROM vigil.chairs WHERE uid = %s", (chair_uid,)).fetchone()[0]
        return {t: conn.execute(f"SELECT count(*) FROM vigil.{t} WHERE chair_id = %s", (chair_id,)).fetchone()[0]
                for t in ("observations", "waveforms", "entries", "alarms", "alarm_actions", "conditions", "gaps",
                          "audit")}


# ------------------------------------------------------------------------------------------ schema
def test_setup_makes_the_schema_once_and_notices_a_migration_changed_by_hand(clinic):
    assert setup(clinic.admin) == len(migrations()) == 1  # again: nothing to do
    with connect(clinic.admin, autocommit=True) as conn:
        assert check_schema(conn) == 1
        conn.execute("UPDATE vigil.schema_migrations SET sha256 = 'edited' WHERE version = 1")
        with pytest.raises(ClinicRecordError, match="changed by hand"):
            check_schema(conn)
        conn.execute("INSERT INTO vigil.schema_migrations (version, name, sha256) VALUES (2, 'future', 'x')")
        with pytest.raises(ClinicRecordError, match="newer Vigil"):
            check_schema(conn)


def test_a_database_without_the_schema_is_refused_with_what_to_do(pg):
    url = pg.url(pg.new_database())
    with pytest.raises(ClinicRecordError, match="clinic-setup"):
        PostgresReader(url)
    out, err = io.StringIO(), io.StringIO()
    assert run_cli(["clinic-setup", url], out=out, err=err) == 0
    assert "schema version 1" in out.getvalue()
    PostgresReader(url).close()


# ------------------------------------------------------------------------------------------ replication
def test_three_chairs_replicate_concurrently_nothing_lost_or_duplicated(tmp_path, clinic):
    chairs = [Chair(tmp_path, f"chair-{n}") for n in (1, 2, 3)]
    sessions = [c.open_session(T0 + timedelta(minutes=n)) for n, c in enumerate(chairs)]
    assert sessions == [1, 1, 1]  # every chair numbers its own sessions: the clinic record must not mix them
    workers = [ReplicationWorker(c.store, clinic.replication, chair_name=c.name, poll_s=0.2, batch_rows=500)
               for c in chairs]
    for w in workers:
        w.start()
    for c, sid, n in zip(chairs, sessions, (1, 2, 3)):
        c.start_recording(sid, T0 + timedelta(minutes=n), 90, pace=0.01)
    reader = PostgresReader(clinic.review)
    try:
        # While they record, the sessions are in the clinic record, open, with their chairs' names.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = reader.list_sessions()
            if len(listed) == 3 and all(s.n_observations for s in listed):
                break
            time.sleep(0.1)
        assert sorted(s.chair for s in listed) == ["chair-1", "chair-2", "chair-3"]
        assert {s.status for s in listed} == {"open"} and not any(s.complete for s in listed)
        assert len({s.id for s in listed}) == 3
        assert any(c.thread.is_alive() for c in chairs)  # copied while still being recorded
        for c, sid in zip(chairs, sessions):
            c.join()
            c.close_session(sid, T0 + timedelta(minutes=10))
        for w in workers:
            assert w.wait_current(60), w.status
        listed = reader.list_sessions()
        assert {s.status for s in listed} == {"closed"} and all(s.complete and s.flag is None for s in listed)
        assert reader.chairs() == ["chair-1", "chair-2", "chair-3"]
        for c, sid in zip(chairs, sessions):
            assert_same_session(c.store, sid, reader, clinic_id(reader, c.name, sid))
            counts = chair_counts(clinic.admin, c.store.chair_uid())
            assert counts["observations"] == len(c.store.observation_rows(sid).t) == 270
            assert counts["waveforms"] == len(c.store.waveform_blocks(sid))
            assert counts["audit"] == len(c.store.audit_rows())
    finally:
        for w in workers:
            w.stop()
        reader.close()


def _stop_server_mid_session(tmp_path, pg, clinic, outage_s: float, *, scale: float = 1.0) -> None:
    """The clinic record stopped for ``outage_s`` seconds while the chair records (a second of
    session, then 0.02 s of rest) and the worker retries (its back-off capped at 2 s). ``scale`` > 1
    runs the same outage on a faster clock: the outage, the rest and the cap divided by ``scale``, so
    the worker makes as many attempts as in ``outage_s`` real seconds while the chair piles up
    about as much (as fast as the disk takes it: 3,200 seconds of session in 30 s, where the
    real two minutes piled up about 4,000)."""
    chair = Chair(tmp_path, "chair-outage")
    sid = chair.open_session()
    worker = ReplicationWorker(chair.store, clinic.replication, chair_name=chair.name, poll_s=0.2,
                               retry_max_s=2 / scale)
    worker.start()
    outage_s /= scale
    try:
        chair.record(sid, T0, 20)
        assert worker.wait_current(30)
        stop = threading.Event()
        chair.start_recording(sid, T0, 10_000, pace=0.02 / scale, offset=20, stop=stop)  # records on through the outage
        pg.stop()
        down = time.monotonic()
        time.sleep(outage_s)
        written_while_down = sum(1 for t in chair.written_at if t > down)
        assert worker.status.state == "offline"
        pg.start()
        stop.set()
        chair.join()
        chair.close_session(sid, T0 + timedelta(hours=3))
        assert worker.wait_current(60), worker.status
    finally:
        worker.stop()
    assert written_while_down > 0  # the chair recorded on while the clinic record was down
    with PostgresReader(clinic.review) as reader:
        clinic_sid = clinic_id(reader, chair.name, sid)
        assert_same_session(chair.store, sid, reader, clinic_sid)
        assert reader.list_sessions()[0].complete
    with connect(clinic.admin) as conn:  # every observation, each once, in the order recorded
        rows = conn.execute("SELECT chair_rowid, t FROM vigil.observations WHERE session_id = %s ORDER BY chair_rowid",
                            (clinic_sid,)).fetchall()
    ids = [r[0] for r in rows]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) == chair.store.get_session(sid).n_observations
    assert all(a[1] <= b[1] for a, b in zip(rows, rows[1:]))


def test_the_clinic_record_stopped_mid_session_gets_every_observation_in_order(tmp_path, pg, clinic):
    _stop_server_mid_session(tmp_path, pg, clinic, outage_s=3)


@pytest.mark.slow
def test_two_minutes_without_the_clinic_record_mid_session(tmp_path, pg, clinic):
    """Two minutes as the worker and the chair live them (about 60 attempts at the 2 s cap, thousands
    of seconds of session piled up), on a clock 4× faster: 30 s of real outage instead of 120."""
    _stop_server_mid_session(tmp_path, pg, clinic, outage_s=120, scale=4)


def test_resending_is_harmless_and_a_new_worker_resumes_from_the_server(tmp_path, clinic):
    chair = Chair(tmp_path, "chair-r")
    sid = chair.open_session()
    chair.record(sid, T0, 60)
    first = replicate_once(chair.store, clinic.replication, chair.name, batch_rows=40)
    # The same rows again, as a worker that lost its watermarks would send them: nothing changes.
    ro = SessionStore(chair.store.path, readonly=True)
    writer = ClinicWriter(clinic.replication)
    writer.open()
    state = writer.chair_state(first.chair_id)
    stale = {k: 0 for k in state.marks}
    state.marks = dict(stale)
    state.tip = None
    before = chair_counts(clinic.admin, chair.store.chair_uid())
    writer.apply(state, ro.changes(stale, watch=[sid], limit=10_000))
    assert chair_counts(clinic.admin, chair.store.chair_uid()) == before
    writer.close()
    ro.close()
    # More recorded; a new worker (a restarted Vigil) carries on from what the server holds.
    chair.record(sid, T0, 30, offset=60)
    chair.close_session(sid, T0 + timedelta(minutes=5))
    replicate_once(chair.store, clinic.replication, chair.name, batch_rows=40)
    with PostgresReader(clinic.review) as reader:
        assert_same_session(chair.store, sid, reader, clinic_id(reader, chair.name, sid))
        assert reader.list_sessions()[0].flag is None


def test_late_entries_after_sealing_reach_the_clinic_record(tmp_path, clinic):
    chair = Chair(tmp_path, "chair-late")
    sid = chair.open_session()
    chair.record(sid, T0, 30)
    chair.close_session(sid, T0 + timedelta(minutes=2))
    replicate_once(chair.store, clinic.replication, chair.name)
    chair.store.add_entry(sid, "note", T0 + timedelta(seconds=20), "note", {"type": "note", "text": "late"}, "nurse1",
                          reason="remembered after the session")
    replicate_once(chair.store, clinic.replication, chair.name)
    with PostgresReader(clinic.review) as reader:
        clinic_sid = clinic_id(reader, chair.name, sid)
        assert [e.reason for e in reader.entries(clinic_sid) if e.is_late] == ["remembered after the session"]
        assert_same_session(chair.store, sid, reader, clinic_sid)
    # Data for a sealed session is refused by the server itself.
    with connect(clinic.admin) as conn, pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="sealed"):
        conn.execute("INSERT INTO vigil.gaps (chair_id, chair_gap_id, session_id, start_t, end_t, reason) "
                     "SELECT chair_id, 999, id, 1, 2, 'x' FROM vigil.sessions")


def test_the_server_refuses_data_naming_another_chairs_session_or_no_source(tmp_path, clinic):
    for name in ("chair-1", "chair-2"):
        chair = Chair(tmp_path, name)
        chair.record(chair.open_session(), T0, 2)
        replicate_once(chair.store, clinic.replication, name)
    with connect(clinic.replication, autocommit=True) as conn:
        (one, s1), (_two, s2) = conn.execute("SELECT chair_id, id FROM vigil.sessions ORDER BY chair_id").fetchall()
        insert = ("INSERT INTO vigil.observations (chair_id, chair_rowid, session_id, t, vital, value, quality, "
                  "source_id) VALUES (%s, 999, %s, 1, 'hr', 60, 0, %s)")
        source = conn.execute("SELECT min(id) FROM vigil.sources").fetchone()[0]
        for args in ((one, s2, source), (one, 12345, source), (one, s1, 12345)):
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                conn.execute(insert, args)
        conn.execute(insert, (one, s1, source))  # its own session: taken


def test_an_open_session_shows_its_unfinished_waveform_block_until_it_is_finished(tmp_path, clinic):
    chair = Chair(tmp_path, "chair-w")
    sid = chair.open_session()
    chair.record(sid, T0, 11)  # 8 s blocks: one finished, one unfinished
    assert [b.pending for b in chair.store.waveform_blocks(sid)] == [False, True]
    replicate_once(chair.store, clinic.replication, chair.name)
    with PostgresReader(clinic.review) as reader:
        clinic_sid = clinic_id(reader, chair.name, sid)
        assert reader.waveform_blocks(clinic_sid) == chair.store.waveform_blocks(sid)
        start, end = T0 + timedelta(seconds=2), T0 + timedelta(seconds=11)
        for points in (None, 300):
            mine = chair.store.waveform(sid, "ecg", start, end, points)
            theirs = reader.waveform(clinic_sid, "ecg", start, end, points)
            assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(mine, theirs))
        assert reader.last_data_time(clinic_sid) == chair.store.last_data_time(sid)
        assert reader.waveform_channels(clinic_sid) == ["ecg"]
        chair.record(sid, T0, 6, offset=11)  # the unfinished block is finished at the chair
        replicate_once(chair.store, clinic.replication, chair.name)
        assert reader.waveform_blocks(clinic_sid) == chair.store.waveform_blocks(sid)
        chair.close_session(sid, T0 + timedelta(seconds=30))
        replicate_once(chair.store, clinic.replication, chair.name)
        assert reader.waveform_blocks(clinic_sid) == chair.store.waveform_blocks(sid)
        assert not any(b.pending for b in reader.waveform_blocks(clinic_sid))


# ------------------------------------------------------------------------------------------ integrity
def _tamper(path, *statements):
    conn = sqlite3.connect(path, isolation_level=None)
    for sql in statements:
        conn.execute(sql)
    conn.close()


def test_tampered_rows_are_kept_and_flagged_never_merged_silently(tmp_path, clinic):
    chair = Chair(tmp_path, "chair-t")
    sids = []
    for n in range(4):
        sid = chair.open_session(T0 + timedelta(hours=n), patient=f"Patient {n}")
        chair.record(sid, T0 + timedelta(hours=n), 25)
        chair.close_session(sid, T0 + timedelta(hours=n, minutes=5))
        sids.append(sid)
    store, path = chair.store, chair.store.path
    entry_row = next(r for r in store.audit_rows(sids[0]) if r.action == "entry_added")
    note = next(e for e in store.entries(sids[1]) if e.kind == "note")
    lost = next(r for r in store.audit_rows(sids[3]) if r.action == "entry_added")
    store.close()
    _tamper(path,
            "DROP TRIGGER audit_no_update", "DROP TRIGGER entries_no_update", "DROP TRIGGER audit_no_delete",
            # session 1: an audit row's content edited
            f"UPDATE audit SET payload_json = replace(payload_json, 'note at', 'NOTE AT') WHERE seq = {entry_row.seq}",
            # session 2: a charted entry edited (its audit row intact)
            f"UPDATE entries SET payload_json = replace(payload_json, 'note at', 'edited') WHERE id = {note.id}",
            # session 4: an audit row deleted
            f"DELETE FROM audit WHERE seq = {lost.seq}")
    chair.store = SessionStore(path)
    replicate_once(chair.store, clinic.replication, chair.name)
    with PostgresReader(clinic.review) as reader:
        listed = {s.chair_session_id: s for s in reader.list_sessions()}
        assert len(listed) == 4 and all(s.complete for s in listed.values())  # kept
        assert "changed after it was written" in listed[sids[0]].flag
        assert f"entry {note.id} differs" in listed[sids[1]].flag and "payload" in listed[sids[1]].flag
        assert listed[sids[2]].flag is None
        # session 4: the chain has a hole (flagged on the chair: any session may have lost the row), and the
        # entry whose audit row went has none left
        flags = reader.integrity_flags()
        assert any(f[1] is None and f[2] == lost.seq + 1 and "missing" in f[3] for f in flags)
        assert f"entry {lost.payload['entry_id']} has no audit row" in listed[sids[3]].flag
        # what the chair holds now (tampered) is what the clinic record holds: kept, flagged
        assert_same_session(chair.store, sids[1], reader, listed[sids[1]].id)
    assert chair_counts(clinic.admin, chair.store.chair_uid())["audit"] == len(chair.store.audit_rows())  # all kept
    out = io.StringIO()
    assert run_cli(["sessions", "--db", clinic.review, "--json"], out=out, err=io.StringIO()) == 0
    assert sum(1 for line in out.getvalue().splitlines() if json.loads(line)["flag"]) == 3


def test_a_chair_restored_from_an_older_copy_stops_replicating(tmp_path, clinic):
    chair = Chair(tmp_path, "chair-d")
    chair.store.chair_uid()  # the chair has had its identity since it first ran with the clinic record
    sid = chair.open_session()
    chair.record(sid, T0, 10)
    backup = tmp_path / "backup.sqlite"
    src, dst = sqlite3.connect(chair.store.path), sqlite3.connect(backup)
    src.backup(dst)
    src.close()
    dst.close()
    chair.record(sid, T0, 10, offset=10)
    replicate_once(chair.store, clinic.replication, chair.name)
    chair.store.close()
    shutil.copy(backup, chair.store.path)  # the chair PC restored from last night's copy
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"{chair.name}.sqlite{suffix}").unlink(missing_ok=True)
    restored = SessionStore(chair.store.path)
    worker = ReplicationWorker(restored, clinic.replication, chair_name=chair.name, poll_s=0.2)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while worker.status.state != "diverged" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.status.state == "diverged" and "behind" in worker.status.detail
    finally:
        worker.stop()
    with PostgresReader(clinic.review) as reader:
        assert any("behind what the clinic record holds" in f[3] for f in reader.integrity_flags())
        assert reader.list_sessions()[0].n_observations == 60  # nothing was overwritten


# ------------------------------------------------------------------------------------------ roles
def test_the_replication_role_cannot_update_or_delete_and_the_review_role_cannot_write(tmp_path, clinic):
    chair = Chair(tmp_path, "chair-p")
    sid = chair.open_session()
    chair.record(sid, T0, 10)
    replicate_once(chair.store, clinic.replication, chair.name)
    with connect(clinic.replication, autocommit=True) as conn:
        for sql in ("UPDATE vigil.observations SET value = 0", "DELETE FROM vigil.observations",
                    "UPDATE vigil.audit SET payload_json = '{}'", "DELETE FROM vigil.entries",
                    "TRUNCATE vigil.waveforms", "UPDATE vigil.sessions SET patient_name = 'x'",
                    "DELETE FROM vigil.integrity_flags", "DELETE FROM vigil.session_progress",
                    "UPDATE vigil.chairs SET uid = gen_random_uuid()", "DELETE FROM vigil.waveform_tails"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        # What it may change only moves forward.
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="forward"):
            conn.execute("UPDATE vigil.session_progress SET n_observations = 0")
    with connect(clinic.admin, autocommit=True) as conn:  # not even the owner can change a recorded row
        for sql in ("UPDATE vigil.observations SET value = 0", "DELETE FROM vigil.audit",
                    "TRUNCATE vigil.entries CASCADE"):
            with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="append-only"):
                conn.execute(sql)
    with connect(clinic.review, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM vigil.observations").fetchone()[0] == 30
        for sql in ("INSERT INTO vigil.sources (name) VALUES ('x')", "UPDATE vigil.chairs SET name = 'x'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


# ------------------------------------------------------------------------------------------ reading
def test_the_store_and_the_clinic_record_reader_both_satisfy_the_read_protocol(tmp_path, clinic):
    store = SessionStore(tmp_path / "p.sqlite")
    reader = PostgresReader(clinic.review)
    try:
        members = [n for n in vars(StoreReader) if not n.startswith("_")]
        assert {"list_sessions", "observation_rows", "raw_tables", "waveform", "path", "readonly"} <= set(members)
        for backend in (store, reader):
            assert isinstance(backend, StoreReader)
            for name in members:
                want = getattr(StoreReader, name)
                if isinstance(want, property):
                    assert hasattr(backend, name), name
                    continue
                have = inspect.signature(getattr(backend, name))
                params = list(inspect.signature(want).parameters.values())[1:]  # without self
                got = list(have.parameters.values())
                assert [(p.name, p.kind, p.default) for p in got[:len(params)]] == \
                    [(p.name, p.kind, p.default) for p in params], (type(backend).__name__, name)
                assert all(p.default is not inspect.Parameter.empty for p in got[len(params):]), name
    finally:
        store.close()
        reader.close()


def test_reading_a_session_from_the_clinic_record_gives_what_the_chair_gives(tmp_path, clinic):
    chair = Chair(tmp_path, "chair-x")
    sid = chair.open_session()
    chair.record(sid, T0, 130)
    chair.close_session(sid, T0 + timedelta(minutes=3))
    store = chair.store
    replicate_once(store, clinic.replication, chair.name)
    with PostgresReader(clinic.review) as reader:
        csid = clinic_id(reader, chair.name, sid)
        mine, theirs = store.get_session(sid), reader.get_session(csid)
        assert theirs == mine.__class__(**{**{f: getattr(mine, f) for f in mine.__slots__}, "id": csid})
        for call in (lambda s, i: s.entries(i), lambda s, i: s.effective_entries(i, "note"),
                     lambda s, i: s.entries(i, start=T0 + timedelta(seconds=30), order="recorded"),
                     lambda s, i: s.alarms(i),
                     lambda s, i: s.alarms(i, T0 + timedelta(seconds=40), T0 + timedelta(seconds=80)),
                     lambda s, i: s.alarm_actions(i), lambda s, i: s.gaps(i),
                     lambda s, i: s.conditions(i), lambda s, i: s.audit_rows(i)):
            a, b = call(store, sid), call(reader, csid)
            assert [_without_session(x) for x in b] == [_without_session(x) for x in a]
        for vital in ("hr", "spo2", "rr", "etco2"):
            pairs = zip(store.numerics(sid, vital, with_quality=True), reader.numerics(csid, vital, with_quality=True))
            for x, y in pairs:
                assert np.array_equal(x, y, equal_nan=True)
            start, end = T0.timestamp(), T0.timestamp() + 130
            for x, y in zip(store.numerics_envelope(sid, vital, start, end, 37),
                            reader.numerics_envelope(csid, vital, start, end, 37)):
                assert np.array_equal(x, y, equal_nan=True)
        assert reader.last_data_time(csid) == store.last_data_time(sid)
        assert reader.waveform_channels(csid) == store.waveform_channels(sid)
        listed = reader.list_sessions(patient="pat EX", status="closed", had_alarms=True, protocol="ketamine-iv",
                                      since=T0 - timedelta(days=1), until=T0 + timedelta(days=1), chair=chair.name)
        assert [s.id for s in listed] == [csid] and isinstance(listed[0], ChairSessionSummary)
        assert reader.list_sessions(chair="nobody") == [] and reader.list_sessions(had_alarms=False) == []
        assert reader.list_users() == []


def _without_session(row):
    """A record's fields without its session id (the clinic record numbers sessions its own way)."""
    if isinstance(row, tuple) and not hasattr(row, "_fields"):
        return tuple(_without_session(x) for x in row)
    fields = getattr(row, "__slots__", None) or getattr(row, "_fields", ())
    return tuple(_without_session(getattr(row, f)) for f in fields if f != "session_id") if fields else row


# ------------------------------------------------------------------------------------------ exports
def test_a_session_exported_from_the_clinic_record_is_the_archive_exported_from_its_chair(tmp_path, clinic):
    from monitor.clinic.accounts import AccountSync
    from monitor.app.review import add_late_entry
    from tests.test_export import CHARGE, T_IV, _record_iv

    store, sid = _record_iv(tmp_path / "iv.sqlite")
    store.add_user(CHARGE.username, CHARGE.display_name, CHARGE.role.value, None, by=None)
    add_late_entry(store, sid, {"kind": "note", "text": "Escort phoned"}, T_IV + timedelta(minutes=19), CHARGE,
                   "charted at review")
    replicator = replicate_once(store, clinic.replication, "chair-iv")
    writer = ClinicWriter(clinic.replication)
    writer.open()
    AccountSync(store).sync(writer, replicator.chair_id)  # its staff accounts are the clinic's
    writer.close()
    with PostgresReader(clinic.review) as reader:
        csid = clinic_id(reader, "chair-iv", sid)
        mine = export_session(store, sid, "json", tmp_path / "chair.vigil.json").read_bytes()
        theirs = export_session(reader, csid, "json", tmp_path / "clinic.vigil.json").read_bytes()
        assert theirs == mine
        assert json.loads(theirs)["session"]["original_id"] == sid
        for fmt in ("csv", "fhir", "hl7"):  # the other formats read the clinic record too
            assert export_session(reader, csid, fmt, tmp_path / f"clinic.{fmt}").stat().st_size > 0
    # The command line: the same bytes from either database.
    err = io.StringIO()
    assert run_cli(["export", str(csid), "--format", "json", "--db", clinic.review, "--out",
                    str(tmp_path / "cli.json")], out=io.StringIO(), err=err) == 0, err.getvalue()
    assert (tmp_path / "cli.json").read_bytes() == mine
    store.close()


def test_vigil_sessions_lists_every_chair_from_the_clinic_record(tmp_path, clinic):
    for name in ("chair-a", "chair-b"):
        chair = Chair(tmp_path, name)
        sid = chair.open_session(patient=f"Patient of {name}")
        chair.record(sid, T0, 5)
        replicate_once(chair.store, clinic.replication, name)
    out = io.StringIO()
    assert run_cli(["sessions", "--db", clinic.review, "--json"], out=out, err=io.StringIO()) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sorted((r["chair"], r["chair_session"], r["status"]) for r in rows) == [("chair-a", 1, "open"),
                                                                                   ("chair-b", 1, "open")]
    out = io.StringIO()
    assert run_cli(["sessions", "--db", clinic.review, "--chair", "chair-b"], out=out, err=io.StringIO()) == 0
    assert "chair-b#1" in out.getvalue() and "chair-a" not in out.getvalue()
    err = io.StringIO()
    assert run_cli(["sessions", "--db", clinic.review, "--chair", "chair-z"], out=io.StringIO(), err=err) == 1
    assert "no chair named 'chair-z'" in err.getvalue() and "chair-a, chair-b" in err.getvalue()
    err = io.StringIO()
    bad = clinic.review.rsplit("/", 1)[0] + "/no_such_database"
    assert run_cli(["sessions", "--db", bad], out=io.StringIO(), err=err) == 1
    assert "cannot be reached" in err.getvalue() and "no_such_database" in err.getvalue()
