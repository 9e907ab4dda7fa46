"""The alarm engine: observations in, alarm conditions and their signals out (IEC 60601-1-8).

Pure and deterministic: it never reads a clock. Physiological conditions are judged at the
times of the observations that carry them; :meth:`AlarmEngine.tick` advances time for what
happens between observations (escalation of sustained alarms, technical escalation, the end
of an audio pause, a vital that stopped giving valid values). Every change is returned as an
:class:`AlarmEvent`, for the alarm log, the screen and the command line.

Behaviour (disclosed to users in docs/alarms.md):

* A condition must hold for its *condition delay* before its alarm starts; the delay is
  measured between observation times, so with 1 Hz data an alarm starts within one second of
  the delay. Levels without delay (SpO2 < 88 %, single NIBP readings) start on the observation.
* The alarm of a limit rule takes the priority of the highest level that qualifies; it moves up
  (escalated) and down (de-escalated) with the value and ends when no level is violated.
* A rule with several sources (HR from the ECG, then the oximeter's pulse rate) judges the
  first source whose latest value is valid and recent: when the ECG heart rate keeps arriving
  missing, invalid or flagged (leads off), the pulse rate is judged with the same limits and
  delays, and the delay in progress carries on across the switch.
* A value the device marks unreliable (artifact, out of track, sensor off, invalid,
  unavailable) is treated as no value. A vital with no valid value for 10 s ends its
  physiological alarms: the technical alarm for the sensor takes over.
* A parameter that had been arriving (SpO2, HR/PR, RR, EtCO2) and stops giving valid values
  for 30 s while the device still sends others raises a technical "lost" alarm.
* NIBP: a reading is judged when complete (systolic and diastolic may come in separate
  batches); a level with confirmation rises (e.g. to HIGH) when the previous reading met it
  too, however long the cuff cycle (up to the level's window), and stays risen while
  consecutive readings keep meeting it.
* Times in events are when things happened by the rules (a delay that ran out between two
  ticks is logged at the instant it ran out), not when a tick noticed them.
* Non-latching (default): the alarm signal ends with its condition. Latching (clinic setting):
  the visual signal stays, marked latched, until someone acknowledges it; its sound follows
  the condition (a latched alarm whose condition ended is silent).
* Acknowledge silences the alarms active now, and clears latched ones; an alarm that starts
  later, or escalates, sounds again.
* Audio pause silences every alarm present now for a limited time (default 2 min, at most the
  clinic's maximum); an alarm that starts during the pause sounds; the visual signal never
  pauses; the inactivation state is always available from :meth:`AlarmEngine.state`.
* An alarm that ends at once still sounds its minimum: one full MEDIUM burst, half a HIGH burst.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from drivers.base import condition_text
from drivers.model import DeviceCondition, NumericObservation, Quality
from monitor.alarms.audio import minimum_sound_s
from monitor.alarms.profile import (
    AlarmProfile, AssessmentRule, Level, LimitRule, NibpRule, NoBreathRule, ParameterLossRule, Priority, Rule,
    TechnicalRule,
)


@dataclass
class Alarm:
    """One alarm condition and its signal, from start until it ends (and, if latched, is reset)."""

    id: int
    condition: str
    label: str
    kind: str                      # "physiological" | "technical"
    priority: Priority             # now
    max_priority: Priority
    started_at: datetime
    value: float | None            # the observation that started it (or now triggers it)
    limit: float | None            # the limit in force
    message: str = ""
    ended_at: datetime | None = None
    acknowledged: bool = False
    latched: bool = False

    @property
    def active(self) -> bool:
        """True while the alarm condition is present."""
        return self.ended_at is None


@dataclass(frozen=True)
class AlarmEvent:
    """Something that happened to an alarm, or to alarm signals as a whole (pause)."""

    event: str          # started ended escalated deescalated acknowledged reset audio_paused audio_resumed
    t: datetime
    condition: str = ""
    priority: Priority | None = None
    value: float | None = None
    limit: float | None = None
    alarm_id: int | None = None
    label: str = ""
    kind: str = ""
    message: str = ""
    user: str | None = None
    detail: str = ""

    def as_record(self) -> dict[str, Any]:
        """JSON-ready form (the `vigil record` line format)."""
        record: dict[str, Any] = {"event": f"alarm_{self.event}" if self.event in ("started", "ended", "escalated", "deescalated") else self.event}
        if self.condition:
            record.update(condition=self.condition, priority=self.priority.name if self.priority else None,
                          value=self.value, limit=self.limit)
        record["t"] = self.t.isoformat()
        if self.user:
            record["user"] = self.user
        if self.detail:
            record["detail"] = self.detail
        return record


@dataclass
class Inactivation:
    """The alarm-signal inactivation state, for the always-visible indicator."""

    audio_paused: bool
    pause_remaining_s: float
    paused_by: str | None
    acknowledged: tuple[int, ...]

    @property
    def text(self) -> str:
        """Short indicator text ("AUDIO PAUSED 1:45", "ACKNOWLEDGED", "")."""
        if self.audio_paused:
            seconds = max(0, int(round(self.pause_remaining_s)))
            return f"AUDIO PAUSED {seconds // 60}:{seconds % 60:02d}"
        if self.acknowledged:
            return "ACKNOWLEDGED"
        return ""


@dataclass
class AlarmState:
    """Everything the screen and the speaker need at one moment."""

    alarms: list[Alarm]                 # active and latched, highest priority first
    visual_priority: Priority | None    # highest priority shown
    audio_priority: Priority | None     # highest priority that should sound now
    inactivation: Inactivation


#: Values the device itself marks as unreliable are not used to judge physiological conditions.
UNRELIABLE = frozenset({Quality.ARTIFACT, Quality.OUT_OF_TRACK, Quality.SENSOR_OFF, Quality.INVALID,
                        Quality.UNAVAILABLE})
#: Systolic and diastolic of one reading arriving this far apart are still merged.
_NIBP_MERGE = timedelta(minutes=2)


# --------------------------------------------------------------------------- per-rule state
@dataclass
class _LevelState:
    pending_since: datetime | None = None
    last_t: datetime | None = None
    sat: float = 0.0
    episodes: deque = field(default_factory=deque)


def _after(since: datetime, seconds: float) -> datetime:
    return since + timedelta(seconds=seconds)


class _Tracker:
    """Common alarm bookkeeping for one physiological condition."""

    def __init__(self, engine: "AlarmEngine", condition: str, label: str) -> None:
        self.engine = engine
        self.condition = condition
        self.label = label
        self.alarm: Alarm | None = None
        self.level_priority: Priority | None = None
        self.level_since: datetime | None = None
        self.escalation: Level | None = None

    def apply(self, t: datetime, priority: Priority | None, value: float | None, limit: float | None,
              message: str = "", escalation: Level | None = None) -> None:
        """Move the alarm to ``priority`` (None: the condition is over) at ``t``."""
        engine = self.engine
        if priority is None:
            if self.alarm is not None:
                engine._end(self.alarm, t, value)
                self.alarm = None
            self.level_priority = self.level_since = self.escalation = None
            return
        if self.alarm is None:
            self.alarm = engine._start(self.condition, self.label, "physiological", priority, t, value, limit, message)
            self.level_priority, self.level_since, self.escalation = priority, t, escalation
            return
        if priority != self.level_priority:
            self.level_priority, self.level_since, self.escalation = priority, t, escalation
        self.alarm.limit, self.alarm.message = limit, message or self.alarm.message
        self.alarm.value = value
        target = priority
        rise = self._escalation_due()
        if rise is not None and rise[0] <= t:
            due, to = rise
            target = max(target, to)
            if target > self.alarm.priority:
                engine._set_priority(self.alarm, target, due)  # it rose when it was due
        engine._set_priority(self.alarm, target, t)

    def _escalation_due(self) -> tuple[datetime, Priority] | None:
        """When the level in force escalates and to which priority (None: it does not escalate)."""
        level = self.escalation
        if level is None or level.escalate_to is None or self.level_since is None:
            return None
        return _after(self.level_since, level.escalate_after_s or 0), level.escalate_to

    def _escalate(self, now: datetime) -> None:
        rise = self._escalation_due()
        if self.alarm is not None and rise is not None:
            due, to = rise
            if due <= now and self.alarm.priority < to:
                self.engine._set_priority(self.alarm, to, due)

    def tick(self, now: datetime) -> None:
        """Escalate a sustained alarm between observations (logged at the instant it was due)."""
        self._escalate(now)

    def end(self, t: datetime) -> None:
        """End the alarm now and forget the condition's state (a new patient)."""
        self.apply(t, None, None, None)


