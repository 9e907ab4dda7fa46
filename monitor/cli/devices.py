"""``vigil decode``, ``vigil simulate`` and ``vigil devices``: the monitors' side of the command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import IO

from drivers.registry import MLLP, UnknownProtocolError, protocol
from drivers.simulator.scenarios import SCENARIOS
from monitor.cli import CliError

#: DecoderStats fields every decoder has (a protocol's own counts are printed after them).
_BASE_COUNTS = ("bytes_in", "frames_decoded", "frames_rejected", "bytes_skipped", "values_dropped_unit",
                "decoder_errors")


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
    def event(line: str) -> None:
        err.write(line + "\n")
        err.flush()

    try:
        server.serve(stop, on_event=event)
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
