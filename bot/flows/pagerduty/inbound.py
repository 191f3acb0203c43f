"""PagerDuty → incidents: apply V3 webhook events stored in the inbox.

An event that matches what we already store is a no-op, and changes that arrive from
PagerDuty are never sent back to it, so the two directions cannot loop: when Slack acks an
incident we tell PagerDuty; PagerDuty's resulting `incident.acknowledged` webhook finds the
incident already acknowledged and does nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from bot.core.blockkit import escape, link
from bot.core.catalog import Catalog
from bot.core.incident import Incident, IncidentSource, IncidentStatus, Severity
from bot.core.policy import Policy
from bot.core.ports import Clock
from bot.core.timers import opening_timers
from bot.flows.incidents import IncidentFlows
from bot.flows.pagerduty.oncall import OnCallInviter
from bot.flows.pagerduty.outbound import own_note_key, own_priority_key, severity_for_priority
from bot.flows.timers import Timers
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.sources.pagerduty import (
    JOIN_PAGERDUTY,
    IncidentData,
    PagerDutyEvent,
    actor_label,
    parse_webhook,
    person_label,
)
from bot.store.coordination import Coordination
from bot.store.inbox import InboxRow
from bot.store.incidents import IntakeTx, PostgresStore
from bot.store.join_keys import JoinKeys
from bot.store.lifecycle import LifecycleStore

log = logs.logger(logs.Component.PAGERDUTY)
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


class PagerDutyInbound:
    def __init__(
        self,
        store: PostgresStore,
        lifecycle: LifecycleStore,
        incidents: IncidentFlows,
        timers: Timers,
        oncall: OnCallInviter,
        coord: Coordination,
        metrics: Metrics,
        policy: Policy,
        clock: Clock,
        publish: Callable[[int], None],
        *,
        catalog: Catalog | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog if catalog is not None else Catalog()
        self.coord = coord
        self.lifecycle = lifecycle
        self.incidents = incidents
        self.timers = timers
        self.oncall = oncall
        self.metrics = metrics
        self.policy = policy
        self.clock = clock
        self.publish = publish

    async def apply(self, row: InboxRow, tx: IntakeTx) -> list[int]:
        """Apply one stored delivery; returns the incidents whose stored state changed."""
        event = parse_webhook(json.dumps(row.body).encode())
        pd_id = event.incident_id
        if pd_id is None:
            return []
        incident = await self.lifecycle.by_pagerduty(pd_id)
        data = event.incident
        if (
            incident is None
            and data is not None
            and event.event_type in ("incident.triggered", "incident.reopened")
        ):
            incident = await self._open_or_join(tx, data)
            return [incident.id]
        if incident is None:
            log.info("pagerduty.unknown_incident", extra={"pagerduty_id": pd_id, "event": event.event_type})
            return []
        await self._update(incident, event)
        return [incident.id]

    async def _open_or_join(self, tx: IntakeTx, data: IncidentData) -> Incident:
        """Join the incident this PagerDuty incident belongs to (our own escalation page, or an
        open incident whose group key is the PagerDuty dedup key), else open a new one."""
        now = self.clock()
        key = data.incident_key or ""
        joined: Incident | None = None
        join = JoinKeys(tx)
        if key.startswith(OUR_DEDUP_PREFIX) and key[len(OUR_DEDUP_PREFIX) :].isdigit():
            joined = await self.store.get_incident(int(key[len(OUR_DEDUP_PREFIX) :]))
        elif key:
            # Locked before looking: an Alertmanager delivery of the same group applied at the
            # same time either committed its incident already or waits for ours.
            await join.lock([key])
            # An incident follows one PagerDuty incident: one already linked is not taken over
            # by another PagerDuty incident with the same key (another service's, or forged).
            joined = await join.open_incident([key], unlinked=True) or await tx.open_incident_for(key)
            if joined is not None and joined.pagerduty_incident_id not in (None, data.id):
                joined = None
        if joined is not None and joined.status is not IncidentStatus.RESOLVED:
            incident = joined
            label = f"#{data.number}" if data.number is not None else data.id
            # html_url is None unless it is a plain https URL (the parser drops anything else).
            text = "Linked to PagerDuty incident " + (
                link(data.html_url, label) if data.html_url else escape(label)
            )
            await tx.add_event(incident.id, "pagerduty_linked", text, at=now, announce=True)
            await tx.bump_version(incident.id)
        else:
            incident = await self._open(tx, data)
            if key:
                # The Alertmanager group that paged PagerDuty, arriving later, joins it.
                await join.record(incident.id, {key: JOIN_PAGERDUTY})
        await tx.link_pagerduty(
            incident.id,
            pagerduty_id=data.id,
            url=data.html_url,
            service=data.service.id if data.service else None,
            escalation_policy=data.escalation_policy.id if data.escalation_policy else None,
        )
        return incident

    async def _open(self, tx: IntakeTx, data: IncidentData) -> Incident:
        now = self.clock()
        severity = severity_of(data)
        # The team whose PagerDuty service paged; another service's incident is the default team's.
        team = self.catalog.team_for_pagerduty_service(data.service.id) if data.service else None
        incident, created = await tx.create_incident(
            group_key=f"pagerduty:{data.id}",
            title=data.title[:200] or "PagerDuty incident",
            severity=severity,
            source=IncidentSource.PAGERDUTY,
            now=now,
            team=team,
        )
        if created:
            for kind, due_at, timer_data in opening_timers(self.policy, incident, now, self.catalog):
                await tx.schedule_timer(incident.id, kind, due_at, timer_data)
            service = data.service.summary if data.service and data.service.summary else "PagerDuty"
            await tx.add_event(
                incident.id,
                "opened",
                f"Incident opened from PagerDuty ({escape(service)})",
                at=now,
                data={"pagerduty_id": data.id},
            )
            self.metrics.incidents_opened.labels("pagerduty", severity.value).inc()
        return incident

    async def _update(self, incident: Incident, event: PagerDutyEvent) -> None:
        kind = event.event_type
        if kind in STATE_EVENTS and not await self.lifecycle.advance_pagerduty_clock(
            incident.id, event.occurred_at, event.id
        ):
            await self.lifecycle.add_event(
                incident.id,
                "pagerduty_stale",
                f"Ignored PagerDuty {escape(kind)} of {event.occurred_at:%H:%M:%S} UTC:"
                " it is not newer than the last change applied",
                now=self.clock(),
            )
            return
        if kind in STATE_EVENTS:
            await self._apply_state(incident, event)
        else:
            await self._apply_activity(incident, event)
        self.publish(incident.id)

    async def _apply_state(self, incident: Incident, event: PagerDutyEvent) -> None:
        # The PagerDuty user is named by a plain-text label, never passed as a Slack user id:
        # the stores keep it apart from the `*_by` columns and escape it in the timeline.
        who = actor_label(event)
        match event.event_type:
            case "incident.acknowledged" if incident.status is IncidentStatus.TRIGGERED:
                if await self.lifecycle.acknowledge_external(incident.id, who, self.clock()):
                    await self.oncall.acknowledged_by(incident, event.agent)
            case "incident.resolved" if incident.status is not IncidentStatus.RESOLVED:
                await self.incidents.resolve(incident, who, "resolved in PagerDuty", from_pagerduty=True)
            case "incident.reopened" | "incident.unacknowledged" if (
                incident.status is IncidentStatus.RESOLVED
            ):
                await self.incidents.reopen(incident, who, from_pagerduty=True)
            case "incident.priority_updated" if event.incident is not None:
                await self._priority_updated(incident, event.incident, who)

    async def _priority_updated(self, incident: Incident, data: IncidentData, who: str) -> None:
        """A priority set in PagerDuty, as the severity naming it in ``severity_policy`` (else
        read from its name or the urgency); the priority the bot set itself is not re-applied."""
        priority = data.priority
        if priority is not None and await self.coord.remembered(own_priority_key(data.id, priority.id)):
            log.info("pagerduty.own_priority_ignored", extra={"incident_id": incident.id})
            return
        mapped = severity_for_priority(self.policy, priority.id, priority.summary) if priority else None
        severity = mapped or severity_of(data)
        changed = await self.lifecycle.set_severity(incident.id, severity, who, self.clock())
        if changed is not None:
            await self.timers.reschedule_for_severity(changed)

    async def _note(self, incident: Incident, event: PagerDutyEvent, content: str) -> None:
        """A note added in PagerDuty, into the channel; a note the bot wrote itself (a Slack
        status update mirrored to PagerDuty) is not posted back."""
        pd_id = incident.pagerduty_incident_id or event.incident_id or ""
        if await self.coord.remembered(own_note_key(pd_id, content)):
            log.info("pagerduty.own_note_ignored", extra={"incident_id": incident.id})
            return
        await self.lifecycle.add_event(
            incident.id,
            "pagerduty_note",
            f"📝 PagerDuty note by {escape(actor_label(event))}: {escape(content[:1500])}",
            now=self.clock(),
            announce=True,
        )

    async def _apply_activity(self, incident: Incident, event: PagerDutyEvent) -> None:
        now = self.clock()
        data = event.incident
        if event.event_type == "incident.reassigned" and data is not None:
            names = ", ".join(escape(person_label(a)) for a in data.assignees) or "nobody"
            await self.lifecycle.add_event(
                incident.id,
                "pagerduty_reassigned",
                f"PagerDuty reassigned to {names}",
                now=now,
                announce=True,
            )
            await self.oncall.invite(incident)
        elif event.event_type == "incident.annotated" and event.note is not None:
            await self._note(incident, event, event.note.content)
        elif event.event_type == "incident.escalated":
            await self.lifecycle.add_event(
                incident.id, "pagerduty_escalated", "PagerDuty escalated the incident", now=now
            )
