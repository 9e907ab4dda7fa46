"""The session panel and the event bar, driven as the nurse would on the offscreen platform, with a
real store and the recording service on the simulated monitor (240× real time).

Modal dialogs opened by the panel go through ``ui.dialogs.run_modal``; a stand-in fills and
accepts them, so the whole flow runs without an event loop per dialog.
"""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from drivers.model import NumericObservation
from monitor.alarms.profile import default_profile
from monitor.assessments import EVENTS, PresetEvent
from monitor.patient import Sex
from monitor.protocols import ProtocolKind
from tests.factories import TEST_PIN, ensure_account, make_context, make_service, sign_in
from monitor.session import Phase
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore
from ui.dialogs import (
    AssessmentDialog,
    InfusionStartDialog,
    ManualNibpDialog,
    PauseDialog,
    RescueMedicationDialog,
    SignInDialog,
    StartSessionDialog,
    set_dialog_runner,
)
from ui.event_bar import EventBar
from ui.session_panel import SessionPanel

# The offscreen platform cannot resize shown top-level widgets; it says so on every layout change.
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")

# A cuff reading every hour of simulated time: the first comes ~0.15 s after the start (the fixture
# waits for it), the next 15 s later, long after each test, so it cannot be averaged with the manual
# pre-dose BP under test. (At 60× the wait for the first was most of these tests' time.)
DEVICE = "sim://?scenario=normal&speed=240&waves=0&nibp=3600"
ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
PIN = TEST_PIN


class Runner:
    """Stands in for ``dialog.exec()``: a handler per dialog class fills and accepts/rejects it."""

    def __init__(self) -> None:
        self.handlers: dict[type, object] = {}
        self.seen: list[str] = []

    def on(self, cls: type, handler) -> None:
        self.handlers[cls] = handler

    def __call__(self, dialog: QDialog) -> int:
        self.seen.append(type(dialog).__name__)
        handler = self.handlers.get(type(dialog))
        if handler is None:
            raise AssertionError(f"unexpected dialog {type(dialog).__name__}")
        handler(dialog)
        return dialog.result()


