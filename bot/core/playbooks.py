"""Playbooks: models, validation and matching (pure; loading from disk is bot.config.playbooks).

A playbook directory holds ``*.yaml``/``*.yml`` files (each a playbook, a list of playbooks,
or several YAML documents) and ``policy.yaml`` (see `bot.core.policy`). ``schema.json`` there is
generated from these models (``python -m bot.config.directory --write-schema``). Reading a
directory, with every problem reported as ``file:line``, is `bot.config.playbooks`.

Templates
    Text, PromQL, Kubernetes names and URLs in a playbook may reference the alert's labels
    as ``$name``, ``${name}`` or ``${name:-default}``; `bot.core.templating` fills them in safely
    for each context. Step ``code`` blocks are shown verbatim (never templated).

Matching precedence (`PlaybookSet.match`)
    A playbook matches an alert when every matcher holds: ``alertname`` (one name or a list
    of alternatives), each ``labels`` equality, each ``labels_regex`` full match (a missing
    label counts as the empty string, as in Prometheus), and ``severity`` (the alert's
    ``severity`` label mapped through the policy). On-demand playbooks never match alerts.
    Among matching playbooks the most specific wins, compared in this order:

    1. a playbook with an ``alertname`` matcher beats one without;
    2. more equality matchers (``labels`` entries, plus ``severity``) win;
    3. then more ``labels_regex`` matchers win (a regex counts less than an equality);
    4. ties go to the playbook that comes first (files sorted by name, then file order).

    No match: `generic_playbook` graphs the alert's own expression (from its generatorURL)
    and links its ``runbook_url``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from bot.core.actions import PARAMS_BY_ACTION, ActionName, ActionParams, action_params
from bot.core.incident import Severity
from bot.core.policy import Policy
from bot.core.templating import (
    Context,
    TemplateError,
    check_template,
    escape_slack,
    escape_template,
    render_k8s_name,
    render_plain,
    render_promql,
    render_url,
    template_variables,
)

__all__ = [
    "Check",
    "Diagnostic",
    "Graph",
    "Link",
    "Match",
    "Playbook",
    "PlaybookSet",
    "Remediation",
    "Step",
    "TargetNotAllowed",
    "alert_expression_graph",
    "generator_expression",
    "generic_playbook",
    "parse_duration",
    "playbook_json_schema",
    "policy_json_schema",
    "split_threshold",
]


Path_: TypeAlias = tuple[str | int, ...]


# --------------------------------------------------------------------------- field types


def _template(context: Context) -> AfterValidator:
    def check(value: str) -> str:
        check_template(value, context)  # raises TemplateError, a ValueError
        return value

    return AfterValidator(check)


def _check_url(value: str) -> str:
    rendered = check_template(value, Context.URL)
    if not rendered.startswith(("https://", "http://")):
        raise ValueError("a link must be an http:// or https:// URL")
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
    return value


Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
LabelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]
RuleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
Duration = Annotated[str, StringConstraints(pattern=r"^([0-9]+(ms|s|m|h|d|w|y))+$", max_length=32)]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9+#._-]*$", max_length=20)]
Regex = Annotated[str, AfterValidator(_check_regex)]


def _check_target_pattern(value: str) -> str:
    if not value.startswith("^"):
        raise ValueError(f"target pattern {value!r} must be anchored with ^ (it is searched: ^skillforge-)")
    return _check_regex(value)


TargetPattern = Annotated[str, StringConstraints(max_length=500), AfterValidator(_check_target_pattern)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=256)]
TitleTemplate = Annotated[str, StringConstraints(min_length=1, max_length=150), _template(Context.TEXT)]
TextTemplate = Annotated[str, StringConstraints(max_length=3000), _template(Context.TEXT)]
PromQLTemplate = Annotated[str, StringConstraints(min_length=1, max_length=4000), _template(Context.PROMQL)]
K8sNameTemplate = Annotated[str, StringConstraints(min_length=1, max_length=253), _template(Context.K8S_NAME)]
K8sLabelTemplate = Annotated[
    str, StringConstraints(min_length=1, max_length=63), _template(Context.K8S_LABEL)
]
UrlTemplate = Annotated[str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_check_url)]
Unit = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f]{0,16}$")]
CheckOp = Literal["<", "<=", ">", ">=", "==", "!="]

_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as ``1h30m``; raises ValueError."""
    if not text or re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", text) is None:
        raise ValueError(f"invalid duration {text!r}")
    return float(sum(int(n) * _DURATION_SECONDS[unit] for n, unit in _DURATION_PART.findall(text)))


