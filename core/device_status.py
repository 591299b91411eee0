"""Device statuses and calibration windows, as admins set them and the scheduler obeys them.

The effective status (what `device_status` on a batch shows) is computed in Lua, by the same
rule the scheduler's scripts apply: the status set by an admin, or CALIBRATING inside a window.
"""

from __future__ import annotations

from core.db import Db
from core.errors import InvalidRequest
from core.keys import calibration_bounds, calibration_window
from core.script_args import DeviceStatusArgs
from core.status import DeviceStatus

#: Status changes and calibration windows kept per device type (the newest).
HISTORY_KEPT = 10_000


def _merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class DeviceStatuses:
    def __init__(self, db: Db) -> None:
        self.redis = db.client
        self.keys = db.keys
        self.scripts = db.scripts

    def effective(self, device_types: list[str], now: int) -> dict[str, DeviceStatus]:
        """The status of each device type right now (UP unless set otherwise)."""
        if not device_types:
            return {}
        statuses = self.scripts.run(DeviceStatusArgs(now, tuple(device_types)))
        return {t: DeviceStatus(s) for t, s in zip(device_types, statuses, strict=True)}

    def set(self, device_type: str, status: DeviceStatus, reason: str, now: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self.keys.device(device_type),
            mapping={"status": status.value, "reason": reason, "updated_us": now},
        )
        # Its history, for traces: when a device type was out of service (down_intervals).
        pipe.zadd(self.keys.device_history(device_type), {f"{now}:{status.value}": now})
        pipe.zremrangebyrank(self.keys.device_history(device_type), 0, -HISTORY_KEPT - 1)
        pipe.execute()

    def add_calibration(self, device_type: str, start_us: int, end_us: int, now: int) -> None:
        """Schedules a calibration window; windows that are over are dropped."""
        if end_us <= start_us:
            raise InvalidRequest("a calibration window must end after it starts")
        key = self.keys.device_calibrations(device_type)
        for window in self.redis.zrange(key, 0, -1):
            if calibration_bounds(window)[1] <= now:
                self.redis.zrem(key, window)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(key, {calibration_window(start_us, end_us): start_us})
        # Kept in the history too: a window that is over leaves the calibrations set.
        history = self.keys.device_history(device_type)
        pipe.zadd(history, {f"{start_us}:{calibration_window(start_us, end_us)}": start_us})
        pipe.zremrangebyrank(history, 0, -HISTORY_KEPT - 1)
        pipe.execute()

    def calibrations(self, device_type: str) -> list[tuple[int, int]]:
        windows = self.redis.zrange(self.keys.device_calibrations(device_type), 0, -1)
        return [calibration_bounds(window) for window in windows]

    def down_intervals(self, device_type: str, until_us: int) -> list[tuple[int, int]]:
        """When the device type was out of service (a status other than UP, or a calibration
        window), as merged (from, to) intervals in µs, up to `until_us`."""
        intervals: list[tuple[int, int]] = []
        down_since: int | None = None
        for member in self.redis.zrange(self.keys.device_history(device_type), 0, -1):
            at, _, what = member.partition(":")
            if what in DeviceStatus.__members__:
                if what != DeviceStatus.UP and down_since is None:
                    down_since = int(at)
                elif what == DeviceStatus.UP and down_since is not None:
                    intervals.append((down_since, int(at)))
                    down_since = None
            else:
                intervals.append(calibration_bounds(what))
        if down_since is not None:
            intervals.append((down_since, until_us))
        return _merged([(a, min(b, until_us)) for a, b in intervals if a < until_us])
