"""Who owns a pod, and where it runs: the read-only lookups correlation needs
(Pod → ReplicaSet → Deployment, or the StatefulSet/DaemonSet/Job that controls it directly;
Service → the workloads of the pods it selects)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.clients.kubernetes.api import KubeApi
from bot.clients.kubernetes.objects import JSON, controller, dig_dict, dig_str, selector_string


@dataclass(frozen=True, slots=True)
class PodOwner:
    """The workload controlling a pod (kind and name; None when nothing does) and its node."""

    kind: str | None
    name: str | None
    node: str | None


# A Service's first pods are enough to name its workloads (usually one Deployment).
SERVICE_PODS = 20


async def pod_owner(api: KubeApi, namespace: str, pod: str) -> PodOwner:
    found = await api.read_pod(namespace, pod)
    kind, name = await _workload_of(api, namespace, found, {})
    return PodOwner(kind, name, dig_str(found, "spec", "nodeName"))


async def service_workloads(api: KubeApi, namespace: str, service: str) -> tuple[PodOwner, ...]:
    """The workloads behind a Service: the owners of the pods its selector matches (none for a
    Service without a selector, e.g. one pointing outside the cluster)."""
    found = api.to_json(
        await api.call(
            f"get service {namespace}/{service}", api.core.read_namespaced_service(service, namespace)
        )
    )
    selector = dig_dict(found, "spec", "selector")
    if not selector:
        return ()
    listed = await api.call(
        f"list pods in {namespace}",
        api.core.list_namespaced_pod(
            namespace, label_selector=selector_string({"matchLabels": selector}), limit=SERVICE_PODS
        ),
    )
    replica_sets: dict[str, tuple[str | None, str | None]] = {}
    owners: dict[tuple[str, str], PodOwner] = {}
    for item in listed.items or []:
        kind, name = await _workload_of(api, namespace, api.to_json(item), replica_sets)
        if kind and name:
            owners.setdefault((kind, name), PodOwner(kind, name, None))
    return tuple(owners.values())


async def _workload_of(
    api: KubeApi, namespace: str, pod: JSON, replica_sets: dict[str, tuple[str | None, str | None]]
) -> tuple[str | None, str | None]:
    """The pod's controlling workload; a ReplicaSet is followed to its Deployment (each
    ReplicaSet read once per call site, through `replica_sets`)."""
    ref = controller(pod)
    if ref is None:
        return None, None
    kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
    if kind == "ReplicaSet" and name:
        if name not in replica_sets:
            replica_set = api.to_json(
                await api.call(
                    f"get replicaset {namespace}/{name}",
                    api.apps.read_namespaced_replica_set(name, namespace),
                )
            )
            owner = controller(replica_set)
            replica_sets[name] = (
                (str(owner.get("kind") or kind), str(owner.get("name") or name)) if owner else (kind, name)
            )
        return replica_sets[name]
    return kind or None, name or None
