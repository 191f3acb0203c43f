"""Deleting a pod (DELETE with `gracePeriodSeconds`), and the facts about a pod people read first."""

from __future__ import annotations

from bot.clients.kubernetes.api import DRY_RUN, KubeApi
from bot.clients.kubernetes.context import Expectation, Request, checked_preview, refuse_if_changed
from bot.clients.kubernetes.objects import (
    JSON,
    controller,
    dig,
    dig_dicts,
    pod_label,
    resource_version,
    to_int,
)
from bot.clients.kubernetes.results import Preview, Result
from bot.core.actions import DeletePodParams


def restarts(pod: JSON) -> int:
    return sum(to_int(s.get("restartCount")) for s in dig_dicts(pod, "status", "containerStatuses"))


def _pod_lines(pod: JSON) -> list[str]:
    owner = controller(pod)
    lines = [
        f"pod {pod_label(pod)}: phase {dig(pod, 'status', 'phase') or 'Unknown'}, "
        f"node {dig(pod, 'spec', 'nodeName') or 'none'}, restarts {restarts(pod)}"
    ]
    if owner is None:
        lines.append("not managed by a controller: it will NOT be recreated")
    else:
        lines.append(f"owned by {owner.get('kind')} {owner.get('name')}: a replacement will be created")
    return lines


async def preview_delete_pod(api: KubeApi, p: DeletePodParams, req: Request) -> Preview:
    label = f"{p.namespace}/{p.pod}"
    pod = await api.read_pod(p.namespace, p.pod)
    lines = [*_pod_lines(pod), f"delete with a grace period of {p.grace_period_seconds}s"]
    problem = await api.dry_run(
        f"delete pod {label}",
        api.core.delete_namespaced_pod(
            p.pod, p.namespace, grace_period_seconds=p.grace_period_seconds, dry_run=DRY_RUN
        ),
    )
    return checked_preview(req.action, f"pod {label}", "pod", pod, lines, problem)


async def delete_pod(api: KubeApi, p: DeletePodParams, req: Request, expect: Expectation) -> Result:
    label = f"{p.namespace}/{p.pod}"
    pod = await api.read_pod(p.namespace, p.pod)
    refuse_if_changed("pod", label, pod, expect)
    deleted = api.to_json(
        await api.call(
            f"delete pod {label}",
            api.core.delete_namespaced_pod(p.pod, p.namespace, grace_period_seconds=p.grace_period_seconds),
        )
    )
    return Result(
        req.action,
        f"pod {label}",
        [f"deleted pod {label} (grace period {p.grace_period_seconds}s)"],
        resource_version=resource_version(deleted),
    )
