"""Exports read back by independent readers: FHIR (fhir.resources R4B models), HL7 v2.6 (hl7apy, strict),
EDF+ (pyedflib), CSV (the csv module), PDF (pypdfium2 renders the pages, pypdf extracts the text);
the JSON archive round trip and hostile archives; de-identification of every format; atomic writes.

Two sessions are recorded through the real recorder from the simulated patient (module fixtures):
an IV ketamine session with waveforms, alarms acknowledged by a charge nurse, charted notes,
corrections, a recording gap and an override close; and an esketamine session for the REMS form.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import zipfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from drivers.base import ConditionTracker
from drivers.model import DeviceCondition
from drivers.simulator.device import step_items
from drivers.simulator.physiology import PhysiologyModel
from monitor.alarms.profile import default_profile
from monitor.export import FORMATS, ExportError, build_long_session, export_session, import_archive
from monitor.export.archive import canonical_bytes
from monitor.patient import Patient, Sex
from monitor.protocols import EsketaminePlan, KetamineIVPlan
from monitor.app.recorder import SessionRecorder
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import ReadOnlyError, SessionStore, StoreWriter
from tests.factories import act, copy_into

fhir_bundle = pytest.importorskip("fhir.resources.R4B.bundle")
hl7_parser = pytest.importorskip("hl7apy.parser")
pyedflib = pytest.importorskip("pyedflib")
pypdf = pytest.importorskip("pypdf")
pypdfium2 = pytest.importorskip("pypdfium2")

T_IV = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
T_ESK = datetime(2026, 5, 12, 13, 0, tzinfo=timezone.utc)
NURSE = Actor(username="jdoe", display_name="Jordan Doe", role=Role.NURSE)
CHARGE = Actor(username="mkowalczyk", display_name="Marta Kowalczyk", role=Role.CHARGE_NURSE)
PATIENT = Patient(display_name="Quentin Zephyrine", mrn="MRN-884213", date_of_birth=date(1931, 2, 17),
                  sex=Sex.FEMALE, weight_kg=61)
SETTINGS = ClinicSettings(clinic_name="Harbourview Ketamine Clinic", clinic_address="12 Wharf Road, Port Elsby")
DEVICE = "sim://?scenario=desaturation&serial=SN99812"
NOTE = "Patient mentioned her neighbour Mrs Okonkwo-Blythe"
REASON = "nausea after a call from daughter Imogen"
#: Everything that identifies the test patient, the staff or the clinic (searched case-insensitively).
IDENTIFIERS = ["Quentin", "Zephyrine", "MRN-884213", "884213", "1931-02-17", "19310217", "17-FEB-1931", "17.02.31",
               "Jordan Doe", "jdoe", "Marta", "Kowalczyk", "Okonkwo", "Vexley", "Imogen", "Harbourview", "Wharf Road",
               "Elsby", "SN99812", "scenario=desaturation", "Pat Zephyrine"]


# ================================================================================= fixtures
def _record_iv(path: Path) -> tuple[SessionStore, int]:
    """20 minutes of IV ketamine with waveforms: alarms acknowledged, notes, a correction, a gap."""
    store = SessionStore(path)
    writer = StoreWriter(store)
    writer.start()
    model = PhysiologyModel("desaturation", seed=11, start=T_IV, waves=True)
    rec = SessionRecorder.start(store, writer, patient=PATIENT, plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=61),
                                device=DEVICE, actor=NURSE, t=T_IV, settings=SETTINGS, profile=default_profile())
    tracker = ConditionTracker("sim")
    done: set[str] = set()
    to_ack: list[datetime] = []
    moaas_seq = None

    def once(key: str, minute: float) -> bool:
        if key in done or model.t < minute * 60:
            return False
        done.add(key)
        return True

    while model.t < 20 * 60:
        step = model.advance(2.0)
        now = model.now()
        if 17 * 60 <= model.t < 18 * 60:  # Vigil "not recording" for a minute
            continue
        if once("gap", 18):
            writer.put_call(store.add_gap, rec.session_id, T_IV + timedelta(minutes=17), now, "Vigil was not recording")
            rec.on_items([DeviceCondition(code="stale_data", active=False, source="sim", time=now)])
        events = rec.on_items(step_items(step, "sim", tracker)) + rec.tick(now)
        to_ack += [now + timedelta(seconds=20) for e in events if e.event == "started"]
        if to_ack and now >= to_ack[0]:
            to_ack.pop(0)
            rec.acknowledge(CHARGE, now)
        if once("start", 1.5):
            act(rec, "start_infusion", now, NURSE)
        if once("moaas", 3):
            moaas_seq = act(rec, "chart", {"kind": "moaas", "level": 5}, now, NURSE)[0].seq
        if once("cadss", 5):
            act(rec, "chart", {"kind": "cadss6", "items": {1: 1, 2: 0, 6: 0, 7: 1, 15: 0, 22: 0}}, now, NURSE)
        if once("pause", 6):
            act(rec, "pause_infusion", now, NURSE, REASON)
        if once("resume", 7):
            act(rec, "resume_infusion", now, NURSE)
        if once("rate", 8):
            act(rec, "change_rate", now, NURSE, 40.0, "slowed for comfort")
        if once("rescue", 9):
            act(rec, "record_event", {"kind": "rescue_medication", "drug": "ondansetron", "dose": 4, "dose_unit": "mg",
                                     "route": "IV", "given_by": "Dr Vexley"}, now, NURSE)
        if once("note", 10):
            act(rec, "record_event", {"kind": "note", "text": NOTE}, now, NURSE)
            act(rec, "record_event", {"kind": "nausea", "severity": "mild", "comment": "after Imogen called"}, now, NURSE)
        if once("correct", 11):
            act(rec, "correct", moaas_seq, "charted on the wrong line", now, NURSE, {"kind": "moaas", "level": 4})
        if once("stop", 16):
            act(rec, "stop_infusion", now, NURSE, "stopped early: desaturation")
        if once("aldrete", 19):
            act(rec, "chart", {"kind": "aldrete", "activity": 2, "respiration": 1, "circulation": 2, "consciousness": 2,
                              "oxygen_saturation": 1}, now, NURSE)
        if once("escort", 19.5):
            act(rec, "confirm_escort", now, NURSE, "Pat Zephyrine")
    now = model.now()
    act(rec, "close", now, CHARGE, override_reason="transferred to the ED, seen by Dr Vexley")
    rec.finish(now, signed_name=CHARGE.display_name, meaning="reviewed and closed")
    assert writer.stop(30)
    return store, rec.session_id


def _record_esketamine(path: Path) -> tuple[SessionStore, int]:
    """130 minutes of esketamine (two devices) without waveforms."""
    store = SessionStore(path)
    writer = StoreWriter(store)
    writer.start()
    model = PhysiologyModel("normal", seed=3, start=T_ESK, waves=False)
    rec = SessionRecorder.start(store, writer, patient=PATIENT, plan=EsketaminePlan(dose_mg=56, lot_number="LOT7731X"),
                                device=DEVICE, actor=NURSE, t=T_ESK, settings=SETTINGS, profile=default_profile())
    tracker = ConditionTracker("sim")
    done: set[str] = set()

    def once(key: str, minute: float) -> bool:
        if key in done or model.t < minute * 60:
            return False
        done.add(key)
        return True

    while model.t < 130 * 60:
        step = model.advance(10.0)
        now = model.now()
        rec.on_items(step_items(step, "sim", tracker))
        rec.tick(now)
        if once("conc", 1):
            act(rec, "record_concomitant", now, NURSE, {"benzodiazepines": True, "psychostimulants": False,
                                                         "other": "sertraline from Dr Vexley"})
        if once("d1", 1.5):
            act(rec, "log_nasal_device", now, NURSE)
        if once("d2", 7):
            act(rec, "log_nasal_device", now, NURSE)
        if once("moaas", 20):
            act(rec, "chart", {"kind": "moaas", "level": 4}, now, NURSE)
        if once("cadss", 40):
            act(rec, "chart", {"kind": "cadss6", "items": {1: 1, 2: 0, 6: 0, 7: 1, 15: 0, 22: 0}}, now, NURSE)
        if once("note", 45):
            act(rec, "record_event", {"kind": "note", "text": NOTE}, now, NURSE)
        if once("aldrete", 70):
            act(rec, "chart", {"kind": "aldrete", "activity": 2, "respiration": 2, "circulation": 2, "consciousness": 2,
                              "oxygen_saturation": 2}, now, NURSE)
        if once("escort", 75):
            act(rec, "confirm_escort", now, NURSE, "Pat Zephyrine")
        if once("stable", 125):
            act(rec, "sign_clinically_stable", now, NURSE)
    now = model.now()
    act(rec, "close", now, NURSE)
    rec.finish(now, signed_name=NURSE.display_name, meaning="reviewed and closed")
    assert writer.stop(30)
    return store, rec.session_id


def recorded_db(made_once, record) -> Path:
    """The database of the session ``record`` (:func:`_record_iv`, :func:`_record_esketamine`) writes,
    its only session, recorded once per test run (conftest's ``made_once``): copy it before use."""
    def make(path: Path) -> None:
        store, _ = record(path)
        store.close()

    return made_once(f"{record.__name__}.sqlite", make)


def recorded(made_once, record, folder: Path) -> tuple[SessionStore, int]:
    """The store (open) and session id of a copy in ``folder`` of :func:`recorded_db`."""
    store = SessionStore(copy_into(recorded_db(made_once, record), folder))
    [session] = store.list_sessions()
    return store, session.id


@pytest.fixture(scope="module")
def iv(tmp_path_factory, made_once):
    store, sid = recorded(made_once, _record_iv, tmp_path_factory.mktemp("iv"))
    yield store, sid
    store.close()


@pytest.fixture(scope="module")
def esk(tmp_path_factory, made_once):
    store, sid = recorded(made_once, _record_esketamine, tmp_path_factory.mktemp("esk"))
    yield store, sid
    store.close()


@pytest.fixture()
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _norm(text: str) -> str:
    return " ".join(text.split())


def _pdf_text(path: Path) -> list[str]:
    return [_norm(page.extract_text()) for page in pypdf.PdfReader(path).pages]


def _render_png(path: Path, folder: Path) -> list[Path]:
    """Render every page with pdfium and save it as PNG (QImage writes the file)."""
    from PySide6.QtGui import QImage
    doc = pypdfium2.PdfDocument(str(path))
    pngs = []
    for i in range(len(doc)):
        pixels = np.ascontiguousarray(doc[i].render(scale=0.6).to_numpy())
        h, w, channels = pixels.shape
        assert channels in (3, 4)
        fmt = QImage.Format.Format_BGR888 if channels == 3 else QImage.Format.Format_RGB32
        image = QImage(pixels.tobytes(), w, h, pixels.strides[0], fmt).copy()
        png = folder / f"page{i + 1}.png"
        assert image.save(str(png))
        assert pixels.std() > 5, "the page rendered blank"
        pngs.append(png)
    doc.close()
    return pngs


# ================================================================================= arguments, atomicity
def test_bad_arguments_are_refused_with_a_clear_message(iv, esk, out):
    store, sid = iv
    with pytest.raises(ExportError, match="no session 999"):
        export_session(store, 999, "csv", out / "x.zip")
    with pytest.raises(ExportError, match="unknown export format 'xls'"):
        export_session(store, sid, "xls", out / "x.xls")
    with pytest.raises(ExportError, match="REMS .* esketamine"):
        export_session(store, sid, "rems", out / "x.pdf")
    with pytest.raises(ExportError, match="does not exist"):
        export_session(store, sid, "csv", out / "missing" / "x.zip")
    with pytest.raises(ExportError, match="it is a folder"):
        export_session(store, sid, "csv", out)
    with pytest.raises(ExportError, match="interval_s"):
        export_session(store, sid, "csv", out / "x.zip", interval_s=0)
    with pytest.raises(ExportError, match="paper"):
        export_session(store, sid, "pdf", out / "x.pdf", paper="A3")
    assert list(out.iterdir()) == []


def test_a_failing_writer_leaves_no_file_and_keeps_the_old_one(iv, out, monkeypatch):
    store, sid = iv
    import monitor.export.csv_export as csv_export

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(csv_export, "_wide", boom)  # fails after numerics_long.csv was written
    with pytest.raises(ExportError, match="disk on fire"):
        export_session(store, sid, "csv", out / "x.zip")
    assert list(out.iterdir()) == []
    (out / "x.zip").write_bytes(b"previous export")
    with pytest.raises(ExportError, match="disk on fire"):
        export_session(store, sid, "csv", out / "x.zip", overwrite=True)
    assert [p.name for p in out.iterdir()] == ["x.zip"] and (out / "x.zip").read_bytes() == b"previous export"


# ================================================================================= CSV
def _zip_tables(path: Path) -> dict[str, list[dict[str, str]]]:
    with zipfile.ZipFile(path) as z:
        return {name: list(csv.DictReader(io.StringIO(z.read(name).decode("utf-8"), newline="")))
                for name in z.namelist()}


def test_csv_tables_hold_the_stored_values(iv, out):
    store, sid = iv
    path = export_session(store, sid, "csv", out / "s.zip", interval_s=60)
    tables = _zip_tables(path)
    assert {"session.csv", "numerics_long.csv", "numerics_wide.csv", "nibp.csv", "events.csv", "assessments.csv",
            "infusion_steps.csv", "alarms.csv", "gaps.csv"} <= set(tables)
    info = {r["key"]: r["value"] for r in tables["session.csv"]}
    assert info["patient"] == "Quentin Zephyrine" and info["mrn"] == "MRN-884213" and info["deidentified"] == "no"

    long = tables["numerics_long.csv"]
    assert len(long) == store.get_session(sid).n_observations
    for vital in ("hr", "spo2", "nibp_sys"):
        t, v = store.numerics(sid, vital)
        rows = [r for r in long if r["vital"] == vital]
        assert [float(r["value"]) if r["value"] else np.nan for r in rows] == pytest.approx(v.tolist(), nan_ok=True)
        assert [datetime.fromisoformat(r["time"]).timestamp() for r in rows] == pytest.approx(t.tolist(), abs=1e-6)
        assert all(r["time"].endswith("+00:00") for r in rows)

    wide = tables["numerics_wide.csv"]
    t, v, q = store.numerics(sid, "hr", with_quality=True)
    start = T_IV.timestamp()
    for row in wide[3:6]:
        t0 = datetime.fromisoformat(row["time"]).timestamp()
        sel = (t >= t0) & (t < t0 + 60) & ~np.isnan(v) & (q & ~((1 << 9) | (1 << 10)) == 0)
        assert float(row["hr_bpm"]) == pytest.approx(float(np.median(v[sel])))
    t_sys, v_sys = store.numerics(sid, "nibp_sys")
    for ts, value in zip(t_sys, v_sys):
        row = wide[int((ts - start) // 60)]
        assert float(row["nibp_sys_mmhg"]) == value

    alarms = tables["alarms.csv"]
    assert alarms and alarms[0]["condition"] == "spo2_low"
    assert alarms[0]["acknowledged_by"] == "Marta Kowalczyk" and alarms[0]["acknowledged_at"]
    steps = [r["action"] for r in tables["infusion_steps.csv"]]
    assert steps == ["start", "pause", "resume", "rate_change", "stop"]
    events = tables["events.csv"]
    assert any(NOTE in r["detail"] for r in events)
    assessments = tables["assessments.csv"]
    assert [r["status"] for r in assessments if r["kind"] == "moaas"] == ["entered in error", "correction"]
    assert len(tables["gaps.csv"]) == 1


# ================================================================================= PDF
def test_pdf_report_pages_render_and_carry_name_alarms_and_signature(iv, out, qapp):
    store, sid = iv
    a4 = export_session(store, sid, "pdf", out / "a4.pdf", paper="A4")
    letter = export_session(store, sid, "pdf", out / "letter.pdf", paper="Letter")
    for path, size in ((a4, (595, 842)), (letter, (612, 792))):
        reader = pypdf.PdfReader(path)
        assert all((round(float(p.mediabox.width)), round(float(p.mediabox.height))) == size for p in reader.pages)
    pngs = _render_png(a4, out)
    pages = _pdf_text(a4)
    assert len(pngs) == len(pages) >= 2
    for i, text in enumerate(pages, start=1):
        assert "Quentin Zephyrine" in text and f"Page {i} of {len(pages)}" in text
    text = " ".join(pages)
    assert "MRN-884213" in text and "1931-02-17" in text and "Harbourview Ketamine Clinic" in text
    log = text[text.index("Alarm log"):text.index("Summary")]
    assert "SpO2 low" in log and "Marta Kowalczyk at" in log
    sig = text[text.rindex("Signature"):]
    assert "Marta Kowalczyk" in sig and "reviewed and closed" in sig
    assert "Discharge criteria" in text and "NIBP flowsheet" in text
    assert NOTE.replace(" ", "") in text.replace(" ", "")  # wrapped in its table cell


# ================================================================================= FHIR
def test_fhir_bundle_validates_with_r4b_models(iv, out):
    store, sid = iv
    if store.get_user("zoe") is None:
        store.add_user("zoe", "Zoe Unrelated", "nurse", None, by=None)  # an account with no part in the session
    path = export_session(store, sid, "fhir", out / "b.json", interval_s=60)
    raw = path.read_text(encoding="utf-8")
    bundle = fhir_bundle.Bundle.model_validate_json(raw)
    assert bundle.type == "transaction"
    doc = json.loads(raw)
    urls = {e["fullUrl"] for e in doc["entry"]}
    assert all(u.startswith("urn:uuid:") for u in urls)
    kinds = [e["resource"]["resourceType"] for e in doc["entry"]]
    assert {"Patient", "Encounter", "Device", "Observation", "MedicationAdministration"} <= set(kinds)
    obs = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Observation"
           and e["resource"]["category"][0]["coding"][0]["code"] == "vital-signs"]  # charted entries: see below
    for o in obs:
        assert o["effectiveDateTime"] and {o["subject"]["reference"], o["encounter"]["reference"],
                                           o["device"]["reference"]} <= urls
        assert o["category"][0]["coding"][0]["code"] == "vital-signs"
    spo2 = [o for o in obs if any(c["code"] == "59408-5" for c in o["code"]["coding"])]
    assert spo2 and all({"59408-5", "2708-6"} <= {c["code"] for c in o["code"]["coding"]} for o in spo2)
    assert spo2[0]["valueQuantity"]["code"] == "%" and spo2[0]["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    hr = [o for o in obs if o["code"]["coding"][0]["code"] == "8867-4"]
    assert hr and hr[0]["valueQuantity"]["code"] == "/min"
    bp = [o for o in obs if o["code"]["coding"][0]["code"] == "85354-9"]
    assert len(bp) == len([r for r in store.entries(sid) if r.payload.get("type") == "nibp"])
    assert {c["code"]["coding"][0]["code"] for c in bp[0]["component"]} >= {"8480-6", "8462-4"}
    assert bp[0]["component"][0]["valueQuantity"]["code"] == "mm[Hg]"
    # the minute medians: one HR observation per minute with data (the gap minute has none)
    assert 17 <= len(hr) <= 21
    [ma] = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "MedicationAdministration"]
    assert ma["status"] == "completed" and ma["dosage"]["dose"]["unit"] == "mg" and ma["effectivePeriod"]["end"]
    patient = next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["name"][0]["text"] == "Quentin Zephyrine" and patient["birthDate"] == "1931-02-17"
    staff = sorted(e["resource"]["name"][0]["text"] for e in doc["entry"]
                   if e["resource"]["resourceType"] == "Practitioner")
    assert staff == ["Jordan Doe", "Marta Kowalczyk"]
    assert ma["performer"][0]["actor"]["reference"] in urls


def test_fhir_esketamine_devices_and_lot(esk, out):
    store, sid = esk
    doc = json.loads(export_session(store, sid, "fhir", out / "e.json").read_text(encoding="utf-8"))
    fhir_bundle.Bundle.model_validate(doc)
    mas = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "MedicationAdministration"]
    [med] = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Medication"]
    assert len(mas) == 2 and all(m["dosage"]["dose"]["value"] == 28 for m in mas)
    assert med["batch"]["lotNumber"] == "LOT7731X"


# ================================================================================= HL7
def test_hl7_oru_parses_strictly_with_hl7apy(iv, out):
    from hl7apy.consts import VALIDATION_LEVEL
    store, sid = iv
    path = export_session(store, sid, "hl7", out / "m.hl7", interval_s=300)
    raw = path.read_bytes().decode("utf-8")
    assert "\n" not in raw and raw.count("\r") > 10
    msg = hl7_parser.parse_message(raw, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert msg.validate()
    assert msg.MSH.msh_12.value == "2.6" and msg.MSH.msh_9.value == "ORU^R01^ORU_R01"
    assert msg.MSH.msh_21.value.startswith("IHE_PCD_001")
    result = msg.ORU_R01_PATIENT_RESULT
    assert result.ORU_R01_PATIENT.PID.pid_5.value.startswith("Quentin Zephyrine")
    groups = result.ORU_R01_ORDER_OBSERVATION
    assert all(g.OBR.obr_4.value == "182777000^monitoring of patient^SCT" for g in groups)
    obx = [o.OBX for g in groups for o in g.ORU_R01_OBSERVATION]
    codes = {o.obx_3.value for o in obx}
    assert "150456^MDC_PULS_OXIM_SAT_O2^MDC" in codes and "150021^MDC_PRESS_BLD_NONINV_SYS^MDC" in codes
    spo2 = next(o for o in obx if o.obx_3.value.startswith("150456"))
    assert spo2.obx_6.value == "262688^MDC_DIM_PERCENT^MDC" and spo2.obx_14.value and spo2.obx_18.value.endswith("EUI-64")
    nibp = [g for g in groups if any(o.OBX.obx_3.value.startswith("150021") for o in g.ORU_R01_OBSERVATION)]
    assert len(nibp) == len([e for e in store.entries(sid) if e.payload.get("type") == "nibp"])


# ================================================================================= EDF+
def test_edf_reads_back_with_pyedflib(iv, esk, out):
    store, sid = iv
    path = export_session(store, sid, "edf", out / "s.edf")  # the default: EDF+C, what edflib can read
    assert path.read_bytes()[192:197] == b"EDF+C"
    f = pyedflib.EdfReader(str(path))
    try:
        labels = f.getSignalLabels()
        assert labels[:3] == ["ECG II", "Pleth", "CO2"] and "SpO2" in labels
        assert f.filetype == pyedflib.FILETYPE_EDFPLUS
        assert f.getPatientName() == "Quentin Zephyrine" and f.getPatientCode() == "MRN-884213"
        assert path.read_bytes()[8:88].decode("ascii").split() == ["MRN-884213", "F", "17-FEB-1931", "Quentin_Zephyrine"]
        record = store.get_session(sid)
        for i, channel in enumerate(("ecg", "pleth", "co2")):
            stored = store.waveform(sid, channel, record.started_at, record.ended_at)
            signal = f.readSignal(i)
            rate = f.getSampleFrequency(i)
            idx = np.round((stored.t - T_IV.timestamp()) * rate).astype(int)
            ok = ~np.isnan(stored.values)
            step = (f.getPhysicalMaximum(i) - f.getPhysicalMinimum(i)) / 65535
            assert ok.sum() > 0.9 * len(ok)
            assert np.max(np.abs(signal[idx[ok]] - stored.values[ok])) <= step * 1.01
        spo2 = labels.index("SpO2")
        t, v = store.numerics(sid, "spo2")
        assert f.readSignal(spo2)[np.floor(t - T_IV.timestamp()).astype(int)] == pytest.approx(v, abs=0.01)
        onsets, durations, texts = f.readAnnotations()
        text = " | ".join(texts)
        assert "Infusion start" in text and "MOAA/S 4" in text and "Alarm MEDIUM->HIGH: SpO2 low" in text
        assert "acknowledge" in text and NOTE in text and "Recording gap" in text
        alarm = next(i for i, t in enumerate(texts) if t.startswith("Alarm MEDIUM->HIGH"))
        first = store.alarms(sid)[0]
        assert onsets[alarm] == pytest.approx((first.started_at - T_IV).total_seconds(), abs=1e-3)
        assert durations[alarm] == pytest.approx((first.ended_at - first.started_at).total_seconds(), abs=1e-3)
    finally:
        f.close()

    # on request, a session with a gap as EDF+D without the records inside it (edflib reads no EDF+D)
    path = export_session(store, sid, "edf", out / "d.edf", edf_gaps="drop")
    header, records = _edf_parse(path.read_bytes())
    assert header["reserved"] == "EDF+D" and header["duration"] == 1.0
    starts = [onset for onset, _, text in _edf_annotations(header, records) if text == ""]
    assert len(starts) == len(records) == header["n_records"]
    jumps = [(a, b) for a, b in zip(starts, starts[1:]) if b - a != 1.0]
    assert jumps == [(17 * 60 - 1, 18 * 60)] or jumps == [(17 * 60, 18 * 60)]
    with pytest.raises(OSError, match="discontinuous"):
        pyedflib.EdfReader(str(path))

    store, sid = esk
    path = export_session(store, sid, "edf", out / "e.edf")
    assert path.read_bytes()[192:197] == b"EDF+C"
    with pyedflib.EdfReader(str(path)) as g:
        assert "SpO2" in g.getSignalLabels() and g.getFileDuration() >= 129 * 60
        assert any("Nasal device 2" in t for t in g.readAnnotations()[2])


# ================================================================================= JSON archive
def _dump(path: Path) -> dict[str, list]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in sorted(tables)}
    finally:
        conn.close()


def test_json_export_import_export_is_byte_identical(iv, tmp_path):
    store, sid = iv
    first = export_session(store, sid, "json", tmp_path / "a.json")
    other = SessionStore(tmp_path / "other.sqlite")
    try:
        other.create_session(patient={"display_name": "Someone Else"}, protocol="ketamine-iv", plan={}, device="x",
                             user="zed", started_at=T_IV)
        new = import_archive(other, first, user="importer")
        assert new == 2
        again = export_session(other, new, "json", tmp_path / "b.json")
        assert first.read_bytes() == again.read_bytes()
        record, original = other.get_session(new), store.get_session(sid)
        assert (record.status, record.started_at, record.ended_at, record.signed_name) == \
               (original.status, original.started_at, original.ended_at, original.signed_name)
        with pytest.raises(ReadOnlyError):
            other.add_gap(new, T_IV, T_IV, "x")
        assert other.verify_audit().ok
        assert [r.action for r in other.audit_rows(new)] == ["session_imported"]
        record_ecg = other.waveform(new, "ecg", record.started_at, record.ended_at).values
        assert np.array_equal(record_ecg, store.waveform(sid, "ecg", original.started_at, original.ended_at).values,
                              equal_nan=True)
        with pytest.raises(ExportError, match="already in the store as session 2"):
            import_archive(other, first)
    finally:
        other.close()


def _hostile(doc: dict) -> list[tuple[str, bytes]]:
    good = canonical_bytes(doc)

    def mutate(fn) -> bytes:
        d = json.loads(good)
        fn(d)
        return json.dumps(d).encode()

    def set_(path: str, value):
        def fn(d):
            keys = path.split(".")
            for k in keys[:-1]:
                d = d[int(k)] if k.isdigit() else d[k]
            d[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
        return fn

    block = doc["waveforms"][0]
    return [
        ("not JSON", b"\x00\x01garbage"),
        ("not UTF-8", b"\xff\xfe{}"),
        ("a list", b"[1, 2, 3]"),
        ("wrong format", mutate(set_("format", "something-else"))),
        ("wrong version", mutate(set_("version", 2))),
        ("de-identified", mutate(set_("deidentified", True))),
        ("missing field", mutate(lambda d: d["session"].pop("started_at"))),
        ("wrong type", mutate(set_("session.started_at", "yesterday"))),
        ("huge integer", good.replace(b'"n_alarms":', b'"n_alarms":1' + b"0" * 5000 + b",\"x\":")),
        ("NaN", good.replace(b'"value":', b'"value":NaN,"y":', 1)),
        ("deep nesting", b'{"format":"vigil-session-archive","version":1,"x":' + b"[" * 200_000 + b"]" * 200_000 + b"}"),
        ("duplicate key", good.replace(b'{"alarm_actions"', b'{"format":"x","alarm_actions"', 1)),
        ("open session", mutate(set_("session.status", "open"))),
        ("bad vital", mutate(set_("observations.rows.0.1", "blood_alcohol"))),
        ("time as text", mutate(set_("observations.rows.5.0", "12:00"))),
        ("gigantic block", mutate(set_("waveforms.0.n", 10 ** 9))),
        ("block inflating", mutate(set_("waveforms.0.n", block["n"] - 1))),
        ("bad base64", mutate(set_("waveforms.0.data", "not base64!!"))),
        ("unknown encoding", mutate(set_("waveforms.0.enc", 7))),
        ("future amendment", mutate(set_("entries.2.amends", 5))),
        ("tampered audit", mutate(set_("audit.0.payload.protocol", "esketamine"))),
        ("count mismatch", mutate(set_("session.n_observations", 3))),
        ("bad entry", mutate(set_("entries.0.payload.patient", {"display_name": ""}))),
        ("far future", mutate(set_("alarms.0.started_at", 9.9e15))),
        ("NUL in text", mutate(set_("session.device", "sim\x00"))),
    ]


def test_hostile_archives_are_refused_and_change_nothing(iv, tmp_path):
    store, sid = iv
    good = export_session(store, sid, "json", tmp_path / "good.json")
    doc = json.loads(good.read_bytes())
    target = SessionStore(tmp_path / "target.sqlite")
    try:
        target.create_session(patient={"display_name": "Other"}, protocol="ketamine-iv", plan={}, device="x",
                              user="zed", started_at=T_IV)
        before = _dump(target.path)
        for name, data in _hostile(doc):
            bad = tmp_path / "bad.json"
            bad.write_bytes(data)
            with pytest.raises(ExportError) as caught:
                import_archive(target, bad)
            assert str(caught.value), name
            assert _dump(target.path) == before, name
        # path tricks: a folder, a device behind a symlink, a pipe, a file over the size limit, a missing file
        (tmp_path / "link.json").symlink_to("/dev/zero")
        os.mkfifo(tmp_path / "fifo.json")
        for path, pattern in ((tmp_path, "not a regular file"), (tmp_path / "link.json", "not a regular file"),
                              (tmp_path / "fifo.json", "not a regular file"), (tmp_path / "nope.json", "no file")):
            with pytest.raises(ExportError, match=pattern):
                import_archive(target, path)
        with pytest.raises(ExportError, match="larger than"):
            import_archive(target, good, max_bytes=1000)
        assert _dump(target.path) == before
        assert import_archive(target, good) == 2  # the genuine archive still imports
    finally:
        target.close()


# ================================================================================= REMS
def test_rems_form_is_one_page_with_the_form_items(esk, iv, out, qapp):
    store, sid = esk
    path = export_session(store, sid, "rems", out / "rems.pdf", paper="Letter")
    [page] = _pdf_text(path)
    _render_png(path, out)
    assert "Quentin Zephyrine" in page and "1931-02-17" in page and "female" in page
    assert "Benzodiazepines Yes" in page and "Psychostimulants No" in page
    assert "Monitoring clinician Jordan Doe" in page and "Harbourview Ketamine Clinic" in page and "12 Wharf Road" in page
    assert "LOT7731X" in page and "56 mg planned; 56 mg taken (2 devices)" in page
    assert re.search(r"end of monitoring \d{3} min \(first device", page)
    ready = re.search(r"Ready to leave without the 2-hour rule (\d\d:\d\d), (\d+) min after the first device", page)
    assert ready and 70 <= int(ready.group(2)) <= 80  # escort at 75 min was the last criterion met
    assert "Vital signs acceptable before administration Yes" in page
    assert "At about 40 minutes" in page and "Sedation Yes (MOAA/S 4" in page and "Dissociation Yes" in page
    assert "Respiratory depression No" in page


# ================================================================================= de-identification
def _texts(fmt: str, path: Path) -> tuple[str, str]:
    """(decoded text, raw bytes as text) of an export. The decoded text is what a reader shows (zip
    members, PDF text and metadata, EDF header and annotations, JSON without the base64 waveform
    samples) and is searched for every identifier; the raw bytes hold binary data (compressed
    streams, samples) in which short strings occur by chance, so only long identifiers are searched
    there."""
    raw = path.read_bytes()
    binary = raw.decode("latin-1")
    if fmt == "csv":
        with zipfile.ZipFile(path) as z:
            text = "\n".join([z.read(n).decode("utf-8") for n in z.namelist()] + [z.comment.decode("utf-8")])
    elif fmt in ("pdf", "rems"):
        reader = pypdf.PdfReader(path)
        text = "\n".join([p.extract_text() for p in reader.pages] + [str(reader.metadata)])
    elif fmt == "edf":
        header, records = _edf_parse(raw)
        text = raw[:header["bytes"]].decode("ascii") + "\n" + "\n".join(t for _, _, t in _edf_annotations(header, records))
    elif fmt == "json":
        doc = json.loads(raw)
        for block in doc["waveforms"]:
            block["data"] = ""
        text = json.dumps(doc, ensure_ascii=False)
    else:
        text = raw.decode("utf-8")
    return text, binary


def _edf_parse(raw: bytes) -> tuple[dict, list[bytes]]:
    """A minimal EDF+ reader (independent of the writer): header fields and the raw data records."""
    ns = int(raw[252:256])
    n_records, duration = int(raw[236:244]), float(raw[244:252])

    def field(offset: int, width: int) -> list[str]:
        base = 256 + offset * ns
        return [raw[base + i * width: base + (i + 1) * width].decode("ascii").strip() for i in range(ns)]

    labels = field(0, 16)
    spr = [int(x) for x in field(216, 8)]
    size = 2 * sum(spr)
    start = 256 * (ns + 1)
    assert len(raw) == start + n_records * size
    header = {"bytes": start, "ns": ns, "n_records": n_records, "duration": duration, "labels": labels, "spr": spr,
              "reserved": raw[192:236].decode("ascii").strip(), "patient": raw[8:88].decode("ascii").strip()}
    return header, [raw[start + i * size: start + (i + 1) * size] for i in range(n_records)]


def _edf_annotations(header: dict, records: list[bytes]) -> list[tuple[float, float | None, str]]:
    """Every TAL of the "EDF Annotations" signal: (onset, duration, text); the time-keeping TAL of
    each record comes first, with empty text."""
    index = header["labels"].index("EDF Annotations")
    offset = 2 * sum(header["spr"][:index])
    out = []
    for record in records:
        blob = record[offset: offset + 2 * header["spr"][index]]
        for tal in blob.split(b"\x00"):
            if not tal:
                continue
            head, *texts = tal.split(b"\x14")
            onset, _, duration = head.partition(b"\x15")
            for text in (texts[:-1] or [b""]) if texts else [b""]:
                out.append((float(onset), float(duration) if duration else None, text.decode("utf-8")))
    return out


def _original_times(store: SessionStore, sid: int) -> list[str]:
    record = store.get_session(sid)
    times = [record.started_at, record.ended_at] + [e.t for e in store.entries(sid)] + \
            [a.started_at for a in store.alarms(sid)]
    day = record.started_at  # only this session's own date: the other fixture's may be where the shift lands
    out = {day.date().isoformat(), day.strftime("%Y%m%d"), day.strftime("%d.%m.%y"), day.strftime("%d-%b-%Y").upper()}
    for t in times:
        out |= {t.isoformat()[:19], t.strftime("%Y%m%d%H%M%S"), t.astimezone().strftime("%H:%M:%S"),
                repr(t.timestamp())[:12]}
    return sorted(out)


def _holds(text: str, identifier: str) -> bool:
    """``identifier`` in ``text``; one of digits only as a number of its own (the MRN's six digits
    turned up by chance inside a longer number of a de-identified JSON export, whose times are
    shifted by a random offset: a failure of one full run)."""
    if identifier.isdigit():
        return re.search(rf"(?<![0-9]){identifier}(?![0-9])", text) is not None
    return identifier in text


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_deidentified_exports_hold_no_identifier(fmt, iv, esk, out, qapp):
    store, sid = esk if fmt == "rems" else iv
    path = export_session(store, sid, fmt, out / f"d{FORMATS[fmt].suffix}", deidentify=True)
    text, binary = _texts(fmt, path)
    lower, binary_lower = text.lower(), binary.lower()
    leaks = [x for x in IDENTIFIERS if _holds(lower, x.lower()) or (len(x) >= 8 and _holds(binary_lower, x.lower()))]
    assert not leaks, f"{fmt} export leaks {leaks}"
    leaked_times = [x for x in _original_times(store, sid) if x in text or (len(x) >= 10 and x in binary)]
    assert not leaked_times, f"{fmt} export leaks the times {leaked_times}"
    assert "de-identified" in lower or "deidentified" in lower or fmt == "edf"
    if fmt == "edf":
        assert path.read_bytes()[8:16] == b"X X X X " and b"De-identified" in path.read_bytes()
    if fmt == "csv":
        info = {r["key"]: r["value"] for r in _zip_tables(path)["session.csv"]}
        assert info["age_years"] == "90+" and info["date"] == "2026" and info["deidentified"] == "yes"
    if fmt == "json":
        doc = json.loads(path.read_bytes())
        assert doc["deidentified"] is True and doc["session"]["patient"]["age"] == "90+" and doc["audit"] == []
        shifted = doc["session"]["started_at"] - store.get_session(sid).started_at.timestamp()
        assert abs(shifted) >= 86400 and datetime.fromtimestamp(doc["session"]["started_at"], timezone.utc).year == 2026
    if fmt == "fhir":
        fhir_bundle.Bundle.model_validate_json(path.read_text(encoding="utf-8"))
    if fmt in ("pdf", "rems"):
        pages = _pdf_text(path)
        assert all("De-identified" in p for p in pages)


def test_one_offset_per_export_keeps_the_intervals(iv, out):
    store, sid = iv
    doc = json.loads(export_session(store, sid, "json", out / "a.json", deidentify=True).read_bytes())
    again = json.loads(export_session(store, sid, "json", out / "b.json", deidentify=True).read_bytes())
    shift = doc["session"]["started_at"] - store.get_session(sid).started_at.timestamp()
    assert shift != again["session"]["started_at"] - store.get_session(sid).started_at.timestamp()
    stored = [e.t.timestamp() for e in store.entries(sid, order="recorded")]
    assert [e["t"] - shift for e in doc["entries"]] == pytest.approx(stored, abs=1e-5)
    hr = [r[0] - shift for r in doc["observations"]["rows"] if r[1] == "hr"]
    assert hr == pytest.approx(store.numerics(sid, "hr")[0].tolist(), abs=1e-5)
    alarms = [a["started_at"] - shift for a in doc["alarms"]]
    assert alarms == pytest.approx([a.started_at.timestamp() for a in store.alarms(sid)], abs=1e-5)


# ================================================================================= the benchmark builder
@pytest.mark.slow  # a long session in every format
def test_synthetic_long_session_exports(tmp_path, qapp):
    store = SessionStore(tmp_path / "long.sqlite")
    try:
        sid = build_long_session(store, hours=2, seed=1, waves=True, events=40)
        record = store.get_session(sid)
        assert record.status == "closed" and record.n_observations > 2 * 3600 * 7
        assert store.waveform_channels(sid) == ["ecg", "pleth", "co2"]
        for fmt in ("csv", "pdf", "fhir", "edf"):
            assert export_session(store, sid, fmt, tmp_path / f"long{FORMATS[fmt].suffix}").stat().st_size > 1000
        tables = _zip_tables(tmp_path / "long.zip")
        assert len(tables["events.csv"]) + len(tables["assessments.csv"]) == 40 + 1  # + the discharge Aldrete
    finally:
        store.close()


def test_pdf_alarm_bars_stay_inside_their_chart(tmp_path, qapp):
    """An alarm that started before the session (adopted at its start: "alarm audio unavailable" from
    the start-up) is drawn from the chart's left edge, not into the axis labels and the page margin."""
    from PySide6.QtCore import QSize
    from PySide6.QtGui import QColor, QImage
    from PySide6.QtPdf import QPdfDocument

    from tests.test_export_golden import T0, open_session_with_a_gap

    with SessionStore(tmp_path / "s.sqlite") as store:
        sid = open_session_with_a_gap(store)
        store.alarm_started(sid, condition="audio_unavailable", kind="technical", priority="MEDIUM",
                            started_at=T0 - timedelta(minutes=10), limit=None, value=None,
                            message="Alarm audio unavailable: no sound output")
        path = export_session(store, sid, "pdf", tmp_path / "s.pdf")
    document = QPdfDocument()
    document.load(str(path))
    image = document.render(0, QSize(1240, 1754))      # A4 at 150 dpi
    medium, grid = QColor("#f0ad00"), QColor("#d0d0d0")

    rgb = image.convertToFormat(QImage.Format.Format_RGB32)    # 0xffRRGGBB per pixel, one array for numpy
    pixels = np.frombuffer(rgb.constBits(), np.uint32).reshape(rgb.height(), rgb.bytesPerLine() // 4)

    def xs(colour: QColor) -> list[int]:
        """The x of every pixel of ``colour`` in the left half, every other row."""
        return np.nonzero(pixels[::2, :rgb.width() // 2] == colour.rgb())[1].tolist()

    bars, lines = xs(medium), xs(grid)
    assert bars and lines
    assert min(bars) >= min(lines) - 1     # the bar starts where the chart does
