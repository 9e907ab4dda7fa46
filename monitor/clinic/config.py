"""The clinic record section of the clinic settings (``clinic_record``), off by default."""

from __future__ import annotations

import socket

from pydantic import BaseModel, ConfigDict, field_validator

from monitor.staff import refuse
from monitor.store.reader import is_postgres_url

__all__ = ["ClinicRecordSettings", "chair_name"]


class ClinicRecordSettings(BaseModel):
    """Where and how this chair copies its record to the clinic record (PostgreSQL).

    ``url``: the clinic record, ``postgresql://login@server/database`` ("" = off, the default).
    Keep the password out of it: libpq reads it from the login's passfile (``~/.pgpass``, or the
    file ``PGPASSFILE`` names). ``chair``: this chair's name in the clinic record (1–80 characters;
    "" = the computer's host name); being per chair, it is usually set by ``vigil run --chair`` or
    ``VIGIL_SETTING_CLINIC_RECORD__CHAIR``. ``poll_s``: seconds between two looks for new data
    (0.2–5; default 1: an open session reaches the clinic record within about that, plus the copy).
    ``staff``: keep staff accounts and the clinic settings in the clinic record, so one sign-in works
    at every chair (default True). The section is the chair's own: settings taken from the clinic
    record never change it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = ""
    chair: str = ""
    poll_s: float = 1.0
    staff: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if value and not is_postgres_url(value):
            raise refuse(f"the clinic record must be a postgresql://… URL, not {value!r}")
        return value

    @field_validator("chair")
    @classmethod
    def _chair(cls, value: str) -> str:
        value = value.strip()
        if len(value) > 80:
            raise refuse("a chair name has at most 80 characters")
        return value

    @field_validator("poll_s")
    @classmethod
    def _poll(cls, value: float) -> float:
        if not 0.2 <= value <= 5:
            raise refuse(f"clinic record poll interval {value:g} s is outside 0.2–5 s")
        return value


def chair_name(configured: str | None) -> str:
    """The chair's name: ``configured`` if not blank, else the computer's host name (80 characters
    at most)."""
    name = (configured or "").strip() or socket.gethostname() or "chair"
    return name[:80]
