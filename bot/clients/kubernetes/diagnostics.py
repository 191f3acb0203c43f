"""The read-only diagnostics: a deployment's pods, an object's events, a pod's last log lines."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.clients.kubernetes.api import KubeApi
from bot.clients.kubernetes.errors import http_error
from bot.clients.kubernetes.objects import (
    JSON,
    as_dict,
    controller,
    dig,
    dig_dict,
    dig_dicts,
    dig_str,
    images,
    meta,
    parse_time,
    selector_string,
    to_int,
)
from bot.clients.kubernetes.pods import restarts
from bot.clients.kubernetes.results import EventInfo, PodInfo
from bot.clients.kubernetes.sdk import LogOptions


def _is_selector(value: str) -> bool:
    return any(ch in value for ch in "=!,") or " in " in value or " notin " in value


async def pods(api: KubeApi, namespace: str, selector_or_deployment: str) -> list[PodInfo]:
    """Pods of a deployment (a bare name) or matching a label selector (anything with = ! , or ' in ')."""
    value = selector_or_deployment.strip()
    if _is_selector(value):
        selector = value
    else:
        dep = await api.read_deployment(namespace, value)
        selector = selector_string(dig_dict(dep, "spec", "selector"))
    listed = await api.call(
        f"list pods in {namespace}", api.core.list_namespaced_pod(namespace, label_selector=selector)
    )
    return sorted((pod_info(api.to_json(p)) for p in listed.items or []), key=lambda p: p.name)


def _waiting_reason(pod: JSON) -> str | None:
    """The last container's waiting or terminated reason (CrashLoopBackOff, OOMKilled, ...)."""
    reason = None
    for status in dig_dicts(pod, "status", "containerStatuses"):
        state = dig_dict(status, "state")
        for key in ("waiting", "terminated"):
            found = as_dict(state.get(key)).get("reason")
            if found:
                reason = str(found)
    return reason


def pod_info(pod: JSON) -> PodInfo:
    pod_meta = meta(pod)
    statuses = dig_dicts(pod, "status", "containerStatuses")
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in dig_dicts(pod, "status", "conditions")
    )
    owner = controller(pod)
    pod_containers = dig_dicts(pod, "spec", "containers")
    return PodInfo(
        namespace=str(pod_meta.get("namespace")),
        name=str(pod_meta.get("name")),
        phase=str(dig(pod, "status", "phase") or "Unknown"),
        ready=ready,
        ready_containers=sum(1 for s in statuses if s.get("ready")),
        total_containers=len(pod_containers),
        restarts=restarts(pod),
        node=dig_str(pod, "spec", "nodeName"),
        reason=_waiting_reason(pod) or dig_str(pod, "status", "reason"),
        images=images(pod_containers),
        owner=f"{owner.get('kind')}/{owner.get('name')}" if owner else None,
        created=parse_time(pod_meta.get("creationTimestamp")),
    )


def _event_info(ev: JSON) -> EventInfo:
    last = parse_time(ev.get("lastTimestamp") or ev.get("eventTime") or meta(ev).get("creationTimestamp"))
    return EventInfo(
        type=str(ev.get("type") or "Normal"),
        reason=str(ev.get("reason") or ""),
        message=str(ev.get("message") or ""),
        count=to_int(ev.get("count")) or 1,
        object_kind=str(dig(ev, "involvedObject", "kind") or ""),
        object_name=str(dig(ev, "involvedObject", "name") or ""),
        last_seen=last,
        source=dig_str(ev, "source", "component") or dig_str(ev, "reportingComponent"),
    )


async def events(
    api: KubeApi, namespace: str, name: str, *, kind: str | None = None, limit: int = 50
) -> list[EventInfo]:
    """Events about an object (oldest first, at most `limit`, the newest kept)."""
    selector = f"involvedObject.name={name}" + (f",involvedObject.kind={kind}" if kind else "")
    listed = await api.call(
        f"list events in {namespace}",
        api.core.list_namespaced_event(namespace, field_selector=selector),
    )
    found = [_event_info(api.to_json(item)) for item in listed.items or []]
    epoch = datetime.min.replace(tzinfo=UTC)
    found.sort(key=lambda e: e.last_seen or epoch)
    return found[-limit:] if limit > 0 else []


async def logs_tail(
    api: KubeApi, namespace: str, pod: str, lines: int = 100, *, container: str | None = None
) -> str:
    """The last `lines` log lines, as text (read raw: the SDK mangles logs that parse as JSON)."""
    what = f"get logs of pod {namespace}/{pod}"
    options: LogOptions = {"tail_lines": max(lines, 0), "_preload_content": False}
    if container:
        options["container"] = container

    async def read() -> str:
        response = await api.logs.read_namespaced_pod_log(pod, namespace, **options)
        try:
            text = str(await response.text())
            if response.status >= 400:
                raise http_error(what, int(response.status), text)
            return text
        finally:
            response.release()

    return await api.call(what, read())
