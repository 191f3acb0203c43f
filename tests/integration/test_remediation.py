"""Remediation end to end: proposals, approvals through signed Slack block_actions requests,
exactly-once execution against the sandbox Kubernetes apiserver, verification with a real
Prometheus, and the refusals (policy, expiry, forged buttons, hostile labels, kill switch).

Real PostgreSQL and Redis; Slack and Kubernetes are the sandbox servers driven through their
real SDKs. Nothing of our own is mocked: the tests go through the bot's HTTP endpoints, or
call the remediation use cases with the running bot's own Deps.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import asyncpg
import pytest
import yaml
from aiohttp import web
from prometheus_client import generate_latest

from bot.app import BotServer, build
from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR
from bot.config.settings import Settings
from bot.core.actions import ActionName, ExecParams, RolloutRestartParams, ScaleParams
from bot.core.errors import UserError
from bot.core.incident import Incident
from bot.core.playbooks import Playbook
from bot.core.runs import ActionRun, AuditEvent, RunStatus
from bot.flows.remediation.authz import UsergroupResolver
from bot.flows.remediation.propose import Request
from bot.store.remediation import RemediationStore
from commands import remediation as commands_remediation
from sandbox.kubernetes import KubeSandbox
from sandbox.services import PrometheusServer
from sandbox.slack import SlackDriver, SlackSandbox
from tests.integration.rig import SIGNING_SECRET, bot_settings, bot_url, post_alert

pytestmark = pytest.mark.timeout(120)

NAMESPACES = ["skillquest", "birthday-scheduler", "api", "data-pipelines", "default"]
SEARCH_ALERT = {
    "alertname": "SkillForgeLatencyP95High",
    "service": "search-api",
    "namespace": "api",
    "severity": "critical",
}
# An alert no playbook matches: its incident gets no playbook proposals of its own.
TEST_ALERT = {"alertname": "TestRemediationTarget", "namespace": "api", "severity": "warning"}
SEARCH_EXPR_URL = "http://prometheus:9090/graph?g0.expr=" + quote("search_latency_p95 > 0.35", safe="")


# --------------------------------------------------------------------------- policy and playbooks


def make_policy(*, kill_switch: bool = False) -> dict[str, Any]:
    """The bundled policy (severities, exec templates) with roles of the sandbox's users:
    `sre` by user id, `oncall` through the Slack user group @sre-oncall (S0SRE)."""
    bundled = yaml.safe_load((DEFAULT_PLAYBOOKS_DIR / "policy.yaml").read_text())
    policy: dict[str, Any] = copy.deepcopy(bundled)
    policy["roles"] = {
        "sre": {"users": ["U0ALICE", "U0BOB", "U0DAVE"], "usergroups": []},
        "oncall": {"users": [], "usergroups": ["sre-oncall"]},
        "viewer": {"users": ["U0CAROL"], "usergroups": []},
        "dba": {"users": [], "usergroups": []},  # named by the bundled lifecycle section
    }
    common = {"namespaces_allow": NAMESPACES, "expiry_minutes": 15}
    policy["approvals"] = {
        "default": {"requesters": ["oncall", "sre"], "approvers": ["sre"], **common},
        "scale": {
            "requesters": ["oncall", "sre"],
            "approvers": ["sre"],
            "max_replicas": 20,
            "max_scale_step": 6,
            "cooldown_minutes": 10,
            **common,
        },
        "rollout_restart": {
            "requesters": ["oncall", "sre"],
            "approvers": ["oncall"],
            "requester_may_approve": True,
            **common,
        },
        "rollout_undo": {
            "requesters": ["oncall", "sre"],
            "approvers": ["sre"],
            "approvals_needed": 2,
            **common,
        },
        "exec": {"requesters": ["oncall", "sre"], "approvers": ["sre"], "approvals_needed": 2, **common},
        "cordon": {"requesters": ["sre"], "approvers": ["sre"], "namespaces_allow": ["*"]},
        "uncordon": {"requesters": ["sre"], "approvers": ["sre"], "namespaces_allow": ["*"]},
        "drain": {
            "requesters": ["sre"],
            "approvers": ["sre"],
            "approvals_needed": 2,
            "namespaces_allow": ["*"],
        },
    }
    policy["kill_switch"] = kill_switch
    return policy


TEST_PLAYBOOK = {
    "name": "test-restart-from-labels",
    "title": "Test: restart the alerting deployment",
    "system": "test",
    "match": {"alertname": "TestDeploymentBroken"},
    "remediations": [
        {
            "action": "rollout_restart",
            "title": "Restart $deployment",
            "params": {"namespace": "$namespace", "deployment": "$deployment"},
        }
    ],
}


def write_playbooks(directory: Path, *, kill_switch: bool = False) -> Path:
    shutil.copytree(DEFAULT_PLAYBOOKS_DIR, directory)
    (directory / "policy.yaml").write_text(
        yaml.safe_dump(make_policy(kill_switch=kill_switch), sort_keys=False)
    )
    (directory / "zz-test.yaml").write_text(yaml.safe_dump(TEST_PLAYBOOK, sort_keys=False))
    return directory


# --------------------------------------------------------------------------- environment


class Clock:
    """The bot's clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@dataclass
