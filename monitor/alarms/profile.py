"""Alarm profiles: which conditions are alarms, at what limits, priorities and delays.

A profile is data (pydantic, JSON on disk). The clinic default shipped in
``resources/alarm_profile_default.json`` is the clinic's table of default limits for an adult
ketamine session. A session may adjust a limit, but only inside the bounds the clinic set for
it (:meth:`AlarmProfile.adjusted`); anything else is refused with a message that says which limit
and which bounds. Whatever the clinic or the chair chooses, a profile that goes past the hard limits
of :mod:`monitor.alarms.safety` (or lacks a required alarm) is refused, at load and at every change.

Rule kinds:

* ``limit`` — a continuous vital above/below a threshold, with levels of rising priority.
  Each level has its own *condition delay* (the condition must hold that long before the alarm
  starts) or, for SpO2, *SatSeconds* (points below the limit × seconds) with a safety net of
  N separate violations within a window; a level may *escalate* to a higher priority when the
  alarm has been sustained; a level may be *relative to baseline* (percent or points above).
* ``nibp`` — systolic-or-diastolic thresholds on each cuff reading; a level may be *confirmed*
  by a second qualifying reading within a window, which raises its priority.
* ``no_breath`` — respiratory rate reported as 0 for a duration.
* ``assessment`` — a charted score at or below a value (MOAA/S ≤ 2).
* ``technical`` — device conditions and link state (sensor off, stale data, connection lost,
  recording failed, alarm audio unavailable), optionally escalating after a time.
* ``parameter_loss`` — a parameter that had been arriving (SpO2, HR/PR, RR, EtCO2) gives no
  valid value for ``after_s`` while the device still sends others: one technical alarm per
  parameter, with a hint ("check the sampling line").

Versions: files of an older schema are upgraded on loading by :func:`migrate_profile_data` (see
there: alarm audio unavailable becomes MEDIUM, NIBP confirmation waits for the next reading up to
16 min, the parameter-loss, dose-reached, clinic-board-unreachable and data-unreadable rules are
added, the acquisition watchdog joins the device link), and the upgrade is reported.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers.errors import ConfigError

PROFILE_SCHEMA_VERSION = 4


class Priority(enum.IntEnum):
    """IEC 60601-1-8 alarm priorities, comparable (HIGH > MEDIUM > LOW)."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @classmethod
    def parse(cls, value: "str | int | Priority") -> "Priority":
        """Accept a Priority, its name (any case) or its number."""
        if isinstance(value, Priority):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                raise ValueError(f"priority must be LOW, MEDIUM or HIGH, not {value!r}") from None
        return cls(value)


PriorityField = Annotated[Priority, Field(json_schema_extra={"enum": ["LOW", "MEDIUM", "HIGH"]})]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    @model_validator(mode="before")
    @classmethod
    def _priorities(cls, data):  # accept "HIGH" etc. in JSON for every *priority* field
        if isinstance(data, dict):
            data = {k: (Priority.parse(v) if (k.endswith("priority") or k == "escalate_to") and v is not None else v)
                    for k, v in data.items()}
        return data


class Relative(_Model):
    """A limit relative to the session's baseline value of the same vital."""

    percent: float | None = Field(default=None, gt=0, le=200)
    points: float | None = Field(default=None, gt=0, le=200)

    @model_validator(mode="after")
    def _one(self) -> "Relative":
        if (self.percent is None) == (self.points is None):
            raise ValueError("a relative limit needs exactly one of percent or points")
        return self

    def threshold(self, baseline: float, direction: str) -> float:
        """The absolute threshold for ``baseline``."""
        sign = 1.0 if direction == "high" else -1.0
        if self.percent is not None:
            return round(baseline * (1.0 + sign * self.percent / 100.0), 2)
        return round(baseline + sign * float(self.points or 0.0), 2)


class SafetyNet(_Model):
    """SatSeconds safety net: this many separate violations within the window alarm at once."""

    violations: int = Field(default=3, ge=2, le=10)
    window_s: float = Field(default=60.0, gt=0, le=600)


