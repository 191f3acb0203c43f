"""A small Prometheus exporter of the seed systems' metrics, healthy or failing on demand.

The metric names and labels are the ones the bundled playbooks' graphs and checks query (and
the seed runbooks' alert rules), shaped as the real exporters publish them: postgres_exporter's
``pg_stat_activity_count`` carries ``datname``/``state`` while ``pg_settings_max_connections``
does not, counters count since process start, a histogram has an endpoint nobody calls. That is
what makes a query that forgets to aggregate visibly wrong against it.

Each family goes bad while one of its *faults* (alert names of the seed rules) is failing:
``fail("HighAPIErrorRate")`` raises SkillQuest's 5xx rate until ``recover`` is called. Counters
are integrated over time at the rate of the current state, so ``rate()`` sees the change.

``GET /metrics`` serves everything; ``GET /probe/{job}`` is one scrape job whose ``up`` the
playbooks query (``up{job="skillquest-api"}``): it answers 503 while that job's fault is failing,
so Prometheus itself records ``up == 0``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["FAULTS", "PROBE_JOBS", "SeedExporter"]

Labels = Mapping[str, str]
GiB = 2.0**30
MiB = 2.0**20
# Prometheus client libraries' default buckets, widened for the slow AI and clone calls.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class Gauge:
    name: str
    labels: Labels
    healthy: float
    failing: float
    faults: frozenset[str]
    slope: float = 0.0  # per second while failing (a queue that keeps growing)


@dataclass(frozen=True, slots=True)
class Counter:
    """A monotonically growing value; ``gauge=True`` publishes it as a gauge (uptime, heap)."""

    name: str
    labels: Labels
    healthy: float  # per second
    failing: float
    faults: frozenset[str]
    start: float = 0.0  # its value when the exporter starts (a day of earlier traffic)
    gauge: bool = False


@dataclass(frozen=True, slots=True)
class Histogram:
    """Requests at ``rate`` per second, every one taking ``healthy`` (or ``failing``) seconds."""

    name: str
    labels: Labels
    rate: float
    healthy: float
    failing: float
    faults: frozenset[str]


Family = Gauge | Counter | Histogram


def _f(*names: str) -> frozenset[str]:
    return frozenset(names)


def _skillquest() -> list[Family]:
    api = {"service": "api", "method": "GET"}
    return [
        Counter("http_requests_total", {**api, "path": "/api/quests", "status": "200"}, 20, 18, _f()),
        Counter(
            "http_requests_total",
            {**api, "path": "/api/quests", "status": "500"},
            0.005,
            2,
            _f("HighAPIErrorRate"),
        ),
        Counter("http_requests_total", {**api, "path": "/api/users", "status": "200"}, 10, 10, _f()),
        Counter(
            "http_requests_total",
            {**api, "path": "/api/users", "status": "503"},
            0,
            1,
            _f("HighAPIErrorRate"),
        ),
        Histogram(
            "http_request_duration_seconds",
            {"service": "api", "path": "/api/quests"},
            20,
            0.03,
            4,
            _f("HighAPILatency"),
        ),
        # an endpoint nobody called in the window: per-series quantiles of it are NaN
        Histogram(
            "http_request_duration_seconds", {"service": "api", "path": "/api/admin"}, 0, 0.03, 0.03, _f()
        ),
        Gauge(
            "pg_stat_activity_count",
            {"datname": "skillquest", "state": "active"},
            30,
            80,
            _f("DatabaseConnectionPoolExhausted"),
        ),
        Gauge("pg_stat_activity_count", {"datname": "skillquest", "state": "idle"}, 10, 10, _f()),
        Gauge("pg_settings_max_connections", {}, 100, 100, _f()),
        Gauge(
            "pg_stat_activity_max_tx_duration",
            {"datname": "skillquest", "state": "active"},
            2,
            400,
            _f("SlowQueries", "DatabaseConnectionPoolExhausted"),
        ),
        Gauge(
            "pg_database_size_bytes",
            {"datname": "skillquest"},
            20 * GiB,
            90 * GiB,
            _f("DatabaseDiskSpaceLow"),
        ),
        Gauge("pg_database_size_bytes", {"datname": "postgres"}, 0.01 * GiB, 0.01 * GiB, _f()),
        Gauge(
            "node_filesystem_size_bytes",
            {"device": "/dev/sdb", "fstype": "ext4", "mountpoint": "/var/lib/postgresql/data"},
            100 * GiB,
            100 * GiB,
            _f(),
        ),
        Gauge(
            "node_filesystem_size_bytes",
            {"device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"},
            50 * GiB,
            50 * GiB,
            _f(),
        ),
        Gauge("pg_up", {}, 1, 0, _f("DatabaseDown")),
        Gauge("redis_memory_used_bytes", {}, 1 * GiB, 3.6 * GiB, _f("RedisMemoryHigh")),
        Gauge("redis_memory_max_bytes", {}, 4 * GiB, 4 * GiB, _f()),
        # a day of 95 % hits before the exporter started: a lifetime ratio hides a collapse
        Counter("redis_keyspace_hits_total", {}, 950, 300, _f("RedisHitRateLow"), start=82_080_000),
        Counter("redis_keyspace_misses_total", {}, 50, 700, _f("RedisHitRateLow"), start=4_320_000),
        Gauge("redis_up", {}, 1, 0, _f("RedisDown")),
        Histogram("ai_request_duration_seconds", {"model": "gpt-4o"}, 0.5, 2, 25, _f("AIHighLatency")),
        Histogram("ai_request_duration_seconds", {"model": "gpt-4o-mini"}, 0, 1, 1, _f()),
        # a runaway retry loop spends the day's budget in seconds
        Counter("ai_api_cost_usd_total", {"model": "gpt-4o"}, 0.0005, 60, _f("AIHighCost")),
        Counter("ai_api_rate_limited_total", {"model": "gpt-4o"}, 0.01, 0.4, _f("AIRateLimited")),
        Counter("ai_api_rate_limited_total", {"model": "gpt-4o-mini"}, 0.01, 0.2, _f("AIRateLimited")),
    ]


def _skillforge() -> list[Family]:
    latency = _f("SkillForgeLatencyP95High")
    return [
        Gauge("search_latency_p95", {"namespace": "api", "service": "search"}, 0.22, 0.36, latency),
        Gauge(
            "cache_hit_ratio",
            {"namespace": "api", "service": "search"},
            0.93,
            0.7,
            latency | _f("SkillForgeCacheHitRatioLow"),
        ),
        Gauge(
            "analytics_consumer_lag_seconds",
            {"namespace": "data-pipelines", "consumer": "analytics"},
            30,
            900,
            _f("AnalyticsConsumerLagHigh", "SkillForgeAnalyticsBacklog"),
        ),
        Counter(
            "analytics_events_ingested_total",
            {"namespace": "data-pipelines"},
            200,
            20,
            _f("AnalyticsConsumerLagHigh", "SkillForgeAnalyticsBacklog"),
        ),
    ]


def _skillmeat() -> list[Family]:
    errors = _f("HighErrorRate")
    latency = _f("HighLatency")
    get = {"method": "GET", "endpoint": "/api/v1/artifacts"}
    return [
        Counter("skillmeat_api_requests_total", {**get, "status": "200"}, 5, 5, _f()),
        Counter("skillmeat_api_requests_total", {**get, "status": "500"}, 0.02, 0.3, errors),
        Counter(
            "skillmeat_api_requests_total",
            {"method": "POST", "endpoint": "/api/v1/bundles", "status": "502"},
            0.01,
            0.2,
            errors,
        ),
        Counter("skillmeat_api_errors_total", {"error_type": "DatabaseError"}, 0.02, 0.4, errors),
        Histogram(
            "skillmeat_api_request_duration_seconds", {"endpoint": "/api/v1/artifacts"}, 5, 0.3, 8, latency
        ),
        Histogram("skillmeat_api_request_duration_seconds", {"endpoint": "/api/v1/admin"}, 0, 0.3, 0.3, _f()),
        Histogram("skillmeat_github_clone_duration_seconds", {}, 0.1, 2, 40, latency),
        Histogram("skillmeat_marketplace_operation_duration_seconds", {}, 0.2, 0.5, 12, latency),
        Gauge("skillmeat_github_rate_limit_remaining", {}, 4500, 40, _f("GitHubRateLimitLow")),
        Counter("skillmeat_github_requests_total", {}, 0.2, 3, _f("GitHubRateLimitLow")),
        Gauge("skillmeat_mcp_servers_total", {"status": "healthy"}, 3, 0, _f("MCPServerUnhealthy")),
        Gauge("skillmeat_mcp_servers_total", {"status": "unhealthy"}, 0, 3, _f("MCPServerUnhealthy")),
        Counter("skillmeat_mcp_errors_total", {"server": "github"}, 0, 2, _f("MCPServerUnhealthy")),
        Gauge("skillmeat_cache_size_bytes", {}, 200 * MiB, 1800 * MiB, _f("HighMemoryUsage")),
    ]


def _birthday() -> list[Family]:
    bs = "birthday_scheduler_"
    sendgrid = {"api_name": "sendgrid"}
    return [
        Counter(bs + "api_requests_total", {"path": "/api/v1/birthdays", "status": "200"}, 10, 10, _f()),
        Counter(
            bs + "api_requests_total",
            {"path": "/api/v1/birthdays", "status": "500"},
            0.01,
            1.5,
            _f("HighErrorRate"),
        ),
        Gauge(bs + "db_connections_active", {}, 8, 19, _f("DatabaseConnectionPoolExhausted")),
        Gauge(bs + "db_connections_max", {}, 20, 20, _f()),
        Gauge(bs + "db_pool_waiting_requests", {}, 0, 25, _f("DatabaseConnectionPoolExhausted")),
        Gauge(
            bs + "queue_depth",
            {"queue": "birthday-messages"},
            50,
            15000,
            _f("QueueDepthCritical", "HighQueueDepth"),
            slope=20,
        ),
        Counter(
            bs + "messages_processed_total", {"queue": "birthday-messages"}, 20, 2, _f("QueueDepthCritical")
        ),
        Gauge(bs + "consumer_count", {"queue": "birthday-messages"}, 4, 1, _f("QueueDepthCritical")),
        Gauge(bs + "circuit_breaker_state", sendgrid, 0, 1, _f("CircuitBreakerOpen")),
        Counter(
            bs + "external_api_calls_total", {**sendgrid, "status": "200"}, 2, 0.2, _f("CircuitBreakerOpen")
        ),
        Counter(
            bs + "external_api_calls_total",
            {**sendgrid, "status": "503"},
            0,
            1,
            _f("CircuitBreakerOpen", "RetryRateHigh"),
        ),
        Gauge(bs + "dlq_depth", {"queue": "birthday-messages"}, 3, 450, _f("DLQDepthHigh")),
        Counter(
            bs + "message_retries_total",
            {"retry_reason": "timeout"},
            0.01,
            2,
            _f("RetryRateHigh", "DLQDepthHigh"),
        ),
        Counter(bs + "http_client_timeouts_total", {"api_name": "sendgrid"}, 0, 1, _f("RetryRateHigh")),
        Histogram(bs + "api_response_time", {"path": "/api/v1/birthdays"}, 10, 0.08, 9, _f("HighLatency")),
        Histogram(
            bs + "database_query_duration",
            {"query_type": "select"},
            30,
            0.01,
            3,
            _f("SlowDatabaseQueries", "HighLatency"),
        ),
        Histogram(bs + "external_api_duration", {"api": "sendgrid"}, 2, 0.2, 4, _f("HighLatency")),
        Gauge(bs + "nodejs_eventloop_lag_seconds", {}, 0.01, 0.5, _f("HighLatency")),
        Gauge(
            bs + "memory_used_bytes", {}, 300 * MiB, 480 * MiB, _f("MemoryUsageHigh", "WorkerCrashRecovery")
        ),
        Gauge(bs + "memory_limit_bytes", {}, 512 * MiB, 512 * MiB, _f()),
        Counter(
            bs + "nodejs_heap_size_used_bytes",
            {},
            0,
            100_000,
            _f("MemoryUsageHigh"),
            start=150 * MiB,
            gauge=True,
        ),
        Counter(bs + "nodejs_gc_duration_seconds_count", {"kind": "major"}, 0.01, 0.5, _f("MemoryUsageHigh")),
        Counter(bs + "database_slow_queries_total", {}, 0, 0.5, _f("SlowDatabaseQueries")),
        Counter(bs + "process_uptime_seconds", {}, 1, 1, _f(), start=86_400, gauge=True),
    ]


def _onquota() -> list[Family]:
    containers = ("onquota_backend", "onquota_celery_worker", "onquota_postgres")
    return [
        *(
            Gauge(
                "container_memory_usage_bytes",
                {"name": name},
                400 * MiB,
                1900 * MiB,
                _f("OnQuotaHighMemoryUsage"),
            )
            for name in containers
        ),
        *(
            Counter("container_cpu_usage_seconds_total", {"name": name}, 0.2, 1.9, _f("OnQuotaHighCpuUsage"))
            for name in containers
        ),
    ]


def seed_families() -> list[Family]:
    """Every series of the five seed systems."""
    return [*_skillquest(), *_skillforge(), *_skillmeat(), *_birthday(), *_onquota()]


METRICS_JOB = "seed-systems"
#: scrape jobs whose ``up`` the playbooks query, and the fault that takes each down
PROBE_JOBS: dict[str, frozenset[str]] = {
    "skillquest-api": _f("APIDown"),
    "birthday-scheduler": _f("ServiceDown"),
}
FAULTS: frozenset[str] = frozenset(name for family in seed_families() for name in family.faults) | frozenset(
    name for faults in PROBE_JOBS.values() for name in faults
)


@dataclass
class _Total:
    value: float
    at: float


@dataclass
class SeedExporter:
    """The exporter (see the module docstring); ``clock`` is monotonic seconds."""

    families: list[Family] = field(default_factory=seed_families)
    clock: Callable[[], float] = time.time  # wall clock: history() stamps samples with it
    failing: set[str] = field(default_factory=set)
    _since: dict[str, float] = field(default_factory=dict)
    _totals: dict[int, _Total] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _runner: web.AppRunner | None = None
    _port: int | None = None

    # -- state ----------------------------------------------------------------------------------

    def fail(self, *faults: str) -> None:
        self._set(set(faults), add=True)

    def recover(self, *faults: str) -> None:
        self._set(set(faults), add=False)

    def fail_all(self) -> None:
        self.fail(*FAULTS)

    def _set(self, faults: set[str], *, add: bool) -> None:
        unknown = faults - FAULTS
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(FAULTS)}")
        with self._lock:
            now = self.clock()
            self._advance(now)  # counters keep what they counted at the old rate
            for fault in faults:
                if add and fault not in self.failing:
                    self._since[fault] = now
                elif not add:
                    self._since.pop(fault, None)
            if add:
                self.failing |= faults
            else:
                self.failing -= faults

    def _bad(self, faults: frozenset[str]) -> bool:
        return not faults.isdisjoint(self.failing)

    def _advance(self, now: float) -> None:
        for index, family in enumerate(self.families):
            if isinstance(family, Gauge):
                continue
            total = self._totals.get(index)
            if total is None:
                start = family.start if isinstance(family, Counter) else 0.0
                self._totals[index] = _Total(start, now)
                continue
            rate = self._rate(family)
            total.value += rate * (now - total.at)
            total.at = now

    def _rate(self, family: Counter | Histogram) -> float:
        if isinstance(family, Histogram):
            return family.rate
        return family.failing if self._bad(family.faults) else family.healthy

    # -- exposition -----------------------------------------------------------------------------

    def exposition(self) -> str:
        """The Prometheus text format of every family in its current state."""
        with self._lock:
            now = self.clock()
            self._advance(now)
            lines = self._lines(now, typed=set())
        return "\n".join(lines) + "\n"

    def history(self, seconds: float, step: float, labels: Labels) -> str:
        """OpenMetrics text of the last ``seconds`` in the current state, one point per ``step``,
        each sample with ``labels`` added (the job and instance its scrape will carry), for
        ``promtool tsdb create-blocks-from openmetrics``: a ``rate(...[5m])`` has its five
        minutes as soon as Prometheus starts. The counters end where the live ones go on."""
        with self._lock:
            now = self.clock()
            start = now - seconds
            for fault in self.failing:
                self._since[fault] = min(self._since.get(fault, now), start)
            for total in self._totals.values():
                total.at = start
            # OpenMetrics wants each family's samples together, so collect them per family
            families: dict[str, list[str]] = {}
            moment = start
            while moment < now:
                self._advance(moment)
                stamp = f" {moment:.3f}"
                for index, family in enumerate(self.families):
                    lines = self._family_lines(index, family, moment)
                    families.setdefault(family.name, []).extend(
                        _with_labels(x, labels) + stamp for x in lines
                    )
                moment += step
            self._advance(now)
        out = [line for name in sorted(families) for line in families[name]]
        return "\n".join([*out, "# EOF"]) + "\n"

    def _lines(self, now: float, *, typed: set[str]) -> list[str]:
        lines: list[str] = []
        # a family's samples must be contiguous: group them by name
        for index, family in sorted(enumerate(self.families), key=lambda item: item[1].name):
            if family.name not in typed:
                typed.add(family.name)
                lines.append(f"# TYPE {family.name} {_kind(family)}")
            lines.extend(self._family_lines(index, family, now))
        return lines

    def _family_lines(self, index: int, family: Family, now: float) -> Iterable[str]:
        bad = self._bad(family.faults)
        if isinstance(family, Gauge):
            yield _sample(family.name, family.labels, self._gauge(family, now) if bad else family.healthy)
            return
        count = self._totals[index].value
        if isinstance(family, Counter):
            yield _sample(family.name, family.labels, count)
            return
        took = family.failing if bad else family.healthy
        # every observation took `took` seconds: the buckets from its own upward hold it
        for le in BUCKETS:
            yield _sample(
                family.name + "_bucket", {**family.labels, "le": _number(le)}, count if took <= le else 0.0
            )
        yield _sample(family.name + "_bucket", {**family.labels, "le": "+Inf"}, count)
        yield _sample(family.name + "_sum", family.labels, count * took)
        yield _sample(family.name + "_count", family.labels, count)

    def _gauge(self, family: Gauge, now: float) -> float:
        since = min(self._since[fault] for fault in family.faults if fault in self._since)
        return family.failing + family.slope * max(0.0, now - since)

    def probe_up(self, job: str) -> bool | None:
        """Whether scrape job ``job`` answers (None: no such job)."""
        faults = PROBE_JOBS.get(job)
        if faults is None:
            return None
        return not self._bad(faults)

    # -- HTTP -----------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> int:
        """Serve on 127.0.0.1:``port`` (0: any free port); return the bound port."""
        with self._lock:
            self._advance(self.clock())
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/probe/{job}", self._probe)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self._port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("SeedExporter is not started")
        return f"http://127.0.0.1:{self._port}"

    def backfill(self, seconds: float = 600, step: float = 5) -> str:
        """``history`` as the ``seed-systems`` scrape job of this exporter would have stored it."""
        return self.history(seconds, step, {"job": METRICS_JOB, "instance": self.url.removeprefix("http://")})

    def scrape_jobs(self) -> dict[str, str]:
        """Prometheus job name -> target URL: the metrics and one job per probe."""
        return {METRICS_JOB: f"{self.url}/metrics", **{job: f"{self.url}/probe/{job}" for job in PROBE_JOBS}}

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.exposition(), content_type="text/plain", charset="utf-8")

    async def _probe(self, request: web.Request) -> web.Response:
        up = self.probe_up(request.match_info["job"])
        if up is None:
            return web.Response(status=404, text="no such job\n")
        if not up:
            return web.Response(status=503, text="down\n")
        return web.Response(
            text="# TYPE sandbox_probe_ok gauge\nsandbox_probe_ok 1\n", content_type="text/plain"
        )


def _kind(family: Family) -> str:
    if isinstance(family, Histogram):
        return "histogram"
    if isinstance(family, Counter) and not family.gauge:
        return "counter"
    return "gauge"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _with_labels(line: str, extra: Labels) -> str:
    name, _, rest = line.partition(" ")
    added = ",".join(f'{key}="{_escape(val)}"' for key, val in extra.items())
    if not added:
        return line
    if name.endswith("}"):
        return f"{name[:-1]},{added}}} {rest}"
    return f"{name}{{{added}}} {rest}"


def _sample(name: str, labels: Labels, value: float) -> str:
    if not labels:
        return f"{name} {_number(value)}"
    inside = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
    return f"{name}{{{inside}}} {_number(value)}"