class Env:
    slack: SlackSandbox
    kube: KubeSandbox
    http: aiohttp.ClientSession
    dsn: str
    redis_url: str
    tmp: Path
    kubeconfig: Path
    counter: int = 0

    def settings(
        self,
        *,
        kill_switch: bool = False,
        prometheus_url: str | None = None,
        verify_seconds: float = 0.0,
        **kw: Any,
    ) -> Settings:
        self.counter += 1
        playbooks = write_playbooks(self.tmp / f"playbooks-{self.counter}", kill_switch=kill_switch)
        return bot_settings(
            self.slack,
            self.dsn,
            self.redis_url,
            kubeconfig=str(self.kubeconfig),
            playbooks_dir=playbooks,
            prometheus_url=prometheus_url,
            remediation_verify_seconds=verify_seconds,
            **kw,
        )

    def driver(self, bot: BotServer) -> SlackDriver:
        return SlackDriver(self.slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, self.http)


@pytest.fixture
async def kube() -> AsyncIterator[KubeSandbox]:
    sb = KubeSandbox(rollout_delay=0.05)
    sb.seed_demo()
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.fixture
async def env(
    slack: SlackSandbox,
    kube: KubeSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    tmp_path: Path,
) -> Env:
    slack.add_user("U0DAVE", "dave", "Dave Davis", "dave@example.com")
    slack.add_user("U0ERIN", "erin", "Erin Evans", "erin@example.com")
    slack.usergroups["S0SRE"].users.append("U0ERIN")  # erin is on-call only through the group
    return Env(
        slack, kube, http, database_dsn, redis_url, tmp_path, kube.write_kubeconfig(tmp_path / "kubeconfig")
    )


@asynccontextmanager
async def running(
    settings: Settings, clock: Callable[[], datetime] | None = None
) -> AsyncIterator[BotServer]:
    server = await build(settings, clock=clock) if clock is not None else await build(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def alert_body(labels: dict[str, str], generator_url: str = SEARCH_EXPR_URL) -> dict[str, Any]:
    return {
        "receiver": "incidentbot",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"{labels['alertname']} firing"},
                "startsAt": "2026-11-22T16:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": generator_url,
                "fingerprint": "f" * 16,
            }
        ],
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{labels["alertname"]}"}}',
        "truncatedAlerts": 0,
    }


async def open_incident(env: Env, bot: BotServer, labels: dict[str, str] | None = None) -> Incident:
    status, _ = await post_alert(env.http, bot, alert_body(labels or TEST_ALERT))
    assert status == 200
    channel = await env.slack.wait_for(lambda s: s.find_channel("inc-"))
    await env.slack.wait_for(lambda s: s.messages(channel.id))
    incident = await bot.parts.store.incident_by_channel(channel.id)
    assert incident is not None
    return incident


def store(bot: BotServer) -> RemediationStore:
    return bot.parts.remediation_store


async def propose_runs(
    bot: BotServer,
    incident: Incident,
    labels: dict[str, str],
    playbook: Playbook,
    *,
    generator_url: str = "",
) -> list[ActionRun]:
    """The playbook's proposals for one alert (as enrichment makes them), without the notes."""
    runs, _notes = await bot.parts.flows.proposer.propose_playbook_remediations(
        incident, labels, playbook, generator_url=generator_url
    )
    return runs


def blocks_text(env: Env, channel_id: str, ts: str) -> str:
    msg = env.slack.channels[channel_id].message(ts)
    return json.dumps(msg.blocks, ensure_ascii=False) if msg is not None and msg.blocks else ""


async def wait_message(env: Env, run: ActionRun, *needles: str, timeout: float = 15) -> str:
    """Wait until the proposal message shows every needle; returns its blocks as JSON text."""
    assert run.channel_id is not None and run.message_ts is not None

    def shows(s: SlackSandbox) -> str | None:
        text = blocks_text(env, run.channel_id or "", run.message_ts or "")
        return text if all(n in text for n in needles) else None

    return await env.slack.wait_for(shows, timeout=timeout)


async def wait_thread(env: Env, run: ActionRun, needle: str, timeout: float = 15) -> str:
    assert run.channel_id is not None and run.message_ts is not None

    def found(s: SlackSandbox) -> str | None:
        for m in s.thread(run.channel_id or "", run.message_ts or ""):
            if needle in m.text:
                return m.text
        return None

    return await env.slack.wait_for(found, timeout=timeout)


async def wait_response(env: Env, user: str, needle: str, timeout: float = 10) -> str:
    def found(s: SlackSandbox) -> str | None:
        return next((r.text for r in s.responses if r.user_id == user and needle in r.text), None)

    return await env.slack.wait_for(found, timeout=timeout)


async def posted(bot: BotServer, run: ActionRun | None) -> ActionRun:
    """The run once its proposal message is in Slack."""
    assert run is not None
    current = await store(bot).get(run.id)
    assert current is not None and current.message_ts is not None, "propose() posts the message"
    return current


async def propose_scale(
    bot: BotServer,
    incident: Incident,
    replicas: int = 9,
    *,
    by: str | None = None,
    namespace: str = "api",
    deployment: str = "search-api",
) -> ActionRun:
    """Propose a scale; `by` None is a proposal by the bot (as from a playbook)."""
    params = ScaleParams(namespace=namespace, deployment=deployment, replicas=replicas)
    run = await bot.parts.flows.proposer.propose(incident, ActionName.SCALE, params, Request(requested_by=by))
    return await posted(bot, run)


