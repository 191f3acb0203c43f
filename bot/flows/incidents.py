"""Incident use cases driven by people (commands, buttons) and by PagerDuty.

They decide; storage remembers; the publisher redraws Slack from the stored state.
Outbound PagerDuty calls happen only for changes that did not come from PagerDuty, and an
inbound PagerDuty change that matches the stored state is a no-op: no echo loop.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from bot.clients.slack import SlackChat
from bot.core.blockkit import escape, inline
from bot.core.catalog import Route
from bot.core.errors import IntegrationError, UserError
from bot.core.incident import (
    Incident,
    IncidentSource,
    IncidentStatus,
    IncidentView,
    Role,
    Severity,
    TimelineEvent,
)
from bot.core.ports import Clock
from bot.core.postmortem import resolution_summary
from bot.flows.pagerduty.outbound import Mirrored, PagerDutyMirror
from bot.flows.silences import SilenceFlow
from bot.flows.supervisor import Supervisor
from bot.flows.teams import TeamChannels
from bot.flows.timers import Timers
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.store.incidents import ButtonToken, PostgresStore
from bot.store.lifecycle import LifecycleStore

log = logs.logger(logs.Component.INCIDENTS)

RESOLVE_CONFIRMATION = "confirm_resolve"
# The "Resolve anyway" button of an ephemeral question: answered now or asked again.
CONFIRMATION_TTL = timedelta(minutes=15)
INVALID_BUTTON = "This button is not valid any more."
# A click on a card or notification whose ts is still being stored waits this long for it,
# asking again this often; a post begun longer ago than PENDING_POST_RECENT is not waited for.
PENDING_POST_WAIT_S = 2.0
PENDING_POST_POLL_S = 0.05
PENDING_POST_RECENT = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class ResolveOffer:
    """A stored "Resolve anyway?" question: its token, the incident and the summary given."""

    token: str
    incident: Incident
    summary: str | None


def _require_open(incident: Incident) -> None:
    if incident.status is IncidentStatus.RESOLVED:
        raise UserError(f"Incident {incident.ref} is resolved. `/incident reopen` first.")


class IncidentFlows:
    def __init__(
        self,
        store: PostgresStore,
        lifecycle: LifecycleStore,
        chat: SlackChat,
        timers: Timers,
        silences: SilenceFlow,
        pagerduty: PagerDutyMirror,
        supervisor: Supervisor,
        metrics: Metrics,
        clock: Clock,
        publish: Callable[[int], None],
        expire_remediations: Callable[[Incident, str], Awaitable[object]],
        *,
        teams: TeamChannels,
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.chat = chat
        self.timers = timers
        self.silences = silences
        self.pagerduty = pagerduty
        self.supervisor = supervisor
        self.metrics = metrics
        self.clock = clock
        self.publish = publish
        # Approvals die with their incident (bot.flows.remediation.decide).
        self.expire_remediations = expire_remediations
        self.teams = teams
        self.catalog = teams.catalog

    # ------------------------------------------------------------------ reads

    async def find(self, *, channel_id: str | None, ref: str | None) -> Incident:
        """The incident a command is about: an explicit `#42`/`42`/`#inc-...` reference, else the
        incident whose channel the command was typed in."""
        if ref:
            text = ref.strip()
            found: Incident | None = None
            if text.startswith("<#") and text.endswith(">"):
                found = await self.store.incident_by_channel(text[2:-1].split("|", 1)[0])
            elif text.lstrip("#").isdigit() and len(text) < 18:
                found = await self.store.get_incident(int(text.lstrip("#")))
            elif text.startswith("#") or text.startswith("inc-"):
                # An incident channel's name: `inc-...` or a team's own prefix.
                found = await self.store.incident_by_channel_name(text.lstrip("#"))
            if found is None:
                raise UserError(f"No incident {inline(ref, 40)}. Use `/incident list` to see open incidents.")
            return found
        if channel_id:
            found = await self.store.incident_by_channel(channel_id)
            if found is not None:
                return found
        raise UserError("Run this in an incident channel, or name the incident: `/incident ack #42`.")

    async def in_channel(self, channel_id: str) -> Incident | None:
        return await self.store.incident_by_channel(channel_id)

    async def by_message(self, channel_id: str, ts: str) -> Incident | None:
        """The incident whose card or notification is that message (a button's own message).

        Slack shows a message before the bot has stored its ts: a click in that moment (or
        while a slow database holds the write) waits for the write, up to PENDING_POST_WAIT_S,
        rather than calling a fresh button invalid. A click on any other message is answered
        at once."""
        if not channel_id or not ts:
            return None
        found = await self.store.incident_by_message(channel_id, ts)
        if found is not None:
            return found
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PENDING_POST_WAIT_S
        since = self.clock() - PENDING_POST_RECENT
        while loop.time() < deadline and await self.store.button_message_pending(channel_id, ts, since):
            await asyncio.sleep(PENDING_POST_POLL_S)
            found = await self.store.incident_by_message(channel_id, ts)
            if found is not None:
                return found
        return None

    async def offer_resolve(self, incident: Incident, user: str, summary: str | None) -> str:
        """Store a "Resolve anyway?" question for `user`; returns the opaque token its button
        carries (the click is checked against what is stored, never against the client)."""
        now = self.clock()
        token = secrets.token_urlsafe(16)
        await self.store.add_button_token(
            ButtonToken(
                token,
                RESOLVE_CONFIRMATION,
                incident.id,
                user,
                {"summary": summary},
                now + CONFIRMATION_TTL,
            ),
            now,
        )
        return token

    async def resolve_offer(self, token: str, user: str) -> ResolveOffer:
        """The question a "Resolve anyway" click answers: asked of this user, unanswered, not
        expired; a UserError otherwise. Changes nothing."""
        stored = await self.store.button_token(token, RESOLVE_CONFIRMATION, self.clock()) if token else None
        if stored is None or stored.user_id != user:
            raise UserError(INVALID_BUTTON)
        incident = await self.store.get_incident(stored.incident_id)
        if incident is None:
            raise UserError(INVALID_BUTTON)
        summary = stored.data.get("summary")
        return ResolveOffer(token, incident, summary if isinstance(summary, str) else None)

    async def resolve_offered(self, offer: ResolveOffer, user: str) -> str:
        """Resolve as the question said; a second click (or replica) finds it answered."""
        if not await self.store.use_button_token(offer.token, self.clock()):
            raise UserError(INVALID_BUTTON)
        return await self.resolve(offer.incident, user, offer.summary)

    async def list_open(self, team: str | None = None) -> list[Incident]:
        """Open incidents; only the team's when named (the default team's include those
        without a team)."""
        if team is None:
            return await self.store.list_open()
        name = self.require_team(team)
        teams: list[str | None] = [name, None] if name == self.catalog.default_team else [name]
        return await self.store.list_open(teams=teams)

    def require_team(self, name: str) -> str:
        """A team of the catalog by name, or a UserError listing them."""
        wanted = name.strip().lower().lstrip("@#")
        if not self.catalog.knows(wanted):
            known = ", ".join(f"`{n}`" for n in self.catalog.names())
            raise UserError(f"No team {inline(name, 40)} in the service catalog. Teams: {known}.")
        return wanted

    async def declared_route(self, team: str | None, channel_id: str) -> Route:
        """A declared incident's team: the one named, else the team whose notification channel
        it is declared in, else the default team."""
        if team is not None:
            return Route(self.require_team(team))
        return Route(await self.teams.team_of_channel(channel_id) or self.catalog.default_team)

    async def timeline(self, incident_id: int) -> list[TimelineEvent]:
        return await self.store.timeline(incident_id)

    async def view(self, incident_id: int) -> IncidentView | None:
        loaded = await self.store.load_view(incident_id)
        return loaded[0] if loaded else None

    # ------------------------------------------------------------------ changes

    async def open(self, title: str, severity: Severity, user: str, route: Route | None = None) -> Incident:
        """A human-declared incident: same channel, cards and timeline as an alert-born one."""
        now = self.clock()
        route = route or Route(self.catalog.default_team)
        async with self.store.transaction() as tx:
            incident, _ = await tx.create_incident(
                group_key=f"human:{secrets.token_hex(8)}",
                title=title,
                severity=severity,
                source=IncidentSource.HUMAN,
                now=now,
                commander=user,
                team=route.team,
            )
            await tx.add_event(
                incident.id,
                "opened",
                f"Declared by <@{user}> (team {escape(self.catalog.route_text(route))})",
                at=now,
                actor=user,
                data={"team": route.team},
            )
            await tx.add_role(incident.id, Role.COMMANDER.value, user, now)
        self.metrics.incidents_opened.labels("human", severity.value).inc()
        await self.timers.schedule_open(incident)
        self.publish(incident.id)
        log.info("incident.opened", extra={"incident_id": incident.id, "source": "human", "user": user})
        return incident

    async def acknowledge(self, incident: Incident, user: str, *, from_pagerduty: bool = False) -> str:
        _require_open(incident)
        if not await self.store.acknowledge(incident.id, user, self.clock()):
            # Told to the one who asked, not to the channel: nothing changed.
            who = f" by <@{incident.acknowledged_by}>" if incident.acknowledged_by else ""
            raise UserError(f"Incident {incident.ref} was already acknowledged{who}.")
        # The first to acknowledge leads unless someone was named (or declared it).
        await self.lifecycle.take_command(incident.id, user, self.clock())
        self.publish(incident.id)
        if not from_pagerduty:
            await self.pagerduty.send(incident, Mirrored.ACKNOWLEDGE)
        return f"Incident {incident.ref} acknowledged by <@{user}>."

    async def set_severity(self, incident: Incident, severity: Severity, user: str) -> str:
        _require_open(incident)
        changed = await self.lifecycle.set_severity(incident.id, severity, user, self.clock())
        if changed is None:
            raise UserError(f"Incident {incident.ref} is already {severity}.")
        await self.timers.reschedule_for_severity(changed)
        self.publish(incident.id)
        await self.pagerduty.send(changed, Mirrored.SEVERITY)
        return f"Severity of {incident.ref} is now {severity}."

    async def set_team(self, incident: Incident, team: str, user: str) -> str:
        """Give the incident to another team: its notification moves to that team's channel."""
        name = self.require_team(team)
        title = escape(self.catalog.team_title(name))
        if self.catalog.team_name(incident.team) == name:
            return f"Incident {incident.ref} already belongs to {title}."
        before = escape(self.catalog.team_title(incident.team))
        text = f"<@{user}> moved the incident from {before} to {title}"
        if await self.lifecycle.set_team(incident.id, name, None, text, user, self.clock()) is None:
            return f"Incident {incident.ref} already belongs to {title}."
        self.publish(incident.id)
        return f"Incident {incident.ref} now belongs to {title}."

    async def post_status(self, incident: Incident, text: str, user: str) -> str:
        _require_open(incident)
        await self.lifecycle.post_status(incident.id, text, user, self.clock())
        await self.timers.schedule_update_reminder(incident.id, incident.severity, incident.team)
        self.publish(incident.id)
        await self.pagerduty.send(incident, Mirrored.NOTE, f"Status update from Slack: {text}")
        return f"📣 *Status update* from <@{user}>: {inline(text)}"

    async def join(self, incident: Incident, user: str) -> str:
        """Invite `user` into the incident's channel (the notification's Join channel button)."""
        channel = incident.channel_id
        if not channel:
            raise UserError(f"Incident {incident.ref} has no channel yet.")
        try:
            await self.chat.invite(channel, [user])
        except IntegrationError as exc:
            if "is_archived" in exc.message:
                raise UserError(f"The channel of incident {incident.ref} is archived.") from None
            raise
        return f"You are in <#{channel}>."

    async def assign(self, incident: Incident, role: Role, user: str, actor: str) -> str:
        _require_open(incident)
        await self.lifecycle.assign(incident.id, role, user, actor, self.clock())
        if incident.channel_id:
            await self.chat.invite(incident.channel_id, [user])
        self.publish(incident.id)
        return f"<@{user}> is now {role.value} of {incident.ref}."

    async def resolve(
        self, incident: Incident, user: str, summary: str | None, *, from_pagerduty: bool = False
    ) -> str:
        resolved = await self.lifecycle.resolve(incident.id, user, summary, self.clock())
        if resolved is None:
            if from_pagerduty:
                return f"Incident {incident.ref} is already resolved."
            raise UserError(f"Incident {incident.ref} is already resolved.")
        await self.expire_remediations(resolved, user)
        await self.lifecycle.cancel_timers(incident.id)
        await self.timers.schedule_after_resolve(resolved)
        self.publish(incident.id)
        await self.silences.expire_for(incident, user)
        if not from_pagerduty:
            await self.pagerduty.send(incident, Mirrored.RESOLVE, summary)
        self.supervisor.spawn(
            self._post_resolution_summary(incident.id), name=f"resolve-summary-{incident.id}"
        )
        return f"✅ Incident {incident.ref} resolved by <@{user}>."

    async def reopen(self, incident: Incident, user: str, *, from_pagerduty: bool = False) -> str:
        if incident.status is not IncidentStatus.RESOLVED:
            return f"Incident {incident.ref} is not resolved."
        try:
            reopened = await self.lifecycle.reopen(incident.id, user, self.clock())
        except asyncpg.UniqueViolationError:
            raise UserError(
                f"Incident {incident.ref} cannot be reopened: its alert group already has a newer open incident."
            ) from None
        if reopened is None:
            return f"Incident {incident.ref} is not resolved."
        await self.lifecycle.cancel_timers(incident.id)
        await self.timers.schedule_open(reopened, restart=True)
        self.publish(incident.id)
        if not from_pagerduty:
            await self.pagerduty.send(reopened, Mirrored.REOPEN)
        return f"Incident {incident.ref} reopened by <@{user}>."

    async def _post_resolution_summary(self, incident_id: int) -> None:
        loaded = await self.store.load_view(incident_id)
        if loaded is None:
            return
        view, _ = loaded
        events = await self.store.timeline(incident_id)
        await self.lifecycle.add_event(
            incident_id,
            "resolution_summary",
            resolution_summary(view, events, self.clock()),
            now=self.clock(),
            announce=True,
        )
        self.publish(incident_id)
