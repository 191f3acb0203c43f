"""policy.yaml: severity mapping, response times, roles, approval rules, exec templates."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config.directory import validate_dir
from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR, load_playbooks
from bot.core.actions import ActionName
from bot.core.incident import Severity
from bot.core.policy import (
    CHANNEL_MEMBERS,
    COMMANDER,
    DEFAULT_SEVERITY_MAPPING,
    EVERYONE,
    ROLE_ONLY,
    ApprovalRule,
    ExecTemplate,
    Permission,
    Policy,
    approval_complete,
    approval_helps,
    map_severity,
    missing_roles,
)


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


# --------------------------------------------------------------------------- severity


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("critical", Severity.P1),
        ("CRITICAL", Severity.P1),
        (" page ", Severity.P1),
        ("error", Severity.P2),
        ("warning", Severity.P2),
        ("info", Severity.P4),
        ("P0", Severity.P1),
        ("p1", Severity.P1),
        ("P2", Severity.P2),
        ("p3", Severity.P3),
        ("P4", Severity.P4),
        ("sev1", Severity.P1),
        ("SEV-2", Severity.P2),
        ("Sev 3", Severity.P3),
        ("sev4", Severity.P4),
        ("1", Severity.P1),
        ("4", Severity.P4),
    ],
)
def test_map_severity_defaults(value: str, expected: Severity) -> None:
    assert map_severity(value) is expected
    assert Policy().map_severity(value) is expected


@pytest.mark.parametrize("value", [None, "", "bogus", "p5", "sev9"])
def test_unknown_severity_is_none(value: str | None) -> None:
    assert map_severity(value) is None
    assert Policy().severity_for(value) is Severity.P3


def test_severity_mapping_is_merged_over_defaults() -> None:
    policy = Policy.model_validate(
        {"severity_mapping": {"Warning": "P3", "disaster": "P1"}, "default_severity": "P4"}
    )
    assert policy.map_severity("warning") is Severity.P3
    assert policy.map_severity("DISASTER") is Severity.P1
    assert policy.map_severity("critical") is Severity.P1  # default kept
    assert policy.severity_for("bogus") is Severity.P4
    assert set(DEFAULT_SEVERITY_MAPPING) <= set(policy.severity_mapping)


def test_severity_policy_defaults_from_the_seeds() -> None:
    policy = Policy()
    assert policy.response(Severity.P1).ack_minutes == 15
    assert policy.response(Severity.P1).escalate_after_minutes == 15
    assert policy.response(Severity.P1).page
    assert policy.response(Severity.P2).ack_minutes == 30
    assert policy.response(Severity.P4).escalate_after_minutes is None
    partial = Policy.model_validate({"severity_policy": {"P2": {"ack_minutes": 60}}})
    assert partial.response(Severity.P2).ack_minutes == 60
    assert partial.response(Severity.P1).ack_minutes == 15


# --------------------------------------------------------------------------- safe defaults and approvals


def test_empty_policy_allows_nothing() -> None:
    policy = Policy()
    rule = policy.rule_for(ActionName.SCALE)
    assert rule.approvers == []
    assert not rule.allows_namespace("default")
    assert not policy.in_roles(rule.approvers, "U123")
    assert policy.exec_templates == {}
    assert not policy.kill_switch


def test_rule_lookup_order() -> None:
    policy = Policy.model_validate(
        {
            "roles": {"sre": {"users": ["U01"]}},
            "approvals": {
                "default": {"approvers": ["sre"], "approvals_needed": 1},
                "scale": {"approvers": ["sre"], "approvals_needed": 2},
                "careful": {"approvers": ["sre"], "approvals_needed": 3},
            },
        }
    )
    assert policy.rule_for(ActionName.SCALE).approvals_needed == 2
    assert policy.rule_for(ActionName.ROLLOUT_RESTART).approvals_needed == 1
    assert policy.rule_for(ActionName.SCALE, "careful").approvals_needed == 3
    assert policy.rule_for(ActionName.SCALE, "missing").approvers == []  # unknown name: deny


def test_namespaces_deny_wins_and_kube_system_is_denied_by_default() -> None:
    rule = ApprovalRule(namespaces_allow=["*"])
    assert rule.allows_namespace("skillquest")
    assert not rule.allows_namespace("kube-system")
    rule = ApprovalRule(namespaces_allow=["team-*"], namespaces_deny=["team-prod"])
    assert rule.allows_namespace("team-dev")
    assert not rule.allows_namespace("team-prod")
    assert not rule.allows_namespace("other")


def test_scale_bounds() -> None:
    rule = ApprovalRule(max_replicas=20, max_scale_step=3)
    assert rule.scale_violation(6, 9) is None
    assert "maximum" in (rule.scale_violation(6, 21) or "")
    assert "step" in (rule.scale_violation(2, 10) or "")


def test_roles_users_groups_and_everyone() -> None:
    policy = Policy.model_validate(
        {"roles": {"sre": {"users": ["U0SRE"], "usergroups": ["S0GROUP", "sre-team"]}, "dba": {}}}
    )
    assert policy.in_roles(["sre"], "U0SRE")
    assert policy.in_roles(["sre"], "U0OTHER", ["sre-team"])
    assert policy.in_roles(["dba", "sre"], "U0OTHER", ["S0GROUP"])
    assert not policy.in_roles(["dba"], "U0SRE")
    assert policy.in_roles(["everyone"], "U0ANY")


def test_policy_rejects_unknown_keys_and_bad_ids() -> None:
    with pytest.raises(ValidationError):
        Policy.model_validate({"approval": {}})
    with pytest.raises(ValidationError):
        Policy.model_validate({"roles": {"sre": {"users": ["alice"]}}})
    with pytest.raises(ValidationError):
        Policy.model_validate({"approvals": {"default": {"approvals_needed": 0}}})


# --------------------------------------------------------------------------- exec templates


def test_exec_template_renders_argv_without_a_shell() -> None:
    template = ExecTemplate.model_validate(
        {
            "argv": ["psql", "-c", "SELECT 1 WHERE x > interval '{minutes} minutes' AND y = '{{literal}}'"],
            "args": {"minutes": {"pattern": "[1-9][0-9]{0,3}"}},
        }
    )
    assert template.render({"minutes": "5"}) == [
        "psql",
        "-c",
        "SELECT 1 WHERE x > interval '5 minutes' AND y = '{literal}'",
    ]
    for bad in ["5; DROP TABLE users", "0", "5' OR '1'='1", "12345", "5\n"]:
        with pytest.raises(ValueError, match="does not match"):
            template.render({"minutes": bad})
    with pytest.raises(ValueError, match="missing"):
        template.render({})
    with pytest.raises(ValueError, match="unknown"):
        template.render({"minutes": "5", "extra": "x"})


def test_exec_template_placeholders_must_be_declared_and_used() -> None:
    with pytest.raises(ValidationError, match="undeclared"):
        ExecTemplate.model_validate({"argv": ["echo", "{x}"]})
    with pytest.raises(ValidationError, match="not used"):
        ExecTemplate.model_validate({"argv": ["echo"], "args": {"x": {"pattern": "a"}}})
    with pytest.raises(ValidationError, match="invalid regular expression"):
        ExecTemplate.model_validate({"argv": ["echo", "{x}"], "args": {"x": {"pattern": "("}}})
    assert ExecTemplate.model_validate(["uptime"]).render({}) == ["uptime"]


# --------------------------------------------------------------------------- the bundled policy


def test_bundled_policy() -> None:
    policy = load_playbooks(DEFAULT_PLAYBOOKS_DIR).policy
    assert policy.response(Severity.P1).ack_minutes == 15
    assert policy.map_severity("warning") is Severity.P2
    exec_rule = policy.rule_for(ActionName.EXEC)
    assert exec_rule.approvals_needed == 2
    assert not exec_rule.requester_may_approve
    assert not policy.rule_for(ActionName.SCALE).allows_namespace("kube-system")
    assert policy.rule_for(ActionName.SCALE).allows_namespace("skillquest")
    argv = policy.exec_templates["pg_terminate_long_running"].render({"minutes": "5"})
    assert argv[:2] == ["psql", "-c"]
    assert "interval '5 minutes'" in argv[2]
    # Roles ship empty: nobody can approve until the operator fills them in.
    assert not policy.in_roles(policy.rule_for(ActionName.SCALE).approvers, "U0ANYONE")


# --------------------------------------------------------------------------- validation with lines


def test_policy_problems_have_file_and_line(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        severity_mapping:
          warning: P7
        roles:
          sre:
            users: [alice]
        approvals:
          default:
            approvers: [sre, nobody]
          scale:
            requesters: [everyone]
            approvers: [everyone]
        exec_templates:
          bad:
            argv: [psql, "{minutes}"]
        kill_switch: maybe
        surprise: 1
        """
    )
    (tmp_path / "policy.yaml").write_text(text)
    problems = validate_dir(tmp_path)
    rendered = [str(p) for p in problems]
    path = str(tmp_path / "policy.yaml")
    expect = {
        line_of(text, "warning: P7"): "severity_mapping.warning",
        line_of(text, "users: [alice]"): "roles.sre.users.0",
        line_of(text, "  bad:"): "exec_templates.bad: argv uses undeclared argument(s) minutes",
        line_of(text, "kill_switch"): "kill_switch",
        line_of(text, "surprise"): "surprise",
    }
    for line, fragment in expect.items():
        assert any(r.startswith(f"{path}:{line}: ") and fragment in r for r in rendered), (
            line,
            fragment,
            rendered,
        )


