"""Slack → PagerDuty: mirror a Slack-side change to the linked PagerDuty incident.

Failures are reported in the channel, never lost silently, and never undo the Slack-side
change. Only changes that did not come from PagerDuty are mirrored (the callers decide)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from enum import StrEnum

from bot.clients.pagerduty import PagerDutyClient, Priority
from bot.core.blockkit import escape
from bot.core.errors import IntegrationError
from bot.core.incident import Incident, IncidentStatus, Severity
from bot.core.policy import Policy
from bot.core.ports import Clock
from bot.obs import logs
from bot.store.coordination import Coordination
from bot.store.lifecycle import LifecycleStore

# How long a change the bot made is recognised when PagerDuty announces it back (its webhooks
# are retried for up to 48 hours).
OWN_NOTE_TTL_S = 3 * 86400

log = logs.logger(logs.Component.PAGERDUTY)


def own_note_key(pagerduty_incident_id: str, content: str) -> str:
    digest = hashlib.sha256(content.strip().encode("utf-8")).hexdigest()[:32]
    return f"pd-own-note:{pagerduty_incident_id}:{digest}"


def own_priority_key(pagerduty_incident_id: str, priority_id: str) -> str:
    return f"pd-own-priority:{pagerduty_incident_id}:{priority_id}"


def severity_for_priority(policy: Policy, priority_id: str, name: str | None) -> Severity | None:
    """The severity whose ``pagerduty_priority`` names this priority (by id or name)."""
    for severity in sorted(policy.severity_policy, key=lambda s: s.rank):
        wanted = policy.severity_policy[severity].pagerduty_priority
        if wanted is not None and wanted in (priority_id, name):
            return severity
    return None


class Mirrored(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    NOTE = "note"
    SEVERITY = "priority"
    REOPEN = "reopen"


# The incident statuses each status change is still true in when it is about to be sent.
_STATUS_SENT: dict[Mirrored, frozenset[IncidentStatus]] = {
    Mirrored.ACKNOWLEDGE: frozenset({IncidentStatus.ACKNOWLEDGED}),
    Mirrored.RESOLVE: frozenset({IncidentStatus.RESOLVED}),
    Mirrored.REOPEN: frozenset({IncidentStatus.TRIGGERED, IncidentStatus.ACKNOWLEDGED}),
}


class PagerDutyMirror:
    def __init__(
        self,
        pager: PagerDutyClient | None,
        lifecycle: LifecycleStore,
        coord: Coordination,
        policy: Policy,
        clock: Clock,
        publish: Callable[[int], None],
    ) -> None:
        self.pager = pager
        self.lifecycle = lifecycle
        self.coord = coord
        self.policy = policy
        self.clock = clock
        self.publish = publish
        # The account's priorities, fetched once (and again when a name is not found).
        self._priorities: list[Priority] | None = None

    async def send(self, incident: Incident, what: Mirrored, text: str | None = None) -> None:
        if self.pager is None or not incident.pagerduty_incident_id:
            return
        pd_id = incident.pagerduty_incident_id
        if what in _STATUS_SENT and not await self._still(pd_id, _STATUS_SENT[what]):
            # Overtaken (a resolve followed at once by a reopen): PagerDuty gets the newest
            # state only, never a stale one it would then echo back as somebody else's change.
            log.info("pagerduty.overtaken", extra={"incident_id": incident.id, "change": what.value})
            return
        if what is not Mirrored.NOTE:
            # This change is the newest state: a PagerDuty state change that happened before it
            # (typically the echo of the bot's previous change, still on its way) is not
            # applied over it when its webhook arrives (bot.flows.pagerduty.inbound).
            await self.lifecycle.advance_pagerduty_clock(incident.id, self.clock(), "")
        try:
            sent = await self._send(self.pager, incident, pd_id, what, text)
        except IntegrationError as exc:
            await self._failed(incident, what, exc.message)
            return
        if sent:
            await self.lifecycle.add_event(
                incident.id, "pagerduty_synced", f"PagerDuty {what} sent for {pd_id}", now=self.clock()
            )

    async def _still(self, pd_id: str, statuses: frozenset[IncidentStatus]) -> bool:
        current = await self.lifecycle.by_pagerduty(pd_id)
        return current is None or current.status in statuses

    async def _send(
        self, pager: PagerDutyClient, incident: Incident, pd_id: str, what: Mirrored, text: str | None
    ) -> bool:
        match what:
            case Mirrored.ACKNOWLEDGE:
                await pager.acknowledge(pd_id)
            case Mirrored.RESOLVE:
                await pager.resolve(pd_id, text)
            case Mirrored.REOPEN:
                await pager.reopen(pd_id)
            case Mirrored.SEVERITY:
                return await self._send_priority(pager, incident, pd_id)
            case Mirrored.NOTE if text:
                # Remembered before the call: PagerDuty's incident.annotated webhook for this
                # note may arrive before the call returns, and must not be posted back.
                await self.coord.remember(own_note_key(pd_id, text), OWN_NOTE_TTL_S)
                await pager.add_note(pd_id, text)
        return True

    async def _send_priority(self, pager: PagerDutyClient, incident: Incident, pd_id: str) -> bool:
        """The severity's PagerDuty priority and urgency (``severity_policy``), when configured."""
        wanted = self.policy.severity_policy[incident.severity]
        if wanted.pagerduty_priority is None and wanted.pagerduty_urgency is None:
            return False
        priority_id: str | None = None
        if wanted.pagerduty_priority is not None:
            priority = await self._priority(pager, wanted.pagerduty_priority)
            if priority is None:
                await self._failed(
                    incident,
                    Mirrored.SEVERITY,
                    f"PagerDuty has no priority named {wanted.pagerduty_priority!r}"
                    f" (severity_policy.{incident.severity}.pagerduty_priority)",
                )
                return False
            priority_id = priority.id
            # PagerDuty's incident.priority_updated for this change must not be re-applied.
            await self.coord.remember(own_priority_key(pd_id, priority_id), OWN_NOTE_TTL_S)
        await pager.set_priority(pd_id, priority_id, wanted.pagerduty_urgency)
        return True

    async def _priority(self, pager: PagerDutyClient, wanted: str) -> Priority | None:
        for fresh in (False, True):
            if self._priorities is None or fresh:
                self._priorities = await pager.priorities()
            for priority in self._priorities:
                if wanted in (priority.id, priority.name):
                    return priority
        return None

    async def _failed(self, incident: Incident, what: Mirrored, message: str) -> None:
        await self.lifecycle.add_event(
            incident.id,
            "pagerduty_failed",
            f"⚠️ PagerDuty {what} failed: {escape(message)}",
            now=self.clock(),
            announce=True,
        )
        self.publish(incident.id)
