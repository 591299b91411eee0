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
import redis

from core.db import Db
from core.errors import InvalidTransition
from core.records import RECORD_FIELDS
from core.replies import Reply
from core.script_args import ARGS, CommitJobsArgs, DispatchArgs, HashRowsArgs, HeartbeatArgs
from core.scripts import LIBRARY, SCRIPT_NAMES, Scripts, script_source
from core.status import (
    BATCH_TRANSITIONS,
    JOB_TRANSITIONS,
    LUA_NAMES,
    BatchStatus,
    JobStatus,
)
from core.store import Store
from tests.factories import NS, T0, new_batch
from tests.helpers import call_api, hold_qpu
from tests.sequences import parametrized

LUA_DIR = Path(str(resources.files("core").joinpath("lua")))
ROOT = Path(__file__).resolve().parent.parent
WORDS = {s.value for enum in LUA_NAMES.values() for s in enum} | {r.value for r in Reply}


def quoted_words(text: str) -> set[str]:
    return set(re.findall(r"""['"]([A-Za-z_]+)['"]""", text))


@pytest.mark.parametrize("path", sorted(LUA_DIR.glob("*.lua")), ids=lambda p: p.name)
def test_no_script_spells_a_status_or_a_reply_code(path):
    """The scripts say JOB.PENDING, BATCH.DONE, DEVICE.UP, R.OK, HOLD_END.IDLE, LOGIN.CHECK:
    the words themselves are rendered from Python into the prelude, once."""
    spelled = quoted_words(path.read_text()) & WORDS
    assert not spelled, f"{path.name} spells {sorted(spelled)}"


def test_the_prelude_names_every_status_and_reply_code():
    prelude = script_source("dispatch")
    for status in JobStatus:
        assert f"{status.name} = '{status.value}'" in prelude
    for code in Reply:
        assert f"{code.name} = '{code.value}'" in prelude
    assert set(SCRIPT_NAMES) | set(LIBRARY) == {p.stem for p in LUA_DIR.glob("*.lua")}


def _header_args(text: str) -> list[str]:
    return re.findall(r"^-- A\.(\w+):", text, re.M)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_each_script_reads_its_arguments_by_the_names_of_its_argument_type(name):
    """The header lists the argument type's fields in order; the script reads only those, by
    name (never ARGV[n]), and reads each of them."""
    cls = ARGS[name]
    text = (LUA_DIR / f"{name}.lua").read_text()
    assert _header_args(text) == cls.names()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    used = set(re.findall(r"\bA\.(\w+)", body))
    assert used == set(cls.names()), f"{name}.lua reads {sorted(used)}"
    assert "ARGV" not in body


def test_in_the_library_only_rest_argv_reads_argv():
    touching = {
        part: [
            line.strip()
            for line in (LUA_DIR / f"{part}.lua").read_text().splitlines()
            if "ARGV" in line and not line.lstrip().startswith("--")
        ]
        for part in LIBRARY
    }
    assert touching == {
        **{part: [] for part in LIBRARY},
        "_base": ["for i = from, #ARGV do out[#out + 1] = ARGV[i] end"],
    }


def test_argv_renders_each_field_in_order_and_spreads_the_rest():
    args = HeartbeatArgs(
        now=5, delivery="d", ttl_ms=100, current="", shots_done=3, job_ids=("j1", "j2")
    )
    assert args.argv() == [5, "d", 100, "", 3, "j1", "j2"]
    assert HeartbeatArgs.rest() == "job_ids" and DispatchArgs.rest() is None
    assert "A.job_ids = rest_argv(7)" in HeartbeatArgs.lua()
    with pytest.raises(TypeError):
        DispatchArgs(1, "q", "t", 1, True, 1, 0.5, 2).argv()  # type: ignore[arg-type]


