"""The remediation policy at the trust boundary, through the real edge (signed Slack requests,
bearer-authenticated Alertmanager posts) against real PostgreSQL and Redis and the sandbox
Slack and Kubernetes servers:

- approvals die with their incident (resolving expires pending proposals; execution re-checks);
- one approver per required role (`approvers_all_of`, the bundled `exec` rule: a DBA and an SRE);
- drain leaves pods in namespaces the policy denies alone, and its undo (uncordon) is possible;
- targets taken from alert labels stay inside the playbook's `targets`;
- set_env never shows or stores a value (only the requester sees the diff, ephemerally);
- the kill switch flipped at runtime is seen by every replica at once, audited and announced.

The policy is the bundled one, with the sandbox's users in its roles.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import yaml

from bot.app import BotServer, build
from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR
from bot.config.settings import Settings
from bot.core.actions import ActionName
from bot.core.incident import Incident
from bot.core.runs import ActionRun, AuditEvent, RunStatus
from bot.store.remediation import RemediationStore
from sandbox.kubernetes import KubeSandbox
from sandbox.slack import SlackDriver, SlackSandbox
from tests.integration.rig import SIGNING_SECRET, bot_settings, bot_url, one_incident_per_group, post_alert

pytestmark = pytest.mark.timeout(120)

ROLES = {
    "sre": {"users": ["U0ALICE", "U0BOB", "U0DAVE"], "usergroups": []},
    "dba": {"users": ["U0CAROL"], "usergroups": []},
    "oncall": {"users": [], "usergroups": ["sre-oncall"]},  # U0ERIN only through the group
}
# An alert no playbook matches: its incident gets no playbook proposals of its own.
TEST_ALERT = {"alertname": "TestRemediationTarget", "namespace": "api", "severity": "warning"}


def write_playbooks(directory: Path, *, kill_switch: bool) -> Path:
    """The bundled playbooks and policy (approval rules, kill switch roles), with roles."""
    shutil.copytree(DEFAULT_PLAYBOOKS_DIR, directory)
    policy = yaml.safe_load((directory / "policy.yaml").read_text())
    policy["roles"] = ROLES
    policy["kill_switch"] = kill_switch
    (directory / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    # Several groups of one service here are separate incidents on purpose.
    return one_incident_per_group(directory)


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

    def settings(self, *, kill_switch: bool = False, **kw: Any) -> Settings:
        self.counter += 1
        playbooks = write_playbooks(self.tmp / f"playbooks-{self.counter}", kill_switch=kill_switch)
        return bot_settings(
            self.slack,
            self.dsn,
            self.redis_url,
            kubeconfig=str(self.kubeconfig),
            playbooks_dir=playbooks,
            remediation_verify_seconds=0.0,
            **kw,
        )

    def driver(self, bot: BotServer) -> SlackDriver:
        return SlackDriver(self.slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, self.http)


@pytest.fixture
async def kube() -> AsyncIterator[KubeSandbox]:
    # The cluster's own RBAC forbids nothing here: the bot's policy alone must keep it out of
    # kube-system.
    sb = KubeSandbox(rollout_delay=0.05, forbidden_namespaces=())
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
    slack.usergroups["S0SRE"].users.append("U0ERIN")
    return Env(
        slack, kube, http, database_dsn, redis_url, tmp_path, kube.write_kubeconfig(tmp_path / "kubeconfig")
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[BotServer]:
    server = await build(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# --------------------------------------------------------------------------- helpers


def alert_body(labels: dict[str, str], group: str) -> dict[str, Any]:
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
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": f"{abs(hash(group)):016x}"[:16],
            }
        ],
        "groupLabels": {"group": group},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{group="{group}"}}',
        "truncatedAlerts": 0,
    }


async def open_incident(
    env: Env, bot: BotServer, labels: dict[str, str] = TEST_ALERT, group: str = "one"
) -> Incident:
    """Post an alert (bearer token) and wait for its incident's channel and card."""
    before = {c.id for c in env.slack.channels_with_prefix("inc-")}
    status, _ = await post_alert(env.http, bot, alert_body(labels, group))
    assert status == 200

    def new_channel(s: SlackSandbox) -> str | None:
        fresh = [c for c in s.channels_with_prefix("inc-") if c.id not in before and s.messages(c.id)]
        return fresh[0].id if fresh else None

    channel_id = await env.slack.wait_for(new_channel)
    incident = await bot.parts.store.incident_by_channel(channel_id)
    assert incident is not None
    return incident


