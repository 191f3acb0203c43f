"""Deployments: rollout restart, scale, the patch every template change shares, rollout status.

| action | request |
|---|---|
| rollout restart | SMP `spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]` |
| scale | merge patch `{"spec":{"replicas":N}}` on `deployments/scale` |
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC

from bot.clients.kubernetes.api import DRY_RUN, MERGE_PATCH, KubeApi
from bot.clients.kubernetes.context import Expectation, Request, checked_preview, refuse_if_changed
from bot.clients.kubernetes.objects import (
    JSON,
    containers,
    dig,
    dig_dict,
    dig_dicts,
    generation,
    images,
    meta,
    optional_int,
    resource_version,
    revision,
    to_int,
)
from bot.clients.kubernetes.results import Preview, Result, RolloutState, RolloutStatus
from bot.core.actions import DeploymentTarget, RolloutRestartParams, ScaleParams
from bot.core.errors import UserError

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def deployment_label(p: DeploymentTarget) -> str:
    return f"{p.namespace}/{p.deployment}"


# --------------------------------------------------------------------------- template patches


async def unchanged_deployment(api: KubeApi, p: DeploymentTarget, expect: Expectation) -> JSON:
    """The deployment read again, or UserError when it changed since the preview."""
    dep = await api.read_deployment(p.namespace, p.deployment)
    refuse_if_changed("deployment", deployment_label(p), dep, expect)
    return dep


async def dry_run_patch(api: KubeApi, p: DeploymentTarget, body: JSON | list[JSON]) -> str | None:
    """The dry run of a deployment patch: None, or why the apiserver refused it."""
    return await api.dry_run(
        f"patch deployment {deployment_label(p)}",
        api.apps.patch_namespaced_deployment(
            p.deployment, p.namespace, body, dry_run=DRY_RUN, field_manager=api.field_manager
        ),
    )


async def patch_deployment(
    api: KubeApi, p: DeploymentTarget, body: JSON | list[JSON]
) -> tuple[JSON, int | None]:
    """Patch the deployment: (the patched object, its new revision or None while pending)."""
    patched = api.to_json(
        await api.call(
            f"patch deployment {deployment_label(p)}",
            api.apps.patch_namespaced_deployment(
                p.deployment, p.namespace, body, field_manager=api.field_manager
            ),
        )
    )
    return patched, await new_revision(api, p.namespace, p.deployment, generation(patched))


async def new_revision(api: KubeApi, namespace: str, name: str, observed_at: int | None) -> int | None:
    """The revision once the deployment controller observed generation `observed_at` (bounded wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + api.revision_wait
    while True:
        dep = await api.read_deployment(namespace, name)
        observed = optional_int(dig(dep, "status", "observedGeneration"))
        if observed_at is None or (observed is not None and observed >= observed_at):
            return revision(dep) or None
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(min(api.poll_interval, 0.2))


# --------------------------------------------------------------------------- rollout restart


def _restart_stamp(api: KubeApi) -> str:
    return api.clock().astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _restart_patch(stamp: str) -> JSON:
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}


def _strategy(dep: JSON) -> str:
    strategy = dig_dict(dep, "spec", "strategy")
    if strategy.get("type") == "Recreate":
        return "Recreate: all pods stop before new ones start"
    rolling = dig_dict(strategy, "rollingUpdate")
    return (
        f"RollingUpdate, maxUnavailable {rolling.get('maxUnavailable', '25%')}, "
        f"maxSurge {rolling.get('maxSurge', '25%')}"
    )


async def preview_restart(api: KubeApi, p: RolloutRestartParams, req: Request) -> Preview:
    dep = await api.read_deployment(p.namespace, p.deployment)
    label = deployment_label(p)
    rev = revision(dep)
    replicas = to_int(dig(dep, "spec", "replicas"))
    lines = [
        f"deployment {label}: revision {rev} → new rollout (revision {rev + 1}) with the same images",
        f"replaces all {replicas} pods ({_strategy(dep)})",
        f"images: {', '.join(images(containers(dep)))}",
    ]
    if dig(dep, "spec", "paused"):
        problem: str | None = "the deployment is paused; resume it before restarting"
    else:
        problem = await dry_run_patch(api, p, _restart_patch(_restart_stamp(api)))
    return checked_preview(req.action, f"deployment {label}", "deployment", dep, lines, problem)


