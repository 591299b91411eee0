"""A lab's own scheduling policy, loaded by `module:Class` in tests (docs: README)."""

from __future__ import annotations

import time

from scheduling.snapshot import Snapshot, Waiting


class NewestFirst:
    """Last in, first out: the most recently submitted batch runs next."""

    name = "newest-first"
    window = 50

    def choose(self, snapshot: Snapshot) -> Waiting | None:
        return max(snapshot.waiting, key=lambda b: (b.submitted_s, b.id), default=None)


class Broken:
    """Not a policy: it has no `choose`."""

    name = "broken"
    window = 1


class Ponderous:
    """First in, first out, thinking 40 ms of CPU over each choice: a forecast of N waiting
    batches takes N x 40 ms (a long queue's forecast, made cheaply)."""

    name = "ponderous"
    window = 1

    def choose(self, snapshot: Snapshot) -> Waiting | None:
        deadline = time.process_time() + 0.04
        while time.process_time() < deadline:
            pass
        return min(snapshot.waiting, key=lambda b: (b.submitted_s, b.id), default=None)
