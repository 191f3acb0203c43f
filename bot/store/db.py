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


# Every session of the bot commits durably whatever the server's default: a webhook is
# acknowledged only after its row is committed, and with synchronous_commit=off a committed row
# can still vanish in a crash of the server.
SESSION_SETTINGS = {"synchronous_commit": "on"}


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        reset=_no_reset,
        server_settings=SESSION_SETTINGS,
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


async def durability(dsn: str) -> dict[str, str]:
    """The server's settings that decide whether a committed row survives a crash, as the server
    is configured (a plain session, without the bot's own settings). Logged at start-up; a
    warning names what could lose acknowledged deliveries."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
            ["fsync", "synchronous_commit", "full_page_writes"],
        )
    finally:
        await conn.close()
    found = {r["name"]: r["setting"] for r in rows}
    risky = [f"{name}={found[name]}" for name in ("fsync", "full_page_writes") if found.get(name) == "off"]
    extra = {"server_" + name: value for name, value in found.items()}
    if risky:
        log.warning(
            "postgres.durability_at_risk",
            extra={
                **extra,
                "risk": ", ".join(risky),
                "effect": "a crash of the host can lose acknowledged commits",
            },
        )
    else:
        log.info("postgres.durability", extra={**extra, "bot_sessions": "synchronous_commit=on"})
    return found


async def apply_migrations(dsn: str) -> list[str]:
    """Apply pending migrations; returns the versions applied by this call."""
    conn = await asyncpg.connect(dsn, server_settings=SESSION_SETTINGS)
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
