"""Deps: the one frozen container handed to every handler (house rule 2: no globals)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.clients.alertmanager import AlertmanagerSilences
from bot.clients.kubernetes.cluster import KubernetesCluster
from bot.clients.pagerduty import PagerDutyClient
from bot.clients.prometheus import PrometheusMetrics
from bot.clients.slack import SlackChat
from bot.config.settings import Settings
from bot.core.playbooks import PlaybookSet
from bot.core.policy import Policy
from bot.flows.intake import Pipeline
from bot.flows.publish import Publisher
from bot.flows.supervisor import Supervisor
from bot.obs.metrics import Metrics
from bot.store.coordination import Coordination
from bot.store.incidents import PostgresStore
from bot.store.lifecycle import LifecycleStore


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    store: PostgresStore
    coord: Coordination
    chat: SlackChat
    metrics: Metrics
    supervisor: Supervisor
    pipeline: Pipeline
    publisher: Publisher
    clock: Callable[[], datetime]
    lifecycle: LifecycleStore
    policy: Policy
    playbooks: PlaybookSet
    owner: str
    pager: PagerDutyClient | None = None
    silences: AlertmanagerSilences | None = None
    cluster: KubernetesCluster | None = None
    metrics_source: PrometheusMetrics | None = None
    # Periodic jobs the sweep runs (timers, expiry checks), added by the wiring at start-up.
    sweep_tasks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Resources to close on shutdown, in order.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for closer in self.closers:
            await closer()
