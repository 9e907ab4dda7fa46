"""The clinic record, chair side (Qt-free): replication of the chair's record into PostgreSQL, and
staff accounts and clinic settings kept there so one sign-in works at every chair.

* :mod:`.replication` — :class:`ReplicationWorker`, the thread that copies this chair's sessions;
* :mod:`.verify` — the checks made on arrival (audit chain, charted entries, session identity);
* :mod:`.accounts` — :class:`AccountSync`, staff accounts and settings to and from the clinic record;
* :mod:`.config` — the ``clinic_record`` settings section;
* :mod:`.link` — starting and stopping all of it for ``vigil run`` and ``vigil record``.

SQL lives in :mod:`monitor.store.postgres` (the server side: schema, writer, reader); see
docs/clinic-record.md for the set-up and what replication guarantees.
"""
