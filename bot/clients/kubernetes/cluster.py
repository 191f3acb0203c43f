"""Kubernetes adapter: the typed remediation actions, done exactly as kubectl does them.

Built from a `kubernetes_asyncio.client.ApiClient` the caller constructs (and closes). Every
action (see `table.ACTIONS`) has a server-side dry-run `preview()` with a human before → after
summary, and an `execute()` that re-reads the target, refuses if it changed since the preview,
then sends the kubectl-equivalent request(s). The diagnostics reads are read-only.

SDK exceptions never leave the adapter: they become `IntegrationError(system="kubernetes")`
carrying the apiserver's own message (e.g. the missing RBAC permission on a 403).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.stream import WsApiClient

from bot.clients.kubernetes import deployments, diagnostics, pod_exec, reads, rollouts
from bot.clients.kubernetes.api import KubeApi
from bot.clients.kubernetes.context import Expectation, Request
from bot.clients.kubernetes.errors import SYSTEM, ConflictError
from bot.clients.kubernetes.objects import JSON
from bot.clients.kubernetes.ownership import PodOwner, pod_owner, service_workloads
from bot.clients.kubernetes.results import (
    EventInfo,
    ExecResult,
    PodInfo,
    Preview,
    Result,
    RevisionInfo,
    RolloutStatus,
)
from bot.clients.kubernetes.table import handler_for
from bot.core.actions import ActionName, ActionParams, target_of
from bot.core.errors import IntegrationError, UserError
from bot.obs import logs

log = logs.logger(logs.Component.KUBERNETES)

FIELD_MANAGER = "incidentbot"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KubernetesCluster:
    """The bot's only door to Kubernetes (see the module docstring)."""

    def __init__(
        self,
        api: ApiClient,
        *,
        field_manager: str = FIELD_MANAGER,
        evict_retry_delay: float = 5.0,
        poll_interval: float = 1.0,
        revision_wait: float = 5.0,
        clock: Callable[[], datetime] = _utcnow,
        ws_client_factory: Callable[[], WsApiClient] | None = None,
        job_suffix: Callable[[], str] | None = None,
    ) -> None:
        """`field_manager` names the bot in managedFields; `evict_retry_delay` paces evictions a
        PodDisruptionBudget refused; `poll_interval` paces the rollout and pod-deletion polls;
        `revision_wait` bounds the wait for a new revision's number; `clock` stamps restarts;
        `ws_client_factory` builds exec's WebSocket client; `job_suffix` ends manual job names."""
        self._api = KubeApi(
            api,
            field_manager,
            evict_retry_delay,
            poll_interval,
            revision_wait,
            clock,
            ws_client_factory or (lambda: WsApiClient(configuration=api.configuration)),
            job_suffix or (lambda: secrets.token_hex(3)),
        )

    # ------------------------------------------------------------------ actions

    async def preview(
        self,
        action: ActionName,
        params: ActionParams,
        *,
        argv: Sequence[str] | None = None,
        namespace_allowed: Callable[[str], bool] | None = None,
    ) -> Preview:
        """Dry-run the action and describe it. API refusals (4xx) and refusals of the action itself
        come back as `dry_run_ok=False` with `problem`; only 5xx/transport failures raise.
        `namespace_allowed` says whose pods a drain may evict (the others are skipped)."""
        target = target_of(action, params)
        handler = handler_for(action)
        try:
            return await handler.preview(self._api, params, Request(action, argv, namespace_allowed))
        except UserError as err:
            return Preview(action, target, [str(err)], None, None, False, True, None, str(err))
        except IntegrationError as err:
            if err.status is None or not 400 <= err.status < 500:
                raise
            return Preview(
                action, target, [err.message], None, None, False, err.status != 404, None, err.message
            )

    async def execute(
        self,
        action: ActionName,
        params: ActionParams,
        expect_resource_version: str | None,
        *,
        expect_fingerprint: str | None = None,
        argv: Sequence[str] | None = None,
        namespace_allowed: Callable[[str], bool] | None = None,
    ) -> Result:
        """Re-read the target, refuse if it changed since the preview, then act like kubectl.

        With `expect_fingerprint` (from `Preview.fingerprint`) only meaningful changes refuse
        (spec/generation, a replaced pod, schedulability); otherwise any resourceVersion change
        does. Both None: no check. A 409 Conflict is retried once (re-read and re-checked).
        `namespace_allowed` says whose pods a drain may evict (the others are skipped).
        """
        handler = handler_for(action)
        req = Request(action, argv, namespace_allowed)
        expect = Expectation(expect_resource_version, expect_fingerprint)
        for attempt in (1, 2):
            try:
                return await handler.execute(self._api, params, req, expect)
            except ConflictError as err:
                if attempt == 2:
                    raise IntegrationError(SYSTEM, err.message, status=err.status) from err
                log.info("kubernetes.conflict_retry", extra={"action": str(action), "error": err.message})
        raise AssertionError("unreachable")

    async def exec(
        self,
        namespace: str,
        pod: str,
        argv: Sequence[str],
        *,
        container: str | None = None,
        timeout: float = pod_exec.EXEC_TIMEOUT,
    ) -> ExecResult:
        """Run `argv` (never a shell string) in a pod over the v4.channel.k8s.io WebSocket."""
        return await pod_exec.run_exec(self._api, namespace, pod, argv, container, timeout)

    # ------------------------------------------------------------------ rollout status

    async def rollout_status(self, namespace: str, deployment: str) -> RolloutStatus:
        return await deployments.read_rollout_status(self._api, namespace, deployment)

    async def wait_rollout(self, namespace: str, deployment: str, timeout: float) -> RolloutStatus:
        """Poll until the rollout completes or stalls (ProgressDeadlineExceeded), at most `timeout` s."""
        return await deployments.wait_rollout(self._api, namespace, deployment, timeout)

    # ------------------------------------------------------------------ diagnostics (read-only)

    async def pod_owner(self, namespace: str, pod: str) -> PodOwner:
        """The workload that controls a pod (through its ReplicaSet) and the pod's node."""
        return await pod_owner(self._api, namespace, pod)

    async def service_workloads(self, namespace: str, service: str) -> tuple[PodOwner, ...]:
        """The workloads of the pods a Service selects."""
        return await service_workloads(self._api, namespace, service)

    async def pods(self, namespace: str, selector_or_deployment: str) -> list[PodInfo]:
        """Pods of a deployment (a bare name) or matching a label selector (anything with = ! , or ' in ')."""
        return await diagnostics.pods(self._api, namespace, selector_or_deployment)

    async def events(
        self, namespace: str, name: str, *, kind: str | None = None, limit: int = 50
    ) -> list[EventInfo]:
        """Events about an object (oldest first, at most `limit`, the newest kept)."""
        return await diagnostics.events(self._api, namespace, name, kind=kind, limit=limit)

    async def rollout_history(self, namespace: str, deployment: str) -> list[RevisionInfo]:
        return await rollouts.rollout_history(self._api, namespace, deployment)

    async def logs_tail(
        self, namespace: str, pod: str, lines: int = 100, *, container: str | None = None
    ) -> str:
        """The last `lines` log lines, as text (read raw: the SDK mangles logs that parse as JSON)."""
        return await diagnostics.logs_tail(self._api, namespace, pod, lines, container=container)

    async def read_object(self, kind: reads.ReadableKind, namespace: str | None, name: str) -> JSON:
        """One object of a readable (never Secret) kind, sanitized: no env or ConfigMap values."""
        return await reads.get_object(self._api, kind, namespace, name)

    async def list_objects(
        self, kind: reads.ReadableKind, namespace: str, *, label_selector: str | None = None, limit: int = 50
    ) -> reads.Listed:
        """At most `limit` objects of a readable kind in a namespace, sanitized likewise."""
        return await reads.list_objects(
            self._api, kind, namespace, label_selector=label_selector, limit=limit
        )
