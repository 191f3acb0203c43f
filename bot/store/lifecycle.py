"""Lifecycle state changes: each is one transaction that updates the incident, writes its
timeline event and bumps the version the publisher compares against."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from bot.core.blockkit import escape, inline
from bot.core.incident import Incident, Role, Severity
from bot.store.incidents import IntakeTx, Record, _incident

# A Slack user id: U… (W… on Enterprise Grid); the sandbox's ids (U0ALICE) have underscores.
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{1,30}")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: a Slack user, or someone outside Slack (a PagerDuty user, by display
    name). The `*_by` columns and the timeline's `actor` hold Slack user ids only; an outside
    name is stored apart and only ever shown escaped, never inside `<@…>`."""

    slack_id: str | None
    external: str | None

    @classmethod
    def of(cls, who: str) -> Actor:
        return cls(who, None) if SLACK_USER_ID.fullmatch(who) else cls(None, who)

    @property
    def mrkdwn(self) -> str:
        return f"<@{self.slack_id}>" if self.slack_id else escape(self.external or "someone")

    @property
    def data(self) -> dict[str, Any]:
        """What a timeline event records about an outside actor."""
        return {"external_actor": self.external} if self.external else {}


@dataclass(frozen=True, slots=True)
class Timer:
    id: int
    incident_id: int
    kind: str
    due_at: datetime
    data: dict[str, Any]
    claim: int = 0  # which claim of the timer this is (compare-and-set on finish)


@dataclass(frozen=True, slots=True)
class SilenceRecord:
    id: int
    incident_id: int
    silence_id: str
    matchers: list[dict[str, Any]]
    ends_at: datetime
    expired_at: datetime | None


@dataclass(frozen=True, slots=True)
class TimerSpec:
    """A timer to schedule."""

    kind: str
    due_at: datetime
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TimerEvent:
    """What a fire writes on the incident's timeline (announced: posted into the channel)."""

    kind: str
    text: str
    announce: bool = True


def _timer(row: Record) -> Timer:
    return Timer(row["id"], row["incident_id"], row["kind"], row["due_at"], row["data"], row["claim"])


async def _schedule(conn: asyncpg.Connection, incident_id: int, spec: TimerSpec, *, replace: bool) -> None:
    if replace:
        await conn.execute(
            "UPDATE timers SET done_at = now(), outcome = 'replaced'"
            " WHERE incident_id = $1 AND kind = $2 AND done_at IS NULL",
            incident_id,
            spec.kind,
        )
    await conn.execute(
        "INSERT INTO timers (incident_id, kind, due_at, data) VALUES ($1, $2, $3, $4)",
        incident_id,
        spec.kind,
        spec.due_at,
        spec.data,
    )


class LifecycleStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def _change(
        self,
        sql: str,
        args: tuple[Any, ...],
        *,
        event: tuple[str, str],
        actor: str | None,
        now: datetime,
        announce: bool = False,
        data: dict[str, Any] | None = None,
    ) -> Incident | None:
        """Run one guarded UPDATE ... RETURNING *; on success add the event and bump version."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql, *args)
            if row is None:
                return None
            incident = _incident(row)
            tx = IntakeTx(conn)
            await tx.add_event(
                incident.id, event[0], event[1], at=now, actor=actor, announce=announce, data=data
            )
            await tx.bump_version(incident.id)
            return incident

    async def set_severity(
        self, incident_id: int, severity: Severity, actor: str, now: datetime
    ) -> Incident | None:
        who = Actor.of(actor)
        return await self._change(
            "UPDATE incidents SET severity = $2 WHERE id = $1 AND severity <> $2 RETURNING *",
            (incident_id, severity.value),
            event=("severity_changed", f"{who.mrkdwn} set severity to {severity}"),
            actor=who.slack_id,
            now=now,
            announce=True,
            data=who.data,
        )

    async def set_team(
        self, incident_id: int, team: str, service: str | None, text: str, actor: str, now: datetime
    ) -> Incident | None:
        """Move the incident to another team of the catalog (None: it is there already);
        `text` is the timeline's (and the channel's) account of it."""
        return await self._change(
            "UPDATE incidents SET team = $2, service = $3 WHERE id = $1 AND team IS DISTINCT FROM $2"
            " RETURNING *",
            (incident_id, team, service),
            event=("team_changed", text),
            actor=actor,
            now=now,
            announce=True,
            data={"team": team},
        )

    async def post_status(self, incident_id: int, text: str, actor: str, now: datetime) -> Incident | None:
        return await self._change(
            "UPDATE incidents SET last_status_update = $2, status_updated_at = $3 WHERE id = $1 RETURNING *",
            (incident_id, text, now),
            event=("status_update", inline(text)),
            actor=actor,
            now=now,
        )

    async def assign(
        self, incident_id: int, role: Role, user: str, actor: str, now: datetime
    ) -> Incident | None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO incident_roles (incident_id, role, user_id, assigned_at, assigned_by)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (incident_id, role) DO UPDATE SET"
                " user_id = EXCLUDED.user_id, assigned_at = EXCLUDED.assigned_at, assigned_by = EXCLUDED.assigned_by",
                incident_id,
                role.value,
                user,
                now,
                actor,
            )
            if role is Role.COMMANDER:
                await conn.execute("UPDATE incidents SET commander = $2 WHERE id = $1", incident_id, user)
            tx = IntakeTx(conn)
            await tx.add_event(
                incident_id,
                "role_assigned",
                f"<@{actor}> made <@{user}> {role.value}",
                at=now,
                actor=actor,
                announce=True,
                data={"role": role.value, "user": user},
            )
            await tx.bump_version(incident_id)
            row = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
            return _incident(row) if row else None

    # A status change made here (resolve, reopen; not one applied from PagerDuty) moves the
    # incident's PagerDuty clock to its own time in the same statement: every PagerDuty change that
    # happened before it, such as the echo of the bot's previous change still on its way, is then
    # older and never undoes it (a resolve's echo arriving after a reopen). No webhook can slip in
    # between the change and the clock.
    async def resolve(
        self, incident_id: int, actor: str, summary: str | None, now: datetime
    ) -> Incident | None:
        who = Actor.of(actor)
        text = f"Resolved by {who.mrkdwn}" + (f": {inline(summary)}" if summary else "")
        return await self._change(
            "UPDATE incidents SET status = 'resolved', open_marker = NULL, resolved_at = $2, resolved_by = $3,"
            " resolved_by_external = $5, resolution_summary = $4,"
            # Ours (no external actor): supersedes PagerDuty changes before it (see below).
            " pagerduty_event_at = CASE WHEN $5::text IS NULL THEN greatest(pagerduty_event_at, $2)"
            " ELSE pagerduty_event_at END,"
            " pagerduty_event_id = CASE WHEN $5::text IS NULL THEN '' ELSE pagerduty_event_id END"
            " WHERE id = $1 AND open_marker RETURNING *",
            (incident_id, now, who.slack_id, summary, who.external),
            event=("resolved", text),
            actor=who.slack_id,
            now=now,
            data=who.data,
        )

    async def reopen(self, incident_id: int, actor: str, now: datetime) -> Incident | None:
        """Resolved → triggered; raises UniqueViolationError when the group has a newer
        open incident (the caller tells the user which)."""
        who = Actor.of(actor)
        return await self._change(
            "UPDATE incidents SET status = 'triggered', open_marker = TRUE, resolved_at = NULL,"
            " resolved_by = NULL, resolved_by_external = NULL, acknowledged_at = NULL,"
            " acknowledged_by = NULL, acknowledged_by_external = NULL,"
            # An archived channel cannot take messages (bots cannot unarchive): open a new one.
            " channel_id = CASE WHEN archived_at IS NULL THEN channel_id END,"
            " channel_name = CASE WHEN archived_at IS NULL THEN channel_name END,"
            " card_ts = CASE WHEN archived_at IS NULL THEN card_ts END,"
            " channel_topic = CASE WHEN archived_at IS NULL THEN channel_topic END,"
            " channel_claimed_by = CASE WHEN archived_at IS NULL THEN channel_claimed_by END,"
            " archived_at = NULL,"
            " pagerduty_event_at = CASE WHEN $3::text IS NULL THEN greatest(pagerduty_event_at, $2)"
            " ELSE pagerduty_event_at END,"
            " pagerduty_event_id = CASE WHEN $3::text IS NULL THEN '' ELSE pagerduty_event_id END"
            " WHERE id = $1 AND open_marker IS NULL RETURNING *",
            (incident_id, now, who.external),
            event=("reopened", f"Reopened by {who.mrkdwn}"),
            actor=who.slack_id,
            now=now,
            announce=True,
            data=who.data,
        )

    async def acknowledge_external(self, incident_id: int, actor: str, now: datetime) -> bool:
        """Triggered → acknowledged by someone outside Slack (a PagerDuty user): the name goes to
        acknowledged_by_external, never to acknowledged_by. False when not triggered."""
        who = Actor(None, actor)
        changed = await self._change(
            "UPDATE incidents SET status = 'acknowledged', acknowledged_at = $2,"
            " acknowledged_by_external = $3 WHERE id = $1 AND status = 'triggered' RETURNING *",
            (incident_id, now, actor),
            event=("acknowledged", f"Acknowledged by {who.mrkdwn}"),
            actor=None,
            now=now,
            # Said in the channel: nobody there clicked anything, so nobody saw it happen.
            announce=True,
            data=who.data,
        )
        return changed is not None

    async def mark_archived(self, incident_id: int, now: datetime) -> None:
        await self.pool.execute("UPDATE incidents SET archived_at = $2 WHERE id = $1", incident_id, now)

    async def add_event(
        self,
        incident_id: int,
        kind: str,
        text: str,
        *,
        now: datetime,
        actor: str | None = None,
        data: dict[str, Any] | None = None,
        announce: bool = False,
        bump: bool = False,
        key: str | None = None,
    ) -> int | None:
        """Add a timeline event (None: one with the idempotency `key` is there already)."""
        async with self.pool.acquire() as conn, conn.transaction():
            tx = IntakeTx(conn)
            event_id = await tx.add_event(
                incident_id, kind, text, at=now, actor=actor, data=data, announce=announce, key=key
            )
            if event_id is not None and (bump or announce):
                await tx.bump_version(incident_id)
            return event_id

    async def has_event(self, key: str) -> bool:
        """Whether the timeline event with this idempotency key was written."""
        found: bool = await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM timeline_events WHERE idempotency_key = $1)", key
        )
        return found

    async def take_command(self, incident_id: int, user: str, now: datetime) -> bool:
        """Make `user` commander unless the incident has one (the first to acknowledge leads);
        compare-and-set, so two acks at once name one commander."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE incidents SET commander = $2 WHERE id = $1 AND commander IS NULL RETURNING id",
                incident_id,
                user,
            )
            if row is None:
                return False
            await conn.execute(
                "INSERT INTO incident_roles (incident_id, role, user_id, assigned_at, assigned_by)"
                " VALUES ($1, $2, $3, $4, $3) ON CONFLICT (incident_id, role) DO NOTHING",
                incident_id,
                Role.COMMANDER.value,
                user,
                now,
            )
            tx = IntakeTx(conn)
            await tx.add_event(
                incident_id,
                "commander_on_ack",
                f"<@{user}> is commander: first to acknowledge",
                at=now,
                actor=user,
                announce=True,
                data={"role": Role.COMMANDER.value, "user": user},
            )
            await tx.bump_version(incident_id)
            return True

    async def link_pagerduty(
        self,
        incident_id: int,
        pd_id: str,
        *,
        url: str | None,
        service: str | None,
        escalation_policy: str | None,
    ) -> bool:
        """Link a PagerDuty incident the bot opened itself; False when one is linked already
        (its own webhook, applied first, linked it)."""
        row = await self.pool.fetchval(
            "UPDATE incidents SET pagerduty_incident_id = $2, pagerduty_url = $3, pagerduty_service = $4,"
            " pagerduty_escalation_policy = $5, version = version + 1"
            " WHERE id = $1 AND pagerduty_incident_id IS NULL RETURNING id",
            incident_id,
            pd_id,
            url,
            service,
            escalation_policy,
        )
        return row is not None

    async def by_pagerduty(self, pd_id: str) -> Incident | None:
        row = await self.pool.fetchrow("SELECT * FROM incidents WHERE pagerduty_incident_id = $1", pd_id)
        return _incident(row) if row else None

    async def advance_pagerduty_clock(self, incident_id: int, occurred_at: datetime, event_id: str) -> bool:
        """Record a PagerDuty state change as applied; False unless it is strictly newer than the
        last one applied (same time: the greater event id wins), so neither an older change nor
        the same one again is applied over what is stored."""
        row = await self.pool.fetchval(
            "UPDATE incidents SET pagerduty_event_at = $2, pagerduty_event_id = $3 WHERE id = $1"
            " AND (pagerduty_event_at IS NULL OR pagerduty_event_at < $2"
            " OR (pagerduty_event_at = $2 AND pagerduty_event_id < $3)) RETURNING id",
            incident_id,
            occurred_at,
            event_id,
        )
        return row is not None

    async def escalation_policy(self, incident_id: int) -> str | None:
        value: str | None = await self.pool.fetchval(
            "SELECT pagerduty_escalation_policy FROM incidents WHERE id = $1", incident_id
        )
        return value

    async def roles(self, incident_id: int) -> dict[Role, str]:
        rows = await self.pool.fetch(
            "SELECT role, user_id FROM incident_roles WHERE incident_id = $1", incident_id
        )
        return {Role(r["role"]): r["user_id"] for r in rows}

    # --- timers -------------------------------------------------------------------------

    async def schedule(
        self,
        incident_id: int,
        kind: str,
        due_at: datetime,
        data: dict[str, Any] | None = None,
        *,
        replace: bool = False,
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await _schedule(conn, incident_id, TimerSpec(kind, due_at, data or {}), replace=replace)

    async def escalation_progress(self, incident_id: int) -> tuple[str | None, int]:
        """Where the incident's team escalation stands: when its latest run of levels counts
        from (as stored with its timers; None: no level timer yet) and the highest level of
        that run engaged (0: none)."""
        row = await self.pool.fetchrow(
            "SELECT data->>'since' AS since,"
            " coalesce(max((data->>'level')::int) FILTER (WHERE outcome = 'escalated'), 0) AS level"
            " FROM timers WHERE incident_id = $1 AND kind = 'escalation_level'"
            " GROUP BY data->>'since' ORDER BY max(id) DESC LIMIT 1",
            incident_id,
        )
        return (None, 0) if row is None else (row["since"], int(row["level"]))

    async def cancel_timers(self, incident_id: int, kinds: list[str] | None = None) -> None:
        if kinds is None:
            await self.pool.execute(
                "UPDATE timers SET done_at = now(), outcome = 'cancelled' WHERE incident_id = $1 AND done_at IS NULL",
                incident_id,
            )
        else:
            await self.pool.execute(
                "UPDATE timers SET done_at = now(), outcome = 'cancelled'"
                " WHERE incident_id = $1 AND done_at IS NULL AND kind = ANY($2::text[])",
                incident_id,
                kinds,
            )

    async def claim_due(self, owner: str, lease_s: float, now: datetime) -> Timer | None:
        """Claim the next due timer (compare-and-set with a lease): each fires on one replica at
        a time. Due times are the bot's clock; leases are Postgres's, shared by every replica,
        so a holder's death is noticed `lease_s` later whatever the replicas' clocks say."""
        row = await self.pool.fetchrow(
            """
            UPDATE timers SET claimed_by = $2, claimed_at = clock_timestamp(), claim = claim + 1
            WHERE id = (
                SELECT id FROM timers
                WHERE done_at IS NULL AND due_at <= $1
                  AND (claimed_at IS NULL
                       OR claimed_at < clock_timestamp() - make_interval(secs => $3::float8))
                ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING *
            """,
            now,
            owner,
            lease_s,
        )
        return _timer(row) if row else None

    async def renew_timer(self, timer: Timer, owner: str) -> bool:
        """Heartbeat of a running fire: False when the claim is no longer ours."""
        row = await self.pool.fetchval(
            "UPDATE timers SET claimed_at = clock_timestamp() WHERE id = $1 AND claimed_by = $2"
            " AND claim = $3 AND done_at IS NULL RETURNING id",
            timer.id,
            owner,
            timer.claim,
        )
        return row is not None

    async def finish_timer(
        self,
        timer: Timer,
        owner: str,
        outcome: str,
        now: datetime,
        *,
        event: TimerEvent | None = None,
        follow_up: TimerSpec | None = None,
    ) -> bool:
        """Finish a fire, compare-and-set on its claim: its timeline event (keyed `timer:<id>`)
        and its follow-up timer are written in the same transaction, so they happen once even
        when the timer fired again after its holder died. False when the claim was lost."""
        async with self.pool.acquire() as conn, conn.transaction():
            won = await conn.fetchval(
                "UPDATE timers SET done_at = $4, outcome = $5 WHERE id = $1 AND claimed_by = $2"
                " AND claim = $3 AND done_at IS NULL RETURNING id",
                timer.id,
                owner,
                timer.claim,
                now,
                outcome[:500],
            )
            if won is None:
                return False
            tx = IntakeTx(conn)
            if event is not None:
                added = await tx.add_event(
                    timer.incident_id,
                    event.kind,
                    event.text,
                    at=now,
                    announce=event.announce,
                    key=f"timer:{timer.id}",
                )
                if added is not None and event.announce:
                    await tx.bump_version(timer.incident_id)
            if follow_up is not None:
                await _schedule(conn, timer.incident_id, follow_up, replace=True)
            return True

    # --- silences -----------------------------------------------------------------------

    async def add_silence(
        self,
        incident_id: int,
        silence_id: str,
        matchers: list[dict[str, Any]],
        actor: str,
        now: datetime,
        ends_at: datetime,
    ) -> None:
        await self.pool.execute(
            "INSERT INTO silences (incident_id, silence_id, matchers, created_by, created_at, ends_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            incident_id,
            silence_id,
            matchers,
            actor,
            now,
            ends_at,
        )

    async def active_silences(self, incident_id: int, now: datetime) -> list[SilenceRecord]:
        rows = await self.pool.fetch(
            "SELECT * FROM silences WHERE incident_id = $1 AND expired_at IS NULL AND ends_at > $2 ORDER BY id",
            incident_id,
            now,
        )
        return [
            SilenceRecord(
                r["id"], r["incident_id"], r["silence_id"], r["matchers"], r["ends_at"], r["expired_at"]
            )
            for r in rows
        ]

    async def mark_silence_expired(self, record_id: int, now: datetime) -> None:
        await self.pool.execute("UPDATE silences SET expired_at = $2 WHERE id = $1", record_id, now)
