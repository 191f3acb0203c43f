"""The access and response policy (``playbooks/policy.yaml``): pure pydantic models.

- `severity_mapping`: alert ``severity`` label value -> P1..P4, merged over the built-in
  defaults (critical/page -> P1, error/high/warning -> P2, medium -> P3, low/info -> P4,
  p0..p4 / sev0..sev4 / 0..4 with P0 folded into P1). Keys compare case-insensitively.
- `severity_policy`: per severity, the acknowledgement target, when to escalate an
  unacknowledged incident, the status-update cadence, whether to page, and the PagerDuty
  priority and urgency a linked PagerDuty incident gets (none by default). Defaults come
  from the seed runbooks (P1: ack 15 min, escalate after 15; P2: 30/60; P3: 120/240;
  P4: next business day, no escalation).
- `roles`: name -> Slack users and user groups. The built-in role ``everyone`` is anybody.
- `approvals`: rules keyed by an action name (``scale``), ``default``, or a custom name a
  playbook remediation refers to with ``approval: <name>``. Who may request, who may
  approve, how many approvals, which roles must each be covered by a distinct approver
  (``approvers_all_of``), whether the requester counts, namespaces allowed/denied
  (shell-style globs, deny wins), replica bounds, expiry and cooldown. ``uncordon`` without
  a rule of its own follows the ``cordon`` rule, else the ``drain`` one: undoing either
  must be possible wherever they are.
- `exec_templates`: the only commands ``exec`` may run: an argv list with ``{arg}``
  placeholders, each argument constrained by a full-match regex. Never a shell.
- `host_templates`: the only commands ``host_command`` may run on a host (clusters.yaml
  ``hosts``), in the same form, with an optional read-only ``preview`` argv and ``sudo``; a rule's
  ``hosts_allow`` and ``host_templates_allow`` say where and which (empty: nowhere, none).
- `kill_switch`: when true, no remediation executes (whatever the runtime switch says).
- `kill_switch_roles`: who may flip the runtime kill switch (`/incident killswitch on|off`).
- `lifecycle`: who may declare, acknowledge, post status, change severity (lowering a P1/P2
  is a permission of its own), assign, resolve (a PagerDuty-linked incident needs its own
  permission), reopen, silence (wider matchers need an elevated role; durations are capped per
  severity), graph ad hoc, run ad hoc and investigate. Besides the policy's roles, the built-in
  ``channel_members`` (members of the incident's channel) and ``commander`` (its commander).

Safe defaults: with no policy file (or an empty one) nobody may approve anything, no
namespace is allowed and no exec template exists, so nothing mutates the cluster.

This module does no I/O; `bot.config.playbooks` loads and validates the file with line numbers.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.core.actions import ActionName
from bot.core.argv import ExecArg, ExecTemplate, HostTemplate, TemplateName
from bot.core.break_glass import BreakGlass, break_glass_problems, bypassing_rule_fields
from bot.core.clusters import ClusterName
from bot.core.incident import Severity

__all__ = [
    "BUILT_IN_ROLES",
    "CHANNEL_MEMBERS",
    "COMMANDER",
    "DEFAULT_SEVERITY_MAPPING",
    "DEFAULT_SEVERITY_POLICY",
    "DEFAULT_SILENCE_MAX_MINUTES",
    "EVERYONE",
    "INVESTIGATE_RULE",
    "ApprovalRule",
    "ExecArg",
    "ExecTemplate",
    "HostTemplate",
    "LifecyclePolicy",
    "Permission",
    "Policy",
    "Role",
    "Severity",
    "SeverityPolicy",
    "approval_complete",
    "approval_helps",
    "map_severity",
    "missing_roles",
    "normalize_severity_key",
]

EVERYONE = "everyone"

RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
RuleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
SlackUserId = Annotated[str, StringConstraints(pattern=r"^[UW][A-Z0-9]{2,}$")]
# A user group ID (S0123ABC) or its handle (sre-team).
SlackUsergroup = Annotated[str, StringConstraints(pattern=r"^(S[A-Z0-9]{2,}|[a-z0-9][a-z0-9._-]*)$")]
NamespaceGlob = Annotated[str, StringConstraints(pattern=r"^[a-z0-9*?\[\]-]+$", max_length=63)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- severity

_SEV_FORMS = re.compile(r"^(?:p|sev|s|severity)?([0-4])$")


def normalize_severity_key(value: str) -> str:
    """Lowercase, trim, and drop separators: 'SEV-1' -> 'sev1', ' Critical ' -> 'critical'."""
    return re.sub(r"[\s_-]+", "", value.strip().lower())


DEFAULT_SEVERITY_MAPPING: dict[str, Severity] = {
    "critical": Severity.P1,
    "page": Severity.P1,
    "emergency": Severity.P1,
    "error": Severity.P2,
    "high": Severity.P2,
    "warning": Severity.P2,
    "medium": Severity.P3,
    "low": Severity.P4,
    "info": Severity.P4,
    "none": Severity.P4,
    **{f"{prefix}{n}": Severity(f"P{max(1, n)}") for prefix in ("p", "sev", "") for n in range(5)},
}


def map_severity(label_value: str | None, mapping: Mapping[str, Severity] | None = None) -> Severity | None:
    """P1..P4 for an alert's ``severity`` label value, or None when it is not recognised."""
    if not label_value:
        return None
    key = normalize_severity_key(label_value)
    table = DEFAULT_SEVERITY_MAPPING if mapping is None else mapping
    if key in table:
        return table[key]
    m = _SEV_FORMS.fullmatch(key)
    if m:
        return Severity(f"P{max(1, int(m.group(1)))}")
    return None


