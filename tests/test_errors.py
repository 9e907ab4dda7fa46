"""One error hierarchy (issue 10 §6): every error class Vigil defines below the UI is a VigilError
in one of its branches, and keeps the built-in base its callers catch."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import drivers
import monitor
from monitor.errors import ConfigError, DeviceError, ExportError, RefusedAction, StoreError, VigilError

#: Errors that are deliberately outside the tree: the command line's own exit-status carrier, and
#: private control-flow exceptions that never leave their module.
_OUTSIDE = {"monitor.cli.CliError", "monitor.export.archive._Bad"}
_SKIP_MODULES = ("monitor.qt",)  # Qt adapters: no error classes, and they load Qt


def _error_classes():
    for package in (drivers, monitor):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.startswith(_SKIP_MODULES):
                continue
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == info.name:
                    yield f"{info.name}.{name}", obj


def test_every_error_vigil_defines_is_a_vigil_error():
    classes = dict(_error_classes())
    assert len(classes) > 20
    strays = sorted(name for name, cls in classes.items() if name not in _OUTSIDE and not issubclass(cls, VigilError))
    assert strays == []


@pytest.mark.parametrize(("name", "branch", "builtin"), [
    ("drivers.transport.DeviceUrlError", DeviceError, ValueError),
    ("drivers.registry.UnknownProtocolError", DeviceError, ValueError),
    ("drivers.acquisition.LinkError", DeviceError, OSError),
    ("monitor.alarms.profile.ProfileError", ConfigError, ValueError),
    ("monitor.board.config.BrokerUrlError", ConfigError, ValueError),
    ("monitor.staff.PermissionDenied", RefusedAction, ValueError),
    ("monitor.store.records.NotFoundError", StoreError, LookupError),
    ("monitor.export.errors.ExportError", ExportError, Exception),
])
def test_each_branch_keeps_the_builtin_base_its_callers_catch(name, branch, builtin):
    module, _, cls_name = name.rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    assert issubclass(cls, branch) and issubclass(cls, builtin)
