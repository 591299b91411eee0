"""MUNGE credentials: the Slurm cluster's own authentication, which qrmi's on-premises client
(`pasqal-local`) sends in the `x-munge-cred` header of its requests (issue #27). The host's
`munged`, which shares the cluster's key, decodes a credential and says who made it (uid, gid),
on which host, when, and for how long it stays valid.

Decoded through libmunge (Debian's `libmunge2`) with ctypes: ~0.1 ms a decode on this machine,
against ~1.3 ms to run `unmunge` for each.

Replays are refused, as munged itself refuses to decode a credential twice. qrmi 0.26.4 makes
a fresh credential for every request (its requests captured: eight calls, eight credentials;
`GET /accessible` carries none), so nothing it does is a replay, and a credential seen before
is one copied from somewhere it should not have been.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
from dataclasses import dataclass

from core.errors import ConfigurationError, Unauthorized

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
        credential is valid (0) or valid but decoded before (replayed)."""
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


def authenticate(munge: Munge, credential: str | None, now_s: float) -> Identity:
    """The identity behind `credential` at `now_s`; Unauthorized saying why otherwise."""
    if not credential:
        raise Unauthorized("missing MUNGE credential (header x-munge-cred)")
    credential = credential.strip()
    if len(credential) > MAX_CREDENTIAL_CHARS or not credential.isascii():
        raise Unauthorized("invalid MUNGE credential")
    identity, error, message = munge.decode(credential)
    if error == _CRED_EXPIRED or (identity is not None and identity.expires_s <= now_s):
        raise Unauthorized("expired MUNGE credential")
    if error == _CRED_REPLAYED:
        raise Unauthorized("replayed MUNGE credential: make a new one for each request")
    if identity is None:
        raise Unauthorized(f"invalid MUNGE credential: {message.lower()}")
    return identity
