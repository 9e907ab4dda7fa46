"""Readings the session keeps and what it derives from them before dosing: NIBP readings, the
pre-dose BP, the baseline, the pre-dose BP advisory and its decision, and charted items."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from monitor.assessments import Assessment, Event
from monitor.staff import Actor, UtcDatetime, clock, ensure_utc, refuse

#: Continuous vitals: the baseline is the median of this many seconds before dosing.
BASELINE_WINDOW_S = 120.0
#: Two pre-dose NIBP readings this close together are averaged for the baseline, minutes.
NIBP_PAIR_WITHIN_MIN = 10.0




class NibpReading(BaseModel):
    """One blood-pressure reading: systolic/diastolic/mean mmHg at ``t`` (UTC), from the device or
    entered by hand (``by`` required for manual). Systolic 30–300, diastolic 10–250, systolic above
    diastolic; otherwise ``ValidationError``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    t: UtcDatetime
    sys: float
    dia: float
    mean: float | None = None
    source: Literal["device", "manual"] = "device"
    by: Actor | None = None
    seq: int | None = None

    @model_validator(mode="after")
    def _check(self) -> "NibpReading":
        if not 30 <= self.sys <= 300:
            raise refuse(f"Systolic BP {self.sys:g} mmHg is outside 30–300 mmHg")
        if not 10 <= self.dia <= 250:
            raise refuse(f"Diastolic BP {self.dia:g} mmHg is outside 10–250 mmHg")
        if self.sys <= self.dia:
            raise refuse(f"BP {self.sys:g}/{self.dia:g}: systolic must be above diastolic")
        if self.mean is not None and not 15 <= self.mean <= 270:
            raise refuse(f"Mean BP {self.mean:g} mmHg is outside 15–270 mmHg")
        if self.source == "manual" and self.by is None:
            raise refuse("A manual BP must record who measured it")
        return self

    def text(self) -> str:
        """"128/82 at 10:05"."""
        return f"{self.sys:.0f}/{self.dia:.0f} at {clock(self.t)}"


def pre_dose_bp(readings: Sequence[NibpReading], before: datetime | None = None) -> tuple[float, float, datetime, str] | None:
    """The pre-dose BP from NIBP readings at or before ``before`` (all if None): the last reading,
    or the mean of the last two when they are within 10 minutes of each other.

    Returns ``(systolic, diastolic, time of the last reading, how)`` or None without readings.
    """
    usable = [r for r in readings if before is None or r.t <= before]
    if not usable:
        return None
    last = usable[-1]
    if len(usable) >= 2 and (last.t - usable[-2].t) <= timedelta(minutes=NIBP_PAIR_WITHIN_MIN):
        prev = usable[-2]
        return ((prev.sys + last.sys) / 2, (prev.dia + last.dia) / 2, last.t,
                f"mean of {prev.text()} and {last.text()}")
    return last.sys, last.dia, last.t, f"reading at {clock(last.t)}"


class Baseline(BaseModel):
    """Pre-dose baseline values, by vital key (``nibp_sys``, ``nibp_dia``, ``hr``, ``spo2`` …), with
    how each was obtained (``methods``) and when (``t``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    values: dict[str, float]
    methods: dict[str, str]
    t: UtcDatetime

    @property
    def sys(self) -> float | None:
        """Baseline systolic BP, mmHg."""
        return self.values.get("nibp_sys")

    @property
    def dia(self) -> float | None:
        """Baseline diastolic BP, mmHg."""
        return self.values.get("nibp_dia")


def compute_baseline(samples: Mapping[str, Iterable[tuple[datetime, float]]], nibp: Sequence[NibpReading],
                     dosing_at: datetime, *, window_s: float = BASELINE_WINDOW_S) -> Baseline:
    """Baseline at ``dosing_at``: for each continuous vital, the median of its samples in the
    ``window_s`` seconds (default 120) up to dosing; for NIBP, :func:`pre_dose_bp`. Vitals without
    samples in the window are left out (and named in ``methods`` as missing)."""
    dosing_at = ensure_utc(dosing_at, "dosing time")
    start = dosing_at - timedelta(seconds=window_s)
    values: dict[str, float] = {}
    methods: dict[str, str] = {}
    for vital, series in samples.items():
        window = [v for t, v in series if start <= t <= dosing_at]
        if window:
            values[vital] = float(statistics.median(window))
            methods[vital] = f"median of {len(window)} readings in the {window_s / 60:g} min before dosing"
        else:
            methods[vital] = f"no readings in the {window_s / 60:g} min before dosing"
    bp = pre_dose_bp(nibp, dosing_at)
    if bp is not None:
        values["nibp_sys"], values["nibp_dia"] = bp[0], bp[1]
        methods["nibp_sys"] = methods["nibp_dia"] = bp[3]
    return Baseline(values=values, methods=methods, t=dosing_at)


class BpAdvisory(BaseModel):
    """A pre-dose BP above the clinic's advisory threshold (default 140/90) that needs a decision."""

    model_config = ConfigDict(frozen=True)

    t: datetime
    sys: float
    dia: float
    limit_sys: int
    limit_dia: int

    def text(self) -> str:
        """The advisory line for the nurse."""
        return (f"Pre-dose BP {self.sys:.0f}/{self.dia:.0f} is above {self.limit_sys}/{self.limit_dia}: "
                "record a decision to proceed or defer")


class BpDecision(BaseModel):
    """The recorded decision on a pre-dose BP advisory: proceed or defer, by whom, when, on which BP."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision: Literal["proceed", "defer"]
    t: UtcDatetime
    by: Actor
    sys: float
    dia: float
    note: str | None = None

    @field_validator("note")
    @classmethod
    def _note(cls, value: str | None) -> str | None:
        if value is not None and len(value.strip()) > 500:
            raise refuse("A decision note may have at most 500 characters")
        return value.strip() or None if value is not None else None


@dataclass(frozen=True)
class Charted:
    """An assessment on the chart: entry ``seq``, clinical time ``t`` (UTC), who, and the assessment."""

    seq: int
    t: datetime
    by: Actor
    assessment: Assessment


@dataclass(frozen=True)
class ChartedEvent:
    """An event on the chart: entry ``seq``, clinical time ``t`` (UTC), who, and the event."""

    seq: int
    t: datetime
    by: Actor
    event: Event
