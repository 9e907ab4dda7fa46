"""Messages that tell the truth (issue 12): a form's refusal follows the form as it is corrected and
goes once it is fixed; the panel's refusal goes once what it asked for is recorded; the pre-dose
dialog says which BP it uses; and the command line: a header on ``vigil sessions``, a database
the commands can find, one line when there is no display."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtTest import QTest

from monitor.cli import run_cli
from monitor.config import DEV_DB, open_reader
from monitor.protocols import ProtocolKind
from monitor.store import SessionStore, StoreError
from tests.test_ui_session_panel import ANN, click, ctx, pin_in, runner, sign_in, start_form  # noqa: F401 (fixtures)
from ui.dialogs import InfusionStartDialog, SignInDialog, StartSessionDialog
from ui.session_panel import SessionPanel

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")
ROOT = Path(__file__).resolve().parents[1]


def test_a_start_form_refusal_follows_the_corrections_and_goes_once_fixed(qtbot, ctx):
    sign_in(ctx, ANN)
    dialog = StartSessionDialog(ctx)
    qtbot.addWidget(dialog)
    dialog.show()
    QTest.keyClicks(dialog.name, "Jo Doe")
    dialog.accept()
    assert "Enter the date of birth" in dialog.error.text() and "Enter the weight" in dialog.error.text()
    QTest.keyClicks(dialog.dob, "1980-05-17")
    assert "date of birth" not in dialog.error.text() and "Enter the weight" in dialog.error.text()
    QTest.keyClicks(dialog.weight, "70")
    assert dialog.error.text() == ""
    assert dialog.age.text() == "age " + dialog.age.text().split()[-1] and "today" not in dialog.age.text()


def test_the_panels_pre_dose_refusal_goes_once_the_bp_is_recorded(qtbot, ctx, runner):
    panel = SessionPanel(ctx)
    qtbot.addWidget(panel)
    panel.show()
    runner.on(SignInDialog, pin_in)
    runner.on(StartSessionDialog, start_form(ProtocolKind.KETAMINE_IV, None))
    click(qtbot, panel.start_session_button)
    panel._show_refusal(ValueError("Record a pre-dose blood pressure before dosing"))
    assert panel.error.isVisible() or panel.error.text()
    ctx.service.record_nibp(124, 78, ANN)
    qtbot.waitUntil(lambda: panel.error.text() == "", timeout=5000)


def test_the_dosing_dialog_says_which_readings_make_the_pre_dose_bp(qtbot, ctx, runner):
    panel = SessionPanel(ctx)
    qtbot.addWidget(panel)
    panel.show()
    runner.on(SignInDialog, pin_in)
    runner.on(StartSessionDialog, start_form(ProtocolKind.KETAMINE_IV, ("150", "95")))
    click(qtbot, panel.start_session_button)
    ctx.service.record_nibp(118, 76, ANN, t=ctx.service.now())   # a later reading, as the tile shows it
    dialog = InfusionStartDialog(ctx)
    qtbot.addWidget(dialog)
    text = dialog.bp_label.text()
    # the tile shows 118/76; the dialog shows what the pre-dose check uses, and from which readings
    assert text.startswith("Pre-dose BP 134/86 (mean of 150/95 at ") and " and 118/76 at " in text


# ------------------------------------------------------------------------------ command line
def record_session(db: Path) -> None:
    """One IV session, recorded and closed as ``vigil record`` closes it."""
    from datetime import datetime, timedelta, timezone  # noqa: PLC0415

    from monitor.alarms.profile import default_profile  # noqa: PLC0415
    from monitor.app.recorder import SessionRecorder  # noqa: PLC0415
    from monitor.patient import Patient  # noqa: PLC0415
    from monitor.protocols import KetamineIVPlan  # noqa: PLC0415
    from monitor.settings import ClinicSettings  # noqa: PLC0415
    from monitor.store import StoreWriter  # noqa: PLC0415
    from tests.factories import act  # noqa: PLC0415

    store = SessionStore(db)
    writer = StoreWriter(store)
    writer.start()
    start = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    rec = SessionRecorder.start(store, writer, patient=Patient(display_name="Jo Doe", weight_kg=70),
                                plan=KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70), device="sim://", actor=ANN,
                                t=start, settings=ClinicSettings(), profile=default_profile())
    act(rec, "waive_pre_dose_check", start, ANN, "test")
    rec.finish(start + timedelta(minutes=5), signed_name=ANN.display_name, meaning="recording ended")
    assert writer.stop(30)
    store.close()


def test_vigil_sessions_prints_a_header_over_its_columns(tmp_path):
    db = tmp_path / "v.sqlite"
    record_session(db)
    out = io.StringIO()
    assert run_cli(["sessions", "--db", str(db)], out=out, err=io.StringIO()) == 0
    header, *rows = out.getvalue().splitlines()
    assert header.split() == ["ID", "STARTED", "ENDED", "STATUS", "PROTOCOL", "OBSERVATIONS", "ALARMS", "PATIENT"]
    [row] = rows
    assert header.index("STATUS") == row.index(" closed ") + 1 and header.index("PATIENT") == row.index("Jo Doe")
    out = io.StringIO()
    assert run_cli(["sessions", "--db", str(db), "--json"], out=out, err=io.StringIO()) == 0
    assert out.getvalue().startswith("{")                                       # JSON lines: no header


def test_a_missing_database_says_how_to_name_it_and_where_make_run_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VIGIL_DB", raising=False)
    with pytest.raises(StoreError, match=r"no database at .*: give the one to read with --db PATH \(or set VIGIL_DB\)$"):
        open_reader(str(tmp_path / "missing.sqlite"))
    DEV_DB.parent.mkdir()
    SessionStore(DEV_DB).close()
    err = io.StringIO()
    assert run_cli(["sessions", "--db", str(tmp_path / "missing.sqlite")], out=io.StringIO(), err=err) == 1
    assert err.getvalue().count("\n") == 1 and f"make run records into {DEV_DB} here: --db {DEV_DB}" in err.getvalue()


def test_a_window_command_without_a_display_says_so_in_one_line(monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    opened = []
    for command in ("run", "review", "board"):
        err = io.StringIO()
        argv = [command] + (["--broker", "mqtts://127.0.0.1:8883"] if command == "board" else [])
        status = run_cli(argv, window=lambda args: opened.append(args) or 0, out=io.StringIO(), err=err)
        assert status == 1 and err.getvalue().count("\n") == 1, err.getvalue()
        assert err.getvalue().startswith(f"vigil {command}: no display to open the window on")
    assert opened == []
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")   # a chosen platform: the window opens
    assert run_cli(["review"], window=lambda args: opened.append(args) or 0, out=io.StringIO(),
                   err=io.StringIO()) == 0 and len(opened) == 1


@pytest.mark.slow
def test_vigil_run_without_a_display_exits_with_one_line_and_no_qt_abort(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["VIGIL_CONFIG_DIR"] = str(tmp_path / "cfg")
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "run", "--db", str(tmp_path / "x.sqlite")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "vigil run: no display to open the window on (DISPLAY is not set): run it on the computer's desktop "
        "(or vigil record for recording without a window)"]
