"""Serve the simulated monitor speaking a real protocol byte for byte: on a pseudo-terminal for the
serial protocols, over TCP/MLLP on loopback for HL7.

``vigil simulate --protocol masimo`` makes a pseudo-terminal, prints the path of its device side
(``/dev/pts/N``) and then behaves like that monitor on a serial cable: Vigil (or any other
program) connects to the path exactly as to a USB-serial port. With ``--link PATH`` a symlink
at PATH always points at the current device, so the address stays the same across a cable pull
(``cable_pull`` scenario) or a restart of the simulator.

``vigil simulate --protocol hl7`` (:class:`MllpServer`) behaves like a monitor or gateway on a
LAN: by default it listens on a loopback port and pushes ORU^R01 messages to whoever connects
(Vigil with ``mllp-client://``); with ``--connect HOST:PORT`` it connects to Vigil's own listener
(``mllp://``) instead, reconnecting every second while it cannot, as monitors do. The first line
it prints is the device URL Vigil should use.
"""

from __future__ import annotations

import errno
import os
from abc import ABC, abstractmethod
import select
import selectors
import socket
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from drivers.emulation import DeviceEmulator
from drivers.hl7.device import Hl7Emulator
from drivers.registry import SERVED_PROTOCOLS, make_emulator
from drivers.simulator.physiology import PhysiologyModel

__all__ = ["MllpServer", "PtyServer", "SERVED_PROTOCOLS", "make_emulator"]


class _Server(ABC):
    """The simulated patient and one protocol's emulator, stepped against the real clock; what
    carries the bytes is the subclass's (:meth:`_exchange`, :meth:`_write`, :meth:`unplug`,
    :meth:`_replug`)."""

    def __init__(self, protocol: str, scenario: str, speed: float, seed: int, variant: str | None,
                 nibp_interval: float, tick: float) -> None:
        if not 0.1 <= speed <= 10000:
            raise ValueError("speed must be between 0.1 and 10000")
        self.protocol = protocol
        self.variant = variant
        self.emulator = self._new_emulator()
        self.model = PhysiologyModel(scenario, seed=seed, nibp_interval=nibp_interval)
        self.speed = speed
        self.tick = tick
        self.bytes_sent = 0
        self.bytes_dropped = 0

    def _new_emulator(self) -> DeviceEmulator:
        return make_emulator(self.protocol, self.variant)

    @property
    @abstractmethod
    def connected(self) -> bool:
        """True while the simulated cable is plugged in."""

    @abstractmethod
    def _exchange(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for what the host sends; hand it to the emulator and send the
        emulator's answer."""

    @abstractmethod
    def _write(self, data: bytes) -> None:
        """Send what the emulator produced (dropping what cannot be sent, as a full line does)."""

    @abstractmethod
    def unplug(self) -> None:
        """Pull the simulated cable."""

    @abstractmethod
    def _replug(self) -> str:
        """Plug the cable back; a short description of the new connection."""

    def serve(self, stop: threading.Event, on_event: Callable[[str], None] | None = None) -> None:
        """Run until ``stop`` is set. ``on_event`` receives short status lines (cable pulled…)."""
        say = on_event or (lambda _line: None)
        last = time.monotonic()
        while not stop.is_set():
            if self.connected:
                self._exchange(self.tick)
            else:
                stop.wait(self.tick)
            now = time.monotonic()
            step = self.model.advance((now - last) * self.speed)
            last = now
            if step.disconnected and self.connected:
                self.unplug()
                say("cable pulled")
            elif not step.disconnected and not self.connected:
                self.emulator = self._new_emulator()
                say(f"cable reconnected: {self._replug()}")
            if self.connected:
                self._write(self.emulator.produce(step.snapshot))
            self._report(say)

    def _report(self, say: Callable[[str], None]) -> None:
        """Status lines the transport adds after each step (none by default)."""


class PtyServer(_Server):
    """The simulated monitor behind a pseudo-terminal.

    Call :meth:`open` to create the terminal (returns the device path), then :meth:`serve`
    until ``stop`` is set. Bytes nobody reads are dropped once the terminal buffer is full, as
    on a real serial line.
    """

    def __init__(self, protocol: str, scenario: str = "normal", speed: float = 1.0, seed: int = 0,
                 variant: str | None = None, link: str | Path | None = None,
                 nibp_interval: float = 300.0, tick: float = 0.02) -> None:
        super().__init__(protocol, scenario, speed, seed, variant, nibp_interval, tick)
        self.link = Path(link) if link else None
        self.path: str | None = None
        self._master: int | None = None
        self._slave: int | None = None

    @property
    def connected(self) -> bool:
        """True while the terminal exists."""
        return self._master is not None

    def open(self) -> str:
        """Create the pseudo-terminal (raw, no echo) and return its device path."""
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.path = os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.path)
            os.replace(tmp, self.link)
        return self.path

    _replug = open

    def unplug(self) -> None:
        """Close the terminal: a reader sees the device vanish."""
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def close(self) -> None:
        """Unplug and remove the symlink, if any."""
        self.unplug()
        if self.link is not None and self.link.is_symlink():
            self.link.unlink(missing_ok=True)

    def _write(self, data: bytes) -> None:
        if not data or self._master is None:
            return
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EAGAIN):
                raise
            written = 0
        self.bytes_sent += written
        self.bytes_dropped += len(data) - written

    def _exchange(self, timeout: float) -> None:
        if self._master is None:
            return
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        if data:
            self._write(self.emulator.receive(data))


