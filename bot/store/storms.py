"""Storms in PostgreSQL (migrations/0014_storms.sql): each incident's storm role, decided once
under a per-team lock, the storm rows and their digest's publishing state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bot.core.blockkit import mention
from bot.core.catalog import StormPolicy
from bot.core.incident import IncidentSource, IncidentStatus, Severity
from bot.core.storms import Admission, StormMember, StormRole, role_in_storm
from bot.store.incidents import IntakeTx

Record = Any  # asyncpg ships no type information

# A storm counts its team's alert-born incidents (`coalesce(team, $2) = $1 AND source <> 'human'`
# below): a declared incident is never held back.


@dataclass(frozen=True, slots=True)
class StormRow:
    id: int
    team: str
    started_at: datetime
    last_opened_at: datetime
    window_seconds: int
    ended_at: datetime | None
    digest_channel_id: str | None
    digest_ts: str | None
    end_ts: str | None
    version: int
    published_version: int
    published_at: datetime | None


@dataclass(frozen=True, slots=True)
class TeamRef:
    """A team as stored: incidents of the default team may have no team (NULL)."""

    name: str
    default: str


def _row(row: Record) -> StormRow:
    return StormRow(**{name: row[name] for name in StormRow.__slots__})


def _member(row: Record) -> StormMember:
    return StormMember(
        id=row["id"],
        severity=Severity(row["severity"]),
        title=row["title"],
        service=row["service"],
        status=IncidentStatus(row["status"]),
        role=StormRole(row["storm_role"]),
        channel_id=row["channel_id"],
        created_at=row["created_at"],
    )


class StormStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def admission(self, incident_id: int) -> Admission | None:
        """The incident's decided role, None while undecided (one cheap read per publish)."""
        row = await self.pool.fetchrow(
            "SELECT storm_role, storm_id FROM incidents WHERE id = $1", incident_id
        )
        if row is None or row["storm_role"] is None:
            return None
        return Admission(StormRole(row["storm_role"]), row["storm_id"])

    async def admit(self, incident_id: int, team: TeamRef, policy: StormPolicy, now: datetime) -> Admission:
        """Decide the incident's role once, serialised per team so that replicas agree on one
        storm; a waiting incident whose severity rose into `channels_for` stops waiting."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('storm:' || $1))", team.name)
            inc = await conn.fetchrow(
                "SELECT id, storm_role, storm_id, severity, source, created_at FROM incidents WHERE id = $1"
                " FOR UPDATE",
                incident_id,
            )
            if inc["storm_role"] is not None:
                return await self._promote(conn, inc, policy)
            if inc["source"] == IncidentSource.HUMAN.value:
                return await self._set_role(conn, incident_id, StormRole.OWN, None, now)
            return await self._decide(conn, inc, team, policy, now)

    async def _promote(self, conn: Any, inc: Record, policy: StormPolicy) -> Admission:
        role = StormRole(inc["storm_role"])
        if role is StormRole.WAITING and Severity(inc["severity"]) in policy.channels_for:
            await conn.execute("UPDATE incidents SET storm_role = 'digest' WHERE id = $1", inc["id"])
            await self._bump(conn, inc["storm_id"])
            return Admission(StormRole.DIGEST, inc["storm_id"])
        return Admission(role, inc["storm_id"])

    async def _decide(
        self, conn: Any, inc: Record, team: TeamRef, policy: StormPolicy, now: datetime
    ) -> Admission:
        created: datetime = inc["created_at"]
        window = timedelta(seconds=policy.window_seconds)
        storm = await conn.fetchrow("SELECT * FROM storms WHERE team = $1 AND ended_at IS NULL", team.name)
        if storm is not None and created >= storm["started_at"] - window:
            # A running storm takes every new incident (see _role_in_running for the ones that
            # opened before it started).
            role = await self._role_in_running(conn, inc, storm, team, policy)
            await conn.execute(
                "UPDATE storms SET last_opened_at = greatest(last_opened_at, $2), version = version + 1"
                " WHERE id = $1",
                storm["id"],
                created,
            )
            return await self._set_role(conn, inc["id"], role, storm["id"], now)
        opened = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE coalesce(team, $2) = $1 AND source <> 'human'"
            " AND created_at > $3 AND (created_at, id) <= ($4, $5)",
            team.name,
            team.default,
            created - window,
            created,
            inc["id"],
        )
        # Publishing order is not opening order, and an opening may commit after later ones
        # were decided: the storm starts with the incident that crossed the threshold
        # (whichever is published first), or with any once `incidents` already have their own.
        own = await self._own_since(conn, team, created - window)
        if storm is not None or (opened <= policy.incidents and own < policy.incidents):
            return await self._set_role(conn, inc["id"], StormRole.OWN, None, now)
        first = await conn.fetchrow(
            "SELECT id, created_at FROM incidents WHERE coalesce(team, $2) = $1 AND source <> 'human'"
            " AND created_at > $3 AND (created_at, id) <= ($4, $5) ORDER BY created_at, id OFFSET $6 LIMIT 1",
            team.name,
            team.default,
            created - window,
            created,
            inc["id"],
            policy.incidents,
        )
        started: datetime = first["created_at"] if first is not None else created
        storm_id = await conn.fetchval(
            "INSERT INTO storms (team, started_at, last_opened_at, window_seconds) VALUES ($1, $2, $3, $4)"
            " RETURNING id",
            team.name,
            started,
            created,
            policy.window_seconds,
        )
        # The incidents that made the storm belong to it (counted in the digest), and so do
        # those already decided although opened after this one.
        await conn.execute(
            "UPDATE incidents SET storm_id = $4 WHERE coalesce(team, $2) = $1 AND source <> 'human'"
            " AND created_at > $3 AND open_marker AND storm_id IS NULL",
            team.name,
            team.default,
            created - window,
            storm_id,
        )
        # Their roles are decided now, not when each is published, up to `incidents` in all:
        # an incident opened before the storm but committed after it was counted (another
        # replica's) then joins the storm instead of making a sixth notification.
        await conn.execute(
            "UPDATE incidents SET storm_role = 'own' WHERE id IN (SELECT id FROM incidents"
            " WHERE coalesce(team, $2) = $1 AND source <> 'human' AND created_at > $3"
            " AND (created_at, id) < ($4, $5) AND storm_role IS NULL ORDER BY created_at, id LIMIT $6)",
            team.name,
            team.default,
            created - window,
            started,
            first["id"] if first is not None else inc["id"],
            max(0, policy.incidents - own),
        )
        role = role_in_storm(Severity(inc["severity"]), policy.channels_for)
        admission = await self._set_role(conn, inc["id"], role, storm_id, now)
        return Admission(admission.role, storm_id, started=True)

    @staticmethod
    async def _role_in_running(
        conn: Any, inc: Record, storm: Record, team: TeamRef, policy: StormPolicy
    ) -> StormRole:
        """A running storm takes every new incident. One opened before it started keeps its own
        notification only while fewer than `incidents` did: it may be one that made the storm,
        or one whose opening committed late, after the storm had already been counted."""
        in_storm = role_in_storm(Severity(inc["severity"]), policy.channels_for)
        if inc["created_at"] >= storm["started_at"]:
            return in_storm
        since = storm["started_at"] - timedelta(seconds=storm["window_seconds"])
        own = await StormStore._own_since(conn, team, since)
        return StormRole.OWN if own < policy.incidents else in_storm

    @staticmethod
    async def _own_since(conn: Any, team: TeamRef, since: datetime) -> int:
        """How many of the team's alert-born incidents opened after `since` were given their own
        notification (a replica may have decided one opened later than the storm's start
        before the storm was counted)."""
        found: int = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE coalesce(team, $2) = $1 AND source <> 'human'"
            " AND storm_role = 'own' AND created_at > $3",
            team.name,
            team.default,
            since,
        )
        return found

    async def _set_role(
        self, conn: Any, incident_id: int, role: StormRole, storm_id: int | None, now: datetime
    ) -> Admission:
        await conn.execute(
            "UPDATE incidents SET storm_role = $2, storm_id = coalesce($3, storm_id) WHERE id = $1",
            incident_id,
            role.value,
            storm_id,
        )
        if role is not StormRole.OWN:
            text = "Opened during an incident storm of its team: announced in the storm digest."
            if role is StormRole.WAITING:
                text += " Its channel waits until someone opens it there or the storm ends."
            await IntakeTx(conn).add_event(
                incident_id, "storm_joined", text, at=now, data={"storm_id": storm_id, "role": role.value}
            )
        return Admission(role, storm_id)

    @staticmethod
    async def _bump(conn: Any, storm_id: int | None) -> None:
        if storm_id is not None:
            await conn.execute("UPDATE storms SET version = version + 1 WHERE id = $1", storm_id)

    async def bump(self, storm_id: int) -> None:
        await self._bump(self.pool, storm_id)

    # --- the digest -----------------------------------------------------------------------

    async def load(self, storm_id: int) -> tuple[StormRow, list[StormMember]] | None:
        row = await self.pool.fetchrow("SELECT * FROM storms WHERE id = $1", storm_id)
        if row is None:
            return None
        members = await self.pool.fetch(
            "SELECT id, severity, title, service, status, coalesce(storm_role, 'own') AS storm_role,"
            " channel_id, created_at FROM incidents WHERE storm_id = $1",
            storm_id,
        )
        return _row(row), [_member(m) for m in members]

    async def by_digest(self, channel_id: str, ts: str) -> int | None:
        found: int | None = await self.pool.fetchval(
            "SELECT id FROM storms WHERE digest_channel_id = $1 AND digest_ts = $2", channel_id, ts
        )
        return found

    async def set_digest(self, storm_id: int, channel_id: str, ts: str) -> None:
        await self.pool.execute(
            "UPDATE storms SET digest_channel_id = $2, digest_ts = $3 WHERE id = $1", storm_id, channel_id, ts
        )

    async def set_end_ts(self, storm_id: int, ts: str) -> None:
        await self.pool.execute("UPDATE storms SET end_ts = $2 WHERE id = $1", storm_id, ts)

    async def mark_published(self, storm_id: int, version: int, now: datetime) -> None:
        await self.pool.execute(
            "UPDATE storms SET published_version = greatest(published_version, $2), published_at = $3"
            " WHERE id = $1",
            storm_id,
            version,
            now,
        )

    async def unpublished(self) -> list[int]:
        rows = await self.pool.fetch("SELECT id FROM storms WHERE version > published_version ORDER BY id")
        return [r["id"] for r in rows]

    async def running(self) -> list[tuple[int, str]]:
        rows = await self.pool.fetch("SELECT id, team FROM storms WHERE ended_at IS NULL")
        return [(r["id"], r["team"]) for r in rows]

    # --- the end, and waiting incidents -----------------------------------------------------

    async def end_if_quiet(self, storm_id: int, team: TeamRef, now: datetime) -> list[int] | None:
        """End the storm when its team had no new incident for a whole window: its waiting
        incidents stop waiting (returned worst first, for their channels to open in that
        order). None while the storm goes on."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('storm:' || $1))", team.name)
            storm = await conn.fetchrow(
                "SELECT * FROM storms WHERE id = $1 AND ended_at IS NULL FOR UPDATE", storm_id
            )
            if storm is None:
                return None
            newest = await conn.fetchval(
                "SELECT max(created_at) FROM incidents WHERE coalesce(team, $2) = $1 AND source <> 'human'",
                team.name,
                team.default,
            )
            last = max(storm["last_opened_at"], newest or storm["last_opened_at"])
            if now < last + timedelta(seconds=storm["window_seconds"]):
                return None
            await conn.execute(
                "UPDATE storms SET ended_at = $2, version = version + 1 WHERE id = $1", storm_id, now
            )
            released = await conn.fetch(
                "UPDATE incidents SET storm_role = 'digest', version = version + 1"
                " WHERE storm_id = $1 AND storm_role = 'waiting' RETURNING id, severity, created_at",
                storm_id,
            )
            tx = IntakeTx(conn)
            for r in released:
                await tx.add_event(
                    r["id"],
                    "storm_ended",
                    "The incident storm ended: this incident's channel opens now.",
                    at=now,
                    data={"storm_id": storm_id},
                )
            ordered = sorted(released, key=lambda r: (Severity(r["severity"]).rank, r["created_at"], r["id"]))
            return [r["id"] for r in ordered]

    async def open_waiting(self, storm_id: int, incident_id: int, user: str, now: datetime) -> bool:
        """Let a waiting incident of this storm have its channel now; False when it is not
        waiting any more (a second click, another replica, the storm's end)."""
        async with self.pool.acquire() as conn, conn.transaction():
            changed = await conn.fetchval(
                "UPDATE incidents SET storm_role = 'digest', version = version + 1"
                " WHERE id = $1 AND storm_id = $2 AND storm_role = 'waiting' RETURNING id",
                incident_id,
                storm_id,
            )
            if changed is None:
                return False
            await self._bump(conn, storm_id)
            await IntakeTx(conn).add_event(
                incident_id,
                "storm_channel_opened",
                f"{mention(user)} opened this incident's channel from the storm digest.",
                at=now,
                actor=user,
                data={"storm_id": storm_id},
            )
            return True

    async def member(self, storm_id: int, incident_id: int) -> bool:
        found = await self.pool.fetchval(
            "SELECT 1 FROM incidents WHERE id = $1 AND storm_id = $2", incident_id, storm_id
        )
        return found is not None
