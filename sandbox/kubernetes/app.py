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

The package splits it by concern: ``store`` (objects, resourceVersions, timers, test hooks),
``nodes``, ``pods``, ``deployments`` (the ReplicaSet controller), ``disruption`` (PDBs),
``writes`` (create/update/patch/delete/evict), ``patches``, ``validation``, ``selectors``,
``pod_io`` (logs and exec), ``discovery``, ``router`` (the HTTP side) and ``demo`` (seed data).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from kubernetes_asyncio.client import Configuration

from sandbox.kubernetes.demo import DemoCluster
from sandbox.kubernetes.router import Router

JSON = dict[str, Any]


class KubeSandbox(Router, DemoCluster):
    """An in-memory Kubernetes apiserver on 127.0.0.1 (see the module docstring)."""

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

    def write_kubeconfig(self, path: str | Path, *, context: str = "sandbox") -> Path:
        """A kubeconfig whose one context (`context`) is this sandbox."""
        return write_kubeconfig(path, {context: self})


def write_kubeconfig(
    path: str | Path, sandboxes: Mapping[str, KubeSandbox], current: str | None = None
) -> Path:
    """A kubeconfig with one context (and cluster and user) per sandbox, by name; the current
    context is `current`, else the first."""
    target = Path(path)
    names = list(sandboxes)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": sb.url}} for n, sb in sandboxes.items()],
        "users": [{"name": f"incidentbot@{n}", "user": {"token": sb.token}} for n, sb in sandboxes.items()],
        "contexts": [
            {"name": n, "context": {"cluster": n, "user": f"incidentbot@{n}", "namespace": "default"}}
            for n in names
        ],
        "current-context": current or names[0],
        "preferences": {},
    }
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target
