"""Authorization everywhere, silences within limits, buttons that cannot be forged, cards that
cannot be faked: every case through signed Slack requests against the running bot, with real
Postgres, Redis and (for silences) a real Alertmanager.

Each refusal is checked for what it says (the roles that may) and for what it did not do: no
Slack write besides the ephemeral answer, no change in Postgres, no silence in Alertmanager, no
PagerDuty write, no query reaching Prometheus, no request reaching Kubernetes. Each has a
positive control: the same thing done by someone who may.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import pytest

from bot.app import BotServer
from sandbox.kubernetes import KubeSandbox
from sandbox.pagerduty import DEFAULT_API_TOKEN, DEFAULT_WEBHOOK_SECRET, PagerDutySandbox
from sandbox.services import AlertmanagerServer, PrometheusServer
from sandbox.slack import Channel, ResponsePost, SlackDriver, SlackSandbox
from tests.integration.rig import (
    AM_TOKEN,
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    group_payload,
    incident_channel,
    notification_channel,
    playbooks_with_roles,
    post_alert,
    running_bot,
)

# Web API methods that change what Slack shows.
SLACK_WRITES = frozenset(
    {
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "chat.delete",
        "conversations.create",
        "conversations.invite",
        "conversations.setTopic",
        "conversations.archive",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
        "reactions.add",
    }
)
# Sandbox users without any role (TEST_ROLES gives alice, bob and carol roles).
MALLORY = "U0MALLORY"
NED = "U0NED"


@pytest.fixture(scope="module")
async def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AlertmanagerServer]:
    server = await asyncio.to_thread(
        AlertmanagerServer.start,
        tmp_path_factory.mktemp("alertmanager"),
        "http://127.0.0.1:9/unused",
        AM_TOKEN,
    )
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def am(alertmanager: AlertmanagerServer) -> AlertmanagerServer:
    """The module's Alertmanager with no active silence left by an earlier test."""
    async with aiohttp.ClientSession() as http:
        for silence in await _silences(http, alertmanager.url):
            if silence["status"]["state"] != "expired":
                async with http.delete(f"{alertmanager.url}/api/v2/silence/{silence['id']}") as resp:
                    assert resp.status == 200
    return alertmanager


@pytest.fixture
def users(slack: SlackSandbox) -> None:
    slack.add_user(MALLORY, "mallory", "Mallory Moe")
    slack.add_user(NED, "ned", "Ned Newcomer")


# --------------------------------------------------------------------------- helpers


