"""Masimo ASCII 1 (AS1): the decoder, the line encoder and the device emulator.

Every line below was written by hand from the protocol facts (docs: protocols.md, "Masimo ASCII 1");
none comes from the encoder, except in the round-trip tests that say so.
"""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import masimo
from drivers.base import decode_all
from drivers.model import TRUSTED_CONSTRUCTION
from drivers.emulation import DeviceSnapshot
from drivers.masimo import (
    ALARM_BITS, EXC_BITS, MASIMO_VARIANTS, MasimoDecoder, MasimoEmulator, encode_line,
)
from drivers.model import DeviceAttribute, DeviceCondition, NumericObservation, Quality, numeric
from drivers.registry import decoder_class

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
DT = datetime(2026, 11, 28, 9, 15, 2)

RADICAL5 = (b"02/22/26 22:47:45 SN=---------- SPO2=098% BPM=066 PI=02.58% SPCO=--.-% SPMET=--.-% "
            b"DESAT=-- PIDELTA=+-- ALARM=20 EXC=800\r\n")
RAD8 = (b"11/28/26 09:15:02 SN=0000012345 SPO2=095% BPM=088 PI=02.10% SPCO=--.-% SPMET=--.-% "
        b"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n")
RADICAL7 = (b"11/28/26 09:15:02 SN=0000054321 SPO2=097% BPM=072 PI=03.45% SPCO=01.2% SPMET=00.8% "
            b"SPHB=13.4 SPOC=17.9 RESVD=--- DESAT=-- PIDELTA=+-- PVI=014 ALARM=000000 "
            b"EXC=00000800 EXC1=00000000\r\n")
ROOT = (b"11/28/26 09:15:02 SN=0000077777 SPO2=099% BPM=061 PI=05.00% SPCO=--.-% SPMET=00.4% "
        b"SPHB=--.- SPOC=--.- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- RRA=014 ORI=0.25 "
        b"ALARM=00000004 EXC=00000C00 EXC1=00000000\r\n")


def decoder() -> MasimoDecoder:
    """A decoder for tests of the parsing: it believes the first line (sync_frames=1; the line-noise
    gate itself: tests/faults/test_line_noise.py)."""
    return MasimoDecoder(source="masimo:test", clock=lambda: T0, sync_frames=1)


def records(items: list) -> list[tuple]:
    """Items as comparable tuples: what a decoder said, without the sample time."""
    out: list[tuple] = []
    for item in items:
        if isinstance(item, NumericObservation):
            out.append(("numeric", item.vital, item.value, item.unit, item.device_time,
                        tuple(sorted(q.value for q in item.quality))))
        elif isinstance(item, DeviceCondition):
            out.append(("condition", item.code, item.active))
        elif isinstance(item, DeviceAttribute):
            out.append(("attribute", item.name, item.value))
        else:  # pragma: no cover - the decoder makes nothing else
            raise AssertionError(item)
    return out


def decode(data: bytes) -> tuple[list[tuple], MasimoDecoder]:
    dec = decoder()
    return records(decode_all(dec, data).items), dec


def numerics(recs: list[tuple]) -> dict[str, float | None]:
    return {r[1]: r[2] for r in recs if r[0] == "numeric"}


def conditions(recs: list[tuple]) -> list[tuple]:
    return [r[1:] for r in recs if r[0] == "condition"]


def attributes(recs: list[tuple]) -> dict[str, str]:
    return {r[1]: r[2] for r in recs if r[0] == "attribute"}


def line(tail: str, time: str = "11/28/26 09:15:02") -> bytes:
    return f"{time} {tail}\r\n".encode("ascii")


# --- the decoder's contract --------------------------------------------------------------------


