"""Building a chair for tests: the session service over a pipeline, the window's context, and signing
staff in properly (privileged commands take the session token of a real sign-in)."""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from monitor.alarms.profile import AlarmProfile, default_profile
from monitor.app.clinic import Clinic
from monitor.app.pipeline import open_pipeline
from monitor.app.records import Records
from monitor.qt.service import QtSessionService
from monitor.settings import ClinicSettings
from monitor.staff import Actor, SessionToken, hash_pin
from monitor.store import SessionStore

def wait_for(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.01) -> None:
    """Poll ``predicate`` every ``step`` seconds until it is true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)


#: The PIN of every account the helpers below create.
TEST_PIN = "246813"
#: The scrypt cost (log2 N) of :func:`known_pin_hash`: the lowest Vigil accepts, so that every sign-in of
#: the tests verifies in a few milliseconds instead of a tenth of a second at the production cost
#: (``monitor.staff.SCRYPT_LOG2_N``, checked by tests/test_staff.py). The stored string carries its
#: cost, so sign-in verifies it by the same code as a production hash.
TEST_PIN_LOG2_N = 10


@functools.cache
def known_pin_hash() -> str:
    """The scrypt hash of :data:`TEST_PIN` at the test cost :data:`TEST_PIN_LOG2_N` (made once)."""
    return hash_pin(TEST_PIN, log2_n=TEST_PIN_LOG2_N)


def copy_into(path: Path, folder: Path) -> Path:
    """A copy of the file ``path`` (a closed database, e.g. one of conftest's ``made_once``) in ``folder``."""
    return Path(shutil.copy(path, folder / path.name))


def make_service(device: str, store: SessionStore, settings: ClinicSettings | None = None,
                 profile: AlarmProfile | None = None, tick_s: float = 0.2) -> QtSessionService:
    """The window's session service on ``device`` (not started: call ``service.start()``)."""
    pipeline = open_pipeline(device, store, settings or ClinicSettings(), profile or default_profile(), tick_s=tick_s)
    return QtSessionService(pipeline)


def make_context(service: QtSessionService | None, store: SessionStore, settings: ClinicSettings | None = None,
                 profile: AlarmProfile | None = None):
    """The window's context over ``store``; ``context.test_store`` is the store, for assertions."""
    from ui.context import UiContext  # noqa: PLC0415

    submit = None
    if isinstance(service, QtSessionService):
        writer = service.pipeline.writer
        def submit(fn, *args, **kwargs):
            return writer.put_call(fn, *args, **kwargs).result(30) if writer.is_alive() else fn(*args, **kwargs)
    settings = settings or ClinicSettings()
    clinic = Clinic(store, submit=submit, signins=getattr(service, "signins", None), settings=settings)
    context = UiContext(service, Records(store, clinic.signins), clinic, settings, profile or default_profile())
    context.test_store = store
    return context


def ensure_account(store, actor: Actor) -> None:
    """Give ``actor`` an account with :data:`TEST_PIN` in ``store`` when it has none (test set-up; a
    record that cannot be written here — read-only, the clinic record — must hold it already)."""
    if not isinstance(store, SessionStore) or store.readonly:
        return
    if store.get_user(actor.username) is None:
        store.add_user(actor.username, actor.display_name, actor.role.value, known_pin_hash(), by=None)


def sign_in(target, actor: Actor) -> SessionToken:
    """Sign ``actor`` in for real and return the session token: ``target`` is a window context (then
    signed in on it, as the sign-in dialog does), a :class:`Clinic`, or a session service over a store
    (a clinic sharing its sign-ins is made). The account is created first when missing."""
    from ui.context import UiContext  # noqa: PLC0415

    if isinstance(target, UiContext):
        ensure_account(target.clinic.store, actor)
        token = target.clinic.authenticate(actor.username, TEST_PIN)
        target.sign_in(token)
        return token
    clinic = target if isinstance(target, Clinic) else Clinic(target.pipeline.store, signins=target.signins)
    ensure_account(clinic.store, actor)
    return clinic.authenticate(actor.username, TEST_PIN)


def act(recorder, action: str, *args, **kwargs):
    """Run the session action ``action`` through ``recorder`` (tests drive recorders by name)."""
    return recorder.record(lambda state: getattr(state, action)(*args, **kwargs))