async def _silences(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with http.get(url + "/api/v2/silences") as resp:
        found: list[dict[str, Any]] = await resp.json()
        return found


async def _active_silences(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    return [s for s in await _silences(http, url) if s["status"]["state"] == "active"]


async def _rows(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


@dataclass(frozen=True)
class State:
    """Everything a refused command or click must leave as it was."""

    slack_writes: int
    incidents: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    timers: list[tuple[Any, ...]]
    silences: int
    tokens: list[tuple[Any, ...]]


async def _settled(bot: BotServer, dsn: str) -> None:
    """Wait until the bot has published everything and no background task runs, so what
    follows can only have been caused by the next request."""
    async with asyncio.timeout(20):
        while True:
            pending = await _rows(
                dsn,
                "SELECT (SELECT count(*) FROM incidents WHERE version > published_version)"
                " + (SELECT count(*) FROM timeline_events WHERE announce AND announced_ts IS NULL) AS n",
            )
            if pending[0]["n"] == 0 and bot.parts.supervisor.running == 0:
                return
            await asyncio.sleep(0.05)


async def _state(bot: BotServer, slack: SlackSandbox, dsn: str) -> State:
    await _settled(bot, dsn)
    return State(
        slack_writes=sum(c.method in SLACK_WRITES for c in slack.calls),
        incidents=[
            tuple(r)
            for r in await _rows(
                dsn,
                "SELECT id, status, severity, commander, acknowledged_by, resolved_by, last_status_update,"
                " version FROM incidents ORDER BY id",
            )
        ],
        events=[tuple(r) for r in await _rows(dsn, "SELECT id, kind, text FROM timeline_events ORDER BY id")],
        timers=[tuple(r) for r in await _rows(dsn, "SELECT id, kind, done_at FROM timers ORDER BY id")],
        silences=len(await _rows(dsn, "SELECT id FROM silences")),
        tokens=[
            tuple(r) for r in await _rows(dsn, "SELECT token, used_at FROM button_tokens ORDER BY token")
        ],
    )


def _reply_after(seen: int, needle: str) -> Any:
    def find(s: SlackSandbox) -> ResponsePost | None:
        return next((r for r in s.responses[seen:] if needle in r.text), None)

    return find


class Person:
    """A sandbox user typing /incident commands and clicking, through signed requests."""

    def __init__(self, driver: SlackDriver, slack: SlackSandbox, user: str) -> None:
        self.driver = driver
        self.slack = slack
        self.user = user

    async def types(self, text: str, channel: str, expect: str) -> ResponsePost:
        seen = len(self.slack.responses)
        resp = await self.driver.slash_command("/incident", text, user_id=self.user, channel_id=channel)
        assert resp.status == 200
        return await self.slack.wait_for(_reply_after(seen, expect))

    async def sends(self, body: dict[str, Any], expect: str) -> ResponsePost:
        seen = len(self.slack.responses)
        resp = await self.driver.post(
            urlencode({"payload": json.dumps(body)}).encode(), "application/x-www-form-urlencoded"
        )
        assert resp.status == 200
        return await self.slack.wait_for(_reply_after(seen, expect))

    async def clicks(self, action_id: str, expect: str, **where: Any) -> ResponsePost:
        seen = len(self.slack.responses)
        resp = await self.driver.click(action_id, user_id=self.user, **where)
        assert resp.status == 200
        return await self.slack.wait_for(_reply_after(seen, expect))

    def click_body(self, action_id: str, value: str, channel: str, message_ts: str) -> dict[str, Any]:
        """A block_actions payload as a modified client could make Slack send it."""
        sb = self.slack
        return {
            "type": "block_actions",
            "user": {"id": self.user, "username": self.user.lower(), "team_id": sb.team_id},
            "api_app_id": sb.app_id,
            "token": "sandbox-verification-token",
            "team": {"id": sb.team_id, "domain": sb.team_domain},
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": True,
            },
            "channel": {"id": channel, "name": "x"},
            "response_url": sb.new_response_url(
                "block_actions", user_id=self.user, channel_id=channel, is_ephemeral=True
            ),
            "trigger_id": sb.issue_trigger_id(self.user),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "type": "button",
                    "action_ts": str(time.time()),
                }
            ],
        }


def _refused(reply: ResponsePost, *needles: str) -> None:
    assert reply.response_type == "ephemeral", reply.body
    for needle in needles:
        assert needle in reply.text, (needle, reply.text)


def _people(slack: SlackSandbox, bot: BotServer, http: aiohttp.ClientSession) -> dict[str, Person]:
    driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
    return {
        name: Person(driver, slack, user)
        for name, user in (
            ("alice", "U0ALICE"),
            ("bob", "U0BOB"),
            ("carol", "U0CAROL"),
            ("mallory", MALLORY),
            ("ned", NED),
        )
    }


async def _alert_incident(slack: SlackSandbox, http: aiohttp.ClientSession, bot: BotServer) -> Channel:
    """A critical (P1) alert's incident, its channel, card and notification up."""
    await post_alert(http, bot, group_payload("shop", [("s1", "firing"), ("s2", "firing")]))
    channel = await incident_channel(slack)
    await slack.wait_for(lambda s: s.messages(notification_channel(s).id))
    return channel


# --------------------------------------------------------------------------- silences


