"""The simulated monitor: scenarios, agreement of waveforms with numerics, NIBP, speed."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import pytest

from drivers.base import ConditionTracker
from drivers.model import NumericObservation, Quality, WaveformChunk
from drivers.simulator.device import SimulatedMonitorLink, step_items
from drivers.simulator.physiology import WAVE_RATES, PhysiologyModel
from drivers.simulator.scenarios import SCENARIOS, Scenario

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)


def run(scenario: str, seconds: float, step: float = 1.0, waves: bool = False, seed: int = 1):
    model = PhysiologyModel(scenario, seed=seed, start=T0, waves=waves)
    ticks, nibp, wave = [], [], {ch: [] for ch in WAVE_RATES}
    for _ in range(int(seconds / step)):
        s = model.advance(step)
        ticks += s.ticks
        nibp += s.nibp
        for ch, samples in s.snapshot.waves.items():
            wave[ch].append(samples)
    return model, ticks, nibp, {ch: np.concatenate(v) if v else np.empty(0) for ch, v in wave.items()}


def series(ticks, key, start_min=0.0, end_min=1e9):
    return [t.values[key] for t in ticks if start_min * 60 <= (t.time - T0).total_seconds() < end_min * 60]


def test_scenario_names_and_unknown_scenario():
    assert set(SCENARIOS) == {"normal", "hypertensive_surge", "desaturation", "bradycardia", "tachycardia",
                              "apnea", "sensor_off", "motion_artifact", "cable_pull"}
    with pytest.raises(ValueError, match="choose one of"):
        Scenario("asystole")


def test_same_seed_same_numerics_whatever_the_step():
    _, a, na, _ = run("normal", 900, step=1.0)
    _, b, nb, _ = run("normal", 900, step=7.5)
    _, c, _, _ = run("normal", 900, step=1.0, seed=2)
    assert [t.values for t in a] == [t.values for t in b][: len(a)]
    assert [(r.sys, r.dia) for r in na] == [(r.sys, r.dia) for r in nb]
    assert [t.values for t in a] != [t.values for t in c]


def test_normal_stays_inside_default_limits():
    _, ticks, nibp, _ = run("normal", 7200)
    assert 50 < min(series(ticks, "hr")) and max(series(ticks, "hr")) < 120
    assert min(series(ticks, "spo2")) > 91
    assert 10 <= min(series(ticks, "rr")) and max(series(ticks, "rr")) <= 30
    assert max(r.sys for r in nibp) < 160 and max(r.dia for r in nibp) < 100


def test_hypertensive_surge_peaks_near_40_minutes():
    _, _, nibp, _ = run("hypertensive_surge", 7200)
    peak = max(nibp, key=lambda r: r.sys)
    assert 30 <= (peak.time - T0).total_seconds() / 60 <= 48
    assert peak.sys >= 180 and peak.dia >= 100
    first_high = next(r for r in nibp if r.sys >= 180)
    assert 30 <= (first_high.time - T0).total_seconds() / 60 <= 41
    assert max(r.sys for r in nibp if (r.time - T0).total_seconds() > 110 * 60) < 160


def test_nibp_cycle_takes_about_30_s_on_a_schedule():
    model = PhysiologyModel("normal", seed=3, start=T0, nibp_interval=300)
    readings, busy = [], 0
    for _ in range(1200):
        step = model.advance(1.0)
        readings += step.nibp
        busy += step.snapshot.nibp_in_progress
    minutes = [round((r.time - T0).total_seconds() / 60, 2) for r in readings]
    assert len(readings) == 4 and all(25 / 60 < m % 5 < 40 / 60 for m in minutes), minutes
    assert 4 * 26 <= busy <= 4 * 34
    assert step.snapshot.nibp_time == readings[-1].time and step.snapshot.values["nibp_sys"] == readings[-1].sys


def test_manual_nibp_request():
    model = PhysiologyModel("normal", seed=3, start=T0)
    model.advance(100)
    assert model.request_nibp()
    assert not model.request_nibp() or model.nibp_in_progress is False
    readings = model.advance(40).nibp
    assert len(readings) == 1 and 125 < (readings[0].time - T0).total_seconds() < 140


def test_desaturation_bradycardia_tachycardia_timetables():
    _, ticks, _, _ = run("desaturation", 3600)
    assert min(series(ticks, "spo2", 13.5, 15.5)) < 88 and min(series(ticks, "spo2", 0, 11.5)) > 91
    assert 88 <= min(series(ticks, "spo2", 44.5, 47.5)) <= 91
    _, ticks, _, _ = run("bradycardia", 1800)
    assert max(series(ticks, "hr", 16, 17)) < 50 and min(series(ticks, "hr", 17.1, 17.6)) < 40
    _, ticks, _, _ = run("tachycardia", 1800)
    assert min(series(ticks, "hr", 11.5, 16.5)) > 120 and max(series(ticks, "hr", 20.1, 20.6)) > 150


def test_apnea_flattens_capnogram_and_rr():
    _, ticks, _, waves = run("apnea", 29 * 60, waves=True)
    assert series(ticks, "rr", 27.05, 27.8) == [0.0] * len(series(ticks, "rr", 27.05, 27.8))
    assert all(v is None for v in series(ticks, "etco2", 27.05, 27.8))
    co2 = waves["co2"]
    fs = WAVE_RATES["co2"]
    apnea = co2[int(27.1 * 60 * fs): int(27.8 * 60 * fs)]
    breathing = co2[int(10 * 60 * fs): int(11 * 60 * fs)]
    assert apnea.max() < 1.5 and breathing.max() > 30
    assert min(series(ticks, "rr", 25.5, 26.9)) < 10


def _rate_from_peaks(signal: np.ndarray, fs: float, level: float = 0.6) -> float:
    """Beats (or breaths) per minute: upward crossings of ``level`` of the signal's range."""
    low, high = np.nanmin(signal), np.nanmax(signal)
    above = signal > low + level * (high - low)
    rises = np.flatnonzero(above[1:] & ~above[:-1])
    return 60.0 * (len(rises) - 1) / ((rises[-1] - rises[0]) / fs)


