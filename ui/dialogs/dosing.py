"""Dosing: starting the IV infusion or logging the first nasal device (with the pre-dose BP
advisory decision), pausing, changing the rate, stopping, ending esketamine dosing early, and a
manual NIBP reading. Every step is monitor's action; the dialogs show its refusals."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from monitor.protocols import RateNeedsConfirmation
from monitor.session import DosingDuringAlarm
from monitor.staff import Actor, Role, clock
from ui import theme
from ui.context import UiContext
from ui.dialogs.base import (
    ChoiceRow,
    QuickPicks,
    SessionDialog,
    device_now,
    dry_run,
    hint,
    parse_number,
    run_modal,
    session_state,
)

__all__ = [
    "PAUSE_REASONS",
    "EndDosingDialog",
    "InfusionStartDialog",
    "ManualNibpDialog",
    "PauseDialog",
    "RateChangeDialog",
    "StopInfusionDialog",
    "begin_dosing",
]

#: Quick-pick reasons for pausing the infusion (free text is always possible).
PAUSE_REASONS = ("Nausea / vomiting", "High blood pressure", "Dissociation / emergence reaction",
                 "Low SpO2 / breathing", "Patient request", "IV line / pump problem")
_RATE_REASONS = ("Prescriber's order", "Side effects", "Patient request")
_STOP_REASONS = ("Planned dose given", "Side effects", "Patient request")
_END_REASONS = ("Side effects", "Patient request", "Prescriber's order")
# Who a trial run is made as when nobody is signed in (the dosing checks do not depend on the user).
_TRIAL_ACTOR = Actor(username="trial", display_name="Trial", role=Role.NURSE)


class _ReasonToProceed:
    """A reason field that appears when monitor refuses until the nurse confirms — by default a
    rate far above the plan's (:class:`~monitor.protocols.RateNeedsConfirmation`): the nurse
    reads the message, checks it, and confirms by typing the reason (recorded) and pressing OK
    again."""

    def __init__(self, dialog: SessionDialog, title: str = "Confirm a rate far above the plan",
                 hint: str = "reason for this rate (required)",
                 refusal: type[Exception] = RateNeedsConfirmation) -> None:
        self.refusal = refusal
        self.box = QGroupBox(title)
        layout = QVBoxLayout(self.box)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setFont(theme.font(12, bold=True))
        layout.addWidget(self.message)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText(hint)
        layout.addWidget(self.reason)
        self.box.hide()
        dialog.body.addWidget(self.box)

    def value(self) -> str | None:
        """The confirmation reason, when the field is shown and filled."""
        return self.reason.text().strip() or None if not self.box.isHidden() else None

    def run(self, work: Callable[[str | None], object]) -> None:
        """Run ``work(reason)``; a rate needing confirmation reveals the field and refuses."""
        try:
            work(self.value())
        except self.refusal as exc:
            self.message.setText(str(exc))
            self.box.show()
            self.reason.setFocus()
            raise


class ManualNibpDialog(SessionDialog):
    """A BP measured by hand: systolic, diastolic, optional mean (mmHg); checked by monitor's
    NIBP reading model and recorded with source "manual" and the user."""

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(context, "Manual blood pressure", parent, ok_text="Record BP")
        form = QFormLayout()
        self.sys = QLineEdit()
        self.sys.setPlaceholderText("mmHg")
        self.dia = QLineEdit()
        self.dia.setPlaceholderText("mmHg")
        self.mean = QLineEdit()
        self.mean.setPlaceholderText("optional")
        form.addRow("Systolic", self.sys)
        form.addRow("Diastolic", self.dia)
        form.addRow("Mean", self.mean)
        self.body.addLayout(form)
        state = session_state(context)
        if state is not None and state.nibp_readings:
            self.body.addWidget(hint(f"Last reading {state.nibp_readings[-1].text()}."))
        self.body.addWidget(hint("Recorded at the monitor's time now, as measured by you."))
        self.sys.setFocus()
        self.setMinimumWidth(theme.px(480))

    def submit(self) -> None:
        """Record the reading (monitor refuses impossible values)."""
        sys_v = parse_number(self.sys.text(), "systolic BP (mmHg)")
        dia_v = parse_number(self.dia.text(), "diastolic BP (mmHg)")
        mean_v = parse_number(self.mean.text(), "mean BP (mmHg)", required=False)
        actor = self.actor()
        self.service.record_nibp(sys_v, dia_v, actor, mean_mmhg=mean_v, t=self.now())


class InfusionStartDialog(SessionDialog):
    """Before dosing starts (IV infusion start or the first nasal device): the plan, the pre-dose
    BP, and — when monitor says a pre-dose BP advisory is pending — the advisory text with an
    explicit proceed / defer decision (and optional note), recorded with ``decide_bp``. When
    monitor would refuse to dose (no pre-dose BP), its message shows at once with a button for a
    manual NIBP. :attr:`outcome` is "started", "deferred" or None."""

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        state = session_state(context)
        if state is None:
            raise ValueError("No session is being recorded")
        self.iv = state.infusion is not None
        title = "Start the infusion" if self.iv else f"Log nasal device 1 of {state.devices.plan.devices}"
        super().__init__(context, title, parent, ok_text="Start infusion" if self.iv else "Log device 1")
        self.outcome: str | None = None
        self.deciding = False
        plan = state.plan
        plan_label = QLabel(plan.describe())
        plan_label.setWordWrap(True)
        plan_label.setFont(theme.font(13, bold=True))
        self.body.addWidget(plan_label)
        self.rate = QLineEdit()
        if self.iv:
            form = QFormLayout()
            self.rate.setText(f"{plan.rate_mg_per_h:.1f}")
            form.addRow("Rate set on the pump (mg/h)", self.rate)
            self.body.addLayout(form)
        self.bp_label = QLabel("")
        self.bp_label.setWordWrap(True)
        self.body.addWidget(self.bp_label)
        self.nibp_button = QPushButton("Enter a manual NIBP…")
        self.nibp_button.setAutoDefault(False)
        self.nibp_button.clicked.connect(self._manual_nibp)
        self.body.addWidget(self.nibp_button)

        self.advisory_box = QGroupBox("Pre-dose blood pressure advisory")
        box = QVBoxLayout(self.advisory_box)
        self.advisory = QLabel("")
        self.advisory.setObjectName("advisory")
        self.advisory.setWordWrap(True)
        self.advisory.setFont(theme.font(13, bold=True))
        self.advisory.setContentsMargins(10, 8, 10, 8)
        box.addWidget(self.advisory)
        self.decision = ChoiceRow([("proceed", "Proceed with dosing"), ("defer", "Defer dosing")])
        box.addWidget(self.decision)
        self.note = QLineEdit()
        self.note.setPlaceholderText("optional note, e.g. prescriber informed")
        box.addWidget(self.note)
        self.body.addWidget(self.advisory_box)
        self.high_rate = _ReasonToProceed(self)
        self.during_alarm = _ReasonToProceed(self, "Dosing during a HIGH alarm",
                                                  "reason to start dosing now (required, recorded)", DosingDuringAlarm)
        self.refresh()
        self.setMinimumWidth(theme.px(760))

    def refresh(self) -> None:
        """Show the pre-dose BP, the advisory (if any) and monitor's reason if dosing would be refused."""
        state = self.state
        now = self.now()
        bp = state.pre_dose_bp(now)
        self.bp_label.setText(f"Pre-dose BP {bp[0]:.0f}/{bp[1]:.0f} ({bp[3]})" if bp else "No pre-dose BP recorded yet.")
        advisory = state.bp_advisory_pending()
        deferred = state.bp_decisions[-1] if state.bp_decisions and state.bp_decisions[-1].decision == "defer" else None
        if advisory is not None:
            self.advisory.setText(advisory.text())
        elif deferred is not None:
            self.advisory.setText(f"Dosing was deferred at {clock(deferred.t)} by {deferred.by.display_name} "
                                  f"(BP {deferred.sys:.0f}/{deferred.dia:.0f}). Measure again, or record a "
                                  "decision to proceed.")
        self.deciding = advisory is not None or deferred is not None
        self.advisory_box.setVisible(self.deciding)
        if advisory is None and deferred is None:
            actor = self.context.user or _TRIAL_ACTOR
            problem = (dry_run(state, lambda s: s.start_infusion(now, actor)) if self.iv
                       else dry_run(state, lambda s: s.log_nasal_device(now, actor)))
            self.show_error(problem or "")
            if problem and not bp:
                self.nibp_button.setFocus()

    def _manual_nibp(self) -> None:
        run_modal(ManualNibpDialog(self.context, self))
        self.refresh()

    def submit(self) -> None:
        """Record the decision (if chosen), then start the infusion / log the first device."""
        rate = parse_number(self.rate.text(), "rate (mg/h)") if self.iv else None
        actor = self.actor()
        now = self.now()
        decision = self.decision.value() if self.deciding else None
        if decision is not None:
            self.service.decide_bp(decision, actor, self.note.text() or None, t=now)
            self.decision.set_value(None)
            if decision == "defer":
                self.outcome = "deferred"
                return
            self.refresh()
        if self.iv:
            self.during_alarm.run(lambda why: self.high_rate.run(
                lambda confirmed: self.service.start_infusion(actor, rate, high_rate_reason=confirmed, alarm_reason=why,
                                                              t=now)))
        else:
            self.during_alarm.run(lambda why: self.service.log_nasal_device(actor, t=now, alarm_reason=why))
        self.outcome = "started"


