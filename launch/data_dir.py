"""Where a cluster started by `tweezer up` keeps its data, and how other commands find it.

`--data-dir DIR`, else TWEEZER_DATA_DIR, else `.tweezer` in the current directory. The cluster
writes `cluster.json` there once it can serve (launch/cluster.py); every command that talks to a
running cluster reads it through `read_cluster_info`, which says what to do when it is missing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from core.errors import ConfigurationError

DATA_DIR_ENV = "TWEEZER_DATA_DIR"
INFO_FILE = "cluster.json"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or ".tweezer")


def add_data_dir_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"{what} (default: ${DATA_DIR_ENV}, else .tweezer/)",
    )


def resolve(data_dir: Path | None) -> Path:
    """The data dir a command was given, or the default one."""
    return data_dir if data_dir is not None else default_data_dir()


def read_cluster_info(data_dir: Path | None) -> dict[str, Any]:
    """The connection details of the cluster in `data_dir` (cluster.json)."""
    directory = resolve(data_dir)
    path = directory / INFO_FILE
    how = (
        "--data-dir"
        if data_dir is not None
        else (DATA_DIR_ENV if os.environ.get(DATA_DIR_ENV) else "the default, .tweezer/ here")
    )
    if not path.exists():
        raise ConfigurationError(
            f"no cluster in {directory.resolve()} (from {how}): {INFO_FILE} appears there once "
            f"`tweezer up --data-dir DIR` is serving; pass --data-dir DIR or set {DATA_DIR_ENV}"
        )
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    return info


def write_cluster_info(data_dir: Path, info: dict[str, Any]) -> None:
    """Writes cluster.json whole or not at all (a reader never sees half of it), 0600: it holds
    a token."""
    path = data_dir / INFO_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(info, indent=2) + "\n")
    partial.chmod(0o600)
    partial.replace(path)
