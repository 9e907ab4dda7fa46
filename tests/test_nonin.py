"""Nonin decoders (formats #2, #7, #8, ASCII) and the Nonin device emulator.

Test vectors are written by hand from the public specification (checksums worked out in the
comments), never produced by drivers.nonin's own encoders; the encoders are tested against them.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.base import decode_all
from drivers.emulation import DeviceSnapshot
from drivers.model import DeviceAttribute, DeviceCondition, NumericObservation, Quality, WaveformChunk
from drivers.nonin import (
    ACK,
    NAK,
    Nonin2Decoder,
    Nonin7Decoder,
    Nonin8Decoder,
    NoninAsciiDecoder,
    NoninEmulator,
    encode_ascii_line,
    encode_format2_packet,
    encode_format7_packet,
    encode_format8_frame,
    format_select_command,
    parse_format_select_command,
)
from drivers.registry import decoder_class

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fixed_clock() -> datetime:
    return T0


def make(cls):
    """A decoder for tests of the parsing: the formats without a checksum believe the first frame
    (sync_frames=1; the line-noise gate itself: tests/faults/test_line_noise.py)."""
    if cls in (Nonin8Decoder, NoninAsciiDecoder):
        return cls(source="test", clock=fixed_clock, sync_frames=1)
    return cls(source="test", clock=fixed_clock)


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text)


# ------------------------------------------------------------------ hand-written vectors
# Format #2, one packet: HR 72 (frame 0 HR bits 8-7 = 0, frame 1 bits 6-0 = 0x48), SpO2 97
# (0x61) in frame 2, firmware 0x15 in frame 3. STATUS 0x83 on frame 0 (bit 7, green 0x02,
# SYNC 0x01), 0x82 on the others. PLETH 0x00 on frame 0, 0xFF on frame 24, 0x40 elsewhere.
# CHK = 01 + STATUS + PLETH + FLOAT (mod 256):
#   frame 0:  01+83+00+00 = 84        frame 1:  01+82+40+48 = 10B -> 0B
#   frame 2:  01+82+40+61 = 124 -> 24 frame 3:  01+82+40+15 = D8
#   frames 4-23: 01+82+40+00 = C3     frame 24: 01+82+FF+00 = 182 -> 82
PACKET2_HR72_SPO97 = hexbytes(
    "01 83 00 00 84  01 82 40 48 0B  01 82 40 61 24  01 82 40 15 D8"
    + "  01 82 40 00 C3" * 20
    + "  01 82 FF 00 82"
)

# Format #7, same values with a 16-bit pleth 0x1234 on every frame, STAT2 (frame 7) = 0x01 low
# battery. CHK = STATUS + MSB + LSB + FLOAT (mod 256):
#   frame 0: 83+12+34+00 = C9        frame 1: 82+12+34+48 = 110 -> 10
#   frame 2: 82+12+34+61 = 129 -> 29 frame 3: 82+12+34+15 = DD
#   frame 7: 82+12+34+01 = C9        others:  82+12+34+00 = C8
PACKET7_HR72_SPO97_LOWBAT = hexbytes(
    "83 12 34 00 C9  82 12 34 48 10  82 12 34 61 29  82 12 34 15 DD"
    + "  82 12 34 00 C8" * 3
    + "  82 12 34 01 C9"
    + "  82 12 34 00 C8" * 17
)

# Format #8: HR 72, SpO2 97: STATUS 80 (HR bits 8-7 = 0), HR LSB 48, SpO2 61, STATUS2 00.
FRAME8_HR72_SPO97 = hexbytes("80 48 61 00")
# HR 300 = 0b10_0101100: bits 8-7 = 2 -> STATUS 0x82; bits 6-0 = 0x2C; SpO2 95 = 0x5F.
FRAME8_HR300_SPO95 = hexbytes("82 2C 5F 00")
# Missing values: HR 511 (bits 8-7 = 3 -> STATUS 0x83 | 0x40 disconnected = 0xC3, LSB 0x7F), SpO2 127.
FRAME8_MISSING = hexbytes("C3 7F 7F 00")


def frame2(status: int, pleth: int, flt: int) -> bytes:
    """A format #2 frame from the specification (test-local, independent of the encoder)."""
    return bytes((0x01, status, pleth, flt, (0x01 + status + pleth + flt) & 0xFF))


def frame7(status: int, pleth: int, flt: int) -> bytes:
    """A format #7 frame from the specification (test-local)."""
    msb, lsb = pleth >> 8, pleth & 0xFF
    return bytes((status, msb, lsb, flt, (status + msb + lsb + flt) & 0xFF))


def packet(frame, status: int, hr: int, spo2: int, pleth: int = 0x40, stat2: int = 0,
           firmware: int = 0x15) -> bytes:
    """25 frames: the same STATUS (SYNC added on frame 0), HR/SpO2/firmware/STAT2 floats."""
    floats = [0] * 25
    floats[0], floats[1], floats[2], floats[3], floats[7] = hr >> 7, hr & 0x7F, spo2, firmware, stat2
    return b"".join(frame(status | (0x01 if i == 0 else 0), pleth, floats[i]) for i in range(25))


