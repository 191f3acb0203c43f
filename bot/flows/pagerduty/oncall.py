"""Invite the current PagerDuty on-call of a linked incident into its channel when PagerDuty
reassigns it. The on-call (and responders) invited on open is `bot.flows.responders`."""

from __future__ import annotations

from bot.core.blockkit import escape
from bot.core.errors import IntegrationError
from bot.core.incident import Incident
from bot.core.ports import Clock
from bot.flows.responders import Responders
from bot.sources.pagerduty import Reference
from bot.store.lifecycle import LifecycleStore

# A webhook's agent that is a person (a service or an integration acknowledges too).
USER_TYPES = frozenset({None, "user", "user_reference"})


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

    async def acknowledged_by(self, incident: Incident, agent: Reference | None) -> None:
        """A PagerDuty user acknowledged: the Slack user with their email becomes commander
        unless one is set. A user who cannot be matched is said on the timeline."""
        if agent is None or agent.type not in USER_TYPES or self.people.pager is None or incident.commander:
            return  # automation (a service, an integration) leads nobody
        pagerduty_user_id = agent.id
        problem: str | None = None
        try:
            email = await self.people.pager.user_email(pagerduty_user_id)
            user = await self.people.chat.lookup_by_email(email) if email else None
        except IntegrationError as exc:
            email, user, problem = None, None, exc.message
        if user is not None:
            await self.lifecycle.take_command(incident.id, user, self.clock())
            return
        why = problem or (f"no Slack user has the email {email}" if email else "they have no email")
        await self.lifecycle.add_event(
            incident.id,
            "commander_unmatched",
            f"⚠️ The PagerDuty user who acknowledged could not be made commander: {escape(why)}",
            now=self.clock(),
            announce=True,
        )