def test_registered_with_serial_defaults():
    assert decoder_class("masimo") is MasimoDecoder
    assert MasimoDecoder.protocol == "masimo"
    assert MasimoDecoder.serial_defaults.baudrate == 9600
    assert MasimoDecoder.serial_defaults.as_kwargs()["parity"] == "N"
    assert MasimoDecoder.expected_interval == 1.0
    assert MasimoDecoder().source == "masimo"


def test_rad8_line():
    recs, dec = decode(RAD8)
    assert recs == [
        ("attribute", "serial_number", "0000012345"),
        ("attribute", "DESAT", "--"),
        ("attribute", "PIDELTA", "+--"),
        ("numeric", "spo2", 95.0, "%", DT, ()),
        ("numeric", "pr", 88.0, "bpm", DT, ()),
        ("numeric", "pi", 2.1, "%", DT, ()),
        ("numeric", "spco", None, "%", DT, ()),
        ("numeric", "spmet", None, "%", DT, ()),
    ]
    assert dec.stats.as_dict() == {"bytes_in": len(RAD8), "frames_decoded": 1,
                                   "frames_rejected": 0, "bytes_skipped": 0, "values_dropped_unit": 0,
                                   "decoder_errors": 0}
    assert dec.has_valid_data and not dec.conditions.active


def test_radical5_line_short_status_words():
    recs, dec = decode(RADICAL5)
    assert numerics(recs) == {"spo2": 98.0, "pr": 66.0, "pi": 2.58, "spco": None, "spmet": None}
    assert conditions(recs) == [("device_alarm_silenced", True)]  # ALARM=20 is hex 0x20
    assert "serial_number" not in attributes(recs)  # SN all dashes
    assert [r[4] for r in recs if r[0] == "numeric"] == [datetime(2026, 2, 22, 22, 47, 45)] * 5
    assert dec.stats.frames_decoded == 1


def test_radical7_line_extra_fields():
    recs, _ = decode(RADICAL7)
    assert numerics(recs) == {"spo2": 97.0, "pr": 72.0, "pi": 3.45, "spco": 1.2, "spmet": 0.8,
                              "sphb": 13.4, "pvi": 14.0}
    assert [r[3] for r in recs if r[1] == "sphb"] == ["g/dL"]
    assert attributes(recs) == {"serial_number": "0000054321", "SPOC": "17.9", "RESVD": "---",
                                "DESAT": "--", "PIDELTA": "+--", "EXC1": "00000000"}
    assert conditions(recs) == []


def test_root_line_more_fields_and_status():
    recs, dec = decode(ROOT)
    assert numerics(recs) == {"spo2": 99.0, "pr": 61.0, "pi": 5.0, "spco": None, "spmet": 0.4,
                              "sphb": None, "pvi": None}
    assert attributes(recs)["RRA"] == "014" and attributes(recs)["ORI"] == "0.25"
    # EXC 0xC00 = low signal IQ + the informational "Masimo SET" bit; ALARM 0x4 = pulse high
    assert conditions(recs) == [("low_signal_quality", True), ("device_pulse_high", True)]
    assert dec.conditions.active == {"low_signal_quality", "device_pulse_high"}
    assert all(r[5] == ("questionable",) for r in recs if r[0] == "numeric")


@pytest.mark.parametrize(("bit", "code"), sorted(EXC_BITS.items()))
def test_every_exc_bit(bit: int, code: str):
    on = line(f"SPO2=095% EXC={bit | 0x800:06X}")
    off = line("SPO2=095% EXC=000800", "11/28/26 09:15:03")
    recs, dec = decode(on)
    assert conditions(recs) == [(code, True)]
    assert recs[0][0] == "condition"  # conditions come before the line's numerics
    assert dec.conditions.active == {code}
    recs, _ = decode(on + off)
    assert conditions(recs) == [(code, True), (code, False)]


