"""The JSON session archive: everything the store holds for one session, and its import into another store.

Format (``"format": "vigil-session-archive"``, ``"version": 1``), one JSON object, UTF-8, keys
sorted, no spaces, one final newline:

* ``session`` — the session row: ``original_id`` (its id in the store it came from), times as
  epoch seconds (``created_at``, ``started_at``, ``ended_at``, ``last_seen``), status, phase,
  protocol, patient, plan, baseline, device, author and signature fields, counters;
* ``staff`` — login → printed name and role, for every login the record mentions (never PINs);
* ``observations`` — ``columns`` and ``rows`` ([t, vital, value, quality bits, device time, unit
  (null = the catalogue's), source]) in stored order;
* ``waveforms`` — the stored blocks bit for bit: channel, t0, rate, n, encoding and ``data``, the
  base64 of the compressed block (byte-shuffled float32 + zlib, see :mod:`monitor.store`);
* ``conditions``, ``entries`` (with ``amends`` and ``reason`` of amendments, and the ``reason`` of late
  entries: entries charted after the session ended, whose payload says ``"late": true``; ids numbered
  from 1 in recorded order), ``alarms`` (ids from 1) and ``alarm_actions``, ``gaps``;
* ``audit`` — the session's rows of the hash-chained audit trail as they were in the original store.

Determinism: no wall-clock field, fixed orders, canonical JSON, so exporting, importing and exporting
again gives the same bytes. An imported session keeps its times, status and signature and is as
read-only as the original; the import itself is recorded in the audit trail (action
``session_imported``, with the original audit rows and staff in its payload), and an export of the
imported session reproduces the archive it came from.

:func:`import_archive` reads the file as a stream, twice (memory stays bounded whatever its size), and
refuses anything that is not such an archive (size, encoding, JSON, format and version, types,
ranges, references between rows, audit hashes and the links between consecutive rows, a record that
differs from its audit rows — opening, entries, closing and the seal of its data
(:mod:`monitor.store.seal`) —, someone who signed or charted but is not among its staff, a record
that does not replay as a session, a session already in the store, a file that changed between the
two readings) with :class:`ExportError`, inside one transaction: a refused archive changes nothing.
The archive carries no MACs (audit keys never leave their computer). A de-identified archive
(``"deidentified": true``) is for research and cannot be imported.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import json
import math
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar, overload

import ijson

from drivers.catalogue import CATALOGUE
from monitor.app.privacy import DEIDENTIFIED, deid_notice, is_coded
from monitor.app.provenance import IMPORT_ACTION, import_marker
from monitor.app.readmodel import SessionView
from monitor.export.errors import ExportError
from monitor.store import (
    ALARM_ACTIONS,
    ALARM_KINDS,
    ENC_F32_SHUFFLE_ZLIB,
    ENC_F32_ZLIB,
    MAX_BLOCK_SECONDS,
    PRIORITIES,
    TABLE_KINDS,
    ReadOnlyError,
    SessionStore,
    StoreError,
    audit_digest,
    decode_samples,
)
from monitor.store.seal import ContentDigest, check_chain_rows, check_record, waveform_row

__all__ = ["FORMAT", "VERSION", "MAX_ARCHIVE_BYTES", "write_archive", "archive_document", "import_archive",
           "canonical_bytes"]

FORMAT = "vigil-session-archive"
VERSION = 1
#: Largest archive :func:`import_archive` reads by default, bytes.
MAX_ARCHIVE_BYTES = 2 * 1024 ** 3
OBS_COLUMNS = ["t", "vital", "value", "quality", "device_time", "unit", "source"]

_MAX_ROWS = 50_000_000
_MAX_ITEMS = 2_000_000
_T_MIN, _T_MAX = 0.0, 4_102_444_800.0  # 1970 … 2100
_V = TypeVar("_V")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def canonical_bytes(doc: Any) -> bytes:
    """The archive's canonical encoding: sorted keys, no spaces, UTF-8, a final newline."""
    return (json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


# ========================================================================================= export
def archive_document(view: SessionView) -> dict[str, Any]:
    """The archive of the session in ``view`` as a JSON-ready dict (see the module docstring). Reads
    the stored rows as they are (exact floats); de-identified archives pass them through the view's
    privacy filter. Holds the whole session: :func:`write_archive` streams the same bytes."""
    doc = _document(view)
    doc["observations"]["rows"] = [row for chunk in _observation_rows(view) for row in chunk]
    doc["waveforms"] = list(_waveforms(view))
    return doc


def _observation_rows(view: SessionView) -> Iterator[list[list[Any]]]:
    """The archive's observation rows, a chunk at a time."""
    view.progress.begin_pass(0, len(view.waveform_channels) + 1)
    for rows in view.iter_observation_rows():
        yield [list(r) for r in zip(rows.t.tolist(), rows.vital, rows.value, rows.quality, rows.device_time,
                                    rows.unit, rows.source)]


def _waveforms(view: SessionView) -> Iterator[dict[str, Any]]:
    """The archive's waveform blocks, one at a time (channel after channel: the rows were the first
    of the passes over the session)."""
    channels = view.waveform_channels
    for number, channel in enumerate(channels, start=1):
        view.progress.begin_pass(number, len(channels) + 1)
        for b in view.iter_waveform_blocks(channel):
            yield {"channel": b.channel, "t0": b.t0, "rate": b.rate, "n": b.n, "enc": b.enc, "source": b.source,
                   "data": base64.b64encode(b.data).decode("ascii")}


def _document(view: SessionView) -> dict[str, Any]:
    """The archive without its bulk: ``observations.rows`` and ``waveforms`` are empty lists."""
    store, sid, p = view.store, view.session_id, view.privacy
    deid = p.deidentified
    raw = store.raw_tables(sid)
    (created_at, started_at, ended_at, last_seen, status, phase, protocol, patient_json, patient_name, patient_ref,
     plan_json, baseline_json, device, created_by, closed_by, close_meaning, signed_name, n_obs,
     n_alarms) = raw["session"][0]
    marker = import_marker(store, sid)
    audit = [{"seq": r[0], "t": r[1], "user": r[2], "session": r[3], "action": r[4], "payload": json.loads(r[5]),
              "prev_hash": r[6], "hash": r[7]} for r in raw["audit"]]
    original_id = store.session_origin(sid).session_id  # the id it has at the chair that recorded it
    if marker is not None and isinstance(marker.payload.get("audit"), list):
        audit = list(marker.payload["audit"]) + [r for r in audit if r["seq"] > marker.seq]
        original_id = marker.payload.get("origin_session_id", sid)

    def user(login: str | None) -> str | None:
        return view.user(login) if deid else login

    def t(value: float | None) -> float | None:
        return p.time(value)

    entry_ids = {r[0]: i for i, r in enumerate(raw["entries"], start=1)}
    alarm_ids = {r[0]: i for i, r in enumerate(raw["alarms"], start=1)}
    entries = [(r, json.loads(r[4])) for r in raw["entries"]]

    logins = {created_by, closed_by} | {r[5] for r in raw["entries"]} | {r[4] for r in raw["alarm_actions"]}
    logins |= {r.get("user") for r in audit}
    for _, payload in entries:
        by = payload.get("by")
        if isinstance(by, dict) and by.get("username"):
            logins.add(str(by["username"]))
    staff = {} if deid else {login: {"display_name": view.staff[login][0], "role": view.staff[login][1]}
                             for login in sorted(x for x in logins if x) if login in view.staff}

    patient = json.loads(patient_json)
    plan = json.loads(plan_json)
    session = {
        "original_id": None if deid else original_id,
        "created_at": t(created_at), "started_at": t(started_at), "ended_at": t(ended_at), "last_seen": t(last_seen),
        "status": status, "phase": phase, "protocol": protocol,
        "patient": {**p.patient_payload(patient), "age": view.patient.age} if deid else patient,
        "patient_name": DEIDENTIFIED if deid else patient_name,
        "patient_ref": None if deid else patient_ref,
        "plan": p.payload(plan) if deid else plan,
        "baseline": None if baseline_json is None else p.payload(json.loads(baseline_json)),
        "device": p.device(device) if deid else device,
        "created_by": user(created_by), "closed_by": user(closed_by),
        "close_meaning": p.meaning(close_meaning) if deid else close_meaning,
        "signed_name": (view.signature.name if view.signature else None) if deid else signed_name,
        "n_observations": n_obs, "n_alarms": n_alarms,
    }

    conditions = [{"t": t(r[0]), "code": r[1], "active": bool(r[2]), "text": "" if deid else r[3],
                   "source": (p.source(r[4]) if deid else r[4]) or ""} for r in raw["conditions"]]
    doc_entries = [{
        "id": entry_ids[r[0]], "t": t(r[1]), "table_kind": r[2], "kind": _kind(r[3]) if deid else r[3],
        "payload": p.payload(payload), "user": user(r[5]),
        "amends": entry_ids.get(r[6]) if r[6] is not None else None,
        "reason": p.text(r[7]) if deid else r[7], "recorded_at": t(r[8]),
    } for r, payload in entries]
    doc_alarms = [{
        "id": alarm_ids[r[0]], "condition": r[1], "kind": r[2], "priority": r[3], "max_priority": r[4],
        "started_at": t(r[5]), "ended_at": t(r[6]), "limit": r[7], "value": r[8],
        "message": r[1].replace("_", " ") if deid else r[9],
    } for r in raw["alarms"]]
    doc_actions = [{
        "alarm": alarm_ids.get(r[1]) if r[1] is not None else None, "t": t(r[2]), "action": r[3],
        "user": user(r[4]), "detail": (r[5] if r[3] in ("escalate", "deescalate") else "") if deid else r[5],
    } for r in raw["alarm_actions"]]
    gaps = [{"start": t(r[0]), "end": t(r[1]), "reason": "not recording" if deid else r[2]} for r in raw["gaps"]]

    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "deidentified": deid,
        "session": session, "staff": staff,
        "observations": {"columns": OBS_COLUMNS, "rows": []},
        "waveforms": [], "conditions": conditions, "entries": doc_entries,
        "alarms": doc_alarms, "alarm_actions": doc_actions, "gaps": gaps,
        "audit": [] if deid else audit,
    }
    if deid:
        doc["notice"] = deid_notice(year_only_dates=False)
    return doc


