"""The device side of a protocol, for ``vigil simulate``: what a real monitor would send.

The simulated monitor's physiology model (``drivers.simulator``) produces a
:class:`DeviceSnapshot` for each step of simulated time; a :class:`DeviceEmulator` turns that into
the exact bytes the real device would put on the wire, and answers what the host sends
(IntelliVue association and polls, Nonin format selection).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

import numpy as np


@dataclass(slots=True)
class DeviceSnapshot:
    """The simulated patient and device over one step of simulated time.

    ``values``: current numerics by catalogue key (``spo2``, ``pr``, ``hr``, ``pi``, ``rr``,
    ``etco2``, ``temp``, ``nibp_sys``/``nibp_dia``/``nibp_mean`` …); None = no valid value now
    (sensor off, apnea detection pending…). NIBP values are those of the last completed cuff
    measurement, which finished at ``nibp_time`` (None before the first one).
    ``conditions``: active device condition codes (``sensor_off``, ``artifact``, …).
    ``waves``: the samples generated during this step, per channel (``ecg`` mV at 250 Hz,
    ``pleth`` 0..1 at 100 Hz, ``co2`` mmHg at 25 Hz); NaN where the sensor is off.
    ``elapsed``: simulated seconds this step covers; ``time`` its end (aware UTC);
    ``device_time`` the device's own clock at the end (naive local time).
    """

    time: datetime
    device_time: datetime
    elapsed: float
    values: dict[str, float | None]
    conditions: frozenset[str] = frozenset()
    nibp_time: datetime | None = None
    nibp_in_progress: bool = False
    waves: dict[str, np.ndarray] = field(default_factory=dict)
    wave_rates: dict[str, float] = field(default_factory=dict)


class DeviceEmulator(ABC):
    """Device side of one protocol. Not thread-safe; one instance per served connection."""

    #: Registry name of the protocol spoken, e.g. "masimo".
    protocol: ClassVar[str]

    def receive(self, data: bytes) -> bytes:
        """Consume bytes the host sent; return the device's immediate reply (may be empty).

        Never raises on bad bytes.
        """
        return b""

    @abstractmethod
    def produce(self, snapshot: DeviceSnapshot) -> bytes:
        """Bytes the device sends on its own during ``snapshot.elapsed`` simulated seconds.

        Emulators keep their own cadence (Masimo one line per second, Nonin #2 75 frames per
        second…) across calls, whatever the step length.
        """
