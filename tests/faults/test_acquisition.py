"""Issue 11, "Monitoring never stops silently": a fault in the acquisition path is caught, logged
with the bytes that caused it, counted and followed by a restart of the link; a watchdog outside the
worker raises the "no data" alarm when the worker's thread dies or hangs, whatever the reason."""

from __future__ import annotations

import json
import logging
import os
import pty
import threading
import time
from datetime import timedelta

import pytest

from drivers import acquisition
from drivers.acquisition import AcquisitionWorker, Link, LinkState, SerialLink
from drivers.masimo import MasimoDecoder, encode_line
from drivers.model import DeviceCondition, NumericObservation, numeric
from monitor.alarms.engine import AlarmEngine
from monitor.alarms.profile import AlarmProfile, Priority, default_profile, migrate_profile_data
from monitor.app import pipeline as pipeline_module
from monitor.app.listeners import PipelineListener
from monitor.app.pipeline import Pipeline
from monitor.settings import ClinicSettings
from monitor.store import SessionStore
from tests.faults.clock import START
from tests.test_acquisition import Recorder


def wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def masimo_line(spo2=97.0, second=0):
    return encode_line({"spo2": spo2, "pr": 72.0}, device_time=START.replace(tzinfo=None) + timedelta(seconds=second))


class TrapDecoder(MasimoDecoder):
    """A decoder with a bug: it raises on the byte 0xFF."""

    def feed(self, data):
        if b"\xff" in bytes(data):
            raise IndexError("a decoder bug")
        return super().feed(data)


def spo2_values(rec):
    with rec.lock:
        return [i.value for b in rec.batches for i in b if isinstance(i, NumericObservation) and i.vital == "spo2"]


def test_a_decoder_that_raises_is_logged_with_its_bytes_counted_and_the_link_restarts(caplog):
    master, slave = pty.openpty()
    path = os.ttyname(slave)
    link = SerialLink(path, lambda: TrapDecoder(source="masimo:pty"), {"baudrate": 9600}, "masimo:pty")
    rec = Recorder()
    worker = AcquisitionWorker(link, [rec], backoff=(0.05,))
    caplog.set_level(logging.ERROR, logger="drivers.acquisition")
    worker.start()
    try:
        assert wait(lambda: worker.state is LinkState.CONNECTED)
        for second in range(3):   # believed once three consistent lines follow each other
            os.write(master, masimo_line(97, second))
        assert wait(lambda: spo2_values(rec) == [97.0] * 3)
        os.write(master, b"garbage \xff\xfe\r\n")
        assert wait(lambda: ("connection_lost", False) in rec.conditions())
        for second in range(3, 6):
            os.write(master, masimo_line(96, second))
        assert wait(lambda: 96.0 in spo2_values(rec))
        assert worker.is_alive() and worker.faults == 1 and link.stats.decoder_errors == 1
        lost = next(i for b in rec.batches for i in b if isinstance(i, DeviceCondition)
                    and i.code == "connection_lost" and i.active)
        assert "could not be decoded" in lost.text and "IndexError" in lost.text
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "67 61 72 62 61 67 65 20 ff fe" in logged and "IndexError" in caplog.text
    finally:
        worker.stop()
        os.close(master)
        os.close(slave)


def test_repeated_faults_slow_the_restarts_down():
    class Buggy(Link):
        source = "buggy"

        def __init__(self):
            self.opens = 0

        def open(self):
            self.opens += 1

        def read(self, timeout):
            raise KeyError("a bug on every read")

        def close(self):
            pass

    link, rec = Buggy(), Recorder()
    worker = AcquisitionWorker(link, [rec], backoff=(0.01, 0.05, 5.0))
    worker.start()
    try:
        assert wait(lambda: link.opens >= 3)
        assert not wait(lambda: link.opens >= 4, timeout=0.4)   # the third restart waits 5 s (the second 0.05 s)
        assert worker.is_alive() and worker.faults == 3
        assert any("a fault in Vigil (KeyError" in d and d.endswith("in 5 s") for _, d, _ in rec.states)
    finally:
        worker.stop()