def _kind(kind: str) -> str:
    """An entry's kind column when de-identified: a type, assessment or event kind or infusion action
    is kept; anything else (a kind a caller made up) becomes "entry"."""
    return kind if any(is_coded(key, kind) for key in ("type", "kind", "action")) else "entry"


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def write_archive(view: SessionView, path: Path, **_: Any) -> None:
    """Write the archive of ``view`` to ``path``: the canonical bytes of :func:`archive_document`,
    written a piece at a time (observation rows a chunk, waveform blocks one at a time), so a long
    session is never held whole. The other formats' options are ignored."""
    doc = _document(view)
    with open(path, "wb") as fh:
        fh.write(b"{")
        for i, key in enumerate(sorted(doc)):
            fh.write((b"," if i else b"") + _canonical(key) + b":")
            if key == "observations":
                fh.write(b'{"columns":' + _canonical(doc[key]["columns"]) + b',"rows":[')
                first = True
                for chunk in _observation_rows(view):
                    if chunk:
                        fh.write((b"" if first else b",") + _canonical(chunk)[1:-1])
                        first = False
                fh.write(b"]}")
            elif key == "waveforms":
                fh.write(b"[")
                for j, block in enumerate(_waveforms(view)):
                    fh.write((b"," if j else b"") + _canonical(block))
                fh.write(b"]")
            else:
                fh.write(_canonical(doc[key]))
        fh.write(b"}\n")


