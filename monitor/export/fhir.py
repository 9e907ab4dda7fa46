"""FHIR R4 export: one transaction Bundle (JSON) for a session.

Entries (``fullUrl`` ``urn:uuid:…``, ``request`` POST to the resource type):

* ``Patient`` — name (text), MRN identifier, gender, birth date (none of them when de-identified);
* ``Encounter`` — class AMB, the session period, status finished / in-progress;
* ``Device`` — the patient monitor (its URL or label; "patient monitor" when de-identified);
* ``Practitioner`` — each member of staff named in the record (identified exports only);
* ``Observation`` (vital-signs category, ``meta.profile`` the matching FHIR vital-signs profile) —
  for each continuous vital, the median of every ``interval_s`` interval that holds usable values
  (``effectiveDateTime`` = the interval start, ``method`` says "median of N readings over 60 s"), and
  every NIBP reading as a blood-pressure panel (LOINC 85354-9) with systolic 8480-6, diastolic
  8462-4 and mean 8478-0 components. Codes: LOINC from the catalogue (SpO2 carries both 59408-5 and
  2708-6) plus the IEEE 11073 MDC code; units UCUM (/min, %, mm[Hg], Cel). Vitals LOINC has no code
  for (PI, PVI) carry a local code (``urn:vigil:vital``). Each has subject, encounter and device;
* ``Observation`` of each charted assessment (category survey, the score as ``valueInteger``) and
  event (local category "event", the summary as ``valueString``), status final, entered-in-error or
  corrected; free text (comments, notes) and, for a late entry (charted after the session ended),
  "late entry, charted … : reason" as ``note``, with ``issued`` the time it was charted;
* ``MedicationAdministration`` — IV ketamine: one for the infusion, period start–stop, dose delivered
  (mg), starting rate (mg/h), rate changes and pauses in the dosage text; esketamine: one per nasal
  device (28 mg, nasal route) referencing a ``Medication`` that carries the lot number.

De-identified bundles carry ``meta.security`` ANONYED (v3-ActCode… ObservationValue) and a tag
saying so; their ids are random, so two exports cannot be linked.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from drivers.catalogue import CATALOGUE
from monitor.app.privacy import deid_notice
from monitor.app.stats import CONTINUOUS, interval_medians
from monitor.app.readmodel import ChartRow, SessionView

__all__ = ["write_fhir", "bundle", "LOINC_DISPLAY", "PROFILES"]

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
SNOMED = "http://snomed.info/sct"
LOCAL = "urn:vigil:vital"
#: Local code systems of charted entries: the assessment or event kind, and the event category.
CHART_CODES = "urn:vigil:charted"
CHART_CATEGORY = "urn:vigil:observation-category"
VS_BASE = "http://hl7.org/fhir/StructureDefinition/"

#: Display names of the LOINC codes used.
LOINC_DISPLAY = {
    "8867-4": "Heart rate", "8889-8": "Heart rate by Pulse oximetry",
    "59408-5": "Oxygen saturation in Arterial blood by Pulse oximetry", "2708-6": "Oxygen saturation in Arterial blood",
    "9279-1": "Respiratory rate", "19889-5": "Carbon dioxide [Partial pressure] in Exhaled gas --at end expiration",
    "8310-5": "Body temperature", "85354-9": "Blood pressure panel with all children optional",
    "8480-6": "Systolic blood pressure", "8462-4": "Diastolic blood pressure", "8478-0": "Mean blood pressure",
    "20563-3": "Carboxyhemoglobin/Hemoglobin.total in Blood", "2614-3": "Methemoglobin/Hemoglobin.total in Blood",
    "718-7": "Hemoglobin [Mass/volume] in Blood",
}
#: vital → the FHIR vital-signs profile it conforms to.
PROFILES = {"hr": "heartrate", "pr": "vitalsigns", "spo2": "oxygensat", "rr": "resprate", "etco2": "vitalsigns",
            "temp": "bodytemp"}
_CATEGORY = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                          "code": "vital-signs", "display": "Vital Signs"}], "text": "Vital Signs"}]
_SECURITY = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "ANONYED",
              "display": "anonymized"}]
_GENDER = {"female": "female", "male": "male", "other": "other"}


def _iso(t: datetime | float) -> str:
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(float(t), timezone.utc)
    return t.astimezone(timezone.utc).isoformat()


def _qty(value: float, vital: str) -> dict[str, Any]:
    spec = CATALOGUE[vital]
    return {"value": round(float(value), max(spec.decimals, 2)), "unit": spec.unit, "system": UCUM, "code": spec.ucum}


def _code(vital: str) -> dict[str, Any]:
    spec = CATALOGUE[vital]
    coding = [{"system": LOINC, "code": c, "display": LOINC_DISPLAY.get(c, spec.label)} for c in spec.loinc]
    if not coding:
        coding.append({"system": LOCAL, "code": vital, "display": spec.label})
    if spec.mdc_code is not None:
        mdc = {"system": MDC, "code": str(spec.mdc_code)}
        if spec.mdc_ref is not None:
            mdc["display"] = spec.mdc_ref
        coding.append(mdc)
    return {"coding": coding, "text": spec.label}


class _Ids:
    def __init__(self, view: SessionView) -> None:
        if view.deidentified:
            self.salt = secrets.token_hex(16)
        else:
            self.salt = f"vigil:{view.store.path.name}:{view.session_id}:{view.start.timestamp()!r}"

    def __call__(self, *parts: Any) -> str:
        return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, self.salt + ":" + ":".join(map(str, parts))))


def bundle(view: SessionView, interval_s: float = 60) -> dict[str, Any]:
    """The transaction Bundle of ``view`` as a JSON-ready dict."""
    ids = _Ids(view)
    deid = view.deidentified
    entries: list[dict[str, Any]] = []
    notice = deid_notice(year_only_dates=False)
    meta: dict[str, Any] = {"security": _SECURITY, "tag": [{"system": "urn:vigil:export", "code": "deidentified",
                                                            "display": notice}]} if deid else {}

    def add(kind: str, url: str, resource: dict[str, Any]) -> str:
        body = {"resourceType": kind, **({"meta": meta} if meta else {}), **resource}
        entries.append({"fullUrl": url, "resource": body, "request": {"method": "POST", "url": kind}})
        return url

    patient_url, encounter_url, device_url = ids("patient"), ids("encounter"), ids("device")
    p = view.patient
    patient: dict[str, Any] = {"active": True, "gender": _GENDER.get(p.sex, "unknown")}
    if not deid:
        if p.mrn:
            patient["identifier"] = [{"use": "usual", "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}], "text": "Medical record number"},
                "system": "urn:vigil:mrn", "value": p.mrn}]
        if p.name:
            patient["name"] = [{"use": "official", "text": p.name}]
        if p.date_of_birth:
            patient["birthDate"] = p.date_of_birth.isoformat()
    add("Patient", patient_url, patient)

    encounter: dict[str, Any] = {
        "status": "in-progress" if view.is_open else "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [{"text": f"{view.protocol_label} session with monitoring"}],
        "subject": {"reference": patient_url},
        "period": {"start": _iso(view.start), **({} if view.is_open else {"end": _iso(view.end)})},
    }
    if not deid:
        encounter["identifier"] = [{"system": "urn:vigil:session", "value": str(view.session_id)}]
    add("Encounter", encounter_url, encounter)
    add("Device", device_url, {"deviceName": [{"name": view.device, "type": "user-friendly-name"}],
                               "type": {"text": "patient monitor"}})

    practitioners: dict[str, str] = {}
    if not deid:
        for login, (name, _role) in sorted(view.staff.items()):
            url = ids("practitioner", login)
            practitioners[name] = url
            add("Practitioner", url, {"identifier": [{"system": "urn:vigil:user", "value": login}],
                                      "name": [{"text": name}]})

    status = "preliminary" if view.is_open else "final"
    refs = {"subject": {"reference": patient_url}, "encounter": {"reference": encounter_url},
            "device": {"reference": device_url}}
    start = view.start_epoch
    for vital in CONTINUOUS:
        if vital not in view.vitals:
            continue
        t, v = view.valid(vital)
        starts, medians, counts = interval_medians(t, v, start, interval_s)
        code = _code(vital)
        profile = PROFILES.get(vital)
        for t0, value, n in zip(starts.tolist(), medians.tolist(), counts.tolist()):
            obs: dict[str, Any] = {
                "status": status, "category": _CATEGORY, "code": code, **refs,
                "effectiveDateTime": _iso(t0), "valueQuantity": _qty(value, vital),
                "method": {"text": f"median of {n} reading{'s' if n != 1 else ''} over {interval_s:g} s"},
            }
            if profile:
                obs = {"meta": {"profile": [VS_BASE + profile]}, **obs}
            add("Observation", ids("obs", vital, repr(t0)), obs)
    for i, r in enumerate(view.nibp):
        components = [{"code": _code("nibp_sys"), "valueQuantity": _qty(r.sys, "nibp_sys")},
                      {"code": _code("nibp_dia"), "valueQuantity": _qty(r.dia, "nibp_dia")}]
        if r.mean is not None:
            components.append({"code": _code("nibp_mean"), "valueQuantity": _qty(r.mean, "nibp_mean")})
        add("Observation", ids("nibp", i), {
            "meta": {"profile": [VS_BASE + "bp"]},
            "status": "entered-in-error" if r.status == "entered in error" else status,
            "category": _CATEGORY,
            "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": LOINC_DISPLAY["85354-9"]}],
                     "text": "Blood pressure"},
            **refs, "effectiveDateTime": _iso(r.t), "component": components,
            "method": {"text": "manual reading" if r.source == "manual" else "non-invasive cuff reading"},
        })

    for row in view.chart():
        add("Observation", ids("chart", row.category, row.seq, repr(row.t.timestamp())), _charted(view, row, refs))

    context = {"subject": {"reference": patient_url}, "context": {"reference": encounter_url}}
    if view.infusion:
        first = view.infusion[0]
        stop = next((r for r in view.infusion if r.action == "stop"), None)
        changes = [f"{_iso(r.t)} {r.action.replace('_', ' ')}" + (f" {r.rate_mg_per_h:g} mg/h" if r.rate_mg_per_h else "")
                   for r in view.infusion[1:] if r.action != "stop"]
        dosage: dict[str, Any] = {
            "text": f"planned {view.plan_text}" + (f"; {', '.join(changes)}" if changes else ""),
            "route": {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]},
            "dose": {"value": round(view.delivered_mg or 0.0, 3), "unit": "mg", "system": UCUM, "code": "mg"},
        }
        if first.rate_mg_per_h:
            dosage["rateQuantity"] = {"value": round(first.rate_mg_per_h, 3), "unit": "mg/h", "system": UCUM,
                                      "code": "mg/h"}
        ma: dict[str, Any] = {
            "status": "completed" if stop is not None else ("in-progress" if view.is_open else "stopped"),
            "medicationCodeableConcept": {"text": "ketamine hydrochloride, intravenous infusion"},
            **context,
            "effectivePeriod": {"start": _iso(first.t), **({"end": _iso(stop.t)} if stop else {})},
            "dosage": dosage,
        }
        if not deid and first.by in practitioners:
            ma["performer"] = [{"actor": {"reference": practitioners[first.by]}}]
        add("MedicationAdministration", ids("infusion"), ma)
    if view.devices:
        med_url = ids("medication")
        med: dict[str, Any] = {"code": {"text": "esketamine 28 mg nasal spray device"}}
        if view.lot_number:
            med["batch"] = {"lotNumber": view.lot_number}
        add("Medication", med_url, med)
        for d in view.devices:
            ma = {"status": "completed", "medicationReference": {"reference": med_url}, **context,
                  "effectiveDateTime": _iso(d.t),
                  "dosage": {"text": f"device {d.number} of {view.plan_text}",
                             "route": {"coding": [{"system": SNOMED, "code": "46713006", "display": "Nasal route"}]},
                             "dose": {"value": d.dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}}
            if not deid and d.by in practitioners:
                ma["performer"] = [{"actor": {"reference": practitioners[d.by]}}]
            add("MedicationAdministration", ids("device", d.number), ma)

    out: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction"}
    if deid:
        out["meta"] = meta
    out["entry"] = entries
    return out


_CHART_STATUS = {"current": "final", "entered in error": "entered-in-error", "correction": "corrected"}


def _charted(view: SessionView, row: ChartRow, refs: dict[str, Any]) -> dict[str, Any]:
    """An assessment (category survey, the score as valueInteger) or charted event (a local
    category, the summary as valueString) as an Observation; a late entry carries ``issued`` (when it
    was charted) and a note with its reason."""
    assessment = row.category == "assessment"
    category = ({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey",
                             "display": "Survey"}], "text": "Assessment"} if assessment else
                {"coding": [{"system": CHART_CATEGORY, "code": "event", "display": "Charted event"}],
                 "text": "Charted event"})
    obs: dict[str, Any] = {
        "status": "preliminary" if view.is_open and row.status == "current" else _CHART_STATUS.get(row.status, "final"),
        "category": [category],
        "code": {"coding": [{"system": CHART_CODES, "code": row.kind, "display": row.title}], "text": row.title},
        "subject": refs["subject"], "encounter": refs["encounter"],
        "effectiveDateTime": _iso(row.t),
    }
    if row.late and row.recorded_at is not None:
        obs["issued"] = _iso(row.recorded_at)
    if assessment and row.score is not None and float(row.score).is_integer():
        obs["valueInteger"] = int(row.score)
    else:
        obs["valueString"] = row.summary
    notes = [text for text in (row.summary if assessment else None, row.detail, row.correction,
                               view.late_text(row) if row.late else None) if text]
    if notes:
        obs["note"] = [{"text": text} for text in notes]
    return obs


def write_fhir(view: SessionView, path: Path, *, interval_s: float = 60, **_: Any) -> None:
    """Write the Bundle of ``view`` as JSON to ``path``."""
    doc = bundle(view, interval_s)
    with open(path, "w", encoding="utf-8") as fh:
        _dump(doc, fh)
        fh.write("\n")


def _dump(value: Any, fh: Any, depth: int = 0) -> None:
    """``json.dump(value, fh)`` (compact, UTF-8, no NaN) byte for byte, but the bundle and its entry
    list a piece at a time: the C encoder holds the GIL for a whole call, and one call for a 12-hour
    bundle stalled the window for 230 ms while it exported on its worker thread."""
    if depth < 2 and isinstance(value, dict):
        fh.write("{")
        for i, (key, item) in enumerate(value.items()):
            fh.write(("," if i else "") + json.dumps(key, ensure_ascii=False) + ":")
            _dump(item, fh, depth + 1)
        fh.write("}")
    elif depth < 2 and isinstance(value, list):
        fh.write("[")
        for i, item in enumerate(value):
            if i:
                fh.write(",")
            _dump(item, fh, depth + 1)
        fh.write("]")
    else:
        fh.write(json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False))


_ = np  # numpy arrays come from the view
