"""The Qt service the window talks to: one device, its alarms, and the session being recorded.

It lives in the UI thread but does no heavy work there: the device is read in the acquisition
worker's thread and the store is written in the store writer's thread; this object evaluates
alarms as each batch arrives (a few hundred microseconds) and re-emits what the screen needs as
batched signals. Alarms run from the moment the device connects, before any session is started;
once a session starts they are also logged with it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from PySide6.QtCore import QObject, QTimer, Signal

from drivers.model import Item
from monitor.alarms.engine import AlarmEngine, AlarmEvent, AlarmState
from monitor.alarms.profile import AlarmProfile
from monitor.device_channel import DeviceChannel
from monitor.patient import Patient
from monitor.protocols import EsketaminePlan, KetamineIVPlan
from monitor.recording import SessionRecorder, make_engine
from monitor.settings import ClinicSettings
from monitor.staff import Actor
from monitor.store import SessionStore, StoreWriter

log = logging.getLogger(__name__)


class RecordingService(QObject):
    """Device → alarms → store, as signals for the window.

    Signals: ``batch_received(list)`` (device items, for numerics and curves),
    ``alarm_event(object)`` (each :class:`AlarmEvent`), ``alarm_state_changed(object)``
    (:class:`AlarmState`, after any change and on every tick), ``entries_recorded(list)`` (session
    entries just recorded), ``session_changed()`` (a session started, resumed or ended).
    """

    batch_received = Signal(list)
    alarm_event = Signal(object)
    alarm_state_changed = Signal(object)
    entries_recorded = Signal(list)
    session_changed = Signal()
    device_changed = Signal()

    def __init__(self, channel: DeviceChannel, store: SessionStore, settings: ClinicSettings,
                 profile: AlarmProfile, parent: QObject | None = None, tick_ms: int = 200) -> None:
        super().__init__(parent)
        self.channel = channel
        self.store = store
        self.settings = settings
        self.profile = profile
        self.engine: AlarmEngine = make_engine(profile, settings)
        #: The limits in force: the clinic's profile, adjusted for the current session.
        self.session_profile: AlarmProfile = profile
        self.writer = StoreWriter(store)
        self.writer.start()
        self.recorder: SessionRecorder | None = None
        self._closed = False
        channel.batch_received.connect(self._on_batch)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.tick)
        self._timer.start(tick_ms)

    def switch_device(self, device: str) -> None:
        """Read another device (a different simulator scenario, another port). Refused while a
        session is being recorded; a bad URL raises DeviceUrlError and keeps the current device."""
        if self.recorder is not None:
            raise ValueError("the device cannot be changed while a session is being recorded")
        new = DeviceChannel(device)
        old = self.channel
        old.batch_received.disconnect(self._on_batch)
        old.stop(1.0)
        self.channel = new
        new.batch_received.connect(self._on_batch)
        self.engine = make_engine(self.profile, self.settings)
        new.start()
        self.device_changed.emit()
        self.alarm_state_changed.emit(self.alarm_state())

    # ------------------------------------------------------------------ time
    def now(self) -> datetime:
        """Now, in the record's time base: the device's clock (the simulated clock for the
        simulated monitor), re-based like its data after a resume (see ``SessionRecorder.resume``)."""
        now = self.channel.link.clock()
        return now + self.recorder.time_offset if self.recorder is not None else now

    # ------------------------------------------------------------------ data path
    def _on_batch(self, items: list[Item]) -> None:
        if self._closed:  # a batch queued before shutdown
            return
        try:
            if self.recorder is not None:
                items = self.recorder.rebase(items)
                events = self.recorder.on_items(items)
            else:
                events = self.engine.process(items)
        except Exception:  # a fault here must not stop the window showing the monitor
            log.exception("failed to process a device batch")
            events = []
        self.batch_received.emit(items)
        self._publish(events)

    def tick(self) -> None:
        """Advance alarms to now (escalations, pause expiry), and publish the state."""
        if self._closed:
            return
        now = self.now()
        events = self.recorder.tick(now) if self.recorder is not None else self.engine.tick(now)
        self._publish(events, always=True)

    def _publish(self, events: list[AlarmEvent], always: bool = False) -> None:
        for event in events:
            self.alarm_event.emit(event)
        if events or always:
            self.alarm_state_changed.emit(self.alarm_state())

    def alarm_state(self) -> AlarmState:
        """The alarm state now."""
        return self.engine.state(max(self.now(), self.recorder.now) if self.recorder and self.recorder.now else self.now())

    # ------------------------------------------------------------------ sessions
    def start_session(self, patient: Patient, plan: KetamineIVPlan | EsketaminePlan, actor: Actor,
                      t: datetime | None = None) -> SessionRecorder:
        """Open a session now (refused input raises the session's message; nothing is stored)."""
        if self.recorder is not None:
            raise ValueError("a session is already being recorded: close it first")
        self.recorder = SessionRecorder.start(
            self.store, self.writer, patient=patient, plan=plan, device=self.channel.label, actor=actor,
            t=t or self.now(), settings=self.settings, profile=self.profile, engine=self.engine)
        self.recorder.on_readings = self.batch_received.emit
        self.entries_recorded.emit(list(self.recorder.state.entries))
        self.session_changed.emit()
        return self.recorder

    def resume_session(self, session_id: int, actor: Actor) -> SessionRecorder:
        """Carry on recording a session a crash left open (a gap is marked)."""
        if self.recorder is not None:
            raise ValueError("a session is already being recorded: close it first")
        self.recorder = SessionRecorder.resume(self.store, self.writer, session_id, actor=actor,
                                               now=self.channel.link.clock(), settings=self.settings,
                                               profile=self.profile, engine=self.engine)
        self.recorder.on_readings = self.batch_received.emit
        self.session_changed.emit()
        return self.recorder

    def act(self, action: str, *args, **kwargs) -> list[dict]:
        """A staff action on the session (see :meth:`SessionRecorder.act`); closing and aborting
        go through :meth:`close_session` and :meth:`abort_session`."""
        if self.recorder is None:
            raise ValueError("no session is being recorded")
        if action in ("close", "abort"):
            raise ValueError(f"use {action}_session() to {action} a session")
        entries = self.recorder.act(action, *args, **kwargs)
        self.entries_recorded.emit(entries)
        return entries

    def close_session(self, actor: Actor, *, override_reason: str | None = None,
                      meaning: str = "reviewed and closed") -> list[dict]:
        """Discharge and sign: refused (the session's message) unless the criteria are met or a
        charge nurse gives an override reason. The record becomes read-only."""
        return self._end("close", actor, meaning, dict(meaning=meaning, override_reason=override_reason,
                                                     latest_vitals=self._latest_vitals(),
                                                     active_alarms=self.active_alarms()))

    def abort_session(self, actor: Actor, reason: str) -> list[dict]:
        """End the session early with a reason (read-only afterwards)."""
        return self._end("abort", actor, f"aborted: {reason}", dict(reason=reason))

    def _end(self, action: str, actor: Actor, meaning: str, kwargs: dict) -> list[dict]:
        if self.recorder is None:
            raise ValueError("no session is being recorded")
        now = max(self.now(), self.recorder.now or self.now())
        if action == "abort":
            entries = self.recorder.act("abort", now, actor, kwargs["reason"])
        else:
            entries = self.recorder.act("close", now, actor, **kwargs)
        self.entries_recorded.emit(entries)
        events = self.recorder.end_patient(now, actor.username)   # logged in the closing session
        self.recorder.finish(now, signed_name=actor.display_name, meaning=meaning,
                             status="aborted" if action == "abort" else "closed")
        self.recorder = None
        if self.session_profile is not self.profile:
            self.engine.update_profile(self.profile)
            self.session_profile = self.profile
        self.session_changed.emit()
        self._publish(events, always=True)
        return entries

    def active_alarms(self) -> list[tuple[str, str, str]]:
        """``(condition, priority, kind)`` of each alarm active now (what blocks discharge)."""
        return [(a.condition, a.priority.name, a.kind) for a in self.alarm_state().alarms if a.active]

    def _latest_vitals(self) -> dict:
        return dict(self.recorder.state.latest) if self.recorder is not None else {}

    def set_alarm_limits(self, changes: dict[str, float], actor: Actor) -> AlarmProfile:
        """Adjust alarm limits for this session, within the clinic's bounds (ValueError naming the
        limit otherwise). Recorded in the audit trail with the user."""
        if self.recorder is None:
            raise ValueError("alarm limits are adjusted for a session: start one first")
        adjusted = self.session_profile.adjusted(changes)
        self.engine.update_profile(adjusted)
        self.session_profile = adjusted
        self.writer.put_call(self.store.audit, actor.username, "alarm_limits_changed", self.recorder.session_id,
                             {"changes": {k: float(v) for k, v in changes.items()}})
        self.alarm_state_changed.emit(self.alarm_state())
        return adjusted

    # ------------------------------------------------------------------ alarm signals
    def acknowledge(self, actor: Actor) -> None:
        """Acknowledge the alarms active now."""
        events = (self.recorder.acknowledge(actor, self.now()) if self.recorder
                  else self.engine.acknowledge(actor.username, self.now()))
        self._publish(events, always=True)

    def pause_audio(self, actor: Actor, seconds: float | None = None) -> None:
        """Pause alarm audio (ValueError beyond the clinic's maximum)."""
        events = (self.recorder.pause_audio(actor, self.now(), seconds) if self.recorder
                  else self.engine.pause_audio(actor.username, self.now(), seconds))
        self._publish(events, always=True)

    def cancel_audio_pause(self, actor: Actor) -> None:
        """End an audio pause early."""
        events = (self.recorder.cancel_audio_pause(actor, self.now()) if self.recorder
                  else self.engine.cancel_audio_pause(actor.username, self.now()))
        self._publish(events, always=True)

    def set_technical(self, code: str, active: bool, text: str = "") -> None:
        """Raise or clear a technical condition of Vigil itself (``audio_unavailable``)."""
        events = (self.recorder.set_technical(code, active, self.now(), text) if self.recorder
                  else self.engine.set_technical(code, active, self.now(), text))
        self._publish(events, always=True)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, timeout: float = 1.0) -> None:
        """Stop the device and flush the store (the session stays open for a resume)."""
        self._closed = True
        self._timer.stop()
        try:
            self.channel.batch_received.disconnect(self._on_batch)
        except (RuntimeError, TypeError):
            pass  # already disconnected
        self.channel.stop(timeout)
        self.writer.stop(10)
