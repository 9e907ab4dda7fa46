"""Device URLs and the acquisition worker: batches, stale data, loss, reconnection, shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from drivers.acquisition import AcquisitionWorker, Link, LinkError, LinkState
from drivers.model import DeviceCondition, numeric, utc_now
from drivers.simulator.device import SimulatedMonitorLink
from drivers.transport import DeviceUrlError, SerialLink, open_link, parse_device_url


# ------------------------------------------------------------------------------ URLs
@pytest.mark.parametrize("url,serial_url,protocol,baud", [
    ("/dev/ttyUSB0?protocol=masimo", "/dev/ttyUSB0", "masimo", None),
    ("serial:///dev/ttyUSB0?protocol=masimo&baud=19200", "/dev/ttyUSB0", "masimo", 19200),
    ("COM3?protocol=nonin", "COM3", "nonin", None),
    ("/dev/pts/7?protocol=NONIN8", "/dev/pts/7", "nonin8", None),
    ("socket://127.0.0.1:4001?protocol=intellivue", "socket://127.0.0.1:4001", "intellivue", None),
    ("loop://?protocol=masimo", "loop://", "masimo", None),
    ("spy:///dev/ttyUSB0?file=t.txt&protocol=masimo", "spy:///dev/ttyUSB0?file=t.txt", "masimo", None),
])
def test_serial_urls(url, serial_url, protocol, baud):
    spec = parse_device_url(url)
    assert (spec.kind, spec.serial_url, spec.protocol, spec.baudrate) == ("serial", serial_url, protocol, baud)


def test_sim_url():
    spec = parse_device_url("sim://?scenario=apnea&speed=10&seed=3")
    assert spec.kind == "sim" and spec.sim == {"scenario": "apnea", "speed": "10", "seed": "3"}
    link = open_link(spec)
    assert isinstance(link, SimulatedMonitorLink) and link.speed == 10 and link.source == "sim:apnea"
    assert spec.label == "Simulated monitor: apnea"


@pytest.mark.parametrize("url,message", [
    ("", "no device given"),
    ("/dev/ttyUSB0", "say which protocol"),
    ("/dev/ttyUSB0?protocol=zoll", "unknown protocol 'zoll'"),
    ("/dev/ttyUSB0?protocol=masimo&baud=fast", "baud must be a whole number"),
    ("/dev/ttyUSB0?protocol=masimo&baud=12345", "not a standard rate"),
    ("?protocol=masimo", "no port given"),
    ("sim://?scenario=asystole", "unknown scenario"),
    ("sim://?speed=0", "between 0.1 and 10000"),
    ("sim://?speed=x", "must be a number"),
    ("sim://?colour=red", "unknown simulator option"),
])
def test_bad_urls_say_what_is_wrong(url, message):
    with pytest.raises(DeviceUrlError, match=message):
        parse_device_url(url)


def test_serial_link_uses_protocol_defaults_and_baud_override():
    link = open_link("loop://?protocol=intellivue")
    assert isinstance(link, SerialLink) and link.settings["baudrate"] == 115200
    assert open_link("loop://?protocol=masimo&baud=19200").settings["baudrate"] == 19200
    assert link.source == "intellivue:loop://"


# ------------------------------------------------------------------------------ worker
class Recorder:
    """An AcquisitionListener that keeps everything."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.states: list[tuple[LinkState, str, int]] = []
        self.lock = threading.Lock()

    def items_received(self, items):
        with self.lock:
            self.batches.append(list(items))

    def link_changed(self, state, detail, attempt):
        with self.lock:
            self.states.append((state, detail, attempt))

    def conditions(self):
        with self.lock:
            return [(i.code, i.active) for b in self.batches for i in b if isinstance(i, DeviceCondition)]

    def wait(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return False


class ScriptedLink(Link):
    """A link whose behaviour the test drives: data on/off, plugged/unplugged."""

    expected_interval = 0.1

    def __init__(self) -> None:
        self.source = "fake"
        self.plugged = threading.Event()
        self.plugged.set()
        self.sending = threading.Event()
        self.sending.set()
        self.opens = 0
        self.closes = 0
        self.cancelled = threading.Event()

    def open(self):
        if not self.plugged.is_set():
            raise LinkError("no such device")
        self.opens += 1

    def read(self, timeout):
        self.cancelled.wait(timeout)
        if not self.plugged.is_set():
            raise LinkError("device vanished")
        if self.sending.is_set():
            return [numeric("spo2", 97.0, self.source, utc_now())]
        return []

    def close(self):
        self.closes += 1

    def cancel(self):
        self.cancelled.set()
        self.cancelled.clear()


def test_worker_emits_batches_and_stops_quickly():
    link, rec = ScriptedLink(), Recorder()
    worker = AcquisitionWorker(link, [rec])
    worker.start()
    assert rec.wait(lambda: len(rec.batches) >= 5)
    started = time.monotonic()
    assert worker.stop(timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert rec.states[0][0] is LinkState.CONNECTING and rec.states[1][0] is LinkState.CONNECTED
    assert rec.states[-1][0] is LinkState.STOPPED and link.closes >= 1


def test_stale_data_condition_comes_and_goes():
    link, rec = ScriptedLink(), Recorder()
    worker = AcquisitionWorker(link, [rec])
    worker.start()
    try:
        assert rec.wait(lambda: len(rec.batches) >= 2)
        link.sending.clear()
        assert rec.wait(lambda: ("stale_data", True) in rec.conditions())
        link.sending.set()
        assert rec.wait(lambda: ("stale_data", False) in rec.conditions())
    finally:
        worker.stop()


def test_unplug_reports_connection_lost_then_restored_with_backoff():
    link, rec = ScriptedLink(), Recorder()
    worker = AcquisitionWorker(link, [rec], backoff=(0.05, 0.1))
    worker.start()
    try:
        assert rec.wait(lambda: len(rec.batches) >= 2)
        link.plugged.clear()
        assert rec.wait(lambda: ("connection_lost", True) in rec.conditions())
        assert rec.wait(lambda: worker.reconnect_attempts >= 3)
        link.plugged.set()
        assert rec.wait(lambda: ("connection_lost", False) in rec.conditions())
        assert any(s is LinkState.CONNECTED and d == "restored" for s, d, _ in rec.states)
        assert any(s is LinkState.LOST and "retry 2" in d for s, d, _ in rec.states)
        assert link.opens == 2 and worker.reconnect_attempts == 0
    finally:
        worker.stop()


def test_device_conditions_end_when_the_link_drops():
    class ConditionLink(ScriptedLink):
        def read(self, timeout):
            items = super().read(timeout)
            return items + [DeviceCondition(code="sensor_off", active=True, source="fake", time=utc_now())]

    link, rec = ConditionLink(), Recorder()
    worker = AcquisitionWorker(link, [rec], backoff=(0.05,))
    worker.start()
    try:
        assert rec.wait(lambda: ("sensor_off", True) in rec.conditions())
        link.plugged.clear()
        assert rec.wait(lambda: ("connection_lost", True) in rec.conditions())
        conditions = rec.conditions()
        assert conditions.index(("sensor_off", False)) < conditions.index(("connection_lost", True))
    finally:
        worker.stop()


def test_device_absent_at_start_is_a_loss_and_a_failing_listener_does_not_stop_acquisition():
    link, rec = ScriptedLink(), Recorder()
    link.plugged.clear()

    class Broken:
        def items_received(self, items):
            raise RuntimeError("listener bug")

        def link_changed(self, *args):
            raise RuntimeError("listener bug")

    worker = AcquisitionWorker(link, [Broken(), rec], backoff=(0.05,))
    worker.start()
    try:
        assert rec.wait(lambda: ("connection_lost", True) in rec.conditions())
        link.plugged.set()
        assert rec.wait(lambda: ("connection_lost", False) in rec.conditions())
        assert rec.wait(lambda: len(rec.batches) >= 4)
    finally:
        assert worker.stop()


@pytest.mark.slow  # real-time acquisition through the worker
def test_cable_pull_scenario_through_the_worker():
    link = SimulatedMonitorLink("cable_pull", speed=400, waves=False)
    rec = Recorder()
    worker = AcquisitionWorker(link, [rec], backoff=(0.1,))
    worker.start()
    try:
        assert rec.wait(lambda: ("connection_lost", False) in rec.conditions(), timeout=15)
    finally:
        worker.stop()
    lost = [i for b in rec.batches for i in b if isinstance(i, DeviceCondition) and i.code == "connection_lost"]
    start = lost[0].time
    minutes = (start - link.model.start).total_seconds() / 60
    assert 19.9 <= minutes <= 20.5
    # one step of the link at speed 400 is ~16 simulated seconds
    assert 90 - 20 <= (lost[1].time - start).total_seconds() <= 130


@pytest.mark.slow
@pytest.mark.parametrize("speed", [200, 400])
def test_simulated_cable_pull_escalates_after_60_simulated_seconds_like_a_real_monitor(speed):
    """Issue 9: the simulated clock runs on while the cable is out, so the link alarm escalates at 60 s
    of simulated time and the outage lasts as long as the scenario says (90 s), whatever the speed."""
    from monitor.alarms.engine import AlarmEngine
    from monitor.alarms.profile import default_profile

    link = SimulatedMonitorLink("cable_pull", speed=speed, waves=False)
    rec = Recorder()
    worker = AcquisitionWorker(link, [rec])   # the real back-off, paced in simulated time
    engine = AlarmEngine(default_profile())
    events = []
    worker.start()
    try:
        deadline = time.monotonic() + 30
        seen = 0
        while time.monotonic() < deadline:
            time.sleep(0.2)                       # the window's tick
            batches = rec.batches[seen:]
            seen += len(batches)
            for batch in batches:
                events += engine.process(batch)
            events += engine.tick(link.clock())
            if any(e.condition == "connection_lost" and e.event == "ended" for e in events):
                break
    finally:
        worker.stop()
    lost = [e for e in events if e.condition == "connection_lost"]
    assert [e.event for e in lost] == ["started", "escalated", "ended"]
    started, escalated, ended = (e.t for e in lost)
    assert (escalated - started).total_seconds() == pytest.approx(60, abs=0.01)
    assert 88 <= (ended - started).total_seconds() <= 100
