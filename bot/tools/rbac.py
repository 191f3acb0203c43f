"""`incidentbot rbac`: the Helm chart's Kubernetes RBAC, derived from the policy.

The policy is the one source of truth for where the bot may act. For every action, the approval
rules that can govern it (the one `Policy.rule_for` picks for the action, and every rule a
playbook remediation of that action names) say in which namespaces it may run, with the same
`ApprovalRule.allows_namespace` check the bot makes before proposing it. A namespace gets a Role
with exactly the requests its allowed actions send (`ACCESS`) plus the read-only diagnostics
(`DIAGNOSTICS`); a namespace where no rule allows anything gets no Role, and one where no rule
allows `exec` gets no `pods/exec`. Node actions (cordon, uncordon, drain) are cluster-scoped:
they go into one ClusterRole, only when a rule allows them.

`ACCESS` is what bot/clients/kubernetes sends for each action: its preview (a server-side dry
run needs the same verbs as the request itself), its execution and the rollout wait after it.
tests/deploy/test_rbac.py runs every action against the sandbox apiserver, which records what
each request is authorized as, and compares that with `ACCESS` and with the Roles the chart
renders from this tool's output.

Namespace globs (`team-*`, `*`) cannot become Roles by themselves: the literal namespaces of the
allow lists are used, plus any given with `--namespace`, and every glob is reported with the
namespaces it covered.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.config.playbooks import POLICY_FILE, PlaybookError, load_playbooks
from bot.config.settings import playbooks_dir_from_env
from bot.core.actions import DNS1123_LABEL, KUBERNETES_ACTIONS, PARAMS_BY_ACTION, ActionName
from bot.core.errors import ConfigError
from bot.core.playbooks import PlaybookSet
from bot.core.policy import INVESTIGATE_RULE, ApprovalRule

__all__ = [
    "ACCESS",
    "DIAGNOSTICS",
    "INVESTIGATOR",
    "Grant",
    "RbacPlan",
    "add_parser",
    "cluster_scoped",
    "grants_of",
    "plan",
    "render_values",
    "rules_of",
    "run",
    "values_of",
]


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """One RBAC permission: a verb on a resource (with its subresource) of an API group."""

    group: str
    resource: str
    verb: str


def _grants(group: str, resource: str, *verbs: str) -> frozenset[Grant]:
    return frozenset(Grant(group, resource, verb) for verb in verbs)


_DEPLOYMENT_PATCH = _grants("apps", "deployments", "get", "patch")

# Per action, every request the adapter sends for it (see the module docstring).
ACCESS: Mapping[ActionName, frozenset[Grant]] = {
    ActionName.ROLLOUT_RESTART: _DEPLOYMENT_PATCH,
    ActionName.SCALE: _grants("apps", "deployments", "get") | _grants("apps", "deployments/scale", "patch"),
    # The revisions are the deployment's ReplicaSets, listed by its selector.
    ActionName.ROLLOUT_UNDO: _DEPLOYMENT_PATCH | _grants("apps", "replicasets", "list"),
    ActionName.SET_ENV: _DEPLOYMENT_PATCH,
    ActionName.SET_RESOURCES: _DEPLOYMENT_PATCH,
    ActionName.DELETE_POD: _grants("", "pods", "get", "delete"),
    ActionName.CORDON: _grants("", "nodes", "get", "patch"),
    ActionName.UNCORDON: _grants("", "nodes", "get", "patch"),
    # The node's pods in every namespace, each evicted (a PodDisruptionBudget is honoured by the
    # eviction API) and read until it is gone.
    ActionName.DRAIN: _grants("", "nodes", "get", "patch")
    | _grants("", "pods", "list", "get")
    | _grants("", "pods/eviction", "create"),
    ActionName.CREATE_JOB_FROM_CRONJOB: _grants("batch", "cronjobs", "get")
    | _grants("batch", "jobs", "create"),
    # The exec WebSocket upgrade is a GET, authorized as `get`; apiservers that authorize the
    # upgrade itself also require `create`.
    ActionName.EXEC: _grants("", "pods", "get") | _grants("", "pods/exec", "get", "create"),
}

# The read-only diagnostics a playbook shows (pods of a deployment or selector, events, rollout
# history, a log tail) and the lookups correlation makes (a pod's owner through its ReplicaSet,
# the pods behind a Service), granted wherever the bot has a Role.
DIAGNOSTICS: frozenset[Grant] = (
    _grants("apps", "deployments", "get")
    | _grants("apps", "replicasets", "list", "get")
    | _grants("", "pods", "list", "get")
    | _grants("", "services", "get")
    | _grants("", "events", "list")
    | _grants("", "pods/log", "get")
)

# The investigator's reads (`incidentbot rbac --investigator`, only where a model is configured):
# get and list of the non-secret kinds it may read (bot/clients/kubernetes/reads.py), on top of
# the diagnostics. Never secrets; nodes are read by name under the ClusterRole's `nodes: get`.
INVESTIGATOR: frozenset[Grant] = (
    _grants("apps", "deployments", "get", "list")
    | _grants("apps", "replicasets", "get", "list")
    | _grants("apps", "statefulsets", "get", "list")
    | _grants("apps", "daemonsets", "get", "list")
    | _grants("", "services", "get", "list")
    | _grants("", "endpoints", "get", "list")
    | _grants("discovery.k8s.io", "endpointslices", "get", "list")
    | _grants("batch", "jobs", "get", "list")
    | _grants("batch", "cronjobs", "get", "list")
    | _grants("policy", "poddisruptionbudgets", "get", "list")
    | _grants("autoscaling", "horizontalpodautoscalers", "get", "list")
    | _grants("", "configmaps", "get", "list")
)

_GLOB_CHARS = frozenset("*?[")


def cluster_scoped(action: ActionName) -> bool:
    """Whether the action's target is cluster-scoped (a node): its parameters name no namespace."""
    return "namespace" not in PARAMS_BY_ACTION[action].model_fields


