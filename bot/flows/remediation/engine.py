"""Remediation use cases: propose, approve, reject, execute (exactly once), verify, expire.

The flow of one run (house rule 8):

1. `propose` checks the policy (requester role, namespace allow/deny, parameter bounds, exec
   template, cooldown), previews the action with a server-side dry run, stores the run with an
   opaque token and posts the proposal message into the incident channel.
2. `approve` reloads the run by token on every click and re-checks on the server: status,
   expiry, that the dry run passed, that the user holds an approver role, that a requester
   does not approve their own request when the rule forbids it. The approval is recorded under
   a row lock, so of any number of simultaneous clicks exactly one completes the set.
3. `execute` claims the run by compare-and-set (`status = 'approved'` → `'running'`): one
   claimer across double clicks, retried deliveries and replicas. It re-checks (kill switch,
   cluster, expiry, policy, approvals, cooldown; the adapter re-reads the target and refuses
   if it changed since the preview) and runs the action bounded by a timeout.
4. `verify` waits for the rollout (bounded), then re-runs the playbook's step checks or the
   alert's own expression until recovered or `remediation_verify_seconds` pass, reports in the
   proposal's thread and, for an applied change that did not help, proposes the undo as a new
   proposal under the same approval rules.

Every state lands in the audit log and on the incident timeline in the same transaction as the
state change (`bot.store.remediation`), and the proposal message is re-rendered from the
stored run after each change (the sweep catches up what a crash left behind).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from pydantic import BaseModel, ValidationError

from bot.clients.kubernetes.results import Preview, Result, RolloutState
from bot.core.actions import (
    PARAMS_BY_ACTION,
    ActionName,
    DeploymentTarget,
    DrainParams,
    ExecParams,
    NodeParams,
    RolloutUndoParams,
    ScaleParams,
    action_params,
    target_of,
)
from bot.core.blockkit import escape
from bot.core.checks import evaluate_check_all
from bot.core.errors import IntegrationError, UserError
from bot.core.incident import Incident, IncidentStatus
from bot.core.playbooks import Playbook, Remediation
from bot.core.policy import ApprovalRule
from bot.core.runs import ActionRun, AuditEvent, NewRun, PreviewInfo, RunStatus
from bot.core.templating import TemplateError, render_text
from bot.deps import Deps
from bot.flows.remediation.authz import (
    Membership,
    UsergroupResolver,
    exec_argv,
    may_approve,
    may_reject,
    may_request,
    namespace_allowed,
    namespace_of,
    needs_usergroups,
    parameter_problem,
    role_usergroups,
)
from bot.render.proposals import not_proposed_message, proposal_message, thread_note
from bot.store.remediation import ApproveOutcome, RemediationStore

log = logging.getLogger("incidentbot.remediation")

TOKEN_BYTES = 8  # 16 hex characters, from the OS's CSPRNG
TOKEN_RE = re.compile(r"^[0-9a-f]{16}$")
EXECUTE_TIMEOUT_S = 120.0
EXEC_TIMEOUT_S = 60.0
DEADLINE_MARGIN = timedelta(seconds=60)
ROLLOUT_TIMEOUT_S = 600.0  # Kubernetes' default progressDeadlineSeconds
APPROVED_GRACE = timedelta(seconds=5)
MESSAGE_LOCK_TTL_MS = 30_000
MESSAGE_ROUNDS = 10
MESSAGE_RETRY_WINDOW = timedelta(days=1)
MAX_NOTE = 2500
DEPLOYMENT_ACTIONS = frozenset(
    {
        ActionName.ROLLOUT_RESTART,
        ActionName.SCALE,
        ActionName.ROLLOUT_UNDO,
        ActionName.SET_ENV,
        ActionName.SET_RESOURCES,
    }
)
# The changes the bot can offer to undo.
UNDOABLE = DEPLOYMENT_ACTIONS | {ActionName.CORDON, ActionName.DRAIN}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a click did, in words for the clicking user, and the run as it is now."""

    text: str
    run: ActionRun | None = None


# --------------------------------------------------------------------------- small helpers


def store_of(deps: Deps) -> RemediationStore:
    return RemediationStore(deps.store.pool)


def rule_of(deps: Deps, run: ActionRun) -> ApprovalRule:
    return deps.policy.rule_for(run.action, run.approval_rule)


def default_title(action: ActionName, params: BaseModel) -> str:
    target = target_of(action, params)
    if isinstance(params, ScaleParams):
        return f"Scale {target} to {params.replicas} replicas"
    if isinstance(params, ExecParams):
        return f"Run exec template `{params.template}` in {target}"
    words = action.value.replace("_", " ")
    return f"{words[:1].upper()}{words[1:]} {target}"


def parse_params(action: ActionName, params: Mapping[str, Any]) -> BaseModel:
    return PARAMS_BY_ACTION[action].model_validate(dict(params))


