"""IntelliVue Data Export protocol messages: constants, PDU builders and parsers.

The layouts follow the Philips "Data Export Interface Programming Guide". Every multi-byte
integer is big-endian. A message is either an association-control SPDU (first byte 0x0D,
0x0E, 0x0C, 0x09, 0x0A or 0x19, then an LI length) or a data-export message::

    SPpdu        session_id u16 (0xE100), p_context_id u16
    ROapdus      ro_type u16 (ROIV 1, RORS 2, ROER 3, ROLRS 5), length u16
    ROIV/RORS    invoke_id u16, command_type u16, length u16
    ROLRS        linked_id (state u8, count u8), invoke_id u16, command_type u16, length u16
    ROER         invoke_id u16, error_value u16, length u16

A poll reply continues with ActionResult (managed object 6 bytes, action_type u16, length u16)
and PollMdibDataReply (single poll, action 0x0C16: poll_number, rel_time_stamp u32,
abs_time_stamp 8 BCD bytes, polled_obj_type 4, polled_attr_grp u16 = 20 bytes) or
PollMdibDataReplyExt (extended poll, action 0xF13B: the same with ``sequence_no u16`` after
poll_number = 22 bytes), then PollInfoList → SingleContextPoll → ObservationPoll → AVA, each a
list carrying ``count u16, length u16``. Parsers walk those lists by their byte lengths and
skip unknown attributes by length; inconsistent lengths raise :class:`PduError`.

Builders return *unframed* user data; wrap it with :func:`drivers.intellivue.framing.build_frame`.
"""

from __future__ import annotations

import struct
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drivers.errors import DeviceError

# --- association control (session layer) ---------------------------------------------------
CN_SPDU_SI = 0x0D  #: association request (session connect)
AC_SPDU_SI = 0x0E  #: association accepted
RF_SPDU_SI = 0x0C  #: association refused
FN_SPDU_SI = 0x09  #: release request (session finish)
DN_SPDU_SI = 0x0A  #: release result (session disconnect)
AB_SPDU_SI = 0x19  #: abort
SESSION_TYPES = frozenset({CN_SPDU_SI, AC_SPDU_SI, RF_SPDU_SI, FN_SPDU_SI, DN_SPDU_SI, AB_SPDU_SI})

# --- data export (presentation/application layer) -------------------------------------------
SESSION_ID = 0xE100  #: SPpdu session_id of every data-export message (first byte 0xE1)
DATA_EXPORT_FIRST_BYTE = 0xE1
PRESENTATION_CONTEXT_ID = 2  #: p_context_id with the association request built here

ROIV_APDU = 1   #: remote operation invoke
RORS_APDU = 2   #: remote operation result
ROER_APDU = 3   #: remote operation error
ROLRS_APDU = 5  #: remote operation linked result
RORLS_FIRST = 1               #: first linked result
RORLS_NOT_FIRST_NOT_LAST = 2  #: a middle linked result
RORLS_LAST = 3                #: last linked result

CMD_EVENT_REPORT = 0
CMD_CONFIRMED_EVENT_REPORT = 1
CMD_GET = 3
CMD_SET = 4
CMD_CONFIRMED_SET = 5
CMD_CONFIRMED_ACTION = 7

NOM_NOTI_MDS_CREAT = 0x0D06          #: event type of the MDS Create event report
NOM_ACT_POLL_MDIB_DATA = 0x0C16      #: single poll action
NOM_ACT_POLL_MDIB_DATA_EXT = 0xF13B  #: extended poll action
POLL_ACTIONS = frozenset({NOM_ACT_POLL_MDIB_DATA, NOM_ACT_POLL_MDIB_DATA_EXT})

NOM_PART_OBJ = 1    #: object-class partition
NOM_PART_SCADA = 2  #: physiological-identifier partition
NOM_MOC_VMO_METRIC_NU = 0x0006  #: numeric objects
NOM_MOC_VMO_METRIC_SA_RT = 0x0009  #: real-time sample arrays (waves)
NOM_MOC_VMS_MDS = 0x0021  #: the medical device system
NOM_MOC_VMO_AL_MON = 0x0036  #: alert monitor
NOM_ATTR_GRP_ALL = 0x0000  #: polled_attr_grp "all attributes"
NOM_ATTR_GRP_METRIC_VAL_OBS = 0x0803  #: polled_attr_grp "metric observed values"

