"""EDF+ export, written by hand (the format is a fixed ASCII header followed by int16 data records).

* Header: EDF+ patient field ``MRN sex birthdate name`` (spaces in subfields as "_", unknown or
  anonymised subfields as ``X``: a de-identified file has ``X X X X``), recording field
  ``Startdate dd-MMM-yyyy admincode technician equipment`` (``Startdate X X X Vigil De-identified``
  when de-identified), start date/time of the first record in UTC, ``EDF+C`` — or ``EDF+D`` when the
  session has recording gaps (records wholly inside a gap are left out; ``edf_gaps="fill"`` keeps
  them, filled with the no-data value, in an EDF+C file instead: see :func:`write_edf`).
* Data records of 1 s (longer only when a sample rate is not a whole number of Hz, e.g. 62.5 Hz needs
  2 s). Signals: one per waveform channel at its rate (ECG II, Pleth, CO2, Resp), then each continuous
  vital at 1 Hz (HR, SpO2, RR, EtCO2…: the value of each second, flagged values left out). Every
  signal has a physical dimension: its catalogue unit, "a.u." (arbitrary units) for Pleth and Resp. Digital
  range -32768…32767; physical min/max from the data (rounded outwards to the 8 characters the header
  allows). -32768 is kept for "no data" (gaps, probe off, seconds without a value), so recorded values
  use -32767…32767 and read back within one quantisation step.
* An "EDF Annotations" signal carries, as TALs (time-stamped annotation lists, UTF-8): the
  de-identification notice, infusion steps or nasal devices, NIBP readings, assessments, events,
  other charted facts, every alarm (onset and duration, with priority, value and limit) and its
  acknowledgements, recording gaps and the closing signature. The first TAL of each record is its
  time-keeping TAL. Annotations sit in the record of their onset, or the next ones with room.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from drivers.catalogue import CATALOGUE
from drivers.model import WAVE_CHANNELS
from monitor.export.errors import ExportError
from monitor.app.privacy import deid_notice
from monitor.app.stats import CONTINUOUS
from monitor.app.readmodel import SessionView

__all__ = ["write_edf", "DIGITAL_MIN", "DIGITAL_MAX", "NO_DATA"]

DIGITAL_MIN, DIGITAL_MAX = -32768, 32767
#: The digital value written where there is no data.
NO_DATA = DIGITAL_MIN
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
#: EDF physical dimensions (8 ASCII characters) of units that are not plain ASCII, and of signals
#: without a unit (pleth, impedance respiration: arbitrary units). Every signal has one.
_UNITS = {"°C": "degC", "": "a.u."}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _ascii(text: str, width: int) -> str:
    """Printable US-ASCII of ``text`` (accents folded), padded/cut to ``width``."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    folded = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in folded)
    return folded[:width].ljust(width)


def _subfield(text: str | None) -> str:
    if not text:
        return "X"
    folded = _ascii(text, 80).strip()
    return re.sub(r"\s+", "_", folded) or "X"


def _edf_date(t: datetime) -> str:
    return f"{t.day:02d}-{_MONTHS[t.month - 1]}-{t.year:04d}"


def _fmt8(value: float, direction: str) -> tuple[str, float]:
    """``value`` as at most 8 characters, rounded outwards (down for a minimum, up for a maximum)."""
    for decimals in range(6, -1, -1):
        scale = 10.0 ** decimals
        rounded = (math.floor if direction == "min" else math.ceil)(value * scale) / scale
        text = f"{rounded:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text in ("-0", ""):
            text = "0"
        if len(text) <= 8:
            return text, float(text)
    raise ExportError(f"physical value {value!r} does not fit the 8 characters of an EDF header field")


