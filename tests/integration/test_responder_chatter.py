"""No contradictory or duplicate chatter: one public message per change, repeats and refusals
answered to the one who asked, proposals only for what can run, and what the bot says about a
run or a runbook's remediations matches what happened. Signed Slack requests, the sandbox
Kubernetes apiserver, real PostgreSQL and Redis."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
import yaml

from bot.core.runs import RunStatus
from sandbox.slack import SlackDriver, SlackSandbox
from sandbox.slack.models import ResponsePost
from tests.integration import test_remediation as remediation
from tests.integration.rig import (
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    notification_channel,
    playbooks_with_roles,
    running_bot,
)
from tests.integration.test_promql_limits import command, new_incident_channel
from tests.integration.test_remediation import (
    TEST_ALERT,
    Env,
    mutations,
    open_incident,
    propose_scale,
    replicas,
    running,
    store,
    wait_message,
    wait_response,
    wait_thread,
)

pytestmark = pytest.mark.timeout(120)

# The fixtures of test_remediation.
env, kube = remediation.env, remediation.kube


def public(slack: SlackSandbox, channel: str) -> list[str]:
    """Everything everyone in the channel sees (in_channel answers are channel messages)."""
    return [m.text + json.dumps(m.blocks or []) for m in slack.messages(channel)]


async def private(
    slack: SlackSandbox, driver: SlackDriver, user: str, channel: str, text: str
) -> ResponsePost:
    answer = await command(slack, driver, user, channel, text)
    assert answer.response_type == "ephemeral", (text, answer.text)
    return answer


async def test_sev_is_said_once_and_repeats_are_answered_privately(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        await command(slack, driver, "U0CAROL", notification_channel(slack).id, "open Checkout down sev=P3")
        channel = await new_incident_channel(slack, 0)
        await slack.wait_for(lambda s: any("Checkout down" in t for t in public(s, channel)))

        before = public(slack, channel)
        await private(slack, driver, "U0CAROL", channel, "sev P2")
        said = await slack.wait_for(
            lambda s: [t for t in public(s, channel)[len(before) :] if "P2" in t] or None
        )
        assert len(said) == 1 and "set severity to P2" in said[0]
        # Asked again: nothing changed, nothing said in the channel.
        count = len(public(slack, channel))
        again = await private(slack, driver, "U0CAROL", channel, "sev P2")
        assert "already P2" in again.text

        # A first acknowledgement is public (positive control); a second one is the asker's own.
        first = await command(slack, driver, "U0CAROL", channel, "ack")
        assert first.response_type == "in_channel" and "acknowledged by" in first.text
        count = len(public(slack, channel))
        second = await private(slack, driver, "U0ALICE", channel, "ack")
        assert "already acknowledged" in second.text

        done = await command(slack, driver, "U0CAROL", channel, "resolve fixed")
        assert done.response_type == "in_channel" and "resolved by" in done.text
        await slack.wait_for(lambda s: any("Resolution" in t or "resolved" in t for t in public(s, channel)))
        count = len(public(slack, channel))
        twice = await private(slack, driver, "U0ALICE", channel, "resolve fixed again")
        assert "already resolved" in twice.text
        assert len(public(slack, channel)) == count


async def test_run_against_a_missing_target_is_refused_privately_and_proposes_nothing(env: Env) -> None:
    async with running(env.settings()) as bot:
        driver = env.driver(bot)
        incident = await open_incident(env, bot)
        channel = incident.channel_id
        assert channel is not None
        refused = await private(
            env.slack, driver, "U0ALICE", channel, "run scale skillquest/nosuch replicas=3"
        )
        assert "Not proposed" in refused.text and 'deployments.apps \\"nosuch\\" not found' in json.dumps(
            refused.text
        )
        assert refused.text.count("not found") == 1
        # No proposal stored or posted, nothing changed in the cluster.
        assert await store(bot).for_incident(incident.id) == []
        assert not any("nosuch" in t or "Remediation proposed" in t for t in public(env.slack, channel))
        assert mutations(env.kube, "/deployments/nosuch/scale") == []

        # Positive control: an existing target is proposed, its message posted.
        proposed = await private(env.slack, driver, "U0ALICE", channel, "run scale api/search-api replicas=9")
        assert "Proposed" in proposed.text
        assert len(await store(bot).for_incident(incident.id)) == 1
        await env.slack.wait_for(lambda s: any("Remediation proposed" in t for t in public(s, channel)))


async def test_exec_preview_shows_the_command_as_argv(env: Env) -> None:
    async with running(env.settings()) as bot:
        driver = env.driver(bot)
        incident = await open_incident(env, bot)
        assert incident.channel_id is not None
        proposed = await private(
            env.slack,
            driver,
            "U0ALICE",
            incident.channel_id,
            "run exec skillquest/skillquest-postgres-0 template=pg_terminate_long_running minutes=5",
        )
        assert "Proposed" in proposed.text, proposed.text
        [run] = await store(bot).for_incident(incident.id)
        assert run.message_ts is not None  # posted before the command was answered
        text = (await wait_message(env, run, "argv[0]")).replace('\\"', '"')
        assert "argv[0]: psql" in text and "argv[1]: -c" in text
        assert "argv[2]: SELECT pg_terminate_backend(pid) FROM pg_stat_activity" in text
        assert "interval '5 minutes';" in text
        assert "'\"'\"'" not in text  # no shell quoting to decode


async def test_approval_does_not_promise_a_run_the_cooldown_then_cancels(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        # Two proposals for one deployment, both made before either ran (scale: 10 min cooldown).
        first = await propose_scale(bot, incident, 9, by="U0ALICE")
        second = await propose_scale(bot, incident, 8, by="U0ALICE")
        await env.driver(bot).click(
            "approve_action", user_id="U0BOB", channel_id=first.channel_id, message_ts=first.message_ts
        )
        await wait_thread(env, first, "replicas 6 → 9")
        await env.driver(bot).click(
            "approve_action", user_id="U0BOB", channel_id=second.channel_id, message_ts=second.message_ts
        )
        answer = await wait_response(env, "U0BOB", "all approvals are in")
        assert "executing" not in answer and "last checks" in answer
        await wait_thread(env, second, "cooldown")
        cancelled = await store(bot).get(second.id)
        assert cancelled is not None and cancelled.status is RunStatus.CANCELLED
        assert not any("executing" in r.text for r in env.slack.responses)
        assert replicas(env.kube, "api", "search-api") == 9  # only the first ran


CHATTER_PLAYBOOK = {
    "name": "test-chatter",
    "title": "Test: two remediations, one of them impossible",
    "system": "test",
    "match": {"alertname": "ChatterBroken"},
    "remediations": [
        {
            "action": "rollout_restart",
            "title": "Restart $deployment",
            "params": {"namespace": "$namespace", "deployment": "$deployment"},
        },
        {
            "action": "rollout_restart",
            "title": "Restart the missing one",
            "params": {"namespace": "$namespace", "deployment": "$deployment-missing"},
        },
    ],
}


async def test_runbook_and_notes_agree_on_what_was_proposed(env: Env) -> None:
    settings = env.settings()
    (settings.playbooks_dir / "zz-chatter.yaml").write_text(yaml.safe_dump(CHATTER_PLAYBOOK, sort_keys=False))
    async with running(settings) as bot:
        labels = {**TEST_ALERT, "alertname": "ChatterBroken", "deployment": "search-api"}
        incident = await open_incident(env, bot, labels)
        channel = incident.channel_id
        assert channel is not None
        note = await env.slack.wait_for(
            lambda s: next((t for t in public(s, channel) if "were not proposed" in t), None), timeout=20
        )
        assert "Restart search-api (`rollout_restart`): proposed above" in note
        assert "Restart the missing one (`rollout_restart`): not proposed:" in note and "not found" in note
        runbook = next(t for t in public(env.slack, channel) if "Remediations in this runbook" in t)
        assert "proposed below" not in runbook and "Proposed remediations" not in runbook
        [run] = await store(bot).for_incident(incident.id)
        assert run.target.endswith("search-api")
