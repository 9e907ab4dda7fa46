"""Issue 11, serial ports: opened exclusively (a second Vigil on the same port is refused with a
message), a port that refuses a setting (termios.error) is a link error, and a port left connected
but silent is closed and reopened, so a /dev/serial/by-id link that now points elsewhere is followed."""

from __future__ import annotations

import os
import pty
from datetime import timedelta

import pytest

from drivers.acquisition import AcquisitionWorker, LinkError, LinkState, SerialLink
from drivers.datex import DatexDecoder
from drivers.masimo import MasimoDecoder, encode_line
from drivers.model import NumericObservation
from drivers.transport import open_link, stable_port
from tests.faults.clock import START
from tests.test_acquisition import Recorder


@pytest.fixture
def pty_pair():
    master, slave = pty.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def masimo(second: int, spo2: float = 97.0) -> bytes:
    return encode_line({"spo2": spo2, "pr": 70.0}, device_time=START.replace(tzinfo=None) + timedelta(seconds=second))


def test_a_second_vigil_on_the_same_port_is_refused_with_a_message(pty_pair):
    _, path = pty_pair
    first, second = open_link(f"{path}?protocol=masimo"), open_link(f"{path}?protocol=masimo")
    first_rec, second_rec = Recorder(), Recorder()
    a, b = AcquisitionWorker(first, [first_rec], backoff=(0.2,)), AcquisitionWorker(second, [second_rec], backoff=(0.2,))
    a.start()
    try:
        assert first_rec.wait(lambda: a.state is LinkState.CONNECTED)
        b.start()
        assert second_rec.wait(lambda: ("connection_lost", True) in second_rec.conditions())
        assert any(f"{path} is in use by another program" in detail for _, detail, _ in second_rec.states)
        assert a.state is LinkState.CONNECTED and b.state is LinkState.LOST
        a.stop()
        assert second_rec.wait(lambda: b.state is LinkState.CONNECTED)   # the port is free again
    finally:
        a.stop()
        b.stop()


def test_a_setting_the_port_refuses_is_a_link_error_not_a_crash(pty_pair):
    """Even parity on a pseudo-terminal, reached through spy:// (so not relaxed): Linux accepts it at
    open and refuses the next reconfiguration (a new read timeout) with termios.error."""
    _, path = pty_pair
    link = SerialLink(f"spy://{path}?file={os.devnull}", lambda: DatexDecoder(source="datex"),
                      {"baudrate": 19200, "parity": "E", "rtscts": True}, "datex:spy")
    try:
        link.open()
    except LinkError:
        pytest.skip("this system refuses even parity on a pty at open already")
    try:
        with pytest.raises(LinkError, match="Invalid argument"):
            for timeout in (0.2, 0.3):
                link.read(timeout)
    finally:
        link.close()


def spo2(rec):
    with rec.lock:
        return [i for b in rec.batches for i in b if isinstance(i, NumericObservation) and i.vital == "spo2"]


@pytest.mark.slow  # real time: a second of silence on a serial port, through the acquisition worker
def test_a_silent_port_is_reopened_and_follows_its_by_id_link(tmp_path):
    old_master, old_slave = pty.openpty()
    new_master, new_slave = pty.openpty()
    link_path = tmp_path / "usb-Masimo_Rad-8_0001-if00-port0"
    link_path.symlink_to(os.ttyname(old_slave))
    link = open_link(f"{link_path}?protocol=masimo")
    link.reopen_silent_s = 1.0
    rec = Recorder()
    worker = AcquisitionWorker(link, [rec])
    worker.start()
    try:
        assert rec.wait(lambda: worker.state is LinkState.CONNECTED)
        for second in range(3):
            os.write(old_master, masimo(second))
        assert rec.wait(lambda: len(spo2(rec)) == 3)
        # the adapter is unplugged and comes back as another node: the stable link follows it
        link_path.unlink()
        link_path.symlink_to(os.ttyname(new_slave))
        assert rec.wait(lambda: worker.reopens == 1)
        # the listeners hear of the reopening just after the count goes up: wait for it, do not race it
        assert rec.wait(lambda: any(s is LinkState.CONNECTED and "reopened (no byte from the device for 1 s)" in d
                                    for s, d, _ in rec.states))
        for second in range(3, 6):
            os.write(new_master, masimo(second, 96.0))
        assert rec.wait(lambda: [o.value for o in spo2(rec)][3:] == [96.0] * 3)
        assert ("connection_lost", True) not in rec.conditions()
    finally:
        worker.stop()
        for fd in (old_master, old_slave, new_master, new_slave):
            os.close(fd)


def test_a_port_chosen_by_its_tty_name_has_its_stable_by_id_path_suggested(tmp_path, pty_pair):
    _, path = pty_pair
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-FTDI_FT232R_USB_UART_A1B2C3-if00-port0").symlink_to(path)
    (by_id / "usb-other").symlink_to("/dev/null")
    assert stable_port(path, str(by_id)) == str(by_id / "usb-FTDI_FT232R_USB_UART_A1B2C3-if00-port0")
    assert stable_port(str(by_id / "usb-other"), str(by_id)) is None        # already a stable link
    assert stable_port("/dev/ttyUSB9", str(by_id)) is None
    assert stable_port("/dev/ttyUSB9", str(tmp_path / "missing")) is None
    assert stable_port("socket://127.0.0.1:4001", str(by_id)) is None


