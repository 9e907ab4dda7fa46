"""Philips IntelliVue MIB/RS232 data export: framing, messages, host decoder, emulator.

Poll replies under test are built here by hand from the layouts of the Data Export Interface
Programming Guide (struct, with comments), not with the driver's own PDU builders; the frame
escaping vector is written out byte by byte with an independent bitwise CRC.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.base import decode_all
from drivers.emulation import DeviceSnapshot
from drivers.intellivue import messages as m
from drivers.intellivue.device import IntelliVueEmulator, build_numerics_reply
from drivers.intellivue.framing import Unframer, build_frame, fcs16, unescape
from drivers.intellivue.host import IntelliVueDecoder
from drivers.model import DeviceAttribute, DeviceCondition, NumericObservation, Quality
from drivers.registry import decoder_class

NOW = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)


def clock() -> datetime:
    return NOW


def make_decoder(**kwargs) -> IntelliVueDecoder:
    return IntelliVueDecoder("iv", clock=clock, **kwargs)


def numerics(items) -> dict[str, NumericObservation]:
    return {i.vital: i for i in items if isinstance(i, NumericObservation)}


def conditions(items) -> dict[str, bool]:
    return {i.code: i.active for i in items if isinstance(i, DeviceCondition)}


# --- an independent reference for the FCS -----------------------------------------------------

def crc_x25_bitwise(data: bytes) -> int:
    """CRC-16/X.25 bit by bit: reflected poly 0x8408, init 0xFFFF, output complemented."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def frame_by_hand(user_data: bytes) -> bytes:
    """A frame built without the driver: header, bitwise FCS (LSB first), escape every byte."""
    raw = b"\x11\x01" + struct.pack(">H", len(user_data)) + user_data
    fcs = crc_x25_bitwise(raw)
    raw += bytes((fcs & 0xFF, fcs >> 8))
    body = bytearray()
    for byte in raw:
        if byte in (0xC0, 0xC1, 0x7D):
            body += bytes((0x7D, byte ^ 0x20))
        else:
            body.append(byte)
    return b"\xc0" + bytes(body) + b"\xc1"


# === framing ==================================================================================

def test_fcs_check_value() -> None:
    assert fcs16(b"123456789") == 0x906E
    assert crc_x25_bitwise(b"123456789") == 0x906E


@given(st.binary(max_size=300))
def test_fcs_matches_bitwise_reference(data: bytes) -> None:
    assert fcs16(data) == crc_x25_bitwise(data)


def test_escaping_in_header_user_data_and_fcs() -> None:
    # 125 bytes of user data: the length field's low byte is 0x7D, so the header needs an
    # escape; the data starts with C0 C1 7D; the last byte 0x04 makes the FCS 0x5CC0, whose
    # low byte (sent first) is C0.
    user_data = b"\xc0\xc1\x7d" + bytes(range(1, 122)) + b"\x04"
    assert len(user_data) == 0x7D
    assert crc_x25_bitwise(b"\x11\x01\x00\x7d" + user_data) == 0x5CC0
    expected = (
        b"\xc0"                                  # start of frame
        + b"\x11\x01\x00" + b"\x7d\x5d"          # header 11 01 00 7D, the 7D escaped
        + b"\x7d\xe0" + b"\x7d\xe1" + b"\x7d\x5d"  # C0 C1 7D escaped
        + bytes(range(1, 122)) + b"\x04"         # plain bytes
        + b"\x7d\xe0" + b"\x5c"                  # FCS 0x5CC0, LSB first, C0 escaped
        + b"\xc1"                                # end of frame
    )
    assert build_frame(user_data) == expected
    unframer = Unframer()
    assert unframer.feed(expected) == [user_data]
    assert unframer.frames_rejected == 0 and unframer.bytes_skipped == 0


def test_unescape_accepts_any_escaped_byte_and_rejects_dangling_escape() -> None:
    assert unescape(b"a\x7d\x20b") == b"a\x00b"
    assert unescape(b"\x7d\x5d\x7d\xe0") == b"\x7d\xc0"
    assert unescape(b"ab\x7d") is None
    assert unescape(b"a\x7d\x7db") is None


