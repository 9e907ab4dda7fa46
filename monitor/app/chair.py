"""Assembling a chair (the window, ``vigil record``) or a desk (``vigil review``), the same way.

A :class:`Chair` is one chair's store, clinic settings and alarm profile, its recording pipeline
and the pipeline's consumers: the clinic-board publisher when publishing is on (a pipeline
listener; its broker state becomes the LOW technical alarm ``board_unreachable``, an acknowledge
from the board is acknowledged and audited with the board user's name) and the clinic-record link
when one is configured (:mod:`monitor.clinic.link`: it copies the chair's file to PostgreSQL from
its own read-only connection, so it never waits on, nor delays, the recording). A :class:`Desk` is
the record with no monitoring: a chair's file (read-only when another Vigil records into it) or
the clinic record (``postgresql://…``, every chair's sessions, read-only).

Both are Qt-free; the window passes a service class with Qt signals (``service_factory``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drivers.errors import VigilError
from monitor.alarms.profile import AlarmProfile, ProfileError
from monitor.app.clinic import Clinic
from monitor.app.pipeline import Pipeline, open_pipeline
from monitor.app.records import Records
from monitor.app.service import SessionService
from monitor.config import db_path, load_clinic_profile, load_clinic_settings, open_reader
from monitor.settings import ClinicSettings, SettingsError
from monitor.store import SessionStore, StoreError
from monitor.store.reader import StoreReader
from monitor.store.recovery import Backlog

if TYPE_CHECKING:
    from monitor.board.publisher import ChairPublisher

log = logging.getLogger(__name__)

__all__ = ["Chair", "Desk", "ChairSetupError"]


#: Seconds between light commits (numerics, conditions) while the clinic record copies this chair:
#: the worker reads committed rows every second, so an open session's numerics reach the clinic
#: record within ~4 s; its waveforms come with the full commits, every 30 s
#: (:class:`monitor.store.StoreWriter`, ``light_commit_interval``).
CLINIC_LIGHT_COMMIT_S = 3.0

class ChairSetupError(VigilError):
    """The chair cannot start: the database or the clinic's settings cannot be used (the message
    says which and why)."""


def _settings() -> tuple[ClinicSettings, AlarmProfile]:
    try:
        return load_clinic_settings(), load_clinic_profile()
    except (SettingsError, ProfileError) as exc:
        raise ChairSetupError(f"the clinic's settings cannot be loaded: {exc}") from None


class Desk:
    """The record at a desk (no monitoring): :attr:`records` (read-only queries), :attr:`clinic`
    (accounts and sign-in), :attr:`settings`, :attr:`profile`. ``db``: a chair's file, opened
    read-only when another Vigil records into it (no late entries then), or the clinic record
    (``postgresql://…``: read-only; its staff accounts are those the chairs keep there, and it must
    hold at least one)."""

    def __init__(self, db: str | None = None) -> None:
        try:
            self.store: StoreReader = open_reader(db, prefer_writable=True)
        except (StoreError, OSError) as exc:
            raise ChairSetupError(f"the database cannot be opened: {exc}") from None
        try:
            self.settings, self.profile = _settings()
            if not isinstance(self.store, SessionStore) and not self.store.list_users():
                raise ChairSetupError(f"nobody can sign in: {self.store.path} holds no staff accounts yet "
                                      "(sign in once at a chair that keeps its accounts there)")
        except ChairSetupError:
            self.store.close()
            raise
        self.clinic = Clinic(self.store, settings=self.settings)
        self.records = Records(self.store, self.clinic.signins)

    def close(self) -> None:
        """Close the database."""
        self.store.close()


class Chair:
    """One chair (see the module docstring). ``device``: a device URL; ``db``: the database
    (``--db``, else ``VIGIL_DB``, else the user data folder); ``board_args``: the command-line
    options of the clinic board (``--publish``, ``--chair`` …; the clinic settings otherwise) and
    of the clinic record (``--clinic-db``, ``--chair``; the ``clinic_record`` settings otherwise);
    ``service_factory``: builds the session service over the pipeline (the window's has Qt
    signals). Raises :class:`ChairSetupError` or ``DeviceUrlError``."""

    def __init__(self, device: str, db: str | None = None, *, board_args: Any = None,
                 service_factory: Callable[[Pipeline], SessionService] = SessionService,
                 on_writer_error: Callable[[BaseException], None] | None = None) -> None:
        try:
            self.store = SessionStore(db_path(db))
        except (StoreError, OSError) as exc:
            raise ChairSetupError(f"the database cannot be opened: {exc}") from None
        self.clinic_link: Any = None
        try:
            self.settings, self.profile = _settings()
            self._start_clinic_link(board_args)
            # the clinic record reads what the chair has committed: commit numerics often enough
            # for an open session to be there within 5 s (issue 15); without it, every 30 s
            self.pipeline = open_pipeline(device, self.store, self.settings, self.profile,
                                          on_writer_error=on_writer_error,
                                          light_commit_s=CLINIC_LIGHT_COMMIT_S if self.clinic_link is not None else None)
        except BaseException:
            if self.clinic_link is not None:
                self.clinic_link.stop()
            self.store.close()
            raise
        self.service = service_factory(self.pipeline)
        self.records = Records(self.store, self.service.signins)
        writer = self.pipeline.writer

        def submit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:  # in order with the recording
            return writer.put_call(fn, *args, **kwargs).result(30) if writer.is_alive() else fn(*args, **kwargs)
        self.clinic = Clinic(self.store, submit=submit, signins=self.service.signins, settings=self.settings)
        self.publisher: ChairPublisher | None = None
        if board_args is not None or self.settings.board.publish_url:
            self._attach_board(board_args)

    def _start_clinic_link(self, args: Any) -> None:
        """Start copying this chair's record to the clinic record when one is configured; staff
        accounts and clinic settings are brought up to date from it first (settings reloaded)."""
        url = getattr(args, "clinic_db", None)
        if not (url or self.settings.clinic_record.url):
            return
        from monitor.clinic.link import start_clinic_link  # noqa: PLC0415 (psycopg only when configured)

        try:
            self.clinic_link = start_clinic_link(self.store, self.settings, url=url,
                                                 chair=getattr(args, "chair", None))
        except (ValueError, StoreError) as exc:
            raise ChairSetupError(f"the clinic record cannot be used: {exc}") from None
        if self.clinic_link is not None and self.clinic_link.settings_changed:
            self.settings, self.profile = _settings()

    def _attach_board(self, args: Any) -> None:
        from monitor.board.setup import (  # noqa: PLC0415 (paho is loaded only when publishing)
            UNREACHABLE_CODE, UNREACHABLE_TEXT, BoardSetupError, board_actor, chair_publisher,
        )

        service = self.service

        def broker_state(reachable: bool, detail: str) -> None:
            log.info("clinic board %s: %s", "reachable" if reachable else "unreachable", detail)
            service.set_technical(UNREACHABLE_CODE, not reachable, UNREACHABLE_TEXT)

        def acknowledge(command: Any) -> None:
            actor = board_actor(command)
            if actor is None:
                return
            log.info("alarms acknowledged from the clinic board %r by %s", command.board, actor.username)
            service.acknowledge(actor)
            service.audit(actor.username, "alarms_acknowledged_from_board",
                          {"board": command.board, "name": actor.display_name})

        try:
            publisher = chair_publisher(args, self.settings, self.profile, on_broker_state=broker_state,
                                        on_acknowledge=acknowledge)
        except BoardSetupError as exc:
            log.error("clinic board: not publishing: %s", exc)
            self._board_error = str(exc)
            service.set_technical(UNREACHABLE_CODE, True, UNREACHABLE_TEXT)
            return
        if publisher is not None:
            self.publisher = publisher
            self.pipeline.add_listener(publisher)

    @property
    def unsaved(self) -> Backlog | None:
        """What the recording could not write and where it was saved, once closed; None when all was written."""
        return self.pipeline.writer.unsaved

    def start(self) -> None:
        """Start the pipeline (and the publisher)."""
        self.pipeline.start()
        if self.publisher is not None:
            self.publisher.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop everything (an open session stays open, to be resumed) and close the database. If
        writing still fails after ``timeout`` s, what was not written is saved to a recovery file:
        :attr:`unsaved` says how much and where (None when everything was written)."""
        if self.publisher is not None:
            self.publisher.close()
        self.pipeline.stop(timeout)
        if self.clinic_link is not None:  # what is left is copied the next time the chair runs
            if not self.clinic_link.finish(timeout):
                log.warning("clinic record: not everything was copied; the rest goes at the next start")
        self.store.close()
