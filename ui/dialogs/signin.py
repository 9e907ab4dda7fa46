"""Sign-in: staff ID and PIN checked by monitor's :class:`~monitor.staff.Authenticator` over the
store's accounts; on first run (no accounts), creating the first charge nurse account."""

from __future__ import annotations

import logging
import weakref
from datetime import UTC, datetime

from PySide6.QtWidgets import QFormLayout, QLineEdit, QWidget

from monitor.staff import Actor, Authenticator, Role, User, check_pin_policy, hash_pin
from ui.context import UiContext
from ui.dialogs.base import FormDialog, FormError, hint

log = logging.getLogger(__name__)

__all__ = ["SignInDialog", "authenticator_for", "store_users"]

# One Authenticator per context, so that wrong-PIN counts and lockouts survive closing the dialog.
_AUTHENTICATORS: weakref.WeakKeyDictionary[UiContext, Authenticator] = weakref.WeakKeyDictionary()


def store_users(store) -> list[User]:
    """The store's accounts as :class:`User` (accounts without a usable PIN hash are left out:
    they cannot sign in)."""
    users = []
    for record in store.list_users():
        if not record.pin_hash:
            continue
        try:
            users.append(User(username=record.login, display_name=record.display_name, role=Role(record.role),
                              pin_hash=record.pin_hash, active=record.active))
        except ValueError:
            log.warning("account %r in the store is damaged and cannot sign in", record.login)
    return users


def authenticator_for(context: UiContext) -> Authenticator:
    """The context's authenticator, with the store's accounts as they are now."""
    auth = _AUTHENTICATORS.get(context)
    if auth is None:
        auth = _AUTHENTICATORS[context] = Authenticator()
    for user in store_users(context.store):
        auth.add(user)
    return auth


def _wall_now() -> datetime:
    # Lockouts are real time, not the device's (possibly simulated) clock.
    return datetime.now(UTC)


class SignInDialog(FormDialog):
    """Staff ID + PIN (masked). With no accounts in the store it becomes "Create the first charge
    nurse account" (ID, printed name, PIN twice, PIN policy from monitor), which adds the account
    and signs it in. Success calls ``context.set_user(actor)``; :attr:`actor` holds the result."""

    def __init__(self, context: UiContext, parent: QWidget | None = None, *, why: str = "") -> None:
        self.context = context
        self.first_run = not context.store.list_users()
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
        self.setMinimumWidth(520)

    def submit(self) -> None:
        """Sign in, or create the first account (refusals come from monitor's staff rules)."""
        if self.first_run and not self.context.store.list_users():
            actor = Actor(username=self.staff_id.text(), display_name=self.printed_name.text(),
                          role=Role.CHARGE_NURSE)
            check_pin_policy(self.pin.text())
            if self.pin.text() != self.pin_again.text():
                raise FormError("The two PINs differ: type the same PIN twice")
            self.context.store.add_user(actor.username, actor.display_name, actor.role.value,
                                        hash_pin(self.pin.text()), by=None)
        else:
            actor = authenticator_for(self.context).authenticate(self.staff_id.text(), self.pin.text(), _wall_now())
        self.actor = actor
        self.context.set_user(actor)

    def accept(self) -> None:
        super().accept()
        if self.result() != self.DialogCode.Accepted:
            self.pin.selectAll()
            self.pin.setFocus()