def test_unframer_counts_what_it_drops() -> None:
    good = build_frame(b"\xe1\x00hello")
    bad_fcs = bytearray(good)
    bad_fcs[7] ^= 0x01
    aborted = good[:10] + b"\x7d\xc1"
    bad_header = frame_by_hand(b"xy").replace(b"\x11\x01", b"\x11\x02", 1)
    truncated = good[:9]  # cut short by the next C0
    stream = b"junk" + good + bytes(bad_fcs) + aborted + bad_header + truncated + good + b"\xc1tail"
    unframer = Unframer()
    assert unframer.feed(stream) == [b"\xe1\x00hello", b"\xe1\x00hello"]
    assert unframer.frames_rejected == 4  # bad FCS, aborted, bad header, cut short
    assert unframer.bytes_skipped == len(b"junk") + len(b"\xc1tail")
    assert unframer.pending == 0


def test_unframer_bounds_its_buffer() -> None:
    unframer = Unframer()
    unframer.feed(b"\xc0" + b"\x00" * 200_000)
    assert unframer.pending == 0
    assert unframer.frames_rejected == 1
    assert unframer.feed(build_frame(b"\xe1ok")) == [b"\xe1ok"]


# === hand-built poll replies ==================================================================

def ava(attribute_id: int, value: bytes) -> bytes:
    """AVA: attribute_id u16, length u16, value."""
    return struct.pack(">HH", attribute_id, len(value)) + value


def nu_obs(physio: int, state: int, unit: int, exponent: int, mantissa: int) -> bytes:
    """NuObsValue: physio_id u16, state u16, unit_code u16, FLOAT-Type (exp i8, mantissa i24)."""
    return struct.pack(">HHHI", physio, state, unit, ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF))


def observation(handle: int, *avas: bytes) -> bytes:
    """ObservationPoll: obj_handle u16, AttributeList (count u16, length u16, AVAs)."""
    body = b"".join(avas)
    return struct.pack(">HHH", handle, len(avas), len(body)) + body


def poll_reply(
    observations: list[bytes], *, ro_type: int = 2, linked: tuple[int, int] = (3, 1), invoke_id: int = 7,
    extended: bool = True, abs_time: bytes = b"\x20\x24\x05\x01\x12\x00\x00\x00",
) -> bytes:
    """SPpdu · ROapdus · RORS/ROLRS · ActionResult · PollMdibDataReply[Ext] · PollInfoList."""
    obs = b"".join(observations)
    context = struct.pack(">HHH", 0, len(observations), len(obs)) + obs  # SingleContextPoll
    info = struct.pack(">HH", 1, len(context)) + context                   # PollInfoList
    if extended:
        # poll_number, sequence_no, rel_time_stamp, abs_time_stamp, polled_obj_type, attr_grp
        reply = struct.pack(">HHI", 1, 0, 0x1000) + abs_time + struct.pack(">HHH", 1, 6, 0)
        action = 0xF13B
    else:
        # the single-poll layout has no sequence_no
        reply = struct.pack(">HI", 1, 0x1000) + abs_time + struct.pack(">HHH", 1, 6, 0)
        action = 0x0C16
    reply += info
    result = struct.pack(">HHH", 0x21, 0, 0) + struct.pack(">HH", action, len(reply)) + reply
    if ro_type == 5:  # ROLRS: linked_id (state u8, count u8) before invoke_id
        op = bytes(linked) + struct.pack(">HHH", invoke_id, 7, len(result)) + result
    else:             # RORS: invoke_id, command_type 7 (confirmed action), length
        op = struct.pack(">HHH", invoke_id, 7, len(result)) + result
    return struct.pack(">HH", 0xE100, 2) + struct.pack(">HH", ro_type, len(op)) + op


HR, SPO2, PR, PI, RR, AWRR, ETCO2, TEMP = 0x4182, 0x4BB8, 0x4822, 0x4BB0, 0x500A, 0x5012, 0x50B0, 0x4B48
NIBP, NIBP_SYS, NIBP_DIA, NIBP_MEAN = 0x4A04, 0x4A05, 0x4A06, 0x4A07
BPM, PCT, MMHG, RPM, DEGC, KPA, FAHR = 0x0AA0, 0x0220, 0x0F20, 0x0AE0, 0x17A0, 0x0F03, 0x1140
NU_VAL, CMPD, STAMP_ABS, STAMP_REL = 0x0950, 0x094B, 0x0990, 0x0991


def decode(*messages: bytes, decoder: IntelliVueDecoder | None = None) -> list:
    decoder = decoder or make_decoder()
    return decoder.feed(b"".join(build_frame(msg) for msg in messages))


