"""PrometheusMetrics and graphs against a real Prometheus scraping a test exporter."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp import web
from prometheus_api_client.exceptions import PrometheusApiClientException

from bot.clients.prometheus import MAX_POINTS, PrometheusMetrics, Series, choose_step, error_from_sdk
from bot.core.checks import evaluate_check
from bot.core.errors import IntegrationError
from bot.render.graph import HEIGHT_PX, WIDTH_PX, GraphSpec, plan_graph, render_graph
from sandbox.services import PrometheusServer

WAIT = 30.0
MANY = 15
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T = TypeVar("T")


async def wait_until(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = WAIT) -> T:
    """Poll `probe` until it returns something other than None (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


@dataclass
class Exporter:
    """A /metrics endpoint whose values the test sets."""

    target: str = ""
    gauge: float = 3.0
    counters: dict[str, float] = field(default_factory=lambda: {"200": 0.0, "500": 0.0})
    scrapes: int = 0

    def exposition(self) -> str:
        # Each scrape adds requests, so rate() is positive: 10/scrape for 200s, 2 for 500s.
        self.scrapes += 1
        self.counters["200"] += 10
        self.counters["500"] += 2
        lines = [
            "# HELP test_gauge A gauge the test controls.",
            "# TYPE test_gauge gauge",
            f'test_gauge{{service="api"}} {self.gauge}',
            "# HELP http_requests_total Requests.",
            "# TYPE http_requests_total counter",
        ]
        lines += [f'http_requests_total{{service="api",code="{c}"}} {v}' for c, v in self.counters.items()]
        lines += ["# HELP test_many One of many series.", "# TYPE test_many gauge"]
        lines += [f'test_many{{idx="{i:02d}",service="api"}} {i * 1.5}' for i in range(MANY)]
        return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def exporter() -> AsyncIterator[Exporter]:
    state = Exporter()

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=state.exposition(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    async with serve(app) as target:
        state.target = target
        yield state


@pytest.fixture(scope="module")
async def prometheus(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    base = tmp_path_factory.mktemp("prometheus")
    server = await asyncio.to_thread(PrometheusServer.start, base, [exporter.target], "1s")
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture(scope="module")
async def metrics(prometheus: str) -> AsyncIterator[PrometheusMetrics]:
    client = PrometheusMetrics(prometheus, timeout=5)
    try:
        # Wait until a range query ending now (Prometheus' API client rounds start and end to
        # whole seconds) sees several scrapes, so rate() over 5 s has two samples to work with.
        async def scraped() -> list[Series] | None:
            end = datetime.now(UTC)
            series = await client.query_range(
                'rate(http_requests_total{service="api"}[5s])', end - timedelta(minutes=1), end, 1
            )
            return series if len(series) == 2 and all(len(s.points) >= 3 for s in series) else None

        await wait_until(scraped, "several scrapes of the test exporter")
        yield client
    finally:
        client.close()


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG_SIGNATURE
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def png_title(png: bytes) -> str:
    offset = 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        if png[offset + 4 : offset + 8] == b"tEXt":
            key, _, value = png[offset + 8 : offset + 8 + length].partition(b"\0")
            if key == b"Title":
                return value.decode("latin-1")
        offset += 12 + length
    raise AssertionError("no Title in PNG")


# ----------------------------------------------------------------------------- queries


async def test_query_range_returns_series(metrics: PrometheusMetrics) -> None:
    end = datetime.now(UTC)
    start = end - timedelta(minutes=2)
    series = await metrics.query_range('http_requests_total{service="api"}', start, end, step_seconds=1)
    by_code = {s.labels["code"]: s for s in series}
    assert set(by_code) == {"200", "500"}
    assert by_code["500"].labels["__name__"] == "http_requests_total"
    assert by_code["500"].labels["job"] == "sandbox"
    points = by_code["200"].points
    assert len(points) >= 2
    assert all(isinstance(t, float) and isinstance(v, float) for t, v in points)
    assert [t for t, _ in points] == sorted(t for t, _ in points)
    assert points[-1][1] > points[0][1]  # a counter that grows every scrape

    rates = await metrics.query_range('rate(http_requests_total{service="api",code="500"}[5s])', start, end)
    assert len(rates) == 1
    assert any(v > 0 for _, v in rates[0].points)


async def test_query_instant_vector_and_scalar(metrics: PrometheusMetrics) -> None:
    samples = await metrics.query_instant('test_gauge{service="api"}')
    assert len(samples) == 1
    assert samples[0].labels["service"] == "api"
    scalar = await metrics.query_instant("scalar(vector(42))", at=datetime.now(UTC) - timedelta(seconds=5))
    assert [(s.labels, s.value) for s in scalar] == [({}, 42.0)]
    special = await metrics.query_instant("vector(0) / 0")
    assert len(special) == 1 and special[0].value != special[0].value  # NaN
    assert (await metrics.query_instant("vector(1) / 0"))[0].value == float("inf")


async def test_choose_step_keeps_30_days_under_the_limit(metrics: PrometheusMetrics) -> None:
    end = datetime.now(UTC)
    start = end - timedelta(days=30)
    step = choose_step(start, end)
    assert (end - start).total_seconds() / step < MAX_POINTS
    series = await metrics.query_range('test_gauge{service="api"}', start, end)  # accepted by Prometheus
    assert len(series) <= 1
    # The limit is real: a 1 s step over 30 days is refused.
    with pytest.raises(IntegrationError) as caught:
        await metrics.query_range('test_gauge{service="api"}', start, end, step_seconds=1)
    assert caught.value.status == 400
    assert "exceeded maximum resolution" in caught.value.message


async def test_graph_of_a_real_range_query_is_a_png_of_the_expected_size(metrics: PrometheusMetrics) -> None:
    end = datetime.now(UTC)
    start = end - timedelta(minutes=5)
    query = 'rate(http_requests_total{service="api"}[5s])'
    series = await metrics.query_range(query, start, end)
    assert len(series) == 2
    png = await asyncio.to_thread(
        render_graph,
        GraphSpec("Request rate", query, "req/s", 4.0),
        series,
        start=start,
        end=end,
        alert_start=end - timedelta(minutes=1),
        now=end,
    )
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX)
    assert png_title(png) == "Request rate"


async def test_many_series_graph_shows_top_10_of_15(metrics: PrometheusMetrics) -> None:
    end = datetime.now(UTC)
    start = end - timedelta(minutes=5)
    series = await metrics.query_range('test_many{service="api"}', start, end)
    assert len(series) == MANY
    spec = GraphSpec("Many", 'test_many{service="api"}', "", None)
    plan = plan_graph(spec, series)
    assert plan.title == "Many (top 10 of 15)"
    assert sorted(plan.names) == [f"idx={i:02d}" for i in range(5, 15)]
    png = await asyncio.to_thread(render_graph, spec, series, start=start, end=end, alert_start=None, now=end)
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX)
    assert png_title(png) == "Many (top 10 of 15)"


async def test_step_check_passes_and_fails_on_real_data(
    metrics: PrometheusMetrics, exporter: Exporter
) -> None:
    query = 'test_gauge{service="api"}'

    async def gauge_is(value: float) -> float | None:
        samples = await metrics.query_instant(query)
        return samples[0].value if samples and samples[0].value == value else None

    exporter.gauge = 3.0
    low = await wait_until(lambda: gauge_is(3.0), "gauge = 3")
    failed = evaluate_check(">", 5, low)
    assert (failed.passed, failed.text) == (False, "3 is not > 5")

    exporter.gauge = 10.0
    high = await wait_until(lambda: gauge_is(10.0), "gauge = 10")
    passed = evaluate_check(">", 5, high)
    assert (passed.passed, passed.text) == (True, "10 > 5")

    missing = await metrics.query_instant('test_gauge{service="nope"}')
    assert evaluate_check(">", 5, missing[0].value if missing else None).passed is None


# ----------------------------------------------------------------------------- errors


async def test_bad_promql_is_bad_data(metrics: PrometheusMetrics) -> None:
    end = datetime.now(UTC)
    with pytest.raises(IntegrationError) as caught:
        await metrics.query_range("rate(http_requests_total[5m", end - timedelta(minutes=5), end)
    error = caught.value
    assert error.system == "prometheus"
    assert error.status == 400
    assert error.message.startswith("bad_data: ")
    assert "parse error" in error.message

    with pytest.raises(IntegrationError) as instant:
        await metrics.query_instant("sum(")
    assert instant.value.status == 400
    assert instant.value.message.startswith("bad_data: ")


async def test_execution_error_is_422(metrics: PrometheusMetrics) -> None:
    with pytest.raises(IntegrationError) as caught:
        await metrics.query_instant('label_replace(test_gauge, "x", "$1", "service", "(")')
    assert caught.value.status == 422
    assert caught.value.message.startswith("execution: ")


async def test_instant_query_of_a_range_vector_is_an_error(metrics: PrometheusMetrics) -> None:
    with pytest.raises(IntegrationError, match="range vector"):
        await metrics.query_instant("test_gauge[1m]")


async def test_prometheus_down_fails_fast(tmp_path: Path) -> None:
    server = await asyncio.to_thread(PrometheusServer.start, tmp_path, [], "1s")
    client = PrometheusMetrics(server.url, timeout=5)
    try:
        assert await client.query_instant("vector(1)")
        await asyncio.to_thread(server.stop)
        began = time.monotonic()
        with pytest.raises(IntegrationError) as caught:
            await client.query_range("vector(1)", datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC))
        assert time.monotonic() - began < 2.0
        assert caught.value.system == "prometheus"
        assert caught.value.status is None
        assert "cannot connect" in caught.value.message
    finally:
        client.close()
        await asyncio.to_thread(server.stop)


