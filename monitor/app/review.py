"""What the review of a recorded session needs from the record, without Qt.

The review window (:mod:`ui.review`) shows a session after the fact: its trends, waveforms, a
cursor read-out, a table of what was charted and raised, a summary, and it can add a late entry.
Everything it computes comes from here, so that ``ui/`` holds no clinical rule:

* :func:`load_numerics` — one vital's values as numpy arrays, read once (:class:`Series`);
  :meth:`Series.usable` leaves out missing and flagged values (artifact, sensor off …) exactly as
  the exports do (:data:`monitor.app.readmodel.FLAGGED_BITS`).
* :func:`value_at` / :func:`reading_before` — the cursor read-out: the nearest stored value within
  :data:`CURSOR_TOLERANCE_S`; for NIBP the last reading at or before the cursor, with its age.
* :func:`with_gaps` — a series with NaN where the device was silent, so a plot draws a gap.
* :func:`timeline_rows` — events, assessments, infusion steps, nasal devices, notes and alarms of a
  :class:`~monitor.app.readmodel.SessionView` as one time-ordered list, with late entries and
  amendments of the store marked as such.
* :func:`summarize` — per-vital min / max / mean and time outside the default limits (reusing
  :func:`monitor.app.stats.vital_stats`), alarms by priority, dose, phases, discharge criteria.
* :func:`add_late_entry` — chart a note or structured event after the fact on a closed session,
  with a mandatory reason (the store audits it and marks it late).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

import numpy as np

from drivers.catalogue import CATALOGUE, VITAL_KEYS
from monitor.assessments import Event, parse_event
from monitor.app.stats import CONTINUOUS, NIBP_KEYS, VitalStats, vital_stats
from monitor.app.readmodel import FLAGGED_BITS, Criterion, SessionView
from monitor.staff import Actor, RefusedAction
from monitor.store import PRIORITIES, Entry, Envelope, SessionStore, bits_to_quality
from monitor.store.reader import StoreReader

log = logging.getLogger(__name__)

__all__ = [
    "CURSOR_TOLERANCE_S", "GAP_S", "TREND_VITALS", "REVIEW_VITALS", "Series", "Reading", "Envelope", "ReviewLoader",
    "load_numerics", "value_at", "reading_before", "with_gaps", "TimelineRow", "timeline_rows", "ReviewSummary", "summarize", "add_late_entry",
    "LateEntryError", "late_entry_events", "check_late_entry", "duration_text", "elapsed_text",
]

#: The cursor shows a vital's value only when one was stored this close to the cursor (seconds).
CURSOR_TOLERANCE_S = 5.0
#: A silence longer than this (seconds) between two values of a vital is drawn as a gap.
GAP_S = 30.0
#: Vitals the review's trend strips draw (the rest is read for the cursor and the summary).
TREND_VITALS = ("hr", "pr", "spo2", "rr", "etco2", "nibp_sys", "nibp_dia", "nibp_mean")
#: Every vital the review reads, trend vitals first.
REVIEW_VITALS = TREND_VITALS + tuple(k for k in VITAL_KEYS if k not in TREND_VITALS)


class LateEntryError(RefusedAction):
    """A late entry the record does not take (open session, time outside the session, no reason)."""


# ----------------------------------------------------------------------------------------- numerics
class Series(NamedTuple):
    """One vital of a session: ``t`` float64 UTC epoch seconds, ``v`` float64 (NaN where the device
    sent no value), ``q`` int64 quality bits, in time order."""

    t: np.ndarray
    v: np.ndarray
    q: np.ndarray

    def usable(self) -> tuple[np.ndarray, np.ndarray]:
        """``(t, v)`` without missing values and without values carrying a flag that makes them
        unusable for statistics and trends (the exports' rule)."""
        ok = ~np.isnan(self.v) & ((self.q & FLAGGED_BITS) == 0)
        return self.t[ok], self.v[ok]

    def extended(self, more: Series) -> Series:
        """This series followed by the values of ``more`` that are newer than its last one."""
        if not len(self.t):
            return more
        keep = more.t > self.t[-1]
        return Series(np.concatenate([self.t, more.t[keep]]), np.concatenate([self.v, more.v[keep]]),
                      np.concatenate([self.q, more.q[keep]]))


def load_numerics(store: SessionStore, session_id: int, vital: str, after: float | None = None) -> Series:
    """One vital of the session, read once through :meth:`SessionStore.numerics`. ``after``: only
    values newer than this epoch second (a live session's refresh)."""
    start = None if after is None else datetime.fromtimestamp(after, timezone.utc)
    t, v, q = store.numerics(session_id, vital, start, with_quality=True)
    series = Series(t, v, q)
    if after is not None:
        keep = t > after
        series = Series(t[keep], v[keep], q[keep])
    return series


class ReviewLoader:
    """Reads what the review of a session shows, on a background thread, each part once.

    Order: ``record()`` when given (the caller's read of the session's record: the read model and
    its table rows, which the first frame needs), the NIBP keys among ``vitals`` (a few readings),
    the min/max :meth:`SessionStore.numerics_envelope` of each of ``envelopes`` over ``span``
    (epoch s) in ``bins`` bins, then the other ``vitals`` in the order given. Most of a read is
    SQLite walking its index and table, which runs without the GIL, so the UI thread stays free.
    :meth:`get`, :meth:`envelope` and :meth:`record` wait for one result (:meth:`has` says whether
    it is in); :meth:`done` says whether all are read. A vital that cannot be read comes back empty
    (the error is logged); an error reading the record is raised again by :meth:`record`.

    With ``hold=True`` the thread stops before the vitals in full until :meth:`go`: a window still
    making its widgets is not slowed by that reading (it and the window share one interpreter lock).
    """

    def __init__(self, store: SessionStore, session_id: int, vitals: Iterable[str], *,
                 record: Callable[[], Any] | None = None, envelopes: Iterable[str] = (),
                 span: tuple[float, float] | None = None, bins: int = 2000, hold: bool = False) -> None:
        self._store, self._sid = store, session_id
        self._record = record
        self.vitals = list(dict.fromkeys(vitals))
        self.envelopes = list(dict.fromkeys(envelopes)) if span is not None and span[1] > span[0] else []
        first = [v for v in self.vitals if v in NIBP_KEYS]
        rest = [("series", v) for v in self.vitals if v not in first]   # the vitals in full
        self._tasks: list[tuple[str, str]] = ([("record", "")] if record is not None else []) + (
            [("series", v) for v in first] + [("envelope", v) for v in self.envelopes] + rest)
        #: The index of the first task :meth:`go` lets through.
        self._first = len(self._tasks) - len(rest)
        self._span, self._bins = span, bins
        self._results: dict[tuple[str, str], Any] = {}
        self._cond = threading.Condition()
        self._cancelled = threading.Event()
        self._go = threading.Event()
        if not hold:
            self._go.set()
        self._thread = threading.Thread(target=self._run, name=f"review-loader-{session_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for number, (kind, vital) in enumerate(self._tasks):
            if number == self._first:
                self._go.wait()
            if self._cancelled.is_set():
                return
            result: Any
            try:
                if kind == "record":
                    assert self._record is not None
                    result = self._record()
                elif kind == "envelope":
                    assert self._span is not None
                    result = self._store.numerics_envelope(self._sid, vital, *self._span, self._bins)
                else:
                    result = load_numerics(self._store, self._sid, vital)
            except Exception as exc:  # a closed store, a damaged row: the review shows the vital empty
                log.warning("reading %s of session %s failed: %s", vital or "the record", self._sid, exc)
                empty = np.empty(0)
                result = (_Failed(exc) if kind == "record"
                          else Envelope(empty, empty.copy(), empty.copy()) if kind == "envelope"
                          else Series(empty, empty.copy(), np.empty(0, dtype=np.int64)))
            with self._cond:
                self._results[(kind, vital)] = result
                self._cond.notify_all()

    def _wait(self, key: tuple[str, str], timeout: float | None) -> Any:
        if key not in self._tasks:
            raise KeyError(key[1])
        with self._cond:
            if not self._cond.wait_for(lambda: key in self._results, timeout):
                raise TimeoutError(f"{key[1] or 'the record'} of session {self._sid} is still being read")
            return self._results[key]

    def has(self, kind: str, vital: str = "") -> bool:
        """Whether the ``kind`` ("record", "series", "envelope") read of ``vital`` is in."""
        with self._cond:
            return (kind, vital) in self._results

    def record(self, timeout: float | None = None) -> Any:
        """What ``record()`` returned (waiting like :meth:`get`), or the error it raised, raised here."""
        result = self._wait(("record", ""), timeout)
        if isinstance(result, _Failed):
            raise result.error
        return result

    def get(self, vital: str, timeout: float | None = None) -> Series:
        """The vital's series, waiting for it if it is still being read (``TimeoutError`` after
        ``timeout`` seconds; a held loader goes on); ``KeyError`` for a vital this loader does not read."""
        if vital not in NIBP_KEYS:
            self.go()
        return self._wait(("series", vital), timeout)

    def envelope(self, vital: str, timeout: float | None = None) -> Envelope:
        """The vital's envelope, waiting for it like :meth:`get`."""
        return self._wait(("envelope", vital), timeout)

    def ready(self) -> dict[str, Series]:
        """The vitals read so far."""
        with self._cond:
            return {v: r for (kind, v), r in self._results.items() if kind == "series"}

    def done(self) -> bool:
        """True when everything is read."""
        with self._cond:
            return len(self._results) == len(self._tasks)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to finish (a held loader waits for :meth:`go`)."""
        self._thread.join(timeout)

    def go(self) -> None:
        """Read the vitals in full now (see ``hold``)."""
        self._go.set()

    def cancel(self) -> None:
        """Read nothing more (the read in progress ends on its own; :meth:`done` stays False)."""
        self._cancelled.set()
        self._go.set()


@dataclass(frozen=True)
class _Failed:
    """A read that raised (kept to be raised again on the thread that asks)."""

    error: Exception


class Reading(NamedTuple):
    """A stored value as the cursor reads it: epoch second ``t``, ``value``, and the names of the
    flags that make it unusable for statistics (empty for a clean value)."""

    t: float
    value: float
    flags: tuple[str, ...] = ()


def _reading(series: Series, i: int) -> Reading:
    bits = int(series.q[i]) & FLAGGED_BITS
    return Reading(float(series.t[i]), float(series.v[i]),
                   tuple(sorted(f.value for f in bits_to_quality(bits))) if bits else ())


def value_at(series: Series, at: float, within: float = CURSOR_TOLERANCE_S) -> Reading | None:
    """The stored value (not missing) nearest to epoch second ``at`` if it is no further than
    ``within`` seconds, else None. Flagged values are returned with their flags."""
    idx = np.flatnonzero(~np.isnan(series.v)) if np.isnan(series.v).any() else None
    t = series.t if idx is None else series.t[idx]
    if not len(t):
        return None
    i = int(np.searchsorted(t, at))
    best = min((j for j in (i - 1, i) if 0 <= j < len(t)), key=lambda j: abs(t[j] - at))
    if abs(t[best] - at) > within:
        return None
    return _reading(series, best if idx is None else int(idx[best]))


def reading_before(series: Series, at: float) -> Reading | None:
    """The last stored value (not missing) at or before epoch second ``at`` (an NIBP reading is the
    reading in force until the next one), or None."""
    ok = np.flatnonzero(~np.isnan(series.v) & (series.t <= at))
    return _reading(series, int(ok[-1])) if len(ok) else None


def with_gaps(t: np.ndarray, v: np.ndarray, max_gap: float = GAP_S) -> tuple[np.ndarray, np.ndarray]:
    """``(t, v)`` with a NaN inserted after every silence longer than ``max_gap`` seconds, so that a
    line drawn with ``connect="finite"`` breaks there."""
    if len(t) < 2:
        return t, v
    gaps = np.flatnonzero(np.diff(t) > max_gap)
    if not len(gaps):
        return t, v
    return np.insert(t, gaps + 1, t[gaps] + 1e-3), np.insert(v.astype(np.float64), gaps + 1, np.nan)


# ----------------------------------------------------------------------------------------- timeline
@dataclass(frozen=True)
class TimelineRow:
    """One line of the review's table and one marker on its plot.

    ``category``: "event", "assessment", "infusion", "alarm" or "note". ``text``: what happened;
    ``by``: who charted it (for an alarm: who acknowledged it, or ""); ``priority``: the alarm's
    highest priority; ``end``: an alarm's end. ``mark``: "late" (charted after the fact),
    "amendment" (a stored correction), "entered in error" / "correction" (charted corrections), or
    "". ``reason``: why a late entry or amendment was made.
    """

    t: datetime
    category: str
    kind: str
    text: str
    by: str
    priority: str | None = None
    end: datetime | None = None
    mark: str = ""
    reason: str | None = None
    recorded_at: datetime | None = None
    detail: str = ""

    @property
    def epoch(self) -> float:
        """``t`` as epoch seconds."""
        return self.t.timestamp()


def _actor_name(payload: Mapping[str, Any], login: str) -> str:
    by = payload.get("by")
    if isinstance(by, dict):
        return str(by.get("display_name") or by.get("username") or login)
    return login


def _entry_text(entry: Entry) -> str:
    payload = entry.payload
    event = payload.get("event")
    if isinstance(event, dict):
        try:
            return parse_event(event).describe()
        except (ValueError, TypeError):
            return str(event.get("kind", entry.kind))
    for key in ("text", "note", "summary"):
        if isinstance(payload.get(key), str) and payload[key].strip():
            return payload[key].strip()
    return entry.kind.replace("_", " ")


def timeline_rows(view: SessionView, entries: Iterable[Entry] = ()) -> list[TimelineRow]:
    """The session's events, assessments, infusion steps, nasal devices, notes and alarms, in time
    order, from ``view``; ``entries`` (the store's entries of the session) mark late entries and
    add store-level amendments and late entries the view does not show."""
    late = {e.id: e for e in entries if e.is_late}
    amendments = [e for e in entries if e.is_amendment]
    shown_late: set[int] = set()
    rows: list[TimelineRow] = []

    def chart(row: Any) -> TimelineRow:
        entry = late.get(-row.seq) if isinstance(row.seq, int) and row.seq < 0 else None
        mark = row.status if row.status != "current" else ""
        text = row.summary or row.title
        if row.detail:
            text = f"{text}: {row.detail}" if row.kind == "note" else f"{text} – {row.detail}"
        if entry is not None:
            shown_late.add(entry.id)
            return TimelineRow(row.t, row.category, row.kind, text, row.by, mark="late", reason=entry.reason,
                               recorded_at=entry.recorded_at, detail=row.correction or "")
        return TimelineRow(row.t, row.category, row.kind, text, row.by, mark=mark, detail=row.correction or "")

    rows += [chart(r) for r in view.assessments]
    rows += [chart(r) for r in view.events]
    for r in view.infusion:
        text = r.action.replace("_", " ").capitalize()
        if r.rate_mg_per_h is not None:
            text += f" {r.rate_mg_per_h:g} mg/h"
        text += f" ({r.delivered_mg:.1f} mg delivered)"
        if r.reason:
            text += f" – {r.reason}"
        rows.append(TimelineRow(r.t, "infusion", r.action, text, r.by))
    for d in view.devices:
        rows.append(TimelineRow(d.t, "infusion", "nasal_device", f"Nasal device {d.number} ({d.dose_mg:g} mg)", d.by))
    for n in view.notes:
        if n.kind == "amendment":
            continue  # listed from the store below, at the time it refers to
        text = n.title + (f": {n.summary}" if n.summary else "") + (f" – {n.detail}" if n.detail else "")
        rows.append(TimelineRow(n.t, "note", n.kind, text, n.by))
    for a in view.alarms:
        prio = a.priority if a.priority == a.max_priority else f"{a.priority} → {a.max_priority}"
        text = f"{a.label} ({prio})"
        if a.value is not None:
            text += f", value {a.value:g}"
        if a.limit is not None:
            text += f", limit {a.limit:g}"
        ack = a.acknowledged
        by = f"ack. {ack.user or 'unknown'}" if ack is not None else ""
        rows.append(TimelineRow(a.start, "alarm", a.condition, text, by, priority=a.max_priority, end=a.end))
    for e in late.values():
        if e.id in shown_late:
            continue
        category = e.table_kind if e.table_kind in ("event", "assessment") else "note"
        rows.append(TimelineRow(e.t, category, e.kind, _entry_text(e), _actor_name(e.payload, e.user), mark="late",
                                reason=e.reason, recorded_at=e.recorded_at))
    for e in amendments:
        rows.append(TimelineRow(e.t, "note", "amendment", f"Amends entry {e.amends}: {_entry_text(e)}",
                                _actor_name(e.payload, e.user), mark="amendment", reason=e.reason,
                                recorded_at=e.recorded_at))
    rows.sort(key=lambda r: r.t)
    return rows


# ----------------------------------------------------------------------------------------- summary
@dataclass(frozen=True)
class ReviewSummary:
    """The summary panel's figures (see :func:`summarize`)."""

    vitals: list[VitalStats]
    alarms_by_priority: dict[str, int]
    technical_alarms: int
    delivered_mg: float | None
    planned_mg: float | None
    phases: list[tuple[str, float]]
    discharge: list[Criterion]
    discharge_source: str
    duration_s: float
    gaps: list[tuple[datetime, datetime, str]] = field(default_factory=list)
    #: The alarm profile in force (:attr:`SessionView.alarm_limits_text`).
    alarm_limits: str = ""


def summarize(view: SessionView, numerics: Mapping[str, Series]) -> ReviewSummary:
    """Per vital (continuous vitals and NIBP, catalogue order): usable values, min / max / mean and
    time (or NIBP readings) outside the default limits; alarms counted by their highest priority;
    the dose delivered and planned; each phase's duration (s); the discharge criteria; the alarm
    profile in force."""
    stats = []
    for key in CATALOGUE:
        if key not in numerics or (key not in CONTINUOUS and key not in NIBP_KEYS):
            continue
        t, v = numerics[key].usable()
        if len(t):
            stats.append(vital_stats(key, t, v))
    counts = {p: sum(1 for a in view.alarms if a.max_priority == p) for p in reversed(PRIORITIES)}
    phases = [(ph.label, (ph.end - ph.start).total_seconds()) for ph in view.phases]
    return ReviewSummary(stats, counts, sum(1 for a in view.alarms if a.kind == "technical"), view.delivered_mg,
                         view.planned_dose_mg, phases, list(view.discharge), view.discharge_source,
                         (view.end - view.start).total_seconds(), list(view.gaps), view.alarm_limits_text)


# ----------------------------------------------------------------------------------------- late entries
def late_entry_events() -> dict[str, str]:
    """Event kinds a late entry may chart: kind → title (a free-text note first)."""
    from monitor.assessments import EVENTS
    kinds = {"note": EVENTS["note"].title}
    kinds.update({k: cls.title for k, cls in EVENTS.items() if k != "note"})
    return kinds


def check_late_entry(store: StoreReader, session_id: int, event: Mapping[str, Any], t: datetime,
                     reason: str) -> Event:
    """Everything :func:`add_late_entry` checks before recording, without recording: return the
    validated event or raise (:class:`LateEntryError`, or the event model's refusal)."""
    record = store.get_session(session_id)
    if record.is_open:
        raise LateEntryError("This session is still open: chart it from the monitoring window")
    if t.tzinfo is None:
        raise LateEntryError("The time of a late entry must carry its time zone")
    end = record.ended_at or record.started_at
    if not record.started_at <= t <= end:
        raise LateEntryError(f"The time must be within the session ({_clock(record.started_at)}–{_clock(end)})")
    model = parse_event(event)
    if not isinstance(reason, str) or not reason.strip():
        raise LateEntryError("Give the reason for the late entry")
    return model


def add_late_entry(store: SessionStore, session_id: int, event: Mapping[str, Any], t: datetime, actor: Actor,
                   reason: str) -> int:
    """Chart ``event`` (an event payload: ``{"kind": "note", "text": …}``, a preset event with
    severity/comment, a rescue medication …) after the fact, at clinical time ``t``, on a closed or
    ended session, as ``actor``, with ``reason`` (required); return the new entry's id.

    The entry has the shape of a charted event (``type`` "event", the validated event, ``by``), so
    the review and the exports show it with the session's events; the store keeps ``reason``,
    marks it a late entry and audits it. Refused (:class:`LateEntryError`): an open session (chart
    it from the live window), a time outside the session, an empty reason; a bad event raises the
    event model's refusal (see :func:`check_late_entry`).
    """
    model = check_late_entry(store, session_id, event, t, reason)
    payload = {"type": "event", "t": t.astimezone(timezone.utc).isoformat(), "by": actor.to_payload(),
               "event": model.to_payload(), "late": True}
    return store.add_entry(session_id, "event", t, model.kind, payload, actor.username, reason=reason.strip())


def _clock(t: datetime) -> str:
    return t.astimezone().strftime("%H:%M:%S")


def duration_text(seconds: float) -> str:
    """A duration for the screen: "42 min", "3 h 05 min", "45 s"."""
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def elapsed_text(seconds: float) -> str:
    """Time from the session start: "+1:02:03" (h:mm:ss), "−0:00:05" before it."""
    sign = "−" if seconds < 0 else "+"
    total = int(round(abs(seconds)))
    return f"{sign}{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"

