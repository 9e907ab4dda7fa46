"""IntelliVue numerics in another unit than the catalogue's (issue 9 §5): convertible units are
converted, the dimensionless perfusion indicator "Perf" is kept, and a value dropped for a unit Vigil
cannot convert is counted (decoder stats, `vigil decode`, the device panel), never silently lost."""

from __future__ import annotations

import io
import struct

import pytest
from PySide6.QtCore import QObject, Signal

from drivers.base import DecoderStats
from drivers.intellivue.framing import build_frame
from drivers.model import DeviceAttribute, Quality
from monitor.cli import run_cli
from tests.test_intellivue import (
    CMPD, ETCO2, HR, KPA, MMHG, NIBP, NIBP_DIA, NIBP_MEAN, NIBP_SYS, NU_VAL, PCT, PI, TEMP, ava, decode, make_decoder,
    numerics, nu_obs, observation, poll_reply,
)

DIMLESS, HPA, MBAR, PASCAL, KELVIN = 0x0200, 0x0F02, 0x0F72, 0x0F00, 0x1120
LITRE_PER_MIN = 0x0C00  # a unit no vital of Vigil's is in


def test_perf_sent_dimensionless_is_kept_as_the_perfusion_index():
    decoder = make_decoder()
    items = decode(poll_reply([observation(1, ava(NU_VAL, nu_obs(PI, 0, DIMLESS, -2, 134)))]), decoder=decoder)
    obs = numerics(items)
    assert obs["pi"].value == pytest.approx(1.34) and obs["pi"].unit == "%" and obs["pi"].quality == frozenset()
    assert not [i for i in items if isinstance(i, DeviceAttribute)] and decoder.stats.values_dropped_unit == 0


@pytest.mark.parametrize("unit,exponent,mantissa,vital,expected", [
    (KPA, -1, 53, "etco2", 39.75),       # 5.3 kPa
    (HPA, 0, 53, "etco2", 39.75),        # 53 hPa
    (MBAR, 0, 53, "etco2", 39.75),       # 53 mbar = 53 hPa
    (PASCAL, 0, 5300, "etco2", 39.75),   # 5300 Pa
    (KELVIN, -2, 31015, "temp", 37.0),   # 310.15 K
])
def test_convertible_units_are_converted(unit, exponent, mantissa, vital, expected):
    physio = ETCO2 if vital == "etco2" else TEMP
    decoder = make_decoder()
    obs = numerics(decode(poll_reply([observation(1, ava(NU_VAL, nu_obs(physio, 0, unit, exponent, mantissa)))]),
                          decoder=decoder))
    assert obs[vital].value == pytest.approx(expected, abs=0.01) and obs[vital].quality == frozenset()
    assert decoder.stats.values_dropped_unit == 0


def nibp_in(unit: int, sys_: int = 120) -> bytes:
    """An NIBP object (compound sys/dia/mean, no time stamp) in ``unit``."""
    entries = b"".join(nu_obs(p, 0, unit, 0, v) for p, v in ((NIBP_SYS, sys_), (NIBP_DIA, 80), (NIBP_MEAN, 93)))
    return observation(5, ava(0x092F, struct.pack(">HH", 2, NIBP)), ava(CMPD, struct.pack(">HH", 3, 30) + entries))


def test_a_value_in_an_unknown_unit_is_counted_every_time_it_is_dropped():
    decoder = make_decoder()
    reply = poll_reply([observation(1, ava(NU_VAL, nu_obs(HR, 0, LITRE_PER_MIN, 0, 70))), nibp_in(LITRE_PER_MIN)])
    first = decode(reply, decoder=decoder)
    obs = numerics(first)
    assert obs["hr"].value is None and obs["hr"].quality == frozenset({Quality.INVALID})
    assert [obs[k].value for k in ("nibp_sys", "nibp_dia", "nibp_mean")] == [None] * 3  # reported, not skipped
    assert {i.name: i.value for i in first if isinstance(i, DeviceAttribute)} == {
        "unit_unsupported.hr": "0x0C00", "unit_unsupported.nibp_sys": "0x0C00",
        "unit_unsupported.nibp_dia": "0x0C00", "unit_unsupported.nibp_mean": "0x0C00"}
    assert decoder.stats.values_dropped_unit == 4
    decode(reply, decoder=decoder)  # the same reply again: HR dropped again; the NIBP reading is not new
    assert decoder.stats.values_dropped_unit == 5
    decode(poll_reply([observation(1, ava(NU_VAL, nu_obs(HR, 0, 0x0AA0, 0, 70))), nibp_in(MMHG, 118)]),
           decoder=decoder)
    assert decoder.stats.values_dropped_unit == 5


def test_stats_add_up_over_connections_and_vigil_decode_reports_drops(tmp_path):
    from drivers.intellivue.host import IntelliVueDecoder
    from drivers.transport import SerialLink
    total = DecoderStats(bytes_in=10, frames_decoded=2, values_dropped_unit=1) + DecoderStats(values_dropped_unit=4)
    assert total == DecoderStats(bytes_in=10, frames_decoded=2, values_dropped_unit=5)
    decoders: list[IntelliVueDecoder] = []
    link = SerialLink("loop://", lambda: decoders.append(make_decoder()) or decoders[-1], {}, "intellivue:loop://")
    for dropped in (2, 3):  # two connections: the link's counts keep the first one's
        link.open()
        decoders[-1].stats.values_dropped_unit = dropped
        assert link.stats.values_dropped_unit == sum(d.stats.values_dropped_unit for d in decoders)
        link.close()
    assert link.stats.values_dropped_unit == 5
    capture = tmp_path / "c.bin"
    capture.write_bytes(build_frame(poll_reply([observation(1, ava(NU_VAL, nu_obs(HR, 0, PCT, 0, 70))),
                                                observation(2, ava(NU_VAL, nu_obs(ETCO2, 0, MMHG, 0, 38)))])))
    out, err = io.StringIO(), io.StringIO()
    assert run_cli(["decode", "--protocol", "intellivue", str(capture)], out=out, err=err) == 0
    assert "1 values dropped (unit not recognised)" in err.getvalue()


class _Service(QObject):
    """What the device panel reads of the session service, with a decoder's counts."""

    device_changed = Signal()
    session_changed = Signal()
    batch_received = Signal(list)
    link_changed = Signal(str, str)

    def __init__(self, stats: DecoderStats) -> None:
        super().__init__()
        self.stats = stats
        self.link_state, self.link_detail, self.link_attempt = "connected", "", 0
        self.device_spec, self.device_label, self.recording = None, "IntelliVue MX450", False

    def decoder_stats(self) -> DecoderStats:
        return self.stats


def test_the_device_panel_shows_values_dropped_for_their_unit(qtbot):
    from types import SimpleNamespace as Context

    from ui.device_panel import DevicePanel
    stats = DecoderStats(frames_decoded=40)
    panel = DevicePanel(Context(service=_Service(stats)))  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    assert "40 frames, 0 rejected" in panel.label.full_text and "dropped" not in panel.label.full_text
    stats.values_dropped_unit = 3
    panel.refresh()
    assert "3 values dropped (unit not recognised)" in panel.label.full_text
