"""The session store: one SQLite file holding everything Vigil records.

A package: :class:`SessionStore` (this module) combines the parts — :mod:`.database` (opening,
locking, migrations, transactions and reads), :mod:`.sessions`, :mod:`.devicedata`,
:mod:`.entries`, :mod:`.alarms`, :mod:`.audit`, :mod:`.users` and :mod:`.bulk` (whole-session
reads and writes) — over :mod:`.schema` (tables, triggers, migrations), :mod:`.codec` (times,
quality bits, canonical JSON, audit digest, the sample codec) and :mod:`.records` (what it
returns). :class:`StoreWriter` (:mod:`.writer`) is the off-UI-thread writer; when writing fails to
the end it saves its backlog to a recovery file (:mod:`.recovery`, ``vigil recover``). This is the
only package that knows SQL; everything else uses the public names below.

Plain Python + :mod:`sqlite3` + numpy + zlib; no Qt. The store keeps rows; clinical rules (who may
do what, alarm logic, PIN hashing) live elsewhere.

File
----
* SQLite in WAL mode, ``synchronous=FULL``, foreign keys on. A new file (and its ``-wal``/``-shm``)
  is made readable and writable by its owner only (0600, by the umask); Vigil never changes an
  existing file's permissions. ``PRAGMA application_id`` marks the file as Vigil's
  (:data:`APPLICATION_ID`); an existing file without that mark (garbage bytes, another
  application's SQLite database) is refused with :class:`StoreError` and never modified.
* Only a path that does not exist — or an empty file with none of the files Vigil keeps beside a
  database (``.lock``, ``-wal``, ``-shm``, ``.v<N>.bak``) — becomes a new database; an empty file
  that has them lost its content and is refused (:class:`DamagedStoreError`).
* Every read-write opening runs SQLite's ``quick_check`` before anything is written: a damaged file
  is refused (:class:`DamagedStoreError`, saying to restore a backup or run ``vigil salvage``,
  :mod:`.salvage`). A read-only or unwritable file, folder or storage is refused for writing
  (:class:`ReadOnlyError`) and can be opened ``readonly``; on read-only storage it is read
  ``immutable``.
* ``meta.schema_version`` is the schema version. :data:`MIGRATIONS` holds one function per version
  step (``MIGRATIONS[i]`` upgrades version ``i`` to ``i + 1``); an older file is migrated forward on
  opening (after a backup copy ``<file>.v<old>.bak``), a newer one is refused.
* One read-write :class:`SessionStore` per file at a time, whatever path names it: it holds an
  advisory lock on ``<real file>.lock`` (symbolic links resolved) and notes its process and host
  there; a second read-write opening raises :class:`StoreLockedError` naming them; a file with
  several hard links is refused for writing. Read-only openings are always allowed.

Times
-----
Stored as REAL UTC epoch seconds. The API takes and returns timezone-aware UTC
:class:`~datetime.datetime` objects (a naive datetime raises ``ValueError``); bulk queries return
numpy float64 epoch seconds. Time ranges are half-open: ``start <= t < end``; ``None`` = unbounded.

Append-only
-----------
SQLite triggers (``RAISE(ABORT, ...)``) refuse UPDATE and DELETE on observations, waveforms,
conditions, entries, audit, alarm_actions, gaps and settings; sessions can change only while
``status = 'open'`` (plus the single close transition); alarm rows may only get their end (once)
and a raised ``max_priority``. Data and entries for a closed session are refused, except
amendment entries. The Python API checks first and raises :class:`ReadOnlyError` with a clear
message; the triggers are the backstop for anything that bypasses the API.

Audit trail
-----------
Every call that records a staff action appends a row to ``audit`` in the same transaction. The
rows are hash-chained: ``hash = sha256(prev_hash + canonical_json({seq, t, user, session, action,
payload}))`` with canonical JSON = sorted keys, no spaces, UTF-8; the first row's ``prev_hash`` is
64 zeros. Since schema 5 each row also has a ``mac``: an HMAC of its hash under the database's key,
kept outside the file (:mod:`.keys`), so a row edited with every later hash recomputed is still
found. The closing row of a session seals its data (:mod:`.seal`). At every read-write opening the
protective triggers are compared with the schema's (missing or changed ones restored, unexpected
ones dropped, ``schema_triggers_restored``) and the tables with a fingerprint kept in ``meta``
(``schema_changed``). :meth:`SessionStore.verify_audit` recomputes the chain and its MACs;
:meth:`SessionStore.verify_session` checks a session against its audit rows;
:meth:`SessionStore.verify_users` the staff accounts (``vigil verify``).

Observation quality
-------------------
``observations.quality`` is a bitmask of :class:`drivers.model.Quality` in the fixed order of
:data:`QUALITY_BITS` (bit 0 = implausible … bit 10 = manual). New flags get new, higher bits;
existing bits never move.

Waveforms
---------
Incoming chunks are coalesced per (session, channel) into blocks of ``block_seconds`` (default
30 s: a compressed block then spans several 4 KiB pages, so the partly filled last page costs
little; 8 s blocks cost ~20 % more space). A chunk whose start is not the running block's end
(within half a sample), or whose rate or source differs, starts a new block; a chunk that
continues the timeline is placed on it (start jitter within half a sample never shifts samples).
A block is stored as ``zlib(byte-shuffled little-endian float32)`` (``enc = 1``; NaN gaps are kept
bit for bit). The unfinished block of each channel is
written to ``waveform_pending`` at every commit (replacing the previous copy), so a crash loses
no more than the data since the last commit; pending blocks left by a crash are turned into
ordinary blocks when the file is next opened read-write. ``waveform_pending`` is the only
scratch table (rows are replaced and removed).

Commits and the tail file
-------------------------
:class:`StoreWriter` commits device data every 30 s, not every second: a commit rewrites whole
pages (index leaves, the session row, the open blocks) into the WAL and again at the checkpoint,
and a commit a second wrote ~400 MB per session-hour to keep ~6 MB. In between, it appends the
new items to ``<file>.tail`` about once a second (:mod:`monitor.store.tail`), so a killed
process still loses at most about the last second; the next read-write opening stores the tail.
Staff actions and alarms are committed at once, as before. A chair whose clinic record copies its
file makes *light commits* in between (``StoreWriter(light_commit_interval=3)``): numerics and
device conditions are committed every 3 s without waiting for the disk, while the waveform chunks
stay in the tail file until the next full commit, so the unfinished waveform blocks are not
rewritten every 3 s (the tail's marks say which numerics a light commit took; see
:mod:`monitor.store.tail`). What is still rewritten at every commit is kept small: new files
have 1 KiB pages (:data:`monitor.store.database.PAGE_SIZE`), observations are indexed in the order
they arrive (``(session_id, t, vital)``, schema 6), and the log is copied back once per 4 MiB. A recording writes ~17 MB to disk per session-hour (WAL ~11,
checkpoints ~6; the tail file is emptied before most of it is written back) to store ~6 MB, and
~26 MB with light commits every 3 s; ``python -c "from bench.costs import write_cost; write_cost()"``
measures it.

Threads
-------
All writes go through one connection guarded by a re-entrant lock (:meth:`SessionStore.transaction`
holds it for its whole duration). Reads from any other thread use that thread's own read-only
connection (WAL lets them run while a write is in progress; they see the last commit). A thread
inside :meth:`SessionStore.transaction` reads through the write connection and so sees its own
uncommitted writes. :class:`StoreWriter` is the off-UI-thread writer.
"""

