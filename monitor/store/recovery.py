"""The recovery file: what a recording could not write, saved so that nothing is lost silently.

When writing to the database fails to the end of a recording (a full or failing disk, a file made
read-only), :class:`monitor.store.StoreWriter` gives up at :meth:`~monitor.store.StoreWriter.stop`
and saves its backlog with :func:`save_backlog`: a JSON-lines file, owner-only, in the first of
these folders that takes it — beside the database, the user data folder, the temporary folder,
the home folder. ``vigil recover FILE [--db PATH]`` (:func:`replay`) writes it into the database
once the cause is fixed, in one transaction and in the order it was queued (a session's closing
last: the device's data that arrived while the closing waited still belong to the session), then
renames it ``FILE.replayed``.

Format: a first line ``{"format": "vigil-recovery", "version": 1, "database": …, "saved_at": …,
"error": …, "counts": {…}}``, then one line per queued item in order:

* ``{"op": "observations", "session": ID, "items": [NumericObservation as JSON, …]}``;
* ``{"op": "waveforms", "session": ID, "items": [{…, "samples": base64 of float32 LE}, …]}``;
* ``{"op": "conditions", "session": ID, "items": [DeviceCondition as JSON, …]}``;
* ``{"op": "call", "method": NAME, "args": […], "kwargs": {…}}`` for a store method (datetimes as
  ``{"$datetime": ISO}``), replayed by name among :data:`REPLAYABLE`;
* ``{"op": "alarm_event", "session": ID, "event": {…}}`` for the recorder's alarm log (an alarm
  started, escalated, ended, acknowledged; audio paused): replayed into the session's alarm log;
* ``{"op": "call", "method": QUALNAME, "replayable": false, "text": …}`` for any other call:
  described for a person, not replayed — the replay reports them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from drivers.model import DeviceCondition, NumericObservation, WaveformChunk
from monitor.store.codec import _json_default
from monitor.store.records import ReadOnlyError, StoreError

log = logging.getLogger("monitor.store")

__all__ = ["FORMAT", "REPLAYABLE", "Backlog", "RecoveryError", "ReplayResult", "save_backlog", "replay"]

FORMAT = "vigil-recovery"
#: Store methods a recovery file may replay.
REPLAYABLE = frozenset({"add_entry", "set_phase", "set_baseline", "set_plan", "heartbeat", "close_session",
                        "audit", "add_gap", "alarm_action", "alarm_started", "alarm_ended", "alarm_escalated"})


#: The fields of an alarm event (:class:`monitor.alarms.engine.AlarmEvent`) a recovery file keeps.
_ALARM_FIELDS = ("event", "t", "condition", "priority", "value", "limit", "alarm_id", "label", "kind", "message",
                 "user", "detail")


class RecoveryError(StoreError):
    """A recovery file that cannot be read or replayed (the message says why; nothing was written)."""


@dataclass
class Backlog:
    """What a writer could not write: how many items of each kind, and where they were saved
    (``path`` None when no folder took the file: then ``error`` says why, and the data are lost)."""

    counts: dict[str, int]
    path: Path | None
    error: str
    save_error: str | None = None

    def message(self) -> str:
        """A one-paragraph account for the person at the chair (what was not written, where it is)."""
        what = ", ".join(f"{n} {kind}" for kind, n in self.counts.items() if n) or "nothing"
        if self.path is None:
            return (f"writing to the database failed to the end ({self.error}); not written: {what}. The backlog "
                    f"could not be saved either ({self.save_error}): it is lost")
        return (f"writing to the database failed to the end ({self.error}); not written: {what}. Saved in "
                f"{self.path}: once the cause is fixed, run `vigil recover {self.path}` to write it into the database")


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return _encode(_json_default(value))


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$datetime"}:
            return datetime.fromisoformat(value["$datetime"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _line(kind: str, session_id: int | None, items: list[Any], fn: Callable[..., Any] | None,
          args: tuple[Any, ...], kwargs: dict[str, Any] | None, store: Any) -> dict[str, Any]:
    if kind == "obs":
        return {"op": "observations", "session": session_id, "items": [o.model_dump(mode="json") for o in items]}
    if kind == "cond":
        return {"op": "conditions", "session": session_id, "items": [c.model_dump(mode="json") for c in items]}
    if kind == "wave":
        return {"op": "waveforms", "session": session_id, "items": [
            {**w.model_dump(mode="json", exclude={"samples"}),
             "samples": base64.b64encode(np.ascontiguousarray(w.samples, dtype="<f4").tobytes()).decode()}
            for w in items]}
    name = getattr(fn, "__name__", repr(fn))
    if getattr(fn, "__self__", None) is store and name in REPLAYABLE:
        return {"op": "call", "method": name, "args": _encode(list(args)), "kwargs": _encode(kwargs or {})}
    session = getattr(getattr(fn, "__self__", None), "session_id", None)
    if len(args) == 1 and all(hasattr(args[0], f) for f in _ALARM_FIELDS) and isinstance(session, int):
        event = args[0]  # the recorder logging an alarm event
        return {"op": "alarm_event", "session": session,
                "event": _encode({f: getattr(event, f) for f in _ALARM_FIELDS})}
    text = f"{getattr(fn, '__qualname__', name)}{tuple(args)!r}"
    return {"op": "call", "method": getattr(fn, "__qualname__", name), "replayable": False, "text": text[:4000]}


def _folders(db: Path) -> list[Path]:
    import platformdirs

    return [db.parent, Path(platformdirs.user_data_dir("Vigil", appauthor=False)), Path(tempfile.gettempdir()),
            Path.home()]


def save_backlog(store: Any, ops: Iterable[tuple[str, int | None, list[Any], Callable[..., Any] | None,
                                                 tuple[Any, ...], dict[str, Any] | None]],
                 error: BaseException | None) -> Backlog:
    """Save a writer's backlog — ``(kind, session_id, items, fn, args, kwargs)`` in queue order — to a
    recovery file (see the module docstring) and say where. Never raises for a folder that refuses
    the file: the next one is tried, and a :class:`Backlog` with ``path`` None reports the loss."""
    db = Path(store.real_path)
    lines = [_line(*op, store=store) for op in ops]
    counts = {"observations": 0, "waveform chunks": 0, "device conditions": 0, "recorded actions": 0}
    for line in lines:
        key = {"observations": "observations", "waveforms": "waveform chunks", "conditions": "device conditions"}.get(
            line["op"], "recorded actions")
        counts[key] += len(line["items"]) if "items" in line else 1
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    head = {"format": FORMAT, "version": 1, "database": str(db), "saved_at": stamp, "error": str(error),
            "counts": counts}
    body = "".join(json.dumps(x, separators=(",", ":"), allow_nan=False) + "\n" for x in [head, *lines])
    problems = []
    for folder in _folders(db):
        path = folder / f"vigil-recovery-{db.name}-{stamp}-{os.getpid()}.jsonl"
        old = os.umask(0o077)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            problems.append(f"{folder}: {exc.strerror or exc}")
            try:
                path.unlink()
            except OSError:
                pass
            continue
        finally:
            os.umask(old)
        log.error("store writer gave up: %d item(s) saved to %s", len(lines), path)
        return Backlog(counts, path, str(error))
    log.critical("store writer gave up and could not save its backlog anywhere: %s", "; ".join(problems))
    return Backlog(counts, None, str(error), "; ".join(problems))


@dataclass
class ReplayResult:
    """What :func:`replay` wrote (counts as in the file's header) and what it could not (sentences)."""

    written: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """"written: 120 observations, 3 recorded actions" (and how many were not)."""
        what = ", ".join(f"{n} {k}" for k, n in self.written.items() if n) or "nothing"
        return f"written: {what}" + (f"; {len(self.refused)} not written" if self.refused else "")


def _objects(line: dict[str, Any]) -> list[Any]:
    op = line["op"]
    if op == "observations":
        return [NumericObservation.model_validate(x) for x in line["items"]]
    if op == "conditions":
        return [DeviceCondition.model_validate(x) for x in line["items"]]
    return [WaveformChunk(**{k: v for k, v in x.items() if k != "samples"},
                          samples=np.frombuffer(base64.b64decode(x["samples"]), dtype="<f4").astype(np.float32))
            for x in line["items"]]


def replay(store: Any, path: str | os.PathLike[str]) -> ReplayResult:
    """Write recovery file ``path`` into ``store`` (a read-write :class:`SessionStore`) in one
    transaction and rename it ``<path>.replayed``. Items the store refuses for good (a session
    closed meanwhile; a call that cannot be replayed) are listed in ``refused``; a file that is not
    a recovery file, or a failure to write, raises :class:`RecoveryError` with nothing written."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
        lines = [json.loads(x) for x in text.splitlines() if x.strip()]
    except (OSError, ValueError) as exc:
        raise RecoveryError(f"{source} cannot be read: {exc}") from None
    if not lines or not isinstance(lines[0], dict) or lines[0].get("format") != FORMAT:
        raise RecoveryError(f"{source} is not a Vigil recovery file")
    result = ReplayResult({k: 0 for k in lines[0].get("counts", {})})
    add = {"observations": store.add_observations, "waveforms": store.add_waveforms,
           "conditions": store.add_conditions}
    names = {"observations": "observations", "waveforms": "waveform chunks", "conditions": "device conditions"}
    try:
        numbered = list(enumerate(lines[1:], start=2))
        # a closing goes last: what the device sent while the closing waited belongs to the session
        numbered.sort(key=lambda x: x[1].get("method") == "close_session")
        alarm_rows: dict[int, int] = {}
        with store.transaction():
            for n, line in numbered:
                op = line.get("op")
                try:
                    if op in add:
                        with store.transaction():
                            add[op](line["session"], _objects(line))
                        result.written[names[op]] = result.written.get(names[op], 0) + len(line["items"])
                    elif op == "alarm_event":
                        with store.transaction():
                            _replay_alarm(store, line["session"], _decode(line["event"]), alarm_rows)
                        result.written["recorded actions"] = result.written.get("recorded actions", 0) + 1
                    elif op == "call" and line.get("replayable", True) and line.get("method") in REPLAYABLE:
                        with store.transaction():
                            getattr(store, line["method"])(*_decode(line["args"]), **_decode(line["kwargs"]))
                        result.written["recorded actions"] = result.written.get("recorded actions", 0) + 1
                    else:
                        result.refused.append(f"line {n}: {line.get('method') or op} cannot be replayed "
                                              f"({str(line.get('text', ''))[:200]})")
                except (ReadOnlyError, ValueError, TypeError, KeyError) as exc:
                    result.refused.append(f"line {n}: {op} {line.get('method', '')}: {exc}")
    except (StoreError, sqlite3.Error, OSError) as exc:
        raise RecoveryError(f"nothing was written: {exc}") from None
    os.replace(source, source.with_name(source.name + ".replayed"))
    return result


def _replay_alarm(store: Any, sid: int, e: dict[str, Any], rows: dict[int, int]) -> None:
    """One alarm event into the session's alarm log, as the recorder logs it (engine alarm ids are
    mapped to the rows started in this file, else to the session's open row of the condition)."""
    def row() -> int:
        if e["alarm_id"] in rows:
            return rows[e["alarm_id"]]
        found = [a for a in store.alarms(sid) if a.condition == e["condition"] and a.ended_at is None]
        if not found:
            raise ValueError(f"no open {e['condition']} alarm to {e['event'].replace('ed', '')}")
        return int(found[-1].id)
    kind = e["event"]
    priority = str(e["priority"]).upper() if e["priority"] is not None else None
    if isinstance(e["priority"], int):
        priority = ("LOW", "MEDIUM", "HIGH")[e["priority"] - 1]
    if kind == "started":
        rows[e["alarm_id"]] = store.alarm_started(
            sid, condition=e["condition"], kind=e["kind"] or "physiological", priority=priority, started_at=e["t"],
            limit=e["limit"], value=e["value"], message=e["message"] or e["label"])
    elif kind == "escalated":
        store.alarm_escalated(row(), priority, e["t"])
    elif kind == "deescalated":
        store.alarm_action(sid, alarm_id=row(), at=e["t"], action="deescalate", user=e["user"], detail=priority)
    elif kind == "ended":
        store.alarm_ended(row(), e["t"])
    elif kind in ("acknowledged", "reset"):
        store.alarm_action(sid, alarm_id=row(), at=e["t"], action="acknowledge" if kind == "acknowledged" else "reset",
                           user=e["user"], detail=e["condition"])
    elif kind in ("audio_paused", "audio_resumed"):
        action = "audio_pause" if kind == "audio_paused" else "audio_pause_cancel" if e["user"] else "audio_pause_end"
        store.alarm_action(sid, alarm_id=None, at=e["t"], action=action, user=e["user"], detail=e["detail"])
    else:
        raise ValueError(f"unknown alarm event {kind!r}")
