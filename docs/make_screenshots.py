"""Make the screenshots of docs/screenshots/ as a user sees the screen: run under a real X server
with a window manager (``make screenshots``: Xvfb and openbox at 1366x768, 1920x1080 and
2560x1440, one run per size), the real window opened as ``vigil run`` opens it, on the simulated
monitor at an accelerated speed (or, for "oximeter", a simulated Nonin pulse oximeter speaking its
real protocol on a pseudo-terminal), and the whole screen saved, window frames included, as
``docs/screenshots/STATE_WxH.png``.

States: normal (an infusion running, with an event and an assessment charted), high_alarm,
audio_paused, locked, oximeter, start_dialog, discharge, help, review_browser, review (a HIGH alarm
under the cursor), review_with_alarm and dialog_with_alarm (a HIGH alarm starting while Review, or
a dialog, is open).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"

from drivers.simulator.serve import PtyServer  # noqa: E402
from monitor.alarms.profile import Priority, default_profile  # noqa: E402
from monitor.app.clinic import Clinic  # noqa: E402
from monitor.app.pipeline import open_pipeline  # noqa: E402
from monitor.app.records import Records  # noqa: E402
from monitor.assessments import EVENTS, MOAAS, ModifiedAldrete  # noqa: E402
from monitor.patient import Patient  # noqa: E402
from monitor.protocols import EsketaminePlan, KetamineIVPlan  # noqa: E402
from monitor.qt.service import QtSessionService  # noqa: E402
from monitor.settings import ClinicSettings  # noqa: E402
from monitor.staff import Actor, Role  # noqa: E402
from monitor.store import SessionStore  # noqa: E402
from ui.audio import AlarmAudio  # noqa: E402
from ui.context import UiContext  # noqa: E402
from ui.main_window import MainWindow, show_at_start  # noqa: E402

ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
app = QApplication.instance() or QApplication(sys.argv[:1])
app.setApplicationName("Vigil")
SCREEN = app.primaryScreen().geometry()
SIZE = f"{SCREEN.width()}x{SCREEN.height()}"


def wait(predicate, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the screen never showed what was expected")
        app.processEvents()
        time.sleep(0.01)


def settle(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


class QuietAudio(AlarmAudio):
    """An alarm player that says it can play and plays nothing: the screenshots show the screen of a
    PC with sound, without the "alarm audio unavailable" alarm this build machine would raise."""

    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.available, self.reason = True, ""

    def _play(self, priority: Priority) -> None:
        pass


def window(device: str, folder: str, name: str, session: str | None = "iv", waived: bool = True) -> MainWindow:
    """The monitoring window on ``device``, shown as ``vigil run`` shows it; with an IV ("iv") or
    esketamine ("esketamine") session started by Ann Lee, or none."""
    store = SessionStore(Path(folder) / f"{name}.sqlite")
    service = QtSessionService(open_pipeline(device, store, ClinicSettings(), default_profile()))
    clinic = Clinic(store, signins=service.signins)
    context = UiContext(service, Records(store, clinic.signins), clinic, ClinicSettings(), default_profile())
    win = MainWindow(context, audio=QuietAudio())
    show_at_start(win)
    service.start()
    context.sign_in(clinic.signins.issue(ANN))   # signed in as after a PIN (no account in this throw-away file)
    settle(1.0)
    if session == "iv":
        service.start_session(Patient(display_name="Jo Doe", mrn="MRN-20431", weight_kg=72),
                              KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=72), ANN)
        if waived:
            service.waive_pre_dose_check(ANN, "screenshot")
        else:
            service.record_nibp(124, 78, ANN)
        service.start_infusion(ANN)
    elif session == "esketamine":
        service.start_session(Patient(display_name="Sam Roe", weight_kg=80),
                              EsketaminePlan(dose_mg=56, lot_number="LOT-4471"), ANN)
        service.record_nibp(128, 80, ANN)
        service.log_nasal_device(ANN)
    return win


def save(name: str) -> None:
    """The whole screen, as the nurse sees it (window frames included)."""
    settle(0.3)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}_{SIZE}.png"
    app.primaryScreen().grabWindow(0).save(str(path))
    print(f"saved {path.relative_to(ROOT)}")


def close(win: MainWindow) -> None:
    win.force_close = True
    win.close()
    win.service.shutdown()
    win.context.records.store.close()
    settle(0.3)


def lit(win: MainWindow) -> bool:
    """The flashing indicator is in its bright half right now."""
    return win.alarm_area.indicator.styleSheet().startswith("background: #e00000")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        win = window("sim://?scenario=normal&speed=30", folder, "normal", waived=False)
        settle(7)
        win.event_bar.record_event(EVENTS["nausea"]())
        win.service.chart(MOAAS(level=4), ANN)
        settle(7)  # seven minutes of trends
        save("normal")
        win.lock()
        save("locked")
        win.context.sign_in(win.context.clinic.signins.issue(ANN))
        win.help_button.setFocus()
        from ui.help import HelpDialog
        dialog = HelpDialog(win.service.session_profile, win)
        dialog.show()
        save("help")
        dialog.close()
        close(win)

        win = window("sim://?scenario=desaturation&speed=40", folder, "desaturation")
        wait(lambda: win.service.alarm_state().visual_priority is Priority.HIGH and lit(win))
        save("high_alarm")
        win.pause_audio()
        settle(0.6)
        wait(lambda: lit(win), 5)
        save("audio_paused")
        settle(8)  # more of the session to review
        browser = win.open_review()
        settle(1.0)
        save("review_browser")
        review = browser.open_session(win.service.session_id)
        settle(1.5)
        review.load_all_vitals()
        alarm = next(r for r in review.model.rows() if r.category == "alarm")
        review.plots.set_range(alarm.epoch - 150, alarm.epoch + 150)
        review.plots.set_cursor(alarm.epoch + 20)
        settle(1.5)
        save("review")
        browser.close()
        close(win)

        win = window("sim://?scenario=desaturation&speed=40", folder, "review_alarm")
        settle(2)
        win.service.pipeline.writer.flush(10)
        browser = win.open_review()
        review = browser.open_session(win.service.session_id)
        review.raise_()
        review.activateWindow()
        wait(lambda: win.service.alarm_state().visual_priority is Priority.HIGH and lit(win))
        settle(0.2)
        save("review_with_alarm")
        browser.close()
        close(win)

        from ui.dialogs import ManualNibpDialog
        win = window("sim://?scenario=desaturation&speed=40", folder, "dialog_alarm")
        settle(2)
        dialog = ManualNibpDialog(win.context, win)
        dialog.show()
        wait(lambda: win.service.alarm_state().visual_priority is Priority.HIGH and lit(win))
        save("dialog_with_alarm")
        dialog.close()
        close(win)

        server = PtyServer("nonin", speed=1.0)
        path = server.open()
        stop = threading.Event()
        feeder = threading.Thread(target=server.serve, args=(stop,), daemon=True)
        feeder.start()
        win = window(f"{path}?protocol=nonin", folder, "oximeter", session="esketamine")
        win.presence.grace_s = 5.0   # the screen collapses what the oximeter does not send after this
        settle(9)
        save("oximeter")
        close(win)
        stop.set()
        feeder.join(5)
        server.close()

        from ui.dialogs import StartSessionDialog
        win = window("sim://?scenario=normal&speed=1", folder, "start", session=None)
        dialog = StartSessionDialog(win.context, win)
        dialog.name.setText("Jo Doe")
        dialog.mrn.setText("MRN-20431")
        dialog.dob.setText("1981-04-12")
        dialog.weight.setText("72")
        dialog.show()
        save("start_dialog")
        dialog.close()
        close(win)

        from ui.dialogs import DischargeDialog
        win = window("sim://?scenario=normal&speed=240", folder, "discharge", waived=False)
        settle(10)  # 40 minutes of infusion at this speed
        win.service.stop_infusion(ANN, "planned dose given")
        settle(16)  # over an hour of recovery
        win.service.chart(ModifiedAldrete(activity=2, respiration=2, circulation=2, consciousness=2,
                                          oxygen_saturation=2), ANN)
        win.service.confirm_escort(ANN, "Sam Doe")
        settle(1)
        dialog = DischargeDialog(win.context, win)
        dialog.show()
        save("discharge")
        dialog.close()
        close(win)
    app.quit()


if __name__ == "__main__":
    main()
