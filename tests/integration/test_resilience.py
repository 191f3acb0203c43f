"""Several replicas, crashes and restarts: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg

from bot.store.db import apply_migrations
from sandbox.services import AlertmanagerServer
from sandbox.slack import SlackSandbox
from tests.integration.rig import (
    AM_TOKEN,
    bot_settings,
    bot_url,
    group_payload,
    notification_channel,
    payload,
    post_alert,
    running_bot,
)

ROOT = Path(__file__).resolve().parents[2]


async def test_concurrent_migrations_apply_once(database_dsn: str) -> None:
    results = await asyncio.gather(*(apply_migrations(database_dsn) for _ in range(4)))
    applied = [v for r in results for v in r]
    assert sorted(applied) == sorted(set(applied)) and applied, results
    conn = await asyncpg.connect(database_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(applied)
    finally:
        await conn.close()


async def test_two_replicas_racing_on_one_group_open_one_channel(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    settings = bot_settings(slack, database_dsn, redis_url)
    async with running_bot(settings) as one, running_bot(settings) as two:
        bodies = [group_payload("race", [(f"f{i}", "firing") for i in range(1, n + 1)]) for n in range(1, 6)]
        sends = [post_alert(http, bot, body) for body in bodies for bot in (one, two)]
        statuses = await asyncio.gather(*sends)
        assert all(status == 200 for status, _ in statuses)
        await slack.wait_for(
            lambda s: s.find_channel("inc-") and s.messages(notification_channel(s).id), timeout=15
        )
        conn = await asyncpg.connect(database_dsn)
        try:
            async with asyncio.timeout(15):
                while await conn.fetchval("SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL"):
                    await asyncio.sleep(0.05)
            assert await conn.fetchval("SELECT count(*) FROM incidents") == 1
            assert await conn.fetchval("SELECT count(*) FROM alerts") == 5
            # Both replicas bring Slack up to date from the same stored state.
            await slack.wait_for(
                lambda s: "5 firing / 5 total" in str(s.messages(notification_channel(s).id)[0].blocks),
                timeout=15,
            )
        finally:
            await conn.close()
    assert len(slack.calls_to("conversations.create")) == 1
    assert len(slack.channels_with_prefix("inc-")) == 1
    assert len(slack.messages(notification_channel(slack).id)) == 1


async def _wait_ready(http: aiohttp.ClientSession, url: str, timeout: float = 20.0) -> None:
    """Poll /readyz of a bot started as a separate process (bounded)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with http.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)


