"""Finding the monitor: probe_port on pseudo-terminals served by the simulator, ?protocol=auto and
`vigil devices --probe`. Every test waits on real pseudo-terminals for seconds: all are slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import tty
from contextlib import contextmanager
from pathlib import Path

import pytest

from drivers.acquisition import AcquisitionWorker, LinkError, LinkState
from drivers.datex import phdb_request
from drivers.intellivue import messages as m
from drivers.intellivue.framing import build_frame
from drivers.nonin import NAK, format_select_command
from drivers.probe import FRAMES_NEEDED, ProbePlan, ProbingLink, probe_port
from drivers.simulator.serve import PtyServer
from drivers.transport import open_link

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
QUICK = ProbePlan(listen=2.5, ask={"intellivue": 1.0, "datex": 1.0, "nonin": 0.5})
ASSOCIATION = build_frame(m.build_association_request()).hex(" ")
RELEASE = build_frame(m.RELEASE_REQUEST).hex(" ")


@contextmanager
def served(protocol: str, variant: str | None = None):
    server = PtyServer(protocol, variant=variant, speed=1)
    path = server.open()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        yield server, path
    finally:
        stop.set()
        thread.join(2)
        server.close()


@contextmanager
def silent_port(answer: bytes = b""):
    """A pty where nothing speaks, or where a device answers every command with ``answer``."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()
    heard = bytearray()

    def device():
        while not stop.is_set():
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            except OSError:
                return
            heard.extend(data)
            if answer and data.endswith(b"\x03"):
                os.write(master, answer)

    os.set_blocking(master, False)
    thread = threading.Thread(target=device, daemon=True)
    thread.start()
    try:
        yield os.ttyname(slave), heard
    finally:
        stop.set()
        thread.join(1)
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("protocol,variant,expected", [
    ("masimo", None, "masimo"), ("nonin", "2", "nonin"), ("nonin", "7", "nonin7"), ("nonin", "8", "nonin8"),
    ("nonin", "ascii", "nonin-ascii"),
])
def test_devices_that_send_on_their_own_are_found_by_listening_and_sent_nothing(protocol, variant, expected):
    with served(protocol, variant) as (_server, path):
        report = probe_port(path, plan=QUICK)
    assert report.found is not None and report.found.protocol == expected and report.found.how == "listened"
    assert report.found.baudrate == 9600 and report.found.frames >= FRAMES_NEEDED[expected]
    assert report.sent == [] and report.error is None
    assert report.found.line() == f"{path}  {expected}  9600  {report.found.frames} valid frames"


def test_an_intellivue_is_asked_and_its_association_released():
    with served("intellivue") as (server, path):
        report = probe_port(path, plan=QUICK)
        time.sleep(0.3)
        state = server.emulator.state
    assert report.found is not None and (report.found.protocol, report.found.baudrate) == ("intellivue", 115200)
    assert report.sent == [ASSOCIATION, RELEASE]          # nothing else: Datex and Nonin are never asked
    assert state == "idle"


def test_a_datex_is_asked_and_told_to_stop():
    with served("datex") as (server, path):
        report = probe_port(path, plan=QUICK)
        time.sleep(0.3)
        interval = server.emulator.interval
    assert report.found is not None and (report.found.protocol, report.found.baudrate) == ("datex", 19200)
    assert report.sent == [ASSOCIATION, phdb_request(5).hex(" "), phdb_request(0).hex(" ")]
    assert interval == 0                                   # not left sending
    assert any("asked intellivue" in s and "no valid answer" in s for s in report.steps)


def test_a_quiet_nonin_answers_the_harmless_format_query():
    with silent_port(answer=bytes([NAK])) as (path, heard):
        report = probe_port(path, plan=QUICK)
    assert report.found is not None and report.found.protocol == "nonin7" and report.found.how == "asked"
    assert "selects that format" in report.found.note
    assert report.sent[-1] == format_select_command(0).hex(" ")
    assert bytes(heard).endswith(format_select_command(0))   # and no format was ever selected
    assert format_select_command(7) not in bytes(heard) and format_select_command(2) not in bytes(heard)


