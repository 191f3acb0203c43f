"""Invite the current PagerDuty on-call of a linked incident into its channel when PagerDuty
reassigns it. The on-call (and responders) invited on open is `bot.flows.responders`."""

from __future__ import annotations

from bot.core.incident import Incident
from bot.core.ports import Clock
from bot.flows.responders import Responders
from bot.store.lifecycle import LifecycleStore


class OnCallInviter:
    def __init__(self, people: Responders, lifecycle: LifecycleStore, clock: Clock) -> None:
        self.people = people
        self.lifecycle = lifecycle
        self.clock = clock

    async def invite(self, incident: Incident) -> list[str]:
        """Look up the current on-call of the incident's escalation policy, map them to Slack
        users by email and invite them to the channel, on the timeline with every lookup that
        failed. Returns the Slack ids invited."""
        if not incident.channel_id:
            return []
        policy_id = await self.lifecycle.escalation_policy(incident.id)
        if not policy_id:
            return []
        found = await self.people.oncall(policy_id, "📟 On-call from PagerDuty invited")
        if found.users:
            await self.people.invite(incident.channel_id, found)
        if found.users or found.problems:
            await self.lifecycle.add_event(
                incident.id, "oncall_invited", found.lines(), now=self.clock(), announce=True
            )
        return found.users
