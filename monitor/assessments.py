"""Assessments and structured events the nurse charts during a session.

Assessments (each a frozen pydantic model with ``score`` / ``total``, ``to_payload()`` and
``from_payload()``; registry :data:`ASSESSMENTS`):

========== =================================================== =================
kind       scale                                               score range
========== =================================================== =================
moaas      MOAA/S, Modified Observer's Assessment of            0–5 (5 = awake)
           Alertness/Sedation
rass       Richmond Agitation-Sedation Scale                    −5…+4
cadss      Clinician-Administered Dissociative States Scale,    23 items × 0–4,
           23 subjective items                                  total 0–92
cadss6     CADSS-6: items 1, 2, 6, 7, 15 and 22 of the CADSS    total 0–24
bprs_plus  BPRS positive-symptom subscale: suspiciousness,      4 items × 1–7,
           hallucinations, unusual thought content,             total 4–28
           conceptual disorganisation
pain_nrs   pain numeric rating scale                            0–10
nausea     nausea yes/no, vomiting yes/no                       count of yes, 0–2
aldrete    modified Aldrete: activity, respiration,             5 items × 0–2,
           circulation, consciousness, oxygen saturation        total 0–10
========== =================================================== =================

CADSS item wording is not reproduced (the clinic's licensed form supplies it); items are numbered
as on the standard 23-item subjective scale.

Structured events (registry :data:`EVENTS`): presets (dissociation / emergence reaction, anxiety,
nausea, vomiting, headache, hypertension treated) with optional severity and comment; rescue
medication (drug, dose with unit, route from :class:`Route`, given by); free-text note (≤ 1000
characters). Infusion pause / resume / rate change are infusion steps (``monitor.protocols``).

These models hold only the content; the session adds the time and acting user. Bad input raises
``pydantic.ValidationError`` whose message names the scale and the allowed range.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Literal, Mapping, overload

from pydantic import BaseModel, ConfigDict, field_validator

from monitor.staff import RefusedAction, refuse

__all__ = [
    "Assessment", "MOAAS", "RASS", "CADSS", "CADSS6", "BPRSPlus", "PainNRS", "NauseaVomiting",
    "ModifiedAldrete", "ASSESSMENTS", "parse_assessment",
    "MOAAS_LEVELS", "RASS_LEVELS", "CADSS_ANCHORS", "CADSS6_ITEMS", "BPRS_ANCHORS", "ALDRETE_ITEMS",
    "suggest_aldrete_spo2", "suggest_aldrete_circulation",
    "Severity", "Route", "DoseUnit", "Event", "PresetEvent", "Dissociation", "Anxiety", "Nausea",
    "Vomiting", "Headache", "HypertensionTreated", "RescueMedication", "Note", "EVENTS", "parse_event",
    "NOTE_MAX_CHARS",
]


def _check_int(value: Any, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            value = int(value.strip())
        else:
            raise refuse(f"{what} must be a whole number from {low} to {high} (got {value!r})")
    if not low <= value <= high:
        raise refuse(f"{what} must be between {low} and {high} (got {value})")
    return value


class Assessment(BaseModel):
    """Base of all assessments: ``kind`` (registry key), ``title``, ``score``/``total`` and payloads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""

    @property
    def score(self) -> int:
        """The scale's single number (for multi-item scales, the total)."""
        raise NotImplementedError

    @property
    def total(self) -> int:
        """Same as :attr:`score`."""
        return self.score

    def describe(self) -> str:
        """A short line for the chart, e.g. "MOAA/S 4: lethargic response to name in normal tone"."""
        return f"{self.title} {self.score}"

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict with ``kind``; :meth:`from_payload` (or :func:`parse_assessment`) rebuilds it."""
        return {"kind": self.kind, **self.model_dump(mode="json")}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "Assessment":
        """Rebuild from :meth:`to_payload` output; a payload of another kind is refused."""
        data = dict(payload)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise RefusedAction(f"Payload of kind {kind!r} is not a {cls.title} assessment")
        return cls.model_validate(data)


#: MOAA/S level → description.
MOAAS_LEVELS: dict[int, str] = {
    5: "responds readily to name spoken in normal tone",
    4: "lethargic response to name spoken in normal tone",
    3: "responds only after name is called loudly and/or repeatedly",
    2: "responds only after mild prodding or shaking",
    1: "responds only after painful trapezius squeeze",
    0: "no response after painful trapezius squeeze",
}


class MOAAS(Assessment):
    """Modified Observer's Assessment of Alertness/Sedation, 0–5 (5 = awake; ≤ 2 is a HIGH alarm)."""

    kind: ClassVar[str] = "moaas"
    title: ClassVar[str] = "MOAA/S"
    level: int

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> int:
        return _check_int(value, 0, 5, "MOAA/S")

    @property
    def score(self) -> int:
        """The scale value (see the class docstring for the range)."""
        return self.level

    @property
    def description(self) -> str:
        """The level's description."""
        return MOAAS_LEVELS[self.level]

    def describe(self) -> str:
        """A short line for the chart or timeline."""
        return f"MOAA/S {self.level}: {self.description}"


