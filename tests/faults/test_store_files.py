"""Issue 11, "The store": one writer per database file, integrity at opening, read-only files and
media, salvage. Real files, real processes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from monitor.cli import run_cli
from monitor.store import DamagedStoreError, ReadOnlyError, SessionStore, StoreError, StoreLockedError

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def new_session(s: SessionStore, patient: str = "Ann Example") -> int:
    return s.create_session(patient={"display_name": patient}, protocol="iv_ketamine", plan={"dose": 0.5},
                            device="sim://", user="ann", started_at=T0)


def cli(*args: str) -> tuple[int, str, str]:
    import io

    out, err = io.StringIO(), io.StringIO()
    status = run_cli(list(args), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------- one writer per file
def test_the_lock_is_on_the_file_not_the_path(tmp_path):
    db = tmp_path / "real" / "vigil.sqlite"
    db.parent.mkdir()
    link = tmp_path / "other-name.sqlite"
    link.symlink_to(db)
    with SessionStore(db) as s:
        new_session(s)
        with pytest.raises(StoreLockedError, match=rf"already open for writing by another store in this process "
                                                   rf"\(pid {os.getpid()}"):
            SessionStore(link)
        with SessionStore(link, readonly=True) as r:  # review through any name
            assert r.list_sessions()[0].patient == "Ann Example"
    assert not Path(f"{link}.lock").exists() and Path(f"{db}.lock").exists()
    with SessionStore(link) as s:  # released on close; the symlink's journal is the file's own
        assert s.real_path == db.resolve()
        assert Path(f"{db}-wal").exists() and not Path(f"{link}-wal").exists()


def test_a_file_with_two_names_is_not_written(tmp_path):
    db = tmp_path / "a.sqlite"
    with SessionStore(db) as s:
        new_session(s)
    os.link(db, tmp_path / "b.sqlite")
    for name in ("a.sqlite", "b.sqlite"):
        with pytest.raises(StoreError, match="2 names"):
            SessionStore(tmp_path / name)
    with SessionStore(tmp_path / "b.sqlite", readonly=True) as r:
        assert len(r.list_sessions()) == 1


def _vigil(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), *args]


def _wait_for_session(db: Path, timeout: float = 60) -> int:
    """The id of the session a ``vigil record`` writing ``db`` opened, once it is committed (its
    opening is committed at once; its device data only every 30 s, so they are not waited for)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with SessionStore(db, readonly=True) as ro:
                    sessions = ro.list_sessions()
                if sessions:
                    return sessions[0].id
            except StoreError:
                pass
        time.sleep(0.2)
    raise AssertionError("the recorder did not start")


