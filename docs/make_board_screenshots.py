"""The clinic board's screenshots in docs/screenshots/: 4, 12 and 20 chairs, one in HIGH alarm and
one offline (its last will), under a real window manager.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/make_board_screenshots.py [WIDTHxHEIGHT]

Starts openbox on the Xvfb display, feeds the board window the messages chairs would publish
(the simulated clinic below), and saves the whole screen.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtWidgets import QApplication  # noqa: E402

from monitor.board.messages import (  # noqa: E402
    AlarmInfo, AlarmsMessage, SessionInfo, SessionMessage, StatusMessage, VitalsMessage, chair_topic, encode,
)
from monitor.board.model import BoardModel  # noqa: E402
from monitor.staff import Actor, Role  # noqa: E402
from ui.board.window import BoardWindow  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
INITIALS = ["A.L.", "B.K.", "C.M.", "D.R.", "E.S.", "F.T.", "G.W.", "H.N.", "J.P.", "K.O.",
            "L.V.", "M.D.", "N.H.", "O.B.", "P.Q.", "R.E.", "S.G.", "T.Y.", "U.I.", "V.Z."]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def feed(window: BoardWindow, clock: Clock, chairs: int) -> None:
    rng = random.Random(chairs)
    names = [f"chair-{n}" for n in range(1, chairs + 1)]
    high, offline = names[2 % chairs], names[-1]
    start = clock.now

    def send(name: str, message) -> None:
        window.receive(chair_topic("clinic", name, message.kind), encode(message))

    window.inbox.connection_changed.emit(True, "connected")
    for i, name in enumerate(names):
        send(name, StatusMessage(chair=name, t=start, state="online", version="0.1.0"))
        phase = ("infusion", "recovery", "baseline")[i % 3]
        send(name, SessionMessage(chair=name, t=start, session=SessionInfo(
            session_id=100 + i, patient_initials=INITIALS[i % len(INITIALS)], protocol="ketamine-iv", phase=phase,
            opened_at=start - timedelta(minutes=10 + 3 * i), elapsed_s=(10 + 3 * i) * 60.0,
            dose_delivered_mg=20.0, dose_planned_mg=35.0)))
    base = {name: (rng.uniform(95, 99), rng.uniform(62, 88), rng.uniform(12, 18)) for name in names}
    for second in range(0, 300, 5):   # five minutes of numerics (a trend on every tile)
        clock.now = start + timedelta(seconds=second)
        for name in names:
            if name == offline and second > 240:
                continue
            spo2, pr, rr = base[name]
            if name == high and second > 200:
                spo2 = 97 - (second - 200) * 0.13
            send(name, VitalsMessage(chair=name, t=clock.now, numerics={
                "spo2": {"value": round(spo2 + rng.uniform(-0.6, 0.6)), "unit": "%", "t": clock.now},
                "pr": {"value": round(pr + rng.uniform(-2, 2)), "unit": "/min", "t": clock.now},
                "rr": {"value": round(rr), "unit": "/min", "t": clock.now},
                "etco2": {"value": 38, "unit": "mmHg", "t": clock.now},
                "nibp_sys": {"value": 128 + i_of(name) % 9, "unit": "mmHg", "t": start},
                "nibp_dia": {"value": 78 + i_of(name) % 5, "unit": "mmHg", "t": start}}))
    now = clock.now
    send(high, AlarmsMessage(chair=high, t=now, seq=4, visual_priority="HIGH", audio_priority="HIGH", alarms=(
        AlarmInfo(id=7, condition="spo2_low", label="SpO2 low", text="SpO2 low 85% (limit 88)", kind="physiological",
                  priority="HIGH", since=now - timedelta(seconds=40), value=85, limit=88),)))
    if chairs > 4:
        other = names[5]
        send(other, AlarmsMessage(chair=other, t=now, seq=2, visual_priority="LOW", alarms=(
            AlarmInfo(id=3, condition="nibp_high", label="NIBP high", text="NIBP high 162 mmHg (limit 160)",
                      kind="physiological", priority="LOW", since=now, value=162, limit=160),)))
    send(offline, StatusMessage(chair=offline, t=start, state="offline", reason="connection lost", version="0.1.0"))


def i_of(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def main() -> int:
    size = sys.argv[1] if len(sys.argv) > 1 else "1920x1080"
    suffix = "" if size == "1920x1080" else f"_{size}"
    wm = subprocess.Popen(["openbox"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if shutil.which("openbox") else None
    try:
        time.sleep(0.5)
        app = QApplication(sys.argv[:1])
        for chairs in (4, 12, 20):
            clock = Clock()
            window = BoardWindow(BoardModel("clinic"), None, user=Actor(username="cn", display_name="Carla Nunes",
                                                                         role=Role.CHARGE_NURSE), audio=False, clock=clock)
            window.showMaximized()
            for _ in range(20):
                app.processEvents()
                time.sleep(0.02)
            feed(window, clock, chairs)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                app.processEvents()
                time.sleep(0.02)
            window.refresh()
            app.processEvents()
            path = OUT / f"board_{chairs}_chairs{suffix}.png"
            app.primaryScreen().grabWindow(0).save(str(path))
            print(path)
            window.close()
            app.processEvents()
    finally:
        if wm is not None:
            wm.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
