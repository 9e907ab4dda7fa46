"""The observation model and the vital-sign catalogue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from pydantic import ValidationError

from drivers.base import ConditionTracker, condition_text
from drivers.catalogue import CATALOGUE, VITAL_KEYS, spec
from drivers.model import DeviceCondition, NumericObservation, Quality, WaveformChunk, numeric

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)


def test_catalogue_has_every_key_with_units_and_codes():
    assert VITAL_KEYS == ("hr", "pr", "spo2", "pi", "nibp_sys", "nibp_dia", "nibp_mean",
                          "rr", "etco2", "temp", "spco", "spmet", "sphb", "pvi")
    assert spec("spo2").loinc == ("59408-5", "2708-6")
    assert spec("hr").mdc_code == 147842 and spec("hr").mdc_unit_code == 264864
    assert spec("nibp_sys").mdc_code == 150021 and spec("nibp_sys").ucum == "mm[Hg]"
    assert spec("etco2").loinc == ("19889-5",) and spec("rr").mdc_code == 151562
    for entry in CATALOGUE.values():
        low, high = entry.plausible
        assert low < high and entry.unit and entry.ucum


def test_unknown_vital_is_refused_with_the_known_keys():
    with pytest.raises(KeyError, match="known: hr, pr"):
        spec("bp")
    with pytest.raises(ValidationError):
        NumericObservation(vital="bp", value=1.0, unit="x", source="t", sample_time=T0)


def test_implausible_value_is_flagged_not_dropped():
    obs = numeric("spo2", 104.0, "t", T0)
    assert obs.value == 104.0 and Quality.IMPLAUSIBLE in obs.quality and obs.flagged
    assert Quality.IMPLAUSIBLE not in numeric("spo2", 100.0, "t", T0).quality
    assert numeric("hr", None, "t", T0).quality == frozenset()


def test_missing_value_is_none_and_nan_is_refused():
    assert numeric("pr", None, "t", T0).as_record()["value"] is None
    with pytest.raises(ValidationError, match="NaN"):
        numeric("pr", float("nan"), "t", T0)


def test_sample_time_must_be_aware():
    with pytest.raises(ValidationError):
        numeric("hr", 60.0, "t", datetime(2026, 1, 1))
    local = T0.astimezone(timezone(timedelta(hours=2)))
    assert numeric("hr", 60.0, "t", local).sample_time == T0


def test_record_carries_device_time_as_sent():
    obs = numeric("spo2", 98.0, "t", T0, device_time=datetime(2016, 2, 22, 22, 47, 45))
    assert obs.as_record() == {"kind": "numeric", "vital": "spo2", "value": 98.0, "unit": "%",
                               "device_time": "2016-02-22T22:47:45", "quality": []}


def test_waveform_chunk_is_float32_with_nan_gaps():
    chunk = WaveformChunk(channel="pleth", rate=100, start_time=T0, samples=[0.1, float("nan")], source="t")
    assert chunk.samples.dtype == np.float32 and chunk.duration == pytest.approx(0.02)
    assert chunk.as_record()["samples"] == [0.1, None]
    with pytest.raises(ValidationError):
        WaveformChunk(channel="eeg", rate=100, start_time=T0, samples=[0.0], source="t")
    with pytest.raises(ValidationError):
        WaveformChunk(channel="ecg", rate=0, start_time=T0, samples=[0.0], source="t")


def test_condition_codes_are_snake_case():
    with pytest.raises(ValidationError):
        DeviceCondition(code="Sensor Off", active=True, source="t", time=T0)


def test_condition_tracker_reports_changes_only_within_scope():
    tracker = ConditionTracker("t")
    first = tracker.update({"sensor_off"}, T0, managed={"sensor_off", "no_sensor"})
    assert [(c.code, c.active) for c in first] == [("sensor_off", True)]
    assert first[0].text == condition_text("sensor_off") == "Sensor off patient"
    assert tracker.update({"sensor_off"}, T0, managed={"sensor_off", "no_sensor"}) == []
    tracker.update({"low_battery"}, T0, managed={"low_battery"})
    changes = tracker.update(set(), T0, managed={"sensor_off", "no_sensor"})
    assert [(c.code, c.active) for c in changes] == [("sensor_off", False)]
    assert tracker.active == {"low_battery"}
    assert [(c.code, c.active) for c in tracker.clear(T0)] == [("low_battery", False)]


def test_fast_construction_equals_validated_construction():
    from drivers.model import TRUSTED_CONSTRUCTION, numerics_into, plausibility

    assert TRUSTED_CONSTRUCTION
    entries = [("spo2", 104.0, plausibility("spo2", 104.0)), ("pi", None, frozenset()),
               ("hr", 72.0, frozenset({Quality.ARTIFACT}))]
    out: list = []
    numerics_into(entries, "dev", T0, datetime(2026, 1, 1, 9), frozenset({Quality.SENSOR_OFF}), out)
    for fast, (vital, value, quality) in zip(out, entries, strict=True):
        slow = numeric(vital, value, "dev", T0, datetime(2026, 1, 1, 9), quality | {Quality.SENSOR_OFF})
        assert fast == slow and hash(fast) == hash(slow) and fast.model_dump() == slow.model_dump()
    assert Quality.IMPLAUSIBLE in out[0].quality and out[0].unit == "%"
    with pytest.raises(ValueError, match="timezone-aware"):
        numerics_into(entries, "dev", datetime(2026, 1, 1), None, frozenset(), [])