def store(bot: BotServer) -> RemediationStore:
    return bot.parts.remediation_store


async def command(env: Env, bot: BotServer, user: str, text: str, channel_id: str) -> str:
    """A signed `/incident` command; returns the answer the user got."""
    seen = len([r for r in env.slack.responses if r.user_id == user])
    resp = await env.driver(bot).slash_command("/incident", text, user_id=user, channel_id=channel_id)
    assert resp.status == 200

    def answered(s: SlackSandbox) -> str | None:
        mine = [r for r in s.responses if r.user_id == user]
        return mine[seen].text if len(mine) > seen else None

    return await env.slack.wait_for(answered)


async def proposed(env: Env, bot: BotServer, user: str, text: str, incident: Incident) -> ActionRun:
    """`/incident run ...` by `user` in the incident's channel: the run once its message is posted."""
    assert incident.channel_id is not None
    before = {r.id for r in await store(bot).for_incident(incident.id)}
    answer = await command(env, bot, user, text, incident.channel_id)
    assert "Proposed" in answer, answer
    [run] = [r for r in await store(bot).for_incident(incident.id) if r.id not in before]
    assert run.message_ts is not None
    return run


async def click(env: Env, bot: BotServer, action_id: str, run: ActionRun, user: str) -> str:
    """A signed block_actions request for the run's message, as Slack sends it (also once its
    buttons are gone: a stale client); returns the ephemeral answer."""
    slack = env.slack
    seen = len([r for r in slack.responses if r.user_id == user])
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
                "value": run.token,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    resp = await env.driver(bot).post(
        urlencode({"payload": json.dumps(body)}).encode(), "application/x-www-form-urlencoded"
    )
    assert resp.status == 200

    def answered(s: SlackSandbox) -> str | None:
        mine = [r for r in s.responses if r.user_id == user]
        return mine[seen].text if len(mine) > seen else None

    return await slack.wait_for(answered)


def blocks_text(env: Env, run: ActionRun) -> str:
    msg = env.slack.channels[run.channel_id or ""].message(run.message_ts or "")
    return json.dumps(msg.blocks, ensure_ascii=False) if msg is not None and msg.blocks else ""


async def wait_message(env: Env, run: ActionRun, *needles: str, timeout: float = 15) -> str:
    def shows(s: SlackSandbox) -> str | None:
        text = blocks_text(env, run)
        return text if all(n in text for n in needles) else None

    return await env.slack.wait_for(shows, timeout=timeout)


async def wait_thread(env: Env, run: ActionRun, needle: str, timeout: float = 15) -> str:
    def found(s: SlackSandbox) -> str | None:
        thread = s.thread(run.channel_id or "", run.message_ts or "")
        return next((m.text for m in thread if needle in m.text), None)

    return await env.slack.wait_for(found, timeout=timeout)


def mutations(kube: KubeSandbox, path: str, method: str | None = None) -> list[Any]:
    """Requests that change the cluster (dry runs left out)."""
    return [
        r
        for r in kube.requests_for(method, path)
        if r.method in ("POST", "PUT", "PATCH", "DELETE") and r.param("dryRun") is None
    ]


async def audit(bot: BotServer, run_id: int | None = None) -> list[Any]:
    return await store(bot).audit_entries(run_id=run_id)


def node_unschedulable(kube: KubeSandbox, name: str) -> bool:
    node = kube.get("nodes", None, name)
    assert node is not None
    return bool(node["spec"].get("unschedulable"))


async def stored(bot: BotServer, run: ActionRun) -> ActionRun:
    current = await store(bot).get(run.id)
    assert current is not None
    return current


# --------------------------------------------------------------------------- approvals die with the incident


