"""Dosing plans and dosing logs for the two protocols Vigil monitors.

* IV ketamine: :class:`KetamineIVPlan` (mg/kg, weight, minutes → mg and mg/h) and
  :class:`InfusionLog` (start / pause / resume / rate change / stop, as the nurse records them at the
  pump). The log integrates the recorded rates over the running intervals: it is the record of what
  the nurse entered, not a pump driver.
* Esketamine nasal spray (Spravato): :class:`EsketaminePlan` (56 mg = 2 devices, 84 mg = 3 devices,
  28 mg each; lot number) and :class:`NasalDeviceLog` (time of each device, at least 5 minutes apart;
  monitoring for at least 120 minutes from the first device with no exception, and discharge then
  also needs a clinician's "clinically stable" sign-off).

Every step returns a small frozen model whose ``to_payload()`` dict goes to the store, and each log
can be rebuilt from those dicts with ``from_steps(plan, payloads)``: replaying runs the same checks,
so a damaged record is refused rather than silently reinterpreted.

Times are aware datetimes passed in (UTC); nothing here reads the clock. Rates are mg/h, doses mg,
durations minutes. Refused steps raise :class:`InfusionError` / :class:`NasalDeviceError`
(``ValueError`` subclasses) with a message for the nurse.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from monitor.patient import WEIGHT_RANGE_KG
from monitor.staff import Actor, RefusedAction, Signature, UtcDatetime, clock, ensure_utc, refuse

if TYPE_CHECKING:
    from monitor.settings import ClinicSettings

__all__ = [
    "ProtocolKind", "InfusionError", "RateNeedsConfirmation", "NasalDeviceError",
    "RATE_HARD_MAX_LIMITS_MG_PER_KG_PER_H", "RATE_CONFIRM_FACTOR",
    "DOSE_HARD_LIMITS_MG_PER_KG", "DURATION_RANGE_MIN", "KetamineIVPlan",
    "InfusionAction", "InfusionStatus", "InfusionStep", "InfusionLog",
    "MG_PER_DEVICE", "DEVICE_SPACING_MIN", "MIN_ESKETAMINE_MONITORING_MIN", "CLINICALLY_STABLE_MEANING",
    "EsketaminePlan", "NasalDeviceEntry", "NasalDeviceLog",
]


class ProtocolKind(str, enum.Enum):
    """The session protocols Vigil knows."""

    KETAMINE_IV = "ketamine-iv"
    ESKETAMINE = "esketamine"

    @property
    def label(self) -> str:
        """Human name of the protocol."""
        return {"ketamine-iv": "IV ketamine", "esketamine": "esketamine nasal spray"}[self.value]


class InfusionError(RefusedAction):
    """An infusion step the log refuses (wrong order, bad rate, missing reason, time going back)."""


class RateNeedsConfirmation(InfusionError):
    """A rate far above the plan's (more than 1.5 ×): allowed only when the nurse confirms it with a
    reason (``high_rate_reason``). ``rate`` and ``plan_rate`` are mg/h."""

    def __init__(self, message: str, rate: float, plan_rate: float) -> None:
        super().__init__(message)
        self.rate, self.plan_rate = rate, plan_rate


class NasalDeviceError(RefusedAction):
    """A nasal-device entry or sign-off the log refuses (too soon, too many, time going back)."""


def _minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60.0


def _reason(value: str | None, limit: int = 200) -> str | None:
    if value is None:
        return None
    value = " ".join(str(value).split())
    if len(value) > limit:
        raise RefusedAction(f"A reason may have at most {limit} characters")
    return value or None


# =========================================================================== IV ketamine

#: The widest dose bounds a clinic may configure, mg/kg (clinic default 0.1–1.5, typical 0.5).
DOSE_HARD_LIMITS_MG_PER_KG = (0.05, 2.0)
#: Accepted infusion duration, minutes (default 40).
DURATION_RANGE_MIN = (10, 240)
#: The widest hard maximum infusion rate a clinic may set, mg/kg/h (clinic default 2.25: the upper
#: dose bound, 1.5 mg/kg, over the standard 40 minutes).
RATE_HARD_MAX_LIMITS_MG_PER_KG_PER_H = (0.5, 9.0)
#: A rate more than this many times the plan's computed rate needs an explicit confirmation with a
#: reason (a slip such as 525 for 52.5 mg/h is caught before it reaches the record).
RATE_CONFIRM_FACTOR = 1.5


class KetamineIVPlan(BaseModel):
    """The planned IV ketamine dose for one session.

    ``dose_mg_per_kg`` must lie within ``dose_bounds_mg_per_kg`` (the clinic's bounds in force when
    the plan was made, default 0.1–1.5 mg/kg; see :meth:`for_clinic`), ``weight_kg`` within
    30–250 kg, ``duration_min`` within 10–240 minutes (default 40). ``max_rate_mg_per_kg_per_h``
    is the clinic's hard maximum rate in force (0.5–9 mg/kg/h; None in plans recorded before it
    existed, which keep the old ceiling: the upper dose bound over 10 minutes, and need no
    confirmation of high rates). Derived: :attr:`dose_mg`, :attr:`rate_mg_per_h`,
    :attr:`rate_mg_per_kg_per_h`, :attr:`max_rate_mg_per_h`, :attr:`confirm_rate_above_mg_per_h`.
    Bad input raises ``ValidationError`` ("Dose 2 mg/kg is outside this clinic's 0.1–1.5 mg/kg").
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dose_mg_per_kg: float
    weight_kg: float
    duration_min: float = 40
    dose_bounds_mg_per_kg: tuple[float, float] = (0.1, 1.5)
    max_rate_mg_per_kg_per_h: float | None = None

    @field_validator("max_rate_mg_per_kg_per_h")
    @classmethod
    def _max_rate(cls, value: float | None) -> float | None:
        low, high = RATE_HARD_MAX_LIMITS_MG_PER_KG_PER_H
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            raise refuse(f"Maximum infusion rate {value:g} mg/kg/h is outside {low:g}–{high:g} mg/kg/h")
        return value

    @field_validator("weight_kg")
    @classmethod
    def _weight(cls, value: float) -> float:
        low, high = WEIGHT_RANGE_KG
        if not low <= value <= high:
            raise refuse(f"Weight {value:g} kg is outside {low:g}–{high:g} kg")
        return float(value)

    @field_validator("duration_min")
    @classmethod
    def _duration(cls, value: float) -> float:
        low, high = DURATION_RANGE_MIN
        if not low <= value <= high:
            raise refuse(f"Infusion duration {value:g} min is outside {low}–{high} min")
        return float(value)

    @field_validator("dose_bounds_mg_per_kg")
    @classmethod
    def _bounds(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        hard_low, hard_high = DOSE_HARD_LIMITS_MG_PER_KG
        if not hard_low <= low < high <= hard_high:
            raise refuse(f"Dose bounds {low:g}–{high:g} mg/kg must lie within "
                         f"{hard_low:g}–{hard_high:g} mg/kg, lower below upper")
        return (float(low), float(high))

    @model_validator(mode="after")
    def _dose(self) -> "KetamineIVPlan":
        low, high = self.dose_bounds_mg_per_kg
        if not (math.isfinite(self.dose_mg_per_kg) and low <= self.dose_mg_per_kg <= high):
            raise refuse(f"Dose {self.dose_mg_per_kg:g} mg/kg is outside this clinic's {low:g}–{high:g} mg/kg")
        return self

    @classmethod
    def for_clinic(cls, settings: "ClinicSettings", *, weight_kg: float,
                   dose_mg_per_kg: float | None = None, duration_min: float | None = None) -> "KetamineIVPlan":
        """A plan using the clinic's dose bounds, typical dose and default duration where not given."""
        return cls(
            dose_mg_per_kg=settings.ketamine_typical_dose_mg_per_kg if dose_mg_per_kg is None else dose_mg_per_kg,
            weight_kg=weight_kg,
            duration_min=settings.ketamine_duration_min if duration_min is None else duration_min,
            dose_bounds_mg_per_kg=settings.ketamine_dose_bounds_mg_per_kg,
            max_rate_mg_per_kg_per_h=settings.ketamine_max_rate_mg_per_kg_per_h,
        )

    @property
    def dose_mg(self) -> float:
        """Planned total dose, mg (dose_mg_per_kg × weight_kg)."""
        return self.dose_mg_per_kg * self.weight_kg

    @property
    def rate_mg_per_h(self) -> float:
        """Planned infusion rate, mg/h (dose over the duration)."""
        return self.dose_mg / (self.duration_min / 60.0)

    @property
    def rate_mg_per_kg_per_h(self) -> float:
        """Planned infusion rate, mg/kg/h."""
        return self.dose_mg_per_kg / (self.duration_min / 60.0)

    @property
    def max_rate_mg_per_h(self) -> float:
        """The fastest rate the log accepts, mg/h: the clinic's hard maximum (mg/kg/h) for this
        weight; in plans recorded before it existed, the upper dose bound over 10 minutes."""
        if self.max_rate_mg_per_kg_per_h is None:
            return self.dose_bounds_mg_per_kg[1] * self.weight_kg / (DURATION_RANGE_MIN[0] / 60.0)
        return self.max_rate_mg_per_kg_per_h * self.weight_kg

    @property
    def confirm_rate_above_mg_per_h(self) -> float | None:
        """Rates above this (1.5 × the plan rate) need a confirmation with a reason; None for plans
        recorded before the rule existed."""
        if self.max_rate_mg_per_kg_per_h is None:
            return None
        return RATE_CONFIRM_FACTOR * self.rate_mg_per_h

    def describe(self) -> str:
        """"0.5 mg/kg × 70 kg = 35 mg over 40 min (52.5 mg/h)"."""
        return (f"{self.dose_mg_per_kg:g} mg/kg × {self.weight_kg:g} kg = {self.dose_mg:.1f} mg over "
                f"{self.duration_min:g} min ({self.rate_mg_per_h:.1f} mg/h)")

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict (inputs only; derived values are recomputed)."""
        data = self.model_dump(mode="json")
        if data.get("max_rate_mg_per_kg_per_h") is None:
            data.pop("max_rate_mg_per_kg_per_h", None)  # plans made before the rule read back the same
        return {"protocol": "ketamine-iv", **data}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "KetamineIVPlan":
        """Rebuild from :meth:`to_payload` output (validated again)."""
        data = {k: v for k, v in payload.items() if k != "protocol"}
        return cls.model_validate(data)


class InfusionAction(str, enum.Enum):
    """What one infusion step does."""

    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    RATE_CHANGE = "rate_change"
    STOP = "stop"


class InfusionStatus(str, enum.Enum):
    """Where the infusion stands."""

    NOT_STARTED = "not_started"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class InfusionStep(BaseModel):
    """One recorded infusion step: action, time (UTC), acting user, rate (mg/h, for start and rate
    change) and reason (required for pause and rate change, optional for stop)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: InfusionAction
    t: UtcDatetime
    by: Actor
    rate_mg_per_h: float | None = None
    reason: str | None = None
    high_rate_reason: str | None = None

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict with ``type`` "infusion_step" (``high_rate_reason`` only when given)."""
        data = self.model_dump(mode="json")
        if data.get("high_rate_reason") is None:
            data.pop("high_rate_reason", None)
        return {"type": "infusion_step", **data}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "InfusionStep":
        """Rebuild from :meth:`to_payload` output; ``type`` and a store's ``seq`` are ignored."""
        return cls.model_validate({k: v for k, v in payload.items() if k not in ("type", "seq")})

    @property
    def new_rate_mg_per_h(self) -> float:
        """The rate (mg/h) a start or rate change sets. ``InfusionError`` for a step without a rate
        (:meth:`InfusionLog.check` refuses a start or rate change without one)."""
        if self.rate_mg_per_h is None:
            raise InfusionError(f"An infusion {self.action.value.replace('_', ' ')} without a rate sets no rate")
        return float(self.rate_mg_per_h)

    def text(self) -> str:
        """One line for the timeline: "10:05 infusion paused (nausea), Ann Lee"."""
        what = {
            InfusionAction.START: f"infusion started at {self.rate_mg_per_h:.1f} mg/h",
            InfusionAction.PAUSE: "infusion paused",
            InfusionAction.RESUME: "infusion resumed",
            InfusionAction.RATE_CHANGE: f"infusion rate changed to {self.rate_mg_per_h:.1f} mg/h",
            InfusionAction.STOP: "infusion stopped",
        }[self.action]
        reason = f" ({self.reason})" if self.reason else ""
        confirmed = f" [high rate confirmed: {self.high_rate_reason}]" if self.high_rate_reason else ""
        return f"{clock(self.t)} {what}{reason}{confirmed}, {self.by.display_name}"


class InfusionLog:
    """The infusion as recorded by the nurse, step by step, for one :class:`KetamineIVPlan`.

    Allowed order: ``start`` once; then ``pause``/``resume`` and ``rate_change`` any number of times;
    ``stop`` once (from running or paused); nothing after ``stop``. Step times may not go back before
    the previous step. Each step method returns the :class:`InfusionStep` to store; a refused step
    raises :class:`InfusionError` and changes nothing.

    Queries take ``now`` (aware UTC) and look only at steps at or before it. Delivered dose is the
    integral of the recorded rate over running intervals (paused time never counts). The planned dose
    being reached is reported (:meth:`dose_complete`, :meth:`dose_reached_at`); the infusion keeps
    running in the record until the nurse stops it.
    """

    def __init__(self, plan: KetamineIVPlan) -> None:
        self.plan = plan
        self._steps: list[InfusionStep] = []
        self._status = InfusionStatus.NOT_STARTED
        self._rate: float = plan.rate_mg_per_h

    # ---------------------------------------------------------------- recording

    @property
    def steps(self) -> tuple[InfusionStep, ...]:
        """Every recorded step, oldest first."""
        return tuple(self._steps)

    @property
    def status(self) -> InfusionStatus:
        """Status after the last recorded step."""
        return self._status

    def start(self, t: datetime, rate_mg_per_h: float | None = None, *, by: Actor) -> InfusionStep:
        """Start the infusion at ``t`` at ``rate_mg_per_h`` (default: the plan rate)."""
        rate = self.plan.rate_mg_per_h if rate_mg_per_h is None else rate_mg_per_h
        return self._record(InfusionAction.START, t, by, rate=rate)

    def pause(self, t: datetime, reason: str, *, by: Actor) -> InfusionStep:
        """Pause a running infusion; ``reason`` is required ("nausea", "BP 182/104")."""
        return self._record(InfusionAction.PAUSE, t, by, reason=reason)

    def resume(self, t: datetime, *, by: Actor) -> InfusionStep:
        """Resume a paused infusion at the rate in force before the pause (or set while paused)."""
        return self._record(InfusionAction.RESUME, t, by)

    def rate_change(self, t: datetime, new_rate_mg_per_h: float, reason: str, *, by: Actor) -> InfusionStep:
        """Change the rate (mg/h) of a running or paused infusion; ``reason`` is required. While paused
        the new rate applies from the resume."""
        return self._record(InfusionAction.RATE_CHANGE, t, by, rate=new_rate_mg_per_h, reason=reason)

    def stop(self, t: datetime, reason: str | None = None, *, by: Actor) -> InfusionStep:
        """Stop the infusion (running or paused) for good; ``reason`` is optional."""
        return self._record(InfusionAction.STOP, t, by, reason=reason)

    def apply(self, step: InfusionStep) -> InfusionStep:
        """Check and append an already-built step (used when replaying stored payloads)."""
        self.check(step)
        self._steps.append(step)
        if step.action is InfusionAction.START:
            self._status, self._rate = InfusionStatus.RUNNING, step.new_rate_mg_per_h
        elif step.action is InfusionAction.PAUSE:
            self._status = InfusionStatus.PAUSED
        elif step.action is InfusionAction.RESUME:
            self._status = InfusionStatus.RUNNING
        elif step.action is InfusionAction.RATE_CHANGE:
            self._rate = step.new_rate_mg_per_h
        else:
            self._status = InfusionStatus.STOPPED
        return step

    @classmethod
    def from_steps(cls, plan: KetamineIVPlan, payloads: Iterable[dict[str, Any]]) -> "InfusionLog":
        """Rebuild a log by replaying stored step payloads (the same checks apply)."""
        log = cls(plan)
        for payload in payloads:
            log.apply(InfusionStep.from_payload(payload))
        return log

    def make_step(self, action: InfusionAction | str, t: datetime, by: Actor, *,
                  rate: float | None = None, reason: str | None = None,
                  high_rate_reason: str | None = None) -> InfusionStep:
        """Build a step (times normalised to UTC, reasons tidied) and check it against the log
        without recording it; refused steps raise :class:`InfusionError` (a rate above 1.5 × the
        plan's without ``high_rate_reason``: :class:`RateNeedsConfirmation`)."""
        t = ensure_utc(t, "infusion time")
        try:
            reason = _reason(reason)
            high_rate_reason = _reason(high_rate_reason)
        except RefusedAction as exc:
            raise InfusionError(str(exc)) from None
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                raise InfusionError(f"Rate {rate!r} is not a number of mg/h")
            rate = float(rate)
        step = InfusionStep(action=InfusionAction(action), t=t, by=by, rate_mg_per_h=rate, reason=reason,
                            high_rate_reason=high_rate_reason)
        self.check(step)
        return step

    def _record(self, action: InfusionAction, t: datetime, by: Actor, *,
                rate: float | None = None, reason: str | None = None) -> InfusionStep:
        return self.apply(self.make_step(action, t, by, rate=rate, reason=reason))

    def check(self, step: InfusionStep) -> None:
        """Raise :class:`InfusionError` if ``step`` cannot follow the recorded steps."""
        status, action = self._status, step.action
        if self._steps and step.t < self._steps[-1].t:
            last = self._steps[-1]
            raise InfusionError(f"Time {clock(step.t)} is before the last infusion entry "
                                f"({last.action.value.replace('_', ' ')} at {clock(last.t)})")
        if status is InfusionStatus.STOPPED:
            raise InfusionError(f"The infusion was stopped at {clock(self._steps[-1].t)}: "  # stopped: the last step
                                "no further infusion entries are possible")
        if action is InfusionAction.START:
            if status is not InfusionStatus.NOT_STARTED:
                raise InfusionError(f"The infusion was already started at {clock(self._steps[0].t)}")  # the first step
        elif status is InfusionStatus.NOT_STARTED:
            raise InfusionError("The infusion has not been started yet")
        if action is InfusionAction.PAUSE:
            if status is InfusionStatus.PAUSED:
                raise InfusionError("The infusion is already paused")
            if not step.reason:
                raise InfusionError("Give a reason for pausing the infusion")
        if action is InfusionAction.RESUME and status is not InfusionStatus.PAUSED:
            raise InfusionError("The infusion is not paused, so it cannot be resumed")
        if action is InfusionAction.RATE_CHANGE:
            if not step.reason:
                raise InfusionError("Give a reason for changing the infusion rate")
            if step.rate_mg_per_h is not None and math.isclose(step.rate_mg_per_h, self._rate):
                raise InfusionError(f"The rate is already {self._rate:.1f} mg/h")
        if action in (InfusionAction.START, InfusionAction.RATE_CHANGE):
            rate = step.rate_mg_per_h
            if rate is None or not math.isfinite(rate) or rate <= 0:
                raise InfusionError(f"Rate {rate} mg/h must be above 0 mg/h (to halt, pause the infusion)")
            if rate > self.plan.max_rate_mg_per_h:
                raise InfusionError(f"Rate {rate:g} mg/h is above this clinic's maximum "
                                    f"({self.plan.max_rate_mg_per_h:.0f} mg/h for {self.plan.weight_kg:g} kg): "
                                    "check the number")
            confirm_above = self.plan.confirm_rate_above_mg_per_h
            if confirm_above is not None and rate > confirm_above + 1e-9 and not step.high_rate_reason:
                raise RateNeedsConfirmation(
                    f"Rate {rate:g} mg/h is {rate / self.plan.rate_mg_per_h:.1f} × the planned "
                    f"{self.plan.rate_mg_per_h:.1f} mg/h: confirm it with a reason, or check the number",
                    rate, self.plan.rate_mg_per_h)
        elif step.rate_mg_per_h is not None:
            raise InfusionError(f"A {action.value} step carries no rate")
        if step.high_rate_reason and action not in (InfusionAction.START, InfusionAction.RATE_CHANGE):
            raise InfusionError(f"A {action.value} step carries no rate to confirm")

    # ---------------------------------------------------------------- queries

    @property
    def started_at(self) -> datetime | None:
        """Time of the start step, or None."""
        return self._steps[0].t if self._steps else None

    @property
    def ended_at(self) -> datetime | None:
        """Time of the stop step, or None while not stopped."""
        if self._steps and self._steps[-1].action is InfusionAction.STOP:
            return self._steps[-1].t
        return None

    def _segments(self) -> list[tuple[datetime, datetime | None, float]]:
        """Running intervals (start, end or None if open, rate mg/h)."""
        segments: list[tuple[datetime, datetime | None, float]] = []
        running_since: datetime | None = None
        rate = self.plan.rate_mg_per_h
        for step in self._steps:
            if step.action is InfusionAction.START:
                rate, running_since = step.new_rate_mg_per_h, step.t
            elif step.action is InfusionAction.RESUME:
                running_since = step.t
            elif step.action is InfusionAction.RATE_CHANGE:
                if running_since is not None:
                    segments.append((running_since, step.t, rate))
                    running_since = step.t
                rate = step.new_rate_mg_per_h
            else:  # pause, stop
                if running_since is not None:
                    segments.append((running_since, step.t, rate))
                running_since = None
        if running_since is not None:
            segments.append((running_since, None, rate))
        return segments

    def _clipped(self, now: datetime) -> list[tuple[datetime, datetime, float]]:
        now = ensure_utc(now, "time")
        out = []
        for start, end, rate in self._segments():
            if start >= now:
                continue
            out.append((start, now if end is None or end > now else end, rate))
        return out

    def status_at(self, now: datetime) -> InfusionStatus:
        """Status taking into account only the steps at or before ``now``."""
        now = ensure_utc(now, "time")
        status = InfusionStatus.NOT_STARTED
        for step in self._steps:
            if step.t > now:
                break
            status = {
                InfusionAction.START: InfusionStatus.RUNNING, InfusionAction.RESUME: InfusionStatus.RUNNING,
                InfusionAction.PAUSE: InfusionStatus.PAUSED, InfusionAction.STOP: InfusionStatus.STOPPED,
            }.get(step.action, status)
        return status

    def running(self, now: datetime) -> bool:
        """True when the infusion is running at ``now``."""
        return self.status_at(now) is InfusionStatus.RUNNING

    def rate_at(self, now: datetime) -> float:
        """The set rate at ``now`` (mg/h): the plan rate before start; unchanged by pause."""
        now = ensure_utc(now, "time")
        rate = self.plan.rate_mg_per_h
        for step in self._steps:
            if step.t > now:
                break
            if step.rate_mg_per_h is not None:
                rate = step.rate_mg_per_h
        return rate

    def delivered_mg(self, now: datetime) -> float:
        """Dose delivered by ``now``, mg: ∫ rate dt over the running intervals (pauses excluded).

        Not capped at the planned dose: if the infusion runs on past it, the excess shows here
        (see :meth:`dose_complete`).
        """
        return sum(rate * _minutes(end - start) / 60.0 for start, end, rate in self._clipped(now))

    def elapsed_infusion_min(self, now: datetime) -> float:
        """Running time up to ``now``, minutes (pauses excluded)."""
        return sum(_minutes(end - start) for start, end, _ in self._clipped(now))

    def minutes_since_start(self, now: datetime) -> float | None:
        """Clock time since the start step, minutes (pauses included); None before the start."""
        now = ensure_utc(now, "time")
        start = self.started_at
        if start is None or now < start:
            return None
        end = self.ended_at
        return _minutes((end if end is not None and end < now else now) - start)

    def paused_min(self, now: datetime) -> float:
        """Time spent paused between start and ``now`` (or the stop), minutes."""
        since = self.minutes_since_start(now)
        return 0.0 if since is None else max(since - self.elapsed_infusion_min(now), 0.0)

    def remaining_mg(self, now: datetime) -> float:
        """Planned dose not yet delivered at ``now``, mg (never below 0)."""
        return max(self.plan.dose_mg - self.delivered_mg(now), 0.0)

    def remaining_min(self, now: datetime) -> float | None:
        """Running time still needed at the current set rate to reach the planned dose, minutes;
        None once the infusion is stopped."""
        if self.status_at(now) is InfusionStatus.STOPPED:
            return None
        return self.remaining_mg(now) / self.rate_at(now) * 60.0

    def _tolerance(self) -> float:
        return 1e-6 * max(self.plan.dose_mg, 1.0)

    def dose_reached_at(self, now: datetime) -> datetime | None:
        """When the delivered dose reached the planned dose, if it did by ``now``; else None."""
        target, total = self.plan.dose_mg, 0.0
        for start, end, rate in self._clipped(now):
            part = rate * _minutes(end - start) / 60.0
            if total + part >= target - self._tolerance():
                return min(start + timedelta(hours=max(target - total, 0.0) / rate), end)
            total += part
        return None

    def dose_complete(self, now: datetime) -> bool:
        """True once the planned dose has been delivered (the nurse should stop the infusion)."""
        return self.dose_reached_at(now) is not None

    def projected_completion_at(self, now: datetime) -> datetime | None:
        """When the planned dose will be reached if the infusion keeps running at the current rate;
        the time it was reached if already; None while not running (not started, paused, stopped)."""
        reached = self.dose_reached_at(now)
        if reached is not None:
            return reached
        if not self.running(now):
            return None
        return ensure_utc(now) + timedelta(minutes=self.remaining_min(now) or 0.0)

    def running_time_reached_at(self, minutes: float) -> datetime | None:
        """The instant the running time reached ``minutes``; if not yet and the infusion is running
        (last step start/resume/rate change), the projected instant; otherwise None."""
        accumulated = 0.0
        for start, end, _ in self._segments():
            if end is None:
                return start + timedelta(minutes=minutes - accumulated)
            length = _minutes(end - start)
            if accumulated + length >= minutes:
                return start + timedelta(minutes=minutes - accumulated)
            accumulated += length
        return None


# =========================================================================== esketamine

#: Esketamine per nasal spray device, mg.
MG_PER_DEVICE = 28
#: Minimum rest between nasal devices, minutes.
DEVICE_SPACING_MIN = 5
#: Monitoring after the first device lasts at least this long (REMS), minutes; a clinic may only raise it.
MIN_ESKETAMINE_MONITORING_MIN = 120
#: The meaning recorded with a clinically-stable sign-off.
CLINICALLY_STABLE_MEANING = "clinically stable for discharge"

_LOT = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,19}$")


