"""Approve and reject clicks. Each click reloads the run by its opaque token and is re-checked
on the server: status, expiry, that its incident is still open, that the dry run passed, that
the user holds an approver role, that a requester does not approve their own request when the
rule forbids it, and that a rule wanting one approver per role still needs this user's role.
The approval is recorded under a row lock, so of any number of simultaneous clicks exactly one
completes the set.

Approvals die with their incident: resolving it expires its pending proposals.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from bot.core.blockkit import escape
from bot.core.errors import UserError
from bot.core.incident import Incident, IncidentStatus
from bot.core.policy import Policy, missing_roles
from bot.core.ports import Clock
from bot.core.runs import ActionRun, RunStatus
from bot.flows.remediation.authz import may_approve, may_reject, roles_text
from bot.flows.remediation.common import Access, Outcome, with_problems
from bot.flows.remediation.execute import Executor
from bot.flows.remediation.kill_switch import KillSwitch
from bot.flows.remediation.messages import ProposalMessages
from bot.flows.supervisor import Supervisor
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.render.times import at
from bot.store.incidents import PostgresStore
from bot.store.remediation import ApproveOutcome, RemediationStore

log = logs.logger(logs.Component.REMEDIATION)

TOKEN_RE = re.compile(r"^[0-9a-f]{16}$")


class Click(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


def status_reason(run: ActionRun) -> str:
    match run.status:
        case RunStatus.APPROVED | RunStatus.RUNNING:
            return "This was already approved and is being executed."
        case RunStatus.SUCCEEDED:
            return "This already ran (succeeded)."
        case RunStatus.FAILED:
            return f"This already ran and failed: {run.error or 'see the thread'}."
        case RunStatus.REJECTED:
            return f"This proposal was {run.error or 'rejected'}."
        case RunStatus.EXPIRED if run.error:
            return f"This proposal expired {run.error}."
        case RunStatus.EXPIRED:
            return (
                f"This proposal expired at {at(run.expires_at)}; propose it again "
                "(`/incident run ...`) if it is still needed."
            )
        case RunStatus.CANCELLED:
            return f"This was not executed: {run.error or 'refused'}."
    return f"This proposal is {run.status.value}."


SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")


def resolved_reason(incident: Incident, user: str | None) -> str:
    """Why proposals expired; `user` is mentioned only when it is a Slack user id (a resolve from
    PagerDuty may name someone else)."""
    by = ""
    if user:
        by = f" by <@{user}>" if SLACK_USER.fullmatch(user) else f" by {escape(user)}"
    return f"because incident {incident.ref} was resolved{by}"


class Decisions:
    """Approve and reject clicks, expiry with the incident, and (for the `/incident killswitch`
    command) the runtime kill switch."""

    def __init__(
        self,
        store: RemediationStore,
        incidents: PostgresStore,
        executor: Executor,
        messages: ProposalMessages,
        access: Access,
        kill_switch: KillSwitch,
        supervisor: Supervisor,
        metrics: Metrics,
        policy: Policy,
        clock: Clock,
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.kill_switch = kill_switch
        self.executor = executor
        self.messages = messages
        self.access = access
        self.supervisor = supervisor
        self.metrics = metrics
        self.policy = policy
        self.clock = clock

    async def decide(self, click: Click, token: str, user: str) -> Outcome:
        if click is Click.APPROVE:
            return await self.approve(token, user)
        return await self.reject(token, user)

    async def _refuse(
        self, run: ActionRun | None, user: str, what: Click, reason: str, **extra: Any
    ) -> UserError:
        await self.store.refused(run, user, self.clock(), {"click": what.value, "reason": reason, **extra})
        log.info(
            "remediation.refused", extra={"run_id": run.id if run else None, "user": user, "reason": reason}
        )
        return UserError(reason)

    async def _load(self, token: str, user: str, what: Click) -> ActionRun:
        """The proposal behind the button, checked to still be a proposal nobody decided and
        that has not expired."""
        run = await self.store.by_token(token) if TOKEN_RE.fullmatch(token or "") else None
        if run is None:
            raise await self._refuse(
                None,
                user,
                what,
                "This button is not valid (no such proposal). Use the buttons on the proposal message.",
                value=(token or "")[:100],
            )
        if run.status is not RunStatus.PROPOSED:
            raise await self._refuse(run, user, what, status_reason(run))
        if run.expires_at <= self.clock():
            await self._expire_now(run)
            reason = (
                f"This proposal expired at {at(run.expires_at)} and can no longer be approved; "
                "propose it again if it is still needed."
                if what is Click.APPROVE
                else "This proposal has already expired."
            )
            raise await self._refuse(run, user, what, reason)
        incident = await self.incidents.get_incident(run.incident_id)
        if incident is None or incident.status is IncidentStatus.RESOLVED:
            if incident is not None:  # resolved while its proposals were not expired (yet)
                await self._expire_with(incident, None)
            raise await self._refuse(
                run, user, what, "This proposal's incident is resolved; its proposals expired with it."
            )
        return run

    async def _require_approver(self, run: ActionRun, user: str, what: Click) -> tuple[str, ...]:
        """The policy's verdict on this user deciding this run (approvers may approve and
        reject; the rule may forbid a requester approving their own request; one approver per
        required role). Returns the run's required roles the user holds."""
        rule = self.access.rule_of(run)
        held, membership = await self.access.roles_held(user, rule.approver_roles)
        groups, requested_by, rule_name = membership.groups, run.requested_by, run.approval_rule
        required = tuple(run.approvers_all_of)
        user_roles = tuple(r for r in required if r in held)
        if what is Click.APPROVE:
            decision = may_approve(
                self.policy,
                rule,
                run.action,
                user_id=user,
                user_groups=groups,
                requested_by=requested_by,
                approvals=run.approvers,
                needed=run.approvals_needed,
                rule_name=rule_name,
                required_roles=required,
                approval_roles=run.approval_roles,
                user_roles=user_roles,
            )
        else:
            decision = may_reject(
                self.policy,
                rule,
                run.action,
                user_id=user,
                user_groups=groups,
                requested_by=requested_by,
                rule_name=rule_name,
            )
        if not decision.allowed:
            raise await self._refuse(run, user, what, with_problems(decision.reason, membership))
        return user_roles

    async def _expire_now(self, run: ActionRun) -> None:
        if await self.store.expire(run.id, self.clock()) is not None:
            self.messages.spawn_refresh(run.id)

    async def expire_for_incident(self, incident: Incident, user: str | None) -> list[ActionRun]:
        """The incident was resolved: its pending proposals expire (audited, messages redrawn).
        An approved run not yet executed is refused by the executor's re-check instead."""
        return await self._expire_with(incident, user)

    async def _expire_with(self, incident: Incident, user: str | None) -> list[ActionRun]:
        expired = await self.store.expire_for_incident(
            incident.id, self.clock(), actor=user, reason=resolved_reason(incident, user)
        )
        for run in expired:
            self.metrics.remediations.labels(run.action.value, RunStatus.EXPIRED.value).inc()
            log.info(
                "remediation.expired_with_incident", extra={"run_id": run.id, "incident_id": incident.id}
            )
            self.messages.spawn_refresh(run.id)
        return expired

    async def approve(self, token: str, user: str) -> Outcome:
        """One approval click, re-checked on the server. Completing the approvals starts the
        execution (supervised task) before this returns."""
        run = await self._load(token, user, Click.APPROVE)
        now = self.clock()
        if not run.preview.dry_run_ok:
            raise await self._refuse(
                run,
                user,
                Click.APPROVE,
                f"The dry run did not pass ({run.preview.problem or 'see the proposal'}); fix that and propose it again.",
            )
        roles = await self._require_approver(run, user, Click.APPROVE)
        result = await self.store.approve(run.id, user, now, roles=roles)
        run = result.run
        match result.outcome:
            case ApproveOutcome.COMPLETE:
                self.metrics.approval_wait.observe(max(0.0, (now - run.created_at).total_seconds()))
                self.supervisor.spawn(self.executor.execute(run.id, hint=run), name=f"run-{run.id}")
                self.messages.spawn_refresh(run.id)
                log.info("remediation.approved", extra={"run_id": run.id, "user": user})
                # Only what is known: the executor re-checks (policy, cooldown, target) first.
                return Outcome(
                    f"Approved “{run.title}”: all approvals are in. It runs once the bot's last checks"
                    " pass (policy, cooldown, unchanged target); the proposal's thread says what happened.",
                    run,
                )
            case ApproveOutcome.RECORDED:
                self.messages.spawn_refresh(run.id)
                left = max(1, run.approvals_needed - len(run.approvers))
                missing = missing_roles(run.approvers_all_of, run.approval_roles)
                role = f", with role {roles_text(missing)}" if missing else ""
                return Outcome(
                    f"Approval recorded ({len(run.approvers)} of {run.approvals_needed}); "
                    f"waiting for {left} more approver(s){role}.",
                    run,
                )
            case ApproveOutcome.ALREADY:
                raise await self._refuse(run, user, Click.APPROVE, "You already approved this.")
            case ApproveOutcome.EXPIRED:
                await self._expire_now(run)
                raise await self._refuse(run, user, Click.APPROVE, status_reason(run))
            case ApproveOutcome.NOT_PROPOSED:
                raise await self._refuse(run, user, Click.APPROVE, status_reason(run))
        raise AssertionError("unreachable")

    async def reject(self, token: str, user: str) -> Outcome:
        run = await self._load(token, user, Click.REJECT)
        await self._require_approver(run, user, Click.REJECT)
        rejected = await self.store.reject(run.id, user, self.clock())
        if rejected is None:
            current = await self.store.get(run.id) or run
            raise await self._refuse(current, user, Click.REJECT, status_reason(current))
        self.metrics.remediations.labels(run.action.value, RunStatus.REJECTED.value).inc()
        self.messages.spawn_refresh(run.id)
        return Outcome(f"Rejected “{rejected.title}”.", rejected)
