"""De-identification, designed once: every exporter sees the session through a :class:`Privacy`.

:class:`Privacy` is the identity (an identified export). :class:`SafeHarbor` applies the HIPAA Safe
Harbor method to everything that passes through it:

* **times** — every time of the export is shifted by one random offset chosen per export (whole
  seconds, at least a day, keeping the session inside its calendar year, so that the year stays
  true), so intervals between everything in the record are preserved and no real date or clock
  time appears; where a date is printed for people it is reduced to the year (:meth:`date_text`);
* **people** — names of patients and staff never pass: a staff member becomes their role
  ("nurse", "charge nurse", else "staff") (:meth:`person`), the patient has no name, record number or
  date of birth, only an age, given as "90+" above 89 (:meth:`age_text`);
* **free text** — every text field whose value is not chosen from a fixed list is text that may
  identify someone, wherever it is: notes, reasons, comments, the rescue-medication drug and "given
  by", other-medication text, escort names, override reasons, signature notes, late-entry and
  amendment reasons, gap reasons, device condition texts, alarm messages (replaced by the alarm's
  name), lot numbers (:meth:`text`);
* **devices** — device URLs and data-source names (which may carry serial numbers) become
  "patient monitor" / "device 1", "device 2"… (:meth:`device`, :meth:`source`);
* **raw payloads** (the JSON archive's charted entries) — :meth:`payload` keeps numbers, booleans,
  shifted ISO times and only those strings whose key has a fixed list of values (:func:`vocabulary`,
  read from the session domain's own enumerations: entry types, assessment and event kinds, infusion
  actions, severities, routes, dose units, decisions, protocols, sexes, roles) and whose value is in
  that list; every other string is removed.

Each de-identified file carries :func:`deid_notice`: what was removed and exactly what was done to
dates (every date and time shifted by the export's offset; where a file shows a date on its own,
the year only).

The session view (:mod:`monitor.app.readmodel`) calls these hooks while it builds its rows, and the
writers only ever read the view, so no format has its own de-identification code.
"""

from __future__ import annotations

import functools
import random
import re
from datetime import datetime, timedelta, timezone
from typing import Any, overload

import numpy as np

__all__ = ["Privacy", "SafeHarbor", "ROLE_LABELS", "DEIDENTIFIED", "deid_notice", "vocabulary", "is_coded"]

#: Role keys → the label shown instead of a name in de-identified exports.
ROLE_LABELS = {"nurse": "nurse", "charge_nurse": "charge nurse"}
#: What de-identified exports show in place of the patient's name.
DEIDENTIFIED = "De-identified"


def deid_notice(*, year_only_dates: bool) -> str:
    """The sentence a de-identified file carries. ``year_only_dates``: the file also shows dates on
    their own (a report's date, a signature's date), and gives those as the year only."""
    dates = ("every date and time shifted by one random offset chosen for this export (at least one day, the "
             "year kept), so intervals are exact but no real date or time appears")
    if year_only_dates:
        dates += "; dates shown on their own are given as the year only"
    return ("De-identified (HIPAA Safe Harbor): names, record numbers, device identifiers, lot numbers and all "
            f"free text removed; ages over 89 given as 90+; {dates}")


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_DAY = 86400
#: A code Vigil sets itself, never typed (the key of a discharge criterion): kept by :meth:`SafeHarbor.payload`.
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
#: Keys dropped whole by :meth:`SafeHarbor.payload` (identifiers and free text, whatever their type).
_DROPPED_KEYS = frozenset({
    "display_name", "username", "name", "mrn", "date_of_birth", "session_id", "local_date", "printed_name",
    "given_by", "escort_name", "note", "reason", "comment", "text", "other", "override_reason", "methods",
    "detail", "clinic_name", "clinic_address",
})


