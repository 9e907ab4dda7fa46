"""The clinic record's server side: connecting, roles and the versioned SQL migrations.

Migrations are plain SQL files, ``migrations/NNNN_name.sql``, applied in order, each in its own
transaction as role ``vigil_owner``; ``vigil.schema_migrations`` records each applied file with its
SHA-256, so an edited migration is noticed (:class:`ClinicRecordError`) instead of silently
diverging. Plain files rather than Alembic: the schema has no ORM models to diff against, a DBA can
read and apply every step with ``psql``, and the project carries no migration framework.

Roles (cluster-wide; made by :func:`setup` when missing, all ``NOLOGIN`` — the clinic's login roles
are made members of them, see docs/clinic-record.md):

* ``vigil_owner`` owns the schema ``vigil``, its tables and trigger functions; nobody logs in as it.
* ``vigil_replication``: what a chair's replication login may do — read, INSERT recorded rows,
  update a chair's name, a session's forward-only progress counters and the unfinished waveform
  block of an open session; never UPDATE or DELETE a recorded row.
* ``vigil_review``: SELECT only (review desks, exports).
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from typing import Any, NamedTuple

import psycopg
from psycopg import conninfo

from monitor.store.reader import is_postgres_url
from monitor.store.records import StoreError

__all__ = ["OWNER_ROLE", "REPLICATION_ROLE", "REVIEW_ROLE", "ClinicRecordError", "ClinicUnavailable", "Migration",
           "migrations", "schema_version", "check_schema", "setup", "connect", "is_postgres_url", "safe_url"]

OWNER_ROLE = "vigil_owner"
REPLICATION_ROLE = "vigil_replication"
REVIEW_ROLE = "vigil_review"
_LOCK_KEY = 0x5649474C  # "VIGL": one migration at a time per database
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class ClinicRecordError(StoreError):
    """The clinic record cannot be used as it is (schema missing, too old or too new, a migration
    edited after it was applied, a refused write); the message says what."""


class ClinicUnavailable(ClinicRecordError):
    """The clinic record's server cannot be reached or refused the connection (retry later)."""


class Migration(NamedTuple):
    """One schema step: ``version`` (from the file name), ``name``, the SQL and its SHA-256."""

    version: int
    name: str
    sql: str
    sha256: str


def migrations() -> list[Migration]:
    """The migrations shipped with this Vigil, in version order (versions must run 1, 2, 3 …)."""
    found = []
    for item in resources.files("monitor.store.postgres").joinpath("migrations").iterdir():
        match = _FILE.match(item.name)
        if match:
            sql = item.read_text(encoding="utf-8")
            found.append(Migration(int(match.group(1)), match.group(2), sql,
                                   hashlib.sha256(sql.encode("utf-8")).hexdigest()))
    found.sort()
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise ClinicRecordError("the shipped migrations are not numbered 1, 2, 3 …")
    return found


def safe_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable URL)"
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    user = f"{params['user']}@" if params.get("user") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname', '')}"


def connect(url: str, *, connect_timeout: float = 5.0, autocommit: bool = False,
            application_name: str = "vigil") -> psycopg.Connection[Any]:
    """A connection to the clinic record at ``url`` (libpq URL; a password is better kept in a
    passfile, ``~/.pgpass`` or ``PGPASSFILE``). TCP keep-alives notice a dead server within about
    half a minute. Unreachable server or refused login → :class:`ClinicUnavailable`; a malformed
    URL → :class:`ClinicRecordError`."""
    if not is_postgres_url(url):
        raise ClinicRecordError(f"not a PostgreSQL URL: {url!r} (postgresql://user@host/database)")
    try:
        return psycopg.connect(url, connect_timeout=max(1, round(connect_timeout)), autocommit=autocommit,
                               application_name=application_name, keepalives=1, keepalives_idle=10,
                               keepalives_interval=5, keepalives_count=3)
    except psycopg.OperationalError as exc:
        raise ClinicUnavailable(f"the clinic record at {safe_url(url)} cannot be reached: "
                                f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}") from None
    except psycopg.ProgrammingError as exc:
        raise ClinicRecordError(f"the clinic record URL is not valid: {exc}") from None


