"""Start the Vigil window: store, clinic settings, device, recording service, window; then the
start-up questions (first account, resuming a session a crash left open)."""

from __future__ import annotations

import argparse
import logging
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

log = logging.getLogger("vigil")


def _fail(title: str, text: str) -> int:
    log.error("%s: %s", title, text)
    QMessageBox.critical(None, title, text)
    return 1


def run_window(args: argparse.Namespace) -> int:
    """Open the monitoring window on ``args.device`` with the database ``args.db``."""
    from monitor.alarms.profile import ProfileError  # noqa: PLC0415
    from monitor.clinic.link import start_clinic_link  # noqa: PLC0415
    from monitor.config import db_path, load_clinic_profile, load_clinic_settings  # noqa: PLC0415
    from monitor.device_channel import DeviceChannel  # noqa: PLC0415
    from monitor.recording_service import RecordingService  # noqa: PLC0415
    from monitor.settings import SettingsError  # noqa: PLC0415
    from monitor.store import SessionStore, StoreError  # noqa: PLC0415
    from ui.context import UiContext  # noqa: PLC0415
    from ui.main_window import MainWindow  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Vigil")
    try:
        store = SessionStore(db_path(args.db))
    except (StoreError, OSError) as exc:
        return _fail("Vigil cannot open its database", str(exc))
    try:
        settings = load_clinic_settings()
        profile = load_clinic_profile()
    except (SettingsError, ProfileError) as exc:
        store.close()
        return _fail("Vigil cannot load the clinic's settings", str(exc))
    try:  # pipeline: replaced when monitor.app.pipeline lands
        clinic = start_clinic_link(store, settings, url=getattr(args, "clinic_db", None),
                                   chair=getattr(args, "chair", None))
        if clinic is not None and clinic.settings_changed:
            settings = load_clinic_settings()
    except (ValueError, StoreError) as exc:
        store.close()
        return _fail("Vigil cannot start the clinic record", str(exc))
    channel = DeviceChannel(args.device)
    service = RecordingService(channel, store, settings, profile)
    context = UiContext(service, store, settings, profile)
    window = MainWindow(context)
    window.resize(1366, 768)
    window.first_painted.connect(lambda: log.info("window ready: %s", channel.label))
    window.first_painted.connect(lambda: QTimer.singleShot(0, lambda: startup_questions(window)))
    window.showFullScreen() if getattr(args, "full_screen", False) else window.show()
    channel.start()
    try:
        status = app.exec()
    finally:
        service.shutdown()
        if clinic is not None:  # pipeline: replaced when monitor.app.pipeline lands
            clinic.finish()
        store.close()
    return status


def run_review(args: argparse.Namespace) -> int:
    """``vigil review``: the session browser with no monitoring (a prescriber's or charge nurse's
    desk), on the database ``args.db`` — a chair's file, or the clinic record (``postgresql://…``:
    every chair's sessions, read-only, signed in with the clinic's staff accounts) — after staff
    sign-in; ``args.session`` opens one at once."""
    from monitor.alarms.profile import ProfileError  # noqa: PLC0415
    from monitor.config import load_clinic_profile, load_clinic_settings, open_reader  # noqa: PLC0415
    from monitor.settings import SettingsError  # noqa: PLC0415
    from monitor.store import SessionStore, StoreError  # noqa: PLC0415
    from ui.context import UiContext  # noqa: PLC0415
    from ui.dialogs import SignInDialog, run_modal  # noqa: PLC0415
    from ui.review import SessionBrowser  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Vigil")
    try:
        # A chair's file another Vigil records into opens read-only (no late entries), as the clinic record does.
        store = open_reader(args.db, prefer_writable=True)
    except (StoreError, OSError) as exc:
        return _fail("Vigil cannot open its database", str(exc))
    try:
        try:
            settings, profile = load_clinic_settings(), load_clinic_profile()
        except (SettingsError, ProfileError) as exc:
            return _fail("Vigil cannot load the clinic's settings", str(exc))
        if not isinstance(store, SessionStore) and not store.list_users():  # the clinic record makes no accounts
            return _fail("Vigil cannot sign anyone in", f"{store.path} holds no staff accounts yet: "
                         "sign in once at a chair that keeps its accounts there")
        context = UiContext(None, store, settings, profile)  # type: ignore[arg-type]  # no monitoring here
        run_modal(SignInDialog(context, why="Sign in to review recorded sessions."))
        if context.user is None:
            log.info("review: nobody signed in")
            return 1
        browser = SessionBrowser(context)
        browser.show()
        if args.session is not None and browser.open_session(args.session) is None:
            log.warning("review: session %s cannot be opened", args.session)
        return app.exec()
    finally:
        store.close()


def startup_questions(window) -> None:
    """After the first frame: create the first account if there is none, offer to resume a
    session a crash left open."""
    from ui.dialogs import ResumeDialog, SignInDialog, run_modal  # noqa: PLC0415

    context = window.context
    if not context.store.list_users():
        run_modal(SignInDialog(context, window))
    open_sessions = context.store.open_sessions()
    if not open_sessions or context.service.recorder is not None:
        return
    dialog = ResumeDialog(open_sessions, context.store, window)
    if not run_modal(dialog) or dialog.session_id is None:
        return
    if context.user is None:
        run_modal(SignInDialog(context, window))
        if context.user is None:
            return
    try:
        context.service.resume_session(dialog.session_id, context.user)
    except Exception as exc:  # the message goes to the nurse; the window keeps monitoring
        from monitor.staff import nurse_message  # noqa: PLC0415

        QMessageBox.warning(window, "Resume session", nurse_message(exc) if isinstance(exc, ValueError) else str(exc))
