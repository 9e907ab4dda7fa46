"""What the screen shows about values, decided here so that ``ui/`` holds no clinical rules.

* :func:`tile_limits` — the alarm limits to print on a numeric tile (the limits of the
  lowest-priority level of each direction, i.e. the first ones a value crosses).
* :func:`trend_direction` — the trend arrow of a numeric: the change over the last minutes
  compared with a per-vital threshold of clinical significance.
* :func:`nibp_freshness` — whether a NIBP reading is current, ageing or stale for the schedule.
* :func:`signal_quality` — a short text for the device's signal from its active conditions.
* :func:`alarm_texts` — an alarm's line from its long form to its shortest ("Blood pressure high
  186 mmHg (limit 180)" … "NBP Sys 186 ≥ 180"), so that a screen short of room shows a shorter
  form rather than a cut-off number.
* :func:`alarm_table` — every alarm of a profile as the nurse reads it (what starts it, its
  priority, its delay), for the help window.
* :class:`ParameterPresence` — which parameters and waveforms the connected device provides
  (learnt from what arrives, after a grace period), so that the screen follows the monitor.
* Display names (:data:`VITAL_NAMES`, :data:`VITAL_SHORT`, :data:`MEDICATION_NAMES`,
  :data:`ACTION_NAMES`, :func:`display_name`, :func:`condition_label`): what the nurse reads instead of
  internal keys.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from monitor.alarms.profile import (
    AlarmProfile,
    AssessmentRule,
    LimitRule,
    NibpRule,
    NoBreathRule,
    ParameterLossRule,
    TechnicalRule,
    default_profile,
)

# --------------------------------------------------------------------------- display names
#: What each vital is called in full on screen and in messages.
VITAL_NAMES: dict[str, str] = {
    "hr": "Heart rate", "pr": "Pulse rate", "spo2": "SpO2", "pi": "Perfusion index",
    "nibp_sys": "Systolic BP", "nibp_dia": "Diastolic BP", "nibp_mean": "Mean BP", "rr": "Respiratory rate",
    "etco2": "EtCO2", "temp": "Temperature", "spco": "SpCO", "spmet": "SpMet", "sphb": "SpHb", "pvi": "PVI",
}
#: Each vital's short name, as bedside monitors print it where room is short.
VITAL_SHORT: dict[str, str] = {
    "hr": "HR", "pr": "PR", "spo2": "SpO2", "pi": "PI", "nibp_sys": "NBP Sys", "nibp_dia": "NBP Dia",
    "nibp_mean": "NBP Mean", "rr": "RR", "etco2": "EtCO2", "temp": "Temp", "spco": "SpCO", "spmet": "SpMet",
    "sphb": "SpHb", "pvi": "PVI",
}
#: The REMS concomitant-medication questions and other medication keys, as the nurse reads them.
MEDICATION_NAMES: dict[str, str] = {
    "benzodiazepines": "Benzodiazepines",
    "non_benzodiazepine_hypnotics": "Non-benzodiazepine hypnotics (sleep medicines)",
    "psychostimulants": "Psychostimulants",
    "maois": "MAO inhibitors (MAOIs)",
    "ketamine": "Ketamine", "esketamine": "Esketamine",
}
#: Session actions and record entry kinds (``monitor.session.record.EntryType`` values, infusion
#: actions, the session panel's commands) as the nurse reads them in confirmations and lists.
ACTION_NAMES: dict[str, str] = {
    "session_opened": "Session started", "start_session": "Session started",
    "nibp": "Blood pressure", "record_nibp": "Blood pressure recorded",
    "baseline": "Baseline", "bp_decision": "Pre-dose BP decision", "pre_dose_waiver": "Pre-dose check waived",
    "infusion_step": "Infusion step", "start": "Infusion started", "start_dosing": "Dosing started",
    "pause": "Infusion paused", "pause_infusion": "Infusion paused",
    "resume": "Infusion resumed", "resume_infusion": "Infusion resumed",
    "rate_change": "Infusion rate changed", "change_rate": "Infusion rate changed",
    "stop": "Infusion stopped", "stop_infusion": "Infusion stopped",
    "nasal_device": "Nasal device taken", "log_nasal_device": "Nasal device logged",
    "clinically_stable": "Clinically stable (signed)", "dosing_ended": "Dosing ended early",
    "end_dosing": "Dosing ended early", "assessment": "Assessment", "event": "Event",
    "correction": "Correction", "concomitant_medications": "Concomitant medications",
    "escort": "Escort confirmed", "session_aborted": "Session ended without discharge",
    "abort": "Session ended without discharge", "session_closed": "Session closed (discharged)",
    "close": "Session closed (discharged)", "alarm_limits": "Alarm limits changed",
}


def display_name(key: str, table: Mapping[str, str] | None = None) -> str:
    """The name the nurse reads for an internal ``key`` (a vital, medication or action key): from
    ``table`` (default: vitals, medications, then actions), else the key spaced and capitalised
    ("rate_change" → "Rate change"). Never raises."""
    tables = (table,) if table is not None else (VITAL_NAMES, MEDICATION_NAMES, ACTION_NAMES)
    for names in tables:
        if key in names:
            return names[key]
    text = str(key).replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


@functools.lru_cache(maxsize=1)
def _labels() -> dict[str, str]:
    labels: dict[str, str] = {}
    for rule in default_profile().rules:
        label = getattr(rule, "label", None)   # (technical and parameter-loss rules have none)
        if label:
            labels[rule.id] = str(label)
    return labels


def condition_label(condition: str) -> str:
    """A readable name for an alarm condition ("SpO2 low", "Connection lost")."""
    label = _labels().get(condition)
    return label or condition.replace("_", " ").capitalize()


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


def _comparison(profile: AlarmProfile, alarm) -> tuple[str, str]:
    """(the vital's short name, the comparison sign) of a physiological alarm: "NBP Sys", "≥"."""
    for rule in profile.rules:
        if rule.id != alarm.condition:
            continue
        high = getattr(rule, "direction", "high") == "high"
        if isinstance(rule, LimitRule):
            level = next((lv for lv in rule.levels if lv.threshold == alarm.limit), None)
            inclusive = level.inclusive if level is not None else False
            return VITAL_SHORT.get(rule.vitals[0], rule.vitals[0]), (("≥" if inclusive else ">") if high
                                                                     else ("≤" if inclusive else "<"))
        if isinstance(rule, NibpRule):
            nibp = next((lv for lv in rule.levels if alarm.limit is not None and alarm.limit in (lv.sys, lv.dia)), None)
            part = "nibp_dia" if nibp is not None and nibp.sys != alarm.limit else "nibp_sys"
            inclusive = nibp.inclusive if nibp is not None else True
            return VITAL_SHORT[part], (("≥" if inclusive else ">") if high else ("≤" if inclusive else "<"))
        if isinstance(rule, AssessmentRule):
            return rule.assessment.upper().replace("MOAAS", "MOAA/S"), "≤"
    return "", ""


def alarm_texts(alarm, profile: AlarmProfile) -> tuple[str, ...]:
    """An alarm's line in forms from the longest to the shortest, for a screen to take the longest
    that fits: "Blood pressure high 186 mmHg (limit 180)", "NBP Sys 186 ≥ 180"; a technical alarm
    "Alarm audio unavailable: no sound device", then "Alarm audio unavailable". Every form keeps
    the value and the limit whole. ``alarm`` is an engine alarm (``condition``, ``label``,
    ``kind``, ``value``, ``limit``); an unknown condition gives its label alone."""
    long = alarm_text(alarm, profile)
    forms = [long]
    if alarm.kind == "technical" or alarm.value is None:
        head = alarm.label.split(":")[0].strip()
        if head and head != long:
            forms.append(head)
        return tuple(forms)
    if alarm.condition == "no_breath" or any(isinstance(r, NoBreathRule) and r.id == alarm.condition
                                             for r in profile.rules):
        forms.append("No breath" + (f" ≥ {alarm.limit:g} s" if alarm.limit is not None else ""))
        return tuple(dict.fromkeys(forms))
    name, sign = _comparison(profile, alarm)
    if name:
        forms.append(f"{name} {alarm.value:g}" + (f" {sign} {alarm.limit:g}" if alarm.limit is not None and sign else ""))
    return tuple(dict.fromkeys(forms))


def alarm_vitals(profile: AlarmProfile, condition: str) -> set[str]:
    """The vitals whose tiles show an alarm of ``condition`` (empty for technical alarms)."""
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


# --------------------------------------------------------------------------- the alarm table
#: Technical conditions Vigil raises itself (not device codes), as the help window explains them.
_OWN_TECHNICAL: dict[str, str] = {
    "recording": "Vigil cannot write the session record",
    "audio": "this computer has no working sound output: every other alarm is then visual only",
    "dose_reached": "the IV infusion runs on after the planned dose was delivered",
    "device_battery": "the monitor reports a low battery",
    "device_data": "HL7 messages for another bed or patient arrive (refused, never recorded)",
    "board_unreachable": "the clinic board's broker cannot be reached (recording and alarms go on)",
}


def _seconds(s: float | None) -> str:
    if not s:
        return "none"
    return f"{s / 60:g} min" if s >= 120 and s % 60 == 0 else f"{s:g} s"


def _sign(direction: str, inclusive: bool) -> str:
    return ("≥" if inclusive else ">") if direction == "high" else ("≤" if inclusive else "<")


def alarm_table(profile: AlarmProfile) -> list[tuple[str, str, str, str]]:
    """Every alarm condition of ``profile`` as rows (alarm, starts when, priority, condition delay),
    with the limits in force, for the help window: "SpO2 low", "SpO2 ≤ 91 %", "MEDIUM", "15 s"."""
    from drivers.base import condition_text
    from drivers.catalogue import CATALOGUE

    rows: list[tuple[str, str, str, str]] = []
    for rule in profile.rules:
        if isinstance(rule, LimitRule):
            vital = " / ".join(VITAL_SHORT.get(v, v) for v in rule.vitals)
            unit = CATALOGUE[rule.vitals[0]].unit
            for level in rule.levels:
                sign = _sign(rule.direction, level.inclusive)
                if level.threshold is not None:
                    when = f"{vital} {sign} {level.threshold:g} {unit}"
                elif level.relative is not None and level.relative.percent is not None:
                    when = f"{vital} {level.relative.percent:g} % or more {'above' if rule.direction == 'high' else 'below'} the pre-dose baseline"
                else:
                    points = level.relative.points if level.relative is not None else 0
                    when = f"{vital} {points:g} {unit} {'above' if rule.direction == 'high' else 'below'} the pre-dose baseline"
                delay = f"SatSeconds {level.satseconds:g}" if level.satseconds else _seconds(level.delay_s)
                priority = level.priority.name
                if level.escalate_to is not None:
                    priority += f" (→ {level.escalate_to.name} after {_seconds(level.escalate_after_s)})"
                extra = f": {level.message}" if level.message and level.message.lower() not in when.lower() else ""
                rows.append((rule.label, when + extra, priority, delay))
        elif isinstance(rule, NibpRule):
            for nibp in rule.levels:
                sign = _sign(rule.direction, nibp.inclusive)
                parts = [f"{name} {sign} {value:g}" for name, value in (("SBP", nibp.sys), ("DBP", nibp.dia))
                         if value is not None]
                priority = nibp.priority.name
                if nibp.confirm_priority is not None:
                    priority += f" (→ {nibp.confirm_priority.name} when the next reading confirms it)"
                when = f"a reading with {' or '.join(parts)} mmHg" + (f": {nibp.message}" if nibp.message else "")
                rows.append((rule.label, when, priority, "—"))
        elif isinstance(rule, NoBreathRule):
            rows.append((rule.label, f"respiratory rate 0 for {_seconds(rule.seconds)}", rule.priority.name,
                         "(the time is the condition)"))
        elif isinstance(rule, AssessmentRule):
            rows.append((rule.label, f"a charted {rule.assessment.upper().replace('MOAAS', 'MOAA/S')} of "
                         f"{rule.at_or_below:g} or less" + (f": {rule.message}" if rule.message else ""),
                         rule.priority.name, "—"))
        elif isinstance(rule, TechnicalRule):
            priority = rule.priority.name + (f" (→ {rule.escalate_to.name} after {_seconds(rule.escalate_after_s)})"
                                             if rule.escalate_to is not None else "")
            if rule.id in _OWN_TECHNICAL:
                rows.append((condition_text(rule.codes[0]) if rule.codes[0] in _CONDITION_CODES else
                             rule.codes[0].replace("_", " ").capitalize(), _OWN_TECHNICAL[rule.id], priority, "—"))
            else:
                rows.append(("; ".join(condition_text(c) for c in rule.codes), "reported by the monitor", priority, "—"))
        elif isinstance(rule, ParameterLossRule):
            for parameter in rule.parameters:
                rows.append((parameter.label, "it had been arriving and gives no valid value while others still "
                             f"arrive ({parameter.hint})" if parameter.hint else "it stops arriving",
                             rule.priority.name, _seconds(rule.after_s)))
    return rows


def _condition_codes() -> frozenset[str]:
    from drivers.base import CONDITION_TEXTS

    return frozenset(CONDITION_TEXTS)


_CONDITION_CODES = _condition_codes()


# --------------------------------------------------------------------------- the device's parameters
#: Seconds of data from a device before a parameter it has not sent counts as not provided.
PRESENCE_GRACE_S = 20.0


class ParameterPresence:
    """Which parameters (vital keys) and waveforms (channel keys) the connected device provides,
    learnt from what it sends, so that the screen can give the room of what it does not provide
    (ECG, CO2, NIBP on a pulse oximeter) to what it does.

    A key is *provided* once anything of it has arrived from this device (a value, a missing or
    invalid value, a waveform chunk): it then stays provided until :meth:`reset` (another device),
    so a parameter that stops arriving keeps its place on screen, with dashes and its alarm.
    Until the device has sent data for ``grace_s`` seconds, every key counts as provided (a
    monitor that is still connecting, or sends its parameters in turn, collapses nothing).
    Times are monotonic seconds given by the caller; a time going backwards is taken as now.
    """

    def __init__(self, grace_s: float = PRESENCE_GRACE_S) -> None:
        if not grace_s >= 0:
            raise ValueError(f"grace_s must be a number of seconds >= 0, not {grace_s!r}")
        self.grace_s = float(grace_s)
        self._seen: set[str] = set()
        self._first: float | None = None

    def reset(self) -> None:
        """Another device: forget what the previous one sent."""
        self._seen.clear()
        self._first = None

    def arrived(self, keys: Iterable[str], now: float) -> None:
        """``keys`` (vital or waveform keys) arrived from the device at monotonic time ``now``."""
        keys = set(keys)
        if not keys:
            return
        if self._first is None:
            self._first = now
        self._seen |= keys

    def settled(self, now: float) -> bool:
        """True once the device has sent data for the grace period (what it provides is known)."""
        return self._first is not None and now - self._first >= self.grace_s

    def provided(self, key: str, now: float) -> bool:
        """Whether ``key`` is provided by the device (see the class docstring)."""
        return key in self._seen or not self.settled(now)

    def shown(self, keys: Iterable[str], now: float) -> tuple[str, ...]:
        """Those of ``keys`` that are provided, in the order given."""
        return tuple(key for key in keys if self.provided(key, now))