# ========================================================================================= import
class _Bad(Exception):
    """A reason to refuse the archive (message names the place)."""


_MAX_DEPTH = 64


_LARGEST = 2 ** 62
_STRUCTURE = frozenset(("start_map", "start_array", "end_map", "end_array"))


def _check_number(value: float) -> None:
    """Refuse a number no archive holds: not finite, or a whole number beyond 2**62."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _Bad("a number is out of range")
    if isinstance(value, int) and abs(value) > _LARGEST:
        raise _Bad(f"the number {str(value)[:24]}… is too large")


class _Builder:
    """Builds one JSON value from ijson events, refusing what no archive holds: a key twice in one
    object, nesting deeper than 64, numbers that are not finite or beyond 2**62."""

    def __init__(self) -> None:
        self._stack: list[Any] = []
        self._keys: list[str | None] = []
        self.value: Any = None
        self.done = False

    def event(self, event: str, value: Any) -> None:
        if event in ("start_map", "start_array"):
            if len(self._stack) >= _MAX_DEPTH:
                raise _Bad("it is nested too deeply")
            new: Any = {} if event == "start_map" else []
            self._add(new)
            self._stack.append(new)
            self._keys.append(None)
        elif event in ("end_map", "end_array"):
            self._stack.pop()
            self._keys.pop()
            self.done = not self._stack
        elif event == "map_key":
            if value in self._stack[-1]:
                raise _Bad(f"the key {str(value)[:40]!r} appears twice in one object")
            self._keys[-1] = value
        else:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                _check_number(value)
            self._add(value)
            self.done = self.done or not self._stack

    def build(self, event: str, value: Any, events: Iterator[tuple[str, Any]]) -> Any:
        """The whole value that starts with ``event, value``, the rest read from ``events``: the same
        as giving every event to :meth:`event` (the same refusals, in the same order), with the
        scalars of an array put in place without the call (most of an archive is the scalars of
        its observation rows). Raises :class:`_Bad`, also if ``events`` end before the value."""
        self.event(event, value)
        while not self.done:
            container = self._stack[-1]
            if isinstance(container, list):
                put = container.append
                for event, value in events:
                    if event in _STRUCTURE:
                        break
                    if event == "number" and not -_LARGEST <= value <= _LARGEST:
                        _check_number(value)
                    put(value)
                else:
                    raise _Bad("not JSON (it ends too early)")
            else:
                event, value = next(events, ("", None))
                if not event:
                    raise _Bad("not JSON (it ends too early)")
            self.event(event, value)
        return self.value

    def path(self) -> tuple[str | None, ...]:
        """The keys leading to the array being built ((): not inside an array of an object)."""
        if not self._stack or not isinstance(self._stack[-1], list):
            return ()
        return tuple(self._keys[:-1])

    def _add(self, value: Any) -> None:
        if not self._stack:
            self.value = value
        elif isinstance(self._stack[-1], dict):
            self._stack[-1][self._keys[-1]] = value
        else:
            self._stack[-1].append(value)


class _HashingReader:
    """A binary file that hashes what is read from it (to check a file did not change between reads)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.sha256.update(data)
        return data


