"""The investigator's tools: read-only by construction. The table below is everything the
model is ever offered; none of it writes. Each tool checks its arguments in code:

- PromQL goes through the same cost checks as `/incident graph` (`QueryGuard`), with the
  lookback capped by the guard;
- Kubernetes reads are pods, events, log tails, rollout status and history, and get / list /
  describe of the non-secret kinds of `READABLE_KINDS` (a Secret cannot be named; env values
  and ConfigMap values are stripped by the adapter), size-capped, in namespaces the policy's
  `investigate` approval rule (else its `default` rule) allows in that cluster (a Node, being
  cluster-scoped, where that rule allows cluster-scoped targets, as for cordon);
- the incident's own alerts and timeline, the matching playbook, similar past incidents.

A tool that refuses or fails answers with the reason (the model sees it, the call is recorded
as failed and cannot be cited).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.clients.kubernetes.clusters import Clusters
from bot.clients.kubernetes.reads import READABLE_KINDS, ReadableKind
from bot.clients.prometheus import PrometheusMetrics, PrometheusSources, choose_step
from bot.core.actions import ContainerName, Namespace, ObjectName
from bot.core.errors import IntegrationError, UserError
from bot.core.incident import IncidentView
from bot.core.investigation import Evidence
from bot.core.playbooks import PlaybookSet
from bot.core.policy import INVESTIGATE_RULE, Policy
from bot.core.ports import Clock
from bot.core.promql import QueryGuard, QueryRefused
from bot.store.incidents import PostgresStore
from bot.store.investigations import InvestigationStore

MAX_SERIES = 20
MAX_EVENTS = 30
MAX_LOG_LINES = 200
MAX_OBJECTS = 50
MAX_OBJECT_CHARS = 6000
LABEL_SELECTOR = r"^[A-Za-z0-9_./,=!() -]*$"


class ToolError(Exception):
    """A tool refused its arguments or its system failed: the reason goes to the model."""


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromQLInstant(_Args):
    query: str = Field(min_length=1, max_length=2000)
    cluster: str | None = None


class PromQLRange(_Args):
    query: str = Field(min_length=1, max_length=2000)
    minutes: int = Field(default=60, ge=5, le=24 * 60)
    cluster: str | None = None


class Workload(_Args):
    namespace: Namespace
    deployment: ObjectName
    cluster: str | None = None


class ObjectEvents(_Args):
    namespace: Namespace
    name: ObjectName
    cluster: str | None = None


class LogsTail(_Args):
    namespace: Namespace
    pod: ObjectName
    container: ContainerName | None = None
    lines: int = Field(default=100, ge=1, le=MAX_LOG_LINES)
    cluster: str | None = None


def _readable_kind(value: str) -> str:
    """A kind as the model may spell it (`deployment`, `Deployments`, `hpa`): the canonical one."""
    wanted = value.strip().lower().removesuffix("s") if value.lower() != "endpoints" else "endpoints"
    for kind in READABLE_KINDS.values():
        if wanted in (kind.kind.lower(), kind.plural.removesuffix("s"), kind.kind.lower().removesuffix("s")):
            return kind.kind
    if wanted == "hpa":
        return "HorizontalPodAutoscaler"
    raise ValueError(
        f"not a kind the investigator may read (Secrets never are); one of {', '.join(READABLE_KINDS)}"
    )


class _KindArgs(_Args):
    kind: str = Field(max_length=40, json_schema_extra={"enum": list(READABLE_KINDS)})

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        return _readable_kind(value)


class KindObject(_KindArgs):
    name: ObjectName
    namespace: Namespace | None = None
    cluster: str | None = None


class KindList(_KindArgs):
    namespace: Namespace
    label_selector: str | None = Field(default=None, max_length=200, pattern=LABEL_SELECTOR)
    cluster: str | None = None


class NoArgs(_Args):
    pass


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    args: type[_Args]
    evidence: Evidence

    def openai(self) -> dict[str, Any]:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        schema.setdefault("properties", {})
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": schema},
        }


DIRECT, INDIRECT = Evidence.DIRECT, Evidence.INDIRECT
READ_ONLY_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "promql_instant",
        "Evaluate PromQL now (cost-checked; cluster: whose Prometheus).",
        PromQLInstant,
        DIRECT,
    ),
    ToolSpec(
        "promql_range",
        "Evaluate PromQL over N minutes (cost-checked; cluster: whose Prometheus).",
        PromQLRange,
        DIRECT,
    ),
    ToolSpec("k8s_pods", "List the pods of a deployment: phase, readiness, restarts.", Workload, DIRECT),
    ToolSpec("k8s_rollout_status", "Rollout status of a deployment.", Workload, DIRECT),
    ToolSpec(
        "k8s_rollout_history",
        "Revisions of a deployment (ReplicaSets with their images and change causes): recent changes.",
        Workload,
        DIRECT,
    ),
    ToolSpec("k8s_events", "Recent events about a Kubernetes object.", ObjectEvents, DIRECT),
    ToolSpec(
        "k8s_get",
        "One Kubernetes object (spec and status; env and ConfigMap values are never shown).",
        KindObject,
        DIRECT,
    ),
    ToolSpec("k8s_describe", "One Kubernetes object and the recent events about it.", KindObject, DIRECT),
    ToolSpec(
        "k8s_list",
        "Objects of a kind in a namespace (a summary line each), by label selector.",
        KindList,
        DIRECT,
    ),
    ToolSpec("k8s_logs_tail", "The last lines of a pod's log (redacted).", LogsTail, DIRECT),
    ToolSpec("incident_alerts", "The incident's alerts with labels and annotations.", NoArgs, DIRECT),
    ToolSpec(
        "incident_timeline", "The incident's timeline (who did what, config changes).", NoArgs, INDIRECT
    ),
    ToolSpec("playbook", "The matching playbook: its runbook steps and remediations.", NoArgs, INDIRECT),
    ToolSpec(
        "similar_incidents", "Resolved past incidents with the same alerts or service.", NoArgs, INDIRECT
    ),
)
TOOLS_BY_NAME: dict[str, ToolSpec] = {t.name: t for t in READ_ONLY_TOOLS}


class ToolBox(Protocol):
    """What the loop runs tools through: the live one, or recorded outputs (the benchmark)."""

    async def run(self, name: str, arguments: Mapping[str, Any]) -> str: ...


def parse_arguments(name: str, raw: str) -> tuple[ToolSpec, dict[str, Any]]:
    """The tool and its arguments as the model sent them (ToolError when unusable)."""
    spec = TOOLS_BY_NAME.get(name)
    if spec is None:
        raise ToolError(f"there is no tool `{name[:60]}`; the tools are read-only and listed")
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise ToolError("the arguments are not JSON") from None
    if not isinstance(value, dict):
        raise ToolError("the arguments are not a JSON object")
    return spec, value


def _lines(items: list[str], empty: str) -> str:
    return "\n".join(items) if items else empty


class LiveTools:
    """The tools against the real systems, for one incident."""

    def __init__(
        self,
        view: IncidentView,
        *,
        prometheus: PrometheusSources,
        guard: QueryGuard,
        clusters: Clusters,
        policy: Policy,
        playbooks: PlaybookSet,
        store: PostgresStore,
        history: InvestigationStore,
        clock: Clock,
    ) -> None:
        self.view = view
        self.prometheus = prometheus
        self.guard = guard
        self.clusters = clusters
        self.policy = policy
        self.playbooks = playbooks
        self.store = store
        self.history = history
        self.clock = clock
        self._handlers: dict[str, Callable[[Any], Awaitable[str]]] = {
            "promql_instant": self._promql_instant,
            "promql_range": self._promql_range,
            "k8s_pods": self._pods,
            "k8s_rollout_status": self._rollout_status,
            "k8s_rollout_history": self._rollout_history,
            "k8s_events": self._events,
            "k8s_logs_tail": self._logs,
            "k8s_get": self._get,
            "k8s_describe": self._describe,
            "k8s_list": self._list,
            "incident_alerts": self._alerts,
            "incident_timeline": self._timeline,
            "playbook": self._playbook,
            "similar_incidents": self._similar,
        }

    async def run(self, name: str, arguments: Mapping[str, Any]) -> str:
        spec = TOOLS_BY_NAME.get(name)
        if spec is None:
            raise ToolError(f"there is no tool `{name[:60]}`")
        try:
            args = spec.args.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            raise ToolError(f"invalid arguments: {problems}") from None
        try:
            return await self._handlers[name](args)
        except (IntegrationError, UserError) as exc:
            raise ToolError(str(exc)) from None

    # ------------------------------------------------------------------ Prometheus

    def _need_prometheus(self, cluster: str | None) -> PrometheusMetrics:
        """The Prometheus of the cluster asked for, else of the incident's first alert."""
        if cluster is not None:
            if cluster not in self.clusters.names:
                listed = ", ".join(self.clusters.names)
                raise ToolError(f"`{cluster[:63]}` is not a configured cluster ({listed})")
            source = self.prometheus.for_cluster(cluster)
        else:
            alerts = self.view.alerts
            source = self.prometheus.for_labels(alerts[0].labels if alerts else None)
        if source is None:
            raise ToolError("Prometheus is not configured" + (f" for cluster `{cluster}`" if cluster else ""))
        return source

    async def _promql_instant(self, args: PromQLInstant) -> str:
        prometheus = self._need_prometheus(args.cluster)
        try:
            self.guard.check(args.query)
        except QueryRefused as exc:
            raise ToolError(f"refused by the cost checks: {exc.plain}") from None
        samples = await prometheus.query_instant(args.query)
        lines = [f"{_labels(s.labels)} {s.value:g}" for s in samples[:MAX_SERIES]]
        more = [f"… {len(samples) - MAX_SERIES} more series"] if len(samples) > MAX_SERIES else []
        return _lines(lines + more, "no data")

    async def _promql_range(self, args: PromQLRange) -> str:
        prometheus = self._need_prometheus(args.cluster)
        now = self.clock()
        lookback = timedelta(minutes=args.minutes)
        start = max(now - lookback, self.guard.earliest(now))
        step = choose_step(start, now)
        try:
            self.guard.check_range(lookback)
            self.guard.check(args.query, step_seconds=step)
        except QueryRefused as exc:
            raise ToolError(f"refused by the cost checks: {exc.plain}") from None
        series = await prometheus.query_range(args.query, start, now, step)
        lines = []
        for s in series[:MAX_SERIES]:
            values = [v for _, v in s.points]
            if not values:
                continue
            lines.append(
                f"{_labels(s.labels)} first={values[0]:g} last={values[-1]:g}"
                f" min={min(values):g} max={max(values):g} points={len(values)}"
            )
        return _lines(lines, "no data")

    # ------------------------------------------------------------------ Kubernetes

    def _cluster(self, named: str | None, namespace: str) -> Any:
        name = named or self._incident_cluster()
        if name not in self.clusters.names:
            raise ToolError(f"`{name[:63]}` is not a configured cluster ({', '.join(self.clusters.names)})")
        rule = self.policy.rule_for(INVESTIGATE_RULE, "default", name, namespace or None)
        if not rule.allows_namespace(namespace):
            if not namespace:
                raise ToolError("the policy allows no cluster-scoped reads (nodes) to the investigator")
            raise ToolError(f"namespace `{namespace}` is not one the policy allows to be read")
        client = self.clusters.client(name)
        if client is None:
            raise ToolError("the Kubernetes cluster is not configured")
        return client

    def _incident_cluster(self) -> str:
        alerts = self.view.alerts
        return self.clusters.select(alerts[0].labels if alerts else None)

    async def _pods(self, args: Workload) -> str:
        pods = await self._cluster(args.cluster, args.namespace).pods(args.namespace, args.deployment)
        lines = [
            f"{p.name} {p.ready_containers}/{p.total_containers} {p.phase} restarts={p.restarts}"
            f" node={p.node or '-'} images={','.join(p.images)}" + (f" reason={p.reason}" if p.reason else "")
            for p in pods
        ]
        return _lines(lines, "no pods")

    async def _rollout_status(self, args: Workload) -> str:
        s = await self._cluster(args.cluster, args.namespace).rollout_status(args.namespace, args.deployment)
        return (
            f"state={s.state} desired={s.desired_replicas} updated={s.updated_replicas}"
            f" ready={s.ready_replicas} available={s.available_replicas} revision={s.revision}: {s.message}"
        )

    async def _rollout_history(self, args: Workload) -> str:
        cluster = self._cluster(args.cluster, args.namespace)
        history = await cluster.rollout_history(args.namespace, args.deployment)
        lines = [
            f"{'*' if r.current else ' '} revision {r.revision} {r.replica_set} images={','.join(r.images)}"
            f" replicas={r.replicas} created={r.created.isoformat() if r.created else '-'}"
            + (f" cause={r.change_cause}" if r.change_cause else "")
            for r in history
        ]
        return _lines(lines, "no revisions")

    async def _events(self, args: ObjectEvents) -> str:
        cluster = self._cluster(args.cluster, args.namespace)
        events = await cluster.events(args.namespace, args.name, limit=MAX_EVENTS)
        lines = [
            f"{e.type} {e.reason} x{e.count} {e.object_kind}/{e.object_name}: {e.message}" for e in events
        ]
        return _lines(lines, "no recent events")

    async def _logs(self, args: LogsTail) -> str:
        cluster = self._cluster(args.cluster, args.namespace)
        text: str = await cluster.logs_tail(args.namespace, args.pod, args.lines, container=args.container)
        return text or "empty log"

    def _object_cluster(self, args: KindObject) -> tuple[Any, ReadableKind, str | None]:
        kind = READABLE_KINDS[args.kind]
        if not kind.namespaced:
            return self._cluster(args.cluster, ""), kind, None
        if args.namespace is None:
            raise ToolError(f"a {kind.kind} is namespaced: name its namespace")
        return self._cluster(args.cluster, args.namespace), kind, args.namespace

    async def _get(self, args: KindObject) -> str:
        cluster, kind, namespace = self._object_cluster(args)
        return _capped(await cluster.read_object(kind, namespace, args.name))

    async def _describe(self, args: KindObject) -> str:
        cluster, kind, namespace = self._object_cluster(args)
        found = await cluster.read_object(kind, namespace, args.name)
        # Node events are recorded in the default namespace, as kubectl describe reads them.
        events = await cluster.events(namespace or "default", args.name, kind=kind.kind, limit=MAX_EVENTS)
        lines = [f"{e.type} {e.reason} x{e.count}: {e.message}" for e in events]
        return _capped(found) + "\nevents:\n" + _lines(lines, "no recent events")

    async def _list(self, args: KindList) -> str:
        kind = READABLE_KINDS[args.kind]
        if not kind.namespaced:
            raise ToolError(f"{kind.kind}s are read one at a time by name (k8s_get)")
        cluster = self._cluster(args.cluster, args.namespace)
        listed = await cluster.list_objects(
            kind, args.namespace, label_selector=args.label_selector, limit=MAX_OBJECTS
        )
        lines = [_summary(item) for item in listed.items]
        more = [f"… {listed.remaining} more (narrow with a label selector)"] if listed.remaining else []
        return _lines(lines + more, f"no {kind.plural} in {args.namespace}")

    # ------------------------------------------------------------------ our own records

    async def _alerts(self, _: NoArgs) -> str:
        lines = [
            f"{a.name} {a.status.value} since {a.starts_at.isoformat()} labels={_labels(a.labels)}"
            f" annotations={json.dumps(a.annotations, sort_keys=True)}"
            for a in self.view.alerts
        ]
        return _lines(lines, "no alerts (declared by hand)")

    async def _timeline(self, _: NoArgs) -> str:
        events = await self.store.timeline(self.view.incident.id)
        return _lines([f"{e.at.isoformat()} {e.kind}: {e.text}" for e in events[-60:]], "empty timeline")

    async def _playbook(self, _: NoArgs) -> str:
        alerts = self.view.alerts
        found = self.playbooks.match(alerts[0].labels) if alerts else None
        if found is None:
            return "no playbook matches this incident's alerts"
        steps = [f"{n}. {s.title}" for n, s in enumerate(found.steps, 1)]
        remediations = [f"- {r.action.value}: {r.title}" for r in found.remediations]
        return "\n".join(
            [f"playbook {found.name}: {found.title}", "steps:", *steps, "remediations:", *remediations]
        )

    async def _similar(self, _: NoArgs) -> str:
        names = sorted({a.name for a in self.view.alerts})
        past = await self.history.similar(self.view.incident.id, names, self.view.incident.service)
        lines = [
            f"#{p.id} {p.severity} {p.title} alerts={','.join(p.alertnames)} opened={p.opened.isoformat()}"
            f" resolution={p.resolution or 'none recorded'}"
            for p in past
        ]
        return _lines(lines, "no similar resolved incidents")


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _capped(obj: Mapping[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    if len(text) <= MAX_OBJECT_CHARS:
        return text
    return text[:MAX_OBJECT_CHARS] + f"… (cut at {MAX_OBJECT_CHARS} of {len(text)} characters)"


def _summary(obj: Mapping[str, Any]) -> str:
    """One line per listed object: its name and the plain (non-nested) fields of its status,
    or for objects without status (ConfigMap, Endpoints) what they hold."""
    metadata = obj.get("metadata") or {}
    status = obj.get("status")
    status = status if isinstance(status, dict) else {}
    fields = [f"{k}={v}" for k, v in sorted(status.items()) if isinstance(v, str | int | float | bool)]
    if "data" in obj:
        fields.append(f"keys={','.join(map(str, obj['data']))}")
    if "subsets" in obj or "endpoints" in obj:
        fields.append(f"endpoints={json.dumps(obj.get('subsets') or obj.get('endpoints'))[:200]}")
    return f"{metadata.get('name')} {' '.join(fields)}".strip()