def summary(items) -> list[tuple]:
    """Comparable form of items (models holding arrays cannot be compared with ==)."""
    out: list[tuple] = []
    for item in items:
        if isinstance(item, NumericObservation):
            out.append(("num", item.vital, item.value, tuple(sorted(q.value for q in item.quality)),
                        item.sample_time))
        elif isinstance(item, WaveformChunk):
            out.append(("wave", item.channel, item.rate, item.start_time,
                        tuple(np.round(np.nan_to_num(item.samples, nan=-1.0), 6).tolist())))
        elif isinstance(item, DeviceCondition):
            out.append(("cond", item.code, item.active))
        elif isinstance(item, DeviceAttribute):
            out.append(("attr", item.name, item.value))
        else:  # pragma: no cover
            raise AssertionError(item)
    return out


def numerics(items) -> list[tuple[str, float | None]]:
    return [(i.vital, i.value) for i in items if isinstance(i, NumericObservation)]


def conditions(items) -> list[tuple[str, bool]]:
    return [(i.code, i.active) for i in items if isinstance(i, DeviceCondition)]


def waves(items) -> list[WaveformChunk]:
    return [i for i in items if isinstance(i, WaveformChunk)]


# ------------------------------------------------------------------ registry and contract
def test_registry_names_map_to_these_decoders():
    assert decoder_class("nonin") is Nonin2Decoder
    assert decoder_class("nonin2") is Nonin2Decoder
    assert decoder_class("nonin7") is Nonin7Decoder
    assert decoder_class("nonin8") is Nonin8Decoder
    assert decoder_class("nonin-ascii") is NoninAsciiDecoder
    for cls in (Nonin2Decoder, Nonin7Decoder, Nonin8Decoder, NoninAsciiDecoder):
        settings_ = cls.serial_defaults
        assert (settings_.baudrate, settings_.bytesize, settings_.parity, settings_.stopbits) == (9600, 8, "N", 1)
    assert Nonin2Decoder.expected_interval == pytest.approx(1 / 3)
    assert Nonin7Decoder.expected_interval == pytest.approx(1 / 3)
    assert Nonin8Decoder.expected_interval == 1.0 and NoninAsciiDecoder.expected_interval == 1.0


# ------------------------------------------------------------------ format #2
def test_format2_hand_vector_gives_pr_spo2_pleth_and_firmware():
    assert len(PACKET2_HR72_SPO97) == 125
    dec = make(Nonin2Decoder)
    items = dec.feed(PACKET2_HR72_SPO97)
    assert numerics(items) == [("pr", 72.0), ("spo2", 97.0)]
    assert [(i.name, i.value) for i in items if isinstance(i, DeviceAttribute)] == [("firmware", "21")]
    (chunk,) = waves(items)
    assert chunk.channel == "pleth" and chunk.rate == 75.0 and len(chunk.samples) == 25
    assert chunk.samples[0] == 0.0 and chunk.samples[24] == 1.0
    assert chunk.samples[1] == pytest.approx(0x40 / 255)
    assert (T0 - chunk.start_time).total_seconds() == pytest.approx(1 / 3)   # ends at the read time
    assert all(isinstance(i, NumericObservation) and i.quality == frozenset() for i in items
               if isinstance(i, NumericObservation))
    assert conditions(items) == []
    assert dec.stats.frames_decoded == 25 and dec.stats.frames_rejected == 0 and dec.stats.bytes_skipped == 0


def test_format2_encoder_matches_the_hand_vector():
    pleth = [0.0] + [0x40 / 255] * 23 + [1.0]
    # frames 0-7 as in the vector; the encoder also fills the averaged slots 8+ (SpO2-D, E-HR…)
    assert encode_format2_packet(97, 72, pleth, firmware=0x15)[:40] == PACKET2_HR72_SPO97[:40]
    decoded = numerics(make(Nonin2Decoder).feed(encode_format2_packet(97, 72, pleth, firmware=0x15)))
    assert decoded == [("pr", 72.0), ("spo2", 97.0)]


def test_format2_missing_values_are_none():
    # HR 511: frame 0 float 0x03, frame 1 float 0x7F; SpO2 127 = 0x7F.
    data = packet(frame2, 0x82, 511, 127)
    assert numerics(make(Nonin2Decoder).feed(data)) == [("pr", None), ("spo2", None)]


def test_format2_hr_bits_8_7_come_from_frame_0():
    data = packet(frame2, 0x82, 300, 95)    # frame 0 float 0x02, frame 1 float 0x2C
    assert data[3] == 0x02 and data[8] == 0x2C
    assert numerics(make(Nonin2Decoder).feed(data)) == [("pr", 300.0), ("spo2", 95.0)]


STATUS2_BITS = [
    (0x40, "no_sensor", {Quality.SENSOR_OFF}),
    (0x20 | 0x02, "artifact", {Quality.ARTIFACT}),
    (0x10, "out_of_track", {Quality.OUT_OF_TRACK}),
    (0x08, "sensor_off", {Quality.SENSOR_OFF}),
    (0x04, "low_perfusion", {Quality.LOW_PERFUSION}),
    (0x06, "marginal_perfusion", set()),
]


@pytest.mark.parametrize(("bits", "code", "quality"), STATUS2_BITS)
@pytest.mark.parametrize(("frame", "cls"), [(frame2, Nonin2Decoder), (frame7, Nonin7Decoder)])
def test_status_bits_become_conditions_and_quality(frame, cls, bits, code, quality):
    dec = make(cls)
    items = dec.feed(packet(frame, 0x82, 72, 97) + packet(frame, 0x80 | bits, 72, 97)
                     + packet(frame, 0x80 | bits, 72, 97) + packet(frame, 0x82, 72, 97))
    assert conditions(items) == [(code, True), (code, False)]
    flagged = [set(i.quality) for i in items if isinstance(i, NumericObservation)]
    assert flagged == [set(), set(), quality, quality, quality, quality, set(), set()]


