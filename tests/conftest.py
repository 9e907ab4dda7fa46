"""Shared test set-up: every test runs headless."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


import pytest  # noqa: E402

from tests.mosquitto_broker import MISSING, Broker, make_accounts, mosquitto_binary  # noqa: E402

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
