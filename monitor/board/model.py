"""The clinic board's rules: what each chair tile shows, the board's own technical alarms, and
which priority the board sounds. Pure and Qt-free: messages and the time are passed in.

The board is a secondary display of a distributed alarm system (IEC 60601-1-8 §6.11): it shows
the chairs' alarms as the chairs publish them and never changes them. What only the board can
know becomes a *board technical alarm*, so that a failed link is never mistaken for a quiet
patient:

* ``chair_offline`` — the broker published the chair's last will (its Vigil or its network died),
  or the chair's Vigil was closed while a session was open: MEDIUM, HIGH when the chair's last
  alarm state had an active alarm.
* ``chair_stale`` — nothing heard from an online chair for :data:`STALE_AFTER_S` (10 s; the
  chair sends vitals every second): MEDIUM, HIGH likewise.
* ``board_disconnected`` — the board itself has had no broker for :data:`STALE_AFTER_S`: one alarm
  (MEDIUM, HIGH if any chair had an active alarm) instead of one per chair.
* ``board_audio_unavailable`` — the board cannot sound alarms (no sound device, the sound system
  failed): MEDIUM, shown for as long as it lasts, so that nobody relies on a silent board.

A chair whose Vigil was closed with no session open raises nothing (the end of a day).
The board sounds the highest of: each fresh online chair's *audio* priority (what sounds at the
chair: an alarm acknowledged or paused there is silent here too) and its unacknowledged board
technical alarms. A board user may acknowledge a board technical alarm (its sound stops; it stays
shown until its cause ends); a new or higher one sounds again.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.alarms.engine import UNRELIABLE
from monitor.alarms.profile import Priority
from monitor.board.messages import (
    AlarmsMessage, MessageError, SessionInfo, SessionMessage, StatusMessage, VitalsMessage, WaveBlock, WavesMessage,
    decode, parse_topic, priority_name,
)

#: Seconds without any message from an online chair before ``chair_stale``.
STALE_AFTER_S = 10.0
#: Seconds of SpO2 kept for a tile's trend, and of waves for the detail view.
TREND_S = 300.0
WAVE_S = 10.0
#: Vitals a tile shows, in order: (label, keys).
TILE_VITALS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SpO2", ("spo2",)), ("PR", ("pr", "hr")), ("NIBP", ("nibp_sys", "nibp_dia")), ("RR", ("rr",)),
    ("EtCO2", ("etco2",)),
)
#: A numeric older than this at the chair when sent is shown as old (NIBP: a reading lasts).
NUMERIC_OLD_S = 15.0
NIBP_OLD_S = 30 * 60.0
#: Quality flags that make a value unreliable (as the alarm engine judges them).
UNRELIABLE_FLAGS = frozenset(q.value for q in UNRELIABLE)
PHASE_LABELS = {"baseline": "baseline", "infusion": "dosing", "recovery": "recovery",
                "discharged": "discharged", "aborted": "ended"}


@dataclass(frozen=True)
class BoardAlarm:
    """A technical alarm raised by the board itself (see the module docstring)."""

    chair: str           # "" for the board's own connection
    condition: str       # chair_offline | chair_stale | board_disconnected | board_audio_unavailable
    priority: Priority
    text: str
    since: datetime


@dataclass
class Chair:
    """What the board holds about one chair (its latest messages, times on the board's clock)."""

    name: str
    status: StatusMessage | None = None
    session: SessionInfo | None = None
    session_t: datetime | None = None
    vitals: VitalsMessage | None = None
    alarms: AlarmsMessage | None = None
    last_heard: datetime | None = None
    offline_since: datetime | None = None
    trend: deque = field(default_factory=lambda: deque(maxlen=int(TREND_S) + 5))
    waves: dict[str, deque] = field(default_factory=dict)

    @property
    def had_active_alarm(self) -> bool:
        """True when the chair's last alarm state had an active alarm."""
        return self.alarms is not None and any(a.active for a in self.alarms.alarms)


@dataclass(frozen=True)
class TileView:
    """Everything a chair tile shows, decided here (the widget only draws it).

    ``priority`` is the tile's alarm colour (None: none), ``banner`` its alarm line, ``state`` one
    of online/offline/stale/closed/waiting; ``numerics`` are ``(label, text, old)``; ``trend`` is
    SpO2 as ``(seconds before now, value)``; ``sequence`` the chair's alarm state shown."""

    chair: str
    state: str
    patient: str
    phase: str
    clock: str
    numerics: tuple[tuple[str, str, bool], ...]
    priority: str | None
    banner: str
    alarm_count: int
    trend: tuple[tuple[float, float], ...]
    sequence: int
    board_alarm: BoardAlarm | None


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name))


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "--"
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"


