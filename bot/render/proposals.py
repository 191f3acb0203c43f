"""Pure message builders for remediation proposals: (run, rule, now) -> Message. No I/O, no clock.

The proposal message shows what will change (the server-side dry run's before → after lines),
where (cluster, target, and the alert labels a playbook took the target from), who may approve,
how many approvals and which required roles are still missing, when the proposal expires, and
its status; once a run is final it shows the result and verification. Parameters are shown as
`bot.core.actions.public_params` has them (never an environment value). Buttons carry the
run's opaque token only; the handler reloads the run and re-checks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core.actions import HOST_ACTIONS, ActionName, public_params
from bot.core.blockkit import (
    MAX_SECTION_TEXT,
    Block,
    Message,
    actions,
    button,
    clip,
    confirm,
    context,
    divider,
    escape,
    header,
    inline,
    message,
    section,
    single_line,
)
from bot.core.policy import EVERYONE, ApprovalRule, Policy, missing_roles
from bot.core.runs import ActionRun, RunStatus
from bot.render.times import at, when

APPROVE_ACTION = "approve_action"
REJECT_ACTION = "reject_action"

STATUS_HEADER = {
    RunStatus.PROPOSED: "🛠️ Remediation proposed",
    RunStatus.APPROVED: "👍 Remediation approved",
    RunStatus.RUNNING: "⏳ Remediation running",
    RunStatus.SUCCEEDED: "✅ Remediation succeeded",
    RunStatus.FAILED: "❌ Remediation failed",
    RunStatus.REJECTED: "🚫 Remediation rejected",
    RunStatus.EXPIRED: "⌛ Remediation proposal expired",
    RunStatus.CANCELLED: "⛔ Remediation not executed",
}
MAX_PREVIEW_LINES = 15
MAX_PARAMS_TEXT = 600
MAX_LINE = 500


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    return str(value)


def params_text(params: dict[str, Any]) -> str:
    """`k=v` pairs of the parameters that matter to a reader (the target is shown apart)."""
    shown = {
        k: v for k, v in params.items() if k not in ("namespace", "deployment", "pod", "node", "cronjob")
    }
    parts = [f"{k}={_plain(v)}" for k, v in shown.items() if v not in (None, {}, [])]
    return inline(" ".join(parts), MAX_PARAMS_TEXT) if parts else "—"


def role_mentions(policy: Policy | None, roles: list[str]) -> str:
    """Roles as Slack mentions of their users and user groups."""
    if not roles:
        return "_nobody (no role listed in policy.yaml)_"
    parts: list[str] = []
    for name in roles:
        if name == EVERYONE:
            parts.append("anyone")
            continue
        role = policy.roles.get(name) if policy is not None else None
        members = [f"<@{u}>" for u in role.users] if role else []
        for group in role.usergroups if role else []:
            members.append(
                f"<!subteam^{group}>" if group.startswith("S") and group.isupper() else f"@{group}"
            )
        parts.append(f"`{name}` ({', '.join(members) if members else 'empty'})")
    return "; ".join(parts)


def _expiry(run: ActionRun, now: datetime) -> str:
    if run.status is RunStatus.PROPOSED and run.expires_at <= now:
        return f"{at(run.expires_at)} (expired)"
    return at(run.expires_at)


def _roles(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _approvals(run: ActionRun) -> str:
    who = ", ".join(f"<@{u}>" for u in run.approvers)
    count = f"{len(run.approvers)} of {run.approvals_needed}"
    text = f"{count}: {who}" if who else count
    missing = missing_roles(run.approvers_all_of, run.approval_roles)
    if missing and run.status is RunStatus.PROPOSED:
        wanted = " and one with ".join(f"`{r}`" for r in missing)
        text += f"\nstill needed: an approver with role {wanted}"
    return text


def _target(run: ActionRun) -> str:
    text = f"`{inline(run.target)}`"
    if run.target_labels:
        plural = "s" if len(run.target_labels) > 1 else ""
        text += f"\n_target from alert label{plural} {_roles(run.target_labels)}_"
    return text


FENCE = "`" * 3


def code_block(lines: list[str] | tuple[str, ...], budget: int) -> str:
    """Lines as a code block of at most `budget` characters: fences kept, "… N more" when cut."""
    out: list[str] = []
    used = 2 * len(FENCE)
    for index, raw in enumerate(lines):
        line = clip(escape(raw).replace(FENCE, "'" * 3), MAX_LINE)
        if index >= MAX_PREVIEW_LINES or used + len(line) + 1 > budget - 20:
            out.append(f"… {len(lines) - index} more")
            break
        out.append(line)
        used += len(line) + 1
    return FENCE + ("\n".join(out) or "(nothing)") + FENCE


def _preview_block(run: ActionRun) -> Block:
    preview = run.preview
    if preview.dry_run_ok and run.action in HOST_ACTIONS:
        title = "*Preview* (what runs, and the state read on the host)"
    elif preview.dry_run_ok:
        title = "*Preview* (server-side dry run passed)"
    else:
        title = f"*Preview*: ⚠️ {clip(escape(preview.problem or 'the dry run did not pass'), MAX_LINE)}"
    return section(f"{title}\n{code_block(preview.summary_lines, MAX_SECTION_TEXT - len(title) - 1)}")


def _result_blocks(run: ActionRun) -> list[Block]:
    blocks: list[Block] = []
    result = run.result or {}
    changes = [str(c) for c in result.get("changes") or []]
    if changes:
        blocks.append(section(f"*Result*\n{code_block(changes, MAX_SECTION_TEXT - 12)}"))
    output = result.get("output")
    if output:
        tail = str(output).splitlines()[-MAX_PREVIEW_LINES:]
        blocks.append(section(f"*Output*\n{code_block(tail, MAX_SECTION_TEXT - 12)}"))
    if run.error:
        label = {RunStatus.CANCELLED: "Not executed", RunStatus.EXPIRED: "Expired"}.get(run.status, "Error")
        blocks.append(section(f"*{label}*: {escape(run.error)}"))
    if run.verification:
        blocks.append(section(f"*Verification*: {escape(run.verification)}"))
    return blocks


def _timing(run: ActionRun) -> str:
    parts = [f"run {run.id}", f"proposed {when(run.created_at)}"]
    if run.started_at:
        parts.append(f"started {when(run.started_at)}")
    if run.finished_at and run.started_at and run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        parts.append(f"took {(run.finished_at - run.started_at).total_seconds():.1f}s")
    if run.undo_of:
        parts.append(f"undoes run {run.undo_of}")
    return " · ".join(parts)


def can_approve_now(run: ActionRun, now: datetime) -> bool:
    """Whether the approve button is offered (the handler re-checks everything anyway)."""
    return run.status is RunStatus.PROPOSED and run.expires_at > now and run.preview.dry_run_ok


# Actions whose approval cannot simply be taken back: Approve asks first and is not the
# highlighted default.
DANGEROUS = frozenset({ActionName.EXEC, ActionName.DRAIN, ActionName.ROLLOUT_UNDO})


def is_dangerous(run: ActionRun) -> bool:
    """Exec, drain, rollout undo, and a scale that lowers the replicas (or to zero)."""
    if run.action in DANGEROUS:
        return True
    if run.action is ActionName.SCALE:
        replicas = int(run.params.get("replicas", 0))
        current = run.preview.current_replicas
        return replicas == 0 or (current is not None and replicas < current)
    return False


def approve_button(run: ActionRun) -> Block:
    """Approve: highlighted for ordinary actions; for dangerous ones plain, behind a confirm."""
    if not is_dangerous(run):
        return button("Approve", APPROVE_ACTION, run.token, style="primary")
    element = button("Approve…", APPROVE_ACTION, run.token)
    element["confirm"] = confirm(
        f"Approve {run.action.value.replace('_', ' ')}?",
        f"*{clip(single_line(run.title), 150)}* on `{clip(run.target, 80)}`"
        " cannot simply be taken back. Approve it?",
        "Approve",
    )
    return element


def proposal_message(
    run: ActionRun,
    rule: ApprovalRule,
    now: datetime,
    *,
    policy: Policy | None = None,
    warnings: list[str] | None = None,
) -> Message:
    """The proposal message for `run` under `rule`; `warnings` (kill switch, no cluster) are
    shown above the buttons."""
    approvers = [r for r in rule.approver_roles if r != EVERYONE]
    blocks: list[Block] = [header(STATUS_HEADER[run.status])]
    title = clip(single_line(run.title), 300)
    blocks.append(section(f"*{title}*" + (f"\n{clip(run.why, 1500)}" if run.why else "")))
    requirement = f"{run.approvals_needed} approval(s)"
    if run.approvers_all_of:
        requirement += f", one each from {_roles(run.approvers_all_of)}"
    if not rule.requester_may_approve and run.requested_by:
        requirement += ", not the requester"
    fields = [
        f"*Action*\n`{run.action.value}`",
        f"*Target*\n{_target(run)}",
        f"*Parameters*\n{params_text(public_params(run.action, run.params))}",
        f"*{'Host' if run.action in HOST_ACTIONS else 'Cluster'}*\n{escape(run.preview.cluster or 'not configured')}",
        f"*Requested by*\n{run.requester_text}",
        f"*Who may approve*\n{role_mentions(policy, approvers)} · {requirement}",
        f"*Approvals*\n{_approvals(run)}",
        f"*Expires*\n{_expiry(run, now)}",
    ]
    blocks.append(section(f"*Status*: {run.status.value}", fields=fields))
    blocks.append(_preview_block(run))
    blocks.extend(_result_blocks(run))
    notes = [f"⚠️ {escape(w)}" for w in warnings or []]
    if run.break_glass:
        notes.append(
            f"🔓 Break-glass by {run.requester_text}, bypassing the cooldown: {escape(run.break_glass)}"
        )
    if notes:
        blocks.append(context(*notes))
    blocks.append(context(_timing(run)))
    if run.status is RunStatus.PROPOSED and run.expires_at > now:
        buttons: list[Block] = []
        if can_approve_now(run, now):
            buttons.append(approve_button(run))
        buttons.append(button("Reject", REJECT_ACTION, run.token, style="danger"))
        blocks.append(divider())
        blocks.append(actions(*buttons, block_id=f"run-{run.id}"))
    text = f"{STATUS_HEADER[run.status]}: {run.title} ({run.action.value} on {run.target})"
    return message(text, blocks)


def thread_note(text: str) -> Message:
    """A short reply in the proposal's thread (results, errors, verification)."""
    return message(text, [section(text)])


def not_proposed_message(fates: list[str]) -> Message:
    """What became of each remediation of a runbook when some were not proposed: proposed, or
    not proposed with the reason."""
    lines = "\n".join(f"• {n}" for n in fates)
    text = "Some runbook remediations were not proposed"
    return message(text, [section(f"*{text}*\n{lines}")])
