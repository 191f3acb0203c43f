"""Explainable correlation: whether a NEW alert group belongs to an OPEN incident (pure).

The rules come from ``correlation.yaml`` in the playbook directory (loaded with ``file:line``
problems by `bot.config.correlation`). A group is compared with the groups already in open
incidents, rule by rule in a fixed order; the first rule that links it to one of them decides:

1. learned links: a human merged (attach) or split (keep separate) the same pair of alert names;
2. topology: the same workload after resolving ownership (Pod → ReplicaSet → Deployment /
   StatefulSet / DaemonSet), or the same node when either side is a node-level alert;
3. declared dependencies of the service catalog (``depends_on``), within a window;
4. the same service, then the same team, each within a window;
5. label similarity over a configured label set (volatile labels ignored), within a window.

Each rule says whether its link attaches the group (strong) or only suggests it (weak). Every
decision carries a one-line reason, written to the timeline. This module does no I/O: the
facts (resolved workloads, nodes) and the candidates are given, and so is the time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.core.blockkit import inline

__all__ = [
    "CORRELATION_FILE",
    "CORRELATION_SCHEMA_FILE",
    "Candidate",
    "CorrelationRules",
    "Decision",
    "GroupFacts",
    "LearnedLink",
    "Link",
    "Outcome",
    "Workload",
    "decide",
    "pair",
    "workload_from_labels",
]

# The timeline event that asks a human (its data carries the buttons' token) and the buttons.
SUGGESTED_EVENT = "correlation_suggested"
ATTACH_ACTION = "correlation_attach"
SEPARATE_ACTION = "correlation_separate"
CORRELATION_FILE = "correlation.yaml"
CORRELATION_SCHEMA_FILE = "correlation.schema.json"
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
# A Deployment's pod is <deployment>-<pod-template-hash>-<5 characters>.
_REPLICASET_POD = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9.-]*?)-(?P<hash>[bcdfghjklmnpqrstvwxz2456789]{6,10})-[a-z0-9]{5}$"
)
WORKLOAD_KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet"}


class Link(StrEnum):
    ATTACH = "attach"  # strong: the group joins the incident
    SUGGEST = "suggest"  # weak: a new incident, and a suggestion in the candidate's channel
    OFF = "off"


class Outcome(StrEnum):
    OPENED = "opened"
    ATTACHED = "attached"
    SUGGESTED = "suggested"  # opened, with a suggestion posted to the candidate


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _window(default: int) -> Any:
    return Field(default=default, ge=1, le=1440, description="how far apart the groups may start, in minutes")


class TopologyRule(_Model):
    link: Link = Field(default=Link.ATTACH, description="what the same workload or node does")
    window_minutes: int = _window(60)
    cache_seconds: int = Field(default=60, ge=1, le=3600, description="how long a resolved pod owner is kept")
    timeout_seconds: float = Field(
        default=0.5, gt=0, le=5, description="longest wait for the cluster's API; then the labels decide"
    )
    node_label: str = Field(default="node", pattern=LABEL_NAME, description="the label naming a node")
    pod_label: str = Field(default="pod", pattern=LABEL_NAME, description="the label naming a pod")
    service_label: str | None = Field(
        default="service",
        pattern=LABEL_NAME,
        description="the label naming a Kubernetes Service (its workloads are the owners of the pods"
        " it selects); null: never asked",
    )


class WindowRule(_Model):
    link: Link = Link.ATTACH
    window_minutes: int = _window(15)


class LabelRule(_Model):
    link: Link = Field(default=Link.SUGGEST, description="what enough shared labels do")
    window_minutes: int = _window(10)
    labels: list[str] = Field(
        default_factory=lambda: ["namespace", "job", "service", "cluster"],
        description="the labels compared",
    )
    ignore: list[str] = Field(
        default_factory=lambda: ["pod", "instance", "container", "endpoint", "uid"],
        description="volatile labels, never compared",
    )
    min_shared: int = Field(default=2, ge=1, le=20, description="how many compared labels must be equal")

    @model_validator(mode="after")
    def _usable(self) -> LabelRule:
        for name in self.labels:
            if not re.fullmatch(LABEL_NAME, name):
                raise ValueError(f"{name!r} is not a label name")
        volatile = sorted(set(self.labels) & set(self.ignore))
        if volatile:
            raise ValueError(
                f"labels {volatile} are listed as volatile (ignore): compare them or ignore them"
            )
        if self.min_shared > len(self.labels):
            raise ValueError(
                f"min_shared {self.min_shared} is more than the {len(self.labels)} labels compared"
            )
        return self


class CorrelationRules(_Model):
    enabled: bool = Field(default=True, description="false: every alert group opens its own incident")
    learned: bool = Field(default=True, description="use links learned from /incident merge and split")
    topology: TopologyRule = Field(default_factory=TopologyRule)
    dependencies: WindowRule = Field(default_factory=lambda: WindowRule(window_minutes=30))
    same_service: WindowRule = Field(default_factory=lambda: WindowRule(window_minutes=15))
    same_team: WindowRule = Field(default_factory=lambda: WindowRule(link=Link.SUGGEST, window_minutes=10))
    labels: LabelRule = Field(default_factory=LabelRule)


def correlation_json_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **CorrelationRules.model_json_schema(),
        "title": "incidentbot correlation rules",
    }


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class Workload:
    """A workload an alert is about, and how it was found (for the reason)."""

    cluster: str
    namespace: str
    kind: str
    name: str
    how: str = ""

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class GroupFacts:
    """What the rules compare of one alert group."""

    alertnames: tuple[str, ...]
    team: str
    service: str | None
    cluster: str
    started_at: datetime
    workloads: tuple[Workload, ...] = ()
    nodes: tuple[str, ...] = ()
    node_level: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "alertnames": list(self.alertnames),
            "team": self.team,
            "service": self.service,
            "cluster": self.cluster,
            "started_at": self.started_at.isoformat(),
            "workloads": [[w.cluster, w.namespace, w.kind, w.name, w.how] for w in self.workloads],
            "nodes": list(self.nodes),
            "node_level": self.node_level,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroupFacts:
        return cls(
            alertnames=tuple(data.get("alertnames") or ()),
            team=str(data.get("team") or ""),
            service=data.get("service"),
            cluster=str(data.get("cluster") or ""),
            started_at=datetime.fromisoformat(str(data["started_at"])),
            workloads=tuple(Workload(*w) for w in data.get("workloads") or ()),
            nodes=tuple(data.get("nodes") or ()),
            node_level=bool(data.get("node_level")),
            labels=dict(data.get("labels") or {}),
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """One group already in an open incident."""

    incident_id: int
    facts: GroupFacts


@dataclass(frozen=True, slots=True)
class LearnedLink:
    id: int
    name_a: str
    name_b: str
    kind: Link  # ATTACH (merged) or OFF (split: keep separate)


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    rule: str
    reason: str
    incident_id: int | None = None  # the incident attached to or suggested


def pair(a: str, b: str) -> tuple[str, str]:
    """A learned link's key: the two alert names in order."""
    return (a, b) if a <= b else (b, a)


