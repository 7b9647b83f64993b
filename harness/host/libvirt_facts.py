"""What libvirt said about a host, as a value the checks read: ``harness.libvirt.facts`` gathers it from a
live daemon, a snapshot records it (``.harness/libvirt.json``); this room imports nothing of libvirt."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class NodeDeviceView:
    """libvirt's view of one PCI node device, to compare with sysfs."""

    name: str
    driver: str | None
    iommu_group: int | None
    iommu_group_members: tuple[str, ...] = ()


@dataclass
class LibvirtFacts:
    uri: str
    reachable: bool
    error: str | None = None
    library_version: str | None = None
    hypervisor_version: str | None = None
    virt_type: str | None = None
    hostdev_supported: bool = False
    pci_backends: list[str] = field(default_factory=list)
    subsys_types: list[str] = field(default_factory=list)
    node_devices: dict[str, NodeDeviceView] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LibvirtFacts:
        data: dict[str, Any] = json.loads(text)
        views = {
            name: NodeDeviceView(
                view["name"], view["driver"], view["iommu_group"], tuple(view["iommu_group_members"])
            )
            for name, view in data.pop("node_devices", {}).items()
        }
        return cls(**data, node_devices=views)

    @classmethod
    def unreachable(cls, uri: str, error: str) -> LibvirtFacts:
        return cls(uri=uri, reachable=False, error=error)
