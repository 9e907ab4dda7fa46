"""``make soak``: a 24-hour session at accelerated speed in the real monitoring window (issue 11).

The window is built as ``vigil run`` builds it — a :class:`~monitor.app.chair.Chair` with the Qt
session service, the clinic settings of a throw-away configuration folder, :class:`MainWindow`
shown as at start — on ``sim://?scenario=normal&speed=SPEED`` with its three waveforms, on the
offscreen platform. A nurse signs in (by token), starts an IV ketamine session and the infusion,
and the Qt event loop runs until the session has lasted ``SOAK_HOURS`` simulated hours.

Every simulated hour one line is printed and kept: wall seconds, resident memory (MB), the
process's threads (Python's and Qt's), ``sys.getrefcount(None)`` (a PySide6 defect on Python 3.11
drains it: tests/test_refcount_guard.py), the database size (file and write-ahead log), the
observations and waveform blocks recorded (the writer is flushed first), the alarm-evaluation lag
(how far, in wall seconds, the last item the recorder judged is behind the simulated monitor's
clock) and the items the store writer held before that flush.

At the end the figures go to ``bench/soak-results.json`` and a verdict is printed; the exit status
is 1 when resident memory grows more than ``--max-growth-mb`` (30 MB) after the first hour or the
thread count grows, 0 otherwise.

    make soak                      # 24 simulated hours (about 6 min at the default speed)
    make soak SOAK_HOURS=2         # a short run
    python -m bench.soak --hours 1 --speed 200 --out /tmp/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("soak-results.json")
#: Simulated seconds per wall second: 24 h in 6 min on a 2-core machine (measured: docs/reliability.md).
DEFAULT_SPEED = 240.0
#: Resident memory may grow this much (MB) after the first simulated hour, over the whole run.
MAX_GROWTH_MB = 30.0
_POLL_MS = 200


def _status(field: str) -> int:
    """A number from /proc/self/status (``VmRSS`` in kB, ``Threads``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _db_size_mb(db: Path) -> float:
    return sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists()) / 2**20


