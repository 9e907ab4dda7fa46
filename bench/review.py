"""Session review benchmarks (offscreen), on a 12-hour session from :func:`build_long_session`
(1 Hz numerics, ECG 250 Hz, pleth 100 Hz, capnogram 25 Hz, 300 charted events).

* Opening the session in the review window to its first painted frame (target ≤ 1 s), and to
  fully loaded (every vital read, the first view's waveforms drawn): the first opening and the
  median of three.
* A zoom or pan redraw (target ≤ 50 ms): the range set, the waveforms read from the store for it
  and the frame painted, over 2,040 ranges from 2 s to the whole session. Ranges up to
  ``SYNC_WAVE_SPAN_S`` read their waveforms on the spot, so their figure includes the read; wider
  ones read in the background, so their redraw figure does not, and the time until their
  waveforms are drawn is reported apart.
* Export of the same session from the window: CSV (≤ 2 s), PDF (≤ 5 s), FHIR (≤ 5 s).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np


#: Pans at each of the 12 spans after the first range: 12 × 170 = 2,040 redraws (a p99 wants ≥ 2,000).
PANS = 169


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"n": len(samples), "median_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[int(0.99 * (len(samples) - 1))], 2), "max_ms": round(samples[-1], 2)}


def _context(store):
    from monitor.alarms.profile import default_profile
    from monitor.app.clinic import Clinic
    from monitor.app.records import Records
    from monitor.settings import ClinicSettings
    from ui.context import UiContext

    return UiContext(SimpleNamespace(session_id=None), Records(store), Clinic(store), ClinicSettings(), default_profile())


def _open(app, context, session_id: int):
    """Open the review window; return it and the seconds to the end of its first painted frame."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    from ui.review import ReviewWindow

    class FirstPaint(QObject):
        at: float | None = None

        def eventFilter(self, watched, event) -> bool:  # noqa: N802
            if self.at is None and event.type() == QEvent.Type.Paint:
                QTimer.singleShot(0, self.mark)  # runs once this paint is done
            return False

        def mark(self) -> None:
            if self.at is None:
                self.at = time.perf_counter()

    started = time.perf_counter()
    window = ReviewWindow(context, session_id)
    probe = FirstPaint()
    window.plots.graphics.viewport().installEventFilter(probe)
    window.resize(1366, 768)
    window.show()
    deadline = time.perf_counter() + 30
    while probe.at is None and time.perf_counter() < deadline:
        app.processEvents()
    window.plots.graphics.viewport().removeEventFilter(probe)
    return window, (probe.at or time.perf_counter()) - started


def first_frame(app, context, session_id: int) -> dict[str, float]:
    """Open → first painted frame, and → fully loaded (every vital read and shown, the first view's
    waveforms drawn), three times (the first one reads a cold record)."""
    times, full = [], []
    for _ in range(3):
        began = time.perf_counter()
        window, seconds = _open(app, context, session_id)
        times.append(seconds)
        while window.loading or not window.plots.waves_drawn():
            app.processEvents()
            time.sleep(0.001)
        full.append(time.perf_counter() - began)
        window.close()
        app.processEvents()
    figures = {"first_s": round(times[0], 3), "median_s": round(statistics.median(times), 3),
               "fully_loaded_first_s": round(full[0], 3), "fully_loaded_median_s": round(statistics.median(full), 3)}
    print(f"open a 12-hour session to its first painted frame: {figures['first_s']} s the first time, "
          f"median {figures['median_s']} s of 3 (target ≤ 1 s); fully loaded: {figures['fully_loaded_first_s']} s "
          f"the first time, median {figures['fully_loaded_median_s']} s")
    return figures


