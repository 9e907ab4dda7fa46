"""The device panel: which monitor, its connection, signal quality, reconnect attempts and decoder
counts (frames, rejected frames, values dropped for a unit Vigil cannot convert); for the simulated
monitor, the scenario (changeable while no session is recorded).

"Device…" opens the chooser: a port (the serial ports of this computer, their stable
``/dev/serial/by-id`` names first) or a whole device URL, *Find my monitor* — which probes the port
off the screen's thread (``drivers.probe.probe_port``: up to 15 s, with progress, cancellable) and
fills in the URL of what answered — and *Connect*. When the device in use was chosen by a name that
changes when its USB adapter is replugged (``/dev/ttyUSB0``) and a stable name leads to it, the
panel suggests it.
"""

from __future__ import annotations

import html
import os
import threading
import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QWidget,
)

from drivers.model import DeviceCondition, Item
from drivers.probe import ProbePlan, ProbeReport, probe_port
from drivers.simulator.scenarios import SCENARIOS
from drivers.transport import DeviceUrlError, list_ports, parse_device_url, stable_port
from monitor.display import signal_quality
from ui import theme
from ui.context import UiContext
from ui.layout import FitLabel

_STATE_TEXT = {"connecting": "connecting…", "connected": "connected", "lost": "CONNECTION LOST", "stopped": "stopped"}


