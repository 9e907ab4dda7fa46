"""Clinic record benchmarks (PostgreSQL on loopback, a temporary cluster with fsync on, as a server would run).

* Replication throughput into PostgreSQL: observations/s (a 12-hour session of 1 Hz numerics, no
  waveforms) and waveform samples/s (12 hours of ECG 250 Hz, pleth 100 Hz and capnogram 25 Hz alone),
  each copied by the replication steps from a chair's SQLite file into an empty clinic record.
* Catch-up after an outage: a whole 12-hour session (:func:`build_long_session`: numerics, the three
  waveforms, 300 charted events, alarms) recorded while the clinic record was unreachable, copied by
  the replication worker once it is back: seconds from the worker's start to "current" (sealed).
* Review-open time of that 12-hour session from PostgreSQL, to the first painted frame (target
  ≤ 1 s, as from SQLite: measured the same way as bench/review.py, and from SQLite too for comparison).

The server binaries come from Debian's ``postgresql`` package; without them this suite says so and
measures nothing.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np


def _replicate(store, url: str, name: str) -> float:
    """Copy everything ``store`` holds into the clinic record at ``url``; seconds taken."""
    from monitor.clinic.replication import Replicator
    from monitor.store import SessionStore
    from monitor.store.postgres import ClinicWriter

    ro = SessionStore(store.path, readonly=True)
    replicator = Replicator(ro, ClinicWriter(url), chair_uid=store.chair_uid(), chair_name=name)
    began = time.perf_counter()
    replicator.connect()
    while not replicator.step()[0]:
        pass
    seconds = time.perf_counter() - began
    replicator.writer.close()
    ro.close()
    return seconds


def _waveforms_only(store, hours: float) -> int:
    """A session of ``hours`` of ECG 250 Hz, pleth 100 Hz and capnogram 25 Hz; returns the samples written."""
    from drivers.model import WaveformChunk
    from monitor.export.synthetic import SYNTHETIC_START

    rng = np.random.default_rng(1)
    sid = store.create_session(patient={"display_name": "Wave Patient"}, protocol="ketamine-iv", plan={},
                               device="synthetic://waves", user="bench", started_at=SYNTHETIC_START)
    total = 0
    for minute in range(int(hours * 60)):
        t = SYNTHETIC_START + timedelta(minutes=minute)
        chunks = []
        for channel, rate in (("ecg", 250.0), ("pleth", 100.0), ("co2", 25.0)):
            n = int(rate * 60)
            samples = (np.sin(np.arange(n) / rate * 6.0) + rng.normal(0, 0.05, n)).astype(np.float32)
            chunks.append(WaveformChunk(channel=channel, rate=rate, start_time=t, source="synthetic", samples=samples))
        total += store.add_waveforms(sid, chunks)
    store.close_session(sid, user="bench", signed_name="Bench", meaning="benchmark", at=t + timedelta(minutes=1))
    return total


def throughput(server, folder: Path) -> dict[str, float]:
    """Observations/s and waveform samples/s into the clinic record."""
    from monitor.export.synthetic import build_long_session
    from monitor.store import SessionStore
    from monitor.store.postgres import setup

    figures: dict[str, float] = {}
    url = server.url(server.new_database())
    setup(url)
    numerics = SessionStore(folder / "numerics.sqlite")
    sid = build_long_session(numerics, hours=12, waves=False, seed=2)
    n = numerics.get_session(sid).n_observations
    seconds = _replicate(numerics, url, "bench-numerics")
    figures["observations_per_s"] = round(n / seconds)
    print(f"replication, numerics: {n:,} observations of a 12-hour session in {seconds:.2f} s = "
          f"{figures['observations_per_s']:,} observations/s")
    numerics.close()
    waves = SessionStore(folder / "waves.sqlite")
    samples = _waveforms_only(waves, 12)
    blocks = waves.waveform_blocks(1)
    size = sum(len(b.data) for b in blocks) / 1e6
    seconds = _replicate(waves, url, "bench-waves")
    figures["waveform_samples_per_s"] = round(samples / seconds)
    figures["waveform_mb_per_s"] = round(size / seconds, 1)
    print(f"replication, waveforms: {samples:,} samples ({len(blocks):,} blocks, {size:.0f} MB compressed) in "
          f"{seconds:.2f} s = {figures['waveform_samples_per_s']:,} samples/s ({figures['waveform_mb_per_s']} MB/s)")
    waves.close()
    return figures


def catch_up(store, url: str) -> dict[str, float]:
    """The worker's catch-up of a 12-hour session recorded while the clinic record was unreachable."""
    from monitor.clinic.replication import ReplicationWorker

    worker = ReplicationWorker(store, url, chair_name="bench-chair", poll_s=0.2)
    began = time.perf_counter()
    worker.start()
    current = worker.wait_current(600)
    seconds = time.perf_counter() - began
    worker.stop()
    if not current:
        raise RuntimeError(f"the worker did not catch up: {worker.status}")
    print(f"catch-up of a 12-hour session (numerics, ECG/pleth/CO2, 300 events) after an outage: {seconds:.2f} s "
          f"({worker.status.rows:,} rows)")
    return {"catch_up_12h_s": round(seconds, 2)}


def review_open(store, session_id: int, url: str) -> dict[str, dict[str, float]]:
    """First painted frame of the 12-hour session in the review window, from SQLite and from PostgreSQL."""
    from PySide6.QtWidgets import QApplication

    from bench.review import _context, _open
    from monitor.store.postgres import PostgresReader

    app = QApplication.instance() or QApplication([])
    reader = PostgresReader(url)
    clinic_id = next(s.id for s in reader.list_sessions() if s.chair_session_id == session_id)
    figures = {}
    for label, backend, sid in (("sqlite", store, session_id), ("postgresql", reader, clinic_id)):
        times = []
        for _ in range(3):
            window, seconds = _open(app, _context(backend), sid)
            times.append(seconds)
            window.load_all_vitals()
            window.close()
            app.processEvents()
        figures[label] = {"first_s": round(times[0], 3), "median_s": round(statistics.median(times), 3)}
        print(f"open the 12-hour session in review from {label}: first painted frame {figures[label]['first_s']} s "
              f"the first time, median {figures[label]['median_s']} s of 3 (target ≤ 1 s)")
    reader.close()
    return figures


def run() -> dict:
    """All clinic record figures (an empty dict when PostgreSQL is not installed)."""
    from monitor.export.synthetic import build_long_session
    from monitor.store import SessionStore
    from monitor.store.postgres import setup
    from tests.postgres_server import PACKAGE_HINT, PostgresServer, bin_dir

    binaries = bin_dir()
    if binaries is None:
        print(f"clinic record: not measured ({PACKAGE_HINT})")
        return {}
    server = PostgresServer(binaries, durable=True)
    try:
        server.start()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            figures: dict = {"throughput": throughput(server, folder)}
            store = SessionStore(folder / "chair.sqlite")
            began = time.perf_counter()
            session_id = build_long_session(store, hours=12, seed=0)
            print(f"built a 12-hour session in {time.perf_counter() - began:.1f} s")
            url = server.url(server.new_database())
            setup(url)
            figures["catch_up"] = catch_up(store, url)
            figures["review_first_frame"] = review_open(store, session_id, url)
            store.close()
        return figures
    finally:
        server.destroy()


if __name__ == "__main__":
    run()