def workload_from_labels(labels: Mapping[str, str], cluster: str, pod_label: str = "pod") -> Workload | None:
    """The workload an alert's labels name when the cluster cannot be asked: a deployment,
    statefulset or daemonset label, else a Deployment pod's name (its ReplicaSet hash)."""
    namespace = labels.get("namespace", "")
    for label, kind in WORKLOAD_KINDS.items():
        if labels.get(label):
            return Workload(cluster, namespace, kind, labels[label], f"label {label}")
    pod = labels.get(pod_label, "")
    match = _REPLICASET_POD.match(pod)
    if match and namespace:
        return Workload(cluster, namespace, "Deployment", match["name"], f"the ReplicaSet hash of pod {pod}")
    return None


# --------------------------------------------------------------------------- deciding

Depends = Callable[[str, str | None, str, str | None], bool]


def _apart(new: GroupFacts, old: GroupFacts) -> str:
    seconds = (new.started_at - old.started_at).total_seconds()
    minutes = abs(seconds) / 60
    amount = f"{int(abs(seconds))} s" if minutes < 1 else f"{int(minutes)} m"
    return f"started {amount} {'after' if seconds >= 0 else 'before'}"


def _within(new: GroupFacts, old: GroupFacts, minutes: int) -> bool:
    return abs((new.started_at - old.started_at).total_seconds()) <= minutes * 60


def _topology(new: GroupFacts, old: GroupFacts, rule: TopologyRule) -> str | None:
    if new.cluster != old.cluster or not _within(new, old, rule.window_minutes):
        return None
    mine = {w.key: w for w in new.workloads}
    for theirs in old.workloads:
        if theirs.key in mine:
            w = mine[theirs.key]
            how = f" ({inline(w.how, 120)})" if w.how else ""
            return f"same {w.kind.lower()} {inline(w.namespace, 63)}/{inline(w.name, 63)}{how}, {_apart(new, old)}"
    if new.node_level or old.node_level:
        shared = sorted(set(new.nodes) & set(old.nodes))
        if shared:
            return f"same node {inline(shared[0], 63)}, {_apart(new, old)}"
    return None


def _names(names: Iterable[str]) -> str:
    return ", ".join(inline(n, 80) for n in sorted(set(names)))


