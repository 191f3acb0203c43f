"""Storm mode (issue #13, point 2) through the real edges: Alertmanager deliveries for one team
faster than its storm policy allows give one digest in the team's channel, updated in place,
instead of a notification per incident; P1/P2 channels open at once while lower severities wait
in the digest behind an Open channel button (the policy's `open_channel`); the end is said once
and the waiting incidents then get their channels; two replicas draw one digest."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bot.app import BotServer
from sandbox.slack import Channel, SlackDriver, SlackSandbox
from sandbox.slack.models import Message
from tests.integration.rig import (
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    playbooks_with_roles,
    post_alert,
    running_bot,
    without_correlation,
)
from tests.integration.test_routing import SLACK_WRITES, alert_payload, rows

MALLORY = "U0MALLORY"  # no role in the test policy
TEAM_CHANNEL = "skillquest-incidents"
WINDOW_S = 20


def storm_playbooks(target: Path) -> Path:
    """The bundled playbooks; SkillQuest announces in its own channel and storms after 5
    incidents within WINDOW_S seconds (short, so the test sees the end)."""
    directory = playbooks_with_roles(target)
    path = directory / "services.yaml"
    catalog = yaml.safe_load(path.read_text(encoding="utf-8"))
    catalog["teams"]["skillquest"]["channel"] = TEAM_CHANNEL
    catalog["storm"] = {"incidents": 5, "window_seconds": WINDOW_S, "channels_for": ["P1", "P2"]}
    path.write_text(yaml.safe_dump(catalog, sort_keys=False), encoding="utf-8")
    # A storm of separate incidents (correlation would rightly join groups of one service).
    return without_correlation(directory)


def storm_alert(n: int, severity: str) -> dict[str, Any]:
    """An alert group of its own for SkillQuest (namespace skillquest routes to the team)."""
    return alert_payload({"alertname": f"StormAlert{n}", "namespace": "skillquest", "severity": severity})


def team_channel(slack: SlackSandbox) -> Channel:
    humans = [u.id for u in slack.users.values() if not u.is_bot]
    return slack.add_channel(TEAM_CHANNEL, members=humans)


def digest_of(slack: SlackSandbox, channel: Channel) -> Message | None:
    return next((m for m in slack.messages(channel.id) if "Incident storm" in m.text), None)


def the_digest(slack: SlackSandbox, channel: Channel) -> Message:
    found = digest_of(slack, channel)
    assert found is not None
    return found


def shown(msg: Message) -> str:
    return json.dumps(msg.blocks, ensure_ascii=False) + msg.text


async def incidents_by_alert(dsn: str) -> dict[str, Any]:
    found = await rows(
        dsn,
        "SELECT i.id, i.severity, i.channel_id, i.storm_id, i.storm_role, i.notification_ts, i.title"
        " FROM incidents i",
    )
    return {r["title"].split(" ")[0]: r for r in found}


async def quiet(bot: BotServer, dsn: str) -> None:
    """Nothing left to publish or draw: what follows is the next request's doing only."""
    async with asyncio.timeout(20):
        while True:
            pending = await rows(
                dsn,
                "SELECT (SELECT count(*) FROM incidents WHERE version > published_version)"
                " + (SELECT count(*) FROM storms WHERE version > published_version) AS n",
            )
            if pending[0]["n"] == 0 and bot.parts.supervisor.running == 0:
                return
            await asyncio.sleep(0.05)


async def click(
    slack: SlackSandbox, driver: SlackDriver, user: str, digest_ts: str, channel: Channel, value: str
) -> str:
    seen = len(slack.responses)
    resp = await driver.click(
        "storm_open_channel", user_id=user, channel_id=channel.id, message_ts=digest_ts, value=value
    )
    assert resp.status == 200
    reply = await slack.wait_for(lambda s: next((r for r in s.responses[seen:]), None))
    return reply.text