# --- attribute ids --------------------------------------------------------------------------
NOM_POLL_PROFILE_SUPPORT = 0x0001  #: supported-profiles entry in the association user data
NOM_ATTR_POLL_PROFILE_EXT = 0xF001  #: optional package: extended poll profile
NOM_ATTR_TIME_PD_POLL = 0xF13E  #: poll period attribute of an extended poll request
NOM_ATTR_COLOR = 0x0911
NOM_ATTR_DISP_RES = 0x0917
NOM_ATTR_ID_HANDLE = 0x0921
NOM_ATTR_ID_LABEL = 0x0924
NOM_ATTR_ID_LABEL_STRING = 0x0927
NOM_ATTR_ID_MODEL = 0x0928
NOM_ATTR_ID_TYPE = 0x092F
NOM_ATTR_METRIC_SPECN = 0x093F
NOM_ATTR_NOM_VERS = 0x0948
NOM_ATTR_NU_CMPD_VAL_OBS = 0x094B
NOM_ATTR_NU_VAL_OBS = 0x0950
NOM_ATTR_SYS_ID = 0x0984
NOM_ATTR_SYS_TYPE = 0x0986
NOM_ATTR_TIME_ABS = 0x0987
NOM_ATTR_TIME_REL = 0x098F
NOM_ATTR_TIME_STAMP_ABS = 0x0990
NOM_ATTR_TIME_STAMP_REL = 0x0991
NOM_ATTR_VMS_MDS_STAT = 0x09A7

# --- association user data (MDSEUserInfoStd) ------------------------------------------------
MDDL_VERSION1 = 0x80000000  #: protocol version
NOMEN_VERSION = 0x40000000  #: nomenclature version
SYST_CLIENT = 0x80000000
SYST_SERVER = 0x00800000
HOT_START = 0x80000000
WARM_START = 0x40000000
COLD_START = 0x20000000
POLL_PROFILE_REV_0 = 0x80000000
P_OPT_DYN_CREATE_OBJECTS = 0x40000000
P_OPT_DYN_DELETE_OBJECTS = 0x20000000
POLL_EXT_PERIOD_NU_1SEC = 0x80000000  #: 1-s real-time numerics
POLL_EXT_PERIOD_NU_AVG_12SEC = 0x40000000
POLL_EXT_PERIOD_NU_AVG_60SEC = 0x20000000
POLL_EXT_PERIOD_NU_AVG_300SEC = 0x10000000
POLL_EXT_PERIOD_RTSA = 0x08000000
POLL_EXT_ENUM = 0x04000000
POLL_EXT_NU_PRIO_LIST = 0x02000000
POLL_EXT_DYN_MODALITIES = 0x01000000  #: time stamps for aperiodic numerics (NIBP)

#: RelativeTime runs at 8000 ticks per second (1/8 ms).
TICKS_PER_SECOND = 8000

# --- measurement state and FLOAT-Type ------------------------------------------------------
STATE_INVALID = 0x8000
STATE_QUESTIONABLE = 0x4000
STATE_UNAVAILABLE = 0x2000
STATE_CALIBRATION_ONGOING = 0x1000
STATE_TEST_DATA = 0x0800
STATE_DEMO_DATA = 0x0400
STATE_VALIDATED_DATA = 0x0080
STATE_EARLY_INDICATION = 0x0040
STATE_MSMT_ONGOING = 0x0020
STATE_IN_ALARM = 0x0002
STATE_AL_INHIBITED = 0x0001

FLOAT_NAN = 0x7FFFFF    #: not a number
FLOAT_NRES = 0x800000   #: not at this resolution
FLOAT_PINF = 0x7FFFFE   #: +infinity
FLOAT_NINF = 0x800002   #: -infinity
FLOAT_RESERVED = 0x800001  #: reserved; decoded like NRes
FLOAT_SPECIALS = frozenset({FLOAT_NAN, FLOAT_NRES, FLOAT_PINF, FLOAT_NINF, FLOAT_RESERVED})
_FLOAT_MAX_MANTISSA = 0x7FFFFD  # largest ordinary positive mantissa

# --- physiological identifiers and units ----------------------------------------------------
NOM_ECG_CARD_BEAT_RATE = 0x4182
NOM_PULS_OXIM_PULS_RATE = 0x4822
NOM_PRESS_BLD_NONINV = 0x4A04
NOM_PRESS_BLD_NONINV_SYS = 0x4A05
NOM_PRESS_BLD_NONINV_DIA = 0x4A06
NOM_PRESS_BLD_NONINV_MEAN = 0x4A07
NOM_TEMP = 0x4B48
NOM_TEMP_BODY = 0x4B5C
NOM_TEMP_CORE = 0x4B60
NOM_TEMP_ESOPH = 0x4B64
NOM_PULS_OXIM_PERF_REL = 0x4BB0
NOM_PULS_OXIM_SAT_O2 = 0x4BB8
NOM_RESP_RATE = 0x500A
NOM_AWAY_RESP_RATE = 0x5012
NOM_AWAY_CO2_ET = 0x50B0

NOM_DIM_DIMLESS = 0x0200
NOM_DIM_PERCENT = 0x0220
NOM_DIM_PER_MIN = 0x09E0
NOM_DIM_BEAT_PER_MIN = 0x0AA0
NOM_DIM_PULS_PER_MIN = 0x0AC0
NOM_DIM_RESP_PER_MIN = 0x0AE0
NOM_DIM_X_PASCAL = 0x0F00
NOM_DIM_HECTO_PASCAL = 0x0F02
NOM_DIM_KILO_PA = 0x0F03
NOM_DIM_MMHG = 0x0F20
NOM_DIM_MILLI_BAR = 0x0F72
NOM_DIM_KELVIN = 0x1120
NOM_DIM_FAHR = 0x1140
NOM_DIM_DEGC = 0x17A0

