"""`vigil export` and `vigil import` from the command line."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from monitor.cli import run_cli
from monitor.cli.records import parse_interval
from monitor.store import SessionStore
from tests.factories import copy_into
from tests.test_export import _record_iv, recorded_db


@pytest.fixture(scope="module")
def db(tmp_path_factory, made_once):
    """A recorded 20-minute IV session with waveforms, alarms and notes (session 1)."""
    return copy_into(recorded_db(made_once, _record_iv), tmp_path_factory.mktemp("export"))


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return run_cli(list(args), out=out, err=err), out.getvalue(), err.getvalue()


def test_export_each_format_and_default_name(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = cli("export", "1", "--format", "csv", "--db", str(db))
    assert status == 0 and out.strip() == "session-1.zip" and zipfile.is_zipfile(tmp_path / "session-1.zip")
    status, out, _ = cli("export", "1", "--format", "fhir", "--db", str(db), "--interval", "5min",
                         "--out", str(tmp_path / "b.json"))
    bundle = json.loads((tmp_path / "b.json").read_text())
    assert status == 0 and bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    status, out, _ = cli("export", "1", "--format", "json", "--db", str(db), "--deidentify")
    assert status == 0 and out.strip() == "session-1-deidentified.vigil.json"


@pytest.mark.parametrize("args,message,code", [
    (["export", "1", "--format", "docx"], "unknown format 'docx'", 2),
    (["export", "one", "--format", "csv"], "session must be a number", 2),
    (["export", "1", "--format", "csv", "--interval", "often"], "should look like 60s", 2),
    (["export", "9", "--format", "csv"], "no session 9", 1),
    (["export", "1", "--format", "rems"], "esketamine sessions", 1),
])
def test_export_refusals_are_one_line(db, tmp_path, args, message, code):
    status, out, err = cli(*args, "--db", str(db), *(["--out", str(tmp_path / "x")] if "--out" not in args else []))
    assert status == code and message in err and err.count("\n") == 1 and out == ""


def test_import_round_trip_and_refusals(db, tmp_path):
    archive = tmp_path / "a.vigil.json"
    assert cli("export", "1", "--format", "json", "--db", str(db), "--out", str(archive))[0] == 0
    other = tmp_path / "other.sqlite"
    status, out, _ = cli("import", str(archive), "--db", str(other))
    assert status == 0 and out.strip() == "1"
    status, _, err = cli("import", str(archive), "--db", str(other))          # already there
    assert status == 1 and "already" in err
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    status, _, err = cli("import", str(tmp_path / "bad.json"), "--db", str(other))
    assert status == 1 and err.startswith("vigil import:")
    with SessionStore(other, readonly=True) as store:
        assert len(store.list_sessions()) == 1


def test_missing_database_is_reported(tmp_path):
    status, _, err = cli("export", "1", "--format", "csv", "--db", str(tmp_path / "none.sqlite"))
    assert status == 1 and "no database" in err


def test_parse_interval():
    assert parse_interval("60s") == 60 and parse_interval("5min") == 300 and parse_interval("1h") == 3600
    assert parse_interval("90") == 90
    with pytest.raises(ValueError):
        parse_interval("soon")
