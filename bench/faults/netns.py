"""A second "host" on this machine: a network namespace joined to the host by a veth pair.

The host side of the pair is 10.200.N.1, the namespace side 10.200.N.2 (N picked free); no other address
is ever touched. Services the namespace must reach listen on the host-side address, and every process
uses that address. `cut()` makes both ends send their frames to a hardware address nobody has (a
permanent neighbour entry on each side), so every packet between the namespace and the host is dropped
silently, in both directions, as with a pulled cable: TCP connections hang and retransmit, no error comes
back. `restore()` deletes those entries (ARP finds the real peers again). Nothing but iproute2 is needed.
The links stay up during the cut: setting the host side down would drop the host's own route to
10.200.N.1, cutting every process on the host too.
"""

from __future__ import annotations

import os
import subprocess

PREFIX = "cadre-bench-"
NOBODY_MAC = "02:00:00:00:00:01"  # locally administered, on no interface: frames sent to it are dropped


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def remove_leftovers() -> list[str]:
    """Delete namespaces (and their veth) that an earlier, now dead, benchmark process created and left."""
    removed = []
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        owner = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and owner.isdigit() and not _alive(int(owner)):
            ip("netns", "del", name, check=False)
            ip("link", "del", f"cbh{owner}", check=False)
            removed.append(name)
    return removed


class Namespace:
    """The namespace `cadre-bench-<pid>` with veth `cbh<pid>` (host) / `cbn<pid>` (namespace)."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.name, self.host_if, self.ns_if = f"{PREFIX}{pid}", f"cbh{pid}", f"cbn{pid}"
        self.subnet = self._free_subnet()
        self.host_address, self.ns_address = f"10.200.{self.subnet}.1", f"10.200.{self.subnet}.2"
        self.is_cut = False

    @staticmethod
    def _free_subnet() -> int:
        used = ip("-4", "-o", "addr", "show").stdout
        return next(n for n in range(1, 255) if f" 10.200.{n}." not in used)

    def create(self) -> Namespace:
        remove_leftovers()
        try:
            ip("netns", "add", self.name)
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            ip("link", "set", self.ns_if, "netns", self.name)
            ip("addr", "add", f"{self.host_address}/24", "dev", self.host_if)
            ip("link", "set", self.host_if, "up")
            self.exec("ip", "addr", "add", f"{self.ns_address}/24", "dev", self.ns_if)
            self.exec("ip", "link", "set", self.ns_if, "up")
            self.exec("ip", "link", "set", "lo", "up")
        except subprocess.CalledProcessError as exc:
            self.close()
            raise RuntimeError(f"could not create namespace {self.name}: {exc.stderr.strip()}") from None
        return self

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def exec(self, *argv: str, check: bool = True) -> None:
        subprocess.run(self.command(list(argv)), check=check, capture_output=True, text=True)

    def cut(self) -> None:
        """Drop every packet between the namespace and the host, silently, both ways."""
        self.is_cut = True
        nobody = ("lladdr", NOBODY_MAC, "nud", "permanent")
        ip("neigh", "replace", self.ns_address, *nobody, "dev", self.host_if)
        self.exec("ip", "neigh", "replace", self.host_address, *nobody, "dev", self.ns_if)

    def restore(self) -> None:
        """Let packets through again (safe to call when not cut)."""
        if self.is_cut:
            ip("neigh", "del", self.ns_address, "dev", self.host_if, check=False)
            self.exec("ip", "neigh", "del", self.host_address, "dev", self.ns_if, check=False)
            self.is_cut = False

    def close(self) -> None:
        """Delete the namespace and both ends of the veth pair (safe to call more than once)."""
        ip("netns", "del", self.name, check=False)
        ip("link", "del", self.host_if, check=False)