@pytest.fixture
def ctx(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_CONFIG_DIR", str(tmp_path / "config"))
    store = SessionStore(tmp_path / "s.sqlite")
    ensure_account(store, ANN)
    service = make_service(DEVICE, store, ClinicSettings(), default_profile(), tick_s=0.05)
    seen: list[bool] = []
    service.batch_received.connect(
        lambda items: seen.extend(True for i in items if isinstance(i, NumericObservation) and i.vital == "nibp_sys"))
    service.start()
    qtbot.waitUntil(lambda: bool(seen), timeout=10_000)   # the monitor's first cuff reading is past
    yield make_context(service, store, ClinicSettings(), default_profile())
    set_dialog_runner(None)
    service.shutdown()
    store.close()


@pytest.fixture
def runner():
    run = Runner()
    set_dialog_runner(run)
    yield run
    set_dialog_runner(None)


def pin_in(dialog: SignInDialog) -> None:
    dialog.staff_id.setText("ann")
    dialog.pin.setText(PIN)
    dialog.accept()


def start_form(protocol: ProtocolKind, bp: tuple[str, str] | None):
    def fill(dialog: StartSessionDialog) -> None:
        dialog.name.setText("Jo Doe")
        dialog.dob.setText("1980-05-17")
        dialog.sex.set_value(Sex.FEMALE)
        dialog.weight.setText("70")
        dialog.protocol.set_value(protocol)
        if protocol is ProtocolKind.ESKETAMINE:
            dialog.esk_dose.set_value(56)
            dialog.lot.setText("ab123")
        if bp:
            dialog.baseline["nibp_sys"].setText(bp[0])
            dialog.baseline["nibp_dia"].setText(bp[1])
        dialog.accept()
        assert dialog.error.text() == ""
    return fill


def click(qtbot, button) -> None:
    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    QApplication.processEvents()   # what the pipeline published for the command reaches the widgets


def kinds(ctx, table_kind: str) -> list[str]:
    ctx.service.pipeline.writer.flush(10)
    return [e.kind for e in ctx.test_store.entries(ctx.service.pipeline.recorder.session_id, table_kind)]


def test_iv_session_from_start_to_pause_resume_with_events_and_assessments(qtbot, ctx, runner):
    panel = SessionPanel(ctx)
    bar = EventBar(ctx)
    qtbot.addWidget(panel)
    qtbot.addWidget(bar)
    panel.show()
    bar.show()
    assert panel.stack.currentIndex() == 0
    assert not bar.content.isEnabled() and "Start a session" in bar.hint.text()

    # Start session: nobody signed in → sign-in first, then the start dialog (manual BP 150/95).
    runner.on(SignInDialog, pin_in)
    runner.on(StartSessionDialog, start_form(ProtocolKind.KETAMINE_IV, ("150", "95")))
    click(qtbot, panel.start_session_button)
    assert runner.seen == ["SignInDialog", "StartSessionDialog"] and ctx.user == ANN
    assert panel.stack.currentIndex() == 1 and bar.content.isEnabled()
    assert panel.patient_label.full_text.startswith("Jo Doe, ")
    assert "0.5 mg/kg × 70 kg = 35.0 mg over 40 min" in panel.plan_label.full_text
    assert "NIBP" in panel.due_label.text() or "MOAA/S before the infusion" in panel.due_label.text()

    # Start the infusion: the advisory needs a decision (refused without one, then proceed).
    def decide(dialog: InfusionStartDialog) -> None:
        assert dialog.deciding and "Pre-dose BP 150/95 is above 140/90" in dialog.advisory.text()
        dialog.accept()
        assert "record a decision to proceed or defer before dosing" in dialog.error.text()
        dialog.decision.set_value("proceed")
        dialog.note.setText("prescriber informed")
        dialog.accept()

    runner.on(InfusionStartDialog, decide)
    click(qtbot, panel.buttons["start"])
    state = ctx.service.pipeline.recorder.state
    assert state.phase is Phase.INFUSION and state.bp_decisions[-1].decision == "proceed"
    assert panel.error.text() == ""
    panel.refresh()
    assert panel.nibp_label.full_text.startswith("Next NIBP in ")
    assert "MOAA/S at 20 min of infusion" in panel.due_label.text()
    assert "CADSS-6 at 20 min of infusion" in panel.due_label.text()
    assert "infusion running" in panel.phase_label.full_text
    assert panel.values["dose"][1].full_text.endswith(" / 35.0 mg") and panel.values["rate"][1].full_text == "52.5 mg/h"
    assert not panel.buttons["start"].isVisible() and panel.buttons["pause"].isVisible()

    # Pause with a reason (refused without), then resume.
    def pause(dialog: PauseDialog) -> None:
        dialog.accept()
        assert dialog.error.text() == "Give a reason for pausing the infusion"
        dialog.reason.setText("Nausea / vomiting")
        dialog.accept()

    runner.on(PauseDialog, pause)
    click(qtbot, panel.buttons["pause"])
    assert state.infusion.status.value == "paused" and "PAUSED" in panel.phase_label.full_text
    assert "(infusion paused)" in panel.due_label.text()
    click(qtbot, panel.buttons["resume"])
    assert state.infusion.status.value == "running" and panel.buttons["pause"].isVisible()
    assert kinds(ctx, "infusion_step") == ["start", "pause", "resume"]

    # The event bar: one-click events, a note, rescue medication and an assessment.
    click(qtbot, bar.event_buttons["nausea"])
    assert bar.status.text().startswith("Recorded Nausea at")
    click(qtbot, bar.event_buttons["dissociation"])
    click(qtbot, bar.save_button)
    assert bar.error.text() == "Note is required"
    bar.note.setText("Patient listening to music")
    click(qtbot, bar.save_button)
    assert bar.note.text() == "" and bar.error.text() == ""

    def rescue(dialog: RescueMedicationDialog) -> None:
        dialog.drug.setText("Ondansetron")
        dialog.dose.setText("4")
        dialog.route.set_value(dialog.route._values[0])
        dialog.accept()

    runner.on(RescueMedicationDialog, rescue)
    click(qtbot, bar.rescue_button)

    def moaas(dialog: AssessmentDialog) -> None:
        dialog.accept()
        assert "MOAA/S must be" in dialog.error.text()
        dialog.set_answer("level", 5)
        dialog.accept()

    runner.on(AssessmentDialog, moaas)
    bar.assessment_actions["moaas"].trigger()
    assert bar.status.text().startswith("Charted MOAA/S 5")
    assert kinds(ctx, "event") == ["nausea", "dissociation", "note", "rescue_medication"]
    assert kinds(ctx, "assessment") == ["moaas"]
    entries = ctx.test_store.entries(ctx.service.pipeline.recorder.session_id, "event")
    assert all(e.user == "ann" for e in entries)
    assert entries[2].payload["event"]["text"] == "Patient listening to music"


def test_esketamine_devices_and_nibp_due(qtbot, ctx, runner):
    sign_in(ctx, ANN)
    panel = SessionPanel(ctx)
    qtbot.addWidget(panel)
    panel.show()
    runner.on(StartSessionDialog, start_form(ProtocolKind.ESKETAMINE, None))
    click(qtbot, panel.start_session_button)
    panel.refresh()
    assert panel.nibp_label.full_text == "NIBP due" and panel.nibp_label.property("status") == "due"
    assert panel.buttons["device"].text() == "Log device 1"

    # The first device without a pre-dose BP: monitor's refusal, then a manual NIBP from the dialog.
    def first_device(dialog: InfusionStartDialog) -> None:
        assert dialog.error.text() == "Record a pre-dose blood pressure before dosing"

        def nibp(d: ManualNibpDialog) -> None:
            d.sys.setText("128")
            d.dia.setText("80")
            d.accept()

        runner.on(ManualNibpDialog, nibp)
        qtbot.mouseClick(dialog.nibp_button, Qt.MouseButton.LeftButton)
        assert dialog.error.text() == "" and not dialog.deciding
        dialog.accept()

    runner.on(InfusionStartDialog, first_device)
    click(qtbot, panel.buttons["device"])
    devices = ctx.service.pipeline.recorder.state.devices
    assert devices.devices_logged == 1 and panel.values["dose"][1].full_text.startswith("1 of 2 logged")
    assert panel.values["next_device"][1].full_text.startswith("from ")
    assert panel.buttons["device"].text() == "Log device 2"

    # The second device at once: monitor's 5-minute rule, shown in the panel.
    refusals: list[str] = []
    panel.refused.connect(refusals.append)
    click(qtbot, panel.buttons["device"])
    assert panel.error.text().startswith("Wait 5 minutes between nasal devices: next allowed at")
    assert refusals == [panel.error.text()] and devices.devices_logged == 1
    assert kinds(ctx, "device_log") == ["nasal_device"]


def test_sign_in_cancelled_starts_nothing(qtbot, ctx, runner):
    panel = SessionPanel(ctx)
    bar = EventBar(ctx)
    qtbot.addWidget(panel)
    qtbot.addWidget(bar)
    runner.on(SignInDialog, lambda d: d.reject())
    panel.start_session()
    assert runner.seen == ["SignInDialog"] and ctx.service.pipeline.recorder is None and panel.error.text() == ""
    presets = [cls.kind for cls in EVENTS.values() if issubclass(cls, PresetEvent)]
    assert sorted(bar.event_buttons) == sorted(presets)


def test_a_session_button_clicked_never_keeps_the_focus(qtbot, ctx, runner):
    """Found on a fresh clone: after a dialog the focus sat on *Pause infusion* or *Discharge…*, where
    a stray Space would press it. A click (or Tab) reaches them; the focus never stays on them."""
    from ui.dialogs import ManualNibpDialog

    panel = SessionPanel(ctx)
    qtbot.addWidget(panel)
    panel.show()
    panel.activateWindow()
    runner.on(SignInDialog, pin_in)
    runner.on(StartSessionDialog, start_form(ProtocolKind.KETAMINE_IV, ("124", "78")))
    click(qtbot, panel.start_session_button)
    runner.on(ManualNibpDialog, lambda d: d.reject())
    for key in ("nibp", "discharge"):
        if panel.buttons[key].isVisible():
            click(qtbot, panel.buttons[key])
            assert QApplication.focusWidget() is not panel.buttons[key], key
    assert all(not b.hasFocus() for b in panel.buttons.values())
