"""Shared test set-up: every test runs headless."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


import fcntl  # noqa: E402
import gc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.mosquitto_broker import MISSING, Broker, make_accounts, mosquitto_binary  # noqa: E402


def pytest_collection_finish(session):
    """What the tests were collected with (modules, classes, the test items) lives as long as the run:
    the cyclic collector stops scanning it (:func:`gc.freeze` after one collection), as Vigil does once
    its window is up (:func:`ui.app.settle_heap`). Each full collection scanned it all: a seventh of the
    fast tier's CPU time. Objects made by the tests are collected as before."""
    gc.collect()
    gc.freeze()


#: Accounts every broker of the tests has (chairs, boards).
BOARD_CHAIRS = [f"chair-{n}" for n in range(1, 5)]
BOARD_ACCOUNTS = ["board"]


@pytest.fixture(scope="module")
def broker_accounts(tmp_path_factory):
    """A test CA, broker certificate and accounts (chair-1..chair-4, board), made once per module."""
    if mosquitto_binary() is None:
        pytest.skip(MISSING)
    folder = tmp_path_factory.mktemp("mosquitto")
    make_accounts(folder, BOARD_CHAIRS, BOARD_ACCOUNTS)
    return folder


@pytest.fixture
def broker(broker_accounts):
    """A real Mosquitto on a free loopback port: TLS, passwords and the ACL (stopped after the test)."""
    instance = Broker(broker_accounts).start()
    yield instance
    instance.stop()


# The audit chain's keys (monitor/store/keys.py) go to a folder of the test run, never the user's.
if "VIGIL_KEY_DIR" not in os.environ:
    import tempfile  # noqa: E402

    os.environ["VIGIL_KEY_DIR"] = tempfile.mkdtemp(prefix="vigil-test-keys-")


@pytest.fixture(scope="session")
def made_once(tmp_path_factory) -> Callable[[str, Callable[[Path], object]], Path]:
    """``made_once(name, make)``: the file ``make(path)`` writes, made once per test run however many
    workers run the tests (the first to ask makes it while the others wait). Recorded sessions are
    shared this way; a test opens a copy of one (:func:`tests.factories.copy_into`), never the file itself."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this run's folder, which its workers share
    folder = root / "made-once"
    folder.mkdir(exist_ok=True)

    def get(name: str, make: Callable[[Path], object]) -> Path:
        path = folder / name
        with open(folder / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                part = folder / "part" / name
                part.parent.mkdir(exist_ok=True)
                part.unlink(missing_ok=True)  # what a run stopped while making it left
                make(part)
                part.rename(path)
        return path

    return get