def test_single_rors_reply_skips_unknown_attributes_by_length() -> None:
    reply = poll_reply([
        observation(1, ava(0x092F, struct.pack(">HH", 2, HR)),   # ID_TYPE
                    ava(0x1234, b"\x01\x02\x03\x04\x05"),        # unknown, odd length: skipped
                    ava(NU_VAL, nu_obs(HR, 0, BPM, 0, 72))),
        observation(2, ava(0x7777, b""),                         # unknown, empty
                    ava(NU_VAL, nu_obs(SPO2, 0, PCT, 0, 97))),
        observation(3, ava(NU_VAL, nu_obs(0x4BB4, 0, PCT, 0, 5))),  # a numeric Vigil does not map
    ])
    decoder = make_decoder()
    obs = numerics(decode(reply, decoder=decoder))
    assert set(obs) == {"hr", "spo2"}
    assert obs["hr"].value == 72 and obs["hr"].unit == "bpm" and obs["hr"].quality == frozenset()
    assert obs["spo2"].value == 97
    assert obs["hr"].device_time == datetime(2024, 5, 1, 12, 0, 0)
    assert obs["hr"].sample_time == NOW and obs["hr"].source == "iv"
    assert decoder.stats.frames_decoded == 1 and decoder.stats.frames_rejected == 0


def test_single_poll_layout_without_sequence_no() -> None:
    reply = poll_reply([observation(1, ava(NU_VAL, nu_obs(PR, 0, BPM, 0, 64)))], extended=False)
    assert numerics(decode(reply))["pr"].value == 64


def test_linked_reply_is_one_poll_and_prefers_airway_rr() -> None:
    first = poll_reply([observation(1, ava(NU_VAL, nu_obs(RR, 0, RPM, 0, 18)))], ro_type=5, linked=(1, 1))
    middle = poll_reply([observation(2, ava(NU_VAL, nu_obs(HR, 0, BPM, 0, 80)))], ro_type=5, linked=(2, 2))
    last = poll_reply([observation(3, ava(NU_VAL, nu_obs(AWRR, 0, RPM, 0, 12)))], ro_type=5, linked=(3, 3))
    decoder = make_decoder()
    assert decode(first, middle, decoder=decoder) == []  # nothing until the LAST message
    obs = numerics(decode(last, decoder=decoder))
    assert obs["rr"].value == 12  # airway RR (capnography) wins over impedance RR
    assert obs["hr"].value == 80


def test_rr_source_with_a_value_beats_one_without() -> None:
    reply = poll_reply([
        observation(1, ava(NU_VAL, nu_obs(RR, 0, RPM, 0, 16))),
        observation(2, ava(NU_VAL, nu_obs(AWRR, 0x2000, RPM, 0, 0x7FFFFF))),  # unavailable
    ])
    assert numerics(decode(reply))["rr"].value == 16


def test_negative_exponents_and_mantissas() -> None:
    reply = poll_reply([
        observation(1, ava(NU_VAL, nu_obs(TEMP, 0, DEGC, -1, 368))),   # 36.8 °C
        observation(2, ava(NU_VAL, nu_obs(PI, 0, PCT, -2, 234))),      # 2.34 %
    ])
    obs = numerics(decode(reply))
    assert obs["temp"].value == 36.8 and obs["pi"].value == 2.34
    assert m.decode_float(0x00FFFFFB) == -5.0         # mantissa -5, exponent 0
    assert m.decode_float(0xFEFFFF9C) == -1.0         # mantissa -100, exponent -2
    assert m.decode_float(0x02000003) == 300.0        # mantissa 3, exponent 2


@pytest.mark.parametrize(
    ("mantissa", "quality"),
    [(0x7FFFFF, frozenset()),                      # NaN: just no value
     (0x800000, frozenset({Quality.INVALID})),     # NRes
     (0x7FFFFE, frozenset({Quality.INVALID})),     # +INF
     (0x800002, frozenset({Quality.INVALID}))],    # -INF
)
def test_special_float_values(mantissa: int, quality: frozenset) -> None:
    obs = numerics(decode(poll_reply([observation(1, ava(NU_VAL, nu_obs(HR, 0, BPM, 0, mantissa)))])))
    assert obs["hr"].value is None and obs["hr"].quality == quality


@pytest.mark.parametrize(
    ("state", "value", "quality"),
    [(0x8000, None, {Quality.INVALID}),            # invalid: never pass the value on
     (0x4000, 95.0, {Quality.QUESTIONABLE}),       # questionable: kept, flagged
     (0x2000, None, {Quality.UNAVAILABLE}),        # unavailable
     (0x1000, 95.0, {Quality.QUESTIONABLE}),       # calibration ongoing
     (0x0400, 95.0, {Quality.DEMO}),               # demo data
     (0x0800, 95.0, {Quality.DEMO}),               # test data
     (0x0002, 95.0, set())],                       # in alarm: no quality impact
)
def test_state_flags(state: int, value: float | None, quality: set) -> None:
    obs = numerics(decode(poll_reply([observation(1, ava(NU_VAL, nu_obs(SPO2, state, PCT, 0, 95)))])))
    assert obs["spo2"].value == value and obs["spo2"].quality == frozenset(quality)


