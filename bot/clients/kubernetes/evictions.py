"""The pod half of a drain: which pods kubectl would evict, and evicting one until it is gone.

Evictions go through policy/v1 so PodDisruptionBudgets apply: a 429 (the budget refuses for
now) is retried every `evict_retry_delay` s until the drain's deadline. Pods in namespaces the
caller does not allow (the policy's namespace rules) are left running and reported as skipped:
a drain never reaches into a namespace no remediation may touch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from bot.clients.kubernetes.api import DRY_RUN, KubeApi
from bot.clients.kubernetes.errors import api_error, cause
from bot.clients.kubernetes.objects import (
    JSON,
    annotations_of,
    controller,
    dig,
    dig_dicts,
    dig_str,
    meta,
    pod_label,
)
from bot.clients.kubernetes.results import PodDrainResult, PodOutcome
from bot.core.actions import DrainParams

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


@dataclass(slots=True)
class DrainPlan:
    evict: list[JSON] = field(default_factory=list)
    skipped: list[PodDrainResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def node_pods(api: KubeApi, node: str) -> list[JSON]:
    listed = await api.call(
        f"list pods on node {node}",
        api.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}"),
    )
    return [api.to_json(p) for p in listed.items or []]


def _refusal(pod: JSON, p: DrainParams) -> tuple[str, bool] | None:
    """Why kubectl drain would not evict `pod`: (the reason, whether that blocks the drain)."""
    phase = dig(pod, "status", "phase")
    finished = phase in ("Succeeded", "Failed")
    owner = controller(pod)
    if meta(pod).get("deletionTimestamp"):
        return "already terminating", False
    if MIRROR_ANNOTATION in annotations_of(pod):
        return "mirror (static) pod", False
    if owner is not None and owner.get("kind") == "DaemonSet":
        if p.ignore_daemonsets:
            return "DaemonSet-managed", False
        return "is DaemonSet-managed (needs ignore_daemonsets)", True
    if owner is None and not finished:
        return "is not managed by a controller and would be lost", True
    volumes = dig_dicts(pod, "spec", "volumes")
    if not finished and not p.delete_emptydir_data and any("emptyDir" in v for v in volumes):
        return "has local storage (emptyDir; needs delete_emptydir_data)", True
    return None


def drain_plan(
    pods: list[JSON], p: DrainParams, namespace_allowed: Callable[[str], bool] | None = None
) -> DrainPlan:
    """kubectl drain's filters (pkg/drain/filters.go), without --force; pods in namespaces
    `namespace_allowed` refuses are skipped (left running) before any other filter."""
    plan = DrainPlan()
    for pod in pods:
        pod_meta = meta(pod)
        ns, name = str(pod_meta.get("namespace")), str(pod_meta.get("name"))
        if namespace_allowed is not None and not namespace_allowed(ns):
            plan.skipped.append(
                PodDrainResult(
                    ns, name, PodOutcome.NOT_ALLOWED, f"namespace {ns} is not allowed by the policy"
                )
            )
            continue
        refusal = _refusal(pod, p)
        if refusal is None:
            plan.evict.append(pod)
        elif refusal[1]:
            plan.errors.append(f"{ns}/{name} {refusal[0]}")
        else:
            plan.skipped.append(PodDrainResult(ns, name, PodOutcome.SKIPPED, refusal[0]))
    return plan


def _eviction(pod: JSON, grace: int, dry_run: bool) -> client.V1Eviction:
    return client.V1Eviction(
        metadata=client.V1ObjectMeta(
            name=dig_str(pod, "metadata", "name"), namespace=dig_str(pod, "metadata", "namespace")
        ),
        delete_options=client.V1DeleteOptions(
            grace_period_seconds=grace, dry_run=[DRY_RUN] if dry_run else None
        ),
    )


async def check_eviction(api: KubeApi, pod: JSON, grace: int) -> str:
    """A preview line: what a dry-run eviction of `pod` says now."""
    pod_meta = meta(pod)
    try:
        await api.core.create_namespaced_pod_eviction(
            str(pod_meta.get("name")), str(pod_meta.get("namespace")), _eviction(pod, grace, True)
        )
    except ApiException as exc:
        if exc.status == 429:
            return (
                f"evict {pod_label(pod)}: blocked now by a PodDisruptionBudget ({cause(exc)}); "
                f"retried every {api.evict_retry_delay:g}s up to the timeout"
            )
        if exc.status == 404:
            return f"evict {pod_label(pod)}: already gone"
        raise api_error(f"evict pod {pod_label(pod)} (dry run)", exc) from exc
    owner = controller(pod) or {}
    return f"evict {pod_label(pod)} ({owner.get('kind')} {owner.get('name')})"


async def evict_until_gone(api: KubeApi, pod: JSON, grace: int, deadline: float) -> PodDrainResult:
    """Evict `pod` (retrying while a budget refuses), then wait until this uid is gone."""
    attempts, refused = await _evict(api, pod, grace, deadline)
    if refused is not None:
        return refused
    return await _wait_gone(api, pod, deadline, attempts)


async def _evict(api: KubeApi, pod: JSON, grace: int, deadline: float) -> tuple[int, PodDrainResult | None]:
    """(attempts, None once evicted or the result that ends this pod's drain)."""
    pod_meta = meta(pod)
    ns, name = str(pod_meta.get("namespace")), str(pod_meta.get("name"))
    loop = asyncio.get_running_loop()
    attempts = 0
    while True:
        attempts += 1
        try:
            await api.core.create_namespaced_pod_eviction(name, ns, _eviction(pod, grace, False))
            return attempts, None
        except ApiException as exc:
            if exc.status == 404:
                return attempts, PodDrainResult(ns, name, PodOutcome.ALREADY_GONE, "not found", attempts)
            if exc.status != 429:
                failed = PodDrainResult(
                    ns, name, PodOutcome.FAILED, api_error("evict", exc).message, attempts
                )
                return attempts, failed
            if loop.time() + api.evict_retry_delay > deadline:
                return attempts, PodDrainResult(ns, name, PodOutcome.BLOCKED, cause(exc), attempts)
            await asyncio.sleep(api.evict_retry_delay)
        except (aiohttp.ClientError, TimeoutError) as exc:
            failed = PodDrainResult(ns, name, PodOutcome.FAILED, f"{type(exc).__name__}: {exc}", attempts)
            return attempts, failed


async def _wait_gone(api: KubeApi, pod: JSON, deadline: float, attempts: int) -> PodDrainResult:
    """Wait until the pod (this uid) is gone, like kubectl's waitForDelete."""
    pod_meta = meta(pod)
    ns, name, uid = str(pod_meta.get("namespace")), str(pod_meta.get("name")), pod_meta.get("uid")
    loop = asyncio.get_running_loop()
    while True:
        try:
            current = await api.core.read_namespaced_pod(name, ns)
            if current.metadata is None or current.metadata.uid != uid:
                break
        except ApiException as exc:
            if exc.status == 404:
                break
            return PodDrainResult(ns, name, PodOutcome.FAILED, api_error("get pod", exc).message, attempts)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return PodDrainResult(ns, name, PodOutcome.FAILED, f"{type(exc).__name__}: {exc}", attempts)
        if loop.time() >= deadline:
            return PodDrainResult(ns, name, PodOutcome.FAILED, "evicted but still terminating", attempts)
        await asyncio.sleep(api.poll_interval)
    return PodDrainResult(ns, name, PodOutcome.EVICTED, "evicted", attempts)