class _LimitTracker(_Tracker):
    def __init__(self, engine: "AlarmEngine", rule: LimitRule) -> None:
        super().__init__(engine, rule.id, rule.label)
        self.rule = rule
        self.levels = [_LevelState() for _ in rule.levels]
        self.latest: dict[str, tuple[datetime, float | None]] = {}
        self.invalid_since: datetime | None = None

    @property
    def relative(self) -> bool:
        """True when a level of the rule depends on the patient's baseline."""
        return any(level.relative is not None for level in self.rule.levels)

    def _limit(self, level: Level, vital: str) -> float | None:
        limits = []
        if level.threshold is not None:
            limits.append(level.threshold)
        if level.relative is not None:
            base = self.engine.baseline.get(vital, self.engine.baseline.get(self.rule.vitals[0]))
            if base is not None:
                limits.append(level.relative.threshold(base, self.rule.direction))
        if not limits:
            return None
        return min(limits) if self.rule.direction == "high" else max(limits)

    def _violates(self, level: Level, limit: float, value: float) -> bool:
        if self.rule.direction == "high":
            return value >= limit if level.inclusive else value > limit
        return value <= limit if level.inclusive else value < limit

    def source(self, t: datetime) -> str | None:
        """The source judged at ``t``: the first in ``vitals`` whose latest value is valid and
        at most ``prefer_window_s`` old (None: no source has a valid value)."""
        window = timedelta(seconds=self.rule.prefer_window_s)
        for vital in self.rule.vitals:
            latest = self.latest.get(vital)
            if latest is not None and latest[1] is not None and t - latest[0] <= window:
                return vital
        return None

    def _reset_levels(self) -> None:
        for st in self.levels:
            st.pending_since, st.sat, st.last_t = None, 0.0, None

    def observe(self, vital: str, value: float | None, t: datetime) -> None:
        self.latest[vital] = (t, value)
        source = self.source(t)
        if source is None:
            # No source gives a valid value: the condition cannot be judged.
            self._reset_levels()
            self.invalid_since = self.invalid_since or t
            self._expire_invalid(t)
            return
        if vital != source:
            return  # a less preferred source, or an invalid value from a source not in use
        assert value is not None
        self.invalid_since = None
        best: tuple[Level, float] | None = None
        any_violated = False
        for level, st in zip(self.rule.levels, self.levels):
            limit = self._limit(level, vital)
            if limit is None or not self._violates(level, limit, value):
                st.pending_since, st.sat, st.last_t = None, 0.0, None
                continue
            any_violated = True
            if st.pending_since is None:
                st.pending_since = t
                st.episodes.append(t)
            elif level.satseconds is not None and st.last_t is not None:
                dt = min(5.0, max(0.0, (t - st.last_t).total_seconds()))
                st.sat += abs(limit - value) * dt
            st.last_t = t
            if self._qualifies(level, st, t) and (best is None or level.priority > best[0].priority):
                best = (level, limit)
        if best is not None:
            level, limit = best
            self.apply(t, level.priority, value, limit, level.message, level if level.escalate_to else None)
        elif not any_violated:
            self.apply(t, None, value, None)
        elif self.alarm is not None:
            # Still beyond a limit whose delay has not elapsed (e.g. it just moved from a
            # qualified level to a pending one): keep the alarm at its present level.
            self.alarm.value = value

    def _qualifies(self, level: Level, st: _LevelState, t: datetime) -> bool:
        if level.satseconds is not None:
            if st.sat >= level.satseconds:
                return True
            net = level.safety_net
            if net is not None:
                while st.episodes and (t - st.episodes[0]).total_seconds() > net.window_s:
                    st.episodes.popleft()
                return len(st.episodes) >= net.violations
            return False
        return st.pending_since is not None and (t - st.pending_since).total_seconds() >= level.delay_s

    def _expire_invalid(self, now: datetime) -> None:
        if self.alarm is not None and self.invalid_since is not None and \
                (now - self.invalid_since).total_seconds() >= self.rule.invalid_end_s:
            self.apply(_after(self.invalid_since, self.rule.invalid_end_s), None, None, None)

    def tick(self, now: datetime) -> None:
        self._expire_invalid(now)
        super().tick(now)

    def end(self, t: datetime) -> None:
        super().end(t)
        self._reset_levels()
        self.latest.clear()
        self.invalid_since = None


