"""libvirt's device events: its default event loop, run by one daemon thread, and a connection that records
``DEVICE_REMOVED`` / ``DEVICE_REMOVAL_FAILED`` for every domain, so a live detach can wait for its proof."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import libvirt

from harness.errors import HarnessEnvironmentError
from harness.libvirt.connection import open_connection


class DeviceEventsError(HarnessEnvironmentError):
    """libvirt's event machinery failed (no default event loop); the message says where."""


_event_loop_lock = threading.Lock()
_event_loop_started = False


def _ensure_event_loop() -> None:
    """libvirt's default event loop, run by one daemon thread; connections opened after this get events."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        if libvirt.virEventRegisterDefaultImpl() != 0:
            raise DeviceEventsError("libvirt's default event loop could not be registered")

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


@dataclass
class DeviceEvents:
    """A connection that records ``DEVICE_REMOVED`` / ``DEVICE_REMOVAL_FAILED`` for every domain."""

    connection: libvirt.virConnect
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (domain, alias, "removed"|"failed")
    _condition: threading.Condition = field(default_factory=threading.Condition)
    _callbacks: list[int] = field(default_factory=list)

    @classmethod
    def open(cls, uri: str) -> DeviceEvents:
        _ensure_event_loop()
        events = cls(open_connection(uri))
        for event_id, kind in (
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, "removed"),
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED, "failed"),
        ):
            events._callbacks.append(
                events.connection.domainEventRegisterAny(None, event_id, events._record, kind)
            )
        return events

    def _record(
        self, _connection: libvirt.virConnect, domain: libvirt.virDomain, alias: str, kind: str
    ) -> None:
        with self._condition:
            self.seen.append((domain.name(), alias, kind))
            self._condition.notify_all()

    def wait(self, domain: str, alias: str, timeout: float) -> str | None:
        """``removed`` or ``failed`` once libvirt said so for ``alias`` of ``domain``; None on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for name, seen_alias, kind in self.seen:
                    if (name, seen_alias) == (domain, alias):
                        return kind
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)

    def close(self) -> None:
        for callback in self._callbacks:
            with contextlib.suppress(libvirt.libvirtError):
                self.connection.domainEventDeregisterAny(callback)
        self.connection.close()


@contextlib.contextmanager
def open_device_events(uri: str) -> Iterator[DeviceEvents]:
    events = DeviceEvents.open(uri)
    try:
        yield events
    finally:
        events.close()
