"""Reading request bodies safely: size caps before and after gzip, strict JSON.

The SDK gzips create-batch and add-jobs bodies (`Content-Encoding: gzip`) unless
PASQAL_SKIP_GZIP_REQUEST_BODY is set; every other body is plain JSON, and some PATCH/POST calls
send none at all. Flask's MAX_CONTENT_LENGTH bounds only the bytes on the wire, so inflation is
bounded here, chunk by chunk, against a gzip bomb.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from flask import request

from core.errors import InvalidRequest, PayloadTooLarge, UnsupportedEncoding
from core.settings import Settings

_CHUNK = 64 * 1024


def read_json(settings: Settings) -> Any:
    """The request's JSON document (decompressed if gzip); raises a 4xx TweezerError otherwise."""
    max_inflated_bytes = settings.max_inflated_bytes
    raw = _read_body(settings.max_body_bytes)
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding == "gzip":
        raw = inflate(raw, max_inflated_bytes)
    elif encoding not in ("", "identity"):
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding!r} is not supported; send gzip or identity"
        )
    elif len(raw) > max_inflated_bytes:
        raise PayloadTooLarge(f"Request body is larger than {max_inflated_bytes} bytes")
    if not raw.strip():
        raise InvalidRequest("Request body is empty; a JSON document is required")
    return parse_json(raw)


def _read_body(max_bytes: int) -> bytes:
    if request.content_length is not None:
        # Werkzeug refuses a declared length above MAX_CONTENT_LENGTH before reading anything.
        return request.get_data(cache=False)
    # Chunked, no length: Werkzeug's limited stream would stop at the cap and hand back a
    # truncated body, so read the server's (gunicorn terminates it) one byte past the cap.
    data: bytes = request.environ["wsgi.input"].read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"Request body is larger than {max_bytes} bytes")
    return data


def inflate(data: bytes, limit: int) -> bytes:
    """Decompresses gzip (several members allowed) without ever holding more than `limit`."""
    out = bytearray()
    pending = data
    try:
        while pending:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = inflater.decompress(pending, limit + 1 - len(out))
            while True:
                out += chunk
                if len(out) > limit:
                    raise PayloadTooLarge(f"Decompressed body is larger than {limit} bytes")
                if not inflater.unconsumed_tail:
                    break
                chunk = inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
            if not inflater.eof:
                raise InvalidRequest("Request body is not valid gzip: the stream is truncated")
            pending = inflater.unused_data
    except zlib.error as exc:
        raise InvalidRequest(f"Request body is not valid gzip: {exc}") from None
    return bytes(out)


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, bounded nesting and numbers."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("Request body is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise InvalidRequest("Request body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None
    except ValueError as exc:
        # int() refuses numbers of more than 4300 digits (CVE-2020-10735 guard).
        raise InvalidRequest(f"Request body has an unusable number: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise InvalidRequest(f"Request body contains {name}, which is not a valid JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidRequest(f"Request body repeats the key {key!r}")
        result[key] = value
    return result
