"""A clock a test drives: monotonic seconds it advances by hand, and a wall clock it can step."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from drivers.timebase import Timeline

START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


class SteppedClock:
    """``mono`` advances only by :meth:`advance`; the wall clock is ``START + mono + jump``, where
    :meth:`jump` steps it as an administrator or NTP would."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.step = timedelta(0)

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.mono - 1000.0) + self.step

    def advance(self, seconds: float) -> None:
        self.mono += seconds

    def jump(self, seconds: float) -> None:
        self.step += timedelta(seconds=seconds)

    def timeline(self) -> Timeline:
        return Timeline(monotonic=self.monotonic, wall=self.wall)
