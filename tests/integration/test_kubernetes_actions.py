"""Every remediation action through the real kubernetes-asyncio client against the sandbox apiserver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from bot.clients.kubernetes.cluster import KubernetesCluster
from bot.clients.kubernetes.results import PodOutcome, RolloutState
from bot.core.actions import (
    ActionName,
    CreateJobFromCronJobParams,
    DeletePodParams,
    DrainParams,
    ExecParams,
    NodeParams,
    ResourceSpec,
    RolloutRestartParams,
    RolloutUndoParams,
    ScaleParams,
    SetEnvParams,
    SetResourcesParams,
)
from bot.core.errors import IntegrationError, UserError
from sandbox.kubernetes import REVISION, KubeSandbox

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def sandbox() -> AsyncIterator[KubeSandbox]:
    sb = KubeSandbox(rollout_delay=0.05)
    sb.seed_demo()
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.fixture
async def api(sandbox: KubeSandbox) -> AsyncIterator[ApiClient]:
    async with ApiClient(configuration=sandbox.configuration()) as api_client:
        yield api_client


@pytest.fixture
def cluster(api: ApiClient) -> KubernetesCluster:
    return KubernetesCluster(api, evict_retry_delay=0.05, poll_interval=0.02, revision_wait=2.0)


def deployment(sandbox: KubeSandbox, ns: str, name: str) -> dict[str, Any]:
    obj = sandbox.get("deployments", ns, name)
    assert obj is not None
    return obj


def node_object(sandbox: KubeSandbox, name: str) -> dict[str, Any]:
    obj = sandbox.get("nodes", None, name)
    assert obj is not None
    return obj


def api_status(error: ApiException) -> dict[str, Any]:
    """The Kubernetes Status object the API server sent with an error."""
    assert error.body is not None
    status: dict[str, Any] = json.loads(error.body)
    return status


def container(dep: dict[str, Any], index: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][index]
    return result


def writes(sandbox: KubeSandbox) -> list[Any]:
    return [r for r in sandbox.requests if r.method in ("PATCH", "POST", "PUT", "DELETE")]


# --------------------------------------------------------------------------- scale


async def test_scale_preview_is_a_dry_run_and_changes_nothing(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    before = deployment(sandbox, "api", "search-api")
    preview = await cluster.preview(
        ActionName.SCALE, ScaleParams(namespace="api", deployment="search-api", replicas=9)
    )

    assert preview.dry_run_ok and preview.target_exists and preview.problem is None
    assert "deployment api/search-api: replicas 6 → 9" in preview.summary_lines
    assert preview.resource_version == before["metadata"]["resourceVersion"]
    assert preview.generation == before["metadata"]["generation"]
    after = deployment(sandbox, "api", "search-api")
    assert after["spec"]["replicas"] == 6
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    [patch] = writes(sandbox)
    assert patch.path == "/apis/apps/v1/namespaces/api/deployments/search-api/scale"
    assert patch.param("dryRun") == "All"
    assert patch.content_type == "application/merge-patch+json"
    assert len(sandbox.deployment_pods("api", "search-api")) == 6


async def test_scale_executes_merge_patch_on_scale_subresource(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    params = ScaleParams(namespace="api", deployment="search-api", replicas=9)
    preview = await cluster.preview(ActionName.SCALE, params)
    result = await cluster.execute(ActionName.SCALE, params, preview.resource_version)

    assert result.changes == ["replicas 6 → 9"]
    [patch] = [w for w in writes(sandbox) if w.param("dryRun") is None]
    assert patch.path.endswith("/deployments/search-api/scale")
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body == {"spec": {"replicas": 9}}
    assert patch.param("fieldManager") == "incidentbot"
    assert deployment(sandbox, "api", "search-api")["spec"]["replicas"] == 9
    status = await cluster.wait_rollout("api", "search-api", timeout=5)
    assert status.state is RolloutState.COMPLETE
    assert (status.desired_replicas, status.ready_replicas, status.available_replicas) == (9, 9, 9)
    assert len(sandbox.deployment_pods("api", "search-api")) == 9


# --------------------------------------------------------------------------- rollout restart


async def test_restart_creates_a_new_revision_and_the_rollout_completes(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    params = RolloutRestartParams(namespace="skillquest", deployment="skillquest-api")
    preview = await cluster.preview(ActionName.ROLLOUT_RESTART, params)
    assert preview.dry_run_ok
    assert preview.summary_lines[0] == (
        "deployment skillquest/skillquest-api: revision 2 → new rollout (revision 3) with the same images"
    )
    assert len(sandbox.replica_sets("skillquest", "skillquest-api")) == 2  # the dry run created nothing

    result = await cluster.execute(
        ActionName.ROLLOUT_RESTART, params, preview.resource_version, expect_fingerprint=preview.fingerprint
    )
    assert result.revision == 3
    [patch] = [w for w in writes(sandbox) if w.param("dryRun") is None]
    assert patch.content_type == "application/strategic-merge-patch+json"
    stamp = patch.body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert stamp.endswith("Z")

    status = await cluster.wait_rollout("skillquest", "skillquest-api", timeout=5)
    assert status.state is RolloutState.COMPLETE, status
    assert status.revision == 3
    assert (status.desired_replicas, status.updated_replicas, status.replicas) == (3, 3, 3)
    rss = sandbox.replica_sets("skillquest", "skillquest-api")
    assert [rs["metadata"]["annotations"][REVISION] for rs in rss] == ["1", "2", "3"]
    newest = rss[-1]
    assert newest["spec"]["replicas"] == 3 and rss[1]["spec"]["replicas"] == 0
    owner = newest["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "Deployment" and owner["controller"] is True
    assert owner["uid"] == deployment(sandbox, "skillquest", "skillquest-api")["metadata"]["uid"]
    pod_hash = newest["metadata"]["labels"]["pod-template-hash"]
    pods = sandbox.deployment_pods("skillquest", "skillquest-api")
    assert len(pods) == 3 and all(p["metadata"]["labels"]["pod-template-hash"] == pod_hash for p in pods)


async def test_wait_rollout_reports_a_stalled_rollout(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    sandbox.fail_rollout("birthday-scheduler", "birthday-scheduler-api")
    params = RolloutRestartParams(namespace="birthday-scheduler", deployment="birthday-scheduler-api")
    await cluster.execute(ActionName.ROLLOUT_RESTART, params, None)
    status = await cluster.wait_rollout("birthday-scheduler", "birthday-scheduler-api", timeout=5)
    assert status.state is RolloutState.STALLED
    assert "exceeded its progress deadline" in status.message
    assert status.available_replicas == 2  # the old pods keep serving


async def test_wait_rollout_times_out(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    sandbox.rollout_delay = 30
    params = RolloutRestartParams(namespace="birthday-scheduler", deployment="birthday-scheduler-api")
    await cluster.execute(ActionName.ROLLOUT_RESTART, params, None)
    status = await cluster.wait_rollout("birthday-scheduler", "birthday-scheduler-api", timeout=0.2)
    assert status.state is RolloutState.TIMED_OUT
    assert status.updated_replicas == 2 and status.ready_replicas == 2 and status.replicas == 4


async def test_restart_refuses_a_paused_deployment(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    sandbox.modify("deployments", "skillquest", "skillquest-worker", lambda d: d["spec"].update(paused=True))
    params = RolloutRestartParams(namespace="skillquest", deployment="skillquest-worker")
    preview = await cluster.preview(ActionName.ROLLOUT_RESTART, params)
    assert not preview.dry_run_ok and "paused" in (preview.problem or "")
    with pytest.raises(UserError, match="paused"):
        await cluster.execute(ActionName.ROLLOUT_RESTART, params, None)


# --------------------------------------------------------------------------- rollout undo


async def test_undo_goes_back_to_the_previous_revision(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    params = RolloutUndoParams(namespace="api", deployment="search-api")
    preview = await cluster.preview(ActionName.ROLLOUT_UNDO, params)
    assert preview.dry_run_ok, preview
    assert (
        preview.summary_lines[0]
        == "deployment api/search-api: revision 2 → revision 1 (recorded as revision 3)"
    )
    assert (
        "container search-api: image registry.skillforge.dev/search-api:3.8.1 → registry.skillforge.dev/search-api:3.7.0"
        in preview.summary_lines
    )
    assert container(deployment(sandbox, "api", "search-api"))["image"].endswith(":3.8.1")

    result = await cluster.execute(ActionName.ROLLOUT_UNDO, params, preview.resource_version)
    assert result.revision == 3
    [patch] = [w for w in writes(sandbox) if w.param("dryRun") is None]
    assert patch.content_type == "application/json-patch+json"
    assert [op["path"] for op in patch.body] == ["/spec/template", "/metadata/annotations"]
    assert "pod-template-hash" not in patch.body[0]["value"]["metadata"]["labels"]
    assert patch.body[1]["value"]["kubernetes.io/change-cause"].endswith("image.tag=3.7.0")

    dep = deployment(sandbox, "api", "search-api")
    assert container(dep)["image"].endswith(":3.7.0")
    status = await cluster.wait_rollout("api", "search-api", timeout=5)
    assert status.state is RolloutState.COMPLETE
    history = await cluster.rollout_history("api", "search-api")
    assert [(h.revision, h.current) for h in history] == [(2, False), (3, True)]
    assert history[-1].images == ["registry.skillforge.dev/search-api:3.7.0"]
    assert history[-1].change_cause == "helm upgrade search-api --set image.tag=3.7.0"


async def test_undo_to_a_given_revision(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    env = SetEnvParams(
        namespace="birthday-scheduler", deployment="birthday-scheduler-worker", env={"FOO": "bar"}
    )
    await cluster.execute(ActionName.SET_ENV, env, None)
    assert _revision(deployment(sandbox, "birthday-scheduler", "birthday-scheduler-worker")) == 3

    params = RolloutUndoParams(
        namespace="birthday-scheduler", deployment="birthday-scheduler-worker", to_revision=1
    )
    preview = await cluster.preview(ActionName.ROLLOUT_UNDO, params)
    assert preview.summary_lines[0].startswith(
        "deployment birthday-scheduler/birthday-scheduler-worker: revision 3 → "
    )
    result = await cluster.execute(ActionName.ROLLOUT_UNDO, params, preview.resource_version)
    assert result.revision == 4
    dep = deployment(sandbox, "birthday-scheduler", "birthday-scheduler-worker")
    assert container(dep)["image"].endswith(":2.3.1")
    assert "FOO" not in {e["name"] for e in container(dep)["env"]}


async def test_undo_refuses_when_there_is_nothing_to_undo(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    sandbox.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "fresh", "namespace": "api"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "fresh"}},
                "template": {
                    "metadata": {"labels": {"app": "fresh"}},
                    "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
                },
            },
        }
    )
    params = RolloutUndoParams(namespace="api", deployment="fresh")
    preview = await cluster.preview(ActionName.ROLLOUT_UNDO, params)
    assert not preview.dry_run_ok and preview.target_exists
    assert "no rollout history" in (preview.problem or "")
    with pytest.raises(UserError, match="no rollout history"):
        await cluster.execute(ActionName.ROLLOUT_UNDO, params, None)
    with pytest.raises(UserError, match="no revision 99"):
        await cluster.execute(
            ActionName.ROLLOUT_UNDO,
            RolloutUndoParams(namespace="api", deployment="search-api", to_revision=99),
            None,
        )
    with pytest.raises(UserError, match="already runs the template of revision 2"):
        await cluster.execute(
            ActionName.ROLLOUT_UNDO,
            RolloutUndoParams(namespace="api", deployment="search-api", to_revision=2),
            None,
        )
    assert not [w for w in writes(sandbox) if w.param("dryRun") is None]


# --------------------------------------------------------------------------- set env / set resources


async def test_set_env_previews_before_after_and_patches_by_name(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    params = SetEnvParams(
        namespace="skillquest",
        deployment="skillquest-api",
        env={"MAINTENANCE_MODE": "true", "FEATURE_X": "on", "DATABASE_URL": "postgres://maint"},
    )
    preview = await cluster.preview(ActionName.SET_ENV, params)
    assert preview.dry_run_ok
    # Values may be secrets: the summary anyone sees says only what changes...
    assert "container api: MAINTENANCE_MODE changed (values hidden)" in preview.summary_lines
    assert "container api: FEATURE_X unset → set (value hidden)" in preview.summary_lines
    assert (
        "container api: DATABASE_URL (from secret skillquest-api-secrets/database-url) → set (value hidden)"
        in preview.summary_lines
    )
    assert not [v for v in ('"false"', '"true"', '"on"', "maint") if v in "\n".join(preview.summary_lines)]
    # ...the before → after values are for the requester only.
    assert 'container api: MAINTENANCE_MODE "false" → "true"' in preview.private_lines
    assert 'container api: FEATURE_X unset → "on"' in preview.private_lines
    assert (
        'container api: DATABASE_URL (from secret skillquest-api-secrets/database-url) → "postgres://maint"'
        in preview.private_lines
    )
    assert {
        e["name"]: e.get("value")
        for e in container(deployment(sandbox, "skillquest", "skillquest-api"))["env"]
    }["MAINTENANCE_MODE"] == "false"

    result = await cluster.execute(ActionName.SET_ENV, params, preview.resource_version)
    assert result.revision == 3
    assert "container api: MAINTENANCE_MODE changed (values hidden)" in result.changes
    assert "maint" not in "\n".join(result.changes)
    [patch] = [w for w in writes(sandbox) if w.param("dryRun") is None]
    assert patch.content_type == "application/strategic-merge-patch+json"
    env = {e["name"]: e for e in container(deployment(sandbox, "skillquest", "skillquest-api"))["env"]}
    assert env["MAINTENANCE_MODE"] == {"name": "MAINTENANCE_MODE", "value": "true"}
    assert env["FEATURE_X"] == {"name": "FEATURE_X", "value": "on"}
    assert env["DATABASE_URL"] == {"name": "DATABASE_URL", "value": "postgres://maint"}
    assert env["LOG_LEVEL"]["value"] == "info"  # merged by name, not replaced
    assert (await cluster.wait_rollout("skillquest", "skillquest-api", timeout=5)).complete


async def test_set_env_unknown_container_is_refused(cluster: KubernetesCluster) -> None:
    params = SetEnvParams(
        namespace="skillquest", deployment="skillquest-api", container="sidecar", env={"A": "1"}
    )
    preview = await cluster.preview(ActionName.SET_ENV, params)
    assert not preview.dry_run_ok and "no container 'sidecar'" in (preview.problem or "")
    with pytest.raises(UserError, match="containers: api"):
        await cluster.execute(ActionName.SET_ENV, params, None)


async def test_set_resources(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    params = SetResourcesParams(
        namespace="birthday-scheduler",
        deployment="birthday-scheduler-worker",
        container="worker",
        requests=ResourceSpec(memory="768Mi"),
        limits=ResourceSpec(cpu="1", memory="1Gi"),
    )
    preview = await cluster.preview(ActionName.SET_RESOURCES, params)
    assert preview.dry_run_ok
    assert "container worker: limits.memory 512Mi → 1Gi" in preview.summary_lines
    assert "container worker: requests.memory 512Mi → 768Mi" in preview.summary_lines
    assert "container worker: limits.cpu 500m → 1" in preview.summary_lines

    result = await cluster.execute(ActionName.SET_RESOURCES, params, preview.resource_version)
    assert result.revision == 3
    resources = container(deployment(sandbox, "birthday-scheduler", "birthday-scheduler-worker"))["resources"]
    assert resources == {
        "requests": {"cpu": "250m", "memory": "768Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }


async def test_set_resources_invalid_value_fails_the_dry_run(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    params = SetResourcesParams(
        namespace="birthday-scheduler",
        deployment="birthday-scheduler-worker",
        requests=ResourceSpec(memory="4Gi"),
    )
    preview = await cluster.preview(ActionName.SET_RESOURCES, params)
    assert not preview.dry_run_ok and preview.target_exists
    assert "must be less than or equal to memory limit of 512Mi" in (preview.problem or "")
    with pytest.raises(IntegrationError) as info:
        await cluster.execute(ActionName.SET_RESOURCES, params, None)
    assert info.value.status == 422 and "is invalid" in info.value.message


# --------------------------------------------------------------------------- delete pod


async def test_delete_pod(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    victim = sandbox.deployment_pods("birthday-scheduler", "birthday-scheduler-worker")[0]["metadata"]["name"]
    params = DeletePodParams(namespace="birthday-scheduler", pod=victim, grace_period_seconds=10)
    preview = await cluster.preview(ActionName.DELETE_POD, params)
    assert preview.dry_run_ok
    assert any("a replacement will be created" in line for line in preview.summary_lines)
    assert sandbox.get("pods", "birthday-scheduler", victim) is not None

    await cluster.execute(ActionName.DELETE_POD, params, None, expect_fingerprint=preview.fingerprint)
    [delete] = [w for w in writes(sandbox) if w.method == "DELETE" and w.param("dryRun") is None]
    assert delete.param("gracePeriodSeconds") == "10"
    assert sandbox.get("pods", "birthday-scheduler", victim) is None
    await sandbox.wait_for(
        lambda: len(sandbox.deployment_pods("birthday-scheduler", "birthday-scheduler-worker")) == 3
    )


# --------------------------------------------------------------------------- cordon / uncordon


async def test_cordon_and_uncordon(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    cordon = NodeParams(node="worker-2")
    preview = await cluster.preview(ActionName.CORDON, cordon)
    assert preview.dry_run_ok and preview.summary_lines[0] == "node worker-2: schedulable → unschedulable"
    assert not node_object(sandbox, "worker-2")["spec"].get("unschedulable")

    result = await cluster.execute(ActionName.CORDON, cordon, None, expect_fingerprint=preview.fingerprint)
    assert result.changes == ["node worker-2: schedulable → unschedulable"]
    node = sandbox.get("nodes", None, "worker-2")
    assert node is not None and node["spec"]["unschedulable"] is True
    assert any(t["key"] == "node.kubernetes.io/unschedulable" for t in node["spec"]["taints"])

    again = await cluster.preview(ActionName.CORDON, cordon)
    assert again.summary_lines[0] == "node worker-2: already unschedulable (no change)"

    uncordon = await cluster.preview(ActionName.UNCORDON, cordon)
    assert uncordon.summary_lines[0] == "node worker-2: unschedulable → schedulable"
    await cluster.execute(ActionName.UNCORDON, cordon, None, expect_fingerprint=uncordon.fingerprint)
    node = sandbox.get("nodes", None, "worker-2")
    assert node is not None and not node["spec"].get("unschedulable") and "taints" not in node["spec"]


# --------------------------------------------------------------------------- drain


def node_with(sandbox: KubeSandbox, app: str, count: int, without: str = "analytics-event-router") -> str:
    for node in ("worker-1", "worker-2", "worker-3"):
        names = [p["metadata"]["name"] for p in sandbox.pods_on_node(node)]
        if sum(n.startswith(app) for n in names) >= count and not any(n.startswith(without) for n in names):
            return node
    raise AssertionError(f"no node with {count} {app} pods")


async def test_drain_evicts_skips_daemonsets_and_waits_for_the_pdb(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    sandbox.rollout_delay = 0.3  # replacements take a while to become ready, so the PDB bites
    node = node_with(sandbox, "search-api", 2)
    params = DrainParams(node=node, timeout_seconds=30)
    preview = await cluster.preview(ActionName.DRAIN, params)
    assert preview.dry_run_ok, preview
    assert preview.summary_lines[0].startswith(f"node {node}: schedulable → unschedulable, then evict")
    assert any("DaemonSet-managed" in line for line in preview.summary_lines)
    assert any("mirror (static) pod" in line for line in preview.summary_lines)
    assert sandbox.pods_on_node(node) and not node_object(sandbox, node)["spec"].get("unschedulable")

    result = await cluster.execute(ActionName.DRAIN, params, None, expect_fingerprint=preview.fingerprint)
    assert result.complete and result.drain is not None
    assert {p.outcome for p in result.drain.pods} == {PodOutcome.EVICTED}
    assert {s.detail for s in result.drain.skipped} == {"DaemonSet-managed", "mirror (static) pod"}
    remaining = {p["metadata"]["namespace"] for p in sandbox.pods_on_node(node)}
    assert remaining <= {"monitoring", "kube-system"}
    evictions = sandbox.requests_for("POST", "/eviction")
    assert any(r.status == 429 for r in evictions), "the PDB never blocked an eviction"
    search_attempts = [p.attempts for p in result.drain.pods if p.name.startswith("search-api")]
    assert max(search_attempts) > 1
    assert node_object(sandbox, node)["spec"]["unschedulable"] is True
    await sandbox.wait_for(lambda: len(sandbox.deployment_pods("api", "search-api")) == 6)


async def test_drain_blocked_by_pdb_then_allowed(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    sandbox.set_pdb("api", "search-api-pdb", minAvailable=6)
    node = node_with(sandbox, "search-api", 1)
    params = DrainParams(node=node, timeout_seconds=30)
    preview = await cluster.preview(ActionName.DRAIN, params)
    assert any(
        "blocked now by a PodDisruptionBudget" in line and "search-api-pdb needs 6 healthy pods" in line
        for line in preview.summary_lines
    ), preview.summary_lines

    drain = asyncio.create_task(cluster.execute(ActionName.DRAIN, params, None))
    await sandbox.wait_for(lambda: any(r.status == 429 for r in sandbox.requests_for("POST", "/eviction")))
    assert not drain.done()
    sandbox.set_pdb("api", "search-api-pdb", maxUnavailable=3)
    result = await asyncio.wait_for(drain, 10)
    assert result.complete
    assert result.drain is not None and all(p.outcome is PodOutcome.EVICTED for p in result.drain.pods)


async def test_drain_gives_up_on_a_pdb_at_the_timeout(sandbox: KubeSandbox, api: ApiClient) -> None:
    sandbox.set_pdb("api", "search-api-pdb", minAvailable=6)
    slow = KubernetesCluster(api, evict_retry_delay=11, poll_interval=0.02)
    node = node_with(sandbox, "search-api", 1)
    result = await slow.execute(ActionName.DRAIN, DrainParams(node=node, timeout_seconds=10), None)
    assert not result.complete and result.drain is not None
    blocked = [p for p in result.drain.pods if p.outcome is PodOutcome.BLOCKED]
    assert blocked and all(p.name.startswith("search-api") for p in blocked)
    assert "disruption budget" in blocked[0].detail
    assert any("blocked" in line for line in result.changes)


async def test_drain_refuses_pods_with_local_storage_before_cordoning(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    node = next(
        n
        for n in ("worker-1", "worker-2", "worker-3")
        if any(p["metadata"]["name"].startswith("analytics-event-router") for p in sandbox.pods_on_node(n))
    )
    params = DrainParams(node=node)
    preview = await cluster.preview(ActionName.DRAIN, params)
    assert not preview.dry_run_ok and "delete_emptydir_data" in (preview.problem or "")
    with pytest.raises(UserError, match="emptyDir"):
        await cluster.execute(ActionName.DRAIN, params, None)
    assert not node_object(sandbox, node)["spec"].get("unschedulable")

    result = await cluster.execute(ActionName.DRAIN, DrainParams(node=node, delete_emptydir_data=True), None)
    assert result.complete


# --------------------------------------------------------------------------- create job from cronjob


async def test_create_job_from_cronjob(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    params = CreateJobFromCronJobParams(
        namespace="data-pipelines", cronjob="analytics-backfill", job_name="analytics-backfill-manual-1"
    )
    preview = await cluster.preview(ActionName.CREATE_JOB_FROM_CRONJOB, params)
    assert preview.dry_run_ok
    assert preview.summary_lines[:2] == [
        "create job data-pipelines/analytics-backfill-manual-1 from cronjob analytics-backfill",
        "image(s): registry.skillforge.dev/analytics-backfill:0.9.5",
    ]
    assert sandbox.objects("jobs") == []

    result = await cluster.execute(ActionName.CREATE_JOB_FROM_CRONJOB, params, preview.resource_version)
    assert result.job_name == "analytics-backfill-manual-1"
    job = sandbox.get("jobs", "data-pipelines", "analytics-backfill-manual-1")
    cronjob = sandbox.get("cronjobs", "data-pipelines", "analytics-backfill")
    assert job is not None and cronjob is not None
    [owner] = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": "analytics-backfill",
        "uid": cronjob["metadata"]["uid"],
        "controller": True,
    }
    assert job["metadata"]["annotations"] == {
        "cronjob.kubernetes.io/instantiate": "manual",
        "skillforge.io/owner": "data-platform",
    }
    assert job["metadata"]["labels"] == {"app": "analytics-backfill"}
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python",
        "-m",
        "backfill",
        "--since=24h",
    ]
    await sandbox.wait_for(
        lambda: (
            (sandbox.get("jobs", "data-pipelines", "analytics-backfill-manual-1") or {})
            .get("status", {})
            .get("succeeded")
            == 1
        )
    )

    with pytest.raises(IntegrationError) as info:
        await cluster.execute(ActionName.CREATE_JOB_FROM_CRONJOB, params, None)
    assert info.value.status == 409
    assert 'jobs.batch "analytics-backfill-manual-1" already exists' in info.value.message
    assert (
        len([w for w in writes(sandbox) if w.method == "POST" and w.param("dryRun") is None]) == 2
    )  # no retry


async def test_create_job_generates_a_name(sandbox: KubeSandbox, api: ApiClient) -> None:
    named = KubernetesCluster(api, job_suffix=lambda: "a1b2c3")
    params = CreateJobFromCronJobParams(namespace="api", cronjob="search-cache-warm")
    result = await named.execute(ActionName.CREATE_JOB_FROM_CRONJOB, params, None)
    assert result.job_name == "search-cache-warm-manual-a1b2c3"
    assert sandbox.get("jobs", "api", "search-cache-warm-manual-a1b2c3") is not None


# --------------------------------------------------------------------------- errors


async def test_forbidden_namespace_surfaces_the_apiserver_message(cluster: KubernetesCluster) -> None:
    params = ScaleParams(namespace="kube-system", deployment="coredns", replicas=3)
    preview = await cluster.preview(ActionName.SCALE, params)
    assert not preview.dry_run_ok
    assert (
        'deployments.apps "coredns" is forbidden: User "system:serviceaccount:incidentbot:incidentbot" cannot get '
        'resource "deployments" in API group "apps" in the namespace "kube-system"'
    ) in (preview.problem or "")
    with pytest.raises(IntegrationError) as info:
        await cluster.execute(ActionName.SCALE, params, None)
    assert info.value.status == 403 and info.value.system == "kubernetes"
    assert 'cannot get resource "deployments" in API group "apps" in the namespace "kube-system"' in str(
        info.value
    )


async def test_missing_rbac_permission_is_named(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    sandbox.deny("patch", "deployments/scale")
    params = ScaleParams(namespace="api", deployment="search-api", replicas=9)
    preview = await cluster.preview(ActionName.SCALE, params)
    assert not preview.dry_run_ok and preview.target_exists
    assert 'cannot patch resource "deployments/scale" in API group "apps"' in (preview.problem or "")
    with pytest.raises(IntegrationError, match='cannot patch resource "deployments/scale"') as info:
        await cluster.execute(ActionName.SCALE, params, None)
    assert info.value.status == 403


async def test_not_found(cluster: KubernetesCluster) -> None:
    params = ScaleParams(namespace="api", deployment="nope", replicas=1)
    preview = await cluster.preview(ActionName.SCALE, params)
    assert not preview.target_exists and not preview.dry_run_ok
    assert 'deployments.apps "nope" not found' in (preview.problem or "")
    with pytest.raises(IntegrationError) as info:
        await cluster.execute(ActionName.SCALE, params, None)
    assert info.value.status == 404
    with pytest.raises(IntegrationError, match='pods "ghost" not found'):
        await cluster.execute(ActionName.DELETE_POD, DeletePodParams(namespace="api", pod="ghost"), None)


async def test_target_changed_since_preview_is_refused(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    params = ScaleParams(namespace="api", deployment="search-api", replicas=9)
    preview = await cluster.preview(ActionName.SCALE, params)
    sandbox.modify("deployments", "api", "search-api", lambda d: d["spec"].update(replicas=7))  # an HPA, say

    with pytest.raises(UserError, match="changed since the preview"):
        await cluster.execute(ActionName.SCALE, params, preview.resource_version)
    with pytest.raises(UserError, match=r"generation=2 → .*generation=3"):
        await cluster.execute(
            ActionName.SCALE, params, preview.resource_version, expect_fingerprint=preview.fingerprint
        )
    assert deployment(sandbox, "api", "search-api")["spec"]["replicas"] == 7


async def test_status_only_changes_do_not_refuse_with_a_fingerprint(
    sandbox: KubeSandbox, cluster: KubernetesCluster
) -> None:
    params = ScaleParams(namespace="api", deployment="search-api", replicas=9)
    preview = await cluster.preview(ActionName.SCALE, params)
    victim = sandbox.deployment_pods("api", "search-api")[0]["metadata"]["name"]
    await cluster.execute(ActionName.DELETE_POD, DeletePodParams(namespace="api", pod=victim), None)
    await sandbox.wait_for(
        lambda: deployment(sandbox, "api", "search-api")["status"].get("readyReplicas") == 6
    )
    assert deployment(sandbox, "api", "search-api")["metadata"]["resourceVersion"] != preview.resource_version

    with pytest.raises(UserError):
        await cluster.execute(ActionName.SCALE, params, preview.resource_version)
    result = await cluster.execute(
        ActionName.SCALE, params, preview.resource_version, expect_fingerprint=preview.fingerprint
    )
    assert result.changes == ["replicas 6 → 9"]


async def test_a_409_conflict_is_retried_once(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    params = ScaleParams(namespace="api", deployment="search-api", replicas=8)
    sandbox.fail_next(
        "PATCH", "deployments/scale", status=409, reason="Conflict", message="the object has been modified"
    )
    result = await cluster.execute(ActionName.SCALE, params, None)
    assert result.changes == ["replicas 6 → 8"]
    assert [r.status for r in sandbox.requests_for("PATCH", "/scale")] == [409, 200]

    sandbox.fail_next(
        "PATCH", "deployments/scale", status=409, reason="Conflict", message="modified", times=2
    )
    with pytest.raises(IntegrationError) as info:
        await cluster.execute(
            ActionName.SCALE, ScaleParams(namespace="api", deployment="search-api", replicas=5), None
        )
    assert info.value.status == 409
    assert deployment(sandbox, "api", "search-api")["spec"]["replicas"] == 8


# --------------------------------------------------------------------------- exec


async def test_exec_returns_stdout_and_exit_code(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    argv = ["psql", "-c", "SELECT count(*) FROM pg_stat_activity;"]
    params = ExecParams(namespace="skillquest", pod="skillquest-postgres-0", template="pg_connection_count")
    preview = await cluster.preview(ActionName.EXEC, params, argv=argv)
    assert preview.dry_run_ok
    # The command as argv, one argument a line: no shell quoting to decode.
    assert preview.summary_lines[0].startswith("run in pod skillquest/skillquest-postgres-0")
    assert preview.summary_lines[1:4] == [
        "  argv[0]: psql",
        "  argv[1]: -c",
        "  argv[2]: SELECT count(*) FROM pg_stat_activity;",
    ]

    result = await cluster.execute(
        ActionName.EXEC, params, None, expect_fingerprint=preview.fingerprint, argv=argv
    )
    assert result.exec_result is not None
    assert result.exec_result.exit_code == 0 and "    87" in result.exec_result.stdout
    [ws] = sandbox.requests_for("GET", "/exec")
    assert ws.query["command"] == argv and ws.status == 101

    failed = await cluster.exec("skillquest", "skillquest-postgres-0", ["psql", "-c", "SELECT * FROM nope;"])
    assert failed.exit_code == 1 and 'relation "nope" does not exist' in failed.stderr and failed.stdout == ""
    assert (await cluster.exec("skillquest", "skillquest-postgres-0", ["false"])).exit_code == 1
    with pytest.raises(IntegrationError, match="executable file not found"):
        await cluster.exec("skillquest", "skillquest-postgres-0", ["rm", "-rf", "/"])
    with pytest.raises(UserError, match="argv"):
        await cluster.exec("skillquest", "skillquest-postgres-0", "psql -c 'select 1'")
    with pytest.raises(IntegrationError, match='pods "nope" not found'):
        await cluster.exec("skillquest", "nope", ["true"])
    with pytest.raises(UserError, match="argv"):
        await cluster.execute(ActionName.EXEC, params, None)


# --------------------------------------------------------------------------- diagnostics


async def test_read_only_diagnostics(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    pods = await cluster.pods("birthday-scheduler", "birthday-scheduler-worker")
    assert len(pods) == 3 and all(p.ready and p.phase == "Running" and p.node for p in pods)
    assert all(p.owner and p.owner.startswith("ReplicaSet/birthday-scheduler-worker-") for p in pods)
    assert len(await cluster.pods("api", "app=search-api")) == 6

    pod_name = sandbox.deployment_pods("birthday-scheduler", "birthday-scheduler-worker")[0]["metadata"][
        "name"
    ]
    events = await cluster.events("birthday-scheduler", pod_name)
    assert {"BackOff", "OOMKilling"} <= {e.reason for e in events}
    assert all(e.object_name == pod_name for e in events)
    dep_events = await cluster.events("api", "search-api", kind="Deployment")
    assert any(e.reason == "ScalingReplicaSet" for e in dep_events)

    history = await cluster.rollout_history("birthday-scheduler", "birthday-scheduler-api")
    assert [(h.revision, h.current, h.replicas) for h in history] == [(1, False, 0), (2, True, 2)]
    assert history[0].images == ["ghcr.io/birthday/birthday-scheduler-api:2.3.1"]

    tail = await cluster.logs_tail("birthday-scheduler", pod_name, 1)
    assert tail.count("\n") == 1
    assert json.loads(tail)["seq"] == 59  # a JSON log line comes back as text, not mangled
    assert len((await cluster.logs_tail("birthday-scheduler", pod_name, 20)).splitlines()) == 20
    with pytest.raises(IntegrationError, match="container nope is not valid") as info:
        await cluster.logs_tail("birthday-scheduler", pod_name, 5, container="nope")
    assert info.value.status == 400

    status = await cluster.rollout_status("api", "search-api")
    assert status.complete and status.revision == 2


# --------------------------------------------------------------------------- sandbox protocol details


async def test_kubeconfig_and_bearer_token(sandbox: KubeSandbox, tmp_path: Path) -> None:
    path = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(path), client_configuration=configuration)
    async with ApiClient(configuration=configuration) as api_client:
        version = await client.VersionApi(api_client).get_code()
        assert version.git_version.startswith("v1.")
    bad = sandbox.configuration()
    bad.api_key = {"BearerToken": "wrong"}
    async with ApiClient(configuration=bad) as api_client:
        with pytest.raises(ApiException) as info:
            await client.CoreV1Api(api_client).list_node()
    assert info.value.status == 401


async def test_sandbox_patch_semantics(sandbox: KubeSandbox, api: ApiClient) -> None:
    apps = client.AppsV1Api(api)
    # `_content_type` and raw-dict bodies are accepted at runtime but missing from the SDK's stubs.
    apps_any: Any = apps
    batch_any: Any = client.BatchV1Api(api)
    with pytest.raises(ApiException) as info:
        await apps_any.patch_namespaced_deployment(
            "search-api",
            "api",
            {"spec": {}},
            _content_type="application/apply-patch+yaml",
        )
    assert info.value.status == 415

    with pytest.raises(ApiException) as info:
        await apps.patch_namespaced_deployment(
            "search-api", "api", [{"op": "test", "path": "/spec/replicas", "value": 99}]
        )
    assert info.value.status == 422

    current = deployment(sandbox, "api", "search-api")["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as info:
        await apps.patch_namespaced_deployment(
            "search-api",
            "api",
            {"metadata": {"resourceVersion": str(int(current) - 1)}, "spec": {"replicas": 2}},
        )
    assert info.value.status == 409 and api_status(info.value)["reason"] == "Conflict"

    with pytest.raises(ApiException) as info:
        await apps.patch_namespaced_deployment_scale("search-api", "api", {"spec": {"replicas": -1}})
    assert info.value.status == 422
    assert "must be greater than or equal to 0" in api_status(info.value)["message"]

    with pytest.raises(ApiException) as info:
        await batch_any.create_namespaced_job(
            "api",
            {
                "metadata": {"name": "Bad_Name"},
                "spec": {
                    "template": {
                        "spec": {"restartPolicy": "Never", "containers": [{"name": "x", "image": "y"}]}
                    }
                },
            },
        )
    assert info.value.status == 422 and "RFC 1123" in api_status(info.value)["message"]

    # SMP: $patch: delete removes an env entry by name; merge patch replaces lists wholesale.
    await apps.patch_namespaced_deployment(
        "search-api",
        "api",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "search-api", "env": [{"name": "CACHE_TTL_SECONDS", "$patch": "delete"}]}
                        ]
                    }
                }
            }
        },
    )
    names = [e["name"] for e in container(deployment(sandbox, "api", "search-api"))["env"]]
    assert names == ["DATABASE_URL"]
    await apps_any.patch_namespaced_deployment(
        "search-api",
        "api",
        {"metadata": {"labels": {"team": "search"}}},
        _content_type="application/merge-patch+json",
    )
    assert deployment(sandbox, "api", "search-api")["metadata"]["labels"] == {
        "app": "search-api",
        "team": "search",
    }


def _revision(dep: dict[str, Any]) -> int:
    return int(dep["metadata"]["annotations"][REVISION])
