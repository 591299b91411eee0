"""Test hosts on one machine: Linux network namespaces on a bridge, with addresses of our own
(`tweezer chaos`'s worker hosts and link cuts, tests/test_multihost.py, and `make bench`'s
remote-worker figure). Needs root."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

#: A subnet of our own for the test hosts (nothing else routes there); other sets of hosts
#: that may exist at the same time (a soak beside the tests) take another one (free_net()).
NET = "10.231.77"
HOST_NUMBERS = {"a": 1, "b": 2, "c": 3, "client": 254}
ADDRESS = {host: f"{NET}.{n}" for host, n in HOST_NUMBERS.items()}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Hosts:
    """Namespaces tz<tag>-a/-b/-c on a bridge in tz<tag>-sw; this process is the client."""

    tag: str
    #: The first three octets of the hosts' addresses.
    net: str = NET
    names: dict[str, str] = field(default_factory=dict)

    def address(self, host: str) -> str:
        return f"{self.net}.{HOST_NUMBERS[host]}"

    def create(self) -> Hosts:
        switch = f"tz{self.tag}-sw"
        ip("netns", "add", switch)
        self.names["sw"] = switch
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        for host in ("a", "b", "c"):
            name = f"tz{self.tag}-{host}"
            ip("netns", "add", name)
            self.names[host] = name
            self._cable(f"tz{self.tag}{host}", host, name)
            ip("-n", name, "link", "set", "lo", "up")
        self._cable(f"tz{self.tag}cl", "client", None)
        return self

    def _cable(self, end: str, host: str, namespace: str | None) -> None:
        """A veth pair from the host (or this namespace) to the bridge, with its address."""
        switch = self.names["sw"]
        ip("link", "add", end, "type", "veth", "peer", "name", end + "s")
        ip("link", "set", end + "s", "netns", switch)
        ip("-n", switch, "link", "set", end + "s", "master", "br0", "up")
        where = ["-n", namespace] if namespace else []
        if namespace:
            ip("link", "set", end, "netns", namespace)
        ip(*where, "addr", "add", f"{self.address(host)}/24", "dev", end)
        ip(*where, "link", "set", end, "up")

    def link(self, host: str, state: str) -> None:
        ip("-n", self.names[host], "link", "set", f"tz{self.tag}{host}", state)

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        """`argv` run on `host` (`ip netns exec` execs it: the same process, its pid ours)."""
        return ["ip", "netns", "exec", self.names[host], *argv]

    def run(
        self, host: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> subprocess.Popen:
        with log.open("ab") as out:
            return subprocess.Popen(
                self.exec_argv(host, argv),
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def destroy(self) -> None:
        for name in self.names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", f"tz{self.tag}cl"], capture_output=True)


def free_net() -> str:
    """A 10.231.N subnet no interface of this namespace has an address in (N from 78 up)."""
    shown = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for n in range(78, 255):
        if f" 10.231.{n}." not in shown:
            return f"10.231.{n}"
    raise OSError("no free 10.231.N subnet for test hosts")


def can_make_namespaces() -> str:
    """Why namespaces cannot be made here ('' when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"tzprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return "" if made.returncode == 0 else f"cannot create network namespaces: {made.stderr}"
