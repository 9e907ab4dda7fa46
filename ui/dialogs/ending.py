"""Ending a session: the discharge check and the closing signature, aborting with a reason, and
resuming sessions a crash left open."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from monitor.session import CLOSE_MEANING
from monitor.staff import PermissionDenied, Role, clock, require_role
from monitor.app.records import Records, SessionRecord
from ui import theme
from ui.context import UiContext
from ui.dialogs.base import (
    FormDialog,
    FormError,
    QuickPicks,
    SessionDialog,
    describe_error,
    hint,
    session_state,
)

__all__ = ["ABORT_REASONS", "AbortDialog", "DischargeDialog", "ResumeDialog"]

#: Quick-pick reasons for ending a session without discharge.
ABORT_REASONS = ("Treatment deferred (blood pressure)", "Patient declined treatment", "Transfer of care",
                 "Started in error")
_MET, _UNMET = "#40d070", "#ff6a6a"


class DischargeDialog(SessionDialog):
    """The discharge check and the closing signature.

    Each criterion of ``state.discharge_check(now)`` shows met / not met with monitor's reason,
    refreshed every second. Escort confirmation (optional name) is recorded from here; esketamine
    sessions can record the clinically-stable sign-off. The signature block shows the printed
    name of the signed-in user, the time and the meaning ("reviewed and closed"). The override
    reason is enabled only for a charge nurse and only while a criterion is unmet. Close →
    ``service.close_session(token, override_reason=...)``; monitor's refusal is shown.
    """

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(context, "Discharge and close the session", parent, ok_text="Sign and close", scroll=True)
        state = session_state(context)
        if state is None:
            raise ValueError("No session is being recorded")
        self.esketamine = state.devices is not None
        self.body.addWidget(hint(f"{state.patient.display_name} · {state.plan.describe()}"))
        crit_box = QGroupBox("Discharge criteria")
        self.crit_grid = QGridLayout(crit_box)
        self.crit_grid.setVerticalSpacing(8)
        self.crit_grid.setColumnStretch(1, 1)
        self.criteria_labels: dict[str, tuple[QLabel, QLabel]] = {}   # key → (✓/✗, detail)
        self._criteria_titles: dict[str, QLabel] = {}
        self.body.addWidget(crit_box)

        escort_box = QGroupBox("Escort")
        escort = QVBoxLayout(escort_box)
        self.escort_status = QLabel("")
        self.escort_status.setWordWrap(True)
        escort.addWidget(self.escort_status)
        self.escort_name = QLineEdit()
        self.escort_name.setPlaceholderText("escort's name (optional)")
        self.escort_button = QPushButton("Confirm an adult escort is present")
        self.escort_button.setAutoDefault(False)
        self.escort_button.clicked.connect(self._confirm_escort)
        escort.addLayout(self.row(self.escort_name, self.escort_button))
        self.body.addWidget(escort_box)

        self.stable_button = QPushButton("Sign: clinically stable (may leave before the monitoring period ends)")
        self.stable_button.setAutoDefault(False)
        self.stable_button.clicked.connect(self._sign_stable)
        self.stable_button.setVisible(self.esketamine)
        self.body.addWidget(self.stable_button)

        sign_box = QGroupBox("Signature")
        sign = QFormLayout(sign_box)
        self.printed_name = QLabel("")
        self.printed_name.setFont(theme.font(13, bold=True))
        self.sign_time = QLabel("")
        sign.addRow("Printed name", self.printed_name)
        sign.addRow("Time", self.sign_time)
        sign.addRow("Meaning", QLabel(CLOSE_MEANING))
        self.override = QLineEdit()
        self.override.setPlaceholderText("why the session is closed with unmet criteria")
        sign.addRow("Override reason", self.override)
        self.override_hint = hint("")
        sign.addRow("", self.override_hint)
        self.body.addWidget(sign_box)
        self.check = None
        self.refresh()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(1000)
        self.context.user_changed.connect(self._user_changed)
        self.setMinimumWidth(900)

    def refresh(self) -> None:
        """Re-run the discharge check at the device time now."""
        state = session_state(self.context)
        if state is None:
            return
        now = self.now()
        self.check = check = state.discharge_check(now, active_alarms=self.context.service.active_alarms())
        for row, criterion in enumerate(check.criteria):
            if criterion.key not in self.criteria_labels:
                mark, title, detail = QLabel(), QLabel(), QLabel()
                mark.setFont(theme.font(14, bold=True))
                title.setFont(theme.font(12, bold=True))
                detail.setFont(theme.font(11.5))
                cell = QVBoxLayout()
                cell.setSpacing(0)
                cell.addWidget(title)
                cell.addWidget(detail)
                self.crit_grid.addWidget(mark, row, 0, Qt.AlignmentFlag.AlignTop)
                self.crit_grid.addLayout(cell, row, 1)
                self.criteria_labels[criterion.key] = (mark, detail)
                self._criteria_titles[criterion.key] = title
            mark, detail = self.criteria_labels[criterion.key]
            mark.setText("✓" if criterion.met else "✗")
            mark.setStyleSheet(f"color: {_MET if criterion.met else _UNMET};")
            self._criteria_titles[criterion.key].setText(criterion.label)
            detail.setText(criterion.detail)
        if state.escort is not None:
            t, by, name = state.escort
            self.escort_status.setText(f"Confirmed by {by.display_name} at {clock(t)}" + (f" ({name})" if name else ""))
        else:
            self.escort_status.setText("Not confirmed yet.")
        signoff = state.devices.signoff if state.devices is not None else None
        self.stable_button.setEnabled(self.esketamine and signoff is None)
        user = self.context.user
        self.printed_name.setText(f"{user.display_name} ({user.role.label})" if user else "— sign in to close —")
        self.sign_time.setText(f"{clock(now)} (now)")
        can_override = False
        if check.ok:
            self.override_hint.setText("All criteria are met: no override is needed.")
        elif check.unmet_hard:
            self.override_hint.setText("Not before: " + "; ".join(c.detail for c in check.unmet_hard)
                                       + ". Nobody can override this.")
        elif user is None:
            self.override_hint.setText("Sign in as a charge nurse to close with unmet criteria.")
        else:
            try:
                require_role(user, Role.CHARGE_NURSE, "close a session with unmet discharge criteria")
            except PermissionDenied as exc:
                self.override_hint.setText(describe_error(exc))
            else:
                can_override = True
                self.override_hint.setText("A criterion is not met: give the reason for closing anyway.")
        self.override.setEnabled(can_override)

    def _user_changed(self, *_: object) -> None:
        if self.isVisible():
            self.refresh()

    def _confirm_escort(self) -> None:
        self.show_error("")
        if self.attempt(lambda: self.service.confirm_escort(self.actor(), self.escort_name.text() or None, t=self.now())):
            self.refresh()

    def _sign_stable(self) -> None:
        self.show_error("")
        if self.attempt(lambda: self.service.sign_clinically_stable(self.token(), t=self.now())):
            self.refresh()

    def submit(self) -> None:
        """Close with the signature (monitor refuses unmet criteria without a charge nurse's override)."""
        token = self.token()
        reason = self.override.text().strip() if self.override.isEnabled() else ""
        self.context.service.close_session(token, override_reason=reason or None)

    def done(self, result: int) -> None:
        self.timer.stop()
        super().done(result)


class AbortDialog(SessionDialog):
    """End the session without discharge (reason required); the record becomes read-only."""

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(context, "End the session without discharge", parent, ok_text="End session")
        self.ok_button.setObjectName("danger")
        self.body.addWidget(hint("The session is signed as ended with your name and the reason, and becomes "
                                 "read-only. A running infusion must be stopped first."))
        form = QFormLayout()
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("reason (required)")
        form.addRow("Reason", self.reason)
        self.body.addLayout(form)
        self.body.addWidget(QuickPicks(self.reason, ABORT_REASONS, columns=2))
        self.reason.setFocus()
        self.setMinimumWidth(640)

    def submit(self) -> None:
        """End the session (monitor refuses an empty reason or a running infusion)."""
        self.context.service.abort_session(self.token(), self.reason.text())


class ResumeDialog(FormDialog):
    """At start-up: the sessions a crash left open (patient, protocol, started, last data).
    Resume → :attr:`session_id` is the chosen session's id; Not now → rejected."""

    def __init__(self, open_sessions: list[SessionRecord], records: Records, parent: QWidget | None = None) -> None:
        super().__init__("Sessions left open", parent, ok_text="Resume", cancel_text="Not now")
        self.session_id: int | None = None
        self.body.addWidget(hint("Vigil stopped while these sessions were being recorded. Resuming carries on "
                                 "recording; the time Vigil was not recording is marked as a gap."))
        self.sessions = list(open_sessions)
        self.listing = QListWidget()
        self.listing.setFont(theme.font(12))
        for record in self.sessions:
            last = records.last_data_time(record.id) or record.last_seen
            started = record.started_at.astimezone().strftime("%Y-%m-%d %H:%M")
            text = (f"{record.patient_name} · {record.protocol.replace('-', ' ')} · started {started} · "
                    f"last data {last.astimezone().strftime('%H:%M') if last else 'none'}")
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, record.id)
            self.listing.addItem(item)
        if self.sessions:
            self.listing.setCurrentRow(0)
        self.listing.itemDoubleClicked.connect(lambda *_: self.accept())
        self.body.addWidget(self.listing)
        self.listing.setFocus()
        self.setMinimumSize(720, 360)

    def submit(self) -> None:
        """Take the chosen session."""
        item = self.listing.currentItem()
        if item is None:
            raise FormError("Choose a session to resume")
        self.session_id = int(item.data(Qt.ItemDataRole.UserRole))
