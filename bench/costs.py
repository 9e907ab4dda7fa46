"""Costs of recording and exporting (issue 10 §8).

* Bytes written to disk per session-hour by a real recording: the real pipeline (simulated
  monitor with three waveforms → alarm engine → recorder → store writer) in a subprocess at
  ``speed``× with the writer's commit cadence scaled by the same factor (a commit per 1 s of
  *session* time, as at real speed), measured from the process's ``/proc/self/io``
  ``write_bytes`` (what reached the block layer: database, WAL and checkpoints) after a
  warm-up; also the stored database size per hour, so the ratio is the write amplification.
  A whole session-hour by default (90 s at 40×): the log is copied back into the database once
  per 4 MiB (about every 20 session-minutes), so a shorter window can miss every checkpoint.
  ``BENCH_LIGHT_COMMIT_S=3`` in the environment measures the cadence of a chair with the clinic
  record on (``monitor.app.chair.CLINIC_LIGHT_COMMIT_S``: numerics committed every 3 s);
  ``BENCH_DATA_COMMIT_S=3`` commits everything every 3 s (how that chair recorded before light
  commits). "Written" is what the process sent to the disk: ``write_bytes`` less
  ``cancelled_write_bytes`` (pages of the tail file emptied before they were written back never
  reach the disk; see proc(5)); the figure before that deduction is printed too.
* Peak memory of every export format on a synthetic 24-hour session (tracemalloc peak, Python
  allocations incl. numpy; and the process's max RSS, in a second run without tracemalloc, whose
  bookkeeping inflates it), each format in its own subprocess.
* The review window opened (to fully loaded) and closed 10 times in one process, on a 2-hour and
  on a 24-hour session: RSS after each close; first paint and fully loaded.
* A live session at real speed (real pipeline + monitoring window, offscreen) while a 12-hour
  session of the same file is opened in review and exported from it in every format: device batch
  → alarm evaluation done, and the longest gap of a 10 ms QTimer heartbeat on the window's thread.

Synthetic sessions are built once into ``var/bench-<hours>h.sqlite`` (delete them to rebuild).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_RECORD = r"""
import json, os, sys, time, faulthandler
faulthandler.dump_traceback_later(float(os.environ.get("BENCH_DUMP", "1e9")), exit=True)
from pathlib import Path
from monitor.alarms.profile import default_profile
from monitor.app.pipeline import open_pipeline
from monitor.app.service import SessionService
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore, StoreWriter

path, speed, hours, warmup = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
store = SessionStore(path)
pipeline = open_pipeline(f"sim://?scenario=normal&speed={speed:g}", store, ClinicSettings(), default_profile())
# the commit cadence of a real-time recording: one commit per second of session time
pipeline.writer.stop()
light = os.environ.get("BENCH_LIGHT_COMMIT_S")
pipeline.writer = StoreWriter(store, commit_interval=1.0 / speed, idle_commit=0.5 / speed,
                              data_commit_interval=float(os.environ.get("BENCH_DATA_COMMIT_S", "30")) / speed,
                              light_commit_interval=float(light) / speed if light else None)
pipeline.writer.start()
service = SessionService(pipeline)
pipeline.start()
nurse = Actor(username="bench", display_name="Bench", role=Role.NURSE)
time.sleep(0.5)
service.start_session(Patient(display_name="Bench", weight_kg=70), KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), nurse)
service.waive_pre_dose_check(nurse, "benchmark")
service.start_infusion(nurse)
start = service.now()

def io():
    return {k: int(v) for k, v in (l.split(": ") for l in open("/proc/self/io").read().splitlines())}

def size():
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if not p.name.endswith(".lock"))

def elapsed():
    return (service.now() - start).total_seconds() / 3600

while elapsed() < warmup:
    time.sleep(0.05)
a, h0 = io(), elapsed()
while elapsed() < warmup + hours:
    time.sleep(0.05)
