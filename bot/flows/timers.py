"""Durable timers: acknowledgement reminders, escalation, update cadence, postmortem
reminders and channel archive. Stored in Postgres, claimed once across replicas, checked
against the incident's state when they fire (an acknowledged incident is not escalated)."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.core.errors import IntegrationError
from bot.core.incident import Incident, IncidentStatus, Severity
from bot.core.timers import opening_timers
from bot.deps import Deps
from bot.store.lifecycle import Timer

log = logging.getLogger("incidentbot.timers")

LEASE_S = 60.0
POSTMORTEM_REPORT_H = 24  # the seeds: incident report within 24 h
POSTMORTEM_REVIEW_H = 48  # review within 48 h
ACK_TIMERS = ["ack_reminder", "escalate"]


async def schedule_open(deps: Deps, incident: Incident) -> None:
    for kind, due_at, data in opening_timers(deps.policy, incident, deps.clock()):
        await deps.lifecycle.schedule(incident.id, kind, due_at, data, replace=True)


async def schedule_update_reminder(deps: Deps, incident_id: int, severity: Severity) -> None:
    every = deps.policy.response(severity).update_every_minutes
    if every:
        await deps.lifecycle.schedule(
            incident_id,
            "update_reminder",
            deps.clock() + timedelta(minutes=every),
            {"every": every},
            replace=True,
        )


async def reschedule_for_severity(deps: Deps, incident: Incident) -> None:
    await deps.lifecycle.cancel_timers(incident.id, [*ACK_TIMERS, "update_reminder"])
    await schedule_open(deps, incident)


async def schedule_after_resolve(deps: Deps, incident: Incident) -> None:
    now = deps.clock()
    await deps.lifecycle.schedule(
        incident.id, "postmortem_report", now + timedelta(hours=POSTMORTEM_REPORT_H)
    )
    await deps.lifecycle.schedule(
        incident.id, "postmortem_review", now + timedelta(hours=POSTMORTEM_REVIEW_H)
    )
    if deps.settings.archive_after_seconds > 0:
        await deps.lifecycle.schedule(
            incident.id, "archive", now + timedelta(seconds=deps.settings.archive_after_seconds)
        )


async def run_due(deps: Deps) -> int:
    """Fire every due timer this replica can claim; returns how many fired."""
    fired = 0
    for timer in await deps.lifecycle.claim_due(deps.clock(), deps.owner, LEASE_S):
        try:
            outcome = await _fire(deps, timer)
        except IntegrationError as exc:
            # Leave it claimed: another attempt happens when the lease runs out.
            log.warning(
                "timer.failed",
                extra={"timer": timer.kind, "incident_id": timer.incident_id, "error": str(exc)},
            )
            continue
        await deps.lifecycle.finish_timer(timer.id, outcome, deps.clock())
        deps.metrics.timers_fired.labels(timer.kind, outcome).inc()
        log.info(
            "timer.fired", extra={"timer": timer.kind, "incident_id": timer.incident_id, "outcome": outcome}
        )
        fired += 1
    return fired


async def _announce(deps: Deps, incident: Incident, kind: str, text: str) -> None:
    await deps.lifecycle.add_event(incident.id, kind, text, now=deps.clock(), announce=True)
    deps.publisher.request(incident.id)


def _escalation_mentions(deps: Deps) -> str:
    role = deps.policy.roles.get("escalation") or deps.policy.roles.get("oncall")
    if role is None:
        return ""
    parts = [f"<@{u}>" for u in role.users]
    parts += [f"<!subteam^{g}>" if g.startswith("S") else f"@{g}" for g in role.usergroups]
    return " ".join(parts)


async def _fire(deps: Deps, timer: Timer) -> str:
    incident = await deps.store.get_incident(timer.incident_id)
    if incident is None:
        return "incident gone"
    now = deps.clock()
    if timer.kind == "ack_reminder":
        if incident.status is not IncidentStatus.TRIGGERED:
            return "already acknowledged"
        response = deps.policy.response(incident.severity)
        minutes = int((now - incident.created_at).total_seconds() // 60)
        await _announce(
            deps,
            incident,
            "ack_reminder",
            f"⏰ This {incident.severity} incident has not been acknowledged for {minutes} min"
            f" (target {response.ack_minutes} min). {_escalation_mentions(deps)}".strip(),
        )
        if response.escalate_after_minutes:
            await deps.lifecycle.schedule(
                incident.id,
                "escalate",
                now + timedelta(minutes=response.escalate_after_minutes),
                replace=True,
            )
        return "reminded"
    if timer.kind == "escalate":
        if incident.status is not IncidentStatus.TRIGGERED:
            return "already acknowledged"
        return await _escalate(deps, incident)
    if timer.kind == "update_reminder":
        if incident.status is IncidentStatus.RESOLVED:
            return "resolved"
        every = int(timer.data.get("every", 0))
        await _announce(
            deps,
            incident,
            "update_reminder",
            f"📝 No status update for {every} min. Post one with `/incident status <what is happening>`.",
        )
        await schedule_update_reminder(deps, incident.id, incident.severity)
        return "reminded"
    if timer.kind in ("postmortem_report", "postmortem_review"):
        if incident.status is not IncidentStatus.RESOLVED:
            return "reopened"
        what = (
            "write the incident report" if timer.kind == "postmortem_report" else "hold the postmortem review"
        )
        await _announce(
            deps, incident, timer.kind, f"📄 Reminder: {what} (`/incident postmortem` drafts it)."
        )
        return "reminded"
    if timer.kind == "archive":
        if incident.status is not IncidentStatus.RESOLVED or not incident.channel_id or incident.archived_at:
            return "skipped"
        await deps.chat.archive(incident.channel_id)
        await deps.lifecycle.mark_archived(incident.id, now)
        await deps.lifecycle.add_event(incident.id, "archived", "Channel archived", now=now)
        return "archived"
    return f"unknown timer kind {timer.kind}"


async def _escalate(deps: Deps, incident: Incident) -> str:
    policy = deps.policy.response(incident.severity)
    key = deps.settings.pagerduty_routing_key
    if policy.page and deps.pager is not None and key is not None:
        await deps.pager.trigger(
            key.get_secret_value(),
            summary=f"[{incident.severity}] {incident.title} — not acknowledged in Slack",
            source="incidentbot",
            severity="critical" if incident.severity in (Severity.P1, Severity.P2) else "warning",
            dedup_key=f"incidentbot-{incident.id}",
        )
        await _announce(deps, incident, "escalated", "🚨 Escalated: paged the on-call through PagerDuty.")
        return "paged"
    mentions = _escalation_mentions(deps)
    await _announce(
        deps,
        incident,
        "escalated",
        f"🚨 Escalating: still not acknowledged. {mentions or 'No escalation group is configured (policy roles: escalation).'}",
    )
    return "mentioned"