async def restart(api: KubeApi, p: RolloutRestartParams, req: Request, expect: Expectation) -> Result:
    label = deployment_label(p)
    dep = await unchanged_deployment(api, p, expect)
    if dig(dep, "spec", "paused"):
        raise UserError(f"deployment {label} is paused; resume it before restarting (kubectl refuses too)")
    before = revision(dep)
    stamp = _restart_stamp(api)
    patched, rev = await patch_deployment(api, p, _restart_patch(stamp))
    return Result(
        req.action,
        f"deployment {label}",
        [f"restartedAt={stamp}", f"revision {before} → {rev if rev is not None else 'pending'}"],
        resource_version=resource_version(patched),
        revision=rev,
    )


# --------------------------------------------------------------------------- scale


async def preview_scale(api: KubeApi, p: ScaleParams, req: Request) -> Preview:
    dep = await api.read_deployment(p.namespace, p.deployment)
    label = deployment_label(p)
    current = to_int(dig(dep, "spec", "replicas"))
    ready = to_int(dig(dep, "status", "readyReplicas"))
    lines = [
        f"deployment {label}: replicas {current} → {p.replicas}"
        + (" (no change)" if current == p.replicas else ""),
        f"ready now: {ready}/{current}",
    ]
    problem = await api.dry_run(
        f"patch deployments/scale {label}",
        api.scale.patch_namespaced_deployment_scale(
            p.deployment,
            p.namespace,
            {"spec": {"replicas": p.replicas}},
            dry_run=DRY_RUN,
            field_manager=api.field_manager,
            _content_type=MERGE_PATCH,
        ),
    )
    return checked_preview(req.action, f"deployment {label}", "deployment", dep, lines, problem)


async def scale(api: KubeApi, p: ScaleParams, req: Request, expect: Expectation) -> Result:
    label = deployment_label(p)
    dep = await unchanged_deployment(api, p, expect)
    before = to_int(dig(dep, "spec", "replicas"))
    scaled = api.to_json(
        await api.call(
            f"patch deployments/scale {label}",
            api.scale.patch_namespaced_deployment_scale(
                p.deployment,
                p.namespace,
                {"spec": {"replicas": p.replicas}},
                field_manager=api.field_manager,
                _content_type=MERGE_PATCH,
            ),
        )
    )
    return Result(
        req.action,
        f"deployment {label}",
        [f"replicas {before} → {dig(scaled, 'spec', 'replicas')}"],
        resource_version=resource_version(scaled),
        revision=revision(dep) or None,
    )


# --------------------------------------------------------------------------- rollout status


def rollout_status(dep: JSON) -> RolloutStatus:
    """kubectl rollout status's DeploymentStatusViewer."""
    spec, status = dig_dict(dep, "spec"), dig_dict(dep, "status")
    name = meta(dep).get("name")
    desired = to_int(spec.get("replicas", 1))
    replicas = to_int(status.get("replicas"))
    updated = to_int(status.get("updatedReplicas"))
    ready = to_int(status.get("readyReplicas"))
    available = to_int(status.get("availableReplicas"))
    current_generation = generation(dep)
    observed = optional_int(status.get("observedGeneration"))

    def make(state: RolloutState, message: str) -> RolloutStatus:
        return RolloutStatus(
            state,
            message,
            desired,
            replicas,
            updated,
            ready,
            available,
            revision(dep) or None,
            current_generation,
            observed,
        )

    if current_generation is None or observed is None or observed < current_generation:
        return make(RolloutState.PROGRESSING, "waiting for the deployment spec update to be observed")
    for cond in dig_dicts(status, "conditions"):
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return make(
                RolloutState.STALLED,
                f'deployment "{name}" exceeded its progress deadline: {cond.get("message", "")}'.strip(),
            )
    if updated < desired:
        return make(RolloutState.PROGRESSING, f"{updated} out of {desired} new replicas have been updated")
    if replicas > updated:
        return make(RolloutState.PROGRESSING, f"{replicas - updated} old replicas are pending termination")
    if available < updated:
        return make(RolloutState.PROGRESSING, f"{available} of {updated} updated replicas are available")
    return make(RolloutState.COMPLETE, f'deployment "{name}" successfully rolled out')


async def read_rollout_status(api: KubeApi, namespace: str, deployment: str) -> RolloutStatus:
    return rollout_status(await api.read_deployment(namespace, deployment))


async def wait_rollout(api: KubeApi, namespace: str, deployment: str, timeout: float) -> RolloutStatus:
    """Poll until the rollout completes or stalls (ProgressDeadlineExceeded), at most `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await read_rollout_status(api, namespace, deployment)
        if status.state in (RolloutState.COMPLETE, RolloutState.STALLED):
            return status
        remaining = deadline - loop.time()
        if remaining <= 0:
            return replace(
                status,
                state=RolloutState.TIMED_OUT,
                message=f"timed out after {timeout:g}s: {status.message}",
            )
        await asyncio.sleep(min(api.poll_interval, remaining))