def grants_of(
    actions: Iterable[ActionName], *, diagnostics: bool, investigator: bool = False
) -> frozenset[Grant]:
    out = DIAGNOSTICS if diagnostics else frozenset()
    if investigator:
        out |= INVESTIGATOR
    for action in actions:
        out |= ACCESS[action]
    return out


def rules_of(grants: Iterable[Grant]) -> list[dict[str, list[str]]]:
    """RBAC PolicyRules: one per (API group, resource), verbs sorted; a stable order to diff."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for grant in grants:
        verbs.setdefault((grant.group, grant.resource), set()).add(grant.verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(found)}
        for (group, resource), found in sorted(verbs.items())
    ]


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class RbacPlan:
    """Which actions the policy allows where: namespace -> actions, and the cluster-scoped ones."""

    namespaces: Mapping[str, tuple[ActionName, ...]]
    cluster: tuple[ActionName, ...]
    warnings: tuple[str, ...]
    # Where the investigator may read: its `investigate` approval rule's namespaces (else the
    # `default` rule's), the check bot/flows/investigate/tools.py makes before every read.
    investigated: tuple[str, ...] = ()

    def role_namespaces(self, *, investigator: bool) -> list[str]:
        """Every namespace that gets a Role: an action is allowed there, or (`investigator`)
        the investigator may read there."""
        extra = self.investigated if investigator else ()
        return sorted(set(self.namespaces) | set(extra))


def _governing_rules(playbooks: PlaybookSet) -> dict[ActionName, list[ApprovalRule]]:
    """Every approval rule that can decide about an action: the action's own (or "default"), and
    each rule a playbook remediation of that action names."""
    policy = playbooks.policy
    rules = {action: [policy.rule_for(action)] for action in KUBERNETES_ACTIONS}
    for playbook in playbooks:
        for remediation in playbook.remediations:
            if remediation.action not in rules:  # a host action: `incidentbot sudoers`
                continue
            rule = policy.rule_for(remediation.action, remediation.approval)
            if all(rule is not known for known in rules[remediation.action]):
                rules[remediation.action].append(rule)
    return rules


def _is_glob(pattern: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(pattern)


def _rule_names(playbooks: PlaybookSet, rule: ApprovalRule) -> str:
    names = [name for name, known in playbooks.policy.approvals.items() if known is rule]
    return ", ".join(names) or "the built-in deny-all rule"


def plan(playbooks: PlaybookSet, extra_namespaces: Iterable[str] = ()) -> RbacPlan:
    """Where each action is allowed (see the module docstring)."""
    governing = _governing_rules(playbooks)
    namespaced = [action for action in KUBERNETES_ACTIONS if not cluster_scoped(action)]
    investigate = playbooks.policy.rule_for(INVESTIGATE_RULE)
    candidates = set(extra_namespaces)
    globs: dict[str, set[str]] = {}
    for rule in [*(r for action in namespaced for r in governing[action]), investigate]:
        for pattern in rule.namespaces_allow:
            if _is_glob(pattern):
                globs.setdefault(pattern, set()).add(_rule_names(playbooks, rule))
            else:
                candidates.add(pattern)
    namespaces: dict[str, tuple[ActionName, ...]] = {}
    for namespace in sorted(candidates):
        allowed = tuple(
            action
            for action in namespaced
            if any(rule.allows_namespace(namespace) for rule in governing[action])
        )
        if allowed:
            namespaces[namespace] = allowed
    cluster = tuple(
        action
        for action in KUBERNETES_ACTIONS
        if cluster_scoped(action) and any(rule.allows_namespace("") for rule in governing[action])
    )
    warnings = tuple(
        f"namespaces_allow {pattern!r} (rule {' / '.join(sorted(names))}) is a glob: it covers only the "
        f"namespaces named ({', '.join(n for n in sorted(candidates) if _glob_matches(pattern, n)) or 'none'}; "
        "deny lists still apply); name the others it should cover with --namespace"
        for pattern, names in sorted(globs.items())
    )
    investigated = tuple(n for n in sorted(candidates) if investigate.allows_namespace(n))
    return RbacPlan(namespaces, cluster, warnings, investigated)


def _glob_matches(pattern: str, namespace: str) -> bool:
    # The match ApprovalRule.allows_namespace makes for each glob.
    return fnmatch.fnmatchcase(namespace, pattern)


# --------------------------------------------------------------------------- output


def values_of(rbac_plan: RbacPlan, *, investigator: bool = False) -> dict[str, Any]:
    """The chart values: `rbac.roles` (namespace -> actions and rules) and `rbac.clusterRole`;
    with `investigator`, the Role of every namespace the investigator may read also grants its
    reads (a namespace only it reads gets a Role of its own)."""
    roles = {}
    for namespace in rbac_plan.role_namespaces(investigator=investigator):
        actions = rbac_plan.namespaces.get(namespace, ())
        reads = investigator and namespace in rbac_plan.investigated
        roles[namespace] = {
            "actions": [a.value for a in actions],
            "rules": rules_of(grants_of(actions, diagnostics=True, investigator=reads)),
        }
    cluster = {
        "actions": [a.value for a in rbac_plan.cluster],
        "rules": rules_of(grants_of(rbac_plan.cluster, diagnostics=False)),
    }
    return {"rbac": {"roles": roles, "clusterRole": cluster}}


def render_values(rbac_plan: RbacPlan, source: str, *, investigator: bool = False) -> str:
    """The values file, with a header saying where it came from and what it allows where."""
    header = [
        f"# Generated by `incidentbot rbac` from {source}: do not edit, generate it again when the",
        "# policy or the playbooks change, and pass it to helm with --values (docs/rbac.md).",
    ]
    for namespace in rbac_plan.role_namespaces(investigator=investigator):
        actions = ", ".join(rbac_plan.namespaces.get(namespace, ())) or "no action"
        reads = " + the investigator's reads" if investigator and namespace in rbac_plan.investigated else ""
        header.append(f"#   namespace {namespace}: {actions}{reads}")
    header.append(f"#   cluster-scoped: {', '.join(rbac_plan.cluster) or 'nothing'}")
    header += [f"# WARNING: {warning}" for warning in rbac_plan.warnings]
    body = yaml.safe_dump(
        values_of(rbac_plan, investigator=investigator), sort_keys=False, default_flow_style=None, width=1000
    )
    return "\n".join(header) + "\n" + body


# --------------------------------------------------------------------------- command line


def add_parser(sub: Any) -> None:
    """The `rbac` subcommand on `incidentbot`'s subparsers."""
    parser = sub.add_parser(
        "rbac",
        help="print the Helm values granting exactly the Kubernetes access the policy allows",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--policy",
        default=None,
        metavar="PATH",
        help=f"the playbooks directory or its {POLICY_FILE} (default: PLAYBOOKS_DIR or the bundled one)",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="a namespace to check against the policy's globs as well (repeatable)",
    )
    parser.add_argument(
        "--investigator",
        action="store_true",
        help="also grant the investigator's reads (get/list of non-secret kinds) where the policy lets it read",
    )
    parser.add_argument(
        "-o", "--output", default=None, help="write the values here instead of standard output"
    )