def _open(path: str | os.PathLike[str], max_bytes: int) -> BinaryIO:
    """The archive file opened for reading, once it is known to be a regular file within the size limit."""
    try:
        name = os.fspath(path)
    except TypeError:
        raise ExportError(f"the archive must be a file path, not {type(path).__name__}") from None
    if "\x00" in name:
        raise ExportError("the archive path contains a NUL character")
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise ExportError(f"there is no file {name}") from None
    except OSError as exc:
        raise ExportError(f"cannot read {name}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ExportError(f"{name} is not a regular file (a folder, device or pipe): refused")
    if info.st_size > max_bytes:
        raise ExportError(f"{name} is {info.st_size} bytes, larger than the {max_bytes} bytes an archive may have")
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ExportError(f"cannot read {name}: {exc.strerror or exc}") from None
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # swapped between stat and open
        fh.close()
        raise ExportError(f"{name} is not a regular file: refused")
    return fh


def _events(fh: Any) -> Any:
    """ijson's events of a file (without prefixes: they cost the square of the depth), its errors as :class:`_Bad`."""
    try:
        yield from ijson.basic_parse(fh, use_float=True)
    except ijson.JSONError as exc:
        raise _Bad(f"not JSON ({str(exc)[:120]})") from None
    except UnicodeDecodeError as exc:
        raise _Bad(f"not UTF-8 text (byte {exc.start})") from None


class _Scan:
    """The first reading of an archive: everything but the observation rows and waveform blocks is
    built in memory; those (most of the file) are checked one at a time and only counted and sealed
    (:class:`~monitor.store.seal.ContentDigest`). Raises :class:`_Bad`."""

    def __init__(self) -> None:
        self.digest = ContentDigest()
        self.rows = 0
        self.blocks = 0
        self.file_sha256 = ""
        self._last_t = -1.0
        self._rows: list[Any] = []  # checked rows not yet sealed

    def run(self, fh: BinaryIO) -> dict[str, Any]:
        reader = _HashingReader(fh)
        top = _Builder()
        self.digest.part("observations")
        events = _events(reader)
        for event, value in events:
            if event not in ("end_map", "end_array", "map_key"):
                kind = top.path()
                if kind == ("observations", "rows"):
                    event, value = self._items(self._row, event, value, events)
                elif kind == ("waveforms",):
                    event, value = self._items(self._block, event, value, events)
            top.event(event, value)
        if not top.done:
            raise _Bad("not JSON (it ends too early)")
        while reader.read(65536):  # what follows the JSON value is hashed too (ijson refuses non-space)
            pass
        self.file_sha256 = reader.sha256.hexdigest()
        if self.blocks == 0:
            self._waveforms_part()
        return top.value

    @staticmethod
    def _items(take: Callable[[Any], None], event: str, value: Any,
               events: Iterator[tuple[str, Any]]) -> tuple[str, Any]:
        """Give ``take`` each item of an array, the first starting with ``event, value``; returns
        the event that ends the array."""
        while event != "end_array":
            take(_Builder().build(event, value, events))
            event, value = next(events, ("", None))
            if not event:
                raise _Bad("not JSON (it ends too early)")
        return event, value

    def _row(self, row: Any) -> None:
        if self.blocks:
            raise _Bad("the observation rows must come before the waveforms (the archive's order)")
        i = self.rows
        self._last_t = _check_row(i, row, self._last_t)
        self._rows.append(row)
        if len(self._rows) == 5000:
            self._seal_rows()
        self.rows += 1

    def _seal_rows(self) -> None:
        self.digest.add_all(self._rows)  # in batches: the same bytes as one row at a time, encoded faster
        self._rows = []

    def _waveforms_part(self) -> None:
        self._seal_rows()
        self.digest.part("waveforms")

    def _block(self, block: Any) -> None:
        if self.blocks == 0:
            self._waveforms_part()
        raw = _check_block(self.blocks, block)
        self.digest.add(waveform_row(block["channel"], block["t0"], block["rate"], block["n"], block["enc"],
                                     block["source"], raw))
        self.blocks += 1
        if self.blocks > _MAX_ITEMS:
            raise _Bad(f"waveforms has more than the {_MAX_ITEMS} items allowed")


class _Check:
    """Type and range checks with the place named in the message."""

    @staticmethod
    def obj(value: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _Bad(f"{where} must be an object")
        missing = [k for k in keys if k not in value]
        if missing:
            raise _Bad(f"{where} lacks {', '.join(missing)}")
        extra = sorted(set(value) - set(keys))
        if extra:
            raise _Bad(f"{where} has unknown field {extra[0][:40]!r}")
        return value

    @staticmethod
    def lst(value: Any, where: str, limit: int = _MAX_ITEMS) -> list[Any]:
        if not isinstance(value, list):
            raise _Bad(f"{where} must be a list")
        if len(value) > limit:
            raise _Bad(f"{where} has {len(value)} items, more than the {limit} allowed")
        return value

    @overload
    @staticmethod
    def num(value: Any, where: str, low: float = ..., high: float = ..., *, none: Literal[False] = ...) -> float: ...
    @overload
    @staticmethod
    def num(value: Any, where: str, low: float = ..., high: float = ..., *, none: bool) -> float | None: ...

    @staticmethod
    def num(value: Any, where: str, low: float = -1e12, high: float = 1e12, *, none: bool = False) -> float | None:
        if value is None and none:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(f"{where} must be a number")
        if not low <= value <= high:
            raise _Bad(f"{where} = {value!r} is outside {low:g}…{high:g}")
        return float(value)

    @overload
    @classmethod
    def time(cls, value: Any, where: str, *, none: Literal[False] = ...) -> float: ...
    @overload
    @classmethod
    def time(cls, value: Any, where: str, *, none: bool) -> float | None: ...

    @classmethod
    def time(cls, value: Any, where: str, *, none: bool = False) -> float | None:
        if value is None and none:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            raise _Bad(f"{where} must be a time in epoch seconds written as a decimal number")
        return cls.num(value, where, _T_MIN, _T_MAX)

    @overload
    @staticmethod
    def int_(value: Any, where: str, low: int, high: int, *, none: Literal[False] = ...) -> int: ...
    @overload
    @staticmethod
    def int_(value: Any, where: str, low: int, high: int, *, none: bool) -> int | None: ...

    @staticmethod
    def int_(value: Any, where: str, low: int, high: int, *, none: bool = False) -> int | None:
        if value is None and none:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"{where} must be a whole number")
        if not low <= value <= high:
            raise _Bad(f"{where} = {value} is outside {low}…{high}")
        return value

    @staticmethod
    def text(value: Any, where: str, limit: int, *, none: bool = False, empty: bool = True) -> str | None:
        if value is None and none:
            return None
        if not isinstance(value, str):
            raise _Bad(f"{where} must be text")
        if len(value) > limit:
            raise _Bad(f"{where} is longer than {limit} characters")
        if not empty and not value.strip():
            raise _Bad(f"{where} must not be empty")
        if "\x00" in value:
            raise _Bad(f"{where} contains a NUL character")
        return value

    @staticmethod
    def choice(value: Any, where: str, allowed: tuple[_V, ...]) -> _V:
        if value not in allowed:
            raise _Bad(f"{where} must be one of {', '.join(map(str, allowed))}")
        return allowed[allowed.index(value)]

    @overload
    @staticmethod
    def dict_(value: Any, where: str, *, none: Literal[False] = ...) -> dict[str, Any]: ...
    @overload
    @staticmethod
    def dict_(value: Any, where: str, *, none: bool) -> dict[str, Any] | None: ...

    @staticmethod
    def dict_(value: Any, where: str, *, none: bool = False) -> dict[str, Any] | None:
        if value is None and none:
            return None
        if not isinstance(value, dict):
            raise _Bad(f"{where} must be an object")
        return value


_SESSION_KEYS = ("original_id", "created_at", "started_at", "ended_at", "last_seen", "status", "phase", "protocol",
                 "patient", "patient_name", "patient_ref", "plan", "baseline", "device", "created_by", "closed_by",
                 "close_meaning", "signed_name", "n_observations", "n_alarms")
_TOP_KEYS = ("format", "version", "deidentified", "session", "staff", "observations", "waveforms", "conditions",
             "entries", "alarms", "alarm_actions", "gaps", "audit")


def _check_row(i: int, row: Any, last_t: float) -> float:
    """Check observation row ``i``; returns its time (rows must be in time order after ``last_t``)."""
    c = _Check
    if not isinstance(row, list) or len(row) != 7:
        raise _Bad(f"observations.rows[{i}] must be a list of 7 values")
    t, vital, value, quality, device_time, unit, source = row
    if isinstance(t, bool) or not isinstance(t, float) or not _T_MIN <= t <= _T_MAX:
        raise _Bad(f"observations.rows[{i}] time must be epoch seconds (1970–2100)")
    if t < last_t:
        raise _Bad(f"observations.rows[{i}] is out of time order")
    if i >= _MAX_ROWS:
        raise _Bad(f"observations.rows has more than the {_MAX_ROWS} items allowed")
    if vital not in CATALOGUE:
        raise _Bad(f"observations.rows[{i}] has an unknown vital {str(vital)[:40]!r}")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not -1e9 <= value <= 1e9):
        raise _Bad(f"observations.rows[{i}] value must be a number or null")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality < 2 ** 31:
        raise _Bad(f"observations.rows[{i}] quality must be a bitmask 0…2^31")
    if device_time is not None:
        c.text(device_time, f"observations.rows[{i}] device time", 64)
        try:
            datetime.fromisoformat(device_time)
        except ValueError:
            raise _Bad(f"observations.rows[{i}] device time is not an ISO time") from None
    c.text(unit, f"observations.rows[{i}] unit", 32, none=True)
    c.text(source, f"observations.rows[{i}] source", 200, empty=False)
    return t


