"""Connection pools, and numbered plain-SQL migrations applied under a Postgres advisory lock.

Several replicas may start at once: each takes the same session-level advisory lock on a
dedicated connection, so exactly one applies a pending file while the others wait and then
find nothing left to do. Each file runs in its own transaction with its version row.
"""

from __future__ import annotations

import json
from importlib import resources

import asyncpg

from bot.obs import logs

log = logs.logger(logs.Component.MIGRATE)

# Arbitrary constant shared by every replica: "incidentbot migrations".
MIGRATION_LOCK_KEY = 0x1_1C1D_E27B


async def _init_connection(conn: asyncpg.Connection) -> None:
    """json and jsonb values travel as Python values, in both directions."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The pool keeps no session state (no session advisory locks, LISTEN, cursors or SET:
    migrations lock on their own connection), so the default reset query on every release
    would only cost a round trip. asyncpg still rolls back an open transaction itself."""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30, reset=_no_reset
    )
    assert pool is not None
    return pool


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every bundled migration, in order."""
    folder = resources.files("bot.store") / "migrations"
    found = sorted(
        (entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return found


async def apply_migrations(dsn: str) -> list[str]:
    """Apply pending migrations; returns the versions applied by this call."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied.append(version)
                log.info("migration.applied", extra={"version": version})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
    return applied
