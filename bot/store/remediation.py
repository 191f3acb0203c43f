"""Remediation runs, approvals and the audit log in PostgreSQL (the SQL beside the code).

Every state change is one transaction that changes the run, appends to `audit_log` and writes
the incident timeline event, so none of the three can exist without the others. Changes that
the proposal message must show bump `version`; the message is re-rendered until
`shown_version` catches up.

`set_env` values may be secrets: the audit log records the variable names only, and a run's
own copy of the values (needed until it executes) is blanked once the run is final.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from bot.core.actions import ActionName, public_params
from bot.core.policy import approval_complete
from bot.core.runs import ActionRun, Approval, AuditEvent, NewRun, PreviewInfo, RunStatus
from bot.store.incidents import IntakeTx, Record

# Every read of a run carries its approvals, oldest first.
_APPROVALS = (
    "ARRAY(SELECT a.user_id FROM action_approvals a WHERE a.run_id = r.id ORDER BY a.at, a.user_id)"
    " AS approval_users,"
    " ARRAY(SELECT a.at FROM action_approvals a WHERE a.run_id = r.id ORDER BY a.at, a.user_id)"
    " AS approval_ats,"
    " ARRAY(SELECT a.roles FROM action_approvals a WHERE a.run_id = r.id ORDER BY a.at, a.user_id)"
    " AS approval_roles"
)
_SELECT = f"SELECT r.*, {_APPROVALS} FROM action_runs r"  # noqa: S608 - constant SQL


def _updated(update_sql: str) -> str:
    """Wrap `UPDATE action_runs ... RETURNING *` so the result carries the approvals too."""
    return f"WITH r AS ({update_sql}) SELECT r.*, {_APPROVALS} FROM r"  # noqa: S608 - constant SQL


def _run(row: Record) -> ActionRun:
    users = row["approval_users"] or []
    ats = row["approval_ats"] or []
    roles = [tuple(r for r in (text or "").split(",") if r) for text in row["approval_roles"] or []]
    return ActionRun(
        id=row["id"],
        token=row["token"],
        incident_id=row["incident_id"],
        action=ActionName(row["action"]),
        params=dict(row["params"] or {}),
        target=row["target"],
        namespace=row["namespace"],
        title=row["title"],
        status=RunStatus(row["status"]),
        approval_rule=row["approval_rule"],
        approvals_needed=row["approvals_needed"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        preview=PreviewInfo.from_json(row["preview"]),
        why=row["why"],
        playbook=row["playbook"],
        requested_by=row["requested_by"],
        labels={str(k): str(v) for k, v in (row["labels"] or {}).items()},
        generator_url=row["generator_url"],
        channel_id=row["channel_id"],
        message_ts=row["message_ts"],
        approved_at=row["approved_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=row["result"],
        error=row["error"],
        verification=row["verification"],
        undo_of=row["undo_of"],
        approvals=tuple(Approval(u, a, r) for u, a, r in zip(users, ats, roles, strict=False)),
        version=row["version"],
        shown_version=row["shown_version"],
        approvers_all_of=tuple(row["approvers_all_of"] or ()),
        target_labels=tuple(row["target_labels"] or ()),
        cluster=row["cluster"],
        break_glass=row["break_glass"],
    )


class ApproveOutcome(StrEnum):
    RECORDED = "recorded"  # counted; more approvals needed
    COMPLETE = "complete"  # this approval completed the set: the run is approved
    ALREADY = "already"  # this user had approved before
    NOT_PROPOSED = "not_proposed"  # approved, running, finished, rejected... meanwhile
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class ApproveResult:
    outcome: ApproveOutcome
    run: ActionRun


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    run_id: int | None
    incident_id: int | None
    actor: str | None
    event: AuditEvent
    details: dict[str, Any]
    cluster: str = ""


@dataclass(frozen=True, slots=True)
class TargetRun:
    id: int
    action: ActionName
    started_at: datetime


class RemediationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ------------------------------------------------------------------ writing helpers

    @staticmethod
    async def _record(
        conn: asyncpg.Connection,
        run: ActionRun,
        event: AuditEvent,
        *,
        actor: str | None,
        now: datetime,
        details: dict[str, Any] | None = None,
        timeline: str | None = None,
    ) -> None:
        """Append the audit entry and (when given) the incident timeline event."""
        await conn.execute(
            "INSERT INTO audit_log (at, run_id, incident_id, actor, event, details, cluster)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            now,
            run.id,
            run.incident_id,
            actor,
            event.value,
            {"action": run.action.value, "target": run.target, **(details or {})},
            run.cluster,
        )
        if timeline:
            await IntakeTx(conn).add_event(
                run.incident_id,
                f"remediation_{event.value}",
                timeline,
                at=now,
                actor=actor,
                data={
                    "run_id": run.id,
                    "action": run.action.value,
                    "target": run.target,
                    "cluster": run.cluster,
                },
            )

    # ------------------------------------------------------------------ proposals

    async def create(
        self, new: NewRun, token: str, now: datetime, *, timeline: str, details: dict[str, Any]
    ) -> ActionRun | None:
        """Store a proposal; None when the same playbook proposal exists for the incident."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _updated(
                    """
                    INSERT INTO action_runs (token, incident_id, action, params, target, namespace,
                        playbook, title, why, requested_by, approval_rule, approvals_needed, preview,
                        labels, generator_url, expires_at, channel_id, created_at, undo_of, dedupe_key,
                        approvers_all_of, target_labels, cluster, break_glass)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                            $18, $19, $20, $21, $22, $23, $24)
                    ON CONFLICT (incident_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
                    RETURNING *
                    """
                ),
                token,
                new.incident_id,
                new.action.value,
                new.params,
                new.target,
                new.namespace,
                new.playbook,
                new.title,
                new.why,
                new.requested_by,
                new.approval_rule,
                new.approvals_needed,
                new.preview.to_json(),
                new.labels,
                new.generator_url,
                new.expires_at,
                new.channel_id,
                now,
                new.undo_of,
                new.dedupe_key,
                list(new.approvers_all_of),
                list(new.target_labels),
                new.cluster,
                new.break_glass,
            )
            if row is None:
                return None
            run = _run(row)
            await self._record(
                conn,
                run,
                AuditEvent.REQUESTED,
                actor=new.requested_by,
                now=now,
                details={
                    "params": public_params(new.action, new.params),
                    "playbook": new.playbook,
                    "approval_rule": new.approval_rule,
                    "approvals_needed": new.approvals_needed,
                    "preview": new.preview.to_json(),
                    "undo_of": new.undo_of,
                    **details,
                },
                timeline=timeline,
            )
            return run

    async def get(self, run_id: int) -> ActionRun | None:
        row = await self.pool.fetchrow(f"{_SELECT} WHERE r.id = $1", run_id)
        return _run(row) if row else None

    async def by_token(self, token: str) -> ActionRun | None:
        row = await self.pool.fetchrow(f"{_SELECT} WHERE r.token = $1", token)
        return _run(row) if row else None

    async def for_incident(self, incident_id: int) -> list[ActionRun]:
        rows = await self.pool.fetch(f"{_SELECT} WHERE r.incident_id = $1 ORDER BY r.id", incident_id)
        return [_run(r) for r in rows]

    # ------------------------------------------------------------------ approvals

    async def approve(
        self, run_id: int, user: str, now: datetime, *, roles: Sequence[str] = ()
    ) -> ApproveResult:
        """Record `user`'s approval (authorization was decided by the caller; `roles` are the
        run's required roles the user holds). The row lock serialises concurrent approvals, so
        exactly one of them completes the set: enough approvals, every required role covered
        by a different approver."""
        async with self.pool.acquire() as conn, conn.transaction():
            # Lock first, then read: a read that waited for the lock would still see the
            # approvals of its own older snapshot, and two concurrent approvers would each count
            # one (a statement after the lock sees the other's committed approval).
            await conn.execute("SELECT 1 FROM action_runs WHERE id = $1 FOR UPDATE", run_id)
            row = await conn.fetchrow(f"{_SELECT} WHERE r.id = $1", run_id)
            if row is None:
                raise LookupError(f"no action run {run_id}")
            run = _run(row)
            if run.status is not RunStatus.PROPOSED:
                return ApproveResult(ApproveOutcome.NOT_PROPOSED, run)
            if run.expires_at <= now:
                return ApproveResult(ApproveOutcome.EXPIRED, run)
            inserted = await conn.fetchval(
                "INSERT INTO action_approvals (run_id, user_id, at, roles) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (run_id, user_id) DO NOTHING RETURNING user_id",
                run_id,
                user,
                now,
                ",".join(roles),
            )
            if inserted is None:
                return ApproveResult(ApproveOutcome.ALREADY, run)
            count = len(run.approvals) + 1
            held = {**run.approval_roles, user: tuple(roles)}
            complete = approval_complete(run.approvers_all_of, run.approvals_needed, held)
            updated = await conn.fetchrow(
                _updated(
                    "UPDATE action_runs SET version = version + 1,"
                    " status = CASE WHEN $2 THEN 'approved' ELSE status END,"
                    " approved_at = CASE WHEN $2 THEN $3::timestamptz ELSE approved_at END"
                    " WHERE id = $1 RETURNING *"
                ),
                run_id,
                complete,
                now,
            )
            run = _run(updated)
            await self._record(
                conn,
                run,
                AuditEvent.APPROVED,
                actor=user,
                now=now,
                details={
                    "approvals": count,
                    "needed": run.approvals_needed,
                    "complete": complete,
                    "roles": list(roles),
                },
                timeline=f"<@{user}> approved “{run.title}” ({count} of {run.approvals_needed})",
            )
            return ApproveResult(ApproveOutcome.COMPLETE if complete else ApproveOutcome.RECORDED, run)

    async def reject(self, run_id: int, user: str, now: datetime) -> ActionRun | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _updated(
                    "UPDATE action_runs SET status = 'rejected', finished_at = $2, error = $3,"
                    " params = scrubbed_params(action, params), version = version + 1"
                    " WHERE id = $1 AND status = 'proposed' AND expires_at > $2 RETURNING *"
                ),
                run_id,
                now,
                f"rejected by <@{user}>",
            )
            if row is None:
                return None
            run = _run(row)
            await self._record(
                conn,
                run,
                AuditEvent.REJECTED,
                actor=user,
                now=now,
                timeline=f"<@{user}> rejected “{run.title}”",
            )
            return run

    # ------------------------------------------------------------------ expiry

    async def expire(self, run_id: int, now: datetime) -> ActionRun | None:
        rows = await self._expire(
            "UPDATE action_runs SET status = 'expired', finished_at = $1, version = version + 1,"
            " params = scrubbed_params(action, params)"
            " WHERE id = $2 AND status = 'proposed' AND expires_at <= $1 RETURNING *",
            now,
            run_id,
        )
        return rows[0] if rows else None

    async def expire_due(self, now: datetime, limit: int = 100) -> list[ActionRun]:
        return await self._expire(
            "UPDATE action_runs SET status = 'expired', finished_at = $1, version = version + 1,"
            " params = scrubbed_params(action, params)"
            " WHERE id IN (SELECT id FROM action_runs WHERE status = 'proposed' AND expires_at <= $1"
            " ORDER BY expires_at LIMIT $2) AND status = 'proposed' AND expires_at <= $1 RETURNING *",
            now,
            limit,
        )

    async def expire_for_incident(
        self, incident_id: int, now: datetime, *, actor: str | None, reason: str
    ) -> list[ActionRun]:
        """Expire every pending proposal of an incident (it was resolved): approvals do not
        outlive what they were given for."""
        return await self._expire(
            "UPDATE action_runs SET status = 'expired', finished_at = $1, version = version + 1,"
            " error = $3, params = scrubbed_params(action, params)"
            " WHERE incident_id = $2 AND status = 'proposed' RETURNING *",
            now,
            incident_id,
            reason,
            actor=actor,
        )

    async def _expire(
        self, update_sql: str, now: datetime, *args: Any, actor: str | None = None
    ) -> list[ActionRun]:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_updated(update_sql), now, *args)
            runs = [_run(r) for r in rows]
            for run in runs:
                why = run.error or "unapproved"
                await self._record(
                    conn,
                    run,
                    AuditEvent.EXPIRED,
                    actor=actor,
                    now=now,
                    details={"approvals": list(run.approvers), "needed": run.approvals_needed, "reason": why},
                    timeline=f"Proposal “{run.title}” expired {why}",
                )
            return runs

    # ------------------------------------------------------------------ execution

    async def claim(self, run_id: int, owner: str, now: datetime, deadline: datetime) -> ActionRun | None:
        """The exactly-once gate: only one caller ever gets the run back."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _updated(
                    "UPDATE action_runs SET status = 'running', started_at = $3, claimed_by = $2,"
                    " deadline_at = $4, version = version + 1"
                    " WHERE id = $1 AND status = 'approved' RETURNING *"
                ),
                run_id,
                owner,
                now,
                deadline,
            )
            if row is None:
                return None
            run = _run(row)
            await self._record(
                conn,
                run,
                AuditEvent.CLAIMED,
                actor=None,
                now=now,
                details={"owner": owner, "approved_by": list(run.approvers)},
                timeline=f"Running “{run.title}” on {run.target}",
            )
            return run

    async def finish(
        self,
        run_id: int,
        owner: str,
        status: RunStatus,
        now: datetime,
        *,
        event: AuditEvent,
        result: dict[str, Any] | None,
        error: str | None,
        timeline: str,
        details: dict[str, Any] | None = None,
    ) -> ActionRun | None:
        """running → succeeded | failed | cancelled, only by the claimer."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _updated(
                    "UPDATE action_runs SET status = $3, finished_at = $4, result = $5, error = $6,"
                    " params = scrubbed_params(action, params), version = version + 1"
                    " WHERE id = $1 AND status = 'running' AND claimed_by = $2 RETURNING *"
                ),
                run_id,
                owner,
                status.value,
                now,
                result,
                error,
            )
            if row is None:
                return None
            run = _run(row)
            started = run.started_at or now
            await self._record(
                conn,
                run,
                event,
                actor=None,
                now=now,
                details={
                    "status": status.value,
                    "result": result,
                    "error": error,
                    "params": public_params(run.action, run.params),
                    "approved_by": list(run.approvers),
                    "requested_by": run.requested_by,
                    "created_at": run.created_at.isoformat(),
                    "approved_at": run.approved_at.isoformat() if run.approved_at else None,
                    "started_at": started.isoformat(),
                    "duration_ms": round((now - started).total_seconds() * 1000, 1),
                    **(details or {}),
                },
                timeline=timeline,
            )
            return run

    async def set_verification(
        self, run_id: int, text: str, now: datetime, *, details: dict[str, Any]
    ) -> ActionRun | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                _updated(
                    "UPDATE action_runs SET verification = $2, version = version + 1 WHERE id = $1 RETURNING *"
                ),
                run_id,
                text,
            )
            if row is None:
                return None
            run = _run(row)
            await self._record(
                conn,
                run,
                AuditEvent.VERIFIED,
                actor=None,
                now=now,
                details={"verification": text, **details},
                timeline=f"Verification of “{run.title}”: {text}",
            )
            return run

    async def refused(
        self,
        run: ActionRun | None,
        actor: str | None,
        now: datetime,
        details: dict[str, Any],
    ) -> None:
        """Audit a refused request or click (run None: the token matched nothing)."""
        if run is None:
            await self.pool.execute(
                "INSERT INTO audit_log (at, run_id, incident_id, actor, event, details)"
                " VALUES ($1, NULL, NULL, $2, 'refused', $3)",
                now,
                actor,
                details,
            )
            return
        async with self.pool.acquire() as conn:
            await self._record(conn, run, AuditEvent.REFUSED, actor=actor, now=now, details=details)

    # ------------------------------------------------------------------ cooldown

    async def recent_on_target(
        self,
        target: str,
        since: datetime,
        *,
        exclude: Sequence[int] = (),
        before: tuple[datetime, int] | None = None,
        cluster: str = "",
    ) -> TargetRun | None:
        """The latest run that touched `target` in `cluster` since `since` (ignoring `exclude`);
        with `before=(started_at, id)`, only runs that started earlier (ties: lower id), so that
        of two runs claimed at once the earlier one proceeds."""
        args: list[Any] = [target, since, list(exclude), cluster]
        sql = (
            "SELECT id, action, started_at FROM action_runs WHERE target = $1 AND started_at >= $2"
            " AND status IN ('running', 'succeeded', 'failed') AND NOT (id = ANY($3::bigint[]))"
            " AND cluster = $4"
        )
        if before is not None:
            sql += " AND (started_at, id) < ($5, $6)"
            args += [before[0], before[1]]
        row = await self.pool.fetchrow(sql + " ORDER BY started_at DESC, id DESC LIMIT 1", *args)
        if row is None:
            return None
        return TargetRun(row["id"], ActionName(row["action"]), row["started_at"])

    # ------------------------------------------------------------------ message and sweep

    async def set_message(self, run_id: int, channel_id: str, ts: str) -> None:
        await self.pool.execute(
            "UPDATE action_runs SET channel_id = $2, message_ts = $3 WHERE id = $1 AND message_ts IS NULL",
            run_id,
            channel_id,
            ts,
        )

    async def mark_shown(self, run_id: int, version: int) -> None:
        await self.pool.execute(
            "UPDATE action_runs SET shown_version = GREATEST(shown_version, $2) WHERE id = $1",
            run_id,
            version,
        )

    async def unshown(self, since: datetime, limit: int = 50) -> list[int]:
        """Runs whose message does not show their latest state (recent ones only: a message
        that can never be updated, e.g. in an archived channel, is not retried forever)."""
        rows = await self.pool.fetch(
            "SELECT id FROM action_runs WHERE version > shown_version AND channel_id IS NOT NULL"
            " AND created_at >= $1 ORDER BY id LIMIT $2",
            since,
            limit,
        )
        return [r["id"] for r in rows]

    async def pending_ids(self, limit: int = 200) -> list[int]:
        """Runs not decided or executed yet (their messages show the kill switch)."""
        rows = await self.pool.fetch(
            "SELECT id FROM action_runs WHERE status IN ('proposed', 'approved') ORDER BY id LIMIT $1", limit
        )
        return [r["id"] for r in rows]

    async def approved_waiting(self, now: datetime, grace: timedelta, limit: int = 20) -> list[int]:
        """Approved runs nobody claimed (their approver's replica stopped before executing)."""
        rows = await self.pool.fetch(
            "SELECT id FROM action_runs WHERE status = 'approved' AND approved_at < $1 ORDER BY id LIMIT $2",
            now - grace,
            limit,
        )
        return [r["id"] for r in rows]

    async def interrupted(self, now: datetime, limit: int = 20) -> list[ActionRun]:
        """Runs whose executor vanished: running past their deadline become failed (never retried:
        the request may have reached the cluster)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _updated(
                    "UPDATE action_runs SET status = 'failed', finished_at = $1, version = version + 1,"
                    " error = 'interrupted while running (the bot stopped); the outcome is unknown,"
                    " check the cluster', params = scrubbed_params(action, params)"
                    " WHERE id IN (SELECT id FROM action_runs WHERE status = 'running' AND deadline_at < $1"
                    " ORDER BY id LIMIT $2) AND status = 'running' RETURNING *"
                ),
                now,
                limit,
            )
            runs = [_run(r) for r in rows]
            for run in runs:
                await self._record(
                    conn,
                    run,
                    AuditEvent.FAILED,
                    actor=None,
                    now=now,
                    details={"error": run.error},
                    timeline=f"“{run.title}” was interrupted while running; check {run.target}",
                )
            return runs

    async def audit_entries(
        self, *, run_id: int | None = None, incident_id: int | None = None
    ) -> list[AuditEntry]:
        if run_id is not None:
            rows = await self.pool.fetch("SELECT * FROM audit_log WHERE run_id = $1 ORDER BY id", run_id)
        elif incident_id is not None:
            rows = await self.pool.fetch(
                "SELECT * FROM audit_log WHERE incident_id = $1 ORDER BY id", incident_id
            )
        else:
            rows = await self.pool.fetch("SELECT * FROM audit_log ORDER BY id")
        return [
            AuditEntry(
                r["id"],
                r["at"],
                r["run_id"],
                r["incident_id"],
                r["actor"],
                AuditEvent(r["event"]),
                r["details"],
                r["cluster"],
            )
            for r in rows
        ]