@dataclass
class _Reading:
    """One cuff reading as judged: its time, its values so far and the levels it met."""

    t: datetime
    sys: float | None
    dia: float | None
    met: frozenset[int]


class _NibpTracker(_Tracker):
    """NIBP readings against levels. A level with confirmation takes its confirmed priority when
    the previous reading (within the level's window) met it too, so the confirmed priority stays
    while consecutive readings keep meeting the level. A reading whose systolic and diastolic
    arrive separately is one reading: its second half updates it (it never counts as the
    confirming reading of its own first half, and a half reading never ends an alarm)."""

    def __init__(self, engine: "AlarmEngine", rule: NibpRule) -> None:
        super().__init__(engine, rule.id, rule.label)
        self.rule = rule
        self.previous: _Reading | None = None
        self.current: _Reading | None = None

    def _meets(self, threshold: float | None, value: float | None, inclusive: bool) -> bool:
        if threshold is None or value is None:
            return False
        if self.rule.direction == "high":
            return value >= threshold if inclusive else value > threshold
        return value <= threshold if inclusive else value < threshold

    def measurement(self, t: datetime, sys_: float | None, dia: float | None) -> None:
        if self.current is not None and self.current.t == t:
            reading = self.current  # the other half of the same reading
        else:
            self.previous, reading = self.current, None
        best: tuple[Priority, float | None, float | None, str] | None = None
        met: set[int] = set()
        for i, level in enumerate(self.rule.levels):
            by_sys = self._meets(level.sys, sys_, level.inclusive)
            by_dia = self._meets(level.dia, dia, level.inclusive)
            if not (by_sys or by_dia):
                continue
            met.add(i)
            priority, message = level.priority, level.message
            previous = self.previous
            if level.confirm_within_s is not None and level.confirm_priority is not None and previous is not None \
                    and i in previous.met and 0 < (t - previous.t).total_seconds() <= level.confirm_within_s:
                priority, message = level.confirm_priority, level.confirm_message or message
            value, limit = (sys_, level.sys) if by_sys else (dia, level.dia)
            if best is None or priority > best[0]:
                best = (priority, value, limit, message)
        self.current = _Reading(t, sys_, dia, frozenset(met) | (reading.met if reading else frozenset()))
        complete = sys_ is not None and dia is not None
        if best is None:
            if complete:
                self.apply(t, None, sys_, None)
        elif complete or self.alarm is None or best[0] >= self.alarm.priority:
            self.apply(t, best[0], best[1], best[2], best[3])

    def end(self, t: datetime) -> None:
        super().end(t)
        self.previous = self.current = None


