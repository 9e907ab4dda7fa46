"""Who acts, and when: roles, users, PINs, sign-in with lockout, signatures, time helpers.

Every action Vigil records carries the acting user (an :class:`Actor`) and an aware UTC time
passed in by the caller; nothing in the domain reads the wall clock. The small helpers shared by
the whole session domain also live here, because this module sits at its bottom:

* :class:`RefusedAction`: the base of every "the rules refuse this" error. It is a ``ValueError``
  whose message is written for the nurse ("Wait 5 minutes between nasal devices: next allowed at
  10:42"); :class:`PermissionDenied` is one of them.
* :func:`ensure_utc`, :data:`UtcDatetime`: refuse naive datetimes, normalise to UTC.
* :func:`clock`: a time as the nurse reads it (local ``HH:MM``).
* :func:`nurse_message`: the readable text of any refusal, including pydantic's ``ValidationError``.

PINs are stored as a self-describing scrypt string (see :func:`hash_pin`), verified in constant
time (:func:`verify_pin`); a PIN has at least :data:`PIN_MIN_LENGTH` digits (a clinic may ask for
more, up to :data:`PIN_MAX_LENGTH`). :class:`Authenticator` locks a user out for 5 minutes after 5
wrong PINs in a row, keeping the count where its :class:`FailureLog` says (the store's, so that a
restart does not clear it). A sign-in gives a :data:`SessionToken` (:class:`SignIns`): an opaque
random id that the application layer resolves to the :class:`Actor` for every privileged action, so
that an ``Actor`` made up by a caller is worth nothing there.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Iterable, Mapping, NewType, Protocol

from drivers.errors import VigilError
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "RefusedAction", "PermissionDenied", "PinPolicyError", "AuthenticationFailed", "AccountLocked",
    "PinChangeRequired", "NotSignedIn",
    "Role", "Actor", "User", "Signature", "Authenticator", "FailureLog", "MemoryFailureLog",
    "SessionToken", "SignIns",
    "check_pin_policy", "hash_pin", "verify_pin", "new_user", "require_role",
    "ensure_utc", "UtcDatetime", "clock", "nurse_message", "refuse",
    "SCRYPT_LOG2_N", "SCRYPT_R", "SCRYPT_P", "PIN_MIN_LENGTH", "PIN_MAX_LENGTH",
]


# --------------------------------------------------------------------------- errors and time


class RefusedAction(VigilError, ValueError):
    """An input or action the rules refuse. The message says what is wrong and what to do."""


class PermissionDenied(RefusedAction):
    """The acting user's role does not allow the action (e.g. a nurse changing clinic settings)."""


class PinPolicyError(RefusedAction):
    """A new PIN breaks the PIN policy (see :func:`check_pin_policy`)."""


class AuthenticationFailed(RefusedAction):
    """Unknown user, inactive account or wrong PIN (the message does not say which of the first two)."""


class AccountLocked(AuthenticationFailed):
    """Too many wrong PINs in a row; ``until`` is when the next attempt is allowed (UTC)."""

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class PinChangeRequired(RefusedAction):
    """The user name and PIN are right, but the PIN is shorter than the clinic now requires: the
    user must choose a new PIN to sign in (the message says so; nothing is locked)."""


class NotSignedIn(PermissionDenied):
    """A privileged action was asked without a valid sign-in: no session token, an unknown or made-up
    one (an ``Actor`` is not a token), or one that ended (the screen was locked, the account was
    deactivated, or it expired)."""


def refuse(message: str) -> PydanticCustomError:
    """A pydantic validation error carrying ``message`` verbatim (for use inside validators)."""
    return PydanticCustomError("vigil", message)


