"""HL7 v2 over MLLP: framing, ORU^R01 decoding, acknowledgements, the patient/bed gate, codes and
units, the emulator, and the MLLP links over real loopback sockets.

Messages in the hand-written tests are typed here from the HL7 v2 rules and public examples (the
IHE PCD-01 layout GE documents for its B40, the MDIL form of Philips' serial export), not produced
by drivers.hl7's emulator; acknowledgements are read back with hl7apy, an independent parser.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hl7apy.parser import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.acquisition import AcquisitionWorker, LinkState
from drivers.base import decode_all
from drivers.hl7.codes import Codebook, LocalCodes, mdil_to_mdc
from drivers.hl7.device import Hl7Emulator
from drivers.hl7.host import Hl7Decoder, PatientGate
from drivers.hl7.link import MllpClientLink, MllpServerLink
from drivers.hl7.mllp import Unframer, frame
from drivers.model import DeviceAttribute, DeviceCondition, NumericObservation, Quality, WaveformChunk
from drivers.simulator.physiology import PhysiologyModel
from drivers.transport import DeviceUrlError, open_link, parse_device_url
from tests.test_e2e_pty import Collector as E2ECollector
from tests.test_datex import feed_in_pieces  # at import time: test_datex applies @given when imported

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MSH_PCD = "MSH|^~\\&|B40^080019FFFE0B4020^EUI-64|GE|VIGIL|VIGIL|20261128100000+0100||ORU^R01^ORU_R01|MSG{n}|P|2.6|||AL|NE"
MSH_ORIGINAL = "MSH|^~\\&|MON|ICU|VIGIL|VIGIL|20261128100000+0100||ORU^R01|MSG{n}|P|2.5"
PID = "PID|||12345^^^HOSP^MR||Doe^Jo"
PV1 = "PV1||I|CHAIRS^1^3"


def make(**kwargs) -> Hl7Decoder:
    return Hl7Decoder(source="test", clock=lambda: T0, **kwargs)


def msg(*segments: str, n: int = 1) -> bytes:
    return frame(("\r".join(s.replace("{n}", str(n)) for s in segments) + "\r").encode())


def numerics(items, vital=None):
    return [i for i in items if isinstance(i, NumericObservation) and (vital is None or i.vital == vital)]


def values(items):
    return {o.vital: o.value for o in numerics(items)}


def acks(decoder: Hl7Decoder) -> list:
    """The acknowledgements the decoder queued, parsed by hl7apy."""
    out = []
    for payload in Unframer().feed(decoder.take_output()):
        out.append(parse_message(payload.decode().replace("\r", "\r"), find_groups=False))
    return out


# ------------------------------------------------------------------ framing
def test_mllp_frames_and_counts_what_is_outside():
    unframer = Unframer(max_message=20)
    data = b"\r\n" + frame(b"MSH|one") + b"\x0bbroken" + frame(b"MSH|two") + frame(b"x" * 21) + frame(b"MSH|3")
    assert unframer.feed(data) == [b"MSH|one", b"MSH|two", b"MSH|3"]
    assert unframer.broken == 1 and unframer.skipped == 2 + 7 + 24


# ------------------------------------------------------------------ a PCD-01 message
PCD01 = (MSH_PCD, PID, PV1, "OBR|1|||182777000^monitoring of patient^SCT|||20261128100000+0100",
         "OBX|1||69798^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X",
         "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.5.1.1|80|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||"
         "20261128095958+0100||||080019FFFE0B4020^B40_GE",
         "OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R",
         "OBX|4|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.2.1.2|79|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
         "OBX|5|NM|151708^MDC_AWAY_CO2_ET^MDC|1.3.1.1|5.1|265987^MDC_DIM_KILO_PA^MDC|||||R",
         "OBX|6|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.4.1.1|121|266016^MDC_DIM_MMHG^MDC|||||R|||20261128095500+0100",
         "OBX|7|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.4.1.2|79|266016^MDC_DIM_MMHG^MDC|||||R|||20261128095500+0100",
         "OBX|8|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.4.1.3|93|266016^MDC_DIM_MMHG^MDC|||||R|||20261128095500+0100",
         "OBX|9|NM|150344^MDC_TEMP^MDC|1.6.1.1|98.6|266560^MDC_DIM_FAHR^MDC|||||R")


def test_pcd01_numerics_units_and_times():
    decoder = make()
    items = decoder.feed(msg(*PCD01))
    assert values(items) == {"hr": 80, "spo2": 97, "pr": 79, "etco2": pytest.approx(38.25, abs=0.01),
                             "nibp_sys": 121, "nibp_dia": 79, "nibp_mean": 93, "temp": 37.0}
    times = {o.vital: o.device_time for o in numerics(items)}
    assert times["hr"] == datetime(2026, 11, 28, 8, 59, 58, tzinfo=timezone.utc)       # OBX-14, +01:00
    assert times["spo2"] == datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)          # OBR-7
    assert times["nibp_sys"] == datetime(2026, 11, 28, 8, 55, tzinfo=timezone.utc)
    assert all(o.sample_time == T0 and not o.quality for o in numerics(items))
    assert decoder.stats.frames_decoded == 1
    [ack] = acks(decoder)
    assert (ack.msa.msa_1.value, ack.msa.msa_2.value) == ("CA", "MSG1")   # MSH-15 AL: commit accept
    assert ack.msh.msh_5.value == "B40^080019FFFE0B4020^EUI-64" and ack.msh.msh_12.value == "2.6"


def test_nibp_is_reported_once_per_reading():
    decoder = make()
    assert len(numerics(decoder.feed(msg(*PCD01)), "nibp_sys")) == 1
    assert numerics(decoder.feed(msg(*PCD01, n=2)), "nibp_sys") == []             # same reading again
    later = [s.replace("20261128095500", "20261128100500") for s in PCD01]
    assert len(numerics(decoder.feed(msg(*later, n=3)), "nibp_sys")) == 1


def test_original_mode_and_philips_mdil_codes():
    decoder = make()
    items = decoder.feed(msg(MSH_ORIGINAL, PID, PV1,
                             "OBX||NM|0002-4bb8^SpO2^MDIL||96|0004-0220^%^MDIL|||||F",
                             "OBX||NM|0002-4182^HR^MDIL|||0004-0aa0^bpm^MDIL|||||X"))
    got = {o.vital: (o.value, o.quality) for o in numerics(items)}
    assert got == {"spo2": (96, frozenset()), "hr": (None, {Quality.INVALID})}
    assert numerics(items)[0].device_time == datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)  # MSH-7
    [ack] = acks(decoder)
    assert (ack.msa.msa_1.value, ack.msa.msa_2.value) == ("AA", "MSG1")
    assert mdil_to_mdc("0002-4bb8") == 150456 and mdil_to_mdc("junk") is None


def test_loinc_ucum_and_naive_times():
    items = make().feed(msg(MSH_ORIGINAL.replace("20261128100000+0100", "20261128100000"), PID, PV1,
                            "OBX|1|NM|8867-4^Heart rate^LN||61|/min^^UCUM|||||F",
                            "OBX|2|NM|19889-5^EtCO2^LN||36|mm[Hg]^^UCUM|||||F",
                            "OBX|3|NM|8310-5^Body temperature^LN||36.9|Cel^^UCUM|||||F",
                            "OBX|4|NM|9279-1^Resp rate^LN||12||||||F"))
    assert values(items) == {"hr": 61, "etco2": 36, "temp": 36.9, "rr": 12}
    assert numerics(items)[0].device_time == datetime(2026, 11, 28, 10, 0)    # no offset: naive as sent


@pytest.mark.parametrize("obx,expected", [
    ("OBX|1|NM|8867-4^HR^LN||61|%|||||F", (None, {Quality.INVALID})),            # wrong kind of unit
    ("OBX|1|NM|8867-4^HR^LN||61|furlongs|||||F", (None, {Quality.INVALID})),     # unknown unit
    ("OBX|1|NM|8867-4^HR^LN||6x1|/min|||||F", (None, {Quality.INVALID})),        # not a number
    ("OBX|1|NM|8867-4^HR^LN||1_0|/min|||||F", (None, {Quality.INVALID})),
    ("OBX|1|NM|8867-4^HR^LN||61|/min|||||P", (61, {Quality.QUESTIONABLE})),      # preliminary
    ("OBX|1|NM|8867-4^HR^LN||61|/min|||||Z", (61, {Quality.QUESTIONABLE})),      # status unknown
    ("OBX|1|NM|8867-4^HR^LN||61|/min|||||C", (61, set())),                       # corrected
    ("OBX|1|NM|8867-4^HR^LN||61|/min||>|||F", (61, {Quality.QUESTIONABLE})),     # above the device's range
    ("OBX|1|NM|8867-4^HR^LN||400|/min|||||F", (400, {Quality.IMPLAUSIBLE})),
    ("OBX|1|SN|8867-4^HR^LN||^72|/min|||||F", (72, set())),
    ("OBX|1|SN|8867-4^HR^LN||>^250|/min|||||F", (250, {Quality.QUESTIONABLE})),
    ("OBX|1|SN|8867-4^HR^LN||^60^-^70|/min|||||F", (None, {Quality.INVALID})),   # a range is not a value
    ("OBX|1|ST|8867-4^HR^LN||fast|/min|||||F", (None, {Quality.INVALID})),
    ("OBX|1|NM|8867-4^HR^LN|||/min|||||F", (None, set())),                       # no value sent
])
def test_value_rules(obx, expected):
    decoder = make()
    [obs] = numerics(decoder.feed(msg(MSH_ORIGINAL, PID, PV1, obx)))
    assert (obs.value, obs.quality) == (expected[0], frozenset(expected[1]))
    assert decoder.stats.values_dropped_unit == (1 if ("|%|" in obx or "furlongs" in obx) else 0)


def test_result_status_drops_deleted_and_pending_values():
    decoder = make()
    items = decoder.feed(msg(MSH_ORIGINAL, PID, PV1,
                             "OBX|1|NM|8867-4^HR^LN||61|/min|||||D", "OBX|2|NM|9279-1^RR^LN||12|/min|||||W",
                             "OBX|3|NM|59408-5^SpO2^LN||97|%|||||I", "OBX|4|NM|8480-6^SBP^LN||120|mm[Hg]|||||F"))
    assert values(items) == {"nibp_sys": 120} and decoder.stats.observations_dropped == 2


def test_abnormal_flags_raise_and_end_the_device_alarm():
    decoder = make()
    first = decoder.feed(msg(MSH_ORIGINAL, PID, PV1, "OBX|1|NM|59408-5^SpO2^LN||86|%||L|||F"))
    assert [(c.code, c.active) for c in first if isinstance(c, DeviceCondition)] == [("device_alarm", True)]
    second = decoder.feed(msg(MSH_ORIGINAL, PID, PV1, "OBX|1|NM|59408-5^SpO2^LN||95|%||N|||F", n=2))
    assert [(c.code, c.active) for c in second if isinstance(c, DeviceCondition)] == [("device_alarm", False)]


def test_training_messages_are_flagged_demo():
    items = make().feed(msg(MSH_ORIGINAL.replace("|P|", "|T|"), PID, PV1, "OBX|1|NM|8867-4^HR^LN||61|/min|||||F"))
    assert numerics(items)[0].quality == {Quality.DEMO}
    assert ("demo_data", True) in [(c.code, c.active) for c in items if isinstance(c, DeviceCondition)]


@pytest.mark.parametrize("msh,code,err", [
    (MSH_ORIGINAL.replace("ORU^R01", "ADT^A01"), "AR", "200"),
    (MSH_ORIGINAL.replace("ORU^R01", "ORU^R30"), "AR", "201"),
    (MSH_ORIGINAL.replace("|2.5", "|2.7"), "AR", "203"),
    (MSH_ORIGINAL.replace("|P|", "|X|"), "AR", "202"),
    (MSH_ORIGINAL.replace("MSG{n}", ""), "AE", "101"),
])
def test_unsupported_and_malformed_messages_are_refused_with_a_reason(msh, code, err):
    decoder = make()
    assert decoder.feed(msg(msh, PID, PV1, "OBX|1|NM|8867-4^HR^LN||61|/min|||||F")) == []
    [ack] = acks(decoder)
    assert ack.msa.msa_1.value == code and ack.msa.msa_3.value
    assert ack.err.err_3.value.startswith(err + "^") and ack.err.err_4.value == "E"   # v2.5 ERR layout
    assert decoder.stats.frames_rejected == 1 and decoder.stats.frames_decoded == 0


def test_not_hl7_and_old_versions_get_the_old_err_layout():
    decoder = make()
    decoder.feed(frame(b"hello, monitor"))
    decoder.feed(msg(MSH_ORIGINAL.replace("|2.5", "|2.3.1").replace("ORU^R01", "ADT^A01"), PID))
    first, second = (p.decode() for p in Unframer().feed(decoder.take_output()))
    assert "\rMSA|AE||not an HL7 message" in first
    assert "\rMSA|AR|MSG1|" in second and "\rERR|MSH^1^9^200&Unsupported message type&HL70357\r" in second
    assert parse_message(second, find_groups=False).msh.msh_12.value == "2.3.1"
    assert decoder.stats.frames_rejected == 2


def test_enhanced_mode_acknowledges_as_asked():
    for accept, expected in (("AL", ["CA", "CR"]), ("ER", ["CR"]), ("SU", ["CA"]), ("NE", [])):
        decoder = make()
        head = MSH_PCD.replace("|AL|NE", f"|{accept}|NE")
        decoder.feed(msg(head, PID, PV1, "OBX|1|NM|8867-4^HR^LN||61|/min|||||F"))
        decoder.feed(msg(head.replace("|2.6", "|2.2"), PID, PV1, n=2))
        assert [a.msa.msa_1.value for a in acks(decoder)] == expected, accept


# ------------------------------------------------------------------ the patient / bed gate
def test_messages_for_another_bed_are_refused_counted_and_shown():
    decoder = make(bed="3")
    assert values(decoder.feed(msg(MSH_ORIGINAL, PID, PV1, "OBX|1|NM|8867-4^HR^LN||61|/min|||||F"))) == {"hr": 61}
    other = decoder.feed(msg(MSH_ORIGINAL, PID, "PV1||I|CHAIRS^1^4", "OBX|1|NM|8867-4^HR^LN||150|/min|||||F", n=2))
    assert numerics(other) == []
    assert ("wrong_patient", True) in [(c.code, c.active) for c in other if isinstance(c, DeviceCondition)]
    assert any(isinstance(a, DeviceAttribute) and a.name == "refused" and "bed 4" in a.value for a in other)
    nobody = decoder.feed(msg(MSH_ORIGINAL, PID, "OBX|1|NM|8867-4^HR^LN||150|/min|||||F", n=3))
    assert numerics(nobody) == []
    assert decoder.stats.wrong_patient == 2 and decoder.stats.frames_decoded == 1 and decoder.stats.frames_rejected == 0
    codes = [(a.msa.msa_1.value, a.err.err_3.value if a.err else "") for a in acks(decoder)]
    assert codes == [("AA", ""), ("AR", "204^Unknown key identifier^HL70357"), ("AR", "204^Unknown key identifier^HL70357")]


def test_wrong_patient_ends_a_minute_after_the_last_refusal():
    now = [T0]
    decoder = Hl7Decoder(source="t", clock=lambda: now[0], bed="3")
    decoder.feed(msg(MSH_ORIGINAL, PID, "PV1||I|CHAIRS^1^4", "OBX|1|NM|8867-4^HR^LN||150|/min|||||F"))
    now[0] = T0 + timedelta(seconds=30)
    early = decoder.feed(msg(MSH_ORIGINAL, PID, PV1, "OBX|1|NM|8867-4^HR^LN||61|/min|||||F", n=2))
    assert not [c for c in early if isinstance(c, DeviceCondition)]
    now[0] = T0 + timedelta(seconds=61)
    late = decoder.feed(msg(MSH_ORIGINAL, PID, PV1, "OBX|1|NM|8867-4^HR^LN||61|/min|||||F", n=3))
    assert [(c.code, c.active) for c in late if isinstance(c, DeviceCondition)] == [("wrong_patient", False)]


def test_gate_rules():
    gate = PatientGate(bed="ICU^2^3")
    from drivers.hl7.host import Identity, parse_location

    def ident(pv1="", *ids):
        return Identity(parse_location(pv1) if pv1 else ("", "", ""), frozenset(ids))

    assert gate.check(ident("icu^2^ 3")) is None and gate.check(ident("ICU^1^3")) is not None
    gate.set_expected("3")
    assert gate.check(ident("ANY^9^3")) is None and gate.check(ident("3")) is None and gate.check(ident("^^4"))
    gate.set_expected(patient="12345")
    assert gate.check(ident("", "12345", "x")) is None and gate.check(ident("", "999"))
    assert gate.check(ident("")) is not None
    gate.set_expected()                                    # nothing expected: lock on the first
    assert gate.check(ident("C^1^3", "a")) is None
    assert gate.check(ident("C^1^3", "a")) is None and gate.check(ident("", "a")) is None
    assert gate.check(ident("C^1^4", "a")) is not None and gate.check(ident("C^1^3", "b")) is not None
    assert "bed 3" in gate.expected


def test_the_session_can_set_its_bed_from_another_thread():
    decoder = make()
    thread = threading.Thread(target=decoder.set_expected_patient, kwargs={"bed": "4"})
    thread.start()
    thread.join()
    assert values(decoder.feed(msg(MSH_ORIGINAL, PID, PV1, "OBX|1|NM|8867-4^HR^LN||61|/min|||||F"))) == {}
    assert decoder.stats.wrong_patient == 1


# ------------------------------------------------------------------ local codes
def test_the_clinic_table_adds_and_replaces_local_codes(tmp_path, monkeypatch):
    segment = "OBX|1|NM|101^HR^99MNDRY||72|bpm|||||F"
    assert values(make().feed(msg(MSH_ORIGINAL, PID, PV1, segment))) == {}          # unknown vendor code
    table = {"schema_version": 1, "codes": [{"system": "99MNDRY", "code": "101", "vital": "hr"},
                                            {"system": "99VGLSIM", "code": "HR", "vital": "pr"}],
             "units": [{"text": "schläge/min", "unit": "bpm"}]}
    (tmp_path / "hl7_local_codes.json").write_text(json.dumps(table), encoding="utf-8")
    monkeypatch.setenv("VIGIL_CONFIG_DIR", str(tmp_path))
    decoder = make()
    items = decoder.feed(msg(MSH_ORIGINAL, PID, PV1, segment, "OBX|2|NM|HR^HR^99VGLSIM||70|Schläge/min|||||F",
                             "OBX|3|NM|SPO2^SpO2^99VGLSIM||97|%|||||F"))
    assert values(items) == {"hr": 72, "pr": 70, "spo2": 97}     # the shipped SPO2 entry still applies
    monkeypatch.delenv("VIGIL_CONFIG_DIR")
    assert values(make(codes=str(tmp_path / "hl7_local_codes.json")).feed(msg(MSH_ORIGINAL, PID, PV1, segment))) \
        == {"hr": 72}


def test_unmapped_codes_are_listed_once():
    decoder = make()
    items = decoder.feed(msg(MSH_ORIGINAL, PID, PV1, "OBX|1|NM|9999^Thing^99X||1|bpm|||||F",
                             "OBX|2|NM|9999^Thing^99X||2|bpm|||||F"))
    assert [(a.name, a.value) for a in items if isinstance(a, DeviceAttribute)] == [("unmapped_codes", "9999^Thing^99X")]


@pytest.mark.parametrize("content,message", [
    ("{", "not valid JSON"),
    ('{"schema_version": 1, "codes": [{"system": "X", "code": "1", "vital": "heart"}]}', "unknown vital 'heart'"),
    ('{"schema_version": 1, "codes": [{"system": "X", "code": "1"}]}', "exactly one of vital or wave"),
    ('{"schema_version": 2}', "schema_version"),
])
def test_a_broken_clinic_table_is_refused_clearly(tmp_path, content, message):
    path = tmp_path / "codes.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        LocalCodes.load(path)
    with pytest.raises(DeviceUrlError, match=message):
        parse_device_url(f"mllp://127.0.0.1:2575?protocol=hl7&codes={path}")


def test_units_of_the_codebook():
    book = Codebook()
    assert book.unit(["266016", "MDC_DIM_MMHG", "MDC"]) == "mmHg" and book.unit([""]) == "" and book.unit(["x"]) is None
    assert Codebook.convert_vital("etco2", 5.0, "kPa") == pytest.approx(37.5031)
    assert Codebook.convert_vital("temp", 212.0, "degF") == pytest.approx(100.0)
    assert Codebook.convert_vital("hr", 60.0, "mmHg") is None and Codebook.wave_scale("ecg", "uV") == 0.001


# ------------------------------------------------------------------ waveforms
def test_waveforms_with_their_sample_period():
    items = make().feed(msg(MSH_PCD, PID, PV1,
                            "OBX|1|NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1.1.1.1|100^-50^^250|266419^MDC_DIM_MICRO_VOLT^MDC"
                            "|||||R",
                            "OBX|2|NM|67981^MDC_ATTR_TIME_PD_SAMP^MDC|1.1.1.1.1|2|264338^MDC_DIM_MILLI_SEC^MDC|||||R",
                            "OBX|3|MA|150452^MDC_PULS_OXIM_PLETH^MDC|1.2.1.1|0.5^9~0.6^9~0.7^9||||||R"))
    ecg, pleth = [i for i in items if isinstance(i, WaveformChunk)]
    assert (ecg.channel, ecg.rate, pleth.channel, pleth.rate) == ("ecg", 500.0, "pleth", 100.0)
    np.testing.assert_allclose(ecg.samples, [0.1, -0.05, np.nan, 0.25], rtol=1e-6)
    np.testing.assert_allclose(pleth.samples, [0.5, 0.6, 0.7], rtol=1e-6)
    assert ecg.start_time == T0 - timedelta(seconds=4 / 500)


# ------------------------------------------------------------------ emulator captures
def capture(variant: str, seconds: float = 8.0, scenario: str = "sensor_off", start_at: float = 0.0) -> bytes:
    model = PhysiologyModel(scenario, seed=2, start=T0)
    if start_at:
        model.advance(start_at)
    emulator = Hl7Emulator(variant, bed="3", interval=1.0)
    out = bytearray()
    stop = model.t + seconds
    while model.t < stop:
        out += emulator.produce(model.advance(0.5).snapshot)
    return bytes(out)


@pytest.mark.parametrize("variant", ["pcd01", "loinc", "local"])
def test_each_variant_decodes_to_the_same_vitals(variant):
    decoder = make(bed="3")
    result = decode_all(decoder, capture(variant, 40.0, "hypertensive_surge", start_at=30 * 60))
    assert decoder.stats.frames_decoded >= 40 and decoder.stats.frames_rejected == 0
    got = Counter(o.vital for o in numerics(result.items) if o.value is not None)
    assert {k for k in got} == {"hr", "pr", "spo2", "rr", "etco2", "temp", "nibp_sys", "nibp_dia", "nibp_mean"}
    assert got["nibp_sys"] == 1 and got["hr"] == 40
    hr = [o.value for o in numerics(result.items, "hr")]
    assert all(60 <= v <= 110 for v in hr)
    temp = [o.value for o in numerics(result.items, "temp")]
    assert all(35.5 <= v <= 38.5 for v in temp)                      # °F converted back
    assert 150 <= numerics(result.items, "nibp_sys")[0].value <= 200
    waves = {i.channel for i in result.items if isinstance(i, WaveformChunk)}
    assert waves == {"pcd01": {"ecg", "pleth"}, "loinc": set(), "local": {"pleth"}}[variant]


def test_probe_off_is_sent_as_status_x():
    result = decode_all(make(), capture("pcd01", 3.0, "sensor_off", start_at=15 * 60 + 5))
    assert all(o.value is None and o.quality == {Quality.INVALID} for o in numerics(result.items, "spo2"))


@pytest.mark.slow  # exhaustive: every split offset
@pytest.mark.parametrize("variant", ["pcd01", "local"])
def test_capture_split_at_every_offset_decodes_and_acknowledges_the_same(variant):
    data = capture(variant, 1.0)           # one message of numerics, one of waveforms
    whole = make()
    expected = [i.as_record() for i in whole.feed(data)]
    expected_acks = whole.take_output()
    assert whole.stats.frames_decoded == 2 and len(Unframer().feed(expected_acks)) == 2
    for cut in range(len(data) + 1):
        decoder = make()
        items = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert [i.as_record() for i in items] == expected, cut
        assert decoder.stats == whole.stats and decoder.take_output() == expected_acks, cut


# ------------------------------------------------------------------ fuzzing
@FAST
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=5))
def test_random_bytes_never_raise(data, cuts):
    decoder = make()
    feed_in_pieces(decoder, data, cuts)
    assert decoder.stats.bytes_in == len(data)


@FAST
@given(body=st.text(max_size=400))
def test_any_text_in_a_frame_is_answered_once(body):
    decoder = make()
    decoder.feed(frame(body.encode("utf-8", "surrogatepass")))
    s = decoder.stats
    assert s.frames_decoded + s.frames_rejected + s.wrong_patient == 1
    assert len(Unframer().feed(decoder.take_output())) <= 1


CAPTURE = capture("pcd01", 3.0)


@FAST
@given(edits=st.lists(st.tuples(st.integers(0, len(CAPTURE) - 1), st.sampled_from(b"|^~\\&\r\x0b\x1c0123456789AXZ.-")),
                      min_size=1, max_size=25),
       chunk=st.integers(1, 3000))
def test_corrupted_captures_never_raise_and_every_message_is_counted(edits, chunk):
    data = bytearray(CAPTURE)
    for at, byte in edits:
        data[at] = byte
    payloads = len(Unframer().feed(bytes(data)))
    decoder = make()
    items = decode_all(decoder, bytes(data), chunk=chunk).items
    s = decoder.stats
    assert s.frames_decoded + s.frames_rejected + s.wrong_patient == payloads
    assert s.acks_sent <= payloads
    assert all(o.value is None or o.quality or o.value < 400 for o in numerics(items))


def test_vigil_decode_reads_an_mllp_capture(tmp_path):
    from tests.test_cli import cli

    path = tmp_path / "hl7.bin"
    path.write_bytes(b"\r\n" + capture("pcd01", 2.0) + one(bed="8", n=2))
    status, lines, err = cli("decode", "--protocol", "hl7", "--waves", str(path))
    assert status == 0
    assert {"kind": "numeric", "vital": "spo2", "value": 98.0, "unit": "%",
            "device_time": "2026-11-28T09:00:00+00:00"} in lines
    assert {line["channel"] for line in lines if line["kind"] == "wave"} == {"ecg", "pleth"}
    assert "hl7: 4 frames decoded" in err and "2 bytes skipped" in err
    assert "1 wrong patient" in err   # the capture's bed 3 is locked on; bed 8 is refused
    assert err.count("\n") == 1


def test_simulate_refuses_options_of_the_other_transport():
    from tests.test_cli import cli

    for args, message in ((["--protocol", "hl7", "--link", "/tmp/x"], "--link is for serial protocols"),
                          (["--protocol", "masimo", "--listen", "0"], "--listen and --connect are for network protocols"),
                          (["--protocol", "hl7", "--listen", "x:y"], "--listen must be [HOST:]PORT"),
                          (["--protocol", "hl7", "--variant", "mindray"], "hl7 variant must be one of")):
        status, _, err = cli("simulate", *args)
        assert status == 2 and message in err, err


# ------------------------------------------------------------------ URLs
def test_mllp_urls():
    spec = parse_device_url("mllp://0.0.0.0:2575?protocol=hl7&bed=3&interval=60")
    assert (spec.kind, spec.address, dict(spec.options)) == ("mllp", ("0.0.0.0", 2575), {"bed": "3", "interval": 60.0})
    link = open_link(spec)
    assert isinstance(link, MllpServerLink) and link.expected_interval == 60 and "listening on 0.0.0.0:2575" in spec.label
    assert isinstance(open_link("mllp-client://127.0.0.1:2575?protocol=hl7"), MllpClientLink)
    for url, message in (("mllp://127.0.0.1?protocol=hl7", "give the host and port"),
                         ("mllp-client://127.0.0.1:0?protocol=hl7", "between 1 and 65535"),
                         ("mllp://127.0.0.1:2575?protocol=hl7&baud=9600", "takes no option 'baud'"),
                         ("mllp://127.0.0.1:2575?protocol=datex", "datex is a serial protocol"),
                         ("/dev/ttyUSB0?protocol=hl7", "arrives over the network"),
                         ("mllp://127.0.0.1:2575", "say which protocol")):
        with pytest.raises(DeviceUrlError, match=message):
            parse_device_url(url)


# ------------------------------------------------------------------ links over loopback sockets
class Collector(E2ECollector):
    """The end-to-end tests' listener, counting the batches too."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def items_received(self, items):
        with self.lock:
            self.items.extend(items)
            self.batches += 1