class _NoBreathTracker(_Tracker):
    def __init__(self, engine: "AlarmEngine", rule: NoBreathRule) -> None:
        super().__init__(engine, rule.id, rule.label)
        self.rule = rule
        self.since: datetime | None = None

    def observe(self, value: float | None, t: datetime) -> None:
        if value is None:
            return
        if value > 0:
            self.since = None
            self.apply(t, None, value, None)
            return
        self.since = self.since or t
        self.tick(t)

    def tick(self, now: datetime) -> None:
        if self.since is not None and self.alarm is None and \
                (now - self.since).total_seconds() >= self.rule.seconds:
            self.apply(_after(self.since, self.rule.seconds), self.rule.priority, 0.0, self.rule.seconds,
                       f"No breath for {self.rule.seconds:g} s")

    def end(self, t: datetime) -> None:
        super().end(t)
        self.since = None


class _LossTracker:
    """Technical alarms for parameters that had been arriving and stopped giving valid values
    while the device still sends others (a sampling line off, ECG leads off with no pulse rate…)."""

    def __init__(self, engine: "AlarmEngine", rule: ParameterLossRule) -> None:
        self.engine = engine
        self.rule = rule
        self.last_valid: dict[str, datetime] = {}   # every vital seen valid, for "others still arrive"
        self.alarms: dict[str, Alarm] = {}

    def observe(self, vital: str, value: float | None, t: datetime) -> None:
        if value is None:
            return
        self.last_valid[vital] = max(t, self.last_valid.get(vital, t))
        for parameter in self.rule.parameters:
            alarm = self.alarms.get(parameter.id)
            if alarm is not None and vital in parameter.vitals:
                del self.alarms[parameter.id]
                self.engine._end(alarm, t, value)

    def tick(self, now: datetime) -> None:
        after = timedelta(seconds=self.rule.after_s)
        fresh = timedelta(seconds=self.rule.others_within_s)
        for parameter in self.rule.parameters:
            if parameter.id in self.alarms:
                continue
            seen = [self.last_valid[v] for v in parameter.vitals if v in self.last_valid]
            if not seen:
                continue  # never arrived for this patient: nothing is lost
            last = max(seen)
            if now - last < after:
                continue
            # Cuff readings come every few minutes: only continuous vitals show the stream is alive.
            others = [t for v, t in self.last_valid.items()
                      if v not in parameter.vitals and not v.startswith("nibp_")]
            if not others or now - max(others) > fresh:
                continue  # nothing arrives at all: the link's own technical alarm says so
            at = max(last + after, max(others) - fresh)
            text = f"{parameter.label}: {parameter.hint}" if parameter.hint else parameter.label
            self.alarms[parameter.id] = self.engine._start(parameter.id, parameter.label, "technical",
                                                           self.rule.priority, at, None, None, text)

    def end(self, t: datetime) -> None:
        """A new patient: forget which parameters had been arriving; end their alarms."""
        for alarm in self.alarms.values():
            self.engine._end(alarm, t, None)
        self.alarms.clear()
        self.last_valid.clear()


