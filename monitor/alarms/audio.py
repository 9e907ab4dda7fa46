"""Alarm sounds: the IEC 60601-1-8 burst patterns, and tone synthesis for them.

Pure (numpy only): the window plays the samples through QtMultimedia; tests check the patterns.

Patterns (clinic-independent, chosen inside the standard's ranges). Durations and spacings are
*effective* values, measured between the 50 % amplitude points of the pulses' edges, as the
standard measures them; ``t_d`` is the pulse duration, ``t_s`` the spacing between pulses:

* HIGH — 10 pulses, 3 + 2, pause, 3 + 2: t_d 150 ms (standard 75–200), t_s 100 ms (50–125)
  between pulses 1–2, 2–3, 4–5, 6–7, 7–8 and 9–10; 2·t_s + t_d = 350 ms between pulses 3–4 and
  8–9; 800 ms between pulses 5 and 6 (0.35–1.30 s); fundamental 700 Hz; the burst repeats every
  10 s (2.5–15 s).
* MEDIUM — 3 pulses, t_d 200 ms (125–250), t_s 200 ms (125–250), fundamental 560 Hz; repeated
  every 15 s (2.5–30 s).
* LOW — 2 pulses, t_d 200 ms, t_s 200 ms, fundamental 440 Hz; not repeated.

Every pulse has the fundamental plus four harmonics (all within 300–4000 Hz) and linear rise and
fall ramps whose 10–90 % rise time is 15 % of t_d (standard: 10–20 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.alarms.profile import Priority

SAMPLE_RATE = 22050


@dataclass(frozen=True)
class BurstPattern:
    """One priority's burst: effective pulse duration ``pulse_s`` (t_d), the spacings between
    consecutive pulses (end of one to start of the next, 50 % points), pitch and repeat."""

    priority: Priority
    pulse_s: float
    spacings: tuple[float, ...]
    fundamental_hz: float
    repeat_s: float | None  # None: the burst is not repeated

    @property
    def onsets(self) -> tuple[float, ...]:
        """Effective start of each pulse (its 50 % rise point), seconds from the first."""
        out = [0.0]
        for gap in self.spacings:
            out.append(out[-1] + self.pulse_s + gap)
        return tuple(out)

    @property
    def duration_s(self) -> float:
        """Seconds from the first pulse's start to the last pulse's end."""
        return self.onsets[-1] + self.pulse_s

    @property
    def half_duration_s(self) -> float:
        """Seconds to the end of the first half of the pulses (what a short HIGH still sounds)."""
        half = self.onsets[(len(self.onsets) + 1) // 2 - 1]
        return half + self.pulse_s


_HIGH_TS = 0.10
_HIGH_TD = 0.15
PATTERNS: dict[Priority, BurstPattern] = {
    # HIGH: x-x-x--x-x, pause, x-x-x--x-x
    Priority.HIGH: BurstPattern(
        Priority.HIGH, _HIGH_TD,
        (_HIGH_TS, _HIGH_TS, 2 * _HIGH_TS + _HIGH_TD, _HIGH_TS, 0.80,
         _HIGH_TS, _HIGH_TS, 2 * _HIGH_TS + _HIGH_TD, _HIGH_TS), 700.0, 10.0),
    Priority.MEDIUM: BurstPattern(Priority.MEDIUM, 0.20, (0.20, 0.20), 560.0, 15.0),
    Priority.LOW: BurstPattern(Priority.LOW, 0.20, (0.20,), 440.0, None),
}
#: Each linear ramp lasts this fraction of the pulse's full length (its 10–90 % rise is then 15 % of the effective duration).
_RAMP = 0.158


def minimum_sound_s(priority: Priority) -> float:
    """How long an alarm that clears at once still sounds: MEDIUM one full burst, HIGH half a
    burst, LOW its single burst."""
    pattern = PATTERNS[priority]
    return pattern.half_duration_s if priority is Priority.HIGH else pattern.duration_s


def pulse(fundamental_hz: float, seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """One pulse whose *effective* duration (50 % points) is ``seconds``: fundamental + 4 harmonics,
    linear rise and fall ramps; float32 in [-1, 1]. Its full length is ``seconds / (1 - ramp)``."""
    total = seconds / (1.0 - _RAMP)
    t = np.arange(int(round(total * rate))) / rate
    amplitudes = (1.0, 0.6, 0.45, 0.3, 0.2)
    wave = sum(a * np.sin(2 * np.pi * fundamental_hz * (k + 1) * t) for k, a in enumerate(amplitudes))
    ramp = max(1, int(round(_RAMP * len(t))))
    envelope = np.ones(len(t))
    envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
    envelope[-ramp:] = np.linspace(1.0, 0.0, ramp)
    out = wave * envelope
    return (out / np.max(np.abs(out))).astype(np.float32)


def burst_samples(priority: Priority, rate: int = SAMPLE_RATE, volume: float = 0.8) -> np.ndarray:
    """The whole burst of ``priority`` as int16 mono PCM at ``rate`` Hz. The first pulse's ramp
    starts at sample 0, so its 50 % point (the burst's effective start) is half a ramp later."""
    pattern = PATTERNS[priority]
    one = pulse(pattern.fundamental_hz, pattern.pulse_s, rate)
    lead = (len(one) / rate - pattern.pulse_s) / 2.0  # from a pulse's first sample to its 50 % rise point
    total = np.zeros(int(round((pattern.duration_s + 2 * lead) * rate)) + 1, dtype=np.float32)
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
