"""Redis down for a while: webhooks are still acknowledged (they need only PostgreSQL), the logs
say so once (not a traceback per attempt), a gauge shows it, and once Redis is back every
acknowledged group reaches Slack, once."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from prometheus_client import generate_latest

from sandbox.services import RedisServer
from sandbox.slack import SlackSandbox
from tests.integration.rig import bot_settings, group_payload, post_alert, running_bot

OUTAGE_S = 8.0
GROUPS = 12
RECOVERY_BUDGET_S = 20.0


async def test_a_redis_outage_is_logged_once_and_nothing_is_lost(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="incidentbot")
    async with running_bot(bot_settings(slack, database_dsn, redis_url)) as bot:
        status, _ = await post_alert(http, bot, group_payload("before", [("b1", "firing")]))
        assert status == 200
        await slack.wait_for(lambda s: s.find_channel("inc-"), timeout=10)
        caplog.clear()

        await asyncio.to_thread(redis_server.stop)
        try:
            for i in range(GROUPS):
                status, _ = await post_alert(http, bot, group_payload(f"outage{i}", [(f"o{i}", "firing")]))
                assert status == 200, "intake needs only PostgreSQL"
            await asyncio.sleep(OUTAGE_S)  # the outage itself: time passing with Redis away
            exposition = generate_latest(bot.parts.metrics.registry).decode()
            assert 'incidentbot_dependency_up{dependency="redis"} 0.0' in exposition
        finally:
            await asyncio.to_thread(redis_server.restart)

        await slack.wait_for(
            lambda s: len(s.channels_with_prefix("inc-")) >= GROUPS + 1 or None, timeout=RECOVERY_BUDGET_S
        )
        await slack.wait_for(
            lambda s: any(r.getMessage() == "dependency.up" for r in caplog.records) or None, timeout=10
        )
    ours = [r for r in caplog.records if r.name.startswith("incidentbot")]
    tracebacks = [r for r in ours if r.exc_info and r.levelno >= logging.WARNING]
    assert tracebacks == [], [f"{r.name} {r.getMessage()}" for r in tracebacks]
    downs = [
        r for r in ours if r.getMessage() == "dependency.down" and getattr(r, "dependency", "") == "redis"
    ]
    assert len(downs) == 1
    reminders = [r for r in ours if r.getMessage() == "dependency.still_down"]
    assert len(reminders) <= OUTAGE_S / 30 + 1
    assert len(slack.channels_with_prefix("inc-")) == GROUPS + 1
