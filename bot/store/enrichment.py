"""Bookkeeping of what enrichment has posted into incident channels.

A playbook post is claimed in Postgres with a short lease (Postgres's clock, shared by every
replica), renewed while it is being posted; each claim is numbered, so renewing and finishing
are compare-and-set on it. A claim whose holder died is released by the sweep, which marks
the incident for publishing again, so the post is resumed within seconds of the lease lapsing.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

# claimed_by of a claim released by the sweep: anyone may take it at once.
RELEASED = ""


class EnrichmentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def posted(self, incident_id: int) -> set[str]:
        rows = await self.pool.fetch(
            "SELECT playbook FROM incident_playbooks WHERE incident_id = $1 AND posted_at IS NOT NULL",
            incident_id,
        )
        return {r["playbook"] for r in rows}

    async def claim(
        self, incident_id: int, playbook: str, alertname: str, owner: str, lease_s: float
    ) -> int | None:
        """Compare-and-set: the claim's number for the one poster of this playbook in this
        incident (None: posted already, or claimed by a live holder)."""
        claim: int | None = await self.pool.fetchval(
            """
            INSERT INTO incident_playbooks (incident_id, playbook, alertname, claimed_by, claimed_at)
            VALUES ($1, $2, $3, $4, clock_timestamp())
            ON CONFLICT (incident_id, playbook) DO UPDATE
                SET claimed_by = EXCLUDED.claimed_by, claimed_at = EXCLUDED.claimed_at,
                    claim = incident_playbooks.claim + 1
                WHERE incident_playbooks.posted_at IS NULL
                  AND (incident_playbooks.claimed_by = $6
                       OR incident_playbooks.claimed_at < clock_timestamp() - make_interval(secs => $5::float8))
            RETURNING claim
            """,
            incident_id,
            playbook,
            alertname,
            owner,
            lease_s,
            RELEASED,
        )
        return claim

    async def renew(self, incident_id: int, playbook: str, owner: str, claim: int) -> bool:
        """Heartbeat of a post in progress: False when the claim is no longer ours."""
        row = await self.pool.fetchval(
            "UPDATE incident_playbooks SET claimed_at = clock_timestamp() WHERE incident_id = $1"
            " AND playbook = $2 AND claimed_by = $3 AND claim = $4 AND posted_at IS NULL RETURNING claim",
            incident_id,
            playbook,
            owner,
            claim,
        )
        return row is not None

    async def mark_posted(
        self, incident_id: int, playbook: str, owner: str, claim: int, now: datetime
    ) -> bool:
        """Compare-and-set on the claim; False when another holder took it over."""
        row = await self.pool.fetchval(
            "UPDATE incident_playbooks SET posted_at = $5 WHERE incident_id = $1 AND playbook = $2"
            " AND claimed_by = $3 AND claim = $4 AND posted_at IS NULL RETURNING claim",
            incident_id,
            playbook,
            owner,
            claim,
            now,
        )
        return row is not None

    async def release_stale(self, lease_s: float) -> list[int]:
        """Release the claims of holders that died (lease lapsed, nothing renewed it) and mark
        their incidents for publishing again, which resumes their posts; returns the incidents.
        Each dead claim is released once, so a post that cannot resume is not retried forever."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE incident_playbooks SET claimed_by = $2, claimed_at = clock_timestamp()"
                " WHERE posted_at IS NULL AND claimed_by <> $2"
                " AND claimed_at < clock_timestamp() - make_interval(secs => $1::float8)"
                " RETURNING incident_id",
                lease_s,
                RELEASED,
            )
            incidents = sorted({r["incident_id"] for r in rows})
            if incidents:
                await conn.execute(
                    "UPDATE incidents SET version = version + 1 WHERE id = ANY($1::bigint[])", incidents
                )
            return incidents
