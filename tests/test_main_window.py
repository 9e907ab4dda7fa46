"""The monitoring window end to end on the simulated monitor (pytest-qt, offscreen)."""

from __future__ import annotations

import gc
import sys

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from monitor.alarms.profile import Priority, default_profile
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from tests.factories import ensure_account, make_context, make_service, sign_in
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore
from ui import theme
from ui.audio import AlarmAudio
from ui.main_window import MainWindow

#: Drives whole windows (make test-fast leaves them out).
pytestmark = pytest.mark.window

ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)


@pytest.fixture
def make_window(qtbot, tmp_path):
    made = []

    def make(device: str = "sim://?scenario=normal&speed=30", audio: AlarmAudio | None = None) -> MainWindow:
        store = SessionStore(tmp_path / f"w{len(made)}.sqlite")
        service = make_service(device, store, ClinicSettings(), default_profile(), tick_s=100/1000)
        context = make_context(service, store, ClinicSettings(), default_profile())
        window = MainWindow(context, audio=audio or AlarmAudio(enabled=False))
        # not qtbot.addWidget: pytest-qt would close it before this fixture's teardown, and closing
        # during a session asks a question (modal) first
        window.resize(1366, 768)
        window.show()
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow, timeout=5000)  # key shortcuts go to the active window
        service.start()
        made.append((window, service, store))
        return window

    yield make
    for window, service, store in made:
        window.force_close = True
        window.close()
        service.shutdown()
        store.close()


def start_session(window: MainWindow) -> None:
    service = window.service
    sign_in(window.context, ANN)
    service.start_session(Patient(display_name="Jo Doe", weight_kg=70), KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), ANN)
    service.waive_pre_dose_check(ANN, "test")
    service.start_infusion(ANN)


def test_tiles_show_the_simulated_monitor(qtbot, make_window):
    window = make_window()
    qtbot.waitUntil(lambda: window.tiles["hr"].value_text not in ("--", ""), timeout=10000)
    hr = float(window.tiles["hr"].value_text)
    assert 55 <= hr <= 100
    qtbot.waitUntil(lambda: "/" in window.tiles["nibp_sys"].value_text, timeout=15000)
    assert window.tiles["spo2"].limits == ("91", "")
    assert window.waves["ecg"].write_position > 0


def test_audio_unavailable_is_a_medium_alarm_that_stays(qtbot, make_window):
    window = make_window()
    qtbot.waitUntil(lambda: window.alarm_state is not None, timeout=5000)
    state = window.service.alarm_state()
    assert [a.condition for a in state.alarms] == ["audio_unavailable"]
    assert state.visual_priority is Priority.MEDIUM
    assert "Alarm audio unavailable" in window.alarm_area.indicator.text()
    qtbot.keyClick(window, Qt.Key.Key_F1)       # acknowledged, but still shown
    assert window.service.alarm_state().alarms[0].acknowledged
    assert "Alarm audio unavailable" in window.alarm_area.indicator.text()


def test_sound_failing_during_a_session_raises_audio_unavailable_at_once(qtbot, make_window):
    audio = AlarmAudio(enabled=False)
    audio.available, audio.reason = True, ""          # sound works at start-up
    window = make_window(audio=audio)
    start_session(window)
    qtbot.waitUntil(lambda: window.alarm_state is not None, timeout=5000)
    assert "audio_unavailable" not in {a.condition for a in window.service.alarm_state().alarms}
    audio.fail("the sound output failed (the device disappeared)")     # e.g. the USB headset unplugged
    [alarm] = [a for a in window.service.alarm_state().alarms if a.condition == "audio_unavailable"]
    assert alarm.priority is Priority.MEDIUM and "device disappeared" in alarm.message
    assert window.alarm_area.audio_note == "NO ALARM SOUND"
    audio._set_available(True, "")                    # an output device came back
    assert "audio_unavailable" not in {a.condition for a in window.service.alarm_state().alarms}
    recorder = window.service.pipeline.recorder
    window.service.pipeline.writer.flush(10)
    rows = [r for r in window.service.pipeline.store.alarms(recorder.session_id) if r.condition == "audio_unavailable"]
    assert len(rows) == 1 and rows[0].ended_at is not None and rows[0].priority == "MEDIUM"


