"""Esketamine REMS Patient Monitoring Form data, from the session record, on one PDF page.

:func:`rems_answers` computes every item of the form from the record (the session view and, for
the discharge rules, the replayed session), with the basis of each answer, so the clinician can
check it before copying it to the REMS form:

* patient name, date of birth, sex; concomitant benzodiazepines, non-benzodiazepine hypnotics,
  psychostimulants, MAOIs (from the charted concomitant-medications entry; "not recorded" otherwise);
* monitoring clinician; setting name and address (clinic settings); treatment date, dose, lot;
* total minutes from the first device to the end of monitoring (the session's close);
* when the patient would have been ready to leave without the 2-hour rule: the earliest recorded
  time at or after the end of dosing at which every other discharge criterion (modified Aldrete,
  BP within the clinic's tolerance of baseline with a recent reading, escort) was met, evaluated at
  each charted Aldrete, BP reading and escort confirmation; or "cannot be determined" with the
  criteria never met;
* vitals acceptable before administration (pre-dose BP within the clinic's advisory threshold, default
  140/90, and no physiological alarm active at the first device) and before completion (last BP
  within tolerance of baseline and recent, and no physiological alarm active at the end);
* BP before administration, at about 40 minutes (the reading closest to 40 min after the first
  device, within 35–50 min: the clinic schedule's window) and before completion (the last reading);
* sedation (MOAA/S ≤ 4, RASS ≤ −1 or a MOAA/S alarm), dissociation (a dissociation event or any
  CADSS / CADSS-6 item above 0), respiratory depression (an SpO2-low, RR-low, no-breath or EtCO2-high
  alarm, or a modified Aldrete respiration item below 2). Sedation and dissociation are "not
  assessed", never "No", when nothing was charted that could answer them.

A record whose monitoring ended under 120 minutes after the first device is flagged on the form
(a banner and the total-minutes line).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.export.pdf import clock
from monitor.export.pdfdoc import Column, Document
from monitor.app.privacy import deid_notice
from monitor.app.readmodel import SessionView
from monitor.protocols import MIN_ESKETAMINE_MONITORING_MIN

__all__ = ["rems_answers", "write_rems", "ready_without_two_hour_rule"]

_CONCOMITANT = (("benzodiazepines", "Benzodiazepines"), ("non_benzodiazepine_hypnotics", "Non-benzodiazepine hypnotics"),
                ("psychostimulants", "Psychostimulants"), ("maois", "Monoamine oxidase inhibitors (MAOIs)"))
_RESPIRATORY_ALARMS = {"spo2_low", "rr_low", "no_breath", "etco2_high"}
#: The 2-hour rule: the monitoring period and the sign-off that goes with discharge after it.
_TWO_HOUR_RULE = {"time", "clinically_stable"}


def _yn(value: bool) -> str:
    return "Yes" if value else "No"


def ready_without_two_hour_rule(state: Any, end: datetime) -> tuple[datetime | None, str]:
    """The earliest recorded time (original clock) at which every discharge criterion but the time
    rule was met, and how it was found; ``(None, reason)`` when it cannot be determined."""
    from monitor.session import discharge_check
    dosing_end = state.dosing_ended_at
    if dosing_end is None:
        return None, "dosing did not end in the record"
    times = {dosing_end} | {c.t for c in state.charted("aldrete")} | {r.t for r in state.nibp_readings}
    if state.escort is not None:
        times.add(state.escort[0])
    for t in sorted(x for x in times if dosing_end <= x <= end):
        check = discharge_check(state, t, latest_vitals={})
        others = [c for c in check.criteria if c.key not in _TWO_HOUR_RULE]
        if others and all(c.met for c in others):
            return t, "earliest recorded time at which " + ", ".join(c.label for c in others) + " were all met"
    check = discharge_check(state, end, latest_vitals={})
    unmet = [c.label for c in check.criteria if c.key not in _TWO_HOUR_RULE and not c.met]
    return None, ("cannot be determined from the record: not met before the end of monitoring: "
                  + ", ".join(unmet)) if unmet else "cannot be determined from the record"


def under_two_hours(view: SessionView) -> bool:
    """True when a closed record's monitoring ended less than 120 min after the first device (or no
    device was logged): the REMS form flags it."""
    if view.closed_at is None:
        return False
    if not view.devices:
        return True
    return (view.closed_at - view.devices[0].t) < timedelta(minutes=MIN_ESKETAMINE_MONITORING_MIN)


def _alarms_active(view: SessionView, at: datetime) -> list[str]:
    return [f"{a.label} ({a.max_priority})" for a in view.alarms
            if a.kind == "physiological" and a.start <= at and (a.end is None or a.end > at)]


def rems_answers(view: SessionView) -> list[tuple[str, str, str]]:
    """``(section, item, answer with its basis)`` rows of the form."""
    p, priv = view.patient, view.privacy
    state = view.state
    rows: list[tuple[str, str, str]] = []
    add = rows.append

    add(("Patient", "Patient name", p.display))
    if view.deidentified:
        add(("Patient", "Date of birth", f"removed (age {p.age})" if p.age else "removed"))
    else:
        add(("Patient", "Date of birth", p.date_of_birth.isoformat() if p.date_of_birth else "not recorded"))
    add(("Patient", "Sex", p.sex))
    for key, label in _CONCOMITANT:
        if view.concomitant is None:
            answer = "not recorded"
        else:
            answer = _yn(bool(view.concomitant.get(key)))
        add(("Concomitant medications", label, answer))
    if view.concomitant_other:
        add(("Concomitant medications", "Other (as charted)", view.concomitant_other))

    signer = view.signature.name if view.signature else None
    clinician = view.opened_by or "—"
    if signer and signer != clinician:
        clinician += f" (session signed by {signer})"
    add(("Treatment", "Monitoring clinician", clinician))
    add(("Treatment", "Setting name", view.clinic_name))
    add(("Treatment", "Setting address", view.clinic_address or ("removed" if view.deidentified else "not set")))
    first = view.devices[0].t if view.devices else None
    add(("Treatment", "Treatment date", priv.date_text(first or view.start)))
    taken = sum(d.dose_mg for d in view.devices)
    dose = f"{int(view.plan.get('dose_mg') or 0)} mg planned; {taken:g} mg taken ({len(view.devices)} device"
    dose += "s" if len(view.devices) != 1 else ""
    add(("Treatment", "Dose", dose + ")"))
    add(("Treatment", "Lot number", view.lot_number or ("removed" if view.deidentified else "not recorded")))

    end = view.closed_at
    if first is None:
        add(("Monitoring", "Total minutes from first device to end of monitoring", "no nasal device was logged"))
    elif end is None:
        add(("Monitoring", "Total minutes from first device to end of monitoring",
             f"monitoring not ended (session open); {int((view.end - first).total_seconds() // 60)} min so far"))
    else:
        minutes = (end - first).total_seconds() / 60
        short = ""
        if under_two_hours(view):
            short = f" — UNDER {MIN_ESKETAMINE_MONITORING_MIN} MIN: the REMS monitoring period was not completed"
        add(("Monitoring", "Total minutes from first device to end of monitoring",
             f"{minutes:.0f} min (first device {clock(first, False)}, end of monitoring {clock(end, False)}){short}"))

    if state is None:
        add(("Monitoring", "Ready to leave without the 2-hour rule",
             f"cannot be determined: the record could not be replayed ({view.replay_error})"))
    else:
        raw_end = (view.closed_at or view.end) - timedelta(seconds=priv.offset_s)
        ready, basis = ready_without_two_hour_rule(state, raw_end)
        if ready is None:
            add(("Monitoring", "Ready to leave without the 2-hour rule", basis))
        else:
            shown = priv.dt(ready)
            after = f", {((shown - first).total_seconds() / 60):.0f} min after the first device" if first else ""
            add(("Monitoring", "Ready to leave without the 2-hour rule", f"{clock(shown, False)}{after} ({basis})"))

    current_nibp = [r for r in view.nibp if r.status != "entered in error"]
    s = view.settings
    # before administration
    pre = None
    if state is not None and first is not None:
        bp = state.pre_dose_bp(first - timedelta(seconds=priv.offset_s))
        if bp is not None:
            pre = (bp[0], bp[1], priv.dt(bp[2]))
    elif first is not None:
        before = [r for r in current_nibp if r.t <= first]
        if before:
            pre = (before[-1].sys, before[-1].dia, before[-1].t)
    if first is None:
        add(("Vital signs", "Vital signs acceptable before administration", "not determined: no device was logged"))
    elif pre is None:
        add(("Vital signs", "Vital signs acceptable before administration",
             "not determined: no blood pressure was recorded before the first device"))
    else:
        within = pre[0] <= s.pre_dose_bp_advisory_sys_mmhg and pre[1] <= s.pre_dose_bp_advisory_dia_mmhg
        active = _alarms_active(view, first)
        basis = (f"BP {pre[0]:.0f}/{pre[1]:.0f} {'within' if within else 'above'} "
                 f"{s.pre_dose_bp_advisory_sys_mmhg}/{s.pre_dose_bp_advisory_dia_mmhg}")
        basis += f"; alarms active: {', '.join(active)}" if active else "; no physiological alarm active"
        add(("Vital signs", "Vital signs acceptable before administration", f"{_yn(within and not active)} ({basis})"))
    # before completion
    end_at = end or view.end
    if state is not None:
        from monitor.session import discharge_check
        check = discharge_check(state, end_at - timedelta(seconds=priv.offset_s), latest_vitals={})
        bp_ok = next((c for c in check.criteria if c.key == "bp"), None)
        active = _alarms_active(view, end_at - timedelta(seconds=1))
        ok = bool(bp_ok and bp_ok.met) and not active
        basis = (bp_ok.label + (" met" if bp_ok.met else " not met") if bp_ok else "no BP criterion")
        basis += f"; alarms active: {', '.join(active)}" if active else "; no physiological alarm active"
        add(("Vital signs", "Vital signs acceptable before completion of monitoring", f"{_yn(ok)} ({basis})"))
    else:
        add(("Vital signs", "Vital signs acceptable before completion of monitoring",
             "not determined: the record could not be replayed"))

    def bp_text(r: Any, ref: datetime | None) -> str:
        after = f", {((r.t - ref).total_seconds() / 60):.0f} min after the first device" if ref else ""
        return f"{r.sys:.0f}/{r.dia:.0f} mmHg at {clock(r.t, False)}{after}"

    add(("Blood pressure", "Before administration",
         f"{pre[0]:.0f}/{pre[1]:.0f} mmHg at {clock(pre[2], False)}" if pre else "not recorded"))
    if first is not None:
        esk = s.schedules.esketamine
        low, high = esk.bp_window()
        target = first + timedelta(minutes=esk.bp_after_first_device_min)
        window = [r for r in current_nibp if timedelta(minutes=low) <= r.t - first <= timedelta(minutes=high)]
        near = min(window, key=lambda r: abs((r.t - target).total_seconds())) if window else None
        add(("Blood pressure", f"At about {esk.bp_after_first_device_min} minutes", bp_text(near, first) if near else
             f"not recorded: no reading between {low} and {high} min after the first device"))
    else:
        add(("Blood pressure", "At about 40 minutes", "no device was logged"))
    last = [r for r in current_nibp if r.t <= end_at]
    add(("Blood pressure", "Before completion of monitoring", bp_text(last[-1], first) if last else "not recorded"))

    current = [r for r in view.assessments if r.status != "entered in error"]
    sedation = [r for r in current if (r.kind == "moaas" and r.score is not None and r.score <= 4)
                or (r.kind == "rass" and r.score is not None and r.score <= -1)]
    sedation_alarms = [a for a in view.alarms if a.condition == "moaas_low"]
    signs = [f"{r.summary.split(':')[0]} at {clock(r.t, False)}" for r in sedation[:4]]
    signs += [f"{a.label} alarm at {clock(a.start, False)}" for a in sedation_alarms[:2]]
    charted = any(r.kind in ("moaas", "rass") for r in current)
    # Never "No" for what nobody assessed: "not assessed" says the record cannot answer.
    add(("Adverse effects", "Sedation", f"{_yn(bool(signs))} ({'; '.join(signs)})" if signs else
         ("No (MOAA/S 5 / RASS ≥ 0 throughout the charted assessments)" if charted else
          "Not assessed (no MOAA/S or RASS was charted)")))
    events = [r for r in view.events if r.kind == "dissociation" and r.status != "entered in error"]
    cadss_charted = [r for r in current if r.kind in ("cadss", "cadss6")]
    cadss = [r for r in cadss_charted if r.score]
    signs = [f"dissociation event at {clock(r.t, False)}" + (" (late entry)" if r.late else "") for r in events[:3]]
    signs += [f"{r.title} {r.score:.0f} at {clock(r.t, False)}" for r in cadss[:3]]
    add(("Adverse effects", "Dissociation", f"Yes ({'; '.join(signs)})" if signs else
         ("No (no dissociation event; every charted CADSS item 0)" if cadss_charted else
          "Not assessed (no CADSS / CADSS-6 was charted and no dissociation event recorded)")))
    resp = [a for a in view.alarms if a.condition in _RESPIRATORY_ALARMS]
    aldrete = [r for r in current if r.kind == "aldrete" and int(r.fields.get("respiration", 2)) < 2]
    signs = [f"{a.label} alarm at {clock(a.start, False)} ({a.max_priority})" for a in resp[:3]]
    signs += [f"Aldrete respiration {r.fields.get('respiration')} at {clock(r.t, False)}" for r in aldrete[:2]]
    add(("Adverse effects", "Respiratory depression", f"Yes ({'; '.join(signs)})" if signs else
         "No (no SpO2, respiratory-rate, no-breath or EtCO2 alarm; no Aldrete respiration below 2)"))
    return rows


def write_rems(view: SessionView, path: Path, *, paper: str = "A4", **_: Any) -> None:
    """Write the REMS form data of an esketamine session to a one-page PDF at ``path``."""
    title = "Esketamine REMS — Patient Monitoring Form data"
    who = view.patient.display
    doc = Document(path, paper, title=title, header=f"{who} — {title}",
                   header_right="De-identified" if view.deidentified else view.clinic_name,
                   footer=f"{who} · {view.label} · {view.privacy.date_text(view.start)}",
                   date_year=view.start.year if view.deidentified else None)
    doc.text(title, points=14, bold=True, color="#1a3a5a")
    doc.text("Filled from the Vigil session record. Check every answer against the chart before copying it to the "
             "REMS Patient Monitoring Form.", points=7.5, color="#555555")
    if view.deidentified:
        doc.text(deid_notice(year_only_dates=True), points=7.5, bold=True, color="#8b0000")
    for line in view.record_notice:
        doc.text(line, points=7.5, bold="NOT" in line, color="#8b0000" if "NOT" in line else "#555555")
    if view.is_open:
        doc.text("The session is still open: monitoring has not ended.", points=8, bold=True, color="#8b0000")
    elif under_two_hours(view):
        doc.text(f"Monitoring ended under {MIN_ESKETAMINE_MONITORING_MIN} minutes after the first device: "
                 "the REMS monitoring period was not completed.", points=9, bold=True, color="#8b0000")
    doc.space(1.5)
    rows = rems_answers(view)
    doc.table([Column("Section", 1.2), Column("Item", 2.0), Column("Answer (basis)", 4.8)],
              [list(r) for r in rows], points=7.5)
    doc.space(1.5)
    doc.text("Definitions: sedation = MOAA/S ≤ 4, RASS ≤ −1 or a MOAA/S alarm; dissociation = a charted dissociation "
             "event or a CADSS / CADSS-6 item above 0; respiratory depression = an SpO2-low, RR-low, no-breath or "
             "EtCO2-high alarm, or an Aldrete respiration item below 2. Ready without the 2-hour rule = the earliest "
             "charted time after dosing at which the modified Aldrete, BP and escort criteria were all met.",
             points=6.5, color="#555555")
    if len(doc.pages) > 1:
        from monitor.export.errors import ExportError
        raise ExportError("the REMS form data does not fit on one page")
    doc.save()
