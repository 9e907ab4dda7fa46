"""Chair → clinic replication: a worker thread that copies the chair's record into the clinic record.

The worker never touches recording: it opens its own read-only connection to the chair's SQLite
file (WAL: its reads never wait for the writer, and the writer never waits for them), polls it every
``poll_s`` seconds, and nothing in the chair waits for it. Each step
(:meth:`Replicator.step`) asks the store for everything beyond what the clinic record holds
(:meth:`monitor.store.SessionStore.changes`, one snapshot, a bounded number of rows), checks it
(:mod:`monitor.clinic.verify`) and writes it in one PostgreSQL transaction
(:class:`monitor.store.postgres.ClinicWriter`): all of a step arrives, or none of it.

What it guarantees (see docs/clinic-record.md):

* Idempotent: every row is keyed by (chair, the chair's own id), so sending it again changes nothing.
* Resumes after an outage of any length: on every (re)connection the watermarks are read back from
  the clinic record (the highest chair id it holds per table), never trusted from memory; the chair's
  own file keeps everything meanwhile.
* Open sessions are copied continuously (each poll), closed ones completely: a closed session is
  sealed in the clinic record once all of it is there, after comparing its row counts with the
  chair's.
* On arrival the audit chain and the charted entries are verified; what does not verify is kept and
  flagged, never merged silently.
* A chair whose file no longer matches what the clinic record holds from it (a backup restored over
  newer data, a replaced file with the same identity) is not copied any further: the clinic record
  gets a flag and the worker says so (status "diverged").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from monitor.clinic.verify import check_chain, check_entries, check_sessions, entries_named
from monitor.store import SessionStore, StoreError
from monitor.store.changes import ChangeSet
from monitor.store.postgres.schema import ClinicRecordError, ClinicUnavailable, safe_url
from monitor.store.postgres.writer import ChairState, ClinicWriter, Flag

__all__ = ["ReplicationStatus", "ChairDiverged", "Replicator", "ReplicationWorker"]

log = logging.getLogger("monitor.clinic")


class ChairDiverged(ClinicRecordError):
    """The clinic record holds rows of this chair that its file no longer has, or has differently."""


@dataclass(frozen=True)
class ReplicationStatus:
    """Where replication stands. ``state``: "starting", "copying" (catching up), "current" (everything
    recorded up to the last poll is in the clinic record), "offline" (the server cannot be reached:
    retrying), "refused" (the clinic record refused something: retrying slowly), "diverged" (stopped,
    see :class:`ChairDiverged`) or "stopped". ``detail``: the reason, for people. ``rows``: rows
    copied since the worker started. ``copied_at``: the last successful copy (UTC)."""

    state: str
    detail: str = ""
    rows: int = 0
    copied_at: datetime | None = None


class Replicator:
    """One chair's replication, one step at a time (no thread): ``store`` is a read-only store on the
    chair's file, ``writer`` the clinic record, ``chair_uid``/``chair_name`` the chair's identity.
    ``batch_rows``: rows per table per step (waveform blocks: a hundredth of it)."""

    def __init__(self, store: SessionStore, writer: ClinicWriter, *, chair_uid: str, chair_name: str,
                 batch_rows: int = 20_000) -> None:
        self.store = store
        self.writer = writer
        self.chair_uid = chair_uid
        self.chair_name = chair_name
        self.batch_rows = batch_rows
        self.state: ChairState | None = None
        self._unvouched: dict[int, int] = {}  # entries copied without their audit row yet

    @property
    def chair_id(self) -> int | None:
        """The chair's id in the clinic record (None before the first connection)."""
        return None if self.state is None else self.state.chair_id

    def connect(self) -> None:
        """Connect, register the chair and read back what the clinic record holds of it; then check
        that the chair's file still has all of it (else :class:`ChairDiverged`, flagged there)."""
        self.state = None
        self.writer.open()
        chair_id = self.writer.register_chair(self.chair_uid, self.chair_name)
        state = self.writer.chair_state(chair_id)
        problem = self._divergence(state)
        if problem:
            self.writer.flag_chair(chair_id, problem)
            raise ChairDiverged(problem)
        self.state = state

    def _divergence(self, state: ChairState) -> str | None:
        here = self.store.table_marks()
        behind = [f"{table} (clinic record up to {state.marks[table]}, chair up to {here[table]})"
                  for table in state.marks if here.get(table, 0) < state.marks[table]]
        if behind:
            return ("the chair's record is behind what the clinic record holds from it: " + "; ".join(behind)
                    + ". Was an older copy of its database restored? Its replication is stopped")
        if state.tip is not None and self.store.audit_hash(state.tip[0]) != state.tip[1]:
            return (f"audit row {state.tip[0]} at the chair differs from the one the clinic record holds: the chair's "
                    "database was replaced or changed. Its replication is stopped")
        return None

    def step(self) -> tuple[bool, int]:
        """Copy one batch; returns (caught up, new rows copied). Needs :meth:`connect` first.
        :class:`ClinicUnavailable` when the server is lost (nothing of the batch is kept there)."""
        state = self.state
        if state is None:
            raise ClinicUnavailable("not connected to the clinic record")
        changes = self.store.changes(state.marks, watch=state.watch, limit=self.batch_rows)
        flags, unvouched = self._verify(state, changes)
        new = (sum(len(rows) for rows in changes.rows.values())
               + sum(1 for r in changes.sessions if r[0] > state.marks["sessions"])
               + sum(1 for r in changes.alarms if r[0] > state.marks["alarms"]))
        self.writer.apply(state, changes, flags)
        self._unvouched = unvouched
        return changes.complete, new

    def _verify(self, state: ChairState, changes: ChangeSet) -> tuple[list[Flag], dict[int, int]]:
        """Flags for the batch, and the entries still waiting for their audit row afterwards
        (entry id → chair session id); an entry still without one once the batch is complete
        (everything recorded is in it) has none: it is flagged."""
        audit = changes.rows["audit"]
        flags, _tip = check_chain(audit, state.tip)
        entries = {r[0]: r for r in changes.rows["entries"]}
        held = entries_named(audit) - set(entries)
        if held:
            entries.update(self.writer.held_entries(state.chair_id, held))
        entry_flags, vouched = check_entries(audit, entries)
        flags += entry_flags
        flags += check_sessions(audit, {r[0]: r for r in changes.sessions})
        waiting = {**self._unvouched, **{r[0]: r[1] for r in changes.rows["entries"]}}
        for entry_id in vouched:
            waiting.pop(entry_id, None)
        if changes.complete:
            flags += [Flag(chair_sid, None, f"entry {entry_id} has no audit row: it was not charted through Vigil")
                      for entry_id, chair_sid in sorted(waiting.items())]
            waiting = {}
        return flags, waiting


