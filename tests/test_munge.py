"""MUNGE authentication (core/munge.py, issue #27): a real munged started here with its own key
and socket, credentials made by Debian's `munge` as a Slurm job's client would, decoded
through libmunge, every refusal with the reason it gives (a replay among them: qrmi makes a
new credential for every request); and the Tweezer user each Unix uid is."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.accounts import Accounts, User
from core.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from core.keys import Keys
from core.munge import MAX_CREDENTIAL_CHARS, Munge, authenticate
from tests.factories import NS
from tests.helpers import redis_url, wait_for

MUNGED = shutil.which("munged") or "/usr/sbin/munged"


class Munged:
    """A munged of its own: a fresh key, a socket and files under `home`."""

    def __init__(self, home: Path) -> None:
        home.mkdir(mode=0o700, parents=True)
        self.home, self.socket = home, str(home / "socket")
        key = home / "key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.process = subprocess.Popen(
            [
                MUNGED,
                "--foreground",
                "--force",  # tests run as root, and the socket's directory is private
                f"--socket={self.socket}",
                f"--key-file={key}",
                f"--pid-file={home / 'pid'}",
                f"--seed-file={home / 'seed'}",
                f"--log-file={home / 'log'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: Path(self.socket).exists(), timeout_s=10)

    def credential(self, ttl_s: int | None = None) -> str:
        """A credential of an empty payload, as qrmi's client makes one."""
        ttl = ["--ttl", str(ttl_s)] if ttl_s is not None else []
        made = subprocess.run(
            ["munge", "--socket", self.socket, "--no-input", *ttl],
            capture_output=True,
            text=True,
            check=True,
        )
        return made.stdout.strip()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def munged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Munged]:
    daemon = Munged(tmp_path_factory.mktemp("munge") / "home")
    yield daemon
    daemon.stop()


@pytest.fixture
def munge(munged: Munged) -> Munge:
    return Munge(munged.socket)


def test_a_credential_names_its_maker_once(munged, munge):
    credential = munged.credential(ttl_s=60)
    now = time.time()
    who = authenticate(munge, credential, now)
    assert (who.uid, who.gid) == (os.getuid(), os.getgid())
    assert who.address == "127.0.0.1" and now < who.expires_s <= now + 61
    # qrmi makes a new one for every request: one seen before was copied.
    with pytest.raises(Unauthorized, match="replayed MUNGE credential"):
        authenticate(munge, credential, now + 1)
    # One that something else decoded first (here `unmunge`) likewise.
    other = munged.credential()
    unmunge = ["unmunge", "--socket", munged.socket]
    subprocess.run(unmunge, input=other, text=True, check=True, capture_output=True)
    with pytest.raises(Unauthorized, match="replayed MUNGE credential"):
        authenticate(munge, other, time.time())
    # Past its time to live by the clock passed in (munged's own: the last test).
    with pytest.raises(Unauthorized, match="expired MUNGE credential"):
        authenticate(munge, munged.credential(ttl_s=60), now + 61)


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        (None, "missing MUNGE credential"),
        ("", "missing MUNGE credential"),
        ("MUNGE:not-a-credential:", "invalid MUNGE credential: invalid credential format"),
        ("x" * (MAX_CREDENTIAL_CHARS + 1), "invalid MUNGE credential"),
        ("MUNGE:é:", "invalid MUNGE credential"),
    ],
)
def test_what_is_not_a_credential_is_refused(munge, credential, reason):
    with pytest.raises(Unauthorized, match=reason):
        authenticate(munge, credential, time.time())


def test_a_credential_of_another_key_and_an_expired_one_are_refused(munged, munge, tmp_path):
    stranger = Munged(tmp_path / "stranger")  # another cluster's key
    try:
        forged = stranger.credential()
    finally:
        stranger.stop()
    with pytest.raises(Unauthorized, match="invalid MUNGE credential: invalid credential"):
        authenticate(munge, forged, time.time())
    # munged's own clock says it expired (a second to live, two waited).
    short = munged.credential(ttl_s=1)
    time.sleep(2.1)
    with pytest.raises(Unauthorized, match="expired MUNGE credential"):
        authenticate(munge, short, time.time())


