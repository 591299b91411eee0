"""The JSend envelope the SDK reads: `data` on success (plus `pagination` on lists), and a JSON
object with `data.description` on failure. The SDK only looks at HTTP codes, `data`,
`pagination.total` and `pagination.end`; the rest is for people reading responses."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify

#: What a route returns: the JSON response and its HTTP status.
Reply = tuple[Response, int]


def success(data: Any, status: int = 200) -> Reply:
    return jsonify({"status": "success", "code": status, "message": "OK.", "data": data}), status


def page(items: list[Any], total: int, offset: int, end: int | None = None) -> Reply:
    """A list page. `end` is exclusive (offset + the items, unless the caller covered more
    entries than it shows); on an empty page it is >= total so that the SDK's "fetch while
    end < total" loop always ends."""
    end = offset + len(items) if end is None else end
    body = {
        "status": "success",
        "code": 200,
        "message": "OK.",
        "data": items,
        "pagination": {"total": total, "offset": offset, "start": offset, "end": end},
    }
    return jsonify(body), 200


def failure(status: int, message: str, code: str, details: dict[str, Any]) -> Response:
    g.error_code = code  # counted by api/metrics.py
    body = {
        "status": "fail" if status < 500 else "error",
        "code": status,
        "message": message,
        "data": {"description": message, "error_code": code, **details},
    }
    response = jsonify(body)
    response.status_code = status
    return response
