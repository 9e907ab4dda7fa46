"""MLLP over TCP as acquisition links: Vigil listening for monitors, or connecting to a gateway.

:class:`MllpServerLink` (``mllp://HOST:PORT?protocol=hl7``) listens; monitors or gateways connect
and push. Several connections are served at once (up to :attr:`MllpServerLink.max_connections`),
each with its own :class:`~drivers.hl7.host.Hl7Decoder` and all sharing one
:class:`~drivers.hl7.host.PatientGate` and code table. A monitor that goes away and comes back
simply connects again; when no monitor has been connected for the send interval plus a second,
the link raises ``connection_lost`` (and ends it when one connects). :class:`MllpClientLink`
(``mllp-client://HOST:PORT?protocol=hl7``) connects to a gateway that serves; the gateway closing
the connection is a lost link, retried with back-off by the worker.

Both are :class:`~drivers.acquisition.Link` s for the acquisition worker: threads and
``selectors``, no asyncio, no Qt. Reading is bounded — at most :data:`READ_SIZE` bytes per
connection per :meth:`read`, so one flooding sender cannot starve another, and every read returns
one batch — and so is writing: acknowledgements a peer does not read pile up to
:data:`MAX_OUTBOX` bytes, then the connection is closed. :meth:`~MllpLink.set_expected_patient`
may be called from any thread (the session's chair and patient).
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from drivers.acquisition import Link, LinkError
from drivers.base import ConditionTracker
from drivers.hl7.codes import Codebook, LocalCodes
from drivers.hl7.host import Hl7Decoder, Hl7Stats, PatientGate
from drivers.model import DeviceCondition, Item

#: Bytes read from one connection per :meth:`MllpLink.read`.
READ_SIZE = 64 * 1024
#: Unsent acknowledgement bytes a connection may hold before it is closed.
MAX_OUTBOX = 1 << 20


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    peer: str
    decoder: Hl7Decoder
    outbox: bytearray = field(default_factory=bytearray)
    active: frozenset[str] = frozenset()


class MllpLink(Link):
    """What the server and client links share: connections, decoding, acknowledgements, the
    merged condition state and the statistics of every connection so far."""

    def __init__(self, host: str, port: int, source: str, *, bed: str | None = None, patient: str | None = None,
                 interval: float = 5.0, codes: str | None = None) -> None:
        self.host, self.port = host, port
        self.source = source
        self.expected_interval = float(interval)
        self.bed = bed  # the chair's bed from the device URL: kept when a session names its patient
        self.gate = PatientGate(bed, patient)
        self.codebook = Codebook(LocalCodes.load(codes))
        self._selector: selectors.BaseSelector | None = None
        self._conns: dict[socket.socket, _Connection] = {}
        self._tracker = ConditionTracker(source)
        self._link_codes: set[str] = set()
        self._closed_totals = Hl7Stats()
        self._waker_r: socket.socket | None = None
        self._waker_w: socket.socket | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------- public
    def set_expected_patient(self, bed: str | None = None, patient: str | None = None) -> None:
        """Accept only messages for ``bed`` (None: the bed of the device URL, if any) and
        ``patient`` (None: any, the gate locking on the first patient it accepts) from now on (see
        :class:`~drivers.hl7.host.PatientGate`); thread-safe. A session's start names its patient;
        its end clears the patient, so that the next patient at this bed is accepted."""
        self.gate.set_expected(bed if bed is not None else self.bed, patient)

    @property
    def stats(self) -> Hl7Stats:
        """Counts over every connection so far."""
        with self._lock:
            parts = [self._closed_totals] + [c.decoder.stats for c in self._conns.values()]
        total = Hl7Stats()
        for name in (f.name for f in fields(Hl7Stats)):
            setattr(total, name, sum(getattr(p, name) for p in parts))
        return total

    @property
    def connections(self) -> list[str]:
        """Peers connected now ("host:port")."""
        with self._lock:
            return [c.peer for c in self._conns.values()]

    # ----------------------------------------------------------------------- plumbing
    def _start_selector(self) -> selectors.BaseSelector:
        self._selector = selectors.DefaultSelector()
        self._waker_r, self._waker_w = socket.socketpair()
        self._waker_r.setblocking(False)
        self._waker_w.setblocking(False)
        self._selector.register(self._waker_r, selectors.EVENT_READ, "waker")
        self._tracker = ConditionTracker(self.source)
        self._link_codes = set()
        return self._selector

    def _decoder(self) -> Hl7Decoder:
        return Hl7Decoder(source=self.source, clock=self.clock, gate=self.gate, codebook=self.codebook,
                          interval=self.expected_interval)

    def _adopt(self, sock: socket.socket, peer: str) -> _Connection:
        sock.setblocking(False)
        conn = _Connection(sock, peer, self._decoder())
        with self._lock:
            self._conns[sock] = conn
        assert self._selector is not None
        self._selector.register(sock, selectors.EVENT_READ, conn)
        return conn

    def _drop(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.pop(conn.sock, None)
            totals, live = self._closed_totals, conn.decoder.stats
            for name in (f.name for f in fields(Hl7Stats)):
                setattr(totals, name, getattr(totals, name) + getattr(live, name))
        try:
            if self._selector is not None:
                self._selector.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            conn.sock.close()
        except OSError:
            pass

    def _serve(self, conn: _Connection, mask: int, items: list[Item]) -> bool:
        """Read, decode and acknowledge one connection; False when it is gone."""
        if mask & selectors.EVENT_READ:
            try:
                data = conn.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                return False
            if data == b"":
                return False
            if data:
                decoded = conn.decoder.feed(data)
                active = set(conn.active)
                for item in decoded:
                    if isinstance(item, DeviceCondition):
                        (active.add if item.active else active.discard)(item.code)
                    else:
                        items.append(item)
                conn.active = frozenset(active)
                conn.outbox += conn.decoder.take_output()
        return self._flush(conn)

    def _flush(self, conn: _Connection) -> bool:
        if conn.outbox:
            try:
                sent = conn.sock.send(conn.outbox)
                del conn.outbox[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return False
        if len(conn.outbox) > MAX_OUTBOX:
            return False  # the peer does not read its acknowledgements
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbox else 0)
        try:
            if self._selector is not None and self._selector.get_key(conn.sock).events != want:
                self._selector.modify(conn.sock, want, conn)
        except (KeyError, ValueError, OSError):
            return False
        return True

    def _select(self, timeout: float) -> list[tuple[selectors.SelectorKey, int]]:
        if self._selector is None:
            raise LinkError("link is not open")
        try:
            events = self._selector.select(timeout)
        except (OSError, ValueError) as exc:
            raise LinkError(f"{self.source}: {exc}") from exc
        out = []
        for key, mask in events:
            if key.data == "waker":
                try:
                    while self._waker_r is not None and self._waker_r.recv(4096):
                        pass
                except OSError:  # BlockingIOError: drained
                    pass
            else:
                out.append((key, mask))
        return out

    def _read_connections(self, events: list[tuple[selectors.SelectorKey, int]], items: list[Item]) -> None:
        for key, mask in events:
            conn = key.data
            if isinstance(conn, _Connection) and not self._serve(conn, mask, items):
                self._drop(conn)

    def _conditions(self, items: list[Item]) -> list[Item]:
        """Items with the merged condition changes (every connection's, and the link's) first."""
        with self._lock:
            active = set(self._link_codes)
            for conn in self._conns.values():
                active |= conn.active
        changes = self._tracker.update(active, self.clock())
        return [*changes, *items] if changes else items

    def cancel(self) -> None:
        waker = self._waker_w
        if waker is not None:
            try:
                waker.send(b"\0")
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            self._drop(conn)
        for sock in (self._waker_r, self._waker_w):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        self._waker_r = self._waker_w = None
        if self._selector is not None:
            try:
                self._selector.close()
            except OSError:
                pass
            self._selector = None

    def clock(self) -> datetime:
        """Messages are stamped with the time they arrive, on the link's timeline."""
        return self.timeline.now()


