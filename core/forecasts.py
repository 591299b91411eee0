"""Forecasts of when batches start and end, as a scheduler's forecaster computes them
(scheduler/forecaster.py, scheduling/forecast.py) and the API, `tweezer queue` and `tweezer
status` read them: `forecast:{type}`, batch id -> [position, start, end], and FORECAST_AT ->
when it was made (µs), replaced whole each time.
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


class ForecastBook:
    """Forecasts in Redis: written by a scheduler, read by the API and `tweezer queue`."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = Keys(namespace)

    def write(
        self, device_type: str, forecasts: dict[str, Forecast], ttl_s: float, at_us: int
    ) -> None:
        """Replaces the device type's forecast, made at `at_us`, at once (a reader never sees
        half of one). An empty forecast is kept too: it says when nothing was found waiting."""
        key = self.keys.forecast(device_type)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(
            key, mapping={FORECAST_AT: at_us, **{i: _encode(f) for i, f in forecasts.items()}}
        )
        pipe.pexpire(key, to_ms(ttl_s))
        pipe.execute()

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
