"""Simulated chairs for the clinic record's tests: a chair's store and a recording thread that writes
what a real recording writes (numerics every second, an ECG strip, charted entries, an alarm with
its acknowledgement and end, a device condition, a recording gap), through the store's public API,
on a simulated clock, as fast as it can (or paced)."""

from __future__ import annotations

import threading
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from drivers.model import DeviceCondition, NumericObservation, WaveformChunk
from monitor.store import SessionStore

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)
NURSE = "nurse1"


class Chair:
    """One chair: its own SQLite store at ``folder/name.sqlite``. :meth:`record` writes ``seconds``
    of a session on the simulated clock starting at ``start``; :meth:`start_recording` does it on a
    thread, ``pace`` seconds of wall time per simulated second (0: flat out)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        self.store = SessionStore(folder / f"{name}.sqlite", block_seconds=8)
        self.thread: threading.Thread | None = None
        self.written_at: list[float] = []  # wall-clock times of the recording's commits
        self.error: BaseException | None = None

    def open_session(self, start: datetime = T0, patient: str = "Pat Example") -> int:
        """A new open session."""
        return self.store.create_session(patient={"display_name": patient, "mrn": f"MRN-{self.name}"},
                                         protocol="ketamine-iv", plan={"dose_mg_per_kg": 0.5, "weight_kg": 70},
                                         device=f"sim://{self.name}", user=NURSE, started_at=start)

    def record(self, sid: int, start: datetime, seconds: int, *, pace: float = 0.0, offset: int = 0,
               stop: threading.Event | None = None) -> int:
        """Record ``seconds`` of simulated time into session ``sid`` from ``start + offset`` s; returns
        the seconds written (fewer when ``stop`` is set)."""
        store = self.store
        rng = np.random.default_rng(zlib.crc32(self.name.encode()) + offset)
        alarm = None
        for i in range(offset, offset + seconds):
            if stop is not None and stop.is_set():
                return i - offset
            t = start + timedelta(seconds=i)
            with store.transaction():
                store.add_observations(sid, [
                    NumericObservation(vital="hr", value=float(70 + i % 7), unit="bpm", source=f"sim:{self.name}",
                                       sample_time=t),
                    NumericObservation(vital="spo2", value=None if i % 50 == 7 else float(97 - i % 3), unit="%",
                                       source=f"sim:{self.name}", sample_time=t),
                    NumericObservation(vital="rr", value=float(14 + i % 4), unit="/min", source=f"sim:{self.name}",
                                       sample_time=t)])
                store.add_waveforms(sid, [WaveformChunk(channel="ecg", rate=250.0, start_time=t,
                                                        samples=rng.normal(0, 1, 250).astype(np.float32),
                                                        source=f"sim:{self.name}")])
                if i % 20 == 5:
                    store.add_entry(sid, "note", t, "note", {"type": "note", "text": f"note at {i} s"}, NURSE)
                if i % 30 == 10:
                    alarm = store.alarm_started(sid, condition="spo2_low", kind="physiological", priority="MEDIUM",
                                                started_at=t, limit=90.0, value=89.0, message="SpO2 low")
                if alarm is not None and i % 30 == 12:
                    store.alarm_escalated(alarm, "HIGH", t)
                    store.alarm_action(sid, alarm_id=alarm, at=t, action="acknowledge", user=NURSE)
                if alarm is not None and i % 30 == 15:
                    store.alarm_ended(alarm, t)
                    alarm = None
                if i % 40 == 20:
                    store.add_conditions(sid, [DeviceCondition(code="sensor_off", active=bool(i % 80 == 20),
                                                               source=f"sim:{self.name}", time=t)])
                if i % 5 == 0:
                    store.heartbeat(sid, t)
            self.written_at.append(time.monotonic())
            if pace:
                time.sleep(pace)
        return seconds

    def close_session(self, sid: int, at: datetime) -> None:
        """Sign and close the session (pending waveform blocks finished, open alarms ended)."""
        self.store.add_gap(sid, at - timedelta(seconds=3), at - timedelta(seconds=2), "Vigil was not recording")
        self.store.close_session(sid, user="charge1", signed_name="Charge Nurse", meaning="reviewed and closed", at=at)

    def start_recording(self, sid: int, start: datetime, seconds: int, *, pace: float, offset: int = 0,
                        stop: threading.Event | None = None) -> None:
        """:meth:`record` on a thread (an exception is kept in :attr:`error`)."""
        def run() -> None:
            try:
                self.record(sid, start, seconds, pace=pace, offset=offset, stop=stop)
            except BaseException as exc:  # noqa: BLE001 (reported by the test)
                self.error = exc

        self.thread = threading.Thread(target=run, name=f"record-{self.name}", daemon=True)
        self.thread.start()

    def join(self, timeout: float = 120) -> None:
        """Wait for the recording thread; re-raise what it raised."""
        if self.thread is not None:
            self.thread.join(timeout)
            assert not self.thread.is_alive(), f"{self.name} is still recording"
        if self.error is not None:
            raise self.error
