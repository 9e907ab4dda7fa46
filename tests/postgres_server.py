"""A real PostgreSQL server for tests: a temporary cluster (``initdb``/``pg_ctl``) on a free loopback
port with its socket in a temporary folder, stopped and removed afterwards.

The server binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``,
or wherever ``pg_config --bindir`` points); without them the tests that need a server are skipped
with a message naming the package (``make test`` installs it when running as root).

``initdb`` and the server refuse to run as root, and CI runs as root: then the cluster is made and
run as the unprivileged user ``nobody`` (``subprocess`` with ``user=``/``group=``), in a folder
given to that user; tests connect over TCP on 127.0.0.1, so nothing else has to be shared with it.
Authentication is ``trust`` on loopback only: what a role may do is still decided by its grants,
which is what the tests check.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE_HINT = "PostgreSQL server binaries not found: install the Debian package 'postgresql'"


def bin_dir() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                        if Path(p).parent.name.isdigit() else 0)
    for folder in reversed(candidates):
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One temporary cluster. :meth:`start`/:meth:`stop` may be called again (an outage);
    :meth:`url` gives a libpq URL for a database and user; :meth:`new_database` makes a database.
    ``durable=False`` (tests) turns off fsync and synchronous commit for speed; the benchmarks keep
    them, as a clinic's server would."""

    _ids = itertools.count(1)

    def __init__(self, binaries: Path, *, durable: bool = False) -> None:
        self.bin = binaries
        self.root = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._user: dict[str, int] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._user = {"user": nobody.pw_uid, "group": nobody.pw_gid}
        self.socket_dir.mkdir()
        if self._user:
            for path in (self.root, self.socket_dir):
                os.chown(path, self._user["user"], self._user["group"])
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale",
                  "--no-sync")
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\nlisten_addresses = '127.0.0.1'\nmax_connections = 60\n")
            if not durable:
                conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\n")
        self.running = False

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([str(self.bin / tool), *args], capture_output=True, text=True, check=False,
                                cwd=self.root, **self._user)  # type: ignore[arg-type]
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}\n{log}")

    def start(self) -> None:
        """Start (or restart) the server on its port; waits until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.socket_dir}", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server ("fast": sessions are disconnected; "immediate": as a crash)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
            self.running = False

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        """A libpq URL for ``database`` as ``user`` over TCP on loopback."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Make an empty database; return its name."""
        import psycopg

        name = f"vigil_test_{os.getpid()}_{next(self._ids)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def add_login(self, name: str, *groups: str) -> None:
        """Make a login role (no password: loopback trust) that belongs to ``groups``."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE ROLE "{name}" LOGIN')
            for group in groups:
                conn.execute(f'GRANT "{group}" TO "{name}"')

    def destroy(self) -> None:
        """Stop the server and remove its folder."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def require_server(*, durable: bool = False) -> PostgresServer:
    """A started server, or skip the test naming the Debian package."""
    binaries = bin_dir()
    if binaries is None:
        pytest.skip(PACKAGE_HINT)
    server = PostgresServer(binaries, durable=durable)
    try:
        server.start()
    except Exception:
        server.destroy()
        raise
    return server


@contextlib.contextmanager
def running_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A server for the duration of a ``with`` block."""
    server = require_server(durable=durable)
    try:
        yield server
    finally:
        server.destroy()