async def test_a_storm_of_eight_incidents_gives_one_digest_p1_channels_first_and_one_end(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    slack.add_user(MALLORY, "mallory", "Mallory Moe")
    channel = team_channel(slack)
    settings = bot_settings(slack, database_dsn, redis_url, playbooks_dir=storm_playbooks(tmp_path / "pb"))
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        # Five incidents: no storm yet, one notification each.
        for n in range(1, 6):
            assert (await post_alert(http, bot, storm_alert(n, "warning")))[0] == 200
        await slack.wait_for(lambda s: len(s.messages(channel.id)) == 5)
        # Three more within the window: P4, P1, P4. The sixth starts the storm.
        for n, severity in ((6, "info"), (7, "critical"), (8, "info")):
            assert (await post_alert(http, bot, storm_alert(n, severity)))[0] == 200
        digest = await slack.wait_for(
            lambda s: (d := digest_of(s, channel)) is not None and "8 incidents" in d.text and d
        )
        await quiet(bot, database_dsn)
        stored = await incidents_by_alert(database_dsn)
        # One digest and the five earlier notifications: nothing per incident after the threshold.
        # Under load the window may already have run out: its one end message may be there too.
        posted = [m for m in slack.messages(channel.id) if "is over" not in m.text]
        assert len(slack.messages(channel.id)) - len(posted) <= 1
        assert len(posted) == 6, [m.text for m in slack.messages(channel.id)]
        assert [stored[f"StormAlert{n}"]["notification_ts"] is None for n in range(1, 9)] == [False] * 5 + [
            True
        ] * 3
        assert {stored[f"StormAlert{n}"]["storm_role"] for n in (6, 8)} == {"waiting"}
        assert stored["StormAlert7"]["storm_role"] == "digest"
        # The P1 has its channel and card; the P4s wait without a channel.
        p1 = stored["StormAlert7"]
        assert p1["channel_id"] is not None and slack.messages(p1["channel_id"])
        assert stored["StormAlert6"]["channel_id"] is None and stored["StormAlert8"]["channel_id"] is None
        digest = the_digest(slack, channel)
        text = shown(digest)
        assert "P1: 1" in text and "P2: 5" in text and "P4: 2" in text and "SkillQuest API 8" in text
        assert f"<#{p1['channel_id']}>" in text
        # The first draw listed fewer incidents: it was updated in place, not posted again.
        assert digest.edits

        # Refused: Mallory holds no role the policy's open_channel names; nothing is written.
        waiting = str(stored["StormAlert6"]["id"])
        before = (
            sum(c.method in SLACK_WRITES for c in slack.calls),
            [
                tuple(r)
                for r in await rows(database_dsn, "SELECT id, storm_role, channel_id, version FROM incidents")
            ],
        )
        refusal = await click(slack, driver, MALLORY, digest.ts, channel, waiting)
        assert "You may not open the channel of incident" in refusal and "`sre`" in refusal
        await quiet(bot, database_dsn)
        after = (
            sum(c.method in SLACK_WRITES for c in slack.calls),
            [
                tuple(r)
                for r in await rows(database_dsn, "SELECT id, storm_role, channel_id, version FROM incidents")
            ],
        )
        assert after == before
        # A button naming an incident of no storm is refused too.
        forged = await click(slack, driver, "U0ALICE", digest.ts, channel, str(stored["StormAlert1"]["id"]))
        assert "not valid any more" in forged

        # Positive control: the SRE opens it; its channel and card follow, the storm goes on.
        opened = await click(slack, driver, "U0ALICE", digest.ts, channel, waiting)
        assert "Opening the channel of incident" in opened
        await slack.wait_for(
            lambda s: any(
                c.name.startswith("inc-skillquest-") and "stormalert6" in c.name for c in s.channels.values()
            )
        )
        # The end, said once: the remaining waiting incident gets its channel.
        ended = await slack.wait_for(
            lambda s: [m for m in s.messages(channel.id) if "is over" in m.text], timeout=WINDOW_S + 15
        )
        await quiet(bot, database_dsn)
        assert len(ended) == 1 and len(slack.messages(channel.id)) == 7
        assert "storm ended" in the_digest(slack, channel).text
        final = await incidents_by_alert(database_dsn)
        assert final["StormAlert8"]["channel_id"] is not None
        events = await rows(
            database_dsn, "SELECT incident_id, kind FROM timeline_events WHERE kind LIKE 'storm%' ORDER BY id"
        )
        kinds = {(e["incident_id"], e["kind"]) for e in events}
        assert (final["StormAlert8"]["id"], "storm_ended") in kinds
        assert (final["StormAlert6"]["id"], "storm_channel_opened") in kinds
        assert (final["StormAlert7"]["id"], "storm_joined") in kinds
        metrics = bot.parts.metrics
        assert metrics.storms.labels("skillquest", "started")._value.get() == 1
        assert metrics.storms.labels("skillquest", "ended")._value.get() == 1


async def test_two_replicas_draw_one_digest(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    channel = team_channel(slack)
    playbooks = storm_playbooks(tmp_path / "pb")
    async with AsyncExitStack() as stack:
        bots = [
            await stack.enter_async_context(
                running_bot(
                    bot_settings(slack, database_dsn, redis_url, playbooks_dir=playbooks, replica_name=name)
                )
            )
            for name in ("replica-a", "replica-b")
        ]
        # Every group delivered to both replicas (as two Alertmanagers would).
        for n in range(1, 11):
            for bot in bots:
                assert (await post_alert(http, bot, storm_alert(n, "critical" if n % 3 == 0 else "info")))[
                    0
                ] == 200
        await slack.wait_for(
            lambda s: (d := digest_of(s, channel)) is not None and "10 incidents" in d.text, timeout=30
        )
        for bot in bots:
            await quiet(bot, database_dsn)
        storms = await rows(database_dsn, "SELECT id FROM storms")
        assert len(storms) == 1
        digests = [m for m in slack.messages(channel.id) if "Incident storm" in m.text]
        assert len(digests) == 1
        # Five notifications and one digest in the team's channel; under load the storm's window
        # may also have run out by now, which adds its one end message and nothing else.
        posted = slack.messages(channel.id)
        ends = [m for m in posted if "is over" in m.text]
        assert len(ends) <= 1
        roles = await rows(database_dsn, "SELECT title, storm_role FROM incidents ORDER BY created_at")
        assert len(posted) - len(ends) == 6, (
            [m.text[:40] for m in posted],
            [tuple(r.values()) for r in roles],
        )