def execute_timeout(action: ActionName, params: BaseModel) -> float:
    if isinstance(params, DrainParams):
        return float(params.timeout_seconds) + 60.0
    if action is ActionName.EXEC:
        return EXEC_TIMEOUT_S
    return EXECUTE_TIMEOUT_S


def blockers(deps: Deps) -> list[str]:
    """Why nothing can execute right now (shown on every proposal)."""
    found = []
    if deps.policy.kill_switch:
        found.append("The kill switch is on (policy.yaml `kill_switch: true`): nothing executes.")
    if deps.cluster is None:
        found.append(
            "The Kubernetes cluster is not configured (KUBECONFIG unset, not in a pod): nothing executes."
        )
    return found


def _cluster_label_sync(path: str) -> str:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return f"KUBECONFIG {Path(path).name}"
    context = doc.get("current-context") if isinstance(doc, dict) else None
    return f"context `{context}` (KUBECONFIG)" if context else f"KUBECONFIG {Path(path).name}"


async def cluster_label(deps: Deps) -> str:
    if deps.cluster is None:
        return "not configured"
    if deps.settings.kubeconfig:
        return await asyncio.to_thread(_cluster_label_sync, deps.settings.kubeconfig)
    return "in-cluster (service account)" if deps.settings.in_cluster else "configured"


async def _membership(
    deps: Deps, resolver: UsergroupResolver | None, user: str, roles: list[str]
) -> Membership:
    if not needs_usergroups(deps.policy, roles, user):
        return Membership(frozenset())
    resolver = resolver or UsergroupResolver(deps.chat, deps.coord)
    return await resolver.groups_of(user, role_usergroups(deps.policy, roles))


def _with_problems(reason: str, membership: Membership) -> str:
    if membership.problems:
        return f"{reason} ({'; '.join(membership.problems)})"
    return reason


async def _note(deps: Deps, run: ActionRun, text: str) -> None:
    """A reply in the proposal's thread; a Slack failure here is logged, never fatal (the
    state is already stored and the message re-rendered by the sweep)."""
    if run.channel_id is None:
        return
    body = text if len(text) <= MAX_NOTE else text[: MAX_NOTE - 1] + "…"
    try:
        await deps.chat.post(run.channel_id, thread_note(body), thread_ts=run.message_ts)
    except IntegrationError as err:
        log.warning("remediation.note_failed", extra={"run_id": run.id, "error": str(err)})


def _spawn_refresh(deps: Deps, run_id: int) -> None:
    deps.supervisor.spawn(_refresh_quietly(deps, run_id), name=f"run-message-{run_id}")


async def _refresh_quietly(deps: Deps, run_id: int) -> None:
    try:
        await refresh_message(deps, run_id)
    except IntegrationError as err:  # the sweep retries: the stored version is still ahead
        log.warning("remediation.message_failed", extra={"run_id": run_id, "error": str(err)})


# --------------------------------------------------------------------------- the message


def _shown(run: ActionRun | None) -> bool:
    if run is None or run.channel_id is None:
        return True
    return run.message_ts is not None and run.version <= run.shown_version


async def refresh_message(deps: Deps, run_id: int) -> None:
    """Post or update the proposal message from the stored run until it shows the latest
    version. One updater per run at a time (Redis lock). A change committed while another
    caller held the lock is seen by that holder: it re-reads the run after releasing."""
    store = store_of(deps)
    for _ in range(3):
        token = await deps.coord.try_lock(f"run-message:{run_id}", MESSAGE_LOCK_TTL_MS)
        if token is None:
            return
        try:
            for _ in range(MESSAGE_ROUNDS):
                run = await store.get(run_id)
                if run is None or run.channel_id is None or _shown(run):
                    break
                msg = proposal_message(
                    run, rule_of(deps, run), deps.clock(), policy=deps.policy, warnings=blockers(deps)
                )
                if run.message_ts is None:
                    ts = await deps.chat.post(run.channel_id, msg)
                    await store.set_message(run.id, run.channel_id, ts)
                else:
                    await deps.chat.update(run.channel_id, run.message_ts, msg)
                await store.mark_shown(run.id, run.version)
        finally:
            await deps.coord.release(f"run-message:{run_id}", token)
        if _shown(await store.get(run_id)):
            return


# --------------------------------------------------------------------------- propose


async def _cooldown_problem(
    deps: Deps,
    store: RemediationStore,
    run_target: str,
    rule: ApprovalRule,
    now: datetime,
    *,
    exclude: list[int],
    before: tuple[datetime, int] | None = None,
) -> str | None:
    if rule.cooldown_minutes <= 0:
        return None
    since = now - timedelta(minutes=rule.cooldown_minutes)
    recent = await store.recent_on_target(run_target, since, exclude=exclude, before=before)
    if recent is None:
        return None
    ready = recent.started_at + timedelta(minutes=rule.cooldown_minutes)
    return (
        f"{run_target} was changed by run {recent.id} (`{recent.action.value}`) at "
        f"{recent.started_at:%H:%M:%S} UTC; the policy cooldown is {rule.cooldown_minutes} min, "
        f"so the next change is possible after {ready:%H:%M:%S} UTC."
    )


