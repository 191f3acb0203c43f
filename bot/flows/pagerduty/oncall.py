"""Invite the current PagerDuty on-call of a linked incident into its channel."""

from __future__ import annotations

from bot.clients.pagerduty import PagerDutyClient
from bot.clients.slack import SlackChat
from bot.core.blockkit import escape
from bot.core.errors import IntegrationError
from bot.core.incident import Incident, IncidentView
from bot.core.ports import Clock
from bot.store.coordination import Coordination
from bot.store.lifecycle import LifecycleStore

ONCE_TTL_S = 7 * 86400


class OnCallInviter:
    def __init__(
        self,
        pager: PagerDutyClient | None,
        chat: SlackChat,
        lifecycle: LifecycleStore,
        coord: Coordination,
        clock: Clock,
    ) -> None:
        self.pager = pager
        self.chat = chat
        self.lifecycle = lifecycle
        self.coord = coord
        self.clock = clock

    async def invite(self, incident: Incident) -> list[str]:
        """Look up the current on-call of the incident's escalation policy, map them to Slack
        users by email and invite them to the channel. Returns the Slack ids invited (the
        caller asks for a republish when any were)."""
        if self.pager is None or not incident.channel_id:
            return []
        policy_id = await self.lifecycle.escalation_policy(incident.id)
        if not policy_id:
            return []
        try:
            oncall = await self.pager.oncall_users(policy_id)
        except IntegrationError as exc:
            await self.lifecycle.add_event(
                incident.id,
                "oncall_lookup_failed",
                f"⚠️ On-call lookup failed: {escape(exc.message)}",
                now=self.clock(),
                announce=True,
            )
            return []
        invited: list[str] = []
        for person in oncall:
            if not person.email:
                continue
            user = await self.chat.lookup_by_email(person.email)
            if user is not None:
                invited.append(user)
        if invited:
            await self.chat.invite(incident.channel_id, invited)
            mentions = " ".join(f"<@{u}>" for u in invited)
            await self.lifecycle.add_event(
                incident.id,
                "oncall_invited",
                f"📟 On-call from PagerDuty invited: {mentions}",
                now=self.clock(),
                announce=True,
            )
        return invited

    async def after_publish(self, view: IncidentView) -> bool:
        """Publish hook: once a PagerDuty-linked incident has its channel, invite the on-call
        (once). True when the incident changed and must be published again."""
        incident = view.incident
        if self.pager is None or not incident.pagerduty_incident_id or not incident.channel_id:
            return False
        key = f"pd-oncall:{incident.id}:{incident.pagerduty_incident_id}"
        if await self.coord.first_time(key, ONCE_TTL_S):
            return bool(await self.invite(incident))
        return False
