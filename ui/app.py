"""Start the Vigil window: store, clinic settings, device, recording service, window; then the
start-up questions (first account, resuming a session a crash left open)."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from pyqtgraph.util.garbage_collector import GarbageCollector

log = logging.getLogger("vigil")


def _fail(title: str, text: str) -> int:
    log.error("%s: %s", title, text)
    QMessageBox.critical(None, title, text)
    return 1


#: The collector that runs Python's cyclic garbage collection on the window's thread (see below).
_collector: GarbageCollector | None = None


def collect_on_gui_thread() -> None:
    """Run Python's cyclic garbage collection only on the window's thread, from a timer
    (pyqtgraph's :class:`GarbageCollector`: automatic collection off, the same thresholds checked
    every second). Left automatic, a collection runs on whichever thread allocates: the pipeline's,
    the writer's, the device's; a Qt object whose last reference was in a cycle was then destroyed
    off its own thread while the window's event loop ran, and the process died (SIGSEGV or SIGBUS,
    about one run in five of the session panel's tests with the simulator at 150×)."""
    global _collector
    if _collector is None:
        _collector = GarbageCollector(interval=1.0)


def settle_heap() -> None:
    """Once the window is up: what Vigil built to start (modules, widgets, the pipeline) lives as
    long as the program, so the cyclic collector stops scanning it (:func:`gc.freeze`, after one
    collection). A full collection, which the thousands of objects of a review window set off, scanned
    the whole heap on the window's thread: 86 ms of still frames while the review opened."""
    gc.collect()
    gc.freeze()


def run_window(args: argparse.Namespace) -> int:
    """Open the monitoring window on ``args.device`` with the database ``args.db``."""
    from drivers.transport import DeviceUrlError  # noqa: PLC0415
    from monitor.app.chair import Chair, ChairSetupError  # noqa: PLC0415
    from monitor.qt.service import QtSessionService  # noqa: PLC0415
    from ui.context import UiContext  # noqa: PLC0415
    from ui.main_window import MainWindow, show_at_start  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Vigil")
    collect_on_gui_thread()
    try:
        chair = Chair(args.device, args.db, board_args=args, service_factory=QtSessionService)
    except ChairSetupError as exc:
        return _fail("Vigil cannot start", str(exc))
    except DeviceUrlError as exc:
        return _fail("Vigil cannot use this device", str(exc))
    service = chair.service
    context = UiContext(service, chair.records, chair.clinic, chair.settings, chair.profile)
    window = MainWindow(context)
    window.first_painted.connect(lambda: log.info("window ready: %s", service.device_label))
    window.first_painted.connect(lambda: QTimer.singleShot(0, lambda: startup_questions(window)))
    window.first_painted.connect(settle_heap)
    show_at_start(window, full_screen=getattr(args, "full_screen", False))
    chair.start()
    try:
        status = app.exec()
    finally:
        chair.close()
    return status


def run_review(args: argparse.Namespace) -> int:
    """``vigil review``: the session browser with no monitoring (a prescriber's or charge nurse's
    desk), on the database ``args.db`` — a chair's file, or the clinic record (``postgresql://…``:
    every chair's sessions, read-only, signed in with the clinic's staff accounts) — after staff
    sign-in; ``args.session`` opens one at once."""
    from monitor.app.chair import ChairSetupError, Desk  # noqa: PLC0415
    from ui.context import UiContext  # noqa: PLC0415
    from ui.dialogs import SignInDialog, run_modal  # noqa: PLC0415
    from ui.review import SessionBrowser  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Vigil")
    collect_on_gui_thread()
    try:
        desk = Desk(args.db)
    except ChairSetupError as exc:
        return _fail("Vigil cannot start", str(exc))
    try:
        context = UiContext(None, desk.records, desk.clinic, desk.settings, desk.profile)  # no monitoring here
        run_modal(SignInDialog(context, why="Sign in to review recorded sessions."))
        if context.user is None:
            log.info("review: nobody signed in")
            return 1
        browser = SessionBrowser(context)
        browser.show()
        settle_heap()
        if args.session is not None and browser.open_session(args.session) is None:
            log.warning("review: session %s cannot be opened", args.session)
        return app.exec()
    finally:
        desk.close()


def run_board(args: argparse.Namespace) -> int:
    """``vigil board``: the clinic board window on the broker ``args.broker``, after sign-in with a
    staff account of the local database ``args.db``."""
    from ui.board.app import run_board as run  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(args, _fail)


def startup_questions(window) -> None:
    """After the first frame: create the first account if there is none, offer to resume a
    session a crash left open."""
    from ui.dialogs import ResumeDialog, SignInDialog, run_modal  # noqa: PLC0415

    context = window.context
    if not context.clinic.has_users():
        run_modal(SignInDialog(context, window))
    open_sessions = context.records.open_sessions()
    if not open_sessions or context.service.recording:
        return
    dialog = ResumeDialog(open_sessions, context.records, window)
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
