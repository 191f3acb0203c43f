"""The resolve summary and the postmortem draft are fit to publish: the responder's own words
first, only executed actions counted, people by their names (not Slack ids) in the Markdown
file, no action item for a run that was never executed, and no stale status in #incident once
resolved. Signed Slack requests, the sandbox Kubernetes apiserver, real PostgreSQL and Redis."""

from __future__ import annotations

import json
import re

import pytest

from bot.core.runs import RunStatus
from sandbox.slack.models import Message
from tests.integration import test_remediation as remediation
from tests.integration.rig import notification_channel
from tests.integration.test_promql_limits import command
from tests.integration.test_remediation import (
    Env,
    open_incident,
    propose_scale,
    running,
    store,
    wait_thread,
)

pytestmark = pytest.mark.timeout(120)

# The fixtures of test_remediation.
env, kube = remediation.env, remediation.kube

RESOLUTION = "Scaled search-api to 9; the queue drained and errors stopped"


def _note(
    env: Env,
    incident_id: int,
) -> Message | None:
    """The incident's notification in #incident (not the replies to commands there)."""
    return next(
        (
            m
            for m in env.slack.messages(notification_channel(env.slack).id)
            if m.blocks and f"notify-{incident_id}" in json.dumps(m.blocks)
        ),
        None,
    )


async def test_summary_and_postmortem_are_fit_to_publish(env: Env) -> None:
    async with running(env.settings()) as bot:
        driver = env.driver(bot)
        incident = await open_incident(env, bot)
        channel = incident.channel_id
        assert channel is not None
        # Two proposals for one deployment; the second is cancelled by the cooldown the first
        # starts: one action executed, one proposal never run.
        first = await propose_scale(bot, incident, 9, by="U0ALICE")
        second = await propose_scale(bot, incident, 8, by="U0ALICE")
        await driver.click("approve_action", user_id="U0BOB", channel_id=channel, message_ts=first.message_ts)
        await wait_thread(env, first, "replicas 6 → 9")
        await driver.click(
            "approve_action", user_id="U0BOB", channel_id=channel, message_ts=second.message_ts
        )
        await wait_thread(env, second, "cooldown")
        cancelled = await store(bot).get(second.id)
        assert cancelled is not None and cancelled.status is RunStatus.CANCELLED

        await command(env.slack, driver, "U0ALICE", channel, "status scaling up, watching the queue")
        note = await env.slack.wait_for(
            lambda s: (
                n
                if (n := _note(env, incident.id)) is not None
                and "watching the queue" in n.text + json.dumps(n.blocks)
                else None
            )
        )
        # Resolved while its alert still fires: the confirmation, then "Resolve anyway".
        await command(env.slack, driver, "U0ALICE", channel, f"resolve {RESOLUTION}")
        await driver.click("confirm_resolve", user_id="U0ALICE", channel_id=channel)
        summary_message = await env.slack.wait_for(
            lambda s: next((m for m in s.messages(channel) if "resolved:*" in m.text), None)
        )
        summary = "\n".join(str((b.get("text") or {}).get("text", "")) for b in summary_message.blocks or [])
        # The responder's words come right after the headline, before the bot's statistics.
        lines = summary.split("\n")
        assert RESOLUTION.split(";", maxsplit=1)[0] in lines[1], summary
        assert summary.index(RESOLUTION.split(";", maxsplit=1)[0]) < summary.index("*Duration:*")
        # Executed actions only: the scale that ran, not the proposals, approvals, "running"
        # lines or the cancelled run.
        assert "*Actions taken (1):*" in summary, summary
        taken = lines[lines.index("*Actions taken (1):*") + 1]
        assert "succeeded" in taken and "9" in taken, taken

        # #incident: no stale "Latest:" status once resolved; the resolution is said instead.
        home = notification_channel(env.slack).id

        def resolved_note(_: object) -> str | None:
            n = env.slack.channels[home].message(note.ts)
            text = n.text + json.dumps(n.blocks, ensure_ascii=False) if n is not None else ""
            return text if "resolved" in text.lower() else None

        shown = await env.slack.wait_for(resolved_note)
        assert "Latest" not in shown and "watching the queue" not in shown, shown
        assert "the queue drained" in shown

        await command(env.slack, driver, "U0ALICE", channel, "postmortem")
        draft = await env.slack.wait_for(
            lambda s: next(
                (f for f in s.files.values() if f.name.startswith("postmortem-incident-") and f.completed),
                None,
            )
        )
        assert draft.data is not None
        text = draft.data.decode()
        # People by name, never by Slack id.
        assert not re.search(r"U\\?_(ALICE|BOB)", text), text
        assert "<@" not in text
        assert "@bob" in text and "@alice" in text
        # The cancelled run is listed but asks nobody to investigate a failure.
        assert "cancelled" in text
        assert "Investigate the failed remediation" not in text
        # The resolution text leads the Resolution section.
        resolution = text[text.index("## Resolution") :]
        assert resolution.index("the queue drained") < resolution.index("### Remediation actions")
