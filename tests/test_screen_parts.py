"""The parts the adaptive screen is made of (issue 12): alarm texts in forms that fit, the device's
parameters learnt from what arrives, display names, the help's alarm table, labels that pick the
longest form that fits, button grids that wrap, and the theme's menus and tables."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QMenu, QPushButton, QTableWidget, QTableWidgetItem, QWidget

from monitor.alarms.profile import default_profile
from monitor.display import (
    ACTION_NAMES,
    ParameterPresence,
    alarm_table,
    alarm_texts,
    display_name,
)
from ui import theme
from ui.layout import FitLabel, FlowGrid, text_width

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support (propagateSizeHints|raise|grabbing)")


def alarm(condition: str, label: str, value: float | None, limit: float | None, kind: str = "physiological"):
    return SimpleNamespace(condition=condition, label=label, kind=kind, value=value, limit=limit)


# ------------------------------------------------------------------------------ alarm texts
def test_an_alarm_reads_in_full_then_short_with_the_value_and_limit_whole():
    profile = default_profile()
    assert alarm_texts(alarm("nibp_high", "Blood pressure high", 186, 180), profile) == (
        "Blood pressure high 186 mmHg (limit 180)", "NBP Sys 186 ≥ 180")
    assert alarm_texts(alarm("nibp_high", "Blood pressure high", 114, 110), profile)[-1] == "NBP Dia 114 ≥ 110"
    assert alarm_texts(alarm("spo2_low", "SpO2 low", 85, 88), profile)[-1] == "SpO2 85 < 88"
    assert alarm_texts(alarm("hr_high", "Heart rate high", 156, 150), profile)[-1] == "HR 156 > 150"
    assert alarm_texts(alarm("no_breath", "No breath", 0, 30), profile) == ("No breath ≥ 30 s",)
    technical = alarm("audio_unavailable", "Alarm audio unavailable: no sound device", None, None, "technical")
    assert alarm_texts(technical, profile) == ("Alarm audio unavailable: no sound device", "Alarm audio unavailable")


# ------------------------------------------------------------------------------ the device's parameters
def test_parameters_the_device_never_sent_collapse_after_the_grace_period_and_sent_ones_stay():
    presence = ParameterPresence(grace_s=20)
    assert presence.provided("ecg", 0.0)                    # nothing heard yet: nothing collapses
    presence.arrived({"spo2", "pr", "pi"}, 100.0)           # a pulse oximeter starts sending
    assert presence.shown(("hr", "spo2", "pr", "etco2"), 110.0) == ("hr", "spo2", "pr", "etco2")  # grace
    assert presence.shown(("hr", "spo2", "pr", "etco2"), 120.0) == ("spo2", "pr")
    presence.arrived({"rr"}, 500.0)                         # arrives late: shown from then on
    assert presence.provided("rr", 500.0) and not presence.provided("etco2", 500.0)
    assert presence.provided("spo2", 10_000.0)              # stops arriving: keeps its place (dashes, alarm)
    presence.reset()                                        # another device
    assert presence.provided("etco2", 10_000.0)
    with pytest.raises(ValueError, match="grace_s"):
        ParameterPresence(grace_s=-1)


# ------------------------------------------------------------------------------ names
def test_internal_keys_read_as_words():
    assert display_name("nibp_dia") == "Diastolic BP"
    assert display_name("maois") == "MAO inhibitors (MAOIs)"
    assert display_name("close", ACTION_NAMES) == "Session closed (discharged)"
    assert display_name("pause_infusion") == "Infusion paused"
    assert display_name("some_new_thing") == "Some new thing"


def test_the_help_table_lists_every_alarm_with_the_limits_in_force():
    profile = default_profile()
    rows = alarm_table(profile)
    labels = {row[0] for row in rows}
    for rule in profile.rules:
        if hasattr(rule, "label"):
            assert rule.label in labels
    assert ("SpO2 low", "SpO2 ≤ 91 %", "MEDIUM", "15 s") in rows
    assert any(row[0] == "SpO2 lost" and row[3] == "30 s" for row in rows)
    adjusted = profile.adjusted({"spo2_low.MEDIUM": 90})
    assert ("SpO2 low", "SpO2 ≤ 90 %", "MEDIUM", "15 s") in alarm_table(adjusted)


# ------------------------------------------------------------------------------ layout
def test_a_fit_label_shows_the_longest_form_that_fits_and_never_cuts(qtbot):
    label = FitLabel(theme.font(20, bold=True))
    qtbot.addWidget(label)
    label.set_forms("HIGH  Blood pressure high 186 mmHg (limit 180)", "HIGH  NBP Sys 186 ≥ 180")
    label.show()
    label.resize(2000, 60)
    assert label.text() == "HIGH  Blood pressure high 186 mmHg (limit 180)" and label.toolTip() == ""
    short = text_width("HIGH  NBP Sys 186 ≥ 180", label.base_font)
    label.resize(int(short) + 10, 60)
    assert label.text() == "HIGH  NBP Sys 186 ≥ 180"
    assert label.toolTip() == label.full_text == "HIGH  Blood pressure high 186 mmHg (limit 180)"
    label.resize(int(short * 0.8), 60)                       # not even the short one: a smaller font
    assert label.text() == "HIGH  NBP Sys 186 ≥ 180" and label.font().pointSizeF() < label.base_font.pointSizeF()
    assert text_width(label.text(), label.font()) <= label.contentsRect().width()


def test_a_fit_label_says_how_many_lines_it_cannot_show(qtbot):
    label = FitLabel(theme.font(10))
    qtbot.addWidget(label)
    label.set_lines([("alarm one",), ("alarm two",), ("alarm three",), ("alarm four",)])
    label.show()
    line = label.fontMetrics().lineSpacing()
    label.resize(400, int(line * 2.5))
    assert label.text() == "alarm one\n… 3 more"
    label.resize(400, line * 5)
    assert label.text().splitlines() == ["alarm one", "alarm two", "alarm three", "alarm four"]


@pytest.mark.parametrize("uniform", [True, False])
def test_buttons_wrap_onto_more_rows_instead_of_being_cut(qtbot, uniform):
    host = QWidget()
    qtbot.addWidget(host)
    grid = FlowGrid(host, spacing=6, uniform=uniform)
    buttons = [QPushButton(text) for text in ("Pause infusion", "Change rate…", "Stop infusion…", "Abort…")]
    for button in buttons:
        grid.addWidget(button)
    widest = max(b.sizeHint().width() for b in buttons)
    row = sum(b.sizeHint().width() for b in buttons) + 18 if not uniform else 4 * widest + 18
    assert grid.rows_for(row) == 1 and grid.rows_for(widest * 2 + 6) == 2 and grid.rows_for(widest) == 4
    height = buttons[0].sizeHint().height()
    assert grid.heightForWidth(widest) == 4 * height + 3 * 6
    host.resize(widest * 2 + 6, 400)
    host.show()
    qtbot.waitExposed(host)
    for button in buttons:
        assert button.width() >= button.sizeHint().width() and host.rect().contains(button.geometry())
    buttons[3].hide()                                         # hidden buttons take no cell
    assert grid.rows_for(widest * 2 + 6) == 2 and grid.rows_for(widest) == 3


# ------------------------------------------------------------------------------ theme
def _brightest(image, rect) -> int:
    return max(QColor(image.pixel(x, y)).lightness() for x in range(rect.left(), rect.right())
               for y in range(rect.top(), rect.bottom()))


def test_menus_show_the_hovered_item_and_disabled_items_look_disabled(qtbot):
    host = QWidget()
    host.setStyleSheet(theme.STYLE)
    qtbot.addWidget(host)
    menu = QMenu(host)
    menu.setFont(theme.font(12))
    enabled = menu.addAction("PDF report…")
    disabled = menu.addAction("REMS form…")
    disabled.setEnabled(False)
    menu.popup(host.mapToGlobal(host.rect().center()))
    qtbot.waitExposed(menu)
    menu.setActiveAction(enabled)
    image = menu.grab().toImage()
    hovered = menu.actionGeometry(enabled)
    assert QColor(image.pixel(hovered.left() + 4, hovered.center().y())) == QColor(theme.HIGHLIGHT)
    menu.setActiveAction(None)
    image = menu.grab().toImage()
    assert _brightest(image, menu.actionGeometry(disabled)) < _brightest(image, menu.actionGeometry(enabled)) - 60
    menu.hide()


def test_table_rows_read_light_on_dark_and_alternate_rows_stay_dark(qtbot):
    table = QTableWidget(4, 1)
    table.setStyleSheet(theme.STYLE)
    table.setAlternatingRowColors(True)
    qtbot.addWidget(table)
    for row in range(4):
        table.setItem(row, 0, QTableWidgetItem(""))
    table.resize(300, 200)
    table.show()
    qtbot.waitExposed(table)
    image = table.viewport().grab().toImage()
    for row in (0, 1):   # a plain row and an alternate row
        rect = table.visualRect(table.model().index(row, 0))
        background = QColor(image.pixel(rect.center()))
        assert background.lightness() < 60, (row, background.name())
    assert QColor(theme.TEXT).lightness() > 200


# ------------------------------------------------------------------------------ trends
@pytest.mark.parametrize("recovery_for_min", [0.1, 3.0, 30.0])
def test_a_phase_is_named_whole_or_not_at_all(qtbot, recovery_for_min):
    from datetime import datetime, timedelta, timezone  # noqa: PLC0415

    from ui.trends import SessionTrends  # noqa: PLC0415

    trends = SessionTrends()
    trends.resize(700, 300)
    qtbot.addWidget(trends)
    trends.show()
    qtbot.waitExposed(trends)
    start = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    infusion, stopped = start + timedelta(minutes=5), start + timedelta(minutes=45)
    now = stopped + timedelta(minutes=recovery_for_min)
    trends.set_phases([(start, infusion, "baseline"), (infusion, stopped, "infusion"), (stopped, None, "recovery")])
    trends.set_origin(infusion)
    trends.refresh(now)
    trends.refresh(now)   # the second pass sees the view's new range
    view = trends.lane.getViewBox()
    shown = view.sceneBoundingRect()
    named = []
    for label in trends._phase_labels:
        if label.isVisible():
            assert shown.contains(label.sceneBoundingRect()), label.toPlainText()
            named.append(label.toPlainText())
    assert "infusion" in named and ("recovery" in named) == (recovery_for_min >= 3.0)
    assert trends.legend.full_text.startswith("<b>Session trends</b>")


def test_dialogs_have_a_visible_frame(qtbot):
    from ui.dialogs import FormDialog  # noqa: PLC0415

    dialog = FormDialog("Manual blood pressure")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    image = dialog.grab().toImage()
    edge = QColor(theme.DIALOG_EDGE)
    assert QColor(image.pixel(0, dialog.height() // 2)) == edge and QColor(image.pixel(dialog.width() // 2, 0)) == edge
    inside = QColor(image.pixel(dialog.width() // 2, dialog.height() - 4))
    assert inside != QColor(theme.BACKGROUND)   # not black on black: the dialog stands out of the window


def test_a_message_too_long_for_its_line_gives_way_in_the_middle_never_at_its_end(qtbot):
    """Found on a fresh clone: the message line read "…in normal tone 19:17:4" — the time cut."""
    from ui.layout import FitLabel  # noqa: PLC0415

    label = FitLabel(theme.font(10), min_ratio=0.85)
    qtbot.addWidget(label)
    label.resize(220, 30)
    label.show()
    text = "Charted MOAA/S 5 (responds readily to name spoken in normal tone) at 19:17:42 (Ann Lee)"
    label.set_forms(text, "MOAA/S 5 (responds readily to name spoken in normal tone) 19:17:42")
    shown = label.text()
    assert shown.endswith("19:17:42") and "…" in shown
    assert label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width()
    assert label.toolTip() == text


def test_the_message_log_never_runs_past_the_screen(qtbot):
    """Found on a fresh clone: a long note's line in *Log* ran off the screen's edge."""
    from ui.status_line import StatusLine  # noqa: PLC0415

    line = StatusLine()
    qtbot.addWidget(line)
    line.show()
    note = "Recorded note: " + "the patient asked for the lights dimmed and music; " * 12 + "at 10:02:03 (Ann Lee)"
    line.show_message(note)
    line._fill_log()
    [action] = line.log_menu.actions()
    width = line.screen().availableGeometry().width()
    assert line.log_menu.fontMetrics().horizontalAdvance(action.text()) < width * 0.9
    assert action.text().endswith("(Ann Lee)") and action.toolTip() == note
