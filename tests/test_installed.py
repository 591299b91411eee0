"""What users install, not the editable checkout: the Docker image's build context (its COPY
lines) installed with the image's own install command into a fresh virtualenv outside the
checkout, then run from another directory: the image's commands as deploy/compose.yaml runs
them (as the image's unprivileged user), and `tweezer up`, `status`, `simulate` and `report`
as the README runs them. No Docker daemon runs here: this is the image without the container.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml
from pulser.devices import AnalogDevice

from launch.redis_server import RedisServer, free_port
from tests import sequences
from tests.conftest import Account, make_sdk
from tests.helpers import wait_for

ROOT = Path(__file__).parent.parent
#: Top-level packages of the checkout that are tools for its developers, never installed.
DEV_ONLY = {"tests", "bench"}
JOB = {"runs": 20, "variables": {"omega_max": 6}}


@dataclass
class Dockerfile:
    """What the Dockerfile says about building and running the image."""

    workdir: str = "/"
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    install: list[str] = field(default_factory=list)
    user: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def read_dockerfile(path: Path) -> Dockerfile:
    """The instructions this test replays (continuation lines joined, comments dropped)."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    image = Dockerfile()
    for line in joined.splitlines():
        if not line.strip():
            continue
        instruction, _, rest = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "WORKDIR":
            image.workdir = rest.strip()
        elif instruction == "COPY":
            *sources, destination = shlex.split(rest)
            image.copies.append((sources, destination))
        elif instruction == "ENV":
            image.env.update(dict(word.split("=", 1) for word in shlex.split(rest)))
        elif instruction == "RUN":
            for command in rest.split("&&"):
                argv = shlex.split(command)
                if argv[:2] == ["pip", "install"]:
                    image.install = argv
        elif instruction == "USER":
            image.user = rest.strip()
        elif instruction == "ENTRYPOINT":
            image.entrypoint = json.loads(rest)
        elif instruction == "CMD":
            image.cmd = json.loads(rest)
    assert image.install, "the Dockerfile installs Tweezer with `pip install`"
    return image


@dataclass
class LabProbe:
    importable: list[str]
    report: subprocess.CompletedProcess[str]


def _lab_probe(venv: Path, root: Path) -> LabProbe:
    """Which of the lab extra's packages the install holds, and what `tweezer simulate` of a
    YAML workload says."""
    python = str(venv / "bin" / "python")
    found = subprocess.run(
        [
            python,
            "-c",
            "from cli.main import LAB_MODULES as m; import importlib.util as u;"
            " print(' '.join(sorted(x for x in m if u.find_spec(x))))",
        ],
        capture_output=True,
        text=True,
        cwd=root,
        env=_clean_env(),
        check=True,
    )
    workload = root / "probe-workload.yaml"
    workload.write_text("seed: 1\nprojects: []\n")
    report = subprocess.run(
        [str(venv / "bin" / "tweezer"), "simulate", "--workload", str(workload)],
        capture_output=True,
        text=True,
        cwd=root,
        env=_clean_env(),
        timeout=120,
    )
    return LabProbe(found.stdout.split(), report)


@dataclass
class Installed:
    """The image's file system as far as Tweezer goes: its work dir and its virtualenv."""

    root: Path
    workdir: Path
    venv: Path
    dockerfile: Dockerfile
    #: What the image's install says of the lab's tools, probed before any test adds the extra.
    lab_probe: LabProbe

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def command(self, name: str) -> Path:
        return self.venv / "bin" / name

    def site_packages(self) -> Path:
        found = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
            cwd=self.root,
        )
        return Path(found.stdout.strip())


