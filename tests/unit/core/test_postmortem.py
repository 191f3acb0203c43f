from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.incident import (
    Alert,
    AlertStatus,
    Incident,
    IncidentSource,
    IncidentStatus,
    IncidentView,
    Role,
    Severity,
    TimelineEvent,
)
from bot.core.postmortem import (
    MAX_RESOLUTION_SUMMARY,
    AuditEntry,
    format_duration,
    postmortem_markdown,
    resolution_summary,
)

T0 = datetime(2025, 1, 30, 14, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=2)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def alert(
    name: str,
    fp: str,
    *,
    firing: bool = False,
    start: float = -2,
    labels: dict[str, str] | None = None,
    summary: str = "",
    description: str = "",
) -> Alert:
    return Alert(
        fingerprint=fp,
        status=AlertStatus.FIRING if firing else AlertStatus.RESOLVED,
        starts_at=at(start),
        ends_at=None if firing else at(80),
        labels={"alertname": name, "severity": "critical", **(labels or {})},
        annotations={"summary": summary, "description": description},
        generator_url="http://prometheus/graph",
    )


def fired(minutes: float, a: Alert, verb: str = "fired") -> TimelineEvent:
    return TimelineEvent(
        at(minutes),
        f"alert_{verb}",
        f"{a.name} {verb}",
        data={"fingerprint": a.fingerprint, "labels": a.labels},
    )


ALERTS = (
    alert(
        "HighErrorRate",
        "fp1",
        labels={"namespace": "api", "route": "/v1/a|b"},
        summary="5xx > 5% on birthday-scheduler-api",
        description="Error rate is 12%\nfor the last 5 minutes | see dashboard",
    ),
    alert("DBConnectionsHigh", "fp2", start=1, labels={"db": "main"}, summary="DB pool exhausted"),
    alert("HighLatency", "fp3", firing=True, start=3, summary="p99 latency above 2s"),
)

INCIDENT = Incident(
    id=42,
    group_key="{}:{alertname=HighErrorRate}",
    title="5xx > 5% on birthday-scheduler-api",
    severity=Severity.P1,
    status=IncidentStatus.RESOLVED,
    source=IncidentSource.ALERTMANAGER,
    created_at=T0,
    acknowledged_at=at(5),
    acknowledged_by="U0ACK",
    resolved_at=at(83),
    resolved_by="U0RES",
    commander="U0CMD",
    channel_id="C123",
    channel_name="inc-20250130-5xx-5-on-birthday-scheduler-api",
    resolution_summary="Rolled back to v1.4.2 & fixed the migration <finally>",
)

VIEW = IncidentView(
    incident=INCIDENT,
    alerts=ALERTS,
    external_url="http://alertmanager:9093",
    roles=((Role.COMMANDER, "U0CMD"), (Role.SCRIBE, "U0SCR")),
)

EVENTS = [
    TimelineEvent(at(0), "opened", "Incident opened by Alertmanager: HighErrorRate", data={"alerts": 1}),
    fired(0, ALERTS[0]),
    fired(1, ALERTS[1]),
    fired(3, ALERTS[2]),
    TimelineEvent(at(5), "acknowledged", "Acknowledged by <@U0ACK>", actor="U0ACK"),
    TimelineEvent(at(12), "status_update", "Investigating the API error spike", actor="U0CMD"),
    TimelineEvent(at(15), "severity_changed", "<@U0CMD> set severity to P1", actor="U0CMD"),
    TimelineEvent(at(20), "remediation_requested", "Rollout restart of deployment/api requested by <@U0ACK>"),
    TimelineEvent(at(22), "remediation_succeeded", "Rollout restart of deployment/api finished"),
    TimelineEvent(at(30), "action_scaled", "Scaled deployment/worker to 6 replicas", actor="U0SCR"),
    fired(60, ALERTS[0], "resolved"),
    TimelineEvent(at(83), "resolved", "Resolved by <@U0RES>: Rolled back", actor="U0RES"),
]

AUDIT = [
    AuditEntry(
        requested_by="U0ACK",
        approved_by=["U0CMD"],
        action="rollout_restart",
        target="deployment/api",
        params={"namespace": "api", "reason": "a|b"},
        result="succeeded",
        started_at=at(20),
        finished_at=at(22),
    ),
    AuditEntry(
        requested_by="U0SCR",
        approved_by=["U0CMD", "U0ACK"],
        action="scale",
        target="deployment/worker",
        params={"replicas": 6},
        result="failed",
        started_at=at(30),
        error="quota exceeded",
    ),
]


def sections(md: str) -> list[str]:
    return re.findall(r"^## (.+)$", md, flags=re.M)


def row_containing(md: str, needle: str) -> str:
    rows = [line for line in md.splitlines() if needle in line]
    assert rows, f"no line contains {needle!r}"
    return rows[0]


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(hours=1, minutes=23), "1h 23m"),
        (timedelta(minutes=45), "45m"),
        (timedelta(seconds=42), "42s"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=1, minutes=5), "1d 5m"),
        (timedelta(days=2, hours=3, minutes=4, seconds=59), "2d 3h 4m"),
        (timedelta(seconds=-5), "0s"),
    ],
)
def test_format_duration(delta: timedelta, expected: str) -> None:
    assert format_duration(delta) == expected


# --- resolution summary ----------------------------------------------------------------------


def test_resolution_summary_content() -> None:
    text = resolution_summary(VIEW, EVENTS, NOW)
    assert "Incident #42 resolved" in text
    assert "*Duration:* 1h 23m" in text
    assert "14:00 – 15:23 UTC" in text
    assert "P1" in text
    assert "3 (" in text and "1 still firing" in text
    for name in ("HighErrorRate", "DBConnectionsHigh", "HighLatency"):
        assert name in text
    assert "*Acknowledged by:* <@U0ACK>" in text
    assert "*Commander:* <@U0CMD>" in text
    assert "*Resolved by:* <@U0RES>" in text
    # Executed actions only: the restart's request is a step towards it, not an action.
    assert "*Actions taken (2):*" in text
    assert "Rollout restart of deployment/api finished" in text
    assert "requested by" not in text
    # The responder's own words come right after the headline.
    assert text.split("\n")[1].startswith("*Resolution:* Rolled back to v1.4.2")
    assert "Scaled deployment/worker to 6 replicas" in text
    assert "*Status updates:* 1" in text
    # user / alert text escaped for Slack
    assert "Rolled back to v1.4.2 &amp; fixed the migration &lt;finally&gt;" in text
    assert "5xx &gt; 5%" in text


def test_resolution_summary_counts_repeated_alert_names() -> None:
    alerts = tuple(alert("PodCrashLooping", f"fp{i}", firing=i < 2) for i in range(5))
    view = replace(VIEW, alerts=alerts)
    text = resolution_summary(view, [], NOW)
    assert "PodCrashLooping ×5" in text
    assert "2 still firing" in text
    assert "*Actions taken:* none recorded" in text


def test_resolution_summary_with_500_alerts_stays_under_limit() -> None:
    alerts = tuple(
        alert(
            f"Alert<{i % 137}>&" + "x" * 40,
            f"fp{i}",
            firing=i % 3 == 0,
            summary="s" * 500,
        )
        for i in range(500)
    )
    events = [fired(1, a) for a in alerts] + [
        TimelineEvent(at(2 + i / 10), "action_note", "did a thing <@U0ACK> " + "y" * 400) for i in range(200)
    ]
    view = replace(VIEW, alerts=alerts, incident=replace(INCIDENT, resolution_summary="z" * 5000))
    text = resolution_summary(view, events, NOW)
    assert len(text) <= MAX_RESOLUTION_SUMMARY
    assert "*Status updates:* 0" in text and "*Resolution:* zzz" in text
    assert "*Actions taken (200):*" in text
    assert "500 (" in text and "167 still firing" in text
    assert "more" in text
    assert "<Alert" not in text  # names escaped
    # clipping never leaves a half mention or entity
    assert text.count("<") == text.count(">")
    assert not re.search(r"&[a-z]*$", text.rstrip("…"))


def test_resolution_summary_clip_does_not_split_mentions() -> None:
    events = [TimelineEvent(at(1), "action_x", "<@U0ACK> " * 200)]
    text = resolution_summary(replace(VIEW, alerts=()), events, NOW)
    for match in re.finditer(r"<[^>]*", text):
        assert match.group(0).startswith("<@U0"), text
    assert text.count("<") == text.count(">")


def test_resolution_summary_human_incident_without_alerts() -> None:
    inc = replace(
        INCIDENT,
        source=IncidentSource.HUMAN,
        title="Checkout <broken>",
        acknowledged_at=None,
        acknowledged_by=None,
        resolution_summary=None,
    )
    text = resolution_summary(IncidentView(incident=inc, alerts=()), [], NOW)
    assert "*Alerts:* none (declared by a human)" in text
    assert "Checkout &lt;broken&gt;" in text
    assert "*Acknowledged by:* —" in text
    assert "*Commander:* <@U0CMD>" in text
    assert "*Resolution:*" not in text