def test_format2_sensor_off_frames_give_nan_pleth():
    dec = make(Nonin2Decoder)
    (chunk,) = waves(dec.feed(packet(frame2, 0xC0, 511, 127)))
    assert np.isnan(chunk.samples).all()


def test_perfusion_colours_and_hold_between_pulses():
    # Perfusion and artifact are reported only on frames during a pulse: a packet without any
    # perfusion bits keeps the previous colour instead of flickering.
    dec = make(Nonin2Decoder)
    green, red, yellow, none = (packet(frame2, 0x80 | b, 72, 97) for b in (0x02, 0x04, 0x06, 0x00))
    assert conditions(dec.feed(green + red)) == [("low_perfusion", True)]
    assert conditions(dec.feed(none + none)) == []
    assert conditions(dec.feed(yellow)) == [("marginal_perfusion", True), ("low_perfusion", False)]
    assert conditions(dec.feed(green)) == [("marginal_perfusion", False)]


def test_worst_perfusion_in_a_packet_wins():
    floats = [0, 72, 97] + [0] * 22
    frames = [frame2(0x80 | (0x01 if i == 0 else 0) | (0x04 if i == 12 else 0x02), 0x40, floats[i]) for i in range(25)]
    assert conditions(make(Nonin2Decoder).feed(b"".join(frames))) == [("low_perfusion", True)]


def test_format2_resync_after_bad_checksum_counts_honestly():
    good = packet(frame2, 0x82, 72, 97)
    bad = bytearray(good)
    bad[4 + 5 * 10] ^= 0xFF           # checksum of frame 10 broken -> that packet is lost
    dec = make(Nonin2Decoder)
    items = dec.feed(good + bytes(bad) + good)
    assert numerics(items) == [("pr", 72.0), ("spo2", 97.0)] * 2
    s = dec.stats
    assert s.frames_decoded == 74 and s.frames_rejected == 1 and s.bytes_skipped == 5
    assert s.bytes_in == 375


def test_format2_garbage_before_first_sync_and_partial_packet():
    dec = make(Nonin2Decoder)
    tail_of_packet = packet(frame2, 0x82, 72, 97)[5 * 20:]      # frames 20..24, no SYNC
    items = dec.feed(b"\x00\x99\xff" + tail_of_packet + packet(frame2, 0x82, 80, 95))
    assert numerics(items) == [("pr", 80.0), ("spo2", 95.0)]
    assert dec.stats.frames_decoded == 30 and dec.stats.bytes_skipped == 3 and dec.stats.frames_rejected == 0


def test_waveform_chunks_follow_each_other():
    dec = make(Nonin2Decoder)
    chunks = waves(dec.feed(packet(frame2, 0x82, 72, 97) * 3))
    starts = [c.start_time for c in chunks]
    assert (starts[1] - starts[0]).total_seconds() == pytest.approx(1 / 3)
    assert (starts[2] - starts[1]).total_seconds() == pytest.approx(1 / 3)
    assert (T0 - starts[0]).total_seconds() == pytest.approx(1 / 3)


def test_firmware_attribute_only_on_change():
    dec = make(Nonin2Decoder)
    items = dec.feed(packet(frame2, 0x82, 72, 97) * 2 + packet(frame2, 0x82, 72, 97, firmware=0x16))
    assert [(i.name, i.value) for i in items if isinstance(i, DeviceAttribute)] == [("firmware", "21"),
                                                                                   ("firmware", "22")]


def test_conditions_are_emitted_only_on_change():
    dec = make(Nonin2Decoder)
    items = dec.feed(packet(frame2, 0x90 | 0x02, 72, 97) * 5)
    assert conditions(items) == [("out_of_track", True)]


# ------------------------------------------------------------------ format #7
def test_format7_hand_vector_16bit_pleth_and_low_battery():
    assert len(PACKET7_HR72_SPO97_LOWBAT) == 125
    dec = make(Nonin7Decoder)
    items = dec.feed(PACKET7_HR72_SPO97_LOWBAT)
    assert numerics(items) == [("pr", 72.0), ("spo2", 97.0)]
    assert conditions(items) == [("low_battery", True)]
    (chunk,) = waves(items)
    assert chunk.samples[0] == pytest.approx(0x1234 / 65535)
    assert dec.stats.frames_decoded == 25 and dec.stats.frames_rejected == 0


def test_format7_encoder_matches_the_hand_vector():
    pleth = [0x1234 / 65535] * 25
    encoded = encode_format7_packet(97, 72, pleth, ("low_battery",), firmware=0x15)
    # frames 0-7 as in the vector; the encoder also fills the averaged slots 8+ (SpO2-D, E-HR…)
    assert encoded[:40] == PACKET7_HR72_SPO97_LOWBAT[:40] and len(encoded) == 125
    assert numerics(make(Nonin7Decoder).feed(encoded)) == [("pr", 72.0), ("spo2", 97.0)]


