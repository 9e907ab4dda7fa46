"""Alarm sound output: the IEC burst patterns (monitor/alarms/audio.py) played through QtMultimedia.

Where QtMultimedia cannot load (it needs libpulse on Linux) or finds no output device, the player
says so (:attr:`AlarmAudio.available` False with :attr:`reason`), and the window raises the LOW
technical alarm "alarm audio unavailable", which stays visible for as long as that lasts.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject

from monitor.alarms.audio import SAMPLE_RATE, AudioScheduler, burst_samples
from monitor.alarms.profile import Priority

log = logging.getLogger(__name__)


class AlarmAudio(QObject):
    """Plays bursts when the alarm engine's audio priority asks for them.

    Call :meth:`update` with the engine's current audio priority a few times a second; the
    scheduler decides when a burst starts (onset, rise, repeat interval).
    """

    def __init__(self, parent: QObject | None = None, enabled: bool = True) -> None:
        super().__init__(parent)
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
            from PySide6.QtMultimedia import QAudio, QAudioFormat, QAudioSink, QMediaDevices  # noqa: PLC0415
        except ImportError as exc:  # e.g. libpulse.so.0 missing on Linux
            self.reason = f"the sound system could not be loaded ({exc})"
            return
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
        self._sink = QAudioSink(device, fmt, self)
        self._QAudio = QAudio
        self._pcm = {p: QByteArray(burst_samples(p).tobytes()) for p in Priority}
        self.available = True
        self.reason = ""

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
            log.warning("alarm audio failed: %s", exc)
            self.available = False
            self.reason = f"the sound output failed ({exc})"

    def stop(self) -> None:
        """Silence any burst in progress (on exit)."""
        if self._sink is not None:
            self._sink.stop()
