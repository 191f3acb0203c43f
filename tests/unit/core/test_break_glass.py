"""Break-glass in the policy: validation, which one applies, and the rule a break-glass run follows."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.core.policy import Policy

ROLES = {"sre": {"users": ["U0SRE"]}}
RULE = {"requesters": ["sre"], "approvers": ["sre"], "requester_may_approve": True, "cooldown_minutes": 10}


def test_global_break_glass_applies_to_rules_without_their_own() -> None:
    policy = Policy.model_validate(
        {
            "roles": ROLES,
            "break_glass": {"roles": ["commander"], "extra_approvals": 2},
            "approvals": {"default": RULE, "scale": {**RULE, "break_glass": {"roles": ["sre"]}}},
        }
    )
    assert policy.problems() == []
    default = policy.rule_for("rollout_undo")
    glass = policy.break_glass_for(default)
    assert glass is not None and glass.roles == ["commander"]
    bypassing = policy.bypassing(default)
    assert bypassing is not None
    assert bypassing.cooldown_minutes == 0 and not bypassing.requester_may_approve
    assert bypassing.required_approvals == 2
    scale = policy.bypassing(policy.rule_for("scale"))
    assert scale is not None and scale.required_approvals == 1  # its own: extra_approvals 1


def test_without_break_glass_nothing_bypasses() -> None:
    policy = Policy.model_validate({"roles": ROLES, "approvals": {"default": RULE}})
    assert policy.bypassing(policy.rule_for("rollout_undo")) is None


def test_break_glass_never_lowers_the_rules_approvals() -> None:
    policy = Policy.model_validate(
        {
            "roles": ROLES,
            "approvals": {"default": {**RULE, "approvals_needed": 3, "break_glass": {"roles": ["sre"]}}},
        }
    )
    bypassing = policy.bypassing(policy.rule_for("scale"))
    assert bypassing is not None and bypassing.required_approvals == 3


def test_break_glass_roles_are_checked() -> None:
    policy = Policy.model_validate(
        {
            "roles": ROLES,
            "break_glass": {"roles": ["everyone"]},
            "approvals": {"default": {**RULE, "break_glass": {"roles": ["nosuch", "channel_members"]}}},
        }
    )
    problems = {path: text for path, text in policy.problems()}
    assert "not 'everyone'" in problems[("break_glass", "roles", 0)]
    assert "unknown role 'nosuch'" in problems[("approvals", "default", "break_glass", "roles", 0)]
    assert "not 'channel_members'" in problems[("approvals", "default", "break_glass", "roles", 1)]


def test_break_glass_needs_roles_and_a_sane_count() -> None:
    with pytest.raises(ValidationError):
        Policy.model_validate({"break_glass": {"roles": []}})
    with pytest.raises(ValidationError):
        Policy.model_validate({"break_glass": {"roles": ["commander"], "extra_approvals": 0}})
