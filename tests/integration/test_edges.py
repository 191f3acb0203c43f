"""The HTTP edges fail closed and cheap: secrets with a minimum length at start-up, credentials
checked before a body is read, per-route body limits, header and body timeouts, a bound on
bodies read before authentication, Slack replays refused, unparsable bodies a 400, and a
/readyz that names the failed dependency without its address.

Requests that must be refused before their body is read are sent on raw connections that
send the headers and never the body: an answer can only come from the headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client import generate_latest

from bot.__main__ import main
from bot.app import BotServer
from bot.config.settings import Settings, load_settings
from sandbox.pagerduty import DEFAULT_WEBHOOK_SECRET, sign_body
from sandbox.services import RedisServer
from sandbox.slack import Channel, SlackDriver, SlackSandbox
from sandbox.slack.driver import DriverResponse
from tests.integration.rig import (
    AM_TOKEN,
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    incident_channel,
    payload,
    post_alert,
    running_bot,
)

KIB = 1024
MIB = 1024 * KIB
BODY_TIMEOUT_S = 2.0
HEADER_TIMEOUT_S = 1.0
FLOOD = 60
UNAUTHENTICATED_READS = 16
WELL_FORMED_BUT_WRONG = "v1=" + "0" * 64


# -- raw HTTP/1.1 on a socket ------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


def _head(path: str, headers: Mapping[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _read_reply(reader: asyncio.StreamReader) -> Reply:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed without an answer")
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    raw = await reader.readexactly(int(headers.get("content-length", "0")))
    return Reply(int(status_line.split()[1]), headers, json.loads(raw) if raw else None)


@contextlib.asynccontextmanager
async def _connection(bot: BotServer) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", bot.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _headers_only(bot: BotServer, path: str, headers: Mapping[str, str], timeout: float = 5.0) -> Reply:
    """Send a request's headers (Content-Length promises a body) and never its body."""
    async with _connection(bot) as (reader, writer):
        writer.write(_head(path, headers))
        await writer.drain()
        return await asyncio.wait_for(_read_reply(reader), timeout)