def ensure_utc(value: datetime, what: str = "time") -> datetime:
    """Return ``value`` converted to UTC.

    ``what`` names the value in the error. A naive datetime (no time zone) is refused with
    :class:`RefusedAction`, because a time without a zone cannot be placed on the session record.
    """
    if not isinstance(value, datetime):
        raise RefusedAction(f"The {what} must be a date and time, not {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise RefusedAction(f"The {what} {value.isoformat()} has no time zone: Vigil needs UTC times")
    return value.astimezone(timezone.utc)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


#: A pydantic field type: an aware datetime, stored in UTC (naive input is refused).
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def clock(value: datetime) -> str:
    """``value`` as the nurse reads it on the wall clock, in the machine's time zone: ``HH:MM``, or
    ``HH:MM:SS`` when the seconds are not zero (so "next allowed at" is never too early)."""
    local = value.astimezone()
    return local.strftime("%H:%M:%S" if local.second or local.microsecond >= 500_000 else "%H:%M")


def nurse_message(error: BaseException) -> str:
    """The text to show a user for a refused input.

    For pydantic's ``ValidationError`` this joins the individual messages (Vigil's own are written
    for the nurse; pydantic's generic ones are prefixed with the field name). Other exceptions give
    ``str(error)``.
    """
    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors(include_url=False):
            msg = str(item.get("msg", ""))
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            if item.get("type") not in ("vigil", "value_error"):
                loc = ".".join(str(p) for p in item.get("loc", ()))
                msg = f"{loc}: {msg}" if loc else msg
            parts.append(msg)
        return "; ".join(parts)
    return str(error)


# --------------------------------------------------------------------------- roles and users


class Role(str, enum.Enum):
    """Staff roles. A charge nurse may do everything a nurse may do, plus clinic administration
    (settings, accounts, overriding discharge criteria)."""

    NURSE = "nurse"
    CHARGE_NURSE = "charge_nurse"

    @property
    def rank(self) -> int:
        """Privilege order: nurse 1, charge nurse 2."""
        return {Role.NURSE: 1, Role.CHARGE_NURSE: 2}[self]

    @property
    def label(self) -> str:
        """Human name of the role."""
        return {Role.NURSE: "nurse", Role.CHARGE_NURSE: "charge nurse"}[self]


_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")


def _check_username(value: str) -> str:
    value = value.strip().lower()
    if not _USERNAME.match(value):
        raise refuse(f"User name {value!r} should be 2–32 lower-case letters, digits, '.', '_' or '-', "
                     "starting with a letter")
    return value


def _check_display_name(value: str) -> str:
    value = " ".join(value.split())
    if not 1 <= len(value) <= 80:
        raise refuse("The printed name must be 1–80 characters")
    return value


Username = Annotated[str, AfterValidator(_check_username)]
PrintedName = Annotated[str, AfterValidator(_check_display_name)]


class Actor(BaseModel):
    """The user an action is recorded against: user name, printed name and role.

    This is what the rest of Vigil passes around (never the PIN hash). ``display_name`` is the
    printed name used on signatures. Bad input raises ``ValidationError``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Username
    display_name: PrintedName
    role: Role


    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return self.model_dump(mode="json")


class User(BaseModel):
    """A staff account: user name, printed name, role, PIN hash (from :func:`hash_pin`), active flag."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Username
    display_name: PrintedName
    role: Role
    pin_hash: str
    active: bool = True


    @field_validator("pin_hash")
    @classmethod
    def _hash_format(cls, value: str) -> str:
        _parse_hash(value)
        return value

    @property
    def actor(self) -> Actor:
        """The :class:`Actor` recorded for this user's actions."""
        return Actor(username=self.username, display_name=self.display_name, role=self.role)


def require_role(user: User | Actor, role: Role, action: str = "do this") -> None:
    """Raise :class:`PermissionDenied` unless ``user`` holds ``role`` or a higher one.

    ``action`` completes the message: "Only a charge nurse may change clinic settings (signed in:
    Ann Lee, nurse)".
    """
    if user.role.rank < role.rank:
        raise PermissionDenied(
            f"Only a {role.label} may {action} (signed in: {user.display_name}, {user.role.label})")


# --------------------------------------------------------------------------- PINs

#: scrypt cost parameters of :func:`hash_pin`: N = 2**14 (16 MiB of memory with r = 8), r = 8,
#: p = 1, 16-byte random salt, 32-byte key. About 0.1 s per PIN on a clinic PC; stored strings
#: carry their own parameters, so raising these later does not invalidate existing PINs.
SCRYPT_LOG2_N = 14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_HASH_RE = re.compile(r"^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$")


#: The shortest PIN Vigil accepts: 6 digits (a 4-digit PIN falls to an offline search of a stolen
#: database in minutes); a clinic may require more (setting ``pin_min_length``).
PIN_MIN_LENGTH = 6
#: The longest PIN, and the most a clinic may require.
PIN_MAX_LENGTH = 12


def check_pin_policy(pin: str, min_length: int = PIN_MIN_LENGTH) -> None:
    """Refuse a weak or malformed PIN with :class:`PinPolicyError`.

    Policy: ``min_length``–12 digits (``min_length`` is the clinic's, never below
    :data:`PIN_MIN_LENGTH`); not all the same digit (``000000``); not a run of consecutive digits up
    or down, wrapping 9→0 (``123456``, ``654321``, ``789012``).
    """
    min_length = max(PIN_MIN_LENGTH, min(int(min_length), PIN_MAX_LENGTH))
    if not isinstance(pin, str) or not pin.isascii() or not pin.isdigit():
        raise PinPolicyError("A PIN must contain digits only")
    if not min_length <= len(pin) <= PIN_MAX_LENGTH:
        raise PinPolicyError(f"A PIN must have {min_length}–{PIN_MAX_LENGTH} digits (this one has {len(pin)})")
    if len(set(pin)) == 1:
        raise PinPolicyError("A PIN may not repeat one digit (like 111111): choose another")
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:])}
    if steps in ({1}, {9}):
        raise PinPolicyError("A PIN may not be a run of consecutive digits (like 123456): choose another")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    match = _HASH_RE.match(stored) if isinstance(stored, str) else None
    if not match:
        raise RefusedAction("Stored PIN hash is not in the '$scrypt$ln=..,r=..,p=..$salt$key' format")
    ln, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if not (10 <= ln <= 20 and 1 <= r <= 16 and 1 <= p <= 4):
        raise RefusedAction(f"Stored PIN hash has unsupported scrypt parameters ln={ln}, r={r}, p={p}")
    return ln, r, p, _unb64(match.group(4)), _unb64(match.group(5))