class Level(_Model):
    """One level of a limit rule. ``threshold`` and/or ``relative``; the alarm starts when the
    value has been beyond it for ``delay_s`` seconds (or has accumulated ``satseconds``)."""

    priority: Priority
    threshold: float | None = None
    inclusive: bool = False
    relative: Relative | None = None
    delay_s: float = Field(default=0.0, ge=0, le=600)
    satseconds: float | None = Field(default=None, gt=0, le=1000)
    safety_net: SafetyNet | None = None
    escalate_after_s: float | None = Field(default=None, gt=0, le=3600)
    escalate_to: Priority | None = None
    bounds: tuple[float, float] | None = None
    message: str = ""

    @model_validator(mode="after")
    def _check(self) -> "Level":
        if self.threshold is None and self.relative is None:
            raise ValueError("a level needs a threshold or a relative limit")
        if (self.escalate_after_s is None) != (self.escalate_to is None):
            raise ValueError("escalate_after_s and escalate_to go together")
        if self.escalate_to is not None and self.escalate_to <= self.priority:
            raise ValueError("escalate_to must be a higher priority")
        if self.bounds is not None:
            low, high = self.bounds
            if low > high:
                raise ValueError(f"bounds {self.bounds} are reversed")
            if self.threshold is not None and not low <= self.threshold <= high:
                raise ValueError(f"threshold {self.threshold:g} lies outside its bounds {low:g}–{high:g}")
        return self


class LimitRule(_Model):
    """A continuous vital against levels (see the module docstring). ``vitals`` lists the
    sources in order of preference: a later one is used only while no earlier one has given a
    valid value for ``prefer_window_s`` (e.g. ECG heart rate before oximeter pulse rate)."""

    kind: Literal["limit"] = "limit"
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    vitals: tuple[str, ...] = Field(min_length=1)
    direction: Literal["high", "low"]
    levels: tuple[Level, ...] = Field(min_length=1)
    prefer_window_s: float = 10.0
    invalid_end_s: float = Field(default=10.0, gt=0, le=600)


class NibpLevel(_Model):
    """One NIBP level: systolic and/or diastolic thresholds (either one qualifies)."""

    priority: Priority
    sys: float | None = None
    dia: float | None = None
    inclusive: bool = True
    confirm_within_s: float | None = Field(default=None, gt=0, le=3600)
    confirm_priority: Priority | None = None
    message: str = ""
    confirm_message: str = ""
    bounds_sys: tuple[float, float] | None = None
    bounds_dia: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _check(self) -> "NibpLevel":
        if self.sys is None and self.dia is None:
            raise ValueError("an NIBP level needs a systolic or a diastolic threshold")
        if (self.confirm_within_s is None) != (self.confirm_priority is None):
            raise ValueError("confirm_within_s and confirm_priority go together")
        return self


class NibpRule(_Model):
    """Cuff readings against levels; ``direction`` high: ≥ (or >) thresholds, low: ≤ (or <)."""

    kind: Literal["nibp"] = "nibp"
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    direction: Literal["high", "low"]
    levels: tuple[NibpLevel, ...] = Field(min_length=1)


class NoBreathRule(_Model):
    """No breath detected (respiratory rate reported as 0) for ``seconds``."""

    kind: Literal["no_breath"] = "no_breath"
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    priority: Priority
    seconds: float = Field(default=30.0, ge=5, le=120)


class AssessmentRule(_Model):
    """A charted assessment score at or below ``at_or_below``."""

    kind: Literal["assessment"] = "assessment"
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    assessment: str
    at_or_below: float
    priority: Priority
    message: str = ""


class TechnicalRule(_Model):
    """Device conditions (by code) that are technical alarms. Each code is its own condition."""

    kind: Literal["technical"] = "technical"
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    codes: tuple[str, ...] = Field(min_length=1)
    priority: Priority
    escalate_after_s: float | None = Field(default=None, gt=0, le=3600)
    escalate_to: Priority | None = None


