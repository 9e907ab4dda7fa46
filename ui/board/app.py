"""``vigil board``: sign in with a staff account of the local database, then the board window on
the clinic's broker."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from PySide6.QtWidgets import QApplication

log = logging.getLogger("vigil")


def run_board(args: argparse.Namespace, fail: Callable[[str, str], int]) -> int:
    """Open the board (see the module docstring); ``fail(title, text)`` reports a start-up problem."""
    from monitor.alarms.profile import ProfileError  # noqa: PLC0415
    from monitor.board.model import BoardModel  # noqa: PLC0415
    from monitor.board.setup import BoardSetupError, board_options  # noqa: PLC0415
    from monitor.board.subscriber import BoardClient  # noqa: PLC0415
    from monitor.app.chair import ChairSetupError, Desk  # noqa: PLC0415
    from monitor.config import load_clinic_profile, load_clinic_settings  # noqa: PLC0415
    from monitor.settings import SettingsError  # noqa: PLC0415
    from ui.board.window import BoardWindow  # noqa: PLC0415
    from ui.context import UiContext  # noqa: PLC0415
    from ui.app import collect_on_gui_thread  # noqa: PLC0415
    from ui.dialogs import SignInDialog, run_modal  # noqa: PLC0415

    app = QApplication.instance() or QApplication(sys.argv[:1])
    collect_on_gui_thread()
    app.setApplicationName("Vigil clinic board")
    try:
        settings, profile = load_clinic_settings(), load_clinic_profile()
        options, clinic = board_options(args, settings)
    except (SettingsError, ProfileError, BoardSetupError) as exc:
        return fail("Vigil cannot start the clinic board", str(exc))
    try:  # a chair may record into this database: its accounts can still sign in here (read-only)
        desk = Desk(args.db)
    except ChairSetupError as exc:
        return fail("Vigil cannot open the staff accounts", str(exc))
    try:
        context = UiContext(None, desk.records, desk.clinic, settings, profile)  # no monitoring here
        run_modal(SignInDialog(context, why="Sign in to watch the clinic's chairs."))
        if context.user is None:
            log.info("board: nobody signed in")
            return 1
        client = BoardClient(options, clinic, on_message=lambda *_: None, name=f"board-{context.user.username}")
        window = BoardWindow(BoardModel(clinic), client, allow_acknowledge=settings.board.allow_acknowledge,
                             user=context.user)
        window.resize(1366, 768)
        window.showFullScreen() if getattr(args, "full_screen", False) else window.show()
        client.start()
        log.info("board ready: clinic %s on %s", clinic, options.address.url)
        return app.exec()
    finally:
        desk.close()