def begin_dosing(context: UiContext, parent: QWidget | None = None) -> str | None:
    """Open :class:`InfusionStartDialog`; returns its outcome ("started", "deferred" or None)."""
    dialog = InfusionStartDialog(context, parent)
    run_modal(dialog)
    return dialog.outcome


class _ReasonDialog(SessionDialog):
    """A reason field with quick picks."""

    def __init__(self, context: UiContext, title: str, parent: QWidget | None, picks: tuple[str, ...], *,
                 ok_text: str, label: str = "Reason", placeholder: str = "reason") -> None:
        super().__init__(context, title, parent, ok_text=ok_text)
        self.info = hint("")
        self.body.addWidget(self.info)
        self.form = QFormLayout()
        self.reason = QLineEdit()
        self.reason.setPlaceholderText(placeholder)
        self.form.addRow(label, self.reason)
        self.body.addLayout(self.form)
        self.picks = QuickPicks(self.reason, picks)
        self.body.addWidget(self.picks)
        self.reason.setFocus()
        self.setMinimumWidth(theme.px(640))


class PauseDialog(_ReasonDialog):
    """Pause the infusion: a reason is required (quick picks or free text)."""

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(context, "Pause the infusion", parent, PAUSE_REASONS, ok_text="Pause infusion",
                         placeholder="why the infusion is paused (required)")
        state = session_state(context)
        if state is not None and state.infusion is not None:
            now = device_now(context)
            self.info.setText(f"Delivered {state.infusion.delivered_mg(now):.1f} of {state.plan.dose_mg:.1f} mg "
                              f"at {state.infusion.rate_at(now):.1f} mg/h.")

    def submit(self) -> None:
        """Record the pause (monitor refuses an empty reason)."""
        actor = self.actor()
        self.service.pause_infusion(actor, self.reason.text(), t=self.now())


