"""HL7 v2 messages: segments, fields, components, escapes, timestamps and acknowledgements.

Only what a receiver of ORU^R01 needs, written from the HL7 v2.3–v2.6 encoding rules: the field
separator is the 4th character of MSH, the encoding characters follow it (component, repetition,
escape, subcomponent); segments end in CR (LF and CR LF are accepted too); ``MSH-n`` counts the
field separator itself as MSH-1. Text is unescaped (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, ``\\Xhh\\``;
formatting escapes become a space). Parsing never raises: :func:`parse` returns None for
something that is not an HL7 message, and every accessor returns ``""`` for what is absent.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

#: HL7 table 0357 error codes used in ERR segments.
ERR_SEGMENT_SEQUENCE = ("100", "Segment sequence error")
ERR_REQUIRED_FIELD = ("101", "Required field missing")
ERR_DATA_TYPE = ("102", "Data type error")
ERR_UNSUPPORTED_TYPE = ("200", "Unsupported message type")
ERR_UNSUPPORTED_EVENT = ("201", "Unsupported event code")
ERR_UNSUPPORTED_PROCESSING = ("202", "Unsupported processing id")
ERR_UNSUPPORTED_VERSION = ("203", "Unsupported version id")
ERR_UNKNOWN_KEY = ("204", "Unknown key identifier")
ERR_APPLICATION = ("207", "Application internal error")

_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")
_HEX_ESCAPE = re.compile(r"X([0-9A-Fa-f]{2})+")


@dataclass(frozen=True)
class Separators:
    """The message's delimiters."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding(self) -> str:
        """MSH-2 for these separators."""
        return self.component + self.repetition + self.escape + self.subcomponent


STANDARD = Separators()


class Message:
    """A parsed HL7 v2 message: ``segments`` are lists of raw (still escaped) field texts.

    ``segments[i][0]`` is the segment name; for MSH, ``get("MSH", 1)`` is the field separator and
    ``get("MSH", 2)`` the encoding characters, as the standard counts them.
    """

    def __init__(self, separators: Separators, segments: list[list[str]]) -> None:
        self.separators = separators
        self.segments = segments

    def first(self, name: str) -> list[str] | None:
        """The first segment called ``name``, or None."""
        for segment in self.segments:
            if segment[0] == name:
                return segment
        return None

    def get(self, name: str, index: int, component: int = 0) -> str:
        """Field ``index`` of the first ``name`` segment (its ``component``-th component when
        ``component`` ≥ 1, 1-based), unescaped; ``""`` when absent."""
        segment = self.first(name)
        return field(segment, index, self.separators, component) if segment is not None else ""


def field(segment: list[str], index: int, seps: Separators = STANDARD, component: int = 0) -> str:
    """Field ``index`` of a parsed ``segment`` (component ``component`` of its first repetition
    when ≥ 1), unescaped; ``""`` when absent."""
    if segment[0] == "MSH":
        if index == 1:
            return seps.field
        index -= 1
    if index >= len(segment):
        return ""
    text = segment[index]
    if component:
        text = text.split(seps.repetition, 1)[0]
        parts = text.split(seps.component)
        text = parts[component - 1] if component - 1 < len(parts) else ""
    return unescape(text, seps)


def components(raw: str, seps: Separators = STANDARD) -> list[str]:
    """The components of the first repetition of a raw field, unescaped."""
    return [unescape(part, seps) for part in raw.split(seps.repetition, 1)[0].split(seps.component)]


def unescape(text: str, seps: Separators = STANDARD) -> str:
    """``text`` with HL7 escape sequences replaced (never raises; a malformed escape stays as
    written)."""
    esc = seps.escape
    if not esc or esc not in text:
        return text
    parts = text.split(esc)
    if len(parts) % 2 == 0:  # an unpaired escape character: leave the text alone
        return text
    out = [parts[0]]
    for index in range(1, len(parts), 2):
        code, after = parts[index], parts[index + 1]
        replacement = {"F": seps.field, "S": seps.component, "T": seps.subcomponent, "R": seps.repetition,
                       "E": esc}.get(code)
        if replacement is None:
            if _HEX_ESCAPE.fullmatch(code):
                try:
                    replacement = bytes.fromhex(code[1:]).decode("latin-1")
                except ValueError:
                    replacement = ""
            elif code.startswith(".") or code in ("H", "N"):
                replacement = " " if code.startswith(".") else ""
            else:
                replacement = esc + code + esc
        out.append(replacement)
        out.append(after)
    return "".join(out)


def escape(text: str, seps: Separators = STANDARD) -> str:
    """``text`` with the delimiters escaped and line breaks turned into spaces."""
    esc = seps.escape
    out = text.replace(esc, f"{esc}E{esc}")
    for char, code in ((seps.field, "F"), (seps.component, "S"), (seps.subcomponent, "T"), (seps.repetition, "R")):
        out = out.replace(char, f"{esc}{code}{esc}")
    return " ".join(out.split())


