"""Several clusters, through the real edges (bearer-authenticated Alertmanager posts, signed Slack
clicks) against real PostgreSQL and Redis, the sandbox Slack and two sandbox Kubernetes
clusters, `skillforge-dev` and `skillforge-prod`, reached through two contexts of one kubeconfig:

- the same SkillForge alert proposes against the cluster its `cluster` label names, under that
  cluster's policy (prod: two approvals, dev: one), and executes there only;
- every proposal, its message and its audit entries name the cluster;
- an alert naming a cluster that is not configured gets no proposal, no diagnostics and no
  request to any cluster, and the channel says why (a known cluster next to it still works).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bot.app import BotServer
from bot.core.actions import ActionName
from bot.core.runs import ActionRun, RunStatus
from sandbox.kubernetes import KubeSandbox
from sandbox.kubernetes.app import write_kubeconfig
from sandbox.slack import SlackSandbox
from tests.integration.rig import bot_settings, post_alert, quiet, running_bot
from tests.integration.test_remediation_policy import (
    Env,
    alert_body,
    click,
    command,
    mutations,
    store,
    wait_message,
    write_playbooks,
)

pytestmark = pytest.mark.timeout(120)

CLUSTERS = {
    "label": "cluster",
    "default": "skillforge-dev",
    "clusters": {
        "skillforge-dev": {"context": "skillforge-dev"},
        "skillforge-prod": {"context": "skillforge-prod"},
    },
}
# SkillForge's API error rate: its playbook proposes rolling the deployment back.
ALERT = {
    "alertname": "SkillForgeAPIErrorRate",
    "namespace": "api",
    "deployment": "search-api",
    "severity": "critical",
}
ROLLBACK_TITLE = "Roll back the failing deployment"


@dataclass
class Clusters:
    env: Env
    dev: KubeSandbox
    prod: KubeSandbox

    def settings(self) -> Any:
        directory = write_playbooks(self.env.tmp / "playbooks", kill_switch=False)
        (directory / "clusters.yaml").write_text(yaml.safe_dump(CLUSTERS, sort_keys=False))
        return bot_settings(
            self.env.slack,
            self.env.dsn,
            self.env.redis_url,
            kubeconfig=str(self.env.kubeconfig),
            playbooks_dir=directory,
            remediation_verify_seconds=0.0,
        )


async def _sandbox() -> KubeSandbox:
    sb = KubeSandbox(rollout_delay=0.05, forbidden_namespaces=())
    sb.seed_demo()
    await sb.start()
    return sb


@pytest.fixture
async def two(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Clusters]:
    slack.add_user("U0DAVE", "dave", "Dave Davis", "dave@example.com")
    dev, prod = await _sandbox(), await _sandbox()
    try:
        kubeconfig = write_kubeconfig(
            tmp_path / "kubeconfig", {"skillforge-dev": dev, "skillforge-prod": prod}
        )
        env = Env(slack, prod, http, database_dsn, redis_url, tmp_path, kubeconfig)
        yield Clusters(env, dev, prod)
    finally:
        await dev.stop()
        await prod.stop()


def channel_text(slack: SlackSandbox, channel_id: str) -> str:
    return "\n".join(
        m.text + json.dumps(m.blocks or [], ensure_ascii=False) for m in slack.messages(channel_id)
    )


async def alert_channel(env: Env, bot: BotServer, labels: dict[str, str], group: str) -> str:
    """Post the alert (bearer token); the new incident channel's id once its card is posted."""
    slack = env.slack
    before = {c.id for c in slack.channels_with_prefix("inc-")}
    status, _ = await post_alert(env.http, bot, alert_body(labels, group))
    assert status == 200

    def new_channel(s: SlackSandbox) -> str | None:
        fresh = [c for c in s.channels_with_prefix("inc-") if c.id not in before and s.messages(c.id)]
        return fresh[0].id if fresh else None

    return await slack.wait_for(new_channel)


