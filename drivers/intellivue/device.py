"""Device side of the IntelliVue MIB/RS232 data export: what an MP monitor says, for the simulator.

:class:`IntelliVueEmulator` answers the host: association request → accept and MDS Create
event report; MDS Create result → associated; single (0x0C16) and extended (0xF13B) poll
requests → poll replies with the numerics of the latest :class:`DeviceSnapshot` (RORS, or a
linked ROLRS series when ``objects_per_message`` is set); release request → release result;
abort → idle. An extended poll carrying a poll period (attribute 0xF13E) makes the monitor
send a reply every second of simulated time for that period, from :meth:`produce`. Otherwise
the monitor speaks only when polled.

:func:`numeric_objects` and :func:`build_numerics_reply` turn catalogue values into poll-reply
objects and framed replies, for tests and benchmarks that need realistic traffic.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from drivers.emulation import DeviceEmulator, DeviceSnapshot
from drivers.intellivue import messages as m
from drivers.intellivue.framing import Unframer, build_frame


@dataclass(frozen=True, slots=True)
class NumericParam:
    """How the emulated monitor exports one catalogue value as a numeric object."""

    key: str          # catalogue key in DeviceSnapshot.values
    physio_id: int
    unit: int
    decimals: int     # FLOAT-Type exponent is -decimals
    handle: int
    colour: int       # SimpleColour of the monitor's display


_COL_RED, _COL_GREEN, _COL_YELLOW, _COL_CYAN, _COL_WHITE = 1, 2, 3, 6, 7

#: Numerics the emulated monitor exports, in the order of its poll replies.
PARAMS: tuple[NumericParam, ...] = (
    NumericParam("hr", m.NOM_ECG_CARD_BEAT_RATE, m.NOM_DIM_BEAT_PER_MIN, 0, 0x0101, _COL_GREEN),
    NumericParam("spo2", m.NOM_PULS_OXIM_SAT_O2, m.NOM_DIM_PERCENT, 0, 0x0102, _COL_CYAN),
    NumericParam("pr", m.NOM_PULS_OXIM_PULS_RATE, m.NOM_DIM_BEAT_PER_MIN, 0, 0x0103, _COL_CYAN),
    NumericParam("pi", m.NOM_PULS_OXIM_PERF_REL, m.NOM_DIM_PERCENT, 2, 0x0104, _COL_CYAN),
    NumericParam("rr", m.NOM_RESP_RATE, m.NOM_DIM_RESP_PER_MIN, 0, 0x0106, _COL_YELLOW),
    NumericParam("etco2", m.NOM_AWAY_CO2_ET, m.NOM_DIM_MMHG, 0, 0x0107, _COL_WHITE),
    NumericParam("temp", m.NOM_TEMP, m.NOM_DIM_DEGC, 1, 0x0109, _COL_GREEN),
)
#: Airway RR (from the CO2 module): exported with the ``rr`` value whenever EtCO2 is present.
AWAY_RR = NumericParam("rr", m.NOM_AWAY_RESP_RATE, m.NOM_DIM_RESP_PER_MIN, 0, 0x0108, _COL_WHITE)
NIBP_HANDLE = 0x0105
_NIBP_PARTS = (("nibp_sys", m.NOM_PRESS_BLD_NONINV_SYS), ("nibp_dia", m.NOM_PRESS_BLD_NONINV_DIA),
               ("nibp_mean", m.NOM_PRESS_BLD_NONINV_MEAN))
_OXIMETRY = frozenset({"spo2", "pr", "pi"})
_SENSOR_GONE = frozenset({"sensor_off", "no_sensor"})
_DOUBTFUL = frozenset({"artifact", "interference", "low_signal_quality"})

_TYPE = struct.Struct(">HH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def _static_attrs(physio_id: int, colour: int, decimals: int) -> list[tuple[int, bytes]]:
    return [
        (m.NOM_ATTR_ID_TYPE, _TYPE.pack(m.NOM_PART_SCADA, physio_id)),
        (m.NOM_ATTR_ID_LABEL, _U32.pack((m.NOM_PART_SCADA << 16) | physio_id)),
        (m.NOM_ATTR_DISP_RES, bytes((3, decimals))),  # digits before/after the point
        (m.NOM_ATTR_COLOR, _U16.pack(colour)),
    ]


def numeric_objects(
    values: Mapping[str, float | None],
    *,
    conditions: Iterable[str] = (),
    rel_time: int = 0,
    nibp_time: datetime | None = None,
    nibp_rel_time: int | None = None,
    nibp_in_progress: bool = False,
    attr_group: int = m.NOM_ATTR_GRP_ALL,
    states: Mapping[str, int] | None = None,
) -> list[m.PolledObject]:
    """Poll-reply objects (handle, AVA list) for the catalogue ``values`` present.

    A value of None is sent as a NaN mantissa with state "unavailable". ``conditions``
    ``sensor_off``/``no_sensor`` make SpO2, pleth pulse and perfusion invalid; ``artifact``,
    ``interference``, ``low_signal_quality`` make them questionable; ``demo_data`` marks all
    values as demo. ``states`` ORs extra state bits per key (``nibp`` for the NIBP compound).
    NIBP (``nibp_sys``/``nibp_dia``/``nibp_mean``) goes in one compound object carrying the
    measurement time stamps ``nibp_time`` (device-local) and ``nibp_rel_time`` when given.
    ``attr_group`` NOM_ATTR_GRP_METRIC_VAL_OBS leaves out the static attributes.
    """
    conditions = frozenset(conditions)
    states = states or {}
    common = m.STATE_DEMO_DATA if "demo_data" in conditions else 0
    oximetry = common
    if conditions & _SENSOR_GONE:
        oximetry |= m.STATE_INVALID
    if conditions & _DOUBTFUL:
        oximetry |= m.STATE_QUESTIONABLE
    full = attr_group != m.NOM_ATTR_GRP_METRIC_VAL_OBS
    rel_stamp = (m.NOM_ATTR_TIME_STAMP_REL, _U32.pack(rel_time & 0xFFFFFFFF))
    objects: list[m.PolledObject] = []

    def add(param: NumericParam, value: float | None) -> None:
        state = (oximetry if param.key in _OXIMETRY else common) | states.get(param.key, 0)
        if value is None:
            state |= m.STATE_UNAVAILABLE
        obs = m.encode_nu_obs(param.physio_id, state, param.unit, m.encode_float(value, param.decimals))
        attrs = _static_attrs(param.physio_id, param.colour, param.decimals) if full else []
        attrs += [(m.NOM_ATTR_NU_VAL_OBS, obs), rel_stamp]
        objects.append((param.handle, attrs))

    for param in PARAMS:
        if param.key in values:
            add(param, values[param.key])
            if param.key == "etco2" and "rr" in values:
                add(AWAY_RR, values["rr"])
        if param.key == "pi" and any(key in values for key, _ in _NIBP_PARTS):
            state = common | states.get("nibp", 0)
            if nibp_in_progress:
                state |= m.STATE_MSMT_ONGOING
            parts = []
            for key, physio in _NIBP_PARTS:
                value = values.get(key)
                part_state = state | (m.STATE_UNAVAILABLE if value is None else 0)
                parts.append(m.encode_nu_obs(physio, part_state, m.NOM_DIM_MMHG, m.encode_float(value, 0)))
            compound = struct.pack(">HH", len(parts), 10 * len(parts)) + b"".join(parts)
            attrs = _static_attrs(m.NOM_PRESS_BLD_NONINV, _COL_RED, 0) if full else []
            attrs.append((m.NOM_ATTR_NU_CMPD_VAL_OBS, compound))
            if nibp_time is not None:
                attrs.append((m.NOM_ATTR_TIME_STAMP_ABS, m.encode_abs_time(nibp_time)))
            if nibp_rel_time is not None:
                attrs.append((m.NOM_ATTR_TIME_STAMP_REL, _U32.pack(nibp_rel_time & 0xFFFFFFFF)))
            objects.append((NIBP_HANDLE, attrs))
    return objects


def build_numerics_reply(
    values: Mapping[str, float | None],
    *,
    device_time: datetime | None = None,
    nibp_time: datetime | None = None,
    conditions: Iterable[str] = (),
    invoke_id: int = 1,
    poll_number: int = 1,
    rel_time: int = 0,
    extended: bool = True,
    objects_per_message: int | None = None,
    states: Mapping[str, int] | None = None,
    framed: bool = True,
) -> bytes:
    """Framed poll reply(ies) carrying ``values`` (catalogue keys → values in catalogue units).

    One RORS message, or a linked ROLRS series (FIRST … LAST) of at most
    ``objects_per_message`` objects each. ``device_time`` (naive, device-local) becomes the
    reply's absolute time stamp; ``nibp_time`` the NIBP measurement time stamp. See
    :func:`numeric_objects` for ``conditions`` and ``states``. ``framed=False`` returns the
    unframed message (only without splitting).
    """
    objects = numeric_objects(values, conditions=conditions, rel_time=rel_time, nibp_time=nibp_time,
                              states=states)
    messages = _reply_messages(objects, invoke_id=invoke_id, poll_number=poll_number, rel_time=rel_time,
                               abs_time=m.encode_abs_time(device_time), extended=extended,
                               objects_per_message=objects_per_message)
    if not framed:
        if len(messages) != 1:
            raise ValueError("an unframed reply must fit one message")
        return messages[0]
    return b"".join(build_frame(message) for message in messages)


def _reply_messages(
    objects: list[m.PolledObject], *, invoke_id: int, poll_number: int, rel_time: int, abs_time: bytes,
    extended: bool, objects_per_message: int | None, obj_code: int = m.NOM_MOC_VMO_METRIC_NU,
    attr_group: int = m.NOM_ATTR_GRP_ALL, sequence_no: int = 0,
) -> list[bytes]:
    common: dict[str, Any] = dict(invoke_id=invoke_id, poll_number=poll_number, rel_time=rel_time, abs_time=abs_time,
                  obj_code=obj_code, attr_group=attr_group, extended=extended, sequence_no=sequence_no)
    if not objects_per_message or len(objects) <= objects_per_message:
        return [m.build_poll_reply(objects, **common)]
    chunks = [objects[i:i + objects_per_message] for i in range(0, len(objects), objects_per_message)]
    last = len(chunks) - 1
    out = []
    for index, chunk in enumerate(chunks):
        state = (m.RORLS_FIRST if index == 0 else
                 m.RORLS_LAST if index == last else m.RORLS_NOT_FIRST_NOT_LAST)
        out.append(m.build_poll_reply(chunk, linked=(state, index + 1), **common))
    return out


class IntelliVueEmulator(DeviceEmulator):
    """An IntelliVue MP monitor's MIB/RS232 data-export port.

    ``refuse`` makes it refuse every association. ``objects_per_message`` splits poll replies
    into linked results (ROLRS) of that many objects. ``model``/``manufacturer``/``system_id``
    go into the MDS Create event report. :meth:`receive` never raises on any bytes.
    """

    protocol = "intellivue"

    def __init__(
        self,
        *,
        refuse: bool = False,
        objects_per_message: int | None = None,
        manufacturer: str = "Philips Medical Systems",
        model: str = "M8004A",
        system_id: bytes = bytes.fromhex("0009fb4d5036"),
    ) -> None:
        self.refuse = refuse
        self.objects_per_message = objects_per_message
        self.manufacturer = manufacturer
        self.model = model
        self.system_id = system_id
        self.state = "idle"  # idle → configuring (accepted, MDS Create sent) → associated
        self.polls_answered = 0
        self._unframer = Unframer()
        self._snapshot: DeviceSnapshot | None = None
        self._elapsed = 0.0
        self._invoke_id = 0
        self._sequence = 0
        self._periodic: m.PollRequest | None = None
        self._periodic_until = 0.0
        self._periodic_next = 0.0

    @property
    def rel_time(self) -> int:
        """The monitor's RelativeTime now (1/8 ms ticks since it started, wrapping at 2**32)."""
        return int(self._elapsed * m.TICKS_PER_SECOND) & 0xFFFFFFFF

    # --- host → monitor ---------------------------------------------------------------------

    def receive(self, data: bytes) -> bytes:
        """Consume host bytes; return the framed answers (may be empty). Never raises."""
        out: list[bytes] = []
        for message in self._unframer.feed(data):
            try:
                out.extend(self._handle(message))
            except (m.PduError, struct.error, IndexError, ValueError):
                continue
        return b"".join(build_frame(message) for message in out)

    def _handle(self, message: bytes) -> list[bytes]:
        first = message[0]
        if first == m.CN_SPDU_SI:
            m.parse_session(message)
            if self.refuse:
                self.state = "idle"
                return [m.REFUSE]
            self.state = "configuring"
            self._periodic = None
            return [m.build_association_accept(), self._mds_create()]
        if first == m.FN_SPDU_SI:
            self.state = "idle"
            self._periodic = None
            return [m.RELEASE_RESULT]
        if first == m.AB_SPDU_SI:
            self.state = "idle"
            self._periodic = None
            return []
        if first != m.DATA_EXPORT_FIRST_BYTE:
            return []
        op = m.parse_remote_operation(message)
        if op.ro_type == m.RORS_APDU and op.command == m.CMD_CONFIRMED_EVENT_REPORT:
            if self.state == "configuring":
                self.state = "associated"
            return []
        if op.ro_type == m.ROIV_APDU and op.command == m.CMD_CONFIRMED_ACTION and self.state == "associated":
            request = m.parse_poll_request(message, op)
            if request is None:
                return []
            period = request.attributes.get(m.NOM_ATTR_TIME_PD_POLL)
            if period is not None and len(period) >= 4:
                self._periodic = request
                self._periodic_until = self._elapsed + _U32.unpack_from(period)[0] / m.TICKS_PER_SECOND
                self._periodic_next = self._elapsed + 1.0
            return self._reply(request)
        return []

    def _mds_create(self) -> bytes:
        snapshot = self._snapshot
        model = (m.encode_variable_label(self.manufacturer.encode("latin-1"))
                 + m.encode_variable_label(self.model.encode("latin-1")))
        attributes = [
            (m.NOM_ATTR_SYS_ID, m.encode_variable_label(self.system_id)),
            (m.NOM_ATTR_ID_MODEL, model),
            (m.NOM_ATTR_NOM_VERS, _U32.pack(m.NOMEN_VERSION)),
            (m.NOM_ATTR_TIME_ABS, m.encode_abs_time(snapshot.device_time if snapshot else None)),
            (m.NOM_ATTR_TIME_REL, _U32.pack(self.rel_time)),
            (m.NOM_ATTR_VMS_MDS_STAT, _U16.pack(6)),  # MDS status: operating
        ]
        self._invoke_id = 1
        return m.build_mds_create_event(self._invoke_id, self.rel_time, attributes)

    def _reply(self, request: m.PollRequest) -> list[bytes]:
        snapshot = self._snapshot
        objects: list[m.PolledObject] = []
        rel = self.rel_time
        if snapshot is not None and request.obj_partition == m.NOM_PART_OBJ \
                and request.obj_code == m.NOM_MOC_VMO_METRIC_NU:
            nibp_local = nibp_rel = None
            if snapshot.nibp_time is not None:
                age = (snapshot.time - snapshot.nibp_time).total_seconds()
                nibp_local = snapshot.device_time - timedelta(seconds=age)
                nibp_rel = rel - int(age * m.TICKS_PER_SECOND)
            objects = numeric_objects(
                snapshot.values, conditions=snapshot.conditions, rel_time=rel, nibp_time=nibp_local,
                nibp_rel_time=nibp_rel, nibp_in_progress=snapshot.nibp_in_progress,
                attr_group=request.attr_group)
        self.polls_answered += 1
        self._sequence = (self._sequence + 1) & 0xFFFF
        return _reply_messages(
            objects, invoke_id=request.invoke_id, poll_number=request.poll_number, rel_time=rel,
            abs_time=m.encode_abs_time(snapshot.device_time if snapshot else None),
            extended=request.action_type == m.NOM_ACT_POLL_MDIB_DATA_EXT,
            objects_per_message=self.objects_per_message, obj_code=request.obj_code,
            attr_group=request.attr_group, sequence_no=self._sequence)

    # --- the monitor on its own -------------------------------------------------------------

    def produce(self, snapshot: DeviceSnapshot) -> bytes:
        """Store ``snapshot`` as the monitor's current state; b"" unless a periodic poll runs."""
        self._snapshot = snapshot
        self._elapsed += max(snapshot.elapsed, 0.0)
        request = self._periodic
        if request is None or self.state != "associated":
            return b""
        out: list[bytes] = []
        while self._periodic_next <= self._elapsed and self._periodic_next <= self._periodic_until:
            self._periodic_next += 1.0
            out.extend(self._reply(request))
        if self._elapsed >= self._periodic_until:
            self._periodic = None
        return b"".join(build_frame(message) for message in out)