from __future__ import annotations

from monitor.store.alarms import AlarmsMixin
from monitor.store.audit import AuditMixin
from monitor.store.bulk import BulkMixin
from monitor.store.changes import ChangesMixin
from monitor.store.codec import (
    ENC_F32_SHUFFLE_ZLIB,
    ENC_F32_ZLIB,
    QUALITY_BITS,
    audit_digest,
    bits_to_quality,
    canonical_json,
    decode_samples,
    encode_samples,
    quality_to_bits,
)
from monitor.store.devicedata import DeviceDataMixin
from monitor.store.entries import EntriesMixin
from monitor.store.files import default_db_path
from monitor.store.records import (
    ALARM_ACTIONS,
    ALARM_KINDS,
    PRIORITIES,
    SESSION_STATUSES,
    TABLE_KINDS,
    AlarmAction,
    AlarmRow,
    AuditCheck,
    AuditRow,
    Block,
    Entry,
    Envelope,
    Gap,
    NotFoundError,
    ObservationRows,
    DamagedStoreError,
    ReadOnlyError,
    SessionCheck,
    SessionRecord,
    StoreLockedError,
    SessionSummary,
    StoreError,
    UserRecord,
    VitalSummary,
    WaveformSlice,
)
from monitor.store.schema import APPLICATION_ID, MAX_BLOCK_SECONDS, MIGRATIONS
from monitor.store.sessions import SessionsMixin
from monitor.store.users import UsersMixin

__all__ = [
    "APPLICATION_ID", "MIGRATIONS", "QUALITY_BITS", "TABLE_KINDS", "ALARM_KINDS", "ALARM_ACTIONS", "PRIORITIES",
    "SESSION_STATUSES", "MAX_BLOCK_SECONDS", "ENC_F32_ZLIB", "ENC_F32_SHUFFLE_ZLIB",
    "StoreError", "ReadOnlyError", "NotFoundError", "DamagedStoreError", "StoreLockedError", "SessionCheck",
    "UserRecord", "SessionRecord", "SessionSummary", "Entry", "AlarmAction", "AlarmRow", "Gap",
    "VitalSummary", "AuditRow", "AuditCheck", "WaveformSlice", "ObservationRows", "Block", "Envelope",
    "SessionStore", "StoreWriter", "default_db_path", "quality_to_bits", "bits_to_quality",
    "canonical_json", "audit_digest", "encode_samples", "decode_samples",
]


class SessionStore(SessionsMixin, DeviceDataMixin, EntriesMixin, AlarmsMixin, AuditMixin, UsersMixin, BulkMixin,
                   ChangesMixin):
    """Vigil's record of sessions, data, charting, alarms and the audit trail in one SQLite file.

    ``path``: the database file (created if missing; its folder must exist, see
    :func:`default_db_path`). ``readonly=True`` opens for review only: every write raises
    :class:`ReadOnlyError`, no lock is taken, and an older schema is refused (open it read-write
    once to migrate). ``clock``: returns the current aware UTC time for ``recorded_at``, audit and
    creation times (default: the system clock). ``block_seconds``: target duration of a stored
    waveform block (0 < x ≤ 60). ``busy_timeout``: seconds to wait for a lock held by another
    connection. ``check_integrity``: run SQLite's ``quick_check`` at opening (default: when opening
    read-write — a damaged file is never written to; read-only openings skip it unless asked, and
    ``vigil verify`` runs the full ``integrity_check``).

    Raises :class:`StoreError` if the file is not a Vigil database (left unchanged), was written by
    a newer Vigil (left unchanged); :class:`StoreLockedError` if another store holds it open
    read-write (naming its process and host); :class:`ReadOnlyError` if opened read-write but the
    file, its folder or its storage cannot be written; :class:`DamagedStoreError` if it fails the
    integrity check, or is an empty file that was a database.
    """


from monitor.store.writer import StoreWriter  # noqa: E402  (the writer type-hints SessionStore)
