"""Vigil entry point: ``python main.py ...`` and the ``vigil`` console script do the same.

Thin on purpose: the command line lives in ``monitor.cli``; the window in ``ui.app``. The
window is handed to the command line here, so that ``monitor/`` never imports ``ui/``.
"""

from __future__ import annotations

import sys


def _run_window(args: object) -> int:
    from ui.app import run_board, run_review, run_window

    command = getattr(args, "command", None)
    return run_review(args) if command == "review" else run_board(args) if command == "board" else run_window(args)


def main(argv: list[str] | None = None) -> int:
    """Run the Vigil command line; ``vigil`` alone (or ``vigil run``) opens the window."""
    from monitor.cli import run_cli

    return run_cli(sys.argv[1:] if argv is None else argv, window=_run_window)


if __name__ == "__main__":
    sys.exit(main())
