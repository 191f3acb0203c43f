"""Pure timer planning: which reminders an incident gets, from the severity policy with its
team's overrides, and the team's escalation levels."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.core.catalog import Catalog, EscalationLevel
from bot.core.incident import Incident, IncidentStatus, Severity
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


def level_plan(incident: Incident, levels: list[EscalationLevel], number: int) -> TimerPlan | None:
    """The timer engaging level `number` (1-based), due its delay after the incident opened."""
    if not 1 <= number <= len(levels):
        return None
    level = levels[number - 1]
    return (LEVEL_TIMER, incident.created_at + timedelta(minutes=level.after_minutes), {"level": number})


def opening_timers(
    policy: Policy, incident: Incident, now: datetime, catalog: Catalog | None = None
) -> list[TimerPlan]:
    """While unacknowledged: the team's first escalation level, or (a team without levels) the
    acknowledgement reminder from the incident's start; and the update cadence."""
    catalog = catalog or Catalog()
    response = response_for(policy, catalog, incident.team, incident.severity)
    plans: list[TimerPlan] = []
    if incident.status is IncidentStatus.TRIGGERED:
        first = level_plan(incident, escalation_levels(catalog, incident, response), 1)
        if first is not None:
            plans.append(first)
        else:
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
