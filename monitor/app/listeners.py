"""What a consumer of the recording pipeline receives: the listener protocol and the session snapshot.

The pipeline (device → alarm engine → recorder → store writer) calls every listener from its own
thread, in order, after alarms have been evaluated and writes queued. A listener must return at
once (a few microseconds): anything slow — painting, the network, a database — goes into the
listener's own bounded queue and thread, so that no consumer can ever stall recording or alarms.
Everything passed is immutable or a copy the listener may keep.

Callbacks are named ``on_…`` (python-can style) so a Qt adapter can forward them as signals with
no shim. A listener implements the ones it needs; the rest default to doing nothing
(:class:`PipelineListener` is a convenience base class).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.model import Item
    from monitor.alarms.engine import AlarmEvent, AlarmState


@dataclass(frozen=True)
class SessionSnapshot:
    """The session being recorded, as a consumer outside the chair needs it (times aware UTC).

    ``patient_initials`` is what may be shown away from the chair; ``patient_name`` only where the
    clinic allows names. ``phase`` is the session phase value ("baseline", "infusion", "recovery",
    "discharged", "aborted"); ``protocol`` "ketamine-iv" or "esketamine". Dose figures are mg
    (esketamine: devices × 28 mg). ``next_nibp_at`` / ``next_assessment`` are the schedule's next
    items (``(label, due time)``), None when nothing is scheduled. ``at`` is the record time the
    snapshot describes.
    """

    session_id: int
    at: datetime
    patient_initials: str
    patient_name: str
    protocol: str
    phase: str
    opened_at: datetime
    dosing_started_at: datetime | None
    dosing_ended_at: datetime | None
    discharge_earliest: datetime | None
    dose_delivered_mg: float
    dose_planned_mg: float
    next_nibp_at: datetime | None
    next_assessment: tuple[str, datetime] | None


class PipelineListener:
    """Base class of pipeline consumers; override what you need. Called on the pipeline's thread."""

    def on_batch(self, items: list[Item]) -> None:
        """Device items (numerics, waveform chunks, conditions), on the record's timeline."""

    def on_alarm_event(self, event: AlarmEvent) -> None:
        """One alarm event (started, escalated, ended, acknowledged, audio paused …)."""

    def on_alarm_state(self, state: AlarmState) -> None:
        """The alarm state after any change, and at every tick (a few times a second)."""

    def on_session(self, snapshot: SessionSnapshot | None) -> None:
        """A session started, changed (an entry, a phase) or ended (None), and about every 10 s."""

    def on_entries(self, entries: list[dict[str, Any]]) -> None:
        """Session entries just recorded (JSON-ready dicts, the record's payloads)."""

    def on_link(self, state: str, detail: str) -> None:
        """The device link's state changed ("connecting", "connected", "lost", "stopped")."""
