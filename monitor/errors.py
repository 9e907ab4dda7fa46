"""Vigil's error hierarchy in one place (see :mod:`drivers.errors` for the root and the tree).

Import the classes from here; each is defined where its branch lives and re-exported here.
"""

from __future__ import annotations

from drivers.errors import ConfigError, DeviceError, VigilError
from monitor.export.errors import ExportError
from monitor.staff import PermissionDenied, PinPolicyError, RefusedAction
from monitor.store.records import NotFoundError, ReadOnlyError, StoreError

__all__ = ["VigilError", "DeviceError", "ConfigError", "RefusedAction", "PermissionDenied", "PinPolicyError", "StoreError",
           "ReadOnlyError", "NotFoundError", "ExportError"]