def test_exc_quality_flags_on_values():
    cases = {0x20: ("sensor_off",), 0x1: ("sensor_off",), 0x4: ("low_perfusion",),
             0x10: ("artifact",), 0x14: ("artifact", "low_perfusion"), 0x800: ()}
    for word, flags in cases.items():
        recs, _ = decode(line(f"SPO2=---% BPM=077 EXC={word:06X}"))
        assert [r[5] for r in recs if r[0] == "numeric"] == [flags, flags], hex(word)


@pytest.mark.parametrize(("bit", "code"), sorted(ALARM_BITS.items()))
def test_every_alarm_bit(bit: int, code: str):
    recs, dec = decode(line(f"SPO2=095% ALARM={bit:04X}")
                       + line("SPO2=095% ALARM=0000", "11/28/26 09:15:03"))
    assert conditions(recs) == [(code, True), (code, False)]
    assert not dec.conditions.active


def test_masimo_set_bit_is_not_a_condition_and_unknown_bits_are_kept():
    recs, dec = decode(line("EXC=000800"))
    assert recs == [] and dec.stats.frames_decoded == 1
    recs, _ = decode(line("EXC=200A00") + line("EXC=200A00", "11/28/26 09:15:03")
                     + line("EXC=000800", "11/28/26 09:15:04"))
    assert recs == [("attribute", "exc_unknown_bits", "0x200200"),
                    ("attribute", "exc_unknown_bits", "0x0")]
    recs, _ = decode(line("ALARM=0180"))
    assert recs == [("attribute", "alarm_unknown_bits", "0x180")]


def test_conditions_change_only_when_the_word_changes():
    data = b"".join(line(f"SPO2=095% EXC={w:06X}", f"11/28/26 09:15:{i:02d}")
                    for i, w in enumerate([0x820, 0x820, 0x824, 0x804, 0x804, 0x800]))
    recs, _ = decode(data)
    assert conditions(recs) == [("sensor_off", True), ("low_perfusion", True),
                                ("sensor_off", False), ("low_perfusion", False)]


def test_status_words_and_attributes_flipping_back_and_forth():
    words = [(0x800, 0), (0x820, 2), (0x800, 0), (0x820, 2), (0x820, 2), (0x800, 0)]
    data = b"".join(line(f"SPO2=095% ALARM={a:04X} EXC={e:06X} FW={i % 2}", f"11/28/26 09:15:{i:02d}")
                    for i, (e, a) in enumerate(words))
    recs, _ = decode(data)
    on = [("device_spo2_low", True), ("sensor_off", True)]
    off = [("device_spo2_low", False), ("sensor_off", False)]
    assert sorted(conditions(recs)) == sorted(on * 2 + off * 2)
    assert [r[2] for r in recs if r[0] == "attribute"] == ["0", "1", "0", "1", "0", "1"]
    flags = [r[5] for r in recs if r[0] == "numeric"]
    assert flags == [(), ("sensor_off",), (), ("sensor_off",), ("sensor_off",), ()]


def test_forgetting_remembered_tokens_changes_nothing(monkeypatch: pytest.MonkeyPatch):
    data = STREAM + b"".join(
        line(f"SPO2=0{90 + i % 5}% ALARM={2 * (i % 2):04X} EXC={0x800 | 0x20 * (i % 3 == 0):06X} "
             f"FW={i % 4} SN=000001234{i % 2}", f"11/28/26 09:16:{i:02d}") for i in range(40))
    expected, stats = decode(data)
    monkeypatch.setattr(masimo, "_TOKEN_MEMORY", 3)
    assert decode(data)[0] == expected and decode(data)[1].stats == stats.stats