class EsketaminePlan(BaseModel):
    """The planned esketamine nasal-spray dose for one session.

    ``dose_mg`` is 56 (2 devices) or 84 (3 devices); ``lot_number`` is required (3–20 letters, digits
    or '-', as printed on the carton; stored upper-case); ``monitoring_min`` is the monitoring period
    from the first device, at least 120 minutes (the clinic setting in force). Bad input raises
    ``ValidationError``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dose_mg: Literal[56, 84]
    lot_number: str
    monitoring_min: int = MIN_ESKETAMINE_MONITORING_MIN

    @field_validator("dose_mg", mode="before")
    @classmethod
    def _dose(cls, value: Any) -> Any:
        if value not in (56, 84):
            raise refuse(f"Esketamine dose {value} mg is not available: choose 56 mg (2 devices) "
                         "or 84 mg (3 devices)")
        return int(value)

    @field_validator("lot_number", mode="before")
    @classmethod
    def _lot(cls, value: Any) -> str:
        text = "" if value is None else str(value).strip().upper()
        if not text:
            raise refuse("Enter the lot number printed on the esketamine carton")
        if not _LOT.match(text):
            raise refuse(f"Lot number {text!r} should be 3–20 letters, digits or '-', as printed on the carton")
        return text

    @field_validator("monitoring_min")
    @classmethod
    def _monitoring(cls, value: int) -> int:
        if not MIN_ESKETAMINE_MONITORING_MIN <= value <= 480:
            raise refuse(f"Esketamine monitoring of {value} min is not allowed: it must last "
                         f"{MIN_ESKETAMINE_MONITORING_MIN}–480 min from the first device")
        return value

    @classmethod
    def for_clinic(cls, settings: "ClinicSettings", *, dose_mg: int, lot_number: str) -> "EsketaminePlan":
        """A plan with the clinic's monitoring period."""
        # validated like any plan: a dose other than 56 or 84 mg is refused with the model's message
        return cls.model_validate({"dose_mg": dose_mg, "lot_number": lot_number,
                                   "monitoring_min": settings.esketamine_monitoring_min})

    @property
    def devices(self) -> int:
        """Number of 28 mg devices: 2 for 56 mg, 3 for 84 mg."""
        return self.dose_mg // MG_PER_DEVICE

    def describe(self) -> str:
        """"56 mg (2 devices), lot AB123"."""
        return f"{self.dose_mg} mg ({self.devices} devices), lot {self.lot_number}"

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"protocol": "esketamine", **self.model_dump(mode="json")}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "EsketaminePlan":
        """Rebuild from :meth:`to_payload` output (validated again)."""
        return cls.model_validate({k: v for k, v in payload.items() if k != "protocol"})


