"""The session: one patient's monitored treatment, as a typed record and the rules applied to it.

* :mod:`.record` — the schema of a session's record: :class:`EntryType` and one model per entry;
* :mod:`.state` — :class:`SessionState`, the aggregate built by the nurse's actions and rebuilt by
  replaying the record;
* :mod:`.phases`, :mod:`.readings`, :mod:`.discharge` — phases and refusals; NIBP readings, the
  pre-dose BP and the baseline; the discharge criteria.

Protocols, schedules, assessments and patients are :mod:`monitor.protocols`, :mod:`monitor.schedule`,
:mod:`monitor.assessments` and :mod:`monitor.patient`.
"""

from monitor.session.discharge import (
    DischargeCheck,
    DischargeCriterion,
    discharge_check,
    post_dose_bp,
)
from monitor.session.phases import (
    ALLOWED_TRANSITIONS,
    Phase,
    DosingDuringAlarm,
    PhaseError,
    SessionError,
    check_transition,
)
from monitor.session.readings import (
    BASELINE_WINDOW_S,
    NIBP_PAIR_WITHIN_MIN,
    Baseline,
    BpAdvisory,
    BpDecision,
    Charted,
    ChartedEvent,
    NibpReading,
    compute_baseline,
    pre_dose_bp,
)
from monitor.session.state import CLOSE_MEANING, CONCOMITANT_KEYS, SessionState

__all__ = [
    "Phase", "ALLOWED_TRANSITIONS", "check_transition", "SessionError", "PhaseError", "DosingDuringAlarm",
    "NibpReading", "Baseline", "compute_baseline", "pre_dose_bp", "BpAdvisory", "BpDecision",
    "Charted", "ChartedEvent", "DischargeCriterion", "DischargeCheck", "discharge_check", "post_dose_bp",
    "SessionState", "CLOSE_MEANING", "CONCOMITANT_KEYS", "BASELINE_WINDOW_S", "NIBP_PAIR_WITHIN_MIN",
]
