"""Records that stay true in every export (issue 9 §5): late entries replay and export in every format
and the JSON archive of a session with late entries imports exactly.

The sessions are recorded through the real recorder by the builders of tests/test_export.py, then
closed; late entries are added the way the review window adds them (:func:`monitor.review.add_late_entry`).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from monitor.export import export_session, import_archive
from monitor.export.view import load_session
from monitor.review import add_late_entry
from monitor.store import SessionStore
from tests.test_export import (
    CHARGE, NURSE, T_ESK, T_IV, _edf_annotations, _edf_parse, _pdf_text, _record_esketamine, _record_iv, _zip_tables,
    fhir_bundle, hl7_parser, pyedflib,
)

LATE_NOTE = "Escort phoned: patient home safely"
LATE_REASON = "charted at review: the escort's call came after discharge"
LATE_RESCUE_REASON = "dose given in the chair, found on the paper chart"


@pytest.fixture(scope="module")
def late_iv(tmp_path_factory):
    """An IV session with two late entries: a note and a rescue medication."""
    store, sid = _record_iv(tmp_path_factory.mktemp("late") / "iv.sqlite")
    add_late_entry(store, sid, {"kind": "note", "text": LATE_NOTE}, T_IV + timedelta(minutes=19), CHARGE, LATE_REASON)
    add_late_entry(store, sid, {"kind": "rescue_medication", "drug": "midazolam", "dose": 1, "dose_unit": "mg",
                                "route": "IV", "given_by": "J. Doe"}, T_IV + timedelta(minutes=12), NURSE,
                   LATE_RESCUE_REASON)
    yield store, sid
    store.close()


@pytest.fixture(scope="module")
def late_esk(tmp_path_factory):
    """An esketamine session whose only dissociation was charted late."""
    store, sid = _record_esketamine(tmp_path_factory.mktemp("late_esk") / "esk.sqlite")
    add_late_entry(store, sid, {"kind": "dissociation", "severity": "mild"}, T_ESK + timedelta(minutes=30), NURSE,
                   "remembered at the end of the shift")
    yield store, sid
    store.close()


def test_the_record_replays_with_its_late_entries(late_iv):
    store, sid = late_iv
    view = load_session(store, sid)
    assert view.replay_error is None and view.state is not None
    late = view.state.late_events
    assert [e.event.kind for e in late] == ["note", "rescue_medication"]
    assert {e.event.kind for e in view.state.events()} >= {"note", "rescue_medication", "nausea"}
    rows = [r for r in view.events if r.late]
    assert [(r.kind, r.late_reason) for r in rows] == [("rescue_medication", LATE_RESCUE_REASON),
                                                       ("note", LATE_REASON)]
    assert all(r.recorded_at is not None for r in rows)


def test_the_archive_of_a_session_with_late_entries_imports_exactly(late_iv, tmp_path):
    store, sid = late_iv
    first = export_session(store, sid, "json", tmp_path / "a.json")
    doc = json.loads(first.read_bytes())
    late = [e for e in doc["entries"] if e["reason"] is not None and e["amends"] is None]
    assert [e["reason"] for e in late] == [LATE_REASON, LATE_RESCUE_REASON]
    other = SessionStore(tmp_path / "other.sqlite")
    try:
        new = import_archive(other, first, user="importer")
        assert first.read_bytes() == export_session(other, new, "json", tmp_path / "b.json").read_bytes()
        assert [(e.kind, e.reason) for e in other.entries(new, order="recorded") if e.is_late] == \
               [("note", LATE_REASON), ("rescue_medication", LATE_RESCUE_REASON)]
        assert other.verify_audit().ok
    finally:
        other.close()


def test_an_archive_whose_late_entry_lost_its_mark_is_refused(late_iv, tmp_path):
    store, sid = late_iv
    doc = json.loads(export_session(store, sid, "json", tmp_path / "a.json").read_bytes())
    i = next(i for i, e in enumerate(doc["entries"]) if e["reason"] is not None and e["amends"] is None)
    unmarked = json.loads(json.dumps(doc))
    del unmarked["entries"][i]["payload"]["late"]
    no_reason = json.loads(json.dumps(doc))
    no_reason["entries"][i]["reason"] = None
    target = SessionStore(tmp_path / "t.sqlite")
    try:
        for bad, pattern in ((unmarked, "not marked as a late entry"), (no_reason, "gives no reason")):
            path = tmp_path / "bad.json"
            path.write_text(json.dumps(bad))
            with pytest.raises(Exception, match=pattern):
                import_archive(target, path)
        assert target.list_sessions() == []
    finally:
        target.close()


def test_csv_pdf_and_edf_mark_late_entries_with_their_reason(late_iv, tmp_path, qapp):
    store, sid = late_iv
    events = _zip_tables(export_session(store, sid, "csv", tmp_path / "s.zip"))["events.csv"]
    late = [r for r in events if r["late"] == "yes"]
    assert [(r["kind"], r["late_reason"]) for r in late] == [("rescue_medication", LATE_RESCUE_REASON),
                                                             ("note", LATE_REASON)]
    assert all(r["recorded_at"] for r in late) and LATE_NOTE in late[1]["detail"]
    assert not any(r["late"] for r in events if r not in late)

    text = " ".join(_pdf_text(export_session(store, sid, "pdf", tmp_path / "s.pdf")))
    flat = text.replace(" ", "")
    assert LATE_REASON.replace(" ", "") in flat and LATE_RESCUE_REASON.replace(" ", "") in flat
    assert "lateentry,charted" in flat and LATE_NOTE.replace(" ", "") in flat

    path = export_session(store, sid, "edf", tmp_path / "s.edf")
    header, records = _edf_parse(path.read_bytes())
    texts = " ".join(t for _, _, t in _edf_annotations(header, records))
    assert "late entry, charted" in texts and LATE_NOTE in texts
    with pyedflib.EdfReader(str(path)) as f:  # pieces of a long annotation are joined back here
        joined = " ".join(f.readAnnotations()[2])
    assert "midazolam" in joined


def test_fhir_and_hl7_carry_late_entries(late_iv, tmp_path):
    from hl7apy.consts import VALIDATION_LEVEL
    store, sid = late_iv
    raw = export_session(store, sid, "fhir", tmp_path / "b.json").read_text(encoding="utf-8")
    fhir_bundle.Bundle.model_validate_json(raw)
    obs = [e["resource"] for e in json.loads(raw)["entry"] if e["resource"]["resourceType"] == "Observation"]
    charted = [o for o in obs if o["category"][0]["coding"][0]["code"] in ("survey", "event")]
    late = [o for o in charted if "issued" in o]
    assert [o["code"]["coding"][0]["code"] for o in late] == ["rescue_medication", "note"]
    assert any(LATE_REASON in n["text"] for n in late[1]["note"]) and LATE_NOTE in late[1]["note"][0]["text"]
    moaas = [o for o in charted if o["code"]["coding"][0]["code"] == "moaas"]
    assert [(o["status"], o["valueInteger"]) for o in moaas] == [("entered-in-error", 5), ("corrected", 4)]

    msg = export_session(store, sid, "hl7", tmp_path / "m.hl7").read_bytes().decode("utf-8")
    parsed = hl7_parser.parse_message(msg, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert parsed.validate()
    notes = [s for s in msg.split("\r") if s.startswith("NTE|")]
    assert any(LATE_REASON in s and "late entry, charted" in s for s in notes)
    assert any(s.startswith("OBX|") and "VGL_RESCUE_MEDICATION" in s and "midazolam" in s for s in msg.split("\r"))


def test_rems_counts_a_late_dissociation(late_esk, tmp_path, qapp):
    store, sid = late_esk
    [page] = _pdf_text(export_session(store, sid, "rems", tmp_path / "r.pdf"))
    assert "Dissociation Yes (dissociation event at" in page and "(late entry)" in page
    assert "could not be replayed" not in page and "min after the first device (earliest recorded time" in page
