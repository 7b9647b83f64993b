"""Is KVM usable? Run one real guest instruction through /dev/kvm instead of trusting that it exists.

Nested and pagetable-based KVMs expose /dev/kvm without being able to run a guest, so the probe
builds a VM with one vCPU in real mode, runs ``hlt`` and expects KVM_EXIT_HLT. It runs in a child
process with a timeout because a broken KVM can hang in KVM_RUN.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import mmap
import os
import subprocess
import sys
from dataclasses import asdict, dataclass

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_RUN = 0xAE80
KVM_GET_SREGS = 0x8138AE83
KVM_SET_SREGS = 0x4138AE84
KVM_SET_REGS = 0x4090AE82
KVM_EXIT_HLT = 5
KVM_API_VERSION = 12
GUEST_CODE_ADDRESS = 0x1000
HLT = b"\xf4"


@dataclass(frozen=True)
class KvmProbe:
    usable: bool
    detail: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class _MemoryRegion(ctypes.Structure):
    _fields_ = [
        ("slot", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("guest_phys_addr", ctypes.c_uint64),
        ("memory_size", ctypes.c_uint64),
        ("userspace_addr", ctypes.c_uint64),
    ]


def _run_hlt_guest(device: str) -> KvmProbe:
    kvm = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    try:
        version = fcntl.ioctl(kvm, KVM_GET_API_VERSION)
        if version != KVM_API_VERSION:
            return KvmProbe(False, f"{device}: KVM API version {version}, expected {KVM_API_VERSION}")
        vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
        memory = mmap.mmap(-1, 0x2000, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        memory[GUEST_CODE_ADDRESS : GUEST_CODE_ADDRESS + 1] = HLT
        address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
        region = _MemoryRegion(0, 0, 0, 0x2000, address)
        fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region)
        vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
        run_size = fcntl.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0)
        run = mmap.mmap(vcpu, run_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        sregs = bytearray(0x138)
        fcntl.ioctl(vcpu, KVM_GET_SREGS, sregs)
        sregs[0:8] = (0).to_bytes(8, "little")  # cs.base
        sregs[12:14] = (0).to_bytes(2, "little")  # cs.selector
        fcntl.ioctl(vcpu, KVM_SET_SREGS, bytes(sregs))
        regs = bytearray(0x90)
        regs[128:136] = GUEST_CODE_ADDRESS.to_bytes(8, "little")  # rip
        regs[136:144] = (0x2).to_bytes(8, "little")  # rflags: bit 1 is always set
        fcntl.ioctl(vcpu, KVM_SET_REGS, bytes(regs))
        fcntl.ioctl(vcpu, KVM_RUN, 0)
        exit_reason = int.from_bytes(run[8:12], "little")
        if exit_reason != KVM_EXIT_HLT:
            return KvmProbe(False, f"guest 'hlt' exited with KVM exit reason {exit_reason}, expected HLT (5)")
        return KvmProbe(True, f"{device}: created a VM and ran a guest instruction (exit reason HLT)")
    finally:
        os.close(kvm)


def probe_kvm(device: str = "/dev/kvm", timeout: float = 10.0) -> KvmProbe:
    if not os.path.exists(device):
        return KvmProbe(False, f"{device} does not exist")
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "harness.host.kvm", device],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return KvmProbe(False, f"{device}: a one-instruction guest did not finish within {timeout:.0f}s")
    try:
        return KvmProbe(**json.loads(completed.stdout))
    except (ValueError, TypeError):
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
        return KvmProbe(False, f"{device}: probe failed: {tail[0]}")


def _main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "/dev/kvm"
    try:
        result = _run_hlt_guest(device)
    except OSError as exc:
        result = KvmProbe(False, f"{device}: {exc.strerror or exc} (errno {exc.errno})")
    print(result.to_json())


if __name__ == "__main__":
    _main()
