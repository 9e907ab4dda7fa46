"""The dialogs of Vigil's live monitoring window.

Every dialog is a modal, keyboard-friendly, touch-sized form in the dark theme. Dialogs hold no
clinical rule: what they collect goes to ``monitor`` and a refusal is shown in the dialog's error
label (objectName ``error``) with monitor's message, keeping everything typed.

Modal dialogs opened by panels and by other dialogs go through :func:`run_modal`, which tests
replace with :func:`set_dialog_runner`.
"""

from ui.dialogs.admin import (
    AlarmLimitsDialog,
    ClinicSettingsDialog,
    LimitsEditor,
    UsersDialog,
    adjustable_limits,
)
from ui.dialogs.base import (
    ChoiceRow,
    FormDialog,
    FormError,
    QuickPicks,
    SessionDialog,
    device_now,
    dry_run,
    minutes_text,
    parse_number,
    require_token,
    require_user,
    run_modal,
    session_state,
    set_dialog_runner,
)
from ui.dialogs.charting import (
    AssessmentDialog,
    LevelList,
    NoteDialog,
    RescueMedicationDialog,
)
from ui.dialogs.dosing import (
    EndDosingDialog,
    InfusionStartDialog,
    ManualNibpDialog,
    PauseDialog,
    RateChangeDialog,
    StopInfusionDialog,
    begin_dosing,
)
from ui.dialogs.ending import AbortDialog, DischargeDialog, ResumeDialog
from ui.dialogs.signin import SignInDialog
from ui.dialogs.start import (
    StartRequest,
    StartSessionDialog,
    check_request,
    start_session,
)

__all__ = [
    "AbortDialog",
    "AlarmLimitsDialog",
    "AssessmentDialog",
    "ChoiceRow",
    "ClinicSettingsDialog",
    "DischargeDialog",
    "EndDosingDialog",
    "FormDialog",
    "FormError",
    "InfusionStartDialog",
    "LevelList",
    "LimitsEditor",
    "ManualNibpDialog",
    "NoteDialog",
    "PauseDialog",
    "QuickPicks",
    "RateChangeDialog",
    "RescueMedicationDialog",
    "ResumeDialog",
    "SessionDialog",
    "SignInDialog",
    "StartRequest",
    "StartSessionDialog",
    "StopInfusionDialog",
    "UsersDialog",
    "adjustable_limits",
    "begin_dosing",
    "check_request",
    "device_now",
    "dry_run",
    "minutes_text",
    "parse_number",
    "require_token",
    "require_user",
    "run_modal",
    "session_state",
    "set_dialog_runner",
    "start_session",
]
