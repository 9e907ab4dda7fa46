"""The recording pipeline: device → alarm engine → recorder → store writer → listeners, on its own thread.

One :class:`Pipeline` per chair. It owns the device's acquisition worker (a thread reading the
link), the alarm engine, the session recorder (while a session is open) and the store writer (a
thread writing the record), and runs alarm evaluation and recording on **its own thread**: device
batches, ticks (5 a second: escalations, pause expiry, delays that run out between batches) and
staff commands are all handled there, in arrival order. Nothing it does waits on a screen, a
network or a slow consumer: listeners (:class:`~monitor.app.listeners.PipelineListener` — the
window's Qt bridge, the clinic-board publisher, the replication worker) are called on the
pipeline thread and must return at once.

Staff commands reach it through :meth:`Pipeline.call`, which runs a function on the pipeline thread
and returns its result (or raises its refusal) to the caller; :class:`~monitor.app.service.SessionService`
is the typed front of those commands. The window and ``vigil record`` build the pipeline the same
way (:func:`open_pipeline`).

Times: every time here is on the device link's timeline (``drivers.timebase``: monotonic seconds
labelled with the wall clock), so no duration moves when the computer's clock is set; a jump of the
wall clock is logged and recorded in the session (``clock_jump``). Monitoring never stops silently: a
watchdog on the ticks raises ``acquisition_stopped`` when the acquisition worker's thread has died
or stopped reporting, and replaces a dead one. While a session is recorded, the decoder's counts of
rejected input are recorded in it (``device_stats``).

Shutdown order: stop the acquisition worker (no more batches), let the pipeline thread handle what
is queued and stop, then stop the writer (everything queued is written). An open session stays open,
to be resumed.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from drivers.acquisition import AcquisitionWorker, Link, LinkState
from drivers.base import DecoderStats, condition_text
from drivers.model import DeviceCondition, Item
from drivers.timebase import ClockJump, JumpDetector
from drivers.transport import DeviceSpec, open_link, parse_device_url
from monitor.alarms.engine import AlarmEngine, AlarmEvent, AlarmState
from monitor.alarms.profile import AlarmProfile
from monitor.app.listeners import PipelineListener, SessionSnapshot
from monitor.app.recorder import SessionRecorder, make_engine
from monitor.app.snapshot import snapshot_from_state
from monitor.session import SessionState
from monitor.session.record import EntryBase
from monitor.settings import ClinicSettings
from monitor.store import SessionStore, StoreWriter

log = logging.getLogger(__name__)

__all__ = ["Pipeline", "open_pipeline", "TICK_S", "SNAPSHOT_EVERY_S", "WATCHDOG_GRACE_S", "RESTART_EVERY_S",
           "DEVICE_STATS_EVERY_S"]

#: Seconds between ticks of the alarm engine and the recorder.
TICK_S = 0.2
#: A session snapshot is published at least this often (dose, count-downs move on), seconds.
SNAPSHOT_EVERY_S = 10.0
#: Seconds past the time an acquisition worker promised to report back (``AcquisitionWorker.due``)
#: before the watchdog raises ``acquisition_stopped``.
WATCHDOG_GRACE_S = 3.0
#: Seconds between restarts of an acquisition worker whose thread died.
RESTART_EVERY_S = 2.0
#: While a session is recorded, the device decoder's counts are recorded in it at most this often
#: (seconds), when what it rejected changed; and once more when the session ends.
DEVICE_STATS_EVERY_S = 60.0
_T = TypeVar("_T")
_STOP = object()


class _Inbox:
    """The acquisition worker's listener: everything goes into the pipeline's queue."""

    def __init__(self, q: queue.SimpleQueue[Any]) -> None:
        self._q = q

    def items_received(self, items: list[Item]) -> None:
        self._q.put(("batch", items))

    def link_changed(self, state: LinkState, detail: str, attempt: int) -> None:
        self._q.put(("link", state, detail, attempt))


class Pipeline:
    """One chair's recording pipeline (see the module docstring).

    ``link``: the device (not yet opened); ``store``: the chair's record; ``settings``/``profile``:
    the clinic's settings and alarm profile in force. ``listeners`` receive everything (more can be
    added with :meth:`add_listener` before :meth:`start`). ``tick_s``: seconds between ticks. The
    store writer runs from construction (commands may be recorded before the device starts):
    always end a pipeline with :meth:`stop`.
    """

    def __init__(self, link: Link, store: SessionStore, settings: ClinicSettings, profile: AlarmProfile, *,
                 listeners: Iterable[PipelineListener] = (), tick_s: float = TICK_S, device_label: str = "",
                 on_writer_error: Callable[[BaseException], None] | None = None,
                 light_commit_s: float | None = None) -> None:
        self.link = link
        self.store = store
        self.settings = settings
        self.profile = profile
        #: The limits in force: the clinic's profile, adjusted for the current session.
        self.session_profile = profile
        self.device_label = device_label or link.source
        self.tick_s = tick_s
        self.engine: AlarmEngine = make_engine(profile, settings)
        # device data committed every 30 s (what is not committed yet is safe in the tail file);
        # with light_commit_s, numerics and conditions also every light_commit_s seconds, for a
        # reader of the file that must see them sooner (the waveforms still every 30 s)
        self.writer = StoreWriter(store, on_error=on_writer_error, light_commit_interval=light_commit_s)
        self.writer.start()   # writes may be queued before the device starts; stop() ends it
        self.recorder: SessionRecorder | None = None
        self.link_state = LinkState.CONNECTING.value
        self.link_detail = ""
        #: Reconnect attempts since the link was lost.
        self.link_attempt = 0
        #: The parsed device URL, when the device was given as one.
        self.device_spec: DeviceSpec | None = None
        self._listeners: list[PipelineListener] = list(listeners)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._worker: AcquisitionWorker | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._alarm_state: AlarmState = self.engine.state()
        self._dirty = False
        self._session_view: SessionState | None = None
        self._last_snapshot = 0.0
        self._clock = JumpDetector(link.timeline)
        self._session_seen: SessionRecorder | None = None   # the session last set up by session_changed
        self._stopping = False
        self._watchdog_on = False      # acquisition_stopped raised by the watchdog
        self._heard = False            # a batch arrived since it was raised
        self._restart_at = 0.0
        self._stats_base: DecoderStats | None = None   # the decoder's counts when the session started
        self._stats_recorded: tuple[int, ...] = ()
        self._stats_due = 0.0

    # ------------------------------------------------------------------ lifecycle
    def add_listener(self, listener: PipelineListener) -> None:
        """Add a consumer (before :meth:`start`, or from the pipeline thread)."""
        self._listeners.append(listener)

    @property
    def running(self) -> bool:
        """True while the pipeline thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the writer, the pipeline thread and the device (no-op if running)."""
        if self.running:
            return
        self._running = True
        self._thread = threading.Thread(target=self._run, name="vigil pipeline", daemon=True)
        self._thread.start()
        self._start_worker()

    def _start_worker(self) -> None:
        worker = AcquisitionWorker(self.link, [_Inbox(self._queue)])
        self._worker = worker
        worker.start()
        if self._stopping:   # stop() ran meanwhile (a watchdog restart) and may have missed this one
            worker.stop(1.0)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the device, let the pipeline finish what is queued, and flush the store (an open
        session stays open, to be resumed)."""
        self._stopping = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(min(timeout, 2.0))
        thread = self._thread
        if thread is not None and thread.is_alive():  # self.running
            self._queue.put(_STOP)
            thread.join(timeout)
        self._running = False
        self.writer.stop(timeout)

    def switch_device(self, link: Link, label: str = "", spec: DeviceSpec | None = None) -> None:
        """Read another device (refused while a session is recorded). Runs on the pipeline thread."""
        def work() -> None:
            if self.recorder is not None:
                raise ValueError("the device cannot be changed while a session is being recorded")
            worker, self._worker = self._worker, None
            if worker is not None:
                worker.stop(1.0)
            self.link = link
            if link.timeline is not self._clock.timeline:
                self._clock = JumpDetector(link.timeline)
            self.device_label = label or link.source
            self.device_spec = spec
            self.link_state, self.link_detail, self.link_attempt = LinkState.CONNECTING.value, "", 0
            self.engine = make_engine(self.session_profile, self.settings)
            self._publish_state()
            if self._running:
                self._start_worker()
        self.call(work)

    def feed(self, items: list[Item]) -> None:
        """Hand the pipeline device items as if the device had sent them (a replay, a test): queued
        behind what arrived before while running, handled at once otherwise."""
        if self.running:
            self._queue.put(("batch", list(items)))
        else:
            self._batch(list(items))

    # ------------------------------------------------------------------ commands
    def call(self, fn: Callable[[], _T], timeout: float = 30.0) -> _T:
        """Run ``fn`` on the pipeline thread and return its result (its exception is raised here).
        From the pipeline thread itself, or before :meth:`start`, ``fn`` runs at once."""
        if not self.running or threading.current_thread() is self._thread:
            return fn()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._queue.put(("call", fn, future))
        return future.result(timeout)

    # ------------------------------------------------------------------ queries (any thread)
    def now(self) -> datetime:
        """Now on the record's timeline: the device's clock (the simulated one for the simulated
        monitor), re-based like its data after a resume."""
        now = self.link.clock()
        recorder = self.recorder
        return now + recorder.time_offset if recorder is not None else now

    def alarm_state(self) -> AlarmState:
        """The alarm state published last (a copy: safe to keep and read on any thread)."""
        return self._alarm_state

    def session_view(self) -> SessionState | None:
        """A read-only replica of the session being recorded (None without one), replaced after
        every change: safe to read on any thread; changing it changes nothing."""
        return self._session_view

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            wait = max(0.0, next_tick - time.monotonic())
            try:
                message = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                message = None
            if message is _STOP:
                self._drain()
                return
            if message is not None:
                self._handle(message)
            if time.monotonic() >= next_tick:
                self._guard(self._tick)
                next_tick = max(next_tick + self.tick_s, time.monotonic())

    def _drain(self) -> None:
        while True:
            try:
                message = self._queue.get_nowait()
            except queue.Empty:
                return
            if message is not _STOP:
                self._handle(message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "batch":
            self._heard = True
            self._guard(self._batch, message[1])
        elif kind == "link":
            state, detail = message[1], message[2]
            self.link_state, self.link_detail, self.link_attempt = state.value, detail, message[3]
            self._notify("on_link", state.value, detail)
        elif kind == "call":
            fn, future = message[1], message[2]
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # the caller gets it
                    future.set_exception(exc)

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a fault in one batch must not stop alarms for the next
            log.exception("the pipeline failed on %s", getattr(fn, "__name__", fn))

    def _batch(self, items: list[Item]) -> None:
        recorder = self.recorder
        if recorder is not None:
            items = recorder.rebase(items)
            before = len(recorder.state.entries)
            recorder.on_items(items)   # its alarm events reach the listeners through on_recorder_event
            if not self._entries_since(recorder, before) and self._session_view is not None:
                self._session_view.latest = dict(recorder.state.latest)   # the discharge check reads them
            events: list[AlarmEvent] = []
        else:
            events = self.engine.process(items)
        self._notify("on_batch", items)
        self._after(events)

    def _tick(self) -> None:
        self._check_clock()
        self._watch_acquisition()
        now = self.now()
        recorder = self.recorder
        if recorder is not None:
            before = len(recorder.state.entries)
            recorder.tick(now)
            self._entries_since(recorder, before)
            events: list[AlarmEvent] = []
        else:
            events = self.engine.tick(now)
        self._after(events, always=True)
        if recorder is not None and time.monotonic() - self._last_snapshot >= SNAPSHOT_EVERY_S:
            self._publish_session()
        if recorder is not None and self.link.timeline.monotonic() >= self._stats_due:
            self.record_device_stats()

    def _entries_since(self, recorder: SessionRecorder, before: int) -> bool:
        """Entries the recorder made on its own from device data or time (a device NIBP reading, a
        computed baseline) since it had ``before``: the replica and the screens learn them as they
        learn a command's. True when there were any."""
        entries = recorder.state.entries[before:]
        if entries:
            self.entries_recorded(entries)
        return bool(entries)

    def on_recorder_event(self, event: AlarmEvent) -> None:
        """The recorder's alarm events (logged in the session): to the listeners; the state is
        published after the work that caused them."""
        self._notify("on_alarm_event", event)
        self._dirty = True

    def _after(self, events: list[AlarmEvent], always: bool = False) -> None:
        """After a batch, a tick or a command: tell the listeners the engine's own events (without a
        session; a session's come through :meth:`on_recorder_event`) and publish the state if it
        may have changed."""
        for event in events:
            self._notify("on_alarm_event", event)
        if events or always or self._dirty:
            self._dirty = False
            self._publish_state()

    def _publish_state(self) -> None:
        recorder = self.recorder
        now = self.now()
        if recorder is not None and recorder.now is not None:
            now = max(now, recorder.now)
        state = self.engine.state(now)
        self._alarm_state = AlarmState([replace(a) for a in state.alarms], state.visual_priority,
                                       state.audio_priority, replace(state.inactivation))
        self._notify("on_alarm_state", self._alarm_state)

    def _notify(self, method: str, *args: Any) -> None:
        for listener in self._listeners:
            try:
                getattr(listener, method)(*args)
            except Exception:  # a faulty consumer must never stop recording or alarms
                log.exception("pipeline listener %r failed in %s", listener, method)

    # ------------------------------------------------------------------ session plumbing (pipeline thread)
    def entries_recorded(self, entries: list[EntryBase]) -> None:
        """After a command recorded ``entries``: refresh the replica and tell the listeners."""
        self._refresh_view()
        if entries:
            self._notify("on_entries", list(entries))
        self._publish_session()

    def session_changed(self) -> None:
        """A session started, resumed or ended."""
        recorder = self.recorder
        if recorder is not None and recorder is not self._session_seen:
            self._session_seen = recorder
            self._stats_base, self._stats_recorded = self.link.stats, ()
            self._stats_due = self.link.timeline.monotonic() + DEVICE_STATS_EVERY_S
            offset = self._clock.offset_s
            if abs(offset) > self._clock.threshold_s:   # the wall clock jumped before this session
                self._record_clock_jump(ClockJump(self._clock.timeline.now(), 0.0, offset))
        self._refresh_view()
        self._publish_session()

    # ------------------------------------------------------------------ the watchdog (pipeline thread)
    def _watch_acquisition(self) -> None:
        """Monitoring never stops silently: when the acquisition worker's thread has died, or has not
        reported back for :data:`WATCHDOG_GRACE_S` past the time it promised, ``acquisition_stopped``
        (a device-link alarm) is raised; a dead worker is replaced every :data:`RESTART_EVERY_S`
        seconds; the condition ends with the next batch from a worker that is running."""
        worker = self._worker
        if worker is None or worker.stopping or self._stopping:
            return
        now = self.link.timeline.monotonic()
        dead = not worker.is_alive()
        late = now > worker.due + WATCHDOG_GRACE_S
        if dead or late:
            if not self._watchdog_on:
                self._watchdog_on, self._heard = True, False
                log.error("the acquisition thread of %s %s: raising acquisition_stopped", self.link.source,
                          "has ended" if dead else f"has not reported for {now - worker.due:.0f} s past its time")
                self._acquisition_condition(True)
            if dead and now >= self._restart_at:
                self._restart_at = now + RESTART_EVERY_S
                log.warning("restarting the acquisition of %s", self.link.source)
                try:
                    self.link.close()
                except Exception:
                    log.exception("closing %s before the restart failed", self.link.source)
                self._start_worker()
        elif self._watchdog_on and self._heard:
            self._watchdog_on = False
            self._acquisition_condition(False)

    def _acquisition_condition(self, active: bool) -> None:
        self._batch([DeviceCondition(code="acquisition_stopped", active=active,
                                     text=condition_text("acquisition_stopped") if active else "Reading the device again",
                                     source=self.link.source, time=self.link.clock())])

    def record_device_stats(self) -> None:
        """Record in the session the device decoder's counts since it started (a ``device_stats``
        entry), when what was rejected, skipped or failed changed since the last one. Called every
        :data:`DEVICE_STATS_EVERY_S` and by the service just before a session ends (pipeline thread)."""
        recorder = self.recorder
        self._stats_due = self.link.timeline.monotonic() + DEVICE_STATS_EVERY_S
        stats = self.link.stats
        if recorder is None or stats is None or recorder.state.phase.terminal:
            return
        base = self._stats_base or DecoderStats()
        counts = {name: getattr(stats, name) - getattr(base, name)
                  for name in ("bytes_in", "frames_decoded", "frames_rejected", "bytes_skipped", "decoder_errors")}
        key = (counts["frames_rejected"], counts["bytes_skipped"], counts["decoder_errors"])
        if key == self._stats_recorded or (not self._stats_recorded and not any(key)):
            return
        self._stats_recorded = key
        t = self._entry_time(recorder)
        self.entries_recorded(recorder.record(lambda state: state.record_device_stats(t, self.link.source, counts)))

    # ------------------------------------------------------------------ time (pipeline thread)
    def _check_clock(self) -> None:
        """A jump of the wall clock is logged, and recorded in the session being recorded; nothing
        else changes (every time here is on the monotonic timeline, see drivers.timebase)."""
        jump = self._clock.check()
        if jump is None:
            return
        log.warning("the computer's clock jumped by %+.1f s (wall clock minus timeline: %+.1f s → %+.1f s); "
                    "Vigil's times and durations are unaffected", jump.jump_s, jump.offset_before_s,
                    jump.offset_after_s)
        if self.recorder is not None:
            self._record_clock_jump(jump)

    def _record_clock_jump(self, jump: ClockJump) -> None:
        recorder = self.recorder
        assert recorder is not None
        t = self._entry_time(recorder)
        entries = recorder.record(lambda state: state.record_clock_jump(t, jump.offset_before_s, jump.offset_after_s))
        self.entries_recorded(entries)

    def _entry_time(self, recorder: SessionRecorder) -> datetime:
        """Now on the record's timeline (a resumed session's may be re-based), never before what the
        session has already seen or its opening."""
        now = self.now()
        return max(now, recorder.now or now, recorder.state.opened_at)

    def _refresh_view(self) -> None:
        recorder = self.recorder
        if recorder is None:
            self._session_view = None
            return
        view = SessionState.from_entries(recorder.state.entries)
        view.latest = dict(recorder.state.latest)
        self._session_view = view

    def _publish_session(self) -> None:
        self._last_snapshot = time.monotonic()
        recorder = self.recorder
        snapshot: SessionSnapshot | None = None
        if recorder is not None:
            snapshot = snapshot_from_state(recorder.state, max(self.now(), recorder.now or self.now()),
                                           self.settings)
        self._notify("on_session", snapshot)


def open_pipeline(device: str | DeviceSpec | Link, store: SessionStore, settings: ClinicSettings,
                  profile: AlarmProfile, **kwargs: Any) -> Pipeline:
    """A pipeline for a device URL (``sim://…``, ``PORT?protocol=NAME``, ``mllp://…``), a parsed
    spec or a link; bad URLs raise ``DeviceUrlError``. Not started."""
    if isinstance(device, Link):
        return Pipeline(device, store, settings, profile, **kwargs)
    spec = device if isinstance(device, DeviceSpec) else parse_device_url(device)
    pipeline = Pipeline(open_link(spec), store, settings, profile, device_label=spec.label, **kwargs)
    pipeline.device_spec = spec
    return pipeline

