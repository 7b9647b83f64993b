"""The changes wing: every change the harness makes to a host, as objects that apply, verify and undo
themselves (:mod:`harness.changes.protocol`), journaled first (``journal``), guarded (``guard``) and leased
by IOMMU group (``leases``).

One module per kind; a new kind is one module here and one line below, so that a journal record of any kind
decodes back into the object that undoes it.
"""

from harness.changes import driver_detach, guests, hotplug, link_state, networks, sriov

__all__ = ["driver_detach", "guests", "hotplug", "link_state", "networks", "sriov"]
