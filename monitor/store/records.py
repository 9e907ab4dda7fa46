"""Rows and results the session store returns, its errors, and the fixed vocabularies of its tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from drivers.errors import VigilError


TABLE_KINDS = ("event", "assessment", "infusion_step", "device_log", "note", "signoff")
ALARM_KINDS = ("physiological", "technical")
#: Actions on alarms and on alarm audio. ``audio_pause_cancel``: a user ended an audio pause early;
#: ``audio_pause_end``: a pause ran its time (recorded at its end; schema 3).
ALARM_ACTIONS = ("acknowledge", "audio_pause", "audio_pause_cancel", "audio_pause_end", "reset", "escalate",
                 "deescalate")
#: Alarm priorities, lowest first (IEC 60601-1-8 names).
PRIORITIES = ("LOW", "MEDIUM", "HIGH")
SESSION_STATUSES = ("open", "closed", "aborted")


# ---------------------------------------------------------------------------------------- errors
class StoreError(VigilError):
    """Something about the store or a request to it is wrong (the message says what)."""


class ReadOnlyError(StoreError):
    """A write to something that is read-only: a closed session, or a store opened read-only."""


class NotFoundError(StoreError, LookupError):
    """The session, entry, alarm or user named does not exist."""


class DamagedStoreError(StoreError):
    """The database file fails SQLite's integrity check (or is empty where a database was): Vigil
    does not write to it. The message says what to do (restore a backup, or ``vigil salvage``)."""


class StoreLockedError(StoreError):
    """Another Vigil (or another store in this process) holds the file open for writing; the message
    names it (process id and host)."""


# --------------------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class UserRecord:
    """One staff account as stored (``pin_hash`` is opaque to the store)."""

    id: int
    login: str
    display_name: str
    role: str
    pin_hash: str | None
    created_at: datetime
    active: bool


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session row, decoded. ``last_seen`` is the writer's last heartbeat (crash detection)."""

    id: int
    created_at: datetime
    started_at: datetime
    ended_at: datetime | None
    status: str
    phase: str
    protocol: str
    patient: dict[str, Any]
    patient_name: str
    patient_ref: str | None
    plan: dict[str, Any]
    baseline: dict[str, Any] | None
    device: str
    created_by: str
    closed_by: str | None
    close_meaning: str | None
    signed_name: str | None
    last_seen: datetime | None
    n_observations: int
    n_alarms: int

    @property
    def is_open(self) -> bool:
        """True while data may still be recorded."""
        return self.status == "open"


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One line of :meth:`SessionStore.list_sessions`; counts come from maintained counters."""

    id: int
    patient: str
    patient_ref: str | None
    protocol: str
    status: str
    phase: str
    device: str
    started_at: datetime
    ended_at: datetime | None
    n_observations: int
    n_alarms: int


@dataclass(frozen=True, slots=True)
class Entry:
    """Something staff charted. ``amends`` is the id of the entry this one corrects (with
    ``reason``); ``amended_by`` is the id of the entry that corrects this one, if any."""

    id: int
    session_id: int
    t: datetime
    table_kind: str
    kind: str
    payload: dict[str, Any]
    user: str
    amends: int | None
    reason: str | None
    recorded_at: datetime
    amended_by: int | None

    @property
    def is_amendment(self) -> bool:
        """True when this entry corrects an earlier one."""
        return self.amends is not None

    @property
    def is_late(self) -> bool:
        """True for a late entry: charted after the fact, with a reason, correcting nothing."""
        return self.amends is None and self.reason is not None

    @property
    def is_current(self) -> bool:
        """True when no later entry amends this one (it is part of the effective record)."""
        return self.amended_by is None


@dataclass(frozen=True, slots=True)
class AlarmAction:
    """An action on an alarm (or on the alarm system when ``alarm_id`` is None)."""

    id: int
    session_id: int
    alarm_id: int | None
    t: datetime
    action: str
    user: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class AlarmRow:
    """One alarm condition occurrence with the actions taken on it, in time order."""

    id: int
    session_id: int
    condition: str
    kind: str
    priority: str
    max_priority: str
    started_at: datetime
    ended_at: datetime | None
    limit: float | None
    value: float | None
    message: str
    actions: tuple[AlarmAction, ...] = ()


@dataclass(frozen=True, slots=True)
class Gap:
    """A span during which Vigil was not recording the session (e.g. after a crash)."""

    id: int
    session_id: int
    start: datetime
    end: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class VitalSummary:
    """Statistics of one vital over a session. ``n`` counts values (rows with a value and none of
    the excluded quality flags); ``min``/``max``/``mean`` are over those (None when ``n == 0``);
    ``first_t``/``last_t`` span all rows; ``n_missing`` rows had no value; ``n_flagged`` rows had
    an excluded flag."""

    n: int
    min: float | None
    max: float | None
    mean: float | None
    first_t: datetime
    last_t: datetime
    n_missing: int = 0
    n_flagged: int = 0


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One row of the audit trail."""

    seq: int
    t: datetime
    user: str | None
    session_id: int | None
    action: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """Result of :meth:`SessionStore.verify_audit`: ``ok``, the number of rows checked and the
    first row whose sequence, link, hash or MAC is wrong (with ``problem`` saying which).
    ``keyed_from``: the first row of the keyed chain (None: no row is keyed). ``unverified``: rows
    whose MAC could not be checked because their key is not on this computer (``ok`` is then
    False too, with ``problem`` saying so, unless a broken row was found first)."""

    ok: bool
    rows: int
    first_bad_seq: int | None
    problem: str | None = None
    keyed_from: int | None = None
    unverified: int = 0


