"""The session service: every staff command of a chair as a typed method, run on the pipeline.

What the window, ``vigil record`` and the clinic board ask of a chair goes through here: start,
resume, close or abort a session; every charting and dosing action; acknowledging and pausing
alarm audio; session alarm limits; clinic settings in force; the device. Each method runs on the
pipeline's thread (:meth:`Pipeline.call`) — so it is ordered with the device's data and the
alarms — validates through the session's rules, records its entries, and returns them; a refusal
raises the session's message (``RefusedAction``/``ValueError``) and records nothing.

Times: a command's ``t`` defaults to *now on the record's timeline* (the device's clock; the
simulated monitor's for the simulated monitor), taken on the pipeline thread.

Privileged commands — closing or aborting a session (signatures), the clinically-stable sign-off,
a session's alarm limits, applying clinic settings — take the session token of a sign-in
(:meth:`monitor.app.clinic.Clinic.authenticate`) and find the user in :attr:`SessionService.signins`
(shared with the clinic's administration); a made-up ``Actor`` or an ended sign-in is refused with
:class:`~monitor.staff.NotSignedIn`. Bedside actions (charting, acknowledging, pausing audio) take
the acting user as before.

Queries (``now``, ``alarm_state``, ``session``, ``active_alarms`` …) return copies safe to read on
any thread; nothing here hands out the alarm engine or the live session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from drivers.acquisition import Link
from drivers.base import DecoderStats
from drivers.transport import DeviceSpec, open_link, parse_device_url
from monitor.alarms.engine import AlarmState
from monitor.alarms.profile import AlarmProfile, Priority, migrate_profile_data
from monitor.alarms.safety import check_profile
from monitor.app.pipeline import Pipeline
from monitor.app.recorder import SessionRecorder
from monitor.assessments import Assessment, Event
from monitor.display import alarm_text
from monitor.patient import Patient
from monitor.protocols import EsketaminePlan, KetamineIVPlan
from monitor.session import CLOSE_MEANING, DosingDuringAlarm, SessionError, SessionState
from monitor.session.record import EntryBase
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role, SignIns, nurse_message, require_role

__all__ = ["SessionService"]

log = logging.getLogger(__name__)


class SessionService:
    """Typed commands and safe queries over one :class:`Pipeline` (see the module docstring).
    ``signins``: who is signed in (shared with the clinic's administration; a new set when None)."""

    def __init__(self, pipeline: Pipeline, signins: SignIns | None = None) -> None:
        self.pipeline = pipeline
        self.signins = signins if signins is not None else SignIns()

    # ------------------------------------------------------------------ queries
    def now(self) -> datetime:
        """Now on the record's timeline."""
        return self.pipeline.now()

    def alarm_state(self) -> AlarmState:
        """The alarm state now (a copy)."""
        return self.pipeline.alarm_state()

    def session(self) -> SessionState | None:
        """A read-only replica of the session being recorded, or None."""
        return self.pipeline.session_view()

    @property
    def recording(self) -> bool:
        """True while a session is being recorded."""
        return self.pipeline.recorder is not None

    @property
    def session_id(self) -> int | None:
        """The store id of the session being recorded."""
        recorder = self.pipeline.recorder
        return recorder.session_id if recorder is not None else None

    def active_alarms(self) -> list[tuple[str, str, str]]:
        """``(condition, priority, kind)`` of each alarm active now (what blocks discharge)."""
        return [(a.condition, a.priority.name, a.kind) for a in self.alarm_state().alarms if a.active]

    @property
    def settings(self) -> ClinicSettings:
        """The clinic settings in force."""
        return self.pipeline.settings

    @property
    def profile(self) -> AlarmProfile:
        """The clinic's alarm profile."""
        return self.pipeline.profile

    @property
    def session_profile(self) -> AlarmProfile:
        """The alarm limits in force (the clinic's, adjusted for this session)."""
        return self.pipeline.session_profile

    @property
    def device_label(self) -> str:
        """Human name of the device."""
        return self.pipeline.device_label

    @property
    def link_state(self) -> str:
        """The device link's state ("connecting", "connected", "lost", "stopped")."""
        return self.pipeline.link_state

    @property
    def link_attempt(self) -> int:
        """Reconnect attempts since the link was lost."""
        return self.pipeline.link_attempt

    @property
    def device_spec(self) -> DeviceSpec | None:
        """The device URL in use, parsed (None when given as a link)."""
        return self.pipeline.device_spec

    @property
    def link_detail(self) -> str:
        """What the link last said about its state."""
        return self.pipeline.link_detail

    def decoder_stats(self) -> DecoderStats | None:
        """The device decoder's counts, where the link has a decoder."""
        return self.pipeline.link.stats

    # ------------------------------------------------------------------ plumbing
    def _call(self, fn: Callable[[], Any]) -> Any:
        return self.pipeline.call(fn)

    def _t(self, t: datetime | None) -> datetime:
        now = self.pipeline.now()
        recorder = self.pipeline.recorder
        if recorder is not None and recorder.now is not None:
            now = max(now, recorder.now)
        return now if t is None else t

    def _recorder(self) -> SessionRecorder:
        recorder = self.pipeline.recorder
        if recorder is None:
            raise ValueError("no session is being recorded")
        return recorder

    def _record(self, action: Callable[[SessionState, datetime], list[EntryBase]], t: datetime | None) -> list[EntryBase]:
        def work() -> list[EntryBase]:
            entries = self._recorder().record(lambda state: action(state, self._t(t)))
            self.pipeline.entries_recorded(entries)
            self.pipeline._after([])   # a reading or a score entered may have moved the alarms
            return entries
        return self._call(work)

    # ------------------------------------------------------------------ sessions
    def check_start(self, patient: Patient, plan: KetamineIVPlan | EsketaminePlan, actor: Actor, *,
                    concomitant: Mapping[str, Any] | None = None,
                    manual_baseline: Mapping[str, float] | None = None) -> None:
        """Run the whole start on a trial session (nothing is stored); raises the session's refusal."""
        t = self.now()
        trial = SessionState.open(session_id="S-0", patient=patient, plan=plan, t=t, by=actor, settings=self.settings)
        start_follow_up(trial, t, actor, concomitant, manual_baseline)

    def start_session(self, patient: Patient, plan: KetamineIVPlan | EsketaminePlan, actor: Actor,
                      t: datetime | None = None, *, concomitant: Mapping[str, Any] | None = None,
                      manual_baseline: Mapping[str, float] | None = None) -> int:
        """Open a session and record what the nurse gave with it — the concomitant medications, a
        manual pre-dose BP (``nibp_sys``/``nibp_dia`` in ``manual_baseline``, recorded as a manual
        reading) and other manual baseline values — after checking all of it on a trial session:
        a refusal raises the session's message and nothing is stored. Alarms already shown are
        logged in it as started before the session. Returns its store id."""
        p = self.pipeline

        def work() -> int:
            if p.recorder is not None:
                raise ValueError("a session is already being recorded: close it first")
            at = self._t(t)
            trial = SessionState.open(session_id="S-0", patient=patient, plan=plan, t=at, by=actor, settings=p.settings)
            start_follow_up(trial, at, actor, concomitant, manual_baseline)   # refusals before anything is stored
            p.recorder = SessionRecorder.start(
                p.store, p.writer, patient=patient, plan=plan, device=p.device_label, actor=actor, t=at,
                settings=p.settings, profile=p.profile, engine=p.engine, on_readings=self._readings,
                on_alarm_event=p.on_recorder_event)
            self._record_profile(at, actor, p.session_profile)
            p.recorder.record(lambda state: start_follow_up(state, at, actor, concomitant, manual_baseline))
            self._expect_patient(patient)
            p.session_changed()
            p.entries_recorded(list(p.recorder.state.entries))
            return p.recorder.session_id
        return self._call(work)

    def resume_session(self, session_id: int, actor: Actor) -> int:
        """Carry on recording a session a crash left open (a gap is marked)."""
        p = self.pipeline

        def work() -> int:
            if p.recorder is not None:
                raise ValueError("a session is already being recorded: close it first")
            p.recorder = SessionRecorder.resume(p.store, p.writer, session_id, actor=actor, now=p.link.clock(),
                                                settings=p.settings, profile=p.profile, engine=p.engine,
                                                on_readings=self._readings, on_alarm_event=p.on_recorder_event)
            self._resume_profile(actor)
            self._expect_patient(p.recorder.state.patient)
            p.session_changed()
            return session_id
        return self._call(work)

    def _record_profile(self, t: datetime, actor: Actor, profile: AlarmProfile,
                        changes: Mapping[str, float] | None = None) -> list[EntryBase]:
        """Record ``profile`` as the alarm profile in force for the session (pipeline thread)."""
        p = self.pipeline
        default = profile.fingerprint() == p.profile.fingerprint()
        return self._recorder().record(lambda state: state.record_alarm_limits(
            t, actor, profile.to_payload(), source="clinic default" if default else "changed at the chair",
            changes=changes))

    def _resume_profile(self, actor: Actor) -> None:
        """After a resume: carry on with the alarm profile recorded for the session (its limits
        changed at the chair included); when none was recorded, or it can no longer be used (a
        newer Vigil's hard limits refuse it: logged), record the clinic's profile in force now."""
        p = self.pipeline
        recorded = self._recorder().state.alarm_limits
        if recorded:
            try:
                data, _ = migrate_profile_data(dict(recorded[-1].profile))
                profile = check_profile(AlarmProfile.model_validate(data),
                                        "the alarm profile recorded for the session")
            except ValueError as exc:
                log.warning("session %s: %s; carrying on with the clinic's profile", self.session_id,
                            nurse_message(exc))
            else:
                p.engine.update_profile(profile)
                p.session_profile = profile
                return
        p.session_profile = p.profile
        p.engine.update_profile(p.profile)
        self._record_profile(self._t(None), actor, p.profile)

    def _readings(self, items: list[Any]) -> None:
        self.pipeline._notify("on_batch", items)

    def _expect_patient(self, patient: Patient | None) -> None:
        """A network link that checks whose messages it accepts (HL7) is told this session's
        patient (by record number; none: whoever the monitor sends first), or, with None at the
        session's end, that the next patient may come: an expectation left over from the previous
        patient would refuse every message of the next one."""
        expect = getattr(self.pipeline.link, "set_expected_patient", None)
        if callable(expect):
            expect(patient=(patient.mrn or None) if patient is not None else None)

    def close_session(self, token: object, *, override_reason: str | None = None,
                      meaning: str = CLOSE_MEANING) -> list[EntryBase]:
        """Discharge and sign, as the user signed in with ``token``: refused (the session's message)
        unless the criteria are met or a charge nurse gives an override reason (never for a hard
        criterion). Active HIGH/MEDIUM physiological alarms count. The record becomes read-only."""
        actor = self.signins.actor(token)

        def close(state: SessionState, t: datetime) -> list[EntryBase]:
            return state.close(t, actor, meaning=meaning, override_reason=override_reason,
                               latest_vitals=dict(state.latest), active_alarms=self.active_alarms())
        return self._end(close, actor, meaning, "closed")

    def abort_session(self, token: object, reason: str) -> list[EntryBase]:
        """End the session early with a reason, signed by the user of ``token`` (read-only afterwards)."""
        actor = self.signins.actor(token)
        return self._end(lambda state, t: state.abort(t, actor, reason), actor, f"aborted: {reason}", "aborted")

    def _end(self, action: Callable[[SessionState, datetime], list[EntryBase]], actor: Actor, meaning: str,
             status: str) -> list[EntryBase]:
        p = self.pipeline

        def work() -> list[EntryBase]:
            recorder = self._recorder()
            p.record_device_stats()   # the device's rejected-input counts, before the record closes
            t = self._t(None)
            entries = recorder.record(lambda state: action(state, t))
            p.entries_recorded(entries)
            recorder.end_patient(t, actor.username)   # logged in the closing session (listeners told)
            recorder.finish(t, signed_name=actor.display_name, meaning=meaning, status=status)
            p.recorder = None
            self._expect_patient(None)
            if p.session_profile is not p.profile:
                p.engine.update_profile(p.profile)
                p.session_profile = p.profile
            p.session_changed()
            p._after([], always=True)
            return entries
        return self._call(work)

    def finish_unattended(self, actor: Actor, meaning: str) -> None:
        """End an unattended recording (``vigil record``): the store's session is closed with what was
        recorded and ``meaning`` — no discharge is recorded (nobody reviewed the patient)."""
        p = self.pipeline

        def work() -> None:
            recorder = p.recorder
            if recorder is None:
                return
            p.record_device_stats()
            recorder.finish(self._t(None), signed_name=actor.display_name, meaning=meaning)
            p.recorder = None
            self._expect_patient(None)
            p.session_changed()
        self._call(work)

    # ------------------------------------------------------------------ before dosing
    def record_nibp(self, sys_mmhg: float, dia_mmhg: float, by: Actor, *, mean_mmhg: float | None = None,
                    t: datetime | None = None) -> list[EntryBase]:
        """A blood pressure measured by hand (mmHg): recorded, judged and shown as a reading."""
        return self._record(lambda s, t_: s.record_nibp(t_, sys_mmhg, dia_mmhg, mean=mean_mmhg, source="manual",
                                                         by=by), t)

    def decide_bp(self, decision: Literal["proceed", "defer"], by: Actor, note: str | None = None,
                  t: datetime | None = None) -> list[EntryBase]:
        """The decision on a pre-dose BP advisory."""
        return self._record(lambda s, t_: s.decide_bp(decision, t_, by, note), t)

    def set_baseline(self, values: Mapping[str, float], by: Actor, note: str | None = None,
                     t: datetime | None = None) -> list[EntryBase]:
        """Baseline values entered by hand (vital key → value)."""
        return self._record(lambda s, t_: s.set_baseline(t_, by, values, note), t)

    def record_concomitant(self, medications: Mapping[str, Any], by: Actor,
                           t: datetime | None = None) -> list[EntryBase]:
        """The REMS concomitant-medication answers."""
        return self._record(lambda s, t_: s.record_concomitant(t_, by, medications), t)

    def waive_pre_dose_check(self, by: Actor, reason: str, t: datetime | None = None) -> list[EntryBase]:
        """Dose without the pre-dose checks (unattended recording), with the reason."""
        return self._record(lambda s, t_: s.waive_pre_dose_check(t_, by, reason), t)

    def record_baseline_from_start(self, by: Actor, t: datetime | None = None) -> list[EntryBase]:
        """After a waived start: the baseline from the first minute."""
        return self._record(lambda s, t_: s.record_baseline_from_start(t_, by), t)

    # ------------------------------------------------------------------ dosing
    def start_infusion(self, by: Actor, rate_mg_per_h: float | None = None, *, high_rate_reason: str | None = None,
                       alarm_reason: str | None = None, t: datetime | None = None) -> list[EntryBase]:
        """Start the IV infusion (the plan's rate unless given; far above it needs ``high_rate_reason``;
        during a HIGH physiological alarm it needs ``alarm_reason``, see :meth:`_dosing_start`)."""
        return self._dosing_start(lambda s, t_: s.start_infusion(t_, by, rate_mg_per_h,
                                                                  high_rate_reason=high_rate_reason),
                                  by, alarm_reason, t)

    def _dosing_start(self, action: Callable[[SessionState, datetime], list[EntryBase]], by: Actor,
                      alarm_reason: str | None, t: datetime | None) -> list[EntryBase]:
        """Run ``action`` (starting the infusion, logging a nasal device). When it is the start of
        dosing and a HIGH physiological alarm is active, :class:`DosingDuringAlarm` unless
        ``alarm_reason`` is given; then the start is recorded with a note naming the alarms and the
        reason (a refused start records neither)."""
        def guarded(state: SessionState, t_: datetime) -> list[EntryBase]:
            starting = state.dosing_started_at is None
            high = [a for a in self.pipeline.alarm_state().alarms
                    if a.active and a.kind == "physiological" and a.priority is Priority.HIGH]
            if not starting or not high:
                return action(state, t_)
            lines = tuple(alarm_text(a, self.session_profile) for a in high)
            reason = " ".join((alarm_reason or "").split())
            if not reason:
                raise DosingDuringAlarm(lines)
            entries = action(state, t_)
            return entries + state.record_event(
                {"kind": "note", "text": f"Dosing started during a HIGH alarm ({'; '.join(lines)}): {reason}"}, t_, by)
        return self._record(guarded, t)

    def pause_infusion(self, by: Actor, reason: str, t: datetime | None = None) -> list[EntryBase]:
        """Pause the infusion (reason required)."""
        return self._record(lambda s, t_: s.pause_infusion(t_, by, reason), t)

    def resume_infusion(self, by: Actor, t: datetime | None = None) -> list[EntryBase]:
        """Resume the paused infusion."""
        return self._record(lambda s, t_: s.resume_infusion(t_, by), t)

    def change_rate(self, by: Actor, rate_mg_per_h: float, reason: str, *, high_rate_reason: str | None = None,
                    t: datetime | None = None) -> list[EntryBase]:
        """Change the infusion rate, mg/h (reason required)."""
        return self._record(lambda s, t_: s.change_rate(t_, by, rate_mg_per_h, reason,
                                                         high_rate_reason=high_rate_reason), t)

    def stop_infusion(self, by: Actor, reason: str | None = None, t: datetime | None = None) -> list[EntryBase]:
        """Stop the infusion; recovery starts."""
        return self._record(lambda s, t_: s.stop_infusion(t_, by, reason), t)

    def log_nasal_device(self, by: Actor, t: datetime | None = None, *, alarm_reason: str | None = None) -> list[EntryBase]:
        """Log the next esketamine nasal device (the first during a HIGH physiological alarm needs
        ``alarm_reason``, see :meth:`_dosing_start`)."""
        return self._dosing_start(lambda s, t_: s.log_nasal_device(t_, by), by, alarm_reason, t)

    def end_dosing(self, by: Actor, reason: str, t: datetime | None = None) -> list[EntryBase]:
        """End esketamine dosing before every planned device (reason required)."""
        return self._record(lambda s, t_: s.end_dosing(t_, by, reason), t)

    def sign_clinically_stable(self, token: object, note: str | None = None,
                               t: datetime | None = None) -> list[EntryBase]:
        """A clinician's clinically-stable sign-off, by the user signed in with ``token``."""
        by = self.signins.actor(token)
        return self._record(lambda s, t_: s.sign_clinically_stable(t_, by, note), t)

    # ------------------------------------------------------------------ chart
    def chart(self, assessment: Assessment | Mapping[str, Any], by: Actor, t: datetime | None = None) -> list[EntryBase]:
        """Chart an assessment."""
        return self._record(lambda s, t_: s.chart(assessment, t_, by), t)

    def record_event(self, event: Event | Mapping[str, Any], by: Actor, t: datetime | None = None) -> list[EntryBase]:
        """Record a structured event."""
        return self._record(lambda s, t_: s.record_event(event, t_, by), t)

    def correct(self, seq: int, reason: str, by: Actor, replacement: Any = None,
                t: datetime | None = None) -> list[EntryBase]:
        """Correct an earlier assessment, event or BP reading (with a reason)."""
        return self._record(lambda s, t_: s.correct(seq, reason, t_, by, replacement), t)

    def confirm_escort(self, by: Actor, escort_name: str | None = None, t: datetime | None = None) -> list[EntryBase]:
        """An adult escort is present."""
        return self._record(lambda s, t_: s.confirm_escort(t_, by, escort_name), t)

    # ------------------------------------------------------------------ alarms
    def _alarm_action(self, fn: Callable[[datetime], list[Any]]) -> None:
        p = self.pipeline

        def work() -> None:
            events = fn(self._t(None))
            p._after(events if p.recorder is None else [], always=True)   # a session's events came already
        self._call(work)

    def acknowledge(self, actor: Actor) -> None:
        """Acknowledge the alarms active now (logged with the user)."""
        recorder = self.pipeline.recorder
        self._alarm_action(lambda now: recorder.acknowledge(actor, now) if recorder is not None
                           else self.pipeline.engine.acknowledge(actor.username, now))

    def pause_audio(self, actor: Actor, seconds: float | None = None) -> None:
        """Pause alarm audio (ValueError beyond the clinic's maximum)."""
        recorder = self.pipeline.recorder
        self._alarm_action(lambda now: recorder.pause_audio(actor, now, seconds) if recorder is not None
                           else self.pipeline.engine.pause_audio(actor.username, now, seconds))

    def cancel_audio_pause(self, actor: Actor) -> None:
        """End an audio pause early."""
        recorder = self.pipeline.recorder
        self._alarm_action(lambda now: recorder.cancel_audio_pause(actor, now) if recorder is not None
                           else self.pipeline.engine.cancel_audio_pause(actor.username, now))

    def set_technical(self, code: str, active: bool, text: str = "") -> None:
        """Raise or clear a technical condition of Vigil itself (``audio_unavailable``,
        ``board_unreachable``)."""
        def fn(now: datetime) -> list[Any]:
            recorder = self.pipeline.recorder
            if recorder is not None:
                return recorder.set_technical(code, active, now, text)
            return self.pipeline.engine.set_technical(code, active, now, text)
        self._alarm_action(fn)

    def set_alarm_limits(self, changes: Mapping[str, float], token: object) -> AlarmProfile:
        """Adjust alarm limits for this session, by the user signed in with ``token``, within the
        clinic's bounds and the hard limits (ValueError naming each limit otherwise); the new profile
        is recorded in the session's record (whole, with the changes) and the audit trail."""
        actor = self.signins.actor(token)
        p = self.pipeline

        def work() -> AlarmProfile:
            recorder = p.recorder
            if recorder is None:
                raise ValueError("alarm limits are adjusted for a session: start one first")
            adjusted = p.session_profile.adjusted(dict(changes))
            entries = self._record_profile(self._t(None), actor, adjusted, changes)
            p.engine.update_profile(adjusted)
            p.session_profile = adjusted
            p.writer.put_call(p.store.audit, actor.username, "alarm_limits_changed", recorder.session_id,
                              {"changes": {k: float(v) for k, v in changes.items()}})
            p.entries_recorded(entries)
            p._publish_state()
            return adjusted
        return self._call(work)

    def apply_settings(self, token: object, settings: ClinicSettings, profile: AlarmProfile) -> None:
        """The charge nurse signed in with ``token`` saved clinic settings: latching and the audio
        pause apply at once; the default limits from the next session (at once when none is being
        recorded). A profile past the hard limits is refused (``UnsafeProfileError``)."""
        require_role(self.signins.actor(token), Role.CHARGE_NURSE, "change clinic settings")
        check_profile(profile, "the clinic's default alarm limits")
        p = self.pipeline

        def work() -> None:
            p.settings, p.profile = settings, profile
            engine = p.engine
            engine.latching = settings.alarm_latching
            engine.audio_pause_max_s = settings.audio_pause_max_s
            engine.audio_pause_s = min(settings.audio_pause_s, engine.audio_pause_max_s)
            if p.recorder is None:
                engine.update_profile(profile)
                p.session_profile = profile
            p._publish_state()
        self._call(work)

    def audit(self, user: str | None, action: str, payload: dict[str, Any]) -> None:
        """An audit row about the session being recorded (or the chair), written in order."""
        p = self.pipeline
        p.writer.put_call(p.store.audit, user, action, self.session_id, payload)

    # ------------------------------------------------------------------ the device
    def switch_device(self, device: str | DeviceSpec | Link) -> None:
        """Read another device (a different simulator scenario, another port). Refused while a session
        is being recorded; a bad URL raises ``DeviceUrlError`` and keeps the current device."""
        if isinstance(device, Link):
            self.pipeline.switch_device(device)
            return
        spec = device if isinstance(device, DeviceSpec) else parse_device_url(device)
        self.pipeline.switch_device(open_link(spec), spec.label, spec)


def start_follow_up(state: SessionState, t: datetime, actor: Actor, concomitant: Mapping[str, Any] | None,
                    manual_baseline: Mapping[str, float] | None) -> list[EntryBase]:
    """What the start of a session records after opening it, in order: the concomitant medications,
    a manual pre-dose BP, other manual baseline values."""
    entries: list[EntryBase] = []
    if concomitant:
        entries += state.record_concomitant(t, actor, dict(concomitant))
    values = dict(manual_baseline or {})
    if "nibp_sys" in values or "nibp_dia" in values:
        sys_, dia = values.pop("nibp_sys", None), values.pop("nibp_dia", None)
        if sys_ is None or dia is None:
            raise SessionError("A manual pre-dose BP needs both the systolic and the diastolic pressure")
        entries += state.record_nibp(t, sys_, dia, source="manual", by=actor)
    if values:
        entries += state.set_baseline(t, actor, values)
    return entries
