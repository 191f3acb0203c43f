"""Pure message builders: (view, now) -> Message. No I/O, no clock."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from urllib.parse import quote

from bot.core.blockkit import (
    Block,
    Message,
    actions,
    button,
    clip,
    context,
    divider,
    header,
    inline,
    link,
    mention,
    message,
    section,
    single_line,
)
from bot.core.correlation import ATTACH_ACTION, SEPARATE_ACTION, SUGGESTED_EVENT
from bot.core.incident import (
    Alert,
    AlertStatus,
    Incident,
    IncidentStatus,
    IncidentView,
    Role,
    Severity,
    TimelineEvent,
)
from bot.core.promql import TrustedSources
from bot.render.times import ago, when

SEVERITY_EMOJI = {Severity.P1: "🔴", Severity.P2: "🟠", Severity.P3: "🟡", Severity.P4: "🔵"}
STATUS_LABEL = {
    IncidentStatus.TRIGGERED: "🚨 Triggered",
    IncidentStatus.ACKNOWLEDGED: "👀 Acknowledged",
    IncidentStatus.RESOLVED: "✅ Resolved",
}
MAX_ALERT_GROUPS = 8
MAX_ALERTS_LISTED = 10
HIDDEN_LABELS = {"alertname", "severity"}


def title_line(incident: Incident) -> str:
    return f"{SEVERITY_EMOJI[incident.severity]} [{incident.severity}] {incident.title}"


def topic(view: IncidentView) -> str:
    inc = view.incident
    return clip(
        f"[{inc.severity}] {inc.status.value.upper()} · {single_line(inc.title)} · incident {inc.ref}", 250
    )


def counts(view: IncidentView) -> str:
    firing = len(view.firing)
    total = len(view.alerts)
    if total == 0:
        return "no alerts (declared by a human)" if view.incident.source.value == "human" else "no alerts"
    return f"{firing} firing / {total} total"


def _status_fields(view: IncidentView, now: datetime) -> list[str]:
    inc = view.incident
    fields = [
        f"*Status*\n{STATUS_LABEL[inc.status]}",
        f"*Severity*\n{SEVERITY_EMOJI[inc.severity]} {inc.severity}",
        f"*Commander*\n{mention(inc.commander) if inc.commander else '_unassigned_'}",
        f"*Opened*\n{when(inc.created_at)} ({ago(inc.created_at)})",
        f"*Alerts*\n{counts(view)}",
    ]
    if view.team_title:
        team = inline(view.team_title, 100)
        fields.append(
            f"*Team*\n{team} · {inline(view.service_title, 100)}" if view.service_title else f"*Team*\n{team}"
        )
    if inc.acknowledged_by:
        fields.append(f"*Acknowledged by*\n{mention(inc.acknowledged_by)}")
    if inc.resolved_by:
        fields.append(f"*Resolved by*\n{mention(inc.resolved_by)}")
    if inc.last_status_update:
        fields.append(f"*Last update*\n{inline(inc.last_status_update, 300)}")
    return fields


def _roles_line(view: IncidentView) -> str:
    """The roles besides the commander (scribe, comms, deputy), so everyone sees who does what."""
    held = [(role, user) for role, user in view.roles if role is not Role.COMMANDER]
    return " · ".join(f"*{role.value.capitalize()}* {mention(user)}" for role, user in held)


def _grafana_link(grafana_url: str | None, alert: Alert) -> str | None:
    if not grafana_url:
        return None
    return f"{grafana_url.rstrip('/')}/alerting/list?search={quote(alert.name)}"


def _alert_links(alert: Alert, view: IncidentView) -> str:
    parts = []
    if alert.generator_url:
        parts.append(link(alert.generator_url, "Prometheus"))
    runbook = alert.annotations.get("runbook_url")
    if runbook:
        parts.append(link(runbook, "Runbook"))
    if view.external_url:
        parts.append(link(view.external_url, "Alertmanager"))
    grafana = _grafana_link(view.grafana_url, alert)
    if grafana:
        parts.append(link(grafana, "Grafana"))
    return " · ".join(parts)


def _distinct_labels(alerts: list[Alert]) -> list[str]:
    """Labels whose values differ between alerts: what tells the alerts of a group apart."""
    keys = sorted({k for a in alerts for k in a.labels} - HIDDEN_LABELS)
    return [k for k in keys if len({a.labels.get(k) for a in alerts}) > 1]


def _alert_group_blocks(name: str, alerts: list[Alert], view: IncidentView) -> list[Block]:
    firing = [a for a in alerts if a.status is AlertStatus.FIRING]
    first = firing[0] if firing else alerts[0]
    state = f"{len(firing)} firing" + (
        f", {len(alerts) - len(firing)} resolved" if len(firing) < len(alerts) else ""
    )
    lines = [f"*{inline(name)}* — {state}"]
    for key in ("summary", "description"):
        text = first.annotations.get(key)
        if text:
            lines.append(f"> {inline(text, 600)}")
    common = {
        k: v
        for k, v in first.labels.items()
        if k not in HIDDEN_LABELS and all(a.labels.get(k) == v for a in alerts)
    }
    if common:
        lines.append(" ".join(f"`{inline(k)}={inline(v)}`" for k, v in sorted(common.items())[:12]))
    lines.append(f"Started {when(min(a.starts_at for a in alerts))}")
    links = _alert_links(first, view)
    if links:
        lines.append(links)
    blocks = [section("\n".join(lines))]
    distinct = _distinct_labels(alerts)
    if len(alerts) > 1 and distinct:
        rows = []
        for alert in alerts[:MAX_ALERTS_LISTED]:
            mark = "🔥" if alert.status is AlertStatus.FIRING else "✅"
            rows.append(
                mark
                + " "
                + ", ".join(f"{inline(k)}={inline(alert.labels.get(k, '—'))}" for k in distinct[:4])
            )
        if len(alerts) > MAX_ALERTS_LISTED:
            rows.append(f"… and {len(alerts) - MAX_ALERTS_LISTED} more")
        blocks.append(context("\n".join(rows)))
    return blocks


def trusted_links(view: IncidentView, sources: TrustedSources) -> IncidentView:
    """The view without the alert-supplied links (generatorURL, externalURL) that point
    anywhere but a configured Prometheus or Alertmanager: whoever posts an alert chooses them."""
    alerts = tuple(
        a if sources.prometheus.allows(a.generator_url) else replace(a, generator_url="") for a in view.alerts
    )
    external = view.external_url if sources.alertmanager.allows(view.external_url) else None
    return replace(view, alerts=alerts, external_url=external)


def incident_card(view: IncidentView, now: datetime, sources: TrustedSources | None = None) -> Message:
    """The pinned summary in the incident channel, re-rendered on every change. Alert-supplied
    links are shown only for the configured hosts in `sources` (none without)."""
    view = trusted_links(view, sources or TrustedSources())
    inc = view.incident
    blocks: list[Block] = [
        header(title_line(inc)),
        section(f"Incident {inc.ref}", fields=_status_fields(view, now)),
    ]
    others = _roles_line(view)
    if others:
        blocks.append(context(others))
    if view.alerts:
        blocks.append(divider())
        blocks.append(section("*What fired*"))
        grouped: dict[str, list[Alert]] = defaultdict(list)
        for alert in view.alerts:
            grouped[alert.name].append(alert)
        for name in sorted(grouped)[:MAX_ALERT_GROUPS]:
            blocks.extend(_alert_group_blocks(name, grouped[name], view))
        if len(grouped) > MAX_ALERT_GROUPS:
            blocks.append(context(f"… and {len(grouped) - MAX_ALERT_GROUPS} more alert names"))
        if view.all_resolved:
            blocks.append(
                context("✅ All alerts have resolved. The incident stays open until someone resolves it.")
            )
    buttons = lifecycle_buttons(inc)
    if buttons:
        blocks.append(actions(*buttons, block_id=f"incident-{inc.id}"))
    blocks.append(context(f"incidentbot · {inc.source.value} · updated {when(now)}"))
    return message(f"{inline(title_line(inc))} ({inc.status.value})", blocks)


EDIT_ACTION = "edit_incident"


def lifecycle_buttons(inc: Incident) -> list[Block]:
    buttons: list[Block] = []
    if inc.status is IncidentStatus.TRIGGERED:
        buttons.append(button("Acknowledge", "ack_incident", str(inc.id), style="primary"))
    if inc.status is not IncidentStatus.RESOLVED:  # severity, commander, status in a modal
        buttons.append(button("Edit", EDIT_ACTION, str(inc.id)))
    return buttons


def latest(inc: Incident) -> str:
    """The last word on the incident: its resolution once resolved (a status update from
    before would be stale), else the latest status update."""
    if inc.status is IncidentStatus.RESOLVED:
        said = (inc.resolution_summary or "").strip()
        return f"\n_Resolution:_ {inline(said, 500)}" if said else ""
    if inc.last_status_update:
        return f"\n_Latest:_ {inline(inc.last_status_update, 500)}"
    return ""


def announcement(event: TimelineEvent) -> Message:
    """A timeline event worth telling the channel (alerts resolved, firing again, ...).

    Event texts are Slack-safe mrkdwn by construction: whoever writes an event escapes the
    alert- or user-derived parts (kit.inline) and may use mentions, so nothing is escaped here.
    """
    blocks = [section(event.text)]
    token = event.data.get("token") if event.kind == SUGGESTED_EVENT else None
    if isinstance(token, str) and token:
        # A correlation suggestion: its buttons carry only the opaque token of the stored question.
        blocks.append(
            actions(
                button("Attach", ATTACH_ACTION, token, style="primary"),
                button("Keep separate", SEPARATE_ACTION, token),
                block_id=f"correlation-{token[:12]}",
            )
        )
    return message(clip(event.text, 300), blocks)