class ReplicationWorker:
    """Runs a :class:`Replicator` on its own thread (see the module docstring).

    ``store``: the chair's store (its file is opened again, read-only, by the worker; the store
    itself only gives the chair's identity); ``url``: the clinic record;
    ``chair_name``: this chair's name there. ``poll_s``: seconds between polls once caught up.
    ``on_status``: called (from the worker thread) with every change of :class:`ReplicationStatus`.
    ``on_poll``: extra work on the worker thread with the live writer and the chair's clinic id,
    after each poll (staff accounts and settings: :meth:`monitor.clinic.accounts.AccountSync.sync`);
    an exception there is logged and the work retried at the next poll.
    """

    def __init__(self, store: SessionStore, url: str, *, chair_name: str, poll_s: float = 1.0,
                 batch_rows: int = 20_000, retry_max_s: float = 30.0, connect_timeout: float = 5.0,
                 on_status: Callable[[ReplicationStatus], None] | None = None,
                 on_poll: Callable[[ClinicWriter, int], object] | None = None) -> None:
        if not 0 < poll_s <= 60:
            raise ValueError("poll_s must be in (0, 60] seconds")
        self.path = store.path
        self.url = url
        self.chair_uid = store.chair_uid()
        self.chair_name = chair_name
        self.poll_s = poll_s
        self.batch_rows = batch_rows
        self.retry_max_s = retry_max_s
        self.connect_timeout = connect_timeout
        self._on_status = on_status
        self._on_poll = on_poll
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._status = ReplicationStatus("starting")
        self._rows = 0
        self._steps = 0  # steps begun
        self._current_step = 0  # the last step that found nothing left to copy
        self._cond = threading.Condition(self._lock)

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            raise RuntimeError("the replication worker is already started")
        self._thread = threading.Thread(target=self._run, name="vigil-replication", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (it finishes the batch in progress) and wait up to ``timeout`` seconds."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def status(self) -> ReplicationStatus:
        """The latest status."""
        with self._lock:
            return self._status

    def wait_current(self, timeout: float) -> bool:
        """Wait until a poll that started after this call found nothing left to copy; False on timeout."""
        with self._cond:
            target = self._steps + 1
            self._wake.set()
            return self._cond.wait_for(lambda: self._current_step >= target or self._stop.is_set(), timeout) \
                and not self._stop.is_set()

    # ------------------------------------------------------------------ thread
    def _set(self, state: str, detail: str = "", copied: bool = False) -> None:
        with self._lock:
            old = self._status
            status = ReplicationStatus(state, detail, self._rows,
                                       datetime.now(timezone.utc) if copied else old.copied_at)
            self._status = status
        if (old.state, old.detail) != (state, detail):
            (log.warning if state in ("offline", "refused", "diverged") else log.info)(
                "clinic record %s: %s%s", safe_url(self.url), state, f" ({detail})" if detail else "")
            if self._on_status is not None:
                try:
                    self._on_status(status)
                except Exception:  # a listener's problem must not stop replication
                    log.exception("replication status listener failed")

    def _run(self) -> None:
        try:
            store = SessionStore(self.path, readonly=True)
        except (StoreError, OSError) as exc:
            self._set("refused", f"cannot read the chair's database: {exc}")
            return
        writer = ClinicWriter(self.url, connect_timeout=self.connect_timeout)
        replicator = Replicator(store, writer, chair_uid=self.chair_uid, chair_name=self.chair_name,
                                batch_rows=self.batch_rows)
        backoff = 0.5
        try:
            while not self._stop.is_set():
                try:
                    if replicator.state is None or not writer.connected:
                        replicator.connect()
                    with self._cond:
                        self._steps += 1
                        step = self._steps
                    caught_up, n = replicator.step()
                    with self._cond:
                        self._rows += n
                    if self._on_poll is not None and replicator.chair_id is not None:
                        self._extra(writer, replicator.chair_id)
                    self._set("current" if caught_up else "copying", copied=n > 0)
                    backoff = 0.5
                    if caught_up:
                        with self._cond:
                            self._current_step = step
                            self._cond.notify_all()
                        self._wake.wait(self.poll_s)
                        self._wake.clear()
                    continue
                except ChairDiverged as exc:
                    self._set("diverged", str(exc))
                    writer.close()
                    self._stop.wait()
                    break
                except ClinicUnavailable as exc:
                    self._set("offline", str(exc))
                    writer.close()
                except ClinicRecordError as exc:
                    self._set("refused", str(exc))
                    writer.close()
                    backoff = max(backoff, self.retry_max_s / 2)
                except StoreError as exc:
                    self._set("refused", f"reading the chair's database failed: {exc}")
                except Exception as exc:  # never let the thread die silently
                    log.exception("replication step failed")
                    self._set("refused", f"{type(exc).__name__}: {exc}")
                    writer.close()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
        finally:
            writer.close()
            store.close()
            self._set("stopped")
            with self._cond:
                self._cond.notify_all()

    def _extra(self, writer: ClinicWriter, chair_id: int) -> None:
        try:
            assert self._on_poll is not None
            self._on_poll(writer, chair_id)
        except ClinicUnavailable:
            raise
        except Exception:
            log.exception("clinic record: staff and settings sync failed (retried at the next poll)")

