"""Acquisition benchmarks (issue 2): decode throughput, byte-to-subscriber latency, live CPU.

* Decode throughput: realistic captures (the simulated patient through each protocol's
  emulator) decoded as ``vigil decode`` does — 64 KiB reads, items consumed and dropped — in
  bytes/s and as a multiple of the protocol's line rate (9600 baud = 960 bytes/s for Masimo and
  Nonin, 115200 baud = 11,520 bytes/s for IntelliVue).
* ``vigil decode`` as a whole command (a subprocess writing JSON lines), in input MB/s.
* Latency: one frame written into a pseudo-terminal at a time; the time until the decoded
  observation reaches a subscriber of the acquisition worker (p50, p99).
* CPU: ``vigil simulate`` serves each protocol at real speed in one process; a second process
  runs only Vigil's acquisition on the pseudo-terminal for 20 s and reports its own CPU time.
"""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty
from datetime import datetime, timezone
from pathlib import Path

from bench.captures import LINE_RATE, device_capture
from drivers.acquisition import AcquisitionWorker
from drivers.model import NumericObservation
from drivers.registry import decoder_class
from drivers.transport import open_link

ROOT = Path(__file__).resolve().parent.parent
TARGET_BYTES = 20_000_000
#: Frames timed per protocol (a p99 wants at least 2,000 samples).
N_LATENCY = 2000


def _stream_decode(protocol: str, data: bytes) -> tuple[float, int]:
    decoder = decoder_class(protocol)()
    items = 0
    started = time.perf_counter()
    for offset in range(0, len(data), 65536):
        items += len(decoder.feed(data[offset:offset + 65536]))
    return time.perf_counter() - started, items


