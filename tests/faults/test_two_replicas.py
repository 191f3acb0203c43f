"""Two replicas on one PostgreSQL and Redis, every alert group delivered to both, approval
clicks split across both: exactly one incident, channel, card and notification per group, and
exactly one Kubernetes change. Real Postgres, Redis, sandbox Slack and Kubernetes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.app import BotServer
from bot.core.incident import Incident
from sandbox.slack import SlackSandbox
from tests.integration.rig import group_payload, notification_channel, one_incident_per_group, post_alert
from tests.integration.test_remediation import (
    TEST_ALERT,
    Env,
    alert_body,
    env,
    kube,
    mutations,
    propose_scale,
    replicas,
    running,
    store,
)

__all__ = ["env", "kube"]

GROUPS = 20
CLICKS = 10
RECOVERY_BUDGET_S = 15.0
# Slack's real per-method limits (conversations.create: 20 a minute) would make opening any
# stream of incidents take minutes; the sandbox Slack and the bot both run 50x faster limits.
RATE_SCALE = 50.0


@pytest.fixture
async def slack() -> AsyncIterator[SlackSandbox]:
    """The sandbox Slack with time-compressed limits (in place of the integration one)."""
    sandbox = SlackSandbox(incident_channel="incident", rate_scale=RATE_SCALE)
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def own_keys(slack: SlackSandbox, channel_id: str, prefix: str) -> list[str]:
    keys = []
    for m in slack.messages(channel_id):
        key = ((m.metadata or {}).get("event_payload") or {}).get("key")
        if isinstance(key, str) and key.startswith(prefix):
            keys.append(key)
    return keys


async def _unfinished(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE channel_id IS NULL OR card_ts IS NULL OR notification_ts IS NULL"
        )
        return count
    finally:
        await conn.close()


async def _send_to_both(env: Env, bots: tuple[BotServer, BotServer]) -> int:
    """Every group to both replicas at once; the number of deliveries answered 200."""
    statuses = await asyncio.gather(
        *(
            post_alert(env.http, bot, group_payload(f"twin{i}", [(f"t{i}", "firing")]))
            for i in range(GROUPS)
            for bot in bots
        )
    )
    return sum(status == 200 for status, _ in statuses)


async def _open_remediation_incident(env: Env, bots: tuple[BotServer, BotServer]) -> Incident:
    """An incident to propose a change in (its alert also delivered to both replicas)."""
    for status, _ in await asyncio.gather(*(post_alert(env.http, b, alert_body(TEST_ALERT)) for b in bots)):
        assert status == 200
    async with asyncio.timeout(RECOVERY_BUDGET_S):
        while True:
            conn = await asyncpg.connect(env.dsn)
            try:
                found = await conn.fetchval(
                    "SELECT id FROM incidents WHERE group_key LIKE '%TestRemediationTarget%' AND card_ts IS NOT NULL"
                )
            finally:
                await conn.close()
            if found is not None:
                incident = await bots[0].parts.store.get_incident(found)
                assert incident is not None
                return incident
            await asyncio.sleep(0.05)


async def test_two_replicas_every_group_to_both_and_clicks_split_do_everything_once(env: Env) -> None:
    settings = env.settings(sweep_interval_seconds=0.5, slack_rate_scale=RATE_SCALE)
    # Twenty groups of one service, each meant as its own incident with its own notification.
    one_incident_per_group(Path(settings.playbooks_dir))
    async with (
        running(settings) as one,
        running(settings.model_copy(update={"replica_name": "replica-two"})) as two,
    ):
        acked = await _send_to_both(env, (one, two))
        assert acked == 2 * GROUPS
        sent = time.monotonic()
        async with asyncio.timeout(RECOVERY_BUDGET_S):
            while len(env.slack.channels_with_prefix("inc-")) < GROUPS or await _unfinished(env.dsn):
                await asyncio.sleep(0.1)
        took = time.monotonic() - sent

        # One approval, clicked ten times by the approver on alternating replicas at once.
        incident = await _open_remediation_incident(env, (one, two))
        run = await propose_scale(one, incident, 9, by="U0ALICE")
        clicks = await asyncio.gather(
            *(
                env.driver((one, two)[i % 2]).click(
                    "approve_action", user_id="U0BOB", channel_id=run.channel_id, message_ts=run.message_ts
                )
                for i in range(CLICKS)
            )
        )
        assert all(c.status == 200 for c in clicks)
        await env.kube.wait_for(lambda: len(mutations(env.kube, "/deployments/search-api/scale")) >= 1)
        async with asyncio.timeout(10):
            while (current := await store(one).get(run.id)) is None or current.finished_at is None:
                await asyncio.sleep(0.05)
        await asyncio.gather(one.parts.supervisor.drain(5.0), two.parts.supervisor.drain(5.0))
        conn = await asyncpg.connect(env.dsn)
        try:
            incidents = await conn.fetchval("SELECT count(*) FROM incidents")
        finally:
            await conn.close()

    slack = env.slack
    assert incidents == GROUPS + 1
    channels = slack.channels_with_prefix("inc-")
    assert len(channels) == GROUPS + 1, [c.name for c in channels]
    for channel in channels:
        cards = own_keys(slack, channel.id, "card:")
        assert len(cards) == 1, (channel.name, cards)
    notices = own_keys(slack, notification_channel(slack).id, "notification:")
    assert len(notices) == len(set(notices)) == GROUPS + 1
    assert len(mutations(env.kube, "/deployments/search-api/scale")) == 1
    assert replicas(env.kube, "api", "search-api") == 9
    assert current.approvers == ("U0BOB",)
    assert took <= RECOVERY_BUDGET_S
    print(
        f"\ntwo replicas: {2 * GROUPS} deliveries acknowledged, lost 0, duplicated 0,"
        f" every group in Slack {took:.1f} s after the last acknowledgement;"
        f" {CLICKS} clicks → {len(mutations(env.kube, '/deployments/search-api/scale'))} change"
    )
