"""Read-only Kubernetes diagnostics from a playbook: pods, events, rollout history, log tail.

Shown in the incident channel, never mutating. Names come from the alert's labels through the
playbook's templates, which only produce valid DNS-1123 names. A diagnostic with nothing to say
(no target named, no events, no revisions, no log lines) is not posted: it would only push the
proposals and the rest out of sight. An empty pod list is said: it is a finding.
"""

from __future__ import annotations

from bot.clients.kubernetes.cluster import KubernetesCluster
from bot.core.errors import IntegrationError
from bot.core.playbooks import Diagnostic
from bot.core.templating import TemplateError
from bot.render.diagnostics import DiagnosticOutput


def _output(title: str, lines: list[str], *, tail: bool = False) -> DiagnosticOutput | None:
    return DiagnosticOutput(title, tuple(lines), tail) if lines else None


async def _logs(
    cluster: KubernetesCluster, diag: Diagnostic, namespace: str, target: str | None, title: str
) -> DiagnosticOutput | None:
    """The log tail of the pod, or of the first pod of the deployment."""
    pod = target
    if diag.target_kind == "deployment" and target is not None:
        pods = await cluster.pods(namespace, target)
        pod = pods[0].name if pods else None
    if pod is None:
        return None
    text = await cluster.logs_tail(namespace, pod, diag.tail_lines, container=diag.container)
    return _output(f"{title} (pod {pod})", text.splitlines(), tail=True)


async def _read(
    cluster: KubernetesCluster, diag: Diagnostic, namespace: str, target: str | None, title: str
) -> DiagnosticOutput | None:
    if diag.kind == "pods":
        pods = await cluster.pods(namespace, target or "")
        lines = [
            f"{p.name:<48} {p.ready_containers}/{p.total_containers} {p.phase:<10} restarts={p.restarts}"
            + (f" {p.reason}" if p.reason else "")
            for p in pods
        ]
        return DiagnosticOutput(title, tuple(lines or ["no pods"]))
    if diag.kind == "events":
        if target is None:
            return None
        events = await cluster.events(namespace, target)
        return _output(
            title,
            [
                f"{e.type:<8} {e.reason:<24} x{e.count} {e.object_kind}/{e.object_name}: {e.message}"
                for e in events
            ],
        )
    if diag.kind == "rollout_history":
        if target is None:
            return None
        history = await cluster.rollout_history(namespace, target)
        return _output(
            title,
            [
                f"{'*' if r.current else ' '} revision {r.revision:<4} {', '.join(r.images)}"
                + (f"  ({r.change_cause})" if r.change_cause else "")
                for r in history
            ],
        )
    return await _logs(cluster, diag, namespace, target, title)


async def run_diagnostic(
    cluster: KubernetesCluster, diag: Diagnostic, labels: dict[str, str]
) -> DiagnosticOutput | None:
    """The diagnostic's output, or None when it has nothing to say."""
    try:
        namespace = diag.render_namespace(labels)
        target = diag.render_target(labels)
    except TemplateError as exc:
        return DiagnosticOutput(diag.kind, (f"cannot run: {exc}",))
    title = diag.title or f"{diag.kind.replace('_', ' ')}: {namespace}/{target or '*'}"
    try:
        return await _read(cluster, diag, namespace, target, title)
    except IntegrationError as exc:
        return DiagnosticOutput(title, (f"failed: {exc.message}",))
