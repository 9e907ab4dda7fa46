"""What a consumer outside the chair sees of a session: :func:`snapshot_from_state`.

Pure: it reads a :class:`~monitor.session.SessionState` (never changes it) at a time passed in.
The recording pipeline will call it; until then the window and ``vigil record`` do.
"""

from __future__ import annotations

import re
from datetime import datetime

from monitor.app.listeners import SessionSnapshot
from monitor.protocols import MG_PER_DEVICE
from monitor.schedule import due_items, next_nibp_due
from monitor.session import SessionState
from monitor.settings import ClinicSettings
from monitor.staff import ensure_utc

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def patient_initials(display_name: str) -> str:
    """Initials of a display name, one per word, with full stops: "Ann-Marie van Dyke" → "A.M.V.D.".
    A name with no letters gives "?"."""
    letters = [w[0].upper() for w in _WORD.findall(display_name or "")]
    return "".join(f"{c}." for c in letters[:4]) or "?"


def _session_number(session_id: str) -> int:
    """The store's session number from the record's id ("S-12" → 12; 0 when it has none)."""
    digits = re.search(r"(\d+)$", session_id or "")
    return int(digits.group(1)) if digits else 0


def snapshot_from_state(state: SessionState, now: datetime, settings: ClinicSettings) -> SessionSnapshot:
    """The session ``state`` at ``now`` (aware; a naive time raises ``RefusedAction``) as a
    :class:`SessionSnapshot`: patient initials always, the display name only when
    ``settings.board.show_patient_names``; delivered and planned dose in mg (IV: the infusion
    log's integral; esketamine: 28 mg per device logged); the next NIBP and the next other
    scheduled item."""
    now = ensure_utc(now, "snapshot time")
    if state.infusion is not None:
        delivered = state.infusion.delivered_mg(now)
        planned = float(state.plan.dose_mg)
    elif state.devices is not None:
        delivered = float(state.devices.devices_logged * MG_PER_DEVICE)
        planned = float(state.plan.dose_mg)
    else:
        delivered = planned = 0.0
    nibp = next_nibp_due(state, now)
    other = next((item for item in due_items(state, now) if item.kind != "nibp"), None)
    name = state.patient.display_name
    return SessionSnapshot(
        session_id=_session_number(state.session_id), at=now,
        patient_initials=patient_initials(name),
        patient_name=name if settings.board.show_patient_names else "",
        protocol=state.protocol.value, phase=state.phase.value, opened_at=state.opened_at,
        dosing_started_at=state.dosing_started_at, dosing_ended_at=state.dosing_ended_at,
        discharge_earliest=state.discharge_earliest, dose_delivered_mg=round(delivered, 2),
        dose_planned_mg=round(planned, 2), next_nibp_at=nibp.due_at if nibp is not None else None,
        next_assessment=(other.label, other.due_at) if other is not None else None)