def test_high_alarm_shows_red_and_flashes_then_acknowledge_and_pause(qtbot, make_window):
    window = make_window("sim://?scenario=desaturation&speed=120&waves=0")
    start_session(window)
    qtbot.waitUntil(lambda: window.alarm_state is not None and window.alarm_state.visual_priority is Priority.HIGH,
                    timeout=30000)            # the window has the state the pipeline published
    window.alarm_area.animate(0.1)            # flash phase: lit
    assert window.alarm_area.indicator.text().startswith("HIGH")
    assert theme.PRIORITY_COLOURS["HIGH"] in window.alarm_area.indicator.styleSheet()
    window.alarm_area.animate(0.35)           # 2 Hz flashing: dark half of the cycle
    assert not window.alarm_area.indicator.styleSheet().startswith(f"background: {theme.PRIORITY_COLOURS['HIGH']}")
    assert window.tiles["spo2"].property("alarm") == "HIGH"
    qtbot.keyClick(window, Qt.Key.Key_F2)     # audio pause
    state = window.service.alarm_state()
    assert state.inactivation.audio_paused and state.audio_priority is None

    def paused_shown() -> bool:
        window.alarm_area.animate(1.0)
        return window.alarm_area.inactivation.text().startswith("AUDIO PAUSED")
    qtbot.waitUntil(paused_shown, timeout=5000)
    assert state.visual_priority is Priority.HIGH  # the visual signal never pauses
    qtbot.keyClick(window, Qt.Key.Key_F2)     # resume audio
    assert not window.service.alarm_state().inactivation.audio_paused
    qtbot.keyClick(window, Qt.Key.Key_F1)     # acknowledge
    assert all(a.acknowledged for a in window.service.alarm_state().alarms if a.active)
    window.service.pipeline.writer.flush(10)
    rows = window.service.pipeline.store.alarms(window.service.pipeline.recorder.session_id)
    actions = [(x.action, x.user) for row in rows for x in row.actions]
    assert ("acknowledge", "ann") in actions
    pauses = window.service.pipeline.store.alarm_actions(window.service.pipeline.recorder.session_id)
    assert [(x.action, x.user) for x in pauses if x.alarm_id is None][:2] == [("audio_pause", "ann"),
                                                                             ("audio_pause_cancel", "ann")]


def test_locking_keeps_monitoring_and_alarms(qtbot, make_window):
    window = make_window("sim://?scenario=desaturation&speed=120&waves=0")
    start_session(window)
    qtbot.keyClick(window, Qt.Key.Key_F12)
    assert window.context.user is None and "Screen locked" in window.user_label.text()
    qtbot.waitUntil(lambda: window.service.alarm_state().visual_priority in (Priority.MEDIUM, Priority.HIGH),
                    timeout=30000)
    qtbot.keyClick(window, Qt.Key.Key_F1)     # acknowledge works while locked, recorded as the bedside
    window.service.pipeline.writer.flush(10)
    rows = window.service.pipeline.store.alarms(window.service.pipeline.recorder.session_id)
    assert any(x.user == "bedside" and x.action == "acknowledge" for row in rows for x in row.actions)


def test_closing_during_a_session_asks_first(qtbot, make_window, monkeypatch):
    window = make_window()
    start_session(window)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.No)
    window.close()
    assert asked and window.isVisible()
    assert "resumed" in asked[0][2]


def test_many_ui_frames_do_not_drain_none(qtbot, make_window):
    window = make_window("sim://?scenario=normal&speed=60")
    start_session(window)
    qtbot.wait(1500)
    gc.collect()
    gc.disable()
    try:
        before = sys.getrefcount(None)
        lowest = before
        for i in range(3000):
            window.frame()
            if i % 100 == 0:
                window.refresh()
                lowest = min(lowest, sys.getrefcount(None))
                if lowest < before - 1000:
                    break
    finally:
        gc.enable()
    assert lowest >= before - 1000, f"sys.getrefcount(None) fell from {before} to {lowest}"


def test_a_session_left_open_by_a_crash_is_offered_and_resumed(qtbot, make_window, tmp_path):
    from monitor.app.recorder import SessionRecorder
    from monitor.store import StoreWriter
    from ui.app import startup_questions
    from ui.dialogs import ResumeDialog, SignInDialog, set_dialog_runner
    window = make_window()
    store = window.context.test_store
    ensure_account(store, ANN)
    writer = StoreWriter(store)
    writer.start()
    crashed = SessionRecorder.start(store, writer, patient=Patient(display_name="Jo Doe", weight_kg=70),
                                    plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), device="sim",
                                    actor=ANN, t=window.service.now(), settings=ClinicSettings(),
                                    profile=default_profile())
    writer.stop(10)  # the "crash": the session stays open
    qtbot.wait(300)  # Vigil is "down" for a while (simulated clock at 30x)
    shown = []

    def runner(dialog):
        shown.append(type(dialog).__name__)
        if isinstance(dialog, ResumeDialog):
            dialog.accept()
            return dialog.result()
        if isinstance(dialog, SignInDialog):
            sign_in(window.context, ANN)
            return 1
        return 0

    set_dialog_runner(runner)
    try:
        window.context.set_user(None)
        startup_questions(window)
    finally:
        set_dialog_runner(None)
    assert shown == ["ResumeDialog", "SignInDialog"]
    assert window.service.pipeline.recorder is not None and window.service.pipeline.recorder.session_id == crashed.session_id
    window.service.pipeline.writer.flush(10)
    assert store.gaps(crashed.session_id)