class SeverityPolicy(_Model):
    ack_minutes: int = Field(ge=1, le=10080, description="acknowledge within this many minutes")
    escalate_after_minutes: int | None = Field(
        default=None, ge=1, le=10080, description="escalate if still unacknowledged after this; null: never"
    )
    update_every_minutes: int | None = Field(
        default=None, ge=1, le=10080, description="remind the channel to post a status update; null: never"
    )
    page: bool = Field(default=False, description="page the on-call responder (PagerDuty)")
    pagerduty_priority: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="PagerDuty priority (its name, e.g. P1, or its id) a linked PagerDuty incident"
        " gets at this severity, and the severity a PagerDuty priority change maps back to; null:"
        " priorities are not sent",
    )
    pagerduty_urgency: Literal["high", "low"] | None = Field(
        default=None, description="PagerDuty urgency a linked PagerDuty incident gets at this severity"
    )


DEFAULT_SEVERITY_POLICY: dict[Severity, SeverityPolicy] = {
    Severity.P1: SeverityPolicy(
        ack_minutes=15, escalate_after_minutes=15, update_every_minutes=30, page=True
    ),
    Severity.P2: SeverityPolicy(
        ack_minutes=30, escalate_after_minutes=60, update_every_minutes=60, page=True
    ),
    Severity.P3: SeverityPolicy(ack_minutes=120, escalate_after_minutes=240, update_every_minutes=240),
    Severity.P4: SeverityPolicy(ack_minutes=1440),
}


# --------------------------------------------------------------------------- roles and approvals


class Role(_Model):
    users: list[SlackUserId] = Field(default_factory=list, description="Slack user IDs (U.../W...)")
    usergroups: list[SlackUsergroup] = Field(
        default_factory=list, description="Slack user group IDs (S...) or handles"
    )


