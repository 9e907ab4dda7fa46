#!/usr/bin/env python3
"""Unplug and replug a monitor on a pseudo-terminal: how long until Vigil shows data again, and
what is lost (issue 11, docs/reliability.md).

A Masimo (one line a second) is read through a stable link (``…/by-id/usb-monitor``, as udev makes
under /dev/serial/by-id) that points at a pseudo-terminal. After ``--before`` seconds the cable is
pulled (the pty is closed: reads fail as on a vanished USB adapter); ``--out`` seconds later the
monitor comes back as another pty node and the link is moved to it, as udev does. Printed, per
run: when the loss was reported, the time from the first line the monitor sent after replugging
to the first line Vigil emitted, and lines sent but never emitted (before the pull, after it).

Run: ``.venv/bin/python tools/measure_reconnect.py [--runs N] [--out S]``.
"""

from __future__ import annotations

import argparse
import os
import pty
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.acquisition import AcquisitionWorker, LinkState  # noqa: E402
from drivers.masimo import encode_line  # noqa: E402
from drivers.model import DeviceCondition, NumericObservation  # noqa: E402
from drivers.transport import open_link  # noqa: E402

T0 = datetime(2026, 3, 2, 9, 0)


class Listener:
    """Keeps when each line (by its device second) was emitted, and when the loss was reported."""

    def __init__(self) -> None:
        self.emitted: dict[int, float] = {}
        self.lost_at: float | None = None
        self.lock = threading.Lock()

    def items_received(self, items: list) -> None:
        now = time.monotonic()
        with self.lock:
            for item in items:
                if isinstance(item, NumericObservation) and item.vital == "spo2" and item.device_time is not None:
                    self.emitted.setdefault(int((item.device_time - T0).total_seconds()), now)
                elif isinstance(item, DeviceCondition) and item.code == "connection_lost" and item.active:
                    self.lost_at = self.lost_at or now

    def link_changed(self, state: LinkState, detail: str, attempt: int) -> None:
        pass


def run(before: float, out: float, after: float) -> dict[str, float]:
    """One unplug/replug; the figures of :func:`main`'s table."""
    folder = Path(tempfile.mkdtemp(prefix="vigil-replug-"))
    stable = folder / "usb-monitor"
    master, slave = pty.openpty()
    stable.symlink_to(os.ttyname(slave))
    listener = Listener()
    worker = AcquisitionWorker(open_link(f"{stable}?protocol=masimo"), [listener])
    worker.start()
    time.sleep(0.5)
    sent: dict[int, float] = {}
    second = 0

    def send(fd: int, until: float) -> None:
        nonlocal second
        while time.monotonic() < until:
            os.write(fd, encode_line({"spo2": 97.0, "pr": 70.0}, device_time=T0 + timedelta(seconds=second)))
            sent[second] = time.monotonic()
            second += 1
            time.sleep(1.0)

    send(master, time.monotonic() + before)
    last_before = second - 1
    pulled = time.monotonic()
    os.close(master)
    os.close(slave)                           # the adapter vanishes
    time.sleep(out)
    master, slave = pty.openpty()              # it comes back as another node; udev moves the link
    stable.unlink()
    stable.symlink_to(os.ttyname(slave))
    first_after = second
    send(master, time.monotonic() + after)
    worker.stop(2.0)
    os.close(master)
    os.close(slave)
    with listener.lock:
        emitted = dict(listener.emitted)
        lost_at = listener.lost_at
    back = min((emitted[s] for s in emitted if s >= first_after), default=float("nan"))
    return {
        "loss_reported_s": (lost_at - pulled) if lost_at else float("nan"),
        "back_s": back - sent[first_after],
        "lost_before": sum(1 for s in range(last_before + 1) if s not in emitted),
        "lost_after": sum(1 for s in range(first_after, second) if s not in emitted and sent[s] < back),
        "sent_after": second - first_after,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", type=float, default=6.0, help="seconds of data before the pull")
    parser.add_argument("--out", type=float, default=5.0, help="seconds unplugged")
    parser.add_argument("--after", type=float, default=12.0, help="seconds of data after the replug")
    args = parser.parse_args(argv)
    results = [run(args.before, args.out, args.after) for _ in range(args.runs)]
    for i, r in enumerate(results, 1):
        print(f"run {i}: loss reported {r['loss_reported_s']:.2f} s after the pull; data again "
              f"{r['back_s']:.2f} s after the monitor's first line; lines lost: {r['lost_before']} before the "
              f"pull, {r['lost_after']} of {r['sent_after']} after the replug")
    print(f"median: data again {statistics.median(r['back_s'] for r in results):.2f} s after replugging "
          f"({args.out:g} s unplugged)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
