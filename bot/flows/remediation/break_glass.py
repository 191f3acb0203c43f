"""Break-glass at proposal time: who may bypass a cooldown, the rule a break-glass run then
follows, and how it is announced. The executor re-derives that rule from the policy as it is
at execution (`Access.rule_of`), so removing `break_glass` from the policy stops runs already
proposed under it."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.blockkit import Message, escape, section
from bot.core.break_glass import MAX_REASON
from bot.core.errors import UserError
from bot.core.incident import Incident
from bot.core.policy import COMMANDER, ApprovalRule, Policy
from bot.flows.remediation.authz import roles_text
from bot.flows.remediation.common import Access, with_problems

BREAK_GLASS_ARG = "breakglass"


@dataclass(frozen=True, slots=True)
class Bypass:
    """A granted break-glass: the rule the run follows, the reason and the cooldown it bypasses."""

    rule: ApprovalRule
    reason: str
    cooldown: str


def hint(policy: Policy, rule: ApprovalRule) -> str:
    """What to add to a cooldown refusal when the policy lets someone bypass it."""
    glass = policy.break_glass_for(rule)
    if glass is None:
        return ""
    return (
        f" Break-glass: {roles_text(glass.roles)} may bypass the cooldown by adding "
        f'`{BREAK_GLASS_ARG}="<reason>"` to `/incident run`; it then needs '
        f"{max(rule.required_approvals, glass.extra_approvals)} approval(s) from other people."
    )


async def grant(
    policy: Policy,
    access: Access,
    incident: Incident,
    rule: ApprovalRule,
    *,
    user: str | None,
    reason: str,
    cooldown: str | None,
) -> Bypass:
    """The break-glass rule for `user`'s request, or UserError saying why not (nothing is
    stored nor previewed before this returns)."""
    glass = policy.break_glass_for(rule)
    if glass is None:
        raise UserError("Break-glass is not allowed for this action by policy.yaml; the cooldown stands.")
    text = " ".join(reason.split())
    if not text or len(text) > MAX_REASON:
        raise UserError(
            f'Give the reason for the break-glass: `{BREAK_GLASS_ARG}="<reason>"` (at most {MAX_REASON} characters).'
        )
    named = [r for r in glass.roles if r != COMMANDER]
    membership = await access.membership(user, named) if user and named else None
    is_commander = COMMANDER in glass.roles and user is not None and incident.commander == user
    holds = is_commander or (
        user is not None and membership is not None and policy.in_roles(named, user, membership.groups)
    )
    if not holds:
        refusal = (
            f"Break-glass is for {roles_text(glass.roles)} of incident {incident.ref}, and you are not one;"
            " nothing was proposed."
        )
        raise UserError(with_problems(refusal, membership) if membership else refusal)
    if cooldown is None:
        raise UserError(
            f"No cooldown applies to this target now; propose it without `{BREAK_GLASS_ARG}=` (nothing was proposed)."
        )
    bypassed = policy.bypassing(rule)
    assert bypassed is not None  # break_glass_for gave a rule
    return Bypass(bypassed, text, cooldown)


def announcement(user: str, title: str, bypass: Bypass) -> Message:
    """The channel message that says who broke the glass, why, and what it still needs."""
    needed = bypass.rule.required_approvals
    text = (
        f"🔓 *Break-glass*: <@{user}> bypasses the cooldown for “{title}”: {escape(bypass.reason)}\n"
        f"Bypassed: {escape(bypass.cooldown)}\n"
        f"It still needs {needed} approval(s) from people other than <@{user}>."
    )
    return Message(text=f"Break-glass by <@{user}>: {escape(bypass.reason)}", blocks=[section(text)])
