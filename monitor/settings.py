"""Clinic settings: what the charge nurse sets for the whole clinic, with versioned loading.

:class:`ClinicSettings` holds the clinic identity, the alarm-system choices that belong to the
responsible organisation (latching, audio-pause time), the protocol schedules
(:class:`monitor.schedule.ScheduleConfig`), discharge rules, dose bounds and the minimum patient
age. Every field has a default and documented bounds; out-of-bounds values are refused with a
message naming the field.

Loading (:func:`load_settings`) layers, lowest precedence first:

1. the shipped defaults file (``resources/clinic_settings_default.json``; path passed in),
2. the clinic override file (optional; path passed in, usually in the platform config dir; a
   missing file means "no overrides"),
3. environment variables ``VIGIL_SETTING_<FIELD>``, nested fields joined by ``__``
   (``VIGIL_SETTING_SCHEDULES__IV__NIBP_INTERVAL_MIN=5``),
4. command-line overrides ``dotted.field=value`` (``schedules.iv.nibp_interval_min=5``).

Environment and command-line values are read as JSON when they parse (``5``, ``true``,
``[0.1, 1.2]``), else as text. Malformed input raises :class:`SettingsError` naming the source (file
path, variable or ``command line``) and the field. Files carry ``schema_version``; a newer version
than this code knows is refused, older ones pass through registered migrations.

:func:`update_settings` applies a charge nurse's changes (``PermissionDenied`` for anyone else).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from monitor.board.config import BoardSettings
from monitor.clinic.config import ClinicRecordSettings
from monitor.protocols import (
    DOSE_HARD_LIMITS_MG_PER_KG, DURATION_RANGE_MIN, MIN_ESKETAMINE_MONITORING_MIN, RATE_HARD_MAX_LIMITS_MG_PER_KG_PER_H,
)
from monitor.schedule import ScheduleConfig
from monitor.staff import PIN_MAX_LENGTH, PIN_MIN_LENGTH, Actor, RefusedAction, Role, User, refuse, require_role

__all__ = [
    "SCHEMA_VERSION", "ENV_PREFIX", "SettingsError", "ClinicSettings", "load_settings", "load_settings_file",
    "parse_cli_overrides", "update_settings", "settings_changes", "override_payload", "default_settings_path",
]

#: The settings schema this code reads and writes.
SCHEMA_VERSION = 1
#: Prefix of the environment variables that override settings.
ENV_PREFIX = "VIGIL_SETTING_"
#: Migrations from an older schema_version to the next: version → function(dict) -> dict.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class SettingsError(RefusedAction):
    """Settings that cannot be read or are invalid; the message names the source and the field."""


def _bounded(value: int | float, low: float, high: float, what: str, unit: str) -> Any:
    if not low <= value <= high:
        raise refuse(f"{what} {value:g} {unit} is outside {low:g}–{high:g} {unit}")
    return value


class ClinicSettings(BaseModel):
    """One clinic's settings (frozen; change them with :func:`update_settings`).

    Identity: ``clinic_name`` (1–120 characters; printed on records and the REMS form),
    ``clinic_address`` (≤ 300).

    Alarm system (IEC 60601-1-8: the responsible organisation's choices): ``alarm_latching``
    (default False, non-latching); ``audio_pause_max_s`` (default 120 s; 60–300 s: the longest
    audio pause the bedside may choose; 5 minutes is the ceiling because a paused alarm must not
    be forgotten); ``audio_pause_s`` (default 120 s; 30 s – ``audio_pause_max_s``).

    Protocols: ``schedules`` (:class:`ScheduleConfig`, NIBP intervals etc.);
    ``ketamine_dose_bounds_mg_per_kg`` (default 0.1–1.5, within 0.05–2.0);
    ``ketamine_typical_dose_mg_per_kg`` (default 0.5, within the bounds); ``ketamine_duration_min``
    (default 40; 10–240); ``esketamine_monitoring_min`` (default 120; 120–480: never lower than 120);
    ``ketamine_max_rate_mg_per_kg_per_h`` (default 2.25, the upper dose bound over 40 min; 0.5–9:
    the hard maximum infusion rate, refused above; rates above 1.5 × the plan's need a reason).

    Pre-dose and discharge: ``pre_dose_bp_advisory_sys/dia_mmhg`` (default 140/90: a pre-dose BP
    above either needs a proceed/defer decision; 120–180 / 70–110);
    ``discharge_min_after_infusion_min`` (default 60; 30–240); ``discharge_aldrete_min`` (default 9;
    8–10); ``discharge_bp_tolerance_pct`` (default 20; 10–30: latest BP within this of baseline,
    systolic and diastolic); ``discharge_bp_max_age_min`` (default 30; 10–60: that BP must be this
    recent); ``discharge_bp_ceiling_sys/dia_mmhg`` (default 180/110, the severe-hypertension limit;
    140–220 / 90–130: a discharge BP at or above either is never "within baseline").

    Patients: ``min_patient_age_years`` (default 18; 12–100).

    Staff: ``pin_min_length`` (default 6; 6–12 digits): the shortest PIN the clinic accepts; a
    staff member whose PIN is shorter must choose a new one at the next sign-in.

    Clinic board: ``board`` (:class:`monitor.board.config.BoardSettings`; off by default): the
    broker, clinic and chair names, account (a password *file*, never a password), CA, keep-alive
    (2–10 s), whether waves are published, whether the board may acknowledge, whether it shows
    patient names. See docs/clinic-board.md.

    Clinic record: ``clinic_record`` (:class:`monitor.clinic.config.ClinicRecordSettings`; off by
    default): the PostgreSQL clinic record this chair copies its sessions to, the chair's name there,
    and whether staff accounts and settings are kept there. See docs/clinic-record.md.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    clinic_name: str = "Vigil clinic"
    clinic_address: str = ""
    alarm_latching: bool = False
    audio_pause_s: int = 120
    audio_pause_max_s: int = 120
    schedules: ScheduleConfig = ScheduleConfig()
    ketamine_dose_bounds_mg_per_kg: tuple[float, float] = (0.1, 1.5)
    ketamine_typical_dose_mg_per_kg: float = 0.5
    ketamine_duration_min: int = 40
    esketamine_monitoring_min: int = MIN_ESKETAMINE_MONITORING_MIN
    ketamine_max_rate_mg_per_kg_per_h: float = 2.25
    pre_dose_bp_advisory_sys_mmhg: int = 140
    pre_dose_bp_advisory_dia_mmhg: int = 90
    discharge_min_after_infusion_min: int = 60
    discharge_aldrete_min: int = 9
    discharge_bp_tolerance_pct: int = 20
    discharge_bp_max_age_min: int = 30
    discharge_bp_ceiling_sys_mmhg: int = 180
    discharge_bp_ceiling_dia_mmhg: int = 110
    min_patient_age_years: int = 18
    pin_min_length: int = PIN_MIN_LENGTH
    board: BoardSettings = BoardSettings()
    clinic_record: ClinicRecordSettings = ClinicRecordSettings()

    @field_validator("ketamine_max_rate_mg_per_kg_per_h")
    @classmethod
    def _max_rate(cls, value: float) -> float:
        return _bounded(value, *RATE_HARD_MAX_LIMITS_MG_PER_KG_PER_H, "Maximum infusion rate", "mg/kg/h")

    @field_validator("discharge_bp_ceiling_sys_mmhg")
    @classmethod
    def _ceiling_sys(cls, value: int) -> int:
        return _bounded(value, 140, 220, "Discharge BP ceiling, systolic", "mmHg")

    @field_validator("discharge_bp_ceiling_dia_mmhg")
    @classmethod
    def _ceiling_dia(cls, value: int) -> int:
        return _bounded(value, 90, 130, "Discharge BP ceiling, diastolic", "mmHg")

    @field_validator("schema_version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise refuse(f"schema_version {value} is not supported (this Vigil reads version {SCHEMA_VERSION})")
        return value

    @field_validator("clinic_name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = " ".join(value.split())
        if not 1 <= len(value) <= 120:
            raise refuse("The clinic name must be 1–120 characters")
        return value

    @field_validator("clinic_address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip()
        if len(value) > 300:
            raise refuse("The clinic address may have at most 300 characters")
        return value

    @field_validator("audio_pause_max_s")
    @classmethod
    def _pause_max(cls, value: int) -> int:
        return _bounded(value, 60, 300, "Maximum audio pause", "s")

    @field_validator("ketamine_dose_bounds_mg_per_kg")
    @classmethod
    def _dose_bounds(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        hard_low, hard_high = DOSE_HARD_LIMITS_MG_PER_KG
        if not hard_low <= low < high <= hard_high:
            raise refuse(f"Ketamine dose bounds {low:g}–{high:g} mg/kg must lie within "
                         f"{hard_low:g}–{hard_high:g} mg/kg, lower below upper")
        return value

    @field_validator("ketamine_duration_min")
    @classmethod
    def _duration(cls, value: int) -> int:
        return _bounded(value, *DURATION_RANGE_MIN, "Default infusion duration", "min")

    @field_validator("esketamine_monitoring_min")
    @classmethod
    def _esk(cls, value: int) -> int:
        if value < MIN_ESKETAMINE_MONITORING_MIN:
            raise refuse(f"Esketamine monitoring {value} min is below the required "
                         f"{MIN_ESKETAMINE_MONITORING_MIN} min")
        return _bounded(value, MIN_ESKETAMINE_MONITORING_MIN, 480, "Esketamine monitoring", "min")

    @field_validator("pre_dose_bp_advisory_sys_mmhg")
    @classmethod
    def _adv_sys(cls, value: int) -> int:
        return _bounded(value, 120, 180, "Pre-dose systolic advisory", "mmHg")

    @field_validator("pre_dose_bp_advisory_dia_mmhg")
    @classmethod
    def _adv_dia(cls, value: int) -> int:
        return _bounded(value, 70, 110, "Pre-dose diastolic advisory", "mmHg")

    @field_validator("discharge_min_after_infusion_min")
    @classmethod
    def _discharge(cls, value: int) -> int:
        return _bounded(value, 30, 240, "Minimum time from infusion end to discharge", "min")

    @field_validator("discharge_aldrete_min")
    @classmethod
    def _aldrete(cls, value: int) -> int:
        return _bounded(value, 8, 10, "Minimum modified Aldrete for discharge", "points")

    @field_validator("discharge_bp_tolerance_pct")
    @classmethod
    def _tolerance(cls, value: int) -> int:
        return _bounded(value, 10, 30, "Discharge BP tolerance", "%")

    @field_validator("discharge_bp_max_age_min")
    @classmethod
    def _bp_age(cls, value: int) -> int:
        return _bounded(value, 10, 60, "Age of the discharge BP", "min")

    @field_validator("min_patient_age_years")
    @classmethod
    def _age(cls, value: int) -> int:
        return _bounded(value, 12, 100, "Minimum patient age", "years")

    @field_validator("pin_min_length")
    @classmethod
    def _pin_length(cls, value: int) -> int:
        return _bounded(value, PIN_MIN_LENGTH, PIN_MAX_LENGTH, "Shortest PIN", "digits")

    @model_validator(mode="after")
    def _cross(self) -> "ClinicSettings":
        if not 30 <= self.audio_pause_s <= self.audio_pause_max_s:
            raise refuse(f"Audio pause {self.audio_pause_s} s must be 30 s – the clinic maximum "
                         f"{self.audio_pause_max_s} s")
        low, high = self.ketamine_dose_bounds_mg_per_kg
        if not low <= self.ketamine_typical_dose_mg_per_kg <= high:
            raise refuse(f"Typical ketamine dose {self.ketamine_typical_dose_mg_per_kg:g} mg/kg is outside the "
                         f"dose bounds {low:g}–{high:g} mg/kg")
        return self

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict: the copy of the settings in force that a session record keeps. The
        chair's links to the clinic board (``board``) and to the clinic record (``clinic_record``)
        are the chair's configuration, not the session's, and are left out: where the broker is and
        whose password file are no part of a patient's record (and would be free text in a
        de-identified export); :meth:`from_payload` gives them their defaults."""
        return self.model_dump(mode="json", exclude={"board", "clinic_record"})

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "ClinicSettings":
        """Rebuild from :meth:`to_payload` output (validated again)."""
        return cls.model_validate(dict(payload))


# --------------------------------------------------------------------------- layering helpers

Path_ = tuple[str, ...]


def _flatten(data: Mapping[str, Any], prefix: Path_ = ()) -> dict[Path_, Any]:
    out: dict[Path_, Any] = {}
    for key, value in data.items():
        path = prefix + (str(key),)
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def _set(tree: dict[str, Any], path: Path_, value: Any) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_cli_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn command-line ``dotted.field=value`` strings into a nested dict.

    Values are JSON where they parse, else text. An item without ``=`` raises :class:`SettingsError`.
    """
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingsError(f"command line: setting {item!r} should look like field=value "
                                "(e.g. schedules.iv.nibp_interval_min=5)")
        _set(tree, tuple(key.split(".")), _parse_value(value.strip()))
    return tree


def _env_layer(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[Path_, str]]:
    tree: dict[str, Any] = {}
    origin: dict[Path_, str] = {}
    for name, value in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX):].split("__") if part)
        if not path:
            continue
        _set(tree, path, _parse_value(value))
        origin[path] = f"environment variable {name}"
    return tree, origin


def _migrate(data: dict[str, Any], source: str) -> dict[str, Any]:
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise SettingsError(f"{source}: schema_version {version!r} is not a whole number")
    if version > SCHEMA_VERSION:
        raise SettingsError(f"{source}: schema_version {version} is newer than this Vigil understands "
                            f"({SCHEMA_VERSION}); update Vigil or use an older settings file")
    while version < SCHEMA_VERSION:
        step = _MIGRATIONS.get(version)
        if step is None:
            raise SettingsError(f"{source}: schema_version {version} cannot be migrated to {SCHEMA_VERSION}")
        data = step(dict(data))
        version = data.get("schema_version", version + 1)
    return data


def load_settings_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one settings JSON file into a dict (migrated to the current schema_version).

    Raises :class:`SettingsError` naming the file for a missing or unreadable file, invalid JSON
    (with line and column), a top level that is not an object, or an unsupported schema_version.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{source}: settings file not found") from None
    except OSError as exc:
        raise SettingsError(f"{source}: cannot read settings file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{source}: settings file is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{source}: the top level must be a JSON object of settings")
    return _migrate(data, source)


def _validate(tree: dict[str, Any], origin: Mapping[Path_, str]) -> ClinicSettings:
    try:
        return ClinicSettings.model_validate(tree)
    except ValidationError as exc:
        messages = []
        for error in exc.errors(include_url=False):
            loc = tuple(str(p) for p in error.get("loc", ()))
            for n in range(len(loc), 0, -1):
                if loc[:n] in origin:
                    source = origin[loc[:n]]
                    break
            else:  # a rule across fields: name every layer involved
                source = "settings from " + ", ".join(dict.fromkeys(origin.values()) or ["defaults"])
            text = str(error.get("msg", ""))
            if error.get("type") == "extra_forbidden":
                text = "unknown setting (check the spelling)"
            if text.startswith("Value error, "):
                text = text[len("Value error, "):]
            field = ".".join(loc)
            messages.append(f"{source}: {field}: {text}" if field else f"{source}: {text}")
        raise SettingsError("; ".join(messages)) from None


def _layer(tree: dict[str, Any], origin: dict[Path_, str], data: Mapping[str, Any], source: str) -> None:
    for path, value in _flatten(data).items():
        _set(tree, path, value)
        origin[path] = source


def load_settings(
    default_path: str | os.PathLike[str],
    override_path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | Iterable[str] | None = None,
) -> ClinicSettings:
    """Load the clinic settings: defaults file < override file < environment < command line.

    ``default_path`` must exist. ``override_path`` may be None or a missing file (no overrides).
    ``environ`` defaults to ``os.environ`` (only ``VIGIL_SETTING_*`` variables are read); pass ``{}``
    to ignore the environment. ``cli`` is a nested dict or ``dotted.field=value`` strings. Raises
    :class:`SettingsError` naming the file / variable / command line and the field at fault.
    """
    tree: dict[str, Any] = {}
    origin: dict[Path_, str] = {}
    _layer(tree, origin, load_settings_file(default_path), str(default_path))
    if override_path is not None and Path(override_path).exists():
        _layer(tree, origin, load_settings_file(override_path), str(override_path))
    env_tree, env_origin = _env_layer(os.environ if environ is None else environ)
    for path, value in _flatten(env_tree).items():
        _set(tree, path, value)
        origin[path] = env_origin.get(path, "environment")
    if cli is not None:
        cli_tree = dict(cli) if isinstance(cli, Mapping) else parse_cli_overrides(cli)
        _layer(tree, origin, cli_tree, "command line")
    tree["schema_version"] = SCHEMA_VERSION if "schema_version" not in tree else tree["schema_version"]
    return _validate(tree, origin)


def default_settings_path() -> Path:
    """Path of the shipped defaults file, ``resources/clinic_settings_default.json``."""
    return Path(__file__).resolve().parent.parent / "resources" / "clinic_settings_default.json"


# --------------------------------------------------------------------------- changes


def update_settings(current: ClinicSettings, changes: Mapping[str, Any], user: User | Actor) -> ClinicSettings:
    """Apply ``changes`` (nested dict, or ``{"dotted.field": value}``) and return the new settings.

    Only a charge nurse may do this (:class:`PermissionDenied` otherwise). The result is validated
    as a whole; invalid values raise :class:`SettingsError` naming the field. ``schema_version`` cannot
    be changed. ``current`` is not modified.
    """
    require_role(user, Role.CHARGE_NURSE, "change clinic settings")
    tree = current.model_dump(mode="json")
    origin: dict[Path_, str] = {}
    for key, value in changes.items():
        nested = {key: value} if "." not in key else {}
        if "." in key:
            _set(nested, tuple(key.split(".")), value)
        for path, leaf in _flatten(nested).items():
            if path == ("schema_version",):
                raise SettingsError("schema_version cannot be changed")
            _set(tree, path, leaf)
            origin[path] = "change"
    return _validate(tree, origin)


def settings_changes(old: ClinicSettings, new: ClinicSettings) -> list[tuple[str, Any, Any]]:
    """Differences as ``(dotted.field, old value, new value)``, for the audit trail."""
    before, after = _flatten(old.model_dump(mode="json")), _flatten(new.model_dump(mode="json"))
    return [(".".join(path), before.get(path), after.get(path))
            for path in sorted(set(before) | set(after)) if before.get(path) != after.get(path)]


def override_payload(settings: ClinicSettings, defaults: ClinicSettings) -> dict[str, Any]:
    """The smallest nested dict that turns ``defaults`` into ``settings`` (what the clinic override
    file should contain), with ``schema_version``."""
    tree: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    after = _flatten(settings.model_dump(mode="json"))
    for dotted, _, value in settings_changes(defaults, settings):
        _set(tree, tuple(dotted.split(".")), after.get(tuple(dotted.split(".")), value))
    return tree
