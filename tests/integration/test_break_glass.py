"""Break-glass through the real edge: after a restart, the incident's commander may bypass the
rollout_undo cooldown with a reason (`/incident run ... breakglass="..."`), which is audited,
announced in the channel and on the timeline, and still needs one approver other than them;
anybody else asking is refused with nothing proposed, posted or sent to Kubernetes.

Signed Slack requests against the running bot, real PostgreSQL and Redis, the sandbox Slack and
Kubernetes servers (the rig of test_remediation)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from bot.app import BotServer
from bot.config.settings import Settings
from bot.core.actions import ActionName, RolloutRestartParams
from bot.core.incident import Incident
from bot.core.runs import ActionRun, AuditEvent, RunStatus
from bot.flows.remediation.propose import Request
from sandbox.slack import SlackSandbox
from tests.integration.rig import bot_settings
from tests.integration.test_remediation import (
    Env,
    blocks_text,
    env,
    kube,
    make_policy,
    open_incident,
    posted,
    running,
    store,
    wait_message,
    write_playbooks,
)

__all__ = ["env", "kube"]  # fixtures, used by name

pytestmark = pytest.mark.timeout(120)

TARGET = "api/search-api"


def glass_settings(env: Env, *, break_glass: bool = True) -> Settings:
    """The remediation rig's policy, with a 10-minute rollout_undo cooldown that one approver
    lifts, and (unless told otherwise) the commander's break-glass on it."""
    env.counter += 1
    directory = write_playbooks(env.tmp / f"playbooks-glass-{env.counter}")
    policy = make_policy()
    undo: dict[str, Any] = policy["approvals"]["rollout_undo"]
    undo.update(approvals_needed=1, cooldown_minutes=10)
    policy.pop("break_glass", None)  # the bundled policy's global one
    if break_glass:
        undo["break_glass"] = {"roles": ["commander"], "extra_approvals": 1}
    (directory / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return bot_settings(
        env.slack,
        env.dsn,
        env.redis_url,
        kubeconfig=str(env.kubeconfig),
        playbooks_dir=directory,
        remediation_verify_seconds=0.0,
    )


async def command(env: Env, bot: BotServer, user: str, channel: str, text: str) -> str:
    """A signed `/incident` from `user`; the ephemeral or in-channel answer it got."""
    before = len(env.slack.responses)
    resp = await env.driver(bot).slash_command("/incident", text, user_id=user, channel_id=channel)
    assert resp.status == 200

    def answered(s: SlackSandbox) -> str | None:
        return next((r.text for r in s.responses[before:] if r.user_id == user), None)

    return await env.slack.wait_for(answered, timeout=15)


async def restarted(env: Env, bot: BotServer, incident: Incident) -> ActionRun:
    """search-api restarted a moment ago (approved through a signed click): its cooldown runs."""
    params = RolloutRestartParams(namespace="api", deployment="search-api")
    run = await posted(
        bot,
        await bot.parts.flows.proposer.propose(
            incident, ActionName.ROLLOUT_RESTART, params, Request(requested_by="U0ALICE")
        ),
    )
    await env.driver(bot).click(
        "approve_action", user_id="U0ERIN", channel_id=run.channel_id, message_ts=run.message_ts
    )
    await wait_message(env, run, "Remediation succeeded")
    return run


async def with_commander(env: Env, bot: BotServer, user: str) -> tuple[Incident, str]:
    incident = await open_incident(env, bot)
    channel = incident.channel_id
    assert channel is not None
    answer = await command(env, bot, "U0ALICE", channel, f"assign <@{user}|{user.lower()}>")
    assert f"<@{user}> is now commander" in answer
    return incident, channel


def side_effects(env: Env, bot: BotServer, channel: str) -> tuple[int, int]:
    """(messages in the incident channel, requests that reached Kubernetes)."""
    return len(env.slack.channels[channel].messages), len(env.kube.requests)


async def test_commander_breaks_glass_others_are_refused(env: Env) -> None:
    async with running(glass_settings(env)) as bot:
        incident, channel = await with_commander(env, bot, "U0DAVE")
        restart = await restarted(env, bot, incident)
        undo_cmd = f"run rollout_undo {TARGET}"

        # The commander without break-glass: the cooldown, and how to bypass it.
        answer = await command(env, bot, "U0DAVE", channel, undo_cmd)
        assert "cooldown is 10 min" in answer and f"changed by run {restart.id}" in answer
        assert 'breakglass="<reason>"' in answer and "`commander`" in answer

        # Refusal: an SRE who is not the commander asks for break-glass.
        before = side_effects(env, bot, channel)
        answer = await command(env, bot, "U0ALICE", channel, f'{undo_cmd} breakglass="site is down"')
        assert "Break-glass is for `commander`" in answer and "nothing was proposed" in answer
        assert side_effects(env, bot, channel) == before  # no Slack post, no Kubernetes call
        assert [r.id for r in await store(bot).for_incident(incident.id)] == [restart.id]

        # Positive control: the commander, with a reason.
        reason = "the restart made p95 worse"
        answer = await command(env, bot, "U0DAVE", channel, f'{undo_cmd} breakglass="{reason}"')
        assert "Proposed" in answer
        undo = next(r for r in await store(bot).for_incident(incident.id) if r.id != restart.id)
        assert undo.action is ActionName.ROLLOUT_UNDO and undo.break_glass == reason
        assert undo.approvals_needed == 1 and undo.requested_by == "U0DAVE"
        announced = await env.slack.wait_for(
            lambda s: next(
                (m.text for m in s.messages(channel) if "Break-glass by <@U0DAVE>" in m.text), None
            )
        )
        assert reason in announced
        proposal = await env.slack.wait_for(
            lambda s: next((m for m in s.messages(channel) if undo.token in json.dumps(m.blocks)), None)
        )
        assert "Break-glass by <@U0DAVE>" in json.dumps(proposal.blocks)
        approve = _approve_button(proposal.blocks or [])
        assert approve.get("style") != "primary" and approve["confirm"]["style"] == "danger"

        # Audited (who and why) and on the timeline.
        requested = (await store(bot).audit_entries(run_id=undo.id))[0]
        assert requested.event is AuditEvent.REQUESTED and requested.actor == "U0DAVE"
        assert requested.details["break_glass"]["reason"] == reason
        assert "cooldown is 10 min" in requested.details["break_glass"]["bypassed"]
        timeline = [e.text for e in await bot.parts.flows.incidents.timeline(incident.id)]
        assert any("break-glass" in t and reason in t for t in timeline)

        # The commander's own approval does not count; one other approver runs it.
        driver = env.driver(bot)
        await driver.click("approve_action", user_id="U0DAVE", channel_id=channel, message_ts=proposal.ts)
        assert "their own request" in await _response_to(env, "U0DAVE", "their own request")
        writes = len([r for r in env.kube.requests_for("PATCH", "/deployments/search-api")])
        await driver.click("approve_action", user_id="U0BOB", channel_id=channel, message_ts=proposal.ts)
        await env.slack.wait_for(lambda s: "Remediation succeeded" in blocks_text(env, channel, proposal.ts))
        assert len(env.kube.requests_for("PATCH", "/deployments/search-api")) > writes
        done = await store(bot).get(undo.id)
        assert done is not None and done.status is RunStatus.SUCCEEDED


async def test_without_break_glass_in_policy_the_cooldown_stands(env: Env) -> None:
    async with running(glass_settings(env, break_glass=False)) as bot:
        incident, channel = await with_commander(env, bot, "U0DAVE")
        restart = await restarted(env, bot, incident)
        before = side_effects(env, bot, channel)
        answer = await command(
            env, bot, "U0DAVE", channel, f'run rollout_undo {TARGET} breakglass="site is down"'
        )
        assert "Break-glass is not allowed for this action" in answer
        assert side_effects(env, bot, channel) == before
        assert [r.id for r in await store(bot).for_incident(incident.id)] == [restart.id]


def _approve_button(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    for block in blocks:
        for element in block.get("elements") or []:
            if element.get("action_id") == "approve_action":
                return dict(element)
    raise AssertionError("no approve button")


async def _response_to(env: Env, user: str, needle: str) -> str:
    def found(s: SlackSandbox) -> str | None:
        return next((r.text for r in s.responses if r.user_id == user and needle in r.text), None)

    return await env.slack.wait_for(found, timeout=10)