def _check_block(i: int, b: Any) -> bytes:
    """Check waveform block ``i``; returns its compressed bytes."""
    c = _Check
    where = f"waveforms[{i}]"
    b = c.obj(b, where, ("channel", "t0", "rate", "n", "enc", "source", "data"))
    if not isinstance(b["channel"], str) or not _CHANNEL.match(b["channel"]):
        raise _Bad(f"{where}.channel must be a channel key")
    c.time(b["t0"], f"{where}.t0")
    rate = c.num(b["rate"], f"{where}.rate", 1e-3, 10_000)
    if rate <= 0:
        raise _Bad(f"{where}.rate must be positive")
    n = c.int_(b["n"], f"{where}.n", 1, int(math.ceil(MAX_BLOCK_SECONDS * rate)) + 1)
    c.choice(b["enc"], f"{where}.enc", (ENC_F32_ZLIB, ENC_F32_SHUFFLE_ZLIB))
    c.text(b["source"], f"{where}.source", 200, none=True)
    data = str(c.text(b["data"], f"{where}.data", 4 * (n * 4 + 1024)))
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"{where}.data is not base64") from None
    try:
        decode_samples(raw, n, b["enc"], max_bytes=n * 4)
    except ValueError as exc:
        raise _Bad(f"{where}: {exc}") from None
    return raw


