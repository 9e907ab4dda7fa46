"""The clinic board window: a grid of chair tiles that fits the screen, the board's own technical
alarms, the highest priority of all chairs sounded, and a chair's detail on click.

Messages arrive on the MQTT client's thread and are forwarded as queued signals; the board
model (:mod:`monitor.board.model`) decides everything shown; this module only draws.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import (
    QGridLayout, QHBoxLayout, QLabel, QMainWindow, QPushButton, QVBoxLayout, QWidget,
)

from monitor.board.model import BoardModel
from ui import theme
from ui.audio import AlarmAudio
from ui.board.tiles import ChairTile, grid_shape

log = logging.getLogger(__name__)


def _utc() -> datetime:
    return datetime.now(UTC)


class Inbox(QObject):
    """Hands the MQTT thread's callbacks to the UI thread (queued signals)."""

    message_received = Signal(str, bytes)
    connection_changed = Signal(bool, str)


class BoardWindow(QMainWindow):
    """The board. ``client`` is a started or startable :class:`~monitor.board.subscriber.BoardClient`
    (or None in tests that feed :attr:`inbox` directly); ``allow_acknowledge`` is the clinic
    setting; ``user`` the signed-in staff member (an :class:`~monitor.staff.Actor`)."""

    def __init__(self, model: BoardModel, client=None, *, allow_acknowledge: bool = False, user=None,
                 audio: bool = True, clock=_utc) -> None:
        super().__init__()
        self.model = model
        self.client = client
        self.allow_acknowledge = allow_acknowledge
        self.user = user
        self.clock = clock
        self.inbox = Inbox(self)
        self.inbox.message_received.connect(self.receive)
        self.inbox.connection_changed.connect(self._connection)
        self.tiles: dict[str, ChairTile] = {}
        self.detail: ChairDetail | None = None
        self.audio = AlarmAudio(self, enabled=audio)
        self.audio.availability_changed.connect(
            lambda available, reason: self.model.set_audio(available, reason, self.clock()))
        if not self.audio.available:
            self.model.set_audio(False, self.audio.reason, self.clock())
        self.setWindowTitle(f"Vigil clinic board — {model.clinic}")
        self.setStyleSheet(theme.STYLE)
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(6, 6, 6, 6)
        top = QHBoxLayout()
        self.title = QLabel(f"Clinic board · {model.clinic}")
        self.title.setFont(theme.font(12, bold=True))
        self.link = QLabel("connecting…")
        self.link.setFont(theme.font(10))
        self.board_alarm = QLabel("")
        self.board_alarm.setFont(theme.font(11, bold=True))
        self.ack_board = QPushButton("Acknowledge board alarms")
        self.ack_board.clicked.connect(self.acknowledge_board)
        self.who = QLabel(f"Signed in: {user.display_name}" if user is not None else "")
        self.who.setFont(theme.font(10))
        for widget, stretch in ((self.title, 0), (self.link, 0), (self.board_alarm, 1), (self.ack_board, 0), (self.who, 0)):
            top.addWidget(widget, stretch)
        outer.addLayout(top)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(6)
        outer.addWidget(self.grid_host, 1)
        self.setCentralWidget(central)
        self._shape: tuple[int, int] = (0, 0)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh)
        self._timer.start(100)
        if client is not None:
            client.on_message = self.inbox.message_received.emit
            client.on_connection = self.inbox.connection_changed.emit

    # ------------------------------------------------------------------ inputs
    def receive(self, topic: str, payload: bytes) -> None:
        """One message from the broker (UI thread): into the model, and its tile repainted at once."""
        name = self.model.receive(topic, payload, self.clock())
        if name is None:
            return
        if name not in self.tiles:
            self._add_tile(name)
        self._show(name, self.clock(), time.monotonic())

    def _connection(self, connected: bool, detail: str) -> None:
        self.model.set_connected(connected, self.clock())
        self.link.setText("connected" if connected else f"NOT CONNECTED: {detail}")
        self.link.setStyleSheet("" if connected else f"color: {theme.PRIORITY_COLOURS['MEDIUM']};")

    def acknowledge_board(self) -> None:
        """Silence the board's own technical alarms present now (they stay shown)."""
        acked = self.model.acknowledge(self.clock())
        if acked:
            log.info("board alarms acknowledged by %s: %s", self.user.username if self.user else "?",
                     ", ".join(a.text for a in acked))

    # ------------------------------------------------------------------ layout and painting
    def _add_tile(self, name: str) -> None:
        tile = ChairTile(name)
        tile.clicked.connect(self.open_detail)
        self.tiles[name] = tile
        self._layout()

    def _layout(self) -> None:
        names = [c.name for c in self.model.ordered() if c.name in self.tiles]
        shape = grid_shape(len(names), max(1, self.grid_host.width()), max(1, self.grid_host.height()))
        for tile in self.tiles.values():
            self.grid.removeWidget(tile)
        cols = shape[0]
        for i, name in enumerate(names):
            self.grid.addWidget(self.tiles[name], i // cols, i % cols)
        self._shape = shape

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt)
        super().resizeEvent(event)
        self._layout()

    def _show(self, name: str, now: datetime, t: float) -> None:
        view = self.model.tile(name, now)
        self.tiles[name].show_view(view, theme.flash_on(view.priority, t))

    def refresh(self) -> None:
        """10 times a second: flashing, ages, board alarms, sound, the open detail."""
        now, t = self.clock(), time.monotonic()
        for name in self.tiles:
            self._show(name, now, t)
        alarms = self.model.board_alarms(now)
        if alarms:
            top = alarms[0]
            lit = theme.flash_on(top.priority.name, t)
            more = f"  +{len(alarms) - 1}" if len(alarms) > 1 else ""
            self.board_alarm.setText(f"{top.priority.name}  {top.text}{more}")
            colour = theme.PRIORITY_COLOURS[top.priority.name]
            self.board_alarm.setStyleSheet(
                f"background: {colour if lit else theme.PANEL}; color: {theme.PRIORITY_TEXT[top.priority.name] if lit else colour};"
                " padding: 2px 8px; border-radius: 3px;")
        else:
            self.board_alarm.setText("")
            self.board_alarm.setStyleSheet("")
        self.ack_board.setEnabled(bool(alarms))
        self.audio.update(self.model.audio_priority(now), t)
        if self.detail is not None and self.detail.isVisible():
            self.detail.refresh(now)

    def open_detail(self, name: str) -> None:
        """Show chair ``name``'s detail (all numerics, alarm list, waves if published)."""
        if self.detail is not None:
            self.detail.close()
        self.detail = ChairDetail(self, name)
        self.detail.refresh(self.clock())
        self.detail.show()

    def acknowledge_chair(self, name: str) -> bool:
        """Send an acknowledge to chair ``name`` as the signed-in user, when the clinic allows it;
        the chair records it with the user's name. False when not allowed or not sent."""
        chair = self.model.chairs.get(name)
        if self.user is None or self.client is None or chair is None or chair.alarms is None or \
                not self.model.can_acknowledge(name, self.allow_acknowledge, self.clock()):
            return False
        return self.client.acknowledge(name, chair.alarms.seq, self.user.username, self.user.display_name)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self._timer.stop()
        self.audio.stop()
        if self.client is not None:
            self.client.stop()
        super().closeEvent(event)


