"""The root of Vigil's error hierarchy, and its device branch.

Every error Vigil raises on purpose — a refused action, a device that cannot be reached, a store
that cannot be written, an export that cannot be made — is a :class:`VigilError`; each keeps the
built-in base its callers already catch (``ValueError`` for refused input, ``OSError`` for a link
that went away). The branches::

    VigilError
    ├── DeviceError        drivers: a device URL, protocol or link problem
    ├── ConfigError        settings, an alarm profile, a broker address or a chair set-up that
    │                      cannot be used (ValueError)
    ├── RefusedAction      monitor: a clinical or administrative rule refused an action (ValueError)
    ├── StoreError         monitor.store: the record cannot be read or written as asked
    └── ExportError        monitor.export: an export or import that cannot be done

It lives at the bottom layer (``drivers``) so that drivers, which never import ``monitor``, share
the root; ``monitor.errors`` gathers the whole tree.
"""

from __future__ import annotations

__all__ = ["VigilError", "DeviceError", "ConfigError"]


class VigilError(Exception):
    """Root of every error Vigil raises on purpose; its message is meant for the user."""


class DeviceError(VigilError):
    """A device problem: a URL or protocol that cannot be used, a link that cannot be opened or
    went away, a frame that cannot be built."""


class ConfigError(VigilError, ValueError):
    """A configuration that cannot be used: a settings or alarm-profile file, a broker address, a
    chair that cannot be set up as asked. The message says what is wrong and how to fix it."""
