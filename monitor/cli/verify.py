"""``vigil verify``, ``vigil salvage`` and ``vigil recover``: is the record intact, and what to do
when it is not.

``vigil verify [SESSION|--all] [--db PATH]`` opens the database read-only (a damaged one too) and
prints one line per check — SQLite's ``integrity_check``, the protective triggers, the audit chain
(hashes, links, MACs; the first broken row), the staff accounts against their audit rows — and, for
``SESSION`` (or every session with ``--all``), its record against its audit rows and the seal of
its closing. Exit status 0 when everything checked is intact, 1 otherwise (also when a part could
not be checked: MACs whose key is not on this computer).

``vigil salvage DAMAGED NEW`` copies every readable session of a damaged database into a new file
(:mod:`monitor.store.salvage`) and lists what it could not read; exit status 0 when everything was
read, 1 when something was lost.

``vigil recover FILE [--db PATH]`` writes into the database what a recording could not (the
recovery file a recording saves when writing failed to its end: :mod:`monitor.store.recovery`)
and removes the file once it is written; exit status 0 when every item was written.
"""

from __future__ import annotations

import argparse
import sqlite3
from typing import IO

from monitor.cli import CliError
from monitor.cli.records import open_store
from monitor.config import db_path
from monitor.store import NotFoundError, StoreError

__all__ = ["cmd_verify", "cmd_salvage", "cmd_recover", "add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The three commands' parsers."""
    ver = sub.add_parser("verify", help="check the record: integrity, triggers, audit chain, accounts, sessions")
    ver.add_argument("session", nargs="?", help="also check this session's record (see vigil sessions)")
    ver.add_argument("--all", action="store_true", help="also check every session's record")
    ver.add_argument("--db", help="session database file (default: VIGIL_DB or the user data folder)")
    sal = sub.add_parser("salvage", help="copy every readable session of a damaged database into a new file")
    sal.add_argument("damaged", help="the damaged database (only read)")
    sal.add_argument("new", help="the new database to write (must not exist)")
    rec = sub.add_parser("recover", help="write what a failed recording saved in a recovery file")
    rec.add_argument("file", help="the recovery file (vigil-recovery-….jsonl)")
    rec.add_argument("--db", help="session database file (default: VIGIL_DB or the user data folder)")


def cmd_verify(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Check the database (and sessions); one line per check; 0 when all is intact."""
    if args.session is not None and args.all:
        raise CliError("vigil verify: give a SESSION or --all, not both")
    try:
        session = None if args.session is None else int(args.session)
    except ValueError:
        raise CliError(f"vigil verify: session must be a number (see vigil sessions), not {args.session!r}") from None
    path = db_path(args.db)
    if not path.exists():
        raise CliError(f"vigil verify: no database at {path}", status=1)
    store = open_store("verify", path, readonly=True)
    bad = False

    def say(ok: bool, what: str, text: str) -> None:
        nonlocal bad
        bad = bad or not ok
        out.write(f"{what}: {text}\n")
    try:
        out.write(f"{path}\n")
        damage = store.integrity_check()
        say(not damage, "integrity", "ok" if not damage else f"DAMAGED: {'; '.join(damage[:3])}")
        triggers = store.trigger_report()
        say(not any(triggers.values()), "triggers", "all present, as Vigil made them" if not any(triggers.values())
            else "TAMPERED: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in triggers.items() if v))
        try:
            chain = store.verify_audit()
        except (StoreError, sqlite3.DatabaseError) as exc:
            say(False, "audit chain", f"cannot be read: {exc}")
        else:
            keyed = f", keyed from row {chain.keyed_from}" if chain.keyed_from else ", not keyed"
            if chain.ok:
                say(True, "audit chain", f"intact ({chain.rows} rows{keyed}, every MAC checked)")
            elif chain.first_bad_seq is not None:
                say(False, "audit chain", f"BROKEN at row {chain.first_bad_seq}: {chain.problem}")
            else:
                say(False, "audit chain", f"NOT VERIFIED ({chain.rows} rows{keyed}): {chain.problem}")
            users = store.verify_users()
            say(not users, "accounts", "as their audit rows record them" if not users else "; ".join(users))
        ids = [s.id for s in reversed(store.list_sessions())] if args.all else [] if session is None else [session]
        for sid in ids:
            try:
                check = store.verify_session(sid)
            except NotFoundError:
                raise CliError(f"vigil verify: no session {sid} in {path}", status=1) from None
            say(check.ok, f"session {sid}", check.summary() if check.ok else "; ".join(check.problems))
    except (StoreError, sqlite3.DatabaseError) as exc:
        say(False, "reading", f"stopped: {exc}")
    finally:
        store.close()
    out.write("verified: every check passed\n" if not bad else "NOT verified: see the lines above\n")
    return 1 if bad else 0


def cmd_salvage(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Copy the readable sessions of a damaged database into a new one; lists what was lost."""
    from monitor.store.salvage import salvage  # noqa: PLC0415

    try:
        report = salvage(args.damaged, args.new)
    except (StoreError, OSError) as exc:
        raise CliError(f"vigil salvage: {exc}", status=1) from None
    out.write(f"{report.target}: {len(report.copied)} sessions, {report.users} staff accounts and "
              f"{report.settings} settings versions copied from {report.source}\n")
    for old, new in report.copied.items():
        out.write(f"  session {old} -> {new}\n")
    for line in report.lost:
        out.write(f"  NOT READ: {line}\n")
    out.write("everything was read\n" if report.complete else f"{len(report.lost)} parts could not be read in full\n")
    return 0 if report.complete else 1


def cmd_recover(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Write a recording's recovery file into the database."""
    from monitor.store.recovery import RecoveryError, replay  # noqa: PLC0415

    path = db_path(args.db)
    store = open_store("recover", path)
    try:
        result = replay(store, args.file)
    except RecoveryError as exc:
        raise CliError(f"vigil recover: {exc}", status=1) from None
    finally:
        store.close()
    out.write(f"{path}: {result.summary()}\n")
    for line in result.refused:
        out.write(f"  NOT WRITTEN: {line}\n")
    return 0 if not result.refused else 1
