"""HL7 v2.6 export: one ORU^R01 message in the style of IHE PCD-01 (Communicate PCD Data).

Segments (separated and terminated by CR; UTF-8, declared in MSH-18):

* ``MSH`` — v2.6, ``ORU^R01^ORU_R01``, accept-acknowledgement NE / application AL, profile
  ``IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO`` (MSH-21); MSH-7 is the session end (no
  wall-clock time: the same session exports the same message), MSH-10 derived from the session;
* ``PID`` — MRN (or the session as a visit identifier), name, birth date, sex; when de-identified
  an anonymous identifier (type ANON) and the name "De-identified" (type S, pseudonym);
* ``NTE`` — what the values are (medians per interval, single NIBP readings, UTC) and the
  de-identification notice when it applies;
* ``PV1`` — outpatient, visit number, admit/discharge times;
* one ``OBR`` per observation time (OBR-4 ``182777000^monitoring of patient^SCT``, OBR-7 the time,
  OBR-8 the interval end), each followed by one ``OBX`` per vital: OBX-2 NM, OBX-3 the MDC code
  (``150456^MDC_PULS_OXIM_SAT_O2^MDC``; a local ``99VGL`` code where MDC has none), OBX-4 the
  containment sub-id (1.1.1.n), OBX-5 the value, OBX-6 the MDC unit (``262688^MDC_DIM_PERCENT^MDC``),
  OBX-11 R, OBX-14 the observation time, OBX-18 the equipment identifier (EUI-64 form; a random one
  when de-identified).

Continuous vitals are the medians of each ``interval_s`` interval; every NIBP reading has its own OBR
with systolic, diastolic and mean. Every charted assessment and event has its own OBR too: OBX-3 a
local ``99VGL`` code of its kind, the score (NM, assessments) and the summary (TX), OBX-11 R, W
(entered in error) or C (correction), and NTE segments for its free text, its correction and, for a
late entry (charted after the session ended), "late entry, charted … : reason".
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from drivers.catalogue import CATALOGUE, VITAL_KEYS
from monitor.app.privacy import deid_notice
from monitor.app.stats import CONTINUOUS, interval_medians
from monitor.app.readmodel import ChartRow, SessionView

__all__ = ["write_hl7", "message", "escape", "PCD01_PROFILE", "OBR4"]

PCD01_PROFILE = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
OBR4 = "182777000^monitoring of patient^SCT"
_SEX = {"female": "F", "male": "M", "other": "O"}
_SUB_ID = {key: i for i, key in enumerate(VITAL_KEYS, start=1)}


def escape(text: str) -> str:
    """Escape HL7 delimiters (``| ^ ~ \\ &``) and line breaks in a text value."""
    out = (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("~", "\\R\\")
           .replace("&", "\\T\\"))
    return " ".join(out.split())


def _ts(t: datetime | float) -> str:
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(float(t), timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S+0000")


def _value(value: float, vital: str) -> str:
    decimals = max(CATALOGUE[vital].decimals, 1)
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _obx3(vital: str) -> str:
    spec = CATALOGUE[vital]
    if spec.mdc_code is not None:
        return f"{spec.mdc_code}^{spec.mdc_ref}^MDC"
    return f"VGL_{vital.upper()}^{escape(spec.label)}^99VGL"


def _obx6(vital: str) -> str:
    spec = CATALOGUE[vital]
    if spec.mdc_unit_code is not None:
        return f"{spec.mdc_unit_code}^{spec.mdc_unit}^MDC"
    return f"{escape(spec.ucum)}^{escape(spec.unit)}^UCUM"


def message(view: SessionView, interval_s: float = 60) -> str:
    """The ORU^R01 message of ``view`` (segments joined and terminated by CR)."""
    deid = view.deidentified
    if deid:
        eui = secrets.token_hex(8).upper()
        control = "VGL" + secrets.token_hex(8).upper()
    else:
        eui = hashlib.sha256(view.device.encode("utf-8")).hexdigest()[:16].upper()
        control = f"VGL{view.session_id}-{int(view.start_epoch)}"
    equipment = f"{eui}^^{eui}^EUI-64"
    # MSH-4 (HD namespace id) allows 20 characters: the clinic name without delimiters, cut to fit
    facility = "" if deid else " ".join(re.sub(r"[|^~\\&]", " ", view.clinic_name).split())[:20].strip()
    segs = [
        "MSH|^~\\&|VIGIL^" + eui + "^EUI-64|" + facility + "|||" + _ts(view.end) + "||ORU^R01^ORU_R01|" + control
        + "|P|2.6|||NE|AL||UNICODE UTF-8|||" + PCD01_PROFILE,
    ]
    p = view.patient
    if deid:
        pid3 = f"ANON{secrets.token_hex(6).upper()}^^^VIGIL^ANON"
        pid5 = "De-identified^^^^^^S"
        dob = ""
    else:
        pid3 = f"{escape(p.mrn)}^^^VIGIL^MR" if p.mrn else f"S{view.session_id}^^^VIGIL^VN"
        pid5 = f"{escape(p.name or '')}^^^^^^D"
        dob = p.date_of_birth.strftime("%Y%m%d") if p.date_of_birth else ""
    segs.append(f"PID|||{pid3}||{pid5}||{dob}|{_SEX.get(p.sex, 'U')}")
    notes = [f"Vigil {escape(view.protocol_label)} session. Numerics are medians over {interval_s:g} s intervals "
             "(OBR-7 interval start, OBR-8 end); NIBP values are single cuff readings. Times are UTC."]
    if view.is_open:
        notes.append("The session was still being recorded: this message is a snapshot.")
    if deid:
        notes.append(escape(deid_notice(year_only_dates=False)))
    notes += [escape(line) for line in view.record_notice]
    segs += [f"NTE|{i}|L|{text}" for i, text in enumerate(notes, start=1)]
    visit = "" if deid else f"{view.session_id}^^^VIGIL^VN"
    segs.append("PV1|1|O" + "|" * 17 + visit + "|" * 25 + _ts(view.start) + "|" + ("" if view.is_open else _ts(view.end)))

    groups: list[tuple[float, int, str, list[str]]] = []
    start = view.start_epoch
    by_time: dict[float, list[tuple[str, float]]] = {}
    for vital in CONTINUOUS:
        if vital not in view.vitals:
            continue
        t, v = view.valid(vital)
        starts, medians, _ = interval_medians(t, v, start, interval_s)
        for t0, value in zip(starts.tolist(), medians.tolist()):
            by_time.setdefault(t0, []).append((vital, value))

    def numerics(values: list[tuple[str, str, str]]) -> list[str]:
        return [f"OBX|{i}|NM|{_obx3(vital)}|1.1.1.{_SUB_ID[vital]}|{value}|{_obx6(vital)}|||||R|||{when}"
                f"||||{equipment}" for i, (vital, value, when) in enumerate(values, start=1)]

    for t0, values in by_time.items():
        end = min(t0 + interval_s, max(view.end_epoch, t0))
        groups.append((t0, 0, _ts(end), numerics([(vital, _value(value, vital), _ts(t0)) for vital, value in values])))
    for r in view.nibp:
        if r.status == "entered in error":
            continue
        cuff = [("nibp_sys", _value(r.sys, "nibp_sys")), ("nibp_dia", _value(r.dia, "nibp_dia"))]
        if r.mean is not None:
            cuff.append(("nibp_mean", _value(r.mean, "nibp_mean")))
        at = r.t.timestamp()
        groups.append((at, 1, "", numerics([(vital, text, _ts(at)) for vital, text in cuff])))
    for row in view.chart():
        groups.append((row.t.timestamp(), 2, "", _charted(view, row)))
    groups.sort(key=lambda g: (g[0], g[1]))

    for n, (t0, _order, obr8, obxs) in enumerate(groups, start=1):
        filler = f"{control}-{n}^VIGIL^{eui}^EUI-64"
        segs.append(f"OBR|{n}||{filler}|{OBR4}|||{_ts(t0)}|{obr8}")
        segs += obxs
    return "\r".join(segs) + "\r"


#: OBX-11 of a charted entry by its status: R (not verified, as every PCD-01 result), W (entered in
#: error: "post original as wrong"), C (a correction).
_CHART_STATUS = {"current": "R", "entered in error": "W", "correction": "C"}


def _charted(view: SessionView, row: ChartRow) -> list[str]:
    """The OBX (and NTE) segments of a charted assessment or event: its score (NM, assessments),
    its summary (TX), then NTE for the free text, a correction and a late entry's "late entry,
    charted … : reason"."""
    code = f"VGL_{row.kind.upper()}^{escape(row.title)}^99VGL"
    status = _CHART_STATUS.get(row.status, "R")
    when = _ts(row.t)
    segs: list[str] = []
    if row.category == "assessment" and row.score is not None:
        segs.append(f"OBX|{len(segs) + 1}|NM|{code}|1|{row.score:g}||||||{status}|||{when}")
    segs.append(f"OBX|{len(segs) + 1}|TX|{code}|{len(segs) + 1}|{escape(row.summary)}||||||{status}|||{when}")
    notes = [text for text in (row.detail, row.correction, view.late_text(row) if row.late else None) if text]
    segs += [f"NTE|{i}|L|{escape(text)}" for i, text in enumerate(notes, start=1)]
    return segs


def write_hl7(view: SessionView, path: Path, *, interval_s: float = 60, **_: Any) -> None:
    """Write the ORU^R01 message of ``view`` to ``path`` (UTF-8, CR-separated segments)."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(message(view, interval_s))
