"""The in-process simulated monitor (``sim://?scenario=NAME&speed=X&seed=N``) as a device link.

It paces the physiology model against the real clock (``speed`` simulated seconds per real
second) and turns each step into the same items a real device's decoder produces: one set of
numerics per simulated second, NIBP readings when the cuff completes, device conditions when
they change, and ECG / pleth / capnogram chunks. Every numeric is flagged
``Quality.SIMULATED``. During ``cable_pull`` the link fails exactly as an unplugged cable does.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from drivers.acquisition import Link, LinkError
from drivers.base import ConditionTracker
from drivers.model import Item, Quality, WaveformChunk, numeric
from drivers.simulator.physiology import PhysiologyModel, SimStep

#: Numerics the simulated monitor reports every second.
SIM_VITALS = ("hr", "pr", "spo2", "pi", "rr", "etco2", "temp")
#: Condition codes the simulated monitor can raise.
SIM_CONDITIONS = frozenset({"sensor_off", "artifact"})
_CONDITION_QUALITY = {"sensor_off": Quality.SENSOR_OFF, "artifact": Quality.ARTIFACT}
_STEP = 0.05  # real seconds between steps (20 chunks a second, as monitors stream)


def step_items(step: SimStep, source: str, conditions: ConditionTracker) -> list[Item]:
    """Turn one model step into items in time order (pure; used by the link and by tests)."""
    timed: list[tuple[datetime, int, Item]] = []
    order = 0
    for tick in step.ticks:
        for change in conditions.update(tick.conditions, tick.time, managed=SIM_CONDITIONS):
            timed.append((tick.time, order, change))
            order += 1
        quality = frozenset({Quality.SIMULATED} | {_CONDITION_QUALITY[c] for c in tick.conditions})
        for vital in SIM_VITALS:
            timed.append((tick.time, order, numeric(vital, tick.values[vital], source, tick.time, quality=quality)))
            order += 1
    for reading in step.nibp:
        quality = frozenset({Quality.SIMULATED})
        for vital, value in (("nibp_sys", reading.sys), ("nibp_dia", reading.dia), ("nibp_mean", reading.mean)):
            timed.append((reading.time, order, numeric(vital, value, source, reading.time, quality=quality)))
            order += 1
    for channel, samples in step.snapshot.waves.items():
        if len(samples):
            start = step.wave_start[channel]
            timed.append((start, order, WaveformChunk(channel=channel, rate=step.snapshot.wave_rates[channel],
                                                      start_time=start, samples=samples, source=source)))
            order += 1
    timed.sort(key=lambda entry: (entry[0], entry[1]))
    return [item for _, _, item in timed]


class SimulatedMonitorLink(Link):
    """The simulated monitor as a :class:`~drivers.acquisition.Link`.

    ``speed``: simulated seconds per real second (0.1..10000). The model keeps running while
    the link is down, as a patient does, and so does its clock (:meth:`clock` follows the real
    monotonic clock × ``speed``, not the last step), so a pulled cable lasts and escalates in
    simulated time exactly as with a real monitor; :attr:`time_scale` lets the acquisition
    worker pace its reconnect attempts in simulated time too.
    """

    def __init__(self, scenario: str = "normal", speed: float = 1.0, seed: int = 0,
                 nibp_interval: float = 300.0, waves: bool = True) -> None:
        if not 0.1 <= speed <= 10000:
            raise ValueError("speed must be between 0.1 and 10000")
        self.model = PhysiologyModel(scenario, seed=seed, nibp_interval=nibp_interval, waves=waves)
        self.speed = speed
        self.time_scale = speed
        self.source = f"sim:{scenario}"
        self.expected_interval = 1.0 / speed if speed > 1 else 1.0
        self._conditions = ConditionTracker(self.source)
        self._real0: float | None = None
        self._open = False
        self._cancel = threading.Event()
        self._pulled_at: datetime | None = None
        self._lock = threading.Lock()

    # The simulated clock runs from the first open, at ``speed``.
    def _target(self) -> float:
        if self._real0 is None:
            self._real0 = time.monotonic()
        return (time.monotonic() - self._real0) * self.speed

    def _run_to_now(self) -> SimStep | None:
        with self._lock:
            t0, target = self.model.t, self._target()
            if target <= t0:
                return None
            scenario = self.model.scenario
            if not scenario.disconnected(t0) and scenario.disconnected(target):
                # The cable is pulled during this step: stop the step at that instant (to 10 ms),
                # so the data before it arrive and the loss is reported when it happened.
                low, high = t0, target
                while high - low > 0.01:
                    mid = (low + high) / 2
                    low, high = (low, mid) if scenario.disconnected(mid) else (mid, high)
                target = high
            return self.model.advance(target - t0)

    def clock(self) -> datetime:
        return self.model.time_at(max(self._target(), self.model.t))

    def open(self) -> None:
        self._run_to_now()
        if self.model.disconnected():
            raise LinkError("simulated monitor cable is pulled")
        self._pulled_at = None
        self._open = True

    def read(self, timeout: float) -> list[Item]:
        if self._pulled_at is not None:
            at, self._pulled_at = self._pulled_at, None
            raise LinkError("simulated monitor cable pulled", at=at)
        if not self._open:
            raise LinkError("link is not open")
        self._cancel.wait(min(timeout, _STEP))
        self._cancel.clear()
        step = self._run_to_now()
        if step is None:
            return []
        items = step_items(step, self.source, self._conditions)
        if step.disconnected:  # what came before the pull is delivered; the next read fails
            self._open = False
            self._pulled_at = self.model.now()
        return items

    def close(self) -> None:
        self._open = False
        self._conditions = ConditionTracker(self.source)

    def cancel(self) -> None:
        self._cancel.set()