#: RASS level → description.
RASS_LEVELS: dict[int, str] = {
    4: "combative: overtly combative or violent, immediate danger to staff",
    3: "very agitated: pulls or removes tubes or catheters, aggressive",
    2: "agitated: frequent non-purposeful movement",
    1: "restless: anxious or apprehensive, movements not aggressive or vigorous",
    0: "alert and calm",
    -1: "drowsy: not fully alert, sustained awakening to voice (eye opening and contact ≥ 10 s)",
    -2: "light sedation: briefly awakens to voice (eye opening and contact < 10 s)",
    -3: "moderate sedation: movement or eye opening to voice, no eye contact",
    -4: "deep sedation: no response to voice, movement or eye opening to physical stimulation",
    -5: "unarousable: no response to voice or physical stimulation",
}


class RASS(Assessment):
    """Richmond Agitation-Sedation Scale, −5 (unarousable) … 0 (alert and calm) … +4 (combative)."""

    kind: ClassVar[str] = "rass"
    title: ClassVar[str] = "RASS"
    level: int

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> int:
        return _check_int(value, -5, 4, "RASS")

    @property
    def score(self) -> int:
        """The scale value (see the class docstring for the range)."""
        return self.level

    @property
    def description(self) -> str:
        """The level's description."""
        return RASS_LEVELS[self.level]

    def describe(self) -> str:
        """A short line for the chart or timeline."""
        return f"RASS {self.level:+d}: {self.description}" if self.level else f"RASS 0: {self.description}"


#: CADSS item anchors (each item 0–4).
CADSS_ANCHORS: dict[int, str] = {0: "not at all", 1: "slightly", 2: "moderately", 3: "considerably", 4: "extremely"}
#: The items of the full CADSS that make up the CADSS-6.
CADSS6_ITEMS: tuple[int, ...] = (1, 2, 6, 7, 15, 22)


class CADSS(Assessment):
    """Full CADSS: ``items`` holds the 23 subjective item scores in item order (item 1 first),
    each 0–4; total 0–92. :meth:`cadss6` extracts the short form."""

    kind: ClassVar[str] = "cadss"
    title: ClassVar[str] = "CADSS"
    items: tuple[int, ...]

    @field_validator("items", mode="before")
    @classmethod
    def _items(cls, value: Any) -> tuple[int, ...]:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            raise refuse("CADSS needs a list of 23 item scores")
        if len(value) != 23:
            raise refuse(f"CADSS needs 23 item scores (got {len(value)})")
        return tuple(_check_int(v, 0, 4, f"CADSS item {i}") for i, v in enumerate(value, start=1))

    @property
    def score(self) -> int:
        """The scale value (see the class docstring for the range)."""
        return sum(self.items)

    def item(self, number: int) -> int:
        """Score of item ``number`` (1–23)."""
        if not 1 <= number <= 23:
            raise RefusedAction(f"CADSS has items 1–23 (asked for {number})")
        return self.items[number - 1]

    def cadss6(self) -> "CADSS6":
        """The CADSS-6 made of items 1, 2, 6, 7, 15 and 22."""
        return CADSS6(items={n: self.item(n) for n in CADSS6_ITEMS})

    def describe(self) -> str:
        """A short line for the chart or timeline."""
        return f"CADSS total {self.score}/92"


