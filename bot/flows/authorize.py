"""Who may do what to an incident from Slack: the policy's `lifecycle` permissions, checked on
the server for every command and button before anything changes.

A permission lists roles: the policy's named roles (Slack users and user groups, resolved
like the remediation approvals through `Access`), `everyone`, `commander` (the incident's
commander) and `channel_members` (members of the incident's channel, asked from Slack with
`conversations.members`). The cheap checks come first: only when they fail is Slack asked.
A refusal is a `UserError` whose text names the roles that may; the caller has changed
nothing yet.
"""

from __future__ import annotations

from typing import Any, Protocol

from bot.core.errors import IntegrationError
from bot.core.incident import Incident, Severity
from bot.core.policy import BUILT_IN_ROLES, CHANNEL_MEMBERS, COMMANDER, EVERYONE, Permission, Policy
from bot.flows.remediation.authz import ALLOWED, Decision, deny
from bot.flows.remediation.common import Access

# A channel's members page by page; an incident channel has a handful, #incident maybe more.
MEMBERS_PAGE = 1000
MAX_MEMBER_PAGES = 20

# What each permission lets a person do, for the refusal ("You may not <this>: ...").
DOING: dict[Permission, str] = {
    Permission.DECLARE: "declare an incident",
    Permission.ACK: "acknowledge incident {ref}",
    Permission.STATUS: "post status updates on incident {ref}",
    Permission.SEVERITY: "change the severity of incident {ref}",
    Permission.SEVERITY_DOWNGRADE: "lower the severity of incident {ref}, a {severity} (it cancels its escalation)",
    Permission.ASSIGN: "give roles on incident {ref}",
    Permission.RESOLVE: "resolve incident {ref}",
    Permission.RESOLVE_PAGED: "resolve incident {ref}: it is linked to PagerDuty and would be resolved there too",
    Permission.REOPEN: "reopen incident {ref}",
    Permission.SILENCE: "silence the alerts of incident {ref}",
    Permission.SILENCE_ELEVATED: "silence with negative (`!=`, `!~`) or match-everything matchers",
    Permission.GRAPH: "graph ad hoc queries",
    Permission.RUN: "propose remediations ad hoc",
    Permission.INVESTIGATE: "post runbooks, read the timeline or draft the postmortem of incident {ref}",
    Permission.TEAM: "give incident {ref} to another team",
    Permission.CORRELATE: "merge, split or correlate incident {ref}",
    Permission.OPEN_CHANNEL: "open the channel of incident {ref} from the storm digest",
    Permission.JOIN: "join the channel of incident {ref}",
}
_WHO: dict[str, str] = {
    EVERYONE: "anyone",
    CHANNEL_MEMBERS: "members of the incident's channel",
    COMMANDER: "the incident's commander",
}
# Lowering these severities cancels an escalation that pages someone.
PAGED_SEVERITIES = frozenset({Severity.P1, Severity.P2})


def who_may(roles: list[str], permission: Permission) -> str:
    """The roles of a permission in words, for a refusal."""
    if not roles:
        return f"nobody (no role is listed under `lifecycle.{permission.value}` in policy.yaml)"
    return ", ".join(_WHO.get(r, f"`{r}`") for r in roles)


def severity_permission(incident: Incident, severity: Severity) -> Permission:
    """Lowering a P1/P2 is a permission of its own; any other change is `severity`."""
    if incident.severity in PAGED_SEVERITIES and severity.rank > incident.severity.rank:
        return Permission.SEVERITY_DOWNGRADE
    return Permission.SEVERITY


def resolve_permission(incident: Incident) -> Permission:
    """Resolving an incident linked to PagerDuty resolves it there too: a permission of its own."""
    return Permission.RESOLVE_PAGED if incident.pagerduty_incident_id else Permission.RESOLVE


class MembersSource(Protocol):
    """The part of the Slack adapter the membership check needs (`bot.clients.slack.SlackChat`)."""

    async def call(self, method: str, *, channel: str | None = None, **kwargs: Any) -> dict[str, Any]: ...


class ChannelMembers:
    """Whether a user is a member of a channel, asked from Slack each time: membership changes
    (an invite, a leave) count at once, and a refusal never rests on a stale answer."""

    def __init__(self, chat: MembersSource) -> None:
        self.chat = chat

    async def contains(self, channel: str, user: str) -> bool:
        cursor = ""
        for _ in range(MAX_MEMBER_PAGES):
            args: dict[str, Any] = {"limit": MEMBERS_PAGE}
            if cursor:
                args["cursor"] = cursor
            data = await self.chat.call("conversations.members", channel=channel, **args)
            if user in (data.get("members") or []):
                return True
            cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return False
        return False


class Authorizer:
    """The one place that decides whether a person may act on an incident from Slack."""

    def __init__(self, policy: Policy, access: Access, members: ChannelMembers) -> None:
        self.policy = policy
        self.access = access
        self.members = members

    async def decide(self, permission: Permission, user: str, incident: Incident | None = None) -> Decision:
        roles = self.policy.lifecycle.roles_for(permission)
        if EVERYONE in roles:
            return ALLOWED
        if COMMANDER in roles and incident is not None and incident.commander == user:
            return ALLOWED
        named = [r for r in roles if r not in BUILT_IN_ROLES]
        membership = await self.access.membership(user, named)
        if self.policy.in_roles(named, user, membership.groups):
            return ALLOWED
        problems = list(membership.problems)
        if CHANNEL_MEMBERS in roles and incident is not None and incident.channel_id:
            try:
                if await self.members.contains(incident.channel_id, user):
                    return ALLOWED
            except IntegrationError as exc:
                problems.append(f"could not list the members of the incident's channel: {exc.message}")
        doing = DOING[permission].format(
            ref=incident.ref if incident is not None else "(none)",
            severity=incident.severity if incident is not None else "",
        )
        reason = f"You may not {doing}: the policy lets {who_may(roles, permission)}."
        if problems:
            reason += f" ({'; '.join(problems)})"
        return deny(reason)

    async def holds(self, permission: Permission, user: str, incident: Incident | None = None) -> bool:
        return (await self.decide(permission, user, incident)).allowed

    async def require(self, permission: Permission, user: str, incident: Incident | None = None) -> None:
        """Raise the refusal (a UserError naming the roles that may) unless `user` may."""
        (await self.decide(permission, user, incident)).require()
