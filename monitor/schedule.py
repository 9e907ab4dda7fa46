"""What is due when: the observation schedule of each protocol, and the list of due items.

Configuration (:class:`ScheduleConfig`, part of the clinic settings) with the defaults of the
clinic's protocols:

IV ketamine
    * before the infusion: NIBP (full vitals come from the monitor), MOAA/S, pain NRS; a pre-dose BP
      above the advisory threshold needs a recorded proceed/defer decision;
    * during the infusion: NIBP every 10 min (5–15), every 5 min for the first three sessions
      (``prior_sessions`` < 3) or known hypertension; MOAA/S and CADSS-6 at 20 and 40 minutes of
      running infusion time (pauses do not count); "stop the infusion" once the planned dose is
      reached;
    * recovery (after the stop): NIBP every 15 min; MOAA/S every 15 min until a MOAA/S of 5 is
      charted; modified Aldrete from the earliest discharge time (repeated every 15 min while < 9).

Esketamine nasal spray
    * NIBP before the first device; the next device 5 min after the previous one; NIBP about 40 min
      after the first device (a reading 35–50 min after it counts), then offered every 30 min (as
      clinically warranted) and once shortly before the end of the 120-minute monitoring period;
      MOAA/S and CADSS-6 at 40 min after the first device and before discharge (as the IV protocol
      charts them at 20 and 40 min); modified Aldrete before discharge.

IV assessments due before the infusion that were skipped stay on the list as *overdue* once it has
started, until they are charted (unless the pre-dose check was waived).

Any phase: after a NIBP reading at or above 160/100 a repeat is due within 5 minutes.

:func:`due_items` looks at the session as it stands (the last time each item was done) and
returns :class:`DueItem` entries with status *upcoming* (before ``due_at``), *due*, or *overdue*
(``grace_min`` minutes after ``due_at``, default 5). A charted item counts for a scheduled time if
it was charted up to ``early_window_min`` (default 5) minutes before it. Pure: time is passed in.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterable

from pydantic import BaseModel, ConfigDict, field_validator

from monitor.staff import clock, ensure_utc, refuse

if TYPE_CHECKING:
    from monitor.patient import Patient
    from monitor.session import NibpReading, SessionState

__all__ = [
    "IVSchedule", "EsketamineSchedule", "ScheduleConfig", "DueStatus", "DueItem",
    "nibp_interval_min", "due_items", "next_nibp_due", "continuous_spo2_required", "esketamine_forty_minute_bp",
]


def _bounded(value: int, low: int, high: int, what: str, unit: str = "min") -> int:
    if not low <= value <= high:
        raise refuse(f"{what} {value} {unit} is outside {low}–{high} {unit}")
    return value


class IVSchedule(BaseModel):
    """IV ketamine schedule, minutes.

    * ``nibp_interval_min`` (default 10; 5–15): NIBP interval during the infusion.
    * ``nibp_interval_high_risk_min`` (default 5; 5–15): the interval for the first sessions and
      known hypertension.
    * ``high_risk_first_sessions`` (default 3; 0–10): patients with fewer prior sessions use the
      high-risk interval.
    * ``assessment_marks_min`` (default 20, 40): running-infusion minutes at which MOAA/S and
      CADSS-6 are due (1–240, increasing, at most 6 marks).
    * ``recovery_nibp_interval_min`` (default 15; 5–30), ``recovery_moaas_interval_min``
      (default 15; 5–30).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    nibp_interval_min: int = 10
    nibp_interval_high_risk_min: int = 5
    high_risk_first_sessions: int = 3
    assessment_marks_min: tuple[int, ...] = (20, 40)
    recovery_nibp_interval_min: int = 15
    recovery_moaas_interval_min: int = 15

    @field_validator("nibp_interval_min", "nibp_interval_high_risk_min")
    @classmethod
    def _nibp(cls, value: int) -> int:
        return _bounded(value, 5, 15, "NIBP interval during the infusion")

    @field_validator("high_risk_first_sessions")
    @classmethod
    def _first(cls, value: int) -> int:
        return _bounded(value, 0, 10, "High-risk first sessions", "sessions")

    @field_validator("assessment_marks_min")
    @classmethod
    def _marks(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) > 6 or any(not 1 <= m <= 240 for m in value) or list(value) != sorted(set(value)):
            raise refuse("Assessment times during the infusion must be up to 6 increasing minutes within 1–240")
        return value

    @field_validator("recovery_nibp_interval_min")
    @classmethod
    def _rec_nibp(cls, value: int) -> int:
        return _bounded(value, 5, 30, "NIBP interval in recovery")

    @field_validator("recovery_moaas_interval_min")
    @classmethod
    def _rec_moaas(cls, value: int) -> int:
        return _bounded(value, 5, 30, "MOAA/S interval in recovery")


