"""A real Mosquitto for the clinic-board tests (and bench/board.py): TLS with a test CA, password
accounts and the ACL, made by the shipped scripts in deploy/mosquitto/ from the shipped
configuration, on a free loopback port.

Tests use the ``broker`` fixture (tests/conftest.py), which skips with a message naming the
Debian package when the ``mosquitto`` binary is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from monitor.board.config import BrokerOptions, broker_options

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "mosquitto"
CLINIC = "clinic"
MISSING = ("mosquitto is not installed: install the Debian package 'mosquitto' "
           "(make test does so when run as root)")


def mosquitto_binary() -> str | None:
    """The broker's path, or None when the Debian package is not installed."""
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    return found if found and (shutil.which("mosquitto_passwd") or os.path.exists("/usr/bin/mosquitto_passwd")) else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_accounts(folder: Path, chairs: list[str], boards: list[str], clinic: str = CLINIC) -> None:
    """Test CA, broker certificate and accounts, by the shipped scripts."""
    subprocess.run([str(DEPLOY / "make-test-ca.sh"), str(folder)], check=True, capture_output=True)
    for kind, names in (("chair", chairs), ("board", boards)):
        for name in names:
            subprocess.run([str(DEPLOY / "add-account.sh"), str(folder), clinic, kind, name],
                           check=True, capture_output=True)


class Broker:
    """One Mosquitto process with the shipped configuration pointed at ``folder``."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        conf = (DEPLOY / "vigil.conf").read_text()
        conf = conf.replace("/etc/mosquitto/vigil", str(folder))
        conf = conf.replace("listener 8883", f"listener {self.port} 127.0.0.1")
        conf = conf.replace("persistence true", "persistence false")
        if os.geteuid() == 0:   # as root, mosquitto would switch to its own user, who cannot read the files
            conf += "\nuser root\n"
        conf += f"\nlog_dest file {folder}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\n"
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(conf)

    @property
    def url(self) -> str:
        """The broker URL chairs and boards use."""
        return f"mqtts://127.0.0.1:{self.port}"

    def password_file(self, account: str) -> str:
        """The file holding ``account``'s password."""
        return str(self.folder / "passwords" / account)

    def options(self, account: str, client_id: str = "") -> BrokerOptions:
        """Connection options for ``account`` (a chair or a board)."""
        return broker_options(self.url, username=account, password_file=self.password_file(account),
                              ca_file=str(self.folder / "ca.crt"), client_id=client_id)

    def start(self, timeout: float = 10.0) -> "Broker":
        """Start the broker and wait until it accepts connections."""
        binary = mosquitto_binary()
        assert binary, MISSING
        self.process = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.process.stderr.read().decode(errors='replace')}"
                                   f"{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def pid(self) -> int:
        """The broker's process id."""
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """Kill the broker (SIGKILL: no goodbye to anyone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def log(self) -> str:
        """The broker's log so far."""
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""
