"""Read-only get and list of the non-secret kinds the investigator may read, as plain JSON.

Only the kinds in `READABLE_KINDS` can be named: a Secret (or any other kind) has no path here,
so it can never be requested. Every object leaves this module sanitized: container environment
values and their sources are cut down to the variable names, a ConfigMap's data to its keys, and
the fields that repeat a whole earlier object (managedFields, kubectl's last-applied
annotation, which holds the env values a Deployment was applied with) are dropped.

The requests are the plain GETs kubectl sends (`/apis/<group>/<version>/namespaces/<ns>/<plural>`),
made through the SDK's ApiClient so authentication and TLS are the adapter's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bot.clients.kubernetes.api import KubeApi
from bot.clients.kubernetes.objects import JSON, as_dict, dig_dict, dig_dicts, to_int

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True, slots=True)
class ReadableKind:
    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        scope = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{scope}/{self.plural}" + (f"/{name}" if name else "")


READABLE_KINDS: dict[str, ReadableKind] = {
    k.kind: k
    for k in (
        ReadableKind("Deployment", "apps", "v1", "deployments"),
        ReadableKind("ReplicaSet", "apps", "v1", "replicasets"),
        ReadableKind("StatefulSet", "apps", "v1", "statefulsets"),
        ReadableKind("DaemonSet", "apps", "v1", "daemonsets"),
        ReadableKind("Service", "", "v1", "services"),
        ReadableKind("Endpoints", "", "v1", "endpoints"),
        ReadableKind("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices"),
        ReadableKind("Node", "", "v1", "nodes", namespaced=False),
        ReadableKind("Job", "batch", "v1", "jobs"),
        ReadableKind("CronJob", "batch", "v1", "cronjobs"),
        ReadableKind("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets"),
        ReadableKind("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers"),
        ReadableKind("ConfigMap", "", "v1", "configmaps"),
    )
}


@dataclass(frozen=True, slots=True)
class Listed:
    items: list[JSON]
    # How many more the apiserver holds beyond `items` (its remainingItemCount), when it said.
    remaining: int


async def _get_json(api: KubeApi, what: str, path: str, query: list[tuple[str, str]]) -> JSON:
    result = await api.call(
        what,
        api.api_client.call_api(
            path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        ),
    )
    return as_dict(result)


async def get_object(api: KubeApi, kind: ReadableKind, namespace: str | None, name: str) -> JSON:
    """One object, sanitized (see the module docstring)."""
    where = f"{namespace}/{name}" if kind.namespaced else name
    found = await _get_json(api, f"get {kind.kind} {where}", kind.path(namespace, name), [])
    return sanitize(kind, found)


async def list_objects(
    api: KubeApi, kind: ReadableKind, namespace: str, *, label_selector: str | None, limit: int
) -> Listed:
    """At most `limit` objects of a namespace (the apiserver's own chunking), sanitized."""
    query = [("limit", str(limit))]
    if label_selector:
        query.append(("labelSelector", label_selector))
    found = await _get_json(api, f"list {kind.plural} in {namespace}", kind.path(namespace), query)
    items = [sanitize(kind, item) for item in dig_dicts(found, "items")]
    return Listed(items[:limit], to_int(dig_dict(found, "metadata").get("remainingItemCount")))


def sanitize(kind: ReadableKind, obj: JSON) -> JSON:
    """A copy with no environment value, no ConfigMap value and no last-applied copy."""
    out = as_dict(json.loads(json.dumps(obj)))
    metadata = as_dict(out.get("metadata"))
    metadata.pop("managedFields", None)
    annotations = as_dict(metadata.get("annotations"))
    annotations.pop(LAST_APPLIED, None)
    if kind.kind == "ConfigMap":
        for field in ("data", "binaryData"):
            if field in out:
                out[field] = sorted(as_dict(out[field]))
    return as_dict(_strip_env(out))


def _env_entry(entry: object) -> JSON:
    """An env entry as its name and the kind of its source, never the value itself."""
    item = as_dict(entry)
    sources = sorted(as_dict(item.get("valueFrom")))
    return {"name": str(item.get("name", "")), "from": sources[0] if sources else "value"}


def _strip_env(node: object) -> object:
    if isinstance(node, dict):
        return {
            key: [_env_entry(e) for e in value]
            if key == "env" and isinstance(value, list)
            else _strip_env(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_strip_env(item) for item in node]
    return node
