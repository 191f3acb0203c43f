"""Deps: the one frozen container handed to every handler (house rule 2: no globals)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.config import Settings
from bot.integrations.alertmanager_api import AlertmanagerSilences
from bot.integrations.kubernetes import KubernetesCluster
from bot.integrations.pagerduty import PagerDutyClient
from bot.integrations.prometheus import PrometheusMetrics
from bot.integrations.slack import SlackChat
from bot.metrics import Metrics
from bot.pipeline import Pipeline
from bot.playbooks import PlaybookSet
from bot.policy import Policy
from bot.publisher import Publisher
from bot.storage.lifecycle import LifecycleStore
from bot.storage.postgres import PostgresStore
from bot.storage.redis import Coordination
from bot.supervisor import Supervisor


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
