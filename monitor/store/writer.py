"""The off-UI-thread writer: one thread owning every write of a recording."""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

log = logging.getLogger("monitor.store")


from drivers.model import DeviceCondition, NumericObservation, WaveformChunk


from monitor.store import SessionStore
from monitor.store.records import (
    StoreError,
)
from monitor.store.recovery import Backlog, save_backlog
from monitor.store.tail import TailFile, TailOp

# ---------------------------------------------------------------------------------- the writer
_PERMANENT_SQLITE = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
                     sqlite3.DataError, sqlite3.NotSupportedError)


def _is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying (disk full, I/O error, locked, read-only file …)."""
    if isinstance(exc, (StoreError,) + _PERMANENT_SQLITE):
        return False
    return isinstance(exc, (sqlite3.DatabaseError, OSError, MemoryError))


def _commit_due(now: float, oldest: float | None, queue_empty: bool, urgent: bool,
                interval: float, idle: float) -> bool:
    """The writer's commit policy: commit when the oldest uncommitted item is ``interval`` old,
    or when the queue has drained and the batch is ``idle`` old (or holds an urgent item)."""
    if oldest is None:
        return urgent
    age = now - oldest
    return age >= interval or (queue_empty and (urgent or age >= idle))


def _earliest(a: float | None, b: float | None) -> float | None:
    """The earlier of two arrival times (None: nothing arrived)."""
    return b if a is None else a if b is None else min(a, b)


class _Op(NamedTuple):
    kind: str  # 'obs' | 'wave' | 'cond' | 'call' | 'lazy' (a call that waits for the next commit)
    session_id: int | None
    items: list[Any]
    fn: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    future: concurrent.futures.Future[Any] | None = None


_DATA = frozenset({"obs", "wave", "cond"})
#: With the tail file, device data is committed when the oldest uncommitted item is this old, s.
DATA_COMMIT_INTERVAL = 30.0
_FLUSH = "flush"
_STOP = "stop"


def _drain(q: queue.SimpleQueue[Any]) -> list[Any]:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


class StoreWriter(threading.Thread):
    """Writes to a :class:`SessionStore` on its own thread, in batches.

    Producers (any thread) call :meth:`put_observations`, :meth:`put_waveforms`,
    :meth:`put_conditions`, :meth:`put_call` and :meth:`put_lazy_call`; items are applied in the
    order they were put.

    Durability: device data is made crash-safe when the oldest item not yet safe is
    ``commit_interval`` (1 s) old, or when the queue drains and it is ``idle_commit`` (0.5 s) old,
    so a killed process loses at most about the last second. With ``tail=True`` (the default) it
    is made safe by appending it to the store's tail file (:mod:`monitor.store.tail`: a few
    hundred bytes a second, no page rewritten) and committed to the database only when the oldest
    uncommitted item is ``data_commit_interval`` (:data:`DATA_COMMIT_INTERVAL`, 30 s) old — a
    commit rewrites whole pages, and a commit a second wrote ~65× the data. With
    ``light_commit_interval`` (a chair whose clinic record reads its file wants numerics there
    within seconds), observations, conditions and lazy calls are also committed once the oldest is
    that old, in a *light commit*: the waveform chunks stay in the batch (and in the tail file) for
    the next full commit, so the unfinished waveform blocks are not rewritten each time, and the
    commit does not wait for the disk (the tail holds the same data; see
    :meth:`SessionStore.transaction` ``durable`` and :mod:`monitor.store.tail`). Without the tail
    (``tail=False``, or while another writer of the same store holds it) every safe point is a
    full commit. A :meth:`put_call` (a staff action, an alarm) is committed as soon as the queue
    drains, with everything before it; :meth:`put_lazy_call` (a heartbeat) rides with the next
    commit.

    If a commit fails for a reason that may pass (disk full, I/O error, locked or read-only file)
    the batch is rolled back but kept in memory with everything queued since, and retried with
    exponential back-off (``retry_initial`` up to ``retry_max`` seconds): no data is dropped.
    ``on_error(exc)`` is called (on the writer thread) after every failed attempt, and
    ``on_recovered()`` once when a commit succeeds again. Items the store refuses for good
    (closed session, wrong type) are dropped, logged and passed to ``on_rejected(kind, exc)``;
    a refused :meth:`put_call` gets the exception on its future. Callbacks must not block and
    must not call the store.

    Start it with :meth:`start`; end it with :meth:`stop` (flushes and commits everything and
    finalises pending waveform blocks). ``on_commit(n_items)`` (optional) is called after each
    successful commit. If writing still fails when :meth:`stop`'s timeout runs out, the writer
    gives up: everything it holds is saved to a recovery file (:mod:`monitor.store.recovery`,
    written back with ``vigil recover``) and :attr:`unsaved` says how much and where; calls still
    waiting get a :class:`StoreError` on their futures.
    """

    def __init__(self, store: SessionStore, *, commit_interval: float = 1.0, idle_commit: float = 0.5,
                 retry_initial: float = 0.1, retry_max: float = 5.0,
                 on_error: Callable[[BaseException], None] | None = None,
                 on_recovered: Callable[[], None] | None = None,
                 on_rejected: Callable[[str, BaseException], None] | None = None,
                 on_commit: Callable[[int], None] | None = None, name: str = "vigil-store-writer",
                 tail: bool = True, data_commit_interval: float | None = None,
                 light_commit_interval: float | None = None) -> None:
        super().__init__(name=name, daemon=True)
        if not 0 < idle_commit <= commit_interval:
            raise ValueError("need 0 < idle_commit <= commit_interval")
        if data_commit_interval is None:
            data_commit_interval = max(DATA_COMMIT_INTERVAL, commit_interval)
        if data_commit_interval < commit_interval:
            raise ValueError("need data_commit_interval >= commit_interval")
        if light_commit_interval is not None and not 0 < light_commit_interval < data_commit_interval:
            raise ValueError("need 0 < light_commit_interval < data_commit_interval")
        self.data_commit_interval = data_commit_interval
        self.light_commit_interval = light_commit_interval
        #: Light commits made in the tail file's current generation (the number of the next mark - 1).
        self._light = 0
        #: When the last commit that waited for the disk was made (time.monotonic()).
        self._durable_at = time.monotonic()
        self._want_tail = tail
        self._tail: TailFile | None = None
        #: Batch items already in the tail file (the first ones of the batch).
        self._tailed = 0
        self.store = store
        self.commit_interval = commit_interval
        self.idle_commit = idle_commit
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.on_error = on_error
        self.on_recovered = on_recovered
        self.on_rejected = on_rejected
        self.on_commit = on_commit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopping = False
        self._put_lock = threading.Lock()
        self.failing = False
        self.last_error: BaseException | None = None
        self._batch_len = 0
        self._abandon = threading.Event()
        self._left: list[_Op] = []
        #: Set when the writer gave up at :meth:`stop` (what was not written and where it was saved).
        self.unsaved: Backlog | None = None

    # -------------------------------------------------------------------------- producers
    def _put(self, item: Any) -> None:
        with self._put_lock:
            if self._stopping:
                raise StoreError("the store writer is stopped")
            self._queue.put(item)

    def put_observations(self, session_id: int, observations: Iterable[NumericObservation]) -> None:
        """Queue numeric observations for :meth:`SessionStore.add_observations`. Thread-safe."""
        self._put(_Op("obs", session_id, list(observations)))

    def put_waveforms(self, session_id: int, chunks: Iterable[WaveformChunk]) -> None:
        """Queue waveform chunks for :meth:`SessionStore.add_waveforms`. Thread-safe."""
        self._put(_Op("wave", session_id, list(chunks)))

    def put_conditions(self, session_id: int, conditions: Iterable[DeviceCondition]) -> None:
        """Queue device condition changes for :meth:`SessionStore.add_conditions`. Thread-safe."""
        self._put(_Op("cond", session_id, list(conditions)))

    def put_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Queue ``fn(*args, **kwargs)`` (normally a store method) to run on the writer thread in
        order with the data. The future gets its result once the transaction it ran in has
        committed, or the exception if the store refused it. Thread-safe."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(_Op("call", None, [], fn, args, kwargs, future))
        return future

    def put_lazy_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Like :meth:`put_call`, but committed with the next commit rather than at once (for
        bookkeeping such as a heartbeat, which need not cost a commit of its own). Thread-safe."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(_Op("lazy", None, [], fn, args, kwargs, future))
        return future

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is committed. False on timeout (e.g.
        while writes fail; the data stays queued). Also returns when the writer gave up at
        :meth:`stop` (then :attr:`unsaved` is set)."""
        if self.ident is None:
            raise StoreError("the store writer was never started: call start() first")
        done = threading.Event()
        self._put((_FLUSH, done))
        return done.wait(timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop accepting items, commit everything queued, finalise pending waveform blocks and end
        the thread. True if everything was written within ``timeout``. Otherwise False: if writes
        still fail, the writer gives up — what it holds is saved to a recovery file and
        :attr:`unsaved` says how much and where (see the class docstring); if they are only slow,
        the thread carries on writing."""
        with self._put_lock:
            if not self._stopping:
                self._stopping = True
                self._queue.put((_STOP, None))
        if self.ident is None:  # never started: drain the queue on this thread
            self.run()
            return True
        if self.is_alive():
            self.join(timeout)
        if self.is_alive() and self.failing and self.unsaved is None:
            self._give_up()
        return not self.is_alive() and self.unsaved is None

    def _give_up(self) -> None:
        """End a writer that cannot write: the thread hands over what it holds, which is saved."""
        self._abandon.set()
        self._queue.put((_STOP, None))  # wakes the thread from its back-off
        self.join(self.retry_max + 5.0)
        if self.is_alive():  # pragma: no cover - a store call that hangs: leave it, say so
            log.critical("the store writer does not end; %d item(s) may be lost", self.pending)
            return
        left, self._left = self._left, []
        self.unsaved = save_backlog(self.store, [(o.kind, o.session_id, o.items, o.fn, o.args, o.kwargs)
                                                 for o in left], self.last_error)
        where = self.unsaved.path or "nowhere"
        # The recovery file holds the tail file's items too (they were in the batch): keep the tail
        # only when the recovery file could not be written, so the next opening stores them.
        self._close_tail(remove=self.unsaved.path is not None)
        for op in left:
            if op.future is not None and not op.future.done():
                op.future.set_exception(StoreError(f"not written: writing failed; saved in {where}"))

    @property
    def pending(self) -> int:
        """Approximate number of items queued or waiting to be committed."""
        return self._queue.qsize() + self._batch_len

    # -------------------------------------------------------------------------- the thread
    def run(self) -> None:
        batch: list[_Op] = []
        waiters: list[threading.Event] = []
        # when the oldest uncommitted item arrived: of those a light commit would take, and of the
        # waveform chunks (light commits keep them); the oldest of all is the earlier of the two
        light_from: float | None = None
        oldest_wave: float | None = None
        unsafe: float | None = None     # the oldest device data neither committed nor in the tail
        urgent = False
        stopping = False
        retry_at = 0.0
        backoff = self.retry_initial
        q = self._queue
        while True:
            if self._abandon.is_set():
                self._left = batch + [x for x in _drain(q) if isinstance(x, _Op)]
                self._batch_len = 0
                for w in waiters:
                    w.set()
                return
            now = time.monotonic()
            if self.failing:
                timeout: float | None = max(0.0, retry_at - now)
            elif urgent or stopping:
                timeout = 0.0
            else:
                deadlines = [t + d for t, d in ((unsafe, self.idle_commit),
                                                (_earliest(light_from, oldest_wave), self.data_commit_interval),
                                                (light_from, self.light_commit_interval))
                             if t is not None and d is not None]
                timeout = max(0.0, min(deadlines) - now) if deadlines else None
            try:
                item = q.get(timeout=timeout) if timeout != 0.0 else q.get_nowait()
                while True:
                    if isinstance(item, _Op):
                        batch.append(item)
                        arrived = time.monotonic()
                        if item.kind != "wave":
                            light_from = arrived if light_from is None else light_from
                        elif oldest_wave is None:
                            oldest_wave = arrived
                        if unsafe is None and item.kind in _DATA:
                            unsafe = arrived
                        if item.kind == "call":
                            urgent = True
                    elif item[0] == _FLUSH:
                        waiters.append(item[1])
                        urgent = True
                    elif item[0] == _STOP:
                        stopping = True
                    if unsafe is not None and time.monotonic() - unsafe >= self.commit_interval:
                        break
                    item = q.get_nowait()
            except queue.Empty:
                pass
            self._batch_len = len(batch)
            now = time.monotonic()
            drained = q.empty()
            safe_due = unsafe is not None and _commit_due(now, unsafe, drained, False, self.commit_interval,
                                                          self.idle_commit)
            if safe_due and not (stopping and drained) and self._append_tail(batch):
                unsafe, safe_due = None, False
            if self.failing and now < retry_at:
                continue
            oldest = _earliest(light_from, oldest_wave)
            if not (self.failing or (stopping and drained) or (urgent and drained) or safe_due
                    or (oldest is not None and now - oldest >= self.data_commit_interval)):
                if not (self.light_commit_interval is not None and light_from is not None
                        and now - light_from >= self.light_commit_interval and not urgent and not stopping):
                    continue
                kept = self._commit_light(batch)
                if kept is not None:
                    if self.on_commit is not None and len(batch) > len(kept):
                        self._callback(self.on_commit, len(batch) - len(kept))
                    batch, light_from, unsafe = kept, None, None
                    self._batch_len = len(batch)
                    continue
                # no light commit possible (no tail, or it cannot take the mark): a full one now
            finalize = stopping and drained
            if self._commit(batch, finalize):
                n = len(batch)
                batch, unsafe, urgent, light_from, oldest_wave = [], None, False, None, None
                self._batch_len = 0
                for w in waiters:
                    w.set()
                waiters = []
                if self.failing:
                    self.failing = False
                    backoff = self.retry_initial
                    self._callback(self.on_recovered)
                if self.on_commit is not None and n:
                    self._callback(self.on_commit, n)
                if finalize:
                    self._close_tail()
                    return
            else:
                self.failing = True
                retry_at = time.monotonic() + backoff
                backoff = min(self.retry_max, backoff * 2)

    # -------------------------------------------------------------------------- the tail file
    def _append_tail(self, batch: list[_Op]) -> bool:
        """Append the batch's device data not yet in the tail file; False when there is no tail
        (the caller commits instead)."""
        if self._tail is None and self._want_tail:
            self._tail = self.store._claim_tail()
            self._want_tail = self._tail is not None
        tail = self._tail
        if tail is None:
            return False
        ops: list[TailOp] = [(op.kind, op.session_id, op.items) for op in batch[self._tailed:]
                             if op.kind in _DATA and op.session_id is not None]
        try:
            tail.append(ops)
        except (OSError, TypeError, ValueError) as exc:  # disk full, a wrong item: commit instead
            log.warning("the tail file could not take %d item(s) (%s); committing them instead", len(ops), exc)
            return False
        self._tailed = len(batch)
        return True

    def _tail_committed(self) -> None:
        """After a commit that holds everything the tail holds: start the next generation."""
        tail = self._tail
        if tail is None or not self._tailed:
            return
        self._tailed = 0
        self._light = 0
        try:
            tail.reset(tail.generation + 1)
        except OSError as exc:  # keep no tail whose generation the database already holds
            log.warning("the tail file could not be emptied (%s); committing every second from now on", exc)
            self._close_tail(remove=False)
            self._want_tail = False

    def _close_tail(self, remove: bool = True) -> None:
        if self._tail is not None:
            self._tail.close(remove=remove)
            self._tail = None
            self.store._release_tail()

    def _callback(self, fn: Callable[..., Any] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("store writer callback %r failed", fn)

    def _apply_data(self, ops: list[_Op], outcomes: list[tuple[_Op, Any, BaseException | None]]) -> None:
        """Apply consecutive data items of one kind and session in one store call; if the store
        refuses the group for good, apply them one by one so only the bad ones are dropped."""
        store = self.store
        methods: dict[str, Callable[[int, list[Any]], int]] = {
            "obs": store.add_observations, "wave": store.add_waveforms, "cond": store.add_conditions}
        method = methods[ops[0].kind]
        session_id = ops[0].session_id
        assert session_id is not None, "data items are queued with their session (add_observations …)"
        if len(ops) > 1:
            try:
                method(session_id, [x for o in ops for x in o.items])
                return
            except Exception as exc:
                if _is_transient(exc):
                    raise
        for op in ops:
            try:
                method(session_id, op.items)
            except Exception as exc:
                if _is_transient(exc):
                    raise
                outcomes.append((op, None, exc))

    def _apply(self, batch: list[_Op], outcomes: list[tuple[_Op, Any, BaseException | None]]) -> None:
        """Apply ``batch`` in order inside the caller's transaction; refusals go to ``outcomes``,
        transient failures propagate (the transaction is rolled back)."""
        i = 0
        while i < len(batch):
            op = batch[i]
            j = i + 1
            if op.kind in _DATA:  # merge consecutive data items of the same kind and session
                while j < len(batch) and batch[j].kind == op.kind and batch[j].session_id == op.session_id:
                    j += 1
            try:
                if op.fn is not None:  # a call or a lazy call
                    outcomes.append((op, op.fn(*op.args, **(op.kwargs or {})), None))
                else:
                    self._apply_data(batch[i:j], outcomes)
            except Exception as exc:
                if _is_transient(exc):
                    raise
                outcomes.append((op, None, exc))
            i = j

    def _failed(self, exc: Exception, n: int) -> None:
        self.last_error = exc
        log.warning("store write failed (%s); %d item(s) kept for retry", exc, n)
        self._callback(self.on_error, exc)

    def _commit_light(self, batch: list[_Op]) -> list[_Op] | None:
        """A light commit (see the class docstring): commit everything but the waveform chunks,
        which are returned (kept for the next full commit). None when no light commit can be made
        (no tail file, or it cannot take the batch or the mark; the caller makes a full commit) or
        when it failed (then :attr:`failing` is set)."""
        if not self._append_tail(batch) or self._tail is None or any(op.kind == "call" for op in batch):
            return None
        tail = self._tail
        kept = [op for op in batch if op.kind == "wave"]
        number = self._light + 1
        if kept:
            try:
                tail.mark(number)
            except OSError as exc:
                log.warning("the tail file could not take a mark (%s); a full commit instead", exc)
                return None
        durable = time.monotonic() - self._durable_at >= self.data_commit_interval
        outcomes: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            with self.store.transaction(durable=durable):
                self._apply([op for op in batch if op.kind != "wave"], outcomes)
                if kept:  # the tail still holds uncommitted chunks: only this mark is committed
                    self.store._mark_light(tail.generation, number)
                else:     # everything the tail holds is committed
                    self.store._mark_tail(tail.generation)
        except Exception as exc:
            self._failed(exc, len(batch))
            self.failing = True
            return None
        if durable:
            self._durable_at = time.monotonic()
        if kept:
            self._light = number
            self._tailed = len(kept)
        else:
            self._tail_committed()
        self._settle(outcomes)
        return kept

    def _commit(self, batch: list[_Op], finalize: bool) -> bool:
        store = self.store
        outcomes: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            with store.transaction():
                self._apply(batch, outcomes)
                if finalize:
                    store.flush_waveforms()
                if self._tail is not None and self._tailed:
                    store._mark_tail(self._tail.generation)
        except Exception as exc:
            self._failed(exc, len(batch))
            return False
        self._durable_at = time.monotonic()
        self._tail_committed()
        self._settle(outcomes)
        return True

    def _settle(self, outcomes: list[tuple[_Op, Any, BaseException | None]]) -> None:
        """After a commit: results and refusals to the futures; refused data logged and reported."""
        for op, result, error in outcomes:
            if op.future is not None:
                if op.future.done():  # cancelled by the caller meanwhile
                    continue
                if error is None:
                    op.future.set_result(result)
                else:
                    op.future.set_exception(error)
            elif error is not None:
                log.error("store refused %s for session %s: %s", op.kind, op.session_id, error)
                self._callback(self.on_rejected, op.kind, error)
