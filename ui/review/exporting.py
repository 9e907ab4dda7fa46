"""Exports from the review window on a worker thread, with progress and cancel (issue 10 §4).

:class:`ExportJob` runs the export in a child process (:func:`monitor.export.child.export_in_child`:
its own interpreter, so its work never takes the interpreter lock from the window's thread; the
clinic record's exports run on the job's thread), watched from a thread of its own (so the window,
and the recording if this Vigil monitors, never wait for it), and reports through Qt signals, which
reach the window on its thread:
``progressed(fraction)`` as the writer reads the session, ``ended()`` once the file is written, the
export refused or cancelled. :meth:`ExportJob.cancel` stops the writer at its next read; a cancelled
or refused export leaves no file.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Signal

from monitor.export import ExportCancelled, ExportError
from monitor.export.child import export_in_child

__all__ = ["ExportJob"]


class ExportJob(QObject):
    """One export of session ``session_id`` of ``records`` as ``fmt`` to ``path`` (see the module
    docstring). After ``ended``: :attr:`result` is the file written, or None with :attr:`error` (the
    refusal; an :class:`~monitor.export.ExportCancelled` when cancelled)."""

    progressed = Signal(float)
    ended = Signal()
    _finished = Signal()

    def __init__(self, records: Any, session_id: int, fmt: str, path: str | Path, *, deidentify: bool,
                 overwrite: bool = False, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.fmt, self.path = fmt, Path(path)
        self.result: Path | None = None
        self.error: ExportError | None = None
        #: True once the job has ended and its ``ended`` signal was sent (on the window's thread).
        self.done = False
        self._cancel = threading.Event()
        self._args = (records, session_id, fmt, path, deidentify, overwrite)
        self._finished.connect(self._on_finished)
        self._thread = threading.Thread(target=self._run, name=f"vigil export {fmt}", daemon=True)

    @property
    def cancelled(self) -> bool:
        """True when the export ended because it was cancelled."""
        return isinstance(self.error, ExportCancelled)

    def start(self) -> None:
        """Start exporting on the worker thread."""
        self._thread.start()

    def cancel(self) -> None:
        """Ask the export to stop at its next read (no file is left)."""
        self._cancel.set()

    def _run(self) -> None:
        records, session_id, fmt, path, deidentify, overwrite = self._args
        try:
            self.result = export_in_child(records, session_id, fmt, path, deidentify=deidentify, overwrite=overwrite,
                                          progress=self.progressed.emit, cancel=self._cancel)
        except ExportError as exc:
            self.error = exc
        except Exception as exc:  # a bug must still end the job, with a message
            self.error = ExportError(f"the {fmt} export failed: {exc}")
        self._finished.emit()

    def _on_finished(self) -> None:
        self.done = True
        self.ended.emit()

    def wait(self, timeout: float | None = None) -> Path | None:
        """Block until the job has ended (processing Qt events, so ``ended`` is delivered) and
        return :attr:`result`: for scripts, tests and benchmarks, never for the window itself."""
        self._thread.join(timeout)
        while not self.done and not self._thread.is_alive():
            QCoreApplication.processEvents()
        return self.result
