"""The alarm profile in force is recorded with each session (by fingerprint and content), at the start
and at every change at the chair, survives a resume, and shows in review and every export."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest

from monitor.alarms.profile import AlarmProfile, default_profile, profile_fingerprint
from monitor.app.pipeline import open_pipeline
from monitor.app.readmodel import load_session
from monitor.app.review import summarize
from monitor.app.service import SessionService
from monitor.export import export_session
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.session import SessionState
from monitor.session.record import AlarmLimitsEntry
from monitor.settings import ClinicSettings
from monitor.staff import Actor, RefusedAction, Role
from monitor.store import SessionStore
from tests.factories import sign_in

DEVICE = "sim://?scenario=normal&speed=60&waves=0&nibp=3600"
ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
PROFILE = default_profile()


def chair(store: SessionStore) -> SessionService:
    service = SessionService(open_pipeline(DEVICE, store, ClinicSettings(), PROFILE, tick_s=0.05))
    service.pipeline.start()
    return service


def limits_entries(store: SessionStore, session_id: int) -> list[dict]:
    return [e.payload for e in store.entries(session_id, order="recorded") if e.payload["type"] == "alarm_limits"]


@pytest.fixture
def recorded(tmp_path):
    """A session started on the clinic default, one SpO2 limit changed at the chair, then a crash
    (the pipeline stops with the session open) and a resume on a new pipeline."""
    store = SessionStore(tmp_path / "s.sqlite")
    first = chair(store)
    try:
        sid = first.start_session(Patient(display_name="Jo Doe", weight_kg=70),
                                  KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), ANN)
        first.set_alarm_limits({"spo2_low.MEDIUM": 89}, sign_in(first, ANN))
    finally:
        first.pipeline.stop()
    second = chair(store)
    try:
        second.resume_session(sid, ANN)
        resumed_limit = second.session_profile.rule("spo2_low").levels[0].threshold
        second.abort_session(sign_in(second, ANN), "test over")
    finally:
        second.pipeline.stop()
    yield store, sid, resumed_limit
    store.close()


def test_the_profile_is_recorded_at_the_start_and_at_each_change(recorded):
    store, sid, _ = recorded
    opened, changed = limits_entries(store, sid)
    assert opened["source"] == "clinic default" and opened["sha256"] == PROFILE.fingerprint()
    assert AlarmProfile.model_validate(opened["profile"]) == PROFILE
    assert changed["source"] == "changed at the chair" and changed["changes"] == {"spo2_low.MEDIUM": 89.0}
    assert changed["sha256"] == profile_fingerprint(changed["profile"]) != PROFILE.fingerprint()
    assert changed["by"]["username"] == "ann"


def test_a_resumed_session_carries_on_with_the_limits_recorded_for_it(recorded):
    _, _, resumed_limit = recorded
    assert resumed_limit == 89


def test_review_and_exports_show_the_profile_in_force(recorded, tmp_path, qapp):
    store, sid, _ = recorded
    sha = limits_entries(store, sid)[-1]["sha256"]
    view = load_session(store, sid)
    grouped = " ".join(sha[i:i + 16] for i in range(0, 64, 16))
    assert view.alarm_limits_text == f"changed at the chair (1 change), profile SHA-256 {grouped}"
    assert summarize(view, {}).alarm_limits == view.alarm_limits_text
    export_session(store, sid, "csv", tmp_path / "s.zip")
    with zipfile.ZipFile(tmp_path / "s.zip") as z:
        rows = dict(csv.reader(io.StringIO(z.read("session.csv").decode())))
        others = list(csv.DictReader(io.StringIO(z.read("other_entries.csv").decode())))
    assert rows["alarm_limits"] == "changed at the chair" and rows["alarm_profile_sha256"] == sha
    assert [r["summary"].split(" (")[0] for r in others if r["kind"] == "alarm_limits"] == [
        "clinic default", "changed at the chair: spo2_low.MEDIUM 89"]
    export_session(store, sid, "json", tmp_path / "s.vigil.json")
    archived = json.loads((tmp_path / "s.vigil.json").read_text())
    assert sha in json.dumps(archived)
    pypdf = pytest.importorskip("pypdf")
    export_session(store, sid, "pdf", tmp_path / "s.pdf")
    text = " ".join(" ".join(page.extract_text().split()) for page in pypdf.PdfReader(tmp_path / "s.pdf").pages)
    assert "Alarm limits" in text and "changed at the chair" in text and sha in text.replace(" ", "")


def test_a_recorded_profile_that_does_not_match_its_fingerprint_does_not_replay(recorded):
    store, sid, _ = recorded
    payloads = [e.payload for e in store.entries(sid, order="recorded")]
    entry = next(p for p in payloads if p["type"] == "alarm_limits")
    entry["profile"]["rules"][0]["levels"][0]["threshold"] = 50
    with pytest.raises(RefusedAction, match="does not match its fingerprint"):
        SessionState.from_entries(payloads)
    assert isinstance(SessionState.from_entries([e.payload for e in store.entries(sid, order="recorded")])
                      .alarm_limits[0], AlarmLimitsEntry)