def test_format7_start_selects_the_format():
    dec = make(Nonin7Decoder)
    # 70+04+02+07+01 = 7E
    assert dec.start() == hexbytes("02 70 04 02 07 01 7E 03")
    assert Nonin8Decoder().start() == hexbytes("02 70 04 02 08 01 7F 03")   # 70+04+02+08+01 = 7F
    assert format_select_command(2, option=0) == hexbytes("02 70 04 02 02 00 78 03")


def test_format7_ack_between_frames_is_consumed_without_rejecting():
    dec = make(Nonin7Decoder)
    dec.start()
    pk = PACKET7_HR72_SPO97_LOWBAT
    items = dec.feed(bytes([ACK]) + pk[:50] + bytes([ACK]) + pk[50:] + pk)
    assert numerics(items) == [("pr", 72.0), ("spo2", 97.0)] * 2
    assert dec.stats.frames_rejected == 0 and dec.stats.bytes_skipped == 0
    assert conditions(items) == [("low_battery", True)]


def test_format7_nak_raises_command_rejected_and_ack_clears_it():
    dec = make(Nonin7Decoder)
    dec.start()
    pk = PACKET7_HR72_SPO97_LOWBAT
    first = dec.feed(bytes([NAK]) + pk)
    assert ("command_rejected", True) in conditions(first)
    assert dec.stats.frames_rejected == 0
    assert ("command_rejected", False) in conditions(dec.feed(bytes([ACK]) + pk))


def test_format7_nak_while_the_device_goes_on_in_format2():
    dec = make(Nonin7Decoder)
    dec.start()
    fmt2 = packet(frame2, 0x82, 72, 97)
    items = dec.feed(fmt2[:40] + bytes([NAK]) + fmt2[40:])
    assert conditions(items) == [("command_rejected", True)]
    assert numerics(items) == []


# ------------------------------------------------------------------ format #8
def test_format8_hand_vectors():
    dec = make(Nonin8Decoder)
    items = dec.feed(FRAME8_HR72_SPO97 + FRAME8_MISSING)
    assert numerics(items) == [("pr", 72.0), ("spo2", 97.0), ("pr", None), ("spo2", None)]
    assert conditions(items) == [("no_sensor", True)]
    assert dec.stats.frames_decoded == 2 and dec.stats.bytes_skipped == 0
    # HR 300 uses the high bits of STATUS; from 72 to 300 in a second is no patient's: rejected
    assert numerics(make(Nonin8Decoder).feed(FRAME8_HR300_SPO95)) == [("pr", 300.0), ("spo2", 95.0)]
    dec = make(Nonin8Decoder)
    assert numerics(dec.feed(FRAME8_HR72_SPO97 + FRAME8_HR300_SPO95)) == [("pr", 72.0), ("spo2", 97.0)]
    assert dec.stats.frames_decoded == 1 and dec.stats.frames_rejected == 1


STATUS8_BITS = [
    (0x40, 0x00, "no_sensor", {Quality.SENSOR_OFF}),
    (0x20, 0x00, "out_of_track", {Quality.OUT_OF_TRACK}),
    (0x10, 0x00, "low_perfusion", {Quality.LOW_PERFUSION}),
    (0x08, 0x00, "marginal_perfusion", set()),
    (0x04, 0x00, "artifact", {Quality.ARTIFACT}),
    (0x00, 0x08, "sensor_off", {Quality.SENSOR_OFF}),
    (0x00, 0x01, "low_battery", set()),
    (0x00, 0x02, "low_battery", set()),
]


@pytest.mark.parametrize(("status", "status2", "code", "quality"), STATUS8_BITS)
def test_format8_status_bits(status, status2, code, quality):
    flagged = bytes((0x80 | status, 0x48, 0x61, status2))
    items = make(Nonin8Decoder).feed(FRAME8_HR72_SPO97 + flagged + flagged + FRAME8_HR72_SPO97)
    assert conditions(items) == [(code, True), (code, False)]
    assert [set(i.quality) for i in items if isinstance(i, NumericObservation)] == \
        [set(), set(), quality, quality, quality, quality, set(), set()]


def test_format8_encoder_matches_hand_vectors():
    assert encode_format8_frame(97, 72) == FRAME8_HR72_SPO97
    assert encode_format8_frame(95, 300) == FRAME8_HR300_SPO95
    assert encode_format8_frame(None, None, ("no_sensor",)) == FRAME8_MISSING


def test_format8_resyncs_on_implausible_bytes():
    dec = make(Nonin8Decoder)
    # 85 01 E5 00: E5 has bit 7, no frame; E5 00 80 48: 80 has bit 7; 80 48 70 00: SpO2 112 fails
    items = dec.feed(hexbytes("85 01 E5 00") + hexbytes("80 48 70 00") + FRAME8_HR72_SPO97)
    assert numerics(items) == [("pr", 72.0), ("spo2", 97.0)]
    assert dec.stats.frames_rejected == 3 and dec.stats.bytes_skipped == 8   # 85, E5 and 80 48 70


def test_format8_frame_is_decoded_as_soon_as_it_arrives():
    dec = make(Nonin8Decoder)
    assert numerics(dec.feed(FRAME8_HR72_SPO97)) == [("pr", 72.0), ("spo2", 97.0)]


