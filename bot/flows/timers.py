"""Durable timers: acknowledgement reminders, escalation, update cadence, postmortem
reminders and channel archive. Stored in Postgres, claimed once across replicas, checked
against the incident's state when they fire (an acknowledged incident is not escalated).

Exactly once in effect: a fire holds a short lease renewed by a heartbeat, and what it writes
(its timeline event, keyed `timer:<id>`, and its follow-up timer) commits with the
compare-and-set finish of its claim; a fire repeated after its holder died adds nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from bot.clients.pagerduty import PagerDutyClient
from bot.clients.slack import SlackChat
from bot.core.blockkit import clip, escape, message, section
from bot.core.catalog import Catalog
from bot.core.errors import IntegrationError
from bot.core.incident import Incident, IncidentStatus, Role, Severity
from bot.core.policy import Policy, SeverityPolicy
from bot.core.ports import Clock
from bot.core.timers import (
    LEVEL_TIMER,
    asks_for_acknowledgement,
    escalation_levels,
    level_plan,
    level_since,
    opening_timers,
    response_for,
)
from bot.flows.leases import heartbeat
from bot.flows.owned_messages import OwnedMessages
from bot.flows.responders import Found, Responders
from bot.flows.teams import TeamChannels
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.store.incidents import PostgresStore
from bot.store.lifecycle import LifecycleStore, Timer, TimerEvent, TimerSpec

log = logs.logger(logs.Component.TIMERS)

# A fire's claim lapses this long after its holder died (a live holder renews it).
LEASE_S = 15.0
MAX_PER_SWEEP = 20
POSTMORTEM_REPORT_H = 24  # the seeds: incident report within 24 h
POSTMORTEM_REVIEW_H = 48  # review within 48 h
ACK_TIMERS = ["ack_reminder", "escalate", LEVEL_TIMER]


@dataclass(frozen=True, slots=True)
class Escalation:
    """What engaging a team's escalation level needs: who its contacts are, the team's
    notification channel, and posting there exactly once."""

    people: Responders
    teams: TeamChannels
    owned: OwnedMessages


def _spec(plan: tuple[str, datetime, dict[str, Any]] | None) -> TimerSpec | None:
    return None if plan is None else TimerSpec(plan[0], plan[1], plan[2])


@dataclass(frozen=True, slots=True)
class Fired:
    """What a fire did: its outcome, and what it writes in Postgres when it finishes."""

    outcome: str
    event: TimerEvent | None = None
    follow_up: TimerSpec | None = None


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
        lease_seconds: float = LEASE_S,
        catalog: Catalog | None = None,
        escalation: Escalation | None = None,
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
        self.lease_s = lease_seconds
        self.catalog = catalog or Catalog()
        # Where team escalation levels reach people; None: levels are not engaged.
        self.escalation = escalation

    # ------------------------------------------------------------------ scheduling

    async def schedule_open(self, incident: Incident, *, restart: bool = False) -> None:
        """The opening timers; `restart` (a reopen): escalation starts again from now."""
        now = self.clock()
        since: datetime | None = now
        after = 0
        if not restart:
            # A severity change continues the escalation where it stands.
            stored, after = await self.lifecycle.escalation_progress(incident.id)
            since = level_since({"since": stored}, incident)
        plans = opening_timers(self.policy, incident, now, self.catalog, since=since, after_level=after)
        for kind, due_at, data in plans:
            await self.lifecycle.schedule(incident.id, kind, due_at, data, replace=True)

    def _response(self, incident: Incident) -> SeverityPolicy:
        return response_for(self.policy, self.catalog, incident.team, incident.severity)

    def _update_reminder_spec(self, severity: Severity, team: str | None = None) -> TimerSpec | None:
        every = response_for(self.policy, self.catalog, team, severity).update_every_minutes
        if not every:
            return None
        return TimerSpec("update_reminder", self.clock() + timedelta(minutes=every), {"every": every})

    async def schedule_update_reminder(
        self, incident_id: int, severity: Severity, team: str | None = None
    ) -> None:
        spec = self._update_reminder_spec(severity, team)
        if spec is not None:
            await self.lifecycle.schedule(incident_id, spec.kind, spec.due_at, spec.data, replace=True)

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
        """Fire every due timer this replica can claim, one claim at a time (a claim waiting
        behind a slow fire would lapse); returns how many fired."""
        fired = 0
        for _ in range(MAX_PER_SWEEP):
            timer = await self.lifecycle.claim_due(self.owner, self.lease_s, self.clock())
            if timer is None:
                break
            fired += await self._run(timer)
        return fired

    async def _run(self, timer: Timer) -> int:
        async def renew() -> bool:
            return await self.lifecycle.renew_timer(timer, self.owner)

        try:
            async with heartbeat(renew, self.lease_s, f"timer-{timer.id}"):
                fired = await self._fire(timer)
        except IntegrationError as exc:
            # Left claimed: the lease lapses (no heartbeat now) and the timer fires again.
            log.warning(
                "timer.failed",
                extra={"timer": timer.kind, "incident_id": timer.incident_id, "error": str(exc)},
            )
            return 0
        finished = await self.lifecycle.finish_timer(
            timer, self.owner, fired.outcome, self.clock(), event=fired.event, follow_up=fired.follow_up
        )
        if not finished:
            log.warning("timer.claim_lost", extra={"timer": timer.kind, "incident_id": timer.incident_id})
            return 0
        if fired.event is not None and fired.event.announce:
            self.publish(timer.incident_id)
        self.metrics.timers_fired.labels(timer.kind, fired.outcome).inc()
        log.info(
            "timer.fired",
            extra={"timer": timer.kind, "incident_id": timer.incident_id, "outcome": fired.outcome},
        )
        return 1

    def _escalation_mentions(self) -> str:
        role = self.policy.roles.get("escalation") or self.policy.roles.get("oncall")
        if role is None:
            return ""
        parts = [f"<@{u}>" for u in role.users]
        parts += [f"<!subteam^{g}>" if g.startswith("S") else f"@{g}" for g in role.usergroups]
        return " ".join(parts)

    async def _fire(self, timer: Timer) -> Fired:
        """A fire's effects outside Postgres (a page, an archive) happen here and are safe to
        repeat; what it writes in Postgres is returned and written by `finish_timer`, once."""
        incident = await self.store.get_incident(timer.incident_id)
        if incident is None:
            return Fired("incident gone")
        match timer.kind:
            case "ack_reminder":
                return self._ack_reminder(incident)
            case "escalate":
                if incident.status is not IncidentStatus.TRIGGERED:
                    return Fired("already acknowledged")
                return await self._escalate(incident)
            case "escalation_level":
                if incident.status is not IncidentStatus.TRIGGERED:
                    return Fired("already acknowledged")
                return await self._escalate_level(incident, timer)
            case "update_reminder":
                return await self._update_reminder(incident, int(timer.data.get("every", 0)))
            case "postmortem_report" | "postmortem_review":
                return self._postmortem_reminder(incident, timer.kind)
            case "archive":
                return await self._archive(incident)
        return Fired(f"unknown timer kind {timer.kind}")

    def _ack_reminder(self, incident: Incident) -> Fired:
        if incident.status is not IncidentStatus.TRIGGERED:
            return Fired("already acknowledged")
        if not asks_for_acknowledgement(incident):
            return Fired("declared by its commander")  # a reminder planned before this rule
        now = self.clock()
        response = self._response(incident)
        minutes = int((now - incident.created_at).total_seconds() // 60)
        text = (
            f"⏰ This {incident.severity} incident has not been acknowledged for {minutes} min"
            f" (target {response.ack_minutes} min). {self._escalation_mentions()}".strip()
        )
        follow_up = None
        if response.escalate_after_minutes:
            follow_up = TimerSpec("escalate", now + timedelta(minutes=response.escalate_after_minutes))
        return Fired("reminded", TimerEvent("ack_reminder", text), follow_up)

    async def _update_reminder(self, incident: Incident, every: int) -> Fired:
        if incident.status is IncidentStatus.RESOLVED:
            return Fired("resolved")
        # Updates are the comms role's job; without one, the commander's.
        roles = await self.lifecycle.roles(incident.id)
        owner = roles.get(Role.COMMS) or roles.get(Role.COMMANDER) or incident.commander
        who = f"<@{owner}>: " if owner else ""
        text = (
            f"📝 {who}no status update for {every} min. Post one with `/incident status <what is happening>`."
        )
        return Fired(
            "reminded",
            TimerEvent("update_reminder", text),
            self._update_reminder_spec(incident.severity, incident.team),
        )

    def _postmortem_reminder(self, incident: Incident, kind: str) -> Fired:
        if incident.status is not IncidentStatus.RESOLVED:
            return Fired("reopened")
        what = "write the incident report" if kind == "postmortem_report" else "hold the postmortem review"
        return Fired("reminded", TimerEvent(kind, f"📄 Reminder: {what} (`/incident postmortem` drafts it)."))

    async def _archive(self, incident: Incident) -> Fired:
        if incident.status is not IncidentStatus.RESOLVED or not incident.channel_id or incident.archived_at:
            return Fired("skipped")
        # Archiving twice is harmless (already_archived is not an error).
        await self.chat.archive(incident.channel_id)
        await self.lifecycle.mark_archived(incident.id, self.clock())
        return Fired("archived", TimerEvent("archived", "Channel archived", announce=False))

    async def _page(self, incident: Incident, details: dict[str, str] | None = None) -> bool:
        """Page through PagerDuty's Events API; False when it is not configured. A second
        trigger with the same dedup_key is merged by PagerDuty into the first: safe to repeat."""
        if self.pager is None or self.routing_key is None:
            return False
        await self.pager.trigger(
            self.routing_key.get_secret_value(),
            summary=f"[{incident.severity}] {incident.title} — not acknowledged in Slack",
            source="incidentbot",
            severity="critical" if incident.severity in (Severity.P1, Severity.P2) else "warning",
            dedup_key=f"incidentbot-{incident.id}",
            custom_details=details,
        )
        return True

    async def _escalate_level(self, incident: Incident, timer: Timer) -> Fired:
        """Engage a team's escalation level: its contacts mentioned and invited, a page where
        the level names a PagerDuty policy, the step on the timeline and (a level with a delay)
        in the team's channel (an owned message, once); the next level follows at its delay."""
        number = int(timer.data.get("level", 0))
        since = level_since(timer.data, incident)
        levels = escalation_levels(self.catalog, incident, self._response(incident))
        if self.escalation is None or not 1 <= number <= len(levels):
            return Fired("no such level")
        level = levels[number - 1]
        found = await self.escalation.people.contacts(level)
        if incident.channel_id:
            await self.escalation.people.invite(incident.channel_id, found)
        if level.pagerduty_escalation_policy:
            await self._page_level(incident, number, level.pagerduty_escalation_policy, found)
        name = f" ({escape(level.name)})" if level.name else ""
        if level.after_minutes == 0:
            # The first responders, engaged on open: announced with the incident already.
            head = f"📣 Level {number}{name} engaged."
        else:
            minutes = int((self.clock() - since).total_seconds() // 60)
            head = f"🚨 Escalation level {number}{name}: not acknowledged after {minutes} min."
            where = f"{head} <#{incident.channel_id}>" if incident.channel_id else head
            # Keyed by the run too: after a reopen its levels are posted again, each once.
            key = f"escalation:{incident.id}:{number}:{int(since.timestamp())}"
            await self._tell_team(incident, key, where, found)
        text = f"{head} {found.mentions}".strip() + ("\n" + found.lines() if found.lines() else "")
        return Fired(
            "escalated",
            TimerEvent("escalated", text),
            _spec(level_plan(levels, number + 1, since)),
        )

    async def _page_level(self, incident: Incident, number: int, policy: str, found: Found) -> None:
        try:
            how = await self._page_policy(incident, number, policy)
        except IntegrationError as exc:
            # Shown with the step (people can page by hand) rather than holding the step back.
            found.problems.append(f"Paging through PagerDuty failed: {escape(exc.message)}")
            return
        if how is not None:
            found.reasons.append(how)
        else:
            found.problems.append(f"Not paged (policy {policy}): PagerDuty is not configured")

    async def _page_policy(self, incident: Incident, number: int, policy: str) -> str | None:
        """Page a level's escalation policy. The Events API can only reach a routing key's
        service, whose own policy answers, so the REST API is used where it can: the linked
        PagerDuty incident is handed to the policy, else one is opened on the team's PagerDuty
        service assigned to it (keyed by the incident, so a repeat is refused, never doubled)."""
        if self.pager is not None and incident.pagerduty_incident_id:
            await self.pager.reassign(incident.pagerduty_incident_id, policy)
            return f"Paged through PagerDuty: its incident was handed to policy {policy}"
        service = self.catalog.team(incident.team).pagerduty.service_id
        if self.pager is not None and service:
            created = await self.pager.create_incident(
                service_id=service,
                escalation_policy_id=policy,
                title=f"[{incident.severity}] {incident.title} — escalation level {number}",
                urgency="high" if incident.severity in (Severity.P1, Severity.P2) else "low",
                incident_key=f"incidentbot-{incident.id}",
                details=f"Not acknowledged in Slack; escalation level {number} of incident {incident.ref}.",
            )
            await self.lifecycle.link_pagerduty(
                incident.id,
                created.id,
                url=created.html_url,
                service=created.service_id,
                escalation_policy=created.escalation_policy_id,
            )
            label = f"#{created.number}" if created.number is not None else created.id
            return f"Paged through PagerDuty (policy {policy}): incident {label} opened"
        details = {"escalation_level": str(number), "escalation_policy": policy}
        if await self._page(incident, details):
            return (
                f"Paged through PagerDuty's routing key: its service's own policy answers, not {policy}"
                " (set the team's pagerduty.service_id to page the level's policy)"
            )
        return None

    async def _tell_team(self, incident: Incident, key: str, head: str, found: Found) -> None:
        """The step in the team's notification channel, once (an owned message keyed by level)."""
        assert self.escalation is not None
        channel = await self.escalation.teams.notification_channel(incident.team)
        body = f"*{escape(incident.ref)} {escape(incident.title)}*\n{head} {found.mentions}".rstrip()
        if found.problems:
            body += "\n" + "\n".join(f"⚠️ {p}" for p in found.problems)
        msg = message(clip(body, 300), [section(clip(body, 3000))])
        await self.escalation.owned.post(channel, msg, key)

    async def _escalate(self, incident: Incident) -> Fired:
        response = self._response(incident)
        if response.page and await self._page(incident):
            return Fired(
                "paged", TimerEvent("escalated", "🚨 Escalated: paged the on-call through PagerDuty.")
            )
        mentions = self._escalation_mentions()
        text = "🚨 Escalating: still not acknowledged. " + (
            mentions or "No escalation group is configured (policy roles: escalation)."
        )
        return Fired("mentioned", TimerEvent("escalated", text))
