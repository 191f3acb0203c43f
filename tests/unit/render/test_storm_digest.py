"""The storm digest: counts, worst first, an Open channel button per waiting incident in blocks
Slack accepts (the sandbox's Block Kit validator), and the ended state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bot.core.incident import IncidentStatus, Severity
from bot.core.storms import StormMember, StormRole, StormView
from bot.render.storms import MAX_OPEN_BUTTONS, OPEN_CHANNEL_ACTION, TOP_INCIDENTS, digest, ended
from sandbox.slack.blockkit import validate_message_blocks

NOW = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)


def member(i: int, severity: Severity, role: StormRole, service: str | None = "API") -> StormMember:
    channel = f"C{i:05d}" if role is not StormRole.WAITING else None
    return StormMember(
        i,
        severity,
        f"Alert <{i}> *x*",
        service,
        IncidentStatus.TRIGGERED,
        role,
        channel,
        NOW - timedelta(seconds=i),
    )


def view(members: list[StormMember], ended_at: datetime | None = None) -> StormView:
    return StormView(
        7, "skillquest", "SkillQuest", NOW - timedelta(minutes=3), NOW, 120, ended_at, tuple(members)
    )


def test_digest_counts_lists_worst_first_and_offers_buttons_for_waiting_ones() -> None:
    members = [member(i, Severity.P4, StormRole.WAITING) for i in range(1, 30)]
    members += [member(100, Severity.P1, StormRole.DIGEST, "DB"), member(101, Severity.P2, StormRole.OWN)]
    msg = digest(view(members), NOW)
    assert validate_message_blocks(msg.blocks) == []
    text = json.dumps(msg.blocks, ensure_ascii=False)
    assert "31 incidents for SkillQuest" in msg.text and "P1: 1" in text and "P4: 29" in text
    assert "API 30" in text and "DB 1" in text
    lines = msg.blocks[3]["text"]["text"].split("\n")
    assert lines[0].startswith("🔴 *#100*") and "<#C00100>" in lines[0]
    assert len(lines) == TOP_INCIDENTS + 1 and "16 more" in lines[-1]
    assert "Alert &lt;100&gt; ∗x∗" in text and "<100>" not in text  # alert text is made inert
    buttons = [e for b in msg.blocks if b["type"] == "actions" for e in b["elements"]]
    assert len(buttons) == MAX_OPEN_BUTTONS
    assert {b["action_id"] for b in buttons} == {OPEN_CHANNEL_ACTION}


def test_an_ended_storm_says_so_and_its_end_message_once() -> None:
    done = view([member(1, Severity.P2, StormRole.DIGEST)], ended_at=NOW)
    msg = digest(done, NOW)
    assert "storm ended" in msg.text and validate_message_blocks(msg.blocks) == []
    assert "is over" in ended(done).text
