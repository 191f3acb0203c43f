"""A fake Kubernetes API server that the real kubernetes-asyncio client talks to.

It speaks enough of the apiserver's HTTP API for incidentbot's remediations and diagnostics:
Deployments (with the scale subresource), ReplicaSets, Pods (log, eviction, exec over the
v4.channel.k8s.io WebSocket protocol), Nodes, CronJobs, Jobs, PodDisruptionBudgets, Events,
Namespaces, plus `/version`, `/api` and `/apis` discovery.

Semantics follow the real apiserver where the bot depends on them:

- PATCH accepts strategic merge patch, JSON merge patch (RFC 7386) and JSON patch (RFC 6902);
  anything else is 415. `dryRun=All` validates and answers without persisting anything.
- Every write bumps a global resourceVersion; spec changes bump `metadata.generation`; a body
  carrying a stale `metadata.resourceVersion` is a 409 Conflict.
- Errors are `Status` objects with the apiserver's reasons and messages (NotFound, AlreadyExists,
  Conflict, Invalid, Forbidden, TooManyRequests, UnsupportedMediaType, Unauthorized).
- A deterministic deployment controller: a pod-template change makes (or, on rollback, revives)
  a ReplicaSet with the next `deployment.kubernetes.io/revision`; new pods become ready after
  `rollout_delay` seconds (event-loop timers, no sleeping), then old ReplicaSets scale to 0.
  ReplicaSets replace deleted/evicted pods on schedulable nodes; StatefulSet pods come back
  under the same name. `fail_rollout()` makes the next rollout stall (ProgressDeadlineExceeded).
- Evictions honour PodDisruptionBudgets (429 with the apiserver's message) whose status is
  recomputed on every pod change.

Tests drive it through `seed_demo()`, the helper methods below and `wait_for()`, which is woken
by every state change and every answered request.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from kubernetes_asyncio.client import Configuration

JSON = dict[str, Any]

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
_NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
}

PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
QUANTITY = re.compile(r"^([+-]?[0-9.]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+)?$")
_SUFFIX = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
# Strategic-merge-patch merge keys of the lists the bot (and kubectl) patch.
SMP_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
}
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# --------------------------------------------------------------------------- resources


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
        ResourceInfo("events", "Event", "", "v1", namespaced=True, has_status=False),
        ResourceInfo("deployments", "Deployment", "apps", "v1", namespaced=True),
        ResourceInfo("replicasets", "ReplicaSet", "apps", "v1", namespaced=True),
        ResourceInfo("cronjobs", "CronJob", "batch", "v1", namespaced=True),
        ResourceInfo("jobs", "Job", "batch", "v1", namespaced=True),
        ResourceInfo("poddisruptionbudgets", "PodDisruptionBudget", "policy", "v1", namespaced=True),
    )
}
_BY_GROUP_VERSION = {(r.group, r.version, r.plural): r for r in RESOURCES.values()}
_GENERATION = {"deployments", "replicasets", "cronjobs", "jobs", "poddisruptionbudgets"}
_SUBRESOURCES = {
    ("deployments", "scale"),
    ("deployments", "status"),
    ("pods", "eviction"),
    ("pods", "log"),
    ("pods", "exec"),
    ("pods", "status"),
    ("nodes", "status"),
}


class ApiError(Exception):
    """An error answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _not_found(info: ResourceInfo, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{info.qualified} "{name}" not found',
        {"name": name, "group": info.group, "kind": info.plural},
    )


def _invalid(info: ResourceInfo, name: str, causes: list[tuple[str, str]]) -> ApiError:
    texts = [f"{path}: {msg}" for path, msg in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{info.kind_qualified} "{name}" is invalid: {summary}',
        {
            "name": name,
            "group": info.group,
            "kind": info.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": p} for p, m in causes],
        },
    )


def _conflict(info: ResourceInfo, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {info.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "group": info.group, "kind": info.plural},
    )


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


# --------------------------------------------------------------------------- patches


def strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge patch for the fields used here: maps merge, keyed lists merge by key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result: JSON = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith(
            ("$setElementOrder/", "$deleteFromPrimitiveList/")
        ):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = strategic_merge(result.get(key), value)
        elif isinstance(value, list) and key in SMP_MERGE_KEYS:
            result[key] = _merge_keyed_list(result.get(key) or [], value, SMP_MERGE_KEYS[key])
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_keyed_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    merged = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise ApiError(422, "Invalid", f"map: {item!r} does not contain declared merge key: {key}", None)
        index = next(
            (
                i
                for i, existing in enumerate(merged)
                if isinstance(existing, dict) and existing.get(key) == item[key]
            ),
            None,
        )
        directive = item.get("$patch")
        if directive == "delete":
            if index is not None:
                del merged[index]
            continue
        if directive == "replace":
            replacement = {k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"}
            if index is None:
                merged.append(replacement)
            else:
                merged[index] = replacement
            continue
        if index is None:
            merged.append(strategic_merge({}, item))
        else:
            merged[index] = strategic_merge(merged[index], item)
    return merged


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: JSON = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _json_patch_error(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch_error(message: str) -> ApiError:
    return ApiError(
        422, "Invalid", f"the server rejected our request due to an error in our request: {message}"
    )


def _resolve_parent(doc: Any, tokens: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise _json_patch_error(f"path {path!r} does not exist")
    return node, tokens[-1]


def _get_pointer(doc: Any, path: str) -> Any:
    node = doc
    for token in _pointer(path):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise _json_patch_error(f"path {path!r} does not exist")
    return node


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test."""
    if not isinstance(ops, list):
        raise _bad_request("json patch must be a list of operations")
    result = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _json_patch_error(f"invalid operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "test":
            if _get_pointer(result, path) != op.get("value"):
                raise _json_patch_error(f"testing value {path} failed")
            continue
        if kind in ("move", "copy"):
            value = copy.deepcopy(_get_pointer(result, op["from"]))
            if kind == "move":
                result = _remove(result, op["from"])
            result = _add(result, path, value)
            continue
        if kind == "remove":
            result = _remove(result, path)
        elif kind == "replace":
            _get_pointer(result, path)  # must exist
            result = _remove(result, path)
            result = _add(result, path, copy.deepcopy(op.get("value")))
        elif kind == "add":
            result = _add(result, path, copy.deepcopy(op.get("value")))
        else:
            raise _json_patch_error(f"unknown operation {kind!r}")
    return result


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, last = _resolve_parent(doc, tokens, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _json_patch_error(f"index out of range in {path!r}")
    else:
        raise _json_patch_error(f"path {path!r} does not exist")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return None
    parent, last = _resolve_parent(doc, tokens, path)
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise _json_patch_error(f"path {path!r} does not exist")
    return doc


# --------------------------------------------------------------------------- selectors


def _lookup(obj: Any, dotted: str) -> Any:
    node = obj
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def field_selector_matches(obj: JSON, selector: str | None) -> bool:
    if not selector:
        return True
    for raw_term in selector.split(","):
        term = raw_term.strip()
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            negate = True
        elif "==" in term:
            key, value = term.split("==", 1)
            negate = False
        elif "=" in term:
            key, value = term.split("=", 1)
            negate = False
        else:
            raise _bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        actual = _lookup(obj, key.strip())
        actual_text = (
            "" if actual is None else str(actual).lower() if isinstance(actual, bool) else str(actual)
        )
        if (actual_text == value.strip()) == negate:
            return False
    return True


def _split_selector(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def label_selector_matches(labels: dict[str, str] | None, selector: str | None) -> bool:
    if not selector:
        return True
    labels = labels or {}
    for term in _split_selector(selector):
        match = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term)
        if match:
            key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            if (op == "in") != (labels.get(key) in values):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def selector_matches(selector: JSON | None, labels: dict[str, str] | None) -> bool:
    """A LabelSelector object (matchLabels + matchExpressions) against labels."""
    if not selector:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_to_string(selector: JSON | None) -> str:
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator")
        if op == "In":
            parts.append(f"{expr['key']} in ({','.join(expr.get('values') or [])})")
        elif op == "NotIn":
            parts.append(f"{expr['key']} notin ({','.join(expr.get('values') or [])})")
        elif op == "Exists":
            parts.append(expr["key"])
        elif op == "DoesNotExist":
            parts.append(f"!{expr['key']}")
    return ",".join(parts)


def parse_quantity(text: str) -> Decimal | None:
    match = QUANTITY.fullmatch(text.strip())
    if not match:
        return None
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        return None
    suffix = match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _SUFFIX[suffix]


# --------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(moment: datetime | None = None) -> str:
    return (moment or _now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def _meta(obj: JSON) -> JSON:
    meta = obj.setdefault("metadata", {})
    assert isinstance(meta, dict)
    return meta


def _annotations(obj: JSON) -> dict[str, str]:
    meta = _meta(obj)
    if meta.get("annotations") is None:
        meta["annotations"] = {}
    annotations = meta["annotations"]
    assert isinstance(annotations, dict)
    return annotations


def _labels(obj: JSON) -> dict[str, str]:
    labels = _meta(obj).get("labels") or {}
    assert isinstance(labels, dict)
    return labels


def _revision(obj: JSON) -> int:
    try:
        return int((_meta(obj).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _controller_ref(obj: JSON) -> JSON | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def _pod_ready(pod: JSON) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _template_without_hash(template: JSON | None) -> JSON:
    result = copy.deepcopy(template or {})
    meta = result.setdefault("metadata", {})
    labels = dict(meta.get("labels") or {})
    labels.pop(POD_TEMPLATE_HASH, None)
    meta["labels"] = labels
    for key in ("annotations",):
        if not meta.get(key):
            meta.pop(key, None)
    return result


def _templates_equal(a: JSON | None, b: JSON | None) -> bool:
    return _template_without_hash(a) == _template_without_hash(b)


def _template_hash(template: JSON) -> str:
    digest = hashlib.sha256(json.dumps(_template_without_hash(template), sort_keys=True).encode()).digest()
    return "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:10])


def _scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        raw = total * int(text[:-1]) / 100
        return math.ceil(raw) if round_up else math.floor(raw)
    return int(text)


@dataclass(slots=True)
class RecordedRequest:
    """One request the sandbox answered (or is answering)."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any
    status: int | None = None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


_RECORD = web.RequestKey("record", RecordedRequest)


@dataclass(frozen=True, slots=True)
class ExecReply:
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0


@dataclass(slots=True)
class _Fault:
    method: str
    resource: str
    status: int
    reason: str
    message: str
    remaining: int


@dataclass(slots=True)
class _Route:
    info: ResourceInfo | None
    namespace: str | None
    name: str | None
    sub: str | None
    discovery: str | None = None


@dataclass(slots=True)
class _Budget:
    pdb: JSON
    healthy: int
    desired: int
    expected: int
    allowed: int


@dataclass
class _State:
    rv: int = 0
    uid: int = 0
    events: int = 0
    node_cursor: int = 0
    store: dict[str, dict[tuple[str, str], JSON]] = field(default_factory=dict)


# --------------------------------------------------------------------------- the server


class KubeSandbox:
    """An in-memory Kubernetes apiserver on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        user: str = DEFAULT_USER,
        forbidden_namespaces: Iterable[str] = ("kube-system",),
        rollout_delay: float = 0.2,
        seed: int = 7,
    ) -> None:
        self.token = token
        self.user = user
        self.forbidden_namespaces = set(forbidden_namespaces)
        self.rollout_delay = rollout_delay
        self.requests: list[RecordedRequest] = []
        self.denied: set[tuple[str, str]] = set()
        self._state = _State(store={plural: {} for plural in RESOURCES})
        self._rand = random.Random(seed)
        self._timers: list[asyncio.TimerHandle] = []
        self._changed = asyncio.Event()
        self._faults: list[_Fault] = []
        self._fail_next_rollout: set[tuple[str, str]] = set()
        self._stalled_rs: set[str] = set()
        self._deadline_exceeded: set[str] = set()
        self._logs: dict[tuple[str, str], list[str]] = {}
        self._exec: dict[tuple[str, ...], ExecReply] = {}
        self._immediate = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._websockets: set[web.WebSocketResponse] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, port: int = 0) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        address = self._runner.addresses[0]
        self._port = int(address[1])

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for ws in list(self._websockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> KubeSandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("sandbox not started")
        return f"http://127.0.0.1:{self._port}"

    def configuration(self) -> Configuration:
        config = Configuration(host=self.url)
        config.api_key = {"BearerToken": self.token}
        config.api_key_prefix = {"BearerToken": "Bearer"}
        return config

    def write_kubeconfig(self, path: str | Path) -> Path:
        target = Path(path)
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "incidentbot", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "sandbox",
                    "context": {"cluster": "sandbox", "user": "incidentbot", "namespace": "default"},
                }
            ],
            "current-context": "sandbox",
            "preferences": {},
        }
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        return target

    # ------------------------------------------------------------------ test hooks

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds; re-checked after every state change or answered request."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"sandbox condition not met within {timeout}s")
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                if not predicate():
                    raise TimeoutError(f"sandbox condition not met within {timeout}s") from None

    def get(self, resource: str, namespace: str | None, name: str) -> JSON | None:
        obj = self._state.store[resource].get((namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(
        self, resource: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[JSON]:
        items = [
            copy.deepcopy(obj)
            for (ns, _), obj in sorted(self._state.store[resource].items())
            if (namespace is None or ns == namespace) and label_selector_matches(_labels(obj), label_selector)
        ]
        return items

    def pods_on_node(self, node: str) -> list[JSON]:
        return [p for p in self.objects("pods") if (p.get("spec") or {}).get("nodeName") == node]

    def deployment_pods(self, namespace: str, name: str) -> list[JSON]:
        dep = self._obj("deployments", namespace, name)
        if dep is None:
            return []
        rs_uids = {_meta(rs)["uid"] for rs in self._owned("replicasets", namespace, _meta(dep)["uid"])}
        return [
            p for p in self.objects("pods", namespace) if (_controller_ref(p) or {}).get("uid") in rs_uids
        ]

    def replica_sets(self, namespace: str, deployment: str) -> list[JSON]:
        dep = self._obj("deployments", namespace, deployment)
        if dep is None:
            return []
        owned = self._owned("replicasets", namespace, _meta(dep)["uid"])
        return sorted((copy.deepcopy(rs) for rs in owned), key=_revision)

    def create(self, obj: JSON) -> JSON:
        """Store an object as if created through the API (server fields filled, controllers run)."""
        info = self._info_for(obj)
        meta = _meta(obj)
        created = self._create(info, meta.get("namespace") if info.namespaced else None, obj, dry_run=False)
        self._settle()
        return created

    def modify(self, resource: str, namespace: str | None, name: str, mutate: Callable[[JSON], None]) -> JSON:
        """Change an object as another actor would (bumps resourceVersion/generation, runs controllers)."""
        info = RESOURCES[resource]
        current = self._obj(resource, namespace, name)
        if current is None:
            raise _not_found(info, name)
        updated = copy.deepcopy(current)
        mutate(updated)
        stored = self._persist_update(info, current, updated, keep_status=False)
        self._after_write(info, current, stored)
        return copy.deepcopy(stored)

    def fail_rollout(self, namespace: str, name: str) -> None:
        """The next rollout of this deployment stalls: new pods crash-loop, ProgressDeadlineExceeded."""
        self._fail_next_rollout.add((namespace, name))

    def set_logs(self, namespace: str, pod: str, lines: list[str]) -> None:
        self._logs[(namespace, pod)] = list(lines)

    def register_exec(self, argv: Iterable[str], reply: ExecReply) -> None:
        self._exec[tuple(argv)] = reply

    def deny(self, verb: str, resource: str) -> None:
        """RBAC: refuse `verb` on `resource` (e.g. "patch", "deployments/scale") everywhere."""
        self.denied.add((verb, resource))

    def fail_next(
        self,
        method: str,
        resource: str,
        *,
        status: int,
        reason: str,
        message: str = "injected failure",
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests of `method` on `resource` ("deployments", "pods/eviction")."""
        self._faults.append(_Fault(method.upper(), resource, status, reason, message, times))

    def set_pdb(self, namespace: str, name: str, **spec: Any) -> JSON:
        """Replace fields of a PDB spec (e.g. maxUnavailable=2) and recompute its status."""

        def mutate(pdb: JSON) -> None:
            pdb_spec = pdb.setdefault("spec", {})
            if "minAvailable" in spec or "maxUnavailable" in spec:
                pdb_spec.pop("minAvailable", None)
                pdb_spec.pop("maxUnavailable", None)
            pdb_spec.update(spec)

        return self.modify("poddisruptionbudgets", namespace, name, mutate)

    def requests_for(self, method: str | None = None, path_contains: str = "") -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and path_contains in r.path
        ]

    # ------------------------------------------------------------------ store

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _obj(self, resource: str, namespace: str | None, name: str) -> JSON | None:
        return self._state.store[resource].get((namespace or "", name))

    def _objects(self, resource: str, namespace: str | None = None) -> list[JSON]:
        return [
            obj
            for (ns, _), obj in sorted(self._state.store[resource].items())
            if namespace is None or ns == namespace
        ]

    def _owned(self, resource: str, namespace: str, owner_uid: str) -> list[JSON]:
        return [
            o
            for o in self._objects(resource, namespace)
            if (_controller_ref(o) or {}).get("uid") == owner_uid
        ]

    def _next_rv(self) -> str:
        self._state.rv += 1
        return str(self._state.rv)

    def _next_uid(self) -> str:
        self._state.uid += 1
        raw = hashlib.sha256(f"uid-{self._state.uid}".encode()).hexdigest()
        return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:32]}"

    def _suffix(self, length: int = 5) -> str:
        return "".join(self._rand.choice(_NAME_ALPHABET) for _ in range(length))

    def _info_for(self, obj: JSON) -> ResourceInfo:
        for info in RESOURCES.values():
            if info.kind == obj.get("kind") and info.api_version == obj.get("apiVersion"):
                return info
        raise ValueError(f"unsupported object {obj.get('apiVersion')}/{obj.get('kind')}")

    def _store_put(self, info: ResourceInfo, obj: JSON) -> None:
        meta = _meta(obj)
        meta["resourceVersion"] = self._next_rv()
        self._state.store[info.plural][(meta.get("namespace") or "", meta["name"])] = obj
        self._notify()

    def _store_delete(self, info: ResourceInfo, obj: JSON) -> None:
        meta = _meta(obj)
        self._state.store[info.plural].pop((meta.get("namespace") or "", meta["name"]), None)
        self._next_rv()
        self._notify()

    def _schedule(self, delay: float, callback: Callable[[], None]) -> None:
        if self._immediate or delay <= 0:
            callback()
            return
        loop = asyncio.get_running_loop()
        self._timers = [t for t in self._timers if not t.cancelled()]
        self._timers.append(loop.call_later(delay, self._guarded, callback))

    def _guarded(self, callback: Callable[[], None]) -> None:
        callback()
        self._settle()

    # ------------------------------------------------------------------ generic verbs

    def _create(self, info: ResourceInfo, namespace: str | None, body: JSON, *, dry_run: bool) -> JSON:
        obj = copy.deepcopy(body)
        obj["apiVersion"] = info.api_version
        obj["kind"] = info.kind
        meta = _meta(obj)
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = f"{meta['generateName']}{self._suffix()}"
            meta["name"] = name
        if not isinstance(name, str) or not name:
            raise _invalid(info, "", [("metadata.name", "Required value: name or generateName is required")])
        if info.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise _bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
            if self._obj("namespaces", None, namespace or "") is None:
                raise _not_found(RESOURCES["namespaces"], namespace or "")
        if self._obj(info.plural, namespace, name) is not None:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{info.qualified} "{name}" already exists',
                {"name": name, "group": info.group, "kind": info.plural},
            )
        if meta.get("resourceVersion"):
            raise _bad_request("resourceVersion should not be set on objects to be created")
        self._validate(info, obj, creating=True)
        meta["uid"] = self._next_uid()
        meta["creationTimestamp"] = meta.get("creationTimestamp") or _ts()
        if info.plural in _GENERATION:
            meta["generation"] = 1
        if not meta.get("labels"):
            meta.pop("labels", None)
        self._default(info, obj)
        if dry_run:
            meta.pop("resourceVersion", None)
            return obj
        self._store_put(info, obj)
        snapshot = copy.deepcopy(obj)
        self._after_write(info, None, obj)
        return snapshot

    def _persist_update(self, info: ResourceInfo, current: JSON, updated: JSON, *, keep_status: bool) -> JSON:
        meta, old_meta = _meta(updated), _meta(current)
        for key in ("uid", "creationTimestamp", "name", "namespace"):
            if key in old_meta:
                meta[key] = old_meta[key]
        if info.plural in _GENERATION:
            meta["generation"] = old_meta.get("generation", 1)
        if keep_status and info.has_status and "status" in current:
            updated["status"] = copy.deepcopy(current["status"])
        if keep_status and info.has_status and "status" not in current:
            updated.pop("status", None)
        if updated.get("spec") != current.get("spec") and info.plural in _GENERATION:
            meta["generation"] = int(meta["generation"]) + 1
        self._store_put(info, updated)
        return updated

    def _apply_write(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        sub: str | None,
        change: Callable[[JSON], JSON],
        *,
        dry_run: bool,
    ) -> JSON:
        """PATCH/PUT: `change` maps the current view (object or Scale) to the desired one."""
        current = self._obj(info.plural, namespace, name)
        if current is None:
            raise _not_found(info, name)
        view = self._scale_view(current) if sub == "scale" else copy.deepcopy(current)
        desired = change(copy.deepcopy(view))
        if not isinstance(desired, dict):
            raise _bad_request("the patched object is not a JSON object")
        new_meta = desired.get("metadata") or {}
        if new_meta.get("resourceVersion") not in (None, _meta(view).get("resourceVersion")):
            raise _conflict(info, name)
        for key in ("name", "namespace", "uid"):
            if key in new_meta and new_meta[key] != _meta(view).get(key):
                raise _invalid(info, name, [(f"metadata.{key}", "Invalid value: field is immutable")])
        if sub == "scale":
            replicas = (desired.get("spec") or {}).get("replicas")
            self._check_replicas(RESOURCES["deployments"], name, replicas, "spec.replicas", kind="Scale")
            updated = copy.deepcopy(current)
            updated.setdefault("spec", {})["replicas"] = replicas
        elif sub == "status":
            updated = copy.deepcopy(current)
            updated["status"] = desired.get("status")
        else:
            updated = desired
            updated["apiVersion"], updated["kind"] = info.api_version, info.kind
            self._validate(info, updated, creating=False)
        if dry_run:
            preview = copy.deepcopy(updated)
            if info.has_status and sub != "status":
                preview["status"] = copy.deepcopy(current.get("status"))
            if preview.get("spec") != current.get("spec") and info.plural in _GENERATION:
                _meta(preview)["generation"] = int(_meta(current).get("generation", 1)) + 1
            return self._scale_view(preview) if sub == "scale" else preview
        stored = self._persist_update(info, current, updated, keep_status=sub != "status")
        # The answer is the object as written; controllers react afterwards (as on a real cluster).
        snapshot = copy.deepcopy(stored)
        self._after_write(info, current, stored)
        return self._scale_view(snapshot) if sub == "scale" else snapshot

    def _default(self, info: ResourceInfo, obj: JSON) -> None:
        if info.plural == "jobs":
            spec = obj.setdefault("spec", {})
            uid = _meta(obj)["uid"]
            name = _meta(obj)["name"]
            labels = {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "job-name": name,
            }
            spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
            template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
            template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            obj["status"] = {}
        if info.plural == "deployments":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy",
                {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            )
            obj.setdefault("status", {})
        if info.plural == "pods":
            obj.setdefault("status", {"phase": "Pending"})

    # ------------------------------------------------------------------ validation

    def _check_replicas(
        self, info: ResourceInfo, name: str, value: Any, path: str, kind: str | None = None
    ) -> None:
        if value is None:
            return
        target = ResourceInfo(
            info.plural, kind or info.kind, "autoscaling" if kind else info.group, "v1", True
        )
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(target, name, [(path, f"Invalid value: {json.dumps(value)}: must be an integer")])
        if value < 0:
            raise _invalid(
                target, name, [(path, f"Invalid value: {value}: must be greater than or equal to 0")]
            )

    def _validate(self, info: ResourceInfo, obj: JSON, *, creating: bool) -> None:
        name = _meta(obj).get("name", "")
        causes: list[tuple[str, str]] = []
        if creating:
            pattern = DNS1123_LABEL if info.plural in ("namespaces",) else DNS1123_SUBDOMAIN
            limit = 63 if info.plural in ("namespaces", "jobs", "cronjobs") else 253
            if not pattern.fullmatch(name) or len(name) > limit:
                causes.append(
                    (
                        "metadata.name",
                        f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                        f"character (must be no more than {limit} characters)",
                    )
                )
        spec = obj.get("spec") or {}
        if info.plural == "deployments":
            self._check_replicas(info, name, spec.get("replicas"), "spec.replicas")
            causes += self._validate_pod_spec(
                ((spec.get("template") or {}).get("spec")) or {}, "spec.template.spec"
            )
            if not spec.get("selector"):
                causes.append(("spec.selector", "Required value"))
            elif not selector_matches(
                spec["selector"], ((spec.get("template") or {}).get("metadata") or {}).get("labels")
            ):
                causes.append(
                    (
                        "spec.template.metadata.labels",
                        "Invalid value: `selector` does not match template `labels`",
                    )
                )
        elif info.plural == "jobs":
            template_spec = ((spec.get("template") or {}).get("spec")) or {}
            causes += self._validate_pod_spec(template_spec, "spec.template.spec")
            if template_spec.get("restartPolicy") not in ("Never", "OnFailure"):
                causes.append(
                    (
                        "spec.template.spec.restartPolicy",
                        f'Unsupported value: "{template_spec.get("restartPolicy", "Always")}": '
                        'supported values: "OnFailure", "Never"',
                    )
                )
        elif info.plural == "cronjobs":
            template_spec = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get(
                "spec"
            ) or {}
            causes += self._validate_pod_spec(template_spec, "spec.jobTemplate.spec.template.spec")
        elif info.plural == "nodes" and not isinstance(spec.get("unschedulable", False), bool):
            causes.append(("spec.unschedulable", "Invalid value: must be a boolean"))
        if causes:
            raise _invalid(info, name, causes)

    def _validate_pod_spec(self, pod_spec: JSON, path: str) -> list[tuple[str, str]]:
        causes: list[tuple[str, str]] = []
        containers = pod_spec.get("containers")
        if not isinstance(containers, list) or not containers:
            return [(f"{path}.containers", "Required value")]
        seen: set[str] = set()
        for i, container in enumerate(containers):
            where = f"{path}.containers[{i}]"
            cname = container.get("name", "")
            if not isinstance(cname, str) or not DNS1123_LABEL.fullmatch(cname):
                causes.append(
                    (
                        f"{where}.name",
                        f'Invalid value: "{cname}": a lowercase RFC 1123 label must consist '
                        "of lower case alphanumeric characters or '-'",
                    )
                )
            if cname in seen:
                causes.append((f"{where}.name", f'Duplicate value: "{cname}"'))
            seen.add(cname)
            if not container.get("image"):
                causes.append((f"{where}.image", "Required value"))
            for j, env in enumerate(container.get("env") or []):
                env_name = env.get("name", "")
                if not isinstance(env_name, str) or not ENV_NAME.fullmatch(env_name):
                    causes.append(
                        (
                            f"{where}.env[{j}].name",
                            f'Invalid value: "{env_name}": a valid environment '
                            "variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
                            "and must not start with a digit",
                        )
                    )
                if "value" in env and "valueFrom" in env:
                    causes.append(
                        (
                            f"{where}.env[{j}].valueFrom",
                            'Invalid value: "": may not be specified when `value` is not empty',
                        )
                    )
            resources = container.get("resources") or {}
            parsed: dict[str, dict[str, Decimal]] = {}
            for kind in ("requests", "limits"):
                for res_name, quantity in (resources.get(kind) or {}).items():
                    value = parse_quantity(str(quantity))
                    if value is None:
                        causes.append(
                            (
                                f"{where}.resources.{kind}[{res_name}]",
                                f'Invalid value: "{quantity}": quantities must match the regular '
                                "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                            )
                        )
                    elif value < 0:
                        causes.append(
                            (
                                f"{where}.resources.{kind}[{res_name}]",
                                f'Invalid value: "{quantity}": must be greater than or equal to 0',
                            )
                        )
                    else:
                        parsed.setdefault(kind, {})[res_name] = value
            for res_name, request in parsed.get("requests", {}).items():
                limit = parsed.get("limits", {}).get(res_name)
                if limit is not None and request > limit:
                    causes.append(
                        (
                            f"{where}.resources.requests",
                            f'Invalid value: "{resources["requests"][res_name]}": must be less than or '
                            f"equal to {res_name} limit of {resources['limits'][res_name]}",
                        )
                    )
        return causes

    # ------------------------------------------------------------------ controllers

    def _after_write(self, info: ResourceInfo, old: JSON | None, new: JSON) -> None:
        if info.plural == "deployments":
            self._sync_deployment(_meta(new)["namespace"], _meta(new)["name"])
        elif info.plural == "nodes":
            self._sync_node_taints(new)
        elif info.plural == "jobs" and old is None:
            self._start_job(new)
        self._settle()

    def _settle(self) -> None:
        self._schedule_pending()
        for dep in self._objects("deployments"):
            self._sync_deployment(_meta(dep)["namespace"], _meta(dep)["name"])
        self._update_pdbs()

    def _schedule_pending(self) -> None:
        """Bind unscheduled pods once a node accepts pods again (e.g. after uncordon)."""
        for pod in self._objects("pods"):
            spec = pod.get("spec") or {}
            if spec.get("nodeName") or (pod.get("status") or {}).get("phase") != "Pending":
                continue
            node = self._pick_node()
            if node is None:
                return
            spec["nodeName"] = node
            pod["status"] = self._pod_status(spec, "pending")
            self._store_put(RESOURCES["pods"], pod)
            meta = _meta(pod)
            crashing = (_controller_ref(pod) or {}).get("uid") in self._stalled_rs
            namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
            state = "crash" if crashing else "ready"
            self._schedule(
                self.rollout_delay, functools.partial(self._set_pod_state, namespace, name, uid, state)
            )

    def _sync_node_taints(self, node: JSON) -> None:
        spec = node.setdefault("spec", {})
        taints = [t for t in spec.get("taints") or [] if t.get("key") != "node.kubernetes.io/unschedulable"]
        if spec.get("unschedulable"):
            taints.append(
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": _ts()}
            )
        if taints != (spec.get("taints") or []):
            if taints:
                spec["taints"] = taints
            else:
                spec.pop("taints", None)
            self._store_put(RESOURCES["nodes"], node)

    def _pick_node(self) -> str | None:
        nodes = [
            _meta(n)["name"] for n in self._objects("nodes") if not (n.get("spec") or {}).get("unschedulable")
        ]
        if not nodes:
            return None
        choice = str(nodes[self._state.node_cursor % len(nodes)])
        self._state.node_cursor += 1
        return choice

    def _event(
        self, involved: JSON, reason: str, message: str, *, type_: str = "Normal", component: str
    ) -> None:
        meta = _meta(involved)
        namespace = meta.get("namespace") or "default"
        if self._obj("namespaces", None, namespace) is None:
            return
        self._state.events += 1
        now = _ts()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{self._state.events:016x}",
                "namespace": namespace,
                "uid": self._next_uid(),
                "creationTimestamp": now,
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta["name"],
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": "",
        }
        self._store_put(RESOURCES["events"], event)

    def _sync_deployment(self, namespace: str, name: str) -> None:
        dep = self._obj("deployments", namespace, name)
        if dep is None:
            return
        spec = dep.get("spec") or {}
        if not spec.get("paused"):
            for _ in range(3):
                if not self._rollout_step(dep):
                    break
        self._update_deployment_status(dep)

    def _rollout_step(self, dep: JSON) -> bool:
        """One pass of the deployment controller; True when something changed."""
        meta, spec = _meta(dep), dep.get("spec") or {}
        namespace, uid = meta["namespace"], meta["uid"]
        template = spec.get("template") or {}
        desired = int(spec.get("replicas", 1))
        owned = self._owned("replicasets", namespace, uid)
        new_rs = next(
            (rs for rs in owned if _templates_equal((rs.get("spec") or {}).get("template"), template)), None
        )
        changed = False
        max_rev = max((_revision(rs) for rs in owned), default=0)
        if new_rs is None:
            new_rs = self._new_replica_set(dep, max_rev + 1)
            changed = True
        elif _revision(new_rs) < max_rev:
            # Rollback to an older template: the old ReplicaSet becomes the newest revision.
            annotations = _annotations(new_rs)
            history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
            history.append(str(_revision(new_rs)))
            annotations[REVISION_HISTORY] = ",".join(history)
            annotations[REVISION] = str(max_rev + 1)
            self._copy_annotations(dep, new_rs)
            self._store_put(RESOURCES["replicasets"], new_rs)
            changed = True
        dep_annotations = _annotations(dep)
        if dep_annotations.get(REVISION) != _annotations(new_rs).get(REVISION):
            dep_annotations[REVISION] = _annotations(new_rs)[REVISION]
            self._store_put(RESOURCES["deployments"], dep)
            changed = True
        if (
            _annotations(new_rs).get(CHANGE_CAUSE) != dep_annotations.get(CHANGE_CAUSE)
            and dep_annotations.get(CHANGE_CAUSE) is not None
        ):
            self._copy_annotations(dep, new_rs)
            self._store_put(RESOURCES["replicasets"], new_rs)
        rs_uid = _meta(new_rs)["uid"]
        old = [rs for rs in owned if _meta(rs)["uid"] != rs_uid]
        old_active = [rs for rs in old if int((rs.get("spec") or {}).get("replicas", 0)) > 0]
        stalled = rs_uid in self._stalled_rs
        target = min(desired, 1) if stalled and old_active else desired
        changed |= self._scale_rs(dep, new_rs, target)
        new_pods = self._owned("pods", namespace, rs_uid)
        ready_new = sum(1 for p in new_pods if _pod_ready(p))
        if old_active and not stalled and ready_new >= desired:
            for rs in old_active:
                changed |= self._scale_rs(dep, rs, 0)
        for rs in owned:
            changed |= self._sync_rs_pods(rs)
        for stored in [self._obj("replicasets", namespace, _meta(r)["name"]) for r in owned]:
            if stored is not None:
                self._update_rs_status(stored)
        self._prune_history(dep)
        return changed

    def _prune_history(self, dep: JSON) -> None:
        meta, spec = _meta(dep), dep.get("spec") or {}
        limit = int(spec.get("revisionHistoryLimit", 10))
        owned = self._owned("replicasets", meta["namespace"], meta["uid"])
        idle = sorted(
            (
                rs
                for rs in owned
                if int((rs.get("spec") or {}).get("replicas", 0)) == 0
                and not self._owned("pods", meta["namespace"], _meta(rs)["uid"])
                and _revision(rs) != _revision(dep)
            ),
            key=_revision,
        )
        for rs in idle[: max(len(idle) - limit, 0)]:
            self._store_delete(RESOURCES["replicasets"], rs)

    def _copy_annotations(self, dep: JSON, rs: JSON) -> None:
        annotations = _annotations(rs)
        for key, value in (_meta(dep).get("annotations") or {}).items():
            if key not in _NOT_COPIED:
                annotations[key] = value
        annotations[DESIRED_REPLICAS] = str((dep.get("spec") or {}).get("replicas", 1))

    def _new_replica_set(self, dep: JSON, revision: int) -> JSON:
        meta, spec = _meta(dep), dep.get("spec") or {}
        namespace = meta["namespace"]
        template = copy.deepcopy(spec.get("template") or {})
        pod_hash = _template_hash(template)
        template_meta = template.setdefault("metadata", {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}), POD_TEMPLATE_HASH: pod_hash}
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), POD_TEMPLATE_HASH: pod_hash}
        desired = int(spec.get("replicas", 1))
        surge = _scaled(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", "25%"), desired, True
        )
        rs: JSON = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "namespace": namespace,
                "uid": self._next_uid(),
                "generation": 1,
                "creationTimestamp": _ts(),
                "labels": dict(template_meta["labels"]),
                "annotations": {
                    REVISION: str(revision),
                    DESIRED_REPLICAS: str(desired),
                    MAX_REPLICAS: str(desired + surge),
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"replicas": 0, "minReadySeconds": 0, "selector": selector, "template": template},
            "status": {"replicas": 0, "observedGeneration": 1},
        }
        self._copy_annotations(dep, rs)
        key = (namespace, meta["name"])
        if key in self._fail_next_rollout and any(self._owned("replicasets", namespace, meta["uid"])):
            self._fail_next_rollout.discard(key)
            rs_uid = rs["metadata"]["uid"]
            self._stalled_rs.add(rs_uid)
            self._schedule(self.rollout_delay, lambda: self._deadline_exceeded.add(rs_uid))
        self._store_put(RESOURCES["replicasets"], rs)
        return rs

    def _scale_rs(self, dep: JSON, rs: JSON, replicas: int) -> bool:
        spec = rs.setdefault("spec", {})
        current = int(spec.get("replicas", 0))
        if current == replicas:
            return False
        spec["replicas"] = replicas
        _meta(rs)["generation"] = int(_meta(rs).get("generation", 1)) + 1
        _annotations(rs)[DESIRED_REPLICAS] = str((dep.get("spec") or {}).get("replicas", 1))
        self._store_put(RESOURCES["replicasets"], rs)
        direction = "up" if replicas > current else "down"
        self._event(
            dep,
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {_meta(rs)['name']} from {current} to {replicas}",
            component="deployment-controller",
        )
        return True

    def _sync_rs_pods(self, rs: JSON) -> bool:
        meta = _meta(rs)
        namespace, uid = meta["namespace"], meta["uid"]
        wanted = int((rs.get("spec") or {}).get("replicas", 0))
        pods = self._owned("pods", namespace, uid)
        changed = False
        if len(pods) > wanted:
            # Scale down: not-ready pods first, then the newest.
            victims = sorted(
                pods, key=lambda p: (_pod_ready(p), _meta(p)["creationTimestamp"], _meta(p)["name"])
            )
            for pod in victims[: len(pods) - wanted]:
                self._delete_pod(pod, reason="scale down")
            changed = True
        for _ in range(wanted - len(pods)):
            self._create_pod_for(
                rs, "ReplicaSet", f"{meta['name']}-{self._suffix()}", uid in self._stalled_rs
            )
            changed = True
        return changed

    def _create_pod_for(
        self, owner: JSON, owner_kind: str, name: str, crashing: bool, node: str | None = None
    ) -> JSON:
        owner_meta = _meta(owner)
        template = copy.deepcopy(((owner.get("spec") or {}).get("template")) or {})
        template_meta = template.get("metadata") or {}
        node = node or self._pick_node()
        pod_spec = template.get("spec") or {}
        pod_spec.setdefault("restartPolicy", "Always")
        pod_spec.setdefault("terminationGracePeriodSeconds", 30)
        pod_spec.setdefault("serviceAccountName", "default")
        if node:
            pod_spec["nodeName"] = node
        pod: JSON = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": owner_meta["namespace"],
                "uid": self._next_uid(),
                "creationTimestamp": _ts(),
                "labels": dict(template_meta.get("labels") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": owner.get("apiVersion", "apps/v1"),
                        "kind": owner_kind,
                        "name": owner_meta["name"],
                        "uid": owner_meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
            "status": self._pod_status(pod_spec, "pending" if node else "unscheduled"),
        }
        if template_meta.get("annotations"):
            pod["metadata"]["annotations"] = dict(template_meta["annotations"])
        self._store_put(RESOURCES["pods"], pod)
        self._event(
            owner, "SuccessfulCreate", f"Created pod: {name}", component=f"{owner_kind.lower()}-controller"
        )
        pod_uid = pod["metadata"]["uid"]
        if crashing:
            self._schedule(
                self.rollout_delay,
                lambda: self._set_pod_state(owner_meta["namespace"], name, pod_uid, "crash"),
            )
        elif node:
            self._schedule(
                self.rollout_delay,
                lambda: self._set_pod_state(owner_meta["namespace"], name, pod_uid, "ready"),
            )
        return pod

    def _pod_status(self, pod_spec: JSON, state: str, started: str | None = None) -> JSON:
        now = _ts()
        ready = state in ("ready", "succeeded")
        containers = []
        for container in pod_spec.get("containers") or []:
            status: JSON = {
                "name": container.get("name"),
                "image": container.get("image"),
                "imageID": "",
                "ready": state == "ready",
                "restartCount": 0,
                "started": state == "ready",
            }
            if state == "ready":
                status["state"] = {"running": {"startedAt": started or now}}
            elif state == "crash":
                status["restartCount"] = 3
                status["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off 40s restarting failed container={container.get('name')}",
                    }
                }
                status["lastState"] = {
                    "terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}
                }
            elif state == "succeeded":
                status["state"] = {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": started or now,
                        "finishedAt": now,
                    }
                }
            else:
                status["state"] = {"waiting": {"reason": "ContainerCreating"}}
            containers.append(status)
        phase = {"ready": "Running", "crash": "Running", "succeeded": "Succeeded"}.get(state, "Pending")
        conditions = [
            {
                "type": "PodScheduled",
                "status": "False" if state == "unscheduled" else "True",
                "lastTransitionTime": now,
            }
        ]
        if state != "unscheduled":
            conditions.append(
                {
                    "type": "Ready",
                    "status": "True" if ready and state == "ready" else "False",
                    "lastTransitionTime": now,
                }
            )
            conditions.append(
                {
                    "type": "ContainersReady",
                    "status": "True" if state == "ready" else "False",
                    "lastTransitionTime": now,
                }
            )
        status_obj: JSON = {"phase": phase, "conditions": conditions, "qosClass": "Burstable"}
        if state != "unscheduled":
            status_obj["containerStatuses"] = containers
            status_obj["startTime"] = started or now
            status_obj["podIP"] = f"10.244.{self._state.uid % 3}.{(self._state.uid * 7) % 250 + 2}"
            status_obj["hostIP"] = "10.0.0.1"
        else:
            conditions[0]["reason"] = "Unschedulable"
            conditions[0]["message"] = "0/3 nodes are available: 3 node(s) were unschedulable."
        return status_obj

    def _set_pod_state(self, namespace: str, name: str, uid: str, state: str) -> None:
        pod = self._obj("pods", namespace, name)
        if pod is None or _meta(pod)["uid"] != uid:
            return
        pod["status"] = self._pod_status(
            pod.get("spec") or {}, state, (pod.get("status") or {}).get("startTime")
        )
        self._store_put(RESOURCES["pods"], pod)

    def _delete_pod(self, pod: JSON, *, reason: str) -> None:
        self._store_delete(RESOURCES["pods"], pod)
        for container in (pod.get("spec") or {}).get("containers") or []:
            self._event(pod, "Killing", f"Stopping container {container.get('name')}", component="kubelet")
        ref = _controller_ref(pod) or {}
        if ref.get("kind") == "StatefulSet" and reason != "scale down":
            # StatefulSet pods come back with the same name (and a new uid).
            meta = _meta(pod)
            owner = {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": ref["name"], "namespace": meta["namespace"], "uid": ref["uid"]},
                "spec": {
                    "template": {
                        "metadata": {"labels": dict(meta.get("labels") or {})},
                        "spec": {k: v for k, v in (pod.get("spec") or {}).items() if k != "nodeName"},
                    }
                },
            }
            self._create_pod_for(owner, "StatefulSet", meta["name"], False)

    def _update_rs_status(self, rs: JSON) -> None:
        meta = _meta(rs)
        pods = self._owned("pods", meta["namespace"], meta["uid"])
        ready = sum(1 for p in pods if _pod_ready(p))
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": meta.get("generation", 1),
        }
        if status != rs.get("status"):
            rs["status"] = status
            self._store_put(RESOURCES["replicasets"], rs)

    def _update_deployment_status(self, dep: JSON) -> None:
        meta, spec = _meta(dep), dep.get("spec") or {}
        namespace = meta["namespace"]
        desired = int(spec.get("replicas", 1))
        owned = self._owned("replicasets", namespace, meta["uid"])
        new_rs = next(
            (
                rs
                for rs in owned
                if _templates_equal((rs.get("spec") or {}).get("template"), spec.get("template"))
            ),
            None,
        )
        pods = [p for rs in owned for p in self._owned("pods", namespace, _meta(rs)["uid"])]
        new_pods = self._owned("pods", namespace, _meta(new_rs)["uid"]) if new_rs else []
        ready = sum(1 for p in pods if _pod_ready(p))
        updated = len(new_pods)
        old_status = dep.get("status") or {}
        max_unavailable = _scaled(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%"),
            desired,
            False,
        )
        rs_name = _meta(new_rs)["name"] if new_rs else ""
        complete = (
            new_rs is not None
            and updated == desired
            and len(pods) == desired
            and sum(1 for p in new_pods if _pod_ready(p)) == desired
        )
        if spec.get("paused"):
            progressing = ("Unknown", "DeploymentPaused", "Deployment is paused")
        elif new_rs is not None and _meta(new_rs)["uid"] in self._deadline_exceeded:
            progressing = (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
            )
        elif complete:
            progressing = (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        available = (
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            if ready >= desired - max_unavailable
            else ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        )
        previous = {c.get("type"): c for c in old_status.get("conditions") or []}
        conditions = []
        for cond_type, (status, reason, message) in (("Available", available), ("Progressing", progressing)):
            prev = previous.get(cond_type) or {}
            same = (
                prev.get("status") == status
                and prev.get("reason") == reason
                and prev.get("message") == message
            )
            conditions.append(
                {
                    "type": cond_type,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastUpdateTime": prev.get("lastUpdateTime") if same else _ts(),
                    "lastTransitionTime": prev.get("lastTransitionTime")
                    if prev.get("status") == status
                    else _ts(),
                }
            )
        status_obj: JSON = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(pods),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": conditions,
        }
        if desired - ready > 0:
            status_obj["unavailableReplicas"] = max(len(pods), desired) - ready
        for key in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
            if status_obj[key] == 0:
                del status_obj[key]
        if status_obj != old_status:
            dep["status"] = status_obj
            self._store_put(RESOURCES["deployments"], dep)

    def _start_job(self, job: JSON) -> None:
        meta = _meta(job)
        job["status"] = {"startTime": _ts(), "active": 1, "ready": 0}
        self._store_put(RESOURCES["jobs"], job)
        pod = self._create_pod_for(job, "Job", f"{meta['name']}-{self._suffix()}", False)
        pod_name, namespace, job_name = _meta(pod)["name"], meta["namespace"], meta["name"]

        def finish() -> None:
            current = self._obj("jobs", namespace, job_name)
            pod_now = self._obj("pods", namespace, pod_name)
            if current is None or pod_now is None:
                return
            pod_now["status"] = self._pod_status(pod_now.get("spec") or {}, "succeeded")
            self._store_put(RESOURCES["pods"], pod_now)
            now = _ts()
            current["status"] = {
                "startTime": (current.get("status") or {}).get("startTime", now),
                "completionTime": now,
                "succeeded": 1,
                "ready": 0,
                "conditions": [
                    {
                        "type": "SuccessCriteriaMet",
                        "status": "True",
                        "lastProbeTime": now,
                        "lastTransitionTime": now,
                    },
                    {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now},
                ],
            }
            self._store_put(RESOURCES["jobs"], current)

        # Pod readiness runs first (same delay, scheduled earlier), then the job completes.
        self._schedule(self.rollout_delay * 2, finish)

    def _budgets_for(self, pod: JSON) -> list[JSON]:
        namespace = _meta(pod)["namespace"]
        return [
            pdb
            for pdb in self._objects("poddisruptionbudgets", namespace)
            if selector_matches((pdb.get("spec") or {}).get("selector"), _labels(pod))
        ]

    def _budget(self, pdb: JSON) -> _Budget:
        meta, spec = _meta(pdb), pdb.get("spec") or {}
        pods = [
            p
            for p in self._objects("pods", meta["namespace"])
            if selector_matches(spec.get("selector"), _labels(p))
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        expected = 0
        seen: set[str] = set()
        for pod in pods:
            ref = _controller_ref(pod)
            scale_owner = self._scale_owner(meta["namespace"], ref)
            if scale_owner is None:
                expected += 1
            elif _meta(scale_owner)["uid"] not in seen:
                seen.add(_meta(scale_owner)["uid"])
                expected += int((scale_owner.get("spec") or {}).get("replicas", 1))
        healthy = sum(1 for p in pods if _pod_ready(p))
        if "minAvailable" in spec:
            desired = _scaled(spec["minAvailable"], expected, True)
        elif "maxUnavailable" in spec:
            desired = max(expected - _scaled(spec["maxUnavailable"], expected, True), 0)
        else:
            desired = expected
        return _Budget(pdb, healthy, desired, expected, max(healthy - desired, 0))

    def _scale_owner(self, namespace: str, ref: JSON | None) -> JSON | None:
        if not ref or ref.get("kind") != "ReplicaSet":
            return None
        rs = self._obj("replicasets", namespace, ref.get("name", ""))
        if rs is None:
            return None
        dep_ref = _controller_ref(rs)
        if dep_ref and dep_ref.get("kind") == "Deployment":
            return self._obj("deployments", namespace, dep_ref.get("name", "")) or rs
        return rs

    def _update_pdbs(self) -> None:
        for pdb in self._objects("poddisruptionbudgets"):
            budget = self._budget(pdb)
            old = pdb.get("status") or {}
            allowed = budget.allowed > 0
            prev_cond: JSON = next(iter(old.get("conditions") or []), {})
            cond_status = "True" if allowed else "False"
            status = {
                "observedGeneration": _meta(pdb).get("generation", 1),
                "disruptionsAllowed": budget.allowed,
                "currentHealthy": budget.healthy,
                "desiredHealthy": budget.desired,
                "expectedPods": budget.expected,
                "conditions": [
                    {
                        "type": "DisruptionAllowed",
                        "status": cond_status,
                        "reason": "SufficientPods" if allowed else "InsufficientPods",
                        "message": "",
                        "observedGeneration": _meta(pdb).get("generation", 1),
                        "lastTransitionTime": prev_cond.get("lastTransitionTime")
                        if prev_cond.get("status") == cond_status
                        else _ts(),
                    }
                ],
            }
            if status != old:
                pdb["status"] = status
                self._store_put(RESOURCES["poddisruptionbudgets"], pdb)

    # ------------------------------------------------------------------ HTTP

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        body: Any = None
        raw = await request.read() if request.can_read_body else b""
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query={k: request.query.getall(k) for k in request.query},
            content_type=request.headers.get("Content-Type", ""),
            body=body,
        )
        self.requests.append(record)
        request[_RECORD] = record
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            response: web.StreamResponse = await handler(request)
        except ApiError as err:
            response = web.json_response(err.status(), status=err.code)
        record.status = response.status
        self._notify()
        return response

    def _parse_route(self, path: str) -> _Route:
        parts = [p for p in path.split("/") if p]
        if parts in (["version"], ["api"], ["apis"]):
            return _Route(None, None, None, None, discovery="/".join(parts))
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        elif len(parts) == 2 and parts[0] == "apis":
            return _Route(None, None, None, None, discovery="/".join(parts))
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return _Route(None, None, None, None, discovery="/".join(parts))
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in _BY_GROUP_VERSION:
            namespace, rest = rest[1], rest[2:]
        info = _BY_GROUP_VERSION.get((group, version, rest[0]))
        if info is None or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if namespace is not None and not info.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and (info.plural, sub) not in _SUBRESOURCES:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return _Route(info, namespace, name, sub)

    @staticmethod
    def _verb(method: str, route: _Route, request: web.Request) -> str:
        if method == "GET":
            if route.sub == "exec":
                return "create"
            if route.name is None:
                return "watch" if _truthy(request.query.get("watch")) else "list"
            return "get"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, method.lower()
        )

    def _authorize(self, verb: str, route: _Route) -> None:
        info = route.info
        assert info is not None
        resource = f"{info.plural}/{route.sub}" if route.sub else info.plural
        if (verb, resource) not in self.denied and (
            route.namespace is None or route.namespace not in self.forbidden_namespaces
        ):
            return
        subject = f'{info.qualified} "{route.name}"' if route.name else info.qualified
        scope = f'in the namespace "{route.namespace}"' if route.namespace else "at the cluster scope"
        raise ApiError(
            403,
            "Forbidden",
            f'{subject} is forbidden: User "{self.user}" cannot {verb} resource "{resource}" '
            f'in API group "{info.group}" {scope}',
            {"name": route.name, "group": info.group, "kind": info.plural}
            if route.name
            else {"group": info.group, "kind": info.plural},
        )

    def _fault(self, method: str, route: _Route) -> None:
        assert route.info is not None
        resource = f"{route.info.plural}/{route.sub}" if route.sub else route.info.plural
        for fault in self._faults:
            if fault.remaining > 0 and fault.method == method and fault.resource == resource:
                fault.remaining -= 1
                details = {"name": route.name, "group": route.info.group, "kind": route.info.plural}
                raise ApiError(fault.status, fault.reason, fault.message, details)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        route = self._parse_route(request.path)
        if route.discovery is not None:
            return web.json_response(self._discovery(route.discovery))
        info = route.info
        assert info is not None
        method = request.method
        verb = self._verb(method, route, request)
        self._authorize(verb, route)
        self._fault(method, route)
        dry_run = self._dry_run(request)
        if route.sub == "exec":
            return await self._exec_handler(request, route)
        if route.sub == "log":
            return self._log_handler(request, route)
        if method == "GET":
            if route.name is None:
                if verb == "watch":
                    raise _bad_request("watch is not supported by the sandbox")
                return web.json_response(self._list_response(info, route.namespace, request))
            obj = self._obj(info.plural, route.namespace, route.name)
            if obj is None:
                raise _not_found(info, route.name)
            if route.sub == "scale":
                return web.json_response(self._scale_view(obj))
            return web.json_response(obj)
        body = await self._json_body(request)
        if method == "POST":
            if route.sub == "eviction" and route.name:
                return self._evict(route.namespace or "", route.name, body, dry_run)
            if route.name is not None or not isinstance(body, dict):
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            created = self._create(info, route.namespace, body, dry_run=dry_run)
            return web.json_response(created, status=201)
        if method == "PATCH" and route.name:
            return web.json_response(self._patch(request, info, route, body, dry_run))
        if method == "PUT" and route.name:
            if not isinstance(body, dict):
                raise _bad_request("the body of the request is not a JSON object")
            replacement = body
            result = self._apply_write(
                info,
                route.namespace,
                route.name,
                route.sub,
                lambda _view: copy.deepcopy(replacement),
                dry_run=dry_run,
            )
            return web.json_response(result)
        if method == "DELETE" and route.name:
            return web.json_response(self._delete(info, route, request, body, dry_run))
        raise ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    @staticmethod
    def _dry_run(request: web.Request) -> bool:
        values = request.query.getall("dryRun", [])
        for value in values:
            if value != "All":
                raise _invalid(
                    ResourceInfo("", "DryRun", "", "v1", False),
                    "",
                    [("dryRun", f'Unsupported value: "{value}"')],
                )
        return bool(values)

    async def _json_body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _bad_request(f"the body of the request could not be decoded: {exc}") from None

    def _patch(
        self, request: web.Request, info: ResourceInfo, route: _Route, body: Any, dry_run: bool
    ) -> JSON:
        content_type = request.content_type
        if content_type not in PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(PATCH_TYPES)}, application/apply-patch+yaml",
            )
        field_manager = request.query.get("fieldManager")
        if field_manager is not None and (len(field_manager) > 128 or not field_manager.isprintable()):
            raise _invalid(
                info,
                route.name or "",
                [("fieldManager", "Invalid value: must be <= 128 printable characters")],
            )
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise _bad_request("json patch must be a list of operations")

            def change(view: JSON) -> JSON:
                result = json_patch(view, body)
                assert isinstance(result, dict)
                return result
        else:
            if not isinstance(body, dict):
                raise _bad_request("the body of the request is not a JSON object")
            merge = strategic_merge if content_type.startswith("application/strategic") else json_merge_patch

            def change(view: JSON) -> JSON:
                result = merge(view, body)
                assert isinstance(result, dict)
                return result

        assert route.name is not None
        return self._apply_write(info, route.namespace, route.name, route.sub, change, dry_run=dry_run)

    def _delete(
        self, info: ResourceInfo, route: _Route, request: web.Request, body: Any, dry_run: bool
    ) -> JSON:
        assert route.name is not None
        obj = self._obj(info.plural, route.namespace, route.name)
        if obj is None:
            raise _not_found(info, route.name)
        options = body if isinstance(body, dict) else {}
        if "All" in (options.get("dryRun") or []):
            dry_run = True
        preconditions = options.get("preconditions") or {}
        meta = _meta(obj)
        if preconditions.get("uid") not in (None, meta["uid"]):
            raise ApiError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: {meta['uid']}",
                {"name": route.name, "group": info.group, "kind": info.plural},
            )
        if preconditions.get("resourceVersion") not in (None, meta["resourceVersion"]):
            raise _conflict(info, route.name)
        result = copy.deepcopy(obj)
        grace = request.query.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        if info.plural == "pods":
            result["metadata"]["deletionTimestamp"] = _ts()
            result["metadata"]["deletionGracePeriodSeconds"] = int(
                grace
                if grace is not None
                else (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            )
        if dry_run:
            return result
        if info.plural == "pods":
            self._delete_pod(obj, reason="delete")
        else:
            self._store_delete(info, obj)
        self._settle()
        return result

    def _evict(self, namespace: str, name: str, body: Any, dry_run: bool) -> web.Response:
        info = RESOURCES["pods"]
        if not isinstance(body, dict) or body.get("kind") not in (None, "Eviction"):
            raise _bad_request("the body of the request must be an Eviction")
        if (body.get("metadata") or {}).get("name") not in (None, name):
            raise _bad_request(f"name in URL does not match name in Eviction object: {name}")
        pod = self._obj("pods", namespace, name)
        if pod is None:
            raise _not_found(info, name)
        options = body.get("deleteOptions") or {}
        if "All" in (options.get("dryRun") or []):
            dry_run = True
        budgets = self._budgets_for(pod)
        phase = (pod.get("status") or {}).get("phase")
        if len(budgets) > 1:
            raise ApiError(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            )
        if budgets and phase not in ("Pending", "Succeeded", "Failed"):
            budget = self._budget(budgets[0])
            healthy_pod = _pod_ready(pod)
            blocked = budget.allowed <= 0 if healthy_pod else budget.healthy < budget.desired
            if blocked:
                pdb_name = _meta(budgets[0])["name"]
                raise ApiError(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    {
                        "causes": [
                            {
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {pdb_name} needs {budget.desired} healthy pods "
                                f"and has {budget.healthy} currently",
                            }
                        ]
                    },
                )
        if not dry_run:
            self._delete_pod(pod, reason="eviction")
            self._settle()
        return web.json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
            status=201,
        )

    def _list_response(self, info: ResourceInfo, namespace: str | None, request: web.Request) -> JSON:
        label_selector = request.query.get("labelSelector")
        field_selector = request.query.get("fieldSelector")
        items = []
        for obj in self._objects(info.plural, namespace):
            if not label_selector_matches(_labels(obj), label_selector):
                continue
            if not field_selector_matches(obj, field_selector):
                continue
            item = copy.deepcopy(obj)
            item.pop("apiVersion", None)
            item.pop("kind", None)
            items.append(item)
        return {
            "kind": f"{info.kind}List",
            "apiVersion": info.api_version,
            "metadata": {"resourceVersion": str(self._state.rv)},
            "items": items,
        }

    def _scale_view(self, dep: JSON) -> JSON:
        meta = _meta(dep)
        status = dep.get("status") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
                "creationTimestamp": meta.get("creationTimestamp"),
            },
            "spec": {"replicas": (dep.get("spec") or {}).get("replicas", 1)},
            "status": {
                "replicas": status.get("replicas", 0),
                "selector": selector_to_string((dep.get("spec") or {}).get("selector")),
            },
        }

    def _discovery(self, path: str) -> JSON:
        if path == "version":
            return {
                "major": "1",
                "minor": "34",
                "gitVersion": "v1.34.0-sandbox",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24.0",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if path == "api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}
                ],
            }
        groups = sorted(
            {(r.group, r.version) for r in RESOURCES.values() if r.group} | {("autoscaling", "v1")}
        )
        if path == "apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                        "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                    }
                    for g, v in groups
                ],
            }
        parts = path.split("/")
        group_version = "v1" if parts[0] == "api" else "/".join(parts[1:3])
        resources = []
        for r in RESOURCES.values():
            if r.api_version != group_version:
                continue
            resources.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update"],
                }
            )
            for plural, sub in sorted(_SUBRESOURCES):
                if plural == r.plural:
                    kind = {"scale": "Scale", "eviction": "Eviction"}.get(sub, r.kind)
                    resources.append(
                        {
                            "name": f"{plural}/{sub}",
                            "singularName": "",
                            "namespaced": r.namespaced,
                            "kind": kind,
                            "verbs": ["create"]
                            if sub in ("eviction", "exec")
                            else ["get", "patch", "update"],
                        }
                    )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }

    # ------------------------------------------------------------------ logs and exec

    def _container_for(self, pod: JSON, container: str | None) -> str:
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        pod_name = _meta(pod)["name"]
        if container:
            if container not in names:
                raise _bad_request(f"container {container} is not valid for pod {pod_name}")
            return container
        if len(names) != 1:
            raise _bad_request(
                f"a container name must be specified for pod {pod_name}, choose one of: [{' '.join(map(str, names))}]"
            )
        return str(names[0])

    def _log_handler(self, request: web.Request, route: _Route) -> web.Response:
        assert route.name is not None
        pod = self._obj("pods", route.namespace, route.name)
        if pod is None:
            raise _not_found(RESOURCES["pods"], route.name)
        container = self._container_for(pod, request.query.get("container"))
        if (pod.get("status") or {}).get("phase") == "Pending":
            raise _bad_request(
                f'container "{container}" in pod "{route.name}" is waiting to start: ContainerCreating'
            )
        lines = self._logs.get((route.namespace or "", route.name)) or self._canned_logs(pod, container)
        tail = request.query.get("tailLines")
        if tail is not None:
            count = int(tail)
            lines = lines[-count:] if count > 0 else []
        if _truthy(request.query.get("timestamps")):
            start = _now() - timedelta(seconds=len(lines))
            lines = [
                f"{(start + timedelta(seconds=i)).strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z {line}"
                for i, line in enumerate(lines)
            ]
        text = "".join(f"{line}\n" for line in lines)
        return web.Response(text=text, content_type="text/plain")

    @staticmethod
    def _canned_logs(pod: JSON, container: str) -> list[str]:
        name = _meta(pod)["name"]
        lines = []
        for i in range(60):
            if i % 17 == 16:
                lines.append(
                    json.dumps(
                        {
                            "level": "error",
                            "msg": "upstream request failed",
                            "error": "context deadline exceeded",
                            "pod": name,
                            "container": container,
                            "seq": i,
                        }
                    )
                )
            elif i % 9 == 8:
                lines.append(
                    json.dumps(
                        {"level": "warn", "msg": "slow query", "duration_ms": 1200 + i, "pod": name, "seq": i}
                    )
                )
            else:
                lines.append(
                    json.dumps(
                        {"level": "info", "msg": "request handled", "status": 200, "pod": name, "seq": i}
                    )
                )
        return lines

    def _exec_reply(self, argv: tuple[str, ...]) -> ExecReply | None:
        if argv in self._exec:
            return self._exec[argv]
        if not argv:
            return None
        program = argv[0].rsplit("/", 1)[-1]
        if program == "echo":
            return ExecReply(stdout=" ".join(argv[1:]) + "\n")
        if program == "true":
            return ExecReply()
        if program == "false":
            return ExecReply(exit_code=1)
        if program == "psql":
            query = argv[argv.index("-c") + 1] if "-c" in argv[:-1] else ""
            lowered = query.lower()
            if "pg_terminate_backend" in lowered:
                return ExecReply(
                    stdout=" pg_terminate_backend \n----------------------\n t\n t\n(2 rows)\n\n"
                )
            if "count(*)" in lowered and "pg_stat_activity" in lowered:
                return ExecReply(stdout=" count \n-------\n    87\n(1 row)\n\n")
            if "pg_stat_activity" in lowered:
                return ExecReply(
                    stdout=" pid  |    duration     | state  | query\n"
                    "------+-----------------+--------+------------------------------\n"
                    " 4312 | 00:07:12.004211 | active | SELECT * FROM quests WHERE ...\n"
                    " 4377 | 00:02:40.918273 | active | UPDATE users SET xp = xp + ...\n"
                    "(2 rows)\n\n"
                )
            if query:
                return ExecReply(
                    stderr=f'ERROR:  relation "{query.split()[-1].rstrip(";")}" does not exist\n', exit_code=1
                )
            return ExecReply(
                stderr="psql: error: no query given (interactive psql needs a TTY)\n", exit_code=2
            )
        if program == "redis-cli":
            return ExecReply(
                stdout="# Memory\nused_memory:104857600\nused_memory_human:100.00M\nmaxmemory:0\n"
            )
        return None

    async def _exec_handler(self, request: web.Request, route: _Route) -> web.StreamResponse:
        assert route.name is not None
        pod = self._obj("pods", route.namespace, route.name)
        if pod is None:
            raise _not_found(RESOURCES["pods"], route.name)
        container = self._container_for(pod, request.query.get("container"))
        if (pod.get("status") or {}).get("phase") != "Running":
            raise _bad_request(f'unable to upgrade connection: container not found ("{container}")')
        argv = tuple(request.query.getall("command", []))
        if not argv:
            raise _bad_request("you must specify at least 1 command")
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"))
        if not ws.can_prepare(request).ok:
            raise _bad_request("Upgrade request required")
        await ws.prepare(request)
        request[_RECORD].status = 101
        self._notify()
        self._websockets.add(ws)
        try:
            reply = self._exec_reply(argv)
            want_stdout = _truthy(request.query.get("stdout", "true"))
            want_stderr = _truthy(request.query.get("stderr", "true"))
            if reply is None:
                message = (
                    "Internal error occurred: error executing command in container: failed to exec in container: "
                    f"failed to start exec: OCI runtime exec failed: exec failed: unable to start container "
                    f'process: exec: "{argv[0]}": executable file not found in $PATH: unknown'
                )
                status: JSON = {
                    "metadata": {},
                    "status": "Failure",
                    "message": message,
                    "reason": "InternalError",
                    "details": {"causes": [{"message": message}]},
                    "code": 500,
                }
            else:
                if reply.stdout and want_stdout:
                    await ws.send_bytes(b"\x01" + reply.stdout.encode())
                if reply.stderr and want_stderr:
                    await ws.send_bytes(b"\x02" + reply.stderr.encode())
                if reply.exit_code == 0:
                    status = {"metadata": {}, "status": "Success"}
                else:
                    status = {
                        "metadata": {},
                        "status": "Failure",
                        "message": f"command terminated with non-zero exit code: error executing command "
                        f"[{' '.join(argv)}], exit code {reply.exit_code}",
                        "reason": "NonZeroExitCode",
                        "details": {"causes": [{"reason": "ExitCode", "message": str(reply.exit_code)}]},
                    }
            await ws.send_bytes(b"\x03" + json.dumps(status).encode())
            await ws.close()
        finally:
            self._websockets.discard(ws)
        return ws

    # ------------------------------------------------------------------ demo data

    def seed_demo(self) -> None:
        """The seed systems: SkillQuest, Birthday Scheduler, SkillForge (api, data-pipelines), monitoring."""
        self._immediate = True
        try:
            self._seed()
        finally:
            self._immediate = False

    def _seed(self) -> None:
        created = _now() - timedelta(days=30)
        for ns in (
            "default",
            "kube-system",
            "skillquest",
            "birthday-scheduler",
            "api",
            "data-pipelines",
            "monitoring",
        ):
            self.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": ns,
                        "labels": {"kubernetes.io/metadata.name": ns},
                        "creationTimestamp": _ts(created),
                    },
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }
            )
        for i in range(1, 4):
            name = f"worker-{i}"
            self.create(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "creationTimestamp": _ts(created),
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "node.kubernetes.io/instance-type": "m6i.xlarge",
                            "topology.kubernetes.io/zone": f"eu-west-1{'abc'[i - 1]}",
                        },
                    },
                    "spec": {
                        "podCIDR": f"10.244.{i}.0/24",
                        "providerID": f"aws:///eu-west-1{'abc'[i - 1]}/i-0{i}",
                    },
                    "status": {
                        "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                        "allocatable": {"cpu": "3920m", "memory": "15Gi", "pods": "110"},
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "True",
                                "reason": "KubeletReady",
                                "message": "kubelet is posting ready status",
                                "lastHeartbeatTime": _ts(),
                                "lastTransitionTime": _ts(created),
                            },
                            {
                                "type": "MemoryPressure",
                                "status": "False",
                                "reason": "KubeletHasSufficientMemory",
                                "message": "kubelet has sufficient memory available",
                                "lastHeartbeatTime": _ts(),
                                "lastTransitionTime": _ts(created),
                            },
                        ],
                        "addresses": [
                            {"type": "InternalIP", "address": f"10.0.{i}.10"},
                            {"type": "Hostname", "address": name},
                        ],
                        "nodeInfo": {
                            "machineID": f"m{i}",
                            "systemUUID": f"s{i}",
                            "bootID": f"b{i}",
                            "kernelVersion": "6.1.0-27-cloud-amd64",
                            "osImage": "Debian GNU/Linux 12 (bookworm)",
                            "containerRuntimeVersion": "containerd://1.7.24",
                            "kubeletVersion": "v1.34.0",
                            "kubeProxyVersion": "v1.34.0",
                            "operatingSystem": "linux",
                            "architecture": "amd64",
                        },
                    },
                }
            )
            # A DaemonSet pod and a mirror pod on every node: drain skips both.
            self._seed_pod(
                "monitoring",
                f"node-exporter-{self._suffix()}",
                name,
                {"app.kubernetes.io/name": "node-exporter"},
                "quay.io/prometheus/node-exporter:v1.8.2",
                "node-exporter",
                owner=("apps/v1", "DaemonSet", "node-exporter"),
            )
            self._seed_pod(
                "kube-system",
                f"kube-proxy-{name}",
                name,
                {"k8s-app": "kube-proxy"},
                "registry.k8s.io/kube-proxy:v1.34.0",
                "kube-proxy",
                owner=("v1", "Node", name),
                annotations={MIRROR_ANNOTATION: f"mirror-{name}"},
            )

        apps = [
            (
                "skillquest",
                "skillquest-api",
                "api",
                3,
                "registry.skillquest.io/skillquest-api",
                ("1.14.2", "1.15.0"),
                {"MAINTENANCE_MODE": "false", "LOG_LEVEL": "info"},
                ("250m", "512Mi", "1", "1Gi"),
                False,
            ),
            (
                "skillquest",
                "skillquest-worker",
                "worker",
                2,
                "registry.skillquest.io/skillquest-worker",
                ("1.14.2", "1.15.0"),
                {"QUEUE": "default"},
                ("250m", "512Mi", "1", "1Gi"),
                False,
            ),
            (
                "birthday-scheduler",
                "birthday-scheduler-api",
                "api",
                2,
                "ghcr.io/birthday/birthday-scheduler-api",
                ("2.3.1", "2.4.0"),
                {"DATABASE_POOL_MAX": "20", "NODE_ENV": "production"},
                ("200m", "256Mi", "500m", "512Mi"),
                False,
            ),
            (
                "birthday-scheduler",
                "birthday-scheduler-worker",
                "worker",
                3,
                "ghcr.io/birthday/birthday-scheduler-worker",
                ("2.3.1", "2.4.0"),
                {"WORKER_CONCURRENCY": "10", "NODE_ENV": "production"},
                ("250m", "512Mi", "500m", "512Mi"),
                False,
            ),
            (
                "birthday-scheduler",
                "birthday-scheduler-scheduler",
                "scheduler",
                1,
                "ghcr.io/birthday/birthday-scheduler-scheduler",
                ("2.3.1", "2.4.0"),
                {"NODE_ENV": "production"},
                ("100m", "128Mi", "250m", "256Mi"),
                False,
            ),
            (
                "api",
                "search-api",
                "search-api",
                6,
                "registry.skillforge.dev/search-api",
                ("3.7.0", "3.8.1"),
                {"CACHE_TTL_SECONDS": "300"},
                ("500m", "1Gi", "1", "2Gi"),
                False,
            ),
            (
                "data-pipelines",
                "analytics-event-router",
                "router",
                2,
                "registry.skillforge.dev/analytics-event-router",
                ("0.9.4", "0.9.5"),
                {"KAFKA_BROKERS": "kafka:9092"},
                ("250m", "256Mi", "500m", "512Mi"),
                True,
            ),
        ]
        for ns, name, container, replicas, image, (old, new), env, res, scratch in apps:
            self._seed_deployment(ns, name, container, replicas, image, old, new, env, res, scratch)

        self._seed_pod(
            "skillquest",
            "skillquest-postgres-0",
            None,
            {"app": "skillquest-postgres"},
            "postgres:16.4",
            "postgres",
            owner=("apps/v1", "StatefulSet", "skillquest-postgres"),
        )
        self._seed_pod(  # the name the SkillQuest runbook (and its playbook) uses
            "skillquest",
            "postgres-0",
            None,
            {"app": "postgres"},
            "postgres:16.4",
            "postgres",
            owner=("apps/v1", "StatefulSet", "postgres"),
        )
        self._seed_pod(
            "birthday-scheduler",
            "postgres-0",
            None,
            {"app": "postgres"},
            "postgres:16.4",
            "postgres",
            owner=("apps/v1", "StatefulSet", "postgres"),
        )
        self.create(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "search-api-pdb", "namespace": "api"},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "search-api"}}},
            }
        )
        self._seed_cronjob(
            "data-pipelines",
            "analytics-backfill",
            "0 3 * * *",
            "registry.skillforge.dev/analytics-backfill:0.9.5",
            ["python", "-m", "backfill", "--since=24h"],
        )
        self._seed_cronjob(
            "api",
            "search-cache-warm",
            "*/30 * * * *",
            "registry.skillforge.dev/search-api:3.8.1",
            ["search-api", "cache-warm", "--top=5000"],
        )
        crashing = self.deployment_pods("birthday-scheduler", "birthday-scheduler-worker")[0]
        self._event(
            crashing,
            "BackOff",
            f"Back-off restarting failed container worker in pod {_meta(crashing)['name']}",
            type_="Warning",
            component="kubelet",
        )
        self._event(
            crashing,
            "OOMKilling",
            "Memory cgroup out of memory: Killed process 2231 (node)",
            type_="Warning",
            component="kernel-monitor",
        )

    def _seed_pod(
        self,
        namespace: str,
        name: str,
        node: str | None,
        labels: dict[str, str],
        image: str,
        container: str,
        *,
        owner: tuple[str, str, str],
        annotations: dict[str, str] | None = None,
    ) -> None:
        api_version, kind, owner_name = owner
        owner_obj: JSON = {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": owner_name, "namespace": namespace, "uid": self._next_uid()},
            "spec": {
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": container, "image": image}]},
                }
            },
        }
        if annotations:
            owner_obj["spec"]["template"]["metadata"]["annotations"] = annotations
        self._create_pod_for(owner_obj, kind, name, False, node)

    def _seed_deployment(
        self,
        namespace: str,
        name: str,
        container: str,
        replicas: int,
        image: str,
        old: str,
        new: str,
        env: dict[str, str],
        resources: tuple[str, str, str, str],
        scratch: bool,
    ) -> None:
        cpu_req, mem_req, cpu_lim, mem_lim = resources
        env_list: list[JSON] = [{"name": k, "value": v} for k, v in env.items()]
        env_list.append(
            {
                "name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": f"{name}-secrets", "key": "database-url"}},
            }
        )
        pod_spec: JSON = {
            "containers": [
                {
                    "name": container,
                    "image": f"{image}:{old}",
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "env": env_list,
                    "resources": {
                        "requests": {"cpu": cpu_req, "memory": mem_req},
                        "limits": {"cpu": cpu_lim, "memory": mem_lim},
                    },
                }
            ]
        }
        if scratch:
            pod_spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
            pod_spec["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
        labels = {"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/component": container}
        self.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {"app": name},
                    "annotations": {CHANGE_CAUSE: f"helm upgrade {name} --set image.tag={old}"},
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                },
            }
        )

        def upgrade(dep: JSON) -> None:
            _annotations(dep)[CHANGE_CAUSE] = f"helm upgrade {name} --set image.tag={new}"
            dep["spec"]["template"]["spec"]["containers"][0]["image"] = f"{image}:{new}"

        self.modify("deployments", namespace, name, upgrade)

    def _seed_cronjob(self, namespace: str, name: str, schedule: str, image: str, command: list[str]) -> None:
        self.create(
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
                "spec": {
                    "schedule": schedule,
                    "concurrencyPolicy": "Forbid",
                    "suspend": False,
                    "successfulJobsHistoryLimit": 3,
                    "failedJobsHistoryLimit": 1,
                    "jobTemplate": {
                        "metadata": {
                            "labels": {"app": name},
                            "annotations": {"skillforge.io/owner": "data-platform"},
                        },
                        "spec": {
                            "backoffLimit": 2,
                            "template": {
                                "metadata": {"labels": {"app": name}},
                                "spec": {
                                    "restartPolicy": "OnFailure",
                                    "containers": [{"name": name, "image": image, "command": command}],
                                },
                            },
                        },
                    },
                },
                "status": {"lastScheduleTime": _ts(_now() - timedelta(hours=3))},
            }
        )