def test_demo_condition_follows_the_state_bits() -> None:
    decoder = make_decoder()
    demo = poll_reply([observation(1, ava(NU_VAL, nu_obs(HR, 0x0400, BPM, 0, 60)))])
    real = poll_reply([observation(1, ava(NU_VAL, nu_obs(HR, 0, BPM, 0, 60)))])
    assert conditions(decode(demo, decoder=decoder)) == {"demo_data": True}
    assert conditions(decode(demo, decoder=decoder)) == {}
    assert conditions(decode(real, decoder=decoder)) == {"demo_data": False}


def test_units_are_converted_or_flagged() -> None:
    decoder = make_decoder()
    items = decode(poll_reply([
        observation(1, ava(NU_VAL, nu_obs(ETCO2, 0, KPA, -1, 50))),     # 5.0 kPa
        observation(2, ava(NU_VAL, nu_obs(TEMP, 0, FAHR, -1, 986))),    # 98.6 °F
        observation(3, ava(NU_VAL, nu_obs(HR, 0, PCT, 0, 70))),         # HR in % is nonsense
    ]), decoder=decoder)
    obs = numerics(items)
    assert obs["etco2"].value == pytest.approx(37.5, abs=0.01) and obs["etco2"].unit == "mmHg"
    assert obs["temp"].value == pytest.approx(37.0, abs=0.01)
    assert obs["hr"].value is None and obs["hr"].quality == frozenset({Quality.INVALID})
    attrs = {i.name: i.value for i in items if isinstance(i, DeviceAttribute)}
    assert attrs == {"unit_unsupported.hr": "0x0220"}


def nibp_object(sys_: int, dia: int, mean: int, *stamps: bytes, state: int = 0) -> bytes:
    parts = ((NIBP_SYS, sys_), (NIBP_DIA, dia), (NIBP_MEAN, mean))
    entries = [nu_obs(physio, state, MMHG, 0, value) for physio, value in parts]
    compound = struct.pack(">HH", len(entries), 10 * len(entries)) + b"".join(entries)  # NuObsValueCmp
    return observation(5, ava(0x092F, struct.pack(">HH", 2, NIBP)), ava(CMPD, compound), *stamps)


def test_nibp_emitted_once_per_measurement_time_stamp() -> None:
    decoder = make_decoder()
    stamp = ava(STAMP_ABS, b"\x20\x24\x05\x01\x11\x58\x30\x00")  # 2024-05-01 11:58:30
    items = decode(poll_reply([nibp_object(120, 80, 93, stamp)]), decoder=decoder)
    obs = numerics(items)
    assert [obs[k].value for k in ("nibp_sys", "nibp_dia", "nibp_mean")] == [120, 80, 93]
    assert obs["nibp_sys"].device_time == datetime(2024, 5, 1, 11, 58, 30)
    assert numerics(decode(poll_reply([nibp_object(120, 80, 93, stamp)]), decoder=decoder)) == {}
    # Same values, new measurement time: a new measurement.
    stamp2 = ava(STAMP_ABS, b"\x20\x24\x05\x01\x12\x03\x30\x00")
    obs = numerics(decode(poll_reply([nibp_object(120, 80, 93, stamp2)]), decoder=decoder))
    assert obs["nibp_mean"].value == 93


def test_nibp_without_time_stamp_uses_value_changes() -> None:
    decoder = make_decoder()
    assert len(numerics(decode(poll_reply([nibp_object(110, 70, 83)]), decoder=decoder))) == 3
    assert numerics(decode(poll_reply([nibp_object(110, 70, 83)]), decoder=decoder)) == {}
    obs = numerics(decode(poll_reply([nibp_object(111, 70, 83)]), decoder=decoder))
    assert obs["nibp_sys"].value == 111
    assert obs["nibp_sys"].device_time == datetime(2024, 5, 1, 12, 0, 0)  # the reply's time


def test_nibp_before_any_measurement_is_not_reported() -> None:
    decoder = make_decoder()
    assert numerics(decode(poll_reply([nibp_object(0x7FFFFF, 0x7FFFFF, 0x7FFFFF, state=0x2000)]),
                           decoder=decoder)) == {}
    assert len(numerics(decode(poll_reply([nibp_object(120, 80, 93)]), decoder=decoder))) == 3


