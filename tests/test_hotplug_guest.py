"""The answering guest without a lab: its image, its console reports, its XML, and how a detach is judged."""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import cast

import libvirt
import pytest
from lxml import etree

from harness.changes.guests import TransientGuest
from harness.changes.hotplug import DetachOutcome, HotpluggedDevice, hostdev_xml
from harness.changes.journal import ChangeJournal, Owner
from harness.changes.protocol import ChangeContext, decode
from harness.changes.unplug_report import host_unplug_report
from harness.guest.image import GuestImage, GuestImageError
from harness.guest.machine import AnsweringGuest, answering_guest_machine
from harness.guest.protocol import PCI_REPORT_MARKER, GuestConsole, guest_init_text, parse_reports
from harness.host.kernel import SNAPSHOT_DMESG
from harness.host.root import HostRoot
from harness.lab.guest_build import ensure_guest_image
from harness.lab.kernel import KernelImage
from harness.xml.address import PciAddress
from harness.xml.domain import Domain
from harness.xml.guest import EmulatedNic, GuestMachine, PciController, q35_root_ports
from harness.xml.hostdev import PciHostdev
from harness.xml.interface import HostdevInterface

REPORTS = f"""SeaBIOS (version 1.16.2)
{PCI_REPORT_MARKER} 1 114.83 0000:00:00.0=8086:29c0 0000:00:01.0=1b36:000c
[  120.1] pcieport 0000:00:01.0: pciehp: Slot(0): Attention button pressed
{PCI_REPORT_MARKER} 2 121.50 0000:00:00.0=8086:29c0 0000:00:01.0=1b36:000c 0000:01:00.0=8086:10d3
{PCI_REPORT_MARKER} 3 12"""  # the last line is still being written


def test_reports_are_parsed_and_a_torn_line_is_skipped() -> None:
    reports = parse_reports(REPORTS)
    assert [r.seq for r in reports] == [1, 2]
    assert reports[0].uptime_s == pytest.approx(114.83)
    assert reports[1].bdfs_with_id("8086:10d3") == ["0000:01:00.0"]
    assert reports[0].bdfs_with_id("8086:10d3") == []
    assert str(reports[0]) == "0000:00:00.0=8086:29c0 0000:00:01.0=1b36:000c"


