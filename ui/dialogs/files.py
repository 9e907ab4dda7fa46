"""The file dialog for exports: Qt's own (not the desktop's) while Vigil monitors, so that F1/F2
reach it and it opens below the alarm area, with its columns wide enough for their titles."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QHeaderView, QWidget

__all__ = ["ExportFileDialog"]


class ExportFileDialog(QFileDialog):
    """Save-as for an export: ``default`` path proposed; ``native`` (a desk with no monitoring)
    uses the desktop's dialog. :meth:`chosen` is the path picked (None: cancelled)."""

    def __init__(self, parent: QWidget | None, title: str, default: str, *, native: bool = False) -> None:
        super().__init__(parent, title, default)
        self.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        self.setFileMode(QFileDialog.FileMode.AnyFile)
        if not native:
            self.setOption(QFileDialog.Option.DontUseNativeDialog)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        for header in self.findChildren(QHeaderView):  # the details view: titles in full
            for section in range(header.count()):
                header.resizeSection(section, max(header.sectionSize(section), header.sectionSizeFromContents(section).width()))

    def chosen(self) -> str | None:
        """The file picked, or None."""
        files = self.selectedFiles()
        return files[0] if files and self.result() == QFileDialog.DialogCode.Accepted else None