class EsketamineSchedule(BaseModel):
    """Esketamine schedule, minutes.

    * ``bp_after_first_device_min`` (default 40; 30–60): the NIBP "about 40 min" after the first device.
    * ``bp_offer_interval_min`` (default 30; 10–60): NIBP offered this often afterwards.
    * ``bp_before_end_min`` (default 10; 0–30): a NIBP is due this long before the end of
      monitoring (REMS "BP before completion"); MOAA/S and CADSS-6 "before discharge" are due then too.
    * ``assessment_marks_min`` (default 40; 1–240, increasing, at most 6): minutes after the first
      device at which MOAA/S and CADSS-6 are due.

    The "about 40 minutes" BP is a reading from 5 min before to 10 min after
    ``bp_after_first_device_min`` (35–50 min by default): :meth:`bp_window`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bp_after_first_device_min: int = 40
    bp_offer_interval_min: int = 30
    bp_before_end_min: int = 10
    assessment_marks_min: tuple[int, ...] = (40,)

    @field_validator("assessment_marks_min")
    @classmethod
    def _marks(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) > 6 or any(not 1 <= m <= 240 for m in value) or list(value) != sorted(set(value)):
            raise refuse("Esketamine assessment times must be up to 6 increasing minutes within 1–240")
        return value

    def bp_window(self) -> tuple[int, int]:
        """Minutes after the first device within which a reading is the "about 40 min" BP."""
        return self.bp_after_first_device_min - 5, self.bp_after_first_device_min + 10

    @field_validator("bp_after_first_device_min")
    @classmethod
    def _after(cls, value: int) -> int:
        return _bounded(value, 30, 60, "NIBP after the first device at")

    @field_validator("bp_offer_interval_min")
    @classmethod
    def _offer(cls, value: int) -> int:
        return _bounded(value, 10, 60, "NIBP offer interval")

    @field_validator("bp_before_end_min")
    @classmethod
    def _before_end(cls, value: int) -> int:
        return _bounded(value, 0, 30, "NIBP before the end of monitoring")


class ScheduleConfig(BaseModel):
    """Schedules of both protocols plus the shared timing rules (minutes, mmHg).

    * ``grace_min`` (default 5; 1–15): a due item becomes overdue this long after its time.
    * ``early_window_min`` (default 5; 0–10): an item charted this long before its time counts.
    * ``repeat_bp_sys_mmhg`` / ``repeat_bp_dia_mmhg`` (default 160/100) and ``repeat_bp_within_min``
      (default 5; 1–15): a NIBP at or above either threshold makes a repeat due within that time.
    * ``aldrete_repeat_min`` (default 15; 5–30): repeat a modified Aldrete below the discharge score.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    iv: IVSchedule = IVSchedule()
    esketamine: EsketamineSchedule = EsketamineSchedule()
    grace_min: int = 5
    early_window_min: int = 5
    repeat_bp_sys_mmhg: int = 160
    repeat_bp_dia_mmhg: int = 100
    repeat_bp_within_min: int = 5
    aldrete_repeat_min: int = 15

    @field_validator("grace_min")
    @classmethod
    def _grace(cls, value: int) -> int:
        return _bounded(value, 1, 15, "Grace period before overdue")

    @field_validator("early_window_min")
    @classmethod
    def _early(cls, value: int) -> int:
        return _bounded(value, 0, 10, "Early charting window")

    @field_validator("repeat_bp_sys_mmhg")
    @classmethod
    def _sys(cls, value: int) -> int:
        return _bounded(value, 130, 200, "Repeat-NIBP systolic threshold", "mmHg")

    @field_validator("repeat_bp_dia_mmhg")
    @classmethod
    def _dia(cls, value: int) -> int:
        return _bounded(value, 80, 130, "Repeat-NIBP diastolic threshold", "mmHg")

    @field_validator("repeat_bp_within_min")
    @classmethod
    def _within(cls, value: int) -> int:
        return _bounded(value, 1, 15, "Repeat NIBP within")

    @field_validator("aldrete_repeat_min")
    @classmethod
    def _aldrete(cls, value: int) -> int:
        return _bounded(value, 5, 30, "Modified Aldrete repeat interval")