def _ignored(patterns: list[str]) -> Any:
    """shutil.copytree's filter for .dockerignore patterns that name files anywhere."""
    names = [p.removeprefix("**/") for p in patterns if p.startswith("**/")]
    return shutil.ignore_patterns(*names)


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    dockerfile = read_dockerfile(ROOT / "Dockerfile")
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    # Readable by the image's unprivileged user (pytest's own temp dirs are root's alone).
    root = Path(tempfile.mkdtemp(prefix="tweezer-image-"))
    root.chmod(0o755)
    workdir = root / dockerfile.workdir.lstrip("/")
    workdir.mkdir(parents=True)
    for sources, destination in dockerfile.copies:
        target = workdir / destination
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target, ignore=_ignored(ignore))
            else:
                shutil.copy(path, target / path.name if destination.endswith("/") else target)
    venv = root / "venv"
    _make_venv(venv)
    # The image's own command, with the virtualenv's pip for the image's.
    install = [str(venv / "bin" / "python"), "-m", *dockerfile.install]
    done = subprocess.run(
        install,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
        env={**_clean_env(), **dockerfile.env},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    try:
        yield Installed(root, workdir, venv, dockerfile, _lab_probe(venv, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _world_executable(path: Path) -> bool:
    """Whether any account may run `path` (every directory above it searchable by others)."""
    real = path.resolve()
    return all(p.stat().st_mode & 0o001 for p in (real, *real.parents))


def _make_venv(venv: Path) -> None:
    """A fresh virtualenv, preferably of a Python that the image's unprivileged user may run
    too (the image's is /usr/local/bin/python; a pyenv Python under /root is root's alone),
    else of this test's own Python (the processes then run as this user)."""
    ours = Path(getattr(sys, "_base_executable", sys.executable))
    candidates = [ours, *(Path(p) for p in (shutil.which("python3.11"), "/usr/bin/python3") if p)]
    shared = [c for c in candidates if c.exists() and _world_executable(c)]
    for python in [*shared, ours]:
        shutil.rmtree(venv, ignore_errors=True)
        made = subprocess.run([str(python), "-m", "venv", str(venv)], capture_output=True)
        if made.returncode == 0 and (venv / "bin" / "pip").exists():
            return
    raise AssertionError(f"cannot make a virtualenv: {made.stderr.decode()[-2000:]}")


def _clean_env() -> dict[str, str]:
    """This process's environment without what would let the checkout leak into the
    installed programs (the test venv's paths, pytest's PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if not p.startswith(str(ROOT)))
    return env


def _shipped_packages() -> set[str]:
    """The top-level packages pyproject.toml's package discovery includes."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*").rstrip(".") for pattern in include}


def _checkout_files(package: str) -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", package], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return set(listed)


def test_the_installed_distribution_holds_every_file_of_the_checkouts_packages(installed):
    shipped = _shipped_packages()
    top_level = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert top_level - DEV_ONLY == shipped, (
        "every top-level package is either installed (pyproject's include) or a dev tool"
    )
    record = next(installed.site_packages().glob("tweezer-*.dist-info")) / "RECORD"
    in_wheel = {line.split(",")[0] for line in record.read_text().splitlines()}
    in_checkout = set().union(*(_checkout_files(p) for p in shipped))
    assert in_checkout, "git lists the checkout's files"
    # Modules and what processes read at run time (Lua scripts, the dashboard's files) alike.
    assert sorted(in_checkout - in_wheel) == []
    # Nothing of the checkout is imported: the modules come from the virtualenv.
    where = subprocess.run(
        [str(installed.python), "-c", "import workers.drivers as d; print(d.__file__)"],
        capture_output=True,
        text=True,
        cwd=installed.root,
        env=_clean_env(),
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(installed.venv)), where.stdout
    check = subprocess.run(
        [str(installed.python), "-m", "pip", "check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # The rooms are top-level packages (docs/design.md, "Rooms"): no other distribution of
    # the environment may ship a module of the same name.
    others = subprocess.run(
        [str(installed.python), "-c", OTHERS_PROBE, *sorted(shipped)],
        capture_output=True,
        text=True,
        cwd=installed.root,
        env=_clean_env(),
        check=True,
    )
    assert others.stdout.split() == [], others.stdout


#: Prints `distribution:module` for each installed distribution other than tweezer whose files
#: include a top-level module or package named in argv.
OTHERS_PROBE = """
import sys
from importlib import metadata
names = set(sys.argv[1:])
for dist in metadata.distributions():
    if dist.metadata["Name"].lower() == "tweezer":
        continue
    tops = {str(f).split("/")[0].removesuffix(".py") for f in dist.files or ()}
    for name in sorted(tops & names):
        print(f"{dist.metadata['Name']}:{name}")
"""


@dataclass
class Processes:
    """Processes of one test, each with its output in a file (shown when the test fails)."""

    logs: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **popen)
        log.close()
        self.started.append((name, process))
        return process

    def output(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.logs.glob("*.log"))
        )

    def stop(self) -> dict[str, int]:
        for _, process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in self.started:
            try:
                codes[name] = process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        return codes


def _compose_env(port: int, redis_url: str) -> dict[str, str]:
    """deploy/compose.env.example with this test's Redis, address and secrets in it."""
    env = {}
    for line in (ROOT / "deploy" / "compose.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    env.update(
        TWEEZER_REDIS_URL=redis_url,
        TWEEZER_PUBLIC_URL=f"http://127.0.0.1:{port}",
        TWEEZER_RESULTS_SECRET=secrets.token_hex(16),
        TWEEZER_AUTH_SECRET=secrets.token_hex(32),
        # A fast virtual QPU, as a demo's compose.env would set.
        TWEEZER_BRIDGE_SPEEDUP="200",
    )
    return env


def _as_user(user: str, python: Path) -> Any:
    """preexec_fn that drops to the image's USER (numeric), when this test runs as root and
    the virtualenv's interpreter is one that user may run."""
    if os.geteuid() != 0 or not user.isdigit() or not _world_executable(python):
        return None
    uid = int(user)

    def drop() -> None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    return drop


def _served_batches(api_url: str, account: Account) -> None:
    """A batch through the SDK to DONE on EMU_FREE and on FRESNEL (the bridge)."""
    sdk = make_sdk(api_url + "/core-fast", api_url + "/account", account)
    emulated = sdk.create_batch(sequences.parametrized(), [JOB], device_type="EMU_FREE", wait=True)
    assert emulated.status == "DONE", emulated.status
    assert sum(emulated.ordered_jobs[0].result.values()) == 20
    on_qpu = sdk.create_batch(
        str(sequences.fresnel(AnalogDevice).to_abstract_repr()),
        [JOB],
        device_type="FRESNEL",
        wait=True,
    )
    assert on_qpu.status == "DONE", on_qpu.status
    assert sum(on_qpu.ordered_jobs[0].result.values()) == 20


def _account(tweezer: Path, env: dict[str, str], cwd: Path) -> Account:
    """A user, a project and a token, made with the installed admin commands."""

    def run(*args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [str(tweezer), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip()

    run("user", "add", "ada", stdin="correct horse battery staple\n")
    project = run("project", "add", "optics").split()[-1]
    run("project", "member", "add", project, "ada")
    token = run("token", "issue", "ada").split()[-1]
    return Account("ada", project, token)


def test_the_images_commands_serve_batches_on_every_default_device_type(installed, tmp_path):
    """Each service of deploy/compose.yaml built from the image, with its `command`, the
    image's ENTRYPOINT, ENV, USER and WORKDIR, and compose.env's settings."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    redis_server = RedisServer(tmp_path / "redis", password=secrets.token_hex(16)).start()
    port = free_port()
    image = installed.dockerfile
    env = {**_clean_env(), **image.env, **_compose_env(port, redis_server.url)}
    env["HOME"] = "/nonexistent"  # the image's user has no home (useradd --home-dir)
    entrypoint = [str(installed.command(image.entrypoint[0])), *image.entrypoint[1:]]
    processes = Processes(tmp_path)
    try:
        for name, service in compose["services"].items():
            if "build" not in service:  # redis: not ours
                continue
            command = [
                {"0.0.0.0": "127.0.0.1", "8000": str(port)}.get(word, word)
                for word in service.get("command", image.cmd)
            ]
            for replica in range(service.get("deploy", {}).get("replicas", 1)):
                processes.start(
                    f"{name}-{replica}",
                    [*entrypoint, *command],
                    env=env,
                    cwd=installed.workdir,
                    preexec_fn=_as_user(image.user, installed.python),
                )
        api = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return requests.get(api + "/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_for(ready, timeout_s=60)
        except AssertionError:
            pytest.fail("the image's processes never got ready:\n" + processes.output())
        if _as_user(image.user, installed.python) is not None:  # they run as the image's user
            uids = {psutil.Process(p.pid).uids().real for _, p in processes.started}
            assert uids == {int(image.user)}
        account = _account(installed.command("tweezer"), env, tmp_path)
        _served_batches(api, account)
    finally:
        codes = processes.stop()
        redis_server.stop()
    assert set(codes.values()) == {0}, f"{codes}\n{processes.output()}"


PLANTED = """import pathlib
pathlib.Path({marker!r}).write_text("planted code ran")
"""

SMALL_TRACE = [
    {"id": "a1", "submit_s": 0, "project": "a", "user": "ua", "jobs": [{"qpu_s": 10}]},
    {"id": "b1", "submit_s": 1, "project": "b", "user": "ub", "jobs": [{"qpu_s": 5}]},
]


def test_the_image_leaves_the_lab_out_and_its_commands_say_what_to_install(installed):
    """The API, scheduler and worker image has none of the lab's own packages (matplotlib
    comes with pulser-core, which draws with it); a lab command run there names the extra
    instead of failing with a traceback."""
    assert installed.lab_probe.importable == ["matplotlib"]
    report = installed.lab_probe.report
    assert report.returncode == 2, report.stdout + report.stderr
    assert "pip install 'tweezer[lab]'" in report.stderr and "Traceback" not in report.stderr
    assert "yaml is not installed" in report.stderr


@pytest.fixture(scope="module")
def with_lab(installed: Installed) -> Installed:
    """The install with the lab extra added, as `pip install 'tweezer[lab]'` does."""
    done = subprocess.run(
        [str(installed.python), "-m", "pip", "install", "--no-compile", ".[lab]"],
        cwd=installed.workdir,
        capture_output=True,
        text=True,
        timeout=600,
        env=_clean_env(),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return installed


def test_tweezer_up_from_the_installed_wheel_in_another_directory(with_lab, tmp_path):
    """The README's commands as an operator runs them after `pip install 'tweezer[lab]'`, from
    a directory that holds modules named like Tweezer's: none of the cluster's processes loads
    them."""
    installed = with_lab
    cwd = tmp_path / "elsewhere"
    marker = tmp_path / "planted-code-ran"
    for package in ("cli", "core", "api", "scheduler", "workers", "lab", "launch"):
        (cwd / package).mkdir(parents=True)
        (cwd / package / "__init__.py").write_text(PLANTED.format(marker=str(marker)))
        (cwd / package / "main.py").write_text(PLANTED.format(marker=str(marker)))
    tweezer = str(installed.command("tweezer"))
    data_dir = tmp_path / "data"
    env = _clean_env()
    port = free_port()
    processes = Processes(tmp_path)
    up = processes.start(
        "up",
        [
            tweezer,
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--bridge-speedup",
            "200",
        ],
        cwd=cwd,
        env=env,
    )
    try:
        try:
            wait_for(lambda: (data_dir / "cluster.json").exists() or up.poll() is not None, 90)
        except AssertionError:
            pytest.fail("tweezer up never served:\n" + processes.output())
        assert up.poll() is None, processes.output()
        info = json.loads((data_dir / "cluster.json").read_text())
        _served_batches(info["api_url"], Account("admin", info["project_id"], info["token"]))

        def run(*args: str) -> str:
            done = subprocess.run(
                [tweezer, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        # The soak's command loads from the install too.
        assert "--faults" in run("chaos", "--help")
        status = run("status", "--data-dir", str(data_dir))
        assert "EMU_FREE-0" in status and "FRESNEL-0" in status
        # The scheduler's forecaster process (python -P -m scheduler.forecaster) runs from the
        # install too: each device type has a fresh forecast.
        forecasts = json.loads(run("status", "--json", "--data-dir", str(data_dir)))
        assert set(forecasts["forecast_at"]) == {"EMU_FREE", "FRESNEL"}, forecasts
        trace = tmp_path / "trace.jsonl"
        trace.write_text("".join(json.dumps(line) + "\n" for line in SMALL_TRACE))
        run("simulate", "--trace", str(trace), "--policy", "fifo", "--out", str(tmp_path / "sim"))
        run("report", str(tmp_path / "sim" / "trace.jsonl"), "--out", str(tmp_path / "report"))
        summary = json.loads((tmp_path / "report" / "summary.json").read_text())
        assert summary["runs"] and list((tmp_path / "report").glob("*.png"))
    finally:
        codes = processes.stop()
    assert codes["up"] == 0, processes.output()
    assert not marker.exists(), "a process of the cluster imported code from its directory"


def test_the_emulators_extra_installed_serves_emu_sv_and_emu_mps(installed, tmp_path):
    """Without the extra, the installed `tweezer up --qpus EMU_SV=1` stops at once and names
    the install command; with `pip install 'tweezer[emulators]'` (torch first, as `make test`
    installs it), the installed cluster runs a job on each of Pasqal's engines."""
    tweezer = str(installed.command("tweezer"))
    env = _clean_env()
    up = [tweezer, "up", "--qpus", "EMU_SV=1,EMU_MPS=1", "--port", str(free_port())]
    refused = subprocess.run(
        [*up, "--data-dir", str(tmp_path / "without")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "pip install 'tweezer[emulators]'" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    done = subprocess.run(
        [str(installed.python), "-m", "pip", "install", "--no-compile", TORCH, ".[emulators]"],
        cwd=installed.workdir,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data_dir = tmp_path / "data"
    processes = Processes(tmp_path)
    cluster = processes.start("up", [*up, "--data-dir", str(data_dir)], cwd=tmp_path, env=env)
    try:
        try:
            wait_for(lambda: (data_dir / "cluster.json").exists() or cluster.poll() is not None, 90)
        except AssertionError:
            pytest.fail("tweezer up never served:\n" + processes.output())
        assert cluster.poll() is None, processes.output()
        info = json.loads((data_dir / "cluster.json").read_text())
        sdk = make_sdk(
            info["api_url"] + "/core-fast",
            info["api_url"] + "/account",
            Account("admin", info["project_id"], info["token"]),
        )
        chain = sequences.fixed(duration=200, atoms=3)
        for device_type in ("EMU_SV", "EMU_MPS"):
            batch = sdk.create_batch(chain, [{"runs": 30}], device_type=device_type, wait=True)
            [job] = batch.ordered_jobs
            assert job.status == "DONE", (device_type, job.errors, processes.output())
            assert sum(job.result.values()) == 30
    finally:
        codes = processes.stop()
    assert codes["up"] == 0, processes.output()


def _torch_requirement() -> str:
    """The torch `make test` installs before the extra (the Makefile's TORCH)."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("TORCH ?="):
            return line.partition("=")[2].strip()
    raise AssertionError("the Makefile names no TORCH")


TORCH = _torch_requirement()