# ------------------------------------------------------------------ ASCII
@pytest.mark.parametrize(("line", "spo2", "pr"), [
    (b"SPO2=097 HR=072\r\n", 97.0, 72.0),
    (b"12:34:56 SPO2=097 HR=072\r\n", 97.0, 72.0),
    (b"SPO2=--- HR=---\r\n", None, None),
    (b"09:00:00 SPO2=--- HR=120\r\n", None, 120.0),
    (b"SPO2=100 HR=250 F\r\n", 100.0, 250.0),
    (b"SPO2=097 HR=072*\r\n", 97.0, 72.0),
    (b"SPO2=097 HR=072B\r\n", 97.0, 72.0),
    (b"SPO2=097 HR=072 F*\n", 97.0, 72.0),
])
def test_ascii_lines(line, spo2, pr):
    dec = make(NoninAsciiDecoder)
    items = dec.feed(line)
    assert numerics(items) == [("pr", pr), ("spo2", spo2)]
    assert all(i.device_time is None for i in items if isinstance(i, NumericObservation))
    assert conditions(items) == []
    assert dec.stats.frames_decoded == 1 and dec.stats.frames_rejected == 0 and dec.stats.bytes_skipped == 0


def test_ascii_suffixes_become_attributes_not_conditions():
    dec = make(NoninAsciiDecoder)
    items = dec.feed(b"SPO2=097 HR=072\r\nSPO2=097 HR=072 F\r\nSPO2=097 HR=072 F\r\n"
                     b"SPO2=097 HR=072*\r\nSPO2=097 HR=072*\r\nSPO2=097 HR=072B\r\n")
    attrs = [(i.name, i.value) for i in items if isinstance(i, DeviceAttribute)]
    assert attrs == [("averaging", "fast"), ("averaging", "standard"), ("event_marker", "1"),
                     ("event_marker", "2")]
    assert conditions(items) == []
    assert all(not i.quality for i in items if isinstance(i, NumericObservation))


def test_ascii_header_garbage_and_overlong_lines():
    dec = make(NoninAsciiDecoder)
    items = dec.feed(b"NONIN 8500 REV 1.2\r\nSPO2=9Z7 HR=072\r\n" + b"x" * 300 + b"\r\nSPO2=098 HR=070\r\n")
    assert [(i.name, i.value) for i in items if isinstance(i, DeviceAttribute)] == [("header", "NONIN 8500 REV 1.2")]
    assert numerics(items) == [("pr", 70.0), ("spo2", 98.0)]
    assert dec.stats.frames_rejected == 2 and dec.stats.frames_decoded == 1


def test_ascii_encoder():
    from datetime import time

    assert encode_ascii_line(97, 72) == b"SPO2=097 HR=072\r\n"
    assert encode_ascii_line(None, None) == b"SPO2=--- HR=---\r\n"
    assert encode_ascii_line(97.4, 71.6, clock=time(9, 5, 7), fast=True, event=True) == \
        b"09:05:07 SPO2=097 HR=072 F*\r\n"


# ------------------------------------------------------------------ split reads
def mixed_stream_2() -> bytes:
    return (b"\x05\x01\x99" + packet(frame2, 0x82, 72, 97) + bytes([ACK]) + packet(frame2, 0xA4, 80, 95)
            + packet(frame2, 0x82, 300, 127)[:70] + packet(frame2, 0xC0, 511, 127) + b"\x01\x82")


SPLIT_CASES = [
    (Nonin2Decoder, mixed_stream_2),
    (Nonin7Decoder, lambda: bytes([NAK]) + PACKET7_HR72_SPO97_LOWBAT + b"\x90\x00" + packet(frame7, 0x86, 90, 93)),
    (Nonin8Decoder, lambda: bytes([ACK]) + FRAME8_HR72_SPO97 + b"\x81\x90" + FRAME8_HR300_SPO95 + FRAME8_MISSING),
    (NoninAsciiDecoder, lambda: b"HDR\r\n12:00:00 SPO2=097 HR=072 F\r\n\r\nSPO2=--- HR=---*\r\nSPO2=09"),
]


@pytest.mark.parametrize(("cls", "stream"), SPLIT_CASES)
def test_every_split_point_gives_the_same_items(cls, stream):
    data = stream()
    whole = make(cls)
    expected = summary(whole.feed(data))
    assert expected
    for cut in range(len(data) + 1):
        dec = make(cls)
        got = summary(dec.feed(data[:cut]) + dec.feed(data[cut:]))
        assert got == expected, cut
        assert dec.stats == whole.stats
    dec = make(cls)
    one_by_one = [item for b in data for item in dec.feed(bytes([b]))]
    assert summary(one_by_one) == expected and dec.stats == whole.stats


# ------------------------------------------------------------------ hypothesis
BINARY = [Nonin2Decoder, Nonin7Decoder, Nonin8Decoder, NoninAsciiDecoder]


def check_stats(dec) -> None:
    s = dec.stats
    assert min(s.frames_decoded, s.frames_rejected, s.bytes_skipped) >= 0
    assert s.bytes_skipped <= s.bytes_in


@FAST
@given(data=st.binary(max_size=1500), cuts=st.lists(st.integers(0, 1500), max_size=6))
@pytest.mark.parametrize("cls", BINARY)
def test_random_bytes_never_raise(cls, data, cuts):
    dec = make(cls)
    dec.start()
    bounds = sorted({0, len(data), *[c for c in cuts if c <= len(data)]})
    for a, b in zip(bounds, bounds[1:]):
        dec.feed(data[a:b])
    check_stats(dec)