class CADSS6(Assessment):
    """CADSS-6: ``items`` maps each of items 1, 2, 6, 7, 15, 22 to a score 0–4; total 0–24."""

    kind: ClassVar[str] = "cadss6"
    title: ClassVar[str] = "CADSS-6"
    items: dict[int, int]

    @field_validator("items", mode="before")
    @classmethod
    def _items(cls, value: Any) -> dict[int, int]:
        if not isinstance(value, Mapping):
            raise refuse("CADSS-6 needs scores for items 1, 2, 6, 7, 15 and 22")
        try:
            data = {int(k): v for k, v in value.items()}
        except (TypeError, ValueError):
            raise refuse("CADSS-6 item numbers must be 1, 2, 6, 7, 15 and 22") from None
        missing = [n for n in CADSS6_ITEMS if n not in data]
        extra = sorted(n for n in data if n not in CADSS6_ITEMS)
        if missing:
            raise refuse(f"CADSS-6 needs items 1, 2, 6, 7, 15 and 22 (missing {', '.join(map(str, missing))})")
        if extra:
            raise refuse(f"CADSS-6 has no item {', '.join(map(str, extra))}: its items are 1, 2, 6, 7, 15 and 22")
        return {n: _check_int(data[n], 0, 4, f"CADSS-6 item {n}") for n in CADSS6_ITEMS}

    @property
    def score(self) -> int:
        """The scale value (see the class docstring for the range)."""
        return sum(self.items.values())

    def describe(self) -> str:
        """A short line for the chart or timeline."""
        return f"CADSS-6 total {self.score}/24"


#: BPRS anchors (each item 1–7).
BPRS_ANCHORS: dict[int, str] = {1: "not present", 2: "very mild", 3: "mild", 4: "moderate",
                                5: "moderately severe", 6: "severe", 7: "extremely severe"}


class BPRSPlus(Assessment):
    """BPRS positive-symptom subscale (BPRS+): four items each 1 (not present) – 7 (extremely
    severe); total 4–28."""

    kind: ClassVar[str] = "bprs_plus"
    title: ClassVar[str] = "BPRS+"
    suspiciousness: int
    hallucinations: int
    unusual_thought_content: int
    conceptual_disorganisation: int

    @field_validator("suspiciousness", "hallucinations", "unusual_thought_content",
                     "conceptual_disorganisation", mode="before")
    @classmethod
    def _item(cls, value: Any, info: Any) -> int:
        return _check_int(value, 1, 7, f"BPRS+ {info.field_name.replace('_', ' ')}")

    @property
    def score(self) -> int:
        """The scale value (see the class docstring for the range)."""
        return (self.suspiciousness + self.hallucinations + self.unusual_thought_content
                + self.conceptual_disorganisation)

    def describe(self) -> str:
        """A short line for the chart or timeline."""
        return f"BPRS+ total {self.score}/28"


class PainNRS(Assessment):
    """Pain numeric rating scale, 0 (no pain) – 10 (worst imaginable)."""

    kind: ClassVar[str] = "pain_nrs"
    title: ClassVar[str] = "Pain NRS"
    rating: int

    @field_validator("rating", mode="before")
    @classmethod
    def _score(cls, value: Any) -> int:
        return _check_int(value, 0, 10, "Pain NRS")

    @property
    def score(self) -> int:
        """The scale value (see the class docstring for the range)."""
        return self.rating

    def describe(self) -> str:
        """A short line for the chart or timeline."""
        return f"Pain {self.rating}/10"


