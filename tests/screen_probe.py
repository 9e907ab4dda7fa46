"""Render every state of Vigil's screen at one screen size and check that everything fits.

Run by tests/test_screen_fit.py in a subprocess, because the screen size (and with it the font
scale) is fixed when the Qt application starts::

    QT_QPA_PLATFORM=offscreen:configfile=screen.json python -m tests.screen_probe DB_FOLDER [PNG_FOLDER]

The monitoring window is placed as a window manager places a maximised window (under a 30 px
title bar, the rest of the available screen). Then, one after the other: a running IV infusion
("normal"); a HIGH alarm with others listed ("high_alarm"); the event bar's menu; every dialog of
:data:`tests.vigil_windows.DIALOGS` and the states dialogs are cut in (a sign-in refused, a start
form refused, the esketamine doses); the session browser and a review window with its menus;
the locked screen ("locked"); and a second window on a Masimo pulse oximeter (a pseudo-terminal
speaking the real protocol: "oximeter") running an esketamine session whose pre-dose BP needs a
decision (the first-device dialog). Prints one JSON object: the available geometry, the alarm
zone and, per state or window, the problems :mod:`tests.screen_fit` found. With PNG_FOLDER, each
state is also saved there as an image.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

TITLE_BAR = 30  # px: the window manager's title bar above the monitoring window


def main(folder: str, pngs: str | None = None) -> int:
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from drivers.simulator.serve import PtyServer
    from monitor.alarms.profile import Priority, default_profile
    from monitor.patient import Patient
    from monitor.protocols import EsketaminePlan, ProtocolKind
    from monitor.settings import ClinicSettings
    from monitor.staff import Actor, Role
    from monitor.store import SessionStore
    from tests import screen_fit
    from tests.factories import make_context, make_service, sign_in
    from tests.vigil_windows import ANN, DIALOGS, open_review, start_infusion
    from ui.audio import AlarmAudio
    from ui.dialogs import InfusionStartDialog, SignInDialog, StartSessionDialog
    from ui.main_window import MainWindow

    available = app.primaryScreen().availableGeometry()
    report: dict[str, list[str]] = {}
    made: list[tuple[MainWindow, object, SessionStore]] = []
    out = Path(pngs) if pngs else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    def settle(seconds: float = 0.0, until: Callable[[], bool] | None = None, timeout: float = 30.0) -> None:
        end = time.monotonic() + seconds
        deadline = time.monotonic() + timeout
        while time.monotonic() < end or (until is not None and not until()):
            app.processEvents()
            time.sleep(0.01)
            if time.monotonic() > deadline:
                raise TimeoutError("the screen never showed what was expected")
        app.processEvents()

    def window(device: str, name: str) -> MainWindow:
        store = SessionStore(Path(folder) / f"{name}.sqlite")
        settings = ClinicSettings()
        service = make_service(device, store, settings, default_profile())
        context = make_context(service, store, settings, default_profile())
        if not context.clinic.has_users():
            context.clinic.create_first_account("chief", "Cam Chief", "482619", "482619")
        win = MainWindow(context, audio=AlarmAudio(enabled=False))
        win.show()
        win.setGeometry(available.adjusted(0, TITLE_BAR, 0, 0))  # maximised under a title bar (after show:
        # the offscreen platform moves a window by its own 2 px frame when it is shown)
        service.start()
        made.append((win, service, store))
        return win

    def close(shown: MainWindow) -> None:
        shown.force_close = True
        shown.close()

    def zone_of(win: MainWindow) -> QRect:
        area = win.alarm_area
        return QRect(area.mapToGlobal(QPoint(0, 0)), area.size())

    def check_main(state: str, win: MainWindow) -> None:
        win.refresh()
        settle(0.3)
        # where a window manager puts it (the offscreen platform shifts it by a frame of its own)
        client = QRect(available.x(), available.y() + TITLE_BAR, win.width(), win.height())
        problems = (screen_fit.window_problems(win, available, frame_margins=screen_fit.MAXIMISED, client=client)
                    + screen_fit.zone_cover_problems(win, win.alarm_area))
        report[state] = problems
        if out is not None:
            win.grab().save(str(out / f"{state}.png"))

    def check_window(name: str, shown, zone: QRect) -> None:
        settle(0.1)
        report[name] = screen_fit.window_problems(shown, available, zone)
        if out is not None:
            shown.grab().save(str(out / f"{name.replace(' ', '_')}.png"))

    def check_dialog(name: str, dialog, zone: QRect, prepare: Callable[[object], None] | None = None) -> None:
        dialog.show()
        settle(0.05)
        if prepare is not None:
            prepare(dialog)
            settle(0.05)
        check_window(name, dialog, zone)
        dialog.done(0)
        dialog.deleteLater()

    def check_menu(name: str, menu, anchor) -> None:
        menu.popup(anchor.mapToGlobal(QPoint(0, anchor.height())))
        settle(0.05)
        report[name] = screen_fit.menu_problems(menu)
        menu.hide()

    # ---------------------------------------------------------------- an IV infusion
    win = window("sim://?scenario=normal&speed=10&waves=0&nibp=3600", "iv")
    start_infusion(win)
    settle(until=lambda: win.tiles["spo2"].value_text not in ("--", ""))
    win.service.record_nibp(124, 78, ANN)
    settle(0.5)
    check_main("normal", win)
    zone = zone_of(win)

    check_menu("menu: assessment", win.event_bar.assessment_button.menu(), win.event_bar.assessment_button)

    for name, make in DIALOGS.items():
        check_dialog(name, make(win), zone)

    def refused_sign_in(dialog) -> None:
        dialog.staff_id.setText("chief")
        dialog.pin.setText("0000")
        dialog.accept()

    check_dialog("SignInDialog (refused)", SignInDialog(win.context, win), zone, refused_sign_in)
    check_dialog("StartSessionDialog (refused)", StartSessionDialog(win.context, win), zone,
                 lambda d: d.accept())

    def esketamine(dialog) -> None:
        dialog.protocol.set_value(ProtocolKind.ESKETAMINE)

    check_dialog("StartSessionDialog (esketamine)", StartSessionDialog(win.context, win), zone, esketamine)

    # ---------------------------------------------------------------- a HIGH alarm and others
    win.service.record_nibp(212, 124, ANN)
    win.service.set_technical("recording_failed", True, "Recording failed: disk full")
    settle(until=lambda: win.service.alarm_state().visual_priority is Priority.HIGH)
    check_main("high_alarm", win)
    win.service.set_technical("recording_failed", False)

    # ---------------------------------------------------------------- review
    win.service.pipeline.writer.flush(10)
    browser, review = open_review(win)
    settle(0.5)
    review.load_all_vitals() if hasattr(review, "load_all_vitals") else None
    check_window("SessionBrowser", browser, zone)
    check_window("ReviewWindow", review, zone)
    check_menu("menu: export", review.export_menu, review.export_button)

    # ---------------------------------------------------------------- locked
    win.lock()
    settle(0.2)
    check_main("locked", win)

    # ---------------------------------------------------------------- a pulse oximeter only
    browser.close()
    close(win)
    server = PtyServer("masimo", speed=1.0)
    path = server.open()
    stop = threading.Event()
    feeder = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    feeder.start()
    oxi = window(f"{path}?protocol=masimo", "oximeter")
    if hasattr(oxi, "presence"):
        oxi.presence.grace_s = 2.0
    nurse = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
    sign_in(oxi.context, nurse)
    settle(until=lambda: oxi.tiles["spo2"].value_text not in ("--", ""), timeout=30)
    settle(3.0)
    oxi.service.start_session(Patient(display_name="Jo Doe", weight_kg=70),
                              EsketaminePlan(dose_mg=84, lot_number="L123"), nurse)
    oxi.service.record_nibp(152, 96, nurse)
    settle(0.5)
    check_main("oximeter", oxi)
    check_dialog("InfusionStartDialog (esketamine, BP advisory)", InfusionStartDialog(oxi.context, oxi),
                 zone_of(oxi))

    print(json.dumps({"available": [available.x(), available.y(), available.width(), available.height()],
                      "zone": [zone.x(), zone.y(), zone.width(), zone.height()], "problems": report}))
    stop.set()
    feeder.join(5)
    server.close()
    for shown, service, store in made:
        shown.force_close = True
        shown.close()
        service.shutdown()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