async def test_silence_everything_from_general_without_a_role_is_refused(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    am: AlertmanagerServer,
    users: None,
    tmp_path: Path,
) -> None:
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        alertmanager_url=am.url,
        playbooks_dir=playbooks_with_roles(tmp_path / "pb"),
    )
    async with running_bot(settings) as bot:
        people = _people(slack, bot, http)
        channel = await _alert_incident(slack, http, bot)
        before = await _state(bot, slack, database_dsn)

        # The reproduction: anybody, from #general, every alert, a week.
        reply = await people["mallory"].types("silence #1 7d alertname=~.+", "C0GENERAL", "may not")
        _refused(reply, "silence the alerts of incident #1", "`oncall`", "`sre`")
        assert await _active_silences(http, am.url) == []
        assert await _state(bot, slack, database_dsn) == before

        # A member of the incident's channel without a role is refused too.
        await people["alice"].types(f"assign <@{NED}|ned> scribe", channel.id, "is now scribe")
        await slack.wait_for(lambda s: NED in s.channels[channel.id].members)
        before = await _state(bot, slack, database_dsn)
        reply = await people["ned"].types("silence 1h", channel.id, "may not")
        _refused(reply, "`oncall`, `sre`")
        assert await _active_silences(http, am.url) == []
        assert await _state(bot, slack, database_dsn) == before

        # On-call (through the @sre-oncall user group) may not widen a silence, nor silence a
        # P1 longer than the policy allows.
        for text, needle in (
            ("silence #1 2h alertname=~.+", "matches (nearly) everything"),
            ("silence #1 2h team!=db", "is negative"),
            ('silence #1 2h pod=""', "without the label"),
            ("silence #1 5h", "at most 4h"),
        ):
            reply = await people["bob"].types(text, "C0GENERAL", needle)
            assert reply.response_type == "ephemeral"
            if "at most" not in needle:
                assert "`sre`" in reply.text, reply.text  # who may: lifecycle.silence_elevated
        assert await _active_silences(http, am.url) == []
        assert await _state(bot, slack, database_dsn) == before

        # Positive control: on-call silences the incident's own alerts; the silence carries
        # the incident's labels as equality matchers and is announced in both channels.
        reply = await people["bob"].types("silence #1 2h pod=~pod-s.*", "C0GENERAL", "silenced")
        assert reply.response_type == "ephemeral"
        active = await _active_silences(http, am.url)
        assert len(active) == 1 and active[0]["createdBy"] == "slack:U0BOB"
        matchers = {(m["name"], m["value"], m["isEqual"], m["isRegex"]) for m in active[0]["matchers"]}
        assert ("alertname", "HighErrorRate", True, False) in matchers
        assert ("namespace", "shop", True, False) in matchers
        assert ("pod", "pod-s.*", True, True) in matchers
        await slack.wait_for(lambda s: any("silenced" in m.text for m in s.messages(channel.id)))
        await slack.wait_for(
            lambda s: any(
                "silenced" in m.text and "#1" in m.text for m in s.messages(notification_channel(s).id)
            )
        )

        # An SRE (silence_elevated) may use a negative matcher; the incident's labels stay.
        await people["alice"].types("silence 1h team!=db", channel.id, "silenced")
        active = await _active_silences(http, am.url)
        assert len(active) == 2
        newest = max(active, key=lambda s: s["startsAt"])
        names = {(m["name"], m["isEqual"]) for m in newest["matchers"]}
        assert {("alertname", True), ("namespace", True), ("team", False)} <= names

        # Resolving expires them; a resolved incident cannot be silenced.
        await people["alice"].types("resolve", channel.id, "still firing")
        await people["alice"].clicks("confirm_resolve", "resolved by", channel_id=channel.id)
        async with asyncio.timeout(10):
            while await _active_silences(http, am.url):
                await asyncio.sleep(0.1)
        before = await _state(bot, slack, database_dsn)
        reply = await people["alice"].types("silence 1h", channel.id, "is resolved")
        assert reply.response_type == "ephemeral"
        assert await _active_silences(http, am.url) == []
        assert await _state(bot, slack, database_dsn) == before


# --------------------------------------------------------------------------- lifecycle commands


