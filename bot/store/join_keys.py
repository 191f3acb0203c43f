"""Join keys (migration 0009): the PagerDuty incident keys under which an incident is found by
the other source, so Alertmanager and PagerDuty reporting one problem make one incident.

Used inside an intake transaction. Both sources lock the keys they look up (advisory locks
held until commit, always taken in sorted order) before they look, and record theirs before
committing, so of two deliveries applied at the same time on any replicas the second always
finds what the first stored."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bot.core.incident import Incident
from bot.store.incidents import IntakeTx, _incident


class JoinKeys:
    def __init__(self, tx: IntakeTx) -> None:
        self.conn = tx.conn

    async def lock(self, keys: Iterable[str]) -> None:
        # Sorted, so two transactions locking overlapping keys cannot deadlock.
        for key in sorted(set(keys)):
            await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('join:' || $1))", key)

    async def open_incident(self, keys: Iterable[str], *, unlinked: bool = False) -> Incident | None:
        """The oldest open incident recorded under any of ``keys`` (with ``unlinked``: only one
        not linked to a PagerDuty incident yet)."""
        row = await self.conn.fetchrow(
            "SELECT i.* FROM incident_join_keys k JOIN incidents i ON i.id = k.incident_id"
            " WHERE k.join_key = ANY($1::text[]) AND i.open_marker"
            " AND (NOT $2 OR i.pagerduty_incident_id IS NULL) ORDER BY i.id LIMIT 1",
            list(keys),
            unlinked,
        )
        return _incident(row) if row else None

    async def record(self, incident_id: int, keys: Mapping[str, str]) -> None:
        """Record ``keys`` (key → kind) for the incident; known ones are left as they are."""
        if not keys:
            return
        await self.conn.executemany(
            "INSERT INTO incident_join_keys (join_key, incident_id, kind) VALUES ($1, $2, $3)"
            " ON CONFLICT (join_key, incident_id) DO NOTHING",
            [(key, incident_id, kind) for key, kind in keys.items()],
        )