class MllpServer(_Server):
    """The simulated monitor as an HL7 sender over TCP/MLLP.

    ``listen=(host, port)`` (port 0: any free one): accept connections and push every message to
    each; ``connect=(host, port)``: connect to that listener, and again every ``retry`` seconds
    while the connection is down. ``bed`` and ``patient_id`` go into PV1-3 and PID-3. During a
    cable pull the connections (and the listening socket) are closed. Vigil's acknowledgements
    are read and counted by the emulator; refusals are reported through ``serve``'s
    ``on_event``. Messages produced while nobody is connected are dropped (``bytes_dropped``).
    """

    emulator: Hl7Emulator

    def __init__(self, scenario: str = "normal", speed: float = 1.0, seed: int = 0, variant: str | None = None,
                 *, listen: tuple[str, int] | None = None, connect: tuple[str, int] | None = None,
                 bed: str = "1", patient_id: str = "SIM-0001", nibp_interval: float = 300.0,
                 tick: float = 0.02, retry: float = 1.0) -> None:
        if (listen is None) == (connect is None):
            raise ValueError("give exactly one of listen or connect")
        self.bed, self.patient_id = bed, patient_id
        super().__init__("hl7", scenario, speed, seed, variant, nibp_interval, tick)
        self.listen, self.connect, self.retry = listen, connect, retry
        self.address: tuple[str, int] | None = None
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._peers: dict[socket.socket, bytearray] = {}
        self._plugged = False
        self._next_try = 0.0

    def _new_emulator(self) -> Hl7Emulator:
        emulator = make_emulator("hl7", self.variant)
        assert isinstance(emulator, Hl7Emulator)
        emulator.bed, emulator.patient_id = self.bed, self.patient_id
        self._reported, self._reported_at = 0, float("-inf")
        return emulator

    @property
    def connected(self) -> bool:
        """True while the simulated cable is plugged in (connected or not, as a LAN port)."""
        return self._plugged

    @property
    def url(self) -> str:
        """The device URL Vigil should use to receive this sender."""
        host, port = self.address or ("", 0)
        host = f"[{host}]" if ":" in host else host
        scheme = "mllp-client" if self.listen is not None else "mllp"
        return f"{scheme}://{host}:{port}?protocol=hl7&bed={self.bed}"

    def open(self) -> str:
        """Start listening (or arm the first connection attempt); return :attr:`url`."""
        self._plugged = True
        if self.listen is not None:
            host, port = self.listen
            listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(4)
            listener.setblocking(False)
            self._listener = listener
            self.address = listener.getsockname()[:2]
            self.listen = (host, self.address[1])  # keep the port across a cable pull
            self._selector.register(listener, selectors.EVENT_READ, None)
        else:
            self.address = self.connect
            self._next_try = 0.0
        return self.url

    def _replug(self) -> str:
        return self.open()

    def unplug(self) -> None:
        """Close every connection and the listening socket."""
        self._plugged = False
        for sock in list(self._peers):
            self._hang_up(sock)
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def close(self) -> None:
        """Unplug and release the selector."""
        self.unplug()
        self._selector.close()

    def _hang_up(self, sock: socket.socket) -> None:
        self._peers.pop(sock, None)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _dial(self) -> None:
        if self.connect is None or self._peers or time.monotonic() < self._next_try:
            return
        self._next_try = time.monotonic() + self.retry
        try:
            sock = socket.create_connection(self.connect, timeout=1.0)
        except OSError:
            return
        self._adopt(sock)

    def _adopt(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._peers[sock] = bytearray()
        self._selector.register(sock, selectors.EVENT_READ, sock)

    def _exchange(self, timeout: float) -> None:
        self._dial()
        for key, _ in self._selector.select(timeout):
            if key.data is None and self._listener is not None:
                try:
                    sock, _addr = self._listener.accept()
                except OSError:
                    continue
                self._adopt(sock)
                continue
            sock = key.data
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                self._hang_up(sock)
                continue
            self.emulator.receive(data)

    def _write(self, data: bytes) -> None:
        if not data:
            return
        if not self._peers:
            self.bytes_dropped += len(data)
            return
        for sock, pending in list(self._peers.items()):
            pending += data
            try:
                sent = sock.send(pending)
                del pending[:sent]
                self.bytes_sent += sent
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._hang_up(sock)
                continue
            if len(pending) > (1 << 22):  # the receiver has stopped reading: behave as a full buffer
                self.bytes_dropped += len(pending)
                pending.clear()

    def _report(self, say: Callable[[str], None]) -> None:
        """Say when Vigil refuses messages: the first time, then at most every 10 s."""
        total = sum(count for code, count in self.emulator.acks.items() if code not in ("AA", "CA"))
        now = time.monotonic()
        if total > self._reported and self.emulator.refusals and now - self._reported_at >= 10.0:
            say(f"Vigil refused a message ({total} so far): {self.emulator.refusals[-1]}")
            self._reported, self._reported_at = total, now
