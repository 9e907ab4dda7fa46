"""Sign-in: staff ID and PIN checked by the clinic's administration (:class:`monitor.app.clinic.Clinic`:
the accounts, wrong-PIN lockouts kept across restarts); on first run (no accounts), creating the first
charge nurse account. A PIN shorter than the clinic now asks for is replaced here, at sign-in."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QFormLayout, QLineEdit, QWidget

from monitor.staff import PIN_MAX_LENGTH, Actor, PinChangeRequired
from ui.context import UiContext
from ui.dialogs.base import FormDialog, hint

log = logging.getLogger(__name__)

__all__ = ["SignInDialog"]


class SignInDialog(FormDialog):
    """Staff ID + PIN (masked). With no accounts in the store it becomes "Create the first charge
    nurse account" (ID, printed name, PIN twice, PIN policy from monitor), which adds the account
    and signs it in. When the PIN is right but shorter than the clinic's minimum, the dialog says
    so and asks for a new PIN twice, then signs in with it. Success calls
    ``context.sign_in(token)``; :attr:`actor` holds the user."""

    def __init__(self, context: UiContext, parent: QWidget | None = None, *, why: str = "") -> None:
        self.context = context
        self.first_run = not context.clinic.has_users()
        title = "Create the first charge nurse account" if self.first_run else "Sign in"
        super().__init__(title, parent, ok_text="Create and sign in" if self.first_run else "Sign in")
        self.actor: Actor | None = None
        self.changing_pin = False
        minimum = context.clinic.settings.pin_min_length
        if why:
            self.body.addWidget(hint(why))
        form = QFormLayout()
        form.setSpacing(10)
        self.staff_id = QLineEdit()
        self.staff_id.setPlaceholderText("e.g. alee")
        form.addRow("Staff ID", self.staff_id)
        self.printed_name = QLineEdit()
        self.pin = QLineEdit()
        self.pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin_again = QLineEdit()
        self.pin_again.setEchoMode(QLineEdit.EchoMode.Password)
        self.new_pin = QLineEdit()
        self.new_pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.new_pin_again = QLineEdit()
        self.new_pin_again.setEchoMode(QLineEdit.EchoMode.Password)
        if self.first_run:
            self.body.addWidget(hint("No staff accounts exist yet. This account can add the other nurses "
                                     "(Users…) and change the clinic's settings."))
            self.printed_name.setPlaceholderText("as printed on signatures, e.g. Ann Lee")
            form.addRow("Printed name", self.printed_name)
            self.pin.setPlaceholderText(f"{minimum}–{PIN_MAX_LENGTH} digits")
            form.addRow("PIN", self.pin)
            form.addRow("PIN again", self.pin_again)
        else:
            form.addRow("PIN", self.pin)
            self.new_pin.setPlaceholderText(f"{minimum}–{PIN_MAX_LENGTH} digits")
            form.addRow("New PIN", self.new_pin)
            form.addRow("New PIN again", self.new_pin_again)
            form.setRowVisible(self.new_pin, False)
            form.setRowVisible(self.new_pin_again, False)
        self.form = form
        self.pin_hint = hint("")
        self.pin_hint.setVisible(False)
        self.body.addWidget(self.pin_hint)
        self.body.addLayout(form)
        self.staff_id.setFocus()
        self.setMinimumWidth(520)

    def submit(self) -> None:
        """Sign in, or create the first account (refusals come from monitor's staff rules); a PIN
        shorter than the clinic's minimum asks for a new one instead of signing in."""
        clinic = self.context.clinic
        if self.first_run and not clinic.has_users():
            token = clinic.create_first_account(self.staff_id.text(), self.printed_name.text(),
                                                self.pin.text(), self.pin_again.text())
        elif self.changing_pin:
            token = clinic.change_pin_and_sign_in(self.staff_id.text(), self.pin.text(), self.new_pin.text(),
                                                  self.new_pin_again.text())
        else:
            try:
                token = clinic.authenticate(self.staff_id.text(), self.pin.text())
            except PinChangeRequired:
                self._ask_new_pin()
                raise   # its message (why) is shown as the dialog's refusal
        self.actor = self.context.sign_in(token)

    def _ask_new_pin(self) -> None:
        self.changing_pin = True
        minimum = self.context.clinic.settings.pin_min_length
        self.pin_hint.setText(f"Type a new PIN twice ({minimum}–{PIN_MAX_LENGTH} digits), then sign in with it.")
        self.pin_hint.setVisible(True)
        self.form.setRowVisible(self.new_pin, True)
        self.form.setRowVisible(self.new_pin_again, True)
        self.ok_button.setText("Change PIN and sign in")
        self.adjustSize()
        self.new_pin.setFocus()

    def accept(self) -> None:
        super().accept()
        if self.result() != self.DialogCode.Accepted and not self.changing_pin:
            self.pin.selectAll()
            self.pin.setFocus()