def one(cur: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    """The row a query that always returns one (an aggregate, a row just upserted) returned."""
    row = cur.fetchone()
    if row is None:
        raise ClinicRecordError("the clinic record returned no row where one was expected")
    return tuple(row)


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The highest migration applied to the database (0 when the schema is not there)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('vigil.schema_migrations') IS NOT NULL")
        if not one(cur)[0]:
            return 0
        cur.execute("SELECT coalesce(max(version), 0) FROM vigil.schema_migrations")
        return int(one(cur)[0])


def check_schema(conn: psycopg.Connection[Any]) -> int:
    """Check that the database holds exactly the shipped schema; return its version. Missing,
    older, newer or edited → :class:`ClinicRecordError` saying what to do."""
    shipped = migrations()
    version = schema_version(conn)
    if version == 0:
        raise ClinicRecordError("the database holds no clinic record: set it up with vigil clinic-setup "
                                "(see docs/clinic-record.md)")
    if version > len(shipped):
        raise ClinicRecordError(f"the clinic record has schema version {version}, written by a newer Vigil "
                                f"(this one knows up to {len(shipped)}): update Vigil")
    if version < len(shipped):
        raise ClinicRecordError(f"the clinic record has schema version {version}; this Vigil needs "
                                f"{len(shipped)}: run vigil clinic-setup to migrate it")
    with conn.cursor() as cur:
        cur.execute("SELECT version, sha256 FROM vigil.schema_migrations ORDER BY version")
        applied = dict(cur.fetchall())
    for m in shipped:
        if applied.get(m.version) != m.sha256:
            raise ClinicRecordError(f"migration {m.version} ({m.name}) in the database differs from the one "
                                    "shipped with this Vigil: the schema was changed by hand")
    return version


_ROLES_SQL = f"""
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['{OWNER_ROLE}', '{REPLICATION_ROLE}', '{REVIEW_ROLE}'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object THEN NULL;  -- made meanwhile by another set-up
            END;
        END IF;
    END LOOP;
END $$
"""


def setup(url: str) -> int:
    """Make the group roles if missing, then apply every migration not yet applied (as
    ``vigil_owner``; the connecting user must be a superuser, or have CREATEROLE and be allowed to
    create schemas in the database). Idempotent; returns the schema version. A database with a
    newer or edited schema → :class:`ClinicRecordError`."""
    shipped = migrations()
    with connect(url, autocommit=True, application_name="vigil clinic-setup") as conn:
        conn.execute(_ROLES_SQL)
        conn.execute(f"GRANT {OWNER_ROLE} TO CURRENT_USER")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS vigil AUTHORIZATION {OWNER_ROLE}")
            conn.execute(f"SET LOCAL ROLE {OWNER_ROLE}")
            conn.execute("CREATE TABLE IF NOT EXISTS vigil.schema_migrations (version integer PRIMARY KEY, "
                         "name text NOT NULL, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            conn.execute(f"GRANT USAGE ON SCHEMA vigil TO {REPLICATION_ROLE}, {REVIEW_ROLE}")
            conn.execute(f"GRANT SELECT ON vigil.schema_migrations TO {REPLICATION_ROLE}, {REVIEW_ROLE}")
        for m in shipped:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                row = conn.execute("SELECT sha256 FROM vigil.schema_migrations WHERE version = %s",
                                   (m.version,)).fetchone()
                if row is not None:
                    if row[0] != m.sha256:
                        raise ClinicRecordError(f"migration {m.version} ({m.name}) in the database differs from "
                                                "the one shipped with this Vigil: the schema was changed by hand")
                    continue
                conn.execute(f"SET LOCAL ROLE {OWNER_ROLE}")
                conn.execute(m.sql)
                conn.execute("INSERT INTO vigil.schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                             (m.version, m.name, m.sha256))
        return check_schema(conn)
