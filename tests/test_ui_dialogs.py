"""The dialogs of the live window, driven programmatically on the offscreen platform against a
real store and a recording service on the simulated monitor.

Each dialog must refuse bad input with monitor's message in its error label, keep what was typed,
and, on the happy path, reach the store.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from monitor.alarms.profile import default_profile
from monitor.assessments import ASSESSMENTS, CADSS6_ITEMS, MOAAS_LEVELS, RASS_LEVELS
from monitor.patient import Patient, Sex
from monitor.protocols import EsketaminePlan, KetamineIVPlan
from tests.factories import TEST_PIN, make_context, make_service, sign_in, known_pin_hash
from monitor.session import Phase
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore
from ui.dialogs import (
    AbortDialog,
    AlarmLimitsDialog,
    AssessmentDialog,
    ClinicSettingsDialog,
    DischargeDialog,
    InfusionStartDialog,
    ManualNibpDialog,
    NoteDialog,
    PauseDialog,
    RateChangeDialog,
    RescueMedicationDialog,
    ResumeDialog,
    SignInDialog,
    StartRequest,
    StartSessionDialog,
    StopInfusionDialog,
    UsersDialog,
    adjustable_limits,
    set_dialog_runner,
    start_session,
)

DEVICE = "sim://?scenario=normal&speed=60&waves=0&nibp=3600"
ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
CARA = Actor(username="cara", display_name="Cara Diaz", role=Role.CHARGE_NURSE)
PIN = TEST_PIN
PIN_HASH = known_pin_hash()


class Runner:
    """Stands in for ``dialog.exec()``: a handler per dialog class fills and accepts/rejects it."""

    def __init__(self) -> None:
        self.handlers: dict[type, object] = {}
        self.seen: list[QDialog] = []

    def on(self, cls: type, handler) -> None:
        self.handlers[cls] = handler

    def __call__(self, dialog: QDialog) -> int:
        self.seen.append(dialog)
        handler = self.handlers.get(type(dialog))
        if handler is None:
            raise AssertionError(f"unexpected dialog {type(dialog).__name__}")
        handler(dialog)
        return dialog.result()


@pytest.fixture
def ctx(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_CONFIG_DIR", str(tmp_path / "config"))
    store = SessionStore(tmp_path / "s.sqlite")
    service = make_service(DEVICE, store, ClinicSettings(), default_profile(), tick_s=0.05)
    service.start()
    context = make_context(service, store, ClinicSettings(), default_profile())
    yield context
    set_dialog_runner(None)
    service.shutdown()
    store.close()


@pytest.fixture
def runner():
    run = Runner()
    set_dialog_runner(run)
    yield run
    set_dialog_runner(None)


def patient(**changes) -> Patient:
    data = dict(display_name="Jo Doe", mrn="MRN-001", date_of_birth="1980-05-17", sex=Sex.FEMALE, weight_kg=70,
                prior_sessions=5)
    data.update(changes)
    return Patient(**data)


def open_iv(ctx, bp=(128, 82), user=ANN):
    """An IV session opened through the start helper, with a manual pre-dose BP."""
    sign_in(ctx, user)
    plan = KetamineIVPlan.for_clinic(ctx.settings, weight_kg=70)
    start_session(ctx, StartRequest(patient(), plan, {}, {"nibp_sys": bp[0], "nibp_dia": bp[1]} if bp else {}))
    return ctx.service.pipeline.recorder


def entries(ctx, recorder, table_kind=None):
    ctx.service.pipeline.writer.flush(10)
    return ctx.test_store.entries(recorder.session_id, table_kind)


def fill_start(dialog: StartSessionDialog, *, weight="70", dob="1980-05-17") -> None:
    dialog.name.setText("Jo Doe")
    dialog.mrn.setText("MRN-001")
    dialog.dob.setText(dob)
    dialog.sex.set_value(Sex.FEMALE)
    dialog.weight.setText(weight)


# =========================================================================== sign-in

def test_first_run_creates_the_charge_nurse_and_signs_in(qtbot, ctx):
    dialog = SignInDialog(ctx)
    qtbot.addWidget(dialog)
    assert dialog.first_run and "first charge nurse" in dialog.title_label.text()
    assert dialog.pin.echoMode() == dialog.pin.EchoMode.Password
    dialog.staff_id.setText("cara")
    dialog.printed_name.setText("Cara Diaz")
    dialog.pin.setText("123456")
    dialog.pin_again.setText("123456")
    dialog.accept()
    assert "run of consecutive digits" in dialog.error.text()
    assert dialog.result() != QDialog.DialogCode.Accepted and ctx.user is None
    assert (dialog.staff_id.text(), dialog.printed_name.text()) == ("cara", "Cara Diaz")
    dialog.pin.setText("258025")
    dialog.pin_again.setText("258026")
    dialog.accept()
    assert "The two PINs differ" in dialog.error.text()
    dialog.pin_again.setText("258025")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.error.text() == ""
    assert ctx.user == CARA
    record = ctx.test_store.get_user("cara")
    assert record.role == "charge_nurse" and record.active and record.pin_hash.startswith("$scrypt$")


def test_sign_in_wrong_pin_then_lockout(qtbot, ctx):
    ctx.test_store.add_user("ann", "Ann Lee", "nurse", PIN_HASH, by=None)
    good = SignInDialog(ctx)
    qtbot.addWidget(good)
    assert not good.first_run
    good.staff_id.setText("ann")
    good.pin.setText(PIN)
    good.accept()
    assert good.result() == QDialog.DialogCode.Accepted and ctx.user == ANN
    ctx.set_user(None)
    dialog = SignInDialog(ctx)
    qtbot.addWidget(dialog)
    dialog.staff_id.setText("ann")
    dialog.pin.setText("975310")
    dialog.accept()
    assert "Wrong user name or PIN (4 attempts left" in dialog.error.text()
    assert dialog.staff_id.text() == "ann" and ctx.user is None
    for _ in range(4):
        dialog.accept()
    assert "locked until" in dialog.error.text()
    again = SignInDialog(ctx)          # the lockout outlives the dialog
    qtbot.addWidget(again)
    again.staff_id.setText("ann")
    again.pin.setText(PIN)
    again.accept()
    assert "Too many wrong PINs: try again at" in again.error.text() and ctx.user is None


# =========================================================================== start session

def test_start_dialog_refuses_bad_input_and_keeps_it(qtbot, ctx):
    sign_in(ctx, ANN)
    dialog = StartSessionDialog(ctx)
    qtbot.addWidget(dialog)
    assert dialog.dose.text() == "0.5" and dialog.duration.text() == "40"   # the clinic's typical dose
    fill_start(dialog, weight="700")
    assert "Weight 700 kg is outside 30–250 kg" in dialog.plan_text.text()  # live, from the plan model
    dialog.accept()
    assert "Weight 700 kg is outside 30–250 kg" in dialog.error.text()
    assert (dialog.name.text(), dialog.dob.text(), dialog.weight.text()) == ("Jo Doe", "1980-05-17", "700")
    dialog.weight.setText("70")
    assert "Total 35.0 mg" in dialog.plan_text.text() and "52.5 mg/h" in dialog.plan_text.text()
    dialog.dose.setText("2")
    dialog.accept()
    assert "Dose 2 mg/kg is outside this clinic's 0.1–1.5 mg/kg" in dialog.error.text()
    dialog.dose.setText("0.5")
    dialog.dob.setText("")
    dialog.accept()
    assert "Enter the date of birth" in dialog.error.text()
    dialog.dob.setText((ctx.service.now().date() - timedelta(days=17 * 365)).isoformat())
    dialog.accept()
    assert "this clinic treats patients aged 18 or over" in dialog.error.text()
    dialog.dob.setText("1980-05-17")
    dialog.concomitant["benzodiazepines"].set_value(True)
    dialog.accept()
    assert "Answer every concomitant-medication question" in dialog.error.text()
    dialog.concomitant["benzodiazepines"].set_value(None)
    dialog.baseline["nibp_sys"].setText("120")
    dialog.accept()
    assert "both the systolic and the diastolic" in dialog.error.text()
    dialog.baseline["nibp_dia"].setText("130")
    dialog.accept()
    assert "systolic must be above diastolic" in dialog.error.text()
    dialog.baseline["nibp_sys"].setText("")
    dialog.baseline["nibp_dia"].setText("")
    dialog.baseline["hr"].setText("500")
    dialog.accept()
    assert "Baseline HR 500 bpm is outside" in dialog.error.text()
    dialog.baseline["hr"].setText("")
    dialog.protocol.set_value(dialog.protocol.value().__class__("esketamine"))
    dialog.esk_dose.set_value(56)
    dialog.accept()
    assert "Enter the lot number printed on the esketamine carton" in dialog.error.text()
    assert ctx.service.pipeline.recorder is None and dialog.result() != QDialog.DialogCode.Accepted


def test_start_dialog_starts_the_session_with_medications_and_baseline(qtbot, ctx):
    sign_in(ctx, ANN)
    dialog = StartSessionDialog(ctx)
    qtbot.addWidget(dialog)
    fill_start(dialog)
    dialog.hypertension.setChecked(True)
    for key, row in dialog.concomitant.items():
        row.set_value(key == "benzodiazepines")
    dialog.other_meds.setText("sertraline")
    for key, value in {"nibp_sys": "128", "nibp_dia": "82", "hr": "72", "spo2": "98", "rr": "14"}.items():
        dialog.baseline[key].setText(value)
    dialog.accept()
    assert dialog.error.text() == "" and dialog.result() == QDialog.DialogCode.Accepted and not dialog.warnings
    recorder = ctx.service.pipeline.recorder
    state = recorder.state
    assert state.patient.known_hypertension and state.age_years is not None
    assert state.concomitant == {"benzodiazepines": True, "non_benzodiazepine_hypnotics": False,
                                 "psychostimulants": False, "maois": False}
    assert state.concomitant_other == "sertraline"
    assert state.pre_dose_bp()[:2] == (128, 82) and state.nibp_readings[-1].source == "manual"
    assert state.baseline.values == {"hr": 72, "spo2": 98, "rr": 14}
    types = [e.payload["type"] for e in entries(ctx, recorder)]
    assert types[:5] == ["session_opened", "alarm_limits", "concomitant_medications", "nibp", "baseline"]
    assert all(e.user == "ann" for e in entries(ctx, recorder))
    assert ctx.test_store.get_session(recorder.session_id).patient["date_of_birth"] == "1980-05-17"


# =========================================================================== dosing

def test_infusion_start_needs_a_pre_dose_bp_and_offers_a_manual_one(qtbot, ctx, runner):
    recorder = open_iv(ctx, bp=None)
    dialog = InfusionStartDialog(ctx)
    qtbot.addWidget(dialog)
    assert dialog.error.text() == "Record a pre-dose blood pressure before dosing"   # monitor's, at once
    assert not dialog.deciding

    def manual(d: ManualNibpDialog) -> None:
        d.sys.setText("120")
        d.dia.setText("130")
        d.accept()
        assert "systolic must be above diastolic" in d.error.text()
        d.sys.setText("abc")
        d.accept()
        assert "not a number" in d.error.text() and d.dia.text() == "130"
        d.sys.setText("150")
        d.dia.setText("95")
        d.accept()

    runner.on(ManualNibpDialog, manual)
    qtbot.mouseClick(dialog.nibp_button, Qt.MouseButton.LeftButton)
    assert dialog.deciding and "Pre-dose BP 150/95 is above 140/90" in dialog.advisory.text()
    dialog.accept()
    assert "record a decision to proceed or defer before dosing" in dialog.error.text()
    dialog.decision.set_value("defer")
    dialog.note.setText("prescriber informed")
    dialog.accept()
    assert dialog.outcome == "deferred" and recorder.state.phase is Phase.BASELINE
    again = InfusionStartDialog(ctx)       # a deferral can be revisited with a decision to proceed
    qtbot.addWidget(again)
    assert again.deciding and "deferred" in again.advisory.text()
    again.accept()
    assert "was to defer" in again.error.text()
    again.decision.set_value("proceed")
    again.rate.setText("52.5")
    again.accept()
    assert again.outcome == "started" and recorder.state.phase is Phase.INFUSION
    decisions = [d.decision for d in recorder.state.bp_decisions]
    assert decisions == ["defer", "proceed"] and recorder.state.bp_decisions[0].note == "prescriber informed"


def test_pause_rate_and_stop_dialogs(qtbot, ctx):
    recorder = open_iv(ctx)
    start = InfusionStartDialog(ctx)
    qtbot.addWidget(start)
    assert start.error.text() == "" and not start.deciding
    start.rate.setText("5000")
    start.accept()
    assert "above this clinic's maximum" in start.error.text() and start.rate.text() == "5000"
    assert start.high_rate.box.isHidden()
    start.rate.setText("100")                     # nearly 2 × the planned 52.5 mg/h: confirm it first
    start.accept()
    assert "confirm it with a reason" in start.error.text() and start.outcome is None
    assert not start.high_rate.box.isHidden() and "100 mg/h is 1.9 ×" in start.high_rate.message.text()
    start.accept()                                # still no reason: refused again
    assert start.outcome is None
    start.high_rate.reason.setText("prescriber's order: 1 mg/kg/h")
    start.accept()
    assert start.outcome == "started"
    [step] = recorder.state.infusion.steps
    assert step.rate_mg_per_h == 100 and step.high_rate_reason == "prescriber's order: 1 mg/kg/h"

    pause = PauseDialog(ctx)
    qtbot.addWidget(pause)
    pause.accept()
    assert pause.error.text() == "Give a reason for pausing the infusion"
    qtbot.mouseClick(pause.picks.buttons[0], Qt.MouseButton.LeftButton)
    assert pause.reason.text() == "Nausea / vomiting"
    pause.accept()
    assert pause.result() == QDialog.DialogCode.Accepted
    assert recorder.state.infusion.status.value == "paused"

    rate = RateChangeDialog(ctx)
    qtbot.addWidget(rate)
    rate.new_rate.setText("forty")
    rate.accept()
    assert "The new rate (mg/h) 'forty' is not a number" in rate.error.text()
    rate.new_rate.setText("40")
    rate.accept()
    assert rate.error.text() == "Give a reason for changing the infusion rate" and rate.new_rate.text() == "40"
    rate.reason.setText("Prescriber's order")
    rate.accept()
    assert rate.result() == QDialog.DialogCode.Accepted
    ctx.service.resume_infusion(ANN)
    assert recorder.state.infusion.rate_at(ctx.service.now()) == 40

    stop = StopInfusionDialog(ctx)
    qtbot.addWidget(stop)
    stop.accept()
    assert stop.result() == QDialog.DialogCode.Accepted and recorder.state.phase is Phase.RECOVERY
    steps = [e.kind for e in entries(ctx, recorder, "infusion_step")]
    assert steps == ["start", "pause", "rate_change", "resume", "stop"]


# =========================================================================== charting

def _answer_all(dialog: AssessmentDialog) -> None:
    values = {"moaas": {"level": 4}, "rass": {"level": -1}, "pain_nrs": {"rating": 3},
              "nausea": {"nausea": True, "vomiting": False},
              "bprs_plus": {n: 2 for n in ("suspiciousness", "hallucinations", "unusual_thought_content",
                                           "conceptual_disorganisation")},
              "aldrete": {n: 2 for n in ("activity", "respiration", "circulation", "consciousness",
                                         "oxygen_saturation")},
              "cadss": {f"item{n}": n % 5 for n in range(1, 24)},
              "cadss6": {f"item{n}": 1 for n in CADSS6_ITEMS}}[dialog.kind]
    for name, value in values.items():
        dialog.set_answer(name, value)


@pytest.mark.parametrize("kind", list(ASSESSMENTS))
def test_every_assessment_builds_its_model(qtbot, kind):
    dialog = AssessmentDialog(kind)
    qtbot.addWidget(dialog)
    dialog.accept()
    assert dialog.error.text() and dialog.assessment is None        # unanswered: the model refuses
    _answer_all(dialog)
    dialog.accept()
    assert dialog.error.text() == "" and dialog.result() == QDialog.DialogCode.Accepted
    assert isinstance(dialog.assessment, ASSESSMENTS[kind])


def test_assessment_refusals_keep_the_answers(qtbot):
    pain = AssessmentDialog("pain_nrs")
    qtbot.addWidget(pain)
    pain.set_answer("rating", 12)
    pain.accept()
    assert pain.error.text() == "Pain NRS must be between 0 and 10 (got 12)" and pain.answers()["rating"] == "12"
    cadss6 = AssessmentDialog("cadss6")
    qtbot.addWidget(cadss6)
    _answer_all(cadss6)
    cadss6.set_answer("item22", None)
    cadss6.accept()
    assert "CADSS-6 item 22 must be a whole number from 0 to 4" in cadss6.error.text()
    assert cadss6.answers()["item1"] == 1
    cadss = AssessmentDialog("cadss")
    qtbot.addWidget(cadss)
    assert len([k for k in cadss.fields if k.startswith("item")]) == 23
    moaas = AssessmentDialog("moaas")
    qtbot.addWidget(moaas)
    assert moaas.fields["level"].text(5) == MOAAS_LEVELS[5]
    qtbot.mouseClick(moaas.fields["level"].button(2), Qt.MouseButton.LeftButton)
    moaas.accept()
    assert moaas.assessment.level == 2
    rass = AssessmentDialog("rass")
    qtbot.addWidget(rass)
    assert rass.fields["level"].text(-5) == RASS_LEVELS[-5] and rass.fields["level"].button(4).text() == "+4"
    rass.set_answer("level", -1)
    rass.accept()
    assert rass.assessment.level == -1


def test_aldrete_spo2_item_is_suggested_from_the_latest_spo2(qtbot):
    dialog = AssessmentDialog("aldrete", latest_spo2=97, latest_sys=126, baseline_sys=124)
    qtbot.addWidget(dialog)
    assert dialog.answers()["oxygen_saturation"] == 2 and dialog.answers()["circulation"] == 2
    assert "Suggested 2 from SpO2 97 % on room air" in dialog.suggestions["oxygen_saturation"].text()
    dialog.on_oxygen.setChecked(True)
    assert dialog.answers()["oxygen_saturation"] == 1
    low = AssessmentDialog("aldrete", latest_spo2=89)
    qtbot.addWidget(low)
    assert low.answers()["oxygen_saturation"] == 0
    none = AssessmentDialog("aldrete")
    qtbot.addWidget(none)
    assert none.answers()["oxygen_saturation"] is None and "No SpO2" in none.suggestions["oxygen_saturation"].text()


def test_rescue_medication_and_note_reach_the_store(qtbot, ctx):
    recorder = open_iv(ctx)
    dialog = RescueMedicationDialog(ctx)
    qtbot.addWidget(dialog)
    assert dialog.given_by.text() == "Ann Lee"
    dialog.drug.setText("Ondansetron")
    dialog.dose.setText("0")
    dialog.accept()
    assert "Dose 0 must be above 0" in dialog.error.text()
    dialog.dose.setText("4")
    dialog.accept()
    assert "Route None is not one of" in dialog.error.text() and dialog.drug.text() == "Ondansetron"
    dialog.route.set_value(dialog.route._values[0].__class__("IV"))
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    note = NoteDialog(ctx)
    qtbot.addWidget(note)
    note.accept()
    assert note.error.text() == "Note is required"
    note.text.setPlainText("Patient comfortable, music on")
    note.accept()
    assert note.result() == QDialog.DialogCode.Accepted
    events = [e.payload["event"] for e in entries(ctx, recorder, "event")]
    assert events[0]["kind"] == "rescue_medication" and events[0]["drug"] == "Ondansetron"
    assert events[0]["route"] == "IV" and events[0]["dose"] == 4
    assert events[1] == {"kind": "note", "text": "Patient comfortable, music on"}


# =========================================================================== limits and settings

def test_alarm_limits_dialog_limits_to_bounds_and_applies(qtbot, ctx):
    open_iv(ctx)
    dialog = AlarmLimitsDialog(ctx)
    qtbot.addWidget(dialog)
    limits = adjustable_limits(ctx.service.session_profile)
    assert set(dialog.editor.spins) == set(limits) and "nibp_high.MEDIUM.sys" in limits
    spin = dialog.editor.spins["spo2_low.MEDIUM"]
    assert (spin.minimum(), spin.maximum(), spin.value()) == (85, 94, 91)
    spin.setValue(120)                     # the spin box stays inside the bounds
    assert spin.value() == 94
    assert dialog.attempt(dialog.apply_changes, {"spo2_low.MEDIUM": 99}) is False
    assert "outside the clinic's bounds 85–94" in dialog.error.text()
    dialog.editor.set_value("spo2_low.MEDIUM", 90)
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    level = ctx.service.session_profile.rule("spo2_low").levels[0]
    assert level.threshold == 90
    ctx.service.pipeline.writer.flush(10)
    assert any(r.action == "alarm_limits_changed" for r in ctx.test_store.audit_rows())


def test_clinic_settings_are_refused_to_a_nurse(qtbot, ctx, tmp_path):
    sign_in(ctx, ANN)
    dialog = ClinicSettingsDialog(ctx)
    qtbot.addWidget(dialog)
    assert dialog.error.text() == "Only a charge nurse may change clinic settings (signed in: Ann Lee, nurse)"
    assert not dialog.ok_button.isEnabled() and not dialog.tabs.isEnabled()
    dialog.set_field("schedules.iv.nibp_interval_min", 15)
    dialog.accept()                         # even forced, monitor refuses
    assert "Only a charge nurse may change clinic settings" in dialog.error.text()
    assert not (tmp_path / "config" / "clinic_settings.json").exists() and ctx.test_store.current_settings() is None


def test_clinic_settings_saved_by_the_charge_nurse(qtbot, ctx, tmp_path):
    sign_in(ctx, CARA)
    dialog = ClinicSettingsDialog(ctx)
    qtbot.addWidget(dialog)
    assert dialog.error.text() == "" and dialog.ok_button.isEnabled()
    dialog.set_field("schedules.iv.nibp_interval_min", 20)
    dialog.set_field("clinic_name", "Calm Harbour Clinic")
    dialog.accept()
    assert "NIBP interval during the infusion 20 min is outside 5–15 min" in dialog.error.text()
    assert dialog.widgets["clinic_name"][1].text() == "Calm Harbour Clinic"
    dialog.set_field("schedules.iv.nibp_interval_min", 15)
    dialog.limits.set_value("spo2_low.MEDIUM", 90)
    with qtbot.waitSignal(ctx.settings_changed, timeout=1000):
        dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert ctx.settings.schedules.iv.nibp_interval_min == 15 and ctx.settings.clinic_name == "Calm Harbour Clinic"
    saved = json.loads((tmp_path / "config" / "clinic_settings.json").read_text())
    assert saved["schedules"]["iv"]["nibp_interval_min"] == 15
    version, text = ctx.test_store.current_settings()
    assert version == 1 and json.loads(text)["clinic_name"] == "Calm Harbour Clinic"
    profile = json.loads((tmp_path / "config" / "alarm_profile.json").read_text())
    spo2 = next(r for r in profile["rules"] if r["id"] == "spo2_low")
    assert spo2["levels"][0]["threshold"] == 90 and profile["name"] == default_profile().name
    assert ctx.profile.rule("spo2_low").levels[0].threshold == 90


def test_users_dialog(qtbot, ctx):
    ctx.test_store.add_user("cara", "Cara Diaz", "charge_nurse", PIN_HASH, by=None)
    sign_in(ctx, Actor(username="bob", display_name="Bob Ray", role=Role.NURSE))
    refused = UsersDialog(ctx)
    qtbot.addWidget(refused)
    assert "Only a charge nurse may manage staff accounts" in refused.error.text()
    assert not refused.add_button.isEnabled()
    sign_in(ctx, CARA)
    dialog = UsersDialog(ctx)
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 2
    dialog.add_id.setText("ann")
    dialog.add_name.setText("Ann Lee")
    dialog.add_pin.setText("111111")
    dialog.add_pin_again.setText("111111")
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    assert "may not repeat one digit" in dialog.error.text() and dialog.add_id.text() == "ann"
    dialog.add_pin.setText(PIN)
    dialog.add_pin_again.setText("246814")
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    assert "The two PINs differ" in dialog.error.text()
    dialog.add_pin_again.setText(PIN)
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    assert dialog.error.text() == "" and dialog.table.rowCount() == 3
    assert ctx.test_store.get_user("ann").role == "nurse" and dialog.selected_login() == "ann"
    qtbot.mouseClick(dialog.toggle_button, Qt.MouseButton.LeftButton)
    assert not ctx.test_store.get_user("ann").active and dialog.toggle_button.text() == "Reactivate"
    qtbot.mouseClick(dialog.toggle_button, Qt.MouseButton.LeftButton)
    assert ctx.test_store.get_user("ann").active
    dialog.new_pin.setText("135791")
    dialog.new_pin_again.setText("135791")
    qtbot.mouseClick(dialog.reset_button, Qt.MouseButton.LeftButton)
    assert dialog.error.text() == ""
    dialog.select("cara")
    qtbot.mouseClick(dialog.toggle_button, Qt.MouseButton.LeftButton)
    assert "cannot deactivate your own account" in dialog.error.text() and ctx.test_store.get_user("cara").active
    ctx.set_user(None)
    signing_in = SignInDialog(ctx)
    qtbot.addWidget(signing_in)
    signing_in.staff_id.setText("ann")
    signing_in.pin.setText("135791")
    signing_in.accept()
    assert ctx.user == ANN


# =========================================================================== ending

def test_discharge_dialog_criteria_override_and_close(qtbot, ctx):
    recorder = open_iv(ctx)
    ctx.service.start_infusion(ANN)
    ctx.service.stop_infusion(ANN, "planned dose given")
    dialog = DischargeDialog(ctx)
    qtbot.addWidget(dialog)
    keys = set(dialog.criteria_labels)
    assert keys == {"aldrete", "bp", "time", "alarms", "escort"}
    assert dialog.criteria_labels["escort"][0].text() == "✗"
    assert "no modified Aldrete charted" in dialog.criteria_labels["aldrete"][1].text()
    assert dialog.printed_name.text() == "Ann Lee (nurse)" and not dialog.override.isEnabled()
    assert "Only a charge nurse may close a session with unmet discharge criteria" in dialog.override_hint.text()
    dialog.accept()
    assert dialog.error.text().startswith("Discharge criteria not met:")
    dialog.escort_name.setText("Sam Doe")
    qtbot.mouseClick(dialog.escort_button, Qt.MouseButton.LeftButton)
    assert dialog.criteria_labels["escort"][0].text() == "✓" and "Sam Doe" in dialog.escort_status.text()
    sign_in(ctx, CARA)
    dialog.refresh()
    assert dialog.override.isEnabled() and dialog.printed_name.text() == "Cara Diaz (charge nurse)"
    dialog.accept()
    assert dialog.error.text().startswith("Discharge criteria not met:")
    dialog.override.setText("Prescriber reviewed; patient stable, leaving with escort")
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted and ctx.service.pipeline.recorder is None
    record = ctx.test_store.get_session(recorder.session_id)
    assert record.status == "closed" and record.signed_name == "Cara Diaz"
    assert recorder.state.override_reason.startswith("Prescriber reviewed")


def test_abort_dialog(qtbot, ctx):
    recorder = open_iv(ctx)
    ctx.service.start_infusion(ANN)
    dialog = AbortDialog(ctx)
    qtbot.addWidget(dialog)
    dialog.reason.setText("Patient declined treatment")
    dialog.accept()
    assert dialog.error.text() == "Stop the infusion before ending the session"
    ctx.service.stop_infusion(ANN)
    dialog.reason.setText("")
    dialog.accept()
    assert dialog.error.text() == "Reason is required"
    dialog.reason.setText("Transfer of care")
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert ctx.test_store.get_session(recorder.session_id).status == "aborted"


def test_resume_dialog_lists_open_sessions(qtbot, ctx):
    t = ctx.service.now()
    first = ctx.test_store.create_session(patient=patient().to_payload(), protocol="ketamine-iv",
                                     plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70).to_payload(),
                                     device="sim", user="ann", started_at=t)
    second = ctx.test_store.create_session(patient=patient(display_name="Max Roe").to_payload(), protocol="esketamine",
                                      plan=EsketaminePlan(dose_mg=56, lot_number="AB123").to_payload(),
                                      device="sim", user="ann", started_at=t + timedelta(minutes=1))
    dialog = ResumeDialog(ctx.test_store.open_sessions(), ctx.test_store)
    qtbot.addWidget(dialog)
    texts = [dialog.listing.item(i).text() for i in range(dialog.listing.count())]
    assert len(texts) == 2 and texts[0].startswith("Jo Doe") and "Max Roe" in texts[1]
    dialog.listing.setCurrentRow(1)
    dialog.accept()
    assert dialog.session_id == second and first != second
    later = ResumeDialog(ctx.test_store.open_sessions(), ctx.test_store)
    qtbot.addWidget(later)
    qtbot.mouseClick(later.cancel_button, Qt.MouseButton.LeftButton)
    assert later.result() == QDialog.DialogCode.Rejected and later.cancel_button.text() == "Not now"
    assert later.session_id is None


def test_starting_dosing_during_a_high_alarm_asks_for_the_reason_and_records_it(qtbot, ctx, monkeypatch):
    from types import SimpleNamespace

    from monitor.alarms.profile import Priority

    recorder = open_iv(ctx)
    spo2 = SimpleNamespace(active=True, kind="physiological", priority=Priority.HIGH, condition="spo2_low",
                           label="SpO2 low", value=85.0, limit=88.0)
    monkeypatch.setattr(ctx.service.pipeline, "alarm_state", lambda: SimpleNamespace(alarms=[spo2]))
    start = InfusionStartDialog(ctx)
    qtbot.addWidget(start)
    start.accept()
    assert "HIGH alarm active: SpO2 low 85% (limit 88)" in start.error.text() and start.outcome is None
    assert not start.during_alarm.box.isHidden() and recorder.state.phase is Phase.BASELINE
    start.during_alarm.reason.setText("spot check 97 %, probe was loose")
    start.accept()
    assert start.outcome == "started" and recorder.state.phase is Phase.INFUSION
    assert recorder.state.events()[-1].event.text.endswith("spot check 97 %, probe was loose")
