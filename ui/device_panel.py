"""The device panel: which monitor, its connection, signal quality, reconnect attempts and decoder
counts (frames, rejected frames, values dropped for a unit Vigil cannot convert); for the simulated
monitor, the scenario (changeable while no session is recorded)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFrame, QHBoxLayout, QLabel, QWidget

from drivers.model import DeviceCondition, Item
from drivers.simulator.scenarios import SCENARIOS
from drivers.transport import DeviceUrlError
from monitor.display import signal_quality
from ui import theme
from ui.context import UiContext

_STATE_TEXT = {"connecting": "connecting…", "connected": "connected", "lost": "CONNECTION LOST", "stopped": "stopped"}


class DevicePanel(QFrame):
    """One line of device status (plus a scenario picker for the simulated monitor)."""

    message = Signal(str)

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.setObjectName("panel")
        self.active: set[str] = set()
        self.state = "connecting"
        self.detail = ""
        self.attempt = 0
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 0)
        self.label = QLabel()
        self.label.setFont(theme.font(10))
        self.label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.label, stretch=1)
        self.scenario = QComboBox()
        self.scenario.setFont(theme.font(10))
        for name, description in SCENARIOS.items():
            self.scenario.addItem(name.replace("_", " "), name)
            self.scenario.setItemData(self.scenario.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        self.scenario.setToolTip("Scenario of the simulated monitor (only while no session is recorded)")
        self.scenario.activated.connect(self._scenario_chosen)
        layout.addWidget(self.scenario)
        self._bind()
        context.service.device_changed.connect(self._bind)
        context.service.link_changed.connect(self._on_link)
        context.service.session_changed.connect(self.refresh)
        context.service.batch_received.connect(self._on_batch)

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
        quality = signal_quality(self.active - {"connection_lost", "stale_data"})
        stale = " · NO VALID DATA" if "stale_data" in self.active else ""
        signal = f" &nbsp; signal: {quality}" if self.state == "connected" else ""  # no signal without a link
        self.label.setText(
            f"<b>{service.device_label}</b> &nbsp; <span style='color:{colour}'>{_STATE_TEXT.get(self.state, self.state)}"
            f"{retry}</span>{signal}{stale}{counts}")
        self.scenario.setEnabled(not service.recording)

    def _scenario_chosen(self, index: int) -> None:
        name = self.scenario.itemData(index)
        spec = self.context.service.device_spec
        if spec is None or spec.sim.get("scenario", "normal") == name:
            return
        params = {**spec.sim, "scenario": name}
        url = "sim://?" + "&".join(f"{k}={v}" for k, v in params.items())
        try:
            self.context.service.switch_device(url)
        except (ValueError, DeviceUrlError) as exc:
            self.message.emit(str(exc))
            self._bind()