async def test_5xx_is_reported_once_without_retry_backoff() -> None:
    """A fake Prometheus answering 503 (as on a query timeout): one request, no back-off."""
    hits = 0

    async def timeout_answer(_request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.json_response(
            {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"},
            status=503,
        )

    app = web.Application()
    app.router.add_route("*", "/api/v1/query", timeout_answer)
    async with serve(app) as hostport:
        client = PrometheusMetrics(f"http://{hostport}", timeout=5)
        try:
            began = time.monotonic()
            with pytest.raises(IntegrationError) as caught:
                await client.query_instant("vector(1)")
            assert time.monotonic() - began < 2.0
        finally:
            client.close()
    assert hits == 1
    assert caught.value.status == 503
    assert caught.value.message == "timeout: query timed out in expression evaluation"


async def test_slow_prometheus_is_bounded_by_the_timeout() -> None:
    release = asyncio.Event()

    async def hang(_request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    app = web.Application()
    app.router.add_route("*", "/api/v1/query", hang)
    async with serve(app) as hostport:
        client = PrometheusMetrics(f"http://{hostport}", timeout=0.5)
        try:
            began = time.monotonic()
            with pytest.raises(IntegrationError, match="timed out"):
                await client.query_instant("vector(1)")
            assert time.monotonic() - began < 3.0
        finally:
            release.set()
            client.close()


def test_error_from_sdk_parses_status_and_error_type() -> None:
    body = b'{"status":"error","errorType":"execution","error":"invalid regular expression"}'
    error = error_from_sdk(PrometheusApiClientException(f"HTTP Status Code 422 ({body!r})"))
    assert (error.system, error.status, error.message) == (
        "prometheus",
        422,
        "execution: invalid regular expression",
    )

    html = error_from_sdk(PrometheusApiClientException("HTTP Status Code 502 (b'<html>Bad Gateway</html>')"))
    assert (html.status, html.message) == (502, "HTTP 502: <html>Bad Gateway</html>")

    odd = error_from_sdk(PrometheusApiClientException("something else"))
    assert (odd.status, odd.message) == (None, "something else")
