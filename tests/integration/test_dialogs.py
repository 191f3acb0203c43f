"""The Declare-incident modal through the real edge: `/incident open` without arguments, the
global shortcut and the message shortcut open it with `views.open` (the sandbox Slack enforces
the trigger id's 3 seconds and single use, and Block Kit's modal limits); the signed
view_submission declares the incident as `/incident open` does, or answers
`response_action: errors` and declares nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import BotServer
from bot.core.incident import IncidentSource, Severity
from sandbox.slack import Channel, SlackDriver, SlackSandbox
from sandbox.slack.models import View
from tests.integration.rig import SIGNING_SECRET, bot_settings, bot_url, playbooks_with_roles, running_bot

pytestmark = pytest.mark.timeout(90)


@dataclass
class Rig:
    slack: SlackSandbox
    bot: BotServer
    driver: SlackDriver


@pytest.fixture
async def rig(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Rig]:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        yield Rig(slack, bot, SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http))


async def open_modal(rig: Rig, user: str) -> View:
    return await rig.slack.wait_for(
        lambda s: next(
            (
                v
                for v in s.views.values()
                if v.user_id == user and not v.closed and v.payload.get("callback_id") == "declare_incident"
            ),
            None,
        )
    )


async def declared(rig: Rig) -> Channel:
    """The new incident's channel, once the bot stored it (its card is posted after)."""
    channel = await rig.slack.wait_for(lambda s: s.find_channel("inc-"))
    await rig.slack.wait_for(lambda s: s.messages(channel.id))
    return channel


def inputs(view: View) -> dict[str, dict[str, Any]]:
    return {str(b["block_id"]): b for b in view.blocks if b.get("type") == "input"}


def incident_channels(slack: SlackSandbox) -> list[str]:
    return [c.name for c in slack.channels.values() if c.name.startswith("inc-")]


async def test_open_without_arguments_opens_the_modal_and_its_submission_declares(rig: Rig) -> None:
    resp = await rig.driver.slash_command("/incident", "open", user_id="U0ALICE", channel_id="C0INCIDENTS")
    assert resp.status == 200
    view = await open_modal(rig, "U0ALICE")
    fields = inputs(view)
    assert list(fields) == ["title", "severity", "team", "description"]
    teams = [o["value"] for o in fields["team"]["element"]["options"]]
    assert "skillforge" in teams and "operations" in teams
    assert fields["severity"]["element"]["initial_option"]["value"] == "P3"
    messages_before = len(rig.slack.messages("C0INCIDENTS"))

    # Refused: a blank title and a forged team come back as errors; nothing is declared.
    answer = await rig.driver.submit_view(
        view.id,
        {
            "title": {"value": "   "},
            "severity": {"value": "P2"},
            "team": {"value": {"selected_option": {"value": "nosuch"}}},
        },
    )
    assert answer.status == 200
    errors = answer.json()
    assert errors["response_action"] == "errors"
    assert set(errors["errors"]) == {"title", "team"}
    assert not rig.slack.views[view.id].closed
    assert incident_channels(rig.slack) == []
    assert len(rig.slack.messages("C0INCIDENTS")) == messages_before
    assert await rig.bot.parts.flows.incidents.list_open(None) == []

    # Positive control: the same modal, filled in properly.
    answer = await rig.driver.submit_view(
        view.id,
        {
            "title": {"value": "checkout errors"},
            "severity": {"value": "P2"},
            "team": {"value": "skillforge"},
            "description": {"value": 'Seeing "connection refused" from payments'},
        },
    )
    assert answer.status == 200 and not answer.body.strip()
    assert rig.slack.views[view.id].closed
    channel = await declared(rig)
    incident = await rig.bot.parts.store.incident_by_channel(channel.id)
    assert incident is not None and incident.title == "checkout errors"
    assert incident.severity is Severity.P2 and incident.team == "skillforge"
    assert incident.commander == "U0ALICE" and incident.source is IncidentSource.HUMAN
    timeline = [e.text for e in await rig.bot.parts.flows.incidents.timeline(incident.id)]
    assert any("connection refused" in t for t in timeline)


async def test_global_shortcut_opens_the_modal(rig: Rig) -> None:
    resp = await rig.driver.global_shortcut("declare_incident", user_id="U0BOB")
    assert resp.status == 200
    view = await open_modal(rig, "U0BOB")
    assert "initial_value" not in inputs(view)["title"]["element"]
    assert json.loads(view.payload["private_metadata"]) == {"channel": ""}
    answer = await rig.driver.submit_view(
        view.id, {"title": {"value": "search slow"}, "severity": {"value": "P4"}}
    )
    assert answer.status == 200 and not answer.body.strip()
    channel = await declared(rig)
    incident = await rig.bot.parts.store.incident_by_channel(channel.id)
    assert incident is not None and incident.severity is Severity.P4 and incident.commander == "U0BOB"