def dotted_location(loc: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def error_message(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# --------------------------------------------------------------------------- models


class Match(_Model):
    alertname: NonEmpty | list[NonEmpty] | None = Field(
        default=None, description="the alert's name, or a list of alternatives"
    )
    labels: dict[LabelName, str] = Field(default_factory=dict, description="label equality matchers")
    labels_regex: dict[LabelName, Regex] = Field(
        default_factory=dict, description="label regex matchers (full match, like Prometheus =~)"
    )
    severity: Severity | None = Field(
        default=None, description="only alerts whose severity label maps (via policy) to this"
    )

    _compiled: dict[str, re.Pattern[str]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        self._compiled = {name: re.compile(pattern) for name, pattern in self.labels_regex.items()}

    @property
    def alertnames(self) -> tuple[str, ...]:
        if self.alertname is None:
            return ()
        return (self.alertname,) if isinstance(self.alertname, str) else tuple(self.alertname)

    @property
    def is_empty(self) -> bool:
        return not (self.alertnames or self.labels or self.labels_regex or self.severity)

    def specificity(self) -> tuple[int, int, int]:
        """(has alertname, equality matchers, regex matchers): larger is more specific."""
        equal = len(self.labels) + (1 if self.severity is not None else 0)
        return (1 if self.alertnames else 0, equal, len(self.labels_regex))

    def matches(self, labels: Mapping[str, str], severity: Severity | None = None) -> bool:
        if self.is_empty:
            return False
        if self.alertnames and labels.get("alertname") not in self.alertnames:
            return False
        if any(labels.get(name, "") != value for name, value in self.labels.items()):
            return False
        if any(pattern.fullmatch(labels.get(name, "")) is None for name, pattern in self._compiled.items()):
            return False
        return self.severity is None or severity == self.severity

    def identity(self) -> tuple[object, ...]:
        return (
            tuple(sorted(self.alertnames)),
            tuple(sorted(self.labels.items())),
            tuple(sorted(self.labels_regex.items())),
            self.severity,
        )


class Check(_Model):
    query: PromQLTemplate = Field(
        description="PromQL; every returned sample must satisfy `value op threshold`"
    )
    op: CheckOp
    value: float
    description: TextTemplate = ""

    def render_query(self, labels: Mapping[str, str]) -> str:
        return render_promql(self.query, labels)


class Step(_Model):
    title: TitleTemplate
    text: TextTemplate = Field(default="", description="markdown")
    code: Annotated[str, StringConstraints(max_length=3000)] | None = Field(
        default=None, description="shown verbatim as a code block (not templated)"
    )
    language: Language | None = None
    check: Check | None = None


class Graph(_Model):
    title: TitleTemplate
    query: PromQLTemplate
    unit: Unit = Field(default="", description='e.g. "%", "ratio", "s", "ms", "bytes", "req/s", ""')
    threshold: float | None = None
    range: Duration = Field(default="1h", description="how far back to graph, e.g. 1h, 6h, 2d")

    def render_query(self, labels: Mapping[str, str]) -> str:
        return render_promql(self.query, labels)

    @property
    def range_seconds(self) -> float:
        return parse_duration(self.range)


class Diagnostic(_Model):
    kind: Literal["pods", "events", "rollout_history", "logs"]
    namespace: K8sLabelTemplate
    target: K8sNameTemplate | None = Field(
        default=None,
        description="deployment (or pod, see target_kind) name; required for logs/rollout_history",
    )
    target_kind: Literal["deployment", "pod"] = "deployment"
    container: K8sLabelTemplate | None = None
    tail_lines: int = Field(default=200, ge=1, le=5000, description="logs only")
    title: TitleTemplate | None = None

    def render_namespace(self, labels: Mapping[str, str]) -> str:
        return render_k8s_name(self.namespace, labels, dns_label=True)

    def render_target(self, labels: Mapping[str, str]) -> str | None:
        return None if self.target is None else render_k8s_name(self.target, labels)


_LABEL_PARAMS = frozenset({"namespace", "container"})
_NAME_PARAMS = frozenset({"deployment", "pod", "cronjob", "job_name", "node"})
# The parameters that say what an action touches (see `bot.core.actions.target_of`).
TARGET_PARAMS = ("namespace", "deployment", "pod", "node", "cronjob")


class TargetNotAllowed(TemplateError):
    """A target rendered from the alert's labels is outside the remediation's `targets`."""


def render_param(value: Any, key: str | None, labels: Mapping[str, str]) -> Any:
    """Render one parameter: top-level names as Kubernetes names, everything else plain."""
    if isinstance(value, str):
        if key in _LABEL_PARAMS:
            return render_k8s_name(value, labels, dns_label=True)
        if key in _NAME_PARAMS:
            return render_k8s_name(value, labels)
        return render_plain(value, labels)
    if isinstance(value, dict):
        return {k: render_param(v, None, labels) for k, v in value.items()}
    if isinstance(value, list):
        return [render_param(v, None, labels) for v in value]
    return value


def string_leaves(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from string_leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from string_leaves(v, (*path, i))


class Remediation(_Model):
    action: ActionName
    params: dict[str, Any] = Field(
        default_factory=dict, description="the action's parameters; strings may use $label templates"
    )
    title: TitleTemplate
    why: TextTemplate = ""
    approval: RuleName = Field(default="default", description="approval rule in policy.yaml")
    targets: dict[Literal["namespace", "deployment", "pod", "node", "cronjob"], TargetPattern] = Field(
        default_factory=dict,
        description=(
            "what each target parameter may be once filled in from the alert's labels: a regular "
            "expression anchored with ^ that the value must match (e.g. deployment: ^skillforge-); "
            "an alert selecting anything else gets no proposal"
        ),
    )

    _target_patterns: dict[str, re.Pattern[str]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        self._target_patterns = {k: re.compile(v) for k, v in self.targets.items()}

    def render_params(
        self, labels: Mapping[str, str], defaults: Mapping[str, Any] | None = None
    ) -> ActionParams:
        """The typed, validated parameters for this alert (see bot.core.actions).

        Raises TemplateError when a label is missing or its value is unsafe, or when the
        rendered parameters fail the action's model; TargetNotAllowed when a target is
        outside `targets`. `defaults` are parameters the caller chose (a host selected by the
        alert's labels), used where the remediation gives none."""
        rendered = {**(defaults or {}), **{k: render_param(v, k, labels) for k, v in self.params.items()}}
        try:
            params = action_params(PARAMS_BY_ACTION[self.action].model_validate(rendered))
        except ValidationError as exc:
            details = "; ".join(f"{dotted_location(e['loc'])}: {error_message(e)}" for e in exc.errors())
            raise TemplateError(f"{self.action.value} parameters are invalid: {details}") from exc
        problem = self.target_problem(rendered, labels)
        if problem:
            raise TargetNotAllowed(problem)
        return params

    def target_problem(self, rendered: Mapping[str, Any], labels: Mapping[str, str]) -> str | None:
        """Why a rendered target is outside `targets`, or None (plain text: the caller escapes it)."""
        for key, pattern in self._target_patterns.items():
            value = rendered.get(key)
            if isinstance(value, str) and pattern.search(value) is None:
                source = self.label_sources(key, labels)
                origin = f" (from alert label {_names(source)})" if source else ""
                return (
                    f"{key} `{value}`{origin} is not a target this runbook may touch "
                    f"(allowed: `{pattern.pattern}`)"
                )
        return None

    def label_sources(self, key: str, labels: Mapping[str, str]) -> list[str]:
        """The alert labels parameter `key` is filled from (present in `labels`)."""
        template = self.params.get(key)
        if not isinstance(template, str):
            return []
        return list(dict.fromkeys(v.name for v in template_variables(template) if v.name in labels))

    def target_labels(self, labels: Mapping[str, str]) -> list[str]:
        """The alert labels any target parameter is filled from, e.g. ["deployment"]."""
        found: dict[str, None] = {}
        for key in TARGET_PARAMS:
            found.update(dict.fromkeys(self.label_sources(key, labels)))
        return list(found)


def _names(labels: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in labels)


class Link(_Model):
    title: TitleTemplate
    url: UrlTemplate

    def render_url(self, labels: Mapping[str, str]) -> str:
        return render_url(self.url, labels)


class Playbook(_Model):
    name: Slug = Field(description="unique id (DNS-1123 label)")
    title: TitleTemplate
    system: Slug = Field(description="the system it belongs to, e.g. skillquest")
    match: Match = Field(default_factory=Match)
    on_demand: bool = Field(default=False, description="a manual guide, never matched against alerts")
    group_by: list[LabelName] | None = Field(
        default=None, min_length=1, description="label names that override the incident grouping key"
    )
    severity: Severity | None = Field(
        default=None, description="overrides the severity mapped from the alert"
    )
    summary: TextTemplate = Field(default="", description="markdown")
    steps: list[Step] = Field(default_factory=list)
    graphs: list[Graph] = Field(default_factory=list)
    graph_alert_expr: bool = Field(
        default=False, description="also graph the alert's own expression (from its generatorURL)"
    )
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    remediations: list[Remediation] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)


# --------------------------------------------------------------------------- schema

_FILE_ADAPTER: TypeAdapter[Playbook | list[Playbook]] = TypeAdapter(Playbook | list[Playbook])


def playbook_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of one playbook file document: a playbook or a list of them."""
    schema = _FILE_ADAPTER.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "incidentbot playbook file",
        "description": "One playbook or a list of playbooks (several YAML documents are allowed too).",
        **schema,
    }


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of policy.yaml."""
    schema = Policy.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "incidentbot policy",
    }


class PlaybookSet:
    """The loaded playbooks (in file order) and the policy; immutable."""

    __slots__ = ("_by_alertname", "_by_name", "_order", "_wildcard", "playbooks", "policy")

    def __init__(self, playbooks: Iterable[Playbook], policy: Policy | None = None) -> None:
        self.playbooks: tuple[Playbook, ...] = tuple(playbooks)
        self.policy = policy if policy is not None else Policy()
        self._by_name: dict[str, Playbook] = {}
        self._order: dict[str, int] = {}
        self._by_alertname: dict[str, list[Playbook]] = {}
        self._wildcard: list[Playbook] = []
        for index, pb in enumerate(self.playbooks):
            if pb.name in self._by_name:
                raise ValueError(f"duplicate playbook name {pb.name!r}")
            self._by_name[pb.name] = pb
            self._order[pb.name] = index
            if pb.on_demand or pb.match.is_empty:
                continue
            if pb.match.alertnames:
                for alertname in pb.match.alertnames:
                    self._by_alertname.setdefault(alertname, []).append(pb)
            else:
                self._wildcard.append(pb)

    def __iter__(self) -> Iterator[Playbook]:
        return iter(self.playbooks)

    def __len__(self) -> int:
        return len(self.playbooks)

    def by_name(self, name: str) -> Playbook | None:
        return self._by_name.get(name)

    def on_demand(self) -> list[Playbook]:
        return [pb for pb in self.playbooks if pb.on_demand]

    def candidates(self, labels: Mapping[str, str]) -> list[Playbook]:
        """Every playbook matching the alert, most specific first (see the module docstring)."""
        severity = self.policy.map_severity(labels.get("severity"))
        pool = self._by_alertname.get(labels.get("alertname", ""), []) + self._wildcard
        found = [pb for pb in pool if pb.match.matches(labels, severity)]
        return sorted(found, key=lambda pb: (tuple(-x for x in pb.match.specificity()), self._order[pb.name]))

    def match(self, labels: Mapping[str, str]) -> Playbook | None:
        """The most specific playbook for one alert's labels, or None."""
        found = self.candidates(labels)
        return found[0] if found else None

    def resolve(
        self, labels: Mapping[str, str], annotations: Mapping[str, str], generator_url: str = ""
    ) -> Playbook:
        """The matching playbook, else the generic one for this alert."""
        return self.match(labels) or generic_playbook(labels, annotations, generator_url)


# --------------------------------------------------------------------------- the generic playbook

_COMPARISON = re.compile(r"==|!=|>=|<=|>|<")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?(Inf|NaN)", re.IGNORECASE)
_SET_OPERATOR = re.compile(r"\b(and|or|unless)\b", re.IGNORECASE)


def _top_level_code(expr: str) -> list[tuple[int, str]]:
    """(position, text) chunks of `expr` outside strings, comments and brackets."""
    chunks: list[tuple[int, str]] = []
    depth, i, n = 0, 0, len(expr)
    start = 0
    while i < n:
        ch = expr[i]
        if ch in "\"'`" or ch == "#" or ch in "([{" or ch in ")]}":
            if depth == 0 and i > start:
                chunks.append((start, expr[start:i]))
            if ch == "#":
                j = expr.find("\n", i)
                i = n if j < 0 else j
            elif ch in "\"'`":
                j = i + 1
                while j < n and expr[j] != ch:
                    j += 2 if expr[j] == "\\" and ch != "`" else 1
                i = j + 1
            else:
                depth += 1 if ch in "([{" else -1
                i += 1
            start = i
            continue
        i += 1
    if depth == 0 and start < n:
        chunks.append((start, expr[start:]))
    return chunks


def split_threshold(expr: str) -> tuple[str, float | None]:
    """Split an alert expression ``<query> <op> <number>`` into (query, number) so the
    query's values can be graphed with the threshold drawn; otherwise (expr, None)."""
    chunks = _top_level_code(expr)
    if any(_SET_OPERATOR.search(text) for _, text in chunks):
        return expr, None
    last: tuple[int, int] | None = None
    for offset, text in chunks:
        for m in _COMPARISON.finditer(text):
            last = (offset + m.start(), offset + m.end())
    if last is None:
        return expr, None
    left, right = expr[: last[0]].strip(), expr[last[1] :].strip()
    if not left or right.lower().startswith("bool") or _NUMBER.fullmatch(right) is None:
        return expr, None
    value = float(right)
    return (left, value) if math.isfinite(value) else (expr, None)


def generator_expression(generator_url: str) -> str | None:
    """The PromQL in a Prometheus generatorURL (its ``g0.expr``), or None.

    The URL is alert data: whoever may post an alert chooses it. Before the expression is sent
    anywhere, `bot.core.promql.QueryGuard` checks the URL's host and the expression's cost."""
    if not generator_url:
        return None
    try:
        expr = parse_qs(urlsplit(generator_url).query).get("g0.expr", [""])[0].strip()
    except ValueError:
        return None
    return expr or None


def alert_expression_graph(generator_url: str, title: str = "Alert expression") -> Graph | None:
    """A graph of the expression in a Prometheus generatorURL (its ``g0.expr``), or None."""
    query = generator_expression(generator_url)
    if query is None:
        return None
    expr, threshold = split_threshold(query)
    try:
        return Graph(title=escape_template(title)[:150], query=escape_template(expr), threshold=threshold)
    except ValidationError:
        return None


def _http_url(value: str | None) -> str | None:
    if not value:
        return None
    try:
        scheme = urlsplit(value).scheme
    except ValueError:
        return None
    return value if scheme in ("http", "https") and len(value) <= 2000 else None


def _literal(text: str, limit: int) -> str:
    """Untrusted alert text as a template of at most `limit` characters: Slack-escaped,
    ``$`` doubled so it renders verbatim, cut to fit."""
    escaped = escape_slack(text)
    while True:
        cut = escaped if len(escaped) <= limit else escaped[: max(0, limit - 1)] + "…"
        template = escape_template(cut)
        if len(template) <= limit:
            return template
        limit = max(1, limit - (len(template) - limit))


def generic_playbook(
    labels: Mapping[str, str], annotations: Mapping[str, str], generator_url: str = ""
) -> Playbook:
    """The playbook for an alert no playbook matches: its annotations as the summary, a graph
    of its own expression, links to its runbook_url/dashboard and Prometheus, and read-only
    diagnostics when the labels name a namespace and a pod or deployment."""
    alertname = labels.get("alertname") or "Alert"
    limits = {"summary": 400, "description": 1600, "message": 800}
    summary = "\n\n".join(_literal(annotations[k], n) for k, n in limits.items() if annotations.get(k))
    summary += ("\n\n" if summary else "") + "No playbook matches this alert; showing its own expression."
    graphs = [g for g in (alert_expression_graph(generator_url),) if g is not None]
    links: list[Link] = []
    for key, title in (("runbook_url", "Runbook"), ("dashboard_url", "Dashboard")):
        url = _http_url(annotations.get(key))
        if url:
            links.append(Link(title=title, url=escape_template(url)))
    source = _http_url(generator_url)
    if source:
        links.append(Link(title="Source in Prometheus", url=escape_template(source)))
    diagnostics: list[Diagnostic] = []
    namespace = labels.get("namespace", "")
    if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace) and len(namespace) <= 63:
        pod, deployment = labels.get("pod"), labels.get("deployment")
        if pod:
            diagnostics += [
                Diagnostic(kind="logs", namespace="$namespace", target="$pod", target_kind="pod"),
                Diagnostic(kind="events", namespace="$namespace", target="$pod", target_kind="pod"),
            ]
        elif deployment:
            diagnostics += [
                Diagnostic(kind="pods", namespace="$namespace", target="$deployment"),
                Diagnostic(kind="rollout_history", namespace="$namespace", target="$deployment"),
            ]
    return Playbook(
        name="generic",
        title=_literal(alertname, 150),
        system="generic",
        on_demand=False,
        summary=summary,
        graphs=graphs,
        diagnostics=diagnostics,
        links=links,
    )
