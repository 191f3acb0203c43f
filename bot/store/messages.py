"""The ledger of messages the bot owns in Slack (see migrations/0006_bot_messages.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class Attempt:
    first_attempt_at: datetime
    attempts: int  # including this one
    ts: str | None  # already posted (by this or another replica)


class MessageLedger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def begin(self, key: str, channel_id: str, now: datetime) -> Attempt:
        """Record an attempt to post `key` (durably, before the post)."""
        row = await self.pool.fetchrow(
            "INSERT INTO bot_messages (key, channel_id, first_attempt_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (key) DO UPDATE SET attempts = bot_messages.attempts + 1"
            " RETURNING first_attempt_at, attempts, ts",
            key,
            channel_id,
            now,
        )
        assert row is not None
        return Attempt(row["first_attempt_at"], row["attempts"], row["ts"])

    async def posted(self, key: str, ts: str) -> None:
        await self.pool.execute("UPDATE bot_messages SET ts = $2 WHERE key = $1", key, ts)
