"""Nodes: cordon and uncordon (SMP `spec.unschedulable`), and drain.

Drain is kubectl's: cordon, list the node's pods, skip DaemonSet and mirror pods (and pods in
namespaces the policy does not allow), evict (policy/v1) each, retry 429 (PodDisruptionBudget)
every `evict_retry_delay` s up to the timeout, and wait for deletion (see `evictions`).
"""

from __future__ import annotations

import asyncio

import aiohttp

from bot.clients.kubernetes.api import DRY_RUN, KubeApi
from bot.clients.kubernetes.context import Expectation, Request, checked_preview, refuse_if_changed
from bot.clients.kubernetes.errors import SYSTEM
from bot.clients.kubernetes.evictions import check_eviction, drain_plan, evict_until_gone, node_pods
from bot.clients.kubernetes.objects import JSON, dig, resource_version
from bot.clients.kubernetes.results import DrainReport, PodOutcome, Preview, Result
from bot.core.actions import ActionName, DrainParams, NodeParams
from bot.core.errors import IntegrationError, UserError


def _state(unschedulable: bool) -> str:
    return "unschedulable" if unschedulable else "schedulable"


def _unschedulable(node: JSON) -> bool:
    return bool(dig(node, "spec", "unschedulable"))


def _schedulability_patch(unschedulable: bool) -> JSON:
    return {"spec": {"unschedulable": unschedulable}}


async def _dry_run_schedulability(api: KubeApi, node: str, unschedulable: bool) -> str | None:
    return await api.dry_run(
        f"patch node {node}",
        api.core.patch_node(
            node, _schedulability_patch(unschedulable), dry_run=DRY_RUN, field_manager=api.field_manager
        ),
    )


async def _set_schedulability(api: KubeApi, node: str, unschedulable: bool) -> JSON:
    patched = await api.call(
        f"patch node {node}",
        api.core.patch_node(node, _schedulability_patch(unschedulable), field_manager=api.field_manager),
    )
    return api.to_json(patched)


# --------------------------------------------------------------------------- cordon / uncordon


async def preview_cordon(api: KubeApi, p: NodeParams, req: Request) -> Preview:
    """Cordon or uncordon, as `req.action` says."""
    node = await api.read_node(p.node)
    wanted = req.action is ActionName.CORDON
    current = _unschedulable(node)
    if current == wanted:
        lines = [f"node {p.node}: already {_state(current)} (no change)"]
    else:
        lines = [
            f"node {p.node}: {_state(current)} → {_state(wanted)}",
            "running pods stay; no new pods will be scheduled there"
            if wanted
            else "the scheduler may place new pods there again",
        ]
    problem = await _dry_run_schedulability(api, p.node, wanted)
    return checked_preview(req.action, f"node {p.node}", "node", node, lines, problem)


async def cordon(api: KubeApi, p: NodeParams, req: Request, expect: Expectation) -> Result:
    """Cordon or uncordon, as `req.action` says."""
    node = await api.read_node(p.node)
    refuse_if_changed("node", p.node, node, expect)
    wanted = req.action is ActionName.CORDON
    before = _unschedulable(node)
    if before == wanted:
        return Result(
            req.action,
            f"node {p.node}",
            [f"node {p.node} already {'cordoned' if wanted else 'uncordoned'}"],
            resource_version=resource_version(node),
        )
    patched = await _set_schedulability(api, p.node, wanted)
    return Result(
        req.action,
        f"node {p.node}",
        [f"node {p.node}: {_state(before)} → {_state(wanted)}"],
        resource_version=resource_version(patched),
    )


# --------------------------------------------------------------------------- drain


async def preview_drain(api: KubeApi, p: DrainParams, req: Request) -> Preview:
    node = await api.read_node(p.node)
    plan = drain_plan(await node_pods(api, p.node), p, req.namespace_allowed)
    cordoned = _unschedulable(node)
    lines = [
        f"node {p.node}: {'already unschedulable' if cordoned else 'schedulable → unschedulable'}, "
        f"then evict {len(plan.evict)} pod(s) (grace {p.grace_period_seconds}s, timeout {p.timeout_seconds}s)"
    ]
    # Pods the policy keeps the drain away from come first: they stay on the cordoned node.
    lines += [
        f"skip {r.namespace}/{r.name}: {r.detail} (left running)"
        for r in plan.skipped
        if r.outcome is PodOutcome.NOT_ALLOWED
    ]
    if plan.errors:
        lines += [f"cannot drain: {e}" for e in plan.errors]
        return checked_preview(req.action, f"node {p.node}", "node", node, lines, "; ".join(plan.errors))
    try:
        checks = (check_eviction(api, pod, p.grace_period_seconds) for pod in plan.evict)
        lines += list(await asyncio.gather(*checks))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise IntegrationError(SYSTEM, f"evict pods on {p.node} (dry run) failed: {exc}") from exc
    lines += [
        f"skip {r.namespace}/{r.name}: {r.detail}"
        for r in plan.skipped
        if r.outcome is not PodOutcome.NOT_ALLOWED
    ]
    if plan.evict:
        lines.append(
            "evictions are checked one at a time; budgets may delay later ones until replacements are ready"
        )
    problem = None if cordoned else await _dry_run_schedulability(api, p.node, True)
    return checked_preview(req.action, f"node {p.node}", "node", node, lines, problem)


async def drain(api: KubeApi, p: DrainParams, req: Request, expect: Expectation) -> Result:
    node = await api.read_node(p.node)
    refuse_if_changed("node", p.node, node, expect)
    plan = drain_plan(await node_pods(api, p.node), p, req.namespace_allowed)
    if plan.errors:
        # Refuse before cordoning so nothing half-happens.
        raise UserError(f"cannot drain node {p.node}: " + "; ".join(plan.errors))
    was_unschedulable = _unschedulable(node)
    changes = []
    if not was_unschedulable:
        await _set_schedulability(api, p.node, True)
        changes.append(f"node {p.node}: schedulable → unschedulable")
    deadline = asyncio.get_running_loop().time() + p.timeout_seconds
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(evict_until_gone(api, pod, p.grace_period_seconds, deadline))
            for pod in plan.evict
        ]
    results = [t.result() for t in tasks]
    report = DrainReport(p.node, was_unschedulable, results, plan.skipped)
    evicted = [r for r in results if r.outcome in (PodOutcome.EVICTED, PodOutcome.ALREADY_GONE)]
    changes.append(f"evicted {len(evicted)} of {len(results)} pod(s); skipped {len(plan.skipped)}")
    changes += [
        f"left {r.namespace}/{r.name} running: {r.detail}"
        for r in plan.skipped
        if r.outcome is PodOutcome.NOT_ALLOWED
    ]
    changes += [f"{r.namespace}/{r.name}: {r.outcome.value}: {r.detail}" for r in results if r not in evicted]
    refreshed = await api.read_node(p.node)
    return Result(
        req.action,
        f"node {p.node}",
        changes,
        resource_version=resource_version(refreshed),
        complete=report.complete,
        drain=report,
    )