def test_a_line_without_alarm_or_exc_keeps_those_conditions():
    data = (line("SPO2=085% ALARM=0012 EXC=000824")
            + line("SPO2=086%", "11/28/26 09:15:03")             # neither word
            + line("SPO2=087% EXC=000800", "11/28/26 09:15:04")  # EXC only
            + line("SPO2=088% ALARM=0000", "11/28/26 09:15:05"))
    recs, dec = decode(data)
    assert conditions(recs) == [
        ("low_perfusion", True), ("sensor_off", True),
        ("device_alarm", True), ("device_spo2_low", True),
        ("low_perfusion", False), ("sensor_off", False),
        ("device_alarm", False), ("device_spo2_low", False),
    ]
    flags = [r[5] for r in recs if r[0] == "numeric"]
    assert flags == [("low_perfusion", "sensor_off"), ("low_perfusion", "sensor_off"), (), ()]
    assert not dec.conditions.active


def test_unreadable_status_word_leaves_conditions_alone():
    recs, dec = decode(line("ALARM=0002 EXC=000820") + line("ALARM=00G2 EXC=", "11/28/26 09:15:03"))
    assert conditions(recs) == [("sensor_off", True), ("device_spo2_low", True)]
    assert dec.stats.frames_decoded == 2


def test_conditions_cleared_from_outside_come_back_with_the_next_line():
    dec = decoder()
    dec.feed(line("SPO2=---% EXC=000820"))
    dec.conditions.clear(T0)  # e.g. the worker ends everything when the link drops
    recs = records(dec.feed(line("SPO2=---% EXC=000820", "11/28/26 09:15:03")))
    assert conditions(recs) == [("sensor_off", True)]
    assert recs[-1][5] == ("sensor_off",)


def test_dashes_are_missing_values():
    recs, _ = decode(line("SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% SPHB=--.- PVI=---"))
    assert numerics(recs) == {k: None for k in ("spo2", "pr", "pi", "spco", "spmet", "sphb", "pvi")}
    assert all(r[5] == () for r in recs)


def test_pi_without_percent_sign():
    recs, _ = decode(line("SPO2=095% BPM=088 PI=02.10 ALARM=0000 EXC=000800"))
    assert numerics(recs)["pi"] == 2.1


def test_serial_number_only_with_digits():
    recs, _ = decode(line("SN=---------- SPO2=095%") + line("SN=0000012345 SPO2=095%", "11/28/26 09:15:03")
                     + line("SN=---------- SPO2=095%", "11/28/26 09:15:04"))
    assert attributes(recs) == {"serial_number": "0000012345"}


def test_optional_fields_missing_entirely():
    recs, dec = decode(line("SPO2=095% BPM=088"))
    assert recs == [("numeric", "spo2", 95.0, "%", DT, ()), ("numeric", "pr", 88.0, "bpm", DT, ())]
    assert dec.stats.frames_decoded == 1


def test_fields_are_read_by_key_not_position():
    recs, _ = decode(line("EXC=000800 BPM=088 ALARM=0000 SPO2=095% SN=0000012345"))
    assert numerics(recs) == {"pr": 88.0, "spo2": 95.0}
    assert [r[1] for r in recs if r[0] == "numeric"] == ["pr", "spo2"]  # line order


def test_unknown_keys_are_kept_as_attributes_when_new_or_changed():
    data = (line("SPO2=095% NEWKEY=1 FW=4.3") + line("SPO2=095% NEWKEY=1 FW=4.3", "11/28/26 09:15:03")
            + line("SPO2=095% NEWKEY=2 FW=4.3", "11/28/26 09:15:04"))
    recs, dec = decode(data)
    assert [r for r in recs if r[0] == "attribute"] == [
        ("attribute", "NEWKEY", "1"), ("attribute", "FW", "4.3"), ("attribute", "NEWKEY", "2")]
    assert dec.stats.frames_decoded == 3


def test_unreadable_value_is_none_flagged_invalid():
    recs, dec = decode(line("SPO2=9X% BPM=-5 PI=1e3% SPCO=% PVI=+12 SPMET=" + "9" * 400 + " SPHB=13.4"))
    assert numerics(recs) == {"spo2": None, "pr": None, "pi": None, "spco": None, "pvi": None,
                              "spmet": None, "sphb": 13.4}
    assert [r[5] for r in recs] == [("invalid",)] * 6 + [()]
    assert dec.stats.frames_decoded == 1


