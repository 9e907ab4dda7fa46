"""Opening a serial port with a protocol's line settings, relaxed where a pseudo-terminal needs it.

A pseudo-terminal (``vigil simulate``'s ``/dev/pts/N`` on Linux, ``/dev/ttysNNN`` on macOS) has no
line: parity and hardware handshake mean nothing on it, and systems refuse them in different ways
(Linux accepts even parity when the port opens, then fails every later reconfiguration, such as a
new read timeout, with EINVAL; macOS refuses CRTSCTS at once). :func:`open_serial` therefore opens
a pseudo-terminal with hardware and software handshake off and no parity (:data:`PTY_RELAXED`),
so the Datex S/5 protocol (19200 8E1 RTS/CTS) works through a pty everywhere. A real port always
gets exactly the protocol's settings: a wrong setting there is an error the technician must see.

Ports are opened exclusively (``exclusive=True``: an advisory ``flock`` on POSIX; Windows ports are
exclusive anyway): a second Vigil, or a probe, on a port already being read is refused, and
:func:`port_error_text` says so in words. A port can fail with ``termios.error`` (not an OSError)
when the system refuses a setting: :data:`PORT_ERRORS` lists everything a port may raise.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any

import serial

try:
    import termios
    _TERMIOS: tuple[type[Exception], ...] = (termios.error,)
except ImportError:  # Windows
    _TERMIOS = ()

#: What opening, configuring, reading or writing a port may raise.
PORT_ERRORS: tuple[type[Exception], ...] = (serial.SerialException, OSError, *_TERMIOS)

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
    """``serial.serial_for_url(url, **settings, exclusive=True, **kwargs)``, with :data:`PTY_RELAXED`
    laid over ``settings`` when ``url`` is a pseudo-terminal. Raises what pyserial raises
    (:data:`PORT_ERRORS`, ValueError); a port another program holds raises SerialException (see
    :func:`port_error_text`)."""
    if is_pseudo_terminal(url):
        settings = {**settings, **PTY_RELAXED}
    kwargs.setdefault("exclusive", True)
    return serial.serial_for_url(url, **settings, **kwargs)


def port_error_text(url: str, exc: BaseException) -> str:
    """What went wrong opening ``url``, in words: a port held by another program says so."""
    if getattr(exc, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in str(exc):
        return (f"{url} is in use by another program (another Vigil, or a terminal program?): "
                "close it, or choose another port")
    return f"cannot open {url}: {exc}"
