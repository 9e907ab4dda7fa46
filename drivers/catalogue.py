"""The vital-sign catalogue: every numeric Vigil knows, with its unit, plausible range and codes.

Keys are stable identifiers used everywhere (store, alarm rules, exports, command line).
The plausible range is the span a real patient monitor can report for an adult; a value
outside it is *flagged* (``Quality.IMPLAUSIBLE``), never dropped, because a physiological
extreme and a decoding fault must both reach the nurse and the record.

Codes: LOINC as used by FHIR R4 vital-signs profiles; MDC (ISO/IEEE 11073-10101) as used by
IHE PCD-01 HL7 v2 messages. ``None`` means no code is assigned in those vocabularies for the
parameter as Vigil measures it; exports then use a local code and say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class VitalSpec:
    """One catalogue entry.

    ``unit`` is what Vigil displays and stores; ``ucum`` is the same unit in UCUM (FHIR);
    ``mdc_unit_code``/``mdc_unit`` are the IEEE 11073 unit (HL7 v2). ``decimals`` is the display
    precision. ``plausible`` is an inclusive (low, high) range in ``unit``.
    """

    key: str
    label: str
    unit: str
    ucum: str
    plausible: tuple[float, float]
    decimals: int
    loinc: tuple[str, ...]
    mdc_code: int | None
    mdc_ref: str | None
    mdc_unit_code: int | None
    mdc_unit: str | None

    def is_plausible(self, value: float) -> bool:
        """True when ``value`` lies within the plausible range (NaN is never plausible)."""
        low, high = self.plausible
        return low <= value <= high


_BPM = (264864, "MDC_DIM_BEAT_PER_MIN")
_PCT = (262688, "MDC_DIM_PERCENT")
_MMHG = (266016, "MDC_DIM_MMHG")
_RPM = (264928, "MDC_DIM_RESP_PER_MIN")
_DEGC = (268192, "MDC_DIM_DEGC")
_GDL = (264306, "MDC_DIM_G_PER_DL")

_ENTRIES = (
    VitalSpec("hr", "HR", "bpm", "/min", (15, 300), 0, ("8867-4",),
              147842, "MDC_ECG_HEART_RATE", *_BPM),
    VitalSpec("pr", "PR", "bpm", "/min", (15, 300), 0, ("8889-8",),
              149530, "MDC_PULS_OXIM_PULS_RATE", *_BPM),
    VitalSpec("spo2", "SpO2", "%", "%", (0, 100), 0, ("59408-5", "2708-6"),
              150456, "MDC_PULS_OXIM_SAT_O2", *_PCT),
    VitalSpec("pi", "PI", "%", "%", (0, 20), 2, (),
              150448, "MDC_PULS_OXIM_PERF_REL", *_PCT),
    VitalSpec("nibp_sys", "NIBP sys", "mmHg", "mm[Hg]", (30, 300), 0, ("8480-6",),
              150021, "MDC_PRESS_BLD_NONINV_SYS", *_MMHG),
    VitalSpec("nibp_dia", "NIBP dia", "mmHg", "mm[Hg]", (10, 250), 0, ("8462-4",),
              150022, "MDC_PRESS_BLD_NONINV_DIA", *_MMHG),
    VitalSpec("nibp_mean", "NIBP mean", "mmHg", "mm[Hg]", (15, 270), 0, ("8478-0",),
              150023, "MDC_PRESS_BLD_NONINV_MEAN", *_MMHG),
    VitalSpec("rr", "RR", "br/min", "/min", (0, 100), 0, ("9279-1",),
              151562, "MDC_RESP_RATE", *_RPM),
    VitalSpec("etco2", "EtCO2", "mmHg", "mm[Hg]", (0, 150), 0, ("19889-5",),
              151708, "MDC_AWAY_CO2_ET", *_MMHG),
    VitalSpec("temp", "Temp", "°C", "Cel", (25, 45), 1, ("8310-5",),
              150364, "MDC_TEMP_BODY", *_DEGC),
    VitalSpec("spco", "SpCO", "%", "%", (0, 99), 1, ("20563-3",),
              None, None, *_PCT),
    VitalSpec("spmet", "SpMet", "%", "%", (0, 99.9), 1, ("2614-3",),
              None, None, *_PCT),
    VitalSpec("sphb", "SpHb", "g/dL", "g/dL", (0, 25), 1, ("718-7",),
              None, None, *_GDL),
    VitalSpec("pvi", "PVI", "%", "%", (0, 100), 0, (),
              None, None, *_PCT),
)

#: Read-only mapping from vital key to its catalogue entry, in display order.
CATALOGUE: MappingProxyType[str, VitalSpec] = MappingProxyType({e.key: e for e in _ENTRIES})

#: The vital keys in catalogue order.
VITAL_KEYS: tuple[str, ...] = tuple(CATALOGUE)


def spec(key: str) -> VitalSpec:
    """The catalogue entry for ``key``; ``KeyError`` naming the known keys if there is none."""
    try:
        return CATALOGUE[key]
    except KeyError:
        raise KeyError(f"unknown vital {key!r}; known: {', '.join(VITAL_KEYS)}") from None
