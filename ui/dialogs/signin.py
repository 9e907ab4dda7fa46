"""Sign-in: staff ID and PIN checked by the clinic's administration (:class:`monitor.app.clinic.Clinic`:
the accounts, wrong-PIN lockouts); on first run (no accounts), creating the first charge nurse account."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QFormLayout, QLineEdit, QWidget

from monitor.staff import Actor
from ui import theme
from ui.context import UiContext
from ui.dialogs.base import FormDialog, hint

log = logging.getLogger(__name__)

__all__ = ["SignInDialog"]


class SignInDialog(FormDialog):
    """Staff ID + PIN (masked). With no accounts in the store it becomes "Create the first charge
    nurse account" (ID, printed name, PIN twice, PIN policy from monitor), which adds the account
    and signs it in. Success calls ``context.set_user(actor)``; :attr:`actor` holds the result."""

    def __init__(self, context: UiContext, parent: QWidget | None = None, *, why: str = "") -> None:
        self.context = context
        self.first_run = not context.clinic.has_users()
        title = "Create the first charge nurse account" if self.first_run else "Sign in"
        super().__init__(title, parent, ok_text="Create and sign in" if self.first_run else "Sign in")
        self.actor: Actor | None = None
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
        if self.first_run:
            self.body.addWidget(hint("No staff accounts exist yet. This account can add the other nurses "
                                     "(Users…) and change the clinic's settings."))
            self.printed_name.setPlaceholderText("as printed on signatures, e.g. Ann Lee")
            form.addRow("Printed name", self.printed_name)
            form.addRow("PIN", self.pin)
            form.addRow("PIN again", self.pin_again)
        else:
            form.addRow("PIN", self.pin)
        self.body.addLayout(form)
        self.staff_id.setFocus()
        self.setMinimumWidth(theme.px(520))

    def submit(self) -> None:
        """Sign in, or create the first account (refusals come from monitor's staff rules)."""
        if self.first_run and not self.context.clinic.has_users():
            actor = self.context.clinic.create_first_account(self.staff_id.text(), self.printed_name.text(),
                                                             self.pin.text(), self.pin_again.text())
        else:
            actor = self.context.clinic.authenticate(self.staff_id.text(), self.pin.text())
        self.actor = actor
        self.context.set_user(actor)

    def accept(self) -> None:
        super().accept()
        if self.result() != self.DialogCode.Accepted:
            self.pin.selectAll()
            self.pin.setFocus()