async def _preview(deps: Deps, action: ActionName, params: BaseModel, argv: list[str] | None) -> PreviewInfo:
    cluster = deps.cluster
    label = await cluster_label(deps)
    if cluster is None:
        return PreviewInfo(
            summary_lines=("no preview: the Kubernetes cluster is not configured",),
            problem="the Kubernetes cluster is not configured, so nothing can run",
            cluster=label,
        )
    try:
        preview: Preview = await cluster.preview(action, action_params(params), argv=argv)
    except IntegrationError as err:
        return PreviewInfo(
            summary_lines=(f"could not preview: {err.message}",),
            problem=f"could not preview: {err.message}",
            cluster=label,
        )
    current: int | None = None
    if isinstance(params, ScaleParams) and preview.target_exists:
        try:
            status = await cluster.rollout_status(params.namespace, params.deployment)
            current = status.desired_replicas
        except IntegrationError:
            current = None
    return PreviewInfo(
        summary_lines=tuple(preview.summary_lines),
        dry_run_ok=preview.dry_run_ok,
        target_exists=preview.target_exists,
        resource_version=preview.resource_version,
        generation=preview.generation,
        fingerprint=preview.fingerprint,
        problem=preview.problem,
        current_replicas=current,
        cluster=label,
    )


async def propose(
    deps: Deps,
    incident: Incident,
    action: ActionName,
    params: BaseModel,
    *,
    requested_by: str | None,
    playbook: str | None = None,
    title: str | None = None,
    why: str = "",
    approval: str = "default",
    labels: Mapping[str, str] | None = None,
    generator_url: str = "",
    undo_of: int | None = None,
    dedupe_key: str | None = None,
    resolver: UsergroupResolver | None = None,
) -> ActionRun | None:
    """Check the policy, preview, store and post a proposal. A refusal raises UserError with
    the reason; None when this playbook proposal was already made for the incident.

    `title` and `why` are Slack mrkdwn that is already safe (playbook text rendered with
    `render_text`); the default title is built from validated names only."""
    policy = deps.policy
    rule = policy.rule_for(action, approval)
    if not isinstance(params, PARAMS_BY_ACTION[action]):
        raise TypeError(f"{action.value} takes {PARAMS_BY_ACTION[action].__name__}")
    if incident.status is IncidentStatus.RESOLVED:
        raise UserError(f"Incident {incident.ref} is resolved; remediations are not proposed any more.")
    if incident.channel_id is None:
        raise UserError(f"Incident {incident.ref} has no channel yet; try again in a moment.")
    if requested_by is not None and undo_of is None:
        membership = await _membership(deps, resolver, requested_by, rule.requesters)
        decision = may_request(
            policy, rule, action, user_id=requested_by, user_groups=membership.groups, rule_name=approval
        )
        if not decision.allowed:
            raise UserError(_with_problems(decision.reason, membership))
    namespace = namespace_of(action, params)
    namespace_allowed(rule, action, namespace, rule_name=approval).require()
    argv = exec_argv(policy, params) if isinstance(params, ExecParams) else None
    target = target_of(action, params)
    store = store_of(deps)
    now = deps.clock()
    problem = await _cooldown_problem(deps, store, target, rule, now, exclude=[undo_of] if undo_of else [])
    if problem:
        raise UserError(f"Not proposed: {problem}")
    preview = await _preview(deps, action, params, argv)
    bound = parameter_problem(policy, rule, action, params, current_replicas=preview.current_replicas)
    if bound:
        raise UserError(f"The policy refuses this {action.value}: {bound}.")
    needed = rule.approvals_needed
    new = NewRun(
        incident_id=incident.id,
        action=action,
        params=params.model_dump(mode="json"),
        target=target,
        namespace=namespace,
        title=title or escape(default_title(action, params)),
        why=why,
        playbook=playbook,
        requested_by=requested_by,
        approval_rule=approval,
        approvals_needed=needed,
        preview=preview,
        labels=dict(labels or {}),
        generator_url=generator_url,
        expires_at=now + timedelta(minutes=rule.expiry_minutes),
        channel_id=incident.channel_id,
        undo_of=undo_of,
        dedupe_key=dedupe_key,
    )
    who = f"<@{requested_by}>" if requested_by else (f"playbook `{playbook}`" if playbook else "incidentbot")
    run = await store.create(
        new,
        secrets.token_hex(TOKEN_BYTES),
        now,
        timeline=f"{who} proposed “{new.title}” ({action.value} on {target}), {needed} approval(s) needed",
        details={"argv": argv} if argv else {},
    )
    if run is None:
        return None
    log.info(
        "remediation.proposed",
        extra={"run_id": run.id, "incident_id": incident.id, "action": action.value, "target": target},
    )
    try:
        await refresh_message(deps, run.id)
    except IntegrationError as err:  # stored: the sweep posts it once Slack answers
        log.warning("remediation.post_failed", extra={"run_id": run.id, "error": str(err)})
    return run


