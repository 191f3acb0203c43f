"""Kubernetes objects as the apiserver serializes them (plain JSON), read without `Any`.

The adapter works on JSON rather than on the SDK's models because the requests it sends are
the JSON patches kubectl sends. These accessors read a field the way a tolerant `dict.get`
chain does: a missing field (or one of another shape) reads as None, 0, {} or [].
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

JSON = dict[str, object]

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
POD_TEMPLATE_HASH = "pod-template-hash"


# --------------------------------------------------------------------------- fields


def as_dict(value: object) -> JSON:
    return value if isinstance(value, dict) else {}


def dig(obj: object, *path: str) -> object:
    node = obj
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def dig_dict(obj: object, *path: str) -> JSON:
    return as_dict(dig(obj, *path))


def dig_list(obj: object, *path: str) -> list[object]:
    value = dig(obj, *path)
    return list(value) if isinstance(value, list) else []


def dig_dicts(obj: object, *path: str) -> list[JSON]:
    """The objects of a list field (containers, conditions, owner references, ...)."""
    return [item for item in dig_list(obj, *path) if isinstance(item, dict)]


def dig_str(obj: object, *path: str) -> str | None:
    value = dig(obj, *path)
    return value if isinstance(value, str) else None


def to_int(value: object) -> int:
    """`int(value or 0)` for a JSON number or a numeric string; anything else counts as 0."""
    if isinstance(value, int | float | str) and value:
        return int(value)
    return 0


def optional_int(value: object) -> int | None:
    return None if value is None else to_int(value)


# --------------------------------------------------------------------------- metadata


def meta(obj: JSON) -> JSON:
    return dig_dict(obj, "metadata")


def annotations_of(obj: JSON) -> dict[str, str]:
    return {str(k): str(v) for k, v in dig_dict(obj, "metadata", "annotations").items()}


def resource_version(obj: JSON) -> str | None:
    return dig_str(obj, "metadata", "resourceVersion")


def generation(obj: JSON) -> int | None:
    return optional_int(meta(obj).get("generation"))


def revision(obj: JSON) -> int:
    """A deployment's or ReplicaSet's rollout revision (0 when it has none)."""
    try:
        return int(annotations_of(obj).get(REVISION, "0"))
    except ValueError:
        return 0


def controller(obj: JSON) -> JSON | None:
    for ref in dig_dicts(obj, "metadata", "ownerReferences"):
        if ref.get("controller"):
            return ref
    return None


def pod_label(pod: JSON) -> str:
    pod_meta = meta(pod)
    return f"{pod_meta.get('namespace')}/{pod_meta.get('name')}"


def parse_time(value: object) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


# --------------------------------------------------------------------------- pod templates


def containers(obj_with_pod_template: JSON) -> list[JSON]:
    return dig_dicts(obj_with_pod_template, "spec", "template", "spec", "containers")


def images(container_list: Sequence[JSON]) -> list[str]:
    return [str(c.get("image", "")) for c in container_list]


def template_without_hash(template: JSON) -> JSON:
    """A deep copy of a ReplicaSet's pod template without the label its controller added."""
    result = as_dict(json.loads(json.dumps(template)))
    labels = dig(result, "metadata", "labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    return result


def selector_string(selector: JSON) -> str:
    """A label selector as `kubectl get -l` takes it."""
    labels = dig_dict(selector, "matchLabels")
    parts = [f"{key}={labels[key]}" for key in sorted(labels)]
    for expr in dig_dicts(selector, "matchExpressions"):
        key, op = expr.get("key"), expr.get("operator")
        values = ",".join(str(v) for v in dig_list(expr, "values"))
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)