# --- post-mortem markdown ----------------------------------------------------------------------


def test_sections_in_template_order() -> None:
    md = postmortem_markdown(VIEW, EVENTS, AUDIT, NOW, graphs=["Error rate", "p99 latency"])
    assert md.startswith("# Incident Report: #42 — 5xx &gt; 5% on birthday-scheduler-api\n")
    assert sections(md) == [
        "Summary",
        "Timeline",
        "Root Cause",
        "Resolution",
        "Action Items",
        "Lessons Learned",
        "Graphs",
    ]
    assert md.rstrip().endswith("before publishing._")
    assert "Draft generated by incidentbot at 2025-01-30 16:00 UTC" in md


def test_summary_section() -> None:
    md = postmortem_markdown(VIEW, EVENTS, AUDIT, NOW)
    assert "- **Date:** 2025-01-30" in md
    assert "- **Duration:** 14:00 – 15:23 UTC (1h 23m)" in md
    assert "- **Severity:** P1 — Critical" in md
    assert "- **Impact:** _Fill in" in md
    assert "- **Detection:** Alert (Alertmanager) — HighErrorRate fired at 13:58 UTC" in md
    assert "detection time: 2m" in md
    assert "- **Time to acknowledge:** 5m (by @U0ACK)" in md
    assert "- **Status:** Resolved at 15:23 UTC by @U0RES" in md
    assert "commander @U0CMD" in md and "scribe @U0SCR" in md
    assert "## Graphs" not in md  # only when graphs are given


def test_every_timeline_event_with_its_time() -> None:
    md = postmortem_markdown(VIEW, EVENTS, AUDIT, NOW)
    timeline = md.split("## Timeline", 1)[1].split("## Root Cause", 1)[0]
    expected = [
        ("14:00", "Incident opened by Alertmanager: HighErrorRate"),
        ("14:00", "HighErrorRate fired"),
        ("14:01", "DBConnectionsHigh fired"),
        ("14:03", "HighLatency fired"),
        ("14:05", "Acknowledged by @U0ACK"),
        ("14:12", "Status update: Investigating the API error spike (@U0CMD)"),
        ("14:15", "@U0CMD set severity to P1"),
        ("14:20", "Rollout restart of deployment/api requested by @U0ACK"),
        ("14:22", "Rollout restart of deployment/api finished"),
        ("14:30", "Scaled deployment/worker to 6 replicas (@U0SCR)"),
        ("15:00", "HighErrorRate resolved"),
        ("15:23", "Resolved by @U0RES: Rolled back"),
    ]
    rows = [line for line in timeline.splitlines() if line.startswith("| ") and ":" in line[:8]]
    assert rows == [f"| {hhmm} | {text} |" for hhmm, text in expected]
    assert "<@" not in timeline  # raw ids, no Slack mention syntax


def test_timeline_dates_events_on_a_later_day() -> None:
    events = [*EVENTS, TimelineEvent(T0 + timedelta(days=1, minutes=7), "archived", "Channel archived")]
    md = postmortem_markdown(VIEW, events, [], NOW)
    assert "| 2025-01-31 14:07 | Channel archived |" in md


def test_table_cells_escape_pipes_and_newlines() -> None:
    md = postmortem_markdown(VIEW, EVENTS, AUDIT, NOW)
    evidence = row_containing(md, "| HighErrorRate | resolved |")
    assert r"route=/v1/a\|b" in evidence
    assert r"Error rate is 12% for the last 5 minutes \| see dashboard" in evidence
    assert "5xx &gt; 5% on birthday-scheduler-api" in evidence
    # every table row has the same number of unescaped separators as its header
    for block in md.split("\n\n"):
        lines = [line for line in block.splitlines() if line.startswith("|")]
        if not lines:
            continue
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in lines}
        assert len(widths) == 1, block
    audit_row = row_containing(md, "rollout_restart")
    assert r"reason=a\|b" in audit_row


def test_root_cause_evidence_lists_alerts() -> None:
    md = postmortem_markdown(VIEW, EVENTS, AUDIT, NOW)
    root = md.split("## Root Cause", 1)[1].split("## Resolution", 1)[0]
    assert "_Fill in: describe what caused the incident" in root
    assert "db=main" in root and "DB pool exhausted" in root
    assert "| HighLatency | firing | 14:03 | — |" in root
    assert "alertname=" not in root


