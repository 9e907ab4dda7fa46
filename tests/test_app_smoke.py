"""The app starts headless on the simulated monitor and says so (Friture's smoke-test pattern)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_main_starts_on_the_simulated_monitor(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "run", "--device", "sim://?scenario=normal&speed=5",
         "--db", str(tmp_path / "vigil.sqlite")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    lines = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "window ready" in line:
                break
        assert any("window ready" in line for line in lines), "".join(lines)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
