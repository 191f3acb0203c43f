"""Placeholders runbooks use in commands and queries (``$NAMESPACE``, ``${DEPLOYMENT}``,
``<pod-name>``, ``POD_NAME``, ``{{ .pod }}``) as our label templates, and whether the result
is a valid template where it goes.

A placeholder whose name suggests a label alerts carry (``<my-namespace>``, ``$NODE``,
``<virt-launcher-pod>``) becomes that label (``$namespace``, ``$node``, ``$pod``). Any other
(``<virt-operator>``, ``$NAME``) is something only the operator knows: it becomes a
parameter named ``FILL_<name>`` (``$FILL_virt_operator``) that no alert carries, so the
draft says plainly what to fill in, and a proposal left unfilled is refused by name
instead of acting on a guess."""

from __future__ import annotations

import re

from bot.core.templating import Context, TemplateError, check_template
from bot.tools.importer.shell import SUBSTITUTED
from bot.tools.importer.text import LABEL_NAME

FILL_PREFIX = "FILL_"
_LABEL_ALIASES = {
    "ns": "namespace",
    "deploy": "deployment",
    "deployments": "deployment",
    "pods": "pod",
    "po": "pod",
    "nodes": "node",
    "host": "node",
    "hostname": "node",
    "svc": "service",
    "cj": "cronjob",
    "sts": "statefulset",
    "ds": "daemonset",
    "pvc": "persistentvolumeclaim",
    "dev": "device",
    "container_name": "container",
}
# Labels alerts about Kubernetes workloads carry (kube-state-metrics, cAdvisor, the
# Prometheus target labels and the common `app`): a placeholder named after one of them
# means "the alert's value".
ALERT_LABELS = frozenset(
    {
        "namespace",
        "pod",
        "container",
        "deployment",
        "statefulset",
        "daemonset",
        "replicaset",
        "cronjob",
        "job_name",
        "node",
        "persistentvolumeclaim",
        "service",
        "instance",
        "job",
        "cluster",
        "app",
        "endpoint",
        "device",
        "mountpoint",
    }
)
# In a command word: shell variables, <angle> placeholders (dots allowed) and Go templates;
# a lone `$` is escaped.
_WORD_PLACEHOLDER = re.compile(
    r"\$(?P<caps>[A-Z][A-Z0-9_]*(?:-[A-Z0-9_]+)+)(?![a-z0-9])"  # $OVNKUBE-MASTER-POD-NAME
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|<(?P<angle>[A-Za-z][A-Za-z0-9_ .-]*)>"
    r"|\{\{\s*\.?(?P<go>[A-Za-z_][A-Za-z0-9_.]*)\s*\}\}"
    r"|\$"
)
# In a PromQL string: shell variables and <angle> placeholders; a lone `$` is escaped.
_STRING_PLACEHOLDER = re.compile(
    r"\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|<(?P<angle>[A-Za-z][A-Za-z0-9_ -]*)>"
    r"|\$"
)


def _label_for(placeholder: str) -> str:
    """The alert label a placeholder names, else ``FILL_<name>`` for the operator to fill."""
    name = placeholder.strip().lower().replace("-", "_").replace(" ", "_").replace(".", "_")
    name = re.sub(r"^(?:your|my|the|target|the_)_", "", name)
    name = _LABEL_ALIASES.get(name, name)
    if name.endswith("_name") and len(name) > 5 and name != "job_name":
        name = name[:-5]
    name = _LABEL_ALIASES.get(name, name)
    name = re.sub(r"[^a-z0-9_]", "", name).strip("_")
    if not name or not LABEL_NAME.fullmatch(name):
        name = "name"
    if name in ALERT_LABELS:
        return name
    # "<virt-launcher-pod>", "<resource_namespace>": a kind of thing the alert names
    suffix = name.rsplit("_", 1)[-1]
    suffix = _LABEL_ALIASES.get(suffix, suffix)
    return suffix if suffix in ALERT_LABELS else FILL_PREFIX + name


def fill_parameters(template: str) -> list[str]:
    """The ``FILL_`` parameters in a template (what the operator must fill in)."""
    return list(dict.fromkeys(re.findall(r"\$\{?(" + FILL_PREFIX + r"[A-Za-z0-9_]*)", template)))


def _var(name: str, following: str) -> str:
    return f"${{{name}}}" if following[:1] and re.match(r"[A-Za-z0-9_]", following[:1]) else f"${name}"


def _substitute(text: str, pattern: re.Pattern[str]) -> str:
    """`text` with each placeholder `pattern` finds as a label template."""

    def repl(m: re.Match[str]) -> str:
        groups = m.groupdict()
        name = groups.get("caps") or groups["braced"] or groups["bare"] or groups["angle"] or groups.get("go")
        if name is None:
            return "$$"
        if m["default"] is not None and m["braced"]:
            return f"${{{_label_for(name)}:-{m['default']}}}"
        return _var(_label_for(name), text[m.end() :])

    return pattern.sub(repl, text)


def _templatize(token: str) -> str:
    """Shell/doc placeholders in a word as our label templates ($NAMESPACE -> $namespace)."""
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", token) and len(token) >= 2:
        return f"${_label_for(token)}"
    return _substitute(token, _WORD_PLACEHOLDER)


def k8s_template(token: str, *, dns_label: bool = False) -> str | None:
    """A Kubernetes name from a command word, as a valid template, or None."""
    if not token or SUBSTITUTED in token or any(c in token for c in "()`*?[]|;&"):
        return None
    template = _templatize(token)
    try:
        check_template(template, Context.K8S_LABEL if dns_label else Context.K8S_NAME)
    except TemplateError:
        return None
    return template


def _balanced(query: str) -> bool:
    """Brackets outside string literals open and close in order."""
    code = re.sub(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`[^`]*`', '""', query)
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in code:
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def promql_template(query: str) -> str | None:
    """A PromQL query as a valid template (placeholders inside strings become labels), or None."""
    q = query.strip().rstrip(";")
    if re.search(r"\{\s*(?:\.\.\.|…)\s*\}", q) or not _balanced(q):
        return None  # `metric{...}` (an elided selector) or a fragment of a query
    # Grafana's interval and range variables: a value that works in any graph
    q = re.sub(r"\$__(?:rate_)?interval|\$\{__(?:rate_)?interval\}|\$interval|\$\{interval\}", "5m", q)
    q = re.sub(r"\$__range|\$\{__range\}", "1h", q)
    if re.search(r"<[A-Za-z_][\w -]*>", q) and not re.search(
        r"[\"'][^\"']*<[A-Za-z_][\w -]*>[^\"']*[\"']", q
    ):
        return None  # a placeholder outside a string (`> <threshold>`) cannot become a label

    def fix_string(m: re.Match[str]) -> str:
        quote, body = m.group(1), m.group(2)
        return quote + _substitute(body, _STRING_PLACEHOLDER) + quote

    q = re.sub(r"(\")((?:[^\"\\\n]|\\.)*)\"", fix_string, q)
    q = re.sub(r"(')((?:[^'\\\n]|\\.)*)'", fix_string, q)
    try:
        check_template(q, Context.PROMQL)
    except TemplateError:
        return None
    return q if len(q) <= 4000 else None
