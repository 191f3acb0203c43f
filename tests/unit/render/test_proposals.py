"""The proposal message: pure rendering, valid Block Kit, buttons that carry the token only."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.core.actions import ActionName
from bot.core.blockkit import MAX_BLOCKS, Message
from bot.core.policy import Policy
from bot.core.runs import ActionRun, Approval, PreviewInfo, RunStatus
from bot.render.proposals import (
    APPROVE_ACTION,
    REJECT_ACTION,
    STATUS_HEADER,
    can_approve_now,
    not_proposed_message,
    params_text,
    proposal_message,
    role_mentions,
    thread_note,
)
from sandbox.slack import validate_message_blocks

NOW = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
TOKEN = "0123456789abcdef"
POLICY = Policy.model_validate(
    {
        "roles": {
            "sre": {"users": ["U0ALICE", "U0BOB"], "usergroups": ["S0SRE"]},
            "oncall": {"usergroups": ["sre-oncall"]},
            "empty": {},
        },
        "approvals": {
            "scale": {"requesters": ["oncall"], "approvers": ["sre", "oncall"], "namespaces_allow": ["api"]},
            "exec": {
                "requesters": ["sre"],
                "approvers": ["sre"],
                "approvals_needed": 2,
                "namespaces_allow": ["*"],
            },
        },
    }
)


def make_run(**changes: Any) -> ActionRun:
    run = ActionRun(
        id=7,
        token=TOKEN,
        incident_id=1,
        action=ActionName.SCALE,
        params={"namespace": "api", "deployment": "search-api", "replicas": 9},
        target="deployment api/search-api",
        namespace="api",
        title="Scale deployment api/search-api to 9 replicas",
        why="Traffic doubled; the runbook says scale out.",
        status=RunStatus.PROPOSED,
        approval_rule="default",
        approvals_needed=1,
        expires_at=NOW + timedelta(minutes=15),
        created_at=NOW - timedelta(minutes=1),
        preview=PreviewInfo(
            summary_lines=("deployment api/search-api: replicas 6 → 9", "ready now: 6/6"),
            dry_run_ok=True,
            target_exists=True,
            resource_version="812",
            generation=3,
            fingerprint="deployment:u1:generation=3",
            current_replicas=6,
            cluster="context `sandbox` (KUBECONFIG)",
        ),
        requested_by="U0CAROL",
    )
    return replace(run, **changes)


def render(run: ActionRun, action: ActionName = ActionName.SCALE, **kwargs: Any) -> Message:
    return proposal_message(run, POLICY.rule_for(action), NOW, policy=POLICY, **kwargs)


def buttons(msg: Message) -> list[dict[str, Any]]:
    return [e for b in msg.blocks if b["type"] == "actions" for e in b["elements"]]


def text_of(msg: Message) -> str:
    return json.dumps(msg.blocks, ensure_ascii=False)


def assert_valid(msg: Message) -> None:
    assert validate_message_blocks(msg.blocks) == []
    assert len(msg.blocks) <= MAX_BLOCKS
    assert msg.text


def test_proposal_shows_preview_target_cluster_approvers_and_expiry() -> None:
    msg = render(make_run())
    assert_valid(msg)
    text = text_of(msg)
    assert STATUS_HEADER[RunStatus.PROPOSED] in text
    assert "Scale deployment api/search-api to 9 replicas" in text
    assert "Traffic doubled" in text
    assert "replicas 6 → 9" in text and "ready now: 6/6" in text
    assert "server-side dry run passed" in text
    assert "`deployment api/search-api`" in text
    assert "replicas=9" in text
    assert "context `sandbox` (KUBECONFIG)" in text
    # Approver roles become mentions of their users and groups.
    assert (
        "<@U0ALICE>" in text and "<@U0BOB>" in text and "<!subteam^S0SRE>" in text and "@sre-oncall" in text
    )
    assert "0 of 1" in text
    # The expiry is a Slack date (each reader's own time zone), never a static "in 15m".
    expiry = int((NOW + timedelta(minutes=15)).timestamp())
    assert f"<!date^{expiry}^{{date_short_pretty}} {{time}}|2026-11-22 16:15 UTC>" in text
    assert "in 15m" not in text
    assert "<@U0CAROL>" in text  # requested by
    assert "not the requester" in text


def test_buttons_carry_the_opaque_token_only() -> None:
    msg = render(make_run())
    found = buttons(msg)
    assert [b["action_id"] for b in found] == [APPROVE_ACTION, REJECT_ACTION]
    assert all(b["value"] == TOKEN for b in found)
    assert "7" not in {b["value"] for b in found}  # never the database id


def test_approvals_so_far_are_counted_and_named() -> None:
    run = make_run(
        action=ActionName.EXEC,
        params={"namespace": "skillquest", "pod": "postgres-0", "template": "pg_x", "args": {"minutes": "5"}},
        target="pod skillquest/postgres-0",
        approvals_needed=2,
        approvals=(Approval("U0BOB", NOW),),
    )
    msg = render(run, ActionName.EXEC)
    assert_valid(msg)
    text = text_of(msg)
    assert "1 of 2: <@U0BOB>" in text
    assert "2 approval(s)" in text
    assert "template=pg_x args=minutes=5" in text


def test_no_buttons_once_final_and_the_result_is_shown() -> None:
    for status in (
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.REJECTED,
        RunStatus.EXPIRED,
        RunStatus.CANCELLED,
    ):
        run = make_run(
            status=status,
            started_at=NOW,
            finished_at=NOW + timedelta(seconds=2),
            result={"changes": ["replicas 6 → 9"]} if status is RunStatus.SUCCEEDED else None,
            error='deployments.apps "search-api" is forbidden' if status is RunStatus.FAILED else None,
            verification="recovered: the alert's expression returns no samples"
            if status is RunStatus.SUCCEEDED
            else None,
        )
        msg = render(run)
        assert_valid(msg)
        assert buttons(msg) == []
        assert STATUS_HEADER[status] in text_of(msg)
    succeeded = text_of(render(make_run(status=RunStatus.SUCCEEDED, result={"changes": ["replicas 6 → 9"]})))
    assert "*Result*" in succeeded and "replicas 6 → 9" in succeeded
    failed = text_of(render(make_run(status=RunStatus.FAILED, error="403 Forbidden: cannot patch")))
    assert "*Error*: 403 Forbidden: cannot patch" in failed
    cancelled = text_of(render(make_run(status=RunStatus.CANCELLED, error="the kill switch is on")))
    assert "*Not executed*: the kill switch is on" in cancelled


def test_no_buttons_while_approved_or_running() -> None:
    for status in (RunStatus.APPROVED, RunStatus.RUNNING):
        msg = render(make_run(status=status, approvals=(Approval("U0BOB", NOW),)))
        assert_valid(msg)
        assert buttons(msg) == []


def test_failed_dry_run_offers_reject_only_and_shows_the_problem() -> None:
    preview = PreviewInfo(
        summary_lines=('deployments.apps "nope" not found',),
        problem='deployments.apps "nope" not found',
        cluster="context `sandbox` (KUBECONFIG)",
    )
    run = make_run(preview=preview)
    msg = render(run)
    assert_valid(msg)
    assert [b["action_id"] for b in buttons(msg)] == [REJECT_ACTION]
    assert '⚠️ deployments.apps \\"nope\\" not found' in text_of(msg)
    assert not can_approve_now(run, NOW)


def test_expired_but_not_yet_swept_shows_expired_without_buttons() -> None:
    run = make_run(expires_at=NOW - timedelta(seconds=1))
    msg = render(run)
    assert_valid(msg)
    assert buttons(msg) == []
    assert "(expired)" in text_of(msg)


def test_warnings_for_kill_switch_and_missing_cluster() -> None:
    msg = render(make_run(), warnings=["The kill switch is on: nothing executes."])
    assert_valid(msg)
    assert "⚠️ The kill switch is on" in text_of(msg)


def test_hostile_text_cannot_mention_or_break_the_code_block() -> None:
    preview = PreviewInfo(summary_lines=("<!channel> ``` <http://evil|click>",), dry_run_ok=True)
    run = make_run(
        preview=preview, params={"namespace": "api", "deployment": "x", "replicas": 1, "note": "<!here>"}
    )
    msg = render(run)
    assert_valid(msg)
    text = text_of(msg)
    assert "<!channel>" not in text and "<!here>" not in text and "<http://evil" not in text
    assert "&lt;!channel&gt;" in text


def test_long_previews_and_params_are_cut_to_slack_limits() -> None:
    lines = tuple(f"line {i} " + "x" * 400 for i in range(40))
    run = make_run(
        preview=PreviewInfo(summary_lines=lines, dry_run_ok=True),
        params={"namespace": "api", "deployment": "x", "env": {f"K{i}": "v" * 100 for i in range(50)}},
        title="T" * 500,
        why="W" * 5000,
    )
    msg = render(run)
    assert_valid(msg)
    preview = next(b for b in msg.blocks if b["type"] == "section" and "*Preview*" in b["text"]["text"])
    body = preview["text"]["text"]
    assert re.search(r"… \d+ more```$", body)  # cut between lines, the code block still closed
    short = make_run(preview=PreviewInfo(summary_lines=tuple(f"l{i}" for i in range(20)), dry_run_ok=True))
    assert "… 5 more" in text_of(render(short))


def test_role_mentions_and_params_text() -> None:
    assert role_mentions(POLICY, []) == "_nobody (no role listed in policy.yaml)_"
    assert role_mentions(POLICY, ["empty"]) == "`empty` (empty)"
    assert role_mentions(POLICY, ["missing"]) == "`missing` (empty)"
    assert role_mentions(None, ["sre"]) == "`sre` (empty)"
    assert params_text({"namespace": "api", "deployment": "x"}) == "—"
    assert params_text({"node": "worker-1", "timeout_seconds": 300}) == "timeout_seconds=300"


def test_playbook_proposal_names_the_playbook() -> None:
    msg = render(make_run(requested_by=None, playbook="search-api-latency"))
    text = text_of(msg)
    assert "playbook `search-api-latency`" in text
    assert "not the requester" not in text


def test_thread_note_and_not_proposed_messages_are_valid() -> None:
    note = thread_note("✅ done: replicas 6 → 9")
    assert_valid(note)
    skipped = not_proposed_message(["Restart x: not proposed: namespace `kube-system` is denied"])
    assert_valid(skipped)
    assert "kube-system" in text_of(skipped)


def test_missing_required_roles_are_shown_until_covered() -> None:
    run = make_run(
        action=ActionName.EXEC,
        params={"namespace": "skillquest", "pod": "postgres-0", "template": "pg", "args": {}},
        approvals_needed=2,
        approvers_all_of=("dba", "sre"),
        approvals=(Approval("U0ALICE", NOW, ("sre",)),),
    )
    text = text_of(render(run, ActionName.EXEC))
    assert "2 approval(s), one each from `dba`, `sre`, not the requester" in text
    assert "1 of 2: <@U0ALICE>" in text and "still needed: an approver with role `dba`" in text
    done = replace(
        run, status=RunStatus.APPROVED, approvals=(*run.approvals, Approval("U0CAROL", NOW, ("dba",)))
    )
    assert "still needed" not in text_of(render(done, ActionName.EXEC))
    assert_valid(render(run, ActionName.EXEC))


def test_the_alert_labels_a_target_came_from_are_named() -> None:
    text = text_of(render(make_run(target_labels=("deployment",))))
    assert "`deployment api/search-api`\\n_target from alert label `deployment`_" in text
    both = text_of(render(make_run(target_labels=("namespace", "deployment"))))
    assert "_target from alert labels `namespace`, `deployment`_" in both
    assert "target from" not in text_of(render(make_run()))


def test_set_env_values_are_never_shown() -> None:
    run = make_run(
        action=ActionName.SET_ENV,
        params={"namespace": "api", "deployment": "search-api", "env": {"STRIPE_SECRET_KEY": "sk_live_x"}},
    )
    text = text_of(render(run, ActionName.SET_ENV))
    assert "STRIPE_SECRET_KEY=(value hidden)" in text and "sk_live_x" not in text


def test_a_proposal_expired_with_its_incident_says_why() -> None:
    run = make_run(status=RunStatus.EXPIRED, error="because incident #4 was resolved by <@U0BOB>")
    text = text_of(render(run))
    assert "*Expired*: because incident #4 was resolved" in text
    assert APPROVE_ACTION not in text and REJECT_ACTION not in text
