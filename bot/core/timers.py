"""Pure timer planning: which reminders an incident gets, from the severity policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.core.incident import Incident, IncidentStatus
from bot.core.policy import Policy

TimerPlan = tuple[str, datetime, dict[str, Any]]


def opening_timers(policy: Policy, incident: Incident, now: datetime) -> list[TimerPlan]:
    """Acknowledgement reminder (from the incident's start) and the update cadence."""
    response = policy.response(incident.severity)
    plans: list[TimerPlan] = []
    if incident.status is IncidentStatus.TRIGGERED:
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
