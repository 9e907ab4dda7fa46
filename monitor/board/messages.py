"""The clinic board's wire format: topics and versioned JSON messages shared by chair and board.

Topics (``<clinic>`` and ``<chair>`` are names checked by :func:`check_name`)::

    vigil/<clinic>/<chair>/status    retained, QoS 1   online / offline (offline is the last will)
    vigil/<clinic>/<chair>/session   retained, QoS 1   the session being recorded (or none)
    vigil/<clinic>/<chair>/vitals    QoS 0, 1 Hz       the latest numerics
    vigil/<clinic>/<chair>/alarms    retained, QoS 1   the full alarm state, on every change
    vigil/<clinic>/<chair>/waves     QoS 0, 1 Hz       waveforms ≤ 125 Hz in 1-s blocks (optional)
    vigil-cmd/<clinic>/<chair>/ack   QoS 1             acknowledge from the board (when allowed)

Every message is a JSON object with ``v`` (the schema version, :data:`SCHEMA_VERSION`), ``chair``
and ``t`` (when the sender made it, ISO 8601 UTC). Fields are only ever added within a version; a
reader ignores fields it does not know and refuses a newer ``v`` with a message saying so.
docs/clinic-board.md documents every field.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from drivers.errors import VigilError

#: The schema version this code writes and the newest it reads.
SCHEMA_VERSION = 1
#: Topic roots: chair data, and commands to a chair.
ROOT = "vigil"
CMD_ROOT = "vigil-cmd"
#: Kinds of chair topic, in the order a board wants them.
KINDS = ("status", "session", "alarms", "vitals", "waves")
#: Retained kinds (the board catches up from these after any reconnect).
RETAINED = frozenset({"status", "session", "alarms"})
#: The highest waveform rate published (Hz).
MAX_WAVE_HZ = 125.0

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

PriorityName = Literal["LOW", "MEDIUM", "HIGH"]
_PRIORITY_NAMES: dict[str, PriorityName] = {"LOW": "LOW", "MEDIUM": "MEDIUM", "HIGH": "HIGH"}


def priority_name(name: str) -> PriorityName:
    """``name`` ("LOW", "MEDIUM" or "HIGH", e.g. an alarm ``Priority``'s name) as a message field;
    another name raises :class:`MessageError`."""
    try:
        return _PRIORITY_NAMES[name]
    except KeyError:
        raise MessageError(f"{name!r} is not an alarm priority (LOW, MEDIUM, HIGH)") from None


class MessageError(VigilError, ValueError):
    """A message or topic that cannot be read; the text says which and why."""


def check_name(name: str, what: str = "name") -> str:
    """A clinic or chair name usable as one topic level: 1–64 letters, digits, ``_ . -``,
    starting with a letter or digit (no ``/``, ``+``, ``#``, spaces). Raises :class:`MessageError`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise MessageError(f"{what} {name!r} must be 1-64 letters, digits, '_', '.' or '-' "
                           "(starting with a letter or digit)")
    return name


def chair_topic(clinic: str, chair: str, kind: str) -> str:
    """The topic of ``kind`` (one of :data:`KINDS`) for one chair."""
    if kind not in KINDS:
        raise MessageError(f"unknown topic kind {kind!r}; one of {', '.join(KINDS)}")
    return f"{ROOT}/{check_name(clinic, 'clinic')}/{check_name(chair, 'chair')}/{kind}"


def ack_topic(clinic: str, chair: str) -> str:
    """The topic a board publishes an acknowledge command to, for one chair."""
    return f"{CMD_ROOT}/{check_name(clinic, 'clinic')}/{check_name(chair, 'chair')}/ack"


def board_subscription(clinic: str) -> str:
    """The topic filter a board subscribes to: every chair's topics of the clinic."""
    return f"{ROOT}/{check_name(clinic, 'clinic')}/+/+"


def parse_topic(topic: str) -> tuple[str, str, str]:
    """``(clinic, chair, kind)`` of a chair topic; :class:`MessageError` for anything else."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != ROOT or parts[3] not in KINDS:
        raise MessageError(f"not a Vigil chair topic: {topic!r}")
    return check_name(parts[1], "clinic"), check_name(parts[2], "chair"), parts[3]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = SCHEMA_VERSION
    chair: str
    t: AwareDatetime

    @field_validator("v")
    @classmethod
    def _version(cls, value: int) -> int:
        if not 1 <= value <= SCHEMA_VERSION:
            raise ValueError(f"schema version {value} is not one this Vigil reads (1-{SCHEMA_VERSION}): "
                             "update the board")
        return value


class StatusMessage(_Message):
    """``status``: the chair's Vigil is ``online`` or ``offline``. ``reason`` says why it is offline:
    ``closed`` (Vigil ended cleanly) or ``connection lost`` (the last will: the broker lost the chair).
    ``version`` is the chair's Vigil version. In a last will ``t`` is when the chair connected."""

    kind: Literal["status"] = "status"
    state: Literal["online", "offline"]
    reason: Literal["", "closed", "connection lost"] = ""
    version: str = ""
    waves: bool = False


class SessionInfo(BaseModel):
    """The session being recorded at the chair (times UTC; doses in mg; ``elapsed_s`` since it was
    opened, ``remaining_s`` until the earliest discharge when known). ``patient_name`` is empty
    unless the clinic allows names on the board."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    session_id: int
    patient_initials: str
    patient_name: str = ""
    protocol: str
    phase: str
    opened_at: AwareDatetime
    elapsed_s: float
    dosing_started_at: AwareDatetime | None = None
    dosing_ended_at: AwareDatetime | None = None
    discharge_earliest: AwareDatetime | None = None
    remaining_s: float | None = None
    dose_delivered_mg: float = 0.0
    dose_planned_mg: float = 0.0
    next_nibp_at: AwareDatetime | None = None
    next_assessment: str = ""
    next_assessment_at: AwareDatetime | None = None


class SessionMessage(_Message):
    """``session``: the session being recorded, or ``session: null`` when none is."""

    kind: Literal["session"] = "session"
    session: SessionInfo | None = None


class Numeric(BaseModel):
    """One vital's latest value (None: the device reports it missing), its unit, when it was
    measured, and the device's quality flags (``artifact``, ``sensor_off``…)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    value: float | None
    unit: str = ""
    t: AwareDatetime
    flags: tuple[str, ...] = ()


class VitalsMessage(_Message):
    """``vitals``: the latest value of each vital seen (catalogue keys: spo2, pr, hr, nibp_sys…),
    published once a second, also when nothing new arrived (it is the chair's heartbeat)."""

    kind: Literal["vitals"] = "vitals"
    numerics: dict[str, Numeric] = Field(default_factory=dict)


class AlarmInfo(BaseModel):
    """One alarm present at the chair: ``id`` (the chair's), ``condition`` (``spo2_low``,
    ``connection_lost``…), ``kind`` physiological/technical, ``priority`` now, ``since`` when it
    started, the ``value`` that triggers it and the ``limit`` in force, ``text`` as the chair shows
    it; ``active`` False for a latched alarm whose condition ended; who acknowledged it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    condition: str
    label: str
    text: str
    kind: str
    priority: PriorityName
    since: AwareDatetime
    value: float | None = None
    limit: float | None = None
    active: bool = True
    acknowledged: bool = False
    acknowledged_by: str | None = None
    latched: bool = False


class AlarmsMessage(_Message):
    """``alarms``: the chair's whole alarm state, republished on every change. ``seq`` counts the
    chair's alarm states since it started (an acknowledge from the board names the one it saw);
    ``visual_priority`` the highest shown, ``audio_priority`` what sounds at the chair now;
    ``audio_paused`` with ``paused_by`` and ``pause_remaining_s``."""

    kind: Literal["alarms"] = "alarms"
    seq: int
    visual_priority: PriorityName | None = None
    audio_priority: PriorityName | None = None
    audio_paused: bool = False
    paused_by: str | None = None
    pause_remaining_s: float = 0.0
    alarms: tuple[AlarmInfo, ...] = ()

    def same_state(self, other: "AlarmsMessage | None") -> bool:
        """True when ``other`` shows the same alarms (ignoring ``t``, ``seq`` and the pause count-down)."""
        if other is None:
            return False
        skip = {"t", "seq", "pause_remaining_s"}
        return self.model_dump(exclude=skip) == other.model_dump(exclude=skip)


class WaveBlock(BaseModel):
    """One second (or so) of one waveform: ``rate_hz`` ≤ 125, sample *i* at ``start + i / rate_hz``;
    null marks a gap (probe off)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    channel: str
    rate_hz: float = Field(gt=0, le=MAX_WAVE_HZ)
    start: AwareDatetime
    samples: tuple[float | None, ...]


class WavesMessage(_Message):
    """``waves``: the waveform blocks completed since the last message."""

    kind: Literal["waves"] = "waves"
    blocks: tuple[WaveBlock, ...] = ()


class AckCommand(_Message):
    """An acknowledge from the board (``vigil-cmd/<clinic>/<chair>/ack``): who (the board user's
    staff ID and printed name), from which board, for the alarm state ``seq`` they saw. The chair
    acts on it only when its clinic setting allows acknowledge from the board, and only when its
    alarms have not changed since ``seq``."""

    kind: Literal["ack"] = "ack"
    seq: int
    username: str = Field(min_length=1, max_length=64)
    display_name: str = Field(min_length=1, max_length=120)
    board: str = ""


Message = StatusMessage | SessionMessage | VitalsMessage | AlarmsMessage | WavesMessage
_BY_KIND: dict[str, type[_Message]] = {
    "status": StatusMessage, "session": SessionMessage, "vitals": VitalsMessage,
    "alarms": AlarmsMessage, "waves": WavesMessage, "ack": AckCommand,
}


def encode(message: _Message) -> bytes:
    """The UTF-8 JSON of a message (what goes on the wire)."""
    return message.model_dump_json(exclude_none=False).encode("utf-8")


def decode(kind: str, payload: bytes | str) -> _Message:
    """Read a message of ``kind`` (a topic kind or ``"ack"``); :class:`MessageError` names the kind
    and the first problem (not JSON, a missing field, a newer schema version)."""
    model = _BY_KIND.get(kind)
    if model is None:
        raise MessageError(f"unknown message kind {kind!r}")
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "message"
        text = str(first.get("msg", "")).removeprefix("Value error, ")
        raise MessageError(f"{kind} message refused: {where}: {text}") from None

