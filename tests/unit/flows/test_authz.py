"""Remediation authorization: pure decisions over the policy (who requests, approves, rejects;
namespaces; parameter bounds; exec templates)."""

from __future__ import annotations

import pytest

from bot.core.actions import ActionName, DrainParams, ExecParams, NodeParams, ScaleParams
from bot.core.errors import UserError
from bot.core.policy import Policy
from bot.flows.remediation.authz import (
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

POLICY = Policy.model_validate(
    {
        "roles": {
            "sre": {"users": ["U0ALICE", "U0BOB"], "usergroups": []},
            "oncall": {"users": [], "usergroups": ["sre-oncall", "S0ONCALL"]},
            "dba": {"users": ["U0CAROL"]},
        },
        "approvals": {
            "default": {
                "requesters": ["oncall", "sre"],
                "approvers": ["sre"],
                "namespaces_allow": ["api", "skill*"],
            },
            "scale": {
                "requesters": ["oncall", "sre"],
                "approvers": ["sre"],
                "namespaces_allow": ["api"],
                "max_replicas": 20,
                "max_scale_step": 5,
            },
            "rollout_restart": {
                "requesters": ["oncall", "sre"],
                "approvers": ["oncall", "sre"],
                "requester_may_approve": True,
                "namespaces_allow": ["*"],
            },
            "exec": {
                "requesters": ["sre", "dba"],
                "approvers": ["sre", "dba"],
                "approvals_needed": 2,
                "namespaces_allow": ["skillquest"],
            },
            "drain": {
                "requesters": ["sre"],
                "approvers": ["sre"],
                "approvals_needed": 2,
                "namespaces_allow": ["*"],
            },
            "open": {"requesters": ["everyone"], "approvers": ["sre"], "namespaces_allow": ["*"]},
        },
        "exec_templates": {
            "pg_terminate": {
                "argv": ["psql", "-c", "SELECT pg_terminate_backend(pid) WHERE age > '{minutes} minutes'"],
                "args": {"minutes": {"pattern": "[1-9][0-9]{0,3}"}},
            }
        },
    }
)
SCALE = POLICY.rule_for(ActionName.SCALE)
RESTART = POLICY.rule_for(ActionName.ROLLOUT_RESTART)
EXEC = POLICY.rule_for(ActionName.EXEC)
DEFAULT = POLICY.rule_for(ActionName.SET_ENV)


# --------------------------------------------------------------------------- request


def test_requester_roles_by_user_id_and_by_usergroup() -> None:
    assert may_request(POLICY, SCALE, ActionName.SCALE, user_id="U0ALICE").allowed
    assert may_request(POLICY, SCALE, ActionName.SCALE, user_id="U0DAVE", user_groups={"sre-oncall"}).allowed
    refused = may_request(POLICY, SCALE, ActionName.SCALE, user_id="U0CAROL")
    assert not refused.allowed
    assert "`oncall`" in refused.reason and "`sre`" in refused.reason and "`scale`" in refused.reason


def test_everyone_may_request_under_an_open_rule_and_the_rule_name_is_named() -> None:
    rule = POLICY.rule_for(ActionName.SCALE, "open")
    assert may_request(POLICY, rule, ActionName.SCALE, user_id="U0NOBODY", rule_name="open").allowed
    refused = may_request(POLICY, EXEC, ActionName.EXEC, user_id="U0NOBODY", rule_name="exec-rule")
    assert "rule `exec-rule`" in refused.reason


def test_no_policy_means_nobody_may_do_anything() -> None:
    empty = Policy()
    rule = empty.rule_for(ActionName.SCALE)
    assert not may_request(empty, rule, ActionName.SCALE, user_id="U0ALICE").allowed
    decision = may_approve(
        empty, rule, ActionName.SCALE, user_id="U0ALICE", requested_by=None, approvals=(), needed=1
    )
    assert not decision.allowed
    assert "nobody" in decision.reason
    assert not namespace_allowed(rule, ActionName.SCALE, "default").allowed


# --------------------------------------------------------------------------- approve


def test_approver_must_hold_an_approver_role() -> None:
    ok = may_approve(
        POLICY, SCALE, ActionName.SCALE, user_id="U0BOB", requested_by="U0DAVE", approvals=(), needed=1
    )
    assert ok.allowed
    outsider = may_approve(
        POLICY, SCALE, ActionName.SCALE, user_id="U0CAROL", requested_by="U0DAVE", approvals=(), needed=1
    )
    assert not outsider.allowed
    assert "may not approve `scale`" in outsider.reason and "`sre`" in outsider.reason


def test_approver_role_through_a_usergroup() -> None:
    decision = may_approve(
        POLICY,
        RESTART,
        ActionName.ROLLOUT_RESTART,
        user_id="U0DAVE",
        user_groups={"S0ONCALL"},
        requested_by=None,
        approvals=(),
        needed=1,
    )
    assert decision.allowed
    assert needs_usergroups(POLICY, RESTART.approvers, "U0DAVE")
    assert not needs_usergroups(POLICY, RESTART.approvers, "U0ALICE")  # a direct member
    assert not needs_usergroups(POLICY, SCALE.approvers, "U0DAVE")  # no group grants `sre`
    assert role_usergroups(POLICY, ["oncall", "sre", "missing"]) == ["sre-oncall", "S0ONCALL"]


def test_requester_may_not_approve_their_own_two_person_action() -> None:
    decision = may_approve(
        POLICY, EXEC, ActionName.EXEC, user_id="U0ALICE", requested_by="U0ALICE", approvals=(), needed=2
    )
    assert not decision.allowed
    assert "requester" in decision.reason and "2 other approver(s)" in decision.reason
    # Also for a one-approval rule that forbids it.
    single = may_approve(
        POLICY, SCALE, ActionName.SCALE, user_id="U0ALICE", requested_by="U0ALICE", approvals=(), needed=1
    )
    assert not single.allowed


def test_requester_may_approve_when_the_rule_says_so() -> None:
    decision = may_approve(
        POLICY,
        RESTART,
        ActionName.ROLLOUT_RESTART,
        user_id="U0ALICE",
        requested_by="U0ALICE",
        approvals=(),
        needed=1,
    )
    assert decision.allowed


def test_a_second_approval_by_the_same_user_does_not_count() -> None:
    decision = may_approve(
        POLICY, EXEC, ActionName.EXEC, user_id="U0BOB", requested_by="U0ALICE", approvals=("U0BOB",), needed=2
    )
    assert not decision.allowed
    assert "1 more approval(s) from someone else" in decision.reason


def test_playbook_proposals_have_no_requester() -> None:
    decision = may_approve(
        POLICY, SCALE, ActionName.SCALE, user_id="U0ALICE", requested_by=None, approvals=(), needed=1
    )
    assert decision.allowed


# --------------------------------------------------------------------------- reject


def test_reject_by_approvers_or_the_requester_only() -> None:
    assert may_reject(POLICY, SCALE, ActionName.SCALE, user_id="U0BOB", requested_by="U0DAVE").allowed
    assert may_reject(POLICY, SCALE, ActionName.SCALE, user_id="U0DAVE", requested_by="U0DAVE").allowed
    refused = may_reject(POLICY, SCALE, ActionName.SCALE, user_id="U0CAROL", requested_by="U0DAVE")
    assert not refused.allowed and "reject" in refused.reason


# --------------------------------------------------------------------------- namespaces and targets


@pytest.mark.parametrize(
    ("namespace", "allowed"),
    [("api", True), ("skillquest", True), ("skillforge", True), ("kube-system", False), ("other", False)],
)
def test_namespace_allow_list_with_globs(namespace: str, allowed: bool) -> None:
    assert namespace_allowed(DEFAULT, ActionName.SET_ENV, namespace).allowed is allowed


def test_deny_list_wins_over_a_wildcard_allow() -> None:
    decision = namespace_allowed(RESTART, ActionName.ROLLOUT_RESTART, "kube-system")
    assert not decision.allowed
    assert "never allows" in decision.reason and "`kube-system`" in decision.reason
    other = namespace_allowed(SCALE, ActionName.SCALE, "birthday-scheduler")
    assert "allowed: `api`" in other.reason


def test_node_actions_are_cluster_scoped() -> None:
    assert namespace_of(ActionName.DRAIN, DrainParams(node="worker-1")) == ""
    assert namespace_of(ActionName.CORDON, {"node": "worker-1"}) == ""
    assert namespace_of(ActionName.SCALE, {"namespace": "api", "deployment": "x", "replicas": 1}) == "api"
    drain = POLICY.rule_for(ActionName.DRAIN)
    assert namespace_allowed(drain, ActionName.DRAIN, "").allowed
    refused = namespace_allowed(SCALE, ActionName.CORDON, "")
    assert "cluster-scoped targets" in refused.reason
    assert isinstance(NodeParams(node="worker-1"), NodeParams)


# --------------------------------------------------------------------------- parameters


def test_scale_bounds() -> None:
    def problem(current: int | None, replicas: int) -> str | None:
        params = ScaleParams(namespace="api", deployment="search-api", replicas=replicas)
        return parameter_problem(POLICY, SCALE, ActionName.SCALE, params, current_replicas=current)

    assert problem(6, 9) is None
    assert "above the policy maximum of 20" in (problem(6, 21) or "")
    assert "exceeds the policy step of 5" in (problem(6, 12) or "")
    assert "exceeds the policy step of 5" in (problem(12, 6) or "")
    assert problem(None, 12) is None  # unknown current: only the maximum applies


def test_exec_templates_render_argv_and_refuse_bad_arguments() -> None:
    good = ExecParams(
        namespace="skillquest", pod="postgres-0", template="pg_terminate", args={"minutes": "5"}
    )
    argv = exec_argv(POLICY, good)
    assert argv == ["psql", "-c", "SELECT pg_terminate_backend(pid) WHERE age > '5 minutes'"]
    assert parameter_problem(POLICY, EXEC, ActionName.EXEC, good, current_replicas=None) is None

    hostile = ExecParams(
        namespace="skillquest",
        pod="postgres-0",
        template="pg_terminate",
        args={"minutes": "5'; DROP TABLE x; --"},
    )
    with pytest.raises(UserError, match="does not match"):
        exec_argv(POLICY, hostile)
    assert "does not match" in (
        parameter_problem(POLICY, EXEC, ActionName.EXEC, hostile, current_replicas=None) or ""
    )
    unknown = ExecParams(namespace="skillquest", pod="postgres-0", template="rm_rf", args={})
    with pytest.raises(UserError, match=r"not allow-listed.*`pg_terminate`"):
        exec_argv(POLICY, unknown)
    missing = ExecParams(namespace="skillquest", pod="postgres-0", template="pg_terminate", args={})
    with pytest.raises(UserError, match="missing argument 'minutes'"):
        exec_argv(POLICY, missing)


def test_decision_require_raises_the_reason() -> None:
    refused = namespace_allowed(SCALE, ActionName.SCALE, "kube-system")
    with pytest.raises(UserError, match="kube-system"):
        refused.require()
    namespace_allowed(SCALE, ActionName.SCALE, "api").require()


# --------------------------------------------------------------------------- one approver per role

ALL_OF = POLICY.model_copy(
    update={
        "approvals": {
            **POLICY.approvals,
            "dba-and-sre": POLICY.approvals["exec"].model_copy(
                update={"approvers": ["sre"], "approvers_all_of": ["dba", "sre"]}
            ),
        }
    }
)
DBA_AND_SRE = ALL_OF.rule_for(ActionName.EXEC, "dba-and-sre")


def approve_all_of(user: str, roles: tuple[str, ...], approvals: dict[str, tuple[str, ...]]) -> str:
    decision = may_approve(
        ALL_OF,
        DBA_AND_SRE,
        ActionName.EXEC,
        user_id=user,
        requested_by="U0ERIN",
        approvals=tuple(approvals),
        needed=DBA_AND_SRE.required_approvals,
        rule_name="dba-and-sre",
        required_roles=DBA_AND_SRE.approvers_all_of,
        approval_roles=approvals,
        user_roles=roles,
    )
    return "allowed" if decision.allowed else decision.reason


def test_a_second_sre_is_refused_while_a_dba_is_missing() -> None:
    assert approve_all_of("U0ALICE", ("sre",), {}) == "allowed"
    refusal = approve_all_of("U0BOB", ("sre",), {"U0ALICE": ("sre",)})
    assert "still needs an approver with role `dba`" in refusal
    assert "one approver from each of `dba`, `sre`" in refusal and "your roles among them: `sre`" in refusal
    # The DBA (only in approvers_all_of, not in approvers) may approve.
    assert approve_all_of("U0CAROL", ("dba",), {"U0ALICE": ("sre",)}) == "allowed"
    # Someone holding neither role may not approve at all.
    assert "may not approve" in approve_all_of("U0ZED", (), {})
