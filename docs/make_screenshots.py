"""Make the README's screenshots (run under a real X server, e.g. ``make screenshots`` with Xvfb).

Each shot drives the real window on the simulated monitor at an accelerated speed, waits for the
moment it shows, and saves ``docs/screenshots/NAME.png`` at 1366x768.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"

from monitor.alarms.profile import Priority, default_profile  # noqa: E402
from monitor.app.clinic import Clinic  # noqa: E402
from monitor.app.pipeline import open_pipeline  # noqa: E402
from monitor.app.records import Records  # noqa: E402
from monitor.patient import Patient  # noqa: E402
from monitor.protocols import KetamineIVPlan  # noqa: E402
from monitor.qt.service import QtSessionService  # noqa: E402
from monitor.settings import ClinicSettings  # noqa: E402
from monitor.staff import Actor, Role  # noqa: E402
from monitor.store import SessionStore  # noqa: E402
from ui.audio import AlarmAudio  # noqa: E402
from ui.context import UiContext  # noqa: E402
from ui.main_window import MainWindow  # noqa: E402

ANN = Actor(username="ann", display_name="Ann Lee", role=Role.NURSE)
app = QApplication.instance() or QApplication(sys.argv[:1])


def wait(predicate, timeout: float = 60.0) -> None:
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


def window(scenario: str, speed: float, folder: str, session: bool = True, waived: bool = True) -> MainWindow:
    store = SessionStore(Path(folder) / f"{scenario}.sqlite")
    service = QtSessionService(open_pipeline(f"sim://?scenario={scenario}&speed={speed:g}", store,
                                             ClinicSettings(), default_profile()))
    clinic = Clinic(store, signins=service.signins)
    context = UiContext(service, Records(store, clinic.signins), clinic, ClinicSettings(), default_profile())
    win = MainWindow(context, audio=QuietAudio())
    win.resize(1366, 768)
    win.show()
    service.start()
    context.sign_in(clinic.signins.issue(ANN))   # signed in as after a PIN (no account in this throw-away file)
    if session:
        settle(1.0)
        service.start_session(Patient(display_name="Jo Doe", mrn="MRN-20431", weight_kg=72),
                              KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=72), ANN)
        if waived:
            service.waive_pre_dose_check(ANN, "screenshot")
        else:
            service.record_nibp(124, 78, ANN)
        service.start_infusion(ANN)
    return win


def save(widget, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    widget.grab().save(str(OUT / f"{name}.png"))
    print(f"saved docs/screenshots/{name}.png")


def close(win: MainWindow) -> None:
    win.force_close = True
    win.close()
    win.service.shutdown()
    win.context.records.store.close()


def lit(win: MainWindow) -> bool:
    """The flashing indicator is in its bright half right now."""
    return win.alarm_area.indicator.styleSheet().startswith("background: #e00000")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        win = window("normal", 30, folder)
        settle(14)  # seven minutes of trends
        save(win, "normal_monitoring")
        close(win)

        win = window("desaturation", 40, folder)
        wait(lambda: win.service.alarm_state().visual_priority is Priority.HIGH and lit(win))
        save(win, "high_alarm")
        win.pause_audio()
        settle(0.6)
        wait(lambda: lit(win), 5)
        save(win, "audio_paused")
        settle(8)  # more of the session to review
        browser = win.open_review()
        review = browser.open_session(win.service.recorder.session_id)
        review.resize(1366, 768)
        settle(1.5)
        review.load_all_vitals()
        save(browser, "review_browser")
        alarm = next(r for r in review.model.rows() if r.category == "alarm")
        review.plots.set_range(alarm.epoch - 150, alarm.epoch + 150)
        review.plots.set_cursor(alarm.epoch + 20)
        settle(1.5)
        save(review, "review")
        browser.close()
        close(win)

        from ui.dialogs import StartSessionDialog
        win = window("normal", 1, folder, session=False)
        dialog = StartSessionDialog(win.context, win)
        dialog.name.setText("Jo Doe")
        dialog.mrn.setText("MRN-20431")
        dialog.dob.setText("1981-04-12")
        dialog.weight.setText("72")
        dialog.show()
        settle(1.0)
        save(dialog, "start_dialog")
        dialog.close()
        close(win)

        from ui.dialogs import DischargeDialog
        from monitor.assessments import ModifiedAldrete
        win = window("normal", 240, folder, waived=False)
        settle(10)  # 40 minutes of infusion at this speed
        win.service.stop_infusion(ANN, "planned dose given")
        settle(16)  # over an hour of recovery
        win.service.chart(ModifiedAldrete(activity=2, respiration=2, circulation=2, consciousness=2,
                                          oxygen_saturation=2), ANN)
        win.service.confirm_escort(ANN, "Sam Doe")
        settle(1)
        dialog = DischargeDialog(win.context, win)
        dialog.show()
        settle(1.0)
        save(dialog, "discharge")
        dialog.close()
        close(win)
    app.quit()


if __name__ == "__main__":
    main()
