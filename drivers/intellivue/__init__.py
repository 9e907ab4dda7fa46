"""Philips IntelliVue MIB/RS232 data export (MP and MX monitors).

Modules: :mod:`~drivers.intellivue.framing` (frames, FCS, byte stuffing),
:mod:`~drivers.intellivue.messages` (constants, PDU builders and parsers),
:mod:`~drivers.intellivue.host` (:class:`IntelliVueDecoder`, Vigil's side) and
:mod:`~drivers.intellivue.device` (:class:`IntelliVueEmulator`, the monitor's side).
Imported lazily by the registry; importing the package itself loads nothing heavy.
"""
