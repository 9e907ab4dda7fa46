"""Side panels of the review window: the cursor read-out and the session summary.

Both only show what :mod:`monitor.app.review` computed: the read-out takes the readings at the cursor,
the summary a :class:`~monitor.app.review.ReviewSummary`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QTextBrowser, QVBoxLayout, QWidget

from drivers.catalogue import CATALOGUE
from monitor.app.stats import NIBP_KEYS
from monitor.app.review import Reading, ReviewSummary, duration_text, elapsed_text
from ui import theme

__all__ = ["CursorPanel", "SummaryPanel", "vital_text"]

_NIBP = "nibp"


def vital_text(vital: str, value: float) -> str:
    """A value with its catalogue decimals."""
    spec = CATALOGUE.get(vital)
    return f"{value:.{spec.decimals if spec else 1}f}"


def _age_text(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s old"
    minutes = int(seconds // 60)
    return f"{minutes} min old" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min old"


class CursorPanel(QFrame):
    """The time under the cursor and every vital there: the nearest stored value (within a few
    seconds) with its unit and any flag; for NIBP the last reading before the cursor, with its age."""

    def __init__(self, vitals: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        self.time_label = QLabel("—")
        self.time_label.setFont(theme.font(10, bold=True))
        self.time_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.time_label)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(8)
        self.grid.setVerticalSpacing(1)
        layout.addLayout(self.grid)
        self.values: dict[str, QLabel] = {}
        self.notes: dict[str, QLabel] = {}
        self.set_vitals(vitals)

    def set_vitals(self, vitals: Sequence[str]) -> None:
        """Show a line for each of ``vitals`` (catalogue order; the three NIBP keys as one line)."""
        keys = list(dict.fromkeys(_NIBP if k in NIBP_KEYS else k for k in CATALOGUE if k in vitals))
        if keys == list(self.values):
            return
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().hide()
                item.widget().setParent(None)
        self.values, self.notes = {}, {}
        for row, key in enumerate(keys):
            spec = CATALOGUE.get(key)
            name = QLabel("NIBP" if key == _NIBP else spec.label if spec else key)
            name.setFont(theme.font(9, bold=True))
            colour = theme.PARAMETER_COLOURS.get(key, theme.TEXT)
            name.setStyleSheet(f"color: {colour};")
            value = QLabel("—")
            value.setFont(theme.font(10, bold=True))
            value.setStyleSheet(f"color: {colour};")
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            unit = QLabel("mmHg" if key == _NIBP else spec.unit if spec else "")
            unit.setFont(theme.font(8))
            unit.setStyleSheet(f"color: {theme.TEXT_DIM};")
            note = QLabel("")
            note.setFont(theme.font(8))
            note.setStyleSheet(f"color: {theme.TEXT_DIM};")
            self.grid.addWidget(name, row, 0)
            self.grid.addWidget(value, row, 1)
            self.grid.addWidget(unit, row, 2)
            self.grid.addWidget(note, row, 3)
            self.values[key] = value
            self.notes[key] = note
        self.grid.setColumnStretch(3, 1)

    def show_readings(self, t: float, origin: float, readings: Mapping[str, Reading | None],
                      nibp: tuple[Reading, Reading | None, Reading | None] | None) -> None:
        """Show the cursor at epoch second ``t`` (``origin``: the session start) with ``readings``
        (vital → the value there or None) and ``nibp`` (systolic, diastolic, mean readings in
        force, or None)."""
        clock = datetime.fromtimestamp(t).astimezone().strftime("%H:%M:%S")
        self.time_label.setText(f"Cursor {clock}   ({elapsed_text(t - origin)} from start)")
        for key, label in self.values.items():
            note = self.notes[key]
            if key == _NIBP:
                if nibp is None:
                    label.setText("—")
                    note.setText("no reading yet")
                    continue
                sys_, dia, mean = nibp
                text = f"{vital_text('nibp_sys', sys_.value)}/{vital_text('nibp_dia', dia.value) if dia else '?'}"
                if mean is not None:
                    text += f" ({vital_text('nibp_mean', mean.value)})"
                label.setText(text)
                flags = sorted(set(sys_.flags) | set(dia.flags if dia else ()))
                note.setText(_age_text(t - sys_.t) + (f", {', '.join(flags)}" if flags else ""))
                continue
            reading = readings.get(key)
            if reading is None:
                label.setText("—")
                note.setText("")
                continue
            label.setText(vital_text(key, reading.value))
            note.setText(", ".join(f.replace("_", " ") for f in reading.flags))

    def value_text(self, key: str) -> str:
        """The value shown for ``key`` (a vital, or "nibp")."""
        return self.values[key].text()


class SummaryPanel(QTextBrowser):
    """The session in figures: per-vital statistics and time outside the default limits, alarms by
    priority, dose, phases, recording gaps and discharge criteria."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setFont(theme.font(9))
        self.document().setDefaultStyleSheet(
            f"th {{ color: {theme.TEXT_DIM}; text-align: left; padding-right: 8px; }}"
            f" td {{ padding-right: 8px; }} h3 {{ margin-top: 8px; margin-bottom: 2px; }}"
            f" .no {{ color: #ff6a6a; font-weight: bold; }} .dim {{ color: {theme.TEXT_DIM}; }}")
        self.setHtml("<p class='dim'>Reading the record…</p>")

    def show_summary(self, summary: ReviewSummary, pending: bool = False) -> None:
        """Show ``summary``; ``pending`` says some vitals are still being read."""
        esc = html.escape
        parts = ["<h3>Vital signs</h3><table><tr><th>Vital</th><th>Min</th><th>Max</th><th>Mean</th>"
                 "<th>Outside default limits</th></tr>"]
        for s in summary.vitals:
            spec = CATALOGUE[s.vital]
            d = spec.decimals

            def num(x: float | None, digits: int = d) -> str:
                return "—" if x is None else f"{x:.{digits}f}"

            limits = ", ".join(lim.text() for lim in s.limits)
            if s.vital in NIBP_KEYS:
                outside = "—" if s.outside_readings is None else f"{s.outside_readings} reading(s)"
            else:
                outside = "—" if s.outside_s is None else duration_text(s.outside_s)
            if limits:
                outside += f" <span class='dim'>({esc(limits)})</span>"
            parts.append(f"<tr><td>{esc(spec.label)} <span class='dim'>{esc(spec.unit)}</span></td>"
                         f"<td>{num(s.min)}</td><td>{num(s.max)}</td><td>{num(s.mean, max(d, 1))}</td>"
                         f"<td>{outside}</td></tr>")
        if not summary.vitals:
            parts.append("<tr><td colspan='5' class='dim'>No vital signs were recorded.</td></tr>")
        parts.append("</table>")
        if pending:
            parts.append("<p class='dim'>Still reading the other vitals…</p>")
        parts.append("<p class='dim'>Flagged values (artifact, sensor off…) are left out.</p>")
        counts = ", ".join(f"<span style='color:{theme.PRIORITY_COLOURS[p]}'>{p}</span> {n}"
                           for p, n in summary.alarms_by_priority.items())
        parts.append(f"<h3>Alarms</h3><p>{counts} ({summary.technical_alarms} technical)</p>")
        if summary.alarm_limits:
            parts.append(f"<p class='dim'>Alarm limits: {esc(summary.alarm_limits)}</p>")
        dose = "—" if summary.delivered_mg is None else f"{summary.delivered_mg:.1f} mg delivered"
        if summary.planned_mg:
            dose += f" of {summary.planned_mg:.1f} mg planned"
        parts.append(f"<h3>Dose</h3><p>{esc(dose)}</p>")
        phases = "".join(f"<tr><td>{esc(label)}</td><td>{duration_text(seconds)}</td></tr>"
                         for label, seconds in summary.phases)
        parts.append(f"<h3>Phases</h3><table>{phases}<tr><td>Session</td>"
                     f"<td>{duration_text(summary.duration_s)}</td></tr></table>")
        if summary.gaps:
            gaps = ", ".join(f"{s.astimezone().strftime('%H:%M:%S')}–{e.astimezone().strftime('%H:%M:%S')}"
                             for s, e, _ in summary.gaps)
            parts.append(f"<h3>Recording gaps</h3><p>{esc(gaps)}</p>")
        parts.append("<h3>Discharge criteria</h3>")
        if summary.discharge:
            rows = "".join(f"<tr><td>{esc(c.label)}</td><td>{'yes' if c.met else '<span class=no>NO</span>'}</td>"
                           f"<td class='dim'>{esc(c.detail or '')}</td></tr>" for c in summary.discharge)
            parts.append(f"<table>{rows}</table>")
        parts.append(f"<p class='dim'>Criteria {esc(summary.discharge_source)}.</p>")
        self.setHtml("".join(parts))