@functools.lru_cache(maxsize=1)
def vocabulary() -> dict[str, frozenset[str]]:
    """Payload keys whose values are chosen from a fixed list, with that list, read from the session
    domain (so a new kind, action or route is known here without a second table). A string under any
    other key, or not in its key's list, is free text to a de-identified export."""
    from typing import get_args

    from monitor.assessments import ASSESSMENTS, EVENTS, DoseUnit, Route, Severity
    from monitor.patient import Sex
    from monitor.protocols import InfusionAction, ProtocolKind
    from monitor.session import BpDecision, NibpReading, SessionState
    from monitor.staff import Role

    def literal(model: Any, name: str) -> frozenset[str]:
        return frozenset(get_args(model.model_fields[name].annotation))

    types = frozenset(n[len("_apply_"):] for n in dir(SessionState) if n.startswith("_apply_") and n != "_apply_late")
    return {
        "type": types,
        "kind": frozenset(ASSESSMENTS) | frozenset(EVENTS),
        "action": frozenset(a.value for a in InfusionAction),
        "source": literal(NibpReading, "source"),
        "severity": frozenset(x.value for x in Severity),
        "route": frozenset(x.value for x in Route),
        "dose_unit": frozenset(get_args(DoseUnit)),
        "decision": literal(BpDecision, "decision"),
        "protocol": frozenset(x.value for x in ProtocolKind),
        "sex": frozenset(x.value for x in Sex),
        "role": frozenset(x.value for x in Role),
    }


def _known_meanings() -> tuple[str, ...]:
    from monitor.protocols import CLINICALLY_STABLE_MEANING
    from monitor.session import CLOSE_MEANING
    return (CLOSE_MEANING, CLINICALLY_STABLE_MEANING)


def is_coded(key: str | None, value: str) -> bool:
    """True when ``value`` is chosen from the fixed list of ``key`` (see :func:`vocabulary`), or is the
    code Vigil gives a discharge criterion (``key``); any other string is free text."""
    if key == "key":
        return bool(_CODE.match(value))
    allowed = vocabulary().get(key or "")
    return allowed is not None and value in allowed


class Privacy:
    """The identity transform: an identified export shows the record as it is."""

    deidentified = False
    offset_s = 0

    @overload
    def time(self, t: float) -> float: ...
    @overload
    def time(self, t: None) -> None: ...

    def time(self, t: float | None) -> float | None:
        """An epoch time (s) as exported; None stays None."""
        return None if t is None else t + self.offset_s

    def times(self, t: np.ndarray) -> np.ndarray:
        """An array of epoch times (s) as exported."""
        return t + self.offset_s if self.offset_s else t

    @overload
    def dt(self, value: datetime) -> datetime: ...
    @overload
    def dt(self, value: None) -> None: ...

    def dt(self, value: datetime | None) -> datetime | None:
        """A datetime as exported (UTC); None stays None."""
        if value is None:
            return None
        return (value + timedelta(seconds=self.offset_s)).astimezone(timezone.utc)

    def date_text(self, value: datetime | None) -> str:
        """A date for people to read: the local date, or only the year when de-identified."""
        if value is None:
            return "—"
        return value.astimezone().date().isoformat()

    def person(self, name: str | None, role: str | None = None) -> str:
        """A member of staff as exported: the printed name (or login) when identified."""
        if name:
            return name
        return ROLE_LABELS.get(role or "", "staff") if role else "staff"

    def text(self, value: Any) -> str | None:
        """Free text as exported (None stays None; empty becomes None)."""
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    def device(self, value: str | None) -> str:
        """The session's device (URL or label)."""
        return value or "patient monitor"

    def source(self, value: str | None) -> str:
        """A data source name."""
        return value or ""

    def age_text(self, age: int | None) -> str | None:
        """The patient's age in years as text."""
        return None if age is None else str(age)

    def payload(self, value: Any) -> Any:
        """A charted entry's payload as exported (unchanged when identified)."""
        return value

    def patient_payload(self, patient: dict[str, Any], age: int | None = None) -> dict[str, Any]:
        """The patient's record as exported (unchanged when identified)."""
        return patient

    def meaning(self, value: str | None) -> str:
        """The meaning of a signature (free text given by the caller)."""
        return value or ""


