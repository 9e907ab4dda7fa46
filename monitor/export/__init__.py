"""Session exports: CSV, PDF report, FHIR R4, HL7 v2.6 (IHE PCD-01), EDF+, JSON archive, REMS form.

Public API::

    export_session(store, session_id, fmt, out_path, *, deidentify=False, interval_s=60, paper="A4",
                   edf_gaps="fill", overwrite=False) -> Path
    import_archive(store, path, *, user=None, max_bytes=MAX_ARCHIVE_BYTES) -> int
    FORMATS, ExportError, build_long_session (monitor.export.synthetic)

``fmt`` is one of :data:`FORMATS`:

========  ==================================================================================
csv       a zip of CSV tables: numerics (long form), a wide table resampled at ``interval_s`` (columns
          named with their unit: ``hr_bpm``…), NIBP readings, events, assessments, infusion steps /
          nasal devices, alarms, the alarm log (with audio pauses and their ends), gaps
pdf       the clinical session report (``paper`` "A4" or "Letter")
fhir      a FHIR R4 transaction Bundle (JSON): Patient, Encounter, Device, vital-signs
          Observations at ``interval_s`` (median) plus every NIBP reading, charted assessments and
          events as Observations, MedicationAdministration
hl7       an HL7 v2.6 ORU^R01 message, IHE PCD-01 style (MDC codes), one OBR per observation time
          and per charted assessment or event
edf       EDF+C (gaps filled with the no-data value, which every EDF reader opens; ``edf_gaps="drop"``
          writes EDF+D without the records inside gaps): waveforms, 1 Hz numerics
          and an "EDF Annotations" signal with events, assessments, infusion steps and alarms
json      the full-fidelity session archive, re-importable with :func:`import_archive`
rems      esketamine sessions only: the REMS Patient Monitoring Form data on one PDF page
========  ==================================================================================

Every export is written to a temporary file in the destination folder and renamed into place, so
a failure leaves no partial file. ``deidentify=True`` applies HIPAA Safe Harbor to every format
through one de-identifying view of the session (:mod:`monitor.app.privacy`). Late entries (charted
after the session ended) appear with the events in every format, marked late with their reason, and
the session replays with them. Bad arguments raise :class:`ExportError` with a message saying what
is wrong.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from monitor.export.archive import MAX_ARCHIVE_BYTES, import_archive
from monitor.export.atomic import atomic_output, check_destination
from monitor.export.errors import ExportError
from monitor.app.readmodel import load_session
from monitor.store import NotFoundError, SessionStore
from monitor.store.reader import StoreReader

__all__ = ["FORMATS", "ExportFormat", "PAPERS", "ExportError", "export_session", "import_archive", "MAX_ARCHIVE_BYTES",
           "build_long_session"]

@dataclass(frozen=True)
class ExportFormat:
    """One export format: its ``name`` (``vigil export --format``), the menu's ``label``, the usual
    file ``suffix``, where its writer is (``module``, ``function``: imported only when used — the PDF
    writers load QtGui), and whether it is for esketamine sessions only. A writer is
    ``write(view, path, *, interval_s, paper, edf_gaps)`` and ignores the options it has no use for."""

    name: str
    label: str
    suffix: str
    module: str
    function: str
    esketamine_only: bool = False

    def writer(self) -> Callable[..., None]:
        """The writer function."""
        return getattr(importlib.import_module(self.module), self.function)


#: The export formats, in menu order: the one table the CLI, the review window's menu and
#: :func:`export_session` read. A new format is one row here and one writer module.
FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("csv", "CSV tables (zip)", ".zip", "monitor.export.csv_export", "write_csv"),
    ExportFormat("pdf", "PDF session report", ".pdf", "monitor.export.pdf", "write_pdf"),
    ExportFormat("fhir", "FHIR R4 bundle (JSON)", ".json", "monitor.export.fhir", "write_fhir"),
    ExportFormat("hl7", "HL7 v2 message", ".hl7", "monitor.export.hl7", "write_hl7"),
    ExportFormat("edf", "EDF+ signals", ".edf", "monitor.export.edf", "write_edf"),
    ExportFormat("json", "JSON archive", ".vigil.json", "monitor.export.archive", "write_archive"),
    ExportFormat("rems", "REMS monitoring form (esketamine)", ".pdf", "monitor.export.rems", "write_rems",
                 esketamine_only=True),
)}
#: Paper sizes of the PDF exports.
PAPERS = ("A4", "Letter")


def export_session(store: StoreReader, session_id: int, fmt: str, out_path: str | os.PathLike[str], *,
                   deidentify: bool = False, interval_s: float = 60, paper: str = "A4",
                   edf_gaps: str = "fill", overwrite: bool = False) -> Path:
    """Export session ``session_id`` of ``store`` as ``fmt`` to ``out_path`` and return the path.

    ``deidentify``: HIPAA Safe Harbor de-identification (names, record numbers, device identifiers, lot
    numbers and every free-text field not chosen from a fixed list removed; every date and time
    shifted by one random offset for this export, a date shown on its own given as the year; ages
    over 89 as "90+"; each file's notice says so: :func:`monitor.app.privacy.deid_notice`).
    ``interval_s``: resampling interval of the CSV wide table, FHIR and HL7 numerics, seconds (1–3600). ``paper``: "A4" or "Letter" (PDF and REMS). ``edf_gaps``
    (EDF of a session with recording gaps): "fill" = EDF+C with the gaps filled with the no-data
    value (the default: edflib, pyedflib and most clinical tools read no EDF+D), "drop" = EDF+D
    without the records inside gaps.

    ``overwrite``: replace ``out_path`` when it is an existing regular file (else
    :class:`~monitor.export.atomic.DestinationExists`); never the database itself, a file kept with
    it, a device, a fifo or a symbolic link (:func:`~monitor.export.atomic.check_destination`).

    Raises :class:`ExportError` for an unknown session or format, a REMS form for a session that is
    not esketamine, bad ``interval_s``/``paper``, or a destination that cannot be written; a writer
    failing for any other reason raises :class:`ExportError` too (chained), and leaves no file.
    An open session can be exported: the export is a snapshot and says so.
    """
    store = getattr(store, "store", store)   # the window passes its read-only Records over the store
    fmt_key = str(fmt).strip().lower() if isinstance(fmt, str) else None
    if fmt_key not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)) or not math.isfinite(interval_s) \
            or not 1 <= interval_s <= 3600:
        raise ExportError(f"interval_s must be a number of seconds from 1 to 3600, not {interval_s!r}")
    if edf_gaps not in ("drop", "fill"):
        raise ExportError(f"edf_gaps must be 'drop' or 'fill', not {edf_gaps!r}")
    paper_key = {p.lower(): p for p in PAPERS}.get(str(paper).strip().lower())
    if paper_key is None:
        raise ExportError(f"paper must be one of {', '.join(PAPERS)}, not {paper!r}")
    if not isinstance(store, StoreReader):
        raise ExportError("export needs a session store (a SessionStore or the clinic record's reader)")
    database = store.path if isinstance(store, SessionStore) else None
    out = check_destination(out_path, overwrite=overwrite, database=database)
    try:
        view = load_session(store, session_id, deidentify=bool(deidentify))
    except NotFoundError as exc:
        raise ExportError(str(exc)) from None
    row = FORMATS[fmt_key]
    if row.esketamine_only:
        from monitor.protocols import ProtocolKind
        if view.protocol is not ProtocolKind.ESKETAMINE:
            raise ExportError(f"the {row.name.upper()} export is for esketamine sessions only; session "
                              f"{session_id} is {view.protocol_label}")
    writer = row.writer()
    options: dict[str, Any] = {"interval_s": float(interval_s), "paper": paper_key, "edf_gaps": edf_gaps}
    with atomic_output(out, overwrite=overwrite, database=database) as tmp:
        try:
            writer(view, tmp, **options)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"the {fmt_key} export of session {session_id} failed: {exc}") from exc
    return out


def __getattr__(name: str) -> Any:  # lazy: the synthetic builder pulls in the simulator's dependencies
    if name == "build_long_session":
        from monitor.export.synthetic import build_long_session
        return build_long_session
    raise AttributeError(name)

