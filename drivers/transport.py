"""Device URLs: which device, reached how, speaking which protocol.

Forms accepted (Vigil's own options ``protocol`` and ``baud`` are taken out of the query; every
other option stays in the URL handed to ``serial.serial_for_url``)::

    sim://?scenario=hypertensive_surge&speed=10&seed=3[&nibp=300][&waves=0]
    /dev/ttyUSB0?protocol=masimo
    serial:///dev/ttyUSB0?protocol=masimo&baud=9600
    COM3?protocol=nonin
    /dev/pts/7?protocol=intellivue
    socket://127.0.0.1:4001?protocol=intellivue
    loop://?protocol=masimo
    spy:///dev/ttyUSB0?file=trace.txt&protocol=masimo

Bad URLs raise :class:`DeviceUrlError` with a message a nurse or technician can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

import serial.tools.list_ports

from drivers.acquisition import Link, SerialLink
from drivers.registry import UnknownProtocolError, decoder_class, protocol_names

_VIGIL_KEYS = {"protocol", "baud"}
_SIM_KEYS = {"scenario", "speed", "seed", "nibp", "waves"}


class DeviceUrlError(ValueError):
    """A device URL that cannot be used; the message says why and what would work."""


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device URL."""

    url: str
    kind: str                       # "sim" or "serial"
    protocol: str | None = None     # registry name for serial devices
    serial_url: str | None = None   # what serial_for_url receives
    baudrate: int | None = None     # None: the protocol's default
    sim: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short human description ("Masimo on /dev/ttyUSB0", "Simulated monitor: normal")."""
        if self.kind == "sim":
            return f"Simulated monitor: {self.sim.get('scenario', 'normal')}"
        return f"{decoder_class(self.protocol).title} on {self.serial_url}"


def _split_query(url: str) -> tuple[str, list[tuple[str, str]]]:
    base, sep, query = url.partition("?")
    return base, (parse_qsl(query, keep_blank_values=True) if sep else [])


def parse_device_url(url: str) -> DeviceSpec:
    """Parse ``url`` (see the module docstring)."""
    url = url.strip()
    if not url:
        raise DeviceUrlError("no device given: use sim://?scenario=normal or PORT?protocol=NAME")
    base, params = _split_query(url)
    if base.lower().startswith("sim:"):
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

    mine = {k: v for k, v in params if k in _VIGIL_KEYS}
    rest = [(k, v) for k, v in params if k not in _VIGIL_KEYS]
    protocol = mine.get("protocol")
    if not protocol:
        raise DeviceUrlError(
            f"say which protocol the device speaks: add ?protocol=NAME to {base!r} "
            f"(one of: {', '.join(protocol_names())})")
    try:
        decoder_class(protocol)
    except UnknownProtocolError as exc:
        raise DeviceUrlError(str(exc)) from None
    baud = None
    if "baud" in mine:
        try:
            baud = int(mine["baud"])
        except ValueError:
            raise DeviceUrlError(f"baud must be a whole number, not {mine['baud']!r}") from None
        if baud not in serial.SerialBase.BAUDRATES:
            raise DeviceUrlError(f"baud {baud} is not a standard rate (e.g. 9600, 19200, 115200)")
    if base.lower().startswith("serial://"):
        base = base[len("serial://"):]
    if not base:
        raise DeviceUrlError("no port given before ?protocol=…")
    serial_url = base + ("?" + urlencode(rest) if rest else "")
    return DeviceSpec(url=url, kind="serial", protocol=protocol.lower(), serial_url=serial_url, baudrate=baud)


def open_link(url: str | DeviceSpec) -> Link:
    """A :class:`~drivers.acquisition.Link` for ``url`` (not yet opened)."""
    spec = url if isinstance(url, DeviceSpec) else parse_device_url(url)
    if spec.kind == "sim":
        from drivers.simulator.device import SimulatedMonitorLink  # noqa: PLC0415

        return SimulatedMonitorLink(
            scenario=spec.sim.get("scenario", "normal"),
            speed=float(spec.sim.get("speed", 1.0)),
            seed=int(float(spec.sim.get("seed", 0))),
            nibp_interval=float(spec.sim.get("nibp", 300.0)),
            waves=spec.sim.get("waves", "1") not in ("0", "false", "no"),
        )
    cls = decoder_class(spec.protocol)
    settings = cls.serial_defaults.as_kwargs()
    if spec.baudrate:
        settings["baudrate"] = spec.baudrate
    source = f"{spec.protocol}:{spec.serial_url}"
    return SerialLink(spec.serial_url, lambda: cls(source=source), settings, source)


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
    (0x067B, 0x2303): "Prolific USB-serial adapter (RS-232 monitors: Masimo, Philips MIB)",
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