def _validate(doc: Any, scan: _Scan) -> None:
    """Check every part of the archive but the rows and blocks ``scan`` checked. Raises _Bad."""
    c = _Check
    if not isinstance(doc, dict):
        raise _Bad("its top level is not a JSON object")
    if doc.get("format") != FORMAT:
        raise _Bad(f"it is not a Vigil archive (format {str(doc.get('format'))[:60]!r}, expected {FORMAT!r})")
    version = doc.get("version")
    if version != VERSION or isinstance(version, bool):
        raise _Bad(f"archive version {str(version)[:20]} is not supported: this Vigil reads version {VERSION}")
    if doc.get("deidentified") is not False:
        raise _Bad("this is a de-identified archive: it is for research and cannot be imported as a session")
    c.obj(doc, "the archive", _TOP_KEYS)
    s = c.obj(doc["session"], "session", _SESSION_KEYS)
    c.int_(s["original_id"], "session.original_id", 1, 2 ** 62)
    for key in ("created_at", "started_at"):
        c.time(s[key], f"session.{key}")
    c.time(s["last_seen"], "session.last_seen", none=True)
    status = c.choice(s["status"], "session.status", ("open", "closed", "aborted"))
    if status == "open":
        raise _Bad("the session is still open in the archive: only closed or ended sessions can be imported")
    ended = c.time(s["ended_at"], "session.ended_at")
    if ended < s["started_at"]:
        raise _Bad("session.ended_at is before session.started_at")
    for key, limit in (("phase", 40), ("protocol", 40), ("patient_name", 200), ("device", 2000),
                       ("created_by", 100), ("closed_by", 100), ("close_meaning", 300), ("signed_name", 200)):
        c.text(s[key], f"session.{key}", limit, empty=False)
    c.text(s["patient_ref"], "session.patient_ref", 200, none=True)
    c.dict_(s["patient"], "session.patient")
    c.dict_(s["plan"], "session.plan")
    c.dict_(s["baseline"], "session.baseline", none=True)

    staff = c.dict_(doc["staff"], "staff")
    for login, info in staff.items():
        c.text(login, "a staff login", 100, empty=False)
        info = c.obj(info, f"staff[{login[:40]!r}]", ("display_name", "role"))
        c.text(info["display_name"], f"staff[{login[:40]!r}].display_name", 200)
        c.text(info["role"], f"staff[{login[:40]!r}].role", 40)

    obs = c.obj(doc["observations"], "observations", ("columns", "rows"))
    if obs["columns"] != OBS_COLUMNS:
        raise _Bad(f"observations.columns must be {OBS_COLUMNS}")
    if s["n_observations"] != scan.rows or isinstance(s["n_observations"], bool):
        raise _Bad("session.n_observations does not match the number of observation rows")
    c.lst(doc["waveforms"], "waveforms")

    for i, cond in enumerate(c.lst(doc["conditions"], "conditions")):
        where = f"conditions[{i}]"
        cond = c.obj(cond, where, ("t", "code", "active", "text", "source"))
        c.time(cond["t"], f"{where}.t")
        if not isinstance(cond["code"], str) or not _SNAKE.match(cond["code"]) or len(cond["code"]) > 80:
            raise _Bad(f"{where}.code must be a snake_case word")
        if not isinstance(cond["active"], bool):
            raise _Bad(f"{where}.active must be true or false")
        c.text(cond["text"], f"{where}.text", 2000)
        c.text(cond["source"], f"{where}.source", 200)

    entries = c.lst(doc["entries"], "entries")
    kinds: dict[int, str] = {}
    amended: set[int] = set()
    for i, e in enumerate(entries):
        where = f"entries[{i}]"
        e = c.obj(e, where, ("id", "t", "table_kind", "kind", "payload", "user", "amends", "reason", "recorded_at"))
        if e["id"] != i + 1 or isinstance(e["id"], bool):
            raise _Bad(f"{where}.id must be {i + 1} (entries are numbered from 1 in order)")
        c.time(e["t"], f"{where}.t")
        c.time(e["recorded_at"], f"{where}.recorded_at")
        c.choice(e["table_kind"], f"{where}.table_kind", TABLE_KINDS)
        c.text(e["kind"], f"{where}.kind", 100, empty=False)
        c.dict_(e["payload"], f"{where}.payload")
        c.text(e["user"], f"{where}.user", 100, empty=False)
        late = e["payload"].get("late") is True
        if e["amends"] is None:
            if e["reason"] is not None:  # a late entry: charted after the session ended, with its reason
                c.text(e["reason"], f"{where}.reason", 2000, empty=False)
                if not late:
                    raise _Bad(f"{where} has a reason but amends nothing and is not marked as a late entry")
            elif late:
                raise _Bad(f"{where} is marked as a late entry but gives no reason")
        else:
            target = c.int_(e["amends"], f"{where}.amends", 1, i)
            if kinds.get(target) != e["table_kind"]:
                raise _Bad(f"{where} amends an entry of another table")
            if target in amended:
                raise _Bad(f"{where} amends entry {target}, which was already amended")
            amended.add(target)
            c.text(e["reason"], f"{where}.reason", 2000, empty=False)
        kinds[i + 1] = e["table_kind"]

    alarms = c.lst(doc["alarms"], "alarms")
    if s["n_alarms"] != len(alarms) or isinstance(s["n_alarms"], bool):
        raise _Bad("session.n_alarms does not match the number of alarms")
    for i, a in enumerate(alarms):
        where = f"alarms[{i}]"
        a = c.obj(a, where, ("id", "condition", "kind", "priority", "max_priority", "started_at", "ended_at",
                             "limit", "value", "message"))
        if a["id"] != i + 1 or isinstance(a["id"], bool):
            raise _Bad(f"{where}.id must be {i + 1}")
        c.text(a["condition"], f"{where}.condition", 100, empty=False)
        c.choice(a["kind"], f"{where}.kind", ALARM_KINDS)
        c.choice(a["priority"], f"{where}.priority", PRIORITIES)
        c.choice(a["max_priority"], f"{where}.max_priority", PRIORITIES)
        if PRIORITIES.index(a["max_priority"]) < PRIORITIES.index(a["priority"]):
            raise _Bad(f"{where}.max_priority is below its priority")
        start = c.time(a["started_at"], f"{where}.started_at")
        end = c.time(a["ended_at"], f"{where}.ended_at", none=True)
        if end is not None and end < start:
            raise _Bad(f"{where} ends before it starts")
        c.num(a["limit"], f"{where}.limit", none=True)
        c.num(a["value"], f"{where}.value", none=True)
        c.text(a["message"], f"{where}.message", 2000)
    for i, a in enumerate(c.lst(doc["alarm_actions"], "alarm_actions")):
        where = f"alarm_actions[{i}]"
        a = c.obj(a, where, ("alarm", "t", "action", "user", "detail"))
        c.int_(a["alarm"], f"{where}.alarm", 1, len(alarms), none=True)
        c.time(a["t"], f"{where}.t")
        c.choice(a["action"], f"{where}.action", ALARM_ACTIONS)
        c.text(a["user"], f"{where}.user", 100, none=True)
        c.text(a["detail"], f"{where}.detail", 2000)
    for i, g in enumerate(c.lst(doc["gaps"], "gaps")):
        where = f"gaps[{i}]"
        g = c.obj(g, where, ("start", "end", "reason"))
        start = c.time(g["start"], f"{where}.start")
        end = c.time(g["end"], f"{where}.end")
        if end < start:
            raise _Bad(f"{where} ends before it starts")
        c.text(g["reason"], f"{where}.reason", 2000, empty=False)

    for i, r in enumerate(c.lst(doc["audit"], "audit")):
        where = f"audit[{i}]"
        r = c.obj(r, where, ("seq", "t", "user", "session", "action", "payload", "prev_hash", "hash"))
        c.int_(r["seq"], f"{where}.seq", 1, 2 ** 62)
        c.time(r["t"], f"{where}.t")
        c.text(r["user"], f"{where}.user", 100, none=True)
        c.int_(r["session"], f"{where}.session", 1, 2 ** 62)  # the original id, or the id in a store it passed through
        c.text(r["action"], f"{where}.action", 100, empty=False)
        c.dict_(r["payload"], f"{where}.payload")
        for key in ("prev_hash", "hash"):
            if not isinstance(r[key], str) or not _HEX64.match(r[key]):
                raise _Bad(f"{where}.{key} must be 64 hexadecimal digits")
        if audit_digest(r["prev_hash"], r["seq"], r["t"], r["user"], r["session"], r["action"],
                        r["payload"]) != r["hash"]:
            raise _Bad(f"{where} (audit row {r['seq']}) does not match its hash: the archive was altered")
    s = doc["session"]
    signers = {s["closed_by"]} | {e["user"] for e in doc["entries"]}
    unknown = sorted(login for login in signers if login not in doc["staff"])
    if unknown:
        raise _Bad(f"{', '.join(unknown[:3])} signed or charted in it but {'is' if len(unknown) == 1 else 'are'} "
                   "not among its staff")


