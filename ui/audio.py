"""Alarm sound output: the IEC burst patterns (monitor/alarms/audio.py) played through QtMultimedia.

Where QtMultimedia cannot load (it needs libpulse on Linux) or finds no output device, the player
says so (:attr:`AlarmAudio.available` False with :attr:`reason`), and the window raises the MEDIUM
technical alarm "alarm audio unavailable", which stays visible for as long as that lasts. The same
happens the moment the sound fails during a session (the sink reports an error, or the output
device disappears): :attr:`AlarmAudio.availability_changed` says so at once, and again when an
output device comes back.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, Signal

from monitor.alarms.audio import SAMPLE_RATE, AudioScheduler, burst_samples
from monitor.alarms.profile import Priority

log = logging.getLogger(__name__)


class AlarmAudio(QObject):
    """Plays bursts when the alarm engine's audio priority asks for them.

    Call :meth:`update` with the engine's current audio priority a few times a second; the
    scheduler decides when a burst starts (onset, rise, repeat interval). ``availability_changed(
    available, reason)`` fires whenever sound output is lost or comes back.
    """

    availability_changed = Signal(bool, str)

    def __init__(self, parent: QObject | None = None, enabled: bool = True) -> None:
        super().__init__(parent)
        self._devices = None
        self.scheduler = AudioScheduler()
        self.available = False
        self.reason = "alarm audio is switched off for this run"
        self.bursts_started = 0
        self.last_burst: Priority | None = None
        self._sink = None
        self._buffer: QBuffer | None = None
        self._pcm: dict[Priority, QByteArray] = {}
        if enabled:
            self._open()

    def _open(self) -> None:
        try:
            from PySide6.QtMultimedia import QMediaDevices  # noqa: PLC0415
        except ImportError as exc:  # e.g. libpulse.so.0 missing on Linux
            self.reason = f"the sound system could not be loaded ({exc})"
            return
        if self._devices is None:
            self._devices = QMediaDevices(self)
            self._devices.audioOutputsChanged.connect(self._outputs_changed)
        self._make_sink()

    def _make_sink(self) -> None:
        from PySide6.QtMultimedia import QAudio, QAudioFormat, QAudioSink, QMediaDevices  # noqa: PLC0415

        device = QMediaDevices.defaultAudioOutput()
        if device.isNull() or not QMediaDevices.audioOutputs():
            self.reason = "no sound output device was found on this computer"
            return
        fmt = QAudioFormat()
        fmt.setSampleRate(SAMPLE_RATE)
        fmt.setChannelCount(1)
        fmt.setSampleFormat(QAudioFormat.SampleFormat.Int16)
        if not device.isFormatSupported(fmt):
            self.reason = "the sound output does not support the alarm tone format"
            return
        if self._sink is not None:
            self._sink.stop()
            self._sink.deleteLater()
        self._sink = QAudioSink(device, fmt, self)
        self._sink.stateChanged.connect(self._state_changed)
        self._QAudio = QAudio
        self._pcm = {p: QByteArray(burst_samples(p).tobytes()) for p in Priority}
        self.available = True
        self.reason = ""

    def _set_available(self, available: bool, reason: str) -> None:
        changed = available != self.available
        self.available, self.reason = available, reason
        if changed:
            (log.info if available else log.warning)("alarm audio %s%s", "available again" if available
                                                     else "unavailable: ", reason)
            self.availability_changed.emit(available, reason)

    def fail(self, reason: str) -> None:
        """The sound output failed (an error from the sink, a device gone): say so at once."""
        if self._sink is not None:
            self._sink.stop()
        self._set_available(False, reason)

    def _state_changed(self, _state) -> None:
        sink = self._sink
        if sink is not None and sink.error() not in (self._QAudio.Error.NoError, self._QAudio.Error.UnderrunError):
            self.fail(f"the sound output failed ({sink.error().name})")

    def _outputs_changed(self) -> None:
        from PySide6.QtMultimedia import QMediaDevices  # noqa: PLC0415

        if not QMediaDevices.audioOutputs():
            self.fail("the sound output device was disconnected")
            return
        if not self.available:  # a device came back: try it
            self._make_sink()
            if self.available:
                self.available = False
                self._set_available(True, "")

    def update(self, priority: Priority | None, now: float | None = None) -> Priority | None:
        """Start a burst if the scheduler says so; returns the burst's priority (or None)."""
        burst = self.scheduler.update(time.monotonic() if now is None else now, priority)
        if burst is not None:
            self.bursts_started += 1
            self.last_burst = burst
            if self.available:
                self._play(burst)
        return burst

    def _play(self, priority: Priority) -> None:
        try:
            self._sink.stop()
            self._buffer = QBuffer(self)
            self._buffer.setData(self._pcm[priority])
            self._buffer.open(QIODevice.OpenModeFlag.ReadOnly)
            self._sink.start(self._buffer)
            if self._sink.error() != self._QAudio.Error.NoError:
                raise OSError(f"audio error {self._sink.error()}")
        except Exception as exc:  # a failing sound card must not take the monitor down
            self.fail(f"the sound output failed ({exc})")

    def stop(self) -> None:
        """Silence any burst in progress (on exit)."""
        if self._sink is not None:
            self._sink.stop()
