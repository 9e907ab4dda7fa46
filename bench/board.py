"""Clinic board load (issue 14): N simulated chairs publish through the real chair publisher to a
real Mosquitto (TLS, passwords, ACL, on loopback) watched by the real board model and window
(offscreen).

* Alarm-change latency, chair → board painted: from the chair handing its new alarm state to the
  publisher (the message's ``t``) to the board tile having painted that state: p50/p99 over at
  least 2,000 changes (target p99 ≤ 500 ms at 20 chairs).
* Board process CPU (% of one core) and resident memory; broker CPU; the chairs' process CPU;
  messages per second received by the board.

For 20 and 100 chairs. The chairs run in a separate process (``python -m bench.board --chairs N
...``), each with its own alarm engine flipping SpO2 between 97 % and 84 % (a HIGH alarm starting
and ending) and sending numerics once a second.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLINIC = "clinic"
RUNS = ((20, 0.5, 60.0), (100, 2.0, 60.0))   # chairs, seconds between one chair's alarm changes, duration


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def chairs_worker(url: str, folder: str, chairs: int, every_s: float, seconds: float) -> None:
    """The chairs' process: ``chairs`` publishers, alarm changes every ``every_s`` each (jittered)."""
    from datetime import UTC, datetime

    from drivers.model import numeric
    from monitor.alarms.engine import AlarmEngine
    from monitor.alarms.profile import default_profile
    from monitor.board.config import broker_options
    from monitor.board.publisher import ChairPublisher

    profile = default_profile()
    chairs_ = []
    for n in range(1, chairs + 1):
        name = f"chair-{n}"
        options = broker_options(url, username=name, password_file=f"{folder}/passwords/{name}",
                                 ca_file=f"{folder}/ca.crt")
        publisher = ChairPublisher(options, CLINIC, name, profile=profile)
        publisher.start()
        chairs_.append([publisher, AlarmEngine(profile), time.monotonic() + random.uniform(1, 2 + every_s), False])
    end = time.monotonic() + seconds
    next_numerics = time.monotonic()
    while time.monotonic() < end:
        now_m = time.monotonic()
        now = datetime.now(UTC)
        if now_m >= next_numerics:
            next_numerics = now_m + 1.0
            for publisher, engine, _, low in chairs_:
                publisher.on_batch([numeric("spo2", 84 if low else 97, "bench", now), numeric("pr", 80, "bench", now)])
        for chair in chairs_:
            publisher, engine, due, low = chair
            if now_m >= due:
                chair[3] = low = not low
                engine.process([numeric("spo2", 84 if low else 97, "bench", now)])
                publisher.on_alarm_state(engine.state(now))
                chair[2] = now_m + every_s * random.uniform(0.8, 1.2)
        time.sleep(0.01)
    for publisher, *_ in chairs_:
        publisher.close(1.0)


def _run_one(chairs: int, every_s: float, seconds: float) -> dict:
    from PySide6.QtWidgets import QApplication

    from monitor.board.model import BoardModel
    from monitor.board.subscriber import BoardClient
    from tests.mosquitto_broker import Broker, make_accounts
    from ui.board import tiles
    from ui.board.window import BoardWindow

    app = QApplication.instance() or QApplication([])
    folder = Path(tempfile.mkdtemp(prefix="vigil-board-bench-"))
    make_accounts(folder, [f"chair-{n}" for n in range(1, chairs + 1)], ["board"])
    broker = Broker(folder).start()
    received = [0]
    samples: list[float] = []
    measuring = [False]
    client = BoardClient(broker.options("board"), CLINIC, on_message=lambda *_: None)
    window = BoardWindow(BoardModel(CLINIC), client, audio=False)
    inner = client.on_message

    def counted(topic: str, payload: bytes) -> None:
        received[0] += 1
        inner(topic, payload)

    client.on_message = counted
    last: dict[str, int] = {}
    original = tiles.ChairTile.paintEvent

    def measured(tile, event) -> None:
        original(tile, event)
        seq, wall = tile.painted
        if seq and last.get(tile.name) != seq:
            last[tile.name] = seq
            message = window.model.chairs[tile.name].alarms
            if measuring[0] and message is not None and message.seq == seq:
                samples.append((wall - message.t.timestamp()) * 1000)

    tiles.ChairTile.paintEvent = measured
    window.resize(1920, 1080)
    window.show()
    client.start()
    worker = subprocess.Popen([sys.executable, "-m", "bench.board", "--worker", "--url", broker.url, "--folder",
                               str(folder), "--chairs", str(chairs), "--every", str(every_s), "--seconds",
                               str(seconds + 8)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while len(window.tiles) < chairs and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.01)
        settle = time.monotonic() + 3
        while time.monotonic() < settle:
            app.processEvents()
            time.sleep(0.005)
        measuring[0] = True
        cpu0, broker0, worker0 = resource.getrusage(resource.RUSAGE_SELF), _cpu_seconds(broker.pid()), _cpu_seconds(worker.pid)
        wall0, msgs0 = time.monotonic(), received[0]
        end = wall0 + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.002)
        wall = time.monotonic() - wall0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        board_cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / wall * 100
        figures = {
            "chairs": chairs, "tiles": len(window.tiles), "alarm_changes_measured": len(samples),
            "latency_p50_ms": round(statistics.median(samples), 1) if samples else None,
            "latency_p99_ms": round(sorted(samples)[int(0.99 * (len(samples) - 1))], 1) if samples else None,
            "board_cpu_pct": round(board_cpu, 1), "board_rss_mb": round(_rss_mb(), 1),
            "broker_cpu_pct": round((_cpu_seconds(broker.pid()) - broker0) / wall * 100, 1),
            "chairs_process_cpu_pct": round((_cpu_seconds(worker.pid) - worker0) / wall * 100, 1),
            "messages_per_s": round((received[0] - msgs0) / wall, 1),
            "board_rejected": window.model.rejected,
        }
    finally:
        tiles.ChairTile.paintEvent = original
        worker.wait(60)
        window.close()
        broker.stop()
    return figures


def run() -> dict:
    """Both loads; figures printed and returned."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    figures = {}
    for chairs, every, seconds in RUNS:
        result = _run_one(chairs, every, seconds)
        print(f"{chairs} chairs: alarm change → board painted p50 {result['latency_p50_ms']} ms, "
              f"p99 {result['latency_p99_ms']} ms (n={result['alarm_changes_measured']}); board CPU "
              f"{result['board_cpu_pct']} %, RSS {result['board_rss_mb']} MB; broker CPU {result['broker_cpu_pct']} %; "
              f"chairs CPU {result['chairs_process_cpu_pct']} %; {result['messages_per_s']} messages/s")
        figures[f"chairs_{chairs}"] = result
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--url")
    parser.add_argument("--folder")
    parser.add_argument("--chairs", type=int, default=20)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=60)
    a = parser.parse_args()
    if a.worker:
        chairs_worker(a.url, a.folder, a.chairs, a.every, a.seconds)
    else:
        print(run())
