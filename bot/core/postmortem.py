"""Resolution summary (Slack mrkdwn) and incident-report draft (Markdown) for an incident.

Pure functions: no I/O and no clock; `now` is always passed in. The Markdown draft follows the
"Incident Report" / post-mortem template of the seed runbooks: Summary, Timeline, Root Cause,
Resolution, Action Items (plus Lessons Learned), Graphs, and a draft footer.

Conventions read from the stored timeline:

* `alert_fired` / `alert_resolved` events carry `data["fingerprint"]` and `data["labels"]`;
  runs of more than `STORM_THRESHOLD` of them are collapsed into one line.
* executed actions are `remediation_succeeded` / `remediation_failed` events (a remediation
  that ran) and events whose kind starts with `action_`; proposals, approvals and "running"
  lines (`remediation_requested`, `_approved`, `_claimed`) are steps towards one, not actions;
  `status_update` events are status updates.
* events whose kind starts with `playbook` (e.g. `playbook_matched`) mean a playbook matched;
  `data["alertname"]` (str) or `data["alertnames"]` (list) narrows that to those alerts.
  Kinds ending in `_failed`, `_none`, `_missing` or `_unmatched` do not count.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.core.actions import public_params
from bot.core.blockkit import escape
from bot.core.incident import (
    Alert,
    AlertStatus,
    IncidentSource,
    IncidentStatus,
    IncidentView,
    Role,
    Severity,
    TimelineEvent,
)

__all__ = [
    "MAX_RESOLUTION_SUMMARY",
    "STORM_THRESHOLD",
    "AuditEntry",
    "format_duration",
    "postmortem_markdown",
    "resolution_summary",
]

MAX_RESOLUTION_SUMMARY = 2900
"""Upper bound for the resolution summary (a section block takes 3,000 characters)."""

STORM_THRESHOLD = 20
"""A run of more alert_fired/alert_resolved events than this is one summarised timeline line."""

FLAP_MIN_FIRES = 2
"""An alert (one fingerprint) that fired this many times during the incident flapped."""

MAX_EVIDENCE_ALERTS = 50
MAX_SUMMARY_ACTIONS = 12
MAX_SUGGESTED_NAMES = 10

SEVERITY_LABELS: dict[Severity, str] = {
    Severity.P1: "Critical (service down, data loss)",
    Severity.P2: "High (degraded performance, partial outage)",
    Severity.P3: "Medium (non-critical feature broken)",
    Severity.P4: "Low (minor issue, workaround available)",
}

RESPONSE_TARGETS: dict[Severity, timedelta] = {
    Severity.P1: timedelta(minutes=15),
    Severity.P2: timedelta(minutes=30),
    Severity.P3: timedelta(hours=2),
}
"""Time-to-acknowledge targets from the seed severity table (P4: one business day, not checked)."""

_ALERT_KINDS = frozenset({"alert_fired", "alert_resolved"})
_EXECUTED_KINDS = frozenset({"remediation_succeeded", "remediation_failed"})
_ACTION_PREFIX = "action_"
_PLAYBOOK_NEGATIVE = ("_failed", "_none", "_missing", "_unmatched")
_FAILED_RESULTS = frozenset({"failed", "failure", "error", "errored", "timeout", "timed_out"})
# Runs that never executed: their error (a cooldown, a refusal) is no failed remediation.
_NOT_RUN_RESULTS = frozenset({"proposed", "approved", "rejected", "expired", "cancelled"})
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class AuditEntry:
    """One remediation action as the audit log records it (mapped by the remediation engine)."""

    requested_by: str
    approved_by: list[str]
    action: str
    target: str
    params: dict[str, Any]
    result: str
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None


# --- small helpers --------------------------------------------------------------------------


def format_duration(delta: timedelta) -> str:
    """Human readable: `45s`, `12m`, `1h 23m`, `2d 3h 5m` (zero parts dropped; never negative)."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v]
    return " ".join(parts)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _hhmm(at: datetime, day: datetime | None = None) -> str:
    """`HH:MM` in UTC; prefixed with the date when it is not on the same UTC day as `day`."""
    u = _utc(at)
    if day is not None and u.date() != _utc(day).date():
        return f"{u:%Y-%m-%d %H:%M}"
    return f"{u:%H:%M}"


