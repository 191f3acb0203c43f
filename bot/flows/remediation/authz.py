"""Who may request, approve and reject a remediation: pure decisions, plus user group lookup.

The decisions take the user's user group memberships as input (`user_groups`: the policy's
names for the groups, IDs or handles, that the user belongs to), so they are plain functions
of (policy, rule, user) and every refusal carries a reason that is safe to show in Slack.

`UsergroupResolver` finds those memberships through Slack (`usergroups.users.list`, and
`usergroups.list` to turn a handle into an ID) with a short cache in Redis shared by the
replicas, plus a per-process single flight so a burst of clicks costs one Slack call.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from bot.core.actions import HOST_ACTIONS, ActionName, ExecParams, HostCommandParams, ScaleParams
from bot.core.errors import IntegrationError, UserError
from bot.core.policy import EVERYONE, ApprovalRule, Policy, approval_helps, missing_roles
from bot.flows.remediation.hosts import host_template
from bot.store.coordination import PREFIX, Coordination

USERGROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
CACHE_TTL_S = 60
NODE_ACTIONS = frozenset({ActionName.CORDON, ActionName.UNCORDON, ActionName.DRAIN})


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""

    def require(self) -> None:
        """Raise the refusal as a UserError (shown to the user)."""
        if not self.allowed:
            raise UserError(self.reason)


ALLOWED = Decision(True)


def deny(reason: str) -> Decision:
    return Decision(False, reason)


# --------------------------------------------------------------------------- roles


def role_usergroups(policy: Policy, roles: Iterable[str]) -> list[str]:
    """The user groups (IDs or handles, as written in the policy) that grant `roles`."""
    found: dict[str, None] = {}
    for name in roles:
        role = policy.roles.get(name)
        if role is not None:
            found.update(dict.fromkeys(role.usergroups))
    return list(found)


def needs_usergroups(policy: Policy, roles: Iterable[str], user_id: str) -> bool:
    """Whether deciding for `user_id` needs their user groups (not a direct member, and some
    role is granted through a group)."""
    roles = list(roles)
    return not policy.in_roles(roles, user_id) and bool(role_usergroups(policy, roles))


def roles_text(roles: Collection[str]) -> str:
    if not roles:
        return "nobody (no role is listed in policy.yaml)"
    return ", ".join(f"`{r}`" for r in roles)


def _action_text(action: ActionName, rule_name: str) -> str:
    return f"`{action.value}`" + (f" (rule `{rule_name}`)" if rule_name != "default" else "")


def may_request(
    policy: Policy,
    rule: ApprovalRule,
    action: ActionName,
    *,
    user_id: str,
    user_groups: Iterable[str] = (),
    rule_name: str = "default",
) -> Decision:
    if policy.in_roles(rule.requesters, user_id, user_groups):
        return ALLOWED
    return deny(
        f"You may not request {_action_text(action, rule_name)}: the policy lets "
        f"{roles_text(rule.requesters)} request it."
    )


def may_approve(
    policy: Policy,
    rule: ApprovalRule,
    action: ActionName,
    *,
    user_id: str,
    user_groups: Iterable[str] = (),
    requested_by: str | None,
    approvals: Collection[str],
    needed: int,
    rule_name: str = "default",
    required_roles: Sequence[str] = (),
    approval_roles: Mapping[str, Collection[str]] | None = None,
    user_roles: Collection[str] = (),
) -> Decision:
    """Whether `user_id`'s approval counts. `approvals` are the users who approved already;
    with `required_roles` (one approver per role), `approval_roles` are the roles each of them
    covered and `user_roles` those of the required roles this user holds: an approval that
    brings the proposal no closer (another approver of a role already covered while a
    required role is missing) is refused, naming the role still needed."""
    approvers = [r for r in rule.approver_roles if r != EVERYONE]
    if not policy.in_roles(approvers, user_id, user_groups):
        return deny(
            f"You may not approve {_action_text(action, rule_name)}: the policy lets "
            f"{roles_text(approvers)} approve it."
        )
    if requested_by is not None and user_id == requested_by and not rule.requester_may_approve:
        others = needed - len([a for a in approvals if a != user_id])
        return deny(
            f"You requested this {action.value}, and the policy does not let the requester approve "
            f"their own request: {max(others, 1)} other approver(s) must approve it."
        )
    if user_id in approvals:
        left = needed - len(approvals)
        return deny(
            f"You already approved this; it needs {left} more approval(s) from someone else."
            if left > 0
            else "You already approved this."
        )
    held = approval_roles if approval_roles is not None else dict.fromkeys(approvals, ())
    if required_roles and not approval_helps(required_roles, needed, held, user_id, user_roles):
        missing = missing_roles(required_roles, held)
        yours = roles_text(user_roles) if user_roles else "none of them"
        return deny(
            f"This {action.value} still needs an approver with role {roles_text(missing)}: the policy "
            f"wants one approver from each of {roles_text(required_roles)} (your roles among them: {yours})."
        )
    return ALLOWED


def may_reject(
    policy: Policy,
    rule: ApprovalRule,
    action: ActionName,
    *,
    user_id: str,
    user_groups: Iterable[str] = (),
    requested_by: str | None,
    rule_name: str = "default",
) -> Decision:
    """Approvers may reject a proposal, and a requester may withdraw their own."""
    if requested_by is not None and user_id == requested_by:
        return ALLOWED
    approvers = [r for r in rule.approver_roles if r != EVERYONE]
    if policy.in_roles(approvers, user_id, user_groups):
        return ALLOWED
    return deny(
        f"You may not reject {_action_text(action, rule_name)}: the policy lets "
        f"{roles_text(approvers)} (or the requester) reject it."
    )


# --------------------------------------------------------------------------- targets and parameters


def namespace_of(action: ActionName, params: BaseModel | Mapping[str, Any]) -> str:
    """The namespace an action touches; '' for cluster-scoped targets (nodes)."""
    if action in NODE_ACTIONS:
        return ""
    value = params.get("namespace") if isinstance(params, Mapping) else getattr(params, "namespace", "")
    return str(value or "")


def namespace_allowed(
    rule: ApprovalRule, action: ActionName, namespace: str, *, rule_name: str = "default"
) -> Decision:
    # A host has no namespace: `parameter_problem` checks the rule's hosts and templates.
    if action in HOST_ACTIONS or rule.allows_namespace(namespace):
        return ALLOWED
    where = f"namespace `{namespace}`" if namespace else "cluster-scoped targets"
    denied = [g for g in rule.namespaces_deny if namespace and fnmatch.fnmatchcase(namespace, g)]
    if denied:
        return deny(f"The policy never allows {_action_text(action, rule_name)} in {where} (denied).")
    allowed = ", ".join(f"`{g}`" for g in rule.namespaces_allow) or "none"
    return deny(
        f"The policy does not allow {_action_text(action, rule_name)} in {where} (allowed: {allowed})."
    )


def parameter_problem(
    policy: Policy, rule: ApprovalRule, action: ActionName, params: BaseModel, *, current_replicas: int | None
) -> str | None:
    """Why the policy refuses these parameters (bounds, exec and host templates, hosts), or None."""
    if action is ActionName.HOST_COMMAND and isinstance(params, HostCommandParams):
        try:
            host_template(policy, params)
        except UserError as err:
            return str(err)
        return rule.host_violation(params.host, params.template)
    if action is ActionName.SCALE and isinstance(params, ScaleParams):
        return rule.scale_violation(current_replicas, params.replicas)
    if action is ActionName.EXEC and isinstance(params, ExecParams):
        try:
            exec_argv(policy, params)
        except UserError as err:
            return str(err)
    return None


def exec_argv(policy: Policy, params: ExecParams) -> list[str]:
    """The argv of an allow-listed exec template with its checked arguments (never a shell)."""
    template = policy.exec_templates.get(params.template)
    if template is None:
        known = ", ".join(f"`{n}`" for n in sorted(policy.exec_templates)) or "none are defined"
        raise UserError(f"exec template `{params.template}` is not allow-listed in policy.yaml ({known}).")
    problems = template.arg_problems(params.args)
    if problems:
        raise UserError(f"exec template `{params.template}`: " + "; ".join(problems))
    return template.render(params.args)


# --------------------------------------------------------------------------- user groups


class UsergroupSource(Protocol):
    """The part of the Slack adapter the resolver needs (`bot.clients.slack.SlackChat`)."""

    async def usergroup_members(self, usergroup: str) -> list[str]: ...

    async def call(self, method: str, *, channel: str | None = None, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Membership:
    groups: frozenset[str]
    problems: tuple[str, ...] = ()


@dataclass(slots=True)
class UsergroupResolver:
    """User group members from Slack, cached `ttl_s` seconds in Redis (shared by replicas)."""

    chat: UsergroupSource
    coord: Coordination
    ttl_s: int = CACHE_TTL_S
    _flights: dict[str, asyncio.Future[frozenset[str]]] = field(default_factory=dict)

    async def groups_of(self, user_id: str, usergroups: Iterable[str]) -> Membership:
        """Which of `usergroups` (policy names: IDs or handles) `user_id` belongs to. A group
        that cannot be resolved counts as not containing the user, with a problem noted."""
        names = list(dict.fromkeys(usergroups))
        if not names:
            return Membership(frozenset())
        results = await asyncio.gather(*(self.members(n) for n in names), return_exceptions=True)
        groups: set[str] = set()
        problems: list[str] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, IntegrationError | UserError):
                problems.append(f"could not check user group `{name}`: {result}")
            elif isinstance(result, BaseException):
                raise result
            elif user_id in result:
                groups.add(name)
        return Membership(frozenset(groups), tuple(problems))

    async def members(self, usergroup: str) -> frozenset[str]:
        flight = self._flights.get(usergroup)
        if flight is not None:
            return await asyncio.shield(flight)
        future: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        self._flights[usergroup] = future
        try:
            value = await self._members(usergroup)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(value)
            return value
        finally:
            self._flights.pop(usergroup, None)

    async def _members(self, usergroup: str) -> frozenset[str]:
        key = f"{PREFIX}usergroup:members:{usergroup}"
        cached = await self.coord.client.get(key)
        if cached is not None:
            return frozenset(json.loads(cached))
        group_id = usergroup if USERGROUP_ID.match(usergroup) else await self._id_for_handle(usergroup)
        members = frozenset(await self.chat.usergroup_members(group_id))
        await self.coord.client.set(key, json.dumps(sorted(members)), ex=self.ttl_s)
        return members

    async def _id_for_handle(self, handle: str) -> str:
        key = f"{PREFIX}usergroup:handle:{handle}"
        cached = await self.coord.client.get(key)
        if cached is not None:
            return str(cached)
        data = await self.chat.call("usergroups.list")
        found: str | None = None
        for group in data.get("usergroups") or []:
            if isinstance(group, dict) and group.get("handle") == handle and group.get("id"):
                found = str(group["id"])
                await self.coord.client.set(
                    f"{PREFIX}usergroup:handle:{group['handle']}", found, ex=self.ttl_s
                )
        if found is None:
            raise UserError(f"no Slack user group with the handle @{handle}")
        return found
