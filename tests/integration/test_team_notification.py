"""The team notification carries what the person being woken needs, on one screen, and a Join
channel button the policy authorizes; after the acknowledgement there is still something to
click. Through the Alertmanager webhook and signed Slack requests against the sandbox Slack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bot.render.notification import JOIN_ACTION, OPEN_LINK_ACTION
from sandbox.slack import SlackDriver, SlackSandbox
from sandbox.slack.models import Message
from tests.integration.rig import (
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    group_payload,
    incident_channel,
    notification_channel,
    playbooks_with_roles,
    post_alert,
    quiet,
    running_bot,
)

pytestmark = pytest.mark.timeout(120)

RUNBOOK = "https://wiki.example.com/runbooks/skillquest-5xx"


def _policy(tmp_path: Path) -> Path:
    """The bundled playbooks; Join channel only for the on-call and SRE roles."""
    directory = playbooks_with_roles(tmp_path / "pb")
    path = directory / "policy.yaml"
    policy = yaml.safe_load(path.read_text(encoding="utf-8"))
    policy["lifecycle"]["join"] = ["oncall", "sre"]
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return directory


def _alert() -> dict[str, Any]:
    body = group_payload("skillquest", [("n1", "firing")], alertname="HighAPIErrorRate")
    body["alerts"][0]["annotations"] = {
        "summary": "SkillQuest API 5xx ratio above 1% for 5 minutes",
        "description": "Errors are climbing on the API pods.",
        "value": "4.2%",
        "runbook_url": RUNBOOK,
    }
    return body


def _note(slack: SlackSandbox, incident_id: int = 1) -> Message | None:
    return next(
        (
            m
            for m in slack.messages(notification_channel(slack).id)
            if f"notify-{incident_id}" in json.dumps(m.blocks or [])
        ),
        None,
    )


def _buttons(note: Message) -> dict[str, dict[str, Any]]:
    return {
        str(e["action_id"]): e
        for b in note.blocks or []
        if b.get("type") == "actions"
        for e in b.get("elements", [])
    }


async def test_the_notification_says_enough_to_act_and_joins_the_clicker(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    slack.add_user("U0DAVE", "dave", "Dave Davis", "dave@example.com")  # holds no role
    settings = bot_settings(slack, database_dsn, redis_url, playbooks_dir=_policy(tmp_path))
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        await post_alert(http, bot, _alert())
        channel = (await incident_channel(slack)).id
        await slack.wait_for(_note)
        await quiet(bot)
        note = _note(slack)
        assert note is not None
        shown = json.dumps(note.blocks, ensure_ascii=False)
        for needed in (
            "[P1]",  # severity
            "SkillQuest API 5xx ratio above 1% for 5 minutes*",  # the title (the alert's summary)
            "SkillQuest API",  # service
            "`skillquest`",  # namespace
            "team SkillQuest",  # team
            "Errors are climbing on the API pods.",  # its description
            "4.2%",  # current value
            f"<{RUNBOOK}|",  # runbook link
            "On-call engineer: @skillquest-oncall",  # the team's first escalation level
            f"<#{channel}>",  # the incident channel
        ):
            assert needed in shown, (needed, shown)
        # One screen: one section with its fields, a context line and the buttons.
        assert len(note.blocks or []) <= 3 and len(shown) < 3000, shown
        buttons = _buttons(note)
        assert {"ack_incident", JOIN_ACTION, OPEN_LINK_ACTION} <= set(buttons)
        assert buttons[OPEN_LINK_ACTION]["url"].endswith(f"channel={channel}")

        # Refused by the policy: no invitation, nobody new in the channel.
        members = list(slack.channels[channel].members)
        invites = len(slack.calls_to("conversations.invite"))
        await driver.click(JOIN_ACTION, user_id="U0DAVE", channel_id=note.channel, message_ts=note.ts)
        refused = await slack.wait_for(
            lambda s: next((r for r in s.responses if r.user_id == "U0DAVE"), None)
        )
        assert refused.response_type == "ephemeral" and "may not join" in refused.text, refused.text
        assert slack.channels[channel].members == members
        assert len(slack.calls_to("conversations.invite")) == invites
        # A forged value (another incident) is refused as well.
        await driver.click(
            JOIN_ACTION, user_id="U0CAROL", channel_id=note.channel, message_ts=note.ts, value="999"
        )
        await slack.wait_for(lambda s: any(r.user_id == "U0CAROL" for r in s.responses))
        assert "U0CAROL" not in slack.channels[channel].members

        # Positive control: the on-call is invited into the channel by the click.
        await driver.click(JOIN_ACTION, user_id="U0CAROL", channel_id=note.channel, message_ts=note.ts)
        await slack.wait_for(lambda s: "U0CAROL" in s.channels[channel].members)
        joined = await slack.wait_for(
            lambda s: next(
                (r for r in s.responses if r.user_id == "U0CAROL" and "You are in" in r.text), None
            )
        )
        assert joined.response_type == "ephemeral"

        # Acknowledged from the notification: Join and Open channel are still there to click.
        await driver.click("ack_incident", user_id="U0CAROL", channel_id=note.channel, message_ts=note.ts)
        acked = await slack.wait_for(
            lambda s: (n := _note(s)) is not None and "acknowledged by" in json.dumps(n.blocks) and n
        )
        assert isinstance(acked, Message)
        after = _buttons(acked)
        assert "ack_incident" not in after and {JOIN_ACTION, OPEN_LINK_ACTION} <= set(after)
        # Joining twice is fine: already in, nothing breaks.
        await driver.click(JOIN_ACTION, user_id="U0CAROL", channel_id=note.channel, message_ts=note.ts)
        await slack.wait_for(
            lambda s: sum(r.user_id == "U0CAROL" and "You are in" in r.text for r in s.responses) == 2
        )
