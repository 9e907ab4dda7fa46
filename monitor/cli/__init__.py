"""The ``vigil`` command line. Other tools rely on its output formats: change them only additively.

Commands::

    vigil [run] [--device URL] [--db PATH] [--clinic-db URL] [--chair NAME]
                                                    the monitoring window (default command)
    vigil decode --protocol P FILE|- [--waves] [--attributes]
    vigil simulate --protocol masimo|nonin|intellivue|datex|hl7 [--scenario S] [--speed X] [--link PATH]
                   [--listen [HOST:]PORT | --connect HOST:PORT] [--bed B]
    vigil devices [--json] [--probe [PORT]]
    vigil record --device URL --duration SECONDS [--patient NAME] [--weight KG]
                 [--protocol ketamine-iv|esketamine] [--db PATH] [--resume] [--clinic-db URL] [--chair NAME]
    vigil sessions [--db PATH|URL] [--chair NAME] [--json]
    vigil export SESSION --format csv|pdf|fhir|hl7|edf|json|rems [--out PATH] [--force] [--deidentify]
                 [--interval 60s] [--paper A4|Letter] [--db PATH|URL]
    vigil import FILE [--db PATH]
    vigil verify [SESSION|--all] [--db PATH]        integrity, triggers, audit chain, accounts; exit 1 if not intact
    vigil salvage DAMAGED NEW                       copy every readable session of a damaged file into a new one
    vigil recover FILE [--db PATH]                  write what a failed recording saved in its recovery file
    vigil board --broker mqtts://HOST:PORT [--clinic-id C] [--mqtt-user U] [--mqtt-password-file F]
                [--mqtt-ca CA] [--db PATH] [--full-screen]
    vigil review [SESSION] [--db PATH|URL]
    vigil clinic-setup URL                          make or migrate the clinic record (PostgreSQL)
(``run`` and ``record`` take ``--publish mqtts://HOST:PORT --chair NAME`` and the same broker options.)

``--db`` of sessions, export and review also takes the clinic record, ``postgresql://…``: every
chair's sessions (docs/clinic-record.md).

The package: this module parses and dispatches; :mod:`monitor.cli.devices` (decode, simulate,
devices), :mod:`monitor.cli.record` (record), :mod:`monitor.cli.records` (sessions, export, import,
clinic-setup), :mod:`monitor.cli.verify` (verify, salvage, recover) run the commands. The window commands (run, review, board) are handed to ``window``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import IO

from drivers.registry import SERVED_PROTOCOLS, protocol_names
from drivers.simulator.scenarios import SCENARIOS
from monitor.board.config import add_broker_arguments

DEFAULT_DEVICE = "sim://?scenario=normal"
_COMMANDS = ("run", "decode", "simulate", "devices", "record", "sessions", "export", "import", "review", "board",
             "clinic-setup", "verify", "salvage", "recover")
_CLINIC_DB = "copy this chair's sessions to the clinic record, postgresql://login@server/database (default: the " \
             "clinic_record.url setting; off when empty)"
_READ_DB = "session database file, or the clinic record postgresql://… (default: VIGIL_DB or the user data folder)"



class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2 (or ``status``)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil", description="Vigil: session monitor for ketamine infusion clinics.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="open the monitoring window (the default command)")
    run.add_argument("--device", default=DEFAULT_DEVICE,
                     help=f"device URL (default {DEFAULT_DEVICE}); e.g. /dev/ttyUSB0?protocol=masimo")
    run.add_argument("--db", help="session database file (default: VIGIL_DB or the user data folder)")
    run.add_argument("--full-screen", action="store_true", help="start full screen, as a bedside monitor (F11 toggles)")
    add_broker_arguments(run, chair=True)
    run.add_argument("--clinic-db", help=_CLINIC_DB)

    dec = sub.add_parser("decode", help="decode a raw capture of what a monitor sent; JSON lines")
    dec.add_argument("--protocol", required=True, help=f"one of: {', '.join(protocol_names())}")
    dec.add_argument("file", help="capture file, or - for standard input")
    dec.add_argument("--waves", action="store_true", help="also print waveform samples")
    dec.add_argument("--attributes", action="store_true",
                     help="also print device attributes (serial number, firmware, unknown fields)")

    sim = sub.add_parser("simulate", help="serve the simulated monitor on a pseudo-terminal (hl7: over TCP)")
    sim.add_argument("--protocol", required=True, help=", ".join(SERVED_PROTOCOLS))
    sim.add_argument("--scenario", default="normal", help=f"one of: {', '.join(SCENARIOS)}")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    sim.add_argument("--seed", type=int, default=0, help="random seed of the simulated patient")
    sim.add_argument("--variant", help="; ".join(f"{name}: {'|'.join(variants)}"
                                                 for name, variants in SERVED_PROTOCOLS.items() if len(variants) > 1))
    sim.add_argument("--link", help="keep a symlink at this path pointing at the current device (serial protocols)")
    sim.add_argument("--listen", metavar="[HOST:]PORT",
                     help="hl7: listen here for Vigil's mllp-client:// (default 127.0.0.1, any free port)")
    sim.add_argument("--connect", metavar="HOST:PORT", help="hl7: connect to Vigil's mllp:// listener here")
    sim.add_argument("--bed", default="1", help="hl7: the bed sent in PV1-3 (default 1)")

    dev = sub.add_parser("devices", help="list serial ports on this computer, or find the monitor on them")
    dev.add_argument("--json", action="store_true", help="one JSON object per port")
    dev.add_argument("--probe", nargs="?", const="", metavar="PORT",
                     help="try each serial protocol on PORT (default: every port) and say what answers")

    rec = sub.add_parser("record", help="record a session with no window; alarms as JSON lines")
    rec.add_argument("--device", required=True, help="device URL, e.g. sim://?scenario=desaturation&speed=60")
    rec.add_argument("--duration", required=True, help="seconds to record (device time: simulated seconds for sim://)")
    rec.add_argument("--patient", default="Unattended recording", help="patient display name")
    rec.add_argument("--weight", default="70", help="patient weight, kg (30-250)")
    rec.add_argument("--protocol", default="ketamine-iv", help="ketamine-iv (default) or esketamine")
    rec.add_argument("--dose", help="ketamine mg/kg (default: the clinic's typical dose) or esketamine mg (56|84)")
    rec.add_argument("--lot", default="UNRECORDED", help="esketamine lot number")
    rec.add_argument("--db", help="session database file (default: VIGIL_DB or the user data folder)")
    rec.add_argument("--resume", action="store_true", help="resume a session a crash left open")
    add_broker_arguments(rec, chair=True)
    rec.add_argument("--clinic-db", help=_CLINIC_DB)

    brd = sub.add_parser("board", help="the clinic board: every chair live on one screen (MQTT broker)")
    add_broker_arguments(brd, chair=False)
    brd.add_argument("--db", help="database with the staff accounts who sign in at the board")
    brd.add_argument("--full-screen", action="store_true", help="start full screen")

    exp = sub.add_parser("export", help="export a session (csv, pdf, fhir, hl7, edf, json, rems)")
    exp.add_argument("session", help="session id (see vigil sessions)")
    exp.add_argument("--format", required=True, help="csv, pdf, fhir, hl7, edf, json or rems")
    exp.add_argument("--out", help="output file (default: session-ID.EXT in the current folder); a new or "
                     "regular file, never a device or a link")
    exp.add_argument("--force", action="store_true", help="replace the output file if it exists")
    exp.add_argument("--deidentify", action="store_true", help="HIPAA Safe Harbor de-identified export")
    exp.add_argument("--interval", default="60s", help="resampling interval for csv/fhir/hl7: 60s, 5min, 1h")
    exp.add_argument("--paper", default="A4", help="A4 or Letter (pdf, rems)")
    exp.add_argument("--db", help=_READ_DB)

    imp = sub.add_parser("import", help="restore a session from a json archive made by vigil export")
    imp.add_argument("file", help="archive file")
    imp.add_argument("--db", help="session database file (default: VIGIL_DB or the user data folder)")

    rev = sub.add_parser("review", help="review recorded sessions in a window, with no monitoring")
    rev.add_argument("session", nargs="?", type=int, help="open this session at once (see vigil sessions)")
    rev.add_argument("--db", help=_READ_DB)

    ses = sub.add_parser("sessions", help="list recorded sessions")
    ses.add_argument("--db", help=_READ_DB)
    ses.add_argument("--chair", help="only this chair's sessions (the clinic record)")
    ses.add_argument("--json", action="store_true", help="one JSON object per session")

    cli = sub.add_parser("clinic-setup", help="make or migrate the clinic record on a PostgreSQL server")
    cli.add_argument("url", help="postgresql://admin@server/database, as a role that may create roles and schemas")
    from monitor.cli.verify import add_parsers  # noqa: PLC0415 (it imports CliError from here)

    add_parsers(sub)
    return parser


# ---------------------------------------------------------------------------------- entry
def _check_broker(url: str | None, command: str) -> None:
    from monitor.board.config import BrokerUrlError, parse_broker_url  # noqa: PLC0415

    if url:
        try:
            parse_broker_url(url)
        except BrokerUrlError as exc:
            raise CliError(f"vigil {command}: {exc}") from None


def run_cli(argv: Sequence[str], window: Callable[[argparse.Namespace], int] | None = None,
            out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(argv)
    if not argv or (argv[0] not in _COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = _parser().parse_args(argv)
    try:
        if args.command in ("review", "board"):
            _check_broker(getattr(args, "broker", None), args.command)
            if window is None:
                raise CliError(f"vigil {args.command}: the window is not available in this entry point")
            return window(args)
        if args.command == "run":
            if window is None:
                raise CliError("vigil run: the window is not available in this entry point")
            from drivers.transport import DeviceUrlError, parse_device_url  # noqa: PLC0415

            try:
                parse_device_url(args.device)
            except DeviceUrlError as exc:
                raise CliError(f"vigil run: {exc}") from None
            _check_broker(args.publish, "run")
            return window(args)
        from monitor.cli.devices import cmd_decode, cmd_devices, cmd_simulate  # noqa: PLC0415
        from monitor.cli.record import cmd_record  # noqa: PLC0415
        from monitor.cli.records import cmd_clinic_setup, cmd_export, cmd_import, cmd_sessions  # noqa: PLC0415
        from monitor.cli.verify import cmd_recover, cmd_salvage, cmd_verify  # noqa: PLC0415

        handler = {"decode": cmd_decode, "simulate": cmd_simulate, "devices": cmd_devices,
                   "record": cmd_record, "sessions": cmd_sessions, "export": cmd_export,
                   "import": cmd_import, "clinic-setup": cmd_clinic_setup, "verify": cmd_verify,
                   "salvage": cmd_salvage, "recover": cmd_recover}[args.command]
        return handler(args, out, err)
    except CliError as exc:
        err.write(str(exc) + "\n")
        return exc.status
    except BrokenPipeError:
        return 0
