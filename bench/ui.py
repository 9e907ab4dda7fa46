"""Window benchmarks (issue 4), offscreen.

* One refresh tick — a frame (three sweeps, tiles, alarm area) plus the 1 Hz refresh (numerics,
  trends) and the repaint they cause — at 5 minutes and at 4 hours into an accelerated session:
  median and p99 (target median ≤ 8 ms, half a 60 Hz frame).
* CPU of the whole app (`vigil run`) live at real speed on the simulated monitor with three
  waveforms, over 30 s after start-up (target ≤ 10 % of one core).
* Byte at the pseudo-terminal → alarm banner painted (SpO2 < 88 %, no condition delay):
  p50/p99 (target p99 ≤ 250 ms beyond the rule's delay).
* CPU of the whole app recording a session at real speed, over 5 minutes, offscreen and under
  Xvfb.
* Start-up to the first painted frame of `vigil run` (target ≤ 2 s).
* Resident memory of a recording app over 12 accelerated hours (target ≤ 300 MB, flat after the
  first hour).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tty
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"n": len(samples), "median_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[int(0.99 * (len(samples) - 1))], 2)}


def _window(device: str, folder: str):
    from PySide6.QtWidgets import QApplication

    from monitor.alarms.profile import default_profile
    from monitor.app.clinic import Clinic
    from monitor.app.pipeline import open_pipeline
    from monitor.app.records import Records
    from monitor.qt.service import QtSessionService
    from monitor.settings import ClinicSettings
    from monitor.store import SessionStore
    from ui.audio import AlarmAudio
    from ui.context import UiContext
    from ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    store = SessionStore(Path(folder) / "ui.sqlite")
    service = QtSessionService(open_pipeline(device, store, ClinicSettings(), default_profile()))
    context = UiContext(service, Records(store), Clinic(store), ClinicSettings(), default_profile())
    window = MainWindow(context, audio=AlarmAudio(enabled=False))
    window.resize(1366, 768)
    window.show()
    return app, store, service, window


def refresh_tick() -> dict[str, dict[str, float]]:
    """Frame + refresh + repaint, at 5 min and 4 h of session data."""
    from drivers.base import ConditionTracker
    from drivers.simulator.device import step_items
    from drivers.simulator.physiology import PhysiologyModel

    out = {}
    with tempfile.TemporaryDirectory() as folder:
        app, store, service, window = _window("sim://?scenario=normal&speed=1", folder)
        window.frame_timer.stop()
        window.second_timer.stop()
        model = PhysiologyModel("hypertensive_surge", seed=3)
        tracker = ConditionTracker("sim")
        fed = 0.0
        for label, until in (("5_min", 300.0), ("4_h", 4 * 3600.0)):
            while fed < until:
                items = step_items(model.advance(1.0), "sim", tracker)
                window.on_batch(items)
                fed = model.t
                if int(fed) % 60 == 0:
                    window.trends.refresh(model.now())
            samples = []
            step = 0.04
            for i in range(2000):
                items = step_items(model.advance(step), "sim", tracker)
                window.on_batch(items)
                started = time.perf_counter()
                window.frame()
                if i % 25 == 0:
                    window.refresh()
                app.processEvents()
                samples.append((time.perf_counter() - started) * 1000)
            fed = model.t
            out[label] = _percentiles(samples)
            print(f"refresh tick at {label.replace('_', ' ')}: median {out[label]['median_ms']} ms, "
                  f"p99 {out[label]['p99_ms']} ms (n={out[label]['n']})")
        window.force_close = True
        window.close()
        service.shutdown()
        store.close()
    return out


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _start_app(device: str, db: Path, extra_env: dict | None = None) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "run", "--device", device, "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("vigil run exited before its window was ready")
        if "window ready" in line:
            return proc, time.perf_counter() - started


def startup_and_cpu(seconds: float = 30.0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        startups = []
        for _ in range(3):
            proc, ready = _start_app("sim://?scenario=normal", Path(folder) / "s.sqlite")
            startups.append(ready)
            proc.terminate()
            proc.wait(10)
        proc, _ = _start_app("sim://?scenario=normal", Path(folder) / "c.sqlite")
        try:
            time.sleep(5)
            c0, t0 = _proc_cpu(proc.pid), time.monotonic()
            time.sleep(seconds)
            cpu = (_proc_cpu(proc.pid) - c0) / (time.monotonic() - t0)
        finally:
            proc.terminate()
            proc.wait(10)
    figures = {"startup_to_first_frame_s": round(min(startups), 2), "startup_runs_s": [round(s, 2) for s in startups],
               "live_cpu_percent_of_one_core": round(cpu * 100, 1)}
    print(f"start-up to first painted frame: {figures['startup_to_first_frame_s']} s (runs {figures['startup_runs_s']}); "
          f"whole app live at real speed with 3 waveforms: {figures['live_cpu_percent_of_one_core']} % of one core")
    return figures


def banner_latency(rounds: int = 2000) -> dict[str, float]:
    """Byte at the pty → the alarm area painted with the HIGH alarm."""
    from drivers.masimo import encode_line

    master, slave = os.openpty()
    tty.setraw(slave)
    samples = []
    with tempfile.TemporaryDirectory() as folder:
        app, store, service, window = _window(f"{os.ttyname(slave)}?protocol=masimo", folder)
        service.start()
        area = window.alarm_area
        painted: list[float] = []
        original = area.indicator.paintEvent

        def paint(event, _orig=original):
            _orig(event)
            if area.indicator.text().startswith("HIGH"):
                painted.append(time.perf_counter())

        area.indicator.paintEvent = paint
        second = 0
        try:
            for _ in range(rounds):
                for spo2 in (97, 85):
                    second += 1
                    line = encode_line({"spo2": spo2, "pr": 72}, device_time=datetime(2026, 11, 28, 9) + timedelta(seconds=second))
                    before = len(painted)
                    written = time.perf_counter()
                    os.write(master, line)
                    deadline = written + 2.0
                    while time.perf_counter() < deadline:
                        app.processEvents()
                        if spo2 == 97 or len(painted) > before:
                            break
                        time.sleep(0.001)
                    if spo2 == 85 and len(painted) > before:
                        samples.append((painted[before] - written) * 1000)
                    end = time.perf_counter() + 0.15
                    while time.perf_counter() < end:
                        app.processEvents()
                        time.sleep(0.005)
        finally:
            window.force_close = True
            window.close()
            service.shutdown()
            store.close()
            os.close(master)
            os.close(slave)
    figures = _percentiles(samples)
    print(f"byte → alarm banner painted: median {figures['median_ms']} ms, p99 {figures['p99_ms']} ms (n={figures['n']})")
    return figures


def memory(hours: float = 12.0, speed: float = 360.0) -> dict[str, float]:
    """RSS of a recording app over ``hours`` simulated hours at ``speed``: the soak
    (bench/soak.py, ``make soak``) in a process of its own."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "soak.json"
        result = subprocess.run([sys.executable, "-m", "bench.soak", "--hours", str(hours), "--speed", str(speed),
                                 "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                                timeout=hours * 3600 / speed * 3 + 120, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
        if not out.exists():
            raise RuntimeError(result.stderr[-2000:])
        samples = json.loads(out.read_text())["samples"]
    after_first_hour = [s["rss_mb"] for s in samples if s["hour"] >= 1.0]
    figures = {"rss_mb_at_1h": after_first_hour[0] if after_first_hour else None,
               "rss_mb_at_end": samples[-1]["rss_mb"], "simulated_hours": samples[-1]["hour"],
               "rss_mb_max": max(s["rss_mb"] for s in samples),
               "growth_after_1h_mb": round(samples[-1]["rss_mb"] - after_first_hour[0], 1) if after_first_hour else None}
    print(f"resident memory over {figures['simulated_hours']} accelerated hours: {figures['rss_mb_at_1h']} MB at 1 h, "
          f"{figures['rss_mb_at_end']} MB at the end (max {figures['rss_mb_max']} MB)")
    return figures


_CPU = r"""
import os, sys, time
from pathlib import Path
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from monitor.alarms.profile import default_profile
from monitor.app.clinic import Clinic
from monitor.app.pipeline import open_pipeline
from monitor.app.records import Records
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.qt.service import QtSessionService
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore
from ui.audio import AlarmAudio
from ui.context import UiContext
from ui.main_window import MainWindow

seconds = float(sys.argv[2])
app = QApplication([])
store = SessionStore(Path(sys.argv[1]))
service = QtSessionService(open_pipeline("sim://?scenario=normal&speed=1", store, ClinicSettings(), default_profile()))
context = UiContext(service, Records(store), Clinic(store), ClinicSettings(), default_profile())
window = MainWindow(context, audio=AlarmAudio(enabled=False)); window.resize(1366, 768); window.show()
service.start()
nurse = Actor(username="bench", display_name="Bench", role=Role.NURSE)
mark = {}
def begin():
    service.start_session(Patient(display_name="Bench", weight_kg=70), KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), nurse)
    service.waive_pre_dose_check(nurse, "benchmark")
    service.start_infusion(nurse)
    QTimer.singleShot(10_000, measure)       # after a 10 s warm-up
def measure():
    mark["cpu"], mark["t"] = time.process_time(), time.monotonic()
    QTimer.singleShot(int(seconds * 1000), end)
def end():
    print((time.process_time() - mark["cpu"]) / (time.monotonic() - mark["t"]), flush=True)
    window.force_close = True; window.close(); app.quit()
QTimer.singleShot(500, begin)
app.exec()
service.shutdown(); store.close()
"""


def live_cpu_recording(seconds: float = 300.0) -> dict[str, float]:
    """CPU of the whole app (real pipeline and monitoring window) recording a session at real speed
    on the simulated monitor with three waveforms, over ``seconds`` after a 10 s warm-up: offscreen,
    and under Xvfb (a real X server: the window is drawn as on a clinic PC without a GPU)."""
    figures = {}
    for label, prefix, env in (("offscreen", [], {"QT_QPA_PLATFORM": "offscreen"}),
                               ("xvfb", ["xvfb-run", "-a", "-s", "-screen 0 1366x768x24"], {})):
        with tempfile.TemporaryDirectory() as folder:
            environ = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
            result = subprocess.run(prefix + [sys.executable, "-c", _CPU, str(Path(folder) / "cpu.sqlite"), str(seconds)],
                                    capture_output=True, text=True, cwd=ROOT, timeout=seconds + 180,
                                    env={**environ, **env})
        if result.returncode:
            raise RuntimeError(result.stderr[-2000:])
        figures[f"{label}_percent_of_one_core"] = round(float(result.stdout.split()[-1]) * 100, 1)
    figures["seconds"] = seconds
    print(f"live CPU with a session recording over {seconds:g} s: {figures['offscreen_percent_of_one_core']} % of one "
          f"core offscreen, {figures['xvfb_percent_of_one_core']} % under Xvfb")
    return figures


def run() -> dict:
    """All window figures."""
    return {"refresh_tick": refresh_tick(), "banner_latency": banner_latency(), **startup_and_cpu(),
            "live_cpu_recording": live_cpu_recording(), "memory": memory()}
