"""``vigil sessions``, ``vigil export``, ``vigil import`` and ``vigil clinic-setup``: the record from the
command line (a chair's file, or the clinic record for sessions and export)."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import IO

from monitor.app.provenance import import_label
from monitor.cli import CliError
from monitor.config import db_path, open_reader
from monitor.store import NotFoundError, SessionStore, SessionSummary, StoreError
from monitor.store.reader import ChairSessionSummary, StoreReader

_UNITS = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


def parse_interval(text: str) -> float:
    """"60s", "5min", "1h" or a bare number of seconds → seconds; ValueError with the forms otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", text)
    if match is None:
        raise ValueError(f"interval {text!r} should look like 60s, 5min or 1h")
    return float(match.group(1)) * _UNITS[match.group(2) or ""]


def open_store(command: str, path: Path, *, readonly: bool = False) -> SessionStore:
    """The SQLite record at ``path`` for ``vigil COMMAND``; a file that cannot be opened is the
    command's one-line error (exit status 1)."""
    try:
        return SessionStore(path, readonly=readonly)
    except (StoreError, OSError) as exc:
        raise CliError(f"vigil {command}: {exc}", status=1) from None


def _open_reader(args: argparse.Namespace, command: str) -> StoreReader:
    """The record ``--db`` names, read-only: an SQLite file or the clinic record (postgresql://…)."""
    try:
        return open_reader(args.db)
    except (StoreError, OSError) as exc:
        raise CliError(f"vigil {command}: {exc}", status=1) from None


def _headless() -> None:
    # The PDF writers draw with QtGui; with no display, use Qt's offscreen platform.
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def cmd_export(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Export one session; prints the path written. An existing file is replaced only with
    ``--force``; the database, a device, a fifo or a symbolic link never."""
    from monitor.export import FORMATS, ExportError, export_session  # noqa: PLC0415

    fmt = args.format.strip().lower()
    if fmt not in FORMATS:
        raise CliError(f"vigil export: unknown format {args.format!r}; choose one of: {', '.join(FORMATS)}")
    try:
        session_id = int(args.session)
    except ValueError:
        raise CliError(f"vigil export: session must be a number (see vigil sessions), not {args.session!r}") from None
    try:
        interval = parse_interval(args.interval)
    except ValueError as exc:
        raise CliError(f"vigil export: {exc}") from None
    destination = Path(args.out) if args.out else Path(f"session-{session_id}{'-deidentified' if args.deidentify else ''}"
                                                          f"{FORMATS[fmt].suffix}")
    _headless()
    store = _open_reader(args, "export")
    try:
        path = export_session(store, session_id, fmt, destination, deidentify=args.deidentify,
                              interval_s=interval, paper=args.paper, overwrite=args.force)
    except (ExportError, NotFoundError) as exc:
        raise CliError(f"vigil export: {exc}", status=1) from None
    finally:
        store.close()
    out.write(f"{path}\n")
    return 0


def cmd_import(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Restore a session archive; prints the new session id."""
    from monitor.export import ExportError, import_archive  # noqa: PLC0415

    store = open_store("import", db_path(args.db))
    try:
        session_id = import_archive(store, args.file)
    except ExportError as exc:
        raise CliError(f"vigil import: {exc}", status=1) from None
    finally:
        store.close()
    out.write(f"{session_id}\n")
    return 0


def cmd_sessions(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """List sessions, one line (or JSON object) each; from the clinic record (``--db postgresql://…``)
    every chair's, with the chair's name (and ``chair_session``, its id there; ``complete``; ``flag``)."""
    store = _open_reader(args, "sessions")
    try:
        chair = args.chair
        if chair is not None and chair not in store.chairs():
            raise CliError(f"vigil sessions: no chair named {chair!r} in {store.path}"
                           + (f" (chairs: {', '.join(store.chairs())})" if store.chairs() else ""), status=1)
        sessions = store.list_sessions(**({"chair": chair} if chair is not None else {}))
        if not args.json:  # the text listing's columns, named (the JSON lines name their own fields)
            where = "CHAIR#ID  " if any(isinstance(s, ChairSessionSummary) for s in sessions) else ""
            out.write(f"{'ID':>5}  {'STARTED':16}  {'ENDED':16}  {'STATUS':10}  {'PROTOCOL':12}  {'OBSERVATIONS':>12}  "
                      f"{'ALARMS':>11}  {where}PATIENT\n")
        for s in sessions:
            status, phase = _outcome(store, s)
            imported = import_label(store, s.id)
            record = {"id": s.id, "patient": s.patient, "protocol": s.protocol, "status": status,
                      "phase": phase, "started_at": s.started_at.isoformat(),
                      "ended_at": s.ended_at.isoformat() if s.ended_at else None,
                      "n_observations": s.n_observations, "n_alarms": s.n_alarms, "device": s.device,
                      "imported": imported}
            where = ""
            if isinstance(s, ChairSessionSummary):
                record.update(chair=s.chair, chair_session=s.chair_session_id, complete=s.complete, flag=s.flag)
                where = f"{s.chair}#{s.chair_session_id}  " + ("FLAGGED  " if s.flag else "")
            if args.json:
                out.write(json.dumps(record) + "\n")
            else:
                ended = f"{s.ended_at:%Y-%m-%d %H:%M}" if s.ended_at else "—"
                out.write(f"{s.id:>5}  {s.started_at:%Y-%m-%d %H:%M}  {ended:16}  {status:10}  {s.protocol:12}  "
                          f"{s.n_observations:>8} obs  {s.n_alarms:>4} alarms  {where}{s.patient}"
                          + (f"  [{imported}]" if imported else "") + "\n")
    finally:
        store.close()
    return 0


def _outcome(store: StoreReader, s: SessionSummary) -> tuple[str, str]:
    """How a session ended, as ``(status, phase)`` for the listing: "discharged" when its record holds
    the discharge sign-off (the ``session_closed`` entry), "aborted" when it ended without discharge,
    "closed" when recording stopped with neither (``vigil record``), else the stored status and phase
    (the store's phase stops at the last phase of an open session)."""
    if s.status == "aborted":
        return "aborted", "aborted"
    if s.status == "closed" and any(e.kind == "session_closed" for e in store.effective_entries(s.id, "signoff")):
        return "discharged", "discharged"
    return s.status, s.phase


def cmd_clinic_setup(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Make the group roles and apply the schema migrations; prints the schema version."""
    from monitor.store.postgres import ClinicRecordError, safe_url, setup  # noqa: PLC0415

    try:
        version = setup(args.url)
    except ClinicRecordError as exc:
        raise CliError(f"vigil clinic-setup: {exc}", status=1) from None
    out.write(f"{safe_url(args.url)}: clinic record schema version {version}\n")
    return 0