b, h1 = io(), elapsed()
pipeline.stop()
store.close()
span = h1 - h0
print(json.dumps({"hours": span, "write_bytes": (b["write_bytes"] - a["write_bytes"]) / span,
                  "cancelled": (b["cancelled_write_bytes"] - a["cancelled_write_bytes"]) / span,
                  "wchar": (b["wchar"] - a["wchar"]) / span, "syscw": (b["syscw"] - a["syscw"]) / span,
                  "db_bytes_per_hour": size() / h1}))
"""


def write_cost(hours: float = 1.0, speed: float = 40.0, warmup: float = 0.02,
               light_commit_s: float | None = None) -> dict[str, float]:
    """Bytes written per session-hour by a recording (see the module docstring); ``light_commit_s``:
    the light commits of a chair of the clinic record (as ``BENCH_LIGHT_COMMIT_S``)."""
    env = {**os.environ, **({"BENCH_LIGHT_COMMIT_S": str(light_commit_s)} if light_commit_s else {})}
    with tempfile.TemporaryDirectory(dir=ROOT / "var" if (ROOT / "var").is_dir() else None) as folder:
        result = subprocess.run([sys.executable, "-c", _RECORD, str(Path(folder) / "w.sqlite"), str(speed), str(hours),
                                 str(warmup)], capture_output=True, text=True, cwd=ROOT, env=env,
                                timeout=(hours + warmup) * 3600 / speed * 3 + 120)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    raw = json.loads(result.stdout.splitlines()[-1])
    written = raw["write_bytes"] - raw["cancelled"]
    figures = {"written_mb_per_session_hour": round(written / 1e6, 1),
               "dirtied_mb_per_session_hour": round(raw["write_bytes"] / 1e6, 1),
               "write_calls_mb_per_session_hour": round(raw["wchar"] / 1e6, 1),
               "stored_mb_per_session_hour": round(raw["db_bytes_per_hour"] / 1e6, 2),
               "write_amplification": round(written / max(raw["db_bytes_per_hour"], 1), 1),
               "measured_session_hours": round(raw["hours"], 3), "speed": speed}
    light = env.get("BENCH_LIGHT_COMMIT_S")
    print(f"recording{f' with light commits every {float(light):g} s' if light else ''} "
          f"writes {figures['written_mb_per_session_hour']} MB to disk per session-hour "
          f"({figures['dirtied_mb_per_session_hour']} MB before the emptied tail is deducted, "
          f"{figures['write_calls_mb_per_session_hour']} MB through write calls) to store "
          f"{figures['stored_mb_per_session_hour']} MB (×{figures['write_amplification']}; measured over "
          f"{figures['measured_session_hours']} session-h at {speed:g}× with the writer's cadence scaled to session time; "
          "target ≤ 30 MB)")
    return figures


_EXPORT = r"""
import json, resource, sys, time, tracemalloc
from pathlib import Path
from monitor.export import export_session
from monitor.store import SessionStore

