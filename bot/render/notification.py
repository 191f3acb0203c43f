"""The notification in the team's channel: what the person being woken needs on one screen.

Like PagerDuty's and incident.io's Slack messages: severity and title, service, namespace and
team, the alert's summary, its current value when it has one, the runbook, who is on call,
the incident channel, and buttons that stay useful after the acknowledgement (Join channel,
Open channel). Pure: (view, now, on-call) -> Message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.core.blockkit import (
    Block,
    Message,
    actions,
    button,
    context,
    inline,
    link,
    mention,
    message,
    section,
)
from bot.core.incident import Alert, IncidentStatus, IncidentView
from bot.render.cards import STATUS_LABEL, counts, latest, lifecycle_buttons, title_line
from bot.render.times import ago

__all__ = ["JOIN_ACTION", "OPEN_LINK_ACTION", "notification"]

JOIN_ACTION = "join_incident_channel"
# A link button still sends its click to the app, which acknowledges it and does nothing.
OPEN_LINK_ACTION = "open_incident_channel"
MAX_SUMMARY = 300
MAX_VALUE = 60
# Annotations an alert rule commonly uses for these (Prometheus' own conventions and the
# seeds' rules).
SUMMARY_KEYS = ("summary", "description", "message")
VALUE_KEYS = ("value", "current_value", "current")
RUNBOOK_KEYS = ("runbook_url", "runbook")


def _first(alert: Alert | None, keys: Sequence[str], *, besides: str = "") -> str:
    """The first of these annotations the alert has (other than `besides`: the title)."""
    if alert is None:
        return ""
    for key in keys:
        value = alert.annotations.get(key, "").strip()
        if value and value != besides.strip():
            return value
    return ""


def _lead_alert(view: IncidentView) -> Alert | None:
    """The alert that speaks for the incident: the first still firing, else the first."""
    return next(iter(view.firing), None) or next(iter(view.alerts), None)


def _fields(view: IncidentView, alert: Alert | None, oncall: Sequence[str]) -> list[str]:
    fields: list[str] = []
    service = view.service_title or (alert.labels.get("service", "") if alert else "")
    if service:
        fields.append(f"*Service*\n{inline(service, 80)}")
    namespace = alert.labels.get("namespace", "") if alert else ""
    if namespace:
        fields.append(f"*Namespace*\n`{inline(namespace, 63)}`")
    value = _first(alert, VALUE_KEYS)
    if value:
        fields.append(f"*Current value*\n{inline(value, MAX_VALUE)}")
    if oncall:
        fields.append("*On call*\n" + ", ".join(oncall))
    runbook = _first(alert, RUNBOOK_KEYS)
    if runbook:
        fields.append(f"*Runbook*\n{link(runbook, 'Open the runbook')}")
    return fields


def _buttons(view: IncidentView) -> list[Block]:
    inc = view.incident
    buttons = lifecycle_buttons(inc)
    if inc.channel_id:
        buttons.append(button("Join channel", JOIN_ACTION, str(inc.id)))
        opener = button("Open channel", OPEN_LINK_ACTION, str(inc.id))
        opener["url"] = f"https://slack.com/app_redirect?channel={inc.channel_id}"
        buttons.append(opener)
    return buttons


def notification(view: IncidentView, now: datetime, oncall: Sequence[str] = ()) -> Message:
    """The message in the team's notification channel. `oncall`: Slack mrkdwn naming who is
    on call (mentions), already safe."""
    inc = view.incident
    alert = _lead_alert(view)
    where = f"<#{inc.channel_id}>" if inc.channel_id else "_channel being created_"
    text = f"*{inline(title_line(inc))}*\n{STATUS_LABEL[inc.status]} · {counts(view)} · {where}"
    summary = _first(alert, SUMMARY_KEYS, besides=inc.title)
    if summary and inc.status is not IncidentStatus.RESOLVED:
        text += f"\n{inline(summary, MAX_SUMMARY)}"
    text += latest(inc)
    blocks: list[Block] = [section(text, fields=_fields(view, alert, oncall))]
    details = [f"Incident {inc.ref}", f"opened {ago(inc.created_at)}"]
    if view.team_title:
        details.append(f"team {inline(view.team_title, 100)}")
    if inc.acknowledged_by:
        details.append(f"acknowledged by {mention(inc.acknowledged_by)}")
    if inc.commander:
        details.append(f"commander {mention(inc.commander)}")
    blocks.append(context(" · ".join(details)))
    buttons = _buttons(view)
    if buttons:
        blocks.append(actions(*buttons, block_id=f"notify-{inc.id}"))
    return message(f"{inline(title_line(inc))} — {inc.status.value}", blocks)
