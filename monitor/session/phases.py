"""Session phases and their transitions, and the refusals of session actions.

Phases::

    baseline ──▶ infusion ──▶ recovery ──▶ discharged
        └────────────┴────────────┴──────▶ aborted

"infusion" is the dosing phase of either protocol (its label is "dosing").

:func:`clean_text` checks the free text a session action records (a reason, a name)."""

from __future__ import annotations

import enum
from typing import Any, Literal, overload

from monitor.staff import RefusedAction


class SessionError(RefusedAction):
    """A session action the rules refuse (wrong phase, missing pre-dose BP, closed session …)."""


class PhaseError(SessionError):
    """A phase transition that is not allowed."""


class DosingDuringAlarm(SessionError):
    """Dosing would start while a HIGH physiological alarm is active (``alarms``: each one's line,
    "SpO2 low 85 % (limit 88)"): allowed only when the nurse gives a reason, which is recorded —
    the safer reading of the pre-dose rules, like the pre-dose BP advisory's decision to proceed."""

    def __init__(self, alarms: tuple[str, ...]) -> None:
        super().__init__(f"HIGH alarm active: {'; '.join(alarms)}. To start dosing now, give the reason "
                         "(it is recorded)")
        self.alarms = alarms


class Phase(str, enum.Enum):
    """Session phase (see the module docstring for the transitions)."""

    BASELINE = "baseline"
    INFUSION = "infusion"
    RECOVERY = "recovery"
    DISCHARGED = "discharged"
    ABORTED = "aborted"

    @property
    def terminal(self) -> bool:
        """True for discharged and aborted (the session is read-only)."""
        return self in (Phase.DISCHARGED, Phase.ABORTED)

    @property
    def label(self) -> str:
        """Human name of the phase."""
        return {"baseline": "baseline", "infusion": "dosing", "recovery": "recovery",
                "discharged": "discharged", "aborted": "ended without discharge"}[self.value]


#: Allowed phase transitions.
ALLOWED_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.BASELINE: frozenset({Phase.INFUSION, Phase.ABORTED}),
    Phase.INFUSION: frozenset({Phase.RECOVERY, Phase.ABORTED}),
    Phase.RECOVERY: frozenset({Phase.DISCHARGED, Phase.ABORTED}),
    Phase.DISCHARGED: frozenset(),
    Phase.ABORTED: frozenset(),
}


def check_transition(current: Phase, target: Phase) -> None:
    """Raise :class:`PhaseError` unless ``current`` → ``target`` is allowed."""
    if target not in ALLOWED_TRANSITIONS[current]:
        if current.terminal:
            raise PhaseError(f"The session is {current.label}: it is read-only")
        if current is target:
            raise PhaseError(f"The session is already in {current.label}")
        allowed = " or ".join(sorted(p.label for p in ALLOWED_TRANSITIONS[current]))
        raise PhaseError(f"A session in {current.label} cannot go to {target.label} (only to {allowed})")


@overload
def clean_text(value: Any, limit: int, what: str, required: Literal[True]) -> str: ...
@overload
def clean_text(value: Any, limit: int, what: str, required: bool) -> str | None: ...


def clean_text(value: Any, limit: int, what: str, required: bool) -> str | None:
    """``value`` as one line of text (runs of whitespace become one space, ends trimmed), or None
    when empty and not ``required``. :class:`SessionError` naming ``what`` when it is required and
    empty, or longer than ``limit`` characters."""
    text = " ".join(str(value).split()) if value is not None else ""
    if not text:
        if required:
            raise SessionError(f"{what} is required")
        return None
    if len(text) > limit:
        raise SessionError(f"{what} may have at most {limit} characters")
    return text
