"""Vigil's timeline: durations on the monotonic clock, the wall clock only as a label.

Every time Vigil stamps on live data (a sample's ``sample_time``, an alarm's start, a staff
action, the end of ``vigil record --duration``) is a point on one :class:`Timeline`: the wall
clock read **once**, when the timeline was made, plus the monotonic seconds elapsed since. Two
points on it are therefore exactly as far apart as the seconds that really passed between them,
whatever happens to the computer's clock meanwhile (an administrator setting it by hand, NTP
stepping it, a daylight-saving bug): a 15-s alarm delay lasts 15 s, a 2-min audio pause 2 min, and
data recorded after the clock was set back an hour never land before data already recorded.

The wall clock is still read, to *notice* a jump: :meth:`Timeline.offset_s` is the wall clock
minus the timeline, 0 at the start; a :class:`JumpDetector` reports a :class:`ClockJump` when that
offset moves by more than :data:`JUMP_THRESHOLD_S` (the pipeline records it in the session, so a
reader can turn any stored time back into what the wall clock said: wall = time + offset in force).
The data are never rewritten. A new process starts a new timeline from the wall clock of the
moment (the record's resume rule keeps a resumed session's times increasing, see
``monitor.app.recorder``).

One timeline per process (:func:`default_timeline`), so that every chair's data share one time
base; tests make their own with an injected ``monotonic`` and ``wall``.

Test seam (documented, read nowhere else): the environment variable ``VIGIL_TEST_CLOCK_JUMP`` =
``AFTER_S:JUMP_S`` (e.g. ``2:-3600``) makes :func:`wall_clock` jump by ``JUMP_S`` seconds once
``AFTER_S`` monotonic seconds have passed since this module was imported: the only way a test can
step a subprocess's clock without root. Unset (always, in use), :func:`wall_clock` is the system
clock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

__all__ = ["JUMP_THRESHOLD_S", "TEST_CLOCK_ENV", "ClockJump", "JumpDetector", "Timeline", "default_timeline",
           "wall_clock"]

#: A change of the wall clock against the timeline larger than this (seconds) is a clock jump
#: (NTP slews far less than this; a step, a manual setting or a suspended machine is more).
JUMP_THRESHOLD_S = 2.0
#: The test seam's environment variable (see the module docstring).
TEST_CLOCK_ENV = "VIGIL_TEST_CLOCK_JUMP"


def _test_jump(spec: str | None) -> tuple[float, float] | None:
    """``AFTER_S:JUMP_S`` → (after, jump); None when unset. A malformed value raises ValueError, so
    a test that mistypes it fails instead of running on the real clock."""
    if not spec:
        return None
    after, sep, jump = spec.partition(":")
    if not sep:
        raise ValueError(f"{TEST_CLOCK_ENV} must be AFTER_S:JUMP_S, not {spec!r}")
    return float(after), float(jump)


_JUMP = _test_jump(os.environ.get(TEST_CLOCK_ENV))
_IMPORTED = time.monotonic()


def wall_clock() -> datetime:
    """The computer's clock as an aware UTC datetime (with the test seam applied, when set)."""
    now = datetime.now(timezone.utc)
    if _JUMP is not None and time.monotonic() - _IMPORTED >= _JUMP[0]:
        now += timedelta(seconds=_JUMP[1])
    return now


class Timeline:
    """Labels (aware UTC) for monotonic instants: ``label = wall0 + (monotonic − mono0)``.

    ``monotonic``: seconds that never jump (default :func:`time.monotonic`); ``wall``: the wall clock
    (default :func:`wall_clock`); both are read once at construction to anchor the timeline. Safe
    to use from any thread.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = wall_clock) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self._mono0 = monotonic()
        self._wall0 = wall()
        if self._wall0.tzinfo is None:
            raise ValueError("the wall clock must give aware (UTC) datetimes")

    def monotonic(self) -> float:
        """Seconds on the monotonic clock (for durations; meaningless as a date)."""
        return self._monotonic()

    def now(self) -> datetime:
        """Now on the timeline (aware UTC)."""
        return self.at(self._monotonic())

    def at(self, monotonic: float) -> datetime:
        """The label of the monotonic instant ``monotonic`` (seconds, as :meth:`monotonic` gives)."""
        return self._wall0 + timedelta(seconds=monotonic - self._mono0)

    def offset_s(self) -> float:
        """The wall clock minus the timeline now, in seconds (0 until the wall clock is stepped)."""
        mono = self._monotonic()
        return (self._wall() - self.at(mono)).total_seconds()


@dataclass(frozen=True)
class ClockJump:
    """The wall clock moved against the timeline: at ``t`` (on the timeline) its offset went from
    ``offset_before_s`` to ``offset_after_s`` (wall clock minus timeline, seconds)."""

    t: datetime
    offset_before_s: float
    offset_after_s: float

    @property
    def jump_s(self) -> float:
        """How far the wall clock jumped (seconds; negative: set back)."""
        return self.offset_after_s - self.offset_before_s


class JumpDetector:
    """Watches one :class:`Timeline` for wall-clock jumps; each consumer keeps its own detector.

    :meth:`check` (call it a few times a second) returns a :class:`ClockJump` when the offset moved
    by more than ``threshold_s`` since the last jump it reported (or since it was made), else None.
    """

    def __init__(self, timeline: Timeline, threshold_s: float = JUMP_THRESHOLD_S) -> None:
        self.timeline = timeline
        self.threshold_s = threshold_s
        self.offset_s = timeline.offset_s()

    def check(self) -> ClockJump | None:
        """A jump since the last check that reported one, or None."""
        offset = self.timeline.offset_s()
        if abs(offset - self.offset_s) <= self.threshold_s:
            return None
        jump = ClockJump(self.timeline.now(), self.offset_s, offset)
        self.offset_s = offset
        return jump


_default: Timeline | None = None
_default_lock = threading.Lock()


def default_timeline() -> Timeline:
    """The process's timeline (made at first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Timeline()
        return _default
