"""Teams and services (issue #12, points 1 and 2) through the real edges: Alertmanager deliveries
with the seed systems' labels land in their team's channel, with the team's channel prefix and a
card naming team and service; `/incident team` moves an incident (refused without the policy's
permission, with nothing written); `/incident list team=`; declaring in a team's channel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import yaml

from bot.app import BotServer
from sandbox.slack import Channel, ResponsePost, SlackDriver, SlackSandbox
from tests.integration.rig import (
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    playbooks_with_roles,
    post_alert,
    running_bot,
)

MALLORY = "U0MALLORY"  # no role in the test policy
SLACK_WRITES = frozenset(
    {
        "chat.postMessage",
        "chat.update",
        "conversations.create",
        "conversations.invite",
        "conversations.setTopic",
    }
)
# One alert per seed system, with the labels its rules carry, and where it must go:
# (team, service title on the card, channel prefix).
SEED_ALERTS: dict[str, tuple[dict[str, str], str, str]] = {
    "skillquest": (
        {"alertname": "APIDown", "namespace": "skillquest", "job": "skillquest-api", "severity": "critical"},
        "SkillQuest API",
        "inc-skillquest-",
    ),
    "onquota": (
        {"alertname": "BackendDown", "job": "onquota-backend", "severity": "critical"},
        "OnQuota backend",
        "inc-onquota-",
    ),
    "skillforge": (
        {
            "alertname": "SkillForgeLatencyP95High",
            "namespace": "api",
            "service": "search",
            "severity": "warning",
        },
        "Search API",
        "inc-skillforge-",
    ),
    "skillmeat": (
        {"alertname": "MCPServerUnhealthy", "severity": "warning"},
        "MCP servers",
        "inc-skillmeat-",
    ),
    "birthday-scheduler": (
        {"alertname": "ServiceDown", "namespace": "birthday-scheduler", "job": "birthday-scheduler-api"},
        "Birthday Scheduler API",
        "inc-birthday-",
    ),
}
TITLES = {
    "skillquest": "SkillQuest",
    "onquota": "OnQuota",
    "skillforge": "SkillForge",
    "skillmeat": "SkillMeat",
    "birthday-scheduler": "Birthday Scheduler",
}
UNMATCHED = {"alertname": "DiskFull", "namespace": "payments", "severity": "warning"}


def team_channel(team: str) -> str:
    """Each team's notification channel in these tests (SkillForge's is the bundled one)."""
    return "skillforge-incident" if team == "skillforge" else f"{team}-incidents"


def catalog_with_channels(target: Path) -> Path:
    """The bundled playbooks and catalog, every seed team with a notification channel of its own
    (the bundled catalog gives one only to SkillForge, the only seed naming its channel)."""
    directory = playbooks_with_roles(target)
    path = directory / "services.yaml"
    catalog = yaml.safe_load(path.read_text(encoding="utf-8"))
    for team in SEED_ALERTS:
        catalog["teams"][team]["channel"] = team_channel(team)
    path.write_text(yaml.safe_dump(catalog, sort_keys=False), encoding="utf-8")
    return directory


def add_team_channels(slack: SlackSandbox) -> dict[str, Channel]:
    humans = [u.id for u in slack.users.values() if not u.is_bot]
    return {team: slack.add_channel(team_channel(team), members=humans) for team in SEED_ALERTS}


def alert_payload(labels: dict[str, str]) -> dict[str, Any]:
    key = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {
        "receiver": "incidentbot",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"{labels['alertname']} fired"},
                "startsAt": "2026-11-22T16:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": f"fp-{abs(hash(key)):x}",
            }
        ],
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f"{{}}:{{{key}}}",
        "truncatedAlerts": 0,
    }


async def rows(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        found: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return found
    finally:
        await conn.close()


async def settled(bot: BotServer, dsn: str) -> None:
    """Everything published, nothing running in the background: what follows is the next
    request's doing only."""
    async with asyncio.timeout(20):
        while True:
            pending = await rows(
                dsn,
                "SELECT (SELECT count(*) FROM incidents WHERE version > published_version)"
                " + (SELECT count(*) FROM timeline_events WHERE announce AND announced_ts IS NULL) AS n",
            )
            if pending[0]["n"] == 0 and bot.parts.supervisor.running == 0:
                return
            await asyncio.sleep(0.05)


