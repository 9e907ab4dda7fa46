"""Where Vigil's dialogs and secondary windows land on a screen of a given size.

Run by tests/test_ui_alarms_reachable.py in a subprocess, because the screen size (and with it the
font scale) is fixed when the Qt application starts:

    QT_QPA_PLATFORM=offscreen:configfile=screen.json python -m tests.geometry_probe DB_PATH

It opens the monitoring window as a window manager would place it (under a 30 px title bar, the
whole screen below), starts a session on the simulated monitor, shows every dialog of
:data:`tests.vigil_windows.DIALOGS`, the session browser and a review window one after the other,
and prints one JSON object: the screen's available geometry, the alarm area's global rectangle and,
per window, its client rectangle and minimum size.
"""

from __future__ import annotations

import json
import sys

TITLE_BAR = 30  # px: the window manager's title bar above the monitoring window


def _rect(r) -> list[int]:
    return [r.x(), r.y(), r.width(), r.height()]


def main(db: str) -> int:
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from monitor.alarms.profile import default_profile
    from tests.factories import make_context, make_service
    from monitor.settings import ClinicSettings
    from monitor.store import SessionStore
    from tests.vigil_windows import DIALOGS, open_review, start_infusion
    from ui.audio import AlarmAudio
    from ui.main_window import MainWindow

    store = SessionStore(db)
    service = make_service("sim://?scenario=normal&speed=10&waves=0", store, ClinicSettings(), default_profile())
    context = make_context(service, store, ClinicSettings(), default_profile())
    window = MainWindow(context, audio=AlarmAudio(enabled=False))
    available = app.primaryScreen().availableGeometry()
    window.setGeometry(available.adjusted(0, TITLE_BAR, 0, 0))
    window.show()
    service.start()
    start_infusion(window)
    app.processEvents()
    area = window.alarm_area
    zone = QRect(area.mapToGlobal(QPoint(0, 0)), area.size())
    shown = []

    def record(name, widget) -> None:
        app.processEvents()
        shown.append({"name": name, "geometry": _rect(widget.geometry()),
                      "minimum": [widget.minimumSizeHint().expandedTo(widget.minimumSize()).width(),
                                  widget.minimumSizeHint().expandedTo(widget.minimumSize()).height()]})

    for name, make in DIALOGS.items():
        dialog = make(window)
        dialog.show()
        record(name, dialog)
        dialog.done(0)
        dialog.deleteLater()
    browser, review = open_review(window)
    record("SessionBrowser", browser)
    record("ReviewWindow", review)
    print(json.dumps({"available": _rect(available), "zone": _rect(zone),
                      "main": _rect(window.geometry()), "windows": shown}))
    browser.close()
    window.force_close = True
    window.close()
    service.shutdown()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