# --------------------------------------------------------------------------- clicks


def _status_reason(run: ActionRun) -> str:
    match run.status:
        case RunStatus.APPROVED | RunStatus.RUNNING:
            return "This was already approved and is being executed."
        case RunStatus.SUCCEEDED:
            return "This already ran (succeeded)."
        case RunStatus.FAILED:
            return f"This already ran and failed: {run.error or 'see the thread'}."
        case RunStatus.REJECTED:
            return f"This proposal was {run.error or 'rejected'}."
        case RunStatus.EXPIRED:
            return (
                f"This proposal expired at {run.expires_at:%H:%M} UTC; propose it again "
                "(`/incident run ...`) if it is still needed."
            )
        case RunStatus.CANCELLED:
            return f"This was not executed: {run.error or 'refused'}."
    return f"This proposal is {run.status.value}."


async def _refuse(
    deps: Deps,
    store: RemediationStore,
    run: ActionRun | None,
    user: str,
    what: str,
    reason: str,
    **extra: Any,
) -> UserError:
    await store.refused(run, user, deps.clock(), {"click": what, "reason": reason, **extra})
    log.info("remediation.refused", extra={"run_id": run.id if run else None, "user": user, "reason": reason})
    return UserError(reason)


async def _load(deps: Deps, store: RemediationStore, token: str, user: str, what: str) -> ActionRun:
    run = await store.by_token(token) if TOKEN_RE.fullmatch(token or "") else None
    if run is None:
        raise await _refuse(
            deps,
            store,
            None,
            user,
            what,
            "This button is not valid (no such proposal). Use the buttons on the proposal message.",
            value=(token or "")[:100],
        )
    return run


async def _expire_now(deps: Deps, store: RemediationStore, run: ActionRun) -> None:
    if await store.expire(run.id, deps.clock()) is not None:
        _spawn_refresh(deps, run.id)


async def approve(deps: Deps, token: str, user: str, *, resolver: UsergroupResolver | None = None) -> Outcome:
    """One approval click, re-checked on the server. Completing the approvals starts the
    execution (supervised task) before this returns."""
    store = store_of(deps)
    run = await _load(deps, store, token, user, "approve")
    now = deps.clock()
    if run.status is not RunStatus.PROPOSED:
        raise await _refuse(deps, store, run, user, "approve", _status_reason(run))
    if run.expires_at <= now:
        await _expire_now(deps, store, run)
        raise await _refuse(
            deps,
            store,
            run,
            user,
            "approve",
            f"This proposal expired at {run.expires_at:%H:%M} UTC and can no longer be approved; "
            "propose it again if it is still needed.",
        )
    if not run.preview.dry_run_ok:
        raise await _refuse(
            deps,
            store,
            run,
            user,
            "approve",
            f"The dry run did not pass ({run.preview.problem or 'see the proposal'}); fix that and propose it again.",
        )
    rule = rule_of(deps, run)
    membership = await _membership(deps, resolver, user, list(rule.approvers))
    decision = may_approve(
        deps.policy,
        rule,
        run.action,
        user_id=user,
        user_groups=membership.groups,
        requested_by=run.requested_by,
        approvals=run.approvers,
        needed=run.approvals_needed,
        rule_name=run.approval_rule,
    )
    if not decision.allowed:
        raise await _refuse(deps, store, run, user, "approve", _with_problems(decision.reason, membership))
    result = await store.approve(run.id, user, now)
    run = result.run
    match result.outcome:
        case ApproveOutcome.COMPLETE:
            deps.metrics.approval_wait.observe(max(0.0, (now - run.created_at).total_seconds()))
            deps.supervisor.spawn(execute(deps, run.id, hint=run), name=f"run-{run.id}")
            _spawn_refresh(deps, run.id)
            log.info("remediation.approved", extra={"run_id": run.id, "user": user})
            return Outcome(
                f"Approved “{run.title}”: executing it now. Follow the thread for the result.", run
            )
        case ApproveOutcome.RECORDED:
            _spawn_refresh(deps, run.id)
            left = run.approvals_needed - len(run.approvers)
            return Outcome(
                f"Approval recorded ({len(run.approvers)} of {run.approvals_needed}); "
                f"waiting for {left} more approver(s).",
                run,
            )
        case ApproveOutcome.ALREADY:
            raise await _refuse(deps, store, run, user, "approve", "You already approved this.")
        case ApproveOutcome.EXPIRED:
            await _expire_now(deps, store, run)
            raise await _refuse(deps, store, run, user, "approve", _status_reason(run))
        case ApproveOutcome.NOT_PROPOSED:
            raise await _refuse(deps, store, run, user, "approve", _status_reason(run))
    raise AssertionError("unreachable")