class WaveStrip(QWidget):
    """The last seconds of one waveform, drawn as a polyline (gaps where samples are null)."""

    def __init__(self, channel: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.channel = channel
        self.blocks: list = []
        self.setMinimumHeight(70)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(theme.BACKGROUND))
        p.setPen(QColor(theme.TEXT_DIM))
        p.drawText(QRectF(4, 2, 200, 16), self.channel)
        samples = [(b.start.timestamp() + i / b.rate_hz, v) for b in self.blocks for i, v in enumerate(b.samples)]
        values = [v for _, v in samples if v is not None]
        if len(values) >= 2:
            t0, t1 = samples[0][0], samples[-1][0]
            low, high = min(values), max(values)
            span, width = (high - low) or 1.0, max(1e-6, t1 - t0)
            p.setPen(QPen(theme.colour(self.channel), 1.5))
            line: list[QPointF] = []
            for t, v in samples:
                if v is None:
                    if len(line) > 1:
                        p.drawPolyline(QPolygonF(line))
                    line = []
                    continue
                line.append(QPointF((t - t0) / width * (self.width() - 8) + 4,
                                    self.height() - 4 - (v - low) / span * (self.height() - 24)))
            if len(line) > 1:
                p.drawPolyline(QPolygonF(line))
        p.end()


