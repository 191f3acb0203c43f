"""Break-glass: who may bypass a remediation cooldown, and what it costs. Pure.

A cooldown keeps two changes of one target apart, but after a restart made things worse the
responder must be able to undo it now. ``break_glass`` in ``policy.yaml`` (global, or per
approval rule, which wins) names the roles that may ask for it (the built-in ``commander``
is the incident's commander) and how many people other than the requester must approve:
``extra_approvals`` is a floor on the approvals, and the requester's own approval never
counts. Everything else of the rule (requesters, approvers, namespaces, bounds) still holds.
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_REASON", "BreakGlass", "break_glass_problems", "bypassing_rule_fields"]

# The built-in role of the incident's commander (the lifecycle policy's name for it).
COMMANDER = "commander"
MAX_REASON = 300


class BreakGlass(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    roles: list[str] = Field(
        min_length=1,
        description="roles that may bypass a cooldown (`commander`: the incident's commander)",
    )
    extra_approvals: int = Field(
        default=1,
        ge=1,
        le=5,
        description="approvals needed from people other than the requester (at least the rule's count)",
    )


def break_glass_problems(
    where: tuple[str | int, ...], rule: BreakGlass | None, roles: Collection[str]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Unknown roles; anybody or bystanders may never bypass a cooldown."""
    if rule is None:
        return []
    return [
        (
            (*where, "break_glass", "roles", i),
            f"break_glass needs the commander or a named role, not {role!r}",
        )
        if role in ("everyone", "channel_members")
        else ((*where, "break_glass", "roles", i), f"unknown role {role!r} (define it under roles)")
        for i, role in enumerate(rule.roles)
        if role != COMMANDER and role not in roles
    ]


def bypassing_rule_fields(rule_approvals: int, glass: BreakGlass) -> dict[str, object]:
    """The fields of an approval rule that change under break-glass: no cooldown, the
    requester's approval does not count, at least `extra_approvals` approvals."""
    return {
        "cooldown_minutes": 0,
        "requester_may_approve": False,
        "approvals_needed": max(rule_approvals, glass.extra_approvals),
    }
