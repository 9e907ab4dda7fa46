"""The session as every exporter sees it: one read of the store, shaped into rows, through a privacy filter.

:func:`load_session` reads a session once (record, charted entries, alarms, gaps, conditions) and
builds a :class:`SessionView`: the patient, plan, staff and signature, and lists of rows
(assessments, events, infusion steps, nasal devices, NIBP readings, other charted facts, alarms with
who acknowledged them, phases, discharge criteria). Bulk data is read lazily: a vital's arrays once,
on first use; observation rows and waveform blocks as iterators, a chunk or a block at a time, so an
export of a 24-hour session never holds its waveforms or its rows whole.

Every time, person, free-text field and device name in the view has passed through the view's
:class:`~monitor.app.privacy.Privacy`, so a writer that reads only the view cannot leak what a
de-identified export must not show. The view never writes anything.

Rows are built from the stored entry payloads (the session domain's envelopes: see
:mod:`monitor.session`), with corrections applied: a corrected assessment, event or BP reading is
kept and marked "entered in error", its replacement follows at the original clinical time. The
session is also replayed (:meth:`SessionState.from_entries`) for what only the domain computes
(discharge check, baseline, age); a record that does not replay still exports, without those.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any

import numpy as np

from drivers.catalogue import CATALOGUE, VITAL_KEYS
from drivers.model import Quality
from monitor.app.privacy import DEIDENTIFIED, Privacy, SafeHarbor
from monitor.app.progress import Progress
from monitor.app.provenance import import_label, import_marker
from monitor.assessments import Assessment, parse_assessment, parse_event
from monitor.display import MEDICATION_NAMES, VITAL_NAMES, condition_label, display_name
from monitor.patient import age_on
from monitor.protocols import MG_PER_DEVICE, ProtocolKind
from monitor.settings import ClinicSettings
from monitor.store import (
    QUALITY_BITS,
    Block,
    NotFoundError,
    ObservationRows,
)
from monitor.store.reader import StoreReader

log = logging.getLogger(__name__)

__all__ = [
    "OBSERVATION_CHUNK", "FLAGGED_BITS", "PatientView", "ChartRow", "InfusionRow", "DeviceRow", "NibpRow",
    "NoteRow", "AlarmActionRow", "AlarmLimitsRow", "ACTION_LABELS", "AlarmView", "PhaseSpan", "Criterion",
    "SignatureView", "SessionView",
    "load_session",
]

#: Quality bits that make a value unusable for statistics and trends (all but SIMULATED and MANUAL).
FLAGGED_BITS = sum(bit for flag, bit in QUALITY_BITS.items() if flag not in (Quality.SIMULATED, Quality.MANUAL))
#: Observation rows read at a time by :meth:`SessionView.iter_observation_rows` (small enough that
#: formatting one chunk in C, holding the GIL, never stalls the window for long).
OBSERVATION_CHUNK = 10_000
_SEX = {"female": "female", "male": "male", "other": "other"}


# ----------------------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class PatientView:
    """The patient as exported. ``name``/``mrn``/``date_of_birth`` are None when de-identified;
    ``display`` is the name or "De-identified"; ``age`` is text ("90+" above 89 when de-identified)."""

    name: str | None
    display: str
    mrn: str | None
    date_of_birth: date | None
    age: str | None
    sex: str
    weight_kg: float | None
    known_hypertension: bool
    prior_sessions: int | None


@dataclass(frozen=True)
class ChartRow:
    """An assessment or event on the chart. ``summary`` is built from coded fields only; ``detail``
    is the free text (comment, note; None when de-identified). ``status``: "current", "entered in
    error" (corrected later) or "correction" (a replacement at the original time). ``late``: charted
    after the session ended (a late entry), at ``recorded_at``, for ``late_reason`` (None when
    de-identified)."""

    t: datetime
    category: str
    kind: str
    title: str
    score: float | None
    summary: str
    detail: str | None
    by: str
    seq: int | None
    status: str = "current"
    fields: dict[str, Any] = field(default_factory=dict)
    correction: str | None = None
    late: bool = False
    late_reason: str | None = None
    recorded_at: datetime | None = None


@dataclass(frozen=True)
class InfusionRow:
    """An IV infusion step with the dose delivered up to it (mg)."""

    t: datetime
    action: str
    rate_mg_per_h: float | None
    reason: str | None
    by: str
    delivered_mg: float


@dataclass(frozen=True)
class DeviceRow:
    """An esketamine nasal device taken."""

    t: datetime
    number: int
    dose_mg: float
    by: str


@dataclass(frozen=True)
class NibpRow:
    """A blood-pressure reading (mmHg). ``source`` "device" or "manual"."""

    t: datetime
    sys: float
    dia: float
    mean: float | None
    source: str
    by: str
    status: str = "current"


@dataclass(frozen=True)
class NoteRow:
    """Any other charted fact (BP decision, waiver, escort, sign-off, concomitant medications…)."""

    t: datetime
    kind: str
    title: str
    summary: str
    detail: str | None
    by: str


@dataclass(frozen=True)
class AlarmLimitsRow:
    """An alarm profile recorded for the session: when, by whom, where from ("clinic default" or
    "changed at the chair"), its SHA-256 fingerprint, and the limits that entry changed."""

    t: datetime
    source: str
    sha256: str
    changes: dict[str, float]
    by: str


#: What each stored alarm action means, for people.
ACTION_LABELS = {"acknowledge": "acknowledged", "reset": "reset (latched alarm cleared)", "escalate": "escalated",
                 "deescalate": "de-escalated", "audio_pause": "audio paused",
                 "audio_pause_cancel": "audio pause cancelled", "audio_pause_end": "audio pause ended"}
_SECONDS = re.compile(r"^(\d{1,5}(?:\.\d+)?) s$")


@dataclass(frozen=True)
class AlarmActionRow:
    """An action on an alarm, or on the alarm audio as a whole: acknowledge, audio pause (``detail``
    its length, "120 s"), the end of a pause ("audio_pause_end" when it ran its time,
    "audio_pause_cancel" when a user ended it), escalate (``detail`` the new priority)…; ``user``
    as exported (None for what Vigil did itself)."""

    t: datetime
    action: str
    user: str | None
    detail: str

    @property
    def label(self) -> str:
        """"audio paused", "audio pause ended", "acknowledged"…"""
        return ACTION_LABELS.get(self.action, self.action.replace("_", " "))

    @property
    def pause_s(self) -> float | None:
        """The length asked for by an audio pause, seconds (None for other actions)."""
        match = _SECONDS.match(self.detail) if self.action == "audio_pause" else None
        return float(match.group(1)) if match else None


@dataclass(frozen=True)
class AlarmView:
    """An alarm of the log with the actions taken on it; ``number`` counts from 1 in start order."""

    number: int
    condition: str
    label: str
    kind: str
    priority: str
    max_priority: str
    start: datetime
    end: datetime | None
    limit: float | None
    value: float | None
    message: str
    actions: tuple[AlarmActionRow, ...]

    @property
    def acknowledged(self) -> AlarmActionRow | None:
        """The first acknowledgement, if any."""
        return next((a for a in self.actions if a.action == "acknowledge"), None)


@dataclass(frozen=True)
class PhaseSpan:
    """A phase of the session (baseline, dosing, recovery) from ``start`` to ``end``."""

    key: str
    label: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Criterion:
    """A discharge criterion: label, met, detail (None when de-identified: details name times and staff)."""

    label: str
    met: bool
    detail: str | None


@dataclass(frozen=True)
class SignatureView:
    """The closing signature: printed name (a role when de-identified), time, meaning."""

    name: str
    t: datetime
    meaning: str
    status: str


# ----------------------------------------------------------------------------------------- view
@dataclass
class SessionView:
    """One session, ready to export (see the module docstring). Times are aware UTC datetimes, shifted
    when de-identified; ``epoch`` arrays are float64 seconds, shifted likewise."""

    store: StoreReader
    session_id: int
    privacy: Privacy
    label: str
    protocol: ProtocolKind | None
    protocol_key: str
    protocol_label: str
    status: str
    start: datetime
    end: datetime
    closed_at: datetime | None
    patient: PatientView
    plan: dict[str, Any]
    plan_text: str
    planned_dose_mg: float | None
    lot_number: str | None
    settings: ClinicSettings
    clinic_name: str
    clinic_address: str
    device: str
    opened_by: str
    signature: SignatureView | None
    assessments: list[ChartRow]
    events: list[ChartRow]
    infusion: list[InfusionRow]
    devices: list[DeviceRow]
    nibp: list[NibpRow]
    notes: list[NoteRow]
    alarms: list[AlarmView]
    system_actions: list[AlarmActionRow]
    gaps: list[tuple[datetime, datetime, str]]
    phases: list[PhaseSpan]
    discharge: list[Criterion]
    discharge_source: str
    concomitant: dict[str, bool] | None
    concomitant_other: str | None
    baseline: dict[str, float]
    dosing_start: datetime | None
    dosing_end: datetime | None
    delivered_mg: float | None
    state: Any = None
    replay_error: str | None = None
    staff: dict[str, tuple[str, str]] = field(default_factory=dict)
    alarm_limits: list[AlarmLimitsRow] = field(default_factory=list)
    #: Where the bulk reads report to (and may be cancelled from): see :class:`Progress`.
    progress: Progress = field(default_factory=Progress, repr=False)
    #: Where the session came from when it was not recorded here ("Imported from … by … on …"), else None.
    imported: str | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def alarm_limits_text(self) -> str:
        """One line on the alarm profile in force at the end: "clinic default" or "changed at the
        chair" (how many changes), and its SHA-256 (in four groups of 16 hex digits, so that it
        wraps); "not recorded" for a session recorded before Vigil kept it."""
        if not self.alarm_limits:
            return "not recorded (session recorded before Vigil kept its alarm profile)"
        last = self.alarm_limits[-1]
        changes = sum(1 for row in self.alarm_limits if row.changes)
        more = f" ({changes} change{'s' if changes != 1 else ''})" if changes else ""
        sha = " ".join(last.sha256[i:i + 16] for i in range(0, len(last.sha256), 16))
        return f"{last.source}{more}, profile SHA-256 {sha}"

    @property
    def verified(self) -> str:
        """One line: the record checked against its audit trail now (``vigil verify SESSION``), for an
        export's notice. Computed on first use (it reads the whole session)."""
        if "verified" not in self._cache:
            check = getattr(self.store, "verify_session", None)
            self._cache["verified"] = (check(self.session_id).summary() if check is not None else
                                       "Record checked by the clinic record when it arrived from its chair "
                                       "(see its flags in vigil sessions)")
        return str(self._cache["verified"])

    @property
    def record_notice(self) -> list[str]:
        """What every export says of the record: the verification at export, and where an imported
        session came from (only that it was imported, when de-identified)."""
        lines = [self.verified]
        if self.imported:
            lines.append("Imported from an archive" if self.deidentified else self.imported)
        return lines

    # ------------------------------------------------------------------ small helpers
    @property
    def deidentified(self) -> bool:
        """True when the export is de-identified."""
        return self.privacy.deidentified

    @property
    def is_open(self) -> bool:
        """True while the session is still being recorded (the export is a snapshot)."""
        return self.status == "open"

    def user(self, login: str | None) -> str | None:
        """A login as exported: the person's printed name, or their role when de-identified."""
        if login is None:
            return None
        name, role = self.staff.get(login, (login, ""))
        return self.privacy.person(name, role)

    def elapsed(self, t: datetime) -> float:
        """Seconds from the session start to ``t``."""
        return (t - self.start).total_seconds()

    @property
    def start_epoch(self) -> float:
        """Session start, epoch s (as exported)."""
        return self.start.timestamp()

    @property
    def end_epoch(self) -> float:
        """Session end, epoch s (as exported)."""
        return self.end.timestamp()

    # ------------------------------------------------------------------ bulk data
    @property
    def vitals(self) -> list[str]:
        """Vitals with at least one stored observation, in catalogue order."""
        return [k for k in VITAL_KEYS if len(self.numeric(k)[0])]

    def iter_observation_rows(self) -> Iterator[ObservationRows]:
        """Every observation row in time order, :data:`OBSERVATION_CHUNK` rows at a time (times
        shifted, sources and device times through the privacy filter): a long session is never held
        whole."""
        p = self.privacy
        names: dict[str, str] = {}
        for raw in self.store.iter_observation_rows(self.session_id, OBSERVATION_CHUNK):
            if p.deidentified:
                for s in dict.fromkeys(raw.source):
                    if s not in names:
                        names[s] = p.source(s)
                raw = raw._replace(t=p.times(raw.t), source=[names[s] for s in raw.source],
                                   device_time=[None] * len(raw.t))
            self.progress.at(float(raw.t[-1]))
            yield raw

    def numeric(self, vital: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(t, value, quality bits)`` of one vital in time order (t exported epoch s, value NaN where
        the device sent none); read once per view (24 bytes a row)."""
        key = f"numeric:{vital}"
        if key not in self._cache:
            self.progress.at()
            t, v, q = self.store.numerics(self.session_id, vital, with_quality=True)
            self._cache[key] = (self.privacy.times(t) if self.privacy.deidentified else t, v, q)
        return self._cache[key]

    def valid(self, vital: str) -> tuple[np.ndarray, np.ndarray]:
        """``(t, value)`` of one vital without missing or flagged values (artifact, sensor off…)."""
        key = f"valid:{vital}"
        if key not in self._cache:
            t, v, q = self.numeric(vital)
            ok = ~np.isnan(v) & ((q & FLAGGED_BITS) == 0)
            self._cache[key] = (t[ok], v[ok])
        return self._cache[key]

    def iter_waveform_blocks(self, channel: str | None = None) -> Iterator[Block]:
        """The stored waveform blocks (of one channel, or all) one at a time, in channel then time
        order (``t0`` shifted, source through the privacy filter; data as stored)."""
        p = self.privacy
        for b in self.store.iter_waveform_blocks(self.session_id, channel):
            t0 = p.time(b.t0)
            self.progress.at(t0)
            yield b._replace(t0=t0, source=p.source(b.source) if p.deidentified else b.source)

    @property
    def waveform_channels(self) -> list[str]:
        """Channels with stored samples, in catalogue order."""
        if "channels" not in self._cache:
            self._cache["channels"] = self.store.waveform_channels(self.session_id)
        return self._cache["channels"]

    def conditions(self) -> list[tuple[datetime, str, bool, str | None, str]]:
        """Device condition changes: ``(t, code, active, text, source)``."""
        if "conditions" not in self._cache:
            p = self.privacy
            self._cache["conditions"] = [(p.dt(c.time), c.code, c.active, p.text(c.text), p.source(c.source))
                                         for c in self.store.conditions(self.session_id)]
        return self._cache["conditions"]

    def chart(self) -> list[ChartRow]:
        """Assessments and events together, in time order."""
        return sorted(self.assessments + self.events, key=lambda r: (r.t, r.seq or 0))

    def late_text(self, row: ChartRow) -> str:
        """"late entry, charted 2026-11-29 10:05: reason" for a late entry (local clock; the date as
        :meth:`Privacy.date_text` gives it, so only the year when de-identified), else ""."""
        if not row.late:
            return ""
        when = ""
        if row.recorded_at is not None:
            when = f", charted {self.privacy.date_text(row.recorded_at)} {row.recorded_at.astimezone():%H:%M}"
        return f"late entry{when}" + (f": {row.late_reason}" if row.late_reason else "")


# ----------------------------------------------------------------------------------------- loading
def load_session(store: StoreReader, session_id: int, *, deidentify: bool = False,
                 privacy: Privacy | None = None) -> SessionView:
    """Read session ``session_id`` from ``store`` into a :class:`SessionView`.

    ``deidentify=True`` uses a fresh :class:`SafeHarbor` (one random offset for this view);
    ``privacy`` gives one explicitly. An unknown session (or an id that is not a whole number)
    raises :class:`~monitor.store.NotFoundError`.
    """
    if isinstance(session_id, bool) or not isinstance(session_id, int):
        raise NotFoundError(f"the session id must be a whole number, not {session_id!r}")
    try:
        record = store.get_session(session_id)
    except NotFoundError:
        raise NotFoundError(f"there is no session {session_id} in {store.path}") from None
    entries = store.entries(session_id, order="recorded")
    end = record.ended_at or store.last_data_time(session_id) or record.started_at
    end = max(end, record.started_at)
    if privacy is None:
        privacy = SafeHarbor(record.started_at, end) if deidentify else Privacy()
    return _Builder(store, record, entries, privacy, end).build()


class _Builder:
    def __init__(self, store: StoreReader, record: Any, entries: list[Any], privacy: Privacy, end: datetime) -> None:
        self.store, self.record, self.entries, self.p, self.raw_end = store, record, entries, privacy, end
        self.staff = _staff(store, record, entries)

    # people -----------------------------------------------------------------------------------
    def actor(self, by: Any, login: str | None = None) -> str:
        if isinstance(by, dict):
            return self.p.person(by.get("display_name") or by.get("username"), by.get("role"))
        if login:
            name, role = self.staff.get(login, (login, ""))
            return self.p.person(name, role)
        return "device"

    def login(self, login: str | None) -> str | None:
        if login is None:
            return None
        name, role = self.staff.get(login, (login, ""))
        return self.p.person(name, role)

    # ------------------------------------------------------------------------------------------
    def build(self) -> SessionView:
        p, record = self.p, self.record
        payloads = [e.payload for e in self.entries if e.amends is None]
        state, replay_error = _replay(payloads)
        settings = state.settings if state is not None else ClinicSettings()   # as the session was opened
        try:
            protocol: ProtocolKind | None = ProtocolKind(record.protocol)
        except ValueError:
            protocol = None
        plan = dict(record.plan)
        local_date = state.local_date if state is not None else record.started_at.astimezone().date()

        assessments, events, nibp, notes = self.chart_rows()
        infusion = self.infusion_rows(state)
        devices = [DeviceRow(p.dt(e.t), int(e.payload.get("number", i + 1)), float(MG_PER_DEVICE),
                             self.actor(e.payload.get("by"), e.user))
                   for i, e in enumerate(x for x in self.entries if x.payload.get("type") == "nasal_device"
                                         and x.amends is None)]
        if not nibp:
            nibp = self.nibp_from_numerics()

        # dose, dosing span and phases: the replayed domain's (times as exported)
        dosing_start = p.dt(state.dosing_started_at) if state is not None else None
        dosing_end = p.dt(state.dosing_ended_at) if state is not None else None
        closed_at = p.dt(record.ended_at)
        start, end = p.dt(record.started_at), p.dt(self.raw_end)
        phases = _phases(start, end, dosing_start, dosing_end, closed_at)
        delivered: float | None
        if state is not None and state.infusion is not None:
            delivered = round(float(state.infusion.delivered_mg(self.raw_end)), 6)
        elif state is not None and state.devices is not None:
            delivered = float(state.devices.devices_logged * MG_PER_DEVICE)
        else:
            delivered = 0.0 if protocol is not None and state is not None else None

        age = state.age_years if state is not None else None
        if age is None and isinstance(record.patient.get("date_of_birth"), str):
            try:
                age = age_on(date.fromisoformat(record.patient["date_of_birth"]), local_date)
            except ValueError:
                age = None
        patient = self.patient(record.patient, record.patient_name, age)

        concomitant, concomitant_other = None, None
        for e in self.entries:
            if e.payload.get("type") == "concomitant_medications" and e.amends is None:
                meds = e.payload.get("medications") or {}
                concomitant = {k: bool(v) for k, v in meds.items()}
                concomitant_other = p.text(e.payload.get("other"))

        discharge, discharge_source = self.discharge(state, record)
        signature = None
        if record.status != "open" and record.signed_name:
            _, role = self.staff.get(record.closed_by or "", (record.signed_name, ""))
            signature = SignatureView(p.person(record.signed_name, role), p.dt(record.ended_at),
                                      p.meaning(record.close_meaning), record.status)

        baseline = dict(record.baseline or {})
        if state is not None and state.baseline is not None:
            baseline = dict(state.baseline.values)
        baseline = {k: float(v) for k, v in baseline.items() if k in CATALOGUE and isinstance(v, (int, float))}

        alarms, system_actions = self.alarms()
        alarm_limits = [self.alarm_limits_row(e) for e in self.entries
                        if e.payload.get("type") == "alarm_limits" and e.amends is None]
        gaps = [(p.dt(g.start), p.dt(g.end), p.text(g.reason) or "not recording") for g in self.store.gaps(record.id)]

        if protocol is ProtocolKind.ESKETAMINE:
            planned = float(plan.get("dose_mg") or 0) or None
            lot = p.text(plan.get("lot_number"))  # typed from the carton: removed when de-identified
            plan_text = f"{plan.get('dose_mg')} mg esketamine nasal spray ({int(plan.get('dose_mg') or 0) // MG_PER_DEVICE} devices)"
            if lot:
                plan_text += f", lot {lot}"
        else:
            try:
                planned = float(plan["dose_mg_per_kg"]) * float(plan["weight_kg"])
                rate = planned / (float(plan.get("duration_min", 40)) / 60.0)
                plan_text = (f"{plan['dose_mg_per_kg']:g} mg/kg × {plan['weight_kg']:g} kg = {planned:.1f} mg IV ketamine "
                             f"over {float(plan.get('duration_min', 40)):g} min ({rate:.1f} mg/h)")
            except (KeyError, TypeError, ValueError):
                planned, plan_text = None, "—"
            lot = None

        label = "De-identified session" if p.deidentified else f"Session {record.id}"
        return SessionView(
            store=self.store, session_id=record.id, privacy=p, label=label, protocol=protocol,
            protocol_key=record.protocol, protocol_label=protocol.label if protocol else record.protocol,
            status=record.status, start=start, end=end, closed_at=closed_at, patient=patient, plan=plan,
            plan_text=plan_text, planned_dose_mg=planned, lot_number=lot, settings=settings,
            clinic_name=DEIDENTIFIED if p.deidentified else settings.clinic_name,
            clinic_address="" if p.deidentified else settings.clinic_address,
            device=p.device(record.device), opened_by=self.login(record.created_by) or "",
            signature=signature, assessments=assessments, events=events, infusion=infusion, devices=devices,
            nibp=nibp, notes=notes, alarms=alarms, system_actions=system_actions, gaps=gaps, phases=phases,
            discharge=discharge, discharge_source=discharge_source, concomitant=concomitant,
            concomitant_other=concomitant_other, baseline=baseline, dosing_start=dosing_start,
            dosing_end=dosing_end, delivered_mg=delivered, state=state, replay_error=replay_error, staff=self.staff,
            alarm_limits=alarm_limits, imported=import_label(self.store, self.record.id))

    # ------------------------------------------------------------------------------------------
    def alarm_limits_row(self, e: Any) -> AlarmLimitsRow:
        pl = e.payload
        t = self.p.dt(e.t)
        assert t is not None
        return AlarmLimitsRow(t, str(pl.get("source", "")), str(pl.get("sha256", "")),
                              {str(k): float(v) for k, v in (pl.get("changes") or {}).items()},
                              self.actor(pl.get("by"), e.user))

    def patient(self, payload: dict[str, Any], name: str, age: int | None) -> PatientView:
        p = self.p
        sex = _SEX.get(str(payload.get("sex", "")).lower(), "unknown")
        weight = payload.get("weight_kg")
        weight = float(weight) if isinstance(weight, (int, float)) and not isinstance(weight, bool) else None
        prior = payload.get("prior_sessions")
        prior = prior if isinstance(prior, int) and not isinstance(prior, bool) else None
        if p.deidentified:
            return PatientView(None, DEIDENTIFIED, None, None, p.age_text(age), sex, weight,
                               bool(payload.get("known_hypertension")), prior)
        dob = None
        if isinstance(payload.get("date_of_birth"), str):
            try:
                dob = date.fromisoformat(payload["date_of_birth"])
            except ValueError:
                dob = None
        mrn = payload.get("mrn") or self.record.patient_ref
        return PatientView(name or None, name or "(no name)", str(mrn) if mrn else None, dob, p.age_text(age), sex,
                           weight, bool(payload.get("known_hypertension")), prior)

    def chart_rows(self) -> tuple[list[ChartRow], list[ChartRow], list[NibpRow], list[NoteRow]]:
        p = self.p
        rows: dict[int, ChartRow] = {}
        nibp: dict[int, NibpRow] = {}
        notes: list[NoteRow] = []
        order: list[int] = []
        for e in self.entries:
            if e.amends is not None:
                continue
            pl = e.payload
            kind = pl.get("type")
            seq = pl.get("seq") if isinstance(pl.get("seq"), int) else -e.id
            t = p.dt(e.t)
            by = self.actor(pl.get("by"), e.user)
            if kind == "assessment" and isinstance(pl.get("assessment"), dict):
                rows[seq] = self.chart_row("assessment", pl["assessment"], t, by, seq)
                order.append(seq)
            elif kind == "event" and isinstance(pl.get("event"), dict):
                rows[seq] = self.chart_row("event", pl["event"], t, by, seq)
                if e.is_late:
                    rows[seq] = replace(rows[seq], late=True, late_reason=p.text(e.reason),
                                         recorded_at=p.dt(e.recorded_at))
                order.append(seq)
            elif kind == "nibp":
                try:
                    nibp[seq] = NibpRow(t, float(pl["sys"]), float(pl["dia"]),
                                        None if pl.get("mean") is None else float(pl["mean"]),
                                        str(pl.get("source", "manual")),
                                        "device" if pl.get("by") is None else self.actor(pl.get("by")))
                except (KeyError, TypeError, ValueError):
                    continue
            elif kind == "correction":
                target = pl.get("refers_to")
                reason = p.text(pl.get("reason"))
                replacement = pl.get("replacement")
                note = f"corrected by {by}" + (f": {reason}" if reason else "")
                if target in rows:
                    old = rows[target]
                    rows[target] = replace(old, status="entered in error", correction=note)
                    if isinstance(replacement, dict):
                        rows[seq] = replace(self.chart_row(old.category, replacement, old.t, by, seq),
                                             status="correction", correction=note)
                        order.append(seq)
                elif target in nibp:
                    old_r = nibp[target]
                    nibp[target] = replace(old_r, status="entered in error")
                    if isinstance(replacement, dict) and {"sys", "dia"} <= set(replacement):
                        try:
                            nibp[seq] = NibpRow(old_r.t, float(replacement["sys"]), float(replacement["dia"]),
                                                None if replacement.get("mean") is None else float(replacement["mean"]),
                                                "manual", by, "correction")
                        except (TypeError, ValueError):
                            pass
                notes.append(NoteRow(t, "correction", "Correction", f"entry {target} corrected", reason, by))
            elif kind in _NOTE_TITLES:
                notes.append(NoteRow(t, kind, _NOTE_TITLES[kind], self.note_summary(kind, pl), self.note_detail(kind, pl), by))
        for e in self.entries:  # store-level amendments (a corrected stored row, with its reason)
            if e.amends is not None:
                notes.append(NoteRow(p.dt(e.recorded_at), "amendment", "Amendment",
                                     f"{e.table_kind} entry amended", p.text(e.reason), self.login(e.user) or ""))
        chart = [rows[s] for s in order]
        assessments = sorted((r for r in chart if r.category == "assessment"), key=lambda r: (r.t, r.seq or 0))
        events = sorted((r for r in chart if r.category == "event"), key=lambda r: (r.t, r.seq or 0))
        notes.sort(key=lambda n: n.t)
        return assessments, events, sorted(nibp.values(), key=lambda r: r.t), notes

    def chart_row(self, category: str, payload: dict[str, Any], t: datetime, by: str, seq: int) -> ChartRow:
        p = self.p
        kind = str(payload.get("kind", "?"))
        try:
            model = parse_assessment(payload) if category == "assessment" else parse_event(payload)
        except (ValueError, TypeError):
            return ChartRow(t, category, kind, kind, None, kind, None, by, seq)
        title = type(model).title
        fields: dict[str, Any]
        if isinstance(model, Assessment):
            return ChartRow(t, category, kind, title, float(model.score), model.describe(), None, by, seq,
                            fields=model.model_dump(mode="json"))
        data = model.model_dump(mode="json")
        detail = None
        if kind == "note":
            summary, detail = "Note", p.text(data.get("text"))
            fields = {}
        elif kind == "rescue_medication":  # drug and "given by" are typed: free text
            given = p.person(data.get("given_by"), None) if not p.deidentified else "staff"
            drug = p.text(data["drug"])
            summary = (f"{drug or 'medication (name removed)'} {data['dose']:g} {data['dose_unit']} {data['route']}, "
                       f"given by {given}")
            detail = p.text(data.get("comment"))
            fields = {k: data[k] for k in ("dose", "dose_unit", "route")}
            if drug:
                fields["drug"] = drug
        else:
            summary = title + (f" ({data['severity']})" if data.get("severity") else "")
            detail = p.text(data.get("comment"))
            fields = {"severity": data.get("severity")}
        return ChartRow(t, category, kind, title, None, summary, detail, by, seq, fields=fields)

    def note_summary(self, kind: str, pl: dict[str, Any]) -> str:
        if kind == "bp_decision":
            return f"decision: {pl.get('decision')}"
        if kind == "baseline":
            values = pl.get("values") or {}
            parts = [f"{display_name(k, VITAL_NAMES)} {v:g}" for k, v in values.items()
                     if k in CATALOGUE and isinstance(v, (int, float))]
            return ("manual: " if pl.get("manual") else "computed: ") + (", ".join(parts) or "no values")
        if kind == "concomitant_medications":
            meds = pl.get("medications") or {}
            return ", ".join(f"{display_name(k, MEDICATION_NAMES)}: {'yes' if v else 'no'}" for k, v in meds.items())
        if kind in ("session_closed", "clinically_stable"):
            return self.p.meaning(str(pl.get("meaning", "")))
        if kind == "alarm_limits":
            changes = ", ".join(f"{k} {v:g}" for k, v in (pl.get("changes") or {}).items())
            return f"{pl.get('source')}{': ' + changes if changes else ''} (SHA-256 {str(pl.get('sha256'))[:12]}…)"
        return ""

    def note_detail(self, kind: str, pl: dict[str, Any]) -> str | None:
        p = self.p
        key = {"bp_decision": "note", "pre_dose_waiver": "reason", "dosing_ended": "reason", "escort": "escort_name",
               "session_aborted": "reason", "clinically_stable": "note", "session_closed": "override_reason",
               "baseline": "note"}.get(kind)
        return p.text(pl.get(key)) if key else None

    def infusion_rows(self, state: Any) -> list[InfusionRow]:
        """The replayed infusion's steps, each with the dose the domain says was delivered by then."""
        if state is None or state.infusion is None:
            return []
        p, log_ = self.p, state.infusion
        return [InfusionRow(p.dt(step.t), step.action.value, step.rate_mg_per_h, p.text(step.reason),
                            p.person(step.by.display_name or step.by.username, step.by.role.value),
                            round(float(log_.delivered_mg(step.t)), 6))
                for step in log_.steps]

    def nibp_from_numerics(self) -> list[NibpRow]:
        sys_t, sys_v, _ = self.store.numerics(self.record.id, "nibp_sys", with_quality=True)
        if not len(sys_t):
            return []
        dia_t, dia_v = self.store.numerics(self.record.id, "nibp_dia")
        mean_t, mean_v = self.store.numerics(self.record.id, "nibp_mean")
        dia = dict(zip(dia_t.tolist(), dia_v.tolist()))
        mean = dict(zip(mean_t.tolist(), mean_v.tolist()))
        out = []
        for t, s in zip(sys_t.tolist(), sys_v.tolist()):
            d = dia.get(t)
            if s != s or d is None or d != d:
                continue
            m = mean.get(t)
            out.append(NibpRow(self.p.dt(datetime.fromtimestamp(t, timezone.utc)), s, d,
                               None if m is None or m != m else m, "device", "device"))
        return out

    def alarms(self) -> tuple[list[AlarmView], list[AlarmActionRow]]:
        p = self.p
        out = []
        for i, a in enumerate(self.store.alarms(self.record.id), start=1):
            actions = tuple(AlarmActionRow(p.dt(x.t), x.action, self.login(x.user), x.detail if x.action in
                                           ("escalate", "deescalate") else "") for x in a.actions)
            label = condition_label(a.condition)
            message = a.message
            if p.deidentified:  # a message may quote an error text (a path…): the alarm's name instead
                message = label + (" (started before the session)" if a.started_at < self.record.started_at else "")
            out.append(AlarmView(i, a.condition, label, a.kind, a.priority, a.max_priority,
                                 p.dt(a.started_at), p.dt(a.ended_at), a.limit, a.value, message, actions))
        system = [AlarmActionRow(p.dt(x.t), x.action, self.login(x.user), _system_detail(x.action, x.detail))
                  for x in self.store.alarm_actions(self.record.id) if x.alarm_id is None]
        return out, system

    def discharge(self, state: Any, record: Any) -> tuple[list[Criterion], str]:
        p = self.p
        closed = next((e.payload for e in self.entries if e.payload.get("type") == "session_closed"
                       and e.amends is None), None)
        if closed is not None and isinstance(closed.get("discharge"), dict):
            crit = [Criterion(str(c.get("label", c.get("key", ""))), bool(c.get("met")), p.text(c.get("detail")))
                    for c in closed["discharge"].get("criteria", []) if isinstance(c, dict)]
            src = "as checked when the session was closed"
            if closed.get("override_reason") is not None or not all(c.met for c in crit):
                src += " (closed with unmet criteria by a charge nurse" + (
                    f": {p.text(closed.get('override_reason'))})" if p.text(closed.get("override_reason")) else ")")
            return crit, src
        if state is not None and state.dosing_ended_at is not None:
            from monitor.session import discharge_check
            at = record.ended_at or self.raw_end
            try:
                check = discharge_check(state, at, latest_vitals={})
            except Exception as exc:  # a record the check cannot read: say so, do not fail the export
                log.warning("discharge check of session %s failed: %s", record.id, exc)
                return [], "not available"
            return ([Criterion(c.label, c.met, p.text(c.detail)) for c in check.criteria],
                    "evaluated from the record at the end of the session")
        return [], "not evaluated (dosing did not end)"


def _system_detail(action: str, detail: str) -> str:
    """What an action on the whole alarm audio keeps of its stored detail: an audio pause's length
    ("120 s", written by the alarm engine; anything else is dropped as text)."""
    return detail if action == "audio_pause" and _SECONDS.match(detail or "") else ""


_NOTE_TITLES = {
    "bp_decision": "Pre-dose BP decision", "pre_dose_waiver": "Pre-dose check waived", "baseline": "Baseline",
    "escort": "Escort confirmed", "clinically_stable": "Clinically stable sign-off", "dosing_ended": "Dosing ended early",
    "concomitant_medications": "Concomitant medications", "session_closed": "Session closed",
    "session_aborted": "Session ended without discharge", "session_opened": "Session opened",
    "alarm_limits": "Alarm limits",
}


def _replay(payloads: list[dict[str, Any]]) -> tuple[Any, str | None]:
    """The session replayed from its entries (late entries included: the domain takes them), and
    None or why it does not replay; a record damaged part-way replays up to the damage (the longest
    prefix that does), so its export still shows what came before."""
    from monitor.session import SessionState
    try:
        return SessionState.from_entries(payloads), None
    except Exception as exc:  # the export still works, with what replays
        error = str(exc)
    good, bad = 0, len(payloads)   # payloads[:good] replays (or good == 0), payloads[:bad] does not
    state = None
    while bad - good > 1:
        mid = (good + bad) // 2
        try:
            state, good = SessionState.from_entries(payloads[:mid]), mid
        except Exception:
            bad = mid
    return state, error


def _staff(store: StoreReader, record: Any, entries: list[Any]) -> dict[str, tuple[str, str]]:
    """login → (printed name, role) of everyone the session's record mentions (author, signer, whoever
    charted, acted on an alarm or appears in its audit rows): from the archive an imported session
    came from, else from the actors recorded in the entries, else from the store's accounts."""
    marker = import_marker(store, record.id)
    mentioned = {record.created_by, record.closed_by} | {e.user for e in entries}
    mentioned |= {a.user for a in store.alarm_actions(record.id)} | {r.user for r in store.audit_rows(record.id)}
    if marker is not None and isinstance(marker.payload.get("audit"), list):
        mentioned |= {r.get("user") for r in marker.payload["audit"] if isinstance(r, dict)}
    staff: dict[str, tuple[str, str]] = {}
    for user in store.list_users():
        staff[user.login] = (user.display_name, user.role)
    for e in entries:
        by = e.payload.get("by")
        if isinstance(by, dict) and by.get("username"):
            mentioned.add(str(by["username"]))
            staff[str(by["username"])] = (str(by.get("display_name") or by["username"]), str(by.get("role") or ""))
    if marker is not None and isinstance(marker.payload.get("staff"), dict):
        for login, info in marker.payload["staff"].items():
            if isinstance(info, dict):
                staff[login] = (str(info.get("display_name") or login), str(info.get("role") or ""))
    return {login: who for login, who in staff.items() if login in mentioned}


def _phases(start: datetime, end: datetime, dosing_start: datetime | None, dosing_end: datetime | None,
            closed: datetime | None) -> list[PhaseSpan]:
    out = []
    last = closed or end
    if dosing_start is None:
        return [PhaseSpan("baseline", "Baseline", start, last)]
    out.append(PhaseSpan("baseline", "Baseline", start, dosing_start))
    out.append(PhaseSpan("dosing", "Dosing", dosing_start, dosing_end or last))
    if dosing_end is not None:
        out.append(PhaseSpan("recovery", "Recovery", dosing_end, max(last, dosing_end)))
    return [ph for ph in out if ph.end >= ph.start]
