"""The session aggregate: one patient's monitored treatment from baseline to discharge.

:class:`SessionState` is built incrementally by the nurse's actions (each method returns the new
entries, plain JSON-ready dicts, for the store to append) and is rebuilt after a crash by replaying
those entries (:meth:`SessionState.from_entries`), which runs the same checks as the original
actions. The record is append-only: a mistake is corrected by a new ``correction`` entry that
refers to the old one with a reason (21 CFR 11.10(e) style); closed sessions are read-only.

Phases (:class:`Phase`)::

    baseline ──▶ infusion ──▶ recovery ──▶ discharged
        └────────────┴────────────┴──────▶ aborted

"infusion" is the dosing phase of either protocol (IV infusion running or paused; esketamine
devices being taken). The phase follows the record: starting the infusion or logging the first
nasal device enters *infusion*; stopping the infusion, logging the last planned device or ending
dosing early enters *recovery*; closing with sign-off enters *discharged*; :meth:`SessionState.abort`
enters *aborted*.

Entries are the typed models of :mod:`monitor.session.record`, the record's one schema (envelope,
entry types, version); :attr:`SessionState._HANDLERS` says how each type changes the session.

Continuous vitals are not entries (the store keeps numerics); :meth:`SessionState.observe` uses them
for the pre-dose baseline window and turns device NIBP readings into ``nibp`` entries. After a
crash in the baseline phase, re-feed the last 2 minutes of stored numerics to ``observe``.
"""

from __future__ import annotations

import re
from collections import deque
from datetime import date, datetime, timedelta
from typing import Any, Callable, ClassVar, Iterable, Literal, Mapping, TypeVar


from drivers.catalogue import CATALOGUE, VITAL_KEYS
from drivers.model import NumericObservation
from monitor.alarms.profile import profile_fingerprint
from monitor.assessments import Assessment, Event, parse_assessment, parse_event
from monitor.patient import Patient
from monitor.protocols import (
    CLINICALLY_STABLE_MEANING,
    EsketaminePlan,
    InfusionLog,
    InfusionStep,
    KetamineIVPlan,
    NasalDeviceLog,
    ProtocolKind,
)
from monitor.session.discharge import DischargeCheck, discharge_check, post_dose_bp
from monitor.session.phases import (
    Phase,
    SessionError,
    check_transition,
    clean_text,
)
from monitor.session.readings import (
    Baseline,
    BpAdvisory,
    BpDecision,
    Charted,
    ChartedEvent,
    NibpReading,
    compute_baseline,
    pre_dose_bp,
)
from monitor.session.record import (
    AlarmLimitsEntry, AssessmentEntry, BaselineEntry, BpDecisionEntry, ClinicallyStableEntry, ClockJumpEntry,
    ConcomitantMedications, Correction, DeviceStatsEntry, DosingEnded, EntryBase, EntryType, EscortEntry, EventEntry,
    InfusionStepEntry, NasalDeviceEntry, NibpEntry, PreDoseWaiver, RecordError, SessionAborted, SessionClosed,
    SessionOpened, parse_entry,
)
from monitor.settings import ClinicSettings
from monitor.staff import (
    Actor,
    RefusedAction,
    Role,
    Signature,
    clock,
    ensure_utc,
    require_role,
)

__all__ = ["SessionState", "CLOSE_MEANING", "CONCOMITANT_KEYS"]

#: The meaning recorded with the closing signature.
CLOSE_MEANING = "reviewed and closed"
#: The concomitant-medication questions of the esketamine REMS monitoring form.
CONCOMITANT_KEYS = ("benzodiazepines", "non_benzodiazepine_hypnotics", "psychostimulants", "maois")
_KEEP_WINDOW = timedelta(minutes=10)
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_E = TypeVar("_E", bound=EntryBase)


def _numbered(entry: EntryBase) -> int:
    """The entry's number; every entry a handler applies has one (:meth:`SessionState._commit`
    checks it first; late entries, which have none, are replayed apart)."""
    if entry.seq is None:
        raise SessionError(f"A {entry.entry_type.value} entry without its number cannot be applied")
    return entry.seq

