"""Slack timing out: calls that Slack applied but answered only after the client gave up (a
channel creation, the card, the notification), then Slack healthy again. Exactly one channel,
one card and one notification, within seconds; nothing acknowledged is lost.

Slack is the sandbox behind the fault proxy (tests/faults/proxy.py), which holds the answers
longer than the client's timeout (SLACK_TIMEOUT_SECONDS, 1 s here)."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from sandbox.slack import SlackSandbox
from tests.faults.proxy import Fault, FaultProxy
from tests.integration.rig import (
    bot_settings,
    group_payload,
    incident_channel,
    notification_channel,
    post_alert,
    running_bot,
)

CLIENT_TIMEOUT_S = 1.0
HELD_S = 2.5  # how long the proxy holds an answer: longer than the client waits
RECOVERY_BUDGET_S = 15.0


def own(slack: SlackSandbox, channel_id: str, prefix: str) -> list[str]:
    """Keys (message metadata) of the bot's messages in the channel starting with `prefix`."""
    keys = []
    for m in slack.messages(channel_id):
        key = ((m.metadata or {}).get("event_payload") or {}).get("key")
        if isinstance(key, str) and key.startswith(prefix):
            keys.append(key)
    return keys


async def test_calls_applied_but_timed_out_leave_one_channel_one_card_one_notice(
    slack: SlackSandbox,
    faulty_slack: FaultProxy,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
) -> None:
    faulty_slack.delay_s = HELD_S
    faulty_slack.fail_next("conversations.create", Fault.APPLIED_THEN_HANG)
    faulty_slack.fail_next("chat.postMessage", Fault.APPLIED_THEN_HANG, times=2)
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        slack_api_url=faulty_slack.api_url,
        slack_timeout_seconds=CLIENT_TIMEOUT_S,
        sweep_interval_seconds=0.5,
    )
    async with running_bot(settings) as bot:
        started = time.monotonic()
        status, _ = await post_alert(http, bot, group_payload("slow", [("s1", "firing")]))
        assert status == 200
        channel = await incident_channel(slack, timeout=RECOVERY_BUDGET_S)
        await slack.wait_for(
            lambda s: own(s, notification_channel(s).id, "notification:") or None, timeout=RECOVERY_BUDGET_S
        )
        incident = await bot.parts.store.incident_by_channel(channel.id)
        assert incident is not None
        async with asyncio.timeout(RECOVERY_BUDGET_S):
            while (loaded := await bot.parts.store.load_view(incident.id)) is not None and (
                loaded[1].card_ts is None or loaded[1].notification_ts is None
            ):
                await asyncio.sleep(0.05)
        took = time.monotonic() - started
        await bot.parts.supervisor.drain(5.0)
    held = [c for c in faulty_slack.seen if c.fault is Fault.APPLIED_THEN_HANG]
    assert [c.method for c in held] == ["conversations.create", "chat.postMessage", "chat.postMessage"]
    assert all(c.forwarded for c in held)  # each was applied by Slack
    assert len(slack.channels_with_prefix("inc-")) == 1
    assert own(slack, channel.id, "card:") == [f"card:{incident.id}"]
    assert own(slack, notification_channel(slack).id, "notification:") == [f"notification:{incident.id}"]
    assert took <= RECOVERY_BUDGET_S, f"{took:.1f} s"
    print(f"\nslack timeouts: lost 0, duplicated 0, in Slack {took:.1f} s after the alert")
