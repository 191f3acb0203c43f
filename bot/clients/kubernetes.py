"""Kubernetes adapter: the typed remediation actions, done exactly as kubectl does them.

Built from a `kubernetes_asyncio.client.ApiClient` the caller constructs (and closes). Every
action has a server-side dry-run `preview()` with a human before → after summary, and an
`execute()` that re-reads the target, refuses if it changed since the preview, then sends the
kubectl-equivalent request(s) (see docs protocols D.3):

| action | request(s) |
|---|---|
| rollout restart | SMP `spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]` |
| scale | merge patch `{"spec":{"replicas":N}}` on `deployments/scale` |
| rollout undo | list ReplicaSets by selector, keep the controlled ones, JSON patch `/spec/template` and
  `/metadata/annotations` (kubectl's rollback.go) |
| set env / set resources | SMP, containers and env merged by name |
| delete pod | DELETE with `gracePeriodSeconds` |
| cordon / uncordon | SMP `spec.unschedulable` |
| drain | cordon, list the node's pods, skip DaemonSet and mirror pods, evict (policy/v1) each, retry
  429 (PodDisruptionBudget) every `evict_retry_delay` s up to the timeout, wait for deletion |
| create job from cronjob | POST a Job built like `kubectl create job --from=cronjob/...` |
| exec | WebSocket `pods/exec` (v4.channel.k8s.io) with an argv, never a shell string |

SDK exceptions never leave this module: they become `IntegrationError(system="kubernetes")`
carrying the apiserver's own message (e.g. the missing RBAC permission on a 403).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar, cast

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.stream import WsApiClient

from bot.core.actions import (
    ActionName,
    CreateJobFromCronJobParams,
    DeletePodParams,
    DrainParams,
    ExecParams,
    NodeParams,
    ResourceSpec,
    RolloutRestartParams,
    RolloutUndoParams,
    ScaleParams,
    SetEnvParams,
    SetResourcesParams,
    target_of,
)
from bot.core.errors import IntegrationError, UserError

log = logging.getLogger("bot.clients.kubernetes")

JSON = dict[str, Any]
T = TypeVar("T")

SYSTEM = "kubernetes"
FIELD_MANAGER = "incidentbot"
DRY_RUN = "All"
MERGE_PATCH = "application/merge-patch+json"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
POD_TEMPLATE_HASH = "pod-template-hash"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
INSTANTIATE = "cronjob.kubernetes.io/instantiate"
# Deployment annotations `kubectl rollout undo` keeps as they are (pkg/polymorphichelpers/rollback.go).
UNDO_KEEP_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
JOB_NAME_MAX = 63


# --------------------------------------------------------------------------- results


class RolloutState(StrEnum):
    COMPLETE = "complete"
    PROGRESSING = "progressing"
    STALLED = "stalled"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    state: RolloutState
    message: str
    desired_replicas: int
    replicas: int
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    revision: int | None
    generation: int | None
    observed_generation: int | None

    @property
    def complete(self) -> bool:
        return self.state is RolloutState.COMPLETE


@dataclass(frozen=True, slots=True)
class Preview:
    """What an action would do, checked by a server-side dry run.

    `fingerprint` identifies the state the summary was computed from (deployment uid +
    generation, node uid + schedulability, pod uid, cronjob uid + generation); pass it back to
    `execute(expect_fingerprint=...)` to refuse only on meaningful changes rather than on every
    status update that moves `resource_version`.
    """

    action: ActionName
    target: str
    summary_lines: list[str]
    resource_version: str | None
    generation: int | None
    dry_run_ok: bool
    target_exists: bool
    fingerprint: str | None = None
    problem: str | None = None


class PodOutcome(StrEnum):
    EVICTED = "evicted"
    ALREADY_GONE = "already_gone"
    BLOCKED = "blocked"  # a PodDisruptionBudget still refused at the timeout
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class PodDrainResult:
    namespace: str
    name: str
    outcome: PodOutcome
    detail: str
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class DrainReport:
    node: str
    was_unschedulable: bool
    pods: list[PodDrainResult]
    skipped: list[PodDrainResult]

    @property
    def complete(self) -> bool:
        return all(p.outcome in (PodOutcome.EVICTED, PodOutcome.ALREADY_GONE) for p in self.pods)


@dataclass(frozen=True, slots=True)
class ExecResult:
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True, slots=True)
class Result:
    action: ActionName
    target: str
    changes: list[str]
    resource_version: str | None = None
    revision: int | None = None
    complete: bool = True
    drain: DrainReport | None = None
    job_name: str | None = None
    exec_result: ExecResult | None = None


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    phase: str
    ready: bool
    ready_containers: int
    total_containers: int
    restarts: int
    node: str | None
    reason: str | None
    images: list[str]
    owner: str | None
    created: datetime | None


@dataclass(frozen=True, slots=True)
class EventInfo:
    type: str
    reason: str
    message: str
    count: int
    object_kind: str
    object_name: str
    last_seen: datetime | None
    source: str | None


@dataclass(frozen=True, slots=True)
class RevisionInfo:
    revision: int
    replica_set: str
    images: list[str]
    change_cause: str | None
    replicas: int
    current: bool
    created: datetime | None


@dataclass(frozen=True, slots=True)
class _Expectation:
    resource_version: str | None
    fingerprint: str | None


@dataclass(slots=True)
class _DrainPlan:
    evict: list[JSON] = field(default_factory=list)
    skipped: list[PodDrainResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _ConflictError(IntegrationError):
    """A 409 Conflict (stale object) as opposed to AlreadyExists; retried once by `execute`."""


# --------------------------------------------------------------------------- helpers


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata") or {}
    return cast(JSON, meta)


def _dig(obj: Any, *path: str) -> Any:
    node = obj
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _annotations(obj: JSON) -> dict[str, str]:
    return dict(_meta(obj).get("annotations") or {})


def _revision(obj: JSON) -> int:
    try:
        return int(_annotations(obj).get(REVISION, "0"))
    except ValueError:
        return 0


def _generation(obj: JSON) -> int | None:
    value = _meta(obj).get("generation")
    return int(value) if value is not None else None


def _containers(obj_with_pod_template: JSON) -> list[JSON]:
    return list(_dig(obj_with_pod_template, "spec", "template", "spec", "containers") or [])


def _images(containers: Sequence[JSON]) -> list[str]:
    return [str(c.get("image", "")) for c in containers]


def _controller(obj: JSON) -> JSON | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return cast(JSON, ref)
    return None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _selector_string(selector: JSON | None) -> str:
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _template_without_hash(template: JSON) -> JSON:
    result = json.loads(json.dumps(template))
    labels = _dig(result, "metadata", "labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    return cast(JSON, result)


def _quote(value: str | None) -> str:
    return "unset" if value is None else json.dumps(value)


def _status_body(exc: ApiException) -> JSON:
    raw: Any = exc.body
    body = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return {"message": str(body)}
    return parsed if isinstance(parsed, dict) else {"message": str(parsed)}


def _api_error(what: str, exc: ApiException) -> IntegrationError:
    status = _status_body(exc)
    message = status.get("message") or exc.reason or "no message"
    code = int(exc.status) if exc.status else None
    reason = status.get("reason") or exc.reason or ""
    text = f"{what} failed ({code} {reason}): {message}"
    if code == 409 and reason == "Conflict":
        return _ConflictError(SYSTEM, text, status=code)
    return IntegrationError(SYSTEM, text, status=code)


def _cause(exc: ApiException) -> str:
    status = _status_body(exc)
    causes = _dig(status, "details", "causes") or []
    texts = [str(c.get("message")) for c in causes if c.get("message")]
    message = str(status.get("message") or exc.reason or "")
    return f"{message} {'; '.join(texts)}".strip()


def _body(value: Any) -> Any:
    """A JSON body for the SDK (its stubs ask for models; dicts and lists serialize the same)."""
    return value


def _pod_label(pod: JSON) -> str:
    meta = _meta(pod)
    return f"{meta.get('namespace')}/{meta.get('name')}"


# --------------------------------------------------------------------------- adapter


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
        self._api = api
        self._apps = client.AppsV1Api(api)
        # `_content_type` (merge patch) is accepted at runtime but missing from the SDK's stubs.
        self._apps_any: Any = self._apps
        self._core = client.CoreV1Api(api)
        self._batch = client.BatchV1Api(api)
        self._field_manager = field_manager
        self._evict_retry_delay = evict_retry_delay
        self._poll_interval = poll_interval
        self._revision_wait = revision_wait
        self._clock = clock
        self._ws_factory = ws_client_factory or (lambda: WsApiClient(configuration=api.configuration))
        self._job_suffix = job_suffix or (lambda: secrets.token_hex(3))

    # ------------------------------------------------------------------ plumbing

    def _dict(self, model: Any) -> JSON:
        data = self._api.sanitize_for_serialization(model)
        return cast(JSON, data) if isinstance(data, dict) else {}

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except ApiException as exc:
            raise _api_error(what, exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IntegrationError(SYSTEM, f"{what} failed: {type(exc).__name__}: {exc}") from exc

    async def _dry_run(self, what: str, call: Awaitable[Any]) -> str | None:
        """Run a dry-run request; a 4xx answer is returned as the problem text, not raised."""
        try:
            await self._call(f"{what} (dry run)", call)
        except IntegrationError as err:
            if err.status is not None and 400 <= err.status < 500:
                return err.message
            raise
        return None

    async def _read_deployment(self, namespace: str, name: str) -> JSON:
        dep = await self._call(
            f"get deployment {namespace}/{name}", self._apps.read_namespaced_deployment(name, namespace)
        )
        return self._dict(dep)

    async def _read_node(self, name: str) -> JSON:
        return self._dict(await self._call(f"get node {name}", self._core.read_node(name)))

    async def _read_pod(self, namespace: str, name: str) -> JSON:
        return self._dict(
            await self._call(f"get pod {namespace}/{name}", self._core.read_namespaced_pod(name, namespace))
        )

    async def _read_cronjob(self, namespace: str, name: str) -> JSON:
        return self._dict(
            await self._call(
                f"get cronjob {namespace}/{name}", self._batch.read_namespaced_cron_job(name, namespace)
            )
        )

    @staticmethod
    def _fingerprint(kind: str, obj: JSON) -> str:
        meta = _meta(obj)
        if kind == "node":
            return f"node:{meta.get('uid')}:unschedulable={bool(_dig(obj, 'spec', 'unschedulable'))}"
        if kind == "pod":
            return f"pod:{meta.get('uid')}"
        return f"{kind}:{meta.get('uid')}:generation={meta.get('generation')}"

    def _check(self, kind: str, label: str, obj: JSON, expect: _Expectation) -> None:
        """Refuse (UserError) when the target changed since the preview."""
        current_fp = self._fingerprint(kind, obj)
        current_rv = _meta(obj).get("resourceVersion")
        if expect.fingerprint is not None:
            if expect.fingerprint != current_fp:
                raise UserError(
                    f"{kind} {label} changed since the preview ({expect.fingerprint} → {current_fp}); "
                    "preview the action again before approving it"
                )
        elif expect.resource_version is not None and expect.resource_version != current_rv:
            raise UserError(
                f"{kind} {label} changed since the preview (resourceVersion {expect.resource_version} → "
                f"{current_rv}); preview the action again before approving it"
            )

    def _preview(
        self,
        action: ActionName,
        target: str,
        kind: str,
        obj: JSON,
        lines: list[str],
        problem: str | None,
    ) -> Preview:
        if problem:
            lines = [*lines, f"dry run refused: {problem}"]
        return Preview(
            action=action,
            target=target,
            summary_lines=lines,
            resource_version=_meta(obj).get("resourceVersion"),
            generation=_generation(obj),
            dry_run_ok=problem is None,
            target_exists=True,
            fingerprint=self._fingerprint(kind, obj),
            problem=problem,
        )

    # ------------------------------------------------------------------ public: preview / execute

    async def preview(self, action: ActionName, params: Any, *, argv: Sequence[str] | None = None) -> Preview:
        """Dry-run `action` and describe it. API refusals (4xx) and refusals of the action itself come
        back as `dry_run_ok=False` with `problem`; only 5xx/transport failures raise."""
        target = target_of(action, params)
        try:
            match action:
                case ActionName.ROLLOUT_RESTART:
                    return await self._preview_restart(_as(params, RolloutRestartParams))
                case ActionName.SCALE:
                    return await self._preview_scale(_as(params, ScaleParams))
                case ActionName.ROLLOUT_UNDO:
                    return await self._preview_undo(_as(params, RolloutUndoParams))
                case ActionName.SET_ENV:
                    return await self._preview_set_env(_as(params, SetEnvParams))
                case ActionName.SET_RESOURCES:
                    return await self._preview_set_resources(_as(params, SetResourcesParams))
                case ActionName.DELETE_POD:
                    return await self._preview_delete_pod(_as(params, DeletePodParams))
                case ActionName.CORDON | ActionName.UNCORDON:
                    return await self._preview_cordon(action, _as(params, NodeParams))
                case ActionName.DRAIN:
                    return await self._preview_drain(_as(params, DrainParams))
                case ActionName.CREATE_JOB_FROM_CRONJOB:
                    return await self._preview_create_job(_as(params, CreateJobFromCronJobParams))
                case ActionName.EXEC:
                    return await self._preview_exec(_as(params, ExecParams), argv)
        except UserError as err:
            return Preview(action, target, [str(err)], None, None, False, True, None, str(err))
        except IntegrationError as err:
            if err.status is None or not 400 <= err.status < 500:
                raise
            return Preview(
                action, target, [err.message], None, None, False, err.status != 404, None, err.message
            )
        raise ValueError(f"unknown action {action!r}")

    async def execute(
        self,
        action: ActionName,
        params: Any,
        expect_resource_version: str | None,
        *,
        expect_fingerprint: str | None = None,
        argv: Sequence[str] | None = None,
    ) -> Result:
        """Re-read the target, refuse if it changed since the preview, then act like kubectl.

        With `expect_fingerprint` (from `Preview.fingerprint`) only meaningful changes refuse
        (spec/generation, a replaced pod, schedulability); otherwise any resourceVersion change
        does. Both None: no check. A 409 Conflict is retried once (re-read and re-checked).
        """
        expect = _Expectation(expect_resource_version, expect_fingerprint)
        for attempt in (1, 2):
            try:
                return await self._execute_once(action, params, expect, argv)
            except _ConflictError as err:
                if attempt == 2:
                    raise IntegrationError(SYSTEM, err.message, status=err.status) from err
                log.info("kubernetes.conflict_retry", extra={"action": str(action), "error": err.message})
        raise AssertionError("unreachable")

    async def _execute_once(
        self, action: ActionName, params: Any, expect: _Expectation, argv: Sequence[str] | None
    ) -> Result:
        match action:
            case ActionName.ROLLOUT_RESTART:
                return await self._restart(_as(params, RolloutRestartParams), expect)
            case ActionName.SCALE:
                return await self._scale(_as(params, ScaleParams), expect)
            case ActionName.ROLLOUT_UNDO:
                return await self._undo(_as(params, RolloutUndoParams), expect)
            case ActionName.SET_ENV:
                return await self._set_env(_as(params, SetEnvParams), expect)
            case ActionName.SET_RESOURCES:
                return await self._set_resources(_as(params, SetResourcesParams), expect)
            case ActionName.DELETE_POD:
                return await self._delete_pod(_as(params, DeletePodParams), expect)
            case ActionName.CORDON | ActionName.UNCORDON:
                return await self._cordon(action, _as(params, NodeParams), expect)
            case ActionName.DRAIN:
                return await self._drain(_as(params, DrainParams), expect)
            case ActionName.CREATE_JOB_FROM_CRONJOB:
                return await self._create_job(_as(params, CreateJobFromCronJobParams), expect)
            case ActionName.EXEC:
                return await self._exec_action(_as(params, ExecParams), expect, argv)
        raise ValueError(f"unknown action {action!r}")

    # ------------------------------------------------------------------ rollout restart

    def _restart_patch(self) -> JSON:
        now = self._clock().astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}

    async def _preview_restart(self, p: RolloutRestartParams) -> Preview:
        dep = await self._read_deployment(p.namespace, p.deployment)
        label = f"{p.namespace}/{p.deployment}"
        rev = _revision(dep)
        replicas = int(_dig(dep, "spec", "replicas") or 0)
        lines = [
            f"deployment {label}: revision {rev} → new rollout (revision {rev + 1}) with the same images",
            f"replaces all {replicas} pods ({self._strategy(dep)})",
            f"images: {', '.join(_images(_containers(dep)))}",
        ]
        if _dig(dep, "spec", "paused"):
            return self._preview(
                ActionName.ROLLOUT_RESTART,
                f"deployment {label}",
                "deployment",
                dep,
                lines,
                "the deployment is paused; resume it before restarting",
            )
        problem = await self._dry_run(
            f"patch deployment {label}",
            self._apps.patch_namespaced_deployment(
                p.deployment,
                p.namespace,
                self._restart_patch(),
                dry_run=DRY_RUN,
                field_manager=self._field_manager,
            ),
        )
        return self._preview(
            ActionName.ROLLOUT_RESTART, f"deployment {label}", "deployment", dep, lines, problem
        )

    @staticmethod
    def _strategy(dep: JSON) -> str:
        strategy = _dig(dep, "spec", "strategy") or {}
        if strategy.get("type") == "Recreate":
            return "Recreate: all pods stop before new ones start"
        rolling = strategy.get("rollingUpdate") or {}
        return (
            f"RollingUpdate, maxUnavailable {rolling.get('maxUnavailable', '25%')}, "
            f"maxSurge {rolling.get('maxSurge', '25%')}"
        )

    async def _restart(self, p: RolloutRestartParams, expect: _Expectation) -> Result:
        label = f"{p.namespace}/{p.deployment}"
        dep = await self._read_deployment(p.namespace, p.deployment)
        self._check("deployment", label, dep, expect)
        if _dig(dep, "spec", "paused"):
            raise UserError(
                f"deployment {label} is paused; resume it before restarting (kubectl refuses too)"
            )
        before = _revision(dep)
        patch = self._restart_patch()
        patched = self._dict(
            await self._call(
                f"patch deployment {label}",
                self._apps.patch_namespaced_deployment(
                    p.deployment, p.namespace, patch, field_manager=self._field_manager
                ),
            )
        )
        revision = await self._new_revision(p.namespace, p.deployment, _generation(patched))
        stamp = patch["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
        return Result(
            ActionName.ROLLOUT_RESTART,
            f"deployment {label}",
            [
                f"restartedAt={stamp}",
                f"revision {before} → {revision if revision is not None else 'pending'}",
            ],
            resource_version=_meta(patched).get("resourceVersion"),
            revision=revision,
        )

    async def _new_revision(self, namespace: str, name: str, generation: int | None) -> int | None:
        """The revision once the deployment controller observed `generation` (bounded wait)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._revision_wait
        while True:
            dep = await self._read_deployment(namespace, name)
            observed = _dig(dep, "status", "observedGeneration")
            if generation is None or (observed is not None and int(observed) >= generation):
                return _revision(dep) or None
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(min(self._poll_interval, 0.2))

    # ------------------------------------------------------------------ scale

    async def _preview_scale(self, p: ScaleParams) -> Preview:
        dep = await self._read_deployment(p.namespace, p.deployment)
        label = f"{p.namespace}/{p.deployment}"
        current = int(_dig(dep, "spec", "replicas") or 0)
        ready = int(_dig(dep, "status", "readyReplicas") or 0)
        lines = [
            f"deployment {label}: replicas {current} → {p.replicas}"
            + (" (no change)" if current == p.replicas else ""),
            f"ready now: {ready}/{current}",
        ]
        problem = await self._dry_run(
            f"patch deployments/scale {label}",
            self._apps_any.patch_namespaced_deployment_scale(
                p.deployment,
                p.namespace,
                {"spec": {"replicas": p.replicas}},
                dry_run=DRY_RUN,
                field_manager=self._field_manager,
                _content_type=MERGE_PATCH,
            ),
        )
        return self._preview(ActionName.SCALE, f"deployment {label}", "deployment", dep, lines, problem)

    async def _scale(self, p: ScaleParams, expect: _Expectation) -> Result:
        label = f"{p.namespace}/{p.deployment}"
        dep = await self._read_deployment(p.namespace, p.deployment)
        self._check("deployment", label, dep, expect)
        before = int(_dig(dep, "spec", "replicas") or 0)
        scale = self._dict(
            await self._call(
                f"patch deployments/scale {label}",
                self._apps_any.patch_namespaced_deployment_scale(
                    p.deployment,
                    p.namespace,
                    {"spec": {"replicas": p.replicas}},
                    field_manager=self._field_manager,
                    _content_type=MERGE_PATCH,
                ),
            )
        )
        return Result(
            ActionName.SCALE,
            f"deployment {label}",
            [f"replicas {before} → {_dig(scale, 'spec', 'replicas')}"],
            resource_version=_meta(scale).get("resourceVersion"),
            revision=_revision(dep) or None,
        )

    # ------------------------------------------------------------------ rollout undo

    async def _controlled_replica_sets(self, dep: JSON) -> list[JSON]:
        meta = _meta(dep)
        namespace, uid = str(meta.get("namespace")), meta.get("uid")
        selector = _selector_string(_dig(dep, "spec", "selector"))
        listed = await self._call(
            f"list replicasets in {namespace}",
            self._apps.list_namespaced_replica_set(namespace, label_selector=selector),
        )
        items = [self._dict(rs) for rs in listed.items or []]
        return sorted(
            (rs for rs in items if (_controller(rs) or {}).get("uid") == uid),
            key=_revision,
        )

    async def _undo_plan(self, p: RolloutUndoParams) -> tuple[JSON, JSON, list[JSON], list[JSON]]:
        """(deployment, chosen ReplicaSet, JSON patch, all controlled ReplicaSets) like kubectl's rollback.go."""
        label = f"{p.namespace}/{p.deployment}"
        dep = await self._read_deployment(p.namespace, p.deployment)
        if _dig(dep, "spec", "paused"):
            raise UserError(f"deployment {label} is paused; resume it before undoing (kubectl refuses too)")
        rss = await self._controlled_replica_sets(dep)
        with_revision = [rs for rs in rss if _revision(rs) > 0]
        if p.to_revision:
            chosen = next((rs for rs in with_revision if _revision(rs) == p.to_revision), None)
            if chosen is None:
                known = ", ".join(str(_revision(rs)) for rs in with_revision) or "none"
                raise UserError(
                    f"deployment {label} has no revision {p.to_revision} in its history (revisions: {known})"
                )
        else:
            if len(with_revision) < 2:
                raise UserError(f"no rollout history found for deployment {label}: nothing to undo to")
            chosen = with_revision[-2]
        template = _template_without_hash(cast(JSON, _dig(chosen, "spec", "template") or {}))
        if template == _dig(dep, "spec", "template"):
            raise UserError(
                f"deployment {label} already runs the template of revision {_revision(chosen)}: nothing to undo"
            )
        annotations = {k: v for k, v in _annotations(dep).items() if k in UNDO_KEEP_ANNOTATIONS}
        annotations.update({k: v for k, v in _annotations(chosen).items() if k not in UNDO_KEEP_ANNOTATIONS})
        patch: list[JSON] = [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations},
        ]
        return dep, chosen, patch, rss

    async def _preview_undo(self, p: RolloutUndoParams) -> Preview:
        label = f"{p.namespace}/{p.deployment}"
        dep, chosen, patch, rss = await self._undo_plan(p)
        current_rev = _revision(dep)
        next_rev = max((_revision(rs) for rs in rss), default=current_rev) + 1
        lines = [
            f"deployment {label}: revision {current_rev} → revision {_revision(chosen)} "
            f"(recorded as revision {next_rev})",
            *self._image_changes(
                _containers(dep), list(_dig(chosen, "spec", "template", "spec", "containers") or [])
            ),
        ]
        cause = _annotations(chosen).get(CHANGE_CAUSE)
        if cause:
            lines.append(f"change-cause of revision {_revision(chosen)}: {cause}")
        problem = await self._dry_run(
            f"patch deployment {label}",
            self._apps.patch_namespaced_deployment(
                p.deployment, p.namespace, _body(patch), dry_run=DRY_RUN, field_manager=self._field_manager
            ),
        )
        return self._preview(
            ActionName.ROLLOUT_UNDO, f"deployment {label}", "deployment", dep, lines, problem
        )

    @staticmethod
    def _image_changes(before: list[JSON], after: list[JSON]) -> list[str]:
        old = {str(c.get("name")): str(c.get("image")) for c in before}
        new = {str(c.get("name")): str(c.get("image")) for c in after}
        lines = []
        for name in sorted(old.keys() | new.keys()):
            if old.get(name) != new.get(name):
                lines.append(f"container {name}: image {old.get(name, 'absent')} → {new.get(name, 'absent')}")
            else:
                lines.append(f"container {name}: image {old[name]} (unchanged; other template fields differ)")
        return lines

    async def _undo(self, p: RolloutUndoParams, expect: _Expectation) -> Result:
        label = f"{p.namespace}/{p.deployment}"
        dep, chosen, patch, _ = await self._undo_plan(p)
        self._check("deployment", label, dep, expect)
        patched = self._dict(
            await self._call(
                f"patch deployment {label}",
                self._apps.patch_namespaced_deployment(
                    p.deployment, p.namespace, _body(patch), field_manager=self._field_manager
                ),
            )
        )
        revision = await self._new_revision(p.namespace, p.deployment, _generation(patched))
        images = ", ".join(_images(list(_dig(chosen, "spec", "template", "spec", "containers") or [])))
        return Result(
            ActionName.ROLLOUT_UNDO,
            f"deployment {label}",
            [
                f"rolled back from revision {_revision(dep)} to the template of revision {_revision(chosen)} "
                f"({images})",
                f"new revision {revision if revision is not None else 'pending'}",
            ],
            resource_version=_meta(patched).get("resourceVersion"),
            revision=revision,
        )

    # ------------------------------------------------------------------ set env / set resources

    @staticmethod
    def _pick_containers(dep: JSON, container: str | None, label: str) -> list[JSON]:
        containers = _containers(dep)
        if container is None:
            return containers  # kubectl set env/resources: all containers unless -c
        chosen = [c for c in containers if c.get("name") == container]
        if not chosen:
            names = ", ".join(str(c.get("name")) for c in containers)
            raise UserError(f"deployment {label} has no container {container!r} (containers: {names})")
        return chosen

    @staticmethod
    def _env_patch(containers: list[JSON], env: dict[str, str]) -> tuple[JSON, list[str]]:
        patch_containers = []
        lines = []
        for container in containers:
            cname = str(container.get("name"))
            current = {str(e.get("name")): e for e in container.get("env") or []}
            items: list[JSON] = []
            for key, value in env.items():
                existing = current.get(key)
                item: JSON = {"name": key, "value": value}
                if existing is not None and existing.get("valueFrom") is not None:
                    item["valueFrom"] = None  # a literal replaces a reference (as kubectl does)
                    source = existing["valueFrom"]
                    ref = source.get("secretKeyRef") or source.get("configMapKeyRef") or {}
                    what = "secret" if "secretKeyRef" in source else "configmap" if ref else "a reference"
                    before = (
                        f"(from {what} {ref.get('name', '')}/{ref.get('key', '')})"
                        if ref
                        else f"(from {what})"
                    )
                    lines.append(f"container {cname}: {key} {before} → {json.dumps(value)}")
                elif existing is None:
                    lines.append(f"container {cname}: {key} unset → {json.dumps(value)}")
                elif existing.get("value", "") == value:
                    lines.append(f"container {cname}: {key} {json.dumps(value)} (unchanged)")
                else:
                    lines.append(
                        f"container {cname}: {key} {_quote(existing.get('value', ''))} → {json.dumps(value)}"
                    )
                items.append(item)
            patch_containers.append({"name": cname, "env": items})
        return {"spec": {"template": {"spec": {"containers": patch_containers}}}}, lines

    async def _preview_set_env(self, p: SetEnvParams) -> Preview:
        label = f"{p.namespace}/{p.deployment}"
        dep = await self._read_deployment(p.namespace, p.deployment)
        patch, lines = self._env_patch(self._pick_containers(dep, p.container, label), dict(p.env))
        lines = [f"deployment {label}: set env (starts a rollout if anything changes)", *lines]
        problem = await self._dry_run(
            f"patch deployment {label}",
            self._apps.patch_namespaced_deployment(
                p.deployment, p.namespace, patch, dry_run=DRY_RUN, field_manager=self._field_manager
            ),
        )
        return self._preview(ActionName.SET_ENV, f"deployment {label}", "deployment", dep, lines, problem)

    async def _set_env(self, p: SetEnvParams, expect: _Expectation) -> Result:
        label = f"{p.namespace}/{p.deployment}"
        dep = await self._read_deployment(p.namespace, p.deployment)
        self._check("deployment", label, dep, expect)
        patch, lines = self._env_patch(self._pick_containers(dep, p.container, label), dict(p.env))
        patched = self._dict(
            await self._call(
                f"patch deployment {label}",
                self._apps.patch_namespaced_deployment(
                    p.deployment, p.namespace, patch, field_manager=self._field_manager
                ),
            )
        )
        revision = await self._new_revision(p.namespace, p.deployment, _generation(patched))
        return Result(
            ActionName.SET_ENV,
            f"deployment {label}",
            lines,
            resource_version=_meta(patched).get("resourceVersion"),
            revision=revision,
        )

    @staticmethod
    def _resources_patch(
        containers: list[JSON], requests: ResourceSpec | None, limits: ResourceSpec | None
    ) -> tuple[JSON, list[str]]:
        wanted: dict[str, dict[str, str]] = {}
        for kind, spec in (("requests", requests), ("limits", limits)):
            if spec is None:
                continue
            values = {k: v for k, v in (("cpu", spec.cpu), ("memory", spec.memory)) if v is not None}
            if values:
                wanted[kind] = values
        if not wanted:
            raise UserError("set resources needs at least one request or limit")
        patch_containers = []
        lines = []
        for container in containers:
            cname = str(container.get("name"))
            current = container.get("resources") or {}
            for kind, values in wanted.items():
                for resource, value in values.items():
                    before = (current.get(kind) or {}).get(resource)
                    change = "(unchanged)" if str(before) == value else f"→ {value}"
                    lines.append(f"container {cname}: {kind}.{resource} {before or 'unset'} {change}")
            patch_containers.append({"name": cname, "resources": wanted})
        return {"spec": {"template": {"spec": {"containers": patch_containers}}}}, lines

    async def _preview_set_resources(self, p: SetResourcesParams) -> Preview:
        label = f"{p.namespace}/{p.deployment}"
        dep = await self._read_deployment(p.namespace, p.deployment)
        containers = self._pick_containers(dep, p.container, label)
        patch, lines = self._resources_patch(containers, p.requests, p.limits)
        lines = [f"deployment {label}: set resources (starts a rollout if anything changes)", *lines]
        problem = await self._dry_run(
            f"patch deployment {label}",
            self._apps.patch_namespaced_deployment(
                p.deployment, p.namespace, patch, dry_run=DRY_RUN, field_manager=self._field_manager
            ),
        )
        return self._preview(
            ActionName.SET_RESOURCES, f"deployment {label}", "deployment", dep, lines, problem
        )

    async def _set_resources(self, p: SetResourcesParams, expect: _Expectation) -> Result:
        label = f"{p.namespace}/{p.deployment}"
        dep = await self._read_deployment(p.namespace, p.deployment)
        self._check("deployment", label, dep, expect)
        containers = self._pick_containers(dep, p.container, label)
        patch, lines = self._resources_patch(containers, p.requests, p.limits)
        patched = self._dict(
            await self._call(
                f"patch deployment {label}",
                self._apps.patch_namespaced_deployment(
                    p.deployment, p.namespace, patch, field_manager=self._field_manager
                ),
            )
        )
        revision = await self._new_revision(p.namespace, p.deployment, _generation(patched))
        return Result(
            ActionName.SET_RESOURCES,
            f"deployment {label}",
            lines,
            resource_version=_meta(patched).get("resourceVersion"),
            revision=revision,
        )

    # ------------------------------------------------------------------ delete pod

    @staticmethod
    def _pod_lines(pod: JSON) -> list[str]:
        owner = _controller(pod)
        restarts = sum(
            int(s.get("restartCount") or 0) for s in _dig(pod, "status", "containerStatuses") or []
        )
        lines = [
            f"pod {_pod_label(pod)}: phase {_dig(pod, 'status', 'phase') or 'Unknown'}, "
            f"node {_dig(pod, 'spec', 'nodeName') or 'none'}, restarts {restarts}"
        ]
        if owner is None:
            lines.append("not managed by a controller: it will NOT be recreated")
        else:
            lines.append(f"owned by {owner.get('kind')} {owner.get('name')}: a replacement will be created")
        return lines

    async def _preview_delete_pod(self, p: DeletePodParams) -> Preview:
        label = f"{p.namespace}/{p.pod}"
        pod = await self._read_pod(p.namespace, p.pod)
        lines = [
            *self._pod_lines(pod),
            f"delete with a grace period of {p.grace_period_seconds}s",
        ]
        problem = await self._dry_run(
            f"delete pod {label}",
            self._core.delete_namespaced_pod(
                p.pod, p.namespace, grace_period_seconds=p.grace_period_seconds, dry_run=DRY_RUN
            ),
        )
        return self._preview(ActionName.DELETE_POD, f"pod {label}", "pod", pod, lines, problem)

    async def _delete_pod(self, p: DeletePodParams, expect: _Expectation) -> Result:
        label = f"{p.namespace}/{p.pod}"
        pod = await self._read_pod(p.namespace, p.pod)
        self._check("pod", label, pod, expect)
        deleted = self._dict(
            await self._call(
                f"delete pod {label}",
                self._core.delete_namespaced_pod(
                    p.pod, p.namespace, grace_period_seconds=p.grace_period_seconds
                ),
            )
        )
        return Result(
            ActionName.DELETE_POD,
            f"pod {label}",
            [f"deleted pod {label} (grace period {p.grace_period_seconds}s)"],
            resource_version=_meta(deleted).get("resourceVersion"),
        )

    # ------------------------------------------------------------------ cordon / uncordon

    async def _preview_cordon(self, action: ActionName, p: NodeParams) -> Preview:
        node = await self._read_node(p.node)
        wanted = action is ActionName.CORDON
        current = bool(_dig(node, "spec", "unschedulable"))

        def state(unschedulable: bool) -> str:
            return "unschedulable" if unschedulable else "schedulable"

        if current == wanted:
            lines = [f"node {p.node}: already {state(current)} (no change)"]
        else:
            lines = [f"node {p.node}: {state(current)} → {state(wanted)}"]
            lines.append(
                "running pods stay; no new pods will be scheduled there"
                if wanted
                else "the scheduler may place new pods there again"
            )
        problem = await self._dry_run(
            f"patch node {p.node}",
            self._core.patch_node(
                p.node,
                {"spec": {"unschedulable": wanted}},
                dry_run=DRY_RUN,
                field_manager=self._field_manager,
            ),
        )
        return self._preview(action, f"node {p.node}", "node", node, lines, problem)

    async def _cordon(self, action: ActionName, p: NodeParams, expect: _Expectation) -> Result:
        node = await self._read_node(p.node)
        self._check("node", p.node, node, expect)
        wanted = action is ActionName.CORDON
        before = bool(_dig(node, "spec", "unschedulable"))
        if before == wanted:
            return Result(
                action,
                f"node {p.node}",
                [f"node {p.node} already {'cordoned' if wanted else 'uncordoned'}"],
                resource_version=_meta(node).get("resourceVersion"),
            )
        patched = self._dict(
            await self._call(
                f"patch node {p.node}",
                self._core.patch_node(
                    p.node, {"spec": {"unschedulable": wanted}}, field_manager=self._field_manager
                ),
            )
        )
        word = {True: "unschedulable", False: "schedulable"}
        return Result(
            action,
            f"node {p.node}",
            [f"node {p.node}: {word[before]} → {word[wanted]}"],
            resource_version=_meta(patched).get("resourceVersion"),
        )

    # ------------------------------------------------------------------ drain

    async def _node_pods(self, node: str) -> list[JSON]:
        listed = await self._call(
            f"list pods on node {node}",
            self._core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}"),
        )
        return [self._dict(p) for p in listed.items or []]

    @staticmethod
    def _drain_plan(pods: list[JSON], p: DrainParams) -> _DrainPlan:
        """kubectl drain's filters (pkg/drain/filters.go), without --force."""
        plan = _DrainPlan()
        for pod in pods:
            meta = _meta(pod)
            ns, name = str(meta.get("namespace")), str(meta.get("name"))
            phase = _dig(pod, "status", "phase")
            finished = phase in ("Succeeded", "Failed")
            owner = _controller(pod)
            if meta.get("deletionTimestamp"):
                plan.skipped.append(PodDrainResult(ns, name, PodOutcome.SKIPPED, "already terminating"))
                continue
            if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
                plan.skipped.append(PodDrainResult(ns, name, PodOutcome.SKIPPED, "mirror (static) pod"))
                continue
            if owner is not None and owner.get("kind") == "DaemonSet":
                if p.ignore_daemonsets:
                    plan.skipped.append(PodDrainResult(ns, name, PodOutcome.SKIPPED, "DaemonSet-managed"))
                else:
                    plan.errors.append(f"{ns}/{name} is DaemonSet-managed (needs ignore_daemonsets)")
                continue
            if owner is None and not finished:
                plan.errors.append(f"{ns}/{name} is not managed by a controller and would be lost")
                continue
            volumes = _dig(pod, "spec", "volumes") or []
            if not finished and not p.delete_emptydir_data and any("emptyDir" in v for v in volumes):
                plan.errors.append(f"{ns}/{name} has local storage (emptyDir; needs delete_emptydir_data)")
                continue
            plan.evict.append(pod)
        return plan

    def _eviction(self, pod: JSON, grace: int, dry_run: bool) -> Any:
        meta = _meta(pod)
        return client.V1Eviction(
            metadata=client.V1ObjectMeta(name=meta.get("name"), namespace=meta.get("namespace")),
            delete_options=client.V1DeleteOptions(
                grace_period_seconds=grace, dry_run=[DRY_RUN] if dry_run else None
            ),
        )

    async def _preview_drain(self, p: DrainParams) -> Preview:
        node = await self._read_node(p.node)
        pods = await self._node_pods(p.node)
        plan = self._drain_plan(pods, p)
        cordoned = bool(_dig(node, "spec", "unschedulable"))
        lines = [
            f"node {p.node}: {'already unschedulable' if cordoned else 'schedulable → unschedulable'}, "
            f"then evict {len(plan.evict)} pod(s) (grace {p.grace_period_seconds}s, timeout {p.timeout_seconds}s)"
        ]
        if plan.errors:
            lines += [f"cannot drain: {e}" for e in plan.errors]
            return self._preview(
                ActionName.DRAIN, f"node {p.node}", "node", node, lines, "; ".join(plan.errors)
            )

        async def check(pod: JSON) -> str:
            meta = _meta(pod)
            try:
                await self._core.create_namespaced_pod_eviction(
                    str(meta.get("name")),
                    str(meta.get("namespace")),
                    self._eviction(pod, p.grace_period_seconds, True),
                )
            except ApiException as exc:
                if exc.status == 429:
                    return (
                        f"evict {_pod_label(pod)}: blocked now by a PodDisruptionBudget ({_cause(exc)}); "
                        f"retried every {self._evict_retry_delay:g}s up to the timeout"
                    )
                if exc.status == 404:
                    return f"evict {_pod_label(pod)}: already gone"
                raise _api_error(f"evict pod {_pod_label(pod)} (dry run)", exc) from exc
            owner = _controller(pod) or {}
            return f"evict {_pod_label(pod)} ({owner.get('kind')} {owner.get('name')})"

        try:
            lines += list(await asyncio.gather(*(check(pod) for pod in plan.evict)))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IntegrationError(SYSTEM, f"evict pods on {p.node} (dry run) failed: {exc}") from exc
        lines += [f"skip {r.namespace}/{r.name}: {r.detail}" for r in plan.skipped]
        if plan.evict:
            lines.append(
                "evictions are checked one at a time; budgets may delay later ones until replacements are ready"
            )
        problem = None
        if not cordoned:
            problem = await self._dry_run(
                f"patch node {p.node}",
                self._core.patch_node(
                    p.node,
                    {"spec": {"unschedulable": True}},
                    dry_run=DRY_RUN,
                    field_manager=self._field_manager,
                ),
            )
        return self._preview(ActionName.DRAIN, f"node {p.node}", "node", node, lines, problem)

    async def _drain(self, p: DrainParams, expect: _Expectation) -> Result:
        node = await self._read_node(p.node)
        self._check("node", p.node, node, expect)
        pods = await self._node_pods(p.node)
        plan = self._drain_plan(pods, p)
        if plan.errors:
            # Refuse before cordoning so nothing half-happens.
            raise UserError(f"cannot drain node {p.node}: " + "; ".join(plan.errors))
        was_unschedulable = bool(_dig(node, "spec", "unschedulable"))
        changes = []
        if not was_unschedulable:
            await self._call(
                f"patch node {p.node}",
                self._core.patch_node(
                    p.node, {"spec": {"unschedulable": True}}, field_manager=self._field_manager
                ),
            )
            changes.append(f"node {p.node}: schedulable → unschedulable")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + p.timeout_seconds
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._evict_until_gone(pod, p.grace_period_seconds, deadline))
                for pod in plan.evict
            ]
        results = [t.result() for t in tasks]
        report = DrainReport(p.node, was_unschedulable, results, plan.skipped)
        evicted = [r for r in results if r.outcome in (PodOutcome.EVICTED, PodOutcome.ALREADY_GONE)]
        changes.append(f"evicted {len(evicted)} of {len(results)} pod(s); skipped {len(plan.skipped)}")
        changes += [
            f"{r.namespace}/{r.name}: {r.outcome.value}: {r.detail}" for r in results if r not in evicted
        ]
        refreshed = await self._read_node(p.node)
        return Result(
            ActionName.DRAIN,
            f"node {p.node}",
            changes,
            resource_version=_meta(refreshed).get("resourceVersion"),
            complete=report.complete,
            drain=report,
        )

    async def _evict_until_gone(self, pod: JSON, grace: int, deadline: float) -> PodDrainResult:
        meta = _meta(pod)
        ns, name, uid = str(meta.get("namespace")), str(meta.get("name")), meta.get("uid")
        loop = asyncio.get_running_loop()
        attempts = 0
        while True:
            attempts += 1
            try:
                await self._core.create_namespaced_pod_eviction(name, ns, self._eviction(pod, grace, False))
                break
            except ApiException as exc:
                if exc.status == 404:
                    return PodDrainResult(ns, name, PodOutcome.ALREADY_GONE, "not found", attempts)
                if exc.status == 429:
                    if loop.time() + self._evict_retry_delay > deadline:
                        return PodDrainResult(ns, name, PodOutcome.BLOCKED, _cause(exc), attempts)
                    await asyncio.sleep(self._evict_retry_delay)
                    continue
                return PodDrainResult(ns, name, PodOutcome.FAILED, _api_error("evict", exc).message, attempts)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return PodDrainResult(ns, name, PodOutcome.FAILED, f"{type(exc).__name__}: {exc}", attempts)
        # Wait until the pod (this uid) is gone, like kubectl's waitForDelete.
        while True:
            try:
                current = await self._core.read_namespaced_pod(name, ns)
                if current.metadata is None or current.metadata.uid != uid:
                    break
            except ApiException as exc:
                if exc.status == 404:
                    break
                return PodDrainResult(
                    ns, name, PodOutcome.FAILED, _api_error("get pod", exc).message, attempts
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                return PodDrainResult(ns, name, PodOutcome.FAILED, f"{type(exc).__name__}: {exc}", attempts)
            if loop.time() >= deadline:
                return PodDrainResult(ns, name, PodOutcome.FAILED, "evicted but still terminating", attempts)
            await asyncio.sleep(self._poll_interval)
        return PodDrainResult(ns, name, PodOutcome.EVICTED, "evicted", attempts)

    # ------------------------------------------------------------------ create job from cronjob

    def _job_name(self, p: CreateJobFromCronJobParams) -> str:
        if p.job_name:
            return p.job_name
        suffix = f"-manual-{self._job_suffix()}"
        return f"{p.cronjob[: JOB_NAME_MAX - len(suffix)].rstrip('-.')}{suffix}"

    @staticmethod
    def _job_from_cronjob(cronjob: JSON, name: str) -> JSON:
        """kubectl create job --from=cronjob (pkg/cmd/create/create_job.go createJobFromCronJob)."""
        meta = _meta(cronjob)
        job_template = _dig(cronjob, "spec", "jobTemplate") or {}
        template_meta = job_template.get("metadata") or {}
        annotations = {INSTANTIATE: "manual", **(template_meta.get("annotations") or {})}
        job_meta: JSON = {
            "name": name,
            "namespace": meta.get("namespace"),
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": meta.get("name"),
                    "uid": meta.get("uid"),
                    "controller": True,
                }
            ],
        }
        if template_meta.get("labels"):
            job_meta["labels"] = dict(template_meta["labels"])
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": job_meta,
            "spec": job_template.get("spec") or {},
        }

    async def _preview_create_job(self, p: CreateJobFromCronJobParams) -> Preview:
        label = f"{p.namespace}/{p.cronjob}"
        cronjob = await self._read_cronjob(p.namespace, p.cronjob)
        name = self._job_name(p)
        job = self._job_from_cronjob(cronjob, name)
        containers = list(_dig(job, "spec", "template", "spec", "containers") or [])
        lines = [
            f"create job {p.namespace}/{name} from cronjob {p.cronjob}"
            + ("" if p.job_name else " (the name suffix is chosen again at execution)"),
            f"image(s): {', '.join(_images(containers))}",
        ]
        for c in containers:
            argv = [*(c.get("command") or []), *(c.get("args") or [])]
            if argv:
                lines.append(f"container {c.get('name')}: {shlex.join(str(a) for a in argv)}")
        suspended = " (cronjob suspended)" if _dig(cronjob, "spec", "suspend") else ""
        lines.append(f"cronjob schedule {_dig(cronjob, 'spec', 'schedule')}{suspended}")
        problem = await self._dry_run(
            f"create job {p.namespace}/{name}",
            self._batch.create_namespaced_job(
                p.namespace, _body(job), dry_run=DRY_RUN, field_manager=self._field_manager
            ),
        )
        return self._preview(
            ActionName.CREATE_JOB_FROM_CRONJOB, f"cronjob {label}", "cronjob", cronjob, lines, problem
        )

    async def _create_job(self, p: CreateJobFromCronJobParams, expect: _Expectation) -> Result:
        label = f"{p.namespace}/{p.cronjob}"
        cronjob = await self._read_cronjob(p.namespace, p.cronjob)
        self._check("cronjob", label, cronjob, expect)
        name = self._job_name(p)
        created = self._dict(
            await self._call(
                f"create job {p.namespace}/{name}",
                self._batch.create_namespaced_job(
                    p.namespace,
                    _body(self._job_from_cronjob(cronjob, name)),
                    field_manager=self._field_manager,
                ),
            )
        )
        return Result(
            ActionName.CREATE_JOB_FROM_CRONJOB,
            f"cronjob {label}",
            [f"created job {p.namespace}/{name} from cronjob {p.cronjob}"],
            resource_version=_meta(created).get("resourceVersion"),
            job_name=name,
        )

    # ------------------------------------------------------------------ exec

    @staticmethod
    def _exec_container(pod: JSON, container: str | None) -> str:
        names = [str(c.get("name")) for c in _dig(pod, "spec", "containers") or []]
        label = _pod_label(pod)
        if container is not None:
            if container not in names:
                raise UserError(
                    f"pod {label} has no container {container!r} (containers: {', '.join(names)})"
                )
            return container
        if not names:
            raise UserError(f"pod {label} has no containers")
        return names[0]  # kubectl's default: the first container

    @staticmethod
    def _check_argv(argv: Sequence[str] | None) -> list[str]:
        if argv is None or isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise UserError("exec needs an argv (a list of strings expanded from an allow-listed template)")
        return list(argv)

    async def _preview_exec(self, p: ExecParams, argv: Sequence[str] | None) -> Preview:
        command = self._check_argv(argv)
        pod = await self._read_pod(p.namespace, p.pod)
        container = self._exec_container(pod, p.container)
        phase = _dig(pod, "status", "phase")
        lines = [
            f"run {shlex.join(command)} in pod {p.namespace}/{p.pod} container {container} (template {p.template})",
            "exec has no dry run; the pod and container were checked",
        ]
        problem = None if phase == "Running" else f"pod {p.namespace}/{p.pod} is {phase}, not Running"
        return self._preview(ActionName.EXEC, f"pod {p.namespace}/{p.pod}", "pod", pod, lines, problem)

    async def _exec_action(self, p: ExecParams, expect: _Expectation, argv: Sequence[str] | None) -> Result:
        command = self._check_argv(argv)
        pod = await self._read_pod(p.namespace, p.pod)
        self._check("pod", f"{p.namespace}/{p.pod}", pod, expect)
        result = await self.exec(p.namespace, p.pod, command, container=p.container)
        return Result(
            ActionName.EXEC,
            f"pod {p.namespace}/{p.pod}",
            [f"ran {shlex.join(command)} in pod {p.namespace}/{p.pod}: exit code {result.exit_code}"],
            resource_version=_meta(pod).get("resourceVersion"),
            complete=result.ok,
            exec_result=result,
        )

    async def exec(
        self,
        namespace: str,
        pod: str,
        argv: Sequence[str],
        *,
        container: str | None = None,
        timeout: float = 30.0,
    ) -> ExecResult:
        """Run `argv` (never a shell string) in a pod over the v4.channel.k8s.io WebSocket."""
        command = self._check_argv(argv)
        label = f"{namespace}/{pod}"
        pod_obj = await self._read_pod(namespace, pod)
        chosen = self._exec_container(pod_obj, container)
        if _dig(pod_obj, "status", "phase") != "Running":
            raise UserError(f"pod {label} is {_dig(pod_obj, 'status', 'phase')}, not Running")
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        status: JSON | None = None
        what = f"exec in pod {label}"
        ws_client = self._ws_factory()
        try:
            core = cast(Any, client.CoreV1Api(api_client=ws_client))
            context = await core.connect_get_namespaced_pod_exec(
                pod,
                namespace,
                command=command,
                container=chosen,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
            )
            async with asyncio.timeout(timeout), context as ws:
                async for msg in ws:
                    if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                        break
                    data = msg.data if isinstance(msg.data, bytes) else str(msg.data).encode()
                    if len(data) < 2:
                        continue
                    channel, payload = data[0], data[1:]
                    if channel == 1:
                        stdout.append(payload)
                    elif channel == 2:
                        stderr.append(payload)
                    elif channel == 3:
                        parsed = json.loads(payload)
                        status = parsed if isinstance(parsed, dict) else {"message": str(parsed)}
        except ApiException as exc:
            raise _api_error(what, exc) from exc
        except aiohttp.WSServerHandshakeError as exc:
            raise IntegrationError(
                SYSTEM, f"{what} failed ({exc.status}): {exc.message}", status=exc.status
            ) from exc
        except TimeoutError as exc:
            raise IntegrationError(SYSTEM, f"{what} timed out after {timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise IntegrationError(SYSTEM, f"{what} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            await ws_client.close()
        out, err = b"".join(stdout).decode(errors="replace"), b"".join(stderr).decode(errors="replace")
        if status is None:
            raise IntegrationError(SYSTEM, f"{what}: the connection closed without an exit status")
        if status.get("status") == "Success":
            return ExecResult(out, err, 0)
        if status.get("reason") == "NonZeroExitCode":
            for cause in _dig(status, "details", "causes") or []:
                if cause.get("reason") == "ExitCode":
                    return ExecResult(out, err, int(cause.get("message", "1")))
        raise IntegrationError(SYSTEM, f"{what} failed: {status.get('message') or status}")

    # ------------------------------------------------------------------ rollout status

    @staticmethod
    def _rollout_status(dep: JSON) -> RolloutStatus:
        """kubectl rollout status's DeploymentStatusViewer."""
        meta, spec, status = _meta(dep), dep.get("spec") or {}, dep.get("status") or {}
        name = meta.get("name")
        desired = int(spec.get("replicas", 1))
        replicas = int(status.get("replicas") or 0)
        updated = int(status.get("updatedReplicas") or 0)
        ready = int(status.get("readyReplicas") or 0)
        available = int(status.get("availableReplicas") or 0)
        generation = _generation(dep)
        observed = status.get("observedGeneration")

        def make(state: RolloutState, message: str) -> RolloutStatus:
            return RolloutStatus(
                state,
                message,
                desired,
                replicas,
                updated,
                ready,
                available,
                _revision(dep) or None,
                generation,
                int(observed) if observed is not None else None,
            )

        if generation is None or observed is None or int(observed) < generation:
            return make(RolloutState.PROGRESSING, "waiting for the deployment spec update to be observed")
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                return make(
                    RolloutState.STALLED,
                    f'deployment "{name}" exceeded its progress deadline: {cond.get("message", "")}'.strip(),
                )
        if updated < desired:
            return make(
                RolloutState.PROGRESSING, f"{updated} out of {desired} new replicas have been updated"
            )
        if replicas > updated:
            return make(
                RolloutState.PROGRESSING, f"{replicas - updated} old replicas are pending termination"
            )
        if available < updated:
            return make(RolloutState.PROGRESSING, f"{available} of {updated} updated replicas are available")
        return make(RolloutState.COMPLETE, f'deployment "{name}" successfully rolled out')

    async def rollout_status(self, namespace: str, deployment: str) -> RolloutStatus:
        return self._rollout_status(await self._read_deployment(namespace, deployment))

    async def wait_rollout(self, namespace: str, deployment: str, timeout: float) -> RolloutStatus:
        """Poll until the rollout completes or stalls (ProgressDeadlineExceeded), at most `timeout` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = await self.rollout_status(namespace, deployment)
            if status.state in (RolloutState.COMPLETE, RolloutState.STALLED):
                return status
            remaining = deadline - loop.time()
            if remaining <= 0:
                return replace(
                    status,
                    state=RolloutState.TIMED_OUT,
                    message=f"timed out after {timeout:g}s: {status.message}",
                )
            await asyncio.sleep(min(self._poll_interval, remaining))

    # ------------------------------------------------------------------ diagnostics (read-only)

    async def pods(self, namespace: str, selector_or_deployment: str) -> list[PodInfo]:
        """Pods of a deployment (a bare name) or matching a label selector (anything with = ! , or ' in ')."""
        value = selector_or_deployment.strip()
        if any(ch in value for ch in "=!,") or " in " in value or " notin " in value:
            selector = value
        else:
            dep = await self._read_deployment(namespace, value)
            selector = _selector_string(_dig(dep, "spec", "selector"))
        listed = await self._call(
            f"list pods in {namespace}", self._core.list_namespaced_pod(namespace, label_selector=selector)
        )
        return sorted((self._pod_info(self._dict(p)) for p in listed.items or []), key=lambda p: p.name)

    @staticmethod
    def _pod_info(pod: JSON) -> PodInfo:
        meta = _meta(pod)
        statuses = _dig(pod, "status", "containerStatuses") or []
        reason = None
        for s in statuses:
            state = s.get("state") or {}
            for key in ("waiting", "terminated"):
                if state.get(key) and state[key].get("reason"):
                    reason = str(state[key]["reason"])
        reason = reason or _dig(pod, "status", "reason")
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in _dig(pod, "status", "conditions") or []
        )
        owner = _controller(pod)
        return PodInfo(
            namespace=str(meta.get("namespace")),
            name=str(meta.get("name")),
            phase=str(_dig(pod, "status", "phase") or "Unknown"),
            ready=ready,
            ready_containers=sum(1 for s in statuses if s.get("ready")),
            total_containers=len(_dig(pod, "spec", "containers") or []),
            restarts=sum(int(s.get("restartCount") or 0) for s in statuses),
            node=_dig(pod, "spec", "nodeName"),
            reason=reason,
            images=_images(list(_dig(pod, "spec", "containers") or [])),
            owner=f"{owner.get('kind')}/{owner.get('name')}" if owner else None,
            created=_parse_time(meta.get("creationTimestamp")),
        )

    async def events(
        self, namespace: str, name: str, *, kind: str | None = None, limit: int = 50
    ) -> list[EventInfo]:
        """Events about an object (oldest first, at most `limit`, the newest kept)."""
        selector = f"involvedObject.name={name}" + (f",involvedObject.kind={kind}" if kind else "")
        listed = await self._call(
            f"list events in {namespace}",
            self._core.list_namespaced_event(namespace, field_selector=selector),
        )
        events = []
        for item in listed.items or []:
            ev = self._dict(item)
            last = _parse_time(
                ev.get("lastTimestamp") or ev.get("eventTime") or _meta(ev).get("creationTimestamp")
            )
            events.append(
                EventInfo(
                    type=str(ev.get("type") or "Normal"),
                    reason=str(ev.get("reason") or ""),
                    message=str(ev.get("message") or ""),
                    count=int(ev.get("count") or 1),
                    object_kind=str(_dig(ev, "involvedObject", "kind") or ""),
                    object_name=str(_dig(ev, "involvedObject", "name") or ""),
                    last_seen=last,
                    source=_dig(ev, "source", "component") or ev.get("reportingComponent"),
                )
            )
        epoch = datetime.min.replace(tzinfo=UTC)
        events.sort(key=lambda e: e.last_seen or epoch)
        return events[-limit:] if limit > 0 else []

    async def rollout_history(self, namespace: str, deployment: str) -> list[RevisionInfo]:
        dep = await self._read_deployment(namespace, deployment)
        current = _revision(dep)
        history = []
        for rs in await self._controlled_replica_sets(dep):
            rev = _revision(rs)
            if rev <= 0:
                continue
            history.append(
                RevisionInfo(
                    revision=rev,
                    replica_set=str(_meta(rs).get("name")),
                    images=_images(list(_dig(rs, "spec", "template", "spec", "containers") or [])),
                    change_cause=_annotations(rs).get(CHANGE_CAUSE),
                    replicas=int(_dig(rs, "spec", "replicas") or 0),
                    current=rev == current,
                    created=_parse_time(_meta(rs).get("creationTimestamp")),
                )
            )
        return sorted(history, key=lambda r: r.revision)

    async def logs_tail(
        self, namespace: str, pod: str, lines: int = 100, *, container: str | None = None
    ) -> str:
        """The last `lines` log lines, as text (read raw: the SDK mangles logs that parse as JSON)."""
        what = f"get logs of pod {namespace}/{pod}"
        kwargs: dict[str, Any] = {"tail_lines": max(lines, 0), "_preload_content": False}
        if container:
            kwargs["container"] = container
        core = cast(Any, self._core)
        try:
            response = await core.read_namespaced_pod_log(pod, namespace, **kwargs)
            try:
                text = str(await response.text())
                if response.status >= 400:
                    raise _http_error(what, int(response.status), text)
                return text
            finally:
                response.release()
        except ApiException as exc:
            raise _api_error(what, exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IntegrationError(SYSTEM, f"{what} failed: {type(exc).__name__}: {exc}") from exc


def _http_error(what: str, status: int, body: str) -> IntegrationError:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    message = parsed.get("message") or body.strip() or "no message"
    return IntegrationError(
        SYSTEM, f"{what} failed ({status} {parsed.get('reason', '')}): {message}", status=status
    )


def _as(params: Any, kind: type[T]) -> T:
    if not isinstance(params, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(params).__name__}")
    return params