def _rows(db: Path) -> tuple[int, int]:
    """Observations and waveform blocks in the database, read on a connection of their own."""
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return (conn.execute("SELECT count(*) FROM observations").fetchone()[0],
                conn.execute("SELECT count(*) FROM waveforms").fetchone()[0])
    finally:
        conn.close()


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points (0 for fewer than two distinct x)."""
    if len({x for x, _ in points}) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def soak(hours: float, speed: float, folder: Path, every_h: float = 1.0,
         report: Callable[[dict], None] = lambda sample: None) -> list[dict]:
    """Run the monitoring window on a session of ``hours`` simulated hours at ``speed`` with its
    database in ``folder`` and the clinic settings of ``VIGIL_CONFIG_DIR``; a sample (a dict, see
    the module docstring) at the session's start, every ``every_h`` simulated hours and at the end,
    each passed to ``report`` as it is taken. Needs a QApplication-capable platform (offscreen).
    Raises RuntimeError when nothing reaches the recorder for 60 wall seconds (the pipeline stopped)."""
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from monitor.app.chair import Chair
    from monitor.patient import Patient
    from monitor.protocols import KetamineIVPlan
    from monitor.qt.service import QtSessionService
    from monitor.staff import Actor, Role
    from ui.audio import AlarmAudio
    from ui.context import UiContext
    from ui.main_window import MainWindow, show_at_start

    app = QApplication.instance() or QApplication([])
    db = folder / "soak.sqlite"
    chair = Chair(f"sim://?scenario=normal&speed={speed:g}", str(db), service_factory=QtSessionService)
    service = chair.service
    context = UiContext(service, chair.records, chair.clinic, chair.settings, chair.profile)
    window = MainWindow(context, audio=AlarmAudio(enabled=False))
    show_at_start(window)
    chair.start()
    nurse = Actor(username="soak", display_name="Soak Nurse", role=Role.NURSE)
    samples: list[dict] = []
    state: dict = {"start": None, "wall0": 0.0, "next": 0.0, "error": None, "seen": (None, time.monotonic())}
    loop = QEventLoop()

    def begin() -> None:
        context.sign_in(chair.clinic.signins.issue(nurse))
        service.start_session(Patient(display_name="Soak Test", weight_kg=70),
                              KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), nurse)
        service.waive_pre_dose_check(nurse, "soak")
        service.start_infusion(nurse)
        state["start"], state["wall0"] = service.now(), time.monotonic()

    def sample(simulated_h: float) -> None:
        recorder = chair.pipeline.recorder
        judged: datetime | None = recorder.now if recorder is not None else None
        lag = (chair.pipeline.link.clock() - judged).total_seconds() / speed if judged is not None else None
        pending = chair.pipeline.writer.pending
        chair.pipeline.writer.flush(30)         # the counts are of what is recorded so far
        observations, blocks = _rows(db)
        row = {"hour": round(simulated_h, 3), "wall_s": round(time.monotonic() - state["wall0"], 1),
               "rss_mb": round(_status("VmRSS") / 1024, 1), "threads": _status("Threads"),
               "python_threads": threading.active_count(), "refcount_none": sys.getrefcount(None),
               "db_mb": round(_db_size_mb(db), 1), "observations": observations, "waveform_blocks": blocks,
               "lag_s": None if lag is None else round(max(lag, 0.0), 3),
               "writer_pending": pending}
        samples.append(row)
        report(row)

    def poll() -> None:
        try:
            if state["start"] is None:
                begin()
                sample(0.0)
                state["next"] = min(every_h, hours)
                return
            simulated_h = (service.now() - state["start"]).total_seconds() / 3600
            recorder = chair.pipeline.recorder
            judged = recorder.now if recorder is not None else None
            if judged != state["seen"][0]:
                state["seen"] = (judged, time.monotonic())
            elif time.monotonic() - state["seen"][1] > 60:
                raise RuntimeError("nothing reached the recorder for 60 s: the pipeline has stopped")
            if simulated_h >= state["next"] - 1e-9:
                sample(simulated_h)
                if state["next"] >= hours - 1e-9:
                    loop.quit()
                state["next"] = min(state["next"] + every_h, hours)
        except Exception as exc:  # noqa: BLE001 (ends the run, raised below)
            state["error"] = exc
            loop.quit()

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(_POLL_MS)
    try:
        loop.exec()
    finally:
        timer.stop()
        window.force_close = True
        window.close()
        chair.close()
        app.processEvents()
    if state["error"] is not None:
        raise state["error"]
    return samples


def verdict(samples: list[dict], max_growth_mb: float = MAX_GROWTH_MB) -> tuple[bool, list[str]]:
    """Judge a soak's samples: resident memory may grow at most ``max_growth_mb`` after the first
    hour, the thread count must not grow after it. ``(passed, lines to print)``; a run without a
    sample at or after hour 1 is judged on what it has (from its first sample)."""
    after = [s for s in samples if s["hour"] >= 1.0 - 1e-9] or samples
    base, last = after[0], after[-1]
    growth = last["rss_mb"] - base["rss_mb"]
    per_hour = _slope([(s["hour"], s["rss_mb"]) for s in after])
    ref_slope = _slope([(s["hour"], s["refcount_none"]) for s in after])
    threads = sorted({s["threads"] for s in after})
    memory_ok = growth <= max_growth_mb
    threads_ok = max(threads) <= base["threads"]
    lines = [f"resident memory: {base['rss_mb']} MB at hour {base['hour']:g}, {last['rss_mb']} MB at hour "
             f"{last['hour']:g}: {growth:+.1f} MB ({per_hour:+.2f} MB per hour) — "
             f"{'ok' if memory_ok else 'FAIL'} (limit {max_growth_mb:g} MB)",
             f"threads: {', '.join(map(str, threads))} from hour {base['hour']:g} — "
             f"{'constant' if len(threads) == 1 else 'ok (fewer)' if threads_ok else 'FAIL (grew)'}",
             f"sys.getrefcount(None): {base['refcount_none']} → {last['refcount_none']} "
             f"({ref_slope:+.0f} per hour)"]
    return memory_ok and threads_ok, lines


def _print_row(row: dict) -> None:
    lag = "-" if row["lag_s"] is None else f"{row['lag_s']:.2f}"
    print(f"{row['hour']:6.2f} h {row['wall_s']:7.1f} s  RSS {row['rss_mb']:6.1f} MB  threads {row['threads']:3d}  "
          f"refcount(None) {row['refcount_none']:7d}  db {row['db_mb']:7.1f} MB  observations {row['observations']:8d}  "
          f"blocks {row['waveform_blocks']:7d}  lag {lag} s  writer queue {row['writer_pending']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); the exit status is the verdict."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=float(os.environ.get("SOAK_HOURS") or 24),
                        help="simulated hours of session (default: SOAK_HOURS, else 24)")
    parser.add_argument("--speed", type=float, default=float(os.environ.get("SOAK_SPEED") or DEFAULT_SPEED),
                        help=f"simulated seconds per wall second (default: SOAK_SPEED, else {DEFAULT_SPEED:g})")
    parser.add_argument("--every-hours", type=float, default=1.0, help="simulated hours between samples (default 1)")
    parser.add_argument("--max-growth-mb", type=float, default=MAX_GROWTH_MB,
                        help=f"resident memory allowed to grow after hour 1 (default {MAX_GROWTH_MB:g})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the figures as JSON (default bench/soak-results.json)")
    args = parser.parse_args(argv)
    if args.hours <= 0 or args.every_hours <= 0 or not 0.1 <= args.speed <= 10000:
        parser.error("--hours and --every-hours must be positive, --speed between 0.1 and 10000")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    print(f"soak: {args.hours:g} simulated hours at speed {args.speed:g} "
          f"(about {args.hours * 3600 / args.speed / 60:.0f} min), window offscreen", flush=True)
    with tempfile.TemporaryDirectory(prefix="vigil-soak-") as folder:
        os.environ["VIGIL_CONFIG_DIR"] = str(Path(folder) / "config")   # the shipped clinic settings only
        os.environ.setdefault("VIGIL_KEY_DIR", str(Path(folder) / "keys"))
        samples = soak(args.hours, args.speed, Path(folder), args.every_hours, report=_print_row)
    passed, lines = verdict(samples, args.max_growth_mb)
    for line in lines:
        print(line)
    print("verdict:", "PASS" if passed else "FAIL")
    args.out.write_text(json.dumps({
        "hours": args.hours, "speed": args.speed, "max_growth_mb": args.max_growth_mb, "passed": passed,
        "verdict": lines, "samples": samples,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"{time.strftime('%Y-%m-%d')}"}, indent=2) + "\n")
    print(f"figures written to {args.out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
