"""Store and alarm benchmarks (issue 3).

* Store ingest through the StoreWriter, as the recorder feeds it: numerics rows/s, and waveform
  samples/s with the simulated monitor's chunks (ECG 250 Hz, pleth 100 Hz, capnogram 25 Hz in
  40 ms pieces); database size per hour of a full session (3 waveforms + numerics + NIBP).
* Alarm engine: observations evaluated per second against the clinic default profile.
* Latency from a byte at the pseudo-terminal to the alarm event (the SpO2 < 88 % level, which has
  no condition delay, so the whole figure is beyond the rule's own delay): a Masimo line with
  SpO2 85 % is written; the time until the recorder reports ``alarm_started`` (p50, p99).
"""

from __future__ import annotations

import os
import queue
import statistics
import tempfile
import threading
import time
import tty
from datetime import datetime, timedelta, timezone
from pathlib import Path

from drivers.acquisition import AcquisitionWorker
from drivers.base import ConditionTracker
from drivers.masimo import encode_line
from drivers.model import NumericObservation, WaveformChunk
from drivers.simulator.device import step_items
from drivers.simulator.physiology import PhysiologyModel
from drivers.transport import open_link
from monitor.alarms.engine import AlarmEngine
from monitor.alarms.profile import default_profile
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.app.recorder import SessionRecorder
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore, StoreWriter

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
BENCH = Actor(username="bench", display_name="Benchmark", role=Role.NURSE)


def _session_hour(step: float = 0.04, hours: float = 1.0):
    """Batches of one simulated hour, as the in-process simulated monitor sends them."""
    model = PhysiologyModel("normal", seed=1, start=T0)
    tracker = ConditionTracker("sim")
    batches = []
    while model.t < hours * 3600:
        batches.append(step_items(model.advance(step), "sim", tracker))
    return batches


def store_ingest() -> dict[str, float]:
    batches = _session_hour()
    numerics = [[i for i in b if isinstance(i, NumericObservation)] for b in batches]
    waves = [[i for i in b if isinstance(i, WaveformChunk)] for b in batches]
    n_numerics = sum(map(len, numerics))
    n_samples = sum(len(c.samples) for b in waves for c in b)
    with tempfile.TemporaryDirectory() as folder:
        store = SessionStore(Path(folder) / "bench.sqlite")
        sid = store.create_session(patient={"display_name": "Bench"}, protocol="ketamine-iv", plan={},
                                   device="sim", user="bench", started_at=T0)
        writer = StoreWriter(store)
        writer.start()
        started = time.perf_counter()
        for chunk in waves:
            writer.put_waveforms(sid, chunk)
        writer.flush(600)
        wave_s = time.perf_counter() - started
        started = time.perf_counter()
        for chunk in numerics:
            writer.put_observations(sid, chunk)
        writer.flush(600)
        num_s = time.perf_counter() - started
        writer.stop(60)
        store.close()
        size = sum(p.stat().st_size for p in Path(folder).glob("bench.sqlite*"))
    figures = {"waveform_samples_per_s": round(n_samples / wave_s), "numeric_rows_per_s": round(n_numerics / num_s),
               "db_mb_per_hour": round(size / 1e6, 2), "samples_per_hour": n_samples, "numerics_per_hour": n_numerics}
    print(f"store ingest: {figures['waveform_samples_per_s']:,} waveform samples/s, "
          f"{figures['numeric_rows_per_s']:,} numeric rows/s; database {figures['db_mb_per_hour']} MB per hour "
          f"of a full session ({n_samples:,} samples + {n_numerics:,} numerics)")
    return figures


def engine_rate() -> dict[str, float]:
    model = PhysiologyModel("tachycardia", seed=2, start=T0, waves=False)
    tracker = ConditionTracker("sim")
    batches = [step_items(model.advance(1.0), "sim", tracker) for _ in range(7200)]
    engine = AlarmEngine(default_profile())
    engine.set_baseline({"hr": 74, "nibp_sys": 124, "etco2": 37})
    n = sum(len(b) for b in batches)
    started = time.perf_counter()
    for batch in batches:
        engine.process(batch)
    elapsed = time.perf_counter() - started
    figures = {"observations_per_s": round(n / elapsed), "two_hour_session_ms": round(elapsed * 1000, 1)}
    print(f"alarm engine: {figures['observations_per_s']:,} observations evaluated/s; a 2-hour session "
          f"({n:,} observations) in {figures['two_hour_session_ms']} ms")
    return figures


class _Listener:
    def __init__(self) -> None:
        self.batches: queue.SimpleQueue = queue.SimpleQueue()

    def items_received(self, items) -> None:
        self.batches.put(items)

    def link_changed(self, *args) -> None:
        pass


def alarm_latency(rounds: int = 2000) -> dict[str, float]:
    """Byte written at the pseudo-terminal → alarm_started from the recorder (ms)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    listener = _Listener()
    link = open_link(f"{os.ttyname(slave)}?protocol=masimo")
    worker = AcquisitionWorker(link, [listener])
    worker.start()
    started_at: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        store = SessionStore(Path(folder) / "lat.sqlite")
        writer = StoreWriter(store)
        writer.start()
        recorder = SessionRecorder.start(
            store, writer, patient=Patient(display_name="Bench", weight_kg=70),
            plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), device="pty", actor=BENCH,
            t=datetime.now(timezone.utc) - timedelta(seconds=1), settings=ClinicSettings(), profile=default_profile(),
            on_alarm_event=lambda e: started_at.append(time.perf_counter()) if e.event == "started" else None)
        stop = threading.Event()

        def consume() -> None:  # the recorder's thread, as in vigil record
            while not stop.is_set():
                try:
                    recorder.on_items(listener.batches.get(timeout=0.1))
                except queue.Empty:
                    pass

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        samples = []
        second = 0
        try:
            for _ in range(rounds):
                for spo2 in (97, 85):
                    second += 1
                    line = encode_line({"spo2": spo2, "pr": 72, "pi": 2.0},
                                       device_time=datetime(2026, 11, 28, 9, 0) + timedelta(seconds=second))
                    before = len(started_at)
                    written = time.perf_counter()
                    os.write(master, line)
                    deadline = written + 2.0
                    while len(started_at) == before and time.perf_counter() < deadline:
                        time.sleep(0.0002)
                    if spo2 == 85 and len(started_at) > before:
                        samples.append((started_at[-1] - written) * 1000)
                    time.sleep(0.01)
        finally:
            stop.set()
            consumer.join(2)
            worker.stop()
            writer.stop(30)
            store.close()
            os.close(master)
            os.close(slave)
    samples.sort()
    figures = {"n": len(samples), "p50_ms": round(statistics.median(samples), 2),
               "p99_ms": round(samples[int(0.99 * (len(samples) - 1))], 2)}
    print(f"byte → alarm event: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms (n={len(samples)}; "
          "SpO2 < 88 % has no condition delay, so this is all beyond the rule's delay)")
    return figures


def run() -> dict:
    """All store and alarm figures."""
    return {"store": store_ingest(), "engine": engine_rate(), "alarm_latency": alarm_latency()}