async def test_resolving_an_incident_expires_its_pending_proposals(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        assert incident.channel_id is not None
        # Positive control: while the incident is open, an approved proposal runs.
        control = await proposed(
            env, bot, "U0ALICE", "run scale skillquest/skillquest-worker replicas=3", incident
        )
        assert "all approvals are in" in await click(env, bot, "approve_action", control, "U0BOB")
        await wait_message(env, control, "Remediation succeeded")
        assert len(mutations(env.kube, "/deployments/skillquest-worker/scale")) == 1

        pending = await proposed(env, bot, "U0ALICE", "run scale api/search-api replicas=7", incident)
        await wait_message(env, pending, "approve_action")
        # Its alert still fires: /incident resolve asks first.
        assert "Resolve anyway" in await command(
            env, bot, "U0ALICE", "resolve fixed by hand", incident.channel_id
        )
        await env.driver(bot).click("confirm_resolve", user_id="U0ALICE", channel_id=incident.channel_id)

        text = await wait_message(env, pending, "Remediation proposal expired", "was resolved")
        assert "approve_action" not in text and "reject_action" not in text
        run = await stored(bot, pending)
        assert run.status is RunStatus.EXPIRED
        assert run.error == f"because incident {incident.ref} was resolved by <@U0ALICE>"
        expired = (await audit(bot, pending.id))[-1]
        assert expired.event is AuditEvent.EXPIRED and expired.actor == "U0ALICE"
        assert "was resolved" in expired.details["reason"]
        timeline = [e.text for e in await bot.parts.store.timeline(incident.id)]
        assert any("expired because incident" in t for t in timeline)
        # A stale client clicking approve is refused, and nothing reaches the cluster.
        answer = await click(env, bot, "approve_action", pending, "U0BOB")
        assert "expired because incident" in answer
        assert mutations(env.kube, "/deployments/search-api") == []
        assert (await stored(bot, pending)).approvals == ()
        # The control is untouched by the expiry.
        assert (await stored(bot, control)).status is RunStatus.SUCCEEDED


async def test_an_approved_run_is_refused_at_execution_once_its_incident_is_resolved(env: Env) -> None:
    async with running(env.settings()) as bot:
        resolved = await open_incident(env, bot, group="resolved")
        still_open = await open_incident(env, bot, group="open")
        doomed = await proposed(env, bot, "U0ALICE", "run scale api/search-api replicas=7", resolved)
        control = await proposed(
            env, bot, "U0ALICE", "run scale skillquest/skillquest-worker replicas=3", still_open
        )
        # Approved, but the replica that recorded the approvals stopped before executing them:
        # the sweep of any replica executes approved runs nobody claimed.
        now = datetime.now(UTC)
        for run in (doomed, control):
            approved = await store(bot).approve(run.id, "U0BOB", now)
            assert approved.run.status is RunStatus.APPROVED
        assert resolved.channel_id is not None
        await command(env, bot, "U0ALICE", "resolve", resolved.channel_id)
        await env.driver(bot).click("confirm_resolve", user_id="U0ALICE", channel_id=resolved.channel_id)

        note = await wait_thread(env, doomed, "Not executed", timeout=30)
        assert f"incident {resolved.ref} was resolved after this was approved" in note
        await wait_message(env, control, "Remediation succeeded", timeout=30)
        await wait_message(env, doomed, "Remediation not executed")
        refused = await stored(bot, doomed)
        assert refused.status is RunStatus.CANCELLED and refused.started_at is not None
        now_resolved = await bot.parts.store.get_incident(resolved.id)
        assert now_resolved is not None and now_resolved.resolved_at is not None
        assert now_resolved.resolved_at < refused.started_at  # resolved first, then claimed
        assert (await audit(bot, doomed.id))[-1].event is AuditEvent.REFUSED
        assert mutations(env.kube, "/deployments/search-api") == []
        assert len(mutations(env.kube, "/deployments/skillquest-worker/scale")) == 1


# --------------------------------------------------------------------------- one approver per role


async def test_exec_needs_a_dba_and_an_sre_not_two_sres(env: Env) -> None:
    def exec_requests() -> list[Any]:
        return env.kube.requests_for("GET", "/pods/postgres-0/exec")

    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        run = await proposed(
            env,
            bot,
            "U0ERIN",
            "run exec skillquest/postgres-0 template=pg_terminate_long_running minutes=5",
            incident,
        )
        await wait_message(
            env,
            run,
            "0 of 2",
            "one each from `dba`, `sre`",
            "still needed: an approver with role `dba` and one with `sre`",
        )
        answer = await click(env, bot, "approve_action", run, "U0ALICE")
        assert "Approval recorded (1 of 2)" in answer and "with role `dba`" in answer
        await wait_message(env, run, "1 of 2: <@U0ALICE>", "still needed: an approver with role `dba`")

        # A second SRE is refused: the rule wants a DBA too.
        refused = await click(env, bot, "approve_action", run, "U0BOB")
        assert "still needs an approver with role `dba`" in refused
        assert (await stored(bot, run)).approvers == ("U0ALICE",)
        assert exec_requests() == []
        assert [e.event for e in await audit(bot, run.id)][-1] is AuditEvent.REFUSED

        # The DBA completes it.
        assert "all approvals are in" in await click(env, bot, "approve_action", run, "U0CAROL")
        await env.kube.wait_for(lambda: len(exec_requests()) == 1)
        await wait_message(env, run, "Remediation succeeded", "2 of 2: <@U0ALICE>, <@U0CAROL>")
        final = await stored(bot, run)
        assert final.approval_roles == {"U0ALICE": ("sre",), "U0CAROL": ("dba",)}


# --------------------------------------------------------------------------- a team's namespaces


async def test_a_team_narrows_who_approves_in_its_namespaces(env: Env) -> None:
    """The policy lets on-calls approve a restart; the catalog says only SREs approve in
    SkillQuest's namespace: an on-call is refused there with nothing reaching the cluster, and
    approves in a namespace whose team keeps the rule's approvers."""
    settings = env.settings()
    catalog_path = Path(settings.playbooks_dir) / "services.yaml"
    catalog = yaml.safe_load(catalog_path.read_text(encoding="utf-8"))
    catalog["teams"]["skillquest"]["approvers"] = ["sre"]
    catalog_path.write_text(yaml.safe_dump(catalog, sort_keys=False), encoding="utf-8")
    async with running(settings) as bot:
        incident = await open_incident(env, bot)
        guarded = await proposed(
            env, bot, "U0ALICE", "run rollout_restart skillquest/skillquest-worker", incident
        )
        await wait_message(env, guarded, "approve_action")
        refused = await click(env, bot, "approve_action", guarded, "U0ERIN")
        assert "You may not approve" in refused and "`sre`" in refused and "`oncall`" not in refused
        assert (await stored(bot, guarded)).approvals == ()
        assert mutations(env.kube, "/deployments/skillquest-worker") == []
        assert [e.event for e in await audit(bot, guarded.id)][-1] is AuditEvent.REFUSED

        # Positive controls: the same on-call approves in SkillForge's `api` (its team keeps the
        # rule's approvers), and an SRE approves in SkillQuest's namespace.
        elsewhere = await proposed(env, bot, "U0ALICE", "run rollout_restart api/search-api", incident)
        assert "all approvals are in" in await click(env, bot, "approve_action", elsewhere, "U0ERIN")
        await wait_message(env, elsewhere, "Remediation succeeded")
        assert "all approvals are in" in await click(env, bot, "approve_action", guarded, "U0BOB")
        await wait_message(env, guarded, "Remediation succeeded")
        assert len(mutations(env.kube, "/deployments/skillquest-worker")) == 1


# --------------------------------------------------------------------------- drain and its undo


async def test_drain_leaves_denied_namespaces_alone_and_its_undo_uncordons(env: Env) -> None:
    env.kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-dns"}},
                    "spec": {"containers": [{"name": "coredns", "image": "registry.k8s.io/coredns:v1.11.1"}]},
                },
            },
        }
    )
    await env.kube.wait_for(lambda: len(env.kube.deployment_pods("kube-system", "coredns")) == 3)
    node = next(
        n
        for n in ("worker-1", "worker-2", "worker-3")
        if any(
            p["metadata"]["namespace"] == "kube-system" and "coredns" in p["metadata"]["name"]
            for p in env.kube.pods_on_node(n)
        )
        and any(p["metadata"]["name"].startswith("search-api") for p in env.kube.pods_on_node(n))
    )
    system_pods = [
        p["metadata"]["name"]
        for p in env.kube.pods_on_node(node)
        if p["metadata"]["namespace"] == "kube-system" and "coredns" in p["metadata"]["name"]
    ]
    # search-api's budget refuses every eviction: the drain cannot complete, so its undo is offered.
    env.kube.set_pdb("api", "search-api-pdb", maxUnavailable=0)

    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        drain = await proposed(
            env, bot, "U0ALICE", f"run drain {node} timeout_seconds=10 delete_emptydir_data=true", incident
        )
        text = await wait_message(env, drain, "namespace kube-system is not allowed by the policy")
        assert f"skip kube-system/{system_pods[0]}" in text
        assert "Approval recorded (1 of 2)" in await click(env, bot, "approve_action", drain, "U0BOB")
        assert "all approvals are in" in await click(env, bot, "approve_action", drain, "U0DAVE")
        note = await wait_thread(env, drain, "did not complete", timeout=40)
        assert f"left kube-system/{system_pods[0]} running" in note

        # Nothing in kube-system was evicted; other namespaces' pods were.
        evictions = [r for r in mutations(env.kube, "/eviction", "POST")]
        assert evictions and not [r for r in evictions if "/namespaces/kube-system/" in r.path]
        assert all(env.kube.get("pods", "kube-system", name) is not None for name in system_pods)
        assert node_unschedulable(env.kube, node)

        # The undo (uncordon) is proposed under the bundled policy, and works.
        await wait_thread(env, drain, "Proposed the undo", timeout=20)
        undo = next(r for r in await store(bot).for_incident(incident.id) if r.undo_of == drain.id)
        assert undo.action is ActionName.UNCORDON and undo.approval_rule == "default"
        undo = await stored(bot, undo)
        await wait_message(env, undo, "unschedulable → schedulable", "approve_action")
        assert "all approvals are in" in await click(env, bot, "approve_action", undo, "U0BOB")
        await wait_message(env, undo, "Remediation succeeded")
        assert not node_unschedulable(env.kube, node)


