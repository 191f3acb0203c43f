"""People in the room (issue #12, points 3 and 6) through the real edges: an Alertmanager delivery
for SkillForge opens a channel with the team's PagerDuty on-call (found by email) and, for a P1,
its responder group invited; the first to ack by button becomes commander; an unacknowledged
incident escalates through the team's levels at their delays (mentions, invites, a page, a
message in the team's channel); an ack stops it; two replicas do each step once. Real Postgres
and Redis, the sandbox Slack and the TLS sandbox PagerDuty; time is a controlled clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml

from bot.app import BotServer
from bot.config.settings import Settings
from sandbox.pagerduty import DEFAULT_API_TOKEN, DEFAULT_WEBHOOK_SECRET, PagerDutySandbox
from sandbox.slack import Channel, SlackDriver, SlackSandbox
from tests.integration.rig import (
    SIGNING_SECRET,
    FakeClock,
    bot_settings,
    bot_url,
    playbooks_with_roles,
    post_alert,
    running_bot,
    running_bot_with_clock,
)
from tests.integration.test_routing import (
    SEED_ALERTS,
    add_team_channels,
    alert_payload,
    catalog_with_channels,
    rows,
    settled,
)

POLICY = "PSKF001"  # SkillForge's PagerDuty escalation policy in these tests
PAGING_POLICY = "PSKF002"  # the engineering managers' policy, paged at level 3
TEAM_CHANNEL = "skillforge-incident"
# Slack users: the PagerDuty on-call (matched by email), the responder group, one per level.
PEOPLE = {
    "U0PRIMARY": "primary@skillforge.test",
    "U0SRE1": "sre1@skillforge.test",
    "U0SRE2": "sre2@skillforge.test",
    "U0SECOND": "second@skillforge.test",
    "U0MANAGER": "manager@skillforge.test",
}
GROUPS = {
    "S0SKFSRE": ("skillforge-sre", ["U0SRE1", "U0SRE2"]),
    "S0SKFPRIMARY": ("skillforge-sre-primary", ["U0PRIMARY", "U0SRE1"]),
    "S0SKFSECOND": ("skillforge-sre-secondary", ["U0SECOND"]),
    "S0SKFMGR": ("skillforge-eng-managers", ["U0MANAGER"]),
}
P1_ALERT = {"alertname": "SkillForgeAPIDown", "namespace": "api", "severity": "critical"}


@pytest.fixture
async def pd() -> AsyncIterator[PagerDutySandbox]:
    async with PagerDutySandbox(webhook_secrets=(DEFAULT_WEBHOOK_SECRET,)) as sandbox:
        sandbox.add_user("PU_PRIMARY", "Pat Primary", "Primary@SkillForge.test")
        sandbox.add_user("PU_NOSLACK", "Nora Noslack", "nora@elsewhere.test")
        sandbox.add_user("PU_SECOND", "Sam Second", "second@skillforge.test")
        # Level 1 is the current on-call (one of them has no Slack account); level 2 is not.
        sandbox.add_escalation_policy(POLICY, "SkillForge", [["PU_PRIMARY", "PU_NOSLACK"], ["PU_SECOND"]])
        sandbox.add_escalation_policy(PAGING_POLICY, "SkillForge managers", [["PU_SECOND"]])
        sandbox.add_service("PSKF100", "skillforge-api", POLICY)
        yield sandbox


def people(slack: SlackSandbox) -> Channel:
    """SkillForge's people and user groups in the sandbox Slack; returns the team's channel."""
    for user_id, email in PEOPLE.items():
        slack.add_user(user_id, user_id.lower(), user_id.title(), email)
    for group_id, (handle, members) in GROUPS.items():
        slack.add_usergroup(group_id, handle, members)
    return slack.add_channel(TEAM_CHANNEL, members=list(PEOPLE))


def playbooks(target: Path, *, delays: tuple[int, int, int] = (0, 1, 2), service: str | None = None) -> Path:
    """The bundled catalog, SkillForge with its PagerDuty policy (and `service`) and short
    escalation delays."""
    directory = playbooks_with_roles(target)
    path = directory / "services.yaml"
    catalog = yaml.safe_load(path.read_text(encoding="utf-8"))
    team = catalog["teams"]["skillforge"]
    team["pagerduty"] = {"escalation_policy_id": POLICY} | ({"service_id": service} if service else {})
    team["escalation"][0]["after_minutes"] = delays[0]
    team["escalation"][1]["after_minutes"] = delays[1]
    team["escalation"][2]["after_minutes"] = delays[2]
    team["escalation"][2]["pagerduty_escalation_policy"] = PAGING_POLICY
    path.write_text(yaml.safe_dump(catalog, sort_keys=False), encoding="utf-8")
    return directory


def settings(
    slack: SlackSandbox,
    pd: PagerDutySandbox,
    dsn: str,
    redis_url: str,
    tmp: Path,
    *,
    service: str | None = None,
) -> Settings:
    return bot_settings(
        slack,
        dsn,
        redis_url,
        playbooks_dir=playbooks(tmp / "pb", service=service),
        pagerduty_api_token=DEFAULT_API_TOKEN,
        pagerduty_api_url=pd.base_url,
        pagerduty_from_email="alice@example.com",
        pagerduty_webhook_secret=DEFAULT_WEBHOOK_SECRET,
        pagerduty_ca_bundle=str(pd.ca_path),
        pagerduty_routing_key=pd.services["PSKF100"].integration_key,
        pagerduty_events_url=pd.base_url,
    )


def room(s: SlackSandbox) -> Channel | None:
    """The SkillForge incident channel once its card is posted."""
    channel = s.find_channel("inc-skillforge-")
    return channel if channel is not None and s.messages(channel.id) else None


def texts(slack: SlackSandbox, channel_id: str) -> list[str]:
    return [m.text + json.dumps(m.blocks or []) for m in slack.messages(channel_id)]


def said(channel_id: str, needle: str) -> Callable[[SlackSandbox], bool]:
    return lambda s: any(needle in t for t in texts(s, channel_id))


def opened(prefix: str) -> Callable[[SlackSandbox], Channel | None]:
    return lambda s: s.find_channel(prefix)


def member(channel_id: str, user: str) -> Callable[[SlackSandbox], bool]:
    return lambda s: user in s.channels[channel_id].members


def count(slack: SlackSandbox, channel_id: str, needle: str) -> int:
    return sum(needle in t for t in texts(slack, channel_id))


def joins(slack: SlackSandbox, channel_id: str) -> list[str]:
    """Who joined the channel, once per join (Slack's own channel_join messages)."""
    return [m.user for m in slack.messages(channel_id, system=True) if m.subtype == "channel_join"]


async def fired(dsn: str, level: int, outcome: str, *, timeout: float = 10.0) -> None:
    """Until the level's timer has fired with this outcome (the sweep runs every 0.5 s)."""
    sql = (
        "SELECT count(*) AS n FROM timers WHERE kind = 'escalation_level'"
        " AND (data->>'level')::int = $1 AND outcome = $2"
    )
    async with asyncio.timeout(timeout):
        while (await rows(dsn, sql, level, outcome))[0]["n"] == 0:
            await asyncio.sleep(0.05)


async def events(dsn: str, kind: str) -> list[asyncpg.Record]:
    return await rows(dsn, "SELECT actor, text, data FROM timeline_events WHERE kind = $1 ORDER BY id", kind)


async def test_a_skillforge_p1_brings_in_the_oncall_and_responders_and_the_first_acker_commands(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    tmp_path: Path,
) -> None:
    team = people(slack)
    clock = FakeClock()
    # Level 2 far away: this test is about opening and acknowledging.
    config = settings(slack, pd, database_dsn, redis_url, tmp_path)
    async with running_bot_with_clock(config, clock) as bot:
        assert (await post_alert(http, bot, alert_payload(P1_ALERT)))[0] == 200
        channel = await slack.wait_for(room)
        # The current on-call (level 1 of the team's policy, by email, case-insensitive) and the
        # P1 responder group are in; level 2 of the policy is not.
        await slack.wait_for(
            lambda s: {"U0PRIMARY", "U0SRE1", "U0SRE2"} <= set(s.channels[channel.id].members)
        )
        await slack.wait_for(said(channel.id, "Invited to the incident"))
        [invited] = await events(database_dsn, "people_invited")
        assert "On-call from PagerDuty invited (SkillForge): <@U0PRIMARY>" in invited["text"]
        assert "Responders (P1) `@skillforge-sre`: <@U0SRE1>, <@U0SRE2>" in invited["text"]
        # The on-call without a Slack account is shown, not swallowed.
        assert "No Slack user with the email of Nora Noslack (nora@elsewhere.test)" in invited["text"]
        assert [g.query.getall("escalation_policy_ids[]") for g in pd.requests_to("GET", "/oncalls")] == [
            [POLICY]
        ]
        assert "U0SECOND" not in slack.channels[channel.id].members
        # Level 1 (after 0 min) mentions and invites the primary SREs in the room; the team's
        # channel has the incident's notification only (no escalation yet).
        await slack.wait_for(said(channel.id, "Level 1 (Primary SRE) engaged. <@U0PRIMARY> <@U0SRE1>"))
        assert count(slack, team.id, "Level 1") == 0 and len(slack.messages(team.id)) == 1
        # The team's notification names who PagerDuty has on call now, beside the first level.
        await slack.wait_for(
            lambda s: (
                "PagerDuty: <@U0PRIMARY>" in json.dumps(s.messages(team.id)[0].blocks, ensure_ascii=False)
            )
        )

        # The first to ack by the card's button leads; a second ack changes nothing.
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        card = slack.messages(channel.id)[0]
        assert (
            await driver.click("ack_incident", user_id="U0SRE2", channel_id=channel.id, message_ts=card.ts)
        ).status == 200
        await slack.wait_for(said(channel.id, "<@U0SRE2> is commander: first to acknowledge"))
        await slack.wait_for(lambda s: "<@U0SRE2>" in json.dumps(s.messages(channel.id)[0].blocks))
        stored = await rows(database_dsn, "SELECT commander, acknowledged_by FROM incidents")
        assert [tuple(r) for r in stored] == [("U0SRE2", "U0SRE2")]
        roles = await rows(database_dsn, "SELECT role, user_id FROM incident_roles")
        assert [tuple(r) for r in roles] == [("commander", "U0SRE2")]
        await driver.slash_command("/incident", "ack", user_id="U0SRE1", channel_id=channel.id)
        await slack.wait_for(lambda s: any("already acknowledged" in r.text for r in s.responses))
        assert [tuple(r) for r in await rows(database_dsn, "SELECT commander FROM incidents")] == [
            ("U0SRE2",)
        ]
        assert len(await events(database_dsn, "commander_on_ack")) == 1
        # Acknowledged: level 2 does not come.
        clock.advance(minutes=5)
        await fired(database_dsn, 2, "already acknowledged")
        assert (
            count(slack, team.id, "Escalation level 2") == 0
            and count(slack, channel.id, "Escalation level 2") == 0
        )
        assert "U0SECOND" not in slack.channels[channel.id].members


async def test_a_declared_incident_keeps_its_declarer_as_commander(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    tmp_path: Path,
) -> None:
    team = people(slack)
    clock = FakeClock()
    async with running_bot_with_clock(settings(slack, pd, database_dsn, redis_url, tmp_path), clock) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        await driver.slash_command(
            "/incident", 'open "search is slow" sev=P3', user_id="U0ALICE", channel_id=team.id
        )
        channel = await slack.wait_for(room)
        # A P3: the on-call is invited, the responder group is not.
        await slack.wait_for(said(channel.id, "Invited to the incident"))
        members = set(slack.channels[channel.id].members)
        assert "U0PRIMARY" in members and "U0SRE2" not in members
        await driver.slash_command("/incident", "ack", user_id="U0PRIMARY", channel_id=channel.id)
        await slack.wait_for(lambda s: any("acknowledged by <@U0PRIMARY>" in r.text for r in s.responses))
        stored = await rows(database_dsn, "SELECT commander, acknowledged_by FROM incidents")
        assert [tuple(r) for r in stored] == [("U0ALICE", "U0PRIMARY")]
        assert await events(database_dsn, "commander_on_ack") == []


async def test_an_unacknowledged_incident_climbs_the_teams_levels_until_acknowledged(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    tmp_path: Path,
) -> None:
    team = people(slack)
    clock = FakeClock()
    config = settings(slack, pd, database_dsn, redis_url, tmp_path, service="PSKF100")
    async with running_bot_with_clock(config, clock) as bot:
        assert (await post_alert(http, bot, alert_payload(P1_ALERT)))[0] == 200
        channel = await slack.wait_for(room)
        await fired(database_dsn, 1, "escalated")
        await slack.wait_for(said(channel.id, "Level 1 (Primary SRE) engaged."))
        # Level 2 is due 1 minute after the open.
        due = await rows(
            database_dsn,
            "SELECT t.due_at - i.created_at AS after FROM timers t JOIN incidents i ON i.id = t.incident_id"
            " WHERE t.kind = 'escalation_level' AND t.data->>'level' = '2'",
        )
        assert [r["after"] for r in due] == [timedelta(minutes=1)]
        clock.advance(seconds=65)
        await fired(database_dsn, 2, "escalated")
        await slack.wait_for(lambda s: "U0SECOND" in s.channels[channel.id].members)
        await slack.wait_for(said(channel.id, "Escalation level 2 (Secondary SRE)"))
        await slack.wait_for(said(team.id, "Escalation level 2 (Secondary SRE)"))
        assert any("Escalation level 2" in t and "<@U0SECOND>" in t for t in texts(slack, team.id))
        assert pd.events == []  # levels 1 and 2 name no PagerDuty policy
        # A severity change continues where the escalation stands: level 3 next, level 1 not again.
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        await driver.slash_command("/incident", "sev P2", user_id="U0ALICE", channel_id=channel.id)
        await slack.wait_for(lambda s: any("is now P2" in r.text for r in s.responses))
        pending = await rows(
            database_dsn,
            "SELECT data->>'level' AS level FROM timers WHERE done_at IS NULL AND kind = 'escalation_level'",
        )
        assert [r["level"] for r in pending] == ["3"]
        # Level 3 pages through PagerDuty and brings the managers in.
        clock.advance(minutes=1)
        await fired(database_dsn, 3, "escalated")
        await slack.wait_for(lambda s: "U0MANAGER" in s.channels[channel.id].members)
        await slack.wait_for(said(team.id, "Escalation level 3 (Engineering manager)"))
        # The level's own policy is paged: a PagerDuty incident on the team's service, assigned
        # to that policy (the Events API could only reach the routing key's service), and linked.
        assert pd.events == []
        [paged] = pd.incidents.values()
        assert (paged.escalation_policy_id, paged.assignee_ids) == (PAGING_POLICY, ["PU_SECOND"])
        assert paged.service_id == "PSKF100" and paged.incident_key.startswith("incidentbot-")
        await slack.wait_for(
            said(channel.id, f"Paged through PagerDuty (policy {PAGING_POLICY}): incident #")
        )
        linked = await rows(database_dsn, "SELECT pagerduty_incident_id FROM incidents")
        assert [r["pagerduty_incident_id"] for r in linked] == [paged.id]
        steps = [e["text"] for e in await events(database_dsn, "escalated")]
        assert [s.split(":")[0].split(".")[0] for s in steps] == [
            "📣 Level 1 (Primary SRE) engaged",
            "🚨 Escalation level 2 (Secondary SRE)",
            "🚨 Escalation level 3 (Engineering manager)",
        ]
        # No level 4, nothing more scheduled.
        left = await rows(
            database_dsn, "SELECT kind FROM timers WHERE done_at IS NULL AND kind LIKE 'escalat%'"
        )
        assert left == []

        # Resolved and reopened: the levels start again from the reopen, each step posted again once.
        await driver.slash_command("/incident", "resolve", user_id="U0ALICE", channel_id=channel.id)
        await slack.wait_for(lambda s: any("still firing" in r.text for r in s.responses))
        await driver.click("confirm_resolve", user_id="U0ALICE", channel_id=channel.id)
        await slack.wait_for(lambda s: any("resolved by" in r.text for r in s.responses))
        await driver.slash_command("/incident", "reopen", user_id="U0ALICE", channel_id=channel.id)
        await slack.wait_for(lambda s: any("reopened by" in r.text for r in s.responses))
        await slack.wait_for(lambda s: count(s, channel.id, "Level 1 (Primary SRE) engaged") == 2)
        clock.advance(seconds=65)
        await slack.wait_for(lambda s: count(s, team.id, "Escalation level 2 (Secondary SRE)") == 2)
        assert count(slack, team.id, "Escalation level 3") == 1


async def test_two_replicas_invite_and_escalate_once(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    tmp_path: Path,
) -> None:
    team = people(slack)
    clock = FakeClock()
    config = settings(slack, pd, database_dsn, redis_url, tmp_path)
    async with AsyncExitStack() as stack:
        bots: list[BotServer] = [
            await stack.enter_async_context(running_bot_with_clock(config, clock)) for _ in range(2)
        ]
        for bot in bots:
            assert (await post_alert(http, bot, alert_payload(P1_ALERT)))[0] == 200
        channel = await slack.wait_for(room)
        await fired(database_dsn, 1, "escalated")
        clock.advance(minutes=1)
        await fired(database_dsn, 2, "escalated")
        clock.advance(minutes=1)
        await fired(database_dsn, 3, "escalated")
        await slack.wait_for(said(team.id, "Escalation level 3"))
        await slack.wait_for(said(channel.id, "Escalation level 3"))
        await slack.wait_for(said(channel.id, "Invited to the incident"))
        for bot in bots:
            await settled(bot, database_dsn)
        assert len(slack.channels_with_prefix("inc-skillforge-")) == 1
        assert count(slack, channel.id, "Invited to the incident") == 1
        assert count(slack, channel.id, "Level 1 (Primary SRE) engaged") == 1
        for level in (2, 3):
            assert count(slack, team.id, f"Escalation level {level}") == 1, level
            assert count(slack, channel.id, f"Escalation level {level}") == 1, level
        # The team's channel: the notification and the two escalation steps.
        assert len(slack.messages(team.id)) == 3
        joined = joins(slack, channel.id)
        assert sorted(u for u in joined if u in PEOPLE) == sorted(PEOPLE), joined
        assert len(pd.events) == 1
        assert len(pd.requests_to("GET", "/oncalls")) == 1


async def test_a_pagerduty_ack_makes_the_acker_commander_when_matched_by_email(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    tmp_path: Path,
) -> None:
    people(slack)
    clock = FakeClock()
    async with running_bot_with_clock(settings(slack, pd, database_dsn, redis_url, tmp_path), clock) as bot:
        url = bot_url(bot) + "/webhooks/pagerduty"
        matched = pd.create_incident("Search index stale", service="PSKF100", urgency="high")
        unmatched = pd.create_incident("Search quota", service="PSKF100", urgency="high")
        automated = pd.create_incident("Search shards", service="PSKF100", urgency="high")
        for incident in (matched, unmatched, automated):
            assert await pd.send_webhook(url, "incident.triggered", incident.id) == 202
        await slack.wait_for(lambda s: len(s.channels_with_prefix("inc-")) == 3)
        # Acknowledged by automation (no agent): nobody is looked up, nobody leads.
        assert await pd.send_webhook(url, "incident.acknowledged", automated.id) == 202
        # Sam Second's PagerDuty email is a Slack user's; Nora Noslack's is nobody's.
        assert await pd.send_webhook(url, "incident.acknowledged", matched.id, agent="PU_SECOND") == 202
        assert await pd.send_webhook(url, "incident.acknowledged", unmatched.id, agent="PU_NOSLACK") == 202
        taken = await wait_rows(
            database_dsn, "SELECT id FROM timeline_events WHERE kind = 'commander_on_ack'"
        )
        assert len(taken) == 1
        await wait_rows(database_dsn, "SELECT id FROM timeline_events WHERE kind = 'commander_unmatched'")
        await wait_rows(
            database_dsn,
            "SELECT 1 FROM incidents HAVING count(*) FILTER (WHERE status = 'acknowledged') = 3",
        )
        stored = await rows(
            database_dsn, "SELECT title, commander, acknowledged_by FROM incidents ORDER BY title"
        )
        assert [tuple(r) for r in stored] == [
            ("Search index stale", "U0SECOND", None),
            ("Search quota", None, None),
            ("Search shards", None, None),
        ]
        assert len(await events(database_dsn, "commander_on_ack")) == 1
        [unmatched_event] = await events(database_dsn, "commander_unmatched")
        assert "no Slack user has the email nora@elsewhere.test" in unmatched_event["text"]
        looked_up = sorted(r.path for r in pd.requests if r.method == "GET" and r.path.startswith("/users/"))
        assert looked_up == ["/users/PU_NOSLACK", "/users/PU_SECOND"]


async def wait_rows(dsn: str, sql: str) -> list[asyncpg.Record]:
    async with asyncio.timeout(10):
        while not (found := await rows(dsn, sql)):
            await asyncio.sleep(0.05)
    return found


async def test_a_failed_oncall_lookup_is_shown_and_the_responders_still_come(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    tmp_path: Path,
) -> None:
    people(slack)
    pd.fail_next(500, count=20, path="/oncalls")
    clock = FakeClock()
    async with running_bot_with_clock(settings(slack, pd, database_dsn, redis_url, tmp_path), clock) as bot:
        assert (await post_alert(http, bot, alert_payload(P1_ALERT)))[0] == 200
        channel = await slack.wait_for(room)
        await slack.wait_for(said(channel.id, f"On-call lookup failed for policy {POLICY}"))
        [invited] = await events(database_dsn, "people_invited")
        assert "HTTP 500" in invited["text"] and "Responders (P1)" in invited["text"]
        assert {"U0SRE1", "U0SRE2"} <= set(slack.channels[channel.id].members)
        assert "U0SECOND" not in slack.channels[channel.id].members


async def test_each_seed_team_gets_its_alert_in_its_channel_with_its_own_oncall_invited(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    tmp_path: Path,
) -> None:
    """The five seed teams, each with its PagerDuty escalation policy: each team's alert is
    announced in its channel and its incident channel has that team's on-call in it, nobody
    else's."""
    directory = catalog_with_channels(tmp_path / "seed-teams")
    path = directory / "services.yaml"
    catalog = yaml.safe_load(path.read_text(encoding="utf-8"))
    oncall: dict[str, str] = {}
    for n, team in enumerate(SEED_ALERTS):
        slack_id, pd_id, policy = f"U0ONCALL{n}", f"PU_ONCALL{n}", f"PSEED{n:03d}"
        email = f"oncall{n}@{team}.test"
        slack.add_user(slack_id, f"oncall{n}", f"On-call {team}", email)
        pd.add_user(pd_id, f"On-call {team}", email)
        pd.add_escalation_policy(policy, team, [[pd_id]])
        catalog["teams"][team]["pagerduty"] = {"escalation_policy_id": policy}
        oncall[team] = slack_id
    path.write_text(yaml.safe_dump(catalog, sort_keys=False), encoding="utf-8")
    rooms = add_team_channels(slack)
    config = settings(slack, pd, database_dsn, redis_url, tmp_path).model_copy(
        update={"playbooks_dir": directory}
    )
    async with running_bot(config) as bot:
        for labels, _, _ in SEED_ALERTS.values():
            status, _ = await post_alert(http, bot, alert_payload(labels))
            assert status == 200
        for team, (labels, _, prefix) in SEED_ALERTS.items():
            channel = await slack.wait_for(opened(prefix))
            await slack.wait_for(member(channel.id, oncall[team]))
            await slack.wait_for(said(rooms[team].id, labels["alertname"]))
        await settled(bot, database_dsn)
        for team, (_, _, prefix) in SEED_ALERTS.items():
            room = slack.find_channel(prefix)
            assert room is not None
            others = {u for t, u in oncall.items() if t != team}
            assert not others & set(slack.channels[room.id].members), team


async def test_a_level_hands_the_linked_pagerduty_incident_to_its_policy(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    tmp_path: Path,
) -> None:
    """An incident PagerDuty opened is already there: level 3 reassigns it to the level's
    policy (REST), which PagerDuty announces back; nothing new is opened or triggered."""
    people(slack)
    clock = FakeClock()
    config = settings(slack, pd, database_dsn, redis_url, tmp_path, service="PSKF100")
    async with running_bot_with_clock(config, clock) as bot:
        pd.webhook_url = bot_url(bot) + "/webhooks/pagerduty"
        born = pd.create_incident("SkillForge API down", service="PSKF100")
        assert await pd.send_webhook(pd.webhook_url, "incident.triggered", born.id) == 202
        channel = await slack.wait_for(room)
        await fired(database_dsn, 1, "escalated")
        clock.advance(seconds=65)
        await fired(database_dsn, 2, "escalated")
        assert pd.requests_to("PUT", f"/incidents/{born.id}") == []  # levels 1 and 2 page nobody
        clock.advance(minutes=1)
        await fired(database_dsn, 3, "escalated")
        [put] = pd.requests_to("PUT", f"/incidents/{born.id}")
        assert put.json()["incident"]["escalation_policy"]["id"] == PAGING_POLICY
        assert (born.escalation_policy_id, born.assignee_ids) == (PAGING_POLICY, ["PU_SECOND"])
        await slack.wait_for(said(channel.id, f"its incident was handed to policy {PAGING_POLICY}"))
        await slack.wait_for(said(channel.id, "PagerDuty reassigned to Sam Second"))
        assert len(pd.incidents) == 1 and pd.events == [] and pd.requests_to("POST", "/incidents") == []


async def test_without_the_teams_service_a_level_is_paged_through_the_routing_key_and_says_so(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    pd: PagerDutySandbox,
    tmp_path: Path,
) -> None:
    people(slack)
    clock = FakeClock()
    async with running_bot_with_clock(settings(slack, pd, database_dsn, redis_url, tmp_path), clock) as bot:
        assert (await post_alert(http, bot, alert_payload(P1_ALERT)))[0] == 200
        channel = await slack.wait_for(room)
        clock.advance(minutes=2, seconds=5)
        await fired(database_dsn, 3, "escalated")
        [page] = pd.events
        assert page["event_action"] == "trigger" and page["dedup_key"].startswith("incidentbot-")
        assert page["payload"]["custom_details"]["escalation_policy"] == PAGING_POLICY
        await slack.wait_for(said(channel.id, f"its service's own policy answers, not {PAGING_POLICY}"))
        assert pd.requests_to("POST", "/incidents") == []
