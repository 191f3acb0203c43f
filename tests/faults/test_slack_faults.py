"""Slack answering 5xx: idempotent calls are retried by the client with backoff; a post that
was refused is published again by the publisher within seconds, not a minute, and exactly once.

Slack is the sandbox Slack behind a fault proxy on 127.0.0.1 (tests/faults/proxy.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import aiohttp
from prometheus_client import generate_latest

from bot.core.incident import channel_name
from sandbox.slack import SlackSandbox
from tests.faults.proxy import Fault, FaultProxy
from tests.integration.rig import (
    bot_settings,
    incident_channel,
    notification_channel,
    payload,
    post_alert,
    running_bot,
)

RECOVERY_BUDGET_S = 15.0


async def test_an_idempotent_call_answered_503_is_retried_by_the_client(
    slack: SlackSandbox,
    faulty_slack: FaultProxy,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
) -> None:
    faulty_slack.fail_next("conversations.setTopic", Fault.REFUSE, times=2)
    settings = bot_settings(slack, database_dsn, redis_url, slack_api_url=faulty_slack.api_url)
    async with running_bot(settings) as bot:
        status, _ = await post_alert(http, bot, payload())
        assert status == 200
        channel = await incident_channel(slack, timeout=RECOVERY_BUDGET_S)
        topics = await faulty_slack.wait_for_calls("conversations.setTopic", 3)
        # Two refused, the third forwarded: all from one call of the client (no publish retry).
        assert [t.forwarded for t in topics[:3]] == [False, False, True]
        assert "[P1]" in slack.channels[channel.id].topic
        exposition = generate_latest(bot.parts.metrics.registry).decode()
        assert 'method="conversations.setTopic",outcome="retried_503"' in exposition
    # The card was posted once, and so was the notification.
    assert len(slack.messages(channel.id)) >= 1
    assert len(faulty_slack.calls("conversations.create")) == 1


async def test_a_refused_post_is_not_retried_blindly_but_published_again_within_seconds(
    slack: SlackSandbox,
    faulty_slack: FaultProxy,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
) -> None:
    """chat.postMessage is not idempotent: the client must not repeat it on a 5xx (Slack may
    have applied it). Refused before it was applied, the card still appears within seconds,
    once: the publisher tries again from stored state."""
    faulty_slack.fail_next("chat.postMessage", Fault.REFUSE, times=1)
    settings = bot_settings(slack, database_dsn, redis_url, slack_api_url=faulty_slack.api_url)
    async with running_bot(settings) as bot:
        started = time.monotonic()
        status, _ = await post_alert(http, bot, payload())
        assert status == 200
        channel = await incident_channel(slack, timeout=RECOVERY_BUDGET_S)
        took = time.monotonic() - started
        posts = await faulty_slack.wait_for_calls("chat.postMessage", 2)
        assert posts[0].fault is Fault.REFUSE and not posts[0].forwarded
        assert posts[1].forwarded
        assert took < RECOVERY_BUDGET_S
        cards = [m for m in slack.messages(channel.id) if "ack_incident" in str(m.blocks)]
        assert len(cards) == 1
        exposition = generate_latest(bot.parts.metrics.registry).decode()
        assert 'method="chat.postMessage",outcome="retried_503"' not in exposition


async def test_a_card_applied_then_answered_503_is_adopted_not_posted_twice(
    slack: SlackSandbox,
    faulty_slack: FaultProxy,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
) -> None:
    """Slack applies chat.postMessage but the answer is a 503: the bot finds its own card in
    the channel's history (by its metadata key) and adopts it."""
    faulty_slack.fail_next("chat.postMessage", Fault.APPLIED_THEN_503, times=1)
    settings = bot_settings(slack, database_dsn, redis_url, slack_api_url=faulty_slack.api_url)
    async with running_bot(settings) as bot:
        status, _ = await post_alert(http, bot, payload())
        assert status == 200
        channel = await incident_channel(slack, timeout=RECOVERY_BUDGET_S)
        note = await slack.wait_for(lambda s: next(iter(s.messages(notification_channel(s).id)), None))
        assert f"<#{channel.id}>" in str(note.blocks)
        await bot.parts.supervisor.drain(5.0)
    cards = [m for m in slack.messages(channel.id) if "ack_incident" in str(m.blocks)]
    assert len(cards) == 1
    assert faulty_slack.calls("chat.postMessage")[0].fault is Fault.APPLIED_THEN_503
    assert faulty_slack.calls("conversations.history"), "the bot looked before posting again"
    updated = {
        str(c.args.get("ts")) for c in slack.calls_to("chat.update") if c.args.get("channel") == channel.id
    }
    assert updated <= {cards[0].ts}