def redraws(app, window) -> dict[str, dict[str, float]]:
    """2,040 zooms and pans at spans from 2 s to the whole session."""
    from ui.review.plots import SYNC_WAVE_SPAN_S

    plots = window.plots
    rng = np.random.default_rng(0)
    start, end = plots.origin, plots.origin + plots.duration
    spans = [2, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 4 * 3600, 12 * 3600]
    ranges = []
    for span in spans:
        centre = rng.uniform(start + span / 2, max(start + span / 2, end - span / 2) + 1e-6)
        ranges.append((centre - span / 2, centre + span / 2))
        for _ in range(PANS):  # pans at the same span
            centre += span * rng.uniform(-0.4, 0.4)
            centre = min(max(centre, start + span / 2), end - span / 2)
            ranges.append((centre - span / 2, centre + span / 2))
    near, wide, fetched = [], [], []
    for lo, hi in ranges:
        began = time.perf_counter()
        plots.set_range(lo, hi)
        plots.redraw()
        app.processEvents()  # the frame
        elapsed = (time.perf_counter() - began) * 1000
        (near if hi - lo <= SYNC_WAVE_SPAN_S else wide).append(elapsed)
        if hi - lo > SYNC_WAVE_SPAN_S:
            deadline = time.perf_counter() + 30
            while not plots.waves_drawn() and time.perf_counter() < deadline:
                app.processEvents()
                time.sleep(0.001)
            fetched.append((time.perf_counter() - began) * 1000)
    figures = {"redraw_waves_read_on_the_spot": _percentiles(near), "redraw_wider_span": _percentiles(wide),
               "wide_waveforms_drawn_after": _percentiles(fetched), "all_redraws": _percentiles(near + wide)}
    print(f"zoom/pan redraw incl. the waveform read, spans ≤ {SYNC_WAVE_SPAN_S / 60:.0f} min: median "
          f"{figures['redraw_waves_read_on_the_spot']['median_ms']} ms, p99 {figures['redraw_waves_read_on_the_spot']['p99_ms']} ms "
          f"(n={len(near)}; target ≤ 50 ms)")
    print(f"zoom/pan redraw, wider spans (waveforms read in the background): median "
          f"{figures['redraw_wider_span']['median_ms']} ms, p99 {figures['redraw_wider_span']['p99_ms']} ms "
          f"(n={len(wide)}); their waveforms drawn after median {figures['wide_waveforms_drawn_after']['median_ms']} ms, "
          f"max {figures['wide_waveforms_drawn_after']['max_ms']} ms")
    print(f"all {len(near) + len(wide)} redraws: median {figures['all_redraws']['median_ms']} ms, "
          f"p99 {figures['all_redraws']['p99_ms']} ms")
    return figures


def exports(window, folder: Path) -> dict[str, float]:
    """CSV, PDF and FHIR from the window, seconds."""
    figures = {}
    for fmt, target in (("csv", 2), ("pdf", 5), ("fhir", 5)):
        began = time.perf_counter()
        written = window.export(fmt, folder / f"bench-{fmt}").wait(600)
        figures[f"{fmt}_s"] = round(time.perf_counter() - began, 2)
        size = written.stat().st_size / 1e6 if written else 0.0
        print(f"export {fmt.upper()}: {figures[f'{fmt}_s']} s ({size:.1f} MB; target ≤ {target} s)")
    return figures


def run() -> dict:
    """All review figures."""
    from PySide6.QtWidgets import QApplication

    from monitor.export.synthetic import build_long_session
    from monitor.store import SessionStore

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = SessionStore(folder / "review.sqlite")
        began = time.perf_counter()
        session_id = build_long_session(store, hours=12, seed=0)
        print(f"built a 12-hour session in {time.perf_counter() - began:.1f} s")
        context = _context(store)
        figures: dict = {"first_frame": first_frame(app, context, session_id)}
        window, _ = _open(app, context, session_id)
        window.load_all_vitals()
        figures["redraw"] = redraws(app, window)
        figures["export"] = exports(window, folder)
        window.close()
        app.processEvents()
        store.close()
    return figures


if __name__ == "__main__":
    run()