@dataclass(frozen=True, slots=True)
class _Check:
    rule: str
    link: Link
    test: Callable[[GroupFacts, GroupFacts], str | None]


Title = Callable[[str, str | None], str]


def _dependency(
    new: GroupFacts, old: GroupFacts, rule: WindowRule, depends: Depends, title: Title
) -> str | None:
    # Another cluster is another environment (dev and prod of one service): never the same problem.
    if new.cluster != old.cluster or not _within(new, old, rule.window_minutes):
        return None
    if depends(new.team, new.service, old.team, old.service):
        upstream, downstream = new, old
    elif depends(old.team, old.service, new.team, new.service):
        upstream, downstream = old, new
    else:
        return None
    return (
        f"{title(upstream.team, upstream.service)} depends on {title(downstream.team, downstream.service)}"
        f" (service catalog), {_apart(new, old)}"
    )


def _service(new: GroupFacts, old: GroupFacts, rule: WindowRule, title: Title) -> str | None:
    if new.service is None or (new.cluster, new.team, new.service) != (old.cluster, old.team, old.service):
        return None
    if not _within(new, old, rule.window_minutes):
        return None
    return f"same service {title(new.team, new.service)}, {_apart(new, old)}"


def _team(new: GroupFacts, old: GroupFacts, rule: WindowRule, title: Title) -> str | None:
    if (new.cluster, new.team) != (old.cluster, old.team) or not _within(new, old, rule.window_minutes):
        return None
    return f"same team {title(new.team, None)}, {_apart(new, old)}"


def _labels(new: GroupFacts, old: GroupFacts, rule: LabelRule) -> str | None:
    if new.cluster != old.cluster or not _within(new, old, rule.window_minutes):
        return None
    shared = [n for n in rule.labels if new.labels.get(n) and new.labels.get(n) == old.labels.get(n)]
    if len(shared) < rule.min_shared:
        return None
    text = ", ".join(f"{n}={inline(new.labels[n], 63)}" for n in shared)
    return f"shared labels {text}, {_apart(new, old)}"


def _checks(rules: CorrelationRules, depends: Depends, title: Title) -> list[_Check]:
    """The rules in their order (bot.core.correlation's docstring)."""
    return [
        _Check("topology", rules.topology.link, lambda n, o: _topology(n, o, rules.topology)),
        _Check(
            "dependencies",
            rules.dependencies.link,
            lambda n, o: _dependency(n, o, rules.dependencies, depends, title),
        ),
        _Check(
            "same_service", rules.same_service.link, lambda n, o: _service(n, o, rules.same_service, title)
        ),
        _Check("same_team", rules.same_team.link, lambda n, o: _team(n, o, rules.same_team, title)),
        _Check("labels", rules.labels.link, lambda n, o: _labels(n, o, rules.labels)),
    ]


def _learned(
    new: GroupFacts, candidates: Sequence[Candidate], links: Mapping[tuple[str, str], LearnedLink]
) -> tuple[Decision | None, set[int]]:
    """A learned attach link decides; learned keep-separate links rule candidates out."""
    separate: set[int] = set()
    for candidate in candidates:
        for mine in new.alertnames:
            for theirs in candidate.facts.alertnames:
                link = links.get(pair(mine, theirs))
                if link is None:
                    continue
                if link.kind is Link.OFF:
                    separate.add(candidate.incident_id)
                elif candidate.incident_id not in separate:
                    reason = f"learned link {_names([mine])} ↔ {_names([theirs])} (a human merged them)"
                    return Decision(Outcome.ATTACHED, "learned", reason, candidate.incident_id), separate
    return None, separate


def decide(
    new: GroupFacts,
    candidates: Sequence[Candidate],
    rules: CorrelationRules,
    *,
    depends: Depends,
    title: Title,
    learned: Mapping[tuple[str, str], LearnedLink] | None = None,
) -> Decision:
    """The first rule, in order, that links the new group to a candidate (newest first)."""
    if not rules.enabled or not candidates:
        return Decision(Outcome.OPENED, "none", "no related open incident")
    excluded: set[int] = set()
    if rules.learned and learned:
        found, excluded = _learned(new, candidates, learned)
        if found is not None:
            return found
    usable = [c for c in candidates if c.incident_id not in excluded]
    for check in _checks(rules, depends, title):
        if check.link is Link.OFF:
            continue
        for candidate in usable:
            reason = check.test(new, candidate.facts)
            if reason is None:
                continue
            outcome = Outcome.ATTACHED if check.link is Link.ATTACH else Outcome.SUGGESTED
            return Decision(outcome, check.rule, reason, candidate.incident_id)
    if excluded:
        return Decision(
            Outcome.OPENED, "learned", "kept separate from a related incident (a human split them)"
        )
    return Decision(Outcome.OPENED, "none", "no related open incident")
