"""The investigator's audit (investigations, their tool calls, tokens, cost) and the one
question it asks of our own history: which past incidents looked like this one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bot.core.investigation import ToolCall
from bot.store.incidents import IntakeTx


@dataclass(frozen=True, slots=True)
class PastIncident:
    id: int
    title: str
    severity: str
    service: str | None
    opened: datetime
    resolved: datetime | None
    resolution: str | None
    alertnames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cost: float


class InvestigationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def start(
        self, incident_id: int, requested_by: str | None, question: str, model: str, now: datetime
    ) -> int | None:
        """A new investigation's id; None when it is automatic (no requester) and the incident
        had its automatic investigation already."""
        value: int | None = await self.pool.fetchval(
            "INSERT INTO investigations (incident_id, requested_by, question, model, status, started_at)"
            " VALUES ($1, $2, $3, $4, 'running', $5) ON CONFLICT DO NOTHING RETURNING id",
            incident_id,
            requested_by,
            question,
            model,
            now,
        )
        return value

    async def record_call(self, investigation_id: int, call: ToolCall, now: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO investigation_tool_calls"
            " (investigation_id, call_id, tool, arguments, ok, output, elapsed_ms, at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            investigation_id,
            call.id,
            call.tool,
            dict(call.arguments),
            call.ok,
            call.output,
            call.elapsed_ms,
            now,
        )

    async def finish(
        self,
        investigation_id: int,
        incident_id: int,
        *,
        status: str,
        usage: Usage,
        stop_reason: str | None,
        result: dict[str, Any],
        timeline: str,
        now: datetime,
    ) -> None:
        """Close the investigation and put it on the incident's timeline, in one transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE investigations SET status = $2, finished_at = $3, prompt_tokens = $4,"
                " completion_tokens = $5, cost_estimate = $6, stop_reason = $7, result = $8"
                " WHERE id = $1",
                investigation_id,
                status,
                now,
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cost,
                stop_reason,
                result,
            )
            await IntakeTx(conn).add_event(
                incident_id,
                "investigation",
                timeline,
                at=now,
                actor=None,
                data={
                    "investigation_id": investigation_id,
                    "status": status,
                    "tokens": usage.prompt_tokens + usage.completion_tokens,
                    "cost_estimate": usage.cost,
                },
                key=f"investigation:{investigation_id}",
            )

    async def save_draft(
        self, incident_id: int, user: str, model: str, draft: str, token: str, now: datetime
    ) -> int:
        value: int = await self.pool.fetchval(
            "INSERT INTO investigations (incident_id, requested_by, question, model, status, started_at,"
            " finished_at, result) VALUES ($1, $2, 'summary', $3, 'draft', $4, $4, $5) RETURNING id",
            incident_id,
            user,
            model,
            now,
            {"draft": draft, "token": token},
        )
        return value

    async def claim_draft(self, draft_id: int, token: str, incident_id: int, now: datetime) -> str | None:
        """The draft's text, marking it posted (compare-and-set: one click posts it once)."""
        text: str | None = await self.pool.fetchval(
            "UPDATE investigations SET status = 'posted', finished_at = $4"
            " WHERE id = $1 AND incident_id = $3 AND status = 'draft' AND result->>'token' = $2"
            " RETURNING result->>'draft'",
            draft_id,
            token,
            incident_id,
            now,
        )
        return text

    async def stopped_by(self) -> tuple[str, str] | None:
        """(who, why) while the runtime switch stops investigations; None otherwise."""
        row = await self.pool.fetchrow("SELECT * FROM investigator_switch WHERE id AND stopped")
        return (row["changed_by"], row["reason"]) if row else None

    async def set_stopped(self, stopped: bool, user: str, reason: str, now: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO investigator_switch (id, stopped, reason, changed_by, changed_at)"
            " VALUES (true, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE"
            " SET stopped = $1, reason = $2, changed_by = $3, changed_at = $4",
            stopped,
            reason,
            user,
            now,
        )

    async def calls(self, investigation_id: int) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT call_id, tool, arguments, ok, output FROM investigation_tool_calls"
            " WHERE investigation_id = $1 ORDER BY at, call_id",
            investigation_id,
        )
        return [dict(r) for r in rows]

    async def similar(
        self, incident_id: int, alertnames: list[str], service: str | None, limit: int = 5
    ) -> list[PastIncident]:
        """Resolved incidents other than this one sharing an alert name or the service, newest
        first, with how they were resolved."""
        rows = await self.pool.fetch(
            "SELECT i.id, i.title, i.severity, i.service, i.created_at, i.resolved_at,"
            " i.resolution_summary,"
            " ARRAY(SELECT DISTINCT a.alertname FROM alerts a WHERE a.incident_id = i.id) AS names"
            " FROM incidents i WHERE i.id <> $1 AND i.status = 'resolved' AND ("
            " ($3::text IS NOT NULL AND i.service = $3)"
            " OR EXISTS (SELECT 1 FROM alerts a WHERE a.incident_id = i.id AND a.alertname = ANY($2::text[])))"
            " ORDER BY i.created_at DESC LIMIT $4",
            incident_id,
            alertnames,
            service,
            limit,
        )
        return [
            PastIncident(
                r["id"],
                r["title"],
                r["severity"],
                r["service"],
                r["created_at"],
                r["resolved_at"],
                r["resolution_summary"],
                tuple(r["names"]),
            )
            for r in rows
        ]