def test_resolution_section_with_audit() -> None:
    md = postmortem_markdown(VIEW, EVENTS, AUDIT, NOW)
    res = md.split("## Resolution", 1)[1].split("## Action Items", 1)[0]
    assert "**Resolution summary:** Rolled back to v1.4.2 &amp; fixed the migration &lt;finally&gt;" in res
    assert "Resolved by @U0RES at 15:23 UTC." in res
    restart = row_containing(res, "rollout_restart")
    assert restart.startswith("| 14:20 | 14:22 | rollout_restart | deployment/api |")
    assert "| @U0ACK | @U0CMD | succeeded |" in restart
    scale = row_containing(res, "| scale |")
    assert "| 14:30 | — | scale | deployment/worker | replicas=6 | @U0SCR | @U0CMD, @U0ACK |" in scale
    assert "failed: quota exceeded" in scale
    assert "- 14:30 — Scaled deployment/worker to 6 replicas (@U0SCR)" in res


def test_set_env_values_never_reach_the_postmortem() -> None:
    secret = AuditEntry(
        requested_by="U0ACK",
        approved_by=["U0CMD"],
        action="set_env",
        target="deployment api/search-api",
        params={"namespace": "api", "deployment": "search-api", "env": {"STRIPE_SECRET_KEY": "sk_live_x"}},
        result="succeeded",
        started_at=at(40),
    )
    md = postmortem_markdown(VIEW, EVENTS, [*AUDIT, secret], NOW)
    assert "env={'STRIPE_SECRET_KEY': '(value hidden)'}" in md and "sk_live_x" not in md


def test_action_items_suggestions() -> None:
    events = [
        *EVENTS,
        fired(40, ALERTS[0]),  # HighErrorRate fires again: flapping
        fired(50, ALERTS[0], "resolved"),
        fired(55, ALERTS[0]),
        TimelineEvent(at(2), "playbook_matched", "Playbook api-errors", data={"alertname": "HighErrorRate"}),
    ]
    inc = replace(INCIDENT, acknowledged_at=at(40))
    md = postmortem_markdown(replace(VIEW, incident=inc), events, AUDIT, NOW)
    items = md.split("## Action Items", 1)[1].split("## Lessons Learned", 1)[0]
    assert "| Done | Action Item | Owner | Due Date |" in items
    assert "Add a runbook / playbook for DBConnectionsHigh" in items
    assert "Add a runbook / playbook for HighLatency" in items
    assert "playbook for HighErrorRate" not in items  # a playbook matched it
    assert "Tune alert HighErrorRate: it flapped (fired 3 times" in items
    assert "Tune alert DBConnectionsHigh" not in items
    assert "acknowledgement took 40m, above the P1 response target of 15m" in items
    assert "Investigate the failed remediation scale on deployment/worker" in items
    assert "still firing at resolution: HighLatency" in items
    assert items.count("| [ ] | _Fill in: action item_ |") == 2
    assert all(line.count("[ ]") == 1 for line in items.splitlines() if line.startswith("| [ ]"))


def test_a_cancelled_or_rejected_run_asks_nobody_to_investigate_a_failure() -> None:
    cancelled = AuditEntry(
        requested_by="U0ACK",
        approved_by=["U0CMD"],
        action="scale",
        target="deployment/api",
        params={},
        result="cancelled",
        started_at=at(40),
        error="the cooldown of scale on deployment/api has 9 min left",
    )
    rejected = replace(cancelled, result="rejected", error=None)
    md = postmortem_markdown(VIEW, EVENTS, [cancelled, rejected], NOW)
    assert "Investigate the failed remediation" not in md
    assert "cancelled: the cooldown" in md  # still listed as what happened


def test_people_are_named_not_given_as_slack_ids() -> None:
    names = {"U0ACK": "ack person", "U0CMD": "cmd_person", "U0RES": "res", "U0SCR": "scr"}
    md = postmortem_markdown(VIEW, EVENTS, AUDIT, NOW, names=names)
    assert "Resolved by @res at 15:23 UTC." in md
    assert "@cmd_person" in md and "@ack person" in md
    assert not re.search(r"U0(ACK|CMD|RES|SCR)", md), md
    # Ids with underscores (not Slack-shaped) are named too, however they were escaped.
    inc = replace(INCIDENT, resolved_by="U0BOB")
    md = postmortem_markdown(replace(VIEW, incident=inc), EVENTS, AUDIT, NOW, names={"U0BOB": "bob"})
    assert "Resolved by @bob at" in md and "U\\_BOB" not in md


def test_generic_playbook_event_covers_all_alerts() -> None:
    events = [*EVENTS, TimelineEvent(at(2), "playbook_posted", "Runbook posted")]
    md = postmortem_markdown(VIEW, events, [], NOW)
    assert "Add a runbook" not in md


