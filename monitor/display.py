"""What the screen shows about values, decided here so that ``ui/`` holds no clinical rules.

* :func:`tile_limits` — the alarm limits to print on a numeric tile (the limits of the
  lowest-priority level of each direction, i.e. the first ones a value crosses).
* :func:`trend_direction` — the trend arrow of a numeric: the change over the last minutes
  compared with a per-vital threshold of clinical significance.
* :func:`nibp_freshness` — whether a NIBP reading is current, ageing or stale for the schedule.
* :func:`signal_quality` — a short text for the device's signal from its active conditions.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from monitor.alarms.profile import AlarmProfile, LimitRule, NibpRule

#: A change over TREND_WINDOW larger than this (in the vital's unit) shows an arrow.
TREND_THRESHOLD: dict[str, float] = {
    "hr": 8.0, "pr": 8.0, "spo2": 2.0, "rr": 3.0, "etco2": 4.0, "temp": 0.3, "pi": 0.8,
    "nibp_sys": 15.0, "nibp_dia": 10.0, "nibp_mean": 10.0,
}
TREND_WINDOW = timedelta(minutes=5)


def tile_limits(profile: AlarmProfile, vital: str) -> tuple[float | None, float | None]:
    """(low, high) limits to show for ``vital``; None where no absolute limit applies."""
    low = high = None
    for rule in profile.rules:
        if isinstance(rule, LimitRule) and vital in rule.vitals:
            thresholds = [lv.threshold for lv in sorted(rule.levels, key=lambda lv: lv.priority)
                          if lv.threshold is not None]
            if not thresholds:
                continue
            if rule.direction == "high":
                high = thresholds[0] if high is None else min(high, thresholds[0])
            else:
                low = thresholds[0] if low is None else max(low, thresholds[0])
        elif isinstance(rule, NibpRule) and vital in ("nibp_sys", "nibp_dia"):
            field = "sys" if vital == "nibp_sys" else "dia"
            values = [getattr(lv, field) for lv in sorted(rule.levels, key=lambda lv: lv.priority)
                      if getattr(lv, field) is not None]
            if not values:
                continue
            if rule.direction == "high":
                high = values[0] if high is None else min(high, values[0])
            else:
                low = values[0] if low is None else max(low, values[0])
    return low, high


def trend_direction(vital: str, samples: Sequence[tuple[datetime, float]], now: datetime) -> int:
    """+1 rising, -1 falling, 0 steady: the median of the last minute against the median of the
    minute :data:`TREND_WINDOW` earlier (for NIBP: the last reading against the one before)."""
    threshold = TREND_THRESHOLD.get(vital)
    if threshold is None or len(samples) < 2:
        return 0
    if vital.startswith("nibp_"):
        delta = samples[-1][1] - samples[-2][1]
    else:
        recent = sorted(v for t, v in samples if now - t <= timedelta(minutes=1))
        earlier = sorted(v for t, v in samples
                         if TREND_WINDOW <= now - t <= TREND_WINDOW + timedelta(minutes=1))
        if not recent or not earlier:
            return 0
        delta = recent[len(recent) // 2] - earlier[len(earlier) // 2]
    if delta >= threshold:
        return 1
    if delta <= -threshold:
        return -1
    return 0


class Freshness(str, enum.Enum):
    """How current a NIBP reading is."""

    CURRENT = "current"
    AGEING = "ageing"     # older than the scheduled interval: the next one is due
    STALE = "stale"       # older than twice the interval (or 30 min): dim it


def nibp_freshness(reading_time: datetime | None, now: datetime, interval_min: float | None) -> Freshness:
    """Freshness of a NIBP reading for a schedule of one reading every ``interval_min`` minutes
    (15 min when no session schedule applies)."""
    if reading_time is None:
        return Freshness.STALE
    interval = timedelta(minutes=interval_min or 15)
    age = now - reading_time
    if age > max(2 * interval, timedelta(minutes=30)):
        return Freshness.STALE
    if age > interval:
        return Freshness.AGEING
    return Freshness.CURRENT


_QUALITY_ORDER = ("no_sensor", "sensor_off", "defective_sensor", "no_cable", "artifact", "interference",
                  "out_of_track", "pulse_search", "low_perfusion", "low_signal_quality", "marginal_perfusion")


def signal_quality(active_conditions: Iterable[str]) -> str:
    """"Good", or the most important signal problem among the device's active conditions."""
    from drivers.base import condition_text

    active = set(active_conditions)
    for code in _QUALITY_ORDER:
        if code in active:
            return condition_text(code)
    return "Good"


def alarm_unit(profile: AlarmProfile, condition: str) -> str:
    """The unit of the value an alarm reports ("%", "bpm", "mmHg"…; "" for technical alarms)."""
    from drivers.catalogue import CATALOGUE
    from monitor.alarms.profile import AssessmentRule, NoBreathRule

    for rule in profile.rules:
        if rule.id != condition:
            continue
        if isinstance(rule, LimitRule):
            return CATALOGUE[rule.vitals[0]].unit
        if isinstance(rule, NibpRule):
            return "mmHg"
        if isinstance(rule, NoBreathRule):
            return "s"
        if isinstance(rule, AssessmentRule):
            return ""
    return ""


def alarm_text(alarm, profile: AlarmProfile) -> str:
    """One line for an alarm: "SpO2 low 85 % (limit 88)", "Device connection lost"."""
    if alarm.kind == "technical" or alarm.value is None:
        return alarm.label
    unit = alarm_unit(profile, alarm.condition)
    value = f"{alarm.value:g}{'' if unit in ('', '%') else ' '}{unit}"
    limit = "" if alarm.limit is None else f" (limit {alarm.limit:g})"
    if alarm.condition == "no_breath":
        return alarm.label + f" ≥ {alarm.limit:g} s" if alarm.limit is not None else alarm.label
    return f"{alarm.label} {value}{limit}"


def alarm_vitals(profile: AlarmProfile, condition: str) -> set[str]:
    """The vitals whose tiles show an alarm of ``condition`` (empty for technical alarms)."""
    from monitor.alarms.profile import NoBreathRule

    for rule in profile.rules:
        if rule.id != condition:
            continue
        if isinstance(rule, LimitRule):
            return {v for v in rule.vitals if not v.startswith("nibp_")} | (
                {"nibp_sys"} if any(v.startswith("nibp_") for v in rule.vitals) else set())
        if isinstance(rule, NibpRule):
            return {"nibp_sys"}
        if isinstance(rule, NoBreathRule):
            return {"rr", "etco2"}
    return set()
