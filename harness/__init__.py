"""hostdev-harness: validate a Linux/KVM host for PCI device assignment through libvirt."""

from __future__ import annotations

__version__ = "0.1.0"
