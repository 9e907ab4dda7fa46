"""Writing the clinic record: what a chair's replication sends, applied in one transaction per batch.

:class:`ClinicWriter` is used by the replication worker (:mod:`monitor.clinic.replication`), which
decides what to send; this module only knows how it is stored. Every insert is keyed by the chair's
own id for the row and skips a row already held (``ON CONFLICT DO NOTHING``), so sending a batch
twice changes nothing. Bulk rows (observations, waveform blocks) go through ``COPY`` into a
temporary table first, then into the record with the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from monitor.store.changes import CHANGE_TABLES, SEALED_TABLES, ChangeSet
from monitor.store.postgres.schema import ClinicRecordError, ClinicUnavailable, check_schema, connect, one, safe_url

__all__ = ["ChairState", "Flag", "ClinicWriter", "AccountVersion", "SettingsVersion"]

#: The clinic record's table and key column for each replicated chair table.
_KEYS = {"sessions": ("sessions", "chair_session_id"), "alarms": ("alarms", "chair_alarm_id"),
         "entries": ("entries", "chair_entry_id"), "alarm_actions": ("alarm_actions", "chair_action_id"),
         "observations": ("observations", "chair_rowid"), "waveforms": ("waveforms", "chair_block_id"),
         "conditions": ("conditions", "chair_condition_id"), "gaps": ("gaps", "chair_gap_id"),
         "audit": ("audit", "seq")}
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS obs_stage (chair_rowid bigint, session_id bigint, t float8, vital text, value float8,
    quality int4, device_time text, unit text, source_id int4) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS wave_stage (chair_block_id bigint, session_id bigint, channel text, t0 float8,
    rate float8, n int4, enc int2, source_id int4, data bytea) ON COMMIT DELETE ROWS;
"""
_STATE_COLS = ("status", "phase", "ended_at", "plan_json", "baseline_json", "closed_by", "close_meaning",
               "signed_name")


@dataclass(frozen=True)
class Flag:
    """Something verification found wrong: in session ``chair_session_id`` (the chair's id; None for
    the chair as a whole) at audit row ``chair_seq`` (if any)."""

    chair_session_id: int | None
    chair_seq: int | None
    problem: str


