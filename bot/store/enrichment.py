"""Bookkeeping of what enrichment has posted into incident channels."""

from __future__ import annotations

from datetime import datetime

import asyncpg


class EnrichmentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def posted(self, incident_id: int) -> set[str]:
        rows = await self.pool.fetch(
            "SELECT playbook FROM incident_playbooks WHERE incident_id = $1", incident_id
        )
        return {r["playbook"] for r in rows}

    async def claim(
        self, incident_id: int, playbook: str, alertname: str, owner: str, now: datetime, lease_s: float
    ) -> bool:
        """Compare-and-set: True for the one poster of this playbook in this incident."""
        row = await self.pool.fetchrow(
            """
            INSERT INTO incident_playbooks (incident_id, playbook, alertname, claimed_by, claimed_at)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (incident_id, playbook) DO UPDATE
                SET claimed_by = EXCLUDED.claimed_by, claimed_at = EXCLUDED.claimed_at
                WHERE incident_playbooks.posted_at IS NULL
                  AND incident_playbooks.claimed_at < EXCLUDED.claimed_at - make_interval(secs => $6::float8)
            RETURNING playbook
            """,
            incident_id,
            playbook,
            alertname,
            owner,
            now,
            lease_s,
        )
        return row is not None

    async def mark_posted(self, incident_id: int, playbook: str, now: datetime) -> None:
        await self.pool.execute(
            "UPDATE incident_playbooks SET posted_at = $3 WHERE incident_id = $1 AND playbook = $2",
            incident_id,
            playbook,
            now,
        )