async def rollback_proposal(two: Clusters, bot: BotServer, channel_id: str) -> ActionRun:
    """The playbook's rollback proposal once its message (with its buttons) is in the channel;
    the run as stored, with the message's ts (the bot stores it right after posting)."""

    def posted(s: SlackSandbox) -> str | None:
        for m in s.messages(channel_id):
            blocks = json.dumps(m.blocks or [])
            if ROLLBACK_TITLE in blocks and "approve_action" in blocks:
                return m.ts
        return None

    ts = await two.env.slack.wait_for(posted)
    incident = await bot.parts.store.incident_by_channel(channel_id)
    assert incident is not None
    [run] = [r for r in await store(bot).for_incident(incident.id) if r.action is ActionName.ROLLOUT_UNDO]
    return replace(run, message_ts=ts, channel_id=channel_id)


def dry_runs(kube: KubeSandbox) -> list[Any]:
    return [r for r in kube.requests_for(None, "/deployments/search-api") if r.param("dryRun") == "All"]


async def test_prod_alert_runs_on_prod_after_prods_two_approvals(two: Clusters) -> None:
    env = two.env
    async with running_bot(two.settings()) as bot:
        channel = await alert_channel(two.env, bot, {**ALERT, "cluster": "skillforge-prod"}, "prod")
        run = await rollback_proposal(two, bot, channel)
        assert run.cluster == "skillforge-prod"
        assert run.approvals_needed == 2
        assert "skillforge-prod" in run.preview.cluster
        assert dry_runs(two.prod) and not two.dev.requests  # previewed and diagnosed on prod only
        text = await wait_message(env, run, "skillforge-prod")
        assert "approve_action" in text

        # One approval: recorded, and nothing changes in either cluster.
        await click(env, bot, "approve_action", run, "U0BOB")
        after_one = await store(bot).get(run.id)
        assert after_one is not None and after_one.status is RunStatus.PROPOSED
        assert after_one.approvers == ("U0BOB",)
        assert mutations(two.prod, "/deployments") == [] and mutations(two.dev, "") == []

        assert "all approvals are in" in await click(env, bot, "approve_action", run, "U0DAVE")
        await wait_message(env, run, "Remediation succeeded")
        assert len(mutations(two.prod, "/deployments/search-api")) == 1
        assert two.dev.requests == []  # dev untouched: not even read

        entries = await store(bot).audit_entries(run_id=run.id)
        assert {e.cluster for e in entries} == {"skillforge-prod"}
        assert len(entries) >= 4  # requested, approved twice, claimed, succeeded...
        incident = await bot.parts.store.incident_by_channel(channel)
        assert incident is not None
        timeline = [e.text for e in await bot.parts.store.timeline(incident.id)]
        assert any("in cluster skillforge-prod" in t for t in timeline), timeline


async def test_dev_alert_runs_on_dev_after_one_approval(two: Clusters) -> None:
    env = two.env
    async with running_bot(two.settings()) as bot:
        channel = await alert_channel(two.env, bot, {**ALERT, "cluster": "skillforge-dev"}, "dev")
        run = await rollback_proposal(two, bot, channel)
        assert (run.cluster, run.approvals_needed) == ("skillforge-dev", 1)
        await wait_message(env, run, "skillforge-dev")
        assert "all approvals are in" in await click(env, bot, "approve_action", run, "U0BOB")
        await wait_message(env, run, "Remediation succeeded")
        assert len(mutations(two.dev, "/deployments/search-api")) == 1
        assert two.prod.requests == []
        assert {e.cluster for e in await store(bot).audit_entries(run_id=run.id)} == {"skillforge-dev"}


async def test_an_alert_without_the_label_goes_to_the_default_cluster(two: Clusters) -> None:
    async with running_bot(two.settings()) as bot:
        channel = await alert_channel(two.env, bot, ALERT, "unlabelled")
        run = await rollback_proposal(two, bot, channel)
        assert run.cluster == "skillforge-dev" and dry_runs(two.dev) and two.prod.requests == []