def test_unset_absolute_time_gives_no_device_time() -> None:
    reply = poll_reply([observation(1, ava(NU_VAL, nu_obs(HR, 0, BPM, 0, 70)))], abs_time=b"\xff" * 8)
    assert numerics(decode(reply))["hr"].device_time is None
    assert m.decode_abs_time(b"\x20\x24\x13\x01\x00\x00\x00\x00") is None  # month 13
    assert m.decode_abs_time(b"\x20\x24\x05\x01\x12\x3a\x00\x00") is None  # not BCD


@pytest.mark.parametrize("cut", ["obs_len", "attr_len", "context_len", "cmpd_count"])
def test_inconsistent_lengths_reject_the_whole_message(cut: str) -> None:
    good_obs = observation(1, ava(NU_VAL, nu_obs(HR, 0, BPM, 0, 72)))
    if cut == "obs_len":      # ObservationPoll claims more attribute bytes than its context holds
        bad = good_obs[:4] + struct.pack(">H", 200) + good_obs[6:]
    elif cut == "attr_len":   # AVA longer than its attribute list
        bad = good_obs[:8] + struct.pack(">H", 40) + good_obs[10:]
    elif cut == "context_len":  # NuObsValue shorter than 10 bytes
        bad = observation(1, ava(NU_VAL, b"\x41\x82\x00"))
    else:                     # compound count larger than its length allows
        bad = observation(5, ava(CMPD, struct.pack(">HH", 5, 10) + nu_obs(NIBP_SYS, 0, MMHG, 0, 1)))
    decoder = make_decoder()
    items = decode(poll_reply([good_obs, bad]), decoder=decoder)
    assert numerics(items) == {}
    assert decoder.stats.frames_rejected == 1 and decoder.stats.frames_decoded == 0
    # The decoder carries on with the next good message.
    assert numerics(decode(poll_reply([good_obs]), decoder=decoder))["hr"].value == 72


def test_fast_path_matches_full_parse() -> None:
    """Replies with the same structure take the template path; the values must still follow."""
    decoder = make_decoder()
    for value in (60, 61, 62, 250):
        hr = observation(1, ava(0x092F, b"\x00\x02\x41\x82"), ava(NU_VAL, nu_obs(HR, 0, BPM, 0, value)))
        reply = poll_reply([hr, nibp_object(120, 80, value)])
        obs = numerics(decode(reply, decoder=decoder))
        assert obs["hr"].value == value and obs["nibp_mean"].value == value
    # A changed static byte (the ID_TYPE value) defeats the template: still decoded right.
    hr = observation(1, ava(0x092F, b"\x00\x02\x41\x83"), ava(NU_VAL, nu_obs(HR, 0, BPM, 0, 99)))
    reply = poll_reply([hr])
    assert numerics(decode(reply, decoder=decoder))["hr"].value == 99


def test_roer_raises_command_rejected_until_the_next_reply() -> None:
    decoder = make_decoder()
    roer = struct.pack(">HHHH", 0xE100, 2, 3, 6) + struct.pack(">HHH", 1, 9, 0)  # NO_SUCH_ACTION
    assert conditions(decode(roer, decoder=decoder)) == {"command_rejected": True}
    items = decode(poll_reply([observation(1, ava(NU_VAL, nu_obs(HR, 0, BPM, 0, 70)))]), decoder=decoder)
    assert conditions(items) == {"command_rejected": False}


# === association messages =====================================================================

def test_association_request_layout() -> None:
    request = m.build_association_request()
    assert request[0] == 0x0D and request[1] == len(request) - 2
    assert request[2:16] == bytes.fromhex("0508130100160102800014020002")  # session data
    assert request[16] == 0xC1 and request[17] == len(request) - 18     # presentation LI
    assert request.endswith(bytes(16))                                  # presentation trailer
    info = m.parse_user_info(request)
    assert info == {
        "protocol_version": 0x80000000, "nomenclature_version": 0x40000000, "functional_units": 0,
        "system_type": 0x80000000, "startup_mode": 0x20000000, "poll_profile_revision": 0x80000000,
        "min_poll_period": 1000, "max_mtu_rx": 2500, "max_mtu_tx": 1000, "max_bw_tx": 0xFFFFFFFF,
        "options": 0x60000000, "ext_options": 0x81000000,
    }
    # MDSEUserInfoStd is 72 bytes here: its ASN.1 length (0x48) precedes it after the 0x81 tag.
    assert request[-16 - 72 - 2:-16 - 72] == b"\x81\x48"