@pytest.mark.parametrize("path", sorted(LUA_DIR.glob("*.lua")), ids=lambda p: p.name)
def test_records_are_read_by_names_their_field_list_has(path):
    """Every `read_record(key, record, 'field', ...)` names fields of core/records.py's list
    for that record (the script checks it again as it runs); no record is read by index."""
    text = path.read_text()
    for record, names in re.findall(r"read_record\([^,]+, '(\w+)',((?:\s*'\w+',?)+)\)", text):
        fields = re.findall(r"'(\w+)'", names)
        assert set(fields) <= set(RECORD_FIELDS[record]), (path.name, record, fields)
    assert not re.search(r"'HMGET', (?:K\.(?:job|batch|project)\(|batch,|job,)", text), path.name


def test_an_error_inside_a_script_names_its_file_and_line(redis_only):
    """Redis reports a line of the whole text it ran; the caller sees the part's own."""
    scripts = Scripts(redis_only, NS)
    with pytest.raises(redis.exceptions.ResponseError) as raised:
        scripts.run(CommitJobsArgs(T0, "d", ("job-1", "FINE", "", "", "")), keys=["x"])
    lines = (LUA_DIR / "commit_jobs.lua").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "is not DONE or ERROR" in text)
    assert f"commit_jobs.lua:{line}:" in str(raised.value), str(raised.value)
    assert "user_script" not in str(raised.value)
    # The same from several scripts run in one round trip: the others still ran.
    fine = HashRowsArgs('["status"]')
    with pytest.raises(redis.exceptions.ResponseError) as raised:
        scripts.run_many(
            [(fine, ["a"]), (CommitJobsArgs(T0, "d", ("job-1", "FINE", "", "", "")), ["x"])]
        )
    assert f"commit_jobs.lua:{line}:" in str(raised.value), str(raised.value)
    assert scripts.run_many([(fine, ["a"]), (fine, ["b"])]) == ["[[false]]", "[[false]]"]
    redis_only.script_flush()  # as a restarted Redis: each runs once, loaded again
    assert scripts.run_many([(fine, ["a"]), (fine, ["b"])]) == ["[[false]]", "[[false]]"]


def test_no_python_module_but_replies_reads_a_reply_code():
    """Callers get typed results: only core/replies.py looks at a reply's first item."""
    readers = [
        path.relative_to(ROOT).as_posix()
        for room in ROOM_IMPORTS
        for path in (ROOT / room).rglob("*.py")
        if "reply[0]" in path.read_text()
    ]
    assert readers == ["core/replies.py"]


def test_the_transition_tables_hold_only_moves_that_happen():
    """Nothing ends a batch ERROR, and a job is never failed before a worker claimed it."""
    assert all(BatchStatus.ERROR not in targets for targets in BATCH_TRANSITIONS.values())
    assert JobStatus.ERROR not in JOB_TRANSITIONS[JobStatus.PENDING]


def test_a_forbidden_move_inside_a_script_is_a_typed_error(redis_only):
    """A job whose stored status the table does not know (say, written by a newer version)
    stops the cancel before it writes anything of that job, as InvalidTransition."""
    store = Store(Db.of(redis_only, NS))
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
        job_key = Store(Db.of(cluster.client, cluster.settings.namespace)).keys.job(job_id)
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
        "import sys, scheduler.loop; "
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
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages - {"tests", "bench"} == set(ROOM_IMPORTS)
    wrong = []
    for room in ROOM_IMPORTS:
        for path in (ROOT / room).rglob("*.py"):
            wrong += _foreign_imports(path, room)
    assert wrong == []


def _foreign_imports(path: Path, room: str) -> list[str]:
    """The imports of `path` (of room `room`) from rooms its row does not list."""
    wrong = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        for name in names:
            other = name.split(".")[0]
            if other in ROOM_IMPORTS and other != room and other not in ROOM_IMPORTS[room]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    return wrong


def test_the_snapshot_reader_reads_batch_fields_by_their_names():
    from core.records import BATCH_FIELDS
    from scheduler import reader

    assert set(reader._WAITING_FIELDS) | set(reader._HOLDING_FIELDS) <= set(BATCH_FIELDS)
