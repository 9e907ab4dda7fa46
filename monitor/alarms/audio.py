"""Alarm sounds: the IEC 60601-1-8 burst patterns, and tone synthesis for them.

Pure (numpy only): the window plays the samples through QtMultimedia; tests check the patterns.

Patterns (clinic-independent, chosen inside the standard's ranges):

* HIGH — 10 pulses in two groups of 3 + 2 (x-x-x--x-x, pause, x-x-x--x-x), each pulse 150 ms
  (standard: 75–200 ms), fundamental 700 Hz; the burst lasts 3.6 s and repeats every 10 s
  (standard: 2.5–15 s).
* MEDIUM — 3 pulses of 200 ms, fundamental 560 Hz; 0.8 s, repeated every 15 s (2.5–30 s).
* LOW — 2 pulses of 250 ms, fundamental 440 Hz; 0.65 s, not repeated.

Every pulse has the fundamental plus four harmonics (all within 300–4000 Hz), and a rise and
fall time of 15 % of the pulse (standard: 10–20 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.alarms.profile import Priority

SAMPLE_RATE = 22050


@dataclass(frozen=True)
class BurstPattern:
    """One priority's burst: pulse onsets (s from burst start), pulse length, pitch, repeat."""

    priority: Priority
    onsets: tuple[float, ...]
    pulse_s: float
    fundamental_hz: float
    repeat_s: float | None  # None: the burst is not repeated

    @property
    def duration_s(self) -> float:
        """Seconds from the first pulse's start to the last pulse's end."""
        return self.onsets[-1] + self.pulse_s

    @property
    def half_duration_s(self) -> float:
        """Seconds to the end of the first half of the pulses (what a short HIGH still sounds)."""
        half = self.onsets[(len(self.onsets) + 1) // 2 - 1]
        return half + self.pulse_s


PATTERNS: dict[Priority, BurstPattern] = {
    # HIGH: x-x-x--x-x, pause, x-x-x--x-x
    Priority.HIGH: BurstPattern(Priority.HIGH, (0.0, 0.25, 0.5, 0.9, 1.15, 2.3, 2.55, 2.8, 3.2, 3.45),
                                0.15, 700.0, 10.0),
    Priority.MEDIUM: BurstPattern(Priority.MEDIUM, (0.0, 0.3, 0.6), 0.2, 560.0, 15.0),
    Priority.LOW: BurstPattern(Priority.LOW, (0.0, 0.4), 0.25, 440.0, None),
}


def minimum_sound_s(priority: Priority) -> float:
    """How long an alarm that clears at once still sounds: MEDIUM one full burst, HIGH half a
    burst, LOW its single burst."""
    pattern = PATTERNS[priority]
    return pattern.half_duration_s if priority is Priority.HIGH else pattern.duration_s


def pulse(fundamental_hz: float, seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """One pulse: fundamental + 4 harmonics, 15 % rise/fall; float32 in [-1, 1]."""
    t = np.arange(int(round(seconds * rate))) / rate
    amplitudes = (1.0, 0.6, 0.45, 0.3, 0.2)
    wave = sum(a * np.sin(2 * np.pi * fundamental_hz * (k + 1) * t) for k, a in enumerate(amplitudes))
    ramp = max(1, int(round(0.15 * len(t))))
    envelope = np.ones(len(t))
    envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
    envelope[-ramp:] = np.linspace(1.0, 0.0, ramp)
    out = wave * envelope
    return (out / np.max(np.abs(out))).astype(np.float32)


def burst_samples(priority: Priority, rate: int = SAMPLE_RATE, volume: float = 0.8) -> np.ndarray:
    """The whole burst of ``priority`` as int16 mono PCM at ``rate`` Hz."""
    pattern = PATTERNS[priority]
    total = np.zeros(int(round(pattern.duration_s * rate)) + 1, dtype=np.float32)
    one = pulse(pattern.fundamental_hz, pattern.pulse_s, rate)
    for onset in pattern.onsets:
        start = int(round(onset * rate))
        total[start:start + len(one)] += one[: len(total) - start]
    return (np.clip(total * volume, -1.0, 1.0) * 32767).astype(np.int16)


class AudioScheduler:
    """Decides when a burst starts, given the alarm engine's audio priority over time.

    Call :meth:`update` often (e.g. every 50–100 ms) with the engine's current audio priority;
    it returns the priority of a burst to start now, or None. A burst starts when the audio
    priority appears or rises, and repeats at the pattern's interval while it persists; LOW is
    not repeated. Pure: time is passed in (monotonic seconds).
    """

    def __init__(self) -> None:
        self._current: Priority | None = None
        self._last_start: float | None = None

    def update(self, now: float, priority: Priority | None) -> Priority | None:
        """The burst to start at ``now`` (None: nothing new)."""
        if priority is None:
            self._current = None
            return None
        rising = self._current is None or priority > self._current
        self._current = priority
        if rising:
            self._last_start = now
            return priority
        repeat = PATTERNS[priority].repeat_s
        if repeat is not None and self._last_start is not None and now - self._last_start >= repeat:
            self._last_start = now
            return priority
        return None
