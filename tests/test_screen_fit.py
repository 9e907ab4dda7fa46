"""The nurse's screen at every size (issue 12): every text fits, nothing leaves the screen, nothing
covers the alarm area — the monitoring window (a running infusion, a HIGH alarm, locked, a pulse
oximeter only), every dialog, the session browser and the review window, at 1366×768 under a
30-px title bar, 1920×1080 and 2560×1440; and the checker itself finds what is cut."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QDialog, QLabel, QPushButton, QTableWidget, QVBoxLayout, QWidget

from tests import screen_fit
from tests.vigil_windows import DIALOGS

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(1366, 768), (1920, 1080), (2560, 1440)]


# ------------------------------------------------------------------------------ the checker
def test_the_checker_finds_a_cut_label_button_header_and_placeholder(qtbot):
    window = QWidget()
    qtbot.addWidget(window)
    layout = QVBoxLayout(window)
    label = QLabel("HIGH  Blood pressure high 186 mmHg (limit 180)")
    button = QPushButton("Start infusion")
    table = QTableWidget(1, 1)
    table.setHorizontalHeaderLabels(["Observations"])
    for widget in (label, button, table):
        layout.addWidget(widget)
    window.resize(400, 300)
    window.show()
    assert screen_fit.widget_problems(window) == []
    label.setFixedWidth(120)
    button.setFixedWidth(40)
    table.setColumnWidth(0, 20)
    problems = screen_fit.widget_problems(window)
    assert any("Blood pressure high" in p and "text needs" in p for p in problems)
    assert any("Start infusion" in p and "needs" in p for p in problems)
    assert any("header 'Observations'" in p for p in problems)


def test_the_checker_finds_a_widget_pushed_out_of_its_dialog_and_a_frame_off_screen(qtbot):
    dialog = QDialog()
    qtbot.addWidget(dialog)
    inner = QWidget(dialog)
    inner.setGeometry(0, 0, 200, 50)
    field = QPushButton("PIN", inner)
    field.setGeometry(150, 10, 100, 30)   # half outside its parent, as the PIN field was
    dialog.setGeometry(1300, 700, 300, 200)
    dialog.show()
    problems = screen_fit.window_problems(dialog, QRect(0, 0, 1366, 768), QRect(0, 30, 1366, 56))
    assert any("cut off by its parent" in p for p in problems)
    assert any("extends past the available screen" in p for p in problems)


# ------------------------------------------------------------------------------ every state, every size
@pytest.mark.slow
@pytest.mark.window
@pytest.mark.parametrize("width,height", SIZES)
def test_every_state_and_window_fits_the_screen(tmp_path, width, height):
    config = tmp_path / "screen.json"
    config.write_text(json.dumps({"screens": [{"name": "S", "x": 0, "y": 0, "width": width, "height": height,
                                               "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1.0}]}))
    env = dict(os.environ, QT_QPA_PLATFORM=f"offscreen:configfile={config}", VIGIL_CONFIG_DIR=str(tmp_path / "cfg"))
    done = subprocess.run([sys.executable, "-m", "tests.screen_probe", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["available"] == [0, 0, width, height]
    shown = set(probe["problems"])
    assert {"normal", "high_alarm", "locked", "oximeter", "SessionBrowser", "ReviewWindow"} <= shown
    assert set(DIALOGS) <= shown
    problems = [f"{state}: {problem}" for state, found in probe["problems"].items() for problem in found]
    assert problems == []