class DevicePanel(QFrame):
    """One line of device status (plus a scenario picker for the simulated monitor, and the device
    chooser)."""

    message = Signal(str)
    #: A probe finished (emitted from the probing thread; handled on the screen's).
    probe_finished = Signal(object)

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.setObjectName("panel")
        self.active: set[str] = set()
        self.state = "connecting"
        self.detail = ""
        self.attempt = 0
        self.stable: str | None = None        # a stable name for the port in use, when there is one
        self._probe_cancel: threading.Event | None = None
        self._probe_started = 0.0
        self._probe_budget = ProbePlan().budget
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 0)
        # the line may be longer than the room left (a small screen, the chooser open): it drops its
        # details, the least useful first, never widens the window; the whole line is in the tooltip
        self.label = FitLabel(theme.font(10), rich=True, min_ratio=0.8)
        self.label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)  # asks for its
        # whole line where there is room, takes a shorter form where there is not
        layout.addWidget(self.label, stretch=1)
        self.scenario = QComboBox()
        self.scenario.setFont(theme.font(10))
        for name, description in SCENARIOS.items():
            self.scenario.addItem(name.replace("_", " "), name)
            self.scenario.setItemData(self.scenario.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        self.scenario.setToolTip("Scenario of the simulated monitor (only while no session is recorded)")
        self.scenario.activated.connect(self._scenario_chosen)
        layout.addWidget(self.scenario)
        self._build_chooser(layout)
        self._bind()
        context.service.device_changed.connect(self._bind)
        context.service.link_changed.connect(self._on_link)
        context.service.session_changed.connect(self.refresh)
        context.service.batch_received.connect(self._on_batch)
        self.probe_finished.connect(self._probe_done)

    def _build_chooser(self, layout: QHBoxLayout) -> None:
        self.choose = QPushButton("Device…")
        self.choose.setCheckable(True)
        self.choose.setToolTip("Choose the port or device URL of the monitor")
        self.choose.toggled.connect(self._show_chooser)
        layout.addWidget(self.choose)
        self.chooser = QWidget()
        row = QHBoxLayout(self.chooser)
        row.setContentsMargins(0, 0, 0, 0)
        self.port = QComboBox()
        self.port.setEditable(True)
        self.port.setMinimumContentsLength(28)
        self.port.setToolTip("A serial port (/dev/ttyUSB0, COM3) or a device URL (PORT?protocol=masimo, sim://…)")
        row.addWidget(self.port)
        self.find = QPushButton("Find my monitor")
        self.find.setToolTip("Listen on the port, then ask each protocol in turn, to find the monitor (up to "
                             f"{self._probe_budget:g} s)")
        self.find.clicked.connect(self._find_clicked)
        row.addWidget(self.find)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(90)
        self.progress.setVisible(False)
        row.addWidget(self.progress)
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(self._connect_clicked)
        row.addWidget(self.connect_button)
        self.chooser.setVisible(False)
        for widget in (self.choose, self.port, self.find, self.connect_button):   # the status line's one font
            widget.setFont(theme.font(10))
        layout.addWidget(self.chooser)
        self._tick = QTimer(self)
        self._tick.setInterval(100)
        self._tick.timeout.connect(self._probe_progress)

    # ------------------------------------------------------------------ status
    def _bind(self) -> None:
        service = self.context.service
        self.active.clear()
        self.state, self.detail, self.attempt = service.link_state, service.link_detail, service.link_attempt
        spec = service.device_spec
        is_sim = spec is not None and spec.kind == "sim"
        self.scenario.setVisible(is_sim)
        if is_sim:
            index = self.scenario.findData(spec.sim.get("scenario", "normal"))
            self.scenario.setCurrentIndex(max(0, index))
        self.stable = None
        if spec is not None and spec.kind == "serial" and spec.serial_url:
            self.stable = stable_port(spec.serial_url.partition("?")[0])
        self.refresh()

    def _on_link(self, state: str, detail: str) -> None:
        self.state, self.detail, self.attempt = state, detail, self.context.service.link_attempt
        self.refresh()

    def _on_batch(self, items: list[Item]) -> None:
        changed = False
        for item in items:
            if isinstance(item, DeviceCondition):
                (self.active.add if item.active else self.active.discard)(item.code)
                changed = True
        if changed:
            self.refresh()

    def refresh(self) -> None:
        """Repaint the status line (also called once a second for the frame counts)."""
        service = self.context.service
        lost = self.state == "lost"
        colour = theme.PRIORITY_COLOURS["MEDIUM"] if lost else ("#00e060" if self.state == "connected" else theme.TEXT_DIM)
        retry = f" — retry {self.attempt}" if lost and self.attempt else ""
        stats = service.decoder_stats()
        counts = f" · {stats.frames_decoded} frames, {stats.frames_rejected} rejected" if stats is not None else ""
        if stats is not None and stats.values_dropped_unit:  # never silently lost: say so
            counts += (f", <span style='color:{theme.PRIORITY_COLOURS['MEDIUM']}'>{stats.values_dropped_unit} "
                       "values dropped (unit not recognised)</span>")
        quality = signal_quality(self.active - {"connection_lost", "stale_data", "data_unreadable"})
        stale = " · NO VALID DATA" if "stale_data" in self.active else ""
        if "data_unreadable" in self.active:
            stale += " · DATA UNREADABLE"
        signal = f" &nbsp; signal: {quality}" if self.state == "connected" else ""  # no signal without a link
        tip = f" · stable name: by-id/{os.path.basename(self.stable)}" if self.stable else ""
        state = f"<span style='color:{colour}'>{_STATE_TEXT.get(self.state, self.state)}{retry}</span>"
        why = html.escape(self.detail.split("; retry")[0]) if lost and self.detail else ""   # e.g. no such port
        reason = f" ({why})" if why else ""
        name = f"<b>{service.device_label}</b> &nbsp; "
        text = f"{name}{state}{reason}{signal}{stale}{counts}{tip}"
        self.label.set_forms(text, f"{name}{state}{reason}{signal}{stale}{counts}", f"{name}{state}{reason}{stale}",
                             f"{name}{state}{stale}", f"{state}{stale}")
        self.label.setToolTip(text + (f"<br>{self.stable} leads to the same port and stays the same when the USB "
                                      "adapter is plugged in again: choose it with Device…" if self.stable else ""))
        self.scenario.setEnabled(not service.recording)
        self.connect_button.setEnabled(not service.recording and self._probe_cancel is None)
        self.connect_button.setToolTip("A session is being recorded from this device: end it before connecting "
                                       "another" if service.recording else "Use this port or device URL")

    def _scenario_chosen(self, index: int) -> None:
        name = self.scenario.itemData(index)
        spec = self.context.service.device_spec
        if spec is None or spec.sim.get("scenario", "normal") == name:
            return
        params = {**spec.sim, "scenario": name}
        url = "sim://?" + "&".join(f"{k}={v}" for k, v in params.items())
        self._switch(url)

    # ------------------------------------------------------------------ the chooser
    def _show_chooser(self, shown: bool) -> None:
        if shown:
            self._fill_ports()
        self.chooser.setVisible(shown)

    def _fill_ports(self) -> None:
        """The ports of this computer, stable names first; the device in use (by its stable name,
        when it has one) as the current text."""
        self.port.clear()
        for info in list_ports():
            stable = stable_port(info.device)
            for device in ([stable] if stable else []) + [info.device]:
                self.port.addItem(device)
                self.port.setItemData(self.port.count() - 1, info.hint or info.description,
                                      Qt.ItemDataRole.ToolTipRole)
        spec = self.context.service.device_spec
        if spec is not None and spec.kind == "serial" and spec.serial_url:
            port = self.stable or spec.serial_url.partition("?")[0]
            self.port.setEditText(f"{port}?protocol={spec.protocol}")
        elif spec is not None:
            self.port.setEditText(spec.url)

    def chosen_port(self) -> str:
        """The port part of what is typed or picked (before ``?``)."""
        return self.port.currentText().strip().partition("?")[0]

    def _find_clicked(self) -> None:
        if self._probe_cancel is not None:    # the button says Cancel while probing
            self._probe_cancel.set()
            self.find.setEnabled(False)
            return
        port = self.chosen_port()
        if not port or "://" in port:
            self.message.emit("Find my monitor needs a serial port, e.g. /dev/ttyUSB0 or COM3")
            return
        spec = self.context.service.device_spec
        if spec is not None and spec.kind == "serial" and self.state in ("connected", "connecting") and \
                _same_port(port, (spec.serial_url or "").partition("?")[0]):
            self.message.emit(f"Vigil is reading {port} now: it cannot be probed while in use")
            return
        cancel = threading.Event()
        self._probe_cancel, self._probe_started = cancel, time.monotonic()
        self.find.setText("Cancel")
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.connect_button.setEnabled(False)
        self._tick.start()
        threading.Thread(target=self._probe, args=(port, cancel), name=f"probe {port}", daemon=True).start()

    def _probe(self, port: str, cancel: threading.Event) -> None:
        """On the probing thread: never touches a widget."""
        try:
            report = probe_port(port, cancel=cancel)
        except Exception as exc:  # probe_port reports what happens on the port; anything else is a bug
            report = ProbeReport(port, error=f"the probe failed: {exc}")
        try:
            self.probe_finished.emit((report, cancel.is_set()))
        except RuntimeError:  # the panel was deleted meanwhile (the window closed)
            pass

    def _probe_progress(self) -> None:
        elapsed = time.monotonic() - self._probe_started
        self.progress.setValue(min(99, int(100 * elapsed / self._probe_budget)))

    def _probe_done(self, outcome: tuple[ProbeReport, bool]) -> None:
        report, cancelled = outcome
        self._tick.stop()
        self._probe_cancel = None
        self.progress.setVisible(False)
        self.find.setText("Find my monitor")
        self.find.setEnabled(True)
        self.refresh()
        if report.found is not None:
            self.port.setEditText(report.found.url)
            note = f" ({report.found.note})" if report.found.note else ""
            self.message.emit(f"Found {report.found.protocol} on {report.port}{note}: press Connect to use it")
        elif cancelled:
            self.message.emit("Find my monitor was cancelled")
        else:
            self.message.emit(f"No monitor answered on {report.port}: {report.error or '; '.join(report.steps)}")

    def _connect_clicked(self) -> None:
        url = self.port.currentText().strip()
        try:
            parse_device_url(url)
        except DeviceUrlError as exc:
            self.message.emit(str(exc))
            return
        if self._switch(url):
            self.choose.setChecked(False)

    def _switch(self, url: str) -> bool:
        try:
            self.context.service.switch_device(url)
        except (ValueError, DeviceUrlError) as exc:
            self.message.emit(str(exc))
            self._bind()
            return False
        return True



def _same_port(a: str, b: str) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return a == b
