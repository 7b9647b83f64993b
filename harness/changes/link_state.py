"""A netdev's link state as a change: ``ip link set dev X up|down``, undone by the old state (libvirt refuses
to configure the VFs of a PF that is down, so a test that sets VF MACs brings the PF up first)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from harness.changes.protocol import Change, ChangeContext, ChangeError
from harness.host.netdevs import link_is_up
from harness.host.root import HostRoot


@dataclass(frozen=True)
class LinkState(Change, kind="link_state"):
    """``ip link set dev X up|down``; undone by the old state."""

    netdev: str
    before: bool
    up: bool

    @classmethod
    def of(cls, root: HostRoot, netdev: str, *, up: bool) -> LinkState:
        return cls(netdev, link_is_up(root, netdev), up)

    def describe(self) -> str:
        return f"set link {self.netdev} {'up' if self.up else 'down'}"

    def reproduce(self) -> str:
        return f"ip link set dev {self.netdev} {'up' if self.up else 'down'}"

    def _set(self, up: bool) -> None:
        word = "up" if up else "down"
        done = subprocess.run(
            ["ip", "link", "set", "dev", self.netdev, word], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise ChangeError(
                f"`ip link set dev {self.netdev} {word}` exited {done.returncode}: {done.stderr.strip()}"
            )

    def apply(self, context: ChangeContext) -> None:
        self._set(self.up)

    def verify(self, context: ChangeContext) -> None:
        if link_is_up(context.root, self.netdev) != self.up:
            raise ChangeError(
                f"{self.netdev} is not {'up' if self.up else 'down'} after `{self.reproduce()}` "
                f"(ip link show {self.netdev})"
            )

    def undo(self, context: ChangeContext) -> str:
        if not context.root.exists(f"/sys/class/net/{self.netdev}"):
            return f"{self.netdev} is gone"
        if link_is_up(context.root, self.netdev) == self.before:
            return f"{self.netdev} is {'up' if self.before else 'down'} already"
        self._set(self.before)
        return f"set link {self.netdev} {'up' if self.before else 'down'} again"