class DueStatus(str, enum.Enum):
    """Where a scheduled item stands at the time asked."""

    UPCOMING = "upcoming"
    DUE = "due"
    OVERDUE = "overdue"


class DueItem(BaseModel):
    """One scheduled item.

    ``kind`` names what to do ("nibp", "moaas", "cadss6", "pain_nrs", "aldrete", "bp_decision",
    "infusion_stop", "nasal_device"); ``key`` identifies the occurrence ("moaas@20",
    "nibp:repeat"); ``due_at`` is UTC; ``label`` is the line to show the nurse.
    """

    model_config = ConfigDict(frozen=True)

    key: str
    kind: str
    due_at: datetime
    status: DueStatus
    label: str

    def minutes_until(self, now: datetime) -> float:
        """Minutes from ``now`` to ``due_at`` (negative once due)."""
        return (self.due_at - ensure_utc(now)).total_seconds() / 60.0


def nibp_interval_min(patient: "Patient", config: ScheduleConfig) -> int:
    """NIBP interval during an IV infusion for this patient, minutes: the high-risk interval (5) for
    known hypertension or fewer than ``high_risk_first_sessions`` (3) prior sessions, else 10."""
    iv = config.iv
    if patient.known_hypertension or patient.prior_sessions < iv.high_risk_first_sessions:
        return iv.nibp_interval_high_risk_min
    return iv.nibp_interval_min


class _Builder:
    def __init__(self, now: datetime, config: ScheduleConfig) -> None:
        self.now, self.config = now, config
        self.items: list[DueItem] = []

    def add(self, key: str, kind: str, due_at: datetime, label: str, force: DueStatus | None = None) -> None:
        grace = timedelta(minutes=self.config.grace_min)
        if force is not None:
            status = force
        elif self.now < due_at:
            status = DueStatus.UPCOMING
        elif self.now < due_at + grace:
            status = DueStatus.DUE
        else:
            status = DueStatus.OVERDUE
        self.items.append(DueItem(key=key, kind=kind, due_at=due_at, status=status, label=label))


def _mins(value: float) -> timedelta:
    return timedelta(minutes=value)


def _done_since(times: Iterable[datetime], since: datetime) -> bool:
    return any(t >= since for t in times)


def _nibp_candidates(state: "SessionState", now: datetime, cfg: ScheduleConfig) -> list[tuple[datetime, str, str, DueStatus | None]]:
    """(due_at, key, label, forced status) for every rule that wants a NIBP."""
    out: list[tuple[datetime, str, str, DueStatus | None]] = []
    readings = [r for r in state.nibp_readings if r.t <= now]
    last = readings[-1] if readings else None
    phase = state.phase.value
    early = _mins(cfg.early_window_min)

    if last is not None and (last.sys >= cfg.repeat_bp_sys_mmhg or last.dia >= cfg.repeat_bp_dia_mmhg):
        out.append((last.t + _mins(cfg.repeat_bp_within_min), "nibp:repeat",
                    f"Repeat NIBP: {last.sys:.0f}/{last.dia:.0f} at {clock(last.t)} is at or above "
                    f"{cfg.repeat_bp_sys_mmhg}/{cfg.repeat_bp_dia_mmhg}", None))

    if phase == "baseline":
        if last is None and state.baseline_bp_manual is None:
            out.append((state.opened_at, "nibp:pre-dose", "NIBP before dosing", DueStatus.DUE))
        return out

    if state.protocol.value == "ketamine-iv":
        log = state.infusion
        if log is None or log.started_at is None:
            return out
        start, end = log.started_at, log.ended_at
        if end is None or end > now:
            interval = nibp_interval_min(state.patient, cfg)
            anchor = max(last.t, start) if last else start
            out.append((anchor + _mins(interval), "nibp:infusion",
                        f"NIBP (every {interval} min during the infusion)", None))
        else:
            interval = cfg.iv.recovery_nibp_interval_min
            anchor = max(last.t, end) if last else end
            out.append((anchor + _mins(interval), "nibp:recovery", f"NIBP (every {interval} min in recovery)", None))
        return out

    devices = state.devices
    if devices is None or devices.first_device_at is None or devices.monitoring_end_earliest is None:
        return out
    first, end = devices.first_device_at, devices.monitoring_end_earliest
    esk = cfg.esketamine
    forty = first + _mins(esk.bp_after_first_device_min)
    low, high = esk.bp_window()
    if esketamine_forty_minute_bp(state) is None and now <= first + _mins(high):
        out.append((forty, "nibp:40", f"NIBP about {esk.bp_after_first_device_min} min after the first device "
                    f"(a reading {low}–{high} min after it)", None))
    elif last is not None:
        out.append((last.t + _mins(esk.bp_offer_interval_min), "nibp:offer",
                    f"NIBP (offered every {esk.bp_offer_interval_min} min, as clinically warranted)", None))
    before_end = end - _mins(esk.bp_before_end_min)
    if before_end > forty and not _done_since((r.t for r in readings), before_end - early):
        out.append((before_end, "nibp:before-end", "NIBP before the end of monitoring", None))
    return out


