"""Scenarios of the simulated monitor: what happens to the patient, minute by minute.

Time ``t`` is simulated seconds since the simulated monitor started; Vigil's accelerated tests and
``vigil record`` start the infusion at once, so ``t`` is also time since infusion start.
Every scenario includes the ordinary haemodynamic response to ketamine (blood pressure and heart
rate rising to a peak near 40 minutes, then settling) — ``normal`` is only that, and stays
inside the clinic's default alarm limits. The others add one problem on a fixed timetable, so
that tests and nurse educators know when to expect which alarm:

======================  =======================================================================
``normal``              SBP 124→~134, HR 74→~80 at 40 min; no alarm.
``hypertensive_surge``  SBP climbs to ~186 / DBP ~114 at 40 min (≥160 from ~22 min, ≥180 from
                        ~33 min), then settles over the next hour.
``desaturation``        SpO2 98→85 from 12:00 over 90 s, held 2 min, back by ~17:30; a
                        second dip to 90 % at 45:00 for 60 s.
``bradycardia``         HR 74→45 from 15:00 over 60 s, held 4 min, with a dip to 37 at
                        17:00–17:40.
``tachycardia``         HR 74→128 from 10:00 over 60 s, held 7 min; a spike to 156 at
                        20:00–20:40.
``apnea``               RR 14→6 from 25:00 over 2 min (hypopnoea), then no breath from 27:00 for
                        50 s; SpO2 drifts to ~90 and recovers.
``sensor_off``          SpO2 sensor off the finger 15:00–16:30 (no SpO2, PR, PI or pleth).
``motion_artifact``     Motion at 8:00–9:00, 20:00–22:00 and 33:00–34:00: noisy pleth, erratic
                        SpO2 and PR, device reports artifact.
``cable_pull``          Monitor cable pulled 20:00–21:30: the device link is lost, then restored.
======================  =======================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Baseline physiology of the simulated adult patient.
BASELINE: dict[str, float] = {
    "hr": 74.0, "spo2": 98.0, "nibp_sys": 124.0, "nibp_dia": 78.0, "rr": 14.0,
    "etco2": 37.0, "temp": 36.7, "pi": 3.2,
}

SCENARIOS: dict[str, str] = {
    "normal": "Uneventful infusion: the usual modest rise in BP and HR, no alarms.",
    "hypertensive_surge": "BP climbs to about 186/114 near 40 min into the infusion.",
    "desaturation": "SpO2 falls to 85 % at 12 min for about 4 min; a smaller dip at 45 min.",
    "bradycardia": "Heart rate falls to 45 at 15 min, briefly 37 at 17 min.",
    "tachycardia": "Heart rate 128 from 10 min for 7 min, a spike to 156 at 20 min.",
    "apnea": "Hypopnoea from 25 min, then no breath for 50 s at 27 min.",
    "sensor_off": "SpO2 sensor off the finger from 15:00 to 16:30.",
    "motion_artifact": "Patient moving at 8, 20 and 33 min: artifact on the oximeter.",
    "cable_pull": "Monitor cable pulled at 20:00, reconnected at 21:30.",
}


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def envelope(t: float, start: float, rise: float, hold: float, fall: float) -> float:
    """0 before ``start``, rising smoothly to 1 over ``rise`` s, 1 for ``hold`` s, back to 0
    over ``fall`` s (all in seconds)."""
    if t < start:
        return 0.0
    t -= start
    if t < rise:
        return _smoothstep(t / rise) if rise > 0 else 1.0
    t -= rise
    if t < hold:
        return 1.0
    t -= hold
    if t < fall:
        return 1.0 - _smoothstep(t / fall)
    return 0.0


def ketamine_response(t: float) -> float:
    """The usual haemodynamic response to a 40-minute ketamine infusion, 0..1, peaking at 40 min."""
    minutes = t / 60.0
    if minutes <= 40.0:
        return _smoothstep(minutes / 40.0)
    return math.exp(-(minutes - 40.0) / 25.0)


def _in(t: float, start_min: float, end_min: float) -> bool:
    return start_min * 60.0 <= t < end_min * 60.0


@dataclass(frozen=True)
class Scenario:
    """One named scenario: targets, device conditions and link state as functions of time."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.name!r}; choose one of: {', '.join(SCENARIOS)}")

    @property
    def description(self) -> str:
        """One line for menus and --help."""
        return SCENARIOS[self.name]

    def targets(self, t: float) -> dict[str, float]:
        """Noise-free physiological values at ``t`` (rr 0 = no breathing)."""
        k = ketamine_response(t)
        v = dict(BASELINE)
        surge = self.name == "hypertensive_surge"
        v["nibp_sys"] += (62.0 if surge else 10.0) * k
        v["nibp_dia"] += (36.0 if surge else 6.0) * k
        v["hr"] += (14.0 if surge else 6.0) * k
        if self.name == "desaturation":
            dip = envelope(t, 12 * 60, 90, 120, 60)
            v["spo2"] -= 13.0 * dip + 8.0 * envelope(t, 45 * 60, 30, 60, 30)
            v["hr"] += 10.0 * dip
        elif self.name == "bradycardia":
            v["hr"] -= (v["hr"] - 45.0) * envelope(t, 15 * 60, 60, 240, 60)
            v["hr"] -= 8.0 * envelope(t, 17 * 60, 5, 35, 5)
        elif self.name == "tachycardia":
            v["hr"] += (128.0 - v["hr"]) * envelope(t, 10 * 60, 60, 420, 60)
            v["hr"] += (156.0 - v["hr"]) * envelope(t, 20 * 60, 5, 35, 5)
        elif self.name == "apnea":
            hypo = envelope(t, 25 * 60, 120, 60 + 50, 90)
            v["rr"] -= 8.0 * hypo
            v["etco2"] += 11.0 * hypo
            if _in(t, 27, 27 + 50 / 60):
                v["rr"] = 0.0
            v["spo2"] -= 8.0 * envelope(t, 27 * 60 + 20, 40, 20, 90)
        elif self.name == "motion_artifact" and self.artifact(t):
            v["pi"] *= 0.6
        return v

    def artifact(self, t: float) -> bool:
        """True while the patient is moving (``motion_artifact``)."""
        return self.name == "motion_artifact" and (_in(t, 8, 9) or _in(t, 20, 22) or _in(t, 33, 34))

    def sensor_off(self, t: float) -> bool:
        """True while the SpO2 sensor is off the finger (``sensor_off``)."""
        return self.name == "sensor_off" and _in(t, 15, 16.5)

    def disconnected(self, t: float) -> bool:
        """True while the monitor cable is pulled (``cable_pull``)."""
        return self.name == "cable_pull" and _in(t, 20, 21.5)
