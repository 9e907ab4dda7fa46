"""Protocol names → decoder classes. Decoders are imported on first use."""

from __future__ import annotations

import importlib

from drivers.base import Decoder

#: name -> "module:Class". ``nonin`` is data format #2, the Nonin OEM III / Xpod default.
_PROTOCOLS: dict[str, str] = {
    "masimo": "drivers.masimo:MasimoDecoder",
    "nonin": "drivers.nonin:Nonin2Decoder",
    "nonin2": "drivers.nonin:Nonin2Decoder",
    "nonin7": "drivers.nonin:Nonin7Decoder",
    "nonin8": "drivers.nonin:Nonin8Decoder",
    "nonin-ascii": "drivers.nonin:NoninAsciiDecoder",
    "intellivue": "drivers.intellivue.host:IntelliVueDecoder",
}


class UnknownProtocolError(ValueError):
    """Raised for a protocol name that is not registered; the message lists the known ones."""


def protocol_names() -> list[str]:
    """All registered protocol names, sorted."""
    return sorted(_PROTOCOLS)


def decoder_class(name: str) -> type[Decoder]:
    """The decoder class registered as ``name`` (case-insensitive)."""
    target = _PROTOCOLS.get(name.strip().lower())
    if target is None:
        raise UnknownProtocolError(
            f"unknown protocol {name!r}; choose one of: {', '.join(protocol_names())}"
        )
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