@pytest.mark.parametrize("scenario,minute", [("normal", 5), ("tachycardia", 13), ("bradycardia", 16.5)])
def test_pleth_and_ecg_pulse_at_the_reported_rates(scenario, minute):
    model = PhysiologyModel(scenario, seed=4, start=T0)
    model.advance(minute * 60)
    ticks, pleth, ecg = [], [], []
    for _ in range(30):
        step = model.advance(1.0)
        ticks += step.ticks
        pleth.append(step.snapshot.waves["pleth"])
        ecg.append(step.snapshot.waves["ecg"])
    pr = np.mean([t.values["pr"] for t in ticks])
    hr = np.mean([t.values["hr"] for t in ticks])
    assert _rate_from_peaks(np.concatenate(pleth), 100.0) == pytest.approx(pr, abs=4)
    assert _rate_from_peaks(np.concatenate(ecg), 250.0) == pytest.approx(hr, abs=4)


def test_capnogram_breathes_at_rr():
    model = PhysiologyModel("normal", seed=4, start=T0)
    model.advance(300)
    ticks, co2 = [], []
    for _ in range(60):
        step = model.advance(1.0)
        ticks += step.ticks
        co2.append(step.snapshot.waves["co2"])
    rr = np.mean([t.values["rr"] for t in ticks])
    assert _rate_from_peaks(np.concatenate(co2), 25.0, 0.5) == pytest.approx(rr, abs=2.5)


def test_sensor_off_blanks_oximetry_and_pleth():
    model = PhysiologyModel("sensor_off", seed=1, start=T0)
    model.advance(15 * 60 + 10)
    step = model.advance(5.0)
    assert all(t.values["spo2"] is None and t.values["pr"] is None for t in step.ticks)
    assert all(t.conditions == {"sensor_off"} for t in step.ticks)
    assert np.isnan(step.snapshot.waves["pleth"]).all()
    assert not np.isnan(step.snapshot.waves["ecg"]).any()
    model.advance(120)
    assert model.advance(1.0).ticks[0].values["spo2"] is not None


def test_motion_artifact_flags_and_cable_pull_window():
    _, ticks, _, _ = run("motion_artifact", 22 * 60)
    assert any("artifact" in t.conditions for t in ticks if 8 * 60 <= (t.time - T0).total_seconds() < 9 * 60)
    assert not any("artifact" in t.conditions for t in ticks if (t.time - T0).total_seconds() < 8 * 60)
    model = PhysiologyModel("cable_pull", start=T0, waves=False)
    assert not model.advance(19 * 60).disconnected
    assert model.advance(90).disconnected
    assert not model.advance(60).disconnected


def test_step_items_are_flagged_simulated_in_time_order():
    model = PhysiologyModel("sensor_off", seed=1, start=T0)
    tracker = ConditionTracker("sim")
    items = step_items(model.advance(15 * 60 + 3), "sim", tracker)
    numerics = [i for i in items if isinstance(i, NumericObservation)]
    assert all(Quality.SIMULATED in n.quality for n in numerics)
    assert [n.sample_time for n in numerics] == sorted(n.sample_time for n in numerics)
    conditions = [i for i in items if i.kind == "condition"]
    assert [(c.code, c.active) for c in conditions] == [("sensor_off", True)]
    off = [n for n in numerics if n.vital == "spo2" and n.value is None]
    assert off and all(Quality.SENSOR_OFF in n.quality for n in off)
    waves = {i.channel: i for i in items if isinstance(i, WaveformChunk)}
    assert set(waves) == {"ecg", "pleth", "co2"} and waves["ecg"].start_time == T0


def test_speed_factor_runs_simulated_time_faster():
    link = SimulatedMonitorLink("normal", speed=200, waves=False)
    link.open()
    deadline = time.monotonic() + 0.5
    items = []
    while time.monotonic() < deadline:
        items += link.read(0.05)
    seconds = {i.sample_time for i in items if isinstance(i, NumericObservation) and i.vital == "hr"}
    assert 60 <= len(seconds) <= 130
    assert (link.clock() - min(seconds)).total_seconds() == pytest.approx(len(seconds), abs=15)


def test_a_long_step_keeps_every_second_of_the_waveforms():
    """Issue 9: above ~100x the simulator kept only its last 5 s of vitals for the waveforms, so
    most of the pleth was missing (NaN) and the capnogram flat; a step may span minutes now."""
    model = PhysiologyModel("normal", start=T0)
    step = model.advance(120.0)                    # one step of two simulated minutes (600x at 20 Hz)
    pleth, co2 = step.snapshot.waves["pleth"], step.snapshot.waves["co2"]
    assert len(pleth) == 12000 and not np.isnan(pleth).any()
    for second in range(0, 120, 10):               # breathing all along, not a flat line
        window = co2[second * 25:(second + 10) * 25]
        assert window.max() - window.min() > 20