def _bot_env(slack_api_url: str, database_dsn: str, redis_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAGERDUTY_"))}
    env.update(
        SLACK_BOT_TOKEN="xoxb-0000000001-0000000002-sandboxbottoken",
        SLACK_SIGNING_SECRET="resilience-signing-secret",
        SLACK_API_URL=slack_api_url,
        DATABASE_URL=database_dsn,
        REDIS_URL=redis_url,
        ALERTMANAGER_WEBHOOK_TOKEN=AM_TOKEN,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        INCIDENT_CHANNEL="incident",
    )
    return env


async def test_webhook_stored_before_a_crash_is_published_after_restart(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    """The first process stores the webhook and is SIGKILLed while Slack is unreachable;
    a fresh process finishes the work from Postgres."""
    from sandbox.services import free_port

    port = free_port()
    dead_slack = f"http://127.0.0.1:{free_port()}/api/"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        env=_bot_env(dead_slack, database_dsn, redis_url, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stderr is not None  # stderr=PIPE
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(http, url)
        async with http.post(
            url + "/webhooks/alertmanager",
            json=payload(),
            headers={"Authorization": f"Bearer {AM_TOKEN}"},
        ) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stderr.close()
    conn = await asyncpg.connect(database_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM webhook_inbox") == 1
        assert await conn.fetchval("SELECT count(*) FROM incidents WHERE channel_id IS NOT NULL") == 0
    finally:
        await conn.close()
    assert slack.find_channel("inc-") is None

    async with running_bot(bot_settings(slack, database_dsn, redis_url)):
        channel = await slack.wait_for(lambda s: s.find_channel("inc-"), timeout=15)
        await slack.wait_for(
            lambda s: s.messages(channel.id) and s.messages(notification_channel(s).id), timeout=15
        )
    assert len(slack.channels_with_prefix("inc-")) == 1


async def test_real_alertmanager_delivers_to_the_bot(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, services_dir: Path
) -> None:
    async with running_bot(bot_settings(slack, database_dsn, redis_url)) as bot:
        am = await asyncio.to_thread(
            AlertmanagerServer.start, services_dir, bot_url(bot) + "/webhooks/alertmanager", AM_TOKEN
        )
        try:
            alert = {
                "labels": {
                    "alertname": "SkillQuestAPIDown",
                    "namespace": "skillquest",
                    "severity": "critical",
                },
                "annotations": {
                    "summary": "SkillQuest API is down",
                    "runbook_url": "https://runbooks/api-down",
                },
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22skillquest-api%22%7D+%3D%3D+0",
            }
            await asyncio.to_thread(am.post_alerts, [alert])
            channel = await slack.wait_for(lambda s: s.find_channel("inc-"), timeout=20)
            assert "skillquest-api-is-down" in channel.name
            note = await slack.wait_for(
                lambda s: next(iter(s.messages(notification_channel(s).id)), None), timeout=10
            )
            assert "SkillQuest API is down" in note.text
            # Alertmanager keeps re-sending the group; still one channel.
            await asyncio.to_thread(am.post_alerts, [alert])
        finally:
            await asyncio.to_thread(am.stop)
        conn = await asyncpg.connect(database_dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM incidents") == 1
        finally:
            await conn.close()
    assert len(slack.channels_with_prefix("inc-")) == 1


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_missing_configuration_exits_with_one_line() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "DATABASE_", "REDIS_", "ALERTMANAGER_"))
    }
    result = _run_cli("run", env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SLACK_BOT_TOKEN is required" in lines[0] and "DATABASE_URL is required" in lines[0]
    assert "Traceback" not in result.stderr


def test_unreachable_postgres_and_redis_exit_with_one_line(redis_url: str, database_dsn: str) -> None:
    from sandbox.services import free_port

    env = _bot_env(
        "http://127.0.0.1:1/api/", f"postgresql://postgres@127.0.0.1:{free_port()}/x", redis_url, 0
    )
    result = _run_cli("run", env=env)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "PostgreSQL unreachable" in result.stderr and "Traceback" not in result.stderr

    env = _bot_env("http://127.0.0.1:1/api/", database_dsn, f"redis://127.0.0.1:{free_port()}/0", 0)
    result = _run_cli("run", env=env)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Redis unreachable" in result.stderr


def test_every_subcommand_has_help() -> None:
    for args in (
        ["--help"],
        ["run", "-h"],
        ["migrate", "-h"],
        ["send-test-alert", "-h"],
        ["sandbox", "-h"],
        ["playbooks", "validate", "-h"],
        ["playbooks", "import", "-h"],
    ):
        result = _run_cli(*args, env=dict(os.environ))
        assert result.returncode == 0, (args, result.stderr)
        assert "usage: incidentbot" in result.stdout


async def test_sigterm_finishes_in_flight_work(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    from sandbox.services import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        env=_bot_env(slack.api_url, database_dsn, redis_url, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stderr is not None  # stderr=PIPE
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(http, url)
        for group in ("a", "b", "c"):
            async with http.post(
                url + "/webhooks/alertmanager",
                json=group_payload(group, [(f"{group}1", "firing")]),
                headers={"Authorization": f"Bearer {AM_TOKEN}"},
            ) as resp:
                assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        stderr = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    conn = await asyncpg.connect(database_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL") == 0
        assert await conn.fetchval("SELECT count(*) FROM incidents") == 3
    finally:
        await conn.close()
    assert len(slack.channels_with_prefix("inc-")) == 3


async def test_updates_within_a_second_coalesce(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    async with running_bot(bot_settings(slack, database_dsn, redis_url)) as bot:
        await post_alert(http, bot, group_payload("burst", [("b1", "firing")]))
        channel = await slack.wait_for(lambda s: s.find_channel("inc-"))
        await slack.wait_for(lambda s: s.messages(channel.id) and s.messages(notification_channel(s).id))
        before = len(slack.calls_to("chat.update"))
        for n in range(2, 12):
            await post_alert(
                http, bot, group_payload("burst", [(f"b{i}", "firing") for i in range(1, n + 1)])
            )
        await slack.wait_for(lambda s: "11 firing / 11 total" in json.dumps(s.messages(channel.id)[0].blocks))
        await slack.wait_for(
            lambda s: "11 firing / 11 total" in json.dumps(s.messages(notification_channel(s).id)[0].blocks)
        )
        updates = len(slack.calls_to("chat.update")) - before
        # Ten deliveries, two messages each: without coalescing 20 updates; with it a few rounds.
        assert updates <= 6, updates