class ChairDetail(QWidget):
    """One chair in detail, in a window of its own beside the board (not a chair dialog): every
    numeric, the alarm list with times, waves if published, and Acknowledge (only when the clinic
    allows it and someone is signed in)."""

    def __init__(self, board: BoardWindow, name: str) -> None:
        super().__init__(board, Qt.WindowType.Window)
        self.board = board
        self.name = name
        self.setWindowTitle(f"Chair {name}")
        self.setStyleSheet(theme.STYLE)
        self.resize(760, 560)
        layout = QVBoxLayout(self)
        self.header = QLabel()
        self.header.setFont(theme.font(13, bold=True))
        self.numerics = QLabel()
        self.numerics.setFont(theme.font(11))
        self.numerics.setTextFormat(Qt.TextFormat.RichText)
        self.alarms = QLabel()
        self.alarms.setFont(theme.font(10))
        self.alarms.setTextFormat(Qt.TextFormat.RichText)
        self.alarms.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        for widget in (self.header, self.numerics, self.alarms):
            layout.addWidget(widget)
        self.waves_box = QVBoxLayout()
        layout.addLayout(self.waves_box, 1)
        self.strips: dict[str, WaveStrip] = {}
        buttons = QHBoxLayout()
        self.ack = QPushButton("Acknowledge at the chair")
        self.ack.setVisible(board.allow_acknowledge)
        self.ack.clicked.connect(lambda: board.acknowledge_chair(name))
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons.addStretch(1)
        buttons.addWidget(self.ack)
        buttons.addWidget(close)
        layout.addLayout(buttons)

    def refresh(self, now: datetime) -> None:
        """Show the chair as the model has it now."""
        model = self.board.model
        chair = model.chairs.get(self.name)
        if chair is None:
            return
        view = model.tile(self.name, now)
        session = chair.session
        lines = [f"{self.name} — {view.state}"]
        if session is not None:
            lines.append(f"{view.patient} · {session.protocol} · {view.phase} · {view.clock} · "
                         f"{session.dose_delivered_mg:g}/{session.dose_planned_mg:g} mg")
        self.header.setText("\n".join(lines))
        rows = []
        if chair.vitals is not None:
            for key, numeric in sorted(chair.vitals.numerics.items()):
                value = "--" if numeric.value is None else f"{numeric.value:g}"
                flags = f" ({', '.join(numeric.flags)})" if numeric.flags else ""
                rows.append(f'<span style="color:{theme.PARAMETER_COLOURS.get(key, theme.TEXT)}">{key}</span> '
                            f"{value} {numeric.unit}{flags}")
        self.numerics.setText(" &nbsp; ".join(rows) or "no numerics")
        items = []
        if view.board_alarm is not None:
            b = view.board_alarm
            items.append(f'<b style="color:{theme.PRIORITY_COLOURS[b.priority.name]}">{b.priority.name}</b> '
                         f"{b.since.astimezone():%H:%M:%S}  {b.text} (board)")
        for a in chair.alarms.alarms if chair.alarms is not None else ():
            who = f" — acknowledged by {a.acknowledged_by}" if a.acknowledged_by else " — acknowledged" if a.acknowledged else ""
            items.append(f'<b style="color:{theme.PRIORITY_COLOURS[a.priority]}">{a.priority}</b> '
                         f"{a.since.astimezone():%H:%M:%S}  {a.text}{' (latched)' if a.latched else ''}{who}")
        if chair.alarms is not None and chair.alarms.audio_paused:
            items.append(f"Audio paused at the chair by {chair.alarms.paused_by}")
        self.alarms.setText("<br>".join(items) or "No active alarms")
        for channel, blocks in model.waves(self.name).items():
            strip = self.strips.get(channel)
            if strip is None:
                strip = self.strips[channel] = WaveStrip(channel)
                self.waves_box.addWidget(strip)
            strip.blocks = blocks
            strip.update()
        signed_in = self.board.user is not None
        self.ack.setEnabled(signed_in and model.can_acknowledge(self.name, self.board.allow_acknowledge, now))