@dataclass
class ChairState:
    """What the clinic record holds of one chair: ``marks`` (table → highest chair id held),
    ``watch`` (chair session id → clinic id of the sessions not yet sealed), ``tip`` (seq and hash
    of the last audit row held, None before the first), ``sessions`` (chair session id → clinic id
    of the sessions met so far), and the session and alarm states sent on this connection (so that
    an unchanged state is not sent again at every poll)."""

    chair_id: int
    marks: dict[str, int]
    watch: dict[int, int]
    tip: tuple[int, str] | None
    sessions: dict[int, int] = field(default_factory=dict)
    sent_states: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    sent_alarms: dict[int, tuple[Any, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class AccountVersion:
    """One version of a staff account (times epoch s). ``origin_chair``/``origin_seq``: the chair
    and audit row the change came from (None when made at the server)."""

    login: str
    display_name: str
    role: str
    pin_hash: str | None
    active: bool
    changed_at: float
    changed_by: str | None
    origin_chair: int | None = None
    origin_seq: int | None = None


@dataclass(frozen=True)
class SettingsVersion:
    """One version of the clinic settings (JSON text), as :class:`AccountVersion`."""

    json: str
    changed_at: float
    changed_by: str | None
    origin_chair: int | None = None
    origin_seq: int | None = None


def _state(session: tuple[Any, ...]) -> tuple[Any, ...]:
    """The columns of a session row (:data:`SESSION_COLUMNS`) that a state version holds, in
    :data:`_STATE_COLS` order."""
    r = session
    return (r[4], r[5], r[3], r[10], r[11], r[14], r[15], r[16])


def _unavailable(exc: BaseException, url: str) -> ClinicUnavailable:
    return ClinicUnavailable(f"the clinic record at {safe_url(url)} was lost: {str(exc).strip() or type(exc).__name__}")


class ClinicWriter:
    """A chair's write connection to the clinic record at ``url`` (see the module docstring).

    :meth:`open` connects and checks the schema; every other method needs it open. A lost server
    raises :class:`ClinicUnavailable` (the transaction in progress is rolled back by the server:
    nothing half-written stays); a refused write (a trigger, a grant) raises
    :class:`ClinicRecordError` naming the reason. Not thread-safe: one thread uses it.
    """

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._sources: dict[str, int] = {}

    # ------------------------------------------------------------------ connection
    def open(self) -> None:
        """Connect (if not connected) and check the schema."""
        if self._conn is not None and not self._conn.closed:
            return
        conn = connect(self.url, connect_timeout=self.connect_timeout, application_name="vigil replication")
        try:
            check_schema(conn)
            conn.execute(_STAGE)
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise self._error(exc) from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._sources = {}

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still turn out dead on the next call)."""
        return self._conn is not None and not self._conn.closed

    def _error(self, exc: BaseException) -> ClinicRecordError:
        if isinstance(exc, psycopg.OperationalError) or (self._conn is not None and self._conn.closed):
            self.close()
            return _unavailable(exc, self.url)
        diag = getattr(exc, "diag", None)
        detail = getattr(diag, "message_primary", None) or str(exc).strip()
        return ClinicRecordError(f"the clinic record refused the write: {detail}")

    def _run(self, fn: Any, *args: Any) -> Any:
        """``fn(cursor, *args)`` in one transaction; psycopg errors become this module's errors."""
        if self._conn is None:
            raise ClinicUnavailable("not connected to the clinic record")
        conn = self._conn
        try:
            with conn.transaction(), conn.cursor() as cur:
                return fn(cur, *args)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    # ------------------------------------------------------------------ chairs
    def register_chair(self, uid: str, name: str) -> int:
        """The clinic id of the chair with identity ``uid`` (registered on first contact; its
        name is updated when it changed)."""
        def run(cur: psycopg.Cursor[Any]) -> int:
            cur.execute("INSERT INTO vigil.chairs (uid, name) VALUES (%s, %s) ON CONFLICT (uid) DO NOTHING",
                        (uid, name))
            cur.execute("SELECT id, name FROM vigil.chairs WHERE uid = %s", (uid,))
            chair_id, held = one(cur)
            if held != name:
                cur.execute("UPDATE vigil.chairs SET name = %s WHERE id = %s", (name, chair_id))
            return int(chair_id)
        return self._run(run)

    def chair_state(self, chair_id: int) -> ChairState:
        """What the clinic record holds of the chair (see :class:`ChairState`)."""
        def run(cur: psycopg.Cursor[Any]) -> ChairState:
            marks = {}
            for key, (table, column) in _KEYS.items():
                cur.execute(f"SELECT max({column}) FROM vigil.{table} WHERE chair_id = %s", (chair_id,))
                marks[key] = int(one(cur)[0] or 0)
            cur.execute("SELECT s.chair_session_id, s.id FROM vigil.sessions s WHERE s.chair_id = %s AND NOT EXISTS "
                        "(SELECT 1 FROM vigil.session_seals z WHERE z.session_id = s.id)", (chair_id,))
            watch = {int(a): int(b) for a, b in cur.fetchall()}
            cur.execute("SELECT seq, hash FROM vigil.audit WHERE chair_id = %s ORDER BY seq DESC LIMIT 1", (chair_id,))
            row = cur.fetchone()
            return ChairState(chair_id, marks, watch, (int(row[0]), str(row[1])) if row else None, dict(watch))
        return self._run(run)

    def flag_chair(self, chair_id: int, problem: str) -> None:
        """Record an integrity flag on the chair as a whole."""
        def run(cur: psycopg.Cursor[Any]) -> None:
            cur.execute("INSERT INTO vigil.integrity_flags (chair_id, problem) VALUES (%s, %s)", (chair_id, problem))
        self._run(run)

    def held_entries(self, chair_id: int, ids: Iterable[int]) -> dict[int, tuple[Any, ...]]:
        """Entries already held, by chair entry id: (id, chair session id, t, table_kind, kind,
        payload_json, user_login, amends_id, reason, recorded_at) as :data:`TABLE_COLUMNS` lists them."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}

        def run(cur: psycopg.Cursor[Any]) -> dict[int, tuple[Any, ...]]:
            cur.execute("SELECT e.chair_entry_id, s.chair_session_id, e.t, e.table_kind, e.kind, e.payload_json, "
                        "e.user_login, e.amends_id, e.reason, e.recorded_at FROM vigil.entries e "
                        "JOIN vigil.sessions s ON s.id = e.session_id WHERE e.chair_id = %s "
                        "AND e.chair_entry_id = ANY(%s)", (chair_id, wanted))
            return {int(r[0]): tuple(r) for r in cur.fetchall()}
        return self._run(run)

    # ------------------------------------------------------------------ replication
    def apply(self, state: ChairState, changes: ChangeSet, flags: Sequence[Flag] = ()) -> list[int]:
        """Store ``changes`` of the chair in ``state`` in one transaction, with the integrity
        ``flags`` found in them, and update ``state`` (marks, sessions, watch list) once committed.
        When the change set is complete, sessions' progress and unfinished waveform blocks are
        updated and the closed sessions it holds are sealed, after comparing their row counts with
        the chair's (a difference is flagged). Returns the chair ids of the sessions sealed."""
        sealed, known, new_sessions = self._run(self._apply, state, changes, list(flags))
        state.sent_states.update((r[0], _state(r)) for r in changes.sessions)
        state.sent_alarms.update((r[0], (r[5], r[7])) for r in changes.alarms)
        state.sessions.update(known)
        for chair_sid, sid in new_sessions.items():
            state.watch.setdefault(chair_sid, sid)
        for chair_sid in sealed:
            state.watch.pop(chair_sid, None)
        marks = state.marks
        if changes.sessions:
            marks["sessions"] = max(marks["sessions"], max(r[0] for r in changes.sessions))
        if changes.alarms:
            marks["alarms"] = max(marks["alarms"], max(r[0] for r in changes.alarms))
        for table in CHANGE_TABLES:
            rows = changes.rows[table]
            if rows:
                marks[table] = max(marks[table], rows[-1][0])
        audit = changes.rows["audit"]
        if audit:
            state.tip = (int(audit[-1][0]), str(audit[-1][7]))
        return sealed

    def _source_ids(self, cur: psycopg.Cursor[Any], names: set[str]) -> dict[str, int]:
        missing = sorted(n for n in names if n not in self._sources)
        if missing:
            cur.execute("INSERT INTO vigil.sources (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
                        (missing,))
            cur.execute("SELECT name, id FROM vigil.sources WHERE name = ANY(%s)", (missing,))
            found = dict(cur.fetchall())
            self._sources.update(found)  # kept only once committed: see _apply's rollback path
        return self._sources

    def _session_ids(self, cur: psycopg.Cursor[Any], state: ChairState, changes: ChangeSet,
                     flags: list[Flag]) -> tuple[dict[int, int], dict[int, int]]:
        """chair session id → clinic id for every session the change set mentions, and for the
        sessions it registered."""
        known = dict(state.sessions)
        added: dict[int, int] = {}
        for r in changes.sessions:
            if r[0] in known:
                continue
            cur.execute(
                "INSERT INTO vigil.sessions (chair_id, chair_session_id, created_at, started_at, protocol, "
                "patient_name, patient_ref, patient_json, device, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (chair_id, chair_session_id) DO NOTHING RETURNING id",
                (state.chair_id, r[0], r[1], r[2], r[6], r[7], r[8], r[9], r[12], r[13]))
            row = cur.fetchone()
            if row is None:
                cur.execute("SELECT id FROM vigil.sessions WHERE chair_id = %s AND chair_session_id = %s",
                            (state.chair_id, r[0]))
                row = one(cur)
            known[r[0]] = added[r[0]] = int(row[0])
        mentioned = {r[1] for t in CHANGE_TABLES for r in changes.rows[t] if r[1] is not None}
        mentioned |= {f.chair_session_id for f in flags if f.chair_session_id is not None}
        mentioned |= {r[1] for r in changes.alarms}
        missing = sorted(mentioned - set(known))
        if missing:
            cur.execute("SELECT chair_session_id, id FROM vigil.sessions WHERE chair_id = %s "
                        "AND chair_session_id = ANY(%s)", (state.chair_id, missing))
            for chair_sid, sid in cur.fetchall():
                known[int(chair_sid)] = int(sid)
        return known, added

    def _apply(self, cur: psycopg.Cursor[Any], state: ChairState, changes: ChangeSet,
               flags: list[Flag]) -> tuple[list[int], dict[int, int], dict[int, int]]:
        sources_before = dict(self._sources)
        try:
            return self._apply_rows(cur, state, changes, flags)
        except BaseException:
            self._sources = sources_before  # ids made in a rolled-back transaction do not exist
            raise

    def _apply_rows(self, cur: psycopg.Cursor[Any], state: ChairState, changes: ChangeSet,
                    flags: list[Flag]) -> tuple[list[int], dict[int, int], dict[int, int]]:
        chair = state.chair_id
        rows = changes.rows
        names = {r[8] for r in rows["observations"]} | {r[7] for r in rows["waveforms"] if r[7]}
        names |= {r[6] for r in rows["conditions"] if r[6]} | {r[6] for r in changes.tails if r[6]}
        src = self._source_ids(cur, names) if names else self._sources
        sids, added = self._session_ids(cur, state, changes, flags)

        def sid(chair_sid: int | None) -> int | None:
            return None if chair_sid is None else sids.get(chair_sid)

        # Sessions: a new state version when anything in it changed (the server checks against its
        # latest version; what this connection already sent unchanged is not sent again).
        changed = [{"sid": sids[r[0]], **dict(zip(_STATE_COLS, _state(r)))} for r in changes.sessions
                   if state.sent_states.get(r[0]) != _state(r)]
        if changed:
            cur.executemany(
                "INSERT INTO vigil.session_states (session_id, " + ", ".join(_STATE_COLS) + ") "
                "SELECT %(sid)s, %(status)s, %(phase)s, %(ended_at)s, %(plan_json)s, %(baseline_json)s, %(closed_by)s, "
                "%(close_meaning)s, %(signed_name)s WHERE NOT EXISTS (SELECT 1 FROM (SELECT * FROM "
                "vigil.session_states WHERE session_id = %(sid)s ORDER BY id DESC LIMIT 1) l "
                "WHERE (l.status, l.phase, l.ended_at, l.plan_json, l.baseline_json, l.closed_by, l.close_meaning, "
                "l.signed_name) IS NOT DISTINCT FROM "
                "(%(status)s, %(phase)s, %(ended_at)s::float8, %(plan_json)s, %(baseline_json)s::text, "
                "%(closed_by)s::text, %(close_meaning)s::text, %(signed_name)s::text))", changed)

        if rows["entries"]:
            cur.executemany(
                "INSERT INTO vigil.entries (chair_id, chair_entry_id, session_id, t, table_kind, kind, payload_json, "
                "user_login, amends_id, reason, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING", [(chair, r[0], sid(r[1]), *r[2:]) for r in rows["entries"]])
        new_alarms = [r for r in changes.alarms if r[0] > state.marks["alarms"]]
        if new_alarms:
            cur.executemany(
                "INSERT INTO vigil.alarms (chair_id, chair_alarm_id, session_id, condition, kind, priority, "
                "started_at, limit_value, trigger_value, message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [(chair, r[0], sid(r[1]), r[2], r[3], r[4], r[6], r[8], r[9], r[10]) for r in new_alarms])
        alarms = [{"c": chair, "a": r[0], "s": sid(r[1]), "p": r[5], "e": r[7]} for r in changes.alarms
                  if state.sent_alarms.get(r[0]) != (r[5], r[7])]
        if alarms:  # a new state version when the end or the maximum priority changed
            cur.executemany(
                "INSERT INTO vigil.alarm_states (chair_id, chair_alarm_id, session_id, max_priority, ended_at) "
                "SELECT %(c)s, %(a)s, %(s)s, %(p)s, %(e)s WHERE NOT EXISTS (SELECT 1 FROM (SELECT * FROM "
                "vigil.alarm_states WHERE chair_id = %(c)s AND chair_alarm_id = %(a)s ORDER BY id DESC LIMIT 1) l "
                "WHERE (l.max_priority, l.ended_at) IS NOT DISTINCT FROM (%(p)s, %(e)s::float8))", alarms)
        if rows["alarm_actions"]:
            cur.executemany(
                "INSERT INTO vigil.alarm_actions (chair_id, chair_action_id, session_id, alarm_id, t, action, "
                "user_login, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(chair, r[0], sid(r[1]), *r[2:]) for r in rows["alarm_actions"]])
        if rows["observations"]:
            with cur.copy("COPY obs_stage FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "int8", "float8", "text", "float8", "int4", "text", "text", "int4"])
                for r in rows["observations"]:
                    copy.write_row((r[0], sids[r[1]], r[2], r[3], r[4], r[5], r[6], r[7], src[r[8]]))
            cur.execute("INSERT INTO vigil.observations (chair_id, chair_rowid, session_id, t, vital, value, quality, "
                        "device_time, unit, source_id) SELECT %s, * FROM obs_stage ORDER BY chair_rowid "
                        "ON CONFLICT DO NOTHING", (chair,))
            cur.execute("TRUNCATE obs_stage")
        if rows["waveforms"]:
            with cur.copy("COPY wave_stage FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "int8", "text", "float8", "float8", "int4", "int2", "int4", "bytea"])
                for r in rows["waveforms"]:
                    copy.write_row((r[0], sids[r[1]], r[2], r[3], r[4], r[5], r[6], src.get(r[7]) if r[7] else None,
                                    r[8]))
            cur.execute("INSERT INTO vigil.waveforms (chair_id, chair_block_id, session_id, channel, t0, rate, n, enc, "
                        "source_id, data) SELECT %s, * FROM wave_stage ORDER BY chair_block_id ON CONFLICT DO NOTHING",
                        (chair,))
            cur.execute("TRUNCATE wave_stage")
        if rows["conditions"]:
            cur.executemany(
                "INSERT INTO vigil.conditions (chair_id, chair_condition_id, session_id, t, code, active, text, "
                "source_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(chair, r[0], sid(r[1]), r[2], r[3], bool(r[4]), r[5], src.get(r[6]) if r[6] else None)
                 for r in rows["conditions"]])
        if rows["gaps"]:
            cur.executemany(
                "INSERT INTO vigil.gaps (chair_id, chair_gap_id, session_id, start_t, end_t, reason) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(chair, r[0], sid(r[1]), *r[2:]) for r in rows["gaps"]])

        sealed: list[int] = []
        flags = list(flags)
        if changes.complete:
            progress = [(sids[r[0]], r[17], r[18], r[19]) for r in changes.sessions]
            if progress:
                cur.executemany(
                    "INSERT INTO vigil.session_progress (session_id, last_seen, n_observations, n_alarms) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (session_id) DO UPDATE SET last_seen = EXCLUDED.last_seen, "
                    "n_observations = EXCLUDED.n_observations, n_alarms = EXCLUDED.n_alarms, updated_at = now() "
                    "WHERE (vigil.session_progress.last_seen, vigil.session_progress.n_observations, "
                    "vigil.session_progress.n_alarms) IS DISTINCT FROM (EXCLUDED.last_seen, EXCLUDED.n_observations, "
                    "EXCLUDED.n_alarms)", progress)
            if changes.tails:
                cur.executemany(
                    "INSERT INTO vigil.waveform_tails (session_id, channel, t0, rate, n, enc, source_id, data) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (session_id, channel) DO UPDATE SET "
                    "t0 = EXCLUDED.t0, rate = EXCLUDED.rate, n = EXCLUDED.n, enc = EXCLUDED.enc, "
                    "source_id = EXCLUDED.source_id, data = EXCLUDED.data, updated_at = now() "
                    "WHERE (vigil.waveform_tails.t0, vigil.waveform_tails.n) "
                    "IS DISTINCT FROM (EXCLUDED.t0, EXCLUDED.n)",
                    [(sids[r[0]], r[1], r[2], r[3], r[4], r[5], src.get(r[6]) if r[6] else None, r[7])
                     for r in changes.tails])
            for chair_sid, counts in changes.counts.items():
                held = self._counts(cur, sids[chair_sid])
                wrong = [f"{t}: {counts[t]} at the chair, {held[t]} here" for t in SEALED_TABLES
                         if held[t] != counts[t]]
                if wrong:
                    flags.append(Flag(chair_sid, None, "the copy of this closed session is incomplete ("
                                      + "; ".join(wrong) + ")"))
                cur.execute("INSERT INTO vigil.session_seals (session_id, counts) VALUES (%s, %s) "
                            "ON CONFLICT DO NOTHING", (sids[chair_sid], json.dumps(held, sort_keys=True)))
                sealed.append(chair_sid)
        if flags:
            cur.executemany("INSERT INTO vigil.integrity_flags (chair_id, session_id, chair_seq, problem) "
                            "VALUES (%s, %s, %s, %s)", [(chair, sid(f.chair_session_id), f.chair_seq, f.problem)
                                                        for f in flags])
        if rows["audit"]:
            cur.executemany(
                "INSERT INTO vigil.audit (chair_id, seq, t, user_login, chair_session_id, session_id, action, "
                "payload_json, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(chair, r[0], r[2], r[3], r[1], sid(r[1]), r[4], r[5], r[6], r[7]) for r in rows["audit"]])
        return sealed, sids, added

    @staticmethod
    def _counts(cur: psycopg.Cursor[Any], session_id: int) -> dict[str, int]:
        out = {}
        for table in SEALED_TABLES:
            cur.execute(f"SELECT count(*) FROM vigil.{table} WHERE session_id = %s", (session_id,))
            out[table] = int(one(cur)[0])
        return out

    # ------------------------------------------------------------------ staff and settings
    def pushed_mark(self, chair_id: int) -> int:
        """The chair's last audit row whose account or settings change the clinic record holds (0: none)."""
        def run(cur: psycopg.Cursor[Any]) -> int:
            cur.execute("SELECT greatest((SELECT max(origin_seq) FROM vigil.staff_accounts WHERE origin_chair_id = "
                        "%s), (SELECT max(origin_seq) FROM vigil.clinic_settings WHERE origin_chair_id = %s))",
                        (chair_id, chair_id))
            return int(one(cur)[0] or 0)
        return self._run(run)

    def push(self, accounts: Sequence[AccountVersion], settings: Sequence[SettingsVersion]) -> None:
        """Add account and settings versions (a version already held from the same chair change is
        skipped), in one transaction."""
        def run(cur: psycopg.Cursor[Any]) -> None:
            if accounts:
                cur.executemany(
                    "INSERT INTO vigil.staff_accounts (login, display_name, role, pin_hash, active, changed_at, "
                    "changed_by, origin_chair_id, origin_seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (origin_chair_id, origin_seq) DO NOTHING",
                    [(a.login, a.display_name, a.role, a.pin_hash, a.active, a.changed_at, a.changed_by,
                      a.origin_chair, a.origin_seq) for a in accounts])
            if settings:
                cur.executemany(
                    "INSERT INTO vigil.clinic_settings (json, changed_at, changed_by, origin_chair_id, origin_seq) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (origin_chair_id, origin_seq) DO NOTHING",
                    [(s.json, s.changed_at, s.changed_by, s.origin_chair, s.origin_seq) for s in settings])
        self._run(run)

    def current_accounts(self) -> list[AccountVersion]:
        """The current version of every staff account, by login."""
        def run(cur: psycopg.Cursor[Any]) -> list[AccountVersion]:
            cur.execute("SELECT login, display_name, role, pin_hash, active, changed_at, changed_by, origin_chair_id, "
                        "origin_seq FROM vigil.staff_current ORDER BY login")
            return [AccountVersion(*r) for r in cur.fetchall()]
        return self._run(run)

    def current_settings(self) -> SettingsVersion | None:
        """The latest clinic settings, or None."""
        def run(cur: psycopg.Cursor[Any]) -> SettingsVersion | None:
            cur.execute("SELECT json, changed_at, changed_by, origin_chair_id, origin_seq FROM vigil.clinic_settings "
                        "ORDER BY changed_at DESC, id DESC LIMIT 1")
            row = cur.fetchone()
            return None if row is None else SettingsVersion(*row)
        return self._run(run)