async def test_a_notification_reset_after_the_write_is_adopted_not_posted_twice(
    slack: SlackSandbox,
    faulty_slack: FaultProxy,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
) -> None:
    """The connection drops after Slack stored the #incident notification: exactly one
    notification, and it is the one the bot keeps updating."""
    settings = bot_settings(slack, database_dsn, redis_url, slack_api_url=faulty_slack.api_url)
    # The card is the first post of an incident, the notification the second.
    faulty_slack.fail_after("chat.postMessage", 1, Fault.RESET_AFTER_WRITE)
    async with running_bot(settings) as bot:
        status, _ = await post_alert(http, bot, payload())
        assert status == 200
        await incident_channel(slack, timeout=RECOVERY_BUDGET_S)
        notes = await slack.wait_for(
            lambda s: (
                (m := s.messages(notification_channel(s).id))
                and len(faulty_slack.calls("chat.postMessage")) >= 2
                and m
            ),
            timeout=RECOVERY_BUDGET_S,
        )
        await bot.parts.supervisor.drain(5.0)
    assert faulty_slack.calls("chat.postMessage")[1].fault is Fault.RESET_AFTER_WRITE
    assert len(slack.messages(notification_channel(slack).id)) == 1, notes


async def test_a_retried_channel_creation_never_takes_over_a_channel_somebody_else_made(
    slack: SlackSandbox,
    faulty_slack: FaultProxy,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
) -> None:
    """The first conversations.create fails; by the retry the wanted name belongs to a channel a
    person created. The bot must not adopt it (no topic, no card there): it picks another name."""
    wanted = channel_name(datetime.now(UTC), "5xx > 5%")
    human = slack.add_channel(wanted, members=["U0ALICE"], topic="lunch plans")
    faulty_slack.fail_next("conversations.create", Fault.REFUSE, times=1)
    settings = bot_settings(slack, database_dsn, redis_url, slack_api_url=faulty_slack.api_url)
    async with running_bot(settings) as bot:
        status, _ = await post_alert(http, bot, payload())
        assert status == 200
        await faulty_slack.wait_for_calls("conversations.create", 3, timeout=RECOVERY_BUDGET_S)
        channel = await slack.wait_for(
            lambda s: next(
                (c for c in s.channels_with_prefix(wanted) if c.id != human.id and s.messages(c.id)), None
            ),
            timeout=RECOVERY_BUDGET_S,
        )
        incident = await bot.parts.store.incident_by_channel(channel.id)
        assert incident is not None
        await bot.parts.supervisor.drain(5.0)
    assert slack.channels[human.id].topic == "lunch plans"
    assert slack.messages(human.id) == []
    assert channel.name != wanted


async def test_a_channel_the_bot_created_before_dying_is_adopted(
    slack: SlackSandbox,
    faulty_slack: FaultProxy,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
) -> None:
    """Positive control: conversations.create applied but its answer lost (reset after the
    write): the retry finds the bot's own channel, created after the claim, and uses it."""
    faulty_slack.fail_next("conversations.create", Fault.RESET_AFTER_WRITE, times=1)
    settings = bot_settings(slack, database_dsn, redis_url, slack_api_url=faulty_slack.api_url)
    async with running_bot(settings) as bot:
        status, _ = await post_alert(http, bot, payload())
        assert status == 200
        channel = await incident_channel(slack, timeout=RECOVERY_BUDGET_S)
        await bot.parts.supervisor.drain(5.0)
    assert len(slack.channels_with_prefix("inc-")) == 1
    assert channel.name == channel_name(datetime.now(UTC), "5xx > 5%")
