"""Socket Mode end to end: the sandbox's apps.connections.open + WebSocket, a bare Bolt app, and
the real bot started with SLACK_APP_TOKEN and no signing secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import asyncpg
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import SlackDriver, SlackSandbox, SocketModeDriver
from tests.integration.rig import bot_settings, bot_url, playbooks_with_roles, running_bot


def _acked_card(channel_id: str, user_id: str) -> Callable[[SlackSandbox], bool]:
    def acked(s: SlackSandbox) -> bool:
        card = s.messages(channel_id)[0]
        text = json.dumps(card.blocks)
        return "Acknowledged" in text and f"<@{user_id}>" in text and "ack_incident" not in text

    return acked


# --------------------------------------------------------------------------------------------
# The sandbox side, with the real slack_sdk / Bolt Socket Mode client
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def sandbox() -> AsyncIterator[SlackSandbox]:
    sb = SlackSandbox(rate_limits=False)
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


async def test_apps_connections_open_wants_the_app_level_token(sandbox: SlackSandbox) -> None:
    bot = AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
    with pytest.raises(SlackApiError) as info:
        await bot.apps_connections_open(app_token=sandbox.bot_token)
    assert info.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as info:
        await bot.apps_connections_open(app_token="xapp-1-A0-1-forged")
    assert info.value.response["error"] == "invalid_auth"

    assert sandbox.app_token is not None
    opened = await bot.apps_connections_open(app_token=sandbox.app_token)
    url = opened["url"]
    assert url.startswith(sandbox.base_url.replace("http://", "ws://") + "/socket/")

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            hello = await ws.receive_json(timeout=3)
            assert hello["type"] == "hello"
            assert hello["num_connections"] == 1
            assert hello["connection_info"] == {"app_id": sandbox.app_id}
            assert "debug_info" in hello
            await sandbox.wait_for(lambda s: len(s.connected_sockets) == 1)
        # the ticket was one-time
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.status == 401
    await sandbox.wait_for(lambda s: not s.connected_sockets)


async def test_stop_sends_disconnect_then_closes() -> None:
    sb = SlackSandbox()
    await sb.start()
    try:
        assert sb.app_token is not None
        web_client = AsyncWebClient(token=sb.app_token, base_url=sb.api_url)
        url = (await web_client.apps_connections_open(app_token=sb.app_token))["url"]
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            assert (await ws.receive_json(timeout=3))["type"] == "hello"
            await sb.wait_for(lambda s: s.connected_sockets)
            stopping = asyncio.create_task(sb.stop())
            disconnect = await ws.receive_json(timeout=3)
            assert disconnect["type"] == "disconnect" and disconnect["reason"] == "link_disabled"
            closing = await ws.receive(timeout=3)
            assert closing.type == aiohttp.WSMsgType.CLOSE
            await stopping
        assert not sb.connected_sockets and sb.socket_connections[0].closed is not None
    finally:
        await sb.stop()


async def test_envelopes_acks_timeouts_and_disconnect_with_a_bolt_app(sandbox: SlackSandbox) -> None:
    assert sandbox.app_token is not None
    client = AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
    app = AsyncApp(client=client, request_verification_enabled=False)
    seen: list[str] = []

    @app.command("/echo")
    async def echo(ack: AsyncAck, command: dict[str, str]) -> None:
        await ack(f"echo: {command['text']}")

    @app.command("/silent")
    async def silent(command: dict[str, str]) -> None:  # never acks
        seen.append(command["text"])

    @app.action("go")
    async def go(ack: AsyncAck, body: dict[str, object]) -> None:
        await ack()
        seen.append(str(body["type"]))

    @app.event("reaction_added")
    async def reacted(event: dict[str, str]) -> None:
        seen.append(event["reaction"])

    handler = AsyncSocketModeHandler(app, app_token=sandbox.app_token)
    await cast(Any, handler).connect_async()
    try:
        driver = SocketModeDriver(sandbox)
        resp = await driver.slash_command("/echo", "hi there", channel_id="C0INCIDENTS")
        assert resp.status == 200 and resp.json() == {"text": "echo: hi there"}
        assert resp.envelope is not None and resp.envelope.type == "slash_commands"
        assert resp.envelope.accepts_response_payload
        # rendered and recorded as Slack does with a command's ack body
        ack_reply = await sandbox.wait_for(
            lambda s: next((r for r in s.responses if r.via == "ack" and r.text == "echo: hi there"), None)
        )
        assert ack_reply.kind == "command" and ack_reply.ok
        assert any(e.text == "echo: hi there" for e in sandbox.ephemerals_for("U0ALICE", "C0INCIDENTS"))

        msg = sandbox.add_message(
            "C0INCIDENTS",
            "pick",
            blocks=[
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "go",
                            "text": {"type": "plain_text", "text": "Go"},
                            "value": "1",
                        }
                    ],
                }
            ],
        )
        resp = await driver.click("go", channel_id="C0INCIDENTS")
        assert resp.status == 200 and resp.body == ""
        assert resp.envelope is not None and resp.envelope.type == "interactive"
        assert not resp.envelope.accepts_response_payload
        await driver.reaction_added("eyes", channel_id="C0INCIDENTS", ts=msg.ts)
        await sandbox.wait_for(lambda s: seen == ["block_actions", "eyes"])
        event_envelope = sandbox.socket_envelopes[-1]
        assert event_envelope.type == "events_api" and event_envelope.acked
        assert event_envelope.message()["retry_attempt"] == 0
        assert event_envelope.payload["event"]["type"] == "reaction_added"

        quick = SocketModeDriver(sandbox, ack_timeout=0.5)
        resp = await quick.slash_command("/silent", "nobody acks", channel_id="C0INCIDENTS")
        assert resp.status == 504 and resp.body == "ack_timeout"
        assert resp.envelope is not None and not resp.envelope.acked
        assert len(sandbox.socket_acks) == 3  # echo, go and the event; none for /silent

        # Slack asks for a refresh: the client opens a new connection and drops the old one.
        first = sandbox.connected_sockets[0]
        await sandbox.disconnect_sockets("refresh_requested")
        await sandbox.wait_for(lambda s: len(s.socket_connections) == 2 and not first.is_open)
        assert len(sandbox.calls_to("apps.connections.open")) == 2
        resp = await driver.slash_command("/echo", "again", channel_id="C0INCIDENTS")
        assert resp.status == 200 and resp.envelope is not None
        assert resp.envelope.connection_id == sandbox.connected_sockets[0].id != first.id
    finally:
        await cast(Any, handler).close_async()
    await sandbox.wait_for(lambda s: not s.connected_sockets)
    resp = await SocketModeDriver(sandbox, ack_timeout=0.2).slash_command("/echo", "anyone?")
    assert resp.status == 504 and resp.body == "no_connection"


# --------------------------------------------------------------------------------------------
# The real bot in Socket Mode
# --------------------------------------------------------------------------------------------


async def test_bot_over_socket_mode(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        slack_signing_secret=None,
        slack_app_token=slack.app_token,
        playbooks_dir=playbooks_with_roles(tmp_path / "pb"),
    )
    async with running_bot(settings) as bot:
        await slack.wait_for(lambda s: s.connected_sockets)
        assert [c.ok for c in slack.calls_to("apps.connections.open")] == [True]
        driver = SocketModeDriver(slack)  # envelopes on the bot's socket; nothing goes to its HTTP port
        assert slack.incident_channel is not None
        here = slack.incident_channel.id

        resp = await driver.slash_command("/incident", "help", user_id="U0ALICE", channel_id=here)
        assert resp.status == 200
        await slack.wait_for(lambda s: any("/incident ack" in r.text for r in s.responses))

        resp = await driver.slash_command(
            "/incident", 'open "socket test" sev=P3', user_id="U0ALICE", channel_id=here
        )
        assert resp.status == 200
        channel = await slack.wait_for(lambda s: s.find_channel("inc-"))
        assert "socket" in channel.name
        await slack.wait_for(lambda s: s.messages(channel.id) and s.messages(here))
        # The button is bound to the card: click once the bot has stored where the card is.
        async with asyncio.timeout(10):
            while not ((loaded := await bot.parts.store.load_view(1)) and loaded[1].card_ts):
                await asyncio.sleep(0.02)

        resp = await driver.click("ack_incident", user_id="U0BOB", channel_id=channel.id)
        assert resp.status == 200
        await slack.wait_for(_acked_card(channel.id, "U0BOB"))

        conn = await asyncpg.connect(database_dsn)
        try:
            row = await conn.fetchrow("SELECT title, severity, status, acknowledged_by FROM incidents")
            assert dict(row) == {
                "title": "socket test",
                "severity": "P3",
                "status": "acknowledged",
                "acknowledged_by": "U0BOB",
            }
        finally:
            await conn.close()
        assert all(e.acked for e in slack.socket_envelopes)
        assert [e.type for e in slack.socket_envelopes] == ["slash_commands", "slash_commands", "interactive"]

    assert not slack.connected_sockets


async def test_socket_mode_bot_takes_nothing_over_http(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    """In Socket Mode Slack never calls /slack/events, and Bolt runs with request verification
    off: an unsigned request there must not reach a listener."""
    settings = bot_settings(
        slack, database_dsn, redis_url, slack_signing_secret=None, slack_app_token=slack.app_token
    )
    async with running_bot(settings) as bot:
        await slack.wait_for(lambda s: s.connected_sockets)
        driver = SocketModeDriver(slack)
        await driver.slash_command("/incident", 'open "socket test" sev=P3', channel_id="C0INCIDENTS")
        channel = await slack.wait_for(lambda s: s.find_channel("inc-"))
        forged = SlackDriver(slack, bot_url(bot) + "/slack/events", "not-the-signing-secret", http)
        resp = await forged.slash_command("/incident", "sev P1", user_id="U0CAROL", channel_id=channel.id)
        # today Bolt answers 200 and runs the command for anyone who can reach the port
        assert resp.status in (401, 403, 404), resp.body