def esketamine_forty_minute_bp(state: "SessionState") -> "NibpReading | None":
    """The esketamine "about 40 minutes" BP: the first reading within the schedule's window after the
    first device (35–50 min by default), or None."""
    devices = state.devices
    first = devices.first_device_at if devices is not None else None
    if first is None:
        return None
    low, high = state.settings.schedules.esketamine.bp_window()
    for reading in state.nibp_readings:
        if first + _mins(low) <= reading.t <= first + _mins(high):
            return reading
    return None


def _charted_times(state: "SessionState", kind: str, now: datetime) -> list[datetime]:
    return [c.t for c in state.charted(kind) if c.t <= now]


def _pre_dose_items(state: "SessionState", now: datetime, out: _Builder) -> None:
    """IV: MOAA/S and pain NRS before the infusion: due in baseline; once it has started, still on the list
    as overdue until charted (a skipped pre-dose assessment is not forgotten), unless waived."""
    started = state.dosing_started_at
    if started is not None and state.pre_dose_waiver is not None:
        return
    force = DueStatus.DUE if state.phase.value == "baseline" else DueStatus.OVERDUE
    missed = "" if force is DueStatus.DUE else " (missed: chart it now)"
    for kind, name in (("moaas", "MOAA/S"), ("pain_nrs", "Pain score (NRS)")):
        if not _charted_times(state, kind, now):
            out.add(f"{kind}:pre-dose", kind, state.opened_at, f"{name} before the infusion{missed}", force)


def _iv_items(state: "SessionState", now: datetime, cfg: ScheduleConfig, out: _Builder) -> None:
    log = state.infusion
    early = _mins(cfg.early_window_min)
    _pre_dose_items(state, now, out)
    if state.phase.value == "baseline":
        return
    if log is None or log.started_at is None:
        return
    status = log.status_at(now)
    stopped = status.value == "stopped"
    for mark in cfg.iv.assessment_marks_min:
        at = log.running_time_reached_at(mark)
        force = None
        suffix = ""
        if at is None:
            if stopped:
                continue  # the infusion ended before this mark
            at = now + _mins(mark - log.elapsed_infusion_min(now))
            force, suffix = DueStatus.UPCOMING, " (infusion paused)"
        for kind, name in (("moaas", "MOAA/S"), ("cadss6", "CADSS-6")):
            if not _done_since(_charted_times(state, kind, now), at - early):
                out.add(f"{kind}@{mark}", kind, at, f"{name} at {mark} min of infusion{suffix}", force)

    if not stopped:
        reached = log.dose_reached_at(now)
        dose = f"{log.plan.dose_mg:.1f} mg"
        if reached is not None:
            out.add("infusion_stop", "infusion_stop", reached, f"Planned dose of {dose} reached: stop the infusion")
        else:
            projected = log.projected_completion_at(now)
            if projected is not None:
                out.add("infusion_stop", "infusion_stop", projected,
                        f"Planned dose of {dose} reached at about {clock(projected)}: then stop the infusion",
                        DueStatus.UPCOMING if projected > now else None)
        return

    end = log.ended_at
    if end is None:  # stopped means ended; nothing to schedule without the time it ended
        return
    recovery = [c for c in state.charted("moaas") if end <= c.t <= now]
    if not any(c.assessment.score == 5 for c in recovery):
        interval = cfg.iv.recovery_moaas_interval_min
        anchor = max(recovery[-1].t, end) if recovery else end
        last = f" (last {recovery[-1].assessment.score} at {clock(recovery[-1].t)})" if recovery else ""
        out.add("moaas:recovery", "moaas", anchor + _mins(interval),
                f"MOAA/S every {interval} min until it is 5{last}")