def _num_text(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _record_duration(rates: list[float]) -> int:
    for d in (1, 2, 4, 5, 8, 10):
        if all(abs(r * d - round(r * d)) < 1e-6 for r in rates):
            return d
    return 1


class _Signal:
    def __init__(self, label: str, dim: str, rate: float, data: np.ndarray, transducer: str = "") -> None:
        self.label, self.dim, self.rate, self.data, self.transducer = label, dim, rate, data, transducer


def _grid(view: SessionView, start: float, n_records: int, duration: int) -> list[_Signal]:
    signals: list[_Signal] = []
    total_s = n_records * duration
    for channel in view.waveform_channels:
        blocks = view.waveform(channel)
        if not blocks:
            continue
        rate = blocks[0][1]
        spr = int(round(rate * duration))
        data = np.full(n_records * spr, np.nan, dtype=np.float32)
        for t0, block_rate, samples in blocks:
            if block_rate == rate:
                i0 = int(round((t0 - start) * rate))
                lo, hi = max(i0, 0), min(i0 + len(samples), len(data))
                if hi > lo:
                    data[lo:hi] = samples[lo - i0:hi - i0]
            else:  # another rate: nearest sample of this channel's grid
                idx = np.round((t0 + np.arange(len(samples)) / block_rate - start) * rate).astype(np.int64)
                ok = (idx >= 0) & (idx < len(data))
                data[idx[ok]] = samples[ok]
        label, unit, _ = WAVE_CHANNELS.get(channel, (channel, "", rate))
        transducer = "" if view.deidentified else _ascii(f"Vigil {view.device}", 80).strip()
        signals.append(_Signal(label, _UNITS.get(unit, unit), rate, data, transducer))
    for vital in CONTINUOUS:
        if vital not in view.vitals:
            continue
        t, v = view.valid(vital)
        data = np.full(total_s, np.nan, dtype=np.float32)
        idx = np.floor(t - start).astype(np.int64)
        ok = (idx >= 0) & (idx < total_s)
        data[idx[ok]] = v[ok]
        spec = CATALOGUE[vital]
        signals.append(_Signal(spec.label, _UNITS.get(spec.unit, spec.unit), 1.0, data,
                               "" if view.deidentified else "Vigil numerics"))
    return signals


def _annotations(view: SessionView) -> list[tuple[float, float | None, str]]:
    """``(onset s from the session start, duration s or None, text)`` in onset order."""
    out: list[tuple[float, float | None, str]] = []
    el = view.elapsed

    def add(t: datetime, text: str, duration: float | None = None) -> None:
        out.append((el(t), duration, text))

    if view.deidentified:
        add(view.start, deid_notice(year_only_dates=False))
    add(view.start, f"Session start ({view.protocol_label}); times are UTC")
    for line in view.record_notice:
        add(view.start, line)
    for r in view.infusion:
        text = f"Infusion {r.action.replace('_', ' ')}" + (f" {r.rate_mg_per_h:g} mg/h" if r.rate_mg_per_h else "")
        add(r.t, text + (f" ({r.reason})" if r.reason else "") + f", {r.by}")
    for d in view.devices:
        add(d.t, f"Nasal device {d.number} ({d.dose_mg:g} mg), {d.by}")
    for r in view.nibp:
        mean = f" ({r.mean:.0f})" if r.mean is not None else ""
        status = "" if r.status == "current" else f" [{r.status}]"
        add(r.t, f"NIBP {r.sys:.0f}/{r.dia:.0f}{mean} mmHg{status}")
    for r in view.chart():
        text = r.summary + (f" - {r.detail}" if r.detail else "") + f", {r.by}"
        if r.status != "current":
            text += f" [{r.status}]"
        if r.late:
            text += f" [{view.late_text(r)}]"
        add(r.t, text)
    for n in view.notes:
        if n.kind in ("session_opened",):
            continue
        add(n.t, n.title + (f": {n.summary}" if n.summary else "") + (f" - {n.detail}" if n.detail else ""))
    for a in view.alarms:
        duration = (a.end - a.start).total_seconds() if a.end else None
        prio = a.priority if a.priority == a.max_priority else f"{a.priority}->{a.max_priority}"
        detail = ""
        if a.value is not None:
            detail = f" value {a.value:g}" + (f", limit {a.limit:g}" if a.limit is not None else "")
        add(a.start, f"Alarm {prio}: {a.label}{detail}", duration)
        for x in a.actions:
            if x.action in ("acknowledge", "audio_pause", "reset"):
                add(x.t, f"Alarm {x.action.replace('_', ' ')}: {a.label}" + (f" by {x.user}" if x.user else ""))
    for x in view.system_actions:
        add(x.t, f"Alarm {x.label}" + (f" for {x.pause_s:g} s" if x.pause_s else "")
            + (f" by {x.user}" if x.user else ""))
    for s, e, _reason in view.gaps:
        add(s, "Recording gap", (e - s).total_seconds())
    if view.signature is not None:
        add(view.signature.t, f"Signed by {view.signature.name}: {view.signature.meaning}")
    out.sort(key=lambda a: a[0])
    return out


#: Longest annotation text in one TAL, bytes; longer texts are split into several TALs at the same onset
#: (every data record reserves room for the longest TAL, so one long note would bloat the whole file).
TAL_TEXT_BYTES = 120


def _split(text: str, limit: int = TAL_TEXT_BYTES) -> list[str]:
    """``text`` cut at word boundaries into pieces of at most ``limit`` UTF-8 bytes, marked "(1/3)"…"""
    if len(text.encode("utf-8")) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for word in text.split(" "):
        while len(word.encode("utf-8")) > limit - 8:  # a very long word: cut it
            head = word.encode("utf-8")[:limit - 8].decode("utf-8", "ignore")
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
            word = word[len(head):]
        candidate = f"{current} {word}" if current else word
        if len(candidate.encode("utf-8")) > limit - 8:
            pieces.append(current)
            current = word
        else:
            current = candidate
    if current:
        pieces.append(current)
    return [f"{piece} ({i}/{len(pieces)})" for i, piece in enumerate(pieces, start=1)]


def _tal(onset: float, duration: float | None, text: str) -> bytes:
    sign = "+" if onset >= 0 else "-"
    head = f"{sign}{_num_text(abs(onset))}"
    if duration is not None:
        head += f"\x15{_num_text(max(duration, 0.0))}"
    clean = _CONTROL.sub(" ", text).strip() or "-"
    return head.encode("ascii") + b"\x14" + clean.encode("utf-8") + b"\x14\x00"


def _place(tals: list[tuple[int, bytes]], keep: np.ndarray, starts: list[float]) -> tuple[int, list[list[bytes]]]:
    """Place TALs into the kept records: each in the record of its onset, else the nearest later one
    with room, else the nearest earlier one (onsets are relative to the file start, so a TAL may sit
    in any record). Returns the annotation signal's bytes per record (even) and each record's TALs,
    starting with its time-keeping TAL."""
    kept = np.flatnonzero(keep)
    timekeeping = [f"+{_num_text(starts[i])}\x14\x14\x00".encode("ascii") for i in kept]
    longest_tk = max((len(x) for x in timekeeping), default=0)
    longest = max((len(b) for _, b in tals), default=0)
    capacity = max(64, longest_tk + longest)
    while True:
        cap = capacity + (capacity % 2)
        contents = [[tk] for tk in timekeeping]
        room = [cap - len(tk) for tk in timekeeping]
        ok = True
        for record, data in tals:
            home = min(int(np.searchsorted(kept, record, side="left")), len(kept) - 1)
            j = home
            while j < len(kept) and room[j] < len(data):
                j += 1
            if j >= len(kept):
                j = home - 1
                while j >= 0 and room[j] < len(data):
                    j -= 1
            if j < 0:
                ok = False
                break
            contents[j].append(data)
            room[j] -= len(data)
        if ok:
            return cap, contents
        capacity *= 2


def write_edf(view: SessionView, path: Path, *, edf_gaps: str = "fill", **_: Any) -> None:
    """Write the EDF+ file of ``view`` to ``path``.

    ``edf_gaps`` (sessions with recording gaps only): "drop" leaves out the data records
    wholly inside a gap and marks the file EDF+D — the format's own way, inventing no samples, read by
    EDFbrowser and other EDF+D-aware readers, but refused by edflib/pyedflib (which read no EDF+D file)
    and misplaced in time by some others; "fill" keeps the records contiguous, fills the gap with the
    no-data value and marks the file EDF+C, which every EDF reader opens (the default). Either way each gap carries a
    "Recording gap" annotation with its duration.
    """
    if edf_gaps not in ("fill", "drop"):
        raise ExportError(f"edf_gaps must be 'drop' or 'fill', not {edf_gaps!r}")
    first_rate: dict[str, float] = {}
    for b in view.waveform_blocks():
        first_rate.setdefault(b.channel, b.rate)
    rates = list(first_rate.values())
    duration = _record_duration(rates + [1.0])
    start = math.floor(view.start_epoch)
    span = max(view.end_epoch - start, 1e-9)
    n_records = int(span // duration) + 1  # the record holding the last instant (the end) too
    signals = _grid(view, start, n_records, duration)

    rec_starts = [i * duration for i in range(n_records)]
    keep = np.ones(n_records, dtype=bool)
    for gs, ge, _ in (view.gaps if edf_gaps == "drop" else ()):
        a, b = gs.timestamp() - start, ge.timestamp() - start
        inside = np.array([(s >= a and s + duration <= b) for s in rec_starts])
        keep &= ~inside
    if not keep.any():
        keep[0] = True
    discontinuous = bool(view.gaps) and edf_gaps == "drop"

    tals = []
    offset = view.start_epoch - start
    for onset, dur, text in _annotations(view):
        onset_file = onset + offset
        record = min(max(int(onset_file // duration), 0), n_records - 1)
        for piece in _split(_CONTROL.sub(" ", text).strip()):
            tals.append((record, _tal(onset_file, dur, piece)))
    ann_bytes, contents = _place(tals, keep, [float(s) for s in rec_starts])

    # digital data
    headers = []
    kept_idx = np.flatnonzero(keep)
    n_kept = len(kept_idx)
    columns: list[np.ndarray] = []
    for sig in signals:
        spr = int(round(sig.rate * duration))
        data = sig.data.reshape(n_records, spr)[kept_idx]
        finite = data[~np.isnan(data)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
        if hi - lo < 1e-6:
            lo, hi = lo - 1.0, hi + 1.0
        pmin_text, pmin = _fmt8(lo, "min")
        pmax_text, pmax = _fmt8(hi, "max")
        scale = (DIGITAL_MAX - DIGITAL_MIN) / (pmax - pmin)
        digital = np.round((data.astype(np.float64) - pmin) * scale + DIGITAL_MIN)
        digital = np.clip(digital, DIGITAL_MIN + 1, DIGITAL_MAX)
        digital[np.isnan(data)] = NO_DATA
        columns.append(digital.astype("<i2").view(np.uint8).reshape(n_kept, spr * 2))
        headers.append((_ascii(sig.label, 16), _ascii(sig.transducer, 80), _ascii(sig.dim, 8), pmin_text.ljust(8),
                        pmax_text.ljust(8), str(DIGITAL_MIN).ljust(8), str(DIGITAL_MAX).ljust(8), " " * 80,
                        str(spr).ljust(8), " " * 32))
    ann = np.zeros((n_kept, ann_bytes), dtype=np.uint8)
    for row, parts in enumerate(contents):
        blob = b"".join(parts)
        ann[row, :len(blob)] = np.frombuffer(blob, dtype=np.uint8)
    columns.append(ann)
    headers.append((_ascii("EDF Annotations", 16), " " * 80, " " * 8, "-1".ljust(8), "1".ljust(8),
                    str(DIGITAL_MIN).ljust(8), str(DIGITAL_MAX).ljust(8), " " * 80, str(ann_bytes // 2).ljust(8),
                    " " * 32))
    records = np.concatenate(columns, axis=1) if columns else np.zeros((n_kept, 0), dtype=np.uint8)

    ns = len(headers)
    first = datetime.fromtimestamp(start, timezone.utc)
    p = view.patient
    if view.deidentified:
        patient = "X X X X"
        recording = "Startdate X X X Vigil De-identified"
    else:
        sex = {"female": "F", "male": "M"}.get(p.sex, "X")
        dob = _edf_date(datetime(p.date_of_birth.year, p.date_of_birth.month, p.date_of_birth.day)) \
            if p.date_of_birth else "X"
        patient = f"{_subfield(p.mrn)} {sex} {dob} {_subfield(p.name)}"
        recording = f"Startdate {_edf_date(first)} S{view.session_id} {_subfield(view.opened_by)} Vigil"
    header = "".join([
        "0".ljust(8), _ascii(patient, 80), _ascii(recording, 80),
        first.strftime("%d.%m.%y"), first.strftime("%H.%M.%S"),
        str(256 * (ns + 1)).ljust(8), ("EDF+D" if discontinuous else "EDF+C").ljust(44),
        str(n_kept).ljust(8), str(duration).ljust(8), str(ns).ljust(4),
    ])
    for field_index in range(10):
        header += "".join(h[field_index] for h in headers)
    encoded = header.encode("ascii")
    if len(encoded) != 256 * (ns + 1):
        raise ExportError(f"internal error: EDF header is {len(encoded)} bytes, expected {256 * (ns + 1)}")
    with open(path, "wb") as fh:
        fh.write(encoded)
        fh.write(records.tobytes())
