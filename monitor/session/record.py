"""The session record: what a session's entries are, one typed model per entry type.

This module is *the* schema of a session's record. Every entry has the envelope ``seq`` (its
number, 1, 2, 3 … in the order recorded; None for a late entry), ``type`` (:class:`EntryType`),
``t`` (the clinical time, aware UTC) and ``by`` (the acting user, or None for a reading taken by a
device), plus the fields of its type below. :func:`parse_entry` turns a stored payload (a JSON
object) into its model, refusing anything else with a message that names the entry; an entry's
:meth:`~EntryBase.to_payload` gives the JSON object the store keeps. Payloads written by earlier
versions of Vigil parse unchanged: new fields are optional, and the ones that are left out of a
payload when empty (``high_rate_reason``, ``late``) stay out.

The models check the record's *shape*; the session (:class:`monitor.session.SessionState`)
checks its *rules* when it applies an entry (a replay runs the same checks as the live action).

Adding an entry type: add the value to :class:`EntryType`, a model here (with ``type:
Literal[EntryType.NEW]``) and to :data:`Entry`, a handler in ``SessionState._HANDLERS``, the
table it goes to in :data:`STORE_TABLE`, and, if it should show in review and exports, a row in
the read model (``monitor.app.readmodel``). Bump :data:`RECORD_VERSION` when the shape of an
existing type changes.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Union, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
)

from monitor.staff import Actor, RefusedAction, UtcDatetime

__all__ = [
    "RECORD_VERSION", "EntryType", "EntryBase", "Entry", "STORE_TABLE", "parse_entry", "entry_kind",
    "SessionOpened", "NibpEntry", "BaselineEntry", "BpDecisionEntry", "PreDoseWaiver", "InfusionStepEntry",
    "NasalDeviceEntry", "ClinicallyStableEntry", "DosingEnded", "AssessmentEntry", "EventEntry", "Correction",
    "ConcomitantMedications", "EscortEntry", "SessionAborted", "SessionClosed", "AlarmLimitsEntry", "ClockJumpEntry",
    "DeviceStatsEntry", "RecordError",
]

#: Version of the record's shape (1: the entry types below, as first recorded).
RECORD_VERSION = 1


class RecordError(RefusedAction):
    """A stored payload that is not an entry of the record (its message names the entry)."""


class EntryType(str, enum.Enum):
    """The kinds of entry a session's record holds."""

    SESSION_OPENED = "session_opened"
    NIBP = "nibp"
    BASELINE = "baseline"
    BP_DECISION = "bp_decision"
    PRE_DOSE_WAIVER = "pre_dose_waiver"
    INFUSION_STEP = "infusion_step"
    NASAL_DEVICE = "nasal_device"
    CLINICALLY_STABLE = "clinically_stable"
    DOSING_ENDED = "dosing_ended"
    ASSESSMENT = "assessment"
    EVENT = "event"
    CORRECTION = "correction"
    CONCOMITANT_MEDICATIONS = "concomitant_medications"
    ESCORT = "escort"
    SESSION_ABORTED = "session_aborted"
    SESSION_CLOSED = "session_closed"
    ALARM_LIMITS = "alarm_limits"
    CLOCK_JUMP = "clock_jump"
    DEVICE_STATS = "device_stats"


#: Times as the record has always written them (``datetime.isoformat()`` of the UTC time).
IsoUtc = Annotated[UtcDatetime, PlainSerializer(lambda v: v.isoformat(), return_type=str, when_used="json")]


class EntryBase(BaseModel):
    """The envelope every entry has (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Fields left out of the payload when None / False (added after entries were first recorded).
    _OMIT_EMPTY: ClassVar[tuple[str, ...]] = ()

    seq: int | None = None
    t: IsoUtc
    by: Actor | None = None

    @property
    def entry_type(self) -> EntryType:
        """The entry's type."""
        return EntryType(getattr(self, "type"))

    def to_payload(self) -> dict[str, Any]:
        """The JSON object the store keeps for this entry."""
        data = self.model_dump(mode="json")
        if data.get("seq") is None:
            data.pop("seq", None)
        for key in self._OMIT_EMPTY:
            if data.get(key) in (None, False):
                data.pop(key, None)
        return data


class SessionOpened(EntryBase):
    """The first entry: the session, patient, plan and the clinic settings in force (their payloads,
    checked when applied), and the local date at the chair (for the patient's age)."""

    type: Literal[EntryType.SESSION_OPENED] = EntryType.SESSION_OPENED
    session_id: str
    local_date: str | None = None
    protocol: str
    patient: dict[str, Any]
    plan: dict[str, Any]
    settings: dict[str, Any]


