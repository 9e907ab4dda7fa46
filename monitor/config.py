"""Where Vigil keeps things, and loading of the clinic's settings and alarm profile.

Precedence (python-can's): command line > environment > file. The database is ``--db`` >
``VIGIL_DB`` > the platform's user data folder. The clinic's settings and alarm profile are the
shipped defaults (``resources/``) with the clinic's own files in the platform's config folder
laid over them (``clinic_settings.json``, ``alarm_profile.json``), which only a charge nurse
changes through Vigil (:func:`save_clinic_settings`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from monitor.alarms.profile import AlarmProfile, default_profile, load_profile
from monitor.settings import ClinicSettings, load_settings, override_payload
from monitor.store import SessionStore, StoreError, default_db_path
from monitor.store.reader import StoreReader, is_postgres_url

APP = "Vigil"


def db_path(cli_value: str | None = None) -> Path:
    """The database file: ``--db`` > ``VIGIL_DB`` > the user data folder."""
    if cli_value:
        path = Path(cli_value).expanduser()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
    return default_db_path()


def open_reader(db: str | None = None, *, prefer_writable: bool = False) -> StoreReader:
    """The record to read for ``vigil sessions``, ``vigil export``, ``vigil review`` and the review
    window: ``db`` (``--db``, else ``VIGIL_DB``) is a ``postgresql://`` URL → the clinic record, every
    chair's sessions (:class:`monitor.store.postgres.PostgresReader`, read-only); else the SQLite file
    :func:`db_path` names, read-only — or, with ``prefer_writable``, read-write unless another Vigil
    is recording into it (then read-only), so that late entries can be added.

    A missing file (when not writable), an unreadable file, an unreachable server or a clinic record
    without this Vigil's schema raise :class:`StoreError` (or ``OSError``) with a one-line message."""
    db = db or os.environ.get("VIGIL_DB") or None
    if is_postgres_url(db):
        from monitor.store.postgres import PostgresReader  # noqa: PLC0415 (psycopg only when needed)

        return PostgresReader(str(db))
    path = db_path(db)
    if prefer_writable:
        try:
            return SessionStore(path)
        except StoreError:  # another Vigil records into it: review read-only (no late entries)
            pass
    if not path.exists():
        raise StoreError(f"no database at {path}: give the one to read with --db PATH (or set VIGIL_DB)"
                         + _dev_database_hint())
    return SessionStore(path, readonly=True)


#: Where ``make run`` records (the Makefile also exports it as ``VIGIL_DB`` for the commands it runs).
DEV_DB = Path("var") / "vigil-dev.sqlite"


def _dev_database_hint() -> str:
    """A pointer to the database ``make run`` recorded into, when there is one in this folder."""
    return f"; make run records into {DEV_DB} here: --db {DEV_DB}" if DEV_DB.exists() else ""


def config_dir() -> Path:
    """The clinic's configuration folder (``VIGIL_CONFIG_DIR`` overrides, for tests and kiosks)."""
    env = os.environ.get("VIGIL_CONFIG_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_config_dir(APP, appauthor=False))


def shipped_settings_path() -> Path:
    """The defaults shipped with Vigil."""
    return Path(__file__).resolve().parent.parent / "resources" / "clinic_settings_default.json"


def load_clinic_settings(cli: list[str] | None = None) -> ClinicSettings:
    """Shipped defaults < clinic file < ``VIGIL_SETTING_*`` environment < ``cli`` overrides."""
    return load_settings(shipped_settings_path(), config_dir() / "clinic_settings.json", cli=cli or None)


def save_clinic_settings(settings: ClinicSettings) -> Path:
    """Write the clinic's overrides (what differs from the shipped defaults) atomically.
    The caller has checked the role (:func:`monitor.settings.update_settings`)."""
    defaults = load_settings(shipped_settings_path(), None, environ={})
    path = config_dir() / "clinic_settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(override_payload(settings, defaults), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_clinic_profile() -> AlarmProfile:
    """The clinic's alarm profile file if there is one, else the shipped default."""
    path = config_dir() / "alarm_profile.json"
    return load_profile(path) if path.exists() else default_profile()
