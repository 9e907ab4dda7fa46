"""Session review: find a recorded session (:class:`SessionBrowser`) and review it after the fact
(:class:`ReviewWindow`): trends and waveforms at any zoom, a cursor read-out, the record in a table
in step with the plots, a summary, late entries on closed sessions, and exports."""

from ui.review.browser import SessionBrowser, SessionListModel
from ui.review.dialogs import LateEntryDialog
from ui.review.plots import ReviewPlots, WaveRequest
from ui.review.window import ReviewWindow, live_session_id

__all__ = ["SessionBrowser", "SessionListModel", "ReviewWindow", "ReviewPlots", "WaveRequest", "LateEntryDialog",
           "live_session_id"]
