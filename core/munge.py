"""MUNGE credentials: the Slurm cluster's own authentication, which qrmi's on-premises client
(`pasqal-local`) sends in the `x-munge-cred` header of every request (issue #27). The host's
`munged`, which shares the cluster's key, decodes a credential and says who made it (uid, gid),
on which host (its IPv4 address), when, and for how long it stays valid.

Decoded through libmunge (Debian's `libmunge2`) with ctypes: a call costs a round trip to the
local munged (`bench`-free figure on this machine: ~0.1 ms, against ~2 ms to run `unmunge`).

MUNGE refuses to decode one credential twice ("replayed"), but qrmi builds one credential per
client and sends it with every request. The rule (`CredentialBook`): a credential decoded once
is remembered (in Redis, so that every API process knows it) until it expires, with the
identity and the address munged found in it; a replay is accepted only while it is valid and
only from that address, the host that made it. An HTTP server cannot see the client's process,
so the host is the narrowest origin it can check; a credential copied to another host, or kept
past its time-to-live, is refused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import ipaddress
import json
from dataclasses import asdict, dataclass

import redis

from core.errors import ConfigurationError, Unauthorized
from core.keys import Keys

# munge.h (munge 0.5.15): the options read back after a decode, and the error numbers met.
_OPT_TTL = 4
_OPT_ADDR4 = 5
_OPT_ENCODE_TIME = 6
_OPT_SOCKET = 8
_SUCCESS = 0
_CRED_EXPIRED = 15
_CRED_REPLAYED = 17

#: A credential of an empty payload is ~130 characters; anything near this is not one.
MAX_CREDENTIAL_CHARS = 4096


@dataclass(frozen=True)
class Identity:
    """Who made a credential, where, and until when (Unix seconds) it is valid."""

    uid: int
    gid: int
    #: The IPv4 address of the host that encoded it, as munged recorded it.
    address: str
    expires_s: int


class Munge:
    """Decodes credentials through the munged listening on `socket` (None: the host's
    default, /run/munge/munge.socket.2). Thread-safe: each decode has its own context."""

    def __init__(self, socket: str | None = None) -> None:
        name = ctypes.util.find_library("munge") or "libmunge.so.2"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            raise ConfigurationError(
                "MUNGE authentication needs libmunge (Debian: apt-get install libmunge2 munge)"
            ) from None
        lib.munge_ctx_create.restype = ctypes.c_void_p
        lib.munge_ctx_destroy.argtypes = [ctypes.c_void_p]
        lib.munge_decode.argtypes = [
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_uint),
        ]
        lib.munge_strerror.argtypes = [ctypes.c_int]
        lib.munge_strerror.restype = ctypes.c_char_p
        self._lib = lib
        self._free = ctypes.CDLL(None).free
        self._free.argtypes = [ctypes.c_void_p]
        self.socket = socket

    def decode(self, credential: str) -> tuple[Identity | None, int, str]:
        """(the identity, munge's error number, its message): the identity is None unless the
        credential is valid (0) or valid but seen before (replayed)."""
        lib = self._lib
        # A pointer: passed as one to the variadic munge_ctx_set/get, which declare no types.
        ctx = ctypes.c_void_p(lib.munge_ctx_create())
        if not ctx.value:
            raise MemoryError("munge_ctx_create")
        try:
            if self.socket is not None:
                lib.munge_ctx_set(ctx, _OPT_SOCKET, ctypes.c_char_p(self.socket.encode()))
            payload, length = ctypes.c_void_p(), ctypes.c_int()
            uid, gid = ctypes.c_uint(), ctypes.c_uint()
            error = lib.munge_decode(
                credential.encode("ascii"),
                ctx,
                ctypes.byref(payload),
                ctypes.byref(length),
                ctypes.byref(uid),
                ctypes.byref(gid),
            )
            if payload:
                self._free(payload)  # an empty payload is what qrmi sends; nothing to read
            message = (lib.munge_strerror(error) or b"").decode()
            if error not in (_SUCCESS, _CRED_REPLAYED):
                return None, error, message
            encoded, ttl = ctypes.c_long(), ctypes.c_int()
            address = ctypes.c_uint32()
            lib.munge_ctx_get(ctx, _OPT_ENCODE_TIME, ctypes.byref(encoded))
            lib.munge_ctx_get(ctx, _OPT_TTL, ctypes.byref(ttl))
            lib.munge_ctx_get(ctx, _OPT_ADDR4, ctypes.byref(address))
            # struct in_addr holds the address in network byte order.
            where = str(ipaddress.IPv4Address(address.value.to_bytes(4, "little")))
            identity = Identity(uid.value, gid.value, where, encoded.value + ttl.value)
            return identity, error, message
        finally:
            lib.munge_ctx_destroy(ctx)


class CredentialBook:
    """MUNGE authentication of requests, with the replay rule of the module's docstring: the
    first use of a credential is decoded by munged and remembered under its sha256 until it
    expires; later uses are accepted only from the address munged found in it."""

    def __init__(self, client: redis.Redis, namespace: str, munge: Munge) -> None:
        self.redis, self.keys, self.munge = client, Keys(namespace), munge

    def identify(self, credential: str | None, peer: str, now_s: float) -> Identity:
        """The identity behind `credential`, sent from `peer` (the request's remote address)
        at `now_s`; Unauthorized saying why otherwise."""
        if not credential:
            raise Unauthorized("missing MUNGE credential (header x-munge-cred)")
        credential = credential.strip()
        if len(credential) > MAX_CREDENTIAL_CHARS or not credential.isascii():
            raise Unauthorized("invalid MUNGE credential")
        key = self.keys.munge_credential(hashlib.sha256(credential.encode()).hexdigest())
        identity, error, message = self.munge.decode(credential)
        if error == _CRED_EXPIRED or (identity is not None and identity.expires_s <= now_s):
            raise Unauthorized("expired MUNGE credential")
        if identity is None:
            raise Unauthorized(f"invalid MUNGE credential: {message.lower()}")
        if not _same_host(identity.address, peer):
            raise Unauthorized("MUNGE credential sent from another host than the one that made it")
        if error == _SUCCESS:
            # First use: remember it for its replays, as long as it lives.
            ttl_s = max(1, int(identity.expires_s - now_s))
            self.redis.set(key, json.dumps(asdict(identity)), ex=ttl_s)
            return identity
        # Replayed: only a credential this cluster decoded before, and the same identity.
        seen = self.redis.get(key)
        if seen is None or Identity(**json.loads(seen)) != identity:
            raise Unauthorized("replayed MUNGE credential")
        return identity


def _same_host(encoded_at: str, peer: str) -> bool:
    """Whether `peer` is the host that encoded the credential: the same address, or the
    loopback when munged recorded this host's own address (a client on the API's host)."""
    try:
        peer_ip = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(peer_ip, ipaddress.IPv6Address) and peer_ip.ipv4_mapped:
        peer_ip = peer_ip.ipv4_mapped
    return str(peer_ip) == encoded_at or (peer_ip.is_loopback and _is_local(encoded_at))


def _is_local(address: str) -> bool:
    """Whether `address` is one of this host's own (munged records the encoder's hostname's
    address, which a client on this host reaches the API from over the loopback)."""
    import socket

    if ipaddress.ip_address(address).is_loopback:
        return True
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return False
    return address in {info[4][0] for info in infos}
