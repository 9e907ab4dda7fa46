"""Issue 11, "Time": every duration runs on the monotonic clock; the wall clock only labels data.

A stepped clock (``tests.faults.clock``) drives a real serial link (``loop://``, the Masimo decoder)
and a real pipeline with its store: the computer's clock is set back or forward an hour in the
middle of a session, and alarm delays, audio pauses and the stored timeline must not notice
anything except a recorded ``clock_jump`` entry.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from drivers.acquisition import SerialLink
from drivers.masimo import MasimoDecoder, encode_line
from drivers.timebase import JumpDetector, Timeline
from monitor.alarms.profile import default_profile
from monitor.app.pipeline import Pipeline
from monitor.app.service import SessionService
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore
from tests.faults.clock import START, SteppedClock

ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)


def test_the_timeline_counts_monotonic_seconds_whatever_the_wall_clock_does():
    clock = SteppedClock()
    timeline = clock.timeline()
    detector = JumpDetector(timeline)
    assert timeline.now() == START and timeline.offset_s() == 0
    clock.advance(10)
    clock.jump(-3600)
    assert timeline.now() == START + timedelta(seconds=10)      # not 59 min before the start
    jump = detector.check()
    assert jump is not None and jump.jump_s == pytest.approx(-3600) and jump.t == START + timedelta(seconds=10)
    assert detector.check() is None                              # reported once
    clock.advance(5)
    clock.jump(1.5)                                              # under the threshold: not a jump
    assert detector.check() is None and timeline.now() == START + timedelta(seconds=15)


def test_a_naive_wall_clock_is_refused():
    with pytest.raises(ValueError, match="aware"):
        Timeline(wall=lambda: START.replace(tzinfo=None))


class Chair:
    """A pipeline on a Masimo oximeter at ``loop://``, driven second by second by a stepped clock
    (the pipeline is not started: each step feeds what the link decoded and ticks, as its thread
    would)."""

    def __init__(self, tmp_path, clock: SteppedClock) -> None:
        self.clock = clock
        self.link = SerialLink("loop://", lambda: MasimoDecoder(source="masimo:loop://"), {"baudrate": 9600},
                               "masimo:loop://")
        self.link.timeline = clock.timeline()
        self.link.open()
        self.store = SessionStore(tmp_path / "time.sqlite")
        self.pipeline = Pipeline(self.link, self.store, ClinicSettings(), default_profile())
        self.service = SessionService(self.pipeline)
        self.events: list = []
        self.pipeline.add_listener(self)
        self.second = 0

    # PipelineListener (only what the test needs)
    def on_alarm_event(self, event) -> None:
        self.events.append(event)

    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *args: None
        raise AttributeError(name)

    def run(self, seconds: int, spo2: float = 94.0) -> None:
        for _ in range(seconds):
            self.clock.advance(1.0)
            self.second += 1
            line = encode_line({"spo2": spo2, "pr": 72.0, "pi": 2.0},
                               device_time=START.replace(tzinfo=None) + timedelta(seconds=self.second))
            self.link._port.write(line)
            items = self.link.read(0.05)
            self.pipeline.feed(items)
            for _ in range(5):
                self.pipeline._tick()

    def close(self) -> None:
        self.pipeline.stop()
        self.link.close()
        self.store.close()

    def alarm(self, condition, event="started"):
        return next(e for e in self.events if e.condition == condition and e.event == event)


@pytest.mark.parametrize("jump_s", [-3600, 3600])
def test_a_clock_jump_changes_no_delay_no_pause_and_no_stored_time(tmp_path, jump_s):
    clock = SteppedClock()
    chair = Chair(tmp_path, clock)
    try:
        chair.run(5)
        session = chair.service.start_session(Patient(display_name="Jo Doe", weight_kg=70),
                                              KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), ANN)
        opened = chair.service.now()
        chair.run(10)
        desat_from = chair.service.now() + timedelta(seconds=1)
        chair.run(5, spo2=91)                      # MEDIUM at ≤ 91 % after 15 s
        clock.jump(jump_s)                         # the computer's clock is set back / forward an hour
        chair.run(15, spo2=91)
        started = chair.alarm("spo2_low")
        assert (started.t - desat_from).total_seconds() == pytest.approx(15, abs=0.01)
        chair.service.pause_audio(ANN)             # the clinic default: 120 s
        paused_at = chair.service.now()
        chair.run(60, spo2=91)
        clock.jump(-jump_s)                        # and back again, during the pause
        chair.run(59, spo2=91)
        assert chair.service.alarm_state().inactivation.audio_paused
        chair.run(2, spo2=91)
        assert not chair.service.alarm_state().inactivation.audio_paused
        resumed = next(e for e in chair.events if e.event == "audio_resumed")
        assert (resumed.t - paused_at).total_seconds() == pytest.approx(120, abs=0.01)
        chair.pipeline.writer.flush(10)

        record = chair.store.get_session(session)
        times = [o.sample_time for o in chair.store.observations(session)]
        assert times and min(times) >= record.started_at == opened
        assert max(times) - min(times) == timedelta(seconds=chair.second - 6)   # every second, none lost
        jumps = [e.payload for e in chair.store.entries(session, order="recorded")
                 if e.payload["type"] == "clock_jump"]
        assert [(j["offset_before_s"], j["offset_after_s"]) for j in jumps] == [(0, jump_s), (jump_s, 0)]
    finally:
        chair.close()


def test_a_session_started_after_a_jump_records_the_offset_in_force(tmp_path):
    clock = SteppedClock()
    chair = Chair(tmp_path, clock)
    try:
        chair.run(3)
        clock.jump(-7200)
        chair.run(3)
        session = chair.service.start_session(Patient(display_name="Jo Doe", weight_kg=70),
                                              KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), ANN)
        chair.pipeline.writer.flush(10)
        jumps = [e.payload for e in chair.store.entries(session, order="recorded")
                 if e.payload["type"] == "clock_jump"]
        assert [(j["offset_before_s"], j["offset_after_s"]) for j in jumps] == [(0, -7200)]
    finally:
        chair.close()


@pytest.mark.slow  # two processes in real time: `vigil simulate` on a pty, `vigil record` from it
@pytest.mark.parametrize("jump_s", [-3600, 3600])
def test_vigil_record_records_its_duration_when_the_clock_jumps(tmp_path, jump_s):
    """``vigil record --duration 8`` from a Masimo on a pseudo-terminal, the wall clock stepped by an
    hour 3 s in (the test seam VIGIL_TEST_CLOCK_JUMP of drivers.timebase): 8 s are recorded, none
    before the session's start, and the jump is in the record."""
    from tests.test_e2e_pty import simulate, stop
    from tests.test_recording import vigil

    db = tmp_path / "v.sqlite"
    proc, path = simulate("--protocol", "masimo", "--scenario", "normal")
    try:
        result = vigil("record", "--device", f"{path}?protocol=masimo", "--duration", "8", "--db", str(db),
                       timeout=60, env={"VIGIL_TEST_CLOCK_JUMP": f"3:{jump_s}"})
    finally:
        stop(proc)
    assert result.returncode == 0, result.stderr
    store = SessionStore(db)
    try:
        (record,) = store.list_sessions()
        assert (record.ended_at - record.started_at).total_seconds() == pytest.approx(8, abs=0.5)
        times = [o.sample_time for o in store.observations(record.id) if o.vital == "spo2"]
        assert times == sorted(times) and times[0] >= record.started_at
        assert 7 <= len(times) <= 9                              # one line a second for 8 s
        jumps = [e.payload for e in store.entries(record.id, order="recorded") if e.payload["type"] == "clock_jump"]
        assert len(jumps) == 1 and jumps[0]["offset_after_s"] == pytest.approx(jump_s, abs=1)
    finally:
        store.close()