async def test_uncordon_can_be_requested_under_the_bundled_policy(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        cordon = await proposed(env, bot, "U0ALICE", "run cordon worker-3", incident)
        await click(env, bot, "approve_action", cordon, "U0BOB")
        await wait_message(env, cordon, "Remediation succeeded")
        assert node_unschedulable(env.kube, "worker-3")
        uncordon = await proposed(env, bot, "U0ALICE", "run uncordon worker-3", incident)
        assert uncordon.approval_rule == "default" and uncordon.approvals_needed == 1
        await click(env, bot, "approve_action", uncordon, "U0BOB")
        await wait_message(env, uncordon, "Remediation succeeded")
        assert not node_unschedulable(env.kube, "worker-3")


# --------------------------------------------------------------------------- targets from labels


async def test_alert_labels_cannot_choose_a_target_outside_the_playbooks_targets(env: Env) -> None:
    async with running(env.settings()) as bot:
        # Another system's deployment, named by the alert's labels: not proposed, and why.
        hostile = {
            "alertname": "SkillForgeDeploymentFailed",
            "namespace": "skillquest",
            "deployment": "skillquest-api",
            "severity": "warning",
        }
        incident = await open_incident(env, bot, hostile, group="hostile")
        channel = incident.channel_id or ""
        note = await env.slack.wait_for(
            lambda s: next((m.text for m in s.messages(channel) if "not proposed" in m.text), None),
            timeout=20,
        )
        blocks = json.dumps([m.blocks for m in env.slack.messages(channel)], ensure_ascii=False)
        assert (
            "namespace `skillquest` (from alert label `namespace`) is not a target this runbook may touch"
            in blocks
        )
        assert note
        assert await store(bot).for_incident(incident.id) == []
        assert [r for r in env.kube.requests if r.method != "GET"] == []  # not even a dry run

        # Positive control: a SkillForge deployment from the same label is proposed, and says so.
        fine = {"alertname": "SkillForgeDeploymentFailed", "deployment": "search-api", "severity": "warning"}
        other = await open_incident(env, bot, fine, group="fine")

        def proposal_card(s: SlackSandbox) -> str | None:
            cards = [
                json.dumps(m.blocks or [], ensure_ascii=False) for m in s.messages(other.channel_id or "")
            ]
            return next((c for c in cards if "Remediation proposed" in c), None)

        card = await env.slack.wait_for(proposal_card, timeout=20)
        assert "target from alert label `deployment`" in card
        [run] = await store(bot).for_incident(other.id)
        assert run.action is ActionName.ROLLOUT_UNDO and run.target == "deployment api/search-api"
        assert run.target_labels == ("deployment",)


# --------------------------------------------------------------------------- set_env and secrets


def slack_everywhere_but(env: Env, requester: str) -> str:
    """Everything the workspace holds that anyone but `requester` can read: channel messages
    (with threads and earlier versions), uploaded files, in-channel answers and ephemerals."""
    parts: list[str] = []
    for channel in env.slack.channels.values():
        for msg in channel.messages:
            parts.append(json.dumps([msg.text, msg.blocks, msg.attachments, msg.edits], ensure_ascii=False))
    for f in env.slack.files.values():
        parts.append((f.data or b"").decode("utf-8", "replace"))
    for e in env.slack.ephemerals:
        if e.user != requester:
            parts.append(json.dumps([e.text, e.blocks], ensure_ascii=False))
    for r in env.slack.responses:
        if r.user_id != requester or r.response_type == "in_channel":
            parts.append(json.dumps(r.body, ensure_ascii=False))
    return "\n".join(parts)


async def database_text(bot: BotServer) -> str:
    """Every row of every table, as text."""
    pool = bot.parts.store.pool
    tables = [
        r["table_name"]
        for r in await pool.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    ]
    assert {"action_runs", "audit_log", "timeline_events"} <= set(tables)
    dumps = [await pool.fetchval(f"SELECT string_agg(t::text, E'\\n') FROM \"{t}\" t") or "" for t in tables]
    return "\n".join(dumps)


async def test_set_env_never_shows_or_stores_a_value(env: Env) -> None:
    current, new, other_new = "sk_live_CURRENT_4242", "sk_live_NEW_9999", "tok_NEW_7777"

    def with_secret(dep: dict[str, Any]) -> None:
        dep["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "STRIPE_SECRET_KEY", "value": current}
        )

    env.kube.modify("deployments", "api", "search-api", with_secret)
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        assert incident.channel_id is not None
        # Rejected: the value the cluster holds and the one asked for stay with the requester.
        answer = await command(
            env, bot, "U0ALICE", f"run set_env api/search-api STRIPE_SECRET_KEY={new}", incident.channel_id
        )
        assert "Only you see this" in answer and current in answer and new in answer
        [rejected] = await store(bot).for_incident(incident.id)
        text = await wait_message(
            env, rejected, "STRIPE_SECRET_KEY changed (values hidden)", "(value hidden)"
        )
        assert current not in text and new not in text
        assert "Rejected" in await click(env, bot, "reject_action", rejected, "U0BOB")
        await wait_message(env, rejected, "Remediation rejected")

        # Executed: another variable, set for the first time.
        run = await proposed(
            env,
            bot,
            "U0ALICE",
            f"run set_env skillquest/skillquest-api API_TOKEN={other_new} LOG_LEVEL=verbose_7f3a",
            incident,
        )
        await wait_message(env, run, "API_TOKEN unset → set (value hidden)")
        await click(env, bot, "approve_action", run, "U0BOB")
        await wait_message(env, run, "Remediation succeeded")
        await wait_thread(env, run, "Verification")
        dep = env.kube.get("deployments", "skillquest", "skillquest-api")
        assert dep is not None
        env_vars = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "API_TOKEN", "value": other_new} in env_vars

        await command(env, bot, "U0BOB", "postmortem", incident.channel_id)
        await env.slack.wait_for(
            lambda s: any(f.name.startswith("postmortem-") and f.completed for f in s.files.values())
        )
        await command(env, bot, "U0BOB", "timeline", incident.channel_id)

        visible = slack_everywhere_but(env, "U0ALICE")
        assert "API_TOKEN" in visible and "STRIPE_SECRET_KEY" in visible  # names are shown...
        stored_text = await database_text(bot)
        assert "STRIPE_SECRET_KEY" in stored_text
        for value in (current, new, other_new, "verbose_7f3a"):  # ...values never
            assert value not in visible, value
            assert value not in stored_text, value


