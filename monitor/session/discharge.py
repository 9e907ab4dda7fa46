"""Discharge: the criteria a session must meet to close (see docs/sessions.md), checked at a time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from pydantic import BaseModel, ConfigDict

from drivers.model import NumericObservation
from monitor.protocols import EsketaminePlan, ProtocolKind
from monitor.staff import clock, ensure_utc

if TYPE_CHECKING:
    from monitor.session.state import SessionState


class DischargeCriterion(BaseModel):
    """One discharge criterion: ``key``, ``label``, ``met`` and ``detail`` (why). A ``hard``
    criterion cannot be overridden by anyone (the esketamine 2-hour rule)."""

    model_config = ConfigDict(frozen=True)

    key: str
    label: str
    met: bool
    detail: str
    hard: bool = False


class DischargeCheck(BaseModel):
    """Every discharge criterion at ``at``; :attr:`ok` when all are met."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    criteria: tuple[DischargeCriterion, ...]

    @property
    def ok(self) -> bool:
        """True when every criterion is met."""
        return all(c.met for c in self.criteria)

    @property
    def unmet(self) -> tuple[DischargeCriterion, ...]:
        """The criteria not met."""
        return tuple(c for c in self.criteria if not c.met)

    @property
    def unmet_hard(self) -> tuple[DischargeCriterion, ...]:
        """The criteria not met that no override can waive."""
        return tuple(c for c in self.criteria if not c.met and c.hard)

    def criterion(self, key: str) -> DischargeCriterion:
        """The criterion with ``key`` (KeyError if absent)."""
        for c in self.criteria:
            if c.key == key:
                return c
        raise KeyError(key)

    def text(self) -> str:
        """One line per criterion, "✓ label: detail" / "✗ label: detail"."""
        return "\n".join(f"{'✓' if c.met else '✗'} {c.label}: {c.detail}" for c in self.criteria)

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return self.model_dump(mode="json")


def post_dose_bp(state: "SessionState", now: datetime,
                 latest_vitals: Mapping[str, Any] | None = None) -> tuple[float, float, datetime] | None:
    """The latest BP ``(systolic, diastolic, time)`` taken after dosing ended (the infusion was
    stopped, or the last esketamine device), at or before ``now``; never a pre-dose reading. A newer
    reading in ``latest_vitals`` (vital → ``NumericObservation``) counts when it is after dosing too.
    None when dosing has not ended or no reading was taken since."""
    ended = state.dosing_ended_at
    if ended is None or ended > now:
        return None
    best: tuple[float, float, datetime] | None = None
    readings = [r for r in state.nibp_readings if ended <= r.t <= now]
    if readings:
        best = (readings[-1].sys, readings[-1].dia, readings[-1].t)
    if latest_vitals:
        sys_v, dia_v = latest_vitals.get("nibp_sys"), latest_vitals.get("nibp_dia")
        if isinstance(sys_v, NumericObservation) and isinstance(dia_v, NumericObservation) and \
                sys_v.value is not None and dia_v.value is not None and not sys_v.flagged and \
                sys_v.sample_time == dia_v.sample_time and ended <= sys_v.sample_time <= now and \
                (best is None or sys_v.sample_time >= best[2]):
            best = (sys_v.value, dia_v.value, sys_v.sample_time)
    return best


#: Alarm priorities that block discharge while active (physiological alarms only).
_BLOCKING = ("HIGH", "MEDIUM")


