"""One export in a child process, for a window that must keep its frames while it runs.

CPython runs one thread's Python code at a time: an export on a worker thread of the window's own
process took the interpreter lock from the window's thread for half of every slice, so the
monitoring window's frames (and the review's) took twice as long and stood still for up to 130 ms
while a 12-hour session was exported. In a child process the export has its own interpreter (and
the second core).

:func:`export_in_child` starts ``python -m monitor.export.child`` on the chair's database file
(opened read-only: the recording goes on writing it) and speaks with it in JSON lines: the child
reports ``{"progress": f}`` and ends with ``{"result": path}`` or ``{"error": message, "kind":
class name}``; the parent asks it to stop with a ``cancel`` line, and the child stops as well when
its standard input closes (the parent has gone), leaving no file either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor.export.atomic import DestinationExists
from monitor.export.errors import ExportCancelled, ExportError

__all__ = ["export_in_child"]

#: Errors the child reports by class name, raised again as that class here.
_KINDS: dict[str, type[ExportError]] = {"ExportCancelled": ExportCancelled, "DestinationExists": DestinationExists}
#: The smallest progress step the child reports (a fraction of the export).
_PROGRESS_STEP = 0.01


def export_in_child(store: Any, session_id: int, fmt: str, out_path: str | os.PathLike[str], *,
                    deidentify: bool = False, overwrite: bool = False,
                    progress: Callable[[float], None] | None = None,
                    cancel: threading.Event | None = None) -> Path:
    """Export session ``session_id`` of ``store`` as ``fmt`` to ``out_path`` with
    :func:`monitor.export.export_session`'s options, refusals and messages, in a child process when
    ``store`` (or the ``Records`` over it) is a database file, else on this thread (the clinic
    record's reader); return the path written. ``progress(fraction)`` is called on this thread;
    once ``cancel`` is set the export stops at its next read (:class:`ExportCancelled`, no file).
    A child that dies without a word raises :class:`ExportError` with the last line it wrote to stderr."""
    from monitor.export import export_session
    from monitor.store import SessionStore

    store = getattr(store, "store", store)
    if not isinstance(store, SessionStore):
        return export_session(store, session_id, fmt, out_path, deidentify=deidentify, overwrite=overwrite,
                              progress=progress, cancel=cancel)
    database = store.path
    request = {"database": str(database), "session": int(session_id), "format": fmt, "out": str(out_path),
               "deidentify": bool(deidentify), "overwrite": bool(overwrite)}
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    child = subprocess.Popen([sys.executable, "-m", "monitor.export.child", json.dumps(request)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    stdin = child.stdin
    ended = threading.Event()

    def ask_to_stop() -> None:   # on its own thread: the reading below must not wait for it
        while not ended.wait(0.1):
            if cancel is not None and cancel.is_set():
                try:
                    stdin.write("cancel\n")
                    stdin.flush()
                except (BrokenPipeError, ValueError, OSError):
                    pass
                return

    stopper = threading.Thread(target=ask_to_stop, name="vigil export cancel", daemon=True)
    stopper.start()
    outcome: dict[str, Any] = {}
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(child.stderr.read() if child.stderr else ""), daemon=True)
    reader.start()
    try:
        for line in child.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "progress" in message:
                if progress is not None:
                    progress(float(message["progress"]))
            else:
                outcome = message
        child.wait()
    finally:
        ended.set()
        if child.poll() is None:
            child.kill()
            child.wait()
        try:
            stdin.close()
        except OSError:
            pass
        reader.join(5)
    if "result" in outcome:
        return Path(outcome["result"])
    if "error" in outcome:
        raise _KINDS.get(str(outcome.get("kind")), ExportError)(str(outcome["error"]))
    detail = "".join(errors).strip().splitlines()[-1:] or ["no message"]
    raise ExportError(f"the {fmt} export of session {session_id} failed: the export process ended with code "
                      f"{child.returncode} ({detail[0]})")


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """The child: one export as ``argv[0]`` (JSON) asks; see the module docstring."""
    from monitor.export import export_session
    from monitor.store import SessionStore

    request = json.loads(argv[0])
    cancel = threading.Event()

    def listen() -> None:   # a "cancel" line, or the parent gone (end of input)
        for line in sys.stdin:
            if line.strip() == "cancel":
                break
        cancel.set()

    threading.Thread(target=listen, name="cancel", daemon=True).start()
    reported = [-1.0]

    def report(fraction: float) -> None:
        if fraction >= 1.0 or fraction - reported[0] >= _PROGRESS_STEP:
            reported[0] = fraction
            _say({"progress": fraction})

    try:
        # the window's store is already checked (quick_check at its open); this opens it again to read
        store = SessionStore(request["database"], readonly=True, check_integrity=False)
    except Exception as exc:
        _say({"error": f"the database cannot be read for the export: {exc}", "kind": "ExportError"})
        return 1
    try:
        path = export_session(store, request["session"], request["format"], request["out"],
                              deidentify=request["deidentify"], overwrite=request["overwrite"], progress=report,
                              cancel=cancel)
    except ExportError as exc:
        _say({"error": str(exc), "kind": type(exc).__name__})
        return 1
    except Exception as exc:  # a bug must still end the export with a message
        _say({"error": f"the {request['format']} export failed: {exc}", "kind": "ExportError"})
        return 1
    finally:
        store.close()
    _say({"result": str(path)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
