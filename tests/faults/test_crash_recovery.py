"""`kill -9` of the bot in the middle of a stream of alert groups: after a restart (a new
process, so a new owner name), every acknowledged group has its channel, card and
notification within seconds, not minutes: locks are leases that lapse soon after their holder
dies, and a dead publisher's channel claim is taken over quickly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sandbox.services import free_port
from sandbox.slack import SlackSandbox
from tests.integration.rig import AM_TOKEN, group_payload, one_incident_per_group, playbooks_with_roles

ROOT = Path(__file__).resolve().parents[2]
GROUPS = 160
IN_FLIGHT = 8
RECOVERY_BUDGET_S = 15.0
# Slack's real per-method limits (conversations.create: 20 a minute) would make any stream of
# new incidents take minutes to open whatever the recovery does; both the sandbox Slack and
# the bot run 50x faster limits, so what is measured is the recovery itself.
RATE_SCALE = 50.0


@pytest.fixture
async def fast_slack() -> AsyncIterator[SlackSandbox]:
    sandbox = SlackSandbox(incident_channel="incident", rate_scale=RATE_SCALE)
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def bot_env(
    slack: SlackSandbox, database_dsn: str, redis_url: str, port: int, playbooks: Path
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAGERDUTY_"))}
    env.update(
        PLAYBOOKS_DIR=str(playbooks),
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_SIGNING_SECRET="fault-test-signing-secret-0123456789",
        SLACK_API_URL=slack.api_url,
        DATABASE_URL=database_dsn,
        REDIS_URL=redis_url,
        ALERTMANAGER_WEBHOOK_TOKEN=AM_TOKEN,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        INCIDENT_CHANNEL="incident",
        SWEEP_INTERVAL_SECONDS="1",
        SLACK_RATE_SCALE=str(RATE_SCALE),
        LOG_FORMAT="console",
    )
    return env


def start_bot(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )


async def wait_ready(http: aiohttp.ClientSession, url: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with http.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)


async def unfinished(database_dsn: str) -> int:
    """Incidents without their channel, card or notification."""
    conn = await asyncpg.connect(database_dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE channel_id IS NULL OR card_ts IS NULL OR notification_ts IS NULL"
        )
        return count
    finally:
        await conn.close()


async def test_after_kill_9_every_acknowledged_group_is_in_slack_within_seconds_of_the_restart(
    fast_slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    slack = fast_slack
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Many groups of one service: correlation would make them one incident, storm mode a digest.
    playbooks = one_incident_per_group(playbooks_with_roles(tmp_path / "playbooks"))
    env = bot_env(slack, database_dsn, redis_url, port, playbooks)
    acked: list[str] = []
    first = start_bot(env)
    try:
        await wait_ready(http, url)
        gate = asyncio.Semaphore(IN_FLIGHT)
        opening = asyncio.Event()

        async def send(i: int) -> None:
            async with gate:
                try:
                    async with http.post(
                        url + "/webhooks/alertmanager",
                        json=group_payload(f"crash{i}", [(f"c{i}", "firing")]),
                        headers={"Authorization": f"Bearer {AM_TOKEN}"},
                    ) as resp:
                        if resp.status == 200:
                            acked.append(f"crash{i}")
                except aiohttp.ClientError:
                    pass

        async def kill_while_opening() -> None:
            # Killed while channels are being opened: publishers hold their locks and claims.
            await slack.wait_for(lambda s: len(s.channels_with_prefix("inc-")) >= 5 or None, timeout=30)
            opening.set()
            first.send_signal(signal.SIGKILL)

        killer = asyncio.create_task(kill_while_opening())
        await asyncio.gather(*(send(i) for i in range(GROUPS)))
        await killer
        await asyncio.to_thread(first.wait, 10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert acked

    second = start_bot(env)
    try:
        await wait_ready(http, url)
        restarted = time.monotonic()
        conn = await asyncpg.connect(database_dsn)
        try:
            stored = await conn.fetchval("SELECT count(*) FROM webhook_inbox WHERE source = 'alertmanager'")
        finally:
            await conn.close()
        assert stored >= len(acked)
        async with asyncio.timeout(RECOVERY_BUDGET_S + 10):
            while True:
                incidents = await slack_incidents(database_dsn)
                if incidents >= len(acked) and await unfinished(database_dsn) == 0:
                    break
                await asyncio.sleep(0.2)
        took = time.monotonic() - restarted
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 30)
    assert took <= RECOVERY_BUDGET_S, f"{took:.1f} s after the restart"
    # Nothing twice: one channel per incident.
    assert len(slack.channels_with_prefix("inc-")) == await slack_incidents(database_dsn)


async def slack_incidents(database_dsn: str) -> int:
    conn = await asyncpg.connect(database_dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM incidents")
        return count
    finally:
        await conn.close()
