"""The resources the fake apiserver serves, their API groups and subresources, and the
annotation names the deployment controller uses."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TOKEN = "sandbox-token"  # a fixed fake credential for the fake server
DEFAULT_USER = "system:serviceaccount:incidentbot:incidentbot"

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
POD_TEMPLATE_HASH = "pod-template-hash"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# Deployment annotations the controller does not copy onto its ReplicaSets.
NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
}
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    plural: str
    kind: str
    group: str
    version: str
    namespaced: bool
    # Whether `status` is a subresource (so writes to the main resource ignore it).
    has_status: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind_qualified(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


RESOURCES: dict[str, ResourceInfo] = {
    r.plural: r
    for r in (
        ResourceInfo("namespaces", "Namespace", "", "v1", namespaced=False),
        ResourceInfo("nodes", "Node", "", "v1", namespaced=False),
        ResourceInfo("pods", "Pod", "", "v1", namespaced=True),
        ResourceInfo("services", "Service", "", "v1", namespaced=True),
        ResourceInfo("endpoints", "Endpoints", "", "v1", namespaced=True, has_status=False),
        ResourceInfo("configmaps", "ConfigMap", "", "v1", namespaced=True, has_status=False),
        ResourceInfo("secrets", "Secret", "", "v1", namespaced=True, has_status=False),
        ResourceInfo("statefulsets", "StatefulSet", "apps", "v1", namespaced=True),
        ResourceInfo("daemonsets", "DaemonSet", "apps", "v1", namespaced=True),
        ResourceInfo(
            "endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", namespaced=True, has_status=False
        ),
        ResourceInfo(
            "horizontalpodautoscalers", "HorizontalPodAutoscaler", "autoscaling", "v2", namespaced=True
        ),
        ResourceInfo("events", "Event", "", "v1", namespaced=True, has_status=False),
        ResourceInfo("deployments", "Deployment", "apps", "v1", namespaced=True),
        ResourceInfo("replicasets", "ReplicaSet", "apps", "v1", namespaced=True),
        ResourceInfo("cronjobs", "CronJob", "batch", "v1", namespaced=True),
        ResourceInfo("jobs", "Job", "batch", "v1", namespaced=True),
        ResourceInfo("poddisruptionbudgets", "PodDisruptionBudget", "policy", "v1", namespaced=True),
    )
}
BY_GROUP_VERSION = {(r.group, r.version, r.plural): r for r in RESOURCES.values()}
GENERATION = {"deployments", "replicasets", "cronjobs", "jobs", "poddisruptionbudgets"}
SUBRESOURCES = {
    ("deployments", "scale"),
    ("deployments", "status"),
    ("pods", "eviction"),
    ("pods", "log"),
    ("pods", "exec"),
    ("pods", "status"),
    ("nodes", "status"),
}


@dataclass(slots=True)
class Route:
    info: ResourceInfo | None
    namespace: str | None
    name: str | None
    sub: str | None
    discovery: str | None = None
