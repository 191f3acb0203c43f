"""Which diagnostic lines reach the channel, and that the whole output goes to the thread."""

from __future__ import annotations

import json

from bot.render.diagnostics import (
    MAX_SHOWN_DIAGNOSTIC_LINES,
    DiagnosticOutput,
    diagnostic_messages,
    is_severe,
)


def _code(blocks: list[dict[str, object]]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        text = block.get("text")
        body = text.get("text", "") if isinstance(text, dict) else ""
        for piece in str(body).split("```")[1::2]:
            lines += [line for line in piece.strip("\n").split("\n") if line.strip()]
    return lines


def test_structured_logs_are_judged_by_their_level_plain_lines_by_a_level_word() -> None:
    assert is_severe(json.dumps({"level": "error", "msg": "x"}))
    assert is_severe('2026-01-01T00:00:00Z {"severity": "WARNING", "msg": "slow"}')
    assert not is_severe(json.dumps({"level": "info", "msg": "retrying after error"}))
    assert is_severe("Warning  BackOff  x3 Pod/api-1: Back-off restarting failed container")
    assert is_severe("api-1   0/1 Running restarts=4 CrashLoopBackOff")
    assert is_severe("level=warn msg=slow")
    assert not is_severe("GET /metrics 200 OK errors_total=0")
    assert not is_severe("Normal   Pulled  x1 Pod/api-1: image pulled")


def test_a_short_output_is_shown_whole_without_a_thread() -> None:
    lines = tuple(f"line {i}" for i in range(MAX_SHOWN_DIAGNOSTIC_LINES))
    brief, full = diagnostic_messages(DiagnosticOutput("pods", lines))
    assert full is None and _code(brief.blocks) == list(lines)


def test_a_long_log_shows_its_warnings_and_errors_and_threads_the_rest() -> None:
    lines = [json.dumps({"level": "info", "status": 200, "seq": i}) for i in range(60)]
    lines[10] = json.dumps({"level": "error", "seq": 10})
    lines[40] = json.dumps({"level": "warn", "seq": 40})
    brief, full = diagnostic_messages(DiagnosticOutput("logs", tuple(lines), tail=True))
    assert _code(brief.blocks) == [lines[10], lines[40]]
    assert "60 lines" in brief.text and "in the thread" in json.dumps(brief.blocks)
    assert full is not None and len(_code(full.blocks)) == 60


def test_a_long_quiet_output_shows_a_screenful_first_or_last_for_a_log() -> None:
    lines = tuple(f"pod-{i} 1/1 Running restarts=0" for i in range(40))
    brief, _ = diagnostic_messages(DiagnosticOutput("pods", lines))
    assert _code(brief.blocks) == list(lines[:MAX_SHOWN_DIAGNOSTIC_LINES])
    brief, _ = diagnostic_messages(DiagnosticOutput("logs", lines, tail=True))
    assert _code(brief.blocks) == list(lines[-MAX_SHOWN_DIAGNOSTIC_LINES:])
    many = tuple(f"ERROR {i}" for i in range(40))
    brief, _ = diagnostic_messages(DiagnosticOutput("logs", many, tail=True))
    assert _code(brief.blocks) == list(many[-MAX_SHOWN_DIAGNOSTIC_LINES:])
    assert "last 15 of 40 warnings and errors" in json.dumps(brief.blocks)
