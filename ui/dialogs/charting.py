"""Charting: every assessment of monitor's registry, rescue medication and notes.

The assessment dialog only collects answers; the assessment model (``monitor.assessments``)
decides what is valid and its message is shown when it is not. Scale levels, anchors and item
lists come from monitor's tables (MOAAS_LEVELS, RASS_LEVELS, CADSS_ANCHORS, CADSS6_ITEMS,
BPRS_ANCHORS, ALDRETE_ITEMS); the Aldrete SpO2 (and circulation) items are pre-selected from
monitor's suggestions, for the nurse to confirm.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from monitor.assessments import (
    ALDRETE_ITEMS,
    ASSESSMENTS,
    BPRS_ANCHORS,
    CADSS6_ITEMS,
    CADSS_ANCHORS,
    MOAAS_LEVELS,
    NOTE_MAX_CHARS,
    RASS_LEVELS,
    Assessment,
    BPRSPlus,
    DoseUnit,
    Note,
    RescueMedication,
    Route,
    suggest_aldrete_circulation,
    suggest_aldrete_spo2,
)
from ui import theme
from ui.context import UiContext
from ui.dialogs.base import (
    ChoiceRow,
    FormDialog,
    SessionDialog,
    describe_error,
    hint,
    parse_number,
)

__all__ = ["AssessmentDialog", "LevelList", "NoteDialog", "RescueMedicationDialog"]


class _RowLabel(QLabel):
    """A description that chooses its row's radio button when touched."""

    def __init__(self, text: str, button: QRadioButton) -> None:
        super().__init__(text)
        self.button = button
        self.setWordWrap(True)

    def mousePressEvent(self, event) -> None:
        self.button.setChecked(True)
        self.button.setFocus()
        super().mousePressEvent(event)


class LevelList(QWidget):
    """A vertical list of large radio buttons, one per ``(value, description)``: the score in one
    column, its description (also touchable) in the next. :meth:`value` is the chosen value or
    None. Values may be negative (RASS), so they are mapped, not used as button ids."""

    def __init__(self, options: Iterable[tuple[Any, str]], parent: QWidget | None = None, points: float = 13,
                 signed: bool = False) -> None:
        super().__init__(parent)
        self.group = QButtonGroup(self)
        self._values: dict[int, Any] = {}
        self._buttons: dict[Any, QRadioButton] = {}
        self.descriptions: dict[Any, QLabel] = {}
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setHorizontalSpacing(10)
        layout.setVerticalSpacing(2)
        for i, (value, text) in enumerate(options):
            button = QRadioButton(f"{value:+d}" if signed and value else str(value))
            button.setFont(theme.font(points, bold=True))
            button.setMinimumHeight(theme.px(36))
            label = _RowLabel(text, button)
            label.setFont(theme.font(points))
            self.group.addButton(button, i)
            self._values[i] = value
            self._buttons[value] = button
            self.descriptions[value] = label
            layout.addWidget(button, i, 0)
            layout.addWidget(label, i, 1)
        layout.setColumnStretch(1, 1)

    def value(self) -> Any:
        """The chosen value, or None."""
        checked = self.group.checkedId()
        return self._values.get(checked) if checked != -1 else None

    def set_value(self, value: Any) -> None:
        """Choose ``value`` (None clears)."""
        if value is None:
            self.group.setExclusive(False)
            for button in self._buttons.values():
                button.setChecked(False)
            self.group.setExclusive(True)
        else:
            self._buttons[value].setChecked(True)

    def button(self, value: Any) -> QRadioButton:
        """The radio button of ``value``."""
        return self._buttons[value]

    def text(self, value: Any) -> str:
        """The description shown for ``value``."""
        return self.descriptions[value].text()


def _legend(anchors: dict[int, str]) -> str:
    return " · ".join(f"{k} {v}" for k, v in sorted(anchors.items()))


def _score_row(anchors: dict[int, str]) -> ChoiceRow:
    return ChoiceRow([(k, str(k)) for k in sorted(anchors)], tooltips=dict(anchors), min_width=theme.px(40),
                     compact=True)