class ApprovalRule(_Model):
    requesters: list[RoleName] = Field(default_factory=list, description="roles that may request")
    approvers: list[RoleName] = Field(default_factory=list, description="roles that may approve")
    approvals_needed: int = Field(default=1, ge=1, le=5)
    approvers_all_of: list[RoleName] = Field(
        default_factory=list,
        max_length=5,
        description=(
            "roles that must each be covered by a different approver (e.g. [dba, sre]); holders of "
            "these roles may approve, and at least this many approvals are needed"
        ),
    )
    requester_may_approve: bool = Field(
        default=False, description="whether the requester's own approval counts towards approvals_needed"
    )
    namespaces_allow: list[NamespaceGlob] = Field(
        default_factory=list, description="namespaces (globs) the action may touch; empty: none"
    )
    namespaces_deny: list[NamespaceGlob] = Field(
        default_factory=lambda: ["kube-system", "kube-public", "kube-node-lease"],
        description="namespaces (globs) never touched; wins over namespaces_allow",
    )
    max_replicas: int | None = Field(default=None, ge=0, le=1000, description="scale: upper bound")
    max_scale_step: int | None = Field(
        default=None, ge=1, le=1000, description="scale: largest change of replicas in one action"
    )
    expiry_minutes: int = Field(default=15, ge=1, le=1440, description="a proposal expires unapproved")
    cooldown_minutes: int = Field(
        default=0, ge=0, le=1440, description="minimum time between two runs on the same target"
    )
    break_glass: BreakGlass | None = Field(
        default=None,
        description="who may bypass this rule's cooldown and at what cost (replaces the global one)",
    )
    hosts_allow: list[NamespaceGlob] = Field(
        default_factory=list,
        description="host_command: hosts (clusters.yaml `hosts`, globs) it may run on; empty: none",
    )
    host_templates_allow: list[TemplateName] = Field(
        default_factory=list,
        description="host_command: the host_templates it may run; empty: none",
    )
    clusters: dict[ClusterName, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            "per cluster (clusters.yaml), fields of this rule that differ there, e.g. "
            "{skillforge-prod: {approvals_needed: 2, namespaces_allow: [api]}}"
        ),
    )

    hosts: dict[ClusterName, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            "per host (clusters.yaml hosts), fields of this rule that differ there, e.g. "
            "{onquota: {approvals_needed: 2}}"
        ),
    )

    _by_cluster: dict[str, ApprovalRule] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cluster_rules(self) -> ApprovalRule:
        # Each cluster's rule is this one with its fields replaced, validated like any rule.
        # A host's likewise (clusters.yaml keeps host and cluster names apart).
        base = self.model_dump(exclude={"clusters", "hosts"})
        targets = [("clusters", n, f) for n, f in self.clusters.items()]
        targets += [("hosts", n, f) for n, f in self.hosts.items()]
        for kind, name, fields in targets:
            for again in ("clusters", "hosts"):
                if again in fields:
                    raise ValueError(f"{kind}.{name}: a {kind[:-1]}'s rule cannot name {again} again")
            try:
                self._by_cluster[name] = ApprovalRule.model_validate({**base, **fields})
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                raise ValueError(f"{kind}.{name}: {problems}") from None
        return self

    def for_cluster(self, cluster: str | None) -> ApprovalRule:
        """This rule as it applies in `cluster`, or on a host (a host run stores its host as its
        cluster); itself where no rule of that cluster or host differs."""
        return self._by_cluster.get(cluster or "", self)

    @property
    def required_approvals(self) -> int:
        """Approvals a proposal needs: approvals_needed, and at least one per required role."""
        return max(self.approvals_needed, len(self.approvers_all_of))

    @property
    def approver_roles(self) -> list[str]:
        """Every role whose holders may approve (`approvers`, then `approvers_all_of`)."""
        return list(dict.fromkeys([*self.approvers, *self.approvers_all_of]))

    def allows_namespace(self, namespace: str) -> bool:
        """Deny wins; otherwise the namespace must match an allow glob."""
        if any(fnmatch.fnmatchcase(namespace, glob) for glob in self.namespaces_deny):
            return False
        return any(fnmatch.fnmatchcase(namespace, glob) for glob in self.namespaces_allow)

    def host_violation(self, host: str, template: str) -> str | None:
        """Why this rule does not let `template` run on `host`, or None."""
        if not any(fnmatch.fnmatchcase(host, glob) for glob in self.hosts_allow):
            allowed = ", ".join(f"`{g}`" for g in self.hosts_allow) or "none"
            return f"host `{host}` is not allowed by the rule (allowed: {allowed})"
        if template not in self.host_templates_allow:
            allowed = ", ".join(f"`{t}`" for t in self.host_templates_allow) or "none"
            return f"host template `{template}` is not allowed by the rule (allowed: {allowed})"
        return None

    def scale_violation(self, current: int | None, desired: int) -> str | None:
        """Why scaling from `current` to `desired` replicas is not allowed, or None."""
        if self.max_replicas is not None and desired > self.max_replicas:
            return f"{desired} replicas is above the policy maximum of {self.max_replicas}"
        if (
            self.max_scale_step is not None
            and current is not None
            and abs(desired - current) > self.max_scale_step
        ):
            return (
                f"changing {current} -> {desired} replicas exceeds the policy step of {self.max_scale_step}"
            )
        return None


DENY_ALL = ApprovalRule()
# The approval rule whose namespaces (and clusters) the investigator reads in; without one,
# the `default` rule's.
INVESTIGATE_RULE = "investigate"


