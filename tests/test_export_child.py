"""Exports in a child process (monitor.export.child): refusals keep their class and message, a child
that cannot do the export says why, and a reader that is not a database file exports in-process."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from monitor.export import ExportCancelled, ExportError, export_session
from monitor.export.atomic import DestinationExists
from monitor.export.child import export_in_child
from monitor.export.synthetic import build_long_session
from monitor.store import SessionStore

pytestmark = pytest.mark.slow   # each export starts a Python process


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("child") / "chair.sqlite"
    with SessionStore(path) as store:
        sid = build_long_session(store, hours=2, waves=False, events=20)
    store = SessionStore(path, readonly=True)
    yield store, sid
    store.close()


def test_the_child_writes_what_the_in_process_export_writes(recorded, tmp_path):
    store, sid = recorded
    seen: list[float] = []
    out = export_in_child(store, sid, "csv", tmp_path / "child.zip", progress=seen.append)
    same = export_session(store, sid, "csv", tmp_path / "here.zip")
    assert out == tmp_path / "child.zip" and out.stat().st_size == same.stat().st_size
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_refusals_keep_their_kind_and_message(recorded, tmp_path):
    store, sid = recorded
    taken = tmp_path / "taken.zip"
    taken.write_bytes(b"an earlier export")
    with pytest.raises(DestinationExists, match="already exists"):
        export_in_child(store, sid, "csv", taken)
    assert taken.read_bytes() == b"an earlier export"
    with pytest.raises(ExportError, match="esketamine sessions only"):
        export_in_child(store, sid, "rems", tmp_path / "rems.pdf")
    with pytest.raises(ExportError, match="no session 999|999"):
        export_in_child(store, 999, "csv", tmp_path / "none.zip")


def test_cancelled_before_it_starts_leaves_no_file(recorded, tmp_path):
    store, sid = recorded
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ExportCancelled):
        export_in_child(store, sid, "edf", tmp_path / "never.edf", cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_a_database_the_child_cannot_open_is_said(recorded, tmp_path):
    store, sid = recorded
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(Path(store.path).read_bytes())
    moved = SessionStore(copy, readonly=True)
    copy.unlink()                      # the file went away under the window
    try:
        with pytest.raises(ExportError, match="cannot be read for the export"):
            export_in_child(moved, sid, "csv", tmp_path / "out.zip")
    finally:
        moved.close()
    assert not (tmp_path / "out.zip").exists()
