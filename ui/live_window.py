"""A minimal live window: the device's numerics, large, and its pleth. (The full monitoring
window replaces it; it exists so that ``make run`` shows live data from the first day.)"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QGridLayout, QLabel, QMainWindow, QVBoxLayout, QWidget

from drivers.catalogue import CATALOGUE
from drivers.model import DeviceCondition, Item, NumericObservation, WaveformChunk
from monitor.device_channel import DeviceChannel

_TILES = (("hr", "#00e060"), ("spo2", "#00d8ff"), ("pr", "#00d8ff"), ("nibp_sys", "#ffffff"),
          ("rr", "#ffe000"), ("etco2", "#ffe000"))


class LiveWindow(QMainWindow):
    """Large numerics and a pleth curve fed by one :class:`DeviceChannel`."""

    def __init__(self, channel: DeviceChannel) -> None:
        super().__init__()
        self.channel = channel
        self.setWindowTitle(f"Vigil — {channel.label}")
        self.latest: dict[str, float | None] = {}
        central = QWidget()
        central.setStyleSheet("background: black; color: white;")
        layout = QVBoxLayout(central)
        self.status = QLabel("Connecting…")
        self.status.setFont(QFont("DejaVu Sans", 16))
        layout.addWidget(self.status)
        grid = QGridLayout()
        self.values: dict[str, QLabel] = {}
        for i, (key, colour) in enumerate(_TILES):
            name = QLabel(f"{CATALOGUE[key].label if key != 'nibp_sys' else 'NIBP'} ({CATALOGUE[key].unit})")
            name.setStyleSheet(f"color: {colour};")
            name.setFont(QFont("DejaVu Sans", 18))
            value = QLabel("--")
            value.setStyleSheet(f"color: {colour};")
            value.setFont(QFont("DejaVu Sans", 64, QFont.Weight.Bold))
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            grid.addWidget(name, (i // 3) * 2, i % 3)
            grid.addWidget(value, (i // 3) * 2 + 1, i % 3)
            self.values[key] = value
        layout.addLayout(grid)
        self.plot = pg.PlotWidget()
        self.plot.setMouseEnabled(False, False)
        self.plot.hideAxis("left")
        self.plot.setYRange(0, 1)
        self.curve = self.plot.plot(pen=pg.mkPen("#00d8ff", width=2), connect="finite")
        self.pleth = np.full(600, np.nan, dtype=np.float32)
        layout.addWidget(self.plot, stretch=1)
        self.setCentralWidget(central)
        channel.batch_received.connect(self.on_batch)
        channel.link_changed.connect(self.on_link)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(40)

    def on_batch(self, items: list[Item]) -> None:
        """Take a batch from the device."""
        for item in items:
            if isinstance(item, NumericObservation):
                self.latest[item.vital] = item.value
                if item.vital == "nibp_dia":
                    self.latest["nibp_dia"] = item.value
            elif isinstance(item, WaveformChunk) and item.channel == "pleth":
                n = min(len(item.samples), len(self.pleth))
                self.pleth = np.roll(self.pleth, -n)
                self.pleth[-n:] = item.samples[-n:]
            elif isinstance(item, DeviceCondition):
                self.status.setText(f"{item.text}: {'ON' if item.active else 'cleared'}")

    def on_link(self, state: str, detail: str, attempt: int) -> None:
        """Show the link state."""
        self.status.setText(f"{self.channel.label}: {state}" + (f" — {detail}" if detail else ""))

    def refresh(self) -> None:
        """Repaint numerics and the pleth."""
        for key, label in self.values.items():
            value = self.latest.get(key)
            if key == "nibp_sys" and value is not None and self.latest.get("nibp_dia") is not None:
                label.setText(f"{value:.0f}/{self.latest['nibp_dia']:.0f}")
            else:
                label.setText("--" if value is None else f"{value:.{CATALOGUE[key].decimals}f}")
        self.curve.setData(self.pleth)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        """Stop acquisition with the window."""
        self.timer.stop()
        self.channel.stop()
        super().closeEvent(event)
