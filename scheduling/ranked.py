"""The waiting batches kept in a policy's own order, so that a grant finds the policy's next
batch without looking at every project's queue (#30: 1,000 projects waiting made each grant
compare 1,000 heads).

A policy that defines `rank` (scheduling/policies.py) says its order one batch at a time. The
scheduler keeps a `RankedBatches` per device type and puts or drops only the batches whose
queue or project usage changed (scheduler/reader.py). Projects holding QPUs of the type are
left to the policy: their usage grows while they hold, so no rank made earlier stays true for
them (`best(skip=...)`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from itertools import count

from scheduling.snapshot import Waiting

#: A policy's rank of a batch (scheduling/policies.py, `rank`): least first.
Rank = tuple[float, ...]

#: The heap is rebuilt when it holds this many times as many entries as live batches, plus a
#: little: dropped and re-ranked batches leave stale entries behind (lazy deletion).
_STALE_FACTOR = 2
_STALE_SLACK = 256


class RankedBatches:
    """Batches by (rank, id), least first; put again to re-rank, dropped by id."""

    def __init__(self, slack: int = _STALE_SLACK) -> None:
        self._slack = slack
        self._heap: list[tuple[Rank, str, int, Waiting]] = []
        #: batch id -> its live heap entry's serial number, rank and batch.
        self._live: dict[str, tuple[int, Rank, Waiting]] = {}
        self._serial = count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, batch_id: object) -> bool:
        return batch_id in self._live

    def put(self, batch: Waiting, rank: Rank) -> None:
        """Adds `batch`, or moves it to `rank`."""
        serial = next(self._serial)
        self._live[batch.id] = (serial, rank, batch)
        heapq.heappush(self._heap, (rank, batch.id, serial, batch))
        if len(self._heap) > _STALE_FACTOR * len(self._live) + self._slack:
            self._compact()

    def drop(self, batch_ids: Iterable[str]) -> None:
        for batch_id in batch_ids:
            self._live.pop(batch_id, None)

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()

    def best(self, skip: frozenset[str] | set[str] = frozenset()) -> Waiting | None:
        """The batch of least (rank, id) whose project is not in `skip`. Costs the stale
        entries it passes (each once) and a push back for each skipped one: at most one per
        batch of the skipped projects."""
        heap, passed = self._heap, []
        found = None
        while heap:
            _, batch_id, serial, batch = heap[0]
            live = self._live.get(batch_id)
            if live is None or live[0] != serial:
                heapq.heappop(heap)  # dropped or re-ranked since
            elif batch.project in skip:
                passed.append(heapq.heappop(heap))
            else:
                found = batch
                break
        for entry in passed:
            heapq.heappush(heap, entry)
        return found

    def _compact(self) -> None:
        self._heap = [
            (rank, batch_id, serial, batch)
            for batch_id, (serial, rank, batch) in self._live.items()
        ]
        heapq.heapify(self._heap)
