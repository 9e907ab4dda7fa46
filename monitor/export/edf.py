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
from collections.abc import Iterator
from typing import Any

import numpy as np

from drivers.catalogue import CATALOGUE
from drivers.model import WAVE_CHANNELS
from monitor.export.errors import ExportError
from monitor.app.privacy import deid_notice
from monitor.app.stats import CONTINUOUS
from monitor.app.readmodel import SessionView
from monitor.store import Block, decode_samples

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


#: Data records built at a time: the file is written in pieces of this many records, so a 24-hour
#: session's waveforms (350 MB as float32 for ECG alone) are never held whole.
CHUNK_RECORDS = 1800


class _Signal:
    """One signal of the file. ``chunks(n_records, duration)`` yields its samples (float32, NaN =
    no data) ``CHUNK_RECORDS`` records at a time; call it once per pass."""

    def __init__(self, label: str, dim: str, rate: float, transducer: str = "") -> None:
        self.label, self.dim, self.rate, self.transducer = label, dim, rate, transducer

    def chunks(self, n_records: int, duration: int) -> Iterator[np.ndarray]:
        raise NotImplementedError


class _Numeric(_Signal):
    """A vital at 1 Hz: the value of each second (small enough to build whole)."""

    def __init__(self, label: str, dim: str, data: np.ndarray, transducer: str) -> None:
        super().__init__(label, dim, 1.0, transducer)
        self.data = data

    def chunks(self, n_records: int, duration: int) -> Iterator[np.ndarray]:
        step = CHUNK_RECORDS * duration
        for lo in range(0, n_records * duration, step):
            yield self.data[lo:lo + step]


class _Wave(_Signal):
    """A waveform channel on its grid (the rate of its first block), read block by block: a block at
    another rate goes to the nearest sample of the grid, a later block overwrites an earlier one."""

    def __init__(self, label: str, dim: str, rate: float, transducer: str, view: SessionView, channel: str,
                 start: float) -> None:
        super().__init__(label, dim, rate, transducer)
        self.view, self.channel, self.start = view, channel, start

    def chunks(self, n_records: int, duration: int) -> Iterator[np.ndarray]:
        rate, start = self.rate, self.start
        spr = int(round(rate * duration))
        total = n_records * spr
        blocks = self.view.iter_waveform_blocks(self.channel)
        ahead: Block | None = next(blocks, None)
        live: list[tuple[np.ndarray, np.ndarray | int, float]] = []  # decoded blocks reaching this chunk or later
        for lo in range(0, total, CHUNK_RECORDS * spr):
            hi = min(lo + CHUNK_RECORDS * spr, total)
            # blocks are in time order: take every block that starts before the chunk ends
            while ahead is not None and int(round((ahead.t0 - start) * rate)) < hi:
                samples = decode_samples(ahead.data, ahead.n, ahead.enc)
                if ahead.rate == rate:
                    live.append((samples, int(round((ahead.t0 - start) * rate)), ahead.rate))
                else:
                    idx = np.round((ahead.t0 + np.arange(len(samples)) / ahead.rate - start) * rate).astype(np.int64)
                    live.append((samples, idx, ahead.rate))
                ahead = next(blocks, None)
            data = np.full(hi - lo, np.nan, dtype=np.float32)
            keep = []
            for samples, where, _ in live:
                if isinstance(where, int):
                    a, b = max(where, lo), min(where + len(samples), hi)
                    if b > a:
                        data[a - lo:b - lo] = samples[a - where:b - where]
                    reaches = where + len(samples)
                else:
                    ok = (where >= lo) & (where < hi)
                    data[where[ok] - lo] = samples[ok]
                    reaches = int(where.max()) + 1 if len(where) else 0
                if reaches > hi:
                    keep.append((samples, where, 0.0))
            live = keep
            yield data


