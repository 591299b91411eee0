"""One vocabulary across Python and Lua: statuses live in core/status.py and reply codes in
core/replies.py, the scripts get both in their prelude, and a status move the transition table
forbids reaches the caller as a typed error (a 409 on the API), never a 500."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from tests.helpers import call_api, hold_qpu
from tests.sequences import parametrized
from tests.test_store import NS, T0, new_batch
from tweezer.core.errors import InvalidTransition
from tweezer.core.replies import Reply
from tweezer.core.scripts import SCRIPT_NAMES, script_source
from tweezer.core.status import (
    BATCH_TRANSITIONS,
    JOB_TRANSITIONS,
    BatchStatus,
    DeviceStatus,
    JobStatus,
    WebhookOutcome,
    WebhookState,
)
from tweezer.core.store import Store

LUA_DIR = Path(str(resources.files("tweezer.core").joinpath("lua")))
ROOT = Path(__file__).resolve().parent.parent
ENUMS = (JobStatus, BatchStatus, DeviceStatus, WebhookState)
WORDS = {s.value for enum in ENUMS for s in enum} | {r.value for r in Reply}
#: Lower-case words that are also field names elsewhere ('failed' in login_backoff.lua):
#: checked only in the scripts that deal with webhook attempts.
ATTEMPT_WORDS = {o.value for o in WebhookOutcome}


def quoted_words(text: str) -> set[str]:
    return set(re.findall(r"""['"]([A-Za-z_]+)['"]""", text))


@pytest.mark.parametrize("path", sorted(LUA_DIR.glob("*.lua")), ids=lambda p: p.name)
def test_no_script_spells_a_status_or_a_reply_code(path):
    """The scripts say JOB.PENDING, BATCH.DONE, DEVICE.UP, R.OK: the words themselves are
    rendered from Python into the prelude, once."""
    spelled = quoted_words(path.read_text()) & WORDS
    assert not spelled, f"{path.name} spells {sorted(spelled)}"


def test_the_prelude_names_every_status_and_reply_code():
    prelude = script_source("dispatch")
    for status in JobStatus:
        assert f"{status.name} = '{status.value}'" in prelude
    for code in Reply:
        assert f"{code.name} = '{code.value}'" in prelude
    assert set(SCRIPT_NAMES) == {p.stem for p in LUA_DIR.glob("*.lua")} - {"_lib"}


def test_no_python_module_but_replies_reads_a_reply_code():
    """Callers get typed results: only core/replies.py looks at a reply's first item."""
    readers = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tweezer").rglob("*.py")
        if "reply[0]" in path.read_text()
    ]
    assert readers == ["tweezer/core/replies.py"]


def test_the_transition_tables_hold_only_moves_that_happen():
    """Nothing ends a batch ERROR, and a job is never failed before a worker claimed it."""
    assert all(BatchStatus.ERROR not in targets for targets in BATCH_TRANSITIONS.values())
    assert JobStatus.ERROR not in JOB_TRANSITIONS[JobStatus.PENDING]


def test_a_forbidden_move_inside_a_script_is_a_typed_error(redis_only):
    """A job whose stored status the table does not know (say, written by a newer version)
    stops the cancel before it writes anything of that job, as InvalidTransition."""
    store = Store(redis_only, NS)
    batch, [job] = new_batch(store, runs=(5,))
    redis_only.hset(store.keys.job(job.id), "status", "PAUSED")
    with pytest.raises(InvalidTransition) as refused:
        store.cancel_batch(batch.id, T0, "tester")
    assert refused.value.details == {
        "entity": "job",
        "id": job.id,
        "current": "PAUSED",
        "requested": "CANCELED",
    }
    assert redis_only.hget(store.keys.job(job.id), "status") == "PAUSED"


def test_the_api_answers_a_forbidden_move_with_a_409(cluster, sdk, account):
    sequence = parametrized()
    with hold_qpu(sdk, sequence):  # the batch stays PENDING: no worker touches its job
        batch = sdk.create_batch(sequence, [{"runs": 5, "variables": {"omega_max": 6}}])
        [job_id] = [job.id for job in batch.ordered_jobs]
        job_key = Store(cluster.client, cluster.settings.namespace).keys.job(job_id)
        cluster.client.hset(job_key, "status", "PAUSED")
        try:
            answer = call_api(cluster, account, "PATCH", f"/api/v2/batches/{batch.id}/cancel")
        finally:
            cluster.client.hset(job_key, "status", "PENDING")
        assert answer.status_code == 409, answer.text
        body = answer.json()
        assert body["status"] == "fail"
        assert body["data"]["error_code"] == "invalid_transition"
        assert body["data"]["id"] == job_id
        sdk.cancel_batch(batch.id)  # and with the status repaired, it cancels as usual
        assert sdk.get_batch(batch.id).status == "CANCELED"


def test_the_scheduler_learns_names_without_pulser_argon2_or_jwt():
    """Device types, QPU names and priorities are plain modules (core/device_types.py,
    core/priorities.py, core/roles.py): the scheduler imports none of the heavy libraries."""
    probe = (
        "import sys, tweezer.scheduler.loop; "
        "print(','.join(m for m in ('pulser', 'argon2', 'jwt', 'qutip', 'flask') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""


#: Which rooms each room may import (docs/design.md, "Rooms").
ROOM_IMPORTS = {
    "core": set(),
    "api": {"core"},
    "scheduler": {"core", "scheduling"},
    "workers": {"core"},
    "scheduling": {"core"},
    "lab": {"core", "scheduling", "launch"},
    "launch": {"core"},
    "cli": {"core", "api", "scheduler", "workers", "scheduling", "lab", "launch"},
}


def test_each_room_imports_only_the_rooms_below_it():
    """The daemon never imports the lab, the lab never the command line, core nothing of ours:
    every import of every module, those inside functions included."""
    package = ROOT / "tweezer"
    assert {p.name for p in package.iterdir() if (p / "__init__.py").exists()} == set(ROOM_IMPORTS)
    wrong = []
    for path in package.rglob("*.py"):
        room = path.relative_to(package).parts[0]
        if room not in ROOM_IMPORTS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                parts = name.split(".")
                other = parts[1] if parts[0] == "tweezer" and len(parts) > 1 else room
                if other != room and other not in ROOM_IMPORTS[room]:
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []
