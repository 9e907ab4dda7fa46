"""From the command line and the clinic settings to a chair publisher or board options.

Command-line options win over the clinic settings' ``board`` section (python-can's precedence).
The chair's acknowledge handling (:func:`board_actor`) is here too, so that the window and
``vigil record`` act on a board's acknowledge the same way.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from pydantic import ValidationError

from drivers.errors import ConfigError
from monitor.alarms.profile import AlarmProfile
from monitor.board.config import BoardSettings, BrokerOptions, BrokerUrlError, broker_options
from monitor.board.messages import AckCommand, MessageError, check_name
from monitor.board.publisher import ChairPublisher
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role

log = logging.getLogger(__name__)

#: The code of the chair's technical alarm when the broker cannot be reached, and its text.
UNREACHABLE_CODE = "board_unreachable"
UNREACHABLE_TEXT = "Clinic board unreachable"


class BoardSetupError(ConfigError):
    """Publishing or the board cannot be set up as asked; the message says what to fix."""


def _merged(args: argparse.Namespace, board: BoardSettings) -> dict:
    """Account options: the command line's, else the clinic settings'."""
    values = dict(clinic=getattr(args, "clinic_id", None) or board.clinic,
                  username=getattr(args, "mqtt_user", None) or board.username,
                  password_file=getattr(args, "mqtt_password_file", None) or board.password_file,
                  ca_file=getattr(args, "mqtt_ca", None) or board.ca_file)
    try:
        check_name(values["clinic"], "clinic id")
    except MessageError as exc:
        raise BoardSetupError(str(exc)) from None
    return values


def chair_publisher(args: argparse.Namespace, settings: ClinicSettings, profile: AlarmProfile, *,
                    on_broker_state: Callable[[bool, str], None] | None = None,
                    on_acknowledge: Callable[[AckCommand], None] | None = None) -> ChairPublisher | None:
    """The chair's publisher as the command line and the clinic settings ask, not started; None
    when publishing is off. :class:`BoardSetupError` for a bad URL, name, CA or password file."""
    board = settings.board
    url, values = getattr(args, "publish", None) or board.publish_url, _merged(args, board)
    if not url:
        return None
    chair = getattr(args, "chair", None) or board.chair
    if not chair:
        raise BoardSetupError("publishing to the clinic board needs a chair name: --chair NAME (or board.chair)")
    try:
        check_name(chair, "chair")
        options = broker_options(url, username=values["username"] or chair, password_file=values["password_file"],
                                 ca_file=values["ca_file"], keepalive_s=board.keepalive_s)
    except (MessageError, BrokerUrlError, ValueError) as exc:
        raise BoardSetupError(str(exc)) from None
    return ChairPublisher(options, values["clinic"], chair, profile=profile, publish_waves=board.publish_waves,
                          allow_acknowledge=board.allow_acknowledge, unreachable_after_s=board.unreachable_after_s,
                          on_broker_state=on_broker_state, on_acknowledge=on_acknowledge)


def board_options(args: argparse.Namespace, settings: ClinicSettings) -> tuple[BrokerOptions, str]:
    """``(options, clinic)`` for ``vigil board`` (``--broker`` or the settings' ``publish_url``).
    :class:`BoardSetupError` when no broker is given or the options are bad."""
    board = settings.board
    url, values = getattr(args, "broker", None) or board.publish_url, _merged(args, board)
    if not url:
        raise BoardSetupError("vigil board needs the clinic's broker: --broker mqtts://host:port")
    try:
        return broker_options(url, username=values["username"] or "board", password_file=values["password_file"],
                              ca_file=values["ca_file"], keepalive_s=board.keepalive_s), values["clinic"]
    except (BrokerUrlError, ValueError) as exc:
        raise BoardSetupError(str(exc)) from None


def board_actor(command: AckCommand) -> Actor | None:
    """The staff member an acknowledge from the board is recorded against (printed name marked
    "(clinic board)"), or None when the command's names are not valid staff names (logged)."""
    try:
        return Actor(username=command.username, display_name=f"{command.display_name} (clinic board)"[:80],
                     role=Role.NURSE)
    except ValidationError:
        log.warning("clinic board: acknowledge with an invalid staff name ignored")
        return None
