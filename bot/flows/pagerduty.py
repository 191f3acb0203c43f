"""PagerDuty → incidents: apply V3 webhook events stored in the inbox.

An event that matches what we already store is a no-op, and changes that arrive from
PagerDuty are never sent back to it, so the two directions cannot loop: when Slack acks an
incident we tell PagerDuty; PagerDuty's resulting `incident.acknowledged` webhook finds the
incident already acknowledged and does nothing.
"""

from __future__ import annotations

import json
import logging
import re

from bot.core.blockkit import escape
from bot.core.errors import IntegrationError
from bot.core.incident import Incident, IncidentSource, IncidentStatus, Severity
from bot.core.timers import opening_timers
from bot.deps import Deps
from bot.flows import incidents, timers
from bot.sources.pagerduty import IncidentData, PagerDutyEvent, parse_webhook
from bot.store.inbox import InboxRow
from bot.store.incidents import IntakeTx

log = logging.getLogger("incidentbot.pagerduty")
# Events that set the incident's state: applied only when newer than the last one applied.
STATE_EVENTS = frozenset(
    {
        "incident.acknowledged",
        "incident.resolved",
        "incident.reopened",
        "incident.unacknowledged",
        "incident.priority_updated",
    }
)
PRIORITY = re.compile(r"^\s*(?:P|SEV)?\s*([0-4])\b", re.IGNORECASE)
OUR_DEDUP_PREFIX = "incidentbot-"


def severity_of(data: IncidentData) -> Severity:
    """PagerDuty priority (P1..P5, SEV-1...) when set, else urgency: high → P2, low → P4."""
    if data.priority is not None and data.priority.summary:
        match = PRIORITY.match(data.priority.summary)
        if match:
            return Severity(f"P{min(4, max(1, int(match.group(1))))}")
    return Severity.P2 if (data.urgency or "high") == "high" else Severity.P4


def _agent(event: PagerDutyEvent) -> str:
    if event.agent is None:
        return "PagerDuty"
    return f"{event.agent.summary or event.agent.id} (PagerDuty)"


async def apply(deps: Deps, row: InboxRow, tx: IntakeTx) -> list[int]:
    event = parse_webhook(json.dumps(row.body).encode())
    pd_id = event.incident_id
    if pd_id is None:
        return []
    incident = await deps.lifecycle.by_pagerduty(pd_id)
    data = event.incident
    if (
        incident is None
        and data is not None
        and event.event_type in ("incident.triggered", "incident.reopened")
    ):
        incident = await _open_or_join(deps, tx, data)
        return [incident.id]
    if incident is None:
        log.info("pagerduty.unknown_incident", extra={"pagerduty_id": pd_id, "event": event.event_type})
        return []
    await _update(deps, incident, event)
    return [incident.id]


async def _open_or_join(deps: Deps, tx: IntakeTx, data: IncidentData) -> Incident:
    """Join the incident this PagerDuty incident belongs to (our own escalation page, or an
    open incident whose group key is the PagerDuty dedup key), else open a new one."""
    now = deps.clock()
    key = data.incident_key or ""
    joined: Incident | None = None
    if key.startswith(OUR_DEDUP_PREFIX) and key[len(OUR_DEDUP_PREFIX) :].isdigit():
        joined = await deps.store.get_incident(int(key[len(OUR_DEDUP_PREFIX) :]))
    elif key:
        joined = await tx.open_incident_for(key)
    if joined is not None and joined.status is not IncidentStatus.RESOLVED:
        incident = joined
        text = (
            f"Linked to PagerDuty incident <{data.html_url or ''}|#{data.number or data.id}>"
            if data.html_url
            else f"Linked to PagerDuty incident {escape(data.id)}"
        )
        await tx.add_event(incident.id, "pagerduty_linked", text, at=now, announce=True)
        await tx.bump_version(incident.id)
    else:
        severity = severity_of(data)
        incident, created = await tx.create_incident(
            group_key=f"pagerduty:{data.id}",
            title=data.title[:200] or "PagerDuty incident",
            severity=severity,
            source=IncidentSource.PAGERDUTY,
            now=now,
        )
        if created:
            for kind, due_at, timer_data in opening_timers(deps.policy, incident, now):
                await tx.schedule_timer(incident.id, kind, due_at, timer_data)
            service = data.service.summary if data.service and data.service.summary else "PagerDuty"
            await tx.add_event(
                incident.id,
                "opened",
                f"Incident opened from PagerDuty ({escape(service)})",
                at=now,
                data={"pagerduty_id": data.id},
            )
            deps.metrics.incidents_opened.labels("pagerduty", severity.value).inc()
    await tx.conn.execute(
        "UPDATE incidents SET pagerduty_incident_id = $2, pagerduty_url = $3, pagerduty_service = $4,"
        " pagerduty_escalation_policy = $5 WHERE id = $1",
        incident.id,
        data.id,
        data.html_url,
        data.service.id if data.service else None,
        data.escalation_policy.id if data.escalation_policy else None,
    )
    return incident