def test_implausible_value_is_kept_and_flagged():
    recs, _ = decode(line("SPO2=104% BPM=088"))
    assert recs[0] == ("numeric", "spo2", 104.0, "%", DT, ("implausible",))


def test_words_without_equals_are_ignored_and_a_repeated_key_counts_each_time():
    recs, dec = decode(line("SPO2=095% hello BPM=088  SPO2=096%"))
    assert [(r[1], r[2]) for r in recs] == [("spo2", 95.0), ("pr", 88.0), ("spo2", 96.0)]
    assert dec.stats.frames_decoded == 1


def test_sample_time_is_read_once_per_feed():
    calls: list[int] = []

    def clock() -> datetime:
        calls.append(1)
        return T0 + timedelta(seconds=len(calls))

    dec = MasimoDecoder(clock=clock, sync_frames=1)
    items = dec.feed(RAD8 + RAD8.replace(b"09:15:02", b"09:15:03"))
    numeric_items = [i for i in items if isinstance(i, NumericObservation)]
    assert len(calls) == 1 and len(numeric_items) == 10
    assert {i.sample_time for i in numeric_items} == {T0 + timedelta(seconds=1)}
    assert [i.device_time.second for i in numeric_items] == [2] * 5 + [3] * 5
    assert dec.feed(b"11/28/26 09:1") == [] and len(calls) == 1  # no line completed: no read


# --- framing -----------------------------------------------------------------------------------

STREAM = RAD8 + ROOT.replace(b"09:15:02", b"09:15:03") + RADICAL7.replace(b"09:15:02", b"09:15:04")


def test_split_at_every_offset_gives_the_same_items():
    whole, dec = decode(STREAM)
    for cut in range(1, len(STREAM)):
        split = decoder()
        items = split.feed(STREAM[:cut]) + split.feed(STREAM[cut:])
        assert records(items) == whole, cut
        assert split.stats == dec.stats, cut


def test_one_byte_at_a_time():
    whole, dec = decode(STREAM)
    single = decoder()
    items = [item for i in range(len(STREAM)) for item in single.feed(STREAM[i:i + 1])]
    assert records(items) == whole and single.stats == dec.stats


@pytest.mark.parametrize("ending", [b"\r", b"\n", b"\n\r", b"\r\n\r\n"])
def test_other_line_endings(ending: bytes):
    data = STREAM.replace(b"\r\n", ending)
    recs, dec = decode(data)
    crlf = decode(STREAM)
    assert recs == crlf[0]
    # three lines (the second, from another model, jumps 27 bpm: rejected as inconsistent, whatever the endings)
    assert (dec.stats.frames_decoded, dec.stats.frames_rejected) == (crlf[1].stats.frames_decoded,
                                                                    crlf[1].stats.frames_rejected) == (2, 1)


def test_last_line_without_terminator_waits():
    dec = decoder()
    assert dec.feed(RAD8[:-2]) == []
    assert len(dec.feed(b"\r\n")) == 8


def test_garbage_lines_are_rejected_and_the_leading_partial_line_skipped():
    partial = RAD8[40:]  # we started listening mid-line
    data = partial + b"hello world\r\n" + b"\x00\xff\x13garbage\r\n" + RAD8 + b"SPO2=095% BPM=088\r\n"
    recs, dec = decode(data)
    assert numerics(recs)["spo2"] == 95.0 and len(recs) == 8
    assert dec.stats.bytes_skipped == len(partial) - 2  # the fragment, not its CR LF
    assert dec.stats.frames_rejected == 3 and dec.stats.frames_decoded == 1


