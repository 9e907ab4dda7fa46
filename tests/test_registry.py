"""The protocol table and the URL-handler table: one place names every protocol and URL scheme."""

from __future__ import annotations

import pytest

from drivers.acquisition import SerialLink
from drivers.base import Decoder
from drivers.emulation import DeviceEmulator
from drivers.registry import (
    ALIASES, PROTOCOLS, SERIAL, SERVED_PROTOCOLS, UnknownProtocolError, decoder_class, make_emulator, protocol,
    protocol_names,
)
from drivers.transport import URL_SCHEMES, DeviceUrlError, open_link, parse_device_url


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_every_row_names_a_working_decoder(name):
    row = PROTOCOLS[name]
    cls = row.decoder_class
    assert issubclass(cls, Decoder) and cls.protocol == name
    assert row.title and row.setting
    decoder = cls(source="test")
    assert decoder.feed(b"") == [] and decoder.stats.bytes_in == 0
    if row.transport == SERIAL:
        assert row.serial_defaults is cls.serial_defaults
    else:
        assert row.serial_defaults is None
    assert row.probe <= {"listen", "ask"}


@pytest.mark.parametrize("name", sorted(SERVED_PROTOCOLS))
def test_every_served_row_makes_each_variant(name):
    row = PROTOCOLS[name]
    for variant in row.variants:
        emulator = row.make_emulator(variant)
        assert isinstance(emulator, DeviceEmulator)
    assert type(row.make_emulator()) is type(row.make_emulator(row.variants[0]))
    with pytest.raises(ValueError, match="variant must be one of"):
        row.make_emulator("no-such-variant")


def test_names_aliases_and_lookup():
    assert protocol_names() == sorted([*PROTOCOLS, *ALIASES])
    assert protocol("NONIN2") is protocol("nonin") and decoder_class(" Masimo ") is protocol("masimo").decoder_class
    with pytest.raises(UnknownProtocolError, match="unknown protocol 'zoll'; choose one of: .*masimo"):
        protocol("zoll")
    with pytest.raises(ValueError, match="cannot simulate protocol 'nonin7'"):
        make_emulator("nonin7")
    assert set(SERVED_PROTOCOLS) == {name for name, row in PROTOCOLS.items() if row.emulator is not None}


def test_the_simulator_uses_the_table():
    from drivers.simulator import serve

    assert serve.SERVED_PROTOCOLS is SERVED_PROTOCOLS and serve.make_emulator is make_emulator


def test_url_schemes_are_table_rows():
    assert "sim" in URL_SCHEMES
    for scheme, handler in URL_SCHEMES.items():
        assert handler.scheme == scheme
    spec = parse_device_url("SIM://?scenario=apnea")
    assert spec.kind == "sim" and URL_SCHEMES["sim"].label(spec) == spec.label


def test_serial_link_built_from_the_row():
    link = open_link("loop://?protocol=nonin2")
    assert isinstance(link, SerialLink) and link.source == "nonin:loop://"
    assert link.settings == protocol("nonin").serial_defaults.as_kwargs()


def test_unknown_option_of_a_protocol_stays_in_the_pyserial_url():
    spec = parse_device_url("spy:///dev/ttyUSB0?file=t.txt&protocol=masimo&color=1")
    assert spec.serial_url == "spy:///dev/ttyUSB0?file=t.txt&color=1" and dict(spec.options) == {}


def test_missing_protocol_lists_the_table():
    with pytest.raises(DeviceUrlError, match="add \\?protocol=NAME .*intellivue"):
        parse_device_url("/dev/ttyUSB0")


def test_every_probed_row_has_a_probe_recipe():
    from drivers.probe import ASKS, FRAMES_NEEDED

    for name, row in PROTOCOLS.items():
        if "ask" in row.probe:
            assert name in ASKS
        if "listen" in row.probe:
            assert name in FRAMES_NEEDED
    assert list(ASKS) == ["intellivue", "datex", "nonin"]   # the order the host-initiated probes run


def test_protocol_auto_is_a_probing_serial_link():
    from drivers.probe import ProbingLink

    spec = parse_device_url("/dev/ttyUSB0?protocol=AUTO")
    assert (spec.kind, spec.protocol, spec.serial_url) == ("serial", "auto", "/dev/ttyUSB0")
    assert spec.label == "Monitor found by probing /dev/ttyUSB0"
    link = open_link(spec)
    assert isinstance(link, ProbingLink) and link.source == "auto:/dev/ttyUSB0" and link.stats is None
    with pytest.raises(DeviceUrlError, match="leave out baud"):
        parse_device_url("/dev/ttyUSB0?protocol=auto&baud=9600")
