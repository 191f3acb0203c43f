"""People in the room: who is invited into an incident's channel, and why.

On open, the team's current on-call (PagerDuty `GET /oncalls` for the team's escalation policy,
or the linked PagerDuty incident's own, matched to Slack users by email) and, for P1/P2, the
team's responder user groups are invited, with one timeline event saying who and why and every
lookup that failed. An escalation level's contacts are found the same way (`contacts`).

Exactly once across replicas: one replica at a time holds the incident's lease (Redis) while
it looks people up and invites them; the timeline event is keyed (`people:<incident>`), so its
announcement is posted once, and a replica that finds the key does not look anyone up again.
Inviting someone already in the channel changes nothing, so a holder that died half way is
repeated harmlessly by the next publish.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.clients.pagerduty import PagerDutyClient
from bot.clients.slack import SlackChat
from bot.core.blockkit import escape
from bot.core.catalog import Catalog, EscalationLevel
from bot.core.errors import IntegrationError, UserError
from bot.core.incident import Incident, IncidentStatus, IncidentView, Severity
from bot.core.ports import Clock
from bot.flows.remediation.authz import UsergroupResolver
from bot.store.coordination import Coordination
from bot.store.lifecycle import LifecycleStore

# Severities whose incidents bring the team's responder groups in on open.
RESPONDER_SEVERITIES = frozenset({Severity.P1, Severity.P2})
# One replica at a time brings an incident's people in; renewed while it works.
LEASE_MS = 15_000


def people_key(incident_id: int) -> str:
    return f"people:{incident_id}"


@dataclass
class Found:
    """Slack users found (in order, once each), a line per source saying why, and the lookups
    that failed (shown on the timeline, never swallowed)."""

    users: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Who of them is on call now (from PagerDuty): the team notification names them.
    oncall: list[str] = field(default_factory=list)

    def add(self, reason: str, users: Iterable[str]) -> None:
        found = list(dict.fromkeys(users))
        self.users += [u for u in found if u not in self.users]
        if found:
            self.reasons.append(f"{reason}: " + ", ".join(f"<@{u}>" for u in found))

    def merge(self, other: Found) -> None:
        self.users += [u for u in other.users if u not in self.users]
        self.oncall += [u for u in other.oncall if u not in self.oncall]
        self.reasons += other.reasons
        self.problems += other.problems

    @property
    def mentions(self) -> str:
        return " ".join(f"<@{u}>" for u in self.users)

    def lines(self) -> str:
        return "\n".join([*(f"• {r}" for r in self.reasons), *(f"⚠️ {p}" for p in self.problems)])


def on_call(found: Found) -> Found:
    """The people found are the ones on call now."""
    found.oncall = list(found.users)
    return found


class Responders:
    def __init__(
        self,
        pager: PagerDutyClient | None,
        chat: SlackChat,
        lifecycle: LifecycleStore,
        groups: UsergroupResolver,
        catalog: Catalog,
        coord: Coordination,
        clock: Clock,
    ) -> None:
        self.pager = pager
        self.chat = chat
        self.lifecycle = lifecycle
        self.groups = groups
        self.catalog = catalog
        self.coord = coord
        self.clock = clock
        self._done: set[int] = set()

    # ------------------------------------------------------------------ lookups

    async def oncall(self, policy_id: str, why: str) -> Found:
        """The current (lowest-level) on-call of a PagerDuty escalation policy, as Slack users."""
        found = Found()
        if self.pager is None:
            found.problems.append(f"{why}: PagerDuty is not configured (policy {escape(policy_id)})")
            return found
        try:
            oncall = await self.pager.oncall_users(policy_id)
        except IntegrationError as exc:
            found.problems.append(
                f"On-call lookup failed for policy {escape(policy_id)}: {escape(exc.message)}"
            )
            return found
        lowest = min((p.escalation_level for p in oncall), default=0)
        current = [p for p in oncall if p.escalation_level == lowest]
        if not current:
            found.problems.append(f"Nobody is on call for PagerDuty policy {escape(policy_id)}")
        users: list[str] = []
        for person in current:
            user = await self._slack_user(person.email, person.name, found)
            if user is not None:
                users.append(user)
        found.add(why, users)
        return found

    async def _slack_user(self, email: str | None, name: str, found: Found) -> str | None:
        if not email:
            found.problems.append(f"PagerDuty user {escape(name)} has no email to find them in Slack")
            return None
        try:
            user = await self.chat.lookup_by_email(email)
        except IntegrationError as exc:
            found.problems.append(f"Slack lookup of {escape(email)} failed: {escape(exc.message)}")
            return None
        if user is None:
            found.problems.append(f"No Slack user with the email of {escape(name)} ({escape(email)})")
        return user

    async def usergroups(self, names: Iterable[str], why: str) -> Found:
        found = Found()
        for name in dict.fromkeys(names):
            try:
                members = sorted(await self.groups.members(name))
            except (IntegrationError, UserError) as exc:
                found.problems.append(f"Could not read user group `{escape(name)}`: {escape(str(exc))}")
                continue
            if not members:
                found.problems.append(f"User group `{escape(name)}` has no members")
            found.add(f"{why} `@{escape(name)}`", members)
        return found

    async def contacts(self, level: EscalationLevel) -> Found:
        """An escalation level's Slack users and groups' members (its PagerDuty policy is paged,
        not looked up: paging is how PagerDuty reaches them)."""
        title = f"Level {level.level}" + (f" ({escape(level.name)})" if level.name else "")
        found = Found()
        found.add(title, level.users)
        found.merge(await self.usergroups(level.usergroups, title))
        return found

    async def invite(self, channel_id: str, found: Found) -> None:
        """Invite what was found; a failed invite is a problem on the timeline, not an error:
        the people it names are mentioned there all the same."""
        try:
            await self.chat.invite(channel_id, found.users)
        except IntegrationError as exc:
            found.problems.append(f"Inviting them failed: {escape(exc.message)}")

    # ------------------------------------------------------------------ on open

    async def on_open(self, incident: Incident) -> Found:
        """Who an incident's room gets on open: the on-call, and for P1/P2 the responders."""
        team = self.catalog.team(incident.team)
        found = Found()
        policy_id = await self.lifecycle.escalation_policy(incident.id)
        if policy_id:
            found.merge(on_call(await self.oncall(policy_id, "On-call from PagerDuty invited")))
        elif team.pagerduty.escalation_policy_id:
            found.merge(
                on_call(
                    await self.oncall(
                        team.pagerduty.escalation_policy_id,
                        f"On-call from PagerDuty invited ({escape(self.catalog.team_title(incident.team))})",
                    )
                )
            )
        if incident.severity in RESPONDER_SEVERITIES and team.responders:
            found.merge(await self.usergroups(team.responders, f"Responders ({incident.severity})"))
        return found

    async def after_publish(self, view: IncidentView) -> bool:
        """Publish hook: once an open incident has its channel, bring its people in (once).
        True when the incident changed and must be published again."""
        incident = view.incident
        if not incident.channel_id or incident.status is IncidentStatus.RESOLVED or incident.id in self._done:
            return False
        if not self._has_people(incident):
            self._done.add(incident.id)
            return False
        async with self.coord.lease(people_key(incident.id), LEASE_MS) as token:
            if token is None:
                return False  # another replica is bringing them in
            return await self._bring_in(incident)

    def _has_people(self, incident: Incident) -> bool:
        """Whether anyone may be brought in on open (checked without a lookup)."""
        team = self.catalog.team(incident.team)
        return bool(
            incident.pagerduty_incident_id
            or team.pagerduty.escalation_policy_id
            or (incident.severity in RESPONDER_SEVERITIES and team.responders)
        )

    async def _bring_in(self, incident: Incident) -> bool:
        assert incident.channel_id is not None
        key = people_key(incident.id)
        if await self.lifecycle.has_event(key):
            self._done.add(incident.id)
            return False
        found = await self.on_open(incident)
        if not found.users and not found.problems:
            self._done.add(incident.id)
            return False
        await self.invite(incident.channel_id, found)
        head = "👥 Invited to the incident:" if found.users else "👥 Nobody could be invited:"
        added = await self.lifecycle.add_event(
            incident.id,
            "people_invited",
            f"{head}\n{found.lines()}",
            now=self.clock(),
            announce=True,
            data={"users": found.users, "oncall": found.oncall, "problems": len(found.problems)},
            key=key,
        )
        # Only now: a failure before this is tried again by the next publish.
        self._done.add(incident.id)
        return added is not None
