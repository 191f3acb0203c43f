"""Enrichment: what the responder needs first, posted into the incident channel.

For every alert name of an incident, its playbook (or the generic one): the runbook steps with
their checks evaluated, the graphs of its queries, and its remediation proposals. Each
playbook is posted once per incident (claimed in Postgres). Enrichment degrades and never
blocks the incident: Prometheus down or a bad query becomes a short note naming the query.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from bot.clients.kubernetes.cluster import KubernetesCluster
from bot.clients.prometheus import PrometheusMetrics
from bot.clients.slack import SlackChat
from bot.core.blockkit import escape
from bot.core.checks import CheckOutcome, evaluate_check_all
from bot.core.errors import IntegrationError
from bot.core.incident import Alert, IncidentView
from bot.core.playbooks import Graph, Playbook, PlaybookSet, alert_expression_graph
from bot.core.ports import Clock
from bot.core.templating import TemplateError
from bot.flows.diagnostics import run_diagnostic
from bot.flows.gate import IntakeGate
from bot.flows.remediation.propose import Proposer
from bot.obs import logs
from bot.render.graph import GraphSpec, render_graph
from bot.render.runbook import graph_caption, no_prometheus_note, runbook_messages
from bot.store.enrichment import EnrichmentStore
from bot.store.lifecycle import LifecycleStore

log = logs.logger(logs.Component.ENRICH)

LEASE_S = 120.0
DEFAULT_LOOKBACK = timedelta(hours=1)


def _key(playbook: Playbook, alert: Alert) -> str:
    return playbook.name if playbook.system != "generic" else f"generic:{alert.name}"


def graphs_of(playbook: Playbook, alert: Alert) -> list[Graph]:
    graphs = list(playbook.graphs)
    if playbook.graph_alert_expr or (playbook.system == "generic" and not graphs):
        own = alert_expression_graph(alert.generator_url, title=f"{alert.name} expression")
        if own is not None and all(g.query != own.query for g in graphs):
            graphs.append(own)
    return graphs


class Enricher:
    def __init__(
        self,
        store: EnrichmentStore,
        lifecycle: LifecycleStore,
        chat: SlackChat,
        prometheus: PrometheusMetrics | None,
        cluster: KubernetesCluster | None,
        playbooks: PlaybookSet,
        proposer: Proposer,
        gate: IntakeGate,
        clock: Clock,
        *,
        owner: str,
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.chat = chat
        self.prometheus = prometheus
        self.cluster = cluster
        self.playbooks = playbooks
        self.proposer = proposer
        self.gate = gate
        self.clock = clock
        self.owner = owner

    @property
    def graphs_on(self) -> bool:
        return self.prometheus is not None

    def playbooks_for(self, view: IncidentView) -> list[tuple[Playbook, Alert]]:
        """One playbook per alert name (the first alert of each name gives the labels)."""
        chosen: dict[str, tuple[Playbook, Alert]] = {}
        seen_names: set[str] = set()
        for alert in view.alerts:
            if alert.name in seen_names:
                continue
            seen_names.add(alert.name)
            playbook = self.playbooks.resolve(alert.labels, alert.annotations, alert.generator_url)
            chosen.setdefault(_key(playbook, alert), (playbook, alert))
        return list(chosen.values())

    async def after_publish(self, view: IncidentView) -> bool:
        """Publish hook: post the playbooks of alert names not covered yet. Never asks for
        another publish (what it posts goes straight into the channel)."""
        if not view.incident.channel_id or not view.alerts:
            return False
        await self.gate.turn()
        posted = await self.store.posted(view.incident.id)
        for playbook, alert in self.playbooks_for(view):
            key = _key(playbook, alert)
            if key in posted:
                continue
            if not await self.store.claim(
                view.incident.id, key, alert.name, self.owner, self.clock(), LEASE_S
            ):
                continue
            await self._post_playbook(view, playbook, alert)
            await self.store.mark_posted(view.incident.id, key, self.clock())
        return False

    async def _post_playbook(self, view: IncidentView, playbook: Playbook, alert: Alert) -> None:
        incident = view.incident
        channel = incident.channel_id
        assert channel is not None
        labels = alert.labels
        # Steps first (the checks are evaluated concurrently, bounded), graphs after.
        checks = await self.evaluate_checks(playbook, labels)
        for msg in runbook_messages(playbook, labels, check_results=checks, incident_id=incident.id):
            await self.chat.post(channel, msg)
        await self.lifecycle.add_event(
            incident.id,
            "playbook_posted",
            f"Runbook `{escape(playbook.name)}` posted for {escape(alert.name)}",
            now=self.clock(),
            data={
                "playbook": playbook.name,
                "alertname": alert.name,
                "generic": playbook.system == "generic",
            },
        )
        await self.post_graphs(view, playbook, alert)
        await self.post_diagnostics(channel, playbook, labels)
        if playbook.remediations:
            await self.proposer.propose_for_alert(incident.id, labels, playbook)

    async def post_runbook(
        self, channel: str, incident_id: int, playbook: Playbook, labels: dict[str, str]
    ) -> None:
        """Every step of a playbook, expanded, with its checks evaluated for these labels."""
        checks = await self.evaluate_checks(playbook, labels) if labels else {}
        for msg in runbook_messages(
            playbook, labels, check_results=checks, expanded=True, incident_id=incident_id
        ):
            await self.chat.post(channel, msg)

    async def post_diagnostics(self, channel: str, playbook: Playbook, labels: dict[str, str]) -> None:
        """The playbook's read-only Kubernetes views (pods, events, history, logs)."""
        if self.cluster is None or not playbook.diagnostics:
            return
        for diag in playbook.diagnostics:
            await self.chat.post(channel, await run_diagnostic(self.cluster, diag, labels))

    async def evaluate_checks(self, playbook: Playbook, labels: dict[str, str]) -> dict[int, CheckOutcome]:
        source = self.prometheus
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

    async def post_graphs(self, view: IncidentView, playbook: Playbook, alert: Alert) -> None:
        channel = view.incident.channel_id
        assert channel is not None
        graphs = graphs_of(playbook, alert)
        if not graphs:
            return
        if self.prometheus is None:
            await self.chat.post(channel, no_prometheus_note())
            return
        now = self.clock()
        start_of_alerts = min(a.starts_at for a in view.alerts) if view.alerts else view.incident.created_at
        for graph in graphs:
            await self.draw(channel, graph, alert.labels, alert_start=start_of_alerts, now=now)

    async def draw(
        self,
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
        assert self.prometheus is not None
        back = lookback or timedelta(seconds=graph.range_seconds)
        start = min(now - back, (alert_start or now) - DEFAULT_LOOKBACK)
        window = f"{start:%H:%M}–{now:%H:%M} UTC"
        title = graph.title
        try:
            query = graph.render_query(labels) if templated else graph.query
        except TemplateError as exc:
            await self.chat.post_text(
                channel, graph_caption(title, graph.query, window_text=window, error=str(exc))
            )
            return
        try:
            series = await self.prometheus.query_range(query, start, now)
        except IntegrationError as exc:
            await self.chat.post_text(
                channel, graph_caption(title, query, window_text=window, error=exc.message)
            )
            return
        spec = GraphSpec(title=title, query=query, unit=graph.unit, threshold=graph.threshold)
        # Drawing is CPU work: a worker thread keeps the event loop free.
        png = await asyncio.to_thread(
            render_graph, spec, series, start=start, end=now, alert_start=alert_start, now=now
        )
        await self.chat.upload_file(
            channel,
            png,
            filename=f"{graph.title[:40].replace('/', '-')}.png",
            title=title,
            comment=graph_caption(title, query, window_text=window),
        )
        log.info("graph.posted", extra={"channel": channel, "query": query})