# ------------------------------------------------------------------ the device panel
class PanelService:
    """What the device panel reads of the session service (a serial device), built lazily so that
    Qt is only imported by the tests that need it."""

    def __new__(cls, spec):
        from PySide6.QtCore import QObject, Signal

        class _Service(QObject):
            device_changed = Signal()
            session_changed = Signal()
            batch_received = Signal(list)
            link_changed = Signal(str, str)

            def __init__(self):
                super().__init__()
                self.link_state, self.link_detail, self.link_attempt = "connected", "", 0
                self.device_spec, self.device_label, self.recording = spec, "Masimo", False
                self.switched: list[str] = []

            def decoder_stats(self):
                return None

            def switch_device(self, url):
                self.switched.append(url)

        return _Service()


def test_the_device_panel_suggests_the_stable_name_of_the_port_in_use(qtbot, tmp_path, pty_pair, monkeypatch):
    from types import SimpleNamespace

    from drivers import transport
    from drivers.transport import parse_device_url
    from ui import device_panel
    from ui.device_panel import DevicePanel

    _, path = pty_pair
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-Masimo_Rad-8-if00-port0").symlink_to(path)
    monkeypatch.setattr(transport, "BY_ID_DIR", str(by_id))
    monkeypatch.setattr(device_panel, "stable_port", lambda port: transport.stable_port(port, str(by_id)))
    panel = DevicePanel(SimpleNamespace(service=PanelService(parse_device_url(f"{path}?protocol=masimo"))))
    qtbot.addWidget(panel)
    assert "stable name: by-id/usb-Masimo_Rad-8-if00-port0" in panel.label.full_text
    assert f"{by_id / 'usb-Masimo_Rad-8-if00-port0'} leads to the same port" in panel.label.toolTip()
    panel.choose.click()
    assert panel.port.currentText() == f"{by_id / 'usb-Masimo_Rad-8-if00-port0'}?protocol=masimo"


@pytest.mark.slow  # real time: the probe listens at least a second (ProbePlan.listen_at_least) to a line every 0.2 s
def test_find_my_monitor_probes_off_the_screen_and_fills_the_url(qtbot, pty_pair):
    import threading
    import time
    from types import SimpleNamespace

    from ui.device_panel import DevicePanel

    master, path = pty_pair
    service = PanelService(None)
    panel = DevicePanel(SimpleNamespace(service=service))
    qtbot.addWidget(panel)
    messages: list[str] = []
    panel.message.connect(messages.append)
    stop = threading.Event()

    def monitor():   # a Masimo sending a line every 0.2 s
        second = 0
        while not stop.is_set():
            try:
                os.write(master, masimo(second))
            except OSError:
                return
            second += 1
            time.sleep(0.2)

    sender = threading.Thread(target=monitor, daemon=True)
    sender.start()
    try:
        panel.choose.click()
        panel.port.setEditText(path)
        panel.find.click()
        assert panel.find.text() == "Cancel" and not panel.progress.isHidden()
        assert not panel.connect_button.isEnabled()
        qtbot.waitUntil(lambda: panel.find.text() == "Find my monitor", timeout=20000)
        assert panel.port.currentText() == f"{path}?protocol=masimo"
        assert any(m.startswith(f"Found masimo on {path}") for m in messages)
        panel.connect_button.click()
        assert service.switched == [f"{path}?protocol=masimo"] and panel.chooser.isHidden()
    finally:
        stop.set()
        sender.join(2)


def test_find_my_monitor_can_be_cancelled(qtbot, pty_pair):
    from types import SimpleNamespace

    from ui.device_panel import DevicePanel

    _, path = pty_pair       # nothing is sent: the probe would listen, then ask, for 15 s
    panel = DevicePanel(SimpleNamespace(service=PanelService(None)))
    qtbot.addWidget(panel)
    messages: list[str] = []
    panel.message.connect(messages.append)
    panel.choose.click()
    panel.port.setEditText(path)
    panel.find.click()
    panel.find.click()        # Cancel
    qtbot.waitUntil(lambda: panel.find.text() == "Find my monitor", timeout=5000)
    assert messages == ["Find my monitor was cancelled"] and panel.port.currentText() == path


@pytest.mark.slow  # three processes in real time
def test_a_second_vigil_record_on_a_port_in_use_stops_with_the_reason(tmp_path):
    import subprocess
    import sys
    import time

    from tests.test_e2e_pty import ROOT, simulate, stop

    proc, path = simulate("--protocol", "masimo")
    first = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "record", "--device", f"{path}?protocol=masimo",
                              "--duration", "30", "--db", str(tmp_path / "a.sqlite")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)   # the first one has the port (it opens it at once)
        assert first.poll() is None
        second = subprocess.run([sys.executable, str(ROOT / "main.py"), "record", "--device",
                                 f"{path}?protocol=masimo", "--duration", "5", "--db", str(tmp_path / "b.sqlite")],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"no data from the device within 10 s: {path} is in use by another program" in second.stderr
        assert first.poll() is None     # the first one records on
    finally:
        first.terminate()
        first.wait(20)
        stop(proc)
    assert first.returncode == 0
