"""Data lost when the recorder is killed (issue 11, docs/reliability.md): ``vigil record`` on the
simulated monitor at real speed is killed with SIGKILL at a random moment, ``kills`` times; after
each kill the file is opened read-write (as a resume does, which stores the tail file) and the
figures are taken:

* lost: seconds between the kill and the last stored data (the later of the last ECG sample and
  the last numeric) — what a crash costs;
* resumed: seconds from starting ``vigil record --resume`` to its first new data safe on disk
  (committed or in the tail file; includes the start-up of Python and Vigil);
* every resume continues the same session, which verifies (audit chain) at the end.

``python -m bench kills`` (about 15 s a kill).
"""

from __future__ import annotations

import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "sim://?scenario=normal&speed=1"


def _record(db: Path, resume: bool) -> subprocess.Popen[bytes]:
    args = [sys.executable, str(ROOT / "main.py"), "record", "--device", DEVICE, "--duration", "3600", "--db", str(db)]
    return subprocess.Popen(args + (["--resume"] if resume else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _last_data(db: Path) -> tuple[int, float, int]:
    """The session, its last stored data time (epoch s) and its number of observations."""
    from monitor.store import SessionStore

    with SessionStore(db) as store:      # read-write: stores what the tail file holds
        [session] = store.list_sessions()
        hr = store.numerics(session.id, "hr")[0]
        ecg = store.waveform(session.id, "ecg", session.started_at, datetime.now(timezone.utc))
        last = max(float(max(hr)) if len(hr) else 0.0, float(ecg.t[-1]) if len(ecg.t) else 0.0)
        return session.id, last, session.n_observations


def _wait_for_more(db: Path, than: int, timeout: float) -> float | None:
    """Seconds until new data is safe on disk: committed, or in the tail file (where a recording
    keeps what it has not committed yet, up to 30 s of it)."""
    from monitor.store import SessionStore, StoreError
    from monitor.store.tail import tail_path

    tail = tail_path(db)
    before = tail.stat().st_size if tail.exists() else 0
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if tail.exists() and tail.stat().st_size > before:
            return time.monotonic() - started
        try:
            with SessionStore(db, readonly=True) as store:
                sessions = store.list_sessions()
        except StoreError:
            sessions = []
        if sessions and sessions[0].n_observations > than:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def run(kills: int = 8, seed: int = 11) -> dict[str, object]:
    rng = random.Random(seed)
    lost: list[float] = []
    resumed: list[float] = []
    sessions: set[int] = set()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "kills.sqlite"
        count = 0
        for i in range(kills):
            proc = _record(db, resume=i > 0)
            try:
                waited = _wait_for_more(db, count, 60.0)
                if waited is None:
                    raise RuntimeError("the recorder stored nothing within 60 s")
                if i > 0:
                    resumed.append(round(waited, 2))
                time.sleep(rng.uniform(3.0, 9.0))
                killed_at = time.time()
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            finally:
                if proc.poll() is None:
                    proc.kill()
            sid, last, count = _last_data(db)
            sessions.add(sid)
            lost.append(round(killed_at - last, 2))
            print(f"kill {i + 1}: {lost[-1]:.2f} s lost" + (f", resumed in {resumed[-1]:.2f} s" if i else ""))
        from monitor.store import SessionStore

        with SessionStore(db, readonly=True) as store:
            verified = store.verify_audit().ok
            gaps = len(store.gaps(next(iter(sessions))))
    figures: dict[str, object] = {
        "kills": kills, "lost_s_max": max(lost), "lost_s_median": round(statistics.median(lost), 2),
        "resume_to_data_s_median": round(statistics.median(resumed), 2) if resumed else None,
        "resume_to_data_s_max": max(resumed) if resumed else None,
        "one_session": len(sessions) == 1, "gaps_marked": gaps, "audit_verifies": verified,
    }
    print(f"data lost per SIGKILL: median {figures['lost_s_median']} s, max {figures['lost_s_max']} s over {kills} "
          f"kills; resumed to data in median {figures['resume_to_data_s_median']} s; one session: "
          f"{figures['one_session']}, {gaps} gaps marked, audit verifies: {verified}")
    return figures


if __name__ == "__main__":
    run()
