"""Every dialog and secondary window Vigil can show over the monitoring window, built on a live
session: shared by the alarm-reachability tests (tests/test_ui_alarms_reachable.py) and the
geometry probe they run at several screen sizes (tests/geometry_probe.py).

A new dialog class anywhere in ``ui`` must be added to :data:`DIALOGS` (a test checks that none
is missing).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from PySide6.QtWidgets import QDialog, QMessageBox, QWidget

from monitor.assessments import ASSESSMENTS
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.staff import Actor, Role
from tests.factories import sign_in

ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)


def start_infusion(window, user: Actor = ANN) -> int:
    """Sign ``user`` in and open an IV ketamine session with the infusion running; its id."""
    service = window.service
    sign_in(window.context, user)
    service.start_session(Patient(display_name="Jo Doe", weight_kg=70), KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70),
                          user)
    service.waive_pre_dose_check(user, "test")
    service.start_infusion(user)
    return service.pipeline.recorder.session_id


def _late_entry(window) -> QDialog:
    from ui.review.dialogs import LateEntryDialog  # noqa: PLC0415

    now = window.service.now()
    return LateEntryDialog(window.context, window.service.pipeline.recorder.session_id, now - timedelta(minutes=5), now, now,
                           window)


def _file_dialog(window) -> QDialog:
    from ui.dialogs.files import ExportFileDialog  # noqa: PLC0415

    return ExportFileDialog(window, "Export session", str(Path.home() / "vigil-session.csv"))


def _question(window) -> QDialog:
    return QMessageBox(QMessageBox.Icon.Question, "Close Vigil?", "A session is being recorded. Close Vigil anyway?",
                       QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, window)


def _dialogs() -> dict[str, Callable[[QWidget], QDialog]]:
    from ui import dialogs as d  # noqa: PLC0415
    from ui.help import HelpDialog  # noqa: PLC0415

    made: dict[str, Callable] = {
        "SignInDialog": lambda w: d.SignInDialog(w.context, w),
        "StartSessionDialog": lambda w: d.StartSessionDialog(w.context, w),
        "InfusionStartDialog": lambda w: d.InfusionStartDialog(w.context, w),
        "ManualNibpDialog": lambda w: d.ManualNibpDialog(w.context, w),
        "PauseDialog": lambda w: d.PauseDialog(w.context, w),
        "RateChangeDialog": lambda w: d.RateChangeDialog(w.context, w),
        "StopInfusionDialog": lambda w: d.StopInfusionDialog(w.context, w),
        "EndDosingDialog": lambda w: d.EndDosingDialog(w.context, w),
        "RescueMedicationDialog": lambda w: d.RescueMedicationDialog(w.context, w),
        "NoteDialog": lambda w: d.NoteDialog(w.context, w),
        "AlarmLimitsDialog": lambda w: d.AlarmLimitsDialog(w.context, w),
        "ClinicSettingsDialog": lambda w: d.ClinicSettingsDialog(w.context, w),
        "UsersDialog": lambda w: d.UsersDialog(w.context, w),
        "DischargeDialog": lambda w: d.DischargeDialog(w.context, w),
        "AbortDialog": lambda w: d.AbortDialog(w.context, w),
        "ResumeDialog": lambda w: d.ResumeDialog(w.context.records.open_sessions(), w.context.records, w),
        "LateEntryDialog": _late_entry,
        "QMessageBox (question)": _question,
        "ExportFileDialog": _file_dialog,
        "HelpDialog": lambda w: HelpDialog(w.service.session_profile, w),
    }
    for kind in ASSESSMENTS:
        made[f"AssessmentDialog({kind})"] = lambda w, k=kind: d.AssessmentDialog(k, w)
    return made


#: name → factory(monitoring window) → the dialog, not shown yet (the session must be running).
DIALOGS: dict[str, Callable[[QWidget], QDialog]] = _dialogs()


def dialog_classes() -> set[str]:
    """Names of the QDialog classes defined anywhere in ``ui``, bases of other dialogs
    (FormDialog, SessionDialog) left out."""
    import ui  # noqa: PLC0415

    for module in pkgutil.walk_packages(ui.__path__, "ui."):
        importlib.import_module(module.name)
    classes, todo = set(), [QDialog]
    while todo:
        for cls in todo.pop().__subclasses__():
            todo.append(cls)
            if cls.__module__.startswith("ui."):
                classes.add(cls)
    bases = {base for cls in classes for base in cls.__mro__[1:]}
    return {cls.__name__ for cls in classes - bases if not cls.__name__.startswith("_")}


def open_review(window):
    """The session browser and a review window of the live session, from the monitoring window."""
    browser = window.open_review()
    review = browser.open_session(window.service.pipeline.recorder.session_id)
    review.finish_opening()
    return browser, review