class NibpEntry(EntryBase):
    """A blood-pressure reading (mmHg), from the device or entered by hand."""

    type: Literal[EntryType.NIBP] = EntryType.NIBP
    sys: float
    dia: float
    mean: float | None = None
    source: Literal["device", "manual"] = "manual"


class BaselineEntry(EntryBase):
    """Baseline values (vital key → value): computed when dosing starts (``manual`` False, with how
    each was obtained in ``methods``) or entered by hand (``manual`` True, optional ``note``)."""

    type: Literal[EntryType.BASELINE] = EntryType.BASELINE
    values: dict[str, Any]
    methods: dict[str, str] | None = None
    manual: bool = False
    note: str | None = None


class BpDecisionEntry(EntryBase):
    """The decision on a pre-dose BP advisory: "proceed" or "defer" (checked when applied), with a note."""

    type: Literal[EntryType.BP_DECISION] = EntryType.BP_DECISION
    decision: str
    note: str | None = None


class PreDoseWaiver(EntryBase):
    """Dosing without the pre-dose checks (unattended recording), with the reason."""

    type: Literal[EntryType.PRE_DOSE_WAIVER] = EntryType.PRE_DOSE_WAIVER
    reason: str | None = None


class InfusionStepEntry(EntryBase):
    """One infusion step: ``action`` start / pause / resume / rate_change / stop, the rate (mg/h) of a
    start or rate change, the reason, and the confirmation of a rate far above the plan's."""

    _OMIT_EMPTY: ClassVar[tuple[str, ...]] = ("high_rate_reason",)
    type: Literal[EntryType.INFUSION_STEP] = EntryType.INFUSION_STEP
    action: str
    rate_mg_per_h: float | None = None
    reason: str | None = None
    high_rate_reason: str | None = None


class NasalDeviceEntry(EntryBase):
    """An esketamine nasal device taken (its number, 1-based)."""

    type: Literal[EntryType.NASAL_DEVICE] = EntryType.NASAL_DEVICE
    number: int


class ClinicallyStableEntry(EntryBase):
    """A clinician's "clinically stable" sign-off (a signature: ``by``, ``t``, ``meaning``, note)."""

    type: Literal[EntryType.CLINICALLY_STABLE] = EntryType.CLINICALLY_STABLE
    meaning: str
    note: str | None = None


class DosingEnded(EntryBase):
    """Esketamine dosing ended before every planned device, with the reason."""

    type: Literal[EntryType.DOSING_ENDED] = EntryType.DOSING_ENDED
    reason: str | None = None


class AssessmentEntry(EntryBase):
    """A charted assessment (its payload: ``monitor.assessments``)."""

    type: Literal[EntryType.ASSESSMENT] = EntryType.ASSESSMENT
    assessment: dict[str, Any]


class EventEntry(EntryBase):
    """A charted event (its payload: ``monitor.assessments``). ``late``: charted after the session
    ended (a late entry: no ``seq``; the store keeps its reason)."""

    _OMIT_EMPTY: ClassVar[tuple[str, ...]] = ("late",)
    type: Literal[EntryType.EVENT] = EntryType.EVENT
    event: dict[str, Any]
    late: bool = False


class Correction(EntryBase):
    """An earlier assessment, event or BP reading marked entered-in-error (``refers_to`` its seq),
    with the reason, and optionally a ``replacement`` record of the same kind."""

    type: Literal[EntryType.CORRECTION] = EntryType.CORRECTION
    refers_to: int | None = None
    reason: str | None = None
    replacement: dict[str, Any] | None = None


class ConcomitantMedications(EntryBase):
    """The REMS concomitant-medication questions (yes/no each) and other medications (free text)."""

    type: Literal[EntryType.CONCOMITANT_MEDICATIONS] = EntryType.CONCOMITANT_MEDICATIONS
    medications: dict[str, Any] = Field(default_factory=dict)
    other: str | None = None


class EscortEntry(EntryBase):
    """An adult escort is present (optional name)."""

    type: Literal[EntryType.ESCORT] = EntryType.ESCORT
    escort_name: str | None = None


class SessionAborted(EntryBase):
    """The session ended without discharge, with the reason."""

    type: Literal[EntryType.SESSION_ABORTED] = EntryType.SESSION_ABORTED
    reason: str | None = None


class SessionClosed(EntryBase):
    """Discharge and close: the signature (``by``, ``t``, ``printed_name``, ``meaning``), the discharge
    check at that moment and, when criteria were unmet, the override reason."""

    type: Literal[EntryType.SESSION_CLOSED] = EntryType.SESSION_CLOSED
    meaning: str = ""
    printed_name: str | None = None
    discharge: dict[str, Any] | None = None
    override_reason: str | None = None