def test_alert_storm_collapses_to_one_line() -> None:
    storm_alerts = [alert(f"Storm{i % 4}", f"s{i}") for i in range(150)]
    storm = [fired(10 + i / 20, a) for i, a in enumerate(storm_alerts)]
    storm += [fired(18 + i / 20, a, "resolved") for i, a in enumerate(storm_alerts[:50])]
    assert len(storm) == 200
    events = [*EVENTS[:5], *storm, *EVENTS[5:]]
    md = postmortem_markdown(VIEW, events, [], NOW)
    timeline = md.split("## Timeline", 1)[1].split("## Root Cause", 1)[0]
    storm_lines = [line for line in timeline.splitlines() if "Alert storm" in line]
    assert len(storm_lines) == 1
    assert storm_lines[0].startswith("| 14:10–14:20 | Alert storm: 200 alert events (150 fired, 50 resolved)")
    assert "Storm0 ×" in storm_lines[0]
    assert "Storm1 fired" not in timeline
    # the short run at the start is still shown event by event
    assert "| 14:01 | DBConnectionsHigh fired |" in timeline
    assert "Reduce alert noise: 200 alert events between 14:10 and 14:20 UTC" in md


def test_run_of_twenty_is_not_collapsed() -> None:
    run = [fired(10, alert(f"A{i}", f"a{i}")) for i in range(20)]
    md = postmortem_markdown(VIEW, [EVENTS[0], *run], [], NOW)
    assert "Alert storm" not in md
    assert all(f"| 14:10 | A{i} fired |" in md for i in range(20))


def test_human_declared_incident_without_alerts() -> None:
    inc = Incident(
        id=7,
        group_key="human:abc",
        title="Checkout | payments failing",
        severity=Severity.P2,
        status=IncidentStatus.ACKNOWLEDGED,
        source=IncidentSource.HUMAN,
        created_at=T0,
        acknowledged_at=at(3),
        acknowledged_by="U0CMD",
        commander="U0CMD",
    )
    events = [
        TimelineEvent(at(0), "opened", "Declared by <@U0CMD>", actor="U0CMD"),
        TimelineEvent(at(3), "acknowledged", "Acknowledged by <@U0CMD>", actor="U0CMD"),
    ]
    view = IncidentView(incident=inc, alerts=())
    md = postmortem_markdown(view, events, [], NOW, graphs=[])
    assert md.startswith("# Incident Report: #7 — Checkout | payments failing")
    assert "- **Detection:** Human — declared by @U0CMD at 14:00 UTC" in md
    assert "- **Duration:** 14:00 – ongoing UTC (2h so far)" in md
    assert "- **Status:** Acknowledged (still open at 16:00 UTC)" in md
    assert "_No alerts were attached to this incident._" in md
    assert "_No automated remediation actions were run._" in md
    assert "_Fill in: describe how the incident was resolved._" in md
    assert "Add alerting that would have detected this automatically" in md
    assert "Post regular status updates" in md
    assert "## Graphs\n\n_No graphs were posted._" in md
    assert "| 14:00 | Declared by @U0CMD |" in md

    text = resolution_summary(view, events, NOW)
    assert "*Incident #7 summary:*" in text
    assert "*Duration:* 2h so far" in text
    assert "*Alerts:* none (declared by a human)" in text


def test_pagerduty_detection_and_slack_markup_conversion() -> None:
    inc = replace(INCIDENT, source=IncidentSource.PAGERDUTY, pagerduty_incident_id="PABC123")
    events = [
        TimelineEvent(
            at(1),
            "note",
            "*Heads up* <!subteam^S123|@oncall> see <https://grafana.example.com/d/x|the dashboard> in <#C9|ops>",
        )
    ]
    md = postmortem_markdown(replace(VIEW, incident=inc), events, [], NOW, graphs=["Error | rate"])
    assert "- **Detection:** PagerDuty — PABC123 opened at 14:00 UTC" in md
    assert (
        "| 14:01 | **Heads up** @oncall see [the dashboard](https://grafana.example.com/d/x) in #ops |" in md
    )
    assert "- Error | rate" in md


def test_markdown_specials_in_alert_text_are_neutralised() -> None:
    weird = alert("Bad*Alert_", "w1", labels={"x": "[link](http://evil)"}, summary="<script>`rm`</script>")
    md = postmortem_markdown(replace(VIEW, alerts=(weird,)), [], [], NOW)
    row = row_containing(md, "| Bad")
    assert r"Bad\*Alert\_" in row
    assert r"x=\[link\](http://evil)" in row
    assert "&lt;script&gt;\\`rm\\`&lt;/script&gt;" in row
    assert "<script>" not in md
