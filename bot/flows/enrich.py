"""Enrichment: what the responder needs first, posted into the incident channel.

For every alert name of an incident, its playbook (or the generic one): the runbook steps with
their checks evaluated, the graphs of its queries, and its remediation proposals. Each
playbook is posted once per incident: claimed in Postgres with a short lease renewed while it
is posted, every message under a key of its own (`playbook:<incident>:<playbook>:<part>`), so a
post resumed after its holder died repeats nothing already posted. Enrichment degrades and never
blocks the incident: Prometheus down or a bad query becomes a short note naming the query.

What reaches Prometheus (bot.core.promql): playbook queries are trusted. An alert's own
expression (its generatorURL) is used only when the URL names a configured Prometheus, and it
passes the cost checks before it is sent, as an ad hoc graph does; ad hoc graphs are also
limited per user and in number at once (`GraphLimiter`). Every graph window ends now and starts
at most the configured maximum lookback ago (a playbook graph's own declared range excepted),
whatever an alert says about when it started.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.clients.kubernetes.clusters import Clusters
from bot.clients.prometheus import PrometheusMetrics, PrometheusSources, choose_step
from bot.clients.slack import SlackChat
from bot.core import blockkit as kit
from bot.core.blockkit import escape
from bot.core.checks import CheckOutcome, evaluate_check_all
from bot.core.clusters import UnknownClusterError
from bot.core.errors import IntegrationError, UserError
from bot.core.incident import Alert, IncidentView
from bot.core.playbooks import Graph, Playbook, PlaybookSet, alert_expression_graph
from bot.core.ports import Clock
from bot.core.promql import QueryGuard, QueryRefused
from bot.core.templating import TemplateError
from bot.flows.diagnostics import run_diagnostic
from bot.flows.gate import IntakeGate
from bot.flows.leases import heartbeat
from bot.flows.owned_messages import OwnedMessages
from bot.flows.remediation.propose import Proposer
from bot.obs import logs
from bot.render.diagnostics import diagnostic_messages
from bot.render.graph import GraphSpec, render_graph
from bot.render.runbook import diagnostics_message, graph_caption, no_prometheus_note, runbook_messages
from bot.render.times import GraphWindow
from bot.store.coordination import Coordination
from bot.store.enrichment import EnrichmentStore
from bot.store.lifecycle import LifecycleStore

log = logs.logger(logs.Component.ENRICH)

# A playbook post's claim lapses this long after its holder died (a live holder renews it).
LEASE_S = 15.0
DEFAULT_LOOKBACK = timedelta(hours=1)
REFUSED = "refused before it reached Prometheus"
# What the message ledger records for an uploaded graph (a file has no message ts to adopt).
UPLOADED = "uploaded"


def _key(playbook: Playbook, alert: Alert) -> str:
    return playbook.name if playbook.system != "generic" else f"generic:{alert.name}"


def _wants_own_expression(playbook: Playbook) -> bool:
    return playbook.graph_alert_expr or playbook.system == "generic"


def graphs_of(playbook: Playbook, alert: Alert, generator_url: str) -> list[tuple[Graph, bool]]:
    """The graphs to draw for one alert, each with whether it comes from the alert (and so is
    checked before it is sent). `generator_url` is the alert's, or "" when it is not trusted.
    The generic playbook's graphs are all the alert's own expression."""
    from_alert = playbook.system == "generic"
    graphs = [(graph, from_alert) for graph in playbook.graphs]
    if playbook.graph_alert_expr or (from_alert and not graphs):
        own = alert_expression_graph(generator_url, title=f"{alert.name} expression")
        if own is not None and all(g.query != own.query for g, _ in graphs):
            graphs.append((own, True))
    return graphs


@dataclass(frozen=True, slots=True)
class GraphLimits:
    per_user_per_minute: float = 2.0
    per_user_burst: int = 3
    max_in_flight: int = 4
    #: How long a slot outlives a replica that died while drawing (a drawing replica frees it).
    slot_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class GraphSlot:
    name: str
    token: str


class GraphLimiter:
    """Ad hoc graphs: a token bucket per user and at most `max_in_flight` drawn at once, both
    shared by every replica through Redis. A refused request still takes its token, so asking
    again too early only pushes the next graph further out (the refusal says when)."""

    def __init__(self, coord: Coordination, limits: GraphLimits) -> None:
        self.coord = coord
        self.limits = limits

    async def admit(self, user_id: str) -> GraphSlot:
        """A slot for one graph by `user_id`; UserError (with the reason) when over a limit."""
        limits = self.limits
        slot = await self._take_slot()
        if slot is None:
            raise UserError(
                f"Not graphed: {limits.max_in_flight} ad hoc graphs are being drawn already (the most at"
                " once); try again in a few seconds. Nothing was sent to Prometheus."
            )
        rate = limits.per_user_per_minute / 60
        wait = await self.coord.take_token(f"graph:{user_id}", rate, limits.per_user_burst)
        if wait > 0:
            await self.release(slot)
            raise UserError(
                f"Not graphed: you asked for {limits.per_user_burst} ad hoc graphs in a short time (at most"
                f" {limits.per_user_per_minute:g} a minute); try again in {math.ceil(wait + 1 / rate)}s."
                " Nothing was sent to Prometheus."
            )
        return slot

    async def _take_slot(self) -> GraphSlot | None:
        ttl_ms = round(self.limits.slot_seconds * 1000)
        for index in range(self.limits.max_in_flight):
            name = f"graph-slot:{index}"
            token = await self.coord.try_lock(name, ttl_ms)
            if token is not None:
                return GraphSlot(name, token)
        return None

    async def release(self, slot: GraphSlot) -> None:
        await self.coord.release(slot.name, slot.token)


class Enricher:
    def __init__(
        self,
        store: EnrichmentStore,
        lifecycle: LifecycleStore,
        chat: SlackChat,
        prometheus: PrometheusSources,
        clusters: Clusters,
        playbooks: PlaybookSet,
        proposer: Proposer,
        gate: IntakeGate,
        clock: Clock,
        *,
        owner: str,
        guard: QueryGuard,
        limiter: GraphLimiter,
        owned: OwnedMessages,
        lease_seconds: float = LEASE_S,
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.chat = chat
        self.prometheus = prometheus
        self.clusters = clusters
        self.playbooks = playbooks
        self.proposer = proposer
        self.gate = gate
        self.clock = clock
        self.owner = owner
        self.guard = guard
        self.limiter = limiter
        self.owned = owned
        self.lease_s = lease_seconds

    def _key(self, playbook: Playbook, alert: Alert) -> str:
        """Once per incident, playbook and cluster: the same alert from two clusters (one group)
        gets each cluster's diagnostics and proposals."""
        key = _key(playbook, alert)
        named = self.clusters.catalog.named_by(alert.labels)
        return f"{key}@{named}" if named else key

    def _listed_cluster(self, labels: dict[str, str] | None) -> str | None:
        """The listed cluster of an alert with these labels (None: no clusters.yaml, or an
        unknown cluster)."""
        catalog = self.clusters.catalog
        if catalog.implicit:
            return None
        try:
            return catalog.select(labels)
        except UnknownClusterError:
            return None

    @property
    def graphs_on(self) -> bool:
        return self.prometheus.configured

    def _trusted_url(self, alert: Alert) -> str:
        """The alert's generatorURL when it names a configured Prometheus, else ""."""
        return alert.generator_url if self.guard.source_problem(alert.generator_url) is None else ""

    def _untrusted_expression(self, playbook: Playbook, alert: Alert) -> tuple[str, str] | None:
        """(the alert's expression, why it is not used) when the playbook would graph it but the
        generatorURL names no configured Prometheus; the channel is told instead."""
        if not _wants_own_expression(playbook):
            return None
        problem = self.guard.source_problem(alert.generator_url)
        own = alert_expression_graph(alert.generator_url) if problem is not None else None
        return (own.query, problem) if own is not None and problem is not None else None

    def playbooks_for(self, view: IncidentView) -> list[tuple[Playbook, Alert]]:
        """One playbook per alert name and cluster (the first such alert gives the labels)."""
        chosen: dict[str, tuple[Playbook, Alert]] = {}
        seen_names: set[tuple[str, str | None]] = set()
        for alert in view.alerts:
            seen = (alert.name, self.clusters.catalog.named_by(alert.labels))
            if seen in seen_names:
                continue
            seen_names.add(seen)
            playbook = self.playbooks.resolve(alert.labels, alert.annotations, self._trusted_url(alert))
            chosen.setdefault(self._key(playbook, alert), (playbook, alert))
        return list(chosen.values())

    async def after_publish(self, view: IncidentView) -> bool:
        """Publish hook: post the playbooks of alert names not covered yet. Never asks for
        another publish (what it posts goes straight into the channel)."""
        if not view.incident.channel_id or not view.alerts:
            return False
        await self.gate.turn()
        posted = await self.store.posted(view.incident.id)
        for playbook, alert in self.playbooks_for(view):
            key = self._key(playbook, alert)
            if key not in posted:
                await self._claim_and_post(view, playbook, alert, key)
        return False

    async def resume(self) -> None:
        """Sweep: playbook posts whose holder died are taken up again (by the next publish)."""
        for incident_id in await self.store.release_stale(self.lease_s):
            log.info("enrich.resumed", extra={"incident_id": incident_id})

    async def _claim_and_post(self, view: IncidentView, playbook: Playbook, alert: Alert, key: str) -> None:
        incident_id = view.incident.id
        claim = await self.store.claim(incident_id, key, alert.name, self.owner, self.lease_s)
        if claim is None:
            return

        async def renew() -> bool:
            return await self.store.renew(incident_id, key, self.owner, claim)

        async with heartbeat(renew, self.lease_s, f"playbook-{incident_id}"):
            await self._post_playbook(view, playbook, alert, f"playbook:{incident_id}:{key}")
        if not await self.store.mark_posted(incident_id, key, self.owner, claim, self.clock()):
            log.warning("enrich.claim_lost", extra={"incident_id": incident_id, "playbook": key})

    async def _post_playbook(self, view: IncidentView, playbook: Playbook, alert: Alert, key: str) -> None:
        """Post one playbook; every message is the bot's own under `key`:<part>, so resuming a
        post whose holder died repeats none of what it had posted."""
        incident = view.incident
        channel = incident.channel_id
        assert channel is not None
        labels = alert.labels
        # Steps first (the checks are evaluated concurrently, bounded), graphs after.
        checks = await self.evaluate_checks(playbook, labels)
        for n, msg in enumerate(
            runbook_messages(playbook, labels, check_results=checks, incident_id=incident.id)
        ):
            await self.owned.post(channel, msg, f"{key}:{n}")
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
            key=key,
        )
        # What the responder acts on comes right after the runbook: the proposals and their
        # buttons; the evidence (graphs, then diagnostics) follows them.
        if playbook.remediations:
            await self.proposer.propose_for_alert(incident.id, labels, playbook, note_key=f"{key}:notes")
        await self.post_graphs(view, playbook, alert, key=key)
        await self.post_diagnostics(channel, playbook, labels, key=key)

    async def _say(
        self, channel: str, msg: kit.Message, key: str | None, *, thread_ts: str | None = None
    ) -> str:
        """Post a message: the bot's own under `key` (exactly once), or plainly without one."""
        if key is None:
            return await self.chat.post(channel, msg, thread_ts=thread_ts)
        return await self.owned.post(channel, msg, key, thread_ts=thread_ts)

    async def _say_text(self, channel: str, text: str, key: str | None) -> None:
        await self._say(channel, kit.message(text, [kit.section(text)]), key)

    async def post_runbook(
        self, channel: str, incident_id: int, playbook: Playbook, labels: dict[str, str]
    ) -> None:
        """Every step of a playbook, expanded, with its checks evaluated for these labels."""
        checks = await self.evaluate_checks(playbook, labels) if labels else {}
        for msg in runbook_messages(
            playbook, labels, check_results=checks, expanded=True, incident_id=incident_id
        ):
            await self.chat.post(channel, msg)

    async def post_diagnostics(
        self, channel: str, playbook: Playbook, labels: dict[str, str], *, key: str | None = None
    ) -> None:
        """The playbook's read-only Kubernetes views (pods, events, history, logs), read from
        the cluster the alert names; one that is not configured is read from nowhere. Each
        shows a screenful in the channel and its whole output in the message's thread."""
        if not playbook.diagnostics:
            return
        try:
            cluster = self.clusters.client(self.clusters.select(labels))
        except UserError as err:
            msg = diagnostics_message("diagnostics not run", [str(err)])
            await self._say(channel, msg, f"{key}:diag:refused" if key else None)
            return
        if cluster is None:
            return
        for n, diag in enumerate(playbook.diagnostics):
            output = await run_diagnostic(cluster, diag, labels)
            if output is None:
                continue  # nothing to say
            brief, full = diagnostic_messages(output)
            part = f"{key}:diag:{n}" if key else None
            ts = await self._say(channel, brief, part)
            if full is not None:
                await self._say(channel, full, f"{part}:all" if part else None, thread_ts=ts)

    async def evaluate_checks(self, playbook: Playbook, labels: dict[str, str]) -> dict[int, CheckOutcome]:
        source = self.prometheus.for_labels(labels)
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

    async def post_graphs(
        self, view: IncidentView, playbook: Playbook, alert: Alert, *, key: str | None = None
    ) -> None:
        channel = view.incident.channel_id
        assert channel is not None
        graphs = graphs_of(playbook, alert, self._trusted_url(alert))
        untrusted = self._untrusted_expression(playbook, alert)
        if not graphs and untrusted is None:
            return
        source = self.prometheus.for_labels(alert.labels)
        if source is None:
            note = no_prometheus_note(self._listed_cluster(alert.labels))
            await self._say(channel, note, f"{key}:graphs" if key else None)
            return
        if untrusted is not None:
            query, problem = untrusted
            caption = graph_caption(f"{alert.name} expression", query, error=f"{REFUSED}: {problem}")
            await self._say_text(channel, caption, f"{key}:untrusted" if key else None)
        now = self.clock()
        # The incident's opening time is no alert's start: nothing is marked without an alert.
        start_of_alerts = min((a.starts_at for a in view.alerts), default=None)
        for n, (graph, from_alert) in enumerate(graphs):
            await self.draw(
                source,
                channel,
                graph,
                alert.labels,
                alert_start=start_of_alerts,
                now=now,
                checked=from_alert,
                key=f"{key}:graph:{n}" if key else None,
            )

    def window_start(
        self, now: datetime, back: timedelta, alert_start: datetime | None, *, trusted: bool
    ) -> datetime:
        """Where a graph's window starts: `back` before now, or an hour before the alert started
        if that is earlier, but never before now - max lookback. A trusted playbook graph keeps
        its own declared range even when that is longer."""
        wanted = min(now - back, (alert_start or now) - DEFAULT_LOOKBACK)
        floor = min(self.guard.earliest(now), now - back) if trusted else self.guard.earliest(now)
        return max(wanted, floor)

    async def draw(
        self,
        source: PrometheusMetrics,
        channel: str,
        graph: Graph,
        labels: dict[str, str],
        *,
        alert_start: datetime | None,
        now: datetime,
        start: datetime | None = None,
        templated: bool = True,
        checked: bool = False,
        key: str | None = None,
    ) -> None:
        """Query, render and upload one graph; failures become a short note in the channel.
        `checked`: the query is untrusted and passes the cost checks before it is sent.
        `key`: the graph (or its note) is the bot's own, posted once. `start`: the window's start
        when it is given (an ad hoc range), else the graph's range widened to the alert's."""
        if start is None:
            back = timedelta(seconds=graph.range_seconds)
            start = self.window_start(now, back, alert_start, trusted=not checked)
        step = choose_step(start, now)
        window = GraphWindow(start, now, alert_start)
        title = graph.title
        try:
            query = graph.render_query(labels) if templated else graph.query
            if checked:
                self.guard.check(query, step_seconds=step)
        except TemplateError as exc:
            await self._say_text(
                channel, graph_caption(title, graph.query, window=window, error=str(exc)), key
            )
            return
        except QueryRefused as exc:
            error = f"{REFUSED}: {exc.plain}"
            await self._say_text(channel, graph_caption(title, graph.query, window=window, error=error), key)
            return
        if key is not None and (await self.owned.ledger.begin(key, channel, now)).ts is not None:
            return  # uploaded before by a holder that died after
        try:
            series = await source.query_range(query, start, now, step)
        except IntegrationError as exc:
            await self._say_text(channel, graph_caption(title, query, window=window, error=exc.message), key)
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
            comment=graph_caption(title, query, window=window),
        )
        if key is not None:
            # A file cannot carry a key to be found by: its upload is recorded instead, so a
            # resumed post skips it (only an upload cut off by its holder's death may repeat).
            await self.owned.ledger.posted(key, UPLOADED)
        log.info("graph.posted", extra={"channel": channel, "query": query})

    # ------------------------------------------------------------------ ad hoc graphs

    def ad_hoc_start(self, now: datetime, lookback: timedelta) -> datetime:
        """An ad hoc graph shows the range asked for (never widened to the alert's start),
        within the maximum lookback."""
        return max(now - lookback, self.guard.earliest(now))

    def check_ad_hoc(self, query: str, lookback: timedelta, now: datetime) -> None:
        """Refuse (QueryRefused, every reason) an ad hoc graph that must not reach Prometheus."""
        reasons: list[str] = []
        try:
            self.guard.check_range(lookback)
        except QueryRefused as exc:
            reasons += exc.reasons
        start = self.ad_hoc_start(now, lookback)
        try:
            self.guard.check(query, step_seconds=choose_step(start, now))
        except QueryRefused as exc:
            reasons += exc.reasons
        if reasons:
            raise QueryRefused(reasons)

    async def admit_ad_hoc(self, user_id: str) -> GraphSlot:
        return await self.limiter.admit(user_id)

    async def release_ad_hoc(self, slot: GraphSlot) -> None:
        await self.limiter.release(slot)

    async def draw_ad_hoc(
        self,
        slot: GraphSlot,
        channel: str,
        query: str,
        *,
        lookback: timedelta,
        alert_start: datetime | None,
        now: datetime,
        labels: dict[str, str] | None = None,
        cluster: str | None = None,
    ) -> None:
        """Draw an admitted ad hoc graph (as typed: no labels are substituted) over the range
        asked for, then free its slot. `alert_start` (the incident's first alert, if any) is
        marked; the Prometheus asked is `cluster`'s, else that of the cluster `labels` (that
        alert's) name."""
        graph = Graph.model_construct(
            title=kit.clip(query, 140), query=query, unit="", threshold=None, range="1h"
        )
        try:
            if cluster is not None:
                source = self.prometheus.for_cluster(cluster)
            else:
                source = self.prometheus.for_labels(labels)
            if source is None:
                await self._say(channel, no_prometheus_note(cluster or self._listed_cluster(labels)), None)
                return
            await self.draw(
                source,
                channel,
                graph,
                {},
                alert_start=alert_start,
                now=now,
                start=self.ad_hoc_start(now, lookback),
                templated=False,
                checked=True,
            )
        finally:
            await self.limiter.release(slot)
