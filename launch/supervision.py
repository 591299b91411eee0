"""What keeps one `tweezer up` the only cluster on its data dir, and its processes tied to it.

- **Children die with their supervisor.** Every child (redis-server included) is started with
  Linux's parent-death signal set to SIGKILL: however `tweezer up` dies (SIGKILL, the OOM
  killer, a closed terminal), the kernel kills its children at once. Their own children follow:
  Celery's pool processes set the same signal, gunicorn's workers exit when their arbiter
  changes. SIGKILL rather than SIGTERM: a warm shutdown could keep an orphan running jobs for
  minutes, and nothing is lost by a kill (Redis fsyncs every write; the reconciler runs
  unfinished jobs again). A clean stop (Ctrl-C, SIGTERM) still stops children gracefully.
- **One cluster per data dir.** `tweezer up` takes an exclusive `flock` on
  `<data-dir>/tweezer.lock` and every child inherits the locked descriptor: the lock is free
  only once the supervisor *and every process it started* are gone. A second `tweezer up` on
  the data dir meanwhile is refused, naming the processes that hold it. (A pid file alone
  cannot say whether its pid was reused; a lock held by the kernel cannot be stale.)
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from core.errors import ConfigurationError

LOCK_FILE = "tweezer.lock"
_PR_SET_PDEATHSIG = 1
#: Loaded before any fork: a child between fork and exec calls only into it.
_libc = ctypes.CDLL(None, use_errno=True) if hasattr(os, "fork") else None


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for Popen: the child gets SIGKILL when its parent dies. Linux ties the
    signal to the *thread* that started the child, so it is armed only for children started
    from the main thread (which lives as long as the process: `tweezer up` starts every child
    there); from any other thread, None (a test that starts a cluster in a thread would see
    it killed when that thread ends). Must be called in the parent (it notes the parent's
    pid)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def arm() -> None:
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


class DataDirLock:
    """The exclusive lock of one data dir, held from `acquire` until the process and every
    child that inherited `fd` have exited."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> DataDirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise ConfigurationError(self._held_message()) from None
        # Who holds it, for the message a second `tweezer up` prints.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _held_message(self) -> str:
        recorded = self.path.read_text().strip() if self.path.exists() else ""
        holders = holders_of(self.path)
        names = ", ".join(f"{pid} ({describe(pid)})" for pid in holders) or "unknown processes"
        alive = recorded.isdigit() and Path(f"/proc/{recorded}").exists()
        who = (
            f"`tweezer up` (pid {recorded}) runs a cluster on it"
            if alive
            else f"processes of a cluster whose `tweezer up` (pid {recorded or '?'}) is gone "
            "still hold it"
        )
        return (
            f"the data dir {self.path.parent} is in use: {who}; held by {names}. Stop that "
            "cluster first (Ctrl-C in its terminal, or SIGTERM to its `tweezer up`), or use "
            "another --data-dir"
        )


def holders_of(path: Path) -> list[int]:
    """The processes with `path` open (those this account may look at), from /proc."""
    target = os.path.realpath(path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # gone meanwhile, or another account's
            continue
        if target in links:
            found.append(int(entry.name))
    return sorted(found)


def describe(pid: int) -> str:
    """A process's command line, shortened (for messages)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    text = " ".join(words)
    return text if len(text) <= 80 else text[:77] + "..."


def check_port_free(host: str, port: int) -> None:
    """Refuses (ConfigurationError) a port another process listens on: the API would
    crash-loop on it, and its readiness check would reach the other process."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve the API on {host}:{port}: {exc.strerror}; pick another --port"
            ) from None
