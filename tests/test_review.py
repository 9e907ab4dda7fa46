"""Session review: the browser and the review window on recorded sessions, offscreen.

A desaturation session with waveforms is recorded once for the module (about 25 simulated
minutes through the recorder, the alarm engine and the store); the review window is opened on it
and driven programmatically: zoom (the waveform request asks for about one bin per pixel of the
strip and returns the visible range only), cursor read-out against the store, clicking an alarm
row, exports. The browser filters a small set of sessions; a late entry goes to a closed session
and back into the table; an open session opens read-only and refreshes.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QDialog

from drivers.base import ConditionTracker
from drivers.model import DeviceCondition, numeric
from drivers.simulator.device import step_items
from drivers.simulator.physiology import PhysiologyModel
from monitor.alarms.profile import default_profile
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.app.recorder import SessionRecorder
from monitor.app.review import (
    Series,
    add_late_entry,
    reading_before,
    value_at,
    with_gaps,
)
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.errors import StoreError
from monitor.store import SessionStore, StoreWriter
from tests.factories import TEST_PIN, act, ensure_account, make_context, sign_in
from ui.context import UiContext
from ui.dialogs import SignInDialog, set_dialog_runner
from ui.review import LateEntryDialog, ReviewWindow, SessionBrowser
from ui.review.panels import vital_text

#: Drives whole windows (make test-fast leaves them out).
pytestmark = pytest.mark.window

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
NURSE = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
PIN = TEST_PIN


def record(store: SessionStore, scenario: str, seconds: float, *, waves: bool, start: datetime = T0,
           name: str = "Sim Patient", close: bool = True) -> int:
    """Record a simulated session through the recorder (as tests/test_recording.py does), with waveforms."""
    writer = StoreWriter(store)
    writer.start()
    model = PhysiologyModel(scenario, seed=7, start=start, waves=waves)
    recorder = SessionRecorder.start(store, writer, patient=Patient(display_name=name, weight_kg=70),
                                     plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70),
                                     device=f"sim://?scenario={scenario}", actor=NURSE, t=start,
                                     settings=ClinicSettings(), profile=default_profile())
    act(recorder, "waive_pre_dose_check", start, NURSE, "accelerated test")
    act(recorder, "start_infusion", start, NURSE)
    tracker = ConditionTracker("sim")
    lost = False
    baseline = False
    while model.t < seconds:
        step = model.advance(5.0)
        now = model.now()
        if step.disconnected != lost:
            lost = step.disconnected
            recorder.on_items([DeviceCondition(code="connection_lost", active=lost, source="sim", time=now)])
        if not lost:
            recorder.on_items(step_items(step, "sim", tracker))
        recorder.tick(now)
        if not baseline and model.t >= 60:
            baseline = True
            act(recorder, "record_baseline_from_start", now, NURSE)
    if close:
        recorder.finish(model.now(), signed_name="Ann Lee", meaning="reviewed and closed")
    assert writer.stop(30)
    return recorder.session_id


def context(store: SessionStore, live: int | None = None) -> UiContext:
    return make_context(SimpleNamespace(session_id=live), store, ClinicSettings(), default_profile())


@pytest.fixture(scope="module")
def desat(tmp_path_factory):
    """(store, session id) of a 25-minute desaturation session with ECG, pleth and CO2."""
    folder = tmp_path_factory.mktemp("review")
    store = SessionStore(folder / "review.sqlite")
    sid = record(store, "desaturation", 25 * 60, waves=True)
    ensure_account(store, NURSE)   # `vigil review` signs in with it
    yield store, sid
    store.close()


@pytest.fixture
def window(qtbot, desat):
    store, sid = desat
    win = ReviewWindow(context(store), sid)
    qtbot.addWidget(win)
    win.resize(1366, 768)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: win.plots.painted, timeout=5000)
    win.load_all_vitals()
    yield win
    win.close()


def spo2_alarm(store: SessionStore, sid: int):
    return next(a for a in store.alarms(sid) if a.condition == "spo2_low")


# ------------------------------------------------------------------------------ pure helpers
def test_cursor_helpers_and_gaps():
    t = np.array([0.0, 1.0, 2.0, 40.0, 41.0])
    v = np.array([1.0, np.nan, 3.0, 4.0, 5.0])
    q = np.array([0, 0, 0, 1 << 5, 0])  # the fourth value carries the artifact bit
    s = Series(t, v, q)
    assert value_at(s, 1.2).value == 1.0 or value_at(s, 1.2).value == 3.0
    assert value_at(s, 1.6).t == 2.0  # the missing value at t=1 is skipped
    assert value_at(s, 20.0) is None  # nothing within 5 s
    flagged = value_at(s, 39.0)
    assert flagged.value == 4.0 and flagged.flags == ("artifact",)
    assert reading_before(s, 39.9).t == 2.0 and reading_before(s, -1) is None
    gt, gv = with_gaps(t, v)
    assert len(gt) == 6 and math.isnan(gv[3]) and 2.0 < gt[3] < 40.0


# ------------------------------------------------------------------------------ the review window
def test_opening_draws_the_whole_session_with_markers_and_phases(window, desat):
    store, sid = desat
    plots = window.plots
    start, end = plots.x_range()
    session = store.get_session(sid)
    assert start <= session.started_at.timestamp() and end >= session.ended_at.timestamp()
    assert set(plots.wave_strips) == {"ecg", "pleth", "co2"}
    t, v = store.numerics(sid, "hr")
    x, y = plots.curves["hr"].getOriginalDataset()
    assert np.allclose(x[~np.isnan(y)], t[~np.isnan(v)] - plots.origin)  # the whole session, read once
    assert plots.marker_count() == window.model.rowCount() > 0
    assert plots.nibp_count() == len(store.numerics(sid, "nibp_sys")[0])
    kinds = {r.category for r in window.model.rows()}
    assert {"alarm", "infusion", "note"} <= kinds
    assert window.late_action.isVisible() and not window.refresh_action.isVisible()
    assert "Vital signs" in window.summary_panel.toPlainText()


def test_zoom_reads_waveforms_for_the_visible_range_at_the_plot_width(qtbot, window, desat):
    store, sid = desat
    plots = window.plots
    alarm = spo2_alarm(store, sid).started_at.timestamp()
    plots.set_range(alarm - 60, alarm + 60)
    plots.redraw()
    requests = {r.channel: r for r in plots.wave_log[-3:]}
    assert set(requests) == {"ecg", "pleth", "co2"}
    for channel, request in requests.items():
        width = plots.wave_strips[channel].box.boundingRect().width()
        assert abs(request.max_points - width) <= 2 and not request.background
        assert request.start == pytest.approx(alarm - 60) and request.end == pytest.approx(alarm + 60)
        assert request.decimated and request.n == request.max_points
        assert alarm - 60 <= request.first and request.last < alarm + 60
        x, y = plots.wave_data(channel)
        assert len(x) == 2 * request.n  # a min/max pair per pixel
        assert x.min() >= alarm - 60 - plots.origin and x.max() < alarm + 60 - plots.origin
    # at high zoom: the real samples
    plots.set_range(alarm, alarm + 2.0)
    plots.redraw()
    ecg = plots.wave_log[-3]
    assert ecg.channel == "ecg" and not ecg.decimated and ecg.n == 500
    x, y = plots.wave_data("ecg")
    stored = store.waveform(sid, "ecg", datetime.fromtimestamp(alarm, timezone.utc),
                            datetime.fromtimestamp(alarm + 2.0, timezone.utc))
    assert np.array_equal(y, stored.values) and plots.wave_message("ecg") == "samples"
    # zoomed out beyond the on-the-spot limit: read in the background, then drawn
    plots.fit_all()
    plots.redraw()
    qtbot.waitUntil(plots.waves_drawn, timeout=10000)
    wide = [r for r in plots.wave_log if r.generation == plots.generation]
    assert len(wide) == 3 and all(r.background and r.decimated for r in wide)


def test_mouse_wheel_zooms_time_only(qtbot, window):
    plots = window.plots
    plots.fit_all()
    y_before = plots.trend_strips["spo2"].box.viewRange()[1]
    start, end = plots.x_range()
    box = plots.trend_strips["cardiac"].box
    centre = plots.graphics.mapFromScene(box.sceneBoundingRect().center())
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent
    event = QWheelEvent(QPointF(centre), QPointF(plots.graphics.mapToGlobal(centre)), QPoint(0, 0), QPoint(0, 240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    plots.graphics.viewport().setFocus()
    from PySide6.QtWidgets import QApplication
    QApplication.sendEvent(plots.graphics.viewport(), event)
    new_start, new_end = plots.x_range()
    assert new_end - new_start < 0.9 * (end - start)
    assert plots.trend_strips["spo2"].box.viewRange()[1] == y_before
    lo, hi = plots.region.getRegion()
    assert lo == pytest.approx(new_start - plots.origin) and hi == pytest.approx(new_end - plots.origin)


def test_cursor_reads_out_the_stored_values(window, desat):
    store, sid = desat
    alarm = spo2_alarm(store, sid).started_at.timestamp()
    at = alarm + 30.4
    window.plots.set_cursor(at)
    shown = 0
    for vital in ("hr", "pr", "spo2", "pi", "rr", "etco2", "temp"):
        t, v = store.numerics(sid, vital, datetime.fromtimestamp(at - 5, timezone.utc),
                              datetime.fromtimestamp(at + 5, timezone.utc))
        ok = ~np.isnan(v)
        if not ok.any():
            assert window.cursor_panel.value_text(vital) in ("—", None)
            continue
        nearest = v[ok][np.argmin(np.abs(t[ok] - at))]
        assert window.cursor_panel.value_text(vital) == vital_text(vital, nearest), vital
        shown += 1
    assert shown >= 5
    t, sys_ = store.numerics(sid, "nibp_sys", end=datetime.fromtimestamp(at, timezone.utc))
    _, dia = store.numerics(sid, "nibp_dia", end=datetime.fromtimestamp(at, timezone.utc))
    assert window.cursor_panel.value_text("nibp").startswith(f"{sys_[-1]:.0f}/{dia[-1]:.0f}")
    assert "old" in window.cursor_panel.notes["nibp"].text()
    assert "from start" in window.cursor_panel.time_label.full_text


def test_clicking_an_alarm_row_moves_the_view_and_the_cursor(qtbot, window, desat):
    store, sid = desat
    plots = window.plots
    alarm = spo2_alarm(store, sid).started_at.timestamp()
    plots.set_range(plots.origin, plots.origin + 120)
    plots.redraw()
    rows = window.model.rows()
    index = next(i for i, r in enumerate(rows) if r.category == "alarm" and r.kind == "spo2_low")
    assert not window.model.is_visible(index)
    view_index = window.filter.mapFromSource(window.model.index(index, 2))
    window.table.scrollTo(view_index)
    rect = window.table.visualRect(view_index)
    qtbot.mouseClick(window.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    start, end = plots.x_range()
    assert start <= alarm <= end and end - start == pytest.approx(120, abs=1)
    assert plots.cursor_t == pytest.approx(alarm)
    plots.redraw()
    assert window.model.is_visible(index)
    assert "SpO2" in rows[index].text and rows[index].priority == "HIGH"
    assert rows[index].by.startswith("ack.") or rows[index].by == ""


def exported(qtbot, job):
    qtbot.waitUntil(lambda: job.done, timeout=30_000)
    return job.result


def test_export_from_the_review_window(window, desat, tmp_path, qtbot):
    store, sid = desat
    job = window.export("csv", tmp_path / "session.zip")
    assert window.export("fhir", tmp_path / "other.json") is None  # one at a time
    csv = exported(qtbot, job)
    assert csv is not None and csv.stat().st_size > 1000 and window.export_button.isEnabled()
    fhir = exported(qtbot, window.export("fhir", tmp_path / "bundle.json", deidentify=True))
    assert fhir is not None and "Sim Patient" not in fhir.read_text()
    assert exported(qtbot, window.export("rems", tmp_path / "rems.pdf")) is None  # an IV session has no REMS form
    assert "esketamine" in window.error.text() and window.error.isVisible()
    assert not (tmp_path / "rems.pdf").exists()
    assert not window.export_actions["rems"].isEnabled()


# ------------------------------------------------------------------------------ late entries
class Runner:
    def __init__(self, handlers):
        self.handlers = handlers
        self.seen = []

    def __call__(self, dialog: QDialog) -> int:
        self.seen.append(type(dialog).__name__)
        self.handlers[type(dialog)](dialog)
        return dialog.result()


def test_a_late_entry_on_a_closed_session_reaches_the_store_and_the_table(qtbot, tmp_path):
    store = SessionStore(tmp_path / "late.sqlite")
    ensure_account(store, NURSE)
    sid = record(store, "normal", 600, waves=False)
    ctx = context(store)
    win = ReviewWindow(ctx, sid)
    qtbot.addWidget(win)
    win.finish_opening()
    at = T0 + timedelta(minutes=4, seconds=30)
    win.plots.set_cursor(at.timestamp())

    def no_reason(dialog: LateEntryDialog) -> None:
        dialog.text.setPlainText("Patient said the room felt cold")
        dialog.accept()
        assert "reason" in dialog.error.text().lower()   # refused, the dialog stays open
        dialog.reject()

    runner = Runner({LateEntryDialog: no_reason})
    set_dialog_runner(runner)
    try:
        assert win.add_late_entry() is None
        assert not [e for e in store.entries(sid) if e.is_late]

        def pin_in(dialog: SignInDialog) -> None:
            dialog.staff_id.setText("ann")
            dialog.pin.setText(PIN)
            dialog.accept()

        def fill(dialog: LateEntryDialog) -> None:
            assert dialog.time() == at
            dialog.text.setPlainText("Patient said the room felt cold")
            dialog.reason.setText("charted at review from the paper note")
            dialog.accept()

        runner.handlers = {LateEntryDialog: fill, SignInDialog: pin_in}
        entry_id = win.add_late_entry()
    finally:
        set_dialog_runner(None)
    assert runner.seen[-2:] == ["LateEntryDialog", "SignInDialog"]
    [entry] = [e for e in store.entries(sid) if e.is_late]
    assert entry.id == entry_id and entry.user == "ann" and entry.reason == "charted at review from the paper note"
    assert entry.t == at and entry.payload["event"] == {"kind": "note", "text": "Patient said the room felt cold"}
    assert any(r.action == "late_entry_added" for r in store.audit_rows(sid))
    [row] = [r for r in win.model.rows() if r.mark == "late"]
    assert row.t == at and "room felt cold" in row.text and row.by == "Ann Lee"
    assert row.reason == "charted at review from the paper note"
    assert win.plots.marker_count() == win.model.rowCount()
    # a structured event, refused outside the session
    with pytest.raises(ValueError, match="within the session"):
        add_late_entry(store, sid, {"kind": "nausea", "severity": "mild"}, T0 - timedelta(minutes=1), NURSE, "late")
    win.close()
    store.close()


# ------------------------------------------------------------------------------ browser and live
@pytest.mark.qt_log_ignore("This plugin does not support raise")  # the offscreen platform, when a window is raised
def test_a_held_loader_reads_only_what_the_first_frame_needs_until_told(desat):
    """While the window makes its widgets the loader reads the record, the NIBP readings and the
    envelopes only: reading every vital in full meanwhile took the interpreter lock from the
    window's thread (the monitoring window's frames with it)."""
    from monitor.app.review import REVIEW_VITALS, ReviewLoader

    store, sid = desat
    records = context(store).records
    asked: list[str] = []
    numerics = records.numerics

    def counting(session_id, vital, *args, **kwargs):
        asked.append(vital)
        return numerics(session_id, vital, *args, **kwargs)

    records.numerics = counting
    loader = ReviewLoader(records, sid, REVIEW_VITALS, record=lambda: "the record", envelopes=["hr", "spo2"],
                          span=(T0.timestamp(), T0.timestamp() + 1500), hold=True)
    assert loader.record(10) == "the record"
    loader.envelope("spo2", 10)
    loader.join(0.3)
    assert set(asked) == {"nibp_sys", "nibp_dia", "nibp_mean"} and not loader.done()
    loader.go()
    loader.join(10)
    assert loader.done() and set(asked) == set(REVIEW_VITALS)
    held = ReviewLoader(records, sid, ["hr", "nibp_sys"], hold=True)
    assert len(held.get("hr", 10).t) > 0        # asking for a vital in full lets the loader go on


def test_the_vitals_in_full_wait_for_the_first_waveforms(qtbot, desat, monkeypatch):
    """The whole session's waveforms and every vital read at once took the interpreter lock from the
    window's thread (100–120 ms still frames): the vitals in full wait for the first view's
    waveforms (or, at most, WAVES_FIRST_S)."""
    from ui.review import window as review_window

    monkeypatch.setattr(review_window, "WAVES_FIRST_S", 60.0)
    store, sid = desat
    ctx = context(store)
    release = threading.Event()
    asked: list[str] = []
    numerics, waveform = ctx.records.numerics, ctx.records.waveform

    def counting(session_id, vital, *args, **kwargs):
        asked.append(vital)
        return numerics(session_id, vital, *args, **kwargs)

    def slow(*args, **kwargs):
        release.wait(20)
        return waveform(*args, **kwargs)

    ctx.records.numerics, ctx.records.waveform = counting, slow
    win = ReviewWindow(ctx, sid)
    qtbot.addWidget(win)
    win.resize(1366, 768)
    win.show()
    qtbot.waitUntil(lambda: win.ready and win.plots.painted, timeout=10000)
    qtbot.wait(300)
    assert set(asked) <= {"nibp_sys", "nibp_dia", "nibp_mean"} and win.loading
    release.set()
    qtbot.waitUntil(lambda: not win.loading, timeout=20000)
    assert "hr" in asked and len(win.numerics["hr"].t) > 0


def test_the_review_opens_a_piece_per_event_loop_turn(qtbot, desat):
    """Opening a 12-hour review built every plot, read the record and sized the table in one go on
    the window's thread: the monitoring window it opens from stood still for about a second. Now
    the constructor only makes the frame and each strip, the record, the table and the trends
    follow on their own event-loop turns, so a timer of the monitoring window fires in between."""
    store, sid = desat
    seen: list[tuple[bool, int, int]] = []
    beat = QTimer()
    beat.setInterval(0)
    win = None

    def note() -> None:
        if win is not None and not win.ready:
            seen.append((win.ready, len(win.plots.__dict__.get("trend_strips", {})), win.model.rowCount()))
            if len(seen) == 3:
                win.resize(1500, 900)   # a window manager placing the window while it opens

    beat.timeout.connect(note)
    beat.start()
    win = ReviewWindow(context(store), sid)
    qtbot.addWidget(win)
    assert not win.ready and win.model.rowCount() == 0 and not win.plots.built
    assert not win.export_button.isEnabled() and "Opening session" in win.header.text()
    win.show()
    qtbot.waitUntil(lambda: win.ready, timeout=10000)
    beat.stop()
    strips = 1 + len(win.plots.trend_strips) + len(win.plots.wave_strips)
    assert len(seen) >= strips                                   # the loop ran between the pieces …
    assert [n for _, n, _ in seen] == sorted(n for _, n, _ in seen)   # … while the strips came one by one
    assert win.model.rowCount() == len(win.rows) > 0 and win.plots.marker_count() > 0
    assert win.export_button.isEnabled() and win.view.patient.display in win.header.text()
    # the strips fill the plots' height (made on screen one by one, they kept the height the first
    # ones needed: the whole session squeezed into the top sixth of the window)
    qtbot.waitUntil(lambda: win.plots.painted, timeout=5000)
    bottom = win.plots.overview.plot.mapRectToScene(win.plots.overview.plot.boundingRect()).bottom()
    assert bottom >= 0.9 * win.plots.graphics.viewport().height()
    assert all(strip.plot.opacity() == 1.0 for strip in (*win.plots.main_strips, win.plots.overview))


def test_closing_a_review_still_reading_does_not_wait_for_it(qtbot, desat):
    """Closing a 12-hour review while its vitals were still being read waited for every one of them
    (and for the waveform read in progress): the monitoring window stood still for up to 0.5 s.
    A closed review reads nothing more and does not wait for the read it is doing."""
    store, sid = desat
    ctx = context(store)
    first_read, release = threading.Event(), threading.Event()
    reads: list[str] = []
    numerics = ctx.records.numerics

    def slow(session_id, vital, *args, **kwargs):
        reads.append(vital)
        if len(reads) == 1:
            first_read.set()
            release.wait(10)
        return numerics(session_id, vital, *args, **kwargs)

    ctx.records.numerics = slow
    win = ReviewWindow(ctx, sid)
    assert first_read.wait(10)
    loader = win._loader
    win.close()                      # returns with the read still blocked …
    assert not release.is_set()
    release.set()
    loader.join(10)
    assert reads == reads[:1]        # … and nothing more is read once it ends
    assert not loader.done()


def test_a_session_that_cannot_be_read_is_said_in_the_browser(qtbot, tmp_path):
    store = SessionStore(tmp_path / "damaged.sqlite")
    sid = record(store, "normal", 120, waves=False)
    ctx = context(store)
    browser = SessionBrowser(ctx)
    qtbot.addWidget(browser)

    def unreadable(session_id: int):
        raise StoreError(f"entry 7 of session {session_id} cannot be read")

    ctx.records.session_view = unreadable  # the record is read once the window is up
    win = browser.open_session(sid)
    assert isinstance(win, ReviewWindow)
    qtbot.waitUntil(lambda: not browser.windows, timeout=10000)
    assert not browser.error.isHidden()
    assert browser.error.text() == f"Session {sid} cannot be opened: entry 7 of session {sid} cannot be read"
    browser.close()
    store.close()


@pytest.mark.qt_log_ignore("This plugin does not support raise")  # the offscreen platform, when a window is raised
def test_browser_filters_and_opens_sessions_including_the_live_one(qtbot, desat, tmp_path):
    store = SessionStore(tmp_path / "browse.sqlite")
    alarmed = record(store, "desaturation", 16 * 60, waves=False)
    quiet = store.create_session(patient={"display_name": "Jo Doe", "mrn": "MRN-77"}, protocol="esketamine",
                                 plan={}, device="sim", user="ann", started_at=T0 + timedelta(days=2))
    store.close_session(quiet, user="ann", signed_name="Ann Lee", meaning="reviewed and closed",
                        at=T0 + timedelta(days=2, hours=2))
    live = record(store, "normal", 300, waves=False, start=T0 + timedelta(days=3), name="Live Person", close=False)
    ctx = context(store, live=live)
    browser = SessionBrowser(ctx)
    qtbot.addWidget(browser)
    assert browser.session_ids() == [live, quiet, alarmed]
    assert browser.model.index(0, 4).data() == "recording"
    browser.patient.setText("jo")
    qtbot.waitUntil(lambda: browser.session_ids() == [quiet], timeout=3000)
    browser.patient.setText("MRN-77")
    assert [s.id for s in browser.search()] == [quiet]
    browser.patient.clear()
    browser.alarms.setCurrentIndex(browser.alarms.findData(True))
    assert browser.session_ids() == [alarmed]
    browser.alarms.setCurrentIndex(0)
    browser.protocol.setCurrentIndex(browser.protocol.findData("esketamine"))
    assert browser.session_ids() == [quiet]
    browser.protocol.setCurrentIndex(0)
    browser.status.setCurrentIndex(browser.status.findData("open"))
    assert browser.session_ids() == [live]
    browser.status.setCurrentIndex(0)
    browser.use_dates.setChecked(True)
    browser.date_from.setDate((T0 + timedelta(days=1)).astimezone().date())
    browser.date_to.setDate((T0 + timedelta(days=2)).astimezone().date())
    assert browser.session_ids() == [quiet]
    browser.use_dates.setChecked(False)

    # the live session opens read-only and refreshes
    win = browser.open_session(live)
    assert isinstance(win, ReviewWindow) and win.is_live and win.read_only
    assert win.banner.text().startswith("LIVE") and not win.late_action.isVisible()
    assert win.refresh_action.isVisible() and win.auto_refresh.isChecked()
    assert browser.open_session(live) is win
    win.load_all_vitals()
    before = len(win.numerics["hr"].t)
    last = win.numerics["hr"].t[-1]
    more = [numeric("hr", 80.0 + i, "sim", datetime.fromtimestamp(last + 1 + i, timezone.utc)) for i in range(30)]
    store.add_observations(live, more)
    win.refresh()
    assert len(win.numerics["hr"].t) == before + 30
    assert win.plots.duration >= last + 30 - win.plots.origin
    win.close()
    assert live not in browser.windows
    opened = browser.open_session(alarmed)
    assert opened is not None and opened.late_action.isVisible()
    browser.close()
    store.close()


# ------------------------------------------------------------------------------ vigil review
@pytest.mark.qt_log_ignore("This plugin does not support raise")
def test_vigil_review_opens_the_browser_after_sign_in(qtbot, desat, monkeypatch):
    from PySide6.QtWidgets import QApplication

    import main
    store, sid = desat
    seen = {}

    def signed_in(dialog):
        sign_in(dialog.context, NURSE)
        return True

    def exec_(*_):
        tops = QApplication.topLevelWidgets()
        seen["browser"] = next(w for w in tops if isinstance(w, SessionBrowser) and w.isVisible())
        seen["review"] = [w for w in tops if isinstance(w, ReviewWindow) and w.isVisible()]
        seen["ids"] = seen["browser"].session_ids()
        seen["browser"].close()
        return 0

    monkeypatch.setattr("ui.dialogs.run_modal", signed_in)
    monkeypatch.setattr(QApplication, "exec", exec_)
    assert main.main(["review", str(sid), "--db", str(store.path)]) == 0
    assert sid in seen["ids"] and [w.session_id for w in seen["review"]] == [sid]
    assert not seen["browser"].windows  # closing the browser closed its review windows
    # the test's store holds the database for writing, as a recording Vigil would: read-only review
    assert not seen["review"][0].late_action.isEnabled()
    monkeypatch.setattr("ui.dialogs.run_modal", lambda dialog: False)  # nobody signs in
    assert main.main(["review", "--db", str(store.path)]) == 1


def test_an_export_runs_in_a_child_process_reports_progress_and_can_be_cancelled(window, tmp_path, qtbot,
                                                                                  monkeypatch):
    """The export runs in a child process (on a worker thread of the window's process its Python
    work took the interpreter lock from the window for half of every slice: 100–130 ms still frames
    while a 12-hour session was exported), reports its progress and stops when cancelled."""
    import subprocess

    import monitor.export.child as child
    started = []
    popen = subprocess.Popen

    def spy(args, **kwargs):
        started.append((threading.current_thread(), args))
        return popen(args, **kwargs)

    monkeypatch.setattr(child.subprocess, "Popen", spy)
    fractions: list[float] = []
    job = window.export("edf", tmp_path / "whole.edf")
    job.progressed.connect(fractions.append)
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.result == tmp_path / "whole.edf" and job.result.stat().st_size > 0
    thread, args = started[0]
    assert thread is not threading.main_thread() and args[1:3] == ["-m", "monitor.export.child"]
    assert fractions and any(0 < f < 1 for f in fractions) and fractions[-1] == 1.0
    assert "Exported EDF" in window.statusBar().currentMessage()

    job = window.export("edf", tmp_path / "cancelled.edf")
    assert window.export_cancel.isVisible() and not window.export_button.isEnabled()
    window.cancel_export()
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert job.cancelled and job.result is None and not (tmp_path / "cancelled.edf").exists()
    assert not list(tmp_path.glob("*cancelled*"))          # nothing half-written left either
    assert "cancelled" in window.statusBar().currentMessage() and not window.export_cancel.isVisible()
    assert window.export_button.isEnabled()


def test_a_closed_review_window_gives_its_memory_back(desat, qtbot, monkeypatch):
    """A 24-hour review holds ~100 MB of arrays; glibc keeps freed heap, so without handing it back
    RSS grew by tens of MB per window opened and closed (issue 10 §4)."""
    import weakref

    from PySide6.QtCore import QCoreApplication, QEvent

    from ui.review import window as review_window
    for _ in range(3):   # windows of earlier tests, deleted late, give theirs back first
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QCoreApplication.processEvents()
    given_back = []
    monkeypatch.setattr(review_window, "_return_freed_memory", lambda: given_back.append(True))
    store, sid = desat
    win = ReviewWindow(context(store), sid)
    win.show()
    qtbot.waitUntil(lambda: win.plots.painted, timeout=5000)
    win.load_all_vitals()
    gone = weakref.ref(win)
    win.close()
    win.deleteLater()
    del win
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    qtbot.waitUntil(lambda: given_back == [True], timeout=5000)
    import gc
    gc.collect()
    assert gone() is None
