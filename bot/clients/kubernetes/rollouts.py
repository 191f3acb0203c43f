"""A deployment's ReplicaSets: its rollout history and `kubectl rollout undo`.

Undo lists the ReplicaSets by the deployment's selector, keeps the ones it controls, and sends
kubectl's JSON patch of `/spec/template` and `/metadata/annotations`
(pkg/polymorphichelpers/rollback.go).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.clients.kubernetes.api import KubeApi
from bot.clients.kubernetes.context import Expectation, Request, checked_preview, refuse_if_changed
from bot.clients.kubernetes.deployments import deployment_label, dry_run_patch, patch_deployment
from bot.clients.kubernetes.objects import (
    CHANGE_CAUSE,
    JSON,
    REVISION,
    annotations_of,
    containers,
    controller,
    dig,
    dig_dict,
    images,
    meta,
    parse_time,
    resource_version,
    revision,
    selector_string,
    template_without_hash,
    to_int,
)
from bot.clients.kubernetes.results import Preview, Result, RevisionInfo
from bot.core.actions import RolloutUndoParams
from bot.core.errors import UserError

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


async def controlled_replica_sets(api: KubeApi, dep: JSON) -> list[JSON]:
    """The deployment's own ReplicaSets, oldest revision first."""
    dep_meta = meta(dep)
    namespace, uid = str(dep_meta.get("namespace")), dep_meta.get("uid")
    selector = selector_string(dig_dict(dep, "spec", "selector"))
    listed = await api.call(
        f"list replicasets in {namespace}",
        api.apps.list_namespaced_replica_set(namespace, label_selector=selector),
    )
    items = [api.to_json(rs) for rs in listed.items or []]
    return sorted((rs for rs in items if (controller(rs) or {}).get("uid") == uid), key=revision)


async def rollout_history(api: KubeApi, namespace: str, deployment: str) -> list[RevisionInfo]:
    dep = await api.read_deployment(namespace, deployment)
    current = revision(dep)
    history = []
    for rs in await controlled_replica_sets(api, dep):
        rev = revision(rs)
        if rev <= 0:
            continue
        history.append(
            RevisionInfo(
                revision=rev,
                replica_set=str(meta(rs).get("name")),
                images=images(containers(rs)),
                change_cause=annotations_of(rs).get(CHANGE_CAUSE),
                replicas=to_int(dig(rs, "spec", "replicas")),
                current=rev == current,
                created=parse_time(meta(rs).get("creationTimestamp")),
            )
        )
    return sorted(history, key=lambda r: r.revision)


# --------------------------------------------------------------------------- rollout undo


@dataclass(frozen=True, slots=True)
class UndoPlan:
    deployment: JSON
    chosen: JSON  # the ReplicaSet whose template comes back
    patch: list[JSON]
    replica_sets: list[JSON]  # every controlled ReplicaSet


def _choose(with_revision: list[JSON], to_revision: int, label: str) -> JSON:
    if to_revision:
        chosen = next((rs for rs in with_revision if revision(rs) == to_revision), None)
        if chosen is None:
            known = ", ".join(str(revision(rs)) for rs in with_revision) or "none"
            raise UserError(
                f"deployment {label} has no revision {to_revision} in its history (revisions: {known})"
            )
        return chosen
    if len(with_revision) < 2:
        raise UserError(f"no rollout history found for deployment {label}: nothing to undo to")
    return with_revision[-2]


async def _undo_plan(api: KubeApi, p: RolloutUndoParams) -> UndoPlan:
    """What kubectl's rollback.go would send, or UserError when it would refuse."""
    label = deployment_label(p)
    dep = await api.read_deployment(p.namespace, p.deployment)
    if dig(dep, "spec", "paused"):
        raise UserError(f"deployment {label} is paused; resume it before undoing (kubectl refuses too)")
    rss = await controlled_replica_sets(api, dep)
    chosen = _choose([rs for rs in rss if revision(rs) > 0], p.to_revision, label)
    template = template_without_hash(dig_dict(chosen, "spec", "template"))
    if template == dig(dep, "spec", "template"):
        raise UserError(
            f"deployment {label} already runs the template of revision {revision(chosen)}: nothing to undo"
        )
    kept = {k: v for k, v in annotations_of(dep).items() if k in UNDO_KEEP_ANNOTATIONS}
    kept.update({k: v for k, v in annotations_of(chosen).items() if k not in UNDO_KEEP_ANNOTATIONS})
    patch: list[JSON] = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": kept},
    ]
    return UndoPlan(dep, chosen, patch, rss)


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


async def preview_undo(api: KubeApi, p: RolloutUndoParams, req: Request) -> Preview:
    label = deployment_label(p)
    plan = await _undo_plan(api, p)
    dep, chosen = plan.deployment, plan.chosen
    current_rev = revision(dep)
    next_rev = max((revision(rs) for rs in plan.replica_sets), default=current_rev) + 1
    lines = [
        f"deployment {label}: revision {current_rev} → revision {revision(chosen)} "
        f"(recorded as revision {next_rev})",
        *_image_changes(containers(dep), containers(chosen)),
    ]
    cause = annotations_of(chosen).get(CHANGE_CAUSE)
    if cause:
        lines.append(f"change-cause of revision {revision(chosen)}: {cause}")
    problem = await dry_run_patch(api, p, plan.patch)
    return checked_preview(req.action, f"deployment {label}", "deployment", dep, lines, problem)


async def undo(api: KubeApi, p: RolloutUndoParams, req: Request, expect: Expectation) -> Result:
    label = deployment_label(p)
    plan = await _undo_plan(api, p)
    refuse_if_changed("deployment", label, plan.deployment, expect)
    patched, rev = await patch_deployment(api, p, plan.patch)
    chosen_images = ", ".join(images(containers(plan.chosen)))
    return Result(
        req.action,
        f"deployment {label}",
        [
            f"rolled back from revision {revision(plan.deployment)} to the template of revision "
            f"{revision(plan.chosen)} ({chosen_images})",
            f"new revision {rev if rev is not None else 'pending'}",
        ],
        resource_version=resource_version(patched),
        revision=rev,
    )
