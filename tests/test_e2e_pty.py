"""End to end through real pseudo-terminals: `vigil simulate` serves a protocol, the driver reads it.

Each test starts the command-line simulator as a separate process, exactly as a nurse educator
would, and connects Vigil's acquisition worker to the path it prints (or to its --link).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drivers.acquisition import AcquisitionWorker, LinkState
from drivers.model import DeviceCondition, NumericObservation, WaveformChunk
from drivers.transport import open_link

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


class Collector:
    """An AcquisitionListener keeping everything, thread-safe."""

    def __init__(self) -> None:
        self.items: list = []
        self.states: list = []
        self.lock = threading.Lock()

    def items_received(self, items):
        with self.lock:
            self.items.extend(items)

    def link_changed(self, state, detail, attempt):
        with self.lock:
            self.states.append((state, detail))

    def numerics(self, vital):
        with self.lock:
            return [i for i in self.items if isinstance(i, NumericObservation) and i.vital == vital]

    def conditions(self):
        with self.lock:
            return [(i.code, i.active) for i in self.items if isinstance(i, DeviceCondition)]

    def wait(self, predicate, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return False


def simulate(*args: str) -> tuple[subprocess.Popen, str]:
    """Start `vigil simulate ARGS`; return the process and the path on its first stdout line."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "simulate", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = proc.stdout.readline().strip()
    assert path.startswith("/dev/"), proc.stderr.read() if proc.poll() is not None else path
    return proc, path


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def acquire(url: str, collector: Collector, backoff=(0.2,)) -> AcquisitionWorker:
    worker = AcquisitionWorker(open_link(url), [collector], backoff=backoff)
    worker.start()
    return worker


def test_masimo_desaturation_scenario_arrives_as_served(tmp_path):
    proc, path = simulate("--protocol", "masimo", "--scenario", "desaturation", "--speed", "120")
    col = Collector()
    worker = acquire(f"{path}?protocol=masimo", col)
    try:
        assert col.wait(lambda: any(o.value is not None and o.value < 88 for o in col.numerics("spo2")), 30)
    finally:
        assert worker.stop(1.0)
        stop(proc)
    spo2 = [o for o in col.numerics("spo2") if o.value is not None]
    assert min(o.value for o in spo2) < 88 and max(o.value for o in spo2) >= 95
    # the device clock runs at the simulated speed: the dip is ~12-15 simulated minutes in
    first_low = next(o for o in spo2 if o.value < 88)
    assert 11 * 60 <= (first_low.device_time - spo2[0].device_time).total_seconds() <= 17 * 60
    assert all(o.device_time is not None for o in spo2)
    assert 55 <= sum(o.value for o in col.numerics("pr")[:20] if o.value) / 20 <= 100
    assert worker.link.stats.frames_decoded > 100 and worker.link.stats.frames_rejected == 0


def test_intellivue_associates_polls_and_decodes(tmp_path):
    proc, path = simulate("--protocol", "intellivue", "--scenario", "normal", "--speed", "30")
    col = Collector()
    worker = acquire(f"{path}?protocol=intellivue", col)
    try:
        assert col.wait(lambda: len(col.numerics("hr")) >= 5 and col.numerics("nibp_sys"), 30)
    finally:
        assert worker.stop(1.0)
        stop(proc)
    hr = [o.value for o in col.numerics("hr") if o.value is not None]
    spo2 = [o.value for o in col.numerics("spo2") if o.value is not None]
    assert hr and all(55 <= v <= 100 for v in hr)
    assert spo2 and all(94 <= v <= 100 for v in spo2)
    assert 100 <= col.numerics("nibp_sys")[0].value <= 150
    assert {o.vital for o in col.items if isinstance(o, NumericObservation)} >= {"hr", "spo2", "rr", "etco2"}
    assert ("association_refused", True) not in col.conditions()


