"""Reviewing the clinic record (issue 15): the session browser lists every chair's sessions with the
chair's name and filters by chair; a flagged session says so; a session opens in the review window
from PostgreSQL, read-only; ``vigil review --db postgresql://…`` signs in with the clinic's accounts."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from monitor.clinic.accounts import AccountSync
from monitor.app.readmodel import load_session
from monitor.store import SessionStore
from monitor.store.postgres import REPLICATION_ROLE, REVIEW_ROLE, ClinicWriter, PostgresReader, setup
from tests.clinic_chairs import T0, Chair
from tests.factories import ensure_account, sign_in
from tests.postgres_server import require_server
from tests.test_clinic_record import replicate_once
from tests.test_review import NURSE, context, record
from ui.review import ReviewWindow, SessionBrowser

#: Starts a real server on loopback (make test-fast leaves it out).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    """A clinic record holding a real recorded session from chair "Chair 1" and a flagged one from "Chair 2"."""
    server = require_server()
    try:
        db = server.new_database()
        setup(server.url(db))
        server.add_login("chair_login", REPLICATION_ROLE)
        server.add_login("review_login", REVIEW_ROLE)
        folder = tmp_path_factory.mktemp("clinic-review")
        one = SessionStore(folder / "one.sqlite")
        real = record(one, "desaturation", 8 * 60, waves=True)
        ensure_account(one, NURSE)
        replicator = replicate_once(one, server.url(db, "chair_login"), "Chair 1")
        writer = ClinicWriter(server.url(db, "chair_login"))
        writer.open()
        AccountSync(one).sync(writer, replicator.chair_id)
        writer.close()
        two = Chair(folder, "two")
        flagged = two.open_session(T0 + timedelta(days=1), patient="Flagged Person")
        two.record(flagged, T0 + timedelta(days=1), 20)
        two.close_session(flagged, T0 + timedelta(days=1, minutes=1))
        path = two.store.path
        two.store.close()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("DROP TRIGGER entries_no_update")
        conn.execute("UPDATE entries SET payload_json = replace(payload_json, 'note at', 'changed') WHERE id = 1")
        conn.close()
        two.store = SessionStore(path)
        replicate_once(two.store, server.url(db, "chair_login"), "Chair 2")
        yield server.url(db, "review_login"), real, one, server
        one.close()
        two.store.close()
    finally:
        server.destroy()


def test_the_browser_lists_every_chair_with_its_name_and_filters_by_chair(qtbot, clinic):
    url, real, chair_store, _server = clinic
    reader = PostgresReader(url)
    browser = SessionBrowser(context(reader))
    qtbot.addWidget(browser)
    try:
        assert browser.chair.isVisibleTo(browser) and browser.chair.count() == 3  # any, Chair 1, Chair 2
        assert browser.model.COLUMNS[-1] == "Chair"
        chairs = [browser.model.index(row, 8).data() for row in range(browser.model.rowCount())]
        assert sorted(chairs) == ["Chair 1", "Chair 2"]
        row = chairs.index("Chair 2")
        assert browser.model.index(row, 4).data() == "closed — flagged"
        assert "differs from what audit row" in browser.model.index(row, 4).data(0x03)  # tooltip
        browser.chair.setCurrentIndex(browser.chair.findData("Chair 1"))
        [only] = browser.session_ids()
        assert reader.session_origin(only).session_id == real
        # a session opens from the clinic record, read-only
        window = browser.open_session(only)
        assert isinstance(window, ReviewWindow)
        qtbot.waitUntil(lambda: window.plots.painted, timeout=10_000)
        window.load_all_vitals()
        assert len(window.numerics["spo2"].t) > 100
        at_chair = load_session(chair_store, real)  # what the chair's own review shows
        for rows in ("assessments", "events", "infusion", "alarms", "gaps", "phases", "nibp", "baseline"):
            assert getattr(window.view, rows) == getattr(at_chair, rows), rows
        assert not window.late_action.isEnabled()
        window.close()
        browser.close()
    finally:
        reader.close()


def test_the_browser_of_a_chairs_own_database_has_no_chair_column(qtbot, clinic):
    _url, _real, chair_store, _server = clinic
    browser = SessionBrowser(context(chair_store))
    qtbot.addWidget(browser)
    assert not browser.chair.isVisibleTo(browser) and browser.model.columnCount() == 8
    browser.close()


@pytest.mark.qt_log_ignore("This plugin does not support raise")
def test_vigil_review_on_the_clinic_record_signs_in_with_the_clinics_accounts(qtbot, clinic, monkeypatch):
    from PySide6.QtWidgets import QApplication, QMessageBox

    import main
    url, _real, _chair_store, server = clinic
    seen = {}

    def signed_in(dialog):
        seen["accounts"] = [u.login for u in dialog.context.clinic.users()]
        sign_in(dialog.context, NURSE)    # with the account the clinic record keeps
        return True

    def exec_(*_):
        browser = next(w for w in QApplication.topLevelWidgets() if isinstance(w, SessionBrowser) and w.isVisible())
        seen["ids"] = browser.session_ids()
        browser.close()
        return 0

    monkeypatch.setattr("ui.dialogs.run_modal", signed_in)
    monkeypatch.setattr(QApplication, "exec", exec_)
    assert main.main(["review", "--db", url]) == 0
    assert seen["accounts"] == [NURSE.username] and len(seen["ids"]) == 2
    # a clinic record with nobody in it cannot sign anyone in, and a database without one is not one:
    # said, not a crash
    messages = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *args: messages.append(args[2]))
    bare = server.new_database()
    assert main.main(["review", "--db", server.url(bare, "review_login")]) == 1
    setup(server.url(bare))
    assert main.main(["review", "--db", server.url(bare, "review_login")]) == 1
    assert "clinic-setup" in messages[0] and "holds no staff accounts" in messages[1]
