"""The session panel: what the nurse needs to run the session from the chair.

Without a session: a large "Start session" button (sign-in first when nobody is signed in).
With one: patient, plan, phase, elapsed and remaining times, dose delivered and rate (IV) or the
nasal devices (esketamine), the NIBP count-down and the list of what is due, all computed by
``monitor`` at the device's time now, once a second and whenever the session changes; and the
controls for the dosing steps, manual NIBP, alarm limits, discharge and abort. Every action is
the session service's typed commands with the signed-in user; a refusal is shown in the panel's error label
(objectName ``error``) and emitted as ``refused(str)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QBoxLayout,
    QFrame,
    QGridLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from monitor.protocols import InfusionStatus
from monitor.schedule import DueStatus, due_items, next_nibp_due
from monitor.session import Phase, SessionState
from monitor.staff import Actor, clock
from monitor.errors import StoreError
from ui import theme
from ui.context import UiContext
from ui.layout import FitLabel, FlowGrid
from ui.dialogs import (
    AbortDialog,
    AlarmLimitsDialog,
    DischargeDialog,
    EndDosingDialog,
    ManualNibpDialog,
    PauseDialog,
    RateChangeDialog,
    StartSessionDialog,
    StopInfusionDialog,
    begin_dosing,
    device_now,
    minutes_text,
    require_user,
    run_modal,
    session_state,
)
from ui.dialogs.base import (
    ErrorLabel,
    apply_base_font,
    describe_error,
    dialog_style,
    heading,
    hint,
)

log = logging.getLogger(__name__)

__all__ = ["STATUS_COLOURS", "SessionPanel"]

#: Text colour of a due item by status (upcoming items are plain).
STATUS_COLOURS = {DueStatus.UPCOMING: theme.TEXT, DueStatus.DUE: "#ffd27a", DueStatus.OVERDUE: "#ff8a3d"}
_DUE_LINES = 5  # the due list shows the soonest few; the rest are counted
_WIDE_PX = 520  # from this panel width (at the 1366x768 scale), facts and controls sit side by side
def _panel_style() -> str:
    px = theme.px
    return dialog_style() + f"""