def test_only_the_first_fragment_after_start_counts_as_skipped():
    dec = decoder()
    dec.feed(b"PI=02.10% tail of a line\r\n")
    dec.feed(RAD8)
    dec.feed(b"not a line\r\n")
    dec.feed(b"\r\nnor this\r\n")
    assert dec.stats.bytes_skipped == len("PI=02.10% tail of a line")
    assert dec.stats.frames_rejected == 2 and dec.stats.frames_decoded == 1


@pytest.mark.parametrize("bad", [
    b"11/28/26 09:15:02\r\n",                      # no tokens
    b"11/28/26 09:15:02 hello there\r\n",          # no KEY=VALUE token
    b"13/28/26 09:15:02 SPO2=095%\r\n",            # month 13
    b"11/31/26 09:15:02 SPO2=095%\r\n",            # 31 November
    b"11/28/26 24:15:02 SPO2=095%\r\n",            # hour 24
    b"11/28/26 09:15:61 SPO2=095%\r\n",            # second 61
    b"11-28-26 09:15:02 SPO2=095%\r\n",            # wrong separators
    b"11/28/2026 09:15:02 SPO2=095%\r\n",          # four-digit year
    b"11/28/26 09:15:02SPO2=095%\r\n",             # no space after the time
    b" 11/28/26 09:15:02 SPO2=095%\r\n",           # not at the line start
    b"11/28/26 09:15:02 SPO2=095%\tBPM=088\r\n",   # control character
    b"11/28/26 09:15:02 SPO2=095% BPM=0\xb988\r\n",  # byte outside ASCII
])
def test_not_a_masimo_line(bad: bytes):
    recs, dec = decode(RAD8 + bad)
    assert len(recs) == 8  # only the good line's items
    assert dec.stats.frames_rejected == 1 and dec.stats.frames_decoded == 1


def test_over_long_line_is_skipped_and_the_decoder_resyncs():
    long_line = b"11/28/26 09:15:02 " + b"X=1 " * 400 + b"\r\n"
    for chunk in (len(long_line) * 3, 7, 1):
        dec = decoder()
        data = RAD8 + long_line + RAD8.replace(b"09:15:02", b"09:15:03")
        items = [i for off in range(0, len(data), chunk) for i in dec.feed(data[off:off + chunk])]
        assert len(numerics(records(items))) == 5 and dec.stats.frames_decoded == 2
        assert dec.stats.bytes_skipped == len(long_line) - 2
        assert dec.stats.frames_rejected == 0


def test_no_input_no_output():
    dec = decoder()
    assert dec.feed(b"") == [] and dec.stats.bytes_in == 0
    assert dec.take_output() == b"" and dec.start() == b"" and dec.poll(1.0) == b""


# --- observations built without re-validation --------------------------------------------------


def test_observations_equal_validated_ones():
    assert TRUSTED_CONSTRUCTION  # the fast path is in use here
    dec = decoder()
    items = [i for i in dec.feed(ROOT + line("SPO2=104% BPM=9X EXC=000834", "11/28/26 09:15:03"))
             if isinstance(i, NumericObservation)]
    assert len(items) == 9
    for item in items:
        again = numeric(item.vital, item.value, item.source, item.sample_time, item.device_time,
                        item.quality)
        assert item == again and hash(item) == hash(again)
        assert item.__getstate__() == again.__getstate__()
        assert item.model_dump() == again.model_dump() and item.as_record() == again.as_record()
        assert pickle.loads(pickle.dumps(item)) == again
        assert item.model_copy(update={"value": 1.0}).value == 1.0
        with pytest.raises(Exception):
            item.value = 1.0  # type: ignore[misc]
    assert items[0].model_fields_set == set(NumericObservation.model_fields)
    assert items[-2].quality == {Quality.IMPLAUSIBLE, Quality.SENSOR_OFF, Quality.LOW_PERFUSION,
                                 Quality.ARTIFACT}


def test_naive_clock_fails_like_the_model_does():
    dec = MasimoDecoder(clock=lambda: datetime(2026, 1, 1), sync_frames=1)
    with pytest.raises(ValueError):
        dec.feed(RAD8)


