"""`kubectl set env` and `kubectl set resources` on a deployment's containers.

Both are one sequence: read the deployment, pick the containers, compute the strategic merge
patch (containers and env merged by name) with a before → after line per value, then dry-run
it (preview) or send it (execute). Only the change to one container differs: each is an `Edit`.

Environment values may be secrets, for every variable: the lines anyone sees say only whether
a variable is set, changed or unchanged; the values before and after are in the preview's
`private_lines` (for the requester), and are cut out of any apiserver message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from bot.clients.kubernetes.api import KubeApi
from bot.clients.kubernetes.context import Expectation, Request, checked_preview
from bot.clients.kubernetes.deployments import (
    deployment_label,
    dry_run_patch,
    patch_deployment,
    unchanged_deployment,
)
from bot.clients.kubernetes.objects import JSON, as_dict, containers, dig_dicts, resource_version
from bot.clients.kubernetes.results import Preview, Result
from bot.core.actions import HIDDEN, DeploymentTarget, ResourceSpec, SetEnvParams, SetResourcesParams
from bot.core.errors import IntegrationError, UserError


@dataclass(slots=True)
class Lines:
    """What an edit changes, in words: `public` for anyone, `private` with the values for the
    requester only, and the `secrets` that must never appear in public text."""

    public: list[str] = field(default_factory=list)
    private: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)

    def extend(self, other: Lines) -> None:
        self.public += other.public
        self.private += other.private
        self.secrets |= other.secrets

    def hide(self, text: str) -> str:
        """`text` with every secret value cut out (longest first, so none is left in part)."""
        for secret in sorted((s for s in self.secrets if s), key=len, reverse=True):
            text = text.replace(secret, HIDDEN)
        return text


def same_lines(lines: Iterable[str]) -> Lines:
    """Lines with nothing secret: the same for everyone."""
    shown = list(lines)
    return Lines(shown, list(shown))


# One container → (its entry in the patch's `containers`, what changes).
ContainerChange = Callable[[JSON], tuple[JSON, Lines]]


@dataclass(frozen=True, slots=True)
class Edit:
    """One container edit: its name in the preview, which containers, and the change to each."""

    what: str
    container: str | None  # None: every container, as kubectl does without -c
    change: ContainerChange
    refusal: str | None = None  # why it cannot be sent at all (told once the containers are found)


def _pick_containers(dep: JSON, container: str | None, label: str) -> list[JSON]:
    found = containers(dep)
    if container is None:
        return found
    chosen = [c for c in found if c.get("name") == container]
    if not chosen:
        names = ", ".join(str(c.get("name")) for c in found)
        raise UserError(f"deployment {label} has no container {container!r} (containers: {names})")
    return chosen


def _plan(dep: JSON, label: str, edit: Edit) -> tuple[JSON, Lines]:
    """(the strategic merge patch, what it changes)."""
    chosen = _pick_containers(dep, edit.container, label)
    if edit.refusal:
        raise UserError(edit.refusal)
    entries: list[JSON] = []
    lines = Lines()
    for container in chosen:
        entry, container_lines = edit.change(container)
        entries.append(entry)
        lines.extend(container_lines)
    return {"spec": {"template": {"spec": {"containers": entries}}}}, lines


async def preview_edit(api: KubeApi, p: DeploymentTarget, req: Request, edit: Edit) -> Preview:
    label = deployment_label(p)
    dep = await api.read_deployment(p.namespace, p.deployment)
    patch, lines = _plan(dep, label, edit)
    heading = f"deployment {label}: {edit.what} (starts a rollout if anything changes)"
    problem = await dry_run_patch(api, p, patch)
    return checked_preview(
        req.action,
        f"deployment {label}",
        "deployment",
        dep,
        [heading, *lines.public],
        lines.hide(problem) if problem else None,
        private_lines=[heading, *lines.private],
    )


async def apply_edit(
    api: KubeApi, p: DeploymentTarget, req: Request, expect: Expectation, edit: Edit
) -> Result:
    dep = await unchanged_deployment(api, p, expect)
    patch, lines = _plan(dep, deployment_label(p), edit)
    try:
        patched, rev = await patch_deployment(api, p, patch)
    except IntegrationError as err:
        raise IntegrationError(err.system, lines.hide(err.message), status=err.status) from None
    return Result(
        req.action,
        f"deployment {deployment_label(p)}",
        lines.public,
        resource_version=resource_version(patched),
        revision=rev,
    )


# --------------------------------------------------------------------------- set env


def _quote(value: object) -> str:
    return "unset" if value is None else json.dumps(value)


def _reference(existing: JSON) -> str:
    source = as_dict(existing["valueFrom"])
    ref = as_dict(source.get("secretKeyRef")) or as_dict(source.get("configMapKeyRef"))
    what = "secret" if "secretKeyRef" in source else "configmap" if ref else "a reference"
    return f"(from {what} {ref.get('name', '')}/{ref.get('key', '')})" if ref else f"(from {what})"


def _env_lines(cname: str, key: str, value: str, existing: JSON | None) -> Lines:
    """(public, private) lines for one variable; the public one never carries a value."""
    where = f"container {cname}: {key}"
    if existing is not None and existing.get("valueFrom") is not None:
        before = _reference(existing)
        return Lines(
            [f"{where} {before} → set (value hidden)"], [f"{where} {before} → {json.dumps(value)}"], {value}
        )
    if existing is None:
        return Lines(
            [f"{where} unset → set (value hidden)"], [f"{where} unset → {json.dumps(value)}"], {value}
        )
    old = str(existing.get("value", ""))
    if old == value:
        return Lines([f"{where} unchanged"], [f"{where} {json.dumps(value)} (unchanged)"], {value})
    return Lines(
        [f"{where} changed (values hidden)"],
        [f"{where} {_quote(existing.get('value', ''))} → {json.dumps(value)}"],
        {old, value},
    )


def _env_change(env: dict[str, str], container: JSON) -> tuple[JSON, Lines]:
    cname = str(container.get("name"))
    current = {str(e.get("name")): e for e in dig_dicts(container, "env")}
    items: list[JSON] = []
    lines = Lines()
    for key, value in env.items():
        existing = current.get(key)
        lines.extend(_env_lines(cname, key, value, existing))
        item: JSON = {"name": key, "value": value}
        if existing is not None and existing.get("valueFrom") is not None:
            item["valueFrom"] = None  # a literal replaces a reference (as kubectl does)
        items.append(item)
    return {"name": cname, "env": items}, lines


def set_env_edit(p: SetEnvParams) -> Edit:
    return Edit("set env", p.container, partial(_env_change, dict(p.env)))


async def preview_set_env(api: KubeApi, p: SetEnvParams, req: Request) -> Preview:
    return await preview_edit(api, p, req, set_env_edit(p))


async def set_env(api: KubeApi, p: SetEnvParams, req: Request, expect: Expectation) -> Result:
    return await apply_edit(api, p, req, expect, set_env_edit(p))


# --------------------------------------------------------------------------- set resources


def _wanted(requests: ResourceSpec | None, limits: ResourceSpec | None) -> dict[str, dict[str, str]]:
    wanted: dict[str, dict[str, str]] = {}
    for kind, spec in (("requests", requests), ("limits", limits)):
        if spec is None:
            continue
        values = {k: v for k, v in (("cpu", spec.cpu), ("memory", spec.memory)) if v is not None}
        if values:
            wanted[kind] = values
    return wanted


def _resources_change(wanted: dict[str, dict[str, str]], container: JSON) -> tuple[JSON, Lines]:
    cname = str(container.get("name"))
    current = as_dict(container.get("resources"))
    lines = []
    for kind, values in wanted.items():
        for resource, value in values.items():
            before = as_dict(current.get(kind)).get(resource)
            change = "(unchanged)" if str(before) == value else f"→ {value}"
            lines.append(f"container {cname}: {kind}.{resource} {before or 'unset'} {change}")
    return {"name": cname, "resources": wanted}, same_lines(lines)


def set_resources_edit(p: SetResourcesParams) -> Edit:
    wanted = _wanted(p.requests, p.limits)
    refusal = None if wanted else "set resources needs at least one request or limit"
    return Edit("set resources", p.container, partial(_resources_change, wanted), refusal)


async def preview_set_resources(api: KubeApi, p: SetResourcesParams, req: Request) -> Preview:
    return await preview_edit(api, p, req, set_resources_edit(p))


async def set_resources(api: KubeApi, p: SetResourcesParams, req: Request, expect: Expectation) -> Result:
    return await apply_edit(api, p, req, expect, set_resources_edit(p))
