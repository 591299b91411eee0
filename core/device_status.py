"""Device statuses and calibration windows, as admins set them and the scheduler obeys them.

The effective status (what `device_status` on a batch shows) is computed in Lua, by the same
rule the scheduler's scripts apply: the status set by an admin, or CALIBRATING inside a window.
"""

from __future__ import annotations

import redis

from core.errors import InvalidRequest
from core.keys import Keys, calibration_bounds, calibration_window
from core.scripts import Scripts
from core.status import DeviceStatus


class DeviceStatuses:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.keys = Keys(namespace)
        self.scripts = Scripts(client, namespace)

    def effective(self, device_types: list[str], now: int) -> dict[str, DeviceStatus]:
        """The status of each device type right now (UP unless set otherwise)."""
        if not device_types:
            return {}
        statuses = self.scripts.call("device_status", now, *device_types)
        return {t: DeviceStatus(s) for t, s in zip(device_types, statuses, strict=True)}

    def set(self, device_type: str, status: DeviceStatus, reason: str, now: int) -> None:
        self.redis.hset(
            self.keys.device(device_type),
            mapping={"status": status.value, "reason": reason, "updated_us": now},
        )

    def add_calibration(self, device_type: str, start_us: int, end_us: int, now: int) -> None:
        """Schedules a calibration window; windows that are over are dropped."""
        if end_us <= start_us:
            raise InvalidRequest("a calibration window must end after it starts")
        key = self.keys.device_calibrations(device_type)
        for window in self.redis.zrange(key, 0, -1):
            if calibration_bounds(window)[1] <= now:
                self.redis.zrem(key, window)
        self.redis.zadd(key, {calibration_window(start_us, end_us): start_us})

    def calibrations(self, device_type: str) -> list[tuple[int, int]]:
        windows = self.redis.zrange(self.keys.device_calibrations(device_type), 0, -1)
        return [calibration_bounds(window) for window in windows]
