"""Small helpers over stored objects: metadata, labels, revisions, owners, readiness, templates."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

from sandbox.kubernetes.resources import NAME_ALPHABET, POD_TEMPLATE_HASH, REVISION

JSON = dict[str, Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime | None = None) -> str:
    return (moment or utc_now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def meta_of(obj: JSON) -> JSON:
    meta = obj.setdefault("metadata", {})
    assert isinstance(meta, dict)
    return meta


def annotations_of(obj: JSON) -> dict[str, str]:
    meta = meta_of(obj)
    if meta.get("annotations") is None:
        meta["annotations"] = {}
    annotations = meta["annotations"]
    assert isinstance(annotations, dict)
    return annotations


def labels_of(obj: JSON) -> dict[str, str]:
    labels = meta_of(obj).get("labels") or {}
    assert isinstance(labels, dict)
    return labels


def revision_of(obj: JSON) -> int:
    try:
        return int((meta_of(obj).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def controller_ref(obj: JSON) -> JSON | None:
    for ref in meta_of(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def pod_ready(pod: JSON) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def template_without_hash(template: JSON | None) -> JSON:
    result = copy.deepcopy(template or {})
    meta = result.setdefault("metadata", {})
    labels = dict(meta.get("labels") or {})
    labels.pop(POD_TEMPLATE_HASH, None)
    meta["labels"] = labels
    for key in ("annotations",):
        if not meta.get(key):
            meta.pop(key, None)
    return result


def templates_equal(a: JSON | None, b: JSON | None) -> bool:
    return template_without_hash(a) == template_without_hash(b)


def template_hash(template: JSON) -> str:
    digest = hashlib.sha256(json.dumps(template_without_hash(template), sort_keys=True).encode()).digest()
    return "".join(NAME_ALPHABET[b % len(NAME_ALPHABET)] for b in digest[:10])


def scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        raw = total * int(text[:-1]) / 100
        return math.ceil(raw) if round_up else math.floor(raw)
    return int(text)