def _verify_record(doc: dict[str, Any], scan: _Scan) -> tuple[list[str], list[str]]:
    """The archive's record against its audit rows, end to end: each row's hash, the links between
    consecutive rows, the opening, every entry, the closing and the seal of its data
    (:mod:`monitor.store.seal`). An archive carries no MACs: audit keys never leave the computer
    that made them. Returns ``(problems, notes)``."""
    s = doc["session"]
    digest = scan.digest
    digest.part("conditions")
    digest.add_all([x["t"], x["code"], x["active"], x["text"], x["source"]] for x in doc["conditions"])
    digest.part("alarms")
    digest.add_all([a["condition"], a["kind"], a["priority"], a["max_priority"], a["started_at"], a["ended_at"],
                    a["limit"], a["value"], a["message"]] for a in doc["alarms"])
    digest.part("alarm_actions")
    digest.add_all([x["alarm"], x["t"], x["action"], x["user"], x["detail"]] for x in doc["alarm_actions"])
    digest.part("gaps")
    digest.add_all([g["start"], g["end"], g["reason"]] for g in doc["gaps"])
    problems, _ = check_chain_rows(doc["audit"], lambda _kid: None)  # an archive carries no MACs
    more, notes = check_record(s, doc["entries"], doc["audit"], digest.result(), entry_ids_match=False)
    return problems + more, notes


