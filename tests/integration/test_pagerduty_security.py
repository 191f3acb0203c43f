"""PagerDuty V3 webhooks as an attacker would send them: replays of signed deliveries with a new
or missing X-Webhook-Id, events out of order or from before PagerDuty's retry window, display
names made of Slack markup, and links that are not plain https URLs.

Every delivery is signed as PagerDuty signs it (the sandbox's sender, or its signing helper
for a body a test changed): only the unsigned parts are the attacker's.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.app import BotServer
from bot.config.settings import Settings
from sandbox.pagerduty import (
    DEFAULT_API_TOKEN,
    DEFAULT_WEBHOOK_SECRET,
    PagerDutySandbox,
    SandboxNote,
    SentWebhook,
    sign_body,
)
from sandbox.slack import SlackDriver, SlackSandbox
from tests.integration.rig import SIGNING_SECRET, bot_settings, bot_url, incident_channel, running_bot

SLACK_ID = re.compile(r"[UW][A-Z0-9_]+")
EVIL_NAME = "<!channel> <https://evil.example|click here>\nSecond line"


@pytest.fixture
async def pd() -> AsyncIterator[PagerDutySandbox]:
    async with PagerDutySandbox() as sandbox:
        yield sandbox


def _settings(slack: SlackSandbox, pd: PagerDutySandbox, dsn: str, redis_url: str) -> Settings:
    return bot_settings(
        slack,
        dsn,
        redis_url,
        pagerduty_api_token=DEFAULT_API_TOKEN,
        pagerduty_api_url=pd.base_url,
        pagerduty_from_email="alice@example.com",
        pagerduty_webhook_secret=DEFAULT_WEBHOOK_SECRET,
        pagerduty_ca_bundle=str(pd.ca_path),
    )


async def _row(
    dsn: str, sql: str, until: Callable[[asyncpg.Record], bool], timeout: float = 10.0
) -> asyncpg.Record:
    """The first row of `sql` once `until` holds for it (deliveries are applied asynchronously)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(timeout):
            while True:
                row = await conn.fetchrow(sql)
                if row is not None and until(row):
                    return row
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def _fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