@pytest.mark.qt_log_ignore("This plugin does not support raise")  # the offscreen platform, when a window is raised
def test_review_opens_the_live_session_read_only_and_locking_closes_it(qtbot, make_window):
    window = make_window("sim://?scenario=normal&speed=60&waves=0")
    start_session(window)
    window.service.pipeline.writer.flush(10)
    browser = window.open_review()
    assert browser is not None and browser.isVisible()
    live = window.service.pipeline.recorder.session_id
    assert live in browser.session_ids()
    review = browser.open_session(live)
    assert review is not None and review.is_live and review.read_only
    qtbot.keyClick(window, Qt.Key.Key_F12)  # lock: patient records leave the screen
    assert window.context.user is None
    assert not browser.isVisible() and not browser.windows
    assert window.service.pipeline.recorder is not None  # monitoring and recording carry on


def test_review_needs_someone_signed_in(qtbot, make_window, monkeypatch):
    window = make_window()
    asked = []
    monkeypatch.setattr("ui.dialogs.run_modal", lambda dialog: asked.append(type(dialog).__name__) or False)
    assert window.open_review() is None
    assert asked == ["SignInDialog"] and window.browser is None


def test_a_bp_entered_by_hand_shows_on_the_tile_and_the_trend(qtbot, make_window):
    window = make_window("sim://?scenario=normal&speed=1&waves=0")
    start_session(window)
    t = window.service.now()
    window.service.record_nibp(142, 91, ANN, t=t)
    tile = window.tiles["nibp_sys"]

    def shown() -> bool:
        window.refresh()
        return tile.value_text == "142/91"
    qtbot.waitUntil(shown, timeout=5000)     # the reading reaches the window as a batch does
    assert "manual" in tile.subtext
    assert any(sys_ == 142 and dia == 91 for _, sys_, dia, _ in window.trends._nibp)


def test_ending_a_session_clears_its_phases_and_markers_from_the_trend(qtbot, make_window):
    window = make_window("sim://?scenario=normal&speed=1&waves=0")
    start_session(window)
    window.service.record_event({"kind": "nausea"}, ANN, t=window.service.now())

    def drawn(phases: bool) -> bool:
        window.refresh()
        counts = (window.trends.phase_count(), window.trends.marker_count())
        return all(c > 0 for c in counts) if phases else counts == (0, 0)
    qtbot.waitUntil(lambda: drawn(True), timeout=5000)
    window.service.stop_infusion(ANN)
    window.service.abort_session(window.context.token, "patient left")
    qtbot.waitUntil(lambda: drawn(False), timeout=5000)


def test_the_heap_built_to_start_is_frozen_after_the_first_frame():
    """What Vigil builds to start lives as long as it does: the cyclic collector stops scanning it,
    so a full collection set off later (a review window's thousands of objects) does not scan the
    whole heap on the window's thread (86 ms of still frames while a review opened)."""
    import gc

    from ui.app import settle_heap

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    Cycle()                          # garbage from starting up is collected, not frozen
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert not any(isinstance(o, Cycle) for o in gc.get_objects())
    finally:
        gc.unfreeze()


def test_garbage_cycles_are_collected_on_the_window_thread(qtbot, monkeypatch):
    """Left automatic, Python's cyclic collection ran on whichever thread allocated (the pipeline's,
    the writer's): a Qt object in a garbage cycle was destroyed off its own thread while the event
    loop ran, and the process died (SIGSEGV/SIGBUS in about one run in five of the session panel's
    tests at 150×). `vigil run`, `review` and `board` collect on the window's thread only."""
    import gc
    import threading

    import ui.app as app_module

    monkeypatch.setattr(app_module, "_collector", None)
    where: list[str] = []

    class Cycle:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            where.append(threading.current_thread().name)

    kept: list[list[object]] = []

    def worker() -> None:   # makes a garbage cycle, then allocates as a busy pipeline does
        Cycle()
        kept.extend([] for _ in range(5_000))

    try:
        app_module.collect_on_gui_thread()
        thread = threading.Thread(target=worker, name="pipeline")
        thread.start()
        thread.join()
        qtbot.waitUntil(lambda: bool(where), timeout=5000)
        assert where == [threading.main_thread().name]
    finally:
        app_module._collector.timer.stop()
        gc.enable()