def discharge_check(state: "SessionState", now: datetime,
                    latest_vitals: Mapping[str, Any] | None = None,
                    active_alarms: Iterable[tuple[str, str, str]] | None = None) -> DischargeCheck:
    """Check every discharge criterion of ``state`` at ``now``.

    Criteria:

    * modified Aldrete (latest charted after dosing ended) ≥ the clinic minimum (9);
    * BP: the latest reading taken *after dosing ended* (:func:`post_dose_bp`; never the pre-dose
      one), at most 30 min old, within ±20 % of baseline systolic and diastolic, and below the
      clinic's ceiling (default 180/110) whatever the baseline;
    * time: IV, at least 60 min (clinic setting) since the infusion ended; esketamine, at least the
      monitoring period (≥ 120 min) since the first device — a *hard* criterion: no override, by
      anyone — and, at or after it, a clinician's "clinically stable" sign-off (both, not either);
    * no active HIGH or MEDIUM physiological alarm (``active_alarms``: ``(condition, priority name,
      kind)`` of the alarms active now; None when unknown, e.g. replaying an old record);
    * escort confirmed.

    ``latest_vitals`` maps vital keys to ``NumericObservation``; a newer post-dose NIBP there is used
    instead of the last recorded reading.
    """
    now = ensure_utc(now)
    s = state.settings
    criteria: list[DischargeCriterion] = []
    ended = state.dosing_ended_at if state.dosing_ended_at and state.dosing_ended_at <= now else None

    # modified Aldrete
    label = f"Modified Aldrete ≥ {s.discharge_aldrete_min}"
    if ended is None:
        criteria.append(DischargeCriterion(key="aldrete", label=label, met=False, detail="dosing has not ended"))
    else:
        charted = [c for c in state.charted("aldrete") if ended <= c.t <= now]
        if not charted:
            criteria.append(DischargeCriterion(key="aldrete", label=label, met=False,
                                               detail="no modified Aldrete charted since dosing ended"))
        else:
            last = charted[-1]
            ok = last.assessment.score >= s.discharge_aldrete_min
            criteria.append(DischargeCriterion(
                key="aldrete", label=label, met=ok,
                detail=f"{last.assessment.score} at {clock(last.t)}" + ("" if ok else f", below {s.discharge_aldrete_min}")))

    # BP after dosing, against baseline and the ceiling
    pct = s.discharge_bp_tolerance_pct
    ceiling = (s.discharge_bp_ceiling_sys_mmhg, s.discharge_bp_ceiling_dia_mmhg)
    label = f"BP after dosing within {pct} % of baseline, below {ceiling[0]}/{ceiling[1]}"
    base = state.baseline
    latest = post_dose_bp(state, now, latest_vitals)
    if ended is None:
        criteria.append(DischargeCriterion(key="bp", label=label, met=False, detail="dosing has not ended"))
    elif base is None or base.sys is None or base.dia is None:
        criteria.append(DischargeCriterion(key="bp", label=label, met=False, detail="no baseline BP"))
    elif latest is None:
        criteria.append(DischargeCriterion(key="bp", label=label, met=False,
                                           detail=f"no BP taken since dosing ended at {clock(ended)}: measure it"))
    else:
        sys_v, dia_v, t = latest
        age = (now - t).total_seconds() / 60
        d_sys = (sys_v - base.sys) / base.sys * 100
        d_dia = (dia_v - base.dia) / base.dia * 100
        within = abs(d_sys) <= pct and abs(d_dia) <= pct
        below = sys_v < ceiling[0] and dia_v < ceiling[1]
        detail = (f"{sys_v:.0f}/{dia_v:.0f} at {clock(t)} vs baseline {base.sys:.0f}/{base.dia:.0f} "
                  f"({d_sys:+.0f} % / {d_dia:+.0f} %)")
        if age > s.discharge_bp_max_age_min:
            criteria.append(DischargeCriterion(key="bp", label=label, met=False,
                                               detail=f"{detail}; older than {s.discharge_bp_max_age_min} min: measure again"))
        elif not below:
            criteria.append(DischargeCriterion(key="bp", label=label, met=False,
                                               detail=f"{detail}; at or above {ceiling[0]}/{ceiling[1]}"))
        else:
            criteria.append(DischargeCriterion(key="bp", label=label, met=within,
                                               detail=detail + ("" if within else f"; outside {pct} %")))

    # time
    if state.protocol is ProtocolKind.KETAMINE_IV:
        need = s.discharge_min_after_infusion_min
        label = f"≥ {need} min after the infusion ended"
        end = state.infusion.ended_at if state.infusion else None
        if end is None or end > now:
            criteria.append(DischargeCriterion(key="time", label=label, met=False, detail="the infusion has not been stopped"))
        else:
            since = (now - end).total_seconds() / 60
            ok = since >= need
            detail = f"{int(since)} min since {clock(end)}" + ("" if ok else f"; not before {clock(end + timedelta(minutes=need))}")
            criteria.append(DischargeCriterion(key="time", label=label, met=ok, detail=detail))
    else:
        devices = state.devices
        plan = state.plan
        assert isinstance(plan, EsketaminePlan), "the session's plan is of its protocol (SessionState opens them so)"
        need = plan.monitoring_min
        label = f"≥ {need} min from the first device (no exception)"
        first = devices.first_device_at if devices else None
        if first is None or first > now:
            criteria.append(DischargeCriterion(key="time", label=label, met=False, hard=True,
                                               detail="no nasal device logged"))
        else:
            since = (now - first).total_seconds() / 60
            if since >= need:
                criteria.append(DischargeCriterion(key="time", label=label, met=True, hard=True,
                                                   detail=f"{int(since)} min since {clock(first)}"))
            else:
                criteria.append(DischargeCriterion(
                    key="time", label=label, met=False, hard=True,
                    detail=f"{int(since)} min since {clock(first)}; not before {clock(first + timedelta(minutes=need))}: "
                           "the REMS monitoring period applies to everyone"))
        sig = devices.signoff if devices else None
        label = "Clinically stable (clinician's sign-off)"
        if sig is not None and sig.t <= now:
            criteria.append(DischargeCriterion(key="clinically_stable", label=label, met=True,
                                               detail=f"signed by {sig.printed_name} at {clock(sig.t)}"))
        else:
            criteria.append(DischargeCriterion(key="clinically_stable", label=label, met=False,
                                               detail="a clinician must sign that the patient is clinically stable"))

    # active alarms
    if active_alarms is not None:
        blocking = sorted({(p, c) for c, p, kind in active_alarms if kind == "physiological" and p in _BLOCKING},
                          key=lambda pc: (_BLOCKING.index(pc[0]), pc[1]))
        label = "No active HIGH or MEDIUM physiological alarm"
        criteria.append(DischargeCriterion(
            key="alarms", label=label, met=not blocking,
            detail="none" if not blocking else "active: " + ", ".join(f"{c} ({p})" for p, c in blocking)))

    # escort
    escort = state.escort
    if escort is not None and escort[0] <= now:
        who = f" ({escort[2]})" if escort[2] else ""
        criteria.append(DischargeCriterion(key="escort", label="Escort confirmed", met=True,
                                           detail=f"confirmed by {escort[1].display_name} at {clock(escort[0])}{who}"))
    else:
        criteria.append(DischargeCriterion(key="escort", label="Escort confirmed", met=False, detail="not confirmed"))
    return DischargeCheck(at=now, criteria=tuple(criteria))
