"""The chair side of the clinic board: a pipeline listener that publishes to the broker.

:class:`ChairPublisher` receives what the recording pipeline hands every listener, turns it into
the versioned messages of :mod:`monitor.board.messages` at once (microseconds, on the caller's
thread) and leaves all network work to its own thread, which owns the paho-mqtt client:

* retained state (status, session, alarms) is latest-state-wins: a change replaces the one not yet
  sent, and everything retained is sent again after every (re)connection, so the board catches up;
* streams (vitals once a second from the latest numerics, 1-s wave blocks) go through a bounded
  queue that drops the oldest: a slow or absent broker costs old vitals, never memory or time;
* alarms are republished on every change, identical states of the 5 Hz ticks are not;
* MQTT 5 with TLS checked against the clinic's CA, username and password, last will
  ``offline`` / ``connection lost`` (retained), keep-alive ≤ 10 s, reconnection with exponential
  back-off (0.5 s doubling to 10 s, ±20 % jitter);
* ``on_broker_state(reachable, detail)`` says when the broker has been out of reach for
  ``unreachable_after_s`` and when it is back (called on the publisher's thread);
* with ``allow_acknowledge`` it subscribes to its acknowledge command topic and calls
  ``on_acknowledge(command)`` (publisher's thread) for a command naming the alarm state the chair
  published last; others are logged and dropped.

Nothing here ever blocks the caller; recording and alarms never wait on the network. Passwords
are never logged.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from drivers.model import NumericObservation, WaveformChunk
from monitor.alarms.engine import AlarmEvent, AlarmState
from monitor.alarms.profile import AlarmProfile
from monitor.app.listeners import PipelineListener, SessionSnapshot
from monitor.board.config import BrokerOptions
from monitor.board.messages import (
    MAX_WAVE_HZ, AckCommand, AlarmInfo, AlarmsMessage, MessageError, Numeric, SessionInfo, SessionMessage,
    StatusMessage, VitalsMessage, WaveBlock, WavesMessage, ack_topic, chair_topic, check_name, decode, encode,
    priority_name,
)
from monitor.display import alarm_text

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
VITALS_PERIOD_S = 1.0


def vigil_version() -> str:
    """The installed Vigil version ("0" when it is not installed as a package)."""
    try:
        return metadata.version("vigil")
    except metadata.PackageNotFoundError:
        return "0"


def _now() -> datetime:
    return datetime.now(UTC)


class _WaveDecimator:
    """Per channel: collects chunks into blocks of about one second, decimated to ≤ 125 Hz by
    averaging groups of samples (a NaN in a group keeps the gap)."""

    def __init__(self) -> None:
        self._buffers: dict[str, tuple[datetime, float, list[np.ndarray]]] = {}

    def add(self, chunk: WaveformChunk) -> list[WaveBlock]:
        out: list[WaveBlock] = []
        current = self._buffers.get(chunk.channel)
        if current is not None:
            start, rate, parts = current
            expected = (start.timestamp() + sum(len(p) for p in parts) / rate)
            if rate != chunk.rate or abs(chunk.start_time.timestamp() - expected) > 1.5 / rate:
                out += self._flush(chunk.channel, final=True)  # a gap or a new rate: close the block
                current = None
        if current is None:
            self._buffers[chunk.channel] = (chunk.start_time, chunk.rate, [chunk.samples])
        else:
            current[2].append(chunk.samples)
        start, rate, parts = self._buffers[chunk.channel]
        if sum(len(p) for p in parts) >= math.ceil(rate):
            out += self._flush(chunk.channel)
        return out

    def _flush(self, channel: str, final: bool = False) -> list[WaveBlock]:
        start, rate, parts = self._buffers.pop(channel)
        samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        k = max(1, math.ceil(rate / MAX_WAVE_HZ))
        used = len(samples) if final and k == 1 else (len(samples) // k) * k
        if used == 0:
            return []
        rest = samples[used:]
        if len(rest):
            self._buffers[channel] = (datetime.fromtimestamp(start.timestamp() + used / rate, UTC), rate, [rest])
        values = samples[:used].reshape(-1, k).mean(axis=1)
        return [WaveBlock(channel=channel, rate_hz=rate / k, start=start,
                          samples=tuple(None if math.isnan(v) else round(float(v), 4) for v in values))]


class ChairPublisher(PipelineListener):
    """Publishes one chair to the clinic board (see the module docstring).

    ``options`` says where and as whom; ``clinic`` and ``chair`` name the topics (refused with
    ``MessageError`` when not topic-safe). ``profile`` gives alarm texts as the chair shows them.
    Call :meth:`start` once, :meth:`close` at the end (publishes ``offline``/``closed``).
    ``stats`` counts messages sent, dropped and connections (read-only for callers).
    """

    def __init__(self, options: BrokerOptions, clinic: str, chair: str, *, profile: AlarmProfile | None = None,
                 publish_waves: bool = False, allow_acknowledge: bool = False, unreachable_after_s: float = 10.0,
                 on_broker_state: Callable[[bool, str], None] | None = None,
                 on_acknowledge: Callable[[AckCommand], None] | None = None,
                 stream_queue: int = 32, backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self.options = options
        self.clinic = check_name(clinic, "clinic")
        self.chair = check_name(chair, "chair")
        self.profile = profile
        self.publish_waves = publish_waves
        self.allow_acknowledge = allow_acknowledge
        self.unreachable_after_s = unreachable_after_s
        self.on_broker_state = on_broker_state
        self.on_acknowledge = on_acknowledge
        self.backoff_max_s = backoff_max_s
        self.version = vigil_version()
        self.stats: dict[str, int] = {"published": 0, "dropped": 0, "connections": 0, "refused": 0}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._retained: dict[str, Any] = {}          # kind → message not yet sent (latest wins)
        self._sent_retained: dict[str, Any] = {}     # kind → last message sent (re-sent on reconnect)
        self._stream: deque[tuple[str, Any]] = deque(maxlen=stream_queue)
        self._latest: dict[str, Numeric] = {}
        self._waves = _WaveDecimator()
        self._ack_by: dict[int, str] = {}
        self._alarm_key: tuple | None = None
        self.alarm_seq = 0
        self._thread: threading.Thread | None = None
        self._connected = False
        self._reachable: bool | None = None
        self._topics = {kind: chair_topic(self.clinic, self.chair, kind)
                        for kind in ("status", "session", "vitals", "alarms", "waves")}
        self._ack_topic = ack_topic(self.clinic, self.chair)
        self._client = self._make_client()

    # ------------------------------------------------------------------ listener (pipeline thread)
    def on_batch(self, items: list) -> None:
        """Keep the latest value of each vital; with waves on, collect 1-s blocks."""
        blocks: list[WaveBlock] = []
        for item in items:
            if isinstance(item, NumericObservation):
                self._latest[item.vital] = Numeric(value=item.value, unit=item.unit, t=item.sample_time,
                                                   flags=tuple(sorted(q.value for q in item.quality)))
            elif self.publish_waves and isinstance(item, WaveformChunk):
                blocks += self._waves.add(item)
        if blocks:
            self._put_stream("waves", WavesMessage(chair=self.chair, t=_now(), blocks=tuple(blocks)))

    def on_alarm_event(self, event: AlarmEvent) -> None:
        """Remember who acknowledged which alarm (the state does not say)."""
        if event.event == "acknowledged" and event.alarm_id is not None and event.user:
            self._ack_by[event.alarm_id] = event.user

    def on_alarm_state(self, state: AlarmState) -> None:
        """Publish the alarm state when it differs from the last one (retained, QoS 1)."""
        ack = self._ack_by
        key = (state.visual_priority, state.audio_priority, state.inactivation.audio_paused,
               state.inactivation.paused_by,
               tuple((a.id, a.priority, a.value, a.limit, a.active, a.acknowledged, a.latched, ack.get(a.id))
                     for a in state.alarms))
        if key == self._alarm_key:
            return
        self._alarm_key = key
        present = {a.id for a in state.alarms}
        for alarm_id in [i for i in ack if i not in present]:
            del ack[alarm_id]
        self.alarm_seq += 1
        alarms = tuple(AlarmInfo(
            id=a.id, condition=a.condition, label=a.label, kind=a.kind, priority=priority_name(a.priority.name), since=a.started_at,
            text=alarm_text(a, self.profile) if self.profile is not None else a.label, value=a.value, limit=a.limit,
            active=a.active, acknowledged=a.acknowledged, acknowledged_by=ack.get(a.id), latched=a.latched)
            for a in state.alarms)
        inactivation = state.inactivation
        message = AlarmsMessage(
            chair=self.chair, t=_now(), seq=self.alarm_seq, alarms=alarms,
            visual_priority=priority_name(state.visual_priority.name) if state.visual_priority else None,
            audio_priority=priority_name(state.audio_priority.name) if state.audio_priority else None,
            audio_paused=inactivation.audio_paused, paused_by=inactivation.paused_by,
            pause_remaining_s=round(inactivation.pause_remaining_s, 1))
        self._put_retained("alarms", message)

    def on_session(self, snapshot: SessionSnapshot | None) -> None:
        """Publish the session (retained, QoS 1); None: no session is being recorded."""
        info = None
        if snapshot is not None:
            remaining = None
            if snapshot.discharge_earliest is not None:
                remaining = max(0.0, (snapshot.discharge_earliest - snapshot.at).total_seconds())
            label, due = snapshot.next_assessment if snapshot.next_assessment else ("", None)
            info = SessionInfo(
                session_id=snapshot.session_id, patient_initials=snapshot.patient_initials,
                patient_name=snapshot.patient_name, protocol=snapshot.protocol, phase=snapshot.phase,
                opened_at=snapshot.opened_at, elapsed_s=max(0.0, (snapshot.at - snapshot.opened_at).total_seconds()),
                dosing_started_at=snapshot.dosing_started_at, dosing_ended_at=snapshot.dosing_ended_at,
                discharge_earliest=snapshot.discharge_earliest, remaining_s=remaining,
                dose_delivered_mg=snapshot.dose_delivered_mg, dose_planned_mg=snapshot.dose_planned_mg,
                next_nibp_at=snapshot.next_nibp_at, next_assessment=label, next_assessment_at=due)
        self._put_retained("session", SessionMessage(chair=self.chair, t=_now(), session=info))

    def _put_retained(self, kind: str, message: Any) -> None:
        with self._lock:
            self._retained[kind] = message
        self._wake.set()

    def _put_stream(self, kind: str, message: Any) -> None:
        with self._lock:
            if len(self._stream) == self._stream.maxlen:
                self.stats["dropped"] += 1
            self._stream.append((kind, message))
        self._wake.set()

    # ------------------------------------------------------------------ life cycle
    @property
    def connected(self) -> bool:
        """True while the broker has accepted this chair's connection."""
        return self._connected

    def start(self) -> None:
        """Start the publishing thread (it connects, and keeps reconnecting)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"board-publisher-{self.chair}", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Say ``offline``/``closed`` (retained) if connected, disconnect and stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ------------------------------------------------------------------ the thread
    def _make_client(self) -> mqtt.Client:
        o = self.options
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=o.client_id or f"vigil-{self.clinic}-{self.chair}",
                             protocol=MQTTProtocolVersion.MQTTv5, reconnect_on_failure=False)
        if o.username:
            client.username_pw_set(o.username, o.password or None)
        if o.address.tls:
            client.tls_set(ca_certs=o.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        will = StatusMessage(chair=self.chair, t=_now(), state="offline", reason="connection lost",
                             version=self.version, waves=self.publish_waves)
        client.will_set(self._topics["status"], encode(will), qos=1, retain=True)
        client.max_inflight_messages_set(20)
        client.max_queued_messages_set(200)
        client.connect_timeout = 3.0
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._error = f"the broker refused this chair ({reason_code}): check its user name and password"
            log.warning("clinic board: %s", self._error)
            return
        self._connected = True
        self.stats["connections"] += 1
        log.info("clinic board: connected to %s as chair %s", self.options.address.url, self.chair)
        online = StatusMessage(chair=self.chair, t=_now(), state="online", version=self.version,
                               waves=self.publish_waves)
        with self._lock:
            for kind, message in self._sent_retained.items():   # the board catches up from these
                self._retained.setdefault(kind, message)
            self._retained["status"] = online
        if self.allow_acknowledge:
            client.subscribe(self._ack_topic, qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected and not self._stop.is_set():
            log.warning("clinic board: connection to %s lost (%s)", self.options.address.url, reason_code)
        self._connected = False

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code.is_failure:  # e.g. "Not authorized": the ACL refuses this topic
            self.stats["refused"] += 1
            log.warning("clinic board: the broker refused a message (%s)", reason_code)

    def _on_message(self, client, userdata, message) -> None:
        if message.topic != self._ack_topic:
            return
        try:
            command = decode("ack", message.payload)
        except MessageError as exc:
            log.warning("clinic board: acknowledge command ignored: %s", exc)
            return
        if not isinstance(command, AckCommand):  # decode("ack", …) gives an AckCommand or raises
            return
        if command.chair != self.chair:
            log.warning("clinic board: acknowledge command for chair %r ignored", command.chair)
        elif command.seq != self.alarm_seq:
            log.warning("clinic board: acknowledge by %s ignored: the alarms changed after the board showed "
                        "them (state %d, now %d)", command.username, command.seq, self.alarm_seq)
        elif self.on_acknowledge is not None:
            self.on_acknowledge(command)

    def _report(self, reachable: bool, detail: str) -> None:
        if reachable == self._reachable:
            return
        self._reachable = reachable
        if self.on_broker_state is not None:
            try:
                self.on_broker_state(reachable, detail)
            except Exception:  # the chair's handler must not stop publishing
                log.exception("clinic board: broker state handler failed")

    def _run(self) -> None:
        client = self._client
        address = self.options.address
        down_since: float | None = time.monotonic()
        next_try = 0.0
        failures = 0
        next_vitals = time.monotonic()
        self._error = ""
        while not self._stop.is_set():
            now = time.monotonic()
            if not self._connected and now >= next_try:
                try:
                    client.connect(address.host, address.port, keepalive=self.options.keepalive_s)
                    deadline = time.monotonic() + 3.0
                    while not self._connected and time.monotonic() < deadline and not self._stop.is_set():
                        if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                            break
                except (OSError, ValueError) as exc:  # refused, unreachable, TLS failure
                    self._error = f"cannot reach {address.url}: {exc}"
                if self._connected:
                    failures = 0
                    self._error = ""
                else:
                    if not self._error:
                        self._error = f"no answer from {address.url}"
                    client.disconnect()
                    failures += 1
                    delay = min(self.backoff_max_s, BACKOFF_FIRST_S * 2 ** (failures - 1))
                    next_try = time.monotonic() + delay * random.uniform(0.8, 1.2)
                    log.info("clinic board: %s; next attempt in %.1f s", self._error, next_try - time.monotonic())
            if self._connected:
                down_since = None
                self._report(True, f"connected to {address.url}")
                if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS or not self._connected:
                    self._connected = False
                    down_since = time.monotonic()
                    self._error = f"connection to {address.url} lost"
                    next_try = 0.0
                    continue
                now = time.monotonic()
                if now >= next_vitals:
                    next_vitals = now + VITALS_PERIOD_S
                    self._put_stream("vitals", VitalsMessage(chair=self.chair, t=_now(), numerics=dict(self._latest)))
                self._flush(client)
            else:
                if down_since is None:
                    down_since = time.monotonic()
                if time.monotonic() - down_since >= self.unreachable_after_s:
                    self._report(False, self._error or f"no connection to {address.url}")
                self._wake.wait(min(0.2, max(0.0, next_try - time.monotonic())))
                self._wake.clear()
                with self._lock:  # nothing is sent while down: stream messages only get older
                    self.stats["dropped"] += len(self._stream)
                    self._stream.clear()
        self._shutdown(client)

    def _flush(self, client: mqtt.Client) -> None:
        with self._lock:
            retained, self._retained = self._retained, {}
            stream = list(self._stream)
            self._stream.clear()
        for kind in ("status", "session", "alarms"):
            message = retained.get(kind)
            if message is None:
                continue
            info = client.publish(self._topics[kind], encode(message), qos=1, retain=True)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                with self._lock:
                    self._retained.setdefault(kind, message)   # try again (unless a newer one came)
                continue
            self.stats["published"] += 1
            if kind != "status":
                self._sent_retained[kind] = message
        for kind, message in stream:
            if client.publish(self._topics[kind], encode(message), qos=0).rc == mqtt.MQTT_ERR_SUCCESS:
                self.stats["published"] += 1
            else:
                self.stats["dropped"] += 1

    def _shutdown(self, client: mqtt.Client) -> None:
        if self._connected:
            self._flush(client)
            offline = StatusMessage(chair=self.chair, t=_now(), state="offline", reason="closed",
                                    version=self.version, waves=self.publish_waves)
            info = client.publish(self._topics["status"], encode(offline), qos=1, retain=True)
            deadline = time.monotonic() + 1.0
            while not info.is_published() and time.monotonic() < deadline and self._connected:
                client.loop(timeout=0.05)
            client.disconnect()
            client.loop(timeout=0.05)
        self._connected = False
