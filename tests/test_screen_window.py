"""The monitoring window as the nurse meets it (issue 12): it follows the monitor (an oximeter
collapses ECG, CO2 and the tiles it does not send; HR shows the pulse rate as PR), locks visibly,
keeps its messages, undoes a one-tap event, explains itself (?), closes Review with Escape and
opens maximised on a small screen."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QRect, Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QPushButton

from drivers.model import WaveformChunk, numeric
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.session.record import Correction, EventEntry
from tests.factories import sign_in
from tests.test_main_window import make_window  # noqa: F401 (the fixture)
from tests.vigil_windows import ANN, start_infusion
from ui.dialogs import set_dialog_runner
from ui import theme
from ui.main_window import VITALS_MIN_HEIGHT, MainWindow, show_at_start
from ui.status_line import UNDO_S

pytestmark = [pytest.mark.window,
              pytest.mark.qt_log_ignore(r"This plugin does not support (propagateSizeHints|raise|grabbing)")]

SILENT = "loop://?protocol=masimo"        # a monitor that sends nothing by itself: the test feeds it
QUIET = "sim://?scenario=normal&speed=20&waves=0&nibp=3600"


def feed(window: MainWindow, vitals: dict[str, float], waves: tuple[str, ...] = ()) -> None:
    now = window.service.now()
    items = [numeric(vital, value, "test", now) for vital, value in vitals.items()]
    items += [WaveformChunk(channel=channel, rate=100.0, start_time=now, samples=[0.5] * 10, source="test")
              for channel in waves]
    window.on_batch(items)


def test_a_pulse_oximeter_collapses_what_it_does_not_send_and_hr_shows_its_pulse_rate(make_window):
    window = make_window(SILENT)
    window.presence.grace_s = 0.0          # the device has been heard for its grace period
    assert all(tile.isVisible() for tile in window.tiles.values())   # nothing heard yet: everything shown
    feed(window, {"spo2": 97, "pr": 73, "pi": 2.4}, waves=("pleth",))
    window.refresh()
    shown = {key for key, tile in window.tiles.items() if tile.isVisible()}
    assert shown == {"hr", "spo2", "pi", "nibp_sys"}        # NIBP stays: BP is entered by hand
    hr = window.tiles["hr"]
    assert hr.label == "PR" and hr.value_text == "73"
    assert {key for key, wave in window.waves.items() if wave.isVisible()} == {"pleth"}
    assert not window.trends.row_shown("resp") and window.trends.row_shown("cardiac")
    feed(window, {"hr": 74})                                 # an ECG after all: HR is HR again, PR has its tile
    window.refresh()
    assert hr.label == "HR" and hr.value_text == "74" and window.tiles["pr"].isVisible()


def test_without_any_waveform_the_tiles_take_the_width(make_window):
    window = make_window(SILENT)
    window.presence.grace_s = 0.0
    feed(window, {"spo2": 97, "pr": 73})
    window.refresh()
    assert not window.wave_box.isVisible()
    assert window.tiles["spo2"].width() > window.width() // 3


def test_locked_veils_the_patient_and_the_actions_but_not_the_alarms(qtbot, make_window):
    window = make_window(QUIET)
    start_infusion(window)
    window.session_panel.refresh()
    assert window.session_panel.patient_label.full_text.startswith("Jo Doe")
    window.lock()
    QApplication.processEvents()
    panel, bar = window.session_panel, window.event_bar
    assert all(overlay.isVisible() for overlay in window.lock_overlays)
    assert "Locked — sign in" in window.lock_overlays[0].label.text()
    assert "Jo Doe" not in panel.patient_label.text() and "locked" in panel.patient_label.text()
    assert not bar.content.isEnabled() and "Sign in" in window.sign_button.text()
    zone = QRect(window.alarm_area.mapTo(window, QPoint(0, 0)), window.alarm_area.size())
    for overlay in window.lock_overlays:
        veil = QRect(overlay.mapTo(window, QPoint(0, 0)), overlay.size())
        assert veil.contains(QRect(overlay.target.mapTo(window, QPoint(0, 0)), overlay.target.size()))
        assert not veil.intersects(zone)
        for tile in window.tiles.values():
            assert not veil.intersects(QRect(tile.mapTo(window, QPoint(0, 0)), tile.size()))
    sign_in(window.context, ANN)
    QApplication.processEvents()
    assert not any(overlay.isVisible() for overlay in window.lock_overlays) and bar.content.isEnabled()


def test_confirmations_stay_until_the_next_and_the_log_keeps_the_last_few(make_window):
    window = make_window(QUIET)
    start_infusion(window)
    line = window.status_line
    window.show_message("Recorded Anxiety at 10:02:03 (Ann Lee)")
    assert line.text == "Recorded Anxiety at 10:02:03 (Ann Lee)"
    assert not any(t.isActive() and t.interval() > 0 and t.isSingleShot() for t in line.findChildren(type(window.frame_timer))
                   if t is not line._undo_timer)                         # no timer clears it
    window.show_refusal("Give a reason for pausing the infusion")
    assert line.text == "Give a reason for pausing the infusion"
    for n in range(10):
        window.show_message(f"message {n}")
    line._fill_log()
    texts = [action.text() for action in line.log_menu.actions()]
    assert len(texts) == 8 and texts[0].endswith("message 9") and texts[-1].endswith("message 2")


def test_a_one_tap_event_can_be_undone_for_ten_seconds_as_a_correction(qtbot, make_window):
    window = make_window(QUIET)
    start_infusion(window)
    bar, line = window.event_bar, window.status_line
    assert bar.record_event(bar_event(bar, "nausea"))
    assert line.undo_button.isVisible() and line.text.startswith("Recorded Nausea at")
    assert line._undo_timer.interval() == UNDO_S * 1000
    qtbot.mouseClick(line.undo_button, Qt.MouseButton.LeftButton)
    assert line.text.startswith("Undone: Nausea") and not line.undo_button.isVisible()
    entries = window.service.session().entries
    event = next(e for e in entries if isinstance(e, EventEntry) and e.event.get("kind") == "nausea")
    correction = next(e for e in entries if isinstance(e, Correction))
    assert correction.refers_to == event.seq and "undone" in correction.reason and correction.by.username == "ann"
    assert bar.record_event(bar_event(bar, "anxiety"))
    line._undo_timer.timeout.emit()                      # ten seconds later
    assert not line.undo_button.isVisible()
    line.undo()                                          # too late: nothing happens
    assert sum(isinstance(e, Correction) for e in window.service.session().entries) == 1
    assert bar.record_event(bar_event(bar, "headache"))
    window.lock()                                        # locked: nobody else undoes it
    assert not line.undo_button.isVisible()
    line.undo()
    assert sum(isinstance(e, Correction) for e in window.service.session().entries) == 1


def bar_event(bar, kind: str):
    from monitor.assessments import EVENTS  # noqa: PLC0415

    return EVENTS[kind]()


def test_session_actions_are_confirmed_in_words(make_window):
    window = make_window(QUIET)
    start_infusion(window)
    window.session_panel.action_done.emit("close")
    QApplication.processEvents()
    assert window.status_line.text.startswith("Session closed (discharged) at ")
    assert "close" not in window.status_line.text.split(" at ")[1]


def test_help_explains_the_alarms_the_keys_and_the_trend_marks(make_window):
    window = make_window(QUIET)
    shown = []
    set_dialog_runner(lambda dialog: shown.append(dialog) or 0)
    try:
        window.help_button.click()
    finally:
        set_dialog_runner(None)
    [dialog] = shown
    alarms = dialog.pages["Alarms"].toPlainText()
    for rule in window.service.session_profile.rules:
        if hasattr(rule, "label"):
            assert rule.label in alarms
    assert "SpO2 ≤ 91 %" in alarms and "15 s" in alarms
    keys = dialog.pages["Keys"].toPlainText()
    assert all(key in keys for key in ("F1", "F2", "F3", "F11", "F12", "Esc"))
    screen = dialog.pages["The screen"].toPlainText()
    assert "▼ event" in screen and "◆ assessment" in screen and "recovery" in screen
    assert "Condition delay" in dialog.pages["Delays"].toPlainText()


@pytest.mark.parametrize("keys", ["Esc", "Ctrl+W"])
def test_escape_and_ctrl_w_close_review_then_the_browser(qtbot, make_window, keys):
    window = make_window(QUIET)
    start_infusion(window)
    window.service.pipeline.writer.flush(10)
    browser = window.open_review()
    review = browser.open_session(window.service.pipeline.recorder.session_id)
    for shown in (review, browser):
        shown.activateWindow()
        qtbot.waitUntil(lambda shown=shown: QApplication.activeWindow() is shown, timeout=5000)
        QTest.keySequence(shown, QKeySequence(keys))
        qtbot.waitUntil(lambda shown=shown: not shown.isVisible(), timeout=5000)


def test_the_window_opens_maximised_and_its_vitals_are_never_squeezed_away(make_window, qtbot):
    window = make_window(QUIET)
    window.showNormal()
    show_at_start(window)
    assert window.isMaximized()
    window.showNormal()   # made small by hand (at 2560x1440 a smaller window once left the tiles 40 px high)
    window.resize(window.minimumSizeHint().width(), 200)
    QApplication.processEvents()
    least = theme.px(VITALS_MIN_HEIGHT)
    assert window.wave_box.height() >= least and window.tiles_box.height() >= least
    assert all(tile.height() > 0 for tile in window.tiles.values() if tile.isVisible())


def test_the_status_line_has_one_font_and_the_event_bar_no_broken_words(make_window):
    window = make_window(QUIET)
    start_infusion(window)
    window.show_message("Recorded Anxiety at 10:02:03 (Ann Lee)")
    status = [window.device_panel.label, window.message, window.user_label, window.sign_button,
              window.review_button, window.admin_button, window.help_button, window.status_line.log_button,
              window.device_panel.choose]
    assert {round(widget.font().pointSizeF(), 2) for widget in status} == {round(status[0].font().pointSizeF(), 2)}
    for button in window.event_bar.findChildren(QPushButton):
        assert not any(line.endswith("-") for line in button.text().split("\n")), button.text()


def test_a_lost_connection_shows_no_signal_quality(make_window):
    window = make_window(QUIET)
    panel = window.device_panel
    panel._on_link("connected", "")
    assert "signal: Good" in panel.label.full_text
    panel._on_link("lost", "cable pulled")
    assert "CONNECTION LOST" in panel.label.full_text and "signal:" not in panel.label.full_text
    panel._on_link("lost", "could not open port /dev/ttyUSB9: no such file; retry 3 in 1 s")
    assert "(could not open port /dev/ttyUSB9: no such file)" in panel.label.full_text   # why, not only that


def test_after_the_infusion_stops_the_panel_shows_no_rate(make_window):
    window = make_window(QUIET)
    start_infusion(window)
    panel = window.session_panel
    panel.refresh()
    assert "mg/h" in panel.plan_label.full_text and panel.values["rate"][1].isVisible()
    window.service.stop_infusion(ANN, "planned dose given")
    panel.refresh()
    assert "mg/h" not in panel.plan_label.full_text and "infusion stopped" in panel.plan_label.full_text
    assert not panel.values["rate"][0].isVisible() and not panel.values["rate"][1].isVisible()


def test_the_next_patient_starts_with_trends_and_a_log_of_their_own(qtbot, make_window):
    """Found on a fresh clone: after patient 1 was discharged, patient 2's trends showed patient 1's
    70 minutes (both desaturations) and *Log* listed patient 1's free-text note."""
    window = make_window(QUIET)
    start_infusion(window)
    QApplication.processEvents()
    window.show_message("Recorded note: Maria prefers her daughter on 555-0100")
    qtbot.waitUntil(lambda: any(len(s.ring.view()[0]) for s in window.trends.series.values()), timeout=10000)
    window.service.stop_infusion(ANN, "test")
    window.service.abort_session(window.context.token, "next patient")
    qtbot.waitUntil(lambda: window.service.session() is None, timeout=5000)
    window.show_message("Recorded: session ended")
    window.service.start_session(Patient(display_name="Ben Second", weight_kg=80),
                                 KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=80), ANN)
    window.show_message("Session started for Ben Second")    # said once his session is open: it stays
    qtbot.waitUntil(lambda: window._trend_session == window.service.session().session_id, timeout=5000)
    opened = window.service.session().opened_at.timestamp()
    assert all(t >= opened - 1.0 for s in window.trends.series.values() for t in s.ring.view()[0])
    assert [text for _, text, _ in window.status_line.log] == ["Session started for Ben Second"]


def test_f12_locks_and_on_a_locked_screen_signs_in_and_the_log_stays_shut(qtbot, make_window):
    from tests.test_ui_session_panel import pin_in
    from ui.dialogs import SignInDialog

    window = make_window(QUIET)
    start_infusion(window)
    window.show_message("Recorded Nausea at 10:02:03 (Ann Lee)")
    assert window.status_line.log_button.isEnabled()
    QTest.keyClick(window, Qt.Key.Key_F12)
    assert window.locked and not window.status_line.log_button.isEnabled()
    window.show_message("Alarms acknowledged at the bedside")
    assert not window.status_line.log_button.isEnabled()   # still shut while locked
    opened = []

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        opened.append(type(dialog))
        pin_in(dialog)

    QTimer.singleShot(0, answer)
    QTest.keyClick(window, Qt.Key.Key_F12)      # the button says "Sign in (F12)": so does the key
    assert opened == [SignInDialog] and not window.locked and window.status_line.log_button.isEnabled()