class MllpServerLink(MllpLink):
    """Vigil listening on ``host:port`` (port 0: any free port, see :attr:`address`)."""

    #: Connections served at once; more are accepted and closed at once (counted).
    max_connections = 16

    def __init__(self, host: str, port: int, source: str | None = None, **options: Any) -> None:
        super().__init__(host, port, source or f"hl7:mllp://{host}:{port}", **options)
        self._listener: socket.socket | None = None
        self.address: tuple[str, int] | None = None
        self._had_peer = False
        self._alone_since: float | None = None

    def open(self) -> None:
        selector = self._start_selector()
        try:
            listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(self.max_connections)
            listener.setblocking(False)
        except OSError as exc:
            self.close()
            raise LinkError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self._listener = listener
        self.address = listener.getsockname()[:2]
        selector.register(listener, selectors.EVENT_READ, "listener")
        self._had_peer, self._alone_since = False, None

    def read(self, timeout: float) -> list[Item]:
        events = self._select(timeout)
        items: list[Item] = []
        for key, _mask in events:
            if key.data == "listener":
                self._accept()
        self._read_connections([e for e in events if e[0].data != "listener"], items)
        self._watch_peers()
        return self._conditions(items)

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None:
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ECONNABORTED):
                    return
                raise LinkError(f"{self.source}: {exc}") from exc
            if len(self._conns) >= self.max_connections:
                sock.close()
                continue
            self._adopt(sock, f"{addr[0]}:{addr[1]}")
            self._had_peer, self._alone_since = True, None
            self._link_codes.discard("connection_lost")

    def _watch_peers(self) -> None:
        if self._conns or not self._had_peer:
            return
        now = time.monotonic()
        if self._alone_since is None:
            self._alone_since = now
        elif now - self._alone_since >= self.expected_interval + 1.0:
            self._link_codes.add("connection_lost")

    def close(self) -> None:
        listener, self._listener = self._listener, None
        super().close()
        if listener is not None:
            try:
                listener.close()
            except OSError:
                pass


class MllpClientLink(MllpLink):
    """Vigil connecting to a gateway at ``host:port`` that serves HL7 over MLLP."""

    #: Seconds to wait for the connection.
    connect_timeout = 3.0

    def __init__(self, host: str, port: int, source: str | None = None, **options: Any) -> None:
        super().__init__(host, port, source or f"hl7:mllp-client://{host}:{port}", **options)

    def open(self) -> None:
        self._start_selector()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            self.close()
            raise LinkError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self._adopt(sock, f"{self.host}:{self.port}")

    def read(self, timeout: float) -> list[Item]:
        events = self._select(timeout)
        items: list[Item] = []
        self._read_connections(events, items)
        if not self._conns:
            raise LinkError(f"{self.host}:{self.port} closed the connection")
        return self._conditions(items)
