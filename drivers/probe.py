"""Finding the monitor on a serial port: which protocol, if any, answers with valid frames.

:func:`probe_port` is what ``vigil devices --probe [PORT]``, a device URL with ``?protocol=auto``
(:class:`ProbingLink`) and the device panel's "Find my monitor" use. It tries the serial
protocols of the protocol table, each at its default line settings, for at most 15 s in all:

1. **Listening** (sends nothing): the port is opened at 9600 8N1 and whatever arrives is fed to
   every protocol that transmits on its own (Masimo AS1, Nonin formats #2, #7, #8 and ASCII) for
   up to :attr:`ProbePlan.listen` seconds, stopping early once one of them has decoded enough
   valid frames cleanly.
2. **Asking**, only when nothing was recognised by listening, one protocol at a time, stopping
   at the first that answers: the IntelliVue association request (115200 8N1; when the monitor
   accepts, the association is released at once), the Datex S/5 request for displayed values
   (19200 8E1; a stop request follows in every case, so the monitor is never left sending), and
   the Nonin format-selection command for format 0, which no Nonin device has: a Nonin answers
   NAK and keeps its format (a lone NAK recognises it).

A device recognised by listening is never sent anything; nothing is sent after a device is
recognised except the undo of the request that found it; no request changes a monitor's mode.
The port is opened with an exclusive lock, so two probes never share it; do not probe a port
Vigil is reading from (the caller knows which one that is).
docs/devices.md lists the bytes each step sends. Pure of Qt; blocking (run it off the UI thread);
``cancel`` (a :class:`threading.Event`) stops it within a tenth of a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import serial

from drivers.acquisition import Link, LinkError, SerialLink
from drivers.base import Decoder, DecoderStats, SerialSettings
from drivers.model import Item
from drivers.registry import PROTOCOLS, SERIAL, ProtocolSpec
from drivers.serialport import PTY_RELAXED, is_pseudo_terminal, open_serial

#: Valid frames a listened-for protocol must decode before it counts as recognised.
FRAMES_NEEDED: Mapping[str, int] = {"masimo": 2, "nonin": 25, "nonin7": 25, "nonin8": 2, "nonin-ascii": 2}


@dataclass(frozen=True)
class ProbePlan:
    """Seconds given to each step (the total is capped at ``budget``)."""

    listen: float = 3.2
    ask: Mapping[str, float] = field(default_factory=lambda: {"intellivue": 2.0, "datex": 6.0, "nonin": 1.0})
    budget: float = 15.0
    #: Least listening time before an early decision (a second line of a 1 Hz device).
    listen_at_least: float = 1.0


@dataclass(frozen=True)
class ProbeHit:
    """What answered: ``protocol`` at ``baudrate``, with ``frames`` valid frames, found by
    ``how`` ("listened" or "asked"); ``note`` says anything the user must know to connect."""

    port: str
    protocol: str
    baudrate: int
    frames: int
    how: str
    note: str = ""

    @property
    def url(self) -> str:
        """The device URL for what was found."""
        return f"{self.port}?protocol={self.protocol}"

    def line(self) -> str:
        """``/dev/ttyUSB0  masimo  9600  3 valid frames``."""
        return f"{self.port}  {self.protocol}  {self.baudrate}  {self.frames} valid frame{'s' if self.frames != 1 else ''}"


@dataclass
class ProbeReport:
    """The outcome of :func:`probe_port`: what answered (None: nothing), each step tried, each
    thing sent (hex), the seconds spent, and an error that stopped it (port cannot be opened)."""

    port: str
    found: ProbeHit | None = None
    steps: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def as_record(self) -> dict[str, object]:
        """A JSON-ready dict (``vigil devices --probe --json``)."""
        hit = self.found
        return {"port": self.port, "protocol": hit.protocol if hit else None, "baudrate": hit.baudrate if hit else None,
                "frames": hit.frames if hit else 0, "how": hit.how if hit else None, "note": hit.note if hit else "",
                "steps": self.steps, "sent": self.sent, "seconds": round(self.seconds, 2), "error": self.error}


# ------------------------------------------------------------------------------ asking
@dataclass(frozen=True)
class _Ask:
    """A host-initiated probe: the request, how to judge the answer, and the undo."""

    describe: str
    query: Callable[[], bytes]
    judge: Callable[[bytes], int]                   # valid frames in the answer
    undo: Callable[[bool], bytes]                   # bytes to send after (answered?)
    note: str = ""
    protocol: str | None = None                     # reported protocol, when not the row's


def _frames(cls: type[Decoder], data: bytes) -> int:
    decoder = cls(source="probe")
    decoder.feed(data)
    return decoder.stats.frames_decoded


def _intellivue() -> _Ask:
    from drivers.intellivue import messages as m  # noqa: PLC0415
    from drivers.intellivue.framing import build_frame  # noqa: PLC0415
    from drivers.intellivue.host import IntelliVueDecoder  # noqa: PLC0415

    return _Ask("the IntelliVue association request", lambda: build_frame(m.build_association_request()),
                lambda data: _frames(IntelliVueDecoder, data),
                lambda answered: build_frame(m.RELEASE_REQUEST) if answered else b"")


def _datex() -> _Ask:
    from drivers.datex import DatexDecoder, phdb_request  # noqa: PLC0415

    return _Ask("the Datex request for displayed values every 5 s", lambda: phdb_request(5),
                lambda data: _frames(DatexDecoder, data), lambda answered: phdb_request(0))


def _nonin() -> _Ask:
    from drivers.nonin import ACK, NAK, format_select_command  # noqa: PLC0415

    def judge(data: bytes) -> int:
        return 1 if len(data) <= 4 and (NAK in data or ACK in data) else 0

    return _Ask("the Nonin format-selection command for format 0 (no such format: answered NAK)",
                lambda: format_select_command(0), judge, lambda answered: b"",
                note="a Nonin answered but sends no format Vigil reads on its own; "
                     "with nonin7 (or nonin8) Vigil selects that format when it connects",
                protocol="nonin7")


#: The host-initiated probes, in the order they are tried.
ASKS: Mapping[str, Callable[[], _Ask]] = {"intellivue": _intellivue, "datex": _datex, "nonin": _nonin}


# ------------------------------------------------------------------------------ the probe
def _settings_text(settings: Mapping[str, object]) -> str:
    flow = " RTS/CTS" if settings.get("rtscts") else ""
    return f"{settings['baudrate']} {settings['bytesize']}{settings['parity']}{settings['stopbits']:g}{flow}"


def _listen_rows(names: Iterable[str] | None) -> list[ProtocolSpec]:
    chosen = PROTOCOLS if names is None else {n: PROTOCOLS[n] for n in names if n in PROTOCOLS}
    return [row for row in chosen.values() if row.transport == SERIAL and "listen" in row.probe]


def _clean(stats: DecoderStats, needed: int) -> bool:
    return (stats.frames_decoded >= needed and stats.frames_rejected * 4 <= stats.frames_decoded
            and stats.bytes_skipped * 4 <= max(stats.bytes_in, 256))


def probe_port(port: str, *, plan: ProbePlan | None = None, protocols: Iterable[str] | None = None,
               cancel: threading.Event | None = None,
               opener: Callable[..., serial.SerialBase] = open_serial) -> ProbeReport:
    """Find which protocol answers on ``port`` (a device path or pyserial URL); see the module
    docstring for the steps and what each sends. ``protocols`` limits the candidates (names of
    the protocol table); ``plan`` the time per step; ``cancel`` stops early. Never raises for
    what happens on the port: an error is in the report."""
    plan = plan or ProbePlan()
    cancel = cancel or threading.Event()
    report = ProbeReport(port)
    started = time.monotonic()
    deadline = started + plan.budget
    candidates = set(protocols) if protocols is not None else set(PROTOCOLS)
    listen_rows = _listen_rows(candidates)
    try:
        handle = opener(port, {"baudrate": 9600}, timeout=0.05, write_timeout=1.0, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        report.error = f"cannot open {port}: {exc}"
        report.seconds = time.monotonic() - started
        return report
    try:
        if listen_rows:
            report.found = _listen(handle, port, listen_rows, plan, deadline, cancel, report)
        for name, make in ASKS.items():
            if report.found is not None or cancel.is_set() or name not in candidates:
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0.2:
                report.steps.append(f"no time left to ask {name}")
                continue
            report.found = _ask(handle, port, PROTOCOLS[name], make(), min(plan.ask.get(name, 1.0), remaining),
                                cancel, report)
    except (serial.SerialException, OSError, ValueError) as exc:
        report.error = f"{port}: {exc}"
    finally:
        try:
            handle.close()
        except (serial.SerialException, OSError):
            pass
    report.seconds = time.monotonic() - started
    return report


def _configure(handle: serial.SerialBase, port: str, settings: Mapping[str, object]) -> None:
    wanted = dict(settings)
    if is_pseudo_terminal(port):  # as drivers.serialport opens it
        wanted.update(PTY_RELAXED)
    handle.apply_settings({**handle.get_settings(), **wanted})


def _listen(handle: serial.SerialBase, port: str, rows: list[ProtocolSpec], plan: ProbePlan, deadline: float,
            cancel: threading.Event, report: ProbeReport) -> ProbeHit | None:
    """Listen at each distinct line setting of ``rows`` in turn; the first clean winner."""
    groups: dict[SerialSettings, list[ProtocolSpec]] = {}
    for row in rows:
        groups.setdefault(row.decoder_class.serial_defaults, []).append(row)
    for line, group in groups.items():
        if cancel.is_set():
            return None
        settings = line.as_kwargs()
        _configure(handle, port, settings)
        decoders = {row.name: row.decoder_class(source="probe") for row in group}
        handle.reset_input_buffer()
        start = time.monotonic()
        stop = min(start + plan.listen, deadline)
        best: tuple[float, int, str] | None = None
        while not cancel.is_set() and time.monotonic() < stop:
            data = handle.read(4096)
            if data:
                for decoder in decoders.values():
                    decoder.feed(data)
            qualified = [(d.stats.bytes_skipped / max(d.stats.bytes_in, 1), -d.stats.frames_decoded, name)
                         for name, d in decoders.items() if _clean(d.stats, FRAMES_NEEDED.get(name, 2))]
            if qualified:
                best = min(qualified)
                if time.monotonic() - start >= plan.listen_at_least:
                    break
        report.steps.append(f"listened {time.monotonic() - start:.1f} s at {_settings_text(settings)} "
                            f"for {', '.join(decoders)}")
        if best is not None:
            name = best[2]
            return ProbeHit(port, name, line.baudrate, decoders[name].stats.frames_decoded, "listened")
    return None


def _ask(handle: serial.SerialBase, port: str, row: ProtocolSpec, ask: _Ask, seconds: float,
         cancel: threading.Event, report: ProbeReport) -> ProbeHit | None:
    line = row.decoder_class.serial_defaults
    settings = line.as_kwargs()
    _configure(handle, port, settings)
    handle.reset_input_buffer()
    query = ask.query()
    _send(handle, query, report)
    received = bytearray()
    frames = 0
    stop = time.monotonic() + seconds
    while not cancel.is_set() and time.monotonic() < stop:
        data = handle.read(4096)
        if data:
            received += data
            frames = ask.judge(bytes(received))
            if frames:
                time.sleep(0.05)                      # the rest of a reply in flight
                received += handle.read(handle.in_waiting or 0)
                frames = max(frames, ask.judge(bytes(received)))
                break
    report.steps.append(f"asked {row.name} at {_settings_text(settings)} with {ask.describe}: "
                        + (f"{frames} valid frame{'s' if frames != 1 else ''}" if frames else "no valid answer"))
    undo = ask.undo(bool(frames))
    if undo:
        _send(handle, undo, report)
    if not frames:
        return None
    return ProbeHit(port, ask.protocol or row.name, line.baudrate, frames, "asked", ask.note)


def _send(handle: serial.SerialBase, data: bytes, report: ProbeReport) -> None:
    report.sent.append(data.hex(" "))
    try:
        handle.write(data)
        handle.flush()
    except serial.SerialTimeoutException:
        report.steps.append("the port would not take the bytes (no handshake from the device?)")


# ------------------------------------------------------------------------------ ?protocol=auto
class ProbingLink(Link):
    """``PORT?protocol=auto``: :func:`probe_port` at the first :meth:`open`, then the serial link
    of the protocol found (kept across reconnections: a cable pull does not change the monitor).
    Opening fails with :class:`~drivers.acquisition.LinkError` saying what was tried when nothing
    answers, and the worker retries with back-off. :attr:`found` is what answered."""

    def __init__(self, port: str, plan: ProbePlan | None = None) -> None:
        self.port = port
        self.plan = plan
        self.open_timeout_s = (plan or ProbePlan()).budget + 10.0   # the first open probes the port
        self.source = f"auto:{port}"
        self.found: ProbeHit | None = None
        self.report: ProbeReport | None = None
        self._link: SerialLink | None = None
        self._cancel = threading.Event()

    @property
    def expected_interval(self) -> float:  # type: ignore[override]  # read-only here: it follows the found link
        """The found protocol's update interval (1 s before anything is found)."""
        return self._link.expected_interval if self._link is not None else 1.0

    @property
    def hold_s(self) -> float:  # type: ignore[override]  # read-only here: it follows the found link
        """What the found protocol's decoder may hold back (0 before anything is found)."""
        return self._link.hold_s if self._link is not None else 0.0

    @property
    def reopen_silent_s(self) -> float | None:  # type: ignore[override]  # read-only here: it follows the found link
        """The found protocol's serial link's (None before anything is found)."""
        return self._link.reopen_silent_s if self._link is not None else None

    def open(self) -> None:
        if self._link is None:
            self._cancel.clear()
            report = probe_port(self.port, plan=self.plan, cancel=self._cancel)
            self.report = report
            if report.found is None:
                raise LinkError(report.error or f"no monitor answered on {self.port} ({'; '.join(report.steps)})")
            self.found = report.found
            row = PROTOCOLS.get(report.found.protocol)
            if row is None:
                raise LinkError(f"{self.port}: found {report.found.protocol}, which is not in the protocol table")
            cls = row.decoder_class
            self._link = SerialLink(self.port, lambda: cls(source=self.source), cls.serial_defaults.as_kwargs(),
                                    self.source)
        self._link.open()

    def read(self, timeout: float) -> list[Item]:
        if self._link is None:
            raise LinkError("link is not open")
        return self._link.read(timeout)

    def service(self, monotonic: float) -> None:
        if self._link is not None:
            self._link.service(monotonic)

    def close(self) -> None:
        if self._link is not None:
            self._link.close()

    def cancel(self) -> None:
        self._cancel.set()
        if self._link is not None:
            self._link.cancel()

    @property
    def stats(self) -> DecoderStats | None:
        return self._link.stats if self._link is not None else None