async def types(
    slack: SlackSandbox, driver: SlackDriver, user: str, text: str, channel: str, expect: str
) -> ResponsePost:
    seen = len(slack.responses)
    resp = await driver.slash_command("/incident", text, user_id=user, channel_id=channel)
    assert resp.status == 200
    return await slack.wait_for(lambda s: next((r for r in s.responses[seen:] if expect in r.text), None))


def carded(prefix: str) -> Callable[[SlackSandbox], Channel | None]:
    """The incident channel with this name prefix, once its card is posted."""

    def found(s: SlackSandbox) -> Channel | None:
        channel = s.find_channel(prefix)
        return channel if channel is not None and s.messages(channel.id) else None

    return found


def posted(channel: Channel) -> Callable[[SlackSandbox], bool]:
    return lambda s: bool(s.messages(channel.id))


def texts(slack: SlackSandbox, channel: str) -> list[str]:
    return [json.dumps(m.blocks, ensure_ascii=False) + m.text for m in slack.messages(channel)]


async def test_each_seed_team_gets_its_alerts_in_its_channel_and_the_rest_goes_to_the_default(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    channels = add_team_channels(slack)
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=catalog_with_channels(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        for labels, _, _ in SEED_ALERTS.values():
            assert (await post_alert(http, bot, alert_payload(labels)))[0] == 200
        assert (await post_alert(http, bot, alert_payload(UNMATCHED)))[0] == 200
        for team, (labels, service, prefix) in SEED_ALERTS.items():
            await slack.wait_for(posted(channels[team]))
            note = slack.messages(channels[team].id)
            assert f"{labels['alertname']} fired" in json.dumps(note[0].blocks), team
            room = await slack.wait_for(carded(prefix))
            card = json.dumps(slack.messages(room.id)[0].blocks, ensure_ascii=False)
            assert f"*Team*\\n{TITLES[team]} · {service}" in card, (team, card)
        incident = slack.incident_channel
        assert incident is not None
        note = await slack.wait_for(lambda s: s.messages(incident.id))
        await settled(bot, database_dsn)
        # Only the unmatched alert is announced in INCIDENT_CHANNEL, each team's once in its own.
        assert len(slack.messages(incident.id)) == 1 and "DiskFull fired" in json.dumps(note[0].blocks)
        assert all(len(slack.messages(c.id)) == 1 for c in channels.values())
        stored = {
            r["team"]: (r["service"], r["channel_name"])
            for r in await rows(database_dsn, "SELECT team, service, channel_name FROM incidents")
        }
        assert stored["skillforge"][0] == "search" and stored["skillmeat"][0] == "mcp"
        assert stored["operations"][0] is None and stored["operations"][1].startswith("inc-2")
        events = await rows(database_dsn, "SELECT text FROM timeline_events WHERE kind = 'opened'")
        assert any("(team SkillForge / Search API)" in e["text"] for e in events)


async def test_team_command_moves_an_incident_only_for_whom_the_policy_allows(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    slack.add_user(MALLORY, "mallory", "Mallory Moe")
    channels = add_team_channels(slack)
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=catalog_with_channels(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        await post_alert(http, bot, alert_payload(SEED_ALERTS["skillforge"][0]))
        await post_alert(http, bot, alert_payload(UNMATCHED))
        incident = slack.incident_channel
        assert incident is not None
        await slack.wait_for(lambda s: s.messages(incident.id) and s.messages(channels["skillforge"].id))
        room = await slack.wait_for(carded("inc-2"))
        slack.channels[room.id].members.append(MALLORY)  # a member of the room, but no role
        await settled(bot, database_dsn)
        before = (
            sum(c.method in SLACK_WRITES for c in slack.calls),
            [tuple(r) for r in await rows(database_dsn, "SELECT id, team, service, version FROM incidents")],
            [tuple(r) for r in await rows(database_dsn, "SELECT id, kind FROM timeline_events")],
        )

        # Refused: the policy's `team` permission is commander, oncall, sre.
        refusal = await types(slack, driver, MALLORY, "team skillforge", room.id, "You may not")
        assert refusal.response_type == "ephemeral"
        assert "give incident #" in refusal.text and "`oncall`" in refusal.text and "`sre`" in refusal.text
        await settled(bot, database_dsn)
        after = (
            sum(c.method in SLACK_WRITES for c in slack.calls),
            [tuple(r) for r in await rows(database_dsn, "SELECT id, team, service, version FROM incidents")],
            [tuple(r) for r in await rows(database_dsn, "SELECT id, kind FROM timeline_events")],
        )
        assert after == before
        assert len(slack.messages(channels["skillforge"].id)) == 1

        # An unknown team is a clear error, nothing changes.
        unknown = await types(slack, driver, "U0ALICE", "team nope", room.id, "No team")
        assert "`skillforge`" in unknown.text and "`operations`" in unknown.text

        # Positive control: an SRE moves it; its notification follows to SkillForge's channel.
        moved = await types(slack, driver, "U0ALICE", "team skillforge", room.id, "now belongs to")
        assert moved.response_type == "in_channel" and "SkillForge" in moved.text
        await slack.wait_for(lambda s: len(s.messages(channels["skillforge"].id)) == 2)
        await slack.wait_for(lambda s: "team SkillForge" in json.dumps(s.messages(incident.id)[0].blocks))
        await slack.wait_for(lambda s: any("to SkillForge" in m.text for m in s.messages(room.id)))
        team = await rows(database_dsn, "SELECT team FROM incidents WHERE channel_id = $1", room.id)
        assert team[0]["team"] == "skillforge"
        events = await rows(
            database_dsn, "SELECT actor, text FROM timeline_events WHERE kind = 'team_changed'"
        )
        assert [(e["actor"], "from Operations (unrouted) to SkillForge" in e["text"]) for e in events] == [
            ("U0ALICE", True)
        ]
        again = await types(slack, driver, "U0ALICE", "team skillforge", room.id, "already belongs")
        assert "SkillForge" in again.text

        # The list filters by team.
        listing = await types(slack, driver, "U0BOB", "list team=skillforge", "C0INCIDENTS", "Open incidents")
        assert listing.text.count(", SkillForge, <#") == 2 and "#1" in listing.text and "#2" in listing.text
        empty = await types(
            slack, driver, "U0BOB", "list team=operations", "C0INCIDENTS", "No open incidents"
        )
        assert "operations" in empty.text
        bad = await types(slack, driver, "U0BOB", "list team=nope", "C0INCIDENTS", "No team")
        assert bad.response_type == "ephemeral"
        usage = await types(slack, driver, "U0BOB", "list everything", "C0INCIDENTS", "Usage")
        assert "team=<name>" in usage.text


async def test_a_declared_incident_takes_the_team_of_its_channel_or_argument(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    channels = add_team_channels(slack)
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=catalog_with_channels(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        # Declared in SkillQuest's channel: SkillQuest's incident.
        await types(
            slack, driver, "U0BOB", 'open "quiz answers lost" sev=P2', channels["skillquest"].id, "declared"
        )
        room = await slack.wait_for(carded("inc-skillquest-"))
        assert "quiz-answers-lost" in room.name
        await slack.wait_for(
            lambda s: len(s.messages(channels["skillquest"].id)) >= 2
        )  # reply + notification
        assert any(
            "quiz answers lost" in t and "team SkillQuest" in t
            for t in texts(slack, channels["skillquest"].id)
        )
        # Declared in #incident with team=: that team's.
        await types(slack, driver, "U0BOB", 'open "quota sync stuck" team=onquota', "C0INCIDENTS", "declared")
        await slack.wait_for(lambda s: s.messages(channels["onquota"].id))
        assert any("quota sync stuck" in t for t in texts(slack, channels["onquota"].id))
        # Declared in #incident without one: the default team, in #incident.
        await types(slack, driver, "U0BOB", 'open "office wifi down"', "C0INCIDENTS", "declared")
        await slack.wait_for(
            lambda s: any("office wifi down" in t and "team Operations" in t for t in texts(s, "C0INCIDENTS"))
        )
        # A team that does not exist: a clear error, no incident.
        bad = await types(slack, driver, "U0BOB", 'open "x" team=nope', "C0INCIDENTS", "No team")
        assert bad.response_type == "ephemeral"
        stored = await rows(database_dsn, "SELECT title, team FROM incidents ORDER BY id")
        assert [(r["title"], r["team"]) for r in stored] == [
            ("quiz answers lost", "skillquest"),
            ("quota sync stuck", "onquota"),
            ("office wifi down", "operations"),
        ]
        timeline = await rows(
            database_dsn, "SELECT text FROM timeline_events WHERE kind = 'opened' ORDER BY id"
        )
        assert "(team SkillQuest)" in timeline[0]["text"]