async def _update(deps: Deps, incident: Incident, event: PagerDutyEvent) -> None:
    now = deps.clock()
    who = _agent(event)
    kind = event.event_type
    data = event.incident
    if kind in STATE_EVENTS and not await deps.lifecycle.advance_pagerduty_clock(
        incident.id, event.occurred_at
    ):
        await deps.lifecycle.add_event(
            incident.id,
            "pagerduty_stale",
            f"Ignored PagerDuty {escape(kind)} of {event.occurred_at:%H:%M:%S} UTC: a newer change was applied",
            now=now,
        )
        return
    if kind == "incident.acknowledged":
        if incident.status is IncidentStatus.TRIGGERED:
            await incidents.acknowledge(deps, incident, who, from_pagerduty=True)
    elif kind == "incident.resolved":
        if incident.status is not IncidentStatus.RESOLVED:
            await incidents.resolve(deps, incident, who, "resolved in PagerDuty", from_pagerduty=True)
    elif kind in ("incident.reopened", "incident.unacknowledged"):
        if incident.status is IncidentStatus.RESOLVED:
            await incidents.reopen(deps, incident, who)
    elif kind == "incident.priority_updated" and data is not None:
        severity = severity_of(data)
        changed = await deps.lifecycle.set_severity(incident.id, severity, who, now)
        if changed is not None:
            await timers.reschedule_for_severity(deps, changed)
    elif kind == "incident.reassigned" and data is not None:
        names = ", ".join(escape(a.summary or a.id) for a in data.assignees) or "nobody"
        await deps.lifecycle.add_event(
            incident.id, "pagerduty_reassigned", f"PagerDuty reassigned to {names}", now=now, announce=True
        )
        await invite_oncall(deps, incident)
    elif kind == "incident.annotated" and event.note is not None:
        await deps.lifecycle.add_event(
            incident.id,
            "pagerduty_note",
            f"📝 PagerDuty note by {escape(who)}: {escape(event.note.content[:1500])}",
            now=now,
            announce=True,
        )
    elif kind == "incident.escalated":
        await deps.lifecycle.add_event(
            incident.id, "pagerduty_escalated", "PagerDuty escalated the incident", now=now
        )
    deps.publisher.request(incident.id)


async def invite_oncall(deps: Deps, incident: Incident) -> list[str]:
    """Look up the current on-call of the incident's escalation policy, map them to Slack users
    by email and invite them to the channel. Returns the Slack ids invited."""
    if deps.pager is None or not incident.channel_id:
        return []
    policy_id = await deps.lifecycle.escalation_policy(incident.id)
    if not policy_id:
        return []
    try:
        oncall = await deps.pager.oncall_users(policy_id)
    except IntegrationError as exc:
        await deps.lifecycle.add_event(
            incident.id,
            "oncall_lookup_failed",
            f"⚠️ On-call lookup failed: {escape(exc.message)}",
            now=deps.clock(),
            announce=True,
        )
        return []
    invited: list[str] = []
    for person in oncall:
        if not person.email:
            continue
        user = await deps.chat.lookup_by_email(person.email)
        if user is not None:
            invited.append(user)
    if invited:
        await deps.chat.invite(incident.channel_id, invited)
        mentions = " ".join(f"<@{u}>" for u in invited)
        await deps.lifecycle.add_event(
            incident.id,
            "oncall_invited",
            f"📟 On-call from PagerDuty invited: {mentions}",
            now=deps.clock(),
            announce=True,
        )
        deps.publisher.request(incident.id)
    return invited


async def after_publish(deps: Deps, incident: Incident) -> None:
    """Once a PagerDuty-linked incident has its channel, invite the on-call (once)."""
    if deps.pager is None or not incident.pagerduty_incident_id or not incident.channel_id:
        return
    if await deps.coord.first_time(f"pd-oncall:{incident.id}:{incident.pagerduty_incident_id}", 7 * 86400):
        await invite_oncall(deps, incident)