# --- fixed association bytes (from the guide's association request/response layouts) -------
#: Session data of association request and response (parameter identifiers 0x05, 0x14).
SESSION_DATA = bytes.fromhex("0508130100160102800014020002")
#: Presentation header of the association request, up to and including the user-data tag 0x81.
AARQ_PRESENTATION_HEADER = bytes.fromhex(
    "3180a0808001010000a280a003000001a4803080020101060452010001308006025101000000003080"
    "020102060c2a8648ce14020100000001013080060c2a8648ce1402010000000201000000000000618030"
    "80020101a0806080a180060c2a8648ce14020100000003010000be802880060c2a8648ce140201000000"
    "010102010281"
)
#: Presentation header of the association response (accept), up to the user-data tag 0x81.
AARE_PRESENTATION_HEADER = bytes.fromhex(
    "3180a0808001010000a280a003000001a58030808001008102510100003080800100810c2a8648ce1402"
    "0100000002010000000061803080020101a0806180a180060c2a8648ce14020100000003010000a20302"
    "0100a305a103020100be80288002010281"
)
#: Presentation trailer of request and response: end-of-contents octets.
PRESENTATION_TRAILER = bytes(16)
#: Release request (session finish) as sent by the host.
RELEASE_REQUEST = bytes.fromhex(
    "09 18 c1 16 61 80 30 80 02 01 01 a0 80 62 80 80 01 00 00 00 00 00 00 00 00 00"
)
#: Release result (session disconnect) as sent by the monitor.
RELEASE_RESULT = bytes.fromhex(
    "0a 18 c1 16 61 80 30 80 02 01 01 a0 80 63 80 80 01 00 00 00 00 00 00 00 00 00"
)
#: Abort (either side).
ABORT = bytes.fromhex(
    "19 2e 11 01 03 c1 29 a0 80 a0 80 30 80 02 01 01 06 02 51 01 00 00 00 00 61 80 30 80"
    "02 01 01 a0 80 64 80 80 01 01 00 00 00 00 00 00 00 00 00 00"
)
#: Association refuse: session refuse SPDU with a reason parameter (0x32), "rejected".
REFUSE = bytes.fromhex("0c03320100")

_U16 = struct.Struct(">H")
_HH = struct.Struct(">HH")
_HHH = struct.Struct(">HHH")
_RO_HEAD = struct.Struct(">HHHH")  # SPpdu session_id, context_id; ROapdus ro_type, length
_NU = struct.Struct(">HHHI")       # NuObsValue: physio_id, state, unit_code, value
_EVT = struct.Struct(">HHHIHH")    # EventReportArgument / Result


class PduError(DeviceError, ValueError):
    """A message whose lengths or fields are inconsistent (never raised out of a decoder)."""


# === generic encoders ========================================================================

def encode_li(length: int) -> bytes:
    """Session-layer LI length: one byte up to 254, else ``FF`` and a u16."""
    if length <= 254:
        return bytes((length,))
    return b"\xff" + _U16.pack(length)


def decode_li(data: bytes, offset: int) -> tuple[int, int]:
    """Decode an LI length at ``offset``; return (length, offset after it). PduError if short."""
    if offset >= len(data):
        raise PduError("LI length missing")
    first = data[offset]
    if first != 0xFF:
        return first, offset + 1
    if offset + 3 > len(data):
        raise PduError("LI length truncated")
    return _U16.unpack_from(data, offset + 1)[0], offset + 3


def encode_asn_length(length: int) -> bytes:
    """ASN.1 BER definite length (short form below 128, else 0x81/0x82 long form)."""
    if length < 0x80:
        return bytes((length,))
    if length < 0x100:
        return bytes((0x81, length))
    return b"\x82" + _U16.pack(length)


def decode_asn_length(data: bytes, offset: int) -> tuple[int, int]:
    """Decode an ASN.1 BER length at ``offset``; return (length, offset after it)."""
    if offset >= len(data):
        raise PduError("ASN.1 length missing")
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    size = first & 0x7F
    if size == 0 or size > 2 or offset + 1 + size > len(data):
        raise PduError("unsupported ASN.1 length")
    return int.from_bytes(data[offset + 1:offset + 1 + size], "big"), offset + 1 + size


def encode_ava(attribute_id: int, value: bytes) -> bytes:
    """One attribute-value assertion: ``attribute_id u16, length u16, value``."""
    return _HH.pack(attribute_id, len(value)) + value


def encode_attribute_list(attributes: Iterable[tuple[int, bytes]]) -> bytes:
    """AttributeList: ``count u16, length u16`` then the AVAs."""
    body = [encode_ava(aid, value) for aid, value in attributes]
    joined = b"".join(body)
    return _HH.pack(len(body), len(joined)) + joined