def _scrypt(pin: str, salt: bytes, ln: int, r: int, p: int, dklen: int) -> bytes:
    n = 1 << ln
    return hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen,
                          maxmem=128 * r * n * p + (8 << 20))


def hash_pin(pin: str, *, log2_n: int = SCRYPT_LOG2_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
             min_length: int = PIN_MIN_LENGTH) -> str:
    """Hash ``pin`` with scrypt and a fresh random 16-byte salt.

    Returns a self-describing string ``$scrypt$ln=14,r=8,p=1$<salt>$<key>`` (PHC style; salt and
    key in unpadded base64), so :func:`verify_pin` needs nothing else. The PIN is first checked
    against :func:`check_pin_policy` with ``min_length`` (``PinPolicyError``). ``log2_n`` below 14
    is for tests only.
    """
    check_pin_policy(pin, min_length)
    if not (10 <= log2_n <= 20 and 1 <= r <= 16 and 1 <= p <= 4):
        raise RefusedAction(f"Unsupported scrypt parameters ln={log2_n}, r={r}, p={p}")
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _scrypt(pin, salt, log2_n, r, p, _KEY_BYTES)
    return f"$scrypt$ln={log2_n},r={r},p={p}${_b64(salt)}${_b64(key)}"


def verify_pin(pin: str, stored: str) -> bool:
    """True when ``pin`` matches ``stored`` (from :func:`hash_pin`); compared in constant time.

    A PIN that is not a string gives False. A malformed ``stored`` string raises
    :class:`RefusedAction` (the account record is damaged; that is not a wrong PIN).
    """
    ln, r, p, salt, key = _parse_hash(stored)
    if not isinstance(pin, str):
        return False
    candidate = _scrypt(pin, salt, ln, r, p, len(key))
    return hmac.compare_digest(candidate, key)


