"""`incidentbot sandbox` with its hosts: the SkillMeat alert's playbook proposes restarting
skillmeat-api, @bob approves through a signed Slack request, the restart runs once over SSH on a
real sshd, and the playbook's check in the sandbox's Prometheus verifies it; the OnQuota alert's
playbook proposes the backend restart on the Docker host, @alice and @bob approve, and it runs
once through the Docker Engine API (the sandbox engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.docker import RecordedCall
from sandbox.runner import SandboxStack, play_docker_demo, play_host_demo, sandbox_stack

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def metered(tmp_path: Path, database_dsn: str, redis_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(
        tmp_path,
        web_port=None,
        env={"database_url": database_dsn, "redis_url": redis_url},
        overrides={"log_format": "console", "sweep_interval_seconds": 0.5},
        metrics=True,
    ) as started:
        yield started


async def test_the_sandbox_restarts_skillmeat_over_ssh_and_verifies_it(metered: SandboxStack) -> None:
    sshd = metered.sshd
    assert sshd is not None, "the sandbox starts an SSH host where openssh-server is installed"
    before = sshd.mark()
    verification = await play_host_demo(metered)
    assert "recovered: runbook checks" in verification and "not recovered" not in verification
    calls = sshd.calls(before)
    assert calls.count(["systemctl", "restart", "skillmeat-api"]) == 1
    assert calls.count(["sudo", "-n", "systemctl", "restart", "skillmeat-api"]) == 1


@pytest.fixture
async def plain(tmp_path: Path, database_dsn: str, redis_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(
        tmp_path,
        web_port=None,
        env={"database_url": database_dsn, "redis_url": redis_url},
        overrides={"log_format": "console", "sweep_interval_seconds": 0.5},
    ) as started:
        yield started


async def test_the_sandbox_restarts_onquotas_backend_through_the_docker_engine_api(
    plain: SandboxStack,
) -> None:
    engine = plain.docker
    assert engine is not None
    verification = await play_docker_demo(plain)
    assert "Verification of" in verification
    assert engine.calls == [RecordedCall("restart", "onquota_backend", stop_timeout=10)]