async def test_message_shortcut_prefills_from_the_message(rig: Rig) -> None:
    msg = rig.slack.add_message(
        "C0INCIDENTS", "Payments return 502 since 03:10\nfrom eu-west only", user_id="U0CAROL"
    )
    resp = await rig.driver.message_shortcut(
        "declare_incident_from_message", channel_id="C0INCIDENTS", message_ts=msg.ts, user_id="U0ALICE"
    )
    assert resp.status == 200
    view = await open_modal(rig, "U0ALICE")
    fields = inputs(view)
    assert fields["title"]["element"]["initial_value"] == "Payments return 502 since 03:10"
    assert "from eu-west only" in fields["description"]["element"]["initial_value"]
    assert json.loads(view.payload["private_metadata"]) == {"channel": "C0INCIDENTS"}


async def test_an_expired_trigger_id_is_explained_and_nothing_opens(rig: Rig) -> None:
    rig.slack.trigger_ttl = 0.0  # Slack's 3 seconds, already over when the bot calls views.open
    before = len(rig.slack.views)
    resp = await rig.driver.slash_command("/incident", "open", user_id="U0ALICE", channel_id="C0INCIDENTS")
    assert resp.status == 200
    answer = await rig.slack.wait_for(
        lambda s: next((r.text for r in s.responses if "did not open the form" in r.text), None)
    )
    assert "expired_trigger_id" in answer and '/incident open "title"' in answer
    assert len(rig.slack.views) == before and incident_channels(rig.slack) == []
    # Positive control: a fresh trigger id opens it.
    rig.slack.trigger_ttl = 3.0
    await rig.driver.slash_command("/incident", "open", user_id="U0ALICE", channel_id="C0INCIDENTS")
    await open_modal(rig, "U0ALICE")


async def test_edit_on_the_card_changes_severity_commander_and_status(rig: Rig) -> None:
    await rig.driver.slash_command(
        "/incident", 'open "search slow" sev=P3', user_id="U0ALICE", channel_id="C0INCIDENTS"
    )
    channel = await declared(rig)
    incident = await rig.bot.parts.store.incident_by_channel(channel.id)
    assert incident is not None
    await rig.slack.wait_for(
        lambda s: "edit_incident" in json.dumps([m.blocks for m in s.messages(channel.id)])
    )
    resp = await rig.driver.click("edit_incident", user_id="U0ALICE", channel_id=channel.id)
    assert resp.status == 200
    view = await rig.slack.wait_for(
        lambda s: next((v for v in s.views.values() if v.payload.get("callback_id") == "edit_incident"), None)
    )
    fields = inputs(view)
    assert fields["severity"]["element"]["initial_option"]["value"] == "P3"
    assert fields["commander"]["element"]["initial_user"] == "U0ALICE"

    # Refused: a bystander (no role, not in the channel) may change nothing; the first refusal is
    # shown next to its field and nothing of the rest is applied either.
    rig.slack.add_user("U0DAVE", "dave", "Dave Davis", "dave@example.com")
    refused = await rig.driver.submit_view(
        view.id,
        {"severity": {"value": "P2"}, "commander": {"value": "U0BOB"}, "status": {"value": "looking"}},
        user_id="U0DAVE",
    )
    assert refused.json()["response_action"] == "errors"
    assert "may not change the severity" in refused.json()["errors"]["severity"]
    assert not rig.slack.views[view.id].closed
    unchanged = await rig.bot.parts.store.get_incident(incident.id)
    assert unchanged is not None and unchanged.severity is Severity.P3 and unchanged.commander == "U0ALICE"
    assert not any("looking" in e.text for e in await rig.bot.parts.flows.incidents.timeline(incident.id))

    # Positive control: the commander changes all three.
    answer = await rig.driver.submit_view(
        view.id,
        {
            "severity": {"value": "P2"},
            "commander": {"value": "U0BOB"},
            "status": {"value": "search p95 at 2s"},
        },
        user_id="U0ALICE",
    )
    assert answer.status == 200 and not answer.body.strip()
    edited = await rig.bot.parts.store.get_incident(incident.id)
    assert edited is not None and edited.severity is Severity.P2 and edited.commander == "U0BOB"
    timeline = [e.text for e in await rig.bot.parts.flows.incidents.timeline(incident.id)]
    assert any("search p95 at 2s" in t for t in timeline)
