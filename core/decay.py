"""How past QPU usage fades: the fair-share policy's memory (scheduling/policies.py), the admin
API's usage figures (api/admin.py) and the Lua side (`add_usage` in _accounting.lua) apply
the same rule."""

from __future__ import annotations

import math


def decayed(value: float, since_s: float, now_s: float, half_life_s: float) -> float:
    """`value` (QPU seconds counted at `since_s`) as it counts at `now_s`: halved every
    `half_life_s`, as Slurm's fair-share usage decays (PriorityDecayHalfLife). The Lua side
    (`add_usage` in _accounting.lua) applies the same rule when it adds a batch's time."""
    if value == 0.0 or now_s <= since_s:
        return value
    return value * math.pow(2.0, -(now_s - since_s) / half_life_s)
