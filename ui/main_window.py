"""The live monitoring window: what the nurse keeps in view for two hours from across the room.

Layout (1366×768 and up): the alarm area across the top; waveforms (sweep) on the left and the
numeric tiles on the right; the session trends and the session panel below; the event bar and
the device/user line at the bottom. Two timers drive the screen: a ~25 Hz frame (waveforms,
flashing, audio) and a 1 Hz refresh (numerics, trends, count-downs). Alarms are evaluated by the
recording service as each batch arrives, never on these timers.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from datetime import datetime, timedelta

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QGridLayout, QHBoxLayout, QMainWindow, QMessageBox, QPushButton, QSizePolicy, QVBoxLayout,
    QWidget,
)

from drivers.catalogue import CATALOGUE
from drivers.model import DeviceCondition, Item, NumericObservation, Quality, WaveformChunk
from monitor.alarms.engine import AlarmEvent, AlarmState
from monitor.alarms.profile import Priority
from monitor.display import (
    ACTION_NAMES,
    Freshness,
    ParameterPresence,
    alarm_vitals,
    display_name,
    nibp_freshness,
    tile_limits,
    trend_direction,
)
from monitor.schedule import nibp_interval_min
from monitor.session.record import AssessmentEntry, EntryBase, EventEntry, InfusionStepEntry, NasalDeviceEntry
from monitor.staff import Actor, Role, clock, nurse_message
from ui import theme
from ui.alarm_area import AlarmArea
from ui.alarm_strip import AlarmKeys
from ui.audio import AlarmAudio
from ui.context import UiContext
from ui.device_panel import DevicePanel
from ui.layout import FitLabel
from ui.lock import LockOverlay
from ui.placement import WindowPlacer
from ui.status_line import Confirmation, StatusLine
from ui.tiles import NibpTile, NumericTile
from ui.trends import SessionTrends
from ui.waves import SweepWave

log = logging.getLogger("vigil")

#: Acknowledge and audio pause are always possible; without a signed-in user they are recorded as
#: done at the bedside with the screen locked.
BEDSIDE = Actor(username="bedside", display_name="Bedside (screen locked)", role=Role.NURSE)

#: (vital key, tile label) in screen order; NIBP has its own tile.
_TILES = (("hr", "HR"), ("spo2", "SpO2"), ("nibp_sys", "NIBP"), ("rr", "RR"), ("etco2", "EtCO2"),
          ("pr", "PR"), ("temp", "Temp"), ("pi", "PI"))
_WAVES = (("ecg", "ECG II", 250.0, (-0.6, 1.4)), ("pleth", "Pleth", 100.0, (0.0, 1.0)),
          ("co2", "CO2", 25.0, (0.0, 60.0)))
_SENSOR_CODES = {"sensor_off", "no_sensor", "defective_sensor"}
_TRACKED = ("hr", "pr", "spo2", "rr", "etco2", "temp", "pi")
_STATUS_POINTS = 10  # one font for the whole status line


#: The least height of the vitals row (waveforms and numeric tiles), in pixels of the 1366×768 layout:
#: whatever the window's size, the rows below give way first.
VITALS_MIN_HEIGHT = 220


def show_at_start(window: QMainWindow, full_screen: bool = False) -> None:
    """Show the monitoring window as it should first appear: full screen when asked (a bedside
    monitor, F11 toggles), else maximised, whatever the screen (its type and tiles are sized for
    the screen, so a smaller window would only squeeze them)."""
    if full_screen:
        window.showFullScreen()
        return
    window.showMaximized()


class MainWindow(QMainWindow):
    """The monitoring window. ``first_painted`` fires once, after the first frame is on screen."""

    first_painted = Signal()

    def __init__(self, context: UiContext, audio: AlarmAudio | None = None) -> None:
        super().__init__()
        self.context = context
        self.service = context.service
        self.setWindowTitle("Vigil")
        self.setStyleSheet(theme.STYLE)
        self.audio = audio if audio is not None else AlarmAudio(self)
        self.latest: dict[str, NumericObservation] = {}
        self.history: dict[str, deque] = {v: deque() for v in _TRACKED}
        self.nibp_history: deque = deque(maxlen=4)
        self._cuff_drawn: deque = deque(maxlen=8)   # times of the cuff readings already on the trend
        self.active_conditions: set[str] = set()
        self.alarm_state: AlarmState | None = None
        self._painted = False
        self.browser = None  # the session browser, made when first asked for (see open_review)
        self._limits_shown = None
        self._was_flashing = False
        self._frame = 0
        self.presence = ParameterPresence()
        self._build()
        self._wire()
        self.audio.availability_changed.connect(self.on_audio_availability)
        if not self.audio.available:
            log.warning("alarm audio unavailable: %s", self.audio.reason)
            self.on_audio_availability(False, self.audio.reason)

    def on_audio_availability(self, available: bool, reason: str) -> None:
        """Sound output lost (at start-up or during a session) or back: the technical alarm
        "alarm audio unavailable" follows it, and the alarm area says every alarm is visual only."""
        self.service.set_technical("audio_unavailable", not available,
                                   "" if available else f"Alarm audio unavailable: {reason}")
        self.setToolTip("" if available else f"Alarm audio unavailable: {reason}")
        self.alarm_area.audio_note = "" if available else "NO ALARM SOUND"

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        from ui.event_bar import EventBar  # noqa: PLC0415 (import order: panels need the dialogs)
        from ui.session_panel import SessionPanel  # noqa: PLC0415

        central = QWidget()
        root = QVBoxLayout(central)
        root.setContentsMargins(theme.px(4), theme.px(4), theme.px(4), theme.px(2))
        root.setSpacing(theme.px(4))

        self.alarm_area = AlarmArea(self.service.session_profile)
        self.alarm_area.setFixedHeight(max(theme.px(56), self.alarm_area.sizeHint().height()))
        root.addWidget(self.alarm_area)

        middle = QHBoxLayout()
        middle.setSpacing(theme.px(4))
        self.wave_box = QWidget()
        wave_layout = QVBoxLayout(self.wave_box)
        wave_layout.setContentsMargins(0, 0, 0, 0)
        wave_layout.setSpacing(theme.px(2))
        self.waves: dict[str, SweepWave] = {}
        for key, label, rate, y_range in _WAVES:
            wave = SweepWave(key, label, rate, seconds=6.0, y_range=y_range)
            self.waves[key] = wave
            wave_layout.addWidget(wave)
        middle.addWidget(self.wave_box, stretch=11)
        self.tile_grid = QGridLayout()
        self.tile_grid.setSpacing(theme.px(4))
        self.tile_grid.setContentsMargins(0, 0, 0, 0)
        self.tiles: dict[str, NumericTile] = {}
        profile = self.service.session_profile
        for key, label in _TILES:
            spec = CATALOGUE[key]
            if key == "nibp_sys":
                tile = NibpTile("nibp_sys", label, spec.unit)
            else:
                tile = NumericTile(key, label, spec.unit, decimals=spec.decimals)
            tile.set_limits(*tile_limits(profile, key))
            self.tiles[key] = tile
        self.tiles_box = QWidget()
        self.tiles_box.setLayout(self.tile_grid)
        middle.addWidget(self.tiles_box, stretch=9)
        self.middle = middle
        for box in (self.wave_box, self.tiles_box):   # the vitals are never squeezed away (a window
            box.setMinimumHeight(theme.px(VITALS_MIN_HEIGHT))   # made small by hand: the rows below give way)
        root.addLayout(middle, stretch=10)
        self._shown_keys: tuple[tuple[str, ...], tuple[str, ...], str] = ((), (), "")
        self._trend_session: str | None = None   # the session whose samples the trends hold
        self._lay_out_parameters(tuple(k for k, _ in _TILES), tuple(self.waves), "hr")

        bottom = QHBoxLayout()
        bottom.setSpacing(theme.px(4))
        self.trends = SessionTrends()
        # the rows share the height by their stretch, whatever the plots or tiles would like
        for box in (self.wave_box, self.tiles_box, self.trends):
            box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        bottom.addWidget(self.trends, stretch=11)
        self.session_panel = SessionPanel(self.context)
        bottom.addWidget(self.session_panel, stretch=9)
        root.addLayout(bottom, stretch=9)

        self.event_bar = EventBar(self.context)
        root.addWidget(self.event_bar)

        # The status line: one font for everything in it.
        status = QHBoxLayout()
        status.setSpacing(theme.px(6))
        self.device_panel = DevicePanel(self.context)
        status.addWidget(self.device_panel, stretch=3)
        self.status_line = StatusLine(_STATUS_POINTS)
        self.message = self.status_line.message
        status.addWidget(self.status_line, stretch=4)
        self.user_label = FitLabel(theme.font(_STATUS_POINTS), rich=True)
        self.user_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        status.addWidget(self.user_label)
        self.sign_button = QPushButton()
        self.sign_button.clicked.connect(self.toggle_sign_in)
        self.review_button = QPushButton("Review…")
        self.review_button.setToolTip("Recorded sessions, this one included: review, late entries, reports and "
                                      "exports (signed-in staff)")
        self.review_button.clicked.connect(self.open_review)
        self.admin_button = QPushButton("Clinic…")
        self.admin_button.setToolTip("Clinic settings, default alarm limits and staff accounts (charge nurse)")
        self.admin_button.clicked.connect(self.open_admin)
        self.help_button = QPushButton("?")
        self.help_button.setToolTip("Help: the alarms and what they mean, their delays, the keys, the trend legend")
        self.help_button.clicked.connect(self.open_help)
        for button in (self.sign_button, self.review_button, self.admin_button, self.help_button):
            button.setFont(theme.font(_STATUS_POINTS))
            button.setStyleSheet(f"padding: {theme.px(3)}px {theme.px(10)}px;")
            status.addWidget(button)
        root.addLayout(status)
        self.setCentralWidget(central)

        # Locked: the session panel (the patient's details) and the event bar are veiled.
        self.lock_overlays = [LockOverlay(self.session_panel, "Locked — sign in", "Sign in (F12)"),
                              LockOverlay(self.event_bar, "Locked — sign in to chart", points=11)]
        for overlay in self.lock_overlays:
            overlay.sign_in_requested.connect(self.toggle_sign_in)
        self._show_user(self.context.user)

    def _lay_out_parameters(self, tiles: tuple[str, ...], waves: tuple[str, ...], heart: str) -> None:
        """Show these tiles and waveforms (what the device provides), the rest collapsed: the
        waveforms on the left (the column goes when there are none, and the tiles take the width),
        the tiles in a grid. ``heart``: "hr" (ECG heart rate) or "pr" (the HR tile shows the pulse
        rate, labelled PR, when the device has no ECG)."""
        key = (tiles, waves, heart)
        if key == self._shown_keys:
            return
        self._shown_keys = key
        for name, wave in self.waves.items():
            wave.setVisible(name in waves)
        self.wave_box.setVisible(bool(waves))
        self.middle.setStretchFactor(self.tiles_box, 9 if waves else 20)
        for tile in self.tiles.values():
            self.tile_grid.removeWidget(tile)
            tile.hide()
        columns = 2 if waves or len(tiles) <= 4 else min(4, (len(tiles) + 1) // 2)
        for index, name in enumerate(tiles):
            row, column = divmod(index, columns)
            last_alone = index == len(tiles) - 1 and column == 0 and columns > 1
            self.tile_grid.addWidget(self.tiles[name], row, column, 1, columns if last_alone else 1)  # no hole
            self.tiles[name].show()
        for column in range(4):
            self.tile_grid.setColumnStretch(column, 1 if column < columns else 0)
        hr = self.tiles["hr"]
        hr.set_label(*(("HR", "hr") if heart == "hr" else ("PR", "pr")))

    def _apply_presence(self, now: float) -> None:
        """Collapse what the device does not provide (:class:`monitor.display.ParameterPresence`)."""
        presence = self.presence
        ecg_hr, pulse = presence.provided("hr", now), presence.provided("pr", now)
        tiles = []
        for key, _ in _TILES:
            if key == "hr":
                shown = ecg_hr or pulse
            elif key == "pr":
                shown = ecg_hr and pulse
            else:
                shown = key == "nibp_sys" or presence.provided(key, now)  # NIBP: the cuff, or by hand
            if shown:
                tiles.append(key)
        waves = presence.shown(self.waves, now)
        self._lay_out_parameters(tuple(tiles), waves, "hr" if ecg_hr or not pulse else "pr")
        self.trends.show_rows({"resp": presence.provided("rr", now) or presence.provided("etco2", now)})

    def _wire(self) -> None:
        service = self.service
        service.batch_received.connect(self.on_batch)
        service.alarm_state_changed.connect(self.on_alarm_state)
        service.alarm_event.connect(self.on_alarm_event)
        service.entries_recorded.connect(self.on_entries)
        service.session_changed.connect(self.on_session_changed)
        service.device_changed.connect(self.on_device_changed)
        self.context.user_changed.connect(self._show_user)
        self.context.settings_changed.connect(self.on_settings_changed)
        self.alarm_area.acknowledge_requested.connect(self.acknowledge)
        self.alarm_area.pause_requested.connect(self.pause_audio)
        self.alarm_area.cancel_pause_requested.connect(self.cancel_pause)
        self.device_panel.message.connect(self.show_refusal)
        self.event_bar.recorded.connect(self.show_message)
        self.event_bar.refused.connect(self.show_refusal)
        self.session_panel.refused.connect(self.show_refusal)
        self.session_panel.action_done.connect(self._action_done)
        for keys, slot in (("F3", self.event_bar_focus), ("F11", self.toggle_full_screen), ("F12", self.toggle_sign_in)):
            QShortcut(QKeySequence(keys), self, activated=slot, context=Qt.ShortcutContext.ApplicationShortcut)
        # Alarms within reach whatever is open: F1/F2 and the alarm strips of the other windows, in
        # every window, modal dialogs included; every dialog and window opens below the alarm area.
        self.context.acknowledge_requested.connect(self.acknowledge)
        self.context.audio_pause_requested.connect(self.toggle_pause)
        self.alarm_keys = AlarmKeys(self.context, self)
        self.placer = WindowPlacer(self.alarm_area, self)
        self.frame_timer = QTimer(self)
        self.frame_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.frame_timer.timeout.connect(self.frame)
        self.frame_timer.start(40)
        self.second_timer = QTimer(self)
        self.second_timer.timeout.connect(self.refresh)
        self.second_timer.start(1000)

    # ------------------------------------------------------------------ data in
    def on_batch(self, items: list[Item]) -> None:
        """Device items (and readings entered by hand): buffer them for the next frame / refresh."""
        cuff_times = set()
        self.presence.arrived({item.channel if isinstance(item, WaveformChunk) else item.vital for item in items
                               if isinstance(item, (WaveformChunk, NumericObservation))
                               and (isinstance(item, WaveformChunk) or Quality.MANUAL not in item.quality)},
                              time.monotonic())
        for item in items:
            if isinstance(item, WaveformChunk):
                wave = self.waves.get(item.channel)
                if wave is not None:
                    if wave.rate != item.rate:
                        wave.set_rate(item.rate)
                    wave.append(item.samples)
            elif isinstance(item, NumericObservation):
                self.latest[item.vital] = item
                if item.value is None:
                    continue
                if item.vital in self.history:
                    series = self.history[item.vital]
                    series.append((item.sample_time, item.value))
                    while series and item.sample_time - series[0][0] > timedelta(minutes=7):
                        series.popleft()
                if item.vital == "nibp_sys":
                    self.nibp_history.append((item.sample_time, item.value))
                if item.vital in ("hr", "pr", "spo2", "rr", "etco2"):
                    self.trends.add_numeric(item.vital, item.sample_time, item.value)
                elif item.vital.startswith("nibp_"):
                    cuff_times.add(item.sample_time)
            elif isinstance(item, DeviceCondition):
                (self.active_conditions.add if item.active else self.active_conditions.discard)(item.code)
                self._wave_messages()
        for t in sorted(cuff_times):  # a reading is drawn once its systolic and diastolic are both in
            sys_, dia, mean = (self.latest.get(k) for k in ("nibp_sys", "nibp_dia", "nibp_mean"))
            if sys_ and dia and sys_.sample_time == dia.sample_time == t and t not in self._cuff_drawn \
                    and sys_.value is not None and dia.value is not None:
                self._cuff_drawn.append(t)
                self.trends.add_nibp(t, sys_.value, dia.value,
                                     mean.value if mean is not None and mean.sample_time == t else None)

    def _wave_messages(self) -> None:
        sensor = self.active_conditions & _SENSOR_CODES
        lost = self.active_conditions & {"connection_lost", "stale_data"}
        message = "DEVICE DISCONNECTED" if "connection_lost" in lost else "NO DATA" if lost else None
        self.waves["ecg"].set_message(message)
        self.waves["co2"].set_message(message)
        self.waves["pleth"].set_message(message or ("SENSOR OFF" if sensor else None))

    def on_alarm_state(self, state: AlarmState) -> None:
        """New alarm state: alarm area and tile colours."""
        self.alarm_state = state
        self.alarm_area.set_state(state)
        in_alarm: dict[str, Priority] = {}
        profile = self.service.session_profile
        for alarm in state.alarms:
            for vital in alarm_vitals(profile, alarm.condition):
                in_alarm[vital] = max(in_alarm.get(vital, alarm.priority), alarm.priority)
        for key, tile in self.tiles.items():
            tile.set_alarm(in_alarm[key].name if key in in_alarm else None)

    def on_alarm_event(self, event: AlarmEvent) -> None:
        """Mark alarm starts on the trends."""
        if event.event in ("started", "escalated") and event.priority is not None:
            self.trends.add_marker(event.t, "alarm", f"{event.priority.name} {event.label}", event.priority.name)

    def on_entries(self, entries: list[EntryBase]) -> None:
        """Mark charted events, assessments and infusion steps on the trends."""
        for entry in entries:
            if isinstance(entry, EventEntry):
                self.trends.add_marker(entry.t, "event", str(entry.event.get("kind", "event")).replace("_", " "))
            elif isinstance(entry, AssessmentEntry):
                a = entry.assessment
                score = a.get("level", a.get("total", a.get("rating", "")))
                self.trends.add_marker(entry.t, "assessment", f"{str(a.get('kind', '')).upper()} {score}")
            elif isinstance(entry, InfusionStepEntry):
                self.trends.add_marker(entry.t, "infusion", entry.action.replace("_", " "))
            elif isinstance(entry, NasalDeviceEntry):
                self.trends.add_marker(entry.t, "infusion", f"device {entry.number}")
        self._phases()

    def on_session_changed(self) -> None:
        """A session started, resumed or ended: reset the trends' frame of reference. A new
        patient's session starts with trends and a message log of its own: nothing of the patient
        before (samples, markers, free-text notes) stays on the screen under the new name."""
        state = self.service.session()
        if state is None:  # discharged or aborted: nothing of that session stays on the trend
            self.trends.clear_session()
            return
        if state.session_id != self._trend_session:
            self._trend_session = state.session_id
            self.trends.clear()
            self.status_line.keep_only(state.session_id)
        self.trends.set_origin(state.dosing_started_at or state.opened_at)
        self._phases()

    def on_settings_changed(self) -> None:
        """The charge nurse saved clinic settings: they apply from the next session (limits) and
        at once for latching and the audio pause (decided by the service)."""
        self.service.apply_settings(self.context.token, self.context.settings, self.context.profile)
        profile = self.service.session_profile
        self.alarm_area.profile = profile
        for key, tile in self.tiles.items():
            tile.set_limits(*tile_limits(profile, key))

    def on_device_changed(self) -> None:
        """Another device: forget the old one's values and what it provided."""
        self.presence.reset()
        self.latest.clear()
        for series in self.history.values():
            series.clear()
        self.active_conditions.clear()
        for wave in self.waves.values():
            wave.clear()
        self._wave_messages()

    def _phases(self) -> None:
        state = self.service.session()
        if state is None:
            return
        dosing, ended = state.dosing_started_at, state.dosing_ended_at
        phases = []
        if dosing is None or (dosing - state.opened_at).total_seconds() >= 1:
            phases.append((state.opened_at, dosing, "baseline"))
        if dosing is not None:
            phases.append((dosing, ended, "infusion"))
        if ended is not None:
            phases.append((ended, None, "recovery"))
        self.trends.set_phases(phases)
        self.trends.set_origin(dosing or state.opened_at)

    # ------------------------------------------------------------------ timers
    def frame(self) -> None:
        """~25 Hz: waveforms; flashing while a HIGH or MEDIUM alarm shows; alarm sound at ~8 Hz."""
        t = time.monotonic()
        for wave in self.waves.values():
            wave.refresh()
        state = self.alarm_state
        flashing = state is not None and state.visual_priority is not None and state.visual_priority > Priority.LOW
        if flashing or self._was_flashing:
            for tile in self.tiles.values():
                tile.set_flash_phase(t)
            self.alarm_area.animate(t)
        self._was_flashing = flashing
        self._frame += 1
        if state is not None and self._frame % 3 == 0:
            self.audio.update(self.service.alarm_state().audio_priority, t)

    def refresh(self) -> None:
        """1 Hz: numerics, trend arrows, NIBP age, trends, device line."""
        now = self.service.now()
        profile = self.service.session_profile
        if profile is not self._limits_shown:
            self._limits_shown = profile
            self.alarm_area.profile = profile
            for key, tile in self.tiles.items():
                tile.set_limits(*tile_limits(profile, key))
        self._apply_presence(time.monotonic())
        heart = "pr" if self._shown_keys[2] == "pr" else "hr"
        for key, tile in self.tiles.items():
            source = heart if key == "hr" else key  # the HR tile shows the pulse rate when there is no ECG
            obs = self.latest.get(source)
            if key == "nibp_sys":
                self._refresh_nibp(tile, now)
                continue
            stale = obs is None or (now - obs.sample_time).total_seconds() > 10
            value = None if obs is None or stale else obs.value
            tile.set_value(value)
            tile.set_dimmed(obs is not None and obs.flagged and value is not None)
            tile.set_trend(trend_direction(source, list(self.history.get(source, ())), now)
                           if source in self.history else 0)
        self.trends.refresh(now)
        self.device_panel.refresh()
        self.alarm_area.animate(time.monotonic())  # the audio-pause count-down

    def _refresh_nibp(self, tile: NumericTile, now: datetime) -> None:
        sys_, dia, mean = (self.latest.get(k) for k in ("nibp_sys", "nibp_dia", "nibp_mean"))
        if sys_ is None or sys_.value is None or dia is None or dia.value is None:
            tile.set_value(None)
            tile.set_subtext("no reading yet")
            return
        state = self.service.session()
        interval = nibp_interval_min(state.patient, state.settings.schedules) if state is not None else None
        freshness = nibp_freshness(sys_.sample_time, now, interval)
        minutes = int((now - sys_.sample_time).total_seconds() // 60)
        age = "just now" if minutes < 1 else f"{minutes} min ago"
        tile.set_value(f"{sys_.value:.0f}/{dia.value:.0f}")
        map_text = f"MAP {mean.value:.0f} · " if mean is not None and mean.value is not None and \
            mean.sample_time == sys_.sample_time else ""
        manual = "manual · " if Quality.MANUAL in sys_.quality else ""
        tile.set_subtext(f"{manual}{map_text}{age} ({sys_.sample_time.astimezone():%H:%M})")
        tile.set_dimmed(freshness is Freshness.STALE)
        tile.set_trend(trend_direction("nibp_sys", list(self.nibp_history), now))

    # ------------------------------------------------------------------ messages
    def show_message(self, message: Confirmation | str) -> None:
        """What was just recorded, until the next message (the log keeps the last few)."""
        self.status_line.show_message(message, tag=self._session_tag())

    def _session_tag(self) -> str | None:
        state = self.service.session()
        return None if state is None else state.session_id

    def show_refusal(self, text: str) -> None:
        """Why something was refused, in red until the next message."""
        self.status_line.show_message(text, refused=True, tag=self._session_tag())

    def _action_done(self, name: str) -> None:
        """A session-panel action was recorded: say what, when and by whom, in words."""
        user = self.context.user
        done = display_name(name, ACTION_NAMES)
        at = clock(self.service.now())
        self.show_message(Confirmation(f"{done} at {at}" + (f" ({user.display_name})" if user else ""),
                                       f"{done} {at}"))

    # ------------------------------------------------------------------ staff
    def _actor(self) -> Actor:
        return self.context.user or BEDSIDE

    def acknowledge(self) -> None:
        """F1: acknowledge the alarms active now."""
        self.service.acknowledge(self._actor())

    def pause_audio(self) -> None:
        """F2: pause alarm audio for the clinic's default time."""
        try:
            self.service.pause_audio(self._actor())
        except ValueError as exc:
            QMessageBox.warning(self, "Audio pause", nurse_message(exc))

    def cancel_pause(self) -> None:
        """Resume alarm audio before the pause ends."""
        self.service.cancel_audio_pause(self._actor())

    def toggle_pause(self) -> None:
        """F2 toggles: pause, or resume if paused."""
        state = self.service.alarm_state()
        if state.inactivation.audio_paused:
            self.cancel_pause()
        else:
            self.pause_audio()

    def event_bar_focus(self) -> None:
        """F3: go to the event bar's note field."""
        focus = getattr(self.event_bar, "focus_note", None)
        if callable(focus):
            focus()

    def toggle_full_screen(self) -> None:
        """F11: full screen (as a bedside monitor), or back to a window."""
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    def lock(self) -> None:
        """Lock the screen (sign out; F12 when someone is signed in). Monitoring, recording and alarms carry on."""
        self.context.set_user(None)

    def toggle_sign_in(self) -> None:
        """F12: sign in, or lock when someone is signed in."""
        if self.context.user is not None:
            self.lock()
            return
        from ui.dialogs import SignInDialog  # noqa: PLC0415

        SignInDialog(self.context, self).exec()

    def open_admin(self) -> None:
        """Clinic settings and staff accounts (charge nurse only)."""
        from ui.dialogs import ClinicSettingsDialog, SignInDialog, UsersDialog  # noqa: PLC0415

        if self.context.user is None:
            SignInDialog(self.context, self).exec()
            if self.context.user is None:
                return
        box = QMessageBox(self)
        box.setWindowTitle("Clinic")
        box.setText("Clinic administration (charge nurse)")
        settings_button = box.addButton("Settings and default alarm limits…", QMessageBox.ButtonRole.ActionRole)
        users_button = box.addButton("Staff accounts…", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is settings_button:
            ClinicSettingsDialog(self.context, self).exec()
        elif box.clickedButton() is users_button:
            UsersDialog(self.context, self).exec()

    def open_review(self):
        """The session browser, to review and export recorded sessions (the one being recorded
        opens read-only). Records hold patient data: someone must be signed in, and locking the
        screen closes the browser and its review windows. Returns the browser (None: nobody signed in)."""
        from ui.dialogs import SignInDialog, run_modal  # noqa: PLC0415
        from ui.review import SessionBrowser  # noqa: PLC0415

        if self.context.user is None:
            run_modal(SignInDialog(self.context, self))
            if self.context.user is None:
                return None
        if self.browser is None:
            self.browser = SessionBrowser(self.context)
        self.browser.search()
        self.browser.show()
        self.browser.raise_()
        self.browser.activateWindow()
        return self.browser

    def _close_review(self) -> None:
        if self.browser is not None:
            self.browser.close()  # closes its review windows too

    def _show_user(self, user: Actor | None) -> None:
        """Signed in, or locked: the veil over the patient's details and the session's actions."""
        self.status_line.set_locked(user is None)   # the log lists what staff recorded: not while locked
        if user is None:
            self._close_review()
            self.status_line.drop_undo()   # nobody may undo the last nurse's event on a locked screen
            self.user_label.set_forms("<span style='color:#ffd000'><b>Screen locked</b></span> — monitoring continues",
                                      "<span style='color:#ffd000'><b>Screen locked</b></span>")
            self.sign_button.setText("Sign in (F12)")
        else:
            role = user.role.label
            self.user_label.set_forms(f"Signed in: <b>{_html(user.display_name)}</b> ({role})",
                                      f"<b>{_html(user.display_name)}</b> ({role})", f"<b>{_html(user.display_name)}</b>")
            self.sign_button.setText("Lock (F12)")
        self.user_label.setToolTip("" if user is None else f"Signed in: {user.display_name} ({user.role.label})")
        for overlay in self.lock_overlays:
            overlay.setVisible(user is None)
            if user is None:
                overlay.show()

    @property
    def locked(self) -> bool:
        """True while nobody is signed in (the screen is locked)."""
        return self.context.user is None

    def open_help(self) -> None:
        """The help window: alarms and their meanings and delays, keys, the trend legend."""
        from ui.dialogs import run_modal  # noqa: PLC0415
        from ui.help import HelpDialog  # noqa: PLC0415

        run_modal(HelpDialog(self.service.session_profile, self))

    # ------------------------------------------------------------------ Qt
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            QTimer.singleShot(0, self.first_painted.emit)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        """Closing during a session asks first; the session stays open to be resumed."""
        if self.service.recording and not getattr(self, "force_close", False):
            answer = QMessageBox.question(
                self, "Close Vigil?",
                "A session is being recorded. If you close Vigil, monitoring, recording and alarms stop "
                "for this patient. The session stays open and can be resumed when Vigil starts again.\n\n"
                "Close Vigil anyway?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self.frame_timer.stop()
        self.second_timer.stop()
        self.audio.stop()
        self._close_review()
        super().closeEvent(event)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
