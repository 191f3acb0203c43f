"""Alertmanager webhook → durable intake → incident → Slack channel and notification."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import asyncpg

from sandbox.services import PostgresServer
from sandbox.slack import Message, SlackSandbox
from tests.integration.rig import (
    bot_settings,
    bot_url,
    group_payload,
    notification_channel,
    payload,
    post_alert,
    running_bot,
)


def _card(slack: SlackSandbox, channel_id: str) -> Message | None:
    msgs = slack.messages(channel_id)
    return msgs[0] if msgs else None


async def test_alert_opens_channel_card_and_notification(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    # The payload's Prometheus and Alertmanager, configured as ours: their links are shown
    # (links to hosts that are not configured never are: test_promql_limits.py).
    settings = bot_settings(
        slack, database_dsn, redis_url, prometheus_hosts="prom:9090", alertmanager_hosts="vm:19093"
    )
    async with running_bot(settings) as bot:
        status, body = await post_alert(http, bot, payload())
        assert status == 200 and body["status"] == "accepted"

        channel = await slack.wait_for(lambda s: c if (c := s.find_channel("inc-")) and c.topic else None)
        assert channel.name.startswith("inc-") and "5xx-5" in channel.name
        assert "[P1]" in channel.topic and "TRIGGERED" in channel.topic
        card = await slack.wait_for(lambda s: _card(s, channel.id))
        text = json.dumps(card.blocks)
        for needle in (
            "HighErrorRate",
            "5xx &gt; 5%",
            "https://runbooks/x",
            "http://prom:9090/graph?g0.expr=x",
            "http://vm:19093",
            "ack_incident",
            "service=api",
            "service=web",
        ):
            assert needle in text, needle
        note = await slack.wait_for(lambda s: next(iter(s.messages(notification_channel(s).id)), None))
        note_text = json.dumps(note.blocks)
        assert f"<#{channel.id}>" in note_text and "2 firing / 2 total" in note_text
        assert "ack_incident" in note_text
        # Opening cost: create, topic, card, notification (+ one chat.update at most as the
        # channel link lands in the notification).
        assert len(slack.calls_to("conversations.create")) == 1


async def test_redelivery_creates_nothing_new(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    async with running_bot(bot_settings(slack, database_dsn, redis_url)) as bot:
        for _ in range(5):
            assert (await post_alert(http, bot, payload()))[0] == 200
        await slack.wait_for(
            lambda s: s.find_channel("inc-") and len(s.messages(notification_channel(s).id)) == 1
        )
        conn = await asyncpg.connect(database_dsn)
        try:
            # All five deliveries stored and processed; one incident, two alert occurrences.
            await _wait_processed(conn, 5)
            assert await conn.fetchval("SELECT count(*) FROM incidents") == 1
            assert await conn.fetchval("SELECT count(*) FROM alerts") == 2
            events = await conn.fetchval("SELECT count(*) FROM timeline_events WHERE kind = 'alert_fired'")
            assert events == 2
        finally:
            await conn.close()
        assert len(slack.calls_to("conversations.create")) == 1
        assert len(slack.channels_with_prefix("inc-")) == 1


async def _wait_processed(conn: asyncpg.Connection, count: int, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while (
            await conn.fetchval("SELECT count(*) FROM webhook_inbox WHERE processed_at IS NOT NULL") < count
        ):
            await asyncio.sleep(0.05)


async def test_resolution_is_reported_and_card_updated(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    async with running_bot(bot_settings(slack, database_dsn, redis_url)) as bot:
        await post_alert(http, bot, group_payload("shop", [("a1", "firing"), ("a2", "firing")]))
        channel = await slack.wait_for(lambda s: s.find_channel("inc-"))
        await post_alert(http, bot, group_payload("shop", [("a1", "resolved"), ("a2", "firing")]))
        await post_alert(http, bot, group_payload("shop", [("a1", "resolved"), ("a2", "resolved")]))

        def resolved_note(s: SlackSandbox) -> Message | None:
            return next((m for m in s.messages(channel.id) if "have resolved" in m.text), None)

        await slack.wait_for(resolved_note)
        card = await slack.wait_for(
            lambda s: (c := _card(s, channel.id)) and "0 firing / 2 total" in json.dumps(c.blocks) and c
        )
        assert "stays open" in json.dumps(card.blocks)
        # Re-delivering the resolved snapshot announces nothing twice.
        await post_alert(http, bot, group_payload("shop", [("a1", "resolved"), ("a2", "resolved")]))
        await post_alert(http, bot, group_payload("shop", [("a1", "firing"), ("a2", "resolved")]))
        await slack.wait_for(lambda s: any("firing again" in m.text for m in s.messages(channel.id)))
        assert sum("have resolved" in m.text for m in slack.messages(channel.id)) == 1


async def test_bad_token_and_bad_payloads_store_nothing(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    async with running_bot(bot_settings(slack, database_dsn, redis_url, max_body_bytes=64 * 1024)) as bot:
        assert (await post_alert(http, bot, payload(), token=None))[0] == 401
        assert (await post_alert(http, bot, payload(), token="wrong"))[0] == 401
        status, body = await post_alert(http, bot, b"{nope")
        assert status == 400 and "malformed JSON" in body["error"]
        status, body = await post_alert(http, bot, payload(version="3"))
        assert status == 400 and "version" in body["error"]
        big = payload(commonAnnotations={"x": "y" * 100_000})
        async with http.post(
            bot_url(bot) + "/webhooks/alertmanager",
            data=json.dumps(big).encode(),
            headers={"Authorization": "Bearer test-alertmanager-token", "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 413
        conn = await asyncpg.connect(database_dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM webhook_inbox") == 0
        finally:
            await conn.close()
        async with http.get(bot_url(bot) + "/metrics") as resp:
            metrics = await resp.text()
        assert (
            'incidentbot_webhooks_rejected_total{reason="unauthorized",source="alertmanager"} 2.0' in metrics
        )
        assert 'reason="invalid"' in metrics and 'reason="too_large"' in metrics


async def test_postgres_down_answers_5xx(
    slack: SlackSandbox, http: aiohttp.ClientSession, postgres: PostgresServer, redis_url: str
) -> None:
    dsn = postgres.create_database("pgdown")
    async with running_bot(bot_settings(slack, dsn, redis_url)) as bot:
        conn = await asyncpg.connect(dsn)
        await conn.execute("ALTER TABLE webhook_inbox RENAME TO webhook_inbox_gone")
        await conn.close()
        status, body = await post_alert(http, bot, payload())
        assert status == 503 and "retry" in body["error"]
        conn = await asyncpg.connect(dsn)
        await conn.execute("ALTER TABLE webhook_inbox_gone RENAME TO webhook_inbox")
        await conn.close()
        assert (await post_alert(http, bot, payload()))[0] == 200
        await slack.wait_for(lambda s: s.find_channel("inc-"))
    postgres.drop_database("pgdown")


async def test_health_ready_and_metrics(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    async with running_bot(bot_settings(slack, database_dsn, redis_url)) as bot:
        async with http.get(bot_url(bot) + "/healthz") as resp:
            assert resp.status == 200
        async with http.get(bot_url(bot) + "/readyz") as resp:
            assert resp.status == 200
        await post_alert(http, bot, payload())
        await slack.wait_for(lambda s: s.find_channel("inc-") and s.messages(notification_channel(s).id))
        async with http.get(bot_url(bot) + "/metrics") as resp:
            text = await resp.text()
        assert 'incidentbot_webhooks_received_total{source="alertmanager"} 1.0' in text
        assert 'incidentbot_incidents_opened_total{severity="P1",source="alertmanager"} 1.0' in text
        assert 'incidentbot_slack_calls_total{method="conversations.create",outcome="ok"} 1.0' in text
        assert "incidentbot_processing_lag_seconds_count 1.0" in text


async def test_slack_429_is_retried_after_retry_after(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    slack.force_rate_limit("conversations.create", 1)
    async with running_bot(bot_settings(slack, database_dsn, redis_url)) as bot:
        await post_alert(http, bot, payload())
        await slack.wait_for(
            lambda s: s.find_channel("inc-") and s.messages(notification_channel(s).id), timeout=15
        )
        creates = slack.calls_to("conversations.create")
        assert [c.status for c in creates] == [429, 200]
        async with http.get(bot_url(bot) + "/metrics") as resp:
            text = await resp.text()
        assert 'incidentbot_slack_ratelimited_total{method="conversations.create"} 1.0' in text
