"""The late-entry dialog of the review window: a note or a structured event charted after the fact on
a closed session, at a time within it, with a mandatory reason, by the signed-in user.

The dialog only collects; :func:`monitor.app.review.add_late_entry` decides (open session, time outside
the session, missing reason, a bad event are refused there and shown in the error label).
"""

from __future__ import annotations

from datetime import datetime, timezone

from PySide6.QtCore import QDateTime
from PySide6.QtWidgets import QComboBox, QDateTimeEdit, QFormLayout, QLineEdit, QPlainTextEdit, QWidget

from monitor.assessments import EVENTS, PresetEvent, Route, Severity
from monitor.app.review import late_entry_events
from ui.context import UiContext
from ui.dialogs.base import FormDialog, hint, parse_number, require_token

__all__ = ["LateEntryDialog"]

_UNITS = ("mg", "mcg", "g", "mL", "units", "mmol")


class LateEntryDialog(FormDialog):
    """Add a late entry to session ``session_id`` (from ``start`` to ``end``, aware datetimes) at
    ``at`` by default. On success :attr:`entry_id` holds the new entry's id."""

    def __init__(self, context: UiContext, session_id: int, start: datetime, end: datetime, at: datetime,
                 parent: QWidget | None = None) -> None:
        super().__init__("Add a late entry", parent, ok_text="Add late entry",
                         subtitle="Charted after the fact: the record keeps the time it refers to, when it was "
                                  "added, by whom and why. Nothing already recorded changes.")
        self.context = context
        self.session_id = session_id
        self.entry_id: int | None = None
        form = QFormLayout()
        form.setSpacing(8)
        self.kind = QComboBox()
        for key, title in late_entry_events().items():
            self.kind.addItem(title, key)
        form.addRow("Entry", self.kind)
        self.when = QDateTimeEdit()
        self.when.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
        self.when.setDateTimeRange(QDateTime.fromSecsSinceEpoch(int(start.timestamp())),
                                   QDateTime.fromSecsSinceEpoch(int(end.timestamp())))
        self.when.setDateTime(QDateTime.fromSecsSinceEpoch(int(round(at.timestamp()))))
        form.addRow("Time (local)", self.when)
        self.severity = QComboBox()
        self.severity.addItem("—", None)
        for level in Severity:
            self.severity.addItem(level.value, level.value)
        form.addRow("Severity", self.severity)
        self.drug = QLineEdit()
        self.dose = QLineEdit()
        self.unit = QComboBox()
        self.unit.addItems(list(_UNITS))
        self.route = QComboBox()
        for route in Route:
            self.route.addItem(f"{route.value} ({route.label})", route.value)
        self.given_by = QLineEdit()
        for label, widget in (("Drug", self.drug), ("Dose", self.dose), ("Unit", self.unit), ("Route", self.route),
                              ("Given by", self.given_by)):
            form.addRow(label, widget)
        self.text = QPlainTextEdit()
        self.text.setFixedHeight(90)
        form.addRow("Text", self.text)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("why it is charted now, e.g. \"charted at review from the paper note\"")
        form.addRow("Reason", self.reason)
        self.form = form
        self.body.addLayout(form)
        user = context.user
        self.body.addWidget(hint(f"Added as {user.display_name}." if user is not None
                                 else "You will be asked to sign in."))
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self._kind_changed()
        self.setMinimumWidth(620)

    def _kind_changed(self, *_: object) -> None:
        kind = self.kind.currentData()
        cls = EVENTS[kind]
        preset = issubclass(cls, PresetEvent)
        rescue = kind == "rescue_medication"
        self.form.setRowVisible(self.severity, preset)
        for widget in (self.drug, self.dose, self.unit, self.route, self.given_by):
            self.form.setRowVisible(widget, rescue)
        label = self.form.labelForField(self.text)
        if label is not None:
            label.setText("Note" if kind == "note" else "Comment")

    def event_payload(self) -> dict:
        """The event as typed (monitor's event model checks it)."""
        kind = self.kind.currentData()
        text = self.text.toPlainText().strip() or None
        if kind == "note":
            return {"kind": "note", "text": text}
        if kind == "rescue_medication":
            return {"kind": kind, "drug": self.drug.text(), "dose": parse_number(self.dose.text(), "dose"),
                    "dose_unit": self.unit.currentText(), "route": self.route.currentData(),
                    "given_by": self.given_by.text(), "comment": text}
        return {"kind": kind, "severity": self.severity.currentData(), "comment": text}

    def time(self) -> datetime:
        """The time typed, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.when.dateTime().toSecsSinceEpoch(), timezone.utc)

    def submit(self) -> None:
        """Record the late entry as the signed-in user (sign-in first if nobody is)."""
        event = self.event_payload()
        self.context.records.check_late_entry(self.session_id, event, self.time(), self.reason.text())
        token = require_token(self.context, self, "Sign in to add a late entry.")
        self.entry_id = self.context.records.add_late_entry(self.session_id, event, self.time(), token,
                                                            self.reason.text())
