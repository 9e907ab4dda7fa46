"""Axes of the review plots: positions are seconds from the session's start; labels are local clock
times, with seconds (and tenths) when zoomed in far enough to need them."""

from __future__ import annotations

import math
from datetime import datetime

from ui.trends import PictureAxis

#: Tick steps (seconds) the clock axis may use.
_STEPS_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
            10800, 21600)
#: Room for one label, pixels.
_LABEL_PX = 72.0


def clock_step(span: float, pixels: float) -> float:
    """The smallest step of :data:`_STEPS_S` giving at most one label per :data:`_LABEL_PX` pixels."""
    most = max(1.0, pixels / _LABEL_PX)
    for step in _STEPS_S:
        if span / step <= most:
            return float(step)
    return float(_STEPS_S[-1] * math.ceil(span / most / _STEPS_S[-1]))


class ClockAxis(PictureAxis):
    """Local clock time of positions given in seconds from ``origin`` (epoch seconds), with ticks
    on round clock times: "14:05", "14:05:30", "14:05:30.2" (drawn into one picture for its life,
    as the live trends' axes: panning a review made a new one per range)."""

    def __init__(self, orientation: str = "bottom", origin: float = 0.0) -> None:
        super().__init__(orientation)
        self.origin = origin
        local = datetime.fromtimestamp(origin).astimezone()
        self._offset = local.utcoffset().total_seconds() if local.utcoffset() else 0.0

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:  # noqa: N802
        if not maxVal > minVal:
            return []
        step = clock_step(maxVal - minVal, size)
        return [(step, (-(self.origin + self._offset)) % step)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        fmt = "%H:%M" if spacing >= 60 else "%H:%M:%S"
        out = []
        digits = 0 if spacing >= 1 else 1 if spacing >= 0.1 else 2
        for v in values:
            ts = round(self.origin + v, digits)
            whole = math.floor(ts)
            text = datetime.fromtimestamp(whole).strftime(fmt)
            if digits:
                text += f"{ts - whole:.{digits}f}"[1:]
            out.append(text)
        return out
