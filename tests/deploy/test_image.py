"""The production image, really built from the Dockerfile and really run (no Docker engine).

`buildah` builds the Dockerfile on a Debian base made by `debootstrap` (tests/deploy/
image_build.py); the image's own entrypoint then runs in the image's root filesystem (chroot
isolation shares the host's network, so the bot reaches the test PostgreSQL and Redis and the
sandbox Slack on 127.0.0.1): `--help`, `migrate`, and `run` until `/readyz` answers 200 and an
alert opens an incident channel. The running process is checked to be uid/gid 10001 inside the
image's root, and the image to hold no sandbox and no development tooling.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import asyncpg
import pytest

from sandbox.services import free_port
from sandbox.slack import SlackSandbox
from tests.deploy.image_build import (
    BASE_CACHE,
    ROOT,
    Buildah,
    ImageError,
    base_key,
    base_tarball,
    debian_mirror,
    host_pip_settings,
    missing_tools,
    new_store,
    remove_store,
)
from tests.integration.rig import AM_TOKEN, group_payload

# Uncached (debootstrap + build) takes about two minutes here; the budget leaves room for a
# loaded machine and a slow mirror.
pytestmark = pytest.mark.timeout(1500)

TAG = "localhost/incidentbot:test"
UID = "10001"
# The image's size, uncompressed: about 480 MB when measured; a jump means something that
# should not ship (a build tool, a cache, the source tree) reached the runtime stage.
MAX_IMAGE_BYTES = 600 * 1000 * 1000
# Modules and commands that belong to development only; the positive control finds every one
# of them in the development virtualenv that runs this test.
DEV_MODULES = ("sandbox", "pytest", "ruff", "mypy", "playwright", "pip", "setuptools")
DEV_COMMANDS = ("pytest", "ruff", "mypy", "playwright", "pip")
SIGNING_SECRET = "image-test-signing-secret-0123456789"


@dataclass(frozen=True)
class BuiltImage:
    buildah: Buildah
    tag: str
    config: dict[str, Any]
    size: int
    timings: dict[str, float]

    def entrypoint(self, *args: str) -> list[str]:
        entrypoint: list[str] = self.config["Entrypoint"]
        return [*entrypoint, *args]


def _fail_on_image_error(exc: ImageError) -> NoReturn:
    pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def image() -> Iterator[BuiltImage]:
    problems = missing_tools()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    mirror = debian_mirror()
    timings: dict[str, float] = {}
    started = time.monotonic()
    cached = (BASE_CACHE / f"bookworm-{base_key(mirror)}.tar").is_file()
    try:
        tarball = base_tarball(mirror)
    except ImageError as exc:
        _fail_on_image_error(exc)
    timings["base (cached)" if cached else "base (debootstrap)"] = time.monotonic() - started
    buildah = Buildah(new_store())
    try:
        started = time.monotonic()
        try:
            base = buildah.import_base(tarball)
            tag = buildah.build(base, TAG, host_pip_settings())
            config = buildah.image_config(tag)
            size = buildah.image_size(tag)
        except ImageError as exc:
            _fail_on_image_error(exc)
        timings["buildah bud"] = time.monotonic() - started
        yield BuiltImage(buildah, tag, config, size, timings)
    finally:
        remove_store(buildah)


@pytest.fixture
def container(image: BuiltImage) -> Iterator[str]:
    name = f"incidentbot-{uuid.uuid4().hex[:8]}"
    image.buildah("from", "--name", name, image.tag)
    try:
        yield name
    finally:
        image.buildah("rm", name)


def run_in(
    image: BuiltImage, container: str, argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        image.buildah.run_argv(container, argv, env or {}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


FIND_MODULES = "import importlib.util as u, sys; print(' '.join(n for n in sys.argv[1:] if u.find_spec(n)))"


def test_image_is_built_non_root_and_holds_no_sandbox_or_dev_tooling(
    image: BuiltImage, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        timings = ", ".join(f"{k} {v:.0f} s" for k, v in image.timings.items())
        print(f"\nimage {image.tag}: {image.size / 1e6:.0f} MB uncompressed; {timings}")
    assert image.config["User"] == f"{UID}:{UID}"
    assert image.entrypoint() == ["incidentbot"] and image.config["Cmd"] == ["run"]
    assert image.size < MAX_IMAGE_BYTES, f"{image.size / 1e6:.0f} MB"

    found = run_in(image, container, ["python", "-c", FIND_MODULES, *DEV_MODULES, "bot", "commands"])
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["bot", "commands"], "only our runtime packages are importable"
    root = Path(image.buildah("mount", container).strip())
    present = [c for c in DEV_COMMANDS if (root / "opt/venv/bin" / c).exists()]
    assert present == []
    assert not (root / "src").exists(), "the build stage's source tree stays in the build stage"
    assert (root / "app/playbooks/policy.yaml").is_file()
    # Positive control: the same probes find every one of them where they are installed.
    here = subprocess.run(
        [sys.executable, "-c", FIND_MODULES, *DEV_MODULES],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert here.stdout.split() == list(DEV_MODULES)
    assert all((Path(sys.executable).parent / c).exists() for c in DEV_COMMANDS)

    sandbox = run_in(image, container, image.entrypoint("sandbox"))
    assert sandbox.returncode == 2
    assert "the sandbox is not part of this installation" in sandbox.stdout + sandbox.stderr
    assert "Traceback" not in sandbox.stdout + sandbox.stderr


def bot_env(
    database_dsn: str, redis_url: str, slack: SlackSandbox | None, port: int = 8080
) -> dict[str, str]:
    """What the chart's Secret and values give the container; Slack is not called without a
    sandbox (`migrate` only reads the settings)."""
    return {
        "SLACK_BOT_TOKEN": slack.bot_token if slack else "xoxb-not-called",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url if slack else "http://127.0.0.1:9/api/",
        "DATABASE_URL": database_dsn,
        "REDIS_URL": redis_url,
        "ALERTMANAGER_WEBHOOK_TOKEN": AM_TOKEN,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "INCIDENT_CHANNEL": "incident",
    }


async def applied_migrations(dsn: str) -> list[str] | None:
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            return None
        return sorted(r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations"))
    finally:
        await conn.close()


async def test_entrypoint_help_and_migrate(
    image: BuiltImage, container: str, database_dsn: str, redis_url: str
) -> None:
    helped = run_in(image, container, image.entrypoint("--help"))
    assert helped.returncode == 0, helped.stderr
    assert "run" in helped.stdout and "migrate" in helped.stdout

    assert await applied_migrations(database_dsn) is None  # control: a fresh database
    migrated = run_in(image, container, image.entrypoint("migrate"), bot_env(database_dsn, redis_url, None))
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    expected = sorted(p.stem.split("_")[0] for p in (ROOT / "bot/store/migrations").glob("*.sql"))
    applied = await applied_migrations(database_dsn)
    assert applied is not None and [v.split("_")[0] for v in applied] == expected


@pytest.fixture
async def slack() -> AsyncIterator[SlackSandbox]:
    sandbox = SlackSandbox(incident_channel="incident")
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited while listing
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def describe(pid: int) -> str:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return f"{pid} {Path(f'/proc/{pid}/comm').read_text().strip()}: {cmdline}"


def bot_process(runner: subprocess.Popen[bytes]) -> int:
    """The bot's own process under `buildah run`: the innermost one (buildah's chroot helpers
    are its parents), running the entrypoint."""
    below = descendants(runner.pid)
    parents = {int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) for p in below}
    pids = [p for p in below if p not in parents and "incidentbot" in describe(p)]
    assert len(pids) == 1, [describe(p) for p in below]
    return pids[0]


def ids(pid: int) -> dict[str, list[str]]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {line.split(":")[0]: line.split()[1:] for line in status if line.startswith(("Uid:", "Gid:"))}


async def wait_ready(
    http: aiohttp.ClientSession, url: str, runner: subprocess.Popen[bytes], log: Path
) -> None:
    async with asyncio.timeout(120):
        while True:
            if runner.poll() is not None:
                pytest.fail(f"the image's bot exited ({runner.returncode}):\n{log.read_text()[-3000:]}")
            try:
                async with http.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def test_run_is_ready_serves_an_alert_as_uid_10001_and_stops_on_sigterm(
    image: BuiltImage, container: str, database_dsn: str, redis_url: str, slack: SlackSandbox, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = bot_env(database_dsn, redis_url, slack, port)
    assert await applied_migrations(database_dsn) is None
    rootfs = Path(image.buildah("mount", container).strip())
    before = await asyncio.to_thread(files_outside_tmp, rootfs)
    log = tmp_path / "bot.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            image.buildah.run_argv(container, image.entrypoint(*image.config["Cmd"]), env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, url, runner, log)
            pid = bot_process(runner)
            assert ids(pid) == {"Uid": [UID] * 4, "Gid": [UID] * 4}
            # It runs inside the image's root file system, not the host's.
            root = Path(f"/proc/{pid}/root")
            assert root.resolve() != Path("/")
            assert (root / "app/playbooks/policy.yaml").is_file() and (
                root / "opt/venv/bin/incidentbot"
            ).is_file()
            assert await applied_migrations(database_dsn) is not None

            async with http.post(
                url + "/webhooks/alertmanager",
                json=group_payload("imagecheck", [("img1", "firing")]),
                headers={"Authorization": f"Bearer {AM_TOKEN}"},
            ) as resp:
                assert resp.status == 200, await resp.text()
            await slack.wait_for(lambda s: s.channels_with_prefix("inc-") or None, timeout=60)

        # What a container runtime does on stop: SIGTERM to the entrypoint's process.
        stopped_at = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        assert await asyncio.to_thread(runner.wait, 60) == 0, log.read_text()[-3000:]
        print(f"stopped in {time.monotonic() - stopped_at:.1f} s")
    finally:
        if runner.poll() is None:
            # buildah ends the process it runs when it is itself terminated (not when killed).
            runner.terminate()
            runner.wait(30)
    assert "Traceback" not in log.read_text()
    # Nothing but /tmp was written: the Helm chart's read-only root file system holds it.
    after = await asyncio.to_thread(files_outside_tmp, rootfs)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert changed == [], changed[:20]


# Kernel and runtime file systems a container runtime provides; /tmp is the writable emptyDir.
_NOT_THE_IMAGE = frozenset({"tmp", "proc", "sys", "dev", "run"})


def files_outside_tmp(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory of the image's root file system outside /tmp, with its size and
    modification time (a write anywhere shows as a change)."""
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        relative = os.path.relpath(dirpath, root)
        if relative == ".":
            dirnames[:] = [d for d in dirnames if d not in _NOT_THE_IMAGE]
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            found[os.path.relpath(path, root)] = (info.st_size, info.st_mtime_ns)
    return found


def test_base_uses_the_debian_mirror_apt_uses(tmp_path: Path) -> None:
    """Both apt source formats; security and other suites are not the base's archive."""
    one_line = tmp_path / "one-line"
    (one_line / "sources.list.d").mkdir(parents=True)
    (one_line / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
    )
    assert debian_mirror(one_line) == "http://mirror.example/debian"
    deb822 = tmp_path / "deb822"
    (deb822 / "sources.list.d").mkdir(parents=True)
    (deb822 / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
    )
    assert debian_mirror(deb822) == "http://mirror.example/debian"
    assert debian_mirror(tmp_path / "none") == "http://deb.debian.org/debian"
    # The cache key follows the mirror: another archive makes another base.
    assert base_key("http://mirror.example/debian") != base_key("http://deb.debian.org/debian")