@pytest.mark.slow
def test_a_second_recorder_through_a_symlink_is_refused_and_resume_leaves_the_live_session(tmp_path):
    db = tmp_path / "vigil.sqlite"
    link = tmp_path / "link.sqlite"
    link.symlink_to(db)
    first = subprocess.Popen(_vigil("record", "--device", "sim://?scenario=normal&speed=1", "--duration", "600",
                                    "--db", str(db)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sid = _wait_for_session(db)
        for extra in ([], ["--resume"]):
            second = subprocess.run(_vigil("record", "--device", "sim://?speed=10", "--duration", "5", "--db",
                                           str(link), *extra), capture_output=True, text=True, timeout=60)
            assert second.returncode == 1, second.stderr
            assert f"already open for writing by another Vigil (process {first.pid}" in second.stderr
            assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert first.poll() is None  # the live recorder goes on
        first.terminate()
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == {"event": "session_closed", "session": sid}
    with SessionStore(db, readonly=True) as ro:
        [session] = ro.list_sessions()
        assert session.status == "closed" and not ro.gaps(sid)  # never resumed by the second one


# ------------------------------------------------------------------------------- integrity
def _damage(db: Path) -> None:
    """Overwrite a page in the middle of the file with noise (as a failing disk would)."""
    with SessionStore(db) as s:
        sid = new_session(s)
        s.add_observations(sid, [])
        for i in range(400):
            s.add_entry(sid, "note", T0 + timedelta(seconds=i), "note", {"text": "x" * 300}, "ann")
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.seek((size // 4096 // 2) * 4096)
        fh.write(os.urandom(4096))


def test_a_damaged_file_is_refused_and_never_written(tmp_path):
    db = tmp_path / "vigil.sqlite"
    _damage(db)
    before = db.read_bytes()
    for readonly in (False, True):  # reading asks for the check (writing always runs it)
        with pytest.raises(DamagedStoreError, match="is damaged.*vigil salvage") as caught:
            SessionStore(db, readonly=readonly, check_integrity=True)
        assert "restore a backup" in str(caught.value)
    with pytest.raises(DamagedStoreError):
        SessionStore(db)
    assert db.read_bytes() == before
    status, out, _ = cli("verify", "--db", str(db))
    assert status == 1 and "integrity: DAMAGED" in out


def test_salvage_copies_every_readable_session(tmp_path):
    db = tmp_path / "vigil.sqlite"
    with SessionStore(db) as s:
        s.add_user("ann", "Ann Nurse", "nurse", "hash", by=None)
        sids = [new_session(s, f"Patient {i}") for i in range(3)]
        for sid in sids:
            s.add_entry(sid, "note", T0, "note", {"text": f"note of {sid}"}, "ann")
            s.close_session(sid, user="ann", signed_name="Ann Nurse", meaning="reviewed", at=T0 + timedelta(hours=1))
    with sqlite3.connect(db) as c:  # a failing disk destroys the page of the entries table
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = c.execute("SELECT rootpage FROM sqlite_master WHERE name = 'entries'").fetchone()[0]
        size = c.execute("PRAGMA page_size").fetchone()[0]
    c.close()
    with open(db, "r+b") as fh:
        fh.seek((root - 1) * size)
        fh.write(b"\xff" * size)
    with pytest.raises(DamagedStoreError):
        SessionStore(db)
    new = tmp_path / "salvaged.sqlite"
    status, out, _ = cli("salvage", str(db), str(new))
    assert status == 1 and out.count("NOT READ") >= 3 and "entries" in out
    with SessionStore(new, readonly=True) as r:
        listed = r.list_sessions()
        assert sorted(x.patient for x in listed) == ["Patient 0", "Patient 1", "Patient 2"]
        assert all(x.status == "closed" for x in listed) and r.get_user("ann").pin_hash == "hash"
        rows = r.audit_rows(listed[0].id)
        assert rows[0].action == "session_imported" and rows[0].payload["salvaged_from"] == str(db)
        assert rows[0].payload["not_read_in_full"]
        assert r.verify_audit().ok
    status, _, err = cli("salvage", str(db), str(new))
    assert status == 1 and "exists" in err  # never replaces a file


def test_an_empty_file_that_was_a_database_is_not_reinitialised(tmp_path):
    db = tmp_path / "vigil.sqlite"
    with SessionStore(db) as s:
        new_session(s)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"")
    with pytest.raises(DamagedStoreError, match="is empty.*was a database"):
        SessionStore(db)
    assert db.stat().st_size == 0
    fresh = tmp_path / "made-by-mktemp.sqlite"
    fresh.write_bytes(b"")  # an empty file with no trace of a database is a new one
    with SessionStore(fresh) as s:
        new_session(s)


# ---------------------------------------------------------------------------------- read-only
def test_a_read_only_file_is_reviewed_never_written_and_keeps_its_mode(tmp_path):
    db = tmp_path / "vigil.sqlite"
    with SessionStore(db) as s:
        sid = new_session(s)
    os.chmod(db, 0o444)
    with pytest.raises(ReadOnlyError, match="read-only.*does not change a file's permissions"):
        SessionStore(db)
    assert stat.S_IMODE(db.stat().st_mode) == 0o444
    with SessionStore(db, readonly=True) as r:
        assert r.get_session(sid).patient_name == "Ann Example"
    from monitor.config import open_reader
    reader = open_reader(str(db), prefer_writable=True)  # the desk falls back to reading
    try:
        assert reader.readonly
    finally:
        reader.close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o444


def _readonly_media_check(folder: str) -> None:
    """Runs where the folder cannot be written: review works, recording is refused."""
    store = SessionStore(Path(folder) / "vigil.sqlite", readonly=True)
    assert store.immutable and store.list_sessions()[0].patient == "Ann Example"
    store.close()
    try:
        SessionStore(Path(folder) / "vigil.sqlite")
    except ReadOnlyError as exc:
        print("refused:", exc)


@pytest.mark.slow  # a Python process of its own (in a mount namespace when run as root)
def test_a_database_on_read_only_media_can_be_reviewed(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    db = folder / "vigil.sqlite"
    with SessionStore(db) as s:
        new_session(s)
    for f in folder.iterdir():  # what a copy onto a CD or a write-protected stick holds
        if f.name != "vigil.sqlite":
            f.unlink()
    check = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                                   f"from tests.faults.test_store_files import _readonly_media_check as c; "
                                   f"c({str(folder)!r})"]
    if os.geteuid() == 0:  # root writes through permissions: mount the folder read-only in a namespace of its own
        unshare = shutil.which("unshare")
        if unshare is None or subprocess.run([unshare, "-m", "true"], capture_output=True).returncode:
            pytest.skip("running as root without mount namespaces: read-only media cannot be made")
        import shlex
        check = [unshare, "-m", "--propagation", "private", "sh", "-c",
                 f"mount --bind -o ro {shlex.quote(str(folder))} {shlex.quote(str(folder))} && exec "
                 + " ".join(shlex.quote(x) for x in check)]
    else:
        os.chmod(db, 0o444)
        os.chmod(folder, 0o555)
    try:
        result = subprocess.run(check, capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(folder, 0o755)
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "read-only storage" in result.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["vigil.sqlite"]  # nothing was created beside it
