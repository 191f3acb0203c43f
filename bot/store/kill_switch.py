"""The runtime kill switch in PostgreSQL: one row every replica reads before it executes, so a
flip is seen by all of them at once, with no restart and no cache to go stale.

Flipping it appends to the audit log in the same transaction and bumps the version of every
proposal not yet final, so their messages are redrawn with (or without) the warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bot.core.runs import AuditEvent


@dataclass(frozen=True, slots=True)
class KillSwitchState:
    engaged: bool
    reason: str
    changed_by: str
    changed_at: datetime


class KillSwitchStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self) -> KillSwitchState | None:
        """The stored switch; None when nobody ever flipped it (off)."""
        row = await self.pool.fetchrow("SELECT * FROM kill_switch WHERE id")
        if row is None:
            return None
        return KillSwitchState(row["engaged"], row["reason"], row["changed_by"], row["changed_at"])

    async def set(self, engaged: bool, user: str, reason: str, now: datetime) -> tuple[KillSwitchState, bool]:
        """Store the switch; (the state now, whether it changed). Audited either way."""
        async with self.pool.acquire() as conn, conn.transaction():
            before = await conn.fetchval("SELECT engaged FROM kill_switch WHERE id FOR UPDATE")
            row = await conn.fetchrow(
                "INSERT INTO kill_switch (id, engaged, reason, changed_by, changed_at)"
                " VALUES (true, $1, $2, $3, $4)"
                " ON CONFLICT (id) DO UPDATE SET engaged = $1, reason = $2, changed_by = $3, changed_at = $4"
                " RETURNING *",
                engaged,
                reason,
                user,
                now,
            )
            changed = bool(before) != engaged
            await conn.execute(
                "INSERT INTO audit_log (at, run_id, incident_id, actor, event, details)"
                " VALUES ($1, NULL, NULL, $2, $3, $4)",
                now,
                user,
                AuditEvent.KILL_SWITCH.value,
                {"engaged": engaged, "reason": reason, "changed": changed},
            )
            if changed:
                await conn.execute(
                    "UPDATE action_runs SET version = version + 1 WHERE status IN ('proposed', 'approved')"
                )
        state = KillSwitchState(row["engaged"], row["reason"], row["changed_by"], row["changed_at"])
        return state, changed
