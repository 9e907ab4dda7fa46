"""A small paginating document for QtGui's PDF writer: measure, lay out into pages, then paint.

Content is added top to bottom (headings, paragraphs, key–value grids, tables with wrapped cells
and a header row repeated on every page, and fixed-height drawings such as charts). Layout only
measures and records drawing operations per page; :meth:`Document.save` then paints every page
with its running header and a footer "Page i of N", so page numbers are known when painting.

Works headless (``QT_QPA_PLATFORM=offscreen``): a ``QGuiApplication`` is created if none exists.
Must run on the thread that owns the Qt application (the main thread).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from PySide6.QtCore import QCoreApplication, QMarginsF, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QGuiApplication, QPageLayout, QPageSize, QPainter, QPdfWriter, QPen

from monitor.export.errors import ExportError

__all__ = ["Document", "Column", "ensure_gui_app", "FONT_FAMILY", "PAGE_SIZES"]

FONT_FAMILY = "DejaVu Sans"
DPI = 300
PAGE_SIZES = {"A4": QPageSize.PageSizeId.A4, "Letter": QPageSize.PageSizeId.Letter}
Op = Callable[[QPainter], None]


def ensure_gui_app() -> None:
    """Make sure a QGuiApplication exists (fonts and painting need one); create one if not."""
    app = QCoreApplication.instance()
    if app is None:
        QGuiApplication(sys.argv[:1] or ["vigil"])
    elif not isinstance(app, QGuiApplication):
        raise ExportError("PDF export needs a QGuiApplication, but a non-GUI QCoreApplication is running")


@dataclass(frozen=True)
class Column:
    """A table column: title, share of the table width, alignment ("l", "r", "c")."""

    title: str
    width: float
    align: str = "l"


class Document:
    """A paginated document (see the module docstring). ``header``: text at the top of every page
    (left) and ``header_right``; ``footer``: text at the bottom left of every page."""

    def __init__(self, path: Path, paper: str, *, title: str, header: str, header_right: str, footer: str,
                 date_year: int | None = None) -> None:
        ensure_gui_app()
        self.date_year = date_year
        self.path = path
        self.writer = QPdfWriter(str(path))
        self.writer.setResolution(DPI)
        self.writer.setPageSize(QPageSize(PAGE_SIZES[paper]))
        self.writer.setPageOrientation(QPageLayout.Orientation.Portrait)
        self.writer.setPageMargins(QMarginsF(0, 0, 0, 0))
        self.writer.setTitle(title)
        self.writer.setCreator("Vigil")
        rect = self.writer.pageLayout().fullRectPixels(DPI)
        self.W, self.H = float(rect.width()), float(rect.height())
        self.margin = self.mm(14)
        self.left = self.margin
        self.width = self.W - 2 * self.margin
        self.top = self.margin + self.mm(9)
        self.bottom = self.H - self.margin - self.mm(7)
        self.header, self.header_right, self.footer = header, header_right, footer
        self.pages: list[list[Op]] = [[]]
        self.y = self.top
        self.fonts: dict[tuple[float, bool], tuple[QFont, QFontMetricsF]] = {}

    # ------------------------------------------------------------------ units and fonts
    def mm(self, value: float) -> float:
        """Millimetres in device units."""
        return value / 25.4 * DPI

    def font(self, points: float = 9, bold: bool = False) -> tuple[QFont, QFontMetricsF]:
        """A font and its metrics on the PDF device."""
        key = (points, bold)
        if key not in self.fonts:
            font = QFont(FONT_FAMILY)
            font.setPointSizeF(points)
            font.setBold(bold)
            _no_ligatures(font)
            self.fonts[key] = (font, QFontMetricsF(font, self.writer))
        return self.fonts[key]

    def text_height(self, text: str, width: float, points: float = 9, bold: bool = False) -> float:
        """Height of ``text`` wrapped in ``width``."""
        _, fm = self.font(points, bold)
        if not text:
            return fm.height()
        return fm.boundingRect(QRectF(0, 0, width, 1e7), int(Qt.TextFlag.TextWordWrap), text).height()

    # ------------------------------------------------------------------ layout
    @property
    def page(self) -> list[Op]:
        """The operations of the current page."""
        return self.pages[-1]

    def new_page(self) -> None:
        """Start a new page."""
        self.pages.append([])
        self.y = self.top

    def ensure(self, height: float) -> bool:
        """Start a new page unless ``height`` fits on this one; True if a page was started."""
        if self.y + height > self.bottom and self.y > self.top:
            self.new_page()
            return True
        return False

    def space(self, millimetres: float) -> None:
        """Vertical space (never carried over to a new page)."""
        self.y = min(self.y + self.mm(millimetres), self.bottom)

    def text(self, text: str, *, points: float = 9, bold: bool = False, color: str = "#000000",
             align: str = "l", keep: float = 0.0) -> None:
        """A wrapped paragraph. ``keep``: extra height that must fit with it (keep with next)."""
        h = self.text_height(text, self.width, points, bold)
        self.ensure(h + keep)
        rect = QRectF(self.left, self.y, self.width, h)
        font, _ = self.font(points, bold)
        flags = int(_ALIGN[align] | Qt.TextFlag.TextWordWrap)

        def op(p: QPainter) -> None:
            p.setFont(font)
            p.setPen(QColor(color))
            p.drawText(rect, flags, text)
        self.page.append(op)
        self.y += h

    def heading(self, text: str) -> None:
        """A section heading, kept with at least 25 mm of what follows, with a rule under it."""
        self.space(3)
        _, fm = self.font(12, True)
        h = fm.height()
        self.ensure(h + self.mm(25))
        rect = QRectF(self.left, self.y, self.width, h)
        font, _ = self.font(12, True)
        y_rule = self.y + h + self.mm(0.6)
        left, right = self.left, self.left + self.width

        def op(p: QPainter) -> None:
            p.setFont(font)
            p.setPen(QColor("#1a3a5a"))
            p.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
            p.setPen(QPen(QColor("#1a3a5a"), self.mm(0.3)))
            p.drawLine(QPointF(left, y_rule), QPointF(right, y_rule))
        self.page.append(op)
        self.y += h + self.mm(1.8)

    def grid(self, pairs: Sequence[tuple[str, str]], columns: int = 2, points: float = 9) -> None:
        """Key–value pairs in ``columns`` columns (label bold, value wrapped)."""
        col_w = self.width / columns
        label_w = col_w * 0.34
        value_w = col_w - label_w - self.mm(2)
        for i in range(0, len(pairs), columns):
            row = pairs[i:i + columns]
            h = max(max(self.text_height(k, label_w, points, True), self.text_height(v, value_w, points))
                    for k, v in row) + self.mm(0.8)
            self.ensure(h)
            y = self.y
            for j, (key, value) in enumerate(row):
                x = self.left + j * col_w
                kf, _ = self.font(points, True)
                vf, _ = self.font(points, False)
                flags = int(Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap)

                def op(p: QPainter, x: float = x, y: float = y, h: float = h, k: str = key, v: str = value,
                       kf: QFont = kf, vf: QFont = vf, flags: int = flags) -> None:
                    p.setPen(QColor("#333333"))
                    p.setFont(kf)
                    p.drawText(QRectF(x, y, label_w, h), flags, k)
                    p.setPen(QColor("#000000"))
                    p.setFont(vf)
                    p.drawText(QRectF(x + label_w + self.mm(1), y, value_w, h), flags, v)
                self.page.append(op)
            self.y += h

    def table(self, columns: Sequence[Column], rows: Sequence[Sequence[str]], *, points: float = 8,
              shade: Sequence[str | None] | None = None, empty: str = "None recorded.") -> None:
        """A table with wrapped cells; the header row repeats on every page. ``shade``: an optional
        background colour per row."""
        if not rows:
            self.text(empty, points=points, color="#555555")
            return
        total = sum(c.width for c in columns)
        widths = [self.width * c.width / total for c in columns]
        xs = [self.left + sum(widths[:i]) for i in range(len(columns))]
        pad = self.mm(0.8)
        head_h = max(self.text_height(c.title, w - 2 * pad, points, True) for c, w in zip(columns, widths)) + 2 * pad
        hfont, _ = self.font(points, True)
        bfont, _ = self.font(points, False)

        def header() -> None:
            y = self.y

            def op(p: QPainter, y: float = y) -> None:
                p.fillRect(QRectF(self.left, y, self.width, head_h), QColor("#dde6ee"))
                p.setFont(hfont)
                p.setPen(QColor("#000000"))
                for c, x, w in zip(columns, xs, widths):
                    p.drawText(QRectF(x + pad, y + pad, w - 2 * pad, head_h - 2 * pad),
                               int(_ALIGN[c.align] | Qt.TextFlag.TextWordWrap), c.title)
            self.page.append(op)
            self.y += head_h

        self.ensure(head_h + self.mm(6))
        header()
        for index, row in enumerate(rows):
            cells = [str(x) for x in row]
            h = max(self.text_height(t, w - 2 * pad, points) for t, w in zip(cells, widths)) + 2 * pad
            if self.ensure(h):
                header()
            y = self.y
            color = shade[index] if shade else None
            line_y = y + h

            def op(p: QPainter, y: float = y, h: float = h, cells: list[str] = cells, color: str | None = color,
                   line_y: float = line_y) -> None:
                if color:
                    p.fillRect(QRectF(self.left, y, self.width, h), QColor(color))
                p.setFont(bfont)
                p.setPen(QColor("#000000"))
                for c, x, w, t in zip(columns, xs, widths, cells):
                    p.drawText(QRectF(x + pad, y + pad, w - 2 * pad, h - 2 * pad),
                               int(_ALIGN[c.align] | Qt.TextFlag.TextWordWrap), t)
                p.setPen(QPen(QColor("#c8c8c8"), self.mm(0.15)))
                p.drawLine(QPointF(self.left, line_y), QPointF(self.left + self.width, line_y))
            self.page.append(op)
            self.y += h

    def drawing(self, height_mm: float, draw: Callable[[QPainter, QRectF], None]) -> None:
        """A fixed-height drawing (a chart) across the text width."""
        h = self.mm(height_mm)
        self.ensure(h)
        rect = QRectF(self.left, self.y, self.width, h)
        self.page.append(lambda p: draw(p, rect))
        self.y += h

    # ------------------------------------------------------------------ output
    def save(self) -> int:
        """Paint every page (header, content, footer) and finish the file; returns the page count."""
        painter = QPainter()
        if not painter.begin(self.writer):
            raise ExportError(f"cannot write the PDF file {self.path}")
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            n = len(self.pages)
            hfont, _ = self.font(8, True)
            ffont, _ = self.font(8, False)
            for i, ops in enumerate(self.pages, start=1):
                if i > 1:
                    self.writer.newPage()
                head = QRectF(self.left, self.margin, self.width, self.mm(6))
                painter.setFont(hfont)
                painter.setPen(QColor("#1a3a5a"))
                painter.drawText(head, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), self.header)
                painter.drawText(head, int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), self.header_right)
                painter.setPen(QPen(QColor("#1a3a5a"), self.mm(0.2)))
                rule_y = self.margin + self.mm(6.5)
                painter.drawLine(QPointF(self.left, rule_y), QPointF(self.left + self.width, rule_y))
                for op in ops:
                    painter.save()
                    op(painter)
                    painter.restore()
                foot = QRectF(self.left, self.H - self.margin - self.mm(5), self.width, self.mm(5))
                painter.setFont(ffont)
                painter.setPen(QColor("#333333"))
                painter.drawText(foot, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), self.footer)
                painter.drawText(foot, int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), f"Page {i} of {n}")
        finally:
            painter.end()
        if self.date_year is not None:
            scrub_pdf_dates(self.path, self.date_year)
        return len(self.pages)


def scrub_pdf_dates(path: Path, year: int) -> None:
    """Replace the creation/modification dates Qt writes (document info and XMP metadata: the wall
    clock at export time, which dates the treatment when a report is made right after it) by 1 January
    of ``year``, in place and with the same length, so the cross-reference offsets stay valid."""
    data = path.read_bytes()
    y = f"{year:04d}".encode("ascii")
    data = re.sub(rb"(/(?:CreationDate|ModDate) *\(D:)\d{14}", lambda m: m.group(1) + y + b"0101000000", data)
    data = re.sub(rb'((?:CreateDate|ModifyDate|MetadataDate)=["\'])\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}',
                  lambda m: m.group(1) + y + b"-01-01T00:00:00", data)
    path.write_bytes(data)


def _no_ligatures(font: QFont) -> None:
    """Turn off ligatures ("fi" drawn as one glyph), so text extracted from the PDF reads as typed."""
    try:
        for tag in ("liga", "clig", "dlig"):
            font.setFeature(QFont.Tag(tag), 0)
    except AttributeError:  # Qt < 6.7: letter spacing off its default also disables ligatures
        font.setLetterSpacing(QFont.SpacingType.PercentageSpacing, 100.001)


_ALIGN = {"l": Qt.AlignmentFlag.AlignLeft, "r": Qt.AlignmentFlag.AlignRight, "c": Qt.AlignmentFlag.AlignHCenter}
