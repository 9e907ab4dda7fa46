"""The live window's display widgets: ring buffers, numeric tiles, sweep waveforms, session trends.

Run headless (``QT_QPA_PLATFORM=offscreen``). The widgets decide nothing clinical; these tests
check that they show exactly what they are given, cheaply. Timings live in the ``__main__``
benchmark at the end (``python -m tests.test_ui_widgets``), never in assertions.
"""

from __future__ import annotations

import gc
import math
import sys
from collections import deque
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PySide6.QtGui import QColor

from ui import theme
from ui.ringbuffer import RingBuffer, TimedRing
from ui.tiles import NibpTile, NumericTile
from ui.trends import GAP_S, ClockAxis, MinutesAxis, SessionTrends
from ui.waves import ERASE_GAP_S, SweepWave, nice_step

#: The offscreen platform warns when a top-level widget is shown; that is not a fault here.
pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")

START = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- ring buffer
def test_ring_buffer_starts_as_nan_gaps():
    ring = RingBuffer(5)
    assert len(ring) == 0
    view = ring.view()
    assert view.shape == (5,) and view.dtype == np.float32 and np.isnan(view).all()


def test_ring_buffer_wraps_and_stays_contiguous_without_copying():
    ring = RingBuffer(5)
    ring.extend([1, 2, 3])
    np.testing.assert_array_equal(ring.view()[-3:], [1, 2, 3])
    assert np.isnan(ring.view()[:2]).all()
    ring.extend(np.arange(10, 17))  # longer than the capacity: only the newest five stay
    view = ring.view()
    np.testing.assert_array_equal(view, [12, 13, 14, 15, 16])
    assert len(ring) == 5 and ring.written == 10
    assert view.flags.c_contiguous and np.shares_memory(view, ring._buffer)
    ring.extend([20, 21])  # wraps in the middle of the storage
    np.testing.assert_array_equal(ring.view(), [14, 15, 16, 20, 21])
    np.testing.assert_array_equal(ring.view(2), [20, 21])
    assert np.shares_memory(ring.view(), ring._buffer)


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 40),
       chunks=st.lists(st.lists(st.floats(-1e6, 1e6, width=32), max_size=90), max_size=25))
def test_ring_buffer_matches_a_reference_deque(capacity, chunks):
    ring = RingBuffer(capacity)
    reference: deque[float] = deque(maxlen=capacity)
    for chunk in chunks:
        ring.extend(chunk)
        reference.extend(chunk)
        view = ring.view()
        assert len(view) == capacity and view.flags.c_contiguous
        assert len(ring) == len(reference)
        np.testing.assert_array_equal(ring.view(len(reference)), np.array(reference, dtype=np.float32))
        assert np.isnan(view[:capacity - len(reference)]).all()


def test_growing_ring_keeps_everything():
    ring = RingBuffer(4, grow=True)
    for start in range(0, 100, 7):
        ring.extend(np.arange(start, start + 7))
    assert ring.capacity >= 105 and len(ring) == 105
    np.testing.assert_array_equal(ring.view(len(ring)), np.arange(105))


def test_growing_ring_keeps_no_mirror_copy():
    # a 24-hour trend: 86 400 samples a vital; a growing ring never wraps, so it needs no second
    # copy of its samples, only the doubling's slack (at most twice their bytes)
    ring = TimedRing(4096)
    for start in range(0, 86_400, 600):
        ring.extend(np.arange(start, start + 600, dtype=np.float64), np.full(600, 97.0))
    assert len(ring) == 86_400
    assert ring.nbytes <= 2 * 86_400 * (8 + 4)
    t, v = ring.view()
    np.testing.assert_array_equal(t, np.arange(86_400))
    np.testing.assert_array_equal(v, np.full(86_400, 97.0, dtype=np.float32))
    assert ring.last_time() == 86_399
    fixed = RingBuffer(1000)
    assert fixed.nbytes == 2 * 1000 * 4          # a fixed ring keeps its mirror: contiguous views when wrapped


def test_timed_ring_views_only_what_was_written():
    ring = TimedRing(2)
    assert ring.last_time() is None
    for i in range(5):
        ring.append(100.0 + i, i * 10)
    t, v = ring.view()
    np.testing.assert_array_equal(t, [100, 101, 102, 103, 104])
    np.testing.assert_array_equal(v, [0, 10, 20, 30, 40])
    assert ring.last_time() == 104
    with pytest.raises(ValueError):
        ring.extend([1.0, 2.0], [1.0])
    ring.clear()
    assert len(ring) == 0 and ring.view()[0].size == 0


