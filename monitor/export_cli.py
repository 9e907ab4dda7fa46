"""``vigil export`` and ``vigil import``: sessions out of and into the store, from the command line."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import IO

from monitor.cli import CliError
from monitor.config import db_path, open_reader
from monitor.store import NotFoundError, SessionStore, StoreError
from monitor.store.reader import StoreReader

_EXTENSIONS = {"csv": "zip", "pdf": "pdf", "fhir": "json", "hl7": "hl7", "edf": "edf", "json": "vigil.json",
               "rems": "pdf"}
_UNITS = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


def parse_interval(text: str) -> float:
    """"60s", "5min", "1h" or a bare number of seconds → seconds; ValueError with the forms otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", text)
    if match is None:
        raise ValueError(f"interval {text!r} should look like 60s, 5min or 1h")
    return float(match.group(1)) * _UNITS[match.group(2) or ""]


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
    """Export one session; prints the path written."""
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
                                                          f".{_EXTENSIONS[fmt]}")
    _headless()
    store = _open_reader(args, "export")
    try:
        path = export_session(store, session_id, fmt, destination, deidentify=args.deidentify,
                              interval_s=interval, paper=args.paper)
    except (ExportError, NotFoundError) as exc:
        raise CliError(f"vigil export: {exc}", status=1) from None
    finally:
        store.close()
    out.write(f"{path}\n")
    return 0


def cmd_import(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Restore a session archive; prints the new session id."""
    from monitor.export import ExportError, import_archive  # noqa: PLC0415

    path = db_path(args.db)
    try:
        store = SessionStore(path)
    except (StoreError, OSError) as exc:
        raise CliError(f"vigil import: {exc}", status=1) from None
    try:
        session_id = import_archive(store, args.file)
    except ExportError as exc:
        raise CliError(f"vigil import: {exc}", status=1) from None
    finally:
        store.close()
    out.write(f"{session_id}\n")
    return 0
