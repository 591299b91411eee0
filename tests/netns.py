"""Test hosts on one machine: Linux network namespaces on a bridge, with addresses of our own
(tests/test_multihost.py, and `make bench`'s remote-worker figure). Needs root."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parent.parent

#: A subnet of our own for the test hosts (nothing else routes there).
NET = "10.231.77"
ADDRESS = {"a": f"{NET}.1", "b": f"{NET}.2", "c": f"{NET}.3", "client": f"{NET}.254"}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Hosts:
    """Namespaces tz<tag>-a/-b/-c on a bridge in tz<tag>-sw; this process is the client."""

    tag: str
    names: dict[str, str] = field(default_factory=dict)

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
        ip(*where, "addr", "add", f"{ADDRESS[host]}/24", "dev", end)
        ip(*where, "link", "set", end, "up")

    def link(self, host: str, state: str) -> None:
        ip("-n", self.names[host], "link", "set", f"tz{self.tag}{host}", state)

    def run(self, host: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        with log.open("ab") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.names[host], *argv],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def destroy(self) -> None:
        for name in self.names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", f"tz{self.tag}cl"], capture_output=True)


def can_make_namespaces() -> str:
    """Why namespaces cannot be made here ('' when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"tzprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return "" if made.returncode == 0 else f"cannot create network namespaces: {made.stderr}"