def test_policy_cross_references_have_lines(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        roles:
          sre: {users: [U0SRE]}
        approvals:
          default:
            approvers: [sre, nobody]
          scale:
            requesters: [everyone]
            approvers: [everyone]
        """
    )
    (tmp_path / "policy.yaml").write_text(text)
    rendered = [str(p) for p in validate_dir(tmp_path)]
    path = str(tmp_path / "policy.yaml")
    assert any(
        r.startswith(f"{path}:{line_of(text, 'nobody')}: ") and "unknown role 'nobody'" in r for r in rendered
    )
    assert any(
        r.startswith(f"{path}:{line_of(text, 'approvers: [everyone]')}: ") and "may not approve" in r
        for r in rendered
    )


def test_missing_policy_file_is_the_safe_default(tmp_path: Path) -> None:
    assert validate_dir(tmp_path) == []
    assert load_playbooks(tmp_path).policy == Policy()


# --------------------------------------------------------------------------- one approver per role


def test_required_roles_need_a_different_approver_each() -> None:
    required = ["dba", "sre"]
    assert missing_roles(required, {}) == ["dba", "sre"]
    assert missing_roles(required, {"U0ALICE": ["sre"]}) == ["dba"]
    # Two SREs cover `sre` once: a DBA is still missing.
    assert missing_roles(required, {"U0ALICE": ["sre"], "U0BOB": ["sre"]}) == ["dba"]
    assert not approval_complete(required, 2, {"U0ALICE": ["sre"], "U0BOB": ["sre"]})
    assert approval_complete(required, 2, {"U0ALICE": ["sre"], "U0CAROL": ["dba"]})
    # One person holding both roles covers only one of them.
    assert missing_roles(required, {"U0DAVE": ["dba", "sre"]}) == ["sre"]
    # The assignment is found even when the first approver's role must move (augmenting path).
    assert missing_roles(required, {"U0DAVE": ["dba", "sre"], "U0CAROL": ["dba"]}) == []
    assert missing_roles(["dba", "sre", "oncall"], {"a": ["sre", "dba"], "b": ["dba"], "c": ["oncall"]}) == []


def test_an_approval_that_brings_nothing_is_not_wanted() -> None:
    required = ["dba", "sre"]
    assert approval_helps(required, 2, {}, "U0ALICE", ["sre"])
    assert not approval_helps(required, 2, {"U0ALICE": ["sre"]}, "U0BOB", ["sre"])
    assert approval_helps(required, 2, {"U0ALICE": ["sre"]}, "U0CAROL", ["dba"])
    # A third approval of any role is wanted while approvals_needed is not reached.
    assert approval_helps(required, 3, {"U0ALICE": ["sre"], "U0CAROL": ["dba"]}, "U0BOB", ["sre"])
    assert not approval_helps(required, 3, {"U0ALICE": ["sre"], "U0BOB": ["sre"]}, "U0DAVE", ["sre"])
    # Without required roles it is the plain count.
    assert approval_helps([], 2, {"U0ALICE": []}, "U0BOB", [])


def test_approvers_all_of_raises_the_count_and_may_approve() -> None:
    rule = ApprovalRule(approvers=["sre"], approvers_all_of=["dba", "sre"], approvals_needed=1)
    assert rule.required_approvals == 2
    assert rule.approver_roles == ["sre", "dba"]
    assert ApprovalRule(approvals_needed=3, approvers_all_of=["dba"]).required_approvals == 3


def test_approvers_all_of_is_checked_against_the_roles(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """        roles:
          sre: {users: [U0SRE]}
        approvals:
          exec:
            approvers: [sre]
            approvers_all_of: [dba, sre, sre]
          drain:
            approvers: [sre]
            approvers_all_of: [everyone]
        kill_switch_roles: [sre, ops]
        """
    )
    (tmp_path / "policy.yaml").write_text(text)
    rendered = [str(p) for p in validate_dir(tmp_path)]
    path = str(tmp_path / "policy.yaml")
    assert any(
        r.startswith(f"{path}:{line_of(text, 'approvers_all_of: [dba')}: ") and "unknown role 'dba'" in r
        for r in rendered
    ), rendered
    assert any("sre listed twice" in r for r in rendered), rendered
    assert any("approvers_all_of: 'everyone' may not approve" in r for r in rendered), rendered
    assert any(
        r.startswith(f"{path}:{line_of(text, 'kill_switch_roles')}: ") and "unknown role 'ops'" in r
        for r in rendered
    ), rendered


def test_bundled_exec_needs_a_dba_and_an_sre_and_uncordon_follows_cordon() -> None:
    policy = load_playbooks(DEFAULT_PLAYBOOKS_DIR).policy
    exec_rule = policy.rule_for(ActionName.EXEC)
    assert exec_rule.approvers_all_of == ["dba", "sre"] and exec_rule.required_approvals == 2
    uncordon = policy.rule_for(ActionName.UNCORDON)
    assert uncordon.allows_namespace("")  # cluster-scoped, as cordon and drain
    assert policy.rule_for(ActionName.CORDON).allows_namespace("")
    assert policy.kill_switch_roles == ["oncall", "sre"]


def test_uncordon_without_its_own_rule_follows_cordon_then_drain() -> None:
    cordon = {"approvers": ["sre"], "namespaces_allow": ["*"]}
    drain = {"approvers": ["sre"], "approvals_needed": 2, "namespaces_allow": ["*"]}
    roles = {"sre": {"users": ["U0SRE"]}}
    both = Policy.model_validate(
        {"roles": roles, "approvals": {"default": {}, "cordon": cordon, "drain": drain}}
    )
    assert both.rule_for(ActionName.UNCORDON) == both.approvals["cordon"]
    only_drain = Policy.model_validate({"roles": roles, "approvals": {"default": {}, "drain": drain}})
    assert only_drain.rule_for(ActionName.UNCORDON) == only_drain.approvals["drain"]
    own = Policy.model_validate({"roles": roles, "approvals": {"uncordon": {}, "cordon": cordon}})
    assert own.rule_for(ActionName.UNCORDON) == own.approvals["uncordon"]
    # A named rule is used as named.
    assert both.rule_for(ActionName.UNCORDON, "cordon") == both.approvals["cordon"]


# --------------------------------------------------------------------------- lifecycle permissions


def test_lifecycle_defaults_are_safe() -> None:
    lifecycle = Policy().lifecycle
    assert lifecycle.roles_for(Permission.DECLARE) == [EVERYONE]
    for permission in (Permission.ACK, Permission.STATUS, Permission.RESOLVE, Permission.INVESTIGATE):
        assert lifecycle.roles_for(permission) == [CHANNEL_MEMBERS], permission
    assert lifecycle.roles_for(Permission.SEVERITY_DOWNGRADE) == [COMMANDER]
    for permission in ROLE_ONLY:
        assert lifecycle.roles_for(permission) == [], permission  # nobody until the policy says
    assert lifecycle.silence_max(Severity.P1) == timedelta(hours=4)
    assert lifecycle.silence_max(Severity.P4) == timedelta(days=3)


def test_bundled_lifecycle_names_responder_roles() -> None:
    policy = load_playbooks(DEFAULT_PLAYBOOKS_DIR).policy
    lifecycle = policy.lifecycle
    assert lifecycle.roles_for(Permission.SILENCE) == ["oncall", "sre"]
    assert lifecycle.roles_for(Permission.SILENCE_ELEVATED) == ["sre"]
    assert lifecycle.roles_for(Permission.RESOLVE_PAGED) == ["oncall", "sre"]
    assert CHANNEL_MEMBERS in lifecycle.roles_for(Permission.ACK)
    assert CHANNEL_MEMBERS not in lifecycle.roles_for(Permission.SEVERITY_DOWNGRADE)
    assert lifecycle.problems(policy.roles) == []


def test_silence_caps_merge_over_defaults_and_are_bounded() -> None:
    lifecycle = Policy.model_validate({"lifecycle": {"silence_max_minutes": {"P1": 60}}}).lifecycle
    assert lifecycle.silence_max(Severity.P1) == timedelta(hours=1)
    assert lifecycle.silence_max(Severity.P2) == timedelta(hours=12)
    for bad in (0, 10081):
        with pytest.raises(ValidationError):
            Policy.model_validate({"lifecycle": {"silence_max_minutes": {"P1": bad}}})
    with pytest.raises(ValidationError):
        Policy.model_validate({"lifecycle": {"unsilence": ["sre"]}})


def test_lifecycle_problems_have_file_and_line(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        roles:
          sre: {users: [U0SRE]}
          channel_members: {users: [U0X]}
        lifecycle:
          ack: [channel_members, nobody]
          silence: [everyone]
          graph: [channel_members]
          severity_downgrade: [commander, channel_members]
          resolve_paged: [commander]
        """
    )
    (tmp_path / "policy.yaml").write_text(text)
    rendered = [str(p) for p in validate_dir(tmp_path)]
    path = str(tmp_path / "policy.yaml")
    expect = {
        line_of(text, "channel_members: {users"): "roles.channel_members: role 'channel_members' is built in",
        line_of(text, "ack: ["): "lifecycle.ack.1: unknown role 'nobody'",
        line_of(text, "silence: ["): "lifecycle.silence.0: silence needs a named role, not 'everyone'",
        line_of(text, "graph: ["): "lifecycle.graph.0: graph needs a named role",
        line_of(
            text, "severity_downgrade"
        ): "lifecycle.severity_downgrade.1: severity_downgrade needs a named role",
        line_of(text, "resolve_paged"): "lifecycle.resolve_paged.0: resolve_paged needs a named role",
    }
    for line, fragment in expect.items():
        assert any(r.startswith(f"{path}:{line}: ") and fragment in r for r in rendered), (
            line,
            fragment,
            rendered,
        )
    # The commander may lower a P1/P2 (not a problem).
    assert not any("severity_downgrade.0" in r for r in rendered)
    # A value out of range is a schema problem with its line too.
    bad = "lifecycle:\n  silence_max_minutes:\n    P1: 99999\n"
    (tmp_path / "policy.yaml").write_text(bad)
    assert [str(p) for p in validate_dir(tmp_path)] == [
        f"{path}:3: lifecycle.silence_max_minutes.P1: Input should be less than or equal to 10080"
    ]
