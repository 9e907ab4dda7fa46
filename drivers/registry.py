"""The protocol table: one row per wire protocol Vigil speaks, used everywhere a protocol is named.

Each :class:`ProtocolSpec` row says, for a protocol name: its human title, the decoder class
(Vigil's side), the transport it arrives on (a serial port, or HL7's MLLP over TCP), its serial
line defaults, the URL options it takes, the emulator ``vigil simulate`` serves with its variants,
how ``vigil devices --probe`` may find it, and what to set on the monitor. ``vigil decode``,
``vigil simulate``, the device-URL parser (:mod:`drivers.transport`), probing (:mod:`drivers.probe`)
and ``vigil devices`` all read this table; adding a protocol is adding a
row. Decoders and emulators are imported on first use, so importing the table is cheap.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from drivers.errors import DeviceError

if TYPE_CHECKING:
    from drivers.base import Decoder, SerialSettings
    from drivers.emulation import DeviceEmulator

#: Transports a protocol can arrive on.
SERIAL, MLLP = "serial", "mllp"


class UnknownProtocolError(DeviceError, ValueError):
    """Raised for a protocol name that is not registered; the message lists the known ones."""


# ------------------------------------------------------------------------------ URL options
def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"must be a number of seconds, not {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"must be between {low:g} and {high:g} seconds")
        return value
    return parse


def _text(text: str) -> str:
    text = text.strip()
    if not text or len(text) > 200 or not text.isprintable():
        raise ValueError("must be a short printable text")
    return text


def _datex_waves(text: str) -> tuple[str, ...]:
    from drivers.datex import parse_wave_option  # noqa: PLC0415 (the table stays import-light)

    return parse_wave_option(text)


def _datex_interval(text: str) -> int:
    if text.strip() not in ("5", "10"):
        raise ValueError("must be 5 or 10 (seconds between displayed-value records)")
    return int(text)


# ------------------------------------------------------------------------------ emulators
def _masimo_emulator(variant: str) -> DeviceEmulator:
    from drivers.masimo import MasimoEmulator  # noqa: PLC0415

    return MasimoEmulator(variant=variant)


def _nonin_emulator(variant: str) -> DeviceEmulator:
    from drivers.nonin import NoninEmulator  # noqa: PLC0415

    return NoninEmulator(fmt=variant if variant == "ascii" else int(variant))


def _intellivue_emulator(variant: str) -> DeviceEmulator:
    from drivers.intellivue.device import IntelliVueEmulator  # noqa: PLC0415

    return IntelliVueEmulator()


def _datex_emulator(variant: str) -> DeviceEmulator:
    from drivers.datex import DatexEmulator  # noqa: PLC0415

    return DatexEmulator()


def _hl7_emulator(variant: str) -> DeviceEmulator:
    from drivers.hl7.device import Hl7Emulator  # noqa: PLC0415

    return Hl7Emulator(variant=variant)


# ------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class ProtocolSpec:
    """One row of the protocol table.

    ``decoder`` is ``"module:Class"`` of the :class:`~drivers.base.Decoder`. ``transport`` is
    :data:`SERIAL` (``PORT?protocol=NAME``) or :data:`MLLP` (``mllp://`` / ``mllp-client://``).
    ``options`` maps the URL options the protocol takes (besides ``protocol`` and ``baud``) to a
    parser of the option's text; the parsed value is passed to the decoder under the same name.
    ``emulator(variant)`` builds what ``vigil simulate`` serves (None: not served); ``variants``
    lists the accepted variants, the first being the default. ``probe`` says how
    :mod:`drivers.probe` may find the device: ``"listen"`` (it sends on its own), ``"ask"`` (it
    answers a harmless request). ``setting`` is what to change on the monitor (README, docs).
    """

    name: str
    title: str
    decoder: str
    transport: str = SERIAL
    options: Mapping[str, Callable[[str], object]] = field(default_factory=dict)
    emulator: Callable[[str], DeviceEmulator] | None = None
    variants: tuple[str, ...] = ()
    probe: frozenset[str] = frozenset()
    setting: str = ""

    @property
    def decoder_class(self) -> type[Decoder]:
        """The decoder class (imported now)."""
        module_name, _, class_name = self.decoder.partition(":")
        return getattr(importlib.import_module(module_name), class_name)

    @property
    def serial_defaults(self) -> SerialSettings | None:
        """Line settings of a serial protocol (None for network protocols)."""
        return self.decoder_class.serial_defaults if self.transport == SERIAL else None

    @property
    def served(self) -> bool:
        """True when ``vigil simulate`` can serve this protocol."""
        return self.emulator is not None

    def make_emulator(self, variant: str | None = None) -> DeviceEmulator:
        """The device-side emulator for ``variant`` (default: the first); ValueError naming the
        choices for a protocol that is not served or a variant it does not have."""
        if self.emulator is None:
            raise ValueError(f"cannot simulate protocol {self.name!r}; choose one of: {', '.join(SERVED_PROTOCOLS)}")
        variant = variant or self.variants[0]
        if variant not in self.variants:
            raise ValueError(f"{self.name} variant must be one of: {', '.join(self.variants)}")
        return self.emulator(variant)

    def parse_options(self, given: Mapping[str, str]) -> dict[str, Any]:
        """Parse this protocol's URL options; ValueError saying which option is wrong and why."""
        out: dict[str, Any] = {}
        for key, text in given.items():
            parser = self.options.get(key)
            if parser is None:
                known = ", ".join(sorted(self.options)) or "none"
                raise ValueError(f"{self.name} takes no option {key!r} (its options: {known})")
            try:
                out[key] = parser(text)
            except ValueError as exc:
                raise ValueError(f"{self.name} option {key} {exc}") from None
        return out


_ROWS: tuple[ProtocolSpec, ...] = (
    ProtocolSpec(
        "masimo", "Masimo (ASCII 1 / AS1 serial output)", "drivers.masimo:MasimoDecoder",
        emulator=_masimo_emulator, variants=("rad8", "radical5", "radical7", "root"),
        probe=frozenset({"listen"}), setting="Serial output mode ASCII 1 (AS1)"),
    ProtocolSpec(
        "nonin", "Nonin pulse oximeter (data format #2)", "drivers.nonin:Nonin2Decoder",
        emulator=_nonin_emulator, variants=("2", "7", "8", "ascii"),
        probe=frozenset({"listen", "ask"}), setting="none: data format #2 is the default"),
    ProtocolSpec(
        "nonin7", "Nonin pulse oximeter (data format #7, 16-bit pleth)", "drivers.nonin:Nonin7Decoder",
        probe=frozenset({"listen"}), setting="none: Vigil selects format #7"),
    ProtocolSpec(
        "nonin8", "Nonin pulse oximeter (data format #8, 1 Hz)", "drivers.nonin:Nonin8Decoder",
        probe=frozenset({"listen"}), setting="none: Vigil selects format #8"),
    ProtocolSpec(
        "nonin-ascii", "Nonin pulse oximeter (ASCII real-time output)", "drivers.nonin:NoninAsciiDecoder",
        probe=frozenset({"listen"}), setting="serial output ASCII"),
    ProtocolSpec(
        "intellivue", "Philips IntelliVue (MIB/RS232 data export)", "drivers.intellivue.host:IntelliVueDecoder",
        emulator=_intellivue_emulator, variants=("mp",), probe=frozenset({"ask"}),
        setting="MIB/RS232 port set to Data Export"),
    ProtocolSpec(
        "datex", "GE / Datex-Ohmeda S/5 Computer Interface", "drivers.datex:DatexDecoder",
        options={"waves": _datex_waves, "interval": _datex_interval},
        emulator=_datex_emulator, variants=("s5",), probe=frozenset({"ask"}),
        setting="serial port set to Computer Interface (S/5 Computer Interface)"),
    ProtocolSpec(
        "hl7", "HL7 v2 ORU^R01 over MLLP (IHE PCD-01)", "drivers.hl7.host:Hl7Decoder", transport=MLLP,
        options={"bed": _text, "patient": _text, "interval": _seconds(0.5, 3600.0), "codes": _text},
        emulator=_hl7_emulator, variants=("pcd01", "loinc", "local"),
        setting="HL7 (ORU^R01) output over TCP/MLLP on, sent to Vigil's address and port"),
)

#: Other names for a row (``nonin2`` is data format #2, the ``nonin`` row).
ALIASES: Mapping[str, str] = MappingProxyType({"nonin2": "nonin"})

#: The table, by protocol name, in the order above (aliases not included).
PROTOCOLS: Mapping[str, ProtocolSpec] = MappingProxyType({row.name: row for row in _ROWS})

#: Protocols ``vigil simulate`` can speak, with the variants each accepts (first = default).
SERVED_PROTOCOLS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {row.name: row.variants for row in _ROWS if row.served})


def protocol_names() -> list[str]:
    """All registered protocol names (aliases included), sorted."""
    return sorted([*PROTOCOLS, *ALIASES])


def protocol(name: str) -> ProtocolSpec:
    """The row for ``name`` (case-insensitive, aliases resolved); UnknownProtocolError otherwise."""
    key = name.strip().lower()
    row = PROTOCOLS.get(ALIASES.get(key, key))
    if row is None:
        raise UnknownProtocolError(f"unknown protocol {name!r}; choose one of: {', '.join(protocol_names())}")
    return row


def decoder_class(name: str) -> type[Decoder]:
    """The decoder class registered as ``name`` (case-insensitive)."""
    return protocol(name).decoder_class


def make_emulator(name: str, variant: str | None = None) -> DeviceEmulator:
    """The device-side emulator of protocol ``name`` (ValueError naming the choices otherwise)."""
    row = PROTOCOLS.get(name.strip().lower())
    if row is None or not row.served:
        raise ValueError(f"cannot simulate protocol {name!r}; choose one of: {', '.join(SERVED_PROTOCOLS)}")
    return row.make_emulator(variant)
