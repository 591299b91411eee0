"""The options of `tweezer up` that set a setting: one table, flag -> Settings field, whose types
and defaults are read from the model (core/settings.py) rather than copied into help texts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from core.settings import Settings


@dataclass(frozen=True)
class SettingFlag:
    flag: str
    field: str
    help: str
    metavar: str | None = None
    #: What the default means, where its value alone would not say (an empty string).
    default_text: str | None = None

    def default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        value = Settings.model_fields[self.field].get_default(call_default_factory=True)
        if isinstance(value, dict):
            return ",".join(f"{k}={v}" for k, v in value.items())
        return f"{value:g}" if isinstance(value, float) else str(value)

    def is_switch(self) -> bool:
        return Settings.model_fields[self.field].annotation in (bool, "bool")


SETTING_FLAGS = (
    SettingFlag(
        "--open-batch-max-hold",
        "open_batch_max_hold_s",
        "longest an open batch may hold a QPU, busy or not",
        "SECONDS",
    ),
    SettingFlag(
        "--open-batch-timeout",
        "open_batch_timeout_s",
        "idle time after which an open batch ends TIMED_OUT",
        "SECONDS",
    ),
    SettingFlag("--qpus", "qpus", "QPUs per device type", "TYPE=N[,TYPE=N]"),
    SettingFlag(
        "--default-device-type",
        "default_device_type",
        "where a batch without a device type goes when the device its sequence was built for "
        "is not served or refuses it",
        "TYPE",
        default_text="EMU_FREE when served",
    ),
    SettingFlag(
        "--policy",
        "policy",
        "which waiting batch a free QPU runs next: fifo, priority, fair-share, shortest-first, "
        "or module:Class (README, 'Scheduling policies')",
        "NAME",
    ),
    SettingFlag(
        "--fair-share-half-life",
        "fair_share_half_life_s",
        "fair share: past QPU usage counts half as much after this long",
        "SECONDS",
    ),
    SettingFlag(
        "--synthetic-devices",
        "synthetic_devices",
        "every job takes the QPU seconds a load test gives it, no QuTiP: load-test the "
        "platform, not the emulator (README, 'Load tests')",
    ),
    SettingFlag(
        "--bridge-speedup",
        "bridge_speedup",
        "divide every time of the virtual FRESNEL QPU by X",
        "X",
    ),
)


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for f in SETTING_FLAGS:
        dest = f.field
        if f.is_switch():
            parser.add_argument(f.flag, dest=dest, action="store_true", default=None, help=f.help)
        else:
            # Text: Settings converts and checks it, and names the setting in its message.
            parser.add_argument(
                f.flag, dest=dest, metavar=f.metavar, help=f"{f.help} (default {f.default()})"
            )


def setting_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gave (those it did not are left to the environment)."""
    return {
        f.field: getattr(args, f.field) for f in SETTING_FLAGS if getattr(args, f.field) is not None
    }
