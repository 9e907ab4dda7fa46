"""Issue 11, "vigil import": the archive's record is checked end to end against its audit rows
(an archive whose content was edited is refused), the import is marked wherever the session is
shown, and memory stays bounded (the archive is streamed). Real files and processes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from monitor.cli import run_cli
from monitor.export import ExportError, build_long_session, export_session, import_archive
from monitor.export.archive import canonical_bytes
from monitor.store import SessionStore, audit_digest

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    with SessionStore(folder / "chair.sqlite") as s:
        sid = build_long_session(s, hours=2, waves=False)
        path = export_session(s, sid, "json", folder / "session.json")
    return path


def edited(src: Path, dst: Path, change) -> Path:
    doc = json.loads(src.read_bytes())
    change(doc)
    dst.write_bytes(canonical_bytes(doc))
    return dst


def rehash(doc: dict, only: int | None = None) -> None:
    """A forger recomputes audit row hashes (the first ``only`` rows), linking consecutive rows."""
    prev = None
    for r in doc["audit"][:only]:
        if prev is not None and prev["seq"] == r["seq"] - 1:
            r["prev_hash"] = prev["hash"]
        r["hash"] = audit_digest(r["prev_hash"], r["seq"], r["t"], r["user"], r["session"], r["action"], r["payload"])
        prev = r


@pytest.mark.parametrize("name,change,message", [
    ("a value", lambda d: d["observations"]["rows"][10].__setitem__(2, 99.0), "data differ from what audit row"),
    ("an alarm removed", lambda d: (d["alarms"].pop(), d["session"].__setitem__("n_alarms", len(d["alarms"])),
                                    d.__setitem__("alarm_actions", [a for a in d["alarm_actions"]
                                                                    if (a["alarm"] or 0) <= len(d["alarms"])])),
     "added or removed"),
    ("an entry's content", lambda d: d["entries"][3]["payload"].__setitem__("by", {"username": "x"}),
     "entry 4 differs from what audit row"),
    ("the signer", lambda d: d["session"].__setitem__("signed_name", "Someone Else"), r"when it was closed \(signed name\)"),
    ("the patient and its audit row", lambda d: (d["session"]["patient"].__setitem__("display_name", "X"),
                                                 d["audit"][0]["payload"]["patient"].__setitem__("display_name", "X")),
     "does not match its hash"),
    ("the patient, its row rehashed", lambda d: (d["session"]["patient"].__setitem__("display_name", "X"),
                                                 d["audit"][0]["payload"]["patient"].__setitem__("display_name", "X"),
                                                 rehash(d, only=1)), "does not link to row"),
    ("a stranger's entry", lambda d: d["entries"][0].__setitem__("user", "mallory"), "not among its staff"),
])
def test_an_edited_archive_is_refused(archive, tmp_path, name, change, message):
    bad = edited(archive, tmp_path / "bad.json", change)
    with SessionStore(tmp_path / "target.sqlite") as target:
        with pytest.raises(ExportError, match=message):
            import_archive(target, bad)
        assert target.list_sessions() == []


@pytest.mark.parametrize("where,data,message", [
    ("a row", b'{"a":1,"a":2}', "the key 'a' appears twice in one object"),
    ("a row", b"[" * 65 + b"]" * 65, "it is nested too deeply"),
    ("a row", b"[1.0," * 5 + b"[" * 60 + b"]" * 65, "it is nested too deeply"),
    ("a row", b'[1772438400.0,"hr",-4611686018427387905,0,null,null,"x"]',
     "the number -4611686018427387905… is too large"),
    ("a row", b'[1772438400.0,"hr",[{"v":1,"v":2}],0,null,null,"x"]', "the key 'v' appears twice in one object"),
    ("a block", b'{"channel":"ecg","n":1,"n":2}', "the key 'n' appears twice in one object"),
    ("a block", b'{"channel":"ecg","n":4611686018427387905}', "the number 4611686018427387905… is too large"),
])
def test_rows_and_blocks_are_refused_like_the_rest_of_the_archive(archive, tmp_path, where, data, message):
    """The observation rows and waveform blocks (most of an archive, read by a shortcut) are refused
    for a key twice in one object, nesting deeper than 64 and numbers beyond 2**62 like any other part."""
    text = archive.read_bytes()
    if where == "a row":
        text = text.replace(b'"rows":[', b'"rows":[' + data + b",", 1)
    else:  # (without the rows before it: the block is refused as it is read)
        start = text.index(b'"rows":[')
        text = text[:start] + b'"rows":[]' + text[text.index(b"]]", start) + 2:]
        text = text.replace(b'"waveforms":[]', b'"waveforms":[' + data + b"]", 1)
    bad = tmp_path / "bad.json"
    bad.write_bytes(text)
    with SessionStore(tmp_path / "target.sqlite") as target:
        with pytest.raises(ExportError, match=f"the archive is refused: {message}"):
            import_archive(target, bad)
        assert target.list_sessions() == []


def test_the_import_is_marked_everywhere_and_verifies(archive, tmp_path):
    db = tmp_path / "clinic.sqlite"
    out, err = io.StringIO(), io.StringIO()
    assert run_cli(["import", str(archive), "--db", str(db)], out=out, err=err) == 0, err.getvalue()
    sid = int(out.getvalue())
    with SessionStore(db, readonly=True) as r:
        [row] = r.audit_rows(sid)
        assert row.payload["file"] == str(archive) and row.payload["imported_by"]
        check = r.verify_session(sid)
        assert check.ok, check.problems
    out = io.StringIO()
    run_cli(["sessions", "--db", str(db), "--json"], out=out, err=io.StringIO())
    [listed] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert listed["imported"].startswith(f"Imported from {archive} by ")
    csv_path = tmp_path / "s.zip"
    run_cli(["export", str(sid), "--format", "csv", "--out", str(csv_path), "--db", str(db)], out=io.StringIO(),
            err=io.StringIO())
    import zipfile
    session_csv = zipfile.ZipFile(csv_path).read("session.csv").decode()
    assert f"Imported from {archive}" in session_csv and "Record verified against its audit trail" in session_csv
    status, out_ = 0, io.StringIO()
    status = run_cli(["verify", str(sid), "--db", str(db)], out=out_, err=io.StringIO())
    assert status == 0, out_.getvalue()


BENCH = ROOT / "bench" / "import_archive.py"


@pytest.mark.slow
def test_import_memory_is_bounded_by_streaming(tmp_path):
    """A 12-hour archive imported by a process of its own: its peak memory stays far below the
    archive held in memory (the figure for 24 h is in docs/reliability.md, from bench/import_archive.py)."""
    result = subprocess.run([sys.executable, str(BENCH), "--hours", "6", "--folder", str(tmp_path), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["sessions_equal"] is True
    # the import adds less than the archive's own size: it was never held whole
    assert figures["import_peak_rss_mb"] - figures["baseline_rss_mb"] < figures["archive_mb"]
