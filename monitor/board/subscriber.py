"""The board's MQTT client: subscribes to every chair of a clinic and, when allowed, sends
acknowledge commands. paho-mqtt runs its network loop in its own thread (reconnecting with
back-off, 0.5 s doubling to 10 s); the callbacks run there and must hand over at once (the Qt
board forwards them as queued signals). Passwords are never logged.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from monitor.board.config import BrokerOptions
from monitor.board.messages import AckCommand, ack_topic, board_subscription, check_name, encode

log = logging.getLogger(__name__)


class BoardClient:
    """Connects as the board account and delivers every chair message of ``clinic``.

    ``on_message(topic, payload)`` and ``on_connection(connected, detail)`` are called on paho's
    thread. :meth:`start` connects in the background (and keeps trying); :meth:`stop` disconnects.
    """

    def __init__(self, options: BrokerOptions, clinic: str, *,
                 on_message: Callable[[str, bytes], None],
                 on_connection: Callable[[bool, str], None] | None = None, name: str = "board") -> None:
        self.options = options
        self.clinic = check_name(clinic, "clinic")
        self.name = name
        self.on_message = on_message
        self.on_connection = on_connection
        self.connected = False
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=options.client_id or f"vigil-board-{self.clinic}-{int(time.time() * 1000) % 10**8}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        if options.username:
            client.username_pw_set(options.username, options.password or None)
        if options.address.tls:
            client.tls_set(ca_certs=options.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        self._client = client

    def start(self) -> None:
        """Connect in the background; paho retries until :meth:`stop`."""
        a = self.options.address
        self._client.connect_async(a.host, a.port, keepalive=self.options.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def acknowledge(self, chair: str, seq: int, username: str, display_name: str) -> bool:
        """Send an acknowledge for chair ``chair``'s alarm state ``seq`` as the signed-in board user.
        The chair decides (its clinic setting, its current state). False when not connected."""
        command = AckCommand(chair=chair, t=datetime.now(UTC), seq=seq, username=username,
                             display_name=display_name, board=self.name)
        info = self._client.publish(ack_topic(self.clinic, chair), encode(command), qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _tell(self, connected: bool, detail: str) -> None:
        self.connected = connected
        if self.on_connection is not None:
            self.on_connection(connected, detail)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._tell(False, f"the broker refused the board ({reason_code})")
            return
        client.subscribe(board_subscription(self.clinic), qos=1)
        log.info("board: connected to %s", self.options.address.url)
        self._tell(True, f"connected to {self.options.address.url}")

    def _on_connect_fail(self, client, userdata) -> None:
        self._tell(False, f"cannot reach {self.options.address.url}")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._tell(False, f"connection to {self.options.address.url} lost ({reason_code})")

    def _on_message(self, client, userdata, message) -> None:
        self.on_message(message.topic, message.payload)