QFrame#sessionPanel {{ background: {theme.BACKGROUND}; border: 1px solid {theme.PANEL_EDGE}; border-radius: 4px; }}
QLabel#caption {{ color: {theme.TEXT_DIM}; }}
QLabel#nibpCountdown {{ border: 2px solid {theme.PANEL_EDGE}; border-radius: 6px; padding: {px(2)}px {px(10)}px; }}
QLabel#nibpCountdown[status="due"] {{ color: #000000; background: #ffd27a; border-color: #ffd27a; }}
QLabel#nibpCountdown[status="overdue"] {{ color: #000000; background: #ff8a3d; border-color: #ff8a3d; }}
QPushButton#startSession {{ min-height: {px(80)}px; }}
QFrame#sessionPanel QPushButton {{ padding: {px(4)}px {px(6)}px; }}
"""


def _status_text(status: InfusionStatus) -> str:
    return {InfusionStatus.NOT_STARTED: "not started", InfusionStatus.RUNNING: "running",
            InfusionStatus.PAUSED: "PAUSED", InfusionStatus.STOPPED: "stopped"}[status]


class SessionPanel(QFrame):
    """Start a session, or follow and drive the one being recorded (see the module docstring).

    Signals: ``refused(str)`` — monitor refused an action (the text is also in the error label);
    ``action_done(str)`` — an action was recorded (its name).
    """

    refused = Signal(str)
    action_done = Signal(str)

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.setObjectName("sessionPanel")
        self.setFont(theme.font(10.5))   # before the style sheet, or children keep the default font
        self.setStyleSheet(_panel_style())
        outer = QVBoxLayout(self)
        outer.setContentsMargins(theme.px(8), theme.px(4), theme.px(8), theme.px(4))
        self.stack = QStackedWidget()
        outer.addWidget(self.stack, stretch=1)
        self.error = ErrorLabel(11)
        outer.addWidget(self.error)

        # ---------------------------------------------------------------- idle page
        idle = QWidget()
        il = QVBoxLayout(idle)
        il.addStretch(1)
        il.addWidget(heading("No session is being recorded", 15))
        self.start_session_button = QPushButton("Start session")
        self.start_session_button.setObjectName("startSession")
        self.start_session_button.setFont(theme.font(18, bold=True))
        self.start_session_button.clicked.connect(self.start_session)
        il.addWidget(self.start_session_button)
        il.addWidget(hint("Enter the patient, the protocol and the dose (after signing in, if nobody is)."))
        il.addStretch(2)
        self.stack.addWidget(idle)

        # ---------------------------------------------------------------- session page
        page = QWidget()
        self.columns = QBoxLayout(QBoxLayout.Direction.TopToBottom, page)
        self.columns.setContentsMargins(0, 0, 0, 0)
        self.columns.setSpacing(theme.px(12))
        facts, actions = QWidget(), QWidget()
        pl = QVBoxLayout(facts)        # patient, plan, times, dose, NIBP count-down
        pl.setContentsMargins(0, 0, 0, 0)
        pl.setSpacing(4)
        al = QVBoxLayout(actions)      # what is due, and the controls
        al.setContentsMargins(0, 0, 0, 0)
        al.setSpacing(6)
        self.columns.addWidget(facts, stretch=0)
        self.columns.addWidget(actions, stretch=1)
        # One line each, in the longest form that fits (no wrapping: the panel's height is known).
        self.patient_label = FitLabel(theme.font(14, bold=True))
        self.patient_label.setObjectName("heading")
        pl.addWidget(self.patient_label)
        self.plan_label = FitLabel(theme.font(10.5))
        self.plan_label.setObjectName("hint")
        pl.addWidget(self.plan_label)
        self.phase_label = FitLabel(theme.font(12, bold=True))
        pl.addWidget(self.phase_label)
        grid = QGridLayout()
        grid.setHorizontalSpacing(theme.px(12))
        grid.setVerticalSpacing(0)
        self.values: dict[str, tuple[FitLabel, FitLabel]] = {}
        for i, key in enumerate(("since_start", "dosing", "remaining", "dose", "rate", "next_device")):
            caption, value = FitLabel(theme.font(9.5)), FitLabel(theme.font(12.5, bold=True))
            caption.setObjectName("caption")
            row, col = divmod(i, 2)
            grid.addWidget(caption, row * 2, col, Qt.AlignmentFlag.AlignBottom)
            grid.addWidget(value, row * 2 + 1, col, Qt.AlignmentFlag.AlignTop)
            self.values[key] = (caption, value)
        for col in range(2):
            grid.setColumnStretch(col, 1)
        pl.addLayout(grid)
        self.nibp_label = FitLabel(theme.font(14, bold=True))
        self.nibp_label.setObjectName("nibpCountdown")
        pl.addWidget(self.nibp_label)
        self.nibp_detail = hint("")      # shown as the count-down's tooltip: the panel must fit 768 px
        pl.addStretch(1)
        due_caption = QLabel("Due")
        due_caption.setObjectName("caption")
        al.addWidget(due_caption)
        self.due_label = QLabel("")
        self.due_label.setObjectName("dueList")
        self.due_label.setTextFormat(Qt.TextFormat.RichText)
        self.due_label.setWordWrap(True)
        self.due_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.due_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        due_area = QScrollArea()          # the list gives way first, so the controls always show
        due_area.setWidgetResizable(True)
        due_area.setFrameShape(QFrame.Shape.NoFrame)
        due_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        due_area.setMinimumHeight(theme.px(40))
        due_area.setWidget(self.due_label)
        al.addWidget(due_area, stretch=1)

        controls = FlowGrid(spacing=theme.px(6))   # as many columns as the longest text allows
        self.buttons: dict[str, QPushButton] = {}
        specs: list[tuple[str, str, Callable[[], None]]] = [
            ("start", "Start infusion", self.start_dosing),
            ("device", "Log device", self.log_device),
            ("pause", "Pause infusion", self.pause),
            ("resume", "Resume infusion", self.resume),
            ("rate", "Change rate…", self.change_rate),
            ("stop", "Stop infusion…", self.stop),
            ("end_dosing", "End dosing…", self.end_dosing),
            ("nibp", "Manual NIBP…", self.manual_nibp),
            ("limits", "Alarm limits…", self.alarm_limits),
            ("discharge", "Discharge…", self.discharge),
            ("abort", "Abort…", self.abort),
        ]
        for key, text, slot in specs:
            button = QPushButton(text)
            button.setFont(theme.font(10.5, bold=key in ("start", "device", "pause", "resume")))
            button.clicked.connect(slot)
            # a click or Tab reaches it, but it never takes the focus by itself: after a dialog closes
            # a stray Space or Enter must not pause the infusion or open the discharge
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
            button.setAutoDefault(False)
            button.hide()
            controls.addWidget(button)
            self.buttons[key] = button
        self.buttons["start"].setObjectName("primary")
        self.buttons["device"].setObjectName("primary")
        self.buttons["abort"].setObjectName("danger")
        self._controls = controls
        al.addLayout(controls)
        self.stack.addWidget(page)

        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(1000)
        service = context.service
        service.session_changed.connect(self.refresh)
        service.entries_recorded.connect(self._entries_recorded)
        context.user_changed.connect(self.refresh)
        self._layout_key: tuple[str, ...] = ()
        self.refresh()

    def resizeEvent(self, event) -> None:
        """Side by side when the slot is wide, stacked when it is narrow."""
        wide = self.width() >= theme.px(_WIDE_PX)
        direction = QBoxLayout.Direction.LeftToRight if wide else QBoxLayout.Direction.TopToBottom
        if self.columns.direction() != direction:
            self.columns.setDirection(direction)
            self.columns.setStretch(0, 1 if wide else 0)   # stacked: the due list takes the spare height
        super().resizeEvent(event)

    def showEvent(self, event) -> None:
        """Children built apart keep Qt's default font under a style sheet: give them ours."""
        apply_base_font(self)
        super().showEvent(event)

    # ------------------------------------------------------------------ display
    @property
    def state(self) -> SessionState | None:
        """The session being recorded, or None."""
        return session_state(self.context)

    def refresh(self, *_: object) -> None:
        """Redraw from the session at the device's time now."""
        state = self.state
        if state is None or state.phase.terminal:
            self.stack.setCurrentIndex(0)
            return
        self.stack.setCurrentIndex(1)
        try:
            self._show(state, device_now(self.context))
        except Exception:  # a display fault must not stop the panel refreshing
            log.exception("session panel refresh failed")

    def _set(self, key: str, caption: str, *forms: str) -> None:
        """One fact: its caption and its value in forms from the longest ("" caption: hidden)."""
        cap, val = self.values[key]
        cap.set_forms(caption)
        val.set_forms(*forms)
        cap.setVisible(bool(caption))
        val.setVisible(bool(caption))

    def _show(self, state: SessionState, now) -> None:
        p = state.patient
        if self.context.user is None:  # locked: the patient's details are not on screen
            self.patient_label.set_forms("Patient details hidden: screen locked", "Screen locked")
            self.plan_label.set_forms("")
        else:
            age = f", {state.age_years} y" if state.age_years is not None else ""
            mrn = f" · {p.mrn}" if p.mrn else ""
            self.patient_label.set_forms(f"{p.display_name}{age}{mrn}", f"{p.display_name}{age}", p.display_name)
            label = state.protocol.label
            label = f"{label[:1].upper()}{label[1:]}"
            stopped = state.infusion is not None and state.infusion.status_at(now) is InfusionStatus.STOPPED
            plan = (f"{state.plan.dose_mg:.1f} mg planned; infusion stopped" if stopped  # no rate after it stops
                    else state.plan.describe())
            self.plan_label.set_forms(f"{label}: {plan}", f"{label}: {state.plan.dose_mg:g} mg", label)
        since = (now - state.opened_at).total_seconds() / 60
        self._set("since_start", "Since start", minutes_text(since))
        visible: list[str] = []
        if state.infusion is not None:
            log_ = state.infusion
            status = log_.status_at(now)
            self.phase_label.set_forms(f"Phase: {state.phase.label} · infusion {_status_text(status)}",
                                       f"{state.phase.label.capitalize()} · infusion {_status_text(status)}")
            running_for = log_.minutes_since_start(now)
            if running_for is None:
                self._set("dosing", "Infusion", "not started")
            else:
                paused = log_.paused_min(now)
                extra = f" (paused {minutes_text(paused)})" if paused else ""
                self._set("dosing", "Since infusion start", minutes_text(running_for) + extra, minutes_text(running_for))
            remaining = log_.remaining_min(now)
            if status is InfusionStatus.STOPPED or remaining is None:
                self._set("remaining", "Infusion ended", clock(log_.ended_at) if log_.ended_at else "—")
            else:
                self._set("remaining", "Remaining", minutes_text(remaining)
                          + (" (when resumed)" if status is InfusionStatus.PAUSED else ""), minutes_text(remaining))
            self._set("dose", "Dose delivered", f"{log_.delivered_mg(now):.1f} / {state.plan.dose_mg:.1f} mg")
            # the planned dose is in (the "dose reached" alarm sounds while it runs on): alarm colour
            over = log_.dose_complete(now)
            self.values["dose"][1].setStyleSheet(
                f"color: {theme.PRIORITY_COLOURS['MEDIUM']}; font-weight: bold;" if over else "")
            self._set("rate", *(("", "") if status is InfusionStatus.STOPPED else ("Rate", f"{log_.rate_at(now):.1f} mg/h")))
            self._set("next_device", "", "")
            if status is InfusionStatus.NOT_STARTED:
                visible = ["start"]
            elif status is InfusionStatus.RUNNING:
                visible = ["pause", "rate", "stop"]
            elif status is InfusionStatus.PAUSED:
                visible = ["resume", "rate", "stop"]
        else:
            d = state.devices
            self.phase_label.set_forms(f"Phase: {state.phase.label}", state.phase.label.capitalize())
            since_first = d.minutes_since_first(now)
            self._set("dosing", "Since first device", "no device yet" if since_first is None else minutes_text(since_first))
            end = d.monitoring_end_earliest
            if end is None:
                self._set("remaining", "Monitoring", f"{d.plan.monitoring_min} min from the first device",
                          f"{d.plan.monitoring_min} min from device 1", f"{d.plan.monitoring_min} min")
            else:
                left = (end - now).total_seconds() / 60
                self._set("remaining", "Monitoring until", f"{clock(end)} ({minutes_text(left)} left)", clock(end))
            self._set("dose", "Devices", f"{d.devices_logged} of {d.plan.devices} logged ({state.plan.dose_mg} mg)",
                      f"{d.devices_logged} of {d.plan.devices} logged")
            self.values["dose"][1].setStyleSheet("")
            self._set("rate", "", "")
            allowed = d.next_device_allowed_at
            if allowed is not None:
                wait = (allowed - now).total_seconds() / 60
                self._set("next_device", "Next device", f"from {clock(allowed)}"
                          + (f" (in {minutes_text(wait)})" if allowed > now else " (now)"), f"from {clock(allowed)}")
            else:
                self._set("next_device", "", "")
            if state.phase in (Phase.BASELINE, Phase.INFUSION) and not d.complete:
                self.buttons["device"].setText(f"Log device {d.devices_logged + 1}")
                self.buttons["device"].setToolTip(f"Log nasal device {d.devices_logged + 1} of {d.plan.devices} now")
                visible = ["device"] + (["end_dosing"] if state.phase is Phase.INFUSION else [])
        self._arrange(visible + ["nibp", "limits", "discharge", "abort"])
        self._show_nibp(state, now)
        self._show_due(state, now)

    def _arrange(self, keys: list[str]) -> None:
        """Show the buttons of ``keys`` (in the panel's order), hide the others; the grid wraps them."""
        if tuple(keys) == self._layout_key:
            return
        self._layout_key = tuple(keys)
        for key, button in self.buttons.items():
            button.setVisible(key in keys)

    def _show_nibp(self, state: SessionState, now) -> None:
        item = next_nibp_due(state, now)
        if item is None:
            text, status, detail = "No NIBP scheduled", "", ""
        else:
            minutes = item.minutes_until(now)
            if item.status is DueStatus.UPCOMING:
                text, status = f"Next NIBP in {minutes_text(minutes)}", "upcoming"
            elif item.status is DueStatus.DUE:
                text, status = "NIBP due", "due"
            else:
                text, status = f"NIBP overdue {int(-minutes)} min", "overdue"
            detail = item.label
        self.nibp_label.set_forms(text)
        if self.nibp_label.property("status") != status:
            self.nibp_label.setProperty("status", status)
            self.nibp_label.style().unpolish(self.nibp_label)
            self.nibp_label.style().polish(self.nibp_label)
        self.nibp_detail.setText(detail)
        self.nibp_label.setToolTip(detail)

    def _show_due(self, state: SessionState, now) -> None:
        lines = []
        for item in due_items(state, now):
            if item.kind == "nibp":
                continue
            minutes = item.minutes_until(now)
            if item.status is DueStatus.UPCOMING:
                when = f"at {clock(item.due_at)} (in {minutes_text(minutes)})"
            elif item.status is DueStatus.DUE:
                when = "due now"
            else:
                when = f"overdue {int(-minutes)} min"
            colour = STATUS_COLOURS[item.status]
            weight = "bold" if item.status is not DueStatus.UPCOMING else "normal"
            lines.append(f"<div style='color:{colour}; font-weight:{weight}; margin-bottom:3px'>"
                         f"• {_escape(item.label)} — {when}</div>")
        shown = lines[:_DUE_LINES]
        if len(lines) > len(shown):
            shown.append(f"<div style='color:{theme.TEXT_DIM}'>… and {len(lines) - len(shown)} more</div>")
        self.due_label.setText("".join(shown) or f"<span style='color:{theme.TEXT_DIM}'>Nothing due.</span>")

    def _entries_recorded(self, *_: object) -> None:
        """Something was recorded (a BP, a decision…): a refusal shown for an earlier attempt may no
        longer hold, so it goes (the window's message log keeps it); the panel is redrawn."""
        self.error.setText("")
        self.refresh()

    # ------------------------------------------------------------------ actions
    def _show_refusal(self, exc: BaseException) -> None:
        message = describe_error(exc)
        self.error.setText(message)
        self.refused.emit(message)

    def _guard(self, work: Callable[[], object], name: str) -> bool:
        """Run ``work``; show a refusal; refresh either way."""
        self.error.setText("")
        try:
            work()
        except (ValueError, LookupError, StoreError) as exc:
            self._show_refusal(exc)
            return False
        except Exception as exc:  # shown, never swallowed
            log.exception("session panel action %s failed", name)
            self.error.setText(f"Not done: {type(exc).__name__}: {exc}")
            self.refused.emit(self.error.text())
            return False
        finally:
            self.refresh()
        return True

    def _user(self, why: str):
        return require_user(self.context, self, why)

    def _command(self, name: str, command: Callable[[Actor], object]) -> None:
        """Run a one-tap command as the signed-in user (``name`` says what was done)."""
        def work() -> None:
            user = self._user("Sign in to record this.")
            if user is None:
                return
            command(user)
            self.action_done.emit(name)
        self._guard(work, name)

    def _dialog(self, factory: Callable[[], object], name: str) -> None:
        def work() -> None:
            if self._user("Sign in to record this.") is None:
                return
            dialog = factory()
            if run_modal(dialog):
                self.action_done.emit(name)
        self._guard(work, name)

    def start_session(self) -> None:
        """Sign in if needed, then the start dialog."""
        def work() -> None:
            if self._user("Sign in to start a session.") is None:
                return
            dialog = StartSessionDialog(self.context, self)
            if run_modal(dialog):
                self.action_done.emit("start_session")
                if dialog.warnings:
                    self.error.setText("; ".join(dialog.warnings))
        self._guard(work, "start_session")

    def start_dosing(self) -> None:
        """Start the IV infusion (pre-dose BP advisory decision first when monitor asks for one)."""
        def work() -> None:
            if self._user("Sign in to start the infusion.") is None:
                return
            if begin_dosing(self.context, self) is not None:
                self.action_done.emit("start_dosing")
        self._guard(work, "start_dosing")

    def log_device(self) -> None:
        """Log the next nasal device (the first goes through the pre-dose check)."""
        state = self.state
        if state is not None and state.devices is not None and state.devices.devices_logged == 0:
            self.start_dosing()
        else:
            self._command("log_nasal_device", self.context.service.log_nasal_device)

    def pause(self) -> None:
        """Pause (reason required)."""
        self._dialog(lambda: PauseDialog(self.context, self), "pause_infusion")

    def resume(self) -> None:
        """Resume the paused infusion."""
        self._command("resume_infusion", self.context.service.resume_infusion)

    def change_rate(self) -> None:
        """New rate and reason."""
        self._dialog(lambda: RateChangeDialog(self.context, self), "change_rate")

    def stop(self) -> None:
        """Stop the infusion."""
        self._dialog(lambda: StopInfusionDialog(self.context, self), "stop_infusion")

    def end_dosing(self) -> None:
        """End esketamine dosing early."""
        self._dialog(lambda: EndDosingDialog(self.context, self), "end_dosing")

    def manual_nibp(self) -> None:
        """A BP measured by hand."""
        self._dialog(lambda: ManualNibpDialog(self.context, self), "record_nibp")

    def alarm_limits(self) -> None:
        """This session's alarm limits."""
        self._dialog(lambda: AlarmLimitsDialog(self.context, self), "alarm_limits")

    def discharge(self) -> None:
        """The discharge check and closing signature."""
        self._dialog(lambda: DischargeDialog(self.context, self), "close")

    def abort(self) -> None:
        """End the session without discharge."""
        self._dialog(lambda: AbortDialog(self.context, self), "abort")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
