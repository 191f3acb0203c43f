"""Acknowledged means durable, whatever the server's settings: with `synchronous_commit=off`
configured on the server (a common tuning), every delivery answered 2xx survives the
PostgreSQL server being killed mid-stream, because the bot's own sessions commit durably."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import asyncpg
import pytest

from bot.app import BotServer
from sandbox.services import PostgresServer
from sandbox.slack import SlackSandbox
from tests.integration.rig import AM_TOKEN, bot_settings, bot_url, group_payload, running_bot

STREAM = 400
IN_FLIGHT = 16


@pytest.fixture
def lax_server(postgres: PostgresServer) -> Iterator[PostgresServer]:
    """The test server with synchronous_commit=off as its default, put back afterwards."""
    postgres.psql("ALTER SYSTEM SET synchronous_commit = off")
    postgres.psql("SELECT pg_reload_conf()")
    try:
        yield postgres
    finally:
        if not postgres.running:
            postgres.restart()
        postgres.psql("ALTER SYSTEM RESET synchronous_commit")
        postgres.psql("SELECT pg_reload_conf()")


async def _setting(conn: asyncpg.Connection) -> str:
    value: str = await conn.fetchval("SHOW synchronous_commit")
    return value


async def _stream(
    http: aiohttp.ClientSession, bot: BotServer, stop: asyncio.Event, halfway: asyncio.Event
) -> list[int]:
    """Post distinct groups until told to stop (or STREAM are sent); the inbox ids answered 200.
    `halfway` is set once a quarter of the stream has been acknowledged."""
    acked: list[int] = []
    url = bot_url(bot) + "/webhooks/alertmanager"
    headers = {"Authorization": f"Bearer {AM_TOKEN}", "Content-Type": "application/json"}
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        async with gate:
            if stop.is_set():
                return
            body = json.dumps(group_payload(f"g{i}", [(f"f{i}", "firing")])).encode()
            try:
                async with http.post(url, data=body, headers=headers) as resp:
                    if resp.status == 200:
                        acked.append(int((await resp.json())["id"]))
                        if len(acked) >= STREAM // 4:
                            halfway.set()
            except aiohttp.ClientError:
                pass  # not acknowledged: the sender retries, nothing was promised

    await asyncio.gather(*(one(i) for i in range(STREAM)))
    return acked


async def test_acknowledged_deliveries_survive_a_killed_server_with_synchronous_commit_off(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    lax_server: PostgresServer,
    database_dsn: str,
    redis_url: str,
) -> None:
    plain = await asyncpg.connect(database_dsn)
    try:
        assert await _setting(plain) == "off"  # the server's default really is lax
    finally:
        await plain.close()

    async with running_bot(bot_settings(slack, database_dsn, redis_url, worker_count=1)) as bot:
        async with bot.parts.store.pool.acquire() as conn:
            assert await _setting(conn) == "on"
        stop, halfway = asyncio.Event(), asyncio.Event()
        streaming = asyncio.create_task(_stream(http, bot, stop, halfway))
        # Kill the server while deliveries are being acknowledged (SIGKILL of the whole
        # process group: WAL not yet written out is gone, as in a crash).
        await asyncio.wait_for(halfway.wait(), timeout=30)
        lax_server.kill()
        stop.set()
        acked = await streaming
        await asyncio.to_thread(lax_server.restart)
    assert acked, "some deliveries were acknowledged before the kill"
    conn = await asyncpg.connect(database_dsn)
    try:
        stored = {r["id"] for r in await conn.fetch("SELECT id FROM webhook_inbox WHERE id = ANY($1)", acked)}
    finally:
        await conn.close()
    assert sorted(set(acked) - stored) == [], f"{len(set(acked) - stored)} acknowledged deliveries lost"