# --- property tests ----------------------------------------------------------------------------

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_random_bytes_never_raise(data: bytes, chunk: int):
    dec = decoder()
    for off in range(0, len(data), chunk):
        dec.feed(data[off:off + chunk])
    assert dec.stats.bytes_in == len(data)


@FAST
@given(st.data())
def test_mutated_streams_never_raise(data: st.DataObject):
    stream = bytearray(STREAM + RADICAL5 + RAD8)
    for _ in range(data.draw(st.integers(1, 20))):
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        where = data.draw(st.integers(0, len(stream) - 1))
        if action == "flip":
            stream[where] = data.draw(st.integers(0, 255))
        elif action == "insert":
            stream[where:where] = data.draw(st.binary(min_size=1, max_size=8))
        elif len(stream) > 1:
            del stream[where]
    chunk = data.draw(st.integers(1, 200))
    dec = decoder()
    for off in range(0, len(stream), chunk):
        for item in dec.feed(bytes(stream[off:off + chunk])):
            assert isinstance(item, (NumericObservation, DeviceCondition, DeviceAttribute))


_garbage = st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_spo2 = st.one_of(st.none(), st.integers(96, 100))   # consecutive values within MAX_STEP_SPO2
_bpm_step = st.integers(-15, 15)                     # and MAX_STEP_PR


@FAST
@given(st.lists(st.tuples(_garbage, _spo2, _bpm_step), min_size=1, max_size=8),
       st.integers(1, 300))
def test_valid_lines_inside_garbage_are_recovered(parts: list, chunk: int):
    data = b""
    expected = []
    bpm = 100
    for second, (garbage, spo2, step) in enumerate(parts):
        bpm += step
        text = "---%" if spo2 is None else f"{spo2:03d}%"
        data += garbage + b"\r\n" + line(f"SN=0000012345 SPO2={text} BPM={bpm:03d} EXC=000800",
                                         f"11/28/26 09:15:{second:02d}")
        expected += [("spo2", spo2 if spo2 is None else float(spo2), second),
                     ("pr", float(bpm), second)]
    dec = decoder()
    items = [i for off in range(0, len(data), chunk) for i in dec.feed(data[off:off + chunk])]
    got = [(i.vital, i.value, i.device_time.second) for i in items
           if isinstance(i, NumericObservation) and i.device_time.date() == DT.date()]
    assert [g for g in got if g in expected] == expected
    assert dec.stats.frames_decoded >= len(parts)


# --- device side -------------------------------------------------------------------------------

VALUES = {"spo2": 95.0, "pr": 88.0, "pi": 2.1, "spco": None, "spmet": None, "sphb": 13.4, "pvi": 14.0}


def test_encode_rad8_is_the_documented_line():
    assert encode_line(VALUES, device_time=DT) == RAD8


def test_encode_radical5_short_words_and_dash_serial():
    out = encode_line({"spo2": 98, "pr": 66, "pi": 2.58}, device_time=datetime(2026, 2, 22, 22, 47, 45),
                      conditions={"device_alarm_silenced"}, variant="radical5", serial_number=None)
    assert out == RADICAL5


def test_encode_radical7_fields():
    out = encode_line({**VALUES, "spco": 1.2, "spmet": 0.8, "spo2": 97, "pr": 72, "pi": 3.45},
                      device_time=DT, variant="radical7", serial_number="0000054321")
    assert out == (b"11/28/26 09:15:02 SN=0000054321 SPO2=097% BPM=072 PI=03.45% SPCO=01.2% "
                   b"SPMET=00.8% SPHB=13.4 SPOC=--.- RESVD=--- DESAT=-- PIDELTA=+-- PVI=014 "
                   b"ALARM=000000 EXC=00000800 EXC1=00000000\r\n")


