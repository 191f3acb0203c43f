"""PagerDuty both ways against the TLS sandbox PagerDuty: webhooks in, REST calls out, no echo."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

from bot.app import BotServer
from bot.config.settings import Settings
from sandbox.pagerduty import (
    DEFAULT_API_TOKEN,
    DEFAULT_WEBHOOK_SECRET,
    PagerDutySandbox,
    SandboxIncident,
    SandboxNote,
)
from sandbox.slack import Channel, SlackDriver, SlackSandbox
from tests.integration.rig import (
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    incident_channel,
    notification_channel,
    playbooks_with_roles,
    running_bot,
)

NEW_SECRET = "rotated-pagerduty-secret"


@pytest.fixture
async def pd() -> AsyncIterator[PagerDutySandbox]:
    async with PagerDutySandbox(webhook_secrets=(DEFAULT_WEBHOOK_SECRET,)) as sandbox:
        yield sandbox


def _settings(
    slack: SlackSandbox, pd: PagerDutySandbox, dsn: str, redis_url: str, **overrides: Any
) -> Settings:
    return bot_settings(
        slack,
        dsn,
        redis_url,
        pagerduty_api_token=DEFAULT_API_TOKEN,
        pagerduty_api_url=pd.base_url,
        pagerduty_from_email="alice@example.com",
        pagerduty_webhook_secret=f"{DEFAULT_WEBHOOK_SECRET},{NEW_SECRET}",
        pagerduty_ca_bundle=str(pd.ca_path),
        **overrides,
    )


async def _triggered(
    bot: BotServer, pd: PagerDutySandbox, slack: SlackSandbox, title: str
) -> tuple[str, SandboxIncident, Channel]:
    """A PagerDuty incident triggered, its webhook delivered and the incident channel up."""
    url = bot_url(bot) + "/webhooks/pagerduty"
    pd_incident = pd.create_incident(title)
    await pd.send_webhook(url, "incident.triggered", pd_incident.id)
    return url, pd_incident, await incident_channel(slack)


async def _wait_rows(dsn: str, sql: str, timeout: float = 5.0) -> list[asyncpg.Record]:
    """The rows of ``sql`` once there are any (the bot applies deliveries asynchronously)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(timeout):
            while True:
                rows: list[asyncpg.Record] = await conn.fetch(sql)
                if rows:
                    return rows
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def _rows(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql)
        return rows
    finally:
        await conn.close()


