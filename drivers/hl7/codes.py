"""What an OBX says: its code (OBX-3) → a Vigil vital or waveform, its unit (OBX-6) → a conversion.

OBX-3 is looked up, in this order, in every coding triplet it carries (identifier^text^system and
the alternate identifier^text^system):

1. **MDC** (ISO/IEEE 11073-10101, as IHE PCD-01 sends it: ``150456^MDC_PULS_OXIM_SAT_O2^MDC``), by
   the numeric code or the ``MDC_…`` reference id (:data:`MDC_VITALS`, :data:`MDC_WAVES`);
2. **MDIL** (Philips' hexadecimal partition-code form, ``0002-4bb8^SpO2^MDIL``), turned into the
   MDC number (partition × 65536 + code);
3. **LOINC** (``LN``), from the vital-sign catalogue's LOINC codes;
4. the clinic's **table of vendor-local codes** (:class:`LocalCodes`): the shipped
   ``resources/hl7_local_codes.json`` with the clinic's own ``hl7_local_codes.json`` (in Vigil's
   configuration folder, ``VIGIL_CONFIG_DIR`` or the platform's) laid over it, or a file named in
   the device URL (``&codes=PATH``). Entries are matched by coding system and code (case-insensitive).

OBX-6 is recognised by MDC code or reference id, UCUM code, or plain text (``mmHg``, ``kPa``,
``bpm``, ``°F`` …, plus the table's ``units`` aliases) and converted to the catalogue unit: kPa →
mmHg (× 7.50062), °F → °C, µV → mV, per-minute counts as bpm / breaths per minute. An empty OBX-6
means the catalogue unit; a unit that is not recognised, or of the wrong kind for the vital
(``%`` for a heart rate), makes the value unusable (the caller reports it as INVALID).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers.catalogue import CATALOGUE
from drivers.model import WAVE_CHANNELS

#: MDC numeric code → vital, beyond the catalogue's own codes (equivalent parameters).
_EXTRA_MDC: dict[int | str, str] = {
    149538: "pr",        # MDC_PLETH_PULS_RATE (pulse rate from the pleth)
    150344: "temp",      # MDC_TEMP
    150301: "nibp_sys",  # MDC_PRESS_CUFF_SYS
    150302: "nibp_dia",  # MDC_PRESS_CUFF_DIA
    150303: "nibp_mean",  # MDC_PRESS_CUFF_MEAN
    151570: "rr",        # MDC_AWAY_RESP_RATE
    151728: "etco2",     # EtCO2 in Philips' nomenclature (0x50B0)
}
_EXTRA_REF: dict[int | str, str] = {
    "MDC_PLETH_PULS_RATE": "pr", "MDC_TEMP": "temp",
    "MDC_PRESS_CUFF_SYS": "nibp_sys", "MDC_PRESS_CUFF_DIA": "nibp_dia", "MDC_PRESS_CUFF_MEAN": "nibp_mean",
    "MDC_AWAY_RESP_RATE": "rr", "MDC_ECG_CARD_BEAT_RATE": "hr",
}

def _mdc_vitals() -> dict[int | str, str]:
    table: dict[int | str, str] = {}
    for key, spec in CATALOGUE.items():
        if spec.mdc_code is not None:
            table[spec.mdc_code] = key
        if spec.mdc_ref is not None:
            table[spec.mdc_ref] = key
    table.update(_EXTRA_MDC)
    table.update(_EXTRA_REF)
    return table


#: MDC code / reference id → vital key.
MDC_VITALS: Mapping[int | str, str] = MappingProxyType(_mdc_vitals())
#: MDC code / reference id → waveform channel.
MDC_WAVES: Mapping[int | str, str] = MappingProxyType({
    131330: "ecg", "MDC_ECG_ELEC_POTL_II": "ecg",
    150452: "pleth", "MDC_PULS_OXIM_PLETH": "pleth",
    "MDC_AWAY_CO2": "co2", "MDC_IMPED_TTHOR": "resp",
})
#: MDC code / reference id → waveform attribute (the sample period of the waveform it belongs to).
MDC_ATTRIBUTES: Mapping[int | str, str] = MappingProxyType({
    67981: "sample_period", "MDC_ATTR_TIME_PD_SAMP": "sample_period",
    "MDC_ATTR_SAMP_RATE": "sample_rate",
})
#: LOINC code → vital key, from the catalogue.
LOINC_VITALS: Mapping[str, str] = MappingProxyType(
    {code: key for key, spec in CATALOGUE.items() for code in spec.loinc})

_MDC_SYSTEMS = {"MDC", "URN:ISO:STD:ISO:11073:10101", "ISO11073"}
_LOINC_SYSTEMS = {"LN", "LOINC", "HTTP://LOINC.ORG"}

# ---------------------------------------------------------------------------------- units
#: Unit kinds and the factor/offset to the catalogue unit of that kind: value * a + b.
_UNITS: dict[str, tuple[str, float, float]] = {
    "bpm": ("rate", 1.0, 0.0),
    "%": ("percent", 1.0, 0.0),
    "mmHg": ("pressure", 1.0, 0.0),
    "kPa": ("pressure", 7.50062, 0.0),
    "degC": ("temperature", 1.0, 0.0),
    "degF": ("temperature", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
    "g/dL": ("mass_concentration", 1.0, 0.0),
    "mV": ("voltage", 1.0, 0.0),
    "uV": ("voltage", 0.001, 0.0),
    "s": ("time", 1.0, 0.0),
    "ms": ("time", 0.001, 0.0),
    "Hz": ("frequency", 1.0, 0.0),
    "1": ("dimensionless", 1.0, 0.0),
}
#: Recognised OBX-6 spellings (MDC codes, MDC ids, UCUM, common vendor text; lower-cased,
#: spaces removed) → a key of _UNITS.
_UNIT_NAMES: dict[str, str] = {
    "264864": "bpm", "mdc_dim_beat_per_min": "bpm", "264928": "bpm", "mdc_dim_resp_per_min": "bpm",
    "264352": "bpm", "mdc_dim_per_min": "bpm", "264896": "bpm", "mdc_dim_puls_per_min": "bpm",
    "/min": "bpm", "1/min": "bpm", "{beats}/min": "bpm", "{breaths}/min": "bpm", "{beat}/min": "bpm",
    "{breath}/min": "bpm", "bpm": "bpm", "b/min": "bpm", "beats/min": "bpm", "rpm": "bpm", "brpm": "bpm",
    "br/min": "bpm", "breaths/min": "bpm", "resp/min": "bpm", "min-1": "bpm", "/m": "bpm",
    "262688": "%", "mdc_dim_percent": "%", "%": "%", "pct": "%", "percent": "%",
    "266016": "mmHg", "mdc_dim_mmhg": "mmHg", "mm[hg]": "mmHg", "mmhg": "mmHg",
    "265987": "kPa", "mdc_dim_kilo_pa": "kPa", "mdc_dim_kilo_pascal": "kPa", "kpa": "kPa",
    "268192": "degC", "mdc_dim_degc": "degC", "cel": "degC", "°c": "degC", "degc": "degC", "c": "degC",
    "celsius": "degC",
    "266560": "degF", "mdc_dim_fahr": "degF", "mdc_dim_degf": "degF", "[degf]": "degF", "°f": "degF",
    "degf": "degF", "f": "degF", "fahrenheit": "degF",
    "264306": "g/dL", "mdc_dim_g_per_dl": "g/dL", "g/dl": "g/dL",
    "266418": "mV", "mdc_dim_milli_volt": "mV", "mv": "mV",
    "266419": "uV", "mdc_dim_micro_volt": "uV", "uv": "uV", "µv": "uV",
    "264320": "s", "mdc_dim_sec": "s", "s": "s", "sec": "s",
    "264338": "ms", "mdc_dim_milli_sec": "ms", "ms": "ms", "msec": "ms",
    "hz": "Hz", "mdc_dim_hz": "Hz", "262656": "1", "mdc_dim_dimless": "1", "{ratio}": "1",
}
#: The unit kind of each catalogue unit.
_VITAL_KIND = {"bpm": "rate", "br/min": "rate", "%": "percent", "mmHg": "pressure", "°C": "temperature",
               "g/dL": "mass_concentration"}
#: The unit kind of each waveform channel (None: dimensionless, any unit taken as is).
_WAVE_KIND = {"ecg": "voltage", "co2": "pressure", "pleth": None, "resp": None}

Target = tuple[Literal["vital", "wave", "attribute"], str]


class LocalCodeEntry(BaseModel):
    """One vendor-local code: ``system`` and ``code`` as in OBX-3, and what it is: a ``vital``
    (catalogue key) or a ``wave`` (channel, with its sample ``rate`` in Hz when the sender does
    not give one)."""

    model_config = ConfigDict(extra="forbid")

    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    vital: str | None = None
    wave: str | None = None
    rate: float | None = Field(default=None, gt=0, le=10_000)
    text: str = ""
    note: str = ""

    @model_validator(mode="after")
    def _one_target(self) -> LocalCodeEntry:
        if (self.vital is None) == (self.wave is None):
            raise ValueError(f"{self.system}/{self.code}: give exactly one of vital or wave")
        if self.vital is not None and self.vital not in CATALOGUE:
            raise ValueError(f"{self.system}/{self.code}: unknown vital {self.vital!r}; "
                             f"known: {', '.join(CATALOGUE)}")
        if self.wave is not None and self.wave not in WAVE_CHANNELS:
            raise ValueError(f"{self.system}/{self.code}: unknown wave {self.wave!r}; known: {', '.join(WAVE_CHANNELS)}")
        return self


class LocalUnitEntry(BaseModel):
    """A vendor's spelling of a unit (``text``) and the unit it means (``unit``, one of
    ``bpm % mmHg kPa degC degF g/dL mV uV s ms Hz``)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    unit: Literal["bpm", "%", "mmHg", "kPa", "degC", "degF", "g/dL", "mV", "uV", "s", "ms", "Hz"]


