"""CSV export: a zip of plain CSV tables (UTF-8, comma-separated, one header row, RFC 4180 quoting).

Members:

* ``session.csv`` — key, value: format, session, patient, protocol, plan, times, staff, signature,
  the alarm profile in force (``alarm_limits``: "clinic default" or "changed at the chair";
  ``alarm_profile_sha256``; every profile recorded is in ``other_entries.csv``), units of every vital,
  the resampling interval, and whether the export is de-identified;
* ``numerics_long.csv`` — every stored observation: time (ISO 8601 with UTC offset), elapsed_s (from
  the session start), vital, value (as stored; empty when the device sent none), unit, quality flags
  ("|"-separated), source;
* ``numerics_wide.csv`` — one row per ``interval_s`` interval from the session start (interval start
  time, elapsed_s), one column per vital named with its unit (:func:`column_name`: ``hr_bpm``,
  ``spo2_pct``, ``nibp_sys_mmhg``…): the median of the interval's usable values (flagged values
  — artifact, sensor off… — left out); NIBP columns hold the reading taken in that interval (the
  last one if there were several); empty where there was nothing;
* ``events.csv`` — also ``late`` ("yes" for a late entry: charted after the session ended),
  ``late_reason`` and ``recorded_at`` (when it was charted);
* ``nibp.csv``, ``assessments.csv``, ``infusion_steps.csv`` (IV) or
  ``nasal_devices.csv`` (esketamine), ``other_entries.csv``, ``alarms.csv`` (start, end, condition,
  priority, max priority, limit, value, acknowledged by/at, every action), ``conditions.csv``,
  ``gaps.csv``;
* ``alarm_log.csv`` — the alarm log in time order: each alarm's start, escalations, acknowledgements
  and end, and every audio pause (who, when, how long it was asked for) and its end ("audio pause
  ended" at the pause's end when it ran its time, "audio pause cancelled" by whom when a user ended
  it, with how long it lasted).

Times are UTC. Numbers are written as Python writes floats (round-trip exact).

Every text cell that a spreadsheet would take for a formula — one that begins with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return — is written with a leading single quote (OWASP's CSV
injection advice: ``=HYPERLINK(…)`` in a note shows as text, never runs); numbers, negative ones
included, are written as they are (:func:`neutralise`).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from drivers.catalogue import CATALOGUE
from monitor.app.privacy import deid_notice
from monitor.app.stats import NIBP_KEYS, interval_last, interval_medians
from monitor.app.readmodel import SessionView
from monitor.store import bits_to_quality

__all__ = ["write_csv", "iso", "column_name", "neutralise", "MEMBERS"]

MEMBERS = ("session.csv", "numerics_long.csv", "numerics_wide.csv", "nibp.csv", "events.csv", "assessments.csv",
           "infusion_steps.csv", "nasal_devices.csv", "other_entries.csv", "alarms.csv", "alarm_log.csv",
           "conditions.csv", "gaps.csv")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
#: What a spreadsheet reads as the start of a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan)")


def neutralise(cell: Any) -> Any:
    """``cell`` as written to the CSV: a text that begins with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return gets a leading single quote, unless it is a number ("-3.5" stays a number);
    anything else is returned as it is."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def iso(t: datetime | float | None) -> str:
    """ISO 8601 with the UTC offset ("2026-11-28T09:00:35.792265+00:00"); "" for None."""
    if t is None:
        return ""
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(float(t), timezone.utc)
    return t.astimezone(timezone.utc).isoformat()


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def _elapsed(view: SessionView, t: datetime | None) -> str:
    return "" if t is None else repr(round(view.elapsed(t), 6))