def _is_user(actor: str) -> bool:
    return bool(_USER_ID.match(actor))


def _slack_who(actor: str | None) -> str:
    if not actor:
        return "—"
    return f"<@{actor}>" if _is_user(actor) else escape(actor)


def _clip_mrkdwn(text: str, limit: int) -> str:
    """Cut to at most `limit` characters without splitting a `<...>` token or an `&...;` entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    lt, gt = cut.rfind("<"), cut.rfind(">")
    if lt > gt:
        cut = cut[:lt]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:] and len(cut) - amp <= 8:
        cut = cut[:amp]
    return cut.rstrip() + "…"


def _alert_name_of(event: TimelineEvent) -> str:
    """The raw alert name an alert_fired/alert_resolved event is about."""
    labels = event.data.get("labels")
    if isinstance(labels, dict):
        name = labels.get("alertname")
        if isinstance(name, str) and name:
            return name
    text = event.text
    for suffix in (" fired", " resolved"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    # Event texts hold escaped names; get the raw one back so it is escaped exactly once.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") or "unnamed alert"


def _alert_key_of(event: TimelineEvent) -> str:
    fingerprint = event.data.get("fingerprint")
    return str(fingerprint) if fingerprint else _alert_name_of(event)


def _commander(view: IncidentView) -> str | None:
    for role, user in view.roles:
        if role is Role.COMMANDER:
            return user
    return view.incident.commander


def _is_executed(event: TimelineEvent) -> bool:
    """An action that was taken (not one proposed, approved or about to run)."""
    return event.kind in _EXECUTED_KINDS or event.kind.startswith(_ACTION_PREFIX)


def _name_counts(names: Iterable[str]) -> list[tuple[str, int]]:
    return sorted(Counter(names).items(), key=lambda kv: (-kv[1], kv[0]))


def _end(view: IncidentView, now: datetime) -> datetime:
    return view.incident.resolved_at or now


# --- resolution summary (Slack mrkdwn) ------------------------------------------------------


def _summary_alerts_line(view: IncidentView) -> str:
    if not view.alerts:
        source = view.incident.source
        how = " (declared by a human)" if source is IncidentSource.HUMAN else ""
        return f"*Alerts:* none{how}"
    counts = _name_counts(a.name for a in view.alerts)
    shown: list[str] = []
    budget = 600
    for name, count in counts:
        item = escape(name) + (f" ×{count}" if count > 1 else "")
        if budget - len(item) < 0 and shown:
            break
        shown.append(item)
        budget -= len(item) + 2
    more = len(counts) - len(shown)
    names = ", ".join(shown) + (f", +{more} more" if more else "")
    firing = len(view.firing)
    still = f"{firing} still firing" if firing else "none still firing"
    return f"*Alerts:* {len(view.alerts)} ({names}) · {still}"


def resolution_summary(view: IncidentView, events: list[TimelineEvent], now: datetime) -> str:
    """Slack mrkdwn posted in the incident channel when the incident is resolved.

    Always at most `MAX_RESOLUTION_SUMMARY` characters; alert-derived and user text is escaped.
    """
    inc = view.incident
    end = _end(view, now)
    resolved = inc.status is IncidentStatus.RESOLVED or inc.resolved_at is not None
    head = f"✅ *Incident {inc.ref} resolved:*" if resolved else f"*Incident {inc.ref} summary:*"
    lines = [f"{head} {escape(_clip_plain(inc.title, 200))}"]
    # The responder's own words first: they say what happened better than the counts below.
    if inc.resolution_summary and inc.resolution_summary.strip():
        lines.append(f"*Resolution:* {_clip_mrkdwn(escape(inc.resolution_summary.strip()), 900)}")
    span = f"{_hhmm(inc.created_at)} – {_hhmm(end, inc.created_at)} UTC"
    so_far = "" if resolved else " so far"
    lines.append(f"*Duration:* {format_duration(_utc(end) - _utc(inc.created_at))}{so_far} ({span})")
    lines.append(f"*Severity:* {inc.severity.value} ({SEVERITY_LABELS[inc.severity].split(' (')[0]})")
    lines.append(_summary_alerts_line(view))
    people = [
        f"*Acknowledged by:* {_slack_who(inc.acknowledged_by)}",
        f"*Commander:* {_slack_who(_commander(view))}",
        f"*Resolved by:* {_slack_who(inc.resolved_by)}",
    ]
    lines.append("  ·  ".join(people))
    updates = sum(1 for e in events if e.kind == "status_update")
    tail = [f"*Status updates:* {updates}"]
    used = sum(len(line) + 1 for line in lines + tail)
    lines += _summary_actions(events, inc.created_at, MAX_RESOLUTION_SUMMARY - used - 1)
    lines += tail
    return _clip_mrkdwn("\n".join(lines), MAX_RESOLUTION_SUMMARY)


def _summary_actions(events: Sequence[TimelineEvent], day: datetime, budget: int) -> list[str]:
    """The "actions taken" lines, as many as fit in `budget` characters (newlines included)."""
    actions = [e for e in events if _is_executed(e)]
    if not actions:
        return ["*Actions taken:* none recorded"]
    out = [f"*Actions taken ({len(actions)}):*"]
    budget -= len(out[0]) + 1 + 30  # keep room for the "…and N more" line
    shown = 0
    for event in actions[:MAX_SUMMARY_ACTIONS]:
        line = f"• {_hhmm(event.at, day)} {_clip_mrkdwn(' '.join(event.text.split()), 200)}"
        if len(line) + 1 > budget:
            break
        out.append(line)
        budget -= len(line) + 1
        shown += 1
    if shown < len(actions):
        out.append(f"• …and {len(actions) - shown} more")
    return out


def _clip_plain(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- Markdown conversion and escaping --------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*\[\]~])")
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_SLACK_TOKEN = re.compile(r"<([^<>\n]+)>")
_SLACK_BOLD = re.compile(r"(?<![\w*\\])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_SLACK_STRIKE = re.compile(r"(?<![\w~\\])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])")


def _md(text: str) -> str:
    """Raw (alert- or user-supplied) text → one line of inert Markdown. HTML-significant
    characters become entities (rendered as themselves), Markdown specials are backslashed."""
    text = escape(" ".join(text.split()))
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_UNDERSCORE.sub(r"\\_", text)


def _cell(text: str) -> str:
    """Markdown text → a table cell: no newlines, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|") or " "


