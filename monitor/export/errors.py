"""The one exception every export and import raises for a request it cannot carry out."""

from __future__ import annotations

from drivers.errors import VigilError

__all__ = ["ExportError", "ExportCancelled"]


class ExportError(VigilError):
    """An export or import that cannot be done: unknown session or format, a REMS form for an IV
    session, a destination that cannot be written, an archive that is not a valid Vigil archive.
    The message says what is wrong and, where it can, what to do. Nothing was written (exports)
    and nothing was changed in the store (imports)."""


class ExportCancelled(ExportError):
    """An export stopped because whoever started it cancelled it; no file was written."""