class _Zip:
    def __init__(self, path: Path) -> None:
        self.zf = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)

    def table(self, name: str, header: list[str], rows: Iterable[list[Any]]) -> None:
        info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o600 << 16
        with self.zf.open(info, "w", force_zip64=True) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow([neutralise(h) for h in header])
            writer.writerows([neutralise(cell) for cell in row] for row in rows)
            text.flush()
            text.detach()

    def lines(self, name: str, header: list[str], chunks: Iterable[str]) -> None:
        """A member from pre-formatted CSV text, a chunk of lines (each ending in CRLF) at a time."""
        info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o600 << 16
        with self.zf.open(info, "w", force_zip64=True) as raw:
            raw.write((",".join(_quote(h) for h in header) + "\r\n").encode("utf-8"))
            for chunk in chunks:
                raw.write(chunk.encode("utf-8"))

    def close(self, comment: str) -> None:
        self.zf.comment = comment.encode("utf-8")[:65535]
        self.zf.close()


def write_csv(view: SessionView, path: Path, *, interval_s: float = 60, **_: Any) -> None:
    """Write the CSV zip of ``view`` to ``path``."""
    z = _Zip(path)
    try:
        z.table("session.csv", ["key", "value"], _session_rows(view, interval_s))
        z.lines("numerics_long.csv", ["time", "elapsed_s", "vital", "value", "unit", "quality", "source"],
                _long_lines(view))
        header, rows = _wide(view, interval_s)
        z.table("numerics_wide.csv", header, rows)
        z.table("nibp.csv", ["time", "elapsed_s", "sys_mmHg", "dia_mmHg", "mean_mmHg", "source", "by", "status"],
                ([iso(r.t), _elapsed(view, r.t), _num(r.sys), _num(r.dia), _num(r.mean), r.source, r.by, r.status]
                 for r in view.nibp))
        z.table("events.csv", ["time", "elapsed_s", "kind", "title", "summary", "detail", "by", "status", "correction",
                               "late", "late_reason", "recorded_at"],
                ([iso(r.t), _elapsed(view, r.t), r.kind, r.title, r.summary, r.detail or "", r.by, r.status,
                  r.correction or "", "yes" if r.late else "", r.late_reason or "",
                  iso(r.recorded_at) if r.late else ""] for r in view.events))
        z.table("assessments.csv", ["time", "elapsed_s", "kind", "title", "score", "summary", "fields", "by",
                                    "status", "correction"],
                ([iso(r.t), _elapsed(view, r.t), r.kind, r.title, _num(r.score), r.summary,
                  json.dumps(r.fields, sort_keys=True, ensure_ascii=False), r.by, r.status, r.correction or ""]
                 for r in view.assessments))
        if view.devices or view.protocol_key == "esketamine":
            z.table("nasal_devices.csv", ["time", "elapsed_s", "device", "dose_mg", "lot_number", "by"],
                    ([iso(r.t), _elapsed(view, r.t), r.number, _num(r.dose_mg), view.lot_number or "", r.by]
                     for r in view.devices))
        else:
            z.table("infusion_steps.csv", ["time", "elapsed_s", "action", "rate_mg_per_h", "reason", "by",
                                           "delivered_mg"],
                    ([iso(r.t), _elapsed(view, r.t), r.action, _num(r.rate_mg_per_h), r.reason or "", r.by,
                      _num(r.delivered_mg)] for r in view.infusion))
        z.table("other_entries.csv", ["time", "elapsed_s", "kind", "title", "summary", "detail", "by"],
                ([iso(r.t), _elapsed(view, r.t), r.kind, r.title, r.summary, r.detail or "", r.by] for r in view.notes))
        z.table("alarms.csv", ["number", "start", "end", "condition", "label", "kind", "priority", "max_priority",
                               "limit", "value", "message", "acknowledged_by", "acknowledged_at", "actions"],
                (_alarm_row(a) for a in view.alarms))
        z.table("alarm_log.csv", ["time", "elapsed_s", "alarm", "condition", "priority", "action", "description", "by",
                                  "pause_s", "paused_for_s"], _alarm_log(view))
        z.table("conditions.csv", ["time", "code", "active", "text", "source"],
                ([iso(t), code, "1" if active else "0", text or "", source]
                 for t, code, active, text, source in view.conditions()))
        z.table("gaps.csv", ["start", "end", "reason"], ([iso(s), iso(e), r] for s, e, r in view.gaps))
        z.close(deid_notice(year_only_dates=True) if view.deidentified else f"Vigil session export: {view.label}")
    except BaseException:
        z.zf.close()
        raise


