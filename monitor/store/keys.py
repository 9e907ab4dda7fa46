"""The audit chain's keys: a secret per database, kept outside the database file.

Each audit row's hash (:func:`monitor.store.codec.audit_digest`) can be recomputed by anyone who
can read the file; its ``mac`` — ``"<key id>:<HMAC-SHA256(key, hash)>"`` — only by someone who
holds the key. So a row edited by hand, even with every later hash recomputed, no longer matches
its MAC (:meth:`monitor.store.SessionStore.verify_audit`).

Where the keys live: ``$VIGIL_KEY_DIR`` if set, else ``<user data dir>/Vigil/keys`` (a folder
readable by its owner only, 0700). One file per database, named after the database's identity
(``meta.chair_uid``): ``<uid>.keys``, owner-only (0600), a JSON object key id → key (hex, 32
random bytes). A key id is the first 16 hex digits of the key's SHA-256: it names the key in the
MACs without revealing it. A file normally holds one key; a database opened on a computer that does
not have its key starts a new key there (recorded in the chain), and both may end up in one file
when the key files are copied together.

Who the key protects against: anyone who can change the database file but cannot read the key
file — a copy of the file, a backup, a shared folder, another account. Whoever runs Vigil as the
same user can read both; against that, the clinic record (a copy on a server) is the defence.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from monitor.store.records import StoreError

__all__ = ["key_dir", "key_id", "load_keys", "find_key", "new_key", "mac", "check_mac"]


def key_dir() -> Path:
    """The folder of the keys (``$VIGIL_KEY_DIR``, else ``<user data dir>/Vigil/keys``); not created here."""
    env = os.environ.get("VIGIL_KEY_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("Vigil", appauthor=False)) / "keys"


def key_id(key: bytes) -> str:
    """The public name of a key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:16]


def _file(uid: str) -> Path:
    if not uid or any(c not in "0123456789abcdef-" for c in uid):
        raise StoreError(f"not a database identity: {uid!r}")
    return key_dir() / f"{uid}.keys"


def _read(path: Path) -> dict[str, bytes]:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"the audit key file {path} cannot be read: {exc}") from None
    try:
        data = json.loads(text)
        keys = {str(k): bytes.fromhex(v) for k, v in data.items()}
    except (ValueError, AttributeError, TypeError):
        raise StoreError(f"the audit key file {path} is damaged (not the JSON Vigil writes)") from None
    return {k: v for k, v in keys.items() if key_id(v) == k}


def load_keys(uid: str) -> dict[str, bytes]:
    """The keys of database ``uid`` on this computer (key id → key); empty when there are none.
    A damaged key file raises :class:`StoreError`."""
    return _read(_file(uid))


def find_key(kid: str) -> bytes | None:
    """The key with id ``kid`` from any key file on this computer (an archive names the key of its
    rows, not its database), or None."""
    folder = key_dir()
    try:
        files = sorted(folder.glob("*.keys"))
    except OSError:
        return None
    for path in files:
        try:
            found = _read(path).get(kid)
        except StoreError:
            continue
        if found is not None:
            return found
    return None


def new_key(uid: str) -> bytes:
    """Make a new random key for database ``uid``, add it to its key file (created owner-only,
    written atomically) and return it. An unwritable key folder raises :class:`StoreError`."""
    key = secrets.token_bytes(32)
    path = _file(uid)
    old_umask = os.umask(0o077)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys = _read(path)
        keys[key_id(key)] = key
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            json.dump({k: v.hex() for k, v in sorted(keys.items())}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot write the audit key file {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old_umask)
    return key


def mac(key: bytes, digest: str) -> str:
    """The MAC of an audit row whose hash is ``digest``: ``"<key id>:<hex HMAC-SHA256>"``."""
    return f"{key_id(key)}:{hmac.new(key, digest.encode('ascii'), hashlib.sha256).hexdigest()}"


def check_mac(key: bytes, digest: str, value: str) -> bool:
    """True when ``value`` is the MAC of ``digest`` under ``key`` (constant-time comparison)."""
    return hmac.compare_digest(mac(key, digest), value or "")
