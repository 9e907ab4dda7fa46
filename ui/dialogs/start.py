"""Starting a session: patient, protocol and plan, concomitant medications, optional manual
baseline vitals. Everything is checked by monitor (the patient and plan models, then a trial
session that runs the same actions) before anything is stored."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from datetime import date

from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from monitor.patient import Patient, Sex, age_on
from monitor.protocols import (
    MG_PER_DEVICE,
    EsketaminePlan,
    KetamineIVPlan,
    ProtocolKind,
)
from monitor.display import MEDICATION_NAMES, display_name
from monitor.session import CONCOMITANT_KEYS
from monitor.staff import Actor
from ui import theme
from ui.context import UiContext
from ui.dialogs.base import (
    ChoiceRow,
    FormDialog,
    FormError,
    describe_error,
    hint,
    parse_number,
    require_user,
)

__all__ = [
    "BASELINE_FIELDS",
    "CONCOMITANT_LABELS",
    "StartRequest",
    "StartSessionDialog",
    "check_request",
    "start_session",
]

#: How each REMS concomitant-medication question reads on screen (the display-name table).
CONCOMITANT_LABELS: dict[str, str] = {key: MEDICATION_NAMES[key] for key in CONCOMITANT_KEYS}
#: Manual baseline fields: vital key → label (the BP pair is recorded as a manual NIBP reading).
BASELINE_FIELDS: dict[str, str] = {"nibp_sys": "BP systolic", "nibp_dia": "BP diastolic", "hr": "Heart rate",
                                   "spo2": "SpO2", "rr": "Respiratory rate"}
_BP_KEYS = ("nibp_sys", "nibp_dia")


@dataclass
class StartRequest:
    """What the start dialog collected: the patient, the plan, the concomitant medications (the
    four REMS flags plus ``other``; empty when not asked) and manual baseline values by vital key
    (``nibp_sys``/``nibp_dia`` become a manual NIBP reading, the others a manual baseline)."""

    patient: Patient
    plan: KetamineIVPlan | EsketaminePlan
    concomitant: dict = field(default_factory=dict)
    manual_baseline: dict = field(default_factory=dict)


def check_request(context: UiContext, request: StartRequest, actor: Actor) -> None:
    """Run the whole start on a trial session (nothing stored); raises monitor's refusal."""
    context.service.check_start(request.patient, request.plan, actor, concomitant=request.concomitant,
                                manual_baseline=request.manual_baseline)


def start_session(context: UiContext, request: StartRequest) -> list[str]:
    """Open the session with ``context.user`` and what the dialog collected (``service.start_session``:
    the concomitant medications, a manual pre-dose BP and other manual baseline values are recorded
    with it). Refusals raise; nothing is stored then. Returns no warnings (kept for the dialog)."""
    actor = context.user
    if actor is None:
        raise FormError("Sign in to start a session")
    context.service.start_session(request.patient, request.plan, actor, concomitant=request.concomitant,
                                  manual_baseline=request.manual_baseline)
    return []