db, fmt, out, traced = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "traced"
store = SessionStore(db, readonly=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if traced:  # tracemalloc's own bookkeeping inflates the RSS: the RSS is measured in a run without it
    tracemalloc.start()
began = time.perf_counter()
export_session(store, 1, fmt, out)
seconds = time.perf_counter() - began
peak = tracemalloc.get_traced_memory()[1] if traced else 0
print(json.dumps({"peak": peak, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "before_kb": before, "seconds": seconds, "bytes": out.stat().st_size}))
"""


def long_session(hours: float) -> Path:
    """A synthetic session of ``hours`` with waveforms, built once into var/bench-<hours>h.sqlite."""
    from monitor.export.synthetic import build_long_session
    from monitor.store import SessionStore

    path = ROOT / "var" / f"bench-{hours:g}h.sqlite"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        partial = path.with_suffix(".partial")
        for old in path.parent.glob(partial.name + "*"):
            old.unlink()
        with SessionStore(partial) as store:
            build_long_session(store, hours=hours, seed=0)
        partial.rename(path)
        Path(f"{partial}.lock").unlink(missing_ok=True)
    return path


def export_memory(hours: float = 24.0, formats: tuple[str, ...] | None = None) -> dict[str, dict[str, float]]:
    """Peak memory of each export format on a ``hours`` session, each in a fresh process."""
    from monitor.export import FORMATS

    db = long_session(hours)
    out: dict[str, dict[str, float]] = {}
    for fmt in formats or tuple(f for f, row in FORMATS.items() if not row.esketamine_only):
        raw = {}
        for mode in ("traced", "rss"):
            with tempfile.TemporaryDirectory() as folder:
                result = subprocess.run([sys.executable, "-c", _EXPORT, str(db), fmt, str(Path(folder) / f"x.{fmt}"),
                                         mode], capture_output=True, text=True, cwd=ROOT, timeout=3600,
                                        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
            if result.returncode:
                raise RuntimeError(result.stderr[-3000:])
            raw[mode] = json.loads(result.stdout.splitlines()[-1])
        out[fmt] = {"peak_traced_mb": round(raw["traced"]["peak"] / 1e6, 1),
                    "max_rss_mb": round(raw["rss"]["maxrss_kb"] / 1024, 1),
                    "rss_before_mb": round(raw["rss"]["before_kb"] / 1024, 1),
                    "seconds": round(raw["rss"]["seconds"], 1), "file_mb": round(raw["rss"]["bytes"] / 1e6, 1)}
        print(f"export {fmt} of a {hours:g}-hour session: peak {out[fmt]['peak_traced_mb']} MB traced, "
              f"max RSS {out[fmt]['max_rss_mb']} MB (the process {out[fmt]['rss_before_mb']} MB before it), "
              f"{out[fmt]['seconds']} s, {out[fmt]['file_mb']} MB (target ≤ 200 MB)")
    return out


_CYCLES = r"""
import gc, json, sys, time
from types import SimpleNamespace
from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QApplication
from monitor.alarms.profile import default_profile
from monitor.app.clinic import Clinic
from monitor.app.records import Records
from monitor.settings import ClinicSettings
from monitor.store import SessionStore
from ui.context import UiContext
from ui.review import ReviewWindow

app = QApplication([])
store = SessionStore(sys.argv[1], readonly=True)
context = UiContext(SimpleNamespace(session_id=None), Records(store), Clinic(store), ClinicSettings(), default_profile())

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def settle():
    for _ in range(3):
        app.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()

out = []
for _ in range(int(sys.argv[2])):
    began = time.perf_counter()
    window = ReviewWindow(context, 1)
    window.resize(1366, 768)
    window.show()
    while not window.plots.painted:
        app.processEvents()
    first = time.perf_counter() - began
    window.load_all_vitals()
    while not window.plots.waves_drawn():
        app.processEvents()
        time.sleep(0.001)
    full = time.perf_counter() - began
    window.close()
    window.deleteLater()
    del window
    settle()
    out.append([first, full, rss()])
print(json.dumps(out))
"""


def review_cycles(hours: float, cycles: int = 10) -> dict[str, float]:
    """Open (to fully loaded) and close the review window ``cycles`` times on a ``hours`` session in
    one process: RSS after each close, first paint and fully loaded (every vital read, the first
    view's waveforms drawn)."""
    db = long_session(hours)
    result = subprocess.run([sys.executable, "-c", _CYCLES, str(db), str(cycles)], capture_output=True, text=True,
                            cwd=ROOT, timeout=3600, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    points = json.loads(result.stdout.splitlines()[-1])
    rss = [round(p[2], 1) for p in points]
    figures = {"rss_mb_after_each_close": rss, "growth_mb_after_first": round(rss[-1] - rss[0], 1),
               "first_paint_s": round(statistics.median(p[0] for p in points), 3),
               "fully_loaded_s": round(statistics.median(p[1] for p in points), 3),
               "first_open_first_paint_s": round(points[0][0], 3), "first_open_fully_loaded_s": round(points[0][1], 3)}
    print(f"review of a {hours:g}-hour session opened and closed {cycles}×: RSS {rss[0]} → {rss[-1]} MB "
          f"(+{figures['growth_mb_after_first']} MB; target ≤ 30); first paint {figures['first_paint_s']} s, "
          f"fully loaded {figures['fully_loaded_s']} s (medians; the first opening {figures['first_open_first_paint_s']} / "
          f"{figures['first_open_fully_loaded_s']} s)")
    return figures


_LIVE = r"""
import json, shutil, statistics, sys, time
from pathlib import Path
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from monitor.alarms.profile import default_profile
from monitor.app import pipeline as pipeline_module
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
from ui.review import ReviewWindow

folder = Path(sys.argv[2])
db = folder / "chair.sqlite"
shutil.copy(sys.argv[1], db)           # the chair's file holds the 12-hour session; a new one is recorded into it
formats, minimum = sys.argv[3].split(","), float(sys.argv[4])
phase = ["start"]
lags, beats = [], []
arrived = {}
original_received, original_batch = pipeline_module._Inbox.items_received, pipeline_module.Pipeline._batch

def items_received(self, items):       # the device worker hands a batch over
    arrived[id(items)] = time.perf_counter()
    original_received(self, items)

def batch(self, items):                # the pipeline thread: recorder and alarm engine
    t = arrived.pop(id(items), None)
    original_batch(self, items)
    if t is not None:
        lags.append((phase[0], (time.perf_counter() - t) * 1000))

pipeline_module._Inbox.items_received, pipeline_module.Pipeline._batch = items_received, batch
app = QApplication([])
settings, profile = ClinicSettings(), default_profile()
store = SessionStore(db)
service = QtSessionService(open_pipeline("sim://?scenario=normal&speed=1", store, settings, profile))
context = UiContext(service, Records(store), Clinic(store), settings, profile)
window = MainWindow(context, audio=AlarmAudio(enabled=False))
window.resize(1366, 768)
window.show()
from ui.app import collect_on_gui_thread, settle_heap
collect_on_gui_thread()                # as `vigil run` does
settle_heap()                          # as `vigil run` does after the first frame
service.start()
nurse = Actor(username="bench", display_name="Bench", role=Role.NURSE)
heartbeat = QTimer()
heartbeat.setInterval(10)
heartbeat.timeout.connect(lambda: beats.append((phase[0], time.perf_counter())))
heartbeat.start()
results = {}

def steps():
    service.start_session(Patient(display_name="Live", weight_kg=70), KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), nurse)
    service.waive_pre_dose_check(nurse, "benchmark")
    service.start_infusion(nurse)
    yield from hold("idle", time.perf_counter())
    began = time.perf_counter()
    phase[0] = "review"
    review = ReviewWindow(context, 1)  # the 12-hour session
    review.resize(1366, 768)
    review.show()
    while review.loading or not review.plots.painted or not review.plots.waves_drawn():  # fully loaded
        yield
    results["review"] = {"work_s": time.perf_counter() - began}
    yield from hold("review", began)
    for fmt in formats:
        began = time.perf_counter()
        phase[0] = fmt
        job = review.export(fmt, folder / f"export-{fmt}")
        while not job.done:
            yield
        results[fmt] = {"work_s": time.perf_counter() - began, "ok": job.result is not None}
        yield from hold(fmt, began)
    review.close()
    window.force_close = True          # Qt 6 closes every window on quit; the monitoring one would ask
    app.quit()

def hold(name, began):
    phase[0] = name
    while time.perf_counter() - began < minimum:
        yield

runner = steps()
def step():
    try:
        next(runner)
    except StopIteration:
        return
    QTimer.singleShot(5, step)
QTimer.singleShot(2000, step)
app.exec()
heartbeat.stop()
window.force_close = True
window.close()
service.shutdown()
store.close()

def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1)))] if values else None

by_phase = {}
for name, ms in lags:
    by_phase.setdefault(name, {"lag": [], "gaps": []})["lag"].append(ms)
previous = None
for name, t in beats:   # a gap counts for the phase of the beat that ends it (a phase's work starts at once)
    if previous is not None:
        by_phase.setdefault(name, {"lag": [], "gaps": []})["gaps"].append((t - previous) * 1000)
    previous = t
out = {}
for name, data in by_phase.items():
    if name == "start":
        continue
    out[name] = {**results.get(name, {}), "lag_n": len(data["lag"]), "lag_p50_ms": pct(data["lag"], 0.5),
                 "lag_p99_ms": pct(data["lag"], 0.99), "lag_max_ms": max(data["lag"], default=None),
                 "ui_beats": len(data["gaps"]), "ui_p99_gap_ms": pct(data["gaps"], 0.99),
                 "ui_max_gap_ms": max(data["gaps"], default=None)}
all_lags = [ms for name, ms in lags if name != "start"]
out["all"] = {"lag_n": len(all_lags), "lag_p99_ms": pct(all_lags, 0.99), "lag_max_ms": max(all_lags),
              "ui_max_gap_ms": max(v["ui_max_gap_ms"] or 0 for v in out.values())}
print(json.dumps(out))
"""


def live_while_busy(hours: float = 12.0, minimum_s: float = 15.0, xvfb: bool = False) -> dict[str, dict[str, float]]:
    """A live session at real speed (the real pipeline and the monitoring window, offscreen) while a
    ``hours`` session is opened in review and exported from it in every format: device batch →
    alarm evaluation done (ms) and the longest gap of a 10 ms QTimer heartbeat on the window's
    thread (ms), per phase (each at least ``minimum_s``)."""
    from monitor.export import FORMATS

    db = long_session(hours)
    formats = [f for f, row in FORMATS.items() if not row.esketamine_only]
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-c", _LIVE, str(db), folder, ",".join(formats), str(minimum_s)]
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        if xvfb:
            env.pop("QT_QPA_PLATFORM")
            command = ["xvfb-run", "-a", "-s", "-screen 0 1366x768x24"] + command
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=3600, env=env)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    out = json.loads(result.stdout.splitlines()[-1])
    for name, f in out.items():
        if name == "all":
            continue
        work = f" ({f['work_s']:.1f} s)" if "work_s" in f else ""
        print(f"live session while {'idle' if name == 'idle' else 'opening the review' if name == 'review' else 'exporting ' + name.upper()}"
              f"{work}: alarm evaluation lag p50 {f['lag_p50_ms']:.1f} ms, p99 {f['lag_p99_ms']:.1f} ms, "
              f"max {f['lag_max_ms']:.1f} ms (n={f['lag_n']}); longest UI stall {f['ui_max_gap_ms']:.0f} ms "
              f"(p99 gap {f['ui_p99_gap_ms']:.0f} ms)")
    a = out["all"]
    print(f"all phases: alarm evaluation lag p99 {a['lag_p99_ms']:.1f} ms, max {a['lag_max_ms']:.1f} ms "
          f"(n={a['lag_n']}); longest UI stall {a['ui_max_gap_ms']:.0f} ms (targets ≤ 100 ms)")
    return out


def run() -> dict:
    """All cost figures."""
    from monitor.app.chair import CLINIC_LIGHT_COMMIT_S

    return {"write": write_cost(), "write_clinic_record": write_cost(light_commit_s=CLINIC_LIGHT_COMMIT_S),
            "export_memory_24h": export_memory(),
            "review_cycles_2h": review_cycles(2), "review_cycles_24h": review_cycles(24),
            "live_while_busy": live_while_busy()}


if __name__ == "__main__":
    run()
