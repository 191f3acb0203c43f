"""The SSH adapter against a real OpenSSH server (tests/integration/sshd.py): the exact argv
the host receives, the pinned host key, timeouts, exit status and capped output."""

from __future__ import annotations

import asyncio
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.clients.ssh import SshHost
from bot.core.errors import IntegrationError
from bot.core.hosts import SshAccess
from sandbox.ssh import Sshd, new_host_key, running_sshd

pytestmark = pytest.mark.timeout(60)


async def test_the_host_receives_exactly_the_argv(sshd: Sshd) -> None:
    host = SshHost("skillmeat-1", sshd.access())
    before = sshd.mark()
    out = await host.run(["systemctl", "restart", "skillmeat-api"], timeout_s=20)
    assert out.ok and out.stderr == ""
    # Shell syntax in an element is one literal word on the host: quoted on our side.
    hostile = ["skillmeat", "mcp", "restart", "a; rm -rf /", "$(id)", "`id`", "it's", "*", ""]
    out = await host.run(hostile, timeout_s=20)
    assert out.ok
    assert sshd.calls(before) == [["systemctl", "restart", "skillmeat-api"], hostile]


async def test_exit_status_and_output_come_back_capped(sshd: Sshd) -> None:
    host = SshHost("skillmeat-1", sshd.access(), max_output=10)
    failed = await host.run(["skillmeat", "fail"], timeout_s=20)
    assert failed.exit_status == 3 and not failed.ok
    assert failed.stderr == "skillmeat:" and failed.truncated
    shown = await SshHost("skillmeat-1", sshd.access()).run(["systemctl", "show", "x"], timeout_s=20)
    assert "ActiveState=active" in shown.stdout and not shown.truncated


async def test_a_changed_host_key_is_refused_and_nothing_runs(sshd: Sshd, tmp_path: Path) -> None:
    other = new_host_key(tmp_path, "other")
    before = sshd.mark()
    with pytest.raises(IntegrationError, match=r"not the one pinned in clusters\.yaml; nothing was run"):
        await SshHost("skillmeat-1", sshd.access(host_key=other)).run(
            ["systemctl", "restart", "x"], timeout_s=20
        )
    # A known_hosts line with the server's own key is accepted (positive control).
    line = f"[127.0.0.1]:{sshd.port} {sshd.host_key}"
    assert (
        await SshHost("skillmeat-1", sshd.access(host_key=line)).run(["skillmeat", "ok"], timeout_s=20)
    ).ok
    assert sshd.calls(before) == [["skillmeat", "ok"]]


async def test_an_unknown_client_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    new_host_key(tmp_path, "stranger")
    access = sshd.access(private_key=str(tmp_path / "stranger"))
    before = sshd.mark()
    with pytest.raises(IntegrationError, match="was refused; nothing was run"):
        await SshHost("skillmeat-1", access).run(["systemctl", "restart", "x"], timeout_s=20)
    assert sshd.calls(before) == []


async def test_an_unreadable_private_key_is_a_clear_error(sshd: Sshd, tmp_path: Path) -> None:
    not_a_key = tmp_path / "not-a-key"
    not_a_key.write_text("hello\n")
    before = sshd.mark()
    for path in (tmp_path / "missing", not_a_key):
        with pytest.raises(IntegrationError, match=r"cannot be read .*; nothing was run"):
            await SshHost("skillmeat-1", sshd.access(private_key=str(path))).run(
                ["skillmeat", "x"], timeout_s=20
            )
    assert sshd.calls(before) == []


async def test_a_command_past_its_timeout_raises(sshd: Sshd) -> None:
    host = SshHost("skillmeat-1", sshd.access())
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await host.run(["sleep", "5"], timeout_s=1.0)
    assert loop.time() - started < 4


# The non-root account `make test` adds (scripts/test-account.sh), as hosts give the bot one.
TEST_ACCOUNT = "incidentbot-ssh-test"


@pytest.fixture
def account_sshd() -> Iterator[Sshd]:
    """An sshd whose files the test account can read (pytest's own temporary directories are
    root's alone)."""
    try:
        pwd.getpwnam(TEST_ACCOUNT)
    except KeyError:
        pytest.fail(f"no account {TEST_ACCOUNT}: run scripts/test-account.sh (make test does)", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="incidentbot-sshd-"))
    root.chmod(0o755)
    try:
        with running_sshd(root / "sshd") as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _running(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False)
    return found.stdout.splitlines()


async def test_a_command_past_its_timeout_is_killed_on_the_host(account_sshd: Sshd) -> None:
    """The KILL sent at the deadline reaches the command under a non-root account (OpenSSH
    signals sessions only under privilege separation); the control: it is running until then."""
    host = SshHost("skillmeat-1", account_sshd.access().model_copy(update={"user": TEST_ACCOUNT}))
    whoami = await host.run(["id", "-un"], timeout_s=20)
    assert whoami.stdout.strip() == TEST_ACCOUNT
    marker = "sleep 4093"
    task = asyncio.create_task(host.run(marker.split(), timeout_s=3.0))
    for _ in range(100):  # until the host runs it (bounded; asked again every 20 ms)
        if _running(marker) or task.done():
            break
        await asyncio.sleep(0.02)
    assert _running(marker), "the command never started"
    with pytest.raises(TimeoutError):
        await task
    for _ in range(250):  # until the host has ended it (bounded: 5 s)
        if not _running(marker):
            break
        await asyncio.sleep(0.02)
    assert _running(marker) == [], "the command outlived its timeout on the host"


def test_host_keys_must_be_pinned_as_keys() -> None:
    with pytest.raises(ValueError, match="host_key must be a public key"):
        SshAccess(address="h", user="u", private_key="/k", host_key="trust-on-first-use please")