def valid_stream(cls) -> bytes:
    if cls is Nonin2Decoder:
        return packet(frame2, 0x82, 72, 97) + packet(frame2, 0xA4, 300, 95) + packet(frame2, 0xC8, 511, 127)
    if cls is Nonin7Decoder:
        return PACKET7_HR72_SPO97_LOWBAT + packet(frame7, 0x96, 60, 90) + packet(frame7, 0x82, 70, 98)
    if cls is Nonin8Decoder:
        return (FRAME8_HR72_SPO97 + FRAME8_HR300_SPO95 + FRAME8_MISSING) * 3
    return b"SPO2=097 HR=072\r\n09:00:00 SPO2=--- HR=---*\r\nSPO2=100 HR=200 F\r\n"


mutation = st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(0, 10_000), st.integers(0, 255))


@FAST
@given(mutations=st.lists(mutation, max_size=8), chunk=st.integers(1, 64))
@pytest.mark.parametrize("cls", BINARY)
def test_mutated_streams_never_raise(cls, mutations, chunk):
    data = bytearray(valid_stream(cls))
    for kind, where, value in mutations:
        where %= len(data) + 1
        if kind == "insert":
            data.insert(where, value)
        elif where < len(data):
            if kind == "flip":
                data[where] ^= value or 1
            else:
                del data[where]
    dec = make(cls)
    for offset in range(0, len(data), chunk):
        dec.feed(bytes(data[offset:offset + chunk]))
    check_stats(dec)


values = st.tuples(st.integers(0, 100), st.integers(20, 300))


@FAST
@given(packets=st.lists(st.tuples(st.binary(max_size=40), values), min_size=1, max_size=6))
@pytest.mark.parametrize(("frame", "cls", "forbidden"), [
    (frame2, Nonin2Decoder, lambda b: b == 0x01),         # no frame can start inside the garbage
    (frame7, Nonin7Decoder, lambda b: b >= 0x80),
])
def test_packets_in_garbage_are_all_recovered(frame, cls, forbidden, packets):
    data, expected = b"", []
    for garbage, (spo2, pr) in packets:
        data += bytes(b for b in garbage if not forbidden(b)) + packet(frame, 0x82, pr, spo2)
        expected += [("pr", float(pr)), ("spo2", float(spo2))]
    assert numerics(decode_all(make(cls), data, chunk=37).items) == expected


steps = st.tuples(st.integers(-4, 4), st.integers(-15, 15))   # within MAX_STEP_SPO2 / MAX_STEP_PR


@FAST
@given(frames=st.lists(st.tuples(st.binary(max_size=12), steps), min_size=1, max_size=10))
def test_format8_frames_in_garbage_are_all_recovered(frames):
    data, expected = b"", []
    spo2, pr = 95, 100
    for garbage, (d_spo2, d_pr) in frames:
        spo2, pr = min(100, spo2 + d_spo2), pr + d_pr
        data += bytes(b for b in garbage if b < 0x80) + bytes((0x80 | (pr >> 7), pr & 0x7F, spo2, 0))
        expected += [("pr", float(pr)), ("spo2", float(spo2))]
    assert numerics(decode_all(make(Nonin8Decoder), data, chunk=5).items) == expected


# ------------------------------------------------------------------ round trips
condition_sets = st.sets(st.sampled_from(["no_sensor", "sensor_off", "artifact", "out_of_track",
                                          "low_perfusion", "marginal_perfusion"]), max_size=2)
maybe = st.one_of(st.none(), st.integers(0, 100))


@FAST
@given(seq=st.lists(st.tuples(maybe, st.one_of(st.none(), st.integers(0, 400)), condition_sets,
                              st.lists(st.floats(0, 1), min_size=25, max_size=25)), min_size=1, max_size=5),
       fmt=st.sampled_from([2, 7]))
def test_packet_round_trip(seq, fmt):
    encode, cls = (encode_format2_packet, Nonin2Decoder) if fmt == 2 else (encode_format7_packet, Nonin7Decoder)
    data = b"".join(encode(spo2, pr, pleth, conds) for spo2, pr, conds, pleth in seq)
    items = make(cls).feed(data)
    expected = []
    for spo2, pr, _, _ in seq:
        expected += [("pr", None if pr is None else float(pr)), ("spo2", None if spo2 is None else float(spo2))]
    assert numerics(items) == expected
    top = 255 if fmt == 2 else 65535
    for chunk, (_, _, conds, pleth) in zip(waves(items), seq):
        if conds & {"no_sensor", "sensor_off"}:
            assert np.isnan(chunk.samples).all()
        else:
            assert np.allclose(chunk.samples, np.array(pleth), atol=0.5 / top + 1e-6)


def steady_values(draws: list[tuple[bool, int, int]], spo2: int = 95,
                  pr: int = 100) -> list[tuple[int | None, int | None]]:
    """(SpO2, PR) a second apart, moving as a patient's do (missing values in between): each draw is
    (missing, SpO2 step, PR step)."""
    out: list[tuple[int | None, int | None]] = []
    for missing, d_spo2, d_pr in draws:
        spo2, pr = min(100, max(0, spo2 + d_spo2)), min(350, max(0, pr + d_pr))
        out.append((None, None) if missing else (spo2, pr))
    return out


