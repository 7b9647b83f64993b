"""The one way to open a host, above both ``harness.host`` and ``harness.libvirt``: a snapshot directory or
this machine, with the live host's libvirt facts gathered lazily through ``harness.libvirt``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from harness.host.backends import LiveBackend, SnapshotBackend
from harness.host.host import Host
from harness.host.libvirt_facts import LibvirtFacts
from harness.libvirt.connection import DEFAULT_URI, LibvirtUnavailableError, open_connection
from harness.libvirt.daemon import private_libvirtd_for
from harness.libvirt.facts import gather_libvirt_facts
from harness.progress import Progress
from harness.xml.address import PciAddress


def open_host(
    snapshot: str | Path | None = None,
    uri: str = DEFAULT_URI,
    refuse: tuple[PciAddress, ...] = (),
    *,
    libvirt_facts: Callable[[], LibvirtFacts] | None = None,
) -> Host:
    """A snapshot directory when given, else this machine at ``uri``.

    ``libvirt_facts`` lets a caller that already holds a libvirt connection (the pytest plugin) share it;
    without it the live host connects when a check first asks, starting a private libvirtd if needed.
    """
    if snapshot:
        return Host(SnapshotBackend(snapshot), refuse=refuse)
    resources = ExitStack()
    provider = libvirt_facts or (lambda: _ask_libvirt(uri, resources))
    return Host(LiveBackend(uri, provider, resources.close), refuse=refuse)


def _ask_libvirt(uri: str, resources: ExitStack) -> LibvirtFacts:
    """libvirt's facts at ``uri``, through a private libvirtd (kept in ``resources``) if none answers."""
    announce = f"starting a private libvirtd because none answers at {uri}"
    daemon = resources.enter_context(private_libvirtd_for(uri, lambda: Progress(announce)))
    uri = daemon.uri if daemon else uri
    try:
        connection = open_connection(uri)
    except LibvirtUnavailableError as exc:
        return LibvirtFacts.unreachable(uri, str(exc))
    resources.callback(connection.close)
    # A daemon's first domain-capabilities answer probes QEMU: seconds on a fresh private libvirtd.
    with Progress(f"asking libvirt at {uri} for its capabilities and node devices"):
        return gather_libvirt_facts(connection)
