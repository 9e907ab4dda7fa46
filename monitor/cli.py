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
    vigil export SESSION --format csv|pdf|fhir|hl7|edf|json|rems [--out PATH] [--deidentify]
                 [--interval 60s] [--paper A4|Letter] [--db PATH|URL]
    vigil import FILE [--db PATH]
    vigil board --broker mqtts://HOST:PORT [--clinic-id C] [--mqtt-user U] [--mqtt-password-file F]
                [--mqtt-ca CA] [--db PATH] [--full-screen]
    vigil review [SESSION] [--db PATH|URL]
    vigil clinic-setup URL                          make or migrate the clinic record (PostgreSQL)
(``run`` and ``record`` take ``--publish mqtts://HOST:PORT --chair NAME`` and the same broker options.)

``--db`` of sessions, export and review also takes the clinic record, ``postgresql://…``: every
chair's sessions (docs/clinic-record.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO

from drivers.registry import MLLP, SERVED_PROTOCOLS, UnknownProtocolError, protocol, protocol_names
from drivers.simulator.scenarios import SCENARIOS
from monitor.board.config import add_broker_arguments

DEFAULT_DEVICE = "sim://?scenario=normal"
#: DecoderStats fields every decoder has (a protocol's own counts are printed after them).
_BASE_COUNTS = ("bytes_in", "frames_decoded", "frames_rejected", "bytes_skipped", "values_dropped_unit")
_COMMANDS = ("run", "decode", "simulate", "devices", "record", "sessions", "export", "import", "review", "board",
             "clinic-setup")
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
    exp.add_argument("--out", help="output file (default: session-ID.EXT in the current folder)")
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
    return parser


# ---------------------------------------------------------------------------------- clinic-setup
def cmd_clinic_setup(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Make the group roles and apply the schema migrations; prints the schema version."""
    from monitor.store.postgres import ClinicRecordError, safe_url, setup  # noqa: PLC0415

    try:
        version = setup(args.url)
    except ClinicRecordError as exc:
        raise CliError(f"vigil clinic-setup: {exc}", status=1) from None
    out.write(f"{safe_url(args.url)}: clinic record schema version {version}\n")
    return 0


# ---------------------------------------------------------------------------------- decode
def _open_input(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")  # noqa: SIM115 (closed by the caller)
    except OSError as exc:
        raise CliError(f"vigil decode: cannot read {path}: {exc.strerror or exc}", status=1) from None


def cmd_decode(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Decode a capture: one JSON object per line on ``out``, a summary on ``err``."""
    try:
        row = protocol(args.protocol)
    except UnknownProtocolError as exc:
        raise CliError(f"vigil decode: {exc}") from None
    cls = row.decoder_class
    decoder = cls(source=f"{row.name}:{args.file}")
    stream = _open_input(args.file)
    try:
        while True:
            try:
                chunk = stream.read(65536)
            except OSError as exc:
                raise CliError(f"vigil decode: cannot read {args.file}: {exc.strerror or exc}", status=1) from None
            if not chunk:
                break
            for item in decoder.feed(chunk):
                if item.kind == "wave" and not args.waves:
                    continue
                if item.kind == "attribute" and not args.attributes:
                    continue
                record = item.as_record()
                if record.get("quality") == []:
                    del record["quality"]
                out.write(json.dumps(record) + "\n")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    s = decoder.stats
    dropped = f", {s.values_dropped_unit} values dropped (unit not recognised)" if s.values_dropped_unit else ""
    extra = "".join(f", {value} {name.replace('_', ' ')}" for name, value in s.as_dict().items()
                    if name not in _BASE_COUNTS)
    err.write(f"{row.name}: {s.frames_decoded} frames decoded, {s.frames_rejected} frames rejected, "
              f"{s.bytes_skipped} bytes skipped (of {s.bytes_in} bytes){dropped}{extra}\n")
    return 0


# ---------------------------------------------------------------------------------- simulate
def _address(text: str, what: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = (host.strip("[]") if sep else "") or default_host
    try:
        number = int(port)
    except ValueError:
        raise CliError(f"vigil simulate: {what} must be [HOST:]PORT, not {text!r}") from None
    if not 0 <= number <= 65535:
        raise CliError(f"vigil simulate: {what} port must be between 0 and 65535")
    return host, number


def cmd_simulate(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Serve the simulated monitor until SIGINT/SIGTERM; first stdout line = device path (or, for
    HL7, the device URL Vigil should use)."""
    from drivers.simulator.serve import MllpServer, PtyServer  # noqa: PLC0415

    if args.scenario not in SCENARIOS:
        raise CliError(f"vigil simulate: unknown scenario {args.scenario!r}; choose one of: {', '.join(SCENARIOS)}")
    try:
        network = protocol(args.protocol).transport == MLLP
    except UnknownProtocolError:
        network = False  # refused below with the list of what can be simulated
    if network and args.link:
        raise CliError(f"vigil simulate: --link is for serial protocols; {args.protocol} is served over TCP "
                       "(--listen, --connect)")
    if not network and (args.listen or args.connect):
        raise CliError("vigil simulate: --listen and --connect are for network protocols (hl7); "
                       "serial protocols are served on a pty")
    try:
        if network:
            if args.listen and args.connect:
                raise CliError("vigil simulate: give --listen or --connect, not both")
            connect = _address(args.connect, "--connect") if args.connect else None
            listen = None if connect else _address(args.listen or "0", "--listen")
            server: PtyServer | MllpServer = MllpServer(
                scenario=args.scenario, speed=args.speed, seed=args.seed, variant=args.variant, listen=listen,
                connect=connect, bed=args.bed)
        else:
            server = PtyServer(args.protocol, scenario=args.scenario, speed=args.speed, seed=args.seed,
                               variant=args.variant, link=args.link)
        where = server.open()
    except ValueError as exc:
        raise CliError(f"vigil simulate: {exc}") from None
    except OSError as exc:
        raise CliError(f"vigil simulate: cannot listen on {args.listen}: {exc.strerror or exc}", status=1) from None
    out.write(where + "\n")
    out.flush()
    stop = threading.Event()
    _on_signals(lambda: stop.set())
    try:
        server.serve(stop, on_event=lambda line: (err.write(line + "\n"), err.flush()))
    finally:
        server.close()
    return 0


def _on_signals(handler: Callable[[], None]) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: handler())


# ---------------------------------------------------------------------------------- devices
def cmd_devices(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """List serial ports with a hint for known USB-serial adapters; with ``--probe``, find which
    protocol answers on a port (every port when none is named). Exit status 1 when probing found
    nothing anywhere."""
    from drivers.transport import list_ports  # noqa: PLC0415

    if args.probe is not None:
        return _probe(args, out, err, [args.probe] if args.probe else [p.device for p in list_ports()])
    ports = list_ports()
    for port in ports:
        if args.json:
            out.write(json.dumps({"device": port.device, "description": port.description,
                                  "hwid": port.hwid, "hint": port.hint}) + "\n")
        else:
            out.write(f"{port.device}\t{port.description}\t{port.hint or port.hwid}\n")
    if not ports and not args.json:
        err.write("no serial ports found (is the USB-serial adapter plugged in?)\n")
    return 0


def _probe(args: argparse.Namespace, out: IO[str], err: IO[str], ports: list[str]) -> int:
    from drivers.probe import probe_port  # noqa: PLC0415

    if not ports:
        err.write("no serial ports found (is the USB-serial adapter plugged in?)\n")
        return 1
    stop = threading.Event()
    _on_signals(lambda: stop.set())
    found = 0
    for port in ports:
        if stop.is_set():
            break
        if not args.json:
            err.write(f"probing {port} (up to 15 s)…\n")
            err.flush()
        report = probe_port(port, cancel=stop)
        found += report.found is not None
        if args.json:
            out.write(json.dumps(report.as_record()) + "\n")
        elif report.found is not None:
            hit = report.found
            out.write(hit.line() + "\n")
            if hit.note:
                err.write(f"{port}: {hit.note}\n")
            err.write(f"{port}: connect with --device '{hit.url}'\n")
        else:
            out.write(f"{port}  no monitor answered\n")
            err.write(f"{port}: {report.error or '; '.join(report.steps)}\n")
        out.flush()
    return 0 if found else 1


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
        from monitor.export_cli import cmd_export, cmd_import  # noqa: PLC0415
        from monitor.record_cli import cmd_record, cmd_sessions  # noqa: PLC0415

        handler = {"decode": cmd_decode, "simulate": cmd_simulate, "devices": cmd_devices,
                   "record": cmd_record, "sessions": cmd_sessions, "export": cmd_export,
                   "import": cmd_import, "clinic-setup": cmd_clinic_setup}[args.command]
        return handler(args, out, err)
    except CliError as exc:
        err.write(str(exc) + "\n")
        return exc.status
    except BrokenPipeError:
        return 0
