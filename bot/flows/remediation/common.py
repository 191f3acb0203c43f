"""What the remediation steps share: limits, parameter parsing, the reasons nothing can run
(the kill switch in policy.yaml or flipped at runtime, no cluster), user group membership
for the policy's decisions, and the cooldown rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.clients.kubernetes.cluster import KubernetesCluster
from bot.clients.kubernetes.clusters import Clusters
from bot.core.actions import (
    HOST_ACTIONS,
    PARAMS_BY_ACTION,
    ActionName,
    ActionParams,
    DrainParams,
    ExecParams,
    HostCommandParams,
    ScaleParams,
    action_params,
    target_of,
)
from bot.core.policy import ApprovalRule, Policy
from bot.core.ports import HostTransport
from bot.core.runs import ActionRun
from bot.flows.remediation.authz import Membership, UsergroupResolver, needs_usergroups, role_usergroups
from bot.flows.remediation.hosts import HostActions
from bot.store.kill_switch import KillSwitchState
from bot.store.remediation import RemediationStore

TOKEN_BYTES = 8  # 16 hex characters, from the OS's CSPRNG
EXECUTE_TIMEOUT_S = 120.0
EXEC_TIMEOUT_S = 60.0
DEPLOYMENT_ACTIONS = frozenset(
    {
        ActionName.ROLLOUT_RESTART,
        ActionName.SCALE,
        ActionName.ROLLOUT_UNDO,
        ActionName.SET_ENV,
        ActionName.SET_RESOURCES,
    }
)
# The changes the bot can offer to undo.
UNDOABLE = DEPLOYMENT_ACTIONS | {ActionName.CORDON, ActionName.DRAIN, ActionName.HOST_COMMAND}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a click did, in words for the clicking user, and the run as it is now."""

    text: str
    run: ActionRun | None = None


def default_title(action: ActionName, params: ActionParams) -> str:
    target = target_of(action, params)
    if isinstance(params, ScaleParams):
        return f"Scale {target} to {params.replicas} replicas"
    if isinstance(params, ExecParams):
        return f"Run exec template `{params.template}` in {target}"
    if isinstance(params, HostCommandParams):
        return f"Run host template `{params.template}` on host {params.host}"
    words = action.value.replace("_", " ")
    return f"{words[:1].upper()}{words[1:]} {target}"


def parse_params(action: ActionName, params: Mapping[str, Any]) -> ActionParams:
    return action_params(PARAMS_BY_ACTION[action].model_validate(dict(params)))


def execute_timeout(action: ActionName, params: ActionParams, hosts: HostActions | None = None) -> float:
    if isinstance(params, DrainParams):
        return float(params.timeout_seconds) + 60.0
    if action is ActionName.EXEC:
        return EXEC_TIMEOUT_S
    if isinstance(params, HostCommandParams):
        # The command and the preview after it, each within the template's limit.
        return 2 * float(hosts.timeout(params) if hosts is not None else EXEC_TIMEOUT_S) + 5.0
    return EXECUTE_TIMEOUT_S


def blockers(
    policy: Policy,
    cluster: KubernetesCluster | HostTransport | None,
    switch: KillSwitchState | None = None,
    *,
    host: str | None = None,
) -> list[str]:
    """Why nothing can execute right now (shown on every proposal); `switch` is the runtime
    kill switch as stored; `host`: the run is on that host, `cluster` is its transport."""
    found = []
    if policy.kill_switch:
        found.append("The kill switch is on (policy.yaml `kill_switch: true`): nothing executes.")
    elif switch is not None and switch.engaged:
        why = f": {switch.reason}" if switch.reason else ""
        found.append(
            f"The kill switch is on (turned on by {switch.changed_by} at {switch.changed_at:%H:%M} UTC{why}):"
            " nothing executes until it is turned off."
        )
    if cluster is None and host is not None:
        found.append(f"Host `{host}` cannot be reached (no transport configured): nothing executes.")
    elif cluster is None:
        found.append(
            "The Kubernetes cluster is not configured (KUBECONFIG unset, not in a pod, or not listed"
            " in clusters.yaml): nothing executes."
        )
    return found


def run_blockers(
    policy: Policy,
    clusters: Clusters,
    hosts: HostActions | None,
    run: ActionRun,
    switch: KillSwitchState | None,
) -> list[str]:
    """`blockers` for the cluster or host `run` acts on (a host run stores its host as its
    cluster)."""
    if run.action in HOST_ACTIONS:
        transport = hosts.transport(run.cluster) if hosts is not None else None
        return blockers(policy, transport, switch, host=run.cluster)
    return blockers(policy, clusters.client(run.cluster), switch)


def with_problems(reason: str, membership: Membership) -> str:
    if membership.problems:
        return f"{reason} ({'; '.join(membership.problems)})"
    return reason


class Access:
    """The user groups a decision needs, looked up only when the policy grants a role
    through a group the user is not listed in directly."""

    def __init__(self, policy: Policy, resolver: UsergroupResolver) -> None:
        self.policy = policy
        self.resolver = resolver

    async def membership(self, user: str, roles: list[str]) -> Membership:
        if not needs_usergroups(self.policy, roles, user):
            return Membership(frozenset())
        return await self.resolver.groups_of(user, role_usergroups(self.policy, roles))

    async def roles_held(self, user: str, roles: list[str]) -> tuple[list[str], Membership]:
        """Which of `roles` the user holds, each one checked (user groups looked up only for the
        roles the user is not listed in directly)."""
        direct = [r for r in roles if self.policy.in_roles([r], user)]
        others = [r for r in roles if r not in direct]
        groups = role_usergroups(self.policy, others)
        membership = await self.resolver.groups_of(user, groups) if groups else Membership(frozenset())
        held = set(direct) | {r for r in others if self.policy.in_roles([r], user, membership.groups)}
        return [r for r in roles if r in held], membership

    def rule_of(self, run: ActionRun) -> ApprovalRule:
        """The rule a run follows under the current policy; a break-glass run the bypassing one
        while the policy still allows break-glass (else the ordinary rule, cooldown and all)."""
        rule = self.policy.rule_for(run.action, run.approval_rule, run.cluster, run.namespace)
        bypassing = self.policy.bypassing(rule) if run.break_glass else None
        return bypassing or rule


async def cooldown_problem(
    store: RemediationStore,
    run_target: str,
    rule: ApprovalRule,
    now: datetime,
    *,
    exclude: list[int],
    before: tuple[datetime, int] | None = None,
    cluster: str = "",
) -> str | None:
    if rule.cooldown_minutes <= 0:
        return None
    since = now - timedelta(minutes=rule.cooldown_minutes)
    recent = await store.recent_on_target(run_target, since, exclude=exclude, before=before, cluster=cluster)
    if recent is None:
        return None
    ready = recent.started_at + timedelta(minutes=rule.cooldown_minutes)
    return (
        f"{run_target} was changed by run {recent.id} (`{recent.action.value}`) at "
        f"{recent.started_at:%H:%M:%S} UTC; the policy cooldown is {rule.cooldown_minutes} min, "
        f"so the next change is possible after {ready:%H:%M:%S} UTC."
    )