class LocalCodesFile(BaseModel):
    """The file format of ``hl7_local_codes.json`` (see docs/devices.md)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    description: str = ""
    codes: list[LocalCodeEntry] = Field(default_factory=list)
    units: list[LocalUnitEntry] = Field(default_factory=list)


def shipped_codes_path() -> Path:
    """The table shipped with Vigil."""
    return Path(__file__).resolve().parent.parent.parent / "resources" / "hl7_local_codes.json"


def clinic_codes_path() -> Path:
    """Where the clinic's own table lives: ``hl7_local_codes.json`` in the folder of the clinic's
    settings (``VIGIL_CONFIG_DIR``, else the platform's user config folder for Vigil)."""
    env = os.environ.get("VIGIL_CONFIG_DIR")
    folder = Path(env).expanduser() if env else Path(platformdirs.user_config_dir("Vigil", appauthor=False))
    return folder / "hl7_local_codes.json"


def _load(path: Path) -> LocalCodesFile:
    try:
        return LocalCodesFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ValueError(f"cannot read the HL7 code table {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"the HL7 code table {path} is not valid JSON (line {exc.lineno}): {exc.msg}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"the HL7 code table {path} is invalid at {where}: {first['msg']}") from None


@dataclass(frozen=True)
class LocalCodes:
    """The vendor-local code table in force: (SYSTEM, CODE) → entry, and unit aliases."""

    codes: Mapping[tuple[str, str], LocalCodeEntry]
    units: Mapping[str, str]
    sources: tuple[Path, ...]

    @classmethod
    def load(cls, path: str | Path | None = None) -> LocalCodes:
        """The shipped table with the clinic's laid over it (entries with the same system and
        code replace the shipped ones), or the shipped table with the file ``path`` laid over it
        when given. ValueError saying which file is wrong and where."""
        files = [shipped_codes_path()]
        extra = Path(path).expanduser() if path else clinic_codes_path()
        if path or extra.exists():
            files.append(extra)
        return cls.merge(files)

    @classmethod
    def merge(cls, files: Iterable[Path]) -> LocalCodes:
        """The tables in ``files``, later ones winning."""
        codes: dict[tuple[str, str], LocalCodeEntry] = {}
        units: dict[str, str] = {}
        used = []
        for file in files:
            table = _load(file)
            used.append(file)
            for entry in table.codes:
                codes[(entry.system.strip().upper(), entry.code.strip().upper())] = entry
            for alias in table.units:
                units[_unit_key(alias.text)] = alias.unit
        return cls(MappingProxyType(codes), MappingProxyType(units), tuple(used))


def _unit_key(text: str) -> str:
    return "".join(text.split()).lower()


def mdil_to_mdc(code: str) -> int | None:
    """Philips MDIL ``pppp-cccc`` (hex partition and code) → the MDC number; None if malformed."""
    partition, sep, value = code.partition("-")
    if not sep or len(partition) > 4 or len(value) > 4:
        return None
    try:
        return int(partition, 16) * 65536 + int(value, 16)
    except ValueError:
        return None


class Codebook:
    """Resolves OBX-3 and OBX-6 (see the module docstring). Immutable after construction; one
    instance is shared by every connection of a link."""

    def __init__(self, local: LocalCodes | None = None) -> None:
        self.local = local if local is not None else LocalCodes.load()
        self._identified: dict[tuple[str, ...], tuple[Target | None, LocalCodeEntry | None]] = {}
        self._units: dict[tuple[str, ...], str | None] = {}

    def identify(self, parts: list[str]) -> tuple[Target | None, LocalCodeEntry | None]:
        """What the OBX-3 components ``parts`` name: (("vital", key) | ("wave", channel) |
        ("attribute", name), the local-table entry when that is where it came from); (None, None)
        when nothing matches. Answers are remembered (the table does not change)."""
        key = tuple(parts)
        found = self._identified.get(key)
        if found is None:
            if len(self._identified) > 4096:
                self._identified.clear()
            found = self._identified[key] = self._identify(parts)
        return found

    def _identify(self, parts: list[str]) -> tuple[Target | None, LocalCodeEntry | None]:
        triplets = [parts[i:i + 3] for i in (0, 3) if len(parts) > i and any(parts[i:i + 3])]
        for triplet in triplets:
            code, text, system = (triplet + ["", "", ""])[:3]
            found = self._standard(code.strip(), text.strip(), system.strip().upper())
            if found is not None:
                return found, None
        for triplet in triplets:
            code, _text, system = (triplet + ["", "", ""])[:3]
            entry = self.local.codes.get((system.strip().upper(), code.strip().upper()))
            if entry is not None:
                return (("vital", entry.vital) if entry.vital else ("wave", entry.wave or "")), entry
        return None, None

    def _standard(self, code: str, text: str, system: str) -> Target | None:
        numbers: list[int] = []
        names = [name for name in (code, text) if name.upper().startswith("MDC_")]
        if system in _MDC_SYSTEMS or (not system and (code.isdigit() or names)):
            if code.isdigit():
                numbers.append(int(code))
        elif system == "MDIL":
            number = mdil_to_mdc(code)
            if number is not None:
                numbers.append(number)
        elif system in _LOINC_SYSTEMS:
            vital = LOINC_VITALS.get(code)
            return ("vital", vital) if vital else None
        elif not names:
            return None
        keys: list[int | str] = [*numbers, *(name.upper() for name in names)]
        for key in keys:
            if key in MDC_VITALS:
                return ("vital", MDC_VITALS[key])
            if key in MDC_WAVES:
                return ("wave", MDC_WAVES[key])
            if key in MDC_ATTRIBUTES:
                return ("attribute", MDC_ATTRIBUTES[key])
        return None

    def unit(self, parts: list[str]) -> str | None:
        """The unit named by the OBX-6 components (a key of the unit table: ``mmHg``, ``kPa`` …);
        ``""`` when OBX-6 is empty; None when it is not recognised."""
        key = tuple(parts)
        if key in self._units:
            return self._units[key]
        if len(self._units) > 4096:
            self._units.clear()
        found = self._units[key] = self._unit(parts)
        return found

    def _unit(self, parts: list[str]) -> str | None:
        names = [p for p in parts if p.strip()]
        if not names:
            return ""
        for name in names:
            key = _unit_key(name)
            unit = _UNIT_NAMES.get(key) or self.local.units.get(key)
            if unit is not None:
                return unit
        return None

    @staticmethod
    def convert_vital(vital: str, value: float, unit: str) -> float | None:
        """``value`` in ``unit`` expressed in the catalogue unit of ``vital``; None when ``unit``
        is of another kind."""
        if unit == "":
            return value
        kind, a, b = _UNITS[unit]
        if _VITAL_KIND.get(CATALOGUE[vital].unit) != kind:
            return None
        return value * a + b

    @staticmethod
    def wave_scale(channel: str, unit: str) -> float | None:
        """The factor taking samples in ``unit`` to Vigil's unit for ``channel`` (ECG mV, CO2
        mmHg); None when ``unit`` is of another kind."""
        want = _WAVE_KIND.get(channel)
        if unit == "" or want is None:
            return 1.0
        kind, a, b = _UNITS[unit]
        return a if kind == want and b == 0.0 else None

    @staticmethod
    def seconds(value: float, unit: str) -> float | None:
        """A sample period in ``unit`` in seconds; None when ``unit`` is empty or not a time."""
        if unit == "":
            return None
        kind, a, _ = _UNITS[unit]
        return value * a if kind == "time" else None
