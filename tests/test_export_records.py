"""Records that stay true in every export (issue 9 §5): late entries replay and export in every format
and the JSON archive of a session with late entries imports exactly.

The sessions are recorded through the real recorder by the builders of tests/test_export.py, then
closed; late entries are added the way the review window adds them (:func:`monitor.app.review.add_late_entry`).
"""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import pytest

from monitor.cli import run_cli
from monitor.export import FORMATS, export_session, import_archive
from monitor.app.readmodel import load_session
from monitor.app.review import add_late_entry
from monitor.staff import Actor, Role
from monitor.store import SessionStore
from tests.factories import act
from tests.test_export import (
    CHARGE, NURSE, T_ESK, T_IV, _edf_annotations, _edf_parse, _pdf_text, _record_esketamine, _record_iv, _texts,
    _zip_tables, fhir_bundle, hl7_parser, pyedflib, recorded,
)

LATE_NOTE = "Escort phoned: patient home safely"
LATE_REASON = "charted at review: the escort's call came after discharge"
LATE_RESCUE_REASON = "dose given in the chair, found on the paper chart"


@pytest.fixture(scope="module")
def late_iv(tmp_path_factory, made_once):
    """An IV session with two late entries: a note and a rescue medication."""
    store, sid = recorded(made_once, _record_iv, tmp_path_factory.mktemp("late"))
    add_late_entry(store, sid, {"kind": "note", "text": LATE_NOTE}, T_IV + timedelta(minutes=19), CHARGE, LATE_REASON)
    add_late_entry(store, sid, {"kind": "rescue_medication", "drug": "midazolam", "dose": 1, "dose_unit": "mg",
                                "route": "IV", "given_by": "J. Doe"}, T_IV + timedelta(minutes=12), NURSE,
                   LATE_RESCUE_REASON)
    yield store, sid
    store.close()


@pytest.fixture(scope="module")
def late_esk(tmp_path_factory, made_once):
    """An esketamine session whose only dissociation was charted late."""
    store, sid = recorded(made_once, _record_esketamine, tmp_path_factory.mktemp("late_esk"))
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


def test_a_record_whose_late_entries_are_out_of_place_does_not_replay(late_iv):
    from monitor.session import SessionError, SessionState
    store, sid = late_iv
    payloads = [e.payload for e in store.entries(sid, order="recorded") if e.amends is None]
    late = next(i for i, p in enumerate(payloads) if p.get("late"))
    with pytest.raises(SessionError, match="Only late entries may follow a late entry"):
        SessionState.from_entries(payloads[:late - 1] + [payloads[late]] + payloads[late - 1:late])
    early = dict(payloads[late], t=(T_IV - timedelta(minutes=1)).isoformat())
    with pytest.raises(SessionError, match="before the session was opened"):
        SessionState.from_entries(payloads[:late] + [early])
    with pytest.raises(SessionError, match="A late entry is an event"):
        SessionState.from_entries(payloads[:late] + [dict(payloads[late], type="nibp")])


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
    out, err = io.StringIO(), io.StringIO()  # and through the command line, into a fresh database
    assert run_cli(["import", str(first), "--db", str(tmp_path / "cli.sqlite")], out=out, err=err) == 0, err.getvalue()
    assert run_cli(["export", out.getvalue().strip(), "--format", "json", "--db", str(tmp_path / "cli.sqlite"),
                    "--out", str(tmp_path / "c.json")], out=io.StringIO(), err=err) == 0, err.getvalue()
    assert (tmp_path / "c.json").read_bytes() == first.read_bytes()


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


# ================================================================================= de-identification
class Planted:
    """Unique identifiers planted in free-text fields: ``XQnn Zephyrine 555-01nn`` (a name and a phone
    number); ``where[token]`` says which field got it."""

    PATTERN = re.compile(r"xq\d\d|555-01\d\d|zephyrine", re.IGNORECASE)

    def __init__(self) -> None:
        self.where: dict[str, str] = {}

    def __call__(self, field: str, limit: int = 80) -> str:
        n = len(self.where) + 1
        token = f"XQ{n:02d} Zephyrine 555-01{n:02d}"[:limit]
        self.where[token] = field
        return token

    def code(self, field: str) -> str:
        """For a field that takes only letters, digits and '-' (a lot number)."""
        n = len(self.where) + 1
        token = f"XQ{n:02d}-55501{n:02d}"
        self.where[token] = field
        return token


