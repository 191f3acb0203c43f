"""The real service processes from sandbox/services.py answer like the production services."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from sandbox.services import (
    AlertmanagerServer,
    PostgresServer,
    PrometheusServer,
    RedisServer,
    ServiceError,
    free_port,
)

TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on 127.0.0.1 (random port); yields 'host:port'."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535


async def test_postgres_select_1(postgres: PostgresServer) -> None:
    assert postgres.dsn == f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres"
    conn = await asyncpg.connect(postgres.dsn)
    try:
        assert await conn.fetchval("select 1") == 1
        assert (await conn.fetchval("show max_connections")) == "200"
        assert (await conn.fetchval("show server_version")).startswith("15")
    finally:
        await conn.close()


async def test_create_database_is_isolated(postgres: PostgresServer, database_dsn: str) -> None:
    conn = await asyncpg.connect(database_dsn)
    try:
        await conn.execute("create table marker (id int primary key)")
        await conn.execute("insert into marker values (1)")
    finally:
        await conn.close()

    other_name = f"test_{uuid.uuid4().hex[:16]}"
    other_dsn = postgres.create_database(other_name)
    try:
        assert other_dsn.endswith(f"/{other_name}")
        other = await asyncpg.connect(other_dsn)
        try:
            assert await other.fetchval("select to_regclass('marker')") is None
            assert await other.fetchval("select current_database()") == other_name
        finally:
            await other.close()
    finally:
        postgres.drop_database(other_name)


async def test_postgres_survives_kill_and_restart(services_dir: Path) -> None:
    with await asyncio.to_thread(PostgresServer.start, services_dir) as pg:
        dsn = pg.create_database("crash")
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("create table t (v text); insert into t values ('kept')")
        finally:
            await conn.close()
        pg.kill()
        assert not pg.running
        await asyncio.to_thread(pg.restart)
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("select v from t") == "kept"
        finally:
            await conn.close()
    assert not pg.running
    pg.stop()  # idempotent


async def test_redis_ping(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await client.ping() is True
        assert await client.dbsize() == 0
        await client.set("left-over", "1")  # flushed before the next test
    finally:
        await client.aclose()


async def test_redis_is_flushed_between_tests(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await client.get("left-over") is None
    finally:
        await client.aclose()


async def test_redis_aof_survives_kill(services_dir: Path) -> None:
    with RedisServer.start(services_dir) as server:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        try:
            await client.xadd("webhooks", {"body": "x"})
        finally:
            await client.aclose()
        server.kill()
        server.restart()
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        try:
            assert await client.xlen("webhooks") == 1
        finally:
            await client.aclose()


def test_missing_binary_names_the_package(services_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(services_dir / "empty-path"))
    hint = r"redis-server not found: install the Debian package redis-server \(make test provisions it\)"
    with pytest.raises(ServiceError, match=hint):
        RedisServer.start(services_dir)
    with pytest.raises(ServiceError, match=r"Debian package prometheus-alertmanager"):
        AlertmanagerServer.start(services_dir, "http://127.0.0.1:1/", "t")


async def test_alertmanager_delivers_webhook_with_bearer(services_dir: Path) -> None:
    token = "s3cret-token"
    received: list[tuple[str | None, dict[str, Any]]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get("Authorization"), await request.json()))
        arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/alertmanager", hook)
    async with serve(app) as addr:
        am = await asyncio.to_thread(
            AlertmanagerServer.start, services_dir, f"http://{addr}/webhooks/alertmanager", token
        )
        try:
            alert = {
                "labels": {"alertname": "HighErrorRate", "namespace": "shop", "severity": "critical"},
                "annotations": {"summary": "5xx above 5%"},
                "startsAt": datetime.now(UTC).isoformat(),
            }
            await asyncio.to_thread(am.post_alerts, [alert])
            async with asyncio.timeout(TIMEOUT):
                await arrived.wait()
        finally:
            await asyncio.to_thread(am.stop)

    auth, body = received[0]
    assert auth == f"Bearer {token}"
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["receiver"] == "incidentbot"
    assert body["groupLabels"] == {"alertname": "HighErrorRate", "namespace": "shop"}
    assert body["alerts"][0]["labels"]["severity"] == "critical"


async def test_prometheus_scrapes_target(services_dir: Path) -> None:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="# TYPE sandbox_probe gauge\nsandbox_probe 42\n", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    async with serve(app) as addr:
        prom = await asyncio.to_thread(PrometheusServer.start, services_dir, [addr])
        try:
            async with aiohttp.ClientSession() as http:
                value: str | None = None
                async with asyncio.timeout(TIMEOUT):
                    while value != "1":
                        async with http.get(
                            f"{prom.url}/api/v1/query", params={"query": 'up{job="sandbox"}'}
                        ) as resp:
                            data = await resp.json()
                        result = data["data"]["result"]
                        value = result[0]["value"][1] if result else None
                        if value != "1":
                            await asyncio.sleep(0.2)
                async with http.get(f"{prom.url}/api/v1/query", params={"query": "sandbox_probe"}) as resp:
                    data = await resp.json()
                assert data["data"]["result"][0]["value"][1] == "42"
        finally:
            await asyncio.to_thread(prom.stop)