def test_a_silent_port_gets_every_request_and_nothing_is_found():
    with silent_port() as (path, _heard):
        report = probe_port(path, plan=QUICK)
    assert report.found is None and report.error is None
    assert report.sent == [ASSOCIATION, phdb_request(5).hex(" "), phdb_request(0).hex(" "),
                           format_select_command(0).hex(" ")]
    assert len(report.steps) == 4


def test_the_budget_caps_the_whole_probe():
    with silent_port() as (path, _heard):
        report = probe_port(path, plan=ProbePlan(listen=0.6, budget=0.7))
    assert report.found is None and report.sent == []
    assert [s for s in report.steps if s.startswith("no time left")] == \
        ["no time left to ask intellivue", "no time left to ask datex", "no time left to ask nonin"]


def test_a_cancelled_probe_stops_and_a_missing_port_is_reported():
    cancel = threading.Event()
    with silent_port() as (path, _heard):
        threading.Timer(0.3, cancel.set).start()
        report = probe_port(path, cancel=cancel)
    assert report.found is None and report.sent == [] and len(report.steps) == 1
    missing = probe_port("/dev/no-such-port-here")
    assert missing.found is None and missing.error.startswith("cannot open /dev/no-such-port-here")


def test_protocol_auto_probes_then_reads_what_it_found():
    with served("masimo") as (_server, path):
        link = open_link(f"{path}?protocol=auto")
        assert isinstance(link, ProbingLink) and link.source == f"auto:{path}"
        items, states = [], []
        lock = threading.Lock()

        class Listener:
            def items_received(self, batch):
                with lock:
                    items.extend(batch)

            def link_changed(self, state, detail, attempt):
                states.append(state)

        worker = AcquisitionWorker(link, [Listener()])
        worker.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with lock:
                    if sum(1 for i in items if getattr(i, "vital", "") == "spo2") >= 2:
                        break
                time.sleep(0.05)
        finally:
            assert worker.stop(2.0)
    assert link.found.protocol == "masimo" and link.expected_interval == 1.0
    assert {i.source for i in items} == {f"auto:{path}"} and link.stats.frames_decoded >= 2
    assert LinkState.CONNECTED in states


def test_protocol_auto_on_a_silent_port_says_what_it_tried():
    with silent_port() as (path, _heard):
        link = ProbingLink(path, plan=ProbePlan(listen=0.3, ask={"intellivue": 0.2, "datex": 0.2, "nonin": 0.2}))
        with pytest.raises(LinkError, match="no monitor answered on .*listened .*asked datex"):
            link.open()


def test_vigil_devices_probe_prints_what_answered():
    from tests.test_cli import cli

    with served("masimo") as (_server, path):
        out, err = _run_cli("devices", "--probe", path)
        status_json, lines, _ = cli("devices", "--probe", path, "--json")
    status, text = out
    assert status == 0 and text.startswith(f"{path}  masimo  9600  ") and text.endswith(" valid frames\n")
    assert f"connect with --device '{path}?protocol=masimo'" in err
    assert status_json == 0 and lines[0]["protocol"] == "masimo" and lines[0]["how"] == "listened"
    assert lines[0]["sent"] == []
    with silent_port() as (quiet, _heard):
        (status, text), err = _run_cli("devices", "--probe", quiet)
    assert status == 1 and text == f"{quiet}  no monitor answered\n" and "asked nonin" in err


def _run_cli(*args):
    import io

    from monitor.cli import run_cli

    out, err = io.StringIO(), io.StringIO()
    status = run_cli(list(args), out=out, err=err)
    return (status, out.getvalue()), err.getvalue()


def test_vigil_devices_probe_finds_the_served_datex_monitor_and_leaves_it_quiet():
    from tests.test_datex import unread
    from tests.test_e2e_pty import simulate, stop

    proc, path = simulate("--protocol", "datex", "--speed", "30")
    try:
        result = subprocess.run([sys.executable, str(ROOT / "main.py"), "devices", "--probe", path, "--json"],
                                capture_output=True, text=True, timeout=60)
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            time.sleep(0.5)
            while unread(fd):
                pass
            time.sleep(1.0)   # 30 simulated seconds: 6 records if the monitor had been left sending
            assert unread(fd) == b""
        finally:
            os.close(fd)
    finally:
        stop(proc)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["protocol"], record["baudrate"], record["how"]) == ("datex", 19200, "asked")
    assert record["sent"][-1] == phdb_request(0).hex(" ")
