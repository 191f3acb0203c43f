"""Build everything once at start-up: pools, SDK clients, use cases, the Bolt app.

The only place SDK clients are constructed. Start-up problems (unreachable Postgres or
Redis) become a ConfigError with one line naming what is wrong.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import asyncpg
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncApp

from bot.clients.alertmanager import AlertmanagerSilences
from bot.clients.kubernetes.cluster import KubernetesCluster
from bot.clients.pagerduty import PagerDutyClient
from bot.clients.prometheus import PrometheusMetrics
from bot.clients.slack import SlackChat, build_client
from bot.config.playbooks import PlaybookError, load_playbooks
from bot.config.settings import Settings
from bot.core.errors import ConfigError
from bot.core.incident import IncidentView
from bot.core.playbooks import PlaybookSet
from bot.deps import Deps
from bot.flows import enrich, timers
from bot.flows import pagerduty as pagerduty_sync
from bot.flows.gate import IntakeGate
from bot.flows.intake import Pipeline, playbook_group_key, playbook_severity
from bot.flows.publish import Publisher
from bot.flows.remediation import engine as remediation_engine
from bot.flows.supervisor import Supervisor
from bot.obs.metrics import Metrics
from bot.store import coordination as redis_store
from bot.store.db import apply_migrations
from bot.store.inbox_writer import INTAKE_BATCHES_IN_FLIGHT
from bot.store.incidents import InboxRow, IntakeTx, PostgresStore, create_pool
from bot.store.lifecycle import LifecycleStore
from bot.web.server import BotServer, build_web_app
from commands.register import register
from commands.remediation import propose_from_playbook

CONNECT_TIMEOUT_S = 10.0


# Connections of the intake pool: one per group-commit batch in flight (bot.store.inbox_writer).
INTAKE_CONNECTIONS = INTAKE_BATCHES_IN_FLIGHT


def utc_now() -> datetime:
    return datetime.now(UTC)


async def _connect_postgres(dsn: str) -> tuple[asyncpg.Pool, asyncpg.Pool]:
    """The main pool, and a small one of its own for storing webhook deliveries: acknowledging
    a webhook never waits for a connection behind background work."""
    try:
        await asyncio.wait_for(apply_migrations(dsn), CONNECT_TIMEOUT_S * 3)
        pool = await asyncio.wait_for(create_pool(dsn), CONNECT_TIMEOUT_S)
        try:
            intake = await asyncio.wait_for(
                create_pool(dsn, min_size=INTAKE_CONNECTIONS, max_size=INTAKE_CONNECTIONS), CONNECT_TIMEOUT_S
            )
        except BaseException:
            await pool.close()
            raise
        return pool, intake
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ConfigError(f"PostgreSQL unreachable at DATABASE_URL: {type(exc).__name__}: {exc}") from None


async def migrate(settings: Settings) -> list[str]:
    try:
        return await asyncio.wait_for(
            apply_migrations(settings.database_url.get_secret_value()), CONNECT_TIMEOUT_S * 3
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ConfigError(f"PostgreSQL unreachable at DATABASE_URL: {type(exc).__name__}: {exc}") from None


def load_playbook_set(settings: Settings) -> PlaybookSet:
    """Load and validate playbooks and policy; every problem is listed, start-up stops."""
    try:
        return load_playbooks(settings.playbooks_dir)
    except PlaybookError as exc:
        lines = "\n".join(str(p) for p in exc.problems)
        raise ConfigError(f"invalid playbooks in {settings.playbooks_dir}:\n{lines}") from None


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


async def build_cluster(settings: Settings) -> tuple[KubernetesCluster | None, ApiClient | None]:
    """KUBECONFIG when given, else the in-cluster service account, else no cluster (the
    remediation proposals then say that the cluster is not configured)."""
    configuration = Configuration()
    try:
        if settings.kubeconfig:
            await kube_config.load_kube_config(
                config_file=settings.kubeconfig, client_configuration=configuration
            )
        elif settings.in_cluster:
            cast(Any, kube_config).load_incluster_config(client_configuration=configuration)
        else:
            return None, None
    except (kube_config.ConfigException, OSError) as exc:
        raise ConfigError(f"KUBECONFIG: cannot load Kubernetes configuration: {exc}") from None
    api = ApiClient(configuration=configuration)
    return KubernetesCluster(api), api


async def build(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> BotServer:
    playbooks = load_playbook_set(settings)
    pager = build_pager(settings)
    # Both stores are checked before anything is changed or logged, so a bad start-up says
    # exactly one thing.
    redis_client = redis_store.connect(settings.redis_url.get_secret_value())
    coord = redis_store.Coordination(redis_client)
    try:
        await asyncio.wait_for(coord.ping(), CONNECT_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        await redis_client.aclose()
        raise ConfigError(f"Redis unreachable at REDIS_URL: {type(exc).__name__}: {exc}") from None
    try:
        pool, intake_pool = await _connect_postgres(settings.database_url.get_secret_value())
    except ConfigError:
        await redis_client.aclose()
        raise

    metrics = Metrics()
    supervisor = Supervisor()
    store = PostgresStore(pool, intake_pool=intake_pool)
    http_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    slack_client = build_client(
        settings.slack_bot_token.get_secret_value(), settings.slack_api_url, metrics, session=http_session
    )
    gate = IntakeGate()
    chat = SlackChat(
        slack_client, coord, metrics, rate_scale=settings.slack_rate_scale, pace=gate.background_turn
    )
    owner = settings.replica_name or f"{socket.gethostname()}-{os.getpid()}-{id(store):x}"
    publisher = Publisher(
        store,
        chat,
        coord,
        metrics,
        supervisor,
        clock,
        incident_channel=settings.incident_channel,
        owner=owner,
        grafana_url=settings.grafana_url,
        gate=gate,
    )
    pipeline = Pipeline(
        store,
        metrics,
        clock,
        publisher.request,
        severity=playbook_severity(playbooks),
        group_key=playbook_group_key(playbooks),
        policy=playbooks.policy,
        gate=gate,
    )
    cluster, kube_api = await build_cluster(settings)
    metrics_source = PrometheusMetrics(settings.prometheus_url) if settings.prometheus_url else None
    silences = (
        AlertmanagerSilences(settings.alertmanager_url, http_session) if settings.alertmanager_url else None
    )
    deps = Deps(
        settings=settings,
        store=store,
        coord=coord,
        chat=chat,
        metrics=metrics,
        supervisor=supervisor,
        pipeline=pipeline,
        publisher=publisher,
        clock=clock,
        lifecycle=LifecycleStore(pool),
        policy=playbooks.policy,
        playbooks=playbooks,
        owner=owner,
        pager=pager,
        silences=silences,
        cluster=cluster,
        metrics_source=metrics_source,
    )
    deps.closers.extend([pool.close, intake_pool.close, coord.aclose, http_session.close])
    if pager is not None:
        deps.closers.append(pager.aclose)
    if kube_api is not None:
        deps.closers.append(kube_api.close)
    if metrics_source is not None:

        async def close_prometheus() -> None:
            await asyncio.to_thread(metrics_source.close)

        deps.closers.append(close_prometheus)

    async def enrich_after_publish(view: IncidentView) -> None:
        await enrich.on_published(deps, view, propose=propose_from_playbook)

    async def pagerduty_after_publish(view: IncidentView) -> None:
        await pagerduty_sync.after_publish(deps, view.incident)

    async def apply_pagerduty(row: InboxRow, tx: IntakeTx) -> list[int]:
        return await pagerduty_sync.apply(deps, row, tx)

    publisher.on_published.append(enrich_after_publish)
    publisher.on_published.append(pagerduty_after_publish)
    pipeline.handlers["pagerduty"] = apply_pagerduty

    async def fire_timers() -> None:
        await timers.run_due(deps)

    async def remediation_sweep() -> None:
        await remediation_engine.expire_due(deps)

    deps.sweep_tasks.append(fire_timers)
    deps.sweep_tasks.append(remediation_sweep)

    bolt = AsyncApp(
        client=slack_client,
        signing_secret=(
            settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
        ),
        request_verification_enabled=not settings.socket_mode,
        process_before_response=False,
    )
    register(bolt, deps)
    return BotServer(deps, bolt, build_web_app(deps, bolt))