def test_encode_refuses_unknown_variant_and_prints_bad_values_as_dashes():
    with pytest.raises(ValueError, match="rad8"):
        encode_line(VALUES, device_time=DT, variant="rad9")
    out = encode_line({"spo2": float("nan"), "pr": None}, device_time=DT)
    assert b"SPO2=---% BPM=--- PI=--.--%" in out


@pytest.mark.parametrize("variant", MASIMO_VARIANTS)
def test_round_trip_every_variant(variant: str):
    active = {"low_perfusion", "interference", "device_alarm", "device_spo2_low"}
    data = encode_line(VALUES, device_time=DT, conditions=active, variant=variant)
    data += encode_line({}, device_time=DT + timedelta(seconds=1), variant=variant)
    recs, dec = decode(data)
    fields = {"radical5": ("spo2", "pr", "pi", "spco", "spmet"),
              "rad8": ("spo2", "pr", "pi", "spco", "spmet")}.get(variant, tuple(VALUES))
    first = [r for r in recs if r[0] == "numeric" and r[4] == DT]
    assert {r[1]: r[2] for r in first} == {k: VALUES[k] for k in fields}
    assert all(r[5] == ("artifact", "low_perfusion") for r in first)
    assert {c for c, on in conditions(recs) if on} == active
    assert {c for c, on in conditions(recs) if not on} == active
    assert attributes(recs)["serial_number"] == "0000012345"
    assert dec.stats.frames_decoded == 2 and dec.stats.frames_rejected == 0


def test_round_trip_every_condition_bit():
    codes = set(EXC_BITS.values()) | set(ALARM_BITS.values())
    recs, _ = decode(encode_line(VALUES, device_time=DT, conditions=codes, variant="root"))
    assert {c for c, on in conditions(recs) if on} == codes


def snapshot(elapsed: float, device_time: datetime, **values: float | None) -> DeviceSnapshot:
    return DeviceSnapshot(time=T0, device_time=device_time, elapsed=elapsed,
                          values={**VALUES, **values}, conditions=frozenset({"artifact"}))


def test_emulator_keeps_one_line_per_second_for_short_steps():
    emu = MasimoEmulator()
    clock = datetime(2026, 11, 28, 9, 0, 0)
    emitted = []
    for step in range(1, 101):
        out = emu.produce(snapshot(0.3, clock + timedelta(seconds=0.3 * step)))
        emitted.append(out.count(b"\r\n"))
    assert sum(emitted) == 30 and set(emitted) == {0, 1}
    assert emitted[:4] == [0, 0, 0, 1]
    ones = [i for i, n in enumerate(emitted) if n]
    gaps = [b - a for a, b in zip(ones, ones[1:])]
    assert set(gaps) <= {3, 4} and abs(sum(gaps) / len(gaps) - 10 / 3) < 0.05


def test_emulator_long_step_gives_one_line_per_second_with_advancing_times():
    emu = MasimoEmulator(variant="radical7", serial_number=None)
    end = datetime(2026, 11, 28, 9, 1, 0)
    data = emu.produce(snapshot(60.0, end, spo2=91.0))
    assert data.count(b"\r\n") == 60
    recs, dec = decode(data)
    times = sorted({r[4] for r in recs if r[0] == "numeric"})
    assert times == [datetime(2026, 11, 28, 9, 0, 1) + timedelta(seconds=i) for i in range(60)]
    assert numerics(recs)["spo2"] == 91.0 and dec.stats.frames_decoded == 60
    assert conditions(recs) == [("interference", True)]  # the simulator's "artifact"
    assert "serial_number" not in attributes(recs)
    assert emu.produce(snapshot(0.5, end + timedelta(seconds=0.5))) == b""
    assert emu.receive(b"anything") == b""


def test_emulator_refuses_unknown_variant():
    with pytest.raises(ValueError, match="radical5, rad8, radical7, root"):
        MasimoEmulator(variant="pronto")
