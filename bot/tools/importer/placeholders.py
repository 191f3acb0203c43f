"""Placeholders runbooks use in commands and queries (``$NAMESPACE``, ``${DEPLOYMENT}``,
``<pod-name>``, ``POD_NAME``, ``{{ .pod }}``) as our label templates (``$namespace``,
``$deployment``, ``$pod``), and whether the result is a valid template where it goes."""

from __future__ import annotations

import re

from bot.core.templating import Context, TemplateError, check_template
from bot.tools.importer.shell import SUBSTITUTED
from bot.tools.importer.text import LABEL_NAME

_LABEL_ALIASES = {
    "ns": "namespace",
    "deploy": "deployment",
    "deployments": "deployment",
    "pods": "pod",
    "nodes": "node",
    "svc": "service",
    "cj": "cronjob",
    "container_name": "container",
}
# In a command word: shell variables, <angle> placeholders (dots allowed) and Go templates;
# a lone `$` is escaped.
_WORD_PLACEHOLDER = re.compile(
    r"\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
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
    name = placeholder.strip().lower().replace("-", "_").replace(" ", "_").replace(".", "_")
    name = re.sub(r"^(?:your|my|the|target|the_)_", "", name)
    name = _LABEL_ALIASES.get(name, name)
    if name.endswith("_name") and len(name) > 5:
        name = name[:-5]
    name = _LABEL_ALIASES.get(name, name)
    name = re.sub(r"[^a-z0-9_]", "", name)
    if not name or not LABEL_NAME.fullmatch(name):
        name = "name"
    return name


def _var(name: str, following: str) -> str:
    return f"${{{name}}}" if following[:1] and re.match(r"[A-Za-z0-9_]", following[:1]) else f"${name}"


def _substitute(text: str, pattern: re.Pattern[str]) -> str:
    """`text` with each placeholder `pattern` finds as a label template."""

    def repl(m: re.Match[str]) -> str:
        groups = m.groupdict()
        name = groups["braced"] or groups["bare"] or groups["angle"] or groups.get("go")
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


def promql_template(query: str) -> str | None:
    """A PromQL query as a valid template (placeholders inside strings become labels), or None."""
    q = query.strip().rstrip(";")
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
