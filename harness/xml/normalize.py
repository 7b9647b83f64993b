"""Every way libvirt 9 changes a document it was given, in one place, each with the reason.

``expected_*`` take what the harness sent and what libvirt returned, and give the model that
libvirt's answer must equal; any other difference is a real loss of meaning and fails a test.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal, TypeVar

from harness.xml.domain import Device, Domain
from harness.xml.hostdev import PciHostdev, Rom
from harness.xml.interface import HostdevInterface, NetworkInterface
from harness.xml.network import Forward, Network
from harness.xml.nodedev import NodeDevice, NonPciNodeDevice, PciId, pci_class_number

__all__ = [
    "LIBVIRT_DEFECTS",
    "LIBVIRT_DEVICE_ORDER",
    "NORMALIZATIONS",
    "Normalization",
    "expected_domain",
    "expected_network",
    "expected_nodedev",
]

# libvirt's own prefix for MACs it makes up (virDomainNetGenerateMAC with the QEMU OUI).
_GENERATED_MAC = re.compile(r"^52:54:00(:[0-9a-f]{2}){3}\Z")


_D = TypeVar("_D", NodeDevice, NonPciNodeDevice)


@dataclass(frozen=True)
class Normalization:
    key: str
    document: Literal["domain", "network", "nodedev", "all"]
    reason: str


NORMALIZATIONS: tuple[Normalization, ...] = (
    Normalization(
        "pci-hex",
        "all",
        "libvirt stores PCI address parts as numbers and always formats them as hex "
        "(domain 0x%04x, bus/slot 0x%02x, function 0x%x): decimal input such as the RHEL "
        "guide's slot='25' comes back as slot='0x19'. Models compare numbers, not notation.",
    ),
    Normalization(
        "uuid-generated",
        "all",
        "a domain or network defined without <uuid> gets a random one; lowercase on output.",
    ),
    Normalization(
        "mac-generated",
        "domain",
        "an interface without <mac> gets 52:54:00:xx:xx:xx (QEMU's OUI); every MAC is formatted lowercase.",
    ),
    Normalization(
        "hostdev-managed-no",
        "domain",
        "<hostdev> without managed= is unmanaged and libvirt writes managed='no'; "
        "<interface type='hostdev'> is the other way round: only managed='yes' is written back, "
        "managed='no' comes back absent.",
    ),
    Normalization(
        "device-order",
        "domain",
        "libvirt keeps one list per device kind and formats interfaces before hostdevs; "
        "order within a kind is kept.",
    ),
    Normalization(
        "domain-defaults",
        "domain",
        "libvirt adds <currentMemory>, <vcpu placement='static'>1</vcpu>, <clock>, "
        "<on_poweroff>/<on_reboot>/<on_crash>, memory unit='KiB', and <boot dev='hd'/> "
        "when no device has a boot order; the models do not carry these.",
    ),
    Normalization(
        "arch-default",
        "domain",
        "<os><type> without arch= gets the driver's default (i686 in the test driver, the "
        "host's arch with qemu).",
    ),
    Normalization(
        "interface-target",
        "domain",
        "the test driver gives each interface a <target dev='testnetN'/>; runtime naming, "
        "not configuration, so the models ignore it.",
    ),
    Normalization(
        "xml-escaping",
        "all",
        "libvirt escapes ' and \" in text and attributes as &apos; and &quot;; the "
        "parsed value is unchanged.",
    ),
    Normalization(
        "network-connections",
        "network",
        "connections= is run-time state (guests using the network) that only net-dumpxml "
        "of a running network reports; net-define ignores it.",
    ),
    Normalization(
        "network-pf-and-list",
        "network",
        "when <forward> names a <pf> and also lists VF addresses (net-dumpxml of a "
        "started pool), libvirt's parser keeps the explicit VF list and drops the pf.",
    ),
    Normalization(
        "forward-managed-explicit",
        "network",
        "for mode='hostdev' libvirt always writes managed='yes' or managed='no'; an absent "
        "attribute means no.",
    ),
    Normalization(
        "rom-empty",
        "domain",
        "<rom/> with neither bar= nor file= says nothing and libvirt drops it.",
    ),
    Normalization(
        "vf-maxcount-zero",
        "nodedev",
        "libvirt writes maxCount= on <capability type='virt_functions'> only when it is not zero; "
        "maxCount='0' comes back absent.",
    ),
    Normalization(
        "nodedev-hex-ids",
        "nodedev",
        "libvirt reads <product id=>, <vendor id=> and <class> in base 16 and writes them as "
        "0x%04x and 0x%06x, lowercase: id='0x0FFE' or 'ffe' comes back as '0x0ffe'; a negative or "
        "empty <class> means no class and comes back absent.",
    ),
    Normalization(
        "nodedev-driver",
        "nodedev",
        "the bound driver is read from sysfs on a real host; the test driver's nodedev "
        "parser does not keep <driver>, so it comes back absent.",
    ),
)

# Not normalizations: places where libvirt 9 loses or breaks data. Strategies avoid them and
# suites/test_xml_roundtrip.py proves each one is still there (a fixed libvirt fails those tests).
LIBVIRT_DEFECTS: dict[str, str] = {
    "virtualport-unescaped": (
        "virNetDevVPortProfileFormat writes profileid (and the 802.1Qbg parameters) with printf, "
        "not with the escaping formatter: a profileid holding & < or ' makes XMLDesc return "
        "malformed XML."
    ),
    "pci-domain-32bit": (
        "libvirt takes a PCI domain up to 0xffffffff (uint32 in basictypes.rng); Linux and the "
        "models stop at 0xffff, so 0x10000..0xffffffff is refused by the models only."
    ),
}

# virDomainDeviceDef order as virDomainDefFormat writes it (domain_conf.c): nets, then hostdevs.
LIBVIRT_DEVICE_ORDER: dict[type, int] = {HostdevInterface: 0, NetworkInterface: 0, PciHostdev: 1}


def _expected_device(sent: Device, returned: Device | None) -> Device:
    if isinstance(sent, PciHostdev):
        rom = None if sent.rom == Rom() else sent.rom  # rom-empty
        return dataclasses.replace(sent, managed=bool(sent.managed), rom=rom)  # hostdev-managed-no
    mac = sent.mac.lower() if sent.mac is not None else None
    if mac is None and returned is not None and type(returned) is type(sent):
        # mac-generated: take libvirt's only if it looks like libvirt made it
        candidate = returned.mac
        mac = candidate if candidate is not None and _GENERATED_MAC.match(candidate) else None
    if isinstance(sent, HostdevInterface):
        return dataclasses.replace(
            sent, mac=mac, managed=True if sent.managed else None
        )  # hostdev-managed-no
    return dataclasses.replace(sent, mac=mac)


def expected_domain(sent: Domain, returned: Domain) -> Domain:
    devices = sorted(sent.devices, key=lambda device: LIBVIRT_DEVICE_ORDER[type(device)])  # device-order
    padded: list[Device | None] = [*returned.devices, *([None] * len(devices))]
    return dataclasses.replace(
        sent,
        uuid=sent.uuid.lower() if sent.uuid else returned.uuid,  # uuid-generated
        arch=sent.arch if sent.arch is not None else returned.arch,  # arch-default
        devices=tuple(_expected_device(d, r) for d, r in zip(devices, padded, strict=False)),
    )


def expected_network(sent: Network, returned: Network) -> Network:
    forward = sent.forward
    if forward is not None:
        pf = None if forward.addresses else forward.pf  # network-pf-and-list
        managed = (
            bool(forward.managed) if forward.mode == "hostdev" else forward.managed
        )  # forward-managed-explicit
        forward = Forward(mode=forward.mode, managed=managed, pf=pf, addresses=forward.addresses)
    return dataclasses.replace(
        sent,
        uuid=sent.uuid.lower() if sent.uuid else returned.uuid,  # uuid-generated
        connections=None,  # network-connections
        forward=forward,
    )


def _formatted_id(pci_id: PciId) -> PciId:
    return dataclasses.replace(pci_id, id=f"0x{pci_id.number:04x}")  # nodedev-hex-ids


def expected_nodedev(sent: _D) -> _D:
    if isinstance(sent, NonPciNodeDevice):
        return dataclasses.replace(sent, driver=None)  # nodedev-driver
    capability = sent.capability
    functions = capability.virt_functions
    if functions is not None and functions.max_count == 0:
        functions = dataclasses.replace(functions, max_count=None)  # vf-maxcount-zero
    klass = None if capability.pci_class is None else pci_class_number(capability.pci_class)
    capability = dataclasses.replace(
        capability,
        virt_functions=functions,
        product=_formatted_id(capability.product),
        vendor=_formatted_id(capability.vendor),
        pci_class=None if klass is None else f"0x{klass:06x}",  # nodedev-hex-ids
    )
    return dataclasses.replace(sent, driver=None, capability=capability)  # nodedev-driver
