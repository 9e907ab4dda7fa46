"""Recording a session: device items → session, alarm engine and store, in one place.

:class:`SessionRecorder` is the plain-Python core, used by the window's Qt service
(:mod:`monitor.app.pipeline`) and by ``vigil record``. It is driven from one thread: call
:meth:`~SessionRecorder.on_items` with each batch from the device and :meth:`~SessionRecorder.tick`
a few times a second. Alarms are evaluated as each batch arrives. Every write goes through the
:class:`~monitor.store.StoreWriter` (its own thread, committing at least once a second), so the
caller's thread never waits for the disk.

Staff actions (start/pause/resume/stop the infusion, nasal devices, charting, acknowledging,
pausing audio, closing) go through the recorder too, so that each one is validated by the
session, recorded with its user, and seen by the alarm engine.

Alarms belong to one patient: alarms already active when a session starts (the patient was
connected before) are logged in the new session with their real start time, marked as started
before the session; when a session ends, :meth:`SessionRecorder.end_patient` ends what belonged to
that patient's record (see :meth:`AlarmEngine.reset_patient`) inside the closing session's log.

A blood pressure entered by hand is a reading like the cuff's: it is stored with the numerics
(flagged ``manual``), judged by the alarm engine, and handed to the ``on_readings`` callback so the
screen shows it. While the IV infusion runs past the planned dose, the MEDIUM alarm
``dose_reached`` ("Planned dose reached: stop the infusion") is on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from drivers.model import DeviceCondition, Item, NumericObservation, Quality, WaveformChunk, numeric
from monitor.alarms.engine import Alarm, AlarmEngine, AlarmEvent, AlarmState
from monitor.alarms.profile import AlarmProfile
from monitor.patient import Patient
from monitor.protocols import EsketaminePlan, KetamineIVPlan
from monitor.session import Phase, SessionState
from monitor.session.record import STORE_TABLE, AssessmentEntry, EntryBase, EntryType, NibpEntry, entry_kind
from monitor.settings import ClinicSettings
from monitor.staff import Actor
from monitor.store import SessionStore, StoreWriter

log = logging.getLogger(__name__)

_HEARTBEAT = timedelta(seconds=5)
#: Appended to the message of an alarm logged in a session it started before.
BEFORE_SESSION = "started before the session"
DOSE_REACHED_TEXT = "Planned dose reached: stop the infusion"


class SessionRecorder:
    """One session being recorded: see the module docstring.

    ``on_alarm_event`` (optional) is called with every :class:`AlarmEvent` as it happens (on the
    caller's thread), e.g. to print it or to update the screen; ``on_readings`` (optional) with the
    readings the recorder makes itself (a BP entered by hand), as a device batch would be.
    """

    def __init__(self, store: SessionStore, writer: StoreWriter, session_id: int, state: SessionState,
                 engine: AlarmEngine, actor: Actor,
                 on_alarm_event: Callable[[AlarmEvent], None] | None = None,
                 on_readings: Callable[[list[Item]], None] | None = None) -> None:
        self.store = store
        self.writer = writer
        self.session_id = session_id
        self.state = state
        self.engine = engine
        self.actor = actor
        self.on_alarm_event = on_alarm_event
        self.on_readings = on_readings
        self._alarm_rows: dict[int, int] = {}      # engine alarm id → store alarm id (writer thread)
        self._last_heartbeat: datetime | None = None
        self._phase = state.phase
        self._recording_failed = False
        self._dose_reached = False
        self.now: datetime | None = None
        #: Added to device times (see :meth:`resume`).
        self.time_offset = timedelta(0)
        if state.baseline is not None:
            engine.set_baseline(state.baseline.values)

    # ------------------------------------------------------------------ creation
    @classmethod
    def start(cls, store: SessionStore, writer: StoreWriter, *, patient: Patient,
              plan: KetamineIVPlan | EsketaminePlan, device: str, actor: Actor, t: datetime,
              settings: ClinicSettings, profile: AlarmProfile,
              on_alarm_event: Callable[[AlarmEvent], None] | None = None,
              engine: AlarmEngine | None = None,
              on_readings: Callable[[list[Item]], None] | None = None) -> "SessionRecorder":
        """Open a new session at ``t`` (validated by the session before anything is stored).
        ``engine``: an alarm engine already watching the device (the window's), else a new one."""
        probe = SessionState.open(session_id="S-0", patient=patient, plan=plan, t=t, by=actor, settings=settings)
        session_id = store.create_session(patient=patient.to_payload(), protocol=probe.protocol.value,
                                          plan=plan.to_payload(), device=device, user=actor.username,
                                          started_at=t)
        state = SessionState.open(session_id=f"S-{session_id}", patient=patient, plan=plan, t=t, by=actor,
                                  settings=settings)
        recorder = cls(store, writer, session_id, state, engine or make_engine(profile, settings), actor, on_alarm_event,
                       on_readings)
        recorder._adopt_alarms(t)
        recorder._store_entries(state.entries)
        return recorder

    @classmethod
    def resume(cls, store: SessionStore, writer: StoreWriter, session_id: int, *, actor: Actor, now: datetime,
               settings: ClinicSettings, profile: AlarmProfile,
               on_alarm_event: Callable[[AlarmEvent], None] | None = None,
               engine: AlarmEngine | None = None,
               on_readings: Callable[[list[Item]], None] | None = None) -> "SessionRecorder":
        """Resume an open session left by a crash: replay its entries, mark the gap from the last
        recorded data to ``now`` (the device's time now), and close alarm log rows that were open at
        the crash.

        The record's timeline never runs backwards: when the device's clock is *behind* the last
        recorded data (a simulator run faster than real time, a monitor whose clock is wrong), the
        session continues from its last data time — the gap is empty, never negative — and
        everything the device sends from now on is re-based by that difference
        (:attr:`time_offset`; see :meth:`rebase`), said in the gap's reason and in the audit trail,
        instead of being interleaved with what was recorded."""
        record = store.get_session(session_id)
        if not record.is_open:
            raise ValueError(f"session {session_id} is {record.status}: it cannot be resumed")
        entries = [e.payload for e in store.entries(session_id, order="recorded") if e.amends is None]
        state = SessionState.from_entries(entries)
        last = store.last_data_time(session_id) or record.started_at
        # (a millisecond more, so that no new sample shares the last recorded instant)
        offset = last - now + timedelta(milliseconds=1) if now <= last else timedelta(0)
        reason = "Vigil was not recording (restarted after it stopped)"
        if offset:
            reason += (f"; the device clock was {offset.total_seconds():.1f} s behind the record: its data "
                       f"are re-based by +{offset.total_seconds():.1f} s")
        with store.transaction():
            store.add_gap(session_id, last, now + offset, reason)
            for row in store.alarms(session_id):
                if row.ended_at is None:
                    store.alarm_ended(row.id, max(last, row.started_at))
            store.audit(actor.username, "session_resumed", session_id,
                        {"gap_start": last.isoformat(), "gap_end": (now + offset).isoformat(),
                         "device_time": now.isoformat(), "rebased_s": offset.total_seconds()})
        if state.phase is Phase.BASELINE:
            state.observe(store.observations(session_id, start=last - timedelta(minutes=2)))
        recorder = cls(store, writer, session_id, state, engine or make_engine(profile, settings), actor, on_alarm_event,
                       on_readings)
        recorder.time_offset = offset
        recorder.now = now + offset
        recorder._adopt_alarms(now + offset)
        return recorder

    def rebase(self, items: Sequence[Item]) -> list[Item]:
        """``items`` on the record's timeline: shifted by :attr:`time_offset` (zero, except after a
        resume whose device clock was behind the record). Call before :meth:`on_items` and before
        showing the items."""
        return rebase_items(items, self.time_offset)

    # ------------------------------------------------------------------ the data path
    def on_items(self, items: Sequence[Item]) -> list[AlarmEvent]:
        """Take one batch from the device: store it, update the session, evaluate alarms. What was
        measured before the session opened (a decoder may release frames it held until it believed
        the stream) is judged by the alarm engine but not stored: nothing is stored before the
        session's start."""
        opened = self.state.opened_at
        numerics = [i for i in items if isinstance(i, NumericObservation) and i.sample_time >= opened]
        waves = [i for i in items if isinstance(i, WaveformChunk) and _time(i) > opened]
        conditions = [i for i in items if isinstance(i, DeviceCondition) and i.time >= opened]
        sid = self.session_id
        if numerics:
            self.writer.put_observations(sid, numerics)
            self._store_entries(self.state.observe(numerics))
        if waves:
            self.writer.put_waveforms(sid, waves)
        if conditions:
            self.writer.put_conditions(sid, conditions)
        events = self.engine.process(items)
        if items:
            latest = max(_time(i) for i in items)
            self.now = latest if self.now is None else max(self.now, latest)
        self._handle(events)
        return events + self._housekeeping()

    def tick(self, now: datetime) -> list[AlarmEvent]:
        """Advance to ``now`` (device time base) between batches."""
        self.now = now if self.now is None else max(self.now, now)
        events = self.engine.tick(self.now)
        self._handle(events)
        return events + self._housekeeping()

    def _housekeeping(self) -> list[AlarmEvent]:
        now = self.now
        if now is None:
            return []
        events: list[AlarmEvent] = []
        failing = self.writer.failing
        if failing != self._recording_failed:
            self._recording_failed = failing
            error = self.writer.last_error
            events = self.engine.set_technical("recording_failed", failing, now,
                                               f"Recording failed: {error}" if failing else "")
            self._handle(events)
        infusion = self.state.infusion
        if infusion is not None:
            reached = infusion.running(now) and infusion.dose_complete(now)
            if reached != self._dose_reached:
                self._dose_reached = reached
                at = (infusion.dose_reached_at(now) or now) if reached else now
                more = self.engine.set_technical("dose_reached", reached, at, DOSE_REACHED_TEXT if reached else "")
                self._handle(more)
                events = events + more
        if self._last_heartbeat is None or now - self._last_heartbeat >= _HEARTBEAT:
            self._last_heartbeat = now
            self.writer.put_lazy_call(self.store.heartbeat, self.session_id, now)
        return events

    # ------------------------------------------------------------------ alarms
    def _adopt_alarms(self, t: datetime) -> None:
        """Log in this session every alarm the engine shows now (the patient was connected before
        the session started): real start time, marked as started before the session."""
        for alarm in sorted(self.engine.alarms.values(), key=lambda a: a.id):
            self.writer.put_call(self._log_adopted, Alarm(**vars(alarm)), t)

    def _log_adopted(self, alarm: Alarm, t: datetime) -> None:
        """Runs on the writer thread (in order with every other write)."""
        before = alarm.started_at < t
        message = alarm.message or alarm.label
        row = self.store.alarm_started(
            self.session_id, condition=alarm.condition, kind=alarm.kind, priority=alarm.priority.name,
            started_at=alarm.started_at, limit=alarm.limit, value=alarm.value,
            message=f"{message} ({BEFORE_SESSION})" if before else message)
        self._alarm_rows[alarm.id] = row
        if alarm.max_priority > alarm.priority:
            self.store.alarm_escalated(row, alarm.max_priority.name, max(alarm.started_at, t))
        if alarm.ended_at is not None:  # latched: its condition is over, its signal is not
            self.store.alarm_ended(row, alarm.ended_at)

    def end_patient(self, t: datetime, user: str | None = None) -> list[AlarmEvent]:
        """The session is ending: end, in its log, the alarms that belong to this patient's record
        (:meth:`AlarmEngine.reset_patient`); call before :meth:`finish`."""
        events = self.engine.reset_patient(max(t, self.now or t), user)
        self._dose_reached = False
        self._handle(events)
        return events

    def _handle(self, events: Iterable[AlarmEvent]) -> None:
        for event in events:
            self.writer.put_call(self._log_alarm, event)
            if self.on_alarm_event is not None:
                self.on_alarm_event(event)

    def _log_alarm(self, event: AlarmEvent) -> None:
        """Runs on the writer thread, in order with every other write."""
        store, sid = self.store, self.session_id
        alarm_id, priority = event.alarm_id, event.priority
        if event.event == "audio_paused":
            store.alarm_action(sid, alarm_id=None, at=event.t, action="audio_pause", user=event.user,
                               detail=event.detail)
        elif event.event == "audio_resumed":  # a user's cancel, or (no user) the pause ran out at event.t
            store.alarm_action(sid, alarm_id=None, at=event.t, action="audio_pause_cancel" if event.user
                               else "audio_pause_end", user=event.user, detail=event.detail)
        elif alarm_id is None or priority is None:  # the engine gives every other event its alarm
            log.warning("alarm event %s without its alarm", event.event)
        elif event.event == "started":
            self._alarm_rows[alarm_id] = store.alarm_started(
                sid, condition=event.condition, kind=event.kind or "physiological", priority=priority.name,
                started_at=event.t, limit=event.limit, value=event.value, message=event.message or event.label)
        elif (row := self._alarm_rows.get(alarm_id)) is None:
            log.warning("alarm event %s for an alarm not in the log", event.event)
        elif event.event == "escalated":
            store.alarm_escalated(row, priority.name, event.t)  # also logs the 'escalate' action
        elif event.event == "deescalated":
            store.alarm_action(sid, alarm_id=row, at=event.t, action="deescalate", user=event.user,
                               detail=priority.name)
        elif event.event == "ended":
            store.alarm_ended(row, event.t)
        elif event.event in ("acknowledged", "reset"):
            store.alarm_action(sid, alarm_id=row, at=event.t, action="acknowledge" if event.event == "acknowledged"
                               else "reset", user=event.user, detail=event.condition)

    def alarm_state(self) -> AlarmState:
        """The alarm state now."""
        return self.engine.state(self.now)

    def acknowledge(self, actor: Actor, now: datetime) -> list[AlarmEvent]:
        """Acknowledge the alarms active now."""
        events = self.engine.acknowledge(actor.username, max(now, self.now or now))
        self._handle(events)
        return events

    def pause_audio(self, actor: Actor, now: datetime, seconds: float | None = None) -> list[AlarmEvent]:
        """Pause alarm audio (ValueError beyond the clinic's maximum)."""
        events = self.engine.pause_audio(actor.username, max(now, self.now or now), seconds)
        self._handle(events)
        return events

    def cancel_audio_pause(self, actor: Actor, now: datetime) -> list[AlarmEvent]:
        """End an audio pause early."""
        events = self.engine.cancel_audio_pause(actor.username, max(now, self.now or now))
        self._handle(events)
        return events

    def set_technical(self, code: str, active: bool, now: datetime, text: str = "") -> list[AlarmEvent]:
        """Raise or clear a technical condition Vigil detects itself (``audio_unavailable``)."""
        events = self.engine.set_technical(code, active, max(now, self.now or now), text)
        self._handle(events)
        return events

    # ------------------------------------------------------------------ staff actions
    def record(self, action: Callable[[SessionState], list[EntryBase]]) -> list[EntryBase]:
        """Run a staff action on the session (``lambda state: state.start_infusion(t, by)``) and record
        its entries. A refused action raises (the session's message) and records nothing."""
        entries = action(self.state)
        self._store_entries(entries)
        return entries

    def _store_entries(self, entries: Iterable[EntryBase]) -> None:
        for entry in entries:
            kind = entry.entry_type
            user = entry.by.username if entry.by is not None else self.actor.username
            t = entry.t
            if isinstance(entry, NibpEntry) and entry.source == "manual":
                self._manual_reading(entry, user)
            self.writer.put_call(self.store.add_entry, self.session_id, STORE_TABLE.get(kind, "note"), t,
                                 entry_kind(entry), entry.to_payload(), user)
            if isinstance(entry, AssessmentEntry):
                score = self._moaas_score(entry)
                if score is not None:
                    self._handle(self.engine.chart("moaas", score, t))
            if kind is EntryType.BASELINE and self.state.baseline is not None:
                self.engine.set_baseline(self.state.baseline.values)
                self.writer.put_call(self.store.set_baseline, self.session_id, dict(self.state.baseline.values),
                                     user, t)
        if self.state.phase != self._phase:
            self._phase = self.state.phase
            if not self._phase.terminal:
                self.writer.put_call(self.store.set_phase, self.session_id, self._phase.value,
                                     self.actor.username, self.now or self.state.opened_at)

    def _manual_reading(self, entry: NibpEntry, user: str) -> None:
        """A BP entered by hand becomes numerics flagged ``manual``: stored, judged by the alarm
        engine, and shown (tile, trends, review, exports) like a cuff reading."""
        quality = frozenset({Quality.MANUAL})
        readings = [numeric(vital, value, f"manual:{user}", entry.t, quality=quality)
                    for vital, value in (("nibp_sys", entry.sys), ("nibp_dia", entry.dia),
                                         ("nibp_mean", entry.mean)) if value is not None]
        self.writer.put_observations(self.session_id, readings)
        items: list[Item] = list(readings)
        self._handle(self.engine.process(items))
        if self.on_readings is not None:
            self.on_readings(items)

    @staticmethod
    def _moaas_score(entry: AssessmentEntry) -> float | None:
        assessment = entry.assessment
        if assessment.get("kind") == "moaas":
            for key in ("level", "score"):
                if isinstance(assessment.get(key), (int, float)):
                    return float(assessment[key])
        return None

    def finish(self, t: datetime, *, signed_name: str, meaning: str, status: str = "closed") -> None:
        """Close the session in the store (the signature) after everything queued is written."""
        self.writer.put_call(self.store.close_session, self.session_id, user=self.actor.username,
                             signed_name=signed_name, meaning=meaning, at=t, status=status).result(timeout=30)


def make_engine(profile: AlarmProfile, settings: ClinicSettings) -> AlarmEngine:
    """An alarm engine with the clinic's latching and audio-pause settings."""
    return AlarmEngine(profile, latching=settings.alarm_latching, audio_pause_s=settings.audio_pause_s,
                       audio_pause_max_s=settings.audio_pause_max_s)


def rebase_items(items: Sequence[Item], offset: timedelta) -> list[Item]:
    """``items`` with every time moved by ``offset`` (the same list when it is zero)."""
    if not offset:
        return list(items)
    field = {NumericObservation: "sample_time", WaveformChunk: "start_time", DeviceCondition: "time"}
    out: list[Item] = []
    for item in items:
        name = field.get(type(item))
        out.append(item.model_copy(update={name: getattr(item, name) + offset}) if name else item)
    return out


def _time(item: Item) -> datetime:
    if isinstance(item, NumericObservation):
        return item.sample_time
    if isinstance(item, WaveformChunk):
        return item.start_time + timedelta(seconds=item.duration)
    return item.time
