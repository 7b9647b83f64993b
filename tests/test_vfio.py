"""The VFIO proof's ioctl numbers and its report of a refusal (the kernel's answers are proved in the lab)."""

from __future__ import annotations

import errno
from pathlib import Path

from harness.host import vfio


def test_ioctl_numbers_match_linux_vfio_h() -> None:
    # _IO(';', 100 + n) from <linux/vfio.h>
    assert vfio.VFIO_GET_API_VERSION == 0x3B64
    assert vfio.VFIO_SET_IOMMU == 0x3B66
    assert vfio.VFIO_GROUP_GET_STATUS == 0x3B67
    assert vfio.VFIO_GROUP_SET_CONTAINER == 0x3B68
    assert vfio.VFIO_GROUP_GET_DEVICE_FD == 0x3B6A
    assert vfio.VFIO_DEVICE_GET_INFO == 0x3B6B


def test_a_host_without_vfio_is_refused_at_the_first_step(tmp_path: Path) -> None:
    proof = vfio.prove_vfio("0000:01:00.0", 5, dev_root=str(tmp_path))
    assert not proof.works and proof.refused_at == "open container" and proof.errno == errno.ENOENT
    assert proof.explain().startswith("VFIO refused 0000:01:00.0 (group 5) at open container")


def test_the_interrupt_remapping_refusal_names_the_fix() -> None:
    proof = vfio.VfioProof(
        "0000:01:00.0", 5, ["open container"], "VFIO_SET_IOMMU", "Operation not permitted", errno.EPERM
    )
    assert proof.interrupt_remapping_refused
    assert "allow_unsafe_interrupts" in proof.explain() and "intremap=on" in proof.explain()
