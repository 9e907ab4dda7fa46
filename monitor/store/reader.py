"""What reading a record needs, whatever holds it: the :class:`StoreReader` protocol.

The read model (:mod:`monitor.app.readmodel`), the review (:mod:`monitor.app.review`, :mod:`ui.review`),
``vigil sessions`` and ``vigil export`` read a record only through the methods listed here. Two
backends provide them and return the same record types (:mod:`monitor.store.records`):

* :class:`monitor.store.SessionStore` — a chair's own SQLite file;
* :class:`monitor.store.postgres.PostgresReader` — the clinic record (PostgreSQL), every chair's
  sessions, each with its chair's name (:class:`ChairSessionSummary`).

Ids: a reader's session ids are its own (the clinic record numbers sessions from all chairs); the
entries, alarms, actions and gaps of a session keep the ids the chair gave them, and the audit rows
keep the chair's session id (the hash covers it). :meth:`StoreReader.session_origin` says where a
session was recorded and under which id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from drivers.model import DeviceCondition
from monitor.store.changes import SessionOrigin
from monitor.store.records import (
    AlarmAction,
    AlarmRow,
    AuditRow,
    Block,
    Entry,
    Envelope,
    Gap,
    ObservationRows,
    SessionRecord,
    SessionSummary,
    UserRecord,
    WaveformSlice,
)

__all__ = ["StoreReader", "RecordPath", "ChairSessionSummary", "SessionOrigin", "is_postgres_url"]


@dataclass(frozen=True, slots=True)
class ChairSessionSummary(SessionSummary):
    """A line of the clinic record's session list: a :class:`SessionSummary` with the chair that
    recorded it (its name, and the session's id there), whether the clinic record holds the whole
    session (``complete``: a closed session copied to its end; an open one is never complete) and
    ``flag``: why its record must not be trusted as it is (the audit chain or a cross-check failed on
    arrival, the copy is incomplete), None when nothing was found."""

    chair: str
    chair_session_id: int
    complete: bool
    flag: str | None


class RecordPath(Protocol):
    """Where a record is: a file's :class:`~pathlib.Path`, or the clinic record's
    :class:`~monitor.store.postgres.reader.Location` (its URL without the password)."""

    @property
    def name(self) -> str:
        """The file's name, or the database's."""


@runtime_checkable
class StoreReader(Protocol):
    """The read methods of a session record (see the module docstring). Times are aware UTC
    datetimes or, in bulk reads, float64 epoch seconds; ranges are half-open ``[start, end)``.
    Unknown sessions raise :class:`~monitor.store.NotFoundError`; a closed reader raises
    :class:`~monitor.store.StoreError`."""

    @property
    def path(self) -> RecordPath:
        """Where the record is, for messages (a file; a server and database, never a password)."""

    @property
    def readonly(self) -> bool:
        """True when nothing can be written through this object (late entries are refused)."""

    def close(self) -> None:
        """Release connections; idempotent."""

    def list_sessions(self, *, patient: str | None = None, since: datetime | None = None,
                      until: datetime | None = None, protocol: str | None = None, status: str | None = None,
                      had_alarms: bool | None = None) -> Sequence[SessionSummary]:
        """Sessions matching every filter, newest first."""

    def chairs(self) -> list[str]:
        """The chairs whose sessions the record holds, by name (empty for a chair's own database)."""

    def get_session(self, session_id: int) -> SessionRecord:
        """One session."""

    def session_origin(self, session_id: int) -> SessionOrigin:
        """Where the session was recorded and its id there."""

    def entries(self, session_id: int, table_kind: str | None = None, start: datetime | None = None,
                end: datetime | None = None, include_amended: bool = True, *, order: str = "time") -> list[Entry]:
        """The session's charted entries."""

    def effective_entries(self, session_id: int, table_kind: str | None = None, start: datetime | None = None,
                          end: datetime | None = None) -> list[Entry]:
        """The latest version of every charted fact."""

    def gaps(self, session_id: int) -> list[Gap]:
        """Spans when the chair was not recording."""

    def conditions(self, session_id: int, start: datetime | None = None,
                   end: datetime | None = None) -> list[DeviceCondition]:
        """Device condition changes."""

    def alarms(self, session_id: int, start: datetime | None = None, end: datetime | None = None) -> list[AlarmRow]:
        """Alarms active in the range, with their actions."""

    def alarm_actions(self, session_id: int, start: datetime | None = None,
                      end: datetime | None = None) -> list[AlarmAction]:
        """Every alarm action of the session."""

    def audit_rows(self, session_id: int | None = None) -> list[AuditRow]:
        """Audit rows (of one session) in chain order."""

    def list_users(self) -> list[UserRecord]:
        """Staff accounts."""

    def numerics(self, session_id: int, vital: str, start: datetime | None = None, end: datetime | None = None,
                 *, with_quality: bool = False) -> tuple[np.ndarray, ...]:
        """One vital's ``(t, v[, quality])`` arrays in time order."""

    def numerics_envelope(self, session_id: int, vital: str, start: float, end: float, bins: int) -> Envelope:
        """Per-bin min/max of one vital."""

    def observation_rows(self, session_id: int) -> ObservationRows:
        """Every observation row, by time then arrival."""

    def waveform_blocks(self, session_id: int) -> list[Block]:
        """The stored waveform blocks, bytes as stored."""

    def iter_observation_rows(self, session_id: int, chunk: int = 50_000) -> Iterator[ObservationRows]:
        """The rows of :meth:`observation_rows`, in order, a chunk at a time."""

    def iter_waveform_blocks(self, session_id: int, channel: str | None = None) -> Iterator[Block]:
        """The blocks of :meth:`waveform_blocks` (of one channel, or all), in order, one at a time."""

    def waveform_channels(self, session_id: int) -> list[str]:
        """Channels with stored samples."""

    def waveform(self, session_id: int, channel: str, start: datetime, end: datetime,
                 max_points: int | None = None) -> WaveformSlice:
        """Samples of a channel over a range, min/max-decimated above ``max_points``."""

    def last_data_time(self, session_id: int) -> datetime | None:
        """The latest time of anything recorded in the session."""

    def raw_tables(self, session_id: int) -> dict[str, list[tuple[Any, ...]]]:
        """The session's rows exactly as stored (the JSON archive's source)."""



def is_postgres_url(text: str | None) -> bool:
    """True when ``text`` names the clinic record, a ``postgresql://`` (or ``postgres://``) URL, rather
    than an SQLite file."""
    return bool(text) and str(text).split("://", 1)[0].lower() in ("postgresql", "postgres")
