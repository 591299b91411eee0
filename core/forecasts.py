"""Forecasts of when batches start and end, as the scheduler computes them
(scheduling/forecast.py) and the API and `tweezer queue` read them: `forecast:{type}`, batch id
-> [position, start, end], replaced whole each time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from core.keys import Keys
from core.timefmt import to_ms


@dataclass(frozen=True)
class Forecast:
    #: 0 for a batch holding a QPU; 1 for the next to start; ...
    position: int
    #: Expected start and end (Unix seconds).
    start_s: float
    end_s: float


class ForecastBook:
    """Forecasts in Redis: written by a scheduler, read by the API and `tweezer queue`."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = Keys(namespace)

    def write(self, device_type: str, forecasts: dict[str, Forecast], ttl_s: float) -> None:
        """Replaces the device type's forecast at once (a reader never sees half of one)."""
        key = self.keys.forecast(device_type)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        if forecasts:
            pipe.hset(key, mapping={i: _encode(f) for i, f in forecasts.items()})
            pipe.pexpire(key, to_ms(ttl_s))
        pipe.execute()

    def read(self, batches: Iterable[tuple[str, str]]) -> dict[str, Forecast]:
        """The forecasts of (device type, batch id) pairs that have one, in one round trip."""
        pairs = list(batches)
        if not pairs:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for device_type, batch_id in pairs:
            pipe.hget(self.keys.forecast(device_type), batch_id)
        return {
            batch_id: decode(value)
            for (_, batch_id), value in zip(pairs, pipe.execute(), strict=True)
            if value is not None
        }

    def all(self, device_type: str) -> dict[str, Forecast]:
        """The device type's whole forecast: batch id -> forecast."""
        raw: dict[str, str] = self.redis.hgetall(self.keys.forecast(device_type))
        return {i: decode(v) for i, v in raw.items()}


def _encode(f: Forecast) -> str:
    return json.dumps([f.position, round(f.start_s, 6), round(f.end_s, 6)])


def decode(value: str) -> Forecast:
    position, start, end = json.loads(value)
    return Forecast(int(position), float(start), float(end))
