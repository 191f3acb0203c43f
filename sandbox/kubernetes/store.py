"""The object store every part of the fake apiserver shares: objects, resourceVersions, uids,
timers, events, recorded requests and the test hooks that only read or configure it."""

from __future__ import annotations

import abc
import asyncio
import copy
import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.kubernetes.objects import controller_ref, labels_of, meta_of, revision_of, timestamp
from sandbox.kubernetes.resources import DEFAULT_TOKEN, DEFAULT_USER, NAME_ALPHABET, RESOURCES, ResourceInfo
from sandbox.kubernetes.selectors import label_selector_matches

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True, order=True)
class Access:
    """What the apiserver authorizes a request as: RBAC's verb, API group, resource (with its
    subresource, e.g. "deployments/scale") and namespace (None: cluster scope)."""

    verb: str
    group: str
    resource: str
    namespace: str | None


@dataclass(slots=True)
class RecordedRequest:
    """One request the sandbox answered (or is answering)."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any
    status: int | None = None
    # Every authorization check the request passed or failed; empty for discovery
    # (/version, /api, /apis), which every authenticated user may read.
    access: tuple[Access, ...] = ()

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


RECORD = web.RequestKey("record", RecordedRequest)


@dataclass(frozen=True, slots=True)
class ExecReply:
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0


@dataclass(slots=True)
class Fault:
    method: str
    resource: str
    status: int
    reason: str
    message: str
    remaining: int


@dataclass
class State:
    rv: int = 0
    uid: int = 0
    events: int = 0
    node_cursor: int = 0
    store: dict[str, dict[tuple[str, str], JSON]] = field(default_factory=dict)


class ObjectStore(abc.ABC):
    """The cluster's objects and bookkeeping; ``KubeSandbox`` adds the controllers and the HTTP side."""

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
        self._state = State(store={plural: {} for plural in RESOURCES})
        self._rand = random.Random(seed)
        self._timers: list[asyncio.TimerHandle] = []
        self._changed = asyncio.Event()
        self._faults: list[Fault] = []
        self._fail_next_rollout: set[tuple[str, str]] = set()
        self._stalled_rs: set[str] = set()
        self._deadline_exceeded: set[str] = set()
        self._logs: dict[tuple[str, str], list[str]] = {}
        self._exec: dict[tuple[str, ...], ExecReply] = {}
        self._immediate = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._websockets: set[web.WebSocketResponse] = set()

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
            if (namespace is None or ns == namespace)
            and label_selector_matches(labels_of(obj), label_selector)
        ]
        return items

    def pods_on_node(self, node: str) -> list[JSON]:
        return [p for p in self.objects("pods") if (p.get("spec") or {}).get("nodeName") == node]

    def deployment_pods(self, namespace: str, name: str) -> list[JSON]:
        dep = self._obj("deployments", namespace, name)
        if dep is None:
            return []
        rs_uids = {meta_of(rs)["uid"] for rs in self._owned("replicasets", namespace, meta_of(dep)["uid"])}
        return [p for p in self.objects("pods", namespace) if (controller_ref(p) or {}).get("uid") in rs_uids]

    def replica_sets(self, namespace: str, deployment: str) -> list[JSON]:
        dep = self._obj("deployments", namespace, deployment)
        if dep is None:
            return []
        owned = self._owned("replicasets", namespace, meta_of(dep)["uid"])
        return sorted((copy.deepcopy(rs) for rs in owned), key=revision_of)

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
        self._faults.append(Fault(method.upper(), resource, status, reason, message, times))

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
            o for o in self._objects(resource, namespace) if (controller_ref(o) or {}).get("uid") == owner_uid
        ]

    def _next_rv(self) -> str:
        self._state.rv += 1
        return str(self._state.rv)

    def _next_uid(self) -> str:
        self._state.uid += 1
        raw = hashlib.sha256(f"uid-{self._state.uid}".encode()).hexdigest()
        return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:32]}"

    def _suffix(self, length: int = 5) -> str:
        return "".join(self._rand.choice(NAME_ALPHABET) for _ in range(length))

    def _info_for(self, obj: JSON) -> ResourceInfo:
        for info in RESOURCES.values():
            if info.kind == obj.get("kind") and info.api_version == obj.get("apiVersion"):
                return info
        raise ValueError(f"unsupported object {obj.get('apiVersion')}/{obj.get('kind')}")

    def _store_put(self, info: ResourceInfo, obj: JSON) -> None:
        meta = meta_of(obj)
        meta["resourceVersion"] = self._next_rv()
        self._state.store[info.plural][(meta.get("namespace") or "", meta["name"])] = obj
        self._notify()

    def _store_delete(self, info: ResourceInfo, obj: JSON) -> None:
        meta = meta_of(obj)
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

    # ------------------------------------------------------------------ controllers and events

    @abc.abstractmethod
    def _settle(self) -> None:
        """Run the controllers until the cluster is consistent again (after a timer fires)."""

    def _event(
        self, involved: JSON, reason: str, message: str, *, type_: str = "Normal", component: str
    ) -> None:
        meta = meta_of(involved)
        namespace = meta.get("namespace") or "default"
        if self._obj("namespaces", None, namespace) is None:
            return
        self._state.events += 1
        now = timestamp()
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