async def test_pagerduty_incident_opens_channel_and_invites_oncall(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, pd: PagerDutySandbox
) -> None:
    async with running_bot(_settings(slack, pd, database_dsn, redis_url)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        pd.webhook_url = url
        pd_incident = pd.create_incident("Checkout API 5xx", service="PS00001", urgency="high")
        assert await pd.send_webhook(url, "incident.triggered", pd_incident.id) == 202
        channel = await slack.wait_for(lambda s: s.find_channel("inc-"))
        assert "checkout-api-5xx" in channel.name
        # The on-call of the escalation policy, found by email, is invited.
        await slack.wait_for(lambda s: "U0ALICE" in s.channels[channel.id].members)
        await slack.wait_for(
            lambda s: any("On-call from PagerDuty invited" in m.text for m in s.messages(channel.id))
        )
        rows = await _rows(database_dsn, "SELECT source, pagerduty_incident_id, severity FROM incidents")
        assert [(r["source"], r["pagerduty_incident_id"], r["severity"]) for r in rows] == [
            ("pagerduty", pd_incident.id, "P2")
        ]


async def test_a_pagerduty_incident_belongs_to_the_team_of_its_service(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    tmp_path: Path,
) -> None:
    """The catalog names SkillForge's PagerDuty service: its incidents are SkillForge's (its
    channel prefix, its notification channel); another service's stay with the default team."""
    directory = playbooks_with_roles(tmp_path / "playbooks")
    catalog_path = directory / "services.yaml"
    catalog = yaml.safe_load(catalog_path.read_text(encoding="utf-8"))
    catalog["teams"]["skillforge"]["pagerduty"] = {"service_id": "PS00002"}
    catalog_path.write_text(yaml.safe_dump(catalog, sort_keys=False), encoding="utf-8")
    team_room = slack.add_channel("skillforge-incident", members=["U0ALICE"])
    settings = _settings(slack, pd, database_dsn, redis_url, playbooks_dir=str(directory))
    async with running_bot(settings) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        pd.webhook_url = url
        ours = pd.create_incident("Payments queue stuck", service="PS00002")
        other = pd.create_incident("Checkout API slow", service="PS00001")
        assert await pd.send_webhook(url, "incident.triggered", ours.id) == 202
        assert await pd.send_webhook(url, "incident.triggered", other.id) == 202
        await slack.wait_for(lambda s: s.find_channel("inc-skillforge-") and s.find_channel("inc-2"))
        await slack.wait_for(
            lambda s: any("Payments queue stuck" in m.text for m in s.messages(team_room.id))
        )
        rows = await _rows(database_dsn, "SELECT pagerduty_incident_id, team FROM incidents")
        assert {r["pagerduty_incident_id"]: r["team"] for r in rows} == {
            ours.id: "skillforge",
            other.id: None,
        }
        # The default team's incident is announced in INCIDENT_CHANNEL, not in SkillForge's.
        assert not any("Checkout API slow" in m.text for m in slack.messages(team_room.id))
        # SkillForge's escalation levels drive its incident's timers; the default team has none.
        rows = await _rows(
            database_dsn,
            "SELECT i.pagerduty_incident_id, array_agg(t.kind ORDER BY t.kind) AS kinds"
            " FROM incidents i JOIN timers t ON t.incident_id = i.id GROUP BY 1",
        )
        kinds = {r["pagerduty_incident_id"]: set(r["kinds"]) for r in rows}
        assert "escalation_level" in kinds[ours.id] and "ack_reminder" not in kinds[ours.id]
        assert "ack_reminder" in kinds[other.id] and "escalation_level" not in kinds[other.id]


async def test_ack_and_status_in_slack_reach_pagerduty_without_echo(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    tmp_path: Path,
) -> None:
    playbooks = playbooks_with_roles(tmp_path / "pb")
    async with running_bot(_settings(slack, pd, database_dsn, redis_url, playbooks_dir=playbooks)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        pd.webhook_url = url  # the sandbox emits webhooks back for changes made through its API
        pd_incident = pd.create_incident("Payments latency", service="PS00002")
        await pd.send_webhook(url, "incident.triggered", pd_incident.id)
        channel = await incident_channel(slack)
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        await driver.slash_command("/incident", "ack", user_id="U0BOB", channel_id=channel.id)
        await pd.wait_for(lambda: pd.incidents[pd_incident.id].status == "acknowledged")
        # PagerDuty's own webhook for that change comes back and is absorbed.
        await pd.wait_for(
            lambda: any(w.event_type == "incident.acknowledged" and w.status == 202 for w in pd.webhooks)
        )
        await driver.slash_command(
            "/incident", "status failing over to the replica", user_id="U0BOB", channel_id=channel.id
        )
        await pd.wait_for(
            lambda: any("failing over" in n.content for n in pd.incidents[pd_incident.id].notes)
        )
        puts = pd.requests_to("PUT", f"/incidents/{pd_incident.id}")
        assert len(puts) == 1
        assert puts[0].headers.get("From") == "alice@example.com"
        # PagerDuty announces the bot's own note back (incident.annotated): not posted again.
        await pd.wait_for(
            lambda: any(w.event_type == "incident.annotated" and w.status == 202 for w in pd.webhooks)
        )
        # Positive control: a note a person adds in PagerDuty does reach the channel.
        human = SandboxNote("PN99999", "DBA here, looking at replication lag", None, datetime.now(UTC))
        pd.incidents[pd_incident.id].notes.append(human)
        assert await pd.send_webhook(url, "incident.annotated", pd_incident.id) == 202
        await slack.wait_for(lambda s: any("replication lag" in m.text for m in s.messages(channel.id)))
        echoes = [
            m for m in slack.messages(channel.id) if "PagerDuty note" in m.text and "failing over" in m.text
        ]
        assert echoes == []
        events = await _rows(database_dsn, "SELECT kind FROM timeline_events ORDER BY id")
        assert [e["kind"] for e in events].count("acknowledged") == 1
        assert [e["kind"] for e in events].count("pagerduty_note") == 1


async def test_resolve_in_pagerduty_resolves_in_slack_and_is_not_sent_back(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, pd: PagerDutySandbox
) -> None:
    async with running_bot(_settings(slack, pd, database_dsn, redis_url)) as bot:
        url, pd_incident, channel = await _triggered(bot, pd, slack, "Disk full on db-1")
        await pd.send_webhook(url, "incident.acknowledged", pd_incident.id, agent="bob@example.com")
        await pd.send_webhook(url, "incident.resolved", pd_incident.id, agent="bob@example.com")
        await slack.wait_for(
            lambda s: any(
                "Resolved" in json.dumps(m.blocks, ensure_ascii=False)
                for m in s.messages(notification_channel(s).id)
                if m.blocks
            )
        )
        rows = await _rows(
            database_dsn, "SELECT status, acknowledged_by, acknowledged_by_external FROM incidents"
        )
        # acknowledged_by holds Slack user ids only; the PagerDuty user is kept apart.
        assert rows[0]["status"] == "resolved" and rows[0]["acknowledged_by"] is None
        assert rows[0]["acknowledged_by_external"] == "Bob (PagerDuty)"
        assert pd.requests_to("PUT", f"/incidents/{pd_incident.id}") == []
        assert channel.id


async def test_a_late_older_pagerduty_change_is_not_applied_over_a_newer_one(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, pd: PagerDutySandbox
) -> None:
    async with running_bot(_settings(slack, pd, database_dsn, redis_url)) as bot:
        url, pd_incident, _ = await _triggered(bot, pd, slack, "Cache evictions")
        before_resolve = datetime.now(UTC) - timedelta(seconds=1)
        await pd.send_webhook(url, "incident.resolved", pd_incident.id, agent="bob@example.com")
        # PagerDuty recorded an unacknowledge before the resolve but delivers it only now.
        assert (
            await pd.send_webhook(url, "incident.unacknowledged", pd_incident.id, occurred_at=before_resolve)
            == 202
        )
        stale = await _wait_rows(
            database_dsn, "SELECT text FROM timeline_events WHERE kind = 'pagerduty_stale'"
        )
        assert "incident.unacknowledged" in stale[0]["text"]
        rows = await _rows(database_dsn, "SELECT status FROM incidents")
        assert rows[0]["status"] == "resolved"


async def test_signatures_rotation_and_replays(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, pd: PagerDutySandbox
) -> None:
    async with running_bot(_settings(slack, pd, database_dsn, redis_url)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        pd_incident = pd.create_incident("Queue backlog")
        assert (
            await pd.send_webhook(url, "incident.triggered", pd_incident.id, secrets=["wrong-secret"]) == 401
        )
        assert await pd.send_webhook(url, "incident.triggered", pd_incident.id, secrets=[]) == 401
        # During rotation PagerDuty signs with the new secret (and the old): either is accepted.
        assert await pd.send_webhook(url, "incident.triggered", pd_incident.id, secrets=[NEW_SECRET]) == 202
        sent = pd.webhooks[-1]
        assert await pd.resend(sent) == 202  # a retry of the same X-Webhook-Id
        await slack.wait_for(lambda s: s.find_channel("inc-"))
        rows = await _rows(database_dsn, "SELECT count(*) AS n FROM webhook_inbox WHERE source = 'pagerduty'")
        assert rows[0]["n"] == 1
        async with http.post(url, data=b"{}", headers={"X-PagerDuty-Signature": "v1=" + "0" * 64}) as resp:
            assert resp.status == 401
