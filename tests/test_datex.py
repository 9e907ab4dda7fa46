"""GE / Datex-Ohmeda S/5 Computer Interface: framing, requests, the decoder and the emulator.

Records in the hand-written tests are laid out here byte by byte from the public record
description (offsets in the comments), not by drivers.datex's own encoders; the emulator's output
is then checked against the decoder and at every split.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.base import decode_all
from drivers.datex import (
    DATA_INVALID, DatexDecoder, DatexEmulator, Unframer, frame, parse_wave_option, phdb_request, wave_request,
)
from drivers.emulation import DeviceSnapshot
from drivers.model import DeviceCondition, NumericObservation, Quality, WaveformChunk
from drivers.registry import decoder_class, protocol
from drivers.serialport import is_pseudo_terminal, open_serial
from drivers.simulator.physiology import PhysiologyModel
from drivers.transport import DeviceUrlError, open_link, parse_device_url

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXISTS_ACTIVE = 0x3


def make(**kwargs) -> DatexDecoder:
    return DatexDecoder(source="test", clock=lambda: T0, **kwargs)


def numerics(items, vital=None):
    return [i for i in items if isinstance(i, NumericObservation) and (vital is None or i.vital == vital)]


# ------------------------------------------------------------------ hand-laid records
def header(length: int, maintype: int, subrecords, r_time: int = 0) -> bytes:
    """40 bytes: r_len i16, r_nbr, dri_level, plug_id u16, r_time u32, 4 reserved, r_maintype i16
    at offset 14, then 8 x (sr_offset i16, sr_type u8) ending with type 0xFF."""
    out = struct.pack("<hBBHIBBHh", length, 1, 9, 0, r_time, 0, 0, 0, maintype)
    descs = list(subrecords) + [(0, 0xFF)]
    descs += [(0, 0)] * (8 - len(descs))
    for offset, kind in descs:
        out += struct.pack("<hB", offset, kind)
    assert len(out) == 40
    return out


def group(status: int, label: int, *values: int, size: int) -> bytes:
    body = struct.pack("<IH", status, label) + struct.pack(f"<{len(values)}h", *values)
    return body + bytes(size - len(body))


def basic(hr=72, imp_rr=15, nibp=(12000, 8000, 9300), nibp_status=EXISTS_ACTIVE, nibp_label=0, t1=3670,
          spo2=9700, pr=71, spo2_status=EXISTS_ACTIVE, et=500, co2_rr=14, ambient=7600, co2_status=EXISTS_ACTIVE,
          ecg_status=EXISTS_ACTIVE) -> bytes:
    """The 270-byte basic class: ECG 0 (16), P1-P4 16..71, NIBP 72 (14), T1-T4 86..117, SpO2 118
    (14), CO2 132 (14), the rest zero."""
    out = group(ecg_status, 0, hr, 0, 0, 0, imp_rr, size=16)
    out += group(0, 0, size=14) * 4
    out += group(nibp_status, nibp_label, *nibp, 0, size=14)
    out += group(EXISTS_ACTIVE, 0, t1, size=8) + group(0, 0, size=8) * 3
    out += group(spo2_status, 0, spo2, pr, 0, 0, size=14)
    out += group(co2_status, 0, et, 0, co2_rr, ambient, size=14)
    assert len(out) == 146
    return out + bytes(270 - len(out))


def displ(seconds: int = 1_764_320_400, cls: int = 0, subtype: int = 1, **values) -> bytes:
    """A displ record: header (maintype 0, one subrecord of type 1 at offset 0) + 278 bytes:
    time u32, 270 class bytes, marker, reserved, cl_drilvl_subt (class in bits 8-11)."""
    sub = struct.pack("<I", seconds) + basic(**values) + struct.pack("<BBH", 0, 0, (cls << 8) | subtype)
    return header(40 + len(sub), 0, [(0, 1)], seconds) + sub


def checked(record: bytes) -> bytes:
    """Frame by hand: 7E, record + sum8 with 7E→7D 5E and 7D→7D 5D, 7E."""
    body = record + bytes([sum(record) % 256])
    escaped = bytearray()
    for byte in body:
        escaped += {0x7E: b"\x7d\x5e", 0x7D: b"\x7d\x5d"}.get(byte, bytes([byte]))
    return b"\x7e" + bytes(escaped) + b"\x7e"


DEVICE_TIME = datetime(2025, 11, 28, 9, 0)  # 1_764_320_400 s after 1970-01-01


def test_framing_escapes_and_checksums_as_specified():
    record = bytes(range(0x70, 0x80)) + bytes(30)    # holds 7D and 7E
    assert frame(record) == checked(record)
    assert b"\x7d\x5d" in frame(record) and b"\x7d\x5e" in frame(record)
    unframer = Unframer()
    assert unframer.feed(b"junk" + frame(record) + frame(record)) == [record, record]
    assert unframer.skipped == 4 and unframer.rejected == 0
    bad = bytearray(frame(record))
    bad[-2] ^= 1
    assert unframer.feed(bytes(bad)) == [] and unframer.rejected == 1


def test_requests_are_laid_out_as_specified():
    record = phdb_request(5)[1:-2]  # 49 bytes, none of them needs escaping
    assert len(record) == 49 and struct.unpack_from("<h", record)[0] == 49
    assert struct.unpack_from("<h", record, 14)[0] == 0                     # r_maintype PHDB
    assert record[16:22] == struct.pack("<hBhB", 0, 0, 0, 0xFF)            # request subrecord, end
    assert record[40:49] == struct.pack("<BhIh", 1, 5, 0, 0)               # displ, 5 s, basic class
    assert phdb_request(5)[-2] == sum(record) % 256
    stop = phdb_request(0)[1:-2]
    assert stop[40:43] == b"\x01\x00\x00"
    waves = wave_request(["ecg", "pleth", "co2"])[1:-2]
    assert len(waves) == 72 and struct.unpack_from("<hh", waves, 14)[0] == 1
    assert waves[40:52] == struct.pack("<hh8B", 0, 0, 1, 8, 9, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
    assert wave_request(["ecg"], start=False)[1:-2][40:42] == b"\x01\x00"


def test_displayed_values_decode_with_units_and_device_time():
    items = make().feed(checked(displ()))
    values = {o.vital: o.value for o in numerics(items)}
    assert values == {"hr": 72, "pr": 71, "spo2": 97, "etco2": pytest.approx(5.0 / 100 * 760, abs=0.01),
                      "rr": 14, "temp": 36.7, "nibp_sys": 120, "nibp_dia": 80, "nibp_mean": 93}
    assert all(o.device_time == DEVICE_TIME and o.sample_time == T0 and not o.quality for o in numerics(items))


def test_markers_and_not_connected_groups_are_missing_with_a_quality_flag():
    items = make().feed(checked(displ(hr=DATA_INVALID, spo2=-32763, pr=-32766, co2_status=0x1, t1=-32762,
                                      ambient=DATA_INVALID)))
    got = {o.vital: (o.value, o.quality) for o in numerics(items)}
    assert got["hr"] == (None, {Quality.INVALID})
    assert got["spo2"] == (None, {Quality.QUESTIONABLE})          # over range
    assert got["pr"] == (None, {Quality.UNAVAILABLE})             # not updated
    assert got["etco2"] == (None, {Quality.UNAVAILABLE})          # CO2 exists, not active
    assert got["temp"] == (None, {Quality.INVALID})               # not calibrated
    assert numerics(make().feed(checked(displ(ambient=0))), "etco2")[0].quality == {Quality.QUESTIONABLE}


def test_probe_off_and_ecg_status_raise_conditions():
    decoder = make()
    items = decoder.feed(checked(displ(spo2_status=0x1, ecg_status=EXISTS_ACTIVE | 1 << 12)))
    assert {(c.code, c.active) for c in items if isinstance(c, DeviceCondition)} == \
        {("no_sensor", True), ("ecg_leads_off", True)}
    assert numerics(items, "spo2")[0].quality == {Quality.SENSOR_OFF}
    assert numerics(items, "hr")[0].quality == {Quality.SENSOR_OFF}
    items = decoder.feed(checked(displ(ecg_status=EXISTS_ACTIVE | 1 << 8)))
    assert {(c.code, c.active) for c in items if isinstance(c, DeviceCondition)} == \
        {("no_sensor", False), ("ecg_leads_off", False), ("artifact", True)}
    assert numerics(items, "hr")[0].quality == {Quality.ARTIFACT}


def test_rr_falls_back_to_impedance_without_a_co2_module():
    items = make().feed(checked(displ(co2_status=0, imp_rr=17)))
    assert numerics(items, "rr")[0].value == 17 and numerics(items, "etco2")[0].quality == {Quality.UNAVAILABLE}


def test_nibp_once_per_reading():
    decoder = make()
    first = decoder.feed(checked(displ()) + checked(displ(seconds=1_764_320_405)))
    assert [o.value for o in numerics(first, "nibp_sys")] == [120]
    assert numerics(first, "nibp_sys")[0].device_time == DEVICE_TIME
    running = decoder.feed(checked(displ(nibp_label=1 << 5)))
    assert not numerics(running, "nibp_sys")
    same_again = decoder.feed(checked(displ(seconds=1_764_320_440)))    # a new cuff cycle, same values
    assert [(o.value, o.device_time) for o in numerics(same_again, "nibp_sys")] == \
        [(120, DEVICE_TIME + timedelta(seconds=40))]
    changed = decoder.feed(checked(displ(nibp=(16500, 9900, 12100))))
    assert [o.value for o in numerics(changed, "nibp_sys")] == [165]
    assert not numerics(decoder.feed(checked(displ(nibp=(DATA_INVALID,) * 3))), "nibp_sys")


def test_records_that_do_not_add_up_are_rejected_and_others_ignored():
    decoder = make()
    good = displ()
    short = struct.pack("<h", len(good) + 1) + good[2:]                              # r_len wrong
    outside = good[:16] + struct.pack("<hB", 900, 1) + good[19:]                      # offset past the end
    ext_class = displ(cls=1)                                                          # ext1: not read
    trend = displ(subtype=2)[:18] + b"\x02" + displ(subtype=2)[19:]                   # 10 s trend subrecord
    alarm = header(40, 4, [])
    items = decoder.feed(b"".join(checked(r) for r in (short, outside, ext_class, trend, alarm)))
    assert decoder.stats.frames_rejected == 2 and decoder.stats.frames_decoded == 3 and not numerics(items)


def test_waveforms_scale_to_vigil_units_and_gaps_are_nan():
    ecg = struct.pack("<hHH4h", 4, 0, 0, 1000, -500, DATA_INVALID, 0)          # µV
    pleth = struct.pack("<hHH2h", 2, 0, 0, 5000, 10000)                         # 1/100 %
    co2 = struct.pack("<hHH2h", 2, 0x1, 0, 500, 500)                            # status: gap
    body = ecg + pleth + co2
    record = header(40 + len(body), 1, [(0, 1), (len(ecg), 8), (len(ecg) + len(pleth), 9)]) + body
    waves = [i for i in make().feed(checked(record)) if isinstance(i, WaveformChunk)]
    assert [(w.channel, w.rate) for w in waves] == [("ecg", 300), ("pleth", 100), ("co2", 25)]
    np.testing.assert_allclose(waves[0].samples, [1.0, -0.5, np.nan, 0.0])
    np.testing.assert_allclose(waves[1].samples, [0.5, 1.0])
    assert np.isnan(waves[2].samples).all()
    assert waves[0].start_time == T0 - timedelta(seconds=4 / 300)


# ------------------------------------------------------------------ host traffic
def test_start_poll_and_stop_ask_for_what_is_wanted():
    decoder = make(waves=("ecg",), interval=10)
    assert decoder.start() == phdb_request(10) + wave_request(["ecg"])
    assert decoder.poll(100.0) == b""
    assert decoder.poll(125.0) == b""
    assert decoder.poll(130.0) == phdb_request(10) + wave_request(["ecg"])      # 3 intervals of silence
    decoder.feed(checked(displ()))
    assert decoder.poll(161.0) == b"" and decoder.poll(180.0) == b""           # data arrived: wait again
    assert decoder.stop() == phdb_request(0) + wave_request(["ecg"], start=False)
    assert decoder.stop() == b"" and make(waves=()).start() == phdb_request(5)


def test_url_options_and_line_settings():
    spec = parse_device_url("/dev/ttyUSB0?protocol=datex&waves=ecg,co2&interval=10")
    assert spec.protocol == "datex" and dict(spec.options) == {"waves": ("ecg", "co2"), "interval": 10}
    link = open_link(spec)
    assert link.settings == {"baudrate": 19200, "bytesize": 8, "parity": "E", "stopbits": 1,
                             "rtscts": True, "xonxoff": False}
    assert link.expected_interval == 10
    assert parse_wave_option("0") == () and parse_wave_option("all") == ("ecg", "pleth", "co2")
    for url, message in (("/dev/ttyUSB0?protocol=datex&interval=7", "interval must be 5 or 10"),
                         ("/dev/ttyUSB0?protocol=datex&waves=eeg", "waves must be 0, 1 or a list")):
        with pytest.raises(DeviceUrlError, match=message):
            parse_device_url(url)
    assert protocol("datex").decoder_class is decoder_class("datex") is DatexDecoder


# ------------------------------------------------------------------ emulator and captures
def snapshot(elapsed=1.0, **values) -> DeviceSnapshot:
    base = {"hr": 126.0, "pr": 125.0, "spo2": 97.0, "rr": 14.0, "etco2": 38.0, "temp": 36.6,
            "nibp_sys": 118.0, "nibp_dia": 76.0, "nibp_mean": 90.0}
    return DeviceSnapshot(time=T0, device_time=DEVICE_TIME, elapsed=elapsed, values={**base, **values},
                          nibp_time=T0)


def test_emulator_is_silent_until_asked_and_stops_when_told():
    emulator = DatexEmulator()
    assert emulator.produce(snapshot(10.0)) == b""
    emulator.receive(phdb_request(5))
    first = make().feed(emulator.produce(snapshot(0.1)))
    assert {o.vital: o.value for o in numerics(first)}["hr"] == 126
    assert len(Unframer().feed(emulator.produce(snapshot(10.0)))) == 2       # every 5 simulated seconds
    emulator.receive(phdb_request(0))
    assert emulator.produce(snapshot(30.0)) == b""
    emulator.receive(phdb_request(5) + wave_request(["pleth"]))
    records = Unframer().feed(emulator.produce(snapshot(1.0)))
    assert len(records) == 1 + 4                                              # displ + 4 wave records/s
    emulator.receive(wave_request(["pleth"], start=False))
    assert len(Unframer().feed(emulator.produce(snapshot(1.0)))) == 0


def test_emulator_reports_probe_off_and_cuff_states():
    emulator = DatexEmulator()
    emulator.receive(phdb_request(5))
    off = DeviceSnapshot(time=T0, device_time=DEVICE_TIME, elapsed=0.1, values={"spo2": None, "pr": None},
                         conditions=frozenset({"sensor_off"}), nibp_in_progress=True)
    items = make().feed(emulator.produce(off))
    assert ("no_sensor", True) in {(c.code, c.active) for c in items if isinstance(c, DeviceCondition)}
    assert not numerics(items, "nibp_sys")


def emulator_capture(seconds: float, scenario: str = "desaturation", step: float = 0.25, waves=True) -> bytes:
    model = PhysiologyModel(scenario, seed=3, start=T0)
    emulator = DatexEmulator()
    emulator.receive(make(waves=("ecg", "pleth", "co2") if waves else ()).start())
    out = bytearray()
    while model.t < seconds:
        out += emulator.produce(model.advance(step).snapshot)
    return bytes(out)


def records(items):
    return [i.as_record() for i in items]


@pytest.mark.slow  # exhaustive: every split offset of the capture
def test_capture_split_at_every_offset_decodes_the_same():
    data = emulator_capture(5.5)
    assert b"\x7d\x5e" in data or b"\x7d\x5d" in data
    whole = decode_all(make(), data)
    assert whole.stats.frames_decoded >= 20 and whole.stats.frames_rejected == 0
    expected = records(whole.items)
    for cut in range(len(data) + 1):
        decoder = make()
        items = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert records(items) == expected, cut
        assert decoder.stats == whole.stats, cut


def test_a_desaturation_capture_shows_the_dip():
    result = decode_all(make(waves=()), emulator_capture(14 * 60, step=1.0, waves=False))
    spo2 = [o.value for o in numerics(result.items, "spo2") if o.value is not None]
    assert max(spo2) >= 96 and min(spo2) < 88
    assert len(numerics(result.items, "nibp_sys")) == 2 + 1     # cuff every 5 min, first at 0:35


def feed_in_pieces(decoder, data: bytes, cuts) -> list:
    """Feed ``data`` cut at ``cuts`` (any order, any values); the items."""
    items, last = [], 0
    for cut in sorted(cuts) + [len(data)]:
        items += decoder.feed(data[last:max(last, cut)])
        last = max(last, cut)
    return items


@FAST
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=5))
def test_random_bytes_never_raise(data, cuts):
    decoder = make()
    feed_in_pieces(decoder, data, cuts)
    s = decoder.stats
    assert s.bytes_in == len(data)
    assert s.bytes_skipped <= len(data)


CAPTURE = emulator_capture(3.0)


CLEAN = decode_all(make(), CAPTURE).stats


@FAST
@given(at=st.integers(0, len(CAPTURE) - 1), byte=st.integers(0, 255), chunk=st.integers(1, 500))
def test_any_changed_byte_is_noticed(at, byte, chunk):
    """sum8 catches every single-byte change inside a frame; a changed flag or escape breaks
    framing: either way the counts differ from the clean capture's."""
    data = bytearray(CAPTURE)
    data[at] = byte
    decoder = make()
    decode_all(decoder, bytes(data), chunk=chunk)
    assert decoder.stats.bytes_in == len(CAPTURE)
    assert (decoder.stats != CLEAN) == (byte != CAPTURE[at])


