"""The bridge's device drivers: what stands between a FRESNEL worker and the hardware.

A driver is four calls. The bridge (workers/bridge.py) loads each job's built sequence, asks for
its shots, and aborts when the job is cancelled; the scheduler never sees the driver, so a real
device driver replaces the virtual one by naming it in `Settings.bridge_driver`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol

from pulser import Sequence

from core.errors import ConfigurationError
from core.settings import Settings


class Aborted(Exception):
    """Raised by `run` when `abort` was called meanwhile."""


class QpuDriver(Protocol):
    def __init__(self, settings: Settings) -> None: ...

    def load(self, sequence: Sequence) -> None:
        """Programs the device with a built sequence (register and pulses)."""

    def run(self, shots: int, progress: Callable[[int], None]) -> list[str]:
        """Executes the loaded sequence `shots` times; one bitstring per shot, in register order.
        Calls `progress(shots_done)` as it goes; raises Aborted once `abort` is called."""

    def abort(self) -> None:
        """Stops the current `load` or `run` as soon as the device allows (any thread)."""


def load_driver(settings: Settings) -> QpuDriver:
    """The driver class named by `Settings.bridge_driver` (`module:Class`), instantiated."""
    module_name, _, class_name = settings.bridge_driver.partition(":")
    try:
        driver_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"bridge_driver {settings.bridge_driver!r}: {exc}") from None
    driver: QpuDriver = driver_class(settings)
    return driver
