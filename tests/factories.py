"""Building a chair for tests: the session service over a pipeline, and the window's context."""

from __future__ import annotations

from monitor.alarms.profile import AlarmProfile, default_profile
from monitor.app.clinic import Clinic
from monitor.app.pipeline import open_pipeline
from monitor.app.records import Records
from monitor.qt.service import QtSessionService
from monitor.settings import ClinicSettings
from monitor.store import SessionStore


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
    context = UiContext(service, Records(store), Clinic(store, submit=submit), settings or ClinicSettings(),
                        profile or default_profile())
    context.test_store = store
    return context


def act(recorder, action: str, *args, **kwargs):
    """Run the session action ``action`` through ``recorder`` (tests drive recorders by name)."""
    return recorder.record(lambda state: getattr(state, action)(*args, **kwargs))
