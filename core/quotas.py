"""Per-project quotas, set by an administrator and enforced at submission with a 403.

A project's quotas are fields of its hash (absent = no limit):
  max_queued_jobs       jobs of the project not finished yet (PENDING or RUNNING)
  max_open_batches      open batches of the project not finished yet
  max_stored_bytes      bytes it keeps in Redis (absent: Settings.project_max_stored_bytes)
  max_runs_per_job      shots of any one job
  allowed_device_types  the device types its batches may ask for

The first three depend on what is stored, so the commit script checks them atomically
(`quota_refusal` in _accounting.lua): two concurrent requests cannot pass a limit together.
The last two depend on the request only and are checked here, before anything is written.

Stored bytes (`project:{id}:usage` stored_bytes) are counted by the scripts that write them:
each record's fields plus a fixed estimate of its index entries, each distinct sequence of a
batch once, every result as committed, and for each unfinished job a reservation of what its
results will take (predicted_result_bytes), released when it finishes. Sequences are dropped,
and uncounted, Settings.input_retention_s after their batch finished.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

from core.errors import InvalidRequest, QuotaExceeded

#: Quota names, as stored in the project hash and named in the API and the CLI.
LIMITS = ("max_queued_jobs", "max_open_batches", "max_stored_bytes", "max_runs_per_job")
ALLOWED_DEVICE_TYPES = "allowed_device_types"


@dataclass(frozen=True)
class Quotas:
    max_queued_jobs: int | None = None
    max_open_batches: int | None = None
    max_stored_bytes: int | None = None
    max_runs_per_job: int | None = None
    #: None: every device type the cluster serves.
    allowed_device_types: tuple[str, ...] | None = None

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Quotas:
        allowed = h.get(ALLOWED_DEVICE_TYPES)
        return cls(
            **{name: int(h[name]) for name in LIMITS if name in h},
            allowed_device_types=None
            if allowed is None
            else tuple(filter(None, allowed.split(","))),
        )

    def as_dict(self) -> dict[str, object]:
        return {
            f.name: list(value) if isinstance(value := getattr(self, f.name), tuple) else value
            for f in fields(self)
        }

    def check_submission(self, project_id: str, device_type: str, runs: Iterable[int]) -> None:
        """Refuses a batch (or jobs) the static quotas forbid."""
        if self.allowed_device_types is not None and device_type not in self.allowed_device_types:
            allowed = ", ".join(self.allowed_device_types) or "none"
            raise QuotaExceeded(
                f"Project {project_id} may not use device type {device_type} "
                f"(allowed_device_types: {allowed})",
                quota=ALLOWED_DEVICE_TYPES,
            )
        if self.max_runs_per_job is not None:
            most = max(runs, default=0)
            if most > self.max_runs_per_job:
                raise QuotaExceeded(
                    f"A job asks for {most} runs; project {project_id} allows at most "
                    f"{self.max_runs_per_job} per job (max_runs_per_job)",
                    quota="max_runs_per_job",
                    limit=self.max_runs_per_job,
                )


def parse_changes(
    changes: Mapping[str, object], served: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    """Validates quota changes (a limit: a non-negative int, or None to lift it; the allowed
    device types: a list of served types, or None) into (fields to set, fields to delete)."""
    to_set: dict[str, str] = {}
    to_delete: list[str] = []
    for name, value in changes.items():
        if name in LIMITS:
            if value is None:
                to_delete.append(name)
            elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                to_set[name] = str(value)
            else:
                raise InvalidRequest(f"{name} must be a non-negative integer or null")
        elif name == ALLOWED_DEVICE_TYPES:
            if value is None:
                to_delete.append(name)
                continue
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidRequest(f"{name} must be a list of device types or null")
            unknown = [v for v in value if v not in served]
            if unknown:
                raise InvalidRequest(
                    f"{name}: unknown device type {unknown[0]!r}; served: {', '.join(served)}"
                )
            to_set[name] = ",".join(dict.fromkeys(value))
        else:
            raise InvalidRequest(
                f"unknown quota {name!r}; quotas: {', '.join((*LIMITS, ALLOWED_DEVICE_TYPES))}"
            )
    return to_set, to_delete


def predicted_result_bytes(runs: int, atoms: int, with_serialised: bool) -> int:
    """An upper estimate of a job's results document: `raw` (one bitstring per shot),
    `counter` (at most one entry per distinct outcome) and, with a backend configuration,
    Pulser's serialised results (another counter and their metadata)."""
    counter = min(runs, 1 << atoms) * (atoms + 12)
    raw = runs * (atoms + 4)
    return 256 + raw + counter + ((counter + 4096) if with_serialised else 0)


def refusal(values: Sequence[str]) -> QuotaExceeded:
    """The error for what follows `quota` in a commit script's reply (core/replies.py): the
    project id, the quota's name, its limit, what is in use, and for bytes what was needed."""
    project_id, name, limit, used = values[:4]
    if name == "max_stored_bytes":
        return QuotaExceeded(
            f"Project {project_id} stores {used} bytes and this request needs {values[4]} more, "
            f"of at most {limit} ({name}); finished batches' sequences are dropped after the "
            "retention period, or ask an administrator for more",
            quota=name,
            limit=int(limit),
            in_use=int(used),
        )
    what = "unfinished jobs" if name == "max_queued_jobs" else "open batches"
    return QuotaExceeded(
        f"Project {project_id} has {used} {what} of at most {limit} ({name}); "
        "wait for some to finish",
        quota=name,
        limit=int(limit),
        in_use=int(used),
    )
