"""The facts topology compares: which workloads and nodes an alert group is about.

A pod label is resolved through the alert's cluster (Pod → ReplicaSet → Deployment, or the
StatefulSet/DaemonSet that controls it; and the pod's node), and a Service label (on an alert
naming no pod) to the workloads of the pods the Service selects; each lookup bounded by a
timeout and cached for a while, so a storm of alerts about one pod asks the cluster once. When the cluster cannot
answer (not configured, unreachable, the pod is gone) the labels decide: a deployment,
statefulset or daemonset label, else the ReplicaSet hash in the pod's name."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from bot.clients.kubernetes.cluster import KubernetesCluster
from bot.clients.kubernetes.clusters import Clusters
from bot.clients.kubernetes.ownership import PodOwner
from bot.core.clusters import UnknownClusterError
from bot.core.correlation import TopologyRule, Workload, workload_from_labels
from bot.core.errors import IntegrationError
from bot.core.incident import Alert
from bot.obs import logs

log = logs.logger(logs.Component.INTAKE)

# A group's first pods are enough to name its workloads; a storm's 40-pod group asks for 8.
MAX_PODS_PER_GROUP = 8
MAX_CACHED = 10_000
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a group's alerts are, topologically."""

    cluster: str
    workloads: tuple[Workload, ...]
    nodes: tuple[str, ...]
    node_level: bool


class Topology:
    def __init__(
        self, clusters: Clusters, rule: TopologyRule, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.clusters = clusters
        self.rule = rule
        self.monotonic = monotonic
        self._cache: dict[tuple[str, str, str], tuple[float, object]] = {}

    def cluster_of(self, alerts: Sequence[Alert]) -> str:
        labels = alerts[0].labels if alerts else {}
        try:
            return self.clusters.select(labels)
        except UnknownClusterError:
            # Not one of ours: compared by name only, never asked.
            return f"unknown:{self.clusters.catalog.named_by(labels) or ''}"

    async def place(self, alerts: Sequence[Alert]) -> Placement:
        cluster = self.cluster_of(alerts)
        workloads: dict[str, Workload] = {}
        nodes: list[str] = []
        node_level = False
        pods = [a for a in alerts if a.labels.get(self.rule.pod_label) and a.labels.get("namespace")]
        owners = await asyncio.gather(*(self._owner(cluster, a) for a in pods[:MAX_PODS_PER_GROUP]))
        resolved = dict(zip((id(a) for a in pods), owners, strict=False))
        for behind in await self._behind_services(cluster, alerts):
            workloads.setdefault(behind.key, behind)
        for alert in alerts:
            owner = resolved.get(id(alert))
            workload = self._workload(cluster, alert, owner)
            if workload is not None:
                workloads.setdefault(workload.key, workload)
            node = (owner.node if owner is not None else None) or alert.labels.get(self.rule.node_label)
            if node:
                nodes.append(node)
                # A node-level alert names a node and no pod or workload.
                node_level = node_level or (not alert.labels.get(self.rule.pod_label) and workload is None)
        return Placement(cluster, tuple(workloads.values()), tuple(sorted(set(nodes))), node_level)

    def _workload(self, cluster: str, alert: Alert, owner: PodOwner | None) -> Workload | None:
        if owner is not None and owner.kind and owner.name:
            pod = alert.labels.get(self.rule.pod_label, "")
            return Workload(
                cluster, alert.labels.get("namespace", ""), owner.kind, owner.name, f"owner of pod {pod}"
            )
        return workload_from_labels(alert.labels, cluster, self.rule.pod_label)

    async def _behind_services(self, cluster: str, alerts: Sequence[Alert]) -> list[Workload]:
        """The workloads behind the Services that alerts naming no pod are about."""
        label = self.rule.service_label
        if label is None:
            return []
        named = {
            (a.labels["namespace"], a.labels[label])
            for a in alerts
            if a.labels.get(label) and a.labels.get("namespace") and not a.labels.get(self.rule.pod_label)
        }
        found = await asyncio.gather(
            *(self._service(cluster, ns, svc) for ns, svc in sorted(named)[:MAX_PODS_PER_GROUP])
        )
        return [w for group in found for w in group]

    async def _service(self, cluster: str, namespace: str, service: str) -> tuple[Workload, ...]:
        async def ask(client: KubernetesCluster) -> tuple[Workload, ...]:
            owners = await client.service_workloads(namespace, service)
            how = f"behind service {service}"
            return tuple(
                Workload(cluster, namespace, o.kind, o.name, how) for o in owners if o.kind and o.name
            )

        return await self._cached((cluster, namespace, f"service:{service}"), cluster, ask, ())

    async def _owner(self, cluster: str, alert: Alert) -> PodOwner | None:
        namespace, pod = alert.labels["namespace"], alert.labels[self.rule.pod_label]

        async def ask(client: KubernetesCluster) -> PodOwner | None:
            return await client.pod_owner(namespace, pod)

        return await self._cached((cluster, namespace, f"pod:{pod}"), cluster, ask, None)

    async def _cached(
        self,
        key: tuple[str, str, str],
        cluster: str,
        ask: Callable[[KubernetesCluster], Awaitable[T]],
        unknown: T,
    ) -> T:
        """The cluster's answer, kept `cache_seconds`; `unknown` when it cannot answer in time
        (not ours, unreachable, forbidden, gone) — then the labels decide."""
        now = self.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cast(T, cached[1])
        client = self.clusters.client(cluster) if not cluster.startswith("unknown:") else None
        found = unknown
        if client is not None:
            try:
                found = await asyncio.wait_for(ask(client), self.rule.timeout_seconds)
            except (IntegrationError, TimeoutError) as exc:
                log.debug("correlation.topology_unknown", extra={"object": "/".join(key), "error": str(exc)})
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (now + self.rule.cache_seconds, found)
        return found
