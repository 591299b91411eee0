"""`tweezer api`: the Flask app under gunicorn."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from gunicorn.app.base import BaseApplication

from core.settings import Settings

#: gunicorn's default format with `%(U)s` (path) in place of the request line `%(r)s`.
ACCESS_LOG_FORMAT = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s" %(L)ss'


def _worker_exited(server: Any, worker: Any) -> None:
    """A gunicorn worker died: its live gauges leave the sums (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from api import create_app

        return create_app(self.settings)


def serve(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    # Request metrics are kept per worker process in files prometheus_client sums at each
    # scrape (api/metrics.py): a directory of this server's own, set before any worker starts.
    own_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if own_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tweezer-metrics-")
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        # Above the SDK's 30 s request timeout is pointless; a slow request is a bug to see.
        "timeout": 60,
        "graceful_timeout": 10,
        "accesslog": "-",
        # The path without its query string: a results link's signature (a bearer credential
        # for an hour) must not sit in whatever log the operator keeps. Tokens travel in the
        # Authorization header, which is never logged.
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "loglevel": "info",
        "child_exit": _worker_exited,
    }
    if own_dir:  # the request counts of a stopped server mean nothing to the next one
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        options["on_exit"] = lambda _server: shutil.rmtree(directory, ignore_errors=True)
    _Gunicorn(settings, options).run()
