"""The limits a clinic cannot go past: hard floors and ceilings, and the alarms every profile keeps.

A clinic may change its default alarm limits and a chair may adjust them for one session, but an
alarm profile that would let a dangerous value pass silently is refused (:func:`check_profile`):
at load (the clinic's file), at save (the charge nurse's settings) and for each change at the chair
(:meth:`AlarmProfile.adjusted <monitor.alarms.profile.AlarmProfile.adjusted>`). The refusal names
every problem at once.

Where the numbers come from (docs/alarms.md, "Limits a clinic cannot go past"): a threshold may go
as far as the widest *bound* of the shipped clinic default (the range a chair may already choose, e.g.
SpO2 MEDIUM 85–94 %), never further; what the shipped default does not let a chair change (delays,
priorities, the relative limits, the no-breath time, the MOAA/S score, the technical alarms) may be
made stricter, never looser than the clinic table it comes from (clinical requirements §4).

Rules are found by what they watch, not by their ids: a profile passes when *some* rule of the right
kind, watching the right vitals in the right direction, has a level of at least the required priority
that meets every hard limit. A rule renamed by hand still counts; a rule deleted does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from monitor.alarms.profile import (
    AlarmProfile, AssessmentRule, Level, LimitRule, NibpLevel, NibpRule, NoBreathRule, ParameterLossRule, Priority,
    TechnicalRule, UnsafeProfileError,
)

__all__ = ["LimitFloor", "NibpFloor", "TECHNICAL_REQUIRED", "LOST_PARAMETERS", "LIMIT_FLOORS", "NIBP_FLOORS",
           "NO_BREATH_MAX_S", "MOAAS_AT_OR_BELOW_MIN", "PARAMETER_LOSS_MAX_S", "LINK_ESCALATION_MAX_S",
           "profile_problems", "check_profile"]

MEDIUM, HIGH, LOW = Priority.MEDIUM, Priority.HIGH, Priority.LOW


@dataclass(frozen=True)
class LimitFloor:
    """A continuous-vital alarm every profile keeps.

    ``what`` names it in messages; ``vitals`` must all be watched by the rule (HR rules judge the
    oximeter's pulse rate when the ECG gives none, so both); ``direction`` "low" or "high";
    ``priority``: the lowest priority that satisfies it. ``limit`` (in ``unit``): the hard floor of a
    low threshold (the threshold may not be below it) or the hard ceiling of a high one; None for a
    limit relative to baseline, which then needs ``relative_percent`` or ``relative_points`` at most
    this. ``max_delay_s``: the longest condition delay; ``max_satseconds``: the largest SatSeconds
    (None: SatSeconds not allowed), always with a safety net of at most 3 dips within at least 60 s.
    ``escalate_within_s``: the level must escalate to HIGH within this many seconds when sustained
    (only asked of a level of exactly ``priority``)."""

    what: str
    vitals: tuple[str, ...]
    direction: str
    priority: Priority
    limit: float | None
    unit: str
    max_delay_s: float
    max_satseconds: float | None = None
    relative_percent: float | None = None
    relative_points: float | None = None
    escalate_within_s: float | None = None


@dataclass(frozen=True)
class NibpFloor:
    """A cuff-reading alarm every profile keeps: systolic (and diastolic, when given) thresholds no
    further than ``sys``/``dia`` mmHg (a ceiling for "high", a floor for "low"). ``confirm_min_s``:
    the level must rise to HIGH when the next reading confirms it, waiting at least this long for it."""

    what: str
    direction: str
    priority: Priority
    sys: float
    dia: float | None = None
    confirm_min_s: float | None = None


#: Continuous vitals (clinical table §4; the bounds of the shipped default as the hard limits).
LIMIT_FLOORS: tuple[LimitFloor, ...] = (
    LimitFloor("SpO2 low", ("spo2",), "low", MEDIUM, 85, "%", 15, max_satseconds=25),
    LimitFloor("SpO2 low", ("spo2",), "low", HIGH, 80, "%", 0),
    LimitFloor("Heart rate high", ("hr", "pr"), "high", MEDIUM, 140, "/min", 30, escalate_within_s=300),
    LimitFloor("Heart rate high", ("hr", "pr"), "high", HIGH, 180, "/min", 10),
    LimitFloor("Heart rate low", ("hr", "pr"), "low", MEDIUM, 40, "/min", 30),
    LimitFloor("Heart rate low", ("hr", "pr"), "low", HIGH, 30, "/min", 10),
    LimitFloor("Respiratory rate low", ("rr",), "low", MEDIUM, 6, "/min", 30),
    LimitFloor("Respiratory rate high", ("rr",), "high", MEDIUM, 40, "/min", 30),
    LimitFloor("EtCO2 high", ("etco2",), "high", MEDIUM, 60, "mmHg", 30),
    LimitFloor("EtCO2 rise from baseline", ("etco2",), "high", MEDIUM, None, "mmHg", 30, relative_points=10),
    LimitFloor("Systolic BP rise from baseline", ("nibp_sys",), "high", MEDIUM, None, "%", 0, relative_percent=30),
    LimitFloor("Heart rate rise from baseline", ("hr", "pr"), "high", MEDIUM, None, "%", 0, relative_percent=30),
)

#: Cuff readings (§4; the shipped default's bounds as the hard limits).
NIBP_FLOORS: tuple[NibpFloor, ...] = (
    NibpFloor("Blood pressure high (advisory)", "high", LOW, 180, 110),
    NibpFloor("Blood pressure high", "high", MEDIUM, 200, 120, confirm_min_s=900),
    NibpFloor("Blood pressure high (severe)", "high", HIGH, 220, 130),
    NibpFloor("Blood pressure low", "low", MEDIUM, 70),
)

#: No breath: a HIGH alarm after at most this many seconds.
NO_BREATH_MAX_S = 30.0
#: A charted MOAA/S at or below a score of at least this raises a HIGH alarm.
MOAAS_AT_OR_BELOW_MIN = 2.0
#: Technical conditions every profile raises, at least at MEDIUM.
TECHNICAL_REQUIRED: tuple[str, ...] = (
    "connection_lost", "stale_data", "sensor_off", "no_sensor", "cuff_error", "ecg_leads_off", "recording_failed",
    "audio_unavailable", "dose_reached", "data_unreadable",
)
#: The device link's conditions must become HIGH within this many seconds.
LINK_ESCALATION_MAX_S = 60.0
LINK_CODES = ("connection_lost", "stale_data")
#: Parameters watched for loss (each by exactly these vitals), MEDIUM after at most
#: :data:`PARAMETER_LOSS_MAX_S`.
LOST_PARAMETERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("SpO2", frozenset({"spo2"})), ("HR/PR", frozenset({"hr", "pr"})), ("RR", frozenset({"rr"})),
    ("EtCO2", frozenset({"etco2"})),
)
PARAMETER_LOSS_MAX_S = 30.0


def _g(value: float) -> str:
    return f"{value:g}"


# ------------------------------------------------------------------------------ limit rules
def _limit_failures(floor: LimitFloor, level: Level) -> list[str]:
    """Why ``level`` does not meet ``floor`` (empty: it does)."""
    out: list[str] = []
    unit = f" {floor.unit}"
    if floor.limit is not None:
        if level.threshold is None:
            out.append("it has no fixed threshold")
        elif floor.direction == "low" and level.threshold < floor.limit:
            out.append(f"limit {_g(level.threshold)}{unit} is below the hard floor {_g(floor.limit)}{unit}")
        elif floor.direction == "high" and level.threshold > floor.limit:
            out.append(f"limit {_g(level.threshold)}{unit} is above the hard ceiling {_g(floor.limit)}{unit}")
    else:
        rel = level.relative
        for most, given, suffix in ((floor.relative_percent, None if rel is None else rel.percent, " %"),
                                    (floor.relative_points, None if rel is None else rel.points, unit)):
            if most is None:
                continue
            if given is None:
                out.append(f"it has no limit relative to baseline (at most {_g(most)}{suffix})")
            elif given > most:
                out.append(f"{_g(given)}{suffix} above baseline is more than the most allowed {_g(most)}{suffix}")
    if level.satseconds is not None:
        if floor.max_satseconds is None:
            out.append("SatSeconds are not allowed here (a fixed delay is)")
        elif level.satseconds > floor.max_satseconds:
            out.append(f"SatSeconds {_g(level.satseconds)} is more than the most allowed {_g(floor.max_satseconds)}")
        net = level.safety_net
        if floor.max_satseconds is not None and (net is None or net.violations > 3 or net.window_s < 60):
            out.append("SatSeconds need a safety net of at most 3 dips within at least 60 s")
    elif level.delay_s > floor.max_delay_s:
        out.append(f"delay {_g(level.delay_s)} s is longer than the most allowed {_g(floor.max_delay_s)} s")
    if floor.escalate_within_s is not None and level.priority == floor.priority:
        if level.escalate_to is None or level.escalate_after_s is None or level.escalate_to < HIGH:
            out.append(f"it must escalate to HIGH when sustained {_g(floor.escalate_within_s)} s")
        elif level.escalate_after_s > floor.escalate_within_s:
            out.append(f"escalation after {_g(level.escalate_after_s)} s is later than the most allowed "
                       f"{_g(floor.escalate_within_s)} s")
    return out


def _bounds_past(direction: str, bounds: tuple[float, float], limit: float, unit: str, part: str = "") -> list[str]:
    """Why a level's bounds (what a chair may choose) reach past the hard ``limit`` (empty: they do not)."""
    low, high = bounds
    what = f"its {part + ' ' if part else ''}bounds {_g(low)}–{_g(high)} {unit} let a chair go"
    if direction == "low" and low < limit:
        return [f"{what} below the hard floor {_g(limit)} {unit}"]
    if direction == "high" and high > limit:
        return [f"{what} above the hard ceiling {_g(limit)} {unit}"]
    return []


def _limit_problems(profile: AlarmProfile) -> Iterable[str]:
    for floor in LIMIT_FLOORS:
        rules = [r for r in profile.rules if isinstance(r, LimitRule) and r.direction == floor.direction
                 and set(floor.vitals) <= set(r.vitals)]
        levels = [lv for r in rules for lv in r.levels if lv.priority >= floor.priority]
        for level in levels:
            if floor.limit is not None and level.bounds is not None and level.priority == floor.priority:
                for why in _bounds_past(floor.direction, level.bounds, floor.limit, floor.unit):
                    yield f"{floor.what} {floor.priority.name}: {why}"
        if any(not _limit_failures(floor, lv) for lv in levels):
            continue
        if not rules:
            yield f"{floor.what}: the rule is missing (no {floor.direction} limit on {' and '.join(floor.vitals)})"
        elif not levels:
            yield f"{floor.what}: no {floor.priority.name} level (required)"
        else:
            shown = next((lv for lv in levels if lv.priority == floor.priority), levels[0])
            yield f"{floor.what} {floor.priority.name}: " + "; ".join(_limit_failures(floor, shown))


# ------------------------------------------------------------------------------ NIBP
def _nibp_failures(floor: NibpFloor, level: NibpLevel) -> list[str]:
    """Why ``level`` does not meet ``floor`` (empty: it does)."""
    out: list[str] = []
    for part, need, value in (("systolic", floor.sys, level.sys), ("diastolic", floor.dia, level.dia)):
        if need is None:
            continue
        if value is None:
            out.append(f"it has no {part} threshold")
        elif floor.direction == "high" and value > need:
            out.append(f"{part} limit {_g(value)} mmHg is above the hard ceiling {_g(need)} mmHg")
        elif floor.direction == "low" and value < need:
            out.append(f"{part} limit {_g(value)} mmHg is below the hard floor {_g(need)} mmHg")
    if floor.confirm_min_s is not None and level.priority == floor.priority:
        if level.confirm_priority is None or level.confirm_priority < HIGH or level.confirm_within_s is None:
            out.append("it must rise to HIGH when the next reading confirms it")
        elif level.confirm_within_s < floor.confirm_min_s:
            out.append(f"it waits only {_g(level.confirm_within_s)} s for the confirming reading "
                       f"(at least {_g(floor.confirm_min_s)} s: a 15-min cuff cycle)")
    return out


def _nibp_problems(profile: AlarmProfile) -> Iterable[str]:
    for floor in NIBP_FLOORS:
        levels = [lv for r in profile.rules if isinstance(r, NibpRule) and r.direction == floor.direction
                  for lv in r.levels if lv.priority >= floor.priority]
        for level in (lv for lv in levels if lv.priority == floor.priority):
            for part, need, bounds in (("systolic", floor.sys, level.bounds_sys),
                                       ("diastolic", floor.dia, level.bounds_dia)):
                if need is not None and bounds is not None:
                    for why in _bounds_past(floor.direction, bounds, need, "mmHg", part):
                        yield f"{floor.what} {floor.priority.name}: {why}"
        if any(not _nibp_failures(floor, lv) for lv in levels):
            continue
        same = [lv for lv in levels if lv.priority == floor.priority]
        if not same:
            yield f"{floor.what}: no {floor.priority.name} level (required)"
        else:
            yield f"{floor.what} {floor.priority.name}: " + "; ".join(_nibp_failures(floor, same[0]))


# ------------------------------------------------------------------------------ the rest
def _other_problems(profile: AlarmProfile) -> Iterable[str]:
    rules = profile.rules
    breath = [r for r in rules if isinstance(r, NoBreathRule)]
    if not any(r.priority >= HIGH and r.seconds <= NO_BREATH_MAX_S for r in breath):
        if not breath:
            yield "No breath: the rule is missing"
        else:
            yield (f"No breath: a HIGH alarm after at most {_g(NO_BREATH_MAX_S)} s is required "
                   f"(the profile has {breath[0].priority.name} after {_g(breath[0].seconds)} s)")
    moaas = [r for r in rules if isinstance(r, AssessmentRule) and r.assessment == "moaas"]
    if not any(r.priority >= HIGH and r.at_or_below >= MOAAS_AT_OR_BELOW_MIN for r in moaas):
        if not moaas:
            yield "MOAA/S 2 or less: the rule is missing"
        else:
            yield (f"MOAA/S: a HIGH alarm at {_g(MOAAS_AT_OR_BELOW_MIN)} or less is required (the profile has "
                   f"{moaas[0].priority.name} at {_g(moaas[0].at_or_below)} or less)")
    technical = [r for r in rules if isinstance(r, TechnicalRule)]
    for code in TECHNICAL_REQUIRED:
        covering = [r for r in technical if code in r.codes]
        if not covering:
            yield f"Technical alarm {code!r}: no rule raises it (required, MEDIUM or higher)"
        elif not any(r.priority >= MEDIUM for r in covering):
            yield f"Technical alarm {code!r}: {covering[0].priority.name} is too low (MEDIUM or higher required)"
        elif code in LINK_CODES and not any(
                r.priority >= HIGH or (r.escalate_to is not None and r.escalate_to >= HIGH
                                       and (r.escalate_after_s or 0) <= LINK_ESCALATION_MAX_S)
                for r in covering):
            yield (f"Technical alarm {code!r}: it must become HIGH within {_g(LINK_ESCALATION_MAX_S)} s "
                   "(the device link is lost)")
    loss = [r for r in rules if isinstance(r, ParameterLossRule)]
    good = [r for r in loss if r.priority >= MEDIUM and r.after_s <= PARAMETER_LOSS_MAX_S]
    if not loss:
        yield "Parameter lost: the rule is missing (SpO2, HR/PR, RR and EtCO2 must be watched)"
    elif not good:
        yield (f"Parameter lost: MEDIUM or higher after at most {_g(PARAMETER_LOSS_MAX_S)} s is required "
               f"(the profile has {loss[0].priority.name} after {_g(loss[0].after_s)} s)")
    else:
        watched = {frozenset(p.vitals) for r in good for p in r.parameters}
        for name, vitals in LOST_PARAMETERS:
            if vitals not in watched:
                yield f"Parameter lost: {name} is not watched (by {' or '.join(sorted(vitals))})"


def profile_problems(profile: AlarmProfile) -> list[str]:
    """Every way ``profile`` goes past a hard limit or lacks a required alarm, one line each (empty:
    the profile is safe to use)."""
    return list(dict.fromkeys([*_limit_problems(profile), *_nibp_problems(profile), *_other_problems(profile)]))


def check_profile(profile: AlarmProfile, where: str = "the alarm profile") -> AlarmProfile:
    """Return ``profile`` when it is safe to use; else raise :class:`UnsafeProfileError` whose message
    starts with ``where`` and names every problem."""
    problems = profile_problems(profile)
    if problems:
        raise UnsafeProfileError(f"{where}: refused, past the limits a clinic cannot go past: "
                                 + "; ".join(problems), problems)
    return profile