def test_accept_and_release_messages() -> None:
    accept = m.build_association_accept()
    assert accept[0] == 0x0E and accept[1] == len(accept) - 2
    assert m.parse_user_info(accept)["system_type"] == 0x00800000
    for message in (m.RELEASE_REQUEST, m.RELEASE_RESULT, m.ABORT, m.REFUSE):
        kind, body = m.parse_session(message)
        assert len(body) == len(message) - 2 and message[1] == len(body)


def test_poll_request_layout() -> None:
    expected = (
        struct.pack(">HH", 0xE100, 2)                 # SPpdu
        + struct.pack(">HH", 1, 32)                   # ROapdus: ROIV, length
        + struct.pack(">HHH", 5, 7, 26)               # ROIVapdu: invoke 5, confirmed action
        + struct.pack(">HHH", 0x21, 0, 0)             # managed object: the MDS
        + struct.pack(">I", 0)                        # scope
        + struct.pack(">HH", 0xF13B, 12)              # action type: extended poll, length
        + struct.pack(">HHHH", 9, 1, 6, 0)            # poll_number, NOM_PART_OBJ, numerics, all attrs
        + struct.pack(">HH", 0, 0)                    # poll_ext_attr: empty list
    )
    assert m.build_poll_request(5, 9) == expected


def test_mds_create_result_layout() -> None:
    expected = (
        struct.pack(">HHHH", 0xE100, 2, 2, 20)        # SPpdu, ROapdus RORS length 20
        + struct.pack(">HHH", 3, 1, 14)               # RORSapdu: invoke 3, confirmed event report
        + struct.pack(">HHH", 0x21, 0, 0)             # the MDS
        + struct.pack(">IHH", 0x1234, 0x0D06, 0)      # current_time, NOM_NOTI_MDS_CREAT, length 0
    )
    assert m.build_mds_create_result(3, 0x1234) == expected


# === host against the emulator ================================================================

def snapshot(**values) -> DeviceSnapshot:
    base = {"hr": 72, "spo2": 97, "pr": 71, "pi": 2.34, "nibp_sys": 120, "nibp_dia": 80, "nibp_mean": 93,
            "rr": 14, "etco2": 38, "temp": 36.8}
    base.update(values)
    return DeviceSnapshot(time=NOW, device_time=datetime(2024, 5, 1, 12, 0, 0), elapsed=1.0, values=base,
                          nibp_time=NOW - timedelta(seconds=30))


def associate(decoder: IntelliVueDecoder, emulator: IntelliVueEmulator) -> list:
    items = decoder.feed(emulator.receive(decoder.start()))
    assert emulator.receive(decoder.take_output()) == b""  # the MDS Create result
    return items


def test_session_against_emulator() -> None:
    decoder = make_decoder()
    emulator = IntelliVueEmulator()
    emulator.produce(snapshot())
    items = associate(decoder, emulator)
    assert decoder.state == "associated" and emulator.state == "associated"
    attrs = {i.name: i.value for i in items if isinstance(i, DeviceAttribute)}
    assert attrs == {"model": "Philips Medical Systems M8004A", "system_id": "00:09:fb:4d:50:36"}
    request = decoder.poll(100.0)
    assert request and decoder.poll(100.5) == b""
    obs = numerics(decoder.feed(emulator.receive(request)))
    expected = snapshot().values
    assert {k: o.value for k, o in obs.items()} == pytest.approx(expected)
    assert obs["hr"].device_time == datetime(2024, 5, 1, 12, 0, 0)
    assert obs["nibp_sys"].device_time == datetime(2024, 5, 1, 11, 59, 30)
    assert all(o.quality == frozenset() for o in obs.values())
    # Next second: everything but the (unchanged) NIBP measurement.
    obs = numerics(decoder.feed(emulator.receive(decoder.poll(101.0))))
    assert set(obs) == set(expected) - {"nibp_sys", "nibp_dia", "nibp_mean"}
    # Release.
    answer = emulator.receive(decoder.stop())
    assert emulator.state == "idle"
    decoder.feed(answer)
    assert decoder.state == "idle" and decoder.poll(102.0) == b""


