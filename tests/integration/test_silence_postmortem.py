"""`/incident silence` against the real Alertmanager API, and the postmortem draft."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from sandbox.services import AlertmanagerServer
from sandbox.slack import SlackDriver, SlackSandbox
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


async def _silences(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url + "/api/v2/silences") as resp:
        silences: list[dict[str, Any]] = await resp.json()  # Alertmanager's JSON, as it sent it
        return silences


async def test_silence_is_created_recorded_and_expired_on_resolve(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    services_dir: Path,
    tmp_path: Path,
) -> None:
    am = await asyncio.to_thread(
        AlertmanagerServer.start, services_dir, "http://127.0.0.1:9/unused", AM_TOKEN
    )
    try:
        settings = bot_settings(
            slack,
            database_dsn,
            redis_url,
            alertmanager_url=am.url,
            playbooks_dir=playbooks_with_roles(tmp_path / "pb"),
        )
        async with running_bot(settings) as bot:
            driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
            await post_alert(http, bot, group_payload("shop", [("s1", "firing"), ("s2", "firing")]))
            channel = await incident_channel(slack)
            await driver.slash_command("/incident", "silence 2h", user_id="U0ALICE", channel_id=channel.id)
            reply = await slack.wait_for(
                lambda s: next((r for r in s.responses if "silenced" in r.text), None)
            )
            assert "alertname" in reply.text and "namespace" in reply.text
            silences = await _silences(am.url)
            active = [s for s in silences if s["status"]["state"] == "active"]
            assert len(active) == 1
            matchers = {(m["name"], m["value"]) for m in active[0]["matchers"]}
            assert ("alertname", "HighErrorRate") in matchers and ("namespace", "shop") in matchers
            assert active[0]["createdBy"] == "slack:U0ALICE"

            await driver.slash_command(
                "/incident", "silence 30m pod=~pod-s.* team!=db", user_id="U0ALICE", channel_id=channel.id
            )
            await slack.wait_for(lambda s: sum("silenced" in r.text for r in s.responses) == 2)
            await driver.slash_command(
                "/incident", "silence 1h bad-matcher", user_id="U0ALICE", channel_id=channel.id
            )
            await slack.wait_for(lambda s: any("is not a matcher" in r.text for r in s.responses))

            # Resolving expires the incident's silences.
            await driver.slash_command("/incident", "resolve", user_id="U0ALICE", channel_id=channel.id)
            await slack.wait_for(lambda s: any("still firing" in r.text for r in s.responses))
            await driver.click("confirm_resolve", user_id="U0ALICE", channel_id=channel.id)
            async with asyncio.timeout(10):
                while any(s["status"]["state"] == "active" for s in await _silences(am.url)):
                    await asyncio.sleep(0.1)
            await driver.slash_command("/incident", "timeline", user_id="U0ALICE", channel_id=channel.id)
            timeline = await slack.wait_for(
                lambda s: next((r for r in s.responses if "Timeline of" in r.text), None)
            )
            assert "silenced" in timeline.text and "expired on resolve" in timeline.text
    finally:
        await asyncio.to_thread(am.stop)


async def test_postmortem_draft_matches_the_stored_timeline(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        await post_alert(http, bot, group_payload("shop", [("p1", "firing")]))
        channel = await incident_channel(slack)
        for text in ("ack", "status cache flushed, errors dropping", "sev P2"):
            await driver.slash_command("/incident", text, user_id="U0BOB", channel_id=channel.id)
        await slack.wait_for(lambda s: s.channels[channel.id].topic.startswith("[P2]"))
        await driver.slash_command("/incident", "postmortem", user_id="U0BOB", channel_id=channel.id)
        draft = await slack.wait_for(
            lambda s: next(
                (f for f in s.files.values() if f.name.startswith("postmortem-incident-1") and f.completed),
                None,
            )
        )
        assert draft.data is not None
        text = draft.data.decode()
        for heading in ("Summary", "Timeline", "Root Cause", "Resolution", "Action Items"):
            assert heading in text, heading
        assert (
            text.index("Summary")
            < text.index("Timeline")
            < text.index("Root Cause")
            < text.index("Resolution")
        )
        for needle in ("cache flushed, errors dropping", "HighErrorRate", "@bob"):
            assert needle in text, needle
        assert "U0BOB" not in text and "U\\_BOB" not in text  # named, not by Slack id
        assert any(draft.id in m.files for m in slack.messages(channel.id))
        # A second draft names the same people without asking Slack again.
        asked = len(slack.calls_to("users.info"))
        assert asked >= 1
        await driver.slash_command("/incident", "postmortem", user_id="U0BOB", channel_id=channel.id)
        await slack.wait_for(
            lambda s: (
                sum(f.name.startswith("postmortem-incident-1") and f.completed for f in s.files.values()) == 2
            )
        )
        assert len(slack.calls_to("users.info")) == asked