class SafeHarbor(Privacy):
    """HIPAA Safe Harbor de-identification (see the module docstring).

    ``start``/``end``: the session's first and last times (aware), used to choose the offset so the
    shifted session stays within its calendar year. ``rng``: a :class:`random.Random` (default: the
    operating system's randomness, so the offset cannot be guessed or reproduced).
    """

    deidentified = True

    def __init__(self, start: datetime, end: datetime | None = None, rng: random.Random | None = None) -> None:
        rng = rng or random.SystemRandom()
        start_s = start.timestamp()
        length = max(0.0, (end.timestamp() if end is not None else start_s) - start_s)
        year = start.astimezone(timezone.utc).year
        first = datetime(year, 1, 1, tzinfo=timezone.utc).timestamp()
        last = datetime(year + 1, 1, 1, tzinfo=timezone.utc).timestamp() - length - 1
        offset = 0
        for _ in range(100):
            if last > first + 2 * _DAY:
                target = rng.uniform(first, last)
            else:  # a session longer than its year allows: any shift of 1–365 days
                target = start_s + rng.choice((-1, 1)) * rng.uniform(_DAY, 365 * _DAY)
            offset = int(round(target - start_s))
            clock_shift = abs(((offset + _DAY // 2) % _DAY) - _DAY // 2)  # how far the wall clock moves
            if abs(offset) >= _DAY and clock_shift >= 3600:
                break
        else:  # pragma: no cover - practically unreachable
            offset = 2 * _DAY + rng.randrange(_DAY)
        self.offset_s = offset
        self._sources: dict[str, str] = {}

    def date_text(self, value: datetime | None) -> str:
        """Only the year (of the shifted time, which is the true year)."""
        if value is None:
            return "—"
        return str(value.astimezone().year)

    def person(self, name: str | None, role: str | None = None) -> str:
        """The role label, or "staff"."""
        return ROLE_LABELS.get(role or "", "staff")

    def text(self, value: Any) -> str | None:
        """Free text never passes."""
        return None

    def device(self, value: str | None) -> str:
        """"patient monitor": device URLs may carry serial numbers or host names."""
        return "patient monitor"

    def source(self, value: str | None) -> str:
        """"device 1", "device 2"… in order of first appearance."""
        key = value or ""
        if key not in self._sources:
            self._sources[key] = f"device {len(self._sources) + 1}"
        return self._sources[key]

    def age_text(self, age: int | None) -> str | None:
        """Ages over 89 are given as "90+"."""
        if age is None:
            return None
        return "90+" if age > 89 else str(age)

    def meaning(self, value: str | None) -> str:
        """Vigil's own signature meanings pass; any other text becomes "signed"."""
        return value if value in _known_meanings() else "signed"

    def shift_iso(self, text: str) -> str | None:
        """An ISO-8601 time string, shifted (None when it does not parse)."""
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return self.dt(value).isoformat()

    def payload(self, value: Any, key: str | None = None) -> Any:
        """Scrub a JSON value: actor dicts become ``{"role": …}``, the patient keeps only sex, weight,
        risk factors and age, ISO times are shifted, coded strings are kept and every other string
        and identifying key is removed."""
        if isinstance(value, dict):
            if key == "by" or {"username", "display_name"} <= set(value):
                return {"role": ROLE_LABELS.get(str(value.get("role")), "staff")}
            if key == "patient":
                return self.patient_payload(value)
            out = {}
            for k, v in value.items():
                if k in _DROPPED_KEYS:
                    continue
                scrubbed = self.payload(v, k)
                if isinstance(v, str) and scrubbed is None:
                    continue
                out[k] = scrubbed
            return out
        if isinstance(value, list):
            return [self.payload(v, key) for v in value]
        if isinstance(value, str):
            if _ISO.match(value):
                return self.shift_iso(value)
            if key == "meaning":
                return self.meaning(value)
            return value if is_coded(key, value) else None
        return value

    def patient_payload(self, patient: dict[str, Any], age: int | None = None) -> dict[str, Any]:
        """The patient without identifiers: sex, weight, risk factors and the age ("90+" above 89)."""
        out: dict[str, Any] = {"deidentified": True}
        for k in ("sex", "weight_kg", "known_hypertension", "prior_sessions"):
            if k in patient:
                out[k] = patient[k]
        if age is not None:
            out["age"] = self.age_text(age)
        return out
