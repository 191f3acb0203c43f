"""Read-only Kubernetes diagnostics from a playbook: pods, events, rollout history, log tail.

Shown in the incident channel, never mutating. Names come from the alert's labels through the
playbook's templates, which only produce valid DNS-1123 names.
"""

from __future__ import annotations

from bot.clients.kubernetes.cluster import KubernetesCluster
from bot.core.blockkit import Message
from bot.core.errors import IntegrationError
from bot.core.playbooks import Diagnostic
from bot.core.templating import TemplateError
from bot.render.runbook import diagnostics_message


async def run_diagnostic(cluster: KubernetesCluster, diag: Diagnostic, labels: dict[str, str]) -> Message:
    try:
        namespace = diag.render_namespace(labels)
        target = diag.render_target(labels)
    except TemplateError as exc:
        return diagnostics_message(diag.kind, [f"cannot run: {exc}"])
    title = diag.title or f"{diag.kind.replace('_', ' ')}: {namespace}/{target or '*'}"
    try:
        if diag.kind == "pods":
            pods = await cluster.pods(namespace, target or "")
            lines = [
                f"{p.name:<48} {p.ready_containers}/{p.total_containers} {p.phase:<10} restarts={p.restarts}"
                + (f" {p.reason}" if p.reason else "")
                for p in pods
            ] or ["no pods"]
            return diagnostics_message(title, lines)
        if diag.kind == "events":
            if target is None:
                return diagnostics_message(title, ["no target to list events for"])
            events = await cluster.events(namespace, target)
            lines = [
                f"{e.type:<8} {e.reason:<24} x{e.count} {e.object_kind}/{e.object_name}: {e.message}"
                for e in events
            ]
            return diagnostics_message(title, lines or ["no recent events"])
        if diag.kind == "rollout_history":
            if target is None:
                return diagnostics_message(title, ["no deployment named"])
            history = await cluster.rollout_history(namespace, target)
            lines = [
                f"{'*' if r.current else ' '} revision {r.revision:<4} {', '.join(r.images)}"
                + (f"  ({r.change_cause})" if r.change_cause else "")
                for r in history
            ]
            return diagnostics_message(title, lines or ["no revisions"])
        # logs: of the pod, or of the first pod of the deployment
        pod = target
        if diag.target_kind == "deployment" and target is not None:
            pods = await cluster.pods(namespace, target)
            pod = pods[0].name if pods else None
        if pod is None:
            return diagnostics_message(title, ["no pod to read logs from"])
        container = diag.container
        text = await cluster.logs_tail(namespace, pod, diag.tail_lines, container=container)
        return diagnostics_message(f"{title} (pod {pod})", text.splitlines() or ["(no log lines)"], tail=True)
    except IntegrationError as exc:
        return diagnostics_message(title, [f"failed: {exc.message}"])