def _assign(
    role: str, roles_of: Mapping[str, Collection[str]], owner: dict[str, str], seen: set[str]
) -> bool:
    """Kuhn's augmenting path: give `role` an approver, moving earlier assignments if needed."""
    for user, held in roles_of.items():
        if role not in held or user in seen:
            continue
        seen.add(user)
        if user not in owner or _assign(owner[user], roles_of, owner, seen):
            owner[user] = role
            return True
    return False


def missing_roles(required: Sequence[str], roles_of: Mapping[str, Collection[str]]) -> list[str]:
    """The required roles left uncovered when each approver (user -> the roles they hold)
    covers at most one role, assigned as well as possible (a maximum bipartite matching)."""
    owner: dict[str, str] = {}
    missing = []
    for role in dict.fromkeys(required):
        if not _assign(role, roles_of, owner, set()):
            missing.append(role)
    return missing


def approval_complete(required: Sequence[str], needed: int, roles_of: Mapping[str, Collection[str]]) -> bool:
    """Whether these approvals (user -> roles held) complete a proposal."""
    return len(roles_of) >= needed and not missing_roles(required, roles_of)


def approval_helps(
    required: Sequence[str],
    needed: int,
    roles_of: Mapping[str, Collection[str]],
    user: str,
    roles: Collection[str],
) -> bool:
    """Whether `user` (holding `roles`) approving brings the proposal closer to complete: they
    cover one more required role, or an approval of any role is still wanted."""
    with_user = {**roles_of, user: roles}
    if len(missing_roles(required, with_user)) < len(missing_roles(required, roles_of)):
        return True
    distinct = len(dict.fromkeys(required))
    covered = distinct - len(missing_roles(required, roles_of))
    free_slots = needed - distinct  # approvals beyond one per required role
    return len(roles_of) - covered < free_slots


# --------------------------------------------------------------------------- lifecycle permissions

# Built-in roles of the lifecycle permissions, besides `everyone`: decided per incident.
CHANNEL_MEMBERS = "channel_members"
COMMANDER = "commander"
BUILT_IN_ROLES = (EVERYONE, CHANNEL_MEMBERS, COMMANDER)


class Permission(StrEnum):
    """What a person may do to an incident from Slack; each is a list of roles in the policy."""

    DECLARE = "declare"
    ACK = "ack"
    STATUS = "status"
    SEVERITY = "severity"
    SEVERITY_DOWNGRADE = "severity_downgrade"
    ASSIGN = "assign"
    RESOLVE = "resolve"
    RESOLVE_PAGED = "resolve_paged"
    REOPEN = "reopen"
    SILENCE = "silence"
    SILENCE_ELEVATED = "silence_elevated"
    GRAPH = "graph"
    RUN = "run"
    INVESTIGATE = "investigate"
    TEAM = "team"
    CORRELATE = "correlate"
    OPEN_CHANNEL = "open_channel"
    JOIN = "join"


# Permissions that act beyond the incident (Alertmanager, Prometheus, the cluster, PagerDuty):
# only named roles of the policy may hold them, never a built-in.
ROLE_ONLY = frozenset(
    {
        Permission.SILENCE,
        Permission.SILENCE_ELEVATED,
        Permission.GRAPH,
        Permission.RUN,
        Permission.RESOLVE_PAGED,
    }
)
# Lowering a P1/P2 silences its escalation: a responder role or the incident's commander.
NOT_FOR_BYSTANDERS = frozenset({Permission.SEVERITY_DOWNGRADE})

# At most 7 days, the longest silence `/incident silence` accepts at all.
SilenceMinutes = Annotated[int, Field(ge=1, le=10080)]
DEFAULT_SILENCE_MAX_MINUTES: dict[Severity, int] = {
    Severity.P1: 240,
    Severity.P2: 720,
    Severity.P3: 1440,
    Severity.P4: 4320,
}


def _roles(*names: str, description: str) -> Any:
    return Field(default_factory=lambda: list(names), description=description)


