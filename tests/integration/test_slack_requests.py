"""Signed Slack requests end to end: buttons, slash commands, forged and stale signatures."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import asyncpg

from bot.app import BotServer
from sandbox.slack import Channel, SlackDriver, SlackSandbox
from tests.integration.rig import (
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    notification_channel,
    payload,
    playbooks_with_roles,
    post_alert,
    running_bot,
)


async def _open_incident(slack: SlackSandbox, http: aiohttp.ClientSession, bot: BotServer) -> Channel:
    await post_alert(http, bot, payload())
    channel = await slack.wait_for(lambda s: s.find_channel("inc-"))
    await slack.wait_for(lambda s: s.messages(channel.id) and s.messages(notification_channel(s).id))
    # Buttons are bound to the messages the bot drew them on: wait until it has stored where
    # the card and the notification are (the tests change and read them).
    async with asyncio.timeout(10):
        while True:
            loaded = await bot.parts.store.load_view(1)
            if loaded is not None and loaded[1].card_ts and loaded[1].notification_ts:
                return channel
            await asyncio.sleep(0.02)


async def test_ack_button_records_who_and_updates_both_messages(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        channel = await _open_incident(slack, http, bot)
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        resp = await driver.click("ack_incident", user_id="U0BOB", channel_id=notification_channel(slack).id)
        assert resp.status == 200

        def acked(s: SlackSandbox) -> bool:
            card = s.messages(channel.id)[0]
            note = s.messages(notification_channel(s).id)[0]
            both = json.dumps(card.blocks) + json.dumps(note.blocks)
            return both.count("Acknowledged") >= 2 and "<@U0BOB>" in both and "ack_incident" not in both

        await slack.wait_for(acked)
        conn = await asyncpg.connect(database_dsn)
        try:
            row = await conn.fetchrow("SELECT status, acknowledged_by FROM incidents")
            assert (row["status"], row["acknowledged_by"]) == ("acknowledged", "U0BOB")
            kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM timeline_events ORDER BY id")]
            assert kinds.count("acknowledged") == 1
        finally:
            await conn.close()
        # A second click on the old button (double click, or a stale message) changes nothing.
        resp = await driver.post(
            _block_actions(slack, channel.id, "U0CAROL"), "application/x-www-form-urlencoded"
        )
        assert resp.status == 200
        reply = await slack.wait_for(
            lambda s: next((r for r in s.responses if "already acknowledged" in r.text), None)
        )
        assert "U0BOB" in reply.text


def _block_actions(slack: SlackSandbox, channel_id: str, user_id: str, value: str | None = None) -> bytes:
    from urllib.parse import urlencode

    card = slack.messages(channel_id)[0]
    incident_value = value or "1"
    body = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "team_id": slack.team_id},
        "api_app_id": slack.app_id,
        "token": "sandbox-verification-token",
        "team": {"id": slack.team_id, "domain": slack.team_domain},
        "container": {"type": "message", "message_ts": card.ts, "channel_id": channel_id},
        "channel": {"id": channel_id, "name": "x"},
        "message": slack.message_json(card),
        "response_url": slack.new_response_url(
            "block_actions", user_id=user_id, channel_id=channel_id, message_ts=card.ts
        ),
        "trigger_id": slack.issue_trigger_id(user_id),
        "actions": [
            {
                "action_id": "ack_incident",
                "block_id": "b",
                "value": incident_value,
                "type": "button",
                "action_ts": str(time.time()),
            }
        ],
    }
    return urlencode({"payload": json.dumps(body)}).encode()


async def test_forged_and_stale_signatures_are_refused(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    async with running_bot(bot_settings(slack, database_dsn, redis_url)) as bot:
        channel = await _open_incident(slack, http, bot)
        forged = SlackDriver(slack, bot_url(bot) + "/slack/events", "not-the-secret", http)
        resp = await forged.click("ack_incident", user_id="U0BOB", channel_id=channel.id)
        assert resp.status == 401
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        body = _block_actions(slack, channel.id, "U0BOB")
        resp = await driver.post(body, "application/x-www-form-urlencoded", timestamp=int(time.time()) - 600)
        assert resp.status == 401
        resp = await driver.post(body, "application/x-www-form-urlencoded", signature="v0=" + "0" * 64)
        assert resp.status == 401
        resp = await forged.slash_command("/incident", "ack", user_id="U0BOB", channel_id=channel.id)
        assert resp.status == 401
        conn = await asyncpg.connect(database_dsn)
        try:
            assert await conn.fetchval("SELECT status FROM incidents") == "triggered"
        finally:
            await conn.close()


async def test_tampered_button_value_is_refused_politely(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    async with running_bot(bot_settings(slack, database_dsn, redis_url)) as bot:
        channel = await _open_incident(slack, http, bot)
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        for bad in ("999", "1; DROP TABLE incidents"):
            resp = await driver.post(
                _block_actions(slack, channel.id, "U0BOB", value=bad), "application/x-www-form-urlencoded"
            )
            assert resp.status == 200
        await slack.wait_for(
            lambda s: len([r for r in s.responses if "No incident" in r.text or "not valid" in r.text]) == 2
        )
        conn = await asyncpg.connect(database_dsn)
        try:
            assert await conn.fetchval("SELECT status FROM incidents") == "triggered"
        finally:
            await conn.close()


async def test_slash_commands_ack_list_help_and_usage(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        channel = await _open_incident(slack, http, bot)
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        resp = await driver.slash_command("/incident", "help", user_id="U0ALICE", channel_id=channel.id)
        assert resp.status == 200
        await slack.wait_for(lambda s: any("/incident ack" in r.text for r in s.responses))
        await driver.slash_command("/incident", "frobnicate now", user_id="U0ALICE", channel_id=channel.id)
        await slack.wait_for(lambda s: any("Unknown subcommand `frobnicate`" in r.text for r in s.responses))
        # A stray quote is free text, not a parse error; a malformed value still gets its reason.
        await driver.slash_command("/incident", 'sev "P1', user_id="U0ALICE", channel_id=channel.id)
        await slack.wait_for(lambda s: any("is not a severity" in r.text for r in s.responses))
        await driver.slash_command("/incident", "list", user_id="U0ALICE", channel_id=channel.id)
        listing = await slack.wait_for(
            lambda s: next((r for r in s.responses if "Open incidents" in r.text), None)
        )
        assert "5xx &gt; 5%" in listing.text or "5xx > 5%" in listing.text
        await driver.slash_command("/incident", "ack", user_id="U0ALICE", channel_id=channel.id)
        ack = await slack.wait_for(
            lambda s: next((r for r in s.responses if "acknowledged by" in r.text), None)
        )
        assert ack.response_type == "in_channel"
        await driver.slash_command(
            "/incident", "ack", user_id="U0ALICE", channel_id=notification_channel(slack).id
        )
        await slack.wait_for(lambda s: any("Run this in an incident channel" in r.text for r in s.responses))
        assert all("Traceback" not in r.text for r in slack.responses)


async def test_a_click_while_the_card_is_being_stored_waits_for_it(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    """Slack shows the card before the bot has stored its ts: a click in that moment is
    answered once the write lands, not called invalid. The control: when no write is coming (a
    post begun long ago that never finished), the same click is refused."""
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        channel = await _open_incident(slack, http, bot)
        card = slack.messages(channel.id)[0]
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)

        async def ack() -> str:
            seen = len(slack.responses)
            resp = await driver.click(
                "ack_incident", user_id="U0BOB", channel_id=channel.id, message_ts=card.ts
            )
            assert resp.status == 200
            return (await slack.wait_for(lambda s: next((r for r in s.responses[seen:]), None))).text

        conn = await asyncpg.connect(database_dsn)
        try:
            # Back to the moment between Slack's answer and the bot's writes.
            await conn.execute("UPDATE incidents SET card_ts = NULL WHERE id = 1")
            await conn.execute(
                "UPDATE bot_messages SET ts = NULL, first_attempt_at = now() - interval '1 hour'"
                " WHERE key = 'card:1'"
            )
            assert "not valid any more" in await ack()  # the control: nothing is coming
            await conn.execute("UPDATE bot_messages SET first_attempt_at = now() WHERE key = 'card:1'")
            click = asyncio.create_task(ack())
            await asyncio.sleep(0.3)  # the slow write this test is about, then it lands
            await conn.execute("UPDATE bot_messages SET ts = $1 WHERE key = 'card:1'", card.ts)
            await conn.execute("UPDATE incidents SET card_ts = $1 WHERE id = 1", card.ts)
            answer = await click
            assert "acknowledged by" in answer, answer
            assert await conn.fetchval("SELECT acknowledged_by FROM incidents WHERE id = 1") == "U0BOB"
        finally:
            await conn.close()