readings = st.lists(st.tuples(st.booleans(), st.integers(-4, 4), st.integers(-15, 15)), min_size=1, max_size=8)


@FAST
@given(values=readings, conds=st.lists(st.sets(st.sampled_from(["no_sensor", "sensor_off", "artifact", "out_of_track",
                                                                  "low_perfusion", "low_battery"])),
                                       min_size=8, max_size=8))
def test_format8_round_trip(values, conds):
    dec = make(Nonin8Decoder)
    active: set[str] = set()
    for (spo2, pr), conds in zip(steady_values(values), conds):
        items = dec.feed(encode_format8_frame(spo2, pr, conds))
        assert numerics(items) == [("pr", None if pr is None else float(pr)),
                                   ("spo2", None if spo2 is None else float(spo2))]
        for code, on in conditions(items):
            (active.add if on else active.discard)(code)
        assert active == set(conds)


@FAST
@given(values=readings, fast=st.lists(st.booleans(), min_size=8, max_size=8))
def test_ascii_round_trip(values, fast):
    seq = [(s, p, f) for (s, p), f in zip(steady_values(values), fast)]
    data = b"".join(encode_ascii_line(s, p, fast=f) for s, p, f in seq)
    expected = []
    for s, p, _ in seq:
        expected += [("pr", None if p is None else float(p)), ("spo2", None if s is None else float(s))]
    assert numerics(make(NoninAsciiDecoder).feed(data)) == expected


# ------------------------------------------------------------------ emulator
def snapshot(elapsed: float, spo2: float | None = 97.0, pr: float | None = 72.0, conditions=frozenset(),
             pleth: np.ndarray | None = None) -> DeviceSnapshot:
    n = int(round(elapsed * 100))
    wave = np.full(n, 0.5, np.float32) if pleth is None else pleth
    return DeviceSnapshot(time=T0, device_time=datetime(2026, 11, 28, 10, 0, 0), elapsed=elapsed,
                          values={"spo2": spo2, "pr": pr}, conditions=frozenset(conditions),
                          waves={"pleth": wave}, wave_rates={"pleth": 100.0})


@pytest.mark.parametrize(("fmt", "size"), [(2, 375), (7, 375), (8, 4), ("ascii", len(b"SPO2=097 HR=072\r\n"))])
def test_emulator_cadence_one_second(fmt, size):
    emu = NoninEmulator(fmt=fmt)
    assert len(emu.produce(snapshot(1.0))) == size


@FAST
@given(steps=st.lists(st.floats(0.0, 0.7), min_size=1, max_size=40))
def test_emulator_keeps_cadence_across_any_steps(steps):
    emu = NoninEmulator(fmt=2)
    total = sum(len(emu.produce(snapshot(s))) for s in steps)
    assert total == 5 * math.floor(sum(steps) * 75 + 1e-6)


def test_emulator_packets_decode_with_values_and_conditions():
    emu = NoninEmulator(fmt=2)
    data = b"".join(emu.produce(snapshot(0.02)) for _ in range(50))          # 1 s in 20 ms steps
    data += emu.produce(snapshot(1.0, conditions={"artifact"}))
    items = make(Nonin2Decoder).feed(data)
    assert numerics(items)[:2] == [("pr", 72.0), ("spo2", 97.0)]
    assert ("artifact", True) in conditions(items)
    assert all(np.allclose(c.samples, 128 / 255) for c in waves(items))
    assert len(waves(items)) == 6


def test_emulator_nan_pleth_means_sensor_off():
    emu = NoninEmulator(fmt=7)
    items = make(Nonin7Decoder).feed(emu.produce(snapshot(1.0, pleth=np.full(100, np.nan, np.float32))))
    assert ("sensor_off", True) in conditions(items)
    assert all(np.isnan(c.samples).all() for c in waves(items))


def test_emulator_format_switch_via_receive():
    emu = NoninEmulator(fmt=2)
    host = make(Nonin7Decoder)
    reply = emu.receive(host.start())
    assert reply == bytes([ACK]) and emu.fmt == 7
    items = host.feed(reply + emu.produce(snapshot(1.0)))
    assert numerics(items)[:2] == [("pr", 72.0), ("spo2", 97.0)]
    assert host.stats.frames_rejected == 0 and host.stats.bytes_skipped == 0
    # to format 8, split across calls
    cmd = format_select_command(8)
    assert emu.receive(cmd[:3]) == b"" and emu.receive(cmd[3:]) == bytes([ACK]) and emu.fmt == 8
    assert len(emu.produce(snapshot(2.0))) == 8


def test_emulator_naks_bad_commands():
    emu = NoninEmulator(fmt=2)
    assert emu.receive(format_select_command(13)) == bytes([NAK])           # unsupported format
    bad = bytearray(format_select_command(7))
    bad[6] ^= 1
    assert emu.receive(bytes(bad)) == bytes([NAK]) and emu.fmt == 2        # bad checksum
    assert emu.receive(b"\x00\x42garbage") == b""
    assert parse_format_select_command(hexbytes("02 70 02 02 07 03")) == 7
    assert NoninEmulator(fmt="ascii").receive(format_select_command(7)) == b""
    with pytest.raises(ValueError):
        NoninEmulator(fmt=5)


def test_emulator_ascii_clock_prefix():
    emu = NoninEmulator(fmt="ascii", ascii_clock=True)
    assert emu.produce(snapshot(1.0, spo2=None)) == b"10:00:00 SPO2=--- HR=072\r\n"