def _alarm_row(a: Any) -> list[str]:
    ack = a.acknowledged
    actions = "; ".join(f"{iso(x.t)} {x.action}" + (f" {x.detail}" if x.detail else "") + (f" by {x.user}" if x.user else "")
                        for x in a.actions)
    return [str(a.number), iso(a.start), iso(a.end), a.condition, a.label, a.kind, a.priority, a.max_priority,
            _num(a.limit), _num(a.value), a.message, (ack.user or "") if ack else "", iso(ack.t) if ack else "",
            actions]


def _alarm_log(view: SessionView) -> list[list[str]]:
    """Every alarm start, action and end, and every audio pause and its end, in time order. An audio
    pause gives how long it was asked for (``pause_s``); its end (``audio_pause_end`` when it ran its
    time, ``audio_pause_cancel`` when a user ended it) how long it lasted (``paused_for_s``)."""
    events: list[tuple[datetime, int, list[str]]] = []

    def add(t: datetime, order: int, alarm: str, condition: str, priority: str, action: str, description: str,
            by: str | None, pause_s: float | None = None, paused_for_s: float | None = None) -> None:
        events.append((t, order, [iso(t), _elapsed(view, t), alarm, condition, priority, action, description,
                                  by or "", _num(pause_s), _num(paused_for_s)]))

    for a in view.alarms:
        add(a.start, 0, str(a.number), a.condition, a.priority, "start", f"{a.label} started", None)
        for x in a.actions:
            add(x.t, 1, str(a.number), a.condition, x.detail if x.action in ("escalate", "deescalate") else "",
                x.action, x.label, x.user)
        if a.end is not None:
            add(a.end, 2, str(a.number), a.condition, "", "end", f"{a.label} ended", None)
    paused_at: datetime | None = None
    for x in view.system_actions:
        if x.action == "audio_pause":
            paused_at = x.t
            add(x.t, 1, "", "", "", x.action, x.label + (f" for {x.pause_s:g} s" if x.pause_s else ""), x.user,
                pause_s=x.pause_s)
        elif x.action in ("audio_pause_end", "audio_pause_cancel"):
            lasted = (x.t - paused_at).total_seconds() if paused_at is not None else None
            paused_at = None
            add(x.t, 1, "", "", "", x.action, x.label, x.user, paused_for_s=lasted)
        else:
            add(x.t, 1, "", "", "", x.action, x.label, x.user)
    events.sort(key=lambda e: (e[0], e[1]))
    return [row for _, _, row in events]


def _session_rows(view: SessionView, interval_s: float) -> list[list[str]]:
    p = view.patient
    rows = [
        ["format", "vigil-session-csv 1"],
        ["deidentified", "yes" if view.deidentified else "no"],
    ]
    if view.deidentified:
        rows.append(["notice", deid_notice(year_only_dates=True)])
    rows += [["record", line] for line in view.record_notice]
    rows += [
        ["session", view.label],
        ["status", view.status + (" (snapshot of a session still being recorded)" if view.is_open else "")],
        ["clinic", view.clinic_name],
        ["patient", p.display],
        ["mrn", p.mrn or ""],
        ["date_of_birth", p.date_of_birth.isoformat() if p.date_of_birth else ""],
        ["age_years", p.age or ""],
        ["sex", p.sex],
        ["weight_kg", _num(p.weight_kg)],
        ["protocol", view.protocol_label],
        ["plan", view.plan_text],
        ["lot_number", view.lot_number or ""],
        ["dose_delivered_mg", _num(view.delivered_mg)],
        ["date", view.privacy.date_text(view.start)],
        ["start", iso(view.start)],
        ["end", iso(view.end)],
        ["device", view.device],
        ["opened_by", view.opened_by],
        ["signed_by", view.signature.name if view.signature else ""],
        ["signed_at", iso(view.signature.t) if view.signature else ""],
        ["signature_meaning", view.signature.meaning if view.signature else ""],
        ["alarm_limits", view.alarm_limits[-1].source if view.alarm_limits else ""],
        ["alarm_profile_sha256", view.alarm_limits[-1].sha256 if view.alarm_limits else ""],
        ["interval_s", _num(float(interval_s))],
        ["time_zone", "UTC"],
    ]
    for key in view.vitals:
        rows.append([f"unit:{key}", CATALOGUE[key].unit])
    return rows


