"""The preparation checks an administrator does by hand before assigning a PCI device to a guest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from harness.checks.result import CheckResult, Verdict
from harness.host.bootloader import BLS_ENTRIES, KERNEL_CMDLINE, BootPath
from harness.host.host import Host
from harness.host.limits import QEMU_CONF, UNLIMITED

VFIO_DEVICE_NODE = "/dev/vfio/vfio"
# A rough per-device cost in QEMU file descriptors: the group, the device, and eventfds per MSI-X vector.
FILES_PER_ASSIGNED_DEVICE = 32
FILES_BASELINE = 256
MIB = 1024 * 1024


@dataclass(frozen=True)
class CheckPlan:
    """What the run intends to do, which some checks size their verdicts against."""

    planned_devices: int = 1
    guest_memory_mib: int = 1024


CheckFunction = Callable[[Host, CheckPlan], CheckResult]
# Checks that ask libvirt: on a host without a running libvirtd they wait for a private one to start,
# so a command line runs them after the others have answered.
NEEDS_LIBVIRT: frozenset[str] = frozenset({"libvirt_ready"})


def run_check(name: str, host: Host, plan: CheckPlan | None = None) -> CheckResult:
    result = PREPARATION_CHECKS[name](host, plan or CheckPlan())
    vm = host.virtual_machine
    note = vm.note_for(name) if vm is not None else None
    return replace(result, evidence=[*result.evidence, note]) if note else result


def run_all(host: Host, plan: CheckPlan | None = None) -> list[CheckResult]:
    return [run_check(name, host, plan) for name in PREPARATION_CHECKS]


def _iommu_hint(vendor: str | None) -> str:
    if vendor == "amd":
        return (
            "AMD: the IOMMU is on by default; remove amd_iommu=off / iommu=off from the kernel command line"
        )
    return "add intel_iommu=on (optionally iommu=pt) to GRUB_CMDLINE_LINUX, regenerate grub.cfg and reboot"


def hardware_virtualization(host: Host, plan: CheckPlan) -> CheckResult:
    title = "Checking for hardware virtualization"
    flags = host.cpu_flags
    cpu = [flag for flag in ("vmx", "svm") if flag in flags]
    nested = "hypervisor" in flags
    evidence = [
        f"/proc/cpuinfo flags: {', '.join(cpu) or 'no vmx or svm'}"
        + ("; hypervisor (a virtual machine)" if nested else ""),
        f"KVM probe: {host.kvm.detail}",
    ]
    if host.kvm.usable and cpu:
        return CheckResult("hardware_virtualization", title, Verdict.PASS, "KVM runs guests", evidence)
    if host.kvm.usable:
        return CheckResult(
            "hardware_virtualization",
            title,
            Verdict.WARN,
            "KVM answers but the CPU shows no vmx/svm: a paravirtual or nested KVM",
            evidence,
            "a pagetable-based nested KVM can run a one-instruction guest yet hang a full kernel; "
            "boot a real guest before trusting it, or expose VT-x/AMD-V to this machine",
        )
    if nested:
        return CheckResult(
            "hardware_virtualization",
            title,
            Verdict.WARN,
            "no usable KVM in this virtual machine: guests run under TCG emulation",
            evidence,
            "device assignment works under TCG, slowly; for KVM give this VM nested virtualization "
            "(kvm_intel nested=1 on its host and a CPU model with vmx/svm)",
        )
    return CheckResult(
        "hardware_virtualization",
        title,
        Verdict.FAIL,
        "KVM is not usable on this host",
        evidence,
        "enable Intel VT-x / AMD-V in the firmware setup, then load kvm_intel or kvm_amd (modprobe)",
    )


def iommu_firmware(host: Host, plan: CheckPlan) -> CheckResult:
    title = "Checking for an IOMMU in firmware (ACPI DMAR / IVRS)"
    kernel = host.kernel
    units = kernel.iommu_units
    evidence = [
        f"/sys/firmware/acpi/tables: {', '.join(kernel.acpi_tables) or 'empty'}",
        f"/sys/class/iommu: {', '.join(f'{u.name} ({u.vendor})' for u in units) or 'empty'}",
    ]
    if kernel.has_dmar:
        return CheckResult(
            "iommu_firmware", title, Verdict.PASS, "Intel VT-d: ACPI DMAR table present", evidence
        )
    if kernel.has_ivrs:
        return CheckResult("iommu_firmware", title, Verdict.PASS, "AMD-Vi: ACPI IVRS table present", evidence)
    if units:
        vendor = kernel.firmware_iommu_vendor or "unknown"
        return CheckResult(
            "iommu_firmware",
            title,
            Verdict.PASS,
            f"IOMMU units registered by the kernel ({vendor})",
            evidence,
        )
    return CheckResult(
        "iommu_firmware",
        title,
        Verdict.FAIL,
        "no IOMMU: the firmware offers neither a DMAR (Intel VT-d) nor an IVRS (AMD-Vi) table",
        evidence,
        "enable VT-d (Intel) or AMD-Vi / IOMMU (AMD) in the firmware setup; on a virtual machine give it an "
        "emulated IOMMU (QEMU: -machine q35 -device intel-iommu,intremap=on; libvirt: <iommu model='intel'>)",
    )


def iommu_kernel(host: Host, plan: CheckPlan) -> CheckResult:
    title = "Checking that the kernel has the IOMMU active"
    kernel = host.kernel
    args = kernel.cmdline
    vendor = kernel.firmware_iommu_vendor
    relevant = [f"{k}={v}" if v else k for k, v in args.items() if "iommu" in k or k == "intremap"]
    evidence = [
        f"/sys/kernel/iommu_groups: {kernel.iommu_group_count} groups",
        f"/proc/cmdline IOMMU arguments: {' '.join(relevant) or 'none'}",
    ]
    evidence += [
        f"kernel log: {line}" for line in kernel.log_lines(r"DMAR: IOMMU (enabled|disabled)|AMD-Vi:")[:3]
    ]
    notes = []
    if args.get("iommu") == "pt":
        notes.append("iommu=pt: host-owned devices bypass translation for speed (less isolation of host DMA)")
    if vendor == "intel" and "intel_iommu" not in args and kernel.iommu_group_count:
        notes.append(
            "intel_iommu= is not given: this kernel enables VT-d by default (CONFIG_INTEL_IOMMU_DEFAULT_ON)"
        )
    if args.get("amd_iommu") == "on":
        notes.append(
            "amd_iommu=on is not a real switch: the AMD IOMMU is on by default (only amd_iommu=off disables it)"
        )
    evidence += notes
    if kernel.iommu_group_count:
        return CheckResult(
            "iommu_kernel", title, Verdict.PASS, f"{kernel.iommu_group_count} IOMMU groups", evidence
        )
    if args.get("intel_iommu") == "off" or args.get("amd_iommu") == "off" or args.get("iommu") == "off":
        switch = next(f"{k}=off" for k in ("intel_iommu", "amd_iommu", "iommu") if args.get(k) == "off")
        return CheckResult(
            "iommu_kernel",
            title,
            Verdict.FAIL,
            f"the IOMMU is disabled on the kernel command line ({switch})",
            evidence,
            f"remove {switch} from the kernel command line; " + _iommu_hint(vendor),
        )
    if vendor is None:
        return CheckResult(
            "iommu_kernel",
            title,
            Verdict.FAIL,
            "no IOMMU groups: there is no IOMMU for the kernel to enable",
            evidence,
            "first make the firmware offer an IOMMU (see iommu_firmware)",
        )
    return CheckResult(
        "iommu_kernel",
        title,
        Verdict.FAIL,
        "the firmware has an IOMMU but the kernel made no IOMMU groups",
        evidence,
        _iommu_hint(vendor),
    )


def _kernel_true(value: str | None) -> bool:
    """How the kernel reads a bool parameter (param_set_bool, kstrtobool): y, Y, 1 or on in any case, and
    a bare name without a value; None (not given) is false."""
    if value is None:
        return False
    return value == "" or value[:1] in ("y", "Y", "1") or value.lower().startswith("on")


def _unsafe_interrupts_sources(host: Host) -> list[str]:
    kernel = host.kernel
    sources = []
    value = kernel.module_parameter("vfio_iommu_type1", "allow_unsafe_interrupts")
    if value in ("Y", "1"):  # sysfs shows a bool parameter as Y or N
        sources.append(f"/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts = {value}")
    argument = kernel.cmdline.get("vfio_iommu_type1.allow_unsafe_interrupts")
    if _kernel_true(argument):
        shown = f"={argument}" if argument else ""
        sources.append(f"/proc/cmdline: vfio_iommu_type1.allow_unsafe_interrupts{shown}")
    for path, line in kernel.modprobe_options("vfio_iommu_type1"):
        # modprobe hands each name=value to the same parser; the last one given wins.
        given = [word.partition("=") for word in line.split()[2:]]
        values = [value for name, _, value in given if name == "allow_unsafe_interrupts"]
        if values and _kernel_true(values[-1]):
            sources.append(f"{path}: {line}")
    return sources


def _intremap_off(arguments: list[str]) -> int | None:
    """The index of the argument (intremap=, nointremap) that leaves interrupt remapping off, else None.

    Read as drivers/iommu/irq_remapping.c reads them: in order, nointremap turns it off, and each
    intremap='s comma-separated options are matched by prefix, the last "on" or "off" winning
    (intremap=nosid,off is off; intremap=off intremap=nosid stays off).
    """
    deciding, off = None, False
    for index, argument in enumerate(arguments):
        key, _, value = argument.partition("=")
        if argument == "nointremap":
            deciding, off = index, True
        if key != "intremap":
            continue
        for option in value.split(","):
            if option.startswith(("on", "off")):
                deciding, off = index, option.startswith("off")
    return deciding if off else None


def interrupt_remapping(host: Host, plan: CheckPlan) -> CheckResult:
    title = "Checking for interrupt remapping"
    kernel = host.kernel
    units = kernel.iommu_units
    evidence = [
        f"{u.name}: ecap {u.ecap:#x}, interrupt remapping bit {'set' if u.interrupt_remapping else 'clear'}"
        for u in units
        if u.ecap is not None
    ]
    log = kernel.log_lines(
        r"IRQ remapping|Interrupt remapping|DMAR-IR|AMD-Vi: Interrupt|No interrupt remapping"
        r"|AMD-Vi: Disabling interrupt remapping|not in IVRS table"
    )
    evidence += [f"kernel log: {line}" for line in log[:3]]
    unsafe = _unsafe_interrupts_sources(host)
    evidence += [f"unsafe interrupts allowed by {source}" for source in unsafe]
    arguments = kernel.cmdline_text.partition(" -- ")[0].split()  # after " -- " the arguments are init's
    switched_off = _intremap_off(arguments)
    disabled_by_cmdline = switched_off is not None
    enabled_in_log = any(
        ("Enabled IRQ remapping" in entry or "Interrupt remapping enabled" in entry) for entry in log
    )
    intel_capable = bool(units) and all(u.interrupt_remapping for u in units if u.ecap is not None)
    available = not disabled_by_cmdline and (enabled_in_log or (intel_capable and any(u.ecap for u in units)))
    if not units and not kernel.has_dmar and not kernel.has_ivrs:
        return CheckResult(
            "interrupt_remapping",
            title,
            Verdict.FAIL,
            "no IOMMU, so no interrupt remapping",
            evidence,
            "interrupt remapping comes with the IOMMU: enable VT-d / AMD-Vi first (see iommu_firmware)",
        )
    if not units and not kernel.iommu_group_count:
        return CheckResult(
            "interrupt_remapping",
            title,
            Verdict.FAIL,
            "the kernel does not use the IOMMU, so no interrupt remapping",
            evidence,
            "interrupt remapping comes with the IOMMU: make the kernel use it first (see iommu_kernel)",
        )
    unsafe_hint = (
        "allow_unsafe_interrupts leaves the host open to interrupt injection from a malicious guest; "
        "remove it (/etc/modprobe.d, kernel command line) once interrupt remapping works"
    )
    if available and unsafe:
        return CheckResult(
            "interrupt_remapping",
            title,
            Verdict.WARN,
            "interrupt remapping works, yet unsafe interrupts are allowed as well",
            evidence,
            unsafe_hint,
        )
    if available:
        return CheckResult(
            "interrupt_remapping", title, Verdict.PASS, "interrupt remapping is enabled", evidence
        )
    switch = arguments[switched_off] if switched_off is not None else ""
    why = f"disabled by {switch}" if disabled_by_cmdline else "not supported by the IOMMU or not enabled"
    if unsafe:
        return CheckResult(
            "interrupt_remapping",
            title,
            Verdict.WARN,
            f"interrupt remapping is {why}; device assignment only works because unsafe interrupts are allowed",
            evidence,
            unsafe_hint + "; the harness never changes this setting",
        )
    return CheckResult(
        "interrupt_remapping",
        title,
        Verdict.FAIL,
        f"interrupt remapping is {why}: vfio_iommu_type1 refuses to attach IOMMU groups (EPERM)",
        evidence,
        (
            f"remove {switch} from the kernel command line"
            if disabled_by_cmdline
            else "enable interrupt remapping (x2APIC) in the firmware setup; on QEMU use "
            + (
                "amd-iommu,intremap=on"
                if kernel.firmware_iommu_vendor == "amd"
                else "intel-iommu,intremap=on"
            )
        )
        + ". Only for trusted guests: options vfio_iommu_type1 allow_unsafe_interrupts=1 in /etc/modprobe.d "
        "(a security risk; the harness never sets it)",
    )


def _blacklisted(host: Host, module: str) -> str | None:
    kernel = host.kernel
    if module in kernel.blacklisted_modules:
        return f"/proc/cmdline module_blacklist={kernel.cmdline.get('module_blacklist')}"
    for path, words, line in kernel.modprobe_lines():
        if len(words) < 2 or words[1].replace("-", "_") != module:
            continue
        # "install MODULE /bin/false" is the other common way to keep a module from loading.
        if words[0] == "blacklist" or (
            words[0] == "install" and any(w.endswith(("/false", "/true")) for w in words[2:])
        ):
            return f"{path}: {line}"
    return None


def vfio_ready(host: Host, plan: CheckPlan) -> CheckResult:
    title = "Checking that vfio is ready"
    kernel = host.kernel
    states = {module: kernel.module_state(module) for module in ("vfio", "vfio_pci", "vfio_iommu_type1")}
    node = host.root.exists(VFIO_DEVICE_NODE)
    evidence = [f"{module}: {state}" for module, state in states.items()]
    evidence.append(f"{VFIO_DEVICE_NODE}: {'present' if node else 'missing'}")
    blocked = {module: source for module in states if (source := _blacklisted(host, module))}
    evidence += [f"{module} blacklisted by {source}" for module, source in blocked.items()]
    if blocked:
        names = ", ".join(blocked)
        return CheckResult(
            "vfio_ready",
            title,
            Verdict.FAIL,
            f"{names} {'is' if len(blocked) == 1 else 'are'} blacklisted: nothing can bind to vfio-pci",
            evidence,
            f"remove the blacklist ({'; '.join(blocked.values())}) and load the module: modprobe vfio-pci",
        )
    missing = [m for m, s in states.items() if s == "missing"]
    if missing:
        return CheckResult(
            "vfio_ready",
            title,
            Verdict.FAIL,
            f"{', '.join(missing)}: not in this kernel (neither loaded, built in, nor in /lib/modules/{kernel.release})",
            evidence,
            "use a kernel with CONFIG_VFIO, CONFIG_VFIO_PCI and CONFIG_VFIO_IOMMU_TYPE1 (as modules or built in)",
        )
    unloadable = [m for m, s in states.items() if s == "available" and kernel.modules_disabled]
    if unloadable:
        return CheckResult(
            "vfio_ready",
            title,
            Verdict.FAIL,
            f"{', '.join(unloadable)} cannot be loaded: module loading is disabled (nomodule)",
            evidence,
            "remove nomodule from the kernel command line, or build vfio into the kernel",
        )
    if not node:
        return CheckResult(
            "vfio_ready",
            title,
            Verdict.WARN,
            f"vfio is available but {VFIO_DEVICE_NODE} does not exist yet",
            evidence,
            "load it now to find problems early: modprobe vfio-pci (libvirt loads it at the first detach)",
        )
    return CheckResult(
        "vfio_ready", title, Verdict.PASS, "vfio modules ready and /dev/vfio/vfio present", evidence
    )


def libvirt_ready(host: Host, plan: CheckPlan) -> CheckResult:
    title = "Checking that libvirt offers VFIO hostdev"
    facts = host.libvirt
    if not facts.reachable:
        return CheckResult(
            "libvirt_ready",
            title,
            Verdict.FAIL,
            f"libvirt is not reachable at {facts.uri}",
            [facts.error or f"no answer from {facts.uri}"],
            "start libvirtd (systemctl start libvirtd, or virtqemud on modular daemons) or pass --harness-uri",
        )
    evidence = [
        f"{facts.uri}: libvirt {facts.library_version}, hypervisor {facts.hypervisor_version}",
        f"domain capabilities ({facts.virt_type}): hostdev supported={'yes' if facts.hostdev_supported else 'no'}, "
        f"subsysType {', '.join(facts.subsys_types) or 'none'}, pciBackend {', '.join(facts.pci_backends) or 'none'}",
    ]
    if facts.error:
        evidence.append(facts.error)
    if facts.hostdev_supported and "pci" in facts.subsys_types and "vfio" in facts.pci_backends:
        return CheckResult(
            "libvirt_ready", title, Verdict.PASS, "hostdev with the vfio backend is offered", evidence
        )
    return CheckResult(
        "libvirt_ready",
        title,
        Verdict.FAIL,
        "libvirt offers no VFIO backend for PCI hostdevs",
        evidence,
        "libvirt offers vfio only with a populated /sys/kernel/iommu_groups and /dev/vfio/vfio: fix iommu_kernel "
        "and vfio_ready, then restart libvirtd (it caches capabilities); reproduce: virsh domcapabilities",
    )


def next_boot(host: Host, plan: CheckPlan) -> CheckResult:
    title = "Checking the boot loader configuration for the next boot"
    loader = host.bootloader
    vendor = host.kernel.firmware_iommu_vendor
    regenerate = loader.regenerate_command()
    evidence = [f"boot path: {loader.path}" + (f" on {loader.distribution}" if loader.distribution else "")]
    if loader.next_boot is not None:
        evidence.append(
            f"next boot ({loader.next_boot.where}): {' '.join(loader.next_boot.arguments) or '(none)'}"
        )
    evidence += [
        f"written by the next regeneration ({s.where}): {' '.join(s.arguments) or '(none)'}"
        for s in loader.sources
    ]
    evidence += loader.unevaluated
    if loader.misspellings:
        first = loader.misspellings[0]
        return CheckResult(
            "next_boot",
            title,
            Verdict.FAIL,
            f"{first.origin} sets {first.key}, which grub never reads",
            evidence,
            f"rename {first.key} to {first.suggestion} in {first.origin.path} (line {first.origin.line}), then run {regenerate}",
        )
    if not loader.is_configured:
        return CheckResult(
            "next_boot",
            title,
            Verdict.WARN,
            "no boot loader configuration on this host",
            [
                *evidence,
                f"looked for /etc/default/grub, grub.cfg, {BLS_ENTRIES}, systemd-boot's loader.conf, {KERNEL_CMDLINE}",
            ],
            "the kernel command line comes from elsewhere (direct kernel boot, PXE, the hypervisor): "
            "make the IOMMU arguments persistent there",
        )
    # The boot loader reads the generated configuration; the sources only matter once it is regenerated.
    effective = loader.next_boot or next(iter(loader.sources), None)
    lines = [line for line in (effective, *loader.sources) if line is not None]
    for line in lines:
        state = line.iommu_state()
        off = [(key, word) for key, (value, word) in state.items() if value == "off"]
        intremap = _intremap_off(line.arguments)
        if intremap is not None:
            off.append(("intremap", line.words[intremap]))
        if not off:
            continue
        key, word = off[0]
        source = loader.source_of(word)
        when = (
            "the next boot"
            if line is effective
            else f"the next {regenerate.split()[0]} (a kernel update runs it)"
        )
        switch = "interrupt remapping" if key == "intremap" else "the IOMMU"
        fix = loader.remove_command(word.text) if loader.path is BootPath.GRUB_BLS else regenerate
        in_source = any(w.origin == source for s in loader.sources for w in s.words)
        return CheckResult(
            "next_boot",
            title,
            Verdict.FAIL if line is effective else Verdict.WARN,
            f"{when} disables {switch}: {word.text} written in {source} (the last {key}= wins)",
            evidence,
            # a generated file (grub.cfg, a BLS entry) is never edited by hand: regenerating it is the fix
            f"remove {word.text} from {source.path} (line {source.line}), then run {fix}"
            if in_source or loader.path is not BootPath.GRUB_DEBIAN
            else f"{word.text} is only in the generated {source.path}, not in its sources: run {fix}",
        )
    # Debian's kernel turns VT-d on by default too, but only intel_iommu=on says so on every kernel.
    wanted = ["intel_iommu=on"] if vendor == "intel" else []
    missing = [arg for arg in wanted if effective is None or not effective.switched_on(arg)]
    if missing:
        arguments = " ".join([*missing, "iommu=pt"])
        undone = loader.undone(missing[0])
        if undone is not None:
            earlier, later = undone
            evidence.append(
                f"{earlier.key} had {missing[0]} in {earlier.origin}, but {later.origin} sets it again without it"
            )
        has_it = [s for s in loader.sources if all(s.switched_on(arg) for arg in missing)]
        if has_it and effective is not None and effective is not has_it[0]:
            hint = f"{has_it[0].where} has it but {effective.where} was not regenerated: run {loader.add_command(arguments)}"
        else:
            hint = f"append {arguments} to {loader.where_to_edit()}, then run {loader.add_command(arguments)}"
        return CheckResult(
            "next_boot",
            title,
            # missing from sources an unevaluated statement may change is unknown, not a FAIL
            Verdict.WARN
            if host.kernel.iommu_group_count or (loader.next_boot is None and loader.cmdline_unknown)
            else Verdict.FAIL,
            f"{' '.join(missing)} is not on the next boot's command line ({effective.where if effective else 'none found'})",
            evidence,
            hint,
        )
    dropped = [s for s in loader.sources if s is not effective and not all(s.switched_on(a) for a in wanted)]
    if dropped:
        return CheckResult(
            "next_boot",
            title,
            Verdict.WARN,
            f"the next boot keeps the IOMMU, but the next {regenerate.split()[0]} drops {' '.join(wanted)} "
            f"({dropped[0].where})",
            evidence,
            f"append {' '.join(wanted)} to {loader.where_to_edit()} so that kernel updates keep it",
        )
    if loader.cmdline_unknown:
        # A statement the reader does not evaluate may change the command line: never a PASS from a guess.
        unknown = loader.cmdline_unknown[0]
        what = "the next boot" if loader.next_boot is None else f"the next {regenerate.split()[0]}"
        return CheckResult(
            "next_boot",
            title,
            Verdict.WARN,
            f"what {what} writes is unknown: {unknown.split(': ', 1)[0]} is not evaluated",
            evidence,
            f"check that {unknown.split(': ', 1)[0]} keeps {' '.join(wanted) or 'the IOMMU arguments'}, "
            "or write the arguments as plain assignments the harness can read",
        )
    return CheckResult("next_boot", title, Verdict.PASS, "the next boot keeps the IOMMU arguments", evidence)


def _shown(value: int) -> str:
    return "unlimited" if value == UNLIMITED else str(value)


def _libvirt_kind(uri: str | None) -> str:
    """system, session or remote: whose daemon starts QEMU, and so whose limits QEMU gets."""
    if not uri:
        return "unknown"
    scheme, _, rest = uri.partition("://")
    if rest.partition("/")[0] not in ("", "localhost") or scheme.partition("+")[2] not in ("", "unix"):
        return "remote"
    path = rest.partition("/")[2].partition("?")[0].rstrip("/")
    return path if path in ("system", "session") else "unknown"


def limits(host: Host, plan: CheckPlan) -> CheckResult:
    title = "Checking open-file and locked-memory limits"
    current = host.limits
    uri = host.backend.libvirt_uri
    kind = _libvirt_kind(uri)
    files_needed = FILES_BASELINE + FILES_PER_ASSIGNED_DEVICE * plan.planned_devices
    memlock_needed = (plan.guest_memory_mib + 1024) * MIB  # libvirt's own rule: guest memory + 1 GiB
    daemon = current.daemon(system=kind == "system") if kind in ("system", "session") else None
    unread: list[str] = []  # what could not be read, for a WARN that names it
    evidence = [
        f"libvirt: {uri or 'URI not recorded'} ({kind}); "
        + (
            f"QEMU is started by {daemon.name} (pid {daemon.pid}, uid {daemon.uid})"
            if daemon is not None
            else "no daemon of it found in /proc"
            + ("" if current.captured_daemons else " (this snapshot did not capture the daemons' limits)")
        )
    ]
    # Open files: libvirt sets max_files on QEMU; without it QEMU inherits the daemon's limit.
    files_limit: int | None = None
    conf_files = current.qemu_conf_max_files if kind == "system" else None
    if conf_files is not None and conf_files > 0:
        files_limit, files_source = (
            conf_files,
            f"max_files = {conf_files} in {QEMU_CONF} (libvirt sets it on QEMU)",
        )
    elif daemon is not None and (nofile := daemon.get("nofile")) is not None:
        files_limit, files_source = nofile.soft, f"{daemon.where} Max open files, which QEMU inherits"
    elif kind == "session" and current.captured_daemons and (nofile := current.own.get("nofile")) is not None:
        files_limit = nofile.soft
        files_source = (
            f"{current.own.where}: a session daemon is started by its first client and inherits its limits"
        )
    elif kind == "system" and current.captured_daemons and (unit := current.unit_nofile()) is not None:
        files_limit = unit[1].soft
        files_source = (
            f"LimitNOFILE of {unit[0].unit} in {unit[0].where} (not running now: systemd starts it with this)"
        )
    else:
        files_source = (
            "no max_files in qemu.conf, no libvirt daemon or unit found"
            if current.captured_daemons
            else "no max_files in qemu.conf; this snapshot did not capture the daemons' limits"
        )
        unread.append("the open-file limit QEMU will get")
    evidence.append(
        (
            f"open files: {_shown(files_limit)} from {files_source}"
            if files_limit is not None
            else f"open files: not read ({files_source})"
        )
        + f"; about {files_needed} needed for {plan.planned_devices} assigned device(s)"
    )
    # Locked memory: a privileged daemon raises QEMU's RLIMIT_MEMLOCK itself; a session one cannot.
    memlock_short = False
    if kind == "system":  # served by a root daemon (Limits.daemon finds only those for it)
        evidence.append(
            f"locked memory: libvirt sets RLIMIT_MEMLOCK of each QEMU with a VFIO device to guest memory + 1 GiB "
            f"({memlock_needed} bytes for a {plan.guest_memory_mib} MiB guest); the system daemon runs as root, "
            "so its own limit does not bound it"
        )
    else:
        owner = daemon if daemon is not None else (current.own if kind == "session" else None)
        memlock = owner.get("memlock") if owner is not None and current.captured_daemons else None
        if owner is None or memlock is None:
            unread.append("the locked-memory limit QEMU will get")
            evidence.append(
                f"locked memory: not read; {memlock_needed} bytes needed for a {plan.guest_memory_mib} MiB guest"
            )
        else:
            memlock_short = not memlock.at_least(memlock_needed)
            evidence.append(
                f"locked memory: {_shown(memlock.soft)} bytes (hard {_shown(memlock.hard)}) from {owner.where}; "
                f"{memlock_needed} needed for a {plan.guest_memory_mib} MiB guest; QEMU gets this limit "
                "(an unprivileged daemon does not raise it)"
            )
    for key in ("max_processes", "max_core"):
        if key in current.qemu_conf and kind == "system":
            evidence.append(f"{key} = {current.qemu_conf[key]} in {QEMU_CONF} (libvirt sets it on QEMU)")
    if current.system_file_max is not None:
        evidence.append(f"/proc/sys/fs/file-max: {current.system_file_max}")
    if files_limit is not None and files_limit != UNLIMITED and files_limit < files_needed:
        return CheckResult(
            "limits",
            title,
            Verdict.FAIL,
            f"QEMU may open only {files_limit} files; {plan.planned_devices} device(s) need about {files_needed}",
            evidence,
            f"raise max_files in {QEMU_CONF} (or LimitNOFILE for libvirtd/virtqemud, nofile in "
            "/etc/security/limits.conf) and restart the daemon",
        )
    if current.system_file_max is not None and current.system_file_max < files_needed:
        return CheckResult(
            "limits",
            title,
            Verdict.FAIL,
            "the system-wide open-file limit is too small",
            evidence,
            "raise fs.file-max with sysctl (/etc/sysctl.d)",
        )
    if memlock_short:
        return CheckResult(
            "limits",
            title,
            Verdict.WARN,
            f"locked memory of the {kind} libvirt daemon is below guest memory + 1 GiB, and it cannot raise it",
            evidence,
            "raise memlock for this user in /etc/security/limits.conf (then log in again), or use qemu:///system, "
            "whose daemon raises it for each guest",
        )
    if unread:
        return CheckResult(
            "limits",
            title,
            Verdict.WARN,
            "not read: " + "; ".join(unread),
            evidence,
            "run the check on the host itself with its libvirt daemon running (virsh -c "
            f"{(uri or 'qemu:///system').partition('?')[0]} version starts it), or take a new snapshot "
            "with this version",
        )
    return CheckResult("limits", title, Verdict.PASS, "limits cover the planned devices", evidence)


# The checks in report order. A plain table, not decorators: mutmut (make mutation) skips decorated functions.
PREPARATION_CHECKS: dict[str, CheckFunction] = {
    "hardware_virtualization": hardware_virtualization,
    "iommu_firmware": iommu_firmware,
    "iommu_kernel": iommu_kernel,
    "interrupt_remapping": interrupt_remapping,
    "vfio_ready": vfio_ready,
    "libvirt_ready": libvirt_ready,
    "next_boot": next_boot,
    "limits": limits,
}
