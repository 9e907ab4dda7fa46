"""Clinic board through a real Mosquitto (TLS, passwords, the shipped ACL) on a loopback port:
a chair's alarm reaches the board model and window, the last will marks a killed chair offline,
a chair cannot publish as another, and a chair records and alarms unchanged while the broker is
stopped, killed and restarted (the board catching up from the retained state)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from drivers.base import ConditionTracker
from drivers.model import numeric
from drivers.simulator.device import step_items
from drivers.simulator.physiology import PhysiologyModel
from monitor.alarms.engine import AlarmEngine
from monitor.alarms.profile import default_profile
from monitor.board.model import BoardModel
from monitor.board.publisher import ChairPublisher
from monitor.board.setup import PollingLink, board_actor
from monitor.board.subscriber import BoardClient
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.app.recorder import SessionRecorder
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore, StoreWriter
from tests.factories import act

#: Starts a real server on loopback (make test-fast leaves it out).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
NURSE = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
BOARD_USER = Actor(username="cn.board", display_name="Carla Nunes", role=Role.CHARGE_NURSE)


def wait_for(condition, timeout: float = 20.0, step: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


class Board:
    """A real board client feeding a board model (messages drained on the test's thread)."""

    def __init__(self, broker, clinic: str = "clinic") -> None:
        self.model = BoardModel(clinic)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.client = BoardClient(broker.options("board"), clinic, on_message=lambda t, p: self.inbox.put((t, p)),
                                  on_connection=lambda c, d: self.inbox.put((None, c)))
        self.topics: set[str] = set()
        self.client.start()

    def drain(self) -> BoardModel:
        while True:
            try:
                topic, payload = self.inbox.get_nowait()
            except queue.Empty:
                return self.model
            now = datetime.now(UTC)
            if topic is None:
                self.model.set_connected(payload, now)
            else:
                self.topics.add(topic)
                self.model.receive(topic, payload, now)

    def until(self, condition, what: str, timeout: float = 20.0) -> BoardModel:
        wait_for(lambda: condition(self.drain()), timeout, what=what)
        return self.model

    def stop(self) -> None:
        self.client.stop()


def test_a_chair_alarm_reaches_the_board_window_and_an_allowed_acknowledge_is_recorded_at_the_chair(broker, qtbot):
    from ui.board.window import BoardWindow

    engine = AlarmEngine(default_profile())
    acks: queue.SimpleQueue = queue.SimpleQueue()
    chair = ChairPublisher(broker.options("chair-1"), "clinic", "chair-1", profile=default_profile(),
                           allow_acknowledge=True, on_acknowledge=acks.put)
    chair.start()
    client = BoardClient(broker.options("board"), "clinic", on_message=lambda *_: None)
    window = BoardWindow(BoardModel("clinic"), client, allow_acknowledge=True, user=BOARD_USER, audio=False)
    qtbot.addWidget(window)
    window.resize(1366, 768)
    window.show()
    client.start()
    try:
        wait_for(lambda: chair.connected, what="the chair to connect")
        now = datetime.now(UTC)
        engine.process([numeric("spo2", 97, "sim", now)])
        chair.on_alarm_state(engine.state(now))
        qtbot.waitUntil(lambda: "chair-1" in window.tiles and window.tiles["chair-1"].view is not None
                        and window.tiles["chair-1"].view.state == "online", timeout=20000)
        later = now + timedelta(seconds=1)
        engine.process([numeric("spo2", 84, "sim", later)])          # SpO2 < 88 %: HIGH at once
        chair.on_alarm_state(engine.state(later))
        qtbot.waitUntil(lambda: window.tiles["chair-1"].painted[0] == chair.alarm_seq, timeout=20000)
        tile = window.tiles["chair-1"].view
        assert tile.priority == "HIGH" and "SpO2" in tile.banner
        assert window.model.audio_priority(datetime.now(UTC)).name == "HIGH"
        # the clinic allows acknowledge from the board: the chair acknowledges with the board user's name
        assert window.acknowledge_chair("chair-1")
        command = acks.get(timeout=20)
        actor = board_actor(command)
        assert actor.username == "cn.board" and actor.display_name == "Carla Nunes (clinic board)"
        [event] = engine.acknowledge(actor.username, later)
        chair.on_alarm_event(event)
        chair.on_alarm_state(engine.state(later))
        qtbot.waitUntil(lambda: window.model.chairs["chair-1"].alarms.alarms[0].acknowledged_by == "cn.board",
                        timeout=20000)
        # the board's sound is off in this test: the board says so in its alarm line, as a chair does
        qtbot.waitUntil(lambda: "Board alarm sound unavailable" in window.board_alarm.text(), timeout=5000)
        assert window.board_alarm.text().startswith("MEDIUM")
        # an acknowledge for a state the chair has moved on from is ignored
        assert client.acknowledge("chair-1", chair.alarm_seq - 1, "cn.board", "Carla Nunes")
        time.sleep(0.5)
        assert acks.empty()
    finally:
        window.close()
        chair.close()


def test_a_chair_cannot_publish_as_another_chair(broker):
    board = Board(broker)
    impostor = ChairPublisher(broker.options("chair-1"), "clinic", "chair-3")   # chair-1's account
    impostor.start()
    impostor.on_session(None)               # status and session: QoS 1, so the refusal comes back
    honest = ChairPublisher(broker.options("chair-2"), "clinic", "chair-2")
    honest.start()
    try:
        wait_for(lambda: impostor.stats["refused"] >= 2, what="the broker to refuse chair-3's topics")
        board.until(lambda m: "chair-2" in m.chairs and m.chairs["chair-2"].vitals is not None, "chair-2's vitals")
        assert not any("/chair-3/" in t for t in board.topics)
        assert "chair-3" not in board.drain().chairs
        assert honest.stats["refused"] == 0
    finally:
        impostor.close()
        honest.close()
        board.stop()


def _vigil(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_the_last_will_marks_a_killed_chair_offline(broker, tmp_path):
    board = Board(broker)
    proc = _vigil("record", "--device", "sim://?scenario=normal&speed=1&waves=0", "--duration", "600",
                  "--db", str(tmp_path / "chair.sqlite"), "--publish", broker.url, "--chair", "chair-2",
                  "--mqtt-password-file", broker.password_file("chair-2"), "--mqtt-ca", str(broker.folder / "ca.crt"),
                  env={"VIGIL_CONFIG_DIR": str(tmp_path / "config")})
    try:
        board.until(lambda m: "chair-2" in m.chairs and m.chairs["chair-2"].session is not None
                    and m.chairs["chair-2"].vitals is not None and m.chairs["chair-2"].vitals.numerics,
                    "the recording chair on the board", timeout=60)
        assert board.model.tile("chair-2", datetime.now(UTC)).state == "online"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        model = board.until(lambda m: m.chairs["chair-2"].status.state == "offline", "the last will", timeout=30)
        status = model.chairs["chair-2"].status
        assert status.reason == "connection lost"
        [alarm] = model.board_alarms(datetime.now(UTC))
        assert alarm.chair == "chair-2" and alarm.condition == "chair_offline" and alarm.priority.name == "MEDIUM"
    finally:
        if proc.poll() is None:
            proc.kill()
        board.stop()


def _record(tmp_path: Path, name: str, broker=None, events: dict | None = None):
    """A desaturation session of 25 simulated minutes, driven step by step; with ``broker``, published
    through the chair publisher while ``events`` (sim second → action) stop, kill and restart it."""
    store = SessionStore(tmp_path / f"{name}.sqlite")
    writer = StoreWriter(store)
    writer.start()
    model = PhysiologyModel("desaturation", seed=3, start=T0, waves=False)
    settings = ClinicSettings()
    recorder = SessionRecorder.start(store, writer, patient=Patient(display_name="Jo Doe", weight_kg=70),
                                     plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), device="sim://",
                                     actor=NURSE, t=T0, settings=settings, profile=default_profile())
    act(recorder, "waive_pre_dose_check", T0, NURSE, "test")
    act(recorder, "start_infusion", T0, NURSE)
    link = None
    if broker is not None:
        publisher = ChairPublisher(broker.options("chair-4"), "clinic", "chair-4", profile=default_profile(),
                                   unreachable_after_s=0.5, backoff_max_s=1.0)
        link = PollingLink(publisher, settings)
        recorder.on_alarm_event = publisher.on_alarm_event
        publisher.start()
        wait_for(lambda: publisher.connected, what="chair-4 to connect")
    tracker = ConditionTracker("sim")
    events = dict(events or {})
    while model.t < 25 * 60:
        step = model.advance(1.0)
        now = model.now()
        items = step_items(step, "sim", tracker)
        recorder.on_items(items)
        recorder.tick(now)
        if link is not None:
            link.publisher.on_batch(items)
            link.poll(recorder, now)
            action = events.pop(int(model.t), None)
            if action is not None:
                action(link.publisher)
            time.sleep(0.001)
    recorder.finish(model.now(), signed_name="Ann Lee", meaning="reviewed and closed")
    assert writer.stop(30)
    alarms = [(a.condition, a.priority, a.max_priority, a.started_at, a.ended_at) for a in store.alarms(recorder.session_id)]
    counts = {v: len(store.numerics(recorder.session_id, v)[0]) for v in ("spo2", "hr", "rr", "nibp_sys")}
    store.close()
    return alarms, counts, link


@pytest.mark.slow
def test_the_chair_records_and_alarms_unchanged_through_a_broker_stopped_killed_and_restarted(broker, tmp_path):
    expected_alarms, expected_counts, _ = _record(tmp_path, "alone")

    def down(kill: bool):
        def act(publisher):
            broker.kill() if kill else broker.stop()
            wait_for(lambda: not publisher.connected, what="the chair to notice")
            time.sleep(1.0)                     # long enough for "unreachable" (0.5 s here)
        return act

    def up(publisher):
        broker.start()
        wait_for(lambda: publisher.connected, what="the chair to reconnect")

    events = {5 * 60: down(False), 8 * 60: up, 12 * 60 + 30: down(True), 16 * 60: up}
    alarms, counts, link = _record(tmp_path, "published", broker, events)
    try:
        assert counts == expected_counts                              # nothing lost in the record
        chair_alarms = [a for a in alarms if a[0] != "board_unreachable"]
        assert chair_alarms == expected_alarms                         # the same alarms, at the same times
        assert any(a[0] == "spo2_low" and a[2] == "HIGH" for a in chair_alarms)
        board_down = [a for a in alarms if a[0] == "board_unreachable"]
        assert len(board_down) == 2 and all(a[1] == "LOW" and a[4] is not None for a in board_down)
        # a board that connects now catches up from the retained state
        board = Board(broker)
        try:
            model = board.until(lambda m: "chair-4" in m.chairs and m.chairs["chair-4"].alarms is not None
                                and m.chairs["chair-4"].alarms.seq == link.publisher.alarm_seq
                                and m.chairs["chair-4"].session is not None, "the retained state")
            assert model.chairs["chair-4"].status.state == "online"
            assert model.chairs["chair-4"].session.patient_initials == "J.D."
        finally:
            board.stop()
    finally:
        link.publisher.close()