@FAST
@given(edits=st.lists(st.tuples(st.integers(0, len(CAPTURE) - 1), st.integers(0, 255)), min_size=1, max_size=40),
       chunk=st.integers(1, 500))
def test_corrupted_captures_never_raise(edits, chunk):
    data = bytearray(CAPTURE)
    for at, byte in edits:
        data[at] = byte
    decoder = make()
    items = decode_all(decoder, bytes(data), chunk=chunk).items
    s = decoder.stats
    assert s.bytes_in == len(CAPTURE) and s.frames_decoded <= CLEAN.frames_decoded + len(edits)
    assert all(o.value is None or o.quality or 0 <= o.value < 400 for o in numerics(items))


# ------------------------------------------------------------------ pseudo-terminals
def test_pty_detection_and_relaxation(tmp_path):
    import os
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    link = tmp_path / "monitor"
    link.symlink_to(path)
    try:
        assert is_pseudo_terminal(path) and is_pseudo_terminal(str(link))
        assert not is_pseudo_terminal("/dev/ttyUSB0") and not is_pseudo_terminal("socket://127.0.0.1:1")
        settings_ = protocol("datex").serial_defaults.as_kwargs()
        port = open_serial(str(link), settings_, timeout=0.1)
        try:
            assert (port.rtscts, port.parity, port.baudrate) == (False, "N", 19200)
            port.timeout = 0.3  # reconfiguring a pty opened with even parity fails on Linux
        finally:
            port.close()
        port = open_serial("loop://", settings_)
        assert (port.rtscts, port.parity) == (True, "E")  # anything else gets the protocol's settings
        port.close()
    finally:
        os.close(master)
        os.close(slave)