def reader(sock: socket.socket) -> list[bytes]:
    """Acknowledgements that arrived on ``sock`` (non-blocking)."""
    sock.setblocking(False)
    unframer, data = Unframer(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except BlockingIOError:
        pass
    sock.setblocking(True)
    return unframer.feed(data)


def one(bed: str = "3", hr: int = 70, n: int = 1) -> bytes:
    return msg(MSH_ORIGINAL, PID, f"PV1||I|CHAIRS^1^{bed}", f"OBX|1|NM|8867-4^HR^LN||{hr}|/min|||||F", n=n)


@pytest.fixture
def server():
    link = MllpServerLink("127.0.0.1", 0, bed="3", interval=0.5)
    collector = Collector()
    worker = AcquisitionWorker(link, [collector], backoff=(0.1,))
    worker.start()
    assert collector.wait(lambda: link.address is not None)
    yield link, collector
    assert worker.stop(2.0)


@pytest.mark.slow
def test_server_takes_several_monitors_acknowledges_each_and_refuses_another_bed(server):
    link, col = server
    a = socket.create_connection(link.address)
    b = socket.create_connection(link.address)
    try:
        a.sendall(one(hr=71) + one(hr=72, n=2))
        b.sendall(one(bed="9", hr=150) + b"\x0bgarbage\x1c\x0d")
        assert col.wait(lambda: link.stats.acks_sent == 4)
        time.sleep(0.1)
        got_a, got_b = reader(a), reader(b)
    finally:
        a.close()
        b.close()
    assert [parse_message(p.decode(), find_groups=False).msa.msa_1.value for p in got_a] == ["AA", "AA"]
    assert [parse_message(p.decode(), find_groups=False).msa.msa_1.value for p in got_b] == ["AR", "AE"]
    assert sorted(o.value for o in numerics(col.items, "hr")) == [71, 72]     # bed 9's 150 never became one
    assert ("wrong_patient", True) in col.conditions()
    s = link.stats
    assert (s.frames_decoded, s.wrong_patient, s.frames_rejected) == (2, 1, 1)


@pytest.mark.slow
def test_a_monitor_that_goes_away_raises_connection_lost_until_it_reconnects(server):
    link, col = server
    sock = socket.create_connection(link.address)
    sock.sendall(one())
    assert col.wait(lambda: numerics(col.items, "hr"))
    sock.close()
    assert col.wait(lambda: ("connection_lost", True) in col.conditions())       # after interval + 1 s
    sock = socket.create_connection(link.address)
    try:
        sock.sendall(one(hr=80, n=2))
        assert col.wait(lambda: ("connection_lost", False) in col.conditions() and len(numerics(col.items, "hr")) == 2)
    finally:
        sock.close()
    assert all(state is not LinkState.LOST for state, _ in col.states)


@pytest.mark.slow
def test_the_bed_can_be_changed_while_listening(server):
    link, col = server
    sock = socket.create_connection(link.address)
    try:
        sock.sendall(one(bed="3", hr=61))
        assert col.wait(lambda: link.stats.frames_decoded == 1)
        threading.Thread(target=link.set_expected_patient, kwargs={"bed": "5"}).start()
        time.sleep(0.1)
        sock.sendall(one(bed="3", hr=62, n=2) + one(bed="5", hr=63, n=3))
        # the counts move before the collector has the batch: wait for both (failed once in a full run)
        assert col.wait(lambda: link.stats.frames_decoded == 2 and link.stats.wrong_patient == 1
                        and len(numerics(col.items, "hr")) == 2)
    finally:
        sock.close()
    assert [o.value for o in numerics(col.items, "hr")] == [61, 63]


class Drain(threading.Thread):
    """Reads a socket until it closes (acknowledgements), in its own thread."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock, self.chunks = sock, []

    def run(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    def acks(self) -> list[bytes]:
        return Unframer().feed(b"".join(self.chunks))


@pytest.mark.slow
def test_a_flood_on_one_connection_does_not_starve_another():
    link = MllpServerLink("127.0.0.1", 0, bed="3")
    link.open()
    flood = b"".join(one(hr=60 + i % 40, n=i) for i in range(3000))
    a = socket.create_connection(link.address)
    b = socket.create_connection(link.address)
    Drain(a).start()
    sender = threading.Thread(target=lambda: a.sendall(flood), daemon=True)
    try:
        link.read(0.2)                      # accept both
        sender.start()
        time.sleep(0.3)                     # A's bytes fill the socket buffers
        b.sendall(one(hr=111, n=9999))
        time.sleep(0.1)
        first = link.read(0.5)
        assert 111 in [o.value for o in numerics(first, "hr")]   # B is served in the same read
        assert len(numerics(first, "hr")) < 3000                  # A gets a bounded part per read
        total = numerics(first, "hr")
        while len(total) < 3001:
            total += numerics(link.read(0.5), "hr")
        assert link.stats.frames_decoded == 3001
    finally:
        a.close()
        b.close()
        link.close()


@pytest.mark.slow
def test_a_thousand_messages_a_second_are_all_acknowledged_in_batches(server):
    link, col = server
    sock = socket.create_connection(link.address)
    drain = Drain(sock)
    drain.start()
    try:
        start = time.monotonic()
        for i in range(1000):
            sock.sendall(one(hr=60 + i % 50, n=i))
            if i % 100 == 99:   # paced at 1,000 messages a second
                time.sleep(max(0.0, start + (i + 1) / 1000 - time.monotonic()))
        assert col.wait(lambda: link.stats.acks_sent == 1000, 20)
        assert col.wait(lambda: len(drain.acks()) == 1000)
    finally:
        sock.close()
    assert all(b"\rMSA|AA|" in a for a in drain.acks())
    assert len(numerics(col.items, "hr")) == 1000
    assert col.batches < 1000                                     # batched, not one call per message


@pytest.mark.slow
def test_client_link_reconnects_to_a_gateway():
    """The simulated gateway pulls its own cable at 20:00 and is back at 21:30 (simulated)."""
    from drivers.simulator.serve import MllpServer

    gateway = MllpServer(scenario="cable_pull", speed=300, variant="loinc", listen=("127.0.0.1", 0), bed="3")
    url = gateway.open()
    assert url.startswith("mllp-client://127.0.0.1:") and url.endswith("&bed=3")
    stop = threading.Event()
    thread = threading.Thread(target=gateway.serve, args=(stop,), daemon=True)
    thread.start()
    col = Collector()
    worker = AcquisitionWorker(open_link(url), [col], backoff=(0.1,))
    worker.start()
    try:
        assert col.wait(lambda: ("connection_lost", False) in col.conditions(), 20)
        seen = len(numerics(col.items, "spo2"))
        assert col.wait(lambda: len(numerics(col.items, "spo2")) >= seen + 3)
    finally:
        assert worker.stop(2.0)
        stop.set()
        thread.join(2)
        gateway.close()
    conditions = col.conditions()
    assert conditions.index(("connection_lost", True)) < conditions.index(("connection_lost", False))
    assert any(state is LinkState.CONNECTED and detail == "restored" for state, detail in col.states)
    assert gateway.emulator.acks["AA"] >= 3


# ------------------------------------------------------------------ end to end: vigil simulate over TCP
def simulate_hl7(*args: str):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, str(root / "main.py"), "simulate", "--protocol", "hl7", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    assert url.startswith("mllp"), proc.stderr.read() if proc.poll() is not None else url
    return proc, url


@pytest.mark.slow
def test_served_hl7_reaches_vigil_through_a_socket():
    from tests.test_e2e_pty import stop

    proc, url = simulate_hl7("--variant", "pcd01", "--bed", "3", "--scenario", "sensor_off", "--speed", "60")
    assert url.startswith("mllp-client://127.0.0.1:") and url.endswith("?protocol=hl7&bed=3")
    col = Collector()
    worker = AcquisitionWorker(open_link(url), [col])
    worker.start()
    try:
        assert col.wait(lambda: any(o.value is None for o in numerics(col.items, "spo2"))
                        and numerics(col.items, "nibp_sys"), 40)
    finally:
        assert worker.stop(2.0)
        stop(proc)
    spo2 = [o.value for o in numerics(col.items, "spo2") if o.value is not None]
    assert spo2 and all(90 <= v <= 100 for v in spo2)
    assert {i.channel for i in col.items if isinstance(i, WaveformChunk)} == {"ecg", "pleth"}
    assert worker.link.stats.frames_decoded > 20 and worker.link.stats.frames_rejected == 0


@pytest.mark.slow
def test_a_simulated_monitor_connects_to_vigil_and_reconnects_after_a_restart():
    from tests.test_e2e_pty import stop

    link = MllpServerLink("127.0.0.1", 0, bed="1", interval=1.0)
    col = Collector()
    worker = AcquisitionWorker(link, [col])
    worker.start()
    assert col.wait(lambda: link.address is not None)
    target = f"127.0.0.1:{link.address[1]}"
    proc, url = simulate_hl7("--connect", target, "--variant", "local", "--speed", "5")
    assert url == f"mllp://{target}?protocol=hl7&bed=1"
    try:
        assert col.wait(lambda: len(numerics(col.items, "hr")) >= 3, 20)
        stop(proc)
        assert col.wait(lambda: ("connection_lost", True) in col.conditions(), 20)
        proc, _ = simulate_hl7("--connect", target, "--variant", "local", "--speed", "5")
        assert col.wait(lambda: ("connection_lost", False) in col.conditions(), 20)
        seen = len(numerics(col.items, "hr"))
        assert col.wait(lambda: len(numerics(col.items, "hr")) >= seen + 3, 20)
    finally:
        assert worker.stop(2.0)
        stop(proc)


@pytest.mark.slow
def test_a_monitor_at_another_bed_is_refused_and_says_so():
    from tests.test_e2e_pty import stop

    proc, url = simulate_hl7("--bed", "7", "--variant", "loinc", "--speed", "20")
    col = Collector()
    worker = AcquisitionWorker(open_link(url.replace("bed=7", "bed=3")), [col])
    worker.start()
    try:
        assert col.wait(lambda: worker.link.stats.wrong_patient >= 3, 20)
    finally:
        assert worker.stop(2.0)
        stop(proc)
    assert numerics(col.items) == [] and ("wrong_patient", True) in col.conditions()
    assert "Vigil refused a message" in proc.stderr.read() and "bed 7" in str(list(col.items))


@pytest.mark.slow
def test_vigil_record_from_the_served_hl7_monitor_raises_the_desaturation_alarm(tmp_path):
    from tests.test_e2e_pty import stop
    from tests.test_recording import assert_served_desaturation_recorded, vigil

    proc, url = simulate_hl7("--scenario", "desaturation", "--speed", "30", "--variant", "pcd01")
    try:
        result = vigil("record", "--device", url, "--duration", "45", "--db", str(tmp_path / "v.sqlite"))
    finally:
        stop(proc)
    assert_served_desaturation_recorded(result)
