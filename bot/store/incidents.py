"""Incidents in PostgreSQL (asyncpg), the source of truth: the intake transaction, views and
publishing state. SQL lives beside the code that uses it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bot.core.incident import (
    Alert,
    AlertStatus,
    Incident,
    IncidentSource,
    IncidentStatus,
    IncidentView,
    Role,
    Severity,
    TimelineEvent,
)

Record = Any  # asyncpg ships no type information


@dataclass(frozen=True, slots=True)
class PublishState:
    """Where an incident's Slack messages are, and which version of it Slack shows."""

    channel_id: str | None
    channel_name: str | None
    channel_claimed_by: str | None
    channel_claimed_at: datetime | None
    channel_topic: str | None
    card_ts: str | None
    notification_channel_id: str | None
    notification_ts: str | None
    version: int
    published_version: int


@dataclass(frozen=True, slots=True)
class ButtonToken:
    """What a button's opaque token stands for (bot.store.migrations 0006)."""

    token: str
    kind: str
    incident_id: int
    user_id: str
    data: dict[str, Any]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AlertChange:
    alert: Alert
    previous: AlertStatus | None  # None: first time this occurrence was seen


def _incident(row: Record) -> Incident:
    return Incident(
        id=row["id"],
        group_key=row["group_key"],
        title=row["title"],
        severity=Severity(row["severity"]),
        status=IncidentStatus(row["status"]),
        source=IncidentSource(row["source"]),
        created_at=row["created_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        commander=row["commander"],
        channel_id=row["channel_id"],
        channel_name=row["channel_name"],
        last_status_update=row["last_status_update"],
        status_updated_at=row["status_updated_at"],
        resolution_summary=row["resolution_summary"],
        pagerduty_incident_id=row["pagerduty_incident_id"],
        pagerduty_url=row["pagerduty_url"],
        archived_at=row["archived_at"],
        version=row["version"],
        team=row["team"],
        service=row["service"],
    )


def _alert(row: Record) -> Alert:
    return Alert(
        fingerprint=row["fingerprint"],
        status=AlertStatus(row["status"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        labels=row["labels"],
        annotations=row["annotations"],
        generator_url=row["generator_url"],
    )


class IntakeTx:
    """Statements of one intake transaction; the flows (intake, PagerDuty, declared incidents)
    decide which."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock_group(self, group_key: str) -> None:
        # Serialises work on one alert group across workers and replicas until commit.
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('group:' || $1))", group_key)

    async def open_incident_for(self, group_key: str) -> Incident | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM incidents WHERE group_key = $1 AND open_marker", group_key
        )
        return _incident(row) if row else None

    async def create_incident(
        self,
        *,
        group_key: str,
        title: str,
        severity: Severity,
        source: IncidentSource,
        now: datetime,
        external_url: str | None = None,
        commander: str | None = None,
        team: str | None = None,
        service: str | None = None,
    ) -> tuple[Incident, bool]:
        """Open an incident for the key, or return the one already open: (incident, created).

        The unique (group_key, open_marker) index makes a concurrent second insert wait for
        the first and then do nothing, so two replicas can never open two incidents.
        """
        row = await self.conn.fetchrow(
            """
            INSERT INTO incidents (group_key, status, severity, title, source, created_at,
                                   external_url, commander, team, service)
            VALUES ($1, 'triggered', $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (group_key, open_marker) DO NOTHING
            RETURNING *
            """,
            group_key,
            severity.value,
            title,
            source.value,
            now,
            external_url,
            commander,
            team,
            service,
        )
        if row is not None:
            return _incident(row), True
        existing = await self.open_incident_for(group_key)
        assert existing is not None, "conflict without an open incident"
        return existing, False

    async def upsert_alerts(
        self, incident_id: int | None, alerts: Sequence[Alert], delivery_id: int, now: datetime
    ) -> list[AlertChange]:
        """Store each alert occurrence's state; report those whose status changed."""
        if not alerts:
            return []
        keys = [(a.fingerprint, a.starts_at) for a in alerts]
        existing = {
            (r["fingerprint"], r["starts_at"]): r
            for r in await self.conn.fetch(
                """
                SELECT fingerprint, starts_at, status, last_delivery_id, incident_id FROM alerts
                WHERE (fingerprint, starts_at) IN (SELECT * FROM unnest($1::text[], $2::timestamptz[]))
                FOR UPDATE
                """,
                [k[0] for k in keys],
                [k[1] for k in keys],
            )
        }
        changes: list[AlertChange] = []
        rows = []
        for alert in alerts:
            old = existing.get((alert.fingerprint, alert.starts_at))
            if old is not None and old["last_delivery_id"] > delivery_id:
                continue  # an older snapshot arriving late
            previous = AlertStatus(old["status"]) if old is not None else None
            moved = old is not None and old["incident_id"] != incident_id
            if previous is not alert.status or moved:
                changes.append(AlertChange(alert, previous))
            rows.append(
                (
                    incident_id,
                    alert.fingerprint,
                    alert.starts_at,
                    alert.ends_at,
                    alert.status.value,
                    alert.name,
                    alert.labels,
                    alert.annotations,
                    alert.generator_url,
                    now,
                    delivery_id,
                )
            )
        await self.conn.executemany(
            """
            INSERT INTO alerts (incident_id, fingerprint, starts_at, ends_at, status, alertname,
                                labels, annotations, generator_url, last_seen, first_seen,
                                last_delivery_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)
            ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
                incident_id = COALESCE(EXCLUDED.incident_id, alerts.incident_id),
                ends_at = EXCLUDED.ends_at, status = EXCLUDED.status,
                labels = EXCLUDED.labels, annotations = EXCLUDED.annotations,
                generator_url = EXCLUDED.generator_url, last_seen = EXCLUDED.last_seen,
                last_delivery_id = EXCLUDED.last_delivery_id
            """,
            rows,
        )
        return changes

    async def incident_alert_counts(self, incident_id: int) -> tuple[int, int]:
        row = await self.conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'firing') AS firing, count(*) AS total"
            " FROM alerts WHERE incident_id = $1",
            incident_id,
        )
        assert row is not None
        return int(row["firing"]), int(row["total"])

    async def raise_severity(self, incident_id: int, severity: Severity) -> bool:
        """Alerts may only make an incident more severe; humans lower it with /incident sev."""
        status = await self.conn.execute(
            "UPDATE incidents SET severity = $2 WHERE id = $1 AND substr(severity, 2)::int > $3",
            incident_id,
            severity.value,
            severity.rank,
        )
        return bool(status.endswith("1"))

    async def add_event(
        self,
        incident_id: int,
        kind: str,
        text: str,
        *,
        at: datetime,
        actor: str | None = None,
        data: dict[str, Any] | None = None,
        announce: bool = False,
        key: str | None = None,
    ) -> int | None:
        """Add a timeline event; returns its id. With an idempotency `key` (a timer's or an
        enrichment post's), an event already stored under that key is kept and None returned:
        work repeated after its holder died adds nothing."""
        event_id: int | None = await self.conn.fetchval(
            "INSERT INTO timeline_events (incident_id, at, kind, actor, text, data, announce, idempotency_key)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            incident_id,
            at,
            kind,
            actor,
            text,
            data or {},
            announce,
            key,
        )
        return event_id

    async def schedule_timer(
        self, incident_id: int, kind: str, due_at: datetime, data: dict[str, Any]
    ) -> None:
        await self.conn.execute(
            "INSERT INTO timers (incident_id, kind, due_at, data) VALUES ($1, $2, $3, $4)",
            incident_id,
            kind,
            due_at,
            data,
        )

    async def bump_version(self, incident_id: int) -> None:
        await self.conn.execute("UPDATE incidents SET version = version + 1 WHERE id = $1", incident_id)

    async def link_pagerduty(
        self,
        incident_id: int,
        *,
        pagerduty_id: str,
        url: str | None,
        service: str | None,
        escalation_policy: str | None,
    ) -> None:
        await self.conn.execute(
            "UPDATE incidents SET pagerduty_incident_id = $2, pagerduty_url = $3, pagerduty_service = $4,"
            " pagerduty_escalation_policy = $5 WHERE id = $1",
            incident_id,
            pagerduty_id,
            url,
            service,
            escalation_policy,
        )

    async def add_role(self, incident_id: int, role: str, user_id: str, now: datetime) -> None:
        """A role given when the incident is created (the declarer becomes its commander)."""
        await self.conn.execute(
            "INSERT INTO incident_roles (incident_id, role, user_id, assigned_at, assigned_by)"
            " VALUES ($1, $2, $3, $4, $3)",
            incident_id,
            role,
            user_id,
            now,
        )


class PostgresStore:
    """Queries outside the intake transaction: views, publishing state, lifecycle."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[IntakeTx]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield IntakeTx(conn)

    # --- reading --------------------------------------------------------------------------

    async def get_incident(self, incident_id: int) -> Incident | None:
        row = await self.pool.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
        return _incident(row) if row else None

    async def incident_by_channel(self, channel_id: str) -> Incident | None:
        row = await self.pool.fetchrow("SELECT * FROM incidents WHERE channel_id = $1", channel_id)
        return _incident(row) if row else None

    async def incident_by_message(self, channel_id: str, ts: str) -> Incident | None:
        """The incident whose card or notification is the message `ts` in `channel_id`."""
        row = await self.pool.fetchrow(
            "SELECT * FROM incidents WHERE (channel_id = $1 AND card_ts = $2)"
            " OR (notification_channel_id = $1 AND notification_ts = $2) ORDER BY id LIMIT 1",
            channel_id,
            ts,
        )
        return _incident(row) if row else None

    async def button_message_pending(self, channel_id: str, ts: str, since: datetime) -> bool:
        """Whether a card or notification in `channel_id` is being posted (begun since `since`,
        its ts not stored yet, or stored in the ledger but not yet on its incident)."""
        found = await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM bot_messages WHERE channel_id = $1"
            " AND (key LIKE 'card:%' OR key LIKE 'notification:%')"
            " AND (ts IS NULL OR ts = $2) AND first_attempt_at >= $3)",
            channel_id,
            ts,
            since,
        )
        return bool(found)

    async def incident_by_channel_name(self, name: str) -> Incident | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM incidents WHERE channel_name = $1 ORDER BY id DESC LIMIT 1", name
        )
        return _incident(row) if row else None

    async def load_view(self, incident_id: int) -> tuple[IncidentView, PublishState] | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
            if row is None:
                return None
            alerts = await conn.fetch(
                "SELECT * FROM alerts WHERE incident_id = $1 ORDER BY alertname, starts_at, fingerprint",
                incident_id,
            )
            roles = await conn.fetch(
                "SELECT role, user_id FROM incident_roles WHERE incident_id = $1 ORDER BY role", incident_id
            )
        view = IncidentView(
            incident=_incident(row),
            alerts=tuple(_alert(a) for a in alerts),
            external_url=row["external_url"],
            roles=tuple(
                (Role(r["role"]), r["user_id"]) for r in roles if r["role"] in Role.__members__.values()
            ),
        )
        state = PublishState(
            channel_id=row["channel_id"],
            channel_name=row["channel_name"],
            channel_claimed_by=row["channel_claimed_by"],
            channel_claimed_at=row["channel_claimed_at"],
            channel_topic=row["channel_topic"],
            card_ts=row["card_ts"],
            notification_channel_id=row["notification_channel_id"],
            notification_ts=row["notification_ts"],
            version=row["version"],
            published_version=row["published_version"],
        )
        return view, state

    async def list_open(
        self, limit: int = 50, *, teams: Sequence[str | None] | None = None
    ) -> list[Incident]:
        """Open incidents, most severe first; only those of `teams` when given (None in it: the
        incidents without a team, which belong to the catalog's default team)."""
        if teams is None:
            rows = await self.pool.fetch(
                "SELECT * FROM incidents WHERE open_marker ORDER BY substr(severity, 2)::int, id LIMIT $1",
                limit,
            )
            return [_incident(r) for r in rows]
        rows = await self.pool.fetch(
            "SELECT * FROM incidents WHERE open_marker AND (team = ANY($2::text[]) OR (team IS NULL AND $3))"
            " ORDER BY substr(severity, 2)::int, id LIMIT $1",
            limit,
            [t for t in teams if t is not None],
            None in teams,
        )
        return [_incident(r) for r in rows]

    async def paged_oncall(self, incident_id: int) -> list[str]:
        """The Slack users on call when the incident's people were brought in (PagerDuty's
        on-call, as recorded in its `people_invited` event); empty when none was found."""
        data = await self.pool.fetchval(
            "SELECT data FROM timeline_events WHERE incident_id = $1 AND kind = 'people_invited'"
            " ORDER BY id DESC LIMIT 1",
            incident_id,
        )
        found = data.get("oncall") if isinstance(data, dict) else None
        return [str(u) for u in found] if isinstance(found, list) else []

    async def timeline(self, incident_id: int) -> list[TimelineEvent]:
        rows = await self.pool.fetch(
            "SELECT at, kind, text, actor, data FROM timeline_events WHERE incident_id = $1 ORDER BY at, id",
            incident_id,
        )
        return [TimelineEvent(r["at"], r["kind"], r["text"], r["actor"], r["data"]) for r in rows]

    # --- publishing state -------------------------------------------------------------------

    async def unpublished_incidents(self, limit: int = 100) -> list[int]:
        rows = await self.pool.fetch(
            "SELECT id FROM incidents WHERE version > published_version ORDER BY id LIMIT $1", limit
        )
        return [r["id"] for r in rows]

    async def claim_channel_creation(
        self, incident_id: int, owner: str, name: str, now: datetime, stale_after_s: float
    ) -> str | None:
        """Compare-and-set: one publisher creates the channel. Returns the name to create
        (the name claimed earlier by a publisher that died is kept, so it can be adopted)."""
        row = await self.pool.fetchrow(
            """
            UPDATE incidents SET channel_claimed_by = $2, channel_claimed_at = $4,
                                 channel_name = COALESCE(channel_name, $3)
            WHERE id = $1 AND channel_id IS NULL
              AND (channel_claimed_by IS NULL OR channel_claimed_by = $2
                   OR channel_claimed_at < $4::timestamptz - make_interval(secs => $5::float8))
            RETURNING channel_name
            """,
            incident_id,
            owner,
            name,
            now,
            stale_after_s,
        )
        return row["channel_name"] if row else None

    async def set_channel(self, incident_id: int, channel_id: str, name: str) -> None:
        await self.pool.execute(
            "UPDATE incidents SET channel_id = $2, channel_name = $3 WHERE id = $1 AND channel_id IS NULL",
            incident_id,
            channel_id,
            name,
        )

    async def set_topic(self, incident_id: int, topic: str) -> None:
        await self.pool.execute("UPDATE incidents SET channel_topic = $2 WHERE id = $1", incident_id, topic)

    async def set_card_ts(self, incident_id: int, ts: str) -> None:
        await self.pool.execute("UPDATE incidents SET card_ts = $2 WHERE id = $1", incident_id, ts)

    async def set_notification(self, incident_id: int, channel_id: str, ts: str) -> None:
        await self.pool.execute(
            "UPDATE incidents SET notification_channel_id = $2, notification_ts = $3 WHERE id = $1",
            incident_id,
            channel_id,
            ts,
        )

    async def mark_published(self, incident_id: int, version: int, now: datetime) -> None:
        await self.pool.execute(
            "UPDATE incidents SET published_version = GREATEST(published_version, $2), published_at = $3"
            " WHERE id = $1",
            incident_id,
            version,
            now,
        )

    async def unannounced_events(self, incident_id: int) -> list[tuple[int, TimelineEvent]]:
        rows = await self.pool.fetch(
            "SELECT id, at, kind, text, actor, data FROM timeline_events"
            " WHERE incident_id = $1 AND announce AND announced_ts IS NULL ORDER BY id",
            incident_id,
        )
        return [(r["id"], TimelineEvent(r["at"], r["kind"], r["text"], r["actor"], r["data"])) for r in rows]

    async def mark_announced(self, event_id: int, ts: str) -> None:
        await self.pool.execute("UPDATE timeline_events SET announced_ts = $2 WHERE id = $1", event_id, ts)

    # --- lifecycle -----------------------------------------------------------------------------

    async def acknowledge(self, incident_id: int, user: str, now: datetime) -> bool:
        """Compare-and-set triggered → acknowledged; False when already acknowledged/resolved."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE incidents SET status = 'acknowledged', acknowledged_at = $3, acknowledged_by = $2,"
                " version = version + 1 WHERE id = $1 AND status = 'triggered' RETURNING id",
                incident_id,
                user,
                now,
            )
            if row is None:
                return False
            await IntakeTx(conn).add_event(
                incident_id, "acknowledged", f"Acknowledged by <@{user}>", at=now, actor=user
            )
            return True

    # --- button tokens --------------------------------------------------------------------------

    async def add_button_token(self, token: ButtonToken, now: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO button_tokens (token, kind, incident_id, user_id, data, created_at, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            token.token,
            token.kind,
            token.incident_id,
            token.user_id,
            token.data,
            now,
            token.expires_at,
        )

    async def button_token(self, token: str, kind: str, now: datetime) -> ButtonToken | None:
        """The token when it is of `kind`, unused and not expired."""
        row = await self.pool.fetchrow(
            "SELECT * FROM button_tokens WHERE token = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3",
            token,
            kind,
            now,
        )
        if row is None:
            return None
        return ButtonToken(
            row["token"], row["kind"], row["incident_id"], row["user_id"], row["data"], row["expires_at"]
        )

    async def use_button_token(self, token: str, now: datetime) -> bool:
        """Compare-and-set: True for the one click that uses the token."""
        row = await self.pool.fetchval(
            "UPDATE button_tokens SET used_at = $2 WHERE token = $1 AND used_at IS NULL AND expires_at > $2"
            " RETURNING token",
            token,
            now,
        )
        return row is not None
