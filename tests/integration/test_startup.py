"""Start-up is exception-safe: whatever step fails, everything opened before it is closed.

Counted from the servers' side: PostgreSQL sessions on the test's database
(pg_stat_activity) and Redis client connections (CLIENT LIST), before and after a failed
start. A successful start is the positive control: it does hold connections, and gives them
all back on stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from bot.app import build
from bot.core.errors import ConfigError
from sandbox.services import PostgresServer, free_port
from sandbox.slack import SlackSandbox
from tests.integration.rig import bot_settings

SETTLE_S = 10.0


async def postgres_sessions(postgres: PostgresServer, database_dsn: str) -> int:
    database = urlsplit(database_dsn).path.lstrip("/")
    conn = await asyncpg.connect(postgres.dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
        )
        return count
    finally:
        await conn.close()


async def redis_clients(redis_url: str) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        clients = await client.client_list()
        return len(clients) - 1  # not this probe
    finally:
        await client.aclose()


async def settles_at(probe: Callable[[], Awaitable[int]], expected: int) -> int:
    """The probe's value once it reaches `expected` (backends exit a moment after their client
    closes), or the last value seen when SETTLE_S pass first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    value = await probe()
    while value != expected and loop.time() < deadline:
        await asyncio.sleep(0.05)
        value = await probe()
    return value


@pytest.fixture
def counts(
    postgres: PostgresServer, database_dsn: str, redis_url: str
) -> Callable[[], Awaitable[tuple[int, int]]]:
    async def both() -> tuple[int, int]:
        return await postgres_sessions(postgres, database_dsn), await redis_clients(redis_url)

    return both


async def test_a_failed_start_after_the_stores_closes_them(
    slack: SlackSandbox,
    postgres: PostgresServer,
    database_dsn: str,
    redis_url: str,
    counts: Callable[[], Awaitable[tuple[int, int]]],
    tmp_path: Path,
) -> None:
    """KUBECONFIG is read after Redis, both Postgres pools, the PagerDuty client and the HTTP
    session are open: all of them must be closed again."""
    before_pg, before_redis = await counts()
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: x}]\ncurrent-context: nowhere\n")
    settings = bot_settings(slack, database_dsn, redis_url, kubeconfig=str(broken))
    with pytest.raises(ConfigError, match="KUBECONFIG"):
        await build(settings)
    assert await settles_at(lambda: postgres_sessions(postgres, database_dsn), before_pg) == before_pg
    assert await settles_at(lambda: redis_clients(redis_url), before_redis) == before_redis

    # Positive control: the same settings without the broken file do hold connections while
    # built, and give every one back when stopped.
    server = await build(bot_settings(slack, database_dsn, redis_url))
    try:
        during_pg, during_redis = await counts()
        assert during_pg > before_pg and during_redis > before_redis
    finally:
        await server.stop()
    assert await settles_at(lambda: postgres_sessions(postgres, database_dsn), before_pg) == before_pg
    assert await settles_at(lambda: redis_clients(redis_url), before_redis) == before_redis


async def test_unreachable_redis_opens_nothing_in_postgres(
    slack: SlackSandbox, postgres: PostgresServer, database_dsn: str
) -> None:
    before = await postgres_sessions(postgres, database_dsn)
    settings = bot_settings(slack, database_dsn, f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ConfigError, match="Redis unreachable"):
        await build(settings)
    assert await settles_at(lambda: postgres_sessions(postgres, database_dsn), before) == before


async def test_invalid_playbooks_stop_start_up_before_any_connection(
    slack: SlackSandbox,
    postgres: PostgresServer,
    database_dsn: str,
    redis_url: str,
    counts: Callable[[], Awaitable[tuple[int, int]]],
    tmp_path: Path,
) -> None:
    (tmp_path / "bad.yaml").write_text("name: [not, a, name]\n")
    before = await counts()
    with pytest.raises(ConfigError, match="invalid playbooks"):
        await build(bot_settings(slack, database_dsn, redis_url, playbooks_dir=tmp_path))
    assert await counts() == before