class RateChangeDialog(_ReasonDialog):
    """Change the infusion rate: the new rate (mg/h) and a reason."""

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(context, "Change the infusion rate", parent, _RATE_REASONS, ok_text="Change rate",
                         placeholder="why the rate changes (required)")
        self.new_rate = QLineEdit()
        self.new_rate.setPlaceholderText("mg/h")
        self.form.insertRow(0, "New rate (mg/h)", self.new_rate)
        state = session_state(context)
        if state is not None and state.infusion is not None:
            now = device_now(context)
            log = state.infusion
            self.info.setText(f"Current rate {log.rate_at(now):.1f} mg/h (plan {state.plan.rate_mg_per_h:.1f} mg/h); "
                              f"delivered {log.delivered_mg(now):.1f} of {state.plan.dose_mg:.1f} mg.")
        self.high_rate = _ReasonToProceed(self)
        self.new_rate.setFocus()

    def submit(self) -> None:
        """Record the rate change (monitor checks the rate and the reason; a rate far above the
        plan's needs the confirmation field)."""
        rate = parse_number(self.new_rate.text(), "new rate (mg/h)")
        actor = self.actor()
        now = self.now()
        self.high_rate.run(lambda confirmed: self.service.change_rate(actor, rate, self.reason.text(),
                                                                 high_rate_reason=confirmed, t=now))


class StopInfusionDialog(_ReasonDialog):
    """Stop the infusion for good (optional reason); the session enters recovery."""

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(context, "Stop the infusion", parent, _STOP_REASONS, ok_text="Stop infusion",
                         label="Reason", placeholder="optional")
        self.ok_button.setObjectName("danger")
        state = session_state(context)
        if state is not None and state.infusion is not None:
            now = device_now(context)
            self.info.setText(f"Delivered {state.infusion.delivered_mg(now):.1f} of {state.plan.dose_mg:.1f} mg. "
                              "Stopping cannot be undone: recovery starts now.")

    def submit(self) -> None:
        """Record the stop."""
        actor = self.actor()
        self.service.stop_infusion(actor, self.reason.text() or None, t=self.now())


class EndDosingDialog(_ReasonDialog):
    """Esketamine: end dosing before every planned device was taken (reason required)."""

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(context, "End dosing early", parent, _END_REASONS, ok_text="End dosing",
                         placeholder="why no more devices are taken (required)")
        state = session_state(context)
        if state is not None and state.devices is not None:
            d = state.devices
            self.info.setText(f"{d.devices_logged} of {d.plan.devices} devices taken. Recovery starts now.")

    def submit(self) -> None:
        """Record the early end of dosing."""
        actor = self.actor()
        self.service.end_dosing(actor, self.reason.text(), t=self.now())
