"""Starting and stopping the clinic record for a running chair (``vigil run``, ``vigil record``).

:func:`start_clinic_link` reads the ``clinic_record`` settings (or ``--clinic-db``/``--chair``); when a
clinic record is configured it gives the chair its identity, brings the staff accounts and clinic
settings up to date once (a few seconds at most; a chair that cannot reach the server carries on with
its cached accounts), then starts the :class:`~monitor.clinic.replication.ReplicationWorker`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from monitor.clinic.accounts import AccountSync
from monitor.clinic.config import chair_name
from monitor.clinic.replication import ReplicationStatus, ReplicationWorker
from monitor.settings import ClinicSettings
from monitor.store import SessionStore
from monitor.store.postgres.schema import ClinicRecordError, safe_url
from monitor.store.reader import is_postgres_url
from monitor.store.postgres.writer import ClinicWriter

__all__ = ["ClinicLink", "start_clinic_link"]

log = logging.getLogger("monitor.clinic")


def _save_settings(text: str) -> None:
    """Write clinic settings taken from the clinic record to this chair's settings file."""
    from monitor.config import save_clinic_settings  # noqa: PLC0415 (monitor.config imports the store)

    save_clinic_settings(ClinicSettings.model_validate_json(text))


@dataclass
class ClinicLink:
    """A chair's running link to the clinic record: the replication worker and the account sync.
    ``settings_changed``: clinic settings were taken from the clinic record at start (reload them)."""

    url: str
    chair: str
    worker: ReplicationWorker
    accounts: AccountSync | None
    settings_changed: bool = False

    @property
    def status(self) -> ReplicationStatus:
        """The replication worker's status."""
        return self.worker.status

    def stop(self, timeout: float = 10.0) -> None:
        """Stop replication (the batch in progress is finished or rolled back, never half-kept)."""
        self.worker.stop(timeout)

    def finish(self, timeout: float = 10.0) -> bool:
        """Copy what is left (up to ``timeout`` seconds, unless the clinic record is unreachable), then
        stop; True when everything recorded had reached the clinic record. What is left is copied the
        next time this chair runs with the clinic record."""
        done = self.status.state not in ("offline", "refused", "diverged") and self.worker.wait_current(timeout)
        self.stop(timeout)
        return done


def start_clinic_link(store: SessionStore, settings: ClinicSettings, *, url: str | None = None,
                      chair: str | None = None, connect_timeout: float = 3.0) -> ClinicLink | None:
    """Start the clinic record link of the chair recording into ``store`` (read-write), or return None
    when none is configured (``url`` or the ``clinic_record.url`` setting). ``chair``: its name
    (else the setting, else the host name). Bad settings raise ``ValueError``; an unreachable server
    only delays the start by up to ``connect_timeout`` seconds and is retried in the background."""
    section = settings.clinic_record
    url = (url or section.url or "").strip()
    if not url:
        return None
    if not is_postgres_url(url):
        raise ValueError(f"the clinic record must be a postgresql://… URL, not {url!r}")
    name = chair_name(chair or section.chair)
    accounts = AccountSync(store, apply_settings=_save_settings) if section.staff else None
    settings_changed = False
    if accounts is not None:
        writer = ClinicWriter(url, connect_timeout=connect_timeout)
        try:
            writer.open()
            chair_id = writer.register_chair(store.chair_uid(), name)
            settings_changed = accounts.sync(writer, chair_id, force=True).settings_applied
        except ClinicRecordError as exc:
            log.warning("clinic record %s: staff accounts not updated at start (using this chair's copy): %s",
                        safe_url(url), exc)
        finally:
            writer.close()
    worker = ReplicationWorker(store, url, chair_name=name, poll_s=section.poll_s,
                               on_poll=None if accounts is None else accounts.sync)
    worker.start()
    log.info("clinic record %s: replicating as chair %r", safe_url(url), name)
    return ClinicLink(url, name, worker, accounts, settings_changed)
