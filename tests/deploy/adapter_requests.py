"""What the Kubernetes adapter really sends, per action: every action previewed and executed with
the real kubernetes-asyncio client against the sandbox apiserver, which records what each request
is authorized as (verb, API group, resource/subresource, namespace).

Besides `preview` and `execute`, each scenario makes the reads the remediation flows add around
an action: a scale proposal reads the rollout status (the current replica count), and the
verification waits for the rollout of every action on a deployment.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kubernetes_asyncio.client import ApiClient

from bot.clients.kubernetes.cluster import KubernetesCluster
from bot.clients.kubernetes.objects import dig_str
from bot.clients.kubernetes.reads import READABLE_KINDS
from bot.clients.kubernetes.results import RolloutState
from bot.core.actions import (
    ActionName,
    ActionParams,
    CreateJobFromCronJobParams,
    DeletePodParams,
    DeploymentTarget,
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
from bot.tools.rbac import Grant
from sandbox.kubernetes import Access, KubeSandbox

# The exec scenario runs the command the sandbox's demo database pod answers.
EXEC_ARGV = ["psql", "-c", "SELECT count(*) FROM pg_stat_activity;"]
DIAGNOSTICS = "diagnostics"
INVESTIGATOR = "investigator"


@dataclass(slots=True)
class Recorded:
    """The authorization checks of one scenario's requests."""

    access: set[Access] = field(default_factory=set)
    # Paths of requests that are not resource requests (discovery), and refused or failed ones.
    non_resource: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)

    @property
    def grants(self) -> frozenset[Grant]:
        return frozenset(Grant(a.group, a.resource, a.verb) for a in self.access)

    @property
    def namespaces(self) -> set[str | None]:
        return {a.namespace for a in self.access}


Scenario = Callable[[KubeSandbox, KubernetesCluster], Awaitable[None]]


async def _act(
    cluster: KubernetesCluster, action: ActionName, params: ActionParams, argv: list[str] | None = None
) -> None:
    """Preview, execute, and the flows' reads around it; each step must succeed."""
    preview = await cluster.preview(action, params, argv=argv)
    assert preview.dry_run_ok, (action, preview)
    if isinstance(params, ScaleParams):
        await cluster.rollout_status(params.namespace, params.deployment)
    result = await cluster.execute(
        action, params, preview.resource_version, expect_fingerprint=preview.fingerprint, argv=argv
    )
    assert result.complete, (action, result)
    if isinstance(params, DeploymentTarget):
        status = await cluster.wait_rollout(params.namespace, params.deployment, timeout=10)
        assert status.state is RolloutState.COMPLETE, (action, status)


def _victim(sandbox: KubeSandbox, namespace: str, deployment: str) -> str:
    name: str = sandbox.deployment_pods(namespace, deployment)[0]["metadata"]["name"]
    return name