def new_user(username: str, display_name: str, role: Role, pin: str, *,
             log2_n: int = SCRYPT_LOG2_N) -> User:
    """Create a :class:`User` with a hashed PIN (policy checked). Bad input raises ``ValueError``."""
    return User(username=username, display_name=display_name, role=role,
                pin_hash=hash_pin(pin, log2_n=log2_n))


# --------------------------------------------------------------------------- sign-in


class FailureLog(Protocol):
    """Where :class:`Authenticator` keeps wrong-PIN counts (user names as typed, lower-cased)."""

    def failures(self, username: str) -> tuple[int, datetime | None]:
        """``(wrong PINs in a row, locked until)`` for ``username`` (``(0, None)`` when none)."""

    def failed(self, username: str, count: int, locked_until: datetime | None) -> None:
        """A wrong PIN (or an unknown user name): the new count, and the lock if it started."""

    def succeeded(self, username: str) -> None:
        """A sign-in that worked: the count starts again."""


class MemoryFailureLog:
    """A :class:`FailureLog` in memory (a restart clears it): for a record that cannot be written."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[int, datetime | None]] = {}

    def failures(self, username: str) -> tuple[int, datetime | None]:
        """See :class:`FailureLog`."""
        return self._rows.get(username, (0, None))

    def failed(self, username: str, count: int, locked_until: datetime | None) -> None:
        """See :class:`FailureLog`."""
        self._rows[username] = (count, locked_until)

    def succeeded(self, username: str) -> None:
        """See :class:`FailureLog`."""
        self._rows.pop(username, None)


@dataclass
class Authenticator:
    """Signs users in by user name and PIN, locking an account after repeated wrong PINs.

    ``max_failures`` wrong PINs in a row (default 5) lock that user name for ``lockout``
    (default 5 minutes) from the last failure; a successful sign-in resets the count. Attempts while
    locked are refused without checking the PIN and do not extend the lock. Unknown user names are
    tracked the same way, so the responses do not reveal which names exist. Time is injected (aware
    UTC): the lock is a wall-clock time, so that it can be kept across a restart. The counts live in
    ``log`` (default: memory; the chair passes its store's, which survives a restart).
    """

    users: Mapping[str, User] | Iterable[User] = field(default_factory=dict)
    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=5)
    log: FailureLog = field(default_factory=MemoryFailureLog)

    def __post_init__(self) -> None:
        users = self.users.values() if isinstance(self.users, Mapping) else self.users
        self._users: dict[str, User] = {u.username: u for u in users}
        self._dummy = f"$scrypt$ln={SCRYPT_LOG2_N},r=8,p=1${_b64(b'vigil-dummy-salt')}${_b64(bytes(32))}"

    def add(self, user: User) -> None:
        """Add or replace an account (account administration is checked by the caller)."""
        self._users[user.username] = user

    def locked_until(self, username: str, now: datetime) -> datetime | None:
        """When ``username`` may try again, or None if it is not locked at ``now``."""
        now = ensure_utc(now)
        _, until = self.log.failures(username.strip().lower())
        return until if until is not None and now < until else None

    def failures(self, username: str) -> int:
        """Wrong PINs in a row so far for ``username``."""
        return self.log.failures(username.strip().lower())[0]

    def check(self, username: str, pin: str, now: datetime) -> User:
        """Return the :class:`User` for a correct user name and PIN at ``now`` (the count is reset).

        Raises :class:`AccountLocked` while locked ("Too many wrong PINs: try again at 10:47"), and
        :class:`AuthenticationFailed` for an unknown or inactive user or a wrong PIN, saying how
        many attempts are left before the lock.
        """
        now = ensure_utc(now)
        key = username.strip().lower() if isinstance(username, str) else ""
        count, until = self.log.failures(key)
        if until is not None:
            if now < until:
                raise AccountLocked(f"Too many wrong PINs: try again at {clock(until)}", until)
            count = 0
        user = self._users.get(key)
        ok = verify_pin(pin, user.pin_hash if user else self._dummy)
        if ok and user is not None and user.active:
            self.log.succeeded(key)
            return user
        count += 1
        if count >= self.max_failures:
            locked = now + self.lockout
            self.log.failed(key, count, locked)
            raise AccountLocked(
                f"Wrong user name or PIN {count} times: sign-in locked until {clock(locked)}", locked)
        self.log.failed(key, count, None)
        left = self.max_failures - count
        raise AuthenticationFailed(
            f"Wrong user name or PIN ({left} attempt{'s' if left != 1 else ''} left before a "
            f"{int(self.lockout.total_seconds() // 60)}-minute lock)")

    def authenticate(self, username: str, pin: str, now: datetime) -> Actor:
        """:meth:`check`, giving the :class:`Actor`."""
        return self.check(username, pin, now).actor


#: A sign-in's token (:class:`SignIns`): opaque; only the :class:`SignIns` that issued it knows whose.
SessionToken = NewType("SessionToken", str)


class SignIns:
    """Who is signed in: each sign-in is a :data:`SessionToken` (32 random bytes, URL-safe text)
    mapped, in memory only, to its :class:`Actor`. A token ends when the user signs out or the screen
    is locked (:meth:`end`), when the account is deactivated (:meth:`end_user`), or ``lifetime_s``
    after it was issued (default 12 h: a shift), measured on ``clock`` (monotonic seconds, so that a
    wall-clock change neither ends nor extends it). Safe to use from several threads."""

    def __init__(self, lifetime_s: float = 12 * 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._tokens: dict[str, tuple[Actor, float]] = {}
        self._lock = threading.Lock()

    def issue(self, actor: Actor) -> SessionToken:
        """A new token for ``actor``."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (actor, self._clock() + self.lifetime_s)
        return SessionToken(token)

    def actor(self, token: object) -> Actor:
        """The signed-in user of ``token``; :class:`NotSignedIn` for anything else (None, an
        :class:`Actor`, an unknown, ended or expired token)."""
        if isinstance(token, Actor):
            raise NotSignedIn(f"{token.display_name} is not signed in here: sign in with your ID and PIN")
        if not isinstance(token, str) or not token:
            raise NotSignedIn("Sign in with your ID and PIN first")
        with self._lock:
            found = self._tokens.get(token)
            if found is not None and self._clock() >= found[1]:
                del self._tokens[token]
                raise NotSignedIn("Your sign-in has expired: sign in again")
        if found is None:
            raise NotSignedIn("You are not signed in (the screen was locked, or the sign-in ended): sign in again")
        return found[0]

    def end(self, token: object) -> None:
        """Sign out ``token`` (nothing happens for an unknown one)."""
        if isinstance(token, str):
            with self._lock:
                self._tokens.pop(token, None)

    def end_user(self, username: str) -> None:
        """End every sign-in of ``username`` (its account was deactivated or its PIN reset)."""
        with self._lock:
            for token in [t for t, (a, _) in self._tokens.items() if a.username == username]:
                del self._tokens[token]


# --------------------------------------------------------------------------- signatures


class Signature(BaseModel):
    """A recorded signature: who (printed name and user), when (UTC) and what it means.

    ``meaning`` is a short statement such as "reviewed and closed" or "clinically stable".
    Bad input (empty meaning, naive time) raises ``ValidationError``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: Actor
    t: UtcDatetime
    meaning: str
    note: str | None = None

    @field_validator("meaning")
    @classmethod
    def _meaning(cls, value: str) -> str:
        value = " ".join(value.split())
        if not 3 <= len(value) <= 200:
            raise refuse("The meaning of a signature must be 3–200 characters")
        return value

    @field_validator("note")
    @classmethod
    def _note(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.strip() or None
            if value and len(value) > 500:
                raise refuse("A signature note may have at most 500 characters")
        return value

    @property
    def printed_name(self) -> str:
        """The signer's printed name."""
        return self.by.display_name

    def text(self) -> str:
        """One line for the record: "Signed by Ann Lee (charge nurse) at 11:20: reviewed and closed"."""
        return f"Signed by {self.printed_name} ({self.by.role.label}) at {clock(self.t)}: {self.meaning}"

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return self.model_dump(mode="json")
