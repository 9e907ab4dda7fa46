"""Where the clinic board's broker is and how to sign in to it.

:class:`BoardSettings` is the clinic settings' ``board`` section (off by default); a
:class:`BrokerOptions` is what one client (a chair's publisher or the board) connects with. A
password is never a setting, an argument or a log line: it is read from a file (``password_file``,
readable by the Vigil user only) or from the environment variable :data:`PASSWORD_ENV`, and kept
out of every ``repr``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from drivers.errors import ConfigError
from monitor.board.messages import MessageError, check_name
from monitor.staff import refuse

#: Environment variable a password may come from instead of a file.
PASSWORD_ENV = "VIGIL_MQTT_PASSWORD"


class BrokerUrlError(ConfigError):
    """A broker URL that cannot be used; the message says why."""


@dataclass(frozen=True)
class BrokerAddress:
    """``mqtt://host:port`` (plain TCP, default port 1883) or ``mqtts://host:port`` (TLS, 8883)."""

    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        """The URL again, with the port."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Read a broker URL; :class:`BrokerUrlError` for another scheme, no host, a bad port, or a
    user name or password in the URL (they never go on a command line)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BrokerUrlError(f"broker URL {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise BrokerUrlError(f"broker URL {url!r} must start with mqtt:// or mqtts:// (TLS)")
    if parts.username or parts.password:
        raise BrokerUrlError("broker URL: give the user name with --mqtt-user and the password in a file "
                             "(--mqtt-password-file), never in the URL")
    if not parts.hostname:
        raise BrokerUrlError(f"broker URL {url!r} has no host")
    if parts.path not in ("", "/") or parts.query:
        raise BrokerUrlError(f"broker URL {url!r}: only mqtt[s]://host:port is understood")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls)


class BoardSettings(BaseModel):
    """The clinic settings' ``board`` section: publishing this chair to the clinic board.

    ``publish_url`` (default "": off) ``mqtt://host:port`` or ``mqtts://host:port`` (TLS);
    ``clinic`` (default "clinic") and ``chair`` name the topics ``vigil/<clinic>/<chair>/…``
    (1–64 letters, digits, ``_ . -``; ``chair`` is required when publishing); ``username``
    (default: the chair name); ``password_file`` (a file holding the password; or the
    environment variable VIGIL_MQTT_PASSWORD); ``ca_file`` (the clinic CA certificate the broker's
    certificate is checked against; default: the system's CAs); ``keepalive_s`` (default 5;
    2–10 s: the broker declares a silent chair offline after 1.5 × this); ``unreachable_after_s``
    (default 10; 2–60 s without the broker before the chair's LOW technical alarm
    "clinic board unreachable"); ``publish_waves`` (default False: waveforms ≤ 125 Hz);
    ``allow_acknowledge`` (default False: the board is a secondary display and never acknowledges;
    True lets a signed-in board user acknowledge, recorded at the chair with their name);
    ``show_patient_names`` (default False: the board shows initials only).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    publish_url: str = ""
    clinic: str = "clinic"
    chair: str = ""
    username: str = ""
    password_file: str = ""
    ca_file: str = ""
    keepalive_s: int = 5
    unreachable_after_s: int = 10
    publish_waves: bool = False
    allow_acknowledge: bool = False
    show_patient_names: bool = False

    @field_validator("publish_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value.strip():
            try:
                parse_broker_url(value)
            except BrokerUrlError as exc:
                raise refuse(str(exc)) from None
        return value.strip()

    @field_validator("clinic")
    @classmethod
    def _clinic(cls, value: str) -> str:
        return _name(value, "Board clinic name")

    @field_validator("chair")
    @classmethod
    def _chair(cls, value: str) -> str:
        return _name(value, "Board chair name") if value else value

    @field_validator("keepalive_s")
    @classmethod
    def _keepalive(cls, value: int) -> int:
        if not 2 <= value <= 10:
            raise refuse(f"Board keep-alive {value} s is outside 2–10 s")
        return value

    @field_validator("unreachable_after_s")
    @classmethod
    def _unreachable(cls, value: int) -> int:
        if not 2 <= value <= 60:
            raise refuse(f"Board unreachable delay {value} s is outside 2–60 s")
        return value

    @model_validator(mode="after")
    def _chair_needed(self) -> "BoardSettings":
        if self.publish_url and not self.chair:
            raise refuse("Publishing to the clinic board needs a chair name (board.chair)")
        return self


def _name(value: str, what: str) -> str:
    try:
        return check_name(value, what)
    except MessageError as exc:
        raise refuse(str(exc)) from None


@dataclass(frozen=True)
class BrokerOptions:
    """How one client connects: address, account, CA, keep-alive. ``password`` is hidden from repr."""

    address: BrokerAddress
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    keepalive_s: int = 5
    client_id: str = ""


def read_password(path: str | None) -> str:
    """The password in ``path`` (first line, stripped), else in the environment variable
    :data:`PASSWORD_ENV`, else "". An unreadable file raises ``ValueError`` naming the file (never
    its content)."""
    if path:
        try:
            return Path(path).expanduser().read_text(encoding="utf-8").splitlines()[0].strip()
        except IndexError:
            raise ValueError(f"password file {path} is empty") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the password file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return os.environ.get(PASSWORD_ENV, "")


def broker_options(url: str, *, username: str = "", password_file: str | None = None, ca_file: str = "",
                   keepalive_s: int = 5, client_id: str = "") -> BrokerOptions:
    """Options for a client from a URL and account details (the password read with
    :func:`read_password`). ``BrokerUrlError``/``ValueError`` for a bad URL, a missing CA file or
    an unreadable password file."""
    address = parse_broker_url(url)
    if ca_file and not Path(ca_file).expanduser().is_file():
        raise ValueError(f"CA certificate {ca_file} not found")
    return BrokerOptions(address, username, read_password(password_file), str(Path(ca_file).expanduser()) if ca_file else "",
                         keepalive_s, client_id)


def add_broker_arguments(parser: argparse.ArgumentParser, *, chair: bool) -> None:
    """The clinic-board options of ``vigil run``/``vigil record`` (``chair``) or ``vigil board``."""
    if chair:
        parser.add_argument("--publish", metavar="URL",
                            help="publish this chair to the clinic board: mqtt://host:port or mqtts://host:port (TLS)")
        parser.add_argument("--chair", help="this chair's name on the clinic board and in the clinic record (and its broker "
                                 "account by default; else board.chair / clinic_record.chair, else the host name "
                                 "for the clinic record)")
    else:
        parser.add_argument("--broker", metavar="URL", help="the clinic's broker: mqtts://host:port (or mqtt://)")
    parser.add_argument("--clinic-id", help="the clinic's name in the topics (default: clinic settings, 'clinic')")
    parser.add_argument("--mqtt-user", help="broker account (default: the chair name; for the board, 'board')")
    parser.add_argument("--mqtt-password-file", metavar="FILE",
                        help="file holding the broker password (or set VIGIL_MQTT_PASSWORD)")
    parser.add_argument("--mqtt-ca", metavar="FILE", help="the clinic CA certificate the broker's is checked against")