#: Every free-text (typed) field of the session domain's models: (model, field). A new one makes
#: :func:`test_every_free_text_field_is_planted` fail until the populated session below plants it.
FREE_TEXT_FIELDS = {
    ("Patient", "display_name"), ("Patient", "mrn"), ("EsketaminePlan", "lot_number"),
    ("InfusionStep", "reason"), ("InfusionStep", "high_rate_reason"), ("Signature", "meaning"), ("Signature", "note"), ("Actor", "display_name"),
    ("Actor", "username"), ("RescueMedication", "drug"), ("RescueMedication", "given_by"),
    ("RescueMedication", "comment"), ("Note", "text"), ("PresetEvent", "comment"),
    ("ClinicSettings", "clinic_name"), ("ClinicSettings", "clinic_address"), ("BpDecision", "note"),
    ("DischargeCriterion", "key"), ("DischargeCriterion", "label"), ("DischargeCriterion", "detail"),
}


def _str_fields(model) -> set[str]:
    """Fields of a pydantic model that take free text (``str``, not an enum or a Literal)."""
    import typing
    out = set()
    for name, info in model.model_fields.items():
        args = typing.get_args(info.annotation) or (info.annotation,)
        if str in args:
            out.add(name)
    return out


def test_every_free_text_field_is_planted():
    from monitor.assessments import ASSESSMENTS, EVENTS, PresetEvent, RescueMedication
    from monitor.patient import Patient
    from monitor.protocols import EsketaminePlan, InfusionStep, KetamineIVPlan, NasalDeviceEntry
    from monitor.session import BpDecision, DischargeCriterion, NibpReading
    from monitor.settings import ClinicSettings
    from monitor.staff import Actor, Signature
    models = {cls.__name__: cls for cls in (*ASSESSMENTS.values(), *EVENTS.values(), Patient, EsketaminePlan,
                                            KetamineIVPlan, InfusionStep, NasalDeviceEntry, Signature, Actor,
                                            ClinicSettings, BpDecision, DischargeCriterion, NibpReading)}
    found = {(name, f) for name, cls in models.items() for f in _str_fields(cls)}
    # the preset events share PresetEvent's comment
    found = {(("PresetEvent" if issubclass(models[m], PresetEvent) and f == "comment" else m), f) for m, f in found}
    assert RescueMedication.__name__ in models
    assert found == FREE_TEXT_FIELDS


