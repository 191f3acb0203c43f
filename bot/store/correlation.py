"""Correlation in PostgreSQL (migration 0013): the decisions about new alert groups (and the
facts later groups are compared with), suggestions waiting for a human, learned links, and the
moves behind merge and split. Statements that belong to an intake transaction take its
connection; the rest use the pool."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from bot.core.correlation import Candidate, GroupFacts, LearnedLink, Link, Outcome, pair
from bot.core.incident import Alert
from bot.store.incidents import IntakeTx, Record, _alert


@dataclass(frozen=True, slots=True)
class GroupRow:
    """A group recorded in an incident: how it came, under which keys, with which facts."""

    id: int
    group_key: str
    am_group_key: str
    incident_id: int
    outcome: str
    alertnames: tuple[str, ...]
    facts: GroupFacts


@dataclass(frozen=True, slots=True)
class Suggestion:
    id: int
    token: str
    incident_id: int
    candidate_id: int
    reason: str
    decided: str | None


def _group(row: Record) -> GroupRow:
    return GroupRow(
        row["id"],
        row["group_key"],
        row["am_group_key"],
        row["incident_id"],
        row["outcome"],
        tuple(row["alertnames"]),
        GroupFacts.from_json(row["facts"]),
    )


def _link(row: Record) -> LearnedLink:
    return LearnedLink(row["id"], row["name_a"], row["name_b"], Link(row["kind"]))


class CorrelationTx:
    """Statements inside one transaction (an intake's, or a merge's or split's)."""

    def __init__(self, tx: IntakeTx) -> None:
        self.conn = tx.conn

    async def lock(self) -> None:
        # New groups are decided one at a time across replicas: of two related groups arriving
        # together the second always sees the first. Taken after the group's and its join keys'
        # locks, never before them, so lock order is the same everywhere.
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('correlate'))")

    async def lock_groups(self, keys: Iterable[str]) -> None:
        """The intake's group locks (bot.store.incidents.IntakeTx.lock_group), in sorted order."""
        for key in sorted(set(keys)):
            await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('group:' || $1))", key)

    async def candidates(self, since: datetime, limit: int = 500) -> list[Candidate]:
        """Groups of open incidents recorded since `since`, newest first."""
        rows = await self.conn.fetch(
            "SELECT d.incident_id, d.facts FROM correlation_decisions d"
            " JOIN incidents i ON i.id = d.incident_id"
            " WHERE i.open_marker AND d.at >= $1 ORDER BY d.id DESC LIMIT $2",
            since,
            limit,
        )
        return [Candidate(r["incident_id"], GroupFacts.from_json(r["facts"])) for r in rows]

    async def learned(self, names: Sequence[str]) -> dict[tuple[str, str], LearnedLink]:
        rows = await self.conn.fetch(
            "SELECT * FROM learned_links WHERE name_a = ANY($1::text[]) OR name_b = ANY($1::text[])",
            list(names),
        )
        return {(r["name_a"], r["name_b"]): _link(r) for r in rows}

    async def record(
        self,
        *,
        group_key: str,
        am_group_key: str,
        incident_id: int,
        outcome: Outcome | str,
        rule: str,
        reason: str,
        facts: GroupFacts,
        at: datetime,
        related_id: int | None = None,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO correlation_decisions (group_key, am_group_key, incident_id, outcome, rule, reason,"
            " related_id, alertnames, facts, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            group_key,
            am_group_key,
            incident_id,
            str(outcome),
            rule,
            reason,
            related_id,
            list(facts.alertnames),
            facts.to_json(),
            at,
        )

    async def add_suggestion(
        self, token: str, incident_id: int, candidate_id: int, reason: str, now: datetime
    ) -> None:
        await self.conn.execute(
            "INSERT INTO correlation_suggestions (token, incident_id, candidate_id, reason, created_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            token,
            incident_id,
            candidate_id,
            reason,
            now,
        )

    async def groups(self, incident_id: int) -> list[GroupRow]:
        rows = await self.conn.fetch(
            "SELECT * FROM correlation_decisions WHERE incident_id = $1 ORDER BY id", incident_id
        )
        return [_group(r) for r in rows]

    async def open_for_update(self, incident_id: int) -> bool:
        """Lock the incident's row; whether it is still open."""
        found = await self.conn.fetchval(
            "SELECT open_marker FROM incidents WHERE id = $1 FOR UPDATE", incident_id
        )
        return bool(found)

    async def move_alerts(self, source: int, target: int, names: Sequence[str] | None = None) -> int:
        """Move the source incident's alerts (only those named, when given) to the target."""
        status = await self.conn.execute(
            "UPDATE alerts SET incident_id = $2 WHERE incident_id = $1"
            " AND ($3::text[] IS NULL OR alertname = ANY($3::text[]))",
            source,
            target,
            list(names) if names is not None else None,
        )
        return int(status.split()[-1])

    async def move_join_keys(self, source: int, target: int, keys: Sequence[str] | None = None) -> None:
        """Deliveries of the moved groups then land in the target (bot.store.join_keys)."""
        await self.conn.execute(
            "INSERT INTO incident_join_keys (join_key, incident_id, kind)"
            " SELECT join_key, $2, kind FROM incident_join_keys WHERE incident_id = $1"
            " AND ($3::text[] IS NULL OR join_key = ANY($3::text[])) ON CONFLICT DO NOTHING",
            source,
            target,
            list(keys) if keys is not None else None,
        )
        await self.conn.execute(
            "DELETE FROM incident_join_keys WHERE incident_id = $1"
            " AND ($2::text[] IS NULL OR join_key = ANY($2::text[]))",
            source,
            list(keys) if keys is not None else None,
        )

    async def move_groups(self, source: int, target: int, ids: Sequence[int] | None = None) -> None:
        await self.conn.execute(
            "UPDATE correlation_decisions SET incident_id = $2 WHERE incident_id = $1"
            " AND ($3::bigint[] IS NULL OR id = ANY($3::bigint[]))",
            source,
            target,
            list(ids) if ids is not None else None,
        )

    async def alerts_named(self, incident_id: int, name: str) -> list[Alert]:
        rows = await self.conn.fetch(
            "SELECT * FROM alerts WHERE incident_id = $1 AND alertname = $2 ORDER BY starts_at",
            incident_id,
            name,
        )
        return [_alert(r) for r in rows]

    async def alert_names(self, incident_id: int) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT DISTINCT alertname FROM alerts WHERE incident_id = $1 ORDER BY alertname", incident_id
        )
        return [r["alertname"] for r in rows]

    async def learn(
        self,
        names_a: Iterable[str],
        names_b: Iterable[str],
        kind: Link,
        user: str,
        incident_id: int,
        now: datetime,
    ) -> int:
        """Remember the correction for every pair of names (a later one replaces an earlier)."""
        pairs = {pair(a, b) for a in names_a for b in names_b if a != b}
        await self.conn.executemany(
            "INSERT INTO learned_links (name_a, name_b, kind, created_by, created_at, incident_id)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name_a, name_b) DO UPDATE SET"
            " kind = EXCLUDED.kind, created_by = EXCLUDED.created_by, created_at = EXCLUDED.created_at,"
            " incident_id = EXCLUDED.incident_id",
            [(a, b, kind.value, user, now, incident_id) for a, b in sorted(pairs)],
        )
        return len(pairs)

    async def decide_suggestion(
        self, token: str, decided: str, user: str, now: datetime
    ) -> Suggestion | None:
        """Compare-and-set: the one answer to an open suggestion."""
        row = await self.conn.fetchrow(
            "UPDATE correlation_suggestions SET decided = $2, decided_by = $3, decided_at = $4"
            " WHERE token = $1 AND decided IS NULL RETURNING *",
            token,
            decided,
            user,
            now,
        )
        return _suggestion(row) if row else None


