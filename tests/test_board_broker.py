"""Clinic board through a real Mosquitto (TLS, passwords, the shipped ACL) on a loopback port:
a chair's alarm reaches the board model and window; a chair assembled as ``vigil run --publish``
does it (the real pipeline on the simulated monitor) puts its status, session, vitals and a HIGH
desaturation alarm on the board and says goodbye when it stops; the last will marks a killed
chair offline; a chair cannot publish as another; and such a chair records every second and raises
its alarms while the broker is stopped, killed and restarted (the board catching up from the
retained state)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from drivers.model import numeric
from monitor.alarms.engine import AlarmEngine
from monitor.alarms.profile import default_profile
from monitor.board.model import BoardModel
from monitor.board.publisher import ChairPublisher
from monitor.board.setup import board_actor
from monitor.board.subscriber import BoardClient
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.staff import Actor, Role
from monitor.store import SessionStore

#: Starts a real server on loopback (make test-fast leaves it out).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
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


class RecordingChair:
    """A chair as ``vigil run --publish URL --chair NAME`` assembles it (monitor/app/chair.py: the real
    pipeline on the simulated monitor, the publisher as its listener), recording an IV ketamine
    session with the infusion running."""

    def __init__(self, broker, tmp_path: Path, name: str, device: str) -> None:
        from monitor.app.chair import Chair
        from monitor.cli import _parser

        self.db = tmp_path / f"{name}.sqlite"
        args = _parser().parse_args(["run", "--device", device, "--db", str(self.db), "--publish", broker.url,
                                     "--chair", name, "--mqtt-password-file", broker.password_file(name),
                                     "--mqtt-ca", str(broker.folder / "ca.crt")])
        self.chair = Chair(args.device, args.db, board_args=args)
        assert self.chair.publisher is not None
        self.publisher = self.chair.publisher
        self.service = self.chair.service
        self.chair.start()
        wait_for(lambda: self.publisher.connected, what=f"{name} to connect")
        self.service.start_session(Patient(display_name="Jo Doe", weight_kg=70),
                                   KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), NURSE)
        self.service.waive_pre_dose_check(NURSE, "test")
        self.service.start_infusion(NURSE)
        self.session_id = self.chair.pipeline.recorder.session_id
        self.closed = False

    def simulated_s(self) -> float:
        """Simulated seconds since the simulated monitor started."""
        return self.chair.pipeline.link.model.t

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.chair.close()

    def record(self) -> tuple[list, np.ndarray, list]:
        """After :meth:`close`: the session's alarms, SpO2 times and gaps, read back from the file."""
        store = SessionStore(self.db)
        try:
            return (store.alarms(self.session_id), store.numerics(self.session_id, "spo2")[0],
                    store.gaps(self.session_id))
        finally:
            store.close()


@pytest.fixture
def chair_config(tmp_path, monkeypatch):
    """The shipped clinic settings, the broker unreachable after 2 s (the least allowed)."""
    monkeypatch.setenv("VIGIL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("VIGIL_SETTING_BOARD__UNREACHABLE_AFTER_S", "2")


@pytest.mark.slow
def test_a_recording_chair_publishes_its_status_session_vitals_and_high_alarm_and_goes_offline(
        broker, tmp_path, chair_config):
    board = Board(broker)
    # desaturation: SpO2 below 88 % from about 13 simulated minutes (6.5 s here)
    chair = RecordingChair(broker, tmp_path, "chair-4", "sim://?scenario=desaturation&speed=120&waves=0&seed=3")
    try:
        model = board.until(lambda m: "chair-4" in m.chairs and m.chairs["chair-4"].session is not None
                            and m.chairs["chair-4"].session.phase == "infusion" and m.chairs["chair-4"].vitals is not None
                            and "spo2" in m.chairs["chair-4"].vitals.numerics, "the chair's session and vitals")
        seen = model.chairs["chair-4"]
        assert seen.status.state == "online" and seen.session.patient_initials == "J.D."
        assert seen.session.session_id == chair.session_id
        model = board.until(lambda m: m.chairs["chair-4"].alarms is not None
                            and any(a.condition == "spo2_low" and a.priority == "HIGH" and a.active
                                    for a in m.chairs["chair-4"].alarms.alarms), "the HIGH SpO2 alarm", timeout=60)
        assert model.chairs["chair-4"].alarms.visual_priority == "HIGH"
        assert model.tile("chair-4", datetime.now(UTC)).priority == "HIGH"
        board.until(lambda m: m.chairs["chair-4"].vitals.numerics["spo2"].value < 88, "the low SpO2 on the board")
        chair.close()
        model = board.until(lambda m: m.chairs["chair-4"].status.state == "offline", "the chair's goodbye")
        assert model.chairs["chair-4"].status.reason == "closed"
        [alarm] = model.board_alarms(datetime.now(UTC))
        assert alarm.chair == "chair-4" and alarm.condition == "chair_offline"
    finally:
        chair.close()
        board.stop()
    alarms, _, _ = chair.record()
    assert any(a.condition == "spo2_low" and a.max_priority == "HIGH" for a in alarms)


@pytest.mark.slow
def test_the_chair_records_and_alarms_through_a_broker_stopped_killed_and_restarted(
        broker, tmp_path, chair_config):
    chair = RecordingChair(broker, tmp_path, "chair-4", "sim://?scenario=desaturation&speed=60&waves=0&seed=3")
    publisher = chair.publisher

    def down(kill: bool) -> None:
        broker.kill() if kill else broker.stop()
        wait_for(lambda: not publisher.connected, what="the chair to notice")
        wait_for(lambda: chair.service.alarm_state().alarms and any(
            a.condition == "board_unreachable" for a in chair.service.alarm_state().alarms),
            what="the chair's board-unreachable alarm")

    def up() -> None:
        broker.start()
        wait_for(lambda: publisher.connected, what="the chair to reconnect")

    # simulated seconds → what happens to the broker (the desaturation is at 12–17 min)
    events = {5 * 60: lambda: down(False), 8 * 60: up, 12 * 60 + 30: lambda: down(True), 15 * 60: up}
    try:
        for at, action in sorted(events.items()):
            wait_for(lambda: chair.simulated_s() >= at, timeout=60, what=f"simulated second {at}")
            action()
        wait_for(lambda: chair.simulated_s() >= 17 * 60, timeout=60, what="the end of the desaturation")
        seq = publisher.alarm_seq
        chair.close()
    finally:
        chair.close()
    alarms, spo2_times, gaps = chair.record()
    # nothing lost in the record: SpO2 every simulated second, no gap, the HIGH alarm
    assert not gaps and len(spo2_times) >= 16 * 60
    assert np.diff(spo2_times).max() <= 1.0 + 1e-6
    assert any(a.condition == "spo2_low" and a.max_priority == "HIGH" for a in alarms)
    board_down = [a for a in alarms if a.condition == "board_unreachable"]
    assert len(board_down) == 2 and all(a.priority == "LOW" and a.ended_at is not None for a in board_down)
    # a board that connects now catches up from the retained state: the chair's last alarms, then its goodbye
    board = Board(broker)
    try:
        model = board.until(lambda m: "chair-4" in m.chairs and m.chairs["chair-4"].alarms is not None
                            and m.chairs["chair-4"].alarms.seq == seq and m.chairs["chair-4"].session is not None,
                            "the retained state")
        assert model.chairs["chair-4"].session.patient_initials == "J.D."
        assert model.chairs["chair-4"].status.state == "offline" and model.chairs["chair-4"].status.reason == "closed"
    finally:
        board.stop()