def _esketamine_items(state: "SessionState", now: datetime, cfg: ScheduleConfig, out: _Builder) -> None:
    devices = state.devices
    if devices is None:
        return
    first, end = devices.first_device_at, devices.monitoring_end_earliest
    if first is not None and end is not None:
        early = _mins(cfg.early_window_min)
        marks = [(f"@{m}", first + _mins(m), f"at {m} min after the first device")
                 for m in cfg.esketamine.assessment_marks_min]
        marks.append((":before-discharge", end - _mins(cfg.esketamine.bp_before_end_min), "before discharge"))
        for suffix, at, when in marks:
            for kind, name in (("moaas", "MOAA/S"), ("cadss6", "CADSS-6")):
                if not _done_since(_charted_times(state, kind, now), at - early):
                    out.add(f"{kind}{suffix}", kind, at, f"{name} {when}")
    if state.phase.value == "infusion" and not devices.complete:
        allowed = devices.next_device_allowed_at
        if allowed is not None:
            n = devices.devices_logged + 1
            out.add(f"nasal_device:{n}", "nasal_device", allowed,
                    f"Nasal device {n} of {devices.plan.devices} (from {clock(allowed)}, 5 min after "
                    f"device {n - 1})")


def _aldrete_item(state: "SessionState", now: datetime, cfg: ScheduleConfig, out: _Builder) -> None:
    if state.phase.value != "recovery":
        return
    ended = state.dosing_ended_at
    earliest = state.discharge_earliest
    if ended is None or earliest is None:
        return
    charted = [c for c in state.charted("aldrete") if ended <= c.t <= now]
    minimum = state.settings.discharge_aldrete_min
    if charted:
        last = charted[-1]
        if last.assessment.score >= minimum:
            return
        out.add("aldrete", "aldrete", last.t + _mins(cfg.aldrete_repeat_min),
                f"Modified Aldrete again (last {last.assessment.score} at {clock(last.t)}; discharge needs ≥ {minimum})")
    else:
        out.add("aldrete", "aldrete", earliest, "Modified Aldrete before discharge")


def due_items(session_state: "SessionState", now: datetime) -> list[DueItem]:
    """Everything scheduled for the session at ``now`` (aware UTC), soonest first.

    Each rule contributes at most one item (the next occurrence); the NIBP rules are merged into the
    single earliest NIBP item. Closed (discharged or aborted) sessions have nothing due. A naive
    ``now`` raises ``RefusedAction``.
    """
    state = session_state
    now = ensure_utc(now)
    if state.phase.value in ("discharged", "aborted"):
        return []
    cfg: ScheduleConfig = state.settings.schedules
    out = _Builder(now, cfg)
    nibp = next_nibp_due(state, now)
    if nibp is not None:
        out.items.append(nibp)
    advisory = state.bp_advisory_pending()
    if advisory is not None:
        out.add("bp_decision", "bp_decision", advisory.t, advisory.text(), DueStatus.DUE)
    if state.protocol.value == "ketamine-iv":
        _iv_items(state, now, cfg, out)
    else:
        _esketamine_items(state, now, cfg, out)
    _aldrete_item(state, now, cfg, out)
    return sorted(out.items, key=lambda item: (item.due_at, item.kind, item.key))


def next_nibp_due(session_state: "SessionState", now: datetime) -> DueItem | None:
    """The next NIBP measurement due (kind "nibp"), or None (closed session, or nothing scheduled)."""
    state = session_state
    now = ensure_utc(now)
    if state.phase.value in ("discharged", "aborted"):
        return None
    cfg: ScheduleConfig = state.settings.schedules
    candidates = _nibp_candidates(state, now, cfg)
    if not candidates:
        return None
    due_at, key, label, force = min(candidates, key=lambda c: c[0])
    out = _Builder(now, cfg)
    out.add(key, "nibp", due_at, label, force)
    return out.items[0]


def continuous_spo2_required(session_state: "SessionState", now: datetime) -> bool:
    """True while continuous pulse oximetry is required: IV ketamine from the start of the infusion
    until a MOAA/S of 5 is charted after it ends; esketamine from the first device until the end of
    monitoring (or the clinically-stable sign-off)."""
    state = session_state
    now = ensure_utc(now)
    if state.phase.value in ("discharged", "aborted", "baseline"):
        return False
    if state.protocol.value == "ketamine-iv":
        end = state.infusion.ended_at if state.infusion is not None else None
        if end is None or end > now:
            return True
        return not any(c.assessment.score == 5 and end <= c.t <= now for c in state.charted("moaas"))
    return state.devices is None or not state.devices.monitoring_complete(now)

