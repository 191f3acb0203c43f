"""Pure timer planning: which reminders an incident gets, from the severity policy with its
team's overrides, and the team's escalation levels."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.core.catalog import Catalog, EscalationLevel
from bot.core.incident import Incident, IncidentSource, IncidentStatus, Severity
from bot.core.policy import Policy, SeverityPolicy

TimerPlan = tuple[str, datetime, dict[str, Any]]
# A team's escalation level is engaged by a timer of this kind (data: {"level": n}).
LEVEL_TIMER = "escalation_level"


def response_for(policy: Policy, catalog: Catalog, team: str | None, severity: Severity) -> SeverityPolicy:
    """The severity's promises for an incident of `team`: the policy's, with the team's overrides."""
    return catalog.severity_policy(team, policy.severity_policy)[severity]


def escalation_levels(
    catalog: Catalog, incident: Incident, response: SeverityPolicy
) -> list[EscalationLevel]:
    """The team's levels when they apply: the team has some and the severity escalates at all
    (a severity without `escalate_after_minutes` is never escalated, by levels or otherwise)."""
    if response.escalate_after_minutes is None:
        return []
    return list(catalog.team(incident.team).escalation)


def level_plan(levels: list[EscalationLevel], number: int, since: datetime) -> TimerPlan | None:
    """The timer engaging level `number` (1-based), due its delay after `since` (the incident's
    open, or its reopen: the delays count from when it last needed someone)."""
    if not 1 <= number <= len(levels):
        return None
    level = levels[number - 1]
    return (
        LEVEL_TIMER,
        since + timedelta(minutes=level.after_minutes),
        {"level": number, "since": since.isoformat()},
    )


def level_since(data: dict[str, Any], incident: Incident) -> datetime:
    """When a level timer's delays count from (stored with it; the open for older timers)."""
    raw = data.get("since")
    try:
        return datetime.fromisoformat(raw) if isinstance(raw, str) else incident.created_at
    except ValueError:
        return incident.created_at


def asks_for_acknowledgement(incident: Incident) -> bool:
    """Whether anyone is asked to acknowledge the incident: not one a person declared and
    commands (the reminder would ask the declarer to acknowledge their own incident)."""
    return not (incident.source is IncidentSource.HUMAN and incident.commander is not None)


def opening_timers(
    policy: Policy,
    incident: Incident,
    now: datetime,
    catalog: Catalog | None = None,
    *,
    since: datetime | None = None,
    after_level: int = 0,
) -> list[TimerPlan]:
    """While unacknowledged: the team's next escalation level (after `after_level`, already
    engaged; delays from `since`, default the open), or (a team without levels) the
    acknowledgement reminder from the incident's start (none for an incident a person declared
    and commands); and the update cadence."""
    catalog = catalog or Catalog()
    response = response_for(policy, catalog, incident.team, incident.severity)
    plans: list[TimerPlan] = []
    if incident.status is IncidentStatus.TRIGGERED:
        levels = escalation_levels(catalog, incident, response)
        first = level_plan(levels, after_level + 1, since or incident.created_at)
        if first is not None:
            plans.append(first)
        elif not levels and asks_for_acknowledgement(incident):
            plans.append(
                (
                    "ack_reminder",
                    incident.created_at + timedelta(minutes=response.ack_minutes),
                    {"severity": incident.severity.value},
                )
            )
    if response.update_every_minutes:
        every = response.update_every_minutes
        plans.append(("update_reminder", now + timedelta(minutes=every), {"every": every}))
    return plans
