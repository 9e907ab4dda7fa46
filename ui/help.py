"""The help window (the ``?`` button): every alarm in force with what starts it, its priority and
its delay (from the session's alarm profile, so the clinic's limits are the ones shown), then the
delays, what acknowledge and audio pause do, the keys and the screen (the trend legend).

The text is packaged with Vigil (``resources/help.md``: one tab per ``## `` section); the alarm
table is made from the profile. Nothing is read from ``docs/`` at run time.
"""

from __future__ import annotations

from importlib import resources

from PySide6.QtWidgets import QTabWidget, QTextBrowser, QWidget

from monitor.alarms.profile import AlarmProfile
from monitor.display import alarm_table
from ui import theme
from ui.dialogs.base import FormDialog
from ui.trends import legend_forms

__all__ = ["HelpDialog", "help_sections"]


def help_sections() -> dict[str, str]:
    """The packaged help text: section title → its Markdown."""
    text = resources.files("resources").joinpath("help.md").read_text("utf-8")
    sections: dict[str, str] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            sections[title] = ""
        elif title is not None:
            sections[title] += line + "\n"
    return sections


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alarms_html(profile: AlarmProfile) -> str:
    """The alarm table of ``profile`` as HTML, priorities in their IEC colours."""
    rows = []
    for name, when, priority, delay in alarm_table(profile):
        colour = theme.PRIORITY_COLOURS.get(priority.split()[0], theme.TEXT)
        rows.append(f"<tr><td><b>{_escape(name)}</b></td><td>{_escape(when)}</td>"
                    f"<td style='color:{colour}'><b>{_escape(priority)}</b></td><td>{_escape(delay)}</td></tr>")
    return ("<p>The alarms in force for this session (the clinic's limits, and this session's changes). "
            "HIGH flashes red, MEDIUM yellow, LOW is cyan.</p>"
            "<table cellspacing='0' cellpadding='5' border='1' style='border-color:#3a4650'>"
            "<tr><th align='left'>Alarm</th><th align='left'>Starts when</th><th align='left'>Priority</th>"
            "<th align='left'>Condition delay</th></tr>" + "".join(rows) + "</table>")


class HelpDialog(FormDialog):
    """Tabs: *Alarms* (the profile's table), then one per section of the packaged help text; the
    *The screen* tab starts with the trend legend as the trends draw it."""

    def __init__(self, profile: AlarmProfile, parent: QWidget | None = None) -> None:
        super().__init__("Help", parent, ok_text="Close")
        self.cancel_button.hide()
        self.tabs = QTabWidget()
        self.pages: dict[str, QTextBrowser] = {}
        self._page("Alarms", html=alarms_html(profile))
        for title, markdown in help_sections().items():
            legend = f"<p>{legend_forms()[0]}</p>" if title == "The screen" else ""
            self._page(title, markdown=markdown, html_before=legend)
        self.body.addWidget(self.tabs, stretch=1)
        self.resize(theme.px(1000), theme.px(560))

    def _page(self, title: str, *, html: str = "", markdown: str = "", html_before: str = "") -> None:
        page = QTextBrowser()
        page.setOpenExternalLinks(False)
        page.setFont(theme.font(11))
        if markdown:
            page.setMarkdown(markdown)
            if html_before:
                page.setHtml(html_before + page.toHtml())
        else:
            page.setHtml(html)
        self.tabs.addTab(page, title)
        self.pages[title] = page