class AlarmLimitsEntry(EntryBase):
    """The alarm profile in force for the session, whole (``profile``, its JSON payload) with its
    ``sha256`` (``monitor.alarms.profile.profile_fingerprint``): recorded when the session starts
    and whenever its limits change. ``source``: "clinic default" (the clinic's profile as it is) or
    "changed at the chair" (``changes``: each limit changed by this entry, ``RULE.PRIORITY`` → value)."""

    _OMIT_EMPTY: ClassVar[tuple[str, ...]] = ("changes",)
    type: Literal[EntryType.ALARM_LIMITS] = EntryType.ALARM_LIMITS
    source: Literal["clinic default", "changed at the chair"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    profile: dict[str, Any]
    changes: dict[str, float] | None = None


class ClockJumpEntry(EntryBase):
    """The computer's wall clock jumped (recorded by Vigil, ``by`` None): the wall clock minus the
    record's timeline went from ``offset_before_s`` to ``offset_after_s`` seconds at ``t``. The
    record's times stay on the monotonic timeline (``drivers.timebase``); what the wall clock said
    for a later time is that time plus the offset in force. Recorded at the start of a session
    too when the offset is already not zero (``offset_before_s`` 0: the timeline's start)."""

    type: Literal[EntryType.CLOCK_JUMP] = EntryType.CLOCK_JUMP
    offset_before_s: float
    offset_after_s: float


class DeviceStatsEntry(EntryBase):
    """What the device's decoder did with its input since the session started (recorded by Vigil,
    ``by`` None, when the counts of rejected input change): ``source`` names the device; counts
    of bytes received, frames decoded, frames rejected (failed a check: line noise, a wrong
    setting), bytes skipped (belonging to no frame) and decoder errors (a fault in Vigil's own
    decoding, the link was restarted)."""

    type: Literal[EntryType.DEVICE_STATS] = EntryType.DEVICE_STATS
    source: str
    bytes_in: int = Field(ge=0)
    frames_decoded: int = Field(ge=0)
    frames_rejected: int = Field(ge=0)
    bytes_skipped: int = Field(ge=0)
    decoder_errors: int = Field(default=0, ge=0)


Entry = Annotated[
    Union[SessionOpened, NibpEntry, BaselineEntry, BpDecisionEntry, PreDoseWaiver, InfusionStepEntry,
          NasalDeviceEntry, ClinicallyStableEntry, DosingEnded, AssessmentEntry, EventEntry, Correction,
          ConcomitantMedications, EscortEntry, SessionAborted, SessionClosed, AlarmLimitsEntry, ClockJumpEntry,
          DeviceStatsEntry],
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(cast(Any, Entry))  # (a discriminated union, not a class)

#: The store table (``table_kind``) each entry type goes to.
STORE_TABLE: dict[EntryType, str] = {
    EntryType.INFUSION_STEP: "infusion_step", EntryType.NASAL_DEVICE: "device_log",
    EntryType.ASSESSMENT: "assessment", EntryType.EVENT: "event", EntryType.CLINICALLY_STABLE: "signoff",
    EntryType.SESSION_CLOSED: "signoff", EntryType.SESSION_ABORTED: "signoff", EntryType.ESCORT: "signoff",
}


def parse_entry(payload: Any) -> Any:
    """The entry model of a stored payload (an entry model is returned as it is). A payload that is
    not an entry raises :class:`RecordError` naming its number and type and the first problem."""
    if isinstance(payload, EntryBase):
        return payload
    try:
        return _ADAPTER.validate_python(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if not str(p).startswith("function"))
        seq = payload.get("seq") if isinstance(payload, dict) else None
        kind = payload.get("type") if isinstance(payload, dict) else type(payload).__name__
        raise RecordError(f"Entry {seq} ({kind}) is damaged: {where or 'entry'}: {first.get('msg')}") from None


def entry_kind(entry: EntryBase) -> str:
    """The specific kind of an entry for the store's ``kind`` column and the timeline: the
    assessment or event name, the infusion action, else the entry type."""
    if isinstance(entry, InfusionStepEntry):
        return entry.action
    if isinstance(entry, AssessmentEntry):
        return str(entry.assessment.get("kind") or "assessment")
    if isinstance(entry, EventEntry):
        return str(entry.event.get("kind") or "event")
    return entry.entry_type.value


def entry_time(entry: EntryBase) -> datetime:
    """The entry's clinical time (aware UTC)."""
    return entry.t
