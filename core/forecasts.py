"""Forecasts of when batches start and end, as a scheduler's forecaster computes them
(scheduler/forecaster.py, scheduling/forecast.py) and the API, `tweezer queue` and `tweezer
status` read them: `forecast:{type}`, batch id -> [position, start, end], and FORECAST_AT ->
when it was made (µs); `forecast-order:{type}`, the waiting ones by position (a page of the
queue reads its page, not the whole forecast). Each forecast replaces the last whole.

A forecast of 100,000 batches is megabytes: written in one transaction, or deleted in one, it
would hold Redis (and the scheduler's passes) for a tenth of a second. So it is written in
chunks to staging keys of its writer, put in place by two O(1) renames in one transaction (a
reader sees the old forecast or the new one, never half of one), and the one it replaced is
freed by UNLINK, in the background.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from core.keys import Keys
from core.timefmt import to_ms

#: The field of a forecast's hash that says when it was made (not a batch id: ids are UUIDs).
FORECAST_AT = "@at"


@dataclass(frozen=True)
class Forecast:
    #: 0 for a batch holding a QPU; 1 for the next to start; ...
    position: int
    #: Expected start and end (Unix seconds).
    start_s: float
    end_s: float
    #: When the forecast was made (µs; 0: not known).
    at_us: int = 0


def lua_forecasts() -> str:
    """FORECAST_AT for the scripts' prelude (overview.lua reads each type's)."""
    return f"local FORECAST_AT = '{FORECAST_AT}'\n"


#: Entries written per command while a forecast is staged.
WRITE_CHUNK = 2000


class ForecastBook:
    """Forecasts in Redis: written by a scheduler's forecaster, read by the API and `tweezer
    queue`."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = Keys(namespace)

    def write(
        self,
        device_type: str,
        forecasts: dict[str, Forecast],
        ttl_s: float,
        at_us: int,
        writer: str = "",
    ) -> None:
        """Replaces the device type's forecast, made at `at_us`, at once (a reader never sees
        half of one). An empty forecast is kept too: it says when nothing was found waiting.
        `writer` names the forecaster (two writing at once stage apart)."""
        keys = (self.keys.forecast(device_type), self.keys.forecast_order(device_type))
        staged = [Keys.staging(key, writer) for key in keys]
        old = [Keys.replaced(key, writer) for key in keys]
        ttl_ms = to_ms(ttl_s)
        items = list(forecasts.items())
        pipe = self.redis.pipeline(transaction=False)
        pipe.unlink(*staged)
        pipe.hset(staged[0], FORECAST_AT, at_us)
        # A writer that dies while staging leaves nothing for long.
        pipe.pexpire(staged[0], ttl_ms)
        for start in range(0, len(items), WRITE_CHUNK):
            chunk = items[start : start + WRITE_CHUNK]
            pipe.hset(staged[0], mapping={i: _encode(f) for i, f in chunk})
            if positions := {i: f.position for i, f in chunk if f.position > 0}:
                pipe.zadd(staged[1], positions)
                pipe.pexpire(staged[1], ttl_ms)
            pipe.execute()
        pipe.execute()  # what is left when there was no chunk
        # The order is absent when nothing waits.
        present = [bool(self.redis.exists(new)) for new in staged]
        swap = self.redis.pipeline(transaction=True)
        for key, new, replaced, exists in zip(keys, staged, old, present, strict=True):
            swap.rename(key, replaced)  # fails harmlessly when there is none (expired, first)
            if exists:
                swap.rename(new, key)
        swap.execute(raise_on_error=False)
        self.redis.unlink(*old)

    def order(self, device_type: str, offset: int, limit: int) -> tuple[list[str], int]:
        """A page of the latest forecast's waiting batches of `device_type`, first to start
        first, and how many it has (no batch is read; `limit` 0: only how many)."""
        key = self.keys.forecast_order(device_type)
        if limit <= 0:
            return [], int(self.redis.zcard(key))
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrange(key, offset, offset + limit - 1)
        pipe.zcard(key)
        ids, total = pipe.execute()
        return ids, int(total)

    def read(self, batches: Iterable[tuple[str, str]]) -> dict[str, Forecast]:
        """The forecasts of (device type, batch id) pairs that have one, in one round trip."""
        pairs = list(batches)
        if not pairs:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for device_type, batch_id in pairs:
            pipe.hmget(self.keys.forecast(device_type), batch_id, FORECAST_AT)
        return {
            batch_id: decode(value, at)
            for (_, batch_id), (value, at) in zip(pairs, pipe.execute(), strict=True)
            if value is not None
        }

    def all(self, device_type: str) -> dict[str, Forecast]:
        """The device type's whole forecast: batch id -> forecast."""
        raw: dict[str, str] = self.redis.hgetall(self.keys.forecast(device_type))
        at = raw.pop(FORECAST_AT, None)
        return {i: decode(v, at) for i, v in raw.items()}


def _encode(f: Forecast) -> str:
    return json.dumps([f.position, round(f.start_s, 6), round(f.end_s, 6)])


def decode(value: str, at: str | None = None) -> Forecast:
    position, start, end = json.loads(value)
    return Forecast(int(position), float(start), float(end), int(at or 0))
