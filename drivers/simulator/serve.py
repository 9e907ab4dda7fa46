"""Serve the simulated monitor on a pseudo-terminal, speaking a real protocol byte for byte.

``vigil simulate --protocol masimo`` makes a pseudo-terminal, prints the path of its device side
(``/dev/pts/N``) and then behaves like that monitor on a serial cable: Vigil (or any other
program) connects to the path exactly as to a USB-serial port. With ``--link PATH`` a symlink
at PATH always points at the current device, so the address stays the same across a cable pull
(``cable_pull`` scenario) or a restart of the simulator.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from drivers.registry import SERVED_PROTOCOLS, make_emulator
from drivers.simulator.physiology import PhysiologyModel

__all__ = ["PtyServer", "SERVED_PROTOCOLS", "make_emulator"]


class PtyServer:
    """The simulated monitor behind a pseudo-terminal.

    Call :meth:`open` to create the terminal (returns the device path), then :meth:`serve`
    until ``stop`` is set. Bytes nobody reads are dropped once the terminal buffer is full, as
    on a real serial line.
    """

    def __init__(self, protocol: str, scenario: str = "normal", speed: float = 1.0, seed: int = 0,
                 variant: str | None = None, link: str | Path | None = None,
                 nibp_interval: float = 300.0, tick: float = 0.02) -> None:
        if not 0.1 <= speed <= 10000:
            raise ValueError("speed must be between 0.1 and 10000")
        self.protocol = protocol
        self.variant = variant
        self.emulator = make_emulator(protocol, variant)
        self.model = PhysiologyModel(scenario, seed=seed, nibp_interval=nibp_interval)
        self.speed = speed
        self.link = Path(link) if link else None
        self.tick = tick
        self.path: str | None = None
        self.bytes_sent = 0
        self.bytes_dropped = 0
        self._master: int | None = None
        self._slave: int | None = None

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

    def _receive(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        if data:
            self._write(self.emulator.receive(data))

    def serve(self, stop: threading.Event, on_event: Callable[[str], None] | None = None) -> None:
        """Run until ``stop`` is set. ``on_event`` receives short status lines (cable pulled…)."""
        say = on_event or (lambda _line: None)
        last = time.monotonic()
        while not stop.is_set():
            if self._master is not None:
                ready, _, _ = select.select([self._master], [], [], self.tick)
                if ready:
                    self._receive()
            else:
                stop.wait(self.tick)
            now = time.monotonic()
            step = self.model.advance((now - last) * self.speed)
            last = now
            if step.disconnected and self._master is not None:
                self.unplug()
                say("cable pulled")
            elif not step.disconnected and self._master is None:
                self.emulator = make_emulator(self.protocol, self.variant)
                say(f"cable reconnected: {self.open()}")
            if self._master is not None:
                self._write(self.emulator.produce(step.snapshot))
