"""What one preview or execute call carries besides its parameters, and the two things every
action does with the target it read: describe it in a `Preview`, or refuse to act when it
changed since that preview."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.clients.kubernetes.objects import JSON, dig, generation, meta, resource_version
from bot.clients.kubernetes.results import Preview
from bot.core.actions import ActionName
from bot.core.errors import UserError

Kind = Literal["deployment", "node", "pod", "cronjob"]


@dataclass(frozen=True, slots=True)
class Request:
    """The action asked for (cordon and uncordon share their handlers), for exec the argv
    expanded from an allow-listed template, and for drain which namespaces' pods it may
    evict (the policy's namespace rules; None: any)."""

    action: ActionName
    argv: Sequence[str] | None = None
    namespace_allowed: Callable[[str], bool] | None = None


@dataclass(frozen=True, slots=True)
class Expectation:
    """The state of the target its preview saw (see `KubernetesCluster.execute`)."""

    resource_version: str | None
    fingerprint: str | None


def fingerprint(kind: Kind, obj: JSON) -> str:
    """The part of the target's state that makes a preview stale when it changes."""
    obj_meta = meta(obj)
    if kind == "node":
        return f"node:{obj_meta.get('uid')}:unschedulable={bool(dig(obj, 'spec', 'unschedulable'))}"
    if kind == "pod":
        return f"pod:{obj_meta.get('uid')}"
    return f"{kind}:{obj_meta.get('uid')}:generation={obj_meta.get('generation')}"


def refuse_if_changed(kind: Kind, label: str, obj: JSON, expect: Expectation) -> None:
    """Refuse (UserError) when the target changed since the preview."""
    current_fp = fingerprint(kind, obj)
    current_rv = resource_version(obj)
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


def checked_preview(
    action: ActionName,
    target: str,
    kind: Kind,
    obj: JSON,
    lines: list[str],
    problem: str | None,
    *,
    private_lines: list[str] | None = None,
) -> Preview:
    """The preview of an existing target; `problem` is why the dry run (or the action) refused;
    `private_lines` are for the requester only (see `Preview`)."""
    if problem:
        lines = [*lines, f"dry run refused: {problem}"]
    return Preview(
        action=action,
        target=target,
        summary_lines=lines,
        resource_version=resource_version(obj),
        generation=generation(obj),
        dry_run_ok=problem is None,
        target_exists=True,
        fingerprint=fingerprint(kind, obj),
        problem=problem,
        private_lines=list(private_lines or []),
    )
