"""Execute an approved run exactly once: claimed by compare-and-set (`approved` → `running`),
so one claimer wins across double clicks, retried deliveries and replicas. Everything is
re-checked before the request (kill switch as stored now, cluster, expiry, that the incident
is still open, policy, approvals with one approver per required role, cooldown; the adapter
re-reads the target and refuses if it changed since the preview, and a drain leaves pods in
namespaces the policy denies alone), the action is bounded by a timeout, and every outcome is
audited, noted in the thread and verified.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta
from typing import Any

from bot.clients.kubernetes.clusters import Clusters
from bot.clients.kubernetes.results import ExecResult, Result
from bot.core.actions import ActionParams, ExecParams, HostCommandParams
from bot.core.blockkit import escape
from bot.core.errors import IntegrationError, UserError
from bot.core.incident import IncidentStatus
from bot.core.policy import ApprovalRule, Policy, approval_complete
from bot.core.ports import Clock
from bot.core.runs import ActionRun, AuditEvent, RunStatus
from bot.flows.remediation.authz import exec_argv, namespace_allowed, parameter_problem
from bot.flows.remediation.common import (
    UNDOABLE,
    Access,
    cooldown_problem,
    execute_timeout,
    parse_params,
    run_blockers,
)
from bot.flows.remediation.hosts import HostActions
from bot.flows.remediation.messages import ProposalMessages
from bot.flows.remediation.verify import Verifier
from bot.flows.supervisor import Supervisor
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.store.incidents import PostgresStore
from bot.store.kill_switch import KillSwitchStore
from bot.store.remediation import RemediationStore

log = logs.logger(logs.Component.REMEDIATION)

DEADLINE_MARGIN = timedelta(seconds=60)
APPROVED_GRACE = timedelta(seconds=5)
MESSAGE_RETRY_WINDOW = timedelta(days=1)


def result_json(result: Result) -> dict[str, Any]:
    data: dict[str, Any] = {
        "changes": list(result.changes),
        "complete": result.complete,
        "resource_version": result.resource_version,
        "revision": result.revision,
    }
    if result.job_name:
        data["job_name"] = result.job_name
    if result.exec_result is not None:
        data["exit_code"] = result.exec_result.exit_code
        data["output"] = (result.exec_result.stdout + result.exec_result.stderr)[-2000:]
    if result.drain is not None:
        data["drain"] = {
            "node": result.drain.node,
            "pods": [
                {"pod": f"{p.namespace}/{p.name}", "outcome": p.outcome.value, "detail": p.detail}
                for p in result.drain.pods
            ],
            "skipped": len(result.drain.skipped),
        }
    return data


class Executor:
    def __init__(
        self,
        store: RemediationStore,
        incidents: PostgresStore,
        switch: KillSwitchStore,
        clusters: Clusters,
        verifier: Verifier,
        messages: ProposalMessages,
        access: Access,
        supervisor: Supervisor,
        metrics: Metrics,
        policy: Policy,
        clock: Clock,
        *,
        owner: str,
        hosts: HostActions | None = None,
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.switch = switch
        self.clusters = clusters
        self.verifier = verifier
        self.messages = messages
        self.access = access
        self.supervisor = supervisor
        self.metrics = metrics
        self.policy = policy
        self.clock = clock
        self.owner = owner
        self.hosts = hosts

    async def execute(self, run_id: int, *, hint: ActionRun | None = None) -> ActionRun | None:
        """Claim the approved run and execute it, exactly once; None when another caller has it."""
        pending = hint if hint is not None and hint.id == run_id else await self.store.get(run_id)
        if pending is None or pending.status is not RunStatus.APPROVED:
            return None
        params = parse_params(pending.action, pending.params)
        timeout = execute_timeout(pending.action, params, self.hosts)
        now = self.clock()
        run = await self.store.claim(
            run_id, self.owner, now, now + timedelta(seconds=timeout) + DEADLINE_MARGIN
        )
        if run is None:
            return None
        log.info("remediation.claimed", extra={"run_id": run.id, "owner": self.owner})
        reason = await self._recheck(run, params, now)
        if reason is not None:
            return await self._finish_refused(run, reason)
        self.messages.spawn_refresh(run.id)
        started = self.clock()
        try:
            async with asyncio.timeout(timeout):
                result = await self._send(run, params)
        except UserError as err:
            return await self._finish_refused(run, str(err))
        except IntegrationError as err:
            return await self._finish_failed(run, err.message, status=err.status)
        except TimeoutError:
            return await self._finish_failed(
                run, f"timed out after {timeout:g}s; the change may be partly applied, check {run.target}"
            )
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("remediation.execute_error", extra={"run_id": run.id, "ref": ref})
            await self._finish_failed(run, f"internal error (reference `{ref}`)")
            raise
        took = (self.clock() - started).total_seconds()
        return await self._finish_done(run, result, took)

    async def _send(self, run: ActionRun, params: ActionParams) -> Result:
        """The request itself, to the host or cluster the run acts on (checked by _recheck)."""
        if isinstance(params, HostCommandParams):
            assert self.hosts is not None  # checked by _recheck
            return await self.hosts.execute(params, run.target)
        cluster = self.clusters.client(run.cluster)
        assert cluster is not None  # checked by _recheck
        return await cluster.execute(
            run.action,
            params,
            run.preview.resource_version,
            expect_fingerprint=run.preview.fingerprint,
            argv=exec_argv(self.policy, params) if isinstance(params, ExecParams) else None,
            namespace_allowed=self.access.rule_of(run).allows_namespace,
        )

    async def _recheck(self, run: ActionRun, params: ActionParams, now: datetime) -> str | None:
        """Why the claimed run must not execute now, or None. The target itself is re-read and
        compared with the preview by the adapter, right before the request."""
        problems = run_blockers(self.policy, self.clusters, self.hosts, run, await self.switch.get())
        if problems:
            return problems[0]
        if now > run.expires_at:
            return f"the proposal expired at {run.expires_at:%H:%M:%S} UTC before it was executed"
        incident = await self.incidents.get_incident(run.incident_id)
        if incident is None or incident.status is IncidentStatus.RESOLVED:
            ref = incident.ref if incident is not None else f"#{run.incident_id}"
            return f"incident {ref} was resolved after this was approved; approvals end with their incident"
        rule = self.access.rule_of(run)
        allowed = namespace_allowed(rule, run.action, run.namespace, rule_name=run.approval_rule)
        if not allowed.allowed:
            return allowed.reason
        bound = parameter_problem(
            self.policy, rule, run.action, params, current_replicas=run.preview.current_replicas
        )
        if bound:
            return f"the policy refuses it: {bound}"
        problem = await self._approvals_problem(run, rule)
        if problem:
            return problem
        return await cooldown_problem(
            self.store,
            run.target,
            rule,
            now,
            exclude=[run.id] + ([run.undo_of] if run.undo_of else []),
            before=(run.started_at or now, run.id),
            cluster=run.cluster,
        )

    async def _approvals_problem(self, run: ActionRun, rule: ApprovalRule) -> str | None:
        """Whether the approvals still hold under the current policy: each approver still holds an
        approver role, and each required role is covered by a different one of them."""
        required = list(dict.fromkeys([*rule.approvers_all_of, *run.approvers_all_of]))
        held: dict[str, list[str]] = {}
        for approver in run.approvers:
            if approver == run.requested_by and not rule.requester_may_approve:
                continue
            roles, _ = await self.access.roles_held(approver, rule.approver_roles)
            if roles:
                held[approver] = [r for r in roles if r in required]
        needed = max(rule.required_approvals, run.approvals_needed, len(required))
        if len(held) < needed:
            return f"only {len(held)} of the {needed} approvals are still valid under the current policy"
        if not approval_complete(required, needed, held):
            return (
                "the approvals no longer cover every required role under the current policy "
                f"(one approver each of {', '.join(required)})"
            )
        return None

    async def _finish(
        self,
        run: ActionRun,
        status: RunStatus,
        event: AuditEvent,
        *,
        result: dict[str, Any] | None,
        error: str | None,
        timeline: str,
        note: str,
        details: dict[str, Any] | None = None,
    ) -> ActionRun | None:
        """Store the outcome (audit and timeline in the same transaction), count it, say it in
        the thread and redraw the proposal."""
        done = await self.store.finish(
            run.id,
            self.owner,
            status,
            self.clock(),
            event=event,
            result=result,
            error=error,
            timeline=timeline,
            details=details,
        )
        self.metrics.remediations.labels(run.action.value, status.value).inc()
        await self.messages.note(run, note)
        self.messages.spawn_refresh(run.id)
        return done

    async def _finish_refused(self, run: ActionRun, reason: str) -> ActionRun | None:
        log.info("remediation.refused_at_execution", extra={"run_id": run.id, "reason": reason})
        return await self._finish(
            run,
            RunStatus.CANCELLED,
            AuditEvent.REFUSED,
            result=None,
            error=reason,
            timeline=f"“{run.title}” was not executed: {reason}",
            note=f"⛔ Not executed: {escape(reason)}",
        )

    async def _finish_failed(
        self, run: ActionRun, error: str, *, status: int | None = None
    ) -> ActionRun | None:
        log.warning("remediation.failed", extra={"run_id": run.id, "error": error})
        return await self._finish(
            run,
            RunStatus.FAILED,
            AuditEvent.FAILED,
            result=None,
            error=error,
            timeline=f"“{run.title}” failed: {error}",
            note=f"❌ `{run.action.value}` on {escape(run.target)} failed: {escape(error)}",
            details={"http_status": status},
        )

    async def _finish_done(self, run: ActionRun, result: Result, took: float) -> ActionRun | None:
        data = result_json(result)
        ok = result.complete
        changes = "; ".join(result.changes) or "done"
        if ok:
            done = await self._finish(
                run,
                RunStatus.SUCCEEDED,
                AuditEvent.SUCCEEDED,
                result=data,
                error=None,
                timeline=f"“{run.title}” succeeded: {changes}",
                note=f"✅ `{run.action.value}` on {escape(run.target)} done in {took:.1f}s: {escape(changes)}",
            )
        else:
            error = "the action did not complete: " + changes
            if result.exec_result is not None:
                error = f"the command exited with code {result.exec_result.exit_code}" + _said(
                    result.exec_result
                )
            done = await self._finish(
                run,
                RunStatus.FAILED,
                AuditEvent.FAILED,
                result=data,
                error=error,
                timeline=f"“{run.title}” failed: {error}",
                note=f"❌ `{run.action.value}` on {escape(run.target)}: {escape(error)}",
            )
        log.info("remediation.executed", extra={"run_id": run.id, "complete": ok, "seconds": round(took, 3)})
        if done is not None and (ok or run.action in UNDOABLE):
            self.supervisor.spawn(self.verifier.verify(done), name=f"verify-{run.id}")
        return done

    # ------------------------------------------------------------------ the sweep

    async def sweep(self) -> None:
        """Expire proposals past their time, fail runs whose executor vanished, execute
        approved runs nobody claimed, and bring proposal messages up to date."""
        now = self.clock()
        for run in await self.store.expire_due(now):
            self.metrics.remediations.labels(run.action.value, RunStatus.EXPIRED.value).inc()
            log.info("remediation.expired", extra={"run_id": run.id})
            self.messages.spawn_refresh(run.id)
        for run in await self.store.interrupted(now):
            await self.messages.note(run, f"❌ “{run.title}” was interrupted while running: {run.error}")
            self.messages.spawn_refresh(run.id)
        for run_id in await self.store.approved_waiting(now, APPROVED_GRACE):
            self.supervisor.spawn(self.execute(run_id), name=f"run-{run_id}")
        for run_id in await self.store.unshown(now - MESSAGE_RETRY_WINDOW):
            self.messages.spawn_refresh(run_id)


def _said(output: ExecResult) -> str:
    """The command's last words (stderr's last line, else stdout's), so a failure says why
    (`container ... is not running`, `permission denied`) without opening the audit."""
    for text in (output.stderr, output.stdout):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return f": {lines[-1][:200]}"
    return ""
