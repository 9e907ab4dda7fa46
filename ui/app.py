"""Start the Vigil window."""

from __future__ import annotations

import argparse
import logging
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

log = logging.getLogger("vigil")


def run_window(args: argparse.Namespace) -> int:
    """Open the monitoring window on ``args.device``; returns the exit status."""
    from monitor.device_channel import DeviceChannel  # noqa: PLC0415
    from ui.live_window import LiveWindow  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Vigil")
    channel = DeviceChannel(args.device)
    window = LiveWindow(channel)
    window.resize(1366, 768)
    window.show()
    channel.start()
    QTimer.singleShot(0, lambda: log.info("window ready: %s", channel.label))
    status = app.exec()
    channel.stop()
    return status