def _populated(store: SessionStore, plant: Planted) -> tuple[int, int]:
    """An IV session and an esketamine session with every free-text field filled with a planted
    identifier (see :data:`FREE_TEXT_FIELDS`, and the store's own texts: gap and late-entry reasons,
    amendment reasons, condition texts, alarm messages, source names, the device URL, signatures)."""
    from drivers.model import DeviceCondition, numeric
    from monitor.alarms.profile import default_profile
    from monitor.patient import Patient, Sex
    from monitor.protocols import EsketaminePlan, KetamineIVPlan
    from monitor.app.recorder import SessionRecorder
    from monitor.settings import ClinicSettings
    from monitor.store import StoreWriter
    writer = StoreWriter(store)
    writer.start()
    settings = ClinicSettings(clinic_name=plant("clinic name"), clinic_address=plant("clinic address"))
    nurse = Actor(username="xq90", display_name=plant("nurse name"), role=Role.NURSE)
    charge = Actor(username="xq91", display_name=plant("charge nurse name"), role=Role.CHARGE_NURSE)
    source = plant("source name")

    def vitals(t, spo2=97.0):
        return [numeric("hr", 72.0, source, t), numeric("spo2", spo2, source, t), numeric("rr", 14.0, source, t)]

    # ---- IV ketamine, discharged with an override
    t0 = T_IV
    at = lambda minutes: t0 + timedelta(minutes=minutes)  # noqa: E731
    rec = SessionRecorder.start(
        store, writer, patient=Patient(display_name=plant("patient name"), mrn=plant.code("MRN"), sex=Sex.FEMALE,
                                       weight_kg=61),
        plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=61), device=f"sim://?serial={plant('device URL')}",
        actor=nurse, t=t0, settings=settings, profile=default_profile())
    rec.on_items(vitals(t0))
    rec.on_items([DeviceCondition(code="sensor_off", active=True, text=plant("condition text"), source=source,
                                  time=at(0.2))])
    act(rec, "record_nibp", at(0.5), 150, 95, source="manual", by=nurse)
    act(rec, "decide_bp", "proceed", at(0.6), nurse, plant("BP decision note"))
    act(rec, "set_baseline", at(0.7), nurse, {"hr": 72.0}, plant("baseline note"))
    act(rec, "start_infusion", at(1), nurse)
    act(rec, "pause_infusion", at(2), nurse, plant("pause reason"))
    act(rec, "resume_infusion", at(3), nurse)
    act(rec, "change_rate", at(4), nurse, 40.0, plant("rate change reason"),
            high_rate_reason=plant("high rate confirmation reason"))
    for i, assessment in enumerate(({"kind": "moaas", "level": 4}, {"kind": "rass", "level": -1},
                                    {"kind": "cadss", "items": [1] * 23}, {"kind": "cadss6", "items": {
                                        1: 1, 2: 0, 6: 0, 7: 1, 15: 0, 22: 0}},
                                    {"kind": "bprs_plus", "suspiciousness": 2, "hallucinations": 1,
                                     "unusual_thought_content": 1, "conceptual_disorganisation": 1},
                                    {"kind": "pain_nrs", "rating": 3}, {"kind": "nausea", "nausea": True, "vomiting": False},
                                    {"kind": "aldrete", "activity": 2, "respiration": 2, "circulation": 2,
                                     "consciousness": 2, "oxygen_saturation": 2})):
        act(rec, "chart", assessment, at(5 + i / 10), nurse)
    from monitor.assessments import EVENTS, PresetEvent
    seqs = {}
    for i, (kind, cls) in enumerate(EVENTS.items()):
        if issubclass(cls, PresetEvent):
            event = {"kind": kind, "severity": "mild", "comment": plant(f"{kind} comment")}
        elif kind == "rescue_medication":
            event = {"kind": kind, "drug": plant("drug", 60), "dose": 4, "dose_unit": "mg", "route": "IV",
                     "given_by": plant("given by"), "comment": plant("rescue comment")}
        else:
            event = {"kind": kind, "text": plant("note text")}
        seqs[kind] = act(rec, "record_event", event, at(6 + i / 10), nurse)[0].seq
    act(rec, "correct", seqs["anxiety"], plant("correction reason"), at(7), nurse,
            {"kind": "anxiety", "severity": "moderate", "comment": plant("replacement comment")})
    act(rec, "record_concomitant", at(7.5), nurse, {"benzodiazepines": False, "other": plant("other medications")})
    for s in range(0, 40, 2):  # SpO2 85 % for 40 s: an alarm, its audio paused and acknowledged
        rec.on_items(vitals(at(8) + timedelta(seconds=s), spo2=85.0))
        rec.tick(at(8) + timedelta(seconds=s))
    rec.pause_audio(nurse, at(8.7))
    rec.acknowledge(charge, at(8.8))
    rec.on_items(vitals(at(9)))
    rec.set_technical("audio_unavailable", True, at(9.5), plant("alarm message"))
    rec.set_technical("audio_unavailable", False, at(9.6))
    writer.put_call(store.add_gap, rec.session_id, at(10), at(11), plant("gap reason"))
    act(rec, "stop_infusion", at(12), nurse, plant("stop reason"))
    act(rec, "chart", {"kind": "aldrete", "activity": 2, "respiration": 2, "circulation": 2, "consciousness": 2,
                      "oxygen_saturation": 2}, at(13), nurse)
    act(rec, "confirm_escort", at(13.5), nurse, plant("escort name"))
    rec.on_items(vitals(at(14)))
    act(rec, "close", at(14), charge, override_reason=plant("override reason"))
    rec.finish(at(14), signed_name=charge.display_name, meaning=plant("signature meaning"))
    iv = rec.session_id
    late = add_late_entry(store, iv, {"kind": "note", "text": plant("late note")}, at(13), charge,
                          plant("late entry reason"))
    store.add_entry(iv, "event", at(13), "note", {"type": "event", "t": at(13).isoformat(), "by": charge.to_payload(),
                                                   "event": {"kind": "note", "text": plant("amended note")}, "late": True},
                    charge.username, amends=late, reason=plant("amendment reason"))

    # ---- esketamine, pre-dose check waived, dosing ended early, signed off, ended without discharge
    t0 = T_ESK
    rec = SessionRecorder.start(
        store, writer, patient=Patient(display_name=plant("patient name 2"), sex=Sex.MALE, weight_kg=80),
        plan=EsketaminePlan(dose_mg=84, lot_number=plant.code("lot number")), device=f"COM3?id={plant('device 2')}",
        actor=nurse, t=t0, settings=settings, profile=default_profile())
    rec.on_items(vitals(t0))
    act(rec, "waive_pre_dose_check", at(0.5), nurse, plant("waiver reason"))
    act(rec, "record_concomitant", at(0.6), nurse, {"maois": False, "other": plant("other medications 2")})
    act(rec, "log_nasal_device", at(1), nurse)
    act(rec, "end_dosing", at(7), nurse, plant("dosing ended reason"))
    act(rec, "sign_clinically_stable", at(60), charge, plant("sign-off note"))
    act(rec, "abort", at(61), nurse, plant("abort reason"))
    rec.finish(at(61), signed_name=nurse.display_name, meaning=plant("abort meaning"), status="aborted")
    assert writer.stop(30)
    return iv, rec.session_id


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    plant = Planted()
    store = SessionStore(tmp_path_factory.mktemp("deid") / "p.sqlite")
    iv, esk = _populated(store, plant)
    yield store, iv, esk, plant
    store.close()


