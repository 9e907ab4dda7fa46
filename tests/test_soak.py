"""``make soak`` (bench/soak.py): its command line run for a few simulated minutes, so that it cannot
rot, and its verdict on memory and threads."""

from __future__ import annotations

import json

import pytest

from bench import soak


def _sample(hour: float, rss: float, threads: int = 7, refcount: int = 50_000) -> dict:
    return {"hour": hour, "rss_mb": rss, "threads": threads, "refcount_none": refcount}


@pytest.mark.slow
def test_a_short_soak_samples_the_recording_window_and_writes_its_figures(qapp, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIGIL_CONFIG_DIR", str(tmp_path / "config"))   # main() points it at its own folder
    out = tmp_path / "soak.json"
    status = soak.main(["--hours", "0.05", "--every-hours", "0.025", "--speed", "300", "--out", str(out)])
    figures = json.loads(out.read_text())
    samples = figures["samples"]
    assert [round(s["hour"], 2) for s in samples][:1] == [0.0] and len(samples) == 3
    assert samples[-1]["hour"] >= 0.05
    # the session recorded: seven numerics a simulated second, and waveform blocks
    assert samples[-1]["observations"] >= 7 * 0.04 * 3600 and samples[-1]["waveform_blocks"] > 0
    assert samples[-1]["observations"] > samples[1]["observations"] > samples[0]["observations"]
    assert all(s["rss_mb"] > 50 and s["threads"] >= 3 and s["refcount_none"] > 0 for s in samples)
    assert samples[-1]["lag_s"] is not None and samples[-1]["db_mb"] > 0
    assert figures["passed"] is (status == 0)
    printed = capsys.readouterr().out
    assert "verdict:" in printed and printed.count(" h ") >= 3


def test_the_verdict_fails_memory_that_grows_after_the_first_hour():
    flat = [_sample(0, 150), _sample(1, 170), _sample(2, 171), _sample(3, 170.5)]
    passed, lines = soak.verdict(flat)
    assert passed and "+0.5 MB" in lines[0] and "constant" in lines[1]
    growing = [_sample(0, 150), _sample(1, 170), _sample(12, 190), _sample(24, 201)]
    passed, lines = soak.verdict(growing)
    assert not passed and "+31.0 MB" in lines[0] and "FAIL" in lines[0]
    assert soak.verdict(growing, max_growth_mb=40)[0]


def test_the_verdict_fails_threads_that_grow_and_reports_the_refcount_slope():
    passed, lines = soak.verdict([_sample(1, 170, 7, 1000), _sample(2, 170, 8, 1100), _sample(3, 170, 7, 1200)])
    assert not passed and "FAIL (grew)" in lines[1]
    assert "+100 per hour" in lines[2]
    assert soak.verdict([_sample(1, 170, 8), _sample(2, 170, 7)])[0]   # a thread that ended is fine