async def reject(deps: Deps, token: str, user: str, *, resolver: UsergroupResolver | None = None) -> Outcome:
    store = store_of(deps)
    run = await _load(deps, store, token, user, "reject")
    now = deps.clock()
    if run.status is not RunStatus.PROPOSED:
        raise await _refuse(deps, store, run, user, "reject", _status_reason(run))
    if run.expires_at <= now:
        await _expire_now(deps, store, run)
        raise await _refuse(deps, store, run, user, "reject", "This proposal has already expired.")
    rule = rule_of(deps, run)
    membership = await _membership(deps, resolver, user, list(rule.approvers))
    decision = may_reject(
        deps.policy,
        rule,
        run.action,
        user_id=user,
        user_groups=membership.groups,
        requested_by=run.requested_by,
        rule_name=run.approval_rule,
    )
    if not decision.allowed:
        raise await _refuse(deps, store, run, user, "reject", _with_problems(decision.reason, membership))
    rejected = await store.reject(run.id, user, now)
    if rejected is None:
        current = await store.get(run.id)
        raise await _refuse(deps, store, current or run, user, "reject", _status_reason(current or run))
    deps.metrics.remediations.labels(run.action.value, RunStatus.REJECTED.value).inc()
    _spawn_refresh(deps, run.id)
    return Outcome(f"Rejected “{rejected.title}”.", rejected)


# --------------------------------------------------------------------------- execute


async def _recheck(
    deps: Deps,
    store: RemediationStore,
    run: ActionRun,
    params: BaseModel,
    now: datetime,
    resolver: UsergroupResolver | None,
) -> str | None:
    """Why the claimed run must not execute now, or None. The target itself is re-read and
    compared with the preview by the adapter, right before the request."""
    problems = blockers(deps)
    if problems:
        return problems[0]
    if now > run.expires_at:
        return f"the proposal expired at {run.expires_at:%H:%M:%S} UTC before it was executed"
    rule = rule_of(deps, run)
    allowed = namespace_allowed(rule, run.action, run.namespace, rule_name=run.approval_rule)
    if not allowed.allowed:
        return allowed.reason
    bound = parameter_problem(
        deps.policy, rule, run.action, params, current_replicas=run.preview.current_replicas
    )
    if bound:
        return f"the policy refuses it: {bound}"
    valid = []
    for approver in run.approvers:
        if approver == run.requested_by and not rule.requester_may_approve:
            continue
        membership = await _membership(deps, resolver, approver, list(rule.approvers))
        if deps.policy.in_roles(rule.approvers, approver, membership.groups):
            valid.append(approver)
    needed = max(rule.approvals_needed, run.approvals_needed)
    if len(valid) < needed:
        return f"only {len(valid)} of the {needed} approvals are still valid under the current policy"
    return await _cooldown_problem(
        deps,
        store,
        run.target,
        rule,
        now,
        exclude=[run.id] + ([run.undo_of] if run.undo_of else []),
        before=(run.started_at or now, run.id),
    )


def _result_json(result: Result) -> dict[str, Any]:
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


async def execute(
    deps: Deps, run_id: int, *, hint: ActionRun | None = None, resolver: UsergroupResolver | None = None
) -> ActionRun | None:
    """Claim the approved run and execute it, exactly once; None when another caller has it."""
    store = store_of(deps)
    pending = hint if hint is not None and hint.id == run_id else await store.get(run_id)
    if pending is None or pending.status is not RunStatus.APPROVED:
        return None
    params = parse_params(pending.action, pending.params)
    timeout = execute_timeout(pending.action, params)
    now = deps.clock()
    run = await store.claim(run_id, deps.owner, now, now + timedelta(seconds=timeout) + DEADLINE_MARGIN)
    if run is None:
        return None
    log.info("remediation.claimed", extra={"run_id": run.id, "owner": deps.owner})
    reason = await _recheck(deps, store, run, params, now, resolver)
    if reason is not None:
        return await _finish_refused(deps, store, run, reason)
    cluster = deps.cluster
    assert cluster is not None  # checked by _recheck
    argv = exec_argv(deps.policy, params) if isinstance(params, ExecParams) else None
    _spawn_refresh(deps, run.id)
    started = deps.clock()
    try:
        async with asyncio.timeout(timeout):
            result = await cluster.execute(
                run.action,
                action_params(params),
                run.preview.resource_version,
                expect_fingerprint=run.preview.fingerprint,
                argv=argv,
            )
    except UserError as err:
        return await _finish_refused(deps, store, run, str(err))
    except IntegrationError as err:
        return await _finish_failed(deps, store, run, err.message, status=err.status)
    except TimeoutError:
        return await _finish_failed(
            deps,
            store,
            run,
            f"timed out after {timeout:g}s; the change may be partly applied, check {run.target}",
        )
    except Exception:
        ref = secrets.token_hex(4)
        log.exception("remediation.execute_error", extra={"run_id": run.id, "ref": ref})
        await _finish_failed(deps, store, run, f"internal error (reference `{ref}`)")
        raise
    took = (deps.clock() - started).total_seconds()
    return await _finish_done(deps, store, run, result, took)


