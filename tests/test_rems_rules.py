"""Issue 9 §4: the REMS form flags a record under 120 min, never answers "No" for what nobody
assessed, and takes the "about 40 minutes" BP only from 35–50 min after the first device."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pypdf

from monitor.alarms.profile import default_profile
from monitor.export import export_session
from monitor.patient import Patient
from monitor.protocols import EsketaminePlan
from monitor.app.recorder import SessionRecorder
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore, StoreWriter
from tests.factories import act

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def rems_text(tmp_path, then) -> str:
    store = SessionStore(tmp_path / "r.sqlite")
    writer = StoreWriter(store)
    writer.start()
    rec = SessionRecorder.start(store, writer, patient=Patient(display_name="Jo Doe", weight_kg=70),
                                plan=EsketaminePlan(dose_mg=56, lot_number="AB123"), device="test", actor=ANN,
                                t=T0, settings=ClinicSettings(), profile=default_profile())
    act(rec, "record_nibp", at(1), 124, 78, source="manual", by=ANN)
    act(rec, "log_nasal_device", at(2), ANN)
    act(rec, "log_nasal_device", at(7), ANN)
    then(rec)
    rec.finish(rec.state.closed_at, signed_name=ANN.display_name, meaning="test")
    writer.stop(10)
    path = export_session(store, rec.session_id, "rems", tmp_path / "rems.pdf")
    store.close()
    return " ".join(" ".join(page.extract_text().split()) for page in pypdf.PdfReader(path).pages)


def test_a_record_under_two_hours_is_flagged_and_nothing_assessed_is_not_answered_no(tmp_path):
    def short(rec):
        act(rec, "record_nibp", at(54), 130, 84, source="manual", by=ANN)   # 52 min after the first device
        act(rec, "abort", at(62), ANN, "patient left against advice")
    page = rems_text(tmp_path, short)
    assert "Monitoring ended under 120 minutes after the first device" in page
    assert re.search(r"60 min \(first device .*\) — UNDER 120 MIN", page)
    assert "Sedation Not assessed" in page and "Dissociation Not assessed" in page
    assert "At about 40 minutes not recorded: no reading between 35 and 50 min" in page


def test_a_reading_in_the_window_is_the_40_minute_bp_and_charted_zeros_are_no(tmp_path):
    def full(rec):
        act(rec, "record_nibp", at(44), 132, 85, source="manual", by=ANN)   # 42 min after the first device
        act(rec, "chart", {"kind": "moaas", "level": 5}, at(45), ANN)
        act(rec, "chart", {"kind": "cadss6", "items": {1: 0, 2: 0, 6: 0, 7: 0, 15: 0, 22: 0}}, at(45), ANN)
        act(rec, "abort", at(130), ANN, "transfer of care")
    page = rems_text(tmp_path, full)
    assert "under 120" not in page.lower()
    assert "At about 40 minutes 132/85 mmHg" in page
    assert "Sedation No (MOAA/S 5" in page and "Dissociation No (no dissociation event; every charted CADSS item 0)" in page
