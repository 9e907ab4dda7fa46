"""``vigil import`` memory: build a long synthetic session, export its archive, import it in a
process of its own and report that process's peak memory (VmHWM: Linux) against the archive's size.

    python bench/import_archive.py [--hours 24] [--folder DIR] [--json]

Prints a sentence (and, with ``--json``, one JSON line: archive_mb, baseline_rss_mb — a process
that imported the same modules and did nothing —, import_peak_rss_mb, import_s, sessions_equal)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from monitor.export import import_archive
from monitor.store import SessionStore
started = time.perf_counter()
if {do!r}:
    with SessionStore({db!r}) as s:
        sid = import_archive(s, {archive!r})
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"rss_mb": hwm / 1024, "s": time.perf_counter() - started}}))
"""


def _child(archive: Path, db: Path, do: bool) -> dict[str, float]:
    code = _CHILD.format(root=str(ROOT), db=str(db), archive=str(archive), do=do)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "VIGIL_KEY_DIR": str(db.parent / "keys")})
    return json.loads(out.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--folder", help="work folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="vigil-import-bench-"))
    os.environ["VIGIL_KEY_DIR"] = str(folder / "keys")
    from monitor.export import build_long_session, export_session
    from monitor.store import SessionStore

    with SessionStore(folder / "chair.sqlite") as store:
        sid = build_long_session(store, hours=args.hours)
        archive = export_session(store, sid, "json", folder / "session.json")
    baseline = _child(archive, folder / "none.sqlite", False)
    imported = _child(archive, folder / "clinic.sqlite", True)
    with SessionStore(folder / "chair.sqlite", readonly=True) as a, SessionStore(folder / "clinic.sqlite",
                                                                                   readonly=True) as b:
        [x], [y] = a.list_sessions(), b.list_sessions()
        equal = (x.n_observations, x.n_alarms, x.started_at, x.ended_at) == (
            y.n_observations, y.n_alarms, y.started_at, y.ended_at) and b.verify_session(y.id).ok
    figures = {"hours": args.hours, "archive_mb": round(archive.stat().st_size / 2 ** 20, 1),
               "baseline_rss_mb": round(baseline["rss_mb"], 1), "import_peak_rss_mb": round(imported["rss_mb"], 1),
               "import_s": round(imported["s"], 1), "sessions_equal": equal}
    print(f"import of a {args.hours:g}-hour archive ({figures['archive_mb']} MB): peak RSS "
          f"{figures['import_peak_rss_mb']} MB (a process that only loaded Vigil: {figures['baseline_rss_mb']} MB), "
          f"{figures['import_s']} s; imported session equal and verified: {equal}")
    if args.json:
        print(json.dumps(figures))
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