def _suggestion(row: Record) -> Suggestion:
    return Suggestion(
        row["id"], row["token"], row["incident_id"], row["candidate_id"], row["reason"], row["decided"]
    )


class CorrelationStore:
    """Queries outside a transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def suggestion(self, token: str) -> Suggestion | None:
        row = await self.pool.fetchrow("SELECT * FROM correlation_suggestions WHERE token = $1", token)
        return _suggestion(row) if row else None

    async def links(self, limit: int = 100) -> list[LearnedLink]:
        rows = await self.pool.fetch("SELECT * FROM learned_links ORDER BY id LIMIT $1", limit)
        return [_link(r) for r in rows]

    async def remove_link(self, link_id: int) -> LearnedLink | None:
        row = await self.pool.fetchrow("DELETE FROM learned_links WHERE id = $1 RETURNING *", link_id)
        return _link(row) if row else None

    async def decisions(self, incident_id: int) -> list[tuple[str, str, str]]:
        """(outcome, rule, reason) of the groups recorded in an incident, oldest first."""
        rows = await self.pool.fetch(
            "SELECT outcome, rule, reason FROM correlation_decisions WHERE incident_id = $1 ORDER BY id",
            incident_id,
        )
        return [(r["outcome"], r["rule"], r["reason"]) for r in rows]


def since(now: datetime, minutes: int) -> datetime:
    return now - timedelta(minutes=minutes)
