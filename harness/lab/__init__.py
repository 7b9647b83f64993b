"""The built-in nested host: a QEMU machine with an emulated IOMMU and SR-IOV devices.

Python API (see README.md beside this file)::

    from harness.lab import booted_lab

    with booted_lab("fixtures/labs/default.toml") as lab:
        rc, output = lab.exec("cat /proc/cmdline")
        lab.libvirt_uri      # qemu+tcp://127.0.0.1:PORT/system
        lab.allowed_bdfs     # what HARNESS_ALLOW holds inside L1
        lab.devices          # LabDevice records with guest BDFs and roles
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.lab.devices import LabDevice
    from harness.lab.lab import Lab, booted_lab, list_labs, start_lab, stop_lab
    from harness.lab.spec import LabSpec, SpecError, load_spec
    from harness.lab.state import LabError

# Imported on first use: the plugin (in L1 too, under TCG) needs only harness.guest, and the
# whole lab costs it seconds there.
_EXPORTED_FROM = {
    "Lab": "harness.lab.lab",
    "LabError": "harness.lab.state",
    "booted_lab": "harness.lab.lab",
    "list_labs": "harness.lab.lab",
    "start_lab": "harness.lab.lab",
    "stop_lab": "harness.lab.lab",
    "LabDevice": "harness.lab.devices",
    "LabSpec": "harness.lab.spec",
    "SpecError": "harness.lab.spec",
    "load_spec": "harness.lab.spec",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTED_FROM.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Lab",
    "LabDevice",
    "LabError",
    "LabSpec",
    "SpecError",
    "booted_lab",
    "list_labs",
    "load_spec",
    "start_lab",
    "stop_lab",
]
