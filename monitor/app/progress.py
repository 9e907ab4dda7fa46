"""How far a long read of a session has come (an export on a worker thread), and the way to stop it."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress"]


class Progress:
    """How far a long read of a session has come, and the way to stop it.

    The view's bulk reads call :meth:`at` with the session time (epoch s, as exported) they have
    reached; ``report(fraction)`` (0…1, never going back) hears of it. A writer that reads the session
    several times says so with :meth:`begin_pass` (pass ``number`` of ``of``), so the fraction covers
    every pass. When ``cancelled()`` turns true, the next :meth:`at` raises ``stop()`` (the caller's
    exception: an export's :class:`~monitor.export.ExportCancelled`).
    """

    def __init__(self, start: float = 0.0, end: float = 1.0, report: Callable[[float], None] | None = None,
                 cancelled: Callable[[], bool] | None = None,
                 stop: Callable[[], Exception] = lambda: InterruptedError("cancelled")) -> None:
        self.start, self.span = start, max(end - start, 1e-9)
        self.report, self.cancelled, self.stop = report, cancelled, stop
        self.number, self.of, self.done = 0, 1, 0.0

    def begin_pass(self, number: int, of: int) -> None:
        """The writer starts pass ``number`` (from 0) of ``of``."""
        self.number, self.of = number, max(of, 1)

    def at(self, t: float | None = None) -> None:
        """The read has reached session time ``t`` (None: only check for a cancel)."""
        if self.cancelled is not None and self.cancelled():
            raise self.stop()
        if t is None or self.report is None:
            return
        fraction = (self.number + min(max((t - self.start) / self.span, 0.0), 1.0)) / self.of
        if fraction > self.done + 0.001:
            self.done = fraction
            self.report(min(fraction, 1.0))