# --------------------------------------------------------------------------- the kill switch at runtime


async def test_kill_switch_flipped_at_runtime_stops_every_replica(env: Env) -> None:
    async with (
        running(env.settings(replica_name="bot-a")) as bot_a,
        running(env.settings(replica_name="bot-b")) as bot_b,
    ):
        incident = await open_incident(env, bot_a)
        channel = incident.channel_id or ""
        notices = env.slack.incident_channel
        assert notices is not None

        def announcements(s: SlackSandbox) -> list[str]:
            return [m.text for m in s.messages(notices.id) if "kill switch" in m.text]

        # Refused without a kill_switch_roles role: nothing changes, nothing is announced.
        refused = await command(env, bot_a, "U0CAROL", "killswitch on because", channel)
        assert "may not turn the kill switch on" in refused and "`oncall`, `sre`" in refused
        assert await bot_a.parts.store.pool.fetchval("SELECT count(*) FROM kill_switch") == 0
        assert announcements(env.slack) == []
        assert "is *off*" in await command(env, bot_b, "U0CAROL", "killswitch", channel)

        pending = await proposed(env, bot_b, "U0ALICE", "run scale api/search-api replicas=7", incident)
        # On, through replica A (an on-call member through the user group)...
        assert "now *on*" in await command(env, bot_a, "U0ERIN", "killswitch on cluster upgrade", channel)
        await env.slack.wait_for(
            lambda s: any(
                "turned the remediation kill switch *on*: cluster upgrade" in t for t in announcements(s)
            )
        )
        await wait_message(env, pending, "The kill switch is on (turned on by U0ERIN")
        entry = [e for e in await audit(bot_a) if e.event is AuditEvent.KILL_SWITCH][-1]
        assert entry.actor == "U0ERIN" and entry.details["engaged"] is True
        # ...and replica B refuses to execute at once.
        await click(env, bot_b, "approve_action", pending, "U0BOB")
        note = await wait_thread(env, pending, "Not executed")
        assert "kill switch is on" in note and "cluster upgrade" in note
        assert mutations(env.kube, "/deployments/search-api") == []
        assert "is *on*" in await command(env, bot_b, "U0CAROL", "killswitch status", channel)

        # Off, through replica B; replica A executes again (positive control).
        assert "now *off*" in await command(env, bot_b, "U0ALICE", "killswitch off", channel)
        control = await proposed(
            env, bot_a, "U0ALICE", "run scale skillquest/skillquest-worker replicas=3", incident
        )
        assert "all approvals are in" in await click(env, bot_a, "approve_action", control, "U0BOB")
        await wait_message(env, control, "Remediation succeeded")
        events = [e.details["engaged"] for e in await audit(bot_b) if e.event is AuditEvent.KILL_SWITCH]
        assert events == [True, False]


async def test_policy_kill_switch_cannot_be_turned_off_at_runtime(env: Env) -> None:
    async with running(env.settings(kill_switch=True)) as bot:
        incident = await open_incident(env, bot)
        channel = incident.channel_id or ""
        answer = await command(env, bot, "U0ALICE", "killswitch off", channel)
        assert "still sets `kill_switch: true`" in answer
        run = await proposed(env, bot, "U0ALICE", "run scale api/search-api replicas=7", incident)
        await wait_message(env, run, "policy.yaml `kill_switch: true`")
        await click(env, bot, "approve_action", run, "U0BOB")
        assert "kill switch is on" in await wait_thread(env, run, "Not executed")
        assert mutations(env.kube, "/deployments/search-api") == []