async def test_unknown_cluster_is_refused_without_side_effects(two: Clusters) -> None:
    async with running_bot(two.settings()) as bot:
        channel = await alert_channel(two.env, bot, {**ALERT, "cluster": "skillforge-staging"}, "staging")

        def refused(s: SlackSandbox) -> str | None:
            text = channel_text(s, channel)
            return text if "not proposed" in text and "diagnostics not run" in text else None

        text = await two.env.slack.wait_for(refused)
        assert "skillforge-staging" in text and "not one of the configured clusters" in text
        incident = await bot.parts.store.incident_by_channel(channel)
        assert incident is not None
        assert await store(bot).for_incident(incident.id) == []
        assert two.dev.requests == [] and two.prod.requests == []

        # Positive control: the same alert from a configured cluster, in the same bot.
        control = await alert_channel(two.env, bot, {**ALERT, "cluster": "skillforge-prod"}, "control")
        run = await rollback_proposal(two, bot, control)
        assert run.cluster == "skillforge-prod" and dry_runs(two.prod)
        assert two.dev.requests == []


async def test_one_group_from_both_clusters_proposes_in_each(two: Clusters) -> None:
    """Alertmanager grouping by alertname and namespace puts the dev and prod alert in one
    incident: each cluster still gets its own proposal, under its own rule."""
    env = two.env
    async with running_bot(two.settings()) as bot:
        body = alert_body({**ALERT, "cluster": "skillforge-dev"}, "both")
        prod_alert = json.loads(json.dumps(body["alerts"][0]))
        prod_alert["labels"]["cluster"] = "skillforge-prod"
        prod_alert["fingerprint"] = "f" * 16
        body["alerts"].append(prod_alert)
        before = {c.id for c in env.slack.channels_with_prefix("inc-")}
        assert (await post_alert(env.http, bot, body))[0] == 200

        def both_proposed(s: SlackSandbox) -> str | None:
            for c in s.channels_with_prefix("inc-"):
                blocks = [json.dumps(m.blocks or []) for m in s.messages(c.id)]
                if (
                    c.id not in before
                    and sum(ROLLBACK_TITLE in b and "approve_action" in b for b in blocks) == 2
                ):
                    return c.id
            return None

        channel = await env.slack.wait_for(both_proposed)
        incident = await bot.parts.store.incident_by_channel(channel)
        assert incident is not None
        runs = {r.cluster: r for r in await store(bot).for_incident(incident.id)}
        assert {name: r.approvals_needed for name, r in runs.items()} == {
            "skillforge-dev": 1,
            "skillforge-prod": 2,
        }
        assert dry_runs(two.dev) and dry_runs(two.prod)


async def test_an_ad_hoc_run_names_its_cluster_and_an_unknown_one_is_refused(two: Clusters) -> None:
    """`/incident run ... cluster=<name>` acts on the named cluster under its rule; a name that is
    not configured is refused with nothing stored and no request to either cluster."""
    env = two.env
    async with running_bot(two.settings()) as bot:
        channel = await alert_channel(two.env, bot, {**ALERT, "cluster": "skillforge-dev"}, "adhoc")
        await rollback_proposal(two, bot, channel)  # the playbook's own proposal, on dev
        await quiet(bot)  # and the diagnostics that follow it: what is counted next is the run's
        incident = await bot.parts.store.incident_by_channel(channel)
        assert incident is not None
        before_runs = {r.id for r in await store(bot).for_incident(incident.id)}
        dev_seen, prod_seen = len(two.dev.requests), len(two.prod.requests)

        refused = await command(
            env, bot, "U0ALICE", "run rollout_restart api/search-api cluster=skillforge-qa", channel
        )
        assert "`skillforge-qa` is not one of the configured clusters" in refused
        assert {r.id for r in await store(bot).for_incident(incident.id)} == before_runs
        assert (len(two.dev.requests), len(two.prod.requests)) == (dev_seen, prod_seen)
        usage = await command(env, bot, "U0ALICE", "run rollout_restart api/search-api cluster=", channel)
        assert "Give `cluster=<name>` once" in usage

        # Positive control: the incident's alert is dev's, the run asks for prod: prod's rule.
        answer = await command(
            env, bot, "U0ALICE", "run rollout_undo api/search-api cluster=skillforge-prod", channel
        )
        assert "Proposed" in answer and "2 approval(s) needed" in answer
        [run] = [r for r in await store(bot).for_incident(incident.id) if r.id not in before_runs]
        assert run.cluster == "skillforge-prod"
        assert len(two.dev.requests) == dev_seen  # previewed on prod only
        assert len(two.prod.requests) > prod_seen