async def _chunked(bot: BotServer, path: str, headers: Mapping[str, str], total: int) -> Reply:
    """Stream a chunked body of `total` bytes while waiting for the answer."""
    async with _connection(bot) as (reader, writer):
        writer.write(_head(path, {**headers, "Transfer-Encoding": "chunked"}))

        async def send() -> None:
            chunk = b" " * (64 * KIB)
            with contextlib.suppress(ConnectionError):
                for _ in range(total // len(chunk)):
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            return await asyncio.wait_for(_read_reply(reader), 10)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender


def _slack_headers(
    length: int | None, *, timestamp: str | None = None, signature: str = "v0=" + "0" * 64
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp if timestamp is not None else str(int(time.time())),
        "X-Slack-Signature": signature,
    }
    if length is not None:
        headers["Content-Length"] = str(length)
    return headers


def _pagerduty_headers(length: int | None, signature: str | None = WELL_FORMED_BUT_WRONG) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Webhook-Id": "W-flood"}
    if length is not None:
        headers["Content-Length"] = str(length)
    if signature is not None:
        headers["X-PagerDuty-Signature"] = signature
    return headers


def _edge_settings(slack: SlackSandbox, dsn: str, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "pagerduty_webhook_secret": DEFAULT_WEBHOOK_SECRET,
        "http_body_timeout_seconds": BODY_TIMEOUT_S,
        "http_max_unauthenticated_reads": UNAUTHENTICATED_READS,
        **overrides,
    }
    return bot_settings(slack, dsn, redis_url, **values)


async def _count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value: int = await conn.fetchval(sql)
        return value
    finally:
        await conn.close()


def _pagerduty_event(occurred_at: str = "") -> bytes:
    event = {
        "id": "01EDGE0000000000000000000",
        "event_type": "incident.widget.spun",
        "resource_type": "incident",
        "occurred_at": occurred_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "agent": None,
        "client": {"name": "PagerDuty"},
        "data": {"type": "widget", "id": "PW1"},
    }
    return json.dumps({"event": event}).encode()


async def _post_pagerduty(http: aiohttp.ClientSession, bot: BotServer, body: bytes) -> tuple[int, Any]:
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Id": "W-good",
        "X-PagerDuty-Signature": sign_body([DEFAULT_WEBHOOK_SECRET], body),
    }
    async with http.post(bot_url(bot) + "/webhooks/pagerduty", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


# -- secrets at start-up ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALERTMANAGER_WEBHOOK_TOKEN", ""),
        ("ALERTMANAGER_WEBHOOK_TOKEN", "short-token"),
        ("SLACK_SIGNING_SECRET", ""),
        ("SLACK_SIGNING_SECRET", "short-secret"),
        ("PAGERDUTY_WEBHOOK_SECRET", ""),
        ("PAGERDUTY_WEBHOOK_SECRET", "a-long-enough-pagerduty-secret,short-secret"),
    ],
)
def test_a_short_or_empty_secret_stops_start_up_with_one_line(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
        "ALERTMANAGER_WEBHOOK_TOKEN",
        "PAGERDUTY_WEBHOOK_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    good = {
        "SLACK_BOT_TOKEN": "xoxb-0000000001-0000000002-edgetoken",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "ALERTMANAGER_WEBHOOK_TOKEN": AM_TOKEN,
        "PAGERDUTY_WEBHOOK_SECRET": DEFAULT_WEBHOOK_SECRET,
        # Never reached: the configuration is refused before any connection.
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    for name, setting in good.items():
        monkeypatch.setenv(name, setting)
    assert load_settings().alertmanager_webhook_token.get_secret_value() == AM_TOKEN  # positive control

    monkeypatch.setenv(variable, value)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert variable in lines[0] and "at least 16 characters" in lines[0]
    assert "Traceback" not in err
    assert "short-" not in err  # the secret itself is never printed


# -- credentials before bodies; per-route limits ------------------------------------------------


async def test_requests_without_valid_credential_headers_are_refused_before_the_body_is_read(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    four_mib = str(4 * MIB)
    async with running_bot(_edge_settings(slack, database_dsn, redis_url)) as bot:
        refusals = {
            "alertmanager without bearer": ("/webhooks/alertmanager", {"Content-Length": four_mib}),
            "alertmanager with a wrong bearer": (
                "/webhooks/alertmanager",
                {"Content-Length": four_mib, "Authorization": "Bearer wrong-token-of-some-length"},
            ),
            "pagerduty unsigned": ("/webhooks/pagerduty", _pagerduty_headers(4 * MIB, signature=None)),
            "pagerduty malformed signature": ("/webhooks/pagerduty", _pagerduty_headers(4 * MIB, "v1=xyz")),
            "slack unsigned": ("/slack/events", {"Content-Length": four_mib}),
            "slack non-numeric timestamp": ("/slack/events", _slack_headers(4 * MIB, timestamp="abc")),
            "slack stale timestamp": (
                "/slack/events",
                _slack_headers(4 * MIB, timestamp=str(int(time.time()) - 600)),
            ),
            "slack malformed signature": ("/slack/events", _slack_headers(4 * MIB, signature="v0=nothex")),
        }
        for name, (path, headers) in refusals.items():
            reply = await _headers_only(bot, path, headers)
            assert reply.status == 401, (name, reply)
            assert reply.body["status"] == "error" and reply.body["error"], name

        # Credentials that look right, a body over the route's limit: 413 from Content-Length.
        too_large = {
            "alertmanager over 4 MiB": (
                "/webhooks/alertmanager",
                {"Content-Length": str(4 * MIB + 1), "Authorization": f"Bearer {AM_TOKEN}"},
            ),
            "pagerduty over 1 MiB": ("/webhooks/pagerduty", _pagerduty_headers(MIB + 1)),
            "slack over 64 KiB": ("/slack/events", _slack_headers(64 * KIB + 1)),
        }
        for name, (path, headers) in too_large.items():
            reply = await _headers_only(bot, path, headers)
            assert reply.status == 413, (name, reply)
            assert "larger than" in reply.body["error"], name

        # The same limits hold for a chunked body, which has no Content-Length.
        reply = await _chunked(bot, "/webhooks/pagerduty", _pagerduty_headers(None), 4 * MIB)
        assert reply.status == 413 and str(MIB) in reply.body["error"]
        reply = await _chunked(bot, "/slack/events", _slack_headers(None), MIB)
        assert reply.status == 413 and str(64 * KIB) in reply.body["error"]

        # Positive control: a signed PagerDuty delivery and an authenticated alert are taken.
        status, body = await _post_pagerduty(http, bot, _pagerduty_event())
        assert (status, body["status"]) == (202, "accepted")
        assert (await post_alert(http, bot, payload()))[0] == 200
    assert await _count(database_dsn, "SELECT count(*) FROM webhook_inbox") == 2
    assert slack.calls_to("auth.test") == []  # Bolt never saw a Slack request


async def test_a_flood_of_unauthenticated_bodies_is_bounded_and_cut_off(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    """60 connections promise a PagerDuty body under the limit and never send it: at most
    UNAUTHENTICATED_READS wait for theirs (cut off at the body timeout, 408); the others are
    answered 503 with Retry-After at once."""
    async with running_bot(_edge_settings(slack, database_dsn, redis_url)) as bot:
        order: list[int] = []

        async def one() -> Reply:
            reply = await _headers_only(bot, "/webhooks/pagerduty", _pagerduty_headers(MIB - 1), timeout=15)
            order.append(reply.status)
            return reply

        replies = await asyncio.gather(*(one() for _ in range(FLOOD)))
        statuses = sorted(r.status for r in replies)
        assert statuses == [408] * UNAUTHENTICATED_READS + [503] * (FLOOD - UNAUTHENTICATED_READS)
        assert order.index(408) == FLOOD - UNAUTHENTICATED_READS  # every 503 came before any 408
        busy = next(r for r in replies if r.status == 503)
        assert busy.headers["retry-after"] == "1"
        assert "retry later" in busy.body["error"]
        assert f"within {BODY_TIMEOUT_S:g} s" in next(r for r in replies if r.status == 408).body["error"]
        # Positive control: once the flood is cut off, a signed delivery gets through.
        status, _ = await _post_pagerduty(http, bot, _pagerduty_event())
        assert status == 202
    assert await _count(database_dsn, "SELECT count(*) FROM webhook_inbox") == 1


async def test_a_client_that_never_finishes_its_headers_is_disconnected(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    settings = _edge_settings(slack, database_dsn, redis_url, http_header_timeout_seconds=HEADER_TIMEOUT_S)
    async with running_bot(settings) as bot:
        async with _connection(bot) as (reader, writer):
            writer.write(b"POST /webhooks/pagerduty HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Webhook-Id: W")
            await writer.drain()
            # The server closes the connection (EOF) without an answer.
            assert await asyncio.wait_for(reader.read(), HEADER_TIMEOUT_S + 5) == b""
        # Positive control: a complete request on a new connection is answered.
        reply = await _headers_only(bot, "/webhooks/pagerduty", _pagerduty_headers(10, signature=None))
        assert reply.status == 401


# -- Slack: malformed headers, replays and retries ---------------------------------------------


@dataclass
class Sent:
    body: bytes
    content_type: str
    timestamp: int
    headers: dict[str, str]


class RecordingDriver(SlackDriver):
    """The sandbox's driver, remembering what it signed so a test can send it again."""

    def __init__(self, slack: SlackSandbox, url: str, session: aiohttp.ClientSession) -> None:
        super().__init__(slack, url, SIGNING_SECRET, session)
        self.sent: list[Sent] = []

    async def post(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> DriverResponse:
        ts = int(time.time()) if timestamp is None else timestamp
        self.sent.append(Sent(body, content_type, ts, dict(headers or {})))
        return await super().post(body, content_type, timestamp=ts, signature=signature, headers=headers)

    async def again(self, sent: Sent, **headers: str) -> DriverResponse:
        """The same request, byte for byte and with the same signature."""
        return await self.post(sent.body, sent.content_type, timestamp=sent.timestamp, headers=headers)


async def _open_incident(slack: SlackSandbox, http: aiohttp.ClientSession, bot: BotServer) -> Channel:
    await post_alert(http, bot, payload())
    return await incident_channel(slack)


async def test_a_signed_slack_request_replayed_within_five_minutes_is_refused(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    async with running_bot(_edge_settings(slack, database_dsn, redis_url)) as bot:
        channel = await _open_incident(slack, http, bot)
        driver = RecordingDriver(slack, bot_url(bot) + "/slack/events", http)
        assert (
            await driver.slash_command("/incident", "help", user_id="U0BOB", channel_id=channel.id)
        ).status == 200
        await slack.wait_for(lambda s: any("/incident ack" in r.text for r in s.responses))

        replay = await driver.again(driver.sent[-1])
        assert replay.status == 401 and "replay" in replay.json()["error"]
        # Positive control: a new request of the same user is still handled, and is answered
        # after the replay would have been.
        await driver.slash_command("/incident", "list", user_id="U0BOB", channel_id=channel.id)
        await slack.wait_for(lambda s: any("Open incidents" in r.text for r in s.responses))
    assert sum("/incident ack" in r.text for r in slack.responses) == 1


async def _wait_count(dsn: str, sql: str, expected: int) -> None:
    """Until `sql` counts `expected` rows (Slack events are handled after the 200)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(10):
            while await conn.fetchval(sql) != expected:
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def test_a_slack_retry_with_the_same_signature_is_answered_200_but_a_replay_is_refused(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    """Slack re-sends an Events API delivery it got no timely answer for, with the same
    signature and X-Slack-Retry-Num: answered 200 (not run again), while the same bytes without
    that header are a replay."""
    pinned = "SELECT count(*) FROM timeline_events WHERE kind = 'pinned'"
    async with running_bot(_edge_settings(slack, database_dsn, redis_url)) as bot:
        channel = await _open_incident(slack, http, bot)
        message = slack.add_message(channel.id, "Rolled back deploy 42", user_id="U0BOB")
        driver = RecordingDriver(slack, bot_url(bot) + "/slack/events", http)
        assert (await driver.reaction_added("pushpin", channel_id=channel.id, ts=message.ts)).status == 200
        await _wait_count(database_dsn, pinned, 1)
        first = driver.sent[-1]
        retry = await driver.again(
            first, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        )
        assert retry.status == 200
        replay = await driver.again(first)
        assert replay.status == 401 and "replay" in replay.json()["error"]
        # Positive control: a new pin of another message is handled.
        other = slack.add_message(channel.id, "Cache flushed", user_id="U0BOB")
        await driver.reaction_added("pushpin", channel_id=channel.id, ts=other.ts)
        await _wait_count(database_dsn, pinned, 2)
    assert await _count(database_dsn, pinned) == 2


async def test_a_malformed_slack_timestamp_is_a_401_not_a_500(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    async with running_bot(_edge_settings(slack, database_dsn, redis_url)) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        body = b"command=%2Fincident&text=help&user_id=U0BOB&channel_id=C1"
        for timestamp in ("abc", "", "1.5e9", "-1", "0x10", "9" * 30):
            headers = {"X-Slack-Request-Timestamp": timestamp}
            reply = await driver.post(body, "application/x-www-form-urlencoded", headers=headers)
            assert reply.status == 401, (timestamp, reply)
            assert "X-Slack-Request-Timestamp" in reply.json()["error"]
            assert "Traceback" not in reply.body
        # Positive control: a command with a real timestamp is handled.
        assert (await driver.slash_command("/incident", "help", user_id="U0BOB")).status == 200
        await slack.wait_for(lambda s: any("/incident ack" in r.text for r in s.responses))
    assert len(slack.responses) == 1


# -- Alertmanager bodies --------------------------------------------------------------------------


async def test_unparsable_alertmanager_bodies_are_a_400_with_a_reason(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    nested = payload()
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    nested["extra"] = deep
    bodies = {
        "UTF-16": (json.dumps(payload()).encode("utf-16"), "not UTF-8"),
        "10,000 nested arrays": (b"[" * 10_000 + b"]" * 10_000, "nests deeper"),
        "40 levels in an ignored field": (json.dumps(nested).encode(), "nests deeper"),
    }
    async with running_bot(_edge_settings(slack, database_dsn, redis_url)) as bot:
        for name, (body, reason) in bodies.items():
            status, answer = await post_alert(http, bot, body)
            assert status == 400, (name, answer)
            assert reason in answer["error"], (name, answer)
        assert await _count(database_dsn, "SELECT count(*) FROM webhook_inbox") == 0
        # Positive control: a well-formed payload is stored and opens an incident.
        assert (await post_alert(http, bot, payload()))[0] == 200
        await incident_channel(slack)
    assert await _count(database_dsn, "SELECT count(*) FROM webhook_inbox") == 1
    assert len(slack.calls_to("conversations.create")) == 1


async def test_a_nul_or_a_lone_surrogate_is_repaired_and_no_alert_of_the_group_is_lost(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    """PostgreSQL cannot store U+0000 or a lone surrogate: refusing the body (or a 503 that
    Alertmanager retries forever) would lose every alert of the group. The characters are
    replaced by U+FFFD, counted, and said on the incident's timeline; the alerts are kept."""
    poisoned = payload()
    poisoned["alerts"][0]["labels"]["pod"] = "api\u0000"
    body = json.dumps(poisoned).replace("prod", "\\ud800").encode()
    expected = 1 + json.dumps(poisoned).count("prod")
    async with running_bot(_edge_settings(slack, database_dsn, redis_url)) as bot:
        status, answer = await post_alert(http, bot, body)
        assert status == 200, answer
        channel = await incident_channel(slack)
        incident = await bot.parts.store.incident_by_channel(channel.id)
        assert incident is not None
        view = await bot.parts.flows.incidents.view(incident.id)
        assert view is not None and len(view.alerts) == len(poisoned["alerts"])
        assert any(a.labels.get("pod") == "api\ufffd" for a in view.alerts)
        events = await bot.parts.store.timeline(incident.id)
        repaired = [e for e in events if e.kind == "delivery_repaired"]
        assert len(repaired) == 1 and f"{expected} character(s)" in repaired[0].text
        exposition = generate_latest(bot.parts.metrics.registry).decode()
        assert (
            f'incidentbot_webhook_characters_repaired_total{{source="alertmanager"}} {expected}.0'
            in exposition
        )


# -- /readyz ------------------------------------------------------------------------------------------


async def test_readyz_names_the_failed_dependency_without_its_address(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    redis_server: RedisServer,
) -> None:
    async with running_bot(_edge_settings(slack, database_dsn, redis_url)) as bot:
        async with http.get(bot_url(bot) + "/readyz") as resp:
            assert resp.status == 200  # positive control
        redis_server.stop()
        try:
            async with http.get(bot_url(bot) + "/readyz") as resp:
                text = await resp.text()
                assert resp.status == 503
            assert json.loads(text) == {"status": "unavailable", "failed": {"redis": "unreachable"}}
            for leak in (str(redis_server.port), "127.0.0.1", "redis://", "Error"):
                assert leak not in text
            # Without Redis a Slack request cannot be checked for a replay: refused, not run.
            driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
            reply = await driver.slash_command("/incident", "help", user_id="U0BOB")
            assert reply.status == 503 and reply.headers["Retry-After"] == "1"
        finally:
            redis_server.restart()
        assert not slack.responses