class AssessmentDialog(FormDialog):
    """One assessment of :data:`monitor.assessments.ASSESSMENTS` by ``kind``: MOAA/S and RASS as big
    radio buttons with their level descriptions; CADSS-6 (six items 0–4); full CADSS (23 items
    0–4, scrolling); BPRS+ (four items 1–7); pain NRS (the number the patient gives); nausea and
    vomiting yes/no; modified Aldrete (five items 0–2, the SpO2 item pre-selected from
    ``latest_spo2`` with :func:`suggest_aldrete_spo2`, circulation from ``latest_sys`` and
    ``baseline_sys`` when both are known).

    OK builds the model (:attr:`assessment`); when ``on_submit`` is given it is then called with
    the model (e.g. to chart it) and its refusal is shown too, keeping every answer.
    """

    def __init__(self, kind: str, parent: QWidget | None = None, *, latest_spo2: float | None = None,
                 latest_sys: float | None = None, baseline_sys: float | None = None,
                 on_submit: Callable[[Assessment], Any] | None = None) -> None:
        if kind not in ASSESSMENTS:
            raise ValueError(f"Unknown assessment {kind!r}; known: {', '.join(ASSESSMENTS)}")
        self.kind = kind
        self.model_class = ASSESSMENTS[kind]
        super().__init__(self.model_class.title, parent, ok_text="Chart" if on_submit else "OK")
        self.on_submit = on_submit
        self.assessment: Assessment | None = None
        self.fields: dict[str, Any] = {}     # answer name → widget with value()/set_value() or QLineEdit
        self.latest_spo2 = latest_spo2
        getattr(self, f"_build_{kind}")(latest_sys=latest_sys, baseline_sys=baseline_sys)

    # ------------------------------------------------------------------ builders
    def _build_moaas(self, **_: Any) -> None:
        levels = LevelList(sorted(MOAAS_LEVELS.items(), reverse=True))
        self.fields["level"] = levels
        self.body.addWidget(levels)
        self.setMinimumWidth(theme.px(680))

    def _build_rass(self, **_: Any) -> None:
        levels = LevelList(sorted(RASS_LEVELS.items(), reverse=True), signed=True)
        self.fields["level"] = levels
        self.body.addWidget(levels)
        self.setMinimumWidth(theme.px(860))

    def _items_grid(self, numbers: Iterable[int], anchors: dict[int, str], mark: Iterable[int] = (),
                    columns: int = 1) -> None:
        """One row per item (its number, then a score button per anchor), in ``columns`` columns."""
        self.body.addWidget(hint(_legend(anchors)))
        grid = QGridLayout()
        grid.setVerticalSpacing(theme.px(4))
        grid.setHorizontalSpacing(theme.px(8))
        marked = set(mark)
        numbers = list(numbers)
        per_column = -(-len(numbers) // columns)
        for index, n in enumerate(numbers):
            column, row = divmod(index, per_column)
            label = QLabel(f"Item {n}" + (" ★" if n in marked else ""))
            if n in marked:
                label.setToolTip("One of the six CADSS-6 items")
            choice = _score_row(anchors)
            grid.addWidget(label, row, column * 2)
            grid.addWidget(choice, row, column * 2 + 1)
            grid.setColumnStretch(column * 2 + 1, 1)
            self.fields[f"item{n}"] = choice
        self.body.addLayout(grid)

    def _build_cadss6(self, **_: Any) -> None:
        self.body.addWidget(hint("Items 1, 2, 6, 7, 15 and 22 of the CADSS, as worded on the clinic's form."))
        self._items_grid(CADSS6_ITEMS, CADSS_ANCHORS)
        self.setMinimumWidth(theme.px(640))

    def _build_cadss(self, **_: Any) -> None:
        self.body.addWidget(hint("The 23 subjective items, as worded on the clinic's licensed form "
                                 "(★: the CADSS-6 items)."))
        self._items_grid(range(1, 24), CADSS_ANCHORS, CADSS6_ITEMS, columns=3)

    def _build_bprs_plus(self, **_: Any) -> None:
        self.body.addWidget(hint(_legend(BPRS_ANCHORS)))
        grid = QGridLayout()
        for row, name in enumerate(n for n in BPRSPlus.model_fields):
            grid.addWidget(QLabel(name.replace("_", " ").capitalize()), row, 0)
            choice = _score_row(BPRS_ANCHORS)
            grid.addWidget(choice, row, 1)
            self.fields[name] = choice
        grid.setColumnStretch(1, 1)
        self.body.addLayout(grid)
        self.setMinimumWidth(theme.px(760))

    def _build_pain_nrs(self, **_: Any) -> None:
        self.body.addWidget(QLabel("Pain rating: 0 no pain … 10 worst imaginable"))
        rating = QLineEdit()
        rating.setPlaceholderText("the number the patient gives")
        rating.setFont(theme.font(18, bold=True))
        self.fields["rating"] = rating
        self.body.addWidget(rating)
        rating.setFocus()
        self.setMinimumWidth(theme.px(560))

    def _build_nausea(self, **_: Any) -> None:
        form = QFormLayout()
        for name in ("nausea", "vomiting"):
            choice = ChoiceRow([(True, "Yes"), (False, "No")], min_width=theme.px(90))
            form.addRow(name.capitalize(), choice)
            self.fields[name] = choice
        self.body.addLayout(form)
        self.setMinimumWidth(theme.px(480))

    def _build_aldrete(self, latest_sys: float | None = None, baseline_sys: float | None = None, **_: Any) -> None:
        grid = QGridLayout()
        grid.setSpacing(8)
        self.suggestions: dict[str, QLabel] = {}
        for i, (name, options) in enumerate(ALDRETE_ITEMS.items()):
            box = QGroupBox(name.replace("_", " ").capitalize())
            layout = QVBoxLayout(box)
            layout.setSpacing(0)
            levels = LevelList(sorted(options.items(), reverse=True), points=11.5)
            layout.addWidget(levels)
            note = hint("")
            note.hide()
            layout.addWidget(note)
            self.suggestions[name] = note
            self.fields[name] = levels
            if name == "oxygen_saturation":
                self.on_oxygen = QCheckBox("Patient is on oxygen")
                self.on_oxygen.toggled.connect(self._suggest_spo2)
                layout.addWidget(self.on_oxygen)
            grid.addWidget(box, i // 3, i % 3)
        self.body.addLayout(grid)
        self._suggest_spo2()
        if latest_sys is not None and baseline_sys is not None:
            try:
                score = suggest_aldrete_circulation(latest_sys, baseline_sys)
            except ValueError as exc:
                self.suggestions["circulation"].show()
                self.suggestions["circulation"].setText(describe_error(exc))
            else:
                self.suggestions["circulation"].show()
                self.fields["circulation"].set_value(score)
                self.suggestions["circulation"].setText(
                    f"Suggested {score} from BP {latest_sys:.0f} systolic vs baseline {baseline_sys:.0f}: confirm.")
        self.setMinimumWidth(theme.px(1000))

    def _suggest_spo2(self) -> None:
        note = self.suggestions["oxygen_saturation"]
        note.show()
        if self.latest_spo2 is None:
            note.setText("No SpO2 from the monitor: choose from the patient's saturation.")
            return
        on_oxygen = self.on_oxygen.isChecked()
        try:
            score = suggest_aldrete_spo2(self.latest_spo2, on_oxygen)
        except ValueError as exc:
            note.setText(describe_error(exc))
            return
        self.fields["oxygen_saturation"].set_value(score)
        note.setText(f"Suggested {score} from SpO2 {self.latest_spo2:.0f} % "
                     f"{'on oxygen' if on_oxygen else 'on room air'}: confirm.")

    # ------------------------------------------------------------------ answers
    def answers(self) -> dict[str, Any]:
        """Raw answers by name (None where unanswered; typed text for the pain rating)."""
        out = {}
        for name, widget in self.fields.items():
            out[name] = widget.text() if isinstance(widget, QLineEdit) else widget.value()
        return out

    def set_answer(self, name: str, value: Any) -> None:
        """Answer ``name`` (``level``, ``item6``, ``rating``, ``activity`` …) as the nurse would."""
        widget = self.fields[name]
        if isinstance(widget, QLineEdit):
            widget.setText("" if value is None else str(value))
        else:
            widget.set_value(value)

    def payload(self) -> dict[str, Any]:
        """The model's input from the answers (the model validates it)."""
        answers = self.answers()
        if self.kind == "cadss":
            return {"items": [answers[f"item{n}"] for n in range(1, 24)]}
        if self.kind == "cadss6":
            return {"items": {n: answers[f"item{n}"] for n in CADSS6_ITEMS}}
        if self.kind == "pain_nrs":
            return {"rating": parse_number(answers["rating"], "pain rating", integer=True)}
        return answers

    def submit(self) -> None:
        """Build the assessment (monitor's model refuses what is out of range or unanswered)."""
        assessment = self.model_class.model_validate(self.payload())
        if self.on_submit is not None:
            self.on_submit(assessment)
        self.assessment = assessment


class RescueMedicationDialog(SessionDialog):
    """Rescue medication given: drug, dose and unit, route, given by (the signed-in user's name by
    default), optional comment → a :class:`RescueMedication` event at the device time now."""

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(context, "Rescue medication", parent, ok_text="Record medication")
        form = QFormLayout()
        form.setSpacing(8)
        self.drug = QLineEdit()
        self.drug.setPlaceholderText("drug name")
        form.addRow("Drug", self.drug)
        self.dose = QLineEdit()
        self.dose.setPlaceholderText("amount")
        self.unit = QComboBox()
        for unit in typing.get_args(DoseUnit):
            self.unit.addItem(unit, unit)
        dose_row = self.row(self.dose, self.unit)
        form.addRow("Dose", dose_row)
        self.route = ChoiceRow([(r, r.value) for r in Route], tooltips={r: r.label for r in Route}, columns=4)
        form.addRow("Route", self.route)
        self.given_by = QLineEdit(context.user.display_name if context.user else "")
        form.addRow("Given by", self.given_by)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("optional")
        form.addRow("Comment", self.comment)
        self.body.addLayout(form)
        self.drug.setFocus()
        self.setMinimumWidth(theme.px(640))

    def medication(self) -> RescueMedication:
        """The event from the form (the model refuses bad values)."""
        dose = parse_number(self.dose.text(), "dose")
        return RescueMedication(drug=self.drug.text(), dose=dose, dose_unit=self.unit.currentData(),
                                route=self.route.value(), given_by=self.given_by.text(),
                                comment=self.comment.text() or None)

    def submit(self) -> None:
        """Record the medication event."""
        event = self.medication()
        actor = self.actor()
        self.service.record_event(event, actor, t=self.now())


class NoteDialog(SessionDialog):
    """A free-text note on the session (monitor limits its length)."""

    def __init__(self, context: UiContext, parent: QWidget | None = None, text: str = "") -> None:
        super().__init__(context, "Note", parent, ok_text="Save note")
        self.text = QPlainTextEdit(text)
        self.text.setTabChangesFocus(True)
        self.text.setMinimumHeight(theme.px(180))
        self.body.addWidget(self.text)
        self.count = hint("")
        self.body.addWidget(self.count)
        self.text.textChanged.connect(self._count)
        self._count()
        self.text.setFocus()
        self.setMinimumWidth(theme.px(640))

    def _count(self) -> None:
        self.count.setText(f"{len(self.text.toPlainText().strip())} of {NOTE_MAX_CHARS} characters. "
                           "Notes are left out of de-identified exports.")

    def submit(self) -> None:
        """Record the note."""
        note = Note(text=self.text.toPlainText())
        actor = self.actor()
        self.service.record_event(note, actor, t=self.now())
