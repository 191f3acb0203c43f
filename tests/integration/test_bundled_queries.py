"""Every bundled graph and check query against a real Prometheus, on healthy and failing data.

Two Prometheus servers each scrape a sandbox seed exporter (sandbox/metrics_exporter.py): one
with every seed system healthy, one with every fault failing. Each query the bundled playbooks
hold (rendered with no alert labels, so the templates' defaults apply) has its expected values
below: on healthy data every sample lies in the healthy range; on failing data at least one
sample lies in the failing range. Each step check, evaluated as the bot evaluates it, passes on
healthy data and fails on failing data. A query without an entry here fails the test.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.clients.prometheus import PrometheusMetrics, Sample
from bot.config.playbooks import load_playbooks
from bot.config.settings import BUNDLED_PLAYBOOKS
from bot.core.checks import evaluate_check_all
from sandbox.metrics_exporter import GiB, SeedExporter
from sandbox.services import PrometheusServer

WAIT = 40.0
Range = tuple[float, float]

# query -> (every healthy sample within, some failing sample within); bounds inclusive
EXPECTED: dict[str, tuple[Range, Range]] = {
    # Birthday Scheduler
    'up{job="birthday-scheduler"}': ((1, 1), (0, 0)),
    '(sum(rate(birthday_scheduler_api_requests_total{status=~"5.."}[5m])) / '
    "sum(rate(birthday_scheduler_api_requests_total[5m]))) * 100": ((0, 1), (5, 100)),
    'sum(rate(birthday_scheduler_api_requests_total{status=~"5.."}[5m])) by (status, path)': (
        (0, 0.05),
        (1, 2),
    ),
    "birthday_scheduler_db_connections_active / birthday_scheduler_db_connections_max * 100": (
        (30, 50),
        (90, 100),
    ),
    "birthday_scheduler_db_pool_waiting_requests": ((0, 0), (20, 30)),
    "birthday_scheduler_queue_depth": ((0, 1000), (10000, 1e6)),
    "sum(birthday_scheduler_queue_depth) / (sum(rate(birthday_scheduler_messages_processed_total[5m])) * 60)": (
        (0, 1),
        (60, 1e5),
    ),
    "birthday_scheduler_consumer_count": ((2, 10), (0, 1)),
    "birthday_scheduler_circuit_breaker_state": ((0, 0), (1, 1)),
    'sum(rate(birthday_scheduler_external_api_calls_total{status!="200"}[5m])) by (api_name, status)': (
        (0, 0),
        (0.5, 2),
    ),
    "birthday_scheduler_dlq_depth": ((0, 99), (100, 1e4)),
    "sum(rate(birthday_scheduler_message_retries_total[5m])) by (retry_reason)": ((0, 0.1), (1, 3)),
    "topk(10, histogram_quantile(0.99, sum(rate(birthday_scheduler_api_response_time_bucket[5m])) by (le, path)))": (
        (0, 1),
        (5, 10),
    ),
    "histogram_quantile(0.99, sum(rate(birthday_scheduler_database_query_duration_bucket[5m])) by (le, query_type))": (
        (0, 0.1),
        (1, 5),
    ),
    "histogram_quantile(0.99, sum(rate(birthday_scheduler_external_api_duration_bucket[5m])) by (le, api))": (
        (0, 0.5),
        (0.5, 5),
    ),
    "birthday_scheduler_nodejs_eventloop_lag_seconds": ((0, 0.1), (0.1, 1)),
    "histogram_quantile(0.99, sum(rate(birthday_scheduler_api_response_time_bucket[5m])) by (le))": (
        (0, 1),
        (5, 10),
    ),
    "birthday_scheduler_memory_used_bytes / birthday_scheduler_memory_limit_bytes * 100": (
        (50, 70),
        (85, 100),
    ),
    "deriv(birthday_scheduler_nodejs_heap_size_used_bytes[1h])": ((-1, 1), (5e4, 1.5e5)),
    'rate(birthday_scheduler_nodejs_gc_duration_seconds_count{kind="major"}[5m])': ((0, 0.05), (0.3, 1)),
    "histogram_quantile(0.95, sum(rate(birthday_scheduler_database_query_duration_bucket[5m])) by (le, query_type))": (
        (0, 1),
        (1, 5),
    ),
    "increase(birthday_scheduler_database_slow_queries_total[1h])": ((0, 0), (0.1, 1e5)),
    "histogram_quantile(0.95, sum(rate(birthday_scheduler_database_query_duration_bucket[5m])) by (le))": (
        (0, 1),
        (1, 5),
    ),
    "sum(rate(birthday_scheduler_http_client_timeouts_total[5m]))": ((0, 0), (0.5, 2)),
    "deriv(birthday_scheduler_queue_depth[5m]) * 60": ((-1, 1), (600, 2000)),
    "birthday_scheduler_process_uptime_seconds": ((86400, 1e6), (86400, 1e6)),
    # OnQuota
    "up": ((1, 1), (0, 0)),
    "pg_up": ((1, 1), (0, 0)),
    "sum(pg_stat_activity_count)": ((30, 50), (80, 100)),
    'container_memory_usage_bytes{name=~"onquota_.*"}': ((0, 1 * GiB), (1.5 * GiB, 2 * GiB)),
    'rate(container_cpu_usage_seconds_total{name=~"onquota_.*"}[5m])': ((0, 0.5), (1.5, 2)),
    # SkillForge
    "search_latency_p95": ((0, 0.34), (0.35, 1)),
    "cache_hit_ratio": ((0.85, 1), (0, 0.84)),
    "analytics_consumer_lag_seconds": ((0, 299), (300, 1e4)),
    "rate(analytics_events_ingested_total[5m])": ((100, 300), (10, 30)),
    # SkillMeat
    'sum(rate(skillmeat_api_requests_total{status=~"5.."}[5m]))': ((0, 0.1), (0.1, 1)),
    'topk(10, rate(skillmeat_api_requests_total{status=~"5.."}[5m]))': ((0, 0.1), (0.1, 1)),
    "rate(skillmeat_api_errors_total[5m])": ((0, 0.1), (0.1, 1)),
    "histogram_quantile(0.95, sum by (le) (rate(skillmeat_api_request_duration_seconds_bucket[5m])))": (
        (0, 1),
        (5, 10),
    ),
    "histogram_quantile(0.95, sum by (le) (rate(skillmeat_github_clone_duration_seconds_bucket[5m])))": (
        (0, 5),
        (30, 60),
    ),
    "histogram_quantile(0.95, sum by (le) (rate(skillmeat_marketplace_operation_duration_seconds_bucket[5m])))": (
        (0, 1),
        (10, 20),
    ),
    "skillmeat_github_rate_limit_remaining": ((100, 5000), (0, 99)),
    "rate(skillmeat_github_requests_total[5m])": ((0, 1), (2, 4)),
    "skillmeat_mcp_servers_total": ((0, 3), (3, 3)),
    "rate(skillmeat_mcp_errors_total[5m])": ((0, 0), (1, 3)),
    "skillmeat_cache_size_bytes": ((0, 1 * GiB), (1 * GiB, 2 * GiB)),
    # SkillQuest
    'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="api"}[5m])))': (
        (0, 0.5),
        (2, 5),
    ),
    'histogram_quantile(0.50, sum by (le) (rate(http_request_duration_seconds_bucket{service="api"}[5m])))': (
        (0, 0.1),
        (0.1, 5),
    ),
    "sum(pg_stat_activity_count) / sum(pg_settings_max_connections)": ((0, 0.7), (0.85, 1)),
    'sum(rate(http_requests_total{service="api", status=~"5.."}[5m])) / '
    'sum(rate(http_requests_total{service="api"}[5m]))': ((0, 0.001), (0.01, 1)),
    'up{job="skillquest-api"}': ((1, 1), (0, 0)),
    'pg_stat_activity_max_tx_duration{state="active"}': ((0, 29), (30, 1e4)),
    'sum(pg_database_size_bytes) / max(node_filesystem_size_bytes{mountpoint=~"/var/lib/postgresql.*"}) * 100': (
        (0, 79),
        (80, 100),
    ),
    "redis_memory_used_bytes / redis_memory_max_bytes": ((0, 0.7), (0.85, 1)),
    "redis_memory_used_bytes": ((0, 2 * GiB), (3 * GiB, 4 * GiB)),
    "sum(rate(redis_keyspace_hits_total[5m])) / "
    "(sum(rate(redis_keyspace_hits_total[5m])) + sum(rate(redis_keyspace_misses_total[5m])))": (
        (0.9, 1),
        (0, 0.79),
    ),
    "redis_up": ((1, 1), (0, 0)),
    "histogram_quantile(0.95, sum by (le) (rate(ai_request_duration_seconds_bucket[5m])))": (
        (0, 5),
        (15, 30),
    ),
    "sum(rate(ai_api_rate_limited_total[5m]))": ((0, 0.1), (0.1, 1)),
    "sum(increase(ai_api_cost_usd_total[24h]))": ((0, 1), (100.001, 1e6)),
}

# The shapes the audit replaced, with what each shows on the same data: why they were wrong.
OLD_QUERIES: list[tuple[str, str, str]] = [
    (
        # the query: divided series by series, a 5xx series is its own 100 %
        'rate(http_requests_total{service="api", status=~"5.."}[5m]) / rate(http_requests_total{service="api"}[5m])',
        "healthy",
        "reaches 1",
    ),
    ("pg_stat_activity_count / pg_settings_max_connections", "failing", "empty"),
    ("pg_database_size_bytes / node_filesystem_size_bytes * 100", "failing", "empty"),
    (
        "birthday_scheduler_queue_depth / (sum(rate(birthday_scheduler_messages_processed_total[5m])) * 60)",
        "failing",
        "empty",
    ),
    # counted since the exporter started: a day of hits hides the collapse
    (
        "redis_keyspace_hits_total / (redis_keyspace_hits_total + redis_keyspace_misses_total)",
        "failing",
        "above 0.8",
    ),
    # per series: an endpoint nobody called has no quantile, so the check can never pass
    (
        'histogram_quantile(0.99, rate(http_request_duration_seconds_bucket{service="api"}[5m]))',
        "healthy",
        "NaN",
    ),
]


@dataclass(frozen=True, slots=True)
class Bundled:
    where: str  # playbook and graph/check
    query: str
    check: tuple[str, float] | None  # op, threshold


def bundled_queries() -> list[Bundled]:
    found: list[Bundled] = []
    for playbook in load_playbooks(BUNDLED_PLAYBOOKS).playbooks:
        for graph in playbook.graphs:
            found.append(Bundled(f"{playbook.name} graph {graph.title!r}", graph.render_query({}), None))
        for number, step in enumerate(playbook.steps, 1):
            if step.check is not None:
                check = step.check
                found.append(
                    Bundled(
                        f"{playbook.name} step {number} check",
                        check.render_query({}),
                        (check.op, check.value),
                    )
                )
    return found


@dataclass
class Pair:
    healthy: PrometheusMetrics
    failing: PrometheusMetrics
    exporters: tuple[SeedExporter, SeedExporter]


async def _scraped(base: Path, exporter: SeedExporter) -> PrometheusServer:
    await exporter.start()
    history = exporter.backfill()  # ten minutes: every [5m] window is full from the start
    return await asyncio.to_thread(
        PrometheusServer.start, base, [], "1s", jobs=exporter.scrape_jobs(), backfill=history
    )


@pytest.fixture(scope="module")
async def prometheus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pair]:
    healthy, failing = SeedExporter(), SeedExporter()
    failing.fail_all()
    base = tmp_path_factory.mktemp("bundled-queries")
    servers = await asyncio.gather(_scraped(base, healthy), _scraped(base, failing), return_exceptions=True)
    try:
        for server in servers:
            if isinstance(server, BaseException):
                raise server
        started = [s for s in servers if isinstance(s, PrometheusServer)]
        yield Pair(PrometheusMetrics(started[0].url), PrometheusMetrics(started[1].url), (healthy, failing))
    finally:
        for server in servers:
            if isinstance(server, PrometheusServer):
                await asyncio.to_thread(server.stop)
        await healthy.stop()
        await failing.stop()


def _inside(value: float, bounds: Range) -> bool:
    return bounds[0] <= value <= bounds[1]


def _meets(samples: list[Sample], bounds: Range, *, every: bool) -> bool:
    if not samples or any(math.isnan(s.value) for s in samples):
        return False
    inside = [_inside(s.value, bounds) for s in samples]
    return all(inside) if every else any(inside)


async def _settled(client: PrometheusMetrics, query: str, bounds: Range, *, every: bool) -> str | None:
    """Wait (bounded) for the query's samples to meet the expectation; None when met, else why not."""
    deadline = time.monotonic() + WAIT
    while True:
        samples = await client.query_instant(query)
        if _meets(samples, bounds, every=every):
            return None
        if time.monotonic() > deadline:
            shown = [(s.labels, s.value) for s in samples] or "no samples"
            want = "every" if every else "some"
            return f"{query}: want {want} value in {bounds}, got {shown}"
        await asyncio.sleep(0.5)