def decode_throughput() -> dict[str, dict[str, float]]:
    """MB/s and multiple of line rate per protocol (best of 3)."""
    out = {}
    for protocol, variant, hours in (("masimo", "rad8", 6), ("nonin", "2", 2), ("intellivue", None, 2)):
        one = device_capture(protocol, hours * 3600, variant=variant)
        data = one * max(1, TARGET_BYTES // len(one))
        gc.collect()
        best, items = min(_stream_decode(protocol, data) for _ in range(3))
        rate = len(data) / best
        day = 86400 * len(one) / (hours * 3600) / rate
        out[protocol] = {"bytes": len(data), "items": items, "mb_per_s": round(rate / 1e6, 2),
                         "x_line_rate": round(rate / LINE_RATE[protocol]),
                         "real_24h_capture_s": round(day, 2),
                         "full_line_rate_24h_capture_s": round(86400 * LINE_RATE[protocol] / rate, 1)}
        print(f"decode {protocol:10s} {rate / 1e6:6.2f} MB/s = {rate / LINE_RATE[protocol]:7.0f}x line rate; "
              f"24 h as the device sends it: {day:.2f} s; 24 h at full line rate: "
              f"{86400 * LINE_RATE[protocol] / rate:.1f} s")
    return out


def decode_command(megabytes: float = 8.0) -> dict[str, dict[str, float]]:
    """``vigil decode`` as a whole command: a subprocess (interpreter start-up included) reading a
    capture file and writing its JSON lines (waveforms included) to a file; input MB/s and JSON
    lines a second, best of 2."""
    out = {}
    for protocol, variant, hours in (("masimo", "rad8", 6), ("nonin", "2", 2), ("intellivue", None, 2),
                                     ("datex", None, 2)):
        one = device_capture(protocol, hours * 3600, variant=variant)
        data = one * max(1, int(megabytes * 1e6) // len(one))
        with tempfile.TemporaryDirectory() as folder:
            capture, json_out = Path(folder) / "capture.bin", Path(folder) / "out.jsonl"
            capture.write_bytes(data)
            best = math.inf
            for _ in range(2):
                with open(json_out, "wb") as sink:
                    started = time.perf_counter()
                    subprocess.run([sys.executable, str(ROOT / "main.py"), "decode", "--protocol", protocol, "--waves",
                                    str(capture)], stdout=sink, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
                    best = min(best, time.perf_counter() - started)
            with open(json_out, "rb") as fh:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
            written = json_out.stat().st_size
        out[protocol] = {"input_bytes": len(data), "seconds": round(best, 2), "mb_per_s": round(len(data) / best / 1e6, 2),
                         "json_lines_per_s": round(lines / best), "json_mb": round(written / 1e6, 1),
                         "x_line_rate": round(len(data) / best / LINE_RATE[protocol])}
        print(f"vigil decode {protocol:10s} (whole command, JSON out): {out[protocol]['mb_per_s']:.2f} MB/s in, "
              f"{out[protocol]['json_lines_per_s']:,} JSON lines/s, {out[protocol]['x_line_rate']:,}x line rate "
              f"({len(data) / 1e6:.1f} MB in {best:.1f} s)")
    return out


class _Probe:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.arrived = 0.0

    def items_received(self, items) -> None:
        if any(isinstance(i, NumericObservation) for i in items):
            self.arrived = time.perf_counter()
            self.event.set()

    def link_changed(self, *args) -> None:
        pass


def _frames(protocol: str) -> list[bytes]:
    """One complete update per element, as the device sends it."""
    if protocol == "masimo":
        from drivers.masimo import encode_line
        return [encode_line({"spo2": 97, "pr": 70 + i % 20, "pi": 2.5}, device_time=datetime(2026, 11, 28, 9, 0, i % 60))
                for i in range(N_LATENCY)]
    if protocol == "nonin":
        from drivers.nonin import encode_format2_packet
        return [encode_format2_packet(97, 70 + i % 20, [0.5] * 25) for i in range(N_LATENCY)]
    from drivers.intellivue.device import build_numerics_reply
    return [build_numerics_reply({"hr": 70.0 + i % 20, "spo2": 97.0}, device_time=datetime(2026, 11, 28, 9, 0, i % 60))
            for i in range(N_LATENCY)]


def latency(protocol: str) -> dict[str, float]:
    """Byte written into a pseudo-terminal → observation at a subscriber, in ms."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    probe = _Probe()
    link = open_link(f"{path}?protocol={protocol}")
    worker = AcquisitionWorker(link, [probe])
    worker.start()
    time.sleep(0.3)
    os.read(master, 65536) if protocol == "intellivue" else None  # the association request
    samples = []
    try:
        for frame in _frames(protocol):
            probe.event.clear()
            written = time.perf_counter()
            os.write(master, frame)
            if probe.event.wait(2.0):
                samples.append((probe.arrived - written) * 1000)
            time.sleep(0.01)
    finally:
        worker.stop()
        os.close(master)
        os.close(slave)
    samples.sort()
    figures = {"n": len(samples), "p50_ms": round(statistics.median(samples), 2),
               "p99_ms": round(samples[int(0.99 * (len(samples) - 1))], 2), "max_ms": round(samples[-1], 2)}
    print(f"latency {protocol:10s} p50 {figures['p50_ms']:.2f} ms  p99 {figures['p99_ms']:.2f} ms  (n={len(samples)})")
    return figures


_ACQUIRE = """
import resource, sys, time
from drivers.acquisition import AcquisitionWorker
from drivers.transport import open_link
class Count:
    n = 0
    def items_received(self, items): Count.n += len(items)
    def link_changed(self, *a): pass
worker = AcquisitionWorker(open_link(sys.argv[1]), [Count()])
worker.start()
time.sleep(2)
r0, t0, n0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic(), Count.n
time.sleep(float(sys.argv[2]))
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
worker.stop()
cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
print(cpu / (t1 - t0), Count.n - n0)
"""


def live_cpu(protocol: str, seconds: float = 20.0) -> dict[str, float]:
    """CPU of a process that only acquires ``protocol`` at real speed, % of one core."""
    server = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "simulate", "--protocol", protocol],
                              stdout=subprocess.PIPE, text=True)
    try:
        path = server.stdout.readline().strip()
        result = subprocess.run([sys.executable, "-c", _ACQUIRE, f"{path}?protocol={protocol}", str(seconds)],
                                capture_output=True, text=True, cwd=ROOT, timeout=seconds + 60)
        fraction, items = result.stdout.split()
    finally:
        server.terminate()
        server.wait(10)
    figures = {"cpu_percent_of_one_core": round(float(fraction) * 100, 2), "items_per_s": round(int(items) / seconds, 1)}
    print(f"live CPU {protocol:10s} {figures['cpu_percent_of_one_core']:.2f} % of one core "
          f"({figures['items_per_s']} items/s)")
    return figures


def run() -> dict:
    """All acquisition figures."""
    return {
        "decode": decode_throughput(),
        "decode_command": decode_command(),
        "latency": {p: latency(p) for p in ("masimo", "nonin", "intellivue")},
        "live_cpu": {p: live_cpu(p) for p in ("masimo", "nonin", "intellivue")},
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
