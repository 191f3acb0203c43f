"""Who owns a pod, and where it runs: the read-only lookups correlation needs
(Pod → ReplicaSet → Deployment, or the StatefulSet/DaemonSet/Job that controls it directly)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.clients.kubernetes.api import KubeApi
from bot.clients.kubernetes.objects import controller, dig_str


@dataclass(frozen=True, slots=True)
class PodOwner:
    """The workload controlling a pod (kind and name; None when nothing does) and its node."""

    kind: str | None
    name: str | None
    node: str | None


async def pod_owner(api: KubeApi, namespace: str, pod: str) -> PodOwner:
    found = await api.read_pod(namespace, pod)
    node = dig_str(found, "spec", "nodeName")
    ref = controller(found)
    if ref is None:
        return PodOwner(None, None, node)
    kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
    if kind == "ReplicaSet" and name:
        replica_set = api.to_json(
            await api.call(
                f"get replicaset {namespace}/{name}", api.apps.read_namespaced_replica_set(name, namespace)
            )
        )
        owner = controller(replica_set)
        if owner is not None:
            kind, name = str(owner.get("kind") or kind), str(owner.get("name") or name)
    return PodOwner(kind or None, name or None, node)
