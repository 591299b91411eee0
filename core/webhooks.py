"""Webhooks: which URLs a batch may name, and how a receiver knows a call came from its cluster.

A batch's `webhook` is POSTed the batch's JSON when the batch ends (scheduler/webhooks.py). The
cluster makes that request from inside the lab's network, so a webhook must not become a way to
reach into it: a URL whose host is, or resolves to, a loopback, link-local, private or otherwise
non-global address is refused (when the batch is submitted, and again before every delivery, to
the address actually connected to), unless the cluster's allowlist
(`TWEEZER_WEBHOOK_ALLOW`: networks such as `10.1.2.0/24`, or host names) permits it.

Every delivery is signed: `X-Tweezer-Signature: sha256=<hex>`, the HMAC-SHA256, keyed with the
cluster's webhook secret, of `<X-Tweezer-Timestamp>.<body>` (the timestamp in Unix seconds, a
dot, then the raw body bytes). A receiver recomputes it, compares in constant time, and refuses
old timestamps to stop replays (README, "Webhooks").
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import WebhookRefused

SIGNATURE_HEADER = "X-Tweezer-Signature"
TIMESTAMP_HEADER = "X-Tweezer-Timestamp"
#: The batch a delivery is about (deliveries are at least once: receivers dedupe on it).
BATCH_HEADER = "X-Tweezer-Batch"
MAX_URL_LENGTH = 2048
_HOST_NAME = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: host, port -> the addresses it resolves to (socket.getaddrinfo; tests pass their own).
Resolver = Callable[[str, int], list[str]]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Tweezer-Signature header's value for `body` sent at `timestamp` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: int, body: bytes, signature: str) -> bool:
    """What a receiver does (in Python): recompute and compare in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class Allowlist:
    """Networks and host names a webhook may reach although they are not public."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Allowlist:
        """`10.0.0.0/8, 127.0.0.1, hooks.lab.internal` (TWEEZER_WEBHOOK_ALLOW)."""
        networks: list[Network] = []
        hosts: set[str] = set()
        for entry in filter(None, (e.strip() for e in text.split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not _HOST_NAME.fullmatch(entry):
                    raise ValueError(f"not a network or a host name: {entry!r}") from None
                hosts.add(entry.lower())
        return cls(tuple(networks), frozenset(hosts))

    def permits(self, host: str, address: Address) -> bool:
        return host.lower() in self.hosts or any(address in n for n in self.networks)


@dataclass(frozen=True)
class Target:
    """Where a checked webhook URL is delivered: its host, port and the addresses it may use."""

    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) webhook URL; WebhookRefused naming what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookRefused(f"webhook: longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"webhook: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(f"webhook: {url!r} is not an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise WebhookRefused("webhook: credentials in the URL are not accepted")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


#: IPv6 prefixes that carry an IPv4 address in their last 32 bits: IPv4-compatible (::/96,
#: deprecated), IPv4-translated (::ffff:0:0:0/96, RFC 2765) and the well-known NAT64 prefix
#: (64:ff9b::/96, RFC 6052: where NAT64 runs, 64:ff9b::a9fe:a9fe *is* 169.254.169.254).
_EMBEDDING_96 = tuple(ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96"))
#: Never public: NAT64's local-use prefix (RFC 8215), whose IPv4 bits a site places as it
#: likes, and site-local addresses (deprecated, but still routed inside some networks).
_NEVER_PUBLIC = tuple(ipaddress.ip_network(n) for n in ("64:ff9b:1::/48", "fec0::/10"))


def _canonical(address: str) -> Address:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    return ip


def embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form reaches (IPv4-mapped, -compatible and
    -translated, NAT64, 6to4, Teredo's client), or None. `::` and `::1` embed nothing."""
    if not isinstance(ip, ipaddress.IPv6Address) or ip in (
        ipaddress.IPv6Address("::"),
        ipaddress.IPv6Address("::1"),
    ):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in network for network in _EMBEDDING_96):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _reachable_from_inside(ip: Address) -> bool:
    """Loopback, link-local, private, shared, reserved, multicast, unspecified, site-local,
    or an IPv6 form of such an IPv4 address: not public."""
    if any(ip in network for network in _NEVER_PUBLIC):
        return True
    inner = embedded_ipv4(ip)
    if inner is not None and _reachable_from_inside(inner):
        return True
    return not ip.is_global or ip.is_multicast


def check_addresses(host: str, addresses: Iterable[str], allow: Allowlist) -> tuple[str, ...]:
    """The addresses, if every one is public or allowed; else WebhookRefused saying which."""
    checked = []
    for address in addresses:
        ip = _canonical(address)
        inner = embedded_ipv4(ip)
        allowed = allow.permits(host, ip) or (inner is not None and allow.permits(host, inner))
        if _reachable_from_inside(ip) and not allowed:
            reaches = f" (which reaches {inner})" if inner is not None else ""
            raise WebhookRefused(
                f"webhook: {host} is {ip}{reaches}, a loopback, link-local or private address; "
                "the cluster's TWEEZER_WEBHOOK_ALLOW does not permit it",
                address=str(ip),
            )
        checked.append(str(ip))
    return tuple(checked)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


#: Resolutions at submission run here, so that a slow DNS server delays a request by at most
#: SUBMIT_RESOLVE_TIMEOUT_S.
_resolving = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tweezer-webhook-dns")
SUBMIT_RESOLVE_TIMEOUT_S = 2.0


def bounded(resolve: Resolver, timeout_s: float) -> Resolver:
    """`resolve` that gives up after `timeout_s` (FutureTimeout): getaddrinfo has no timeout
    of its own, and a DNS server that never answers must not hold a request or a delivery."""

    def resolve_within(host: str, port: int) -> list[str]:
        return _resolving.submit(resolve, host, port).result(timeout_s)

    return resolve_within


def check_at_submission(url: str, allow: Allowlist, resolve: Resolver = system_resolver) -> None:
    """Refuses (WebhookRefused, a 400) a URL that is malformed or that names or resolves to a
    non-public address: the check of a delivery (`target`), with DNS bounded to
    SUBMIT_RESOLVE_TIMEOUT_S. A host that does not resolve now is accepted: every delivery checks
    again, and records why it could not be made."""

    try:
        target(url, allow, bounded(resolve, SUBMIT_RESOLVE_TIMEOUT_S))
    except (OSError, FutureTimeout):  # not resolvable now (FutureTimeout: DNS too slow)
        return


def target(url: str, allow: Allowlist, resolve: Resolver = system_resolver) -> Target:
    """Where to deliver `url` now: resolved once, every address checked (the delivery connects
    to one of these, never resolving again: a name cannot be switched to an inside address
    between the check and the call). OSError when it does not resolve."""
    scheme, host, port = split_url(url)
    try:
        addresses = check_addresses(host, [host], allow)
    except ValueError:
        addresses = check_addresses(host, resolve(host, port), allow)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    return Target(scheme, host, port, addresses)