async def _finish_refused(
    deps: Deps, store: RemediationStore, run: ActionRun, reason: str
) -> ActionRun | None:
    done = await store.finish(
        run.id,
        deps.owner,
        RunStatus.CANCELLED,
        deps.clock(),
        event=AuditEvent.REFUSED,
        result=None,
        error=reason,
        timeline=f"“{run.title}” was not executed: {reason}",
    )
    deps.metrics.remediations.labels(run.action.value, RunStatus.CANCELLED.value).inc()
    log.info("remediation.refused_at_execution", extra={"run_id": run.id, "reason": reason})
    await _note(deps, run, f"⛔ Not executed: {escape(reason)}")
    _spawn_refresh(deps, run.id)
    return done


async def _finish_failed(
    deps: Deps, store: RemediationStore, run: ActionRun, error: str, *, status: int | None = None
) -> ActionRun | None:
    done = await store.finish(
        run.id,
        deps.owner,
        RunStatus.FAILED,
        deps.clock(),
        event=AuditEvent.FAILED,
        result=None,
        error=error,
        timeline=f"“{run.title}” failed: {error}",
        details={"http_status": status},
    )
    deps.metrics.remediations.labels(run.action.value, RunStatus.FAILED.value).inc()
    log.warning("remediation.failed", extra={"run_id": run.id, "error": error})
    await _note(deps, run, f"❌ `{run.action.value}` on {escape(run.target)} failed: {escape(error)}")
    _spawn_refresh(deps, run.id)
    return done


async def _finish_done(
    deps: Deps, store: RemediationStore, run: ActionRun, result: Result, took: float
) -> ActionRun | None:
    data = _result_json(result)
    ok = result.complete
    changes = "; ".join(result.changes) or "done"
    if ok:
        done = await store.finish(
            run.id,
            deps.owner,
            RunStatus.SUCCEEDED,
            deps.clock(),
            event=AuditEvent.SUCCEEDED,
            result=data,
            error=None,
            timeline=f"“{run.title}” succeeded: {changes}",
        )
        await _note(
            deps,
            run,
            f"✅ `{run.action.value}` on {escape(run.target)} done in {took:.1f}s: {escape(changes)}",
        )
    else:
        error = "the action did not complete: " + changes
        if result.exec_result is not None:
            error = f"the command exited with code {result.exec_result.exit_code}"
        done = await store.finish(
            run.id,
            deps.owner,
            RunStatus.FAILED,
            deps.clock(),
            event=AuditEvent.FAILED,
            result=data,
            error=error,
            timeline=f"“{run.title}” failed: {error}",
        )
        await _note(deps, run, f"❌ `{run.action.value}` on {escape(run.target)}: {escape(error)}")
    result_label = RunStatus.SUCCEEDED.value if ok else RunStatus.FAILED.value
    deps.metrics.remediations.labels(run.action.value, result_label).inc()
    log.info("remediation.executed", extra={"run_id": run.id, "complete": ok, "seconds": round(took, 3)})
    _spawn_refresh(deps, run.id)
    if done is not None and (ok or run.action in UNDOABLE):
        deps.supervisor.spawn(verify(deps, done), name=f"verify-{run.id}")
    return done


# --------------------------------------------------------------------------- verify


def alert_expression(generator_url: str) -> str | None:
    """The PromQL in a Prometheus generatorURL (`g0.expr`), or None."""
    if not generator_url:
        return None
    try:
        expr = parse_qs(urlsplit(generator_url).query).get("g0.expr", [""])[0].strip()
    except ValueError:
        return None
    return expr or None


def _sample_matches(sample_labels: Mapping[str, str], alert_labels: Mapping[str, str]) -> bool:
    """Whether a sample of the alert expression is this alert's series (its labels agree)."""
    return all(
        alert_labels.get(k) == v for k, v in sample_labels.items() if k != "__name__" and k in alert_labels
    )


