"""MUNGE authentication (core/munge.py, issue #27): a real munged started here with its own key
and socket, credentials made by Debian's `munge` as a Slurm job's client would, decoded
through libmunge; the replay rule (a credential decoded once is accepted again only while it
lives and only from the host that made it), and every refusal with the reason it gives."""

from __future__ import annotations

import json
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
from core.errors import Conflict, InvalidRequest, Unauthorized
from core.keys import Keys
from core.munge import MAX_CREDENTIAL_CHARS, CredentialBook, Munge
from tests.factories import NS
from tests.helpers import wait_for

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
def book(munged: Munged, redis_only) -> CredentialBook:
    return CredentialBook(redis_only, NS, Munge(munged.socket))


def test_a_credential_names_its_maker_and_is_remembered_while_it_lives(munged, book, redis_only):
    credential = munged.credential(ttl_s=60)
    now = time.time()
    who = book.identify(credential, "127.0.0.1", now)
    assert (who.uid, who.gid) == (os.getuid(), os.getgid())
    assert who.address == "127.0.0.1" and now < who.expires_s <= now + 61
    # qrmi sends it again with every request: the same host is let in, for as long as it lives.
    assert book.identify(credential, "127.0.0.1", now + 1) == who
    assert book.identify(credential, "::ffff:127.0.0.1", now + 2) == who
    [key] = redis_only.keys(Keys(NS).munge_credential("*"))
    assert json.loads(redis_only.get(key))["uid"] == os.getuid()
    assert 0 < redis_only.ttl(key) <= 61
    with pytest.raises(Unauthorized, match="expired MUNGE credential"):
        book.identify(credential, "127.0.0.1", who.expires_s)


def test_a_replay_from_another_host_or_of_an_unseen_credential_is_refused(munged, book):
    credential = munged.credential()
    with pytest.raises(Unauthorized, match="another host"):
        book.identify(credential, "10.1.2.3", time.time())
    # Its first use was refused: it is not remembered, and munged will not decode it anew.
    with pytest.raises(Unauthorized, match="replayed MUNGE credential"):
        book.identify(credential, "127.0.0.1", time.time())
    # One that something else decoded first (here `unmunge`) is not ours to accept either.
    other = munged.credential()
    subprocess.run(
        ["unmunge", "--socket", munged.socket],
        input=other,
        text=True,
        check=True,
        capture_output=True,
    )
    with pytest.raises(Unauthorized, match="replayed MUNGE credential"):
        book.identify(other, "127.0.0.1", time.time())


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
def test_what_is_not_a_credential_is_refused(book, credential, reason):
    with pytest.raises(Unauthorized, match=reason):
        book.identify(credential, "127.0.0.1", time.time())


def test_a_credential_of_another_key_and_an_expired_one_are_refused(munged, book, tmp_path):
    stranger = Munged(tmp_path / "stranger")  # another cluster's key
    try:
        forged = stranger.credential()
    finally:
        stranger.stop()
    with pytest.raises(Unauthorized, match="invalid MUNGE credential: invalid credential"):
        book.identify(forged, "127.0.0.1", time.time())
    # munged's own clock says it expired (a second to live, two waited).
    short = munged.credential(ttl_s=1)
    time.sleep(2.1)
    with pytest.raises(Unauthorized, match="expired MUNGE credential"):
        book.identify(short, "127.0.0.1", time.time())


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
    env = {**os.environ, "TWEEZER_REDIS_URL": _url(redis_only), "TWEEZER_NAMESPACE": NS}

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
    both = tweezer("user", "add", "eve", "--unix-uid", "7", "--unix-user", root)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert Accounts(redis_only, NS).get_user("eve") is None


def _stored(client) -> tuple[list[str], int]:
    """Every key, and how many audit entries: what a refusal must leave as it was."""
    return sorted(client.keys("*")), client.xlen(Keys(NS).audit())


def _url(client) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://:{kwargs['password']}@{kwargs['host']}:{kwargs['port']}/0"
