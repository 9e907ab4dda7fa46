"""Read-only access to recorded sessions for the screens: what review and the session browser may
ask of the record, and nothing else (no writes: late entries go through :meth:`Records.add_late_entry`,
which checks and audits them).

The window and ``vigil review`` hold a :class:`Records`, never the store itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from monitor.app.readmodel import SessionView, load_session
from monitor.app.review import LateEntryError, add_late_entry, check_late_entry
from monitor.staff import SignIns
from monitor.store import (
    SESSION_STATUSES, Entry, SessionRecord, SessionStore, SessionSummary, UserRecord, WaveformSlice,
)
from monitor.store.reader import StoreReader

__all__ = ["Records", "SessionRecord", "SessionSummary", "Entry", "UserRecord", "WaveformSlice",
           "SESSION_STATUSES"]


class Records:
    """Queries over one store (see the module docstring). ``store`` is kept for the application
    layer's own helpers (the review's loaders), which receive it from here. ``signins``: who is
    signed in (shared with the clinic's administration), for late entries."""

    def __init__(self, store: StoreReader, signins: SignIns | None = None) -> None:
        self.store = store
        self.signins = signins if signins is not None else SignIns()

    @property
    def readonly(self) -> bool:
        """True when the record cannot be written here (another Vigil records into it)."""
        return bool(getattr(self.store, "readonly", False))

    @property
    def location(self) -> str:
        """Where the record is (a file path; the clinic record's server and database), for messages."""
        return str(self.store.path)

    def chairs(self) -> list[str]:
        """The chairs whose sessions the record holds: the clinic record's; none for a chair's file."""
        return self.store.chairs()

    def list_sessions(self, **filters: Any) -> list[SessionSummary]:
        """Sessions matching the browser's filters (see ``SessionStore.list_sessions``)."""
        return list(self.store.list_sessions(**filters))

    def open_sessions(self) -> list[SessionRecord]:
        """Sessions a crash left open (a chair's own file; none elsewhere)."""
        return self.store.open_sessions() if hasattr(self.store, "open_sessions") else []

    def get_session(self, session_id: int) -> SessionRecord:
        """One session's record (``NotFoundError`` if there is none)."""
        return self.store.get_session(session_id)

    def last_data_time(self, session_id: int) -> datetime | None:
        """The latest time anything was recorded in the session."""
        return self.store.last_data_time(session_id)

    def entries(self, session_id: int, order: str = "time") -> list[Entry]:
        """The session's entries in clinical-time order (``order="recorded"``: as recorded)."""
        return self.store.entries(session_id, order=order)

    def numerics(self, session_id: int, vital: str, start: datetime | None = None, end: datetime | None = None,
                 *, with_quality: bool = False) -> tuple[Any, ...]:
        """One vital's values in time order (see ``SessionStore.numerics``)."""
        return self.store.numerics(session_id, vital, start, end, with_quality=with_quality)

    def numerics_envelope(self, session_id: int, vital: str, start: float, end: float, bins: int) -> Any:
        """Min/max of a vital per bin (see ``SessionStore.numerics_envelope``)."""
        return self.store.numerics_envelope(session_id, vital, start, end, bins)

    def waveform_channels(self, session_id: int) -> list[str]:
        """The waveform channels recorded in the session."""
        return self.store.waveform_channels(session_id)

    def waveform(self, session_id: int, channel: str, start: datetime, end: datetime,
                 max_points: int | None = None) -> WaveformSlice:
        """A waveform over ``[start, end)``, decimated to ``max_points`` min/max pairs when longer."""
        return self.store.waveform(session_id, channel, start, end, max_points=max_points)

    def session_view(self, session_id: int) -> SessionView:
        """The session as review and exports see it (the read model)."""
        return load_session(self.store, session_id)

    def check_late_entry(self, session_id: int, event: Mapping[str, Any], t: datetime, reason: str) -> Any:
        """Refuse a late entry before it is asked for (see :func:`monitor.app.review.check_late_entry`)."""
        return check_late_entry(self.store, session_id, event, t, reason)

    def add_late_entry(self, session_id: int, event: Mapping[str, Any], t: datetime, token: object,
                       reason: str) -> int:
        """Chart an event after the fact on a closed session, as the user signed in with ``token``
        (checked, audited; returns its id). A made-up ``Actor`` or an ended sign-in is refused
        (:class:`~monitor.staff.NotSignedIn`). The clinic record is read-only here: late entries
        are charted at the chair that recorded the session."""
        actor = self.signins.actor(token)
        if not isinstance(self.store, SessionStore):
            raise LateEntryError(f"{self.location} is read-only here: chart late entries at the chair that "
                                 "recorded the session")
        return add_late_entry(self.store, session_id, event, t, actor, reason)