_R = TypeVar("_R", LimitRule, NibpRule, NoBreathRule, AssessmentRule, TechnicalRule, ParameterLossRule)


def _same_kind(rule: _R, by_id: Mapping[str, Rule]) -> _R:
    """The rule of ``by_id`` with ``rule``'s id; ValueError when it is missing or of another kind."""
    new = by_id.get(rule.id)
    if not isinstance(new, type(rule)):
        raise ValueError(f"the new alarm profile has no {type(rule).__name__} {rule.id!r}")
    return new


# --------------------------------------------------------------------------- the engine
class AlarmEngine:
    """Evaluates an :class:`AlarmProfile` against observations, charted scores and conditions.

    ``latching``, ``audio_pause_s`` and ``audio_pause_max_s`` are clinic settings. ``baseline``
    maps vital keys to pre-dose values for relative rules (set later with :meth:`set_baseline`).
    """

    def __init__(self, profile: AlarmProfile, *, latching: bool = False, audio_pause_s: float = 120.0,
                 audio_pause_max_s: float = 300.0, baseline: dict[str, float] | None = None) -> None:
        if not 0 < audio_pause_s <= audio_pause_max_s:
            raise ValueError("the default audio pause must be positive and within the clinic's maximum")
        self.profile = profile
        self.latching = latching
        self.audio_pause_s = audio_pause_s
        self.audio_pause_max_s = audio_pause_max_s
        self.baseline: dict[str, float] = dict(baseline or {})
        self._ids = itertools.count(1)
        self._events: list[AlarmEvent] = []
        self.alarms: dict[int, Alarm] = {}          # active or latched
        self._owed: dict[int, tuple[Priority, datetime]] = {}
        self._paused_until: datetime | None = None
        self._paused_by: str | None = None
        self._paused_ids: set[int] = set()
        self._now: datetime | None = None
        self._by_vital: dict[str, list[Any]] = {}
        self._nibp: list[_NibpTracker] = []
        self._assessment: dict[str, list[tuple[AssessmentRule, _Tracker]]] = {}
        self._technical: dict[str, TechnicalRule] = {}
        self._tech_alarms: dict[str, Alarm] = {}
        self._trackers: list[_Tracker] = []
        self._loss: list[_LossTracker] = []
        #: NIBP halves by reading time, kept until the reading is complete (or old).
        self._nibp_parts: dict[datetime, dict[str, float | None]] = {}
        self._nibp_touched: set[datetime] = set()
        tracker: _Tracker
        for rule in profile.rules:
            if isinstance(rule, LimitRule):
                tracker = _LimitTracker(self, rule)
                for vital in rule.vitals:
                    self._by_vital.setdefault(vital, []).append(tracker)
            elif isinstance(rule, NibpRule):
                nibp = _NibpTracker(self, rule)
                self._nibp.append(nibp)
                tracker = nibp
            elif isinstance(rule, NoBreathRule):
                tracker = _NoBreathTracker(self, rule)
                self._by_vital.setdefault("rr", []).append(tracker)
            elif isinstance(rule, AssessmentRule):
                tracker = _Tracker(self, rule.id, rule.label)
                self._assessment.setdefault(rule.assessment, []).append((rule, tracker))
            elif isinstance(rule, ParameterLossRule):
                self._loss.append(_LossTracker(self, rule))
                continue
            else:
                for code in rule.codes:
                    self._technical[code] = rule
                continue
            self._trackers.append(tracker)

    # ------------------------------------------------------------------ internals
    def _emit(self, event: str, alarm: Alarm | None, t: datetime, **extra: Any) -> None:
        if alarm is None:
            self._events.append(AlarmEvent(event=event, t=t, **extra))
            return
        self._events.append(AlarmEvent(
            event=event, t=t, condition=alarm.condition, priority=alarm.priority, value=alarm.value,
            limit=alarm.limit, alarm_id=alarm.id, label=alarm.label, kind=alarm.kind, message=alarm.message, **extra))

    def _start(self, condition: str, label: str, kind: str, priority: Priority, t: datetime,
               value: float | None, limit: float | None, message: str) -> Alarm:
        alarm = Alarm(next(self._ids), condition, label, kind, priority, priority, t, value, limit, message)
        self.alarms[alarm.id] = alarm
        self._owed[alarm.id] = (priority, t + timedelta(seconds=minimum_sound_s(priority)))
        self._emit("started", alarm, t)
        return alarm

    def _set_priority(self, alarm: Alarm, priority: Priority, t: datetime) -> None:
        if priority == alarm.priority:
            return
        rising = priority > alarm.priority
        alarm.priority = priority
        alarm.max_priority = max(alarm.max_priority, priority)
        if rising:
            alarm.acknowledged = False          # an escalated alarm sounds again
            self._paused_ids.discard(alarm.id)
            self._owed[alarm.id] = (priority, t + timedelta(seconds=minimum_sound_s(priority)))
        self._emit("escalated" if rising else "deescalated", alarm, t)

    def _end(self, alarm: Alarm, t: datetime, value: float | None) -> None:
        alarm.ended_at = t
        if value is not None:
            alarm.value = value
        self._emit("ended", alarm, t)
        if self.latching and not alarm.acknowledged:
            alarm.latched = True
        else:
            self.alarms.pop(alarm.id, None)

    def _advance(self, t: datetime) -> datetime:
        """Move the engine's time to ``t`` unless it is already later; return the engine's time."""
        if self._now is None or t > self._now:
            self._now = t
        return self._now

    def _drain(self) -> list[AlarmEvent]:
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ inputs
    def update_profile(self, profile: AlarmProfile) -> None:
        """Apply changed limits (e.g. a session's adjustment) without losing the alarms in progress:
        each condition keeps its state and is judged against the new limits from the next
        observation. ``profile`` must have the same rules (ids and kinds) as the current one."""
        old = {r.id: type(r) for r in self.profile.rules}
        new = {r.id: type(r) for r in profile.rules}
        if old != new:
            raise ValueError("the new alarm profile must have the same rules as the current one")
        by_id = {r.id: r for r in profile.rules}
        for tracker in self._trackers:
            if isinstance(tracker, _LimitTracker):
                tracker.rule = _same_kind(tracker.rule, by_id)
                if len(tracker.levels) != len(tracker.rule.levels):
                    tracker.levels = [_LevelState() for _ in tracker.rule.levels]
            elif isinstance(tracker, _NibpTracker):
                tracker.rule = _same_kind(tracker.rule, by_id)
            elif isinstance(tracker, _NoBreathTracker):
                tracker.rule = _same_kind(tracker.rule, by_id)
        for assessment, pairs in self._assessment.items():
            self._assessment[assessment] = [(_same_kind(r, by_id), t) for r, t in pairs]
        for loss in self._loss:
            loss.rule = _same_kind(loss.rule, by_id)
        self._technical = {code: _same_kind(r, by_id) for code, r in self._technical.items()}
        self.profile = profile

    def set_baseline(self, baseline: dict[str, float]) -> None:
        """Pre-dose values for relative rules (vital key → value)."""
        self.baseline = {k: float(v) for k, v in baseline.items() if v is not None}

    def reset_patient(self, t: datetime, user: str | None = None) -> list[AlarmEvent]:
        """The patient's session ended: forget what belonged to that patient so the next one starts
        clean. Ends the alarms that judge the patient's record rather than the live signal (NIBP
        readings, limits relative to the baseline, charted scores, parameter loss), clears the
        baseline, the NIBP confirmation chain and which parameters had been arriving, and resets
        latched alarms (``user``, detail "session ended"). Alarms of the live signal (SpO2 now,
        the device link) go on: they concern whoever is connected."""
        self._advance(t)
        self.baseline = {}
        for tracker in self._trackers:
            if isinstance(tracker, _NibpTracker) or \
                    (isinstance(tracker, _LimitTracker) and tracker.relative) or \
                    type(tracker) is _Tracker:
                tracker.end(t)
        for loss in self._loss:
            loss.end(t)
        self._nibp_parts.clear()
        self._nibp_touched.clear()
        for alarm in sorted(self.alarms.values(), key=lambda a: a.id):
            if alarm.latched:
                del self.alarms[alarm.id]
                self._owed.pop(alarm.id, None)
                self._emit("reset", alarm, t, user=user, detail="session ended")
        return self._drain()

    def process(self, items: Iterable[Any]) -> list[AlarmEvent]:
        """Evaluate a batch of observations and device conditions (other items are ignored)."""
        for item in items:
            if isinstance(item, NumericObservation):
                self._observe(item)
            elif isinstance(item, DeviceCondition):
                self._advance(item.time)
                self._technical_change(item.code, item.active, item.time, item.text)
        self._flush_nibp()
        if self._now is not None:
            self._tick(self._now)
        return self._drain()

    def _observe(self, obs: NumericObservation) -> None:
        t = obs.sample_time
        self._advance(t)
        value = None if obs.quality & UNRELIABLE else obs.value
        if obs.vital in ("nibp_sys", "nibp_dia"):
            self._nibp_parts.setdefault(t, {})[obs.vital] = value
            self._nibp_touched.add(t)
        for loss in self._loss:
            loss.observe(obs.vital, value, t)
        for tracker in self._by_vital.get(obs.vital, ()):
            if isinstance(tracker, _NoBreathTracker):
                tracker.observe(value, t)
            else:
                tracker.observe(obs.vital, value, t)

    def _flush_nibp(self) -> None:
        for t in sorted(self._nibp_touched):
            reading = self._nibp_parts[t]
            if reading.get("nibp_sys") is None and reading.get("nibp_dia") is None:
                continue
            for tracker in self._nibp:
                tracker.measurement(t, reading.get("nibp_sys"), reading.get("nibp_dia"))
        self._nibp_touched.clear()
        if self._nibp_parts:  # halves are merged for a few minutes; older ones are forgotten
            newest = max(self._nibp_parts)
            for t in [t for t in self._nibp_parts if newest - t > _NIBP_MERGE]:
                del self._nibp_parts[t]

    def chart(self, assessment: str, score: float, t: datetime) -> list[AlarmEvent]:
        """A charted assessment (e.g. ``"moaas"``, 2) at time ``t``."""
        self._advance(t)
        for rule, tracker in self._assessment.get(assessment, ()):
            if score <= rule.at_or_below:
                tracker.apply(t, rule.priority, float(score), rule.at_or_below, rule.message)
            else:
                tracker.apply(t, None, float(score), None)
        return self._drain()

    def set_technical(self, code: str, active: bool, t: datetime, text: str = "") -> list[AlarmEvent]:
        """Raise or clear a technical condition Vigil itself detects (``audio_unavailable``,
        ``recording_failed``)."""
        self._advance(t)
        self._technical_change(code, active, t, text)
        return self._drain()

    def _technical_change(self, code: str, active: bool, t: datetime, text: str) -> None:
        rule = self._technical.get(code)
        if rule is None:
            return
        alarm = self._tech_alarms.get(code)
        if active and alarm is None:
            self._tech_alarms[code] = self._start(code, text or condition_text(code), "technical",
                                                  rule.priority, t, None, None, text or condition_text(code))
        elif not active and alarm is not None:
            del self._tech_alarms[code]
            self._escalate_technical(alarm, rule, t)  # it may have become due before it ended
            self._end(alarm, t, None)

    def _escalate_technical(self, alarm: Alarm, rule: TechnicalRule, now: datetime) -> None:
        if rule.escalate_after_s is not None and rule.escalate_to is not None and alarm.priority < rule.escalate_to:
            due = _after(alarm.started_at, rule.escalate_after_s)
            if due <= now:
                self._set_priority(alarm, rule.escalate_to, due)

    # ------------------------------------------------------------------ time
    def tick(self, now: datetime) -> list[AlarmEvent]:
        """Advance to ``now`` for what happens between observations."""
        self._tick(self._advance(now))
        return self._drain()

    def _tick(self, now: datetime) -> None:
        for tracker in self._trackers:
            tracker.tick(now)
        for loss in self._loss:
            loss.tick(now)
        for code, alarm in self._tech_alarms.items():
            self._escalate_technical(alarm, self._technical[code], now)
        if self._paused_until is not None and now >= self._paused_until:
            ended, self._paused_until, self._paused_by = self._paused_until, None, None
            self._paused_ids.clear()
            self._emit("audio_resumed", None, ended, detail="audio pause expired")  # when it ended, not now
        for alarm_id, (_, until) in list(self._owed.items()):
            if now >= until:
                del self._owed[alarm_id]

    # ------------------------------------------------------------------ staff actions
    def acknowledge(self, user: str, now: datetime) -> list[AlarmEvent]:
        """Acknowledge: silence the alarms active now; clear latched alarms."""
        self._advance(now)
        for alarm in sorted(self.alarms.values(), key=lambda a: a.id):
            if alarm.latched:
                del self.alarms[alarm.id]
                self._owed.pop(alarm.id, None)
                self._emit("reset", alarm, now, user=user)
            elif not alarm.acknowledged:
                alarm.acknowledged = True
                self._owed.pop(alarm.id, None)
                self._emit("acknowledged", alarm, now, user=user)
        return self._drain()

    def pause_audio(self, user: str, now: datetime, seconds: float | None = None) -> list[AlarmEvent]:
        """Pause alarm audio for ``seconds`` (default: the clinic default) for the alarms present now."""
        seconds = self.audio_pause_s if seconds is None else float(seconds)
        if not 0 < seconds <= self.audio_pause_max_s:
            raise ValueError(f"audio pause must be between 1 s and the clinic's maximum of "
                             f"{self.audio_pause_max_s:g} s")
        self._advance(now)
        self._paused_until = now + timedelta(seconds=seconds)
        self._paused_by = user
        self._paused_ids = set(self.alarms)
        for alarm_id in self._paused_ids:
            self._owed.pop(alarm_id, None)
        self._emit("audio_paused", None, now, user=user, detail=f"{seconds:g} s")
        return self._drain()

    def cancel_audio_pause(self, user: str, now: datetime) -> list[AlarmEvent]:
        """End an audio pause early."""
        self._advance(now)
        if self._paused_until is not None:
            self._paused_until, self._paused_by = None, None
            self._paused_ids.clear()
            self._emit("audio_resumed", None, now, user=user, detail="audio pause cancelled")
        return self._drain()

    # ------------------------------------------------------------------ queries
    def state(self, now: datetime | None = None) -> AlarmState:
        """The alarm state at ``now`` (default: the latest time seen)."""
        now = now or self._now
        alarms = sorted(self.alarms.values(), key=lambda a: (-a.priority, a.started_at, a.id))
        visual = alarms[0].priority if alarms else None
        remaining = 0.0
        if self._paused_until is not None and now is not None and now < self._paused_until:
            remaining = (self._paused_until - now).total_seconds()
        paused = remaining > 0
        sounding = [a.priority for a in alarms
                    if a.active and not a.acknowledged and a.priority > Priority.LOW
                    and not (paused and a.id in self._paused_ids)]
        sounding += [p for a_id, (p, until) in self._owed.items() if now is not None and now < until
                     and not (paused and a_id in self._paused_ids)]
        inactivation = Inactivation(paused, remaining, self._paused_by if paused else None,
                                    tuple(a.id for a in alarms if a.acknowledged))
        return AlarmState(alarms, visual, max(sounding) if sounding else None, inactivation)

    def active_conditions(self) -> set[str]:
        """Conditions whose alarms are active now (not counting latched ones)."""
        return {a.condition for a in self.alarms.values() if a.active}