async def _post(
    http: aiohttp.ClientSession, bot: BotServer, body: bytes, webhook_id: str | None
) -> tuple[int, dict[str, Any]]:
    """POST a body signed with the real secret; the X-Webhook-Id is the sender's choice."""
    headers = {
        "Content-Type": "application/json",
        "X-PagerDuty-Signature": sign_body([DEFAULT_WEBHOOK_SECRET], body),
    }
    if webhook_id is not None:
        headers["X-Webhook-Id"] = webhook_id
    async with http.post(bot_url(bot) + "/webhooks/pagerduty", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


def _event(sent: SentWebhook, **changes: Any) -> dict[str, Any]:
    """The event of a webhook the sandbox sent, with some fields changed."""
    event: dict[str, Any] = json.loads(sent.body)["event"]
    event.update(changes)
    return event


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


STATUS = "SELECT status, acknowledged_by, acknowledged_by_external, resolved_by, resolved_by_external FROM incidents"


async def test_a_replayed_resolve_with_a_new_or_missing_webhook_id_does_not_resolve_again(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, pd: PagerDutySandbox
) -> None:
    async with running_bot(_settings(slack, pd, database_dsn, redis_url)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        pd_incident = pd.create_incident("Checkout 5xx")
        await pd.send_webhook(url, "incident.triggered", pd_incident.id)
        channel = await incident_channel(slack)
        assert await pd.send_webhook(url, "incident.resolved", pd_incident.id, agent="bob@example.com") == 202
        resolve = pd.webhooks[-1]
        await _row(database_dsn, STATUS, lambda r: r["status"] == "resolved")
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        # The on-call invited into the channel (level 1 of the escalation policy) reopens it.
        await slack.wait_for(lambda s: "U0ALICE" in s.channels[channel.id].members)
        await driver.slash_command("/incident", "reopen", user_id="U0ALICE", channel_id=channel.id)
        await _row(database_dsn, STATUS, lambda r: r["status"] == "triggered")

        # The signed body again: with a fresh X-Webhook-Id it is a duplicate of the stored
        # event; without one it is not a PagerDuty delivery at all.
        status, answer = await _post(http, bot, resolve.body, str(uuid.uuid4()))
        assert (status, answer["duplicate"]) == (202, True)
        status, answer = await _post(http, bot, resolve.body, None)
        assert status == 400 and "X-Webhook-Id" in answer["error"]

        # Positive control: a new change made in PagerDuty is applied, after anything stored
        # before it about the same incident.
        assert (
            await pd.send_webhook(url, "incident.acknowledged", pd_incident.id, agent="bob@example.com")
            == 202
        )
        row = await _row(database_dsn, STATUS, lambda r: r["status"] != "triggered")
        assert row["status"] == "acknowledged"
    kinds = [r["kind"] for r in await _fetch(database_dsn, "SELECT kind FROM timeline_events ORDER BY id")]
    assert kinds.count("resolved") == 1 and kinds.count("reopened") == 1
    stored = await _fetch(database_dsn, "SELECT delivery_id FROM webhook_inbox ORDER BY id")
    # Stored once each, under the signed event id: triggered, resolved, acknowledged.
    assert [r["delivery_id"] for r in stored] == [json.loads(w.body)["event"]["id"] for w in pd.webhooks]
    # Written to PagerDuty: only the reopen made in Slack (issue #12), nothing for the replays.
    puts = pd.requests_to("PUT", f"/incidents/{pd_incident.id}")
    assert [put.json()["incident"]["status"] for put in puts] == ["triggered"]


async def test_state_changes_apply_only_when_strictly_newer_ties_broken_by_event_id(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, pd: PagerDutySandbox
) -> None:
    async with running_bot(_settings(slack, pd, database_dsn, redis_url)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        pd_incident = pd.create_incident("Queue backlog")
        await pd.send_webhook(url, "incident.triggered", pd_incident.id)
        await incident_channel(slack)
        at = _iso(datetime.now(UTC) - timedelta(seconds=30))
        template = pd.webhooks[-1]
        assert (
            await pd.send_event(
                url, _event(template, id="01TIE-B", event_type="incident.resolved", occurred_at=at)
            )
            == 202
        )
        await _row(database_dsn, STATUS, lambda r: r["status"] == "resolved")
        # Same time, smaller id: not newer, ignored.
        assert (
            await pd.send_event(
                url, _event(template, id="01TIE-A", event_type="incident.reopened", occurred_at=at)
            )
            == 202
        )
        stale = await _row(
            database_dsn, "SELECT text FROM timeline_events WHERE kind = 'pagerduty_stale'", lambda r: True
        )
        assert "incident.reopened" in stale["text"]
        assert (await _fetch(database_dsn, STATUS))[0]["status"] == "resolved"
        # Positive control: same time, greater id: newer, applied.
        assert (
            await pd.send_event(
                url, _event(template, id="01TIE-C", event_type="incident.reopened", occurred_at=at)
            )
            == 202
        )
        await _row(database_dsn, STATUS, lambda r: r["status"] == "triggered")


async def test_events_from_before_the_retry_window_are_acknowledged_but_never_applied(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, pd: PagerDutySandbox
) -> None:
    async with running_bot(_settings(slack, pd, database_dsn, redis_url)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        pd_incident = pd.create_incident("Disk full")
        await pd.send_webhook(url, "incident.triggered", pd_incident.id)
        await incident_channel(slack)
        template = pd.webhooks[-1]
        old = _event(
            template,
            id="01OLD",
            event_type="incident.resolved",
            occurred_at=_iso(datetime.now(UTC) - timedelta(hours=55)),
        )
        status, answer = await _post(http, bot, json.dumps({"event": old}).encode(), "W-old")
        # 2xx so PagerDuty stops retrying without counting a failed delivery; not stored.
        assert status == 202 and answer["status"] == "ignored" and "48 h" in answer["reason"]
        # Positive control: within the window (47 h ago) the same change is applied.
        recent = dict(old, id="01RECENT", occurred_at=_iso(datetime.now(UTC) - timedelta(hours=47)))
        status, answer = await _post(http, bot, json.dumps({"event": recent}).encode(), "W-recent")
        assert (status, answer["status"]) == (202, "accepted")
        await _row(database_dsn, STATUS, lambda r: r["status"] == "resolved")
    ids = [r["delivery_id"] for r in await _fetch(database_dsn, "SELECT delivery_id FROM webhook_inbox")]
    assert "01OLD" not in ids and "01RECENT" in ids


async def test_pagerduty_display_names_never_mention_link_or_fill_a_slack_user_field(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, pd: PagerDutySandbox
) -> None:
    mallory = pd.add_user("PU06666", EVIL_NAME, "mallory@example.com")
    async with running_bot(_settings(slack, pd, database_dsn, redis_url)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        pd_incident = pd.create_incident("Payments latency")
        await pd.send_webhook(url, "incident.triggered", pd_incident.id)
        channel = await incident_channel(slack)

        await pd.send_webhook(url, "incident.acknowledged", pd_incident.id, agent=mallory.id)
        row = await _row(database_dsn, STATUS, lambda r: r["status"] == "acknowledged")
        assert row["acknowledged_by"] is None
        assert "‹!channel›" in row["acknowledged_by_external"] and "\n" not in row["acknowledged_by_external"]

        pd_incident.notes.append(SandboxNote("PN06666", "Looking <!here>", mallory.id, datetime.now(UTC)))
        await pd.send_webhook(url, "incident.annotated", pd_incident.id, agent=mallory.id)
        pd_incident.assignee_ids = [mallory.id]
        await pd.send_webhook(url, "incident.reassigned", pd_incident.id, agent=mallory.id)
        await pd.send_webhook(url, "incident.resolved", pd_incident.id, agent=mallory.id)
        row = await _row(database_dsn, STATUS, lambda r: r["status"] == "resolved")
        assert row["resolved_by"] is None and "‹!channel›" in row["resolved_by_external"]
        await pd.send_webhook(url, "incident.reopened", pd_incident.id, agent=mallory.id)
        # Positive control: the name is shown, defused, in what is announced in the channel.
        await slack.wait_for(
            lambda s: any("Reopened by ‹!channel›" in m.text for m in s.messages(channel.id))
        )
        await slack.wait_for(
            lambda s: any("PagerDuty note by ‹!channel›" in m.text for m in s.messages(channel.id))
        )
        await slack.wait_for(
            lambda s: any("reassigned to ‹!channel›" in m.text for m in s.messages(channel.id))
        )
    row = (await _fetch(database_dsn, STATUS))[0]
    assert row["status"] == "triggered" and row["acknowledged_by_external"] is None
    sent = json.dumps([call.args for call in slack.calls], ensure_ascii=False)
    for markup in ("<!channel>", "<!here>", "<https://evil.example"):
        assert markup not in sent, markup
    actors = [
        r["actor"] for r in await _fetch(database_dsn, "SELECT actor FROM timeline_events") if r["actor"]
    ]
    assert all(SLACK_ID.fullmatch(actor) for actor in actors), actors


@pytest.mark.parametrize(
    "html_url",
    ["http://sandbox.pagerduty.com/incidents/PX", "https://evil.example/x|<!channel>", "javascript:alert(1)"],
)
async def test_a_link_that_is_not_plain_https_is_dropped(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    html_url: str,
) -> None:
    async with running_bot(_settings(slack, pd, database_dsn, redis_url)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        genuine = pd.create_incident("Genuine")
        await pd.send_webhook(url, "incident.triggered", genuine.id)
        template = pd.webhooks[-1]
        data = dict(json.loads(template.body)["event"]["data"], id="PEVIL01", html_url=html_url)
        assert await pd.send_event(url, _event(template, id="01EVIL", data=data)) == 202
        rows = await _row(
            database_dsn,
            "SELECT count(*) AS n FROM incidents WHERE pagerduty_incident_id IS NOT NULL",
            lambda r: r["n"] == 2,
        )
        assert rows["n"] == 2
    links = {
        r["pagerduty_incident_id"]: r["pagerduty_url"]
        for r in await _fetch(database_dsn, "SELECT pagerduty_incident_id, pagerduty_url FROM incidents")
    }
    assert links["PEVIL01"] is None
    assert links[genuine.id] == f"https://sandbox.pagerduty.com/incidents/{genuine.id}"  # positive control
    assert html_url not in json.dumps([call.args for call in slack.calls], ensure_ascii=False)
