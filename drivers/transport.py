"""Device URLs: which device, reached how, speaking which protocol.

Forms accepted (Vigil's own options ``protocol`` and ``baud``, and the protocol's options from the
protocol table, are taken out of the query; every other option stays in the URL handed to
``serial.serial_for_url``)::

    sim://?scenario=hypertensive_surge&speed=10&seed=3[&nibp=300][&waves=0]
    mllp://0.0.0.0:2575?protocol=hl7[&bed=3][&patient=ID][&interval=S][&codes=PATH]
    mllp-client://10.0.0.5:2575?protocol=hl7[&bed=3]
    /dev/ttyUSB0?protocol=masimo
    /dev/ttyUSB0?protocol=auto                       (probe the port: drivers.probe)
    serial:///dev/ttyUSB0?protocol=masimo&baud=9600
    COM3?protocol=nonin
    /dev/pts/7?protocol=intellivue
    socket://127.0.0.1:4001?protocol=intellivue
    loop://?protocol=masimo
    spy:///dev/ttyUSB0?file=trace.txt&protocol=masimo

A URL scheme with a row in :data:`URL_SCHEMES` (``sim``; ``mllp``, where Vigil listens for
monitors, and ``mllp-client``, where it connects to a gateway) is handled by that row; anything
else is a serial port or a pyserial URL. Bad URLs raise :class:`DeviceUrlError` with a message a nurse or technician can act on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import serial.tools.list_ports

from drivers.acquisition import Link, SerialLink
from drivers.errors import DeviceError
from drivers.registry import MLLP, SERIAL, ProtocolSpec, UnknownProtocolError, protocol, protocol_names

_VIGIL_KEYS = {"protocol", "baud"}
_SIM_KEYS = {"scenario", "speed", "seed", "nibp", "waves"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


class DeviceUrlError(DeviceError, ValueError):
    """A device URL that cannot be used; the message says why and what would work."""


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device URL.

    ``kind`` is the URL-handler row that parsed it (``"sim"``, ``"serial"``, …); ``protocol`` the
    protocol-table name; ``serial_url`` what ``serial_for_url`` receives (serial devices);
    ``baudrate`` None for the protocol's default; ``sim`` the simulator's options; ``options`` the
    protocol's parsed URL options (passed to its decoder); ``address`` (host, port) for network
    devices.
    """

    url: str
    kind: str
    protocol: str | None = None
    serial_url: str | None = None
    baudrate: int | None = None
    sim: dict[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    address: tuple[str, int] | None = None

    @property
    def label(self) -> str:
        """Short human description ("Masimo … on /dev/ttyUSB0", "Simulated monitor: normal")."""
        return URL_SCHEMES.get(self.kind, _SERIAL_HANDLER).label(self)


@dataclass(frozen=True)
class UrlHandler:
    """One row of the URL-handler table: how a URL scheme is parsed, opened and described.

    ``parse(url, base, params)`` gets the whole URL, the part before ``?`` and the query as
    (key, value) pairs, and returns a :class:`DeviceSpec` or raises :class:`DeviceUrlError`;
    ``open(spec)`` returns a :class:`~drivers.acquisition.Link` (not yet opened); ``label(spec)``
    a short human description. ``transport`` is the protocol-table transport the scheme carries
    (None for the simulator).
    """

    scheme: str
    parse: Callable[[str, str, list[tuple[str, str]]], DeviceSpec]
    open: Callable[[DeviceSpec], Link]
    label: Callable[[DeviceSpec], str]
    transport: str | None = None


def _split_query(url: str) -> tuple[str, list[tuple[str, str]]]:
    base, sep, query = url.partition("?")
    return base, (parse_qsl(query, keep_blank_values=True) if sep else [])


def protocol_row(params: list[tuple[str, str]], base: str, transport: str) -> ProtocolSpec:
    """The protocol-table row named by ``?protocol=`` in ``params``; :class:`DeviceUrlError` when
    it is missing, unknown or arrives on another transport than ``transport``."""
    name = dict(params).get("protocol", "")
    if not name:
        raise DeviceUrlError(
            f"say which protocol the device speaks: add ?protocol=NAME to {base!r} "
            f"(one of: {', '.join(protocol_names())}; or auto to probe a serial port)")
    try:
        row = protocol(name)
    except UnknownProtocolError as exc:
        raise DeviceUrlError(str(exc)) from None
    if row.transport != transport:
        raise DeviceUrlError(_wrong_transport(row.name, row.transport))
    return row


def protocol_options(row: ProtocolSpec, params: list[tuple[str, str]]) -> Mapping[str, Any]:
    """``row``'s options parsed from ``params`` (read-only); :class:`DeviceUrlError` if one is wrong."""
    try:
        return MappingProxyType(row.parse_options({k: v for k, v in params if k in row.options}))
    except ValueError as exc:
        raise DeviceUrlError(str(exc)) from None


def _wrong_transport(name: str, transport: str) -> str:
    if transport == SERIAL:
        return f"{name} is a serial protocol: give a port, e.g. /dev/ttyUSB0?protocol={name}"
    forms = " or ".join(f"{h.scheme}://HOST:PORT?protocol={name}" for h in URL_SCHEMES.values()
                        if h.transport == transport) or "a network URL"
    return f"{name} arrives over the network, not on a serial port: use {forms}"


# ------------------------------------------------------------------------------ sim://
def _parse_sim(url: str, base: str, params: list[tuple[str, str]]) -> DeviceSpec:
    unknown = [k for k, _ in params if k not in _SIM_KEYS]
    if unknown:
        raise DeviceUrlError(f"unknown simulator option {unknown[0]!r}; use {', '.join(sorted(_SIM_KEYS))}")
    sim = dict(params)
    from drivers.simulator.scenarios import SCENARIOS  # noqa: PLC0415 (keeps import light)

    if sim.get("scenario", "normal") not in SCENARIOS:
        raise DeviceUrlError(f"unknown scenario {sim['scenario']!r}; choose one of: {', '.join(SCENARIOS)}")
    for key, low, high in (("speed", 0.1, 10000.0), ("seed", 0, 2**32 - 1), ("nibp", 60, 3600)):
        if key in sim:
            try:
                value = float(sim[key])
            except ValueError:
                raise DeviceUrlError(f"simulator {key} must be a number, not {sim[key]!r}") from None
            if not low <= value <= high:
                raise DeviceUrlError(f"simulator {key} must be between {low:g} and {high:g}")
    return DeviceSpec(url=url, kind="sim", sim=sim)


def _open_sim(spec: DeviceSpec) -> Link:
    from drivers.simulator.device import SimulatedMonitorLink  # noqa: PLC0415

    return SimulatedMonitorLink(
        scenario=spec.sim.get("scenario", "normal"),
        speed=float(spec.sim.get("speed", 1.0)),
        seed=int(float(spec.sim.get("seed", 0))),
        nibp_interval=float(spec.sim.get("nibp", 300.0)),
        waves=spec.sim.get("waves", "1") not in ("0", "false", "no"),
    )


# ------------------------------------------------------------------------------ serial ports
#: ``?protocol=auto``: find the protocol by probing the port (drivers.probe).
AUTO = "auto"


def _parse_serial(url: str, base: str, params: list[tuple[str, str]]) -> DeviceSpec:
    auto = dict(params).get("protocol", "").strip().lower() == AUTO
    if auto:
        if "baud" in dict(params):
            raise DeviceUrlError("protocol=auto probes each protocol at its own rate: leave out baud")
        row_options: Mapping[str, Any] = {}
        name, option_keys = AUTO, set()
    else:
        row = protocol_row(params, base, SERIAL)
        row_options, name, option_keys = protocol_options(row, params), row.name, set(row.options)
    rest = [(k, v) for k, v in params if k not in _VIGIL_KEYS and k not in option_keys]
    baud_text = dict(params).get("baud")
    baud = None
    if baud_text is not None:
        try:
            baud = int(baud_text)
        except ValueError:
            raise DeviceUrlError(f"baud must be a whole number, not {baud_text!r}") from None
        if baud not in serial.SerialBase.BAUDRATES:
            raise DeviceUrlError(f"baud {baud} is not a standard rate (e.g. 9600, 19200, 115200)")
    if base.lower().startswith("serial://"):
        base = base[len("serial://"):]
    if not base:
        raise DeviceUrlError("no port given before ?protocol=…")
    serial_url = base + ("?" + urlencode(rest) if rest else "")
    return DeviceSpec(url=url, kind="serial", protocol=name, serial_url=serial_url, baudrate=baud,
                      options=row_options)


def _open_serial(spec: DeviceSpec) -> Link:
    if spec.protocol == AUTO:
        from drivers.probe import ProbingLink  # noqa: PLC0415

        return ProbingLink(spec.serial_url or "")
    row = protocol(spec.protocol or "")
    cls = row.decoder_class
    settings = cls.serial_defaults.as_kwargs()
    if spec.baudrate:
        settings["baudrate"] = spec.baudrate
    source = f"{row.name}:{spec.serial_url}"
    options = dict(spec.options)
    return SerialLink(spec.serial_url or "", lambda: cls(source=source, **options), settings, source)


def _label_serial(spec: DeviceSpec) -> str:
    if spec.protocol == AUTO:
        return f"Monitor found by probing {spec.serial_url}"
    return f"{protocol(spec.protocol or '').title} on {spec.serial_url}"


_SERIAL_HANDLER = UrlHandler("serial", _parse_serial, _open_serial, _label_serial, SERIAL)


# ------------------------------------------------------------------------------ mllp:// and mllp-client://
def _parse_mllp(url: str, base: str, params: list[tuple[str, str]]) -> DeviceSpec:
    scheme = base.partition(":")[0].lower()
    listening = scheme == "mllp"
    row = protocol_row(params, base, MLLP)
    stray = sorted({k for k, _ in params} - {"protocol", *row.options})
    if stray:
        raise DeviceUrlError(f"{row.name} takes no option {stray[0]!r} (its options: {', '.join(sorted(row.options))})")
    options = protocol_options(row, params)
    try:
        parts = urlsplit(base)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise DeviceUrlError(f"{base!r}: {exc}") from None
    example = "mllp://0.0.0.0:2575" if listening else "mllp-client://10.0.0.5:2575"
    if not host or port is None or parts.path not in ("", "/"):
        raise DeviceUrlError(f"give the host and port, e.g. {example}?protocol={row.name}")
    if port == 0 and not listening:
        raise DeviceUrlError("the gateway's port must be between 1 and 65535")
    if "codes" in options:
        from drivers.hl7.codes import LocalCodes  # noqa: PLC0415

        try:
            LocalCodes.load(str(options["codes"]))
        except ValueError as exc:
            raise DeviceUrlError(str(exc)) from None
    return DeviceSpec(url=url, kind=scheme, protocol=row.name, options=options, address=(host, port))


def _open_mllp(spec: DeviceSpec) -> Link:
    from drivers.hl7.link import MllpClientLink, MllpServerLink  # noqa: PLC0415

    host, port = spec.address or ("", 0)
    cls = MllpServerLink if spec.kind == "mllp" else MllpClientLink
    try:
        return cls(host, port, **dict(spec.options))
    except ValueError as exc:  # the clinic's code table became unreadable since the URL was parsed
        raise DeviceUrlError(str(exc)) from None


def _label_mllp(spec: DeviceSpec) -> str:
    host, port = spec.address or ("", 0)
    title = protocol(spec.protocol or "").title
    return f"{title}, listening on {host}:{port}" if spec.kind == "mllp" else f"{title} from {host}:{port}"

#: URL scheme → handler. A URL whose scheme has no row here is a serial port or pyserial URL.
URL_SCHEMES: dict[str, UrlHandler] = {
    "sim": UrlHandler("sim", _parse_sim, _open_sim,
                      lambda spec: f"Simulated monitor: {spec.sim.get('scenario', 'normal')}"),
    "mllp": UrlHandler("mllp", _parse_mllp, _open_mllp, _label_mllp, MLLP),
    "mllp-client": UrlHandler("mllp-client", _parse_mllp, _open_mllp, _label_mllp, MLLP),
}


def parse_device_url(url: str) -> DeviceSpec:
    """Parse ``url`` (see the module docstring); :class:`DeviceUrlError` says what is wrong."""
    url = url.strip()
    if not url:
        raise DeviceUrlError("no device given: use sim://?scenario=normal or PORT?protocol=NAME")
    base, params = _split_query(url)
    match = _SCHEME.match(base)
    handler = URL_SCHEMES.get(match.group(1).lower()) if match else None
    return (handler or _SERIAL_HANDLER).parse(url, base, params)


def open_link(url: str | DeviceSpec) -> Link:
    """A :class:`~drivers.acquisition.Link` for ``url`` (not yet opened)."""
    spec = url if isinstance(url, DeviceSpec) else parse_device_url(url)
    return URL_SCHEMES.get(spec.kind, _SERIAL_HANDLER).open(spec)


#: Where udev keeps one stable link per USB-serial adapter (named after its vendor, model and
#: serial number), whatever ttyUSBn it was given this time.
BY_ID_DIR = "/dev/serial/by-id"


def stable_port(port: str, by_id_dir: str = BY_ID_DIR) -> str | None:
    """The ``/dev/serial/by-id/…`` link that leads to ``port`` (e.g. ``/dev/ttyUSB0``), when
    ``port`` is a device path that is not such a link already; None otherwise (no such link, no
    such directory, not a path). Never raises."""
    if not port.startswith("/dev/") or os.path.dirname(port) == by_id_dir.rstrip("/"):
        return None
    try:
        target = os.path.realpath(port)
        names = sorted(os.listdir(by_id_dir))
    except (OSError, ValueError):
        return None
    for name in names:
        link = os.path.join(by_id_dir, name)
        try:
            if os.path.realpath(link) == target:
                return link
        except (OSError, ValueError):
            continue
    return None


@dataclass(frozen=True)
class PortInfo:
    """One serial port found on this computer."""

    device: str
    description: str
    hwid: str
    hint: str


_KNOWN_ADAPTERS = {
    (0x0403, 0x6001): "FTDI USB-serial: Nonin Xpod / OEM module, or a generic RS-232 adapter",
    (0x0403, 0x6015): "FTDI USB-serial adapter",
    (0x067B, 0x2303): "Prolific USB-serial adapter (RS-232 monitors: Masimo, Philips MIB, GE/Datex)",
    (0x10C4, 0xEA60): "Silicon Labs USB-serial adapter",
    (0x1A86, 0x7523): "CH340 USB-serial adapter",
}


def list_ports() -> list[PortInfo]:
    """Serial ports on this computer, with a hint for known USB-serial adapters."""
    ports = []
    for info in sorted(serial.tools.list_ports.comports(), key=lambda p: p.device):
        hint = ""
        if info.vid is not None:
            hint = _KNOWN_ADAPTERS.get((info.vid, info.pid), f"USB {info.vid:04x}:{info.pid:04x}")
        ports.append(PortInfo(info.device, info.description or "", info.hwid or "", hint))
    return ports