class SessionState:
    """One session: patient, protocol, plan, dosing log, readings, baseline, chart, sign-offs, phase.

    Create with :meth:`open`; rebuild with :meth:`from_entries`. Each action method validates,
    appends its entries to :attr:`entries` and returns them (store them in order). A refused action
    raises :class:`SessionError` (or another ``RefusedAction``/``ValidationError``) and changes
    nothing. All times are aware UTC datetimes passed in; entry times may not precede the opening.
    """

    def __init__(self) -> None:  # use open() / from_entries()
        self.entries: list[EntryBase] = []
        self.session_id = ""
        self.protocol = ProtocolKind.KETAMINE_IV
        self.patient: Patient
        self.plan: KetamineIVPlan | EsketaminePlan
        self.settings: ClinicSettings
        self.opened_at: datetime
        self.opened_by: Actor
        self.local_date: date
        self.age_years: int | None = None
        self.infusion: InfusionLog | None = None
        self.devices: NasalDeviceLog | None = None
        self.phase = Phase.BASELINE
        self.nibp_readings: list[NibpReading] = []
        self.bp_decisions: list[BpDecision] = []
        self._baseline_values: dict[str, float] = {}
        self._baseline_methods: dict[str, str] = {}
        self._baseline_t: datetime | None = None
        self._baseline_manual_keys: set[str] = set()
        self._manual_bp: tuple[float, float, datetime, str] | None = None
        self._assessments: dict[int, Charted] = {}
        self._events: dict[int, ChartedEvent] = {}
        self.late_events: list[ChartedEvent] = []  # charted after the session ended (negative seq)
        self._nibp_by_seq: dict[int, NibpReading] = {}
        self._retracted: set[int] = set()
        self.corrections: list[dict[str, Any]] = []
        self.dosing_ended_early: tuple[datetime, Actor, str] | None = None
        self.escort: tuple[datetime, Actor, str | None] | None = None
        self.closed: Signature | None = None
        self.closed_check: dict[str, Any] | None = None
        self.override_reason: str | None = None
        self.aborted: tuple[datetime, Actor, str] | None = None
        self._window: dict[str, deque[tuple[datetime, float]]] = {}
        self._pending_nibp: dict[tuple[str, datetime], dict[str, float]] = {}
        self.latest: dict[str, NumericObservation] = {}
        self.pre_dose_waiver: tuple[datetime, Actor, str] | None = None
        self.concomitant: dict[str, bool] | None = None
        self.concomitant_other: str | None = None
        #: The alarm profiles recorded for the session, oldest first (the last one is in force).
        self.alarm_limits: list[AlarmLimitsEntry] = []
        self._baseline_pending = False

    # ------------------------------------------------------------------ creation and replay

    @classmethod
    def open(cls, *, session_id: str, patient: Patient, plan: KetamineIVPlan | EsketaminePlan,
             t: datetime, by: Actor, settings: ClinicSettings) -> "SessionState":
        """Open a session at ``t``. The patient's age on the local date of ``t`` (recorded in the entry,
        so a replay elsewhere gives the same answer) must be at least the clinic minimum; an IV plan's
        weight must equal the patient's; the plan must respect the clinic's dose bounds / esketamine
        monitoring minimum. The opening entry (with a copy of the settings in force) is
        ``state.entries[0]``."""
        state = cls()
        t = ensure_utc(t, "opening time")
        state._commit(SessionOpened(
            seq=1, t=t, by=by, session_id=session_id, local_date=t.astimezone().date().isoformat(),
            protocol=plan.to_payload()["protocol"], patient=patient.to_payload(), plan=plan.to_payload(),
            settings=settings.to_payload()))
        return state

    @classmethod
    def from_entries(cls, entries: Iterable[EntryBase | Mapping[str, Any]]) -> "SessionState":
        """Rebuild a session by replaying its entries in order — entry models or stored payloads
        (:func:`~monitor.session.record.parse_entry`) — with the same checks as the live actions; a
        damaged or reordered record raises ``RefusedAction`` naming the entry. Late entries (events
        charted after the session ended: ``late`` and no ``seq``, see
        ``monitor.app.review.add_late_entry``) come last and join :meth:`events` (listed in
        :attr:`late_events` too)."""
        state = cls()
        for item in entries:
            seq = item.seq if isinstance(item, EntryBase) else item.get("seq")
            kind = getattr(item, "type", None) if isinstance(item, EntryBase) else item.get("type")
            kind = getattr(kind, "value", kind)
            try:
                if isinstance(item, Mapping) and item.get("late") is True and "seq" not in item \
                        and kind != EntryType.EVENT.value:
                    raise SessionError(f"A late entry is an event, not {kind!r}")
                entry = parse_entry(item)
                if isinstance(entry, EventEntry) and entry.late and entry.seq is None:
                    state._apply_late(entry)
                    continue
                if state.late_events:
                    raise SessionError("Only late entries may follow a late entry")
                state._commit(entry)
            except RecordError:
                raise
            except RefusedAction as exc:
                raise SessionError(f"Entry {seq} ({kind}) cannot be replayed: {exc}") from exc
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise SessionError(f"Entry {seq} ({kind}) is damaged: {type(exc).__name__} {exc}") from exc
        if not state.entries:
            raise SessionError("No entries: a session starts with its session_opened entry")
        return state

    def _apply_late(self, entry: EventEntry) -> None:
        """Replay a late entry: an event at clinical time ``t`` (not before the opening), by a user."""
        if not self.entries:
            raise SessionError("A session starts with its session_opened entry")
        if entry.t < self.opened_at:
            raise SessionError(f"Time {clock(entry.t)} is before the session was opened at {clock(self.opened_at)}")
        key = -(len(self.late_events) + 1)
        charted = ChartedEvent(seq=key, t=entry.t, by=self._need_by(entry.by), event=parse_event(entry.event))
        self._events[key] = charted
        self.late_events.append(charted)

    def _envelope(self, model: type[_E], t: datetime, by: Actor | None, **body: Any) -> _E:
        return model(seq=len(self.entries) + 1, t=ensure_utc(t), by=by, **body)

    def _commit(self, entry: EntryBase) -> list[EntryBase]:
        expected = len(self.entries) + 1
        if entry.seq != expected:
            raise SessionError(f"Entry number {entry.seq} is out of order: expected {expected}")
        kind = entry.entry_type
        if kind is not EntryType.SESSION_OPENED:
            if not self.entries:
                raise SessionError("A session starts with its session_opened entry")
            if self.phase.terminal:
                raise SessionError(f"This session is {self.phase.label}: it is read-only")
            if entry.t < self.opened_at:
                raise SessionError(f"Time {clock(entry.t)} is before the session was opened at {clock(self.opened_at)}")
        self._HANDLERS[kind](self, entry, entry.t, entry.by)
        self.entries.append(entry)
        return [entry]

    def _need_by(self, by: Actor | None) -> Actor:
        if by is None:
            raise SessionError("This entry must record the acting user")
        return by

    # ------------------------------------------------------------------ derived views

    @property
    def baseline(self) -> Baseline | None:
        """The baseline in force (computed at dosing, with manual entries overriding), or None."""
        if not self._baseline_values or self._baseline_t is None:
            return None
        return Baseline(values=dict(self._baseline_values), methods=dict(self._baseline_methods), t=self._baseline_t)

    @property
    def baseline_bp_manual(self) -> tuple[float, float] | None:
        """A manually entered baseline BP (systolic, diastolic), if any."""
        return None if self._manual_bp is None else (self._manual_bp[0], self._manual_bp[1])

    @property
    def dosing_started_at(self) -> datetime | None:
        """Infusion start or first nasal device."""
        if self.infusion is not None:
            return self.infusion.started_at
        return self.devices.first_device_at if self.devices else None

    @property
    def dosing_ended_at(self) -> datetime | None:
        """Infusion stop, last planned device, or the early end of esketamine dosing."""
        if self.infusion is not None:
            return self.infusion.ended_at
        if self.devices is not None:
            if self.devices.complete:
                return self.devices.last_device_at
            if self.dosing_ended_early:
                return self.dosing_ended_early[0]
        return None

    @property
    def discharge_earliest(self) -> datetime | None:
        """Earliest discharge time by the time rule: IV infusion end + the clinic minimum (60 min);
        esketamine first device + monitoring minutes (≥ 120; a sign-off never shortens it)."""
        if self.infusion is not None:
            end = self.infusion.ended_at
            return None if end is None else end + timedelta(minutes=self.settings.discharge_min_after_infusion_min)
        if self.devices is not None:
            return self.devices.monitoring_end_earliest
        return None

    @property
    def closed_at(self) -> datetime | None:
        """When the session was closed or aborted."""
        if self.closed is not None:
            return self.closed.t
        return self.aborted[0] if self.aborted else None

    def charted(self, kind: str | None = None) -> list[Charted]:
        """Assessments in force (corrections applied), in clinical-time order; ``kind`` filters."""
        items = [c for seq, c in self._assessments.items() if seq not in self._retracted]
        if kind is not None:
            items = [c for c in items if c.assessment.kind == kind]
        return sorted(items, key=lambda c: (c.t, c.seq))

    def events(self, kind: str | None = None) -> list[ChartedEvent]:
        """Events in force (corrections applied), in clinical-time order; ``kind`` filters."""
        items = [e for seq, e in self._events.items() if seq not in self._retracted]
        if kind is not None:
            items = [e for e in items if e.event.kind == kind]
        return sorted(items, key=lambda e: (e.t, e.seq))

    def pre_dose_bp(self, before: datetime | None = None) -> tuple[float, float, datetime, str] | None:
        """The pre-dose BP ``(systolic, diastolic, time, how)``: a manual baseline BP, else
        :func:`pre_dose_bp` of the readings before dosing (or before ``before`` while in baseline)."""
        if self._manual_bp is not None:
            return self._manual_bp
        return pre_dose_bp(self.nibp_readings, self.dosing_started_at or before)

    def bp_advisory_pending(self) -> BpAdvisory | None:
        """In baseline: the advisory when the pre-dose BP is above the clinic threshold (140/90) and no
        decision has been recorded since that BP was taken; else None."""
        if self.phase is not Phase.BASELINE:
            return None
        advisory = self._advisory()
        if advisory is None:
            return None
        if any(d.t >= advisory.t for d in self.bp_decisions):
            return None
        return advisory

    def _advisory(self, before: datetime | None = None) -> BpAdvisory | None:
        bp = self.pre_dose_bp(before)
        s = self.settings
        if bp is None or not (bp[0] > s.pre_dose_bp_advisory_sys_mmhg or bp[1] > s.pre_dose_bp_advisory_dia_mmhg):
            return None
        return BpAdvisory(t=bp[2], sys=bp[0], dia=bp[1], limit_sys=s.pre_dose_bp_advisory_sys_mmhg,
                          limit_dia=s.pre_dose_bp_advisory_dia_mmhg)

    def _waived(self, t: datetime) -> bool:
        return self.pre_dose_waiver is not None and self.pre_dose_waiver[0] <= t

    def _check_can_dose(self, t: datetime) -> None:
        check_transition(self.phase, Phase.INFUSION)
        if self._waived(t):
            return
        bp = self.pre_dose_bp(t)
        if bp is None:
            raise SessionError("Record a pre-dose blood pressure before dosing")
        advisory = self._advisory(t)
        if advisory is not None:
            decisions = [d for d in self.bp_decisions if d.t >= advisory.t and d.t <= t]
            if not decisions:
                raise SessionError(advisory.text() + " before dosing")
            if decisions[-1].decision == "defer":
                raise SessionError(f"The decision on pre-dose BP {advisory.sys:.0f}/{advisory.dia:.0f} was to defer: "
                                   "measure again, record a decision to proceed, or end the session")

    # ------------------------------------------------------------------ vitals

    def observe(self, observations: Iterable[Any]) -> list[EntryBase]:
        """Take a batch of device items (anything else than ``NumericObservation`` is ignored).

        Keeps the latest value of each vital, keeps the pre-dose window of continuous vitals while in
        baseline, and pairs ``nibp_sys``/``nibp_dia`` (plus ``nibp_mean``) with the same sample time
        and source into ``nibp`` entries, which are returned for the store. Missing values and
        flagged observations (artifact, implausible, sensor off …) are ignored. Nothing happens
        once the session is closed.
        """
        if self.phase.terminal:
            return []
        new: list[EntryBase] = []
        for obs in observations:
            if not isinstance(obs, NumericObservation) or obs.value is None or obs.flagged:
                continue
            self.latest[obs.vital] = obs
            if obs.vital.startswith("nibp_"):
                self._pending_nibp.setdefault((obs.source, obs.sample_time), {})[obs.vital] = obs.value
                continue
            if self.phase is Phase.BASELINE or self._baseline_pending:
                window = self._window.setdefault(obs.vital, deque())
                window.append((obs.sample_time, obs.value))
                while window and window[0][0] < obs.sample_time - _KEEP_WINDOW:
                    window.popleft()
        for key in sorted(self._pending_nibp, key=lambda k: k[1]):
            parts = self._pending_nibp[key]
            if "nibp_sys" in parts and "nibp_dia" in parts:
                del self._pending_nibp[key]
                try:
                    new += self.record_nibp(key[1], parts["nibp_sys"], parts["nibp_dia"],
                                            mean=parts.get("nibp_mean"), source="device")
                except RefusedAction:
                    continue  # e.g. before the session opened or inconsistent values: not a reading
        return new

    def record_nibp(self, t: datetime, sys: float, dia: float, *, mean: float | None = None,
                    source: Literal["device", "manual"] = "manual", by: Actor | None = None) -> list[EntryBase]:
        """Record a NIBP reading (mmHg). Manual readings need ``by``. Refused values raise
        ``ValidationError`` ("Systolic BP 320 mmHg is outside 30–300 mmHg")."""
        NibpReading(t=ensure_utc(t), sys=sys, dia=dia, mean=mean, source=source, by=by)  # validate first
        entry = self._envelope(NibpEntry, t, by, sys=float(sys), dia=float(dia),
                               mean=None if mean is None else float(mean), source=source)
        return self._commit(entry)

    def record_clock_jump(self, t: datetime, offset_before_s: float, offset_after_s: float) -> list[EntryBase]:
        """Record that the computer's wall clock jumped (see :class:`ClockJumpEntry`; by Vigil)."""
        entry = self._envelope(ClockJumpEntry, t, None, offset_before_s=round(float(offset_before_s), 3),
                               offset_after_s=round(float(offset_after_s), 3))
        return self._commit(entry)

    def record_device_stats(self, t: datetime, source: str, counts: Mapping[str, int]) -> list[EntryBase]:
        """Record the device decoder's counts since the session started (see :class:`DeviceStatsEntry`;
        by Vigil). ``counts``: bytes_in, frames_decoded, frames_rejected, bytes_skipped, decoder_errors
        (others ignored; a negative count is refused)."""
        fields = ("bytes_in", "frames_decoded", "frames_rejected", "bytes_skipped", "decoder_errors")
        entry = self._envelope(DeviceStatsEntry, t, None, source=clean_text(source, 200, "Source", required=True),
                               **{k: int(counts.get(k, 0)) for k in fields})
        return self._commit(entry)

    def set_baseline(self, t: datetime, by: Actor, values: Mapping[str, float], note: str | None = None) -> list[EntryBase]:
        """Enter baseline values by hand (vital key → value in catalogue units); they override the
        computed ones and record the user. Unknown keys and implausible values are refused."""
        entry = self._envelope(BaselineEntry, t, by, values={k: v for k, v in values.items()}, manual=True,
                               note=clean_text(note, 200, "Note", required=False))
        return self._commit(entry)

    def decide_bp(self, decision: Literal["proceed", "defer"], t: datetime, by: Actor,
                  note: str | None = None) -> list[EntryBase]:
        """Record the decision on a pre-dose BP advisory (proceed or defer) with the user."""
        entry = self._envelope(BpDecisionEntry, t, by, decision=decision, note=clean_text(note, 500, "Note", required=False))
        return self._commit(entry)

    # ------------------------------------------------------------------ dosing

    def _baseline_entries(self, t: datetime, by: Actor) -> list[EntryBase]:
        computed = compute_baseline({k: list(v) for k, v in self._window.items()}, self.nibp_readings, t)
        values = {k: v for k, v in computed.values.items() if k not in self._baseline_manual_keys}
        methods = {k: v for k, v in computed.methods.items() if k not in self._baseline_manual_keys}
        entry = self._envelope(BaselineEntry, t, by, values=values, methods=methods, manual=False)
        return self._commit(entry)

    def start_infusion(self, t: datetime, by: Actor, rate_mg_per_h: float | None = None,
                       high_rate_reason: str | None = None) -> list[EntryBase]:
        """Start the IV infusion (plan rate unless given): needs a pre-dose BP and, when it is above
        the advisory threshold, a decision to proceed. A rate above 1.5 × the plan's needs
        ``high_rate_reason`` (``RateNeedsConfirmation`` otherwise); above the clinic's maximum it
        is refused. Records the computed baseline first."""
        log = self._need_infusion()
        t = ensure_utc(t, "start time")
        self._check_can_dose(t)
        rate = log.plan.rate_mg_per_h if rate_mg_per_h is None else rate_mg_per_h
        step = log.make_step("start", t, by, rate=rate, high_rate_reason=high_rate_reason)  # before the baseline
        new = [] if self._waived(t) else self._baseline_entries(t, by)
        return new + self._commit(parse_entry({"seq": len(self.entries) + 1, **step.to_payload()}))

    def pause_infusion(self, t: datetime, by: Actor, reason: str) -> list[EntryBase]:
        """Pause the infusion (reason required)."""
        return self._infusion_step("pause", t, by, reason=reason)

    def resume_infusion(self, t: datetime, by: Actor) -> list[EntryBase]:
        """Resume the paused infusion."""
        return self._infusion_step("resume", t, by)

    def change_rate(self, t: datetime, by: Actor, new_rate_mg_per_h: float, reason: str,
                    high_rate_reason: str | None = None) -> list[EntryBase]:
        """Change the infusion rate, mg/h (reason required; above 1.5 × the plan's rate also
        ``high_rate_reason``, see :meth:`start_infusion`)."""
        return self._infusion_step("rate_change", t, by, rate=new_rate_mg_per_h, reason=reason,
                                   high_rate_reason=high_rate_reason)

    def stop_infusion(self, t: datetime, by: Actor, reason: str | None = None) -> list[EntryBase]:
        """Stop the infusion; the session enters recovery."""
        return self._infusion_step("stop", t, by, reason=reason)

    def _infusion_step(self, action: str, t: datetime, by: Actor, *, rate: float | None = None,
                       reason: str | None = None, high_rate_reason: str | None = None) -> list[EntryBase]:
        log = self._need_infusion()
        self._check_infusion_phase()
        step = log.make_step(action, t, by, rate=rate, reason=reason, high_rate_reason=high_rate_reason)
        return self._commit(parse_entry({"seq": len(self.entries) + 1, **step.to_payload()}))

    def _check_infusion_phase(self) -> None:
        if self.phase is Phase.BASELINE:
            raise SessionError("The infusion has not been started yet")
        if self.phase is not Phase.INFUSION:
            raise SessionError(f"The infusion was stopped: the session is in {self.phase.label}")

    def _need_infusion(self) -> InfusionLog:
        if self.infusion is None:
            raise SessionError("This is an esketamine session: there is no infusion")
        return self.infusion

    def _need_devices(self) -> NasalDeviceLog:
        if self.devices is None:
            raise SessionError("This is an IV ketamine session: there are no nasal devices")
        return self.devices

    def log_nasal_device(self, t: datetime, by: Actor) -> list[EntryBase]:
        """Log the next esketamine device. The first needs a pre-dose BP (and a proceed decision when it
        is above the threshold) and records the baseline; the last planned one enters recovery."""
        devices = self._need_devices()
        t = ensure_utc(t, "device time")
        new: list[EntryBase] = []
        if devices.devices_logged == 0:
            self._check_can_dose(t)
        elif self.phase is not Phase.INFUSION:
            raise SessionError(f"The session is in {self.phase.label}: no more devices can be logged")
        entry = devices.next_entry(t, by)  # checked before the baseline is written
        if devices.devices_logged == 0:
            new = [] if self._waived(t) else self._baseline_entries(t, by)
        return new + self._commit(parse_entry({"seq": len(self.entries) + 1, **entry.to_payload()}))

    def end_dosing(self, t: datetime, by: Actor, reason: str) -> list[EntryBase]:
        """End esketamine dosing before all planned devices were taken (reason required); recovery follows."""
        entry = self._envelope(DosingEnded, t, by, reason=clean_text(reason, 200, "Reason", required=True))
        return self._commit(entry)

    def waive_pre_dose_check(self, t: datetime, by: Actor, reason: str) -> list[EntryBase]:
        """Record that dosing starts without the pre-dose checks (no pre-dose BP, no advisory
        decision), with the reason and the user — for unattended recording (``vigil record``), where
        the baseline is then taken from the first minute after the start
        (:meth:`record_baseline_from_start`). Only before dosing."""
        entry = self._envelope(PreDoseWaiver, t, by, reason=clean_text(reason, 300, "Reason", required=True))
        return self._commit(entry)

    def record_baseline_from_start(self, t: datetime, by: Actor, window_s: float = 60.0) -> list[EntryBase]:
        """After a waived start: the computed baseline from the readings of the ``window_s`` seconds
        up to ``t`` (the median of each continuous vital; the latest NIBP reading)."""
        if not self._baseline_pending:
            raise SessionError("A baseline from the start is only recorded after a waived pre-dose check")
        computed = compute_baseline({k: list(v) for k, v in self._window.items()}, self.nibp_readings, t,
                                    window_s=window_s)
        methods = {k: v.replace("before dosing", "after the start of recording") for k, v in computed.methods.items()}
        entry = self._envelope(BaselineEntry, t, by, values=dict(computed.values), methods=methods, manual=False)
        return self._commit(entry)

    def sign_clinically_stable(self, t: datetime, by: Actor, note: str | None = None) -> list[EntryBase]:
        """Record a clinician's clinically-stable sign-off (esketamine: discharge before 120 min)."""
        self._need_devices()
        sig = Signature(by=by, t=ensure_utc(t, "sign-off time"), meaning=CLINICALLY_STABLE_MEANING, note=note)
        return self._commit(parse_entry({"seq": len(self.entries) + 1, **NasalDeviceLog.signoff_payload(sig)}))

    # ------------------------------------------------------------------ chart

    def chart(self, assessment: Assessment | Mapping[str, Any], t: datetime, by: Actor) -> list[EntryBase]:
        """Chart an assessment (model or payload) at clinical time ``t``."""
        payload = assessment.to_payload() if isinstance(assessment, Assessment) else parse_assessment(assessment).to_payload()
        return self._commit(self._envelope(AssessmentEntry, t, by, assessment=payload))

    def record_event(self, event: Event | Mapping[str, Any], t: datetime, by: Actor) -> list[EntryBase]:
        """Record a structured event (model or payload) at clinical time ``t``."""
        payload = event.to_payload() if isinstance(event, Event) else parse_event(event).to_payload()
        return self._commit(self._envelope(EventEntry, t, by, event=payload))

    def record_concomitant(self, t: datetime, by: Actor, medications: Mapping[str, Any]) -> list[EntryBase]:
        """Record the patient's concomitant medications (the REMS form's questions):
        ``benzodiazepines``, ``non_benzodiazepine_hypnotics``, ``psychostimulants``, ``maois`` as
        booleans, and optional ``other`` free text (≤ 300 characters). A later entry replaces it."""
        flags = {}
        for key in CONCOMITANT_KEYS:
            value = medications.get(key, False)
            if not isinstance(value, bool):
                raise SessionError(f"Concomitant {key.replace('_', ' ')} must be yes or no")
            flags[key] = value
        unknown = set(medications) - set(CONCOMITANT_KEYS) - {"other"}
        if unknown:
            raise SessionError(f"Unknown concomitant medication field {sorted(unknown)[0]!r}")
        entry = self._envelope(ConcomitantMedications, t, by, medications=flags,
                               other=clean_text(medications.get("other"), 300, "Other medications", required=False))
        return self._commit(entry)

    def correct(self, seq: int, reason: str, t: datetime, by: Actor,
                replacement: Assessment | Event | Mapping[str, Any] | None = None) -> list[EntryBase]:
        """Correct an earlier assessment, event or BP reading (device or manual, e.g. a movement
        artefact): the old entry stays in the record and is marked entered-in-error by a
        ``correction`` entry with ``reason``; ``replacement`` (same kind of record; for a BP a dict
        with ``sys``/``dia`` recorded as a manual reading by the corrector) takes its place at the
        original clinical time. ``t`` is when the correction is made."""
        body: dict[str, Any] = {"refers_to": seq, "reason": clean_text(reason, 200, "Reason", required=True)}
        if replacement is not None:
            if isinstance(replacement, (Assessment, Event)):
                body["replacement"] = replacement.to_payload()
            else:
                body["replacement"] = dict(replacement)
        return self._commit(self._envelope(Correction, t, by, **body))

    def confirm_escort(self, t: datetime, by: Actor, escort_name: str | None = None) -> list[EntryBase]:
        """Record that an adult escort is present to take the patient home."""
        return self._commit(self._envelope(EscortEntry, t, by, escort_name=clean_text(escort_name, 80, "Escort name", required=False)))

    def record_alarm_limits(self, t: datetime, by: Actor, profile: Mapping[str, Any], *,
                            source: Literal["clinic default", "changed at the chair"],
                            changes: Mapping[str, float] | None = None) -> list[EntryBase]:
        """Record the alarm profile in force (``profile``: its JSON payload, from
        ``AlarmProfile.to_payload``) with its fingerprint; ``source`` says whether it is the clinic's
        default or was changed at the chair (``changes``: what this change set). Refused on a closed
        session; a payload that is not a profile raises ``RefusedAction``."""
        payload = dict(profile)
        try:
            sha256 = profile_fingerprint(payload)
        except KeyError:
            raise RefusedAction("The alarm profile to record has no rules") from None
        return self._commit(self._envelope(AlarmLimitsEntry, t, self._need_by(by), source=source, sha256=sha256,
                                           profile=payload,
                                           changes={k: float(v) for k, v in changes.items()} if changes else None))

    # ------------------------------------------------------------------ ending

    def discharge_check(self, now: datetime, latest_vitals: Mapping[str, Any] | None = None,
                        active_alarms: Iterable[tuple[str, str, str]] | None = None) -> DischargeCheck:
        """:func:`discharge_check` for this session (``latest_vitals`` defaults to :attr:`latest`)."""
        return discharge_check(self, now, self.latest if latest_vitals is None else latest_vitals, active_alarms)

    def post_dose_bp(self, now: datetime) -> tuple[float, float, datetime] | None:
        """:func:`post_dose_bp` for this session: the BP that discharge and the Aldrete suggestion use."""
        return post_dose_bp(self, ensure_utc(now), self.latest)

    def close(self, t: datetime, by: Actor, *, latest_vitals: Mapping[str, Any] | None = None,
              meaning: str = CLOSE_MEANING, override_reason: str | None = None,
              active_alarms: Iterable[tuple[str, str, str]] | None = None) -> list[EntryBase]:
        """Discharge and close with a signature (printed name from ``by``, time ``t``, ``meaning``).

        Refused unless in recovery and every discharge criterion is met; a charge nurse may close
        with unmet criteria by giving ``override_reason`` (recorded), except a *hard* criterion (the
        esketamine monitoring period), which nobody can waive. ``active_alarms`` (see
        :func:`discharge_check`) makes an active HIGH/MEDIUM physiological alarm block discharge.
        The session becomes read-only.
        """
        check_transition(self.phase, Phase.DISCHARGED)
        check = self.discharge_check(ensure_utc(t), latest_vitals, active_alarms)
        entry = self._envelope(SessionClosed, t, by, meaning=meaning, printed_name=by.display_name,
                               discharge=check.to_payload(),
                               override_reason=clean_text(override_reason, 300, "Override reason", required=False))
        return self._commit(entry)

    def abort(self, t: datetime, by: Actor, reason: str) -> list[EntryBase]:
        """End the session without discharge (deferred treatment, transfer of care …; reason required).
        Refused while the infusion is running or paused: stop it first."""
        entry = self._envelope(SessionAborted, t, by, reason=clean_text(reason, 300, "Reason", required=True))
        return self._commit(entry)

    # ------------------------------------------------------------------ entry handlers (also replay)

    def _apply_session_opened(self, entry: SessionOpened, t: datetime, by: Actor | None) -> None:
        if self.entries:
            raise SessionError("The session is already open")
        by = self._need_by(by)
        session_id = str(entry.session_id)
        if not _SESSION_ID.match(session_id):
            raise SessionError(f"Session id {session_id!r} should be 1–64 letters, digits, '-' or '_'")
        settings = ClinicSettings.from_payload(entry.settings)
        patient = Patient.from_payload(entry.patient)
        local_date = date.fromisoformat(entry.local_date) if entry.local_date else t.astimezone().date()
        if abs((local_date - t.date()).days) > 1:
            raise SessionError(f"Local date {local_date.isoformat()} does not match the opening time {t.isoformat()}")
        self.age_years = patient.check_age(local_date, settings.min_patient_age_years)
        self.local_date = local_date
        protocol = ProtocolKind(entry.protocol)
        plan: KetamineIVPlan | EsketaminePlan
        if protocol is ProtocolKind.KETAMINE_IV:
            plan = iv = KetamineIVPlan.from_payload(entry.plan)
            low, high = settings.ketamine_dose_bounds_mg_per_kg
            if not low <= iv.dose_mg_per_kg <= high:
                raise SessionError(f"Dose {iv.dose_mg_per_kg:g} mg/kg is outside this clinic's {low:g}–{high:g} mg/kg")
            if abs(iv.weight_kg - patient.weight_kg) > 1e-9:
                raise SessionError(f"The plan's weight {iv.weight_kg:g} kg differs from the patient's "
                                   f"{patient.weight_kg:g} kg")
            self.infusion = InfusionLog(iv)
        else:
            plan = nasal = EsketaminePlan.from_payload(entry.plan)
            if nasal.monitoring_min < settings.esketamine_monitoring_min:
                raise SessionError(f"Monitoring of {nasal.monitoring_min} min is shorter than this clinic's "
                                   f"{settings.esketamine_monitoring_min} min")
            self.devices = NasalDeviceLog(nasal)
        self.session_id, self.protocol, self.patient, self.plan, self.settings = session_id, protocol, patient, plan, settings
        self.opened_at, self.opened_by, self.phase = t, by, Phase.BASELINE

    def _apply_nibp(self, entry: NibpEntry, t: datetime, by: Actor | None) -> None:
        seq = _numbered(entry)
        reading = NibpReading(t=t, sys=entry.sys, dia=entry.dia, mean=entry.mean,
                              source=entry.source, by=by, seq=seq)
        self.nibp_readings.append(reading)
        self.nibp_readings.sort(key=lambda r: (r.t, r.seq or 0))
        self._nibp_by_seq[seq] = reading

    def _apply_baseline(self, entry: BaselineEntry, t: datetime, by: Actor | None) -> None:
        by = self._need_by(by)
        values = entry.values or {}
        if not isinstance(values, Mapping):
            raise SessionError("Baseline values must map vital keys to numbers")
        clean: dict[str, float] = {}
        for key, value in values.items():
            if key not in VITAL_KEYS:
                raise SessionError(f"Unknown vital {key!r} in the baseline; known: {', '.join(VITAL_KEYS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SessionError(f"Baseline {CATALOGUE[key].label} {value!r} is not a number")
            spec = CATALOGUE[key]
            if not spec.is_plausible(float(value)):
                low, high = spec.plausible
                raise SessionError(f"Baseline {spec.label} {value:g} {spec.unit} is outside {low:g}–{high:g} {spec.unit}")
            clean[key] = float(value)
        if "nibp_sys" in clean and "nibp_dia" in clean and clean["nibp_sys"] <= clean["nibp_dia"]:
            raise SessionError("Baseline systolic BP must be above diastolic")
        manual = bool(entry.manual)
        if manual:
            if not clean:
                raise SessionError("Enter at least one baseline value")
            if ("nibp_sys" in clean) != ("nibp_dia" in clean):
                raise SessionError("Enter both systolic and diastolic for a baseline BP")
            for key in clean:
                self._baseline_methods[key] = f"entered by {by.display_name} at {clock(t)}"
            self._baseline_manual_keys |= set(clean)
            if "nibp_sys" in clean and self.phase is Phase.BASELINE:
                self._manual_bp = (clean["nibp_sys"], clean["nibp_dia"], t, self._baseline_methods["nibp_sys"])
        else:
            if self.phase is not Phase.BASELINE and not self._baseline_pending:
                raise SessionError("The computed baseline is recorded when dosing starts")
            if self.phase is not Phase.BASELINE:
                self._baseline_pending = False
                self._window.clear()
            methods = entry.methods or {}
            for key in clean:
                self._baseline_methods[key] = str(methods.get(key, "computed"))
        self._baseline_values.update(clean)
        if self._baseline_t is None or not manual:
            self._baseline_t = t

    def _apply_bp_decision(self, entry: BpDecisionEntry, t: datetime, by: Actor | None) -> None:
        by = self._need_by(by)
        if self.phase is not Phase.BASELINE:
            raise SessionError("A pre-dose BP decision can only be recorded before dosing")
        advisory = self._advisory()
        if advisory is None:
            bp = self.pre_dose_bp()
            if bp is None:
                raise SessionError("There is no pre-dose BP to decide on")
            raise SessionError(f"Pre-dose BP {bp[0]:.0f}/{bp[1]:.0f} is within "
                               f"{self.settings.pre_dose_bp_advisory_sys_mmhg}/{self.settings.pre_dose_bp_advisory_dia_mmhg}: "
                               "no decision is needed")
        if t < advisory.t:
            raise SessionError(f"The decision at {clock(t)} is before the BP it concerns ({clock(advisory.t)})")
        if entry.decision not in ("proceed", "defer"):
            raise SessionError(f"Decision {entry.decision!r} must be 'proceed' or 'defer'")
        decision: Literal["proceed", "defer"] = "proceed" if entry.decision == "proceed" else "defer"
        self.bp_decisions.append(BpDecision(decision=decision, t=t, by=by, sys=advisory.sys, dia=advisory.dia,
                                            note=entry.note))

    def _apply_pre_dose_waiver(self, entry: PreDoseWaiver, t: datetime, by: Actor | None) -> None:
        by = self._need_by(by)
        if self.phase is not Phase.BASELINE:
            raise SessionError("The pre-dose check can only be waived before dosing")
        reason = entry.reason
        if not isinstance(reason, str) or not reason.strip():
            raise SessionError("Give a reason for waiving the pre-dose check")
        self.pre_dose_waiver = (t, by, reason)

    def _apply_infusion_step(self, entry: InfusionStepEntry, t: datetime, by: Actor | None) -> None:
        log = self._need_infusion()
        step = InfusionStep.from_payload(entry.to_payload())
        if step.action.value == "start":
            self._check_can_dose(step.t)
        else:
            self._check_infusion_phase()
        log.apply(step)
        if step.action.value == "start":
            self.phase = Phase.INFUSION
            self._baseline_pending = self._waived(t)
        elif step.action.value == "stop":
            self.phase = Phase.RECOVERY

    def _apply_nasal_device(self, entry: NasalDeviceEntry, t: datetime, by: Actor | None) -> None:
        devices = self._need_devices()
        if devices.devices_logged == 0:
            self._check_can_dose(t)
        elif self.phase is not Phase.INFUSION:
            raise SessionError(f"The session is in {self.phase.label}: no more devices can be logged")
        first = devices.devices_logged == 0
        devices.apply(entry.to_payload())
        self.phase = Phase.RECOVERY if devices.complete else Phase.INFUSION
        if first:
            self._baseline_pending = self._waived(t)

    def _apply_clinically_stable(self, entry: ClinicallyStableEntry, t: datetime, by: Actor | None) -> None:
        self._need_devices().apply(entry.to_payload())

    def _apply_dosing_ended(self, entry: DosingEnded, t: datetime, by: Actor | None) -> None:
        by = self._need_by(by)
        devices = self._need_devices()
        if self.phase is not Phase.INFUSION:
            raise SessionError("Dosing can only be ended early while devices are being taken")
        last = devices.last_device_at
        if last is not None and t < last:
            raise SessionError(f"Time {clock(t)} is before the last device at {clock(last)}")
        reason = clean_text(entry.reason, 200, "Reason", required=True)
        self.dosing_ended_early = (t, by, reason)
        self.phase = Phase.RECOVERY

    def _apply_assessment(self, entry: AssessmentEntry, t: datetime, by: Actor | None) -> None:
        assessment, seq = parse_assessment(entry.assessment), _numbered(entry)
        self._assessments[seq] = Charted(seq=seq, t=t, by=self._need_by(by), assessment=assessment)

    def _apply_event(self, entry: EventEntry, t: datetime, by: Actor | None) -> None:
        event, seq = parse_event(entry.event), _numbered(entry)
        self._events[seq] = ChartedEvent(seq=seq, t=t, by=self._need_by(by), event=event)

    def _apply_correction(self, entry: Correction, t: datetime, by: Actor | None) -> None:
        by = self._need_by(by)
        target = entry.refers_to
        reason = clean_text(entry.reason, 200, "Reason", required=True)
        if target in self._retracted:
            raise SessionError(f"Entry {target} was already corrected")
        replacement = entry.replacement
        if replacement is not None and not isinstance(replacement, Mapping):
            raise SessionError("A replacement must be an assessment, event or BP record")
        seq = _numbered(entry)
        if target in self._assessments:
            old = self._assessments[target]
            new = Charted(seq=seq, t=old.t, by=by, assessment=parse_assessment(replacement)) if replacement else None
            if new is not None:
                self._assessments[seq] = new
        elif target in self._events:
            old_e = self._events[target]
            new_e = ChartedEvent(seq=seq, t=old_e.t, by=by, event=parse_event(replacement)) if replacement else None
            if new_e is not None:
                self._events[seq] = new_e
        elif target in self._nibp_by_seq:
            old_r = self._nibp_by_seq[target]
            reading = None
            if replacement:
                if not {"sys", "dia"} <= set(replacement):
                    raise SessionError("A replacement BP needs sys and dia (mmHg)")
                reading = NibpReading(t=old_r.t, sys=replacement["sys"], dia=replacement["dia"],
                                      mean=replacement.get("mean"), source="manual", by=by, seq=seq)
            self.nibp_readings = [r for r in self.nibp_readings if r.seq != target]
            if reading is not None:
                self._nibp_by_seq[seq] = reading
                self.nibp_readings.append(reading)
                self.nibp_readings.sort(key=lambda r: (r.t, r.seq or 0))
        else:
            raise SessionError(f"Entry {target} is not an assessment, event or BP reading that can be corrected")
        self._retracted.add(target)
        self.corrections.append({"seq": seq, "refers_to": target, "reason": reason, "t": t, "by": by})

    def _apply_concomitant_medications(self, entry: ConcomitantMedications, t: datetime, by: Actor | None) -> None:
        self._need_by(by)
        meds = entry.medications or {}
        self.concomitant = {key: bool(meds.get(key, False)) for key in CONCOMITANT_KEYS}
        self.concomitant_other = entry.other

    def _apply_vigil_note(self, entry: EntryBase, t: datetime, by: Actor | None) -> None:
        """Clock jumps and device counts are recorded by Vigil itself: no user, no change of state."""
        if by is not None:
            raise SessionError(f"A {entry.entry_type.value} entry is recorded by Vigil, not by a user")

    def _apply_escort(self, entry: EscortEntry, t: datetime, by: Actor | None) -> None:
        self.escort = (t, self._need_by(by), clean_text(entry.escort_name, 80, "Escort name", required=False))

    def _apply_alarm_limits(self, entry: AlarmLimitsEntry, t: datetime, by: Actor | None) -> None:
        self._need_by(by)
        if not isinstance(entry.profile.get("rules"), list) or profile_fingerprint(entry.profile) != entry.sha256:
            raise SessionError("The recorded alarm profile does not match its fingerprint")
        self.alarm_limits.append(entry)

    def _apply_session_aborted(self, entry: SessionAborted, t: datetime, by: Actor | None) -> None:
        by = self._need_by(by)
        check_transition(self.phase, Phase.ABORTED)
        if self.infusion is not None and self.infusion.status.value in ("running", "paused"):
            raise SessionError("Stop the infusion before ending the session")
        reason = clean_text(entry.reason, 300, "Reason", required=True)
        self.aborted = (t, by, reason)
        self.phase = Phase.ABORTED

    def _apply_session_closed(self, entry: SessionClosed, t: datetime, by: Actor | None) -> None:
        by = self._need_by(by)
        check_transition(self.phase, Phase.DISCHARGED)
        if entry.printed_name != by.display_name:
            raise SessionError("The printed name must be the signing user's")
        sig = Signature(by=by, t=t, meaning=entry.meaning)
        check = DischargeCheck.model_validate(entry.discharge or {"at": t, "criteria": ()})
        override = clean_text(entry.override_reason, 300, "Override reason", required=False)
        if check.unmet_hard:
            unmet = "; ".join(f"{c.label} ({c.detail})" for c in check.unmet_hard)
            raise SessionError(f"Discharge refused: {unmet}")
        if not check.ok:
            if override is None:
                unmet = "; ".join(f"{c.label} ({c.detail})" for c in check.unmet)
                raise SessionError(f"Discharge criteria not met: {unmet}")
            require_role(by, Role.CHARGE_NURSE, "close a session with unmet discharge criteria")
        self.closed, self.closed_check, self.override_reason = sig, check.to_payload(), override
        self.phase = Phase.DISCHARGED

    _HANDLERS: ClassVar[dict[EntryType, Callable[..., None]]] = {
        EntryType.SESSION_OPENED: _apply_session_opened, EntryType.NIBP: _apply_nibp,
        EntryType.BASELINE: _apply_baseline, EntryType.BP_DECISION: _apply_bp_decision,
        EntryType.PRE_DOSE_WAIVER: _apply_pre_dose_waiver, EntryType.INFUSION_STEP: _apply_infusion_step,
        EntryType.NASAL_DEVICE: _apply_nasal_device, EntryType.CLINICALLY_STABLE: _apply_clinically_stable,
        EntryType.DOSING_ENDED: _apply_dosing_ended, EntryType.ASSESSMENT: _apply_assessment,
        EntryType.EVENT: _apply_event, EntryType.CORRECTION: _apply_correction,
        EntryType.CONCOMITANT_MEDICATIONS: _apply_concomitant_medications, EntryType.ESCORT: _apply_escort,
        EntryType.SESSION_ABORTED: _apply_session_aborted, EntryType.SESSION_CLOSED: _apply_session_closed,
        EntryType.ALARM_LIMITS: _apply_alarm_limits,
        EntryType.CLOCK_JUMP: _apply_vigil_note, EntryType.DEVICE_STATS: _apply_vigil_note,
    }