# ------------------------------------------------------------------ against a scalar reference
def reference_scan(data: bytes, length: int, valid, header) -> tuple[int, int, int]:
    """The specification's greedy resync, one byte at a time: (decoded, rejected, skipped)."""
    decoded = rejected = skipped = pos = 0
    while pos + length <= len(data):
        if valid(data[pos:pos + length]):
            decoded += 1
            pos += length
        else:
            rejected += header(data, pos)
            skipped += 1
            pos += 1
    return decoded, rejected, skipped


def valid2(f: bytes) -> bool:
    return f[0] == 1 and f[1] >= 0x80 and sum(f[:4]) & 0xFF == f[4]


def valid7(f: bytes) -> bool:
    return f[0] >= 0x80 and sum(f[:4]) & 0xFF == f[4]


def valid8(f: bytes) -> bool:
    hr = ((f[0] & 3) << 7) | f[1]
    return (f[0] >= 0x80 and max(f[1:]) < 0x80 and (f[2] <= 100 or f[2] == 127)
            and (hr <= 350 or hr == 511) and not f[3] & 0x50)   # reserved STATUS2 bits clear


REFERENCE = {
    Nonin2Decoder: (5, valid2, lambda d, p: d[p] == 1 and d[p + 1] >= 0x80,
                    st.builds(lambda s, p, f: frame2(0x80 | s, p, f), st.integers(0, 127), st.integers(0, 255),
                              st.integers(0, 255))),
    Nonin7Decoder: (5, valid7, lambda d, p: d[p] >= 0x80,
                    st.builds(lambda s, p, f: frame7(0x80 | s, p, f), st.integers(0, 127), st.integers(0, 65535),
                              st.integers(0, 255))),
    Nonin8Decoder: (4, valid8, lambda d, p: d[p] >= 0x80,
                    st.builds(lambda s, h, o, s2: bytes((0x80 | s, h, o, s2)), st.integers(0, 127),
                              st.integers(0, 127), st.sampled_from([0, 50, 97, 100, 127]), st.integers(0, 127))),
}


@FAST
@given(data=st.data())
@pytest.mark.parametrize("cls", [Nonin2Decoder, Nonin7Decoder, Nonin8Decoder])
def test_counts_match_the_scalar_greedy_reference(cls, data):
    length, valid, header, frames = REFERENCE[cls]
    parts = data.draw(st.lists(st.one_of(frames, st.binary(max_size=9)), max_size=40))
    stream = bytes(b for b in b"".join(parts) if b not in (ACK, NAK))   # replies are tested apart
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=5))) | {0, len(stream)})
    dec = make(cls)
    for a, b in zip(cuts, cuts[1:]):
        dec.feed(stream[a:b])
    s = dec.stats
    decoded, rejected, skipped = reference_scan(stream, length, valid, header)
    if cls is Nonin8Decoder:   # a framed #8 frame inconsistent with the one before is rejected, not decoded
        assert (s.frames_decoded + s.frames_rejected, s.bytes_skipped) == (decoded + rejected, skipped)
    else:
        assert (s.frames_decoded, s.frames_rejected, s.bytes_skipped) == (decoded, rejected, skipped)


@FAST
@given(data=st.data())
@pytest.mark.parametrize("cls", [Nonin2Decoder, Nonin7Decoder, Nonin8Decoder])
def test_random_mixtures_split_anywhere_give_the_same_items(cls, data):
    parts = data.draw(st.lists(st.one_of(
        st.sampled_from([valid_stream(cls)[:125], valid_stream(cls)[125:250], bytes([ACK]), bytes([NAK])]),
        st.binary(max_size=7)), max_size=12))
    stream = b"".join(parts)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=6))) | {0, len(stream)})
    whole, split = make(cls), make(cls)
    whole.start()
    split.start()
    expected = summary(whole.feed(stream))
    got = []
    for a, b in zip(cuts, cuts[1:]):
        got += split.feed(stream[a:b])
    assert summary(got) == expected
    assert split.stats == whole.stats


@FAST
@given(chunks=st.lists(st.binary(max_size=40), max_size=10), fmt=st.sampled_from([2, 7, 8, "ascii"]))
def test_emulator_receive_never_raises_and_answers_only_ack_or_nak(chunks, fmt):
    emu = NoninEmulator(fmt=fmt)
    for chunk in chunks:
        assert set(emu.receive(chunk)) <= {ACK, NAK}
    assert emu.fmt in (2, 7, 8, "ascii")
    emu.produce(snapshot(0.5))
    assert emu.registry_name in ("nonin", "nonin7", "nonin8", "nonin-ascii")


def test_read_hint_asks_for_the_rest_of_the_packet():
    from drivers.nonin import Nonin2Decoder, encode_format2_packet

    dec = Nonin2Decoder()
    assert dec.read_hint() == (1, 0.0)                 # not yet in step: byte by byte
    packet = encode_format2_packet(97, 72, [0.5] * 25)
    dec.feed(packet + packet[:12])                     # one packet and 2 frames + 2 bytes of the next
    wanted, seconds = dec.read_hint()
    assert wanted == 125 - 12 and seconds == pytest.approx(wanted / 375)
    dec.feed(packet[12:])
    assert dec.read_hint()[0] == 125                   # in step at a packet boundary
