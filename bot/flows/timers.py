"""Durable timers: acknowledgement reminders, escalation, update cadence, postmortem
reminders and channel archive. Stored in Postgres, claimed once across replicas, checked
against the incident's state when they fire (an acknowledged incident is not escalated)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from pydantic import SecretStr

from bot.clients.pagerduty import PagerDutyClient
from bot.clients.slack import SlackChat
from bot.core.errors import IntegrationError
from bot.core.incident import Incident, IncidentStatus, Severity
from bot.core.policy import Policy
from bot.core.ports import Clock
from bot.core.timers import opening_timers
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.store.incidents import PostgresStore
from bot.store.lifecycle import LifecycleStore, Timer

log = logs.logger(logs.Component.TIMERS)

LEASE_S = 60.0
POSTMORTEM_REPORT_H = 24  # the seeds: incident report within 24 h
POSTMORTEM_REVIEW_H = 48  # review within 48 h
ACK_TIMERS = ["ack_reminder", "escalate"]


class Timers:
    def __init__(
        self,
        store: PostgresStore,
        lifecycle: LifecycleStore,
        chat: SlackChat,
        pager: PagerDutyClient | None,
        metrics: Metrics,
        policy: Policy,
        clock: Clock,
        publish: Callable[[int], None],
        *,
        owner: str,
        archive_after_seconds: float,
        pagerduty_routing_key: SecretStr | None,
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.chat = chat
        self.pager = pager
        self.metrics = metrics
        self.policy = policy
        self.clock = clock
        self.publish = publish
        self.owner = owner
        self.archive_after_seconds = archive_after_seconds
        self.routing_key = pagerduty_routing_key

    # ------------------------------------------------------------------ scheduling

    async def schedule_open(self, incident: Incident) -> None:
        for kind, due_at, data in opening_timers(self.policy, incident, self.clock()):
            await self.lifecycle.schedule(incident.id, kind, due_at, data, replace=True)

    async def schedule_update_reminder(self, incident_id: int, severity: Severity) -> None:
        every = self.policy.response(severity).update_every_minutes
        if every:
            await self.lifecycle.schedule(
                incident_id,
                "update_reminder",
                self.clock() + timedelta(minutes=every),
                {"every": every},
                replace=True,
            )

    async def reschedule_for_severity(self, incident: Incident) -> None:
        await self.lifecycle.cancel_timers(incident.id, [*ACK_TIMERS, "update_reminder"])
        await self.schedule_open(incident)

    async def schedule_after_resolve(self, incident: Incident) -> None:
        now = self.clock()
        await self.lifecycle.schedule(
            incident.id, "postmortem_report", now + timedelta(hours=POSTMORTEM_REPORT_H)
        )
        await self.lifecycle.schedule(
            incident.id, "postmortem_review", now + timedelta(hours=POSTMORTEM_REVIEW_H)
        )
        if self.archive_after_seconds > 0:
            await self.lifecycle.schedule(
                incident.id, "archive", now + timedelta(seconds=self.archive_after_seconds)
            )

    # ------------------------------------------------------------------ firing

    async def run_due(self) -> int:
        """Fire every due timer this replica can claim; returns how many fired."""
        fired = 0
        for timer in await self.lifecycle.claim_due(self.clock(), self.owner, LEASE_S):
            try:
                outcome = await self._fire(timer)
            except IntegrationError as exc:
                # Leave it claimed: another attempt happens when the lease runs out.
                log.warning(
                    "timer.failed",
                    extra={"timer": timer.kind, "incident_id": timer.incident_id, "error": str(exc)},
                )
                continue
            await self.lifecycle.finish_timer(timer.id, outcome, self.clock())
            self.metrics.timers_fired.labels(timer.kind, outcome).inc()
            log.info(
                "timer.fired",
                extra={"timer": timer.kind, "incident_id": timer.incident_id, "outcome": outcome},
            )
            fired += 1
        return fired

    async def _announce(self, incident: Incident, kind: str, text: str) -> None:
        await self.lifecycle.add_event(incident.id, kind, text, now=self.clock(), announce=True)
        self.publish(incident.id)

    def _escalation_mentions(self) -> str:
        role = self.policy.roles.get("escalation") or self.policy.roles.get("oncall")
        if role is None:
            return ""
        parts = [f"<@{u}>" for u in role.users]
        parts += [f"<!subteam^{g}>" if g.startswith("S") else f"@{g}" for g in role.usergroups]
        return " ".join(parts)

    async def _fire(self, timer: Timer) -> str:
        incident = await self.store.get_incident(timer.incident_id)
        if incident is None:
            return "incident gone"
        match timer.kind:
            case "ack_reminder":
                return await self._ack_reminder(incident)
            case "escalate":
                if incident.status is not IncidentStatus.TRIGGERED:
                    return "already acknowledged"
                return await self._escalate(incident)
            case "update_reminder":
                return await self._update_reminder(incident, int(timer.data.get("every", 0)))
            case "postmortem_report" | "postmortem_review":
                return await self._postmortem_reminder(incident, timer.kind)
            case "archive":
                return await self._archive(incident)
        return f"unknown timer kind {timer.kind}"

    async def _ack_reminder(self, incident: Incident) -> str:
        if incident.status is not IncidentStatus.TRIGGERED:
            return "already acknowledged"
        now = self.clock()
        response = self.policy.response(incident.severity)
        minutes = int((now - incident.created_at).total_seconds() // 60)
        await self._announce(
            incident,
            "ack_reminder",
            f"⏰ This {incident.severity} incident has not been acknowledged for {minutes} min"
            f" (target {response.ack_minutes} min). {self._escalation_mentions()}".strip(),
        )
        if response.escalate_after_minutes:
            await self.lifecycle.schedule(
                incident.id,
                "escalate",
                now + timedelta(minutes=response.escalate_after_minutes),
                replace=True,
            )
        return "reminded"

    async def _update_reminder(self, incident: Incident, every: int) -> str:
        if incident.status is IncidentStatus.RESOLVED:
            return "resolved"
        await self._announce(
            incident,
            "update_reminder",
            f"📝 No status update for {every} min. Post one with `/incident status <what is happening>`.",
        )
        await self.schedule_update_reminder(incident.id, incident.severity)
        return "reminded"

    async def _postmortem_reminder(self, incident: Incident, kind: str) -> str:
        if incident.status is not IncidentStatus.RESOLVED:
            return "reopened"
        what = "write the incident report" if kind == "postmortem_report" else "hold the postmortem review"
        await self._announce(incident, kind, f"📄 Reminder: {what} (`/incident postmortem` drafts it).")
        return "reminded"

    async def _archive(self, incident: Incident) -> str:
        if incident.status is not IncidentStatus.RESOLVED or not incident.channel_id or incident.archived_at:
            return "skipped"
        now = self.clock()
        await self.chat.archive(incident.channel_id)
        await self.lifecycle.mark_archived(incident.id, now)
        await self.lifecycle.add_event(incident.id, "archived", "Channel archived", now=now)
        return "archived"

    async def _escalate(self, incident: Incident) -> str:
        response = self.policy.response(incident.severity)
        if response.page and self.pager is not None and self.routing_key is not None:
            await self.pager.trigger(
                self.routing_key.get_secret_value(),
                summary=f"[{incident.severity}] {incident.title} — not acknowledged in Slack",
                source="incidentbot",
                severity="critical" if incident.severity in (Severity.P1, Severity.P2) else "warning",
                dedup_key=f"incidentbot-{incident.id}",
            )
            await self._announce(incident, "escalated", "🚨 Escalated: paged the on-call through PagerDuty.")
            return "paged"
        mentions = self._escalation_mentions()
        await self._announce(
            incident,
            "escalated",
            "🚨 Escalating: still not acknowledged. "
            + (mentions or "No escalation group is configured (policy roles: escalation)."),
        )
        return "mentioned"