def test_unplug_then_replug_through_a_stable_link(tmp_path):
    link = tmp_path / "monitor"
    proc, _ = simulate("--protocol", "masimo", "--speed", "5", "--link", str(link))
    col = Collector()
    worker = acquire(f"{link}?protocol=masimo", col, backoff=(0.1, 0.2))
    try:
        assert col.wait(lambda: len(col.numerics("spo2")) >= 3)
        stop(proc)  # the serving side vanishes mid-stream
        assert col.wait(lambda: ("connection_lost", True) in col.conditions())
        assert any(state is LinkState.LOST for state, _ in col.states)
        seen = len(col.numerics("spo2"))
        proc, _ = simulate("--protocol", "masimo", "--speed", "5", "--link", str(link))
        assert col.wait(lambda: ("connection_lost", False) in col.conditions())
        assert col.wait(lambda: len(col.numerics("spo2")) >= seen + 3)
        assert any(state is LinkState.CONNECTED and detail == "restored" for state, detail in col.states)
    finally:
        assert worker.stop(1.0)
        stop(proc)
    assert not link.exists()  # the simulator removes its link when it stops


def test_cable_pull_scenario_in_the_served_simulator(tmp_path):
    """The served simulator pulls its own cable at 20:00 and reconnects at 21:30 (simulated)."""
    link = tmp_path / "pulled"
    proc, _ = simulate("--protocol", "masimo", "--scenario", "cable_pull", "--speed", "200", "--link", str(link))
    col = Collector()
    worker = acquire(f"{link}?protocol=masimo", col, backoff=(0.1,))
    try:
        assert col.wait(lambda: ("connection_lost", False) in col.conditions(), 40)
    finally:
        assert worker.stop(1.0)
        stop(proc)
    assert col.conditions().index(("connection_lost", True)) < col.conditions().index(("connection_lost", False))


def test_simulate_refuses_bad_arguments_with_one_line():
    for args, message in ((["--protocol", "zoll"], "cannot simulate protocol"),
                          (["--protocol", "masimo", "--scenario", "asystole"], "unknown scenario"),
                          (["--protocol", "masimo", "--variant", "rad97"], "variant must be one of")):
        result = subprocess.run([sys.executable, str(ROOT / "main.py"), "simulate", *args],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
        assert result.stdout == ""


def test_simulated_pty_is_raw(tmp_path):
    """Bytes written before the reader opens are not mangled by a cooked line discipline."""
    from drivers.simulator.serve import PtyServer

    server = PtyServer("masimo", speed=50)
    path = server.open()
    try:
        stop_event = threading.Event()
        thread = threading.Thread(target=server.serve, args=(stop_event,), daemon=True)
        thread.start()
        time.sleep(0.3)
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"\r\n") < 5 and time.monotonic() < deadline:
            data += os.read(fd, 4096)
        os.close(fd)
        stop_event.set()
        thread.join(2)
    finally:
        server.close()
    assert b"\r\n" in data and b"\n\n" not in data  # CR LF kept, not turned into LF LF


@pytest.mark.parametrize("variant,protocol", [("2", "nonin"), ("7", "nonin7"), ("8", "nonin8"), ("ascii", "nonin-ascii")])
def test_nonin_formats_served_and_read(variant, protocol):
    proc, path = simulate("--protocol", "nonin", "--variant", variant, "--scenario", "sensor_off", "--speed", "150")
    col = Collector()
    worker = acquire(f"{path}?protocol={protocol}", col)

    def sensor_came_off() -> bool:  # the binary formats say so; ASCII can only print dashes
        if variant == "ascii":
            return any(o.value is None for o in col.numerics("spo2"))
        return bool({("sensor_off", True), ("no_sensor", True)} & set(col.conditions()))

    try:
        assert col.wait(lambda: any(o.value is not None for o in col.numerics("spo2")) and sensor_came_off(), 40)
    finally:
        assert worker.stop(1.0)
        stop(proc)
    spo2 = [o.value for o in col.numerics("spo2") if o.value is not None]
    pr = [o.value for o in col.numerics("pr") if o.value is not None]
    assert spo2 and all(93 <= v <= 100 for v in spo2)
    assert pr and all(50 <= v <= 110 for v in pr)
    waves = [i for i in col.items if isinstance(i, WaveformChunk)]
    if variant in ("2", "7"):  # these formats carry the pleth at 75 Hz
        assert waves and waves[0].channel == "pleth" and waves[0].rate == 75
    assert worker.link.stats.frames_decoded > 10
