"""How past QPU usage fades: the fair-share policy's memory (scheduling/policies.py), the admin
API's usage figures (api/admin.py) and the Lua side (`add_usage` in _accounting.lua) apply
the same rule."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping


def decayed(value: float, since_s: float, now_s: float, half_life_s: float) -> float:
    """`value` (QPU seconds counted at `since_s`) as it counts at `now_s`: halved every
    `half_life_s`, as Slurm's fair-share usage decays (PriorityDecayHalfLife). The Lua side
    (`add_usage` in _accounting.lua) applies the same rule when it adds a batch's time."""
    if value == 0.0 or now_s <= since_s:
        return value
    return value * math.pow(2.0, -(now_s - since_s) / half_life_s)


class DecayedUsage(Mapping[str, float]):
    """Each project's usage decayed to `now_s`, from `raw`: project -> (QPU seconds, when
    counted), computed when a policy asks for it: a snapshot per grant must not cost a decay
    per project of the cluster."""

    def __init__(self, raw: Mapping[str, tuple[float, float]], now_s: float, half_life_s: float):
        self.raw, self.now_s, self.half_life_s = dict(raw), now_s, half_life_s

    def __getitem__(self, project: str) -> float:
        value, since = self.raw[project]
        return decayed(value, since, self.now_s, self.half_life_s)

    def get(self, project: str, default: float | None = None) -> float | None:  # type: ignore[override]
        # Mapping's own `get` goes through KeyError: this is the policies' hot path.
        item = self.raw.get(project)
        return default if item is None else decayed(item[0], item[1], self.now_s, self.half_life_s)

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)
