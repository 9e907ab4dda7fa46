"""The patient of a session: identity, weight and the risk factors the schedule depends on.

Age is checked against the clinic's minimum (:attr:`monitor.settings.ClinicSettings.min_patient_age_years`,
default 18: Vigil is for adult clinics and esketamine is licensed for adults) when a session is
opened, with the session's date passed in: :meth:`Patient.check_age`. The model itself refuses only
what is impossible on any date (birth before 1900, weight outside 30–250 kg).
"""

from __future__ import annotations

import enum
import re
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from monitor.staff import RefusedAction, refuse

__all__ = ["Sex", "Patient", "age_on", "WEIGHT_RANGE_KG"]

#: Accepted body weight, kg (inclusive).
WEIGHT_RANGE_KG = (30.0, 250.0)
_MRN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/-]{0,29}$")


class Sex(str, enum.Enum):
    """Sex as recorded on the REMS monitoring form."""

    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


def age_on(date_of_birth: date, on: date) -> int:
    """Completed years of age on the date ``on`` (a 29 February birthday counts from 1 March).

    ``on`` before ``date_of_birth`` raises :class:`RefusedAction`.
    """
    if on < date_of_birth:
        raise RefusedAction(f"Date of birth {date_of_birth.isoformat()} is after {on.isoformat()}")
    years = on.year - date_of_birth.year
    if (on.month, on.day) < (date_of_birth.month, date_of_birth.day):
        years -= 1
    return years


class Patient(BaseModel):
    """One patient as entered at the start of a session.

    * ``display_name``: the name shown at the chair (1–100 characters; it is removed on
      de-identified export).
    * ``mrn``: medical record number, optional, 1–30 letters, digits, '-' or '/'.
    * ``date_of_birth``: not before 1900 (the future is refused by :meth:`check_age`); None when
      not recorded (unattended ``vigil record``): the age check is then not made. The start dialog
      always asks for it.
    * ``sex``: :class:`Sex`.
    * ``weight_kg``: 30–250 kg.
    * ``known_hypertension``: known hypertension (NIBP every 5 min during an infusion).
    * ``prior_sessions``: sessions this patient has had before (0 for the first); fewer than 3 means
      NIBP every 5 min during an infusion.

    Bad input raises ``pydantic.ValidationError`` with a message the nurse can act on.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    display_name: str
    mrn: str | None = None
    date_of_birth: date | None = None
    sex: Sex = Sex.UNKNOWN
    weight_kg: float
    known_hypertension: bool = False
    prior_sessions: int = 0

    @field_validator("display_name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = " ".join(value.split())
        if not 1 <= len(value) <= 100:
            raise refuse("The patient's name must be 1–100 characters")
        return value

    @field_validator("mrn")
    @classmethod
    def _mrn(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not _MRN.match(value):
            raise refuse(f"Record number {value!r} should be 1–30 letters, digits, '-' or '/'")
        return value

    @field_validator("date_of_birth")
    @classmethod
    def _dob(cls, value: date | None) -> date | None:
        if value is not None and value.year < 1900:
            raise refuse(f"Date of birth {value.isoformat()} is before 1900: check the year")
        return value

    @field_validator("weight_kg")
    @classmethod
    def _weight(cls, value: float) -> float:
        low, high = WEIGHT_RANGE_KG
        if not low <= value <= high:
            raise refuse(f"Weight {value:g} kg is outside {low:g}–{high:g} kg")
        return float(value)

    @field_validator("prior_sessions")
    @classmethod
    def _prior(cls, value: int) -> int:
        if not 0 <= value <= 10_000:
            raise refuse(f"Prior sessions {value} must be 0 or more")
        return value

    def age_on(self, on: date) -> int | None:
        """Completed years of age on ``on`` (see :func:`age_on`); None without a date of birth."""
        return None if self.date_of_birth is None else age_on(self.date_of_birth, on)

    def check_age(self, on: date, min_age_years: int = 18) -> int | None:
        """Return the age on ``on`` (None without a date of birth); refuse a birth date after
        ``on`` or an age below ``min_age_years``.

        Raises :class:`RefusedAction`: "Date of birth 2031-01-01 is in the future" or "Patient is 17
        years old; this clinic treats patients aged 18 or over".
        """
        if self.date_of_birth is None:
            return None
        if self.date_of_birth > on:
            raise RefusedAction(f"Date of birth {self.date_of_birth.isoformat()} is in the future")
        age = age_on(self.date_of_birth, on)
        if age < min_age_years:
            raise RefusedAction(f"Patient is {age} years old; this clinic treats patients aged "
                                f"{min_age_years} or over")
        return age

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_payload` rebuilds the patient."""
        return self.model_dump(mode="json")

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "Patient":
        """Rebuild from :meth:`to_payload` output (validated again)."""
        return cls.model_validate(payload)
