"""Guard against the PySide6 6.12.0 / Python 3.11 defect that drops a reference to None on every
call of a void method (setData, update, setWindowTitle…) and aborts a live plot within minutes.

On Python >= 3.12 None is immortal and its reference count never moves; on 3.11 a healthy
PySide6 leaves it roughly where it was. The defect makes it fall by about ten per setData, so a
few thousand UI frames make the fall unmistakable long before the process would abort.
"""

from __future__ import annotations

import gc
import sys

import numpy as np
import pyqtgraph as pg

FRAMES = 3000
#: Ordinary churn (objects holding None being freed) moves the count by hundreds at most; the
#: defect removes about ten per frame, i.e. tens of thousands over FRAMES.
TOLERANCE = 1000


def test_many_plot_updates_do_not_drain_none(qtbot):
    widget = pg.PlotWidget()
    qtbot.addWidget(widget)
    curve = widget.plot(connect="finite")
    data = np.sin(np.linspace(0, 20, 500)).astype(np.float32)
    for _ in range(50):  # warm caches before taking the baseline
        curve.setData(data)
    gc.collect()
    gc.disable()  # no collection frees unrelated None references during the measurement
    try:
        before = after = sys.getrefcount(None)
        for frame in range(FRAMES):
            curve.setData(np.roll(data, frame))
            widget.setWindowTitle(f"frame {frame}")
            widget.update()
            if frame % 50 == 0:
                after = sys.getrefcount(None)
                if after < before - TOLERANCE:
                    break  # fail now, before the count reaches zero and the interpreter aborts
        after = min(after, sys.getrefcount(None))
    finally:
        gc.enable()
    assert after >= before - TOLERANCE, (
        f"sys.getrefcount(None) fell from {before} to {after} over {FRAMES} frames: this PySide6 build "
        "leaks references to None (see pyproject.toml's PySide6 pin)")