async def _diagnostics(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    """Every read-only diagnostic a playbook can show (bot/flows/diagnostics.py)."""
    namespace, deployment = "birthday-scheduler", "birthday-scheduler-worker"
    assert await cluster.pods(namespace, deployment)
    assert await cluster.pods(namespace, "app=birthday-scheduler-worker")
    assert await cluster.events(namespace, _victim(sandbox, namespace, deployment))
    assert await cluster.rollout_history(namespace, deployment)
    assert await cluster.logs_tail(namespace, _victim(sandbox, namespace, deployment), 5)
    # Correlation's topology: a pod's owner, and the workloads behind a Service.
    assert (await cluster.pod_owner(namespace, _victim(sandbox, namespace, deployment))).name == deployment
    assert await cluster.service_workloads(namespace, f"{deployment}-http")


async def _investigator(sandbox: KubeSandbox, cluster: KubernetesCluster) -> None:
    """The investigator's get and list of every namespaced readable kind (nodes are read by
    name under the node actions' ClusterRole), each where the demo has one; what the demo
    lacks is seeded first, directly."""
    for kind in READABLE_KINDS.values():
        if not kind.namespaced:
            continue
        existing = sandbox.objects(kind.plural)
        namespace = str(existing[0]["metadata"]["namespace"]) if existing else "birthday-scheduler"
        if not existing:
            api_version = f"{kind.group}/{kind.version}" if kind.group else kind.version
            meta = {"name": f"probe-{kind.plural}", "namespace": namespace}
            body = {"apiVersion": api_version, "kind": kind.kind, "metadata": meta}
            if kind.kind == "Job":  # the only one of them the sandbox validates
                pod = {"containers": [{"name": "probe", "image": "busybox"}], "restartPolicy": "Never"}
                body["spec"] = {"template": {"spec": pod}}
            sandbox.create(body)
        listed = await cluster.list_objects(kind, namespace, limit=5)
        assert listed.items, kind
        name = dig_str(listed.items[0], "metadata", "name")
        assert name, kind
        assert await cluster.read_object(kind, namespace, name)


def _scenarios(sandbox: KubeSandbox) -> dict[ActionName | str, Scenario]:
    """One scenario per action, the diagnostics first (on the demo cluster as seeded)."""

    def plain(action: ActionName, params: ActionParams, argv: list[str] | None = None) -> Scenario:
        return lambda _sandbox, cluster: _act(cluster, action, params, argv)

    async def delete_pod(sb: KubeSandbox, cluster: KubernetesCluster) -> None:
        pod = _victim(sb, "birthday-scheduler", "birthday-scheduler-worker")
        await _act(cluster, ActionName.DELETE_POD, DeletePodParams(namespace="birthday-scheduler", pod=pod))

    return {
        DIAGNOSTICS: _diagnostics,
        INVESTIGATOR: _investigator,
        ActionName.ROLLOUT_RESTART: plain(
            ActionName.ROLLOUT_RESTART,
            RolloutRestartParams(namespace="skillquest", deployment="skillquest-api"),
        ),
        ActionName.SCALE: plain(
            ActionName.SCALE, ScaleParams(namespace="api", deployment="search-api", replicas=8)
        ),
        ActionName.ROLLOUT_UNDO: plain(
            ActionName.ROLLOUT_UNDO, RolloutUndoParams(namespace="api", deployment="search-api")
        ),
        ActionName.SET_ENV: plain(
            ActionName.SET_ENV,
            SetEnvParams(namespace="skillquest", deployment="skillquest-api", env={"FEATURE_X": "on"}),
        ),
        ActionName.SET_RESOURCES: plain(
            ActionName.SET_RESOURCES,
            SetResourcesParams(
                namespace="birthday-scheduler",
                deployment="birthday-scheduler-worker",
                container="worker",
                requests=ResourceSpec(memory="384Mi"),
            ),
        ),
        ActionName.DELETE_POD: delete_pod,
        ActionName.CORDON: plain(ActionName.CORDON, NodeParams(node="worker-2")),
        ActionName.UNCORDON: plain(ActionName.UNCORDON, NodeParams(node="worker-2")),
        ActionName.DRAIN: plain(
            ActionName.DRAIN, DrainParams(node="worker-3", delete_emptydir_data=True, timeout_seconds=30)
        ),
        ActionName.CREATE_JOB_FROM_CRONJOB: plain(
            ActionName.CREATE_JOB_FROM_CRONJOB,
            CreateJobFromCronJobParams(namespace="data-pipelines", cronjob="analytics-backfill"),
        ),
        ActionName.EXEC: plain(
            ActionName.EXEC,
            ExecParams(namespace="skillquest", pod="skillquest-postgres-0", template="pg_connection_count"),
            EXEC_ARGV,
        ),
    }


async def record_every_action() -> dict[ActionName | str, Recorded]:
    """Run every scenario against a fresh demo cluster; what each one's requests were authorized as."""
    sandbox = KubeSandbox(rollout_delay=0.05)
    sandbox.seed_demo()
    await sandbox.start()
    recorded: dict[ActionName | str, Recorded] = {}
    try:
        async with ApiClient(configuration=sandbox.configuration()) as api:
            cluster = KubernetesCluster(api, evict_retry_delay=0.05, poll_interval=0.02, revision_wait=2.0)
            for name, scenario in _scenarios(sandbox).items():
                start = len(sandbox.requests)
                await scenario(sandbox, cluster)
                record = Recorded()
                for request in sandbox.requests[start:]:
                    if not request.access:
                        record.non_resource.add(request.path)
                    record.access.update(request.access)
                    # 429 (a PodDisruptionBudget, retried) and 404 (an evicted pod is gone)
                    # are part of a drain; a refusal or a server error is not.
                    if request.status is None or request.status in (401, 403) or request.status >= 500:
                        record.failed.append(f"{request.method} {request.path} -> {request.status}")
                recorded[name] = record
    finally:
        await sandbox.stop()
    return recorded