def _directory(policy: str | None) -> Path:
    path = Path(policy) if policy else playbooks_dir_from_env()
    if path.is_file():
        if path.name != POLICY_FILE:
            raise ConfigError(f"{path}: the policy file must be named {POLICY_FILE} (the bot reads no other)")
        return path.parent
    if not path.is_dir():
        raise ConfigError(f"{path}: no such playbooks directory or {POLICY_FILE}")
    return path


def run(args: argparse.Namespace) -> int:
    directory = _directory(args.policy)
    bad = [ns for ns in args.namespace if not _is_namespace(ns)]
    if bad:
        raise ConfigError(f"--namespace must be a Kubernetes namespace name, got {', '.join(map(repr, bad))}")
    try:
        playbooks = load_playbooks(directory)
    except PlaybookError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    if not (directory / POLICY_FILE).exists():
        print(
            f"incidentbot rbac: warning: {directory} has no {POLICY_FILE}: nothing is allowed",
            file=sys.stderr,
        )
    rbac_plan = plan(playbooks, args.namespace)
    text = render_values(rbac_plan, str(directory / POLICY_FILE), investigator=args.investigator)
    for warning in rbac_plan.warnings:
        print(f"incidentbot rbac: warning: {warning}", file=sys.stderr)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _is_namespace(name: str) -> bool:
    return len(name) <= 63 and re.fullmatch(DNS1123_LABEL, name) is not None
