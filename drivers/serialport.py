"""Opening a serial port with a protocol's line settings, relaxed where a pseudo-terminal needs it.

A pseudo-terminal (``vigil simulate``'s ``/dev/pts/N`` on Linux, ``/dev/ttysNNN`` on macOS) has no
line: parity and hardware handshake mean nothing on it, and systems refuse them in different ways
(Linux accepts even parity when the port opens, then fails every later reconfiguration, such as a
new read timeout, with EINVAL; macOS refuses CRTSCTS at once). :func:`open_serial` therefore opens
a pseudo-terminal with hardware and software handshake off and no parity (:data:`PTY_RELAXED`),
so the Datex S/5 protocol (19200 8E1 RTS/CTS) works through a pty everywhere. A real port always
gets exactly the protocol's settings: a wrong setting there is an error the technician must see.
"""

from __future__ import annotations

import os
import re
from typing import Any

import serial

#: Device paths of pseudo-terminals (Linux /dev/pts/N, macOS /dev/ttysNNN, BSD /dev/ptyXX).
_PTY = re.compile(r"^/dev/(pts/\d+|ttys\d+|pty[p-za-e][0-9a-f])$")
#: What is relaxed on a pseudo-terminal.
PTY_RELAXED: dict[str, Any] = {"rtscts": False, "xonxoff": False, "parity": serial.PARITY_NONE}


def is_pseudo_terminal(url: str) -> bool:
    """True when ``url`` is a plain path (no pyserial scheme) that resolves to a pseudo-terminal."""
    if "://" in url:
        return False
    try:
        return bool(_PTY.match(os.path.realpath(url)))
    except (OSError, ValueError):
        return False


def open_serial(url: str, settings: dict[str, Any], **kwargs: Any) -> serial.SerialBase:
    """``serial.serial_for_url(url, **settings, **kwargs)``, with :data:`PTY_RELAXED` laid over
    ``settings`` when ``url`` is a pseudo-terminal. Raises what pyserial raises (SerialException,
    OSError, ValueError)."""
    if is_pseudo_terminal(url):
        settings = {**settings, **PTY_RELAXED}
    return serial.serial_for_url(url, **settings, **kwargs)
