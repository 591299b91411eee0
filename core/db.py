"""One cluster's Redis as a process uses it: the client, the names of its keys and the Lua
scripts registered on it, made once per process and handed to every object that reads or
writes records (Store, QpuControl, Execution, DeviceStatuses, the rate limiters, the snapshot
reader, the webhook sender)."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from core.keys import Keys
from core.redis_client import connect
from core.scripts import Scripts
from core.settings import Settings


@dataclass(frozen=True)
class Db:
    client: redis.Redis
    keys: Keys
    scripts: Scripts

    @classmethod
    def of(cls, client: redis.Redis, namespace: str) -> Db:
        return cls(client, Keys(namespace), Scripts(client, namespace))

    @property
    def namespace(self) -> str:
        return self.keys.namespace


def open_db(settings: Settings) -> Db:
    """The process's handle on the cluster's Redis (core/redis_client.py connect)."""
    return Db.of(connect(settings), settings.namespace)