async def test_lifecycle_commands_need_the_policys_roles(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    users: None,
    tmp_path: Path,
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        people = _people(slack, bot, http)
        channel = await _alert_incident(slack, http, bot)
        before = await _state(bot, slack, database_dsn)
        reminder = [t for t in before.timers if t[1] == "ack_reminder"]
        assert reminder and reminder[0][2] is None  # a P1: reminder (then escalation) pending

        # Anybody, from any channel, naming the incident: every change refused, nothing changed.
        for text, needle in (
            ("ack #1", "may not acknowledge incident #1"),
            ("sev #1 P4", "may not lower the severity of incident #1"),
            ("sev #1 P1", "may not change the severity"),
            (f"assign #1 <@{MALLORY}|mallory>", "may not give roles on incident #1"),
            ("resolve #1", "may not resolve incident #1"),
            ("status #1 all good", "may not post status updates"),
            ("timeline #1", "may not post runbooks, read the timeline"),
            ("postmortem #1", "may not"),
            ("graph up 1h", "may not graph ad hoc queries"),
            ("run scale shop/web replicas=3", "may not propose remediations ad hoc"),
        ):
            for where in ("C0GENERAL", channel.id):
                reply = await people["mallory"].types(
                    text.replace(" #1", "") if where == channel.id else text, where, needle
                )
                _refused(reply, "the policy lets")
        assert await _state(bot, slack, database_dsn) == before

        # A member of the channel without a role may acknowledge and post status, not lower a P1.
        await people["alice"].types(f"assign <@{NED}|ned> scribe", channel.id, "is now scribe")
        await slack.wait_for(lambda s: NED in s.channels[channel.id].members)
        before = await _state(bot, slack, database_dsn)
        reply = await people["ned"].types("sev P4", channel.id, "may not lower the severity")
        _refused(reply, "the incident's commander", "`oncall`", "`sre`")
        reply = await people["ned"].types(f"assign <@{NED}|ned>", channel.id, "may not give roles")
        _refused(reply, "the incident's commander")
        assert await _state(bot, slack, database_dsn) == before
        await people["ned"].types("status looking at the shop pods", channel.id, "Status update")
        await people["ned"].types("ack", channel.id, "acknowledged by")

        # Positive control: on-call (through @sre-oncall) lowers the P1; its escalation goes.
        await people["bob"].types("sev P4", channel.id, "is now P4")
        rows = await _rows(database_dsn, "SELECT severity FROM incidents")
        assert rows[0]["severity"] == "P4"
        await slack.wait_for(lambda s: s.channels[channel.id].topic.startswith("[P4]"))


async def test_resolving_a_pagerduty_incident_needs_a_responder_role(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    users: None,
    tmp_path: Path,
) -> None:
    async with PagerDutySandbox(webhook_secrets=(DEFAULT_WEBHOOK_SECRET,)) as pd:
        settings = bot_settings(
            slack,
            database_dsn,
            redis_url,
            playbooks_dir=playbooks_with_roles(tmp_path / "pb"),
            pagerduty_api_token=DEFAULT_API_TOKEN,
            pagerduty_api_url=pd.base_url,
            pagerduty_from_email="alice@example.com",
            pagerduty_webhook_secret=DEFAULT_WEBHOOK_SECRET,
            pagerduty_ca_bundle=str(pd.ca_path),
        )
        async with running_bot(settings) as bot:
            people = _people(slack, bot, http)
            pd_incident = pd.create_incident("Payments down")
            await pd.send_webhook(bot_url(bot) + "/webhooks/pagerduty", "incident.triggered", pd_incident.id)
            channel = await incident_channel(slack)
            await people["alice"].types(f"assign <@{NED}|ned> scribe", channel.id, "is now scribe")
            await slack.wait_for(lambda s: NED in s.channels[channel.id].members)
            before = await _state(bot, slack, database_dsn)
            writes = [r for r in pd.requests if r.method in ("POST", "PUT", "DELETE")]

            # A member of the channel may resolve an incident of their own, not one PagerDuty pages for.
            reply = await people["ned"].types("resolve fixed it", channel.id, "may not resolve incident #1")
            _refused(reply, "linked to PagerDuty", "`oncall`, `sre`")
            assert await _state(bot, slack, database_dsn) == before
            assert [r for r in pd.requests if r.method in ("POST", "PUT", "DELETE")] == writes
            assert pd.incidents[pd_incident.id].status == "triggered"

            # Positive control: on-call resolves it, in Slack and in PagerDuty.
            await people["bob"].types("resolve fixed it", channel.id, "resolved by")
            await pd.wait_for(lambda: pd.incidents[pd_incident.id].status == "resolved")


# --------------------------------------------------------------------------- buttons


async def test_buttons_are_bound_to_their_message_or_carry_a_stored_token(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    users: None,
    tmp_path: Path,
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        people = _people(slack, bot, http)
        channel = await _alert_incident(slack, http, bot)
        note = notification_channel(slack)
        before = await _state(bot, slack, database_dsn)

        # The ack button on the notification, clicked by someone who may not acknowledge.
        reply = await people["mallory"].clicks("ack_incident", "may not acknowledge", channel_id=note.id)
        _refused(reply, "members of the incident's channel")
        # An ack click naming the incident from a message that is not its card or notification,
        # or naming another incident from its card: not valid.
        mallory = people["mallory"]
        card = slack.messages(channel.id)[0]
        for body in (
            mallory.click_body("ack_incident", "1", "C0GENERAL", "1700000000.000100"),
            people["bob"].click_body("ack_incident", "2", channel.id, card.ts),
        ):
            await mallory.sends(body, "not valid any more")
        # The old confirm_resolve value (an incident id) is not a token.
        await people["bob"].sends(
            people["bob"].click_body("confirm_resolve", "1:", channel.id, "1.1"), "not valid"
        )
        assert await _state(bot, slack, database_dsn) == before

        # "Resolve anyway" carries an opaque stored token, good for the user it was asked of, once.
        ask = await people["alice"].types("resolve done", channel.id, "still firing")
        [token] = [
            e["value"]
            for b in ask.blocks or []
            for e in b.get("elements", [])
            if e.get("action_id") == "confirm_resolve"
        ]
        assert not token.startswith("1:") and len(token) >= 16
        before = await _state(bot, slack, database_dsn)
        await mallory.sends(mallory.click_body("confirm_resolve", token, channel.id, "1.1"), "not valid")
        assert await _state(bot, slack, database_dsn) == before
        await people["alice"].clicks("confirm_resolve", "resolved by", channel_id=channel.id)
        rows = await _rows(database_dsn, "SELECT status, resolved_by FROM incidents")
        assert (rows[0]["status"], rows[0]["resolved_by"]) == ("resolved", "U0ALICE")
        await people["alice"].sends(
            people["alice"].click_body("confirm_resolve", token, channel.id, "1.1"), "not valid"
        )


async def test_ack_button_positive_control_and_show_steps_bound_to_its_channel(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    users: None,
    tmp_path: Path,
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        people = _people(slack, bot, http)
        # HighLatency matches the SkillMeat playbook: its steps are collapsed behind a button.
        await post_alert(http, bot, group_payload("skillmeat", [("h1", "firing")], alertname="HighLatency"))
        channel = await incident_channel(slack)
        collapsed = await slack.wait_for(
            lambda s: next(
                (m for m in s.messages(channel.id) if "show_runbook_steps" in json.dumps(m.blocks)), None
            )
        )
        [value] = [
            e["value"]
            for b in collapsed.blocks or []
            for e in b.get("elements", [])
            if e.get("action_id") == "show_runbook_steps"
        ]
        before = await _state(bot, slack, database_dsn)
        reply = await people["mallory"].clicks(
            "show_runbook_steps", "may not", channel_id=channel.id, message_ts=collapsed.ts
        )
        _refused(reply, "members of the incident's channel")
        bob = people["bob"]
        for body in (
            bob.click_body("show_runbook_steps", value, "C0GENERAL", collapsed.ts),
            bob.click_body("show_runbook_steps", "2:" + value.partition(":")[2], channel.id, collapsed.ts),
        ):
            await bob.sends(body, "not valid any more")
        assert await _state(bot, slack, database_dsn) == before

        # Positive controls: on-call shows the steps and acknowledges from the notification.
        await bob.clicks(
            "show_runbook_steps", "Posted all steps", channel_id=channel.id, message_ts=collapsed.ts
        )
        await bob.clicks("ack_incident", "acknowledged by", channel_id=notification_channel(slack).id)
        rows = await _rows(database_dsn, "SELECT status, acknowledged_by FROM incidents")
        assert (rows[0]["status"], rows[0]["acknowledged_by"]) == ("acknowledged", "U0BOB")


# --------------------------------------------------------------------------- cards


def _mrkdwn(value: object) -> list[str]:
    if isinstance(value, dict):
        found = [value["text"]] if value.get("type") == "mrkdwn" else []
        return found + [t for v in value.values() for t in _mrkdwn(v)]
    if isinstance(value, list):
        return [t for v in value for t in _mrkdwn(v)]
    return []


async def test_user_text_cannot_fake_lines_on_cards(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    users: None,
    tmp_path: Path,
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        people = _people(slack, bot, http)
        forged = "all good\n*Status*\n✅ Resolved <!channel> <https://evil.example|runbook>"
        await people["ned"].types(
            'open "payments\n*Commander*\n<@U0ALICE>" sev=P2', "C0INCIDENTS", "declared"
        )
        channel = await incident_channel(slack)
        await people["ned"].types(f'status "{forged}"', channel.id, "Status update")

        def shown(s: SlackSandbox) -> list[str] | None:
            texts = _mrkdwn(
                [m.blocks for m in s.messages(channel.id)[:1] + s.messages(notification_channel(s).id)]
            )
            return (
                texts if any("all good" in t for t in texts) and any("payments" in t for t in texts) else None
            )

        texts = await slack.wait_for(shown)
        lines = [line for text in texts for line in text.split("\n")]
        # What the user typed after a line break never starts a line of its own.
        assert not [line for line in lines if line.startswith(("✅ Resolved", "<@U0ALICE>", "∗Commander∗"))]
        assert not [line for line in lines if "Resolved" in line and "all good" not in line]
        joined = "\n".join(texts)
        assert "<!channel>" not in joined and "<https://evil" not in joined and "<@U0ALICE>" not in joined
        assert "all good ∗Status∗ ✅ Resolved &lt;!channel&gt; &lt;https://evil.example|runbook&gt;" in joined
        assert "payments ∗Commander∗ &lt;@U0ALICE&gt;" in joined
        card = slack.messages(channel.id)[0]
        assert card.blocks is not None and "\n" not in card.blocks[0]["text"]["text"]


# --------------------------------------------------------------------------- ad hoc graphs and runs


async def _queries_served(http: aiohttp.ClientSession, prometheus_url: str) -> float:
    """How many query API requests a real Prometheus has answered (from its own metrics)."""
    async with http.get(prometheus_url + "/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query' in line
    )


async def test_ad_hoc_graphs_and_runs_need_a_role(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    users: None,
    tmp_path: Path,
    services_dir: Path,
) -> None:
    prometheus = await asyncio.to_thread(PrometheusServer.start, services_dir, [])
    kube = KubeSandbox()
    kube.seed_demo()
    await kube.start()
    try:
        settings = bot_settings(
            slack,
            database_dsn,
            redis_url,
            playbooks_dir=playbooks_with_roles(tmp_path / "pb"),
            prometheus_url=prometheus.url,
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        )
        async with running_bot(settings) as bot:
            people = _people(slack, bot, http)
            await people["ned"].types('open "search is slow" sev=P3', "C0INCIDENTS", "declared")
            channel = await incident_channel(slack)
            before = await _state(bot, slack, database_dsn)
            queries = await _queries_served(http, prometheus.url)
            kube_requests = len(kube.requests)

            # The declarer is a member of the channel, and still may not query or change anything.
            reply = await people["ned"].types("graph 'sum(rate(up[5m]))' 1h", channel.id, "may not graph")
            _refused(reply, "`oncall`, `sre`")
            reply = await people["ned"].types(
                "run scale api/search-api replicas=4", channel.id, "may not propose"
            )
            _refused(reply, "`oncall`, `sre`, `dba`")
            assert await _state(bot, slack, database_dsn) == before
            assert await _queries_served(http, prometheus.url) == queries
            assert len(kube.requests) == kube_requests
            assert await _rows(database_dsn, "SELECT id FROM action_runs") == []

            # Positive controls: on-call graphs (the query reaches Prometheus) and proposes.
            await people["bob"].types("graph 'sum(up)' 1h", channel.id, "Drawing")
            await slack.wait_for(lambda s: any(f.completed for f in s.files.values()), timeout=20)
            assert await _queries_served(http, prometheus.url) > queries
            await people["bob"].types("run scale api/search-api replicas=4", channel.id, "Proposed")
            assert len(await _rows(database_dsn, "SELECT id FROM action_runs")) == 1
    finally:
        await kube.stop()
        await asyncio.to_thread(prometheus.stop)