async def _alert_context(deps: Deps, run: ActionRun) -> tuple[dict[str, str], str, Playbook | None]:
    labels, generator_url = dict(run.labels), run.generator_url
    if not labels:
        loaded = await deps.store.load_view(run.incident_id)
        if loaded is not None:
            view = loaded[0]
            alert = next(iter(view.firing), None) or next(iter(view.alerts), None)
            if alert is not None:
                labels, generator_url = dict(alert.labels), alert.generator_url
    playbook = deps.playbooks.by_name(run.playbook) if run.playbook else None
    if playbook is None and labels:
        playbook = deps.playbooks.match(labels)
    return labels, generator_url, playbook


async def _check_once(
    deps: Deps, labels: dict[str, str], generator_url: str, playbook: Playbook | None
) -> tuple[bool | None, str]:
    """(recovered, what the checks said); recovered None: nothing could be checked."""
    source = deps.metrics_source
    if source is None:
        return None, "recovery not checked: Prometheus is not configured (PROMETHEUS_URL)"
    checks = [step.check for step in (playbook.steps if playbook else []) if step.check is not None]
    if checks:
        texts: list[str] = []
        verdict: bool | None = True
        for check in checks:
            try:
                query = check.render_query(labels)
            except TemplateError as err:
                return None, f"recovery not checked: a step check cannot be filled in ({err})"
            samples = await source.query_instant(query)
            outcome = evaluate_check_all(check.op, check.value, [s.value for s in samples])
            name = check.description or query
            texts.append(f"{name}: {outcome.text}")
            if outcome.passed is not True:
                verdict = False
        return verdict, "runbook checks — " + "; ".join(texts)
    expr = alert_expression(generator_url)
    if expr is None:
        return None, "recovery not checked: no runbook step checks and no alert expression to re-run"
    samples = [s for s in await source.query_instant(expr) if _sample_matches(s.labels, labels)]
    if not samples:
        return True, f"the alert's expression returns no samples for this alert (`{expr}`)"
    values = ", ".join(f"{s.value:g}" for s in samples[:5])
    return False, f"the alert's expression still returns {len(samples)} sample(s) ({values}) (`{expr}`)"


async def _check_recovery(deps: Deps, run: ActionRun) -> tuple[bool | None, str]:
    """Re-run the checks until they pass or `remediation_verify_seconds` have passed."""
    if deps.metrics_source is None:
        return None, "recovery not checked: Prometheus is not configured (PROMETHEUS_URL)"
    labels, generator_url, playbook = await _alert_context(deps, run)
    window = deps.settings.remediation_verify_seconds
    interval = min(5.0, max(0.5, window / 10))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + window
    while True:
        try:
            recovered, text = await _check_once(deps, labels, generator_url, playbook)
        except IntegrationError as err:
            recovered, text = None, f"recovery unknown: could not query Prometheus: {err.message}"
        else:
            if recovered is None:  # nothing to check: waiting does not change that
                return recovered, text
        if recovered is True or loop.time() + interval > deadline:
            return recovered, text
        await asyncio.sleep(interval)


async def verify(deps: Deps, run: ActionRun) -> str:
    """Wait for the rollout, re-run the checks, report in the thread; offer the undo when the
    change did not help (or was applied only partly). Returns the verification text."""
    store = store_of(deps)
    cluster = deps.cluster
    recovered: bool | None
    params = parse_params(run.action, run.params)
    rollout_ok, rollout_text = True, ""
    if run.status is not RunStatus.SUCCEEDED:
        rollout_ok, rollout_text = False, f"the change was applied only partly ({run.error})"
    elif cluster is not None and isinstance(params, DeploymentTarget):
        try:
            status = await cluster.wait_rollout(params.namespace, params.deployment, ROLLOUT_TIMEOUT_S)
        except IntegrationError as err:
            rollout_ok, rollout_text = False, f"rollout status unknown: {err.message}"
        else:
            rollout_ok = status.state is RolloutState.COMPLETE
            rollout_text = status.message if rollout_ok else f"rollout {status.state.value}: {status.message}"
    if not rollout_ok:
        recovered, text = False, f"not recovered: {rollout_text}"
    else:
        recovered, checked = await _check_recovery(deps, run)
        parts = "; ".join(p for p in (rollout_text, checked) if p)
        verdict = "" if recovered is None else ("recovered: " if recovered else "not recovered: ")
        text = verdict + parts
    updated = await store.set_verification(
        run.id, text, deps.clock(), details={"recovered": recovered, "rollout_ok": rollout_ok}
    )
    icon = "ℹ️" if recovered is None else ("✅" if recovered else "⚠️")
    await _note(deps, run, f"{icon} Verification of “{run.title}”: {escape(text)}")
    _spawn_refresh(deps, run.id)
    log.info("remediation.verified", extra={"run_id": run.id, "recovered": recovered})
    if recovered is False:
        await offer_undo(deps, updated or run)
    return text


# --------------------------------------------------------------------------- undo


