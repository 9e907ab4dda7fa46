"""The clinical session report as PDF (QtGui: QPdfWriter + QPainter; charts drawn by hand).

Sections: header (clinic, patient, date of birth / age, MRN, protocol, dose, lot, times, staff),
trend charts (HR/PR, SpO2, NIBP as systolic–diastolic bars, RR/EtCO2) with the phases shaded,
dosing steps as vertical lines, charted assessments and events as markers and alarms as bars; the
NIBP flowsheet (each reading with HR, SpO2, RR and EtCO2 at that time); dosing (infusion steps or
nasal devices); assessments; events and other charted facts; the alarm log with who acknowledged;
a summary (per vital: min / max / mean and time outside the default limits; alarms by priority; dose
delivered; phase durations); discharge criteria; the signature block.

Every page carries the patient's name (or "De-identified") and "Page i of N". Times are the local
clock of the machine that exports (shifted when de-identified); dates are reduced to the year when
de-identified.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen, QPolygonF

from drivers.catalogue import CATALOGUE
from monitor.export.pdfdoc import Column, Document
from monitor.app.privacy import deid_notice
from monitor.app.stats import CONTINUOUS, NIBP_KEYS, interval_medians, vital_stats
from monitor.app.readmodel import SessionView

__all__ = ["write_pdf", "clock", "CHART_GROUPS"]

_PHASE_COLOURS = {"baseline": "#eeeeee", "dosing": "#fde7cf", "recovery": "#dcecf8"}
_SERIES_COLOURS = {"hr": "#1b7f3a", "pr": "#7fbf3f", "spo2": "#1f5fbf", "rr": "#b8860b", "etco2": "#8e44ad"}
_PRIORITY_COLOURS = {"HIGH": "#d62728", "MEDIUM": "#f0ad00", "LOW": "#00a8c6"}
#: Charts: (title, unit, vitals) — NIBP is drawn as bars.
CHART_GROUPS = (("Heart rate / pulse rate", "bpm", ("hr", "pr")), ("SpO2", "%", ("spo2",)),
                ("Non-invasive blood pressure", "mmHg", ("nibp",)), ("Respiration rate / EtCO2", "br/min · mmHg",
                                                                     ("rr", "etco2")))
_ALARM_CHART = {"spo2_low": 1, "hr_high": 0, "hr_low": 0, "hr_rise": 0, "nibp_high": 2, "nibp_low": 2, "sbp_rise": 2,
                "rr_low": 3, "rr_high": 3, "no_breath": 3, "etco2_high": 3, "moaas_low": 0}


def clock(t: datetime | None, seconds: bool = True) -> str:
    """Local wall-clock time of ``t`` ("09:05:36"); "—" for None."""
    if t is None:
        return "—"
    return t.astimezone().strftime("%H:%M:%S" if seconds else "%H:%M")


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _num(value: float | None, decimals: int = 0) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{decimals}f}"


def _join(summary: str, detail: str | None, title: str = "") -> str:
    if title and summary.startswith(title):  # preset events: "Nausea (mild)" under the title "Nausea"
        summary = summary[len(title):].strip(" ()")
    return " — ".join(x for x in (summary, detail) if x)


def _tz_name(t: datetime) -> str:
    return t.astimezone().tzname() or "local"


# ================================================================================= charts
def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


class _Charts:
    def __init__(self, view: SessionView, doc: Document) -> None:
        self.view, self.doc = view, doc
        self.t0, self.t1 = view.start_epoch, max(view.end_epoch, view.start_epoch + 60)
        self.bin = max(1.0, (self.t1 - self.t0) / 700)
        self.series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key in ("hr", "pr", "spo2", "rr", "etco2"):
            if key in view.vitals:
                t, v = view.valid(key)
                starts, med, _ = interval_medians(t, v, self.t0, self.bin)
                self.series[key] = (starts + self.bin / 2, med)
        self.markers = [(r.t.timestamp(), r.category) for r in view.chart()]
        self.steps = [r.t.timestamp() for r in view.infusion] + [d.t.timestamp() for d in view.devices]

    def draw(self, index: int, p: QPainter, rect: QRectF) -> None:
        doc, view = self.doc, self.view
        title, unit, keys = CHART_GROUPS[index]
        mm = doc.mm
        plot = QRectF(rect.left() + mm(13), rect.top() + mm(5), rect.width() - mm(16), rect.height() - mm(11))
        tx = lambda t: plot.left() + (t - self.t0) / (self.t1 - self.t0) * plot.width()  # noqa: E731

        values: list[np.ndarray] = []
        if keys == ("nibp",):
            for r in view.nibp:
                values.append(np.array([r.sys, r.dia]))
            lo_default, hi_default = 40.0, 180.0
        else:
            for k in keys:
                if k in self.series:
                    values.append(self.series[k][1])
            lo_default, hi_default = {"hr": (40, 140), "spo2": (85, 100), "rr": (0, 50)}[keys[0]]
        data = np.concatenate(values) if values else np.empty(0)
        lo = min(lo_default, float(np.nanmin(data))) if data.size else lo_default
        hi = max(hi_default, float(np.nanmax(data))) if data.size else hi_default
        if keys == ("spo2",):
            hi = 100.0
        step = _nice_step(hi - lo, 4)
        lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
        ty = lambda v: plot.bottom() - (v - lo) / (hi - lo) * plot.height()  # noqa: E731

        # phases
        for ph in view.phases:
            x0, x1 = tx(ph.start.timestamp()), tx(ph.end.timestamp())
            p.fillRect(QRectF(x0, plot.top(), max(x1 - x0, 0.5), plot.height()), QColor(_PHASE_COLOURS.get(ph.key, "#f4f4f4")))
        # grid and axes
        small, _ = doc.font(6.5)
        p.setFont(small)
        p.setPen(QPen(QColor("#d0d0d0"), mm(0.1)))
        v = lo
        while v <= hi + 1e-9:
            y = ty(v)
            p.setPen(QPen(QColor("#d0d0d0"), mm(0.1)))
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.setPen(QColor("#333333"))
            p.drawText(QRectF(rect.left(), y - mm(1.6), mm(12), mm(3.2)),
                       int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), f"{v:g}")
            v += step
        minutes = (self.t1 - self.t0) / 60
        tick = next((m for m in (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 720) if minutes / m <= 9), 1440)
        first = math.ceil(self.t0 / (tick * 60)) * tick * 60
        t: float = first
        while t <= self.t1:
            x = tx(t)
            p.setPen(QPen(QColor("#d0d0d0"), mm(0.1)))
            p.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
            p.setPen(QColor("#333333"))
            p.drawText(QRectF(x - mm(8), plot.bottom() + mm(1.6), mm(16), mm(4)), int(Qt.AlignmentFlag.AlignHCenter),
                       clock(datetime.fromtimestamp(t).astimezone(), seconds=False))
            t += tick * 60
        # dosing steps
        p.setPen(QPen(QColor("#7b2d8b"), mm(0.25), Qt.PenStyle.DashLine))
        for t in self.steps:
            p.drawLine(QPointF(tx(t), plot.top()), QPointF(tx(t), plot.bottom()))
        # alarms of this chart
        for a in view.alarms:
            if _ALARM_CHART.get(a.condition, 0) != index:
                continue
            x0 = tx(a.start.timestamp())
            x1 = tx((a.end or view.end).timestamp())
            p.fillRect(QRectF(x0, plot.bottom() - mm(1.2), max(x1 - x0, mm(0.5)), mm(1.2)),
                       QColor(_PRIORITY_COLOURS.get(a.max_priority, "#d62728")))
        # series
        p.setClipRect(plot)
        legend: list[tuple[str, str]] = []
        if keys == ("nibp",):
            pen = QPen(QColor("#c0392b"), mm(0.45))
            for r in view.nibp:
                if r.status == "entered in error":
                    continue
                x = tx(r.t.timestamp())
                p.setPen(pen)
                p.drawLine(QPointF(x, ty(r.sys)), QPointF(x, ty(r.dia)))
                p.drawLine(QPointF(x - mm(0.8), ty(r.sys)), QPointF(x + mm(0.8), ty(r.sys)))
                p.drawLine(QPointF(x - mm(0.8), ty(r.dia)), QPointF(x + mm(0.8), ty(r.dia)))
                if r.mean is not None:
                    p.setBrush(QBrush(QColor("#c0392b")))
                    p.drawEllipse(QPointF(x, ty(r.mean)), mm(0.4), mm(0.4))
            legend.append(("sys–dia (mean)", "#c0392b"))
        else:
            for k in keys:
                if k not in self.series:
                    continue
                ts, vs = self.series[k]
                path = QPainterPath()
                started = False
                last_t = None
                for tt, vv in zip(ts.tolist(), vs.tolist()):
                    if last_t is None or tt - last_t > 2.5 * self.bin:
                        path.moveTo(tx(tt), ty(vv))
                    else:
                        path.lineTo(tx(tt), ty(vv))
                    started = True
                    last_t = tt
                if started:
                    p.setPen(QPen(QColor(_SERIES_COLOURS[k]), mm(0.35)))
                    p.setBrush(Qt.BrushStyle.NoBrush)
                    p.drawPath(path)
                legend.append((CATALOGUE[k].label, _SERIES_COLOURS[k]))
        p.setClipping(False)
        # markers: assessments (teal) and events (orange) along the top edge
        for t, category in self.markers:
            x = tx(t)
            marker = QColor("#138d90" if category == "assessment" else "#e67e22")
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QBrush(marker))
            p.drawPolygon(QPolygonF([QPointF(x - mm(0.8), plot.top()), QPointF(x + mm(0.8), plot.top()),
                                     QPointF(x, plot.top() + mm(1.4))]))
        # frame, title, legend
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor("#555555"), mm(0.2)))
        p.drawRect(plot)
        bold, _ = doc.font(8, True)
        p.setFont(bold)
        p.setPen(QColor("#000000"))
        p.drawText(QRectF(plot.left(), rect.top(), plot.width() / 2, mm(4.5)),
                   int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), f"{title} ({unit})")
        p.setFont(small)
        x = plot.right()
        for text, colour in reversed(legend):
            _, fm = doc.font(6.5)
            w = fm.horizontalAdvance(text) + mm(6)
            x -= w
            p.setPen(QPen(QColor(colour), mm(0.6)))
            p.drawLine(QPointF(x, rect.top() + mm(2.3)), QPointF(x + mm(4), rect.top() + mm(2.3)))
            p.setPen(QColor("#000000"))
            p.drawText(QRectF(x + mm(4.8), rect.top(), w, mm(4.5)),
                       int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)

    def legend(self, p: QPainter, rect: QRectF) -> None:
        doc = self.doc
        mm = doc.mm
        small, fm = doc.font(6.5)
        p.setFont(small)
        x = rect.left() + mm(13)
        y = rect.top() + mm(0.5)
        items = [("Baseline", _PHASE_COLOURS["baseline"], "box"), ("Dosing", _PHASE_COLOURS["dosing"], "box"),
                 ("Recovery", _PHASE_COLOURS["recovery"], "box"), ("Dosing step", "#7b2d8b", "line"),
                 ("Assessment", "#138d90", "tri"), ("Event", "#e67e22", "tri"),
                 ("Alarm HIGH", _PRIORITY_COLOURS["HIGH"], "box"), ("MEDIUM", _PRIORITY_COLOURS["MEDIUM"], "box"),
                 ("LOW", _PRIORITY_COLOURS["LOW"], "box")]
        for text, colour, kind in items:
            if kind == "box":
                p.fillRect(QRectF(x, y + mm(0.8), mm(3), mm(2.2)), QColor(colour))
            elif kind == "line":
                p.setPen(QPen(QColor(colour), mm(0.3), Qt.PenStyle.DashLine))
                p.drawLine(QPointF(x + mm(1.5), y + mm(0.5)), QPointF(x + mm(1.5), y + mm(3.3)))
            else:
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(QBrush(QColor(colour)))
                p.drawPolygon(QPolygonF([QPointF(x + mm(0.5), y + mm(0.8)), QPointF(x + mm(2.5), y + mm(0.8)),
                                         QPointF(x + mm(1.5), y + mm(2.8))]))
            p.setPen(QColor("#000000"))
            p.drawText(QRectF(x + mm(3.8), y, mm(30), mm(3.8)),
                       int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
            x += mm(4.8) + fm.horizontalAdvance(text) + mm(2.5)


# ================================================================================= report
def _near(t: np.ndarray, v: np.ndarray, at: float, window: float = 30.0) -> float | None:
    if not len(t):
        return None
    i0, i1 = np.searchsorted(t, at - window), np.searchsorted(t, at + window)
    if i1 <= i0:
        return None
    return float(np.median(v[i0:i1]))


def write_pdf(view: SessionView, path: Path, *, paper: str = "A4", **_: Any) -> None:
    """Write the session report of ``view`` to ``path`` on ``paper`` ("A4" or "Letter")."""
    build_report(view, path, paper).save()


def _header_text(view: SessionView) -> tuple[str, str, str]:
    patient = view.patient.display
    if view.deidentified:
        return (f"De-identified — {view.protocol_label} session report", "De-identified",
                f"De-identified · {view.privacy.date_text(view.start)}")
    return (f"{patient} — {view.protocol_label} session report", view.clinic_name,
            f"{patient} · MRN {view.patient.mrn or '—'} · {view.label} · {view.privacy.date_text(view.start)}")


def build_report(view: SessionView, path: Path, paper: str = "A4") -> Document:
    """Lay out the report (call ``.save()`` on the result to write it)."""
    header, right, footer = _header_text(view)
    doc = Document(path, paper, title=header, header=header, header_right=right, footer=footer,
                   date_year=view.start.year if view.deidentified else None)
    p = view.patient
    tz = _tz_name(view.start)

    doc.text(f"{view.protocol_label[:1].upper()}{view.protocol_label[1:]} session report", points=16, bold=True,
             color="#1a3a5a")
    doc.text(view.clinic_name + (f" · {view.clinic_address}" if view.clinic_address else ""), points=10)
    if view.deidentified:
        doc.space(1)
        doc.text(deid_notice(year_only_dates=True), points=8.5, bold=True, color="#8b0000")
    if view.is_open:
        doc.text("This session was still being recorded when the report was made: the record is incomplete.",
                 points=8.5, bold=True, color="#8b0000")
    for line in view.record_notice:
        doc.text(line, points=8.5, bold=line.startswith("Record NOT"), color="#8b0000" if "NOT" in line else "#333333")
    doc.space(2)
    dob = p.date_of_birth.isoformat() if p.date_of_birth else ("—" if not view.deidentified else "removed")
    duration = (view.end - view.start).total_seconds()
    pairs = [
        ("Patient", p.display), ("MRN", p.mrn or ("removed" if view.deidentified else "—")),
        ("Date of birth", dob), ("Age", f"{p.age} years" if p.age else "—"),
        ("Sex", p.sex), ("Weight", f"{p.weight_kg:g} kg" if p.weight_kg else "—"),
        ("Protocol", view.protocol_label), ("Plan", view.plan_text),
        ("Dose delivered", f"{view.delivered_mg:.1f} mg" if view.delivered_mg is not None else "—"),
        ("Lot number", view.lot_number or ("removed" if view.deidentified else "—")),
        ("Date", view.privacy.date_text(view.start)),
        ("Time", f"{clock(view.start, False)}–{clock(view.end, False)} ({tz}), {_minutes(duration)} min"),
        ("Status", {"closed": "closed (signed)", "aborted": "ended without discharge", "open": "open"}.get(view.status,
                                                                                                          view.status)),
        ("Session", view.label), ("Opened by", view.opened_by or "—"),
        ("Signed by", view.signature.name if view.signature else "—"),
        ("Device", view.device),
        ("Alarm limits", view.alarm_limits_text),
        ("Baseline", ", ".join(f"{CATALOGUE[k].label} {v:.{CATALOGUE[k].decimals}f}"
                               for k, v in view.baseline.items() if k in ("hr", "spo2", "nibp_sys", "nibp_dia", "rr"))
         or "—"),
    ]
    doc.grid(pairs)

    # ---------------------------------------------------------------- charts
    doc.heading("Trends")
    charts = _Charts(view, doc)
    doc.drawing(5, charts.legend)
    for i in range(len(CHART_GROUPS)):
        doc.drawing(44, functools.partial(charts.draw, i))

    # ---------------------------------------------------------------- NIBP flowsheet
    doc.heading("NIBP flowsheet")
    near = {k: view.valid(k) for k in ("hr", "pr", "spo2", "rr", "etco2") if k in view.vitals}

    def at(key: str, t: datetime, decimals: int = 0) -> str:
        if key not in near:
            return "—"
        return _num(_near(near[key][0], near[key][1], t.timestamp()), decimals)

    rows = []
    shade = []
    for r in view.nibp:
        bp = f"{r.sys:.0f}/{r.dia:.0f}" + (f" ({r.mean:.0f})" if r.mean is not None else "")
        hr = at("hr", r.t) if "hr" in near else at("pr", r.t)
        rows.append([clock(r.t), bp, hr, at("spo2", r.t), at("rr", r.t), at("etco2", r.t), r.source, r.by, r.status])
        shade.append("#fbe3e3" if r.sys >= 160 or r.dia >= 100 or r.sys < 90 else None)
    doc.table([Column("Time", 1.1), Column("BP mmHg (mean)", 1.4), Column("HR", 0.6, "r"), Column("SpO2 %", 0.7, "r"),
               Column("RR", 0.6, "r"), Column("EtCO2", 0.7, "r"), Column("Source", 0.9), Column("By", 1.2),
               Column("Status", 1.1)], rows, shade=shade, empty="No blood pressure was recorded.")
    doc.text("HR, SpO2, RR and EtCO2: median of the values within 30 s of the reading. Shaded: beyond the default "
             "NIBP limits.", points=7, color="#555555")

    # ---------------------------------------------------------------- dosing
    doc.heading("Dosing")
    if view.devices or view.protocol_key == "esketamine":
        doc.table([Column("Time", 1), Column("Device", 0.8, "r"), Column("Dose", 0.8, "r"), Column("Lot", 1.2),
                   Column("Observed by", 1.6)],
                  [[clock(d.t), str(d.number), f"{d.dose_mg:g} mg", view.lot_number or "—", d.by] for d in view.devices],
                  empty="No nasal device was logged.")
    else:
        doc.table([Column("Time", 1), Column("Step", 1), Column("Rate mg/h", 0.9, "r"), Column("Reason", 2.2),
                   Column("By", 1.4), Column("Delivered mg", 1, "r")],
                  [[clock(r.t), r.action.replace("_", " "), _num(r.rate_mg_per_h, 1), r.reason or "", r.by,
                    f"{r.delivered_mg:.1f}"] for r in view.infusion], empty="No infusion step was recorded.")
    doc.text(f"Planned: {view.plan_text}. Delivered: "
             f"{'—' if view.delivered_mg is None else f'{view.delivered_mg:.1f} mg'}.", points=8)

    # ---------------------------------------------------------------- chart
    doc.heading("Assessments")
    doc.table([Column("Time", 1), Column("Assessment", 1.3), Column("Score", 0.6, "r"), Column("Result", 3),
               Column("By", 1.3), Column("Status", 1.3)],
              [[clock(r.t), r.title, _num(r.score), r.summary, r.by, r.status + (f" ({r.correction})" if r.correction else "")]
               for r in view.assessments], empty="No assessment was charted.")
    doc.heading("Events")
    doc.table([Column("Time", 1), Column("Event", 1.5), Column("Details", 3.2), Column("By", 1.3), Column("Status", 1.3)],
              [[clock(r.t), r.title, _join(r.summary, r.detail, r.title), r.by,
                r.status + (f" ({r.correction})" if r.correction else "")
                + (f"; {view.late_text(r)}" if r.late else "")] for r in view.events],
              empty="No event was charted.")
    other = [n for n in view.notes if n.kind != "session_opened"]
    if other:
        doc.space(2)
        doc.text("Other charted entries", points=9, bold=True, keep=doc.mm(10))
        doc.table([Column("Time", 1), Column("Entry", 1.6), Column("Details", 3.4), Column("By", 1.3)],
                  [[clock(n.t), n.title, _join(n.summary, n.detail), n.by] for n in other])

    # ---------------------------------------------------------------- alarms
    doc.heading("Alarm log")
    rows, shade = [], []
    for a in view.alarms:
        ack = a.acknowledged
        others = "; ".join(f"{clock(x.t)} {x.label}" + (f" {x.detail}" if x.detail else "")
                           + (f" by {x.user}" if x.user else "") for x in a.actions if x.action != "acknowledge")
        prio = a.priority if a.priority == a.max_priority else f"{a.priority} → {a.max_priority}"
        rows.append([str(a.number), clock(a.start), clock(a.end), a.label, prio, _num(a.limit, 1) if a.limit is not None else "—",
                     _num(a.value, 1) if a.value is not None else "—",
                     f"{ack.user or 'system'} at {clock(ack.t)}" if ack else "not acknowledged", others])
        shade.append({"HIGH": "#fbe3e3", "MEDIUM": "#fff4d6"}.get(a.max_priority))
    doc.table([Column("#", 0.35, "r"), Column("Start", 0.85), Column("End", 0.85), Column("Condition", 1.5),
               Column("Priority", 1.0), Column("Limit", 0.6, "r"), Column("Value", 0.6, "r"),
               Column("Acknowledged", 1.5), Column("Other actions", 2.0)], rows, shade=shade,
              empty="No alarm was raised.")
    if view.system_actions:
        doc.text("Alarm audio: " + "; ".join(f"{clock(x.t)} {x.label}" + (f" for {x.pause_s:g} s" if x.pause_s else "")
                                             + (f" by {x.user}" if x.user else "") for x in view.system_actions)
                 + ". An audio pause that ran its time is shown ended at its end.", points=7.5)

    # ---------------------------------------------------------------- summary
    doc.heading("Summary")
    rows = []
    for key in view.vitals:
        if key not in CONTINUOUS and key not in NIBP_KEYS:
            continue
        t, v = view.valid(key)
        s = vital_stats(key, t, v)
        spec = CATALOGUE[key]
        d = spec.decimals
        limits = ", ".join(f"{lim.text()}" for lim in s.limits) or "—"
        if key in NIBP_KEYS:
            outside = "—" if s.outside_readings is None else f"{s.outside_readings} reading(s)"
        else:
            outside = "—" if s.outside_s is None else f"{_minutes(s.outside_s)} min"
        rows.append([spec.label, spec.unit, str(s.n), _num(s.min, d), _num(s.max, d), _num(s.mean, max(d, 1)), limits,
                     outside])
    doc.table([Column("Vital", 1.1), Column("Unit", 0.7), Column("Values", 0.7, "r"), Column("Min", 0.6, "r"),
               Column("Max", 0.6, "r"), Column("Mean", 0.7, "r"), Column("Default limits", 1.3),
               Column("Outside limits", 1.2, "r")], rows, empty="No vital signs were recorded.")
    doc.text("Flagged values (artifact, sensor off, low perfusion…) are left out. Time outside limits counts each "
             "value until the next one (at most 5 s).", points=7, color="#555555")
    counts = {prio: sum(1 for a in view.alarms if a.max_priority == prio) for prio in ("HIGH", "MEDIUM", "LOW")}
    technical = sum(1 for a in view.alarms if a.kind == "technical")
    phase_text = ", ".join(f"{ph.label.lower()} {_minutes((ph.end - ph.start).total_seconds())} min" for ph in view.phases)
    doc.space(1)
    doc.grid([("Alarms by priority", f"HIGH {counts['HIGH']}, MEDIUM {counts['MEDIUM']}, LOW {counts['LOW']} "
                                     f"({technical} technical)"),
              ("Dose", f"{'—' if view.delivered_mg is None else f'{view.delivered_mg:.1f} mg'} delivered"
                       + (f" of {view.planned_dose_mg:.1f} mg planned" if view.planned_dose_mg else "")),
              ("Phases", phase_text or "—"),
              ("Recording gaps", ", ".join(f"{clock(s)}–{clock(e)}" for s, e, _ in view.gaps) or "none")], columns=1)

    # ---------------------------------------------------------------- discharge
    doc.heading("Discharge criteria")
    doc.table([Column("Criterion", 2), Column("Met", 0.5, "c"), Column("Detail", 4)],
              [[c.label, "yes" if c.met else "NO", c.detail or ""] for c in view.discharge],
              shade=[None if c.met else "#fbe3e3" for c in view.discharge], empty="Not evaluated.")
    doc.text(f"Criteria {view.discharge_source}.", points=7.5, color="#555555")

    # ---------------------------------------------------------------- signature
    doc.heading("Signature")
    sig = view.signature
    if sig is not None:
        doc.grid([("Printed name", sig.name), ("Time", f"{view.privacy.date_text(sig.t)} {clock(sig.t)} ({tz})"),
                  ("Meaning", sig.meaning),
                  ("Status", "closed" if sig.status == "closed" else "ended without discharge")], columns=2)
        doc.text("Electronically signed in Vigil; the record is read-only after signature (amendments are kept with "
                 "their reason).", points=7.5, color="#555555")
    else:
        doc.text("Not signed: the session is still open.", points=9, bold=True, color="#8b0000")
    return doc