def _replays(doc: dict[str, Any]) -> None:
    entries = [e["payload"] for e in doc["entries"] if e["amends"] is None]
    if not entries:
        return
    from monitor.session import SessionState
    try:
        SessionState.from_entries(entries)
    except Exception as exc:
        raise _Bad(f"its charted record does not replay as a valid session: {exc}") from None


def import_archive(store: SessionStore, path: str | os.PathLike[str], *, user: str | None = None,
                   max_bytes: int = MAX_ARCHIVE_BYTES) -> int:
    """Restore a session archive into ``store`` and return the new session's id.

    ``user``: login recorded in the audit row of the import (None = Vigil itself; the computer
    account is recorded too). ``max_bytes``: the largest file read. The file is read twice as a
    stream (memory stays bounded whatever its size): first checked whole — its form, its record
    against its audit rows end to end (:func:`_verify_record`: an archive whose content was edited is
    refused) and the people who signed and charted in it — then inserted, in one transaction, while
    checking it is still the same file. The session keeps its original times, status, signature,
    data, charted entries (with amendments), alarms with their actions, gaps and audit rows; it is
    closed and read-only as it was, and marked as imported from this file, by whom and when (the
    import's audit row). Anything wrong raises :class:`ExportError` naming the problem, and the
    store is left unchanged. A read-only store, or a session that is already in the store (same
    creation and start times, patient, author and device), is refused.
    """
    if not isinstance(store, SessionStore):
        raise ExportError("import needs a SessionStore")
    scan = _Scan()
    with _open(path, max_bytes) as fh:
        try:
            doc = scan.run(fh)
            _validate(doc, scan)
            problems, notes = _verify_record(doc, scan)
            if problems:
                raise _Bad(f"its record does not match its audit trail: {problems[0]}"
                           + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""))
            _replays(doc)
        except _Bad as exc:
            raise ExportError(f"the archive is refused: {exc}") from None
        except RecursionError:
            raise ExportError("the archive is refused: it is nested too deeply") from None
    s = doc["session"]
    try:
        clash = store.find_session(created_at=s["created_at"], started_at=s["started_at"],
                                   patient_name=s["patient_name"], created_by=s["created_by"], device=s["device"],
                                   protocol=s["protocol"])
    except StoreError as exc:
        raise ExportError(f"cannot read the store: {exc}") from None
    if clash is not None:
        raise ExportError(f"this session is already in the store as session {clash}: the archive was not imported")
    try:
        return _insert(store, doc, scan, os.path.abspath(os.fspath(path)), max_bytes, user, notes)
    except ReadOnlyError as exc:
        raise ExportError(f"the store is read-only: {exc}") from None
    except (StoreError, ValueError, TypeError, _Bad) as exc:
        raise ExportError(f"the archive could not be imported (nothing was changed): {exc}") from None
    except sqlite3.Error as exc:
        raise ExportError(f"the archive could not be imported (nothing was changed): {exc}") from None


def _account() -> str:
    """The computer account running the import (recorded with it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _stream(path: str, max_bytes: int, prefix: str, expected_sha256: str) -> Any:
    """The items at ``prefix`` read again from the file; the file must hash as it did when checked
    (else :class:`_Bad`, which rolls the import back)."""
    with _open(path, max_bytes) as fh:
        reader = _HashingReader(fh)
        yield from ijson.items(reader, prefix, use_float=True)
        while reader.read(65536):
            pass
        if reader.sha256.hexdigest() != expected_sha256:
            raise _Bad("the file changed while it was being imported")


def _insert(store: SessionStore, doc: dict[str, Any], scan: _Scan, path: str, max_bytes: int, user: str | None,
            notes: list[str]) -> int:
    s = doc["session"]
    session = {key: s[key] for key in (
        "created_at", "started_at", "ended_at", "status", "phase", "protocol", "patient_name", "patient_ref",
        "patient", "plan", "baseline", "device", "created_by", "closed_by", "signed_name", "close_meaning",
        "last_seen", "n_observations", "n_alarms")}
    rows = (tuple(r) for r in _stream(path, max_bytes, "observations.rows.item", scan.file_sha256))
    blocks = ((b["channel"], b["t0"], b["rate"], b["n"], b["enc"], b["source"], base64.b64decode(b["data"]))
              for b in _stream(path, max_bytes, "waveforms.item", scan.file_sha256))
    return store.insert_session(
        session, observations=rows, waveforms=blocks,
        conditions=((x["t"], x["code"], x["active"], x["text"], x["source"]) for x in doc["conditions"]),
        entries=doc["entries"], alarms=doc["alarms"], alarm_actions=doc["alarm_actions"],
        gaps=((g["start"], g["end"], g["reason"]) for g in doc["gaps"]),
        audit_action=IMPORT_ACTION, user=user,
        audit_payload={
            "format": FORMAT, "version": doc["version"], "archive_sha256": scan.file_sha256, "file": path,
            "imported_by": user or _account(), "origin_session_id": s["original_id"],
            "staff": doc["staff"], "audit": doc["audit"], "verification": notes,
            "counts": {"observations": scan.rows, "waveform_blocks": scan.blocks,
                       "entries": len(doc["entries"]), "alarms": len(doc["alarms"])},
        })