class BoardModel:
    """The board's state for one clinic. Feed it with :meth:`receive` and :meth:`set_connected`;
    ask it with :meth:`tile`, :meth:`board_alarms`, :meth:`audio_priority`. ``now`` is always
    passed in (aware UTC, the board's clock)."""

    def __init__(self, clinic: str, stale_after_s: float = STALE_AFTER_S) -> None:
        self.clinic = clinic
        self.stale_after = timedelta(seconds=stale_after_s)
        self.chairs: dict[str, Chair] = {}
        self.rejected = 0
        self.last_error = ""
        self.connected = False
        self._disconnected_since: datetime | None = None
        self._acked: dict[tuple[str, str], Priority] = {}
        self._audio_lost: tuple[datetime, str] | None = None  # since when, and why

    # ------------------------------------------------------------------ inputs
    def set_connected(self, connected: bool, now: datetime) -> None:
        """The board's own connection to the broker came up or went down."""
        if connected:
            self._disconnected_since = None
        elif self.connected or self._disconnected_since is None:
            self._disconnected_since = now
        self.connected = connected

    def set_audio(self, available: bool, reason: str, now: datetime) -> None:
        """The board's alarm sound became unavailable (``reason`` says why) or came back."""
        if available:
            self._audio_lost = None
        elif self._audio_lost is None or self._audio_lost[1] != reason:
            self._audio_lost = (now if self._audio_lost is None else self._audio_lost[0], reason)

    def receive(self, topic: str, payload: bytes, now: datetime) -> str | None:
        """Take one message; returns the chair it changed, or None when it was refused (counted in
        :attr:`rejected`, the reason in :attr:`last_error`: another clinic, a bad topic or payload)."""
        try:
            clinic, name, kind = parse_topic(topic)
            if clinic != self.clinic:
                raise MessageError(f"message for clinic {clinic!r} on the board of {self.clinic!r}")
            if not payload:   # a retained message cleared by the administrator
                self.chairs.pop(name, None) if kind == "status" else None
                return None
            message = decode(kind, payload)
            if message.chair != name:
                raise MessageError(f"{topic}: the message names chair {message.chair!r}")
        except MessageError as exc:
            self.rejected += 1
            self.last_error = str(exc)
            return None
        chair = self.chairs.get(name)
        if chair is None:
            chair = self.chairs[name] = Chair(name)
        if isinstance(message, StatusMessage):
            chair.status = message
            chair.offline_since = now if message.state == "offline" else None
            if message.state == "online":
                chair.last_heard = now
            return name
        chair.last_heard = now
        if isinstance(message, VitalsMessage):
            chair.vitals = message
            spo2 = message.numerics.get("spo2")
            if spo2 is not None and spo2.value is not None and not UNRELIABLE_FLAGS.intersection(spo2.flags):
                chair.trend.append((now, spo2.value))
        elif isinstance(message, AlarmsMessage):
            if chair.alarms is None or message.seq != chair.alarms.seq or message.t >= chair.alarms.t:
                chair.alarms = message
        elif isinstance(message, WavesMessage):
            for block in message.blocks:
                blocks = chair.waves.setdefault(block.channel, deque())
                blocks.append(block)
                while blocks and (block.start - blocks[0].start).total_seconds() > WAVE_S:
                    blocks.popleft()
        elif isinstance(message, SessionMessage):
            chair.session = message.session
            chair.session_t = message.t
        return name

    def acknowledge(self, now: datetime) -> list[BoardAlarm]:
        """A board user acknowledged the board's technical alarms present now: their sound stops
        (an alarm that starts later or rises sounds again). Returns those acknowledged."""
        alarms = self.board_alarms(now)
        for alarm in alarms:
            self._acked[(alarm.chair, alarm.condition)] = alarm.priority
        return alarms

    # ------------------------------------------------------------------ rules
    def _disconnected(self, now: datetime) -> bool:
        return self._disconnected_since is not None and now - self._disconnected_since >= self.stale_after

    def chair_alarm(self, chair: Chair, now: datetime) -> BoardAlarm | None:
        """The board technical alarm for one chair at ``now``, or None."""
        if self._disconnected(now) or (not self.connected and self._disconnected_since is not None):
            return None  # the board's own link is the cause: see board_alarms
        priority = Priority.HIGH if chair.had_active_alarm else Priority.MEDIUM
        status = chair.status
        if status is not None and status.state == "offline":
            since = chair.offline_since or now
            if status.reason == "closed":
                if chair.session is None:
                    return None
                return BoardAlarm(chair.name, "chair_offline", priority,
                                  f"{chair.name}: Vigil closed during a session", since)
            return BoardAlarm(chair.name, "chair_offline", priority, f"{chair.name} offline: connection lost", since)
        if chair.last_heard is None or now - chair.last_heard >= self.stale_after:
            since = chair.last_heard or now
            age = (now - chair.last_heard).total_seconds() if chair.last_heard else None
            text = f"{chair.name}: no data for {age:.0f} s" if age is not None else f"{chair.name}: no data"
            return BoardAlarm(chair.name, "chair_stale", priority, text, since)
        return None

    def board_alarms(self, now: datetime) -> list[BoardAlarm]:
        """Every board technical alarm at ``now``, highest priority first."""
        own: list[BoardAlarm] = []
        if self._audio_lost is not None:
            own.append(BoardAlarm("", "board_audio_unavailable", Priority.MEDIUM,
                                  f"Board alarm sound unavailable: {self._audio_lost[1]}", self._audio_lost[0]))
        if self._disconnected_since is not None and self._disconnected(now):
            priority = Priority.HIGH if any(c.had_active_alarm for c in self.chairs.values()) else Priority.MEDIUM
            return sorted([*own, BoardAlarm("", "board_disconnected", priority,
                                            "Board not connected to the broker: chairs are not being watched",
                                            self._disconnected_since)], key=lambda a: -a.priority)
        alarms = own + [a for c in self.chairs.values() if (a := self.chair_alarm(c, now)) is not None]
        present = {(a.chair, a.condition) for a in alarms}
        for key in [k for k in self._acked if k not in present]:
            del self._acked[key]
        return sorted(alarms, key=lambda a: (-a.priority, _natural(a.chair)))

    def _fresh(self, chair: Chair, now: datetime) -> bool:
        return (chair.status is None or chair.status.state == "online") and chair.last_heard is not None \
            and now - chair.last_heard < self.stale_after and self.connected

    def audio_priority(self, now: datetime) -> Priority | None:
        """The priority the board sounds now (see the module docstring), or None."""
        sounding: list[Priority] = []
        for chair in self.chairs.values():
            if self._fresh(chair, now) and chair.alarms is not None and chair.alarms.audio_priority:
                sounding.append(Priority[chair.alarms.audio_priority])
        for alarm in self.board_alarms(now):
            acked = self._acked.get((alarm.chair, alarm.condition))
            if acked is None or alarm.priority > acked:
                sounding.append(alarm.priority)
        return max(sounding) if sounding else None

    def ordered(self) -> list[Chair]:
        """The chairs in natural name order (chair-2 before chair-10)."""
        return [self.chairs[n] for n in sorted(self.chairs, key=_natural)]

    def can_acknowledge(self, name: str, allowed: bool, now: datetime) -> bool:
        """Whether a board user may acknowledge chair ``name``'s alarms now: only when the clinic
        allows it, the chair is live, and it has an active unacknowledged alarm."""
        chair = self.chairs.get(name)
        return bool(allowed and chair is not None and self._fresh(chair, now) and chair.alarms is not None
                    and any(a.active and not a.acknowledged for a in chair.alarms.alarms))

    # ------------------------------------------------------------------ what a tile shows
    def tile(self, name: str, now: datetime) -> TileView:
        """The tile of chair ``name`` at ``now`` (KeyError for a chair never heard of)."""
        chair = self.chairs[name]
        board_alarm = self.chair_alarm(chair, now)
        status = chair.status
        if status is not None and status.state == "offline":
            state = "closed" if status.reason == "closed" else "offline"
        elif chair.last_heard is None:
            state = "waiting"
        elif not self._fresh(chair, now):
            state = "stale"
        else:
            state = "online"
        session = chair.session
        patient = (session.patient_name or session.patient_initials) if session else "no session"
        phase = PHASE_LABELS.get(session.phase, session.phase) if session else ""
        clock = ""
        if session is not None:  # elapsed when the session was sent, plus the chair's time since
            later = chair.vitals.t if chair.vitals is not None and chair.session_t is not None else chair.session_t
            clock = _duration(session.elapsed_s + max(0.0, (later - chair.session_t).total_seconds())
                              if later is not None and chair.session_t is not None else session.elapsed_s)
        numerics = tuple(self._numeric(chair, label, keys) for label, keys in TILE_VITALS)
        alarms = chair.alarms.alarms if chair.alarms is not None else ()
        priority = chair.alarms.visual_priority if chair.alarms is not None and state == "online" else None
        banner = ""
        if alarms and state == "online":
            top = alarms[0]
            banner = f"{top.priority}  {top.text}" + (f"  +{len(alarms) - 1}" if len(alarms) > 1 else "")
        if board_alarm is not None and (priority is None or board_alarm.priority >= Priority[priority]):
            priority, banner = priority_name(board_alarm.priority.name), board_alarm.text
        cutoff = now - timedelta(seconds=TREND_S)
        trend = tuple(((now - t).total_seconds(), v) for t, v in chair.trend if t >= cutoff)
        return TileView(chair.name, state, patient, phase, clock, numerics, priority, banner, len(alarms), trend,
                        chair.alarms.seq if chair.alarms is not None else 0, board_alarm)

    @staticmethod
    def _numeric(chair: Chair, label: str, keys: tuple[str, ...]) -> tuple[str, str, bool]:
        vitals = chair.vitals
        if vitals is None:
            return label, "--", True
        if label == "NIBP":
            sys_, dia = vitals.numerics.get("nibp_sys"), vitals.numerics.get("nibp_dia")
            if sys_ is None:
                return label, "--/--", True
            old = (vitals.t - sys_.t).total_seconds() > NIBP_OLD_S
            return label, f"{_fmt(sys_.value)}/{_fmt(dia.value if dia else None)}", old
        for key in keys:
            numeric = vitals.numerics.get(key)
            if numeric is not None:
                old = bool(UNRELIABLE_FLAGS.intersection(numeric.flags)) or \
                    (vitals.t - numeric.t).total_seconds() > NUMERIC_OLD_S
                return label, _fmt(numeric.value), old
        return label, "--", True

    def waves(self, name: str) -> dict[str, list[WaveBlock]]:
        """The chair's waveform blocks of the last :data:`WAVE_S` seconds, by channel."""
        chair = self.chairs.get(name)
        return {k: list(v) for k, v in chair.waves.items()} if chair is not None else {}