def test_vigil_decode_reads_a_datex_capture(tmp_path):
    from tests.test_cli import cli

    capture = tmp_path / "s5.bin"
    capture.write_bytes(b"\x00\x01" + checked(displ()) + checked(displ(seconds=1_764_320_405)) + emulator_capture(1.0))
    status, lines, err = cli("decode", "--protocol", "datex", str(capture))
    assert status == 0 and not any(line["kind"] == "wave" for line in lines)
    assert {"kind": "numeric", "vital": "spo2", "value": 97.0, "unit": "%", "device_time": "2025-11-28T09:00:00"} \
        in lines
    assert [line["value"] for line in lines if line.get("vital") == "nibp_sys"] == [120.0]
    assert "datex: " in err and "frames rejected, 2 bytes skipped" in err
    _, with_waves, _ = cli("decode", "--protocol", "datex", "--waves", str(capture))
    assert {line["channel"] for line in with_waves if line["kind"] == "wave"} == {"ecg", "pleth", "co2"}


# ------------------------------------------------------------------ end to end through a pty
def unread(fd: int) -> bytes:
    """What is waiting on a non-blocking terminal, b"" when nothing is."""
    import os

    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""


@pytest.mark.slow
def test_served_datex_through_a_pty_and_told_to_stop():
    import os
    import time

    from tests.test_e2e_pty import Collector, acquire, simulate, stop

    proc, path = simulate("--protocol", "datex", "--scenario", "sensor_off", "--speed", "60")
    col = Collector()
    worker = acquire(f"{path}?protocol=datex", col)
    try:
        assert col.wait(lambda: ("no_sensor", True) in col.conditions() and col.numerics("nibp_sys"), 40)
        assert worker.stop(2.0)
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            time.sleep(0.5)
            while unread(fd):      # what was in flight when Vigil stopped
                pass
            time.sleep(1.5)        # 90 simulated seconds: the monitor would have sent 18 displ records
            assert unread(fd) == b""
        finally:
            os.close(fd)
    finally:
        worker.stop(1.0)
        stop(proc)
    spo2 = [o.value for o in col.numerics("spo2") if o.value is not None]
    assert spo2 and all(90 <= v <= 100 for v in spo2)
    assert any(o.value is None and Quality.SENSOR_OFF in o.quality for o in col.numerics("spo2"))
    assert 90 <= col.numerics("nibp_sys")[0].value <= 160
    with col.lock:
        channels = {i.channel for i in col.items if isinstance(i, WaveformChunk)}
    assert channels == {"ecg", "pleth", "co2"}
    assert worker.link.stats.frames_decoded > 50 and worker.link.stats.frames_rejected == 0


