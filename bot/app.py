"""The composition root: builds everything once at start-up and runs it.

The only module that constructs SDK clients and pools and hands the stores, clients and
flows to each other. Everything opened is registered on one AsyncExitStack as soon as it
exists, so a failure at any step of start-up (bad KUBECONFIG, unreachable Redis, invalid
playbooks) closes what was opened so far, in reverse order, and says what is wrong in one line
(a ConfigError).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiohttp
import asyncpg
from aiohttp import web
from redis.exceptions import RedisError
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.clients.alertmanager import AlertmanagerSilences
from bot.clients.docker import DockerHost
from bot.clients.kubernetes.clusters import Clusters
from bot.clients.kubernetes.clusters import connect as connect_clusters
from bot.clients.llm import Capability, ChatClient
from bot.clients.pagerduty import PagerDutyClient
from bot.clients.prometheus import PrometheusSources
from bot.clients.slack import SlackChat, build_client
from bot.clients.ssh import SshHost
from bot.config.catalog import load_catalog
from bot.config.clusters import load_clusters
from bot.config.correlation import load_correlation
from bot.config.playbooks import PlaybookError, load_playbooks
from bot.config.settings import Settings
from bot.core.catalog import Catalog
from bot.core.clusters import ClusterCatalog
from bot.core.correlation import CorrelationRules
from bot.core.errors import ConfigError
from bot.core.incident import IncidentView
from bot.core.investigation import Redactor
from bot.core.playbooks import PlaybookSet
from bot.core.policy import Policy
from bot.core.ports import Clock, HostTransport
from bot.core.promql import Limits, QueryGuard, TrustedHosts, TrustedSources, playbook_warnings
from bot.flows.authorize import Authorizer, ChannelMembers
from bot.flows.correlation.corrections import Corrections
from bot.flows.correlation.intake import Correlator
from bot.flows.correlation.topology import Topology
from bot.flows.enrich import Enricher, GraphLimiter, GraphLimits
from bot.flows.failures import dependency_of
from bot.flows.gate import IntakeGate
from bot.flows.incidents import IncidentFlows
from bot.flows.intake import Pipeline
from bot.flows.investigate.loop import Budgets
from bot.flows.investigate.service import AutoRule, Investigator, Pricing, Status
from bot.flows.investigate.tools import LiveTools
from bot.flows.owned_messages import OwnedMessages
from bot.flows.pagerduty.inbound import PagerDutyInbound
from bot.flows.pagerduty.oncall import OnCallInviter
from bot.flows.pagerduty.outbound import PagerDutyMirror
from bot.flows.pins import Pins
from bot.flows.postmortems import Postmortems
from bot.flows.publish import Publisher
from bot.flows.remediation.authz import UsergroupResolver
from bot.flows.remediation.common import Access
from bot.flows.remediation.decide import Decisions
from bot.flows.remediation.execute import Executor
from bot.flows.remediation.hosts import HostActions
from bot.flows.remediation.kill_switch import KillSwitch
from bot.flows.remediation.messages import ProposalMessages
from bot.flows.remediation.propose import Proposer
from bot.flows.remediation.verify import Verifier
from bot.flows.responders import Responders
from bot.flows.silences import SilenceFlow
from bot.flows.storms import Storms
from bot.flows.supervisor import Supervisor
from bot.flows.teams import TeamChannels
from bot.flows.timers import Escalation, Timers
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.obs.outages import Outages
from bot.store import coordination
from bot.store.correlation import CorrelationStore
from bot.store.db import apply_migrations, create_pool, durability
from bot.store.enrichment import EnrichmentStore
from bot.store.inbox import INTAKE_BATCHES_IN_FLIGHT, Inbox
from bot.store.incidents import PostgresStore
from bot.store.investigations import InvestigationStore
from bot.store.kill_switch import KillSwitchStore
from bot.store.lifecycle import LifecycleStore
from bot.store.messages import MessageLedger
from bot.store.remediation import RemediationStore
from bot.store.storms import StormStore
from bot.web.bodies import BodyReader
from bot.web.handlers import Handlers
from bot.web.routes import build_runner, build_web_app
from bot.web.slack import SlackEdge
from commands.base import Flows
from commands.register import register

log = logs.logger(logs.Component.APP)

CONNECT_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 20.0
# Connections of the intake pool: one per group-commit batch in flight (bot.store.inbox).
INTAKE_CONNECTIONS = INTAKE_BATCHES_IN_FLIGHT
POSTGRES_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- outside systems


async def migrate(settings: Settings) -> list[str]:
    try:
        return await asyncio.wait_for(
            apply_migrations(settings.database_url.get_secret_value()), CONNECT_TIMEOUT_S * 3
        )
    except POSTGRES_ERRORS as exc:
        raise ConfigError(f"PostgreSQL unreachable at DATABASE_URL: {type(exc).__name__}: {exc}") from None


async def _postgres(dsn: str, stack: AsyncExitStack) -> tuple[asyncpg.Pool, asyncpg.Pool]:
    """The main pool, and a small one of its own for storing webhook deliveries: acknowledging
    a webhook never waits for a connection behind background work."""
    try:
        await asyncio.wait_for(apply_migrations(dsn), CONNECT_TIMEOUT_S * 3)
        await asyncio.wait_for(durability(dsn), CONNECT_TIMEOUT_S)
        pool = await asyncio.wait_for(create_pool(dsn), CONNECT_TIMEOUT_S)
        stack.push_async_callback(pool.close)
        intake = await asyncio.wait_for(
            create_pool(dsn, min_size=INTAKE_CONNECTIONS, max_size=INTAKE_CONNECTIONS), CONNECT_TIMEOUT_S
        )
        stack.push_async_callback(intake.close)
    except POSTGRES_ERRORS as exc:
        raise ConfigError(f"PostgreSQL unreachable at DATABASE_URL: {type(exc).__name__}: {exc}") from None
    return pool, intake


async def _redis(url: str, replica: str | None, stack: AsyncExitStack) -> coordination.Coordination:
    coord = coordination.Coordination(coordination.connect(url), replica)
    stack.push_async_callback(coord.aclose)
    try:
        await asyncio.wait_for(coord.ping(), CONNECT_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        raise ConfigError(f"Redis unreachable at REDIS_URL: {type(exc).__name__}: {exc}") from None
    return coord


def load_playbook_set(settings: Settings) -> tuple[PlaybookSet, Catalog]:
    """Load and validate playbooks, policy and the service catalog; every problem is listed,
    start-up stops."""
    try:
        playbooks = load_playbooks(settings.playbooks_dir)
        catalog = load_catalog(settings.playbooks_dir, playbooks.policy)
        # One policy: the catalog's say over who approves in each team's namespaces joins it.
        policy = playbooks.policy.with_namespace_approvers(catalog.namespace_approvers())
        return PlaybookSet(playbooks.playbooks, policy), catalog
    except PlaybookError as exc:
        lines = "\n".join(str(p) for p in exc.problems)
        raise ConfigError(f"invalid playbooks in {settings.playbooks_dir}:\n{lines}") from None


def load_correlation_rules(settings: Settings) -> CorrelationRules:
    """correlation.yaml beside the playbooks (none: the default rules)."""
    try:
        return load_correlation(settings.playbooks_dir)
    except PlaybookError as exc:
        lines = "\n".join(str(p) for p in exc.problems)
        raise ConfigError(f"invalid correlation rules in {settings.playbooks_dir}:\n{lines}") from None


def build_pager(settings: Settings) -> PagerDutyClient | None:
    if settings.pagerduty_api_token is None:
        return None
    assert settings.pagerduty_from_email is not None  # checked by Settings
    return PagerDutyClient(
        settings.pagerduty_api_token.get_secret_value(),
        settings.pagerduty_from_email,
        base_url=settings.pagerduty_api_url,
        events_base_url=settings.pagerduty_events_url,
        verify=settings.pagerduty_ca_bundle or True,
    )


def load_cluster_catalog(settings: Settings, policy: Policy) -> ClusterCatalog:
    """clusters.yaml beside the playbooks (none: the single cluster of KUBECONFIG or the pod)."""
    try:
        return load_clusters(Path(settings.playbooks_dir), policy)
    except PlaybookError as exc:
        lines = "\n".join(str(p) for p in exc.problems)
        raise ConfigError(f"invalid clusters in {settings.playbooks_dir}:\n{lines}") from None


# --------------------------------------------------------------------------- assembly


@dataclass(frozen=True, slots=True)
class Components:
    """What the composition root built, by name: for the server's lifecycle, and for tests and
    benchmarks that drive a running bot. Never handed to a flow or a handler."""

    settings: Settings
    store: PostgresStore
    inbox: Inbox
    lifecycle: LifecycleStore
    remediation_store: RemediationStore
    coord: coordination.Coordination
    chat: SlackChat
    metrics: Metrics
    supervisor: Supervisor
    gate: IntakeGate
    pipeline: Pipeline
    publisher: Publisher
    timers: Timers
    flows: Flows
    executor: Executor
    playbooks: PlaybookSet
    clusters: Clusters
    prometheus: PrometheusSources
    pager: PagerDutyClient | None
    owner: str
    outages: Outages


@dataclass(frozen=True, slots=True)
class _Clients:
    coord: coordination.Coordination
    pool: asyncpg.Pool
    intake_pool: asyncpg.Pool
    chat: SlackChat
    slack_client: AsyncWebClient
    pager: PagerDutyClient | None
    clusters: Clusters
    prometheus: PrometheusSources
    silences: AlertmanagerSilences | None


async def _open_clients(
    settings: Settings, metrics: Metrics, gate: IntakeGate, catalog: ClusterCatalog, stack: AsyncExitStack
) -> _Clients:
    # Both stores are checked before anything is changed or logged, so a bad start-up says
    # exactly one thing.
    coord = await _redis(settings.redis_url.get_secret_value(), settings.replica_name, stack)
    pool, intake_pool = await _postgres(settings.database_url.get_secret_value(), stack)
    pager = build_pager(settings)
    if pager is not None:
        stack.push_async_callback(pager.aclose)
    http_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    stack.push_async_callback(http_session.close)
    slack_client = build_client(
        settings.slack_bot_token.get_secret_value(),
        settings.slack_api_url,
        metrics,
        session=http_session,
        timeout_s=settings.slack_timeout_seconds,
    )
    chat = SlackChat(
        slack_client, coord, metrics, rate_scale=settings.slack_rate_scale, pace=gate.background_turn
    )
    clusters = await connect_clusters(
        catalog, kubeconfig=settings.kubeconfig, in_cluster=settings.in_cluster, stack=stack
    )
    prometheus = PrometheusSources.connect(
        catalog, settings.prometheus_url, timeout=settings.prometheus_timeout_seconds
    )
    stack.push_async_callback(asyncio.to_thread, prometheus.close)
    silences = (
        AlertmanagerSilences(settings.alertmanager_url, http_session) if settings.alertmanager_url else None
    )
    return _Clients(coord, pool, intake_pool, chat, slack_client, pager, clusters, prometheus, silences)


def query_guard(
    settings: Settings, playbooks: PlaybookSet, prometheus: PrometheusSources
) -> tuple[QueryGuard, TrustedSources]:
    """What may reach Prometheus and which alert links are shown (bot.core.promql): any
    configured Prometheus (PROMETHEUS_URL and the clusters' own). Costly playbook queries are
    trusted, but named in the log once."""
    prometheus_hosts = TrustedHosts.parse(*prometheus.urls, settings.prometheus_hosts)
    sources = TrustedSources(
        prometheus_hosts, TrustedHosts.parse(settings.alertmanager_url, settings.alertmanager_hosts)
    )
    guard = QueryGuard(Limits(max_lookback_seconds=settings.promql_max_lookback_seconds), prometheus_hosts)
    for warning in playbook_warnings(playbooks, guard.limits):
        log.warning("promql.costly_playbook_query", extra={"problem": warning})
    return guard, sources


def graph_limits(settings: Settings) -> GraphLimits:
    return GraphLimits(
        per_user_per_minute=settings.graph_rate_per_minute,
        per_user_burst=settings.graph_burst,
        max_in_flight=settings.graph_max_in_flight,
        # A replica that dies while drawing frees its slot after the query's timeout and an upload.
        slot_seconds=settings.prometheus_timeout_seconds + 120,
    )


def host_actions(catalog: ClusterCatalog, policy: Policy) -> HostActions:
    """The hosts of clusters.yaml with their transports: SSH, or the Docker Engine API. Each
    opens its connection per command, so nothing here needs closing."""
    transports: dict[str, HostTransport] = {}
    for name, spec in catalog.hosts.items():
        if spec.ssh is not None:
            transports[name] = SshHost(name, spec.ssh)
        if spec.docker is not None:
            transports[name] = DockerHost(name, spec.docker)
    return HostActions(catalog.hosts, transports, policy)


def _owner(settings: Settings, store: PostgresStore) -> str:
    return settings.replica_name or f"{socket.gethostname()}-{os.getpid()}-{id(store):x}"


async def _model_status(settings: Settings, stack: AsyncExitStack) -> tuple[ChatClient | None, Status]:
    """The investigator's endpoint client; its capability is probed in the background once the
    bot runs (`Investigator.watch_endpoint`), so a slow or absent model never delays start-up."""
    if not settings.llm_base_url:
        return None, Status(Capability.OFF, "LLM_BASE_URL is not set")
    session = aiohttp.ClientSession()
    stack.push_async_callback(session.close)
    client = ChatClient(
        settings.llm_base_url,
        settings.llm_model,
        settings.llm_key(),
        session,
        timeout_s=settings.llm_request_timeout_seconds,
    )
    return client, Status(Capability.PROBING, "not probed yet", disabled=settings.llm_disabled)


def _secrets_of(settings: Settings) -> list[str]:
    """Our own credentials: never sent to the model, whatever a log or a label repeats."""
    values = [
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.alertmanager_webhook_token,
        settings.pagerduty_api_token,
        settings.pagerduty_webhook_secret,
        settings.pagerduty_routing_key,
        settings.database_url,
        settings.redis_url,
        settings.llm_api_key,
    ]
    return [v.get_secret_value() for v in values if v is not None]


def llm_budgets(settings: Settings) -> Budgets:
    return Budgets(
        tokens=settings.llm_token_budget,
        seconds=settings.llm_time_budget_seconds,
        tool_calls=settings.llm_max_tool_calls,
        output_chars=settings.llm_tool_output_chars,
        request_timeout_s=settings.llm_request_timeout_seconds,
    )


def auto_rule(settings: Settings) -> AutoRule:
    try:
        return AutoRule.parse(settings.llm_auto_investigate)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


async def _investigator(
    settings: Settings,
    c: _Clients,
    store: PostgresStore,
    proposer: Proposer,
    access: Access,
    supervisor: Supervisor,
    metrics: Metrics,
    guard: QueryGuard,
    playbooks: PlaybookSet,
    enricher: Enricher,
    clock: Clock,
    stack: AsyncExitStack,
) -> Investigator:
    """The optional investigator (its status says off, summaries only or on)."""
    llm, llm_status = await _model_status(settings, stack)
    policy = playbooks.policy
    history = InvestigationStore(c.pool)

    def live_tools(view: IncidentView) -> LiveTools:
        return LiveTools(
            view,
            prometheus=c.prometheus,
            guard=guard,
            clusters=c.clusters,
            policy=policy,
            playbooks=playbooks,
            store=store,
            history=history,
            clock=clock,
        )

    return Investigator(
        llm,
        llm_status,
        live_tools,
        store,
        history,
        c.chat,
        proposer,
        access,
        policy,
        supervisor,
        metrics,
        clock,
        budgets=llm_budgets(settings),
        redactor=Redactor.with_secrets(_secrets_of(settings), emails=settings.llm_redact_emails),
        max_concurrent=settings.llm_max_concurrent,
        coord=c.coord,
        pricing=Pricing(settings.llm_cost_per_million_tokens),
        auto=auto_rule(settings),
        enricher=enricher,
    )


async def assemble(settings: Settings, clock: Clock, stack: AsyncExitStack) -> BotServer:
    """Build every part; resources opened are closed by `stack` (in reverse order)."""
    playbooks, catalog = load_playbook_set(settings)
    policy = playbooks.policy
    metrics = Metrics()
    outages = Outages(metrics)
    supervisor = Supervisor()
    gate = IntakeGate()
    cluster_catalog = load_cluster_catalog(settings, policy)
    c = await _open_clients(settings, metrics, gate, cluster_catalog, stack)
    store, inbox = PostgresStore(c.pool), Inbox(c.pool, intake_pool=c.intake_pool)
    lifecycle, remediation_store = LifecycleStore(c.pool), RemediationStore(c.pool)
    owner = _owner(settings, store)
    guard, sources = query_guard(settings, playbooks, c.prometheus)

    # Remediation: messages ← proposer ← verifier ← executor ← decisions.
    owned = OwnedMessages(MessageLedger(c.pool), c.chat, clock)
    switch = KillSwitchStore(c.pool)
    hosts = host_actions(cluster_catalog, policy)
    messages = ProposalMessages(
        remediation_store, switch, c.chat, owned, c.coord, supervisor, policy, c.clusters, clock, hosts
    )
    usergroups = UsergroupResolver(c.chat, c.coord)
    access = Access(policy, usergroups)
    proposer = Proposer(
        remediation_store,
        store,
        c.clusters,
        c.chat,
        messages,
        access,
        policy,
        clock,
        hosts,
    )
    verifier = Verifier(
        remediation_store,
        store,
        c.clusters,
        c.prometheus,
        playbooks,
        proposer,
        messages,
        clock,
        verify_seconds=settings.remediation_verify_seconds,
        guard=guard,
    )
    executor = Executor(
        remediation_store,
        store,
        switch,
        c.clusters,
        verifier,
        messages,
        access,
        supervisor,
        metrics,
        policy,
        clock,
        owner=owner,
        hosts=hosts,
    )
    kill_switch = KillSwitch(
        switch,
        remediation_store,
        access,
        c.chat,
        messages,
        policy,
        clock,
        incident_channel=settings.incident_channel,
    )
    decisions = Decisions(
        remediation_store,
        store,
        executor,
        messages,
        access,
        kill_switch,
        supervisor,
        metrics,
        policy,
        clock,
    )

    # Publishing, and what runs after each publish.
    enricher = Enricher(
        EnrichmentStore(c.pool),
        lifecycle,
        c.chat,
        c.prometheus,
        c.clusters,
        playbooks,
        proposer,
        gate,
        clock,
        owner=owner,
        guard=guard,
        limiter=GraphLimiter(c.coord, graph_limits(settings)),
        owned=owned,
        lease_seconds=settings.claim_lease_seconds,
    )
    people = Responders(c.pager, c.chat, lifecycle, usergroups, catalog, c.coord, clock)
    oncall = OnCallInviter(people, lifecycle, clock)
    teams = TeamChannels(catalog, c.chat, incident_channel=settings.incident_channel)
    investigator = await _investigator(
        settings, c, store, proposer, access, supervisor, metrics, guard, playbooks, enricher, clock, stack
    )

    def publish_later(incident_id: int) -> None:
        # The publisher is built next and takes the storms: a late-bound call breaks the cycle.
        publisher.request(incident_id)

    storms = Storms(
        StormStore(c.pool),
        store,
        c.chat,
        owned,
        c.coord,
        teams,
        supervisor,
        metrics,
        clock,
        publish_later,
    )
    publisher = Publisher(
        store,
        c.chat,
        owned,
        c.coord,
        metrics,
        supervisor,
        clock,
        teams=teams,
        owner=owner,
        gate=gate,
        outages=outages,
        after_publish=(enricher.after_publish, people.after_publish, investigator.after_publish),
        grafana_url=settings.grafana_url,
        link_sources=sources,
        storms=storms,
    )
    publish = publisher.request

    # Incidents and what changes them.
    timers = Timers(
        store,
        lifecycle,
        c.chat,
        c.pager,
        metrics,
        policy,
        clock,
        publish,
        owner=owner,
        archive_after_seconds=settings.archive_after_seconds,
        pagerduty_routing_key=settings.pagerduty_routing_key,
        lease_seconds=settings.claim_lease_seconds,
        catalog=catalog,
        escalation=Escalation(people, teams, owned),
    )
    authorize = Authorizer(policy, access, ChannelMembers(c.chat))
    silences = SilenceFlow(store, lifecycle, c.silences, c.chat, authorize, policy, clock, publish)
    mirror = PagerDutyMirror(c.pager, lifecycle, c.coord, policy, clock, publish)
    incidents = IncidentFlows(
        store,
        lifecycle,
        c.chat,
        timers,
        silences,
        mirror,
        supervisor,
        metrics,
        clock,
        publish,
        decisions.expire_for_incident,
        teams=teams,
    )
    inbound = PagerDutyInbound(
        store, lifecycle, incidents, timers, oncall, c.coord, metrics, policy, clock, publish, catalog=catalog
    )
    correlation_rules = load_correlation_rules(settings)
    correlator = Correlator(correlation_rules, catalog, Topology(c.clusters, correlation_rules.topology))
    pipeline = Pipeline(
        inbox,
        playbooks,
        metrics,
        clock,
        publish,
        pagerduty=inbound.apply,
        gate=gate,
        outages=outages,
        catalog=catalog,
        correlator=correlator,
    )
    corrections = Corrections(store, CorrelationStore(c.pool), incidents, playbooks, catalog, clock, publish)

    flows = Flows(
        incidents=incidents,
        silences=silences,
        postmortems=Postmortems(
            store, remediation_store, lifecycle, c.chat, clock, narrator=investigator.narrative
        ),
        enrich=enricher,
        proposer=proposer,
        decisions=decisions,
        pins=Pins(store, lifecycle, c.chat, c.coord, clock),
        playbooks=playbooks,
        supervisor=supervisor,
        clock=clock,
        authorize=authorize,
        correlation=corrections,
        storms=storms,
        investigator=investigator,
    )
    bolt = AsyncApp(
        client=c.slack_client,
        signing_secret=(
            settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
        ),
        request_verification_enabled=not settings.socket_mode,
        process_before_response=False,
    )
    register(bolt, flows)
    web_app = build_web_app(
        _handlers(settings, inbox, pipeline, gate, metrics, store, c.coord, clock, investigator),
        _slack_edge(settings, bolt, c.coord, metrics),
        client_max_size=max(
            settings.max_body_bytes, settings.pagerduty_max_body_bytes, settings.slack_max_body_bytes
        ),
    )
    components = Components(
        settings=settings,
        store=store,
        inbox=inbox,
        lifecycle=lifecycle,
        remediation_store=remediation_store,
        coord=c.coord,
        chat=c.chat,
        metrics=metrics,
        supervisor=supervisor,
        gate=gate,
        pipeline=pipeline,
        publisher=publisher,
        timers=timers,
        flows=flows,
        executor=executor,
        playbooks=playbooks,
        clusters=c.clusters,
        prometheus=c.prometheus,
        pager=c.pager,
        owner=owner,
        outages=outages,
    )
    return BotServer(components, bolt, web_app, stack)


def _handlers(
    settings: Settings,
    inbox: Inbox,
    pipeline: Pipeline,
    gate: IntakeGate,
    metrics: Metrics,
    store: PostgresStore,
    coord: coordination.Coordination,
    clock: Clock,
    investigator: Investigator,
) -> Handlers:
    timeout = settings.http_body_timeout_seconds
    return Handlers(
        inbox,
        pipeline.wake,
        gate,
        metrics,
        {"postgres": store.ping, "redis": coord.ping},
        clock,
        alertmanager_token=settings.alertmanager_webhook_token,
        pagerduty_secret=settings.pagerduty_webhook_secret,
        # Alertmanager authenticates with a header, before its body is read: no bound needed.
        alertmanager_body=BodyReader(settings.max_body_bytes, timeout),
        pagerduty_body=BodyReader(
            settings.pagerduty_max_body_bytes, timeout, settings.http_max_unauthenticated_reads
        ),
        wall_clock=time.time,
        # Nothing changes while no model is configured.
        details={} if investigator.status.capability is Capability.OFF else _LiveDetail(investigator),
    )


class _LiveDetail(Mapping[str, str]):
    """/readyz's `detail`: the investigator's status as it is now (probed in the background)."""

    def __init__(self, investigator: Investigator) -> None:
        self._investigator = investigator

    def __getitem__(self, key: str) -> str:
        if key != "investigator":
            raise KeyError(key)
        return self._investigator.status.describe()

    def __iter__(self) -> Iterator[str]:
        return iter(("investigator",))

    def __len__(self) -> int:
        return 1


def _slack_edge(
    settings: Settings, bolt: AsyncApp, coord: coordination.Coordination, metrics: Metrics
) -> SlackEdge | None:
    if settings.socket_mode or settings.slack_signing_secret is None:
        return None
    body = BodyReader(
        settings.slack_max_body_bytes,
        settings.http_body_timeout_seconds,
        settings.http_max_unauthenticated_reads,
    )
    return SlackEdge(bolt, settings.slack_signing_secret.get_secret_value(), coord, metrics, body, time.time)


async def build(settings: Settings, *, clock: Clock = utc_now) -> BotServer:
    """Everything, ready to `start()`; on failure everything opened so far is closed."""
    stack = AsyncExitStack()
    try:
        return await assemble(settings, clock, stack)
    except BaseException:
        await stack.aclose()
        raise


# --------------------------------------------------------------------------- lifecycle


class BotServer:
    """One running bot: HTTP server, intake workers, the sweep, optional Socket Mode."""

    def __init__(
        self, parts: Components, bolt: AsyncApp, web_app: web.Application, stack: AsyncExitStack
    ) -> None:
        self.parts = parts
        self.bolt = bolt
        self.web_app = web_app
        self._stack = stack
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._socket: AsyncSocketModeHandler | None = None
        self.port: int = 0

    async def start(self) -> None:
        settings = self.parts.settings
        self._runner = build_runner(
            self.web_app, header_timeout_s=settings.http_header_timeout_seconds, shutdown_timeout_s=5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.http_host, settings.http_port)
        await site.start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else settings.http_port
        for i in range(settings.worker_count):
            worker = self.parts.pipeline.worker(self._stop, settings.sweep_interval_seconds)
            self._loops.append(asyncio.create_task(worker, name=f"worker-{i}"))
        self._loops.append(asyncio.create_task(self._sweep(), name="sweep"))
        if (investigator := self.parts.flows.investigator) is not None:
            watch = investigator.watch_endpoint(
                self._stop,
                interval_s=settings.llm_probe_interval_seconds,
                timeout_s=min(settings.llm_request_timeout_seconds, 20.0),
            )
            self._loops.append(asyncio.create_task(watch, name="investigator-probe"))
        if settings.slack_app_token is not None:
            self._socket = AsyncSocketModeHandler(
                self.bolt, app_token=settings.slack_app_token.get_secret_value()
            )
            await cast(Any, self._socket).connect_async()
        log.info("bot.started", extra={"port": self.port, "socket_mode": self._socket is not None})

    async def _sweep(self) -> None:
        """Finish what a crash or an outage interrupted: stored deliveries, unpublished
        incidents, due timers and remediation runs, checked at start and every few seconds."""
        parts = self.parts
        while not self._stop.is_set():
            try:
                parts.pipeline.wake()
                for incident_id in await parts.store.unpublished_incidents():
                    parts.publisher.request(incident_id)
                await parts.timers.run_due()
                await parts.flows.storms.sweep()
                await parts.flows.enrich.resume()
                await parts.executor.sweep()
            except Exception as exc:
                dependency = dependency_of(exc)
                if dependency is None:
                    log.exception("sweep.error")
                else:
                    parts.outages.down(dependency, f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=parts.settings.sweep_interval_seconds)

    async def stop(self) -> None:
        """Graceful: stop taking requests, let workers finish the delivery in hand, let
        publishing tasks finish (bounded), then close connections."""
        log.info("bot.stopping")
        if self._socket is not None:
            await cast(Any, self._socket).close_async()
        if self._runner is not None:
            await self._runner.shutdown()
        self._stop.set()
        if self._loops:
            await asyncio.wait(self._loops, timeout=DRAIN_TIMEOUT_S)
        await self.parts.supervisor.drain(DRAIN_TIMEOUT_S)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self._stack.aclose()
        log.info("bot.stopped")
