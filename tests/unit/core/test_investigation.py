"""The rules code applies to the investigator's answers, and redaction."""

from __future__ import annotations

import json

import pytest

from bot.core.actions import ActionName, RolloutUndoParams
from bot.core.investigation import (
    INDIRECT_CONFIDENCE_CAP,
    AnswerError,
    Evidence,
    Redactor,
    ToolCall,
    clip_output,
    judge,
)

CALLS = [
    ToolCall("c1", "k8s_rollout_history", {}, "revision 7 image=api:2.4.0", True, Evidence.DIRECT),
    ToolCall("c2", "similar_incidents", {}, "#3 rollback fixed it", True, Evidence.INDIRECT),
    ToolCall("c3", "promql_instant", {}, "error: refused", False, Evidence.DIRECT),
]


def answer(**data: object) -> str:
    return "```json\n" + json.dumps(data) + "\n```"


def test_uncited_and_failed_citations_are_dropped() -> None:
    verdict = judge(
        answer(
            findings=[
                {"claim": "the deploy broke it", "citations": ["c1"], "confidence": 0.9},
                {"claim": "made up", "citations": [], "confidence": 0.99},
                {"claim": "cites a refused call", "citations": ["c3"], "confidence": 0.8},
                {"claim": "cites nothing real", "citations": ["c9"], "confidence": 0.8},
            ]
        ),
        CALLS,
    )
    assert [f.claim for f in verdict.findings] == ["the deploy broke it"]
    assert len(verdict.dropped) == 3
    assert not verdict.abstained


def test_indirect_evidence_caps_confidence() -> None:
    verdict = judge(answer(findings=[{"claim": "like #3", "citations": ["c2"], "confidence": 0.95}]), CALLS)
    assert verdict.findings[0].confidence == INDIRECT_CONFIDENCE_CAP
    assert verdict.findings[0].capped


def test_not_enough_evidence_is_an_answer_and_carries_no_action() -> None:
    action = {
        "action": "rollout_undo",
        "params": {"namespace": "api", "deployment": "x"},
        "citations": ["c1"],
    }
    verdict = judge(answer(findings=[], actions=[action], not_enough_evidence=True), CALLS)
    assert verdict.abstained and verdict.actions == ()


def test_actions_are_typed_and_never_exec() -> None:
    good = {
        "action": "rollout_undo",
        "params": {"namespace": "api", "deployment": "api"},
        "citations": ["c1"],
    }
    verdict = judge(
        answer(
            findings=[{"claim": "bad deploy", "citations": ["c1"], "confidence": 0.8}],
            actions=[
                good,
                {"action": "exec", "params": {}, "citations": ["c1"]},
                {"action": "scale", "params": {"namespace": "API!"}, "citations": ["c1"]},
            ],
        ),
        CALLS,
    )
    assert [a.action for a in verdict.actions] == [ActionName.ROLLOUT_UNDO]
    assert isinstance(verdict.actions[0].params, RolloutUndoParams)
    assert len(verdict.dropped) == 2
    unknown = judge(answer(findings=[], actions=[{"action": "rm -rf", "citations": ["c1"]}]), CALLS)
    assert unknown.actions == () and unknown.dropped == ("unknown action 'rm -rf'",)


def test_unstructured_answer_is_an_error() -> None:
    with pytest.raises(AnswerError):
        judge("I think it is the database.", CALLS)


@pytest.mark.parametrize(
    "secret",
    [
        "xoxb-1234567890-abcdefghijkl",
        "AKIAABCDEFGHIJKLMNOP",
        "hunter2hunter2",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl",
        "s3cr3t-db-pass",
    ],
)
def test_redaction_removes_secrets(secret: str) -> None:
    text = (
        f"token={secret} Authorization: Bearer {secret} password: {secret} DB_PASSWORD={secret}"
        f" postgres://app:{secret}@db:5432/app"
    )
    scrubbed = Redactor.with_secrets(["hunter2hunter2"])(text)
    assert secret not in scrubbed


def test_redaction_removes_emails_and_known_values_anywhere() -> None:
    scrubbed = Redactor.with_secrets(["plain-known-value"])("mail oncall@example.com, key plain-known-value")
    assert "oncall@example.com" not in scrubbed and "plain-known-value" not in scrubbed


def test_redaction_keeps_ordinary_text_and_emails_when_asked() -> None:
    redact = Redactor(emails=False)
    assert (
        redact("pods restarted 5 times; contact ops@example.com")
        == "pods restarted 5 times; contact ops@example.com"
    )


def test_clip_output_says_what_was_cut() -> None:
    clipped = clip_output("x" * 1000, 200)
    assert len(clipped) <= 200 and "characters cut" in clipped