def managed_object(obj_class: int = NOM_MOC_VMS_MDS, context_id: int = 0, handle: int = 0) -> bytes:
    """ManagedObjectId: ``m_obj_class u16, context_id u16, handle u16``."""
    return _HHH.pack(obj_class, context_id, handle)


def encode_float(value: float | None, decimals: int = 0) -> int:
    """FLOAT-Type (u32: signed 8-bit exponent, signed 24-bit mantissa) for ``value``.

    ``value`` is rounded to ``decimals`` places (exponent ``-decimals``); precision is dropped
    until the mantissa fits 24 bits. None or NaN gives the NaN code, ±infinity the INF codes.
    """
    if value is None or value != value:
        return FLOAT_NAN
    if value in (float("inf"), float("-inf")):
        return FLOAT_PINF if value > 0 else FLOAT_NINF
    exponent = -decimals
    mantissa = round(value * 10 ** decimals) if decimals >= 0 else round(value / 10 ** -decimals)
    while abs(mantissa) > _FLOAT_MAX_MANTISSA:
        exponent += 1
        mantissa = round(value / 10 ** exponent) if exponent > 0 else round(value * 10 ** -exponent)
    if not -128 <= exponent <= 127:
        return FLOAT_PINF if value > 0 else FLOAT_NINF
    return ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)


def encode_nu_obs(physio_id: int, state: int, unit_code: int, value: int) -> bytes:
    """NuObsValue (10 bytes): ``physio_id u16, state u16, unit_code u16, value FLOAT-Type``."""
    return _NU.pack(physio_id, state, unit_code, value)