def _signals(view: SessionView, start: float, n_records: int, duration: int, rates: dict[str, float]) -> list[_Signal]:
    signals: list[_Signal] = []
    total_s = n_records * duration
    for channel, rate in rates.items():
        label, unit, _ = WAVE_CHANNELS.get(channel, (channel, "", rate))
        transducer = "" if view.deidentified else _ascii(f"Vigil {view.device}", 80).strip()
        signals.append(_Wave(label, _UNITS.get(unit, unit), rate, transducer, view, channel, start))
    for vital in CONTINUOUS:
        if vital not in view.vitals:
            continue
        t, v = view.valid(vital)
        data = np.full(total_s, np.nan, dtype=np.float32)
        idx = np.floor(t - start).astype(np.int64)
        ok = (idx >= 0) & (idx < total_s)
        data[idx[ok]] = v[ok]
        spec = CATALOGUE[vital]
        signals.append(_Numeric(spec.label, _UNITS.get(spec.unit, spec.unit), data,
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
    for reading in view.nibp:
        mean = f" ({reading.mean:.0f})" if reading.mean is not None else ""
        status = "" if reading.status == "current" else f" [{reading.status}]"
        add(reading.t, f"NIBP {reading.sys:.0f}/{reading.dia:.0f}{mean} mmHg{status}")
    for row in view.chart():
        text = row.summary + (f" - {row.detail}" if row.detail else "") + f", {row.by}"
        if row.status != "current":
            text += f" [{row.status}]"
        if row.late:
            text += f" [{view.late_text(row)}]"
        add(row.t, text)
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
    for channel in view.waveform_channels:
        block = next(view.iter_waveform_blocks(channel), None)
        if block is not None:
            first_rate[channel] = block.rate
    rates = list(first_rate.values())
    duration = _record_duration(rates + [1.0])
    start = math.floor(view.start_epoch)
    span = max(view.end_epoch - start, 1e-9)
    n_records = int(span // duration) + 1  # the record holding the last instant (the end) too
    signals = _signals(view, start, n_records, duration, first_rate)

    rec_starts = [i * duration for i in range(n_records)]
    keep = np.ones(n_records, dtype=bool)
    for gs, ge, _reason in (view.gaps if edf_gaps == "drop" else ()):
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

    # first pass: each signal's physical range over the records kept
    headers = []
    scales: list[tuple[float, float]] = []
    waves = sum(isinstance(sig, _Wave) for sig in signals)
    for number, sig in enumerate(signals):
        view.progress.begin_pass(min(number, waves), waves + 1)  # each channel read once, then all together
        spr = int(round(sig.rate * duration))
        lo, hi = math.inf, -math.inf
        for first_record, data in zip(range(0, n_records, CHUNK_RECORDS), sig.chunks(n_records, duration)):
            rows = data.reshape(-1, spr)[keep[first_record:first_record + CHUNK_RECORDS]]
            finite = rows[~np.isnan(rows)]
            if finite.size:
                lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        if lo > hi:
            lo, hi = -1.0, 1.0
        if hi - lo < 1e-6:
            lo, hi = lo - 1.0, hi + 1.0
        pmin_text, pmin = _fmt8(lo, "min")
        pmax_text, pmax = _fmt8(hi, "max")
        scales.append((pmin, (DIGITAL_MAX - DIGITAL_MIN) / (pmax - pmin)))
        headers.append((_ascii(sig.label, 16), _ascii(sig.transducer, 80), _ascii(sig.dim, 8), pmin_text.ljust(8),
                        pmax_text.ljust(8), str(DIGITAL_MIN).ljust(8), str(DIGITAL_MAX).ljust(8), " " * 80,
                        str(spr).ljust(8), " " * 32))
    headers.append((_ascii("EDF Annotations", 16), " " * 80, " " * 8, "-1".ljust(8), "1".ljust(8),
                    str(DIGITAL_MIN).ljust(8), str(DIGITAL_MAX).ljust(8), " " * 80, str(ann_bytes // 2).ljust(8),
                    " " * 32))
    n_kept = int(keep.sum())

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
    kept_rows = np.cumsum(keep) - 1   # record → its row among the kept ones
    with open(path, "wb") as fh:
        fh.write(encoded)
        # second pass: the data records, a chunk at a time
        view.progress.begin_pass(waves, waves + 1)
        streams = [sig.chunks(n_records, duration) for sig in signals]
        for first_record in range(0, n_records, CHUNK_RECORDS):
            kept_here = keep[first_record:first_record + CHUNK_RECORDS]
            if not kept_here.any():
                for stream in streams:
                    next(stream)
                continue
            columns: list[np.ndarray] = []
            for sig, stream, (pmin, scale) in zip(signals, streams, scales):
                spr = int(round(sig.rate * duration))
                data = next(stream).reshape(-1, spr)[kept_here]
                digital = np.round((data.astype(np.float64) - pmin) * scale + DIGITAL_MIN)
                digital = np.clip(digital, DIGITAL_MIN + 1, DIGITAL_MAX)
                digital[np.isnan(data)] = NO_DATA
                columns.append(digital.astype("<i2").view(np.uint8).reshape(len(data), spr * 2))
            rows = kept_rows[first_record:first_record + CHUNK_RECORDS][kept_here]
            ann = np.zeros((len(rows), ann_bytes), dtype=np.uint8)
            for i, row in enumerate(rows.tolist()):
                blob = b"".join(contents[row])
                ann[i, :len(blob)] = np.frombuffer(blob, dtype=np.uint8)
            columns.append(ann)
            fh.write(np.concatenate(columns, axis=1).tobytes())