class LifecyclePolicy(_Model):
    """Who may do what to an incident from Slack. Safe defaults: members of the incident's
    channel may acknowledge, post status, raise the severity, resolve (unless PagerDuty is
    linked), reopen and investigate; silences, ad hoc graphs and runs need a named role."""

    declare: list[RoleName] = _roles(EVERYONE, description="declare an incident (/incident open)")
    ack: list[RoleName] = _roles(CHANNEL_MEMBERS, description="acknowledge (command and button)")
    status: list[RoleName] = _roles(CHANNEL_MEMBERS, description="post a status update")
    severity: list[RoleName] = _roles(
        CHANNEL_MEMBERS, description="change the severity, except lowering a P1/P2"
    )
    severity_downgrade: list[RoleName] = _roles(
        COMMANDER, description="lower the severity of a P1/P2 (cancels its escalation)"
    )
    assign: list[RoleName] = _roles(COMMANDER, description="give someone an incident role")
    resolve: list[RoleName] = _roles(CHANNEL_MEMBERS, description="resolve an incident")
    resolve_paged: list[RoleName] = _roles(
        description="resolve an incident linked to PagerDuty (also resolves it there); named roles only"
    )
    reopen: list[RoleName] = _roles(CHANNEL_MEMBERS, description="reopen a resolved incident")
    silence: list[RoleName] = _roles(
        description="silence the incident's alerts in Alertmanager; named roles only"
    )
    silence_elevated: list[RoleName] = _roles(
        description="silence with negative (!=, !~) or match-everything matchers; named roles only"
    )
    silence_max_minutes: dict[Severity, SilenceMinutes] = Field(
        default_factory=lambda: dict(DEFAULT_SILENCE_MAX_MINUTES),
        description="longest silence per severity, in minutes; severities left out keep their defaults",
    )
    graph: list[RoleName] = _roles(description="graph an ad hoc PromQL query; named roles only")
    run: list[RoleName] = _roles(description="propose a remediation ad hoc (/incident run); named roles only")
    investigate: list[RoleName] = _roles(
        CHANNEL_MEMBERS, description="post runbooks and checks, read the timeline, draft the postmortem"
    )
    team: list[RoleName] = _roles(
        COMMANDER, description="give the incident to another team of the service catalog (/incident team)"
    )
    correlate: list[RoleName] = _roles(
        COMMANDER,
        description="merge and split incidents, answer correlation suggestions, remove learned links",
    )
    open_channel: list[RoleName] = _roles(
        EVERYONE,
        description="open the channel of an incident waiting in a storm digest (its Open channel button)",
    )
    join: list[RoleName] = _roles(
        EVERYONE, description="join the incident's channel from its notification (its Join channel button)"
    )

    @field_validator("silence_max_minutes", mode="after")
    @classmethod
    def _merge_silence_max(cls, value: dict[Severity, int]) -> dict[Severity, int]:
        return {**DEFAULT_SILENCE_MAX_MINUTES, **value}

    def roles_for(self, permission: Permission) -> list[str]:
        roles: list[str] = getattr(self, permission.value)
        return roles

    def silence_max(self, severity: Severity) -> timedelta:
        return timedelta(minutes=self.silence_max_minutes[severity])

    def problems(self, roles: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-reference problems as (path in the file, message): unknown roles, built-in
        roles where only named ones may act, policy roles that shadow a built-in name."""
        found: list[tuple[tuple[str | int, ...], str]] = [
            (("roles", name), f"role {name!r} is built in ({_BUILT_IN_MEANING[name]}); choose another name")
            for name in roles
            if name in (CHANNEL_MEMBERS, COMMANDER)
        ]
        for permission in Permission:
            for i, name in enumerate(self.roles_for(permission)):
                where = ("lifecycle", permission.value, i)
                if name in BUILT_IN_ROLES:
                    if permission in ROLE_ONLY or (permission in NOT_FOR_BYSTANDERS and name != COMMANDER):
                        found.append((where, f"{permission.value} needs a named role, not {name!r}"))
                elif name not in roles:
                    found.append(
                        (
                            where,
                            f"unknown role {name!r} (define it under roles, or use "
                            f"{', '.join(BUILT_IN_ROLES)})",
                        )
                    )
        return found


_BUILT_IN_MEANING = {
    EVERYONE: "anybody",
    CHANNEL_MEMBERS: "the members of the incident's channel",
    COMMANDER: "the incident's commander",
}


# --------------------------------------------------------------------------- the policy


def _rule_problems(
    where: tuple[str | int, ...], rule: ApprovalRule, roles: Collection[str]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Unknown roles, `everyone` approving, a required role listed twice; then the same for
    each cluster's version of the rule (`where` is the rule's path in the file)."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for field in ("requesters", "approvers", "approvers_all_of"):
        for i, role in enumerate(getattr(rule, field)):
            if role != EVERYONE and role not in roles:
                found.append(((*where, field, i), f"unknown role {role!r} (define it under roles)"))
    for field in ("approvers", "approvers_all_of"):
        if EVERYONE in getattr(rule, field):
            found.append(((*where, field), f"{EVERYONE!r} may not approve; name the roles that may"))
    doubled = sorted({r for r in rule.approvers_all_of if rule.approvers_all_of.count(r) > 1})
    if doubled:
        found.append(
            (
                (*where, "approvers_all_of"),
                f"role(s) {', '.join(doubled)} listed twice: each entry needs a different approver",
            )
        )
    found += break_glass_problems(where, rule.break_glass, roles)
    for name in rule.clusters:
        found += _rule_problems((*where, "clusters", name), rule.for_cluster(name), roles)
    for name in rule.hosts:
        found += _rule_problems((*where, "hosts", name), rule.for_cluster(name), roles)
    return found


class Policy(_Model):
    severity_mapping: dict[str, Severity] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_MAPPING),
        description="alert severity label value -> P1..P4, merged over the built-in defaults",
    )
    default_severity: Severity = Field(
        default=Severity.P3, description="severity of an alert whose severity label is missing or unknown"
    )
    severity_policy: dict[Severity, SeverityPolicy] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_POLICY),
        description="per severity; severities left out keep their defaults",
    )
    roles: dict[RoleName, Role] = Field(default_factory=dict)
    approvals: dict[str, ApprovalRule] = Field(
        default_factory=dict, description='keyed by action name, "default", or a custom rule name'
    )
    exec_templates: dict[TemplateName, ExecTemplate] = Field(default_factory=dict)
    host_templates: dict[TemplateName, HostTemplate] = Field(
        default_factory=dict,
        description="the only commands host_command may run on a host (argv, never a shell)",
    )
    kill_switch: bool = Field(default=False, description="when true, no remediation executes")
    kill_switch_roles: list[RoleName] = Field(
        default_factory=list,
        description="roles that may flip the runtime kill switch (/incident killswitch on|off); empty: nobody",
    )
    lifecycle: LifecyclePolicy = Field(
        default_factory=LifecyclePolicy, description="who may do what to an incident from Slack"
    )
    break_glass: BreakGlass | None = Field(
        default=None,
        description="who may bypass a cooldown (rules without their own break_glass); null: nobody",
    )

    # Set by the service catalog (with_namespace_approvers): which roles approve in a team's namespaces.
    _namespace_approvers: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = PrivateAttr(default=())

    @field_validator("severity_mapping", mode="after")
    @classmethod
    def _merge_mapping(cls, value: dict[str, Severity]) -> dict[str, Severity]:
        merged = dict(DEFAULT_SEVERITY_MAPPING)
        merged.update({normalize_severity_key(k): v for k, v in value.items()})
        return merged

    @field_validator("severity_policy", mode="after")
    @classmethod
    def _merge_policy(cls, value: dict[Severity, SeverityPolicy]) -> dict[Severity, SeverityPolicy]:
        return {**DEFAULT_SEVERITY_POLICY, **value}

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-reference problems as (path in the file, message); empty when consistent."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        if EVERYONE in self.roles:
            found.append(
                (("roles", EVERYONE), f"role {EVERYONE!r} is built in (anybody); choose another name")
            )
        actions = {a.value for a in ActionName}
        for key, rule in self.approvals.items():
            if key != "default" and key not in actions and re.fullmatch(r"[a-z][a-z0-9_-]*", key) is None:
                found.append(
                    (
                        ("approvals", key),
                        f"approval rule name {key!r} must be lowercase letters, digits, - or _",
                    )
                )
            found += _rule_problems(("approvals", key), rule, self.roles)
            found += [
                (("approvals", key, "host_templates_allow", i), f"unknown host template {name!r}")
                for i, name in enumerate(rule.host_templates_allow)
                if name not in self.host_templates
            ]
        found += [
            (("kill_switch_roles", i), f"unknown role {role!r} (define it under roles)")
            for i, role in enumerate(self.kill_switch_roles)
            if role != EVERYONE and role not in self.roles
        ]
        found += break_glass_problems((), self.break_glass, self.roles)
        for name, template in self.host_templates.items():
            undo = template.undo
            target = self.host_templates.get(undo.template) if undo is not None else None
            if undo is not None and target is None:
                found.append(
                    (("host_templates", name, "undo", "template"), f"unknown host template {undo.template!r}")
                )
            elif undo is not None and target is not None and set(undo.args) != set(target.args):
                found.append(
                    (
                        ("host_templates", name, "undo", "args"),
                        f"give exactly the arguments of {undo.template!r}: {', '.join(sorted(target.args)) or 'none'}",
                    )
                )
        return found

    def cluster_problems(self, clusters: Collection[str]) -> list[tuple[tuple[str | int, ...], str]]:
        """Rules for clusters that clusters.yaml does not list (a misspelt prod would lose its
        stricter rule without a word)."""
        return [
            (("approvals", key, "clusters", name), f"unknown cluster {name!r} (not listed in clusters.yaml)")
            for key, rule in self.approvals.items()
            for name in rule.clusters
            if name not in clusters
        ]

    def host_problems(self, hosts: Collection[str]) -> list[tuple[tuple[str | int, ...], str]]:
        """Rules for hosts that clusters.yaml does not list."""
        return [
            (("approvals", key, "hosts", name), f"unknown host {name!r} (not listed in clusters.yaml hosts)")
            for key, rule in self.approvals.items()
            for name in rule.hosts
            if name not in hosts
        ]

    # ----------------------------------------------------------------- lookups

    def map_severity(self, label_value: str | None) -> Severity | None:
        return map_severity(label_value, self.severity_mapping)

    def severity_for(self, label_value: str | None) -> Severity:
        """Like map_severity, falling back to default_severity."""
        return self.map_severity(label_value) or self.default_severity

    def response(self, severity: Severity) -> SeverityPolicy:
        return self.severity_policy[severity]

    def rule_for(
        self,
        action: ActionName | str,
        approval: str = "default",
        cluster: str | None = None,
        namespace: str | None = None,
    ) -> ApprovalRule:
        """The approval rule for a proposal: a named rule if the playbook names one, else the
        rule of the action, else "default"; with none of them, a rule that allows nothing.
        Without a rule of its own, `uncordon` follows `cordon`, else `drain`: it undoes them.
        In `cluster`, the rule's fields for that cluster replace its own; in a namespace a team
        owns (the service catalog's `namespaces`), the team's `approvers`
        narrow the rule's: a team can only take approval away from roles, never grant it (count,
        required roles and bounds stay the rule's)."""
        rule = self._rule(action, approval).for_cluster(cluster)
        for globs, roles in self._namespace_approvers if namespace else ():
            if any(fnmatch.fnmatchcase(namespace or "", glob) for glob in globs):
                return rule.model_copy(update={"approvers": [r for r in rule.approvers if r in roles]})
        return rule

    def break_glass_for(self, rule: ApprovalRule) -> BreakGlass | None:
        """Who may bypass `rule`'s cooldown: its own break_glass, else the policy's."""
        return rule.break_glass or self.break_glass

    def bypassing(self, rule: ApprovalRule) -> ApprovalRule | None:
        """`rule` as it applies to a break-glass run (None: the policy allows none)."""
        glass = self.break_glass_for(rule)
        if glass is None:
            return None
        return rule.model_copy(update=bypassing_rule_fields(rule.required_approvals, glass))

    def with_namespace_approvers(self, owners: Sequence[tuple[Sequence[str], Sequence[str]]]) -> Policy:
        """This policy with the approver roles of the namespaces teams own: (globs, roles) pairs
        in catalog order, the first whose glob matches deciding."""
        copy = self.model_copy()
        copy._namespace_approvers = tuple((tuple(globs), tuple(roles)) for globs, roles in owners)
        return copy

    def _rule(self, action: ActionName | str, approval: str) -> ApprovalRule:
        if approval != "default":
            return self.approvals.get(approval, DENY_ALL)
        action_key = action.value if isinstance(action, ActionName) else action
        keys = [action_key]
        if action_key == ActionName.UNCORDON.value:
            keys += [ActionName.CORDON.value, ActionName.DRAIN.value]
        for key in [*keys, "default"]:
            if key in self.approvals:
                return self.approvals[key]
        return DENY_ALL

    def in_roles(self, roles: Iterable[str], user_id: str, usergroups: Iterable[str] = ()) -> bool:
        """Whether a Slack user (member of `usergroups`, IDs or handles) holds one of `roles`."""
        groups = set(usergroups)
        for name in roles:
            if name == EVERYONE:
                return True
            role = self.roles.get(name)
            if role is None:
                continue
            if user_id in role.users or groups.intersection(role.usergroups):
                return True
        return False