# --------------------------------------------------------------------------- tiles
@pytest.fixture
def tile(qtbot):
    widget = NumericTile("hr", "HR", "bpm")
    widget.resize(300, 130)
    qtbot.addWidget(widget)
    return widget


def _ink_rows(image, colour: QColor) -> tuple[int, int]:
    """First and last row of an image holding pixels near ``colour``."""
    array = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine())
    rgb = array[:, :image.width() * 4].reshape(image.height(), image.width(), 4)[:, :, [2, 1, 0]].astype(int)
    target = np.array([colour.red(), colour.green(), colour.blue()])
    rows = np.where((np.abs(rgb - target).sum(axis=2) < 60).any(axis=1))[0]
    return int(rows.min()), int(rows.max())


def test_tile_shows_dashes_numbers_and_texts(tile):
    assert tile.value_text == "--"
    tile.set_value(72.4)
    assert tile.value_text == "72"
    tile.set_value(None)
    assert tile.value_text == "--"
    tile.set_value(float("nan"))
    assert tile.value_text == "--"
    tile.set_value("120/80")
    assert tile.value_text == "120/80"
    temp = NumericTile("temp", "Temp", "°C", decimals=1)
    temp.set_value(36.84)
    temp.set_limits(35.5, None)
    assert temp.value_text == "36.8" and temp.limits == ("35.5", "")
    tile.set_subtext("PR 72")
    assert tile.subtext == "PR 72"


def test_tile_limits_and_trend_arrow(tile):
    tile.set_limits(45, 120)
    assert tile.limits == ("45", "120")
    tile.set_limits(None, 120)
    assert tile.limits == ("", "120")
    tile.set_trend(3)
    assert tile.arrow == "↑"
    tile.set_trend(-1)
    assert tile.arrow == "↓"
    tile.set_trend(0)
    assert tile.arrow == ""


def test_tile_value_fills_most_of_the_height_without_clipping(qtbot, tile):
    tile.set_value(88)
    tile.set_limits(45, 120)
    image = tile.grab().toImage()
    top, bottom = _ink_rows(image, theme.colour("hr"))
    assert bottom - top >= 0.55 * tile.height()  # the label is the same colour, but small and on top
    assert top > 0 and bottom < tile.height() - 1  # nothing cut at the edges
    small = tile.value_font_pixels()
    tile.resize(600, 260)
    assert tile.value_font_pixels() >= 1.8 * small  # the font follows the tile's size


def test_tile_dims_stale_values(tile):
    _, normal = tile.colours()
    assert normal == theme.colour("hr")
    tile.set_dimmed(True)
    assert tile.colours()[1] == QColor(theme.TEXT_DIM)
    tile.set_dimmed(False)
    assert tile.colours()[1] == theme.colour("hr")