def test_console_waits_for_the_report_that_satisfies_it(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_text(REPORTS.rsplit("\n", 2)[0] + "\n")
    console = GuestConsole(log)

    def guest_sees_the_nic_later() -> None:
        time.sleep(0.3)
        log.write_text(REPORTS)

    threading.Thread(target=guest_sees_the_nic_later).start()
    report = console.wait_for(lambda r: bool(r.bdfs_with_id("8086:10d3")), timeout=60, interval=0.05)
    assert report is not None and report.seq == 2
    assert console.wait_for(lambda r: r.seq > 5, timeout=0.2, interval=0.05) is None
    assert "Attention button" in console.tail()


def test_missing_console_reads_as_no_report(tmp_path: Path) -> None:
    console = GuestConsole(tmp_path / "absent.log")
    assert console.latest() is None and "empty" in console.tail()


@pytest.mark.parametrize(
    ("outcome", "proved", "held", "says"),
    [
        (DetachOutcome("removed", False, [], 3.0), True, False, "not proved"),
        (DetachOutcome(None, True, ["0000:01:00.0"], 10.0), False, True, "did not acknowledge"),
        (
            DetachOutcome("removed", False, ["0000:01:00.0"], 3.0),
            False,
            False,
            "guest still sees it at: 0000:01",
        ),
        (DetachOutcome("failed", True, [], 3.0), False, False, "event: failed"),
    ],
)
def test_detach_is_proved_only_when_every_witness_agrees(
    outcome: DetachOutcome, proved: bool, held: bool, says: str
) -> None:
    assert (outcome.proved, outcome.held_by_guest) == (proved, held)
    if not proved:
        assert says in outcome.explain(PciAddress.from_bdf("0000:02:00.0"), "g")


def test_hostdev_xml_carries_a_user_alias() -> None:
    xml = hostdev_xml(PciAddress.from_bdf("0000:02:00.0"), managed=False, alias="ua-x")
    assert '<alias name="ua-x"/>' in xml and 'managed="no"' in xml
    assert Domain.parse(
        f"<domain><name>g</name><memory>1</memory><os><type>hvm</type></os><devices>{xml}</devices></domain>"
    ).devices == (PciHostdev(source=PciAddress.from_bdf("0000:02:00.0"), managed=False),)
    with pytest.raises(ValueError, match="ua-"):
        hostdev_xml(PciAddress.from_bdf("0000:02:00.0"), managed=True, alias="x")


def _fake_kernel(tmp_path: Path) -> KernelImage:
    root = tmp_path / "kernel"
    (root / "boot").mkdir(parents=True)
    payload = b"\x7fELF" + b"\0" * 60
    (root / "boot" / "vmlinuz-6.1.0-1-amd64").write_bytes(
        b"MZ setup code" + lzma.compress(payload, lzma.FORMAT_XZ)
    )
    return KernelImage("linux-image-6.1.0-1-amd64", "6.1.0-1-amd64", root)


def test_guest_image_is_built_once_with_the_uncompressed_kernel(tmp_path: Path) -> None:
    kernel = _fake_kernel(tmp_path)
    directory = ensure_guest_image(kernel, tmp_path / "cache")
    image = GuestImage.load(directory)
    assert image.kernel.read_bytes().startswith(b"\x7fELF")
    assert "console=ttyS0" in image.cmdline and "quiet" in image.cmdline
    listing = subprocess.run(
        ["cpio", "-t", "--quiet"], input=image.initramfs.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    assert {"init", "bin/busybox", "bin/sh"} <= set(listing.split())
    mtime = image.initramfs.stat().st_mtime_ns
    assert ensure_guest_image(kernel, tmp_path / "cache") == directory
    assert image.initramfs.stat().st_mtime_ns == mtime, "a cached image was rebuilt"


def test_guest_image_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(GuestImageError, match=r"image\.json"):
        GuestImage.load(tmp_path)
    (tmp_path / "image.json").write_text(json.dumps({"kernel": "/nope", "initramfs": "/nope", "cmdline": ""}))
    with pytest.raises(GuestImageError, match="/nope"):
        GuestImage.load(tmp_path)
    root = tmp_path / "k" / "boot"
    root.mkdir(parents=True)
    (root / "vmlinuz-r").write_bytes(b"not a kernel")
    with pytest.raises(GuestImageError, match="no xz payload"):
        ensure_guest_image(KernelImage("p", "r", tmp_path / "k"), tmp_path / "cache")


def test_init_reports_with_shell_builtins_only() -> None:
    text = guest_init_text()
    assert PCI_REPORT_MARKER in text and "/sys/bus/pci/devices/*" in text
    # Forks are slow under TCG inside TCG: the loop reads files with `read`, not cat.
    assert "cat " not in text


def test_answering_guest_xml_boots_the_image_with_free_root_ports(tmp_path: Path) -> None:
    image = GuestImage(tmp_path / "vmlinux", tmp_path / "initramfs.cpio", "console=ttyS0 quiet")
    machine = answering_guest_machine(image, "hostdev-harness-hotplug-x", "qemu", free_root_ports=3)
    parsed = GuestMachine.parse(machine.to_xml())
    assert parsed == machine
    assert [c.model for c in parsed.controllers] == ["pcie-root"] + ["pcie-root-port"] * 3
    assert parsed.serial is not None and parsed.serial.path.endswith("hostdev-harness-hotplug-x.serial.log")
    assert "<acpi/>" in machine.to_xml()


def test_guest_machine_is_accepted_by_libvirts_parser(tmp_path: Path) -> None:
    """libvirt's test driver runs the real domain parser: the models' XML must pass it."""
    connection = libvirt.open("test:///default")
    nics = (
        EmulatedNic("e1000", PciAddress(0, 0, 0x10, 0, multifunction=True)),
        EmulatedNic("e1000", PciAddress(0, 0, 0x10, 1)),
    )
    machine = GuestMachine(
        Domain(name="topology", memory_kib=131072, virt_type="qemu"), machine="pc", nics=nics
    )
    domain = connection.defineXML(machine.to_xml())
    try:
        parsed = GuestMachine.parse(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        assert [n.guest_address for n in parsed.nics] == [n.guest_address for n in nics]
        assert parsed.nics[0].guest_address is not None and parsed.nics[0].guest_address.multifunction
    finally:
        domain.undefine()
        connection.close()


def test_controllers_are_checked() -> None:
    assert q35_root_ports(0) == (PciController(0, "pcie-root"),)
    with pytest.raises(ValueError, match="model"):
        PciController(1, "pcie-root-porch")


def test_boot_time_is_when_the_first_report_was_written(tmp_path: Path) -> None:
    """The boot overlaps other tests: the time the guest answered, not the time somebody looked."""
    image = GuestImage(tmp_path / "vmlinux", tmp_path / "initramfs.cpio", "")
    machine = answering_guest_machine(image, "g", "qemu")
    log = tmp_path / "serial.log"
    log.write_text(REPORTS.rsplit("\n", 3)[0] + "\n")
    started = time.time() - 100
    os.utime(log, (started + 42, started + 42))
    guest = AnsweringGuest(cast(libvirt.virDomain, None), machine, GuestConsole(log), started)
    assert guest.wait_booted(timeout=1).seq == 1
    assert guest.boot_s == 42.0


# --- the hotplug change and the host-side unplug report, against libvirt's test driver -------------
def _test_driver_context(root: Path) -> ChangeContext:
    connection = libvirt.open("test:///default")  # a running domain "test" with no hostdevs
    return ChangeContext(HostRoot(str(root)), lambda: connection)


def _fake_device(root: Path, bdf: str, driver: str | None) -> None:
    device = root / "sys/bus/pci/devices" / bdf
    device.mkdir(parents=True)
    (device / "vendor").write_text("0x8086\n")
    (device / "device").write_text("0x10ca\n")
    if driver:
        (root / "sys/bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
        (device / "driver").symlink_to(root / "sys/bus/pci/drivers" / driver)


def test_hotplug_change_is_journaled_and_decoded_back(tmp_path: Path) -> None:
    _fake_device(tmp_path, "0000:03:10.0", None)
    source = PciAddress.from_bdf("0000:03:10.0")
    change = HotpluggedDevice.interface(
        HostRoot(str(tmp_path)), "g1", source, mac="52:54:00:aa:bb:cc", console=tmp_path / "serial.log"
    )
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    journal.record(change.kind, change.to_record(), Owner.this_process())
    (entry,) = journal.pending()
    assert entry.kind == "hotplug" and decode(entry) == change
    assert change.pci_id == "8086:10ca" and change.driver is None and change.managed
    assert change.element == "interface type='hostdev'"
    interface = HostdevInterface.from_element(etree.fromstring(change.xml))
    assert (interface.source, interface.mac) == (source, "52:54:00:aa:bb:cc")
    assert change.alias in change.xml and "--live" in change.reproduce()


def test_hotplug_undo_is_a_no_op_when_the_guest_or_the_device_is_gone(tmp_path: Path) -> None:
    context = _test_driver_context(tmp_path)
    source = PciAddress.from_bdf("0000:03:10.0")
    gone = HotpluggedDevice.hostdev(HostRoot(str(tmp_path)), "no-such-guest", source, managed=True)
    assert "is not running" in gone.undo(context)
    absent = HotpluggedDevice.hostdev(HostRoot(str(tmp_path)), "test", source, managed=True)
    assert "nothing to detach" in absent.undo(context)


def test_host_unplug_report_names_each_party(tmp_path: Path) -> None:
    context = _test_driver_context(tmp_path)
    source = PciAddress.from_bdf("0000:03:10.0")
    dmesg = tmp_path / SNAPSHOT_DMESG.lstrip("/")
    dmesg.parent.mkdir(parents=True)
    dmesg.write_text(
        "pcieport 0000:00:02.0: pciehp: Slot(0): Attention button pressed\n"
        "vfio-pci 0000:03:10.0: Relaying device request to user (#0)\n"
    )
    journal = ChangeJournal(tmp_path / "journal.jsonl")
    guest = TransientGuest("test", "<domain/>")
    journal.record(guest.kind, guest.to_record(), Owner.this_process())
    report = host_unplug_report(context, journal, source, "test")
    assert report.guest_state.startswith("running") and report.in_live_xml is False
    assert report.removed_from_host and not report.still_assigned and report.host_driver is None
    assert report.kernel_messages == ("vfio-pci 0000:03:10.0: Relaying device request to user (#0)",)
    assert len(report.pending) == 1 and "start transient guest test" in report.pending[0]
    text = report.explain()
    assert "gone from sysfs" in text and "not listed" in text and "Relaying device request" in text
    assert json.loads(json.dumps(report.to_dict()))["guest"] == "test"
    assert host_unplug_report(context, journal, source, "no-such-guest").guest_state == "gone"
    assert not report.removal_waits_for_user  # gone from sysfs: the removal completed
    _fake_device(tmp_path, source.bdf, None)  # still there, its driver link gone: vfio-pci's remove waits
    waiting = host_unplug_report(context, journal, source, "test")
    assert waiting.removal_waits_for_user and "has not completed" in waiting.explain()