class NasalDeviceEntry(BaseModel):
    """One nasal device taken: its number (1-based), time (UTC) and the user who observed it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int
    t: UtcDatetime
    by: Actor

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict with ``type`` "nasal_device"."""
        return {"type": "nasal_device", **self.model_dump(mode="json")}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "NasalDeviceEntry":
        """Rebuild from :meth:`to_payload` output; ``type`` and ``seq`` are ignored."""
        return cls.model_validate({k: v for k, v in payload.items() if k not in ("type", "seq")})


class NasalDeviceLog:
    """The nasal devices of one esketamine session and the monitoring period they start.

    :meth:`log_device` enforces at least 5 minutes between devices and at most the planned number.
    Monitoring ends no earlier than :attr:`monitoring_end_earliest` (first device + the plan's
    monitoring minutes, ≥ 120), for everyone; discharge also needs a clinician's clinically-stable
    sign-off (:meth:`sign_clinically_stable`, with user, time and meaning), which may be signed at
    any time after the last device but never shortens the monitoring period. Refusals raise
    :class:`NasalDeviceError`.
    """

    def __init__(self, plan: EsketaminePlan) -> None:
        self.plan = plan
        self._entries: list[NasalDeviceEntry] = []
        self._signoff: Signature | None = None

    @property
    def entries(self) -> tuple[NasalDeviceEntry, ...]:
        """Devices logged so far, in order."""
        return tuple(self._entries)

    @property
    def signoff(self) -> Signature | None:
        """The clinically-stable sign-off, if any."""
        return self._signoff

    @property
    def devices_logged(self) -> int:
        """How many devices have been logged."""
        return len(self._entries)

    @property
    def devices_remaining(self) -> int:
        """How many planned devices are still to be taken."""
        return self.plan.devices - len(self._entries)

    @property
    def complete(self) -> bool:
        """True once every planned device is logged."""
        return self.devices_remaining == 0

    @property
    def first_device_at(self) -> datetime | None:
        """Time of the first device (start of monitoring), or None."""
        return self._entries[0].t if self._entries else None

    @property
    def last_device_at(self) -> datetime | None:
        """Time of the latest device, or None."""
        return self._entries[-1].t if self._entries else None

    @property
    def next_device_allowed_at(self) -> datetime | None:
        """Earliest time for the next device (last + 5 min); None before the first or when complete."""
        if not self._entries or self.complete:
            return None
        return self._entries[-1].t + timedelta(minutes=DEVICE_SPACING_MIN)

    @property
    def monitoring_end_earliest(self) -> datetime | None:
        """First device + the plan's monitoring minutes (≥ 120); None before the first device."""
        first = self.first_device_at
        return None if first is None else first + timedelta(minutes=self.plan.monitoring_min)

    def minutes_since_first(self, now: datetime) -> float | None:
        """Minutes from the first device to ``now``; None before the first device."""
        first = self.first_device_at
        return None if first is None else _minutes(ensure_utc(now) - first)

    def monitoring_complete(self, now: datetime) -> bool:
        """True when the monitoring period (≥ 120 min from the first device) has run out at ``now``;
        a sign-off never shortens it."""
        now = ensure_utc(now)
        end = self.monitoring_end_earliest
        return end is not None and now >= end

    def log_device(self, t: datetime, user: Actor) -> NasalDeviceEntry:
        """Record that the patient took the next device at ``t``, observed by ``user``.

        Refused: more devices than planned ("All 2 devices for 56 mg are already logged"); less than
        5 minutes after the previous one ("Wait 5 minutes between nasal devices: next allowed at
        10:42"); a time before the previous device.
        """
        entry = NasalDeviceEntry(number=len(self._entries) + 1, t=ensure_utc(t, "device time"), by=user)
        return self._apply_device(entry)

    def _apply_device(self, entry: NasalDeviceEntry) -> NasalDeviceEntry:
        self.check_device(entry)
        self._entries.append(entry)
        return entry

    def next_entry(self, t: datetime, user: Actor) -> NasalDeviceEntry:
        """Build and check the entry for the next device at ``t`` without recording it."""
        entry = NasalDeviceEntry(number=len(self._entries) + 1, t=ensure_utc(t, "device time"), by=user)
        self.check_device(entry)
        return entry

    def check_device(self, entry: NasalDeviceEntry) -> None:
        """Raise :class:`NasalDeviceError` if ``entry`` cannot follow the devices logged so far."""
        if self.complete:
            raise NasalDeviceError(f"All {self.plan.devices} devices for {self.plan.dose_mg} mg are already logged")
        if entry.number != len(self._entries) + 1:
            raise NasalDeviceError(f"Device number {entry.number} is out of order: expected {len(self._entries) + 1}")
        if self._entries:
            last = self._entries[-1].t
            if entry.t < last:
                raise NasalDeviceError(f"Time {clock(entry.t)} is before the previous device at {clock(last)}")
            allowed = last + timedelta(minutes=DEVICE_SPACING_MIN)
            if entry.t < allowed:
                raise NasalDeviceError(f"Wait {DEVICE_SPACING_MIN} minutes between nasal devices: "
                                       f"next allowed at {clock(allowed)}")
        if self._signoff is not None:
            raise NasalDeviceError("The patient was already signed off as clinically stable")

    def sign_clinically_stable(self, t: datetime, by: Actor, note: str | None = None) -> Signature:
        """Record a clinician's judgement that the patient is clinically stable (needed for discharge,
        which is never before the end of the monitoring period). Refused before the first device,
        before the latest device, or twice."""
        sig = Signature(by=by, t=ensure_utc(t, "sign-off time"), meaning=CLINICALLY_STABLE_MEANING, note=note)
        return self._apply_signoff(sig)

    def _apply_signoff(self, sig: Signature) -> Signature:
        first, end = self.first_device_at, self.monitoring_end_earliest
        if first is None or end is None:
            raise NasalDeviceError("No nasal device has been logged yet")
        if self._signoff is not None:
            raise NasalDeviceError(f"Already signed off as clinically stable by "
                                   f"{self._signoff.printed_name} at {clock(self._signoff.t)}")
        if sig.t < self._entries[-1].t:
            raise NasalDeviceError(f"Time {clock(sig.t)} is before the last device at {clock(self._entries[-1].t)}")
        self._signoff = sig
        return sig

    def apply(self, payload: dict[str, Any]) -> NasalDeviceEntry | Signature:
        """Replay one stored payload ("nasal_device" or "clinically_stable")."""
        kind = payload.get("type")
        if kind == "nasal_device":
            return self._apply_device(NasalDeviceEntry.from_payload(payload))
        if kind == "clinically_stable":
            data = {k: v for k, v in payload.items() if k not in ("type", "seq")}
            return self._apply_signoff(Signature.model_validate(data))
        raise NasalDeviceError(f"Unknown nasal-device entry type {kind!r}")

    @staticmethod
    def signoff_payload(sig: Signature) -> dict[str, Any]:
        """The stored form of a clinically-stable sign-off (``type`` "clinically_stable")."""
        return {"type": "clinically_stable", **sig.to_payload()}

    @classmethod
    def from_steps(cls, plan: EsketaminePlan, payloads: Iterable[dict[str, Any]]) -> "NasalDeviceLog":
        """Rebuild a log by replaying stored payloads (the same checks apply)."""
        log = cls(plan)
        for payload in payloads:
            log.apply(payload)
        return log