# Which Tweezer user a credential's uid is (`tweezer user add NAME --unix-uid UID`).


def test_a_unix_uid_is_one_users_and_a_refusal_stores_nothing(redis_only):
    accounts = Accounts(redis_only, NS)
    accounts.create_user("ada", unix_uid=1001)
    assert accounts.user_of_unix_uid(1001) == User("ada", False, False, 1001)
    assert accounts.user_of_unix_uid(1002) is None
    before = _stored(redis_only)
    with pytest.raises(Conflict, match="Unix uid 1001 is already user 'ada'"):
        accounts.create_user("bob", unix_uid=1001)
    with pytest.raises(InvalidRequest, match="a Unix uid is 0 to 4294967294"):
        accounts.create_user("bob", unix_uid=2**32 - 1)
    assert _stored(redis_only) == before and accounts.get_user("bob") is None


def test_tweezer_user_add_maps_a_unix_account_without_a_password(redis_only):
    env = {**os.environ, "TWEEZER_REDIS_URL": redis_url(redis_only), "TWEEZER_NAMESPACE": NS}

    def tweezer(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            env=env,
            stdin=subprocess.DEVNULL,  # nothing to read: no password is asked
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = tweezer("user", "add", "ada", "--unix-uid", "1001")
    assert added.returncode == 0 and "user added: ada (Unix uid 1001)" in added.stdout
    root = pwd.getpwuid(0).pw_name
    assert tweezer("user", "add", "boss", "--unix-user", root).returncode == 0
    listed = tweezer("user", "list").stdout.splitlines()
    assert "ada unix-uid=1001" in listed and "boss unix-uid=0" in listed
    unknown = tweezer("user", "add", "eve", "--unix-user", "no-such-account")
    assert unknown.returncode == 2 and "no Unix user 'no-such-account'" in unknown.stderr
    taken = tweezer("user", "add", "eve", "--unix-uid", "1001")
    assert taken.returncode != 0 and "already user 'ada'" in taken.stderr
    assert tweezer("user", "set", "boss", "--unix-uid", "4321").returncode == 0
    assert "boss unix-uid=4321" in tweezer("user", "list").stdout.splitlines()
    idle = tweezer("user", "set", "boss")
    assert idle.returncode == 2 and "nothing to set" in idle.stderr
    both = tweezer("user", "add", "eve", "--unix-uid", "7", "--unix-user", root)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert Accounts(redis_only, NS).get_user("eve") is None


def _stored(client) -> tuple[list[str], int]:
    """Every key, and how many audit entries: what a refusal must leave as it was."""
    return sorted(client.keys("*")), client.xlen(Keys(NS).audit())


def test_an_existing_user_is_mapped_and_remapped_and_given_its_slurm_project(redis_only):
    accounts = Accounts(redis_only, NS)
    accounts.create_user("ada")
    accounts.create_user("bob", unix_uid=2002)
    project = accounts.create_project("optics").id
    accounts.map_unix_account("ada", 1001)
    accounts.map_unix_account("ada", 1005, slurm_project=project)  # a new uid frees the old
    assert accounts.user_of_unix_uid(1001) is None
    assert accounts.user_of_unix_uid(1005) == User("ada", False, False, 1005, project)
    before = _stored(redis_only)
    with pytest.raises(Conflict, match="Unix uid 2002 is already user 'bob'"):
        accounts.map_unix_account("ada", 2002)
    with pytest.raises(NotFound, match="project nope not found"):
        accounts.map_unix_account("ada", slurm_project="nope")
    with pytest.raises(NotFound, match="user 'eve' not found"):
        accounts.map_unix_account("eve", 7)
    assert _stored(redis_only) == before
