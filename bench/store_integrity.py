"""What the store's integrity checks cost on a 24-hour session's file: ``quick_check`` at opening
(warm cache; cold too when run as root, after dropping the page cache), the seal computed when a
session is closed, ``vigil verify SESSION`` and the full ``integrity_check``.

    python bench/store_integrity.py [--hours 24] [--folder DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--folder")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="vigil-integrity-bench-"))
    os.environ["VIGIL_KEY_DIR"] = str(folder / "keys")
    from monitor.export import build_long_session
    from monitor.store import SessionStore
    from monitor.store.seal import content_digest

    db = folder / "bench.sqlite"
    with SessionStore(db) as store:
        sid = build_long_session(store, hours=args.hours)
        with store._read() as conn:
            t = time.perf_counter()
            content_digest(conn, sid)
            seal = time.perf_counter() - t
    warm = []
    for _ in range(3):
        t = time.perf_counter()
        SessionStore(db, readonly=True, check_integrity=True).close()
        warm.append(time.perf_counter() - t)
    cold = None
    if os.geteuid() == 0:
        subprocess.run(["sync"], check=False)
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
            t = time.perf_counter()
            SessionStore(db, readonly=True, check_integrity=True).close()
            cold = time.perf_counter() - t
        except OSError:
            pass
    with SessionStore(db, readonly=True) as store:
        t = time.perf_counter()
        ok = store.verify_session(sid).ok
        verify = time.perf_counter() - t
        t = time.perf_counter()
        damage = store.integrity_check()
        full = time.perf_counter() - t
    size = db.stat().st_size / 2 ** 20
    print(f"{args.hours:g}-hour session, {size:.0f} MB file: quick_check at opening {min(warm):.2f} s warm"
          + (f", {cold:.2f} s cold" if cold is not None else "") + f"; seal at closing {seal:.2f} s; "
          f"vigil verify SESSION {verify:.2f} s (ok: {ok}); integrity_check {full:.2f} s (ok: {not damage})")
    return 0 if ok and not damage else 1


if __name__ == "__main__":
    sys.exit(main())
