"""Enrichment: what the responder needs first, posted into the incident channel.

For every alert name of an incident, its playbook (or the generic one): the runbook steps with
their checks evaluated, the graphs of its queries, and its remediation proposals. Each
playbook is posted once per incident (claimed in Postgres). Enrichment degrades and never
blocks the incident: Prometheus down or a bad query becomes a short note naming the query.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from bot.core.blockkit import escape
from bot.core.checks import CheckOutcome, evaluate_check_all
from bot.core.errors import IntegrationError
from bot.core.incident import Alert, IncidentView
from bot.core.playbooks import Graph, Playbook, alert_expression_graph
from bot.core.templating import TemplateError
from bot.deps import Deps
from bot.flows.diagnostics import run_diagnostic
from bot.render.graph import GraphSpec, render_graph
from bot.render.runbook import graph_caption, no_prometheus_note, runbook_messages
from bot.store.enrichment import EnrichmentStore

log = logging.getLogger("incidentbot.enrich")

LEASE_S = 120.0
DEFAULT_LOOKBACK = timedelta(hours=1)
# Proposals are made by the remediation engine; the wiring installs it here.
ProposeFn = Callable[[Deps, int, dict[str, str], Playbook], Awaitable[None]]


def _key(playbook: Playbook, alert: Alert) -> str:
    return playbook.name if playbook.system != "generic" else f"generic:{alert.name}"


def playbooks_for(deps: Deps, view: IncidentView) -> list[tuple[Playbook, Alert]]:
    """One playbook per alert name (the first alert of each name gives the labels)."""
    chosen: dict[str, tuple[Playbook, Alert]] = {}
    seen_names: set[str] = set()
    for alert in view.alerts:
        if alert.name in seen_names:
            continue
        seen_names.add(alert.name)
        playbook = deps.playbooks.resolve(alert.labels, alert.annotations, alert.generator_url)
        chosen.setdefault(_key(playbook, alert), (playbook, alert))
    return list(chosen.values())


async def on_published(deps: Deps, view: IncidentView, propose: ProposeFn | None = None) -> None:
    """Called after each publish: post the playbooks of alert names not covered yet."""
    if not view.incident.channel_id or not view.alerts:
        return
    await deps.pipeline.gate.turn()
    store = EnrichmentStore(deps.store.pool)
    posted = await store.posted(view.incident.id)
    for playbook, alert in playbooks_for(deps, view):
        key = _key(playbook, alert)
        if key in posted:
            continue
        if not await store.claim(view.incident.id, key, alert.name, deps.owner, deps.clock(), LEASE_S):
            continue
        await _post_playbook(deps, view, playbook, alert, propose)
        await store.mark_posted(view.incident.id, key, deps.clock())


async def _post_playbook(
    deps: Deps, view: IncidentView, playbook: Playbook, alert: Alert, propose: ProposeFn | None
) -> None:
    incident = view.incident
    channel = incident.channel_id
    assert channel is not None
    labels = alert.labels
    # Steps first (the checks are evaluated concurrently, bounded), graphs after.
    checks = await evaluate_checks(deps, playbook, labels)
    for msg in runbook_messages(playbook, labels, check_results=checks, incident_id=incident.id):
        await deps.chat.post(channel, msg)
    await deps.lifecycle.add_event(
        incident.id,
        "playbook_posted",
        f"Runbook `{escape(playbook.name)}` posted for {escape(alert.name)}",
        now=deps.clock(),
        data={
            "playbook": playbook.name,
            "alertname": alert.name,
            "generic": playbook.system == "generic",
        },
    )
    await post_graphs(deps, view, playbook, alert)
    await post_diagnostics(deps, channel, playbook, labels)
    if propose is not None and playbook.remediations:
        await propose(deps, incident.id, labels, playbook)


async def post_diagnostics(deps: Deps, channel: str, playbook: Playbook, labels: dict[str, str]) -> None:
    """The playbook's read-only Kubernetes views (pods, events, history, logs)."""
    if deps.cluster is None or not playbook.diagnostics:
        return
    for diag in playbook.diagnostics:
        await deps.chat.post(channel, await run_diagnostic(deps.cluster, diag, labels))


async def evaluate_checks(deps: Deps, playbook: Playbook, labels: dict[str, str]) -> dict[int, CheckOutcome]:
    source = deps.metrics_source
    if source is None:
        return {}
    results: dict[int, CheckOutcome] = {}

    async def one(index: int) -> None:
        check = playbook.steps[index].check
        assert check is not None
        try:
            query = check.render_query(labels)
            samples = await source.query_instant(query)
        except TemplateError as exc:
            results[index] = CheckOutcome(None, f"cannot evaluate: {exc}")
            return
        except IntegrationError as exc:
            results[index] = CheckOutcome(None, f"query failed: {exc.message}")
            return
        results[index] = evaluate_check_all(check.op, check.value, [s.value for s in samples])

    indexes = [i for i, step in enumerate(playbook.steps) if step.check is not None]
    await asyncio.gather(*(one(i) for i in indexes))
    return results


def graphs_of(playbook: Playbook, alert: Alert) -> list[Graph]:
    graphs = list(playbook.graphs)
    if playbook.graph_alert_expr or (playbook.system == "generic" and not graphs):
        own = alert_expression_graph(alert.generator_url, title=f"{alert.name} expression")
        if own is not None and all(g.query != own.query for g in graphs):
            graphs.append(own)
    return graphs


async def post_graphs(deps: Deps, view: IncidentView, playbook: Playbook, alert: Alert) -> None:
    channel = view.incident.channel_id
    assert channel is not None
    graphs = graphs_of(playbook, alert)
    if not graphs:
        return
    if deps.metrics_source is None:
        await deps.chat.post(channel, no_prometheus_note())
        return
    now = deps.clock()
    start_of_alerts = min(a.starts_at for a in view.alerts) if view.alerts else view.incident.created_at
    for graph in graphs:
        await draw(deps, channel, graph, alert.labels, alert_start=start_of_alerts, now=now)


async def draw(
    deps: Deps,
    channel: str,
    graph: Graph,
    labels: dict[str, str],
    *,
    alert_start: datetime | None,
    now: datetime,
    lookback: timedelta | None = None,
    templated: bool = True,
) -> None:
    """Query, render and upload one graph; failures become a short note in the channel."""
    assert deps.metrics_source is not None
    back = lookback or timedelta(seconds=graph.range_seconds)
    start = min(now - back, (alert_start or now) - DEFAULT_LOOKBACK)
    window = f"{start:%H:%M}–{now:%H:%M} UTC"
    title = graph.title
    try:
        query = graph.render_query(labels) if templated else graph.query
    except TemplateError as exc:
        await deps.chat.post_text(
            channel, graph_caption(title, graph.query, window_text=window, error=str(exc))
        )
        return
    try:
        series = await deps.metrics_source.query_range(query, start, now)
    except IntegrationError as exc:
        await deps.chat.post_text(channel, graph_caption(title, query, window_text=window, error=exc.message))
        return
    spec = GraphSpec(title=title, query=query, unit=graph.unit, threshold=graph.threshold)
    png = await asyncio.to_thread(
        render_graph, spec, series, start=start, end=now, alert_start=alert_start, now=now
    )
    await deps.chat.upload_file(
        channel,
        png,
        filename=f"{graph.title[:40].replace('/', '-')}.png",
        title=title,
        comment=graph_caption(title, query, window_text=window),
    )
    log.info("graph.posted", extra={"channel": channel, "query": query})