def _quote(text: str) -> str:
    """One text CSV field, neutralised (:func:`neutralise`) and quoted as the csv module would
    (minimal quoting)."""
    text = neutralise(text)
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _long_lines(view: SessionView) -> Iterator[str]:
    """numerics_long.csv, formatted a chunk of rows at a time (the long table of a 24-hour session
    has ~600 000 rows: the csv module and per-row lists would cost more than everything else, and
    the whole table at once hundreds of MB)."""
    start = view.start_epoch
    flags: dict[int, str] = {}
    units = {k: _quote(s.unit) for k, s in CATALOGUE.items()}
    quoted: dict[str | None, str] = {}
    sources: dict[str, str] = {}
    for rows in view.iter_observation_rows():
        uniq, inverse = np.unique(rows.t, return_inverse=True)
        prefix = [f"{iso(float(t))},{round(float(t) - start, 6)!r}," for t in uniq]
        for q in set(rows.quality) - flags.keys():
            flags[q] = _quote("|".join(sorted(x.value for x in bits_to_quality(q))))
        for u in set(rows.unit) - quoted.keys():
            if u is not None:
                quoted[u] = _quote(u)
        for src in set(rows.source) - sources.keys():
            sources[src] = _quote(src)
        yield "".join(
            f"{prefix[i]}{vital},{'' if value is None else repr(value)},{units[vital] if unit is None else quoted[unit]},"
            f"{flags[q]},{sources[src]}\r\n"
            for i, vital, value, unit, q, src in zip(inverse.tolist(), rows.vital, rows.value, rows.unit, rows.quality,
                                                     rows.source))


def column_name(vital: str) -> str:
    """The wide table's column of a vital: its key and its catalogue unit as a lower-case identifier
    ("hr_bpm", "spo2_pct", "nibp_sys_mmhg", "rr_br_per_min", "temp_degc", "sphb_g_per_dl")."""
    unit = CATALOGUE[vital].unit.lower().replace("%", "pct").replace("/", "_per_").replace("°", "deg")
    unit = re.sub(r"[^a-z0-9_]+", "_", unit).strip("_")
    return f"{vital}_{unit}" if unit else vital


def _wide(view: SessionView, interval_s: float) -> tuple[list[str], list[list[str]]]:
    start, end = view.start_epoch, view.end_epoch
    vitals = view.vitals
    n = max(1, int(np.floor((end - start) / interval_s)) + 1)
    columns: dict[str, np.ndarray] = {}
    for key in vitals:
        t, v = view.valid(key)
        col = np.full(n, np.nan)
        if key in NIBP_KEYS:
            starts, values = interval_last(t, v, start, interval_s)
        else:
            starts, values, _ = interval_medians(t, v, start, interval_s)
        idx = np.round((starts - start) / interval_s).astype(np.int64)
        ok = (idx >= 0) & (idx < n)
        col[idx[ok]] = np.round(values[ok], 6)
        columns[key] = col
    header = ["time", "elapsed_s"] + [column_name(k) for k in vitals]
    rows = []
    texts = {k: [("" if x != x else repr(float(x))) for x in columns[k].tolist()] for k in vitals}
    for i in range(n):
        at = start + i * interval_s
        rows.append([iso(at), repr(float(i * interval_s))] + [texts[k][i] for k in vitals])
    return header, rows