def _strings(value, path=()):
    """(keys leading to it, string) of every string leaf of a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, path)
    elif isinstance(value, str):
        yield path, value


#: Texts Vigil writes itself into entries (never typed): discharge criteria and baseline methods.
_GENERATED_KEYS = {"label", "detail", "methods", "local_date", "session_id", "meaning", "printed_name", "username",
                   "display_name"}


def test_the_populated_record_holds_a_planted_identifier_in_every_free_text(populated):
    from monitor.app.privacy import is_coded
    store, iv, esk, plant = populated
    unplanted = []
    for sid in (iv, esk):
        record = store.get_session(sid)
        texts = [(path, v) for e in store.entries(sid) for path, v in _strings(e.payload)]
        texts += [(("reason",), e.reason) for e in store.entries(sid) if e.reason]
        texts += [(("gap",), g.reason) for g in store.gaps(sid)]
        texts += [(("condition",), c.text) for c in store.conditions(sid)]
        texts += [(("device",), record.device), (("signed_name",), record.signed_name),
                  (("close_meaning",), record.close_meaning)]
        for path, text in texts:
            if Planted.PATTERN.search(text) or is_coded(path[-1], text) or _GENERATED_KEYS & set(path):
                continue
            if re.match(r"^\d{4}-\d\d-\d\dT", text):  # times: shifted, never removed
                continue
            unplanted.append((path, text))
    assert not unplanted
    assert set(plant.where.values()) >= {"drug", "given by", "late entry reason", "amendment reason", "lot number"}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_no_planted_identifier_survives_de_identification(fmt, populated, tmp_path, qapp):
    from monitor.app.privacy import deid_notice
    store, iv, esk, plant = populated
    for sid in ((esk,) if fmt == "rems" else (iv, esk)):
        identified = export_session(store, sid, fmt, tmp_path / f"i-{sid}{FORMATS[fmt].suffix}")
        text, _ = _texts(fmt, identified)
        if fmt in ("csv", "json"):  # the planting reached the record an identified export shows
            assert len(set(Planted.PATTERN.findall(text.lower()))) > 10
        path = export_session(store, sid, fmt, tmp_path / f"d-{sid}{FORMATS[fmt].suffix}", deidentify=True)
        text, binary = _texts(fmt, path)
        leaks = sorted({m for m in Planted.PATTERN.findall(text)} | {m for m in Planted.PATTERN.findall(binary)
                                                                      if len(m) >= 8})
        fields = sorted({field for token, field in plant.where.items() if token[:4].lower() in map(str.lower, leaks)})
        assert not leaks, f"{fmt} export of session {sid} leaks {leaks} (planted in: {', '.join(fields)})"
        year_only = fmt in ("csv", "pdf", "rems")
        squeeze = lambda x: re.sub(r"\s+|\(\d+/\d+\)|\\", "", x)  # noqa: E731 (wrapped, split, escaped)
        assert squeeze(deid_notice(year_only_dates=year_only)) in squeeze(text), fmt


# ================================================================================= units, statuses
def test_the_wide_table_names_each_column_with_its_unit(late_iv, tmp_path):
    from drivers.catalogue import CATALOGUE
    store, sid = late_iv
    path = export_session(store, sid, "csv", tmp_path / "s.zip")
    wide = _zip_tables(path)["numerics_wide.csv"]
    header = list(wide[0])
    assert header[:2] == ["time", "elapsed_s"]
    assert {"hr_bpm", "spo2_pct", "nibp_sys_mmhg", "nibp_dia_mmhg", "rr_br_per_min", "etco2_mmhg"} <= set(header)
    units = {r["key"][len("unit:"):]: r["value"] for r in _zip_tables(path)["session.csv"]
             if r["key"].startswith("unit:")}
    assert [h.startswith(k + "_") for h, k in zip(header[2:], units)] == [True] * len(units)
    assert all(CATALOGUE[k].unit == u for k, u in units.items())


def test_every_edf_signal_has_a_physical_dimension(late_iv, tmp_path):
    store, sid = late_iv
    path = export_session(store, sid, "edf", tmp_path / "s.edf")
    with pyedflib.EdfReader(str(path)) as f:
        dims = {f.getLabel(i): f.getPhysicalDimension(i) for i in range(f.signals_in_file)}
    assert dims["Pleth"] == "a.u." and dims["ECG II"] == "mV" and dims["CO2"] == "mmHg" and dims["SpO2"] == "%"
    assert all(d.strip() for d in dims.values()), dims


def test_vigil_sessions_says_how_each_session_ended(tmp_path):
    from monitor.alarms.profile import default_profile
    from monitor.patient import Patient
    from monitor.protocols import KetamineIVPlan
    from monitor.app.recorder import SessionRecorder
    from monitor.settings import ClinicSettings
    from monitor.store import StoreWriter
    db = tmp_path / "s.sqlite"
    store = SessionStore(db)
    writer = StoreWriter(store)
    writer.start()

    def session(name: str, start, end: str | None) -> int:
        rec = SessionRecorder.start(store, writer, patient=Patient(display_name=name, weight_kg=70),
                                    plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), device="sim://",
                                    actor=NURSE, t=start, settings=ClinicSettings(), profile=default_profile())
        act(rec, "waive_pre_dose_check", start, NURSE, "test")
        act(rec, "start_infusion", start + timedelta(minutes=1), NURSE)
        if end is None:
            return rec.session_id
        act(rec, "stop_infusion", start + timedelta(minutes=40), NURSE)
        done = start + timedelta(minutes=50)
        if end == "discharge":
            act(rec, "close", done, CHARGE, override_reason="test")
            rec.finish(done, signed_name=CHARGE.display_name, meaning="reviewed and closed")
        elif end == "abort":
            act(rec, "abort", done, NURSE, "transferred")
            rec.finish(done, signed_name=NURSE.display_name, meaning="ended without discharge", status="aborted")
        else:  # as vigil record stops: no discharge sign-off
            rec.finish(done, signed_name=NURSE.display_name, meaning="recording ended")
        return rec.session_id

    ids = {end: session(f"Patient {end}", T_IV + timedelta(hours=i), end)
           for i, end in enumerate(("discharge", "abort", "stop", None))}
    assert writer.stop(30)
    store.close()
    out, err = io.StringIO(), io.StringIO()
    assert run_cli(["sessions", "--db", str(db), "--json"], out=out, err=err) == 0, err.getvalue()
    rows = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines())}
    assert {end: (rows[i]["status"], rows[i]["phase"]) for end, i in ids.items()} == {
        "discharge": ("discharged", "discharged"), "abort": ("aborted", "aborted"), "stop": ("closed", "recovery"),
        None: ("open", "infusion")}
    out = io.StringIO()
    assert run_cli(["sessions", "--db", str(db)], out=out, err=err) == 0
    line = next(x for x in out.getvalue().splitlines() if "Patient discharge" in x)
    assert " discharged " in line
