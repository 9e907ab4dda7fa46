"""What a device says, as data: numeric observations, waveform chunks, conditions and attributes.

These models sit at the bottom of Vigil: drivers produce them, ``monitor/`` consumes them.
They never import Qt or anything from ``monitor/``.

Times: ``sample_time`` is always timezone-aware UTC and is when Vigil received (or, for the
simulated monitor, generated) the data. ``device_time`` is what the device's own clock said, kept
as sent (usually naive local time) and never trusted for ordering.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import datetime, timezone
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from drivers.catalogue import CATALOGUE, VITAL_KEYS


class Quality(str, enum.Enum):
    """Flags qualifying one numeric observation."""

    IMPLAUSIBLE = "implausible"      # outside the catalogue's plausible range
    INVALID = "invalid"              # the device marks the value invalid
    QUESTIONABLE = "questionable"    # the device marks the value questionable
    UNAVAILABLE = "unavailable"      # the device says the measurement is unavailable
    DEMO = "demo"                    # the device is in demo mode
    ARTIFACT = "artifact"            # motion / interference at the time of the reading
    LOW_PERFUSION = "low_perfusion"  # perfusion too low for a reliable reading
    OUT_OF_TRACK = "out_of_track"    # oximeter lost the pulse
    SENSOR_OFF = "sensor_off"        # sensor off the patient or disconnected
    SIMULATED = "simulated"          # produced by Vigil's simulated monitor
    MANUAL = "manual"                # entered by hand, not measured by a device


_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("sample times must be timezone-aware (UTC)")
    if value.utcoffset():
        return value.astimezone(timezone.utc)
    return value


VitalKey = Literal[VITAL_KEYS]  # type: ignore[valid-type]  # the catalogue's keys: pydantic checks them at run time


class NumericObservation(BaseModel):
    """One value of one vital sign at one time.

    ``value`` is None when the device reports the parameter but marks it missing (dashes, NaN,
    "no data"). A value outside the catalogue's plausible range is kept and flagged
    ``Quality.IMPLAUSIBLE`` automatically; it is never dropped. ``unit`` is the catalogue unit
    (use :func:`numeric` to fill it in). Bad input (unknown vital, naive sample time, NaN value)
    raises ``pydantic.ValidationError``.
    """

    model_config = ConfigDict(frozen=True)

    vital: VitalKey
    value: float | None
    unit: str
    source: str
    sample_time: AwareDatetime
    device_time: datetime | None = None
    quality: frozenset[Quality] = Field(default=frozenset(), validate_default=True)

    kind: ClassVar[str] = "numeric"

    @field_validator("value")
    @classmethod
    def _not_nan(cls, value: float | None) -> float | None:
        if value is not None and value != value:
            raise ValueError("value is NaN: report a missing value as None")
        return value

    @field_validator("quality")
    @classmethod
    def _flag_implausible(cls, quality: frozenset[Quality], info: ValidationInfo) -> frozenset[Quality]:
        value = info.data.get("value")
        vital = info.data.get("vital")
        if value is not None and vital is not None:
            low, high = CATALOGUE[vital].plausible
            if not low <= value <= high:
                return quality | {Quality.IMPLAUSIBLE}
        return quality

    @property
    def flagged(self) -> bool:
        """True when any quality flag other than SIMULATED/MANUAL is set."""
        return bool(self.quality - {Quality.SIMULATED, Quality.MANUAL})

    def as_record(self) -> dict[str, Any]:
        """A JSON-ready dict (the `vigil decode` line format)."""
        return {
            "kind": "numeric",
            "vital": self.vital,
            "value": self.value,
            "unit": self.unit,
            "device_time": self.device_time.isoformat() if self.device_time else None,
            "quality": sorted(q.value for q in self.quality),
        }


def numeric(
    vital: str,
    value: float | None,
    source: str,
    sample_time: datetime,
    device_time: datetime | None = None,
    quality: frozenset[Quality] | set[Quality] = frozenset(),
) -> NumericObservation:
    """Build a :class:`NumericObservation` with the catalogue unit for ``vital``."""
    return NumericObservation(
        vital=vital, value=value, unit=CATALOGUE[vital].unit, source=source,
        sample_time=sample_time, device_time=device_time, quality=frozenset(quality),
    )


#: Waveform channels Vigil knows: key -> (label, unit, nominal rate in Hz).
WAVE_CHANNELS: dict[str, tuple[str, str, float]] = {
    "ecg": ("ECG II", "mV", 250.0),
    "pleth": ("Pleth", "", 100.0),
    "co2": ("CO2", "mmHg", 25.0),
    "resp": ("Resp", "", 62.5),
}


class WaveformChunk(BaseModel):
    """Consecutive samples of one waveform channel at a fixed rate.

    ``samples`` is a 1-D float32 array; NaN marks a gap (probe off), which plots as a gap.
    ``start_time`` is the UTC time of the first sample; sample *i* is at
    ``start_time + i / rate`` seconds.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    kind: ClassVar[str] = "wave"
    channel: str
    rate: Annotated[float, Field(gt=0, le=10_000)]
    start_time: datetime
    samples: np.ndarray
    unit: str = ""
    source: str

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if value not in WAVE_CHANNELS:
            raise ValueError(f"unknown waveform channel {value!r}; known: {', '.join(WAVE_CHANNELS)}")
        return value

    @field_validator("start_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _as_utc(value)

    @field_validator("samples", mode="before")
    @classmethod
    def _array(cls, value: Any) -> np.ndarray:
        array = np.asarray(value, dtype=np.float32)
        if array.ndim != 1:
            raise ValueError("samples must be one-dimensional")
        return array

    @property
    def duration(self) -> float:
        """Seconds covered by the chunk."""
        return len(self.samples) / self.rate

    def as_record(self) -> dict[str, Any]:
        """A JSON-ready dict; NaN gaps become null."""
        return {
            "kind": "wave",
            "channel": self.channel,
            "rate": self.rate,
            "samples": [None if math.isnan(s) else round(float(s), 4) for s in self.samples],
        }


class DeviceCondition(BaseModel):
    """A device condition turning on or off (``no_sensor``, ``sensor_off``, ``stale_data`` …).

    Decoders emit one when the condition *changes*, not on every frame. ``code`` is a snake_case
    word; ``text`` is a short human description.
    """

    model_config = ConfigDict(frozen=True)

    kind: ClassVar[str] = "condition"
    code: str
    active: bool
    text: str = ""
    source: str
    time: datetime

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _SNAKE.match(value):
            raise ValueError(f"condition code {value!r} is not a snake_case word")
        return value

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _as_utc(value)

    def as_record(self) -> dict[str, Any]:
        """A JSON-ready dict (the `vigil decode` line format)."""
        return {"kind": "condition", "code": self.code, "active": self.active}


class DeviceAttribute(BaseModel):
    """A descriptive value from the device that is not a vital sign: serial number, firmware,
    model, or a field Vigil does not interpret. Emitted when it first appears or changes."""

    model_config = ConfigDict(frozen=True)

    kind: ClassVar[str] = "attribute"
    name: str
    value: str
    source: str
    time: datetime

    def as_record(self) -> dict[str, Any]:
        """A JSON-ready dict (the `vigil decode` line format)."""
        return {"kind": "attribute", "name": self.name, "value": self.value}


#: Anything a decoder or device produces.
Item = Union[NumericObservation, WaveformChunk, DeviceCondition, DeviceAttribute]


# ------------------------------------------------------------------------------------------
# Fast construction for decoders
# ------------------------------------------------------------------------------------------
# Decoders turn up to hundreds of thousands of values a second into observations; pydantic
# validation costs ~3 µs each, which alone would cap decoding below the line-rate targets.
# ``numerics_into`` builds observations whose inputs the caller has already made valid, putting
# each model in exactly the state pickle restores it to (``BaseModel.__setstate__``): ~0.8 µs.
# ``_trusted_matches`` proves at import that the result equals what validation builds; should a
# pydantic release ever differ, every caller silently gets the validated path instead.

_new = object.__new__
_EMPTY_QUALITY: frozenset[Quality] = frozenset()
_IMPLAUSIBLE_ONLY = frozenset({Quality.IMPLAUSIBLE})


def _slot(name: str) -> Any:
    descriptor = vars(BaseModel).get(name)
    if descriptor is None:
        raise AttributeError(f"pydantic's BaseModel has no slot {name}")
    return descriptor.__set__


#: (vital key, value or None, quality flags of the value itself) — see :func:`numerics_into`.
NumericEntry = tuple[str, "float | None", frozenset[Quality]]


def plausibility(vital: str, value: float | None) -> frozenset[Quality]:
    """``{Quality.IMPLAUSIBLE}`` when ``value`` lies outside the catalogue range, else empty."""
    if value is None:
        return _EMPTY_QUALITY
    low, high = CATALOGUE[vital].plausible
    return _EMPTY_QUALITY if low <= value <= high else _IMPLAUSIBLE_ONLY


def _numerics_validated(entries: "Iterable[NumericEntry]", source: str, sample_time: datetime,
                        device_time: datetime | None, flags: frozenset[Quality], out: list) -> None:
    for vital, value, quality in entries:
        out.append(numeric(vital, value, source, sample_time, device_time, quality | flags))


def _numerics_trusted(entries: "Iterable[NumericEntry]", source: str, sample_time: datetime,
                      device_time: datetime | None, flags: frozenset[Quality], out: list) -> None:
    if sample_time.tzinfo is None:  # the one check validation would make that callers can't skip
        raise ValueError("sample times must be timezone-aware (UTC)")
    units = _UNITS
    append = out.append
    for vital, value, quality in entries:
        obs = _new(NumericObservation)
        _set_dict(obs, {"vital": vital, "value": value, "unit": units[vital], "source": source,
                        "sample_time": sample_time, "device_time": device_time,
                        "quality": quality | flags if flags else quality})
        _set_fields_set(obs, _ALL_FIELDS)
        _set_extra(obs, None)
        _set_private(obs, None)
        append(obs)


def _trusted_matches() -> bool:
    try:
        now = utc_now()
        entries = [("spo2", 104.0, _IMPLAUSIBLE_ONLY), ("pi", None, _EMPTY_QUALITY), ("sphb", 13.5, _EMPTY_QUALITY)]
        fast: list = []
        slow: list = []
        flags = frozenset({Quality.SENSOR_OFF})
        _numerics_trusted(entries, "probe", now, datetime(2026, 1, 2, 3, 4, 5), flags, fast)
        _numerics_validated(entries, "probe", now, datetime(2026, 1, 2, 3, 4, 5), flags, slow)
        for a, b in zip(fast, slow, strict=True):
            if a.__getstate__() != b.__getstate__() or a != b or hash(a) != hash(b):
                return False
            a.model_copy(update={"value": 1.0})
        return True
    except Exception:  # any surprise from a future pydantic: use the validated path
        return False


def _chunk_trusted(channel: str, rate: float, start_time: datetime, samples: np.ndarray, source: str,
                   unit: str) -> WaveformChunk:
    chunk = _new(WaveformChunk)
    _set_dict(chunk, {"channel": channel, "rate": rate, "start_time": start_time, "samples": samples,
                      "unit": unit, "source": source})
    _set_fields_set(chunk, _CHUNK_FIELDS)
    _set_extra(chunk, None)
    _set_private(chunk, None)
    return chunk


def _chunk_validated(channel: str, rate: float, start_time: datetime, samples: np.ndarray, source: str,
                     unit: str) -> WaveformChunk:
    return WaveformChunk(channel=channel, rate=rate, start_time=start_time, samples=samples, unit=unit, source=source)


def _trusted_chunk_matches() -> bool:
    try:
        args = ("ecg", 300.0, utc_now(), np.array([0.5, np.nan], np.float32), "probe", "mV")
        fast, slow = _chunk_trusted(*args), _chunk_validated(*args)
        state_fast, state_slow = fast.__getstate__(), slow.__getstate__()
        same = {k: v for k, v in state_fast["__dict__"].items() if k != "samples"} == \
            {k: v for k, v in state_slow["__dict__"].items() if k != "samples"}
        return (same and state_fast["__pydantic_fields_set__"] == state_slow["__pydantic_fields_set__"]
                and fast.samples.dtype == slow.samples.dtype and fast.as_record() == slow.as_record()
                and fast.duration == slow.duration)
    except Exception:  # any surprise from a future pydantic: use the validated path
        return False


try:
    _set_dict = _slot("__dict__")
    _set_fields_set = _slot("__pydantic_fields_set__")
    _set_extra = _slot("__pydantic_extra__")
    _set_private = _slot("__pydantic_private__")
    _ALL_FIELDS: set[str] = set(NumericObservation.model_fields)
    _UNITS = {key: entry.unit for key, entry in CATALOGUE.items()}
    _CHUNK_FIELDS: set[str] = set(WaveformChunk.model_fields)
    TRUSTED_CONSTRUCTION = _trusted_matches()
    TRUSTED_CHUNKS = _trusted_chunk_matches()
except AttributeError:
    TRUSTED_CONSTRUCTION = TRUSTED_CHUNKS = False


def numerics_into(entries: "Iterable[NumericEntry]", source: str, sample_time: datetime,
                  device_time: datetime | None, flags: frozenset[Quality], out: list) -> None:
    """Append one :class:`NumericObservation` per entry to ``out``, fast, for decoders.

    The caller guarantees what validation would check: ``vital`` is a catalogue key, ``value``
    is a finite float or None, and each entry's quality already holds ``Quality.IMPLAUSIBLE``
    when :func:`plausibility` says so. ``flags`` are added to every entry (e.g. SENSOR_OFF while
    the device reports it). A naive ``sample_time`` raises ValueError. The unit is the
    catalogue's. Results equal those of :func:`numeric` (checked at import; see
    ``TRUSTED_CONSTRUCTION``).
    """
    (_numerics_trusted if TRUSTED_CONSTRUCTION else _numerics_validated)(
        entries, source, sample_time, device_time, flags, out)


def wave_chunk(channel: str, rate: float, start_time: datetime, samples: np.ndarray, source: str,
               unit: str = "") -> WaveformChunk:
    """A :class:`WaveformChunk`, fast, for decoders. The caller guarantees what validation would
    check: ``channel`` is a key of :data:`WAVE_CHANNELS`, ``rate`` is in (0, 10 000] Hz,
    ``start_time`` is aware UTC and ``samples`` a 1-D float32 array. Equal to the validated
    construction (checked at import; see ``TRUSTED_CHUNKS``)."""
    return (_chunk_trusted if TRUSTED_CHUNKS else _chunk_validated)(channel, rate, start_time, samples, source, unit)