def _slack_token(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return f"@{target[1:]}"
    if target.startswith("#"):
        return f"#{label or target[1:]}"
    if target.startswith("!"):
        special = target[1:]
        if special.startswith("subteam^"):
            return label if label.startswith("@") else f"@{label or special.split('^', 1)[1]}"
        if special in ("here", "channel", "everyone"):
            return f"@{special}"
        return label or special
    if label:
        return f"[{label.replace('[', '(').replace(']', ')')}]({target})"
    return f"<{target}>"


def _mrkdwn_to_md(text: str) -> str:
    """Our Slack mrkdwn (already escaped) → Markdown: mentions as `@U…`, links as `[label](url)`,
    `*bold*` as `**bold**`, `~strike~` as `~~strike~~`; entities kept (Markdown renders them)."""
    text = _SLACK_TOKEN.sub(_slack_token, text)
    text = _SLACK_BOLD.sub(r"**\1**", text)
    return _SLACK_STRIKE.sub(r"~~\1~~", text)


def _md_who(actor: str | None) -> str:
    if not actor:
        return "—"
    return f"@{actor}" if _is_user(actor) else _md(actor)


# --- Markdown sections -----------------------------------------------------------------------


@dataclass
class _Facts:
    """What several sections need, computed once from the timeline."""

    storms: list[tuple[datetime, datetime, int]] = field(default_factory=list)
    fires: dict[str, Counter[str]] = field(default_factory=dict)  # name -> fingerprint -> fires
    covered_all: bool = False
    covered: set[str] = field(default_factory=set)


def _facts(events: Sequence[TimelineEvent]) -> _Facts:
    facts = _Facts()
    for event in events:
        if event.kind == "alert_fired":
            facts.fires.setdefault(_alert_name_of(event), Counter())[_alert_key_of(event)] += 1
        elif event.kind.startswith("playbook") and not event.kind.endswith(_PLAYBOOK_NEGATIVE):
            names: list[str] = []
            one = event.data.get("alertname")
            many = event.data.get("alertnames")
            if isinstance(one, str) and one:
                names.append(one)
            if isinstance(many, list):
                names += [n for n in many if isinstance(n, str)]
            if names:
                facts.covered.update(names)
            else:
                facts.covered_all = True
    return facts


def _summary_section(view: IncidentView, events: Sequence[TimelineEvent], now: datetime) -> list[str]:
    inc = view.incident
    start = _utc(inc.created_at)
    end = _utc(_end(view, now))
    ongoing = inc.resolved_at is None
    span_end = "ongoing" if ongoing else _hhmm(end, start)
    took = format_duration(end - start) + (" so far" if ongoing else "")
    out = [
        "## Summary",
        "",
        f"- **Date:** {start:%Y-%m-%d}",
        f"- **Duration:** {start:%H:%M} – {span_end} UTC ({took})",
        f"- **Severity:** {inc.severity.value} — {SEVERITY_LABELS[inc.severity]}",
        "- **Impact:** _Fill in: describe the user impact — who and what was affected, error rate and"
        " latency peaks, failed requests, SLO / error budget consumed._",
        f"- **Detection:** {_detection(view, events)}",
    ]
    if inc.acknowledged_at is not None:
        tta = format_duration(_utc(inc.acknowledged_at) - start)
        out.append(f"- **Time to acknowledge:** {tta} (by {_md_who(inc.acknowledged_by)})")
    if ongoing:
        status = f"{inc.status.value.capitalize()} (still open at {_hhmm(now, start)} UTC)"
    else:
        status = f"Resolved at {_hhmm(end, start)} UTC by {_md_who(inc.resolved_by)}"
    out.append(f"- **Status:** {status}")
    people = [f"commander {_md_who(_commander(view))}"]
    people += [f"{role.value} {_md_who(user)}" for role, user in view.roles if role is not Role.COMMANDER]
    out.append(f"- **Responders:** {', '.join(people)}")
    links = []
    if inc.channel_name:
        links.append(f"Slack #{_md(inc.channel_name)}")
    if inc.pagerduty_url:
        links.append(f"[PagerDuty]({_md_url(inc.pagerduty_url)})")
    if view.external_url:
        links.append(f"[Alertmanager]({_md_url(view.external_url)})")
    if view.grafana_url:
        links.append(f"[Grafana]({_md_url(view.grafana_url)})")
    if links:
        out.append(f"- **Links:** {' · '.join(links)}")
    return out


def _md_url(url: str) -> str:
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("\n", "")


def _detection(view: IncidentView, events: Sequence[TimelineEvent]) -> str:
    inc = view.incident
    start = _utc(inc.created_at)
    if inc.source is IncidentSource.HUMAN:
        opener = next((e.actor for e in events if e.kind == "opened" and e.actor), None)
        return f"Human — declared by {_md_who(opener or inc.commander)} at {_hhmm(start)} UTC"
    if inc.source is IncidentSource.PAGERDUTY:
        ref = _md(inc.pagerduty_incident_id) if inc.pagerduty_incident_id else "incident"
        return f"PagerDuty — {ref} opened at {_hhmm(start)} UTC"
    if not view.alerts:
        return f"Alert (Alertmanager) — incident opened at {_hhmm(start)} UTC"
    first = min(view.alerts, key=lambda a: _utc(a.starts_at))
    lag = format_duration(start - _utc(first.starts_at))
    return (
        f"Alert (Alertmanager) — {_md(first.name)} fired at {_hhmm(first.starts_at, start)} UTC;"
        f" incident opened at {_hhmm(start)} UTC (detection time: {lag})"
    )


def _event_line(event: TimelineEvent) -> str:
    if event.kind == "resolution_summary":
        return "Resolution summary posted in the channel"
    text = _mrkdwn_to_md(event.text)
    if event.kind == "status_update":
        text = f"Status update: {text}"
    if event.actor:
        who = _md_who(event.actor)
        if who not in text:
            text += f" ({who})"
    return text


def _storm_line(run: Sequence[TimelineEvent], day: datetime) -> str:
    fired = sum(1 for e in run if e.kind == "alert_fired")
    counts = _name_counts(_alert_name_of(e) for e in run)
    shown = ", ".join(f"{_md(n)} ×{c}" for n, c in counts[:5])
    more = f", +{len(counts) - 5} more" if len(counts) > 5 else ""
    when = f"{_hhmm(run[0].at, day)}–{_hhmm(run[-1].at, day)}"
    text = (
        f"Alert storm: {len(run)} alert events ({fired} fired, {len(run) - fired} resolved)"
        f" for {len(counts)} alert name(s): {shown}{more}"
    )
    return f"| {when} | {_cell(text)} |"


def _timeline_section(view: IncidentView, events: Sequence[TimelineEvent], facts: _Facts) -> list[str]:
    day = view.incident.created_at
    out = ["## Timeline", "", "| Time (UTC) | Event |", "|------------|-------|"]
    run: list[TimelineEvent] = []

    def flush() -> None:
        if len(run) > STORM_THRESHOLD:
            out.append(_storm_line(run, day))
            facts.storms.append((run[0].at, run[-1].at, len(run)))
        else:
            out.extend(f"| {_hhmm(e.at, day)} | {_cell(_event_line(e))} |" for e in run)
        run.clear()

    for event in events:
        if event.kind in _ALERT_KINDS:
            run.append(event)
            continue
        flush()
        out.append(f"| {_hhmm(event.at, day)} | {_cell(_event_line(event))} |")
    flush()
    if not events:
        out.append(f"| {_hhmm(day)} | Incident opened (no timeline events recorded) |")
    return out


def _labels_text(alert: Alert) -> str:
    pairs = [f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname"]
    return _clip_plain(", ".join(pairs), 300)


def _annotation_text(alert: Alert) -> str:
    parts = [alert.annotations.get(k, "").strip() for k in ("summary", "description")]
    return _clip_plain(" — ".join(p for p in parts if p), 500)


def _root_cause_section(view: IncidentView) -> list[str]:
    out = [
        "## Root Cause",
        "",
        "_Fill in: describe what caused the incident. Did a deployment, a configuration change, resource"
        " exhaustion, a dependency or the database cause it? Why was it not caught earlier?_",
        "",
        "### Evidence: alerts",
        "",
    ]
    if not view.alerts:
        out.append("_No alerts were attached to this incident._")
        return out
    day = view.incident.created_at
    out += [
        "| Alert | Status | Fired (UTC) | Resolved (UTC) | Labels | Summary / description |",
        "|-------|--------|-------------|----------------|--------|-----------------------|",
    ]
    ordered = sorted(view.alerts, key=lambda a: (_utc(a.starts_at), a.name, a.fingerprint))
    for alert in ordered[:MAX_EVIDENCE_ALERTS]:
        ended = _hhmm(alert.ends_at, day) if alert.ends_at and alert.status is AlertStatus.RESOLVED else "—"
        cells = [
            _md(alert.name),
            alert.status.value,
            _hhmm(alert.starts_at, day),
            ended,
            _md(_labels_text(alert)) or "—",
            _md(_annotation_text(alert)) or "—",
        ]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    rest = ordered[MAX_EVIDENCE_ALERTS:]
    if rest:
        counts = _name_counts(a.name for a in rest)
        shown = ", ".join(f"{_md(n)} ×{c}" for n, c in counts[:10])
        more = f", +{len(counts) - 10} more names" if len(counts) > 10 else ""
        out += ["", f"…and {len(rest)} more alerts: {shown}{more}."]
    return out


def _params_text(params: dict[str, Any]) -> str:
    return _clip_plain(
        ", ".join(f"{k}={v}" for k, v in sorted(params.items(), key=lambda kv: str(kv[0]))), 300
    )


def _failed(entry: AuditEntry) -> bool:
    """A remediation that ran and failed (the result may carry " — <verification>")."""
    status = entry.result.split(" — ", 1)[0].strip().lower()
    if status in _NOT_RUN_RESULTS:
        return False
    return bool(entry.error) or status in _FAILED_RESULTS


def _resolution_section(
    view: IncidentView, events: Sequence[TimelineEvent], audit: Sequence[AuditEntry]
) -> list[str]:
    inc = view.incident
    day = inc.created_at
    out = ["## Resolution", ""]
    if inc.resolution_summary and inc.resolution_summary.strip():
        out.append(f"**Resolution summary:** {_md(inc.resolution_summary)}")
    else:
        out.append("_Fill in: describe how the incident was resolved._")
    if inc.resolved_at is not None:
        out += ["", f"Resolved by {_md_who(inc.resolved_by)} at {_hhmm(inc.resolved_at, day)} UTC."]
    out += ["", "### Remediation actions", ""]
    if audit:
        out += [
            "| Started (UTC) | Finished (UTC) | Action | Target | Parameters | Requested by | Approved by | Result |",
            "|---------------|----------------|--------|--------|------------|--------------|-------------|--------|",
        ]
        for entry in sorted(audit, key=lambda e: _utc(e.started_at)):
            result = entry.result + (f": {entry.error}" if entry.error else "")
            cells = [
                _hhmm(entry.started_at, day),
                _hhmm(entry.finished_at, day) if entry.finished_at else "—",
                _md(entry.action),
                _md(entry.target),
                _md(_params_text(public_params(entry.action, entry.params))) or "—",
                _md_who(entry.requested_by),
                ", ".join(_md_who(a) for a in entry.approved_by) or "—",
                _md(_clip_plain(result, 300)),
            ]
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    else:
        out.append("_No automated remediation actions were run._")
    recorded = [e for e in events if _is_executed(e)]
    if recorded:
        out += ["", "Actions taken (from the timeline):", ""]
        out += [f"- {_hhmm(e.at, day)} — {' '.join(_event_line(e).split())}" for e in recorded]
    return out


def _coverage_suggestions(view: IncidentView, facts: _Facts) -> list[str]:
    found: list[str] = []
    if not view.alerts and view.incident.source is IncidentSource.HUMAN:
        found.append(
            "Add alerting that would have detected this automatically (the incident was declared by a human)"
        )
    if view.alerts and not facts.covered_all:
        missing = sorted({a.name for a in view.alerts} - facts.covered)
        for name in missing[:MAX_SUGGESTED_NAMES]:
            found.append(f"Add a runbook / playbook for {_md(name)} (no playbook matched it)")
        if len(missing) > MAX_SUGGESTED_NAMES:
            found.append(
                f"Add runbooks for the {len(missing) - MAX_SUGGESTED_NAMES} other alerts without one"
            )
    return found


def _noise_suggestions(facts: _Facts) -> list[str]:
    found: list[str] = []
    flapped = sorted(
        (
            (name, max(c.values()), sum(c.values()))
            for name, c in facts.fires.items()
            if max(c.values()) >= FLAP_MIN_FIRES
        ),
        key=lambda t: (-t[2], t[0]),
    )
    for name, most, total in flapped[:MAX_SUGGESTED_NAMES]:
        found.append(
            f"Tune alert {_md(name)}: it flapped (fired {total} times, up to {most} for one series)"
            " — consider a longer `for:` duration or hysteresis"
        )
    for start, end, count in facts.storms:
        found.append(
            f"Reduce alert noise: {count} alert events between {_hhmm(start)} and {_hhmm(end)} UTC"
            " — review grouping and inhibition rules"
        )
    return found


def _response_suggestions(
    view: IncidentView, events: Sequence[TimelineEvent], audit: Sequence[AuditEntry]
) -> list[str]:
    inc = view.incident
    found: list[str] = []
    target = RESPONSE_TARGETS.get(inc.severity)
    if target is not None and inc.acknowledged_at is not None:
        took = _utc(inc.acknowledged_at) - _utc(inc.created_at)
        if took > target:
            found.append(
                f"Review paging and escalation: acknowledgement took {format_duration(took)},"
                f" above the {inc.severity.value} response target of {format_duration(target)}"
            )
    for entry in audit:
        if _failed(entry):
            found.append(f"Investigate the failed remediation {_md(entry.action)} on {_md(entry.target)}")
    if inc.resolved_at is not None and view.firing:
        names = sorted({a.name for a in view.firing})
        shown = ", ".join(_md(n) for n in names[:5]) + (f", +{len(names) - 5} more" if len(names) > 5 else "")
        found.append(f"Follow up on {len(view.firing)} alert(s) still firing at resolution: {shown}")
    if inc.severity in (Severity.P1, Severity.P2) and not any(e.kind == "status_update" for e in events):
        found.append("Post regular status updates during incidents (none were posted)")
    return found


def _suggestions(
    view: IncidentView, events: Sequence[TimelineEvent], audit: Sequence[AuditEntry], facts: _Facts
) -> list[str]:
    return [
        *_coverage_suggestions(view, facts),
        *_noise_suggestions(facts),
        *_response_suggestions(view, events, audit),
    ]


def _action_items_section(
    view: IncidentView, events: Sequence[TimelineEvent], audit: Sequence[AuditEntry], facts: _Facts
) -> list[str]:
    out = [
        "## Action Items",
        "",
        "| Done | Action Item | Owner | Due Date |",
        "|------|-------------|-------|----------|",
    ]
    for item in _suggestions(view, events, audit, facts):
        out.append(f"| [ ] | {_cell(item)} | _TBD_ | YYYY-MM-DD |")
    out += [
        "| [ ] | _Fill in: action item_ | _Owner_ | YYYY-MM-DD |",
        "| [ ] | _Fill in: action item_ | _Owner_ | YYYY-MM-DD |",
        "",
        "## Lessons Learned",
        "",
        "- _Fill in: what went well?_",
        "- _Fill in: what went wrong?_",
        "- _Fill in: where did we get lucky?_",
    ]
    return out


def postmortem_markdown(
    view: IncidentView,
    events: list[TimelineEvent],
    audit: list[AuditEntry],
    now: datetime,
    *,
    graphs: list[str] | None = None,
    names: Mapping[str, str] | None = None,
) -> str:
    """A Markdown incident-report draft in the shape of the seed post-mortem template.
    `names` maps Slack user ids to display names: a report is read outside Slack, where an
    id names nobody."""
    inc = view.incident
    facts = _facts(events)
    parts: list[list[str]] = [
        [f"# Incident Report: {inc.ref} — {_md(inc.title)}"],
        _summary_section(view, events, now),
        _timeline_section(view, events, facts),  # records storms, used by the action items
        _root_cause_section(view),
        _resolution_section(view, events, audit),
        _action_items_section(view, events, audit, facts),
    ]
    if graphs is not None:
        section = ["## Graphs", ""]
        section += [f"- {_md(title)}" for title in graphs] or ["_No graphs were posted._"]
        parts.append(section)
    parts.append(
        [
            "---",
            "",
            f"_Draft generated by incidentbot at {_utc(now):%Y-%m-%d %H:%M} UTC from the incident"
            " timeline and audit log. Review and fill in the placeholders before publishing._",
        ]
    )
    return _with_names("\n\n".join("\n".join(p) for p in parts) + "\n", names or {})


def _with_names(markdown: str, names: Mapping[str, str]) -> str:
    """Every user id (as `@U…`, or bare where it is no Slack-shaped id) as `@display name`."""
    shown: dict[str, str] = {}
    for user, name in names.items():
        if name.strip():
            shown[user] = shown[_md(user)] = "@" + _md(name)
    if not shown:
        return markdown
    forms = "|".join(re.escape(form) for form in sorted(shown, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w\\])@?({forms})(?![\w\\])")
    return pattern.sub(lambda m: shown[m.group(1)], markdown)


def with_generated_narrative(markdown: str, narrative: str, model: str) -> str:
    """The draft with a narrative summary written by the investigator's model, right under its
    title, marked as generated so nobody mistakes it for the record: the sections below it
    are built from the timeline and the audit; this one is a model's reading of them."""
    title, sep, rest = markdown.partition("\n\n")
    section = [
        "## Narrative summary (generated)",
        "",
        f"> ⚠️ Written by a language model ({_md(model)}) from the incident timeline; it may be wrong."
        " Check it against the timeline below before publishing.",
        "",
        *(f"> {_md(line)}" if line.strip() else ">" for line in narrative.strip().splitlines()),
    ]
    return title + sep + "\n".join(section) + "\n\n" + rest