def decode_text(payload: bytes) -> str:
    """The message text: UTF-8 when it is valid UTF-8, else Latin-1 (never fails)."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1")


def parse(text: str) -> Message | None:
    """Parse a message; None when it does not start with an MSH segment with usable delimiters."""
    text = text.lstrip("\r\n \t")
    if not text.startswith("MSH") or len(text) < 8:
        return None
    fs = text[3]
    if fs.isalnum() or fs in "\r\n ":
        return None
    encoding = text[4:].split(fs, 1)[0]
    if len(encoding) < 2 or any(c.isalnum() or c in "\r\n" or c == fs for c in encoding[:4]) \
            or len(set(encoding[:4])) != len(encoding[:4]):
        return None
    seps = Separators(fs, encoding[0], encoding[1], encoding[2] if len(encoding) > 2 else "",
                      encoding[3] if len(encoding) > 3 else "")
    segments = []
    for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
        if not line.strip():
            continue
        fields = line.split(fs)
        if len(fields[0]) != 3 or not fields[0].isalnum():
            continue  # not a segment: ignored, as receivers commonly do
        segments.append(fields)
    return Message(seps, segments)


@functools.lru_cache(maxsize=4096)
def parse_time(text: str) -> datetime | None:
    """An HL7 TS/DTM value (``YYYY[MM[DD[HH[MM[SS[.S…]]]]]][±ZZZZ]``; a TS's precision component
    is ignored): aware UTC when the offset is given, naive as written otherwise; None when
    malformed."""
    match = _TS.match(text.strip().split("^", 1)[0])
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        value = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                         int(second or 0), int((fraction or "0").ljust(6, "0")[:6]))
    except ValueError:
        return None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or minutes > 59:
            return None
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
        try:
            return value.replace(tzinfo=zone).astimezone(timezone.utc)
        except OverflowError:
            return None
    return value


def format_time(value: datetime) -> str:
    """``value`` as an HL7 DTM: UTC with ``+0000`` when aware, as written when naive."""
    if value.tzinfo is not None:
        return value.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S+0000")
    return value.strftime("%Y%m%d%H%M%S")


def _reencode(original: Message | None, index: int) -> str:
    """MSH-``index`` of ``original`` (components kept) in the standard delimiters."""
    if original is None:
        return ""
    segment = original.first("MSH")
    if segment is None or index - 1 >= len(segment):
        return ""
    seps = original.separators
    raw = segment[index - 1].split(seps.repetition, 1)[0]
    return "^".join(escape(unescape(part, seps)) for part in raw.split(seps.component))


def build_ack(original: Message | None, code: str, control_id: str, now: datetime, text: str = "",
              error: tuple[str, str] | None = None, location: str = "") -> bytes:
    """The acknowledgement of ``original`` (None when it could not be parsed), as message bytes
    (not yet MLLP-framed).

    ``code``: AA/AE/AR (original mode) or CA/CE/CR (enhanced mode). ``text`` goes in MSA-3 and
    ``error`` (an HL7 table 0357 code and text) in an ERR segment laid out for the original
    message's version: ERR-1 ``location^code&text&HL70357`` before v2.5, ERR-2 location and
    ERR-3/4 code and severity from v2.5. ``location`` is ``SEGMENT^sequence^field`` (e.g.
    ``OBX^3^5``), already in HL7 form. The ACK uses the standard
    delimiters, swaps sending and receiving application/facility, echoes MSH-11 and MSH-12, and
    answers MSH-10 in MSA-2.
    """
    version = original.get("MSH", 12, 1) if original else ""
    version = version or "2.6"
    processing = (original.get("MSH", 11, 1) if original else "") or "P"
    their_app = _reencode(original, 3)
    their_facility = _reencode(original, 4)
    their_id = _reencode(original, 10)
    structure = "ACK^R01^ACK" if version >= "2.3.1" else "ACK^R01"
    msh = ["MSH", STANDARD.encoding, "VIGIL", "VIGIL", their_app, their_facility, format_time(now), "",
           structure, escape(control_id), escape(processing), escape(version)]
    msa = ["MSA", code, their_id] + ([escape(text)] if text else [])
    segments = ["|".join(msh), "|".join(msa)]
    if error is not None:
        err_code, err_text = error
        where = location or "^"
        if version >= "2.5":
            segments.append(f"ERR||{where}|{err_code}^{escape(err_text)}^HL70357|E")
        else:
            segments.append(f"ERR|{where}^{err_code}&{escape(err_text)}&HL70357")
    return ("\r".join(segments) + "\r").encode("utf-8")