def test_every_bundled_query_has_expected_values() -> None:
    queries = {b.query for b in bundled_queries()}
    missing = sorted(queries - EXPECTED.keys())
    stale = sorted(EXPECTED.keys() - queries)
    assert not missing, f"bundled queries without expected healthy/failing values: {missing}"
    assert not stale, f"expected values for queries no playbook holds: {stale}"


async def test_bundled_graphs_and_checks_on_healthy_and_failing_data(prometheus: Pair) -> None:
    problems: list[str] = []
    for query, (healthy, failing) in EXPECTED.items():
        for client, bounds, every, state in (
            (prometheus.healthy, healthy, True, "healthy"),
            (prometheus.failing, failing, False, "failing"),
        ):
            why = await _settled(client, query, bounds, every=every)
            if why is not None:
                problems.append(f"{state}: {why}")
    assert not problems, "\n".join(problems)

    for bundled in bundled_queries():
        if bundled.check is None:
            continue
        op, threshold = bundled.check
        for client, want in ((prometheus.healthy, True), (prometheus.failing, False)):
            values = [s.value for s in await client.query_instant(bundled.query)]
            outcome = evaluate_check_all(op, threshold, values)
            if outcome.passed is not want:
                state = "healthy" if want else "failing"
                problems.append(
                    f"{bundled.where} on {state} data: {bundled.query} {op} {threshold}: {outcome.text}"
                )
    assert not problems, "\n".join(problems)


async def test_the_replaced_queries_are_wrong_on_the_same_data(prometheus: Pair) -> None:
    # positive control for the exporter's shape: the replaced queries show the audit's bugs
    await _settled(
        prometheus.failing, "sum(increase(ai_api_cost_usd_total[24h]))", (100.001, 1e6), every=True
    )
    for query, state, wrong in OLD_QUERIES:
        client = prometheus.healthy if state == "healthy" else prometheus.failing
        values = [s.value for s in await client.query_instant(query)]
        if wrong == "empty":
            assert values == [], (query, values)
        elif wrong == "reaches 1":
            assert values and max(values) == pytest.approx(1.0), (query, values)
        elif wrong == "above 0.8":
            assert values and min(values) > 0.8, (query, values)
        else:
            assert any(math.isnan(v) for v in values), (query, values)