async def raw_click(
    env: Env, bot: BotServer, action_id: str, run: ActionRun, user: str, value: str | None = None
) -> int:
    """A signed block_actions request for `run`'s message as Slack sends it, also for a message
    whose buttons are gone meanwhile (a stale client, a retried delivery, a forged value)."""
    slack = env.slack
    body = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": slack.team_id},
        "api_app_id": slack.app_id,
        "token": "sandbox-verification-token",
        "container": {
            "type": "message",
            "message_ts": run.message_ts,
            "channel_id": run.channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": slack.issue_trigger_id(user),
        "team": {"id": slack.team_id, "domain": slack.team_domain},
        "channel": {"id": run.channel_id, "name": "inc"},
        "response_url": slack.new_response_url(
            "block_actions", user_id=user, channel_id=run.channel_id, message_ts=run.message_ts
        ),
        "actions": [
            {
                "action_id": action_id,
                "block_id": f"run-{run.id}",
                "value": run.token if value is None else value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    resp = await env.driver(bot).post(
        urlencode({"payload": json.dumps(body)}).encode(), "application/x-www-form-urlencoded"
    )
    return resp.status


async def undo_of(bot: BotServer, incident: Incident, run: ActionRun) -> ActionRun | None:
    return next((r for r in await store(bot).for_incident(incident.id) if r.undo_of == run.id), None)


def replicas(kube: KubeSandbox, namespace: str, name: str) -> int:
    """A deployment's `spec.replicas` as the sandbox cluster holds it now."""
    dep = kube.get("deployments", namespace, name)
    assert dep is not None
    count: int = dep["spec"]["replicas"]
    return count


def mutations(kube: KubeSandbox, path: str, method: str = "PATCH") -> list[Any]:
    """Requests that change the cluster (dry runs left out)."""
    return [r for r in kube.requests_for(method, path) if r.param("dryRun") is None]


async def audit_events(bot: BotServer, run_id: int) -> list[AuditEvent]:
    return [e.event for e in await store(bot).audit_entries(run_id=run_id)]


# --------------------------------------------------------------------------- the happy path


async def test_propose_approve_execute_once_and_verify_without_prometheus(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        run = await propose_scale(bot, incident, 9, by="U0ALICE")
        text = await wait_message(env, run, "Remediation proposed", "replicas 6 → 9", "approve_action")
        assert "server-side dry run passed" in text
        assert "context `sandbox` (KUBECONFIG)" in text
        assert "<@U0ALICE>" in text and "<@U0BOB>" in text and "0 of 1" in text
        assert run.token in text and f'"value": "{run.id}"' not in text
        # The dry run reached the apiserver with dryRun=All and changed nothing.
        assert any(r.param("dryRun") == "All" for r in env.kube.requests_for("PATCH", "/scale"))
        assert replicas(env.kube, "api", "search-api") == 6

        resp = await env.driver(bot).click(
            "approve_action", user_id="U0BOB", channel_id=run.channel_id, message_ts=run.message_ts
        )
        assert resp.status == 200
        await env.kube.wait_for(lambda: len(mutations(env.kube, "/deployments/search-api/scale")) == 1)
        await wait_response(env, "U0BOB", "all approvals are in")
        await wait_thread(env, run, "replicas 6 → 9")
        note = await wait_thread(env, run, "Verification")
        assert "successfully rolled out" in note and "Prometheus is not configured" in note
        final = await wait_message(env, run, "Remediation succeeded", "Verification")
        assert "approve_action" not in final and "reject_action" not in final
        assert "1 of 1: <@U0BOB>" in final

        assert replicas(env.kube, "api", "search-api") == 9
        assert len(mutations(env.kube, "/deployments/search-api/scale")) == 1
        stored = await store(bot).get(run.id)
        assert stored is not None and stored.status is RunStatus.SUCCEEDED
        assert stored.requested_by == "U0ALICE" and stored.approvers == ("U0BOB",)
        assert stored.started_at is not None and stored.finished_at is not None
        assert await audit_events(bot, run.id) == [
            AuditEvent.REQUESTED,
            AuditEvent.APPROVED,
            AuditEvent.CLAIMED,
            AuditEvent.SUCCEEDED,
            AuditEvent.VERIFIED,
        ]
        entries = await store(bot).audit_entries(run_id=run.id)
        requested, succeeded = entries[0], entries[3]
        assert requested.actor == "U0ALICE" and requested.details["params"]["replicas"] == 9
        assert "replicas 6 → 9" in json.dumps(requested.details["preview"], ensure_ascii=False)
        assert succeeded.details["approved_by"] == ["U0BOB"] and succeeded.details["duration_ms"] >= 0
        kinds = [e.kind for e in await bot.parts.store.timeline(incident.id)]
        for kind in ("requested", "approved", "claimed", "succeeded", "verified"):
            assert f"remediation_{kind}" in kinds
        exposition = generate_latest(bot.parts.metrics.registry).decode()
        assert 'incidentbot_remediations_total{action="scale",result="succeeded"} 1.0' in exposition
        assert "incidentbot_approval_wait_seconds_count 1.0" in exposition
        # The audit log is append-only.
        for statement in ("UPDATE audit_log SET actor = 'U0MALLORY'", "DELETE FROM audit_log"):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await bot.parts.store.pool.execute(statement)


async def test_second_approver_required_and_requester_cannot_approve_own(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        params = ExecParams(
            namespace="skillquest",
            pod="postgres-0",
            template="pg_terminate_long_running",
            args={"minutes": "5"},
        )
        run = await posted(
            bot,
            await bot.parts.flows.proposer.propose(
                incident, ActionName.EXEC, params, Request(requested_by="U0ALICE")
            ),
        )
        await wait_message(env, run, "0 of 2", "2 approval(s), not the requester")
        driver = env.driver(bot)

        def exec_requests() -> list[Any]:
            return env.kube.requests_for("GET", "/pods/postgres-0/exec")

        await driver.click(
            "approve_action", user_id="U0ALICE", channel_id=run.channel_id, message_ts=run.message_ts
        )
        refused = await wait_response(env, "U0ALICE", "requester")
        assert "does not let the requester approve" in refused
        await driver.click(
            "approve_action", user_id="U0BOB", channel_id=run.channel_id, message_ts=run.message_ts
        )
        assert "1 of 2" in await wait_response(env, "U0BOB", "Approval recorded")
        await wait_message(env, run, "1 of 2: <@U0BOB>")
        await driver.click(
            "approve_action", user_id="U0BOB", channel_id=run.channel_id, message_ts=run.message_ts
        )
        await wait_response(env, "U0BOB", "already approved")
        assert exec_requests() == []  # one approval of two: nothing ran

        await driver.click(
            "approve_action", user_id="U0DAVE", channel_id=run.channel_id, message_ts=run.message_ts
        )
        await env.kube.wait_for(lambda: len(exec_requests()) == 1)
        request = exec_requests()[0]
        expected = bot.parts.playbooks.policy.exec_templates["pg_terminate_long_running"].render(
            {"minutes": "5"}
        )
        assert request.query["command"] == expected  # an argv from the allow-listed template, no shell
        await wait_thread(env, run, "exit code 0")
        final = await wait_message(env, run, "Remediation succeeded", "2 of 2: <@U0BOB>, <@U0DAVE>")
        assert "pg_terminate_backend" in final  # the command's output
        events = await audit_events(bot, run.id)
        assert events.count(AuditEvent.REFUSED) == 2  # alice's own approval, bob's second click
        assert events.count(AuditEvent.APPROVED) == 2 and events.count(AuditEvent.CLAIMED) == 1


async def test_outsider_refused_and_usergroup_member_approves(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        params = RolloutRestartParams(namespace="skillquest", deployment="skillquest-api")
        run = await posted(
            bot,
            await bot.parts.flows.proposer.propose(
                incident, ActionName.ROLLOUT_RESTART, params, Request(requested_by="U0BOB")
            ),
        )
        text = await wait_message(env, run, "@sre-oncall")
        assert "revision 2 → new rollout" in text
        driver = env.driver(bot)
        await driver.click(
            "approve_action", user_id="U0CAROL", channel_id=run.channel_id, message_ts=run.message_ts
        )
        refused = await wait_response(env, "U0CAROL", "may not approve")
        assert "`oncall`" in refused
        # U0DAVE is in role sre, which may not approve restarts.
        await driver.click(
            "approve_action", user_id="U0DAVE", channel_id=run.channel_id, message_ts=run.message_ts
        )
        await wait_response(env, "U0DAVE", "may not approve")
        # U0ERIN holds `oncall` only through the user group @sre-oncall (usergroups.users.list).
        await driver.click(
            "approve_action", user_id="U0ERIN", channel_id=run.channel_id, message_ts=run.message_ts
        )
        await wait_response(env, "U0ERIN", "all approvals are in")
        await env.kube.wait_for(lambda: len(mutations(env.kube, "/deployments/skillquest-api")) == 1)
        assert env.slack.calls_to("usergroups.users.list")
        await wait_thread(env, run, "Verification")
        stored = await store(bot).get(run.id)
        assert stored is not None and stored.status is RunStatus.SUCCEEDED
        assert stored.approvers == ("U0ERIN",)


async def test_reject_by_approver_and_refused_for_others(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        run = await propose_scale(bot, incident, 8, by="U0ALICE")
        driver = env.driver(bot)
        await driver.click(
            "reject_action", user_id="U0CAROL", channel_id=run.channel_id, message_ts=run.message_ts
        )
        await wait_response(env, "U0CAROL", "may not reject")
        await driver.click(
            "reject_action", user_id="U0BOB", channel_id=run.channel_id, message_ts=run.message_ts
        )
        await wait_response(env, "U0BOB", "Rejected")
        text = await wait_message(env, run, "Remediation rejected")
        assert "approve_action" not in text
        assert await raw_click(env, bot, "approve_action", run, "U0DAVE") == 200  # a stale message
        await wait_response(env, "U0DAVE", "rejected by <@U0BOB>")
        assert mutations(env.kube, "/scale") == []


# --------------------------------------------------------------------------- refusals


async def test_expired_proposals_are_refused(env: Env) -> None:
    clock = Clock()
    async with running(env.settings(), clock=clock) as bot:
        incident = await open_incident(env, bot)
        first = await propose_scale(bot, incident, 7)
        second = await propose_scale(bot, incident, 8)
        clock.advance(timedelta(minutes=16))
        assert await raw_click(env, bot, "approve_action", first, "U0BOB") == 200
        assert "expired" in await wait_response(env, "U0BOB", "expired")
        await wait_message(env, first, "Remediation proposal expired")
        # The sweep expires the other one and updates its message.
        await bot.parts.executor.sweep()
        text = await wait_message(env, second, "Remediation proposal expired")
        assert "approve_action" not in text
        assert mutations(env.kube, "/scale") == []
        for run in (first, second):
            stored = await store(bot).get(run.id)
            assert stored is not None and stored.status is RunStatus.EXPIRED
            assert AuditEvent.EXPIRED in await audit_events(bot, run.id)


async def test_forged_button_payloads_are_refused(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        run = await propose_scale(bot, incident, 9)
        driver = env.driver(bot)
        forged_values = [
            "0123456789abcdef",  # well-formed, unknown
            str(run.id),  # the database id is not a token
            "' OR 1=1; --",
            run.token.upper(),
            "",
        ]
        for value in forged_values:
            resp = await driver.click(
                "approve_action",
                user_id="U0BOB",
                channel_id=run.channel_id,
                message_ts=run.message_ts,
                value=value,
            )
            assert resp.status == 200
        assert await raw_click(env, bot, "reject_action", run, "U0BOB", value="../../etc/passwd") == 200
        await env.slack.wait_for(
            lambda s: len([r for r in s.responses if "not valid" in r.text]) == len(forged_values) + 1
        )
        # A payload signed with the wrong secret never reaches a handler.
        forged = SlackDriver(env.slack, bot_url(bot) + "/slack/events", "not-the-secret", env.http)
        resp = await forged.click(
            "approve_action", user_id="U0BOB", channel_id=run.channel_id, message_ts=run.message_ts
        )
        assert resp.status == 401
        stored = await store(bot).get(run.id)
        assert stored is not None and stored.status is RunStatus.PROPOSED and stored.approvals == ()
        assert mutations(env.kube, "/scale") == []
        refused = [e for e in await store(bot).audit_entries() if e.event is AuditEvent.REFUSED]
        assert len(refused) == len(forged_values) + 1 and all(e.run_id is None for e in refused)


async def test_hostile_label_values_are_not_proposed(env: Env) -> None:
    async with running(env.settings()) as bot:
        labels = {"alertname": "TestDeploymentBroken", "namespace": "api", "deployment": "x; rm -rf /"}
        incident = await open_incident(env, bot, labels)
        playbook = bot.parts.playbooks.by_name("test-restart-from-labels")
        assert playbook is not None
        runs = await propose_runs(bot, incident, labels, playbook)
        assert runs == []
        assert incident.channel_id is not None
        note = await env.slack.wait_for(
            lambda s: next(
                (m.text for m in s.messages(incident.channel_id or "") if "not proposed" in m.text), None
            )
        )
        assert note
        blocks = json.dumps([m.blocks for m in env.slack.messages(incident.channel_id)], ensure_ascii=False)
        assert "not proposed" in blocks and "deployment" in blocks

        system = {"alertname": "TestDeploymentBroken", "namespace": "kube-system", "deployment": "coredns"}
        runs, notes = await bot.parts.flows.proposer.propose_playbook_remediations(incident, system, playbook)
        assert runs == [] and len(notes) == 1
        assert "kube-system" in notes[0] and "never allows" in notes[0]

        # The same through /incident run.
        for args, expected in (
            (["rollout_restart", "kube-system/coredns"], "never allows"),
            (["rollout_restart", "api/x;rm -rf /"], "Invalid `deployment`"),
            (["scale", "api/search-api", "replicas=9;reboot"], "Invalid `replicas`"),
        ):
            with pytest.raises(UserError, match=expected):
                await commands_remediation.run_subcommand(
                    bot.parts.flows, "U0ALICE", incident.channel_id, args
                )
        assert await store(bot).for_incident(incident.id) == []
        assert mutations(env.kube, "/deployments") == []


async def test_policy_bounds_namespace_and_requester_refused_at_proposal(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        assert incident.channel_id is not None
        run = commands_remediation.run_subcommand
        with pytest.raises(UserError, match="above the policy maximum of 20"):
            await run(
                bot.parts.flows, "U0ALICE", incident.channel_id, ["scale", "api/search-api", "replicas=25"]
            )
        with pytest.raises(UserError, match="exceeds the policy step of 6"):
            await run(
                bot.parts.flows, "U0ALICE", incident.channel_id, ["scale", "api/search-api", "replicas=13"]
            )
        with pytest.raises(UserError, match="does not allow `scale` in namespace `monitoring`"):
            await run(
                bot.parts.flows, "U0ALICE", incident.channel_id, ["scale", "monitoring/grafana", "replicas=2"]
            )
        with pytest.raises(UserError, match="You may not request `scale`"):
            await run(
                bot.parts.flows, "U0CAROL", incident.channel_id, ["scale", "api/search-api", "replicas=9"]
            )
        with pytest.raises(UserError, match="not allow-listed"):
            await run(
                bot.parts.flows,
                "U0ALICE",
                incident.channel_id,
                ["exec", "skillquest/postgres-0", "template=rm_rf"],
            )
        with pytest.raises(UserError, match="does not match"):
            await run(
                bot.parts.flows,
                "U0ALICE",
                incident.channel_id,
                ["exec", "skillquest/postgres-0", "template=pg_terminate_long_running", "minutes=5;reboot"],
            )
        with pytest.raises(UserError, match="incident channel"):
            await run(bot.parts.flows, "U0ALICE", "C0GENERAL", ["scale", "api/search-api", "replicas=9"])
        # A usergroup member may request (role oncall through @sre-oncall).
        reply = await run(
            bot.parts.flows, "U0ERIN", incident.channel_id, ["scale", "api/search-api", "replicas=9"]
        )
        assert "Proposed" in reply
        assert mutations(env.kube, "/scale") == []


async def test_cooldown_per_target_refused(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        first = await propose_scale(bot, incident, 9)
        second = await propose_scale(bot, incident, 8)  # proposed before the first ran
        driver = env.driver(bot)
        await driver.click(
            "approve_action", user_id="U0BOB", channel_id=first.channel_id, message_ts=first.message_ts
        )
        await wait_message(env, first, "Remediation succeeded")
        # A new proposal on the same target within the cooldown is refused...
        with pytest.raises(UserError, match="cooldown is 10 min"):
            await propose_scale(bot, incident, 10)
        # ...and so is executing one proposed before.
        await driver.click(
            "approve_action", user_id="U0BOB", channel_id=second.channel_id, message_ts=second.message_ts
        )
        note = await wait_thread(env, second, "Not executed")
        assert f"changed by run {first.id}" in note and "cooldown is 10 min" in note
        await wait_message(env, second, "Remediation not executed")
        assert len(mutations(env.kube, "/deployments/search-api/scale")) == 1
        stored = await store(bot).get(second.id)
        assert stored is not None and stored.status is RunStatus.CANCELLED
        # Another target is not affected.
        other = await propose_scale(bot, incident, 3, namespace="skillquest", deployment="skillquest-worker")
        assert other.status is RunStatus.PROPOSED


async def test_kill_switch_refuses_execution_after_approval(env: Env) -> None:
    async with running(env.settings(kill_switch=True)) as bot:
        incident = await open_incident(env, bot)
        run = await propose_scale(bot, incident, 9)
        await wait_message(env, run, "kill switch is on")
        await env.driver(bot).click(
            "approve_action", user_id="U0BOB", channel_id=run.channel_id, message_ts=run.message_ts
        )
        note = await wait_thread(env, run, "Not executed")
        assert "kill switch" in note
        await wait_message(env, run, "Remediation not executed")
        assert mutations(env.kube, "/scale") == []
        assert replicas(env.kube, "api", "search-api") == 6
        events = await audit_events(bot, run.id)
        assert events[-1] is AuditEvent.REFUSED and AuditEvent.SUCCEEDED not in events


async def test_target_changed_between_preview_and_execute_is_refused(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        run = await propose_scale(bot, incident, 9)

        def edit(dep: dict[str, Any]) -> None:
            dep["spec"]["template"]["spec"]["containers"][0]["image"] = (
                "registry.skillforge.dev/search-api:3.9.0"
            )

        env.kube.modify("deployments", "api", "search-api", edit)
        await env.driver(bot).click(
            "approve_action", user_id="U0BOB", channel_id=run.channel_id, message_ts=run.message_ts
        )
        note = await wait_thread(env, run, "Not executed")
        assert "changed since the preview" in note
        await wait_message(env, run, "Remediation not executed", "changed since the preview")
        assert mutations(env.kube, "/scale") == []


async def test_forbidden_request_is_reported_plainly_in_the_thread(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        run = await propose_scale(bot, incident, 9)
        env.kube.deny("patch", "deployments/scale")  # RBAC changed after the preview
        await env.driver(bot).click(
            "approve_action", user_id="U0BOB", channel_id=run.channel_id, message_ts=run.message_ts
        )
        note = await wait_thread(env, run, "failed")
        assert "403" in note
        assert 'cannot patch resource "deployments/scale" in API group "apps"' in note
        await wait_message(env, run, "Remediation failed", "403")
        stored = await store(bot).get(run.id)
        assert stored is not None and stored.status is RunStatus.FAILED
        # A proposal whose dry run is already forbidden offers no approve button.
        denied = await propose_scale(bot, incident, 3, namespace="skillquest", deployment="skillquest-worker")
        text = await wait_message(env, denied, "forbidden")
        assert "approve_action" not in text and "reject_action" in text


async def test_without_a_cluster_nothing_mutates(env: Env) -> None:
    settings = env.settings()
    async with running(settings.model_copy(update={"kubeconfig": None})) as bot:
        assert bot.parts.clusters.client(None) is None
        incident = await open_incident(env, bot)
        run = await propose_scale(bot, incident, 9)
        text = await wait_message(env, run, "cluster is not configured")
        assert "approve_action" not in text and "reject_action" in text
        assert await raw_click(env, bot, "approve_action", run, "U0BOB") == 200
        assert "dry run did not pass" in await wait_response(env, "U0BOB", "dry run")
        assert env.kube.requests == []
        stored = await store(bot).get(run.id)
        assert stored is not None and stored.status is RunStatus.PROPOSED and stored.approvals == ()


# --------------------------------------------------------------------------- exactly once


async def test_double_click_and_two_bot_instances_execute_once(env: Env) -> None:
    async with (
        running(env.settings(replica_name="bot-a")) as bot_a,
        running(env.settings(replica_name="bot-b")) as bot_b,
    ):
        incident = await open_incident(env, bot_a)
        run = await propose_scale(bot_a, incident, 9)
        # A double click, delivered to both replicas, twice.
        clicks = [raw_click(env, bot, "approve_action", run, "U0BOB") for bot in (bot_a, bot_b, bot_a, bot_b)]
        assert await asyncio.gather(*clicks) == [200] * 4
        await wait_message(env, run, "Remediation succeeded")
        await env.slack.wait_for(lambda s: len([r for r in s.responses if r.user_id == "U0BOB"]) == 4)
        assert len(mutations(env.kube, "/deployments/search-api/scale")) == 1
        events = await audit_events(bot_a, run.id)
        assert events.count(AuditEvent.CLAIMED) == 1 and events.count(AuditEvent.SUCCEEDED) == 1
        assert len([r for r in env.slack.responses if "all approvals are in" in r.text]) == 1


async def test_fifty_concurrent_approvals_execute_once(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        run = await propose_scale(bot, incident, 9)
        users = ["U0ALICE", "U0BOB", "U0DAVE"]
        clicks = [raw_click(env, bot, "approve_action", run, users[i % 3]) for i in range(50)]
        assert await asyncio.gather(*clicks) == [200] * 50
        await wait_message(env, run, "Remediation succeeded")
        await env.slack.wait_for(lambda s: len(s.responses) >= 50, timeout=30)
        assert len(mutations(env.kube, "/deployments/search-api/scale")) == 1
        stored = await store(bot).get(run.id)
        assert stored is not None and len(stored.approvals) == 1
        events = await audit_events(bot, run.id)
        assert events.count(AuditEvent.APPROVED) == 1 and events.count(AuditEvent.CLAIMED) == 1


# --------------------------------------------------------------------------- verification


@dataclass
class LatencyExporter:
    """`search_latency_p95`: 0.36 s until search-api has 9 ready replicas, then 0.30 s."""

    target: str = ""
    kube: KubeSandbox | None = None
    scrapes: int = 0
    values: list[float] = field(default_factory=list)
    scraped: asyncio.Event = field(default_factory=asyncio.Event)

    def value(self) -> float:
        dep = self.kube.get("deployments", "api", "search-api") if self.kube is not None else None
        ready = int(((dep or {}).get("status") or {}).get("readyReplicas") or 0)
        return 0.30 if ready >= 9 else 0.36

    async def metrics(self, _request: web.Request) -> web.Response:
        self.scrapes += 1
        value = self.value()
        self.values.append(value)
        body = (
            "# HELP search_latency_p95 Search P95 latency (seconds).\n# TYPE search_latency_p95 gauge\n"
            f'search_latency_p95{{service="search-api"}} {value}\n'
        )
        self.scraped.set()
        self.scraped = asyncio.Event()
        return web.Response(text=body, content_type="text/plain", charset="utf-8")

    async def next_scrape(self) -> None:
        await asyncio.wait_for(self.scraped.wait(), timeout=10)


@pytest.fixture(scope="module")
async def exporter() -> AsyncIterator[LatencyExporter]:
    state = LatencyExporter()
    app = web.Application()
    app.router.add_get("/metrics", state.metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.target = f"127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def prometheus(
    exporter: LatencyExporter, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    server = await asyncio.to_thread(
        PrometheusServer.start, tmp_path_factory.mktemp("prometheus"), [exporter.target], "1s"
    )
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)


async def wait_scraped(exporter: LatencyExporter, bot: BotServer, value: float) -> None:
    """Until Prometheus answers `search_latency_p95` with `value` (re-asked after each scrape)."""
    source = bot.parts.prometheus.default
    assert source is not None
    for _ in range(30):
        samples = await source.query_instant("search_latency_p95")
        if samples and samples[0].value == value:
            return
        await exporter.next_scrape()
    pytest.fail(f"Prometheus never answered {value}; the exporter served {exporter.values[-3:]}")


async def test_verification_recovered_with_prometheus_runbook_checks(
    env: Env, exporter: LatencyExporter, prometheus: str
) -> None:
    exporter.kube = env.kube
    async with running(env.settings(prometheus_url=prometheus, verify_seconds=30)) as bot:
        await wait_scraped(exporter, bot, 0.36)
        incident = await open_incident(env, bot, SEARCH_ALERT)
        playbook = bot.parts.playbooks.match(SEARCH_ALERT)
        assert playbook is not None and playbook.name == "skillforge-search-latency"
        await propose_runs(bot, incident, SEARCH_ALERT, playbook, generator_url=SEARCH_EXPR_URL)
        runs = await store(bot).for_incident(incident.id)
        scale = next(r for r in runs if r.action is ActionName.SCALE)
        assert {r.action for r in runs} == {ActionName.SCALE, ActionName.CREATE_JOB_FROM_CRONJOB}
        assert scale.playbook == "skillforge-search-latency" and scale.requested_by is None
        scale = await posted(bot, scale)
        # Proposing again (enrichment retried, a second replica) makes no duplicates.
        again = await propose_runs(bot, incident, SEARCH_ALERT, playbook)
        assert again == []

        await env.driver(bot).click(
            "approve_action", user_id="U0DAVE", channel_id=scale.channel_id, message_ts=scale.message_ts
        )
        note = await wait_thread(env, scale, "Verification", timeout=45)
        assert "recovered: " in note and "not recovered" not in note
        assert "search P95 under 340 ms" in note
        await wait_message(env, scale, "Remediation succeeded", "recovered")
        # No undo for a change that helped.
        assert await undo_of(bot, incident, scale) is None


async def test_verification_not_recovered_offers_undo_and_undo_skips_the_cooldown(
    env: Env, exporter: LatencyExporter, prometheus: str
) -> None:
    exporter.kube = env.kube
    async with running(env.settings(prometheus_url=prometheus, verify_seconds=3)) as bot:
        await wait_scraped(exporter, bot, 0.36)
        incident = await open_incident(env, bot, SEARCH_ALERT)
        assert incident.channel_id is not None
        await env.driver(bot).slash_command(
            "/incident",
            "run scale api/search-api replicas=8",
            user_id="U0ALICE",
            channel_id=incident.channel_id,
        )
        await wait_response(env, "U0ALICE", "Proposed")
        mine = [r for r in await store(bot).for_incident(incident.id) if r.requested_by == "U0ALICE"]
        assert len(mine) == 1
        run = await posted(bot, mine[0])
        await env.driver(bot).click(
            "approve_action", user_id="U0BOB", channel_id=run.channel_id, message_ts=run.message_ts
        )
        note = await wait_thread(env, run, "Verification", timeout=30)
        assert "not recovered" in note and "0.36 is not &lt; 0.34" in note
        await wait_thread(env, run, "Proposed the undo")
        undo = await posted(bot, await undo_of(bot, incident, run))
        assert undo.action is ActionName.SCALE
        assert undo.params["replicas"] == 6 and undo.requested_by == "U0ALICE"
        await wait_message(env, undo, "Undo: Scale deployment api/search-api to 8 replicas", "replicas 8 → 6")
        # Same approval rules: the original requester may not approve the undo alone.
        await env.driver(bot).click(
            "approve_action", user_id="U0ALICE", channel_id=undo.channel_id, message_ts=undo.message_ts
        )
        await wait_response(env, "U0ALICE", "requester")
        await env.driver(bot).click(
            "approve_action", user_id="U0DAVE", channel_id=undo.channel_id, message_ts=undo.message_ts
        )
        await wait_message(env, undo, "Remediation succeeded")  # the cooldown does not block the undo
        assert replicas(env.kube, "api", "search-api") == 6
        await wait_thread(env, undo, "Verification", timeout=30)


async def test_stalled_rollout_without_prometheus_offers_undo(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        env.kube.fail_rollout("skillquest", "skillquest-api")
        params = RolloutRestartParams(namespace="skillquest", deployment="skillquest-api")
        run = await posted(
            bot,
            await bot.parts.flows.proposer.propose(
                incident, ActionName.ROLLOUT_RESTART, params, Request(requested_by="U0ALICE")
            ),
        )
        # The requester may approve their own restart (requester_may_approve), as an on-call member.
        await env.driver(bot).click(
            "approve_action", user_id="U0ALICE", channel_id=run.channel_id, message_ts=run.message_ts
        )
        note = await wait_thread(env, run, "Verification", timeout=30)
        assert "not recovered" in note and "stalled" in note and "progress deadline" in note
        await wait_thread(env, run, "Proposed the undo")
        undo = await posted(bot, await undo_of(bot, incident, run))
        assert undo.action is ActionName.ROLLOUT_UNDO
        text = await wait_message(
            env, undo, "Undo: Rollout restart deployment skillquest/skillquest-api", "0 of 2"
        )
        assert "approve_action" in text


# --------------------------------------------------------------------------- /incident run parsing


def test_run_arguments_parse_into_the_params_models() -> None:
    parse = commands_remediation.parse_run_args
    action, params = parse(["scale", "api/search-api", "replicas=9"])
    assert action is ActionName.SCALE and params == ScaleParams(
        namespace="api", deployment="search-api", replicas=9
    )
    action, params = parse(["rollout-restart", "skillquest/skillquest-api"])
    assert action is ActionName.ROLLOUT_RESTART
    action, params = parse(["cordon", "worker-1"])
    assert params.model_dump() == {"node": "worker-1"}
    action, params = parse(["set_env", "api/search-api", "CACHE_TTL_SECONDS=60", "container=search-api"])
    assert params.model_dump()["env"] == {"CACHE_TTL_SECONDS": "60"}
    action, params = parse(["set_resources", "api/search-api", "limits.memory=2Gi", "requests.cpu=500m"])
    assert params.model_dump()["limits"] == {"cpu": None, "memory": "2Gi"}
    action, params = parse(
        ["exec", "skillquest/postgres-0", "template=pg_terminate_long_running", "minutes=5"]
    )
    assert params.model_dump()["args"] == {"minutes": "5"}
    action, params = parse(["drain", "worker-2", "timeout_seconds=60"])
    assert params.model_dump()["timeout_seconds"] == 60


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Usage: `/incident run"),
        (["scale"], "Usage: `/incident run"),
        (["frobnicate", "a/b"], "Unknown action `frobnicate`"),
        (["scale", "search-api", "replicas=9"], "needs `<namespace>/<deployment>`"),
        (["scale", "api/search-api"], "Invalid `replicas`: missing"),
        (["scale", "api/search-api", "replicas=many"], "Invalid `replicas`"),
        (["scale", "api/search-api", "replicas=-1"], "Invalid `replicas`"),
        (["scale", "api/search-api", "replicas"], "is not `key=value`"),
        (["scale", "api/search-api", "replicas=2", "force=true"], "Invalid `force`: unknown parameter"),
        (["scale", "api/search-api", "namespace=kube-system"], "comes from the target"),
        (["scale", "API/Search", "replicas=2"], "Invalid `namespace`"),
        (["cordon", "kube-system/worker-1"], "takes a node name"),
        (["set_env", "api/x", "1BAD=v"], "Invalid `env.1BAD`"),
    ],
)
def test_run_arguments_refused_with_usage_naming_the_field(args: list[str], message: str) -> None:
    with pytest.raises(UserError) as caught:
        commands_remediation.parse_run_args(args)
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)


async def test_usergroup_resolver_caches_in_redis(env: Env) -> None:
    async with running(env.settings()) as bot:
        resolver = UsergroupResolver(bot.parts.chat, bot.parts.coord)
        before = len(env.slack.calls_to("usergroups.users.list"))
        results = await asyncio.gather(
            *(resolver.groups_of("U0ERIN", ["sre-oncall", "no-such-group"]) for _ in range(10))
        )
        assert all(r.groups == frozenset({"sre-oncall"}) for r in results)
        assert all("no-such-group" in " ".join(r.problems) for r in results)
        assert len(env.slack.calls_to("usergroups.users.list")) == before + 1  # one call for ten checks
        other = UsergroupResolver(bot.parts.chat, bot.parts.coord)  # another replica: Redis cache
        assert (await other.groups_of("U0CAROL", ["sre-oncall"])).groups == frozenset()
        assert len(env.slack.calls_to("usergroups.users.list")) == before + 1
