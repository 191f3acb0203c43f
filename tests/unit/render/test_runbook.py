"""Runbook messages: every bundled playbook valid for Slack, collapsed and expanded, splitting,
hostile label values, check marks, graph captions, the playbook list, diagnostics."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from bot.config.playbooks import load_playbooks
from bot.core.actions import ActionName
from bot.core.blockkit import MAX_BLOCKS, MAX_BUTTON_VALUE, MAX_SECTION_TEXT, Message
from bot.core.checks import CheckOutcome
from bot.core.playbooks import Check, Link, Playbook, PlaybookSet, Remediation, Step
from bot.core.templating import escape_slack, render_plain, sample_label_sets
from bot.render.runbook import (
    COLLAPSED_STEPS,
    MESSAGE_CHAR_BUDGET,
    SHOW_ALL_ACTION_ID,
    diagnostics_message,
    graph_caption,
    no_prometheus_note,
    playbook_list_message,
    runbook_messages,
)
from bot.render.times import GraphWindow
from sandbox.slack import validate_message_blocks

PLAYBOOKS: PlaybookSet = load_playbooks()
BASE_LABELS = {
    "namespace": "skillquest",
    "deployment": "skillquest-api",
    "pod": "skillquest-api-7d9f8b6c5-x2x9q",
    "service": "api",
    "job": "skillquest-api",
    "instance": "10.0.0.1:9090",
    "node": "node-1",
    "container": "api",
    "severity": "critical",
}
HOSTILE_VALUES = {
    "shell": "x; rm -rf /",
    "channel": "<!channel>",
    "bold": "*bold*",
    "backticks": "```rm -rf /``` `x`",
    "long": "A" * 5000,
}


def all_text(messages: list[Message]) -> str:
    return "\n".join(json.dumps(m.blocks, ensure_ascii=False) + m.text for m in messages)


def mrkdwn_texts(messages: list[Message]) -> list[str]:
    texts: list[str] = []
    for m in messages:
        for block in m.blocks:
            if block["type"] == "section":
                texts.append(block["text"]["text"])
            elif block["type"] == "context":
                texts += [e["text"] for e in block["elements"]]
    return texts


def assert_valid(messages: list[Message]) -> None:
    assert messages
    for m in messages:
        assert validate_message_blocks(m.blocks) == [], m.blocks
        assert m.text
        assert len(m.blocks) <= MAX_BLOCKS
        for block in m.blocks:
            if block["type"] == "section":
                text = block["text"]["text"]
                assert len(text) <= MAX_SECTION_TEXT
                assert text.count("```") % 2 == 0, text  # kit never had to cut a code block


def labels_for(playbook: Playbook) -> dict[str, str]:
    templates = [playbook.title, playbook.summary]
    for step in playbook.steps:
        templates += [step.title, step.text]
        if step.check is not None:
            templates.append(step.check.description)
    templates += [item.title for item in playbook.links] + [item.url for item in playbook.links]
    templates += [rem.title for rem in playbook.remediations]
    labels = dict(sample_label_sets(*templates)[0])
    labels.update(BASE_LABELS)
    alertnames = playbook.match.alertnames
    labels["alertname"] = alertnames[0] if alertnames else "Manual"
    return labels


def shown_title(template: str, labels: Mapping[str, str]) -> str:
    return escape_slack(render_plain(template, labels))


# ----------------------------------------------------------------------------- bundled playbooks


@pytest.mark.parametrize("playbook", PLAYBOOKS.playbooks, ids=lambda pb: pb.name)
def test_every_bundled_playbook_renders_valid_messages(playbook: Playbook) -> None:
    labels = labels_for(playbook)
    collapsed = runbook_messages(playbook, labels, incident_id=42)
    expanded = runbook_messages(playbook, labels, incident_id=42, expanded=True)
    assert_valid(collapsed)
    assert_valid(expanded)
    text = all_text(expanded)
    for step in playbook.steps:
        assert shown_title(step.title, labels) in text
    for rem in playbook.remediations:
        assert shown_title(rem.title, labels) in text
    assert "⚠️" not in text  # every label the templates need is there
    assert "$" not in "".join(shown_title(s.title, labels) for s in playbook.steps)
    buttons = [b for m in expanded for b in m.blocks if b["type"] == "actions"]
    assert buttons == []
    if len(playbook.steps) > COLLAPSED_STEPS:
        assert any(b["type"] == "actions" for m in collapsed for b in m.blocks)


@pytest.mark.parametrize("playbook", PLAYBOOKS.playbooks, ids=lambda pb: pb.name)
def test_every_bundled_playbook_renders_with_its_sample_labels(playbook: Playbook) -> None:
    for labels in sample_label_sets(playbook.title, *(s.text for s in playbook.steps)):
        for expanded in (False, True):
            assert_valid(runbook_messages(playbook, labels, incident_id=1, expanded=expanded))


def test_generic_playbook_renders() -> None:
    labels = {"alertname": "<!channel> Boom", "namespace": "prod", "pod": "web-1"}
    playbook = PLAYBOOKS.resolve(
        labels,
        {"summary": "<!here> *all* down", "runbook_url": "https://wiki.example.com/x?a=1&b=2"},
        "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
    )
    messages = runbook_messages(playbook, labels, incident_id=3)
    assert_valid(messages)
    text = all_text(messages)
    assert "<!channel>" not in text
    assert "<!here>" not in text
    assert "No playbook matches this alert" in text


# ----------------------------------------------------------------------------- structure


def steps(n: int, *, long: bool = False, checks: bool = False) -> list[Step]:
    body = ("Restart the thing and watch the dashboards carefully. " * 50).strip() if long else "Do it."
    code = "\n".join(f"kubectl get pods -n ns-{i} | grep -v Running && echo '<done>'" for i in range(40))
    return [
        Step(
            title=f"Step title {i}",
            text=body,
            code=code if long else None,
            language="bash" if long else None,
            check=Check(query="up", op=">", value=0, description=f"target {i} up") if checks else None,
        )
        for i in range(n)
    ]


def make_playbook(**kwargs: object) -> Playbook:
    data: dict[str, object] = {
        "name": "synthetic",
        "title": "Synthetic runbook",
        "system": "tests",
        "match": {"alertname": "Synthetic"},
        "summary": "A summary.",
    }
    data.update(kwargs)
    return Playbook.model_validate(data)


def test_sixty_long_steps_split_over_several_valid_messages() -> None:
    playbook = make_playbook(steps=steps(60, long=True))
    messages = runbook_messages(playbook, {}, incident_id=9, expanded=True)
    assert len(messages) > 1
    assert_valid(messages)
    for m in messages:
        chars = sum(len(t) for t in mrkdwn_texts([m]))
        assert chars <= MESSAGE_CHAR_BUDGET + 500
    text = all_text(messages)
    for i in range(60):
        assert f"*{i + 1}. Step title {i}*" in text
    # steps stay in order, every message after the first says where it belongs
    order = [text.index(f"*{i + 1}. Step title {i}*") for i in range(60)]
    assert order == sorted(order)
    assert messages[0].blocks[0]["type"] == "header"
    for number, m in enumerate(messages[1:], start=2):
        assert f"continued ({number}/{len(messages)})" in m.blocks[0]["elements"][0]["text"]
        assert f"({number}/{len(messages)})" in m.text
    # code is fenced without the language, and its < > & are escaped
    assert "```bash" not in text
    text = "\n".join(mrkdwn_texts(messages))
    assert "```\nkubectl get pods -n ns-0 | grep -v Running &amp;&amp; echo '&lt;done&gt;'" in text


def test_collapsed_shows_first_steps_and_a_show_all_button() -> None:
    playbook = make_playbook(steps=steps(14))
    messages = runbook_messages(playbook, {}, incident_id=12345)
    assert_valid(messages)
    assert len(messages) == 1
    text = all_text(messages)
    for i in range(COLLAPSED_STEPS):
        assert f"Step title {i}*" in text
    assert f"Step title {COLLAPSED_STEPS}*" not in text
    button = next(b for b in messages[0].blocks if b["type"] == "actions")["elements"][0]
    assert button["action_id"] == SHOW_ALL_ACTION_ID == "show_runbook_steps"
    assert button["value"] == "12345:synthetic"
    assert button["text"]["text"] == "Show all 14 steps"
    expanded = runbook_messages(playbook, {}, incident_id=12345, expanded=True)
    assert "Step title 13*" in all_text(expanded)
    assert not any(b["type"] == "actions" for m in expanded for b in m.blocks)


def test_show_all_button_value_is_bounded() -> None:
    playbook = make_playbook(name="a" * 63, steps=steps(COLLAPSED_STEPS + 1, long=True))
    messages = runbook_messages(playbook, {}, incident_id=10**30)
    assert_valid(messages)
    buttons = [e for m in messages for b in m.blocks if b["type"] == "actions" for e in b["elements"]]
    assert len(buttons) == 1
    assert buttons[0]["action_id"] == "show_runbook_steps"
    assert len(buttons[0]["value"]) <= MAX_BUTTON_VALUE
    assert buttons[0]["value"] == f"{10**30}:{'a' * 63}"


def test_few_steps_are_never_collapsed() -> None:
    playbook = make_playbook(steps=steps(COLLAPSED_STEPS))
    messages = runbook_messages(playbook, {}, incident_id=1)
    assert not any(b["type"] == "actions" for m in messages for b in m.blocks)


def test_playbook_without_steps() -> None:
    messages = runbook_messages(make_playbook(), {}, incident_id=1)
    assert_valid(messages)
    assert "no steps" in all_text(messages)


def test_header_summary_links_and_proposals() -> None:
    playbook = make_playbook(
        title="Pool exhausted in $namespace",
        steps=[Step(title="Look", text="Run:\n```sh\nkubectl get pods -n $namespace\n```\nthen wait.")],
        links=[
            Link(title="Grafana for $namespace", url="https://grafana.example.com/d/x?var-ns=$namespace"),
            Link(title="Needs $missing", url="https://example.com/$missing"),
        ],
        remediations=[
            Remediation(
                action=ActionName.ROLLOUT_RESTART,
                title="Restart $deployment",
                params={"namespace": "$namespace", "deployment": "$deployment"},
            )
        ],
    )
    labels = {"namespace": "pay ments", "deployment": "api"}
    messages = runbook_messages(playbook, labels, incident_id=1)
    assert_valid(messages)
    blocks = messages[0].blocks
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "📘 Pool exhausted in pay ments"},
    }
    assert "`tests`" in blocks[1]["elements"][0]["text"]
    text = "\n".join(mrkdwn_texts(messages))
    assert "A summary." in text
    assert "Run:\n```\nkubectl get pods -n pay ments\n```\nthen wait." in text
    assert "<https://grafana.example.com/d/x?var-ns=pay%20ments|Grafana for pay ments>" in text
    assert "label `missing`" in text
    assert "$missing" not in text
    assert "Restart api (`rollout_restart`)" in text
    # Listed without claiming they were proposed: that is decided after this message.
    assert "Remediations in this runbook" in text and "proposed below" not in text
    assert messages[0].text == "Runbook: Pool exhausted in pay ments"


# ----------------------------------------------------------------------------- checks


def test_check_results_render_with_their_marks() -> None:
    playbook = make_playbook(steps=steps(5, checks=True))
    results = {
        0: CheckOutcome(True, "3 > 0"),
        1: CheckOutcome(False, "0 is not > 0"),
        2: CheckOutcome(None, "no data"),
        3: CheckOutcome(None, "value is NaN"),
    }
    messages = runbook_messages(playbook, {}, incident_id=1, check_results=results)
    assert_valid(messages)
    text = "\n".join(mrkdwn_texts(messages))
    assert "✅ *Check passed:* target 0 up — `3 &gt; 0`" in text
    assert "❌ *Check failed:* target 1 up — `0 is not &gt; 0`" in text
    assert "❔ *Check no data:* target 2 up" in text
    assert "❔ *Check no data:* target 3 up — `value is NaN`" in text
    assert "⏳ *Check pending:* target 4 up" in text


def test_check_without_description_shows_its_condition() -> None:
    playbook = make_playbook(steps=[Step(title="s", check=Check(query="up", op="<=", value=0.85))])
    text = all_text(runbook_messages(playbook, {}, incident_id=1))
    assert "⏳ *Check pending:* value &lt;= 0.85" in text


# ----------------------------------------------------------------------------- hostile values


@pytest.mark.parametrize("name", sorted(HOSTILE_VALUES))
def test_hostile_label_values_are_escaped_and_clipped(name: str) -> None:
    value = HOSTILE_VALUES[name]
    playbook = make_playbook(
        title="Down: $v",
        summary="Service $v is down.",
        steps=[
            Step(
                title="Inspect $v",
                text="Check `$v` and ${v} here.\n```\necho $v\n```",
                check=Check(query='up{a="$v"}', op=">", value=0, description="$v up"),
            )
            for _ in range(8)
        ],
        links=[Link(title="About $v", url="https://example.com/?q=$v")],
        remediations=[
            Remediation(
                action=ActionName.ROLLOUT_RESTART,
                title="Restart $v",
                params={"namespace": "ns", "deployment": "api"},
            )
        ],
    )
    for expanded in (False, True):
        messages = runbook_messages(playbook, {"v": value}, incident_id=1, expanded=expanded)
        assert_valid(messages)
        text = all_text(messages)
        assert "<!channel>" not in text
        assert "<!" not in text
        assert "*bold*" not in text
        assert "```rm" not in text
        assert "A" * 201 not in text
        for mrkdwn in mrkdwn_texts(messages):
            # the value never opens or closes code: only the playbook's own fence pairs remain
            assert mrkdwn.count("`") % 2 == 0, mrkdwn
    if name == "channel":
        assert "&lt;!channel&gt;" in all_text(messages)
    if name == "shell":
        assert "Service x; rm -rf / is down." in all_text(messages)


def test_hostile_values_in_the_header_are_plain() -> None:
    playbook = make_playbook(title="$v")
    header = runbook_messages(playbook, {"v": "<!channel> &"}, incident_id=1)[0].blocks[0]
    assert header["text"]["text"] == "📘 ‹!channel› &"


def test_missing_label_shows_a_note_never_the_raw_template() -> None:
    playbook = make_playbook(
        title="Pod $pod",
        summary="Summary for $pod",
        steps=[
            Step(
                title="Look at $pod",
                text="Describe $pod",
                check=Check(query="up", op=">", value=0, description="$pod ok"),
            )
        ],
    )
    messages = runbook_messages(playbook, {}, incident_id=1)
    assert_valid(messages)
    text = all_text(messages)
    assert "$pod" not in text
    assert "label `pod`" in text
    assert "the alert has no label 'pod'" in text
    assert messages[0].blocks[0]["text"]["text"] == "📘 synthetic"


# ----------------------------------------------------------------------------- graphs and notes


def test_graph_caption() -> None:
    start = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
    window = GraphWindow(start, start + timedelta(minutes=15))
    caption = graph_caption("API p99 latency", 'histogram_quantile(0.99, x{service="api"})', window=window)
    assert caption == (
        "📈 *API p99 latency* · <!date^1714568400^{date_short_pretty} {time}|2024-05-01 13:00 UTC>"
        "–<!date^1714569300^{time}|13:15 UTC>\n"
        '`histogram_quantile(0.99, x{service="api"})`'
    )


def test_graph_caption_names_the_alert_start_only_when_there_is_one() -> None:
    start = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
    marked = graph_caption("q", "up", window=GraphWindow(start, start + timedelta(hours=1), start))
    assert (
        "alert started <!date^1714568400^{date_short_pretty} {time_secs}|2024-05-01 13:00:00 UTC>" in marked
    )
    assert "alert" not in graph_caption("q", "up", window=GraphWindow(start, start + timedelta(hours=1)))


def test_graph_caption_with_error_names_query_and_error() -> None:
    query = "rate(" + "x" * 1000 + "`)\n<!channel>"
    caption = graph_caption("<!channel> *t*", query, error="connection refused <!here>")
    assert caption.startswith("⚠️ *&lt;!channel&gt; ∗t∗*")
    assert "connection refused &lt;!here&gt;" in caption
    assert "<!" not in caption
    assert caption.count("`") == 2
    assert "`rate(xxx" in caption
    assert "…" in caption
    assert len(caption) < 1000
    assert validate_message_blocks([{"type": "section", "text": {"type": "mrkdwn", "text": caption}}]) == []


def test_no_prometheus_note() -> None:
    note = no_prometheus_note()
    assert validate_message_blocks(note.blocks) == []
    assert "PROMETHEUS_URL" in note.text
    assert "Graphs are off" in all_text([note])


# ----------------------------------------------------------------------------- playbook list


def test_playbook_list_is_valid_and_grouped() -> None:
    msg = playbook_list_message(PLAYBOOKS)
    assert validate_message_blocks(msg.blocks) == []
    text = all_text([msg])
    for playbook in PLAYBOOKS:
        assert f"`{playbook.name}`" in text
    for system in {pb.system for pb in PLAYBOOKS}:
        assert f"*{system}*" in text
    assert "On-demand guides" in text
    assert "Alert playbooks" in text


def test_huge_playbook_list_stays_within_limits() -> None:
    many = [
        make_playbook(
            name=f"pb-{i}",
            title=f"Playbook {i} {'x' * 130}",
            system=f"sys-{i % 7}",
            on_demand=i % 3 == 0,
            match={} if i % 3 == 0 else {"alertname": f"A{i}"},
        )
        for i in range(2000)
    ]
    msg = playbook_list_message(many)
    assert validate_message_blocks(msg.blocks) == []
    assert len(msg.blocks) <= MAX_BLOCKS
    assert "more not shown" in all_text([msg])


def test_playbook_list_titles_without_an_alert() -> None:
    msg = playbook_list_message([make_playbook(title="Pod $pod in ${namespace:-default}")])
    assert "Pod ‹pod› in default" in all_text([msg])
    assert validate_message_blocks(playbook_list_message([]).blocks) == []


# ----------------------------------------------------------------------------- diagnostics


def test_diagnostics_message_is_code_and_escaped() -> None:
    lines = ["NAME READY STATUS", "api-1 1/1 Running", "<!channel> ``` & \x1b[31mred\x1b[0m"]
    msg = diagnostics_message("Pods in skillquest", lines)
    assert validate_message_blocks(msg.blocks) == []
    text = "\n".join(mrkdwn_texts([msg]))
    assert "```\nNAME READY STATUS\napi-1 1/1 Running\n&lt;!channel&gt; ˋˋˋ &amp; red\n```" in text
    assert "truncated" not in text


def test_diagnostics_message_truncates_and_notes_it() -> None:
    lines = [f"line {i} " + "y" * 150 for i in range(1000)] + ["z" * 5000]
    head = diagnostics_message("Events", lines)
    assert validate_message_blocks(head.blocks) == []
    assert "line 0 " in all_text([head])
    assert "(truncated: showing the first" in all_text([head])
    tail = diagnostics_message("Logs of api", lines, tail=True)
    assert validate_message_blocks(tail.blocks) == []
    text = all_text([tail])
    assert "line 0 " not in text
    assert "line 999 " in text
    assert "showing the last" in text
    assert "lines longer than" in text
    for m in (head, tail):
        for t in mrkdwn_texts([m]):
            assert t.count("```") % 2 == 0


def test_diagnostics_message_without_output() -> None:
    msg = diagnostics_message("Events", [])
    assert validate_message_blocks(msg.blocks) == []
    assert "no output" in all_text([msg])
