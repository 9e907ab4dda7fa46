"""The clinic record: every chair's sessions, staff accounts and clinic settings in PostgreSQL
(psycopg 3). With :mod:`monitor.store` the only place that knows SQL.

* :mod:`.schema` — connecting, the group roles and the versioned SQL migrations (``migrations/``);
* :mod:`.writer` — :class:`ClinicWriter`: what a chair's replication sends, one transaction a batch;
* :mod:`.reader` — :class:`PostgresReader`: the second :class:`monitor.store.reader.StoreReader`.

The chair side (what to send, when, verified how) is :mod:`monitor.clinic`; the set-up and the
guarantees are in docs/clinic-record.md.
"""

from monitor.store.postgres.reader import Location, PostgresReader
from monitor.store.postgres.schema import (
    OWNER_ROLE,
    REPLICATION_ROLE,
    REVIEW_ROLE,
    ClinicRecordError,
    ClinicUnavailable,
    check_schema,
    connect,
    is_postgres_url,
    migrations,
    safe_url,
    schema_version,
    setup,
)
from monitor.store.postgres.writer import AccountVersion, ChairState, ClinicWriter, Flag, SettingsVersion

__all__ = [
    "OWNER_ROLE", "REPLICATION_ROLE", "REVIEW_ROLE", "ClinicRecordError", "ClinicUnavailable", "Location",
    "PostgresReader", "ClinicWriter", "ChairState", "Flag", "AccountVersion", "SettingsVersion", "check_schema",
    "connect", "is_postgres_url", "migrations", "safe_url", "schema_version", "setup",
]