def test_conditions_from_the_emulated_monitor() -> None:
    decoder = make_decoder()
    emulator = IntelliVueEmulator()
    snap = snapshot(spo2=None)
    snap.conditions = frozenset({"sensor_off", "demo_data"})
    emulator.produce(snap)
    associate(decoder, emulator)
    items = decoder.feed(emulator.receive(decoder.poll(0.0)))
    obs = numerics(items)
    assert obs["spo2"].value is None and Quality.INVALID in obs["spo2"].quality
    assert obs["pr"].value is None and Quality.INVALID in obs["pr"].quality
    assert obs["hr"].value == 72 and obs["hr"].quality == frozenset({Quality.DEMO})
    assert conditions(items) == {"demo_data": True}


def test_linked_and_single_polls_from_emulator() -> None:
    decoder = make_decoder()
    emulator = IntelliVueEmulator(objects_per_message=3)
    emulator.produce(snapshot())
    associate(decoder, emulator)
    wire = emulator.receive(decoder.poll(0.0))
    messages = Unframer().feed(wire)
    # 9 objects (7 numerics, airway RR, the NIBP compound) in 3 linked results.
    assert [msg[5] for msg in messages] == [5, 5, 5]  # ro_type ROLRS
    assert [msg[8:10] for msg in messages] == [b"\x01\x01", b"\x02\x02", b"\x03\x03"]  # state, count
    assert len(numerics(decoder.feed(wire))) == 10
    # A single poll (0x0C16): its reply has no sequence_no.
    single = build_frame(m.build_poll_request(99, 1, extended=False))
    emulator.objects_per_message = None
    obs = numerics(decoder.feed(emulator.receive(single)))
    assert obs["temp"].value == 36.8 and "nibp_sys" not in obs


def test_periodic_extended_poll_from_emulator() -> None:
    decoder = make_decoder()
    emulator = IntelliVueEmulator()
    emulator.produce(snapshot())
    associate(decoder, emulator)
    request = build_frame(m.build_poll_request(1, 1, poll_period=3 * 8000))
    assert numerics(decoder.feed(emulator.receive(request)))
    replies = [emulator.produce(snapshot(hr=70 + i)) for i in range(5)]
    assert [len(r) > 0 for r in replies] == [True, True, True, False, False]
    assert numerics(decoder.feed(replies[2]))["hr"].value == 72


def test_emulator_ignores_polls_before_the_mds_create_result() -> None:
    decoder = make_decoder()
    emulator = IntelliVueEmulator()
    emulator.produce(snapshot())
    decoder.feed(emulator.receive(decoder.start()))
    decoder.take_output()  # confirmation lost
    assert emulator.receive(build_frame(m.build_poll_request(1, 1))) == b""


def test_association_retried_when_unanswered() -> None:
    decoder = make_decoder()
    assert decoder.start()[:1] == b"\xc0"
    assert decoder.poll(10.0) == b""
    assert decoder.poll(14.9) == b""
    again = decoder.poll(15.0)
    assert Unframer().feed(again)[0][0] == 0x0D


def test_refused_association() -> None:
    decoder = make_decoder()
    emulator = IntelliVueEmulator(refuse=True)
    items = decoder.feed(emulator.receive(decoder.start()))
    assert conditions(items) == {"association_refused": True}
    assert decoder.state == "refused"
    assert decoder.poll(0.0) == b""
    assert decoder.poll(9.0) == b""
    retry = decoder.poll(10.0)
    emulator.refuse = False
    items = decoder.feed(emulator.receive(retry))
    assert conditions(items) == {"association_refused": False}
    assert emulator.receive(decoder.take_output()) == b""
    assert decoder.state == "associated"


def test_abort_and_release_from_monitor_start_over() -> None:
    decoder = make_decoder()
    emulator = IntelliVueEmulator()
    emulator.produce(snapshot())
    associate(decoder, emulator)
    decoder.poll(0.0)
    items = decoder.feed(build_frame(m.ABORT))
    assert conditions(items) == {"association_released": True}
    again = decoder.poll(0.1)
    assert Unframer().feed(again)[0][0] == 0x0D
    items = decoder.feed(emulator.receive(again))
    assert conditions(items) == {"association_released": False}
    emulator.receive(decoder.take_output())
    # The monitor asks to release: Vigil answers with a release result and associates again.
    decoder.feed(build_frame(m.RELEASE_REQUEST))
    assert Unframer().feed(decoder.take_output()) == [m.RELEASE_RESULT]
    assert Unframer().feed(decoder.poll(1.0))[0][0] == 0x0D


