"""`vigil export --out` never replaces the open database, a device node or any non-regular file, and asks
(``--force``) before replacing an existing file (issue 11, "Records that cannot be forged quietly").

Running as root, ``--out /dev/null`` replaced the system's /dev/null with a regular file. These tests
never name the real /dev/null as a destination: a symbolic link to it and a fifo stand in for it."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from monitor.cli import run_cli
from monitor.export import ExportError, export_session
from monitor.export.atomic import DestinationExists
from monitor.store import SessionStore
from tests.factories import copy_into
from tests.test_export import _record_iv, recorded_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def db(tmp_path_factory, made_once):
    """A recorded 20-minute IV session with waveforms, alarms and notes (session 1)."""
    return copy_into(recorded_db(made_once, _record_iv), tmp_path_factory.mktemp("export-out"))


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return run_cli(list(args), out=out, err=err), out.getvalue(), err.getvalue()


def export(db: Path, out: Path | str, *more: str) -> tuple[int, str, str]:
    return cli("export", "1", "--format", "csv", "--db", str(db), "--out", str(out), *more)


def snapshot(db: Path) -> tuple[bytes, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.read_bytes(), conn.execute("SELECT count(*) FROM sessions").fetchone()[0]


def test_a_symlink_to_dev_null_is_refused_and_dev_null_stays_a_device(db, tmp_path):
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    for extra in ((), ("--force",)):
        status, out, err = export(db, link, *extra)
        assert status == 1 and out == "" and "symbolic link (to /dev/null)" in err
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]          # no temporary file left behind


def test_a_fifo_a_folder_and_a_dangling_link_are_refused(db, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    status, _, err = export(db, fifo, "--force")
    assert status == 1 and "a fifo (named pipe)" in err and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    folder = tmp_path / "folder"
    folder.mkdir()
    status, _, err = export(db, folder, "--force")
    assert status == 1 and "a folder" in err and folder.is_dir()
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere.zip")
    status, _, err = export(db, dangling, "--force")
    assert status == 1 and "symbolic link" in err and not (tmp_path / "nowhere.zip").exists()


def test_the_open_database_is_never_replaced_whatever_names_it(db, tmp_path):
    before = snapshot(db)
    other_name = tmp_path / "same-db.sqlite"
    os.link(db, other_name)                                          # a hard link: another name, same file
    linked_folder = tmp_path / "via"
    linked_folder.symlink_to(db.parent)                              # the same file through a linked folder
    for out in (db, other_name, linked_folder / db.name, Path(os.path.relpath(db))):
        status, _, err = export(db, out, "--force")
        assert status == 1 and ("the database Vigil has open" in err or "with its database" in err), (out, err)
    for beside in (db.with_name(db.name + "-wal"), db.with_name(db.name + ".v3.bak"), db.with_name(db.name + ".key")):
        was = beside.read_bytes() if beside.exists() else None
        status, _, err = export(db, beside, "--force")
        assert status == 1 and ("Vigil keeps that file with its database" in err or "file of the database" in err)
        assert (beside.read_bytes() if beside.exists() else None) == was
    assert snapshot(db) == before


def test_an_existing_file_is_replaced_only_with_force(db, tmp_path):
    target = tmp_path / "report.zip"
    target.write_bytes(b"an earlier export")
    status, _, err = export(db, target)
    assert status == 1 and "already exists" in err and "--force" in err
    assert target.read_bytes() == b"an earlier export"
    status, out, _ = export(db, target, "--force")
    assert status == 0 and out.strip() == str(target) and zipfile.is_zipfile(target)


def test_a_destination_that_turns_into_a_fifo_while_writing_is_not_replaced(db, tmp_path, monkeypatch):
    """The check is made again just before the rename."""
    import monitor.export.csv_export as csv_export
    target = tmp_path / "late.zip"
    real = csv_export.write_csv

    def write_then_swap(view, path, **kwargs):
        real(view, path, **kwargs)
        os.mkfifo(target)                                            # someone else made it meanwhile

    monkeypatch.setattr(csv_export, "write_csv", write_then_swap)
    with SessionStore(db, readonly=True) as store:
        with pytest.raises(ExportError, match="a fifo"):
            export_session(store, 1, "csv", target, overwrite=True)
    assert stat.S_ISFIFO(os.lstat(target).st_mode) and [p.name for p in tmp_path.iterdir()] == ["late.zip"]


def test_the_api_refuses_an_existing_file_unless_asked(db, tmp_path):
    target = tmp_path / "x.zip"
    target.write_bytes(b"keep")
    with SessionStore(db, readonly=True) as store:
        with pytest.raises(DestinationExists):
            export_session(store, 1, "csv", target)
        assert export_session(store, 1, "csv", target, overwrite=True) == target
    assert zipfile.is_zipfile(target)


@pytest.mark.slow  # a real `vigil export` process
def test_vigil_export_in_a_real_process_refuses_a_link_to_dev_null(db, tmp_path):
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    vigil = shutil.which("vigil", path=str(Path(sys.executable).parent)) or "vigil"
    run = subprocess.run([vigil, "export", "1", "--format", "json", "--db", str(db), "--out", str(link), "--force"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 1 and "symbolic link (to /dev/null)" in run.stderr and run.stdout == ""
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and link.is_symlink()


@pytest.mark.window
def test_the_review_windows_save_dialog_confirms_before_replacing(qtbot, db, tmp_path, monkeypatch):
    """The window's export replaces an existing file only when it came from the save dialog, which asks
    first (Qt's overwrite confirmation is left on); the database is refused there too."""
    from PySide6.QtWidgets import QDialog, QFileDialog

    import ui.review.window as review_window
    from tests.factories import make_context
    from ui.review import ReviewWindow

    store = SessionStore(db, readonly=True)
    win = ReviewWindow(make_context(None, store), 1)
    qtbot.addWidget(win)
    win.finish_opening()
    target = tmp_path / "chosen.zip"
    target.write_bytes(b"an earlier export")

    def export(*args):   # the export runs on a worker thread: wait for its end
        job = win.export(*args)
        assert job is not None
        qtbot.waitUntil(lambda: win.export_job is None, timeout=30000)
        return job.result

    assert export("csv", target) is None and "already exists" in win.error.text()
    assert target.read_bytes() == b"an earlier export"
    asked = []

    def save_dialog(picked):
        def run(dialog):
            asked.append(dialog.testOption(QFileDialog.Option.DontConfirmOverwrite))
            dialog.selectFile(str(picked))
            dialog.setResult(QDialog.DialogCode.Accepted)
        return run

    monkeypatch.setattr(review_window, "run_modal", save_dialog(target))
    assert export("csv") == target and zipfile.is_zipfile(target)
    assert asked == [False]    # the dialog asks before choosing an existing file
    monkeypatch.setattr(review_window, "run_modal", save_dialog(db))
    before = snapshot(db)
    assert export("csv") is None and "the database Vigil has open" in win.error.text()
    assert snapshot(db) == before
    win.close()
    store.close()