class StartSessionDialog(FormDialog):
    """Patient, protocol and plan, concomitant medications and optional manual baseline vitals.

    OK builds a :class:`StartRequest` (:attr:`request`), checks it with monitor on a trial session
    and, when ``start`` is true (default), starts the session (:func:`start_session`). Any refusal
    is shown and the dialog stays open with what was typed. :attr:`warnings` lists follow-up
    actions that could not be recorded after the session was opened.
    """

    def __init__(self, context: UiContext, parent: QWidget | None = None, *, start: bool = True) -> None:
        super().__init__("Start a session", parent, ok_text="Start session")
        self.context = context
        self.start = start
        self.request: StartRequest | None = None
        self.warnings: list[str] = []
        settings = context.settings
        columns = QHBoxLayout()
        columns.setSpacing(14)
        self.body.addLayout(columns)

        # ---------------------------------------------------------------- patient
        patient_box = QGroupBox("Patient")
        form = QFormLayout(patient_box)
        form.setSpacing(8)
        self.name = QLineEdit()
        self.name.setPlaceholderText("patient's name")
        form.addRow("Name", self.name)
        self.mrn = QLineEdit()
        self.mrn.setPlaceholderText("optional")
        form.addRow("Record no. (MRN)", self.mrn)
        self.dob = QLineEdit()
        self.dob.setPlaceholderText("YYYY-MM-DD")
        self.dob.textChanged.connect(self._update_age)
        self.age = hint("")
        dob_box = QVBoxLayout()
        dob_box.setSpacing(2)
        dob_box.addWidget(self.dob)
        dob_box.addWidget(self.age)
        form.addRow("Date of birth", dob_box)
        self.sex = ChoiceRow([(s, s.value.capitalize()) for s in Sex], columns=2)
        form.addRow("Sex", self.sex)
        self.weight = QLineEdit()
        self.weight.setPlaceholderText("kg")
        self.weight.textChanged.connect(self._update_plan)
        form.addRow("Weight (kg)", self.weight)
        self.hypertension = QCheckBox("Known hypertension")
        form.addRow("", self.hypertension)
        self.prior = QSpinBox()
        self.prior.setRange(0, 99_999)
        self.prior.setToolTip("Ketamine / esketamine sessions this patient has had before (0 for the first)")
        form.addRow("Prior sessions", self.prior)
        columns.addWidget(patient_box, stretch=5)

        # ---------------------------------------------------------------- protocol
        protocol_box = QGroupBox("Protocol")
        pcol = QVBoxLayout(protocol_box)
        self.protocol = ChoiceRow([(k, k.label[:1].upper() + k.label[1:]) for k in ProtocolKind], columns=1)
        self.protocol.group.idToggled.connect(lambda *_: self._protocol_changed())
        pcol.addWidget(self.protocol)
        self.pages = QStackedWidget()
        iv = QWidget()
        iv_form = QFormLayout(iv)
        iv_form.setContentsMargins(0, 6, 0, 0)
        self.dose = QLineEdit(f"{settings.ketamine_typical_dose_mg_per_kg:g}")
        self.dose.textChanged.connect(self._update_plan)
        iv_form.addRow("Dose (mg/kg)", self.dose)
        self.duration = QLineEdit(f"{settings.ketamine_duration_min:g}")
        self.duration.textChanged.connect(self._update_plan)
        iv_form.addRow("Duration (min)", self.duration)
        low, high = settings.ketamine_dose_bounds_mg_per_kg
        iv_form.addRow(hint(f"Typical {settings.ketamine_typical_dose_mg_per_kg:g} mg/kg; "
                            f"this clinic allows {low:g}–{high:g} mg/kg."))
        self.plan_text = QLabel("")
        self.plan_text.setObjectName("planText")
        self.plan_text.setWordWrap(True)
        self.plan_text.setFont(theme.font(13, bold=True))
        iv_form.addRow(self.plan_text)
        self.pages.addWidget(iv)
        esk = QWidget()
        esk_form = QFormLayout(esk)
        esk_form.setContentsMargins(0, 6, 0, 0)
        doses = typing.get_args(EsketaminePlan.model_fields["dose_mg"].annotation)
        self.esk_dose = ChoiceRow([(mg, f"{mg} mg ({mg // MG_PER_DEVICE} devices)") for mg in doses], columns=1)
        esk_form.addRow("Dose", self.esk_dose)
        self.lot = QLineEdit()
        self.lot.setPlaceholderText("as printed on the carton")
        esk_form.addRow("Lot number", self.lot)
        esk_form.addRow(hint(f"Monitoring lasts at least {settings.esketamine_monitoring_min} min from the "
                             "first device."))
        self.pages.addWidget(esk)
        pcol.addWidget(self.pages)
        middle = QVBoxLayout()
        middle.addWidget(protocol_box)
        columns.addLayout(middle, stretch=5)

        # ---------------------------------------------------------------- medications and baseline
        right = QVBoxLayout()
        meds_box = QGroupBox("Concomitant medications (REMS form)")
        grid = QGridLayout(meds_box)
        grid.setVerticalSpacing(4)
        self.concomitant: dict[str, ChoiceRow] = {}
        for i, key in enumerate(CONCOMITANT_KEYS):
            label = QLabel(CONCOMITANT_LABELS.get(key) or display_name(key))
            label.setWordWrap(True)
            label.setFont(theme.font(12))  # the dialog's, to measure the longest word with
            label.setMinimumWidth(max(label.fontMetrics().horizontalAdvance(word) for word in label.text().split()))
            choice = ChoiceRow([(True, "Yes"), (False, "No")], min_width=theme.px(56))
            grid.addWidget(label, i, 0)
            grid.addWidget(choice, i, 1)
            self.concomitant[key] = choice
        self.other_meds = QLineEdit()
        self.other_meds.setPlaceholderText("other medications (optional)")
        grid.addWidget(self.other_meds, len(CONCOMITANT_KEYS), 0, 1, 2)
        grid.addWidget(hint("Leave all four unanswered if they were not asked."), len(CONCOMITANT_KEYS) + 1, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        right.addWidget(meds_box)
        base_box = QGroupBox("Baseline vitals entered by hand (optional)")
        bgrid = QGridLayout(base_box)
        bgrid.setHorizontalSpacing(6)
        self.baseline: dict[str, QLineEdit] = {key: QLineEdit() for key in BASELINE_FIELDS}
        units = {"nibp_sys": "systolic", "nibp_dia": "diastolic", "hr": "bpm", "spo2": "%", "rr": "/min"}
        for key, edit in self.baseline.items():
            edit.setPlaceholderText(units[key])
            edit.setToolTip(BASELINE_FIELDS[key])
        bp_row = QHBoxLayout()
        bp_row.addWidget(QLabel("BP (mmHg)"))
        bp_row.addWidget(self.baseline["nibp_sys"], stretch=1)
        bp_row.addWidget(QLabel("/"))
        bp_row.addWidget(self.baseline["nibp_dia"], stretch=1)
        bgrid.addLayout(bp_row, 0, 0, 1, 6)
        for col, (key, label) in enumerate((("hr", "HR"), ("spo2", "SpO2"), ("rr", "RR"))):
            bgrid.addWidget(QLabel(label), 1, col * 2)
            bgrid.addWidget(self.baseline[key], 1, col * 2 + 1)
        note = hint("Empty fields come from the monitor. A BP typed here is recorded as a manual "
                    "pre-dose reading.")
        bgrid.addWidget(note, 2, 0, 1, 6)
        middle.addWidget(base_box)
        middle.addStretch(1)
        right.addStretch(1)
        columns.addLayout(right, stretch=5)

        self.protocol.set_value(ProtocolKind.KETAMINE_IV)
        self._protocol_changed()
        self._update_plan()
        self._update_age()
        self.name.setFocus()

    # ------------------------------------------------------------------ live feedback
    def _protocol_changed(self) -> None:
        kind = self.protocol.value()
        self.pages.setCurrentIndex(1 if kind is ProtocolKind.ESKETAMINE else 0)

    def _update_plan(self) -> None:
        """Show the computed total and rate from monitor's plan model, or why there is none yet."""
        try:
            plan = self._iv_plan()
        except ValueError as exc:
            self.plan_text.setStyleSheet(f"color: {theme.TEXT_DIM};")
            self.plan_text.setText(describe_error(exc))
            return
        self.plan_text.setStyleSheet(f"color: {theme.TEXT};")
        self.plan_text.setText(f"Total {plan.dose_mg:.1f} mg over {plan.duration_min:g} min\n"
                               f"Rate {plan.rate_mg_per_h:.1f} mg/h ({plan.rate_mg_per_kg_per_h:.2f} mg/kg/h)")

    def _update_age(self) -> None:
        text = self.dob.text().strip()
        if not text:
            self.age.setText("required")
            return
        try:
            born = date.fromisoformat(text)
            self.age.setText(f"age {age_on(born, date.today())}")
        except ValueError as exc:
            self.age.setText("write it as YYYY-MM-DD" if "isoformat" in str(exc) else describe_error(exc))

    # ------------------------------------------------------------------ building the request
    def _iv_plan(self) -> KetamineIVPlan:
        weight = parse_number(self.weight.text(), "weight (kg)")
        dose = parse_number(self.dose.text(), "dose (mg/kg)")
        duration = parse_number(self.duration.text(), "duration (min)")
        return KetamineIVPlan.for_clinic(self.context.settings, weight_kg=weight, dose_mg_per_kg=dose,
                                         duration_min=duration)

    def _patient(self) -> Patient:
        """The patient (every problem of the patient fields at once, in the model's words)."""
        problems: list[str] = []
        text = self.dob.text().strip()
        born = None
        if not text:
            problems.append("Enter the date of birth (YYYY-MM-DD)")
        else:
            try:
                born = date.fromisoformat(text)
            except ValueError:
                problems.append(f"Date of birth {text!r} should be written YYYY-MM-DD, e.g. 1980-05-17")
        try:
            weight = parse_number(self.weight.text(), "weight (kg)")
        except FormError as exc:
            problems.append(str(exc))
            weight = None
        patient = None
        if weight is not None:
            try:
                patient = Patient(display_name=self.name.text(), mrn=self.mrn.text() or None, date_of_birth=born,
                                  sex=self.sex.value() or Sex.UNKNOWN, weight_kg=weight,
                                  known_hypertension=self.hypertension.isChecked(), prior_sessions=self.prior.value())
            except ValueError as exc:
                problems.insert(0, describe_error(exc))
        if problems or patient is None:
            raise FormError("; ".join(problems))
        return patient

    def _plan(self) -> KetamineIVPlan | EsketaminePlan:
        if self.protocol.value() is ProtocolKind.ESKETAMINE:
            return EsketaminePlan.for_clinic(self.context.settings, dose_mg=self.esk_dose.value(),
                                             lot_number=self.lot.text())
        return self._iv_plan()

    def _concomitant(self) -> dict:
        answers = {key: row.value() for key, row in self.concomitant.items()}
        other = self.other_meds.text().strip()
        if all(v is None for v in answers.values()):
            return {"other": other} if other else {}
        missing = [CONCOMITANT_LABELS.get(k, k) for k, v in answers.items() if v is None]
        if missing:
            raise FormError("Answer every concomitant-medication question, or leave all four unanswered "
                            f"(unanswered: {', '.join(missing)})")
        return {**answers, **({"other": other} if other else {})}

    def _manual_baseline(self) -> dict:
        values = {}
        for key, edit in self.baseline.items():
            value = parse_number(edit.text(), BASELINE_FIELDS[key], required=False)
            if value is not None:
                values[key] = value
        if ("nibp_sys" in values) != ("nibp_dia" in values):
            raise FormError("Enter both the systolic and the diastolic BP, or neither")
        return values

    def build_request(self) -> StartRequest:
        """The request from the form (monitor's models validate each part)."""
        return StartRequest(patient=self._patient(), plan=self._plan(), concomitant=self._concomitant(),
                            manual_baseline=self._manual_baseline())

    def check(self) -> str | None:
        """What still stops the start, as the nurse edits (the same checks as OK, nothing stored)."""
        try:
            request = self.build_request()
            if self.context.user is not None:
                check_request(self.context, request, self.context.user)
        except (ValueError, LookupError) as exc:
            return describe_error(exc)
        return ""

    def submit(self) -> None:
        """Build, check on a trial session, then start (when ``start``)."""
        request = self.build_request()
        actor = require_user(self.context, self, "Sign in to start a session.")
        if actor is None:
            raise FormError("Sign in to start a session")
        check_request(self.context, request, actor)
        self.request = request
        if self.start:
            self.warnings = start_session(self.context, request)