def encode_abs_time(when: datetime | None) -> bytes:
    """AbsoluteTime: 8 BCD bytes (century, year, month, day, hour, minute, second, 1/100 s).

    None gives all ``FF`` (time not set).
    """
    if when is None:
        return b"\xff" * 8
    fields = (when.year // 100, when.year % 100, when.month, when.day, when.hour, when.minute,
              when.second, when.microsecond // 10000)
    return bytes(((f // 10) << 4) | (f % 10) for f in fields)


# === generic decoders ========================================================================

_DIVISORS = {e: 10 ** -e for e in range(-128, 0)}


def decode_float(raw: int) -> float | None:
    """Value of a FLOAT-Type u32; None for the special mantissas (NaN, NRes, ±INF, reserved)."""
    mantissa = raw & 0xFFFFFF
    if mantissa in FLOAT_SPECIALS:
        return None
    if mantissa & 0x800000:
        mantissa -= 0x1000000
    exponent = raw >> 24
    if exponent & 0x80:
        exponent -= 0x100
    if exponent == 0:
        return float(mantissa)
    if exponent < 0:
        return mantissa / _DIVISORS[exponent]
    return float(mantissa * 10 ** exponent)


_BCD = tuple((b >> 4) * 10 + (b & 15) if b >> 4 < 10 and b & 15 < 10 else -1 for b in range(256))


def decode_abs_time(raw: bytes) -> datetime | None:
    """Naive local datetime of an 8-byte BCD AbsoluteTime; None if unset (FF) or invalid."""
    if len(raw) != 8:
        return None
    bcd = _BCD
    century, year, month, day = bcd[raw[0]], bcd[raw[1]], bcd[raw[2]], bcd[raw[3]]
    hour, minute, second, hundredths = bcd[raw[4]], bcd[raw[5]], bcd[raw[6]], bcd[raw[7]]
    if min(century, year, month, day, hour, minute, second, hundredths) < 0:
        return None
    try:
        return datetime(century * 100 + year, month, day, hour, minute, second, hundredths * 10000)
    except ValueError:
        return None


def decode_variable_label(raw: bytes) -> bytes | None:
    """Bytes of a VariableLabel (``length u16`` then the bytes); None if inconsistent."""
    if len(raw) < 2:
        return None
    size = _U16.unpack_from(raw)[0]
    if 2 + size > len(raw):
        return None
    return raw[2:2 + size]


def encode_variable_label(value: bytes) -> bytes:
    """VariableLabel: ``length u16`` and the bytes, NUL-padded to an even length."""
    if len(value) % 2:
        value += b"\x00"
    return _U16.pack(len(value)) + value


def parse_attribute_list(
    data: bytes, offset: int, end: int, wanted: Container[int] | None = None
) -> tuple[dict[int, bytes], int]:
    """Parse an AttributeList at ``offset`` (bounded by ``end``).

    Returns ``({attribute_id: value}, offset after the list)``; attributes not in ``wanted``
    are skipped by their length. Raises :class:`PduError` on inconsistent lengths.
    """
    if offset + 4 > end:
        raise PduError("attribute list header truncated")
    count, length = _HH.unpack_from(data, offset)
    offset += 4
    list_end = offset + length
    if list_end > end:
        raise PduError("attribute list longer than its container")
    attrs: dict[int, bytes] = {}
    unpack = _HH.unpack_from
    for _ in range(count):
        if offset + 4 > list_end:
            raise PduError("AVA header truncated")
        aid, size = unpack(data, offset)
        offset += 4
        value_end = offset + size
        if value_end > list_end:
            raise PduError("AVA longer than its list")
        if wanted is None or aid in wanted:
            attrs[aid] = data[offset:value_end]
        offset = value_end
    return attrs, list_end


# === association control =====================================================================

def build_user_info(
    *,
    system_type: int = SYST_CLIENT,
    startup_mode: int = COLD_START,
    min_poll_period: int = 1000,
    max_mtu_rx: int = 2500,
    max_mtu_tx: int = 1000,
    max_bw_tx: int = 0xFFFFFFFF,
    options: int = P_OPT_DYN_CREATE_OBJECTS | P_OPT_DYN_DELETE_OBJECTS,
    ext_options: int | None = POLL_EXT_PERIOD_NU_1SEC | POLL_EXT_DYN_MODALITIES,
) -> bytes:
    """MDSEUserInfoStd with one supported profile, the poll profile (and its extension).

    ``min_poll_period`` is a RelativeTime (1/8 ms ticks); ``max_mtu_rx``/``max_mtu_tx`` are
    bytes; ``max_bw_tx`` bytes per second (all ones = no limit). ``ext_options`` are the
    extended-poll options (POLL_EXT_*); None leaves the optional package out.
    """
    packages = []
    if ext_options is not None:
        # PollProfileExt: options u32 and an (empty) ext_attr list.
        packages.append((NOM_ATTR_POLL_PROFILE_EXT, struct.pack(">IHH", ext_options, 0, 0)))
    poll_profile = struct.pack(
        ">IIIIII", POLL_PROFILE_REV_0, min_poll_period, max_mtu_rx, max_mtu_tx, max_bw_tx, options
    ) + encode_attribute_list(packages)
    return (
        struct.pack(">IIIII", MDDL_VERSION1, NOMEN_VERSION, 0, system_type, startup_mode)
        + encode_attribute_list(())  # option_list
        + encode_attribute_list([(NOM_POLL_PROFILE_SUPPORT, poll_profile)])  # supported_aprofiles
    )


def _association_message(si: int, presentation_header: bytes, user_info: bytes) -> bytes:
    presentation = (
        presentation_header + encode_asn_length(len(user_info)) + user_info + PRESENTATION_TRAILER
    )
    body = SESSION_DATA + b"\xc1" + encode_li(len(presentation)) + presentation
    return bytes((si,)) + encode_li(len(body)) + body


def build_association_request(user_info: bytes | None = None) -> bytes:
    """The association request (session connect 0x0D) the host sends; see :func:`build_user_info`."""
    return _association_message(CN_SPDU_SI, AARQ_PRESENTATION_HEADER, user_info or build_user_info())


def build_association_accept(user_info: bytes | None = None) -> bytes:
    """The association response (session accept 0x0E) the monitor sends."""
    if user_info is None:
        user_info = build_user_info(system_type=SYST_SERVER, ext_options=POLL_EXT_PERIOD_NU_1SEC)
    return _association_message(AC_SPDU_SI, AARE_PRESENTATION_HEADER, user_info)


def parse_session(data: bytes) -> tuple[int, bytes]:
    """Session header of an association-control message: (SPDU type, the LI-delimited body).

    Raises :class:`PduError` if the LI length exceeds the message.
    """
    if not data:
        raise PduError("empty message")
    length, offset = decode_li(data, 1)
    if offset + length > len(data):
        raise PduError("session body shorter than its LI length")
    return data[0], data[offset:offset + length]


def parse_user_info(message: bytes) -> dict[str, int] | None:
    """Fields of the MDSEUserInfoStd in an association request or response; None if absent.

    Returns protocol_version, nomenclature_version, functional_units, system_type,
    startup_mode and, when the poll profile is present, its fields (min_poll_period,
    max_mtu_rx, max_mtu_tx, max_bw_tx, options, and ext_options when extended).
    """
    try:
        _, body = parse_session(message)
        # Session data: parameter identifiers with LI lengths until the presentation tag 0xC1.
        offset = 0
        while offset < len(body) and body[offset] != 0xC1:
            size, offset = decode_li(body, offset + 1)
            offset += size
        if offset >= len(body):
            return None
        size, offset = decode_li(body, offset + 1)
        presentation = body[offset:offset + size]
        for header in (AARQ_PRESENTATION_HEADER, AARE_PRESENTATION_HEADER):
            if presentation.startswith(header):
                offset = len(header)
                break
        else:
            marker = presentation.find(b"\xbe\x80\x28\x80")
            if marker < 0:
                return None
            tag = presentation.find(b"\x81", marker + 4)
            if tag < 0:
                return None
            offset = tag + 1
        size, offset = decode_asn_length(presentation, offset)
        info = presentation[offset:offset + size]
        if len(info) < 20:
            return None
        names = ("protocol_version", "nomenclature_version", "functional_units", "system_type",
                 "startup_mode")
        result = dict(zip(names, struct.unpack_from(">IIIII", info)))
        _, offset = parse_attribute_list(info, 20, len(info))  # option_list
        profiles, _ = parse_attribute_list(info, offset, len(info))
        profile = profiles.get(NOM_POLL_PROFILE_SUPPORT)
        if profile is not None and len(profile) >= 24:
            profile_names = ("poll_profile_revision", "min_poll_period", "max_mtu_rx", "max_mtu_tx",
                             "max_bw_tx", "options")
            result.update(zip(profile_names, struct.unpack_from(">IIIIII", profile)))
            packages, _ = parse_attribute_list(profile, 24, len(profile))
            ext = packages.get(NOM_ATTR_POLL_PROFILE_EXT)
            if ext is not None and len(ext) >= 4:
                result["ext_options"] = struct.unpack_from(">I", ext)[0]
        return result
    except (PduError, struct.error):
        return None


# === data export: headers ====================================================================

@dataclass(slots=True)
class RemoteOperation:
    """The headers of one data-export message.

    ``ro_type`` is ROIV/RORS/ROER/ROLRS; ``linked_state``/``linked_count`` are set for ROLRS
    (0 otherwise); ``command`` is the command type (the error value for ROER); the operation
    body is ``data[body:end]``.
    """

    ro_type: int
    invoke_id: int
    command: int
    body: int
    end: int
    linked_state: int = 0
    linked_count: int = 0


def parse_remote_operation(data: bytes) -> RemoteOperation:
    """Parse SPpdu, ROapdus and the ROIV/RORS/ROER/ROLRS header. PduError if inconsistent."""
    size = len(data)
    if size < 14:
        raise PduError("data-export message too short")
    session_id, _context, ro_type, ro_length = _RO_HEAD.unpack_from(data)
    if session_id != SESSION_ID:
        raise PduError("not a data-export message")
    if 8 + ro_length > size:
        raise PduError("ROapdus longer than the message")
    if ro_type == ROLRS_APDU:
        if ro_length < 8:
            raise PduError("ROLRS header truncated")
        state, count = data[8], data[9]
        invoke_id, command, length = _HHH.unpack_from(data, 10)
        body = 16
    else:
        if ro_length < 6:
            raise PduError("RO header truncated")
        state = count = 0
        invoke_id, command, length = _HHH.unpack_from(data, 8)
        body = 14
    end = body + length
    if end > 8 + ro_length:
        raise PduError("operation longer than ROapdus")
    return RemoteOperation(ro_type, invoke_id, command, body, end, state, count)


def _data_export(ro_type: int, invoke_id: int, command: int, body: bytes,
                 linked: tuple[int, int] | None = None,
                 context_id: int = PRESENTATION_CONTEXT_ID) -> bytes:
    if ro_type == ROLRS_APDU:
        state, count = linked or (RORLS_LAST, 1)
        head = bytes((state, count & 0xFF)) + _HHH.pack(invoke_id, command, len(body))
    else:
        head = _HHH.pack(invoke_id, command, len(body))
    operation = head + body
    return _RO_HEAD.pack(SESSION_ID, context_id, ro_type, len(operation)) + operation


# === MDS Create event ========================================================================

def build_mds_create_event(
    invoke_id: int, event_time: int, attributes: Iterable[tuple[int, bytes]] = ()
) -> bytes:
    """The monitor's MDS Create event report (confirmed event report, event 0x0D06).

    ``event_time`` is the monitor's RelativeTime; ``attributes`` the MDS attribute list.
    """
    info = managed_object() + encode_attribute_list(attributes)
    argument = managed_object() + struct.pack(">IHH", event_time & 0xFFFFFFFF,
                                              NOM_NOTI_MDS_CREAT, len(info)) + info
    return _data_export(ROIV_APDU, invoke_id, CMD_CONFIRMED_EVENT_REPORT, argument)


def build_mds_create_result(invoke_id: int, current_time: int = 0) -> bytes:
    """The host's confirmation of the MDS Create event report (same ``invoke_id``)."""
    result = managed_object() + struct.pack(">IHH", current_time & 0xFFFFFFFF, NOM_NOTI_MDS_CREAT, 0)
    return _data_export(RORS_APDU, invoke_id, CMD_CONFIRMED_EVENT_REPORT, result)


@dataclass(slots=True)
class EventReport:
    """A confirmed or unconfirmed event report (ROIV): the MDS Create among others."""

    invoke_id: int
    confirmed: bool
    obj_class: int
    event_time: int
    event_type: int
    attributes: dict[int, bytes] = field(default_factory=dict)


def parse_event_report(data: bytes, op: RemoteOperation) -> EventReport:
    """EventReportArgument of a ROIV event report; the attribute list for an MDS Create."""
    off, end = op.body, op.end
    if off + 14 > end:
        raise PduError("event report truncated")
    obj_class, _ctx, _handle, event_time, event_type, length = _EVT.unpack_from(data, off)
    off += 14
    if off + length > end:
        raise PduError("event info longer than the operation")
    report = EventReport(op.invoke_id, op.command == CMD_CONFIRMED_EVENT_REPORT, obj_class,
                         event_time, event_type)
    if event_type == NOM_NOTI_MDS_CREAT:
        if length < 6:
            raise PduError("MDSCreateInfo truncated")
        report.attributes, _ = parse_attribute_list(data, off + 6, off + length)
    return report


# === polls ===================================================================================

def build_poll_request(
    invoke_id: int,
    poll_number: int,
    obj_code: int = NOM_MOC_VMO_METRIC_NU,
    attr_group: int = NOM_ATTR_GRP_ALL,
    *,
    extended: bool = True,
    poll_period: int | None = None,
) -> bytes:
    """A poll request on the MDS for objects of class ``obj_code`` (numerics by default).

    ``extended`` selects the extended poll (action 0xF13B, with an attribute list that holds
    the optional ``poll_period`` RelativeTime) or the single poll (action 0x0C16).
    """
    request = struct.pack(">HHHH", poll_number & 0xFFFF, NOM_PART_OBJ, obj_code, attr_group)
    if extended:
        attrs = [] if poll_period is None else [(NOM_ATTR_TIME_PD_POLL, struct.pack(">I", poll_period))]
        request += encode_attribute_list(attrs)
        action = NOM_ACT_POLL_MDIB_DATA_EXT
    else:
        action = NOM_ACT_POLL_MDIB_DATA
    argument = managed_object() + struct.pack(">IHH", 0, action, len(request)) + request
    return _data_export(ROIV_APDU, invoke_id, CMD_CONFIRMED_ACTION, argument)


@dataclass(slots=True)
class PollRequest:
    """A poll request as the monitor sees it."""

    invoke_id: int
    action_type: int
    poll_number: int
    obj_partition: int
    obj_code: int
    attr_group: int
    attributes: dict[int, bytes] = field(default_factory=dict)


def parse_poll_request(data: bytes, op: RemoteOperation) -> PollRequest | None:
    """The poll request in a ROIV confirmed action; None if the action is not a poll."""
    off, end = op.body, op.end
    if off + 14 > end:
        raise PduError("action argument truncated")
    _cls, _ctx, _handle, _scope, action, length = _EVT.unpack_from(data, off)
    off += 14
    if action not in POLL_ACTIONS:
        return None
    if off + length > end or length < 8:
        raise PduError("poll request truncated")
    number, partition, code, group = struct.unpack_from(">HHHH", data, off)
    attrs: dict[int, bytes] = {}
    if action == NOM_ACT_POLL_MDIB_DATA_EXT and length >= 12:
        attrs, _ = parse_attribute_list(data, off + 8, off + length)
    return PollRequest(op.invoke_id, action, number, partition, code, group, attrs)


#: One polled object for :func:`build_poll_reply`: (handle, [(attribute_id, value), ...]).
PolledObject = tuple[int, Sequence[tuple[int, bytes]]]


def build_poll_reply(
    objects: Sequence[PolledObject],
    *,
    invoke_id: int,
    poll_number: int,
    rel_time: int = 0,
    abs_time: bytes = b"\xff" * 8,
    obj_code: int = NOM_MOC_VMO_METRIC_NU,
    attr_group: int = NOM_ATTR_GRP_ALL,
    extended: bool = True,
    sequence_no: int = 0,
    linked: tuple[int, int] | None = None,
    context_id: int = 0,
) -> bytes:
    """A poll reply (RORS, or ROLRS when ``linked=(state, count)``) carrying ``objects``.

    ``extended`` picks the PollMdibDataReplyExt layout (with ``sequence_no``, action 0xF13B)
    or the single-poll PollMdibDataReply (without, action 0x0C16). ``rel_time`` is a
    RelativeTime, ``abs_time`` 8 BCD bytes (see :func:`encode_abs_time`). All objects go
    into one SingleContextPoll of ``context_id``.
    """
    observations = b"".join(
        _U16.pack(handle) + encode_attribute_list(attrs) for handle, attrs in objects
    )
    context = _HHH.pack(context_id, len(objects), len(observations)) + observations
    info_list = _HH.pack(1, len(context)) + context
    if extended:
        reply = struct.pack(">HHI", poll_number & 0xFFFF, sequence_no & 0xFFFF, rel_time & 0xFFFFFFFF)
        action = NOM_ACT_POLL_MDIB_DATA_EXT
    else:
        reply = struct.pack(">HI", poll_number & 0xFFFF, rel_time & 0xFFFFFFFF)
        action = NOM_ACT_POLL_MDIB_DATA
    reply += bytes(abs_time) + struct.pack(">HHH", NOM_PART_OBJ, obj_code, attr_group) + info_list
    result = managed_object() + _HH.pack(action, len(reply)) + reply
    ro_type = ROLRS_APDU if linked else RORS_APDU
    return _data_export(ro_type, invoke_id, CMD_CONFIRMED_ACTION, result, linked)


@dataclass(slots=True)
class PollReply:
    """A parsed poll reply (single or extended, RORS or ROLRS).

    ``objects`` lists (context_id, handle, {attribute_id: value bytes}) for every
    ObservationPoll, with only the ``wanted`` attributes kept. ``sequence_no`` is None for the
    single-poll layout. ``abs_time`` is the raw 8-byte BCD time stamp of the reply.
    """

    invoke_id: int
    action_type: int
    poll_number: int
    sequence_no: int | None
    rel_time: int
    abs_time: bytes
    obj_partition: int
    obj_code: int
    attr_group: int
    objects: list[tuple[int, int, dict[int, bytes]]]
    linked_state: int = 0
    linked_count: int = 0


_REPLY = struct.Struct(">HI8sHHH")      # single: poll_number, rel, abs, partition, code, group
_REPLY_EXT = struct.Struct(">HHI8sHHH")  # extended: poll_number, sequence_no, rel, abs, ...


def parse_poll_reply(
    data: bytes, op: RemoteOperation, wanted: Container[int] | None = None, *, offsets: bool = False
) -> PollReply | None:
    """The poll reply in a RORS/ROLRS confirmed-action result; None if not a poll action.

    The layout is chosen by the action type (0x0C16 single: no sequence_no; 0xF13B
    extended: with it). Raises :class:`PduError` if any list is longer than its container.
    With ``offsets`` the attribute dicts hold (start, end) positions in ``data`` instead of
    the value bytes.
    """
    off, end = op.body, op.end
    if off + 10 > end:
        raise PduError("action result truncated")
    action, length = _HH.unpack_from(data, off + 6)
    off += 10
    if action not in POLL_ACTIONS:
        return None
    end_reply = off + length
    if end_reply > end:
        raise PduError("poll reply longer than the action result")
    if action == NOM_ACT_POLL_MDIB_DATA_EXT:
        if off + 22 > end_reply:
            raise PduError("extended poll reply header truncated")
        number, sequence, rel, abs_raw, partition, code, group = _REPLY_EXT.unpack_from(data, off)
        off += 22
    else:
        if off + 20 > end_reply:
            raise PduError("poll reply header truncated")
        number, rel, abs_raw, partition, code, group = _REPLY.unpack_from(data, off)
        sequence = None
        off += 20
    objects: list[tuple[int, int, dict[int, bytes]]] = []
    _walk_poll_info(data, off, end_reply, wanted, objects, offsets)
    return PollReply(op.invoke_id, action, number, sequence, rel, abs_raw, partition, code, group,
                     objects, op.linked_state, op.linked_count)


def _walk_poll_info(
    data: bytes, off: int, end: int, wanted: Container[int] | None,
    out: list[tuple[int, int, dict[int, bytes]]], offsets: bool = False,
) -> None:
    """PollInfoList → SingleContextPoll → ObservationPoll → AVA, bounded by every length."""
    unpack2 = _HH.unpack_from
    unpack3 = _HHH.unpack_from
    if off + 4 > end:
        raise PduError("PollInfoList header truncated")
    contexts, length = unpack2(data, off)
    off += 4
    list_end = off + length
    if list_end > end:
        raise PduError("PollInfoList longer than the reply")
    for _ in range(contexts):
        if off + 6 > list_end:
            raise PduError("SingleContextPoll header truncated")
        context_id, count, length = unpack3(data, off)
        off += 6
        context_end = off + length
        if context_end > list_end:
            raise PduError("SingleContextPoll longer than its list")
        for _ in range(count):
            if off + 6 > context_end:
                raise PduError("ObservationPoll header truncated")
            handle, n_attrs, length = unpack3(data, off)
            off += 6
            attrs_end = off + length
            if attrs_end > context_end:
                raise PduError("ObservationPoll longer than its context")
            attrs: dict[int, Any] = {}  # values, or (start, end) spans with ``offsets``
            for _ in range(n_attrs):
                if off + 4 > attrs_end:
                    raise PduError("AVA header truncated")
                aid, size = unpack2(data, off)
                off += 4
                value_end = off + size
                if value_end > attrs_end:
                    raise PduError("AVA longer than its attribute list")
                if wanted is None or aid in wanted:
                    attrs[aid] = (off, value_end) if offsets else data[off:value_end]
                off = value_end
            off = attrs_end
            out.append((context_id, handle, attrs))
        off = context_end


def parse_nu_obs(raw: bytes) -> tuple[int, int, int, int]:
    """NuObsValue: (physio_id, state, unit_code, FLOAT-Type u32). PduError if short."""
    if len(raw) < 10:
        raise PduError("NuObsValue truncated")
    return _NU.unpack_from(raw)


def parse_nu_obs_compound(raw: bytes) -> list[tuple[int, int, int, int]]:
    """NuObsValueCmp: ``count u16, length u16`` then NuObsValue entries (10 bytes each)."""
    if len(raw) < 4:
        raise PduError("NuObsValueCmp truncated")
    count, length = _HH.unpack_from(raw)
    if 4 + length > len(raw) or count * 10 > length:
        raise PduError("NuObsValueCmp longer than its attribute")
    return [_NU.unpack_from(raw, 4 + 10 * i) for i in range(count)]