def test_silent_monitor_triggers_reassociation() -> None:
    decoder = make_decoder()
    emulator = IntelliVueEmulator()
    emulator.produce(snapshot())
    associate(decoder, emulator)
    assert Unframer().feed(decoder.poll(0.0))[0][0] == 0xE1  # a poll
    for t in range(1, 11):
        assert Unframer().feed(decoder.poll(float(t)))[0][0] == 0xE1  # unanswered polls
    assert Unframer().feed(decoder.poll(11.0))[0][0] == 0x0D


def test_registry_and_class_attributes() -> None:
    cls = decoder_class("intellivue")
    assert cls is IntelliVueDecoder
    assert cls.serial_defaults.baudrate == 115200 and cls.expected_interval == 1.0


def test_decodes_a_capture_that_starts_mid_session() -> None:
    frames = [build_numerics_reply(snapshot(hr=60 + i).values, device_time=datetime(2024, 5, 1, 12, 0, i),
                                   invoke_id=i, poll_number=i) for i in range(5)]
    result = decode_all(make_decoder(), b"".join(frames)[17:])  # starts inside the first frame
    hr = [i.value for i in result.items if isinstance(i, NumericObservation) and i.vital == "hr"]
    assert hr == [61, 62, 63, 64]
    assert result.stats.bytes_skipped == len(frames[0]) - 17
    assert result.stats.frames_rejected == 0


# === robustness ===============================================================================

def session_stream() -> bytes:
    """Monitor → host bytes of a whole session: accept, MDS Create, replies, a release."""
    decoder = make_decoder()
    emulator = IntelliVueEmulator(objects_per_message=4)
    emulator.produce(snapshot())
    wire = emulator.receive(decoder.start())
    decoder.feed(wire)
    emulator.receive(decoder.take_output())
    for t in range(3):
        emulator.produce(snapshot(hr=70 + t, nibp_sys=120 + t))
        wire += emulator.receive(decoder.poll(float(t)))
    return wire + build_frame(m.RELEASE_REQUEST)


def records(items) -> list:
    return [i.as_record() for i in items]


def test_split_reads_at_every_offset() -> None:
    stream = session_stream()
    expected = records(make_decoder().feed(stream))
    assert len(expected) > 20
    for cut in range(1, len(stream)):
        decoder = make_decoder()
        assert records(decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])) == expected, cut
    decoder = make_decoder()
    one_by_one = [item for i in range(len(stream)) for item in decoder.feed(stream[i:i + 1])]
    assert records(one_by_one) == expected


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    decoder = make_decoder()
    decoder.start()
    decoder.feed(data)
    decoder.poll(0.0)
    assert decoder.stats.bytes_in == len(data)


_STREAM = session_stream()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_STREAM) - 1), st.integers(0, 255)), max_size=20),
       st.lists(st.integers(0, len(_STREAM) - 1), max_size=5))
def test_mutated_streams_never_raise(flips: list[tuple[int, int]], cuts: list[int]) -> None:
    data = bytearray(_STREAM)
    for position, value in flips:
        data[position] = value
    for position in sorted(cuts, reverse=True):
        del data[position:position + 7]
    decoder = make_decoder()
    decoder.feed(bytes(data))
    emulator = IntelliVueEmulator()
    emulator.receive(bytes(data))


@given(st.data())
def test_mutated_pdus_in_valid_frames_never_raise(data: st.DataObject) -> None:
    """Corruption the FCS cannot catch: a sender that frames nonsense correctly."""
    messages = Unframer().feed(_STREAM)
    index = data.draw(st.integers(0, len(messages) - 1))
    message = bytearray(messages[index])
    for _ in range(data.draw(st.integers(1, 8))):
        message[data.draw(st.integers(0, len(message) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(message)))
    decoder = make_decoder()
    decoder.start()
    decoder.feed(build_frame(bytes(message[:cut])))
    IntelliVueEmulator().receive(build_frame(bytes(message[:cut])))


_FRAMES = [msg for msg in Unframer().feed(_STREAM)]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\xc0", b"").replace(b"\xc1", b"")),
                min_size=len(_FRAMES) + 1, max_size=len(_FRAMES) + 1))
def test_frames_embedded_in_garbage_are_all_recovered(garbage: list[bytes]) -> None:
    stream = garbage[0] + b"".join(build_frame(f) + g for f, g in zip(_FRAMES, garbage[1:]))
    unframer = Unframer()
    assert unframer.feed(stream) == _FRAMES
    assert unframer.frames_rejected == 0
    assert unframer.bytes_skipped == sum(len(g) for g in garbage)
    decoder = make_decoder()
    assert records(decoder.feed(stream)) == records(make_decoder().feed(_STREAM))