@pytest.mark.slow
def test_vigil_record_from_the_served_datex_monitor_raises_the_desaturation_alarm(tmp_path):
    from tests.test_e2e_pty import simulate, stop
    from tests.test_recording import assert_served_desaturation_recorded, vigil

    proc, path = simulate("--protocol", "datex", "--scenario", "desaturation", "--speed", "30")
    try:
        result = vigil("record", "--device", f"{path}?protocol=datex&waves=0", "--duration", "45",
                       "--db", str(tmp_path / "v.sqlite"))
    finally:
        stop(proc)
    assert_served_desaturation_recorded(result)


def test_fast_waveform_construction_equals_the_validated_one():
    from drivers import model

    samples = np.array([0.25, np.nan, -1.5], np.float32)
    fast = model.wave_chunk("co2", 25.0, T0, samples, "src", "mmHg")
    slow = WaveformChunk(channel="co2", rate=25.0, start_time=T0, samples=samples, unit="mmHg", source="src")
    assert model.TRUSTED_CHUNKS and type(fast) is WaveformChunk
    assert fast.as_record() == slow.as_record() and fast.duration == slow.duration
    assert fast.model_dump(exclude={"samples"}) == slow.model_dump(exclude={"samples"})
    assert fast.samples is samples and fast.model_copy(update={"rate": 50.0}).rate == 50.0
