"""A redis-server of our own: `tweezer up` runs one in its data dir, and so does every test.

Configured as the system of record needs (reliability.md §1.4, §2.1): AOF on with an fsync per
write (an acknowledged batch survives `kill -9` of Redis), `noeviction` (a full Redis refuses
writes instead of dropping keys) under a `maxmemory` that leaves the host room, bound to
loopback with protected mode on, and with a password when given one: loopback alone lets every
other account of the machine in. The password goes into a 0600 config file, never onto the
command line (which any account can read in the process list).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import redis

from core.errors import ConfigurationError
from launch.supervision import DataDirLock, die_with_parent


def default_maxmemory_bytes() -> int:
    """A quarter of the host's memory, at least 256 MiB: a full store refuses writes (503)
    long before the host runs out of memory."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(256 * 1024**2, physical // 4)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: Longest field value a hash keeps in its compact encoding (Redis's default is 64 bytes; a job's
#: JSON fields are often longer). As in deploy/redis.conf.
HASH_MAX_LISTPACK_VALUE = 512


class RedisServer:
    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        appendfsync: str = "always",
        extra_args: tuple[str, ...] = (),
        maxmemory_bytes: int | None = None,
        password: str | None = None,
        supervised_by: DataDirLock | None = None,
        bind: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:
        self.data_dir = Path(data_dir)
        #: `tweezer up`'s lock: then redis-server holds it too and dies with `tweezer up`
        #: (launch/supervision.py); None (tests, tools): it runs until stopped.
        self.supervised_by = supervised_by
        #: Addresses it listens on: loopback, and a test network's address for `tweezer chaos`.
        self.bind = bind
        #: None: Redis's own default (no limit).
        self.maxmemory_bytes = maxmemory_bytes
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.extra_args = extra_args
        #: Required of every client (`requirepass`); None: none.
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = "" if self.password is None else f":{quote(self.password, safe='')}@"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "redis.conf"

    def _write_config(self) -> None:
        """The settings that must not show in the process list, in a file only we can read."""
        lines = [] if self.password is None else [f'requirepass "{self.password}"']
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as config:
            config.write("".join(line + "\n" for line in lines))
        self.config_path.chmod(0o600)  # an older file may have had other bits

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigurationError(
                "redis-server is not installed: run `make install` (it installs Debian's "
                "redis-server package) or `apt-get install redis-server`, or pass --redis-url"
            )
        return [
            binary,
            str(self.config_path),
            "--port",
            str(self.port),
            "--bind",
            " ".join(self.bind),
            "--protected-mode",
            "yes",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            # A job's record (its variables, warnings, errors, attempt history) stays one
            # compact listpack rather than a hash table: less than half the memory.
            "--hash-max-listpack-value",
            str(HASH_MAX_LISTPACK_VALUE),
            "--logfile",
            str(self.data_dir / "redis.log"),
            *(() if self.maxmemory_bytes is None else ("--maxmemory", str(self.maxmemory_bytes))),
            *self.extra_args,
        ]

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._write_config()
        lock_fd = None if self.supervised_by is None else self.supervised_by.fd
        self.process = subprocess.Popen(
            self.command(),
            start_new_session=True,
            preexec_fn=None if lock_fd is None else die_with_parent(),
            pass_fds=() if lock_fd is None else (lock_fd,),
        )
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                # Ready means the AOF is loaded, not merely that the port accepts connections.
                if client.info("persistence").get("loading") == 0:
                    return
            except redis.exceptions.RedisError:
                pass
            if self.process is not None and self.process.poll() is not None:
                log = self.data_dir / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise ConfigurationError(f"redis-server exited at start:\n{tail}")
            if time.monotonic() > deadline:
                raise ConfigurationError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: Redis fsyncs the AOF and exits
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