def test_tile_alarm_colours_and_flashing(tile):
    tile.set_alarm("HIGH")
    assert tile.property("alarm") == "HIGH"
    hz = theme.FLASH_HZ["HIGH"]
    tile.set_flash_phase(0.0)
    background, value = tile.colours()
    assert background == QColor(theme.PRIORITY_COLOURS["HIGH"]) and value == QColor(theme.PRIORITY_TEXT["HIGH"])
    tile.set_flash_phase(0.75 / hz)  # second half of a period: unlit
    assert tile.colours()[0] == QColor(theme.PANEL)
    tile.set_flash_phase(1.25 / hz)
    assert tile.colours()[0] == QColor(theme.PRIORITY_COLOURS["HIGH"])
    image = tile.grab().toImage()
    assert image.pixelColor(tile.width() // 2, tile.height() - 3) == QColor(theme.PRIORITY_COLOURS["HIGH"])

    tile.set_alarm("LOW")  # steady
    for t in np.linspace(0, 3, 31):
        tile.set_flash_phase(float(t))
        assert tile.colours()[0] == QColor(theme.PRIORITY_COLOURS["LOW"])
    tile.set_alarm(None)
    tile.set_flash_phase(0.0)
    assert tile.colours()[0] == QColor(theme.PANEL) and tile.property("alarm") == ""
    with pytest.raises(ValueError):
        tile.set_alarm("CRITICAL")


def test_tile_repaints_only_on_change(tile, monkeypatch):
    calls = []
    monkeypatch.setattr(tile, "update", lambda *args: calls.append(args))
    tile.set_value(70)
    tile.set_value(70.2)  # same text
    tile.set_limits(45, 120)
    tile.set_limits(45.0, 120.0)
    tile.set_trend(1)
    tile.set_trend(2)
    tile.set_flash_phase(0.0)  # no alarm: nothing flashes
    assert len(calls) == 3


def test_nibp_tile_reading():
    tile = NibpTile()
    tile.set_reading(128, 84, 99, "3 min ago")
    assert tile.value_text == "128/84" and tile.subtext == "MAP 99 · 3 min ago"
    assert tile.colours()[1] == theme.colour("nibp")
    tile.set_reading(None, None)
    assert tile.value_text == "--"


# --------------------------------------------------------------------------- sweep waves
@pytest.fixture
def wave(qtbot):
    widget = SweepWave("pleth", "Pleth", 100.0, seconds=2.0, y_range=(0.0, 1.0))
    widget.resize(500, 120)
    qtbot.addWidget(widget)
    return widget


def test_sweep_overwrites_left_to_right_with_an_erase_gap(wave):
    size = 200
    gap = round(100 * ERASE_GAP_S)
    wave.append(np.arange(250, dtype=np.float32))  # more than a window
    assert wave.write_position == 50
    wave.refresh()
    x, y = wave.sweep_data()
    assert len(x) == len(y) == size
    np.testing.assert_allclose(x[:3], [0.0, 0.01, 0.02], rtol=1e-5)
    np.testing.assert_array_equal(y[:50], np.arange(200, 250))        # the newest, at the left
    assert np.isnan(y[50:50 + gap]).all()                               # erased ahead of the pen
    np.testing.assert_array_equal(y[50 + gap:], np.arange(50 + gap, 200))  # last sweep's samples


def test_sweep_keeps_device_gaps_and_wraps_the_erase_gap(wave):
    wave.append(np.ones(190, dtype=np.float32))
    wave.append(np.array([0.5, np.nan, np.nan, 0.5], dtype=np.float32))  # probe off for two samples
    wave.refresh()
    _, y = wave.sweep_data()
    assert wave.write_position == 194
    assert y[190] == 0.5 and np.isnan(y[191:193]).all() and y[193] == 0.5
    gap = round(100 * ERASE_GAP_S)
    assert np.isnan(y[194:]).all() and np.isnan(y[:gap - 6]).all()  # the gap wraps to the left edge


def test_sweep_draws_the_trace_and_leaves_gaps_dark(wave, qtbot):
    wave.show()
    qtbot.waitExposed(wave)
    wave.append(np.full(100, 0.5, dtype=np.float32))        # a flat line at mid height
    wave.append(np.full(60, np.nan, dtype=np.float32))      # then the probe is off
    wave.refresh()
    image = wave.grab().toImage()
    middle = image.height() // 2
    lit = lambda x: any(image.pixelColor(x, y).green() > 120 for y in range(middle - 3, middle + 4))  # noqa: E731
    assert lit(int(wave._px(50))) and not lit(int(wave._px(130)))


def test_sweep_refresh_draws_only_what_changed(wave, monkeypatch):
    wave.refresh()                     # first frame: the whole strip
    drawn = wave.frames_drawn
    repaints = []
    monkeypatch.setattr(wave, "update", lambda *rect: repaints.append(rect))
    wave.append(np.zeros(10))
    wave.refresh()
    wave.refresh()
    wave.append(np.zeros(0))
    wave.refresh()
    assert wave.frames_drawn == drawn + 1
    assert repaints and all(r and r[0].width() < wave.width() / 4 for r in repaints)  # narrow strips only


def test_sweep_rate_clear_and_message(wave):
    wave.append(np.ones(50))
    wave.set_rate(75.0)
    assert wave.rate == 75.0 and len(wave.sweep_data()[1]) == 150 and wave.write_position == 0
    wave.append(np.ones(20))
    wave.clear()
    assert np.isnan(wave.sweep_data()[1]).all()
    wave.set_message("SENSOR OFF")
    assert wave.message == "SENSOR OFF"
    wave.set_message(None)
    assert wave.message is None


def test_sweep_auto_range_follows_the_signal(qtbot):
    wave = SweepWave("co2", "CO2", 25.0, seconds=6.0)
    qtbot.addWidget(wave)
    wave.append(np.tile(np.r_[np.zeros(50), np.full(50, 40.0)], 2))
    wave.refresh()
    lo, hi = wave.y_range
    assert lo < 0 and 40 < hi < 60
    assert wave.scale_text == "20 mmHg"
    assert nice_step(2.0) == 1.0 and nice_step(60) == 20 and nice_step(0) == 0


def test_many_sweep_frames_do_not_drain_none(qtbot):
    """The PySide6 6.12.0 / Python 3.11 defect (tests/test_refcount_guard.py) through SweepWave."""
    wave = SweepWave("ecg", "ECG II", 250.0, y_range=(-0.6, 1.4))
    qtbot.addWidget(wave)
    chunk = np.sin(np.linspace(0, 6, 10)).astype(np.float32)
    for _ in range(50):
        wave.append(chunk)
        wave.refresh()
    gc.collect()
    gc.disable()
    try:
        before = after = sys.getrefcount(None)
        for frame in range(3000):
            wave.append(chunk)
            wave.refresh()
            if frame % 50 == 0:
                after = sys.getrefcount(None)
                if after < before - 1000:
                    break  # fail before the count reaches zero and the interpreter aborts
        after = min(after, sys.getrefcount(None))
    finally:
        gc.enable()
    assert after >= before - 1000, f"sys.getrefcount(None) fell from {before} to {after}"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12: its count never moves")
def test_whole_strip_redraws_keep_no_reference_to_none(wave):
    """A chunk longer than the window (every frame at the soak's 240x speed) redraws the whole strip.
    Each redraw used to paint a new QPixmap, and PySide6 6.11 keeps, for good, one reference to None
    per Qt virtual it looks up on a new wrapper: six a pixmap, the soak's refcount(None) climb."""
    chunk = np.sin(np.linspace(0, 12, 250)).astype(np.float32)   # 2.5 s: more than the 2 s window
    frames = 300
    for _ in range(20):
        wave.append(chunk)
        wave.refresh()
    drawn = wave.frames_drawn
    gc.collect()
    gc.disable()
    try:
        before = sys.getrefcount(None)
        for _ in range(frames):
            wave.append(chunk)
            wave.refresh()
        after = sys.getrefcount(None)
    finally:
        gc.enable()
    assert wave.frames_drawn == drawn + frames                   # every frame redrew the whole strip
    assert after - before < frames // 3, f"sys.getrefcount(None) rose from {before} to {after} in {frames} frames"
    wave.resize(300, 80)                                         # a new size still gets a pixmap of that size
    wave.refresh()
    assert wave._pixmap.size() == wave.size() * wave.devicePixelRatioF()


# --------------------------------------------------------------------------- trends
def _four_hours(trends: SessionTrends, seconds: int = 4 * 3600) -> None:
    rng = np.random.default_rng(0)
    for i in range(seconds):
        t = START + timedelta(seconds=i)
        for vital, base in (("hr", 72), ("pr", 73), ("spo2", 97), ("rr", 14), ("etco2", 37)):
            trends.add_numeric(vital, t, base + rng.normal())
        if i % 300 == 0:
            trends.add_nibp(t, 120, 80, 93)


@pytest.fixture
def trends(qtbot):
    widget = SessionTrends()
    widget.resize(760, 300)
    qtbot.addWidget(widget)
    return widget


def test_trends_four_hours(trends):
    infusion = START + timedelta(minutes=20)
    trends.set_origin(infusion)
    trends.set_phases([(START, infusion, "baseline"), (infusion, infusion + timedelta(minutes=60), "infusion"),
                       (infusion + timedelta(minutes=60), None, "recovery")])
    _four_hours(trends)
    trends.add_marker(infusion, "infusion", "start 0.5 mg/kg/h")
    trends.add_marker(START + timedelta(minutes=50), "alarm", "SpO2 low 86 %", "HIGH")
    trends.add_marker(START + timedelta(minutes=55), "assessment", "MOAA/S 4")
    trends.add_marker(START + timedelta(minutes=70), "event", "nausea")
    now = START + timedelta(hours=4)
    trends.refresh(now)

    x, y = trends.curve_data("hr")
    assert len(x) == 4 * 3600 and x[0] == pytest.approx(-20.0) and x[-1] == pytest.approx(220, abs=0.02)
    assert np.nanmean(y) == pytest.approx(72, abs=0.5)
    for vital in ("pr", "spo2", "rr", "etco2"):
        assert len(trends.curve_data(vital)[0]) == 4 * 3600
    curve = trends.series["hr"].curve
    assert curve.opts["autoDownsample"] and curve.opts["clipToView"]
    assert len(curve.getData()[0]) < 2 * trends.width()  # drawn: about a min/max pair per pixel
    assert len(trends._nibp_bars.getData()[0]) == 2 * 48  # a bar (two points) per reading
    assert trends.phase_count() == 3 and len(trends.rows["spo2"].regions) == 3
    assert trends.marker_count() == 4
    assert set(trends.rows["cardiac"].marker_lines) == {"infusion", "alarm:HIGH", "assessment", "event"}
    left, right = trends.x_range()
    assert -30 < left < -20 and 220 <= right <= 240  # a little room before the start and after now


def test_trend_axes_read_minutes_and_clock_time(trends):
    origin = START + timedelta(minutes=20)
    trends.set_origin(origin)
    trends.refresh(origin + timedelta(minutes=30))
    minutes = MinutesAxis()
    assert minutes.tickStrings([-20, 0, 30, 90], 1, 10) == ["−20", "0 min", "30", "90"]
    clock = trends.clock_axis
    assert isinstance(clock, ClockAxis) and clock.origin_ts == origin.timestamp()
    local = [(origin + timedelta(minutes=m)).astimezone().strftime("%H:%M") for m in (0, 45)]
    assert clock.tickStrings([0, 45], 1, 15) == local
    # ticks fall on round clock minutes, whatever the origin's seconds
    odd = ClockAxis()
    odd.set_origin((START + timedelta(minutes=7, seconds=23)).timestamp())
    for _, values in odd.tickValues(-30, 120, 600):
        for value in values:
            clock_time = datetime.fromtimestamp(odd.origin_ts + value * 60)
            assert clock_time.second == 0 and clock_time.minute % 5 == 0


def test_trends_gaps_order_and_validation(trends):
    trends.add_numeric("hr", START, 70)
    trends.add_numeric("hr", START + timedelta(seconds=1), None)        # missing: a gap
    trends.add_numeric("hr", START + timedelta(seconds=2 + GAP_S), 71)  # after a silence: a gap
    trends.add_numeric("hr", START, 99)                                 # out of order: dropped
    trends.add_numeric("temp", START, 36.6)                             # not trended
    trends.refresh(START + timedelta(minutes=1))
    x, y = trends.curve_data("hr")
    assert y[0] == 70 and np.isnan(y[1]) and np.isnan(y[2]) and y[3] == 71
    assert np.all(np.diff(x) > 0) and trends.dropped == 1
    assert trends.origin() == START.timestamp()  # no origin set: the session's first sample
    with pytest.raises(ValueError):
        trends.add_marker(START, "note", "?")
    with pytest.raises(ValueError):
        trends.add_marker(START, "alarm", "no priority")
    trends.clear()
    trends.refresh(START + timedelta(minutes=2))
    assert trends.curve_data("hr")[0] is None and trends.marker_count() == 0


def test_trends_time_axis_moves_on_in_steps(trends):
    """Re-ranging re-decimates every curve: the axis keeps some room ahead instead of moving each second."""
    trends.set_origin(START)
    ranges = set()
    for second in range(0, 3600, 1):
        now = START + timedelta(seconds=second)
        trends.add_numeric("hr", now, 70)
        trends.refresh(now)
        left, right = trends.x_range()
        assert left < 0 and second / 60 <= right  # the start and now always in view
        ranges.add((left, right))
    assert len(ranges) < 30  # not 3600: about one step every 8 % of the span


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12: its count never moves")
def test_trend_axes_redrawn_on_new_ranges_keep_no_reference_to_none(trends):
    """pyqtgraph's AxisItem draws its ticks into a new QPicture whenever its range moves, and PySide6
    6.11 keeps six references to None for good for each new QPicture painted: the axes reuse one."""
    trends.show()
    steps = 60
    for step in range(5):
        trends.lane.setXRange(step, step + 60, padding=0)
        trends.grab()
    gc.collect()
    gc.disable()
    try:
        before = sys.getrefcount(None)
        for step in range(steps):
            trends.lane.setXRange(step, step + 60, padding=0)
            trends.rows["spo2"].plot.setYRange(80 - step % 7, 100, padding=0)
            trends.grab()
        after = sys.getrefcount(None)
    finally:
        gc.enable()
    assert after - before < steps, f"sys.getrefcount(None) rose from {before} to {after} in {steps} new ranges"
    for axis in (trends.clock_axis, trends.rows["spo2"].plot.getAxis("left")):
        assert axis.picture is not None and axis.picture.size() > 0   # the ticks are still drawn


def test_trends_y_scale_widens_for_values_beyond_the_display_span(trends):
    trends.add_numeric("hr", START, 190)
    trends.refresh(START + timedelta(seconds=1))
    lo, hi = trends.rows["cardiac"].plot.getViewBox().viewRange()[1]
    assert lo <= 40 and hi > 190


def test_trends_close_cleanly_under_the_garbage_collector(qtbot):
    """Tooltips are plain functions: a bound method would make a cycle that crashed gc.collect()."""
    for _ in range(3):
        widget = SessionTrends()
        widget.add_marker(START, "event", "x")
        widget.add_nibp(START, 120, 80, 90)
        widget.refresh(START + timedelta(minutes=1))
        widget.close()
        del widget
        gc.collect()


# --------------------------------------------------------------------------- benchmark
def _benchmark() -> None:  # pragma: no cover - run by hand: python -m tests.test_ui_widgets
    """Median and p99 of one frame (3 sweeps + 7 tiles) and one trends refresh, painting included."""
    import statistics
    import time

    from PySide6.QtWidgets import (
        QApplication,
        QGridLayout,
        QHBoxLayout,
        QVBoxLayout,
        QWidget,
    )

    app = QApplication.instance() or QApplication(sys.argv)

    def summary(samples: list[float]) -> str:
        samples = sorted(samples)
        return (f"median {statistics.median(samples):.2f} ms, p99 {samples[int(0.99 * (len(samples) - 1))]:.2f} ms"
                f" (n={len(samples)})")

    root = QWidget()
    row = QHBoxLayout(root)
    column = QVBoxLayout()
    row.addLayout(column, 11)
    waves = [SweepWave("ecg", "ECG II", 250.0, 6.0, (-0.6, 1.4)), SweepWave("pleth", "Pleth", 100.0, 6.0),
             SweepWave("co2", "CO2", 25.0, 6.0, (0.0, 60.0))]
    for wave in waves:
        column.addWidget(wave)
    grid = QGridLayout()
    row.addLayout(grid, 9)
    tiles = [NibpTile() if key == "nibp" else NumericTile(key, key.upper(), "unit")
             for key in ("hr", "spo2", "nibp", "rr", "etco2", "pr", "temp")]
    for index, tile in enumerate(tiles):
        grid.addWidget(tile, *divmod(index, 2))
        tile.set_limits(10, 200)
    tiles[1].set_alarm("HIGH")
    root.resize(1366, 500)
    root.show()
    app.processEvents()
    frames = []
    for frame in range(1000):
        for wave in waves:
            wave.append(np.sin(np.arange(int(wave.rate * 0.04)) / 7 + frame).astype(np.float32))
        tick = time.perf_counter()
        for wave in waves:
            wave.refresh()
        for index, tile in enumerate(tiles):
            tile.set_flash_phase(frame * 0.04)
            if frame % 25 == 0:
                tile.set_value(60 + frame // 25 + index)
        app.processEvents()
        frames.append((time.perf_counter() - tick) * 1000)
    print("3 sweeps + 7 tiles, one frame:", summary(frames[50:]))
    root.close()

    for label, seconds in (("5 min", 300), ("4 h", 4 * 3600)):
        trends = SessionTrends()
        trends.resize(760, 300)
        trends.show()
        origin = START + timedelta(minutes=min(15, seconds / 120))
        trends.set_origin(origin)
        trends.set_phases([(START, origin, "baseline"), (origin, None, "infusion")])
        _four_hours(trends, seconds)
        for i in range(0, seconds, 600):
            trends.add_marker(START + timedelta(seconds=i), "event", "event")
        trends.refresh(START + timedelta(seconds=seconds))
        app.processEvents()
        refreshes = []
        for k in range(300):
            t = START + timedelta(seconds=seconds + k)
            for vital, base in (("hr", 72), ("pr", 73), ("spo2", 97), ("rr", 14), ("etco2", 37)):
                trends.add_numeric(vital, t, base + math.sin(k))
            tick = time.perf_counter()
            trends.refresh(t)
            app.processEvents()
            refreshes.append((time.perf_counter() - tick) * 1000)
        print(f"trends refresh at {label}:", summary(refreshes))
        trends.close()


if __name__ == "__main__":  # pragma: no cover
    _benchmark()