@dataclass(frozen=True, slots=True)
class SessionCheck:
    """Result of :meth:`SessionStore.verify_session`: ``problems`` (each a sentence; none = the
    record is intact as far as it could be checked), ``notes`` (what could not be checked, e.g. MACs
    whose key is not on this computer, a session closed before Vigil sealed sessions) and the
    number of audit rows checked."""

    session_id: int
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    audit_rows: int

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return not self.problems

    def summary(self) -> str:
        """One line for an export's notice or a screen: verified, or the first problem."""
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"Record NOT verified: {self.problems[0]}{more}"
        text = f"Record verified against its audit trail ({self.audit_rows} rows)"
        return text + (f"; not checked: {'; '.join(self.notes)}" if self.notes else "")


class WaveformSlice(NamedTuple):
    """Samples of one channel over a time range.

    ``t``: float64 UTC epoch seconds. Undecimated, ``min`` and ``max`` are the same float32
    array of samples (NaN = gap). Decimated, ``t`` holds bin centres and ``min``/``max`` the
    float32 minimum/maximum of the samples in each bin (NaN where a bin holds no valid sample).
    """

    t: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @property
    def decimated(self) -> bool:
        """True when the slice holds per-bin min/max rather than samples."""
        return self.min is not self.max

    @property
    def values(self) -> np.ndarray:
        """The samples (undecimated slices; for decimated ones the bin minima)."""
        return self.min


class ObservationRows(NamedTuple):
    """A session's observations in stored order (time, then insertion): ``t`` float64 epoch s and
    ``values`` float64 (NaN where the stored value is NULL) as arrays, ``vital``/``value`` (None kept)
    /``quality`` (bits)/``device_time``/``unit`` (None = the catalogue unit)/``source`` as lists."""

    t: np.ndarray
    vital: list[str]
    value: list[float | None]
    quality: list[int]
    device_time: list[str | None]
    unit: list[str | None]
    source: list[str]
    values: np.ndarray


class Block(NamedTuple):
    """One stored waveform block: ``n`` samples from ``t0`` (epoch s) at ``rate`` Hz, ``data``
    compressed with encoding ``enc`` (:func:`monitor.store.codec.decode_samples`). ``pending`` marks
    the unfinished block of an open session."""

    channel: str
    t0: float
    rate: float
    n: int
    enc: int
    source: str | None
    data: bytes
    pending: bool = False


class Envelope(NamedTuple):
    """One vital over a range at a coarse resolution: per bin, its centre ``t`` (epoch s) and the
    ``lo``/``hi`` values in it (NaN for a bin without a value), so a plot keeps every peak."""

    t: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