def undo_for(run: ActionRun) -> tuple[ActionName, BaseModel] | None:
    """The action that puts back what `run` changed, or None when there is none."""
    if run.action not in UNDOABLE:
        return None
    params = parse_params(run.action, run.params)
    if isinstance(params, ScaleParams):
        previous = run.preview.current_replicas
        if previous is None or previous == params.replicas:
            return None
        return ActionName.SCALE, ScaleParams(
            namespace=params.namespace, deployment=params.deployment, replicas=previous
        )
    if isinstance(params, DeploymentTarget):
        return ActionName.ROLLOUT_UNDO, RolloutUndoParams(
            namespace=params.namespace, deployment=params.deployment
        )
    if isinstance(params, NodeParams):
        return ActionName.UNCORDON, NodeParams(node=params.node)
    return None


async def offer_undo(deps: Deps, run: ActionRun) -> ActionRun | None:
    """Propose the undo of `run` as a new proposal under the same approval rules."""
    undo = undo_for(run)
    if undo is None or run.undo_of is not None:  # never an undo of an undo (no ping-pong)
        return None
    incident = await deps.store.get_incident(run.incident_id)
    if incident is None:
        return None
    action, params = undo
    try:
        proposal = await propose(
            deps,
            incident,
            action,
            params,
            requested_by=run.requested_by,
            playbook=run.playbook,
            title=f"Undo: {run.title}",
            why=f"Run {run.id} did not help ({escape(run.verification or run.error or 'see the thread')}).",
            approval=run.approval_rule,
            labels=run.labels,
            generator_url=run.generator_url,
            undo_of=run.id,
            dedupe_key=f"undo:{run.id}",
        )
    except UserError as err:
        await _note(deps, run, f"The undo ({action.value}) was not proposed: {err}")
        return None
    if proposal is not None:
        await _note(deps, run, f"↩️ Proposed the undo below: `{action.value}` on {escape(proposal.target)}.")
    return proposal


# --------------------------------------------------------------------------- sweep


async def expire_due(deps: Deps) -> None:
    """The sweep: expire proposals past their time, fail runs whose executor vanished, execute
    approved runs nobody claimed, and bring proposal messages up to date."""
    store = store_of(deps)
    now = deps.clock()
    for run in await store.expire_due(now):
        deps.metrics.remediations.labels(run.action.value, RunStatus.EXPIRED.value).inc()
        log.info("remediation.expired", extra={"run_id": run.id})
        _spawn_refresh(deps, run.id)
    for run in await store.interrupted(now):
        await _note(deps, run, f"❌ “{run.title}” was interrupted while running: {run.error}")
        _spawn_refresh(deps, run.id)
    for run_id in await store.approved_waiting(now, APPROVED_GRACE):
        deps.supervisor.spawn(execute(deps, run_id), name=f"run-{run_id}")
    for run_id in await store.unshown(now - MESSAGE_RETRY_WINDOW):
        _spawn_refresh(deps, run_id)


# --------------------------------------------------------------------------- playbooks


async def propose_playbook_remediations(
    deps: Deps,
    incident: Incident,
    alert_labels: Mapping[str, str],
    playbook: Playbook,
    *,
    generator_url: str = "",
) -> tuple[list[ActionRun], list[str]]:
    """Propose each of the playbook's remediations for this alert. A remediation whose
    parameters cannot be filled from the labels, or that the policy refuses, becomes a short
    "not proposed: <reason>" note in the channel instead. Returns (proposals, notes)."""
    labels = dict(alert_labels)
    runs: list[ActionRun] = []
    notes: list[str] = []
    for index, rem in enumerate(playbook.remediations):
        try:
            run = await _propose_one(deps, incident, playbook, rem, index, labels, generator_url)
        except (TemplateError, UserError, ValidationError) as err:
            notes.append(f"{_safe_title(rem, labels)}: not proposed: {escape(str(err))}")
            continue
        if run is not None:
            runs.append(run)
    if notes and incident.channel_id:
        try:
            await deps.chat.post(incident.channel_id, not_proposed_message(notes))
        except IntegrationError as err:
            log.warning("remediation.note_failed", extra={"incident_id": incident.id, "error": str(err)})
    return runs, notes


def _safe_title(rem: Remediation, labels: Mapping[str, str]) -> str:
    try:
        return render_text(rem.title, labels)
    except TemplateError:
        return escape(rem.title)


async def _propose_one(
    deps: Deps,
    incident: Incident,
    playbook: Playbook,
    rem: Remediation,
    index: int,
    labels: dict[str, str],
    generator_url: str,
) -> ActionRun | None:
    params = rem.render_params(labels)
    return await propose(
        deps,
        incident,
        rem.action,
        params,
        requested_by=None,
        playbook=playbook.name,
        title=render_text(rem.title, labels),
        why=render_text(rem.why, labels) if rem.why else "",
        approval=rem.approval,
        labels=labels,
        generator_url=generator_url,
        dedupe_key=f"playbook:{playbook.name}:{index}",
    )