class NauseaVomiting(Assessment):
    """Nausea (yes/no) and vomiting (yes/no); ``score`` counts the yes answers (0–2)."""

    kind: ClassVar[str] = "nausea"
    title: ClassVar[str] = "Nausea/vomiting"
    nausea: bool
    vomiting: bool

    @field_validator("nausea", "vomiting", mode="before")
    @classmethod
    def _yes_no(cls, value: Any, info: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("yes", "no", "true", "false"):
            return value.strip().lower() in ("yes", "true")
        raise refuse(f"{info.field_name.capitalize()} must be yes or no (got {value!r})")

    @property
    def score(self) -> int:
        """The scale value (see the class docstring for the range)."""
        return int(self.nausea) + int(self.vomiting)

    def describe(self) -> str:
        """A short line for the chart or timeline."""
        yn = {True: "yes", False: "no"}
        return f"Nausea {yn[self.nausea]}, vomiting {yn[self.vomiting]}"


#: Modified Aldrete item → {score: description}.
ALDRETE_ITEMS: dict[str, dict[int, str]] = {
    "activity": {2: "moves 4 extremities voluntarily or on command", 1: "moves 2 extremities",
                 0: "moves no extremities"},
    "respiration": {2: "breathes deeply and coughs freely", 1: "dyspnoea or limited breathing", 0: "apnoeic"},
    "circulation": {2: "BP within 20 % of pre-dose level", 1: "BP 20–49 % from pre-dose level",
                    0: "BP 50 % or more from pre-dose level"},
    "consciousness": {2: "fully awake", 1: "arousable on calling", 0: "not responding"},
    "oxygen_saturation": {2: "SpO2 > 92 % on room air", 1: "needs oxygen to keep SpO2 > 90 %",
                          0: "SpO2 ≤ 90 % even with oxygen"},
}


class ModifiedAldrete(Assessment):
    """Modified Aldrete score: five items each 0–2 (see :data:`ALDRETE_ITEMS`), total 0–10;
    ≥ 9 is the usual discharge threshold. :func:`suggest_aldrete_spo2` and
    :func:`suggest_aldrete_circulation` propose item scores from measured values."""

    kind: ClassVar[str] = "aldrete"
    title: ClassVar[str] = "Modified Aldrete"
    activity: int
    respiration: int
    circulation: int
    consciousness: int
    oxygen_saturation: int

    @field_validator(*ALDRETE_ITEMS, mode="before")
    @classmethod
    def _item(cls, value: Any, info: Any) -> int:
        return _check_int(value, 0, 2, f"Aldrete {info.field_name.replace('_', ' ')}")

    @property
    def score(self) -> int:
        """The scale value (see the class docstring for the range)."""
        return self.activity + self.respiration + self.circulation + self.consciousness + self.oxygen_saturation

    def describe(self) -> str:
        """A short line for the chart or timeline."""
        return f"Modified Aldrete {self.score}/10"


def suggest_aldrete_spo2(spo2_percent: float, on_oxygen: bool = False) -> int:
    """Suggested Aldrete oxygen-saturation item for an SpO2 reading (%).

    2 when SpO2 > 92 % on room air; 1 when SpO2 > 90 % (on oxygen, or 91–92 % on room air, which
    the nurse should confirm); 0 when SpO2 ≤ 90 %. A value outside 0–100 raises
    :class:`RefusedAction`. The nurse charts the item; this is only a suggestion.
    """
    if isinstance(spo2_percent, bool) or not isinstance(spo2_percent, (int, float)) or not 0 <= spo2_percent <= 100:
        raise RefusedAction(f"SpO2 {spo2_percent!r} % is not a saturation between 0 and 100 %")
    if spo2_percent > 92 and not on_oxygen:
        return 2
    if spo2_percent > 90:
        return 1
    return 0


def suggest_aldrete_circulation(systolic_mmhg: float, baseline_systolic_mmhg: float) -> int:
    """Suggested Aldrete circulation item: 2 when systolic BP is within 20 % of the pre-dose
    baseline, 1 within 20–49 %, 0 when 50 % or more away. Non-positive inputs raise
    :class:`RefusedAction`."""
    if not (systolic_mmhg > 0 and baseline_systolic_mmhg > 0):
        raise RefusedAction("Systolic BP and baseline must be positive mmHg values")
    deviation = abs(systolic_mmhg - baseline_systolic_mmhg) / baseline_systolic_mmhg
    if deviation <= 0.20:
        return 2
    if deviation < 0.50:
        return 1
    return 0


#: Registry: assessment kind → model class.
ASSESSMENTS: dict[str, type[Assessment]] = {
    cls.kind: cls for cls in (MOAAS, RASS, CADSS, CADSS6, BPRSPlus, PainNRS, NauseaVomiting, ModifiedAldrete)
}


def parse_assessment(payload: Mapping[str, Any]) -> Assessment:
    """Rebuild any assessment from its payload, by ``kind``; unknown kinds raise :class:`RefusedAction`."""
    kind = payload.get("kind")
    if kind not in ASSESSMENTS:
        raise RefusedAction(f"Unknown assessment {kind!r}; known: {', '.join(ASSESSMENTS)}")
    return ASSESSMENTS[kind].from_payload(payload)


# =========================================================================== events

#: Longest free-text note, characters.
NOTE_MAX_CHARS = 1000
_COMMENT_MAX = 200


class Severity(str, enum.Enum):
    """Severity of a preset event."""

    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


class Route(str, enum.Enum):
    """Administration routes offered for rescue medication."""

    IV = "IV"
    IM = "IM"
    PO = "PO"
    SL = "SL"
    SC = "SC"
    IN = "IN"
    INH = "INH"
    PR = "PR"

    @property
    def label(self) -> str:
        """Human name of the route."""
        return {"IV": "intravenous", "IM": "intramuscular", "PO": "by mouth", "SL": "sublingual",
                "SC": "subcutaneous", "IN": "intranasal", "INH": "inhaled", "PR": "rectal"}[self.value]


DoseUnit = Literal["mg", "mcg", "g", "mL", "units", "mmol"]
_DOSE_UNITS: tuple[str, ...] = ("mg", "mcg", "g", "mL", "units", "mmol")


@overload
def _text(value: Any, limit: int, what: str, required: Literal[True]) -> str: ...
@overload
def _text(value: Any, limit: int, what: str, required: bool) -> str | None: ...


def _text(value: Any, limit: int, what: str, required: bool) -> str | None:
    if value is None:
        if required:
            raise refuse(f"{what} is required")
        return None
    text = " ".join(str(value).split()) if what != "Note" else str(value).strip()
    if not text:
        if required:
            raise refuse(f"{what} is required")
        return None
    if len(text) > limit:
        raise refuse(f"{what} may have at most {limit} characters (this has {len(text)})")
    return text


class Event(BaseModel):
    """Base of the structured events: ``kind`` (registry key), ``title`` and payloads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""

    def describe(self) -> str:
        """A short line for the timeline."""
        return self.title

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict with ``kind``."""
        return {"kind": self.kind, **self.model_dump(mode="json")}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "Event":
        """Rebuild from :meth:`to_payload` output; a payload of another kind is refused."""
        data = dict(payload)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise RefusedAction(f"Payload of kind {kind!r} is not a {cls.title} event")
        return cls.model_validate(data)


class PresetEvent(Event):
    """A one-tap event with optional ``severity`` and ``comment`` (≤ 200 characters)."""

    severity: Severity | None = None
    comment: str | None = None

    @field_validator("comment", mode="before")
    @classmethod
    def _comment(cls, value: Any) -> str | None:
        return _text(value, _COMMENT_MAX, "Comment", required=False)

    def describe(self) -> str:
        """A short line for the chart or timeline."""
        parts = [self.title]
        if self.severity:
            parts.append(f"({self.severity.value})")
        if self.comment:
            parts.append(f"– {self.comment}")
        return " ".join(parts)


class Dissociation(PresetEvent):
    """Dissociation or emergence reaction."""

    kind: ClassVar[str] = "dissociation"
    title: ClassVar[str] = "Dissociation / emergence reaction"


class Anxiety(PresetEvent):
    """Anxiety."""

    kind: ClassVar[str] = "anxiety"
    title: ClassVar[str] = "Anxiety"


class Nausea(PresetEvent):
    """Nausea."""

    kind: ClassVar[str] = "nausea"
    title: ClassVar[str] = "Nausea"


class Vomiting(PresetEvent):
    """Vomiting."""

    kind: ClassVar[str] = "vomiting"
    title: ClassVar[str] = "Vomiting"


class Headache(PresetEvent):
    """Headache."""

    kind: ClassVar[str] = "headache"
    title: ClassVar[str] = "Headache"


class HypertensionTreated(PresetEvent):
    """Hypertension treated (chart the drug as a :class:`RescueMedication` too)."""

    kind: ClassVar[str] = "hypertension_treated"
    title: ClassVar[str] = "Hypertension treated"


class RescueMedication(Event):
    """Rescue medication given: ``drug`` (1–60 characters), ``dose`` (> 0, ≤ 10000) in
    ``dose_unit`` (mg, mcg, g, mL, units, mmol), ``route`` (:class:`Route`), ``given_by``
    (printed name, 1–80 characters), optional ``comment``."""

    kind: ClassVar[str] = "rescue_medication"
    title: ClassVar[str] = "Rescue medication"
    drug: str
    dose: float
    dose_unit: DoseUnit
    route: Route
    given_by: str
    comment: str | None = None

    @field_validator("drug", mode="before")
    @classmethod
    def _drug(cls, value: Any) -> str:
        return _text(value, 60, "Drug name", required=True)

    @field_validator("given_by", mode="before")
    @classmethod
    def _given_by(cls, value: Any) -> str:
        return _text(value, 80, "Given by", required=True)

    @field_validator("comment", mode="before")
    @classmethod
    def _comment(cls, value: Any) -> str | None:
        return _text(value, _COMMENT_MAX, "Comment", required=False)

    @field_validator("dose", mode="before")
    @classmethod
    def _dose(cls, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise refuse(f"Dose {value!r} is not a number") from None
        if isinstance(value, bool) or not 0 < number <= 10_000:
            raise refuse(f"Dose {value} must be above 0 and at most 10000")
        return number

    @field_validator("dose_unit", mode="before")
    @classmethod
    def _unit(cls, value: Any) -> str:
        if value not in _DOSE_UNITS:
            raise refuse(f"Dose unit {value!r} is not one of {', '.join(_DOSE_UNITS)}")
        return value

    @field_validator("route", mode="before")
    @classmethod
    def _route(cls, value: Any) -> Any:
        if isinstance(value, Route):
            return value
        text = str(value).strip().upper()
        if text not in Route.__members__:
            raise refuse(f"Route {value!r} is not one of {', '.join(r.value for r in Route)}")
        return Route(text)

    def describe(self) -> str:
        """A short line for the chart or timeline."""
        tail = f" – {self.comment}" if self.comment else ""
        return f"{self.drug} {self.dose:g} {self.dose_unit} {self.route.value}, given by {self.given_by}{tail}"


class Note(Event):
    """Free-text note, 1–1000 characters. De-identified exports drop notes (they may identify)."""

    kind: ClassVar[str] = "note"
    title: ClassVar[str] = "Note"
    text: str

    @field_validator("text", mode="before")
    @classmethod
    def _check_text(cls, value: Any) -> str:
        return _text(value, NOTE_MAX_CHARS, "Note", required=True)

    def describe(self) -> str:
        """A short line for the chart or timeline."""
        return f"Note: {self.text}"


#: Registry: event kind → model class.
EVENTS: dict[str, type[Event]] = {
    cls.kind: cls for cls in (Dissociation, Anxiety, Nausea, Vomiting, Headache, HypertensionTreated,
                              RescueMedication, Note)
}


def parse_event(payload: Mapping[str, Any]) -> Event:
    """Rebuild any event from its payload, by ``kind``; unknown kinds raise :class:`RefusedAction`."""
    kind = payload.get("kind")
    if kind not in EVENTS:
        raise RefusedAction(f"Unknown event {kind!r}; known: {', '.join(EVENTS)}")
    return EVENTS[kind].from_payload(payload)
