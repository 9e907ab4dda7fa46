"""Resampling and per-vital statistics shared by the exporters (numpy, no Qt).

* :func:`interval_medians` — the median of each ``interval_s`` interval (aligned on the session
  start), vectorised; intervals without a value are left out.
* :func:`interval_last` — the last value of each interval (NIBP readings "placed in their interval").
* :func:`vital_stats` — min / max / mean of the usable values, and the time spent outside the clinic's
  default alarm limits (the first, lowest-priority level of each limit rule of the shipped default
  profile; for NIBP, the number of readings beyond the first level).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["interval_medians", "interval_last", "Limit", "default_limits", "VitalStats", "vital_stats",
           "CONTINUOUS", "NIBP_KEYS", "MAX_SAMPLE_S"]

#: NIBP keys: discrete cuff readings, never averaged.
NIBP_KEYS = ("nibp_sys", "nibp_dia", "nibp_mean")
#: Continuous vitals (everything but NIBP), catalogue order.
CONTINUOUS = ("hr", "pr", "spo2", "pi", "rr", "etco2", "temp", "spco", "spmet", "sphb", "pvi")
#: A sample counts for the time up to the next sample, at most this long (s): a gap is not time out of limits.
MAX_SAMPLE_S = 5.0


def _bins(t: np.ndarray, start: float, interval: float) -> np.ndarray:
    return np.floor((t - start) / interval).astype(np.int64)


def interval_medians(t: np.ndarray, v: np.ndarray, start: float, interval: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(interval start times, medians, counts)`` of the values ``v`` at times ``t`` (NaN values
    ignored), for intervals ``[start + k·interval, start + (k+1)·interval)`` holding at least one value.
    ``interval`` must be positive (``ValueError``)."""
    if not interval > 0:
        raise ValueError("interval must be positive")
    ok = ~np.isnan(v)
    t, v = t[ok], v[ok]
    if not len(t):
        empty = np.empty(0)
        return empty, empty, np.empty(0, dtype=np.int64)
    b = _bins(t, start, interval)
    order = np.lexsort((v, b))
    b, v = b[order], v[order]
    first = np.flatnonzero(np.diff(b, prepend=b[0] - 1))
    counts = np.diff(np.append(first, len(b)))
    lo = v[first + (counts - 1) // 2]
    hi = v[first + counts // 2]
    keys = b[first]
    return start + keys * interval, (lo + hi) / 2.0, counts


def interval_last(t: np.ndarray, v: np.ndarray, start: float, interval: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(interval start times, last value)`` per interval holding a value (NaN ignored)."""
    ok = ~np.isnan(v)
    t, v = t[ok], v[ok]
    if not len(t):
        return np.empty(0), np.empty(0)
    b = _bins(t, start, interval)
    last = np.flatnonzero(np.diff(b, append=b[-1] + 1))
    return start + b[last] * interval, v[last]


@dataclass(frozen=True)
class Limit:
    """A default alarm limit on one vital: ``direction`` "high"/"low", ``threshold``, ``inclusive``."""

    vital: str
    direction: str
    threshold: float
    inclusive: bool
    label: str

    def beyond(self, v: np.ndarray) -> np.ndarray:
        """Boolean mask of the values beyond the limit."""
        if self.direction == "high":
            return v >= self.threshold if self.inclusive else v > self.threshold
        return v <= self.threshold if self.inclusive else v < self.threshold

    def text(self) -> str:
        """"> 120", "≤ 91"."""
        sign = {("high", False): ">", ("high", True): "≥", ("low", False): "<", ("low", True): "≤"}
        return f"{sign[(self.direction, self.inclusive)]} {self.threshold:g}"


@functools.lru_cache(maxsize=1)
def default_limits() -> dict[str, tuple[Limit, ...]]:
    """vital → its default limits (from the shipped default alarm profile)."""
    from monitor.alarms.profile import LimitRule, NibpRule, default_profile
    out: dict[str, list[Limit]] = {}
    for rule in default_profile().rules:
        if isinstance(rule, LimitRule):
            absolute = [(lv, lv.threshold) for lv in rule.levels if lv.threshold is not None]  # absolute part only
            if not absolute:
                continue
            first, threshold = min(absolute, key=lambda pair: pair[0].priority)
            for vital in rule.vitals:
                out.setdefault(vital, []).append(Limit(vital, rule.direction, float(threshold), first.inclusive,
                                                       rule.label))
        elif isinstance(rule, NibpRule):
            nibp = min(rule.levels, key=lambda lv: lv.priority)
            for vital, value in (("nibp_sys", nibp.sys), ("nibp_dia", nibp.dia)):
                if value is not None:
                    out.setdefault(vital, []).append(Limit(vital, rule.direction, float(value), nibp.inclusive, rule.label))
    return {k: tuple(v) for k, v in out.items()}


@dataclass(frozen=True)
class VitalStats:
    """Statistics of one vital: ``n`` usable values, min/max/mean (None without values), seconds
    outside the default limits (continuous vitals) or readings outside them (NIBP), and the limits."""

    vital: str
    n: int
    min: float | None
    max: float | None
    mean: float | None
    outside_s: float | None
    outside_readings: int | None
    limits: tuple[Limit, ...]


def vital_stats(vital: str, t: np.ndarray, v: np.ndarray) -> VitalStats:
    """Statistics of the usable values ``v`` at times ``t`` (already without flagged values)."""
    limits = default_limits().get(vital, ())
    if not len(v):
        return VitalStats(vital, 0, None, None, None, None if vital not in NIBP_KEYS else 0, None, limits)
    beyond = np.zeros(len(v), dtype=bool)
    for lim in limits:
        beyond |= lim.beyond(v)
    mean = float(np.mean(v))
    if vital in NIBP_KEYS:
        return VitalStats(vital, len(v), float(v.min()), float(v.max()), mean, None,
                          int(beyond.sum()) if limits else None, limits)
    durations = np.minimum(np.diff(t, append=t[-1] + 1.0), MAX_SAMPLE_S)
    durations = np.clip(durations, 0.0, None)
    outside = float(durations[beyond].sum()) if limits else None
    return VitalStats(vital, len(v), float(v.min()), float(v.max()), mean if math.isfinite(mean) else None,
                      outside, None, limits)
