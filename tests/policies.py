"""A lab's own scheduling policy, loaded by `module:Class` in tests (docs: README)."""

from __future__ import annotations

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
