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

from harness.lab.lab import Lab, LabError, booted_lab, list_labs, start_lab, stop_lab
from harness.lab.qemu import LabDevice
from harness.lab.spec import LabSpec, SpecError, load_spec

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