class Killed(BaseException):
    """Stands for anything that ends a thread (not an Exception: nothing inside the worker may catch it)."""


class FlakyLink(Link):
    """Sends SpO2 97 every 20 ms; ``kill`` ends the reading thread, ``hang`` blocks its read."""

    expected_interval = 0.1

    def __init__(self):
        self.source = "flaky"
        self.opens = 0
        self.kill = threading.Event()
        self.hang = threading.Event()
        self.release = threading.Event()

    def open(self):
        self.opens += 1

    def read(self, timeout):
        time.sleep(0.02)
        if self.kill.is_set():
            self.kill.clear()
            raise Killed()
        if self.hang.is_set():
            self.release.wait(30)
            self.hang.clear()
        return [numeric("spo2", 97.0, self.source, self.clock())]

    def close(self):
        pass


class Events(PipelineListener):
    def __init__(self):
        self.events = []

    def on_alarm_event(self, event):
        self.events.append((event.event, event.condition, event.priority))


@pytest.fixture
def flaky(tmp_path):
    link = FlakyLink()
    store = SessionStore(tmp_path / "w.sqlite")
    events = Events()
    pipe = Pipeline(link, store, ClinicSettings(), default_profile(), listeners=[events], tick_s=0.05)
    pipe.start()
    yield link, pipe, events.events
    pipe.stop()
    store.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_thread_that_dies_raises_no_data_and_is_restarted(flaky):
    link, pipe, events = flaky
    assert wait(lambda: link.opens == 1 and pipe._worker is not None and pipe._worker.is_alive())
    first = pipe._worker
    link.kill.set()
    assert wait(lambda: ("started", "acquisition_stopped", Priority.MEDIUM) in events)
    assert wait(lambda: ("ended", "acquisition_stopped", Priority.MEDIUM) in events)
    assert not first.is_alive() and pipe._worker is not first and pipe._worker.is_alive() and link.opens == 2


@pytest.mark.slow  # waits in real time for the watchdog
def test_a_worker_that_hangs_raises_no_data_until_it_reports_again(flaky, monkeypatch):
    monkeypatch.setattr(acquisition, "REPORT_EVERY_S", 0.2)
    monkeypatch.setattr(pipeline_module, "WATCHDOG_GRACE_S", 0.3)
    link, pipe, events = flaky
    assert wait(lambda: link.opens == 1)
    link.hang.set()
    assert wait(lambda: ("started", "acquisition_stopped", Priority.MEDIUM) in events)
    assert pipe._worker.is_alive() and link.opens == 1      # hung, not dead: not replaced
    link.release.set()
    assert wait(lambda: ("ended", "acquisition_stopped", Priority.MEDIUM) in events)


def test_the_profile_migration_to_schema_4_adds_the_watchdog_and_unreadable_alarms():
    data = json.loads(default_profile().to_json())
    data["schema_version"] = 3
    data["rules"] = [r for r in data["rules"] if r["id"] != "data_unreadable"]
    link = next(r for r in data["rules"] if r["id"] == "device_link")
    link["codes"].remove("acquisition_stopped")
    upgraded, changes = migrate_profile_data(data)
    assert upgraded["schema_version"] == 4 and len(changes) == 2
    engine = AlarmEngine(AlarmProfile.model_validate(upgraded))
    stopped = engine.process([DeviceCondition(code="acquisition_stopped", active=True, source="d", time=START)])
    unreadable = engine.process([DeviceCondition(code="data_unreadable", active=True, source="d", time=START)])
    assert [(e.event, e.priority) for e in stopped + unreadable] == [("started", Priority.MEDIUM)] * 2
    assert engine.alarms[1].label == "No data: reading the device stopped (Vigil is restarting it)"
