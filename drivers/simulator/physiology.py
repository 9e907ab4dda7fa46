"""The simulated patient: seeded numerics, agreeing waveforms and a scheduled NIBP cuff.

The model runs on simulated time. Numerics are computed on a one-second grid (each a scenario
target plus seeded Ornstein–Uhlenbeck noise); waveforms are generated sample by sample from the
same numerics, so that the pleth pulses at the pulse rate, the ECG beats at the heart rate and
the capnogram breathes at the respiratory rate (flat during apnea). NIBP is measured on a
schedule; each cuff cycle takes about 30 s and the reading appears when it completes. A reading
with SBP ≥ 160 is repeated after 3 minutes, as a nurse would.

The same seed and the same sequence of :meth:`PhysiologyModel.advance` calls give the same
output. Numerics do not depend on how time is chunked; waveform noise may.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from drivers.emulation import DeviceSnapshot
from drivers.simulator.scenarios import Scenario

#: Sample rates of the simulated waveforms, Hz.
WAVE_RATES: dict[str, float] = {"ecg": 250.0, "pleth": 100.0, "co2": 25.0}

# (sigma, tau seconds) of the Ornstein–Uhlenbeck noise added to each target.
_NOISE: dict[str, tuple[float, float]] = {
    "hr": (1.8, 20.0), "spo2": (0.5, 15.0), "rr": (0.8, 30.0), "etco2": (0.8, 30.0),
    "temp": (0.04, 300.0), "pi": (0.25, 30.0),
}


@dataclass(slots=True)
class NumericTick:
    """The numerics of one simulated second. None = the device has no valid value."""

    time: datetime
    values: dict[str, float | None]
    conditions: frozenset[str]


@dataclass(slots=True)
class NibpReading:
    """A completed cuff measurement, mmHg."""

    time: datetime
    sys: float
    dia: float
    mean: float


@dataclass(slots=True)
class SimStep:
    """What one :meth:`PhysiologyModel.advance` produced."""

    snapshot: DeviceSnapshot
    ticks: list[NumericTick] = field(default_factory=list)
    nibp: list[NibpReading] = field(default_factory=list)
    #: UTC time of the first sample of each waveform in ``snapshot.waves``.
    wave_start: dict[str, datetime] = field(default_factory=dict)
    disconnected: bool = False


class PhysiologyModel:
    """A simulated patient on a simulated monitor.

    ``scenario``: a name from :data:`drivers.simulator.scenarios.SCENARIOS` (ValueError
    otherwise). ``start``: aware UTC time of simulated second 0 (default: now).
    ``nibp_interval``: seconds between automatic cuff measurements (60..3600).
    ``waves``: False skips waveform generation (numerics-only runs are ~10x faster).
    """

    def __init__(
        self,
        scenario: str = "normal",
        seed: int = 0,
        start: datetime | None = None,
        nibp_interval: float = 300.0,
        nibp_cycle: float = 30.0,
        repeat_high_after: float | None = 180.0,
        waves: bool = True,
    ) -> None:
        if not 60.0 <= nibp_interval <= 3600.0:
            raise ValueError("nibp_interval must be between 60 and 3600 seconds")
        self.scenario = Scenario(scenario)
        self.seed = seed
        self.start = (start or datetime.now(timezone.utc)).astimezone(timezone.utc)
        self.nibp_interval = nibp_interval
        self.nibp_cycle = nibp_cycle
        self.repeat_high_after = repeat_high_after
        self.waves = waves
        num_seq, wave_seq, nibp_seq = np.random.SeedSequence(seed).spawn(3)
        self._rng = np.random.default_rng(num_seq)
        self._wave_rng = np.random.default_rng(wave_seq)
        self._nibp_rng = np.random.default_rng(nibp_seq)
        self._t = 0.0
        self._next_tick = 0
        self._noise = {key: 0.0 for key in _NOISE}
        self._seconds: dict[int, dict[str, float | None]] = {}
        self._last_tick: NumericTick | None = None
        self._phase = {"beat": 0.0, "breath": 0.0}
        self._index = {ch: 0 for ch in WAVE_RATES}
        self._nibp_next = 5.0
        self._nibp_done_at: float | None = None
        self._nibp_last: NibpReading | None = None

    # ------------------------------------------------------------------ time
    @property
    def t(self) -> float:
        """Simulated seconds since start."""
        return self._t

    def time_at(self, t: float) -> datetime:
        """Aware UTC time of simulated second ``t``."""
        return self.start + timedelta(seconds=t)

    def now(self) -> datetime:
        """Aware UTC time of the model now."""
        return self.time_at(self._t)

    def device_clock(self) -> datetime:
        """The simulated device's own clock: naive local time."""
        return self.now().astimezone().replace(tzinfo=None, microsecond=0)

    def disconnected(self) -> bool:
        """True while the scenario has the monitor cable pulled."""
        return self.scenario.disconnected(self._t)

    # ------------------------------------------------------------------ NIBP
    def request_nibp(self) -> bool:
        """Start a cuff measurement now (the "NIBP start" key); False if one is running."""
        if self._nibp_done_at is not None:
            return False
        self._nibp_next = self._t
        return True

    @property
    def nibp_in_progress(self) -> bool:
        """True while the cuff is inflated."""
        return self._nibp_done_at is not None

    def _nibp(self, t_end: float) -> list[NibpReading]:
        readings: list[NibpReading] = []
        while True:
            if self._nibp_done_at is None:
                if self._nibp_next > t_end:
                    return readings
                start = self._nibp_next
                self._nibp_done_at = start + self.nibp_cycle + float(self._nibp_rng.uniform(-3.0, 3.0))
                self._nibp_next = start + self.nibp_interval
            if self._nibp_done_at > t_end:
                return readings
            done = self._nibp_done_at
            target = self.scenario.targets(done)
            sys_ = round(target["nibp_sys"] + float(self._nibp_rng.normal(0.0, 3.0)))
            dia = round(target["nibp_dia"] + float(self._nibp_rng.normal(0.0, 2.5)))
            mean = round(dia + (sys_ - dia) / 3.0)
            reading = NibpReading(self.time_at(done), float(sys_), float(dia), float(mean))
            readings.append(reading)
            self._nibp_last = reading
            self._nibp_done_at = None
            if self.repeat_high_after is not None and sys_ >= 160:
                self._nibp_next = min(self._nibp_next, done + self.repeat_high_after)

    # ------------------------------------------------------------------ numerics
    def _tick(self, k: int) -> NumericTick:
        t = float(k)
        target = self.scenario.targets(t)
        for key, (sigma, tau) in _NOISE.items():
            a = math.exp(-1.0 / tau)
            self._noise[key] = self._noise[key] * a + sigma * math.sqrt(1 - a * a) * float(self._rng.normal())
        n = self._noise
        hr = round(target["hr"] + n["hr"])
        pr = hr + round(float(self._rng.normal(0.0, 0.6)))
        spo2 = min(100.0, round(target["spo2"] + n["spo2"]))
        pi = round(max(0.2, target["pi"] + n["pi"]), 2)
        rr_target = target["rr"]
        rr = 0.0 if rr_target <= 0 else float(max(1, round(rr_target + n["rr"])))
        etco2 = None if rr_target <= 0 else float(round(target["etco2"] + n["etco2"]))
        values: dict[str, float | None] = {
            "hr": float(hr), "pr": float(pr), "spo2": float(spo2), "pi": pi, "rr": rr,
            "etco2": etco2, "temp": round(target["temp"] + n["temp"], 1),
        }
        conditions: set[str] = set()
        if self.scenario.artifact(t):
            conditions.add("artifact")
            values["spo2"] = float(max(70, spo2 - round(float(self._rng.uniform(0, 10)))))
            values["pr"] = float(max(30, pr + round(float(self._rng.normal(0, 15)))))
        if self.scenario.sensor_off(t):
            conditions.add("sensor_off")
            values.update(spo2=None, pr=None, pi=None)
        self._seconds[k] = values
        return NumericTick(self.time_at(t), values, frozenset(conditions))

    def _per_sample(self, key: str, times: np.ndarray, default: float) -> np.ndarray:
        seconds = np.floor(times).astype(np.int64)
        first = int(seconds[0])
        table = np.array(
            [default if (v := self._seconds.get(k, {}).get(key)) is None else v
             for k in range(first, int(seconds[-1]) + 1)],
            dtype=np.float64,
        )
        return table[seconds - first]

    # ------------------------------------------------------------------ waves
    def _times(self, channel: str, t_end: float) -> np.ndarray:
        fs = WAVE_RATES[channel]
        first = self._index[channel]
        last = int(math.floor(t_end * fs))
        self._index[channel] = max(first, last)
        return np.arange(first, max(first, last), dtype=np.float64) / fs

    def _beat_fraction(self, times: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
        hr = np.clip(self._per_sample("hr", times, 60.0), 20.0, 300.0)
        phase = self._phase["beat"] + np.cumsum(hr / 60.0 / fs)
        return phase, 60.0 / hr

    def _ecg(self, t_end: float) -> np.ndarray:
        times = self._times("ecg", t_end)
        if not len(times):
            return np.empty(0, np.float32)
        fs = WAVE_RATES["ecg"]
        phase, period = self._beat_fraction(times, fs)
        self._phase["beat"] = float(phase[-1])
        scale = np.clip(np.sqrt(period), 0.55, 1.2)
        tau = (phase % 1.0) * period
        ecg = np.zeros(len(times))
        for centre, amp, width in ((0.10, 0.12, 0.022), (0.19, -0.12, 0.008), (0.21, 1.1, 0.009),
                                   (0.235, -0.25, 0.009), (0.45, 0.28, 0.045)):
            ecg += amp * np.exp(-(((tau - centre * scale) / (width * scale)) ** 2))
        ecg += 0.04 * np.sin(2 * np.pi * 0.23 * times) + self._wave_rng.normal(0.0, 0.01, len(times))
        return ecg.astype(np.float32)

    def _pleth(self, t_end: float) -> np.ndarray:
        times = self._times("pleth", t_end)
        if not len(times):
            return np.empty(0, np.float32)
        fs = WAVE_RATES["pleth"]
        pr = self._per_sample("pr", times, float("nan"))
        valid = ~np.isnan(pr)
        hr = np.clip(np.where(valid, pr, 60.0), 20.0, 300.0)
        # The pleth shares the cardiac phase with the ECG, delayed by the pulse transit time.
        phase = self._phase.get("pulse", 0.0) + np.cumsum(hr / 60.0 / fs)
        self._phase["pulse"] = float(phase[-1])
        u = (phase - 0.25 * hr / 60.0) % 1.0
        width = np.where(u < 0.18, 0.07, 0.16)
        pulse = np.exp(-(((u - 0.18) / width) ** 2)) + 0.28 * np.exp(-(((u - 0.48) / 0.07) ** 2))
        pi = self._per_sample("pi", times, 3.0)
        amp = np.clip(pi / 4.0, 0.15, 1.0)
        pleth = 0.12 + 0.75 * amp * pulse / 1.1 + 0.03 * np.sin(2 * np.pi * 0.23 * times)
        pleth += self._wave_rng.normal(0.0, 0.004, len(times))
        seconds = np.floor(times)
        moving_seconds = [k for k in np.unique(seconds) if self.scenario.artifact(float(k))]
        if moving_seconds:
            mask = np.isin(seconds, moving_seconds)
            jitter = np.cumsum(self._wave_rng.normal(0.0, 0.05, len(times)))
            noisy = pleth + 0.35 * np.sin(jitter) + self._wave_rng.normal(0.0, 0.08, len(times))
            pleth = np.where(mask, noisy, pleth)
        pleth = np.where(valid, np.clip(pleth, 0.0, 1.0), np.nan)
        return pleth.astype(np.float32)

    def _co2(self, t_end: float) -> np.ndarray:
        times = self._times("co2", t_end)
        if not len(times):
            return np.empty(0, np.float32)
        fs = WAVE_RATES["co2"]
        rr = self._per_sample("rr", times, 0.0)
        et = self._per_sample("etco2", times, 0.0)
        phase = self._phase["breath"] + np.cumsum(rr / 60.0 / fs)
        self._phase["breath"] = float(phase[-1])
        u = phase % 1.0
        expiring = u < 0.45
        rise = et * (1.0 - np.exp(-u / 0.035)) * (0.93 + 0.07 * u / 0.45)
        fall = et * np.exp(-(u - 0.45) / 0.02)
        co2 = np.where(expiring, rise, fall)
        co2 = np.where(rr > 0, co2, 0.0) + np.abs(self._wave_rng.normal(0.0, 0.15, len(times)))
        return co2.astype(np.float32)

    # ------------------------------------------------------------------ step
    def advance(self, dt: float) -> SimStep:
        """Run the patient forward by ``dt`` simulated seconds (≥ 0) and return what happened."""
        if dt < 0 or math.isnan(dt):
            raise ValueError("dt must be a non-negative number of seconds")
        t_end = self._t + dt
        ticks = []
        while self._next_tick <= t_end:
            ticks.append(self._tick(self._next_tick))
            self._next_tick += 1
        if ticks:
            self._last_tick = ticks[-1]
        wave_start = {ch: self.time_at(self._index[ch] / fs) for ch, fs in WAVE_RATES.items()}
        if self.waves:
            waves = {"ecg": self._ecg(t_end), "pleth": self._pleth(t_end), "co2": self._co2(t_end)}
        else:
            waves = {}
        nibp = self._nibp(t_end)
        self._t = t_end
        # Waveforms look up each second's values: keep every second they have not yet reached
        # (a long step, e.g. at high speed, spans many seconds), and no more.
        oldest = min(self._index[ch] / fs for ch, fs in WAVE_RATES.items()) if self.waves else t_end
        for k in [k for k in self._seconds if k < math.floor(oldest) - 1]:
            del self._seconds[k]
        last = self._last_tick
        values = dict(last.values) if last else {}
        if self._nibp_last is not None:
            values.update(nibp_sys=self._nibp_last.sys, nibp_dia=self._nibp_last.dia,
                          nibp_mean=self._nibp_last.mean)
        snapshot = DeviceSnapshot(
            time=self.now(), device_time=self.device_clock(), elapsed=dt, values=values,
            conditions=last.conditions if last else frozenset(),
            nibp_time=self._nibp_last.time if self._nibp_last else None,
            nibp_in_progress=self.nibp_in_progress, waves=waves, wave_rates=dict(WAVE_RATES),
        )
        return SimStep(snapshot, ticks, nibp, wave_start, self.scenario.disconnected(t_end))
