"""PagerDuty beside Alertmanager (issue #12, point 4): one problem reported by both is one
incident and one channel, whichever arrives first, and changes flow both ways without echo.

Signed PagerDuty webhooks and bearer-authenticated Alertmanager posts into a real bot, real
PostgreSQL and Redis, the TLS sandbox PagerDuty and the sandbox Slack; the last test puts the
real Alertmanager in front, sending one group to the bot and to PagerDuty's Events API v2."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

from bot.app import BotServer
from bot.config.settings import Settings
from sandbox.pagerduty import DEFAULT_API_TOKEN, DEFAULT_WEBHOOK_SECRET, PagerDutySandbox
from sandbox.services import AlertmanagerServer
from sandbox.slack import Channel, SlackDriver, SlackSandbox
from tests.integration.rig import (
    AM_TOKEN,
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    group_payload,
    incident_channel,
    playbooks_with_roles,
    post_alert,
    running_bot,
)

WAIT = 15.0


@pytest.fixture
async def pd() -> AsyncIterator[PagerDutySandbox]:
    async with PagerDutySandbox(webhook_secrets=(DEFAULT_WEBHOOK_SECRET,)) as sandbox:
        yield sandbox


def _settings(
    slack: SlackSandbox, pd: PagerDutySandbox, dsn: str, redis_url: str, playbooks: Path
) -> Settings:
    return bot_settings(
        slack,
        dsn,
        redis_url,
        pagerduty_api_token=DEFAULT_API_TOKEN,
        pagerduty_api_url=pd.base_url,
        pagerduty_from_email="carol@example.com",
        pagerduty_webhook_secret=DEFAULT_WEBHOOK_SECRET,
        pagerduty_ca_bundle=str(pd.ca_path),
        playbooks_dir=playbooks,
    )


@pytest.fixture
def playbooks(tmp_path: Path) -> Path:
    return playbooks_with_roles(tmp_path / "pb")


def group_key(namespace: str, alertname: str = "HighErrorRate") -> str:
    return f'{{}}:{{alertname="{alertname}", namespace="{namespace}"}}'


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def rows(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        found: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return found
    finally:
        await conn.close()


async def settled(dsn: str, timeout: float = WAIT) -> None:
    """Every stored delivery applied and every incident's Slack messages drawn: after this,
    nothing more happens unless something new arrives."""
    sql = (
        "SELECT (SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL)"
        " + (SELECT count(*) FROM incidents WHERE version > published_version) AS pending"
    )
    async with asyncio.timeout(timeout):
        while (await rows(dsn, sql))[0]["pending"]:
            await asyncio.sleep(0.05)


async def pd_linked(dsn: str, pd_id: str, timeout: float = WAIT) -> asyncpg.Record:
    async with asyncio.timeout(timeout):
        while True:
            found = await rows(dsn, "SELECT * FROM incidents WHERE pagerduty_incident_id = $1", pd_id)
            if found:
                return found[0]
            await asyncio.sleep(0.05)


def incident_channels(slack: SlackSandbox) -> list[Channel]:
    return [c for c in slack.channels.values() if c.name.startswith("inc-")]


def said(slack: SlackSandbox, channel: Channel, needle: str) -> list[str]:
    return [m.text for m in slack.messages(channel.id) if needle in m.text]


@pytest.mark.parametrize(
    ("scheme", "incident_key"),
    [
        ("sha256 of the group key", sha256(group_key("checkout"))),
        ("raw group key", group_key("checkout")),
        ("pagerduty_dedup_key annotation", "checkout-errors"),
    ],
)
async def test_a_pagerduty_incident_keyed_by_the_alert_group_joins_its_incident(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    playbooks: Path,
    scheme: str,
    incident_key: str,
) -> None:
    async with running_bot(_settings(slack, pd, database_dsn, redis_url, playbooks)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        body = group_payload("checkout", [("f1", "firing")])
        body["alerts"][0]["annotations"]["pagerduty_dedup_key"] = "checkout-errors"
        assert (await post_alert(http, bot, body))[0] == 200
        channel = await incident_channel(slack)
        pd_incident = pd.create_incident("HighErrorRate checkout", incident_key=incident_key)
        assert await pd.send_webhook(url, "incident.triggered", pd_incident.id) == 202
        linked = await pd_linked(database_dsn, pd_incident.id)
        await settled(database_dsn)
        assert linked["source"] == "alertmanager", scheme
        assert [c.id for c in incident_channels(slack)] == [channel.id]
        await slack.wait_for(lambda s: said(s, channel, "Linked to PagerDuty incident"))

        # Positive control: a PagerDuty incident under another key opens its own incident.
        other = pd.create_incident("Payments queue stuck", incident_key="unrelated-key")
        assert await pd.send_webhook(url, "incident.triggered", other.id) == 202
        assert (await pd_linked(database_dsn, other.id))["source"] == "pagerduty"
        await settled(database_dsn)
        assert len(incident_channels(slack)) == 2
        count = await rows(database_dsn, "SELECT count(*) AS n FROM incidents")
        assert count[0]["n"] == 2


async def test_the_alert_group_arriving_after_pagerduty_joins_the_pagerduty_incident(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    playbooks: Path,
) -> None:
    async with running_bot(_settings(slack, pd, database_dsn, redis_url, playbooks)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        pd_incident = pd.create_incident("HighErrorRate in api", incident_key=sha256(group_key("api")))
        assert await pd.send_webhook(url, "incident.triggered", pd_incident.id) == 202
        channel = await incident_channel(slack)
        assert (await post_alert(http, bot, group_payload("api", [("a1", "firing")])))[0] == 200
        await slack.wait_for(lambda s: said(s, channel, "joined this incident"))
        # A later snapshot of the group (another alert, then one resolving) lands there too.
        later = group_payload("api", [("a1", "resolved"), ("a2", "firing")])
        assert (await post_alert(http, bot, later))[0] == 200
        await settled(database_dsn)
        incidents = await rows(database_dsn, "SELECT id, source FROM incidents")
        assert [r["source"] for r in incidents] == ["pagerduty"]
        alerts = await rows(database_dsn, "SELECT fingerprint, incident_id FROM alerts ORDER BY fingerprint")
        assert [(a["fingerprint"], a["incident_id"]) for a in alerts] == [
            ("a1", incidents[0]["id"]),
            ("a2", incidents[0]["id"]),
        ]
        assert [c.id for c in incident_channels(slack)] == [channel.id]
        kinds = [r["kind"] for r in await rows(database_dsn, "SELECT kind FROM timeline_events")]
        assert kinds.count("alertmanager_joined") == 1
        assert "alerts_refiring" not in kinds
        assert said(slack, channel, "firing again") == []


async def test_concurrent_deliveries_of_both_sources_make_one_incident_per_group(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    playbooks: Path,
) -> None:
    groups = [f"team-{n}" for n in range(6)]
    async with running_bot(_settings(slack, pd, database_dsn, redis_url, playbooks)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        pd_incidents = [
            pd.create_incident(f"errors in {g}", incident_key=sha256(group_key(g))) for g in groups
        ]
        statuses = await asyncio.gather(
            *(post_alert(http, bot, group_payload(g, [(f"fp-{g}", "firing")])) for g in groups),
            *(pd.send_webhook(url, "incident.triggered", i.id) for i in pd_incidents),
        )
        assert [s if isinstance(s, int) else s[0] for s in statuses] == [200] * 6 + [202] * 6
        for pd_incident in pd_incidents:
            await pd_linked(database_dsn, pd_incident.id)
        await settled(database_dsn)
        found = await rows(
            database_dsn,
            "SELECT i.id, i.pagerduty_incident_id, count(a.id) AS alerts FROM incidents i"
            " LEFT JOIN alerts a ON a.incident_id = i.id GROUP BY i.id",
        )
        assert len(found) == len(groups)
        assert sorted(r["pagerduty_incident_id"] for r in found) == sorted(i.id for i in pd_incidents)
        assert all(r["alerts"] == 1 for r in found)
        await slack.wait_for(lambda s: len(incident_channels(s)) == len(groups))


async def test_severity_changes_and_reopen_reach_pagerduty_without_echo(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    playbooks: Path,
) -> None:
    async with running_bot(_settings(slack, pd, database_dsn, redis_url, playbooks)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        pd.webhook_url = url  # changes made through the API come back as webhooks, as in PagerDuty
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        status, _ = await post_alert(
            http, bot, group_payload("search", [("s1", "firing")], severity="warning")
        )
        assert status == 200
        channel = await incident_channel(slack)
        pd_incident = pd.create_incident("search errors", incident_key=sha256(group_key("search")))
        await pd.send_webhook(url, "incident.triggered", pd_incident.id)
        await pd_linked(database_dsn, pd_incident.id)
        p1, p3 = pd.priority_named("P1"), pd.priority_named("P3")

        await driver.slash_command("/incident", "sev P1", user_id="U0ALICE", channel_id=channel.id)
        await pd.wait_for(lambda: pd.incidents[pd_incident.id].priority_id == p1.id)
        assert pd.incidents[pd_incident.id].urgency == "high"
        await driver.slash_command("/incident", "sev P3", user_id="U0ALICE", channel_id=channel.id)
        await pd.wait_for(lambda: pd.incidents[pd_incident.id].priority_id == p3.id)
        assert pd.incidents[pd_incident.id].urgency == "low"
        # Both priority_updated webhooks came back and were absorbed: the late echo of P1 did
        # not turn the incident back into a P1.
        await pd.wait_for(
            lambda: (
                [w.status for w in pd.webhooks if w.event_type == "incident.priority_updated"] == [202, 202]
            )
        )
        await settled(database_dsn)
        severity = await rows(
            database_dsn, "SELECT severity FROM incidents WHERE pagerduty_incident_id = $1", pd_incident.id
        )
        assert severity[0]["severity"] == "P3"

        # Positive control: a priority a person sets in PagerDuty does change the severity.
        pd.incidents[pd_incident.id].priority_id = pd.priority_named("P2").id
        assert (
            await pd.send_webhook(url, "incident.priority_updated", pd_incident.id, agent="bob@example.com")
            == 202
        )
        await slack.wait_for(lambda s: said(s, channel, "set severity to P2"))

        resolved, _ = await post_alert(
            http, bot, group_payload("search", [("s1", "resolved")], severity="warning")
        )
        assert resolved == 200
        await slack.wait_for(lambda s: said(s, channel, "have resolved"))
        await driver.slash_command("/incident", "resolve fixed", user_id="U0ALICE", channel_id=channel.id)
        await pd.wait_for(lambda: pd.incidents[pd_incident.id].status == "resolved")
        await driver.slash_command("/incident", "reopen", user_id="U0ALICE", channel_id=channel.id)
        await pd.wait_for(lambda: pd.incidents[pd_incident.id].status == "triggered")
        await pd.wait_for(
            lambda: any(w.event_type == "incident.reopened" and w.status == 202 for w in pd.webhooks)
        )
        await settled(database_dsn)
        kinds = [r["kind"] for r in await rows(database_dsn, "SELECT kind FROM timeline_events")]
        timeline = await rows(database_dsn, "SELECT kind, text FROM timeline_events ORDER BY id")
        assert kinds.count("reopened") == 1, "\n".join(f"{r['kind']}: {r['text']}" for r in timeline)
        assert kinds.count("severity_changed") == 3
        assert "pagerduty_failed" not in kinds
        puts = [r.json()["incident"] for r in pd.requests_to("PUT", f"/incidents/{pd_incident.id}")]
        assert [p.get("status") or p["priority"]["id"] for p in puts] == [
            p1.id,
            p3.id,
            "resolved",
            "triggered",
        ]


async def test_a_priority_the_account_lacks_is_refused_with_a_message_and_changes_nothing(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    playbooks: Path,
) -> None:
    policy = yaml.safe_load((playbooks / "policy.yaml").read_text())
    policy["severity_policy"]["P1"]["pagerduty_priority"] = "SEV-1"
    (playbooks / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    async with running_bot(_settings(slack, pd, database_dsn, redis_url, playbooks)) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        pd_incident = pd.create_incident("cart errors")
        await pd.send_webhook(url, "incident.triggered", pd_incident.id)
        channel = await incident_channel(slack)
        await driver.slash_command("/incident", "sev P1", user_id="U0ALICE", channel_id=channel.id)
        await slack.wait_for(lambda s: said(s, channel, "no priority named"))
        assert pd.requests_to("PUT", f"/incidents/{pd_incident.id}") == []
        assert pd.incidents[pd_incident.id].priority_id is None
        # Positive control: a severity whose priority exists is sent.
        await driver.slash_command("/incident", "sev P2", user_id="U0ALICE", channel_id=channel.id)
        await pd.wait_for(lambda: pd.incidents[pd_incident.id].priority_id == pd.priority_named("P2").id)


async def test_alertmanager_sending_one_group_to_pagerduty_and_the_bot_makes_one_incident(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    playbooks: Path,
    tmp_path: Path,
) -> None:
    """The issue's test: the real Alertmanager, one route to two receivers (the bot's webhook and
    ``pagerduty_configs`` pointed at the sandbox's Events API v2, whose incident reaches the bot
    as a signed V3 webhook); ack in Slack acknowledges in PagerDuty and the other way round."""
    async with running_bot(_settings(slack, pd, database_dsn, redis_url, playbooks)) as bot:
        pd.webhook_url = bot_url(bot) + "/webhooks/pagerduty"
        receiver = {
            "name": "pagerduty",
            "pagerduty_configs": [
                {
                    "routing_key": pd.services["PS00001"].integration_key,
                    "url": pd.base_url + "/v2/enqueue",
                    "send_resolved": True,
                    "http_config": {"tls_config": {"ca_file": pd.ca_path}},
                }
            ],
        }
        am = await asyncio.to_thread(
            AlertmanagerServer.start,
            tmp_path / "am",
            bot_url(bot) + "/webhooks/alertmanager",
            AM_TOKEN,
            extra_receivers=[receiver],
        )
        try:
            await _two_groups_through_alertmanager(slack, http, database_dsn, pd, bot, am)
        finally:
            await asyncio.to_thread(am.stop)


async def _two_groups_through_alertmanager(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    dsn: str,
    pd: PagerDutySandbox,
    bot: BotServer,
    am: AlertmanagerServer,
) -> None:
    def alert(namespace: str) -> dict[str, Any]:
        labels = {"alertname": "HighErrorRate", "namespace": namespace, "severity": "critical"}
        return {"labels": labels, "annotations": {"summary": f"errors in {namespace}"}}

    await asyncio.to_thread(am.post_alerts, [alert("checkout"), alert("payments")])
    await pd.wait_for(lambda: len(pd.incidents) == 2, timeout=WAIT)
    by_key = {i.incident_key: i for i in pd.incidents.values()}
    # Alertmanager keyed each PagerDuty incident by the SHA-256 of the group key it sent us.
    stored = await _wait_alert_group_keys(dsn, 2)
    assert sorted(by_key) == sorted(sha256(k) for k in stored)
    checkout = by_key[sha256(next(k for k in stored if "checkout" in k))]
    payments = by_key[sha256(next(k for k in stored if "payments" in k))]
    for pd_incident in (checkout, payments):
        await pd_linked(dsn, pd_incident.id)
    await settled(dsn)
    assert (await rows(dsn, "SELECT count(*) AS n FROM incidents"))[0]["n"] == 2
    await slack.wait_for(lambda s: len(incident_channels(s)) == 2)

    # Ack in Slack → the PagerDuty incident is acknowledged (as PAGERDUTY_FROM_EMAIL).
    driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
    checkout_channel = _channel_of(slack, (await pd_linked(dsn, checkout.id))["channel_id"])
    await driver.slash_command("/incident", "ack", user_id="U0ALICE", channel_id=checkout_channel.id)
    await pd.wait_for(lambda: pd.incidents[checkout.id].status == "acknowledged")
    await pd.wait_for(
        lambda: any(
            w.event_type == "incident.acknowledged" and w.incident_id == checkout.id and w.status == 202
            for w in pd.webhooks
        )
    )

    # Ack in PagerDuty → the incident is acknowledged and the channel is told.
    payments_channel = _channel_of(slack, (await pd_linked(dsn, payments.id))["channel_id"])
    assert (
        await pd.send_webhook(
            pd.webhook_url or "", "incident.acknowledged", payments.id, agent="bob@example.com"
        )
        == 202
    )
    await slack.wait_for(lambda s: said(s, payments_channel, "Acknowledged by Bob (PagerDuty)"))
    await settled(dsn)
    states = await rows(dsn, "SELECT pagerduty_incident_id, status FROM incidents ORDER BY id")
    assert {r["pagerduty_incident_id"]: r["status"] for r in states} == {
        checkout.id: "acknowledged",
        payments.id: "acknowledged",
    }
    # No echo: the bot's own acknowledgement came back from PagerDuty and was not said again,
    # and PagerDuty's acknowledgement was not sent back to it.
    assert said(slack, checkout_channel, "(PagerDuty)") == []
    assert said(slack, checkout_channel, "Acknowledged by") == []
    assert pd.requests_to("PUT", f"/incidents/{payments.id}") == []
    assert len(pd.requests_to("PUT", f"/incidents/{checkout.id}")) == 1
    kinds = [r["kind"] for r in await rows(dsn, "SELECT kind FROM timeline_events")]
    assert kinds.count("acknowledged") == 2


async def _wait_alert_group_keys(dsn: str, count: int) -> list[str]:
    sql = "SELECT DISTINCT body ->> 'groupKey' AS key FROM webhook_inbox WHERE source = 'alertmanager'"
    async with asyncio.timeout(WAIT):
        while True:
            keys = [r["key"] for r in await rows(dsn, sql)]
            if len(keys) >= count:
                return keys
            await asyncio.sleep(0.05)


def _channel_of(slack: SlackSandbox, channel_id: str | None) -> Channel:
    assert channel_id is not None
    return slack.channels[channel_id]