class LostParameter(_Model):
    """One parameter watched for loss: its alarm ``id`` (the condition), the ``vitals`` that carry
    it (any one valid keeps it alive: HR or the pulse rate), a ``label`` and a ``hint``."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    vitals: tuple[str, ...] = Field(min_length=1)
    hint: str = ""


class ParameterLossRule(_Model):
    """Parameters that stopped arriving: see :class:`LostParameter`. ``after_s``: how long without a
    valid value; ``others_within_s``: another vital must have been valid this recently (otherwise
    the device link itself is silent, which the ``device_link`` rule reports)."""

    kind: Literal["parameter_loss"] = "parameter_loss"
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    priority: Priority
    after_s: float = Field(default=30.0, ge=5, le=600)
    others_within_s: float = Field(default=10.0, gt=0, le=120)
    parameters: tuple[LostParameter, ...] = Field(min_length=1)


Rule = Annotated[Union[LimitRule, NibpRule, NoBreathRule, AssessmentRule, TechnicalRule, ParameterLossRule],
                 Field(discriminator="kind")]


class AlarmProfile(_Model):
    """A complete set of alarm rules (clinic default or a session's adjusted copy)."""

    schema_version: int = PROFILE_SCHEMA_VERSION
    name: str
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _unique(self) -> "AlarmProfile":
        if self.schema_version > PROFILE_SCHEMA_VERSION:
            raise ValueError(f"profile schema version {self.schema_version} is newer than this Vigil "
                             f"understands ({PROFILE_SCHEMA_VERSION}); update Vigil")
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rule ids: {', '.join(dupes)}")
        return self

    def rule(self, rule_id: str) -> Rule:
        """The rule with ``rule_id`` (KeyError naming the ids otherwise)."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(f"no alarm rule {rule_id!r}; rules: {', '.join(r.id for r in self.rules)}")

    def adjusted(self, changes: dict[str, float]) -> "AlarmProfile":
        """A copy with limits changed, each inside the clinic's bounds.

        ``changes`` maps ``"RULE.PRIORITY"`` (limit rules; e.g. ``"spo2_low.MEDIUM"``) or
        ``"RULE.PRIORITY.sys"`` / ``".dia"`` (NIBP rules) to a new threshold. A key that names
        nothing, or a value outside the bounds (or a level without bounds), raises ValueError.
        """
        rules = list(self.rules)
        for key, value in changes.items():
            parts = key.split(".")
            if len(parts) not in (2, 3):
                raise ValueError(f"limit {key!r} must look like RULE.PRIORITY or RULE.PRIORITY.sys")
            rule_id, prio_name = parts[0], parts[1]
            priority = Priority.parse(prio_name)
            index = next((i for i, r in enumerate(rules) if r.id == rule_id), None)
            if index is None:
                raise ValueError(f"no alarm rule {rule_id!r}")
            rule = rules[index]
            value = float(value)
            if isinstance(rule, LimitRule) and len(parts) == 2:
                levels = list(rule.levels)
                li = next((i for i, lv in enumerate(levels) if lv.priority == priority), None)
                if li is None:
                    raise ValueError(f"{rule.label} has no {priority.name} level")
                level = levels[li]
                _in_bounds(f"{rule.label} {priority.name} limit", value, level.bounds)
                levels[li] = level.model_copy(update={"threshold": value})
                rules[index] = rule.model_copy(update={"levels": tuple(levels)})
            elif isinstance(rule, NibpRule) and len(parts) == 3 and parts[2] in ("sys", "dia"):
                nibp_levels = list(rule.levels)
                li = next((i for i, lv in enumerate(nibp_levels) if lv.priority == priority), None)
                if li is None:
                    raise ValueError(f"{rule.label} has no {priority.name} level")
                nibp_level = nibp_levels[li]
                bounds = nibp_level.bounds_sys if parts[2] == "sys" else nibp_level.bounds_dia
                _in_bounds(f"{rule.label} {priority.name} {parts[2]} limit", value, bounds)
                nibp_levels[li] = nibp_level.model_copy(update={parts[2]: value})
                rules[index] = rule.model_copy(update={"levels": tuple(nibp_levels)})
            else:
                raise ValueError(f"limit {key!r} cannot be adjusted")
        from monitor.alarms.safety import check_profile  # noqa: PLC0415 (it reads this module's models)

        return check_profile(AlarmProfile(schema_version=self.schema_version, name=self.name + " (adjusted)",
                                          rules=tuple(rules)), "the changed alarm limits")

    def to_json(self) -> str:
        """The profile as JSON (priorities by name)."""
        return json.dumps(self.to_payload(), indent=2)

    def to_payload(self) -> dict:
        """The profile as a JSON-ready dict (priorities by name): what a session's record keeps."""
        return _named(self.model_dump(mode="python"))

    def fingerprint(self) -> str:
        """:func:`profile_fingerprint` of this profile."""
        return profile_fingerprint(self.to_payload())


def profile_fingerprint(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a profile's JSON payload (:meth:`AlarmProfile.to_payload`): its ``rules`` and
    ``schema_version`` in canonical JSON (sorted keys, no spaces), not its name — equal for profiles
    that alarm alike. Computed on the payload as recorded, so a session's record can be checked
    against it by any later Vigil. A payload without ``rules`` raises ``KeyError``."""
    text = json.dumps({"schema_version": payload.get("schema_version"), "rules": payload["rules"]},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _named(value):
    if isinstance(value, Priority):
        return value.name
    if isinstance(value, dict):
        return {k: _named(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_named(v) for v in value]
    return value


def _in_bounds(what: str, value: float, bounds: tuple[float, float] | None) -> None:
    if bounds is None:
        raise ValueError(f"{what} is fixed by the clinic and cannot be changed for a session")
    low, high = bounds
    if not low <= value <= high:
        raise ValueError(f"{what} {value:g} is outside the clinic's bounds {low:g}–{high:g}")


class ProfileError(ConfigError):
    """A profile file that cannot be used; the message names the file and the problem."""


class UnsafeProfileError(ProfileError):
    """A profile that goes past the limits a clinic cannot go past (:mod:`monitor.alarms.safety`);
    ``problems`` lists each one, and the message names them all."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


def load_profile(path: str | Path | None = None) -> AlarmProfile:
    """Load a profile from ``path`` (default: the clinic default shipped with Vigil)."""
    if path is None:
        text = resources.files("resources").joinpath("alarm_profile_default.json").read_text("utf-8")
        where = "the shipped default alarm profile"
    else:
        where = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(f"cannot read alarm profile {where}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"alarm profile {where} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        data, _ = migrate_profile_data(data)
    try:
        profile = AlarmProfile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise ProfileError(f"alarm profile {where} is invalid at {loc or 'top level'}: {first.get('msg')} "
                           f"({exc.error_count()} problem(s))") from None
    from monitor.alarms.safety import check_profile  # noqa: PLC0415 (it reads this module's models)

    return check_profile(profile, f"alarm profile {where}")


def _default_data() -> dict:
    text = resources.files("resources").joinpath("alarm_profile_default.json").read_text("utf-8")
    return json.loads(text)


def _step_1_to_2(rules: list, defaults: dict[str, dict], changes: list[str]) -> None:
    """The clinic audit: audio unavailable MEDIUM, NIBP confirmed by the next reading, new rules."""
    for rule in rules:
        if rule.get("kind") == "technical" and "audio_unavailable" in (rule.get("codes") or ()) and \
                str(rule.get("priority", "")).upper() == "LOW":
            rule["priority"] = "MEDIUM"
            changes.append("alarm audio unavailable is now MEDIUM")
        if rule.get("kind") == "nibp":
            for level in rule.get("levels") or ():
                if isinstance(level, dict) and level.get("confirm_within_s") == 300:
                    level["confirm_within_s"] = 960
                    changes.append(f"{rule.get('label', rule.get('id'))}: confirmed by the next reading "
                                   "up to 16 min")
    _add_rules(rules, defaults, ("parameter_lost", "dose_reached"), changes)


def _step_2_to_3(rules: list, defaults: dict[str, dict], changes: list[str]) -> None:
    """More monitors and the clinic board: ECG leads off is a sensor problem, messages for another
    bed are a technical alarm, and the clinic board's broker being unreachable is a LOW one."""
    _add_rules(rules, defaults, ("board_unreachable", "device_data"), changes)
    covered = {code for rule in rules if rule.get("kind") == "technical" for code in (rule.get("codes") or ())}
    sensor = next((r for r in rules if r.get("id") == "sensor_problem" and r.get("kind") == "technical"), None)
    if "ecg_leads_off" not in covered:
        if sensor is not None:
            sensor["codes"] = [*sensor.get("codes", []), "ecg_leads_off"]
        else:
            rules.append({"kind": "technical", "id": "ecg_leads", "priority": "MEDIUM", "codes": ["ecg_leads_off"]})
        changes.append("ECG leads off is now a MEDIUM technical alarm")


def _step_3_to_4(rules: list, defaults: dict[str, dict], changes: list[str]) -> None:
    """Monitoring never stops silently: reading the device stopping (the acquisition watchdog) is a
    device-link alarm, and a burst of frames rejected as unreadable is a MEDIUM one."""
    link = next((r for r in rules if r.get("kind") == "technical" and "connection_lost" in (r.get("codes") or ())),
                None)
    covered = {code for rule in rules if rule.get("kind") == "technical" for code in (rule.get("codes") or ())}
    if "acquisition_stopped" not in covered:
        if link is not None:
            link["codes"] = [*link.get("codes", []), "acquisition_stopped"]
        else:
            rules.append({"kind": "technical", "id": "acquisition", "priority": "MEDIUM",
                          "codes": ["acquisition_stopped"]})
        changes.append("reading the device stopping (acquisition_stopped) is now a device-link alarm")
    if "data_unreadable" not in covered:
        _add_rules(rules, defaults, ("data_unreadable",), changes)


def _add_rules(rules: list, defaults: dict[str, dict], rule_ids: tuple[str, ...], changes: list[str]) -> None:
    ids = {r.get("id") for r in rules}
    for rule_id in rule_ids:
        if rule_id not in ids and rule_id in defaults:
            rules.append(json.loads(json.dumps(defaults[rule_id])))
            changes.append(f"rule {rule_id!r} added from the shipped default")


#: ``_MIGRATIONS[v]`` upgrades a profile of schema ``v`` to ``v + 1``.
_MIGRATIONS = {1: _step_1_to_2, 2: _step_2_to_3, 3: _step_3_to_4}


def migrate_profile_data(data: dict) -> tuple[dict, list[str]]:
    """Upgrade a profile's JSON data to :data:`PROFILE_SCHEMA_VERSION`; returns the new data and one
    line per change made (empty when it was current).

    * 1 → 2 (the clinic audit): ``audio_unavailable`` is at least MEDIUM (every other alarm is then
      visual only); an NIBP level confirmed "within 300 s" is confirmed by the next reading up to
      960 s (cuff cycles of 5, 10 or 15 min, with a minute's tolerance); the ``parameter_lost`` and
      ``dose_reached`` rules of the shipped default are added when absent.
    * 2 → 3 (more monitors, the clinic board): ``ecg_leads_off`` joins the sensor problems; the
      ``device_data`` (messages for another bed) and ``board_unreachable`` rules are added.
    * 3 → 4 (monitoring never stops silently): ``acquisition_stopped`` (the pipeline's watchdog)
      joins the device-link rule, and the ``data_unreadable`` rule (MEDIUM) is added.

    Anything else is left as the clinic wrote it; validation follows.
    """
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version >= PROFILE_SCHEMA_VERSION:
        return data, []
    data = json.loads(json.dumps(data))
    changes: list[str] = []
    rules = data.get("rules")
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        return data, []
    defaults = {r["id"]: r for r in _default_data()["rules"]}
    for step in range(max(version, 1), PROFILE_SCHEMA_VERSION):
        _MIGRATIONS[step](rules, defaults, changes)
    data["schema_version"] = PROFILE_SCHEMA_VERSION
    return data, changes


def default_profile() -> AlarmProfile:
    """The clinic default shipped with Vigil."""
    return load_profile(None)
